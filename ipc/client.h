/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>

/* The client side of the socket API (ipc/PROTOCOL.md), for credctl and C programs:
 * one HTTP/1.1 request over the agent's Unix socket, written and parsed here with libc only (no
 * HTTP or TLS library), so that a program linking it starts fast. */

/* Largest answer read, in bytes. */
#define CLIENT_RESPONSE_MAX (256 * 1024)

struct client_response {
        long status;    /* HTTP status */
        char *body;     /* NUL-terminated, may hold a token: release with client_response_clear() */
        size_t len;     /* bytes in body */
};

/* Wipes and frees what R holds.  Accepts NULL. */
void client_response_clear(struct client_response *r);

/* Sends METHOD PATH (e.g. "GET", "/v1/token/Billing?min_ttl=60") with optional JSON BODY
 * (NULL for none) to the agent listening on SOCKET_PATH and waits for the answer, at most
 * TIMEOUT seconds.  On success returns 0 and fills *RET (any HTTP status counts as success).
 * On failure returns -ENOENT (no socket there), -ECONNREFUSED (no agent listening),
 * -EACCES (socket not accessible), -ETIMEDOUT, -EMSGSIZE (answer too large), -EPROTO
 * (not HTTP) or -ENOMEM; *RET is untouched. */
int client_request(const char *socket_path, const char *method, const char *path, const char *body,
                   unsigned timeout, struct client_response *ret);

/* The default socket path: $XDG_RUNTIME_DIR/credagent/agent.sock for a non-root user with
 * an absolute XDG_RUNTIME_DIR, /run/credagent/agent.sock otherwise.  malloc()ed, NULL on ENOMEM. */
char *client_default_socket(void);

/* Returns the socket to use: SOCKET_ARG if not NULL, else $CREDAGENT_SOCK if set and non-empty,
 * else client_default_socket().  malloc()ed; NULL on ENOMEM. */
char *client_socket_path(const char *socket_arg);
