/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/jwt.h"
#include "agent/procutil.h"
#include "agent/sandbox.h"
#include "agent/tokcache.h"
#include "hsm/hsm.h"
#include "hsm/hsmproc.h"
#include "ipc/msg.h"
#include "log.h"
#include "secmem.h"

/* A secret grant (uri is the secret's, key false) or a key grant (uri is the key's). */
struct grant {
        uint64_t fetch_id;
        char *uri;
        uint64_t expires_ms;
        bool key;
        char *client_id;        /* key grants: the only iss and sub signed */
        char *audience;         /* key grants: the only aud signed */
        enum hsm_alg alg;       /* key grants: the configured algorithm, HSM_ALG_NONE = the key's */
        bool asked_alg;         /* key grants: net asked "which algorithm?" once */
};

struct hsmproc {
        const struct config *cfg;
        struct hsm *hsm;
        int front_fd, net_fd, super_fd, signal_fd;
        struct grant grants[HSMPROC_GRANTS_MAX];
        size_t n_grants;
        uint8_t *rbuf;
        size_t rbuf_size;
};

static void grant_free(struct grant *g) {
        free(g->uri);
        free(g->client_id);
        free(g->audience);
}

static void grants_clear(struct hsmproc *h) {
        for (size_t i = 0; i < h->n_grants; i++)
                grant_free(&h->grants[i]);
        h->n_grants = 0;
}

static void grant_drop(struct hsmproc *h, size_t i) {
        grant_free(&h->grants[i]);
        h->grants[i] = h->grants[--h->n_grants];
}

static void grants_expire(struct hsmproc *h, uint64_t now) {
        for (size_t i = 0; i < h->n_grants;)
                if (h->grants[i].expires_ms <= now)
                        grant_drop(h, i);
                else
                        i++;
}

static void grant_add(struct hsmproc *h, struct msg_grant *g) {
        uint64_t now = now_boottime_ms();
        bool key;

        grants_expire(h, now);
        if (h->n_grants >= HSMPROC_GRANTS_MAX) {
                log_warning("grant table full (%d): refusing grant for fetch %llu", HSMPROC_GRANTS_MAX,
                            (unsigned long long) g->fetch_id);
                return;
        }
        key = g->client_key_uri != NULL;
        h->grants[h->n_grants++] = (struct grant) {
                .fetch_id = g->fetch_id,
                .uri = key ? TAKE_PTR(g->client_key_uri) : TAKE_PTR(g->client_secret_uri),
                .expires_ms = now + HSMPROC_GRANT_TTL_MS,
                .key = key,
                .client_id = TAKE_PTR(g->client_id),
                .audience = TAKE_PTR(g->audience),
                .alg = (enum hsm_alg) g->assertion_alg,
        };
}

/* Returns the index of the grant for FETCH_ID, or -1. */
static ssize_t grant_find(struct hsmproc *h, uint64_t fetch_id) {
        grants_expire(h, now_boottime_ms());
        for (size_t i = 0; i < h->n_grants; i++)
                if (h->grants[i].fetch_id == fetch_id)
                        return (ssize_t) i;
        return -1;
}

/* Finds and consumes the secret grant for (FETCH_ID, URI).  Returns true when there was one. */
static bool grant_take(struct hsmproc *h, uint64_t fetch_id, const char *uri) {
        ssize_t i = grant_find(h, fetch_id);
        bool same;

        if (i < 0)
                return false;
        same = !h->grants[i].key && strcmp(h->grants[i].uri, uri) == 0;
        grant_drop(h, (size_t) i); /* used once, matching or not */
        return same;
}

/* Reads every frame the front has queued.  Returns 0, or a negative errno when the channel
 * must be dropped (EOF or a protocol violation, which is also reported to the supervisor). */
static int drain_front(struct hsmproc *h) {
        while (h->front_fd >= 0) {
                struct msg_frame f;
                int r = msg_recv(h->front_fd, CHAN_FRONT_HSM, true, h->rbuf, h->rbuf_size, &f);

                if (r == -EAGAIN)
                        return 0;
                if (r < 0 || f.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_FRONT, "front", r);
                        else
                                log_info("front channel closed; waiting for a new one");
                        proc_close(&h->front_fd);
                        grants_clear(h);
                        return r < 0 ? r : -EPIPE;
                }
                if (f.type == MSG_HELLO) {
                        r = proc_check_hello(&f);
                } else {
                        struct msg_grant g = {};
                        r = msg_grant_decode(f.payload, f.len, &g);
                        if (r == 0)
                                grant_add(h, &g);
                        msg_grant_clear(&g);
                }
                if (r < 0) {
                        proc_report_peer_fault(ROLE_FRONT, "front", r);
                        proc_close(&h->front_fd);
                        grants_clear(h);
                        return r;
                }
        }
        return 0;
}

static const char *secret_error_text(int r) {
        switch (r) {
        case -EPERM:
                return "the front did not grant this secret for this fetch";
        case -ENOENT:
                return "the client secret object was not found in the token";
        case -EACCES:
                return "the token refused the login or the secret object is not usable";
        case -ENODEV:
                return "the token is not present";
        default:
                return "the token could not be used";
        }
}

static int answer_secret_request(struct hsmproc *h, const struct msg_secret_request *req) {
        _cleanup_secbuf_ struct secbuf *secret = NULL;
        struct msg_secret m = { .fetch_id = req->fetch_id };
        struct buf out;
        int r;

        /* The front sends GRANT before FETCH, so by now the grant is queued on our front channel. */
        (void) drain_front(h);
        if (!grant_take(h, req->fetch_id, req->client_secret_uri)) {
                log_warning("net asked for a secret without a grant from the front (fetch %llu): refused",
                            (unsigned long long) req->fetch_id);
                r = -EPERM;
        } else {
                r = hsm_read_secret(h->hsm, req->client_secret_uri, &secret);
                if (r < 0) {
                        _cleanup_free_ char *why = hsm_last_error(h->hsm);
                        log_error_errno(r, "Reading the client secret for fetch %llu failed: %s",
                                        (unsigned long long) req->fetch_id, why ? why : strerror(-r));
                }
        }
        if (r < 0) {
                m.error = r;
                m.description = (char *) secret_error_text(r);
        } else {
                m.secret = secret->data;
                m.secret_len = secret->len;
        }
        buf_init(&out, msg_channel_max(CHAN_NET_HSM));
        r = msg_secret_encode(&m, &out);
        if (r == 0)
                r = msg_send(h->net_fd, &out, -1);
        buf_done(&out); /* wipes the copy of the secret */
        return r;
}

static const char *sign_error_text(int r) {
        switch (r) {
        case -EPERM:
                return "the front did not grant this key for this fetch, or not for this assertion";
        case -EBADMSG:
                return "the assertion to sign is not the one credagent writes";
        case -ENOENT:
                return "the signing key was not found in the token";
        case -EOPNOTSUPP:
                return "the signing key cannot sign with the configured algorithm";
        case -EACCES:
                return "the token refused the login or the signing key is not private and sensitive";
        case -ENODEV:
                return "the token is not present";
        default:
                return "the token could not be used";
        }
}

/* Answers a SIGN_REQUEST: under a key grant with this fetch id and key URI, the algorithm
 * (empty signing input, once, the grant stays) or the signature of exactly the assertion the
 * grant describes (the grant is consumed, whatever the outcome). */
static int answer_sign_request(struct hsmproc *h, const struct msg_sign_request *req) {
        struct msg_signature m = { .fetch_id = req->fetch_id };
        uint8_t sig[HSM_SIGNATURE_MAX];
        size_t sig_len = sizeof sig;
        enum hsm_alg alg = HSM_ALG_NONE;
        const char *why = NULL;
        struct grant *g;
        struct buf out;
        ssize_t i;
        int r;

        (void) drain_front(h);
        i = grant_find(h, req->fetch_id);
        g = i >= 0 ? &h->grants[i] : NULL;
        if (!g || !g->key || strcmp(g->uri, req->client_key_uri) != 0 ||
            (req->signing_input_len == 0 && g->asked_alg)) {
                log_warning("net asked for a signature without a matching key grant from the front (fetch %llu): "
                            "refused", (unsigned long long) req->fetch_id);
                if (g)
                        grant_drop(h, (size_t) i);
                r = -EPERM;
                goto answer;
        }

        r = hsm_key_alg(h->hsm, g->uri, g->alg, &alg);
        if (r < 0) {
                _cleanup_free_ char *e = hsm_last_error(h->hsm);
                log_error_errno(r, "The signing key for fetch %llu cannot be used: %s",
                                (unsigned long long) req->fetch_id, e ? e : strerror(-r));
                grant_drop(h, (size_t) i);
                goto answer;
        }
        if (req->signing_input_len == 0) {
                g->asked_alg = true; /* the grant stays for the signature itself */
                goto answer;
        }

        r = jwt_check_signing_input((const char *) req->signing_input, req->signing_input_len, g->client_id,
                                    g->audience, alg, (int64_t) time(NULL), &why);
        if (r < 0)
                log_warning("net asked to sign an assertion the grant does not cover (fetch %llu): %s; refused",
                            (unsigned long long) req->fetch_id, why ? why : strerror(-r));
        else {
                r = hsm_sign(h->hsm, g->uri, alg, req->signing_input, req->signing_input_len, sig, &sig_len);
                if (r < 0) {
                        _cleanup_free_ char *e = hsm_last_error(h->hsm);
                        log_error_errno(r, "Signing the assertion of fetch %llu failed: %s",
                                        (unsigned long long) req->fetch_id, e ? e : strerror(-r));
                }
        }
        grant_drop(h, (size_t) i); /* g is gone from here on */
        if (r >= 0) {
                m.signature = sig;
                m.signature_len = sig_len;
        }

answer:
        if (r < 0) {
                m.error = r;
                m.description = (char *) sign_error_text(r);
        } else
                m.alg = (uint8_t) alg;
        buf_init(&out, msg_channel_max(CHAN_NET_HSM));
        r = msg_signature_encode(&m, &out);
        if (r == 0)
                r = msg_send(h->net_fd, &out, -1);
        buf_done(&out);
        return r;
}

static int handle_net(struct hsmproc *h) {
        for (;;) {
                struct msg_frame f;
                struct msg_secret_request req = {};
                int r = msg_recv(h->net_fd, CHAN_NET_HSM, true, h->rbuf, h->rbuf_size, &f);

                if (r == -EAGAIN)
                        return 0;
                if (r < 0 || f.type == 0) {
                        if (r < 0)
                                proc_report_peer_fault(ROLE_NET, "net", r);
                        else
                                log_info("net channel closed; waiting for a new one");
                        proc_close(&h->net_fd);
                        return 0;
                }
                if (f.type == MSG_HELLO)
                        r = proc_check_hello(&f);
                else if (f.type == MSG_SIGN_REQUEST) {
                        struct msg_sign_request sr = {};

                        r = msg_sign_request_decode(f.payload, f.len, &sr);
                        if (r == 0) {
                                int s = answer_sign_request(h, &sr);
                                if (s < 0 && s != -EAGAIN)
                                        log_warning_errno(s, "Sending a signature to net failed: %m");
                        }
                        msg_sign_request_clear(&sr);
                } else {
                        r = msg_secret_request_decode(f.payload, f.len, &req);
                        if (r == 0) {
                                int s = answer_secret_request(h, &req);
                                if (s < 0 && s != -EAGAIN)
                                        log_warning_errno(s, "Sending a secret to net failed: %m");
                        }
                        msg_secret_request_clear(&req);
                }
                if (r < 0) {
                        proc_report_peer_fault(ROLE_NET, "net", r);
                        proc_close(&h->net_fd);
                        return 0;
                }
        }
}

/* Returns 1 to go on, 0 to exit. */
static int handle_super(struct hsmproc *h) {
        for (;;) {
                struct msg_frame f;
                int r = msg_recv(h->super_fd, CHAN_SUPER_HSM, true, h->rbuf, h->rbuf_size, &f);

                if (r == -EAGAIN)
                        return 1;
                if (r < 0 || f.type == 0) {
                        log_info("supervisor channel closed, exiting");
                        return 0;
                }
                if (f.type == MSG_CHANNEL) {
                        struct msg_channel_fd c;
                        if (msg_channel_fd_decode(f.payload, f.len, &c) < 0 || f.fd < 0) {
                                proc_close(&f.fd);
                                continue;
                        }
                        (void) proc_set_nonblock(f.fd);
                        if (c.channel == CHAN_FRONT_HSM) {
                                /* Grants belong to the front that made them: a new front starts clean. */
                                grants_clear(h);
                                proc_close(&h->front_fd);
                                h->front_fd = f.fd;
                                proc_send_hello(h->front_fd, ROLE_HSM);
                        } else if (c.channel == CHAN_NET_HSM) {
                                proc_close(&h->net_fd);
                                h->net_fd = f.fd;
                                proc_send_hello(h->net_fd, ROLE_HSM);
                        } else
                                proc_close(&f.fd);
                }
        }
}

int hsmproc(const struct config *cfg, int front_fd, int net_fd, int super_fd) {
        struct hsm_params hp;
        _cleanup_free_ char *err = NULL;
        struct hsmproc h = {
                .cfg = cfg,
                .front_fd = front_fd,
                .net_fd = net_fd,
                .super_fd = super_fd,
        };
        int r, status = 1;

        log_set_ident("credagent-hsm");

        /* Open what it needs: the module, the token, the PIN source (checked, read at login). */
        config_hsm_params(cfg, &hp);
        r = hsm_open(&hp, &h.hsm, &err);
        if (r < 0) {
                log_error("Cannot open the PKCS#11 token: %s", err ? err : strerror(-r));
                return 2; /* the supervisor does not restart a child that cannot start at all */
        }
        h.rbuf_size = msg_channel_max(CHAN_SUPER_HSM) > msg_channel_max(CHAN_NET_HSM) ?
                msg_channel_max(CHAN_SUPER_HSM) : msg_channel_max(CHAN_NET_HSM);
        if (msg_channel_max(CHAN_FRONT_HSM) > h.rbuf_size)
                h.rbuf_size = msg_channel_max(CHAN_FRONT_HSM);
        h.rbuf = malloc(h.rbuf_size);
        h.signal_fd = proc_signalfd();
        if (!h.rbuf || h.signal_fd < 0)
                goto out;

        (void) proc_set_nonblock(h.front_fd);
        (void) proc_set_nonblock(h.net_fd);
        (void) proc_set_nonblock(h.super_fd);

        /* Drop what it does not need, then the filter. */
        sandbox_warm_up_openssl();
        sandbox_warm_up(SANDBOX_WARM_RESOLVER);
        r = sandbox_apply("hsm", &sandbox_policy_hsm);
        if (r < 0)
                goto out;
        proc_test_hooks("hsm");

        proc_send_hello(h.front_fd, ROLE_HSM);
        proc_send_hello(h.net_fd, ROLE_HSM);
        proc_send_hello(h.super_fd, ROLE_HSM);

        for (;;) {
                struct pollfd p[4] = {
                        { .fd = h.front_fd, .events = POLLIN },
                        { .fd = h.net_fd, .events = POLLIN },
                        { .fd = h.super_fd, .events = POLLIN },
                        { .fd = h.signal_fd, .events = POLLIN },
                };

                if (poll(p, 4, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_errno(errno, "poll() failed: %m");
                        break;
                }
                if (p[3].revents && proc_signal_wants_exit(h.signal_fd)) {
                        status = 0;
                        break;
                }
                if (p[0].revents)
                        (void) drain_front(&h);
                if (p[1].revents)
                        (void) handle_net(&h);
                if (p[2].revents && handle_super(&h) == 0) {
                        status = 0;
                        break;
                }
        }
out:
        grants_clear(&h);
        free(h.rbuf);
        hsm_close(h.hsm);
        return status;
}
