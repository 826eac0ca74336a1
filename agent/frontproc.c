/* SPDX-License-Identifier: ISC */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/random.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/config-wire.h"
#include "agent/frontproc.h"
#include "agent/procutil.h"
#include "agent/sandbox.h"
#include "ipc/msg.h"
#include "ipc/apierror.h"
#include "ipc/peer.h"
#include "log.h"
#include "policy/names.h"
#include "policy/policy.h"
#include "policy/scope.h"
#include "secmem.h"

/* Open connections at once that make their end a burst worth a malloc_trim(). */
#define FRONT_TRIM_AFTER_CONNECTIONS 64

/* A fetch the front asked net for. */
struct pending {
        uint64_t fetch_id;
        struct tokcache_entry *entry;
        char *scope;                    /* requested scope, reported when the IdP grants none */
        const struct config_principal *principal; /* for the log (its config outlives the fetch) */
        uint64_t seq;                   /* f->fetch_seq when it started */
        uint64_t started_ms;
        uint64_t deadline_ms;           /* CLOCK_BOOTTIME: answered idp_timeout after this */
};

/* A configuration and what still points into it.  The current one is f->gen; a reload
 * replaces it and puts it on f->retired, from where it is freed as soon as nothing can point
 * into it: no request routed with it is left (requests), and no fetch started before the
 * replacement is still pending (pending fetches, and the cache entries a reload detached
 * from the cache while their fetch ran, hold principals of it).  Without that, every reload
 * kept the old configuration for good: 2 MiB each at 10,000 principals. */
struct config_gen {
        struct config *cfg;
        atomic_uint requests;           /* requests routed with it and not yet freed */
        uint64_t retired_seq;           /* once replaced: fetches with a lower seq may point into it */
        struct config_gen *next;        /* on the retired list */
};

struct frontproc {
        _Atomic(struct config_gen *) gen; /* the current configuration; read once per request */
        struct config_gen *retired;     /* replaced ones something may still point into (event loop thread) */
        uint64_t fetch_seq;             /* fetches started so far (under lock) */
        struct tokcache *cache;
        struct MHD_Daemon *daemon;
        pthread_rwlock_t cfg_lock;      /* routing (read) against a reload's rebind + swap (write) */
        pthread_mutex_t lock;           /* the channels and the pending table */
        int net_fd, hsm_fd, super_fd;
        uint64_t next_fetch_id;
        struct pending pending[FRONT_MAX_PENDING];
        size_t n_pending;
        unsigned open_connections;      /* all of them (event loop thread only) */
        unsigned open_peak;             /* the most open at once since the last malloc_trim() */
        /* Open connections per caller uid (event loop thread only). */
        struct { uid_t uid; unsigned count; } conns_by_uid[FRONT_MAX_CONNECTIONS + 1];
        size_t n_conn_uids;
        unsigned long refused_connections;
};

/* Per connection: the peer as the kernel saw it at connect(). */
struct conn_ctx {
        int peer_error; /* 0 or the negative errno of peer_from_fd() */
        struct peer peer;
        bool counted;   /* included in conns_by_uid */
};

enum request_state {
        REQ_NEW,
        REQ_WAITING,  /* queued on a cache entry, connection suspended (or about to be) */
        REQ_ANSWERED, /* the answer is in; queue it */
};

/* Per request. */
struct request {
        struct tokcache_waiter waiter; /* first: the cache hands it back */
        struct MHD_Connection *conn;
        pthread_mutex_t lock;          /* state and suspended, between the loop and fetch threads */
        enum request_state state;
        bool suspended;
        struct tokcache_answer answer;
        const struct config *cfg;      /* the configuration this request was routed with, */
        struct config_gen *gen;        /* which it holds a reference to */
        const struct config_principal *principal;
        uint64_t started_ms;
        size_t body_len;
        bool body_too_large;
        char body[FRONT_MAX_BODY + 1];
};

static void request_free(struct request *req) {
        if (!req)
                return;
        if (req->gen)
                atomic_fetch_sub(&req->gen->requests, 1);
        tokcache_answer_clear(&req->answer);
        pthread_mutex_destroy(&req->lock);
        free(req);
}

/* Queues a JSON response, with a Retry-After header when RETRY_AFTER (seconds) is not 0.  The
 * body may hold a token: our copy is wiped after MHD copied it. */
static enum MHD_Result queue_json_retry(struct MHD_Connection *conn, unsigned status, struct json_object *obj,
                                        uint32_t retry_after) {
        size_t len;
        const char *text = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len);
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, (void *) text, MHD_RESPMEM_MUST_COPY);
        secure_wipe((void *) text, len);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store"); /* RFC 6749 §5.1 */
        MHD_add_response_header(resp, "Pragma", "no-cache");
        if (retry_after > 0) {
                char v[16];

                snprintf(v, sizeof v, "%" PRIu32, retry_after);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
        }
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status, struct json_object *obj) {
        return queue_json_retry(conn, status, obj, 0);
}

/* An error answer; RETRY_AFTER (s, 0: none): while the key backs off (agent/tokcache.h). */
static enum MHD_Result queue_error_retry(struct MHD_Connection *conn, enum api_error e, const char *idp_error,
                                         const char *description, uint32_t retry_after) {
        struct json_object *o = json_object_new_object();
        enum MHD_Result ret;

        json_object_object_add(o, "error", json_object_new_string(api_error_name(e)));
        if (description && *description)
                json_object_object_add(o, "error_description", json_object_new_string(description));
        if (idp_error && *idp_error)
                json_object_object_add(o, "idp_error", json_object_new_string(idp_error));
        ret = queue_json_retry(conn, api_error_status(e), o, retry_after);
        json_object_put(o);
        return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, enum api_error e, const char *idp_error,
                                   const char *description) {
        return queue_error_retry(conn, e, idp_error, description, 0);
}

static const char *outcome_name(const struct tokcache_answer *a) {
        if (a->error != API_OK)
                return api_error_name(a->error);
        return a->from_cache ? "hit" : "fetched";
}

static enum MHD_Result queue_token(struct request *req, const struct conn_ctx *cc) {
        const struct tokcache_answer *a = &req->answer;
        const struct config_principal *p = req->principal;
        uint64_t now = now_boottime_ms();
        char fp[9] = "-";

        if (a->error == API_OK && a->expires_at <= now) {
                /* Expired between the answer and now (a very short token): never served. */
                tokcache_answer_clear(&req->answer);
                req->answer.error = API_IDP_ERROR;
                snprintf(req->answer.description, sizeof req->answer.description,
                         "the token endpoint issued a token that expired before it could be served");
        }
        if (a->error == API_OK && a->fingerprint[0])
                memcpy(fp, a->fingerprint, sizeof fp); /* net computed it once, with the fetch */
        log_info("token uid=%u pid=%d credential=%s principal=%s outcome=%s%s%s fp=%s ms=%llu",
                 (unsigned) cc->peer.uid, (int) cc->peer.pid, p->credential->name, p->name, outcome_name(a),
                 a->idp_error[0] ? " idp_error=" : "", a->idp_error, fp,
                 (unsigned long long) (now - req->started_ms));
        if (a->error != API_OK)
                return queue_error_retry(req->conn, a->error, a->idp_error, a->description, a->retry_after);

        uint64_t remaining_ms = a->expires_at - now;
        struct json_object *o = json_object_new_object();
        struct timespec rt;
        enum MHD_Result ret;

        clock_gettime(CLOCK_REALTIME, &rt);
        json_object_object_add(o, "access_token", json_object_new_string(a->access_token));
        json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
        json_object_object_add(o, "expires_in", json_object_new_int64((int64_t) (remaining_ms / 1000)));
        json_object_object_add(o, "expires_at", json_object_new_int64((int64_t) rt.tv_sec + (int64_t) (remaining_ms / 1000)));
        json_object_object_add(o, "scope", a->scope ? json_object_new_string(a->scope) : NULL);
        json_object_object_add(o, "principal", json_object_new_string(p->name));
        if (a->stale)
                /* Its refresh failed (the IdP is down or refusing); it is still valid. */
                json_object_object_add(o, "stale", json_object_new_boolean(1));
        ret = queue_json(req->conn, 200, o);
        json_object_put(o);
        return ret;
}

/* Called by the cache from a fetch thread. */
static void request_done(struct tokcache_waiter *w, const struct tokcache_answer *answer) {
        struct request *req = (struct request *) w;
        struct MHD_Connection *conn;
        bool resume;

        pthread_mutex_lock(&req->lock);
        if (tokcache_answer_copy(answer, &req->answer) < 0) {
                req->answer.error = API_SERVER_BUSY;
                snprintf(req->answer.description, sizeof req->answer.description, "out of memory");
        }
        req->answer.from_cache = false;
        req->state = REQ_ANSWERED;
        resume = req->suspended;
        req->suspended = false;
        conn = req->conn;
        pthread_mutex_unlock(&req->lock);
        /* After the resume the event loop may answer and free REQ at once: not a byte of it
         * is touched from here on, and the lock is already released. */
        if (resume)
                MHD_resume_connection(conn);
}

/* Parses the decimal ?min_ttl=S.  Returns 0, or -EINVAL. */
static int parse_seconds(const char *s, uint32_t max, uint32_t *ret) {
        uint64_t v = 0;

        if (!s || !*s || strlen(s) > 10)
                return -EINVAL;
        for (const char *c = s; *c; c++) {
                if (*c < '0' || *c > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*c - '0');
        }
        if (v > max)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static int is_refresh_status(const struct config_credential *cred, int64_t status) {
        if (status == 401)
                return true;
        for (size_t i = 0; i < cred->n_refresh_status; i++)
                if (cred->refresh_status[i] == status)
                        return true;
        return false;
}

/* A refresh body's optional "access_token_fp": TOKCACHE_FP_LEN hex digits, stored lower-case in
 * RET (TOKCACHE_FP_LEN + 1 bytes; left "" when absent or null).  Returns 0, or -EINVAL for
 * anything else. */
static int refresh_fingerprint(struct json_object *body, char *ret) {
        struct json_object *v;
        const char *s;

        if (!json_object_object_get_ex(body, "access_token_fp", &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) != TOKCACHE_FP_LEN)
                return -EINVAL;
        s = json_object_get_string(v);
        for (size_t i = 0; i < TOKCACHE_FP_LEN; i++) {
                char c = s[i];

                if (c >= 'A' && c <= 'F')
                        c = (char) (c - 'A' + 'a');
                else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return -EINVAL;
                ret[i] = c;
        }
        ret[TOKCACHE_FP_LEN] = '\0';
        return 0;
}

/* The scope to ask for on behalf of the caller: the credential's, with a formula expanded for
 * this caller (config_scope_expand(), from the name tables read at load time: the front
 * cannot ask NSS).  Stores it in *RET_SCOPE (may point into BUF) and returns 0; when the
 * formula cannot be expanded for this caller, queues 403 access_denied with the reason,
 * logs it, and returns -1 with *RET_RESULT set to what the handler returns. */
static int expand_scope(const struct request *req, const struct conn_ctx *cc, char *buf, size_t size,
                        const char **ret_scope, enum MHD_Result *ret_result) {
        const struct config_principal *p = req->principal;
        char reason[384], description[512];
        int r;

        r = config_scope_expand(req->cfg, p, &cc->peer, buf, size, reason, sizeof reason, ret_scope);
        if (r >= 0)
                return 0;
        /* The reason quotes a bad value escaped (log_escape()), so it is safe in a log line. */
        log_notice("token uid=%u gid=%u pid=%d credential=%s principal=%s outcome=access_denied "
                   "reason=scope-formula: %s", (unsigned) cc->peer.uid, (unsigned) cc->peer.gid, (int) cc->peer.pid,
                   p->credential->name, p->name, reason);
        snprintf(description, sizeof description, "the scope formula cannot be expanded for this caller: %s", reason);
        *ret_result = queue_error(req->conn, API_ACCESS_DENIED, NULL, description);
        return -1;
}

static enum MHD_Result count_scope_args(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        unsigned *n = cls;

        if (key && strcmp(key, "scope") == 0)
                (*n)++;
        return MHD_YES;
}

/* ?scope=…: narrows *SCOPE (the configured or expanded scope) to the part the caller asks for
 * (policy/scope.h: a subset of its scope-tokens), stored in *SCOPE (may point into BUF, SIZE
 * bytes) and cached under its own key.  Returns 0, or queues 400 invalid_request (a malformed
 * or repeated scope) or 403 access_denied (a wider one), logs it, and returns -1 with
 * *RET_RESULT set to what the handler returns. */
static int narrow_scope(const struct request *req, const struct conn_ctx *cc, const char **scope, char *buf,
                        size_t size, enum MHD_Result *ret_result) {
        const struct config_principal *p = req->principal;
        const char *requested;
        unsigned n = 0;
        char q[4 * 64 + 8];
        int r;

        (void) MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, count_scope_args, &n);
        if (n == 0)
                return 0;
        requested = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "scope");
        r = n > 1 || !requested ? -EINVAL : scope_narrow(*scope, requested, buf, size, scope);
        if (r >= 0)
                return 0;
        if (requested)
                log_escape(requested, strlen(requested), 64, q, sizeof q);
        else
                q[0] = '\0';
        log_notice("token uid=%u pid=%d credential=%s principal=%s outcome=%s reason=scope requested=\"%s\"",
                   (unsigned) cc->peer.uid, (int) cc->peer.pid, p->credential->name, p->name,
                   r == -EPERM ? "access_denied" : r == -ENOMEM ? "server_busy" : "invalid_request", q);
        if (r == -EPERM)
                *ret_result = queue_error(req->conn, API_ACCESS_DENIED, NULL,
                                          "the requested scope is not within the credential's scope");
        else if (r == -ENOMEM)
                *ret_result = queue_error(req->conn, API_SERVER_BUSY, NULL, "out of memory");
        else
                *ret_result = queue_error(req->conn, API_INVALID_REQUEST, NULL,
                                          "scope must be given once, as scope tokens (RFC 6749 section 3.3) "
                                          "separated by single spaces, at most 4096 bytes");
        return -1;
}

/* GET /v1/token/CRED and POST /v1/token/CRED/refresh. */
static enum MHD_Result handle_token(struct frontproc *f, struct request *req, const struct conn_ctx *cc,
                                    const char *cred_name, bool refresh) {
        const struct config_credential *cred;
        char scope_buf[FORMULA_SCOPE_MAX + 1], narrow_buf[FORMULA_SCOPE_MAX + 1];
        const char *scope = NULL;
        enum MHD_Result result;
        uint32_t min_ttl = 0;
        char served_fp[TOKCACHE_FP_LEN + 1] = ""; /* refresh: the refused token's fingerprint */
        size_t idx;
        int r;

        cred = config_find_credential(req->cfg, cred_name);
        if (!cred) {
                char q[96];
                log_info("token uid=%u pid=%d credential=\"%s\" outcome=unknown_credential", (unsigned) cc->peer.uid,
                         (int) cc->peer.pid, log_escape(cred_name, strlen(cred_name), 64, q, sizeof q));
                return queue_error(req->conn, API_UNKNOWN_CREDENTIAL, NULL, "no such credential");
        }
        if (policy_select(cred->rules, cred->n_principals, &cc->peer, &idx) < 0) {
                log_notice("token uid=%u gid=%u pid=%d credential=%s outcome=access_denied reason=%s",
                           (unsigned) cc->peer.uid, (unsigned) cc->peer.gid, (int) cc->peer.pid, cred->name,
                           policy_peer_untrusted(&cc->peer) ? "peer-from-another-namespace" : "no-principal-matches");
                return queue_error(req->conn, API_ACCESS_DENIED, NULL, "the caller is not allowed to use this credential");
        }
        req->principal = cred->principals[idx];
        if (expand_scope(req, cc, scope_buf, sizeof scope_buf, &scope, &result) < 0)
                return result;
        if (narrow_scope(req, cc, &scope, narrow_buf, sizeof narrow_buf, &result) < 0)
                return result;

        if (refresh) {
                struct json_object *body, *st;
                struct json_tokener *tok;
                int64_t status;

                if (req->body_too_large)
                        return queue_error(req->conn, API_INVALID_REQUEST, NULL, "request body too large");
                tok = json_tokener_new_ex(4);
                body = tok ? json_tokener_parse_ex(tok, req->body, (int) req->body_len) : NULL;
                if (body && json_tokener_get_parse_end(tok) != req->body_len)
                        body = (json_object_put(body), NULL);
                json_tokener_free(tok);
                if (!body || !json_object_is_type(body, json_type_object) ||
                    !json_object_object_get_ex(body, "status", &st) || !json_object_is_type(st, json_type_int)) {
                        json_object_put(body);
                        return queue_error(req->conn, API_INVALID_REQUEST, NULL,
                                           "expected a JSON body {\"status\": N} with the HTTP status the API answered");
                }
                status = json_object_get_int64(st);
                /* Optional: which token was refused, as its fingerprint (the first 8 hex digits of
                 * its SHA-256), so that only that one is dropped. */
                r = refresh_fingerprint(body, served_fp);
                json_object_put(body);
                if (r < 0)
                        return queue_error(req->conn, API_INVALID_REQUEST, NULL,
                                           "access_token_fp must be the first 8 hex digits of the SHA-256 of the "
                                           "refused access token");
                if (!is_refresh_status(cred, status)) {
                        char d[128];
                        snprintf(d, sizeof d, "status %lld does not force a refresh for this credential",
                                 (long long) status);
                        log_info("refresh uid=%u pid=%d credential=%s principal=%s status=%lld outcome=not_refreshable",
                                 (unsigned) cc->peer.uid, (int) cc->peer.pid, cred->name, req->principal->name,
                                 (long long) status);
                        return queue_error(req->conn, API_NOT_REFRESHABLE, NULL, d);
                }
        } else {
                const char *s = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "min_ttl");
                if (s && parse_seconds(s, FRONT_MAX_MIN_TTL, &min_ttl) < 0)
                        return queue_error(req->conn, API_INVALID_REQUEST, NULL,
                                           "min_ttl must be a number of seconds from 0 to 86400");
        }

        req->waiter.done = request_done;
        if (refresh)
                r = tokcache_force_refresh(f->cache, req->principal, scope, served_fp[0] ? served_fp : NULL,
                                           req->started_ms, &req->waiter, &req->answer);
        else
                r = tokcache_get(f->cache, req->principal, scope, min_ttl, false, req->started_ms, &req->waiter,
                                 &req->answer);
        if (r == 0)
                return queue_token(req, cc);
        if (r == -EINPROGRESS) {
                pthread_mutex_lock(&req->lock);
                if (req->state == REQ_ANSWERED) {
                        /* The fetch finished before we got here. */
                        pthread_mutex_unlock(&req->lock);
                        return queue_token(req, cc);
                }
                req->state = REQ_WAITING;
                req->suspended = true;
                MHD_suspend_connection(req->conn);
                pthread_mutex_unlock(&req->lock);
                return MHD_YES;
        }
        req->answer = (struct tokcache_answer) { .error = r == -ENODEV ? API_HSM_UNAVAILABLE : API_SERVER_BUSY };
        snprintf(req->answer.description, sizeof req->answer.description, "%s",
                 r == -ENODEV    ? "the hsm process is restarting, retry" :
                 r == -ENETDOWN  ? "the network process is restarting, retry" :
                 r == -ECANCELED ? "the agent is shutting down" :
                 r == -EBUSY     ? "too many token requests in flight, retry later" :
                                   "the token cache is full");
        return queue_token(req, cc);
}

/* GET /v1/whoami.  Numbers only: the front is sandboxed without NSS (a name lookup may open
 * files or an nscd socket); credctl whoami adds the names on the caller's side. */
static enum MHD_Result handle_whoami(struct frontproc *f, struct request *req, const struct conn_ctx *cc) {
        struct json_object *o = json_object_new_object(), *groups = json_object_new_array(),
                           *principals = json_object_new_object();
        enum MHD_Result ret;

        json_object_object_add(o, "uid", json_object_new_int64(cc->peer.uid));
        json_object_object_add(o, "gid", json_object_new_int64(cc->peer.gid));
        json_object_object_add(o, "pid", json_object_new_int64(cc->peer.pid));
        for (size_t i = 0; i < cc->peer.n_groups; i++)
                json_object_array_add(groups, json_object_new_int64(cc->peer.groups[i]));
        json_object_object_add(o, "groups", groups);
        json_object_object_add(o, "unit", NULL); /* needs SO_PEERPIDFD: not read by this version */
        for (size_t i = 0; i < req->cfg->n_credentials; i++) {
                const struct config_credential *cred = req->cfg->credentials[i];
                size_t idx;

                if (policy_select(cred->rules, cred->n_principals, &cc->peer, &idx) == 0)
                        json_object_object_add(principals, cred->name,
                                               json_object_new_string(cred->principals[idx]->name));
        }
        json_object_object_add(o, "principals", principals);
        log_info("whoami uid=%u pid=%d outcome=ok", (unsigned) cc->peer.uid, (int) cc->peer.pid);
        ret = queue_json(req->conn, 200, o);
        json_object_put(o);
        return ret;
}

static enum MHD_Result route(struct frontproc *f, struct request *req, const struct conn_ctx *cc, const char *url,
                             const char *method) {
        static const char token_prefix[] = "/v1/token/";
        bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
        bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

        if (strcmp(url, "/v1/whoami") == 0) {
                if (!get)
                        return queue_error(req->conn, API_METHOD_NOT_ALLOWED, NULL, "use GET");
                return handle_whoami(f, req, cc);
        }
        if (strncmp(url, token_prefix, sizeof token_prefix - 1) == 0) {
                const char *rest = url + sizeof token_prefix - 1;
                const char *slash = strchr(rest, '/');
                char name[NAME_MAX_LEN + 1];
                size_t n = slash ? (size_t) (slash - rest) : strlen(rest);
                bool refresh = false;

                if (slash) {
                        if (strcmp(slash, "/refresh") != 0)
                                return queue_error(req->conn, API_NOT_FOUND, NULL, "no such path");
                        refresh = true;
                }
                if (n == 0 || n > NAME_MAX_LEN)
                        return queue_error(req->conn, API_UNKNOWN_CREDENTIAL, NULL, "no such credential");
                memcpy(name, rest, n);
                name[n] = '\0';
                if (refresh ? !post : !get)
                        return queue_error(req->conn, API_METHOD_NOT_ALLOWED, NULL, refresh ? "use POST" : "use GET");
                return handle_token(f, req, cc, name, refresh);
        }
        return queue_error(req->conn, API_NOT_FOUND, NULL, "no such path");
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
        struct frontproc *f = cls;
        struct request *req = *con_cls;
        const union MHD_ConnectionInfo *ci;
        const struct conn_ctx *cc;

        if (!req) {
                req = calloc(1, sizeof *req);
                if (!req)
                        return MHD_NO;
                pthread_mutex_init(&req->lock, NULL);
                req->conn = conn;
                req->started_ms = now_boottime_ms();
                *con_cls = req;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                if (n > FRONT_MAX_BODY - req->body_len) {
                        req->body_too_large = true;
                        n = 0;
                }
                memcpy(req->body + req->body_len, upload_data, n);
                req->body_len += n;
                req->body[req->body_len] = '\0';
                *upload_data_size = 0;
                return MHD_YES;
        }

        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        cc = ci ? ci->socket_context : NULL;
        if (!cc || cc->peer_error < 0) {
                log_warning("request refused: the peer credentials of the connection could not be read");
                return queue_error(conn, API_ACCESS_DENIED, NULL, "the caller could not be identified");
        }

        switch (req->state) {
        case REQ_ANSWERED:
                return queue_token(req, cc);
        case REQ_WAITING:
                /* Woken without an answer: cannot happen, the cache answers every waiter. */
                return MHD_YES;
        case REQ_NEW:
                break;
        }
        if (policy_peer_untrusted(&cc->peer)) {
                log_notice("request uid=%u pid=%d outcome=access_denied reason=peer-from-another-namespace",
                           (unsigned) cc->peer.uid, (int) cc->peer.pid);
                return queue_error(conn, API_ACCESS_DENIED, NULL, "the caller is not allowed to use this agent");
        }
        /* Route under the configuration in force now, and keep a reload from swapping it (and
         * rebinding the cache) between the policy decision and the cache lookup: a principal
         * of a replaced configuration would key a new cache entry and cause a needless fetch. */
        enum MHD_Result ret;

        pthread_rwlock_rdlock(&f->cfg_lock);
        {
                /* The configuration in force now (this may be a later call for the same request,
                 * after a reload): the request holds a reference to it. */
                struct config_gen *g = atomic_load(&f->gen);

                if (req->gen != g) {
                        if (req->gen)
                                atomic_fetch_sub(&req->gen->requests, 1);
                        atomic_fetch_add(&g->requests, 1);
                        req->gen = g;
                }
                req->cfg = g->cfg;
        }
        ret = route(f, req, cc, url, method);
        pthread_rwlock_unlock(&f->cfg_lock);
        return ret;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
        struct request *req = *con_cls;

        /* A request still queued on a cache entry cannot end here: suspended connections are
         * not closed by libmicrohttpd, and the shutdown order completes every fetch first. */
        request_free(req);
        *con_cls = NULL;
}

/* The open-connection counter of UID, created at 0.  A plain array of the uids that hold
 * connections: there are never more of them than connections, and one scan per accept is
 * nothing next to the accept itself.  NULL only if the array is full (it cannot be). */
static unsigned *uid_conns(struct frontproc *f, uid_t uid) {
        for (size_t i = 0; i < f->n_conn_uids; i++)
                if (f->conns_by_uid[i].uid == uid)
                        return &f->conns_by_uid[i].count;
        if (f->n_conn_uids >= ELEMENTSOF(f->conns_by_uid))
                return NULL;
        f->conns_by_uid[f->n_conn_uids] = (typeof(f->conns_by_uid[0])) { .uid = uid };
        return &f->conns_by_uid[f->n_conn_uids++].count;
}

/* Drops UID's counter once it is back at 0. */
static void uid_conns_release(struct frontproc *f, uid_t uid) {
        for (size_t i = 0; i < f->n_conn_uids; i++)
                if (f->conns_by_uid[i].uid == uid) {
                        if (f->conns_by_uid[i].count > 0 && --f->conns_by_uid[i].count == 0)
                                f->conns_by_uid[i] = f->conns_by_uid[--f->n_conn_uids];
                        return;
                }
}

static void connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
        struct frontproc *f = cls;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                struct conn_ctx *cc = calloc(1, sizeof *cc);
                unsigned *n;

                if (++f->open_connections > f->open_peak)
                        f->open_peak = f->open_connections;
                if (!cc)
                        return; /* no context: every request on it is refused */
                cc->peer_error = ci ? peer_from_fd(ci->connect_fd, &cc->peer) : -EBADF;
                if (cc->peer_error < 0)
                        log_warning_errno(cc->peer_error, "Failed to read the peer credentials of a connection: %m");
                else if ((n = uid_conns(f, cc->peer.uid))) {
                        if (*n >= FRONT_MAX_CONNECTIONS_PER_UID) {
                                /* One caller may hold at most half the connections (a slow sender
                                 * holds one for the whole idle timeout): this one is closed at once. */
                                if (f->refused_connections++ % 100 == 0)
                                        log_notice("connection of uid %u refused: it holds %u connections already "
                                                   "(%lu refused so far)", (unsigned) cc->peer.uid, *n,
                                                   f->refused_connections);
                                (void) shutdown(ci->connect_fd, SHUT_RDWR);
                        } else {
                                (*n)++;
                                cc->counted = true;
                        }
                }
                *socket_context = cc;
        } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                struct conn_ctx *cc = *socket_context;

                if (cc && cc->counted)
                        uid_conns_release(f, cc->peer.uid);
                free(cc);
                *socket_context = NULL;
                /* The last connection of a burst is gone: give back the heap pages its
                 * connections freed (glibc returns only the top of the heap by itself; 1,000
                 * connections leave ~10 MiB).  Only after a burst: a caller that opens one
                 * connection per request (a shell loop) must not pay a heap walk each time. */
                if (--f->open_connections == 0 && f->open_peak >= FRONT_TRIM_AFTER_CONNECTIONS) {
                        (void) malloc_trim(0);
                        f->open_peak = 0;
                }
        }
}

/* libmicrohttpd's MHD_OPTION_UNESCAPE_CALLBACK for the path and query values: %XX decoded in
 * place, except %00, which stays as the three characters: a NUL would cut a credential name or
 * a parameter short ("/v1/token/Demo%00junk" served Demo).  Returns the new length. */
static size_t unescape_no_nul(void *cls, struct MHD_Connection *conn, char *s) {
        char *out = s;

        for (const char *in = s; *in;) {
                if (in[0] == '%' && isxdigit((unsigned char) in[1]) && isxdigit((unsigned char) in[2])) {
                        char hex[3] = { in[1], in[2], 0 };
                        char c = (char) strtol(hex, NULL, 16);
                        if (c != '\0') {
                                *out++ = c;
                                in += 3;
                                continue;
                        }
                }
                *out++ = *in++;
        }
        *out = '\0';
        return (size_t) (out - s);
}

static void _printf_(2, 0) mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];

        vsnprintf(buf, sizeof buf, fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("libmicrohttpd: %s", buf);
}

/* With f->lock held: removes pending[i] and returns its entry and scope. */
static struct pending pending_take(struct frontproc *f, size_t i) {
        struct pending p = f->pending[i];

        f->pending[i] = f->pending[--f->n_pending];
        return p;
}

/* The cache's fetch function (tokcache_fetch_fn), called with the cache lock held, on the
 * event loop thread: tells hsm which secret net may have for this fetch, then asks net.
 * Never blocks (the channels are non-blocking). */
static int front_fetch_start(void *userdata, struct tokcache_entry *e, const struct config_principal *p,
                             const char *scope) {
        struct frontproc *f = userdata;
        const struct config_credential *cred = p->credential;
        /* private_key_jwt: hsm may sign, for this fetch only, an assertion of this client for
         * this audience (the token endpoint unless configured); otherwise net may read the
         * secret. */
        bool jwt = cred->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT;
        char *audience = jwt ? (cred->assertion_audience ?: cred->token_url ?: cred->issuer) : NULL;
        struct msg_grant g = {
                .client_secret_uri = jwt ? NULL : p->client_secret,
                .client_key_uri = jwt ? p->client_key : NULL,
                .client_id = jwt ? p->client_id : NULL,
                .audience = audience,
                .assertion_alg = jwt ? (uint8_t) p->assertion_alg : 0,
        };
        struct msg_fetch m = {
                .token_url = cred->token_url,
                .client_auth = (uint8_t) cred->client_auth,
                .client_id = p->client_id,
                .scope = (char *) scope,
                .client_secret_uri = jwt ? NULL : p->client_secret,
                .allow_insecure_loopback = cred->allow_insecure_loopback,
                .connect_timeout = cred->connect_timeout,
                .timeout = cred->timeout,
                .default_ttl = cred->default_ttl,
                .max_ttl = cred->max_ttl,
                .client_key_uri = jwt ? p->client_key : NULL,
                .assertion_audience = audience,
                .assertion_lifetime = jwt ? cred->assertion_lifetime : 0,
                .key_id = jwt ? p->key_id : NULL,
                .issuer = cred->issuer,
                .audience = cred->audience,
                .resource = cred->resource,
                .token_params = cred->token_params,
        };
        char *scope_copy = NULL;
        struct buf b;
        int r;

        if (scope && !(scope_copy = strdup(scope)))
                return -ENOMEM;
        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        pthread_mutex_lock(&f->lock);
        if (f->hsm_fd < 0)
                r = -ENODEV;
        else if (f->net_fd < 0)
                r = -ENETDOWN;
        else if (f->n_pending >= FRONT_MAX_PENDING)
                r = -EBUSY;
        else {
                g.fetch_id = m.fetch_id = f->next_fetch_id++;
                r = msg_grant_encode(&g, &b);
                if (r == 0 && (r = msg_send(f->hsm_fd, &b, -1)) < 0)
                        r = r == -EAGAIN ? -EBUSY : -ENODEV;
                buf_reset(&b);
                if (r == 0 && (r = msg_fetch_encode(&m, &b)) == 0 && (r = msg_send(f->net_fd, &b, -1)) < 0)
                        r = r == -EAGAIN ? -EBUSY : -ENETDOWN;
                if (r == 0)
                        f->pending[f->n_pending++] = (struct pending) {
                                .fetch_id = m.fetch_id,
                                .entry = e,
                                .scope = TAKE_PTR(scope_copy),
                                .principal = p,
                                .seq = f->fetch_seq++,
                                .started_ms = now_boottime_ms(),
                                .deadline_ms = now_boottime_ms() + (uint64_t) cred->timeout * 1000 +
                                               FRONT_FETCH_GRACE_MS,
                        };
        }
        pthread_mutex_unlock(&f->lock);
        buf_done(&b);
        free(scope_copy);
        return r;
}

/* Logs the fetch's outcome (one line per fetch: credential, principal, outcome, the IdP's
 * status and error, the token's fingerprint) and hands the answer to the cache. */
static void complete_pending(struct frontproc *f, struct pending *p, struct tokcache_answer *a,
                             unsigned http_status) {
        uint64_t now = now_boottime_ms();
        char fp[9] = "-";

        if (a->error == API_OK && a->fingerprint[0])
                memcpy(fp, a->fingerprint, sizeof fp);
        if (a->error == API_OK)
                log_info("fetch credential=%s principal=%s outcome=ok http=%u expires_in=%llu fp=%s ms=%llu",
                         p->principal->credential->name, p->principal->name, http_status,
                         (unsigned long long) ((a->expires_at - now) / 1000), fp,
                         (unsigned long long) (now - p->started_ms));
        else
                log_warning("fetch credential=%s principal=%s outcome=%s%s%s http=%u ms=%llu: %s",
                            p->principal->credential->name, p->principal->name, api_error_name(a->error),
                            a->idp_error[0] ? " idp_error=" : "", a->idp_error, http_status,
                            (unsigned long long) (now - p->started_ms), a->description);
        tokcache_complete(f->cache, p->entry, a, now);
        free(p->scope);
}

/* Ends every pending fetch with error E (the net process went away). */
static void fail_all_pending(struct frontproc *f, enum api_error e, const char *description) {
        for (;;) {
                struct tokcache_answer a = { .error = e };
                struct pending p;

                pthread_mutex_lock(&f->lock);
                if (f->n_pending == 0) {
                        pthread_mutex_unlock(&f->lock);
                        return;
                }
                p = pending_take(f, f->n_pending - 1);
                pthread_mutex_unlock(&f->lock);
                snprintf(a.description, sizeof a.description, "%s", description);
                complete_pending(f, &p, &a, 0);
        }
}

/* Ends the pending fetches whose deadline passed; returns ms until the next deadline, or -1. */
static int expire_pending(struct frontproc *f) {
        uint64_t now = now_boottime_ms(), next = UINT64_MAX;

        for (;;) {
                struct tokcache_answer a = { .error = API_IDP_TIMEOUT };
                struct pending p;
                bool found = false;

                pthread_mutex_lock(&f->lock);
                for (size_t i = 0; i < f->n_pending; i++)
                        if (f->pending[i].deadline_ms <= now) {
                                p = pending_take(f, i);
                                found = true;
                                break;
                        }
                if (!found)
                        for (size_t i = 0; i < f->n_pending; i++)
                                if (f->pending[i].deadline_ms < next)
                                        next = f->pending[i].deadline_ms;
                pthread_mutex_unlock(&f->lock);
                if (!found)
                        break;
                log_warning("fetch %llu: no answer from the network process in time", (unsigned long long) p.fetch_id);
                snprintf(a.description, sizeof a.description, "the token request did not finish in time");
                complete_pending(f, &p, &a, 0);
        }
        return next == UINT64_MAX ? -1 : (int) (next - now > 60000 ? 60000 : next - now);
}

static void handle_fetch_done(struct frontproc *f, struct msg_fetch_done *d) {
        struct tokcache_answer a = { .error = (enum api_error) d->error };
        struct pending p;
        bool found = false;

        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n_pending; i++)
                if (f->pending[i].fetch_id == d->fetch_id) {
                        p = pending_take(f, i);
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&f->lock);
        if (!found) {
                log_debug("FETCH_DONE for unknown fetch %llu ignored", (unsigned long long) d->fetch_id);
                return;
        }
        if (a.error == API_OK) {
                if (!d->access_token || d->expires_in == 0) {
                        a.error = API_IDP_ERROR;
                        snprintf(a.description, sizeof a.description, "the network process sent no usable token");
                } else {
                        a.access_token = d->access_token; /* borrowed: the cache copies */
                        memcpy(a.fingerprint, d->fingerprint, sizeof a.fingerprint);
                        a.scope = d->scope ? d->scope : p.scope;
                        a.expires_at = now_boottime_ms() + (uint64_t) d->expires_in * 1000;
                }
        } else {
                snprintf(a.idp_error, sizeof a.idp_error, "%s", d->idp_error ? d->idp_error : "");
                snprintf(a.description, sizeof a.description, "%s", d->description ? d->description : "");
                a.retry_after = d->retry_after;
        }
        complete_pending(f, &p, &a, d->http_status);
}

static void handle_net(struct frontproc *f, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                struct msg_fetch_done d = {};
                int r = msg_recv(f->net_fd, CHAN_FRONT_NET, false, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return;
                if (r == 0 && fr.type == MSG_HELLO)
                        r = proc_check_hello(&fr);
                else if (r == 0 && fr.type == MSG_FETCH_DONE) {
                        r = msg_fetch_done_decode(fr.payload, fr.len, &d);
                        if (r == 0)
                                handle_fetch_done(f, &d);
                        msg_fetch_done_clear(&d);
                }
                secure_wipe(rbuf, fr.type ? (fr.len + MSG_HEADER_SIZE < rbuf_size ? fr.len + MSG_HEADER_SIZE : rbuf_size) : 0);
                if (r < 0 || fr.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_NET, "net", r);
                        else
                                log_warning("The network process went away; answering its pending fetches");
                        pthread_mutex_lock(&f->lock);
                        proc_close(&f->net_fd);
                        pthread_mutex_unlock(&f->lock);
                        fail_all_pending(f, API_SERVER_BUSY, "the network process is restarting, retry");
                        return;
                }
        }
}

static void handle_hsm(struct frontproc *f, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                int r = msg_recv(f->hsm_fd, CHAN_FRONT_HSM, false, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return;
                if (r == 0 && fr.type == MSG_HELLO)
                        r = proc_check_hello(&fr);
                if (r < 0 || fr.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_HSM, "hsm", r);
                        else
                                log_warning("The hsm process went away; misses get hsm_unavailable until it is back");
                        pthread_mutex_lock(&f->lock);
                        proc_close(&f->hsm_fd);
                        pthread_mutex_unlock(&f->lock);
                        return;
                }
        }
}

/* Maps a cache entry's principal to its twin in the new configuration, if nothing that
 * defines its token changed (DESIGN.md: credential, principal, scope, token_url, client_id,
 * secret URI).  The scope is compared as configured (a formula's text): the entry's key holds
 * the expansion for its caller, which a lookup under the new configuration computes again. */
static const struct config_principal *rebind_principal(void *userdata, const struct config_principal *old,
                                                       const char *scope) {
        const struct config *new_cfg = userdata;
        const struct config_principal *p = config_find_principal(new_cfg, old->full_name);

        if (!p)
                return NULL;
        if (strcmp_null(p->credential->token_url, old->credential->token_url) != 0 ||
            strcmp_null(p->credential->issuer, old->credential->issuer) != 0 ||
            strcmp_null(p->credential->audience, old->credential->audience) != 0 ||
            strcmp_null(p->credential->resource, old->credential->resource) != 0 ||
            strcmp_null(p->credential->token_params, old->credential->token_params) != 0 ||
            p->credential->client_auth != old->credential->client_auth ||
            strcmp(p->client_id, old->client_id) != 0 || strcmp_null(p->client_secret, old->client_secret) != 0 ||
            strcmp_null(p->client_key, old->client_key) != 0 || strcmp_null(p->key_id, old->key_id) != 0 ||
            p->assertion_alg != old->assertion_alg ||
            strcmp_null(p->credential->assertion_audience, old->credential->assertion_audience) != 0 ||
            p->credential->assertion_lifetime != old->credential->assertion_lifetime ||
            strcmp_null(p->credential->scope, old->credential->scope) != 0)
                return NULL;
        return p;
}

/* Frees the retired configurations nothing points into any more (see struct config_gen).
 * Event loop thread. */
static void reap_retired(struct frontproc *f) {
        bool freed = false;

        for (struct config_gen **pp = &f->retired, *g; (g = *pp);) {
                bool busy = atomic_load(&g->requests) > 0;

                pthread_mutex_lock(&f->lock);
                for (size_t i = 0; !busy && i < f->n_pending; i++)
                        busy = f->pending[i].seq < g->retired_seq;
                pthread_mutex_unlock(&f->lock);
                if (busy) {
                        pp = &g->next;
                        continue;
                }
                *pp = g->next;
                log_info("Freed a replaced configuration (%zu credential%s)", g->cfg->n_credentials,
                         g->cfg->n_credentials == 1 ? "" : "s");
                config_free(g->cfg);
                free(g);
                freed = true;
        }
        if (freed)
                (void) malloc_trim(0);
}

static int apply_config(struct frontproc *f, const struct msg_frame *fr, char *why, size_t why_size) {
        struct config *new_cfg = NULL;
        struct config_gen *g, *old;
        struct msg_config m;
        size_t kept;
        int e;

        e = msg_config_decode(fr->payload, fr->len, &m);
        if (e >= 0)
                e = config_receive(fr->fd, &m, &new_cfg);
        if (e < 0) {
                snprintf(why, why_size, "the configuration could not be read: %s", strerror(-e));
                return e;
        }
        g = calloc(1, sizeof *g);
        if (!g) {
                config_free(new_cfg);
                snprintf(why, why_size, "out of memory");
                return -ENOMEM;
        }
        g->cfg = new_cfg;
        pthread_rwlock_wrlock(&f->cfg_lock);
        kept = tokcache_rebind(f->cache, rebind_principal, new_cfg);
        old = atomic_exchange(&f->gen, g);
        pthread_rwlock_unlock(&f->cfg_lock);
        /* Requests routed with the old configuration may still be suspended, and fetches
         * started with it pending: it is freed when they are done. */
        pthread_mutex_lock(&f->lock);
        old->retired_seq = f->fetch_seq;
        pthread_mutex_unlock(&f->lock);
        old->next = f->retired;
        f->retired = old;
        log_info("Configuration reloaded: %zu credential%s, %zu cached key%s kept", new_cfg->n_credentials,
                 new_cfg->n_credentials == 1 ? "" : "s", kept, kept == 1 ? "" : "s");
        reap_retired(f);
        return 0;
}

static void send_config_done(struct frontproc *f, int status, const char *reason) {
        struct msg_config_done d = { .status = (uint8_t) status, .reason = (char *) reason };
        struct buf b;

        buf_init(&b, msg_channel_max(CHAN_SUPER_FRONT));
        if (msg_config_done_encode(&d, &b) == 0)
                (void) msg_send(f->super_fd, &b, -1);
        buf_done(&b);
}

/* Returns 1 to go on, 0 to exit. */
static int handle_super(struct frontproc *f, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                int r = msg_recv(f->super_fd, CHAN_SUPER_FRONT, true, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return 1;
                if (r < 0 || fr.type == 0) {
                        log_info("supervisor channel closed, exiting");
                        return 0;
                }
                if (fr.type == MSG_CHANNEL) {
                        struct msg_channel_fd c;

                        if (msg_channel_fd_decode(fr.payload, fr.len, &c) < 0 || fr.fd < 0) {
                                proc_close(&fr.fd);
                                continue;
                        }
                        (void) proc_set_nonblock(fr.fd);
                        pthread_mutex_lock(&f->lock);
                        if (c.channel == CHAN_FRONT_NET) {
                                proc_close(&f->net_fd);
                                f->net_fd = fr.fd;
                                proc_send_hello(f->net_fd, ROLE_FRONT);
                        } else if (c.channel == CHAN_FRONT_HSM) {
                                proc_close(&f->hsm_fd);
                                f->hsm_fd = fr.fd;
                                proc_send_hello(f->hsm_fd, ROLE_FRONT);
                        } else
                                proc_close(&fr.fd);
                        pthread_mutex_unlock(&f->lock);
                        log_info("New %s channel in place", msg_channel_name((enum msg_channel) c.channel));
                } else if (fr.type == MSG_CONFIG) {
                        char why[128] = "";
                        r = apply_config(f, &fr, why, sizeof why);
                        proc_close(&fr.fd);
                        send_config_done(f, r < 0 ? 1 : 0, r < 0 ? why : NULL);
                } else
                        proc_close(&fr.fd);
        }
}

int frontproc(struct config *cfg, int listen_fd, int net_fd, int hsm_fd, int super_fd) {
        struct frontproc f = {
                .cfg_lock = PTHREAD_RWLOCK_INITIALIZER,
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .net_fd = net_fd,
                .hsm_fd = hsm_fd,
                .super_fd = super_fd,
        };
        uint8_t *rbuf = NULL;
        size_t rbuf_size = msg_channel_max(CHAN_SUPER_FRONT);
        int sfd = -1, status = 1;

        log_set_ident("credagent-front");
        f.gen = NULL;
        {
                struct config_gen *g = calloc(1, sizeof *g);

                if (!g) {
                        config_free(cfg);
                        return 1;
                }
                g->cfg = cfg;
                atomic_init(&f.gen, g);
        }
        /* Fetch ids start at a random point: a restarted front never reuses its predecessor's. */
        if (getrandom(&f.next_fetch_id, sizeof f.next_fetch_id, 0) != (ssize_t) sizeof f.next_fetch_id)
                f.next_fetch_id = now_boottime_ms() << 20;

        /* Open what it needs: the HTTP server on the inherited listening socket, the cache. */
        f.cache = tokcache_new(front_fetch_start, &f);
        rbuf = malloc(rbuf_size);
        sfd = proc_signalfd(); /* before the server thread starts, so it inherits the mask */
        if (!f.cache || !rbuf || sfd < 0)
                goto out;
        (void) proc_set_nonblock(f.net_fd);
        (void) proc_set_nonblock(f.hsm_fd);
        (void) proc_set_nonblock(f.super_fd);
        /* Load what libraries load lazily (the time zone for log timestamps, …) while files
         * can still be opened; then Landlock, which binds only the calling thread and those it
         * creates later, before libmicrohttpd starts its thread (the seccomp part, with TSYNC,
         * comes after). */
        sandbox_warm_up(0);
        if (sandbox_landlock("front", &sandbox_policy_front) < 0)
                goto out;
        f.daemon = MHD_start_daemon(
                /* poll(), not epoll: libmicrohttpd 0.9.75's epoll loop takes at most 128 events
                 * per call and, when it gets exactly 128, waits again with the idle timeout while
                 * those 128 requests sit unanswered (128 keep-alive callers stalled it 30 s). */
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                0, NULL, NULL, access_handler, &f,
                MHD_OPTION_LISTEN_SOCKET, listen_fd,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                MHD_OPTION_UNESCAPE_CALLBACK, unescape_no_nul, NULL,
                MHD_OPTION_NOTIFY_COMPLETED, request_completed, &f,
                MHD_OPTION_NOTIFY_CONNECTION, connection_notify, &f,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) FRONT_MAX_CONNECTIONS,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) FRONT_IDLE_TIMEOUT,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) FRONT_CONNECTION_MEMORY,
                MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) 1024,
                MHD_OPTION_END);
        if (!f.daemon) {
                log_error("Failed to start the HTTP server");
                goto out;
        }

        /* Drop: no files, no new sockets from here on. */
        if (sandbox_apply("front", &sandbox_policy_front) < 0)
                goto out;
        proc_test_hooks("front");

        proc_send_hello(f.net_fd, ROLE_FRONT);
        proc_send_hello(f.hsm_fd, ROLE_FRONT);
        proc_send_hello(f.super_fd, ROLE_FRONT);

        for (;;) {
                struct pollfd p[4];
                int timeout = expire_pending(&f);

                /* Replaced configurations go once nothing points into them: look again each
                 * second while there are some. */
                if (f.retired) {
                        reap_retired(&f);
                        if (f.retired && (timeout < 0 || timeout > 1000))
                                timeout = 1000;
                }

                pthread_mutex_lock(&f.lock);
                p[0] = (struct pollfd) { .fd = f.net_fd, .events = POLLIN };
                p[1] = (struct pollfd) { .fd = f.hsm_fd, .events = POLLIN };
                pthread_mutex_unlock(&f.lock);
                p[2] = (struct pollfd) { .fd = f.super_fd, .events = POLLIN };
                p[3] = (struct pollfd) { .fd = sfd, .events = POLLIN };
                if (poll(p, 4, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_errno(errno, "poll() failed: %m");
                        break;
                }
                if (p[3].revents && proc_signal_wants_exit(sfd)) {
                        status = 0;
                        break;
                }
                if (p[0].revents)
                        handle_net(&f, rbuf, rbuf_size);
                if (p[1].revents)
                        handle_hsm(&f, rbuf, rbuf_size);
                if (p[2].revents && handle_super(&f, rbuf, rbuf_size) == 0) {
                        status = 0;
                        break;
                }
        }

out:
        /* Shutdown: stop accepting, answer whoever waits, stop the server. */
        if (f.daemon)
                (void) MHD_quiesce_daemon(f.daemon);
        pthread_mutex_lock(&f.lock);
        proc_close(&f.net_fd);
        proc_close(&f.hsm_fd);
        pthread_mutex_unlock(&f.lock);
        fail_all_pending(&f, API_SERVER_BUSY, "the agent is shutting down");
        if (f.daemon)
                MHD_stop_daemon(f.daemon);
        tokcache_free(f.cache);
        /* Every request and fetch is done: no configuration is in use any more. */
        for (struct config_gen *g = f.retired, *next; g; g = next) {
                next = g->next;
                config_free(g->cfg);
                free(g);
        }
        config_free(atomic_load(&f.gen)->cfg);
        free(atomic_load(&f.gen));
        free(rbuf);
        if (sfd >= 0)
                close(sfd);
        return status;
}
