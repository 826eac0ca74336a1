/* SPDX-License-Identifier: ISC */
/* Peer credentials and log helpers: what the kernel says about the other end of a Unix socket. */
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ipc/peer.h"
#include "log.h"

static void test_socketpair_peer_is_us(void **state) {
        int sv[2];
        struct peer p;
        gid_t groups[PEER_GROUPS_MAX];
        int n;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(peer_from_fd(sv[0], &p), 0);
        assert_int_equal(p.pid, getpid());
        assert_int_equal(p.uid, geteuid());
        assert_int_equal(p.gid, getegid());
        n = getgroups(PEER_GROUPS_MAX, groups);
        assert_true(n >= 0);
        assert_int_equal(p.n_groups, (size_t) n);
        for (int i = 0; i < n; i++)
                assert_int_equal(p.groups[i], groups[i]);
        assert_false(p.groups_truncated);
        close(sv[0]);
        close(sv[1]);
}

/* A process of another uid and groups is seen with exactly those.  Needs root (as in CI)
 * to change uid. */
static void test_other_uid_and_groups(void **state) {
        int sv[2], status;
        struct peer p;
        pid_t pid;

        if (geteuid() != 0) {
                skip();
                return;
        }
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                gid_t gs[2] = { 4343, 4344 };
                if (setgroups(2, gs) < 0 || setgid(4343) < 0 || setuid(4242) < 0)
                        _exit(10);
                if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
                        _exit(11);
                if (peer_from_fd(sv[0], &p) < 0)
                        _exit(12);
                if (p.uid != 4242 || p.gid != 4343 || p.n_groups != 2 || p.groups[0] != 4343 || p.groups[1] != 4344)
                        _exit(13);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_not_a_socket(void **state) {
        struct peer p = { .uid = 77 };
        int fds[2];

        assert_int_equal(pipe(fds), 0);
        assert_int_equal(peer_from_fd(fds[0], &p), -ENOTSOCK);
        assert_int_equal(p.uid, 77); /* untouched */
        close(fds[0]);
        close(fds[1]);
}

static void test_fingerprint(void **state) {
        char fp[9];
        /* SHA-256("abc") = ba7816bf 8f01cfea ... */
        assert_string_equal(log_fingerprint("abc", 3, fp), "ba7816bf");
}

static void test_escape(void **state) {
        char out[64];

        assert_string_equal(log_escape("plain", 5, 64, out, sizeof out), "plain");
        assert_string_equal(log_escape("a\"b\\c\n\x01", 7, 64, out, sizeof out), "a\\\"b\\\\c\\x0a\\x01");
        /* Truncation is marked. */
        assert_string_equal(log_escape("abcdefgh", 8, 4, out, sizeof out), "abcd\xe2\x80\xa6");
        /* A small output buffer never overflows and is terminated. */
        char small[8];
        log_escape("0123456789abcdef", 16, 64, small, sizeof small);
        assert_true(strlen(small) < sizeof small);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_socketpair_peer_is_us),
                cmocka_unit_test(test_other_uid_and_groups),
                cmocka_unit_test(test_not_a_socket),
                cmocka_unit_test(test_fingerprint),
                cmocka_unit_test(test_escape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
