/* SPDX-License-Identifier: ISC */
#pragma once

#include "agent/config.h"

/* The hsm process (DESIGN.md, Processes): the only process that loads the PKCS#11 module
 * and reads the PIN.  It releases a client secret to net only for a fetch the front granted
 * (MSG_GRANT with that fetch id and that secret URI, used once, within HSMPROC_GRANT_TTL_MS),
 * never on net's word alone.  For private_key_jwt it signs, under a key grant, only the client
 * assertion the grant describes (jwt_check_signing_input()): the key never leaves the token and
 * net cannot get a signature over anything else.  No network.
 *
 * FRONT_FD, NET_FD, SUPER_FD are its SOCK_SEQPACKET channels (ipc/PROTOCOL.md); every other
 * fd is closed by the caller.  Runs until the supervisor channel closes or SIGTERM.
 * Returns an exit status. */
int hsmproc(const struct config *cfg, int front_fd, int net_fd, int super_fd);

#define HSMPROC_GRANTS_MAX 1024
#define HSMPROC_GRANT_TTL_MS 30000
