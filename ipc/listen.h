/* SPDX-License-Identifier: ISC */
#pragma once

/* Service-manager integration without libsystemd: socket activation (the LISTEN_FDS protocol
 * of sd_listen_fds(3)) and readiness notification (the NOTIFY_SOCKET protocol of sd_notify(3)).
 * Both speak only to the environment the service manager set up; neither logs above debug. */

/* The first descriptor a service manager passes (SD_LISTEN_FDS_START). */
#define LISTEN_FDS_START 3

/* Takes the listening socket a service manager (systemd's credagent.socket, or
 * systemd-socket-activate) passed to this process, with sd_listen_fds(3) semantics:
 *
 *   - LISTEN_PID unset, or naming another process, or LISTEN_FDS unset: not activated,
 *     returns 0 (*RET_FD untouched).
 *   - LISTEN_PID equal to getpid() and LISTEN_FDS = 1: fd 3 must be an AF_UNIX SOCK_STREAM
 *     socket in the listening state (checked with getsockname(), SO_TYPE and SO_ACCEPTCONN).
 *     It gets FD_CLOEXEC; its O_NONBLOCK flag is left as the manager set it (a .socket unit's
 *     NonBlocking=, off by default).  Returns 1 and stores 3 in *RET_FD; the caller owns it.
 *
 * Whatever the outcome, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed from the
 * environment, so that no child inherits them.  Call this before any other thread is started
 * (it calls unsetenv()) and before fork() (LISTEN_PID names the process that was exec()ed).
 *
 * Errors (*RET_FD untouched): -EINVAL when LISTEN_PID or LISTEN_FDS is not a positive decimal
 * number, when LISTEN_FDS is not 1 (credagent takes exactly one socket), or when fd 3 is not an
 * AF_UNIX stream socket that listens; -EBADF when fd 3 is not open; another negative errno from
 * fcntl() or getsockopt(). */
int listen_fds_from_env(int *ret_fd);

/* As listen_fds_from_env(); in addition, on any error and when RET_ERROR is not NULL, stores
 * in *RET_ERROR a malloc()ed one-line reason for the operator, e.g. "LISTEN_FDS=2: credagent
 * takes exactly one listening socket, got 2" or "fd 3 passed by the service manager is a
 * datagram socket, not a stream socket" (the caller frees it; it stays NULL on ENOMEM).  The
 * reason quotes only the environment's numbers and the socket's kind, nothing secret.  On
 * success or 0, *RET_ERROR is untouched. */
int listen_fds_from_env_full(int *ret_fd, char **ret_error);

/* Sends STATE, one or more newline-separated "VAR=value" assignments of sd_notify(3)
 * ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=free text", "MAINPID=…", "ERRNO=…"), as
 * one datagram to the service manager's socket named by $NOTIFY_SOCKET: an absolute path,
 * or an abstract socket written "@name".  The environment is left as it is, so later states
 * (STOPPING=1 after READY=1) reach the manager too.  STATE is sent verbatim: it must not hold
 * a secret.
 *
 * Returns 1 when the datagram was sent; 0 when NOTIFY_SOCKET is unset or empty (not run by a
 * service manager that wants notifications: a no-op); -EINVAL when STATE is NULL or empty or
 * the address is too long for sockaddr_un; -EAFNOSUPPORT when NOTIFY_SOCKET is neither an
 * absolute path nor "@name" (e.g. systemd ≥ 254's "vsock:" addresses); another negative
 * errno from socket() or sendto() (-ENOENT, -ECONNREFUSED: nobody listens there). */
int notify_send(const char *state);
