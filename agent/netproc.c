/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/curlpool.h"
#include "agent/discovery.h"
#include "agent/jwt.h"
#include "agent/netproc.h"
#include "agent/oauth.h"
#include "agent/procutil.h"
#include "agent/sandbox.h"
#include "agent/tokcache.h"
#include "ipc/apierror.h"
#include "ipc/msg.h"
#include "log.h"
#include "secmem.h"

/* A worker waiting for hsm's answer: a SECRET or a SIGNATURE. */
struct secret_wait {
        struct secret_wait *next;
        uint64_t fetch_id;
        uint8_t want;              /* MSG_SECRET or MSG_SIGNATURE */
        bool done;
        int error;                 /* 0 or negative errno */
        char description[MSG_TEXT_MAX + 1];
        struct secbuf *secret;     /* SECRET */
        uint8_t alg;               /* SIGNATURE: enum hsm_alg */
        uint8_t signature[MSG_SIGNATURE_MAX];
        size_t signature_len;
};

struct netproc {
        const struct config *cfg;
        pthread_mutex_t lock;      /* everything below */
        pthread_cond_t cond;       /* secret_wait done, in_flight changes */
        int front_fd, hsm_fd, super_fd;
        struct secret_wait *waits;
        unsigned in_flight;
        volatile int abort;
        /* Set before the first fetch, never changed after: */
        struct curlpool *pool;     /* connection reuse; NULL: a connection per fetch */
        struct discovery_cache *discovery; /* issuers' metadata; NULL: out of memory at start */
};

struct job {
        struct netproc *n;
        struct msg_fetch fetch;
};

static int send_locked(struct netproc *n, int *fd, const struct buf *b) {
        int r;

        pthread_mutex_lock(&n->lock);
        r = *fd >= 0 ? msg_send(*fd, b, -1) : -ENOTCONN;
        pthread_mutex_unlock(&n->lock);
        return r;
}

static void send_done(struct netproc *n, const struct msg_fetch_done *d) {
        struct buf b;
        int r;

        buf_init(&b, msg_channel_max(CHAN_FRONT_NET));
        r = msg_fetch_done_encode(d, &b);
        if (r == 0)
                r = send_locked(n, &n->front_fd, &b);
        if (r < 0)
                log_warning_errno(r, "Answering fetch %llu to the front failed: %m", (unsigned long long) d->fetch_id);
        buf_done(&b); /* wipes the token */
}

static void fail_fetch(struct netproc *n, uint64_t id, enum api_error e, const char *description) {
        struct msg_fetch_done d = { .fetch_id = id, .error = (uint8_t) e, .description = (char *) description };
        send_done(n, &d);
}

/* Sends the request in B to hsm and waits for the answer W->want for W->fetch_id.  Returns 0
 * (W filled) or a negative errno, with a description for the caller in WHY. */
static int hsm_ask(struct netproc *n, const struct buf *b, struct secret_wait *w, char *why, size_t why_size) {
        struct timespec deadline;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += NETPROC_SECRET_WAIT_MS / 1000;

        pthread_mutex_lock(&n->lock);
        r = n->hsm_fd >= 0 ? msg_send(n->hsm_fd, b, -1) : -ENOTCONN;
        if (r == 0) {
                w->next = n->waits;
                n->waits = w;
                while (!w->done && !n->abort)
                        if (pthread_cond_timedwait(&n->cond, &n->lock, &deadline) == ETIMEDOUT)
                                break;
                if (!w->done) {
                        for (struct secret_wait **p = &n->waits; *p; p = &(*p)->next)
                                if (*p == w) {
                                        *p = w->next;
                                        break;
                                }
                        r = n->abort ? -ECANCELED : -ETIMEDOUT;
                } else
                        r = w->error;
        }
        pthread_mutex_unlock(&n->lock);

        if (r < 0)
                snprintf(why, why_size, "%s",
                         w->description[0] ? w->description :
                         r == -ENOTCONN    ? "the hsm process is restarting" :
                         r == -ETIMEDOUT   ? "the hsm process did not answer in time" :
                         w->want == MSG_SECRET ? "the client secret could not be read" :
                                               "the client assertion could not be signed");
        return r;
}

/* Asks hsm for the secret of fetch F and waits for it.  Returns 0 and the secret, or a
 * negative errno with a description for the caller. */
static int get_secret(struct netproc *n, const struct msg_fetch *f, struct secbuf **ret, char *why, size_t why_size) {
        struct msg_secret_request req = { .fetch_id = f->fetch_id, .client_secret_uri = f->client_secret_uri };
        struct secret_wait w = { .fetch_id = f->fetch_id, .want = MSG_SECRET };
        struct buf b;
        int r;

        buf_init(&b, msg_channel_max(CHAN_NET_HSM));
        r = msg_secret_request_encode(&req, &b);
        if (r == 0)
                r = hsm_ask(n, &b, &w, why, why_size);
        else
                snprintf(why, why_size, "the secret request could not be encoded");
        buf_done(&b);
        if (r < 0) {
                secbuf_free(w.secret);
                return r;
        }
        *ret = w.secret;
        return 0;
}

/* Asks hsm to sign INPUT (LEN bytes; empty: only which algorithm) with the key of fetch F.
 * Fills W (its signature and alg).  Returns 0 or a negative errno with WHY. */
static int get_signature(struct netproc *n, const struct msg_fetch *f, const void *input, size_t len,
                         struct secret_wait *w, char *why, size_t why_size) {
        struct msg_sign_request req = {
                .fetch_id = f->fetch_id,
                .client_key_uri = f->client_key_uri,
                .signing_input = input,
                .signing_input_len = len,
        };
        struct buf b;
        int r;

        *w = (struct secret_wait) { .fetch_id = f->fetch_id, .want = MSG_SIGNATURE };
        buf_init(&b, msg_channel_max(CHAN_NET_HSM));
        r = msg_sign_request_encode(&req, &b);
        if (r == 0)
                r = hsm_ask(n, &b, w, why, why_size);
        else
                snprintf(why, why_size, "the client assertion is too long to be signed");
        buf_done(&b); /* wipes the copy of the signing input */
        if (r == 0 && (w->alg == HSM_ALG_NONE || (len > 0) != (w->signature_len > 0))) {
                snprintf(why, why_size, "the hsm process answered an unusable signature");
                r = -EPROTO;
        }
        return r;
}

/* private_key_jwt (RFC 7523 §2.2): builds the client assertion for fetch F and has hsm sign
 * it.  Returns 0 and the JWS in a new secbuf in *RET, or a negative errno with WHY. */
static int get_assertion(struct netproc *n, const struct msg_fetch *f, struct secbuf **ret, char *why,
                         size_t why_size) {
        _cleanup_secbuf_ struct secbuf *input = NULL;
        struct secret_wait w;
        char jti[JWT_JTI_LEN + 1];
        struct jwt_claims c = {
                .client_id = f->client_id,
                .audience = f->assertion_audience,
                .jti = jti,
        };
        enum hsm_alg alg;
        int r;

        /* Which algorithm the key signs with: the header names it, so it is asked first. */
        r = get_signature(n, f, NULL, 0, &w, why, why_size);
        if (r < 0)
                return r;
        alg = (enum hsm_alg) w.alg;

        r = jwt_new_jti(jti);
        if (r >= 0) {
                c.iat = (int64_t) time(NULL);
                c.exp = c.iat + (int64_t) f->assertion_lifetime;
                r = jwt_signing_input(alg, f->key_id, &c, &input);
        }
        if (r < 0) {
                snprintf(why, why_size, "the client assertion could not be built (%s)", strerror(-r));
                return r;
        }

        r = get_signature(n, f, input->data, input->len, &w, why, why_size);
        if (r >= 0 && w.alg != alg) {
                snprintf(why, why_size, "the hsm process signed with another algorithm than it named");
                r = -EPROTO;
        }
        if (r >= 0)
                r = jwt_assemble(input, w.signature, w.signature_len, ret);
        secure_wipe(&w, sizeof w);
        if (r < 0 && !why[0])
                snprintf(why, why_size, "the client assertion could not be built (%s)", strerror(-r));
        if (r >= 0)
                log_debug("fetch %llu: client assertion %s jti=%s signed", (unsigned long long) f->fetch_id,
                          hsm_alg_name(alg), jti);
        return r;
}

static void *fetch_thread(void *arg) {
        struct job *job = arg;
        struct netproc *n = job->n;
        const struct msg_fetch *f = &job->fetch;
        _cleanup_secbuf_ struct secbuf *secret = NULL, *assertion = NULL;
        struct oauth_result res = {};
        struct msg_fetch_done d = { .fetch_id = f->fetch_id };
        char why[MSG_TEXT_MAX + 1] = "";
        uint64_t started = now_boottime_ms();
        bool jwt = f->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT;
        _cleanup_free_ char *endpoint = NULL;
        bool idle;
        int r;

        if (f->issuer) {
                /* Discovery first: no secret is asked for (or assertion signed) for a fetch
                 * whose token endpoint is not known. */
                struct discovery_request dr = {
                        .issuer = f->issuer,
                        .allow_insecure_loopback = f->allow_insecure_loopback,
                        .ca_file = n->cfg->ca_file,
                        .connect_timeout = f->connect_timeout,
                        .timeout = f->timeout,
                        .client_auth = (enum client_auth) f->client_auth,
                };

                r = n->discovery ? discovery_token_endpoint(n->discovery, &dr, &n->abort, &endpoint, why, sizeof why)
                                 : -ENOMEM;
                if (r < 0) {
                        char desc[MSG_TEXT_MAX + 1]; /* the most FETCH_DONE carries */

                        snprintf(desc, sizeof desc, "discovery: %.*s", MSG_TEXT_MAX - 11,
                                 n->discovery ? why : "out of memory");
                        log_warning("fetch %llu outcome=idp_error: %s", (unsigned long long) f->fetch_id, desc);
                        fail_fetch(n, f->fetch_id, r == -ECANCELED ? API_SERVER_BUSY : API_IDP_ERROR, desc);
                        goto out;
                }
        }

        if (jwt)
                r = get_assertion(n, f, &assertion, why, sizeof why);
        else
                r = get_secret(n, f, &secret, why, sizeof why);
        if (r < 0) {
                log_error_errno(r, "fetch %llu outcome=hsm_unavailable: %s", (unsigned long long) f->fetch_id, why);
                fail_fetch(n, f->fetch_id, API_HSM_UNAVAILABLE, why);
                goto out;
        }

        struct oauth_request req = {
                .token_url = endpoint ?: f->token_url,
                .client_auth = (enum client_auth) f->client_auth,
                .client_id = f->client_id,
                .client_secret = secret,
                .client_assertion = assertion ? (const char *) assertion->data : NULL,
                .scope = f->scope,
                .ca_file = n->cfg->ca_file,
                .allow_insecure_loopback = f->allow_insecure_loopback,
                .connect_timeout = f->connect_timeout,
                .timeout = f->timeout,
                .default_ttl = f->default_ttl,
                .max_ttl = f->max_ttl,
                .audience = f->audience,
                .resource = f->resource,
                .token_params = f->token_params,
                .pool = n->pool,
        };
        r = oauth_fetch(&req, &n->abort, &res);
        secret = secbuf_free(secret); /* wiped as soon as the transfer is over */
        assertion = secbuf_free(assertion);
        if (r < 0) {
                res.outcome = OAUTH_LOCAL_ERROR;
                snprintf(res.description, sizeof res.description, "out of memory");
        }

        d.http_status = (uint32_t) res.http_status;
        switch (res.outcome) {
        case OAUTH_OK:
                d.error = API_OK;
                d.access_token = res.access_token;
                log_fingerprint(res.access_token, strlen(res.access_token), d.fingerprint);
                d.scope = res.scope;
                d.expires_in = res.expires_in;
                break;
        case OAUTH_IDP_ERROR:
                d.error = API_IDP_ERROR;
                d.idp_error = res.error_code;
                d.retry_after = res.retry_after; /* 429, 503: the front holds off that long */
                break;
        case OAUTH_TIMEOUT:
                d.error = API_IDP_TIMEOUT;
                break;
        default:
                d.error = API_IDP_ERROR;
                break;
        }
        if (d.error != API_OK)
                d.description = res.description;
        if (d.error == API_IDP_TIMEOUT && n->abort) {
                /* Aborted because this process is stopping (a reload that changed [agent], a
                 * shutdown): the agent's doing, not the IdP's, so no backoff (as when net is
                 * killed: the front answers server_busy). */
                d.error = API_SERVER_BUSY;
                d.description = (char *) "the network process is restarting, retry";
        }

        if (d.error == API_OK)
                log_debug("fetch %llu outcome=ok http=%ld expires_in=%u fp=%s ms=%llu", (unsigned long long) f->fetch_id,
                         res.http_status, res.expires_in, d.fingerprint, (unsigned long long) (now_boottime_ms() - started));
        else
                log_debug("fetch %llu outcome=%s%s%s http=%ld ms=%llu: %s", (unsigned long long) f->fetch_id,
                            api_error_name(d.error), d.idp_error ? " idp_error=" : "", d.idp_error ? d.idp_error : "",
                            res.http_status, (unsigned long long) (now_boottime_ms() - started), res.description);
        send_done(n, &d);
out:
        oauth_result_clear(&res);
        msg_fetch_clear(&job->fetch);
        free(job);
        pthread_mutex_lock(&n->lock);
        idle = --n->in_flight == 0;
        pthread_cond_broadcast(&n->cond);
        pthread_mutex_unlock(&n->lock);
        /* The last fetch of a burst: give back the heap pages the burst freed (glibc returns
         * only the top of the heap by itself; 100 parallel TLS transfers leave ~10 MiB). */
        if (idle)
                (void) malloc_trim(0);
        return NULL;
}

static void start_fetch(struct netproc *n, struct msg_fetch *f) {
        struct job *job;
        pthread_attr_t attr;
        pthread_t t;
        bool busy;
        int r;

        pthread_mutex_lock(&n->lock);
        busy = n->in_flight >= NETPROC_MAX_IN_FLIGHT;
        if (!busy)
                n->in_flight++;
        pthread_mutex_unlock(&n->lock);
        if (busy) {
                fail_fetch(n, f->fetch_id, API_SERVER_BUSY, "too many token requests in flight, retry later");
                return;
        }
        job = calloc(1, sizeof *job);
        if (!job) {
                r = -ENOMEM;
                goto fail;
        }
        job->n = n;
        job->fetch = *f;
        *f = (struct msg_fetch) {}; /* moved */

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        r = -pthread_create(&t, &attr, fetch_thread, job);
        pthread_attr_destroy(&attr);
        if (r == 0)
                return;
        *f = job->fetch;
        free(job);
fail:
        log_error_errno(r, "Cannot start a fetch worker: %m");
        fail_fetch(n, f->fetch_id, API_SERVER_BUSY, "the agent could not start the token request");
        pthread_mutex_lock(&n->lock);
        n->in_flight--;
        pthread_mutex_unlock(&n->lock);
}

static void handle_front(struct netproc *n, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                struct msg_fetch f = {};
                int r = msg_recv(n->front_fd, CHAN_FRONT_NET, true, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return;
                if (r < 0 || fr.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_FRONT, "front", r);
                        else
                                log_info("front channel closed; waiting for a new one");
                        pthread_mutex_lock(&n->lock);
                        proc_close(&n->front_fd);
                        pthread_mutex_unlock(&n->lock);
                        return;
                }
                if (fr.type == MSG_HELLO)
                        r = proc_check_hello(&fr);
                else {
                        r = msg_fetch_decode(fr.payload, fr.len, &f);
                        if (r == 0)
                                start_fetch(n, &f);
                        msg_fetch_clear(&f);
                }
                if (r < 0) {
                        proc_report_peer_fault(ROLE_FRONT, "front", r);
                        pthread_mutex_lock(&n->lock);
                        proc_close(&n->front_fd);
                        pthread_mutex_unlock(&n->lock);
                        return;
                }
        }
}

/* With the lock held: ends every wait for a secret with ERROR. */
static void fail_secret_waits(struct netproc *n, int error, const char *why) {
        for (struct secret_wait *w = n->waits; w; w = w->next) {
                w->done = true;
                w->error = error;
                snprintf(w->description, sizeof w->description, "%s", why);
        }
        n->waits = NULL;
        pthread_cond_broadcast(&n->cond);
}

static void handle_hsm(struct netproc *n, struct secbuf *rbuf) {
        for (;;) {
                struct msg_frame fr;
                struct msg_secret s = {};
                int r = msg_recv(n->hsm_fd, CHAN_NET_HSM, false, rbuf->data, rbuf->cap, &fr);

                if (r == -EAGAIN)
                        return;
                if (r < 0 || fr.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_HSM, "hsm", r);
                        else
                                log_info("hsm channel closed; waiting for a new one");
                        pthread_mutex_lock(&n->lock);
                        proc_close(&n->hsm_fd);
                        fail_secret_waits(n, -ENODEV, "the hsm process is restarting");
                        pthread_mutex_unlock(&n->lock);
                        return;
                }
                if (fr.type == MSG_HELLO)
                        r = proc_check_hello(&fr);
                else if (fr.type == MSG_SIGNATURE) {
                        struct msg_signature sg = {};

                        if ((r = msg_signature_decode(fr.payload, fr.len, &sg)) == 0) {
                                pthread_mutex_lock(&n->lock);
                                for (struct secret_wait **p = &n->waits; *p; p = &(*p)->next) {
                                        struct secret_wait *w = *p;
                                        if (w->fetch_id != sg.fetch_id || w->want != MSG_SIGNATURE)
                                                continue;
                                        *p = w->next;
                                        w->done = true;
                                        w->error = sg.error;
                                        w->alg = sg.alg;
                                        if (sg.error < 0)
                                                snprintf(w->description, sizeof w->description, "%s",
                                                         sg.description ? sg.description : "");
                                        else if (sg.signature_len > 0) {
                                                memcpy(w->signature, sg.signature, sg.signature_len);
                                                w->signature_len = sg.signature_len;
                                        }
                                        pthread_cond_broadcast(&n->cond);
                                        break;
                                }
                                pthread_mutex_unlock(&n->lock);
                                msg_signature_clear(&sg);
                        }
                } else if ((r = msg_secret_decode(fr.payload, fr.len, &s)) == 0) {
                        pthread_mutex_lock(&n->lock);
                        for (struct secret_wait **p = &n->waits; *p; p = &(*p)->next) {
                                struct secret_wait *w = *p;
                                if (w->fetch_id != s.fetch_id || w->want != MSG_SECRET)
                                        continue;
                                *p = w->next;
                                w->done = true;
                                w->error = s.error;
                                if (s.error < 0)
                                        snprintf(w->description, sizeof w->description, "%s",
                                                 s.description ? s.description : "");
                                else if (!(w->secret = secbuf_new(s.secret_len ? s.secret_len : 1)) ||
                                         secbuf_append(w->secret, s.secret, s.secret_len) < 0)
                                        w->error = -ENOMEM;
                                pthread_cond_broadcast(&n->cond);
                                break;
                        }
                        pthread_mutex_unlock(&n->lock);
                        msg_secret_clear(&s);
                }
                secure_wipe(rbuf->data, fr.len + MSG_HEADER_SIZE < rbuf->cap ? fr.len + MSG_HEADER_SIZE : rbuf->cap);
                if (r < 0) {
                        proc_report_peer_fault(ROLE_HSM, "hsm", r);
                        pthread_mutex_lock(&n->lock);
                        proc_close(&n->hsm_fd);
                        fail_secret_waits(n, -ENODEV, "the hsm process sent a bad message");
                        pthread_mutex_unlock(&n->lock);
                        return;
                }
        }
}

/* Returns 1 to go on, 0 to exit. */
static int handle_super(struct netproc *n, uint8_t *rbuf, size_t rbuf_size) {
        for (;;) {
                struct msg_frame fr;
                struct msg_channel_fd c;
                int r = msg_recv(n->super_fd, CHAN_SUPER_NET, true, rbuf, rbuf_size, &fr);

                if (r == -EAGAIN)
                        return 1;
                if (r < 0 || fr.type == 0)
                        return 0;
                if (fr.type != MSG_CHANNEL || msg_channel_fd_decode(fr.payload, fr.len, &c) < 0 || fr.fd < 0) {
                        proc_close(&fr.fd);
                        continue;
                }
                (void) proc_set_nonblock(fr.fd);
                pthread_mutex_lock(&n->lock);
                if (c.channel == CHAN_FRONT_NET) {
                        proc_close(&n->front_fd);
                        n->front_fd = fr.fd;
                        proc_send_hello(n->front_fd, ROLE_NET);
                } else if (c.channel == CHAN_NET_HSM) {
                        proc_close(&n->hsm_fd);
                        n->hsm_fd = fr.fd;
                        proc_send_hello(n->hsm_fd, ROLE_NET);
                } else
                        proc_close(&fr.fd);
                pthread_mutex_unlock(&n->lock);
        }
}

int netproc(const struct config *cfg, int front_fd, int hsm_fd, int super_fd) {
        struct netproc n = {
                .cfg = cfg,
                .front_fd = front_fd,
                .hsm_fd = hsm_fd,
                .super_fd = super_fd,
                .lock = PTHREAD_MUTEX_INITIALIZER,
        };
        struct secbuf *hsm_rbuf = NULL;
        uint8_t *rbuf = NULL;
        size_t rbuf_size = msg_channel_max(CHAN_FRONT_NET);
        int sfd = -1, r, status = 1;

        log_set_ident("credagent-net");
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&n.cond, &ca);
        pthread_condattr_destroy(&ca);

        /* Open what it needs: libcurl, OpenSSL, the resolver, the CA bundle. */
        if (oauth_global_init() < 0)
                goto out;
        sandbox_warm_up_openssl();
        sandbox_warm_up(SANDBOX_WARM_RESOLVER);
        if (msg_channel_max(CHAN_SUPER_NET) > rbuf_size)
                rbuf_size = msg_channel_max(CHAN_SUPER_NET);
        rbuf = malloc(rbuf_size);
        hsm_rbuf = secbuf_new(msg_channel_max(CHAN_NET_HSM)); /* secrets arrive here: locked, wiped */
        sfd = proc_signalfd();
        if (!rbuf || !hsm_rbuf || sfd < 0)
                goto out;

        (void) proc_set_nonblock(n.front_fd);
        (void) proc_set_nonblock(n.hsm_fd);
        (void) proc_set_nonblock(n.super_fd);

        {
                /* The CA bundle named by the config is read at every transfer. */
                const char *extra[] = { cfg->ca_file, NULL };
                struct sandbox_policy policy = sandbox_policy_net;

                policy.fs_read_extra = cfg->ca_file ? extra : NULL;
                r = sandbox_apply("net", &policy);
        }
        if (r < 0)
                goto out;
        proc_test_hooks("net");

        /* Connection reuse: its thread starts under the sandbox, so it inherits it. */
        r = curlpool_new(&n.pool);
        if (r < 0)
                log_warning_errno(r, "Cannot start the connection pool, every token request opens its own "
                                  "connection: %m");
        if (discovery_cache_new(n.pool, &n.discovery) < 0)
                log_warning("Out of memory for the discovery cache: credentials with an issuer will fail");

        proc_send_hello(n.front_fd, ROLE_NET);
        proc_send_hello(n.hsm_fd, ROLE_NET);
        proc_send_hello(n.super_fd, ROLE_NET);

        for (;;) {
                struct pollfd p[4];

                pthread_mutex_lock(&n.lock);
                p[0] = (struct pollfd) { .fd = n.front_fd, .events = POLLIN };
                p[1] = (struct pollfd) { .fd = n.hsm_fd, .events = POLLIN };
                pthread_mutex_unlock(&n.lock);
                p[2] = (struct pollfd) { .fd = n.super_fd, .events = POLLIN };
                p[3] = (struct pollfd) { .fd = sfd, .events = POLLIN };

                if (poll(p, 4, -1) < 0) {
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
                        handle_front(&n, rbuf, rbuf_size);
                if (p[1].revents)
                        handle_hsm(&n, hsm_rbuf);
                if (p[2].revents && handle_super(&n, rbuf, rbuf_size) == 0) {
                        status = 0;
                        break;
                }
        }

        /* Abort transfers and wait for the workers to finish. */
        pthread_mutex_lock(&n.lock);
        n.abort = 1;
        fail_secret_waits(&n, -ECANCELED, "the agent is shutting down");
        while (n.in_flight > 0)
                pthread_cond_wait(&n.cond, &n.lock);
        pthread_mutex_unlock(&n.lock);
out:
        discovery_cache_free(n.discovery);
        curlpool_free(n.pool); /* closes the kept connections */
        secbuf_free(hsm_rbuf);
        free(rbuf);
        oauth_global_cleanup();
        return status;
}
