/* SPDX-License-Identifier: ISC */
/* Socket activation and readiness notification, as sd_listen_fds(3) and sd_notify(3) define
 * them, without linking libsystemd. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc/listen.h"
#include "log.h"

static void _printf_(2, 3) listen_set_error(char **ret_error, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (s)
                log_debug("%s", s);
        if (ret_error)
                *ret_error = s;
        else
                free(s);
}

/* A strictly decimal, positive number that fits an int: no sign, no blanks, no trailing text. */
static int listen_parse_positive(const char *s, int *ret) {
        long v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (*p - '0');
                if (v > INT_MAX)
                        return -EINVAL;
        }
        if (v <= 0)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

/* Quotes an environment value for a reason text: escaped, at most 32 bytes shown. */
static const char *listen_quote(const char *s, char *buf, size_t size) {
        return log_escape(s, strlen(s), 32, buf, size);
}

static int listen_check_fd(int fd, char **ret_error) {
        struct sockaddr_storage ss = {};
        socklen_t len = sizeof ss;
        int type = 0, accepting = 0;
        socklen_t optlen;

        if (fcntl(fd, F_GETFD) < 0) {
                int r = -errno;
                listen_set_error(ret_error, "LISTEN_FDS=1 but fd %d is not open: %s", fd, strerror(-r));
                return r;
        }
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0) {
                int r = -errno;
                if (r == -ENOTSOCK) {
                        listen_set_error(ret_error, "fd %d passed by the service manager is not a socket", fd);
                        return -EINVAL;
                }
                listen_set_error(ret_error, "cannot read the address of fd %d passed by the service manager: %s",
                                 fd, strerror(-r));
                return r;
        }
        if (len < sizeof(sa_family_t) || ss.ss_family != AF_UNIX) {
                listen_set_error(ret_error,
                                 "fd %d passed by the service manager is not an AF_UNIX socket (family %d); "
                                 "credagent listens only on a Unix socket (ListenStream=/path)",
                                 fd, (int) ss.ss_family);
                return -EINVAL;
        }

        optlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0) {
                int r = -errno;
                listen_set_error(ret_error, "cannot read SO_TYPE of fd %d: %s", fd, strerror(-r));
                return r;
        }
        if (type != SOCK_STREAM) {
                listen_set_error(ret_error,
                                 "fd %d passed by the service manager is a %s socket, not a stream socket "
                                 "(use ListenStream=, not ListenDatagram= or ListenSequentialPacket=)",
                                 fd, type == SOCK_DGRAM ? "datagram" : type == SOCK_SEQPACKET ? "seqpacket" : "non-stream");
                return -EINVAL;
        }

        optlen = sizeof accepting;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen) < 0) {
                int r = -errno;
                listen_set_error(ret_error, "cannot read SO_ACCEPTCONN of fd %d: %s", fd, strerror(-r));
                return r;
        }
        if (!accepting) {
                listen_set_error(ret_error,
                                 "fd %d passed by the service manager is not listening "
                                 "(a connected socket: Accept=yes is not supported, use Accept=no)",
                                 fd);
                return -EINVAL;
        }
        return 0;
}

int listen_fds_from_env_full(int *ret_fd, char **ret_error) {
        const char *e_pid, *e_fds;
        char q[160];
        int pid, n, flags, r;

        e_pid = getenv("LISTEN_PID");
        if (!e_pid) {
                r = 0;
                goto finish;
        }
        if (listen_parse_positive(e_pid, &pid) < 0) {
                listen_set_error(ret_error, "LISTEN_PID=\"%s\" is not a process id", listen_quote(e_pid, q, sizeof q));
                r = -EINVAL;
                goto finish;
        }
        if (pid != (int) getpid()) {
                /* Meant for another process (we were forked or exec()ed by the one it named). */
                log_debug("LISTEN_PID=%d is not us (%d): not socket-activated", pid, (int) getpid());
                r = 0;
                goto finish;
        }
        e_fds = getenv("LISTEN_FDS");
        if (!e_fds) {
                r = 0;
                goto finish;
        }
        if (listen_parse_positive(e_fds, &n) < 0) {
                listen_set_error(ret_error, "LISTEN_FDS=\"%s\" is not a positive number of sockets",
                                 listen_quote(e_fds, q, sizeof q));
                r = -EINVAL;
                goto finish;
        }
        if (n != 1) {
                listen_set_error(ret_error,
                                 "LISTEN_FDS=%d: credagent takes exactly one listening socket, got %d "
                                 "(one ListenStream= in the .socket unit)", n, n);
                r = -EINVAL;
                goto finish;
        }

        r = listen_check_fd(LISTEN_FDS_START, ret_error);
        if (r < 0)
                goto finish;

        flags = fcntl(LISTEN_FDS_START, F_GETFD);
        if (flags < 0 || fcntl(LISTEN_FDS_START, F_SETFD, flags | FD_CLOEXEC) < 0) {
                r = -errno;
                listen_set_error(ret_error, "cannot set FD_CLOEXEC on fd %d: %s", LISTEN_FDS_START, strerror(-r));
                goto finish;
        }
        log_debug("Socket-activated: listening socket at fd %d", LISTEN_FDS_START);
        *ret_fd = LISTEN_FDS_START;
        r = 1;

finish:
        (void) unsetenv("LISTEN_PID");
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_FDNAMES");
        return r;
}

int listen_fds_from_env(int *ret_fd) {
        return listen_fds_from_env_full(ret_fd, NULL);
}

int notify_send(const char *state) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        const char *e;
        socklen_t salen;
        size_t len, n;
        ssize_t sent;

        if (!state || !*state)
                return -EINVAL;
        e = getenv("NOTIFY_SOCKET");
        if (!e || !*e)
                return 0;

        n = strlen(e);
        if (e[0] == '@') {
                /* Abstract namespace: a leading NUL, then the name, not NUL-terminated. */
                if (n < 2 || n > sizeof sa.sun_path)
                        return -EINVAL;
                memcpy(sa.sun_path + 1, e + 1, n - 1);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
        } else if (e[0] == '/') {
                if (n >= sizeof sa.sun_path)
                        return -EINVAL;
                memcpy(sa.sun_path, e, n + 1);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        } else {
                log_debug("NOTIFY_SOCKET is neither a path nor an abstract name: not notifying");
                return -EAFNOSUPPORT;
        }

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        len = strlen(state);
        sent = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *) &sa, salen);
        if (sent < 0)
                return log_debug_errno(errno, "Failed to notify the service manager: %m");
        if ((size_t) sent != len)
                return -EIO;
        return 1;
}
