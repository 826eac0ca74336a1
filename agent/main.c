/* SPDX-License-Identifier: ISC */
/* credagent: the agent.  main() loads the config, makes the listening socket, then runs the
 * front (HTTP, policy, cache) with the fetcher (hsm + OAuth client) until SIGTERM/SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <syslog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/config-wire.h"
#include "agent/procutil.h"
#include "agent/tokcache.h"
#include "build-config.h"
#include "ipc/client.h"
#include "ipc/listen.h"
#include "ipc/msg.h"
#include "log.h"

struct options {
        const char *config_path;
        const char *socket_path;
        bool foreground;
        bool print_env;
        bool kill_agent;
        bool check;
        bool debug;
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: credagent [-f CONFIG] [-a SOCKET] [-D] [-s] [-d]\n"
                "       credagent [-f CONFIG] --check\n"
                "       credagent -k\n"
                "\n"
                "Keeps OAuth 2.0 client secrets in a PKCS#11 token and serves access tokens\n"
                "(client-credentials grant, RFC 6749 §4.4) to local callers over a Unix socket.\n"
                "\n"
                "  -f, --config CONFIG  configuration file (default %s)\n"
                "  -a, --socket SOCKET  listen on SOCKET instead of the config's socket\n"
                "  -D, --foreground     stay in the foreground, log to stderr\n"
                "  -s                   print CREDAGENT_SOCK=...; export CREDAGENT_SOCK; for eval\n"
                "                       (always printed when the agent goes to the background)\n"
                "  -k, --kill           stop the agent named by $CREDAGENT_SOCK (or -a)\n"
                "  -d, --debug          log at debug level\n"
                "      --check          validate the configuration and exit 0 (valid) or 1\n"
                "  -h, --help           this text\n"
                "  -V, --version        the version\n",
                CREDAGENT_SYSCONFDIR "/credagent.conf");
}

static int parse_args(int argc, char **argv, struct options *o) {
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'f' },
                { "socket", required_argument, NULL, 'a' },
                { "foreground", no_argument, NULL, 'D' },
                { "kill", no_argument, NULL, 'k' },
                { "debug", no_argument, NULL, 'd' },
                { "check", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "f:a:Dskdh V", longopts, NULL)) >= 0)
                switch (c) {
                case 'f': o->config_path = optarg; break;
                case 'a': o->socket_path = optarg; break;
                case 'D': o->foreground = true; break;
                case 's': o->print_env = true; break;
                case 'k': o->kill_agent = true; break;
                case 'd': o->debug = true; break;
                case 'C': o->check = true; break;
                case 'h': usage(stdout); exit(0);
                case 'V': printf("credagent %s\n", CREDAGENT_VERSION); exit(0);
                default: usage(stderr); return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "credagent: unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* -k: ask the kernel who listens on the socket and stop it, like ssh-agent -k. */
static int kill_agent(const char *socket_arg) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct ucred uc;
        socklen_t len = sizeof uc;

        if (!socket_arg && !getenv("CREDAGENT_SOCK")) {
                fprintf(stderr, "credagent: CREDAGENT_SOCK is not set, cannot kill the agent\n");
                return 1;
        }
        path = client_socket_path(socket_arg);
        if (!path || strlen(path) >= sizeof sa.sun_path) {
                fprintf(stderr, "credagent: bad socket path\n");
                return 1;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
                fprintf(stderr, "credagent: no agent answers on %s: %s\n", path, strerror(errno));
                return 1;
        }
        if (uc.uid != geteuid() && geteuid() != 0) {
                fprintf(stderr, "credagent: the agent on %s belongs to uid %u, not to you\n", path, (unsigned) uc.uid);
                return 1;
        }
        if (kill(uc.pid, SIGTERM) < 0) {
                fprintf(stderr, "credagent: cannot stop agent pid %d: %s\n", (int) uc.pid, strerror(errno));
                return 1;
        }
        printf("unset CREDAGENT_SOCK;\necho Agent pid %d killed;\n", (int) uc.pid);
        return 0;
}

static void _printf_(2, 3) set_error(char **ret_error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
}

/* Creates the socket's directory if missing: 0700, or 0750 owned by GID when the socket is shared. */
static int make_socket_dir(const char *socket_path, bool shared, gid_t gid, char **ret_error) {
        _cleanup_free_ char *copy = strdup(socket_path);
        struct stat st;
        char *dir;

        if (!copy)
                return -ENOMEM;
        dir = dirname(copy);
        if (stat(dir, &st) == 0) {
                if (!S_ISDIR(st.st_mode)) {
                        set_error(ret_error, "%s is not a directory", dir);
                        return -ENOTDIR;
                }
                if (st.st_mode & S_IWOTH && !(st.st_mode & S_ISVTX)) {
                        set_error(ret_error, "socket directory %s is world-writable", dir);
                        return -EPERM;
                }
                if (st.st_uid != geteuid() && st.st_uid != 0) {
                        /* Its owner could replace our socket with one of their own. */
                        set_error(ret_error, "socket directory %s belongs to uid %u, not to this user or root", dir,
                                  (unsigned) st.st_uid);
                        return -EPERM;
                }
                return 0;
        }
        if (errno != ENOENT || mkdir(dir, shared ? 0750 : 0700) < 0) {
                set_error(ret_error, "cannot create socket directory %s: %s", dir, strerror(errno));
                return -errno;
        }
        if (shared && (chown(dir, (uid_t) -1, gid) < 0 || chmod(dir, 0750) < 0)) {
                set_error(ret_error, "cannot give socket directory %s to its group: %s", dir, strerror(errno));
                return -errno;
        }
        return 0;
}

/* Binds and listens on PATH (mode 0600, or 0660 with group GID when SHARED).  A stale
 * socket left by a dead agent is replaced; a live one is an error. */
static int make_listen_socket(const char *path, bool shared, gid_t gid, int *ret_fd, char **ret_error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        mode_t old_umask;
        int r;

        if (path[0] != '/' || strlen(path) >= sizeof sa.sun_path) {
                set_error(ret_error, "socket path \"%s\" must be absolute and shorter than %zu bytes", path,
                         sizeof sa.sun_path);
                return -EINVAL;
        }
        strcpy(sa.sun_path, path);
        r = make_socket_dir(path, shared, gid, ret_error);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;

        struct stat st;
        if (lstat(path, &st) == 0) {
                _cleanup_close_ int probe = -1;

                if (!S_ISSOCK(st.st_mode)) {
                        set_error(ret_error, "%s exists and is not a socket", path);
                        return -EEXIST;
                }
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &sa, sizeof sa) == 0) {
                        set_error(ret_error, "another agent is listening on %s", path);
                        return -EADDRINUSE;
                }
                (void) unlink(path); /* stale */
        }

        old_umask = umask(shared ? 0117 : 0177);
        r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        umask(old_umask);
        if (r < 0) {
                r = -errno;
                set_error(ret_error, "cannot bind %s: %s", path, strerror(errno));
                return r;
        }
        if (shared && (chown(path, (uid_t) -1, gid) < 0 || chmod(path, 0660) < 0)) {
                r = -errno;
                set_error(ret_error, "cannot give socket %s to its group: %s", path, strerror(errno));
                (void) unlink(path);
                return r;
        }
        if (listen(fd, 1024) < 0) {
                r = -errno;
                (void) unlink(path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void harden_process(void) {
        struct rlimit rl = { 0, 0 };

        /* No core dumps, no ptrace by same-uid processes: the address space holds secrets. */
        if (setrlimit(RLIMIT_CORE, &rl) < 0)
                log_warning_errno(errno, "Failed to disable core dumps: %m");
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                log_warning_errno(errno, "Failed to set PR_SET_DUMPABLE=0: %m");
}

static void report(int fd, const char *msg) {
        if (fd >= 0) {
                (void) !write(fd, msg, strlen(msg));
                close(fd);
        }
}

/* ---- logs in daemon mode ---- */

static int term_fd = -1; /* the terminal's stderr until the agent is ready */

static void daemon_log_line(int level, const char *line) {
        if (term_fd >= 0 && level <= LOG_WARNING)
                (void) !dprintf(term_fd, "%s\n", line);
        syslog(level, "%s", line);
}

static void daemon_log_writer(int level, const char *message) {
        char line[1100];

        snprintf(line, sizeof line, "credagent: %s", message);
        daemon_log_line(level, line);
}

/* Forwards the complete lines the processes wrote to the log pipe. */
static void forward_logs(int log_fd) {
        static char pending[4096];
        static size_t len;

        for (;;) {
                ssize_t n = read(log_fd, pending + len, sizeof pending - 1 - len);
                char *start = pending, *nl;

                if (n <= 0)
                        return;
                len += (size_t) n;
                pending[len] = '\0';
                while ((nl = memchr(start, '\n', len - (size_t) (start - pending)))) {
                        *nl = '\0';
                        daemon_log_line(strstr(start, " error: ") ? LOG_ERR :
                                        strstr(start, " warning: ") ? LOG_WARNING : LOG_INFO, start);
                        start = nl + 1;
                }
                len -= (size_t) (start - pending);
                memmove(pending, start, len);
                if (len == sizeof pending - 1) { /* a line longer than the buffer: pass it on in pieces */
                        daemon_log_line(LOG_INFO, pending);
                        len = 0;
                }
        }
}

/* ---- supervision (DESIGN.md, Processes) ---- */

/* The children's programs, by role (ROLE_FRONT, ROLE_NET, ROLE_HSM), and their files, opened
 * once at start: a restarted process runs the same build as the supervisor even if the files
 * were replaced since (an upgrade takes a restart of the agent), and nothing is looked up by
 * path later. */
static const char *const child_program[4] = { "credagent-front", "credagent-net", "credagent-hsm", "credagent-config" };
static int child_exe[4] = { -1, -1, -1, -1 };
#define CONFIG_PROGRAM 3 /* credagent-config's index */
#define LOADER_TIMEOUT_MS 60000

/* Opens each child program: beside this executable when it is there (a build tree), else in
 * CREDAGENT_LIBEXECDIR.  Returns 0, or -ENOENT (-EACCES, …) after printing which program is
 * missing and where it was looked for. */
static int open_child_programs(void) {
        char self[PATH_MAX], path[PATH_MAX + 64];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        const char *dir = NULL;

        if (n > 0) {
                self[n] = '\0';
                dir = dirname(self);
        }
        for (int i = 0; i < 4; i++) {
                int fd = -1;

                if (dir) {
                        snprintf(path, sizeof path, "%s/%s", dir, child_program[i]);
                        fd = open(path, O_RDONLY | O_CLOEXEC);
                }
                if (fd < 0) {
                        snprintf(path, sizeof path, "%s/%s", CREDAGENT_LIBEXECDIR, child_program[i]);
                        fd = open(path, O_RDONLY | O_CLOEXEC);
                }
                if (fd < 0) {
                        int e = errno;
                        fprintf(stderr, "credagent: cannot open %s (looked in %s and %s): %s\n", child_program[i],
                                dir ? dir : "?", CREDAGENT_LIBEXECDIR, strerror(e));
                        return -e;
                }
                struct stat st;
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR)) {
                        fprintf(stderr, "credagent: %s is not an executable file\n", path);
                        close(fd);
                        return -EACCES;
                }
                child_exe[i] = fd;
        }
        return 0;
}

/* The configuration as credagent-config loaded it: the [agent] part decoded (all the
 * supervisor reads) and the whole encoding in a sealed memfd (what the front gets). */
struct loaded {
        struct config *agent;
        int fd;
        uint64_t size;
        size_t n_credentials;
};

static void loaded_done(struct loaded *l) {
        l->agent = config_free(l->agent);
        if (l->fd >= 0)
                close(l->fd);
        l->fd = -1;
}

static void forward_logs(int log_fd);
static int child_fds(int *fds, size_t n);

/* In a process just forked: no blocked signals, SIGTERM when the supervisor dies, no
 * NOTIFY_SOCKET (only the supervisor speaks to systemd); FDS[0..N) moved to 3, 4, … and every
 * other fd closed; then program PROG (child_program[]) exec'd with ARGS.  FDS must have room
 * for one more (the program's own fd goes last, closed by the exec).  Never returns. */
static _Noreturn void exec_program(int prog, int *fds, size_t n, char **args) {
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
        (void) unsetenv("NOTIFY_SOCKET");
        fds[n++] = child_exe[prog];
        if (child_fds(fds, n) < 0 || fcntl(fds[n - 1], F_SETFD, FD_CLOEXEC) < 0)
                _exit(127);
        fexecve(fds[n - 1], args, environ);
        fprintf(stderr, "credagent: cannot run %s: %s\n", args[0], strerror(errno));
        _exit(127);
}

/* Runs credagent-config MODE ("--start", "--reload", "--check") on PATH and waits for it,
 * forwarding LOG_FD's lines (or -1) meanwhile so that it never blocks on a full log pipe.
 * With --check it only runs (its output is the answer).  Returns 0 (with *RET filled unless
 * --check), 1 when it found the configuration invalid (it said why), or a negative errno
 * when it could not be run or sent nothing usable (logged). */
static int run_loader(const char *mode, const char *path, int log_fd, struct loaded *ret) {
        char *args[] = { (char *) child_program[CONFIG_PROGRAM], (char *) mode, (char *) path,
                         log_get_max_level() >= LOG_DEBUG ? "--debug" : NULL, NULL };
        struct loaded l = { .fd = -1 };
        uint8_t rbuf[64];
        struct msg_frame fr = { .fd = -1 };
        int sv[2], status, r = 0;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return log_error_errno(errno, "socketpair() failed: %m");
        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                r = log_error_errno(errno, "fork() failed: %m");
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0) {
                int fds[2] = { sv[1] };

                exec_program(CONFIG_PROGRAM, fds, 1, args);
        }
        close(sv[1]);

        /* One MSG_CONFIG, or end of stream when it stops without one.  A load that hangs (a
         * file on a dead NFS mount, NSS) is given up after LOADER_TIMEOUT_MS: meanwhile the
         * supervisor restarts no child. */
        for (uint64_t deadline = now_boottime_ms() + LOADER_TIMEOUT_MS;;) {
                struct pollfd p[2] = { { .fd = sv[0], .events = POLLIN }, { .fd = log_fd, .events = POLLIN } };
                uint64_t now = now_boottime_ms();
                int n;

                if (now >= deadline) {
                        (void) kill(pid, SIGKILL);
                        log_error("%s did not finish loading %s within %d s; stopped it", child_program[CONFIG_PROGRAM],
                                  path, LOADER_TIMEOUT_MS / 1000);
                        r = -ETIMEDOUT;
                        break;
                }
                n = poll(p, 2, (int) (deadline - now));
                if (n < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (n <= 0)
                        continue;
                if (p[1].revents)
                        forward_logs(log_fd);
                if (p[0].revents) {
                        r = msg_recv(sv[0], CHAN_CONFIG, true, rbuf, sizeof rbuf, &fr);
                        break;
                }
        }
        close(sv[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (log_fd >= 0)
                forward_logs(log_fd);
        if (r >= 0 && fr.type == MSG_CONFIG) {
                struct msg_config m;

                r = msg_config_decode(fr.payload, fr.len, &m);
                if (r >= 0)
                        r = config_receive_agent(fr.fd, &m, &l.agent, &l.n_credentials);
                if (r >= 0) {
                        l.fd = TAKE_FD(fr.fd);
                        l.size = m.size;
                }
        } else if (r >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && strcmp(mode, "--check") == 0)
                r = 0; /* --check sends nothing */
        else if (r >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1)
                r = 1; /* invalid: it said why */
        else if (r >= 0)
                r = -EPROTO;
        if (fr.fd >= 0)
                close(fr.fd);
        if (r == -EPROTO)
                log_error("%s did not deliver the configuration (%s %d)", child_program[CONFIG_PROGRAM],
                          WIFEXITED(status) ? "exit status" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        else if (r < 0 && r != -ETIMEDOUT)
                log_error_errno(r, "%s did not deliver the configuration: %m", child_program[CONFIG_PROGRAM]);
        if (r != 0) {
                loaded_done(&l);
                return r;
        }
        /* The config's own check of its [agent] part came from credagent-config; keep it. */
        if (ret)
                *ret = l;
        else
                loaded_done(&l);
        return 0;
}

enum edge { EDGE_FRONT_NET, EDGE_FRONT_HSM, EDGE_NET_HSM, _EDGE_MAX };

static const struct {
        enum msg_channel channel;
        int a, b; /* child indexes: side A and side B of the channel */
} edges[_EDGE_MAX] = {
        [EDGE_FRONT_NET] = { CHAN_FRONT_NET, 0, 1 },
        [EDGE_FRONT_HSM] = { CHAN_FRONT_HSM, 0, 2 },
        [EDGE_NET_HSM] = { CHAN_NET_HSM, 1, 2 },
};

struct child {
        const char *name;
        enum msg_role role;
        enum msg_channel super_channel;
        pid_t pid;                /* 0 when not running */
        int super_fd;             /* our end of CHAN_SUPER_*, -1 when not running */
        bool hello;               /* said hello since its last start */
        uint64_t started_ms;
        unsigned quick_failures;  /* deaths within SUPERVISOR_STABLE_MS of a start, in a row */
        uint64_t restart_at_ms;   /* when not running: when to start it again */
        bool stopping;            /* we asked it to stop (reload, shutdown) */
};

struct supervisor {
        struct config *cfg;       /* the [agent] part: all the supervisor reads */
        int config_fd;            /* sealed memfd: the whole configuration's encoding, for the front */
        uint64_t config_size;
        size_t n_credentials;
        int log_fd;               /* the log pipe in daemon mode, else -1 */
        const char *config_path;
        const char *socket_path;  /* the socket actually served */
        bool socket_overridden;   /* by -a or socket activation: the config's socket is not it */
        int listen_fd;
        int sfd;
        struct child children[3];
        int stash[_EDGE_MAX];     /* an edge end kept for a child that is not running yet */
        bool ready;
        bool shutting_down;
};

#define SUPERVISOR_STABLE_MS 10000
#define SUPERVISOR_BACKOFF_MAX_MS 5000

static uint64_t backoff_ms(unsigned quick_failures) {
        uint64_t d;

        if (quick_failures <= 1)
                return 0; /* the first restart is immediate: service back at once */
        d = 100ULL << (quick_failures - 2 < 6 ? quick_failures - 2 : 6);
        return d > SUPERVISOR_BACKOFF_MAX_MS ? SUPERVISOR_BACKOFF_MAX_MS : d;
}

static void send_channel(struct child *to, enum msg_channel channel, int fd) {
        struct msg_channel_fd m = { .channel = (uint8_t) channel };
        struct buf b;
        int r;

        buf_init(&b, 64);
        r = msg_channel_fd_encode(&m, &b);
        if (r == 0)
                r = msg_send(to->super_fd, &b, fd);
        if (r < 0)
                log_warning_errno(r, "Passing a new %s channel to %s failed: %m", msg_channel_name(channel), to->name);
        buf_done(&b);
}

/* Moves FDS[0..N) to 3, 4, … in the child and closes every other fd above stderr. */
static int child_fds(int *fds, size_t n) {
        int tmp[8];

        /* First out of the way (above any target), then into place. */
        for (size_t i = 0; i < n; i++) {
                if (fds[i] < 0) {
                        tmp[i] = -1;
                        continue;
                }
                tmp[i] = fcntl(fds[i], F_DUPFD, 64);
                if (tmp[i] < 0)
                        return -errno;
        }
        for (size_t i = 0; i < n; i++) {
                if (tmp[i] < 0) {
                        fds[i] = -1;
                        continue;
                }
                if (dup2(tmp[i], (int) (3 + i)) < 0)
                        return -errno;
                fds[i] = (int) (3 + i);
        }
        if (close_range(3 + (unsigned) n, ~0U, 0) < 0)
                return -errno;
        return 0;
}

static int start_child(struct supervisor *s, int idx) {
        struct child *c = &s->children[idx];
        int mine[_EDGE_MAX], super[2], r;
        pid_t pid;

        for (int e = 0; e < _EDGE_MAX; e++) {
                int peer, pair[2];

                mine[e] = -1;
                if (edges[e].a != idx && edges[e].b != idx)
                        continue;
                peer = edges[e].a == idx ? edges[e].b : edges[e].a;
                if (s->stash[e] >= 0 && s->children[peer].pid > 0) {
                        /* The peer already holds the other end. */
                        mine[e] = s->stash[e];
                        s->stash[e] = -1;
                        continue;
                }
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                        return log_error_errno(errno, "socketpair() failed: %m");
                mine[e] = pair[0];
                if (s->children[peer].pid > 0 && s->children[peer].super_fd >= 0) {
                        send_channel(&s->children[peer], edges[e].channel, pair[1]);
                        close(pair[1]);
                } else {
                        if (s->stash[e] >= 0)
                                close(s->stash[e]);
                        s->stash[e] = pair[1];
                }
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, super) < 0)
                return log_error_errno(errno, "socketpair() failed: %m");

        fflush(NULL);
        pid = fork();
        if (pid < 0) {
                r = log_error_errno(errno, "fork() failed: %m");
                close(super[0]);
                close(super[1]);
                for (int e = 0; e < _EDGE_MAX; e++)
                        if (mine[e] >= 0)
                                close(mine[e]);
                return r;
        }
        if (pid == 0) {
                char *args[] = { (char *) child_program[c->role - ROLE_FRONT], log_get_max_level() >= LOG_DEBUG ? "--debug" : NULL, NULL };
                int fds[6];
                size_t n = 0;

                /* net's libcurl does TLS with OpenSSL, but Debian's libcurl also links librtmp
                 * and through it GnuTLS, whose constructor initialises the whole library (about
                 * 0.6 MiB of it resident) unless told not to; net never speaks RTMP. */
                if (c->role == ROLE_NET) {
                        const char *t = getenv("GLIBC_TUNABLES");
                        char tunables[1024];

                        (void) setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1);
                        /* net runs each fetch in a thread of its own (256 KiB of stack); glibc
                         * keeps up to 40 MiB of finished threads' stacks, resident, for reuse:
                         * after 100 parallel fetches that was ~8 MiB.  Keep 1 MiB of them. */
                        snprintf(tunables, sizeof tunables, "glibc.pthread.stack_cache_size=1048576%s%s",
                                 t && *t ? ":" : "", t && strlen(t) < 900 ? t : "");
                        (void) setenv("GLIBC_TUNABLES", tunables, 1);
                }
                /* Keep only this child's fds, where its program expects them (agent/procutil.h):
                 * [listen,] its edges in edge order, its supervisor end; then its program. */
                if (c->role == ROLE_FRONT)
                        fds[n++] = s->listen_fd;
                for (int e = 0; e < _EDGE_MAX; e++)
                        if (edges[e].a == idx || edges[e].b == idx)
                                fds[n++] = mine[e];
                fds[n++] = super[1];
                /* Each process its own program, mapping only the libraries it uses. */
                exec_program(c->role - ROLE_FRONT, fds, n, args);
        }

        /* Its first frames: our hello, then its configuration (net and hsm read only [agent]). */
        proc_send_hello(super[0], ROLE_SUPERVISOR);
        r = c->role == ROLE_FRONT ? config_send_memfd(super[0], s->config_fd, s->config_size)
                                  : config_send(super[0], s->cfg, CONFIG_SEND_AGENT_ONLY);
        if (r < 0)
                log_error_errno(r, "Cannot send the %s process its configuration: %m", c->name);

        close(super[1]);
        for (int e = 0; e < _EDGE_MAX; e++)
                if (mine[e] >= 0)
                        close(mine[e]);
        (void) proc_set_nonblock(super[0]);
        c->pid = pid;
        c->super_fd = super[0];
        c->hello = false;
        c->stopping = false;
        c->started_ms = now_boottime_ms();
        log_info("Started %s process, pid %d", c->name, (int) pid);
        return 0;
}

static void child_died(struct supervisor *s, struct child *c, int status) {
        uint64_t now = now_boottime_ms();
        char how[64];

        if (WIFSIGNALED(status))
                snprintf(how, sizeof how, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
                snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
        if (c->stopping || s->shutting_down)
                log_info("%s process %d %s", c->name, (int) c->pid, how);
        else
                log_error("%s process %d %s", c->name, (int) c->pid, how);

        proc_close(&c->super_fd);
        c->pid = 0;
        if (c->stopping)
                c->quick_failures = 0;
        else if (now - c->started_ms < SUPERVISOR_STABLE_MS)
                c->quick_failures++;
        else
                c->quick_failures = 1;
        c->restart_at_ms = now + (c->stopping ? 0 : backoff_ms(c->quick_failures));
}

static void reap(struct supervisor *s) {
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);

                if (pid <= 0)
                        return;
                for (int i = 0; i < 3; i++)
                        if (s->children[i].pid == pid)
                                child_died(s, &s->children[i], status);
        }
}

static void read_child(struct supervisor *s, struct child *c, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                int r = msg_recv(c->super_fd, c->super_channel, false, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return;
                if (r < 0) {
                        log_error_errno(r, "Bad message from the %s process, restarting it: %m", c->name);
                        kill(c->pid, SIGKILL);
                        proc_close(&c->super_fd);
                        return;
                }
                if (fr.type == 0) {
                        proc_close(&c->super_fd); /* it is exiting; SIGCHLD follows */
                        return;
                }
                if (fr.type == MSG_HELLO && proc_check_hello(&fr) == 0) {
                        c->hello = true;
                } else if (fr.type == MSG_CONFIG_DONE) {
                        struct msg_config_done d = {};
                        if (msg_config_done_decode(fr.payload, fr.len, &d) == 0) {
                                if (d.status == 0)
                                        log_info("The front applied the new configuration");
                                else
                                        log_error("The front refused the new configuration: %s", d.reason ? d.reason : "?");
                        }
                        msg_config_done_clear(&d);
                }
        }
}

static bool agent_section_changed(const struct config *a, const struct config *b) {
        if (strcmp_null(a->module, b->module) || strcmp_null(a->token, b->token) ||
            strcmp_null(a->pin_source, b->pin_source) || strcmp_null(a->ca_file, b->ca_file))
                return true;
        for (size_t i = 0;; i++) {
                const char *x = a->module_dirs ? a->module_dirs[i] : NULL, *y = b->module_dirs ? b->module_dirs[i] : NULL;
                if (strcmp_null(x, y))
                        return true;
                if (!x)
                        return false;
        }
}

static void reload(struct supervisor *s) {
        struct loaded l = { .fd = -1 };
        int r;

        log_info("SIGHUP: reloading %s", s->config_path);
        (void) notify_send("RELOADING=1");
        /* credagent-config logs what is wrong with an invalid one. */
        r = run_loader("--reload", s->config_path, s->log_fd, &l);
        if (r != 0) {
                (void) notify_send("READY=1");
                return;
        }
        if (!s->socket_overridden && strcmp(l.agent->socket, s->socket_path) != 0)
                log_warning("socket changed to %s: that takes a restart; still listening on %s", l.agent->socket,
                            s->socket_path);

        r = s->children[0].super_fd >= 0 ? config_send_memfd(s->children[0].super_fd, l.fd, l.size) : 0;
        if (r < 0) {
                log_error_errno(r, "Cannot hand the new configuration to the front, keeping the running one: %m");
                loaded_done(&l);
                (void) notify_send("READY=1");
                return;
        }
        /* net and hsm read only [agent]: restart them only when it changed. */
        if (agent_section_changed(s->cfg, l.agent))
                for (int i = 1; i < 3; i++)
                        if (s->children[i].pid > 0) {
                                s->children[i].stopping = true;
                                kill(s->children[i].pid, SIGTERM);
                        }
        config_free(s->cfg);
        close(s->config_fd);
        s->cfg = l.agent;
        s->config_fd = l.fd;
        s->config_size = l.size;
        s->n_credentials = l.n_credentials;
        /* Reading the new encoding took a buffer of its size: give the pages back. */
        (void) malloc_trim(0);
        (void) notify_send("READY=1");
}

/* Runs the processes until SIGTERM/SIGINT.  READY_FD (or -1) gets "OK" once all three said
 * hello, or the start-up error.  Returns an exit status. */
static int supervise(struct loaded *cfg, const char *config_path, const char *socket_path, int listen_fd,
                     int ready_fd, int log_fd) {
        struct supervisor s = {
                .cfg = cfg->agent,
                .config_fd = cfg->fd,
                .config_size = cfg->size,
                .n_credentials = cfg->n_credentials,
                .log_fd = log_fd,
                .config_path = config_path,
                .socket_path = socket_path,
                .socket_overridden = strcmp(socket_path, cfg->agent->socket) != 0,
                .listen_fd = listen_fd,
                .children = {
                        { .name = "front", .role = ROLE_FRONT, .super_channel = CHAN_SUPER_FRONT, .super_fd = -1 },
                        { .name = "net", .role = ROLE_NET, .super_channel = CHAN_SUPER_NET, .super_fd = -1 },
                        { .name = "hsm", .role = ROLE_HSM, .super_channel = CHAN_SUPER_HSM, .super_fd = -1 },
                },
                .stash = { -1, -1, -1 },
        };
        size_t rbuf_size = msg_channel_max(CHAN_SUPER_FRONT);
        _cleanup_free_ uint8_t *rbuf = malloc(rbuf_size);
        uint64_t start_deadline = now_boottime_ms() + 30000;
        sigset_t mask;
        int status = 1;

        harden_process();
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        for (int role = ROLE_FRONT; role <= ROLE_HSM; role++)
                sigaddset(&mask, SIGRTMIN + role);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        s.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s.sfd < 0 || !rbuf) {
                report(ready_fd, "cannot set up signal handling\n");
                return 1;
        }

        for (int i = 0; i < 3; i++)
                if (start_child(&s, i) < 0) {
                        report(ready_fd, "cannot start the agent's processes\n");
                        goto stop;
                }

        for (;;) {
                struct pollfd p[5];
                uint64_t now = now_boottime_ms(), next = UINT64_MAX;
                int timeout;

                if (!s.ready && s.children[0].hello && s.children[1].hello && s.children[2].hello) {
                        s.ready = true;
                        log_info("credagent %s ready on %s (%zu credential%s)", CREDAGENT_VERSION, socket_path,
                                 s.n_credentials, s.n_credentials == 1 ? "" : "s");
                        report(ready_fd, "OK");
                        ready_fd = -1;
                        (void) notify_send("READY=1");
                        if (term_fd >= 0) {
                                close(term_fd); /* from now on the log is syslog's */
                                term_fd = -1;
                        }
                }
                for (int i = 0; i < 3; i++) {
                        struct child *c = &s.children[i];
                        if (c->pid > 0 || s.shutting_down)
                                continue;
                        if (!s.ready) {
                                /* A process that dies before the agent was ever ready: the set-up is wrong. */
                                if (log_fd >= 0)
                                        forward_logs(log_fd); /* its last words reach the terminal first */
                                report(ready_fd, c->role == ROLE_HSM ? "the hsm process could not open the PKCS#11 token (see the log)\n"
                                                                     : "a process of the agent failed to start (see the log)\n");
                                ready_fd = -1;
                                goto stop;
                        }
                        if (c->restart_at_ms <= now)
                                (void) start_child(&s, i);
                        else if (c->restart_at_ms < next)
                                next = c->restart_at_ms;
                }
                if (!s.ready && now > start_deadline) {
                        report(ready_fd, "the agent's processes did not come up in 30 s\n");
                        ready_fd = -1;
                        goto stop;
                }
                timeout = next == UINT64_MAX ? (s.ready ? -1 : 1000) : (int) (next - now);

                p[0] = (struct pollfd) { .fd = s.sfd, .events = POLLIN };
                for (int i = 0; i < 3; i++)
                        p[1 + i] = (struct pollfd) { .fd = s.children[i].super_fd, .events = POLLIN };
                p[4] = (struct pollfd) { .fd = log_fd, .events = POLLIN };
                if (poll(p, 5, timeout) < 0 && errno != EINTR) {
                        log_error_errno(errno, "poll() failed: %m");
                        goto stop;
                }
                if (p[4].revents)
                        forward_logs(log_fd);
                for (int i = 0; i < 3; i++)
                        if (p[1 + i].revents && s.children[i].super_fd >= 0)
                                read_child(&s, &s.children[i], rbuf, rbuf_size);
                if (p[0].revents) {
                        struct signalfd_siginfo si;

                        while (read(s.sfd, &si, sizeof si) == (ssize_t) sizeof si) {
                                int sig = (int) si.ssi_signo;

                                if (sig == SIGCHLD)
                                        reap(&s);
                                else if (sig == SIGHUP)
                                        reload(&s);
                                else if (sig == SIGTERM || sig == SIGINT) {
                                        log_info("Received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                                        status = 0;
                                        goto stop;
                                } else if (sig >= SIGRTMIN + ROLE_FRONT && sig <= SIGRTMIN + ROLE_HSM) {
                                        struct child *c = &s.children[sig - SIGRTMIN - ROLE_FRONT];
                                        /* Only our own children may ask. */
                                        bool from_child = false;
                                        for (int i = 0; i < 3; i++)
                                                from_child |= s.children[i].pid > 0 && (pid_t) si.ssi_pid == s.children[i].pid;
                                        if (from_child && c->pid > 0) {
                                                log_error("A peer reported a protocol violation by the %s process: restarting it", c->name);
                                                kill(c->pid, SIGKILL);
                                        }
                                }
                        }
                }
        }

stop:
        s.shutting_down = true;
        (void) notify_send("STOPPING=1");
        for (int i = 0; i < 3; i++)
                if (s.children[i].pid > 0)
                        kill(s.children[i].pid, SIGTERM);
        for (uint64_t deadline = now_boottime_ms() + 5000;;) {
                bool alive = false;

                reap(&s);
                if (log_fd >= 0)
                        forward_logs(log_fd);
                for (int i = 0; i < 3; i++)
                        alive |= s.children[i].pid > 0;
                if (!alive)
                        break;
                if (now_boottime_ms() > deadline) {
                        for (int i = 0; i < 3; i++)
                                if (s.children[i].pid > 0)
                                        kill(s.children[i].pid, SIGKILL);
                        deadline = UINT64_MAX;
                }
                usleep(20000);
        }
        for (int e = 0; e < _EDGE_MAX; e++)
                if (s.stash[e] >= 0)
                        close(s.stash[e]);
        close(s.sfd);
        report(ready_fd, "the agent failed to start\n");
        /* Reloads may have replaced it. */
        cfg->agent = s.cfg;
        cfg->fd = s.config_fd;
        return status;
}

static void print_env(const char *socket_path, pid_t pid) {
        printf("CREDAGENT_SOCK=%s; export CREDAGENT_SOCK;\necho Agent pid %d;\n", socket_path, (int) pid);
        fflush(stdout);
}

int main(int argc, char **argv) {
        struct options o = {};
        _cleanup_free_ char *default_config = NULL, *absolute_config = NULL, *err = NULL, *socket_copy = NULL;
        _cleanup_(loaded_done) struct loaded cfg = { .fd = -1 };
        const char *socket_path;
        int r, listen_fd = -1, status;
        struct stat st_sock;
        char activated_path[sizeof ((struct sockaddr_un *) NULL)->sun_path + 1];
        bool activated;

        log_set_ident("credagent");
        /* A SIGHUP before the supervisor listens for signals asks for a reload early: it waits
         * (blocked) until then instead of ending the agent. */
        {
                sigset_t hup;

                sigemptyset(&hup);
                sigaddset(&hup, SIGHUP);
                sigprocmask(SIG_BLOCK, &hup, NULL);
        }
        if (parse_args(argc, argv, &o) < 0)
                return 2;
        if (o.debug)
                log_set_max_level(LOG_DEBUG);
        if (o.kill_agent)
                return kill_agent(o.socket_path);

        if (!o.config_path) {
                default_config = config_default_path();
                if (!default_config)
                        return 1;
                o.config_path = default_config;
        }
        /* Absolute: the agent changes to / when it goes to the background, and SIGHUP reads the
         * file again. */
        if (o.config_path[0] != '/') {
                /* The working directory prefixed, symlinks left as they are: conf.d/ is looked
                 * for beside the path given, and a SIGHUP follows a switched symlink. */
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (cwd && asprintf(&absolute_config, "%s/%s", cwd, o.config_path) >= 0)
                        o.config_path = absolute_config;
                else
                        absolute_config = NULL;
        }
        r = open_child_programs();
        if (r < 0)
                return 1;
        if (o.check) {
                /* credagent-config checks and prints; its answer is ours. */
                r = run_loader("--check", o.config_path, -1, NULL);
                return r == 0 ? 0 : 1;
        }
        /* credagent-config prints what is wrong with an invalid one. */
        r = run_loader("--start", o.config_path, -1, &cfg);
        if (r != 0)
                return 1;

        /* systemd socket activation: the service manager owns the socket (and its path, mode
         * and group); we neither create nor remove it. */
        r = listen_fds_from_env_full(&listen_fd, &err);
        if (r < 0) {
                fprintf(stderr, "credagent: socket activation: %s\n", err ? err : strerror(-r));
                return 1;
        }
        activated = r > 0;
        if (activated) {
                struct sockaddr_un sa;
                socklen_t sl = sizeof sa;

                (void) proc_set_nonblock(listen_fd);
                if (getsockname(listen_fd, (struct sockaddr *) &sa, &sl) == 0 && sl > sizeof sa.sun_family &&
                    sa.sun_path[0])
                        snprintf(activated_path, sizeof activated_path, "%.*s",
                                 (int) (sl - sizeof sa.sun_family), sa.sun_path);
                else
                        snprintf(activated_path, sizeof activated_path, "(socket from the service manager)");
                socket_path = activated_path;
                st_sock = (struct stat) {};
        } else {
                /* A copy: reloads replace cfg.agent. */
                socket_path = socket_copy = strdup(o.socket_path ? o.socket_path : cfg.agent->socket);
                if (!socket_copy)
                        return 1;
                r = make_listen_socket(socket_path, cfg.agent->socket_group != NULL, cfg.agent->socket_gid, &listen_fd,
                                       &err);
                if (r < 0) {
                        fprintf(stderr, "credagent: %s\n", err ? err : strerror(-r));
                        return 1;
                }
                if (stat(socket_path, &st_sock) < 0)
                        st_sock = (struct stat) {};
        }

        if (o.foreground) {
                if (o.print_env)
                        print_env(socket_path, getpid());
                status = supervise(&cfg, o.config_path, socket_path, listen_fd, -1, -1);
        } else {
                int pipefd[2];
                pid_t pid;

                if (pipe2(pipefd, O_CLOEXEC) < 0) {
                        perror("credagent: pipe");
                        return 1;
                }
                fflush(NULL);
                pid = fork();
                if (pid < 0) {
                        perror("credagent: fork");
                        return 1;
                }
                if (pid > 0) {
                        char buf[1024];
                        ssize_t n;

                        close(pipefd[1]);
                        close(listen_fd);
                        n = read(pipefd[0], buf, sizeof buf - 1);
                        if (n == 2 && memcmp(buf, "OK", 2) == 0) {
                                print_env(socket_path, pid);
                                return 0;
                        }
                        buf[n > 0 ? n : 0] = '\0';
                        fprintf(stderr, "credagent: %s", n > 0 ? buf : "the agent failed to start\n");
                        return 1;
                }
                close(pipefd[0]);
                setsid();
                /* listen() again so that SO_PEERCRED names this process, not the parent that
                 * is about to exit: `credagent -k` finds the agent through it. */
                if (listen(listen_fd, 1024) < 0)
                        _exit(1);
                if (chdir("/") < 0)
                        _exit(1);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC), logpipe[2];
                if (null >= 0) {
                        dup2(null, STDIN_FILENO);
                        dup2(null, STDOUT_FILENO);
                        close(null);
                }
                /* The processes log to stderr, which becomes a pipe the supervisor reads: until the
                 * agent is ready each line also goes to the terminal that started it (so a start-up
                 * failure explains itself), and always to syslog.  Sandboxed processes need no
                 * syslog socket of their own. */
                if (pipe2(logpipe, O_CLOEXEC) < 0)
                        _exit(1);
                term_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
                dup2(logpipe[1], STDERR_FILENO);
                close(logpipe[1]);
                (void) proc_set_nonblock(STDERR_FILENO); /* a full pipe drops lines, never stalls a process */
                (void) proc_set_nonblock(logpipe[0]);
                openlog("credagent", LOG_PID, LOG_DAEMON);
                log_set_writer(daemon_log_writer);
                status = supervise(&cfg, o.config_path, socket_path, listen_fd, pipefd[1], logpipe[0]);
        }

        /* Remove the socket if it is still ours (an activated one is the service manager's). */
        struct stat st;
        if (!activated && stat(socket_path, &st) == 0 && st.st_ino == st_sock.st_ino && st.st_dev == st_sock.st_dev)
                (void) unlink(socket_path);
        return status;
}
