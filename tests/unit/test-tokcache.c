/* SPDX-License-Identifier: ISC */
/* The token cache: expiry, serving rules, refresh ahead (timing, jitter, margin), backoff after
 * failed fetches (transient, permanent, Retry-After), stale tokens, forced refreshes, and
 * single-flight. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/tokcache.h"
#include "log.h"
#include "macro.h"

struct fake_fetcher {
        pthread_mutex_t lock;
        int calls;
        int fail_with;                 /* returned by the fetch function when non-zero */
        struct tokcache_entry *last_entry;
        const char *last_scope;
};

static int fake_fetch(void *userdata, struct tokcache_entry *e, const struct config_principal *p, const char *scope) {
        struct fake_fetcher *f = userdata;

        if (f->fail_with)
                return f->fail_with;
        pthread_mutex_lock(&f->lock);
        f->calls++;
        f->last_entry = e;
        f->last_scope = scope;
        pthread_mutex_unlock(&f->lock);
        return 0;
}

struct test_waiter {
        struct tokcache_waiter w; /* first */
        int calls;
        struct tokcache_answer answer;
};

static void waiter_done(struct tokcache_waiter *w, const struct tokcache_answer *a) {
        struct test_waiter *tw = (struct test_waiter *) w;

        tw->calls++;
        assert_int_equal(tokcache_answer_copy(a, &tw->answer), 0);
}

static struct config_credential cred = { .name = (char *) "Billing" };
static struct config_principal princ = { .name = (char *) "Batch", .credential = &cred };
static struct config_principal princ2 = { .name = (char *) "Other", .credential = &cred };

static void complete_ok(struct tokcache *c, struct tokcache_entry *e, const char *token, uint64_t now,
                        uint64_t lifetime_ms) {
        struct tokcache_answer a = {
                .error = API_OK,
                .access_token = (char *) token,
                .scope = (char *) "read",
                .expires_at = now + lifetime_ms,
        };
        /* As the front passes it on from net's FETCH_DONE. */
        log_fingerprint(token, strlen(token), a.fingerprint);
        tokcache_complete(c, e, &a, now);
}

static void test_miss_then_hit(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w1 = { .w.done = waiter_done }, w2 = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, "read", 0, false, 1000, &w1.w, &hit), -EINPROGRESS);
        assert_int_equal(tokcache_get(c, &princ, "read", 0, false, 1001, &w2.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 1); /* single flight */
        assert_string_equal(f.last_scope, "read");
        assert_int_equal(w1.calls, 0);

        complete_ok(c, f.last_entry, "tok-1", 1100, 60000);
        assert_int_equal(w1.calls, 1);
        assert_int_equal(w2.calls, 1);
        assert_int_equal(w1.answer.error, API_OK);
        assert_string_equal(w1.answer.access_token, "tok-1");
        assert_string_equal(w2.answer.access_token, "tok-1");
        assert_false(w1.answer.from_cache);
        assert_int_equal(w1.answer.expires_at, 61100);

        assert_int_equal(tokcache_get(c, &princ, "read", 0, false, 2000, &w1.w, &hit), 0);
        assert_string_equal(hit.access_token, "tok-1");
        assert_true(hit.from_cache);
        assert_string_equal(hit.scope, "read");
        assert_int_equal(f.calls, 1);

        tokcache_answer_clear(&hit);
        tokcache_answer_clear(&w1.answer);
        tokcache_answer_clear(&w2.answer);
        tokcache_free(c);
}

static void test_keys_are_separate(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w[4] = { { .w.done = waiter_done }, { .w.done = waiter_done }, { .w.done = waiter_done },
                                    { .w.done = waiter_done } };
        struct tokcache_answer hit = {};
        size_t entries, valid;

        assert_int_equal(tokcache_get(c, &princ, "read", 0, false, 0, &w[0].w, &hit), -EINPROGRESS);
        assert_int_equal(tokcache_get(c, &princ, "write", 0, false, 0, &w[1].w, &hit), -EINPROGRESS);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w[2].w, &hit), -EINPROGRESS);
        assert_int_equal(tokcache_get(c, &princ2, "read", 0, false, 0, &w[3].w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 4);
        tokcache_stats(c, 0, &entries, &valid);
        assert_int_equal(entries, 4);
        assert_int_equal(valid, 0);
        /* Complete only the last one: the others stay waiting. */
        complete_ok(c, f.last_entry, "tok-other", 10, 60000);
        assert_int_equal(w[3].calls, 1);
        assert_int_equal(w[0].calls + w[1].calls + w[2].calls, 0);
        tokcache_stats(c, 20, &entries, &valid);
        assert_int_equal(valid, 1);
        tokcache_answer_clear(&w[3].answer);
        tokcache_free(c);
}

static void test_expired_never_served(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "short", 0, 5000);
        tokcache_answer_clear(&w.answer);
        w.calls = 0;
        /* 4.999 s: still valid (past four fifths, so a background refresh starts). */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 4999, &w.w, &hit), 0);
        assert_int_equal(f.calls, 2);
        tokcache_answer_clear(&hit);
        /* Let that refresh fail: the valid token stays, marked stale. */
        struct tokcache_answer err = { .error = API_IDP_TIMEOUT };
        tokcache_complete(c, f.last_entry, &err, 4999);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 4999, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "short");
        assert_true(hit.stale);
        tokcache_answer_clear(&hit);
        /* At expiry exactly: never served; the key backs off after the timeout, so the
         * answer is that timeout, at once. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 5000, &w.w, &hit), 0);
        assert_int_equal(hit.error, API_IDP_TIMEOUT);
        assert_null(hit.access_token);
        assert_int_equal(f.calls, 2);
        /* After the backoff (at most 1 s): a miss that fetches. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 5999, &w.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 3);
        complete_ok(c, f.last_entry, "again", 6000, 5000);
        assert_string_equal(w.answer.access_token, "again");
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

static void test_failed_fetch_keeps_valid_token(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "good", 0, 100000);
        tokcache_answer_clear(&w.answer);

        /* A caller that needs 80 s left waits for a fetch (50 s is the cap: lifetime/2)... */
        w.calls = 0;
        assert_int_equal(tokcache_get(c, &princ, NULL, 80, false, 60000, &w.w, &hit), -EINPROGRESS);
        struct tokcache_answer err = { .error = API_IDP_ERROR };
        strcpy(err.idp_error, "invalid_client");
        tokcache_complete(c, f.last_entry, &err, 60001);
        /* ...and, the fetch having failed, gets the token that is still valid, marked stale, */
        assert_int_equal(w.calls, 1);
        assert_int_equal(w.answer.error, API_OK);
        assert_string_equal(w.answer.access_token, "good");
        assert_true(w.answer.stale);
        assert_false(w.answer.from_cache);
        tokcache_answer_clear(&w.answer);
        /* as do callers without min_ttl, and, while the key backs off, with it. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 60002, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "good");
        assert_true(hit.stale);
        tokcache_answer_clear(&hit);
        assert_int_equal(tokcache_get(c, &princ, NULL, 80, false, 60003, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "good");
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 2);
        tokcache_free(c);
}

static void test_min_ttl(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "t", 0, 3600000);
        tokcache_answer_clear(&w.answer);
        /* 3000 s left, 600 asked: hit. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 600, false, 600000, &w.w, &hit), 0);
        tokcache_answer_clear(&hit);
        /* 3000 s left, 7200 asked: more than the IdP ever gives; capped at lifetime/2 = 1800 → hit. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 7200, false, 600000, &w.w, &hit), 0);
        tokcache_answer_clear(&hit);
        /* 1000 s left, 1200 asked: wait for a fresh one. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 1200, false, 2600000, &w.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        complete_ok(c, f.last_entry, "t2", 2600000, 3600000);
        assert_string_equal(w.answer.access_token, "t2");
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

static void test_forced_refresh(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "first", 0, 3600000);
        tokcache_answer_clear(&w.answer);
        /* Reported bad 1 s after it was obtained: that token is the fresh one already. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, true, 1000, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "first");
        assert_int_equal(f.calls, 1);
        tokcache_answer_clear(&hit);
        /* Later: dropped and refetched; nobody is served the dropped token meanwhile. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, true, 10000, &w.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        struct test_waiter w2 = { .w.done = waiter_done };
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 10001, &w2.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        complete_ok(c, f.last_entry, "second", 10500, 3600000);
        assert_string_equal(w.answer.access_token, "second");
        assert_string_equal(w2.answer.access_token, "second");
        tokcache_answer_clear(&w.answer);
        tokcache_answer_clear(&w2.answer);
        tokcache_free(c);
}

static void test_fetch_refused(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER, .fail_with = -EBUSY };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EBUSY);
        /* The waiter was not queued: a later successful fetch does not call it. */
        f.fail_with = 0;
        struct test_waiter w2 = { .w.done = waiter_done };
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w2.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "t", 0, 1000);
        assert_int_equal(w.calls, 0);
        assert_int_equal(w2.calls, 1);
        tokcache_answer_clear(&w2.answer);
        tokcache_free(c);
}

static const struct config_principal *map_keep_batch(void *userdata, const struct config_principal *old,
                                                     const char *scope) {
        /* "Batch" moves to a new principal object; "Other" is gone from the new config. */
        return old == &princ ? (const struct config_principal *) userdata : NULL;
}

static void test_rebind_after_reload(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal batch_v2 = { .name = (char *) "Batch", .credential = &cred };
        struct test_waiter w = { .w.done = waiter_done }, w2 = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        struct tokcache_entry *other_entry;
        size_t entries, valid;

        assert_int_equal(tokcache_get(c, &princ, "s", 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "batch-token", 0, 60000);
        tokcache_answer_clear(&w.answer);
        /* "Other" has a fetch in flight during the reload. */
        assert_int_equal(tokcache_get(c, &princ2, "s", 0, false, 0, &w2.w, &hit), -EINPROGRESS);
        other_entry = f.last_entry;

        assert_int_equal(tokcache_rebind(c, map_keep_batch, &batch_v2), 1);
        tokcache_stats(c, 10, &entries, &valid);
        assert_int_equal(entries, 1);
        assert_int_equal(valid, 1);
        /* The kept token is found under the new principal object, without a fetch. */
        assert_int_equal(tokcache_get(c, &batch_v2, "s", 0, false, 10, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "batch-token");
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 2);
        /* The detached entry's waiter still gets its answer; its token is not stored. */
        complete_ok(c, other_entry, "other-token", 20, 60000);
        assert_int_equal(w2.calls, 1);
        assert_string_equal(w2.answer.access_token, "other-token");
        tokcache_answer_clear(&w2.answer);
        tokcache_stats(c, 30, &entries, &valid);
        assert_int_equal(entries, 1);
        tokcache_free(c);
}

/* ---- refresh ahead ---------------------------------------------------------------- */

static struct config_credential cred80 = { .name = (char *) "Timed", .refresh_at = 80, .refresh_margin = 60 };
static struct config_credential cred50 = { .name = (char *) "Early", .refresh_at = 50, .refresh_margin = 0 };

#define N_KEYS 64

/* Fetches a token of LIFETIME_MS at time 0 for key SCOPE of P; returns the cache's fetch count. */
static void warm(struct tokcache *c, struct fake_fetcher *f, const struct config_principal *p, const char *scope,
                 uint64_t now, uint64_t lifetime_ms) {
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, p, scope, 0, false, now, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f->last_entry, "t", now, lifetime_ms);
        assert_int_equal(w.calls, 1);
        tokcache_answer_clear(&w.answer);
}

/* A hit at NOW: returns whether it started a background fetch. */
static bool hit_refreshes(struct tokcache *c, struct fake_fetcher *f, const struct config_principal *p,
                          const char *scope, uint64_t now) {
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        int before = f->calls;

        assert_int_equal(tokcache_get(c, p, scope, 0, false, now, &w.w, &hit), 0);
        assert_int_equal(hit.error, API_OK);
        assert_false(hit.stale);
        tokcache_answer_clear(&hit);
        return f->calls > before;
}

/* refresh_at = 80 % ± 5 % of the lifetime, spread over keys; the margin does not bind a long
 * token. */
static void test_refresh_jitter_bounds(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal p = { .name = (char *) "P", .credential = &cred80 };
        const uint64_t life = 3600000; /* 1 h: margin 60 s < 5 % of it */
        int early = 0, at80 = 0;
        char scope[N_KEYS][8];

        for (int i = 0; i < N_KEYS; i++) {
                snprintf(scope[i], sizeof scope[i], "k%d", i);
                warm(c, &f, &p, scope[i], 0, life);
        }
        for (int i = 0; i < N_KEYS; i++) {
                /* Never before 75 %... */
                assert_false(hit_refreshes(c, &f, &p, scope[i], life * 75 / 100 - 1));
                /* ...half or so by 80 %... */
                if (hit_refreshes(c, &f, &p, scope[i], life * 80 / 100))
                        at80++;
        }
        for (int i = 0; i < N_KEYS; i++) {
                struct test_waiter w = { .w.done = waiter_done };
                struct tokcache_answer hit = {};
                int before = f.calls;

                /* ...and every one by 85 % (those that started at 80 % are still fetching). */
                assert_int_equal(tokcache_get(c, &p, scope[i], 0, false, life * 85 / 100, &w.w, &hit), 0);
                tokcache_answer_clear(&hit);
                if (f.calls > before)
                        early++;
        }
        print_message("%d of %d keys refreshed by 80 %%, %d more by 85 %%\n", at80, N_KEYS, early);
        assert_int_equal(at80 + early, N_KEYS);
        assert_true(at80 > N_KEYS / 8 && at80 < N_KEYS - N_KEYS / 8); /* the jitter spreads them */
        assert_int_equal(f.calls, 2 * N_KEYS);
        tokcache_free(c);
}

/* refresh_at = 50 %: between 45 % and 55 %. */
static void test_refresh_at_setting(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal p = { .name = (char *) "P", .credential = &cred50 };
        char scope[N_KEYS][8];

        for (int i = 0; i < N_KEYS; i++) {
                snprintf(scope[i], sizeof scope[i], "k%d", i);
                warm(c, &f, &p, scope[i], 1000, 1000000);
                assert_false(hit_refreshes(c, &f, &p, scope[i], 1000 + 450000 - 1));
        }
        for (int i = 0; i < N_KEYS; i++) {
                struct test_waiter w = { .w.done = waiter_done };
                struct tokcache_answer hit = {};
                int before = f.calls;

                assert_int_equal(tokcache_get(c, &p, scope[i], 0, false, 1000 + 550000, &w.w, &hit), 0);
                tokcache_answer_clear(&hit);
                assert_int_equal(f.calls, before + 1);
        }
        tokcache_free(c);
}

/* The margin: never later than min(refresh_margin, lifetime/4) before expiry. */
static void test_refresh_margin(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_credential cr = { .name = (char *) "M", .refresh_at = 95, .refresh_margin = 60 };
        struct config_principal p = { .name = (char *) "P", .credential = &cr };
        char scope[N_KEYS][8];

        /* 600 s at 95 % ± 5 % would be up to 600 s; the margin makes it 540 s at the latest
         * (and 90 % = 540 s is the earliest anyway). */
        for (int i = 0; i < N_KEYS; i++) {
                snprintf(scope[i], sizeof scope[i], "k%d", i);
                warm(c, &f, &p, scope[i], 0, 600000);
                assert_false(hit_refreshes(c, &f, &p, scope[i], 540000 - 1));
                assert_true(hit_refreshes(c, &f, &p, scope[i], 540000));
        }
        tokcache_free(c);
}

/* A 5 s token: the margin shrinks to a quarter of the lifetime (1.25 s), so it is refreshed
 * at 3.75 s, once, and the next token too: no refresh loop. */
static void test_short_token_no_loop(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal p = { .name = (char *) "P", .credential = &cred80 };
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        warm(c, &f, &p, "s", 0, 5000);
        for (uint64_t t = 0; t < 3750; t += 50)
                assert_false(hit_refreshes(c, &f, &p, "s", t));
        assert_true(hit_refreshes(c, &f, &p, "s", 3750));
        assert_int_equal(f.calls, 2);
        /* More hits while it runs: no second fetch. */
        for (uint64_t t = 3750; t < 3800; t += 10) {
                assert_int_equal(tokcache_get(c, &p, "s", 0, false, t, &w.w, &hit), 0);
                tokcache_answer_clear(&hit);
        }
        assert_int_equal(f.calls, 2);
        complete_ok(c, f.last_entry, "t2", 3800, 5000);
        for (uint64_t t = 3800; t < 3800 + 3750; t += 50)
                assert_false(hit_refreshes(c, &f, &p, "s", t));
        assert_true(hit_refreshes(c, &f, &p, "s", 3800 + 3750));
        assert_int_equal(f.calls, 3);
        tokcache_free(c);
}

/* ---- backoff ------------------------------------------------------------------------- */

static void complete_err(struct tokcache *c, struct tokcache_entry *e, enum api_error error, const char *idp_error,
                         uint32_t retry_after, uint64_t now) {
        struct tokcache_answer a = { .error = error, .retry_after = retry_after };

        snprintf(a.idp_error, sizeof a.idp_error, "%s", idp_error ? idp_error : "");
        snprintf(a.description, sizeof a.description, "token endpoint answered HTTP 500");
        tokcache_complete(c, e, &a, now);
}

/* A get on a key without a token at NOW: -EINPROGRESS (a fetch started or runs) or 0 with the
 * backoff's error (checked).  Returns the result. */
static int miss(struct tokcache *c, const struct config_principal *p, struct test_waiter *w, uint64_t now,
                enum api_error expect) {
        struct tokcache_answer hit = {};
        int r = tokcache_get(c, p, "s", 0, false, now, &w->w, &hit);

        if (r == 0) {
                assert_int_equal(hit.error, expect);
                assert_true(hit.from_cache);
                assert_null(hit.access_token);
                assert_true(hit.retry_after >= 1);
                assert_non_null(strstr(hit.description, "no new token request for"));
                tokcache_answer_clear(&hit);
        } else
                assert_int_equal(r, -EINPROGRESS);
        return r;
}

/* Transient failures: 1 s doubling to 60 s, each less up to a quarter; callers meanwhile get
 * the error at once; a token resets it. */
static void test_backoff_transient(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        uint64_t t = 1000000, d = 1000;

        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        for (int n = 1; n <= 10; n++) {
                /* 5xx, bad answers, unreachable (API_IDP_ERROR without a code) and timeouts. */
                enum api_error e = n % 2 ? API_IDP_ERROR : API_IDP_TIMEOUT;
                uint64_t lo = d - d / 4;
                int calls = f.calls;

                w.calls = 0;
                complete_err(c, f.last_entry, e, NULL, 0, t);
                /* The waiter gets the error with the wait. */
                assert_int_equal(w.calls, 1);
                assert_int_equal(w.answer.error, e);
                assert_true(w.answer.retry_after >= (lo + 999) / 1000 && w.answer.retry_after <= d / 1000);
                tokcache_answer_clear(&w.answer);
                /* No fetch before 3/4 of the step, whoever asks... */
                assert_int_equal(miss(c, &princ, &w, t + 1, e), 0);
                assert_int_equal(miss(c, &princ, &w, t + lo - 1, e), 0);
                assert_int_equal(f.calls, calls);
                /* ...and one at the step. */
                t += d;
                assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
                assert_int_equal(f.calls, calls + 1);
                d = d * 2 > 60000 ? 60000 : d * 2;
        }
        assert_int_equal(d, 60000); /* the cap was reached */
        /* A token resets it: the next failure waits 1 s again. */
        complete_ok(c, f.last_entry, "t", t, 1000);
        tokcache_answer_clear(&w.answer);
        t += 1000; /* expired */
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, NULL, 0, t);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 749, API_IDP_ERROR), 0);
        assert_int_equal(miss(c, &princ, &w, t + 1000, API_OK), -EINPROGRESS);
        complete_ok(c, f.last_entry, "t", t + 1000, 60000);
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

/* Retry-After: no fetch before it, even when the backoff is shorter; the backoff when longer. */
static void test_backoff_retry_after(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        uint64_t t = 5000;

        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, "temporarily_unavailable", 3, t);
        assert_int_equal(w.answer.retry_after, 3);
        assert_string_equal(w.answer.idp_error, "temporarily_unavailable");
        tokcache_answer_clear(&w.answer);
        /* 20 callers over the next 3 s: one fetch in all, and the seconds left count down. */
        for (int i = 0; i < 20; i++) {
                uint64_t now = t + (uint64_t) i * 150;

                assert_int_equal(tokcache_get(c, &princ, "s", 0, false, now, &w.w, &hit), 0);
                assert_int_equal(hit.error, API_IDP_ERROR);
                assert_string_equal(hit.idp_error, "temporarily_unavailable");
                assert_int_equal(hit.retry_after, (3000 - (now - t) + 999) / 1000);
                tokcache_answer_clear(&hit);
        }
        assert_int_equal(miss(c, &princ, &w, t + 2999, API_IDP_ERROR), 0);
        assert_int_equal(f.calls, 1);
        t += 3000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        /* Second failure, Retry-After 1 s: the backoff (1.5 … 2 s) is longer and wins. */
        complete_err(c, f.last_entry, API_IDP_ERROR, "temporarily_unavailable", 1, t);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 1499, API_IDP_ERROR), 0);
        assert_int_equal(miss(c, &princ, &w, t + 2000, API_OK), -EINPROGRESS);
        /* The longest Retry-After that travels (3600 s) holds for an hour. */
        t += 2000;
        complete_err(c, f.last_entry, API_IDP_ERROR, "slow_down", 3600, t);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 3599999, API_IDP_ERROR), 0);
        assert_int_equal(miss(c, &princ, &w, t + 3600000, API_OK), -EINPROGRESS);
        assert_int_equal(f.calls, 4);
        complete_ok(c, f.last_entry, "t", t + 3600000, 60000);
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

/* Permanent §5.2 errors: a long wait; invalid_client gets one quick retry first (the secret is
 * read from the token again); a token resets that; other failures (hsm) do not back off. */
static void test_backoff_permanent(void **state) {
        static const char *const codes[] = { "unauthorized_client", "invalid_scope", "unsupported_grant_type" };
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        uint64_t t = 0;

        for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
                struct config_principal p = { .name = (char *) "P", .credential = &cred };

                assert_int_equal(miss(c, &p, &w, t, API_OK), -EINPROGRESS);
                complete_err(c, f.last_entry, API_IDP_ERROR, codes[i], 0, t);
                assert_true(w.answer.retry_after >= 225 && w.answer.retry_after <= 300);
                tokcache_answer_clear(&w.answer);
                assert_int_equal(miss(c, &p, &w, t + 1000, API_IDP_ERROR), 0);
                assert_int_equal(miss(c, &p, &w, t + 224999, API_IDP_ERROR), 0);
                assert_int_equal(miss(c, &p, &w, t + 300000, API_OK), -EINPROGRESS);
                complete_ok(c, f.last_entry, "t", t + 300000, 1000);
                tokcache_answer_clear(&w.answer);
                tokcache_free(c);
                c = tokcache_new(fake_fetch, &f);
        }

        /* invalid_client: 1 s, then 5 min. */
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, "invalid_client", 0, t);
        assert_int_equal(w.answer.retry_after, 1);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 500, API_IDP_ERROR), 0);
        t += 1000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, "invalid_client", 0, t);
        assert_true(w.answer.retry_after >= 225);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 224999, API_IDP_ERROR), 0);
        t += 300000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        /* Still refused after the long wait: another long wait, no quick retry. */
        complete_err(c, f.last_entry, API_IDP_ERROR, "invalid_client", 0, t);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 224999, API_IDP_ERROR), 0);
        t += 300000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        /* A token, then invalid_client again (the secret changed): the quick retry is back. */
        complete_ok(c, f.last_entry, "t", t, 1000);
        tokcache_answer_clear(&w.answer);
        t += 1000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, "invalid_client", 0, t);
        assert_int_equal(w.answer.retry_after, 1);
        tokcache_answer_clear(&w.answer);
        t += 1000;
        assert_int_equal(miss(c, &princ, &w, t, API_OK), -EINPROGRESS);

        /* hsm_unavailable, server_busy: not the IdP's doing, no backoff. */
        complete_err(c, f.last_entry, API_HSM_UNAVAILABLE, NULL, 0, t);
        assert_int_equal(w.answer.retry_after, 0);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 1, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_SERVER_BUSY, NULL, 0, t + 1);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, t + 2, API_OK), -EINPROGRESS);
        complete_ok(c, f.last_entry, "t", t + 2, 60000);
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

/* A reload (rebind) ends a key's backoff: its fix may be what was reloaded. */
static const struct config_principal *map_same(void *userdata, const struct config_principal *old,
                                               const char *scope) {
        return old;
}

static void test_backoff_reset_by_reload(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };

        assert_int_equal(miss(c, &princ, &w, 0, API_OK), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, "invalid_scope", 0, 0);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(miss(c, &princ, &w, 10, API_IDP_ERROR), 0);
        assert_int_equal(tokcache_rebind(c, map_same, NULL), 1);
        assert_int_equal(miss(c, &princ, &w, 20, API_OK), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        complete_ok(c, f.last_entry, "t", 30, 60000);
        tokcache_answer_clear(&w.answer);
        tokcache_free(c);
}

/* A valid token is served while its refreshes fail, marked stale, and never after expiry; the
 * background refreshes follow the backoff, not every hit. */
static void test_stale_while_refresh_fails(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal p = { .name = (char *) "P", .credential = &cred80 };
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        uint64_t t;

        warm(c, &f, &p, "s", 0, 100000); /* refresh at 75 s (the margin: min(60, 25) s) */
        assert_true(hit_refreshes(c, &f, &p, "s", 75000));
        complete_err(c, f.last_entry, API_IDP_ERROR, NULL, 0, 75100);
        /* Hits: the token, stale; a refresh only each time the backoff allows. */
        for (t = 75100; t < 100000; t += 100) {
                assert_int_equal(tokcache_get(c, &p, "s", 0, false, t, &w.w, &hit), 0);
                assert_int_equal(hit.error, API_OK);
                assert_string_equal(hit.access_token, "t");
                assert_true(hit.stale);
                assert_int_equal(hit.expires_at, 100000);
                tokcache_answer_clear(&hit);
                if (f.last_entry && f.calls > 2) {
                        /* A refresh started: it fails at once. */
                        complete_err(c, f.last_entry, API_IDP_TIMEOUT, NULL, 0, t);
                        f.calls = 2;
                }
        }
        /* Expired: never served.  The key most likely still backs off (the last step was 12 s or
         * more): the last error at once; else a fetch, and its error. */
        if (tokcache_get(c, &p, "s", 0, false, 100000, &w.w, &hit) == 0) {
                assert_int_equal(hit.error, API_IDP_TIMEOUT);
                assert_null(hit.access_token);
                assert_false(hit.stale);
                tokcache_answer_clear(&hit);
        } else {
                w.calls = 0;
                complete_err(c, f.last_entry, API_IDP_TIMEOUT, NULL, 0, 100000);
                assert_int_equal(w.calls, 1);
                assert_int_equal(w.answer.error, API_IDP_TIMEOUT);
                assert_null(w.answer.access_token);
                tokcache_answer_clear(&w.answer);
        }
        tokcache_free(c);
}

/* Counts the refresh fetches of test_stale_while_refresh_fails' pattern: 25 s of hits every
 * 100 ms after a failure at 75 s make about log2 attempts, not 250. */
static void test_stale_refresh_rate(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct config_principal p = { .name = (char *) "P", .credential = &cred80 };
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        int attempts = 0;

        warm(c, &f, &p, "s", 0, 100000);
        for (uint64_t t = 75000; t < 100000; t += 100) {
                int before = f.calls;

                assert_int_equal(tokcache_get(c, &p, "s", 0, false, t, &w.w, &hit), 0);
                tokcache_answer_clear(&hit);
                if (f.calls > before) {
                        attempts++;
                        complete_err(c, f.last_entry, API_IDP_ERROR, NULL, 0, t);
                }
        }
        /* Steps of at most 1, 2, 4, 8, 16 s (at least 3/4 of that): 25 s hold 4 to 6. */
        print_message("%d refresh attempts in 25 s\n", attempts);
        assert_true(attempts >= 4 && attempts <= 6);
        tokcache_free(c);
}

/* ---- forced refreshes ------------------------------------------------------------------- */

static void fp_of(const char *token, char fp[static 9]) {
        log_fingerprint(token, strlen(token), fp);
}

/* With a fingerprint: only the token that was served is dropped, also when it is new; the
 * key is force-refreshed at most once per TOKCACHE_FORCE_INTERVAL_MS. */
static void test_forced_refresh_fingerprint(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};
        char fp1[9], fp2[9];

        fp_of("first", fp1);
        fp_of("second", fp2);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "first", 0, 3600000);
        tokcache_answer_clear(&w.answer);

        /* Another token was refused (an older one): the current one is the answer. */
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, "00000000", 100, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "first");
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 1);
        /* This one was, 100 ms after it was fetched: dropped all the same. */
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, fp1, 100, &w.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 2);
        complete_ok(c, f.last_entry, "second", 200, 3600000);
        assert_string_equal(w.answer.access_token, "second");
        tokcache_answer_clear(&w.answer);
        /* The new one refused at once too: rate-limited, it is the answer until 2 s passed. */
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, fp2, 300, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "second");
        tokcache_answer_clear(&hit);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, fp2, 100 + TOKCACHE_FORCE_INTERVAL_MS - 1, &w.w,
                                                &hit), 0);
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 2);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, fp2, 100 + TOKCACHE_FORCE_INTERVAL_MS, &w.w, &hit),
                         -EINPROGRESS);
        assert_int_equal(f.calls, 3);
        /* While it runs, a refresh naming the dropped token waits for the same fetch. */
        struct test_waiter w2 = { .w.done = waiter_done };
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, fp2, 2200, &w2.w, &hit), -EINPROGRESS);
        assert_int_equal(f.calls, 3);
        complete_ok(c, f.last_entry, "third", 2300, 3600000);
        assert_string_equal(w2.answer.access_token, "third");
        tokcache_answer_clear(&w.answer);
        tokcache_answer_clear(&w2.answer);
        tokcache_free(c);
}

/* Without a fingerprint the 2 s age rule decides, and the rate limit holds as well; during a
 * backoff the token stays and the refresh gets the error. */
static void test_forced_refresh_rate_limit_and_backoff(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct tokcache *c = tokcache_new(fake_fetch, &f);
        struct test_waiter w = { .w.done = waiter_done };
        struct tokcache_answer hit = {};

        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 0, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "a", 0, 3600000);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 1999, &w.w, &hit), 0);
        tokcache_answer_clear(&hit);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 2000, &w.w, &hit), -EINPROGRESS);
        /* The fetch is slow: the token it brings is obtained at 3.9 s, more than 2 s after the
         * forced refresh; a report at 4 s is not limited, but the token is younger than 2 s. */
        complete_ok(c, f.last_entry, "b", 3900, 3600000);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 4000, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "b");
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 2);

        /* A forced refresh that fails: the waiter gets the error; the key backs off, the next
         * forced refresh gets the error at once, and a plain get nothing at all (no token). */
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 6000, &w.w, &hit), -EINPROGRESS);
        complete_err(c, f.last_entry, API_IDP_ERROR, NULL, 0, 6100);
        assert_int_equal(w.answer.error, API_IDP_ERROR);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 6200, &w.w, &hit), 0);
        assert_int_equal(hit.error, API_IDP_ERROR);
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 3);

        /* A valid token and a failed background refresh: a forced refresh during the backoff
         * keeps the token for the others and answers the error. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 8000, &w.w, &hit), -EINPROGRESS);
        complete_ok(c, f.last_entry, "c", 8000, 10000);
        tokcache_answer_clear(&w.answer);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 16600, &w.w, &hit), 0); /* past 85 %: refresh */
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 5);
        complete_err(c, f.last_entry, API_IDP_ERROR, "temporarily_unavailable", 30, 16600);
        assert_int_equal(tokcache_force_refresh(c, &princ, NULL, NULL, 16700, &w.w, &hit), 0);
        assert_int_equal(hit.error, API_IDP_ERROR);
        assert_string_equal(hit.idp_error, "temporarily_unavailable");
        assert_int_equal(hit.retry_after, 30);
        tokcache_answer_clear(&hit);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 16800, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "c");
        assert_true(hit.stale);
        tokcache_answer_clear(&hit);
        assert_int_equal(f.calls, 5);
        tokcache_free(c);
}

/* 50 threads miss on one cold key at once: one fetch, 50 answers. */
#define STORM 50

struct storm {
        struct tokcache *cache;
        struct fake_fetcher *fetcher;
        pthread_barrier_t barrier;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int answered;
        int hits;
};

struct storm_waiter {
        struct tokcache_waiter w;
        struct storm *storm;
        char token[32];
};

static void storm_done(struct tokcache_waiter *w, const struct tokcache_answer *a) {
        struct storm_waiter *sw = (struct storm_waiter *) w;

        snprintf(sw->token, sizeof sw->token, "%s", a->access_token ? a->access_token : "");
        pthread_mutex_lock(&sw->storm->lock);
        sw->storm->answered++;
        pthread_cond_broadcast(&sw->storm->cond);
        pthread_mutex_unlock(&sw->storm->lock);
}

static void *storm_caller(void *arg) {
        struct storm_waiter *sw = arg;
        struct tokcache_answer hit = {};
        int r;

        pthread_barrier_wait(&sw->storm->barrier);
        r = tokcache_get(sw->storm->cache, &princ, "s", 0, false, now_boottime_ms(), &sw->w, &hit);
        if (r == 0) {
                snprintf(sw->token, sizeof sw->token, "%s", hit.access_token);
                tokcache_answer_clear(&hit);
                pthread_mutex_lock(&sw->storm->lock);
                sw->storm->answered++;
                sw->storm->hits++;
                pthread_cond_broadcast(&sw->storm->cond);
                pthread_mutex_unlock(&sw->storm->lock);
        } else
                assert_int_equal(r, -EINPROGRESS);
        return NULL;
}

static void test_single_flight_threads(void **state) {
        struct fake_fetcher f = { .lock = PTHREAD_MUTEX_INITIALIZER };
        struct storm s = { .fetcher = &f, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        struct storm_waiter sw[STORM] = {};
        pthread_t t[STORM];

        s.cache = tokcache_new(fake_fetch, &f);
        pthread_barrier_init(&s.barrier, NULL, STORM);
        for (int i = 0; i < STORM; i++) {
                sw[i].w.done = storm_done;
                sw[i].storm = &s;
                assert_int_equal(pthread_create(&t[i], NULL, storm_caller, &sw[i]), 0);
        }
        for (int i = 0; i < STORM; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(f.calls, 1);
        complete_ok(s.cache, f.last_entry, "storm-token", now_boottime_ms(), 60000);
        pthread_mutex_lock(&s.lock);
        while (s.answered < STORM)
                pthread_cond_wait(&s.cond, &s.lock);
        pthread_mutex_unlock(&s.lock);
        for (int i = 0; i < STORM; i++)
                assert_string_equal(sw[i].token, "storm-token");
        assert_int_equal(f.calls, 1);
        pthread_barrier_destroy(&s.barrier);
        tokcache_free(s.cache);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_miss_then_hit),
                cmocka_unit_test(test_keys_are_separate),
                cmocka_unit_test(test_expired_never_served),
                cmocka_unit_test(test_failed_fetch_keeps_valid_token),
                cmocka_unit_test(test_min_ttl),
                cmocka_unit_test(test_forced_refresh),
                cmocka_unit_test(test_fetch_refused),
                cmocka_unit_test(test_single_flight_threads),
                cmocka_unit_test(test_rebind_after_reload),
                cmocka_unit_test(test_refresh_jitter_bounds),
                cmocka_unit_test(test_refresh_at_setting),
                cmocka_unit_test(test_refresh_margin),
                cmocka_unit_test(test_short_token_no_loop),
                cmocka_unit_test(test_backoff_transient),
                cmocka_unit_test(test_backoff_retry_after),
                cmocka_unit_test(test_backoff_permanent),
                cmocka_unit_test(test_backoff_reset_by_reload),
                cmocka_unit_test(test_stale_while_refresh_fails),
                cmocka_unit_test(test_stale_refresh_rate),
                cmocka_unit_test(test_forced_refresh_fingerprint),
                cmocka_unit_test(test_forced_refresh_rate_limit_and_backoff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
