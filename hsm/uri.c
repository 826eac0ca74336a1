/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hsm/error.h"
#include "hsm/uri.h"
#include "log.h"

static bool name_may_hold_pin(const char *name, size_t n) {
        /* "pin-value", "pin-source", "pinfile", vendor spellings, and names written with
         * percent escapes, which p11-kit does not decode and so would not recognise. */
        for (size_t i = 0; i < n; i++) {
                if (name[i] == '%')
                        return true;
                if (i + 3 <= n && strncasecmp(name + i, "pin", 3) == 0)
                        return true;
        }
        return false;
}

static size_t put_shown(char *out, const char *in, size_t n) {
        for (size_t k = 0; k < n; k++) {
                unsigned char c = (unsigned char) in[k];
                out[k] = c >= 0x20 && c < 0x7f && c != '"' ? (char) c : '?';
        }
        return n;
}

char *uri_redact(const char *s) {
        size_t n = strlen(s), o = 0;
        char *out;

        if (n > URI_REDACT_MAX)
                n = URI_REDACT_MAX;
        /* A segment grows by at most 3 bytes ("x=" → "x=***"), and is at least 2 bytes
         * long when it grows, so 3 * n bounds the output. */
        out = malloc(3 * n + sizeof "…" + 1);
        if (!out)
                return NULL;

        for (size_t i = 0; i < n; ) {
                size_t seg = strcspn(s + i, ";?&");
                size_t name_len = strcspn(s + i, "=;?&");

                if (i + seg > n)
                        seg = n - i;
                if (name_len < seg && name_may_hold_pin(s + i, name_len)) {
                        o += put_shown(out + o, s + i, name_len);
                        memcpy(out + o, "=***", 4);
                        o += 4;
                } else
                        o += put_shown(out + o, s + i, seg);
                i += seg;
                if (i < n)
                        out[o++] = s[i++];
        }
        if (strlen(s) > n) {
                memcpy(out + o, "…", sizeof "…" - 1);
                o += sizeof "…" - 1;
        }
        out[o] = '\0';
        return out;
}

/* p11-kit files query attributes it does not know as "vendor" attributes without
 * flagging the URI as unrecognised, and has no way to list them, so the query part's
 * names are checked here.  Only names are looked at; values are p11-kit's business. */
static int check_query_names(const char *s, const char *shown, char **ret_error) {
        const char *q = strchr(s, '?');

        if (!q)
                return 0;
        for (const char *p = q + 1; *p; ) {
                size_t n = strcspn(p, "&");
                size_t name_len = strcspn(p, "=&");

                if (name_len > n)
                        name_len = n;
                if (!(name_len == strlen("module-path") && strncmp(p, "module-path", name_len) == 0) &&
                    !(name_len == strlen("pin-source") && strncmp(p, "pin-source", name_len) == 0) &&
                    !(name_len == strlen("pinfile") && strncmp(p, "pinfile", name_len) == 0) &&
                    !(name_len == strlen("pin-value") && strncmp(p, "pin-value", name_len) == 0) &&
                    !(name_len == strlen("module-name") && strncmp(p, "module-name", name_len) == 0))
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "PKCS#11 URI \"%s\": unknown query attribute \"%.*s\"",
                                              shown, (int) (name_may_hold_pin(p, name_len) ? 3 : name_len),
                                              name_may_hold_pin(p, name_len) ? "***" : p);
                p += n;
                if (*p == '&')
                        p++;
        }
        return 0;
}

static int parse(const char *s, P11KitUriType type, const char *what, P11KitUri **ret, char **ret_error) {
        _cleanup_(uri_freep) P11KitUri *u = NULL;
        _cleanup_free_ char *shown = NULL;
        int r;

        shown = uri_redact(s);
        if (!shown)
                return -ENOMEM;

        u = p11_kit_uri_new();
        if (!u)
                return -ENOMEM;

        r = p11_kit_uri_parse(s, type, u);
        if (r == P11_KIT_URI_NO_MEMORY)
                return -ENOMEM;
        if (r != P11_KIT_URI_OK)
                return hsm_error_setf(ret_error, -EINVAL, "%s \"%s\": %s", what, shown, p11_kit_uri_message(r));
        if (p11_kit_uri_any_unrecognized(u))
                return hsm_error_setf(ret_error, -EINVAL,
                                      "%s \"%s\" has an attribute that is not recognised or not valid here",
                                      what, shown);
        r = check_query_names(s, shown, ret_error);
        if (r < 0)
                return r;
        if (p11_kit_uri_get_pin_value(u))
                return hsm_error_setf(ret_error, -EINVAL,
                                      "%s \"%s\": pin-value= is refused; give the PIN through pin_source", what, shown);
        if (p11_kit_uri_get_pin_source(u))
                return hsm_error_setf(ret_error, -EINVAL,
                                      "%s \"%s\": pin-source= is refused; use the pin_source setting", what, shown);
        if (p11_kit_uri_get_module_name(u))
                return hsm_error_setf(ret_error, -EINVAL,
                                      "%s \"%s\": module-name= is refused; name the module by path (module-path=)",
                                      what, shown);

        *ret = TAKE_PTR(u);
        return 0;
}

#define URI_TARGET_TYPES (P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT | P11_KIT_URI_FOR_MODULE_WITH_VERSION)

int uri_parse_token(const char *s, P11KitUri **ret, char **ret_error) {
        return parse(s, URI_TARGET_TYPES, "token URI", ret, ret_error);
}

/* Parses an object URI whose type=, if present, must be KLASS (WHAT names it in messages). */
static int parse_object(const char *s, CK_OBJECT_CLASS want, const char *what, P11KitUri **ret, char **ret_error) {
        _cleanup_(uri_freep) P11KitUri *u = NULL;
        _cleanup_free_ char *shown = NULL;
        CK_ATTRIBUTE *a;
        int r;

        r = parse(s, URI_TARGET_TYPES | P11_KIT_URI_FOR_OBJECT, "object URI", &u, ret_error);
        if (r < 0)
                return r;

        shown = uri_redact(s);
        if (!shown)
                return -ENOMEM;

        a = p11_kit_uri_get_attribute(u, CKA_LABEL);
        if (!a || a->ulValueLen == 0)
                return hsm_error_setf(ret_error, -EINVAL, "object URI \"%s\" has no object= label", shown);
        if (memchr(a->pValue, '\0', a->ulValueLen))
                return hsm_error_setf(ret_error, -EINVAL, "object URI \"%s\": the label contains %%00", shown);

        a = p11_kit_uri_get_attribute(u, CKA_CLASS);
        if (a) {
                CK_OBJECT_CLASS klass;

                if (a->ulValueLen != sizeof klass)
                        return hsm_error_setf(ret_error, -EINVAL, "object URI \"%s\": bad type=", shown);
                memcpy(&klass, a->pValue, sizeof klass);
                if (klass != want)
                        return hsm_error_setf(ret_error, -EINVAL, "object URI \"%s\": type= must be %s",
                                              shown, what);
        }

        *ret = TAKE_PTR(u);
        return 0;
}

int uri_parse_object(const char *s, P11KitUri **ret, char **ret_error) {
        return parse_object(s, CKO_DATA, "data for a client secret", ret, ret_error);
}

int uri_parse_key(const char *s, P11KitUri **ret, char **ret_error) {
        return parse_object(s, CKO_PRIVATE_KEY, "private for a signing key", ret, ret_error);
}

bool uri_match(P11KitUri *uri, const struct uri_target *t) {
        CK_SLOT_ID id = p11_kit_uri_get_slot_id(uri);

        if (id != (CK_SLOT_ID) -1 && id != t->slot_id)
                return false;
        if (!p11_kit_uri_match_slot_info(uri, (CK_SLOT_INFO *) t->slot_info))
                return false;
        if (!p11_kit_uri_match_token_info(uri, (CK_TOKEN_INFO *) t->token_info))
                return false;
        if (!p11_kit_uri_match_module_info(uri, (CK_INFO *) t->module_info))
                return false;
        return true;
}

int uri_check_label(const char *label, char **ret_error) {
        size_t n;

        if (!label || label[0] == '\0')
                return hsm_error_setf(ret_error, -EINVAL, "empty label");
        n = strlen(label);
        if (n > HSM_LABEL_MAX)
                return hsm_error_setf(ret_error, -EINVAL, "label is longer than %d bytes", HSM_LABEL_MAX);
        for (size_t i = 0; i < n; i++)
                if (label[i] < 0x20 || label[i] > 0x7e)
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "label has a byte that is not printable ASCII at offset %zu", i);
        if (label[0] == ' ' || label[n - 1] == ' ')
                return hsm_error_setf(ret_error, -EINVAL, "label \"%s\" begins or ends with a space", label);
        return 0;
}

int uri_format_object(const CK_TOKEN_INFO *token, const char *label, char **ret) {
        return uri_format_object_class(token, label, CKO_DATA, ret);
}

int uri_format_object_class(const CK_TOKEN_INFO *token, const char *label, CK_OBJECT_CLASS klass, char **ret) {
        _cleanup_(uri_freep) P11KitUri *u = NULL;
        CK_ATTRIBUTE attrs[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_TOKEN_INFO *ti;
        char *s = NULL;
        int r;

        u = p11_kit_uri_new();
        if (!u)
                return -ENOMEM;
        ti = p11_kit_uri_get_token_info(u);
        memcpy(ti->label, token->label, sizeof ti->label);
        for (size_t i = 0; i < ELEMENTSOF(attrs); i++) {
                r = p11_kit_uri_set_attribute(u, &attrs[i]);
                if (r != P11_KIT_URI_OK)
                        return r == P11_KIT_URI_NO_MEMORY ? -ENOMEM : -EIO;
        }
        r = p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s);
        if (r != P11_KIT_URI_OK)
                return r == P11_KIT_URI_NO_MEMORY ? -ENOMEM : -EIO;
        *ret = s;
        return 0;
}
