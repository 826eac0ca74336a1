/* SPDX-License-Identifier: ISC */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy/names.h"

static void assert_invalid(const char *name, const char *why) {
        const char *got = "untouched";

        assert_false(name_is_valid(name, &got));
        assert_string_equal(got, why);
        /* RET_WHY is optional. */
        assert_false(name_is_valid(name, NULL));
}

static void assert_valid(const char *name) {
        const char *got = "untouched";

        assert_true(name_is_valid(name, &got));
        assert_string_equal(got, "untouched"); /* not written on success */
        assert_true(name_is_valid(name, NULL));
}

static void test_valid_names(void **state) {
        assert_valid("a");
        assert_valid("Z");
        assert_valid("Billing_API");
        assert_valid("Batch");
        assert_valid("a1");
        assert_valid("a_b_c");
        assert_valid("A1_2_3z");
        assert_valid("abcDEF0123456789");
}

static void test_empty(void **state) {
        assert_invalid("", "must not be empty");
        assert_invalid(NULL, "must not be empty");
}

static void test_length(void **state) {
        char name[NAME_MAX_LEN + 2];

        memset(name, 'a', NAME_MAX_LEN);
        name[NAME_MAX_LEN] = '\0';
        assert_valid(name); /* exactly the maximum */

        name[NAME_MAX_LEN] = 'a';
        name[NAME_MAX_LEN + 1] = '\0';
        assert_invalid(name, "must be at most 80 bytes long");
}

static void test_first_character(void **state) {
        assert_invalid("1abc", "must begin with a letter");
        assert_invalid("_abc", "must begin with a letter");
        assert_invalid("-abc", "must begin with a letter");
        assert_invalid("\xc3\xa9t\xc3\xa9", "must begin with a letter"); /* "été": not ASCII */
        assert_invalid(" a", "must begin with a letter");
}

static void test_characters(void **state) {
        assert_invalid("a-b", "may contain only ASCII letters, digits and underscores");
        assert_invalid("a.b", "may contain only ASCII letters, digits and underscores");
        assert_invalid("a b", "may contain only ASCII letters, digits and underscores");
        assert_invalid("a/b", "may contain only ASCII letters, digits and underscores");
        assert_invalid("caf\xc3\xa9", "may contain only ASCII letters, digits and underscores");
        assert_invalid("a\tb", "may contain only ASCII letters, digits and underscores");
        assert_invalid("ab\x7f", "may contain only ASCII letters, digits and underscores");
}

static void test_double_underscore(void **state) {
        assert_invalid("a__b", "must not contain two consecutive underscores");
        assert_invalid("ab___c", "must not contain two consecutive underscores");
        /* "__" at the end: the consecutive-underscore clause is checked first. */
        assert_invalid("ab__", "must not contain two consecutive underscores");
}

static void test_trailing_underscore(void **state) {
        assert_invalid("a_", "must not end with an underscore");
        assert_invalid("Billing_API_", "must not end with an underscore");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_names),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_length),
                cmocka_unit_test(test_first_character),
                cmocka_unit_test(test_characters),
                cmocka_unit_test(test_double_underscore),
                cmocka_unit_test(test_trailing_underscore),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
