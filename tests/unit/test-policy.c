/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy/policy.h"

static struct peer make_peer(uid_t uid, gid_t gid, size_t n_groups, const gid_t *groups) {
        struct peer p = {
                .pid = 4242,
                .uid = uid,
                .gid = gid,
                .n_groups = n_groups,
        };

        for (size_t i = 0; i < n_groups; i++)
                p.groups[i] = groups[i];
        return p;
}

static void test_untrusted(void **state) {
        struct peer p = make_peer(1000, 1000, 0, NULL);

        assert_false(policy_peer_untrusted(&p));

        p.uid = PEER_OVERFLOW_UID;
        assert_true(policy_peer_untrusted(&p));

        p.uid = 1000;
        p.pid = 0;
        assert_true(policy_peer_untrusted(&p));

        assert_true(policy_peer_untrusted(NULL));
}

static void test_untrusted_matches_nothing(void **state) {
        struct policy_rule any = { .sequence = 1, .any_user = true };
        uid_t uids[] = { PEER_OVERFLOW_UID, 1000 };
        struct policy_rule by_uid = { .sequence = 2, .uids = uids, .n_uids = 2 };
        gid_t gids[] = { 1000 };
        struct policy_rule by_gid = { .sequence = 3, .gids = gids, .n_gids = 1 };
        const struct policy_rule *rules[] = { &any, &by_uid, &by_gid };
        struct peer overflow = make_peer(PEER_OVERFLOW_UID, 1000, 0, NULL);
        struct peer pid0 = make_peer(1000, 1000, 0, NULL);
        size_t idx = 77;

        pid0.pid = 0;

        /* Even a rule naming 65534 explicitly, or users = *, does not let them in. */
        for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
                assert_false(policy_rule_matches(rules[i], &overflow));
                assert_false(policy_rule_matches(rules[i], &pid0));
        }
        assert_int_equal(policy_select(rules, 3, &overflow, &idx), -EPERM);
        assert_int_equal(policy_select(rules, 3, &pid0, &idx), -EPERM);
        assert_int_equal(idx, 77); /* untouched on failure */

        /* The same rules do match a trusted peer with that uid/gid. */
        struct peer ok = make_peer(1000, 1000, 0, NULL);
        assert_true(policy_rule_matches(&any, &ok));
        assert_true(policy_rule_matches(&by_uid, &ok));
        assert_true(policy_rule_matches(&by_gid, &ok));
}

static void test_any_user(void **state) {
        struct policy_rule r = { .sequence = 0, .any_user = true };
        struct peer root = make_peer(0, 0, 0, NULL);
        struct peer alice = make_peer(1001, 1001, 0, NULL);

        assert_true(policy_rule_matches(&r, &root));
        assert_true(policy_rule_matches(&r, &alice));
}

static void test_uids(void **state) {
        uid_t uids[] = { 1001, 1003 };
        struct policy_rule r = { .sequence = 1, .uids = uids, .n_uids = 2 };
        struct peer p;

        p = make_peer(1001, 50, 0, NULL);
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1003, 50, 0, NULL);
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1002, 50, 0, NULL);
        assert_false(policy_rule_matches(&r, &p));
        /* A gid equal to a listed uid is not a uid. */
        p = make_peer(1002, 1001, 0, NULL);
        assert_false(policy_rule_matches(&r, &p));
        p = make_peer(0, 0, 0, NULL);
        assert_false(policy_rule_matches(&r, &p));
}

static void test_gids_primary_and_supplementary(void **state) {
        gid_t gids[] = { 2000, 2002 };
        struct policy_rule r = { .sequence = 1, .gids = gids, .n_gids = 2 };
        gid_t supp_hit[] = { 10, 20, 2002 };
        gid_t supp_miss[] = { 10, 20, 2001 };
        struct peer p;

        p = make_peer(1001, 2000, 0, NULL); /* primary */
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1001, 100, 3, supp_hit); /* supplementary, last one */
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1001, 100, 3, supp_miss);
        assert_false(policy_rule_matches(&r, &p));
        /* A uid equal to a listed gid is not a gid. */
        p = make_peer(2000, 100, 0, NULL);
        assert_false(policy_rule_matches(&r, &p));
}

static void test_groups_count_capped(void **state) {
        gid_t gids[] = { 3000 };
        struct policy_rule r = { .sequence = 1, .gids = gids, .n_gids = 1 };
        struct peer p = make_peer(1001, 100, 0, NULL);

        /* The last slot of the array matches … */
        p.groups[PEER_GROUPS_MAX - 1] = 3000;
        p.n_groups = PEER_GROUPS_MAX;
        p.groups_truncated = true;
        assert_true(policy_rule_matches(&r, &p));

        /* … and a bogus count past the array is not followed. */
        p.groups[PEER_GROUPS_MAX - 1] = 1;
        p.n_groups = (size_t) PEER_GROUPS_MAX * 4;
        assert_false(policy_rule_matches(&r, &p));
}

static void test_users_and_groups_both_required(void **state) {
        uid_t uids[] = { 1001 };
        gid_t gids[] = { 2000 };
        struct policy_rule r = { .sequence = 1, .uids = uids, .n_uids = 1, .gids = gids, .n_gids = 1 };
        gid_t supp[] = { 2000 };
        struct peer p;

        p = make_peer(1001, 2000, 0, NULL);
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1001, 100, 1, supp);
        assert_true(policy_rule_matches(&r, &p));
        p = make_peer(1001, 100, 0, NULL); /* right user, wrong group */
        assert_false(policy_rule_matches(&r, &p));
        p = make_peer(1002, 2000, 0, NULL); /* right group, wrong user */
        assert_false(policy_rule_matches(&r, &p));

        /* users = * still needs the group. */
        struct policy_rule any_in_group = { .sequence = 1, .any_user = true, .gids = gids, .n_gids = 1 };
        p = make_peer(1002, 2000, 0, NULL);
        assert_true(policy_rule_matches(&any_in_group, &p));
        p = make_peer(1002, 100, 0, NULL);
        assert_false(policy_rule_matches(&any_in_group, &p));
}

static void test_no_selectors(void **state) {
        struct policy_rule r = { .sequence = 0 };
        const struct policy_rule *rules[] = { &r };
        struct peer root = make_peer(0, 0, 0, NULL);
        struct peer alice = make_peer(1001, 1001, 0, NULL);
        size_t idx = 5;

        assert_false(policy_rule_matches(&r, &root));
        assert_false(policy_rule_matches(&r, &alice));
        assert_int_equal(policy_select(rules, 1, &alice, &idx), -EPERM);
        assert_int_equal(idx, 5);
        assert_false(policy_rule_matches(NULL, &alice));
}

static void test_lowest_sequence_wins(void **state) {
        uid_t uids[] = { 1001 };
        gid_t gids[] = { 2000 };
        struct policy_rule everyone = { .sequence = 30, .any_user = true };
        struct policy_rule group = { .sequence = 20, .gids = gids, .n_gids = 1 };
        struct policy_rule alice = { .sequence = 10, .uids = uids, .n_uids = 1 };
        struct policy_rule nobody = { .sequence = 0 }; /* lowest, but matches nobody */
        const struct policy_rule *rules[] = { &everyone, &group, &alice, &nobody };
        struct peer p;
        size_t idx = 99;

        p = make_peer(1001, 2000, 0, NULL); /* all three match: alice (10) wins */
        assert_int_equal(policy_select(rules, 4, &p, &idx), 0);
        assert_int_equal(idx, 2);

        p = make_peer(1002, 2000, 0, NULL); /* group (20) and everyone (30) */
        assert_int_equal(policy_select(rules, 4, &p, &idx), 0);
        assert_int_equal(idx, 1);

        p = make_peer(1002, 100, 0, NULL); /* only everyone */
        assert_int_equal(policy_select(rules, 4, &p, &idx), 0);
        assert_int_equal(idx, 0);

        /* Sequence numbers are compared as uint64_t. */
        struct policy_rule big = { .sequence = UINT64_MAX, .any_user = true };
        struct policy_rule big_minus = { .sequence = UINT64_MAX - 1, .any_user = true };
        const struct policy_rule *bigs[] = { &big, &big_minus };
        assert_int_equal(policy_select(bigs, 2, &p, &idx), 0);
        assert_int_equal(idx, 1);
}

static void test_order_independence(void **state) {
        uid_t uids[] = { 1001 };
        gid_t gids[] = { 2000 };
        struct policy_rule r[4] = {
                { .sequence = 7, .any_user = true },
                { .sequence = 3, .gids = gids, .n_gids = 1 },
                { .sequence = 5, .uids = uids, .n_uids = 1 },
                { .sequence = 1, .uids = (uid_t[]) { 4711 }, .n_uids = 1 },
        };
        /* Every permutation of four rules must pick the same rule (sequence 3). */
        size_t perm[4] = { 0, 1, 2, 3 };
        struct peer p = make_peer(1001, 2000, 0, NULL);
        unsigned count = 0;

        for (;;) {
                const struct policy_rule *rules[4];
                size_t idx = SIZE_MAX;

                for (size_t i = 0; i < 4; i++)
                        rules[i] = &r[perm[i]];
                assert_int_equal(policy_select(rules, 4, &p, &idx), 0);
                assert_true(idx < 4);
                assert_ptr_equal(rules[idx], &r[1]);
                count++;

                /* next permutation (lexicographic) */
                ssize_t i = 2;
                while (i >= 0 && perm[i] > perm[i + 1])
                        i--;
                if (i < 0)
                        break;
                ssize_t j = 3;
                while (perm[j] < perm[i])
                        j--;
                size_t t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
                for (size_t a = (size_t) i + 1, b = 3; a < b; a++, b--) {
                        t = perm[a];
                        perm[a] = perm[b];
                        perm[b] = t;
                }
        }
        assert_int_equal(count, 24);
}

static void test_nothing_matches(void **state) {
        uid_t uids[] = { 1001 };
        gid_t gids[] = { 2000 };
        struct policy_rule a = { .sequence = 1, .uids = uids, .n_uids = 1 };
        struct policy_rule b = { .sequence = 2, .gids = gids, .n_gids = 1 };
        const struct policy_rule *rules[] = { &a, &b };
        struct peer p = make_peer(1002, 100, 0, NULL);
        size_t idx = 42;

        assert_int_equal(policy_select(rules, 2, &p, &idx), -EPERM);
        assert_int_equal(idx, 42);
        assert_int_equal(policy_select(rules, 0, &p, &idx), -EPERM);
        assert_int_equal(policy_select(NULL, 0, &p, &idx), -EPERM);
        assert_int_equal(idx, 42);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_untrusted),
                cmocka_unit_test(test_untrusted_matches_nothing),
                cmocka_unit_test(test_any_user),
                cmocka_unit_test(test_uids),
                cmocka_unit_test(test_gids_primary_and_supplementary),
                cmocka_unit_test(test_groups_count_capped),
                cmocka_unit_test(test_users_and_groups_both_required),
                cmocka_unit_test(test_no_selectors),
                cmocka_unit_test(test_lowest_sequence_wins),
                cmocka_unit_test(test_order_independence),
                cmocka_unit_test(test_nothing_matches),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
