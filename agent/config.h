/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy/formula.h"
#include "hsm/hsm.h"
#include "policy/policy.h"

/* The configuration (DESIGN.md, Configuration): INI parsed with inih, the main file plus
 * conf.d/ *.conf beside it in name order.  A loaded struct config is immutable and
 * owns every string in it. */

enum client_auth {
        CLIENT_AUTH_BASIC, /* client_secret_basic, RFC 6749 §2.3.1 */
        CLIENT_AUTH_POST,  /* client_secret_post */
        CLIENT_AUTH_PRIVATE_KEY_JWT, /* private_key_jwt, RFC 7523 §2.2: a JWT signed in the token */
};

/* private_key_jwt: assertion_lifetime's default and maximum, in seconds. */
#define ASSERTION_LIFETIME_DEFAULT 60
#define ASSERTION_LIFETIME_MAX 300

/* refresh_at (percent) and refresh_margin (seconds): defaults and ranges. */
#define CONFIG_REFRESH_AT_DEFAULT 80
#define CONFIG_REFRESH_AT_MIN 50
#define CONFIG_REFRESH_AT_MAX 95
#define CONFIG_REFRESH_MARGIN_DEFAULT 60
#define CONFIG_REFRESH_MARGIN_MAX 86400

struct config_principal {
        char *name;                       /* "Batch" */
        char *full_name;                  /* "Billing_API.Batch" */
        struct config_credential *credential;
        struct policy_rule rule;          /* sequence + selectors */
        char *client_id;
        char *client_secret;              /* RFC 7512 URI of a CKO_DATA object, never the value;
                                             NULL with client_auth = private_key_jwt */
        /* client_auth = private_key_jwt only (NULL / HSM_ALG_NONE otherwise): */
        char *client_key;                 /* RFC 7512 URI of the signing key (CKO_PRIVATE_KEY) */
        char *key_id;                     /* the assertion's "kid", may be NULL */
        enum hsm_alg assertion_alg;       /* HSM_ALG_NONE: by the key (EC P-256 → ES256, RSA → RS256) */
        char *file;                       /* where the section starts, for messages */
        unsigned line;
};

struct config_credential {
        char *name;
        char *label;                      /* may be NULL */
        char *token_url;                  /* NULL when issuer is set */
        enum client_auth client_auth;
        char *scope;                      /* may be NULL: no scope parameter is sent; a formula's
                                           * source text ("{!…}") when scope_formula is set */
        struct formula *scope_formula;    /* the compiled formula when scope is one, else NULL
                                           * (a plain scope is sent as it is) */
        int *refresh_status;              /* HTTP statuses that also force a refresh (401 always does) */
        size_t n_refresh_status;
        bool allow_insecure_loopback;
        uint32_t default_ttl;             /* s; used when a token response has no expires_in */
        uint32_t max_ttl;                 /* s; a larger expires_in is clamped to this */
        uint32_t refresh_at;              /* percent of a token's lifetime after which it is refreshed
                                           * ahead (CONFIG_REFRESH_AT_MIN … _MAX); agent/tokcache.h */
        uint32_t refresh_margin;          /* s; refresh at least this long before expiry (at most a
                                           * quarter of the lifetime for short tokens) */
        uint32_t connect_timeout;         /* s */
        uint32_t timeout;                 /* s; whole token request */
        /* client_auth = private_key_jwt only: */
        char *assertion_audience;         /* the assertion's "aud"; NULL: token_url, or issuer */
        uint32_t assertion_lifetime;      /* s, exp - iat (1 … ASSERTION_LIFETIME_MAX) */
        /* Discovery (agent/discovery.h): exactly one of token_url and issuer is set. */
        char *issuer;                     /* an https URL without query or fragment, or NULL */
        /* Extra parameters of the token request, NULL when not configured: */
        char *audience;                   /* one "audience" parameter */
        char *resource;                   /* RFC 8707 absolute URIs without fragment, separated
                                           * by single spaces; one "resource" parameter each */
        char *token_params;               /* static pairs, oauth_token_params_parse()'s normal
                                           * form "key=value key=value" */
        struct config_principal **principals; /* sorted by ascending sequence */
        const struct policy_rule **rules;     /* rules[i] == &principals[i]->rule */
        size_t n_principals;
        char *file;
        unsigned line;
};

/* One user or group of the name tables below. */
struct config_name {
        uint32_t id;                      /* uid or gid */
        char *name;                       /* not empty, at most CONFIG_NAME_LEN_MAX bytes */
};

/* Caps on the name tables: entries per table, bytes per name (longer names are left out, so
 * their ids have no name), and bytes of both tables counted as on the wire (each name plus 8),
 * which keeps a config within one MSG_CONFIG frame.  More entries or bytes is a load error. */
#define CONFIG_NAMES_MAX 65536
#define CONFIG_NAME_LEN_MAX 256
#define CONFIG_NAMES_BYTES_MAX (640 * 1024)

struct config {
        char *path;                       /* main file as given */
        /* [agent] */
        char *socket;                     /* absolute path */
        char *socket_group;               /* may be NULL */
        gid_t socket_gid;                 /* resolved socket_group, valid if socket_group */
        char *module;                     /* may be NULL when the token URI has module-path= */
        char **module_dirs;               /* allow-list of directories, NULL-terminated */
        char *token;                      /* RFC 7512 token URI */
        char *pin_source;                 /* "file:PATH" or "credential:NAME" */
        char *ca_file;                    /* may be NULL: the system default */
        /* sections */
        struct config_credential **credentials; /* in file order */
        size_t n_credentials;
        /* The passwd and group databases as read at load time, for the $User.Name, $User.Group
         * and $User.Groups variables of scope formulas.  The front, which expands formulas,
         * cannot ask NSS itself: it is sandboxed without open() and socket(), and NSS may need
         * both (files, nscd, sssd); and the supervisor is not asked per request either.
         * Trade-off: a snapshot (getpwent()/getgrent(), plus the ids named in users= and
         * groups=, which NSS sources that do not enumerate still answer) costs memory and is
         * as old as the last load or reload, so a user or group added or renamed later has
         * its new name only after a SIGHUP; an id without a name in the snapshot makes the
         * request fail (never a guess).  Filled only when some formula uses those variables:
         * users for $User.Name, groups for $User.Group and $User.Groups.  Sorted by ascending
         * id, one entry per id: the first the database lists, as getpwuid()/getgrgid() do. */
        struct config_name *users;
        size_t n_users;
        struct config_name *groups;
        size_t n_groups;
        /* A decoded config (agent/config-wire.h) keeps every struct, array and string in one
         * arena, strings that repeat (file names, URIs, client ids) stored once: a process
         * that receives 10,000 principals holds about half of what one allocation each took.
         * NULL for a loaded config.  Either way config_free() frees all. */
        struct config_arena *arena;
};

/* Flags for config_load(). */
enum {
        /* Validate only [agent]; skip every other section without looking at it.
         * For credctl's secret commands, which run before principals are complete. */
        CONFIG_LOAD_AGENT_ONLY = 1 << 0,
};

/* Loads and validates PATH and then PATH's directory's conf.d/ *.conf in name order.
 * On success returns 0 and stores a new config in *RET (free with config_free()).
 * On failure returns a negative errno (-ENOENT/-EACCES for an unreadable main file,
 * -EINVAL for invalid contents, -ENOMEM) and, if RET_ERRORS is not NULL, stores there a
 * malloc()ed text of one line per problem found, each "FILE:LINE: message" naming the
 * section and key and quoting the value; the caller frees it.  Every problem in the files
 * is reported, not only the first.
 * Details: lines are sorted by file (load order) and line.  A problem with a whole file
 * (cannot be read, no [agent] section anywhere) is "FILE: message", without a line.  A
 * main file that cannot be read gives its errno (-ENOENT, -EACCES, -EISDIR, -EFBIG past
 * 1 MiB) with the message; an unreadable conf.d file is -EINVAL like any other problem.
 * A client_secret value, a PIN or a password in a URL is never quoted. */
int config_load(const char *path, unsigned flags, struct config **ret, char **ret_errors);

/* Frees C and everything in it.  Accepts NULL.  Returns NULL. */
struct config *config_free(struct config *c);

static inline void config_freep(struct config **c) {
        config_free(*c);
}

/* Returns the credential named NAME (exact, case-sensitive), or NULL. */
const struct config_credential *config_find_credential(const struct config *c, const char *name);

/* Returns the principal "CRED.NAME" given as FULL_NAME, or NULL. */
const struct config_principal *config_find_principal(const struct config *c, const char *full_name);

/* Fills *RET with what hsm_open() needs from C's [agent] section: module, module_dirs (the
 * default list when none is configured), token, pin_source.  The strings stay C's. */
void config_hsm_params(const struct config *c, struct hsm_params *ret);

/* The name of uid UID (or of group GID) in C's name tables, or NULL when it has none there. */
const char *config_user_name(const struct config *c, uid_t uid);
const char *config_group_name(const struct config *c, gid_t gid);

/* The scope to request for the caller PEER through principal P of configuration C: the
 * credential's scope, with a formula expanded for PEER (policy/formula.h).  Pure: no I/O.
 * $User.Name and $User.Group are the names of PEER's uid and gid in C's name tables;
 * $User.Groups the names of its gid and then of its supplementary groups (in the kernel's
 * order, each once), joined by single spaces; $User.Uid its uid in decimal; $Unit is never
 * available in this version; $Principal.Name and $Credential.Name are P's and its
 * credential's names.
 * Returns 0 and stores in *RET_SCOPE the scope: NULL when the credential has none, its plain
 * scope, or the expansion written to BUF (SIZE bytes; FORMULA_SCOPE_MAX + 1 always suffice).
 * On failure returns
 *   -ENODATA  a variable the formula uses is not available for PEER (a uid or gid without a
 *             name, more than PEER_GROUPS_MAX groups for $User.Groups, $Unit),
 *   -EILSEQ   a value is not a scope-token (RFC 6749 §3.3; for $User.Groups each name),
 *   -E2BIG    the expansion would be longer than FORMULA_SCOPE_MAX bytes or BUF,
 *   -EINVAL   a NULL argument,
 * and writes to REASON (REASON_SIZE bytes, if not NULL) an English sentence for the caller
 * and the log, with a bad value quoted and escaped (log_escape()); *RET_SCOPE is untouched. */
int config_scope_expand(const struct config *c, const struct config_principal *p, const struct peer *peer,
                        char *buf, size_t size, char *reason, size_t reason_size, const char **ret_scope);

/* The default config path: $XDG_CONFIG_HOME/credagent/credagent.conf (or
 * ~/.config/…) for a non-root user, CREDAGENT_SYSCONFDIR/credagent.conf for root.
 * Returns a malloc()ed string or NULL on ENOMEM. */
char *config_default_path(void);

/* The default socket path: $XDG_RUNTIME_DIR/credagent/agent.sock for a non-root user
 * with XDG_RUNTIME_DIR set, /run/credagent/agent.sock otherwise.  malloc()ed, NULL on ENOMEM. */
char *config_default_socket(void);
