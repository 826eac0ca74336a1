/* SPDX-License-Identifier: ISC */
/* The bounded buffer of ipc/buf.h: wire layout, limits, short reads, wiping. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ipc/buf.h"

#if defined(__SANITIZE_ADDRESS__)
#  define HAVE_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define HAVE_ASAN 1
#  endif
#endif

#ifndef HAVE_ASAN
/* Watches one block on its way to free(): buf.c frees through here (the static library is
 * linked into this program), so the test can see what the block held at that moment
 * without touching freed memory.  Not under AddressSanitizer, which owns malloc()/free(). */
extern void __libc_free(void *p);

static const void *watch_ptr;
static size_t watch_len;
static bool watch_freed, watch_was_zero;

void free(void *p) {
        if (p && p == watch_ptr) {
                const uint8_t *b = p;

                watch_was_zero = true;
                for (size_t i = 0; i < watch_len; i++)
                        if (b[i] != 0)
                                watch_was_zero = false;
                watch_freed = true;
                watch_ptr = NULL;
        }
        __libc_free(p);
}

static void watch(const void *p, size_t len) {
        watch_ptr = p;
        watch_len = len;
        watch_freed = watch_was_zero = false;
}
#endif

static void assert_bytes(const struct buf *b, const void *want, size_t n) {
        assert_int_equal(b->len, n);
        assert_memory_equal(b->data, want, n);
}

static void test_init(void **state) {
        struct buf b;

        buf_init(&b, 100);
        assert_null(b.data);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.off, 0);
        assert_int_equal(b.cap, 0);
        assert_int_equal(b.max, 100);
        assert_false(b.readonly);
        assert_int_equal(buf_remaining(&b), 0);
        buf_done(&b);
        buf_done(&b); /* twice is harmless */
        assert_int_equal(b.max, 100);
}

static void test_put_layout(void **state) {
        static const uint8_t want[] = {
                0xab,                                           /* u8 */
                0x12, 0x34, 0x56, 0x78,                         /* u32 */
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* u64 */
                0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c',          /* str "abc" */
                0xff, 0xff, 0xff, 0xff,                         /* str NULL */
                0x00, 0x00, 0x00, 0x00,                         /* str "" */
                0x00, 0x00, 0x00, 0x02, 0x00, 0xff,             /* bytes {0, ff} */
                'r', 'a', 'w',                                  /* put, no length */
                0xff, 0xff, 0xff, 0xfe,                         /* u32 near the top */
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* u64 max */
        };
        struct buf b;

        buf_init(&b, 1024);
        assert_int_equal(buf_put_u8(&b, 0xab), 0);
        assert_int_equal(buf_put_u32(&b, 0x12345678), 0);
        assert_int_equal(buf_put_u64(&b, UINT64_C(0x0102030405060708)), 0);
        assert_int_equal(buf_put_str(&b, "abc"), 0);
        assert_int_equal(buf_put_str(&b, NULL), 0);
        assert_int_equal(buf_put_str(&b, ""), 0);
        assert_int_equal(buf_put_bytes(&b, (const uint8_t[]) { 0, 0xff }, 2), 0);
        assert_int_equal(buf_put(&b, "raw", 3), 0);
        assert_int_equal(buf_put_u32(&b, 0xfffffffe), 0);
        assert_int_equal(buf_put_u64(&b, UINT64_MAX), 0);
        assert_bytes(&b, want, sizeof want);
        assert_int_equal(b.off, 0);
        assert_int_equal(buf_remaining(&b), sizeof want);
        buf_done(&b);
}

static void test_get_roundtrip(void **state) {
        struct buf b;
        uint8_t u8;
        uint32_t u32;
        uint64_t u64;
        const uint8_t *p;
        size_t n;
        char *s;

        buf_init(&b, 1024);
        assert_int_equal(buf_put_u8(&b, 0x80), 0);
        assert_int_equal(buf_put_u32(&b, 0x80000001), 0);
        assert_int_equal(buf_put_u64(&b, UINT64_C(0x8000000000000001)), 0);
        assert_int_equal(buf_put_str(&b, "hello"), 0);
        assert_int_equal(buf_put_str(&b, NULL), 0);
        assert_int_equal(buf_put_str(&b, ""), 0);
        assert_int_equal(buf_put_bytes(&b, "\0x\0", 3), 0);
        assert_int_equal(buf_put_bytes(&b, NULL, 0), 0);

        assert_int_equal(buf_get_u8(&b, &u8), 0);
        assert_int_equal(u8, 0x80);
        assert_int_equal(buf_get_u32(&b, &u32), 0);
        assert_int_equal(u32, 0x80000001);
        assert_int_equal(buf_get_u64(&b, &u64), 0);
        assert_true(u64 == UINT64_C(0x8000000000000001));
        assert_int_equal(buf_get_str(&b, 5, &s), 0);
        assert_string_equal(s, "hello");
        free(s);
        s = (char *) "untouched";
        assert_int_equal(buf_get_str(&b, 0, &s), 0);
        assert_null(s);
        assert_int_equal(buf_get_str(&b, 0, &s), 0);
        assert_non_null(s);
        assert_string_equal(s, "");
        free(s);
        assert_int_equal(buf_get_bytes(&b, 3, &p, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(p, "\0x\0", 3);
        assert_ptr_equal(p, b.data + b.off - 3); /* a view, not a copy */
        assert_int_equal(buf_get_bytes(&b, 0, &p, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(buf_remaining(&b), 0);

        /* Nothing left: every getter says so and changes nothing. */
        assert_int_equal(buf_get_u8(&b, &u8), -EBADMSG);
        assert_int_equal(buf_get_u32(&b, &u32), -EBADMSG);
        assert_int_equal(buf_get_u64(&b, &u64), -EBADMSG);
        assert_int_equal(buf_get_str(&b, 100, &s), -EBADMSG);
        assert_int_equal(buf_get_bytes(&b, 100, &p, &n), -EBADMSG);
        assert_int_equal(b.off, b.len);
        buf_done(&b);
}

static void test_get_big_endian(void **state) {
        static const uint8_t in[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d };
        struct buf b;
        uint8_t u8;
        uint32_t u32;
        uint64_t u64;

        buf_view(&b, in, sizeof in);
        assert_int_equal(buf_get_u8(&b, &u8), 0);
        assert_int_equal(u8, 0x01);
        assert_int_equal(buf_get_u32(&b, &u32), 0);
        assert_int_equal(u32, 0x02030405);
        assert_int_equal(buf_get_u64(&b, &u64), 0);
        assert_true(u64 == UINT64_C(0x060708090a0b0c0d));
        buf_done(&b); /* a view: nothing freed, nothing written */
        assert_int_equal(in[0], 0x01);
}

static void test_short_reads(void **state) {
        struct buf b;
        uint32_t u32 = 7;
        uint64_t u64 = 7;
        const uint8_t *p = NULL;
        size_t n = 7;
        char *s = (char *) "untouched";

        /* Each read one byte short leaves the offset where it was and the output alone. */
        buf_view(&b, "\x01\x02\x03", 3);
        assert_int_equal(buf_get_u32(&b, &u32), -EBADMSG);
        assert_int_equal(u32, 7);
        assert_int_equal(b.off, 0);
        buf_view(&b, "\x01\x02\x03\x04\x05\x06\x07", 7);
        assert_int_equal(buf_get_u64(&b, &u64), -EBADMSG);
        assert_true(u64 == 7);
        assert_int_equal(b.off, 0);

        /* Length says 4, three bytes follow. */
        buf_view(&b, "\x00\x00\x00\x04" "abc", 7);
        assert_int_equal(buf_get_bytes(&b, 100, &p, &n), -EBADMSG);
        assert_int_equal(b.off, 0);
        assert_null(p);
        assert_int_equal(n, 7);
        assert_int_equal(buf_get_str(&b, 100, &s), -EBADMSG);
        assert_int_equal(b.off, 0);
        assert_string_equal(s, "untouched");

        /* A length prefix cut short. */
        buf_view(&b, "\x00\x00\x00", 3);
        assert_int_equal(buf_get_bytes(&b, 100, &p, &n), -EBADMSG);
        assert_int_equal(buf_get_str(&b, 100, &s), -EBADMSG);
        assert_int_equal(b.off, 0);
}

static void test_get_limits(void **state) {
        struct buf b;
        const uint8_t *p = NULL;
        size_t n = 0;
        char *s = NULL;

        /* Over MAX: refused, offset kept; at MAX: fine. */
        buf_view(&b, "\x00\x00\x00\x05" "hello", 9);
        assert_int_equal(buf_get_bytes(&b, 4, &p, &n), -EBADMSG);
        assert_int_equal(b.off, 0);
        assert_int_equal(buf_get_str(&b, 4, &s), -EBADMSG);
        assert_int_equal(b.off, 0);
        assert_null(s);
        assert_int_equal(buf_get_str(&b, 5, &s), 0);
        assert_string_equal(s, "hello");
        free(s);
        s = NULL;

        /* An embedded NUL is not a C string, though it is fine as bytes. */
        buf_view(&b, "\x00\x00\x00\x03" "a\0b", 7);
        assert_int_equal(buf_get_str(&b, 100, &s), -EBADMSG);
        assert_int_equal(b.off, 0);
        assert_null(s);
        assert_int_equal(buf_get_bytes(&b, 100, &p, &n), 0);
        assert_int_equal(n, 3);

        /* The NULL marker is a string's, never bytes'. */
        buf_view(&b, "\xff\xff\xff\xff", 4);
        assert_int_equal(buf_get_bytes(&b, SIZE_MAX, &p, &n), -EBADMSG);
        assert_int_equal(b.off, 0);
        /* A huge length with nothing behind it. */
        buf_view(&b, "\xff\xff\xff\xfe", 4);
        assert_int_equal(buf_get_bytes(&b, SIZE_MAX, &p, &n), -EBADMSG);
        assert_int_equal(buf_get_str(&b, SIZE_MAX, &s), -EBADMSG);
        assert_int_equal(b.off, 0);
}

static void test_put_limits(void **state) {
        struct buf b;
        uint8_t big[64];

        memset(big, 'x', sizeof big);
        buf_init(&b, 10);
        assert_int_equal(buf_put_u64(&b, 1), 0);
        /* 8 of 10 used: a u32 does not fit, two u8 do, a third does not. */
        assert_int_equal(buf_put_u32(&b, 2), -EMSGSIZE);
        assert_int_equal(b.len, 8);
        assert_int_equal(buf_put_u8(&b, 3), 0);
        assert_int_equal(buf_put_u8(&b, 4), 0);
        assert_int_equal(buf_put_u8(&b, 5), -EMSGSIZE);
        assert_int_equal(buf_put_u64(&b, 5), -EMSGSIZE);
        assert_int_equal(buf_put(&b, "", 0), 0); /* nothing always fits */
        assert_bytes(&b, "\0\0\0\0\0\0\0\x01\x03\x04", 10);
        buf_done(&b);

        /* A string is all or nothing: the length is not written when the bytes do not fit. */
        buf_init(&b, 10);
        assert_int_equal(buf_put_str(&b, "1234567"), -EMSGSIZE); /* 4 + 7 > 10 */
        assert_int_equal(b.len, 0);
        assert_int_equal(buf_put_str(&b, "123456"), 0);          /* 4 + 6 = 10 */
        assert_bytes(&b, "\0\0\0\x06" "123456", 10);
        assert_int_equal(buf_put_str(&b, NULL), -EMSGSIZE);
        assert_int_equal(buf_put_bytes(&b, NULL, 0), -EMSGSIZE);
        assert_int_equal(b.len, 10);
        buf_done(&b);

        /* A zero-sized buffer takes nothing but nothing. */
        buf_init(&b, 0);
        assert_int_equal(buf_put_u8(&b, 1), -EMSGSIZE);
        assert_int_equal(buf_put(&b, big, 0), 0);
        assert_int_equal(b.len, 0);
        buf_done(&b);

        /* Byte strings of 2^32 - 1 bytes or more cannot be described (0xffffffff is NULL). */
        buf_init(&b, SIZE_MAX);
        assert_int_equal(buf_put_bytes(&b, big, (size_t) UINT32_MAX), -EMSGSIZE);
        assert_int_equal(b.len, 0);
        buf_done(&b);
}

static void test_growth(void **state) {
        struct buf b;
        size_t n = 0;

        /* From nothing through several reallocations to exactly MAX; contents survive. */
        buf_init(&b, 5000);
        for (uint32_t i = 0; i < 1250; i++) {
                assert_int_equal(buf_put_u32(&b, i * 2654435761u), 0);
                n += 4;
                assert_true(b.cap >= b.len);
                assert_true(b.cap <= b.max);
        }
        assert_int_equal(b.len, 5000);
        assert_int_equal(b.cap, 5000);
        assert_int_equal(buf_put_u8(&b, 0), -EMSGSIZE);
        for (uint32_t i = 0; i < 1250; i++) {
                uint32_t v;

                assert_int_equal(buf_get_u32(&b, &v), 0);
                assert_int_equal(v, i * 2654435761u);
        }
        assert_int_equal(n, 5000);
        buf_done(&b);
        assert_null(b.data);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.cap, 0);
        assert_int_equal(b.max, 5000);

        /* A buffer can be used again after buf_done(). */
        assert_int_equal(buf_put_str(&b, "again"), 0);
        assert_bytes(&b, "\0\0\0\x05" "again", 9);
        buf_done(&b);
}

static void test_readonly(void **state) {
        uint8_t data[] = { 1, 2, 3 };
        struct buf b;
        uint8_t v;

        buf_view(&b, data, sizeof data);
        assert_true(b.readonly);
        assert_ptr_equal(b.data, data);
        assert_int_equal(b.len, 3);
        assert_int_equal(buf_put_u8(&b, 4), -EROFS);
        assert_int_equal(buf_put(&b, "", 0), -EROFS);
        assert_int_equal(buf_put_str(&b, "x"), -EROFS);
        assert_int_equal(b.len, 3);
        assert_int_equal(buf_get_u8(&b, &v), 0);
        assert_int_equal(v, 1);
        /* Reset and done neither wipe nor free what they do not own. */
        buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.off, 0);
        buf_done(&b);
        assert_memory_equal(data, "\x01\x02\x03", 3);

        /* An empty view of nothing. */
        buf_view(&b, NULL, 0);
        assert_int_equal(buf_get_u8(&b, &v), -EBADMSG);
        buf_done(&b);
}

static void test_reset_wipes(void **state) {
        struct buf b;
        uint8_t *data;
        size_t cap;
        uint8_t v;

        buf_init(&b, 1024);
        assert_int_equal(buf_put_str(&b, "an access token"), 0);
        assert_int_equal(buf_get_u8(&b, &v), 0);
        data = b.data;
        cap = b.cap;
        buf_reset(&b);
        /* Same storage, now zero where the token was. */
        assert_ptr_equal(b.data, data);
        assert_int_equal(b.cap, cap);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.off, 0);
        for (size_t i = 0; i < 4 + strlen("an access token"); i++)
                assert_int_equal(data[i], 0);
        /* And usable again. */
        assert_int_equal(buf_put_u8(&b, 9), 0);
        assert_bytes(&b, "\x09", 1);
        buf_done(&b);

        /* Resetting an empty buffer is fine. */
        buf_init(&b, 8);
        buf_reset(&b);
        buf_done(&b);
}

static void test_done_and_growth_wipe(void **state) {
#ifdef HAVE_ASAN
        skip();
#else
        struct buf b;
        const uint8_t *old;
        size_t old_cap;
        uint8_t fill[200];

        memset(fill, 's', sizeof fill);

        /* buf_done() wipes all it allocated before freeing. */
        buf_init(&b, 4096);
        assert_int_equal(buf_put(&b, fill, sizeof fill), 0);
        watch(b.data, b.cap);
        buf_done(&b);
        assert_true(watch_freed);
        assert_true(watch_was_zero);

        /* Growing moves the contents and wipes the old block (no realloc()). */
        buf_init(&b, 4096);
        assert_int_equal(buf_put(&b, fill, sizeof fill), 0);
        old = b.data;
        old_cap = b.cap;
        watch(old, old_cap);
        while (b.data == old)
                assert_int_equal(buf_put(&b, fill, sizeof fill), 0);
        assert_true(watch_freed);
        assert_true(watch_was_zero);
        for (size_t i = 0; i < b.len; i++)
                assert_int_equal(b.data[i], 's');
        buf_done(&b);
#endif
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init),
                cmocka_unit_test(test_put_layout),
                cmocka_unit_test(test_get_roundtrip),
                cmocka_unit_test(test_get_big_endian),
                cmocka_unit_test(test_short_reads),
                cmocka_unit_test(test_get_limits),
                cmocka_unit_test(test_put_limits),
                cmocka_unit_test(test_growth),
                cmocka_unit_test(test_readonly),
                cmocka_unit_test(test_reset_wipes),
                cmocka_unit_test(test_done_and_growth_wipe),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
