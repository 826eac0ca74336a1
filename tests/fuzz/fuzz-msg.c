/* SPDX-License-Identifier: ISC */
/* ipc/msg.h: a datagram as received on some channel from some side.  Input: byte 0 picks the
 * channel (low 3 bits, modulo the number of channels) and the sending side (bit 3: side A);
 * the rest is the datagram.  Oracles: a frame that msg_frame_parse() accepts and whose
 * payload its decoder accepts re-encodes to exactly the same bytes (the encoding is
 * canonical), and decoders clear their output on failure.  MSG_CONFIG's payload is
 * fuzz-config-wire's business. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ipc/msg.h"

static bool all_zero(const void *p, size_t n) {
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

/* Decodes the payload of F as a struct msg_TYPE, re-encodes it into a buffer of MAX bytes
 * and compares with the datagram D[0..N). */
#define ROUNDTRIP(type, f, d, n, max)                                                   \
        do {                                                                            \
                struct msg_##type m_;                                                   \
                struct buf out_;                                                        \
                int r_;                                                                 \
                                                                                        \
                memset(&m_, 0xa5, sizeof m_);                                           \
                r_ = msg_##type##_decode((f)->payload, (f)->len, &m_);                  \
                FUZZ_CHECK(r_ == 0 || r_ == -EBADMSG || r_ == -ENOMEM);                 \
                if (r_ < 0) {                                                           \
                        FUZZ_CHECK(all_zero(&m_, sizeof m_));                           \
                        break;                                                          \
                }                                                                       \
                buf_init(&out_, (max));                                                 \
                r_ = msg_##type##_encode(&m_, &out_);                                   \
                FUZZ_CHECK(r_ == 0 || r_ == -ENOMEM);                                   \
                if (r_ == 0) {                                                          \
                        FUZZ_CHECK(out_.len == (n));                                    \
                        FUZZ_CHECK(memcmp(out_.data, (d), (n)) == 0);                   \
                }                                                                       \
                buf_done(&out_);                                                        \
                CLEAR_##type(&m_);                                                      \
        } while (0)

#define CLEAR_hello(m) ((void) (m))
#define CLEAR_channel_fd(m) ((void) (m))
#define CLEAR_fetch(m) msg_fetch_clear(m)
#define CLEAR_fetch_done(m) msg_fetch_done_clear(m)
#define CLEAR_grant(m) msg_grant_clear(m)
#define CLEAR_secret_request(m) msg_secret_request_clear(m)
#define CLEAR_secret(m) msg_secret_clear(m)
#define CLEAR_config_done(m) msg_config_done_clear(m)
#define CLEAR_sign_request(m) msg_sign_request_clear(m)
#define CLEAR_signature(m) msg_signature_clear(m)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        enum msg_channel c;
        struct msg_frame f;
        const uint8_t *d;
        bool from_a;
        size_t n, max;
        int r;

        if (size < 1)
                return 0;
        c = (enum msg_channel) ((data[0] & 7) % _CHAN_MAX);
        from_a = data[0] & 8;
        d = data + 1;
        n = size - 1;
        max = msg_channel_max(c);

        memset(&f, 0xa5, sizeof f);
        r = msg_frame_parse(c, from_a, d, n, &f);
        FUZZ_CHECK(r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTO);
        if (r < 0)
                return 0;
        FUZZ_CHECK(msg_type_allowed(c, from_a, f.type));
        FUZZ_CHECK(f.payload == d + MSG_HEADER_SIZE && f.len == n - MSG_HEADER_SIZE && f.fd == -1);
        FUZZ_CHECK(n <= max);

        switch (f.type) {
        case MSG_HELLO:
                ROUNDTRIP(hello, &f, d, n, max);
                break;
        case MSG_FETCH:
                ROUNDTRIP(fetch, &f, d, n, max);
                break;
        case MSG_FETCH_DONE:
                ROUNDTRIP(fetch_done, &f, d, n, max);
                break;
        case MSG_GRANT:
                ROUNDTRIP(grant, &f, d, n, max);
                break;
        case MSG_SECRET_REQUEST:
                ROUNDTRIP(secret_request, &f, d, n, max);
                break;
        case MSG_SECRET:
                ROUNDTRIP(secret, &f, d, n, max);
                break;
        case MSG_SIGN_REQUEST:
                ROUNDTRIP(sign_request, &f, d, n, max);
                break;
        case MSG_SIGNATURE:
                ROUNDTRIP(signature, &f, d, n, max);
                break;
        case MSG_CHANNEL:
                ROUNDTRIP(channel_fd, &f, d, n, max);
                break;
        case MSG_CONFIG_DONE:
                ROUNDTRIP(config_done, &f, d, n, max);
                break;
        case MSG_CONFIG:
                break;
        default:
                FUZZ_CHECK(!"a type no channel carries was accepted");
        }
        return 0;
}
