/* SPDX-License-Identifier: ISC */
/* The sandbox: every case runs in a forked child that applies a policy and then tries one
 * thing; the parent judges how the child ended.  A forbidden syscall kills the child with
 * SIGSYS (in a -Dsandbox_debug=true build it fails with ENOSYS and the child's stderr names
 * the process and the syscall); an allowed one works.  Landlock cases are skipped on kernels
 * without Landlock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spawn.h>

#include "agent/oauth.h"
#include "agent/sandbox.h"
#include "hsm/hsm.h"
#include "log.h"
#include "secmem.h"

extern char **environ;

/* Exit codes of a child. */
#define CHILD_OK 0
#define CHILD_APPLY_FAILED 2
#define CHILD_DENIED_ENOSYS 40 /* the forbidden call failed with ENOSYS (sandbox_debug) */
#define CHILD_SURVIVED 41      /* the forbidden call returned something else */
#define CHILD_CHECK_FAILED 50  /* an allowed operation failed; +n tells which */

#define CHILD_TIMEOUT_MS 20000

typedef int (*child_fn)(const void *arg);

/* What a forbidden call's return means, for the child's exit code. */
static int forbidden_result(long r) {
        return r < 0 && errno == ENOSYS ? CHILD_DENIED_ENOSYS : CHILD_SURVIVED;
}

struct outcome {
        int status;        /* as from waitpid() */
        char err[8192];    /* the child's stderr */
};

static int wait_child(pid_t pid, int *ret_status) {
        for (int waited = 0; waited < CHILD_TIMEOUT_MS; waited += 5) {
                pid_t r = waitpid(pid, ret_status, WNOHANG);
                if (r == pid)
                        return 0;
                if (r < 0)
                        return -errno;
                nanosleep(&(struct timespec) { 0, 5 * 1000 * 1000 }, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, ret_status, 0);
        return -ETIMEDOUT;
}

static void read_captured(int fd, struct outcome *o) {
        ssize_t n = pread(fd, o->err, sizeof o->err - 1, 0);
        o->err[n > 0 ? n : 0] = '\0';
        close(fd);
}

/* Forks; the child sends stderr to a memfd, warms up, applies P as PROCESS (unless P is
 * NULL) and exits with FN(ARG). */
static void run_child(const char *process, const struct sandbox_policy *p, child_fn fn, const void *arg,
                      struct outcome *o) {
        int errfd = memfd_create("child-stderr", MFD_CLOEXEC);
        pid_t pid;

        assert_true(errfd >= 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(errfd, STDERR_FILENO);
                sandbox_warm_up_openssl();
                sandbox_warm_up(SANDBOX_WARM_RESOLVER);
                if (p && sandbox_apply(process, p) < 0)
                        _exit(CHILD_APPLY_FAILED);
                _exit(fn(arg));
        }
        assert_int_equal(wait_child(pid, &o->status), 0);
        read_captured(errfd, o);
}

static void print_outcome(const char *what, const struct outcome *o) {
        if (WIFSIGNALED(o->status))
                print_message("%s: child killed by signal %d\n", what, WTERMSIG(o->status));
        else
                print_message("%s: child exited %d\n", what, WEXITSTATUS(o->status));
        if (o->err[0])
                print_message("child stderr:\n%s", o->err);
}

/* FN must be forbidden by P: SIGSYS, or in a debug build ENOSYS plus a report naming PROCESS
 * and SYSCALL. */
static void expect_forbidden(const char *process, const struct sandbox_policy *p, child_fn fn, const void *arg,
                             const char *syscall_name) {
        struct outcome o;
        bool ok;

        run_child(process, p, fn, arg, &o);
#ifdef CREDAGENT_SANDBOX_DEBUG
        char want[128];
        snprintf(want, sizeof want, "process %s: syscall %s (", process, syscall_name);
        ok = WIFEXITED(o.status) && WEXITSTATUS(o.status) == CHILD_DENIED_ENOSYS && strstr(o.err, want);
#else
        ok = WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGSYS;
#endif
        if (!ok)
                print_outcome(syscall_name, &o);
        assert_true(ok);
}

/* FN must run to CHILD_OK under P, and (debug builds) nothing may have been reported. */
static void expect_allowed(const char *process, const struct sandbox_policy *p, child_fn fn, const void *arg) {
        struct outcome o;
        bool ok;

        run_child(process, p, fn, arg, &o);
        ok = WIFEXITED(o.status) && WEXITSTATUS(o.status) == CHILD_OK && !strstr(o.err, "sandbox_debug: process");
        if (!ok)
                print_outcome(process, &o);
        assert_true(ok);
}

/* ---- forbidden operations ---------------------------------------------------------------- */

static int do_socket(const void *arg) {
        const int *family = arg;
        return forbidden_result(socket(*family, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

static int do_socket_netlink(const void *arg) {
        return forbidden_result(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
}

static int do_open(const void *arg) {
        const int *flags = arg;
        return forbidden_result(open("/etc/hosts", *flags | O_CLOEXEC, 0600));
}

static int do_open_devnull_write(const void *arg) {
        return forbidden_result(open("/dev/null", O_WRONLY | O_CLOEXEC));
}

static int do_execve(const void *arg) {
        char *const argv[] = { (char *) "true", NULL };
        char *const envp[] = { NULL };
        return forbidden_result(execve("/bin/true", argv, envp));
}

static int do_fork(const void *arg) {
        pid_t pid = fork();
        if (pid == 0)
                _exit(0);
        /* No waitpid(): it is not allowed either, and would hide a fork() that worked. */
        return pid > 0 ? CHILD_SURVIVED : forbidden_result(-1);
}

/* kill() to the parent only with a real-time signal (SIGRTMIN + role asks the supervisor to
 * restart a peer); SIGCHLD is harmless to the test runner if it got through. */
static int do_kill_parent(const void *arg) {
        return forbidden_result(kill(getppid(), SIGCHLD));
}

static volatile sig_atomic_t got_rtmin;
static void on_rtmin(int sig) {
        got_rtmin = 1;
}

static int do_mmap_exec(const void *arg) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return forbidden_result(m == MAP_FAILED ? -1 : 0);
}

static int do_mprotect_exec(const void *arg) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return CHILD_CHECK_FAILED;
        return forbidden_result(mprotect(m, 4096, PROT_READ | PROT_EXEC));
}

static int do_setrlimit(const void *arg) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return CHILD_CHECK_FAILED;
        return forbidden_result(setrlimit(RLIMIT_NOFILE, &rl));
}

static int do_ptrace(const void *arg) {
        return forbidden_result(ptrace(PTRACE_TRACEME, 0, NULL, NULL));
}

static void *thread_socket(void *arg) {
        return (void *) (intptr_t) forbidden_result(socket(AF_INET, SOCK_STREAM, 0));
}

/* A thread started after the filter inherits it, and its violation kills the whole process. */
static int do_socket_in_new_thread(const void *arg) {
        pthread_t t;
        void *res;

        if (pthread_create(&t, NULL, thread_socket, NULL) != 0)
                return CHILD_CHECK_FAILED;
        pthread_join(t, &res);
        return (int) (intptr_t) res;
}

static const int af_inet = AF_INET, af_inet6 = AF_INET6, af_unix = AF_UNIX;
static const int o_rdonly = O_RDONLY, o_rdwr = O_RDWR, o_creat = O_RDONLY | O_CREAT, o_trunc = O_RDONLY | O_TRUNC;

static void test_front_forbids(void **state) {
        const struct sandbox_policy *p = &sandbox_policy_front;

        expect_forbidden("front", p, do_socket, &af_unix, "socket");
        expect_forbidden("front", p, do_socket, &af_inet, "socket");
        expect_forbidden("front", p, do_open, &o_rdonly, "openat");
        expect_forbidden("front", p, do_execve, NULL, "execve");
        expect_forbidden("front", p, do_fork, NULL, "clone");
        expect_forbidden("front", p, do_kill_parent, NULL, "kill");
        expect_forbidden("front", p, do_mmap_exec, NULL, "mmap");
        expect_forbidden("front", p, do_mprotect_exec, NULL, "mprotect");
        expect_forbidden("front", p, do_setrlimit, NULL, "prlimit64");
        expect_forbidden("front", p, do_socket_in_new_thread, NULL, "socket");
}

static void test_net_forbids(void **state) {
        const struct sandbox_policy *p = &sandbox_policy_net;

        expect_forbidden("net", p, do_execve, NULL, "execve");
        expect_forbidden("net", p, do_fork, NULL, "clone");
        expect_forbidden("net", p, do_ptrace, NULL, "ptrace");
        expect_forbidden("net", p, do_open_devnull_write, NULL, "openat");
        expect_forbidden("net", p, do_open, &o_rdwr, "openat");
        expect_forbidden("net", p, do_open, &o_creat, "openat");
        expect_forbidden("net", p, do_open, &o_trunc, "openat");
}

static void test_hsm_forbids(void **state) {
        const struct sandbox_policy *p = &sandbox_policy_hsm;

        expect_forbidden("hsm", p, do_socket, &af_inet, "socket");
        expect_forbidden("hsm", p, do_socket, &af_inet6, "socket");
        expect_forbidden("hsm", p, do_socket_netlink, NULL, "socket");
        expect_forbidden("hsm", p, do_execve, NULL, "execve");
        expect_forbidden("hsm", p, do_fork, NULL, "clone");
        expect_forbidden("hsm", p, do_kill_parent, NULL, "kill");
}

/* ---- allowed operations ------------------------------------------------------------------- */

static void *thread_work(void *arg) {
        unsigned char b[16];
        return (void *) (intptr_t) (getrandom(b, sizeof b, 0) == (ssize_t) sizeof b);
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) {
        got_usr1 = 1;
}

/* What every process does while serving: pipes, socketpairs with descriptor passing, epoll,
 * eventfd, memory, threads, time, randomness, signals to itself, fstat, locked pages. */
static int do_common_work(void) {
        int sv[2], pfd[2], ep, ev, passed;
        char c = 'x', buf[1];
        union {
                struct cmsghdr h;
                char b[CMSG_SPACE(sizeof(int))];
        } ctl = {};
        struct iovec iov = { &c, 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
        struct epoll_event e = { .events = EPOLLIN };
        struct timespec ts;
        struct stat st;
        pthread_t t;
        void *res;
        struct rlimit rl;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(pfd, O_CLOEXEC) < 0)
                return CHILD_CHECK_FAILED + 1;
        /* SCM_RIGHTS over the socketpair, as the supervisor hands out channels */
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pfd[1], sizeof(int));
        if (sendmsg(sv[0], &mh, MSG_NOSIGNAL) != 1)
                return CHILD_CHECK_FAILED + 2;
        memset(&ctl, 0, sizeof ctl);
        mh.msg_controllen = sizeof ctl.b;
        if (recvmsg(sv[1], &mh, MSG_CMSG_CLOEXEC) != 1 || !CMSG_FIRSTHDR(&mh))
                return CHILD_CHECK_FAILED + 3;
        memcpy(&passed, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        if (write(passed, "y", 1) != 1 || read(pfd[0], buf, 1) != 1 || buf[0] != 'y')
                return CHILD_CHECK_FAILED + 4;

        ep = epoll_create1(EPOLL_CLOEXEC);
        ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        e.data.fd = ev;
        if (ep < 0 || ev < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) < 0 || eventfd_write(ev, 1) < 0 ||
            epoll_wait(ep, &e, 1, 1000) != 1)
                return CHILD_CHECK_FAILED + 5;
        if (poll(&(struct pollfd) { .fd = ev, .events = POLLIN }, 1, 0) != 1)
                return CHILD_CHECK_FAILED + 6;

        /* memory: malloc (brk and mmap), locked pages as secmem does */
        void *big = malloc(4 << 20), *locked = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!big || locked == MAP_FAILED || madvise(locked, 4096, MADV_DONTDUMP) < 0)
                return CHILD_CHECK_FAILED + 7;
        (void) mlock(locked, 4096); /* may fail on RLIMIT_MEMLOCK, must not kill */
        (void) munlock(locked, 4096);
        free(big);
        if (munmap(locked, 4096) < 0)
                return CHILD_CHECK_FAILED + 8;

        if (pthread_create(&t, NULL, thread_work, NULL) != 0 || pthread_join(t, &res) != 0 || !res)
                return CHILD_CHECK_FAILED + 9;
        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0 || clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return CHILD_CHECK_FAILED + 10;
        if (signal(SIGUSR1, on_usr1) == SIG_ERR || raise(SIGUSR1) != 0 || !got_usr1 || kill(getpid(), 0) < 0)
                return CHILD_CHECK_FAILED + 11;
        if (fstat(sv[0], &st) < 0 || !S_ISSOCK(st.st_mode))
                return CHILD_CHECK_FAILED + 12;
        if (getrlimit(RLIMIT_CORE, &rl) < 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
                return CHILD_CHECK_FAILED + 13;
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
                return CHILD_CHECK_FAILED + 14;
        if (prctl(PR_SET_NAME, "sandboxed", 0, 0, 0) < 0)
                return CHILD_CHECK_FAILED + 15;
        /* the supervisor's restart request; the test runner counts it */
        if (kill(getppid(), SIGRTMIN) < 0)
                return CHILD_CHECK_FAILED + 16;
        return CHILD_OK;
}

static int do_front_work(const void *arg) {
        const int *listen_fd = arg;
        int r = do_common_work(), fd;

        if (r != CHILD_OK)
                return r;
        /* accept on the listening socket it holds: nobody is waiting, so EAGAIN */
        fd = accept4(*listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0 || errno != EAGAIN)
                return CHILD_CHECK_FAILED + 20;
        return CHILD_OK;
}

static void test_front_allows(void **state) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        /* an abstract address: nothing on disk */
        snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "credagent-test-sandbox-%d", (int) getpid());
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 4), 0);
        got_rtmin = 0;
        expect_allowed("front", &sandbox_policy_front, do_front_work, &fd);
        assert_true(got_rtmin); /* the child's SIGRTMIN reached its parent */
        close(fd);
}

struct net_args {
        uint16_t port_a, port_b; /* two TCP listeners on 127.0.0.1 */
        bool expect_b_denied;    /* tcp_connect_ports names only port_a and Landlock has TCP rules */
};

static int tcp_connect(uint16_t port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return -errno;
        r = connect(fd, (struct sockaddr *) &sin, sizeof sin) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static int do_net_work(const void *arg) {
        const struct net_args *a = arg;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
        int r = do_common_work(), fd;
        char buf[64];

        if (r != CHILD_OK)
                return r;
        if (tcp_connect(a->port_a) < 0)
                return CHILD_CHECK_FAILED + 20;
        r = tcp_connect(a->port_b);
        if (a->expect_b_denied ? r != -EACCES : r < 0)
                return CHILD_CHECK_FAILED + 21;
        fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return CHILD_CHECK_FAILED + 22;
        close(fd);
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
                return CHILD_CHECK_FAILED + 23;
        close(fd);
        /* AF_UNIX fails softly, so glibc's nscd client falls back */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 || errno != EAFNOSUPPORT)
                return CHILD_CHECK_FAILED + 24;
        /* name resolution from /etc/hosts after the warm-up */
        if (getaddrinfo("localhost", "443", &hints, &ai) != 0)
                return CHILD_CHECK_FAILED + 25;
        freeaddrinfo(ai);
        /* reading a resolver file */
        fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) < 0)
                return CHILD_CHECK_FAILED + 26;
        close(fd);
        /* a file outside its list: Landlock says no where the kernel has it */
        fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        if (sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK) ? fd >= 0 || errno != EACCES : fd < 0)
                return CHILD_CHECK_FAILED + 27;
        if (fd >= 0)
                close(fd);
        return CHILD_OK;
}

static int tcp_listener(uint16_t *ret_port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sin;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sin, sizeof sin), 0);
        assert_int_equal(listen(fd, 8), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sin, &len), 0);
        *ret_port = ntohs(sin.sin_port);
        return fd;
}

static void test_net_allows(void **state) {
        struct net_args a = {};
        int la = tcp_listener(&a.port_a), lb = tcp_listener(&a.port_b);

        expect_allowed("net", &sandbox_policy_net, do_net_work, &a);

        /* With a port list, Landlock (ABI ≥ 4) lets connect() reach only those ports. */
        const uint16_t ports[] = { a.port_a, 0 };
        struct sandbox_policy p = sandbox_policy_net;
        p.tcp_connect_ports = ports;
        a.expect_b_denied = sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK_NET);
        expect_allowed("net", &p, do_net_work, &a);
        close(la);
        close(lb);
}

struct hsm_args {
        char dir[64];
        char sock[108];
};

static int do_hsm_work(const void *arg) {
        const struct hsm_args *a = arg;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char path[128], path2[128], buf[8];
        int r = do_common_work(), fd;

        if (r != CHILD_OK)
                return r;
        /* p11-kit-client.so: a Unix socket to the server */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a->sock);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return CHILD_CHECK_FAILED + 20;
        close(fd);
        /* SoftHSM2's token files: create, lock, write, truncate, sync, rename, read, unlink */
        snprintf(path, sizeof path, "%s/token.object", a->dir);
        snprintf(path2, sizeof path2, "%s/token.object.new", a->dir);
        fd = open(path2, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return CHILD_CHECK_FAILED + 21;
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        if (fcntl(fd, F_SETLKW, &fl) < 0 || write(fd, "secret!", 7) != 7 || ftruncate(fd, 6) < 0 ||
            fsync(fd) < 0 || flock(fd, LOCK_EX) < 0)
                return CHILD_CHECK_FAILED + 22;
        close(fd);
        if (rename(path2, path) < 0)
                return CHILD_CHECK_FAILED + 23;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) != 6)
                return CHILD_CHECK_FAILED + 24;
        close(fd);
        if (unlink(path) < 0)
                return CHILD_CHECK_FAILED + 25;
        snprintf(path, sizeof path, "%s/sub", a->dir);
        if (mkdir(path, 0700) < 0 || rmdir(path) < 0)
                return CHILD_CHECK_FAILED + 26;
        return CHILD_OK;
}

static void test_hsm_allows(void **state) {
        struct hsm_args a;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        snprintf(a.dir, sizeof a.dir, "/tmp/test-sandbox-XXXXXX");
        assert_non_null(mkdtemp(a.dir));
        snprintf(a.sock, sizeof a.sock, "%s/p11.sock", a.dir);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", a.sock);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 4), 0);

        expect_allowed("hsm", &sandbox_policy_hsm, do_hsm_work, &a);

        close(fd);
        unlink(a.sock);
        assert_int_equal(rmdir(a.dir), 0); /* the child left nothing behind */
}

/* ---- the real libraries under the policies ---------------------------------------------- */

static int spawn(char *const argv[], pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int r;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        *ret_pid = pid;
        return 0;
}

static int run_tool(char *const argv[]) {
        pid_t pid = 0;
        int status, r = spawn(argv, &pid);

        if (r < 0)
                return r;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static void rm_rf(const char *dir) {
        char *rm[] = { (char *) "rm", (char *) "-rf", (char *) "--", (char *) dir, NULL };
        assert_int_equal(run_tool(rm), 0);
}

#define SECRET_VALUE "s3cr3t-value-for-the-sandbox-test"

struct hsm_real {
        char module[256];
        char pin_source[300];
        bool write; /* store the secret first, unsandboxed */
};

/* The hsm process's work: open the token, (sandbox,) read the secret twice (the first read
 * logs in, which makes SoftHSM2 rewrite its token file and read the PIN file), close. */
static int do_hsm_real(const void *arg) {
        const struct hsm_real *a = arg;
        struct hsm_params hp = { .module = a->module, .token_uri = "pkcs11:token=sandbox-test",
                                 .pin_source = a->pin_source };
        struct hsm *h = NULL;
        char *err = NULL;
        int r;

        if (hsm_open(&hp, &h, &err) < 0) {
                fprintf(stderr, "hsm_open(%s): %s\n", a->module, err ? err : "?");
                return CHILD_CHECK_FAILED + 1;
        }
        if (a->write) {
                struct secbuf *b = secbuf_new(64);
                r = b ? secbuf_append_str(b, SECRET_VALUE) : -ENOMEM;
                if (r >= 0)
                        r = hsm_write_secret(h, "Sandbox_Test", b, NULL);
                secbuf_free(b);
                hsm_close(h);
                return r < 0 ? CHILD_CHECK_FAILED + 2 : CHILD_OK;
        }
        if (sandbox_apply("hsm", &sandbox_policy_hsm) < 0)
                return CHILD_APPLY_FAILED;
        for (int i = 0; i < 2; i++) {
                struct secbuf *got = NULL;
                r = hsm_read_secret(h, "pkcs11:token=sandbox-test;object=Sandbox_Test;type=data", &got);
                if (r < 0 || got->len != strlen(SECRET_VALUE) || memcmp(got->data, SECRET_VALUE, got->len) != 0)
                        return CHILD_CHECK_FAILED + 3;
                secbuf_free(got);
        }
        hsm_close(h);
        return CHILD_OK;
}

static bool find_module(const char *name, char *ret, size_t size) {
        for (const char *const *d = hsm_default_module_dirs; *d; d++) {
                snprintf(ret, size, "%s/%s", *d, name);
                if (access(ret, R_OK) == 0)
                        return true;
        }
        return false;
}

static void test_hsm_real_module(void **state) {
        char dir[] = "/tmp/test-sandbox-hsm-XXXXXX", conf[128], sock[128], addr[160];
        struct hsm_real a = { .write = true };
        pid_t server = -1;
        FILE *f;

        if (!find_module("libsofthsm2.so", a.module, sizeof a.module) &&
            access(strcpy(a.module, "/usr/lib/softhsm/libsofthsm2.so"), R_OK) < 0) {
                skip();
                return;
        }
        assert_non_null(mkdtemp(dir));
        snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
        f = fopen(conf, "we");
        assert_non_null(f);
        fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", dir);
        fclose(f);
        setenv("SOFTHSM2_CONF", conf, 1);
        snprintf(a.pin_source, sizeof a.pin_source, "file:%s/pin", dir);
        f = fopen(a.pin_source + 5, "we");
        assert_non_null(f);
        fputs("4321\n", f);
        fclose(f);
        assert_int_equal(chmod(a.pin_source + 5, 0600), 0);
        char *init[] = { (char *) "softhsm2-util", (char *) "--init-token", (char *) "--free",
                         (char *) "--label", (char *) "sandbox-test", (char *) "--pin", (char *) "4321",
                         (char *) "--so-pin", (char *) "8765", NULL };
        assert_int_equal(run_tool(init), 0);

        expect_allowed("hsm", NULL, do_hsm_real, &a);       /* store the secret */
        a.write = false;
        expect_allowed("hsm", NULL, do_hsm_real, &a);       /* SoftHSM2 in the sandbox */

        /* The same token served by `p11-kit server`, through p11-kit-client.so. */
        char softhsm[sizeof a.module];
        snprintf(softhsm, sizeof softhsm, "%s", a.module);
        snprintf(sock, sizeof sock, "%s/p11-kit.sock", dir);
        char *serve[] = { (char *) "p11-kit", (char *) "server", (char *) "-f", (char *) "-n", sock,
                          (char *) "--provider", softhsm, (char *) "pkcs11:token=sandbox-test", NULL };
        if (find_module("p11-kit-client.so", a.module, sizeof a.module) && spawn(serve, &server) == 0) {
                for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++)
                        nanosleep(&(struct timespec) { 0, 10 * 1000 * 1000 }, NULL);
                if (access(sock, F_OK) == 0) {
                        snprintf(addr, sizeof addr, "unix:path=%s", sock);
                        setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
                        expect_allowed("hsm", NULL, do_hsm_real, &a);
                        unsetenv("P11_KIT_SERVER_ADDRESS");
                } else
                        print_message("p11-kit server did not start: p11-kit-client.so case not run\n");
                kill(server, SIGTERM);
                waitpid(server, NULL, 0);
        } else
                print_message("no p11-kit-client.so or p11-kit server: that case not run\n");
        unsetenv("SOFTHSM2_CONF");
        rm_rf(dir);
}

/* A one-connection HTTPS token endpoint on 127.0.0.1, in a thread of the (unsandboxed) parent. */
struct tls_server {
        SSL_CTX *ctx;
        int listen_fd;
        uint16_t port;
        bool saw_basic; /* the request carried an Authorization: Basic header */
};

static void *tls_serve(void *arg) {
        struct tls_server *t = arg;
        static const char body[] = "{\"access_token\":\"sandbox-token\",\"token_type\":\"Bearer\",\"expires_in\":3600}";
        char req[8192], resp[512];
        size_t got = 0;
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        SSL *ssl;

        if (fd < 0)
                return NULL;
        ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
                /* headers, then Content-Length bytes of body */
                char *end = NULL;
                long want = -1;
                while (got < sizeof req - 1) {
                        int n = SSL_read(ssl, req + got, (int) (sizeof req - 1 - got));
                        if (n <= 0)
                                break;
                        got += (size_t) n;
                        req[got] = '\0';
                        if (!end && (end = strstr(req, "\r\n\r\n"))) {
                                char *cl = strcasestr(req, "\r\nContent-Length:");
                                want = cl ? strtol(cl + 17, NULL, 10) : 0;
                        }
                        if (end && (long) (got - (size_t) (end + 4 - req)) >= want)
                                break;
                }
                t->saw_basic = strcasestr(req, "\r\nAuthorization: Basic ") != NULL;
                int n = snprintf(resp, sizeof resp,
                                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                                 "Connection: close\r\n\r\n%s", strlen(body), body);
                SSL_write(ssl, resp, n);
                SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
        return NULL;
}

struct net_real {
        char url[64];
        char ca[128];
};

/* The net process's work: warm-up (done by run_child), sandbox with the CA bundle added at
 * run time, then one token request through libcurl and OpenSSL. */
static int do_net_real(const void *arg) {
        const struct net_real *a = arg;
        const char *extra[] = { a->ca, NULL };
        struct sandbox_policy p = sandbox_policy_net;
        struct secbuf *secret = secbuf_new(64);
        struct oauth_result res = {};
        int r;

        if (oauth_global_init() < 0 || !secret || secbuf_append_str(secret, SECRET_VALUE) < 0)
                return CHILD_CHECK_FAILED + 1;
        p.fs_read_extra = extra;
        if (sandbox_apply("net", &p) < 0)
                return CHILD_APPLY_FAILED;
        struct oauth_request req = {
                .token_url = a->url, .client_auth = CLIENT_AUTH_BASIC, .client_id = "sandbox-client",
                .client_secret = secret, .scope = "read", .ca_file = a->ca,
                .connect_timeout = 5, .timeout = 10, .default_ttl = 300, .max_ttl = 86400,
        };
        r = oauth_fetch(&req, NULL, &res);
        if (r < 0 || res.outcome != OAUTH_OK || !res.access_token || strcmp(res.access_token, "sandbox-token") != 0) {
                fprintf(stderr, "oauth_fetch: r=%d outcome=%d http=%ld %s\n", r, (int) res.outcome,
                        res.http_status, res.description);
                return CHILD_CHECK_FAILED + 2;
        }
        oauth_result_clear(&res);
        secbuf_free(secret);
        return CHILD_OK;
}

static void test_net_real_fetch(void **state) {
        char dir[] = "/tmp/test-sandbox-net-XXXXXX", key[128], cert[128];
        struct tls_server t = {};
        struct net_real a;
        pid_t server;
        int status;

        assert_non_null(mkdtemp(dir));
        snprintf(key, sizeof key, "%s/key.pem", dir);
        snprintf(cert, sizeof cert, "%s/cert.pem", dir);
        char *req[] = { (char *) "openssl", (char *) "req", (char *) "-x509", (char *) "-newkey", (char *) "ec",
                        (char *) "-pkeyopt", (char *) "ec_paramgen_curve:prime256v1", (char *) "-nodes",
                        (char *) "-keyout", key, (char *) "-out", cert, (char *) "-days", (char *) "1",
                        (char *) "-subj", (char *) "/CN=127.0.0.1", (char *) "-addext",
                        (char *) "subjectAltName=IP:127.0.0.1", NULL };
        assert_int_equal(run_tool(req), 0);

        t.ctx = SSL_CTX_new(TLS_server_method());
        assert_non_null(t.ctx);
        assert_int_equal(SSL_CTX_use_certificate_file(t.ctx, cert, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(t.ctx, key, SSL_FILETYPE_PEM), 1);
        t.listen_fd = tcp_listener(&t.port);
        /* The server is a process, not a thread: forking the net child while a thread of ours
         * may hold a lock (ASan's allocator, as the thread starts) left the child deadlocked
         * now and then in the sanitizer build. */
        fflush(NULL);
        server = fork();
        assert_true(server >= 0);
        if (server == 0) {
                alarm(CHILD_TIMEOUT_MS / 1000 + 5); /* never outlives a failed test for long */
                tls_serve(&t);
                _exit(t.saw_basic ? 0 : 1);
        }

        snprintf(a.url, sizeof a.url, "https://127.0.0.1:%u/token", (unsigned) t.port);
        snprintf(a.ca, sizeof a.ca, "%s", cert); /* self-signed: its own CA */
        expect_allowed("net", NULL, do_net_real, &a);

        /* It saw the request, with an Authorization: Basic header. */
        assert_int_equal(waitpid(server, &status, 0), server);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(t.listen_fd);
        SSL_CTX_free(t.ctx);
        rm_rf(dir);
}

/* ---- every thread: Seccomp 2, NoNewPrivs 1 ------------------------------------------------ */

static void *thread_block(void *arg) {
        int fd = *(int *) arg;
        char c;
        (void) !read(fd, &c, 1); /* until the parent lets go */
        return NULL;
}

#define N_THREADS 3

/* Reads /proc/PID/task/<tid>/status of every task; returns the number of tasks that show
 * Seccomp: 2 and NoNewPrivs: 1, and stores the number of tasks in *RET_TASKS. */
static int count_confined_tasks(pid_t pid, int *ret_tasks) {
        char dir[64], path[384], line[256];
        DIR *d;
        struct dirent *de;
        int confined = 0, tasks = 0;

        snprintf(dir, sizeof dir, "/proc/%d/task", (int) pid);
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d))) {
                bool seccomp = false, nnp = false;
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                tasks++;
                snprintf(path, sizeof path, "%s/%s/status", dir, de->d_name);
                f = fopen(path, "re");
                assert_non_null(f);
                while (fgets(line, sizeof line, f)) {
                        if (strcmp(line, "Seccomp:\t2\n") == 0)
                                seccomp = true;
                        if (strcmp(line, "NoNewPrivs:\t1\n") == 0)
                                nnp = true;
                }
                fclose(f);
                confined += seccomp && nnp;
        }
        closedir(d);
        *ret_tasks = tasks;
        return confined;
}

static bool core_limit_is_zero(pid_t pid) {
        char path[64], line[256];
        bool zero = false;
        FILE *f;

        snprintf(path, sizeof path, "/proc/%d/limits", (int) pid);
        f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
                unsigned long soft, hard;
                if (sscanf(line, "Max core file size %lu %lu", &soft, &hard) == 2)
                        zero = soft == 0 && hard == 0;
        }
        fclose(f);
        return zero;
}

static void check_threads_confined(const char *process, const struct sandbox_policy *p) {
        int ready[2], go[2], status, tasks = 0, confined;
        char c;
        pid_t pid;

        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pthread_t t[N_THREADS];

                close(ready[0]);
                close(go[1]);
                /* threads first: TSYNC must reach them */
                for (int i = 0; i < N_THREADS; i++)
                        if (pthread_create(&t[i], NULL, thread_block, &go[0]) != 0)
                                _exit(CHILD_CHECK_FAILED);
                sandbox_warm_up_openssl();
                sandbox_warm_up(SANDBOX_WARM_RESOLVER);
                if (sandbox_apply(process, p) < 0)
                        _exit(CHILD_APPLY_FAILED);
                if (write(ready[1], "R", 1) != 1)
                        _exit(CHILD_CHECK_FAILED + 1);
                for (int i = 0; i < N_THREADS; i++)
                        pthread_join(t[i], NULL);
                _exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? CHILD_OK : CHILD_CHECK_FAILED + 2);
        }
        close(ready[1]);
        close(go[0]);
        assert_int_equal(read(ready[0], &c, 1), 1);

        confined = count_confined_tasks(pid, &tasks);
        assert_int_equal(tasks, N_THREADS + 1);
        assert_int_equal(confined, tasks);
        assert_true(core_limit_is_zero(pid));

        close(go[1]); /* the threads' read() returns 0 */
        assert_int_equal(wait_child(pid, &status), 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), CHILD_OK);
        close(ready[0]);
}

static void test_every_thread_confined(void **state) {
        check_threads_confined("front", &sandbox_policy_front);
        check_threads_confined("net", &sandbox_policy_net);
        check_threads_confined("hsm", &sandbox_policy_hsm);
}

/* ---- Landlock alone (no seccomp): what it adds ----------------------------------------- */

static int do_landlock_front(const void *arg) {
        int fd;

        if (sandbox_landlock("front", &sandbox_policy_front) < 0)
                return CHILD_APPLY_FAILED;
        fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 1;
        fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 2;
        if (kill(getppid(), 0) < 0)
                return CHILD_CHECK_FAILED + 3; /* signals to the supervisor are not scoped */
        if (sandbox_landlock_abi() >= 4) {
                struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (s < 0 || bind(s, (struct sockaddr *) &sin, sizeof sin) == 0 || errno != EACCES)
                        return CHILD_CHECK_FAILED + 4;
                close(s);
        }
        return CHILD_OK;
}

static int do_landlock_net(const void *arg) {
        struct sandbox_policy p = sandbox_policy_net;
        const char *extra[] = { "/etc/services", NULL };
        int fd;

        p.fs_read_extra = extra;
        if (sandbox_landlock("net", &p) < 0)
                return CHILD_APPLY_FAILED;
        fd = open("/etc/hosts", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return CHILD_CHECK_FAILED + 1;
        close(fd);
        fd = open("/etc/hosts", O_WRONLY | O_APPEND | O_CLOEXEC); /* read-only even for root */
        if (fd >= 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 2;
        fd = open("/etc/services", O_RDONLY | O_CLOEXEC);   /* added at run time */
        if (access("/etc/services", F_OK) == 0 && fd < 0)
                return CHILD_CHECK_FAILED + 3;
        if (fd >= 0)
                close(fd);
        fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 4;
        return CHILD_OK;
}

static int do_landlock_hsm(const void *arg) {
        const char *dir = arg;
        char path[128];
        char *const argv[] = { (char *) "true", NULL };
        char *const envp[] = { NULL };
        int fd;

        if (sandbox_landlock("hsm", &sandbox_policy_hsm) < 0)
                return CHILD_APPLY_FAILED;
        if (execve("/bin/true", argv, envp) == 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 1;
        snprintf(path, sizeof path, "%s/fifo", dir);
        if (mkfifo(path, 0600) == 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 2;
        snprintf(path, sizeof path, "%s/link", dir);
        if (symlink("/etc/hosts", path) == 0 || errno != EACCES)
                return CHILD_CHECK_FAILED + 3;
        snprintf(path, sizeof path, "%s/file", dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return CHILD_CHECK_FAILED + 4;
        close(fd);
        if (unlink(path) < 0)
                return CHILD_CHECK_FAILED + 5;
        return CHILD_OK;
}

static void test_landlock(void **state) {
        char dir[] = "/tmp/test-sandbox-ll-XXXXXX";

        if (!sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK)) {
                skip();
                return;
        }
        expect_allowed("front", NULL, do_landlock_front, NULL);
        expect_allowed("net", NULL, do_landlock_net, NULL);
        assert_non_null(mkdtemp(dir));
        expect_allowed("hsm", NULL, do_landlock_hsm, dir);
        assert_int_equal(rmdir(dir), 0);
}

/* ---- kernel features, names, bad input --------------------------------------------------- */

static void test_kernel_features(void **state) {
        int sv[2];

        assert_false(sandbox_kernel_has(_SANDBOX_FEATURE_MAX));
        assert_false(sandbox_kernel_has((enum sandbox_feature) -1));
        assert_int_equal(sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK), sandbox_landlock_abi() >= 1);
        assert_int_equal(sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK_NET), sandbox_landlock_abi() >= 4);

        /* When SO_PEERPIDFD is reported, it really gives a pidfd of the peer (this process). */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        if (sandbox_kernel_has(SANDBOX_FEATURE_SO_PEERPIDFD)) {
                int pidfd = -1;
                socklen_t len = sizeof pidfd;
                char path[64], line[128];
                bool found = false;
                FILE *f;

                assert_int_equal(getsockopt(sv[0], SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd, &len), 0);
                snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
                f = fopen(path, "re");
                assert_non_null(f);
                while (fgets(line, sizeof line, f)) {
                        int pid;
                        if (sscanf(line, "Pid: %d", &pid) == 1)
                                found = pid == getpid();
                }
                fclose(f);
                close(pidfd);
                assert_true(found);
        } else {
                int pidfd = -1;
                socklen_t len = sizeof pidfd;
                assert_int_equal(getsockopt(sv[0], SOL_SOCKET, 77, &pidfd, &len), -1);
        }
        if (!sandbox_kernel_has(SANDBOX_FEATURE_SO_PASSRIGHTS)) {
                int zero = 0;
                assert_int_equal(setsockopt(sv[0], SOL_SOCKET, 83 /* SO_PASSRIGHTS */, &zero, sizeof zero), -1);
        }
        close(sv[0]);
        close(sv[1]);
}

static int do_bad_policy(const void *arg) {
        struct sandbox_policy p = sandbox_policy_front;

        p.groups |= 1u << 30;
        if (sandbox_apply("front", &p) != -EINVAL || sandbox_apply("front", NULL) != -EINVAL ||
            sandbox_apply(NULL, &sandbox_policy_front) != -EINVAL)
                return CHILD_CHECK_FAILED;
        /* nothing was applied: still free to fork */
        pid_t pid = fork();
        if (pid == 0)
                _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
                return CHILD_CHECK_FAILED + 1;
        return CHILD_OK;
}

static void test_names_and_bad_input(void **state) {
        assert_string_equal(sandbox_group_name(SB_STDIO), "SB_STDIO");
        assert_string_equal(sandbox_group_name(SB_INET_CLIENT), "SB_INET_CLIENT");
        assert_string_equal(sandbox_group_name(SB_FILE_WRITE), "SB_FILE_WRITE");
        assert_null(sandbox_group_name(0));
        assert_null(sandbox_group_name(SB_STDIO | SB_THREADS));
        expect_allowed("front", NULL, do_bad_policy, NULL);
}

/* ---- the test hook --------------------------------------------------------------------- */

#ifdef CREDAGENT_TEST_HOOKS
static void check_hook(const char *process, const struct sandbox_policy *p, const char *syscall_name) {
        int ready[2], status;
        char c;
        pid_t pid;
        int errfd = memfd_create("hook-stderr", MFD_CLOEXEC);
        struct outcome o;

        assert_true(errfd >= 0);
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(errfd, STDERR_FILENO);
                close(ready[0]);
                sandbox_warm_up_openssl();
                sandbox_warm_up(SANDBOX_WARM_RESOLVER);
                sigset_t usr2, none;
                if (sandbox_apply(process, p) < 0 || sandbox_test_hook_install(process) < 0)
                        _exit(CHILD_APPLY_FAILED);
                /* SIGUSR2 held until sigsuspend(), so it cannot arrive before the wait */
                sigemptyset(&usr2);
                sigaddset(&usr2, SIGUSR2);
                sigemptyset(&none);
                sigprocmask(SIG_BLOCK, &usr2, NULL);
                if (write(ready[1], "R", 1) != 1)
                        _exit(CHILD_CHECK_FAILED);
                sigsuspend(&none); /* the handler runs here; returns only in a sandbox_debug build */
                _exit(CHILD_DENIED_ENOSYS);
        }
        close(ready[1]);
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        assert_int_equal(kill(pid, SIGUSR2), 0);
        assert_int_equal(wait_child(pid, &status), 0);
        o.status = status;
        read_captured(errfd, &o);
#ifdef CREDAGENT_SANDBOX_DEBUG
        char want[128];
        snprintf(want, sizeof want, "process %s: syscall %s (", process, syscall_name);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == CHILD_DENIED_ENOSYS && strstr(o.err, want);
#else
        bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
#endif
        if (!ok)
                print_outcome(process, &o);
        assert_true(ok);
}

static void test_hook(void **state) {
        check_hook("front", &sandbox_policy_front, "socket");
        check_hook("net", &sandbox_policy_net, "execve");
        check_hook("hsm", &sandbox_policy_hsm, "socket");
        assert_int_equal(sandbox_test_hook_install("nobody"), -EINVAL);
}
#else
static void test_hook(void **state) {
        assert_int_equal(sandbox_test_hook_install("front"), -EOPNOTSUPP);
}
#endif

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_thread_confined),
                cmocka_unit_test(test_front_forbids),
                cmocka_unit_test(test_front_allows),
                cmocka_unit_test(test_net_forbids),
                cmocka_unit_test(test_net_allows),
                cmocka_unit_test(test_hsm_forbids),
                cmocka_unit_test(test_hsm_allows),
                cmocka_unit_test(test_hsm_real_module),
                cmocka_unit_test(test_net_real_fetch),
                cmocka_unit_test(test_landlock),
                cmocka_unit_test(test_kernel_features),
                cmocka_unit_test(test_names_and_bad_input),
                cmocka_unit_test(test_hook),
        };

        log_set_max_level(LOG_WARNING);
        signal(SIGPIPE, SIG_IGN); /* the TLS test server writes to clients that may have gone */
        signal(SIGRTMIN, on_rtmin); /* children that do the common work send one */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
