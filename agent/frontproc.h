/* SPDX-License-Identifier: ISC */
#pragma once

#include "agent/config.h"
#include "agent/tokcache.h"

/* The front (DESIGN.md, Processes): HTTP/1.1 on the listening Unix socket (libmicrohttpd,
 * one internal epoll thread), peer credentials read at accept, policy, the token cache.
 * Requests that must wait for a fetch are suspended and resumed when the cache answers,
 * so the event loop never blocks on the IdP or the token. */

/* Limits of the socket API. */
#define FRONT_MAX_CONNECTIONS 1024       /* open connections */
#define FRONT_MAX_CONNECTIONS_PER_UID (FRONT_MAX_CONNECTIONS / 2) /* one caller cannot take them all */
#define FRONT_IDLE_TIMEOUT 30            /* s without a byte before a connection is closed */
#define FRONT_CONNECTION_MEMORY (32 * 1024) /* request line + headers, bytes */
#define FRONT_MAX_BODY 1024              /* request body, bytes */
#define FRONT_MAX_MIN_TTL 86400          /* s */

/* Most token requests in flight to net at once; more are answered server_busy. */
#define FRONT_MAX_PENDING 256
/* Beyond a credential's timeout, how long the front waits for net before answering idp_timeout, ms. */
#define FRONT_FETCH_GRACE_MS 15000

/* The front process entry (STYLE.md, Processes are files): serves LISTEN_FD (bound and
 * listening) for CFG, asks net (NET_FD) for token requests and grants hsm (HSM_FD) the
 * secret of each; SUPER_FD is the supervisor's channel (replacement channels, reloads).
 * Every other fd is closed by the caller.  Takes CFG over (it is freed once a reload has
 * replaced it and nothing points into it any more, or at the end).
 * Runs until SIGTERM or the supervisor channel closes.  Returns an exit status. */
int frontproc(struct config *cfg, int listen_fd, int net_fd, int hsm_fd, int super_fd);
