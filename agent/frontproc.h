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
#define FRONT_IDLE_TIMEOUT 30            /* s without a byte before a connection is closed */
#define FRONT_CONNECTION_MEMORY (32 * 1024) /* request line + headers, bytes */
#define FRONT_MAX_BODY 1024              /* request body, bytes */
#define FRONT_MAX_MIN_TTL 86400          /* s */

struct frontproc;

/* Starts serving LISTEN_FD (a bound, listening AF_UNIX stream socket; ownership passes to
 * the front) for CFG with CACHE.  Returns 0 and stores the handle in *RET, or -ENOMEM / -EIO
 * (libmicrohttpd refused to start). */
int frontproc_start(const struct config *cfg, struct tokcache *cache, int listen_fd, struct frontproc **ret);

/* Stops accepting new connections; requests already in progress go on.  Shutdown order:
 * frontproc_quiesce(), fetcher_shutdown() (which completes every waiting request),
 * frontproc_free(), tokcache_free(). */
void frontproc_quiesce(struct frontproc *f);

/* Stops the server thread, closing every connection, and frees F.  Accepts NULL. */
void frontproc_free(struct frontproc *f);
