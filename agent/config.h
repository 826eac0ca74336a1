/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy/policy.h"

/* The configuration (DESIGN.md, Configuration): INI parsed with inih, the main file plus
 * conf.d/ *.conf beside it in name order.  A loaded struct config is immutable and
 * owns every string in it. */

enum client_auth {
        CLIENT_AUTH_BASIC, /* client_secret_basic, RFC 6749 §2.3.1 */
        CLIENT_AUTH_POST,  /* client_secret_post */
};

struct config_principal {
        char *name;                       /* "Batch" */
        char *full_name;                  /* "Billing_API.Batch" */
        struct config_credential *credential;
        struct policy_rule rule;          /* sequence + selectors */
        char *client_id;
        char *client_secret;              /* RFC 7512 URI of a CKO_DATA object, never the value */
        char *file;                       /* where the section starts, for messages */
        unsigned line;
};

struct config_credential {
        char *name;
        char *label;                      /* may be NULL */
        char *token_url;
        enum client_auth client_auth;
        char *scope;                      /* may be NULL: no scope parameter is sent */
        int *refresh_status;              /* HTTP statuses that also force a refresh (401 always does) */
        size_t n_refresh_status;
        bool allow_insecure_loopback;
        uint32_t default_ttl;             /* s; used when a token response has no expires_in */
        uint32_t max_ttl;                 /* s; a larger expires_in is clamped to this */
        uint32_t connect_timeout;         /* s */
        uint32_t timeout;                 /* s; whole token request */
        struct config_principal **principals; /* sorted by ascending sequence */
        const struct policy_rule **rules;     /* rules[i] == &principals[i]->rule */
        size_t n_principals;
        char *file;
        unsigned line;
};

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

/* The default config path: $XDG_CONFIG_HOME/credagent/credagent.conf (or
 * ~/.config/…) for a non-root user, CREDAGENT_SYSCONFDIR/credagent.conf for root.
 * Returns a malloc()ed string or NULL on ENOMEM. */
char *config_default_path(void);

/* The default socket path: $XDG_RUNTIME_DIR/credagent/agent.sock for a non-root user
 * with XDG_RUNTIME_DIR set, /run/credagent/agent.sock otherwise.  malloc()ed, NULL on ENOMEM. */
char *config_default_socket(void);
