/* SPDX-License-Identifier: ISC */
/* Secret buffers: bounds, termination, and the page flags that keep secrets out of swap
 * and core dumps (read back from /proc/self/smaps). */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "secmem.h"

/* AddressSanitizer turns mlock() into a no-op that reports success. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_WORKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_WORKS 0
#endif
#endif
#ifndef MLOCK_WORKS
#define MLOCK_WORKS 1
#endif

/* Returns the VmFlags line of the mapping that contains P, or "" (static buffer). */
static const char *vmflags_of(const void *p) {
        static char flags[512];
        char line[512];
        bool in = false;
        FILE *f = fopen("/proc/self/smaps", "re");

        flags[0] = '\0';
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
                unsigned long lo, hi;
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping header line */
                        in = (uintptr_t) p >= lo && (uintptr_t) p < hi;
                        continue;
                }
                if (in && strncmp(line, "VmFlags:", 8) == 0) {
                        snprintf(flags, sizeof flags, "%s", line + 8);
                        break;
                }
        }
        fclose(f);
        return flags;
}

static void test_append_and_bounds(void **state) {
        struct secbuf *b = secbuf_new(8);

        assert_non_null(b);
        assert_int_equal(b->len, 0);
        assert_int_equal(b->data[0], '\0');
        assert_int_equal(secbuf_append_str(b, "abcd"), 0);
        assert_int_equal(secbuf_append(b, "efgh", 4), 0);
        assert_int_equal(b->len, 8);
        assert_string_equal((char *) b->data, "abcdefgh");
        /* Full: one more byte is refused and nothing changes. */
        assert_int_equal(secbuf_append(b, "x", 1), -EMSGSIZE);
        assert_int_equal(b->len, 8);
        assert_string_equal((char *) b->data, "abcdefgh");
        secbuf_clear(b);
        assert_int_equal(b->len, 0);
        assert_int_equal(b->data[0], '\0');
        assert_int_equal(b->data[3], 0); /* wiped, not just truncated */
        assert_null(secbuf_free(b));
        assert_null(secbuf_free(NULL));
}

static void test_bad_sizes(void **state) {
        errno = 0;
        assert_null(secbuf_new(0));
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_null(secbuf_new(SECBUF_MAX + 1));
        assert_int_equal(errno, EINVAL);
        struct secbuf *b = secbuf_new(SECBUF_MAX);
        assert_non_null(b);
        secbuf_free(b);
}

static void test_pages_locked_and_not_dumped(void **state) {
        struct secbuf *b = secbuf_new(100);
        const char *flags;

        assert_non_null(b);
        flags = vmflags_of(b->data);
        assert_non_null(strstr(flags, " dd")); /* MADV_DONTDUMP */
        /* mlock is best effort (RLIMIT_MEMLOCK); as root, as in CI, it must have worked. */
        if (geteuid() == 0 && MLOCK_WORKS)
                assert_non_null(strstr(flags, " lo"));
        secbuf_free(b);
}

static void test_free_wiped(void **state) {
        char *s = strdup("token-value");
        assert_null(free_wiped(s));
        assert_null(free_wiped(NULL));
        char buf[4] = "abc";
        secure_wipe(buf, sizeof buf);
        assert_memory_equal(buf, "\0\0\0\0", 4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_append_and_bounds),
                cmocka_unit_test(test_bad_sizes),
                cmocka_unit_test(test_pages_locked_and_not_dumped),
                cmocka_unit_test(test_free_wiped),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
