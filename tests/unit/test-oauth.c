/* SPDX-License-Identifier: ISC */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agent/oauth.h"
#include "build-config.h"
#include "log.h"
#include "secmem.h"

/* The secret and client id of the brief, and their encodings worked out by hand:
 * '@' %40, ':' %3A, '/' %2F, '+' %2B, '%' %25, '&' %26, '=' %3D, '?' %3F, ' ' '+',
 * '~' %7E (the WHATWG form encoder keeps only alphanumerics and "*-._"), ';' %3B. */
#define SECRET "p@ss:w/rd+%&=? ~;x"
#define SECRET_ENC "p%40ss%3Aw%2Frd%2B%25%26%3D%3F+%7E%3Bx"
#define CLIENT_ID "my:client/id"
#define CLIENT_ID_ENC "my%3Aclient%2Fid"
/* printf %s 'my%3Aclient%2Fid:p%40ss%3Aw%2Frd%2B%25%26%3D%3F+%7E%3Bx' | base64 -w0 */
#define BASIC_EXPECTED "Basic bXklM0FjbGllbnQlMkZpZDpwJTQwc3MlM0F3JTJGcmQlMkIlMjUlMjYlM0QlM0YrJTdFJTNCeA=="

static struct secbuf *secbuf_from(const void *data, size_t len) {
        struct secbuf *b = secbuf_new(len > 0 ? len : 1);

        assert_non_null(b);
        assert_int_equal(secbuf_append(b, data, len), 0);
        return b;
}

static struct secbuf *secbuf_from_str(const char *s) {
        return secbuf_from(s, strlen(s));
}

/* ---- form-urlencoding ---- */

static void check_urlencode(const void *in, size_t len, const char *expected) {
        _cleanup_secbuf_ struct secbuf *out = secbuf_new(1024);

        assert_non_null(out);
        assert_int_equal(oauth_form_urlencode(in, len, out), 0);
        assert_string_equal((const char *) out->data, expected);
        assert_int_equal(out->len, strlen(expected));
}

static void test_urlencode_secret(void **state) {
        check_urlencode(SECRET, strlen(SECRET), SECRET_ENC);
        check_urlencode(CLIENT_ID, strlen(CLIENT_ID), CLIENT_ID_ENC);
}

static void test_urlencode_bytes(void **state) {
        /* kept as they are */
        check_urlencode("AZaz09*-._", 10, "AZaz09*-._");
        /* space is '+', '+' itself is encoded */
        check_urlencode("a b+c", 5, "a+b%2Bc");
        /* UTF-8 "é€" is c3 a9 e2 82 ac: each byte encoded, upper-case hex */
        check_urlencode("\xc3\xa9\xe2\x82\xac", 5, "%C3%A9%E2%82%AC");
        /* NUL, control characters, DEL and the top byte */
        check_urlencode("\x00\x01\n\x7f\xff", 5, "%00%01%0A%7F%FF");
        /* RFC 3986 unreserved "~" and sub-delims are not kept by the form encoder */
        check_urlencode("~!$'(),", 7, "%7E%21%24%27%28%29%2C");
        check_urlencode("\"#<>[\\]^`{|}", 12, "%22%23%3C%3E%5B%5C%5D%5E%60%7B%7C%7D");
}

static void test_urlencode_empty(void **state) {
        _cleanup_secbuf_ struct secbuf *out = secbuf_new(4);

        assert_non_null(out);
        assert_int_equal(oauth_form_urlencode("", 0, out), 0);
        assert_int_equal(out->len, 0);
        assert_string_equal((const char *) out->data, "");
}

static void test_urlencode_emsgsize(void **state) {
        _cleanup_secbuf_ struct secbuf *out = secbuf_new(8);

        assert_non_null(out);
        assert_int_equal(secbuf_append_str(out, "x="), 0);
        /* "a b/" needs 1 + 1 + 1 + 3 = 6 bytes: exactly what is left */
        assert_int_equal(oauth_form_urlencode("a b/", 4, out), 0);
        assert_string_equal((const char *) out->data, "x=a+b%2F");
        secbuf_clear(out);
        assert_int_equal(secbuf_append_str(out, "x="), 0);
        /* "a b//" needs 9 bytes: refused, OUT untouched */
        assert_int_equal(oauth_form_urlencode("a b//", 5, out), -EMSGSIZE);
        assert_int_equal(out->len, 2);
        assert_string_equal((const char *) out->data, "x=");
        /* one "%XX" that does not fit in what is left */
        assert_int_equal(secbuf_append_str(out, "abcd"), 0);
        assert_int_equal(oauth_form_urlencode("/", 1, out), -EMSGSIZE);
        assert_string_equal((const char *) out->data, "x=abcd");
}

/* ---- the Basic header ---- */

static void check_basic(const char *client_id, const void *secret, size_t secret_len, const char *expected) {
        _cleanup_secbuf_ struct secbuf *s = secbuf_from(secret, secret_len);
        _cleanup_secbuf_ struct secbuf *v = NULL;

        assert_int_equal(oauth_basic_authorization(client_id, s, &v), 0);
        assert_non_null(v);
        assert_string_equal((const char *) v->data, expected);
        assert_int_equal(v->len, strlen(expected));
}

static void test_basic_header(void **state) {
        check_basic(CLIENT_ID, SECRET, strlen(SECRET), BASIC_EXPECTED);
}

static void test_basic_empty_secret(void **state) {
        /* printf 'abc:' | base64 -w0 */
        check_basic("abc", "", 0, "Basic YWJjOg==");
}

static void test_basic_utf8(void **state) {
        /* "é" → %C3%A9; printf 'id%C3%A9:%E2%82%AC' | base64 -w0 */
        check_basic("id\xc3\xa9", "\xe2\x82\xac", 3, "Basic aWQlQzMlQTk6JUUyJTgyJUFD");
}

static void test_basic_long_no_newlines(void **state) {
        char secret[61];

        memset(secret, 'x', 60);
        secret[60] = '\0';
        /* printf 'c:%s' xxxx…(60) | base64 -w0: longer than one PEM line, still one line */
        check_basic("c", secret, 60,
                    "Basic Yzp4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=");
}

static void test_basic_emsgsize(void **state) {
        /* Each '%' becomes three bytes: half a megabyte of them cannot be encoded into one
         * secbuf, and nothing is returned. */
        size_t n = SECBUF_MAX / 2;
        _cleanup_secbuf_ struct secbuf *s = secbuf_new(n);
        struct secbuf *v = NULL;

        assert_non_null(s);
        memset(s->data, '%', n);
        s->len = n;
        s->data[n] = '\0';
        assert_int_equal(oauth_basic_authorization("id", s, &v), -EMSGSIZE);
        assert_null(v);
}

/* ---- the request body ---- */

static void check_body(enum client_auth auth, const char *scope, const char *expected) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        _cleanup_secbuf_ struct secbuf *body = NULL;
        struct oauth_request req = {
                .token_url = "https://idp.invalid/token",
                .client_auth = auth,
                .client_id = CLIENT_ID,
                .client_secret = secret,
                .scope = scope,
        };

        assert_int_equal(oauth_token_request_body(&req, &body), 0);
        assert_non_null(body);
        assert_string_equal((const char *) body->data, expected);
        assert_int_equal(body->len, strlen(expected));
}

static void test_body_basic(void **state) {
        check_body(CLIENT_AUTH_BASIC, NULL, "grant_type=client_credentials");
        check_body(CLIENT_AUTH_BASIC, "", "grant_type=client_credentials");
        check_body(CLIENT_AUTH_BASIC, "read write:all", "grant_type=client_credentials&scope=read+write%3Aall");
}

static void test_body_post(void **state) {
        check_body(CLIENT_AUTH_POST, NULL,
                   "grant_type=client_credentials&client_id=" CLIENT_ID_ENC "&client_secret=" SECRET_ENC);
        check_body(CLIENT_AUTH_POST, "billing:ops",
                   "grant_type=client_credentials&scope=billing%3Aops&client_id=" CLIENT_ID_ENC
                   "&client_secret=" SECRET_ENC);
}

/* A JWS compact serialisation: only base64url characters and dots, which form-urlencoding
 * keeps as they are. */
#define ASSERTION "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl-_"
#define ASSERTION_PARAMS \
        "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" \
        ASSERTION

static int jwt_body(const char *assertion, const struct secbuf *secret, enum client_auth auth, const char *scope,
                    struct secbuf **ret) {
        struct oauth_request req = {
                .token_url = "https://idp.invalid/token",
                .client_auth = auth,
                .client_id = CLIENT_ID,
                .client_secret = secret,
                .client_assertion = assertion,
                .scope = scope,
        };

        return oauth_token_request_body(&req, ret);
}

static void test_body_private_key_jwt(void **state) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct secbuf *body = NULL;

        /* RFC 7523 §2.2: the assertion and its type, no client_id, no secret. */
        assert_int_equal(jwt_body(ASSERTION, NULL, CLIENT_AUTH_PRIVATE_KEY_JWT, NULL, &body), 0);
        assert_string_equal((const char *) body->data, "grant_type=client_credentials" ASSERTION_PARAMS);
        assert_int_equal(body->len, strlen("grant_type=client_credentials" ASSERTION_PARAMS));
        body = secbuf_free(body);
        assert_int_equal(jwt_body(ASSERTION, NULL, CLIENT_AUTH_PRIVATE_KEY_JWT, "read write:all", &body), 0);
        assert_string_equal((const char *) body->data,
                            "grant_type=client_credentials&scope=read+write%3Aall" ASSERTION_PARAMS);
        body = secbuf_free(body);
        /* Anything outside the base64url alphabet would be encoded (no such JWS exists). */
        assert_int_equal(jwt_body("a+b c", NULL, CLIENT_AUTH_PRIVATE_KEY_JWT, NULL, &body), 0);
        assert_non_null(strstr((const char *) body->data, "&client_assertion=a%2Bb+c"));
        body = secbuf_free(body);

        /* Exactly one method: no assertion, an empty one, or a secret beside it are refused;
         * basic and post never carry an assertion. */
        assert_int_equal(jwt_body(NULL, NULL, CLIENT_AUTH_PRIVATE_KEY_JWT, NULL, &body), -EINVAL);
        assert_int_equal(jwt_body("", NULL, CLIENT_AUTH_PRIVATE_KEY_JWT, NULL, &body), -EINVAL);
        assert_int_equal(jwt_body(ASSERTION, secret, CLIENT_AUTH_PRIVATE_KEY_JWT, NULL, &body), -EINVAL);
        assert_int_equal(jwt_body(ASSERTION, secret, CLIENT_AUTH_POST, NULL, &body), -EINVAL);
        assert_int_equal(jwt_body(ASSERTION, secret, CLIENT_AUTH_BASIC, NULL, &body), -EINVAL);
        assert_null(body);
}

static void test_body_post_needs_id(void **state) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct secbuf *body = NULL;
        struct oauth_request req = {
                .client_auth = CLIENT_AUTH_POST,
                .client_secret = secret,
        };

        assert_int_equal(oauth_token_request_body(&req, &body), -EINVAL);
        assert_null(body);
}

/* ---- parsing answers ---- */

#define DEF_TTL 300
#define MAX_TTL 86400

struct parse_case {
        const char *name;
        long status;
        const char *content_type;
        const char *body;
        size_t len;                 /* 0: strlen(body) */
        enum oauth_outcome outcome;
        const char *token;          /* OAUTH_OK */
        uint32_t expires_in;        /* OAUTH_OK */
        const char *scope;          /* OAUTH_OK: NULL when absent */
        const char *error_code;     /* OAUTH_IDP_ERROR */
        const char *description;    /* everything but OAUTH_OK */
        uint32_t default_ttl;       /* 0: DEF_TTL */
};

#define TOKEN_OK(extra) "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\"" extra "}"

#define D_NOTOKEN "token endpoint answered no access_token"
#define D_TOKSTR "token endpoint answered an access_token that is not a string"
#define D_TOKBAD "token endpoint answered an empty, oversized or non-ASCII access_token"
#define D_TYPE "token endpoint answered a token_type other than Bearer"
#define D_EXP "token endpoint answered an unusable expires_in"
#define D_MALFORMED "token endpoint answered malformed JSON"
#define D_NONJSON "token endpoint answered non-JSON content"
#define D_NOTOBJ "token endpoint answered JSON that is not an object"

#define C_OK(n, st, b, tok, exp) \
        { .name = (n), .status = (st), .body = (b), .outcome = OAUTH_OK, .token = (tok), .expires_in = (exp) }
#define C_OKS(n, b, exp, sc) \
        { .name = (n), .status = 200, .body = (b), .outcome = OAUTH_OK, .token = "tok-1", .expires_in = (exp), .scope = (sc) }
#define C_BAD(n, st, ct, b, desc) \
        { .name = (n), .status = (st), .content_type = (ct), .body = (b), .outcome = OAUTH_BAD_RESPONSE, .description = (desc) }
#define C_IDP(n, st, b, code, desc) \
        { .name = (n), .status = (st), .content_type = "application/json", .body = (b), .outcome = OAUTH_IDP_ERROR, \
          .error_code = (code), .description = (desc) }
#define C_EXP(n, v, exp) C_OK(n, 200, TOKEN_OK(",\"expires_in\":" v), "tok-1", exp)
#define C_EXP_BAD(n, v) C_BAD(n, 200, NULL, TOKEN_OK(",\"expires_in\":" v), D_EXP)
#define D_400 "token endpoint answered HTTP 400 without an OAuth error code"
#define JSON "application/json"

static const struct parse_case parse_cases[] = {
        { .name = "good token", .status = 200, .content_type = JSON,
          .body = "{\"access_token\":\"tok-123\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"scope\":\"read write\"}",
          .outcome = OAUTH_OK, .token = "tok-123", .expires_in = 3600, .scope = "read write" },
        C_OK("bearer lower case", 200, "{\"access_token\":\"tok-1\",\"token_type\":\"bearer\",\"expires_in\":60}", "tok-1", 60),
        C_OK("bearer upper case", 200, "{\"access_token\":\"tok-1\",\"token_type\":\"BEARER\",\"expires_in\":60}", "tok-1", 60),
        C_OK("extra fields ignored", 200,
             TOKEN_OK(",\"refresh_token\":\"r\",\"id_token\":null,\"ext\":{\"a\":[1,2,{\"b\":true}]}"), "tok-1", DEF_TTL),
        C_OK("whitespace around", 200, " \r\n\t" TOKEN_OK("") " \n", "tok-1", DEF_TTL),
        C_OK("token with all visible ASCII", 200,
             "{\"access_token\":\"!#$%&'()*+,-./09:;<=>?@AZ[\\\\]^_`az{|}~\\\"\",\"token_type\":\"Bearer\"}",
             "!#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\"", DEF_TTL),

        /* token_type */
        C_BAD("token_type mac", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":\"mac\"}", D_TYPE),
        C_BAD("token_type DPoP", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":\"DPoP\"}", D_TYPE),
        C_BAD("token_type missing", 200, NULL, "{\"access_token\":\"tok-1\",\"expires_in\":60}", D_TYPE),
        C_BAD("token_type null", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":null}", D_TYPE),
        C_BAD("token_type with a space", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer \"}", D_TYPE),
        C_BAD("token_type with NUL", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\\u0000x\"}", D_TYPE),
        C_BAD("token_type number", 200, NULL, "{\"access_token\":\"tok-1\",\"token_type\":1}", D_TYPE),

        /* access_token */
        C_BAD("access_token missing", 200, NULL, "{\"token_type\":\"Bearer\",\"expires_in\":60}", D_NOTOKEN),
        C_BAD("access_token null", 200, NULL, "{\"access_token\":null,\"token_type\":\"Bearer\"}", D_NOTOKEN),
        C_BAD("access_token empty", 200, NULL, "{\"access_token\":\"\",\"token_type\":\"Bearer\"}", D_TOKBAD),
        C_BAD("access_token number", 200, NULL, "{\"access_token\":12345,\"token_type\":\"Bearer\"}", D_TOKSTR),
        C_BAD("access_token object", 200, NULL, "{\"access_token\":{\"v\":\"tok-1\"},\"token_type\":\"Bearer\"}", D_TOKSTR),
        C_BAD("access_token control char", 200, NULL, "{\"access_token\":\"tok-\\u0001x\",\"token_type\":\"Bearer\"}",
              D_TOKBAD),
        C_BAD("access_token CRLF", 200, NULL, "{\"access_token\":\"tok-\\r\\nX-Evil: 1\",\"token_type\":\"Bearer\"}",
              D_TOKBAD),
        C_BAD("access_token NUL", 200, NULL, "{\"access_token\":\"tok-\\u0000x\",\"token_type\":\"Bearer\"}", D_TOKBAD),
        C_BAD("access_token space", 200, NULL, "{\"access_token\":\"tok- x\",\"token_type\":\"Bearer\"}", D_TOKBAD),
        C_BAD("access_token non-ASCII", 200, NULL, "{\"access_token\":\"tok-\xc3\xa9\",\"token_type\":\"Bearer\"}",
              D_TOKBAD),

        /* expires_in */
        C_EXP("expires_in int", "3600", 3600),
        C_EXP("expires_in 1", "1", 1),
        C_EXP("expires_in string digits", "\"3600\"", 3600),
        C_EXP("expires_in string leading zeros", "\"0003600\"", 3600),
        C_EXP_BAD("expires_in string 3600s", "\"3600s\""),
        C_EXP_BAD("expires_in string -5", "\"-5\""),
        C_EXP_BAD("expires_in string +5", "\"+5\""),
        C_EXP_BAD("expires_in string leading space", "\" 60\""),
        C_EXP_BAD("expires_in string decimal", "\"60.5\""),
        C_EXP_BAD("expires_in string empty", "\"\""),
        C_EXP_BAD("expires_in string zero", "\"0\""),
        C_EXP("expires_in string 20 digits", "\"99999999999999999999\"", MAX_TTL),
        C_EXP("expires_in string past uint64", "\"18446744073709551616\"", MAX_TTL),
        C_EXP_BAD("expires_in string 23 digits", "\"99999999999999999999999\""),
        C_EXP_BAD("expires_in zero", "0"),
        C_EXP_BAD("expires_in minus zero", "-0"),
        C_EXP_BAD("expires_in -1", "-1"),
        C_EXP("expires_in 1e300", "1e300", MAX_TTL),
        C_EXP("expires_in INT64_MAX", "9223372036854775807", MAX_TTL),
        C_EXP("expires_in past uint64", "99999999999999999999999", MAX_TTL),
        C_EXP_BAD("expires_in below INT64_MIN", "-99999999999999999999999"),
        C_EXP("expires_in UINT32_MAX+1", "4294967296", MAX_TTL),
        C_EXP("expires_in just above max", "86401", MAX_TTL),
        C_EXP("expires_in at max", "86400", MAX_TTL),
        C_EXP("expires_in fraction", "3600.7", 3600),
        C_EXP("expires_in exponent", "1.5e3", 1500),
        C_EXP("expires_in 1.0", "1.0", 1),
        C_EXP_BAD("expires_in 0.5", "0.5"),
        C_EXP_BAD("expires_in -3.5", "-3.5"),
        C_EXP_BAD("expires_in NaN", "NaN"),
        C_EXP_BAD("expires_in Infinity", "Infinity"),
        C_EXP_BAD("expires_in -Infinity", "-Infinity"),
        C_EXP("expires_in null", "null", DEF_TTL),
        C_OK("expires_in missing", 200, TOKEN_OK(""), "tok-1", DEF_TTL),
        { .name = "expires_in missing, default above max", .status = 200, .body = TOKEN_OK(""), .outcome = OAUTH_OK,
          .token = "tok-1", .expires_in = MAX_TTL, .default_ttl = MAX_TTL + 1 },
        C_EXP_BAD("expires_in true", "true"),
        C_EXP_BAD("expires_in array", "[60]"),
        C_EXP_BAD("expires_in object", "{\"s\":60}"),

        /* scope */
        C_OKS("scope absent", TOKEN_OK(",\"expires_in\":60"), 60, NULL),
        C_OKS("scope null", TOKEN_OK(",\"scope\":null"), DEF_TTL, NULL),
        C_OKS("scope empty", TOKEN_OK(",\"scope\":\"\""), DEF_TTL, ""),
        C_OKS("scope list", TOKEN_OK(",\"scope\":\"a:b c/d\""), DEF_TTL, "a:b c/d"),
        C_BAD("scope number", 200, NULL, TOKEN_OK(",\"scope\":5"), "token endpoint answered a scope that is not a string"),
        C_BAD("scope control char", 200, NULL, TOKEN_OK(",\"scope\":\"a\\nb\""),
              "token endpoint answered an oversized or non-ASCII scope"),

        /* not one usable JSON object */
        C_BAD("array", 200, JSON, "[{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\"}]", D_NOTOBJ),
        C_BAD("string", 200, JSON, "\"tok-1\"", D_NOTOBJ),
        C_BAD("number", 200, JSON, "42", D_NOTOBJ),
        C_BAD("trailing garbage", 200, JSON, TOKEN_OK("") " x", D_MALFORMED),
        C_BAD("two objects", 200, JSON, TOKEN_OK("") TOKEN_OK(""), D_MALFORMED),
        { .name = "trailing NUL", .status = 200, .content_type = JSON, .body = TOKEN_OK("") "\0",
          .len = sizeof TOKEN_OK(""), .outcome = OAUTH_BAD_RESPONSE, .description = D_MALFORMED },
        C_BAD("truncated", 200, JSON, "{\"access_token\":\"tok-1\",\"token_ty", D_MALFORMED),
        C_BAD("trailing comma", 200, JSON, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",}", D_MALFORMED),
        C_BAD("invalid UTF-8", 200, JSON, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"x\":\"\xff\"}",
              D_MALFORMED),
        C_BAD("HTML 200", 200, "text/html; charset=utf-8", "<html><body>Sign in MARK</body></html>", D_NONJSON),
        C_BAD("HTML 200 without Content-Type", 200, NULL, "<html><body>Sign in MARK</body></html>", D_NONJSON),
        C_BAD("HTML labelled JSON", 200, JSON, "<html>tok-</html>", D_MALFORMED),
        C_BAD("text labelled problem+json", 200, "application/problem+json; charset=utf-8", "oops", D_MALFORMED),
        C_BAD("empty 200", 200, JSON, "", "token endpoint answered an empty body"),
        C_BAD("200 with an error only", 200, JSON, "{\"error\":\"invalid_client\"}", D_NOTOKEN),

        /* §5.2 errors */
        C_IDP("400 invalid_client", 400, "{\"error\":\"invalid_client\"}", "invalid_client",
              "token endpoint answered HTTP 400: invalid_client"),
        C_IDP("401 with a description", 401, "{\"error\":\"invalid_client\",\"error_description\":\"bad secret MARK p@ss\"}",
              "invalid_client", "token endpoint answered HTTP 401: invalid_client"),
        C_IDP("429 with an error", 429, "{\"error\":\"slow_down\"}", "slow_down",
              "token endpoint answered HTTP 429: slow_down"),
        C_BAD("400 without error", 400, JSON, "{\"error_description\":\"MARK\"}", D_400),
        C_BAD("400 error number", 400, JSON, "{\"error\":400}", D_400),
        C_BAD("400 error null", 400, JSON, "{\"error\":null}", D_400),
        C_BAD("400 error empty", 400, JSON, "{\"error\":\"\"}", D_400),
        C_BAD("400 error only disallowed bytes", 400, JSON, "{\"error\":\"\\\"\\n\xc3\xa9\"}", D_400),
        C_IDP("400 error sanitised", 400, "{\"error\":\"inva\\\"lid\\u0001_cl\\\\ient\\n\"}", "invalid_client",
              "token endpoint answered HTTP 400: invalid_client"),
        C_IDP("400 error capped", 400,
              "{\"error\":\"aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffffgggggggggg\"}",
              "aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffffgggg",
              "token endpoint answered HTTP 400: aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffffgggg"),
        C_BAD("400 HTML", 400, "text/html", "<html>Bad Request MARK</html>", D_400),
        C_BAD("400 array", 400, JSON, "[{\"error\":\"invalid_client\"}]", D_400),
        C_BAD("400 truncated", 400, JSON, "{\"error\":\"invalid_cli", D_400),

        /* statuses that never carry a token */
        C_BAD("500", 500, JSON, "{\"error\":\"server_error\"}", "token endpoint answered HTTP 500"),
        C_BAD("503", 503, "text/html", "<html>MARK</html>", "token endpoint answered HTTP 503"),
        C_BAD("302", 302, "text/html", "<a href=\"https://elsewhere/\">moved MARK</a>",
              "token endpoint answered a redirect (not followed)"),
        C_BAD("301 with a token", 301, JSON, TOKEN_OK(""), "token endpoint answered a redirect (not followed)"),
        C_BAD("201 with a token", 201, JSON, TOKEN_OK(""), "token endpoint answered HTTP 201 instead of 200"),
        C_BAD("100", 100, NULL, "", "token endpoint answered HTTP 100"),
        C_BAD("no status", 0, NULL, "", "token endpoint gave no HTTP status"),
};

static void check_parse_result(const struct parse_case *c, const struct oauth_result *r) {
        assert_int_equal(r->http_status, c->status);
        assert_int_equal(r->outcome, c->outcome);
        if (c->outcome == OAUTH_OK) {
                assert_non_null(r->access_token);
                assert_string_equal(r->access_token, c->token);
                assert_int_equal(r->expires_in, c->expires_in);
                if (c->scope) {
                        assert_non_null(r->scope);
                        assert_string_equal(r->scope, c->scope);
                } else
                        assert_null(r->scope);
                assert_string_equal(r->error_code, "");
                return;
        }
        assert_null(r->access_token);
        assert_null(r->scope);
        assert_string_equal(r->description, c->description);
        /* never a token or body text in the description */
        assert_null(strstr(r->description, "tok-"));
        assert_null(strstr(r->description, "MARK"));
        if (c->outcome == OAUTH_IDP_ERROR)
                assert_string_equal(r->error_code, c->error_code);
        else
                assert_string_equal(r->error_code, "");
}

static void test_parse_cases(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(parse_cases); i++) {
                const struct parse_case *c = &parse_cases[i];
                size_t len = c->len ? c->len : strlen(c->body);
                /* a heap copy of exactly LEN bytes, so that ASan sees any read past the end */
                uint8_t *body = malloc(len ? len : 1);
                struct oauth_result r;

                assert_non_null(body);
                memcpy(body, c->body, len);
                memset(&r, 0xa5, sizeof r); /* the parser must not rely on *RET being clean */
                print_message("parse case: %s\n", c->name);
                assert_int_equal(oauth_parse_token_response(c->status, c->content_type, body, len,
                                                            c->default_ttl ? c->default_ttl : DEF_TTL, MAX_TTL, &r),
                                 0);
                check_parse_result(c, &r);
                oauth_result_clear(&r);
                assert_null(r.access_token);
                assert_int_equal(r.outcome, 0);
                free(body);
        }
}

/* A body of exactly OAUTH_RESPONSE_MAX bytes: a token padded with trailing whitespace.
 * One byte more is refused whatever it holds. */
static char *padded_body(size_t total, const char *token) {
        char *b = malloc(total + 1);
        int n;

        assert_non_null(b);
        n = snprintf(b, total + 1, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":60}", token);
        assert_true(n > 0 && (size_t) n < total);
        memset(b + n, ' ', total - (size_t) n);
        b[total] = '\0';
        return b;
}

static void test_parse_size_limits(void **state) {
        struct oauth_result r = {};
        char *b, *token;

        b = padded_body(OAUTH_RESPONSE_MAX, "tok-max");
        assert_int_equal(oauth_parse_token_response(200, "application/json", (uint8_t *) b, OAUTH_RESPONSE_MAX,
                                                    DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_OK);
        assert_string_equal(r.access_token, "tok-max");
        oauth_result_clear(&r);
        free(b);

        b = padded_body(OAUTH_RESPONSE_MAX + 1, "tok-max");
        assert_int_equal(oauth_parse_token_response(200, "application/json", (uint8_t *) b, OAUTH_RESPONSE_MAX + 1,
                                                    DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_string_equal(r.description, "token endpoint response too large");
        assert_null(r.access_token);
        oauth_result_clear(&r);
        free(b);

        /* the longest access_token accepted, and one byte longer */
        token = malloc(OAUTH_TOKEN_MAX + 2);
        assert_non_null(token);
        memset(token, 'T', OAUTH_TOKEN_MAX + 1);
        token[OAUTH_TOKEN_MAX] = '\0';
        b = padded_body(OAUTH_TOKEN_MAX + 100, token);
        assert_int_equal(oauth_parse_token_response(200, NULL, (uint8_t *) b, strlen(b), DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_OK);
        assert_int_equal(strlen(r.access_token), OAUTH_TOKEN_MAX);
        oauth_result_clear(&r);
        free(b);
        token[OAUTH_TOKEN_MAX] = 'T';
        token[OAUTH_TOKEN_MAX + 1] = '\0';
        b = padded_body(OAUTH_TOKEN_MAX + 100, token);
        assert_int_equal(oauth_parse_token_response(200, NULL, (uint8_t *) b, strlen(b), DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_string_equal(r.description, D_TOKBAD);
        oauth_result_clear(&r);
        free(b);
        free(token);
}

static void test_parse_depth_bomb(void **state) {
        struct oauth_result r = {};
        size_t n = 60000, o = 0;
        char *b = malloc(n);

        /* 60000 nested arrays */
        assert_non_null(b);
        memset(b, '[', n);
        assert_int_equal(oauth_parse_token_response(200, "application/json", (uint8_t *) b, n, DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_string_equal(r.description, D_MALFORMED);
        oauth_result_clear(&r);

        /* a good token whose extra member nests objects 100 deep, and balanced */
        o += (size_t) sprintf(b + o, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"x\":");
        for (int i = 0; i < 100; i++)
                o += (size_t) sprintf(b + o, "{\"a\":");
        b[o++] = '1';
        for (int i = 0; i < 101; i++)
                b[o++] = '}';
        assert_int_equal(oauth_parse_token_response(200, "application/json", (uint8_t *) b, o, DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_string_equal(r.description, D_MALFORMED);
        assert_null(r.access_token);
        oauth_result_clear(&r);
        free(b);
}

static void test_parse_null_body(void **state) {
        struct oauth_result r = {};

        assert_int_equal(oauth_parse_token_response(200, NULL, NULL, 10, DEF_TTL, MAX_TTL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_string_equal(r.description, "token endpoint answered an empty body");
        oauth_result_clear(&r);
        oauth_result_clear(NULL);
}

/* ---- oauth_fetch against a real local server ---- */

enum serve_mode {
        SERVE_ANSWER,  /* read the request, record it, send the canned answer */
        SERVE_SILENT,  /* read the request, record it, never answer */
        SERVE_HANG_UP, /* read the request, record it, close without answering */
};

struct server {
        pid_t pid;
        int port;
        int record_fd; /* read end: the request the server got */
        char url[96];
};

static int listen_loopback(int *ret_port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(listen(fd, 4), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &alen), 0);
        *ret_port = ntohs(a.sin_port);
        return fd;
}

/* True when a connection waits on the listening socket FD. */
static bool connection_pending(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) > 0;
}

struct conn {
        int fd;
        SSL *ssl;
};

static ssize_t conn_read(struct conn *c, void *buf, size_t n) {
        if (c->ssl) {
                int k = SSL_read(c->ssl, buf, (int) n);
                return k > 0 ? k : 0;
        }
        return read(c->fd, buf, n);
}

static void conn_write_all(struct conn *c, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = c->ssl ? SSL_write(c->ssl, buf, (int) n) : write(c->fd, buf, n);

                if (k <= 0)
                        return;
                buf += k;
                n -= (size_t) k;
        }
}

/* Reads one HTTP request (headers and a Content-Length body) into BUF.  Returns its length. */
static size_t read_request(struct conn *c, char *buf, size_t size) {
        size_t have = 0, need = SIZE_MAX;

        while (have < size - 1 && have < need) {
                ssize_t k = conn_read(c, buf + have, size - 1 - have);
                char *end;

                if (k <= 0)
                        break;
                have += (size_t) k;
                buf[have] = '\0';
                end = strstr(buf, "\r\n\r\n");
                if (end && need == SIZE_MAX) {
                        const char *cl = strcasestr(buf, "\r\nContent-Length:");

                        need = (size_t) (end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
                }
        }
        return have;
}

__attribute__((noreturn)) static void serve(int lfd, int record_fd, enum serve_mode mode, const char *answer, size_t answer_len,
                             SSL_CTX *tls) {
        static char req[65536];
        struct conn c = { .ssl = NULL };
        struct pollfd p;
        size_t n;

        alarm(30); /* never outlive a stuck test */
        p = (struct pollfd) { .fd = lfd, .events = POLLIN };
        if (poll(&p, 1, 20000) != 1)
                _exit(2);
        c.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c.fd < 0)
                _exit(2);
        if (tls) {
                c.ssl = SSL_new(tls);
                if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1)
                        _exit(2);
                if (SSL_accept(c.ssl) != 1)
                        _exit(3); /* the client refused our certificate */
        }

        n = read_request(&c, req, sizeof req);
        if (write(record_fd, req, n) != (ssize_t) n)
                _exit(2);
        close(record_fd);

        if (mode == SERVE_ANSWER)
                conn_write_all(&c, answer, answer_len);
        if (mode != SERVE_SILENT) {
                if (c.ssl)
                        SSL_shutdown(c.ssl);
                _exit(0);
        }
        /* SERVE_SILENT: wait for the client to give up and close */
        for (;;) {
                char b[256];

                if (conn_read(&c, b, sizeof b) <= 0)
                        _exit(0);
        }
}

/* Serves from the listening socket LFD (taken) at HOST:PORT. */
static void server_start_on(struct server *s, int lfd, const char *host, int port, enum serve_mode mode,
                            const char *answer, size_t answer_len, SSL_CTX *tls) {
        int pipefd[2];

        s->port = port;
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        fflush(NULL);
        s->pid = fork();
        assert_true(s->pid >= 0);
        if (s->pid == 0) {
                close(pipefd[0]);
                serve(lfd, pipefd[1], mode, answer, answer_len, tls);
        }
        close(lfd);
        close(pipefd[1]);
        s->record_fd = pipefd[0];
        snprintf(s->url, sizeof s->url, "%s://%s:%d/token", tls ? "https" : "http", host, s->port);
}

static void server_start(struct server *s, enum serve_mode mode, const char *answer, size_t answer_len, SSL_CTX *tls) {
        int port, lfd = listen_loopback(&port);

        server_start_on(s, lfd, "127.0.0.1", port, mode, answer, answer_len, tls);
}

/* Waits for the server; returns what it recorded (malloc()ed, NUL-terminated) and its
 * exit status in *RET_STATUS. */
static char *server_finish(struct server *s, int *ret_status) {
        size_t size = 65536, have = 0;
        char *buf = malloc(size + 1);
        int status;

        assert_non_null(buf);
        for (;;) {
                ssize_t k = read(s->record_fd, buf + have, size - have);

                if (k <= 0)
                        break;
                have += (size_t) k;
        }
        buf[have] = '\0';
        close(s->record_fd);
        assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return buf;
}

/* Counts the request's header lines named NAME and stores the last one's value. */
static unsigned header_count(const char *req, const char *name, char *ret_value, size_t size) {
        const char *line = strstr(req, "\r\n"), *end = strstr(req, "\r\n\r\n");
        size_t nlen = strlen(name);
        unsigned n = 0;

        while (line && line < end) {
                const char *next;

                line += 2;
                next = strstr(line, "\r\n");
                if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
                        const char *v = line + nlen + 1;

                        while (*v == ' ')
                                v++;
                        snprintf(ret_value, size, "%.*s", (int) (next - v), v);
                        n++;
                }
                line = next;
        }
        return n;
}

static unsigned header_total(const char *req) {
        const char *end = strstr(req, "\r\n\r\n");
        unsigned n = 0;

        for (const char *p = strstr(req, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n"))
                n++;
        return n;
}

static void assert_header(const char *req, const char *name, const char *expected) {
        char v[1024] = "";

        print_message("header %s\n", name);
        assert_int_equal(header_count(req, name, v, sizeof v), 1);
        assert_string_equal(v, expected);
}

static char *http_answer(const char *status_line, const char *extra_headers, const char *body, size_t body_len,
                         size_t *ret_len) {
        size_t head_max = 512, n;
        char *a = malloc(head_max + body_len);

        assert_non_null(a);
        n = (size_t) snprintf(a, head_max, "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                              status_line, extra_headers, body_len);
        assert_true(n < head_max);
        memcpy(a + n, body, body_len);
        *ret_len = n + body_len;
        return a;
}

static void request_init(struct oauth_request *req, const char *url, enum client_auth auth, const struct secbuf *secret) {
        *req = (struct oauth_request) {
                .token_url = url,
                .client_auth = auth,
                .client_id = CLIENT_ID,
                .client_secret = secret,
                .scope = "read write",
                .allow_insecure_loopback = true,
                .connect_timeout = 5,
                .timeout = 10,
                .default_ttl = DEF_TTL,
                .max_ttl = MAX_TTL,
        };
}

#define GOOD_BODY "{\"access_token\":\"tok-fetched\",\"token_type\":\"Bearer\",\"expires_in\":120,\"scope\":\"read\"}"

static void check_fetch_method(enum client_auth auth) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        struct server s;
        size_t alen;
        char *answer = http_answer("200 OK", "Content-Type: application/json\r\nCache-Control: no-store\r\n",
                                   GOOD_BODY, strlen(GOOD_BODY), &alen);
        char host[64], *got, *body;
        const char *expected_body;
        int status;

        server_start(&s, SERVE_ANSWER, answer, alen, NULL);
        request_init(&req, s.url, auth, secret);
        if (auth == CLIENT_AUTH_PRIVATE_KEY_JWT) {
                req.client_secret = NULL;
                req.client_assertion = ASSERTION;
        }
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        got = server_finish(&s, &status);
        assert_int_equal(status, 0);

        assert_int_equal(r.outcome, OAUTH_OK);
        assert_int_equal(r.http_status, 200);
        assert_string_equal(r.access_token, "tok-fetched");
        assert_int_equal(r.expires_in, 120);
        assert_string_equal(r.scope, "read");

        /* the request, exactly */
        assert_true(strncmp(got, "POST /token HTTP/1.1\r\n", 22) == 0);
        body = strstr(got, "\r\n\r\n");
        assert_non_null(body);
        body += 4;
        if (auth == CLIENT_AUTH_BASIC)
                expected_body = "grant_type=client_credentials&scope=read+write";
        else if (auth == CLIENT_AUTH_PRIVATE_KEY_JWT)
                expected_body = "grant_type=client_credentials&scope=read+write" ASSERTION_PARAMS;
        else
                expected_body = "grant_type=client_credentials&scope=read+write&client_id=" CLIENT_ID_ENC
                                "&client_secret=" SECRET_ENC;
        assert_string_equal(body, expected_body);

        snprintf(host, sizeof host, "127.0.0.1:%d", s.port);
        assert_header(got, "Host", host);
        assert_header(got, "User-Agent", "credagent/" CREDAGENT_VERSION);
        assert_header(got, "Accept", "application/json");
        assert_header(got, "Content-Type", "application/x-www-form-urlencoded");
        {
                char len[32];

                snprintf(len, sizeof len, "%zu", strlen(expected_body));
                assert_header(got, "Content-Length", len);
        }
        if (auth == CLIENT_AUTH_BASIC) {
                assert_header(got, "Authorization", BASIC_EXPECTED);
                assert_int_equal(header_total(got), 6);
        } else {
                char v[8];

                assert_int_equal(header_count(got, "Authorization", v, sizeof v), 0);
                assert_int_equal(header_total(got), 5);
        }
        /* one authentication method: no secret anywhere but where it belongs */
        assert_int_equal(header_count(got, "Expect", host, sizeof host), 0);
        assert_int_equal(header_count(got, "Proxy-Authorization", host, sizeof host), 0);
        if (auth == CLIENT_AUTH_PRIVATE_KEY_JWT) {
                assert_null(strstr(got, SECRET));
                assert_null(strstr(got, SECRET_ENC));
                assert_null(strstr(got, "client_id="));
        }

        oauth_result_clear(&r);
        free(got);
        free(answer);
}

static void test_fetch_basic(void **state) {
        /* A proxy in the environment is not used for a token request: a listener stands
         * in for it and must see no connection. */
        int port, proxy = listen_loopback(&port);
        char url[64];

        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        assert_int_equal(setenv("http_proxy", url, 1), 0);
        assert_int_equal(setenv("HTTPS_PROXY", url, 1), 0);
        assert_int_equal(setenv("ALL_PROXY", url, 1), 0);
        check_fetch_method(CLIENT_AUTH_BASIC);
        unsetenv("http_proxy");
        unsetenv("HTTPS_PROXY");
        unsetenv("ALL_PROXY");
        assert_false(connection_pending(proxy));
        close(proxy);
}

static void test_fetch_post(void **state) {
        check_fetch_method(CLIENT_AUTH_POST);
}

static void test_fetch_private_key_jwt(void **state) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};

        check_fetch_method(CLIENT_AUTH_PRIVATE_KEY_JWT);

        /* Without its assertion, or with a secret as well: refused before any connection. */
        request_init(&req, "http://127.0.0.1:9/token", CLIENT_AUTH_PRIVATE_KEY_JWT, NULL);
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_LOCAL_ERROR);
        assert_string_equal(r.description, "incomplete token request");
        req.client_assertion = ASSERTION;
        req.client_secret = secret;
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_LOCAL_ERROR);
        assert_string_equal(r.description, "incomplete token request");
        request_init(&req, "http://127.0.0.1:9/token", CLIENT_AUTH_BASIC, secret);
        req.client_assertion = ASSERTION;
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_LOCAL_ERROR);
        oauth_result_clear(&r);
}

/* Runs one fetch against a server in MODE answering ANSWER; checks the outcome. */
static void check_fetch_outcome(enum serve_mode mode, const char *answer, size_t alen, uint32_t timeout,
                                const volatile int *abort_flag, enum oauth_outcome outcome, long http_status,
                                const char *description, double max_seconds) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        struct timespec t0, t1;
        struct server s;
        char *got;
        int status;

        server_start(&s, mode, answer, alen, NULL);
        request_init(&req, s.url, CLIENT_AUTH_BASIC, secret);
        req.timeout = timeout;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(oauth_fetch(&req, abort_flag, &r), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (abort_flag)
                /* the client may have given up before it even connected */
                assert_int_equal(kill(s.pid, SIGTERM), 0);
        got = server_finish(&s, &status);

        print_message("outcome %d http %ld: %s\n", r.outcome, r.http_status, r.description);
        assert_int_equal(r.outcome, outcome);
        assert_int_equal(r.http_status, http_status);
        if (description)
                assert_string_equal(r.description, description);
        if (outcome != OAUTH_OK)
                assert_null(r.access_token);
        assert_true((double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9 < max_seconds);
        if (!abort_flag)
                assert_true(strncmp(got, "POST /token HTTP/1.1\r\n", 22) == 0);
        oauth_result_clear(&r);
        free(got);
}

static void test_fetch_idp_error(void **state) {
        const char *b = "{\"error\":\"invalid_client\",\"error_description\":\"MARK\"}";
        size_t alen;
        char *a = http_answer("401 Unauthorized", "Content-Type: application/json\r\n", b, strlen(b), &alen);

        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_IDP_ERROR, 401,
                            "token endpoint answered HTTP 401: invalid_client", 5);
        free(a);
}

static void test_fetch_html(void **state) {
        const char *b = "<html><body>Please sign in</body></html>";
        size_t alen;
        char *a = http_answer("200 OK", "Content-Type: text/html\r\n", b, strlen(b), &alen);

        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_BAD_RESPONSE, 200,
                            "token endpoint answered non-JSON content", 5);
        free(a);
}

static void test_fetch_5xx(void **state) {
        size_t alen;
        char *a = http_answer("500 Internal Server Error", "", "", 0, &alen);

        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_BAD_RESPONSE, 500, "token endpoint answered HTTP 500",
                            5);
        free(a);
        /* 503 and 429 ask to come back later, with Retry-After in seconds or as an HTTP-date. */
        a = http_answer("503 Service Unavailable", "Retry-After: 5\r\n", "", 0, &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_IDP_ERROR, 503,
                            "token endpoint answered HTTP 503: temporarily_unavailable; Retry-After 5 s", 5);
        free(a);
        a = http_answer("429 Too Many Requests", "Retry-After: Thu, 01 Jan 2099 00:00:00 GMT\r\n"
                        "Content-Type: application/json\r\n", "{\"error\":\"slow_down\"}", 21, &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_IDP_ERROR, 429,
                            "token endpoint answered HTTP 429: slow_down; Retry-After 3600 s", 5);
        free(a);
        a = http_answer("429 Too Many Requests", "", "", 0, &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_IDP_ERROR, 429,
                            "token endpoint answered HTTP 429: temporarily_unavailable", 5);
        free(a);
}

/* Retry-After in both forms (RFC 9110 §10.2.3), clamped to 1 … OAUTH_RETRY_AFTER_MAX. */
static void test_retry_after(void **state) {
        const time_t now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */
        static const struct {
                const char *value;
                int r;
                uint32_t wait;
        } cases[] = {
                { "3", 0, 3 },
                { " 120\t", 0, 120 },
                { "0", 0, 1 },                                 /* now: after a second */
                { "3600", 0, 3600 },
                { "3601", 0, 3600 },                           /* absurd: the cap */
                { "99999999999999999999999999999999", 0, 3600 },
                { "Tue, 14 Nov 2023 22:13:50 GMT", 0, 30 },    /* IMF-fixdate */
                { "Tuesday, 14-Nov-23 22:14:20 GMT", 0, 60 },  /* RFC 850 */
                { "Tue Nov 14 22:13:25 2023", 0, 5 },          /* asctime */
                { "Tue, 14 Nov 2023 22:13:20 GMT", 0, 1 },     /* now */
                { "Mon, 13 Nov 2023 22:13:20 GMT", 0, 1 },     /* in the past */
                { "Fri, 31 Dec 9999 23:59:59 GMT", 0, 3600 },
                { "-5", -EINVAL, 0 },
                { "1.5", -EINVAL, 0 },
                { "+5", -EINVAL, 0 },
                { "5 s", -EINVAL, 0 },
                { "12 34", -EINVAL, 0 },
                { "Nov", -EINVAL, 0 },
                { "soon", -EINVAL, 0 },
                { "", -EINVAL, 0 },
                { "   ", -EINVAL, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint32_t wait = 77;

                print_message("  \"%s\"\n", cases[i].value);
                assert_int_equal(oauth_parse_retry_after(cases[i].value, now, &wait), cases[i].r);
                assert_int_equal(wait, cases[i].r == 0 ? cases[i].wait : 77);
        }
        assert_int_equal(oauth_parse_retry_after(NULL, now, &(uint32_t) { 0 }), -EINVAL);
}

/* 429/503: temporarily_unavailable unless the IdP named its own code; other statuses untouched. */
static void test_apply_retry_after(void **state) {
        const time_t now = 1700000000;
        struct oauth_result r;
        const char *b = "{\"error\":\"slow_down\"}";

        assert_int_equal(oauth_parse_token_response(503, "text/plain", (const uint8_t *) "busy", 4, 300, 3600, &r), 0);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        oauth_apply_retry_after(&r, "Tue, 14 Nov 2023 22:13:27 GMT", now);
        assert_int_equal(r.outcome, OAUTH_IDP_ERROR);
        assert_int_equal(r.http_status, 503);
        assert_string_equal(r.error_code, "temporarily_unavailable");
        assert_int_equal(r.retry_after, 7);
        assert_string_equal(r.description, "token endpoint answered HTTP 503: temporarily_unavailable; Retry-After 7 s");
        oauth_result_clear(&r);

        assert_int_equal(oauth_parse_token_response(429, "application/json", (const uint8_t *) b, strlen(b), 300, 3600,
                                                    &r), 0);
        oauth_apply_retry_after(&r, "soon", now); /* unusable: as if absent */
        assert_int_equal(r.outcome, OAUTH_IDP_ERROR);
        assert_string_equal(r.error_code, "slow_down");
        assert_int_equal(r.retry_after, 0);
        assert_string_equal(r.description, "token endpoint answered HTTP 429: slow_down");
        oauth_result_clear(&r);

        /* Not 429 or 503: nothing changes, whatever the header. */
        assert_int_equal(oauth_parse_token_response(500, NULL, NULL, 0, 300, 3600, &r), 0);
        oauth_apply_retry_after(&r, "5", now);
        assert_int_equal(r.outcome, OAUTH_BAD_RESPONSE);
        assert_int_equal(r.retry_after, 0);
        assert_string_equal(r.error_code, "");
        oauth_result_clear(&r);
}

static void test_fetch_redirect_not_followed(void **state) {
        int port, lfd = listen_loopback(&port);
        char headers[128];
        size_t alen;
        char *a;

        /* The redirect points at a second listener: if it were followed, a connection
         * would be waiting there afterwards. */
        snprintf(headers, sizeof headers, "Location: http://127.0.0.1:%d/token\r\n", port);
        a = http_answer("302 Found", headers, GOOD_BODY, strlen(GOOD_BODY), &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_BAD_RESPONSE, 302,
                            "token endpoint answered a redirect (not followed)", 5);
        assert_false(connection_pending(lfd));
        close(lfd);
        free(a);
}

static void test_fetch_oversize(void **state) {
        size_t n = OAUTH_RESPONSE_MAX + 1, alen;
        char *b = padded_body(n, "tok-big"), *a;

        a = http_answer("200 OK", "Content-Type: application/json\r\n", b, n, &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_BAD_RESPONSE, 200, "token endpoint response too large",
                            5);
        free(a);
        free(b);

        /* exactly the limit is still read */
        n = OAUTH_RESPONSE_MAX;
        b = padded_body(n, "tok-big");
        a = http_answer("200 OK", "Content-Type: application/json\r\n", b, n, &alen);
        check_fetch_outcome(SERVE_ANSWER, a, alen, 10, NULL, OAUTH_OK, 200, NULL, 5);
        free(a);
        free(b);
}

static void test_fetch_hang_up(void **state) {
        check_fetch_outcome(SERVE_HANG_UP, "", 0, 10, NULL, OAUTH_BAD_RESPONSE, 0,
                            "token endpoint closed the connection without answering", 5);
}

static void test_fetch_timeout(void **state) {
        check_fetch_outcome(SERVE_SILENT, "", 0, 1, NULL, OAUTH_TIMEOUT, 0, "token request timed out", 4);
}

static void test_fetch_abort(void **state) {
        static volatile int abort_flag = 1;

        /* timeout 10 s, but the flag is already up: the transfer stops at the first poll */
        check_fetch_outcome(SERVE_SILENT, "", 0, 10, &abort_flag, OAUTH_TIMEOUT, 0, "token request aborted", 4);
}

/* Debug logging of fetches: outcomes, a fingerprint of the token and an excerpt of a
 * non-JSON body appear; never a token, a secret, the Basic header or JSON body text. */
static void log_fetch(const char *answer_body, const char *content_type, const char *status_line,
                      enum client_auth auth, enum oauth_outcome outcome) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        struct server s;
        char headers[128], *answer, *got;
        size_t alen;
        int status;

        snprintf(headers, sizeof headers, "Content-Type: %s\r\n", content_type);
        answer = http_answer(status_line, headers, answer_body, strlen(answer_body), &alen);
        server_start(&s, SERVE_ANSWER, answer, alen, NULL);
        request_init(&req, s.url, auth, secret);
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        got = server_finish(&s, &status);
        assert_int_equal(r.outcome, outcome);
        oauth_result_clear(&r);
        free(got);
        free(answer);
}

static void test_fetch_logs(void **state) {
        char path[] = "/tmp/test-oauth-log-XXXXXX", fp[9], *log;
        int fd = mkstemp(path), saved = dup(STDERR_FILENO), level = log_get_max_level();
        struct stat st;
        ssize_t n;

        assert_true(fd >= 0);
        assert_true(saved >= 0);
        assert_int_equal(unlink(path), 0);
        fflush(stderr);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        log_set_max_level(LOG_DEBUG);

        log_fetch("{\"access_token\":\"tok-logged\",\"token_type\":\"Bearer\",\"expires_in\":60,\"x\":\"MARK\"}",
                  "application/json", "200 OK", CLIENT_AUTH_BASIC, OAUTH_OK);
        log_fetch("{\"access_token\":\"tok-logged\",\"token_type\":\"Bearer\",\"expires_in\":60}", "application/json",
                  "200 OK", CLIENT_AUTH_POST, OAUTH_OK);
        log_fetch("{\"error\":\"invalid_client\",\"error_description\":\"MARK " SECRET "\"}", "application/json",
                  "401 Unauthorized", CLIENT_AUTH_BASIC, OAUTH_IDP_ERROR);
        /* JSON, truncated: it may hold a token prefix, so no excerpt */
        log_fetch("{\"access_token\":\"tok-truncated-MARK", "application/json", "200 OK", CLIENT_AUTH_BASIC,
                  OAUTH_BAD_RESPONSE);
        log_fetch("{\"token_type\":\"mac\",\"access_token\":\"tok-wrongtype\"}", "application/json", "200 OK",
                  CLIENT_AUTH_BASIC, OAUTH_BAD_RESPONSE);
        /* HTML pages that echo the secret, raw, as the post body had it, or as the Basic
         * header had it: no excerpt either */
        log_fetch("<html>echo: " SECRET "</html>", "text/html", "400 Bad Request", CLIENT_AUTH_POST,
                  OAUTH_BAD_RESPONSE);
        log_fetch("<html>echo: client_secret=" SECRET_ENC "</html>", "text/html", "400 Bad Request", CLIENT_AUTH_POST,
                  OAUTH_BAD_RESPONSE);
        log_fetch("<html>echo: Authorization: " BASIC_EXPECTED "</html>", "text/html", "401 Unauthorized",
                  CLIENT_AUTH_BASIC, OAUTH_BAD_RESPONSE);
        /* a token answer form-encoded instead of JSON: refused, and not quoted */
        log_fetch("access_token=tok-form-MARK&token_type=bearer", "application/x-www-form-urlencoded", "200 OK",
                  CLIENT_AUTH_BASIC, OAUTH_BAD_RESPONSE);
        /* an ordinary HTML page: its beginning is quoted, escaped */
        log_fetch("<html>\"Please\" sign in\n</html>", "text/html", "200 OK", CLIENT_AUTH_BASIC, OAUTH_BAD_RESPONSE);

        log_set_max_level(level);
        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);

        assert_int_equal(fstat(fd, &st), 0);
        log = calloc(1, (size_t) st.st_size + 1);
        assert_non_null(log);
        n = pread(fd, log, (size_t) st.st_size, 0);
        assert_int_equal(n, st.st_size);
        close(fd);
        fputs(log, stdout);

        assert_non_null(strstr(log, "<html>\\\"Please\\\" sign in\\x0a</html>"));
        assert_non_null(strstr(log, log_fingerprint("tok-logged", strlen("tok-logged"), fp)));
        assert_null(strstr(log, "tok-"));
        assert_null(strstr(log, "MARK"));
        assert_null(strstr(log, "p@ss"));
        assert_null(strstr(log, SECRET_ENC));
        assert_null(strstr(log, "bXklM0Fj")); /* the Basic credentials */
        assert_null(strstr(log, "echo:"));
        free(log);
}

/* http:// to the IPv6 loopback literal [::1] is allowed like 127.0.0.0/8. */
static void test_fetch_ipv6_loopback(void **state) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        socklen_t alen = sizeof a;
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        struct server s;
        size_t answer_len;
        char *answer, *got;
        int lfd, status;

        lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &a, sizeof a) < 0) {
                if (lfd >= 0)
                        close(lfd);
                print_message("no IPv6 loopback here: %s\n", strerror(errno));
                skip();
        }
        assert_int_equal(listen(lfd, 4), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &a, &alen), 0);

        answer = http_answer("200 OK", "Content-Type: application/json\r\n", GOOD_BODY, strlen(GOOD_BODY), &answer_len);
        server_start_on(&s, lfd, "[::1]", ntohs(a.sin6_port), SERVE_ANSWER, answer, answer_len, NULL);
        request_init(&req, s.url, CLIENT_AUTH_POST, secret);
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        got = server_finish(&s, &status);
        assert_int_equal(r.outcome, OAUTH_OK);
        assert_string_equal(r.access_token, "tok-fetched");
        assert_true(strncmp(got, "POST /token HTTP/1.1\r\n", 22) == 0);
        oauth_result_clear(&r);
        free(got);
        free(answer);
}

static void test_fetch_refused(void **state) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        char url[64];
        int port, fd = listen_loopback(&port);

        close(fd); /* nothing listens there any more */
        snprintf(url, sizeof url, "http://127.0.0.1:%d/token", port);
        request_init(&req, url, CLIENT_AUTH_BASIC, secret);
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        assert_int_equal(r.outcome, OAUTH_UNREACHABLE);
        assert_int_equal(r.http_status, 0);
        assert_string_equal(r.description, "token endpoint connection refused");
        oauth_result_clear(&r);
}

/* URLs refused before any connection: a listener checks that nothing connected. */
static void check_url_refused(const char *prefix, const char *host, const char *suffix, bool allow_insecure_loopback,
                              const char *description) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        char url[128];
        int port, fd = listen_loopback(&port);

        snprintf(url, sizeof url, "%s%s:%d%s", prefix, host, port, suffix);
        request_init(&req, url, CLIENT_AUTH_BASIC, secret);
        req.allow_insecure_loopback = allow_insecure_loopback;
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        print_message("%s: %s\n", url, r.description);
        assert_int_equal(r.outcome, OAUTH_LOCAL_ERROR);
        assert_int_equal(r.http_status, 0);
        assert_string_equal(r.description, description);
        assert_false(connection_pending(fd));
        close(fd);
        oauth_result_clear(&r);
}

#define D_HTTPS "token_url must be https (http only to a loopback address with allow_insecure_loopback)"

static void test_fetch_url_checks(void **state) {
        check_url_refused("http://", "127.0.0.1", "/token", false, D_HTTPS);
        check_url_refused("http://", "localhost", "/token", true, D_HTTPS);
        /* local addresses, but not loopback ones: still refused, nothing connects */
        check_url_refused("http://", "0.0.0.0", "/token", true, D_HTTPS);
        check_url_refused("http://", "[::]", "/token", true, D_HTTPS);
        check_url_refused("http://", "[::ffff:127.0.0.1]", "/token", true, D_HTTPS);
        check_url_refused("ftp://", "127.0.0.1", "/token", true, D_HTTPS);
        check_url_refused("http://user:pw@", "127.0.0.1", "/token", true, "token_url must not carry user information");
        check_url_refused("http://", "127.0.0.1", "/token with space", true, "token_url is not a valid URL");
}

/* ---- TLS: a server with a certificate the client does not trust ---- */

static X509 *make_cert(EVP_PKEY *key, long serial, const char *san) {
        X509 *x = X509_new();
        X509_NAME *name;
        X509V3_CTX ctx;
        X509_EXTENSION *ext;

        assert_non_null(x);
        assert_int_equal(X509_set_version(x, 2), 1);
        assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
        assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
        assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
        assert_int_equal(X509_set_pubkey(x, key), 1);
        name = X509_get_subject_name(x);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) "credagent test",
                                                    -1, -1, 0), 1);
        assert_int_equal(X509_set_issuer_name(x, name), 1);
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
        assert_true(X509_sign(x, key, EVP_sha256()) > 0);
        return x;
}

static void write_cert(const char *path, X509 *x) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(PEM_write_X509(f, x), 1);
        assert_int_equal(fclose(f), 0);
}

enum tls_case {
        TLS_TRUSTED,    /* the CA file holds the server's certificate */
        TLS_UNTRUSTED,  /* the CA file holds another certificate */
        TLS_WRONG_HOST, /* trusted, but issued for another name than 127.0.0.1 */
};

static void check_fetch_tls(enum tls_case tc) {
        bool trusted = tc == TLS_TRUSTED;
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        char dir[] = "/tmp/test-oauth-XXXXXX", ca_path[64];
        EVP_PKEY *key = EVP_EC_gen("P-256"), *other_key = EVP_EC_gen("P-256");
        X509 *cert, *other;
        SSL_CTX *tls;
        struct oauth_request req;
        struct oauth_result r = {};
        struct server s;
        size_t alen;
        char *answer = http_answer("200 OK", "Content-Type: application/json\r\n", GOOD_BODY, strlen(GOOD_BODY), &alen);
        char *got;
        int status;

        assert_non_null(key);
        assert_non_null(other_key);
        cert = make_cert(key, 1, tc == TLS_WRONG_HOST ? "DNS:idp.invalid" : "IP:127.0.0.1");
        other = make_cert(other_key, 2, "IP:127.0.0.1");
        assert_non_null(mkdtemp(dir));
        snprintf(ca_path, sizeof ca_path, "%s/ca.pem", dir);
        /* trusted: the server's own certificate is the CA file; untrusted: another one,
         * same subject and address, different key */
        write_cert(ca_path, tc == TLS_UNTRUSTED ? other : cert);

        tls = SSL_CTX_new(TLS_server_method());
        assert_non_null(tls);
        assert_int_equal(SSL_CTX_use_certificate(tls, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(tls, key), 1);

        server_start(&s, SERVE_ANSWER, answer, alen, tls);
        request_init(&req, s.url, CLIENT_AUTH_BASIC, secret);
        req.allow_insecure_loopback = false; /* https needs no exception */
        req.ca_file = ca_path;
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        got = server_finish(&s, &status);
        print_message("TLS outcome %d: %s\n", r.outcome, r.description);

        if (trusted) {
                assert_int_equal(r.outcome, OAUTH_OK);
                assert_string_equal(r.access_token, "tok-fetched");
                assert_int_equal(status, 0);
                assert_header(got, "Authorization", BASIC_EXPECTED);
        } else {
                assert_int_equal(r.outcome, OAUTH_UNREACHABLE);
                assert_int_equal(r.http_status, 0);
                assert_string_equal(r.description, "TLS certificate verification failed");
                /* An untrusted chain fails the handshake (the server sees it fail too);
                 * libcurl checks the name after the handshake and then hangs up.  Either
                 * way not one request byte, so no secret, reached the server. */
                if (tc == TLS_UNTRUSTED)
                        assert_int_equal(status, 3);
                else
                        assert_true(status == 0 || status == 3);
                assert_string_equal(got, "");
        }

        oauth_result_clear(&r);
        free(got);
        free(answer);
        SSL_CTX_free(tls);
        X509_free(cert);
        X509_free(other);
        EVP_PKEY_free(key);
        EVP_PKEY_free(other_key);
        assert_int_equal(unlink(ca_path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_fetch_tls_untrusted(void **state) {
        check_fetch_tls(TLS_UNTRUSTED);
}

static void test_fetch_tls_wrong_host(void **state) {
        check_fetch_tls(TLS_WRONG_HOST);
}

static void test_fetch_tls_trusted(void **state) {
        check_fetch_tls(TLS_TRUSTED);
}

static void test_fetch_missing_ca_file(void **state) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_from_str(SECRET);
        struct oauth_request req;
        struct oauth_result r = {};
        char url[64];
        int port, fd = listen_loopback(&port);

        /* an https listener that never speaks TLS is not reached: the CA file is loaded first */
        snprintf(url, sizeof url, "https://127.0.0.1:%d/token", port);
        request_init(&req, url, CLIENT_AUTH_BASIC, secret);
        req.ca_file = "/nonexistent/credagent-test-ca.pem";
        req.timeout = 3;
        assert_int_equal(oauth_fetch(&req, NULL, &r), 0);
        print_message("missing CA: %d %s\n", r.outcome, r.description);
        assert_int_equal(r.outcome, OAUTH_LOCAL_ERROR);
        assert_string_equal(r.description, "CA file could not be loaded");
        close(fd);
        oauth_result_clear(&r);
}

static int setup(void **state) {
        signal(SIGPIPE, SIG_IGN);
        return oauth_global_init() == 0 ? 0 : -1;
}

static int teardown(void **state) {
        oauth_global_cleanup();
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_urlencode_secret),
                cmocka_unit_test(test_urlencode_bytes),
                cmocka_unit_test(test_urlencode_empty),
                cmocka_unit_test(test_urlencode_emsgsize),
                cmocka_unit_test(test_basic_header),
                cmocka_unit_test(test_basic_empty_secret),
                cmocka_unit_test(test_basic_utf8),
                cmocka_unit_test(test_basic_long_no_newlines),
                cmocka_unit_test(test_basic_emsgsize),
                cmocka_unit_test(test_body_basic),
                cmocka_unit_test(test_body_post),
                cmocka_unit_test(test_body_post_needs_id),
                cmocka_unit_test(test_body_private_key_jwt),
                cmocka_unit_test(test_parse_cases),
                cmocka_unit_test(test_parse_size_limits),
                cmocka_unit_test(test_parse_depth_bomb),
                cmocka_unit_test(test_parse_null_body),
                cmocka_unit_test(test_fetch_basic),
                cmocka_unit_test(test_fetch_post),
                cmocka_unit_test(test_fetch_private_key_jwt),
                cmocka_unit_test(test_fetch_idp_error),
                cmocka_unit_test(test_fetch_html),
                cmocka_unit_test(test_fetch_5xx),
                cmocka_unit_test(test_retry_after),
                cmocka_unit_test(test_apply_retry_after),
                cmocka_unit_test(test_fetch_redirect_not_followed),
                cmocka_unit_test(test_fetch_oversize),
                cmocka_unit_test(test_fetch_hang_up),
                cmocka_unit_test(test_fetch_timeout),
                cmocka_unit_test(test_fetch_abort),
                cmocka_unit_test(test_fetch_ipv6_loopback),
                cmocka_unit_test(test_fetch_refused),
                cmocka_unit_test(test_fetch_logs),
                cmocka_unit_test(test_fetch_url_checks),
                cmocka_unit_test(test_fetch_tls_untrusted),
                cmocka_unit_test(test_fetch_tls_wrong_host),
                cmocka_unit_test(test_fetch_tls_trusted),
                cmocka_unit_test(test_fetch_missing_ca_file),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
