/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hsm/hsm.h"
#include "secmem.h"

/* JWT client assertions for private_key_jwt (RFC 7523 §2.2 and §3, OIDC Core §9), in the
 * JWS compact serialisation (RFC 7515 §7.1).
 *
 * net builds the signing input (jwt_signing_input()), hsm checks it before it signs
 * (jwt_check_signing_input()) and net joins input and signature (jwt_assemble()).  Both
 * sides build the header and claims with the same functions, so hsm can demand that what it
 * is asked to sign is byte for byte what it would have built itself: net cannot get a
 * signature over anything else (another audience, a longer lifetime, an extra claim, a
 * duplicated member that an IdP might read differently).
 *
 * The header is {"alg":ALG,"typ":"JWT"} or {"alg":ALG,"typ":"JWT","kid":KID}; the claims are
 * {"iss":CLIENT_ID,"sub":CLIENT_ID,"aud":AUDIENCE,"iat":N,"exp":N,"jti":JTI}, in that order,
 * as json-c writes them (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE). */

#define JWT_LIFETIME_MAX 300            /* s: longest exp - iat hsm signs (RFC 7523 §3: short-lived) */
#define JWT_CLOCK_SKEW 60               /* s: iat may be this far ahead, exp this far behind */
#define JWT_SIGNING_INPUT_MAX 8192      /* bytes of "header.payload" (MSG_SIGNING_INPUT_MAX) */
#define JWT_JTI_BYTES 16                /* random bytes in a jti: 128 bits */
#define JWT_JTI_LEN 22                  /* their base64url length */
#define JWT_KID_MAX 256                 /* bytes, printable ASCII */
#define JWT_ID_MAX 1024                 /* bytes of a client_id (MSG_ID_MAX) */
#define JWT_AUDIENCE_MAX 2048           /* bytes of an audience (MSG_URL_MAX) */

/* Appends base64url (RFC 4648 §5, no padding) of DATA (LEN bytes) to OUT, with OpenSSL's
 * encoder and the alphabet translated.  Returns 0, -EMSGSIZE (OUT too small: unchanged). */
int jwt_base64url_append(const void *data, size_t len, struct secbuf *out);

/* The same into a malloc()ed string in *RET.  Returns 0, -ENOMEM, -EMSGSIZE (LEN > 1 MiB). */
int jwt_base64url_encode(const void *data, size_t len, char **ret);

/* Decodes the base64url text S (LEN bytes, no padding) with OpenSSL's decoder.  Strict: only
 * the base64url alphabet, no "=", no whitespace, LEN % 4 != 1, and the unused bits of the last
 * character zero (the canonical encoding of its bytes).  Stores a malloc()ed buffer (with a NUL
 * after the data) in *RET and its length in *RET_LEN.  Returns 0, -EBADMSG, -ENOMEM. */
int jwt_base64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len);

struct jwt_claims {
        const char *client_id;          /* iss and sub */
        const char *audience;           /* aud */
        int64_t iat, exp;               /* s since the epoch */
        const char *jti;
};

/* The header JSON for ALG (not HSM_ALG_NONE) and KID (NULL: no kid), malloc()ed in *RET.
 * Returns 0, -EINVAL (bad ALG, KID empty, over JWT_KID_MAX or not printable ASCII), -ENOMEM. */
int jwt_header_json(enum hsm_alg alg, const char *kid, char **ret);

/* The claims JSON, malloc()ed in *RET.  Returns 0, -EINVAL (a NULL or empty string, one that
 * is not printable ASCII, a client_id over JWT_ID_MAX, an audience over JWT_AUDIENCE_MAX, a jti that is not 16 … 128 base64url characters), -ENOMEM. */
int jwt_claims_json(const struct jwt_claims *c, char **ret);

/* A fresh jti: JWT_JTI_BYTES from RAND_bytes(), base64url, into RET (JWT_JTI_LEN + 1 bytes).
 * Returns 0 or -EIO (no randomness). */
int jwt_new_jti(char ret[static JWT_JTI_LEN + 1]);

/* base64url(header) "." base64url(claims), in a new secbuf in *RET (an assertion is a
 * credential for its lifetime: it lives in locked memory).  Errors of the two functions above,
 * or -EMSGSIZE past JWT_SIGNING_INPUT_MAX. */
int jwt_signing_input(enum hsm_alg alg, const char *kid, const struct jwt_claims *c, struct secbuf **ret);

/* SIGNING_INPUT "." base64url(SIG), the client_assertion, in a new secbuf in *RET.
 * Returns 0, -EINVAL (no signature), -ENOMEM, -EMSGSIZE. */
int jwt_assemble(const struct secbuf *signing_input, const uint8_t *sig, size_t sig_len, struct secbuf **ret);

/* Checks that INPUT (LEN bytes) is a signing input hsm may sign for a grant of (CLIENT_ID,
 * AUDIENCE) with algorithm ALG at time NOW (s since the epoch): exactly what jwt_signing_input()
 * builds for ALG, some kid, iss = sub = CLIENT_ID, aud = AUDIENCE, some jti, and times with
 * iat ≤ NOW + JWT_CLOCK_SKEW, iat < exp ≤ iat + JWT_LIFETIME_MAX and exp > NOW - JWT_CLOCK_SKEW.
 * The JSON is parsed with json-c (strict, nesting ≤ 2) and the base64url decoded as
 * jwt_base64url_decode() does.  Returns 0, -EBADMSG (not a JWS signing input of that form),
 * -EPERM (well-formed but a claim or the algorithm differs from the grant, or the times are
 * out of bounds), -ENOMEM.  When RET_WHY is not NULL it gets a static English reason on
 * failure (no claim value in it).  Pure: no I/O, no logging; takes untrusted bytes. */
int jwt_check_signing_input(const char *input, size_t len, const char *client_id, const char *audience,
                            enum hsm_alg alg, int64_t now, const char **ret_why);
