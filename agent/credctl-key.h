/* SPDX-License-Identifier: ISC */
#pragma once

#include <openssl/types.h>

/* `credctl key …`: signing keys for client_auth = private_key_jwt (RFC 7523 §2.2), made in
 * the PKCS#11 token directly through hsm/ (never through the agent), with the [agent] module,
 * module_dirs, token and pin_source of the configuration at CONFIG_PATH (NULL: the default
 * path), loaded with CONFIG_LOAD_AGENT_ONLY.
 *
 *   key generate CRED.PRINCIPAL [--alg ES256|RS256|PS256]
 *       Generates a key pair on the token (hsm_generate_key(): EC P-256 for ES256, the
 *       default; RSA HSM_RSA_BITS bits for RS256 and PS256), labelled CRED.PRINCIPAL (the
 *       name rule of policy/names.h for both parts).  The private key is sensitive and not
 *       extractable: it never leaves the token.  Prints on standard output three things:
 *         line 1: the key's URI, for client_key in [principal CRED.PRINCIPAL];
 *         line 2: the public key as a JWK (RFC 7517) on one line, with "kid" the RFC 7638
 *                 SHA-256 thumbprint (base64url), "alg" and "use": "sig";
 *         then:   the public key as PEM (SubjectPublicKeyInfo, "BEGIN PUBLIC KEY").
 *       and on standard error what to do with them.  A label in use is an error (-EEXIST).
 *
 * ARGV[0] is "key", ARGV[1] the subcommand.  Errors go to standard error as "credctl: …",
 * never containing a PIN.  Returns the exit status: 0 success, 1 failure, 2 usage error. */
int credctl_key_main(const char *config_path, int argc, char **argv);

/* The JWK of the public key PKEY (EC P-256 or RSA) for ALG ("ES256", …): members kty and
 * crv, x, y (EC) or n, e (RSA) as RFC 7518 §6 writes them, then kid, alg and use, as one line
 * of JSON without spaces, in a malloc()ed string in *RET; its RFC 7638 thumbprint (the kid)
 * in *RET_KID if not NULL (malloc()ed).  Returns 0, -EINVAL (another key type or curve),
 * -ENOMEM, -EIO. */
int credctl_key_jwk(EVP_PKEY *pkey, const char *alg, char **ret, char **ret_kid);
