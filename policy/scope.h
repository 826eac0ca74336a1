/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>

/* Scope narrowing (README, "Socket API"): a caller may ask GET /v1/token/CRED?scope=… for
 * a part of the scope the agent would request for it (the credential's scope, or its
 * formula's expansion for that caller), never for more.  Pure: no I/O, no logging. */

/* Caps, next to what they bound. */
#define SCOPE_NARROW_MAX 4096   /* bytes of a requested scope (== FORMULA_SCOPE_MAX) */
#define SCOPE_TOKENS_MAX 2048   /* scope-tokens in one scope: 4096 bytes hold at most 2048 */

/* Narrows CONFIGURED (a scope, RFC 6749 §3.3, or NULL for none) to REQUESTED.
 * REQUESTED must be a scope: scope-tokens (1*NQCHAR) separated by single spaces, at most
 * SCOPE_NARROW_MAX bytes.  Each of its scope-tokens must be one of CONFIGURED's (compared
 * byte for byte); repeats are allowed.  The result is the scope-tokens of CONFIGURED that
 * REQUESTED names, in CONFIGURED's order, each once: so "b a" and "a b a" narrow "a b c" to
 * the same "a b", and callers asking for the same part share one cache key.
 * Returns 0 and stores in *RET_SCOPE either CONFIGURED itself (REQUESTED names every
 * scope-token of it: no narrowing, the same cache key as a request without ?scope=) or the
 * narrowed scope written to BUF (SIZE bytes; strlen(CONFIGURED) + 1 always suffice).
 * On failure returns
 *   -EINVAL  REQUESTED is NULL, empty, longer than SCOPE_NARROW_MAX bytes, or not a scope
 *            (a leading, trailing or double space, a byte outside NQCHAR), or a NULL BUF,
 *   -EPERM   a scope-token of REQUESTED is not in CONFIGURED (always so when CONFIGURED is
 *            NULL or empty): the request is wider than the credential's scope,
 *   -E2BIG   the result does not fit in BUF, or CONFIGURED holds more than SCOPE_TOKENS_MAX
 *            scope-tokens,
 *   -ENOMEM,
 * and leaves *RET_SCOPE untouched (BUF may have been written). */
int scope_narrow(const char *configured, const char *requested, char *buf, size_t size, const char **ret_scope);
