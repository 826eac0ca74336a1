/* SPDX-License-Identifier: ISC */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/discovery.h"
#include "build-config.h"
#include "ipc/msg.h"
#include "log.h"
#include "macro.h"

#define DISCOVERY_JSON_DEPTH 16
#define DISCOVERY_LOW_SPEED_TIME 10

static const char rfc8414_path[] = "/.well-known/oauth-authorization-server";
static const char oidc_path[] = "/.well-known/openid-configuration";

_Static_assert(DISCOVERY_WHY_MAX == MSG_TEXT_MAX, "descriptions travel in FETCH_DONE");

_printf_(3, 4) static void set_why(char *why, size_t size, const char *format, ...) {
        va_list ap;

        if (!why || size == 0)
                return;
        va_start(ap, format);
        (void) vsnprintf(why, size, format, ap);
        va_end(ap);
}

void discovery_doc_clear(struct discovery_doc *d) {
        if (!d)
                return;
        free(d->issuer);
        free(d->token_endpoint);
        if (d->auth_methods)
                for (char **m = d->auth_methods; *m; m++)
                        free(*m);
        free(d->auth_methods);
        *d = (struct discovery_doc) {};
}

const char *discovery_auth_method_name(enum client_auth a) {
        switch (a) {
        case CLIENT_AUTH_BASIC:
                return "client_secret_basic";
        case CLIENT_AUTH_POST:
                return "client_secret_post";
        case CLIENT_AUTH_PRIVATE_KEY_JWT:
                return "private_key_jwt";
        }
        return "?";
}

bool discovery_allows(const struct discovery_doc *d, enum client_auth a) {
        const char *name = discovery_auth_method_name(a);

        if (!d->auth_methods)
                return true;
        for (char **m = d->auth_methods; *m; m++)
                if (strcmp(*m, name) == 0)
                        return true;
        return false;
}

/* ---- the well-known URLs ---- */

static void curl_freep(char **p) {
        curl_free(*p);
}

static void curl_url_cleanupp(CURLU **u) {
        curl_url_cleanup(*u);
}

int discovery_urls(const char *issuer, char **ret_rfc8414, char **ret_oidc) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        _cleanup_(curl_freep) char *scheme = NULL, *path = NULL, *query = NULL, *fragment = NULL, *a = NULL, *b = NULL;
        _cleanup_free_ char *p1 = NULL, *p2 = NULL;
        CURLUcode uc;
        size_t n;

        if (!issuer || !ret_rfc8414 || !ret_oidc)
                return -EINVAL;
        u = curl_url();
        if (!u)
                return -ENOMEM;
        uc = curl_url_set(u, CURLUPART_URL, issuer, 0);
        if (uc == CURLUE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (uc != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) ||
            curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY ||
            curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) != CURLUE_NO_FRAGMENT || strchr(issuer, '#') ||
            strchr(issuer, '?'))
                return -EINVAL;
        if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
                return -EINVAL;
        n = strlen(path);
        while (n > 0 && path[n - 1] == '/')
                n--;
        if (asprintf(&p1, "%s%.*s", rfc8414_path, (int) n, path) < 0) {
                p1 = NULL;
                return -ENOMEM;
        }
        if (asprintf(&p2, "%.*s%s", (int) n, path, oidc_path) < 0) {
                p2 = NULL;
                return -ENOMEM;
        }
        if (curl_url_set(u, CURLUPART_PATH, p1, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_URL, &a, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_PATH, p2, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_URL, &b, 0) != CURLUE_OK)
                return -ENOMEM;
        free(p1);
        free(p2);
        p1 = strdup(a);
        p2 = strdup(b);
        if (!p1 || !p2)
                return -ENOMEM;
        *ret_rfc8414 = TAKE_PTR(p1);
        *ret_oidc = TAKE_PTR(p2);
        return 0;
}

/* ---- the document ---- */

/* Exactly one JSON value, nothing around it but JSON whitespace.  0, -EBADMSG, -ENOMEM. */
static int parse_json(const uint8_t *body, size_t len, struct json_object **ret) {
        struct json_tokener *tok;
        struct json_object *o;
        bool ok;

        if (len > INT32_MAX)
                return -EBADMSG;
        tok = json_tokener_new_ex(DISCOVERY_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, (const char *) body, (int) len);
        if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
                o = json_tokener_parse_ex(tok, "", 1);
                ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == 0;
        } else
                ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len;
        json_tokener_free(tok);
        if (!ok) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

/* An https URL (or http to a loopback IP literal when ALLOW_INSECURE) without user
 * information or fragment.  Returns true and, in *RET_URL, the URL as libcurl writes it
 * back (what is checked is what is used), or false (*RET_URL NULL; also on ENOMEM). */
static bool endpoint_ok(const char *url, bool allow_insecure, char **ret_url) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *fragment = NULL, *full = NULL;
        bool ok;

        *ret_url = NULL;
        if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER ||
            curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) != CURLUE_NO_FRAGMENT || strchr(url, '#'))
                return false;
        if (strcmp(scheme, "https") == 0)
                ok = true;
        else if (strcmp(scheme, "http") != 0 || !allow_insecure)
                ok = false;
        else /* a loopback IP literal: 127.0.0.0/8 or [::1] */
                ok = strncmp(host, "127.", 4) == 0 ? strspn(host, "0123456789.") == strlen(host) :
                                                     strcmp(host, "[::1]") == 0;
        if (!ok || curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK || strlen(full) > MSG_URL_MAX ||
            strchr(full, '#'))
                return false;
        *ret_url = strdup(full);
        return *ret_url != NULL;
}

static const char *quoted(const char *s, size_t len, char *buf, size_t size) {
        return log_escape(s, len, 48, buf, size);
}

int discovery_parse(const char *issuer, bool allow_insecure_loopback, const uint8_t *body, size_t len,
                    struct discovery_doc *ret, char *why, size_t why_size) {
        struct discovery_doc d = {};
        struct json_object *o = NULL, *v;
        char q[4 * 64 + 8];
        int r;

        memset(ret, 0, sizeof *ret);
        if (!issuer) {
                set_why(why, why_size, "no issuer to check the metadata against");
                return -EBADMSG;
        }
        if (!body || len == 0 || len > DISCOVERY_DOCUMENT_MAX) {
                set_why(why, why_size, "the metadata is empty or larger than %d bytes", DISCOVERY_DOCUMENT_MAX);
                return -EBADMSG;
        }
        r = parse_json(body, len, &o);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(o, json_type_object)) {
                set_why(why, why_size, "the metadata is not a JSON object");
                r = -EBADMSG;
                goto out;
        }

        /* RFC 8414 §3.3: the issuer must be identical to the one the metadata was asked for. */
        if (!json_object_object_get_ex(o, "issuer", &v) || !json_object_is_type(v, json_type_string)) {
                set_why(why, why_size, "the metadata has no issuer");
                r = -EBADMSG;
                goto out;
        }
        if ((size_t) json_object_get_string_len(v) != strlen(issuer) || strcmp(json_object_get_string(v), issuer) != 0) {
                set_why(why, why_size, "the metadata names the issuer \"%s\", not the configured one (RFC 8414 section 3.3)",
                        quoted(json_object_get_string(v), (size_t) json_object_get_string_len(v), q, sizeof q));
                r = -EBADMSG;
                goto out;
        }

        if (!json_object_object_get_ex(o, "token_endpoint", &v) || !json_object_is_type(v, json_type_string)) {
                set_why(why, why_size, "the metadata has no token_endpoint");
                r = -EBADMSG;
                goto out;
        }
        if ((size_t) json_object_get_string_len(v) > MSG_URL_MAX || strlen(json_object_get_string(v)) !=
                    (size_t) json_object_get_string_len(v) ||
            !endpoint_ok(json_object_get_string(v), allow_insecure_loopback, &d.token_endpoint)) {
                set_why(why, why_size, "the metadata's token_endpoint \"%s\" is not an https URL credagent can use",
                        quoted(json_object_get_string(v), (size_t) json_object_get_string_len(v), q, sizeof q));
                r = -EBADMSG;
                goto out;
        }

        if (json_object_object_get_ex(o, "token_endpoint_auth_methods_supported", &v) &&
            !json_object_is_type(v, json_type_null)) {
                size_t n, kept = 0;

                if (!json_object_is_type(v, json_type_array)) {
                        set_why(why, why_size, "the metadata's token_endpoint_auth_methods_supported is not an array");
                        r = -EBADMSG;
                        goto out;
                }
                n = json_object_array_length(v);
                d.auth_methods = calloc((n < DISCOVERY_METHODS_MAX ? n : DISCOVERY_METHODS_MAX) + 1, sizeof(char *));
                if (!d.auth_methods) {
                        r = -ENOMEM;
                        goto out;
                }
                for (size_t i = 0; i < n; i++) {
                        struct json_object *m = json_object_array_get_idx(v, i);

                        if (!json_object_is_type(m, json_type_string)) {
                                set_why(why, why_size,
                                        "the metadata's token_endpoint_auth_methods_supported holds a non-string");
                                r = -EBADMSG;
                                goto out;
                        }
                        if (kept < DISCOVERY_METHODS_MAX) {
                                d.auth_methods[kept] = strdup(json_object_get_string(m));
                                if (!d.auth_methods[kept]) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                kept++;
                        }
                }
        }

        d.issuer = strdup(issuer);
        if (!d.issuer) {
                r = -ENOMEM;
                goto out;
        }
        *ret = d;
        d = (struct discovery_doc) {};
        r = 0;
out:
        discovery_doc_clear(&d);
        json_object_put(o);
        return r;
}

/* ---- fetching a document ---- */

struct body {
        char *data;
        size_t len;
        bool too_large;
};

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct body *b = userdata;
        size_t n = size * nmemb;
        char *p;

        if (n > DISCOVERY_DOCUMENT_MAX - b->len) {
                b->too_large = true;
                return 0;
        }
        p = realloc(b->data, b->len + n + 1);
        if (!p)
                return 0;
        memcpy(p + b->len, ptr, n);
        b->data = p;
        b->len += n;
        b->data[b->len] = '\0';
        return n;
}

static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        const volatile int *abort = userdata;

        return abort && *abort ? 1 : 0;
}

struct discovery_cache {
        pthread_mutex_t lock;           /* everything below */
        pthread_cond_t cond;            /* a fetch ended */
        struct curlpool *pool;
        struct entry **entries;
        size_t n_entries;
        uint64_t clock;                 /* use counter, for eviction */
};

/* GETs URL.  Returns 0 with the HTTP status in *RET_STATUS and the body in B (which the
 * caller frees), or -EHOSTUNREACH (no answer; WHY says why), -ECANCELED, -ENOMEM. */
static int get_document(struct discovery_cache *c, const struct discovery_request *req, const char *url,
                        const volatile int *abort, long *ret_status, struct body *b, char *why, size_t why_size) {
        struct curl_slist *headers = NULL, *h2;
        char errbuf[CURL_ERROR_SIZE] = "";
        uint32_t timeout = req->timeout < DISCOVERY_TIMEOUT_MAX ? req->timeout : DISCOVERY_TIMEOUT_MAX;
        uint32_t connect_timeout = req->connect_timeout < timeout ? req->connect_timeout : timeout;
        long status = 0;
        CURLcode cc = CURLE_OK;
        CURL *h;
        int r;

        h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        h2 = curl_slist_append(NULL, "Accept: application/json");
        if (!h2) {
                curl_easy_cleanup(h);
                return -ENOMEM;
        }
        headers = h2;

#define SET(opt, val) \
        do { if (cc == CURLE_OK) cc = curl_easy_setopt(h, (opt), (val)); } while (0)
        SET(CURLOPT_URL, url);
        /* No secret goes with this GET; the token endpoint it yields is checked again. */
        SET(CURLOPT_PROTOCOLS_STR, req->allow_insecure_loopback ? "http,https" : "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
        if (req->ca_file) {
                SET(CURLOPT_CAINFO, req->ca_file);
                SET(CURLOPT_CAPATH, (char *) NULL);
        }
        SET(CURLOPT_SSL_CTX_FUNCTION, curlpool_ssl_ctx_cb);
        SET(CURLOPT_NOPROXY, "*");
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_CONNECTTIMEOUT, (long) connect_timeout);
        SET(CURLOPT_TIMEOUT, (long) timeout);
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (long) (timeout < DISCOVERY_LOW_SPEED_TIME ? timeout : DISCOVERY_LOW_SPEED_TIME));
        SET(CURLOPT_USERAGENT, "credagent/" CREDAGENT_VERSION);
        SET(CURLOPT_HTTPHEADER, headers);
        SET(CURLOPT_HTTPGET, 1L);
        SET(CURLOPT_WRITEFUNCTION, write_cb);
        SET(CURLOPT_WRITEDATA, b);
        SET(CURLOPT_NOPROGRESS, 0L);
        SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
        SET(CURLOPT_XFERINFODATA, (void *) abort);
        SET(CURLOPT_ERRORBUFFER, errbuf);
#undef SET
        if (cc == CURLE_OK && c->pool)
                cc = curlpool_attach(c->pool, h);
        if (cc == CURLE_OK)
                cc = c->pool ? curlpool_perform(c->pool, h) : curl_easy_perform(h);
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        curl_slist_free_all(headers);

        if (cc == CURLE_OK) {
                *ret_status = status;
                return 0;
        }
        if (cc == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (cc == CURLE_ABORTED_BY_CALLBACK)
                r = -ECANCELED;
        else
                r = -EHOSTUNREACH;
        if (cc == CURLE_WRITE_ERROR && b->too_large)
                set_why(why, why_size, "the metadata is larger than %d bytes", DISCOVERY_DOCUMENT_MAX);
        else
                set_why(why, why_size, "the metadata could not be fetched: %s", curl_easy_strerror(cc));
        log_debug("discovery: GET \"%s\": curl %d: %s", url, (int) cc, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return r;
}

/* Fetches and parses REQ's document: the RFC 8414 URL, then, when that does not answer 200
 * with a JSON object, the OpenID one.  Returns 0 and the document, or a negative errno as
 * discovery_token_endpoint() with WHY. */
static int fetch(struct discovery_cache *c, const struct discovery_request *req, const volatile int *abort,
                 struct discovery_doc *ret, char *why, size_t why_size) {
        _cleanup_free_ char *rfc = NULL, *oidc = NULL;
        long status[2] = {};
        int r;

        r = discovery_urls(req->issuer, &rfc, &oidc);
        if (r < 0) {
                set_why(why, why_size, r == -ENOMEM ? "out of memory" : "the issuer is not an https URL without query");
                return r;
        }
        for (int i = 0; i < 2; i++) {
                const char *url = i == 0 ? rfc : oidc;
                struct body b = {};
                struct json_object *o = NULL;
                bool object;

                r = get_document(c, req, url, abort, &status[i], &b, why, why_size);
                if (r < 0) {
                        free(b.data);
                        return r;
                }
                object = status[i] == 200 && b.len > 0 && parse_json((const uint8_t *) b.data, b.len, &o) == 0 &&
                         json_object_is_type(o, json_type_object);
                json_object_put(o);
                if (object) {
                        r = discovery_parse(req->issuer, req->allow_insecure_loopback, (const uint8_t *) b.data, b.len,
                                            ret, why, why_size);
                        free(b.data);
                        log_debug("discovery: \"%s\": %s", url, r == 0 ? "token endpoint found" : why);
                        return r;
                }
                free(b.data);
                log_debug("discovery: \"%s\": HTTP %ld, not a JSON object", url, status[i]);
        }
        set_why(why, why_size,
                "no metadata: HTTP %ld at %s, HTTP %ld at %s", status[0], rfc8414_path, status[1], oidc_path);
        return -EHOSTUNREACH;
}

/* ---- the cache ---- */

enum entry_state {
        ENTRY_NEW,
        ENTRY_FETCHING,
        ENTRY_OK,
        ENTRY_FAILED,
};

struct entry {
        char *issuer;
        bool insecure;
        enum entry_state state;
        struct discovery_doc doc;       /* ENTRY_OK */
        int error;                      /* ENTRY_FAILED: the fetch's negative errno */
        char why[DISCOVERY_WHY_MAX];    /* ENTRY_FAILED */
        uint64_t retry_at_ms;           /* ENTRY_FAILED: no new fetch before */
        uint32_t backoff_ms;            /* the last backoff; 0 after a success */
        uint64_t used;
};

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static struct entry *entry_free(struct entry *e) {
        if (!e)
                return NULL;
        discovery_doc_clear(&e->doc);
        free(e->issuer);
        free(e);
        return NULL;
}

int discovery_cache_new(struct curlpool *pool, struct discovery_cache **ret) {
        struct discovery_cache *c = calloc(1, sizeof *c);
        pthread_condattr_t ca;

        if (!c)
                return -ENOMEM;
        c->entries = calloc(DISCOVERY_CACHE_MAX, sizeof *c->entries);
        if (!c->entries) {
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        c->pool = pool;
        *ret = c;
        return 0;
}

struct discovery_cache *discovery_cache_free(struct discovery_cache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_entries; i++)
                entry_free(c->entries[i]);
        free(c->entries);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

/* With the lock held: the entry of REQ, made when missing (evicting the least recently used
 * one that is not being fetched when the cache is full).  NULL on ENOMEM or when every
 * entry is being fetched. */
static struct entry *entry_get(struct discovery_cache *c, const struct discovery_request *req) {
        struct entry *e;
        size_t victim = SIZE_MAX;

        for (size_t i = 0; i < c->n_entries; i++) {
                e = c->entries[i];
                if (e->insecure == req->allow_insecure_loopback && strcmp(e->issuer, req->issuer) == 0) {
                        e->used = ++c->clock;
                        return e;
                }
        }
        if (c->n_entries == DISCOVERY_CACHE_MAX) {
                for (size_t i = 0; i < c->n_entries; i++)
                        if (c->entries[i]->state != ENTRY_FETCHING &&
                            (victim == SIZE_MAX || c->entries[i]->used < c->entries[victim]->used))
                                victim = i;
                if (victim == SIZE_MAX)
                        return NULL;
                entry_free(c->entries[victim]);
                c->entries[victim] = c->entries[--c->n_entries];
        }
        e = calloc(1, sizeof *e);
        if (!e)
                return NULL;
        e->issuer = strdup(req->issuer);
        if (!e->issuer)
                return entry_free(e);
        e->insecure = req->allow_insecure_loopback;
        e->used = ++c->clock;
        c->entries[c->n_entries++] = e;
        return e;
}

int discovery_token_endpoint(struct discovery_cache *c, const struct discovery_request *req,
                             const volatile int *abort, char **ret_endpoint, char *why, size_t why_size) {
        struct discovery_doc doc = {};
        struct entry *e;
        char reason[DISCOVERY_WHY_MAX] = "";
        int r;

        if (!c || !req || !req->issuer || !ret_endpoint)
                return -EINVAL;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                uint64_t now = now_ms();

                if (abort && *abort) {
                        pthread_mutex_unlock(&c->lock);
                        set_why(why, why_size, "the agent is shutting down");
                        return -ECANCELED;
                }
                e = entry_get(c, req);
                if (!e) {
                        pthread_mutex_unlock(&c->lock);
                        set_why(why, why_size, "out of memory");
                        return -ENOMEM;
                }
                if (e->state == ENTRY_OK) {
                        char *endpoint;

                        if (!discovery_allows(&e->doc, req->client_auth)) {
                                pthread_mutex_unlock(&c->lock);
                                set_why(why, why_size,
                                        "the issuer's token endpoint does not support client_auth %s: "
                                        "%s is not in its token_endpoint_auth_methods_supported",
                                        req->client_auth == CLIENT_AUTH_BASIC ? "basic" :
                                        req->client_auth == CLIENT_AUTH_POST ? "post" : "private_key_jwt",
                                        discovery_auth_method_name(req->client_auth));
                                return -EPERM;
                        }
                        endpoint = strdup(e->doc.token_endpoint);
                        pthread_mutex_unlock(&c->lock);
                        if (!endpoint) {
                                set_why(why, why_size, "out of memory");
                                return -ENOMEM;
                        }
                        *ret_endpoint = endpoint;
                        return 0;
                }
                if (e->state == ENTRY_FAILED && now < e->retry_at_ms) {
                        r = e->error;
                        set_why(why, why_size, "%s (next attempt in %llu s)", e->why,
                                (unsigned long long) ((e->retry_at_ms - now + 999) / 1000));
                        pthread_mutex_unlock(&c->lock);
                        return r;
                }
                if (e->state == ENTRY_FETCHING) {
                        struct timespec ts;

                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += 1;
                        (void) pthread_cond_timedwait(&c->cond, &c->lock, &ts);
                        continue;
                }

                /* ENTRY_NEW, or a failure whose backoff is over: this caller fetches. */
                e->state = ENTRY_FETCHING;
                pthread_mutex_unlock(&c->lock);
                reason[0] = '\0';
                r = fetch(c, req, abort, &doc, reason, sizeof reason);
                pthread_mutex_lock(&c->lock);
                /* The entry is never evicted while it is being fetched. */
                if (r == 0) {
                        discovery_doc_clear(&e->doc);
                        e->doc = doc;
                        doc = (struct discovery_doc) {};
                        e->state = ENTRY_OK;
                        e->backoff_ms = 0;
                        log_debug("discovery: issuer \"%s\": token endpoint \"%s\"", e->issuer, e->doc.token_endpoint);
                } else if (r == -ECANCELED || r == -ENOMEM) {
                        e->state = e->backoff_ms ? ENTRY_FAILED : ENTRY_NEW; /* not the IdP's fault */
                        pthread_cond_broadcast(&c->cond);
                        pthread_mutex_unlock(&c->lock);
                        set_why(why, why_size, "%s", r == -ENOMEM ? "out of memory" : "the agent is shutting down");
                        return r;
                } else {
                        e->backoff_ms = e->backoff_ms == 0 ? DISCOVERY_BACKOFF_MIN_MS :
                                        e->backoff_ms >= DISCOVERY_BACKOFF_MAX_MS / 2 ? DISCOVERY_BACKOFF_MAX_MS :
                                                                                   e->backoff_ms * 2;
                        e->retry_at_ms = now_ms() + e->backoff_ms;
                        e->error = r == -EBADMSG ? -EBADMSG : -EHOSTUNREACH;
                        snprintf(e->why, sizeof e->why, "%s", reason[0] ? reason : "discovery failed");
                        e->state = ENTRY_FAILED;
                        pthread_cond_broadcast(&c->cond);
                        r = e->error;
                        set_why(why, why_size, "%s", e->why);
                        pthread_mutex_unlock(&c->lock);
                        return r;
                }
                pthread_cond_broadcast(&c->cond);
                /* Loop: the ENTRY_OK branch answers, the client_auth check included. */
        }
}
