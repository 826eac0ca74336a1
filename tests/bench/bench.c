/* SPDX-License-Identifier: ISC */
/* credagent-bench: the load generators and the floor of tests/bench/run.sh.
 *
 * A deliberately small HTTP/1.1 client over AF_UNIX (status line + Content-Length body, no
 * library), threads for concurrency, latencies on CLOCK_MONOTONIC.  Every subcommand prints
 * one line of key=value pairs on stdout for the driver to put in its table:
 *
 *   echo-server SOCK RESP_BYTES          the floor: one epoll thread answering each request
 *                                        (up to the blank line) with RESP_BYTES bytes
 *   get SOCK PATH                        one request: status, request and answer sizes
 *   load SOCK PATH ka|new THREADS SECONDS [MAX_REQUESTS]
 *                                        THREADS callers, keep-alive or a new connection per
 *                                        request, for SECONDS (or until MAX_REQUESTS in all)
 *   storm SOCK PATH CALLERS [UID_BASE N_UIDS]
 *                                        CALLERS connected callers released at once; with
 *                                        UID_BASE, caller i connects as effective uid
 *                                        UID_BASE + i % N_UIDS (the agent lets one uid hold
 *                                        at most half its connections)
 *   hol SOCK SLOW_PREFIX N_SLOW WAIT_MS PATH THREADS SECONDS
 *                                        N_SLOW requests for SLOW_PREFIX1..N (cold keys whose
 *                                        IdP answers slowly), then after WAIT_MS a keep-alive
 *                                        load on PATH while they wait
 *   spawn N CMD [ARG...]                 runs CMD N times (stdout to /dev/null), times each
 *   populate SOCK UID_BASE N_UIDS PARALLEL GID PATH...
 *                                        as each uid (a forked child with setresuid(), GID as
 *                                        its only group), requests every PATH once
 *
 * A request without an answer after $BENCH_IO_TIMEOUT seconds (default 5) counts as an error.
 * Benchmarks report; nothing here passes or fails on time.  Exit status 0 unless the run
 * itself could not be made (bad arguments, no socket). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BUF 65536                 /* largest answer read, bytes */
#define BENCH_MAX_THREADS 4096
#define BENCH_THREAD_STACK (256 * 1024)
#define BENCH_IO_TIMEOUT_S 5            /* a request with no answer by then counts as an error */

extern char **environ;

static long io_timeout_s = BENCH_IO_TIMEOUT_S;

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void raise_nofile(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

/* ------------------------------------------------------------------ latency samples */

struct lat {
        uint64_t *v;    /* ns */
        size_t n, cap;
};

static int lat_add(struct lat *l, uint64_t ns) {
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 4096;
                uint64_t *v = realloc(l->v, cap * sizeof *v);

                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = ns;
        return 0;
}

static int lat_merge(struct lat *into, const struct lat *from) {
        for (size_t i = 0; i < from->n; i++)
                if (lat_add(into, from->v[i]) < 0)
                        return -ENOMEM;
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double lat_pct_us(const struct lat *l, double p) {
        size_t i;

        if (l->n == 0)
                return 0;
        i = (size_t) (p / 100.0 * (double) l->n + 0.999999);
        if (i < 1)
                i = 1;
        if (i > l->n)
                i = l->n;
        return (double) l->v[i - 1] / 1000.0;
}

static void lat_print(struct lat *l) {
        qsort(l->v, l->n, sizeof *l->v, cmp_u64);
        printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f", lat_pct_us(l, 50), lat_pct_us(l, 99),
               lat_pct_us(l, 99.9), lat_pct_us(l, 100));
}

/* ------------------------------------------------------------------ HTTP over AF_UNIX */

static int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        /* A server that stops answering makes the run report errors, not hang. */
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval) { .tv_sec = io_timeout_s }, sizeof(struct timeval));
        return fd;
}

struct hconn {
        int fd;
        size_t len;             /* bytes in buf not yet consumed */
        char buf[BENCH_BUF];
};

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

/* Reads one answer: "HTTP/1.x NNN ..." + headers + Content-Length bytes.  Returns 0 with the
 * status and the answer's size, -ECONNRESET when the peer closed, -EPROTO, or -errno. */
static int http_read(struct hconn *c, int *ret_status, size_t *ret_size) {
        size_t head = 0, clen = 0;
        bool have_clen = false;

        for (;;) {
                if (head == 0) {
                        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);

                        if (e) {
                                head = (size_t) (e - c->buf) + 4;
                                if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0)
                                        return -EPROTO;
                                *ret_status = atoi(c->buf + 9);
                                for (char *l = memchr(c->buf, '\n', head); l && l < c->buf + head; l = memchr(l, '\n', (size_t) (c->buf + head - l))) {
                                        l++;
                                        if (strncasecmp(l, "Content-Length:", 15) == 0) {
                                                clen = strtoul(l + 15, NULL, 10);
                                                have_clen = true;
                                        }
                                }
                                if (!have_clen)
                                        return -EPROTO;
                                if (head + clen > sizeof c->buf)
                                        return -EMSGSIZE;
                        }
                }
                if (head > 0 && c->len >= head + clen) {
                        *ret_size = head + clen;
                        c->len -= head + clen;
                        memmove(c->buf, c->buf + head + clen, c->len);
                        return 0;
                }
                if (c->len == sizeof c->buf)
                        return -EMSGSIZE;
                ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                c->len += (size_t) n;
        }
}

static int http_exchange(struct hconn *c, const char *req, size_t req_len, int *ret_status, size_t *ret_size) {
        int r = write_all(c->fd, req, req_len);

        if (r < 0)
                return r;
        return http_read(c, ret_status, ret_size);
}

static void hconn_close(struct hconn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->len = 0;
}

static char *make_request(const char *path, size_t *ret_len) {
        char *s = NULL;
        int n = asprintf(&s, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);

        if (n < 0)
                return NULL;
        *ret_len = (size_t) n;
        return s;
}

static pthread_t start_thread(void *(*fn)(void *), void *arg) {
        pthread_attr_t a;
        pthread_t t;
        int r;

        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, BENCH_THREAD_STACK);
        r = pthread_create(&t, &a, fn, arg);
        pthread_attr_destroy(&a);
        if (r != 0) {
                fprintf(stderr, "credagent-bench: pthread_create: %s\n", strerror(r));
                exit(2);
        }
        return t;
}

/* ------------------------------------------------------------------ load */

struct load_ctx {
        const char *sock;
        const char *req;
        size_t req_len;
        bool newconn;
        uint64_t duration_ns;
        atomic_long budget;     /* requests left when max_requests was given, else < 0 */
        bool limited;
        pthread_barrier_t ready;
        _Atomic uint64_t start_ns; /* set by the first thread past the barrier */
};

struct load_thread {
        struct load_ctx *ctx;
        struct lat lat;
        uint64_t ok, non200, errors, reconnects;
        uint64_t end_ns;
};

static void *load_main(void *arg) {
        struct load_thread *t = arg;
        struct load_ctx *x = t->ctx;
        struct hconn *c = malloc(sizeof *c);
        int status;
        size_t size;

        if (!c)
                exit(2);
        c->fd = -1;
        c->len = 0;
        if (!x->newconn) {
                /* Connect and warm up before the clock starts: one unmeasured request. */
                c->fd = unix_connect(x->sock);
                if (c->fd >= 0 && http_exchange(c, x->req, x->req_len, &status, &size) < 0)
                        hconn_close(c);
        }
        pthread_barrier_wait(&x->ready);
        uint64_t expected = 0, start = now_ns();
        if (!atomic_compare_exchange_strong(&x->start_ns, &expected, start))
                start = expected;
        for (;;) {
                uint64_t t0 = now_ns();
                int r;

                if (t0 - start >= x->duration_ns)
                        break;
                if (x->limited && atomic_fetch_sub(&x->budget, 1) <= 0)
                        break;
                if (c->fd < 0) {
                        c->fd = unix_connect(x->sock);
                        if (c->fd < 0) {
                                t->errors++;
                                continue;
                        }
                        if (!x->newconn)
                                t->reconnects++;
                }
                r = http_exchange(c, x->req, x->req_len, &status, &size);
                if (r < 0) {
                        t->errors++;
                        hconn_close(c);
                        continue;
                }
                if (lat_add(&t->lat, now_ns() - t0) < 0)
                        exit(2);
                if (status == 200)
                        t->ok++;
                else
                        t->non200++;
                if (x->newconn)
                        hconn_close(c);
        }
        t->end_ns = now_ns();
        hconn_close(c);
        free(c);
        return NULL;
}

/* Runs the load described by X with N threads; prints one line prefixed by LABEL. */
static void run_load(struct load_ctx *x, unsigned n, const char *label) {
        struct load_thread *ts = calloc(n, sizeof *ts);
        pthread_t *tids = calloc(n, sizeof *tids);
        struct lat all = {};
        uint64_t ok = 0, non200 = 0, errors = 0, reconnects = 0, end = 0;
        double secs;

        if (!ts || !tids)
                exit(2);
        pthread_barrier_init(&x->ready, NULL, n);
        atomic_store(&x->start_ns, 0);
        for (unsigned i = 0; i < n; i++) {
                ts[i].ctx = x;
                tids[i] = start_thread(load_main, &ts[i]);
        }
        for (unsigned i = 0; i < n; i++) {
                pthread_join(tids[i], NULL);
                ok += ts[i].ok;
                non200 += ts[i].non200;
                errors += ts[i].errors;
                reconnects += ts[i].reconnects;
                if (ts[i].end_ns > end)
                        end = ts[i].end_ns;
                if (lat_merge(&all, &ts[i].lat) < 0)
                        exit(2);
                free(ts[i].lat.v);
        }
        secs = (double) (end - atomic_load(&x->start_ns)) / 1e9;
        printf("%s threads=%u mode=%s ok=%" PRIu64 " non200=%" PRIu64 " errors=%" PRIu64 " reconnects=%" PRIu64
               " secs=%.3f rps=%.0f",
               label, n, x->newconn ? "new" : "ka", ok, non200, errors, reconnects, secs,
               secs > 0 ? (double) (ok + non200) / secs : 0);
        lat_print(&all);
        printf("\n");
        fflush(stdout);
        free(all.v);
        free(ts);
        free(tids);
        pthread_barrier_destroy(&x->ready);
}

static int cmd_load(int argc, char **argv) {
        struct load_ctx x = {};
        unsigned threads;
        char *req;

        if (argc < 6)
                return -EINVAL;
        req = make_request(argv[2], &x.req_len);
        if (!req)
                return -ENOMEM;
        x.sock = argv[1];
        x.req = req;
        x.newconn = strcmp(argv[3], "new") == 0;
        threads = (unsigned) strtoul(argv[4], NULL, 10);
        x.duration_ns = (uint64_t) (strtod(argv[5], NULL) * 1e9);
        if (argc > 6) {
                x.limited = true;
                atomic_init(&x.budget, strtol(argv[6], NULL, 10));
        }
        if (threads == 0 || threads > BENCH_MAX_THREADS)
                return -EINVAL;
        run_load(&x, threads, "load");
        free(req);
        return 0;
}

/* ------------------------------------------------------------------ get */

static int cmd_get(int argc, char **argv) {
        struct hconn *c;
        size_t req_len, size;
        char *req;
        int status, r;

        if (argc < 3)
                return -EINVAL;
        req = make_request(argv[2], &req_len);
        c = malloc(sizeof *c);
        if (!req || !c)
                return -ENOMEM;
        c->len = 0;
        c->fd = unix_connect(argv[1]);
        if (c->fd < 0) {
                r = c->fd;
                goto out;
        }
        r = http_exchange(c, req, req_len, &status, &size);
        if (r == 0)
                printf("get status=%d req_bytes=%zu resp_bytes=%zu\n", status, req_len, size);
out:
        hconn_close(c);
        free(c);
        free(req);
        return r;
}

/* ------------------------------------------------------------------ storm */

struct storm_ctx {
        const char *sock;
        const char *req;
        size_t req_len;
        pthread_barrier_t ready;
        uint64_t release_ns;
};

struct storm_thread {
        struct storm_ctx *ctx;
        long uid;               /* effective uid to connect as, -1: ours */
        int status;             /* HTTP status, or a negative errno */
        uint64_t sent_ns, done_ns;
};

static void *storm_main(void *arg) {
        struct storm_thread *t = arg;
        struct storm_ctx *x = t->ctx;
        struct hconn *c = malloc(sizeof *c);
        size_t size;
        int r;

        if (!c)
                exit(2);
        c->len = 0;
        /* This thread only (the raw syscall, not glibc's process-wide wrapper): the kernel
         * records the connecting thread's effective uid as the peer's. */
        if (t->uid >= 0 && syscall(SYS_setresuid, -1, (uid_t) t->uid, -1) < 0)
                c->fd = -errno;
        else
                c->fd = unix_connect(x->sock);
        pthread_barrier_wait(&x->ready);
        t->sent_ns = now_ns();
        if (c->fd < 0)
                r = c->fd;
        else
                r = http_exchange(c, x->req, x->req_len, &t->status, &size);
        t->done_ns = now_ns();
        if (r < 0)
                t->status = r;
        hconn_close(c);
        free(c);
        return NULL;
}

static int cmd_storm(int argc, char **argv) {
        unsigned long uid_base = 0, n_uids = 0;
        struct storm_ctx x = {};
        struct storm_thread *ts;
        pthread_t *tids;
        struct lat all = {}, from_release = {};
        unsigned n, ok = 0, other = 0, failed = 0;
        char *req;

        if (argc < 4)
                return -EINVAL;
        n = (unsigned) strtoul(argv[3], NULL, 10);
        if (n == 0 || n > BENCH_MAX_THREADS)
                return -EINVAL;
        if (argc >= 6) {
                uid_base = strtoul(argv[4], NULL, 10);
                n_uids = strtoul(argv[5], NULL, 10);
                if (n_uids == 0)
                        return -EINVAL;
        }
        req = make_request(argv[2], &x.req_len);
        ts = calloc(n, sizeof *ts);
        tids = calloc(n, sizeof *tids);
        if (!req || !ts || !tids)
                return -ENOMEM;
        x.sock = argv[1];
        x.req = req;
        pthread_barrier_init(&x.ready, NULL, n + 1);
        for (unsigned i = 0; i < n; i++) {
                ts[i].ctx = &x;
                ts[i].uid = n_uids ? (long) (uid_base + i % n_uids) : -1;
                tids[i] = start_thread(storm_main, &ts[i]);
        }
        pthread_barrier_wait(&x.ready);
        x.release_ns = now_ns();
        for (unsigned i = 0; i < n; i++) {
                pthread_join(tids[i], NULL);
                if (ts[i].status == 200)
                        ok++;
                else if (ts[i].status > 0)
                        other++;
                else
                        failed++;
                if (ts[i].status > 0) {
                        (void) lat_add(&all, ts[i].done_ns - ts[i].sent_ns);
                        (void) lat_add(&from_release, ts[i].done_ns - x.release_ns);
                }
        }
        qsort(from_release.v, from_release.n, sizeof *from_release.v, cmp_u64);
        printf("storm callers=%u ok=%u non200=%u errors=%u first_answer_us=%.1f last_answer_us=%.1f", n, ok, other,
               failed, lat_pct_us(&from_release, 0), lat_pct_us(&from_release, 100));
        lat_print(&all);
        printf("\n");
        free(all.v);
        free(from_release.v);
        free(ts);
        free(tids);
        free(req);
        return 0;
}

/* ------------------------------------------------------------------ head-of-line */

struct slow_thread {
        const char *sock;
        char *req;
        size_t req_len;
        int status;
        uint64_t done_ns;
};

static void *slow_main(void *arg) {
        struct slow_thread *t = arg;
        struct hconn *c = malloc(sizeof *c);
        size_t size;
        int r;

        if (!c)
                exit(2);
        c->len = 0;
        c->fd = unix_connect(t->sock);
        r = c->fd < 0 ? c->fd : http_exchange(c, t->req, t->req_len, &t->status, &size);
        if (r < 0)
                t->status = r;
        t->done_ns = now_ns();
        hconn_close(c);
        free(c);
        return NULL;
}

static int cmd_hol(int argc, char **argv) {
        struct load_ctx x = {};
        struct slow_thread *slow;
        pthread_t *tids;
        unsigned n_slow, threads, slow_ok = 0, slow_during = 0;
        uint64_t t_start, t_load_end, slow_first = UINT64_MAX, slow_last = 0;
        char *req;

        if (argc < 8)
                return -EINVAL;
        n_slow = (unsigned) strtoul(argv[3], NULL, 10);
        threads = (unsigned) strtoul(argv[6], NULL, 10);
        if (n_slow == 0 || n_slow > BENCH_MAX_THREADS || threads == 0 || threads > BENCH_MAX_THREADS)
                return -EINVAL;
        slow = calloc(n_slow, sizeof *slow);
        tids = calloc(n_slow, sizeof *tids);
        req = make_request(argv[5], &x.req_len);
        if (!slow || !tids || !req)
                return -ENOMEM;

        t_start = now_ns();
        for (unsigned i = 0; i < n_slow; i++) {
                char path[256];

                snprintf(path, sizeof path, "/v1/token/%s%u", argv[2], i + 1);
                slow[i].sock = argv[1];
                slow[i].req = make_request(path, &slow[i].req_len);
                if (!slow[i].req)
                        return -ENOMEM;
                tids[i] = start_thread(slow_main, &slow[i]);
        }
        usleep((useconds_t) strtoul(argv[4], NULL, 10) * 1000);

        x.sock = argv[1];
        x.req = req;
        x.duration_ns = (uint64_t) (strtod(argv[7], NULL) * 1e9);
        run_load(&x, threads, "hol");
        t_load_end = now_ns();

        for (unsigned i = 0; i < n_slow; i++) {
                pthread_join(tids[i], NULL);
                if (slow[i].status == 200)
                        slow_ok++;
                if (slow[i].done_ns < t_load_end)
                        slow_during++;
                if (slow[i].done_ns < slow_first)
                        slow_first = slow[i].done_ns;
                if (slow[i].done_ns > slow_last)
                        slow_last = slow[i].done_ns;
                free(slow[i].req);
        }
        printf("slow n=%u ok=%u answered_during_load=%u first_ms=%.0f last_ms=%.0f load_window_ms=%.0f-%.0f\n", n_slow,
               slow_ok, slow_during, (double) (slow_first - t_start) / 1e6, (double) (slow_last - t_start) / 1e6,
               (double) (atomic_load(&x.start_ns) - t_start) / 1e6, (double) (t_load_end - t_start) / 1e6);
        free(slow);
        free(tids);
        free(req);
        return 0;
}

/* ------------------------------------------------------------------ spawn */

static int cmd_spawn(int argc, char **argv) {
        posix_spawn_file_actions_t fa;
        struct lat l = {};
        unsigned n, failed = 0;
        uint64_t total = 0;

        if (argc < 3)
                return -EINVAL;
        n = (unsigned) strtoul(argv[1], NULL, 10);
        if (n == 0)
                return -EINVAL;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        for (unsigned i = 0; i < n + 5; i++) {   /* 5 unmeasured runs warm the page cache */
                uint64_t t0 = now_ns();
                pid_t pid;
                int st;

                if (posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ) != 0) {
                        failed++;
                        continue;
                }
                while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                        ;
                if (i < 5)
                        continue;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        failed++;
                total += now_ns() - t0;
                (void) lat_add(&l, now_ns() - t0);
        }
        posix_spawn_file_actions_destroy(&fa);
        printf("spawn runs=%u failed=%u mean_us=%.1f", n, failed, l.n ? (double) total / (double) l.n / 1000.0 : 0);
        lat_print(&l);
        printf("\n");
        free(l.v);
        return 0;
}

/* ------------------------------------------------------------------ populate */

/* In a child: becomes UID (group GID only), requests each path once; retries a 503 (too many
 * fetches in flight) a few times.  Returns the number of paths that never got a 200. */
static int populate_child(const char *sock, uid_t uid, gid_t gid, char **paths, int n_paths) {
        struct hconn *c = malloc(sizeof *c);
        int failed = 0;

        if (!c || setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                return n_paths;
        for (int i = 0; i < n_paths; i++) {
                size_t req_len, size;
                char *req = make_request(paths[i], &req_len);
                int status = 0;

                for (int attempt = 0; req && attempt < 20; attempt++) {
                        c->len = 0;
                        c->fd = unix_connect(sock);
                        if (c->fd >= 0 && http_exchange(c, req, req_len, &status, &size) < 0)
                                status = 0;
                        hconn_close(c);
                        if (status != 503)
                                break;
                        usleep(50000);
                }
                if (status != 200)
                        failed++;
                free(req);
        }
        free(c);
        return failed > 255 ? 255 : failed;
}

static int cmd_populate(int argc, char **argv) {
        unsigned long base, n_uids, parallel, running = 0, next = 0, failed_children = 0, failed_requests = 0;
        gid_t gid;
        uint64_t t0 = now_ns();

        if (argc < 7)
                return -EINVAL;
        base = strtoul(argv[2], NULL, 10);
        n_uids = strtoul(argv[3], NULL, 10);
        parallel = strtoul(argv[4], NULL, 10);
        gid = (gid_t) strtoul(argv[5], NULL, 10);
        if (parallel == 0)
                return -EINVAL;
        while (next < n_uids || running > 0) {
                if (next < n_uids && running < parallel) {
                        pid_t pid = fork();

                        if (pid < 0)
                                return -errno;
                        if (pid == 0)
                                _exit(populate_child(argv[1], (uid_t) (base + next), gid, argv + 6, argc - 6));
                        next++;
                        running++;
                        continue;
                }
                int st;
                if (wait(&st) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                running--;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                        failed_children++;
                        failed_requests += WIFEXITED(st) ? (unsigned long) WEXITSTATUS(st) : (unsigned long) (argc - 6);
                }
        }
        printf("populate callers=%lu requests=%lu failed_requests=%lu failed_callers=%lu secs=%.2f\n", n_uids,
               n_uids * (unsigned long) (argc - 6), failed_requests, failed_children, (double) (now_ns() - t0) / 1e9);
        return 0;
}

/* ------------------------------------------------------------------ the floor */

struct echo_conn {
        int fd;
        size_t len;
        char buf[8192];
};

static int cmd_echo_server(int argc, char **argv) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t resp_len, head_len;
        char *resp;
        int lfd, ep;

        if (argc < 3)
                return -EINVAL;
        resp_len = strtoul(argv[2], NULL, 10);
        if (resp_len < 64 || resp_len > 60000 || strlen(argv[1]) >= sizeof sa.sun_path)
                return -EINVAL;
        /* A well-formed answer of exactly RESP_BYTES bytes: the client parses it like the agent's. */
        resp = malloc(resp_len + 1);
        if (!resp)
                return -ENOMEM;
        head_len = 0;
        for (size_t digits = 1; digits < 6; digits++) {
                head_len = strlen("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n") + digits;
                if ((size_t) snprintf(NULL, 0, "%zu", resp_len - head_len) == digits)
                        break;
        }
        snprintf(resp, resp_len + 1, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", resp_len - head_len);
        memset(resp + head_len, 'x', resp_len - head_len);

        raise_nofile();
        strcpy(sa.sun_path, argv[1]);
        (void) unlink(argv[1]);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 1024) < 0)
                return -errno;
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &(struct epoll_event) { .events = EPOLLIN, .data.ptr = NULL }) < 0)
                return -errno;
        printf("echo-server ready resp_bytes=%zu\n", resp_len);
        fflush(stdout);

        for (;;) {
                struct epoll_event ev[64];
                int n = epoll_wait(ep, ev, 64, -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (int i = 0; i < n; i++) {
                        struct echo_conn *c = ev[i].data.ptr;

                        if (!c) {
                                for (;;) {
                                        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                        struct echo_conn *nc;

                                        if (fd < 0)
                                                break;
                                        nc = malloc(sizeof *nc);
                                        if (!nc) {
                                                close(fd);
                                                continue;
                                        }
                                        nc->fd = fd;
                                        nc->len = 0;
                                        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd,
                                                      &(struct epoll_event) { .events = EPOLLIN, .data.ptr = nc }) < 0) {
                                                close(fd);
                                                free(nc);
                                        }
                                }
                                continue;
                        }
                        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                        if (r <= 0) {
                                if (r < 0 && errno == EAGAIN)
                                        continue;
                                close(c->fd);
                                free(c);
                                continue;
                        }
                        c->len += (size_t) r;
                        for (;;) {
                                char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
                                size_t used;

                                if (!e)
                                        break;
                                used = (size_t) (e - c->buf) + 4;
                                /* Answers are small: the socket buffer takes them whole; if not,
                                 * wait for room like a blocking server would. */
                                fcntl(c->fd, F_SETFL, 0);
                                (void) write_all(c->fd, resp, resp_len);
                                fcntl(c->fd, F_SETFL, O_NONBLOCK);
                                c->len -= used;
                                memmove(c->buf, c->buf + used, c->len);
                        }
                        if (c->len == sizeof c->buf) {
                                close(c->fd);
                                free(c);
                        }
                }
        }
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
        fputs("usage: credagent-bench echo-server SOCK RESP_BYTES\n"
              "       credagent-bench get SOCK PATH\n"
              "       credagent-bench load SOCK PATH ka|new THREADS SECONDS [MAX_REQUESTS]\n"
              "       credagent-bench storm SOCK PATH CALLERS [UID_BASE N_UIDS]\n"
              "       credagent-bench hol SOCK SLOW_PREFIX N_SLOW WAIT_MS PATH THREADS SECONDS\n"
              "       credagent-bench spawn N CMD [ARG...]\n"
              "       credagent-bench populate SOCK UID_BASE N_UIDS PARALLEL GID PATH...\n",
              stderr);
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*fn)(int argc, char **argv);
        } cmds[] = {
                { "echo-server", cmd_echo_server }, { "get", cmd_get },     { "load", cmd_load },
                { "storm", cmd_storm },             { "hol", cmd_hol },     { "spawn", cmd_spawn },
                { "populate", cmd_populate },
        };

        signal(SIGPIPE, SIG_IGN);
        raise_nofile();
        if (getenv("BENCH_IO_TIMEOUT"))
                io_timeout_s = strtol(getenv("BENCH_IO_TIMEOUT"), NULL, 10);
        if (argc < 2) {
                usage();
                return 2;
        }
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
                if (strcmp(argv[1], cmds[i].name) == 0) {
                        int r = cmds[i].fn(argc - 1, argv + 1);

                        if (r == -EINVAL)
                                usage();
                        else if (r < 0)
                                fprintf(stderr, "credagent-bench %s: %s\n", argv[1], strerror(-r));
                        return r < 0 ? 1 : 0;
                }
        usage();
        return 2;
}
