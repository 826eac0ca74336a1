/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "macro.h"
#include "policy/formula.h"
#include "policy/scope.h"

_Static_assert(SCOPE_NARROW_MAX == FORMULA_SCOPE_MAX, "a narrowed scope is as long as an expanded one at most");

/* One scope-token of the configured scope: where it is, and its place in the scope. */
struct token {
        const char *p;
        size_t len;
        size_t index;
};

static int token_compare(const void *a, const void *b) {
        const struct token *x = a, *y = b;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->p, y->p, n);

        if (c != 0)
                return c;
        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        /* Equal tokens in the order they appear, so the first occurrence comes first. */
        return x->index < y->index ? -1 : x->index > y->index;
}

/* The token S[0..LEN) in the sorted V[0..N): the index in V of its first occurrence, or
 * -1.  Binary search for the leftmost equal token. */
static ssize_t token_find(const struct token *v, size_t n, const char *s, size_t len) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                size_t m = v[mid].len < len ? v[mid].len : len;
                int c = memcmp(v[mid].p, s, m);

                if (c == 0 && v[mid].len != len)
                        c = v[mid].len < len ? -1 : 1;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo < n && v[lo].len == len && memcmp(v[lo].p, s, len) == 0)
                return (ssize_t) lo;
        return -1;
}

int scope_narrow(const char *configured, const char *requested, char *buf, size_t size, const char **ret_scope) {
        _cleanup_free_ struct token *tokens = NULL;
        _cleanup_free_ bool *selected = NULL;
        size_t n = 0, out = 0;

        if (!requested || !buf || size == 0 || strnlen(requested, SCOPE_NARROW_MAX + 1) > SCOPE_NARROW_MAX ||
            !formula_is_scope(requested))
                return -EINVAL;
        if (!configured || !configured[0])
                return -EPERM;

        /* The configured scope's tokens, sorted for lookup. */
        for (const char *p = configured; *p;) {
                size_t len = strcspn(p, " ");

                if (len > 0)
                        n++;
                p += len;
                p += strspn(p, " ");
        }
        if (n > SCOPE_TOKENS_MAX)
                return -E2BIG;
        tokens = calloc(n, sizeof *tokens);
        selected = calloc(n, sizeof *selected);
        if (!tokens || !selected)
                return -ENOMEM;
        n = 0;
        for (const char *p = configured; *p;) {
                size_t len = strcspn(p, " ");

                if (len > 0) {
                        tokens[n] = (struct token) { .p = p, .len = len, .index = n };
                        n++;
                }
                p += len;
                p += strspn(p, " ");
        }
        qsort(tokens, n, sizeof *tokens, token_compare);

        /* Every requested token must be a configured one. */
        for (const char *p = requested; *p;) {
                size_t len = strcspn(p, " ");
                ssize_t i = token_find(tokens, n, p, len);

                if (i < 0)
                        return -EPERM;
                selected[tokens[i].index] = true;
                p += len;
                p += *p == ' ';
        }

        /* The selected tokens in the configured order. */
        n = 0;
        for (const char *p = configured; *p;) {
                size_t len = strcspn(p, " ");

                if (len > 0) {
                        if (selected[n]) {
                                if (out + (out > 0) + len + 1 > size)
                                        return -E2BIG;
                                if (out > 0)
                                        buf[out++] = ' ';
                                memcpy(buf + out, p, len);
                                out += len;
                        }
                        n++;
                }
                p += len;
                p += strspn(p, " ");
        }
        buf[out] = '\0';

        *ret_scope = strcmp(buf, configured) == 0 ? configured : buf;
        return 0;
}
