/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* One bounded byte buffer for everything that crosses a process boundary (in the spirit of
 * OpenSSH's sshbuf).  Integers are big-endian on the wire; strings are u32 length + bytes.
 * Putters fail with -EMSGSIZE past MAX and leave the buffer unchanged; getters consume from
 * the read offset and fail with -EBADMSG on a short or malformed read.  The storage is wiped
 * when the buffer is freed or reset, since messages carry secrets and tokens. */

struct buf {
        uint8_t *data;
        size_t len;   /* bytes written */
        size_t off;   /* read offset, ≤ len */
        size_t cap;   /* bytes allocated */
        size_t max;   /* hard limit for len */
        bool readonly;/* a view made with buf_view(): never freed or grown */
};

/* Initialises B as an empty buffer that may grow to MAX bytes. */
void buf_init(struct buf *b, size_t max);

/* Makes B a read-only view of DATA[0..LEN) (not copied, not freed). */
void buf_view(struct buf *b, const void *data, size_t len);

/* Wipes and frees B's storage (not B itself); B can be used again after buf_init(). */
void buf_done(struct buf *b);

/* Wipes the contents, keeps the storage: LEN and OFF go to 0. */
void buf_reset(struct buf *b);

/* Bytes left to read. */
static inline size_t buf_remaining(const struct buf *b) {
        return b->len - b->off;
}

int buf_put(struct buf *b, const void *data, size_t len);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
/* u32 length + LEN bytes. */
int buf_put_bytes(struct buf *b, const void *data, size_t len);
/* A C string as u32 length + bytes; NULL is encoded as length 0xffffffff. */
int buf_put_str(struct buf *b, const char *s);

int buf_get_u8(struct buf *b, uint8_t *ret);
int buf_get_u32(struct buf *b, uint32_t *ret);
int buf_get_u64(struct buf *b, uint64_t *ret);
/* Points *RET into the buffer at a u32-length-prefixed byte string of at most MAX bytes;
 * *RET_LEN gets its length.  No copy: valid while B is. */
int buf_get_bytes(struct buf *b, size_t max, const uint8_t **ret, size_t *ret_len);
/* Returns a malloc()ed copy of a string put with buf_put_str() (NULL stays NULL) of at most
 * MAX bytes.  Embedded NUL bytes are -EBADMSG.  -ENOMEM on allocation failure. */
int buf_get_str(struct buf *b, size_t max, char **ret);
/* The same string without a copy: *RET points into B at its *RET_LEN bytes (no NUL after
 * them), or is NULL (with length 0) for a NULL string.  Valid while B is.  Same errors but
 * -ENOMEM. */
int buf_get_str_ref(struct buf *b, size_t max, const char **ret, size_t *ret_len);
