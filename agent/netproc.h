/* SPDX-License-Identifier: ISC */
#pragma once

#include "agent/config.h"

/* The net process (DESIGN.md, Processes): libcurl + OpenSSL.  For each MSG_FETCH from the
 * front it asks hsm for the secret of that fetch (hsm checks the front granted it), runs the
 * token request in a worker thread, wipes the secret and everything built from it when the
 * transfer ends, and answers MSG_FETCH_DONE.  No PKCS#11, no client input.
 *
 * FRONT_FD, HSM_FD, SUPER_FD are its channels; every other fd is closed by the caller.
 * Runs until the supervisor channel closes or SIGTERM.  Returns an exit status. */
int netproc(const struct config *cfg, int front_fd, int hsm_fd, int super_fd);

/* Most fetches in flight at once; more are answered server_busy at once. */
#define NETPROC_MAX_IN_FLIGHT 256
/* How long a worker waits for hsm's answer, ms. */
#define NETPROC_SECRET_WAIT_MS 10000
