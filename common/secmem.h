/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* Memory for secrets (client secrets, PINs, Authorization headers, form bodies that carry
 * a secret).
 *
 * A secbuf lives in its own anonymous mapping: mlock()ed (best effort: LOCKED says whether
 * it took; the buffer is usable either way), MADV_DONTDUMP so it never lands in a core dump,
 * and wiped with explicit_bzero() before it is unmapped.  No dependency beyond libc, so the
 * thin credctl can use it.  DATA is
 * always NUL-terminated at DATA[LEN] so it can be passed where a C string is wanted. */
struct secbuf {
        unsigned char *data;
        size_t len;     /* bytes used, not counting the terminating NUL */
        size_t cap;     /* bytes usable (the mapping holds cap + 1) */
        size_t map_len; /* size of the mapping, a multiple of the page size */
        bool locked;    /* mlock() succeeded */
};

/* Hard cap for one secbuf: 1 MiB. */
#define SECBUF_MAX ((size_t) 1 << 20)

/* Returns a new, empty secbuf able to hold CAP bytes (1 … SECBUF_MAX), or NULL with
 * errno set (EINVAL for a bad CAP, ENOMEM).  Free with secbuf_free(). */
struct secbuf *secbuf_new(size_t cap);

/* Wipes, unlocks and unmaps B.  Accepts NULL.  Returns NULL. */
struct secbuf *secbuf_free(struct secbuf *b);

/* Appends LEN bytes.  Returns 0, or -EMSGSIZE when they would not fit (B unchanged). */
int secbuf_append(struct secbuf *b, const void *data, size_t len);

/* Appends a C string.  Same contract as secbuf_append(). */
int secbuf_append_str(struct secbuf *b, const char *s);

/* Wipes the contents and sets LEN to 0; the buffer stays usable. */
void secbuf_clear(struct secbuf *b);

static inline void secbuf_freep(struct secbuf **b) {
        secbuf_free(*b);
}
#define _cleanup_secbuf_ _cleanup_(secbuf_freep)

/* Overwrites N bytes at P with zeros in a way the compiler may not elide. */
void secure_wipe(void *p, size_t n);

/* Wipes the C string S (strlen bytes) and frees it.  For heap copies of access tokens
 * and other sensitive strings that do not need locked pages.  Accepts NULL.  Returns NULL. */
char *free_wiped(char *s);

static inline void free_wipedp(char **s) {
        free_wiped(*s);
}
#define _cleanup_wipe_ _cleanup_(free_wipedp)
