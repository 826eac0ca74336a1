/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy/scope.h"

/* Narrows CONFIGURED to REQUESTED and checks the result: EXPECT the scope, SAME whether it
 * is CONFIGURED itself (the same pointer: the cache key of a request without ?scope=). */
static void assert_narrow(const char *configured, const char *requested, const char *expect, bool same) {
        char buf[4097];
        const char *got = "untouched";

        assert_int_equal(scope_narrow(configured, requested, buf, sizeof buf, &got), 0);
        assert_string_equal(got, expect);
        if (same)
                assert_ptr_equal(got, configured);
        else
                assert_ptr_equal(got, buf);
}

static void assert_refused(const char *configured, const char *requested, int error) {
        char buf[4097];
        const char *got = "untouched";

        assert_int_equal(scope_narrow(configured, requested, buf, sizeof buf, &got), error);
        assert_string_equal(got, "untouched");
}

static void test_subset(void **state) {
        assert_narrow("read write admin", "read", "read", false);
        assert_narrow("read write admin", "admin", "admin", false);
        assert_narrow("read write admin", "admin read", "read admin", false); /* configured order */
        assert_narrow("read write admin", "read read", "read", false);        /* repeats collapse */
        assert_narrow("a b c", "c a b a", "a b c", true);                     /* all of it: no narrowing */
        assert_narrow("read", "read", "read", true);
        assert_narrow("session:role:ops billing:read", "billing:read", "billing:read", false);
}

static void test_same_key_for_same_part(void **state) {
        char b1[64], b2[64];
        const char *s1, *s2;

        assert_int_equal(scope_narrow("a b c d", "d b", b1, sizeof b1, &s1), 0);
        assert_int_equal(scope_narrow("a b c d", "b d b", b2, sizeof b2, &s2), 0);
        assert_string_equal(s1, "b d");
        assert_string_equal(s1, s2);
}

static void test_wider(void **state) {
        assert_refused("read write", "admin", -EPERM);
        assert_refused("read write", "read admin", -EPERM);
        assert_refused("read write", "rea", -EPERM);      /* a prefix is another token */
        assert_refused("read write", "reads", -EPERM);
        assert_refused("read write", "READ", -EPERM);     /* byte for byte */
        assert_refused("read", "read write", -EPERM);
        assert_refused(NULL, "read", -EPERM);             /* no configured scope: anything is wider */
        assert_refused("", "read", -EPERM);
}

static void test_invalid(void **state) {
        char big[4098];

        assert_refused("read", "", -EINVAL);
        assert_refused("read", NULL, -EINVAL);
        assert_refused("read", " read", -EINVAL);
        assert_refused("read", "read ", -EINVAL);
        assert_refused("read write", "read  write", -EINVAL);
        assert_refused("read", "re\"ad", -EINVAL);
        assert_refused("read", "re\\ad", -EINVAL);
        assert_refused("read", "read\twrite", -EINVAL);
        assert_refused("read", "r\xc3\xa9" "ad", -EINVAL);
        assert_refused("read", "read\n", -EINVAL);
        /* An invalid request is invalid even when there is no configured scope. */
        assert_refused(NULL, "a  b", -EINVAL);

        memset(big, 'a', 4097);
        big[4097] = '\0';
        assert_refused(big, big, -EINVAL); /* over SCOPE_NARROW_MAX */
        big[4096] = '\0';
        assert_narrow(big, big, big, true); /* exactly the maximum */
}

static void test_buffer(void **state) {
        char buf[4];
        const char *got = "untouched";

        assert_int_equal(scope_narrow("abcd efgh", "efgh", buf, sizeof buf, &got), -E2BIG);
        assert_string_equal(got, "untouched");
        assert_int_equal(scope_narrow("abc efgh", "abc", buf, sizeof buf, &got), 0);
        assert_string_equal(got, "abc");
        assert_int_equal(scope_narrow("abc", "abc", NULL, 0, &got), -EINVAL);
}

/* The NQCHAR byte number I (mod 92): %x21, %x23-5B, %x5D-7E. */
static char nqchar(unsigned i) {
        i %= 92;
        return (char) (i == 0 ? 0x21 : i <= 57 ? 0x22 + i : 0x5c + (i - 57));
}

static void test_many_tokens(void **state) {
        /* SCOPE_TOKENS_MAX one-byte tokens (repeating), then one more. */
        static char configured[2 * (SCOPE_TOKENS_MAX + 1)], buf[sizeof configured];
        char requested[8] = { nqchar(91), ' ', nqchar(0), '\0' };
        const char *got;
        size_t o = 0;

        for (unsigned i = 0; i < SCOPE_TOKENS_MAX; i++) {
                configured[o++] = nqchar(i);
                configured[o++] = ' ';
        }
        configured[o - 1] = '\0';
        assert_int_equal(scope_narrow(configured, requested, buf, sizeof buf, &got), 0);
        /* Each once, in the configured order: nqchar(0) comes first. */
        assert_int_equal(strlen(got), 3);
        assert_int_equal(got[0], nqchar(0));
        assert_int_equal(got[2], nqchar(91));

        configured[o - 1] = ' ';
        configured[o++] = nqchar(0);
        configured[o] = '\0';
        assert_int_equal(scope_narrow(configured, requested, buf, sizeof buf, &got), -E2BIG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_subset),
                cmocka_unit_test(test_same_key_for_same_part),
                cmocka_unit_test(test_wider),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_buffer),
                cmocka_unit_test(test_many_tokens),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
