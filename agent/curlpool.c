/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/curlpool.h"
#include "log.h"
#include "macro.h"

/* The poll timeout of the pool thread: how late at most it notices an idle pool. */
#define CURLPOOL_TICK_MS 1000

/* A transfer handed to the pool thread, on the waiting worker's stack. */
struct job {
        struct job *next;               /* in the queue, then in the running list */
        CURL *h;
        CURLcode result;
        bool done;
        bool fallback;  /* the thread is gone: the worker runs the transfer itself */
};

struct curlpool {
        pthread_mutex_t lock;           /* queue, stop, gone, and every job's done/result */
        pthread_cond_t cond;            /* a job is done */
        struct job *queue, **queue_tail;/* submitted, not yet given to the multi handle */
        bool stop;
        bool gone;                      /* the thread has ended (or never ran) */
        bool started;                   /* the thread was created: join it */
        int wake_fd;                    /* eventfd: a job was queued, or stop */
        pthread_t thread;
        /* Only the pool thread touches the multi handle. */
        CURLM *multi;
        CURLSH *share;
        pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
};

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userdata) {
        struct curlpool *p = userdata;

        pthread_mutex_lock(&p->share_lock[(unsigned) data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userdata) {
        struct curlpool *p = userdata;

        pthread_mutex_unlock(&p->share_lock[(unsigned) data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static CURLM *multi_new(void) {
        CURLM *m = curl_multi_init();

        if (!m)
                return NULL;
        /* Idle connections kept; HTTP/1.1 only (oauth_fetch() pins it), so no multiplexing. */
        if (curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long) CURLPOOL_CONNECTIONS_MAX) != CURLM_OK) {
                curl_multi_cleanup(m);
                return NULL;
        }
        return m;
}

/* With P->lock held. */
static void job_finish(struct curlpool *p, struct job *j, CURLcode result, bool fallback) {
        j->result = result;
        j->fallback = fallback;
        j->done = true;
        pthread_cond_broadcast(&p->cond);
}

static void wake(struct curlpool *p) {
        uint64_t one = 1;

        /* A full counter (never, in practice) still leaves the fd readable. */
        (void) !write(p->wake_fd, &one, sizeof one);
}

static void *pool_thread(void *arg) {
        struct curlpool *p = arg;
        uint64_t idle_since = now_ms();
        struct job *active = NULL;      /* in the multi handle; only this thread's */
        unsigned running = 0;
        bool dirty = false; /* connections may be kept since the last flush */

        for (;;) {
                struct curl_waitfd wfd = { .fd = p->wake_fd, .events = CURL_WAIT_POLLIN };
                struct job *todo;
                CURLMsg *m;
                int left, still;
                bool stop;

                pthread_mutex_lock(&p->lock);
                todo = p->queue;
                p->queue = NULL;
                p->queue_tail = &p->queue;
                stop = p->stop;
                pthread_mutex_unlock(&p->lock);

                while (todo) {
                        struct job *j = todo;

                        todo = j->next;
                        if (curl_easy_setopt(j->h, CURLOPT_PRIVATE, (void *) j) != CURLE_OK ||
                            curl_multi_add_handle(p->multi, j->h) != CURLM_OK) {
                                pthread_mutex_lock(&p->lock);
                                job_finish(p, j, CURLE_OUT_OF_MEMORY, false);
                                pthread_mutex_unlock(&p->lock);
                                continue;
                        }
                        j->next = active;
                        active = j;
                        running++;
                        dirty = true;
                }
                if (stop)
                        break;

                (void) curl_multi_perform(p->multi, &still);
                while ((m = curl_multi_info_read(p->multi, &left))) {
                        CURL *h = m->easy_handle;
                        CURLcode result = m->data.result;
                        struct job *j = NULL;

                        if (m->msg != CURLMSG_DONE)
                                continue;
                        (void) curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **) &j);
                        (void) curl_multi_remove_handle(p->multi, h); /* m is gone from here on */
                        for (struct job **i = &active; *i; i = &(*i)->next)
                                if (*i == j) {
                                        *i = j->next;
                                        break;
                                }
                        running--;
                        idle_since = now_ms();
                        if (j) {
                                pthread_mutex_lock(&p->lock);
                                job_finish(p, j, result, false);
                                pthread_mutex_unlock(&p->lock);
                        }
                }

                if (running == 0 && dirty && now_ms() - idle_since >= (uint64_t) CURLPOOL_IDLE_MAX * 1000) {
                        /* Nothing ran for a while: close every kept connection (and with
                         * it its TLS keys) rather than wait for the next transfer to find
                         * them too old. */
                        CURLM *fresh = multi_new();

                        if (!fresh) {
                                log_warning("net: cannot renew the connection pool; token requests go on without it");
                                break;
                        }
                        curl_multi_cleanup(p->multi);
                        p->multi = fresh;
                        dirty = false;
                        log_debug("net: closed the connections idle for %d s", CURLPOOL_IDLE_MAX);
                }

                if (curl_multi_poll(p->multi, &wfd, 1, CURLPOOL_TICK_MS, NULL) == CURLM_OK &&
                    (wfd.revents & CURL_WAIT_POLLIN)) {
                        uint64_t v;

                        (void) !read(p->wake_fd, &v, sizeof v);
                }
        }

        /* Transfers still in the multi handle (none, when the contract of curlpool_free() is
         * kept) and jobs still queued: their workers run them themselves. */
        pthread_mutex_lock(&p->lock);
        p->gone = true;
        while (active) {
                struct job *j = active;

                active = j->next;
                (void) curl_multi_remove_handle(p->multi, j->h);
                job_finish(p, j, CURLE_FAILED_INIT, true);
        }
        for (struct job *j = p->queue; j; j = j->next)
                job_finish(p, j, CURLE_FAILED_INIT, true);
        p->queue = NULL;
        p->queue_tail = &p->queue;
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int curlpool_new(struct curlpool **ret) {
        struct curlpool *p;
        int r;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        for (size_t i = 0; i < ELEMENTSOF(p->share_lock); i++)
                pthread_mutex_init(&p->share_lock[i], NULL);
        p->queue_tail = &p->queue;
        p->gone = true;
        p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->multi = multi_new();
        p->share = curl_share_init();
        if (p->wake_fd < 0 || !p->multi || !p->share ||
            curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
            curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
            curl_share_setopt(p->share, CURLSHOPT_USERDATA, (void *) p) != CURLSHE_OK ||
            curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
                r = p->wake_fd < 0 ? -errno : -ENOMEM;
                goto fail;
        }
        p->gone = false;
        r = -pthread_create(&p->thread, NULL, pool_thread, p);
        if (r < 0) {
                p->gone = true;
                goto fail;
        }
        p->started = true;
        *ret = p;
        return 0;
fail:
        curlpool_free(p);
        return r;
}

struct curlpool *curlpool_free(struct curlpool *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_mutex_unlock(&p->lock);
        if (p->started) {
                wake(p);
                (void) pthread_join(p->thread, NULL);
        }
        if (p->multi)
                curl_multi_cleanup(p->multi); /* closes the kept connections */
        if (p->share)
                curl_share_cleanup(p->share);
        if (p->wake_fd >= 0)
                close(p->wake_fd);
        for (size_t i = 0; i < ELEMENTSOF(p->share_lock); i++)
                pthread_mutex_destroy(&p->share_lock[i]);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
}

CURLcode curlpool_attach(struct curlpool *p, CURL *h) {
        CURLcode cc;

        cc = curl_easy_setopt(h, CURLOPT_SHARE, p->share);
        if (cc == CURLE_OK)
                cc = curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, (long) CURLPOOL_IDLE_MAX);
        if (cc == CURLE_OK)
                cc = curl_easy_setopt(h, CURLOPT_MAXLIFETIME_CONN, (long) CURLPOOL_LIFETIME_MAX);
        return cc;
}

CURLcode curlpool_perform(struct curlpool *p, CURL *h) {
        struct job j = { .h = h };
        bool gone;

        pthread_mutex_lock(&p->lock);
        gone = p->gone || p->stop;
        if (!gone) {
                *p->queue_tail = &j;
                p->queue_tail = &j.next;
        }
        pthread_mutex_unlock(&p->lock);
        if (gone)
                return curl_easy_perform(h);

        wake(p);
        pthread_mutex_lock(&p->lock);
        while (!j.done)
                pthread_cond_wait(&p->cond, &p->lock);
        pthread_mutex_unlock(&p->lock);
        if (j.fallback)
                return curl_easy_perform(h);
        return j.result;
}

CURLcode curlpool_ssl_ctx_cb(CURL *h, void *ssl_ctx, void *userdata) {
#ifdef SSL_OP_CLEANSE_PLAINTEXT
        SSL_CTX_set_options(ssl_ctx, SSL_OP_CLEANSE_PLAINTEXT);
#endif
        return CURLE_OK;
}
