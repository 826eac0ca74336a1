/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>

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
 *   -EEXIST   hsm_write_secret(): an object with that label already exists
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
