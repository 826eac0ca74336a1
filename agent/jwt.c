/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "agent/jwt.h"

/* ---- base64url ---- */

int jwt_base64url_append(const void *data, size_t len, struct secbuf *out) {
        size_t padded = 4 * ((len + 2) / 3), n;
        unsigned char *o;
        int k;

        if (len > 0 && !data)
                return -EINVAL;
        if (len > SECBUF_MAX || padded > out->cap - out->len)
                return -EMSGSIZE;
        o = out->data + out->len;
        /* EVP_EncodeBlock(): one line, padded, NUL-terminated; the secbuf has room for
         * cap + 1 bytes, so the NUL fits. */
        k = EVP_EncodeBlock(o, data, (int) len);
        if (k < 0 || (size_t) k != padded)
                return -EIO;
        n = padded;
        while (n > 0 && o[n - 1] == '=')
                n--;
        for (size_t i = 0; i < n; i++)
                if (o[i] == '+')
                        o[i] = '-';
                else if (o[i] == '/')
                        o[i] = '_';
        secure_wipe(o + n, padded - n);
        out->len += n;
        out->data[out->len] = '\0';
        return 0;
}

int jwt_base64url_encode(const void *data, size_t len, char **ret) {
        _cleanup_secbuf_ struct secbuf *b = NULL;
        char *s;
        int r;

        if (len > SECBUF_MAX / 2)
                return -EMSGSIZE;
        b = secbuf_new(4 * ((len + 2) / 3) + 1);
        if (!b)
                return -ENOMEM;
        r = jwt_base64url_append(data, len, b);
        if (r < 0)
                return r;
        s = strndup((const char *) b->data, b->len);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool is_b64url(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int jwt_base64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len) {
        _cleanup_free_ char *text = NULL, *again = NULL;
        _cleanup_free_ uint8_t *bin = NULL;
        size_t padded, pad, n;
        int k;

        if (!s && len > 0)
                return -EBADMSG;
        if (len % 4 == 1 || len > SECBUF_MAX)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++)
                if (!is_b64url((unsigned char) s[i]))
                        return -EBADMSG;

        pad = (4 - len % 4) % 4;
        padded = len + pad;
        text = malloc(padded + 1);
        bin = malloc(padded / 4 * 3 + 1);
        if (!text || !bin)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++)
                text[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        memset(text + len, '=', pad);
        text[padded] = '\0';

        /* EVP_DecodeBlock() counts the padding as zero bytes: take them off. */
        k = padded > 0 ? EVP_DecodeBlock(bin, (const unsigned char *) text, (int) padded) : 0;
        if (k < 0 || (size_t) k != padded / 4 * 3)
                return -EBADMSG;
        n = (size_t) k - pad;
        bin[n] = '\0';

        /* Only the canonical text of these bytes: no stray bits in the last character. */
        if (jwt_base64url_encode(bin, n, &again) < 0)
                return -ENOMEM;
        if (strlen(again) != len || memcmp(again, s, len) != 0)
                return -EBADMSG;

        *ret = TAKE_PTR(bin);
        *ret_len = n;
        return 0;
}

/* ---- header and claims ---- */

static bool printable_ascii(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] > 0x7e)
                        return false;
        return true;
}

static bool jti_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n < 16 || n > 128)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_b64url((unsigned char) s[i]))
                        return false;
        return true;
}

/* Serialises O the one way both sides use.  Returns a malloc()ed copy or NULL. */
static char *to_json(struct json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        return s ? strdup(s) : NULL;
}

static int add_string(struct json_object *o, const char *key, const char *value) {
        struct json_object *v = json_object_new_string(value);

        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_int(struct json_object *o, const char *key, int64_t value) {
        struct json_object *v = json_object_new_int64(value);

        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int jwt_header_json(enum hsm_alg alg, const char *kid, char **ret) {
        struct json_object *o;
        char *s = NULL;
        int r;

        if (!hsm_alg_name(alg) || (kid && !printable_ascii(kid, JWT_KID_MAX)))
                return -EINVAL;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = add_string(o, "alg", hsm_alg_name(alg));
        if (r >= 0)
                r = add_string(o, "typ", "JWT");
        if (r >= 0 && kid)
                r = add_string(o, "kid", kid);
        if (r >= 0 && !(s = to_json(o)))
                r = -ENOMEM;
        json_object_put(o);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

int jwt_claims_json(const struct jwt_claims *c, char **ret) {
        struct json_object *o;
        char *s = NULL;
        int r;

        if (!c || !c->client_id || !c->audience || !c->jti || !printable_ascii(c->client_id, JWT_ID_MAX) ||
            !printable_ascii(c->audience, JWT_AUDIENCE_MAX) || !jti_is_valid(c->jti))
                return -EINVAL;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        r = add_string(o, "iss", c->client_id);
        if (r >= 0)
                r = add_string(o, "sub", c->client_id);
        if (r >= 0)
                r = add_string(o, "aud", c->audience);
        if (r >= 0)
                r = add_int(o, "iat", c->iat);
        if (r >= 0)
                r = add_int(o, "exp", c->exp);
        if (r >= 0)
                r = add_string(o, "jti", c->jti);
        if (r >= 0 && !(s = to_json(o)))
                r = -ENOMEM;
        json_object_put(o);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

int jwt_new_jti(char ret[static JWT_JTI_LEN + 1]) {
        _cleanup_free_ char *s = NULL;
        unsigned char rnd[JWT_JTI_BYTES];
        int r;

        if (RAND_bytes(rnd, sizeof rnd) != 1)
                return -EIO;
        r = jwt_base64url_encode(rnd, sizeof rnd, &s);
        if (r < 0)
                return r;
        if (strlen(s) != JWT_JTI_LEN)
                return -EIO;
        memcpy(ret, s, JWT_JTI_LEN + 1);
        return 0;
}

int jwt_signing_input(enum hsm_alg alg, const char *kid, const struct jwt_claims *c, struct secbuf **ret) {
        _cleanup_free_ char *header = NULL, *claims = NULL;
        _cleanup_secbuf_ struct secbuf *b = NULL;
        int r;

        r = jwt_header_json(alg, kid, &header);
        if (r < 0)
                return r;
        r = jwt_claims_json(c, &claims);
        if (r < 0)
                return r;
        b = secbuf_new(JWT_SIGNING_INPUT_MAX);
        if (!b)
                return -ENOMEM;
        r = jwt_base64url_append(header, strlen(header), b);
        if (r >= 0)
                r = secbuf_append(b, ".", 1);
        if (r >= 0)
                r = jwt_base64url_append(claims, strlen(claims), b);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        return 0;
}

int jwt_assemble(const struct secbuf *signing_input, const uint8_t *sig, size_t sig_len, struct secbuf **ret) {
        _cleanup_secbuf_ struct secbuf *b = NULL;
        int r;

        if (!signing_input || !sig || sig_len == 0 || !ret)
                return -EINVAL;
        if (sig_len > SECBUF_MAX / 2 || signing_input->len > SECBUF_MAX / 2)
                return -EMSGSIZE;
        b = secbuf_new(signing_input->len + 1 + 4 * ((sig_len + 2) / 3));
        if (!b)
                return -ENOMEM;
        r = secbuf_append(b, signing_input->data, signing_input->len);
        if (r >= 0)
                r = secbuf_append(b, ".", 1);
        if (r >= 0)
                r = jwt_base64url_append(sig, sig_len, b);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        return 0;
}

/* ---- what hsm signs ---- */

/* Parses exactly one JSON object from BUF (LEN bytes), nothing after it.  Returns it or NULL. */
static struct json_object *parse_object(const uint8_t *buf, size_t len) {
        struct json_tokener *tok;
        struct json_object *o;

        if (len == 0 || len > JWT_SIGNING_INPUT_MAX)
                return NULL;
        tok = json_tokener_new_ex(2);
        if (!tok)
                return NULL;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, (const char *) buf, (int) len);
        if (o && (json_tokener_get_error(tok) != json_tokener_success || json_tokener_get_parse_end(tok) != len ||
                  !json_object_is_type(o, json_type_object))) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

static const char *get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        /* A string with an embedded NUL would compare short: refuse it. */
        if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return NULL;
        return json_object_get_string(v);
}

static bool get_int(struct json_object *o, const char *key, int64_t *ret) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

static int why(const char **ret_why, const char *reason, int r) {
        if (ret_why)
                *ret_why = reason;
        return r;
}

int jwt_check_signing_input(const char *input, size_t len, const char *client_id, const char *audience,
                            enum hsm_alg alg, int64_t now, const char **ret_why) {
        _cleanup_free_ uint8_t *header = NULL, *claims = NULL;
        _cleanup_free_ char *want_header = NULL, *want_claims = NULL;
        struct json_object *h = NULL, *c = NULL;
        const char *dot, *kid, *alg_name, *jti, *iss, *sub, *aud;
        size_t header_len, claims_len;
        struct jwt_claims expect = {};
        int r;

        if (!input || len == 0 || len > JWT_SIGNING_INPUT_MAX || !client_id || !audience || !hsm_alg_name(alg))
                return why(ret_why, "no signing input, or one that is too long", -EBADMSG);
        dot = memchr(input, '.', len);
        if (!dot || dot == input || dot == input + len - 1 || memchr(dot + 1, '.', len - (size_t) (dot + 1 - input)))
                return why(ret_why, "not two base64url parts joined by one dot", -EBADMSG);
        r = jwt_base64url_decode(input, (size_t) (dot - input), &header, &header_len);
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                r = jwt_base64url_decode(dot + 1, len - (size_t) (dot + 1 - input), &claims, &claims_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return why(ret_why, "a part is not canonical base64url", -EBADMSG);

        h = parse_object(header, header_len);
        c = parse_object(claims, claims_len);
        if (!h || !c) {
                r = why(ret_why, "the header or the claims are not one JSON object", -EBADMSG);
                goto out;
        }

        /* The header: the grant's algorithm; the kid is net's to choose (it only tells the
         * IdP which registered key to try). */
        alg_name = get_string(h, "alg");
        kid = get_string(h, "kid");
        if (!alg_name || strcmp(alg_name, hsm_alg_name(alg)) != 0) {
                r = why(ret_why, "the header's alg is not the key's", -EPERM);
                goto out;
        }
        r = jwt_header_json(alg, kid, &want_header);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || strlen(want_header) != header_len || memcmp(want_header, header, header_len) != 0) {
                r = why(ret_why, "the header is not the one credagent writes", -EBADMSG);
                goto out;
        }

        /* The claims: issued by and about the granted client, for the granted audience. */
        iss = get_string(c, "iss");
        sub = get_string(c, "sub");
        aud = get_string(c, "aud");
        jti = get_string(c, "jti");
        if (!iss || !sub || !aud || !jti || !get_int(c, "iat", &expect.iat) || !get_int(c, "exp", &expect.exp)) {
                r = why(ret_why, "a claim is missing or of the wrong type", -EBADMSG);
                goto out;
        }
        if (strcmp(iss, client_id) != 0 || strcmp(sub, client_id) != 0) {
                r = why(ret_why, "iss or sub is not the granted client_id", -EPERM);
                goto out;
        }
        if (strcmp(aud, audience) != 0) {
                r = why(ret_why, "aud is not the granted audience", -EPERM);
                goto out;
        }
        if (expect.exp <= expect.iat || expect.exp - expect.iat > JWT_LIFETIME_MAX) {
                r = why(ret_why, "exp - iat is not 1 to 300 seconds", -EPERM);
                goto out;
        }
        if (expect.iat > now + JWT_CLOCK_SKEW) {
                r = why(ret_why, "iat is in the future", -EPERM);
                goto out;
        }
        if (expect.exp <= now - JWT_CLOCK_SKEW) {
                r = why(ret_why, "exp is in the past", -EPERM);
                goto out;
        }
        expect.client_id = client_id;
        expect.audience = audience;
        expect.jti = jti;
        r = jwt_claims_json(&expect, &want_claims);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || strlen(want_claims) != claims_len || memcmp(want_claims, claims, claims_len) != 0) {
                r = why(ret_why, "the claims are not the ones credagent writes", -EBADMSG);
                goto out;
        }
        r = 0;
out:
        json_object_put(h);
        json_object_put(c);
        return r;
}
