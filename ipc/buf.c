/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/buf.h"
#include "secmem.h"

#define STR_NULL 0xffffffffU

void buf_init(struct buf *b, size_t max) {
        *b = (struct buf) { .max = max };
}

void buf_view(struct buf *b, const void *data, size_t len) {
        *b = (struct buf) { .data = (uint8_t *) data, .len = len, .cap = len, .max = len, .readonly = true };
}

void buf_done(struct buf *b) {
        if (!b->readonly && b->data) {
                secure_wipe(b->data, b->cap);
                free(b->data);
        }
        *b = (struct buf) { .max = b->max };
}

void buf_reset(struct buf *b) {
        if (!b->readonly)
                secure_wipe(b->data, b->len);
        b->len = b->off = 0;
}

static int buf_reserve(struct buf *b, size_t n) {
        uint8_t *p;
        size_t cap;

        if (b->readonly)
                return -EROFS;
        if (n > b->max - b->len)
                return -EMSGSIZE;
        if (b->len + n <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 256;
        /* Doubling stops at MAX, which is ≥ len + n (checked above), so it cannot overflow. */
        while (cap < b->len + n)
                cap = cap > b->max / 2 ? b->max : cap * 2;
        if (cap > b->max)
                cap = b->max;
        /* Not realloc(): the old storage may hold a secret and must be wiped. */
        p = malloc(cap);
        if (!p)
                return -ENOMEM;
        if (b->data) {
                memcpy(p, b->data, b->len);
                secure_wipe(b->data, b->cap);
                free(b->data);
        }
        b->data = p;
        b->cap = cap;
        return 0;
}

int buf_put(struct buf *b, const void *data, size_t len) {
        int r = buf_reserve(b, len);

        if (r < 0)
                return r;
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
        return 0;
}

int buf_put_u8(struct buf *b, uint8_t v) {
        return buf_put(b, &v, 1);
}

int buf_put_u32(struct buf *b, uint32_t v) {
        uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
        return buf_put(b, x, sizeof x);
}

int buf_put_u64(struct buf *b, uint64_t v) {
        uint8_t x[8];

        for (int i = 0; i < 8; i++)
                x[i] = (uint8_t) (v >> (56 - 8 * i));
        return buf_put(b, x, sizeof x);
}

int buf_put_bytes(struct buf *b, const void *data, size_t len) {
        int r;

        if (len >= STR_NULL)
                return -EMSGSIZE;
        r = buf_reserve(b, 4 + len);
        if (r < 0)
                return r;
        (void) buf_put_u32(b, (uint32_t) len);
        return buf_put(b, data, len);
}

int buf_put_str(struct buf *b, const char *s) {
        if (!s)
                return buf_put_u32(b, STR_NULL);
        return buf_put_bytes(b, s, strlen(s));
}

static int buf_get(struct buf *b, void *ret, size_t n) {
        if (buf_remaining(b) < n)
                return -EBADMSG;
        memcpy(ret, b->data + b->off, n);
        b->off += n;
        return 0;
}

int buf_get_u8(struct buf *b, uint8_t *ret) {
        return buf_get(b, ret, 1);
}

int buf_get_u32(struct buf *b, uint32_t *ret) {
        uint8_t x[4];
        int r = buf_get(b, x, sizeof x);

        if (r < 0)
                return r;
        *ret = (uint32_t) x[0] << 24 | (uint32_t) x[1] << 16 | (uint32_t) x[2] << 8 | x[3];
        return 0;
}

int buf_get_u64(struct buf *b, uint64_t *ret) {
        uint8_t x[8];
        uint64_t v = 0;
        int r = buf_get(b, x, sizeof x);

        if (r < 0)
                return r;
        for (int i = 0; i < 8; i++)
                v = v << 8 | x[i];
        *ret = v;
        return 0;
}

int buf_get_bytes(struct buf *b, size_t max, const uint8_t **ret, size_t *ret_len) {
        size_t save = b->off;
        uint32_t n;
        int r;

        r = buf_get_u32(b, &n);
        if (r < 0)
                return r;
        if (n == STR_NULL || n > max || n > buf_remaining(b)) {
                b->off = save;
                return -EBADMSG;
        }
        *ret = b->data + b->off;
        *ret_len = n;
        b->off += n;
        return 0;
}

int buf_get_str_ref(struct buf *b, size_t max, const char **ret, size_t *ret_len) {
        size_t save = b->off;
        const uint8_t *p;
        uint32_t n;
        size_t len;
        int r;

        r = buf_get_u32(b, &n);
        if (r < 0)
                return r;
        if (n == STR_NULL) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        b->off = save;
        r = buf_get_bytes(b, max, &p, &len);
        if (r < 0)
                return r;
        if (memchr(p, '\0', len)) {
                b->off = save;
                return -EBADMSG;
        }
        *ret = (const char *) p;
        *ret_len = len;
        return 0;
}

int buf_get_str(struct buf *b, size_t max, char **ret) {
        size_t save = b->off, len;
        const char *p;
        char *s;
        int r;

        r = buf_get_str_ref(b, max, &p, &len);
        if (r < 0)
                return r;
        if (!p) {
                *ret = NULL;
                return 0;
        }
        s = malloc(len + 1);
        if (!s) {
                b->off = save;
                return -ENOMEM;
        }
        memcpy(s, p, len);
        s[len] = '\0';
        *ret = s;
        return 0;
}
