/* SPDX-License-Identifier: ISC */
/* The token request's extra parameters (audience, resource, token_params) byte for byte,
 * and the discovery document (agent/discovery.h): URLs and parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/discovery.h"
#include "agent/oauth.h"
#include "secmem.h"

/* ---- token_params ---- */

static void check_params(const char *text, const char *normal) {
        char why[256] = "untouched";
        char *out = NULL;

        assert_int_equal(oauth_token_params_parse(text, &out, why, sizeof why), 0);
        assert_string_equal(out, normal);
        assert_string_equal(why, "untouched");
        free(out);
}

static void check_params_refused(const char *text, int error, const char *why_part) {
        char why[256] = "";
        char *out = (char *) "untouched";

        assert_int_equal(oauth_token_params_parse(text, &out, why, sizeof why), error);
        assert_string_equal(out, "untouched");
        if (why_part && !strstr(why, why_part))
                fail_msg("\"%s\" does not say \"%s\"", why, why_part);
}

static void test_params_parse(void **state) {
        check_params("", "");
        check_params("  & \t", "");
        check_params("tenant=a1", "tenant=a1");
        check_params("a=1 b=2", "a=1 b=2");
        check_params("a=1&b=2", "a=1 b=2");
        check_params("  a=1 &&  b=2\t", "a=1 b=2");
        check_params("empty=", "empty=");
        check_params("x=a=b", "x=a=b");                 /* the value is everything after the first '=' */
        check_params("k%41=v%20w+x", "k%41=v%20w+x");   /* literal: encoded on the wire */
        check_params("Client_Identity=1", "Client_Identity=1");
        check_params("client_assertio=1", "client_assertio=1");
        check_params("myscope=1 resources=2", "myscope=1 resources=2");
}

static void test_params_refused(void **state) {
        char big[OAUTH_PARAMS_MAX + 8];
        char many[70 * 8];
        size_t o = 0;

        check_params_refused("novalue", -EINVAL, "\"novalue\" is not a pair key=value");
        check_params_refused("=v", -EINVAL, "not a pair");
        check_params_refused("a=1 b", -EINVAL, "\"b\" is not a pair");
        check_params_refused("a=1 a=2", -EINVAL, "\"a\" is given twice");
        check_params_refused("a=\x01", -EINVAL, "byte 0x01");
        check_params_refused("a=caf\xc3\xa9", -EINVAL, "byte 0xc3");
        /* The grant's own parameters, whatever their case. */
        check_params_refused("grant_type=password", -EINVAL, "\"grant_type\" is a parameter of the grant itself");
        check_params_refused("client_id=x", -EINVAL, "\"client_id\"");
        check_params_refused("CLIENT_SECRET=x", -EINVAL, "\"CLIENT_SECRET\"");
        check_params_refused("client_assertion=x", -EINVAL, "\"client_assertion\"");
        check_params_refused("client_assertion_type=x", -EINVAL, "\"client_assertion_type\"");
        check_params_refused("Scope=x", -EINVAL, "\"Scope\"");
        check_params_refused("a=1&resource=https://x", -EINVAL, "\"resource\"");
        check_params_refused("audience=x", -EINVAL, "\"audience\"");

        memset(big, 'v', sizeof big - 1);
        big[0] = 'k';
        big[1] = '=';
        big[sizeof big - 1] = '\0';
        check_params_refused(big, -EMSGSIZE, "longer than 4096 bytes");
        big[OAUTH_PARAMS_MAX] = '\0';
        check_params(big, big);

        for (unsigned i = 0; i < OAUTH_PARAMS_PAIRS_MAX + 1; i++)
                o += (size_t) snprintf(many + o, sizeof many - o, "k%u=1 ", i);
        check_params_refused(many, -EINVAL, "more than 64 pairs");
}

/* ---- the body ---- */

#define SECRET "p@ss:w/rd+%&=? ~;x"
#define SECRET_ENC "p%40ss%3Aw%2Frd%2B%25%26%3D%3F+%7E%3Bx"

static int body(enum client_auth auth, const char *scope, const char *audience, const char *resource,
                const char *params, struct secbuf **ret) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_new(64);
        struct oauth_request req = {
                .token_url = "https://idp.invalid/token",
                .client_auth = auth,
                .client_id = "my:client",
                .client_secret = secret,
                .scope = scope,
                .audience = audience,
                .resource = resource,
                .token_params = params,
        };

        assert_int_equal(secbuf_append_str(secret, SECRET), 0);
        return oauth_token_request_body(&req, ret);
}

static void check_body(enum client_auth auth, const char *scope, const char *audience, const char *resource,
                       const char *params, const char *expected) {
        struct secbuf *b = NULL;

        assert_int_equal(body(auth, scope, audience, resource, params, &b), 0);
        assert_string_equal((const char *) b->data, expected);
        assert_int_equal(b->len, strlen(expected));
        secbuf_free(b);
}

static void test_body_extras(void **state) {
        /* None of them, or empty: the body of before. */
        check_body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, NULL, "grant_type=client_credentials");
        check_body(CLIENT_AUTH_BASIC, NULL, "", "", "", "grant_type=client_credentials");

        check_body(CLIENT_AUTH_BASIC, NULL, "https://api.example.com", NULL, NULL,
                   "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com");
        /* RFC 8707 §2: one resource parameter per indicator, in the configured order. */
        check_body(CLIENT_AUTH_BASIC, "read", NULL, "https://a.example/v1 https://b.example/x?y=1", NULL,
                   "grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fa.example%2Fv1"
                   "&resource=https%3A%2F%2Fb.example%2Fx%3Fy%3D1");
        check_body(CLIENT_AUTH_BASIC, NULL, NULL, "urn:example:api", NULL,
                   "grant_type=client_credentials&resource=urn%3Aexample%3Aapi");
        /* token_params: keys and values form-urlencoded, in their order. */
        check_body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "tenant=a1 x=a=b k%41=v~w",
                   "grant_type=client_credentials&tenant=a1&x=a%3Db&k%2541=v%7Ew");
        check_body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "empty=", "grant_type=client_credentials&empty=");

        /* All of them, with client_secret_post: the client's own parameters come last. */
        check_body(CLIENT_AUTH_POST, "read write", "api://billing", "https://r.example", "tenant=t1 region=eu",
                   "grant_type=client_credentials&scope=read+write&audience=api%3A%2F%2Fbilling"
                   "&resource=https%3A%2F%2Fr.example&tenant=t1&region=eu"
                   "&client_id=my%3Aclient&client_secret=" SECRET_ENC);
}

static void test_body_extras_refused(void **state) {
        struct secbuf *b = NULL;

        /* token_params that are not the normal form, or that name the grant's parameters. */
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "a=1&b=2", &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "a=1  b=2", &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "client_secret=x", &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "grant_type=password", &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, NULL, "novalue", &b), -EINVAL);
        /* A resource list with an empty item. */
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, " https://a", NULL, &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, "https://a ", NULL, &b), -EINVAL);
        assert_int_equal(body(CLIENT_AUTH_BASIC, NULL, NULL, "https://a  https://b", NULL, &b), -EINVAL);
        assert_null(b);
}

/* ---- discovery ---- */

static void check_urls(const char *issuer, const char *rfc, const char *oidc) {
        char *a = NULL, *b = NULL;

        assert_int_equal(discovery_urls(issuer, &a, &b), 0);
        assert_string_equal(a, rfc);
        assert_string_equal(b, oidc);
        free(a);
        free(b);
}

static void test_discovery_urls(void **state) {
        char *a = (char *) "untouched", *b = (char *) "untouched";

        check_urls("https://idp.example.com", "https://idp.example.com/.well-known/oauth-authorization-server",
                   "https://idp.example.com/.well-known/openid-configuration");
        check_urls("https://idp.example.com/", "https://idp.example.com/.well-known/oauth-authorization-server",
                   "https://idp.example.com/.well-known/openid-configuration");
        /* RFC 8414 §3.1: inserted between host and path; OIDC Discovery §4: appended. */
        check_urls("https://idp.example.com:8443/tenants/t1",
                   "https://idp.example.com:8443/.well-known/oauth-authorization-server/tenants/t1",
                   "https://idp.example.com:8443/tenants/t1/.well-known/openid-configuration");
        check_urls("https://idp.example.com/realms/x/", "https://idp.example.com/.well-known/oauth-authorization-server/realms/x",
                   "https://idp.example.com/realms/x/.well-known/openid-configuration");
        check_urls("http://127.0.0.1:8080", "http://127.0.0.1:8080/.well-known/oauth-authorization-server",
                   "http://127.0.0.1:8080/.well-known/openid-configuration");

        assert_int_equal(discovery_urls("https://idp.example.com/?x=1", &a, &b), -EINVAL);
        assert_int_equal(discovery_urls("https://idp.example.com/#f", &a, &b), -EINVAL);
        assert_int_equal(discovery_urls("ftp://idp.example.com", &a, &b), -EINVAL);
        assert_int_equal(discovery_urls("not a url", &a, &b), -EINVAL);
        assert_int_equal(discovery_urls(NULL, &a, &b), -EINVAL);
        assert_string_equal(a, "untouched");
        assert_string_equal(b, "untouched");
}

#define ISSUER "https://idp.example.com"

static int parse(const char *json, bool insecure, struct discovery_doc *d, char *why, size_t size) {
        return discovery_parse(ISSUER, insecure, (const uint8_t *) json, strlen(json), d, why, size);
}

static void check_refused(const char *json, const char *why_part) {
        struct discovery_doc d;
        char why[256] = "";

        memset(&d, 0xa5, sizeof d);
        assert_int_equal(parse(json, false, &d, why, sizeof why), -EBADMSG);
        assert_null(d.issuer);
        assert_null(d.token_endpoint);
        assert_null(d.auth_methods);
        if (!strstr(why, why_part))
                fail_msg("\"%s\" does not say \"%s\"", why, why_part);
}

static void test_discovery_parse(void **state) {
        struct discovery_doc d = {};
        char why[256] = "";

        assert_int_equal(parse("{\"issuer\": \"" ISSUER "\", \"token_endpoint\": \"" ISSUER "/oauth2/token\","
                               " \"token_endpoint_auth_methods_supported\": [\"client_secret_basic\", \"private_key_jwt\"],"
                               " \"jwks_uri\": \"" ISSUER "/jwks\", \"scopes_supported\": [\"a\"]}",
                               false, &d, why, sizeof why),
                         0);
        assert_string_equal(d.issuer, ISSUER);
        assert_string_equal(d.token_endpoint, ISSUER "/oauth2/token");
        assert_string_equal(d.auth_methods[0], "client_secret_basic");
        assert_string_equal(d.auth_methods[1], "private_key_jwt");
        assert_null(d.auth_methods[2]);
        assert_true(discovery_allows(&d, CLIENT_AUTH_BASIC));
        assert_false(discovery_allows(&d, CLIENT_AUTH_POST));
        assert_true(discovery_allows(&d, CLIENT_AUTH_PRIVATE_KEY_JWT));
        discovery_doc_clear(&d);

        /* No methods list: nothing to check against. */
        assert_int_equal(parse("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token\"}", false, &d,
                               why, sizeof why),
                         0);
        assert_null(d.auth_methods);
        assert_true(discovery_allows(&d, CLIENT_AUTH_POST));
        discovery_doc_clear(&d);
        assert_int_equal(parse("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token\","
                               "\"token_endpoint_auth_methods_supported\":null}", false, &d, why, sizeof why),
                         0);
        assert_null(d.auth_methods);
        discovery_doc_clear(&d);
        /* An empty list allows nothing. */
        assert_int_equal(parse("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token\","
                               "\"token_endpoint_auth_methods_supported\":[]}", false, &d, why, sizeof why),
                         0);
        assert_false(discovery_allows(&d, CLIENT_AUTH_BASIC));
        discovery_doc_clear(&d);

        /* http only to a loopback literal, and only when allowed. */
        assert_int_equal(parse("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"http://127.0.0.1:8080/token\"}", true,
                               &d, why, sizeof why),
                         0);
        discovery_doc_clear(&d);
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"http://127.0.0.1:8080/token\"}",
                      "is not an https URL");

        assert_string_equal(discovery_auth_method_name(CLIENT_AUTH_BASIC), "client_secret_basic");
        assert_string_equal(discovery_auth_method_name(CLIENT_AUTH_POST), "client_secret_post");
        assert_string_equal(discovery_auth_method_name(CLIENT_AUTH_PRIVATE_KEY_JWT), "private_key_jwt");
}

static void test_discovery_refused(void **state) {
        struct discovery_doc d = {};
        char why[256] = "";

        check_refused("", "empty");
        check_refused("[]", "not a JSON object");
        check_refused("{\"issuer\":\"" ISSUER "\"} x", "not a JSON object");
        check_refused("<html>", "not a JSON object");
        check_refused("{\"token_endpoint\":\"https://t.example/token\"}", "has no issuer");
        check_refused("{\"issuer\":7,\"token_endpoint\":\"https://t.example/token\"}", "has no issuer");
        /* RFC 8414 §3.3: identical, not merely equivalent. */
        check_refused("{\"issuer\":\"https://evil.example\",\"token_endpoint\":\"https://t.example/token\"}",
                      "names the issuer \"https://evil.example\", not the configured one");
        check_refused("{\"issuer\":\"" ISSUER "/\",\"token_endpoint\":\"https://t.example/token\"}",
                      "not the configured one");
        check_refused("{\"issuer\":\"HTTPS://idp.example.com\",\"token_endpoint\":\"https://t.example/token\"}",
                      "not the configured one");
        check_refused("{\"issuer\":\"" ISSUER "\"}", "has no token_endpoint");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":[]}", "has no token_endpoint");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"ftp://t.example/token\"}", "not an https URL");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://u:p@t.example/token\"}",
                      "not an https URL");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token#x\"}",
                      "not an https URL");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/\\u0000x\"}",
                      "not an https URL");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token\","
                      "\"token_endpoint_auth_methods_supported\":\"client_secret_basic\"}",
                      "is not an array");
        check_refused("{\"issuer\":\"" ISSUER "\",\"token_endpoint\":\"https://t.example/token\","
                      "\"token_endpoint_auth_methods_supported\":[\"a\",1]}",
                      "holds a non-string");
        /* The issuer quoted from the document is escaped. */
        check_refused("{\"issuer\":\"https://x\\n\\\"y\",\"token_endpoint\":\"https://t.example/token\"}",
                      "\"https://x\\x0a\\\"y\"");

        assert_int_equal(discovery_parse(NULL, false, (const uint8_t *) "{}", 2, &d, why, sizeof why), -EBADMSG);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_params_parse),
                cmocka_unit_test(test_params_refused),
                cmocka_unit_test(test_body_extras),
                cmocka_unit_test(test_body_extras_refused),
                cmocka_unit_test(test_discovery_urls),
                cmocka_unit_test(test_discovery_parse),
                cmocka_unit_test(test_discovery_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
