/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

/* Internal to hsm/: RFC 7512 URIs, parsed and formatted by p11-kit, with credagent's
 * rules on top: unrecognised attributes are errors, pin-value=, pin-source= and
 * module-name= are refused (the PIN comes from pin_source only, and modules are never
 * looked up in the p11-kit registry), and the only query attribute accepted is
 * module-path=. */

static inline void uri_freep(P11KitUri **u) {
        p11_kit_uri_free(*u);
}

/* Longest label accepted by uri_check_label(), in bytes. */
#define HSM_LABEL_MAX 128

/* Longest part of a URI shown by uri_redact(), in bytes. */
#define URI_REDACT_MAX 256

/* Returns a copy of the URI S fit for an error message or a log line: the value of any
 * attribute whose name could carry a PIN ("pin-value", "pin-source", anything with "pin"
 * in it or a percent escape in its name) replaced by "***", bytes that are not printable
 * ASCII or are '"' shown as '?', cut after URI_REDACT_MAX bytes ("…").  malloc()ed; NULL
 * on ENOMEM. */
char *uri_redact(const char *s);

/* What a URI's token, slot and module attributes are matched against. */
struct uri_target {
        CK_SLOT_ID slot_id;
        const CK_SLOT_INFO *slot_info;
        const CK_TOKEN_INFO *token_info;
        const CK_INFO *module_info;
};

/* Parses the token URI S (token, slot and module attributes, module-path=).  On success
 * returns 0 and stores the parsed URI in *RET (free with p11_kit_uri_free()).
 * -EINVAL for a bad or unrecognised URI, -ENOMEM; a message quoting S goes to *RET_ERROR. */
int uri_parse_token(const char *s, P11KitUri **ret, char **ret_error);

/* Parses the object URI S: object= is required, type= must be data if present; id=,
 * token, slot and module attributes and module-path= are allowed.  Same contract as
 * uri_parse_token(). */
int uri_parse_object(const char *s, P11KitUri **ret, char **ret_error);

/* Parses the URI of a private key S: as uri_parse_object(), except that type= must be
 * private if present. */
int uri_parse_key(const char *s, P11KitUri **ret, char **ret_error);

/* True when every token, slot and module attribute of URI (parsed by one of the
 * functions above) matches T. */
bool uri_match(P11KitUri *uri, const struct uri_target *t);

/* Checks a label for an object credctl writes: 1 … HSM_LABEL_MAX bytes of printable
 * ASCII (0x20 … 0x7e), no leading or trailing space.  Characters special in URIs are
 * fine: uri_format_object() percent-encodes them.  Returns 0 or -EINVAL with a message
 * in *RET_ERROR. */
int uri_check_label(const char *label, char **ret_error);

/* Formats "pkcs11:token=TOKEN_LABEL;object=LABEL;type=data" with p11_kit_uri_format().
 * TOKEN is the token's info (only its label is used).  On success returns 0 and stores
 * the malloc()ed URI in *RET.  -ENOMEM or -EIO (p11-kit failed). */
int uri_format_object(const CK_TOKEN_INFO *token, const char *label, char **ret);

/* The same with type= for KLASS (CKO_DATA → data, CKO_PRIVATE_KEY → private, …). */
int uri_format_object_class(const CK_TOKEN_INFO *token, const char *label, CK_OBJECT_CLASS klass, char **ret);
