/* SPDX-License-Identifier: ISC */
/* The sandbox mechanism: one table of syscall groups, Landlock, the seccomp loader.  The
 * policies live beside their processes: agent/frontproc-sandbox.c, agent/netproc-sandbox.c,
 * agent/hsmproc-sandbox.c. */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <ucontext.h>
#include <linux/netlink.h>

#include "agent/sandbox.h"
#include "log.h"

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define SANDBOX_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define SANDBOX_ASAN 1
#endif
#ifdef SANDBOX_ASAN
#  include <sanitizer/common_interface_defs.h>
#  include <sanitizer/lsan_interface.h>
#endif

/* Landlock constants newer than the build host's <linux/landlock.h> (Debian 12: Linux 6.1,
 * ABI 2).  The values are the kernel's UAPI and never change. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#  define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#  define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#  define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define SB_LANDLOCK_RULE_NET_PORT 2 /* LANDLOCK_RULE_NET_PORT */
#define SB_LANDLOCK_NET_BIND_TCP (1ULL << 0)
#define SB_LANDLOCK_NET_CONNECT_TCP (1ULL << 1)
#define SB_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)

/* struct landlock_ruleset_attr as of ABI 6; older kernels accept it as long as the fields
 * they do not know are zero. */
struct sb_ruleset_attr {
        uint64_t handled_access_fs;
        uint64_t handled_access_net;
        uint64_t scoped;
};

struct sb_net_port_attr {
        uint64_t allowed_access;
        uint64_t port;
};

#ifndef SO_PEERPIDFD
#  define SO_PEERPIDFD 77
#endif
#ifndef SO_PASSRIGHTS
#  define SO_PASSRIGHTS 83
#endif

/* ---- the syscall groups ---------------------------------------------------------------- */

/* One argument test: (argument ARG & MASK) == DATUM.  A mask of 0xffffffff compares an int
 * argument whatever the upper half of the register holds. */
struct sb_cmp {
        unsigned arg;
        uint64_t mask;
        uint64_t datum;
};

struct sb_rule {
        int nr;           /* SCMP_SYS(name) */
        int error;        /* 0: allow; otherwise fail with this errno */
        unsigned unless;  /* group bits that, when also in the policy, drop this rule */
        unsigned n_cmp;   /* all must hold */
        struct sb_cmp cmp[2];
};

#define U32 UINT64_C(0xffffffff)
#define ALLOW(sys) { .nr = SCMP_SYS(sys) }
#define ALLOW_IF(sys, a, m, d) { .nr = SCMP_SYS(sys), .n_cmp = 1, .cmp = { { (a), (m), (d) } } }
#define ALLOW_IF2(sys, a, m, d, a2, m2, d2) \
        { .nr = SCMP_SYS(sys), .n_cmp = 2, .cmp = { { (a), (m), (d) }, { (a2), (m2), (d2) } } }
#define FAIL(sys, e) { .nr = SCMP_SYS(sys), .error = (e) }

static const struct sb_rule rules_stdio[] = {
        /* descriptors already held */
        ALLOW(read), ALLOW(readv), ALLOW(pread64), ALLOW(preadv), ALLOW(preadv2),
        ALLOW(write), ALLOW(writev), ALLOW(pwrite64), ALLOW(pwritev), ALLOW(pwritev2),
        ALLOW(close), ALLOW(close_range), ALLOW(dup), ALLOW(dup2), ALLOW(dup3),
        ALLOW(fcntl), ALLOW(lseek), ALLOW(fstat),
        /* glibc's fstat() is fstatat(fd, "", AT_EMPTY_PATH): only that form here */
        ALLOW_IF(newfstatat, 3, AT_EMPTY_PATH, AT_EMPTY_PATH),
        ALLOW_IF(statx, 2, AT_EMPTY_PATH, AT_EMPTY_PATH),
        /* isatty() and the ioctls of non-blocking I/O; nothing that reaches a device */
        ALLOW_IF(ioctl, 1, U32, TCGETS), ALLOW_IF(ioctl, 1, U32, FIONREAD),
        ALLOW_IF(ioctl, 1, U32, FIONBIO), ALLOW_IF(ioctl, 1, U32, FIOCLEX),
        ALLOW_IF(ioctl, 1, U32, FIONCLEX),
        /* memory: never executable (W^X), as MemoryDenyWriteExecute= */
        ALLOW(brk), ALLOW(munmap), ALLOW(mremap), ALLOW(madvise),
        ALLOW_IF(mmap, 2, PROT_EXEC, 0), ALLOW_IF(mprotect, 2, PROT_EXEC, 0),
        ALLOW(mlock), ALLOW(mlock2), ALLOW(munlock),
        /* synchronisation, scheduling, time */
        ALLOW(futex), ALLOW(set_robust_list), ALLOW(get_robust_list), ALLOW(rseq),
        ALLOW(sched_yield), ALLOW(sched_getaffinity), ALLOW(getcpu),
        ALLOW(clock_gettime), ALLOW(clock_getres), ALLOW(clock_nanosleep), ALLOW(nanosleep),
        ALLOW(gettimeofday), ALLOW(time),
        /* who am I */
        ALLOW(getpid), ALLOW(gettid), ALLOW(getppid), ALLOW(getuid), ALLOW(geteuid),
        ALLOW(getgid), ALLOW(getegid), ALLOW(getresuid), ALLOW(getresgid), ALLOW(getgroups),
        ALLOW(uname), ALLOW(sysinfo), ALLOW(getrusage), ALLOW(getrlimit),
        ALLOW_IF(prlimit64, 2, UINT64_MAX, 0), /* read a limit, never set one */
        ALLOW_IF(prctl, 0, U32, PR_SET_NAME), ALLOW_IF(prctl, 0, U32, PR_GET_NAME),
        ALLOW_IF(prctl, 0, U32, PR_GET_DUMPABLE),
        ALLOW(getrandom),
        /* signals: handlers, masks, and signals to itself only (kill/tgkill get the pid
         * compared in sandbox_apply(), see add_self_signal_rules()) */
        ALLOW(rt_sigaction), ALLOW(rt_sigprocmask), ALLOW(rt_sigreturn), ALLOW(rt_sigpending),
        ALLOW(rt_sigtimedwait), ALLOW(rt_sigsuspend), ALLOW(sigaltstack), ALLOW(signalfd4),
        ALLOW(restart_syscall), ALLOW(pause),
        ALLOW(exit), ALLOW(exit_group),
        /* glibc tries clone3() first and falls back to clone() on ENOSYS; clone3() passes its
         * flags in memory, where seccomp cannot look, so every process gets clone(), whose
         * flags SB_THREADS checks. */
        FAIL(clone3, ENOSYS),
};

static const struct sb_rule rules_threads[] = {
        ALLOW_IF(clone, 0, CLONE_THREAD, CLONE_THREAD),
};

static const struct sb_rule rules_unix_io[] = {
        ALLOW(recvmsg), ALLOW(recvmmsg), ALLOW(recvfrom),
        ALLOW(sendmsg), ALLOW(sendmmsg), ALLOW(sendto),
        ALLOW(shutdown), ALLOW(getsockopt), ALLOW(setsockopt), ALLOW(getsockname),
        ALLOW(getpeername),
        ALLOW_IF(socketpair, 0, U32, AF_UNIX),
        ALLOW(poll), ALLOW(ppoll), ALLOW(select), ALLOW(pselect6),
        ALLOW(epoll_create1), ALLOW(epoll_ctl), ALLOW(epoll_wait), ALLOW(epoll_pwait),
        ALLOW(epoll_pwait2), ALLOW(eventfd2), ALLOW(pipe2),
};

static const struct sb_rule rules_accept[] = {
        ALLOW(accept4), ALLOW(accept),
};

static const struct sb_rule rules_unix_client[] = {
        ALLOW_IF(socket, 0, U32, AF_UNIX),
        ALLOW(connect),
};

static const struct sb_rule rules_inet_client[] = {
        ALLOW_IF(socket, 0, U32, AF_INET), ALLOW_IF(socket, 0, U32, AF_INET6),
        ALLOW_IF2(socket, 0, U32, AF_NETLINK, 2, U32, NETLINK_ROUTE),
        { .nr = SCMP_SYS(socket), .error = EAFNOSUPPORT, .unless = SB_UNIX_CLIENT,
          .n_cmp = 1, .cmp = { { 0, U32, AF_UNIX } } },
        ALLOW(connect), ALLOW(bind),
};

/* openat() for reading only: none of the access-mode bits, no O_CREAT, no O_TRUNC. */
#define SB_OPEN_WRITE_BITS ((uint64_t) (O_ACCMODE | O_CREAT | O_TRUNC))

static const struct sb_rule rules_file_read[] = {
        ALLOW_IF(openat, 2, SB_OPEN_WRITE_BITS, 0),
        FAIL(openat2, ENOSYS), /* flags in memory: callers fall back to openat() */
        ALLOW(newfstatat), ALLOW(statx), ALLOW(stat), ALLOW(lstat),
        ALLOW(readlink), ALLOW(readlinkat), ALLOW(getdents64), ALLOW(access), ALLOW(faccessat),
        ALLOW(faccessat2), ALLOW(statfs), ALLOW(fstatfs), ALLOW(getcwd), ALLOW(fadvise64),
};

static const struct sb_rule rules_file_write[] = {
        ALLOW(openat), ALLOW(rename), ALLOW(renameat), ALLOW(renameat2), ALLOW(unlink),
        ALLOW(unlinkat), ALLOW(mkdir), ALLOW(mkdirat), ALLOW(rmdir), ALLOW(ftruncate),
        ALLOW(fsync), ALLOW(fdatasync), ALLOW(flock), ALLOW(fchmod), ALLOW(fallocate),
        ALLOW(utimensat),
};

struct sb_group {
        unsigned bit;
        const char *name;
        const struct sb_rule *rules;
        size_t n_rules;
};

#define GROUP(b, r) { b, #b, r, ELEMENTSOF(r) }
static const struct sb_group groups[] = {
        GROUP(SB_STDIO, rules_stdio),
        GROUP(SB_THREADS, rules_threads),
        GROUP(SB_UNIX_IO, rules_unix_io),
        GROUP(SB_ACCEPT, rules_accept),
        GROUP(SB_UNIX_CLIENT, rules_unix_client),
        GROUP(SB_INET_CLIENT, rules_inet_client),
        GROUP(SB_FILE_READ, rules_file_read),
        GROUP(SB_FILE_WRITE, rules_file_write),
};

#define SB_ALL_GROUPS                                                                        \
        (SB_STDIO | SB_THREADS | SB_UNIX_IO | SB_ACCEPT | SB_UNIX_CLIENT | SB_INET_CLIENT |  \
         SB_FILE_READ | SB_FILE_WRITE)

const char *sandbox_group_name(unsigned group) {
        for (size_t i = 0; i < ELEMENTSOF(groups); i++)
                if (groups[i].bit == group)
                        return groups[i].name;
        return NULL;
}

/* ---- kernel features ------------------------------------------------------------------- */

static atomic_int landlock_abi_cached = -1;

int sandbox_landlock_abi(void) {
        int v = atomic_load(&landlock_abi_cached);

        if (v < 0) {
                long r = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
                v = r > 0 ? (int) r : 0; /* ENOSYS: not built in; EOPNOTSUPP: not enabled at boot */
                atomic_store(&landlock_abi_cached, v);
        }
        return v;
}

/* 0 not probed yet, 1 absent, 2 present */
static atomic_int feature_cache[_SANDBOX_FEATURE_MAX];

static bool probe_socket_option(int level, int name, bool set) {
        int sp[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                return false;
        if (set) {
                int zero = 0;
                r = setsockopt(sp[0], level, name, &zero, sizeof zero);
        } else {
                int fd = -1;
                socklen_t len = sizeof fd;
                r = getsockopt(sp[0], level, name, &fd, &len);
                if (r == 0 && fd >= 0)
                        close(fd);
        }
        close(sp[0]);
        close(sp[1]);
        return r == 0;
}

bool sandbox_kernel_has(enum sandbox_feature f) {
        static const char *const missing[_SANDBOX_FEATURE_MAX] = {
                [SANDBOX_FEATURE_SO_PEERPIDFD] = "SO_PEERPIDFD (Linux 6.5): executable and unit selectors are unavailable",
                [SANDBOX_FEATURE_SO_PASSRIGHTS] = "SO_PASSRIGHTS (Linux 6.16): callers' sockets still accept descriptors",
                [SANDBOX_FEATURE_LANDLOCK] = "Landlock (Linux 5.13, lsm=landlock): no filesystem confinement beyond seccomp",
                [SANDBOX_FEATURE_LANDLOCK_NET] = "Landlock network rules (ABI 4, Linux 6.7): no TCP port confinement",
        };
        int v, expected = 0;

        if ((unsigned) f >= _SANDBOX_FEATURE_MAX)
                return false;
        v = atomic_load(&feature_cache[f]);
        if (v > 0)
                return v == 2;

        switch (f) {
        case SANDBOX_FEATURE_SO_PEERPIDFD:
                v = probe_socket_option(SOL_SOCKET, SO_PEERPIDFD, false);
                break;
        case SANDBOX_FEATURE_SO_PASSRIGHTS:
                v = probe_socket_option(SOL_SOCKET, SO_PASSRIGHTS, true);
                break;
        case SANDBOX_FEATURE_LANDLOCK:
                v = sandbox_landlock_abi() >= 1;
                break;
        case SANDBOX_FEATURE_LANDLOCK_NET:
                v = sandbox_landlock_abi() >= 4;
                break;
        default:
                return false;
        }
        /* Only the thread that settles the value logs, so the line appears once. */
        if (atomic_compare_exchange_strong(&feature_cache[f], &expected, v ? 2 : 1) && !v)
                log_info("Kernel lacks %s.", missing[f]);
        return v;
}

/* ---- warm-up --------------------------------------------------------------------------- */

void sandbox_warm_up(unsigned flags) {
        struct tm tm;
        time_t now = time(NULL);

        if (flags & SANDBOX_WARM_RESOLVER) {
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
                int r = getaddrinfo("localhost", "443", &hints, &ai);

                if (r != 0)
                        log_debug("Warm-up: getaddrinfo(\"localhost\"): %s", gai_strerror(r));
                else
                        freeaddrinfo(ai);
        }

        (void) strerror(EINVAL);
        tzset();
        (void) localtime_r(&now, &tm);

        /* glibc dlopen()s libgcc_s for unwinding the first time a thread is cancelled or exits
         * with pthread_exit(); keep it loaded so that needs no open() later. */
        if (!dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
                log_debug("Warm-up: dlopen(\"libgcc_s.so.1\") failed: %s", dlerror());

        for (int f = 0; f < _SANDBOX_FEATURE_MAX; f++)
                (void) sandbox_kernel_has(f);

#ifdef SANDBOX_ASAN
        /* An AddressSanitizer report reads /proc/self/maps for its list of modules the first
         * time it symbolizes, which the sandbox forbids: symbolize one address now so the list
         * is cached and a report inside the sandbox gets at least its module+offset frames. */
        char frame[256];
        __sanitizer_symbolize_pc(__builtin_return_address(0), "%p %F %L", frame, sizeof frame);
#endif
}

/* ---- Landlock -------------------------------------------------------------------------- */

static uint64_t landlock_fs_all(int abi) {
        uint64_t a = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                LANDLOCK_ACCESS_FS_MAKE_SYM;
        if (abi >= 2)
                a |= LANDLOCK_ACCESS_FS_REFER;
        if (abi >= 3)
                a |= LANDLOCK_ACCESS_FS_TRUNCATE;
        if (abi >= 5)
                a |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
        return a;
}

/* Rights that make sense on a non-directory. */
#define SB_LANDLOCK_FILE_RIGHTS                                                               \
        (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | \
         LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)

static int landlock_add_path(int ruleset, const char *process, const char *path, uint64_t rights,
                             uint64_t handled) {
        _cleanup_close_ int fd = -1;
        struct landlock_path_beneath_attr pb = {};
        struct stat st;

        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                log_debug_errno(errno, "%s: Landlock: skipping %s: %m", process, path);
                return 0;
        }
        if (!S_ISDIR(st.st_mode))
                rights &= SB_LANDLOCK_FILE_RIGHTS;
        pb.allowed_access = rights & handled;
        pb.parent_fd = fd;
        if (pb.allowed_access == 0)
                return 0;
        if (syscall(__NR_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
                return log_error_errno(errno, "%s: Landlock: cannot add a rule for %s: %m", process, path);
        log_debug("%s: Landlock: %s %s", process, path,
                  rights & LANDLOCK_ACCESS_FS_WRITE_FILE ? "read-write" : "read-only");
        return 0;
}

static int landlock_add_paths(int ruleset, const char *process, const char *const *paths, uint64_t rights,
                              uint64_t handled) {
        for (; paths && *paths; paths++) {
                int r = landlock_add_path(ruleset, process, *paths, rights, handled);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int landlock_count_threads(void) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;
        int n = 0;

        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static __thread bool landlock_done;

/* AddressSanitizer builds: LeakSanitizer's check at exit stops the world with ptrace from a
 * cloned tracer and reads /proc/PID/task and /proc/PID/maps, all of which the sandbox forbids
 * (seccomp kills the clone, Landlock hides /proc).  So the check runs once, now, before the
 * first restriction; __lsan_do_leak_check() also turns the check at exit off.  Leaks made
 * after this point are not reported: the unsandboxed unit tests cover that code. */
static void leak_check_before_sandbox(void) {
#ifdef SANDBOX_ASAN
        static atomic_bool done;

        if (!atomic_exchange(&done, true))
                __lsan_do_leak_check();
#endif
}

int sandbox_landlock(const char *process, const struct sandbox_policy *p) {
        const uint64_t read_rights = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
        const uint64_t write_rights = read_rights | LANDLOCK_ACCESS_FS_WRITE_FILE |
                LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
                LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_REFER;
        struct sb_ruleset_attr attr = {};
        _cleanup_close_ int ruleset = -1;
        int abi, threads, r;

        if (!process || !p)
                return log_error_errno(EINVAL, "Landlock: no process name or policy");
        if (landlock_done)
                return 0;
        leak_check_before_sandbox();
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(errno, "%s: cannot set no_new_privs: %m", process);

        abi = sandbox_landlock_abi();
        if (!sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK)) { /* that logged it, once */
                landlock_done = true;
                return 0;
        }
        (void) sandbox_kernel_has(SANDBOX_FEATURE_LANDLOCK_NET);

        switch (p->fs) {
        case SANDBOX_FS_UNRESTRICTED:
                break;
        case SANDBOX_FS_NO_EXEC:
                attr.handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                        LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                        LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
                break;
        case SANDBOX_FS_PATHS:
                attr.handled_access_fs = landlock_fs_all(abi);
                break;
        default:
                return log_error_errno(EINVAL, "%s: Landlock: unknown filesystem mode %d", process, (int) p->fs);
        }
        if (abi >= 4) {
                attr.handled_access_net = SB_LANDLOCK_NET_BIND_TCP;
                if (!(p->groups & SB_INET_CLIENT) || p->tcp_connect_ports)
                        attr.handled_access_net |= SB_LANDLOCK_NET_CONNECT_TCP;
        }
        /* Not LANDLOCK_SCOPE_SIGNAL: the processes signal the supervisor (seccomp limits
         * kill() to themselves and real-time signals to the parent). */
        if (abi >= 6)
                attr.scoped = SB_LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
        if (!attr.handled_access_fs && !attr.handled_access_net && !attr.scoped) {
                landlock_done = true;
                return 0;
        }

        ruleset = (int) syscall(__NR_landlock_create_ruleset, &attr, sizeof attr, 0);
        if (ruleset < 0)
                return log_error_errno(errno, "%s: Landlock: cannot create a ruleset (ABI %d): %m", process, abi);

        if (p->fs == SANDBOX_FS_PATHS) {
                r = landlock_add_paths(ruleset, process, p->fs_read, read_rights, attr.handled_access_fs);
                if (r >= 0)
                        r = landlock_add_paths(ruleset, process, p->fs_read_extra, read_rights, attr.handled_access_fs);
                if (r >= 0)
                        r = landlock_add_paths(ruleset, process, p->fs_write, write_rights, attr.handled_access_fs);
                if (r >= 0)
                        r = landlock_add_paths(ruleset, process, p->fs_write_extra, write_rights, attr.handled_access_fs);
                if (r < 0)
                        return r;
        }
        if ((attr.handled_access_net & SB_LANDLOCK_NET_CONNECT_TCP) && (p->groups & SB_INET_CLIENT))
                for (const uint16_t *port = p->tcp_connect_ports; port && *port; port++) {
                        struct sb_net_port_attr np = {
                                .allowed_access = SB_LANDLOCK_NET_CONNECT_TCP,
                                .port = *port,
                        };
                        if (syscall(__NR_landlock_add_rule, ruleset, SB_LANDLOCK_RULE_NET_PORT, &np, 0) < 0)
                                return log_error_errno(errno, "%s: Landlock: cannot allow TCP port %u: %m",
                                                       process, (unsigned) *port);
                }

        threads = landlock_count_threads();
        if (syscall(__NR_landlock_restrict_self, ruleset, 0) < 0)
                return log_error_errno(errno, "%s: Landlock: restrict_self failed: %m", process);
        landlock_done = true;
        if (threads > 1)
                log_notice("%s: Landlock covers this thread and its future threads only; %d threads "
                           "started earlier are confined by seccomp alone", process, threads - 1);
        log_debug("%s: Landlock ABI %d in force (fs 0x%llx, net 0x%llx, scoped 0x%llx)", process, abi,
                  (unsigned long long) attr.handled_access_fs, (unsigned long long) attr.handled_access_net,
                  (unsigned long long) attr.scoped);
        return 0;
}

/* ---- seccomp --------------------------------------------------------------------------- */

#ifdef CREDAGENT_SANDBOX_DEBUG
/* Debug builds: a syscall outside the allow-list traps here.  Everything the handler uses
 * is prepared before the filter is loaded (names resolved, the process name copied): the
 * handler only formats into a stack buffer and calls write(2), then makes the syscall
 * return -ENOSYS. */
#define SB_SYSCALL_NAMES_MAX 1024
static char *syscall_names[SB_SYSCALL_NAMES_MAX];
static char debug_process[32];

static size_t append(char *buf, size_t o, size_t size, const char *s) {
        while (*s && o + 1 < size)
                buf[o++] = *s++;
        return o;
}

static size_t append_number(char *buf, size_t o, size_t size, long v) {
        char tmp[24];
        size_t n = 0;
        unsigned long u = v < 0 ? -(unsigned long) v : (unsigned long) v;

        do
                tmp[n++] = (char) ('0' + u % 10);
        while ((u /= 10) && n < sizeof tmp);
        if (v < 0 && o + 1 < size)
                buf[o++] = '-';
        while (n > 0 && o + 1 < size)
                buf[o++] = tmp[--n];
        return o;
}

static void sigsys_report(int sig, siginfo_t *si, void *uctx) {
        int saved = errno;
        char line[160];
        size_t o = 0;
        int nr = si->si_syscall;
        const char *name = nr >= 0 && nr < SB_SYSCALL_NAMES_MAX && syscall_names[nr] ? syscall_names[nr] : "?";
        ucontext_t *uc = uctx;

        o = append(line, o, sizeof line, "credagent: sandbox_debug: process ");
        o = append(line, o, sizeof line, debug_process);
        o = append(line, o, sizeof line, ": syscall ");
        o = append(line, o, sizeof line, name);
        o = append(line, o, sizeof line, " (");
        o = append_number(line, o, sizeof line, nr);
        o = append(line, o, sizeof line, ") is not allowed; failing it with ENOSYS\n");
        (void) !write(STDERR_FILENO, line, o);

#if defined(__x86_64__)
        uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__i386__)
        uc->uc_mcontext.gregs[REG_EAX] = -ENOSYS;
#elif defined(__aarch64__)
        uc->uc_mcontext.regs[0] = (unsigned long long) -ENOSYS;
#else
#  error "sandbox_debug: set the syscall return register for this architecture"
#endif
        errno = saved;
}

static int debug_reporter_install(const char *process) {
        struct sigaction sa = { .sa_sigaction = sigsys_report, .sa_flags = SA_SIGINFO };
        uint32_t arch = seccomp_arch_native();

        snprintf(debug_process, sizeof debug_process, "%s", process);
        for (int nr = 0; nr < SB_SYSCALL_NAMES_MAX; nr++)
                if (!syscall_names[nr])
                        syscall_names[nr] = seccomp_syscall_resolve_num_arch(arch, nr);
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) < 0)
                return -errno;
        return 0;
}
#endif

static int add_rule(scmp_filter_ctx ctx, const struct sb_rule *rule) {
        struct scmp_arg_cmp cmp[ELEMENTSOF(rule->cmp)];
        uint32_t action = rule->error ? SCMP_ACT_ERRNO((uint32_t) rule->error) : SCMP_ACT_ALLOW;

        for (unsigned i = 0; i < rule->n_cmp; i++)
                cmp[i] = (struct scmp_arg_cmp) {
                        .arg = rule->cmp[i].arg,
                        .op = SCMP_CMP_MASKED_EQ,
                        .datum_a = rule->cmp[i].mask,
                        .datum_b = rule->cmp[i].datum,
                };
        return seccomp_rule_add_array(ctx, action, rule->nr, rule->n_cmp, cmp);
}

/* kill() and tgkill() only towards this process, and kill() towards the parent (the
 * supervisor, which a process asks with SIGRTMIN + role to restart a peer that broke the
 * protocol) with a real-time signal only: the pids are known only now. */
static int add_self_signal_rules(scmp_filter_ctx ctx) {
        uint64_t pid = (uint32_t) getpid(), ppid = (uint32_t) getppid();
        int r;

        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, U32, pid));
        if (r >= 0 && ppid > 1)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 2, SCMP_A0(SCMP_CMP_MASKED_EQ, U32, ppid),
                                     SCMP_A1(SCMP_CMP_GE, (uint64_t) SIGRTMIN, 0));
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, U32, pid));
        return r;
}

static int seccomp_build(const char *process, unsigned want, scmp_filter_ctx *ret) {
        uint32_t deflt = SCMP_ACT_KILL_PROCESS;
        scmp_filter_ctx ctx;
        int r;

#ifdef CREDAGENT_SANDBOX_DEBUG
        deflt = SCMP_ACT_TRAP;
#else
        if (seccomp_api_get() < 3)
                deflt = SCMP_ACT_KILL; /* kernels before 4.14: the thread, which is what they can */
#endif
        ctx = seccomp_init(deflt);
        if (!ctx)
                return -ENOMEM;
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, deflt);
        if (r >= 0)
                r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
        if (r >= 0)
                r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
        if (r >= 0)
                (void) seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); /* binary tree; best effort */
        for (size_t g = 0; r >= 0 && g < ELEMENTSOF(groups); g++) {
                if (!(want & groups[g].bit))
                        continue;
                for (size_t i = 0; r >= 0 && i < groups[g].n_rules; i++) {
                        const struct sb_rule *rule = &groups[g].rules[i];

                        if (rule->unless & want)
                                continue;
                        r = add_rule(ctx, rule);
                        if (r < 0) {
                                char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, rule->nr);
                                log_error_errno(r, "%s: seccomp: cannot add %s rule for %s: %m", process,
                                                groups[g].name, name ? name : "?");
                                free(name);
                        }
                }
        }
        if (r >= 0)
                r = add_self_signal_rules(ctx);
        if (r < 0) {
                seccomp_release(ctx);
                return r;
        }
        *ret = ctx;
        return 0;
}

int sandbox_apply(const char *process, const struct sandbox_policy *p) {
        struct rlimit no_core = { 0, 0 };
        scmp_filter_ctx ctx = NULL;
        unsigned want;
        int r;

        if (!process || !p)
                return log_error_errno(EINVAL, "sandbox: no process name or policy");
        if (p->groups & ~(unsigned) SB_ALL_GROUPS)
                return log_error_errno(EINVAL, "%s: sandbox: unknown group bits 0x%x", process,
                                       p->groups & ~(unsigned) SB_ALL_GROUPS);
        want = p->groups | SB_STDIO;

        leak_check_before_sandbox();
        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                return log_error_errno(errno, "%s: cannot set RLIMIT_CORE to 0: %m", process);
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(errno, "%s: cannot clear the dumpable flag: %m", process);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return log_error_errno(errno, "%s: cannot set no_new_privs: %m", process);

        r = sandbox_landlock(process, p);
        if (r < 0)
                return r;

        r = seccomp_build(process, want, &ctx);
        if (r < 0)
                return log_error_errno(r, "%s: cannot build the seccomp filter: %m", process);

#ifdef CREDAGENT_SANDBOX_DEBUG
        r = debug_reporter_install(process);
        if (r < 0) {
                seccomp_release(ctx);
                return log_error_errno(r, "%s: cannot install the SIGSYS reporter: %m", process);
        }
        log_warning("%s: sandbox_debug build: forbidden syscalls are reported and fail with ENOSYS", process);
#endif
        r = seccomp_load(ctx);
        seccomp_release(ctx);
        if (r < 0)
                return log_error_errno(r, "%s: cannot load the seccomp filter: %m", process);

        if (log_get_max_level() >= LOG_DEBUG)
                for (size_t g = 0; g < ELEMENTSOF(groups); g++)
                        if (want & groups[g].bit)
                                log_debug("%s: seccomp group %s allowed", process, groups[g].name);
        log_info("%s: sandbox in force (seccomp allow-list%s, no_new_privs, not dumpable, no core)", process,
                 sandbox_landlock_abi() >= 1 ? ", Landlock" : "");
        return 0;
}

/* ---- test hook ------------------------------------------------------------------------- */

#ifdef CREDAGENT_TEST_HOOKS
enum hook_action { HOOK_SOCKET_INET, HOOK_EXECVE };
static volatile sig_atomic_t hook_action;

static void test_hook_handler(int sig) {
        int saved = errno;
        long r;

        if (hook_action == HOOK_EXECVE) {
                static char *const argv[] = { (char *) "true", NULL };
                static char *const envp[] = { NULL };
                r = syscall(SYS_execve, "/bin/true", argv, envp);
        } else {
                r = syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (r >= 0)
                        (void) close((int) r);
        }
        /* Only reached when the sandbox did not kill the process. */
        static const char msg[] = "credagent: test hook: the forbidden syscall returned\n";
        (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
        errno = saved;
}

int sandbox_test_hook_install(const char *process) {
        struct sigaction sa = { .sa_handler = test_hook_handler, .sa_flags = SA_RESTART };
        sigset_t set;

        if (!process)
                return -EINVAL;
        if (strcmp(process, "net") == 0)
                hook_action = HOOK_EXECVE;
        else if (strcmp(process, "front") == 0 || strcmp(process, "hsm") == 0)
                hook_action = HOOK_SOCKET_INET;
        else
                return -EINVAL;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR2, &sa, NULL) < 0)
                return -errno;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR2);
        (void) pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        log_info("%s: test hook installed: SIGUSR2 attempts a forbidden syscall", process);
        return 0;
}
#endif
