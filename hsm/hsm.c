/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include "hsm/error.h"
#include "hsm/hsm.h"
#include "hsm/module.h"
#include "hsm/pin.h"
#include "hsm/uri.h"
#include "log.h"

/* Most objects one search returns; more is treated as a module failure. */
#define HSM_FIND_MAX 10000

struct hsm {
        pthread_mutex_t lock;

        CK_FUNCTION_LIST *module;
        char *module_path;              /* realpath() of the loaded module */
        CK_INFO module_info;

        P11KitUri *token_uri;           /* kept to find the token again after removal */
        char *token_uri_shown;          /* uri_redact()ed, for messages */
        CK_SLOT_ID slot;
        CK_SLOT_INFO slot_info;
        CK_TOKEN_INFO token_info;
        char token_label[sizeof(((CK_TOKEN_INFO *) NULL)->label) + 1]; /* trimmed, for messages */

        char *pin_source;

        CK_SESSION_HANDLE session;
        bool have_session;
        bool logged_in;
        bool reselect_token;            /* the token went away: look it up again before reopening */
        bool pin_refused;               /* sticky: the PIN was refused, never try it again */

        CK_RV last_rv;                  /* the CK_RV behind the last failure, CKR_OK if none */
        char *error;                    /* message about the last failure, may be NULL */
};

/* Records a failed PKCS#11 call: remembers RV for the session-loss check, keeps a message,
 * and returns the errno for it. */
static int ck_fail(struct hsm *h, const char *func, CK_RV rv) {
        h->last_rv = rv;
        return hsm_error_setf(&h->error, hsm_errno_from_ckr(rv), "%s on token \"%s\" failed: %s",
                              func, h->token_label, hsm_ckr_name(rv));
}

/* The codes after which hsm_run() reopens the session and logs in again (hsm.h). */
static bool ckr_is_session_loss(CK_RV rv) {
        switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_DEVICE_REMOVED:
        case CKR_USER_NOT_LOGGED_IN:
                return true;
        default:
                return false;
        }
}

static void session_drop(struct hsm *h) {
        if (!h->have_session)
                return;
        /* The handle may already be dead; the result does not matter. */
        (void) h->module->C_CloseSession(h->session);
        h->have_session = false;
        h->logged_in = false;
}

static int select_token(struct hsm *h) {
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        CK_RV rv;
        unsigned matches = 0;

        for (unsigned tries = 0;; tries++) {
                free(slots);
                slots = NULL;
                rv = h->module->C_GetSlotList(CK_TRUE, NULL, &n);
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetSlotList", rv);
                if (n == 0)
                        return hsm_error_setf(&h->error, -ENOENT, "module \"%s\" has no token present",
                                              h->module_path);
                slots = calloc(n, sizeof *slots);
                if (!slots)
                        return -ENOMEM;
                rv = h->module->C_GetSlotList(CK_TRUE, slots, &n);
                if (rv == CKR_OK)
                        break;
                if (rv != CKR_BUFFER_TOO_SMALL || tries >= 3)
                        return ck_fail(h, "C_GetSlotList", rv);
        }

        for (CK_ULONG i = 0; i < n; i++) {
                CK_SLOT_INFO si;
                CK_TOKEN_INFO ti;
                struct uri_target t = {
                        .slot_id = slots[i],
                        .slot_info = &si,
                        .token_info = &ti,
                        .module_info = &h->module_info,
                };

                rv = h->module->C_GetSlotInfo(slots[i], &si);
                if (rv == CKR_OK)
                        rv = h->module->C_GetTokenInfo(slots[i], &ti);
                if (rv != CKR_OK) {
                        log_debug("hsm: slot %lu skipped: %s", (unsigned long) slots[i], hsm_ckr_name(rv));
                        continue;
                }
                if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
                        log_debug("hsm: slot %lu skipped: token not initialized", (unsigned long) slots[i]);
                        continue;
                }
                if (!uri_match(h->token_uri, &t))
                        continue;
                if (matches++ == 0) {
                        h->slot = slots[i];
                        h->slot_info = si;
                        h->token_info = ti;
                }
        }

        if (matches == 0)
                return hsm_error_setf(&h->error, -ENOENT, "no initialized token of module \"%s\" matches \"%s\"",
                                      h->module_path, h->token_uri_shown);
        if (matches > 1)
                return hsm_error_setf(&h->error, -EINVAL,
                                      "%u tokens match \"%s\"; add token=, serial= or slot-id= so that one does",
                                      matches, h->token_uri_shown);

        size_t len = p11_kit_space_strlen(h->token_info.label, sizeof h->token_info.label);
        memcpy(h->token_label, h->token_info.label, len);
        h->token_label[len] = '\0';
        h->reselect_token = false;
        log_debug("hsm: token \"%s\" in slot %lu selected", h->token_label, (unsigned long) h->slot);
        return 0;
}

/* Makes sure there is a session and it is logged in. */
static int session_open(struct hsm *h) {
        CK_RV rv;
        int r;

        if (h->pin_refused)
                return hsm_error_setf(&h->error, -EACCES,
                                      "the token refused the PIN from %s earlier; not trying it again until reloaded",
                                      h->pin_source);

        if (h->reselect_token) {
                r = select_token(h);
                if (r < 0)
                        return r == -ENOMEM ? r : -ENODEV;
        }

        if (h->have_session && h->logged_in) {
                CK_SESSION_INFO si;

                /* Login state belongs to the whole process (the PKCS#11 "application"), so
                 * another user of the module may have logged out; a search would then
                 * silently miss every private object instead of failing.  This also finds
                 * a session closed behind our back (a session-loss code, retried). */
                rv = h->module->C_GetSessionInfo(h->session, &si);
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetSessionInfo", rv);
                if (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS) {
                        log_debug("hsm: token \"%s\" was logged out behind our back, logging in again",
                                  h->token_label);
                        h->logged_in = false;
                }
        }

        if (!h->have_session) {
                rv = h->module->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->session);
                if (rv == CKR_TOKEN_WRITE_PROTECTED) {
                        log_debug("hsm: token \"%s\" is write-protected, opening a read-only session", h->token_label);
                        rv = h->module->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &h->session);
                }
                if (rv != CKR_OK) {
                        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED || rv == CKR_SLOT_ID_INVALID)
                                h->reselect_token = true;
                        return ck_fail(h, "C_OpenSession", rv);
                }
                h->have_session = true;
                h->logged_in = false;
        }

        if (!h->logged_in) {
                _cleanup_secbuf_ struct secbuf *pin = NULL;

                r = pin_read(h->pin_source, &pin, &h->error);
                if (r < 0)
                        return r;
                rv = h->module->C_Login(h->session, CKU_USER, pin->data, pin->len);
                pin = secbuf_free(pin); /* wiped right away, whatever the outcome */
                if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                        r = ck_fail(h, "C_Login", rv);
                        if (r == -EACCES) {
                                h->pin_refused = true;
                                return hsm_error_setf(&h->error, -EACCES, "token \"%s\" refused the PIN from %s: %s",
                                                      h->token_label, h->pin_source, hsm_ckr_name(rv));
                        }
                        return r;
                }
                h->logged_in = true;
                log_debug("hsm: logged in to token \"%s\"", h->token_label);
        }
        return 0;
}

typedef int (*hsm_op)(struct hsm *h, void *userdata);

/* Runs OP with a logged-in session, under the lock.  On session loss, reopens and logs in
 * again once. */
static int hsm_run(struct hsm *h, hsm_op op, void *userdata) {
        int r;

        for (unsigned attempt = 0;; attempt++) {
                h->last_rv = CKR_OK;
                r = session_open(h);
                if (r >= 0)
                        r = op(h, userdata);
                if (r >= 0 || !ckr_is_session_loss(h->last_rv))
                        return r;

                log_debug("hsm: session on token \"%s\" lost (%s)%s", h->token_label, hsm_ckr_name(h->last_rv),
                          attempt == 0 ? ", reopening" : ", giving up");
                if (h->last_rv == CKR_TOKEN_NOT_PRESENT || h->last_rv == CKR_DEVICE_REMOVED)
                        h->reselect_token = true;
                session_drop(h);
                if (attempt >= 1)
                        return -ENODEV;
        }
}

/* Finds objects matching TEMPLATE, collecting at most LIMIT of them (the search stops
 * there); stores a malloc()ed array in *RET and the count in *RET_N. */
static int find_objects(struct hsm *h, CK_ATTRIBUTE *template, CK_ULONG n_template, CK_ULONG limit,
                        CK_OBJECT_HANDLE **ret, CK_ULONG *ret_n) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_ULONG n = 0, cap = 0;
        CK_RV rv, rv_final;
        int r = 0;

        rv = h->module->C_FindObjectsInit(h->session, template, n_template);
        if (rv != CKR_OK)
                return ck_fail(h, "C_FindObjectsInit", rv);

        while (n < limit) {
                CK_ULONG got = 0;

                if (n == cap) {
                        CK_ULONG ncap = cap ? cap * 2 : 16;
                        CK_OBJECT_HANDLE *p;

                        if (ncap > limit)
                                ncap = limit;
                        p = reallocarray(objs, ncap, sizeof *objs);
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        objs = p;
                        cap = ncap;
                }
                rv = h->module->C_FindObjects(h->session, objs + n, cap - n, &got);
                if (rv != CKR_OK) {
                        r = ck_fail(h, "C_FindObjects", rv);
                        break;
                }
                if (got == 0)
                        break;
                n += got;
        }

        /* Always end the search, or the session's next C_FindObjectsInit would fail. */
        rv_final = h->module->C_FindObjectsFinal(h->session);
        if (r < 0)
                return r;
        if (rv_final != CKR_OK)
                return ck_fail(h, "C_FindObjectsFinal", rv_final);

        *ret = TAKE_PTR(objs);
        *ret_n = n;
        return 0;
}

/* find_objects() for every match, up to HSM_FIND_MAX. */
static int find_all_objects(struct hsm *h, CK_ATTRIBUTE *template, CK_ULONG n_template,
                            CK_OBJECT_HANDLE **ret, CK_ULONG *ret_n) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_ULONG n = 0;
        int r;

        r = find_objects(h, template, n_template, HSM_FIND_MAX + 1, &objs, &n);
        if (r < 0)
                return r;
        if (n > HSM_FIND_MAX)
                return hsm_error_setf(&h->error, -EIO, "more than %d matching objects on token \"%s\"",
                                      HSM_FIND_MAX, h->token_label);
        *ret = TAKE_PTR(objs);
        *ret_n = n;
        return 0;
}

/* ---- hsm_open / hsm_close ---- */

int hsm_open(const struct hsm_params *params, struct hsm **ret, char **ret_error) {
        _cleanup_(uri_freep) P11KitUri *token_uri = NULL;
        _cleanup_free_ char *module_path = NULL;
        struct hsm *h;
        CK_RV rv;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!params || !params->token_uri)
                return hsm_error_setf(ret_error, -EINVAL, "no token URI given");

        r = uri_parse_token(params->token_uri, &token_uri, ret_error);
        if (r < 0)
                return r;
        r = module_resolve(params->module, p11_kit_uri_get_module_path(token_uri), params->module_dirs,
                           &module_path, ret_error);
        if (r < 0)
                return r;
        r = pin_check(params->pin_source, ret_error);
        if (r < 0)
                return r;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        pthread_mutex_init(&h->lock, NULL);
        h->token_uri = TAKE_PTR(token_uri);
        h->module_path = TAKE_PTR(module_path);
        h->token_uri_shown = uri_redact(params->token_uri);
        h->pin_source = strdup(params->pin_source);
        if (!h->token_uri_shown || !h->pin_source) {
                r = -ENOMEM;
                goto fail;
        }

        r = module_load(h->module_path, &h->module, &h->error);
        if (r < 0)
                goto fail;
        rv = h->module->C_GetInfo(&h->module_info);
        if (rv != CKR_OK) {
                r = hsm_error_setf(&h->error, hsm_errno_from_ckr(rv) == -ENOMEM ? -ENOMEM : -EIO,
                                   "C_GetInfo of module \"%s\" failed: %s", h->module_path, hsm_ckr_name(rv));
                goto fail;
        }
        r = select_token(h);
        if (r < 0) {
                /* Token errors at open time: not present → -ENOENT, other failures → -EIO. */
                if (r == -ENODEV)
                        r = -ENOENT;
                goto fail;
        }

        log_debug("hsm: opened token \"%s\" of module \"%s\"", h->token_label, h->module_path);
        *ret = h;
        return 0;

fail:
        if (ret_error && h->error) {
                free(*ret_error);
                *ret_error = TAKE_PTR(h->error);
        }
        hsm_close(h);
        return r;
}

void hsm_close(struct hsm *h) {
        if (!h)
                return;
        if (h->module) {
                /* No C_Logout: login state is per process, so it would log out every other
                 * handle on this token too.  Closing the session is enough: PKCS#11 logs
                 * the token out when a process closes its last session with it. */
                session_drop(h);
                module_unload(h->module);
        }
        p11_kit_uri_free(h->token_uri);
        free(h->token_uri_shown);
        free(h->module_path);
        free(h->pin_source);
        free(h->error);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

char *hsm_last_error(struct hsm *h) {
        char *s = NULL;

        if (!h)
                return NULL;
        pthread_mutex_lock(&h->lock);
        if (h->error)
                s = strdup(h->error);
        pthread_mutex_unlock(&h->lock);
        return s;
}

/* Starts a public call: takes the lock and forgets the previous call's error. */
static void call_begin(struct hsm *h) {
        pthread_mutex_lock(&h->lock);
        free(h->error);
        h->error = NULL;
        h->last_rv = CKR_OK;
}

/* Ends a public call: a success leaves no error behind (a session lost and recovered
 * within the call is not a failure of the call). */
static int call_end(struct hsm *h, int r) {
        if (r >= 0) {
                free(h->error);
                h->error = NULL;
        }
        pthread_mutex_unlock(&h->lock);
        return r;
}

/* ---- hsm_read_secret ---- */

struct read_args {
        CK_ATTRIBUTE *template;
        CK_ULONG n_template;
        const char *label;
        struct secbuf *result;
};

static int op_read(struct hsm *h, void *userdata) {
        struct read_args *a = userdata;
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_secbuf_ struct secbuf *b = NULL;
        CK_BBOOL is_private = CK_FALSE;
        CK_ATTRIBUTE priv = { CKA_PRIVATE, &is_private, sizeof is_private };
        CK_ATTRIBUTE value = { CKA_VALUE, NULL, 0 };
        CK_ULONG n = 0, len;
        CK_RV rv;
        int r;

        r = find_objects(h, a->template, a->n_template, 2, &objs, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return hsm_error_setf(&h->error, -ENOENT, "no data object labelled \"%s\" on token \"%s\"",
                                      a->label, h->token_label);
        if (n > 1)
                return hsm_error_setf(&h->error, -EINVAL,
                                      "more than one data object labelled \"%s\" on token \"%s\"; add id= to the URI",
                                      a->label, h->token_label);

        rv = h->module->C_GetAttributeValue(h->session, objs[0], &priv, 1);
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
                return ck_fail(h, "C_GetAttributeValue(CKA_PRIVATE)", rv);
        if (rv != CKR_OK || priv.ulValueLen != sizeof is_private || is_private != CK_TRUE)
                return hsm_error_setf(&h->error, -EACCES,
                                      "data object \"%s\" on token \"%s\" is not private (CKA_PRIVATE=FALSE); "
                                      "refusing it: its value may be stored in clear",
                                      a->label, h->token_label);

        rv = h->module->C_GetAttributeValue(h->session, objs[0], &value, 1);
        if (rv != CKR_OK)
                return ck_fail(h, "C_GetAttributeValue(CKA_VALUE)", rv);
        len = value.ulValueLen;
        if (len == CK_UNAVAILABLE_INFORMATION)
                return hsm_error_setf(&h->error, -EACCES, "the value of \"%s\" on token \"%s\" cannot be read",
                                      a->label, h->token_label);
        if (len > HSM_SECRET_MAX)
                return hsm_error_setf(&h->error, -EMSGSIZE, "the value of \"%s\" is %lu bytes, more than %d",
                                      a->label, (unsigned long) len, HSM_SECRET_MAX);

        b = secbuf_new(len > 0 ? len : 1);
        if (!b)
                return -ENOMEM;
        /* Straight into the locked buffer: no intermediate copy. */
        value.pValue = b->data;
        value.ulValueLen = len;
        rv = h->module->C_GetAttributeValue(h->session, objs[0], &value, 1);
        if (rv != CKR_OK)
                return ck_fail(h, "C_GetAttributeValue(CKA_VALUE)", rv);
        if (value.ulValueLen > len)
                return hsm_error_setf(&h->error, -EIO, "module returned a longer value than it announced");
        b->len = value.ulValueLen;
        b->data[b->len] = '\0';

        a->result = TAKE_PTR(b);
        return 0;
}

/* An object URI resolved against the open token: the search template (class, label, id)
 * and the label for messages.  The template points into URI. */
struct object_query {
        P11KitUri *uri;
        char *label;
        CK_OBJECT_CLASS klass;
        CK_ATTRIBUTE template[3];
        CK_ULONG n_template;
};

static void object_query_done(struct object_query *q) {
        p11_kit_uri_free(q->uri);
        free(q->label);
        *q = (struct object_query) {};
}

/* Parses OBJECT_URI (a data object for CKO_DATA, a key for CKO_PRIVATE_KEY) and checks that
 * it names the open module and token.  Call with the lock held; messages go to h->error. */
static int object_query_init(struct hsm *h, const char *object_uri, CK_OBJECT_CLASS klass, struct object_query *q) {
        CK_ATTRIBUTE *la, *id;
        struct uri_target t;
        const char *mp;
        int r;

        *q = (struct object_query) { .klass = klass };
        r = klass == CKO_DATA ? uri_parse_object(object_uri, &q->uri, &h->error) :
                                uri_parse_key(object_uri, &q->uri, &h->error);
        if (r < 0)
                return r;

        mp = p11_kit_uri_get_module_path(q->uri);
        if (mp) {
                _cleanup_free_ char *p = realpath(mp, NULL);
                if (!p || strcmp(p, h->module_path) != 0)
                        return hsm_error_setf(&h->error, -ENOENT,
                                              "object URI names module \"%s\", but the open module is \"%s\"",
                                              mp, h->module_path);
        }
        t = (struct uri_target) {
                .slot_id = h->slot,
                .slot_info = &h->slot_info,
                .token_info = &h->token_info,
                .module_info = &h->module_info,
        };
        if (!uri_match(q->uri, &t)) {
                _cleanup_free_ char *shown = uri_redact(object_uri);
                return hsm_error_setf(&h->error, -ENOENT, "object URI \"%s\" names another token than \"%s\"",
                                      shown ?: "?", h->token_label);
        }

        la = p11_kit_uri_get_attribute(q->uri, CKA_LABEL);
        q->label = strndup(la->pValue, la->ulValueLen);
        if (!q->label)
                return -ENOMEM;
        q->template[0] = (CK_ATTRIBUTE) { CKA_CLASS, &q->klass, sizeof q->klass };
        q->template[1] = *la;
        q->n_template = 2;
        id = p11_kit_uri_get_attribute(q->uri, CKA_ID);
        if (id)
                q->template[q->n_template++] = *id;
        return 0;
}

int hsm_read_secret(struct hsm *h, const char *object_uri, struct secbuf **ret) {
        _cleanup_(object_query_done) struct object_query q = {};
        struct read_args a = {};
        int r;

        if (!h || !object_uri || !ret)
                return -EINVAL;
        call_begin(h);

        r = object_query_init(h, object_uri, CKO_DATA, &q);
        if (r < 0)
                return call_end(h, r);
        a.template = q.template;
        a.n_template = q.n_template;
        a.label = q.label;

        r = hsm_run(h, op_read, &a);
        if (r >= 0)
                *ret = TAKE_PTR(a.result);
        secbuf_free(a.result);
        return call_end(h, r);
}

/* ---- hsm_write_secret ---- */

struct write_args {
        const char *label;
        const struct secbuf *secret;
};

static int op_write(struct hsm *h, void *userdata) {
        struct write_args *a = userdata;
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_OBJECT_CLASS klass = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE find[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
        };
        CK_ATTRIBUTE create[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },
                { CKA_MODIFIABLE, &no, sizeof no },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
                { CKA_APPLICATION, (void *) HSM_APPLICATION, strlen(HSM_APPLICATION) },
                { CKA_VALUE, a->secret->data, a->secret->len },
        };
        CK_OBJECT_HANDLE obj;
        CK_ULONG n = 0;
        CK_RV rv;
        int r;

        r = find_objects(h, find, ELEMENTSOF(find), 1, &objs, &n);
        if (r < 0)
                return r;
        if (n > 0)
                return hsm_error_setf(&h->error, -EEXIST, "a data object labelled \"%s\" already exists on token \"%s\"",
                                      a->label, h->token_label);

        rv = h->module->C_CreateObject(h->session, create, ELEMENTSOF(create), &obj);
        if (rv != CKR_OK)
                return ck_fail(h, "C_CreateObject", rv);
        log_debug("hsm: created data object \"%s\" on token \"%s\"", a->label, h->token_label);
        return 0;
}

int hsm_write_secret(struct hsm *h, const char *label, const struct secbuf *secret, char **ret_uri) {
        _cleanup_free_ char *uri = NULL;
        struct write_args a = { .label = label, .secret = secret };
        int r;

        if (!h)
                return -EINVAL;
        call_begin(h);

        r = uri_check_label(label, &h->error);
        if (r < 0)
                return call_end(h, r);
        if (!secret || secret->len == 0)
                return call_end(h, hsm_error_setf(&h->error, -EINVAL, "empty secret"));
        if (secret->len > HSM_SECRET_MAX)
                return call_end(h, hsm_error_setf(&h->error, -EMSGSIZE, "the secret is %zu bytes, more than %d",
                                                  secret->len, HSM_SECRET_MAX));
        if (ret_uri) {
                r = uri_format_object(&h->token_info, label, &uri);
                if (r < 0)
                        return call_end(h, hsm_error_setf(&h->error, r, "cannot format the object URI"));
        }

        r = hsm_run(h, op_write, &a);
        if (r >= 0 && ret_uri)
                *ret_uri = TAKE_PTR(uri);
        return call_end(h, r);
}

/* ---- hsm_list_secrets ---- */

static void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static void strv_freep(char ***l) {
        strv_free(*l);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int op_list(struct hsm *h, void *userdata) {
        char ***ret = userdata;
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        _cleanup_(strv_freep) char **labels = NULL;
        CK_OBJECT_CLASS klass = CKO_DATA;
        CK_ATTRIBUTE find[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_APPLICATION, (void *) HSM_APPLICATION, strlen(HSM_APPLICATION) },
        };
        CK_ULONG n = 0, k = 0;
        CK_RV rv;
        int r;

        r = find_all_objects(h, find, ELEMENTSOF(find), &objs, &n);
        if (r < 0)
                return r;

        labels = calloc(n + 1, sizeof *labels);
        if (!labels)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_ATTRIBUTE a = { CKA_LABEL, NULL, 0 };
                char *s;

                rv = h->module->C_GetAttributeValue(h->session, objs[i], &a, 1);
                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        continue; /* removed meanwhile */
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetAttributeValue(CKA_LABEL)", rv);
                if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 4096)
                        continue;
                s = malloc(a.ulValueLen + 1);
                if (!s)
                        return -ENOMEM;
                a.pValue = s;
                rv = h->module->C_GetAttributeValue(h->session, objs[i], &a, 1);
                if (rv != CKR_OK) {
                        free(s);
                        if (rv == CKR_OBJECT_HANDLE_INVALID)
                                continue;
                        return ck_fail(h, "C_GetAttributeValue(CKA_LABEL)", rv);
                }
                s[a.ulValueLen] = '\0';
                labels[k++] = s;
        }
        qsort(labels, k, sizeof *labels, cmp_str);

        *ret = TAKE_PTR(labels);
        return 0;
}

int hsm_list_secrets(struct hsm *h, char ***ret_labels) {
        char **labels = NULL;
        int r;

        if (!h || !ret_labels)
                return -EINVAL;
        call_begin(h);
        r = hsm_run(h, op_list, &labels);
        if (r >= 0)
                *ret_labels = labels;
        return call_end(h, r);
}

/* ---- hsm_remove_secret ---- */

static int op_remove(struct hsm *h, void *userdata) {
        const char *label = userdata;
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_OBJECT_CLASS klass = CKO_DATA;
        CK_ATTRIBUTE find[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_APPLICATION, (void *) HSM_APPLICATION, strlen(HSM_APPLICATION) },
        };
        CK_ULONG n = 0;
        CK_RV rv;
        int r;

        r = find_all_objects(h, find, ELEMENTSOF(find), &objs, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return hsm_error_setf(&h->error, -ENOENT, "no secret labelled \"%s\" on token \"%s\"",
                                      label, h->token_label);
        for (CK_ULONG i = 0; i < n; i++) {
                rv = h->module->C_DestroyObject(h->session, objs[i]);
                if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
                        return ck_fail(h, "C_DestroyObject", rv);
        }
        log_debug("hsm: destroyed %lu data object(s) \"%s\" on token \"%s\"", (unsigned long) n, label,
                  h->token_label);
        return 0;
}

int hsm_remove_secret(struct hsm *h, const char *label) {
        int r;

        if (!h)
                return -EINVAL;
        call_begin(h);
        r = uri_check_label(label, &h->error);
        if (r < 0)
                return call_end(h, r);
        return call_end(h, hsm_run(h, op_remove, (void *) label));
}

/* ---- signing keys ---- */

/* DER of the OID prime256v1 / secp256r1 (1.2.840.10045.3.1.7), CKA_EC_PARAMS of a P-256 key. */
static const uint8_t p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

/* Smallest RSA modulus accepted, in bits. */
#define HSM_RSA_MIN_BITS 2048
/* Largest RSA modulus accepted, in bytes (its signature must fit HSM_SIGNATURE_MAX). */
#define HSM_RSA_MAX_BYTES HSM_SIGNATURE_MAX

const char *hsm_alg_name(enum hsm_alg alg) {
        switch (alg) {
        case HSM_ALG_ES256:
                return "ES256";
        case HSM_ALG_RS256:
                return "RS256";
        case HSM_ALG_PS256:
                return "PS256";
        default:
                return NULL;
        }
}

int hsm_alg_from_name(const char *name, enum hsm_alg *ret) {
        if (!name || !ret)
                return -EINVAL;
        for (enum hsm_alg a = HSM_ALG_ES256; a < _HSM_ALG_MAX; a++)
                if (strcmp(name, hsm_alg_name(a)) == 0) {
                        *ret = a;
                        return 0;
                }
        return -EINVAL;
}

/* What a signing key is, as far as signing goes. */
struct key_info {
        CK_OBJECT_HANDLE obj;
        CK_KEY_TYPE type;
        size_t sig_len;                 /* 64 for P-256, the modulus size for RSA */
};

struct key_args {
        struct object_query *q;
        enum hsm_alg wanted;            /* hsm_key_alg(): NONE or an alg; hsm_sign(): the alg */
        enum hsm_alg alg;               /* out */
        const void *data;               /* hsm_sign() only */
        size_t len;
        uint8_t *sig;
        size_t sig_cap;
        size_t sig_len;                 /* out */
};

/* Finds the key of A->q and works out the algorithm for A->wanted into A->alg. */
static int key_lookup(struct hsm *h, struct key_args *a, struct key_info *ret) {
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_KEY_TYPE type = (CK_KEY_TYPE) -1;
        CK_BBOOL is_private = CK_FALSE, sensitive = CK_FALSE;
        CK_ATTRIBUTE attrs[] = {
                { CKA_KEY_TYPE, &type, sizeof type },
                { CKA_PRIVATE, &is_private, sizeof is_private },
                { CKA_SENSITIVE, &sensitive, sizeof sensitive },
        };
        const char *label = a->q->label;
        struct key_info ki = {};
        CK_ULONG n = 0;
        CK_RV rv;
        int r;

        r = find_objects(h, a->q->template, a->q->n_template, 2, &objs, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return hsm_error_setf(&h->error, -ENOENT, "no private key labelled \"%s\" on token \"%s\"", label,
                                      h->token_label);
        if (n > 1)
                return hsm_error_setf(&h->error, -EINVAL,
                                      "more than one private key labelled \"%s\" on token \"%s\"; add id= to the URI",
                                      label, h->token_label);
        ki.obj = objs[0];

        rv = h->module->C_GetAttributeValue(h->session, ki.obj, attrs, ELEMENTSOF(attrs));
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
                return ck_fail(h, "C_GetAttributeValue(CKA_KEY_TYPE)", rv);
        if (attrs[1].ulValueLen != sizeof is_private || is_private != CK_TRUE ||
            attrs[2].ulValueLen != sizeof sensitive || sensitive != CK_TRUE)
                return hsm_error_setf(&h->error, -EACCES,
                                      "private key \"%s\" on token \"%s\" is not private and sensitive "
                                      "(CKA_PRIVATE, CKA_SENSITIVE); refusing it", label, h->token_label);
        if (attrs[0].ulValueLen != sizeof type)
                return hsm_error_setf(&h->error, -EIO, "private key \"%s\" has no readable CKA_KEY_TYPE", label);
        ki.type = type;

        if (type == CKK_EC) {
                uint8_t params[64];
                CK_ATTRIBUTE p = { CKA_EC_PARAMS, params, sizeof params };

                rv = h->module->C_GetAttributeValue(h->session, ki.obj, &p, 1);
                if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
                        return ck_fail(h, "C_GetAttributeValue(CKA_EC_PARAMS)", rv);
                if (rv != CKR_OK || p.ulValueLen != sizeof p256_oid || memcmp(params, p256_oid, sizeof p256_oid) != 0)
                        return hsm_error_setf(&h->error, -EOPNOTSUPP,
                                              "private key \"%s\" is an EC key on another curve than P-256", label);
                if (a->wanted != HSM_ALG_NONE && a->wanted != HSM_ALG_ES256)
                        return hsm_error_setf(&h->error, -EOPNOTSUPP, "private key \"%s\" is an EC P-256 key: "
                                              "it signs ES256, not %s", label, hsm_alg_name(a->wanted) ?: "?");
                a->alg = HSM_ALG_ES256;
                ki.sig_len = 64;
        } else if (type == CKK_RSA) {
                uint8_t modulus[HSM_RSA_MAX_BYTES];
                CK_ATTRIBUTE m = { CKA_MODULUS, modulus, sizeof modulus };
                size_t skip = 0;
                unsigned bits;

                rv = h->module->C_GetAttributeValue(h->session, ki.obj, &m, 1);
                if (rv == CKR_BUFFER_TOO_SMALL)
                        return hsm_error_setf(&h->error, -EOPNOTSUPP, "private key \"%s\": RSA above %d bits",
                                              label, HSM_RSA_MAX_BYTES * 8);
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetAttributeValue(CKA_MODULUS)", rv);
                if (m.ulValueLen == CK_UNAVAILABLE_INFORMATION || m.ulValueLen > sizeof modulus)
                        return hsm_error_setf(&h->error, -EIO, "private key \"%s\" has no readable modulus", label);
                while (skip < m.ulValueLen && modulus[skip] == 0)
                        skip++;
                bits = skip < m.ulValueLen ? (unsigned) (m.ulValueLen - skip) * 8 - (unsigned) __builtin_clz(modulus[skip]) + 24 : 0;
                if (bits < HSM_RSA_MIN_BITS)
                        return hsm_error_setf(&h->error, -EOPNOTSUPP, "private key \"%s\" is RSA of %u bits; "
                                              "at least %d are needed", label, bits, HSM_RSA_MIN_BITS);
                if (a->wanted == HSM_ALG_ES256)
                        return hsm_error_setf(&h->error, -EOPNOTSUPP,
                                              "private key \"%s\" is an RSA key: it signs RS256 or PS256, not ES256", label);
                if (a->wanted == HSM_ALG_PS256) {
                        CK_MECHANISM_INFO mi;

                        rv = h->module->C_GetMechanismInfo(h->slot, CKM_SHA256_RSA_PKCS_PSS, &mi);
                        if (rv != CKR_OK || !(mi.flags & CKF_SIGN))
                                return hsm_error_setf(&h->error, -EOPNOTSUPP,
                                                      "token \"%s\" does not offer CKM_SHA256_RSA_PKCS_PSS for signing (PS256)",
                                                      h->token_label);
                        a->alg = HSM_ALG_PS256;
                } else
                        a->alg = HSM_ALG_RS256;
                ki.sig_len = (bits + 7) / 8;
        } else
                return hsm_error_setf(&h->error, -EOPNOTSUPP,
                                      "private key \"%s\" is neither EC P-256 nor RSA (CKA_KEY_TYPE 0x%lx)", label,
                                      (unsigned long) type);

        *ret = ki;
        return 0;
}

static int op_key_alg(struct hsm *h, void *userdata) {
        struct key_info ki;

        return key_lookup(h, userdata, &ki);
}

static int op_sign(struct hsm *h, void *userdata) {
        struct key_args *a = userdata;
        CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM mech = {};
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_len = 0;
        const void *input = a->data;
        CK_ULONG input_len = a->len, sig_len;
        struct key_info ki;
        CK_RV rv;
        int r;

        r = key_lookup(h, a, &ki);
        if (r < 0)
                return r;
        if (a->alg != a->wanted)
                return hsm_error_setf(&h->error, -EIO, "algorithm mix-up for \"%s\"", a->q->label);
        if (a->sig_cap < ki.sig_len)
                return hsm_error_setf(&h->error, -EMSGSIZE, "signature of \"%s\" needs %zu bytes, room for %zu",
                                      a->q->label, ki.sig_len, a->sig_cap);

        switch (a->alg) {
        case HSM_ALG_ES256:
                /* CKM_ECDSA signs a digest: hash with OpenSSL, the module only does the EC part. */
                if (EVP_Digest(a->data, a->len, digest, &digest_len, EVP_sha256(), NULL) != 1 || digest_len != 32)
                        return hsm_error_setf(&h->error, -EIO, "SHA-256 failed");
                mech.mechanism = CKM_ECDSA;
                input = digest;
                input_len = digest_len;
                break;
        case HSM_ALG_RS256:
                mech.mechanism = CKM_SHA256_RSA_PKCS;
                break;
        case HSM_ALG_PS256:
                mech.mechanism = CKM_SHA256_RSA_PKCS_PSS;
                mech.pParameter = &pss;
                mech.ulParameterLen = sizeof pss;
                break;
        default:
                return -EINVAL;
        }

        rv = h->module->C_SignInit(h->session, &mech, ki.obj);
        if (rv != CKR_OK)
                return ck_fail(h, "C_SignInit", rv);
        sig_len = a->sig_cap;
        rv = h->module->C_Sign(h->session, (CK_BYTE *) input, input_len, a->sig, &sig_len);
        if (rv != CKR_OK)
                return ck_fail(h, "C_Sign", rv);
        if (sig_len != ki.sig_len)
                return hsm_error_setf(&h->error, -EIO, "the module returned a %lu-byte signature for \"%s\", not %zu",
                                      (unsigned long) sig_len, a->q->label, ki.sig_len);
        a->sig_len = sig_len;
        log_debug("hsm: signed %zu bytes with \"%s\" (%s)", a->len, a->q->label, hsm_alg_name(a->alg));
        return 0;
}

int hsm_key_alg(struct hsm *h, const char *key_uri, enum hsm_alg wanted, enum hsm_alg *ret) {
        _cleanup_(object_query_done) struct object_query q = {};
        struct key_args a = { .q = &q, .wanted = wanted };
        int r;

        if (!h || !key_uri || !ret || (unsigned) wanted >= _HSM_ALG_MAX)
                return -EINVAL;
        call_begin(h);
        r = object_query_init(h, key_uri, CKO_PRIVATE_KEY, &q);
        if (r >= 0)
                r = hsm_run(h, op_key_alg, &a);
        if (r >= 0)
                *ret = a.alg;
        return call_end(h, r);
}

int hsm_sign(struct hsm *h, const char *key_uri, enum hsm_alg alg, const void *data, size_t len, uint8_t *sig,
             size_t *sig_len) {
        _cleanup_(object_query_done) struct object_query q = {};
        struct key_args a = { .q = &q, .wanted = alg, .data = data, .len = len, .sig = sig };
        int r;

        if (!h || !key_uri || !sig || !sig_len || (!data && len > 0) || alg == HSM_ALG_NONE ||
            (unsigned) alg >= _HSM_ALG_MAX)
                return -EINVAL;
        a.sig_cap = *sig_len;
        call_begin(h);
        r = object_query_init(h, key_uri, CKO_PRIVATE_KEY, &q);
        if (r >= 0)
                r = hsm_run(h, op_sign, &a);
        if (r >= 0)
                *sig_len = a.sig_len;
        return call_end(h, r);
}

/* ---- hsm_generate_key ---- */

struct generate_args {
        const char *label;
        enum hsm_alg alg;
        EVP_PKEY *public;               /* out */
};

static void bn_freep(BIGNUM **b) {
        BN_free(*b);
}

/* An EVP_PKEY for the P-256 point POINT (CKA_EC_POINT: a DER OCTET STRING holding the
 * uncompressed point, or, from some modules, the bare point). */
static int public_ec(const uint8_t *point, size_t len, EVP_PKEY **ret) {
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *pkey = NULL;
        OSSL_PARAM params[3];
        int ok;

        if (len == 67 && point[0] == 0x04 && point[1] == 65) { /* DER OCTET STRING, 65 bytes */
                point += 2;
                len -= 2;
        }
        if (len != 65 || point[0] != 0x04)
                return -EIO;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *) "P-256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *) point, len);
        params[2] = OSSL_PARAM_construct_end();
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!ctx)
                return -ENOMEM;
        ok = EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1;
        EVP_PKEY_CTX_free(ctx);
        if (!ok)
                return -EIO;
        *ret = pkey;
        return 0;
}

static int public_rsa(const uint8_t *n_bytes, size_t n_len, const uint8_t *e_bytes, size_t e_len, EVP_PKEY **ret) {
        _cleanup_(bn_freep) BIGNUM *n = BN_bin2bn(n_bytes, (int) n_len, NULL), *e = BN_bin2bn(e_bytes, (int) e_len, NULL);
        OSSL_PARAM_BLD *bld = NULL;
        OSSL_PARAM *params = NULL;
        EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey = NULL;
        int r = -EIO;

        if (!n || !e)
                return -ENOMEM;
        bld = OSSL_PARAM_BLD_new();
        if (!bld || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 || !(params = OSSL_PARAM_BLD_to_param(bld)))
                goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 && EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1) {
                *ret = pkey;
                r = 0;
        }
out:
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        return r;
}

/* Reads the public key back from PUB into an EVP_PKEY. */
static int read_public(struct hsm *h, CK_OBJECT_HANDLE pub, const char *label, enum hsm_alg alg, EVP_PKEY **ret) {
        uint8_t a[HSM_RSA_MAX_BYTES + 8], b[16];
        CK_RV rv;
        int r;

        if (alg == HSM_ALG_ES256) {
                CK_ATTRIBUTE pt = { CKA_EC_POINT, a, sizeof a };

                rv = h->module->C_GetAttributeValue(h->session, pub, &pt, 1);
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetAttributeValue(CKA_EC_POINT)", rv);
                r = public_ec(a, pt.ulValueLen, ret);
        } else {
                CK_ATTRIBUTE attrs[] = {
                        { CKA_MODULUS, a, sizeof a },
                        { CKA_PUBLIC_EXPONENT, b, sizeof b },
                };

                rv = h->module->C_GetAttributeValue(h->session, pub, attrs, ELEMENTSOF(attrs));
                if (rv != CKR_OK)
                        return ck_fail(h, "C_GetAttributeValue(CKA_MODULUS)", rv);
                r = public_rsa(a, attrs[0].ulValueLen, b, attrs[1].ulValueLen, ret);
        }
        if (r < 0)
                return hsm_error_setf(&h->error, r, "the new public key \"%s\" could not be read back", label);
        return 0;
}

static int op_generate(struct hsm *h, void *userdata) {
        struct generate_args *a = userdata;
        CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG bits = HSM_RSA_BITS;
        uint8_t exponent[] = { 0x01, 0x00, 0x01 }, id[16];
        CK_ATTRIBUTE find_priv[] = {
                { CKA_CLASS, &priv_class, sizeof priv_class },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
        };
        CK_ATTRIBUTE find_pub[] = {
                { CKA_CLASS, &pub_class, sizeof pub_class },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
        };
        CK_ATTRIBUTE pub_ec[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &no, sizeof no },
                { CKA_VERIFY, &yes, sizeof yes },
                { CKA_DERIVE, &no, sizeof no },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
                { CKA_ID, id, sizeof id },
                { CKA_EC_PARAMS, (void *) p256_oid, sizeof p256_oid },
        };
        CK_ATTRIBUTE pub_rsa[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &no, sizeof no },
                { CKA_VERIFY, &yes, sizeof yes },
                { CKA_ENCRYPT, &no, sizeof no },
                { CKA_WRAP, &no, sizeof no },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
                { CKA_ID, id, sizeof id },
                { CKA_MODULUS_BITS, &bits, sizeof bits },
                { CKA_PUBLIC_EXPONENT, exponent, sizeof exponent },
        };
        CK_ATTRIBUTE priv_ec[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },
                { CKA_SENSITIVE, &yes, sizeof yes },
                { CKA_EXTRACTABLE, &no, sizeof no },
                { CKA_SIGN, &yes, sizeof yes },
                { CKA_DERIVE, &no, sizeof no },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
                { CKA_ID, id, sizeof id },
        };
        CK_ATTRIBUTE priv_rsa[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },
                { CKA_SENSITIVE, &yes, sizeof yes },
                { CKA_EXTRACTABLE, &no, sizeof no },
                { CKA_SIGN, &yes, sizeof yes },
                { CKA_DECRYPT, &no, sizeof no },
                { CKA_UNWRAP, &no, sizeof no },
                { CKA_SIGN_RECOVER, &no, sizeof no },
                { CKA_LABEL, (void *) a->label, strlen(a->label) },
                { CKA_ID, id, sizeof id },
        };
        bool ec = a->alg == HSM_ALG_ES256;
        CK_MECHANISM mech = { ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        _cleanup_free_ CK_OBJECT_HANDLE *objs = NULL;
        CK_OBJECT_HANDLE pub, priv;
        CK_ULONG n = 0;
        CK_RV rv;
        int r;

        r = find_objects(h, find_priv, ELEMENTSOF(find_priv), 1, &objs, &n);
        if (r >= 0 && n == 0) {
                free(TAKE_PTR(objs));
                r = find_objects(h, find_pub, ELEMENTSOF(find_pub), 1, &objs, &n);
        }
        if (r < 0)
                return r;
        if (n > 0)
                return hsm_error_setf(&h->error, -EEXIST, "a key labelled \"%s\" already exists on token \"%s\"",
                                      a->label, h->token_label);
        if (RAND_bytes(id, sizeof id) != 1)
                return hsm_error_setf(&h->error, -EIO, "no random bytes for CKA_ID");

        rv = h->module->C_GenerateKeyPair(h->session, &mech, ec ? pub_ec : pub_rsa,
                                          ec ? ELEMENTSOF(pub_ec) : ELEMENTSOF(pub_rsa), ec ? priv_ec : priv_rsa,
                                          ec ? ELEMENTSOF(priv_ec) : ELEMENTSOF(priv_rsa), &pub, &priv);
        if (rv != CKR_OK)
                return ck_fail(h, "C_GenerateKeyPair", rv);

        r = read_public(h, pub, a->label, a->alg, &a->public);
        if (r < 0) {
                (void) h->module->C_DestroyObject(h->session, priv);
                (void) h->module->C_DestroyObject(h->session, pub);
                return r;
        }
        log_debug("hsm: generated %s key pair \"%s\" on token \"%s\"", ec ? "EC P-256" : "RSA", a->label,
                  h->token_label);
        return 0;
}

int hsm_generate_key(struct hsm *h, const char *label, enum hsm_alg alg, char **ret_uri, EVP_PKEY **ret_public) {
        _cleanup_free_ char *uri = NULL;
        struct generate_args a = { .label = label, .alg = alg };
        int r;

        if (!h || alg == HSM_ALG_NONE || (unsigned) alg >= _HSM_ALG_MAX)
                return -EINVAL;
        call_begin(h);
        r = uri_check_label(label, &h->error);
        if (r < 0)
                return call_end(h, r);
        if (ret_uri) {
                r = uri_format_object_class(&h->token_info, label, CKO_PRIVATE_KEY, &uri);
                if (r < 0)
                        return call_end(h, hsm_error_setf(&h->error, r, "cannot format the key URI"));
        }
        r = hsm_run(h, op_generate, &a);
        if (r >= 0) {
                if (ret_uri)
                        *ret_uri = TAKE_PTR(uri);
                if (ret_public)
                        *ret_public = TAKE_PTR(a.public);
        }
        EVP_PKEY_free(a.public);
        return call_end(h, r);
}
