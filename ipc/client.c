/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc/client.h"
#include "secmem.h"

/* The client talks to one server only, credagent's front, whose answers are libmicrohttpd's:
 * a status line, headers, and a body framed by Content-Length (or chunked, or the end of the
 * connection).  It reads just that; it is not a general HTTP client, which is what keeps
 * credctl's start-up cost near a bare process's (no libcurl, no TLS library). */

void client_response_clear(struct client_response *r) {
        if (!r)
                return;
        if (r->body) {
                secure_wipe(r->body, r->len);
                free(r->body);
        }
        *r = (struct client_response) {};
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Waits until FD is ready for EVENTS or DEADLINE passes.  Returns 0 or -ETIMEDOUT/-errno. */
static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                uint64_t now = now_ms();
                struct pollfd p = { .fd = fd, .events = events };
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int) (deadline - now > INT32_MAX ? INT32_MAX : deadline - now));
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

/* Finds the end of the header block ("\r\n\r\n") in BUF[0..LEN).  Returns the offset of the
 * body, or 0 when it has not arrived yet. */
static size_t header_end(const char *buf, size_t len) {
        for (size_t i = 3; i < len; i++)
                if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' && buf[i] == '\n')
                        return i + 1;
        return 0;
}

/* Returns a pointer to the value of header NAME (case-insensitive) in the header block
 * HEAD (NUL-terminated, lines end in \r\n), or NULL.  The value ends at the next \r. */
static const char *header_value(const char *head, const char *name) {
        size_t n = strlen(name);

        for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
                const char *l = line + 2;
                if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
                        l += n + 1;
                        while (*l == ' ' || *l == '\t')
                                l++;
                        return l;
                }
        }
        return NULL;
}

/* Decodes a chunked body in place.  Returns the decoded length, or -EPROTO. */
static ssize_t dechunk(char *body, size_t len) {
        size_t in = 0, out = 0;

        for (;;) {
                char *end;
                unsigned long n;

                if (in >= len)
                        return -EPROTO;
                errno = 0;
                n = strtoul(body + in, &end, 16);
                if (errno || end == body + in)
                        return -EPROTO;
                in = (size_t) (end - body);
                while (in < len && body[in] != '\n') /* chunk extensions, \r */
                        in++;
                if (in >= len)
                        return -EPROTO;
                in++;
                if (n == 0)
                        return (ssize_t) out;
                if (n > len - in)
                        return -EPROTO;
                memmove(body + out, body + in, n);
                out += n;
                in += n;
                if (in + 2 > len || body[in] != '\r' || body[in + 1] != '\n')
                        return -EPROTO;
                in += 2;
        }
}

int client_request(const char *socket_path, const char *method, const char *path, const char *body,
                   unsigned timeout, struct client_response *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uint64_t deadline = now_ms() + (uint64_t) timeout * 1000;
        size_t body_len = body ? strlen(body) : 0, cap = 4096, len = 0, hend = 0;
        char request[1024], *buf = NULL;
        int fd = -1, r, n;

        if (strlen(socket_path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, socket_path);
        if (body)
                n = snprintf(request, sizeof request,
                             "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                             method, path, body_len);
        else
                n = snprintf(request, sizeof request,
                             "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
                             method, path);
        if (n < 0 || (size_t) n >= sizeof request || strpbrk(path, " \r\n") || strpbrk(method, " \r\n"))
                return -EINVAL;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                r = -errno;
                goto out;
        }
        /* The request: small, written with blocking sends under the deadline via SO_SNDTIMEO. */
        struct timeval tv = { .tv_sec = timeout };
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (send(fd, request, (size_t) n, MSG_NOSIGNAL) != n || (body && send(fd, body, body_len, MSG_NOSIGNAL) != (ssize_t) body_len)) {
                r = errno == EAGAIN ? -ETIMEDOUT : errno == EPIPE || errno == ECONNRESET ? -EPROTO : -errno;
                if (r == 0)
                        r = -EPROTO; /* a short send */
                goto out;
        }

        /* The answer, until the server closes (Connection: close) or the body is complete.
         * Not realloc(): a smaller buffer may hold a token and is wiped before it is freed. */
        buf = malloc(cap);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        for (;;) {
                ssize_t k;

                if (len + 1 >= cap) {
                        char *p;
                        if (cap >= CLIENT_RESPONSE_MAX) {
                                r = -EMSGSIZE;
                                goto out;
                        }
                        p = malloc(cap * 2);
                        if (!p) {
                                r = -ENOMEM;
                                goto out;
                        }
                        memcpy(p, buf, len);
                        secure_wipe(buf, cap);
                        free(buf);
                        buf = p;
                        cap *= 2;
                }
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        goto out;
                k = recv(fd, buf + len, cap - 1 - len, 0);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        r = errno == ECONNRESET ? -EPROTO : -errno;
                        goto out;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                buf[len] = '\0';
                if (!hend)
                        hend = header_end(buf, len);
                if (hend) {
                        char save = buf[hend];
                        const char *cl;

                        buf[hend] = '\0';
                        cl = header_value(buf, "Content-Length");
                        buf[hend] = save;
                        if (cl && len - hend >= strtoul(cl, NULL, 10))
                                break;
                }
        }
        buf[len] = '\0';

        /* Status line: "HTTP/1.x NNN …". */
        if (!hend || strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 || buf[8] != ' ') {
                r = -EPROTO;
                goto out;
        }
        long status = strtol(buf + 9, NULL, 10);
        if (status < 100 || status > 599) {
                r = -EPROTO;
                goto out;
        }

        char save = buf[hend];
        const char *te, *cl;
        size_t blen = len - hend;

        buf[hend] = '\0';
        te = header_value(buf, "Transfer-Encoding");
        cl = header_value(buf, "Content-Length");
        bool chunked = te && strncasecmp(te, "chunked", 7) == 0;
        size_t clen = cl ? strtoul(cl, NULL, 10) : 0;
        buf[hend] = save;
        if (chunked) {
                ssize_t d = dechunk(buf + hend, blen);
                if (d < 0) {
                        r = (int) d;
                        goto out;
                }
                blen = (size_t) d;
        } else if (cl) {
                if (blen < clen) {
                        r = -EPROTO; /* the server closed before the whole body */
                        goto out;
                }
                blen = clen;
        }

        char *out_body = malloc(blen + 1);
        if (!out_body) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(out_body, buf + hend, blen);
        out_body[blen] = '\0';
        *ret = (struct client_response) { .status = status, .body = out_body, .len = blen };
        r = 0;
out:
        if (buf) {
                secure_wipe(buf, cap);
                free(buf);
        }
        if (fd >= 0)
                close(fd);
        return r;
}

char *client_default_socket(void) {
        const char *runtime = geteuid() != 0 ? secure_getenv("XDG_RUNTIME_DIR") : NULL;
        char *p;

        if (runtime && runtime[0] == '/')
                return asprintf(&p, "%s/credagent/agent.sock", runtime) < 0 ? NULL : p;
        return strdup("/run/credagent/agent.sock");
}

char *client_socket_path(const char *socket_arg) {
        const char *e;

        if (socket_arg)
                return strdup(socket_arg);
        e = getenv("CREDAGENT_SOCK");
        if (e && *e)
                return strdup(e);
        return client_default_socket();
}
