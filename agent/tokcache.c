/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/tokcache.h"
#include "log.h"
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
        uint64_t refresh_at;              /* ms CLOCK_BOOTTIME: a hit from then on refreshes ahead */
        char fp[TOKCACHE_FP_LEN + 1];     /* the token's fingerprint, "" when none */
        bool stale;                       /* a refresh of this token failed */
        uint64_t hash;                    /* of the key: bucket, and the seed of the jitters */
        /* backoff */
        uint64_t not_before;              /* ms: no fetch for this key before then; 0: none */
        unsigned failures;                /* consecutive transient failures */
        bool client_retried;              /* the one quick retry after invalid_client was used */
        struct tokcache_answer *last_error; /* the failure that started the backoff (no pointers in
                                           it), allocated only then: most keys never fail, and it
                                           is the bulk of an entry */
        /* forced refreshes */
        bool forced;                      /* last_forced is set */
        uint64_t last_forced;             /* ms: the last forced refresh that dropped the token */
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
        e->obtained_at = e->expires_at = e->refresh_at = 0;
        e->fp[0] = '\0';
        e->stale = false;
}

/* Frees E with everything it holds (its token wiped). */
static void entry_free(struct tokcache_entry *e) {
        entry_drop_token(e);
        free(e->scope);
        free(e->last_error);
        free(e);
}

static void entry_reset_backoff(struct tokcache_entry *e) {
        e->not_before = 0;
        e->failures = 0;
        e->client_retried = false;
        free(e->last_error);
        e->last_error = NULL;
}

/* splitmix64's finaliser: a well-spread 64-bit function of X, for the jitters. */
static uint64_t mix64(uint64_t x) {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

/* D less a jitter of up to a quarter of D (a function of SEED): in [3D/4, D]. */
static uint64_t jittered(uint64_t d, uint64_t seed) {
        return d - mix64(seed) % (d / 4 + 1);
}

/* When E's token (obtained_at, expires_at set) is to be refreshed ahead, under CRED's
 * refresh_at and refresh_margin (tokcache.h, Serving rules). */
static uint64_t entry_refresh_time(const struct tokcache_entry *e, const struct config_credential *cred) {
        uint64_t lifetime = e->expires_at - e->obtained_at;
        uint64_t pct = cred->refresh_at ? cred->refresh_at : TOKCACHE_REFRESH_AT_DEFAULT;
        uint64_t jitter = lifetime / 1000 * TOKCACHE_REFRESH_JITTER_PERMILLE +
                          lifetime % 1000 * TOKCACHE_REFRESH_JITTER_PERMILLE / 1000;
        uint64_t margin = (uint64_t) cred->refresh_margin * 1000, at;

        if (pct > 100)
                pct = 100;
        /* lifetime / 100 * pct + rest: no overflow for any lifetime a uint64_t holds. */
        at = lifetime / 100 * pct + lifetime % 100 * pct / 100;
        at = at > jitter ? at - jitter : 0;
        at += mix64(e->hash ^ e->obtained_at) % (2 * jitter + 1);
        if (margin > lifetime / 4)
                margin = lifetime / 4;
        if (at > lifetime - margin)
                at = lifetime - margin;
        return e->obtained_at + at;
}

void tokcache_free(struct tokcache *c) {
        if (!c)
                return;
        for (size_t i = 0; i < TOKCACHE_BUCKETS; i++)
                for (struct tokcache_entry *e = c->buckets[i], *next; e; e = next) {
                        next = e->next_in_bucket;
                        entry_free(e);
                }
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static uint64_t key_hash(const struct config_principal *p, const char *scope) {
        /* FNV-1a over the principal's address and the scope. */
        uint64_t h = 1469598103934665603ULL;
        uintptr_t v = (uintptr_t) p;

        for (size_t i = 0; i < sizeof v; i++, v >>= 8)
                h = (h ^ (v & 0xff)) * 1099511628211ULL;
        for (const char *s = scope ? scope : ""; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        h = (h ^ (scope ? 1 : 0)) * 1099511628211ULL;
        return h;
}

static struct tokcache_entry *entry_get(struct tokcache *c, const struct config_principal *p, const char *scope,
                                        int *ret_error) {
        uint64_t h = key_hash(p, scope);
        size_t b = (size_t) (h % TOKCACHE_BUCKETS);
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
        e->hash = h;
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
                .stale = e->stale,
        };
        memcpy(a.fingerprint, e->fp, sizeof a.fingerprint);
        return tokcache_answer_copy(&a, ret);
}

/* Seconds from NOW_MS to E's not_before, rounded up (0 when it passed). */
static uint32_t entry_wait_s(const struct tokcache_entry *e, uint64_t now_ms) {
        return e->not_before > now_ms ? (uint32_t) ((e->not_before - now_ms + 999) / 1000) : 0;
}

/* The answer during E's backoff: the error that started it, with the time left. */
static void entry_answer_backoff(const struct tokcache_entry *e, uint64_t now_ms, struct tokcache_answer *ret) {
        static const struct tokcache_answer oom = { .error = API_SERVER_BUSY, .description = "out of memory" };
        const struct tokcache_answer *last = e->last_error ?: &oom;
        struct tokcache_answer a = *last;
        uint32_t left = entry_wait_s(e, now_ms);
        int n;

        a.from_cache = true;
        a.retry_after = left;
        n = snprintf(a.description, sizeof a.description, "%s%sno new token request for %" PRIu32 " s",
                     last->description, last->description[0] ? "; " : "", left);
        if (n < 0 || (size_t) n >= sizeof a.description)
                /* Too long with the suffix: the original description, which says what failed. */
                memcpy(a.description, last->description, sizeof a.description);
        *ret = a;
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

static int lookup(struct tokcache *c, const struct config_principal *p, const char *scope, uint32_t min_ttl,
                  bool force_refresh, const char *served_fp, uint64_t now_ms, struct tokcache_waiter *w,
                  struct tokcache_answer *ret) {
        struct tokcache_entry *e;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        e = entry_get(c, p, scope, &r);
        if (!e)
                goto out;

        if (e->access_token && now_ms >= e->expires_at)
                entry_drop_token(e); /* expired: never served */

        if (force_refresh && e->access_token) {
                bool served = served_fp ? strcmp(served_fp, e->fp) == 0
                                        : now_ms - e->obtained_at >= TOKCACHE_FORCE_MIN_AGE_MS;
                bool limited = e->forced && now_ms - e->last_forced < TOKCACHE_FORCE_INTERVAL_MS;

                if (!served || limited) {
                        /* Another token than the refused one, or refreshed a moment ago. */
                        r = entry_answer(e, true, ret);
                        goto out;
                }
                if (now_ms < e->not_before) {
                        /* No fetch can run yet: the token stays for the others. */
                        entry_answer_backoff(e, now_ms, ret);
                        goto out;
                }
                e->forced = true;
                e->last_forced = now_ms;
                entry_drop_token(e);
        } else if (e->access_token) {
                uint64_t lifetime = e->expires_at - e->obtained_at;
                uint64_t remaining = e->expires_at - now_ms;
                uint64_t need = (uint64_t) min_ttl * 1000;

                if (need > lifetime / 2)
                        need = lifetime / 2;
                /* While the key backs off a valid token is served, even a short one. */
                if (remaining >= need || now_ms < e->not_before) {
                        r = entry_answer(e, true, ret);
                        /* Refresh ahead: one fetch in the background. */
                        if (r == 0 && now_ms >= e->refresh_at && now_ms >= e->not_before)
                                (void) entry_start_fetch(c, e);
                        goto out;
                }
        }

        /* Miss.  While the key backs off, the last error at once, without a fetch. */
        if (!e->fetching && now_ms < e->not_before) {
                entry_answer_backoff(e, now_ms, ret);
                goto out;
        }
        /* Queue, and make sure exactly one fetch runs for this key. */
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

int tokcache_get(struct tokcache *c, const struct config_principal *p, const char *scope, uint32_t min_ttl,
                 bool force_refresh, uint64_t now_ms, struct tokcache_waiter *w, struct tokcache_answer *ret) {
        return lookup(c, p, scope, min_ttl, force_refresh, NULL, now_ms, w, ret);
}

int tokcache_force_refresh(struct tokcache *c, const struct config_principal *p, const char *scope,
                           const char *served_fp, uint64_t now_ms, struct tokcache_waiter *w,
                           struct tokcache_answer *ret) {
        return lookup(c, p, scope, 0, true, served_fp, now_ms, w, ret);
}

/* How a failed fetch's ANSWER counts for the backoff. */
enum failure_kind {
        FAILURE_LOCAL,     /* not the IdP's doing (hsm, net restarting, too busy): no backoff */
        FAILURE_TRANSIENT, /* may go away: exponential backoff */
        FAILURE_PERMANENT, /* RFC 6749 §5.2 errors that repeating the request cannot fix */
};

static enum failure_kind failure_kind(const struct tokcache_answer *a) {
        static const char *const permanent[] = {
                "invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type",
        };

        if (a->error == API_IDP_TIMEOUT)
                return FAILURE_TRANSIENT;
        if (a->error != API_IDP_ERROR)
                return FAILURE_LOCAL;
        for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
                if (strcmp(a->idp_error, permanent[i]) == 0)
                        return FAILURE_PERMANENT;
        return FAILURE_TRANSIENT;
}

/* With the lock held: E's fetch failed with ANSWER at NOW_MS; starts the backoff it calls for.
 * Returns the wait in ms (0: none). */
static uint64_t entry_start_backoff(struct tokcache_entry *e, const struct tokcache_answer *answer, uint64_t now_ms) {
        enum failure_kind kind = failure_kind(answer);
        uint64_t seed = e->hash ^ now_ms, delay;

        if (kind == FAILURE_LOCAL)
                return 0;
        if (kind == FAILURE_PERMANENT && strcmp(answer->idp_error, "invalid_client") == 0 && !e->client_retried) {
                /* The secret may have been rotated in the token a moment ago: one more try soon. */
                e->client_retried = true;
                delay = jittered(TOKCACHE_BACKOFF_MIN_MS, seed);
        } else if (kind == FAILURE_PERMANENT)
                delay = jittered(TOKCACHE_PERMANENT_BACKOFF_MS, seed);
        else {
                uint64_t d = TOKCACHE_BACKOFF_MIN_MS;

                if (e->failures < 32)
                        e->failures++;
                for (unsigned i = 1; i < e->failures && d < TOKCACHE_BACKOFF_MAX_MS; i++)
                        d *= 2;
                if (d > TOKCACHE_BACKOFF_MAX_MS)
                        d = TOKCACHE_BACKOFF_MAX_MS;
                delay = jittered(d, seed ^ e->failures);
        }
        /* The IdP's Retry-After is a lower bound. */
        if ((uint64_t) answer->retry_after * 1000 > delay)
                delay = (uint64_t) answer->retry_after * 1000;

        e->not_before = now_ms + delay;
        if (!e->last_error)
                e->last_error = malloc(sizeof *e->last_error); /* NULL: answered "out of memory" */
        if (e->last_error) {
                *e->last_error = (struct tokcache_answer) { .error = answer->error };
                memcpy(e->last_error->idp_error, answer->idp_error, sizeof e->last_error->idp_error);
                e->last_error->idp_error[sizeof e->last_error->idp_error - 1] = '\0';
                memcpy(e->last_error->description, answer->description, sizeof e->last_error->description);
                e->last_error->description[sizeof e->last_error->description - 1] = '\0';
        }
        return delay;
}

void tokcache_complete(struct tokcache *c, struct tokcache_entry *e, const struct tokcache_answer *answer,
                       uint64_t now_ms) {
        struct tokcache_waiter *waiters;
        struct tokcache_answer given = *answer, stored = {};
        const struct tokcache_answer *give = &given;

        pthread_mutex_lock(&c->lock);
        e->fetching = false;
        given.from_cache = false;
        given.stale = false;
        if (answer->error == API_OK)
                given.retry_after = 0;
        /* A detached entry is never found again: nothing is stored for it. */
        if (!e->detached && answer->error == API_OK && answer->access_token && answer->expires_at > now_ms) {
                char *token = strdup(answer->access_token);
                char *scope = answer->scope ? strdup(answer->scope) : NULL;

                if (token && (scope || !answer->scope)) {
                        entry_drop_token(e);
                        e->access_token = token;
                        e->granted_scope = scope;
                        e->obtained_at = now_ms;
                        e->expires_at = answer->expires_at;
                        e->refresh_at = entry_refresh_time(e, e->principal->credential);
                        memcpy(e->fp, answer->fingerprint, sizeof e->fp); /* net computed it */
                        entry_reset_backoff(e);
                } else {
                        free_wiped(token);
                        free(scope);
                        stored = (struct tokcache_answer) { .error = API_SERVER_BUSY };
                        strcpy(stored.description, "out of memory storing the token");
                        give = &stored;
                }
        } else if (!e->detached && answer->error != API_OK) {
                uint64_t delay = entry_start_backoff(e, answer, now_ms);

                given.retry_after = (uint32_t) ((delay + 999) / 1000);
                if (e->access_token && now_ms < e->expires_at) {
                        /* The refresh failed, the token is still good: it is the answer, marked. */
                        e->stale = true;
                        if (entry_answer(e, false, &stored) < 0) {
                                stored = (struct tokcache_answer) { .error = API_SERVER_BUSY };
                                strcpy(stored.description, "out of memory");
                        }
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
        tokcache_answer_clear(&stored);
        if (e->detached) {
                /* Nobody can find it any more: the reload unhooked it. */
                entry_free(e);
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
                        uint64_t h = key_hash(p, e->scope);
                        size_t b = (size_t) (h % TOKCACHE_BUCKETS);

                        e->principal = p;
                        e->hash = h;
                        /* A reload may be the fix for what the IdP refused: ask again at once.
                         * The refresh time follows the new credential's refresh_at. */
                        entry_reset_backoff(e);
                        if (e->access_token)
                                e->refresh_at = entry_refresh_time(e, p->credential);
                        e->next_in_bucket = c->buckets[b];
                        c->buckets[b] = e;
                        c->n_entries++;
                        kept++;
                } else if (e->fetching) {
                        entry_drop_token(e);
                        e->detached = true; /* freed when its fetch completes */
                        e->next_in_bucket = NULL;
                } else
                        entry_free(e);
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
