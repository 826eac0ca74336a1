/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "agent/curlpool.h"

/* Authorization server metadata (issue 4, item 7): a [credential] with `issuer = https://…`
 * instead of token_url has its token endpoint discovered by the net process, from the RFC
 * 8414 document (ISSUER's host + /.well-known/oauth-authorization-server + ISSUER's path)
 * or, when that is not served, the OpenID Connect Discovery 1.0 one (ISSUER +
 * /.well-known/openid-configuration).  The document is fetched once per issuer and kept
 * for the life of the net process; after a failure it is fetched again on a later request,
 * with backoff (DISCOVERY_BACKOFF_MIN_MS doubling to DISCOVERY_BACKOFF_MAX_MS). */

#define DISCOVERY_DOCUMENT_MAX (128 * 1024)     /* bytes of a metadata document */
#define DISCOVERY_METHODS_MAX 64                /* token_endpoint_auth_methods_supported entries kept */
#define DISCOVERY_TIMEOUT_MAX 10                /* s, whole GET of one document (below the front's grace) */
#define DISCOVERY_BACKOFF_MIN_MS 1000
#define DISCOVERY_BACKOFF_MAX_MS 60000
#define DISCOVERY_CACHE_MAX 4096                /* issuers remembered (one per credential at most) */
#define DISCOVERY_WHY_MAX 256                   /* == MSG_TEXT_MAX: descriptions go to callers */

/* What credagent uses of a metadata document. */
struct discovery_doc {
        char *issuer;                   /* equal to the configured issuer */
        char *token_endpoint;           /* https (http only to a loopback literal, when allowed) */
        char **auth_methods;            /* token_endpoint_auth_methods_supported, NULL-terminated;
                                           NULL when the document has no such member */
};

/* Frees what D holds and zeroes it.  Accepts NULL and a zeroed struct. */
void discovery_doc_clear(struct discovery_doc *d);

/* The metadata name of client_auth A (RFC 8414 §2, OIDC Discovery §3):
 * "client_secret_basic", "client_secret_post", "private_key_jwt"; "?" out of range. */
const char *discovery_auth_method_name(enum client_auth a);

/* True when D allows client_auth A: its token_endpoint_auth_methods_supported lists the
 * method, or it has no such list (not checked then). */
bool discovery_allows(const struct discovery_doc *d, enum client_auth a);

/* The two well-known URLs of ISSUER (an https or http URL without query or fragment):
 * RFC 8414 §3.1 inserts the well-known path between the host and the issuer's path
 * (https://h/t → https://h/.well-known/oauth-authorization-server/t); OpenID Connect
 * Discovery §4 appends it (https://h/t → https://h/t/.well-known/openid-configuration).
 * A trailing "/" of the issuer's path is dropped first.  Built with libcurl's URL API.
 * Returns 0 with two malloc()ed strings, -EINVAL (not such a URL), -ENOMEM; the outputs
 * are untouched on failure. */
int discovery_urls(const char *issuer, char **ret_rfc8414, char **ret_oidc);

/* Parses the metadata document BODY (LEN bytes) for the configured ISSUER into *RET.
 * The body must be exactly one JSON object (json-c, strict, UTF-8, nesting ≤ 16, at most
 * DISCOVERY_DOCUMENT_MAX bytes); "issuer" a string identical to ISSUER (RFC 8414 §3.3, byte
 * for byte); "token_endpoint" a string of at most MSG_URL_MAX bytes that is an https URL
 * without user information or fragment (or http to a loopback IP literal when
 * ALLOW_INSECURE_LOOPBACK), kept as libcurl's URL parser writes it back (the URL that was
 * checked is the one used); "token_endpoint_auth_methods_supported", when present, an array
 * of strings (at most DISCOVERY_METHODS_MAX are kept).  Other members are ignored.
 * Returns 0 (RET filled; free with discovery_doc_clear()), -EBADMSG with an English
 * sentence in WHY (WHY_SIZE bytes; a value from the document is quoted escaped and capped,
 * log_escape()), or -ENOMEM.  *RET is zeroed on failure.  Pure: fuzzed. */
int discovery_parse(const char *issuer, bool allow_insecure_loopback, const uint8_t *body, size_t len,
                    struct discovery_doc *ret, char *why, size_t why_size);

/* One credential's discovery, as the net process has it from MSG_FETCH. */
struct discovery_request {
        const char *issuer;
        bool allow_insecure_loopback;
        const char *ca_file;            /* may be NULL: libcurl's default bundle */
        uint32_t connect_timeout;       /* s */
        uint32_t timeout;               /* s; capped at DISCOVERY_TIMEOUT_MAX per document */
        enum client_auth client_auth;   /* checked against the document's methods */
};

/* The net process's documents, one per issuer (and allow_insecure_loopback). */
struct discovery_cache;

/* POOL (may be NULL) carries the GETs.  Returns 0 and a new cache in *RET, or -ENOMEM. */
int discovery_cache_new(struct curlpool *pool, struct discovery_cache **ret);

/* Frees C (no lookup may be running).  Accepts NULL.  Returns NULL. */
struct discovery_cache *discovery_cache_free(struct discovery_cache *c);

/* The token endpoint for REQ (blocking; call from a worker thread): from the cache, or
 * fetched now (one fetch per issuer at a time: concurrent callers wait for it).  ABORT, if
 * not NULL, is polled: non-zero ends the wait and the transfer.
 * Returns 0 and a malloc()ed URL in *RET_ENDPOINT, or a negative errno with a description
 * for the caller in WHY (WHY_SIZE bytes, DISCOVERY_WHY_MAX suffice), *RET_ENDPOINT untouched:
 *   -EHOSTUNREACH  the documents could not be fetched (unreachable, TLS, timeout, HTTP status
 *                  other than 200 at both URLs), or an earlier failure is still in its backoff,
 *   -EBADMSG       a document was fetched but is not usable (discovery_parse()),
 *   -EPERM         the credential's client_auth is not in token_endpoint_auth_methods_supported,
 *   -ECANCELED     ABORT was set,
 *   -ENOMEM, -EINVAL (a NULL or malformed issuer). */
int discovery_token_endpoint(struct discovery_cache *c, const struct discovery_request *req,
                             const volatile int *abort, char **ret_endpoint, char *why, size_t why_size);
