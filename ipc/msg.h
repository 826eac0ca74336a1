/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/buf.h"

/* Internal messages between credagent's processes (ipc/PROTOCOL.md).
 *
 * Channels are SOCK_SEQPACKET socketpairs, one per edge.  One datagram is one frame:
 *     u32 length of the payload (big-endian) | u8 type | payload
 * The first frame each side sends on a channel is MSG_HELLO with MSG_VERSION.  Each channel
 * has a hard maximum frame size and a set of types each direction may send; a frame that is
 * oversized, truncated, of a type not allowed on that channel and direction, or whose
 * payload does not decode exactly (no trailing bytes) makes the receiver drop the channel;
 * the supervisor then restarts the peer. */

#define MSG_VERSION 5
#define MSG_HEADER_SIZE 5

enum msg_type {
        MSG_HELLO = 1,          /* any: u32 version, u8 role */
        MSG_FETCH = 10,         /* front → net: run a token request */
        MSG_FETCH_DONE = 11,    /* net → front: its outcome */
        MSG_GRANT = 20,         /* front → hsm: net may get this secret for this fetch */
        MSG_SECRET_REQUEST = 30,/* net → hsm: the secret for a granted fetch */
        MSG_SECRET = 31,        /* hsm → net: the secret, or why not */
        MSG_SIGN_REQUEST = 32,  /* net → hsm: sign a client assertion for a granted fetch */
        MSG_SIGNATURE = 33,     /* hsm → net: the signature, or why not */
        MSG_CHANNEL = 40,       /* supervisor → child: a replacement channel fd (SCM_RIGHTS) */
        MSG_CONFIG = 41,        /* supervisor → child: its configuration, in a sealed memfd */
        MSG_CONFIG_DONE = 42,   /* front → supervisor: config applied (u8 0) or refused */
};

enum msg_role {
        ROLE_SUPERVISOR = 1,
        ROLE_FRONT = 2,
        ROLE_NET = 3,
        ROLE_HSM = 4,
};

enum msg_channel {
        CHAN_FRONT_NET,   /* side A = front, side B = net */
        CHAN_FRONT_HSM,   /* A = front, B = hsm */
        CHAN_NET_HSM,     /* A = net, B = hsm */
        CHAN_SUPER_FRONT, /* A = supervisor, B = front */
        CHAN_SUPER_NET,   /* A = supervisor, B = net */
        CHAN_SUPER_HSM,   /* A = supervisor, B = hsm */
        CHAN_CONFIG,      /* A = credagent-config, B = supervisor: the loaded configuration */
        _CHAN_MAX,
};

/* Returns the hard maximum frame size (header included) of channel C, in bytes. */
size_t msg_channel_max(enum msg_channel c);

/* Returns true when TYPE may be sent on channel C by side A (FROM_A) or side B. */
bool msg_type_allowed(enum msg_channel c, bool from_a, uint8_t type);

/* Name of TYPE for logs ("FETCH", …), "UNKNOWN" otherwise. */
const char *msg_type_name(uint8_t type);
const char *msg_role_name(uint8_t role);
const char *msg_channel_name(enum msg_channel c);

/* Limits on fields, bytes. */
#define MSG_URL_MAX 2048
#define MSG_ID_MAX 1024         /* client_id, URIs, names */
#define MSG_SCOPE_MAX 4096
#define MSG_TOKEN_MAX (16 * 1024)
#define MSG_TEXT_MAX 256        /* descriptions, error codes */
#define MSG_SECRET_MAX 4096
#define MSG_REASON_MAX 4096     /* CONFIG_DONE's reason */
#define MSG_SIGNING_INPUT_MAX 8192 /* SIGN_REQUEST's JWS signing input */
#define MSG_SIGNATURE_MAX 512   /* SIGNATURE's signature (RSA 4096) */
#define MSG_ALG_MAX 3           /* enum hsm_alg: 0 none, 1 ES256, 2 RS256, 3 PS256 */
#define MSG_PARAMS_MAX 4096     /* FETCH's resource list and token_params */
#define MSG_RETRY_AFTER_MAX 3600 /* FETCH_DONE's retry_after, seconds */
#define MSG_FP_LEN 8            /* FETCH_DONE's fingerprint, hex digits */

struct msg_hello {
        uint32_t version;
        uint8_t role;
};

struct msg_fetch {
        uint64_t fetch_id;
        char *token_url;                /* exactly one of token_url and issuer */
        uint8_t client_auth;            /* enum client_auth */
        char *client_id;
        char *scope;                    /* may be NULL */
        char *client_secret_uri;        /* basic, post: required; private_key_jwt: NULL */
        uint8_t allow_insecure_loopback;
        uint32_t connect_timeout, timeout, default_ttl, max_ttl; /* s */
        /* client_auth = private_key_jwt only (NULL / 0 otherwise): */
        char *client_key_uri;           /* required */
        char *assertion_audience;       /* required */
        uint32_t assertion_lifetime;    /* s, 1 … ASSERTION_LIFETIME_MAX */
        char *key_id;                   /* may be NULL */
        /* Version 4: */
        char *issuer;                   /* discovery (agent/discovery.h): instead of token_url */
        char *audience;                 /* may be NULL */
        char *resource;                 /* may be NULL; URIs separated by single spaces */
        char *token_params;             /* may be NULL; oauth_token_params_parse()'s normal form */
};

struct msg_fetch_done {
        uint64_t fetch_id;
        uint8_t error;                  /* enum api_error; 0 = a token */
        uint32_t http_status;
        uint32_t expires_in;            /* s */
        char *access_token;             /* error == 0 only; wiped by msg_fetch_done_clear() */
        char *scope;                    /* may be NULL */
        char *idp_error;                /* may be NULL */
        char *description;              /* may be NULL */
        uint32_t retry_after;           /* s, the token endpoint's Retry-After (429, 503), clamped
                                           to 1 … MSG_RETRY_AFTER_MAX; 0 = none (always 0 with a token) */
        char fingerprint[MSG_FP_LEN + 1]; /* error == 0: the token's log fingerprint (log_fingerprint(),
                                           MSG_FP_LEN lower-case hex digits), computed by net so
                                           that the front needs no hash library; "" otherwise */
};

/* Either a secret grant (client_secret_uri, nothing else) or a key grant (client_key_uri,
 * client_id and audience, and the algorithm asked for). */
struct msg_grant {
        uint64_t fetch_id;
        char *client_secret_uri;        /* may be NULL */
        char *client_key_uri;           /* may be NULL */
        char *client_id;                /* key grants: the assertion's iss and sub */
        char *audience;                 /* key grants: the assertion's aud */
        uint8_t assertion_alg;          /* key grants: enum hsm_alg, 0 = by the key */
};

struct msg_secret_request {
        uint64_t fetch_id;
        char *client_secret_uri;
};

struct msg_secret {
        uint64_t fetch_id;
        int32_t error;                  /* 0, or a negative errno from hsm_read_secret() */
        char *description;              /* error != 0: why, may be NULL */
        const uint8_t *secret;          /* error == 0: points into the received frame */
        size_t secret_len;
};

struct msg_sign_request {
        uint64_t fetch_id;
        char *client_key_uri;
        const uint8_t *signing_input;   /* points into the received frame; empty: "which alg?" */
        size_t signing_input_len;
};

struct msg_signature {
        uint64_t fetch_id;
        int32_t error;                  /* 0, or a negative errno */
        char *description;              /* error != 0: why, may be NULL */
        uint8_t alg;                    /* error == 0: enum hsm_alg (1 … MSG_ALG_MAX) */
        const uint8_t *signature;       /* error == 0: points into the received frame; empty for
                                           an answer to "which alg?" */
        size_t signature_len;
};

struct msg_channel_fd {
        uint8_t channel;                /* enum msg_channel the attached fd belongs to */
};

/* MSG_CONFIG: the configuration itself travels in a memfd attached to the frame
 * (SCM_RIGHTS), sealed against writing, shrinking and growing, holding exactly SIZE bytes:
 * agent/config-wire.h's config_encode().  A configuration of any size thus fits a small
 * frame.  The supervisor sends one to each child first thing after starting it; the front
 * gets a new one on every reload and answers with MSG_CONFIG_DONE. */
#define MSG_CONFIG_SIZE_MAX (64u * 1024 * 1024)
struct msg_config {
        uint64_t size;                  /* bytes, 1 … MSG_CONFIG_SIZE_MAX */
};

/* The front's answer to a MSG_CONFIG: */
struct msg_config_done {
        uint8_t status;                 /* 0 = applied, anything else = refused */
        char *reason;                   /* may be NULL; no secret in it */
};

/* Each encoder appends the whole frame (header + payload) to OUT and returns 0 or a
 * negative errno (-EMSGSIZE when a field or the frame is over its limit).
 * Each decoder takes the payload of a frame (after the header) and fills *RET, copying
 * strings with malloc() (free with the matching _clear()), except msg_secret's secret which
 * points into the payload.  Decoders return 0, -EBADMSG for malformed input (including
 * trailing bytes) or -ENOMEM; on failure *RET is cleared.  Pure functions: fuzzed.
 *
 * Details (ipc/PROTOCOL.md has the byte layout of each message):
 *  - On failure an encoder leaves OUT as it was (the bytes it appended are wiped).  It
 *    returns -EINVAL for a message that breaks the rules below, -EMSGSIZE for a field over
 *    its MSG_*_MAX or a frame over the largest msg_channel_max() of the channels that carry
 *    its type (or OUT's own max), -ENOMEM.
 *  - Decoders (and encoders) reject: a string over its MSG_*_MAX, an embedded NUL, a
 *    required string that is NULL (FETCH's client_id; SECRET_REQUEST's
 *    client_secret_uri; SIGN_REQUEST's client_key_uri), a role outside enum msg_role, a
 *    client_auth outside enum client_auth, a FETCH_DONE error ≥ _API_ERROR_MAX, a flag other
 *    than 0/1, a channel ≥ _CHAN_MAX, an algorithm above MSG_ALG_MAX.
 *  - FETCH: exactly one of token_url and issuer; audience, resource and token_params may be
 *    NULL, not empty.  basic and post carry client_secret_uri and none of the private_key_jwt fields;
 *    private_key_jwt carries client_key_uri, assertion_audience and an assertion_lifetime of
 *    1 … ASSERTION_LIFETIME_MAX (key_id optional) and no client_secret_uri.
 *  - GRANT: exactly one of client_secret_uri and client_key_uri; with the key, client_id and
 *    audience; with the secret, neither and assertion_alg 0.
 *  - SIGNATURE: error == 0 carries no description and an alg of 1 … MSG_ALG_MAX; error is
 *    otherwise a negative errno (≥ -4095) with alg 0 and no signature bytes.
 *  - FETCH_DONE: error == 0 carries a non-empty access_token and a fingerprint of exactly
 *    MSG_FP_LEN lower-case hex digits; error != 0 carries neither.
 *  - SECRET: error == 0 carries the secret (≤ MSG_SECRET_MAX bytes) and no description;
 *    error is otherwise a negative errno (≥ -4095) with no secret bytes.
 *  - CONFIG: a size of 0 or over MSG_CONFIG_SIZE_MAX.
 *  - Clearing wipes FETCH_DONE's access_token before freeing it.  SECRET's secret is not
 *    copied: wipe the receive buffer after use.  Clear functions accept a zeroed struct. */
int msg_hello_encode(const struct msg_hello *m, struct buf *out);
int msg_hello_decode(const uint8_t *p, size_t n, struct msg_hello *ret);
int msg_fetch_encode(const struct msg_fetch *m, struct buf *out);
int msg_fetch_decode(const uint8_t *p, size_t n, struct msg_fetch *ret);
void msg_fetch_clear(struct msg_fetch *m);
int msg_fetch_done_encode(const struct msg_fetch_done *m, struct buf *out);
int msg_fetch_done_decode(const uint8_t *p, size_t n, struct msg_fetch_done *ret);
void msg_fetch_done_clear(struct msg_fetch_done *m);
int msg_grant_encode(const struct msg_grant *m, struct buf *out);
int msg_grant_decode(const uint8_t *p, size_t n, struct msg_grant *ret);
void msg_grant_clear(struct msg_grant *m);
int msg_secret_request_encode(const struct msg_secret_request *m, struct buf *out);
int msg_secret_request_decode(const uint8_t *p, size_t n, struct msg_secret_request *ret);
void msg_secret_request_clear(struct msg_secret_request *m);
int msg_secret_encode(const struct msg_secret *m, struct buf *out);
int msg_secret_decode(const uint8_t *p, size_t n, struct msg_secret *ret);
void msg_secret_clear(struct msg_secret *m);
int msg_sign_request_encode(const struct msg_sign_request *m, struct buf *out);
int msg_sign_request_decode(const uint8_t *p, size_t n, struct msg_sign_request *ret);
void msg_sign_request_clear(struct msg_sign_request *m);
int msg_signature_encode(const struct msg_signature *m, struct buf *out);
int msg_signature_decode(const uint8_t *p, size_t n, struct msg_signature *ret);
void msg_signature_clear(struct msg_signature *m);
int msg_channel_fd_encode(const struct msg_channel_fd *m, struct buf *out);
int msg_channel_fd_decode(const uint8_t *p, size_t n, struct msg_channel_fd *ret);
int msg_config_encode(const struct msg_config *m, struct buf *out);
int msg_config_decode(const uint8_t *p, size_t n, struct msg_config *ret);
int msg_config_done_encode(const struct msg_config_done *m, struct buf *out);
int msg_config_done_decode(const uint8_t *p, size_t n, struct msg_config_done *ret);
void msg_config_done_clear(struct msg_config_done *m);

/* For payloads encoded elsewhere (MSG_CONFIG with config_encode()): msg_frame_begin()
 * appends a header for TYPE with a placeholder length and stores its offset in *RET_START;
 * append the payload to OUT; then msg_frame_end(OUT, START, R) with R the result of the
 * appending (0 or a negative errno).  msg_frame_end() fills in the length and returns 0, or,
 * when R < 0 or the frame is over its type's limit (as for the encoders: -EMSGSIZE), wipes
 * and removes everything from START on and returns R or -EMSGSIZE.  msg_frame_begin()
 * returns 0 or the errors of buf_put(). */
int msg_frame_begin(struct buf *out, uint8_t type, size_t *ret_start);
int msg_frame_end(struct buf *out, size_t start, int r);

/* A received frame. */
struct msg_frame {
        uint8_t type;
        const uint8_t *payload;         /* points into the caller's receive buffer */
        size_t len;
        int fd;                         /* an SCM_RIGHTS fd that came with it, or -1 */
};

/* Splits a datagram of N bytes at P received on channel C from side A (FROM_A) into *RET.
 * Returns 0, -EMSGSIZE (over the channel maximum), -EBADMSG (length field does not match the
 * datagram, shorter than a header), or -EPROTO (type not allowed there).  Pure: fuzzed. */
int msg_frame_parse(enum msg_channel c, bool from_a, const uint8_t *p, size_t n, struct msg_frame *ret);

/* Sends the frame(s) in BUF (exactly one frame) on FD, with FD_TO_PASS attached when ≥ 0.
 * Returns 0 or a negative errno (-EPIPE when the peer is gone).
 * Details: -EINVAL when BUF is not exactly one frame (its length field disagrees with its
 * size).  MSG_NOSIGNAL: no SIGPIPE.  EINTR is retried; -EAGAIN on a full non-blocking fd. */
int msg_send(int fd, const struct buf *frame, int fd_to_pass);

/* Receives one datagram from FD into BUF (sized msg_channel_max(C)) and parses it as
 * msg_frame_parse() does.  Returns 0, 0 with RET->type == 0 at end of stream (peer closed),
 * -EMSGSIZE for a truncated (oversized) datagram, -EAGAIN on a non-blocking fd with nothing
 * to read, or the errors of msg_frame_parse().  A received fd is closed on any error.
 * Details: only MSG_CHANNEL and MSG_CONFIG carry an fd, and always one: an fd on any other
 * frame, a MSG_CHANNEL or MSG_CONFIG without one, more than one fd or a truncated control message are -EPROTO.
 * The fd is received with MSG_CMSG_CLOEXEC.  EINTR is retried.  -EINVAL when BUF_SIZE is
 * smaller than a header.  *RET is untouched on failure. */
int msg_recv(int fd, enum msg_channel c, bool from_a, uint8_t *buf, size_t buf_size, struct msg_frame *ret);
