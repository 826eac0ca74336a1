/* SPDX-License-Identifier: ISC */
/* A loaded struct config (agent/config.h): lookups, scope expansion and freeing.  Apart from
 * the loader (agent/config.c, which needs inih, libcurl and p11-kit to check what it reads),
 * so that the processes that only receive a config (agent/config-wire.h) link none of those. */
#include <errno.h>
#include <pwd.h>
#include <unistd.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config-internal.h"
#include "agent/config.h"
#include "build-config.h"
#include "ipc/client.h"
#include "hsm/hsm.h"
#include "log.h"
#include "macro.h"
#include "policy/formula.h"

/* A value quoted in a reason: escaped, cut at 128 bytes (as the loader quotes). */
#define QUOTE_MAX 128
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)
#define Q(s) log_escape((s), strlen(s), QUOTE_MAX, (char[QUOTE_BUF]) { 0 }, QUOTE_BUF)

void config_strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

struct config_principal *config_principal_free(struct config_principal *p) {
        if (!p)
                return NULL;
        free(p->name);
        free(p->full_name);
        free(p->client_id);
        free(p->client_secret);
        free(p->client_key);
        free(p->key_id);
        free(p->rule.uids);
        free(p->rule.gids);
        free(p->file);
        free(p);
        return NULL;
}

struct config_credential *config_credential_free(struct config_credential *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_principals; i++)
                config_principal_free(c->principals[i]);
        free(c->principals);
        free(c->rules);
        free(c->name);
        free(c->label);
        free(c->token_url);
        free(c->assertion_audience);
        free(c->issuer);
        free(c->audience);
        free(c->resource);
        free(c->token_params);
        free(c->scope);
        formula_free(c->scope_formula);
        free(c->refresh_status);
        free(c->file);
        free(c);
        return NULL;
}

static const char *name_lookup(const struct config_name *v, size_t n, uint32_t id) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (v[mid].id == id)
                        return v[mid].name;
                if (v[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const char *config_user_name(const struct config *c, uid_t uid) {
        return c ? name_lookup(c->users, c->n_users, (uint32_t) uid) : NULL;
}

const char *config_group_name(const struct config *c, gid_t gid) {
        return c ? name_lookup(c->groups, c->n_groups, (uint32_t) gid) : NULL;
}

void config_names_free(struct config_name *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

_printf_(3, 4)
static void set_reason(char *reason, size_t size, const char *format, ...) {
        va_list ap;

        if (!reason || size == 0)
                return;
        va_start(ap, format);
        vsnprintf(reason, size, format, ap);
        va_end(ap);
}

/* $User.Groups for PEER into BUF: its gid, then its supplementary groups, each once. */
static int join_groups(const struct config *c, const struct peer *peer, char *buf, size_t size, char *reason,
                       size_t reason_size) {
        size_t n = 0;

        if (peer->groups_truncated) {
                set_reason(reason, reason_size, "$User.Groups is not available: the caller is in more than %d groups",
                           PEER_GROUPS_MAX);
                return -ENODATA;
        }
        for (size_t i = 0; i <= peer->n_groups; i++) {
                gid_t gid = i == 0 ? peer->gid : peer->groups[i - 1];
                const char *name;
                bool seen = false;
                size_t len;

                for (size_t j = 0; j < i && !seen; j++)
                        seen = (j == 0 ? peer->gid : peer->groups[j - 1]) == gid;
                if (seen)
                        continue;
                name = config_group_name(c, gid);
                if (!name) {
                        set_reason(reason, reason_size, "$User.Groups is not available: group %u has no name "
                                   "(names are read when the configuration is loaded)", (unsigned) gid);
                        return -ENODATA;
                }
                if (!formula_is_scope_token(name)) {
                        set_reason(reason, reason_size, "$User.Groups: the name of group %u, \"%s\", is not a scope "
                                   "token (RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')",
                                   (unsigned) gid, Q(name));
                        return -EILSEQ;
                }
                len = strlen(name);
                if (n + (n > 0) + len >= size) {
                        set_reason(reason, reason_size, "the expanded scope would be longer than %d bytes",
                                   FORMULA_SCOPE_MAX);
                        return -E2BIG;
                }
                if (n > 0)
                        buf[n++] = ' ';
                memcpy(buf + n, name, len + 1);
                n += len;
        }
        return 0;
}

int config_scope_expand(const struct config *c, const struct config_principal *p, const struct peer *peer,
                        char *buf, size_t size, char *reason, size_t reason_size, const char **ret_scope) {
        const struct config_credential *cred;
        const struct formula *f;
        struct formula_vars vars = {};
        enum formula_var bad = _FORMULA_VAR_MAX;
        char uid[16], groups[FORMULA_SCOPE_MAX + 1];
        const char *v;
        int r;

        if (!c || !p || !p->credential || !peer || !ret_scope)
                return -EINVAL;
        cred = p->credential;
        f = cred->scope_formula;
        if (!f) {
                *ret_scope = cred->scope;
                return 0;
        }
        if (!buf || size == 0)
                return -EINVAL;

        snprintf(uid, sizeof uid, "%u", (unsigned) peer->uid);
        vars.value[FORMULA_VAR_USER_UID] = uid;
        vars.value[FORMULA_VAR_USER_NAME] = config_user_name(c, peer->uid);
        vars.value[FORMULA_VAR_USER_GROUP] = config_group_name(c, peer->gid);
        vars.value[FORMULA_VAR_UNIT] = NULL; /* SO_PEERPIDFD is not read by this version */
        vars.value[FORMULA_VAR_PRINCIPAL_NAME] = p->name;
        vars.value[FORMULA_VAR_CREDENTIAL_NAME] = cred->name;
        if (formula_uses(f, FORMULA_VAR_USER_GROUPS)) {
                r = join_groups(c, peer, groups, sizeof groups, reason, reason_size);
                if (r < 0)
                        return r;
                vars.value[FORMULA_VAR_USER_GROUPS] = groups;
        }

        r = formula_eval(f, &vars, buf, size, &bad);
        if (r >= 0) {
                *ret_scope = buf;
                return 0;
        }

        v = (unsigned) bad < _FORMULA_VAR_MAX ? vars.value[bad] : NULL;
        if (r == -ENODATA && bad == FORMULA_VAR_USER_NAME)
                set_reason(reason, reason_size, "$User.Name is not available: uid %u has no user name "
                           "(names are read when the configuration is loaded)", (unsigned) peer->uid);
        else if (r == -ENODATA && bad == FORMULA_VAR_USER_GROUP)
                set_reason(reason, reason_size, "$User.Group is not available: group %u has no name "
                           "(names are read when the configuration is loaded)", (unsigned) peer->gid);
        else if (r == -ENODATA && bad == FORMULA_VAR_UNIT)
                set_reason(reason, reason_size, "$Unit is not available: this version does not read the caller's "
                           "systemd unit");
        else if (r == -ENODATA)
                set_reason(reason, reason_size, "%s is not available", formula_var_name(bad));
        else if (r == -EILSEQ && v)
                set_reason(reason, reason_size, "%s is \"%s\", which is not a scope token (RFC 6749 section 3.3: "
                           "printable ASCII except space, '\"' and '\\')", formula_var_name(bad), Q(v));
        else if (r == -E2BIG)
                set_reason(reason, reason_size, "the expanded scope would be longer than %d bytes",
                           FORMULA_SCOPE_MAX);
        else
                set_reason(reason, reason_size, "the formula cannot be expanded (%s)", strerror(-r));
        return r;
}

void *config_arena_alloc(struct config_arena **head, size_t n) {
        struct config_arena *a = *head;
        size_t need = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);

        if (need < n)
                return NULL;
        if (!a || a->size - a->used < need) {
                size_t size = need > CONFIG_ARENA_BLOCK / 4 ? need : CONFIG_ARENA_BLOCK;

                if (size > SIZE_MAX - sizeof *a)
                        return NULL;
                a = malloc(sizeof *a + size);
                if (!a)
                        return NULL;
                a->used = 0;
                a->size = size;
                if (need > CONFIG_ARENA_BLOCK / 4 && *head) {
                        /* A big one of its own: keep filling the current block. */
                        a->next = (*head)->next;
                        (*head)->next = a;
                } else {
                        a->next = *head;
                        *head = a;
                }
        }
        void *p = (char *) a->data + a->used;
        a->used += need;
        return memset(p, 0, n);
}

void config_arena_free(struct config_arena *head) {
        for (struct config_arena *next; head; head = next) {
                next = head->next;
                free(head);
        }
}

struct config *config_free(struct config *c) {
        if (!c)
                return NULL;
        if (c->arena) {
                /* Everything but the compiled formulas is in the arena. */
                for (size_t i = 0; i < c->n_credentials; i++)
                        if (c->credentials[i])
                                formula_free(c->credentials[i]->scope_formula);
                config_arena_free(c->arena);
                free(c);
                return NULL;
        }
        for (size_t i = 0; i < c->n_credentials; i++)
                config_credential_free(c->credentials[i]);
        free(c->credentials);
        free(c->path);
        free(c->socket);
        free(c->socket_group);
        free(c->module);
        config_strv_free(c->module_dirs);
        free(c->token);
        free(c->pin_source);
        free(c->ca_file);
        config_names_free(c->users, c->n_users);
        config_names_free(c->groups, c->n_groups);
        free(c);
        return NULL;
}

const struct config_credential *config_find_credential(const struct config *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_credentials; i++)
                if (strcmp(c->credentials[i]->name, name) == 0)
                        return c->credentials[i];
        return NULL;
}

void config_hsm_params(const struct config *c, struct hsm_params *ret) {
        *ret = (struct hsm_params) {
                .module = c->module,
                .module_dirs = (const char *const *) c->module_dirs, /* NULL: the default list */
                .token_uri = c->token,
                .pin_source = c->pin_source,
        };
}

const struct config_principal *config_find_principal(const struct config *c, const char *full_name) {
        if (!c || !full_name)
                return NULL;
        for (size_t i = 0; i < c->n_credentials; i++)
                for (size_t j = 0; j < c->credentials[i]->n_principals; j++)
                        if (strcmp(c->credentials[i]->principals[j]->full_name, full_name) == 0)
                                return c->credentials[i]->principals[j];
        return NULL;
}

static char *home_dir(void) {
        const char *home = secure_getenv("HOME");
        long size;

        if (home && home[0] == '/')
                return strdup(home);

        size = sysconf(_SC_GETPW_R_SIZE_MAX);
        if (size <= 0)
                size = 4096;
        for (;;) {
                _cleanup_free_ char *buf = malloc((size_t) size);
                struct passwd pw, *res = NULL;
                int r;

                if (!buf)
                        return NULL;
                r = getpwuid_r(geteuid(), &pw, buf, (size_t) size, &res);
                if (r == ERANGE && size < (1L << 24)) {
                        size *= 2;
                        continue;
                }
                if (r != 0 || !res || !pw.pw_dir || pw.pw_dir[0] != '/') {
                        errno = ENOENT;
                        return NULL;
                }
                return strdup(pw.pw_dir);
        }
}

char *config_default_path(void) {
        _cleanup_free_ char *home = NULL;
        const char *xdg;
        char *p;

        if (geteuid() == 0)
                return strdup(CREDAGENT_SYSCONFDIR "/credagent.conf");

        xdg = secure_getenv("XDG_CONFIG_HOME");
        if (xdg && xdg[0] == '/')
                return asprintf(&p, "%s/credagent/credagent.conf", xdg) < 0 ? NULL : p;

        home = home_dir();
        if (home)
                return asprintf(&p, "%s/.config/credagent/credagent.conf", home) < 0 ? NULL : p;
        if (errno == ENOMEM)
                return NULL;

        /* No home at all: the system file is the only sensible guess. */
        return strdup(CREDAGENT_SYSCONFDIR "/credagent.conf");
}

char *config_default_socket(void) {
        return client_default_socket();
}
