/* SPDX-License-Identifier: ISC */
/* agent/curlpool.h through oauth_fetch(): token requests to one server reuse a kept-alive
 * connection, run concurrently (a slow answer holds up only its own caller), and stop when
 * their abort flag is set.  The server is a small HTTP/1.1 keep-alive server on 127.0.0.1 in
 * this process that counts the connections it accepts and the requests it answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/curlpool.h"
#include "agent/oauth.h"
#include "secmem.h"

struct server {
        int fd;
        int port;
        atomic_int accepted;
        atomic_int requests;
        pthread_t thread;
};

static struct server srv;

/* Answers the requests of one connection until the client closes it.  A path starting with
 * /slow is answered after 1.5 s. */
static void *conn_thread(void *arg) {
        int fd = (int) (intptr_t) arg;
        char buf[16384];
        size_t have = 0;

        for (;;) {
                char *end, *cl, answer[256], body[128];
                size_t head, len = 0;
                ssize_t n;
                int bn, an;

                while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
                        if (have == sizeof buf)
                                goto out;
                        n = read(fd, buf + have, sizeof buf - have);
                        if (n <= 0)
                                goto out;
                        have += (size_t) n;
                }
                head = (size_t) (end - buf) + 4;
                buf[head - 1] = '\0';
                cl = strcasestr(buf, "\r\nContent-Length:");
                if (cl)
                        len = strtoul(cl + 17, NULL, 10);
                while (have < head + len) {
                        n = read(fd, buf + have, sizeof buf - have);
                        if (n <= 0)
                                goto out;
                        have += (size_t) n;
                }
                if (strncmp(buf, "POST /slow", 10) == 0)
                        usleep(1500 * 1000);
                bn = snprintf(body, sizeof body, "{\"access_token\":\"t-%d\",\"token_type\":\"Bearer\",\"expires_in\":60}",
                              atomic_fetch_add(&srv.requests, 1) + 1);
                an = snprintf(answer, sizeof answer,
                              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", bn,
                              body);
                if (write(fd, answer, (size_t) an) != an)
                        goto out;
                memmove(buf, buf + head + len, have - head - len);
                have -= head + len;
        }
out:
        close(fd);
        return NULL;
}

static void *accept_thread(void *arg) {
        for (;;) {
                int c = accept(srv.fd, NULL, NULL);
                pthread_t t;

                if (c < 0)
                        return NULL;
                atomic_fetch_add(&srv.accepted, 1);
                if (pthread_create(&t, NULL, conn_thread, (void *) (intptr_t) c) == 0)
                        pthread_detach(t);
                else
                        close(c);
        }
}

static int setup(void **state) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;

        srv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(srv.fd >= 0);
        assert_int_equal(bind(srv.fd, (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(listen(srv.fd, 16), 0);
        assert_int_equal(getsockname(srv.fd, (struct sockaddr *) &a, &len), 0);
        srv.port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&srv.thread, NULL, accept_thread, NULL), 0);
        return 0;
}

static int teardown(void **state) {
        shutdown(srv.fd, SHUT_RDWR);
        pthread_join(srv.thread, NULL);
        close(srv.fd);
        return 0;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

struct call {
        struct curlpool *pool;
        const char *path;
        const volatile int *abort;
        struct oauth_result res;
        uint64_t ms;
};

static void call(struct call *c) {
        _cleanup_secbuf_ struct secbuf *secret = secbuf_new(16);
        char url[128];
        uint64_t t0 = now_ms();

        assert_non_null(secret);
        assert_int_equal(secbuf_append_str(secret, "s3cret"), 0);
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.port, c->path);
        struct oauth_request req = {
                .token_url = url,
                .client_auth = CLIENT_AUTH_BASIC,
                .client_id = "c",
                .client_secret = secret,
                .allow_insecure_loopback = true,
                .connect_timeout = 5,
                .timeout = 10,
                .default_ttl = 60,
                .max_ttl = 3600,
                .pool = c->pool,
        };
        assert_int_equal(oauth_fetch(&req, c->abort, &c->res), 0);
        c->ms = now_ms() - t0;
}

static void *call_thread(void *arg) {
        call(arg);
        return NULL;
}

static void reset_counts(void) {
        atomic_store(&srv.accepted, 0);
        atomic_store(&srv.requests, 0);
}

static void test_pool_reuses_the_connection(void **state) {
        struct curlpool *pool = NULL;

        reset_counts();
        assert_int_equal(curlpool_new(&pool), 0);
        for (int i = 0; i < 5; i++) {
                struct call c = { .pool = pool, .path = "/token" };

                call(&c);
                assert_int_equal(c.res.outcome, OAUTH_OK);
                oauth_result_clear(&c.res);
        }
        assert_int_equal(atomic_load(&srv.requests), 5);
        assert_int_equal(atomic_load(&srv.accepted), 1);
        curlpool_free(pool);
}

static void test_without_pool_a_connection_each(void **state) {
        reset_counts();
        for (int i = 0; i < 3; i++) {
                struct call c = { .path = "/token" };

                call(&c);
                assert_int_equal(c.res.outcome, OAUTH_OK);
                oauth_result_clear(&c.res);
        }
        assert_int_equal(atomic_load(&srv.requests), 3);
        assert_int_equal(atomic_load(&srv.accepted), 3);
}

static void test_slow_answer_delays_only_its_caller(void **state) {
        struct curlpool *pool = NULL;
        struct call slow, quick;
        pthread_t t;

        reset_counts();
        assert_int_equal(curlpool_new(&pool), 0);
        slow = (struct call) { .pool = pool, .path = "/slow" };
        quick = (struct call) { .pool = pool, .path = "/token" };
        assert_int_equal(pthread_create(&t, NULL, call_thread, &slow), 0);
        while (atomic_load(&srv.accepted) < 1)
                usleep(10 * 1000);
        call(&quick);
        assert_int_equal(quick.res.outcome, OAUTH_OK);
        assert_true(quick.ms < 1000); /* the slow one takes 1500 ms */
        pthread_join(t, NULL);
        assert_int_equal(slow.res.outcome, OAUTH_OK);
        assert_true(slow.ms >= 1400);
        /* Two connections: the quick request could not wait for the busy one. */
        assert_int_equal(atomic_load(&srv.accepted), 2);
        oauth_result_clear(&quick.res);
        oauth_result_clear(&slow.res);
        curlpool_free(pool);
}

static void test_abort(void **state) {
        struct curlpool *pool = NULL;
        volatile int abort_flag = 0;
        struct call slow;
        pthread_t t;

        reset_counts();
        assert_int_equal(curlpool_new(&pool), 0);
        slow = (struct call) { .pool = pool, .path = "/slow", .abort = &abort_flag };
        assert_int_equal(pthread_create(&t, NULL, call_thread, &slow), 0);
        while (atomic_load(&srv.accepted) < 1)
                usleep(10 * 1000);
        abort_flag = 1;
        pthread_join(t, NULL);
        assert_int_equal(slow.res.outcome, OAUTH_TIMEOUT);
        assert_string_equal(slow.res.description, "token request aborted");
        oauth_result_clear(&slow.res);
        curlpool_free(pool);
}

static void test_free_unused(void **state) {
        struct curlpool *pool = NULL;

        assert_null(curlpool_free(NULL));
        assert_int_equal(curlpool_new(&pool), 0);
        assert_null(curlpool_free(pool)); /* never used */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pool_reuses_the_connection),
                cmocka_unit_test(test_without_pool_a_connection_each),
                cmocka_unit_test(test_slow_answer_delays_only_its_caller),
                cmocka_unit_test(test_abort),
                cmocka_unit_test(test_free_unused),
        };

        assert_int_equal(oauth_global_init(), 0);
        return cmocka_run_group_tests(tests, setup, teardown);
}
