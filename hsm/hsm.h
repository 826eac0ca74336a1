/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "secmem.h"

/* Everything PKCS#11 (DESIGN.md, Secrets and the token).
 *
 * A struct hsm is one loaded module (through p11-kit, by explicit path, never the
 * p11-kit registry), one selected token and at most one logged-in session.  All calls
 * on one struct hsm are serialised by a mutex inside it, so it may be shared by threads.
 *
 * Errors are negative errnos, translated from CKR_* at this edge by hsm_errno_from_ckr():
 *   -EINVAL   bad URI, bad pin_source, module outside the allow-list, bad label
 *   -ENOENT   module file, token or object not found
 *   -EACCES   the PIN was refused (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, …).  Sticky: the
 *             struct hsm never tries that PIN again; every later call fails with -EACCES
 *             until it is closed and opened anew (a config reload).  Also: a user PIN
 *             that was never set (CKR_USER_PIN_NOT_INITIALIZED, sticky too), and a value
 *             the token will not reveal (CKR_ATTRIBUTE_SENSITIVE, not sticky).
 *   -ENODEV   token absent or removed, session lost and could not be reopened
 *   -EEXIST   hsm_write_secret(), hsm_generate_key(): an object with that label already exists
 *   -EOPNOTSUPP the key does not suit the signature algorithm asked for (an RSA key for
 *             ES256, an EC key on another curve than P-256, RSA below 2048 bits, a key type
 *             other than EC and RSA), or the module does not offer the mechanism
 *   -EMSGSIZE a secret larger than HSM_SECRET_MAX
 *   -ENOMEM   out of memory, including CKR_HOST_MEMORY
 *   -EIO      any other module failure (the CKR_ name is logged at debug level and is in
 *             hsm_last_error())
 */

/* Largest client secret accepted, in bytes. */
#define HSM_SECRET_MAX 4096

/* The CKA_APPLICATION value of objects written by credctl. */
#define HSM_APPLICATION "credagent"

struct hsm_params {
        const char *module;             /* path of the PKCS#11 module; may be NULL when token_uri
                                           carries module-path= */
        const char *const *module_dirs; /* NULL-terminated allow-list; realpath(module) must lie
                                           directly in one of them (after realpath of each);
                                           NULL means hsm_default_module_dirs */
        const char *token_uri;          /* RFC 7512 token URI, e.g. "pkcs11:token=credagent" */
        const char *pin_source;         /* "file:PATH" or "credential:NAME" ($CREDENTIALS_DIRECTORY/NAME) */
};

struct hsm;

/* Loads the module (p11_kit_module_load + C_Initialize), finds the one token that matches
 * the URI (more than one → -EINVAL naming the count), and checks the pin_source is usable
 * (a file owned by the current user, not accessible to group or others), without logging in.
 * On success returns 0 and stores a new handle in *RET.  Errors as above; a
 * message naming what was wrong is stored in *RET_ERROR (malloc()ed, caller frees) if
 * RET_ERROR is not NULL. */
int hsm_open(const struct hsm_params *params, struct hsm **ret, char **ret_error);

/* Closes the session, finalizes and releases the module.  Accepts NULL.  There is no
 * explicit C_Logout: login state belongs to the whole process, so it would also log out
 * any other struct hsm on the same token; PKCS#11 logs the token out when the process
 * closes its last session with it. */
void hsm_close(struct hsm *h);

/* Reads the value of the CKO_DATA, CKA_PRIVATE=TRUE object named by OBJECT_URI
 * (an RFC 7512 URI with object=LABEL, optional type=data, and token attributes that must
 * match the opened token if present) into a new locked secbuf stored in *RET.
 * Opens a session and logs in (reading the PIN from pin_source into locked memory and
 * wiping it after C_Login) when needed; on session loss (CKR_SESSION_HANDLE_INVALID,
 * CKR_SESSION_CLOSED, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED, CKR_USER_NOT_LOGGED_IN)
 * reopens and logs in again once within the same call.  An object that is not private is
 * refused with -EACCES (it would be stored in clear by SoftHSM2).  More than one object
 * matching the URI is -EINVAL (the URI does not name one object; add id=).  A logout by
 * another user of the module in this process is noticed (C_GetSessionInfo) and answered
 * with a new login. */
int hsm_read_secret(struct hsm *h, const char *object_uri, struct secbuf **ret);

/* Creates a CKO_DATA object with CKA_TOKEN=TRUE, CKA_PRIVATE=TRUE, CKA_MODIFIABLE=FALSE,
 * CKA_LABEL=LABEL, CKA_APPLICATION=HSM_APPLICATION and CKA_VALUE=SECRET.
 * Fails with -EEXIST if a data object with that label exists.  On success, if RET_URI is
 * not NULL, stores the object's URI ("pkcs11:token=…;object=LABEL;type=data", built with
 * p11_kit_uri_format) there, malloc()ed. */
int hsm_write_secret(struct hsm *h, const char *label, const struct secbuf *secret, char **ret_uri);

/* Lists the labels of the token's CKO_DATA objects with CKA_APPLICATION=HSM_APPLICATION.
 * Never reads a value.  Stores a NULL-terminated, malloc()ed array of malloc()ed strings
 * in *RET_LABELS, sorted. */
int hsm_list_secrets(struct hsm *h, char ***ret_labels);

/* Destroys the CKO_DATA object(s) with label LABEL written by credctl.  -ENOENT if none. */
int hsm_remove_secret(struct hsm *h, const char *label);

/* ---- Signing keys (private_key_jwt, RFC 7523) ----
 *
 * A signing key is a CKO_PRIVATE_KEY object found by label (and id= if the URI has one),
 * with CKA_PRIVATE=TRUE and CKA_SENSITIVE=TRUE (a key that is not is refused with -EACCES:
 * its value could be read or is stored in clear).  Its JWS algorithm (RFC 7518 §3):
 *   EC on P-256 → ES256: CKM_ECDSA over a SHA-256 digest computed with OpenSSL; the module's
 *                 raw r||s (64 bytes) is already the JWS form.
 *   RSA ≥ 2048 bits → RS256 (CKM_SHA256_RSA_PKCS), or PS256 (CKM_SHA256_RSA_PKCS_PSS with
 *                 MGF1-SHA-256 and a 32-byte salt) when asked for and the module offers it. */
enum hsm_alg {
        HSM_ALG_NONE = 0,  /* "by the key": ES256 for EC P-256, RS256 for RSA */
        HSM_ALG_ES256 = 1,
        HSM_ALG_RS256 = 2,
        HSM_ALG_PS256 = 3,
        _HSM_ALG_MAX,
};

/* Largest signature hsm_sign() produces: RSA 4096 bits. */
#define HSM_SIGNATURE_MAX 512

/* Size of the RSA keys hsm_generate_key() makes, in bits. */
#define HSM_RSA_BITS 3072

/* The JWS "alg" name of ALG ("ES256", "RS256", "PS256"), or NULL for HSM_ALG_NONE and
 * values out of range.  Static strings. */
const char *hsm_alg_name(enum hsm_alg alg);

/* Parses a JWS name (exact, case-sensitive) into *RET.  Returns 0 or -EINVAL. */
int hsm_alg_from_name(const char *name, enum hsm_alg *ret);

/* Looks up the private key KEY_URI (an RFC 7512 URI with object=LABEL, type=private if
 * present, optional id= and token attributes that must match the opened token) and stores
 * in *RET the algorithm it signs with: WANTED when it is not HSM_ALG_NONE and suits the key,
 * otherwise the key's default (above).  Logs in when needed, like hsm_read_secret().
 * Errors: -ENOENT no such key, -EINVAL bad URI or more than one key matches, -EACCES not
 * private or not sensitive, -EOPNOTSUPP the key or module cannot do WANTED, and the errors
 * listed at the top. */
int hsm_key_alg(struct hsm *h, const char *key_uri, enum hsm_alg wanted, enum hsm_alg *ret);

/* Signs DATA (LEN bytes, the JWS signing input) with the private key KEY_URI using ALG
 * (not HSM_ALG_NONE; it must suit the key as for hsm_key_alg()).  SIG has room for
 * *SIG_LEN bytes (HSM_SIGNATURE_MAX is always enough); on success *SIG_LEN is set to the
 * signature's length: 64 for ES256 (r||s, each 32 bytes big-endian), the modulus size for
 * RS256/PS256.  -EMSGSIZE when SIG is too small (nothing is signed then); otherwise the
 * errors of hsm_key_alg(), and -EIO when the module fails to sign (e.g. CKA_SIGN=FALSE:
 * CKR_KEY_FUNCTION_NOT_PERMITTED). */
int hsm_sign(struct hsm *h, const char *key_uri, enum hsm_alg alg, const void *data, size_t len, uint8_t *sig,
             size_t *sig_len);

/* Generates a key pair on the token for ALG: EC P-256 for ES256, RSA HSM_RSA_BITS bits
 * (public exponent 65537) for RS256 and PS256.  The private key: CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, CKA_EXTRACTABLE=FALSE, CKA_SIGN=TRUE, no decryption, unwrapping or
 * derivation; the public key: CKA_TOKEN, CKA_VERIFY=TRUE, no encryption or wrapping.  Both
 * get CKA_LABEL=LABEL (uri_check_label() rules) and the same random 16-byte CKA_ID.
 * -EEXIST when a private or public key with that label exists.  On success stores the
 * private key's URI ("pkcs11:token=…;object=LABEL;type=private", malloc()ed) in *RET_URI
 * if not NULL, and its public key in *RET_PUBLIC if not NULL (an EVP_PKEY built from
 * CKA_EC_POINT, or CKA_MODULUS and CKA_PUBLIC_EXPONENT; free with EVP_PKEY_free()).  If
 * reading the public key back fails, both objects are destroyed again. */
int hsm_generate_key(struct hsm *h, const char *label, enum hsm_alg alg, char **ret_uri, EVP_PKEY **ret_public);

/* Returns a copy (malloc()ed, caller frees) of the message about why the last call on H
 * failed, naming what went wrong (the PIN file, the label, the CKR_ name, …; never a PIN
 * or a secret), or NULL if the last call succeeded, H is NULL, or memory ran out.
 * Meant for the caller that made that call; with threads sharing H, another thread's
 * call may have replaced it.  (Added after the first contract: the login happens lazily
 * inside the calls above, so their failures need words as hsm_open()'s do.) */
char *hsm_last_error(struct hsm *h);

/* Maps a CK_RV to a negative errno as listed above.  CKR_OK → 0. */
int hsm_errno_from_ckr(unsigned long rv);

/* Returns the CKR_ name of RV, e.g. "CKR_PIN_INCORRECT", or "CKR_0x…" in a static buffer. */
const char *hsm_ckr_name(unsigned long rv);

/* The default module allow-list (NULL-terminated, static): the multiarch pkcs11 and
 * softhsm directories (/usr/lib/x86_64-linux-gnu/{pkcs11,softhsm}, the tuple taken from
 * the compiler at build time; Debian's /usr/lib/softhsm/libsofthsm2.so is a symlink into
 * the latter), /usr/lib/softhsm, /usr/lib/pkcs11, /usr/lib64/pkcs11, /usr/lib64/softhsm,
 * /usr/local/lib/pkcs11, /usr/local/lib/softhsm. */
extern const char *const hsm_default_module_dirs[];
