/* SPDX-License-Identifier: ISC */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* The sandbox of credagent's processes (DESIGN.md, Processes; docs/privsep.md, Sandbox).
 *
 * Every process runs the same prologue: open what it needs → close what it must not hold →
 * sandbox_warm_up() → sandbox_apply() with its own policy → serve.  sandbox_apply() then
 * makes the process non-dumpable without core dumps, sets no_new_privs, confines the
 * filesystem and TCP with Landlock where the kernel has it, and loads a seccomp allow-list
 * built from the named groups below, in kill-the-process mode and synchronised to every
 * thread (TSYNC).
 *
 * With -Dsandbox_debug=true (CREDAGENT_SANDBOX_DEBUG) a syscall outside the allow-list is not
 * fatal: it fails with ENOSYS and one line naming the process and the syscall goes to stderr.
 * That build is for finding what a process needs, never for production. */

/* Named groups of syscalls, in the spirit of systemd's filter sets.  docs/privsep.md lists
 * every member and why; sandbox.c holds the one table. */
enum sandbox_group {
        /* I/O on descriptors already held (read/write/close/fcntl/fstat/lseek), memory
         * without PROT_EXEC, mlock for secret pages, futex, time, signals to itself (and
         * real-time signals to its parent, the supervisor), identity getters, getrandom,
         * exit, get-only prlimit, thread names.  Always included. */
        SB_STDIO = 1 << 0,
        /* New threads: clone() only with CLONE_THREAD (fork() and posix_spawn() are not
         * threads), clone3() fails with ENOSYS so glibc falls back to clone(). */
        SB_THREADS = 1 << 1,
        /* I/O on sockets already held: recvmsg/sendmsg (and SCM_RIGHTS with them),
         * shutdown, get/setsockopt, socketpair(AF_UNIX); poll, epoll, eventfd, pipe2. */
        SB_UNIX_IO = 1 << 2,
        /* accept4()/accept() on a listening socket already held. */
        SB_ACCEPT = 1 << 3,
        /* socket(AF_UNIX) and connect(): a PKCS#11 module that is a client of a daemon
         * (p11-kit-client.so talking to `p11-kit server`). */
        SB_UNIX_CLIENT = 1 << 4,
        /* Outbound IP: socket(AF_INET/AF_INET6), socket(AF_NETLINK, NETLINK_ROUTE) for
         * getaddrinfo(), connect, bind (netlink), name queries.  Without SB_UNIX_CLIENT,
         * socket(AF_UNIX) fails with EAFNOSUPPORT instead of killing, so glibc's nscd client
         * and NSS modules that ask a local daemon fall back to files and DNS. */
        SB_INET_CLIENT = 1 << 5,
        /* Reading files: openat() only without O_WRONLY/O_RDWR/O_CREAT/O_TRUNC, stat,
         * readlink, getdents, access.  Which files: Landlock's business (struct
         * sandbox_policy, fs). */
        SB_FILE_READ = 1 << 6,
        /* Writing files: openat() with any flags, rename, unlink, mkdir, ftruncate, fsync,
         * flock, fchmod.  For the PKCS#11 module's token files. */
        SB_FILE_WRITE = 1 << 7,
};

/* What Landlock does with the filesystem (only where the kernel has Landlock). */
enum sandbox_fs {
        SANDBOX_FS_UNRESTRICTED, /* Landlock does not touch the filesystem */
        SANDBOX_FS_NO_EXEC,      /* nothing may be executed, and no device node, FIFO, socket
                                    or symlink created, anywhere; everything else allowed */
        SANDBOX_FS_PATHS,        /* nothing at all except fs_read (read-only) and fs_write
                                    (read-write, no exec) and their extras; empty lists mean
                                    no filesystem at all */
};

struct sandbox_policy {
        unsigned groups;                  /* SB_* ORed; SB_STDIO is implied */
        enum sandbox_fs fs;
        /* NULL-terminated path lists (or NULL) for SANDBOX_FS_PATHS: a directory covers what
         * lies beneath it.  A path that does not exist is skipped (debug log).  Landlock
         * binds a rule to the file found at sandbox_apply() time: a file replaced later by
         * rename() is a different file and is not covered. */
        const char *const *fs_read;
        const char *const *fs_write;
        /* The same, for paths known only at run time (the CA bundle named by the config):
         * set them on a copy of the process's policy. */
        const char *const *fs_read_extra;
        const char *const *fs_write_extra;
        /* SB_INET_CLIENT only: when not NULL, a 0-terminated list of the TCP ports connect()
         * may reach (Landlock ABI ≥ 4); NULL means any port.  Without SB_INET_CLIENT, TCP
         * bind and connect are denied outright where Landlock has network rules. */
        const uint16_t *tcp_connect_ports;
};

/* The policies, declared beside each process (agent/frontproc-sandbox.c,
 * agent/netproc-sandbox.c, agent/hsmproc-sandbox.c). */
extern const struct sandbox_policy sandbox_policy_front;
extern const struct sandbox_policy sandbox_policy_net;
extern const struct sandbox_policy sandbox_policy_hsm;

/* Loads what libraries load lazily, so that it does not need a forbidden syscall after
 * sandbox_apply(): with SANDBOX_WARM_RESOLVER glibc's NSS and resolver configuration (one
 * getaddrinfo("localhost")); always strerror()'s tables, the time zone (localtime_r()),
 * libgcc_s (which glibc dlopen()s the first time a thread is cancelled or calls
 * pthread_exit()), and the kernel features of sandbox_kernel_has().  Call it in the
 * prologue, after the process has opened what it needs (the net process: its CA bundle)
 * and before sandbox_apply(); a process that uses OpenSSL calls sandbox_warm_up_openssl()
 * too.  Failures are not fatal and are logged at debug level. */
enum {
        SANDBOX_WARM_RESOLVER = 1 << 0, /* the process resolves names (net) or may ask NSS */
};
void sandbox_warm_up(unsigned flags);

/* OpenSSL's random generator, seeded once (RAND_bytes()) before sandbox_apply(), for the
 * processes that use OpenSSL (net, hsm).  In its own file (agent/sandbox-openssl.c) so that
 * the front, which uses no OpenSSL, does not map it. */
void sandbox_warm_up_openssl(void);

/* Confines the calling process, named PROCESS ("front", "net", "hsm": used in logs and in
 * debug reports, copied), with policy P, in this order:
 *   RLIMIT_CORE = 0, PR_SET_DUMPABLE = 0, PR_SET_NO_NEW_PRIVS = 1;
 *   Landlock (unless sandbox_landlock() already ran in this thread): the fs rules of P, TCP
 *   rules, and on ABI ≥ 6 no abstract sockets of processes outside the sandbox.  Absent or
 *   disabled in the kernel: one info line, skipped.  Landlock restricts
 *   only the calling thread and the threads it creates later: if other threads exist already
 *   they stay outside it (a notice is logged) — call sandbox_landlock() before starting any;
 *   seccomp: default action SCMP_ACT_KILL_PROCESS (a foreign-architecture syscall too), the
 *   groups of P allowed, TSYNC so every existing thread gets the filter, loaded.
 * In AddressSanitizer builds LeakSanitizer runs its check here, once, because its check at
 * exit needs ptrace, fork and /proc, which the filter forbids (docs/privsep.md).
 * Returns 0, or a negative errno with an error logged: -EINVAL (PROCESS or P NULL, unknown
 * group bits), -ENOMEM, -EPERM or another errno of setrlimit/prctl/landlock/seccomp_load
 * (e.g. -ESRCH: a thread could not be synchronised).  On failure the process may be
 * partly confined: the caller must exit. */
int sandbox_apply(const char *process, const struct sandbox_policy *p);

/* The Landlock part of sandbox_apply() alone (it sets PR_SET_NO_NEW_PRIVS, which Landlock
 * needs), for a process that must start threads before it can load its seccomp filter (the
 * front: libmicrohttpd's thread).  Call it before the first thread starts.  Returns 0 when
 * Landlock is in force or the kernel lacks it (info line), or a negative errno (logged):
 * -EINVAL, or an errno of landlock_create_ruleset/add_rule/restrict_self. */
int sandbox_landlock(const char *process, const struct sandbox_policy *p);

/* Kernel features credagent uses when present and does without otherwise. */
enum sandbox_feature {
        SANDBOX_FEATURE_SO_PEERPIDFD,  /* getsockopt(SO_PEERPIDFD), Linux 6.5 */
        SANDBOX_FEATURE_SO_PASSRIGHTS, /* setsockopt(SO_PASSRIGHTS), Linux 6.16 */
        SANDBOX_FEATURE_LANDLOCK,      /* Landlock filesystem rules, Linux 5.13, enabled at boot */
        SANDBOX_FEATURE_LANDLOCK_NET,  /* Landlock TCP rules (ABI 4), Linux 6.7 */
        _SANDBOX_FEATURE_MAX,
};

/* Returns whether the running kernel has feature F.  Probed once (a socketpair and a
 * Landlock version query), then cached; the first probe that finds a feature missing logs
 * one info line naming it.  Probe before sandbox_apply() (sandbox_warm_up() does): the
 * probe needs socketpair(), which every policy here allows, but a new policy might not.
 * An unknown F is false. */
bool sandbox_kernel_has(enum sandbox_feature f);

/* The Landlock ABI version of the running kernel, 0 when Landlock is absent or disabled.
 * Asked once (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)) and cached;
 * sandbox_apply() asks before loading the filter, which forbids the question. */
int sandbox_landlock_abi(void);

/* Name of a group bit ("SB_STDIO"), NULL for anything else. */
const char *sandbox_group_name(unsigned group);

#ifdef CREDAGENT_TEST_HOOKS
/* Test builds only (-Dtest_hooks=true).  Installs a SIGUSR2 handler in the calling process
 * that, from inside the handler (raw syscall, async-signal-safe), attempts the syscall the
 * policy of PROCESS forbids: "front" socket(AF_INET), "net" execve("/bin/true"), "hsm"
 * socket(AF_INET).  Under the sandbox that kills the process with SIGSYS (in a
 * sandbox_debug build the call fails with ENOSYS instead and the handler writes one line to
 * stderr).  SIGUSR2 is unblocked in the calling thread; a process-directed SIGUSR2 reaches
 * whichever thread does not block it, and every thread is under the filter, so the thread
 * does not matter.  Returns 0, -EINVAL for another PROCESS, or -errno of sigaction. */
int sandbox_test_hook_install(const char *process);
#else
static inline int sandbox_test_hook_install(const char *process) {
        return -EOPNOTSUPP;
}
#endif
