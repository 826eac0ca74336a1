/* SPDX-License-Identifier: ISC */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/curlpool.h"
#include "agent/oauth.h"
#include "build-config.h"
#include "log.h"

/* Deepest JSON nesting accepted in a token endpoint answer.  A §5.1/§5.2 answer is one
 * flat object; a little room is left for IdPs that add nested extras. */
#define OAUTH_JSON_DEPTH 16

/* Longest excerpt of a non-JSON body put in a debug log line, in bytes. */
#define OAUTH_LOG_EXCERPT 64

/* Stall limit: a transfer moving less than one byte per second for this long (or for the
 * whole timeout, when that is shorter) is abandoned as a timeout. */
#define OAUTH_LOW_SPEED_TIME 10

static const char grant_type_prefix[] = "grant_type=client_credentials";
/* RFC 7523 §2.2, already form-urlencoded. */
static const char assertion_type_param[] =
        "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=";

void oauth_result_clear(struct oauth_result *r) {
        if (!r)
                return;
        free_wiped(r->access_token);
        free(r->scope);
        secure_wipe(r, sizeof *r);
}

_printf_(3, 4) static void result_set(struct oauth_result *r, enum oauth_outcome outcome, const char *format, ...) {
        va_list ap;

        r->outcome = outcome;
        va_start(ap, format);
        (void) vsnprintf(r->description, sizeof r->description, format, ap);
        va_end(ap);
}

/* ---- application/x-www-form-urlencoded ---- */

static bool form_keep(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '*' || c == '-' ||
               c == '.' || c == '_';
}

/* Length of S (LEN bytes) once form-urlencoded. */
static size_t form_encoded_len(const unsigned char *s, size_t len) {
        size_t n = 0;

        for (size_t i = 0; i < len; i++)
                n += form_keep(s[i]) || s[i] == ' ' ? 1 : 3;
        return n;
}

int oauth_form_urlencode(const void *s, size_t len, struct secbuf *out) {
        static const char hex[] = "0123456789ABCDEF";
        const unsigned char *p = s;
        unsigned char *o;

        if (len > 0 && !p)
                return -EINVAL;
        if (form_encoded_len(p, len) > out->cap - out->len)
                return -EMSGSIZE;

        o = out->data + out->len;
        for (size_t i = 0; i < len; i++) {
                if (form_keep(p[i]))
                        *o++ = p[i];
                else if (p[i] == ' ')
                        *o++ = '+';
                else {
                        *o++ = '%';
                        *o++ = (unsigned char) hex[p[i] >> 4];
                        *o++ = (unsigned char) hex[p[i] & 0xf];
                }
        }
        out->len = (size_t) (o - out->data);
        out->data[out->len] = '\0';
        return 0;
}

int oauth_basic_authorization(const char *client_id, const struct secbuf *secret, struct secbuf **ret) {
        _cleanup_secbuf_ struct secbuf *plain = NULL, *value = NULL;
        static const char prefix[] = "Basic ";
        size_t plain_len, b64_len;
        int r, n;

        if (!client_id || !secret || !ret)
                return -EINVAL;

        /* RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined and
         * Base64'd, so a ':' in the client id cannot shift the split. */
        plain_len = form_encoded_len((const unsigned char *) client_id, strlen(client_id));
        if (plain_len > SECBUF_MAX / 2)
                return -EMSGSIZE;
        plain_len += 1 + form_encoded_len(secret->data, secret->len);
        if (plain_len > SECBUF_MAX / 2)
                return -EMSGSIZE;
        b64_len = 4 * ((plain_len + 2) / 3);
        if (sizeof prefix - 1 + b64_len > SECBUF_MAX)
                return -EMSGSIZE;

        plain = secbuf_new(plain_len > 0 ? plain_len : 1);
        if (!plain)
                return -ENOMEM;
        r = oauth_form_urlencode(client_id, strlen(client_id), plain);
        if (r < 0)
                return r;
        r = secbuf_append(plain, ":", 1);
        if (r < 0)
                return r;
        r = oauth_form_urlencode(secret->data, secret->len, plain);
        if (r < 0)
                return r;

        value = secbuf_new(sizeof prefix - 1 + b64_len);
        if (!value)
                return -ENOMEM;
        r = secbuf_append_str(value, prefix);
        if (r < 0)
                return r;
        /* EVP_EncodeBlock() writes 4 bytes per 3 (padded), no newlines, and a NUL: the
         * secbuf mapping always has room for cap + 1 bytes. */
        n = EVP_EncodeBlock(value->data + value->len, plain->data, (int) plain->len);
        if (n < 0 || (size_t) n != b64_len)
                return -EIO;
        value->len += (size_t) n;
        value->data[value->len] = '\0';

        *ret = TAKE_PTR(value);
        return 0;
}

/* ---- extra token request parameters ---- */

/* Keys a token_params pair may not use: the grant's own parameters. */
static bool key_reserved(const char *k, size_t n) {
        static const char *const reserved[] = { "grant_type", "client_id", "client_secret", "scope", "resource",
                                                "audience" };
        static const char assertion[] = "client_assertion";

        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (n == strlen(reserved[i]) && strncasecmp(k, reserved[i], n) == 0)
                        return true;
        return n >= sizeof assertion - 1 && strncasecmp(k, assertion, sizeof assertion - 1) == 0;
}

static bool is_param_separator(char c) {
        return c == ' ' || c == '\t' || c == '&';
}

int oauth_token_params_parse(const char *text, char **ret, char *why, size_t why_size) {
        _cleanup_free_ char *out = NULL;
        const char *keys[OAUTH_PARAMS_PAIRS_MAX];
        size_t key_len[OAUTH_PARAMS_PAIRS_MAX];
        size_t n_pairs = 0, o = 0, len;
        char q[4 * 32 + 8];

        if (!text || !ret)
                return -EINVAL;
        len = strlen(text);
        out = malloc(len + 1);
        if (!out)
                return -ENOMEM;

        for (const char *p = text; *p;) {
                size_t n, k;
                const char *eq;

                while (*p && is_param_separator(*p))
                        p++;
                if (!*p)
                        break;
                for (n = 0; p[n] && !is_param_separator(p[n]); n++)
                        if ((unsigned char) p[n] < 0x21 || (unsigned char) p[n] > 0x7e) {
                                (void) snprintf(why, why_size, "byte 0x%02x is not allowed: keys and values are visible "
                                                "ASCII, pairs are separated by spaces or '&'", (unsigned char) p[n]);
                                return -EINVAL;
                        }
                eq = memchr(p, '=', n);
                if (!eq || eq == p) {
                        (void) snprintf(why, why_size, "\"%s\" is not a pair key=value",
                                        log_escape(p, n, 32, q, sizeof q));
                        return -EINVAL;
                }
                k = (size_t) (eq - p);
                if (key_reserved(p, k)) {
                        (void) snprintf(why, why_size, "\"%s\" is a parameter of the grant itself (grant_type, "
                                        "client_id, client_secret, client_assertion*, scope, resource and audience "
                                        "are set by credagent)", log_escape(p, k, 32, q, sizeof q));
                        return -EINVAL;
                }
                for (size_t i = 0; i < n_pairs; i++)
                        if (key_len[i] == k && memcmp(keys[i], p, k) == 0) {
                                (void) snprintf(why, why_size, "\"%s\" is given twice",
                                                log_escape(p, k, 32, q, sizeof q));
                                return -EINVAL;
                        }
                if (n_pairs == OAUTH_PARAMS_PAIRS_MAX) {
                        (void) snprintf(why, why_size, "more than %d pairs", OAUTH_PARAMS_PAIRS_MAX);
                        return -EINVAL;
                }
                keys[n_pairs] = p;
                key_len[n_pairs] = k;
                n_pairs++;
                if (o > 0)
                        out[o++] = ' ';
                memcpy(out + o, p, n);
                o += n;
                p += n;
        }
        out[o] = '\0';
        if (o > OAUTH_PARAMS_MAX) {
                (void) snprintf(why, why_size, "longer than %d bytes", OAUTH_PARAMS_MAX);
                return -EMSGSIZE;
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* The audience, resource and token_params parameters: their length once encoded in *RET_LEN
 * (with each "&name="), after checking them.  Returns 0, -EINVAL, -EMSGSIZE or -ENOMEM. */
static int extras_len(const struct oauth_request *req, size_t *ret_len) {
        size_t len = 0;

        if (req->audience && req->audience[0]) {
                size_t n = strlen(req->audience);

                if (n > SECBUF_MAX)
                        return -EMSGSIZE;
                len += strlen("&audience=") + form_encoded_len((const unsigned char *) req->audience, n);
        }
        if (req->resource && req->resource[0]) {
                if (strlen(req->resource) > SECBUF_MAX)
                        return -EMSGSIZE;
                for (const char *p = req->resource;;) {
                        size_t n = strcspn(p, " ");

                        if (n == 0)
                                return -EINVAL; /* a leading, trailing or double space */
                        len += strlen("&resource=") + form_encoded_len((const unsigned char *) p, n);
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        }
        if (req->token_params && req->token_params[0]) {
                _cleanup_free_ char *normal = NULL;
                int r;

                r = oauth_token_params_parse(req->token_params, &normal, NULL, 0);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 || strcmp(normal, req->token_params) != 0)
                        return -EINVAL;
                for (const char *p = req->token_params;;) {
                        size_t n = strcspn(p, " "), k = strcspn(p, "=");

                        len += 1 + form_encoded_len((const unsigned char *) p, k) + 1 +
                               form_encoded_len((const unsigned char *) p + k + 1, n - k - 1);
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        }
        *ret_len = len;
        return 0;
}

/* Appends what extras_len() measured. */
static int extras_append(const struct oauth_request *req, struct secbuf *body) {
        int r = 0;

        if (req->audience && req->audience[0]) {
                r = secbuf_append_str(body, "&audience=");
                if (r >= 0)
                        r = oauth_form_urlencode(req->audience, strlen(req->audience), body);
        }
        if (r >= 0 && req->resource && req->resource[0])
                for (const char *p = req->resource; r >= 0;) {
                        size_t n = strcspn(p, " ");

                        r = secbuf_append_str(body, "&resource=");
                        if (r >= 0)
                                r = oauth_form_urlencode(p, n, body);
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        if (r >= 0 && req->token_params && req->token_params[0])
                for (const char *p = req->token_params; r >= 0;) {
                        size_t n = strcspn(p, " "), k = strcspn(p, "=");

                        r = secbuf_append(body, "&", 1);
                        if (r >= 0)
                                r = oauth_form_urlencode(p, k, body);
                        if (r >= 0)
                                r = secbuf_append(body, "=", 1);
                        if (r >= 0)
                                r = oauth_form_urlencode(p + k + 1, n - k - 1, body);
                        if (!p[n])
                                break;
                        p += n + 1;
                }
        return r;
}

int oauth_token_request_body(const struct oauth_request *req, struct secbuf **ret) {
        _cleanup_secbuf_ struct secbuf *body = NULL;
        bool with_scope, post, jwt;
        size_t len, extras;
        int r;

        if (!req || !ret)
                return -EINVAL;
        post = req->client_auth == CLIENT_AUTH_POST;
        jwt = req->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT;
        if (post && (!req->client_id || !req->client_secret))
                return -EINVAL;
        /* Exactly one authentication method (RFC 6749 §2.3). */
        if (jwt ? !req->client_assertion || !req->client_assertion[0] || req->client_secret : !!req->client_assertion)
                return -EINVAL;
        with_scope = req->scope && req->scope[0];

        len = sizeof grant_type_prefix - 1;
        if (with_scope) {
                size_t n = strlen(req->scope);

                if (n > SECBUF_MAX)
                        return -EMSGSIZE;
                len += strlen("&scope=") + form_encoded_len((const unsigned char *) req->scope, n);
        }
        r = extras_len(req, &extras);
        if (r < 0)
                return r;
        len += extras;
        if (post) {
                size_t n = strlen(req->client_id);

                if (n > SECBUF_MAX || req->client_secret->len > SECBUF_MAX)
                        return -EMSGSIZE;
                len += strlen("&client_id=") + form_encoded_len((const unsigned char *) req->client_id, n);
                len += strlen("&client_secret=") + form_encoded_len(req->client_secret->data, req->client_secret->len);
        }
        if (jwt) {
                size_t n = strlen(req->client_assertion);

                if (n > SECBUF_MAX)
                        return -EMSGSIZE;
                len += strlen(assertion_type_param) + form_encoded_len((const unsigned char *) req->client_assertion, n);
        }
        if (len > SECBUF_MAX)
                return -EMSGSIZE;

        body = secbuf_new(len);
        if (!body)
                return -ENOMEM;
        r = secbuf_append_str(body, grant_type_prefix);
        if (r >= 0 && with_scope) {
                r = secbuf_append_str(body, "&scope=");
                if (r >= 0)
                        r = oauth_form_urlencode(req->scope, strlen(req->scope), body);
        }
        if (r >= 0)
                r = extras_append(req, body);
        if (r >= 0 && post) {
                r = secbuf_append_str(body, "&client_id=");
                if (r >= 0)
                        r = oauth_form_urlencode(req->client_id, strlen(req->client_id), body);
                if (r >= 0)
                        r = secbuf_append_str(body, "&client_secret=");
                if (r >= 0)
                        r = oauth_form_urlencode(req->client_secret->data, req->client_secret->len, body);
        }
        if (r >= 0 && jwt) {
                r = secbuf_append_str(body, assertion_type_param);
                if (r >= 0)
                        r = oauth_form_urlencode(req->client_assertion, strlen(req->client_assertion), body);
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(body);
        return 0;
}

/* ---- token endpoint answers ---- */

/* Visible ASCII (%x21-7E): an access token goes verbatim into "Authorization: Bearer". */
static bool is_visible_ascii(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e)
                        return false;
        return true;
}

/* Printable ASCII including space (%x20-7E), for scope lists. */
static bool is_printable_ascii(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] > 0x7e)
                        return false;
        return true;
}

static uint32_t clamp_ttl(uint64_t v, uint32_t max_ttl) {
        return v > max_ttl ? max_ttl : (uint32_t) v;
}

/* Applies the expires_in rules of oauth_parse_token_response() to V (NULL when absent).
 * Returns true and stores the lifetime in *RET, or false when V is unusable. */
static bool parse_expires_in(struct json_object *v, uint32_t default_ttl, uint32_t max_ttl, uint32_t *ret) {
        switch (json_object_get_type(v)) {
        case json_type_null:
                *ret = clamp_ttl(default_ttl, max_ttl);
                return true;

        case json_type_int: {
                /* json-c saturates integers that do not fit int64 (or uint64) at parse
                 * time, and json_object_get_int64() saturates a uint64 above INT64_MAX:
                 * an overflow shows up as INT64_MAX (clamped below) or INT64_MIN
                 * (negative, refused) rather than as errno. */
                int64_t i = json_object_get_int64(v);

                if (i <= 0)
                        return false;
                *ret = clamp_ttl((uint64_t) i, max_ttl);
                return true;
        }

        case json_type_double: {
                double d = json_object_get_double(v);

                if (!isfinite(d) || d < 1.0) /* NaN, ±inf, or truncating to zero or less */
                        return false;
                *ret = d >= (double) max_ttl ? max_ttl : (uint32_t) d;
                return true;
        }

        case json_type_string: {
                const char *s = json_object_get_string(v);
                size_t len = (size_t) json_object_get_string_len(v);
                uint64_t n = 0;

                if (len < 1 || len > 20)
                        return false;
                for (size_t i = 0; i < len; i++) {
                        if (s[i] < '0' || s[i] > '9')
                                return false;
                        if (n <= UINT32_MAX) /* past UINT32_MAX the value is clamped anyway */
                                n = n * 10 + (uint64_t) (s[i] - '0');
                }
                if (n == 0)
                        return false;
                *ret = clamp_ttl(n, max_ttl);
                return true;
        }

        default: /* boolean, object, array */
                return false;
        }
}

/* Keeps only the bytes RFC 6749 §5.2 allows in "error" (%x20-21 / %x23-5B / %x5D-7E), up
 * to OAUTH_ERROR_CODE_MAX of them.  Returns the length kept. */
static size_t sanitise_error_code(const char *s, size_t len, char ret[static OAUTH_ERROR_CODE_MAX + 1]) {
        size_t o = 0;

        for (size_t i = 0; i < len && o < OAUTH_ERROR_CODE_MAX; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\')
                        ret[o++] = (char) c;
        }
        ret[o] = '\0';
        return o;
}

/* True when the answer looks like JSON (by its Content-Type or its first byte), so that a
 * parse failure is reported as malformed JSON rather than as some other content. */
static bool looks_like_json(const char *content_type, const uint8_t *body, size_t len) {
        size_t i = 0;

        while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
                i++;
        if (i < len && (body[i] == '{' || body[i] == '['))
                return true;
        if (content_type) {
                size_t n = strcspn(content_type, "; \t");

                if ((n == 16 && strncasecmp(content_type, "application/json", 16) == 0) ||
                    (n >= 5 && strncasecmp(content_type + n - 5, "+json", 5) == 0))
                        return true;
        }
        return false;
}

/* Parses BODY as exactly one JSON value, nothing but it (leading and trailing JSON
 * whitespace aside).  Returns 0 with the value in *RET, -ENOMEM, or -EBADMSG. */
static int parse_json(const uint8_t *body, size_t len, struct json_object **ret) {
        struct json_tokener *tok;
        struct json_object *o;
        bool ok;
        int r = 0;

        if (len > INT32_MAX)
                return -EBADMSG;
        tok = json_tokener_new_ex(OAUTH_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, (const char *) body, (int) len);
        if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
                /* All of BODY was taken and the value is still open: tell json-c that the
                 * input ended (its documented way: one more call with the terminating NUL).
                 * That completes a bare top-level number and fails a truncated value. */
                o = json_tokener_parse_ex(tok, "", 1);
                ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == 0;
        } else
                ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len;
        if (!ok) {
                json_object_put(o);
                r = -EBADMSG;
        } else
                *ret = o;
        json_tokener_free(tok);
        return r;
}

static void describe_status(struct oauth_result *r, long status) {
        if (status >= 300 && status <= 399)
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered a redirect (not followed)");
        else if (status >= 200 && status <= 299)
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered HTTP %ld instead of 200", status);
        else if (status <= 0)
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint gave no HTTP status");
        else
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered HTTP %ld", status);
}

static int parse_error_answer(long status, struct json_object *o, struct oauth_result *r) {
        struct json_object *v;

        if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "error", &v) &&
            json_object_is_type(v, json_type_string) &&
            sanitise_error_code(json_object_get_string(v), (size_t) json_object_get_string_len(v), r->error_code) > 0) {
                result_set(r, OAUTH_IDP_ERROR, "token endpoint answered HTTP %ld: %s", status, r->error_code);
                return 0;
        }
        r->error_code[0] = '\0';
        result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered HTTP %ld without an OAuth error code", status);
        return 0;
}

static int parse_token_answer(struct json_object *o, uint32_t default_ttl, uint32_t max_ttl, struct oauth_result *r) {
        struct json_object *token, *type, *expires = NULL, *scope = NULL;
        const char *s;
        size_t len;
        uint32_t ttl;

        if (!json_object_object_get_ex(o, "access_token", &token) || json_object_is_type(token, json_type_null)) {
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered no access_token");
                return 0;
        }
        if (!json_object_is_type(token, json_type_string)) {
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered an access_token that is not a string");
                return 0;
        }
        s = json_object_get_string(token);
        len = (size_t) json_object_get_string_len(token);
        if (len == 0 || len > OAUTH_TOKEN_MAX || !is_visible_ascii(s, len)) {
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered an empty, oversized or non-ASCII access_token");
                return 0;
        }

        if (!json_object_object_get_ex(o, "token_type", &type) || !json_object_is_type(type, json_type_string) ||
            json_object_get_string_len(type) != 6 || strcasecmp(json_object_get_string(type), "Bearer") != 0) {
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered a token_type other than Bearer");
                return 0;
        }

        (void) json_object_object_get_ex(o, "expires_in", &expires);
        if (!parse_expires_in(expires, default_ttl, max_ttl, &ttl)) {
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered an unusable expires_in");
                return 0;
        }

        if (json_object_object_get_ex(o, "scope", &scope) && !json_object_is_type(scope, json_type_null)) {
                size_t n;

                if (!json_object_is_type(scope, json_type_string)) {
                        result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered a scope that is not a string");
                        return 0;
                }
                n = (size_t) json_object_get_string_len(scope);
                if (n > OAUTH_TOKEN_MAX || !is_printable_ascii(json_object_get_string(scope), n)) {
                        result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered an oversized or non-ASCII scope");
                        return 0;
                }
                r->scope = strndup(json_object_get_string(scope), n);
                if (!r->scope)
                        return -ENOMEM;
        }

        r->access_token = strndup(s, len);
        if (!r->access_token)
                return -ENOMEM;
        r->expires_in = ttl;
        r->outcome = OAUTH_OK;
        r->description[0] = '\0';
        return 0;
}

int oauth_parse_token_response(long http_status, const char *content_type, const uint8_t *body, size_t len,
                               uint32_t default_ttl, uint32_t max_ttl, struct oauth_result *ret) {
        struct json_object *o = NULL;
        int r;

        memset(ret, 0, sizeof *ret);
        ret->http_status = http_status;
        if (!body)
                len = 0;

        if (len > OAUTH_RESPONSE_MAX) {
                result_set(ret, OAUTH_BAD_RESPONSE, "token endpoint response too large");
                return 0;
        }

        if (http_status != 200 && !(http_status >= 400 && http_status <= 499)) {
                describe_status(ret, http_status);
                return 0;
        }

        r = len > 0 ? parse_json(body, len, &o) : -EBADMSG;
        if (r == -ENOMEM) {
                result_set(ret, OAUTH_LOCAL_ERROR, "out of memory");
                return r;
        }

        if (http_status != 200) {
                r = parse_error_answer(http_status, o, ret);
                json_object_put(o);
                return r;
        }

        if (!o) {
                if (len == 0)
                        result_set(ret, OAUTH_BAD_RESPONSE, "token endpoint answered an empty body");
                else if (looks_like_json(content_type, body, len))
                        result_set(ret, OAUTH_BAD_RESPONSE, "token endpoint answered malformed JSON");
                else
                        result_set(ret, OAUTH_BAD_RESPONSE, "token endpoint answered non-JSON content");
                return 0;
        }
        if (!json_object_is_type(o, json_type_object)) {
                result_set(ret, OAUTH_BAD_RESPONSE, "token endpoint answered JSON that is not an object");
                json_object_put(o);
                return 0;
        }

        r = parse_token_answer(o, default_ttl, max_ttl, ret);
        /* json-c's copies of the token die with the object; its allocator does not wipe,
         * so overwrite the access_token string before releasing it. */
        {
                struct json_object *token;

                if (json_object_object_get_ex(o, "access_token", &token) &&
                    json_object_is_type(token, json_type_string))
                        secure_wipe((char *) json_object_get_string(token), (size_t) json_object_get_string_len(token));
        }
        json_object_put(o);
        if (r < 0) {
                oauth_result_clear(ret);
                ret->http_status = http_status;
                result_set(ret, OAUTH_LOCAL_ERROR, "out of memory");
        }
        return r;
}

/* ---- Retry-After (RFC 9110 §10.2.3) ---- */

int oauth_parse_retry_after(const char *value, time_t now, uint32_t *ret) {
        const char *b, *e;
        uint64_t v = 0;
        char date[64];
        time_t t;

        if (!value)
                return -EINVAL;
        for (b = value; *b == ' ' || *b == '\t'; b++)
                ;
        for (e = b + strlen(b); e > b && (e[-1] == ' ' || e[-1] == '\t'); e--)
                ;
        if (b == e)
                return -EINVAL;
        if (strspn(b, "0123456789") == (size_t) (e - b)) {
                /* delay-seconds: saturating, so that any number of digits is just "long". */
                for (const char *c = b; c < e && v <= OAUTH_RETRY_AFTER_MAX; c++)
                        v = v * 10 + (uint64_t) (*c - '0');
        } else {
                /* An HTTP-date.  curl_getdate() reads the string to its NUL: copy the value. */
                if ((size_t) (e - b) >= sizeof date)
                        return -EINVAL;
                memcpy(date, b, (size_t) (e - b));
                date[e - b] = '\0';
                /* Every HTTP-date names its month (curl_getdate() would take "12 34" too). */
                if (!strpbrk(date, "JFMASOND"))
                        return -EINVAL;
                t = curl_getdate(date, NULL);
                if (t == (time_t) -1)
                        return -EINVAL;
                v = t > now ? (uint64_t) (t - now) : 0;
        }
        if (v < 1)
                v = 1;
        if (v > OAUTH_RETRY_AFTER_MAX)
                v = OAUTH_RETRY_AFTER_MAX;
        *ret = (uint32_t) v;
        return 0;
}

void oauth_apply_retry_after(struct oauth_result *r, const char *retry_after, time_t now) {
        uint32_t wait = 0;
        char code[OAUTH_ERROR_CODE_MAX + 1];
        long status = r->http_status;

        if (status != 429 && status != 503)
                return;
        if (oauth_parse_retry_after(retry_after, now, &wait) < 0)
                wait = 0;
        if (r->outcome == OAUTH_IDP_ERROR && r->error_code[0])
                memcpy(code, r->error_code, sizeof code);
        else
                strcpy(code, "temporarily_unavailable");
        oauth_result_clear(r);
        r->http_status = status;
        memcpy(r->error_code, code, sizeof r->error_code);
        r->retry_after = wait;
        if (wait > 0)
                result_set(r, OAUTH_IDP_ERROR, "token endpoint answered HTTP %ld: %s; Retry-After %" PRIu32 " s",
                           status, code, wait);
        else
                result_set(r, OAUTH_IDP_ERROR, "token endpoint answered HTTP %ld: %s", status, code);
}

/* ---- the transfer ---- */

/* What libcurl may still hold after a transfer, and what is done about it.
 *
 * libcurl copies the header list into its heap and, for HTTP/1.1, assembles the request
 * line, headers and (for a body this small) the body into one send buffer on its heap;
 * the download buffer holds the answer with the token.  oauth_global_init() installs
 * allocator wrappers that wipe every block libcurl frees or moves (realloc), and the
 * slist copies are wiped here as well, so those copies do not survive the transfer.
 * What remains outside our reach: OpenSSL's record buffers (requests are encrypted from
 * libcurl's buffer, but answers are decrypted in place, so the freed read buffer can still
 * hold the access token), kernel socket buffers (plaintext on http:// loopback), and stack
 * frames libcurl used.  The request is pinned to HTTP/1.1 so that no HPACK table (nghttp2,
 * not wiped) keeps the Authorization header.  A later change moves fetches into their own
 * process, which bounds what such residue can reach. */

struct response {
        struct secbuf *body;
        bool too_large;
};

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct response *resp = userdata;
        size_t n = size * nmemb;

        if (secbuf_append(resp->body, ptr, n) < 0) {
                resp->too_large = true;
                return 0; /* N > 0 here: anything but N makes libcurl stop */
        }
        return n;
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        const volatile int *abort = userdata;

        return abort && *abort ? 1 : 0;
}

/* True when BODY contains SECRET raw, form-urlencoded (as a post body carries it), or the
 * Base64 credentials of BASIC (may be NULL), or the client ASSERTION or its signature (for
 * private_key_jwt, SECRET is NULL): an answer that echoes the request. */
static bool echoes_credentials(const struct secbuf *body, const struct secbuf *secret, const struct secbuf *basic,
                               const char *assertion) {
        _cleanup_secbuf_ struct secbuf *enc = NULL;
        static const char prefix[] = "Basic ";

        if (assertion) {
                const char *sig = strrchr(assertion, '.');

                return memmem(body->data, body->len, assertion, strlen(assertion)) ||
                       (sig && sig[1] && memmem(body->data, body->len, sig + 1, strlen(sig + 1)));
        }
        if (memmem(body->data, body->len, secret->data, secret->len))
                return true;
        if (basic && basic->len > sizeof prefix - 1 &&
            memmem(body->data, body->len, basic->data + sizeof prefix - 1, basic->len - (sizeof prefix - 1)))
                return true;
        enc = secbuf_new(secret->len * 3 + 1);
        if (!enc || oauth_form_urlencode(secret->data, secret->len, enc) < 0)
                return true; /* cannot tell: assume it does */
        return memmem(body->data, body->len, enc->data, enc->len) != NULL;
}

static void slist_free_wiped(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        secure_wipe(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static int slist_add(struct curl_slist **l, const char *s) {
        struct curl_slist *n = curl_slist_append(*l, s);

        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

/* An IPv4 literal in 127.0.0.0/8 or the IPv6 literal ::1 (in brackets, as curl_url gives
 * it).  Host names, even "localhost", are not accepted: they go through resolution. */
static bool host_is_loopback_literal(const char *host) {
        struct in_addr a4;
        struct in6_addr a6;
        char buf[INET6_ADDRSTRLEN];
        size_t n = strlen(host);

        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (n < 3 || host[0] != '[' || host[n - 1] != ']' || n - 2 >= sizeof buf)
                return false;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Checks the token URL: https, or http to a loopback literal when ALLOW_INSECURE_LOOPBACK;
 * no user info.  Returns 0 with the parsed URL in *RET and the allowed protocols in
 * *RET_PROTOCOLS, -ENOMEM, or -EINVAL with R's description set. */
static int check_url(const char *url, bool allow_insecure_loopback, struct oauth_result *r, CURLU **ret,
                     const char **ret_protocols) {
        CURLU *u;
        char *scheme = NULL, *host = NULL, *user = NULL;
        CURLUcode uc;
        int ret_r = -EINVAL;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        uc = curl_url_set(u, CURLUPART_URL, url, 0);
        if (uc == CURLUE_OUT_OF_MEMORY) {
                ret_r = -ENOMEM;
                goto finish;
        }
        if (uc != CURLUE_OK) {
                result_set(r, OAUTH_LOCAL_ERROR, "token_url is not a valid URL");
                goto finish;
        }
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
                result_set(r, OAUTH_LOCAL_ERROR, "token_url has no scheme or host");
                goto finish;
        }
        uc = curl_url_get(u, CURLUPART_USER, &user, 0);
        if (uc != CURLUE_NO_USER) {
                result_set(r, OAUTH_LOCAL_ERROR, "token_url must not carry user information");
                goto finish;
        }
        if (strcasecmp(scheme, "https") == 0)
                *ret_protocols = "https";
        else if (strcasecmp(scheme, "http") == 0 && allow_insecure_loopback && host_is_loopback_literal(host))
                *ret_protocols = "http,https";
        else {
                result_set(r, OAUTH_LOCAL_ERROR,
                           "token_url must be https (http only to a loopback address with allow_insecure_loopback)");
                goto finish;
        }
        *ret = TAKE_PTR(u);
        ret_r = 0;
finish:
        curl_free(scheme);
        curl_free(host);
        curl_free(user);
        curl_url_cleanup(u);
        return ret_r;
}

/* Translates a failed transfer's CURLcode into an outcome and a description. */
static void result_from_curl(struct oauth_result *r, CURLcode cc, long os_errno, bool too_large) {
        switch (cc) {
        case CURLE_OPERATION_TIMEDOUT:
                result_set(r, OAUTH_TIMEOUT, "token request timed out");
                break;
        case CURLE_ABORTED_BY_CALLBACK:
                result_set(r, OAUTH_TIMEOUT, "token request aborted");
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
                result_set(r, OAUTH_UNREACHABLE, "token endpoint host name could not be resolved");
                break;
        case CURLE_COULDNT_CONNECT:
                if (os_errno == ECONNREFUSED)
                        result_set(r, OAUTH_UNREACHABLE, "token endpoint connection refused");
                else if (os_errno == ENETUNREACH || os_errno == EHOSTUNREACH)
                        result_set(r, OAUTH_UNREACHABLE, "token endpoint network unreachable");
                else
                        result_set(r, OAUTH_UNREACHABLE, "token endpoint connection failed");
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
                result_set(r, OAUTH_UNREACHABLE, "TLS certificate verification failed");
                break;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CIPHER:
        case CURLE_USE_SSL_FAILED:
                result_set(r, OAUTH_UNREACHABLE, "TLS handshake failed");
                break;
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
                result_set(r, OAUTH_LOCAL_ERROR, "CA file could not be loaded");
                break;
        case CURLE_SEND_ERROR:
                result_set(r, OAUTH_UNREACHABLE, "sending the token request failed");
                break;
        case CURLE_RECV_ERROR:
                result_set(r, OAUTH_UNREACHABLE, "receiving the token response failed");
                break;
        case CURLE_GOT_NOTHING:
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint closed the connection without answering");
                break;
        case CURLE_WRITE_ERROR:
                if (too_large)
                        result_set(r, OAUTH_BAD_RESPONSE, "token endpoint response too large");
                else
                        result_set(r, OAUTH_LOCAL_ERROR, "storing the token response failed");
                break;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_PARTIAL_FILE:
        case CURLE_BAD_CONTENT_ENCODING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_TOO_MANY_REDIRECTS:
                result_set(r, OAUTH_BAD_RESPONSE, "token endpoint answered malformed HTTP (%s)", curl_easy_strerror(cc));
                break;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
                result_set(r, OAUTH_LOCAL_ERROR, "token_url cannot be used (%s)", curl_easy_strerror(cc));
                break;
        default:
                result_set(r, OAUTH_LOCAL_ERROR, "token request failed (%s)", curl_easy_strerror(cc));
                break;
        }
}

#define SETOPT(h, opt, val)                                       \
        do {                                                      \
                if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) \
                        goto setopt_failed;                       \
        } while (0)

int oauth_fetch(const struct oauth_request *req, const volatile int *abort, struct oauth_result *ret) {
        _cleanup_secbuf_ struct secbuf *body = NULL, *basic = NULL, *auth_header = NULL;
        struct response resp = {};
        struct curl_slist *headers = NULL;
        CURLU *url = NULL;
        CURL *h = NULL;
        const char *protocols = NULL, *content_type = NULL;
        char errbuf[CURL_ERROR_SIZE] = "", url_esc[128];
        long status = 0, os_errno = 0, low_speed;
        CURLcode cc;
        int r;

        memset(ret, 0, sizeof *ret);
        if (!req || !req->token_url || !req->client_id ||
            (req->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT ? !req->client_assertion || req->client_secret
                                                            : !req->client_secret || req->client_assertion)) {
                result_set(ret, OAUTH_LOCAL_ERROR, "incomplete token request");
                return 0;
        }
        (void) log_escape(req->token_url, strlen(req->token_url), 96, url_esc, sizeof url_esc);

        r = check_url(req->token_url, req->allow_insecure_loopback, ret, &url, &protocols);
        if (r == -ENOMEM)
                goto oom;
        if (r < 0) {
                log_debug("token request to \"%s\" refused: %s", url_esc, ret->description);
                return 0;
        }

        r = oauth_token_request_body(req, &body);
        if (r >= 0 && req->client_auth == CLIENT_AUTH_BASIC) {
                r = oauth_basic_authorization(req->client_id, req->client_secret, &basic);
                if (r >= 0) {
                        auth_header = secbuf_new(strlen("Authorization: ") + basic->len);
                        if (!auth_header)
                                r = -ENOMEM;
                        else if ((r = secbuf_append_str(auth_header, "Authorization: ")) >= 0)
                                r = secbuf_append(auth_header, basic->data, basic->len);
                }
        }
        if (r == -ENOMEM)
                goto oom;
        if (r < 0) {
                result_set(ret, OAUTH_LOCAL_ERROR, "client id, secret, scope or extra parameters too long (or malformed) for a token request");
                goto finish;
        }

        resp.body = secbuf_new(OAUTH_RESPONSE_MAX);
        if (!resp.body)
                goto oom;

        /* Exactly one client authentication method: the Authorization header for basic,
         * the body parameters for post and private_key_jwt (RFC 6749 §2.3: "MUST NOT use more
         * than one"). */
        if ((auth_header && slist_add(&headers, (const char *) auth_header->data) < 0) ||
            slist_add(&headers, "Accept: application/json") < 0 ||
            slist_add(&headers, "Content-Type: application/x-www-form-urlencoded") < 0 ||
            slist_add(&headers, "Expect:") < 0)
                goto oom;
        auth_header = secbuf_free(auth_header);

        h = curl_easy_init();
        if (!h)
                goto oom;

        low_speed = req->timeout > 0 && req->timeout < OAUTH_LOW_SPEED_TIME ? (long) req->timeout : OAUTH_LOW_SPEED_TIME;

        SETOPT(h, CURLOPT_CURLU, url);
        SETOPT(h, CURLOPT_PROTOCOLS_STR, protocols);
        SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(h, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
        SETOPT(h, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (req->ca_file) {
                /* Only the configured bundle: no default CA directory beside it. */
                SETOPT(h, CURLOPT_CAINFO, req->ca_file);
                SETOPT(h, CURLOPT_CAPATH, (char *) NULL);
        }
        SETOPT(h, CURLOPT_NOPROXY, "*");
        SETOPT(h, CURLOPT_NOSIGNAL, 1L);
        SETOPT(h, CURLOPT_CONNECTTIMEOUT, (long) req->connect_timeout);
        SETOPT(h, CURLOPT_TIMEOUT, (long) req->timeout);
        SETOPT(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        SETOPT(h, CURLOPT_LOW_SPEED_TIME, low_speed);
        SETOPT(h, CURLOPT_USERAGENT, "credagent/" CREDAGENT_VERSION);
        SETOPT(h, CURLOPT_HTTPHEADER, headers);
        SETOPT(h, CURLOPT_POST, 1L);
        /* Not COPYPOSTFIELDS: libcurl reads the body straight from our locked buffer. */
        SETOPT(h, CURLOPT_POSTFIELDS, (char *) body->data);
        SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body->len);
        SETOPT(h, CURLOPT_WRITEFUNCTION, write_cb);
        SETOPT(h, CURLOPT_WRITEDATA, &resp);
        SETOPT(h, CURLOPT_NOPROGRESS, 0L);
        SETOPT(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
        SETOPT(h, CURLOPT_XFERINFODATA, (void *) abort);
        SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
        SETOPT(h, CURLOPT_SSL_CTX_FUNCTION, curlpool_ssl_ctx_cb);
        if (req->pool && curlpool_attach(req->pool, h) != CURLE_OK)
                goto setopt_failed;

        cc = req->pool ? curlpool_perform(req->pool, h) : curl_easy_perform(h);
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);

        if (cc != CURLE_OK) {
                (void) curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
                result_from_curl(ret, cc, os_errno, resp.too_large);
                ret->http_status = status;
                log_debug("token request to \"%s\" failed: %s (curl %d: %s)", url_esc, ret->description, (int) cc,
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
                r = cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : 0;
                goto finish;
        }

        (void) curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &content_type);
        r = oauth_parse_token_response(status, content_type, resp.body->data, resp.body->len, req->default_ttl,
                                       req->max_ttl, ret);
        if (r >= 0 && (status == 429 || status == 503)) {
                struct curl_header *ra = NULL;

                if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &ra) != CURLHE_OK)
                        ra = NULL;
                oauth_apply_retry_after(ret, ra ? ra->value : NULL, time(NULL));
        }
        if (ret->outcome == OAUTH_OK) {
                char fp[9];

                log_debug("token request to \"%s\": HTTP %ld, token %s, expires_in %" PRIu32 "%s", url_esc, status,
                          log_fingerprint(ret->access_token, strlen(ret->access_token), fp), ret->expires_in,
                          ret->scope ? ", scope granted" : "");
        } else if (ret->outcome == OAUTH_BAD_RESPONSE && resp.body->len > 0 &&
                   !looks_like_json(NULL, resp.body->data, resp.body->len) &&
                   !memmem(resp.body->data, resp.body->len, "access_token", strlen("access_token")) &&
                   !echoes_credentials(resp.body, req->client_secret, basic, req->client_assertion)) {
                /* A short excerpt of a body that is not JSON (an HTML error page, a proxy
                 * banner).  Never of JSON, which may hold a token or echo the request, nor
                 * of anything naming an access_token (a form-encoded token answer), nor
                 * when the body echoes the secret in any form we sent it. */
                char excerpt[4 * OAUTH_LOG_EXCERPT + 8];

                log_debug("token request to \"%s\": %s; body begins \"%s\"", url_esc, ret->description,
                          log_escape(resp.body->data, resp.body->len, OAUTH_LOG_EXCERPT, excerpt, sizeof excerpt));
        } else
                log_debug("token request to \"%s\": %s", url_esc, ret->description);
        goto finish;

setopt_failed:
        result_set(ret, OAUTH_LOCAL_ERROR, "libcurl refused an option for the token request");
        log_debug("token request to \"%s\": %s", url_esc, ret->description);
        r = 0;
        goto finish;

oom:
        memset(ret, 0, sizeof *ret);
        result_set(ret, OAUTH_LOCAL_ERROR, "out of memory");
        r = -ENOMEM;

finish:
        if (h)
                curl_easy_cleanup(h);
        slist_free_wiped(headers);
        curl_url_cleanup(url);
        secbuf_free(resp.body);
        return r;
}

/* ---- global set-up ---- */

/* Allocator wrappers for libcurl: every block it frees, or leaves behind in a realloc, is
 * wiped first, so copies of the Authorization header, the request body and the answer do
 * not outlive the transfer in freed heap.  malloc_usable_size() covers the whole block. */
static void wiping_free(void *p) {
        if (!p)
                return;
        secure_wipe(p, malloc_usable_size(p));
        free(p);
}

static void *wiping_realloc(void *p, size_t n) {
        size_t old;
        void *q;

        if (!p)
                return malloc(n);
        if (n == 0) {
                wiping_free(p);
                return NULL;
        }
        old = malloc_usable_size(p);
        if (n <= old)
                return p;
        q = malloc(n);
        if (!q)
                return NULL;
        memcpy(q, p, old);
        wiping_free(p);
        return q;
}

static char *wiping_strdup(const char *s) {
        size_t n = strlen(s) + 1;
        char *d = malloc(n);

        if (d)
                memcpy(d, s, n);
        return d;
}

int oauth_global_init(void) {
        if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wiping_free, wiping_realloc, wiping_strdup, calloc) !=
            CURLE_OK)
                return -EIO;
        return 0;
}

void oauth_global_cleanup(void) {
        curl_global_cleanup();
}
