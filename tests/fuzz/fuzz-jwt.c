/* SPDX-License-Identifier: ISC */
/* agent/jwt.h: jwt_check_signing_input(), what hsm checks before it signs for net, and
 * jwt_base64url_decode().  Input: byte 0 picks the algorithm the grant names (low 2 bits) and
 * the clock (bits 2-3: exactly the claims' time, 61 s later, 300 s earlier, far later); the rest
 * is the signing input.  The grant is fixed (client "billing-batch", audience
 * "https://idp.example.com/oauth2/token").  Oracles: the result is 0, -EBADMSG, -EPERM or
 * -ENOMEM with a reason on failure; an accepted input is exactly what jwt_signing_input() builds
 * from the claims it carries (so hsm signs nothing net could have shaped otherwise), within the
 * time bounds; base64url decoding is canonical (decode then encode gives the input back). */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "agent/jwt.h"
#include "fuzz.h"

#define CLIENT "billing-batch"
#define AUD "https://idp.example.com/oauth2/token"
#define T0 INT64_C(1700000000)

static const int64_t clocks[] = { T0, T0 + 61, T0 - 300, T0 + 100000 };

/* Re-decodes an accepted INPUT and rebuilds it with jwt_signing_input(). */
static void check_accepted(const char *input, size_t len, enum hsm_alg alg, int64_t now) {
        const char *dot = memchr(input, '.', len);
        uint8_t *h = NULL, *c = NULL;
        size_t hn, cn;
        struct json_object *ho, *co, *v;
        struct jwt_claims claims = { .client_id = CLIENT, .audience = AUD };
        const char *kid = NULL;
        struct secbuf *again = NULL;

        FUZZ_CHECK(dot);
        FUZZ_CHECK(jwt_base64url_decode(input, (size_t) (dot - input), &h, &hn) == 0);
        FUZZ_CHECK(jwt_base64url_decode(dot + 1, len - (size_t) (dot + 1 - input), &c, &cn) == 0);
        ho = json_tokener_parse((const char *) h);
        co = json_tokener_parse((const char *) c);
        FUZZ_CHECK(ho && co);
        if (json_object_object_get_ex(ho, "kid", &v))
                kid = json_object_get_string(v);
        FUZZ_CHECK(json_object_object_get_ex(co, "iat", &v));
        claims.iat = json_object_get_int64(v);
        FUZZ_CHECK(json_object_object_get_ex(co, "exp", &v));
        claims.exp = json_object_get_int64(v);
        FUZZ_CHECK(json_object_object_get_ex(co, "jti", &v));
        claims.jti = json_object_get_string(v);
        FUZZ_CHECK(claims.exp > claims.iat && claims.exp - claims.iat <= JWT_LIFETIME_MAX);
        FUZZ_CHECK(claims.iat <= now + JWT_CLOCK_SKEW && claims.exp > now - JWT_CLOCK_SKEW);
        FUZZ_CHECK(jwt_signing_input(alg, kid, &claims, &again) == 0);
        FUZZ_CHECK(again->len == len && memcmp(again->data, input, len) == 0);
        secbuf_free(again);
        json_object_put(ho);
        json_object_put(co);
        free(h);
        free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        enum hsm_alg alg;
        const char *why = NULL, *input;
        int64_t now;
        uint8_t *dec = NULL;
        size_t n, dn;
        int r;

        if (size < 1)
                return 0;
        alg = (enum hsm_alg) (data[0] & 3); /* 0 (none) must never be accepted */
        now = clocks[(data[0] >> 2) & 3];
        input = (const char *) data + 1;
        n = size - 1;

        r = jwt_check_signing_input(input, n, CLIENT, AUD, alg, now, &why);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPERM || r == -ENOMEM);
        if (r < 0)
                FUZZ_CHECK(r == -ENOMEM || why);
        else {
                FUZZ_CHECK(alg != HSM_ALG_NONE);
                check_accepted(input, n, alg, now);
        }

        r = jwt_base64url_decode(input, n, &dec, &dn);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r == 0) {
                char *enc = NULL;

                FUZZ_CHECK(jwt_base64url_encode(dec, dn, &enc) == 0);
                FUZZ_CHECK(strlen(enc) == n && memcmp(enc, input, n) == 0);
                free(enc);
                free(dec);
        }
        return 0;
}
