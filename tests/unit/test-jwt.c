/* SPDX-License-Identifier: ISC */
/* agent/jwt.c: base64url, the assertion net builds and the check hsm makes before signing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/jwt.h"

#define NOW INT64_C(1700000000)
#define CLIENT "billing-batch"
#define AUD "https://idp.example.com/oauth2/token"
#define JTI "AAAAAAAAAAAAAAAAAAAAAA"

/* ---- helpers ---- */

static char *b64(const char *s) {
        char *out = NULL;

        assert_int_equal(jwt_base64url_encode(s, strlen(s), &out), 0);
        return out;
}

/* "b64url(HEADER).b64url(CLAIMS)" from raw JSON texts. */
static char *input_of(const char *header, const char *claims) {
        char *h = b64(header), *c = b64(claims), *s = NULL;

        assert_true(asprintf(&s, "%s.%s", h, c) > 0);
        free(h);
        free(c);
        return s;
}

static int check(const char *input, enum hsm_alg alg, int64_t now, const char **why) {
        return jwt_check_signing_input(input, strlen(input), CLIENT, AUD, alg, now, why);
}

static void expect_verdict(const char *header, const char *claims, int expected, const char *reason_part) {
        char *in = input_of(header, claims);
        const char *why = NULL;
        int r = check(in, HSM_ALG_ES256, NOW, &why);

        if (r != expected)
                print_error("check(%s . %s) = %d (%s), expected %d\n", header, claims, r, why ?: "", expected);
        assert_int_equal(r, expected);
        if (reason_part) {
                assert_non_null(why);
                if (!strstr(why, reason_part))
                        print_error("reason \"%s\" lacks \"%s\"\n", why, reason_part);
                assert_non_null(strstr(why, reason_part));
        }
        free(in);
}

static const char good_header[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
#define CLAIMS(iss, sub, aud, iat, exp, jti) \
        "{\"iss\":\"" iss "\",\"sub\":\"" sub "\",\"aud\":\"" aud "\",\"iat\":" iat ",\"exp\":" exp ",\"jti\":\"" jti "\"}"
static const char good_claims[] = CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1700000060", JTI);

/* ---- base64url ---- */

static void test_base64url_vectors(void **state) {
        /* RFC 4648 §10, without padding, and the two characters base64url changes. */
        static const struct {
                const char *plain;
                size_t len;
                const char *enc;
        } v[] = {
                { "", 0, "" },         { "f", 1, "Zg" },          { "fo", 2, "Zm8" },
                { "foo", 3, "Zm9v" },  { "foob", 4, "Zm9vYg" },   { "fooba", 5, "Zm9vYmE" },
                { "foobar", 6, "Zm9vYmFy" }, { "\xfb\xff", 2, "-_8" }, { "\xff\xfe\xfd", 3, "__79" },
                { "\0\0", 2, "AAA" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                char *enc = NULL;
                uint8_t *dec = NULL;
                size_t n = 99;

                assert_int_equal(jwt_base64url_encode(v[i].plain, v[i].len, &enc), 0);
                assert_string_equal(enc, v[i].enc);
                assert_int_equal(jwt_base64url_decode(enc, strlen(enc), &dec, &n), 0);
                assert_int_equal(n, v[i].len);
                assert_memory_equal(dec, v[i].plain, n);
                assert_int_equal(dec[n], '\0');
                free(enc);
                free(dec);
        }
}

static void test_base64url_strict(void **state) {
        static const char *const bad[] = {
                "Zg=",  "Zg==", "Z",    "Zh",      /* padding; a lone char; stray bits in 'h' */
                "Zm9", "Zm9v\n", " Zm9v", "Zm+v",  /* "Zm9" has stray bits; whitespace; base64 '+' */
                "Zm/v", "Zm9v.", "Z m9",
        };
        uint8_t *dec = (uint8_t *) 0x1;
        size_t n = 7;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = jwt_base64url_decode(bad[i], strlen(bad[i]), &dec, &n);
                if (r != -EBADMSG)
                        print_error("\"%s\" decoded (%d)\n", bad[i], r);
                assert_int_equal(r, -EBADMSG);
        }
        assert_int_equal(jwt_base64url_decode("Zm\0v", 4, &dec, &n), -EBADMSG);
        assert_ptr_equal(dec, (uint8_t *) 0x1);
        assert_int_equal(n, 7);
}

static void test_base64url_append_cap(void **state) {
        struct secbuf *b = secbuf_new(4);

        assert_non_null(b);
        assert_int_equal(jwt_base64url_append("foo", 3, b), 0);
        assert_string_equal((char *) b->data, "Zm9v");
        assert_int_equal(jwt_base64url_append("f", 1, b), -EMSGSIZE);
        assert_int_equal(b->len, 4);
        secbuf_free(b);
}

/* ---- what net builds ---- */

static void test_header_json(void **state) {
        char *s = NULL;

        assert_int_equal(jwt_header_json(HSM_ALG_ES256, NULL, &s), 0);
        assert_string_equal(s, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
        free(s);
        assert_int_equal(jwt_header_json(HSM_ALG_PS256, "k/1 \"x\"", &s), 0);
        assert_string_equal(s, "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"kid\":\"k/1 \\\"x\\\"\"}");
        free(s);
        s = (char *) 0x1;
        assert_int_equal(jwt_header_json(HSM_ALG_NONE, NULL, &s), -EINVAL);
        assert_int_equal(jwt_header_json(HSM_ALG_RS256, "", &s), -EINVAL);
        assert_int_equal(jwt_header_json(HSM_ALG_RS256, "tab\there", &s), -EINVAL);
        assert_ptr_equal(s, (char *) 0x1);
}

static void test_claims_json(void **state) {
        struct jwt_claims c = { .client_id = CLIENT, .audience = AUD, .iat = NOW, .exp = NOW + 60, .jti = JTI };
        char *s = NULL;

        assert_int_equal(jwt_claims_json(&c, &s), 0);
        assert_string_equal(s, good_claims);
        free(s);
        c.jti = "short";
        assert_int_equal(jwt_claims_json(&c, &s), -EINVAL);
        c.jti = "has.a.dot.in.it.xxxxxxx";
        assert_int_equal(jwt_claims_json(&c, &s), -EINVAL);
        c.jti = JTI;
        c.audience = "";
        assert_int_equal(jwt_claims_json(&c, &s), -EINVAL);
        c.audience = NULL;
        assert_int_equal(jwt_claims_json(&c, &s), -EINVAL);
}

static void test_jti_random(void **state) {
        enum { N = 2000 };
        static char seen[N][JWT_JTI_LEN + 1];

        for (size_t i = 0; i < N; i++) {
                assert_int_equal(jwt_new_jti(seen[i]), 0);
                assert_int_equal(strlen(seen[i]), JWT_JTI_LEN);
                for (size_t k = 0; k < JWT_JTI_LEN; k++)
                        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                                               seen[i][k]));
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(seen[i], seen[j]);
        }
}

static void test_signing_input_and_assemble(void **state) {
        struct jwt_claims c = { .client_id = CLIENT, .audience = AUD, .iat = NOW, .exp = NOW + 60, .jti = JTI };
        struct secbuf *in = NULL, *jws = NULL;
        char *want = input_of("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"key-1\"}", good_claims);
        uint8_t sig[] = { 0xfb, 0xff, 0x00 };
        const char *why = NULL;

        assert_int_equal(jwt_signing_input(HSM_ALG_RS256, "key-1", &c, &in), 0);
        assert_string_equal((char *) in->data, want);
        /* What net builds is what hsm accepts, for the same grant. */
        assert_int_equal(jwt_check_signing_input((char *) in->data, in->len, CLIENT, AUD, HSM_ALG_RS256, NOW, &why), 0);
        assert_int_equal(jwt_assemble(in, sig, sizeof sig, &jws), 0);
        assert_int_equal(jws->len, in->len + 1 + 4);
        assert_memory_equal(jws->data, in->data, in->len);
        assert_string_equal((char *) jws->data + in->len, ".-_8A");
        assert_int_equal(jwt_assemble(in, sig, 0, &jws), -EINVAL);
        secbuf_free(in);
        secbuf_free(jws);
        free(want);
}

/* ---- what hsm signs ---- */

static void test_check_accepts(void **state) {
        const char *why = "untouched";

        expect_verdict(good_header, good_claims, 0, NULL);
        expect_verdict("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"any kid\"}", good_claims, 0, NULL);
        /* The bounds themselves: 300 s, iat 60 s ahead, exp 59 s behind. */
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1700000300", JTI), 0, NULL);
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000060", "1700000061", JTI), 0, NULL);
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1699999900", "1699999941", JTI), 0, NULL);
        {
                char *in = input_of(good_header, good_claims);
                assert_int_equal(check(in, HSM_ALG_ES256, NOW, &why), 0);
                assert_string_equal(why, "untouched");
                free(in);
        }
}

static void test_check_refuses_other_claims(void **state) {
        /* Another client, audience, or times out of bounds: -EPERM. */
        expect_verdict(good_header, CLAIMS("other", "other", AUD, "1700000000", "1700000060", JTI), -EPERM, "iss or sub");
        expect_verdict(good_header, CLAIMS(CLIENT, "other", AUD, "1700000000", "1700000060", JTI), -EPERM, "iss or sub");
        expect_verdict(good_header, CLAIMS("other", CLIENT, AUD, "1700000000", "1700000060", JTI), -EPERM, "iss or sub");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, "https://evil.example/token", "1700000000", "1700000060", JTI),
                     -EPERM, "aud");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1700000301", JTI), -EPERM, "exp - iat");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1700000000", JTI), -EPERM, "exp - iat");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1699999999", JTI), -EPERM, "exp - iat");
        /* A far-future assertion (a short lifetime, but a year from now). */
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1731536000", "1731536060", JTI), -EPERM, "future");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1700000061", "1700000062", JTI), -EPERM, "future");
        expect_verdict(good_header, CLAIMS(CLIENT, CLIENT, AUD, "1699999800", "1699999940", JTI), -EPERM, "past");
        /* Another algorithm than the key's. */
        expect_verdict("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", good_claims, -EPERM, "alg");
        expect_verdict("{\"alg\":\"none\",\"typ\":\"JWT\"}", good_claims, -EPERM, "alg");
        expect_verdict("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", good_claims, -EPERM, "alg");
}

static void test_check_refuses_other_forms(void **state) {
        /* Anything but the exact bytes credagent writes: -EBADMSG. */
        static const char *const headers[] = {
                "{\"typ\":\"JWT\",\"alg\":\"ES256\"}",                   /* order */
                "{\"alg\":\"ES256\"}",                                   /* no typ */
                "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"crit\":[\"x\"]}",  /* extra member */
                "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"jku\":\"https://x\"}",
                "{\"alg\": \"ES256\",\"typ\":\"JWT\"}",                  /* whitespace */
                "{\"alg\":\"ES256\",\"typ\":\"jwt\"}",
                "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"\"}",
                "{\"alg\":\"ES256\",\"typ\":\"JWT\"} ",
                "[\"ES256\"]",
                "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"typ\":\"JWT\"}",    /* duplicate member */
                "{\"alg\":\"\\u0045S256\",\"typ\":\"JWT\"}",             /* an escape */
        };
        static const char *const claims[] = {
                CLAIMS(CLIENT, CLIENT, AUD, "1700000000", "1700000060", "short"),
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" AUD "\",\"iat\":1700000000,\"exp\":1700000060}",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" AUD
                "\",\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\",\"scope\":\"admin\"}",
                "{\"sub\":\"" CLIENT "\",\"iss\":\"" CLIENT "\",\"aud\":\"" AUD
                "\",\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                /* Duplicate aud: json-c keeps the last, an IdP might read the first. */
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"https://evil.example/\",\"aud\":\"" AUD
                "\",\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":[\"" AUD
                "\"],\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" AUD
                "\",\"iat\":\"1700000000\",\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" AUD
                "\",\"iat\":1700000000.0,\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" AUD
                "\",\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\"}\n",
                "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"https:\\/\\/idp.example.com\\/oauth2\\/token"
                "\",\"iat\":1700000000,\"exp\":1700000060,\"jti\":\"" JTI "\"}",
                "not json",
                "",
        };

        for (size_t i = 0; i < ELEMENTSOF(headers); i++)
                expect_verdict(headers[i], good_claims, -EBADMSG, NULL);
        for (size_t i = 0; i < ELEMENTSOF(claims); i++)
                expect_verdict(good_header, claims[i], -EBADMSG, NULL);
}

static void test_check_refuses_bad_framing(void **state) {
        char *good = input_of(good_header, good_claims), *s = NULL;
        size_t n = strlen(good);
        const char *why = NULL;
        char big[JWT_SIGNING_INPUT_MAX + 2];

        /* Padding, a third part (a whole JWS), a missing part, a stray character. */
        assert_true(asprintf(&s, "%s=", good) > 0);
        assert_int_equal(check(s, HSM_ALG_ES256, NOW, &why), -EBADMSG);
        free(s);
        assert_true(asprintf(&s, "%s.c2ln", good) > 0);
        assert_int_equal(check(s, HSM_ALG_ES256, NOW, &why), -EBADMSG);
        assert_string_equal(why, "not two base64url parts joined by one dot");
        free(s);
        assert_int_equal(check(strchr(good, '.'), HSM_ALG_ES256, NOW, &why), -EBADMSG);
        good[n - 1] = '\0';
        assert_true(asprintf(&s, "%s.", good) > 0);
        assert_int_equal(check(s, HSM_ALG_ES256, NOW, &why), -EBADMSG);
        free(s);
        assert_int_equal(check("", HSM_ALG_ES256, NOW, &why), -EBADMSG);
        /* The length counts, not a NUL. */
        good[n - 1] = 'Q';
        assert_int_equal(jwt_check_signing_input(good, n - 3, CLIENT, AUD, HSM_ALG_ES256, NOW, &why), -EBADMSG);
        memset(big, 'A', sizeof big - 1);
        big[10] = '.';
        big[sizeof big - 1] = '\0';
        assert_int_equal(check(big, HSM_ALG_ES256, NOW, &why), -EBADMSG);
        /* A grant for no algorithm signs nothing. */
        free(good);
        good = input_of(good_header, good_claims);
        assert_int_equal(check(good, HSM_ALG_NONE, NOW, &why), -EBADMSG);
        free(good);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64url_vectors),
                cmocka_unit_test(test_base64url_strict),
                cmocka_unit_test(test_base64url_append_cap),
                cmocka_unit_test(test_header_json),
                cmocka_unit_test(test_claims_json),
                cmocka_unit_test(test_jti_random),
                cmocka_unit_test(test_signing_input_and_assemble),
                cmocka_unit_test(test_check_accepts),
                cmocka_unit_test(test_check_refuses_other_claims),
                cmocka_unit_test(test_check_refuses_other_forms),
                cmocka_unit_test(test_check_refuses_bad_framing),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
