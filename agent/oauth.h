/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "agent/config.h"
#include "secmem.h"

struct curlpool;

/* The OAuth 2.0 client: the client-credentials grant (RFC 6749 §4.4) with
 * client_secret_basic or client_secret_post (§2.3.1), or private_key_jwt (RFC 7523 §2.2, a
 * client assertion signed elsewhere: agent/jwt.h), one authentication method per request.
 * libcurl with TLS verification always on; redirects never followed; response capped at
 * OAUTH_RESPONSE_MAX bytes. */

#define OAUTH_RESPONSE_MAX (64 * 1024)
#define OAUTH_TOKEN_MAX (16 * 1024)       /* longest access_token accepted, bytes */
#define OAUTH_ERROR_CODE_MAX 64           /* longest §5.2 error code passed on */
#define OAUTH_RETRY_AFTER_MAX 3600        /* s: a longer Retry-After is taken as this */

enum oauth_outcome {
        OAUTH_OK = 0,
        OAUTH_IDP_ERROR,   /* the token endpoint answered a §5.2 error; error_code is set */
        OAUTH_BAD_RESPONSE,/* not a usable §5.1 answer: HTML, bad JSON, 3xx, 5xx, wrong token_type, … */
        OAUTH_UNREACHABLE, /* DNS, connection refused, TLS failure */
        OAUTH_TIMEOUT,     /* connect or total timeout, or too slow */
        OAUTH_LOCAL_ERROR, /* out of memory, secret too long, … */
};

struct oauth_result {
        enum oauth_outcome outcome;
        long http_status;                 /* 0 when no answer was received */
        /* OAUTH_OK: */
        char *access_token;               /* malloc()ed; wipe with free_wiped() */
        uint32_t expires_in;              /* s, after the rules of oauth_parse_token_response() */
        char *scope;                      /* granted scope from the response, or NULL when absent */
        /* OAUTH_IDP_ERROR: the §5.2 "error" value, only %x20-21/%x23-5B/%x5D-7E, capped */
        char error_code[OAUTH_ERROR_CODE_MAX + 1];
        /* HTTP 429 and 503 with a usable Retry-After (oauth_apply_retry_after()): the seconds to
         * wait, 1 … OAUTH_RETRY_AFTER_MAX; otherwise 0 */
        uint32_t retry_after;
        /* everything but OAUTH_OK: a short English description safe to show the caller
         * (never the raw body, a secret or a token) */
        char description[160];
};

/* Releases what R holds (wiping the access token) and zeroes it.  Accepts NULL. */
void oauth_result_clear(struct oauth_result *r);

struct oauth_request {
        const char *token_url;
        enum client_auth client_auth;
        const char *client_id;
        const struct secbuf *client_secret; /* basic and post only; NULL for private_key_jwt */
        const char *client_assertion;     /* private_key_jwt only: the signed JWT (a credential for
                                             its lifetime: keep it in locked memory); else NULL */
        const char *scope;                /* may be NULL */
        const char *ca_file;              /* may be NULL: libcurl's default bundle */
        bool allow_insecure_loopback;     /* permit http:// to 127.0.0.0/8 or ::1 */
        uint32_t connect_timeout;         /* s */
        uint32_t timeout;                 /* s, whole transfer */
        uint32_t default_ttl;             /* s, when expires_in is absent */
        uint32_t max_ttl;                 /* s, clamp */
        /* Extra parameters of the token request (README, [credential]); each may be NULL: */
        const char *audience;             /* one "audience" parameter */
        const char *resource;             /* RFC 8707 resource indicators separated by single
                                             spaces, each sent as its own "resource" parameter */
        const char *token_params;         /* static pairs in oauth_token_params_parse()'s normal
                                             form "key=value key=value" */
        struct curlpool *pool;            /* connection reuse (agent/curlpool.h); NULL: a
                                             connection of its own, closed after the transfer */
};

/* Caps on token_params (and, for the whole text, on resource: MSG_PARAMS_MAX). */
#define OAUTH_PARAMS_MAX 4096             /* bytes of the normal form */
#define OAUTH_PARAMS_PAIRS_MAX 64

/* Parses a token_params text: pairs "key=value" separated by runs of spaces, tabs or '&'.
 * A key is 1 or more bytes of visible ASCII (%x21-7E) other than '=' and '&'; the value is
 * everything after the first '=' up to the separator (visible ASCII other than '&', may be
 * empty).  Keys and values are taken literally (no percent-decoding): the request body
 * form-urlencodes them.  Refused: a pair without '=' or with an empty key, another byte, a
 * key used twice, more than OAUTH_PARAMS_PAIRS_MAX pairs, and a key that the grant sets
 * itself, compared case-insensitively: grant_type, client_id, client_secret, scope,
 * resource, audience and every key starting with client_assertion.
 * Returns 0 and the normal form (the pairs joined by single spaces; "" for a text without
 * pairs) in a new malloc()ed *RET, -EMSGSIZE when that would be longer than
 * OAUTH_PARAMS_MAX bytes, -EINVAL with an English sentence in WHY (WHY_SIZE bytes; a key
 * is quoted escaped, log_escape()), -ENOMEM.  *RET untouched on failure.  Pure. */
int oauth_token_params_parse(const char *text, char **ret, char *why, size_t why_size);

/* Appends S (LEN bytes) to OUT encoded as application/x-www-form-urlencoded per RFC 6749
 * Appendix B / HTML5: ASCII alphanumerics and "*-._" kept, space → "+", every other byte
 * → "%XX" (upper-case hex; "~" too).  Returns 0 or -EMSGSIZE when OUT is too small (OUT is
 * then unchanged), -EINVAL when S is NULL with LEN > 0. */
int oauth_form_urlencode(const void *s, size_t len, struct secbuf *out);

/* Builds the value of the Authorization header for client_secret_basic (RFC 6749 §2.3.1):
 * "Basic " + Base64(urlencode(CLIENT_ID) ":" urlencode(SECRET)), with OpenSSL's Base64 (one
 * line, no newline), into a new secbuf stored in *RET (free with secbuf_free()).  Returns 0,
 * -EMSGSIZE (the result would not fit in one secbuf), -ENOMEM, or -EINVAL for a NULL
 * argument. */
int oauth_basic_authorization(const char *client_id, const struct secbuf *secret, struct secbuf **ret);

/* Builds the application/x-www-form-urlencoded body of the token request into a new secbuf:
 * "grant_type=client_credentials" [+ "&scope=…"] [+ "&audience=…"] [+ "&resource=…" for
 * each resource indicator] [+ "&KEY=VALUE" for each token_params pair, in their order,
 * both form-urlencoded] and then, for CLIENT_AUTH_POST,
 * "&client_id=…&client_secret=…", for CLIENT_AUTH_PRIVATE_KEY_JWT
 * "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer
 * &client_assertion=…" (RFC 7523 §2.2; no client_id: the assertion's sub names the client).
 * A NULL or empty scope sends no scope parameter; for CLIENT_AUTH_BASIC the body holds
 * neither client id nor secret.  An empty audience, resource or token_params sends nothing.
 * Returns 0, -EMSGSIZE, -ENOMEM, or -EINVAL (CLIENT_AUTH_POST without client id or secret,
 * CLIENT_AUTH_PRIVATE_KEY_JWT without an assertion or with a secret, an assertion with basic
 * or post: exactly one method; token_params that oauth_token_params_parse() refuses or that
 * are not in its normal form; a resource list with an empty item). */
int oauth_token_request_body(const struct oauth_request *req, struct secbuf **ret);

/* Parses a token endpoint answer (HTTP status HTTP_STATUS, Content-Type CONTENT_TYPE which
 * may be NULL, BODY of LEN bytes) per RFC 6749 §5.1/§5.2 into *RET, which is zeroed first
 * (not freed: call oauth_result_clear() on a result that is being reused).
 * Rules (documented in the README):
 *  - The body must be exactly one JSON value (json-c, strict, UTF-8 checked, nesting ≤ 16):
 *    leading/trailing JSON whitespace is allowed, anything else after it (a second
 *    object, a NUL) is malformed.  The Content-Type need not say JSON (some IdPs send
 *    text/plain); it only picks the description of a body that does not parse.  A body
 *    longer than OAUTH_RESPONSE_MAX → OAUTH_BAD_RESPONSE.
 *  - 200 with a JSON object: access_token a non-empty string ≤ OAUTH_TOKEN_MAX of
 *    visible ASCII (%x21-7E: no space, no control character, no NUL); token_type "Bearer"
 *    compared case-insensitively, anything else or missing → OAUTH_BAD_RESPONSE; expires_in
 *    a JSON integer, a finite JSON number (truncated toward zero: below 1 is zero), or a
 *    string of 1–20 ASCII digits (no sign, space or unit; a longer string is refused);
 *    absent or null → DEFAULT_TTL; zero or negative → OAUTH_BAD_RESPONSE; NaN/±Infinity,
 *    booleans, arrays, objects → OAUTH_BAD_RESPONSE; larger than MAX_TTL (including values
 *    that overflow int64/uint64, which json-c saturates) → MAX_TTL; DEFAULT_TTL is clamped
 *    to MAX_TTL as well.  scope: absent or null → NULL; a string of printable ASCII
 *    (%x20-7E) ≤ OAUTH_TOKEN_MAX bytes → copied (also when empty); anything else →
 *    OAUTH_BAD_RESPONSE.  Other members are ignored.
 *  - 4xx (400, 401, 429, …) with a JSON object holding a string "error" → OAUTH_IDP_ERROR with
 *    that code sanitised: bytes outside %x20-21/%x23-5B/%x5D-7E dropped, the rest capped at
 *    OAUTH_ERROR_CODE_MAX; an "error" that sanitises to nothing counts as absent.
 *  - anything else (HTML, truncated JSON, 3xx, 5xx, 2xx other than 200, a 4xx without a
 *    usable "error") → OAUTH_BAD_RESPONSE.
 * The description never quotes the body, except the sanitised error code.
 * Returns 0 when *RET was filled (whatever the outcome), -ENOMEM otherwise (then *RET says
 * OAUTH_LOCAL_ERROR "out of memory" and owns nothing).
 * Pure: no I/O, no logging; takes untrusted bytes (fuzzed). */
int oauth_parse_token_response(long http_status, const char *content_type, const uint8_t *body, size_t len,
                               uint32_t default_ttl, uint32_t max_ttl, struct oauth_result *ret);

/* Parses the value of a Retry-After header (RFC 9110 §10.2.3) received at NOW (Unix time, s):
 * delay-seconds (1*DIGIT) or an HTTP-date, the latter read with libcurl's curl_getdate()
 * (IMF-fixdate, and the obsolete RFC 850 and asctime forms).  Whitespace around the value is
 * allowed.  The wait is clamped to 1 … OAUTH_RETRY_AFTER_MAX: "0" and dates not in the
 * future give 1, anything longer (however many digits) the cap.  Returns 0 with the seconds in
 * *RET, or -EINVAL (*RET untouched) for NULL, an empty value or one of neither form ("-5",
 * "1.5", "soon").  Pure: no I/O, no logging; takes untrusted bytes. */
int oauth_parse_retry_after(const char *value, time_t now, uint32_t *ret);

/* For an answer with HTTP status 429 (Too Many Requests) or 503 (Service Unavailable) that
 * oauth_parse_token_response() put in R: the IdP asks to come back later.  R becomes
 * OAUTH_IDP_ERROR with the IdP's own §5.2 code when it sent one, "temporarily_unavailable"
 * otherwise (the RFC 6749 §4.1.2.1 name for it); RETRY_AFTER, the value of the answer's
 * Retry-After header (NULL when absent), is parsed with oauth_parse_retry_after() at NOW into
 * R's retry_after (an unusable value counts as absent), and the description says the status
 * and the wait.  Other statuses: R is left alone. */
void oauth_apply_retry_after(struct oauth_result *r, const char *retry_after, time_t now);

/* Runs one token request with libcurl (blocking; call from a worker thread).  The Basic
 * header and the body live in locked secbufs and are wiped when the transfer ends; no
 * libcurl option that copies the secret into libcurl's heap is used.  ABORT, if not NULL,
 * is polled during the transfer (libcurl's progress callback: at least about once a
 * second): when it becomes non-zero the transfer stops with OAUTH_TIMEOUT.  Fills *RET
 * (zeroed first, as for oauth_parse_token_response()).  TOKEN_URL must be https, or http
 * to an IP literal in 127.0.0.0/8 or [::1] with ALLOW_INSECURE_LOOPBACK, and carry no user
 * information; otherwise OAUTH_LOCAL_ERROR without any connection.  No proxy, no
 * redirect, HTTP/1.1, TLS ≥ 1.2; with CA_FILE only that bundle is trusted.
 * Basic and post need CLIENT_SECRET, private_key_jwt needs CLIENT_ASSERTION (and sends no
 * Authorization header); otherwise OAUTH_LOCAL_ERROR "incomplete token request".
 * With POOL the transfer runs in the pool's thread over a kept connection when there is
 * one (agent/curlpool.h); every TLS context gets SSL_OP_CLEANSE_PLAINTEXT either way.
 * Returns 0 when *RET holds an outcome, -ENOMEM otherwise (then *RET also says
 * OAUTH_LOCAL_ERROR "out of memory").  Needs oauth_global_init() once per process. */
int oauth_fetch(const struct oauth_request *req, const volatile int *abort, struct oauth_result *ret);

/* curl_global_init_mem(CURL_GLOBAL_DEFAULT, …) with allocator wrappers that wipe every
 * block libcurl frees (or leaves behind in a realloc), so libcurl's copies of request and
 * answer do not outlive a transfer in freed heap.  Call it before anything else in the
 * process initialises libcurl (otherwise it is a no-op for the allocator).  Returns 0 or
 * -EIO. */
int oauth_global_init(void);
void oauth_global_cleanup(void);
