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
 *  - proactive refresh: from refresh_at on, a hit also starts one background fetch; the old
 *    token keeps being served until the new one arrives.  refresh_at is obtained_at + the
 *    credential's refresh_at percent of the lifetime, moved by a jitter of up to ±5 % of the
 *    lifetime (a function of the key and obtained_at, so keys fetched together do not
 *    refresh together), and never later than expires_at - min(refresh_margin, lifetime/4)
 *    (so a 5 s token is refreshed after 3.75 s at the latest, not in a loop);
 *  - a failed fetch never replaces a still-valid token: that token keeps being served, marked
 *    stale, and the callers that waited for the fetch (min_ttl) get it too;
 *  - backoff (per key, after a fetch that failed at the IdP: API_IDP_ERROR or API_IDP_TIMEOUT):
 *    no fetch starts for the key before not_before; meanwhile callers without a valid token
 *    get that fetch's error at once (retry_after says how long is left).  Transient failures
 *    (5xx, timeouts, unreachable, bad or empty answers, any other §5.2 code) wait
 *    TOKCACHE_BACKOFF_MIN_MS doubling per consecutive failure up to TOKCACHE_BACKOFF_MAX_MS,
 *    each less a jitter of up to a quarter, and at least the IdP's Retry-After.  Permanent
 *    §5.2 errors (invalid_client, unauthorized_client, invalid_scope, unsupported_grant_type)
 *    wait TOKCACHE_PERMANENT_BACKOFF_MS (less the same jitter); except that the first
 *    invalid_client waits only TOKCACHE_BACKOFF_MIN_MS, so that one more fetch (which reads
 *    the secret from the token again, or signs a new assertion) runs before the long wait,
 *    in case the secret was just rotated.  A token resets the backoff; so does a reload
 *    (tokcache_rebind()).  Other failures (hsm_unavailable, server_busy) cause no backoff;
 *  - a forced refresh (a caller reported 401 or a refresh_status) drops the token only if it
 *    is still the one the caller was served: the caller names it by its fingerprint, or,
 *    without one, it is the one unless it was obtained less than TOKCACHE_FORCE_MIN_AGE_MS
 *    ago (two callers reporting the same stale token cause one fetch).  Otherwise, and
 *    within TOKCACHE_FORCE_INTERVAL_MS of the last forced refresh of the key, the current
 *    token is the answer.  During a backoff the token is kept and the refresh is answered
 *    with the backoff's error.
 *
 * Thread safety: every function takes the cache's mutex; waiters are called without it. */

#define TOKCACHE_MAX_ENTRIES 65536
#define TOKCACHE_FORCE_MIN_AGE_MS 2000
#define TOKCACHE_FORCE_INTERVAL_MS 2000      /* at most one forced refresh per key in this time */
#define TOKCACHE_REFRESH_AT_DEFAULT 80       /* percent of the lifetime, when the credential says 0 */
#define TOKCACHE_REFRESH_JITTER_PERMILLE 50  /* refresh_at moves by up to ± this much of the lifetime */
#define TOKCACHE_BACKOFF_MIN_MS 1000         /* first wait after a transient failure */
#define TOKCACHE_BACKOFF_MAX_MS 60000        /* cap of the doubling */
#define TOKCACHE_PERMANENT_BACKOFF_MS 300000 /* wait after a permanent §5.2 error */
#define TOKCACHE_FP_LEN 8                    /* hex digits of a token fingerprint (log_fingerprint()) */

struct tokcache;
struct tokcache_entry;

/* What a caller gets: a token or an error. */
struct tokcache_answer {
        enum api_error error;
        char *access_token;               /* API_OK: malloc()ed, wiped by tokcache_answer_clear() */
        char *scope;                      /* API_OK: granted (or else requested) scope, may be NULL */
        uint64_t expires_at;              /* API_OK: ms on CLOCK_BOOTTIME */
        bool from_cache;                  /* served without waiting for a fetch (a token, or a
                                             backoff's error) */
        bool stale;                       /* API_OK: the refresh of this still-valid token failed */
        uint32_t retry_after;             /* errors: s before the agent asks the token endpoint
                                             again for this key (0: no backoff).  In the answer
                                             given to tokcache_complete(): the token endpoint's
                                             Retry-After in s, 0 when it sent none */
        char idp_error[OAUTH_ERROR_CODE_MAX + 1]; /* API_IDP_ERROR: the IdP's §5.2 code, may be "" */
        char description[160];            /* errors: safe to show the caller */
        char fingerprint[TOKCACHE_FP_LEN + 1]; /* API_OK: the token's log fingerprint (net computes it,
                                             log_fingerprint(); given to tokcache_complete() with the
                                             token and stored with it); "" otherwise */
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
 * MIN_TTL seconds left, or a forced refresh when FORCE_REFRESH (as tokcache_force_refresh()
 * without a fingerprint).  The credential's refresh_at and refresh_margin are read from
 * P->credential.
 * Returns 0 when the answer is there at once: *RET holds a copy of the token (from_cache
 * set; stale when its refresh failed), or, while the key backs off after a failed fetch,
 * that fetch's error (from_cache set, retry_after the seconds left, rounded up).
 * Returns -EINPROGRESS when the caller must wait: W was queued and W->done will be called
 * exactly once with the answer of the fetch (started now or already running).
 * Returns -ENOSPC when the cache is full, -ENOMEM, or the fetch function's error (-EBUSY);
 * then W was not queued and *RET is untouched. */
int tokcache_get(struct tokcache *c, const struct config_principal *p, const char *scope, uint32_t min_ttl,
                 bool force_refresh, uint64_t now_ms, struct tokcache_waiter *w, struct tokcache_answer *ret);

/* A forced refresh of (P, SCOPE) at NOW_MS: a caller reports that the token it was served was
 * refused.  SERVED_FP is that token's fingerprint (TOKCACHE_FP_LEN lower-case hex digits, as
 * log_fingerprint() writes), or NULL when the caller did not say (then a token obtained less
 * than TOKCACHE_FORCE_MIN_AGE_MS ago counts as another one).  The current token is dropped
 * and a fetch started only when it is the one that was served, no forced refresh of the key
 * ran in the last TOKCACHE_FORCE_INTERVAL_MS, and the key is not backing off; otherwise the
 * current token (or the backoff's error) is the answer.  Returns as tokcache_get(). */
int tokcache_force_refresh(struct tokcache *c, const struct config_principal *p, const char *scope,
                           const char *served_fp, uint64_t now_ms, struct tokcache_waiter *w,
                           struct tokcache_answer *ret);

/* Ends the fetch of E with ANSWER (a token with expires_at, or an error with, for
 * API_IDP_ERROR, the IdP's §5.2 code in idp_error and its Retry-After in retry_after) at time
 * NOW_MS: stores a token, or starts the key's backoff, then calls every waiter of E with the
 * token, or with the still-valid token marked stale, or with the error (retry_after set to
 * the backoff in seconds).  ANSWER is not consumed. */
void tokcache_complete(struct tokcache *c, struct tokcache_entry *e, const struct tokcache_answer *answer,
                       uint64_t now_ms);

/* After a configuration reload: for every entry, MAP(USERDATA, principal, scope) returns the
 * principal of the new configuration that takes over its token, or NULL when what defines
 * the token changed.  Mapped entries keep their token and go on (their backoff is cleared and
 * their refresh time follows the new credential's refresh_at); the others lose their token
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
