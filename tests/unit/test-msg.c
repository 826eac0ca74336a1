/* SPDX-License-Identifier: ISC */
/* Internal messages (ipc/msg.h): the channel table, every message's encoding and its
 * rejections, and frames over real SOCK_SEQPACKET socketpairs with fd passing. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/config.h"
#include "ipc/apierror.h"
#include "ipc/msg.h"

/* Direction table, written out independently of ipc/msg.c. */
struct allowed {
        enum msg_channel c;
        bool from_a;
        uint8_t types[4];
        size_t max;
};

static const struct allowed table[] = {
        { CHAN_FRONT_NET, true, { MSG_HELLO, MSG_FETCH }, 65536 },
        { CHAN_FRONT_NET, false, { MSG_HELLO, MSG_FETCH_DONE }, 65536 },
        { CHAN_FRONT_HSM, true, { MSG_HELLO, MSG_GRANT }, 8192 },
        { CHAN_FRONT_HSM, false, { MSG_HELLO }, 8192 },
        { CHAN_NET_HSM, true, { MSG_HELLO, MSG_SECRET_REQUEST, MSG_SIGN_REQUEST }, 16384 },
        { CHAN_NET_HSM, false, { MSG_HELLO, MSG_SECRET, MSG_SIGNATURE }, 16384 },
        { CHAN_SUPER_FRONT, true, { MSG_HELLO, MSG_CHANNEL, MSG_CONFIG }, 8192 },
        { CHAN_SUPER_FRONT, false, { MSG_HELLO, MSG_CONFIG_DONE }, 8192 },
        { CHAN_SUPER_NET, true, { MSG_HELLO, MSG_CHANNEL, MSG_CONFIG }, 8192 },
        { CHAN_SUPER_NET, false, { MSG_HELLO }, 8192 },
        { CHAN_SUPER_HSM, true, { MSG_HELLO, MSG_CHANNEL, MSG_CONFIG }, 8192 },
        { CHAN_SUPER_HSM, false, { MSG_HELLO }, 8192 },
        { CHAN_CONFIG, true, { MSG_CONFIG }, 8192 },
        { CHAN_CONFIG, false, { 0 }, 8192 },
};

static bool in_table(const struct allowed *a, unsigned type) {
        for (size_t i = 0; i < ELEMENTSOF(a->types); i++)
                if (a->types[i] && a->types[i] == type)
                        return true;
        return false;
}

/* Makes a string of N copies of C. */
static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* Splits the single frame in B (checking its header) into *RET_PAYLOAD / *RET_N. */
static void frame_split(const struct buf *b, uint8_t type, const uint8_t **ret_payload, size_t *ret_n) {
        uint32_t len;

        assert_true(b->len >= MSG_HEADER_SIZE);
        len = (uint32_t) b->data[0] << 24 | (uint32_t) b->data[1] << 16 | (uint32_t) b->data[2] << 8 | b->data[3];
        assert_int_equal(len, b->len - MSG_HEADER_SIZE);
        assert_int_equal(b->data[4], type);
        *ret_payload = b->data + MSG_HEADER_SIZE;
        *ret_n = len;
}

/* ---- The table --------------------------------------------------------------------- */

static void test_channel_table(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const struct allowed *a = &table[i];

                assert_int_equal(msg_channel_max(a->c), a->max);
                for (unsigned t = 0; t < 256; t++) {
                        if (msg_type_allowed(a->c, a->from_a, (uint8_t) t) != in_table(a, t))
                                print_error("channel %s from %s type %u\n", msg_channel_name(a->c),
                                            a->from_a ? "A" : "B", t);
                        assert_int_equal(msg_type_allowed(a->c, a->from_a, (uint8_t) t), in_table(a, t));
                }
        }
        assert_int_equal(msg_channel_max(_CHAN_MAX), 0);
        assert_int_equal(msg_channel_max((enum msg_channel) -1), 0);
        assert_false(msg_type_allowed(_CHAN_MAX, true, MSG_HELLO));
        assert_false(msg_type_allowed((enum msg_channel) -1, false, MSG_HELLO));
}

static void test_names(void **state) {
        assert_string_equal(msg_type_name(MSG_HELLO), "HELLO");
        assert_string_equal(msg_type_name(MSG_FETCH), "FETCH");
        assert_string_equal(msg_type_name(MSG_FETCH_DONE), "FETCH_DONE");
        assert_string_equal(msg_type_name(MSG_GRANT), "GRANT");
        assert_string_equal(msg_type_name(MSG_SECRET_REQUEST), "SECRET_REQUEST");
        assert_string_equal(msg_type_name(MSG_SECRET), "SECRET");
        assert_string_equal(msg_type_name(MSG_SIGN_REQUEST), "SIGN_REQUEST");
        assert_string_equal(msg_type_name(MSG_SIGNATURE), "SIGNATURE");
        assert_string_equal(msg_type_name(MSG_CHANNEL), "CHANNEL");
        assert_string_equal(msg_type_name(MSG_CONFIG), "CONFIG");
        assert_string_equal(msg_type_name(MSG_CONFIG_DONE), "CONFIG_DONE");
        assert_string_equal(msg_type_name(0), "UNKNOWN");
        assert_string_equal(msg_type_name(255), "UNKNOWN");
        assert_string_equal(msg_role_name(ROLE_SUPERVISOR), "supervisor");
        assert_string_equal(msg_role_name(ROLE_FRONT), "front");
        assert_string_equal(msg_role_name(ROLE_NET), "net");
        assert_string_equal(msg_role_name(ROLE_HSM), "hsm");
        assert_string_equal(msg_role_name(0), "UNKNOWN");
        assert_string_equal(msg_role_name(5), "UNKNOWN");
        assert_string_equal(msg_channel_name(CHAN_FRONT_NET), "front-net");
        assert_string_equal(msg_channel_name(CHAN_SUPER_HSM), "supervisor-hsm");
        assert_string_equal(msg_channel_name(_CHAN_MAX), "UNKNOWN");
}

/* ---- Exact bytes ------------------------------------------------------------------- */

static void test_exact_bytes(void **state) {
        static const uint8_t hello[] = {
                0x00, 0x00, 0x00, 0x05, MSG_HELLO,      /* length 5, type */
                0x00, 0x00, 0x00, 0x01,                 /* version 1 */
                ROLE_NET,                               /* role */
        };
        static const uint8_t grant[] = {
                0x00, 0x00, 0x00, 0x20, MSG_GRANT,
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* fetch_id */
                0x00, 0x00, 0x00, 0x07, 'p', 'k', 'c', 's', '1', '1', ':', /* client_secret_uri */
                0xff, 0xff, 0xff, 0xff,                         /* no client_key_uri */
                0xff, 0xff, 0xff, 0xff,                         /* no client_id */
                0xff, 0xff, 0xff, 0xff,                         /* no audience */
                0x00,                                           /* assertion_alg */
        };
        static const uint8_t key_grant[] = {
                0x00, 0x00, 0x00, 0x1f, MSG_GRANT,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, /* fetch_id 9 */
                0xff, 0xff, 0xff, 0xff,                         /* no client_secret_uri */
                0x00, 0x00, 0x00, 0x03, 'p', 'k', ':',          /* client_key_uri */
                0x00, 0x00, 0x00, 0x02, 'i', 'd',               /* client_id */
                0x00, 0x00, 0x00, 0x01, 'a',                    /* audience */
                0x03,                                           /* PS256 */
        };
        static const uint8_t signature[] = {
                0x00, 0x00, 0x00, 0x16, MSG_SIGNATURE,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, /* fetch_id 9 */
                0x00, 0x00, 0x00, 0x00,                         /* error 0 */
                0xff, 0xff, 0xff, 0xff,                         /* no description */
                0x01,                                           /* ES256 */
                0x00, 0x00, 0x00, 0x01, 0xa5,                   /* signature */
        };
        static const uint8_t secret_err[] = {
                0x00, 0x00, 0x00, 0x15, MSG_SECRET,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, /* fetch_id 42 */
                0xff, 0xff, 0xff, 0xfe,                         /* error -2 */
                0x00, 0x00, 0x00, 0x01, 'x',                    /* description */
                0x00, 0x00, 0x00, 0x00,                         /* no secret bytes */
        };
        struct buf b;

        buf_init(&b, 1024);
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = 1, .role = ROLE_NET }, &b), 0);
        assert_int_equal(b.len, sizeof hello);
        assert_memory_equal(b.data, hello, sizeof hello);
        buf_reset(&b);

        assert_int_equal(msg_grant_encode(&(struct msg_grant) { .fetch_id = UINT64_C(0x0102030405060708),
                                                                 .client_secret_uri = (char *) "pkcs11:" }, &b), 0);
        assert_int_equal(b.len, sizeof grant);
        assert_memory_equal(b.data, grant, sizeof grant);
        buf_reset(&b);

        assert_int_equal(msg_grant_encode(&(struct msg_grant) { .fetch_id = 9, .client_key_uri = (char *) "pk:",
                                                                 .client_id = (char *) "id", .audience = (char *) "a",
                                                                 .assertion_alg = 3 }, &b), 0);
        assert_int_equal(b.len, sizeof key_grant);
        assert_memory_equal(b.data, key_grant, sizeof key_grant);
        buf_reset(&b);

        assert_int_equal(msg_signature_encode(&(struct msg_signature) { .fetch_id = 9, .alg = 1,
                                                                         .signature = (const uint8_t *) "\xa5",
                                                                         .signature_len = 1 }, &b), 0);
        assert_int_equal(b.len, sizeof signature);
        assert_memory_equal(b.data, signature, sizeof signature);
        buf_reset(&b);

        assert_int_equal(msg_secret_encode(&(struct msg_secret) { .fetch_id = 42, .error = -ENOENT,
                                                                   .description = (char *) "x" }, &b), 0);
        assert_int_equal(b.len, sizeof secret_err);
        assert_memory_equal(b.data, secret_err, sizeof secret_err);

        /* Encoders append: two frames back to back, the first untouched. */
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = 1, .role = ROLE_NET }, &b), 0);
        assert_int_equal(b.len, sizeof secret_err + sizeof hello);
        assert_memory_equal(b.data, secret_err, sizeof secret_err);
        assert_memory_equal(b.data + sizeof secret_err, hello, sizeof hello);
        buf_done(&b);
}

/* ---- Round trips ------------------------------------------------------------------- */

static void test_roundtrip_hello(void **state) {
        struct buf b;
        const uint8_t *p;
        size_t n;

        for (uint8_t role = ROLE_SUPERVISOR; role <= ROLE_HSM; role++) {
                struct msg_hello h = { .version = 0xdeadbeef, .role = role }, d = {};

                buf_init(&b, 64);
                assert_int_equal(msg_hello_encode(&h, &b), 0);
                frame_split(&b, MSG_HELLO, &p, &n);
                assert_int_equal(msg_hello_decode(p, n, &d), 0);
                assert_int_equal(d.version, 0xdeadbeef);
                assert_int_equal(d.role, role);
                buf_done(&b);
        }
}

static void check_fetch_roundtrip(const struct msg_fetch *m) {
        struct msg_fetch d = {};
        struct buf b;
        const uint8_t *p;
        size_t n;

        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        assert_int_equal(msg_fetch_encode(m, &b), 0);
        frame_split(&b, MSG_FETCH, &p, &n);
        assert_int_equal(msg_fetch_decode(p, n, &d), 0);
        assert_true(d.fetch_id == m->fetch_id);
        assert_int_equal(d.client_auth, m->client_auth);
        assert_string_equal(d.client_id, m->client_id);
        if (m->scope)
                assert_string_equal(d.scope, m->scope);
        else
                assert_null(d.scope);
#define STR_EQ(x) do { if (m->x) assert_string_equal(d.x, m->x); else assert_null(d.x); } while (0)
        STR_EQ(token_url);
        STR_EQ(client_secret_uri);
        STR_EQ(client_key_uri);
        STR_EQ(assertion_audience);
        STR_EQ(key_id);
        STR_EQ(issuer);
        STR_EQ(audience);
        STR_EQ(resource);
        STR_EQ(token_params);
#undef STR_EQ
        assert_int_equal(d.assertion_lifetime, m->assertion_lifetime);
        assert_int_equal(d.allow_insecure_loopback, m->allow_insecure_loopback);
        assert_int_equal(d.connect_timeout, m->connect_timeout);
        assert_int_equal(d.timeout, m->timeout);
        assert_int_equal(d.default_ttl, m->default_ttl);
        assert_int_equal(d.max_ttl, m->max_ttl);
        msg_fetch_clear(&d);
        assert_null(d.token_url);
        buf_done(&b);
}

static void test_roundtrip_fetch(void **state) {
        char *url = repeat('u', MSG_URL_MAX), *id = repeat('i', MSG_ID_MAX), *scope = repeat('s', MSG_SCOPE_MAX),
             *uri = repeat('p', MSG_ID_MAX), *params = repeat('r', MSG_PARAMS_MAX);

        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 1,
                .token_url = (char *) "https://idp.example.com/token",
                .client_auth = CLIENT_AUTH_POST,
                .client_id = (char *) "billing-batch",
                .scope = (char *) "billing:read billing:write",
                .client_secret_uri = (char *) "pkcs11:token=credagent;object=Billing_API.Batch;type=data",
                .allow_insecure_loopback = 1,
                .connect_timeout = 5, .timeout = 15, .default_ttl = 300, .max_ttl = 86400,
        });
        /* Every field at its limit, the optional scope absent, extreme numbers. */
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = UINT64_MAX, .token_url = url, .client_auth = CLIENT_AUTH_BASIC, .client_id = id,
                .scope = NULL, .client_secret_uri = uri, .allow_insecure_loopback = 0,
                .connect_timeout = UINT32_MAX, .timeout = 0, .default_ttl = 1, .max_ttl = UINT32_MAX,
        });
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 0, .token_url = (char *) "", .client_id = (char *) "", .scope = scope,
                .client_secret_uri = (char *) "",
        });
        /* private_key_jwt: a key URI instead of the secret's, and the assertion's fields. */
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 3, .token_url = (char *) "https://idp.example.com/token",
                .client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT, .client_id = (char *) "billing-batch",
                .client_key_uri = (char *) "pkcs11:token=credagent;object=Billing_API.Batch;type=private",
                .assertion_audience = (char *) "https://idp.example.com", .assertion_lifetime = 60,
                .key_id = (char *) "k1", .connect_timeout = 5, .timeout = 15, .default_ttl = 300, .max_ttl = 86400,
        });
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 4, .token_url = url, .client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT, .client_id = id,
                .client_key_uri = uri, .assertion_audience = url, .assertion_lifetime = ASSERTION_LIFETIME_MAX,
        });
        /* Version 4: discovery instead of a token_url, and the extra parameters. */
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 5, .issuer = (char *) "https://idp.example.com", .client_auth = CLIENT_AUTH_BASIC,
                .client_id = (char *) "c", .client_secret_uri = (char *) "pkcs11:",
                .audience = (char *) "api://billing", .resource = (char *) "https://a.example https://b.example",
                .token_params = (char *) "tenant=t1 region=eu",
        });
        check_fetch_roundtrip(&(struct msg_fetch) {
                .fetch_id = 6, .issuer = url, .client_auth = CLIENT_AUTH_POST, .client_id = id,
                .client_secret_uri = uri, .audience = url, .resource = params, .token_params = params,
        });
        free(url);
        free(id);
        free(scope);
        free(uri);
        free(params);
}

static void check_fetch_done_roundtrip(const struct msg_fetch_done *m) {
        struct msg_fetch_done d = {};
        struct buf b;
        const uint8_t *p;
        size_t n;

        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        assert_int_equal(msg_fetch_done_encode(m, &b), 0);
        frame_split(&b, MSG_FETCH_DONE, &p, &n);
        assert_int_equal(msg_fetch_done_decode(p, n, &d), 0);
        assert_true(d.fetch_id == m->fetch_id);
        assert_int_equal(d.error, m->error);
        assert_int_equal(d.http_status, m->http_status);
        assert_int_equal(d.expires_in, m->expires_in);
        assert_int_equal(d.retry_after, m->retry_after);
#define STR_EQ(x) do { if (m->x) assert_string_equal(d.x, m->x); else assert_null(d.x); } while (0)
        STR_EQ(access_token);
        STR_EQ(scope);
        STR_EQ(idp_error);
        STR_EQ(description);
#undef STR_EQ
        assert_string_equal(d.fingerprint, m->fingerprint);
        msg_fetch_done_clear(&d);
        assert_null(d.access_token);
        assert_null(d.description);
        buf_done(&b);
}

static void test_roundtrip_fetch_done(void **state) {
        char *token = repeat('t', MSG_TOKEN_MAX), *scope = repeat('s', MSG_SCOPE_MAX), *text = repeat('x', MSG_TEXT_MAX);

        check_fetch_done_roundtrip(&(struct msg_fetch_done) {
                .fetch_id = 7, .error = API_OK, .http_status = 200, .expires_in = 3600,
                .access_token = (char *) "eyJhbGciOi.x.y", .scope = (char *) "billing:read", .fingerprint = "5eed0123",
        });
        check_fetch_done_roundtrip(&(struct msg_fetch_done) {
                .fetch_id = UINT64_MAX, .error = API_OK, .http_status = UINT32_MAX, .expires_in = UINT32_MAX,
                .access_token = token, .scope = scope, .idp_error = text, .description = text, .fingerprint = "abcdef98",
        });
        check_fetch_done_roundtrip(&(struct msg_fetch_done) {
                .fetch_id = 8, .error = API_IDP_ERROR, .http_status = 400,
                .idp_error = (char *) "invalid_client", .description = (char *) "the token endpoint refused",
        });
        /* 429 / 503 with Retry-After: the seconds travel, up to the cap. */
        check_fetch_done_roundtrip(&(struct msg_fetch_done) {
                .fetch_id = 10, .error = API_IDP_ERROR, .http_status = 429,
                .idp_error = (char *) "temporarily_unavailable", .retry_after = 1,
        });
        check_fetch_done_roundtrip(&(struct msg_fetch_done) {
                .fetch_id = 11, .error = API_IDP_ERROR, .http_status = 503, .retry_after = MSG_RETRY_AFTER_MAX,
        });
        check_fetch_done_roundtrip(&(struct msg_fetch_done) { .fetch_id = 9, .error = _API_ERROR_MAX - 1 });
        free(token);
        free(scope);
        free(text);
}

static void check_grant_roundtrip(const struct msg_grant *g) {
        struct msg_grant d = {};
        const uint8_t *p;
        struct buf b;
        size_t n;

        buf_init(&b, msg_channel_max(CHAN_FRONT_HSM));
        assert_int_equal(msg_grant_encode(g, &b), 0);
        frame_split(&b, MSG_GRANT, &p, &n);
        assert_int_equal(msg_grant_decode(p, n, &d), 0);
        assert_true(d.fetch_id == g->fetch_id);
#define STR_EQ(x) do { if (g->x) assert_string_equal(d.x, g->x); else assert_null(d.x); } while (0)
        STR_EQ(client_secret_uri);
        STR_EQ(client_key_uri);
        STR_EQ(client_id);
        STR_EQ(audience);
#undef STR_EQ
        assert_int_equal(d.assertion_alg, g->assertion_alg);
        msg_grant_clear(&d);
        assert_null(d.client_secret_uri);
        assert_null(d.client_key_uri);
        buf_done(&b);
}

static void test_roundtrip_grant_and_request(void **state) {
        char *uri = repeat('p', MSG_ID_MAX), *url = repeat('u', MSG_URL_MAX);
        const char *uris[] = { "pkcs11:object=a", "", uri };
        const uint8_t *p;
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(uris); i++) {
                struct msg_secret_request r = { .fetch_id = ~(i * UINT64_C(0x1000000001)),
                                                .client_secret_uri = (char *) uris[i] }, rd;
                struct buf b;

                check_grant_roundtrip(&(struct msg_grant) { .fetch_id = i * UINT64_C(0x1000000001),
                                                            .client_secret_uri = (char *) uris[i] });
                for (uint8_t alg = 0; alg <= MSG_ALG_MAX; alg++)
                        check_grant_roundtrip(&(struct msg_grant) { .fetch_id = i, .client_key_uri = (char *) uris[i],
                                                                    .client_id = (char *) uris[i], .audience = url,
                                                                    .assertion_alg = alg });

                buf_init(&b, msg_channel_max(CHAN_NET_HSM));
                assert_int_equal(msg_secret_request_encode(&r, &b), 0);
                frame_split(&b, MSG_SECRET_REQUEST, &p, &n);
                assert_int_equal(msg_secret_request_decode(p, n, &rd), 0);
                assert_true(rd.fetch_id == r.fetch_id);
                assert_string_equal(rd.client_secret_uri, uris[i]);
                msg_secret_request_clear(&rd);
                assert_null(rd.client_secret_uri);
                buf_done(&b);
        }
        free(uri);
        free(url);
}

static void test_roundtrip_sign(void **state) {
        uint8_t input[MSG_SIGNING_INPUT_MAX], sig[MSG_SIGNATURE_MAX];
        struct msg_sign_request rq;
        struct msg_signature sd;
        const uint8_t *p;
        struct buf b;
        size_t n;

        memset(input, 'e', sizeof input);
        for (size_t i = 0; i < sizeof sig; i++)
                sig[i] = (uint8_t) i;

        /* The largest request fits the net-hsm channel. */
        buf_init(&b, msg_channel_max(CHAN_NET_HSM));
        assert_int_equal(msg_sign_request_encode(&(struct msg_sign_request) {
                .fetch_id = 11, .client_key_uri = (char *) "pkcs11:object=k;type=private",
                .signing_input = input, .signing_input_len = sizeof input }, &b), 0);
        frame_split(&b, MSG_SIGN_REQUEST, &p, &n);
        assert_int_equal(msg_sign_request_decode(p, n, &rq), 0);
        assert_true(rq.fetch_id == 11);
        assert_string_equal(rq.client_key_uri, "pkcs11:object=k;type=private");
        assert_int_equal(rq.signing_input_len, sizeof input);
        assert_memory_equal(rq.signing_input, input, sizeof input);
        assert_true(rq.signing_input >= p && rq.signing_input + rq.signing_input_len <= p + n);
        msg_sign_request_clear(&rq);
        assert_null(rq.client_key_uri);
        buf_reset(&b);

        /* An empty signing input asks for the algorithm. */
        assert_int_equal(msg_sign_request_encode(&(struct msg_sign_request) {
                .fetch_id = 12, .client_key_uri = (char *) "pkcs11:object=k" }, &b), 0);
        frame_split(&b, MSG_SIGN_REQUEST, &p, &n);
        assert_int_equal(msg_sign_request_decode(p, n, &rq), 0);
        assert_null(rq.signing_input);
        assert_int_equal(rq.signing_input_len, 0);
        msg_sign_request_clear(&rq);
        buf_reset(&b);

        assert_int_equal(msg_signature_encode(&(struct msg_signature) { .fetch_id = 11, .alg = 2, .signature = sig,
                                                                         .signature_len = sizeof sig }, &b), 0);
        frame_split(&b, MSG_SIGNATURE, &p, &n);
        assert_int_equal(msg_signature_decode(p, n, &sd), 0);
        assert_true(sd.fetch_id == 11);
        assert_int_equal(sd.error, 0);
        assert_int_equal(sd.alg, 2);
        assert_null(sd.description);
        assert_int_equal(sd.signature_len, sizeof sig);
        assert_memory_equal(sd.signature, sig, sizeof sig);
        msg_signature_clear(&sd);
        buf_reset(&b);

        assert_int_equal(msg_signature_encode(&(struct msg_signature) { .fetch_id = 12, .alg = 3 }, &b), 0);
        frame_split(&b, MSG_SIGNATURE, &p, &n);
        assert_int_equal(msg_signature_decode(p, n, &sd), 0);
        assert_int_equal(sd.alg, 3);
        assert_null(sd.signature);
        msg_signature_clear(&sd);
        buf_reset(&b);

        assert_int_equal(msg_signature_encode(&(struct msg_signature) { .fetch_id = 13, .error = -EPERM,
                                                                         .description = (char *) "no grant" }, &b), 0);
        frame_split(&b, MSG_SIGNATURE, &p, &n);
        assert_int_equal(msg_signature_decode(p, n, &sd), 0);
        assert_int_equal(sd.error, -EPERM);
        assert_int_equal(sd.alg, 0);
        assert_string_equal(sd.description, "no grant");
        msg_signature_clear(&sd);
        assert_null(sd.description);
        buf_done(&b);
}

static void test_roundtrip_secret(void **state) {
        uint8_t secret[MSG_SECRET_MAX];
        struct msg_secret d;
        const uint8_t *p;
        struct buf b;
        size_t n;

        for (size_t i = 0; i < sizeof secret; i++)
                secret[i] = (uint8_t) i; /* NUL bytes and all: a secret is bytes */

        buf_init(&b, msg_channel_max(CHAN_NET_HSM));
        assert_int_equal(msg_secret_encode(&(struct msg_secret) { .fetch_id = 5, .secret = secret,
                                                                   .secret_len = sizeof secret }, &b), 0);
        frame_split(&b, MSG_SECRET, &p, &n);
        assert_int_equal(msg_secret_decode(p, n, &d), 0);
        assert_true(d.fetch_id == 5);
        assert_int_equal(d.error, 0);
        assert_null(d.description);
        assert_int_equal(d.secret_len, sizeof secret);
        assert_memory_equal(d.secret, secret, sizeof secret);
        /* Not copied: it points into the payload. */
        assert_true(d.secret >= p && d.secret + d.secret_len <= p + n);
        msg_secret_clear(&d);
        assert_null(d.secret);
        assert_int_equal(d.secret_len, 0);
        buf_reset(&b);

        assert_int_equal(msg_secret_encode(&(struct msg_secret) { .fetch_id = 6, .error = -4095 }, &b), 0);
        frame_split(&b, MSG_SECRET, &p, &n);
        assert_int_equal(msg_secret_decode(p, n, &d), 0);
        assert_int_equal(d.error, -4095);
        assert_null(d.description);
        assert_null(d.secret);
        assert_int_equal(d.secret_len, 0);
        msg_secret_clear(&d);
        buf_reset(&b);

        assert_int_equal(msg_secret_encode(&(struct msg_secret) { .fetch_id = 7, .error = -EACCES,
                                                                   .description = (char *) "login refused" }, &b), 0);
        frame_split(&b, MSG_SECRET, &p, &n);
        assert_int_equal(msg_secret_decode(p, n, &d), 0);
        assert_int_equal(d.error, -EACCES);
        assert_string_equal(d.description, "login refused");
        msg_secret_clear(&d);
        assert_null(d.description);
        buf_done(&b);
}

static void test_roundtrip_channel_and_config_done(void **state) {
        char *reason = repeat('r', MSG_REASON_MAX);
        static const uint8_t config_big_endian[] = { 0, 0, 0, 0, 0x04, 0, 0, 0 }; /* 64 MiB */
        struct msg_config_done cd;
        struct msg_config mc;
        const uint8_t *p;
        struct buf b;
        size_t n;

        for (uint8_t c = 0; c < _CHAN_MAX; c++) {
                struct msg_channel_fd d = { .channel = 99 };

                buf_init(&b, 64);
                assert_int_equal(msg_channel_fd_encode(&(struct msg_channel_fd) { .channel = c }, &b), 0);
                frame_split(&b, MSG_CHANNEL, &p, &n);
                assert_int_equal(n, 1);
                assert_int_equal(msg_channel_fd_decode(p, n, &d), 0);
                assert_int_equal(d.channel, c);
                buf_done(&b);
        }

        /* CONFIG: a size of 1 … MSG_CONFIG_SIZE_MAX, big-endian u64; 0 or more is refused. */
        buf_init(&b, 64);
        for (uint64_t size = 1; size <= MSG_CONFIG_SIZE_MAX; size = size == 1 ? MSG_CONFIG_SIZE_MAX : size + 1) {
                mc = (struct msg_config) { .size = 7 };
                assert_int_equal(msg_config_encode(&(struct msg_config) { .size = size }, &b), 0);
                frame_split(&b, MSG_CONFIG, &p, &n);
                assert_int_equal(n, 8);
                assert_int_equal(msg_config_decode(p, n, &mc), 0);
                assert_int_equal(mc.size, size);
                if (size == MSG_CONFIG_SIZE_MAX)
                        assert_memory_equal(p, config_big_endian, 8);
                buf_reset(&b);
        }
        assert_int_equal(msg_config_encode(&(struct msg_config) { .size = 0 }, &b), -EINVAL);
        assert_int_equal(msg_config_encode(&(struct msg_config) { .size = MSG_CONFIG_SIZE_MAX + 1ULL }, &b), -EINVAL);
        assert_int_equal(b.len, 0);
        {
                static const uint8_t zero[8] = { 0 }, over[8] = { 0, 0, 0, 0, 0x04, 0, 0, 1 },
                                     trailing[9] = { 0, 0, 0, 0, 0, 0, 0, 1, 0 };
                mc = (struct msg_config) { .size = 7 };
                assert_int_equal(msg_config_decode(zero, sizeof zero, &mc), -EBADMSG);
                assert_int_equal(mc.size, 0);
                assert_int_equal(msg_config_decode(over, sizeof over, &mc), -EBADMSG);
                assert_int_equal(msg_config_decode(trailing, sizeof trailing, &mc), -EBADMSG);
                assert_int_equal(msg_config_decode(trailing, 7, &mc), -EBADMSG);
        }
        buf_done(&b);

        buf_init(&b, msg_channel_max(CHAN_SUPER_FRONT));
        assert_int_equal(msg_config_done_encode(&(struct msg_config_done) { .status = 0 }, &b), 0);
        frame_split(&b, MSG_CONFIG_DONE, &p, &n);
        assert_int_equal(msg_config_done_decode(p, n, &cd), 0);
        assert_int_equal(cd.status, 0);
        assert_null(cd.reason);
        msg_config_done_clear(&cd);
        buf_reset(&b);

        assert_int_equal(msg_config_done_encode(&(struct msg_config_done) { .status = 255, .reason = reason }, &b), 0);
        frame_split(&b, MSG_CONFIG_DONE, &p, &n);
        assert_int_equal(msg_config_done_decode(p, n, &cd), 0);
        assert_int_equal(cd.status, 255);
        assert_string_equal(cd.reason, reason);
        msg_config_done_clear(&cd);
        assert_null(cd.reason);
        buf_done(&b);
        free(reason);
}

/* ---- Decoder rejections ------------------------------------------------------------ */

/* Builds a payload from putter calls. */
#define PAYLOAD(b, ...) do { buf_init(&(b), 1 << 20); __VA_ARGS__; } while (0)
#define OK(x) assert_int_equal((x), 0)

typedef int (*decode_fn)(const uint8_t *p, size_t n, void *ret);

/* Every decoder, with the size of its struct and its _clear() (or NULL). */
struct decoder {
        const char *name;
        decode_fn decode;
        void (*clear)(void *m);
        size_t size;
};

/* Type-erasing wrappers (no calls through mismatched function pointer types). */
#define WRAP(t) \
        static int decode_##t(const uint8_t *p, size_t n, void *ret) { return msg_##t##_decode(p, n, ret); }
#define WRAP_CLEAR(t) WRAP(t) \
        static void clear_##t(void *m) { msg_##t##_clear(m); }
WRAP(hello)
WRAP_CLEAR(fetch)
WRAP_CLEAR(fetch_done)
WRAP_CLEAR(grant)
WRAP_CLEAR(secret_request)
WRAP_CLEAR(secret)
WRAP_CLEAR(sign_request)
WRAP_CLEAR(signature)
WRAP(channel_fd)
WRAP_CLEAR(config_done)

#define DECODER(t) { #t, decode_##t, NULL, sizeof(struct msg_##t) }
#define DECODER_CLEAR(t) { #t, decode_##t, clear_##t, sizeof(struct msg_##t) }

static const struct decoder decoders[] = {
        DECODER(hello),
        DECODER_CLEAR(fetch),
        DECODER_CLEAR(fetch_done),
        DECODER_CLEAR(grant),
        DECODER_CLEAR(secret_request),
        DECODER_CLEAR(secret),
        DECODER_CLEAR(sign_request),
        DECODER_CLEAR(signature),
        DECODER(channel_fd),
        DECODER_CLEAR(config_done),
};

/* Expects D to reject P[0..N) with -EBADMSG and leave its output zeroed. */
static void expect_reject(const struct decoder *d, const uint8_t *p, size_t n) {
        uint8_t out[256], zero[256] = {};
        int r;

        assert_true(d->size <= sizeof out);
        memset(out, 0xa5, sizeof out);
        r = d->decode(p, n, out);
        if (r != -EBADMSG)
                print_error("%s accepted (%d) a payload of %zu bytes\n", d->name, r, n);
        assert_int_equal(r, -EBADMSG);
        assert_memory_equal(out, zero, d->size);
}

/* The payload in B is valid for D: it decodes; every proper prefix of it and it plus a
 * trailing byte are rejected. */
static void expect_valid_and_exact(const struct decoder *d, struct buf *b) {
        uint8_t out[256];
        uint8_t *longer;

        assert_int_equal(d->decode(b->data, b->len, out), 0);
        if (d->clear)
                d->clear(out);
        for (size_t n = 0; n < b->len; n++)
                expect_reject(d, b->data, n);
        longer = malloc(b->len + 1);
        assert_non_null(longer);
        memcpy(longer, b->data, b->len);
        longer[b->len] = 0;
        expect_reject(d, longer, b->len + 1);
        free(longer);
}

static const struct decoder *decoder(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(decoders); i++)
                if (strcmp(decoders[i].name, name) == 0)
                        return &decoders[i];
        fail();
        return NULL;
}

static void reject_buf(const char *name, struct buf *b) {
        expect_reject(decoder(name), b->data, b->len);
        buf_done(b);
}

static void valid_buf(const char *name, struct buf *b) {
        expect_valid_and_exact(decoder(name), b);
        buf_done(b);
}

static void test_reject_hello(void **state) {
        struct buf b;

        PAYLOAD(b, OK(buf_put_u32(&b, 1)), OK(buf_put_u8(&b, ROLE_HSM)));
        valid_buf("hello", &b);
        for (unsigned role = 0; role < 256; role++) {
                if (role >= ROLE_SUPERVISOR && role <= ROLE_HSM)
                        continue;
                PAYLOAD(b, OK(buf_put_u32(&b, 1)), OK(buf_put_u8(&b, (uint8_t) role)));
                reject_buf("hello", &b);
        }
}

/* A FETCH payload with the given pieces, the private_key_jwt fields and those of version 4
 * (issuer, audience, resource, token_params); NULL strings are put as NULL. */
static void put_fetch_v4(struct buf *b, const char *url, uint8_t auth, const char *id, const char *scope,
                         const char *uri, uint8_t insecure, const char *key_uri, const char *aud, uint32_t lifetime,
                         const char *kid, const char *issuer, const char *audience, const char *resource,
                         const char *params) {
        buf_init(b, 1 << 20);
        OK(buf_put_u64(b, 1));
        OK(buf_put_str(b, url));
        OK(buf_put_u8(b, auth));
        OK(buf_put_str(b, id));
        OK(buf_put_str(b, scope));
        OK(buf_put_str(b, uri));
        OK(buf_put_u8(b, insecure));
        for (int i = 0; i < 4; i++)
                OK(buf_put_u32(b, 10));
        OK(buf_put_str(b, key_uri));
        OK(buf_put_str(b, aud));
        OK(buf_put_u32(b, lifetime));
        OK(buf_put_str(b, kid));
        OK(buf_put_str(b, issuer));
        OK(buf_put_str(b, audience));
        OK(buf_put_str(b, resource));
        OK(buf_put_str(b, params));
}

static void put_fetch_jwt(struct buf *b, const char *url, uint8_t auth, const char *id, const char *scope,
                          const char *uri, uint8_t insecure, const char *key_uri, const char *aud, uint32_t lifetime,
                          const char *kid) {
        put_fetch_v4(b, url, auth, id, scope, uri, insecure, key_uri, aud, lifetime, kid, NULL, NULL, NULL, NULL);
}

/* The same for basic and post. */
static void put_fetch(struct buf *b, const char *url, uint8_t auth, const char *id, const char *scope,
                      const char *uri, uint8_t insecure) {
        put_fetch_jwt(b, url, auth, id, scope, uri, insecure, NULL, NULL, 0, NULL);
}

static void test_reject_fetch(void **state) {
        char *url = repeat('u', MSG_URL_MAX + 1), *id = repeat('i', MSG_ID_MAX + 1),
             *scope = repeat('s', MSG_SCOPE_MAX + 1), *params = repeat('r', MSG_PARAMS_MAX + 1);
        struct buf b;

        put_fetch(&b, "https://x/", CLIENT_AUTH_POST, "id", "s", "pkcs11:", 1);
        valid_buf("fetch", &b);
        put_fetch(&b, "https://x/", CLIENT_AUTH_BASIC, "id", NULL, "pkcs11:", 0);
        valid_buf("fetch", &b);

        /* Required strings. */
        put_fetch(&b, NULL, 0, "id", "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, NULL, "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, "id", "s", NULL, 0);
        reject_buf("fetch", &b);
        /* Over-long fields, one at a time. */
        put_fetch(&b, url, 0, "id", "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, id, "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, "id", scope, "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, "id", "s", id, 0);
        reject_buf("fetch", &b);
        /* Enum and flag out of range. */
        put_fetch(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT + 1, "id", "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 255, "id", "s", "pkcs11:", 0);
        reject_buf("fetch", &b);
        put_fetch(&b, "u", 0, "id", "s", "pkcs11:", 2);
        reject_buf("fetch", &b);
        /* An embedded NUL, in each string. */
        for (int field = 0; field < 4; field++) {
                buf_init(&b, 1 << 20);
                OK(buf_put_u64(&b, 1));
                OK(field == 0 ? buf_put_bytes(&b, "a\0b", 3) : buf_put_str(&b, "u"));
                OK(buf_put_u8(&b, 0));
                OK(field == 1 ? buf_put_bytes(&b, "a\0b", 3) : buf_put_str(&b, "id"));
                OK(field == 2 ? buf_put_bytes(&b, "a\0b", 3) : buf_put_str(&b, "s"));
                OK(field == 3 ? buf_put_bytes(&b, "a\0b", 3) : buf_put_str(&b, "pkcs11:"));
                OK(buf_put_u8(&b, 0));
                for (int i = 0; i < 4; i++)
                        OK(buf_put_u32(&b, 10));
                OK(buf_put_str(&b, NULL));
                OK(buf_put_str(&b, NULL));
                OK(buf_put_u32(&b, 0));
                for (int i = 0; i < 5; i++)
                        OK(buf_put_str(&b, NULL));
                reject_buf("fetch", &b);
        }

        /* private_key_jwt: the key URI, audience and lifetime; no secret URI. */
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", "aud", 60, "kid");
        valid_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", "s", NULL, 0, "pk:", "aud", 300, NULL);
        valid_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, "pkcs11:", 0, "pk:", "aud", 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, NULL, "aud", 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", NULL, 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", "aud", 0, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", "aud", 301, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, id, "aud", 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", url, 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_PRIVATE_KEY_JWT, "id", NULL, NULL, 0, "pk:", "aud", 60, scope);
        reject_buf("fetch", &b);
        /* ... and basic or post carry none of them. */
        put_fetch_jwt(&b, "u", CLIENT_AUTH_BASIC, "id", NULL, "pkcs11:", 0, "pk:", NULL, 0, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_POST, "id", NULL, "pkcs11:", 0, NULL, "aud", 0, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_POST, "id", NULL, "pkcs11:", 0, NULL, NULL, 60, NULL);
        reject_buf("fetch", &b);
        put_fetch_jwt(&b, "u", CLIENT_AUTH_BASIC, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, "kid");
        reject_buf("fetch", &b);

        /* Version 4: exactly one of token_url and issuer; the extra parameters are NULL or
         * not empty, and within their limits. */
        put_fetch_v4(&b, NULL, 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, "https://i", "a", "r", "k=v");
        valid_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, "a", "r1 r2", "k=v x=");
        valid_buf("fetch", &b);
        put_fetch_v4(&b, NULL, 2, "id", NULL, NULL, 0, "pk:", "https://i", 60, NULL, "https://i", NULL, NULL, NULL);
        valid_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, "https://i", NULL, NULL, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, NULL, 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, "", NULL, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, NULL, "", NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, "");
        reject_buf("fetch", &b);
        put_fetch_v4(&b, NULL, 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, url, NULL, NULL, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, url, NULL, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, NULL, params, NULL);
        reject_buf("fetch", &b);
        put_fetch_v4(&b, "u", 0, "id", NULL, "pkcs11:", 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, params);
        reject_buf("fetch", &b);
        free(url);
        free(id);
        free(scope);
        free(params);
}

static void put_fetch_done_retry(struct buf *b, uint8_t error, const char *token, const char *scope,
                                 const char *idp_error, const char *description, uint32_t retry_after) {
        buf_init(b, 1 << 20);
        OK(buf_put_u64(b, 1));
        OK(buf_put_u8(b, error));
        OK(buf_put_u32(b, 200));
        OK(buf_put_u32(b, 60));
        OK(buf_put_str(b, token));
        OK(buf_put_str(b, scope));
        OK(buf_put_str(b, idp_error));
        OK(buf_put_str(b, description));
        OK(buf_put_u32(b, retry_after));
        OK(buf_put_str(b, error == API_OK && token ? "0123abcd" : NULL));
}

/* A FETCH_DONE with a token and fingerprint FP (NULL: none). */
static void put_fetch_done_fp(struct buf *b, uint8_t error, const char *fp) {
        buf_init(b, 1 << 20);
        OK(buf_put_u64(b, 1));
        OK(buf_put_u8(b, error));
        OK(buf_put_u32(b, 200));
        OK(buf_put_u32(b, 60));
        OK(buf_put_str(b, error == API_OK ? "tok" : NULL));
        for (int i = 0; i < 3; i++)
                OK(buf_put_str(b, NULL));
        OK(buf_put_u32(b, 0));
        OK(buf_put_str(b, fp));
}

static void put_fetch_done(struct buf *b, uint8_t error, const char *token, const char *scope, const char *idp_error,
                           const char *description) {
        put_fetch_done_retry(b, error, token, scope, idp_error, description, 0);
}

static void test_reject_fetch_done(void **state) {
        char *token = repeat('t', MSG_TOKEN_MAX + 1), *scope = repeat('s', MSG_SCOPE_MAX + 1),
             *text = repeat('x', MSG_TEXT_MAX + 1);
        struct buf b;

        put_fetch_done(&b, API_OK, "tok", "s", NULL, NULL);
        valid_buf("fetch_done", &b);
        put_fetch_done(&b, API_IDP_TIMEOUT, NULL, NULL, "e", "d");
        valid_buf("fetch_done", &b);

        /* error out of range, whatever else is there. */
        put_fetch_done(&b, _API_ERROR_MAX, NULL, NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, 255, NULL, NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        /* A token only with success, and success only with a token. */
        put_fetch_done(&b, API_OK, NULL, NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, API_OK, "", NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, API_IDP_ERROR, "tok", NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        /* Over-long fields. */
        put_fetch_done(&b, API_OK, token, NULL, NULL, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, API_OK, "t", scope, NULL, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, API_IDP_ERROR, NULL, NULL, text, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done(&b, API_IDP_ERROR, NULL, NULL, NULL, text);
        reject_buf("fetch_done", &b);
        /* retry_after: up to MSG_RETRY_AFTER_MAX, and never with a token. */
        put_fetch_done_retry(&b, API_IDP_ERROR, NULL, NULL, "temporarily_unavailable", NULL, MSG_RETRY_AFTER_MAX);
        valid_buf("fetch_done", &b);
        put_fetch_done_retry(&b, API_IDP_ERROR, NULL, NULL, NULL, NULL, MSG_RETRY_AFTER_MAX + 1);
        reject_buf("fetch_done", &b);
        put_fetch_done_retry(&b, API_IDP_ERROR, NULL, NULL, NULL, NULL, UINT32_MAX);
        reject_buf("fetch_done", &b);
        put_fetch_done_retry(&b, API_OK, "tok", NULL, NULL, NULL, 1);
        reject_buf("fetch_done", &b);
        /* The fingerprint: exactly 8 lower-case hex digits with a token, none without. */
        put_fetch_done_fp(&b, API_OK, "ffff0000");
        valid_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, NULL);
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, "");
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, "0123abc");
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, "0123abcde");
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, "0123ABCD");
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_OK, "0123abcg");
        reject_buf("fetch_done", &b);
        put_fetch_done_fp(&b, API_IDP_ERROR, "0123abcd");
        reject_buf("fetch_done", &b);
        /* The old layout, without retry_after, is short. */
        buf_init(&b, 1 << 20);
        OK(buf_put_u64(&b, 1));
        OK(buf_put_u8(&b, API_IDP_ERROR));
        OK(buf_put_u32(&b, 503));
        OK(buf_put_u32(&b, 0));
        for (int i = 0; i < 4; i++)
                OK(buf_put_str(&b, NULL));
        reject_buf("fetch_done", &b);
        /* Embedded NUL in the token. */
        buf_init(&b, 1 << 20);
        OK(buf_put_u64(&b, 1));
        OK(buf_put_u8(&b, 0));
        OK(buf_put_u32(&b, 200));
        OK(buf_put_u32(&b, 60));
        OK(buf_put_bytes(&b, "to\0k", 4));
        for (int i = 0; i < 3; i++)
                OK(buf_put_str(&b, NULL));
        OK(buf_put_u32(&b, 0));
        OK(buf_put_str(&b, "0123abcd"));
        reject_buf("fetch_done", &b);
        free(token);
        free(scope);
        free(text);
}

static void put_grant(struct buf *b, const char *secret_uri, const char *key_uri, const char *id, const char *aud,
                      uint8_t alg) {
        buf_init(b, 1 << 20);
        OK(buf_put_u64(b, 3));
        OK(buf_put_str(b, secret_uri));
        OK(buf_put_str(b, key_uri));
        OK(buf_put_str(b, id));
        OK(buf_put_str(b, aud));
        OK(buf_put_u8(b, alg));
}

static void test_reject_grant_and_request(void **state) {
        char *uri = repeat('p', MSG_ID_MAX + 1), *url = repeat('u', MSG_URL_MAX + 1);
        struct buf b;

        /* GRANT: a secret, or a key with its client and audience. */
        put_grant(&b, "pkcs11:object=x", NULL, NULL, NULL, 0);
        valid_buf("grant", &b);
        put_grant(&b, NULL, "pkcs11:object=k", "id", "aud", 0);
        valid_buf("grant", &b);
        put_grant(&b, NULL, "pkcs11:object=k", "id", "aud", MSG_ALG_MAX);
        valid_buf("grant", &b);
        put_grant(&b, NULL, NULL, NULL, NULL, 0);                          /* neither */
        reject_buf("grant", &b);
        put_grant(&b, "pkcs11:object=x", "pkcs11:object=k", "id", "aud", 0); /* both */
        reject_buf("grant", &b);
        put_grant(&b, "pkcs11:object=x", NULL, "id", NULL, 0);             /* a secret with key fields */
        reject_buf("grant", &b);
        put_grant(&b, "pkcs11:object=x", NULL, NULL, "aud", 0);
        reject_buf("grant", &b);
        put_grant(&b, "pkcs11:object=x", NULL, NULL, NULL, 1);
        reject_buf("grant", &b);
        put_grant(&b, NULL, "pkcs11:object=k", NULL, "aud", 0);            /* a key without client */
        reject_buf("grant", &b);
        put_grant(&b, NULL, "pkcs11:object=k", "id", NULL, 0);             /* ... or audience */
        reject_buf("grant", &b);
        put_grant(&b, NULL, "pkcs11:object=k", "id", "aud", MSG_ALG_MAX + 1);
        reject_buf("grant", &b);
        put_grant(&b, uri, NULL, NULL, NULL, 0);
        reject_buf("grant", &b);
        put_grant(&b, NULL, uri, "id", "aud", 0);
        reject_buf("grant", &b);
        put_grant(&b, NULL, "k", uri, "aud", 0);
        reject_buf("grant", &b);
        put_grant(&b, NULL, "k", "id", url, 0);
        reject_buf("grant", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_bytes(&b, "pkcs11:\0", 8)), OK(buf_put_str(&b, NULL)),
                OK(buf_put_str(&b, NULL)), OK(buf_put_str(&b, NULL)), OK(buf_put_u8(&b, 0)));
        reject_buf("grant", &b);

        /* SECRET_REQUEST. */
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "pkcs11:object=x")));
        valid_buf("secret_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, NULL)));
        reject_buf("secret_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, uri)));
        reject_buf("secret_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_bytes(&b, "pkcs11:\0", 8)));
        reject_buf("secret_request", &b);
        free(uri);
        free(url);
}

static void test_reject_sign(void **state) {
        uint8_t big[MSG_SIGNING_INPUT_MAX + 1] = {};
        char *uri = repeat('p', MSG_ID_MAX + 1), *text = repeat('x', MSG_TEXT_MAX + 1);
        struct buf b;

        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "pkcs11:object=k")), OK(buf_put_bytes(&b, "a.b", 3)));
        valid_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "pkcs11:object=k")), OK(buf_put_bytes(&b, NULL, 0)));
        valid_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "k")), OK(buf_put_bytes(&b, big, MSG_SIGNING_INPUT_MAX)));
        valid_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "k")), OK(buf_put_bytes(&b, big, sizeof big)));
        reject_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, NULL)), OK(buf_put_bytes(&b, "a.b", 3)));
        reject_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, uri)), OK(buf_put_bytes(&b, "a.b", 3)));
        reject_buf("sign_request", &b);
        PAYLOAD(b, OK(buf_put_u64(&b, 3)), OK(buf_put_str(&b, "k")), OK(buf_put_u32(&b, UINT32_MAX)));
        reject_buf("sign_request", &b);

#define SIG(b, err, desc, alg, data, len) \
        PAYLOAD(b, OK(buf_put_u64(&b, 1)), OK(buf_put_u32(&b, (uint32_t) (err))), OK(buf_put_str(&b, desc)), \
                OK(buf_put_u8(&b, alg)), OK(buf_put_bytes(&b, data, len)))
        SIG(b, 0, NULL, 1, "\x01\x02", 2);
        valid_buf("signature", &b);
        SIG(b, 0, NULL, 3, NULL, 0);                                    /* the answer to "which alg?" */
        valid_buf("signature", &b);
        SIG(b, -EOPNOTSUPP, "no", 0, NULL, 0);
        valid_buf("signature", &b);
        SIG(b, 0, NULL, 0, "s", 1);                                     /* success without an alg */
        reject_buf("signature", &b);
        SIG(b, 0, NULL, MSG_ALG_MAX + 1, "s", 1);
        reject_buf("signature", &b);
        SIG(b, 0, "why", 1, "s", 1);                                    /* success with a description */
        reject_buf("signature", &b);
        SIG(b, -EPERM, NULL, 1, NULL, 0);                               /* an error with an alg */
        reject_buf("signature", &b);
        SIG(b, -EPERM, NULL, 0, "s", 1);                                /* ... or signature bytes */
        reject_buf("signature", &b);
        SIG(b, 1, NULL, 1, "s", 1);                                     /* not an errno */
        reject_buf("signature", &b);
        SIG(b, -4096, NULL, 0, NULL, 0);
        reject_buf("signature", &b);
        SIG(b, -EPERM, text, 0, NULL, 0);
        reject_buf("signature", &b);
        SIG(b, 0, NULL, 1, big, MSG_SIGNATURE_MAX + 1);
        reject_buf("signature", &b);
#undef SIG
        free(uri);
        free(text);
}

static void put_secret(struct buf *b, int32_t error, const char *description, const void *secret, size_t len) {
        buf_init(b, 1 << 20);
        OK(buf_put_u64(b, 1));
        OK(buf_put_u32(b, (uint32_t) error));
        OK(buf_put_str(b, description));
        OK(buf_put_bytes(b, secret, len));
}

static void test_reject_secret(void **state) {
        uint8_t big[MSG_SECRET_MAX + 1] = {};
        char *text = repeat('x', MSG_TEXT_MAX + 1);
        struct buf b;

        put_secret(&b, 0, NULL, "s\0cret", 6);
        valid_buf("secret", &b);
        put_secret(&b, 0, NULL, big, MSG_SECRET_MAX);
        valid_buf("secret", &b);
        put_secret(&b, -EPERM, "no grant", NULL, 0);
        valid_buf("secret", &b);

        put_secret(&b, 0, NULL, big, sizeof big);               /* too long */
        reject_buf("secret", &b);
        put_secret(&b, 1, NULL, NULL, 0);                       /* positive error */
        reject_buf("secret", &b);
        put_secret(&b, INT32_MAX, NULL, NULL, 0);
        reject_buf("secret", &b);
        put_secret(&b, -4096, NULL, NULL, 0);                   /* not an errno */
        reject_buf("secret", &b);
        put_secret(&b, INT32_MIN, NULL, NULL, 0);
        reject_buf("secret", &b);
        put_secret(&b, -EPERM, NULL, "s", 1);                   /* an error with secret bytes */
        reject_buf("secret", &b);
        put_secret(&b, 0, "why", "s", 1);                       /* success with a description */
        reject_buf("secret", &b);
        put_secret(&b, -EPERM, text, NULL, 0);                  /* description too long */
        reject_buf("secret", &b);
        buf_init(&b, 64);                                       /* secret as NULL marker */
        OK(buf_put_u64(&b, 1));
        OK(buf_put_u32(&b, 0));
        OK(buf_put_str(&b, NULL));
        OK(buf_put_str(&b, NULL));
        reject_buf("secret", &b);
        free(text);
}

static void test_reject_channel_and_config_done(void **state) {
        char *reason = repeat('r', MSG_REASON_MAX + 1);
        struct buf b;

        PAYLOAD(b, OK(buf_put_u8(&b, CHAN_SUPER_HSM)));
        valid_buf("channel_fd", &b);
        for (unsigned c = _CHAN_MAX; c < 256; c++) {
                PAYLOAD(b, OK(buf_put_u8(&b, (uint8_t) c)));
                reject_buf("channel_fd", &b);
        }

        PAYLOAD(b, OK(buf_put_u8(&b, 1)), OK(buf_put_str(&b, "socket changed")));
        valid_buf("config_done", &b);
        PAYLOAD(b, OK(buf_put_u8(&b, 1)), OK(buf_put_str(&b, reason)));
        reject_buf("config_done", &b);
        PAYLOAD(b, OK(buf_put_u8(&b, 1)), OK(buf_put_bytes(&b, "a\0", 2)));
        reject_buf("config_done", &b);
        free(reason);
}

/* ---- Encoder rejections ------------------------------------------------------------ */

/* OUT holds a marker frame; a failed encode leaves exactly that. */
static void expect_encode_fails(struct buf *out, int r, int expected) {
        static const uint8_t marker[] = { 0, 0, 0, 1, MSG_CHANNEL, 0 };

        if (r != expected)
                print_error("encode returned %d, expected %d\n", r, expected);
        assert_int_equal(r, expected);
        assert_int_equal(out->len, sizeof marker);
        assert_memory_equal(out->data, marker, sizeof marker);
}

static void test_encode_rejects(void **state) {
        char *long_url = repeat('u', MSG_URL_MAX + 1), *long_id = repeat('i', MSG_ID_MAX + 1),
             *long_token = repeat('t', MSG_TOKEN_MAX + 1), *long_text = repeat('x', MSG_TEXT_MAX + 1),
             *long_reason = repeat('r', MSG_REASON_MAX + 1);
        const struct msg_fetch ok_fetch = {
                .token_url = (char *) "https://x/", .client_id = (char *) "id", .client_secret_uri = (char *) "pkcs11:",
        };
        struct msg_fetch f;
        uint8_t secret[MSG_SECRET_MAX + 1] = {};
        struct buf out;

        buf_init(&out, 1 << 21);
        assert_int_equal(msg_channel_fd_encode(&(struct msg_channel_fd) { .channel = 0 }, &out), 0);

        expect_encode_fails(&out, msg_hello_encode(&(struct msg_hello) { .version = 1, .role = 0 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_hello_encode(&(struct msg_hello) { .version = 1, .role = 5 }, &out), -EINVAL);

        f = ok_fetch;
        f.token_url = NULL;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.client_id = NULL;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.client_secret_uri = NULL;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT; /* with a secret URI and no key */
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.client_auth = 3;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.key_id = (char *) "kid"; /* a kid with post */
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = (struct msg_fetch) { .token_url = (char *) "u", .client_id = (char *) "id",
                                 .client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT, .client_key_uri = (char *) "k",
                                 .assertion_audience = (char *) "a", .assertion_lifetime = 60 };
        assert_int_equal(msg_fetch_encode(&f, &out), 0);
        out.len = 6; /* back to the marker */
        f.assertion_lifetime = 301;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f.assertion_lifetime = 60;
        f.key_id = long_text;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EMSGSIZE);
        expect_encode_fails(&out, msg_grant_encode(&(struct msg_grant) { .client_key_uri = (char *) "k" }, &out),
                            -EINVAL);
        expect_encode_fails(&out, msg_grant_encode(&(struct msg_grant) { .client_secret_uri = (char *) "s",
                                                                         .assertion_alg = 1 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_sign_request_encode(&(struct msg_sign_request) { .signing_input_len = 1 }, &out),
                            -EINVAL);
        expect_encode_fails(&out, msg_sign_request_encode(&(struct msg_sign_request) {
                .client_key_uri = (char *) "k", .signing_input = (const uint8_t *) long_token,
                .signing_input_len = MSG_SIGNING_INPUT_MAX + 1 }, &out), -EMSGSIZE);
        expect_encode_fails(&out, msg_signature_encode(&(struct msg_signature) { .alg = 0 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_signature_encode(&(struct msg_signature) {
                .alg = 1, .signature = (const uint8_t *) long_token, .signature_len = MSG_SIGNATURE_MAX + 1 }, &out),
                -EMSGSIZE);
        f = ok_fetch;
        f.allow_insecure_loopback = 2;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EINVAL);
        f = ok_fetch;
        f.token_url = long_url;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EMSGSIZE);
        f = ok_fetch;
        f.client_secret_uri = long_id;
        expect_encode_fails(&out, msg_fetch_encode(&f, &out), -EMSGSIZE);

        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) { .error = API_OK }, &out), -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .error = API_IDP_ERROR, .access_token = (char *) "t" }, &out), -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) { .error = _API_ERROR_MAX }, &out),
                            -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) { .access_token = long_token, .fingerprint = "0123abcd" }, &out),
                            -EMSGSIZE);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .error = API_IDP_ERROR, .description = long_text }, &out), -EMSGSIZE);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .error = API_IDP_ERROR, .retry_after = MSG_RETRY_AFTER_MAX + 1 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .access_token = (char *) "t", .retry_after = 1, .fingerprint = "0123abcd" }, &out), -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) { .access_token = (char *) "t" }, &out),
                            -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .access_token = (char *) "t", .fingerprint = "0123abc" }, &out), -EINVAL);
        expect_encode_fails(&out, msg_fetch_done_encode(&(struct msg_fetch_done) {
                .error = API_IDP_ERROR, .fingerprint = "0123abcd" }, &out), -EINVAL);

        expect_encode_fails(&out, msg_grant_encode(&(struct msg_grant) {}, &out), -EINVAL);
        expect_encode_fails(&out, msg_grant_encode(&(struct msg_grant) { .client_secret_uri = long_id }, &out), -EMSGSIZE);
        expect_encode_fails(&out, msg_secret_request_encode(&(struct msg_secret_request) {}, &out), -EINVAL);

        expect_encode_fails(&out, msg_secret_encode(&(struct msg_secret) { .error = 1 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_secret_encode(&(struct msg_secret) { .error = -4096 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_secret_encode(&(struct msg_secret) {
                .error = -EIO, .secret = secret, .secret_len = 1 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_secret_encode(&(struct msg_secret) {
                .description = (char *) "x", .secret = secret, .secret_len = 1 }, &out), -EINVAL);
        expect_encode_fails(&out, msg_secret_encode(&(struct msg_secret) {
                .secret = secret, .secret_len = sizeof secret }, &out), -EMSGSIZE);

        expect_encode_fails(&out, msg_channel_fd_encode(&(struct msg_channel_fd) { .channel = _CHAN_MAX }, &out),
                            -EINVAL);
        expect_encode_fails(&out, msg_config_done_encode(&(struct msg_config_done) { .reason = long_reason }, &out),
                            -EMSGSIZE);
        buf_done(&out);

        /* OUT's own max: the frame does not fit, nothing is left of it. */
        buf_init(&out, 10);
        assert_int_equal(msg_channel_fd_encode(&(struct msg_channel_fd) { .channel = 0 }, &out), 0);
        expect_encode_fails(&out, msg_grant_encode(&(struct msg_grant) { .client_secret_uri = (char *) "u" }, &out),
                            -EMSGSIZE);
        buf_done(&out);

        free(long_url);
        free(long_id);
        free(long_token);
        free(long_text);
        free(long_reason);
}

static void test_frame_begin_end(void **state) {
        struct buf out;
        size_t start;
        uint8_t *big;

        buf_init(&out, 3 << 20);
        assert_int_equal(msg_frame_begin(&out, MSG_CONFIG, &start), 0);
        assert_int_equal(start, 0);
        assert_int_equal(buf_put(&out, "abc", 3), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), 0);
        assert_int_equal(out.len, 8);
        assert_memory_equal(out.data, "\0\0\0\x03\x29" "abc", 8);

        /* A failure passed in removes the frame and is returned. */
        assert_int_equal(msg_frame_begin(&out, MSG_CONFIG, &start), 0);
        assert_int_equal(start, 8);
        assert_int_equal(buf_put(&out, "xyz", 3), 0);
        assert_int_equal(msg_frame_end(&out, start, -ENOMEM), -ENOMEM);
        assert_int_equal(out.len, 8);

        /* Over the type's largest channel: 64 KiB for FETCH, 8 KiB for GRANT, exactly. */
        big = calloc(1, 1 << 16);
        assert_non_null(big);
        assert_int_equal(msg_frame_begin(&out, MSG_FETCH, &start), 0);
        assert_int_equal(buf_put(&out, big, (1 << 16) - MSG_HEADER_SIZE), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), 0);
        assert_int_equal(out.len, 8 + (1 << 16));
        assert_int_equal(msg_frame_begin(&out, MSG_FETCH, &start), 0);
        assert_int_equal(buf_put(&out, big, (1 << 16) - MSG_HEADER_SIZE + 1), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), -EMSGSIZE);
        assert_int_equal(out.len, 8 + (1 << 16));
        buf_reset(&out);
        assert_int_equal(msg_frame_begin(&out, MSG_GRANT, &start), 0);
        assert_int_equal(buf_put(&out, big, 8192 - MSG_HEADER_SIZE), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), 0);
        assert_int_equal(msg_frame_begin(&out, MSG_GRANT, &start), 0);
        assert_int_equal(buf_put(&out, big, 8192 - MSG_HEADER_SIZE + 1), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), -EMSGSIZE);
        assert_int_equal(out.len, 8192);
        /* A type no channel carries. */
        assert_int_equal(msg_frame_begin(&out, 0, &start), 0);
        assert_int_equal(msg_frame_end(&out, start, 0), -EMSGSIZE);
        assert_int_equal(out.len, 8192);
        free(big);
        buf_done(&out);
}

/* ---- msg_frame_parse ---------------------------------------------------------------- */

static void test_frame_parse(void **state) {
        uint8_t *dgram = calloc(1, (1 << 20) + 2);
        struct msg_frame f;

        assert_non_null(dgram);
        /* Every channel, direction and type: accepted exactly when the table says so. */
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const struct allowed *a = &table[i];

                for (unsigned t = 0; t < 256; t++) {
                        uint8_t h[] = { 0, 0, 0, 2, (uint8_t) t, 0xaa, 0xbb };
                        int r;

                        f = (struct msg_frame) { .type = 77, .fd = 5 };
                        r = msg_frame_parse(a->c, a->from_a, h, sizeof h, &f);
                        if (in_table(a, t)) {
                                assert_int_equal(r, 0);
                                assert_int_equal(f.type, t);
                                assert_ptr_equal(f.payload, h + 5);
                                assert_int_equal(f.len, 2);
                                assert_int_equal(f.fd, -1);
                        } else {
                                assert_int_equal(r, -EPROTO);
                                assert_int_equal(f.type, 77); /* untouched */
                                assert_int_equal(f.fd, 5);
                        }
                }

                /* Exactly the maximum is fine; one more byte is not. */
                dgram[0] = (uint8_t) ((a->max - 5) >> 24);
                dgram[1] = (uint8_t) ((a->max - 5) >> 16);
                dgram[2] = (uint8_t) ((a->max - 5) >> 8);
                dgram[3] = (uint8_t) (a->max - 5);
                dgram[4] = a->types[0]; /* a type this side may send */
                if (!dgram[4])
                        continue; /* this side sends nothing */
                assert_int_equal(msg_frame_parse(a->c, a->from_a, dgram, a->max, &f), 0);
                assert_int_equal(f.len, a->max - 5);
                dgram[3]++;
                assert_int_equal(msg_frame_parse(a->c, a->from_a, dgram, a->max + 1, &f), -EMSGSIZE);
        }

        /* Shorter than a header, and lengths that disagree with the datagram. */
        for (size_t n = 0; n < MSG_HEADER_SIZE; n++)
                assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\0\0\0\0\x01", n, &f),
                                 -EBADMSG);
        assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\0\0\0\0\x01", 5, &f), 0);
        assert_int_equal(f.len, 0);
        assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\0\0\0\x01\x01", 5, &f), -EBADMSG);
        assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\0\0\0\0\x01x", 6, &f), -EBADMSG);
        assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\xff\xff\xff\xff\x01x", 6, &f),
                         -EBADMSG);
        assert_int_equal(msg_frame_parse(CHAN_FRONT_NET, true, (const uint8_t *) "\x80\0\0\x01\x01x", 6, &f),
                         -EBADMSG);
        /* No such channel. */
        assert_int_equal(msg_frame_parse(_CHAN_MAX, true, (const uint8_t *) "\0\0\0\0\x01", 5, &f), -EINVAL);
        free(dgram);
}

/* ---- Sockets ----------------------------------------------------------------------- */

static void pair(int sv[2]) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

/* A pipe whose read end is non-blocking: reading it tells whether any write end is still open. */
static void watched_pipe(int p[2]) {
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
}

static bool all_write_ends_closed(int read_fd) {
        char c;
        ssize_t n = read(read_fd, &c, 1);

        if (n == 0)
                return true;
        assert_true(n < 0 && errno == EAGAIN);
        return false;
}

static void test_send_recv(void **state) {
        uint8_t rbuf[8192];
        struct msg_frame f;
        struct msg_hello h;
        struct buf b;
        int sv[2];

        pair(sv);
        buf_init(&b, 64);
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = MSG_VERSION, .role = ROLE_FRONT }, &b), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), 0);
        buf_done(&b);

        /* Each datagram is one frame. */
        for (int i = 0; i < 2; i++) {
                f = (struct msg_frame) {};
                assert_int_equal(msg_recv(sv[1], CHAN_FRONT_NET, true, rbuf, sizeof rbuf, &f), 0);
                assert_int_equal(f.type, MSG_HELLO);
                assert_ptr_equal(f.payload, rbuf + MSG_HEADER_SIZE);
                assert_int_equal(f.len, 5);
                assert_int_equal(f.fd, -1);
                assert_int_equal(msg_hello_decode(f.payload, f.len, &h), 0);
                assert_int_equal(h.role, ROLE_FRONT);
                assert_int_equal(h.version, MSG_VERSION);
        }

        /* Nothing queued on a non-blocking socket. */
        assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        f = (struct msg_frame) { .type = 99 };
        assert_int_equal(msg_recv(sv[1], CHAN_FRONT_NET, true, rbuf, sizeof rbuf, &f), -EAGAIN);
        assert_int_equal(f.type, 99);

        /* The peer closes: end of stream, and sending to it is -EPIPE without SIGPIPE. */
        close(sv[0]);
        f = (struct msg_frame) { .type = 99, .fd = 7 };
        assert_int_equal(msg_recv(sv[1], CHAN_FRONT_NET, true, rbuf, sizeof rbuf, &f), 0);
        assert_int_equal(f.type, 0);
        assert_int_equal(f.len, 0);
        assert_int_equal(f.fd, -1);
        buf_init(&b, 64);
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = MSG_VERSION, .role = ROLE_NET }, &b), 0);
        assert_int_equal(msg_send(sv[1], &b, -1), -EPIPE);
        buf_done(&b);
        close(sv[1]);
}

static void test_send_not_a_frame(void **state) {
        struct buf b;
        int sv[2];

        pair(sv);
        buf_init(&b, 64);
        assert_int_equal(msg_send(sv[0], &b, -1), -EINVAL);                     /* empty */
        assert_int_equal(buf_put(&b, "\0\0\0\x01\x01", 5), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), -EINVAL);                     /* says 1, has 0 */
        assert_int_equal(buf_put(&b, "xy", 2), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), -EINVAL);                     /* says 1, has 2 */
        buf_reset(&b);
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = 1, .role = ROLE_NET }, &b), 0);
        assert_int_equal(msg_hello_encode(&(struct msg_hello) { .version = 1, .role = ROLE_NET }, &b), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), -EINVAL);                     /* two frames */
        buf_done(&b);
        assert_int_equal(msg_send(-1, &(struct buf) { .data = (uint8_t *) "\0\0\0\0\x01", .len = 5 }, -1), -EBADF);
        close(sv[0]);
        close(sv[1]);
}

static void test_fd_passing(void **state) {
        uint8_t rbuf[8192];
        struct msg_frame f;
        struct msg_channel_fd c;
        struct buf b;
        int sv[2], p[2], flags;
        char ch;

        pair(sv);
        watched_pipe(p);
        buf_init(&b, 64);
        assert_int_equal(msg_channel_fd_encode(&(struct msg_channel_fd) { .channel = CHAN_NET_HSM }, &b), 0);
        assert_int_equal(msg_send(sv[0], &b, p[1]), 0);
        buf_done(&b);
        close(p[1]);

        assert_int_equal(msg_recv(sv[1], CHAN_SUPER_HSM, true, rbuf, sizeof rbuf, &f), 0);
        assert_int_equal(f.type, MSG_CHANNEL);
        assert_true(f.fd >= 0);
        flags = fcntl(f.fd, F_GETFD);
        assert_true(flags >= 0 && (flags & FD_CLOEXEC)); /* MSG_CMSG_CLOEXEC */
        assert_int_equal(msg_channel_fd_decode(f.payload, f.len, &c), 0);
        assert_int_equal(c.channel, CHAN_NET_HSM);
        /* It is the pipe's write end. */
        assert_int_equal(write(f.fd, "!", 1), 1);
        assert_int_equal(read(p[0], &ch, 1), 1);
        assert_int_equal(ch, '!');
        close(f.fd);
        assert_true(all_write_ends_closed(p[0]));
        close(p[0]);
        close(sv[0]);
        close(sv[1]);
}

/* Sends the raw datagram D[0..N) with FD attached (if ≥ 0) and expects msg_recv() to fail
 * with EXPECTED and to have closed the fd it received. */
static void expect_recv_fails(enum msg_channel c, bool from_a, const void *d, size_t n, bool with_fd, size_t buf_size,
                              int expected) {
        uint8_t *rbuf = malloc(buf_size);
        struct msg_frame f = { .type = 99, .fd = 1234 };
        struct buf b = { .data = (uint8_t *) d, .len = n };
        int sv[2], p[2] = { -1, -1 }, r;

        assert_non_null(rbuf);
        pair(sv);
        if (with_fd)
                watched_pipe(p);
        if (n >= MSG_HEADER_SIZE && msg_send(sv[0], &b, p[1]) == 0)
                ;
        else {
                /* Not a well-formed frame: send it raw. */
                struct iovec iov = { .iov_base = (void *) d, .iov_len = n };
                union {
                        struct cmsghdr h;
                        uint8_t space[CMSG_SPACE(sizeof(int))];
                } control = {};
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

                if (with_fd) {
                        struct cmsghdr *cm;

                        mh.msg_control = &control;
                        mh.msg_controllen = sizeof control;
                        cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
                }
                assert_int_equal(sendmsg(sv[0], &mh, MSG_NOSIGNAL), (ssize_t) n);
        }
        if (with_fd)
                close(p[1]);

        r = msg_recv(sv[1], c, from_a, rbuf, buf_size, &f);
        if (r != expected)
                print_error("msg_recv returned %d, expected %d\n", r, expected);
        assert_int_equal(r, expected);
        assert_int_equal(f.type, 99); /* untouched */
        assert_int_equal(f.fd, 1234);
        if (with_fd) {
                assert_true(all_write_ends_closed(p[0]));
                close(p[0]);
        }
        close(sv[0]);
        close(sv[1]);
        free(rbuf);
}

static void test_recv_rejects(void **state) {
        uint8_t *big = calloc(1, 70000);
        uint8_t hello[] = { 0, 0, 0, 5, MSG_HELLO, 0, 0, 0, 1, ROLE_NET };
        uint8_t channel[] = { 0, 0, 0, 1, MSG_CHANNEL, CHAN_FRONT_HSM };
        uint8_t config[] = { 0, 0, 0, 8, MSG_CONFIG, 0, 0, 0, 0, 0, 0, 0, 1 };

        assert_non_null(big);
        /* A datagram larger than the receive buffer: truncated, so -EMSGSIZE (fd or not). */
        big[0] = 0;
        big[1] = (uint8_t) ((9000 - 5) >> 16);
        big[2] = (uint8_t) ((9000 - 5) >> 8);
        big[3] = (uint8_t) (9000 - 5);
        big[4] = MSG_HELLO;
        expect_recv_fails(CHAN_SUPER_HSM, true, big, 9000, false, msg_channel_max(CHAN_SUPER_HSM), -EMSGSIZE);
        expect_recv_fails(CHAN_SUPER_HSM, true, big, 9000, true, msg_channel_max(CHAN_SUPER_HSM), -EMSGSIZE);
        /* Larger than the channel allows though the buffer took it whole. */
        expect_recv_fails(CHAN_SUPER_HSM, true, big, 9000, false, 16384, -EMSGSIZE);
        /* A type the direction may not send, with and without an fd. */
        expect_recv_fails(CHAN_FRONT_HSM, false, channel, sizeof channel, false, 8192, -EPROTO);
        expect_recv_fails(CHAN_SUPER_FRONT, false, channel, sizeof channel, true, 8192, -EPROTO);
        /* An fd on a frame that carries none; a CHANNEL without its fd. */
        expect_recv_fails(CHAN_FRONT_NET, true, hello, sizeof hello, true, 8192, -EPROTO);
        expect_recv_fails(CHAN_SUPER_NET, true, channel, sizeof channel, false, 8192, -EPROTO);
        /* A CONFIG without its memfd; a CONFIG the child may not send. */
        expect_recv_fails(CHAN_SUPER_NET, true, config, sizeof config, false, 8192, -EPROTO);
        expect_recv_fails(CHAN_SUPER_HSM, false, config, sizeof config, true, 8192, -EPROTO);
        /* Malformed headers, raw. */
        expect_recv_fails(CHAN_FRONT_NET, true, "\0\0\0", 3, false, 8192, -EBADMSG);
        expect_recv_fails(CHAN_FRONT_NET, true, "\0\0\0\x09\x01", 5, true, 8192, -EBADMSG);
        /* An empty datagram that carries an fd is not an end of stream. */
        expect_recv_fails(CHAN_FRONT_NET, true, "", 0, true, 8192, -EBADMSG);
        free(big);
}

static void test_recv_two_fds(void **state) {
        uint8_t channel[] = { 0, 0, 0, 1, MSG_CHANNEL, CHAN_FRONT_HSM };
        struct iovec iov = { .iov_base = channel, .iov_len = sizeof channel };
        union {
                struct cmsghdr h;
                uint8_t space[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof control };
        struct cmsghdr *cm;
        uint8_t rbuf[8192];
        struct msg_frame f;
        int sv[2], p[2], q[2], fds[2];

        pair(sv);
        watched_pipe(p);
        watched_pipe(q);
        fds[0] = p[1];
        fds[1] = q[1];
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
        assert_int_equal(sendmsg(sv[0], &mh, MSG_NOSIGNAL), (ssize_t) sizeof channel);
        close(p[1]);
        close(q[1]);

        assert_int_equal(msg_recv(sv[1], CHAN_SUPER_FRONT, true, rbuf, sizeof rbuf, &f), -EPROTO);
        assert_true(all_write_ends_closed(p[0]));
        assert_true(all_write_ends_closed(q[0]));
        close(p[0]);
        close(q[0]);
        close(sv[0]);
        close(sv[1]);
}

static void test_recv_bad_args(void **state) {
        uint8_t rbuf[8];
        struct msg_frame f;
        int sv[2];

        pair(sv);
        assert_int_equal(msg_recv(sv[1], CHAN_FRONT_NET, true, rbuf, 4, &f), -EINVAL);
        assert_int_equal(msg_recv(sv[1], _CHAN_MAX, true, rbuf, sizeof rbuf, &f), -EINVAL);
        close(sv[0]);
        close(sv[1]);
}

/* A full FETCH → FETCH_DONE exchange over one channel, as front and net do it. */
static void test_exchange(void **state) {
        uint8_t *rbuf = malloc(msg_channel_max(CHAN_FRONT_NET));
        size_t rsize = msg_channel_max(CHAN_FRONT_NET);
        struct msg_fetch fd = {};
        struct msg_fetch_done dd = {};
        struct msg_frame f;
        struct buf b;
        int sv[2];

        assert_non_null(rbuf);
        pair(sv);
        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        assert_int_equal(msg_fetch_encode(&(struct msg_fetch) {
                .fetch_id = 77, .token_url = (char *) "https://idp/token", .client_id = (char *) "c",
                .client_secret_uri = (char *) "pkcs11:object=c", .connect_timeout = 1, .timeout = 2,
                .default_ttl = 3, .max_ttl = 4 }, &b), 0);
        assert_int_equal(msg_send(sv[0], &b, -1), 0);
        buf_done(&b);

        assert_int_equal(msg_recv(sv[1], CHAN_FRONT_NET, true, rbuf, rsize, &f), 0);
        assert_int_equal(f.type, MSG_FETCH);
        assert_int_equal(msg_fetch_decode(f.payload, f.len, &fd), 0);
        assert_true(fd.fetch_id == 77);
        assert_string_equal(fd.client_secret_uri, "pkcs11:object=c");

        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        assert_int_equal(msg_fetch_done_encode(&(struct msg_fetch_done) {
                .fetch_id = fd.fetch_id, .http_status = 200, .expires_in = 60, .access_token = (char *) "tok",
                .fingerprint = "0123abcd" }, &b), 0);
        msg_fetch_clear(&fd);
        assert_int_equal(msg_send(sv[1], &b, -1), 0);
        buf_done(&b);

        /* The front receives it as side A: FETCH_DONE comes from B. */
        assert_int_equal(msg_recv(sv[0], CHAN_FRONT_NET, false, rbuf, rsize, &f), 0);
        assert_int_equal(f.type, MSG_FETCH_DONE);
        assert_int_equal(msg_fetch_done_decode(f.payload, f.len, &dd), 0);
        assert_true(dd.fetch_id == 77);
        assert_string_equal(dd.access_token, "tok");
        msg_fetch_done_clear(&dd);
        close(sv[0]);
        close(sv[1]);
        free(rbuf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_channel_table),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_exact_bytes),
                cmocka_unit_test(test_roundtrip_hello),
                cmocka_unit_test(test_roundtrip_fetch),
                cmocka_unit_test(test_roundtrip_fetch_done),
                cmocka_unit_test(test_roundtrip_grant_and_request),
                cmocka_unit_test(test_roundtrip_sign),
                cmocka_unit_test(test_roundtrip_secret),
                cmocka_unit_test(test_roundtrip_channel_and_config_done),
                cmocka_unit_test(test_reject_hello),
                cmocka_unit_test(test_reject_fetch),
                cmocka_unit_test(test_reject_fetch_done),
                cmocka_unit_test(test_reject_grant_and_request),
                cmocka_unit_test(test_reject_sign),
                cmocka_unit_test(test_reject_secret),
                cmocka_unit_test(test_reject_channel_and_config_done),
                cmocka_unit_test(test_encode_rejects),
                cmocka_unit_test(test_frame_begin_end),
                cmocka_unit_test(test_frame_parse),
                cmocka_unit_test(test_send_recv),
                cmocka_unit_test(test_send_not_a_frame),
                cmocka_unit_test(test_fd_passing),
                cmocka_unit_test(test_recv_rejects),
                cmocka_unit_test(test_recv_two_fds),
                cmocka_unit_test(test_recv_bad_args),
                cmocka_unit_test(test_exchange),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
