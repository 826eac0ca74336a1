/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Scope formulas (README, "Scope formulas"): a [credential]'s scope that depends on who asks,
 * as in the seed: scope = {!"session:role:" + $User.Group}.  Pure: no I/O, no logging.
 *
 * Grammar (ws is any run of spaces and tabs; columns count bytes from 1 at the first byte
 * of the value):
 *     value    = formula / scope          ; a value that does not start with "{!" is a plain scope
 *     formula  = "{!" ws term *( ws "+" ws term ) ws "}" ws
 *     term     = string / variable
 *     string   = DQUOTE *( char / "\" DQUOTE / "\" "\" ) DQUOTE   ; char: any byte but DQUOTE, "\", NUL
 *     variable = "$User.Name" / "$User.Uid" / "$User.Group" / "$User.Groups" / "$Unit"
 *              / "$Principal.Name" / "$Credential.Name"
 *     scope    = scope-token *( SP scope-token )  ; RFC 6749 §3.3
 *     scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E
 *
 * A formula is checked at parse time for what it will expand to: its literals joined with
 * each variable standing for one scope-token must be a scope.  So a literal may hold spaces
 * between tokens, but never '"', '\' (although the string syntax can write them), a tab, a
 * control byte or a non-ASCII byte, two spaces in a row, or a space at the start or the end.
 * At evaluation each variable's value must be one scope-token ($User.Groups: scope-tokens
 * separated by single spaces); anything else is refused, so a caller's name can never add a
 * scope of its own choosing. */

/* Caps, next to the type they bound. */
#define FORMULA_TEXT_MAX 4096   /* bytes of a value given to formula_parse(), "{!" … "}" included */
#define FORMULA_TERMS_MAX 64    /* strings and variables in one formula */
#define FORMULA_SCOPE_MAX 4096  /* bytes of an expanded scope (== MSG_SCOPE_MAX, ipc/msg.h) */

/* The variables, in the order of the grammar.  Numbers are not stable across versions. */
enum formula_var {
        FORMULA_VAR_USER_NAME,          /* $User.Name: the caller's user name */
        FORMULA_VAR_USER_UID,           /* $User.Uid: the caller's uid, in decimal */
        FORMULA_VAR_USER_GROUP,         /* $User.Group: the name of the caller's group (its gid) */
        FORMULA_VAR_USER_GROUPS,        /* $User.Groups: the names of all its groups, space-joined */
        FORMULA_VAR_UNIT,               /* $Unit: the caller's systemd unit */
        FORMULA_VAR_PRINCIPAL_NAME,     /* $Principal.Name: "Batch" of [principal Billing_API.Batch] */
        FORMULA_VAR_CREDENTIAL_NAME,    /* $Credential.Name: "Billing_API" */
        _FORMULA_VAR_MAX,
};

/* A compiled formula (or a plain scope: one string term).  Immutable once parsed. */
struct formula;

/* The values of the variables for one caller.  value[v] is NULL when variable v is
 * unavailable for this caller (a uid without a name, $Unit in this version); a variable the
 * formula does not use is never looked at. */
struct formula_vars {
        const char *value[_FORMULA_VAR_MAX];
};

/* Returns true when TEXT is written as a formula, i.e. starts with "{!" (NULL: false). */
bool formula_is_formula(const char *text);

/* Returns the variable's name as written in a formula ("$User.Group"), or "$?" when V is
 * out of range.  Static storage. */
const char *formula_var_name(enum formula_var v);

/* Compiles TEXT (NUL-terminated): a formula when it starts with "{!", otherwise a plain scope.
 * On success returns 0 and stores a new formula in *RET (free with formula_free()).
 * On failure returns
 *   -EINVAL  a syntax error, or a formula or scope whose expansion can never be a valid
 *            scope (see the grammar above),
 *   -E2BIG   TEXT longer than FORMULA_TEXT_MAX bytes, or more than FORMULA_TERMS_MAX terms,
 *   -ENOMEM,
 * and for -EINVAL and -E2BIG stores, when they are not NULL, the 1-based byte column of the
 * offending place in *RET_COLUMN and a static English message in *RET_MESSAGE (the message
 * quotes no part of TEXT; the column points at it).  *RET is untouched on failure, as are
 * *RET_COLUMN and *RET_MESSAGE on success and on -ENOMEM.
 * The messages (the column they give in parentheses):
 *   "expected a string in double quotes or a variable such as $User.Name" (where a term
 *        should start; an empty formula "{!}" gives the "}");
 *   "expected \"+\" or \"}\" after a term" (the byte after the term and its whitespace);
 *   "the string is not closed: a '\"' is missing" (its opening quote);
 *   "unknown escape in a string: only \\\" and \\\\ are allowed" (the backslash);
 *   "unknown variable; the variables are $User.Name, … and $Credential.Name" (the "$");
 *   "the formula is not closed: a \"}\" is missing" (one past the last byte);
 *   "text after the closing \"}\"" (the first such byte);
 *   "'\"' is not allowed in a scope (RFC 6749 section 3.3)",
 *   "'\\' is not allowed in a scope (RFC 6749 section 3.3)",
 *   "a tab is not allowed in a scope; separate scope tokens with single spaces",
 *   "a control character or non-ASCII byte is not allowed in a scope (RFC 6749 section 3.3)"
 *        (the byte, or the backslash of its escape);
 *   "the scope would start with a space", "the scope would end with a space",
 *   "the scope would have two spaces in a row" (that space);
 *   "the scope is empty" (1 for a plain scope, the first string's quote in a formula);
 *   "longer than 4096 bytes" (-E2BIG; column 4097);
 *   "more than 64 terms" (-E2BIG; the 65th term). */
int formula_parse(const char *text, struct formula **ret, unsigned *ret_column, const char **ret_message);

/* Frees F.  Accepts NULL.  Returns NULL. */
struct formula *formula_free(struct formula *f);

static inline void formula_freep(struct formula **f) {
        formula_free(*f);
}

/* Returns true when F uses variable V. */
bool formula_uses(const struct formula *f, enum formula_var v);

/* Returns true when F is a plain scope (it was not written as a formula). */
bool formula_is_literal(const struct formula *f);

/* Expands F for the caller described by VARS into BUF (SIZE bytes, NUL-terminated).
 * Returns the length of the scope (≥ 1), or
 *   -ENODATA  a variable F uses is unavailable (VARS->value[v] is NULL),
 *   -EILSEQ   a variable's value is not one scope-token (empty, or a byte other than
 *             NQCHAR; for $User.Groups: not scope-tokens separated by single spaces),
 *   -E2BIG    the scope would be longer than FORMULA_SCOPE_MAX bytes or not fit in BUF,
 *   -EINVAL   F, VARS or BUF is NULL or SIZE is 0.
 * For -ENODATA and -EILSEQ, when RET_VAR is not NULL the first variable (in the formula's
 * order) at fault is stored there; RET_VAR is untouched otherwise.  On failure BUF holds ""
 * (when SIZE > 0), never a partial scope.  The result is checked to be a scope before it is
 * returned (it always is, by the parse-time check): a safety net, -EILSEQ otherwise.
 * A plain scope needs no variables: VARS may then have every value NULL. */
int formula_eval(const struct formula *f, const struct formula_vars *vars, char *buf, size_t size,
                 enum formula_var *ret_var);

/* Returns true when S is a scope-token (1*NQCHAR, RFC 6749 §3.3); false for NULL. */
bool formula_is_scope_token(const char *s);

/* Returns true when S is a scope: scope-tokens separated by single spaces; false for NULL. */
bool formula_is_scope(const char *s);
