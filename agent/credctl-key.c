/* SPDX-License-Identifier: ISC */
/* credctl key generate: signing keys for private_key_jwt in the token (credctl-key.h). */
#include <errno.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/credctl-key.h"
#include "agent/credctl-util.h"
#include "agent/jwt.h"
#include "hsm/hsm.h"
#include "policy/names.h"

static void key_usage(FILE *f) {
        fputs("Usage: credctl key generate CRED.PRINCIPAL [--alg ES256|RS256|PS256]\n"
              "  Generates a signing key pair for client_auth = private_key_jwt on the token (ES256 is\n"
              "  the default) and prints its URI (for client_key), the public key as a JWK and as PEM.\n",
              f);
}

static void hsm_closep(struct hsm **h) {
        hsm_close(*h);
}

static void pkey_freep(EVP_PKEY **p) {
        EVP_PKEY_free(*p);
}

static void bn_freep(BIGNUM **b) {
        BN_free(*b);
}

static void json_putp(struct json_object **o) {
        json_object_put(*o);
}

/* ---- the JWK ---- */

/* base64url of BN as an unsigned big-endian number of at least MIN bytes (RFC 7518 §6.2.1.2:
 * EC coordinates have the curve's full length; §6.3.1.1: RSA n and e have no leading zero). */
static int bn_b64(const BIGNUM *bn, int min, char **ret) {
        int n = BN_num_bytes(bn), len = n > min ? n : min;
        _cleanup_free_ unsigned char *buf = NULL;

        if (len <= 0)
                return -EINVAL;
        buf = malloc((size_t) len);
        if (!buf)
                return -ENOMEM;
        if (BN_bn2binpad(bn, buf, len) != len)
                return -EIO;
        return jwt_base64url_encode(buf, (size_t) len, ret);
}

static int add_str(struct json_object *o, const char *key, const char *value) {
        struct json_object *v = json_object_new_string(value);

        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static const char *to_json(struct json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

int credctl_key_jwk(EVP_PKEY *pkey, const char *alg, char **ret, char **ret_kid) {
        _cleanup_(json_putp) struct json_object *members = NULL, *jwk = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *kid = NULL, *out = NULL;
        _cleanup_(bn_freep) BIGNUM *x = NULL, *y = NULL;
        unsigned char digest[32];
        unsigned int digest_len = 0;
        const char *text;
        bool ec;
        int r;

        if (!pkey || !alg || !ret)
                return -EINVAL;
        ec = EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC;
        if (ec) {
                char group[32];

                if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) != 1 ||
                    (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0))
                        return -EINVAL;
                if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
                    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1)
                        return -EIO;
                r = bn_b64(x, 32, &a);
                if (r >= 0)
                        r = bn_b64(y, 32, &b);
        } else if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
                if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &x) != 1 ||
                    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &y) != 1)
                        return -EIO;
                r = bn_b64(x, 1, &a);
                if (r >= 0)
                        r = bn_b64(y, 1, &b);
        } else
                return -EINVAL;
        if (r < 0)
                return r;

        /* RFC 7638 §3: the required members in lexicographic order, no whitespace, hashed. */
        members = json_object_new_object();
        if (!members)
                return -ENOMEM;
        if (ec)
                r = add_str(members, "crv", "P-256") ?: add_str(members, "kty", "EC") ?: add_str(members, "x", a)
                        ?: add_str(members, "y", b);
        else
                r = add_str(members, "e", b) ?: add_str(members, "kty", "RSA") ?: add_str(members, "n", a);
        if (r < 0)
                return r;
        text = to_json(members);
        if (!text || EVP_Digest(text, strlen(text), digest, &digest_len, EVP_sha256(), NULL) != 1 || digest_len != 32)
                return -EIO;
        r = jwt_base64url_encode(digest, digest_len, &kid);
        if (r < 0)
                return r;

        /* The JWK as registered: kty first, then the key, then kid, alg and use. */
        jwk = json_object_new_object();
        if (!jwk)
                return -ENOMEM;
        if (ec)
                r = add_str(jwk, "kty", "EC") ?: add_str(jwk, "crv", "P-256") ?: add_str(jwk, "x", a)
                        ?: add_str(jwk, "y", b);
        else
                r = add_str(jwk, "kty", "RSA") ?: add_str(jwk, "n", a) ?: add_str(jwk, "e", b);
        if (r >= 0)
                r = add_str(jwk, "kid", kid) ?: add_str(jwk, "alg", alg) ?: add_str(jwk, "use", "sig");
        if (r < 0)
                return r;
        text = to_json(jwk);
        if (!text || !(out = strdup(text)))
                return -ENOMEM;

        *ret = TAKE_PTR(out);
        if (ret_kid)
                *ret_kid = TAKE_PTR(kid);
        return 0;
}

/* ---- key generate ---- */



static int key_generate(const char *config_path, int argc, char **argv) {
        _cleanup_(config_freep) struct config *cfg = NULL;
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        _cleanup_(pkey_freep) EVP_PKEY *pub = NULL;
        _cleanup_free_ char *error = NULL, *uri = NULL, *jwk = NULL, *kid = NULL, *detail = NULL;
        enum hsm_alg alg = HSM_ALG_ES256;
        const char *label = NULL;
        struct hsm_params p;
        BIO *out;
        int r;

        for (int i = 2; i < argc; i++) {
                const char *v = NULL;

                if (strcmp(argv[i], "--alg") == 0 && i + 1 < argc)
                        v = argv[++i];
                else if (strncmp(argv[i], "--alg=", 6) == 0)
                        v = argv[i] + 6;
                else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        key_usage(stdout);
                        return 0;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr, "credctl: key generate: unknown option \"%s\"\n", argv[i]);
                        key_usage(stderr);
                        return 2;
                } else if (!label) {
                        label = argv[i];
                        continue;
                } else {
                        fprintf(stderr, "credctl: key generate takes one label\n");
                        key_usage(stderr);
                        return 2;
                }
                if (hsm_alg_from_name(v, &alg) < 0) {
                        fprintf(stderr, "credctl: --alg \"%s\" is not one of ES256, RS256, PS256\n", v);
                        return 2;
                }
        }
        if (!label) {
                key_usage(stderr);
                return 2;
        }
        if (!credctl_label_is_valid(label))
                return 2;
        if (credctl_load_config(config_path, &cfg) != 0)
                return 1;

        config_hsm_params(cfg, &p);
        r = hsm_open(&p, &h, &error);
        if (r < 0) {
                fprintf(stderr, "credctl: cannot open the token: %s\n", error ?: strerror(-r));
                return 1;
        }
        r = hsm_generate_key(h, label, alg, &uri, &pub);
        if (r == -EEXIST) {
                fprintf(stderr, "credctl: a key labelled \"%s\" already exists on the token; credctl never replaces "
                        "a key in place (the IdP trusts the old one until a new one is registered)\n", label);
                return 1;
        }
        if (r < 0) {
                detail = hsm_last_error(h);
                fprintf(stderr, "credctl: cannot generate the key \"%s\": %s\n", label, detail ?: strerror(-r));
                return 1;
        }
        r = credctl_key_jwk(pub, hsm_alg_name(alg), &jwk, &kid);
        if (r < 0) {
                fprintf(stderr, "credctl: the key \"%s\" was generated, but its JWK could not be written: %s\n", label,
                        strerror(-r));
                return 1;
        }

        printf("%s\n%s\n", uri, jwk);
        fflush(stdout);
        out = BIO_new_fp(stdout, BIO_NOCLOSE);
        if (!out || PEM_write_bio_PUBKEY(out, pub) != 1 || BIO_flush(out) != 1) {
                BIO_free(out);
                fprintf(stderr, "credctl: cannot write the PEM public key to standard output\n");
                return 1;
        }
        BIO_free(out);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "credctl: cannot write to standard output: %s\n", strerror(errno));
                return 1;
        }
        fprintf(stderr,
                "put this in [principal %s]: client_key = %s\n"
                "(and key_id = %s if the IdP wants a kid in the assertion)\n"
                "register the public key above (JWK or PEM) for the client at the IdP, with "
                "token_endpoint_auth_method = private_key_jwt and signing algorithm %s\n",
                label, uri, kid, hsm_alg_name(alg));
        return 0;
}

int credctl_key_main(const char *config_path, int argc, char **argv) {
        if (argc < 2) {
                key_usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "generate") == 0)
                return key_generate(config_path, argc, argv);
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                key_usage(stdout);
                return 0;
        }
        fprintf(stderr, "credctl: unknown key command \"%s\"\n", argv[1]);
        key_usage(stderr);
        return 2;
}
