/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/tokcache.h"
#include "secmem.h"

#define TOKCACHE_BUCKETS 1024

struct tokcache_entry {
        struct tokcache_entry *next_in_bucket;
        /* key */
        const struct config_principal *principal;
        char *scope;                      /* requested scope, may be NULL */
        /* value */
        char *access_token;               /* NULL when none; wiped on replace */
        char *granted_scope;
        uint64_t obtained_at;             /* ms CLOCK_BOOTTIME */
        uint64_t expires_at;              /* ms CLOCK_BOOTTIME */
        /* single flight */
        bool fetching;
        bool detached;                    /* removed by a reload while its fetch ran */
        struct tokcache_waiter *waiters;
};

struct tokcache {
        pthread_mutex_t lock;
        tokcache_fetch_fn fetch;
        void *userdata;
        size_t n_entries;
        struct tokcache_entry *buckets[TOKCACHE_BUCKETS];
};

uint64_t now_boottime_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void tokcache_answer_clear(struct tokcache_answer *a) {
        if (!a)
                return;
        free_wiped(a->access_token);
        free(a->scope);
        *a = (struct tokcache_answer) {};
}

int tokcache_answer_copy(const struct tokcache_answer *src, struct tokcache_answer *dst) {
        struct tokcache_answer a = *src;

        a.access_token = NULL;
        a.scope = NULL;
        if (src->access_token && !(a.access_token = strdup(src->access_token)))
                goto oom;
        if (src->scope && !(a.scope = strdup(src->scope)))
                goto oom;
        *dst = a;
        return 0;
oom:
        tokcache_answer_clear(&a);
        *dst = (struct tokcache_answer) {};
        return -ENOMEM;
}

struct tokcache *tokcache_new(tokcache_fetch_fn fetch, void *userdata) {
        struct tokcache *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        pthread_mutex_init(&c->lock, NULL);
        c->fetch = fetch;
        c->userdata = userdata;
        return c;
}

static void entry_drop_token(struct tokcache_entry *e) {
        e->access_token = free_wiped(e->access_token);
        free(e->granted_scope);
        e->granted_scope = NULL;
        e->obtained_at = e->expires_at = 0;
}

void tokcache_free(struct tokcache *c) {
        if (!c)
                return;
        for (size_t i = 0; i < TOKCACHE_BUCKETS; i++)
                for (struct tokcache_entry *e = c->buckets[i], *next; e; e = next) {
                        next = e->next_in_bucket;
                        entry_drop_token(e);
                        free(e->scope);
                        free(e);
                }
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static size_t key_hash(const struct config_principal *p, const char *scope) {
        /* FNV-1a over the principal's address and the scope. */
        uint64_t h = 1469598103934665603ULL;
        uintptr_t v = (uintptr_t) p;

        for (size_t i = 0; i < sizeof v; i++, v >>= 8)
                h = (h ^ (v & 0xff)) * 1099511628211ULL;
        for (const char *s = scope ? scope : ""; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        h = (h ^ (scope ? 1 : 0)) * 1099511628211ULL;
        return (size_t) (h % TOKCACHE_BUCKETS);
}

static struct tokcache_entry *entry_get(struct tokcache *c, const struct config_principal *p, const char *scope,
                                        int *ret_error) {
        size_t b = key_hash(p, scope);
        struct tokcache_entry *e;

        for (e = c->buckets[b]; e; e = e->next_in_bucket)
                if (e->principal == p && strcmp_null(e->scope, scope) == 0)
                        return e;

        if (c->n_entries >= TOKCACHE_MAX_ENTRIES) {
                *ret_error = -ENOSPC;
                return NULL;
        }
        e = calloc(1, sizeof *e);
        if (!e || (scope && !(e->scope = strdup(scope)))) {
                free(e);
                *ret_error = -ENOMEM;
                return NULL;
        }
        e->principal = p;
        e->next_in_bucket = c->buckets[b];
        c->buckets[b] = e;
        c->n_entries++;
        return e;
}

static int entry_answer(const struct tokcache_entry *e, bool from_cache, struct tokcache_answer *ret) {
        struct tokcache_answer a = {
                .error = API_OK,
                .access_token = e->access_token,
                .scope = e->granted_scope,
                .expires_at = e->expires_at,
                .from_cache = from_cache,
        };
        return tokcache_answer_copy(&a, ret);
}

/* With the lock held: start a fetch for E unless one runs. */
static int entry_start_fetch(struct tokcache *c, struct tokcache_entry *e) {
        int r;

        if (e->fetching)
                return 0;
        r = c->fetch(c->userdata, e, e->principal, e->scope);
        if (r < 0)
                return r;
        e->fetching = true;
        return 0;
}

int tokcache_get(struct tokcache *c, const struct config_principal *p, const char *scope, uint32_t min_ttl,
                 bool force_refresh, uint64_t now_ms, struct tokcache_waiter *w, struct tokcache_answer *ret) {
        struct tokcache_entry *e;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        e = entry_get(c, p, scope, &r);
        if (!e)
                goto out;

        if (e->access_token && now_ms >= e->expires_at)
                entry_drop_token(e); /* expired: never served */

        if (e->access_token) {
                uint64_t lifetime = e->expires_at - e->obtained_at;
                uint64_t remaining = e->expires_at - now_ms;
                uint64_t need = (uint64_t) min_ttl * 1000;

                if (need > lifetime / 2)
                        need = lifetime / 2;

                if (force_refresh && now_ms - e->obtained_at >= TOKCACHE_FORCE_MIN_AGE_MS)
                        entry_drop_token(e);
                else if (force_refresh || remaining >= need) {
                        r = entry_answer(e, true, ret);
                        /* Refresh ahead: past four fifths of the lifetime, one fetch in the background. */
                        if (r == 0 && remaining < lifetime / 5)
                                (void) entry_start_fetch(c, e);
                        goto out;
                }
        }

        /* Miss: queue, and make sure exactly one fetch runs for this key. */
        r = entry_start_fetch(c, e);
        if (r < 0)
                goto out;
        w->next = e->waiters;
        e->waiters = w;
        r = -EINPROGRESS;
out:
        pthread_mutex_unlock(&c->lock);
        return r;
}

void tokcache_complete(struct tokcache *c, struct tokcache_entry *e, const struct tokcache_answer *answer,
                       uint64_t now_ms) {
        struct tokcache_waiter *waiters;
        struct tokcache_answer stored = {};
        const struct tokcache_answer *give = answer;

        pthread_mutex_lock(&c->lock);
        e->fetching = false;
        if (!e->detached && answer->error == API_OK && answer->access_token && answer->expires_at > now_ms) {
                char *token = strdup(answer->access_token);
                char *scope = answer->scope ? strdup(answer->scope) : NULL;

                if (token && (scope || !answer->scope)) {
                        entry_drop_token(e);
                        e->access_token = token;
                        e->granted_scope = scope;
                        e->obtained_at = now_ms;
                        e->expires_at = answer->expires_at;
                } else {
                        free_wiped(token);
                        free(scope);
                        stored = (struct tokcache_answer) { .error = API_SERVER_BUSY };
                        strcpy(stored.description, "out of memory storing the token");
                        give = &stored;
                }
        }
        /* Reverse to first-come order, then detach. */
        waiters = NULL;
        for (struct tokcache_waiter *w = e->waiters, *next; w; w = next) {
                next = w->next;
                w->next = waiters;
                waiters = w;
        }
        e->waiters = NULL;
        pthread_mutex_unlock(&c->lock);

        for (struct tokcache_waiter *w = waiters, *next; w; w = next) {
                next = w->next;
                w->next = NULL;
                w->done(w, give);
        }
        if (e->detached) {
                /* Nobody can find it any more: the reload unhooked it. */
                free(e->scope);
                free(e);
        }
}

size_t tokcache_rebind(struct tokcache *c,
                       const struct config_principal *(*map)(void *userdata, const struct config_principal *old,
                                                             const char *scope),
                       void *userdata) {
        struct tokcache_entry *all = NULL;
        size_t kept = 0;

        pthread_mutex_lock(&c->lock);
        /* Unhook every entry, then put back those that map (their hash changes with the principal). */
        for (size_t i = 0; i < TOKCACHE_BUCKETS; i++) {
                for (struct tokcache_entry *e = c->buckets[i], *next; e; e = next) {
                        next = e->next_in_bucket;
                        e->next_in_bucket = all;
                        all = e;
                }
                c->buckets[i] = NULL;
        }
        c->n_entries = 0;
        for (struct tokcache_entry *e = all, *next; e; e = next) {
                const struct config_principal *p = map(userdata, e->principal, e->scope);

                next = e->next_in_bucket;
                if (p) {
                        size_t b = key_hash(p, e->scope);
                        e->principal = p;
                        e->next_in_bucket = c->buckets[b];
                        c->buckets[b] = e;
                        c->n_entries++;
                        kept++;
                } else if (e->fetching) {
                        entry_drop_token(e);
                        e->detached = true; /* freed when its fetch completes */
                        e->next_in_bucket = NULL;
                } else {
                        entry_drop_token(e);
                        free(e->scope);
                        free(e);
                }
        }
        pthread_mutex_unlock(&c->lock);
        return kept;
}

void tokcache_stats(struct tokcache *c, uint64_t now_ms, size_t *ret_entries, size_t *ret_valid) {
        size_t valid = 0;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < TOKCACHE_BUCKETS; i++)
                for (struct tokcache_entry *e = c->buckets[i]; e; e = e->next_in_bucket)
                        if (e->access_token && now_ms < e->expires_at)
                                valid++;
        *ret_entries = c->n_entries;
        *ret_valid = valid;
        pthread_mutex_unlock(&c->lock);
}
