/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <search.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent/config-internal.h"
#include "agent/config-wire.h"
#include "ipc/msg.h"
#include "macro.h"
#include "secmem.h"

_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t), "ids travel as u32");

/* Marks a NULL module_dirs list where its count would be. */
#define LIST_NULL UINT32_MAX

/* refresh_status values are HTTP status codes. */
#define STATUS_MIN 100
#define STATUS_MAX 999

/* ---- Invariants, checked on both sides ---------------------------------------------- */

static bool principal_name_matches(const struct config_credential *cred, const struct config_principal *p) {
        size_t n = strlen(cred->name);

        return strncmp(p->full_name, cred->name, n) == 0 && p->full_name[n] == '.' &&
               strcmp(p->full_name + n + 1, p->name) == 0;
}

/* Returns 0 or -EINVAL. */
static int credential_check(const struct config_credential *cred) {
        if (!cred->name || (unsigned) cred->client_auth > CLIENT_AUTH_PRIVATE_KEY_JWT ||
            cred->assertion_lifetime > ASSERTION_LIFETIME_MAX || cred->refresh_at > CONFIG_REFRESH_AT_MAX ||
            cred->refresh_margin > CONFIG_REFRESH_MARGIN_MAX)
                return -EINVAL;
        /* A formula's text travels; the receiver compiles it again. */
        if (formula_is_formula(cred->scope) != (cred->scope_formula != NULL))
                return -EINVAL;
        for (size_t i = 0; i < cred->n_refresh_status; i++)
                if (cred->refresh_status[i] < STATUS_MIN || cred->refresh_status[i] > STATUS_MAX)
                        return -EINVAL;
        for (size_t i = 0; i < cred->n_principals; i++) {
                const struct config_principal *p = cred->principals[i];

                if (!p->name || !p->full_name || !principal_name_matches(cred, p) ||
                    (unsigned) p->assertion_alg >= _HSM_ALG_MAX)
                        return -EINVAL;
                /* Sorted by ascending sequence, which is unique within the credential. */
                if (i > 0 && p->rule.sequence <= cred->principals[i - 1]->rule.sequence)
                        return -EINVAL;
        }
        return 0;
}

/* A name table (struct config's users or groups): strictly ascending ids, names of 1 …
 * CONFIG_NAME_LEN_MAX bytes, at most CONFIG_NAMES_MAX entries.  Adds its bytes, counted as
 * config.h says, to *BYTES.  Returns 0, -EINVAL or -EMSGSIZE. */
static int names_check(const struct config_name *v, size_t n, size_t *bytes) {
        if (n > CONFIG_NAMES_MAX)
                return -EMSGSIZE;
        if (n > 0 && !v)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                size_t len = v[i].name ? strlen(v[i].name) : 0;

                if (len == 0 || len > CONFIG_NAME_LEN_MAX || (i > 0 && v[i - 1].id >= v[i].id))
                        return -EINVAL;
                *bytes += len + 8;
                if (*bytes > CONFIG_NAMES_BYTES_MAX)
                        return -EMSGSIZE;
        }
        return 0;
}

/* Credential names are unique. */
static int credentials_check(struct config_credential *const *creds, size_t n) {
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < i; j++)
                        if (strcmp(creds[i]->name, creds[j]->name) == 0)
                                return -EINVAL;
        return 0;
}

/* ---- Encoding ---------------------------------------------------------------------- */

static int put_str(struct buf *b, const char *s) {
        if (s && strlen(s) > CONFIG_WIRE_STRING_MAX)
                return -EMSGSIZE;
        return buf_put_str(b, s);
}

static int put_ids(struct buf *b, const uint32_t *ids, size_t n) {
        int r;

        if (n > CONFIG_WIRE_IDS_MAX)
                return -EMSGSIZE;
        r = buf_put_u32(b, (uint32_t) n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = buf_put_u32(b, ids[i]);
        return r;
}

static int encode_principal(const struct config_principal *p, struct buf *b) {
        int r;

        r = put_str(b, p->name);
        if (r >= 0)
                r = put_str(b, p->full_name);
        if (r >= 0)
                r = buf_put_u64(b, p->rule.sequence);
        if (r >= 0)
                r = buf_put_u8(b, p->rule.any_user);
        if (r >= 0)
                r = put_ids(b, (const uint32_t *) p->rule.uids, p->rule.n_uids);
        if (r >= 0)
                r = put_ids(b, (const uint32_t *) p->rule.gids, p->rule.n_gids);
        if (r >= 0)
                r = put_str(b, p->client_id);
        if (r >= 0)
                r = put_str(b, p->client_secret);
        if (r >= 0)
                r = put_str(b, p->client_key);
        if (r >= 0)
                r = put_str(b, p->key_id);
        if (r >= 0)
                r = buf_put_u8(b, (uint8_t) p->assertion_alg);
        if (r >= 0)
                r = put_str(b, p->file);
        if (r >= 0)
                r = buf_put_u32(b, p->line);
        return r;
}

static int encode_credential(const struct config_credential *cred, struct buf *b) {
        int r;

        if (cred->n_refresh_status > CONFIG_WIRE_REFRESH_STATUS_MAX || cred->n_principals > CONFIG_WIRE_PRINCIPALS_MAX)
                return -EMSGSIZE;

        r = put_str(b, cred->name);
        if (r >= 0)
                r = put_str(b, cred->label);
        if (r >= 0)
                r = put_str(b, cred->token_url);
        if (r >= 0)
                r = buf_put_u8(b, (uint8_t) cred->client_auth);
        if (r >= 0)
                r = put_str(b, cred->scope);
        if (r >= 0)
                r = buf_put_u32(b, (uint32_t) cred->n_refresh_status);
        for (size_t i = 0; r >= 0 && i < cred->n_refresh_status; i++)
                r = buf_put_u32(b, (uint32_t) cred->refresh_status[i]);
        if (r >= 0)
                r = buf_put_u8(b, cred->allow_insecure_loopback);
        if (r >= 0)
                r = buf_put_u32(b, cred->default_ttl);
        if (r >= 0)
                r = buf_put_u32(b, cred->max_ttl);
        if (r >= 0)
                r = buf_put_u32(b, cred->refresh_at);
        if (r >= 0)
                r = buf_put_u32(b, cred->refresh_margin);
        if (r >= 0)
                r = buf_put_u32(b, cred->connect_timeout);
        if (r >= 0)
                r = buf_put_u32(b, cred->timeout);
        if (r >= 0)
                r = put_str(b, cred->assertion_audience);
        if (r >= 0)
                r = buf_put_u32(b, cred->assertion_lifetime);
        if (r >= 0)
                r = put_str(b, cred->issuer);
        if (r >= 0)
                r = put_str(b, cred->audience);
        if (r >= 0)
                r = put_str(b, cred->resource);
        if (r >= 0)
                r = put_str(b, cred->token_params);
        if (r >= 0)
                r = put_str(b, cred->file);
        if (r >= 0)
                r = buf_put_u32(b, cred->line);
        if (r >= 0)
                r = buf_put_u32(b, (uint32_t) cred->n_principals);
        for (size_t i = 0; r >= 0 && i < cred->n_principals; i++)
                r = encode_principal(cred->principals[i], b);
        return r;
}

static int encode_names(const struct config_name *v, size_t n, struct buf *b) {
        int r = buf_put_u32(b, (uint32_t) n);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = buf_put_u32(b, v[i].id);
                if (r >= 0)
                        r = put_str(b, v[i].name);
        }
        return r;
}

static int encode_payload(const struct config *c, bool agent_only, struct buf *b) {
        size_t n_dirs = 0, n_credentials = agent_only ? 0 : c->n_credentials;
        int r;

        if (c->module_dirs)
                while (c->module_dirs[n_dirs])
                        n_dirs++;
        if (n_dirs > CONFIG_WIRE_MODULE_DIRS_MAX || c->n_credentials > CONFIG_WIRE_CREDENTIALS_MAX)
                return -EMSGSIZE;

        r = put_str(b, c->path);
        if (r >= 0)
                r = put_str(b, c->socket);
        if (r >= 0)
                r = put_str(b, c->socket_group);
        if (r >= 0)
                r = buf_put_u32(b, (uint32_t) c->socket_gid);
        if (r >= 0)
                r = put_str(b, c->module);
        if (r >= 0)
                r = buf_put_u32(b, c->module_dirs ? (uint32_t) n_dirs : LIST_NULL);
        for (size_t i = 0; r >= 0 && i < n_dirs; i++)
                r = put_str(b, c->module_dirs[i]);
        if (r >= 0)
                r = put_str(b, c->token);
        if (r >= 0)
                r = put_str(b, c->pin_source);
        if (r >= 0)
                r = put_str(b, c->ca_file);
        if (r >= 0)
                r = buf_put_u32(b, (uint32_t) n_credentials);
        for (size_t i = 0; r >= 0 && i < n_credentials; i++)
                r = encode_credential(c->credentials[i], b);
        if (r >= 0)
                r = encode_names(c->users, agent_only ? 0 : c->n_users, b);
        if (r >= 0)
                r = encode_names(c->groups, agent_only ? 0 : c->n_groups, b);
        return r;
}

static int encode(const struct config *c, bool agent_only, struct buf *out) {
        size_t start, bytes = 0;
        int r;

        for (size_t i = 0; i < c->n_credentials; i++) {
                r = credential_check(c->credentials[i]);
                if (r < 0)
                        return r;
        }
        r = credentials_check(c->credentials, c->n_credentials);
        if (r < 0)
                return r;
        r = names_check(c->users, c->n_users, &bytes);
        if (r >= 0)
                r = names_check(c->groups, c->n_groups, &bytes);
        if (r < 0)
                return r;

        start = out->len;
        r = encode_payload(c, agent_only, out);
        if (r < 0) {
                /* Leave OUT as it was. */
                secure_wipe(out->data + start, out->len - start);
                out->len = start;
        }
        return r;
}

int config_encode(const struct config *c, struct buf *out) {
        return encode(c, false, out);
}

/* ---- Decoding ---------------------------------------------------------------------- */

/* The decoder's state: its input, and the config's arena (agent/config-internal.h) with the
 * strings stored there so far (a tsearch() tree), so that a string that repeats is stored
 * once.  Every decoding function gets &dec->b and finds the rest with dec_of(). */
struct dec {
        struct buf b;
        struct config_arena **arena;
        void *strings;
};

static struct dec *dec_of(struct buf *b) {
        return (struct dec *) ((char *) b - offsetof(struct dec, b));
}

/* N zeroed bytes from the config's arena, or NULL (ENOMEM). */
static void *dec_alloc(struct buf *b, size_t n) {
        return config_arena_alloc(dec_of(b)->arena, n);
}

static void *dec_calloc(struct buf *b, size_t n, size_t size) {
        if (size && n > SIZE_MAX / size)
                return NULL;
        return dec_alloc(b, n * size);
}

static int strcmp_void(const void *a, const void *b) {
        return strcmp(a, b);
}

static void free_nothing(void *p) {
        (void) p;
}

/* A string of at most MAX bytes (buf_get_str()'s encoding; NULL stays NULL), stored in the
 * arena once per distinct value. */
static int get_str_max(struct buf *b, size_t max, char **ret) {
        struct dec *d = dec_of(b);
        size_t save = b->off, len;
        const char *p;
        char *s, tmp[512], **found;
        int r;

        r = buf_get_str_ref(b, max, &p, &len);
        if (r < 0)
                return r;
        if (!p) {
                *ret = NULL;
                return 0;
        }
        /* Seen before?  Look it up as a C string (a short one on the stack). */
        if (len < sizeof tmp) {
                memcpy(tmp, p, len);
                tmp[len] = '\0';
                found = tfind(tmp, &d->strings, strcmp_void);
                if (found) {
                        *ret = *found;
                        return 0;
                }
        }
        s = dec_alloc(b, len + 1);
        if (!s) {
                b->off = save;
                return -ENOMEM;
        }
        memcpy(s, p, len);
        s[len] = '\0';
        if (len < sizeof tmp)
                (void) tsearch(s, &d->strings, strcmp_void); /* NULL (ENOMEM): just not shared */
        *ret = s;
        return 0;
}

static int get_str(struct buf *b, char **ret) {
        return get_str_max(b, CONFIG_WIRE_STRING_MAX, ret);
}

static int get_str_required(struct buf *b, char **ret) {
        char *s = NULL;
        int r = get_str(b, &s);

        if (r < 0)
                return r;
        if (!s)
                return -EBADMSG;
        *ret = s;
        return 0;
}

static int get_bool(struct buf *b, bool *ret) {
        uint8_t v;
        int r = buf_get_u8(b, &v);

        if (r < 0)
                return r;
        if (v > 1)
                return -EBADMSG;
        *ret = v;
        return 0;
}

/* A u32 count of at most MAX items of at least ITEM_SIZE bytes each still in B. */
static int get_count(struct buf *b, size_t max, size_t item_size, size_t *ret) {
        uint32_t n;
        int r = buf_get_u32(b, &n);

        if (r < 0)
                return r;
        if (n > max || (size_t) n > buf_remaining(b) / item_size)
                return -EBADMSG;
        *ret = n;
        return 0;
}

static int get_ids(struct buf *b, uint32_t **ret, size_t *ret_n) {
        uint32_t *ids = NULL;
        size_t n;
        int r;

        r = get_count(b, CONFIG_WIRE_IDS_MAX, sizeof(uint32_t), &n);
        if (r < 0)
                return r;
        if (n > 0) {
                ids = dec_calloc(b, n, sizeof *ids);
                if (!ids)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = buf_get_u32(b, &ids[i]);
                if (r < 0)
                        return r;
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

/* Smallest encodings, for sanity checks of counts against the bytes left. */
#define STR_MIN 4
#define PRINCIPAL_MIN (2 * STR_MIN + 8 + 1 + 4 + 4 + 5 * STR_MIN + 1 + 4)
#define CREDENTIAL_MIN (2 * STR_MIN + STR_MIN + 1 + STR_MIN + 4 + 1 + 4 * 4 + STR_MIN + 4 + STR_MIN + 4 + 4)

/* Fills P (zeroed, in the config's arena: freed by config_free()). */
static int decode_principal(struct buf *b, struct config_principal *p) {
        int r;

        r = get_str_required(b, &p->name);
        if (r >= 0)
                r = get_str_required(b, &p->full_name);
        if (r >= 0)
                r = buf_get_u64(b, &p->rule.sequence);
        if (r >= 0)
                r = get_bool(b, &p->rule.any_user);
        if (r >= 0)
                r = get_ids(b, (uint32_t **) &p->rule.uids, &p->rule.n_uids);
        if (r >= 0)
                r = get_ids(b, (uint32_t **) &p->rule.gids, &p->rule.n_gids);
        if (r >= 0)
                r = get_str(b, &p->client_id);
        if (r >= 0)
                r = get_str(b, &p->client_secret);
        if (r >= 0)
                r = get_str(b, &p->client_key);
        if (r >= 0)
                r = get_str(b, &p->key_id);
        if (r >= 0) {
                uint8_t alg;

                r = buf_get_u8(b, &alg);
                if (r >= 0 && alg >= _HSM_ALG_MAX)
                        r = -EBADMSG;
                p->assertion_alg = (enum hsm_alg) alg;
        }
        if (r >= 0)
                r = get_str(b, &p->file);
        if (r >= 0)
                r = buf_get_u32(b, &p->line);
        return r;
}

static int decode_credential(struct buf *b, struct config_credential *cred) {
        uint8_t client_auth;
        size_t n;
        int r;

        r = get_str_required(b, &cred->name);
        if (r >= 0)
                r = get_str(b, &cred->label);
        if (r >= 0)
                r = get_str(b, &cred->token_url);
        if (r >= 0)
                r = buf_get_u8(b, &client_auth);
        if (r < 0)
                return r;
        if (client_auth > CLIENT_AUTH_PRIVATE_KEY_JWT)
                return -EBADMSG;
        cred->client_auth = (enum client_auth) client_auth;
        r = get_str(b, &cred->scope);
        if (r >= 0 && formula_is_formula(cred->scope)) {
                r = formula_parse(cred->scope, &cred->scope_formula, NULL, NULL);
                if (r < 0 && r != -ENOMEM)
                        r = -EBADMSG;
        }
        if (r >= 0)
                r = get_count(b, CONFIG_WIRE_REFRESH_STATUS_MAX, sizeof(uint32_t), &n);
        if (r < 0)
                return r;
        if (n > 0) {
                cred->refresh_status = dec_calloc(b, n, sizeof *cred->refresh_status);
                if (!cred->refresh_status)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                uint32_t v;

                r = buf_get_u32(b, &v);
                if (r < 0)
                        return r;
                if (v < STATUS_MIN || v > STATUS_MAX)
                        return -EBADMSG;
                cred->refresh_status[cred->n_refresh_status++] = (int) v;
        }
        r = get_bool(b, &cred->allow_insecure_loopback);
        if (r >= 0)
                r = buf_get_u32(b, &cred->default_ttl);
        if (r >= 0)
                r = buf_get_u32(b, &cred->max_ttl);
        if (r >= 0)
                r = buf_get_u32(b, &cred->refresh_at);
        if (r >= 0)
                r = buf_get_u32(b, &cred->refresh_margin);
        if (r >= 0)
                r = buf_get_u32(b, &cred->connect_timeout);
        if (r >= 0)
                r = buf_get_u32(b, &cred->timeout);
        if (r >= 0)
                r = get_str(b, &cred->assertion_audience);
        if (r >= 0)
                r = buf_get_u32(b, &cred->assertion_lifetime);
        if (r >= 0)
                r = get_str(b, &cred->issuer);
        if (r >= 0)
                r = get_str(b, &cred->audience);
        if (r >= 0)
                r = get_str(b, &cred->resource);
        if (r >= 0)
                r = get_str(b, &cred->token_params);
        if (r >= 0)
                r = get_str(b, &cred->file);
        if (r >= 0)
                r = buf_get_u32(b, &cred->line);
        if (r >= 0)
                r = get_count(b, CONFIG_WIRE_PRINCIPALS_MAX, PRINCIPAL_MIN, &n);
        if (r < 0)
                return r;
        if (n > 0) {
                cred->principals = dec_calloc(b, n, sizeof *cred->principals);
                cred->rules = dec_calloc(b, n, sizeof *cred->rules);
                if (!cred->principals || !cred->rules)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct config_principal *p = dec_alloc(b, sizeof *p);

                if (!p)
                        return -ENOMEM;
                p->credential = cred;
                cred->principals[cred->n_principals++] = p;
                cred->rules[i] = &p->rule;
                r = decode_principal(b, p);
                if (r < 0)
                        return r;
        }
        return credential_check(cred) < 0 ? -EBADMSG : 0;
}

/* A table as names_check() wants it; *BYTES as there. */
static int decode_names(struct buf *b, struct config_name **ret, size_t *ret_n, size_t *bytes) {
        size_t n;
        int r;

        r = get_count(b, CONFIG_NAMES_MAX, 4 + STR_MIN, &n);
        if (r < 0)
                return r;
        if (n > 0) {
                *ret = dec_calloc(b, n, sizeof **ret);
                if (!*ret)
                        return -ENOMEM;
        }
        /* Counted as it fills, so config_free() frees what was read. */
        for (size_t i = 0; i < n; i++) {
                struct config_name *e = &(*ret)[i];

                r = buf_get_u32(b, &e->id);
                if (r < 0)
                        return r;
                r = get_str_max(b, CONFIG_NAME_LEN_MAX, &e->name);
                if (r < 0)
                        return r;
                (*ret_n)++;
                if (!e->name)
                        return -EBADMSG;
        }
        return names_check(*ret, *ret_n, bytes) < 0 ? -EBADMSG : 0;
}

/* Decodes the [agent] part and the credential count that follows it into C / *RET_N. */
static int decode_agent(struct buf *b, struct config *c, size_t *ret_n) {
        uint32_t n_dirs;
        int r;

        r = get_str(b, &c->path);
        if (r >= 0)
                r = get_str(b, &c->socket);
        if (r >= 0)
                r = get_str(b, &c->socket_group);
        if (r >= 0)
                r = buf_get_u32(b, &c->socket_gid);
        if (r >= 0)
                r = get_str(b, &c->module);
        if (r >= 0)
                r = buf_get_u32(b, &n_dirs);
        if (r < 0)
                return r;
        if (n_dirs != LIST_NULL) {
                if (n_dirs > CONFIG_WIRE_MODULE_DIRS_MAX || n_dirs > buf_remaining(b) / STR_MIN)
                        return -EBADMSG;
                c->module_dirs = dec_calloc(b, n_dirs + 1, sizeof *c->module_dirs);
                if (!c->module_dirs)
                        return -ENOMEM;
                /* Kept NULL-terminated as it fills, so config_free() works at any point. */
                for (size_t i = 0; i < n_dirs; i++) {
                        r = get_str_required(b, &c->module_dirs[i]);
                        if (r < 0)
                                return r;
                }
        }
        r = get_str(b, &c->token);
        if (r >= 0)
                r = get_str(b, &c->pin_source);
        if (r >= 0)
                r = get_str(b, &c->ca_file);
        if (r >= 0)
                r = get_count(b, CONFIG_WIRE_CREDENTIALS_MAX, CREDENTIAL_MIN, ret_n);
        return r;
}

static int decode_payload(struct buf *b, struct config *c) {
        size_t n, bytes = 0;
        int r;

        r = decode_agent(b, c, &n);
        if (r < 0)
                return r;
        if (n > 0) {
                c->credentials = dec_calloc(b, n, sizeof *c->credentials);
                if (!c->credentials)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct config_credential *cred = dec_alloc(b, sizeof *cred);

                if (!cred)
                        return -ENOMEM;
                c->credentials[c->n_credentials++] = cred;
                r = decode_credential(b, cred);
                if (r < 0)
                        return r;
        }
        r = decode_names(b, &c->users, &c->n_users, &bytes);
        if (r >= 0)
                r = decode_names(b, &c->groups, &c->n_groups, &bytes);
        if (r < 0)
                return r;
        if (buf_remaining(b) > 0)
                return -EBADMSG;
        return credentials_check(c->credentials, c->n_credentials) < 0 ? -EBADMSG : 0;
}

/* Decodes P[0..N) into a new config: all of it, or (AGENT_ONLY) the [agent] part with the
 * count of credentials that follows in *RET_N. */
static int decode(const uint8_t *p, size_t n, bool agent_only, struct config **ret, size_t *ret_n) {
        _cleanup_(config_freep) struct config *c = NULL;
        struct dec d = {};
        size_t n_credentials;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        d.arena = &c->arena;
        buf_view(&d.b, p, n);
        r = agent_only ? decode_agent(&d.b, c, &n_credentials) : decode_payload(&d.b, c);
        tdestroy(d.strings, free_nothing); /* the tree's nodes; the strings are the arena's */
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        if (agent_only && ret_n)
                *ret_n = n_credentials;
        return 0;
}

int config_decode(const uint8_t *p, size_t n, struct config **ret) {
        return decode(p, n, false, ret, NULL);
}

/* ---- Sending and receiving --------------------------------------------------------- */

#define CONFIG_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

int config_send(int fd, const struct config *c, unsigned flags) {
        _cleanup_close_ int memfd = -1;
        struct buf enc;
        int r;

        buf_init(&enc, MSG_CONFIG_SIZE_MAX);
        r = encode(c, flags & CONFIG_SEND_AGENT_ONLY, &enc);
        if (r < 0)
                goto out;
        memfd = memfd_create("credagent-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (memfd < 0) {
                r = -errno;
                goto out;
        }
        for (size_t done = 0; done < enc.len;) {
                ssize_t n = write(memfd, enc.data + done, enc.len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        goto out;
                }
                done += (size_t) n;
        }
        if (fcntl(memfd, F_ADD_SEALS, CONFIG_SEALS) < 0) {
                r = -errno;
                goto out;
        }
        r = config_send_memfd(fd, memfd, enc.len);
out:
        buf_done(&enc);
        return r;
}

int config_send_memfd(int fd, int memfd, uint64_t size) {
        struct buf frame;
        int r;

        buf_init(&frame, 64);
        r = msg_config_encode(&(struct msg_config) { .size = size }, &frame);
        if (r >= 0)
                r = msg_send(fd, &frame, memfd);
        buf_done(&frame);
        return r;
}

/* Reads the M->size bytes of the sealed MEMFD into a new buffer in *RET. */
static int read_memfd(int memfd, const struct msg_config *m, uint8_t **ret) {
        _cleanup_free_ uint8_t *data = NULL;
        int seals;

        if (memfd < 0 || m->size == 0 || m->size > MSG_CONFIG_SIZE_MAX)
                return -EBADMSG;
        seals = fcntl(memfd, F_GET_SEALS);
        if (seals < 0)
                return errno == EINVAL ? -EBADMSG : -errno; /* EINVAL: not a memfd */
        if ((seals & CONFIG_SEALS) != CONFIG_SEALS)
                return -EBADMSG;
        data = malloc(m->size);
        if (!data)
                return -ENOMEM;
        for (size_t done = 0; done < m->size;) {
                ssize_t n = pread(memfd, data + done, m->size - done, (off_t) done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EBADMSG; /* shorter than it said */
                done += (size_t) n;
        }
        /* Longer than it said is malformed too. */
        {
                uint8_t extra;
                ssize_t n = pread(memfd, &extra, 1, (off_t) m->size);
                if (n != 0)
                        return n < 0 ? -errno : -EBADMSG;
        }
        *ret = TAKE_PTR(data);
        return 0;
}

int config_receive(int memfd, const struct msg_config *m, struct config **ret) {
        _cleanup_free_ uint8_t *data = NULL;
        int r;

        r = read_memfd(memfd, m, &data);
        if (r < 0)
                return r;
        return config_decode(data, m->size, ret);
}

int config_receive_agent(int memfd, const struct msg_config *m, struct config **ret, size_t *ret_n_credentials) {
        _cleanup_free_ uint8_t *data = NULL;
        int r;

        r = read_memfd(memfd, m, &data);
        if (r < 0)
                return r;
        return decode(data, m->size, true, ret, ret_n_credentials);
}
