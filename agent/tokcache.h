/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "agent/config.h"
#include "agent/oauth.h"
#include "ipc/apierror.h"

/* The token cache (DESIGN.md, A token request): entries keyed by (principal, which
 * implies the credential, and requested scope), expiry on CLOCK_BOOTTIME in
 * milliseconds, and single-flight: however many callers miss on one key, exactly one
 * fetch runs, and every one of them gets its answer.
 *
 * Serving rules (README, "Token lifetime"):
 *  - a token is served only while now < expires_at; an expired token is never served;
 *  - a request with min_ttl=S needs at least min(S, lifetime/2) seconds left, where
 *    lifetime is what the IdP granted; otherwise it waits for a fresh token (a token
 *    shorter than S is not refetched in a loop);
 *  - once less than a fifth of the lifetime is left, a hit also starts one background
 *    refresh; the old token keeps being served until the new one arrives;
 *  - a failed fetch never replaces a still-valid token; its error goes to the callers
 *    that were waiting for that fetch;
 *  - a forced refresh (a caller reported 401 or a refresh_status) drops the token unless
 *    it was obtained less than TOKCACHE_FORCE_MIN_AGE_MS ago, in which case that fresh
 *    token is the answer (two callers reporting the same stale token cause one fetch).
 *
 * Thread safety: every function takes the cache's mutex; waiters are called without it. */

#define TOKCACHE_MAX_ENTRIES 65536
#define TOKCACHE_FORCE_MIN_AGE_MS 2000

struct tokcache;
struct tokcache_entry;

/* What a caller gets: a token or an error. */
struct tokcache_answer {
        enum api_error error;
        char *access_token;               /* API_OK: malloc()ed, wiped by tokcache_answer_clear() */
        char *scope;                      /* API_OK: granted (or else requested) scope, may be NULL */
        uint64_t expires_at;              /* API_OK: ms on CLOCK_BOOTTIME */
        bool from_cache;                  /* API_OK: served without waiting for a fetch */
        char idp_error[OAUTH_ERROR_CODE_MAX + 1]; /* API_IDP_ERROR: the IdP's §5.2 code, may be "" */
        char description[160];            /* errors: safe to show the caller */
};

/* Wipes and frees what A holds and zeroes it.  Accepts NULL. */
void tokcache_answer_clear(struct tokcache_answer *a);

/* Deep copy of SRC into *DST.  Returns 0 or -ENOMEM (*DST zeroed). */
int tokcache_answer_copy(const struct tokcache_answer *src, struct tokcache_answer *dst);

/* A caller waiting for a fetch.  DONE is called exactly once, from the thread that
 * completed the fetch, without the cache lock held; ANSWER is valid only during the call. */
struct tokcache_waiter {
        struct tokcache_waiter *next;
        void (*done)(struct tokcache_waiter *w, const struct tokcache_answer *answer);
};

/* Starts a fetch for entry E (principal P, requested SCOPE which may be NULL) that ends
 * with exactly one tokcache_complete(E) call, from any thread.  Called with the cache lock
 * held: must not block and must not call back into the cache.  Returns 0 or a negative
 * errno (-EBUSY: too many fetches in flight). */
typedef int (*tokcache_fetch_fn)(void *userdata, struct tokcache_entry *e, const struct config_principal *p,
                                 const char *scope);

/* Returns a new empty cache that starts fetches with FETCH(USERDATA, …), or NULL on ENOMEM. */
struct tokcache *tokcache_new(tokcache_fetch_fn fetch, void *userdata);

/* Frees C with every entry, wiping tokens.  No fetch may be in flight.  Accepts NULL. */
void tokcache_free(struct tokcache *c);

/* Looks up (P, SCOPE) at time NOW_MS (CLOCK_BOOTTIME, ms) for a caller that wants at least
 * MIN_TTL seconds left, or a forced refresh when FORCE_REFRESH.
 * Returns 0 on a hit: *RET holds a copy of the token (from_cache set).
 * Returns -EINPROGRESS when the caller must wait: W was queued and W->done will be called
 * exactly once with the answer of the fetch (started now or already running).
 * Returns -ENOSPC when the cache is full, -ENOMEM, or the fetch function's error (-EBUSY);
 * then W was not queued and *RET is untouched. */
int tokcache_get(struct tokcache *c, const struct config_principal *p, const char *scope, uint32_t min_ttl,
                 bool force_refresh, uint64_t now_ms, struct tokcache_waiter *w, struct tokcache_answer *ret);

/* Ends the fetch of E with ANSWER (a token with expires_at, or an error) at time NOW_MS:
 * stores a token, then calls every waiter of E.  ANSWER is not consumed. */
void tokcache_complete(struct tokcache *c, struct tokcache_entry *e, const struct tokcache_answer *answer,
                       uint64_t now_ms);

/* After a configuration reload: for every entry, MAP(USERDATA, principal, scope) returns the
 * principal of the new configuration that takes over its token, or NULL when what defines
 * the token changed.  Mapped entries keep their token and go on; the others lose their token
 * and are removed, or, when a fetch for them is in flight, are detached (never found again,
 * their waiters still answered).  Returns the number of entries kept. */
size_t tokcache_rebind(struct tokcache *c,
                       const struct config_principal *(*map)(void *userdata, const struct config_principal *old,
                                                             const char *scope),
                       void *userdata);

/* Number of entries, and of them how many hold a token that is valid at NOW_MS. */
void tokcache_stats(struct tokcache *c, uint64_t now_ms, size_t *ret_entries, size_t *ret_valid);

/* CLOCK_BOOTTIME now, in milliseconds. */
uint64_t now_boottime_ms(void);
