/* SPDX-License-Identifier: ISC */
/* Socket activation (LISTEN_FDS/LISTEN_PID) and readiness notification (NOTIFY_SOCKET),
 * against real sockets.  The LISTEN_FDS cases run in a forked child each, since they put
 * descriptors at fd 3 and 4 and set the child's own pid in LISTEN_PID. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ipc/listen.h"
#include "macro.h"

#define UNTOUCHED (-77)

#define CHILD_CHECK(x)                                                                          \
        do {                                                                                    \
                if (!(x)) {                                                                     \
                        fprintf(stderr, "%s:%d: in the child: check failed: %s\n", __FILE__,    \
                                __LINE__, #x);                                                  \
                        return 1;                                                               \
                }                                                                               \
        } while (0)

/* Runs F in a forked child; returns its exit status (128+signal when killed). */
static int run_child(int (*f)(void)) {
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(f());
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Moves FD to TARGET (whatever was at TARGET is replaced).  Returns TARGET or -1. */
static int place_at(int fd, int target) {
        if (fd < 0)
                return -1;
        if (fd == target)
                return fd;
        if (dup2(fd, target) < 0)
                return -1;
        close(fd);
        return target;
}

/* An AF_UNIX socket of TYPE bound to an autobound abstract address; listening if LISTENING. */
static int unix_socket(int type, int listening) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type, 0);

        if (fd < 0)
                return -1;
        /* An address of just the family: the kernel picks a unique abstract name. */
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa_family_t)) < 0 || (listening && listen(fd, 8) < 0)) {
                close(fd);
                return -1;
        }
        return fd;
}

static void set_listen_env(pid_t pid, const char *fds) {
        char buf[32];

        snprintf(buf, sizeof buf, "%d", (int) pid);
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDS", fds, 1);
        setenv("LISTEN_FDNAMES", "agent", 1);
}

static int env_clean(void) {
        return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
}

/* ------------------------------------------------------------------------------ LISTEN_FDS */

static int child_activated(void) {
        struct sockaddr_un sa;
        socklen_t len = sizeof sa;
        int fd = UNTOUCHED, c, a, flags;
        char *reason = NULL;

        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 3) == 3);
        flags = fcntl(3, F_GETFD);
        CHILD_CHECK(flags >= 0 && fcntl(3, F_SETFD, flags & ~FD_CLOEXEC) == 0);
        set_listen_env(getpid(), "1");

        CHILD_CHECK(listen_fds_from_env_full(&fd, &reason) == 1);
        CHILD_CHECK(fd == 3);
        CHILD_CHECK(reason == NULL);
        CHILD_CHECK(fcntl(3, F_GETFD) & FD_CLOEXEC);
        CHILD_CHECK(env_clean());

        /* It is the very socket: a connection to its address is accepted on fd 3. */
        CHILD_CHECK(getsockname(3, (struct sockaddr *) &sa, &len) == 0);
        c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHILD_CHECK(c >= 0);
        CHILD_CHECK(connect(c, (struct sockaddr *) &sa, len) == 0);
        a = accept(3, NULL, NULL);
        CHILD_CHECK(a >= 0);
        CHILD_CHECK(write(c, "x", 1) == 1);
        char b = 0;
        CHILD_CHECK(read(a, &b, 1) == 1 && b == 'x');

        /* A second call finds nothing: the environment is gone. */
        fd = UNTOUCHED;
        CHILD_CHECK(listen_fds_from_env(&fd) == 0);
        CHILD_CHECK(fd == UNTOUCHED);
        return 0;
}

static void test_activated(void **state) {
        assert_int_equal(run_child(child_activated), 0);
}

static int child_not_activated(void) {
        int fd = UNTOUCHED;

        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 3) == 3);
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        CHILD_CHECK(listen_fds_from_env(&fd) == 0);
        CHILD_CHECK(fd == UNTOUCHED);

        /* LISTEN_FDS without LISTEN_PID: not for us either. */
        setenv("LISTEN_FDS", "1", 1);
        CHILD_CHECK(listen_fds_from_env(&fd) == 0);
        CHILD_CHECK(fd == UNTOUCHED);
        CHILD_CHECK(env_clean());

        /* Our LISTEN_PID but no LISTEN_FDS: nothing passed (sd_listen_fds() says 0 too). */
        set_listen_env(getpid(), "1");
        unsetenv("LISTEN_FDS");
        CHILD_CHECK(listen_fds_from_env(&fd) == 0);
        CHILD_CHECK(fd == UNTOUCHED);
        CHILD_CHECK(env_clean());
        return 0;
}

static void test_not_activated(void **state) {
        assert_int_equal(run_child(child_not_activated), 0);
}

static int child_wrong_pid(void) {
        int fd = UNTOUCHED, flags;
        char *reason = NULL;

        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 3) == 3);
        flags = fcntl(3, F_GETFD);
        CHILD_CHECK(flags >= 0 && fcntl(3, F_SETFD, flags & ~FD_CLOEXEC) == 0);
        /* The parent's pid: what a child of an activated process would see. */
        set_listen_env(getppid(), "1");
        CHILD_CHECK(listen_fds_from_env_full(&fd, &reason) == 0);
        CHILD_CHECK(fd == UNTOUCHED);
        CHILD_CHECK(reason == NULL);
        CHILD_CHECK(env_clean());
        CHILD_CHECK(!(fcntl(3, F_GETFD) & FD_CLOEXEC)); /* not ours: not touched */
        return 0;
}

static void test_wrong_pid(void **state) {
        assert_int_equal(run_child(child_wrong_pid), 0);
}

/* Expects -ERR and a reason containing NEEDLE for what the child set up at fd 3 (and 4). */
static int expect_error(const char *fds, int err, const char *needle) {
        int fd = UNTOUCHED;
        char *reason = NULL;
        int r;

        set_listen_env(getpid(), fds);
        r = listen_fds_from_env_full(&fd, &reason);
        if (r != -err || fd != UNTOUCHED || !reason || !strstr(reason, needle) || !env_clean()) {
                fprintf(stderr, "listen_fds_from_env_full() = %d (want %d), fd %d, reason \"%s\" (want \"%s\")\n",
                        r, -err, fd, reason ? reason : "(null)", needle);
                return 1;
        }
        free(reason);
        return 0;
}

static int child_two_fds(void) {
        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 3) == 3);
        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 4) == 4);
        return expect_error("2", EINVAL, "exactly one");
}

static int child_not_listening(void) {
        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 0), 3) == 3);
        return expect_error("1", EINVAL, "not listening");
}

static int child_connected(void) {
        int sv[2];

        /* What Accept=yes would pass: one end of a connection. */
        CHILD_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        CHILD_CHECK(place_at(sv[0], 3) == 3);
        return expect_error("1", EINVAL, "not listening");
}

static int child_datagram(void) {
        CHILD_CHECK(place_at(unix_socket(SOCK_DGRAM, 0), 3) == 3);
        return expect_error("1", EINVAL, "datagram socket");
}

static int child_inet(void) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        CHILD_CHECK(fd >= 0);
        CHILD_CHECK(bind(fd, (struct sockaddr *) &sin, sizeof sin) == 0);
        CHILD_CHECK(listen(fd, 1) == 0);
        CHILD_CHECK(place_at(fd, 3) == 3);
        return expect_error("1", EINVAL, "not an AF_UNIX socket");
}

static int child_pipe(void) {
        int p[2];

        CHILD_CHECK(pipe(p) == 0);
        CHILD_CHECK(place_at(p[0], 3) == 3);
        return expect_error("1", EINVAL, "not a socket");
}

static int child_closed(void) {
        close(3);
        return expect_error("1", EBADF, "not open");
}

static void test_two_fds(void **state) {
        assert_int_equal(run_child(child_two_fds), 0);
}

static void test_not_listening(void **state) {
        assert_int_equal(run_child(child_not_listening), 0);
        assert_int_equal(run_child(child_connected), 0);
}

static void test_other_kinds(void **state) {
        assert_int_equal(run_child(child_datagram), 0);
        assert_int_equal(run_child(child_inet), 0);
        assert_int_equal(run_child(child_pipe), 0);
        assert_int_equal(run_child(child_closed), 0);
}

static int child_bad_values(void) {
        static const char *const bad[] = { "", "abc", "12abc", " 12", "+12", "-12", "0", "99999999999", "1.0" };
        char buf[32];
        int fd = UNTOUCHED;

        CHILD_CHECK(place_at(unix_socket(SOCK_STREAM, 1), 3) == 3);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                set_listen_env(getpid(), "1");
                setenv("LISTEN_PID", bad[i], 1);
                CHILD_CHECK(listen_fds_from_env(&fd) == -EINVAL);
                CHILD_CHECK(env_clean());

                set_listen_env(getpid(), bad[i]);
                CHILD_CHECK(listen_fds_from_env(&fd) == -EINVAL);
                CHILD_CHECK(env_clean());
        }
        CHILD_CHECK(fd == UNTOUCHED);

        /* The reason quotes the offending value, escaped and capped. */
        char *reason = NULL;
        set_listen_env(getpid(), "1");
        setenv("LISTEN_PID", "7\"x", 1);
        CHILD_CHECK(listen_fds_from_env_full(&fd, &reason) == -EINVAL);
        CHILD_CHECK(reason && strstr(reason, "LISTEN_PID=\"7\\\"x\""));
        free(reason);

        /* A valid LISTEN_PID with leading zeros is still a number. */
        snprintf(buf, sizeof buf, "000%d", (int) getpid());
        set_listen_env(getpid(), "1");
        setenv("LISTEN_PID", buf, 1);
        CHILD_CHECK(listen_fds_from_env(&fd) == 1 && fd == 3);
        return 0;
}

static void test_bad_values(void **state) {
        assert_int_equal(run_child(child_bad_values), 0);
}

/* ------------------------------------------------------------------------------ NOTIFY_SOCKET */

/* Receives one datagram on FD with its sender's credentials; checks it is exactly WANT, sent
 * by this process, and that nothing else is queued. */
static void expect_datagram(int fd, const char *want) {
        char data[512];
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(struct ucred))];
        } control = {};
        struct iovec iov = { .iov_base = data, .iov_len = sizeof data };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control };
        struct cmsghdr *c;
        struct ucred uc = {};
        ssize_t n;

        n = recvmsg(fd, &mh, MSG_DONTWAIT);
        assert_int_equal(n, (ssize_t) strlen(want));
        assert_false(mh.msg_flags & MSG_TRUNC);
        assert_memory_equal(data, want, strlen(want));

        /* The kernel vouches for the sender, as systemd's NotifyAccess=main relies on. */
        c = CMSG_FIRSTHDR(&mh);
        assert_non_null(c);
        assert_int_equal(c->cmsg_level, SOL_SOCKET);
        assert_int_equal(c->cmsg_type, SCM_CREDENTIALS);
        memcpy(&uc, CMSG_DATA(c), sizeof uc);
        assert_int_equal(uc.pid, getpid());

        n = recv(fd, data, sizeof data, MSG_DONTWAIT);
        assert_int_equal(n, -1);
        assert_int_equal(errno, EAGAIN);
}

static int passcred_dgram(void) {
        int one = 1, fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
        return fd;
}

static void test_notify_path(void **state) {
        char dir[] = "/tmp/test-listen-XXXXXX", path[sizeof dir + 16];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/notify", dir);
        strcpy(sa.sun_path, path);
        fd = passcred_dgram();
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);

        setenv("NOTIFY_SOCKET", path, 1);
        assert_int_equal(notify_send("READY=1"), 1);
        expect_datagram(fd, "READY=1");
        assert_int_equal(notify_send("STATUS=Serving 3 credentials\nREADY=1"), 1);
        expect_datagram(fd, "STATUS=Serving 3 credentials\nREADY=1");
        /* The environment stays: the next state reaches the manager too. */
        assert_string_equal(getenv("NOTIFY_SOCKET"), path);
        assert_int_equal(notify_send("STOPPING=1"), 1);
        expect_datagram(fd, "STOPPING=1");

        /* Nobody listens any more: the error comes back, nothing is sent. */
        close(fd);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(notify_send("READY=1"), -ENOENT);
        assert_int_equal(rmdir(dir), 0);
        unsetenv("NOTIFY_SOCKET");
}

static void test_notify_abstract(void **state) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char name[64], env[sizeof name + 1];
        int fd, n;

        n = snprintf(name, sizeof name, "credagent-test-listen/%d", (int) getpid());
        /* Abstract: leading NUL, the name, no terminating NUL counted in the length. */
        memcpy(sa.sun_path + 1, name, (size_t) n);
        fd = passcred_dgram();
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + n)), 0);

        snprintf(env, sizeof env, "@%s", name);
        setenv("NOTIFY_SOCKET", env, 1);
        assert_int_equal(notify_send("RELOADING=1"), 1);
        expect_datagram(fd, "RELOADING=1");
        assert_int_equal(notify_send("READY=1"), 1);
        expect_datagram(fd, "READY=1");

        /* A name that is a prefix of the bound one is another address. */
        env[strlen(env) - 1] = '\0';
        setenv("NOTIFY_SOCKET", env, 1);
        assert_int_equal(notify_send("READY=1"), -ECONNREFUSED);
        n = (int) recv(fd, name, sizeof name, MSG_DONTWAIT);
        assert_int_equal(n, -1);
        close(fd);
        unsetenv("NOTIFY_SOCKET");
}

static void test_notify_noop_and_errors(void **state) {
        char longpath[200];

        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(notify_send("READY=1"), 0);
        setenv("NOTIFY_SOCKET", "", 1);
        assert_int_equal(notify_send("READY=1"), 0);

        setenv("NOTIFY_SOCKET", "/run/credagent-test-no-such-socket", 1);
        assert_int_equal(notify_send(NULL), -EINVAL);
        assert_int_equal(notify_send(""), -EINVAL);
        assert_int_equal(notify_send("READY=1"), -ENOENT);

        setenv("NOTIFY_SOCKET", "relative/notify", 1);
        assert_int_equal(notify_send("READY=1"), -EAFNOSUPPORT);
        setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
        assert_int_equal(notify_send("READY=1"), -EAFNOSUPPORT);
        setenv("NOTIFY_SOCKET", "@", 1);
        assert_int_equal(notify_send("READY=1"), -EINVAL);

        memset(longpath, 'a', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        setenv("NOTIFY_SOCKET", longpath, 1);
        assert_int_equal(notify_send("READY=1"), -EINVAL);
        longpath[0] = '@';
        setenv("NOTIFY_SOCKET", longpath, 1);
        assert_int_equal(notify_send("READY=1"), -EINVAL);
        unsetenv("NOTIFY_SOCKET");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_activated),
                cmocka_unit_test(test_not_activated),
                cmocka_unit_test(test_wrong_pid),
                cmocka_unit_test(test_two_fds),
                cmocka_unit_test(test_not_listening),
                cmocka_unit_test(test_other_kinds),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_notify_path),
                cmocka_unit_test(test_notify_abstract),
                cmocka_unit_test(test_notify_noop_and_errors),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
