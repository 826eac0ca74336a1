/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ipc/msg.h"
#include "policy/formula.h"

_Static_assert(FORMULA_SCOPE_MAX == MSG_SCOPE_MAX, "an expanded scope must fit a FETCH message");

/* Parses TEXT, which must succeed; out-params other than RET stay untouched. */
static struct formula *parse_ok(const char *text) {
        struct formula *f = NULL;
        unsigned column = 777;
        const char *message = "untouched";
        int r = formula_parse(text, &f, &column, &message);

        if (r != 0)
                fail_msg("formula_parse(\"%s\") = %d, column %u: %s", text, r, column, message);
        assert_non_null(f);
        assert_int_equal(column, 777);
        assert_string_equal(message, "untouched");
        return f;
}

/* Parses TEXT, which must fail with ERROR at COLUMN with MESSAGE; *RET untouched. */
static void parse_fails(const char *text, int error, unsigned column, const char *message) {
        struct formula *f = (struct formula *) 0x1;
        unsigned got_column = 0;
        const char *got_message = NULL;
        int r = formula_parse(text, &f, &got_column, &got_message);

        if (r != error || got_column != column || !got_message || strcmp(got_message, message) != 0)
                fail_msg("formula_parse(\"%s\") = %d column %u \"%s\"; expected %d column %u \"%s\"", text, r,
                         got_column, got_message ? got_message : "(null)", error, column, message);
        assert_ptr_equal(f, (struct formula *) 0x1);
        /* The out-params are optional. */
        assert_int_equal(formula_parse(text, &f, NULL, NULL), error);
        assert_ptr_equal(f, (struct formula *) 0x1);
}

/* A caller: alice (uid 1001), group "ops", groups "ops wheel", unit unavailable. */
static struct formula_vars alice(void) {
        return (struct formula_vars) { .value = {
                [FORMULA_VAR_USER_NAME] = "alice",
                [FORMULA_VAR_USER_UID] = "1001",
                [FORMULA_VAR_USER_GROUP] = "ops",
                [FORMULA_VAR_USER_GROUPS] = "ops wheel",
                [FORMULA_VAR_UNIT] = NULL,
                [FORMULA_VAR_PRINCIPAL_NAME] = "Batch",
                [FORMULA_VAR_CREDENTIAL_NAME] = "Billing_API",
        } };
}

/* Parses TEXT and expands it for VARS; must give EXPECTED. */
static void expands_to(const char *text, const struct formula_vars *vars, const char *expected) {
        struct formula *f = parse_ok(text);
        enum formula_var bad = _FORMULA_VAR_MAX;
        char buf[FORMULA_SCOPE_MAX + 1];
        int r = formula_eval(f, vars, buf, sizeof buf, &bad);

        if (r < 0)
                fail_msg("formula_eval(\"%s\") = %d (variable %s)", text, r, formula_var_name(bad));
        assert_int_equal(r, (int) strlen(expected));
        assert_string_equal(buf, expected);
        assert_int_equal(bad, _FORMULA_VAR_MAX); /* untouched */
        formula_free(f);
}

/* Parses TEXT and expands it for VARS; must fail with ERROR blaming variable VAR. */
static void eval_fails(const char *text, const struct formula_vars *vars, int error, enum formula_var var) {
        struct formula *f = parse_ok(text);
        enum formula_var bad = _FORMULA_VAR_MAX;
        char buf[FORMULA_SCOPE_MAX + 1];
        int r;

        memset(buf, 'x', sizeof buf);
        r = formula_eval(f, vars, buf, sizeof buf, &bad);
        if (r != error)
                fail_msg("formula_eval(\"%s\") = %d, expected %d", text, r, error);
        assert_int_equal(bad, var);
        assert_string_equal(buf, ""); /* never a partial scope */
        /* RET_VAR is optional. */
        assert_int_equal(formula_eval(f, vars, buf, sizeof buf, NULL), error);
        formula_free(f);
}

/* ---- Grammar ------------------------------------------------------------------------ */

static void test_literal_scopes(void **state) {
        struct formula_vars none = {};
        struct formula *f;

        expands_to("read", &none, "read");
        expands_to("billing:read billing:write", &none, "billing:read billing:write");
        /* Every NQCHAR. */
        expands_to("a !#$%&'()*+,-./:;<=>?@[]^_`{|}~", &none, "a !#$%&'()*+,-./:;<=>?@[]^_`{|}~");
        /* "{" alone, or "{" not followed by "!", is a scope character like any other. */
        expands_to("{", &none, "{");
        expands_to("{x} {!", &none, "{x} {!");
        expands_to("$User.Name", &none, "$User.Name"); /* not a formula: taken literally */

        f = parse_ok("read write");
        assert_true(formula_is_literal(f));
        for (unsigned v = 0; v < _FORMULA_VAR_MAX; v++)
                assert_false(formula_uses(f, (enum formula_var) v));
        formula_free(f);
}

static void test_literal_scope_errors(void **state) {
        parse_fails("", -EINVAL, 1, "the scope is empty");
        parse_fails(" read", -EINVAL, 1, "the scope would start with a space");
        parse_fails("read ", -EINVAL, 5, "the scope would end with a space");
        parse_fails("read  write", -EINVAL, 6, "the scope would have two spaces in a row");
        parse_fails("read \"write\"", -EINVAL, 6, "'\"' is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("a\\b", -EINVAL, 2, "'\\' is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("read\twrite", -EINVAL, 5,
                    "a tab is not allowed in a scope; separate scope tokens with single spaces");
        parse_fails("caf\xc3\xa9", -EINVAL, 4,
                    "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("a\x7f", -EINVAL, 2,
                    "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("a\x01", -EINVAL, 2,
                    "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)");
}

static void test_strings_and_concatenation(void **state) {
        struct formula_vars none = {};
        struct formula *f;

        expands_to("{!\"read\"}", &none, "read");
        expands_to("{!\"read write\"}", &none, "read write");
        expands_to("{!\"a\"+\"b\"}", &none, "ab");
        expands_to("{!\"a\" + \"b\" + \"c\"}", &none, "abc");
        expands_to("{!\"a \" + \"b\"}", &none, "a b");
        expands_to("{!\"a\" + \" b\"}", &none, "a b");
        /* Whitespace (spaces and tabs) between tokens, and after the closing brace. */
        expands_to("{!  \t\"a\"\t +\t\"b\"  }", &none, "ab");
        expands_to("{!\"a\"} \t", &none, "a");
        /* The NQCHARs that mean something in the grammar are plain inside a string. */
        expands_to("{!\"+$}{!\"}", &none, "+$}{!");

        f = parse_ok("{!\"read\"}");
        assert_false(formula_is_literal(f));
        formula_free(f);
}

static void test_variables(void **state) {
        struct formula_vars v = alice();
        struct formula *f;

        expands_to("{!$User.Name}", &v, "alice");
        expands_to("{!$User.Uid}", &v, "1001");
        expands_to("{!$User.Group}", &v, "ops");
        expands_to("{!$User.Groups}", &v, "ops wheel");
        expands_to("{!$Principal.Name}", &v, "Batch");
        expands_to("{!$Credential.Name}", &v, "Billing_API");
        expands_to("{!\"session:role:\" + $User.Group}", &v, "session:role:ops");
        expands_to("{!\"read \" + $Credential.Name + \":\" + $Principal.Name + \" user:\" + $User.Uid}", &v,
                   "read Billing_API:Batch user:1001");
        expands_to("{!$User.Name+$User.Uid}", &v, "alice1001");
        expands_to("{!\"g:\" + $User.Groups + \" x\"}", &v, "g:ops wheel x");

        f = parse_ok("{!\"a:\" + $User.Group + $Principal.Name}");
        assert_true(formula_uses(f, FORMULA_VAR_USER_GROUP));
        assert_true(formula_uses(f, FORMULA_VAR_PRINCIPAL_NAME));
        assert_false(formula_uses(f, FORMULA_VAR_USER_NAME));
        assert_false(formula_uses(f, FORMULA_VAR_USER_GROUPS));
        assert_false(formula_uses(f, FORMULA_VAR_UNIT));
        assert_false(formula_uses(f, _FORMULA_VAR_MAX));
        assert_false(formula_uses(NULL, FORMULA_VAR_USER_GROUP));
        formula_free(f);

        for (unsigned i = 0; i < _FORMULA_VAR_MAX; i++) {
                char text[64];

                snprintf(text, sizeof text, "{!%s}", formula_var_name((enum formula_var) i));
                f = parse_ok(text);
                assert_true(formula_uses(f, (enum formula_var) i));
                formula_free(f);
        }
        assert_string_equal(formula_var_name(FORMULA_VAR_UNIT), "$Unit");
        assert_string_equal(formula_var_name(_FORMULA_VAR_MAX), "$?");
}

static void test_escapes(void **state) {
        /* The escapes parse, but what they write is never allowed in a scope: the error points
         * at the backslash. */
        parse_fails("{!\"a\\\"b\"}", -EINVAL, 5, "'\"' is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("{!\"ab\\\\\"}", -EINVAL, 6, "'\\' is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("{!\"a\\nb\"}", -EINVAL, 5, "unknown escape in a string: only \\\" and \\\\ are allowed");
        parse_fails("{!\"a\\", -EINVAL, 3, "the string is not closed: a '\"' is missing");
        /* An escaped quote does not end the string. */
        parse_fails("{!\"a\\\"}", -EINVAL, 5, "'\"' is not allowed in a scope (RFC 6749 section 3.3)");
}

static void test_syntax_errors(void **state) {
        const char *term = "expected a string in double quotes or a variable such as $User.Name";
        const char *plus = "expected \"+\" or \"}\" after a term";
        const char *unclosed = "the formula is not closed: a \"}\" is missing";
        const char *unknown = "unknown variable; the variables are $User.Name, $User.Uid, $User.Group, "
                              "$User.Groups, $Unit, $Principal.Name and $Credential.Name";

        parse_fails("{!", -EINVAL, 3, term);
        parse_fails("{!}", -EINVAL, 3, term);
        parse_fails("{!   }", -EINVAL, 6, term);
        parse_fails("{!+\"a\"}", -EINVAL, 3, term);
        parse_fails("{!\"a\" +}", -EINVAL, 8, term);
        parse_fails("{!\"a\" + + \"b\"}", -EINVAL, 9, term);
        parse_fails("{!\"a\" +", -EINVAL, 8, term);
        parse_fails("{!read}", -EINVAL, 3, term);
        parse_fails("{!'a'}", -EINVAL, 3, term);
        parse_fails("{!\"a\" \"b\"}", -EINVAL, 7, plus);
        parse_fails("{!\"a\" - \"b\"}", -EINVAL, 7, plus);
        parse_fails("{!$User.Name $User.Uid}", -EINVAL, 14, plus);
        parse_fails("{!\"a\"", -EINVAL, 6, unclosed);
        parse_fails("{!\"a\"  ", -EINVAL, 8, unclosed);
        parse_fails("{!$User.Name", -EINVAL, 13, unclosed);
        parse_fails("{!\"abc", -EINVAL, 3, "the string is not closed: a '\"' is missing");
        parse_fails("{!\"a\" + \"b}", -EINVAL, 9, "the string is not closed: a '\"' is missing");
        parse_fails("{!\"a\"}x", -EINVAL, 7, "text after the closing \"}\"");
        parse_fails("{!\"a\"} }", -EINVAL, 8, "text after the closing \"}\"");
        parse_fails("{!\"a\"}}", -EINVAL, 7, "text after the closing \"}\"");
        /* Variables are exact and case-sensitive. */
        parse_fails("{!$User.group}", -EINVAL, 3, unknown);
        parse_fails("{!$User}", -EINVAL, 3, unknown);
        parse_fails("{!$}", -EINVAL, 3, unknown);
        parse_fails("{!\"a\" + $User.Names}", -EINVAL, 9, unknown);
        parse_fails("{!\"a\" + $User.Name.X}", -EINVAL, 9, unknown);
        parse_fails("{!$Unit_}", -EINVAL, 3, unknown);
        parse_fails("{!$user.name}", -EINVAL, 3, unknown);
        /* A variable name ends at the first byte that cannot be part of one. */
        parse_fails("{!$User.Name-}", -EINVAL, 13, plus);
}

/* Formulas that can never expand to a scope are refused when parsed. */
static void test_skeleton_errors(void **state) {
        parse_fails("{!\"\"}", -EINVAL, 3, "the scope is empty");
        parse_fails("{!\"\" + \"\"}", -EINVAL, 3, "the scope is empty");
        parse_fails("{!\" a\"}", -EINVAL, 4, "the scope would start with a space");
        parse_fails("{!\"\" + \" \" + $User.Name}", -EINVAL, 9, "the scope would start with a space");
        parse_fails("{!$User.Name + \" \"}", -EINVAL, 17, "the scope would end with a space");
        parse_fails("{!\"a \"}", -EINVAL, 5, "the scope would end with a space");
        parse_fails("{!\"a \" + \" b\"}", -EINVAL, 11, "the scope would have two spaces in a row");
        parse_fails("{!\"a \" + \"\" + \" b\"}", -EINVAL, 16, "the scope would have two spaces in a row");
        parse_fails("{!\"a\tb\"}", -EINVAL, 5,
                    "a tab is not allowed in a scope; separate scope tokens with single spaces");
        parse_fails("{!\"r\xc3\xb4le:\" + $User.Group}", -EINVAL, 5,
                    "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)");
        parse_fails("{!\"a\x01\"}", -EINVAL, 5,
                    "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)");
        /* The first problem is the one reported. */
        parse_fails("{!\" \\q\"}", -EINVAL, 4, "the scope would start with a space");
        parse_fails("{!\"a\\q \"", -EINVAL, 5, "unknown escape in a string: only \\\" and \\\\ are allowed");

        /* A space next to a variable is fine: the variable is a token. */
        struct formula_vars v = alice();
        expands_to("{!\"a \" + $User.Name + \" b\"}", &v, "a alice b");
        expands_to("{!$User.Name + \" \" + $User.Uid}", &v, "alice 1001");
}

static void test_caps(void **state) {
        char *text = malloc(FORMULA_TEXT_MAX + 2);
        struct formula_vars none = {};
        size_t n;

        assert_non_null(text);

        /* A plain scope of exactly FORMULA_TEXT_MAX bytes is fine; one more is -E2BIG. */
        memset(text, 'a', FORMULA_TEXT_MAX);
        text[FORMULA_TEXT_MAX] = '\0';
        struct formula *f = parse_ok(text);
        char *buf = malloc(FORMULA_SCOPE_MAX + 1);
        assert_non_null(buf);
        assert_int_equal(formula_eval(f, &none, buf, FORMULA_SCOPE_MAX + 1, NULL), FORMULA_TEXT_MAX);
        /* Too small a buffer: -E2BIG, and BUF is "". */
        assert_int_equal(formula_eval(f, &none, buf, 100, NULL), -E2BIG);
        assert_string_equal(buf, "");
        formula_free(f);
        text[FORMULA_TEXT_MAX] = 'a';
        text[FORMULA_TEXT_MAX + 1] = '\0';
        parse_fails(text, -E2BIG, FORMULA_TEXT_MAX + 1, "longer than 4096 bytes");
        /* The same for a formula. */
        memcpy(text, "{!\"", 3);
        parse_fails(text, -E2BIG, FORMULA_TEXT_MAX + 1, "longer than 4096 bytes");

        /* FORMULA_TERMS_MAX terms are fine, one more is -E2BIG at its column. */
        n = (size_t) snprintf(text, FORMULA_TEXT_MAX, "{!\"a\"");
        for (int i = 1; i < FORMULA_TERMS_MAX; i++)
                n += (size_t) snprintf(text + n, FORMULA_TEXT_MAX - n, "+\"a\"");
        snprintf(text + n, FORMULA_TEXT_MAX - n, "}");
        f = parse_ok(text);
        assert_int_equal(formula_eval(f, &none, buf, FORMULA_SCOPE_MAX + 1, NULL), FORMULA_TERMS_MAX);
        formula_free(f);
        snprintf(text + n, FORMULA_TEXT_MAX - n, "+\"a\"}");
        parse_fails(text, -E2BIG, (unsigned) n + 2, "more than 64 terms");

        free(buf);
        free(text);
}

static void test_scope_length_cap(void **state) {
        char *name = malloc(FORMULA_SCOPE_MAX + 2);
        char *buf = malloc(2 * FORMULA_SCOPE_MAX);
        struct formula_vars v = alice();
        struct formula *f = parse_ok("{!\"u:\" + $User.Name}");

        assert_non_null(name);
        assert_non_null(buf);
        v.value[FORMULA_VAR_USER_NAME] = name;

        /* "u:" + 4094 bytes = 4096: the cap exactly. */
        memset(name, 'n', FORMULA_SCOPE_MAX - 2);
        name[FORMULA_SCOPE_MAX - 2] = '\0';
        assert_int_equal(formula_eval(f, &v, buf, 2 * FORMULA_SCOPE_MAX, NULL), FORMULA_SCOPE_MAX);
        assert_int_equal(strlen(buf), FORMULA_SCOPE_MAX);
        assert_memory_equal(buf, "u:nnn", 5);

        /* One more byte: -E2BIG even though BUF is large enough. */
        memset(name, 'n', FORMULA_SCOPE_MAX - 1);
        name[FORMULA_SCOPE_MAX - 1] = '\0';
        assert_int_equal(formula_eval(f, &v, buf, 2 * FORMULA_SCOPE_MAX, NULL), -E2BIG);
        assert_string_equal(buf, "");

        /* A value far longer than the cap. */
        memset(name, 'n', FORMULA_SCOPE_MAX + 1);
        name[FORMULA_SCOPE_MAX + 1] = '\0';
        assert_int_equal(formula_eval(f, &v, buf, 2 * FORMULA_SCOPE_MAX, NULL), -E2BIG);

        /* The buffer's size is a cap too: "u:alice" needs 8 bytes. */
        v.value[FORMULA_VAR_USER_NAME] = "alice";
        assert_int_equal(formula_eval(f, &v, buf, 8, NULL), 7);
        assert_string_equal(buf, "u:alice");
        assert_int_equal(formula_eval(f, &v, buf, 7, NULL), -E2BIG);
        assert_string_equal(buf, "");

        formula_free(f);
        free(buf);
        free(name);
}

/* ---- Evaluation errors: unavailable variables and injection attempts ---------------- */

static void test_unavailable(void **state) {
        struct formula_vars v = alice();

        /* $Unit is unavailable in this version. */
        eval_fails("{!\"unit:\" + $Unit}", &v, -ENODATA, FORMULA_VAR_UNIT);
        /* A uid without a name. */
        v.value[FORMULA_VAR_USER_NAME] = NULL;
        eval_fails("{!\"u:\" + $User.Name}", &v, -ENODATA, FORMULA_VAR_USER_NAME);
        /* The first variable at fault is named, in the formula's order. */
        v.value[FORMULA_VAR_USER_GROUP] = NULL;
        eval_fails("{!$User.Uid + $User.Group + $User.Name}", &v, -ENODATA, FORMULA_VAR_USER_GROUP);
        eval_fails("{!$User.Name + $User.Group}", &v, -ENODATA, FORMULA_VAR_USER_NAME);
        /* A variable the formula does not use may be NULL. */
        expands_to("{!$User.Uid}", &v, "1001");
        /* An unavailable variable is reported before a bad one that comes later, and the other
         * way round. */
        v = alice();
        v.value[FORMULA_VAR_USER_NAME] = "a b";
        eval_fails("{!$Unit + $User.Name}", &v, -ENODATA, FORMULA_VAR_UNIT);
        eval_fails("{!$User.Name + $Unit}", &v, -EILSEQ, FORMULA_VAR_USER_NAME);
}

static void test_injection(void **state) {
        static const char *const bad_tokens[] = {
                "",                     /* empty: "role:" would be another scope */
                "ops admin",            /* a space: a second scope token */
                "ops\"",                /* a quote */
                "\"ops\"",
                "ops\\",                /* a backslash */
                "al\\\\ice",
                "ops\tadmin",
                "ops\nadmin",
                "ops\radmin",
                " ops",
                "ops ",
                "caf\xc3\xa9",          /* non-ASCII */
                "a\x7f",
        };
        struct formula_vars v;

        for (size_t i = 0; i < sizeof bad_tokens / sizeof *bad_tokens; i++) {
                v = alice();
                v.value[FORMULA_VAR_USER_GROUP] = bad_tokens[i];
                eval_fails("{!\"session:role:\" + $User.Group}", &v, -EILSEQ, FORMULA_VAR_USER_GROUP);
                v = alice();
                v.value[FORMULA_VAR_USER_NAME] = bad_tokens[i];
                eval_fails("{!\"user:\" + $User.Name}", &v, -EILSEQ, FORMULA_VAR_USER_NAME);
                v = alice();
                v.value[FORMULA_VAR_PRINCIPAL_NAME] = bad_tokens[i];
                eval_fails("{!$Principal.Name}", &v, -EILSEQ, FORMULA_VAR_PRINCIPAL_NAME);
        }

        /* $User.Groups: single spaces between names are the separators; nothing else. */
        static const char *const bad_groups[] = {
                "", " ops", "ops ", "ops  wheel", "ops\twheel", "ops \"wheel\"", "ops wh\\eel", "ops caf\xc3\xa9",
        };
        for (size_t i = 0; i < sizeof bad_groups / sizeof *bad_groups; i++) {
                v = alice();
                v.value[FORMULA_VAR_USER_GROUPS] = bad_groups[i];
                eval_fails("{!\"groups \" + $User.Groups}", &v, -EILSEQ, FORMULA_VAR_USER_GROUPS);
        }
        v = alice();
        v.value[FORMULA_VAR_USER_GROUPS] = "ops";
        expands_to("{!\"groups \" + $User.Groups}", &v, "groups ops");
        v.value[FORMULA_VAR_USER_GROUPS] = "a b c d";
        expands_to("{!\"groups \" + $User.Groups}", &v, "groups a b c d");

        /* Every NQCHAR is allowed in a value: it stays inside the one token. */
        v = alice();
        v.value[FORMULA_VAR_USER_NAME] = "!#$%&'()*+,-./:;<=>?@[]^_`{|}~";
        expands_to("{!\"u:\" + $User.Name}", &v, "u:!#$%&'()*+,-./:;<=>?@[]^_`{|}~");
}

static void test_eval_arguments(void **state) {
        struct formula *f = parse_ok("read");
        struct formula_vars v = {};
        char buf[8];

        assert_int_equal(formula_eval(NULL, &v, buf, sizeof buf, NULL), -EINVAL);
        assert_int_equal(formula_eval(f, NULL, buf, sizeof buf, NULL), -EINVAL);
        assert_int_equal(formula_eval(f, &v, NULL, sizeof buf, NULL), -EINVAL);
        assert_int_equal(formula_eval(f, &v, buf, 0, NULL), -EINVAL);
        assert_int_equal(formula_eval(f, &v, buf, 5, NULL), 4);
        assert_int_equal(formula_eval(f, &v, buf, 4, NULL), -E2BIG);
        assert_null(formula_free(f));
        assert_null(formula_free(NULL));

        assert_int_equal(formula_parse(NULL, &f, NULL, NULL), -EINVAL);
        assert_int_equal(formula_parse("read", NULL, NULL, NULL), -EINVAL);

        assert_false(formula_is_formula(NULL));
        assert_false(formula_is_formula(""));
        assert_false(formula_is_formula("{"));
        assert_false(formula_is_formula("!{"));
        assert_true(formula_is_formula("{!"));
        assert_false(formula_is_literal(NULL));
}

static void test_scope_helpers(void **state) {
        assert_true(formula_is_scope_token("a"));
        assert_true(formula_is_scope_token("!#$%&'()*+,-./:;<=>?@[]^_`{|}~"));
        assert_false(formula_is_scope_token(NULL));
        assert_false(formula_is_scope_token(""));
        assert_false(formula_is_scope_token("a b"));
        assert_false(formula_is_scope_token("a\""));
        assert_false(formula_is_scope_token("a\\"));

        assert_true(formula_is_scope("a"));
        assert_true(formula_is_scope("a b c"));
        assert_false(formula_is_scope(NULL));
        assert_false(formula_is_scope(""));
        assert_false(formula_is_scope(" a"));
        assert_false(formula_is_scope("a "));
        assert_false(formula_is_scope("a  b"));
        assert_false(formula_is_scope("a\tb"));

        /* Exhaustively over one byte: NQCHAR is %x21 / %x23-5B / %x5D-7E. */
        for (unsigned c = 1; c < 256; c++) {
                char s[2] = { (char) c, 0 };
                bool nq = c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);

                assert_int_equal(formula_is_scope_token(s), nq);
                assert_int_equal(formula_is_scope(s), nq);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_literal_scopes),
                cmocka_unit_test(test_literal_scope_errors),
                cmocka_unit_test(test_strings_and_concatenation),
                cmocka_unit_test(test_variables),
                cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_syntax_errors),
                cmocka_unit_test(test_skeleton_errors),
                cmocka_unit_test(test_caps),
                cmocka_unit_test(test_scope_length_cap),
                cmocka_unit_test(test_unavailable),
                cmocka_unit_test(test_injection),
                cmocka_unit_test(test_eval_arguments),
                cmocka_unit_test(test_scope_helpers),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
