/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/fetch.h"
#include "log.h"

struct fetcher {
        const struct config *cfg;
        struct hsm *hsm;
        struct tokcache *cache;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        unsigned in_flight;
        bool shutting_down;
        volatile int abort;
};

struct fetch_job {
        struct fetcher *fetcher;
        struct tokcache_entry *entry;
        const struct config_principal *principal;
        char *scope;
};

struct fetcher *fetcher_new(const struct config *cfg, struct hsm *hsm) {
        struct fetcher *f = calloc(1, sizeof *f);

        if (!f)
                return NULL;
        f->cfg = cfg;
        f->hsm = hsm;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->idle, NULL);
        return f;
}

void fetcher_set_cache(struct fetcher *f, struct tokcache *cache) {
        f->cache = cache;
}

static void answer_from_hsm_error(int r, struct tokcache_answer *a) {
        a->error = API_HSM_UNAVAILABLE;
        switch (r) {
        case -ENOENT:
                snprintf(a->description, sizeof a->description, "the client secret object was not found in the token");
                break;
        case -EACCES:
                snprintf(a->description, sizeof a->description,
                         "the token refused the login or the secret object is not usable");
                break;
        case -ENODEV:
                snprintf(a->description, sizeof a->description, "the token is not present");
                break;
        default:
                snprintf(a->description, sizeof a->description, "the token could not be used");
                break;
        }
}

static void answer_from_oauth(const struct oauth_result *res, const char *requested_scope, uint64_t now,
                              struct tokcache_answer *a) {
        switch (res->outcome) {
        case OAUTH_OK:
                a->error = API_OK;
                a->access_token = res->access_token; /* borrowed until the entry is completed */
                a->scope = res->scope ? res->scope : (char *) requested_scope;
                a->expires_at = now + (uint64_t) res->expires_in * 1000;
                return;
        case OAUTH_IDP_ERROR:
                a->error = API_IDP_ERROR;
                snprintf(a->idp_error, sizeof a->idp_error, "%s", res->error_code);
                break;
        case OAUTH_TIMEOUT:
                a->error = API_IDP_TIMEOUT;
                break;
        case OAUTH_BAD_RESPONSE:
        case OAUTH_UNREACHABLE:
        case OAUTH_LOCAL_ERROR:
        default:
                a->error = API_IDP_ERROR;
                break;
        }
        snprintf(a->description, sizeof a->description, "%s", res->description);
}

static void *fetch_thread(void *arg) {
        struct fetch_job *job = arg;
        struct fetcher *f = job->fetcher;
        const struct config_principal *p = job->principal;
        const struct config_credential *cred = p->credential;
        struct oauth_result res = {};
        struct tokcache_answer a = {};
        _cleanup_secbuf_ struct secbuf *secret = NULL;
        uint64_t started = now_boottime_ms(), now;
        int r;

        r = hsm_read_secret(f->hsm, p->client_secret, &secret);
        if (r < 0) {
                _cleanup_free_ char *why = hsm_last_error(f->hsm);

                answer_from_hsm_error(r, &a);
                log_error_errno(r, "fetch credential=%s principal=%s outcome=hsm_unavailable: reading the client secret failed: %s",
                                cred->name, p->name, why ? why : strerror(-r));
        } else {
                struct oauth_request req = {
                        .token_url = cred->token_url,
                        .client_auth = cred->client_auth,
                        .client_id = p->client_id,
                        .client_secret = secret,
                        .scope = job->scope,
                        .ca_file = f->cfg->ca_file,
                        .allow_insecure_loopback = cred->allow_insecure_loopback,
                        .connect_timeout = cred->connect_timeout,
                        .timeout = cred->timeout,
                        .default_ttl = cred->default_ttl,
                        .max_ttl = cred->max_ttl,
                };
                r = oauth_fetch(&req, &f->abort, &res);
                secret = secbuf_free(secret); /* wipe as soon as the transfer is over */
                if (r < 0) {
                        res.outcome = OAUTH_LOCAL_ERROR;
                        snprintf(res.description, sizeof res.description, "out of memory");
                }
                now = now_boottime_ms();
                answer_from_oauth(&res, job->scope, now, &a);
                if (a.error == API_OK) {
                        char fp[9];
                        log_info("fetch credential=%s principal=%s outcome=ok http=%ld expires_in=%u fp=%s ms=%llu",
                                 cred->name, p->name, res.http_status, res.expires_in,
                                 log_fingerprint(res.access_token, strlen(res.access_token), fp),
                                 (unsigned long long) (now - started));
                } else
                        log_warning("fetch credential=%s principal=%s outcome=%s%s%s http=%ld ms=%llu: %s", cred->name,
                                    p->name, api_error_name(a.error), a.idp_error[0] ? " idp_error=" : "",
                                    a.idp_error, res.http_status, (unsigned long long) (now - started),
                                    a.description);
        }

        tokcache_complete(f->cache, job->entry, &a, now_boottime_ms());
        oauth_result_clear(&res); /* the answer borrowed res' strings; the cache made its copies */

        free(job->scope);
        free(job);
        pthread_mutex_lock(&f->lock);
        if (--f->in_flight == 0)
                pthread_cond_broadcast(&f->idle);
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

int fetcher_start(void *userdata, struct tokcache_entry *e, const struct config_principal *p, const char *scope) {
        struct fetcher *f = userdata;
        struct fetch_job *job;
        pthread_attr_t attr;
        pthread_t t;
        int r;

        pthread_mutex_lock(&f->lock);
        if (f->shutting_down)
                r = -ECANCELED;
        else if (f->in_flight >= FETCHER_MAX_IN_FLIGHT)
                r = -EBUSY;
        else {
                f->in_flight++;
                r = 0;
        }
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                return r;

        job = calloc(1, sizeof *job);
        if (!job || (scope && !(job->scope = strdup(scope)))) {
                free(job);
                r = -ENOMEM;
                goto fail;
        }
        job->fetcher = f;
        job->entry = e;
        job->principal = p;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        r = -pthread_create(&t, &attr, fetch_thread, job);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                free(job->scope);
                free(job);
                goto fail;
        }
        return 0;
fail:
        pthread_mutex_lock(&f->lock);
        if (--f->in_flight == 0)
                pthread_cond_broadcast(&f->idle);
        pthread_mutex_unlock(&f->lock);
        return r;
}

void fetcher_shutdown(struct fetcher *f) {
        pthread_mutex_lock(&f->lock);
        f->shutting_down = true;
        f->abort = 1;
        while (f->in_flight > 0)
                pthread_cond_wait(&f->idle, &f->lock);
        pthread_mutex_unlock(&f->lock);
}

void fetcher_free(struct fetcher *f) {
        if (!f)
                return;
        pthread_cond_destroy(&f->idle);
        pthread_mutex_destroy(&f->lock);
        free(f);
}
