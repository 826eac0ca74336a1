/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/frontproc.h"
#include "ipc/apierror.h"
#include "ipc/peer.h"
#include "log.h"
#include "policy/names.h"
#include "policy/policy.h"
#include "secmem.h"

struct frontproc {
        const struct config *cfg;
        struct tokcache *cache;
        struct MHD_Daemon *daemon;
};

/* Per connection: the peer as the kernel saw it at connect(). */
struct conn_ctx {
        int peer_error; /* 0 or the negative errno of peer_from_fd() */
        struct peer peer;
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
        const struct config_principal *principal;
        uint64_t started_ms;
        size_t body_len;
        bool body_too_large;
        char body[FRONT_MAX_BODY + 1];
};

static void request_free(struct request *req) {
        if (!req)
                return;
        tokcache_answer_clear(&req->answer);
        pthread_mutex_destroy(&req->lock);
        free(req);
}

/* Queues a JSON response.  The body may hold a token: our copy is wiped after MHD copied it. */
static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status, struct json_object *obj) {
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
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, enum api_error e, const char *idp_error,
                                   const char *description) {
        struct json_object *o = json_object_new_object();
        enum MHD_Result ret;

        json_object_object_add(o, "error", json_object_new_string(api_error_name(e)));
        if (description && *description)
                json_object_object_add(o, "error_description", json_object_new_string(description));
        if (idp_error && *idp_error)
                json_object_object_add(o, "idp_error", json_object_new_string(idp_error));
        ret = queue_json(conn, api_error_status(e), o);
        json_object_put(o);
        return ret;
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
        if (a->error == API_OK)
                log_fingerprint(a->access_token, strlen(a->access_token), fp);
        log_info("token uid=%u pid=%d credential=%s principal=%s outcome=%s%s%s fp=%s ms=%llu",
                 (unsigned) cc->peer.uid, (int) cc->peer.pid, p->credential->name, p->name, outcome_name(a),
                 a->idp_error[0] ? " idp_error=" : "", a->idp_error, fp,
                 (unsigned long long) (now - req->started_ms));
        if (a->error != API_OK)
                return queue_error(req->conn, a->error, a->idp_error, a->description);

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

/* GET /v1/token/CRED and POST /v1/token/CRED/refresh. */
static enum MHD_Result handle_token(struct frontproc *f, struct request *req, const struct conn_ctx *cc,
                                    const char *cred_name, bool refresh) {
        const struct config_credential *cred;
        uint32_t min_ttl = 0;
        size_t idx;
        int r;

        cred = config_find_credential(f->cfg, cred_name);
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
                json_object_put(body);
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
        r = tokcache_get(f->cache, req->principal, cred->scope, min_ttl, refresh, req->started_ms, &req->waiter,
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
        req->answer = (struct tokcache_answer) { .error = API_SERVER_BUSY };
        snprintf(req->answer.description, sizeof req->answer.description, "%s",
                 r == -ECANCELED ? "the agent is shutting down" :
                 r == -EBUSY     ? "too many token requests in flight, retry later" :
                                   "the token cache is full");
        return queue_token(req, cc);
}

static enum MHD_Result handle_whoami(struct frontproc *f, struct request *req, const struct conn_ctx *cc) {
        struct json_object *o = json_object_new_object(), *groups = json_object_new_array(),
                           *principals = json_object_new_object();
        char buf[4096];
        struct passwd pw, *pwr = NULL;
        struct group gr, *grr = NULL;
        enum MHD_Result ret;

        json_object_object_add(o, "uid", json_object_new_int64(cc->peer.uid));
        json_object_object_add(o, "gid", json_object_new_int64(cc->peer.gid));
        json_object_object_add(o, "pid", json_object_new_int64(cc->peer.pid));
        if (getpwuid_r(cc->peer.uid, &pw, buf, sizeof buf, &pwr) == 0 && pwr)
                json_object_object_add(o, "user", json_object_new_string(pwr->pw_name));
        else
                json_object_object_add(o, "user", NULL);
        if (getgrgid_r(cc->peer.gid, &gr, buf, sizeof buf, &grr) == 0 && grr)
                json_object_object_add(o, "group", json_object_new_string(grr->gr_name));
        else
                json_object_object_add(o, "group", NULL);
        for (size_t i = 0; i < cc->peer.n_groups; i++)
                json_object_array_add(groups, json_object_new_int64(cc->peer.groups[i]));
        json_object_object_add(o, "groups", groups);
        json_object_object_add(o, "unit", NULL); /* needs SO_PEERPIDFD: not read by this version */
        for (size_t i = 0; i < f->cfg->n_credentials; i++) {
                const struct config_credential *cred = f->cfg->credentials[i];
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
        return route(f, req, cc, url, method);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
        struct request *req = *con_cls;

        /* A request still queued on a cache entry cannot end here: suspended connections are
         * not closed by libmicrohttpd, and the shutdown order completes every fetch first. */
        request_free(req);
        *con_cls = NULL;
}

static void connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                struct conn_ctx *cc = calloc(1, sizeof *cc);

                if (!cc)
                        return; /* no context: every request on it is refused */
                cc->peer_error = ci ? peer_from_fd(ci->connect_fd, &cc->peer) : -EBADF;
                if (cc->peer_error < 0)
                        log_warning_errno(cc->peer_error, "Failed to read the peer credentials of a connection: %m");
                *socket_context = cc;
        } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                free(*socket_context);
                *socket_context = NULL;
        }
}

static void _printf_(2, 0) mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];

        vsnprintf(buf, sizeof buf, fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("libmicrohttpd: %s", buf);
}

int frontproc_start(const struct config *cfg, struct tokcache *cache, int listen_fd, struct frontproc **ret) {
        struct frontproc *f = calloc(1, sizeof *f);

        if (!f)
                return -ENOMEM;
        f->cfg = cfg;
        f->cache = cache;
        f->daemon = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                0, NULL, NULL, access_handler, f,
                MHD_OPTION_LISTEN_SOCKET, listen_fd,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                MHD_OPTION_NOTIFY_COMPLETED, request_completed, f,
                MHD_OPTION_NOTIFY_CONNECTION, connection_notify, f,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) FRONT_MAX_CONNECTIONS,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) FRONT_IDLE_TIMEOUT,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) FRONT_CONNECTION_MEMORY,
                MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned) 1024,
                MHD_OPTION_END);
        if (!f->daemon) {
                free(f);
                return -EIO;
        }
        *ret = f;
        return 0;
}

void frontproc_quiesce(struct frontproc *f) {
        if (f && f->daemon)
                (void) MHD_quiesce_daemon(f->daemon);
}

void frontproc_free(struct frontproc *f) {
        if (!f)
                return;
        if (f->daemon)
                MHD_stop_daemon(f->daemon);
        free(f);
}
