/* SPDX-License-Identifier: ISC */
/* credagent: the agent.  main() loads the config, makes the listening socket, then runs the
 * front (HTTP, policy, cache) with the fetcher (hsm + OAuth client) until SIGTERM/SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/fetch.h"
#include "agent/frontproc.h"
#include "agent/oauth.h"
#include "agent/tokcache.h"
#include "build-config.h"
#include "hsm/hsm.h"
#include "ipc/client.h"
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

/* Runs the agent until SIGTERM/SIGINT.  READY_FD (or -1) gets "OK" once serving, or the
 * start-up error.  Returns an exit status. */
static int run(const struct config *cfg, const char *socket_path, int listen_fd, int ready_fd) {
        struct hsm_params hp = {
                .module = cfg->module,
                .module_dirs = cfg->module_dirs ? (const char *const *) cfg->module_dirs : hsm_default_module_dirs,
                .token_uri = cfg->token,
                .pin_source = cfg->pin_source,
        };
        _cleanup_free_ char *err = NULL;
        struct hsm *hsm = NULL;
        struct fetcher *fetcher = NULL;
        struct tokcache *cache = NULL;
        struct frontproc *front = NULL;
        sigset_t mask;
        int r, sig, status = 1;

        harden_process();

        /* Every thread created from here on inherits the blocked signals; main takes them with sigwait. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = hsm_open(&hp, &hsm, &err);
        if (r < 0) {
                char *msg = NULL;
                set_error(&msg, "cannot open the PKCS#11 token: %s\n", err ? err : strerror(-r));
                log_error("%s", msg ? msg : "cannot open the PKCS#11 token");
                report(ready_fd, msg ? msg : "cannot open the PKCS#11 token\n");
                free(msg);
                goto out;
        }
        if (oauth_global_init() < 0) {
                report(ready_fd, "cannot initialise libcurl\n");
                goto out;
        }
        fetcher = fetcher_new(cfg, hsm);
        cache = fetcher ? tokcache_new(fetcher_start, fetcher) : NULL;
        if (!cache) {
                report(ready_fd, "out of memory\n");
                goto out;
        }
        fetcher_set_cache(fetcher, cache);
        r = frontproc_start(cfg, cache, listen_fd, &front);
        listen_fd = -1; /* the front owns it now */
        if (r < 0) {
                log_error_errno(r, "Failed to start the HTTP server on %s: %m", socket_path);
                report(ready_fd, "cannot start the HTTP server\n");
                goto out;
        }
        log_info("credagent %s listening on %s (%zu credentials)", CREDAGENT_VERSION, socket_path,
                 cfg->n_credentials);
        report(ready_fd, "OK");
        ready_fd = -1;

        for (;;) {
                if (sigwait(&mask, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        log_notice("SIGHUP: configuration reload is not supported by this version; restart the agent to apply a new configuration");
                        continue;
                }
                log_info("Received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                break;
        }
        status = 0;
out:
        if (front)
                frontproc_quiesce(front);
        if (fetcher)
                fetcher_shutdown(fetcher);
        frontproc_free(front);
        tokcache_free(cache);
        fetcher_free(fetcher);
        if (listen_fd >= 0)
                close(listen_fd);
        hsm_close(hsm);
        oauth_global_cleanup();
        if (ready_fd >= 0)
                report(ready_fd, "the agent failed to start\n");
        return status;
}

static void print_env(const char *socket_path, pid_t pid) {
        printf("CREDAGENT_SOCK=%s; export CREDAGENT_SOCK;\necho Agent pid %d;\n", socket_path, (int) pid);
        fflush(stdout);
}

int main(int argc, char **argv) {
        struct options o = {};
        _cleanup_free_ char *default_config = NULL, *errors = NULL, *err = NULL;
        _cleanup_(config_freep) struct config *cfg = NULL;
        const char *socket_path;
        int r, listen_fd = -1, status;
        struct stat st_sock;

        log_set_ident("credagent");
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
        r = config_load(o.config_path, 0, &cfg, &errors);
        if (r < 0) {
                if (errors)
                        fprintf(stderr, "%s%s", errors, errors[strlen(errors) - 1] == '\n' ? "" : "\n");
                else
                        fprintf(stderr, "credagent: %s: %s\n", o.config_path, strerror(-r));
                fprintf(stderr, "credagent: %s: the configuration is invalid\n", o.config_path);
                return 1;
        }
        if (o.check) {
                size_t n_principals = 0;
                for (size_t i = 0; i < cfg->n_credentials; i++)
                        n_principals += cfg->credentials[i]->n_principals;
                printf("%s: configuration OK (%zu credentials, %zu principals)\n", o.config_path,
                       cfg->n_credentials, n_principals);
                return 0;
        }

        socket_path = o.socket_path ? o.socket_path : cfg->socket;
        r = make_listen_socket(socket_path, cfg->socket_group != NULL, cfg->socket_gid, &listen_fd, &err);
        if (r < 0) {
                fprintf(stderr, "credagent: %s\n", err ? err : strerror(-r));
                return 1;
        }
        if (stat(socket_path, &st_sock) < 0)
                st_sock = (struct stat) {};

        if (o.foreground) {
                if (o.print_env)
                        print_env(socket_path, getpid());
                status = run(cfg, socket_path, listen_fd, -1);
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
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null >= 0) {
                        dup2(null, STDIN_FILENO);
                        dup2(null, STDOUT_FILENO);
                        dup2(null, STDERR_FILENO);
                        close(null);
                }
                log_open_syslog();
                status = run(cfg, socket_path, listen_fd, pipefd[1]);
        }

        /* Remove the socket if it is still ours. */
        struct stat st;
        if (stat(socket_path, &st) == 0 && st.st_ino == st_sock.st_ino && st.st_dev == st_sock.st_dev)
                (void) unlink(socket_path);
        return status;
}
