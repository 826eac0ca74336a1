/* SPDX-License-Identifier: ISC */
/* policy/formula.h: formula_parse() and formula_eval().  Input: the formula's text up to the
 * first NUL byte; after it, NUL-separated values of $User.Name, $User.Uid, $User.Group,
 * $User.Groups, $Unit, $Principal.Name and $Credential.Name in that order (a missing one is
 * unavailable).  Oracles: the parse contract (errors with a column within the text and a
 * message; a plain scope expands to itself); every expansion is a scope of at most
 * FORMULA_SCOPE_MAX bytes; a value that is not scope-token characters is refused, never
 * expanded; and no value adds a scope token: the expansion has as many spaces as the
 * formula's literals plus those inside the $User.Groups value where it is used. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "policy/formula.h"

static size_t count_spaces(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                n += *s == ' ';
        return n;
}

static bool value_ok(enum formula_var v, const char *s) {
        return v == FORMULA_VAR_USER_GROUPS ? formula_is_scope(s) : formula_is_scope_token(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct formula *f = (struct formula *) data; /* any non-NULL marker */
        struct formula_vars vars = {}, skel = {};
        char *copy, *buf, *sbuf;
        const char *message = NULL;
        unsigned column = 0;
        size_t len;
        int r, n;

        /* A NUL-terminated copy; the NUL bytes in it split the text from the values. */
        copy = malloc(size + 1);
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        len = strlen(copy);
        {
                size_t pos = len + 1;

                for (unsigned v = 0; v < _FORMULA_VAR_MAX && pos <= size; v++) {
                        vars.value[v] = copy + pos;
                        pos += strlen(copy + pos) + 1;
                }
        }

        r = formula_parse(copy, &f, &column, &message);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -E2BIG || r == -ENOMEM);
        if (r < 0) {
                FUZZ_CHECK(f == (struct formula *) data);
                if (r != -ENOMEM) {
                        FUZZ_CHECK(message && *message);
                        FUZZ_CHECK(column >= 1 && column <= len + 1);
                        FUZZ_CHECK(r != -E2BIG || len > FORMULA_TEXT_MAX || strstr(message, "terms"));
                }
                free(copy);
                return 0;
        }
        FUZZ_CHECK(len <= FORMULA_TEXT_MAX);
        FUZZ_CHECK(formula_is_literal(f) == !formula_is_formula(copy));

        buf = malloc(FORMULA_SCOPE_MAX + 1);
        sbuf = malloc(FORMULA_SCOPE_MAX + 1);
        if (!buf || !sbuf)
                goto out;

        /* A plain scope is itself, whatever the variables. */
        if (formula_is_literal(f)) {
                FUZZ_CHECK(formula_is_scope(copy));
                n = formula_eval(f, &skel, buf, FORMULA_SCOPE_MAX + 1, NULL);
                FUZZ_CHECK(n == (int) len && strcmp(buf, copy) == 0);
        }

        {
                enum formula_var bad = _FORMULA_VAR_MAX;
                bool any_missing = false, any_bad = false;

                for (unsigned v = 0; v < _FORMULA_VAR_MAX; v++) {
                        if (!formula_uses(f, (enum formula_var) v))
                                continue;
                        if (!vars.value[v])
                                any_missing = true;
                        else if (!value_ok((enum formula_var) v, vars.value[v]))
                                any_bad = true;
                }

                n = formula_eval(f, &vars, buf, FORMULA_SCOPE_MAX + 1, &bad);
                FUZZ_CHECK(n > 0 || n == -ENODATA || n == -EILSEQ || n == -E2BIG);
                if (n < 0) {
                        FUZZ_CHECK(buf[0] == '\0');
                        FUZZ_CHECK((n == -ENODATA) <= any_missing);
                        FUZZ_CHECK((n == -EILSEQ) <= any_bad);
                        FUZZ_CHECK(n == -E2BIG || formula_uses(f, bad));
                        FUZZ_CHECK(n != -ENODATA || !vars.value[bad]);
                        FUZZ_CHECK(n != -EILSEQ || !value_ok(bad, vars.value[bad]));
                        FUZZ_CHECK(n == -E2BIG || (bad < _FORMULA_VAR_MAX));
                        FUZZ_CHECK(n != -E2BIG || (!any_missing && !any_bad));
                        goto out;
                }
                FUZZ_CHECK(!any_missing && !any_bad);
                FUZZ_CHECK((size_t) n == strlen(buf) && n <= FORMULA_SCOPE_MAX);
                FUZZ_CHECK(formula_is_scope(buf));
                for (unsigned v = 0; v < _FORMULA_VAR_MAX; v++)
                        FUZZ_CHECK(!formula_uses(f, (enum formula_var) v) || strstr(buf, vars.value[v]));
        }

        /* No value adds a token: compare with the skeleton, each variable one byte "x", and
         * count how often $User.Groups occurs with "x x" in its place. */
        for (unsigned v = 0; v < _FORMULA_VAR_MAX; v++)
                skel.value[v] = "x";
        {
                size_t skel_spaces, groups = 0;
                int k = formula_eval(f, &skel, sbuf, FORMULA_SCOPE_MAX + 1, NULL);

                FUZZ_CHECK(k > 0 && k <= n); /* every value is at least one byte */
                skel_spaces = count_spaces(sbuf);
                if (formula_uses(f, FORMULA_VAR_USER_GROUPS)) {
                        skel.value[FORMULA_VAR_USER_GROUPS] = "x x";
                        k = formula_eval(f, &skel, sbuf, FORMULA_SCOPE_MAX + 1, NULL);
                        if (k < 0) {
                                FUZZ_CHECK(k == -E2BIG);
                                goto out;
                        }
                        groups = count_spaces(sbuf) - skel_spaces;
                        FUZZ_CHECK(groups >= 1);
                }
                FUZZ_CHECK(count_spaces(buf) ==
                           skel_spaces + (groups ? groups * count_spaces(vars.value[FORMULA_VAR_USER_GROUPS]) : 0));
        }

out:
        free(sbuf);
        free(buf);
        formula_free(f);
        free(copy);
        return 0;
}
