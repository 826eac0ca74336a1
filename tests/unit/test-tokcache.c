/* SPDX-License-Identifier: ISC */
/* The token cache: expiry, serving rules, refresh ahead and single-flight. */
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
        /* Let that refresh fail: the valid token stays. */
        struct tokcache_answer err = { .error = API_IDP_TIMEOUT };
        tokcache_complete(c, f.last_entry, &err, 4999);
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 4999, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "short");
        tokcache_answer_clear(&hit);
        /* At expiry exactly: a miss. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 5000, &w.w, &hit), -EINPROGRESS);
        assert_null(hit.access_token);
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
        /* ...and gets that fetch's error, */
        assert_int_equal(w.calls, 1);
        assert_int_equal(w.answer.error, API_IDP_ERROR);
        assert_string_equal(w.answer.idp_error, "invalid_client");
        assert_null(w.answer.access_token);
        tokcache_answer_clear(&w.answer);
        /* while callers without min_ttl still get the valid token. */
        assert_int_equal(tokcache_get(c, &princ, NULL, 0, false, 60002, &w.w, &hit), 0);
        assert_string_equal(hit.access_token, "good");
        tokcache_answer_clear(&hit);
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
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
