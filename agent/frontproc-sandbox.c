/* SPDX-License-Identifier: ISC */
/* The front's sandbox (docs/privsep.md, Sandbox).  The front parses untrusted HTTP from
 * callers: after start-up it only accepts on the listening socket it holds, talks HTTP on
 * the connections, and exchanges messages with the other processes over socketpairs it
 * already holds.  No socket(), connect(), open*(), execve() or fork(); no filesystem at all
 * under Landlock. */
#include "agent/sandbox.h"

const struct sandbox_policy sandbox_policy_front = {
        .groups = SB_STDIO |
                  SB_THREADS |   /* libmicrohttpd's internal polling thread */
                  SB_UNIX_IO |   /* connections, epoll, the ITC eventfd, the channels */
                  SB_ACCEPT,     /* the listening socket */
        .fs = SANDBOX_FS_PATHS,  /* no paths: nothing */
};
