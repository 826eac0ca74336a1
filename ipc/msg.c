/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/config.h" /* enum client_auth, ASSERTION_LIFETIME_MAX, enum hsm_alg: headers only, no link dependency */
#include "ipc/apierror.h"
#include "ipc/msg.h"
#include "secmem.h"

/* The last valid enum client_auth value; a new method must be added here too. */
#define MSG_CLIENT_AUTH_LAST CLIENT_AUTH_PRIVATE_KEY_JWT
_Static_assert(CLIENT_AUTH_BASIC == 0 && CLIENT_AUTH_POST == 1 && CLIENT_AUTH_PRIVATE_KEY_JWT == 2,
               "client_auth values are on the wire");
_Static_assert(HSM_ALG_NONE == 0 && HSM_ALG_ES256 == 1 && HSM_ALG_RS256 == 2 && HSM_ALG_PS256 == 3 &&
               _HSM_ALG_MAX == MSG_ALG_MAX + 1, "hsm_alg values are on the wire");

/* Errno values are 1 … 4095 on Linux (MAX_ERRNO). */
#define MSG_ERRNO_MAX 4095

#define BIT(t) (UINT64_C(1) << (t))

static const struct {
        const char *name;
        size_t max;
        uint64_t from_a; /* BIT(type) for each type side A may send */
        uint64_t from_b;
} channels[_CHAN_MAX] = {
        [CHAN_FRONT_NET] = { "front-net", 64 * 1024,
                             BIT(MSG_HELLO) | BIT(MSG_FETCH),
                             BIT(MSG_HELLO) | BIT(MSG_FETCH_DONE) },
        [CHAN_FRONT_HSM] = { "front-hsm", 8 * 1024,
                             BIT(MSG_HELLO) | BIT(MSG_GRANT),
                             BIT(MSG_HELLO) },
        [CHAN_NET_HSM] = { "net-hsm", 16 * 1024,
                           BIT(MSG_HELLO) | BIT(MSG_SECRET_REQUEST) | BIT(MSG_SIGN_REQUEST),
                           BIT(MSG_HELLO) | BIT(MSG_SECRET) | BIT(MSG_SIGNATURE) },
        [CHAN_SUPER_FRONT] = { "supervisor-front", 8 * 1024,
                               BIT(MSG_HELLO) | BIT(MSG_CHANNEL) | BIT(MSG_CONFIG),
                               BIT(MSG_HELLO) | BIT(MSG_CONFIG_DONE) },
        [CHAN_SUPER_NET] = { "supervisor-net", 8 * 1024,
                             BIT(MSG_HELLO) | BIT(MSG_CHANNEL) | BIT(MSG_CONFIG),
                             BIT(MSG_HELLO) },
        [CHAN_SUPER_HSM] = { "supervisor-hsm", 8 * 1024,
                             BIT(MSG_HELLO) | BIT(MSG_CHANNEL) | BIT(MSG_CONFIG),
                             BIT(MSG_HELLO) },
        [CHAN_CONFIG] = { "config-supervisor", 8 * 1024,
                          BIT(MSG_CONFIG),
                          0 },
};

size_t msg_channel_max(enum msg_channel c) {
        return (unsigned) c < _CHAN_MAX ? channels[c].max : 0;
}

bool msg_type_allowed(enum msg_channel c, bool from_a, uint8_t type) {
        if ((unsigned) c >= _CHAN_MAX || type >= 64)
                return false;
        return (from_a ? channels[c].from_a : channels[c].from_b) & BIT(type);
}

const char *msg_type_name(uint8_t type) {
        switch (type) {
        case MSG_HELLO:
                return "HELLO";
        case MSG_FETCH:
                return "FETCH";
        case MSG_FETCH_DONE:
                return "FETCH_DONE";
        case MSG_GRANT:
                return "GRANT";
        case MSG_SECRET_REQUEST:
                return "SECRET_REQUEST";
        case MSG_SECRET:
                return "SECRET";
        case MSG_SIGN_REQUEST:
                return "SIGN_REQUEST";
        case MSG_SIGNATURE:
                return "SIGNATURE";
        case MSG_CHANNEL:
                return "CHANNEL";
        case MSG_CONFIG:
                return "CONFIG";
        case MSG_CONFIG_DONE:
                return "CONFIG_DONE";
        default:
                return "UNKNOWN";
        }
}

const char *msg_role_name(uint8_t role) {
        switch (role) {
        case ROLE_SUPERVISOR:
                return "supervisor";
        case ROLE_FRONT:
                return "front";
        case ROLE_NET:
                return "net";
        case ROLE_HSM:
                return "hsm";
        default:
                return "UNKNOWN";
        }
}

const char *msg_channel_name(enum msg_channel c) {
        return (unsigned) c < _CHAN_MAX ? channels[c].name : "UNKNOWN";
}

/* The largest frame TYPE may be: the maximum of the channels that carry it, 0 if none. */
static size_t type_max(uint8_t type) {
        size_t max = 0;

        for (unsigned c = 0; c < _CHAN_MAX; c++)
                if ((msg_type_allowed(c, true, type) || msg_type_allowed(c, false, type)) && channels[c].max > max)
                        max = channels[c].max;
        return max;
}

/* ---- Frames ------------------------------------------------------------------------ */

/* Wipes and drops everything of OUT from START on. */
static void buf_truncate(struct buf *out, size_t start) {
        if (start >= out->len)
                return;
        secure_wipe(out->data + start, out->len - start);
        out->len = start;
        if (out->off > start)
                out->off = start;
}

int msg_frame_begin(struct buf *out, uint8_t type, size_t *ret_start) {
        size_t start = out->len;
        int r;

        r = buf_put_u32(out, 0);
        if (r >= 0)
                r = buf_put_u8(out, type);
        if (r < 0) {
                buf_truncate(out, start);
                return r;
        }
        *ret_start = start;
        return 0;
}

int msg_frame_end(struct buf *out, size_t start, int r) {
        size_t n = 0;
        uint8_t *h;

        if (r >= 0 && (start > out->len || out->len - start < MSG_HEADER_SIZE))
                r = -EINVAL;
        if (r >= 0) {
                n = out->len - start;
                if (n > type_max(out->data[start + 4]))
                        r = -EMSGSIZE;
        }
        if (r < 0) {
                buf_truncate(out, start);
                return r;
        }
        n -= MSG_HEADER_SIZE;
        h = out->data + start;
        h[0] = (uint8_t) (n >> 24);
        h[1] = (uint8_t) (n >> 16);
        h[2] = (uint8_t) (n >> 8);
        h[3] = (uint8_t) n;
        return 0;
}

int msg_frame_parse(enum msg_channel c, bool from_a, const uint8_t *p, size_t n, struct msg_frame *ret) {
        uint32_t len;

        if ((unsigned) c >= _CHAN_MAX)
                return -EINVAL;
        if (n > channels[c].max)
                return -EMSGSIZE;
        if (n < MSG_HEADER_SIZE)
                return -EBADMSG;
        len = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
        if (len != n - MSG_HEADER_SIZE)
                return -EBADMSG;
        if (!msg_type_allowed(c, from_a, p[4]))
                return -EPROTO;

        *ret = (struct msg_frame) {
                .type = p[4],
                .payload = p + MSG_HEADER_SIZE,
                .len = len,
                .fd = -1,
        };
        return 0;
}

/* ---- Field helpers ----------------------------------------------------------------- */

/* A string that may be NULL, at most MAX bytes, without NUL (strlen() guarantees that). */
static int put_str(struct buf *b, const char *s, size_t max) {
        if (s && strlen(s) > max)
                return -EMSGSIZE;
        return buf_put_str(b, s);
}

/* A string that must not be NULL. */
static int get_str_required(struct buf *b, size_t max, char **ret) {
        char *s = NULL;
        int r = buf_get_str(b, max, &s);

        if (r < 0)
                return r;
        if (!s)
                return -EBADMSG;
        *ret = s;
        return 0;
}

static int get_bool(struct buf *b, uint8_t *ret) {
        uint8_t v;
        int r = buf_get_u8(b, &v);

        if (r < 0)
                return r;
        if (v > 1)
                return -EBADMSG;
        *ret = v;
        return 0;
}

/* Every byte consumed? */
static int get_end(const struct buf *b) {
        return buf_remaining(b) == 0 ? 0 : -EBADMSG;
}

/* ---- HELLO ------------------------------------------------------------------------- */

static bool role_valid(uint8_t role) {
        return role >= ROLE_SUPERVISOR && role <= ROLE_HSM;
}

int msg_hello_encode(const struct msg_hello *m, struct buf *out) {
        size_t start;
        int r;

        if (!role_valid(m->role))
                return -EINVAL;
        r = msg_frame_begin(out, MSG_HELLO, &start);
        if (r < 0)
                return r;
        r = buf_put_u32(out, m->version);
        if (r >= 0)
                r = buf_put_u8(out, m->role);
        return msg_frame_end(out, start, r);
}

int msg_hello_decode(const uint8_t *p, size_t n, struct msg_hello *ret) {
        struct msg_hello m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u32(&b, &m.version);
        if (r >= 0)
                r = buf_get_u8(&b, &m.role);
        if (r >= 0 && !role_valid(m.role))
                r = -EBADMSG;
        if (r >= 0)
                r = get_end(&b);
        if (r < 0) {
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

/* ---- FETCH ------------------------------------------------------------------------- */

static int fetch_check(const struct msg_fetch *m) {
        if (!m->token_url == !m->issuer || !m->client_id)
                return -EINVAL;
        if ((m->audience && !m->audience[0]) || (m->resource && !m->resource[0]) ||
            (m->token_params && !m->token_params[0]))
                return -EINVAL;
        if (m->client_auth > MSG_CLIENT_AUTH_LAST || m->allow_insecure_loopback > 1)
                return -EINVAL;
        if (m->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT) {
                if (m->client_secret_uri || !m->client_key_uri || !m->assertion_audience ||
                    m->assertion_lifetime < 1 || m->assertion_lifetime > ASSERTION_LIFETIME_MAX)
                        return -EINVAL;
        } else if (!m->client_secret_uri || m->client_key_uri || m->assertion_audience || m->assertion_lifetime ||
                   m->key_id)
                return -EINVAL;
        return 0;
}

int msg_fetch_encode(const struct msg_fetch *m, struct buf *out) {
        size_t start;
        int r;

        r = fetch_check(m);
        if (r < 0)
                return r;
        r = msg_frame_begin(out, MSG_FETCH, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = put_str(out, m->token_url, MSG_URL_MAX);
        if (r >= 0)
                r = buf_put_u8(out, m->client_auth);
        if (r >= 0)
                r = put_str(out, m->client_id, MSG_ID_MAX);
        if (r >= 0)
                r = put_str(out, m->scope, MSG_SCOPE_MAX);
        if (r >= 0)
                r = put_str(out, m->client_secret_uri, MSG_ID_MAX);
        if (r >= 0)
                r = buf_put_u8(out, m->allow_insecure_loopback);
        if (r >= 0)
                r = buf_put_u32(out, m->connect_timeout);
        if (r >= 0)
                r = buf_put_u32(out, m->timeout);
        if (r >= 0)
                r = buf_put_u32(out, m->default_ttl);
        if (r >= 0)
                r = buf_put_u32(out, m->max_ttl);
        if (r >= 0)
                r = put_str(out, m->client_key_uri, MSG_ID_MAX);
        if (r >= 0)
                r = put_str(out, m->assertion_audience, MSG_URL_MAX);
        if (r >= 0)
                r = buf_put_u32(out, m->assertion_lifetime);
        if (r >= 0)
                r = put_str(out, m->key_id, MSG_TEXT_MAX);
        if (r >= 0)
                r = put_str(out, m->issuer, MSG_URL_MAX);
        if (r >= 0)
                r = put_str(out, m->audience, MSG_URL_MAX);
        if (r >= 0)
                r = put_str(out, m->resource, MSG_PARAMS_MAX);
        if (r >= 0)
                r = put_str(out, m->token_params, MSG_PARAMS_MAX);
        return msg_frame_end(out, start, r);
}

int msg_fetch_decode(const uint8_t *p, size_t n, struct msg_fetch *ret) {
        struct msg_fetch m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = buf_get_str(&b, MSG_URL_MAX, &m.token_url);
        if (r >= 0)
                r = buf_get_u8(&b, &m.client_auth);
        if (r >= 0 && m.client_auth > MSG_CLIENT_AUTH_LAST)
                r = -EBADMSG;
        if (r >= 0)
                r = get_str_required(&b, MSG_ID_MAX, &m.client_id);
        if (r >= 0)
                r = buf_get_str(&b, MSG_SCOPE_MAX, &m.scope);
        if (r >= 0)
                r = buf_get_str(&b, MSG_ID_MAX, &m.client_secret_uri);
        if (r >= 0)
                r = get_bool(&b, &m.allow_insecure_loopback);
        if (r >= 0)
                r = buf_get_u32(&b, &m.connect_timeout);
        if (r >= 0)
                r = buf_get_u32(&b, &m.timeout);
        if (r >= 0)
                r = buf_get_u32(&b, &m.default_ttl);
        if (r >= 0)
                r = buf_get_u32(&b, &m.max_ttl);
        if (r >= 0)
                r = buf_get_str(&b, MSG_ID_MAX, &m.client_key_uri);
        if (r >= 0)
                r = buf_get_str(&b, MSG_URL_MAX, &m.assertion_audience);
        if (r >= 0)
                r = buf_get_u32(&b, &m.assertion_lifetime);
        if (r >= 0)
                r = buf_get_str(&b, MSG_TEXT_MAX, &m.key_id);
        if (r >= 0)
                r = buf_get_str(&b, MSG_URL_MAX, &m.issuer);
        if (r >= 0)
                r = buf_get_str(&b, MSG_URL_MAX, &m.audience);
        if (r >= 0)
                r = buf_get_str(&b, MSG_PARAMS_MAX, &m.resource);
        if (r >= 0)
                r = buf_get_str(&b, MSG_PARAMS_MAX, &m.token_params);
        if (r >= 0)
                r = get_end(&b);
        if (r >= 0 && fetch_check(&m) < 0)
                r = -EBADMSG;
        if (r < 0) {
                msg_fetch_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

void msg_fetch_clear(struct msg_fetch *m) {
        free(m->token_url);
        free(m->client_id);
        free(m->scope);
        free(m->client_secret_uri);
        free(m->client_key_uri);
        free(m->assertion_audience);
        free(m->key_id);
        free(m->issuer);
        free(m->audience);
        free(m->resource);
        free(m->token_params);
        *m = (struct msg_fetch) {};
}

/* ---- FETCH_DONE -------------------------------------------------------------------- */

static int fetch_done_check(const struct msg_fetch_done *m) {
        if (m->error >= _API_ERROR_MAX)
                return -EINVAL;
        if (m->error == API_OK ? !m->access_token || !m->access_token[0] : m->access_token != NULL)
                return -EINVAL;
        if (m->retry_after > MSG_RETRY_AFTER_MAX || (m->error == API_OK && m->retry_after != 0))
                return -EINVAL;
        if (m->error == API_OK) {
                for (size_t i = 0; i < MSG_FP_LEN; i++)
                        if (!strchr("0123456789abcdef", m->fingerprint[i]) || !m->fingerprint[i])
                                return -EINVAL;
                if (m->fingerprint[MSG_FP_LEN])
                        return -EINVAL;
        } else if (m->fingerprint[0])
                return -EINVAL;
        return 0;
}

int msg_fetch_done_encode(const struct msg_fetch_done *m, struct buf *out) {
        size_t start;
        int r;

        r = fetch_done_check(m);
        if (r < 0)
                return r;
        r = msg_frame_begin(out, MSG_FETCH_DONE, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = buf_put_u8(out, m->error);
        if (r >= 0)
                r = buf_put_u32(out, m->http_status);
        if (r >= 0)
                r = buf_put_u32(out, m->expires_in);
        if (r >= 0)
                r = put_str(out, m->access_token, MSG_TOKEN_MAX);
        if (r >= 0)
                r = put_str(out, m->scope, MSG_SCOPE_MAX);
        if (r >= 0)
                r = put_str(out, m->idp_error, MSG_TEXT_MAX);
        if (r >= 0)
                r = put_str(out, m->description, MSG_TEXT_MAX);
        if (r >= 0)
                r = buf_put_u32(out, m->retry_after);
        if (r >= 0)
                r = put_str(out, m->fingerprint[0] ? m->fingerprint : NULL, MSG_FP_LEN);
        return msg_frame_end(out, start, r);
}

int msg_fetch_done_decode(const uint8_t *p, size_t n, struct msg_fetch_done *ret) {
        struct msg_fetch_done m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = buf_get_u8(&b, &m.error);
        if (r >= 0)
                r = buf_get_u32(&b, &m.http_status);
        if (r >= 0)
                r = buf_get_u32(&b, &m.expires_in);
        if (r >= 0)
                r = buf_get_str(&b, MSG_TOKEN_MAX, &m.access_token);
        if (r >= 0)
                r = buf_get_str(&b, MSG_SCOPE_MAX, &m.scope);
        if (r >= 0)
                r = buf_get_str(&b, MSG_TEXT_MAX, &m.idp_error);
        if (r >= 0)
                r = buf_get_str(&b, MSG_TEXT_MAX, &m.description);
        if (r >= 0)
                r = buf_get_u32(&b, &m.retry_after);
        if (r >= 0) {
                char *fp = NULL;

                r = buf_get_str(&b, MSG_FP_LEN, &fp);
                if (r >= 0 && fp)
                        memcpy(m.fingerprint, fp, strlen(fp) + 1);
                free(fp);
        }
        if (r >= 0)
                r = get_end(&b);
        if (r >= 0 && fetch_done_check(&m) < 0)
                r = -EBADMSG;
        if (r < 0) {
                msg_fetch_done_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

void msg_fetch_done_clear(struct msg_fetch_done *m) {
        free_wiped(m->access_token);
        free(m->scope);
        free(m->idp_error);
        free(m->description);
        *m = (struct msg_fetch_done) {};
}

/* ---- GRANT ------------------------------------------------------------------------- */

static int grant_check(const struct msg_grant *m) {
        if (!m->client_secret_uri == !m->client_key_uri)
                return -EINVAL;
        if (m->client_key_uri)
                return m->client_id && m->audience && m->assertion_alg <= MSG_ALG_MAX ? 0 : -EINVAL;
        return !m->client_id && !m->audience && m->assertion_alg == 0 ? 0 : -EINVAL;
}

int msg_grant_encode(const struct msg_grant *m, struct buf *out) {
        size_t start;
        int r;

        r = grant_check(m);
        if (r < 0)
                return r;
        r = msg_frame_begin(out, MSG_GRANT, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = put_str(out, m->client_secret_uri, MSG_ID_MAX);
        if (r >= 0)
                r = put_str(out, m->client_key_uri, MSG_ID_MAX);
        if (r >= 0)
                r = put_str(out, m->client_id, MSG_ID_MAX);
        if (r >= 0)
                r = put_str(out, m->audience, MSG_URL_MAX);
        if (r >= 0)
                r = buf_put_u8(out, m->assertion_alg);
        return msg_frame_end(out, start, r);
}

int msg_grant_decode(const uint8_t *p, size_t n, struct msg_grant *ret) {
        struct msg_grant m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = buf_get_str(&b, MSG_ID_MAX, &m.client_secret_uri);
        if (r >= 0)
                r = buf_get_str(&b, MSG_ID_MAX, &m.client_key_uri);
        if (r >= 0)
                r = buf_get_str(&b, MSG_ID_MAX, &m.client_id);
        if (r >= 0)
                r = buf_get_str(&b, MSG_URL_MAX, &m.audience);
        if (r >= 0)
                r = buf_get_u8(&b, &m.assertion_alg);
        if (r >= 0)
                r = get_end(&b);
        if (r >= 0 && grant_check(&m) < 0)
                r = -EBADMSG;
        if (r < 0) {
                msg_grant_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

void msg_grant_clear(struct msg_grant *m) {
        free(m->client_secret_uri);
        free(m->client_key_uri);
        free(m->client_id);
        free(m->audience);
        *m = (struct msg_grant) {};
}

/* ---- SECRET_REQUEST ---------------------------------------------------------------- */

int msg_secret_request_encode(const struct msg_secret_request *m, struct buf *out) {
        size_t start;
        int r;

        if (!m->client_secret_uri)
                return -EINVAL;
        r = msg_frame_begin(out, MSG_SECRET_REQUEST, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = put_str(out, m->client_secret_uri, MSG_ID_MAX);
        return msg_frame_end(out, start, r);
}

int msg_secret_request_decode(const uint8_t *p, size_t n, struct msg_secret_request *ret) {
        struct msg_secret_request m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = get_str_required(&b, MSG_ID_MAX, &m.client_secret_uri);
        if (r >= 0)
                r = get_end(&b);
        if (r < 0) {
                msg_secret_request_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

void msg_secret_request_clear(struct msg_secret_request *m) {
        free(m->client_secret_uri);
        *m = (struct msg_secret_request) {};
}

/* ---- SECRET ------------------------------------------------------------------------ */

static int secret_check(const struct msg_secret *m) {
        if (m->error > 0 || m->error < -MSG_ERRNO_MAX)
                return -EINVAL;
        if (m->error == 0 && (m->description || (!m->secret && m->secret_len > 0)))
                return -EINVAL;
        if (m->error != 0 && m->secret_len > 0)
                return -EINVAL;
        return 0;
}

int msg_secret_encode(const struct msg_secret *m, struct buf *out) {
        size_t start;
        int r;

        r = secret_check(m);
        if (r < 0)
                return r;
        if (m->secret_len > MSG_SECRET_MAX)
                return -EMSGSIZE;
        r = msg_frame_begin(out, MSG_SECRET, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = buf_put_u32(out, (uint32_t) m->error);
        if (r >= 0)
                r = put_str(out, m->description, MSG_TEXT_MAX);
        if (r >= 0)
                r = buf_put_bytes(out, m->secret, m->secret_len);
        return msg_frame_end(out, start, r);
}

int msg_secret_decode(const uint8_t *p, size_t n, struct msg_secret *ret) {
        struct msg_secret m = {};
        uint32_t error;
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = buf_get_u32(&b, &error);
        if (r >= 0) {
                m.error = (int32_t) error;
                r = buf_get_str(&b, MSG_TEXT_MAX, &m.description);
        }
        if (r >= 0)
                r = buf_get_bytes(&b, MSG_SECRET_MAX, &m.secret, &m.secret_len);
        if (r >= 0)
                r = get_end(&b);
        if (r >= 0 && secret_check(&m) < 0)
                r = -EBADMSG;
        if (r < 0) {
                msg_secret_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        if (m.secret_len == 0)
                m.secret = NULL;
        *ret = m;
        return 0;
}

void msg_secret_clear(struct msg_secret *m) {
        free(m->description);
        *m = (struct msg_secret) {};
}

/* ---- SIGN_REQUEST ------------------------------------------------------------------ */

int msg_sign_request_encode(const struct msg_sign_request *m, struct buf *out) {
        size_t start;
        int r;

        if (!m->client_key_uri || (!m->signing_input && m->signing_input_len > 0))
                return -EINVAL;
        if (m->signing_input_len > MSG_SIGNING_INPUT_MAX)
                return -EMSGSIZE;
        r = msg_frame_begin(out, MSG_SIGN_REQUEST, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = put_str(out, m->client_key_uri, MSG_ID_MAX);
        if (r >= 0)
                r = buf_put_bytes(out, m->signing_input, m->signing_input_len);
        return msg_frame_end(out, start, r);
}

int msg_sign_request_decode(const uint8_t *p, size_t n, struct msg_sign_request *ret) {
        struct msg_sign_request m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = get_str_required(&b, MSG_ID_MAX, &m.client_key_uri);
        if (r >= 0)
                r = buf_get_bytes(&b, MSG_SIGNING_INPUT_MAX, &m.signing_input, &m.signing_input_len);
        if (r >= 0)
                r = get_end(&b);
        if (r < 0) {
                msg_sign_request_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        if (m.signing_input_len == 0)
                m.signing_input = NULL;
        *ret = m;
        return 0;
}

void msg_sign_request_clear(struct msg_sign_request *m) {
        free(m->client_key_uri);
        *m = (struct msg_sign_request) {};
}

/* ---- SIGNATURE --------------------------------------------------------------------- */

static int signature_check(const struct msg_signature *m) {
        if (m->error > 0 || m->error < -MSG_ERRNO_MAX)
                return -EINVAL;
        if (m->error == 0)
                return m->description || m->alg < 1 || m->alg > MSG_ALG_MAX ||
                       (!m->signature && m->signature_len > 0) ? -EINVAL : 0;
        return m->alg != 0 || m->signature_len > 0 ? -EINVAL : 0;
}

int msg_signature_encode(const struct msg_signature *m, struct buf *out) {
        size_t start;
        int r;

        r = signature_check(m);
        if (r < 0)
                return r;
        if (m->signature_len > MSG_SIGNATURE_MAX)
                return -EMSGSIZE;
        r = msg_frame_begin(out, MSG_SIGNATURE, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->fetch_id);
        if (r >= 0)
                r = buf_put_u32(out, (uint32_t) m->error);
        if (r >= 0)
                r = put_str(out, m->description, MSG_TEXT_MAX);
        if (r >= 0)
                r = buf_put_u8(out, m->alg);
        if (r >= 0)
                r = buf_put_bytes(out, m->signature, m->signature_len);
        return msg_frame_end(out, start, r);
}

int msg_signature_decode(const uint8_t *p, size_t n, struct msg_signature *ret) {
        struct msg_signature m = {};
        uint32_t error;
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.fetch_id);
        if (r >= 0)
                r = buf_get_u32(&b, &error);
        if (r >= 0) {
                m.error = (int32_t) error;
                r = buf_get_str(&b, MSG_TEXT_MAX, &m.description);
        }
        if (r >= 0)
                r = buf_get_u8(&b, &m.alg);
        if (r >= 0)
                r = buf_get_bytes(&b, MSG_SIGNATURE_MAX, &m.signature, &m.signature_len);
        if (r >= 0)
                r = get_end(&b);
        if (r >= 0 && signature_check(&m) < 0)
                r = -EBADMSG;
        if (r < 0) {
                msg_signature_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        if (m.signature_len == 0)
                m.signature = NULL;
        *ret = m;
        return 0;
}

void msg_signature_clear(struct msg_signature *m) {
        free(m->description);
        *m = (struct msg_signature) {};
}

/* ---- CHANNEL ----------------------------------------------------------------------- */

int msg_channel_fd_encode(const struct msg_channel_fd *m, struct buf *out) {
        size_t start;
        int r;

        if (m->channel >= _CHAN_MAX)
                return -EINVAL;
        r = msg_frame_begin(out, MSG_CHANNEL, &start);
        if (r < 0)
                return r;
        r = buf_put_u8(out, m->channel);
        return msg_frame_end(out, start, r);
}

int msg_channel_fd_decode(const uint8_t *p, size_t n, struct msg_channel_fd *ret) {
        struct msg_channel_fd m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u8(&b, &m.channel);
        if (r >= 0 && m.channel >= _CHAN_MAX)
                r = -EBADMSG;
        if (r >= 0)
                r = get_end(&b);
        if (r < 0)
                memset(ret, 0, sizeof *ret);
        else
                *ret = m;
        return r;
}

/* ---- CONFIG ----------------------------------------------------------------------- */

int msg_config_encode(const struct msg_config *m, struct buf *out) {
        size_t start;
        int r;

        if (m->size == 0 || m->size > MSG_CONFIG_SIZE_MAX)
                return -EINVAL;
        r = msg_frame_begin(out, MSG_CONFIG, &start);
        if (r < 0)
                return r;
        r = buf_put_u64(out, m->size);
        return msg_frame_end(out, start, r);
}

int msg_config_decode(const uint8_t *p, size_t n, struct msg_config *ret) {
        struct msg_config m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u64(&b, &m.size);
        if (r >= 0 && (m.size == 0 || m.size > MSG_CONFIG_SIZE_MAX))
                r = -EBADMSG;
        if (r >= 0)
                r = get_end(&b);
        if (r < 0)
                memset(ret, 0, sizeof *ret);
        else
                *ret = m;
        return r;
}

/* ---- CONFIG_DONE ------------------------------------------------------------------- */

int msg_config_done_encode(const struct msg_config_done *m, struct buf *out) {
        size_t start;
        int r;

        r = msg_frame_begin(out, MSG_CONFIG_DONE, &start);
        if (r < 0)
                return r;
        r = buf_put_u8(out, m->status);
        if (r >= 0)
                r = put_str(out, m->reason, MSG_REASON_MAX);
        return msg_frame_end(out, start, r);
}

int msg_config_done_decode(const uint8_t *p, size_t n, struct msg_config_done *ret) {
        struct msg_config_done m = {};
        struct buf b;
        int r;

        buf_view(&b, p, n);
        r = buf_get_u8(&b, &m.status);
        if (r >= 0)
                r = buf_get_str(&b, MSG_REASON_MAX, &m.reason);
        if (r >= 0)
                r = get_end(&b);
        if (r < 0) {
                msg_config_done_clear(&m);
                memset(ret, 0, sizeof *ret);
                return r;
        }
        *ret = m;
        return 0;
}

void msg_config_done_clear(struct msg_config_done *m) {
        free(m->reason);
        *m = (struct msg_config_done) {};
}

/* ---- Sockets ----------------------------------------------------------------------- */

int msg_send(int fd, const struct buf *frame, int fd_to_pass) {
        union {
                struct cmsghdr h;
                uint8_t space[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        uint32_t len;
        ssize_t n;

        if (frame->len < MSG_HEADER_SIZE)
                return -EINVAL;
        len = (uint32_t) frame->data[0] << 24 | (uint32_t) frame->data[1] << 16 | (uint32_t) frame->data[2] << 8 |
              frame->data[3];
        if (len != frame->len - MSG_HEADER_SIZE)
                return -EINVAL;

        iov = (struct iovec) { .iov_base = frame->data, .iov_len = frame->len };
        if (fd_to_pass >= 0) {
                struct cmsghdr *c;

                mh.msg_control = &control;
                mh.msg_controllen = sizeof control;
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
        }

        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if ((size_t) n != frame->len)
                return -EIO; /* cannot happen on SOCK_SEQPACKET: a datagram goes whole or not at all */
        return 0;
}

/* Room for a few fds, so that a peer sending more than one is noticed (and they are closed)
 * rather than having the kernel drop the rest silently. */
#define RECV_FDS_MAX 8

int msg_recv(int fd, enum msg_channel c, bool from_a, uint8_t *buf, size_t buf_size, struct msg_frame *ret) {
        union {
                struct cmsghdr h;
                uint8_t space[CMSG_SPACE(sizeof(int) * RECV_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = buf_size };
        struct msghdr mh;
        struct msg_frame f;
        int fds[RECV_FDS_MAX], n_fds = 0, r;
        ssize_t n;

        if ((unsigned) c >= _CHAN_MAX)
                return -EINVAL;
        if (buf_size < MSG_HEADER_SIZE)
                return -EINVAL;

        do {
                mh = (struct msghdr) {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof control,
                };
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && errno == ECONNRESET)
                n = 0; /* the peer closed with frames of ours unread: that is an end of stream too */
        if (n < 0)
                return -errno;

        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                size_t k;

                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue; /* SCM_CREDENTIALS is never trusted, nor anything else */
                k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int x;

                        memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (n_fds < RECV_FDS_MAX)
                                fds[n_fds++] = x;
                        else
                                (void) close(x);
                }
        }

        if (n == 0 && n_fds == 0 && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                *ret = (struct msg_frame) { .fd = -1 };
                return 0;
        }

        if (mh.msg_flags & MSG_TRUNC)
                r = -EMSGSIZE;
        else if (mh.msg_flags & MSG_CTRUNC || n_fds > 1)
                r = -EPROTO;
        else
                r = msg_frame_parse(c, from_a, buf, (size_t) n, &f);
        if (r >= 0 && (f.type == MSG_CHANNEL || f.type == MSG_CONFIG) != (n_fds == 1))
                r = -EPROTO;
        if (r < 0) {
                for (int i = 0; i < n_fds; i++)
                        (void) close(fds[i]);
                return r;
        }

        f.fd = n_fds == 1 ? fds[0] : -1;
        *ret = f;
        return 0;
}
