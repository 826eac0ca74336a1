/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "policy/formula.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

enum term_kind {
        TERM_STRING,
        TERM_VAR,
};

struct term {
        enum term_kind kind;
        enum formula_var var;   /* TERM_VAR */
        char *text;             /* TERM_STRING: the unescaped bytes, NUL-terminated */
        size_t len;
};

struct formula {
        bool literal;           /* a plain scope, not written as a formula */
        unsigned uses;          /* bit v set: variable v appears */
        size_t n_terms;
        struct term terms[];
};

static const char *const var_names[_FORMULA_VAR_MAX] = {
        [FORMULA_VAR_USER_NAME] = "$User.Name",
        [FORMULA_VAR_USER_UID] = "$User.Uid",
        [FORMULA_VAR_USER_GROUP] = "$User.Group",
        [FORMULA_VAR_USER_GROUPS] = "$User.Groups",
        [FORMULA_VAR_UNIT] = "$Unit",
        [FORMULA_VAR_PRINCIPAL_NAME] = "$Principal.Name",
        [FORMULA_VAR_CREDENTIAL_NAME] = "$Credential.Name",
};

_Static_assert(_FORMULA_VAR_MAX <= sizeof(unsigned) * 8, "uses is a bit set");

/* Messages (formula.h lists them with their columns). */
#define M_EXPECTED_TERM "expected a string in double quotes or a variable such as $User.Name"
#define M_EXPECTED_PLUS "expected \"+\" or \"}\" after a term"
#define M_UNCLOSED_STRING "the string is not closed: a '\"' is missing"
#define M_BAD_ESCAPE "unknown escape in a string: only \\\" and \\\\ are allowed"
#define M_UNKNOWN_VAR                                                                                     \
        "unknown variable; the variables are $User.Name, $User.Uid, $User.Group, $User.Groups, $Unit, " \
        "$Principal.Name and $Credential.Name"
#define M_UNCLOSED_FORMULA "the formula is not closed: a \"}\" is missing"
#define M_TRAILING "text after the closing \"}\""
#define M_QUOTE "'\"' is not allowed in a scope (RFC 6749 section 3.3)"
#define M_BACKSLASH "'\\' is not allowed in a scope (RFC 6749 section 3.3)"
#define M_TAB "a tab is not allowed in a scope; separate scope tokens with single spaces"
#define M_BYTE "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)"
#define M_LEADING_SPACE "the scope would start with a space"
#define M_TRAILING_SPACE "the scope would end with a space"
#define M_DOUBLE_SPACE "the scope would have two spaces in a row"
#define M_EMPTY "the scope is empty"
#define M_TOO_LONG "longer than " STRINGIFY(FORMULA_TEXT_MAX) " bytes"
#define M_TOO_MANY_TERMS "more than " STRINGIFY(FORMULA_TERMS_MAX) " terms"

static bool is_nqchar(unsigned char c) {
        return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static bool is_ws(char c) {
        return c == ' ' || c == '\t';
}

static bool is_ident(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

bool formula_is_formula(const char *text) {
        return text && text[0] == '{' && text[1] == '!';
}

const char *formula_var_name(enum formula_var v) {
        return (unsigned) v < _FORMULA_VAR_MAX ? var_names[v] : "$?";
}

bool formula_is_scope_token(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (!is_nqchar((unsigned char) *s))
                        return false;
        return true;
}

bool formula_is_scope(const char *s) {
        bool token = false;

        if (!s)
                return false;
        for (; *s; s++) {
                if (*s == ' ') {
                        if (!token)
                                return false; /* leading or double space */
                        token = false;
                } else if (is_nqchar((unsigned char) *s))
                        token = true;
                else
                        return false;
        }
        return token; /* not empty, no trailing space */
}

/* ---- Parsing ------------------------------------------------------------------------ */

/* The skeleton check: walks what the formula expands to, with each variable standing for
 * one scope-token, and stops at the first place that can never be part of a scope. */
struct skeleton {
        enum { SK_START, SK_TOKEN, SK_SPACE } state;
        unsigned space_column;  /* of the last space, for a trailing-space error */
        unsigned column;        /* an error's */
        const char *message;
};

/* Feeds one byte C written at COLUMN.  Returns false on an error (recorded in SK). */
static bool skeleton_byte(struct skeleton *sk, unsigned char c, unsigned column) {
        const char *m = NULL;

        if (c == ' ') {
                if (sk->state == SK_START)
                        m = M_LEADING_SPACE;
                else if (sk->state == SK_SPACE)
                        m = M_DOUBLE_SPACE;
                else {
                        sk->state = SK_SPACE;
                        sk->space_column = column;
                        return true;
                }
        } else if (c == '"')
                m = M_QUOTE;
        else if (c == '\\')
                m = M_BACKSLASH;
        else if (c == '\t')
                m = M_TAB;
        else if (!is_nqchar(c))
                m = M_BYTE;
        else {
                sk->state = SK_TOKEN;
                return true;
        }
        sk->column = column;
        sk->message = m;
        return false;
}

static void skeleton_token(struct skeleton *sk) {
        sk->state = SK_TOKEN;
}

/* At the end; EMPTY_COLUMN is where an empty scope is reported. */
static bool skeleton_end(struct skeleton *sk, unsigned empty_column) {
        if (sk->state == SK_START) {
                sk->column = empty_column;
                sk->message = M_EMPTY;
                return false;
        }
        if (sk->state == SK_SPACE) {
                sk->column = sk->space_column;
                sk->message = M_TRAILING_SPACE;
                return false;
        }
        return true;
}

struct parser {
        const char *text;
        size_t len;
        size_t pos;
        struct term *terms;     /* FORMULA_TERMS_MAX of them */
        size_t n_terms;
        unsigned uses;
        struct skeleton sk;
        unsigned first_string_column;
        int error;              /* 0, -EINVAL, -E2BIG or -ENOMEM */
        unsigned column;
        const char *message;
};

static unsigned col(size_t pos) {
        return (unsigned) pos + 1;
}

static void fail(struct parser *p, int error, size_t pos, const char *message) {
        p->error = error;
        p->column = col(pos);
        p->message = message;
}

static void fail_skeleton(struct parser *p) {
        p->error = -EINVAL;
        p->column = p->sk.column;
        p->message = p->sk.message;
}

static void skip_ws(struct parser *p) {
        while (p->pos < p->len && is_ws(p->text[p->pos]))
                p->pos++;
}

static struct term *new_term(struct parser *p) {
        if (p->n_terms >= FORMULA_TERMS_MAX) {
                fail(p, -E2BIG, p->pos, M_TOO_MANY_TERMS);
                return NULL;
        }
        /* Zeroed: an error before the term is filled frees its text, NULL then. */
        p->terms[p->n_terms] = (struct term) {};
        return &p->terms[p->n_terms++];
}

/* At the opening quote. */
static void parse_string(struct parser *p) {
        size_t open = p->pos;
        struct term *t;
        char *out;
        size_t n = 0;

        if (p->first_string_column == 0)
                p->first_string_column = col(open);
        t = new_term(p);
        if (!t)
                return;
        /* The unescaped string is never longer than the rest of the text. */
        out = malloc(p->len - open);
        if (!out) {
                p->error = -ENOMEM;
                return;
        }
        *t = (struct term) { .kind = TERM_STRING, .text = out };

        for (p->pos = open + 1;; p->pos++) {
                size_t at = p->pos;
                char c;

                if (p->pos >= p->len) {
                        fail(p, -EINVAL, open, M_UNCLOSED_STRING);
                        return;
                }
                c = p->text[p->pos];
                if (c == '"')
                        break;
                if (c == '\\') {
                        if (p->pos + 1 >= p->len) {
                                fail(p, -EINVAL, open, M_UNCLOSED_STRING);
                                return;
                        }
                        c = p->text[++p->pos];
                        if (c != '"' && c != '\\') {
                                fail(p, -EINVAL, at, M_BAD_ESCAPE);
                                return;
                        }
                }
                if (!skeleton_byte(&p->sk, (unsigned char) c, col(at))) {
                        fail_skeleton(p);
                        return;
                }
                out[n++] = c;
        }
        p->pos++; /* the closing quote */
        out[n] = '\0';
        t->len = n;
}

/* At the "$". */
static void parse_variable(struct parser *p) {
        size_t start = p->pos, end = start + 1;
        struct term *t;

        while (end < p->len && is_ident(p->text[end]))
                end++;
        for (unsigned v = 0; v < _FORMULA_VAR_MAX; v++)
                if (strlen(var_names[v]) == end - start && memcmp(var_names[v], p->text + start, end - start) == 0) {
                        t = new_term(p);
                        if (!t)
                                return;
                        *t = (struct term) { .kind = TERM_VAR, .var = (enum formula_var) v };
                        p->uses |= 1u << v;
                        skeleton_token(&p->sk);
                        p->pos = end;
                        return;
                }
        fail(p, -EINVAL, start, M_UNKNOWN_VAR);
}

static void parse_formula(struct parser *p) {
        p->pos = 2; /* "{!" */
        for (;;) {
                skip_ws(p);
                if (p->pos < p->len && p->text[p->pos] == '"')
                        parse_string(p);
                else if (p->pos < p->len && p->text[p->pos] == '$')
                        parse_variable(p);
                else {
                        fail(p, -EINVAL, p->pos, M_EXPECTED_TERM);
                        return;
                }
                if (p->error)
                        return;

                skip_ws(p);
                if (p->pos >= p->len) {
                        fail(p, -EINVAL, p->pos, M_UNCLOSED_FORMULA);
                        return;
                }
                if (p->text[p->pos] == '}')
                        break;
                if (p->text[p->pos] != '+') {
                        fail(p, -EINVAL, p->pos, M_EXPECTED_PLUS);
                        return;
                }
                p->pos++;
        }
        p->pos++; /* "}" */
        skip_ws(p);
        if (p->pos < p->len) {
                fail(p, -EINVAL, p->pos, M_TRAILING);
                return;
        }
        if (!skeleton_end(&p->sk, p->first_string_column ?: 3))
                fail_skeleton(p);
}

static void parse_plain(struct parser *p) {
        struct term *t = new_term(p);
        char *out;

        for (p->pos = 0; p->pos < p->len; p->pos++)
                if (!skeleton_byte(&p->sk, (unsigned char) p->text[p->pos], col(p->pos))) {
                        fail_skeleton(p);
                        return;
                }
        if (!skeleton_end(&p->sk, 1)) {
                fail_skeleton(p);
                return;
        }
        out = strndup(p->text, p->len);
        if (!out) {
                p->error = -ENOMEM;
                return;
        }
        *t = (struct term) { .kind = TERM_STRING, .text = out, .len = p->len };
}

int formula_parse(const char *text, struct formula **ret, unsigned *ret_column, const char **ret_message) {
        struct term terms[FORMULA_TERMS_MAX];
        struct parser p = { .text = text, .terms = terms };
        struct formula *f;

        if (!text || !ret)
                return -EINVAL;

        p.len = strnlen(text, FORMULA_TEXT_MAX + 1);
        if (p.len > FORMULA_TEXT_MAX)
                fail(&p, -E2BIG, FORMULA_TEXT_MAX, M_TOO_LONG);
        else if (formula_is_formula(text))
                parse_formula(&p);
        else
                parse_plain(&p);

        if (p.error == 0) {
                f = malloc(sizeof *f + p.n_terms * sizeof *f->terms);
                if (!f)
                        p.error = -ENOMEM;
        }
        if (p.error < 0) {
                for (size_t i = 0; i < p.n_terms; i++)
                        free(terms[i].text);
                if (p.error != -ENOMEM) {
                        if (ret_column)
                                *ret_column = p.column;
                        if (ret_message)
                                *ret_message = p.message;
                }
                return p.error;
        }

        f->literal = !formula_is_formula(text);
        f->uses = p.uses;
        f->n_terms = p.n_terms;
        memcpy(f->terms, terms, p.n_terms * sizeof *f->terms);
        *ret = f;
        return 0;
}

struct formula *formula_free(struct formula *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_terms; i++)
                free(f->terms[i].text);
        free(f);
        return NULL;
}

bool formula_uses(const struct formula *f, enum formula_var v) {
        return f && (unsigned) v < _FORMULA_VAR_MAX && (f->uses & (1u << v));
}

bool formula_is_literal(const struct formula *f) {
        return f && f->literal;
}

/* ---- Evaluation --------------------------------------------------------------------- */

static bool value_is_valid(enum formula_var v, const char *value) {
        return v == FORMULA_VAR_USER_GROUPS ? formula_is_scope(value) : formula_is_scope_token(value);
}

int formula_eval(const struct formula *f, const struct formula_vars *vars, char *buf, size_t size,
                 enum formula_var *ret_var) {
        size_t n = 0, max;

        if (!f || !vars || !buf || size == 0)
                return -EINVAL;
        buf[0] = '\0';

        /* Every variable first, so the error names the first one at fault whatever the length. */
        for (size_t i = 0; i < f->n_terms; i++) {
                const struct term *t = &f->terms[i];
                const char *v;

                if (t->kind != TERM_VAR)
                        continue;
                v = vars->value[t->var];
                if (!v || !value_is_valid(t->var, v)) {
                        if (ret_var)
                                *ret_var = t->var;
                        return v ? -EILSEQ : -ENODATA;
                }
        }

        max = size - 1 < FORMULA_SCOPE_MAX ? size - 1 : FORMULA_SCOPE_MAX;
        for (size_t i = 0; i < f->n_terms; i++) {
                const struct term *t = &f->terms[i];
                const char *s = t->kind == TERM_VAR ? vars->value[t->var] : t->text;
                size_t k = t->kind == TERM_VAR ? strnlen(s, max + 1) : t->len;

                if (k > max - n) {
                        buf[0] = '\0';
                        return -E2BIG;
                }
                memcpy(buf + n, s, k);
                n += k;
        }
        buf[n] = '\0';

        /* Holds by construction (the skeleton check and the values' check): a safety net. */
        if (!formula_is_scope(buf)) {
                buf[0] = '\0';
                return -EILSEQ;
        }
        return (int) n;
}
