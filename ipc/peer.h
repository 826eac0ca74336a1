/* SPDX-License-Identifier: ISC */
#pragma once

#include "policy/policy.h"

/* Reads the kernel's view of the peer of the connected AF_UNIX socket FD: SO_PEERCRED
 * (pid, uid, gid, captured by the kernel at connect()) and SO_PEERGROUPS (supplementary
 * groups, at most PEER_GROUPS_MAX kept; groups_truncated tells when more existed).
 * Never uses SCM_CREDENTIALS.  Returns 0 and fills *RET, or a negative errno from
 * getsockopt() (*RET untouched). */
int peer_from_fd(int fd, struct peer *ret);
