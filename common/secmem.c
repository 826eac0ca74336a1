/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "secmem.h"

void secure_wipe(void *p, size_t n) {
        if (p && n > 0)
                explicit_bzero(p, n);
}

char *free_wiped(char *s) {
        if (s) {
                secure_wipe(s, strlen(s));
                free(s);
        }
        return NULL;
}

struct secbuf *secbuf_new(size_t cap) {
        struct secbuf *b;
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        size_t map_len;
        void *p;

        if (cap == 0 || cap > SECBUF_MAX) {
                errno = EINVAL;
                return NULL;
        }
        map_len = (cap + 1 + page - 1) / page * page;
        p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        /* Both best effort: without them the buffer still works and is still wiped; `locked`
         * tells whether mlock() took (RLIMIT_MEMLOCK may refuse it to an unprivileged user). */
        (void) madvise(p, map_len, MADV_DONTDUMP);
        bool locked = mlock(p, map_len) == 0;

        b = calloc(1, sizeof *b);
        if (!b) {
                munlock(p, map_len);
                munmap(p, map_len);
                errno = ENOMEM;
                return NULL;
        }
        b->data = p;
        b->cap = cap;
        b->map_len = map_len;
        b->locked = locked;
        b->data[0] = '\0';
        return b;
}

struct secbuf *secbuf_free(struct secbuf *b) {
        if (!b)
                return NULL;
        secure_wipe(b->data, b->map_len);
        munlock(b->data, b->map_len);
        munmap(b->data, b->map_len);
        free(b);
        return NULL;
}

int secbuf_append(struct secbuf *b, const void *data, size_t len) {
        if (len > b->cap - b->len)
                return -EMSGSIZE;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

int secbuf_append_str(struct secbuf *b, const char *s) {
        return secbuf_append(b, s, strlen(s));
}

void secbuf_clear(struct secbuf *b) {
        secure_wipe(b->data, b->len);
        b->len = 0;
        b->data[0] = '\0';
}
