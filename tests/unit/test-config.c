/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "build-config.h"
#include "agent/config.h"
#include "hsm/hsm.h"
#include "log.h"
#include "macro.h"

/* Every test gets its own directory from mkdtemp(); configs are written there. */
struct ctx {
        char dir[64];
        char path[128];         /* DIR/credagent.conf */
        struct config *c;
        char *errors;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int setup(void **state) {
        struct ctx *t = calloc(1, sizeof *t);

        assert_non_null(t);
        strcpy(t->dir, "/tmp/test-config-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        snprintf(t->path, sizeof t->path, "%s/credagent.conf", t->dir);
        *state = t;
        return 0;
}

static int teardown(void **state) {
        struct ctx *t = *state;

        config_free(t->c);
        free(t->errors);
        nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(t);
        return 0;
}

static void reset(struct ctx *t) {
        t->c = config_free(t->c);
        free(t->errors);
        t->errors = NULL;
}

/* Writes TEXT to DIR/NAME (creating conf.d/ when NAME is in it). */
static void write_file(struct ctx *t, const char *name, const char *text) {
        char path[256];
        FILE *f;

        if (strncmp(name, "conf.d/", 7) == 0) {
                snprintf(path, sizeof path, "%s/conf.d", t->dir);
                if (mkdir(path, 0755) < 0)
                        assert_int_equal(errno, EEXIST);
        }
        snprintf(path, sizeof path, "%s/%s", t->dir, name);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

/* Replaces every "{D}" in S with the test directory.  malloc()ed. */
static char *expand(const struct ctx *t, const char *s) {
        size_t n = 0;
        char *out, *o;

        for (const char *p = s; (p = strstr(p, "{D}")); p += 3)
                n++;
        out = malloc(strlen(s) + n * strlen(t->dir) + 1);
        assert_non_null(out);
        for (o = out; *s;) {
                if (strncmp(s, "{D}", 3) == 0) {
                        o = stpcpy(o, t->dir);
                        s += 3;
                } else
                        *o++ = *s++;
        }
        *o = '\0';
        return out;
}

static int load(struct ctx *t, const char *conf, unsigned flags) {
        reset(t);
        if (conf)
                write_file(t, "credagent.conf", conf);
        return config_load(t->path, flags, &t->c, &t->errors);
}

static struct config *expect_ok_flags(struct ctx *t, const char *conf, unsigned flags) {
        int r = load(t, conf, flags);

        if (r != 0)
                print_error("unexpected errors (%d):\n%s", r, t->errors ? t->errors : "(none)\n");
        assert_int_equal(r, 0);
        assert_non_null(t->c);
        assert_null(t->errors);
        return t->c;
}

static struct config *expect_ok(struct ctx *t, const char *conf) {
        return expect_ok_flags(t, conf, 0);
}

/* Loads CONF and checks the complete error text: EXPECTED with {D} expanded. */
static void expect_errors_flags(struct ctx *t, const char *conf, unsigned flags, const char *expected) {
        char *want = expand(t, expected);
        int r = load(t, conf, flags);

        if (r != -EINVAL || !t->errors || strcmp(t->errors, want) != 0)
                print_error("config:\n%s\n--- expected (r=%d):\n%s--- got (r=%d):\n%s", conf ? conf : "(none)",
                            -EINVAL, want, r, t->errors ? t->errors : "(no error text)\n");
        assert_int_equal(r, -EINVAL);
        assert_null(t->c); /* untouched on failure */
        assert_non_null(t->errors);
        assert_string_equal(t->errors, want);
        free(want);
}

static void expect_errors(struct ctx *t, const char *conf, const char *expected) {
        expect_errors_flags(t, conf, 0, expected);
}

struct error_case {
        const char *conf;
        const char *expected;
};

static void run_cases(struct ctx *t, const struct error_case *cases, size_t n) {
        for (size_t i = 0; i < n; i++) {
                print_message("  case %zu\n", i);
                expect_errors(t, cases[i].conf, cases[i].expected);
        }
}

/* Lines 1-4: a valid [agent]; 5-6: a valid credential C; 7-11: a valid principal C.P. */
#define AGENT                                           \
        "[agent]\n"                                     \
        "module = /usr/lib/softhsm/libsofthsm2.so\n"    \
        "token = pkcs11:token=credagent\n"              \
        "pin_source = file:/etc/credagent/pin\n"
#define CRED                                            \
        "[credential C]\n"                              \
        "token_url = https://idp.example.com/token\n"
#define PRINC                                                           \
        "[principal C.P]\n"                                             \
        "sequence = 1\n"                                                \
        "client_id = id\n"                                              \
        "client_secret = pkcs11:token=credagent;object=C.P;type=data\n" \
        "users = root\n"
#define F "{D}/credagent.conf"

/* ---- a full valid configuration -------------------------------------------------- */

static void test_full_roundtrip(void **state) {
        struct ctx *t = *state;
        const struct config_credential *billing, *min;
        const struct config_principal *p;
        struct config *c;
        char ca[256], *conf;

        snprintf(ca, sizeof ca, "%s/ca.pem", t->dir);
        write_file(t, "ca.pem", "not really a certificate\n");

        assert_true(asprintf(&conf,
                "\xef\xbb\xbf; credagent test configuration\n"                  /* 1, with a BOM */
                "# every key, in an order that is not the documented one\n"     /* 2 */
                "[principal Billing_API.Later]\n"                               /* 3: before its credential */
                "sequence = 30\n"                                               /* 4 */
                "client_id = billing-later\n"                                   /* 5 */
                "client_secret = pkcs11:token=credagent;object=Billing_API.Later;type=data\n" /* 6 */
                "users = *\n"                                                   /* 7 */
                "\n"                                                            /* 8 */
                "[agent]\n"                                                     /* 9 */
                "socket = /run/credagent/test.sock   ; inline comment\n"        /* 10 */
                "socket_group = root\n"                                         /* 11 */
                "module = /usr/lib/softhsm/libsofthsm2.so\n"                    /* 12 */
                "module_dirs = /usr/lib/softhsm  /opt/pkcs11\n"                 /* 13 */
                "token = pkcs11:token=credagent\n"                              /* 14 */
                "pin_source = credential:credagent.pin\n"                       /* 15 */
                "ca_file = %s\n"                                                /* 16 */
                "\n"                                                            /* 17 */
                "[credential Billing_API]\n"                                    /* 18 */
                "label = Billing API (production)\n"                            /* 19 */
                "allow_insecure_loopback = yes\n"                               /* 20 */
                "flow = client_credentials\n"                                   /* 21 */
                "token_url = http://127.0.0.1:8443/oauth2/token\n"              /* 22 */
                "client_auth = post\n"                                          /* 23 */
                "scope = billing:read billing:write\n"                          /* 24 */
                "refresh_status = 403, 419 403\n"                               /* 25 */
                "default_ttl = 600\n"                                           /* 26 */
                "max_ttl = 3600\n"                                              /* 27 */
                "connect_timeout = 2\n"                                         /* 28 */
                "timeout = 30\n"                                                /* 29 */
                "\n"                                                            /* 30 */
                "[principal Billing_API.Batch]\n"                               /* 31 */
                "sequence = 5\n"                                                /* 32 */
                "client_id = billing-batch\n"                                   /* 33 */
                "client_secret = pkcs11:token=credagent;object=Billing_API.Batch;type=data\n" /* 34 */
                "users = root,\n"                                               /* 35 */
                "    4242\n"                                                    /* 36: continuation */
                "groups = root 3000\n"                                          /* 37 */
                "\n"                                                            /* 38 */
                "[principal Billing_API.Ops]\n"                                 /* 39 */
                "sequence = 10\n"                                               /* 40 */
                "client_id = billing-ops\n"                                     /* 41 */
                "client_secret = pkcs11:object=ops\n"                           /* 42 */
                "groups = 0\n"                                                  /* 43 */
                "\n"                                                            /* 44 */
                "[credential Minimal]\n"                                        /* 45 */
                "token_url = https://idp.example.com/token\n",                  /* 46 */
                ca) > 0);
        c = expect_ok(t, conf);
        free(conf);

        assert_string_equal(c->path, t->path);
        assert_string_equal(c->socket, "/run/credagent/test.sock");
        assert_string_equal(c->socket_group, "root");
        assert_int_equal(c->socket_gid, 0);
        assert_string_equal(c->module, "/usr/lib/softhsm/libsofthsm2.so");
        assert_non_null(c->module_dirs);
        assert_string_equal(c->module_dirs[0], "/usr/lib/softhsm");
        assert_string_equal(c->module_dirs[1], "/opt/pkcs11");
        assert_null(c->module_dirs[2]);
        assert_string_equal(c->token, "pkcs11:token=credagent");
        assert_string_equal(c->pin_source, "credential:credagent.pin");
        assert_string_equal(c->ca_file, ca);

        /* Credentials in file order. */
        assert_int_equal(c->n_credentials, 2);
        billing = c->credentials[0];
        min = c->credentials[1];
        assert_ptr_equal(config_find_credential(c, "Billing_API"), billing);
        assert_ptr_equal(config_find_credential(c, "Minimal"), min);
        assert_null(config_find_credential(c, "billing_api"));
        assert_null(config_find_credential(c, "Nope"));

        assert_string_equal(billing->name, "Billing_API");
        assert_string_equal(billing->label, "Billing API (production)");
        assert_string_equal(billing->token_url, "http://127.0.0.1:8443/oauth2/token");
        assert_int_equal(billing->client_auth, CLIENT_AUTH_POST);
        assert_string_equal(billing->scope, "billing:read billing:write");
        assert_int_equal(billing->n_refresh_status, 2);
        assert_int_equal(billing->refresh_status[0], 403);
        assert_int_equal(billing->refresh_status[1], 419);
        assert_true(billing->allow_insecure_loopback);
        assert_int_equal(billing->default_ttl, 600);
        assert_int_equal(billing->max_ttl, 3600);
        assert_int_equal(billing->connect_timeout, 2);
        assert_int_equal(billing->timeout, 30);
        assert_string_equal(billing->file, t->path);
        assert_int_equal(billing->line, 18);

        /* Defaults. */
        assert_string_equal(min->name, "Minimal");
        assert_null(min->label);
        assert_string_equal(min->token_url, "https://idp.example.com/token");
        assert_int_equal(min->client_auth, CLIENT_AUTH_BASIC);
        assert_null(min->scope);
        assert_int_equal(min->n_refresh_status, 0);
        assert_false(min->allow_insecure_loopback);
        assert_int_equal(min->default_ttl, 300);
        assert_int_equal(min->max_ttl, 86400);
        assert_int_equal(min->refresh_at, 80);
        assert_int_equal(min->refresh_margin, 60);
        assert_int_equal(min->connect_timeout, 5);
        assert_int_equal(min->timeout, 15);
        assert_int_equal(min->n_principals, 0);
        assert_int_equal(min->line, 45);

        /* Principals sorted by sequence, whatever the file order; rules[i] is theirs. */
        assert_int_equal(billing->n_principals, 3);
        assert_string_equal(billing->principals[0]->full_name, "Billing_API.Batch");
        assert_string_equal(billing->principals[1]->full_name, "Billing_API.Ops");
        assert_string_equal(billing->principals[2]->full_name, "Billing_API.Later");
        for (size_t i = 0; i < 3; i++) {
                assert_ptr_equal(billing->rules[i], &billing->principals[i]->rule);
                assert_ptr_equal(billing->principals[i]->credential, billing);
        }

        p = billing->principals[0];
        assert_ptr_equal(config_find_principal(c, "Billing_API.Batch"), p);
        assert_string_equal(p->name, "Batch");
        assert_string_equal(p->client_id, "billing-batch");
        assert_string_equal(p->client_secret, "pkcs11:token=credagent;object=Billing_API.Batch;type=data");
        assert_int_equal(p->rule.sequence, 5);
        assert_false(p->rule.any_user);
        assert_int_equal(p->rule.n_uids, 2);
        assert_int_equal(p->rule.uids[0], 0);    /* root, resolved */
        assert_int_equal(p->rule.uids[1], 4242); /* numeric, from the continuation line */
        assert_int_equal(p->rule.n_gids, 2);
        assert_int_equal(p->rule.gids[0], 0);
        assert_int_equal(p->rule.gids[1], 3000);
        assert_string_equal(p->file, t->path);
        assert_int_equal(p->line, 31);

        p = billing->principals[1];
        assert_string_equal(p->name, "Ops");
        assert_int_equal(p->rule.sequence, 10);
        assert_false(p->rule.any_user);
        assert_int_equal(p->rule.n_uids, 0);
        assert_null(p->rule.uids);
        assert_int_equal(p->rule.n_gids, 1);
        assert_int_equal(p->rule.gids[0], 0);
        assert_string_equal(p->client_secret, "pkcs11:object=ops");

        p = billing->principals[2];
        assert_int_equal(p->rule.sequence, 30);
        assert_true(p->rule.any_user);
        assert_int_equal(p->rule.n_uids, 0);
        assert_int_equal(p->rule.n_gids, 0);
        assert_int_equal(p->line, 3);

        assert_null(config_find_principal(c, "Billing_API.Nope"));
        assert_null(config_find_principal(c, "Batch"));
}

static void test_defaults(void **state) {
        struct ctx *t = *state;
        struct config *c;
        char *sock;
        size_t n = 0;

        c = expect_ok(t, AGENT);
        sock = config_default_socket();
        assert_non_null(sock);
        assert_string_equal(c->socket, sock);
        free(sock);
        assert_null(c->socket_group);
        assert_null(c->ca_file);
        assert_int_equal(c->n_credentials, 0);
        assert_non_null(c->module_dirs);
        for (; hsm_default_module_dirs[n]; n++) {
                assert_non_null(c->module_dirs[n]);
                assert_string_equal(c->module_dirs[n], hsm_default_module_dirs[n]);
                assert_ptr_not_equal(c->module_dirs[n], hsm_default_module_dirs[n]); /* a copy */
        }
        assert_null(c->module_dirs[n]);
        assert_true(n > 0);

        /* module is not needed when the token URI names the module; a numeric group. */
        c = expect_ok(t, "[agent]\n"
                         "token = pkcs11:token=credagent?module-path=/usr/lib/softhsm/libsofthsm2.so\n"
                         "pin_source = file:/etc/credagent/pin\n"
                         "socket_group = 4242\n");
        assert_null(c->module);
        assert_string_equal(c->token, "pkcs11:token=credagent?module-path=/usr/lib/softhsm/libsofthsm2.so");
        assert_string_equal(c->socket_group, "4242");
        assert_int_equal(c->socket_gid, 4242);

        /* http to [::1] and to 127.x with allow_insecure_loopback given after token_url;
         * "1", "true" and "TRUE" are booleans. */
        c = expect_ok(t, AGENT
                      "[credential A]\n"
                      "token_url = http://[::1]:8080/token\n"
                      "allow_insecure_loopback = 1\n"
                      "[credential B]\n"
                      "token_url = http://127.3.2.1/token\n"
                      "allow_insecure_loopback = TRUE\n"
                      "[credential D]\n"
                      "token_url = https://idp.example.com/token?tenant=x\n"
                      "allow_insecure_loopback = no\n"
                      "client_auth = basic\n"
                      "scope = a !#$%&'()*+,-./:;<=>?@[]^_`{|}~\n");
        assert_int_equal(c->n_credentials, 3);
        assert_true(c->credentials[0]->allow_insecure_loopback);
        assert_true(c->credentials[1]->allow_insecure_loopback);
        assert_false(c->credentials[2]->allow_insecure_loopback);
        assert_string_equal(c->credentials[2]->scope, "a !#$%&'()*+,-./:;<=>?@[]^_`{|}~");
}

static void test_long_names(void **state) {
        struct ctx *t = *state;
        char cred[81], princ[81], *conf;
        struct config *c;

        /* inih keeps only 49 bytes of a section name; names of up to 80 bytes must work. */
        memset(cred, 'c', 80);
        cred[80] = '\0';
        memset(princ, 'p', 80);
        princ[80] = '\0';
        assert_true(asprintf(&conf, AGENT
                             "[credential %s]\n"
                             "token_url = https://idp.example.com/token\n"
                             "[principal %s.%s]\n"
                             "sequence = 0\n"
                             "client_id = x\n"
                             "client_secret = pkcs11:object=x\n"
                             "users = 0\n",
                             cred, cred, princ) > 0);
        c = expect_ok(t, conf);
        free(conf);
        assert_int_equal(c->n_credentials, 1);
        assert_string_equal(c->credentials[0]->name, cred);
        assert_int_equal(c->credentials[0]->n_principals, 1);
        assert_string_equal(c->credentials[0]->principals[0]->name, princ);
        assert_int_equal(c->credentials[0]->principals[0]->rule.sequence, 0);
}

/* ---- conf.d -------------------------------------------------------------------------- */

static void test_confd(void **state) {
        struct ctx *t = *state;
        struct config *c;

        /* strcmp order: "10.conf" < "B.conf" < "a.conf" (not case-insensitive, not
         * directory order).  Principals may come before their credential, and in another file. */
        write_file(t, "conf.d/a.conf",
                   "[credential From_a]\n"
                   "token_url = https://a.example.com/token\n");
        write_file(t, "conf.d/B.conf",
                   "[principal Main.FromB]\n"
                   "sequence = 2\n"
                   "client_id = b\n"
                   "client_secret = pkcs11:object=b\n"
                   "users = root\n"
                   "[credential From_B]\n"
                   "token_url = https://b.example.com/token\n");
        write_file(t, "conf.d/10.conf",
                   "[credential From_10]\n"
                   "token_url = https://10.example.com/token\n"
                   "[principal From_a.X]\n"
                   "sequence = 1\n"
                   "client_id = x\n"
                   "client_secret = pkcs11:object=x\n"
                   "groups = root\n");
        /* Not *.conf, hidden, or not ending in .conf: ignored even though invalid. */
        write_file(t, "conf.d/.hidden.conf", "[bogus]\n");
        write_file(t, "conf.d/notes.txt", "[bogus]\n");
        write_file(t, "conf.d/x.conf.orig", "[bogus]\n");

        c = expect_ok(t, AGENT
                      "[credential Main]\n"
                      "token_url = https://main.example.com/token\n"
                      "[principal Main.Local]\n"
                      "sequence = 3\n"
                      "client_id = l\n"
                      "client_secret = pkcs11:object=l\n"
                      "users = *\n");
        assert_int_equal(c->n_credentials, 4);
        assert_string_equal(c->credentials[0]->name, "Main");
        assert_string_equal(c->credentials[1]->name, "From_10");
        assert_string_equal(c->credentials[2]->name, "From_B");
        assert_string_equal(c->credentials[3]->name, "From_a");

        /* Main: FromB (2, conf.d/B.conf) before Local (3, main file). */
        assert_int_equal(c->credentials[0]->n_principals, 2);
        assert_string_equal(c->credentials[0]->principals[0]->full_name, "Main.FromB");
        assert_string_equal(c->credentials[0]->principals[1]->full_name, "Main.Local");
        assert_true(strstr(c->credentials[0]->principals[0]->file, "/conf.d/B.conf") != NULL);
        assert_int_equal(c->credentials[0]->principals[0]->line, 1);
        assert_string_equal(c->credentials[3]->principals[0]->full_name, "From_a.X");
        assert_true(strstr(c->credentials[3]->file, "/conf.d/a.conf") != NULL);

}

/* Errors in conf.d files name those files and come in file order; a section defined
 * twice across files is an error pointing at the first. */
static void test_confd_errors(void **state) {
        struct ctx *t = *state;
        char sub[256];

        write_file(t, "conf.d/B.conf",
                   "[credential Main]\n"
                   "token_url = https://b.example.com/token\n"
                   "[agent]\n");
        write_file(t, "conf.d/10.conf", "[credential From_10]\ntoken_url = ftp://x/\n");
        write_file(t, "conf.d/a.conf",
                   "\n"
                   "[principal Other.P]\n"
                   "sequence = 1\n"
                   "client_secret = pkcs11:object=x\n"
                   "users = root\n");
        /* A directory named *.conf cannot be read: reported, the others still read. */
        snprintf(sub, sizeof sub, "%s/conf.d/dir.conf", t->dir);
        assert_int_equal(mkdir(sub, 0755), 0);

        expect_errors(t, AGENT "[credential Main]\ntoken_url = https://main.example.com/token\n",
                      "{D}/conf.d/10.conf:2: [credential From_10] token_url: \"ftp://x/\" must use https\n"
                      "{D}/conf.d/B.conf:1: [credential Main]: duplicate section; it is already defined at " F ":5\n"
                      "{D}/conf.d/B.conf:3: [agent]: duplicate section; it is already defined at " F ":1\n"
                      "{D}/conf.d/a.conf:2: [principal Other.P]: missing required key \"client_id\"\n"
                      "{D}/conf.d/a.conf:2: [principal Other.P]: there is no [credential Other]\n"
                      "{D}/conf.d/dir.conf: cannot read: Is a directory\n");
}

static void test_confd_missing_and_main_unreadable(void **state) {
        struct ctx *t = *state;
        char *want;
        int r;

        /* No conf.d at all is fine (every other test relies on it too). */
        expect_ok(t, AGENT);

        /* A missing main file: -ENOENT, and a message naming it. */
        reset(t);
        r = config_load("/nonexistent/credagent.conf", 0, &t->c, &t->errors);
        assert_int_equal(r, -ENOENT);
        assert_null(t->c);
        assert_non_null(t->errors);
        assert_string_equal(t->errors, "/nonexistent/credagent.conf: cannot read: No such file or directory\n");

        /* Too large a file, and a conf.d entry that is not a regular file. */
        {
                char *big = malloc((1 << 20) + 2), link[256];

                assert_non_null(big);
                memset(big, ';', (1 << 20) + 1);
                big[(1 << 20) + 1] = '\0';
                reset(t);
                write_file(t, "credagent.conf", big);
                free(big);
                want = expand(t, F ": cannot read: larger than 1 MiB\n");
                assert_int_equal(config_load(t->path, 0, &t->c, &t->errors), -EFBIG);
                assert_string_equal(t->errors, want);
                free(want);

                write_file(t, "conf.d/.keep", "");
                snprintf(link, sizeof link, "%s/conf.d/null.conf", t->dir);
                assert_int_equal(symlink("/dev/null", link), 0);
                expect_errors(t, AGENT, "{D}/conf.d/null.conf: cannot read: not a regular file\n");
                assert_int_equal(unlink(link), 0);
        }

        /* No [agent] anywhere. */
        expect_errors(t, CRED, F ": no [agent] section\n");

        /* The error text is optional. */
        reset(t);
        write_file(t, "credagent.conf", CRED);
        assert_int_equal(config_load(t->path, 0, &t->c, NULL), -EINVAL);
        assert_null(t->c);

        want = expand(t, F);
        assert_string_equal(want, t->path);
        free(want);
}

/* ---- structure ----------------------------------------------------------------------- */

static void test_structure_errors(void **state) {
        char long_line[260];
        static char long_conf[512];
        const struct error_case cases[] = {
                { "socket = /x.sock\n" AGENT,
                  F ":1: key \"socket\" is outside any section; put it under [agent], [credential NAME] or "
                  "[principal CRED.NAME]\n" },
                { AGENT CRED "[foo]\nbar = 1\n",
                  F ":7: unknown section [foo]; sections are [agent], [credential NAME] and [principal CRED.NAME]\n" },
                { AGENT CRED "[endpoint Billing]\nurl = https://api.example.com/v2\ncredential = C\n",
                  F ":7: [endpoint Billing]: endpoints and callouts are not supported by this version\n" },
                { AGENT CRED "[credential D]\ntoken_url = https://a/t\nlabel = x\ntoken_url = https://b/t\n",
                  F ":10: [credential D] token_url: duplicate key; it is already set on line 8\n" },
                { AGENT CRED "[credential C]\ntoken_url = https://b/t\n",
                  F ":7: [credential C]: duplicate section; it is already defined at " F ":5\n" },
                { AGENT CRED AGENT,
                  F ":7: [agent]: duplicate section; it is already defined at " F ":1\n" },
                { AGENT CRED "[agent x]\n",
                  F ":7: [agent x]: the [agent] section takes no name\n" },
                { AGENT CRED "[credential]\ntoken_url = https://b/t\n",
                  F ":7: [credential]: a credential section needs a name: [credential NAME]\n" },
                { AGENT CRED "[principal ]\nsequence = 1\n",
                  F ":7: [principal]: a principal section needs a name: [principal CRED.NAME]\n" },
                { AGENT CRED "[credential D]\ntoken_url = https://b/t\nfoo = bar\n",
                  F ":9: [credential D] foo: unknown key\n" },
                { AGENT CRED "garbage\n",
                  F ":7: syntax error: expected \"key = value\", a [section] header or a comment\n" },
                { AGENT CRED "[credential D\ntoken_url = x\n",
                  F ":7: malformed section header \"[credential D\": no closing \"]\"\n" },
                { AGENT CRED "label =\n",
                  F ":7: [credential C] label: empty value\n" },
                { AGENT CRED "= x\n",
                  F ":7: syntax error: no key name before \"=\"\n" },
                { long_conf,
                  F ":7: line is 250 bytes long; lines may be at most 198 bytes (long lists can go on indented "
                  "continuation lines)\n" },
        };
        struct ctx *t = *state;

        memset(long_line, 'a', 250 - strlen("label = "));
        long_line[250 - strlen("label = ")] = '\0';
        snprintf(long_conf, sizeof long_conf, AGENT CRED "label = %s\n", long_line);

        run_cases(t, cases, ELEMENTSOF(cases));

        /* A NUL byte in a line. */
        {
                static const char conf[] = AGENT CRED "label = a\0b\n";
                char *want = expand(t, F ":7: line contains a NUL byte\n");
                FILE *f = fopen(t->path, "we");

                reset(t);
                assert_non_null(f);
                assert_int_equal(fwrite(conf, 1, sizeof conf - 1, f), sizeof conf - 1);
                assert_int_equal(fclose(f), 0);
                assert_int_equal(config_load(t->path, 0, &t->c, &t->errors), -EINVAL);
                assert_string_equal(t->errors, want);
                free(want);
        }
}

static void test_name_errors(void **state) {
        const struct error_case cases[] = {
                { AGENT "[credential 1abc]\ntoken_url = https://b/t\n",
                  F ":5: [credential 1abc]: credential name \"1abc\" must begin with a letter\n" },
                { AGENT "[credential Bad-Name]\ntoken_url = https://b/t\n",
                  F ":5: [credential Bad-Name]: credential name \"Bad-Name\" may contain only ASCII letters, digits "
                  "and underscores\n" },
                { AGENT "[credential Bad_]\ntoken_url = https://b/t\n",
                  F ":5: [credential Bad_]: credential name \"Bad_\" must not end with an underscore\n" },
                { AGENT CRED "[principal C.bad__name]\nsequence = 1\nclient_id = x\n"
                  "client_secret = pkcs11:object=x\nusers = root\n",
                  F ":7: [principal C.bad__name]: principal name \"bad__name\" must not contain two consecutive "
                  "underscores\n" },
                { AGENT CRED "[principal NoDot]\nsequence = 1\nclient_id = x\n"
                  "client_secret = pkcs11:object=x\nusers = root\n",
                  F ":7: [principal NoDot]: \"NoDot\" must be CRED.NAME: the credential's name, \".\", the principal's "
                  "name\n" },
                { AGENT CRED "[principal C_.P]\nsequence = 1\nclient_id = x\n"
                  "client_secret = pkcs11:object=x\nusers = root\n",
                  F ":7: [principal C_.P]: credential name \"C_\" must not end with an underscore\n" },
                { AGENT CRED "[principal C.]\nsequence = 1\nclient_id = x\n"
                  "client_secret = pkcs11:object=x\nusers = root\n",
                  F ":7: [principal C.]: principal name \"\" must not be empty\n" },
                { AGENT CRED "[principal C.a.b]\nsequence = 1\nclient_id = x\n"
                  "client_secret = pkcs11:object=x\nusers = root\n",
                  F ":7: [principal C.a.b]: principal name \"a.b\" may contain only ASCII letters, digits and "
                  "underscores\n" },
        };

        run_cases(*state, cases, ELEMENTSOF(cases));
}

/* ---- [agent] ------------------------------------------------------------------------- */

#define A10 "aaaaaaaaaa"
#define A92 A10 A10 A10 A10 A10 A10 A10 A10 A10 "aa"
#define A93 A92 "a"

static void test_agent_errors(void **state) {
        static char long_socket[512];
        const struct error_case cases[] = {
                { AGENT "socket = run/x.sock\n",
                  F ":5: [agent] socket: \"run/x.sock\" is not an absolute path\n" },
                { AGENT "socket_group = no_such_group_xyz\n",
                  F ":5: [agent] socket_group: group \"no_such_group_xyz\" does not exist\n" },
                { AGENT "socket_group = 4294967295\n",
                  F ":5: [agent] socket_group: \"4294967295\" is not a valid group id\n" },
                { "[agent]\nmodule = softhsm2.so\ntoken = pkcs11:token=x\npin_source = file:/p\n",
                  F ":2: [agent] module: \"softhsm2.so\" is not an absolute path\n" },
                { "[agent]\ntoken = pkcs11:token=x\npin_source = file:/p\n",
                  F ":1: [agent]: missing required key \"module\" (or module-path= in the token URI)\n" },
                { AGENT "module_dirs = /usr/lib lib/pkcs11\n",
                  F ":5: [agent] module_dirs: \"lib/pkcs11\" is not an absolute path\n" },
                { "[agent]\nmodule = /m.so\npin_source = file:/p\n",
                  F ":1: [agent]: missing required key \"token\"\n" },
                { "[agent]\nmodule = /m.so\ntoken = credagent\npin_source = file:/p\n",
                  F ":3: [agent] token: \"credagent\" is not a valid PKCS#11 URI: URI scheme must be 'pkcs11:'\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=credagent;object=x\npin_source = file:/p\n",
                  F ":3: [agent] token: \"pkcs11:token=credagent;object=x\" has an attribute that p11-kit does not "
                  "recognise or that does not belong in a token URI\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=credagent?modul-path=/m.so\npin_source = file:/p\n",
                  F ":3: [agent] token: unknown query attribute \"modul-path\"\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=credagent?pin-value=123456\npin_source = file:/p\n",
                  F ":3: [agent] token: pin-value is not allowed in config; use pin_source\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=credagent;pin-value=123456\npin_source = file:/p\n",
                  F ":3: [agent] token: pin-value is not allowed in config; use pin_source\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=credagent?pin-source=/p\npin_source = file:/p\n",
                  F ":3: [agent] token: pin-source is not allowed in the token URI; use pin_source\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=my token\npin_source = file:/p\n",
                  F ":3: [agent] token: \"pkcs11:token=my token\" contains whitespace; write a space in a label as "
                  "%20\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=x\n",
                  F ":1: [agent]: missing required key \"pin_source\"\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=x\npin_source = /etc/pin\n",
                  F ":4: [agent] pin_source: \"/etc/pin\" must be file:/absolute/path or credential:NAME\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=x\npin_source = file:pin\n",
                  F ":4: [agent] pin_source: \"file:pin\": the file must be an absolute path (file:/path/to/pin)\n" },
                { "[agent]\nmodule = /m.so\ntoken = pkcs11:token=x\npin_source = credential:a/b\n",
                  F ":4: [agent] pin_source: \"credential:a/b\": the credential name must be a file name in "
                  "$CREDENTIALS_DIRECTORY, without \"/\"\n" },
                { long_socket, F ":5: [agent] socket: \"/run/credagent/" A93 "\" is 108 bytes long; a Unix socket "
                  "path may be at most 107 bytes\n" },
        };
        struct ctx *t = *state;
        char *conf;

        struct config *c;

        snprintf(long_socket, sizeof long_socket, AGENT "socket = /run/credagent/%s\n", A93);
        run_cases(t, cases, ELEMENTSOF(cases));

        /* 107 bytes fit (sun_path is 108 with the NUL). */
        c = expect_ok(t, AGENT "socket = /run/credagent/" A92 "\n");
        assert_int_equal(strlen(c->socket), 107);

        /* ca_file: a missing file and a directory ({D} expanded in the config too). */
        conf = expand(t, AGENT "ca_file = {D}/nonexistent.pem\n");
        expect_errors(t, conf, F ":5: [agent] ca_file: \"{D}/nonexistent.pem\" is not readable: No such file or "
                      "directory\n");
        free(conf);
        conf = expand(t, AGENT "ca_file = {D}\n");
        expect_errors(t, conf, F ":5: [agent] ca_file: \"{D}\" is not a regular file\n");
        free(conf);

        /* A PIN in the token URI is never quoted, even when the URI is bad for another reason. */
        expect_errors(t, "[agent]\nmodule = /m.so\ntoken = pkcs11:token=%zz?pin-value=s3cr3tPIN\npin_source = file:/p\n",
                      F ":3: [agent] token: not a valid PKCS#11 URI: URI encoding invalid or corrupted\n");
        assert_null(strstr(t->errors, "s3cr3tPIN"));
}

/* ---- [credential] -------------------------------------------------------------------- */

#define D_HEAD AGENT "[credential D]\n" /* [credential D] on line 5, keys from line 6 */

/* A scope is sent to net in one message: longer than MSG_SCOPE_MAX is refused at load time.
 * (token_url and client_secret cannot exceed their limits: inih lines end at 198 bytes and
 * continuation lines join with a space, which neither may contain.) */
static void test_scope_length_cap(void **state) {
        struct ctx *t = *state;
        char *conf = NULL, *line = NULL;
        size_t len = 0, pos = 0;
        FILE *f = open_memstream(&conf, &len);

        assert_non_null(f);
        fputs(AGENT CRED "scope = s0", f);
        /* 30 continuation lines of 150 bytes: about 4500 bytes of scope tokens. */
        line = malloc(152);
        assert_non_null(line);
        for (int i = 0; i < 30; i++) {
                memset(line, 'x', 150);
                line[0] = ' ';
                line[150] = '\n';
                line[151] = '\0';
                fputs("\n", f);
                fputs(line, f);
                pos += 150;
        }
        fputs("\n" PRINC, f);
        fclose(f);
        free(line);
        assert_true(pos > 4096);
        assert_int_equal(load(t, conf, 0), -EINVAL);
        assert_non_null(t->errors);
        assert_non_null(strstr(t->errors, "[credential C] scope: longer than 4096 bytes"));
        free(conf);
}

/* ---- scope formulas -------------------------------------------------------------- */

#define FORMULA_CONF                                                                    \
        AGENT                                                                           \
        "[credential C]\n"                                                              \
        "token_url = https://idp.example.com/token\n"                                   \
        "scope = {!\"role:\" + $User.Group + \" user:\" + $User.Name}\n"                 \
        "[principal C.P]\n"                                                             \
        "sequence = 1\n"                                                                \
        "client_id = id\n"                                                              \
        "client_secret = pkcs11:token=credagent;object=C.P;type=data\n"                 \
        "users = *\n"                                                                   \
        "[credential G]\n"                                                              \
        "token_url = https://idp.example.com/token\n"                                   \
        "scope = {!\"groups \" + $User.Groups + \" \" + $Credential.Name + \".\" + $Principal.Name}\n" \
        "[principal G.Q]\n"                                                             \
        "sequence = 1\n"                                                                \
        "client_id = id\n"                                                              \
        "client_secret = pkcs11:token=credagent;object=G.Q;type=data\n"                 \
        "users = *\n"                                                                   \
        "[credential Plain]\n"                                                          \
        "token_url = https://idp.example.com/token\n"                                   \
        "scope = read write\n"                                                          \
        "[principal Plain.P]\n"                                                         \
        "sequence = 1\n"                                                                \
        "client_id = id\n"                                                              \
        "client_secret = pkcs11:token=credagent;object=Plain.P;type=data\n"             \
        "users = *\n"                                                                   \
        "[credential None]\n"                                                           \
        "token_url = https://idp.example.com/token\n"                                   \
        "[principal None.P]\n"                                                          \
        "sequence = 1\n"                                                                \
        "client_id = id\n"                                                              \
        "client_secret = pkcs11:token=credagent;object=None.P;type=data\n"              \
        "users = *\n"

static void assert_names_sorted(const struct config_name *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                assert_non_null(v[i].name);
                assert_true(v[i].name[0] != '\0');
                assert_true(strlen(v[i].name) <= CONFIG_NAME_LEN_MAX);
                if (i > 0)
                        assert_true(v[i - 1].id < v[i].id);
        }
}

/* An id that the passwd (USERS) or group database does not know. */
static uint32_t unnamed_id(bool users) {
        for (uint32_t id = 47000; id < 48000; id++)
                if (users ? !getpwuid(id) : !getgrgid(id))
                        return id;
        fail_msg("no free id");
        return 0;
}

static void test_scope_formulas(void **state) {
        struct ctx *t = *state;
        const struct config_credential *c, *g, *plain, *none;
        struct config *cfg;

        cfg = expect_ok(t, FORMULA_CONF);
        c = config_find_credential(cfg, "C");
        g = config_find_credential(cfg, "G");
        plain = config_find_credential(cfg, "Plain");
        none = config_find_credential(cfg, "None");
        /* The source text is kept; a formula is compiled, a plain scope is not. */
        assert_string_equal(c->scope, "{!\"role:\" + $User.Group + \" user:\" + $User.Name}");
        assert_non_null(c->scope_formula);
        assert_true(formula_uses(c->scope_formula, FORMULA_VAR_USER_GROUP));
        assert_non_null(g->scope_formula);
        assert_string_equal(plain->scope, "read write");
        assert_null(plain->scope_formula);
        assert_null(none->scope);
        assert_null(none->scope_formula);

        /* $User.Name and $User.Group(s) are used: both tables, from the host's databases. */
        assert_true(cfg->n_users > 0);
        assert_true(cfg->n_groups > 0);
        assert_names_sorted(cfg->users, cfg->n_users);
        assert_names_sorted(cfg->groups, cfg->n_groups);
        assert_string_equal(config_user_name(cfg, 0), getpwuid(0)->pw_name);
        assert_string_equal(config_group_name(cfg, 0), getgrgid(0)->gr_name);
        assert_null(config_user_name(cfg, unnamed_id(true)));
        assert_null(config_group_name(cfg, unnamed_id(false)));
        assert_null(config_user_name(NULL, 0));
        /* Every entry is the database's answer for its id. */
        for (size_t i = 0; i < cfg->n_users; i++)
                assert_string_equal(cfg->users[i].name, getpwuid(cfg->users[i].id)->pw_name);
        for (size_t i = 0; i < cfg->n_groups; i++)
                assert_string_equal(cfg->groups[i].name, getgrgid(cfg->groups[i].id)->gr_name);

        /* Only what the formulas need: no names for plain scopes or other variables. */
        cfg = expect_ok(t, AGENT CRED "scope = {!\"u:\" + $User.Uid + \" \" + $Credential.Name}\n" PRINC);
        assert_non_null(cfg->credentials[0]->scope_formula);
        assert_int_equal(cfg->n_users, 0);
        assert_int_equal(cfg->n_groups, 0);
        assert_null(cfg->users);
        cfg = expect_ok(t, AGENT CRED "scope = {!\"u:\" + $User.Name}\n" PRINC);
        assert_true(cfg->n_users > 0);
        assert_int_equal(cfg->n_groups, 0);
        cfg = expect_ok(t, AGENT CRED "scope = {!\"g:\" + $User.Groups}\n" PRINC);
        assert_int_equal(cfg->n_users, 0);
        assert_true(cfg->n_groups > 0);
        cfg = expect_ok(t, AGENT CRED "scope = read\n" PRINC);
        assert_int_equal(cfg->n_users + cfg->n_groups, 0);
        /* $Unit is accepted: it is refused per request (not available in this version). */
        cfg = expect_ok(t, AGENT CRED "scope = {!\"unit:\" + $Unit}\n" PRINC);
        assert_non_null(cfg->credentials[0]->scope_formula);
}

static void test_scope_expand(void **state) {
        struct ctx *t = *state;
        const struct config_principal *p, *q, *plain, *none;
        struct peer peer = { .pid = 100, .uid = 0, .gid = 0 };
        char buf[FORMULA_SCOPE_MAX + 1], reason[512], want[256];
        const char *scope = "untouched";
        uint32_t nouser = unnamed_id(true), nogroup = unnamed_id(false);
        struct config *cfg;

        cfg = expect_ok(t, FORMULA_CONF);
        p = config_find_principal(cfg, "C.P");
        q = config_find_principal(cfg, "G.Q");
        plain = config_find_principal(cfg, "Plain.P");
        none = config_find_principal(cfg, "None.P");

        /* Plain scopes and no scope need no buffer. */
        assert_int_equal(config_scope_expand(cfg, plain, &peer, NULL, 0, NULL, 0, &scope), 0);
        assert_ptr_equal(scope, plain->credential->scope);
        assert_int_equal(config_scope_expand(cfg, none, &peer, NULL, 0, NULL, 0, &scope), 0);
        assert_null(scope);

        /* root */
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope), 0);
        snprintf(want, sizeof want, "role:%s user:%s", getgrgid(0)->gr_name, getpwuid(0)->pw_name);
        assert_string_equal(scope, want);
        assert_ptr_equal(scope, buf);

        /* $User.Groups: the gid first, then the supplementary groups in order, each once. */
        peer.n_groups = 3;
        peer.groups[0] = 0;
        peer.groups[1] = cfg->groups[cfg->n_groups - 1].id;
        peer.groups[2] = 0;
        assert_int_equal(config_scope_expand(cfg, q, &peer, buf, sizeof buf, reason, sizeof reason, &scope), 0);
        snprintf(want, sizeof want, "groups %s %s G.Q", cfg->groups[0].id == 0 ? cfg->groups[0].name : "?",
                 cfg->groups[cfg->n_groups - 1].name);
        assert_string_equal(scope, want);

        /* A uid without a name. */
        scope = "untouched";
        peer = (struct peer) { .pid = 100, .uid = nouser, .gid = 0 };
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                         -ENODATA);
        assert_string_equal(scope, "untouched");
        snprintf(want, sizeof want, "$User.Name is not available: uid %u has no user name (names are read when "
                 "the configuration is loaded)", (unsigned) nouser);
        assert_string_equal(reason, want);
        /* A gid without a name: $User.Group comes first in the formula. */
        peer.gid = nogroup;
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                         -ENODATA);
        snprintf(want, sizeof want, "$User.Group is not available: group %u has no name (names are read when "
                 "the configuration is loaded)", (unsigned) nogroup);
        assert_string_equal(reason, want);
        /* ... and in $User.Groups, also as a supplementary group. */
        peer = (struct peer) { .pid = 100, .uid = 0, .gid = 0, .n_groups = 1, .groups = { nogroup } };
        assert_int_equal(config_scope_expand(cfg, q, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                         -ENODATA);
        snprintf(want, sizeof want, "$User.Groups is not available: group %u has no name (names are read when "
                 "the configuration is loaded)", (unsigned) nogroup);
        assert_string_equal(reason, want);
        /* More groups than the kernel handed over. */
        peer = (struct peer) { .pid = 100, .uid = 0, .gid = 0, .groups_truncated = true };
        assert_int_equal(config_scope_expand(cfg, q, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                         -ENODATA);
        assert_string_equal(reason, "$User.Groups is not available: the caller is in more than 256 groups");
        /* $User.Group does not need the supplementary groups. */
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, NULL, 0, &scope), 0);

        /* Injection: names that are not scope tokens are refused, never expanded.  The tables are
         * edited in place to stand for a database with such names. */
        peer = (struct peer) { .pid = 100, .uid = 0, .gid = 0 };
        assert_int_equal(cfg->groups[0].id, 0);
        char *saved = cfg->groups[0].name;
        static const char *const bad[] = { "ro ot", "ro\"ot", "\"", "ro\\ot", "caf\xc3\xa9", "a\tb" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char q1[64];

                cfg->groups[0].name = (char *) bad[i];
                scope = "untouched";
                assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                                 -EILSEQ);
                assert_string_equal(scope, "untouched");
                log_escape(bad[i], strlen(bad[i]), 128, q1, sizeof q1);
                snprintf(want, sizeof want, "$User.Group is \"%s\", which is not a scope token (RFC 6749 section 3.3: "
                         "printable ASCII except space, '\"' and '\\')", q1);
                assert_string_equal(reason, want);
                /* In $User.Groups each name must be a token: a space would split it into two. */
                assert_int_equal(config_scope_expand(cfg, q, &peer, buf, sizeof buf, reason, sizeof reason, &scope),
                                 -EILSEQ);
                snprintf(want, sizeof want, "$User.Groups: the name of group 0, \"%s\", is not a scope token "
                         "(RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')", q1);
                assert_string_equal(reason, want);
        }
        cfg->groups[0].name = saved;
        saved = cfg->users[0].name;
        assert_int_equal(cfg->users[0].id, 0);
        cfg->users[0].name = (char *) "ro\\\\ot";
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope), -EILSEQ);
        assert_string_equal(reason, "$User.Name is \"ro\\\\\\\\ot\", which is not a scope token (RFC 6749 section 3.3: "
                            "printable ASCII except space, '\"' and '\\')");

        /* The length cap. */
        char *huge = malloc(FORMULA_SCOPE_MAX);
        assert_non_null(huge);
        memset(huge, 'n', FORMULA_SCOPE_MAX - 1);
        huge[FORMULA_SCOPE_MAX - 1] = '\0';
        cfg->users[0].name = huge;
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope), -E2BIG);
        assert_string_equal(reason, "the expanded scope would be longer than 4096 bytes");
        cfg->users[0].name = saved;
        free(huge);

        /* A small buffer is -E2BIG too; arguments. */
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, 4, NULL, 0, &scope), -E2BIG);
        assert_int_equal(config_scope_expand(cfg, p, &peer, NULL, 0, NULL, 0, &scope), -EINVAL);
        assert_int_equal(config_scope_expand(NULL, p, &peer, buf, sizeof buf, NULL, 0, &scope), -EINVAL);
        assert_int_equal(config_scope_expand(cfg, p, NULL, buf, sizeof buf, NULL, 0, &scope), -EINVAL);
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, NULL, 0, NULL), -EINVAL);

        /* $Unit is never available in this version. */
        cfg = expect_ok(t, AGENT CRED "scope = {!\"unit:\" + $Unit}\n" PRINC);
        p = config_find_principal(cfg, "C.P");
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope), -ENODATA);
        assert_string_equal(reason, "$Unit is not available: this version does not read the caller's systemd unit");
        /* $User.Uid is always there. */
        cfg = expect_ok(t, AGENT CRED "scope = {!\"uid:\" + $User.Uid}\n" PRINC);
        p = config_find_principal(cfg, "C.P");
        peer.uid = nouser;
        assert_int_equal(config_scope_expand(cfg, p, &peer, buf, sizeof buf, reason, sizeof reason, &scope), 0);
        snprintf(want, sizeof want, "uid:%u", (unsigned) nouser);
        assert_string_equal(scope, want);
}

static void test_credential_errors(void **state) {
        const struct error_case cases[] = {
                { D_HEAD "token_url = https://b/t\nflow = authorization_code\n",
                  F ":7: [credential D] flow: \"authorization_code\" is not supported; the only flow is "
                  "client_credentials\n" },
                { D_HEAD "label = x\n",
                  F ":5: [credential D]: missing required key \"token_url\" (or \"issuer\", to discover it)\n" },
                { D_HEAD "token_url = idp.example.com/token\n",
                  F ":6: [credential D] token_url: \"idp.example.com/token\" is not a valid URL: Bad scheme\n" },
                { D_HEAD "token_url = ftp://idp.example.com/token\n",
                  F ":6: [credential D] token_url: \"ftp://idp.example.com/token\" must use https\n" },
                { D_HEAD "token_url = http://127.0.0.1:8080/token\n",
                  F ":6: [credential D] token_url: \"http://127.0.0.1:8080/token\" uses http, which is allowed only "
                  "with allow_insecure_loopback = yes and a loopback IP address (127.0.0.0/8 or [::1])\n" },
                { D_HEAD "token_url = http://idp.example.com/token\nallow_insecure_loopback = yes\n",
                  F ":6: [credential D] token_url: \"http://idp.example.com/token\" uses http, which is allowed only "
                  "to a loopback IP address (127.0.0.0/8 or [::1]), not \"idp.example.com\"\n" },
                { D_HEAD "allow_insecure_loopback = yes\ntoken_url = http://localhost:8080/token\n",
                  F ":7: [credential D] token_url: \"http://localhost:8080/token\" uses http, which is allowed only "
                  "to a loopback IP address (127.0.0.0/8 or [::1]), not \"localhost\"\n" },
                { D_HEAD "token_url = http://[::2]/token\nallow_insecure_loopback = true\n",
                  F ":6: [credential D] token_url: \"http://[::2]/token\" uses http, which is allowed only "
                  "to a loopback IP address (127.0.0.0/8 or [::1]), not \"[::2]\"\n" },
                { D_HEAD "token_url = https://idp.example.com/token#frag\n",
                  F ":6: [credential D] token_url: \"https://idp.example.com/token#frag\" must not contain a fragment "
                  "(\"#...\")\n" },
                { D_HEAD "token_url = https://billing:hunter2@idp.example.com/token\n",
                  F ":6: [credential D] token_url: the URL must not contain a user name or password "
                  "(\"user:password@\"); client_id and client_secret belong in [principal]\n" },
                { D_HEAD "token_url = https://b/t\nclient_auth = private_key_jwt\nassertion_lifetime = 301\n",
                  F ":8: [credential D] assertion_lifetime: \"301\" is out of range: it must be between 1 and 300 "
                  "seconds\n" },
                { D_HEAD "token_url = https://b/t\nclient_auth = digest\n",
                  F ":7: [credential D] client_auth: \"digest\" is not one of basic, post, private_key_jwt\n" },
                { D_HEAD "token_url = https://b/t\nscope = {!\"billing:\" + $User.Grp}\n",
                  F ":7: [credential D] scope: column 16: unknown variable; the variables are $User.Name, $User.Uid, "
                  "$User.Group, $User.Groups, $Unit, $Principal.Name and $Credential.Name\n" },
                { D_HEAD "token_url = https://b/t\nscope = {!\"a\" \"b\"}\n",
                  F ":7: [credential D] scope: column 7: expected \"+\" or \"}\" after a term\n" },
                { D_HEAD "token_url = https://b/t\nscope = {!\"role: \" + \" x\"}\n",
                  F ":7: [credential D] scope: column 15: the scope would have two spaces in a row\n" },
                { D_HEAD "token_url = https://b/t\nscope = {!\"a\\\"b\" + $User.Name}\n",
                  F ":7: [credential D] scope: column 5: '\"' is not allowed in a scope (RFC 6749 section 3.3)\n" },
                { D_HEAD "token_url = https://b/t\nscope = {!\"role:\" + $User.Group\n",
                  F ":7: [credential D] scope: column 24: the formula is not closed: a \"}\" is missing\n" },
                { D_HEAD "token_url = https://b/t\nscope = read  write\n",
                  F ":7: [credential D] scope: \"read  write\" is not a list of scope tokens separated by single spaces "
                  "(RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')\n" },
                { D_HEAD "token_url = https://b/t\nscope = read \"write\"\n",
                  F ":7: [credential D] scope: \"read \\\"write\\\"\" is not a list of scope tokens separated by single "
                  "spaces (RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')\n" },
                { D_HEAD "token_url = https://b/t\nscope = caf\xc3\xa9\n",
                  F ":7: [credential D] scope: \"caf\\xc3\\xa9\" is not a list of scope tokens separated by single "
                  "spaces (RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_status = 403 399\n",
                  F ":7: [credential D] refresh_status: \"399\" is not an HTTP status code from 400 to 599\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_status = 403,abc,600\n",
                  F ":7: [credential D] refresh_status: \"abc\" is not an HTTP status code from 400 to 599\n"
                  F ":7: [credential D] refresh_status: \"600\" is not an HTTP status code from 400 to 599\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_status = ,\n",
                  F ":7: [credential D] refresh_status: empty value\n" },
                { D_HEAD "token_url = https://b/t\nallow_insecure_loopback = maybe\n",
                  F ":7: [credential D] allow_insecure_loopback: \"maybe\" is not a boolean (yes, no, true, false, 1, "
                  "0)\n" },
                { D_HEAD "token_url = https://b/t\ndefault_ttl = abc\n",
                  F ":7: [credential D] default_ttl: \"abc\" is not a non-negative integer\n" },
                { D_HEAD "token_url = https://b/t\ndefault_ttl = -5\n",
                  F ":7: [credential D] default_ttl: \"-5\" is not a non-negative integer\n" },
                { D_HEAD "token_url = https://b/t\ndefault_ttl = 0x10\n",
                  F ":7: [credential D] default_ttl: \"0x10\" is not a non-negative integer\n" },
                { D_HEAD "token_url = https://b/t\ndefault_ttl = 0\n",
                  F ":7: [credential D] default_ttl: \"0\" is out of range: it must be between 1 and 31536000 seconds\n" },
                { D_HEAD "token_url = https://b/t\nmax_ttl = 31536001\n",
                  F ":7: [credential D] max_ttl: \"31536001\" is out of range: it must be between 1 and 31536000 "
                  "seconds\n" },
                { D_HEAD "token_url = https://b/t\nmax_ttl = 99999999999999999999999\n",
                  F ":7: [credential D] max_ttl: \"99999999999999999999999\" is out of range: it must be between 1 and "
                  "31536000 seconds\n" },
                { D_HEAD "token_url = https://b/t\nmax_ttl = 300\ndefault_ttl = 600\n",
                  F ":7: [credential D] max_ttl: 300 is less than default_ttl (600)\n" },
                { D_HEAD "token_url = https://b/t\ndefault_ttl = 100000\n",
                  F ":7: [credential D] default_ttl: 100000 is more than max_ttl (86400, the default)\n" },
                { D_HEAD "token_url = https://b/t\nconnect_timeout = 301\n",
                  F ":7: [credential D] connect_timeout: \"301\" is out of range: it must be between 1 and 300 seconds\n" },
                { D_HEAD "token_url = https://b/t\ntimeout = 0\n",
                  F ":7: [credential D] timeout: \"0\" is out of range: it must be between 1 and 300 seconds\n" },
                { D_HEAD "token_url = https://b/t\ntimeout = 3\nconnect_timeout = 4\n",
                  F ":7: [credential D] timeout: 3 is less than connect_timeout (4)\n" },
                { D_HEAD "token_url = https://b/t\nconnect_timeout = 20\n",
                  F ":7: [credential D] connect_timeout: 20 is more than timeout (15, the default)\n" },
                /* A bad value does not also trigger the two-key check. */
                { D_HEAD "token_url = https://b/t\nmax_ttl = 100\ndefault_ttl = x\n",
                  F ":8: [credential D] default_ttl: \"x\" is not a non-negative integer\n" },
        };
        struct ctx *t = *state;

        run_cases(t, cases, ELEMENTSOF(cases));

        /* The password in a token_url is never shown, also when the URL is bad otherwise. */
        expect_errors(t, D_HEAD "token_url = https://billing:hunter2@idp.example.com:99999/token\n",
                      F ":6: [credential D] token_url: not a valid URL: Port number was not a decimal number between 0 "
                      "and 65535\n");
        assert_null(strstr(t->errors, "hunter2"));
}

/* audience, resource, token_params and issuer (issue 4, items 3 and 7). */
static void test_token_params(void **state) {
        struct ctx *t = *state;
        const struct config_credential *c;
        struct config *cfg;

        /* None of them by default. */
        cfg = expect_ok(t, AGENT CRED PRINC);
        c = config_find_credential(cfg, "C");
        assert_null(c->audience);
        assert_null(c->resource);
        assert_null(c->token_params);
        assert_null(c->issuer);
        assert_string_equal(c->token_url, "https://idp.example.com/token");

        /* Stored normalised: resource indicators and pairs joined by single spaces. */
        cfg = expect_ok(t, AGENT CRED "audience = https://api.example.com\n"
                        "resource = https://a.example/v1   urn:example:b\thttps://c.example/x?y=1\n"
                        "token_params = tenant=t1&region=eu  x=a=b empty=\n" PRINC);
        c = config_find_credential(cfg, "C");
        assert_string_equal(c->audience, "https://api.example.com");
        assert_string_equal(c->resource, "https://a.example/v1 urn:example:b https://c.example/x?y=1");
        assert_string_equal(c->token_params, "tenant=t1 region=eu x=a=b empty=");

        /* issuer instead of token_url (http to loopback with allow_insecure_loopback). */
        cfg = expect_ok(t, AGENT "[credential C]\nissuer = https://idp.example.com/tenants/t1\n" PRINC);
        c = config_find_credential(cfg, "C");
        assert_null(c->token_url);
        assert_string_equal(c->issuer, "https://idp.example.com/tenants/t1");
        cfg = expect_ok(t, AGENT "[credential C]\nissuer = http://127.0.0.1:8080\nallow_insecure_loopback = yes\n"
                        PRINC);
        assert_string_equal(config_find_credential(cfg, "C")->issuer, "http://127.0.0.1:8080");
}

static void test_token_params_errors(void **state) {
        const struct error_case cases[] = {
                { D_HEAD "token_url = https://b/t\naudience = two words\n",
                  F ":7: [credential D] audience: \"two words\" is not an audience: one URI or identifier, printable "
                  "ASCII without spaces or quotes\n" },
                { D_HEAD "token_url = https://b/t\naudience = a\"b\n",
                  F ":7: [credential D] audience: \"a\\\"b\" is not an audience: one URI or identifier, printable "
                  "ASCII without spaces or quotes\n" },
                { D_HEAD "token_url = https://b/t\nresource = api.example.com\n",
                  F ":7: [credential D] resource: \"api.example.com\" is not an absolute URI (RFC 8707: a resource "
                  "indicator is an absolute URI such as https://api.example.com/)\n" },
                { D_HEAD "token_url = https://b/t\nresource = https://a.example/ https://b.example/#frag\n",
                  F ":7: [credential D] resource: \"https://b.example/#frag\" must not contain a fragment (\"#...\"; "
                  "RFC 8707 section 2)\n" },
                { D_HEAD "token_url = https://b/t\nresource = https://a.example/{x}\n",
                  F ":7: [credential D] resource: \"https://a.example/{x}\" is not an absolute URI (RFC 8707: a "
                  "resource indicator is an absolute URI such as https://api.example.com/)\n" },
                { D_HEAD "token_url = https://b/t\nresource = https://a.example:99999/\n",
                  F ":7: [credential D] resource: \"https://a.example:99999/\" is not a valid URL: Port number was not "
                  "a decimal number between 0 and 65535\n" },
                { D_HEAD "token_url = https://b/t\nresource = 1urn:x\n",
                  F ":7: [credential D] resource: \"1urn:x\" is not an absolute URI (RFC 8707: a resource indicator "
                  "is an absolute URI such as https://api.example.com/)\n" },
                /* token_params: the grant's own parameters are refused, whatever their case. */
                { D_HEAD "token_url = https://b/t\ntoken_params = tenant=1 client_secret=x\n",
                  F ":7: [credential D] token_params: \"client_secret\" is a parameter of the grant itself (grant_type, "
                  "client_id, client_secret, client_assertion*, scope, resource and audience are set by credagent)\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = Grant_Type=password\n",
                  F ":7: [credential D] token_params: \"Grant_Type\" is a parameter of the grant itself (grant_type, "
                  "client_id, client_secret, client_assertion*, scope, resource and audience are set by credagent)\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = client_assertion_type=x\n",
                  F ":7: [credential D] token_params: \"client_assertion_type\" is a parameter of the grant itself "
                  "(grant_type, client_id, client_secret, client_assertion*, scope, resource and audience are set by "
                  "credagent)\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = scope=admin\n",
                  F ":7: [credential D] token_params: \"scope\" is a parameter of the grant itself (grant_type, "
                  "client_id, client_secret, client_assertion*, scope, resource and audience are set by credagent)\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = a=1 a=2\n",
                  F ":7: [credential D] token_params: \"a\" is given twice\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = a=1 b\n",
                  F ":7: [credential D] token_params: \"b\" is not a pair key=value\n" },
                { D_HEAD "token_url = https://b/t\ntoken_params = &&\n",
                  F ":7: [credential D] token_params: no key=value pair\n" },
                /* issuer: instead of token_url, never beside it; no query or fragment. */
                { D_HEAD "token_url = https://b/t\nissuer = https://b\n",
                  F ":7: [credential D] issuer: token_url is set too (line 6): give either the token endpoint or the "
                  "issuer whose metadata names it\n" },
                { D_HEAD "issuer = https://b/?tenant=1\n",
                  F ":6: [credential D] issuer: \"https://b/?tenant=1\" must not contain a query (\"?...\"; RFC 8414 "
                  "section 2)\n" },
                { D_HEAD "issuer = https://b/#x\n",
                  F ":6: [credential D] issuer: \"https://b/#x\" must not contain a fragment (\"#...\")\n" },
                { D_HEAD "issuer = http://idp.example.com\n",
                  F ":6: [credential D] issuer: \"http://idp.example.com\" uses http, which is allowed only with "
                  "allow_insecure_loopback = yes and a loopback IP address (127.0.0.0/8 or [::1])\n" },
        };
        struct ctx *t = *state;

        run_cases(t, cases, ELEMENTSOF(cases));
}

/* ---- [principal] --------------------------------------------------------------------- */

#define P_HEAD AGENT CRED "[principal C.P]\n" /* header on line 7, keys from line 8 */
#define P_OK_SECRET "client_secret = pkcs11:object=C.P\n"

/* refresh_at (a percentage, "%" optional) and refresh_margin (seconds, 0 allowed). */
static void test_refresh_keys(void **state) {
        static const struct error_case cases[] = {
                { D_HEAD "token_url = https://b/t\nrefresh_at = 49%\n",
                  F ":7: [credential D] refresh_at: \"49%\" is out of range: it must be between 50% and 95% of the "
                  "token's lifetime\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_at = 96\n",
                  F ":7: [credential D] refresh_at: \"96\" is out of range: it must be between 50% and 95% of the "
                  "token's lifetime\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_at = 0.8\n",
                  F ":7: [credential D] refresh_at: \"0.8\" is not a percentage like 80%\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_at = %\n",
                  F ":7: [credential D] refresh_at: \"%\" is not a percentage like 80%\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_at = 80%%\n",
                  F ":7: [credential D] refresh_at: \"80%%\" is not a percentage like 80%\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_at = 99999999999999999999%\n",
                  F ":7: [credential D] refresh_at: \"99999999999999999999%\" is not a percentage like 80%\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_margin = -1\n",
                  F ":7: [credential D] refresh_margin: \"-1\" is not a non-negative integer\n" },
                { D_HEAD "token_url = https://b/t\nrefresh_margin = 86401\n",
                  F ":7: [credential D] refresh_margin: \"86401\" is out of range: it must be between 0 and 86400 "
                  "seconds\n" },
        };
        struct ctx *t = *state;
        struct config *c;

        c = expect_ok(t, AGENT
                      "[credential A]\n"
                      "token_url = https://idp.example.com/token\n"
                      "refresh_at = 50%\n"
                      "refresh_margin = 0\n"
                      "[credential B]\n"
                      "token_url = https://idp.example.com/token\n"
                      "refresh_at = 95\n"
                      "refresh_margin = 86400\n");
        assert_int_equal(c->credentials[0]->refresh_at, 50);
        assert_int_equal(c->credentials[0]->refresh_margin, 0);
        assert_int_equal(c->credentials[1]->refresh_at, 95);
        assert_int_equal(c->credentials[1]->refresh_margin, 86400);
        run_cases(t, cases, ELEMENTSOF(cases));
}

static void test_principal_errors(void **state) {
        const struct error_case cases[] = {
                { P_HEAD "sequence = x\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":8: [principal C.P] sequence: \"x\" is not a non-negative integer\n" },
                { P_HEAD "sequence = -1\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":8: [principal C.P] sequence: \"-1\" is not a non-negative integer\n" },
                { P_HEAD "sequence = 18446744073709551616\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":8: [principal C.P] sequence: \"18446744073709551616\" is out of range: it must be less than "
                  "18446744073709551615\n" },
                { P_HEAD "client_id = id\n" P_OK_SECRET "users = root\n",
                  F ":7: [principal C.P]: missing required key \"sequence\"\n" },
                { AGENT "[principal X.P]\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":5: [principal X.P]: missing required key \"sequence\"\n"
                  F ":5: [principal X.P]: there is no [credential X]\n" },
                { P_HEAD "sequence = 1\n" P_OK_SECRET "users = root\n",
                  F ":7: [principal C.P]: missing required key \"client_id\"\n" },
                { P_HEAD "sequence = 1\nclient_id = a\tb\n" P_OK_SECRET "users = root\n",
                  F ":9: [principal C.P] client_id: \"a\\x09b\" contains a character that is not printable ASCII\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nusers = root\n",
                  F ":7: [principal C.P]: missing required key \"client_secret\"\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:token=credagent;type=data\nusers = root\n",
                  F ":10: [principal C.P] client_secret: the PKCS#11 URI has no object= attribute (the label of the "
                  "secret)\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x;foo=bar\nusers = root\n",
                  F ":10: [principal C.P] client_secret: the PKCS#11 URI has an attribute that p11-kit does not "
                  "recognise or that does not belong in an object URI\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x?vendor=1\nusers = root\n",
                  F ":10: [principal C.P] client_secret: unknown query attribute \"vendor\"\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x?pin-value=1234\nusers = root\n",
                  F ":10: [principal C.P] client_secret: pin-value is not allowed in config; use pin_source in "
                  "[agent]\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x?pin-source=file:/p\n"
                  "users = root\n",
                  F ":10: [principal C.P] client_secret: pin-source is not allowed here; the PIN comes from pin_source "
                  "in [agent]\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x;type=private\nusers = root\n",
                  F ":10: [principal C.P] client_secret: type= must be data: a client secret is a data object\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=%zz\nusers = root\n",
                  F ":10: [principal C.P] client_secret: not a valid PKCS#11 URI: URI encoding invalid or "
                  "corrupted\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=my\n  label\nusers = root\n",
                  F ":10: [principal C.P] client_secret: the PKCS#11 URI contains whitespace; write a space in a label "
                  "as %20\n" },
                { P_HEAD "sequence = 1\nclient_id = id\nclient_secret = s3cr3t\nusers = root\n",
                  F ":10: [principal C.P] client_secret must be a PKCS#11 URI, not the secret itself: store the secret "
                  "with \"credctl secret put C.P\" and put the URI it prints here\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET "users = no_such_user_xyz\n",
                  F ":11: [principal C.P] users: user \"no_such_user_xyz\" does not exist\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET "users = * root\n",
                  F ":11: [principal C.P] users: \"*\" (every user) must be the only entry\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET "users = 4294967295\n",
                  F ":11: [principal C.P] users: \"4294967295\" is not a valid user id\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET "groups = root no_such_group_xyz\n",
                  F ":11: [principal C.P] groups: group \"no_such_group_xyz\" does not exist\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET,
                  F ":7: [principal C.P]: no users= or groups=, so it would match no caller; add users= or groups= "
                  "(users = * allows every local user)\n" },
                { AGENT CRED "[principal Nope.P]\nsequence = 1\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":7: [principal Nope.P]: there is no [credential Nope]\n" },
                { AGENT CRED PRINC "[principal C.Q]\nsequence = 1\nclient_id = id\n" P_OK_SECRET "users = root\n",
                  F ":12: [principal C.Q]: sequence 1 is already used by [principal C.P] at " F ":7\n" },
                { P_HEAD "sequence = 1\nclient_id = id\n" P_OK_SECRET "users = root\nunits = x.service\n",
                  F ":12: [principal C.P] units: unknown key\n" },
        };
        struct ctx *t = *state;
        char id[260], *conf, *want;
        struct config *c;

        run_cases(t, cases, ELEMENTSOF(cases));

        /* client_id of 257 bytes (over two lines: one line holds at most 198). */
        memset(id, 'i', 257);
        id[257] = '\0';
        assert_true(asprintf(&conf, P_HEAD "sequence = 1\nclient_id = %.150s\n  %s\n" P_OK_SECRET "users = root\n",
                             id, id + 151) > 0);
        id[150] = ' ';
        assert_true(asprintf(&want, F ":9: [principal C.P] client_id: \"%.128s\xe2\x80\xa6\" is 257 bytes long; the "
                             "limit is 256\n", id) > 0);
        expect_errors(t, conf, want);
        free(conf);
        free(want);

        /* 256 bytes is fine; sequence 0 and the same sequence in another credential are fine. */
        memset(id, 'i', 256);
        id[256] = '\0';
        assert_true(asprintf(&conf, AGENT CRED "[credential E]\ntoken_url = https://e/t\n"
                             "[principal C.P]\nsequence = 0\nclient_id = %.150s\n  %s\n" P_OK_SECRET "users = root\n"
                             "[principal E.P]\nsequence = 0\nclient_id = x\n" P_OK_SECRET "groups = root\n",
                             id, id + 151) > 0);
        c = expect_ok(t, conf);
        free(conf);
        assert_int_equal(strlen(c->credentials[0]->principals[0]->client_id), 256);
        assert_int_equal(c->credentials[1]->principals[0]->rule.sequence, 0);
}

/* ---- many errors at once, and secrets never echoed ------------------------------------ */


/* ---- client_auth = private_key_jwt ---------------------------------------------------- */

#define JWT_CRED                                        \
        "[credential J]\n"                              \
        "token_url = https://idp.example.com/token\n"   \
        "client_auth = private_key_jwt\n"               /* lines 5-7 */
#define JWT_KEY "client_key = pkcs11:token=credagent;object=J.P;type=private\n"
#define JWT_PRINC "[principal J.P]\nsequence = 1\nclient_id = id\nusers = root\n" /* lines 8-11 */

static void test_private_key_jwt(void **state) {
        struct ctx *t = *state;
        const struct config_credential *c;
        const struct config_principal *p;
        struct config *cfg;

        /* Defaults: the token endpoint as audience, 60 s, the key's own algorithm, no kid. */
        cfg = expect_ok(t, AGENT JWT_CRED JWT_PRINC JWT_KEY);
        c = config_find_credential(cfg, "J");
        assert_int_equal(c->client_auth, CLIENT_AUTH_PRIVATE_KEY_JWT);
        assert_null(c->assertion_audience);
        assert_int_equal(c->assertion_lifetime, 60);
        p = config_find_principal(cfg, "J.P");
        assert_null(p->client_secret);
        assert_string_equal(p->client_key, "pkcs11:token=credagent;object=J.P;type=private");
        assert_null(p->key_id);
        assert_int_equal(p->assertion_alg, HSM_ALG_NONE);

        /* Everything set; a principal may come before its credential (conf.d order). */
        cfg = expect_ok(t, AGENT
                        "[principal J.Q]\nsequence = 2\nclient_id = q\nusers = root\n"
                        "client_key = pkcs11:object=J.Q\nkey_id = key 2/b\nassertion_alg = PS256\n"
                        JWT_CRED "assertion_audience = https://idp.example.com\nassertion_lifetime = 300\n"
                        JWT_PRINC JWT_KEY "key_id = k1\nassertion_alg = ES256\n");
        c = config_find_credential(cfg, "J");
        assert_string_equal(c->assertion_audience, "https://idp.example.com");
        assert_int_equal(c->assertion_lifetime, 300);
        p = config_find_principal(cfg, "J.P");
        assert_string_equal(p->key_id, "k1");
        assert_int_equal(p->assertion_alg, HSM_ALG_ES256);
        p = config_find_principal(cfg, "J.Q");
        assert_string_equal(p->client_key, "pkcs11:object=J.Q");
        assert_string_equal(p->key_id, "key 2/b");
        assert_int_equal(p->assertion_alg, HSM_ALG_PS256);

        /* Basic and post principals carry none of it. */
        cfg = expect_ok(t, AGENT CRED PRINC);
        c = config_find_credential(cfg, "C");
        assert_null(c->assertion_audience);
        p = config_find_principal(cfg, "C.P");
        assert_null(p->client_key);
        assert_null(p->key_id);
        assert_int_equal(p->assertion_alg, HSM_ALG_NONE);
}

static void test_private_key_jwt_errors(void **state) {
        const struct error_case cases[] = {
                /* Exactly one of client_secret and client_key, as client_auth says. */
                { AGENT JWT_CRED JWT_PRINC "client_secret = pkcs11:object=J.P;type=data\n",
                  F ":8: [principal J.P]: missing required key \"client_key\" ([credential J] has client_auth = "
                  "private_key_jwt): the URI printed by \"credctl key generate J.P\"\n"
                  F ":12: [principal J.P] client_secret: not used with client_auth = private_key_jwt of [credential J]: "
                  "the key named by client_key signs the assertion; remove client_secret\n" },
                { AGENT JWT_CRED JWT_PRINC JWT_KEY "client_secret = pkcs11:object=J.P;type=data\n",
                  F ":13: [principal J.P] client_secret: not used with client_auth = private_key_jwt of [credential J]: "
                  "the key named by client_key signs the assertion; remove client_secret\n" },
                { AGENT JWT_CRED JWT_PRINC,
                  F ":8: [principal J.P]: missing required key \"client_key\" ([credential J] has client_auth = "
                  "private_key_jwt): the URI printed by \"credctl key generate J.P\"\n" },
                /* The credential after the principal: said when the two are linked. */
                { AGENT JWT_PRINC JWT_CRED,
                  F ":5: [principal J.P]: missing required key \"client_key\" ([credential J] has client_auth = "
                  "private_key_jwt): the URI printed by \"credctl key generate J.P\"\n" },
                { AGENT PRINC "client_key = pkcs11:object=C.P\nkey_id = k\nassertion_alg = ES256\n" CRED,
                  F ":10: [principal C.P] client_key: only used with client_auth = private_key_jwt; [credential C] has "
                  "client_auth = basic, which sends client_secret\n"
                  F ":11: [principal C.P] key_id: only used with client_auth = private_key_jwt\n"
                  F ":12: [principal C.P] assertion_alg: only used with client_auth = private_key_jwt\n" },
                { AGENT "[credential C]\ntoken_url = https://idp.example.com/token\nclient_auth = post\n"
                  "[principal C.P]\nsequence = 1\nclient_id = id\nusers = root\nclient_key = pkcs11:object=C.P\n",
                  F ":8: [principal C.P]: missing required key \"client_secret\"\n"
                  F ":12: [principal C.P] client_key: only used with client_auth = private_key_jwt; [credential C] has "
                  "client_auth = post, which sends client_secret\n" },
                /* The credential's own keys. */
                { AGENT CRED "assertion_audience = https://idp.example.com\nassertion_lifetime = 30\n" PRINC,
                  F ":7: [credential C] assertion_audience: only used with client_auth = private_key_jwt\n"
                  F ":8: [credential C] assertion_lifetime: only used with client_auth = private_key_jwt\n" },
                { AGENT JWT_CRED "assertion_lifetime = 0\n" JWT_PRINC JWT_KEY,
                  F ":8: [credential J] assertion_lifetime: \"0\" is out of range: it must be between 1 and 300 "
                  "seconds\n" },
                { AGENT JWT_CRED "assertion_lifetime = 1m\n" JWT_PRINC JWT_KEY,
                  F ":8: [credential J] assertion_lifetime: \"1m\" is not a non-negative integer\n" },
                { AGENT JWT_CRED "assertion_audience = https://idp.example.com/a b\n" JWT_PRINC JWT_KEY,
                  F ":8: [credential J] assertion_audience: \"https://idp.example.com/a b\" is not an audience: one URI "
                  "or identifier, printable ASCII without spaces or quotes (the IdP's token endpoint URL or its "
                  "issuer)\n" },
                /* The principal's own keys. */
                { AGENT JWT_CRED JWT_PRINC JWT_KEY "assertion_alg = HS256\n",
                  F ":13: [principal J.P] assertion_alg: \"HS256\" is not one of ES256, RS256, PS256 (the default is "
                  "the key's own: ES256 for EC P-256, RS256 for RSA)\n" },
                { AGENT JWT_CRED JWT_PRINC JWT_KEY "key_id = a\tb\n",
                  F ":13: [principal J.P] key_id: \"a\\x09b\" is not a key id: 1 to 256 bytes of printable ASCII, no "
                  "leading or trailing space\n" },
                { AGENT JWT_CRED JWT_PRINC "client_key = pkcs11:object=J.P;type=data\n",
                  F ":12: [principal J.P] client_key: type= must be private: client_key names the private key\n" },
                { AGENT JWT_CRED JWT_PRINC "client_key = pkcs11:token=credagent;type=private\n",
                  F ":12: [principal J.P] client_key: the PKCS#11 URI has no object= attribute (the label of the "
                  "key)\n" },
                { AGENT JWT_CRED JWT_PRINC "client_key = pkcs11:object=J.P?pin-value=1234\n",
                  F ":12: [principal J.P] client_key: pin-value is not allowed in config; use pin_source in [agent]\n" },
                /* A key pasted where its URI belongs is not quoted back. */
                { AGENT JWT_CRED JWT_PRINC "client_key = MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oYHEU6z8Gd0\n",
                  F ":12: [principal J.P] client_key must be the PKCS#11 URI of a private key in the token: generate one "
                  "with \"credctl key generate J.P --alg ES256\" and put the URI it prints here\n" },
        };
        struct ctx *t = *state;

        run_cases(t, cases, ELEMENTSOF(cases));
}

static void test_multiple_errors(void **state) {
        struct ctx *t = *state;

        write_file(t, "conf.d/50-more.conf",
                   "[credential E]\n"
                   "token_url = https://e.example.com/token\n"
                   "timeout = forever\n"
                   "[principal E.X]\n"
                   "sequence = 1\n"
                   "client_id = x\n"
                   "client_secret = pkcs11:object=x\n"
                   "users = root\n"
                   "[principal E.Y]\n"
                   "sequence = 1\n"
                   "client_id = y\n"
                   "client_secret = pkcs11:object=y\n"
                   "groups = root\n");
        expect_errors(t,
                      "[agent]\n"                                       /* 1 */
                      "socket = relative.sock\n"                        /* 2 */
                      "token = pkcs11:token=x\n"                        /* 3 */
                      "bogus = 1\n"                                     /* 4 */
                      "[credential 9C]\n"                               /* 5 */
                      "client_auth = digest\n"                          /* 6 */
                      "[principal 9C.P]\n"                              /* 7 */
                      "sequence = one\n"                                /* 8 */
                      "garbage line\n",                                 /* 9 */
                      F ":1: [agent]: missing required key \"pin_source\"\n"
                      F ":1: [agent]: missing required key \"module\" (or module-path= in the token URI)\n"
                      F ":2: [agent] socket: \"relative.sock\" is not an absolute path\n"
                      F ":4: [agent] bogus: unknown key\n"
                      F ":5: [credential 9C]: credential name \"9C\" must begin with a letter\n"
                      F ":5: [credential 9C]: missing required key \"token_url\" (or \"issuer\", to discover it)\n"
                      F ":6: [credential 9C] client_auth: \"digest\" is not one of basic, post, private_key_jwt\n"
                      F ":7: [principal 9C.P]: credential name \"9C\" must begin with a letter\n"
                      F ":7: [principal 9C.P]: missing required key \"client_id\"\n"
                      F ":7: [principal 9C.P]: missing required key \"client_secret\"\n"
                      F ":7: [principal 9C.P]: no users= or groups=, so it would match no caller; add users= or "
                      "groups= (users = * allows every local user)\n"
                      F ":8: [principal 9C.P] sequence: \"one\" is not a non-negative integer\n"
                      F ":9: syntax error: expected \"key = value\", a [section] header or a comment\n"
                      "{D}/conf.d/50-more.conf:3: [credential E] timeout: \"forever\" is not a non-negative integer\n"
                      "{D}/conf.d/50-more.conf:9: [principal E.Y]: sequence 1 is already used by [principal E.X] at "
                      "{D}/conf.d/50-more.conf:4\n");
}

static void test_secret_never_echoed(void **state) {
        static const char *const confs[] = {
                /* a literal secret where the URI belongs */
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = SuperSecretValue42\nusers = root\n",
                /* …that happens to start like a URI but does not parse */
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:SuperSecretValue42%\nusers = root\n",
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:SuperSecretValue42\nusers = root\n",
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x;SuperSecretValue42\nusers = root\n",
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x?SuperSecretValue42=1\nusers = root\n",
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x?pin-value=SuperSecretValue42\n"
                       "users = root\n",
                /* continued on the next line */
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x\n  SuperSecretValue42\nusers = root\n",
                /* given twice */
                P_HEAD "sequence = 1\nclient_id = id\nclient_secret = pkcs11:object=x\nclient_secret = SuperSecretValue42\n"
                       "users = root\n",
                /* under a misspelt key, outside any section, on a line of its own, in the wrong section */
                P_HEAD "sequence = 1\nclient_id = id\nclient_sercet = SuperSecretValue42\nusers = root\n",
                "client_secret = SuperSecretValue42\n" AGENT,
                P_HEAD "sequence = 1\nclient_id = id\nSuperSecretValue42\nusers = root\n",
                AGENT "client_secret = SuperSecretValue42\n",
                AGENT "[credential C]\ntoken_url = https://id:SuperSecretValue42@idp.example.com/token\n",
                "[agent]\nmodule = /m.so\ntoken = pkcs11:token=x?pin-value=SuperSecretValue42\npin_source = file:/p\n",
                ("[agent]\nmodule = /m.so\ntoken = pkcs11:token=x;pin-value=SuperSecretValue42;foo=1\n"
                 "pin_source = file:/p\n"),
        };
        struct ctx *t = *state;

        for (size_t i = 0; i < ELEMENTSOF(confs); i++) {
                print_message("  case %zu\n", i);
                assert_int_equal(load(t, confs[i], 0), -EINVAL);
                assert_non_null(t->errors);
                if (strstr(t->errors, "SuperSecretValue42"))
                        print_error("secret echoed:\n%s", t->errors);
                assert_null(strstr(t->errors, "SuperSecretValue42"));
        }
}

/* ---- CONFIG_LOAD_AGENT_ONLY -------------------------------------------------------------- */

static void test_agent_only(void **state) {
        struct ctx *t = *state;
        const char *rest =
                "[credential 1bad]\n"
                "token_url = ftp://x\n"
                "unknown = 1\n"
                "[principal Nope.P]\n"
                "client_secret = SuperSecretValue42\n"
                "[endpoint Billing]\n"
                "url = https://api.example.com/\n"
                "[whatever]\n"
                "x = 1\n"
                "[credential 1bad]\n";
        struct config *c;
        char *conf;

        assert_true(asprintf(&conf, AGENT "%s", rest) > 0);
        c = expect_ok_flags(t, conf, CONFIG_LOAD_AGENT_ONLY);
        assert_string_equal(c->token, "pkcs11:token=credagent");
        assert_string_equal(c->pin_source, "file:/etc/credagent/pin");
        assert_int_equal(c->n_credentials, 0);
        free(conf);

        /* [agent] is still checked in full; nothing is said about the other sections. */
        assert_true(asprintf(&conf, "[agent]\nmodule = m.so\ntoken = pkcs11:token=x\n%s", rest) > 0);
        expect_errors_flags(t, conf, CONFIG_LOAD_AGENT_ONLY,
                            F ":1: [agent]: missing required key \"pin_source\"\n"
                            F ":2: [agent] module: \"m.so\" is not an absolute path\n");
        free(conf);

        /* Without the flag the same file is full of errors. */
        assert_true(asprintf(&conf, AGENT "%s", rest) > 0);
        assert_int_equal(load(t, conf, 0), -EINVAL);
        free(conf);
        assert_non_null(strstr(t->errors, "[credential 1bad]"));
        assert_non_null(strstr(t->errors, "[endpoint Billing]"));
}

/* ---- contrib/credagent.conf.example ------------------------------------------------------ */

/* The example's path: this source file's, with tests/unit/test-config.c replaced.  A
 * relative __FILE__ is relative to the build root, two levels above this program. */
static char *example_path(void) {
        static const char suffix[] = "tests/unit/test-config.c";
        const char *file = __FILE__;
        char exe[4096], *p, *path;
        ssize_t n;
        size_t len = strlen(file);

        assert_true(len >= strlen(suffix));
        assert_string_equal(file + len - strlen(suffix), suffix);
        if (file[0] == '/') {
                assert_true(asprintf(&path, "%.*scontrib/credagent.conf.example",
                                     (int) (len - strlen(suffix)), file) > 0);
                return path;
        }
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        assert_true(n > 0);
        exe[n] = '\0';
        for (int i = 0; i < 3; i++) { /* strip "test-config", "unit", "tests" */
                p = strrchr(exe, '/');
                assert_non_null(p);
                *p = '\0';
        }
        assert_true(asprintf(&path, "%s/%.*scontrib/credagent.conf.example", exe,
                             (int) (len - strlen(suffix)), file) > 0);
        return path;
}

static void test_example_config(void **state) {
        static const char *const keys[] = {
                "socket", "socket_group", "module", "module_dirs", "token", "pin_source", "ca_file",
                "label", "flow", "token_url", "client_auth", "scope", "refresh_status", "allow_insecure_loopback",
                "default_ttl", "max_ttl", "connect_timeout", "timeout",
                "refresh_at", "refresh_margin", "audience", "resource", "token_params", "issuer",
                "assertion_audience", "assertion_lifetime",
                "sequence", "client_id", "client_secret", "users", "groups", "client_key", "key_id", "assertion_alg",
        };
        struct ctx *t = *state;
        char *path = example_path(), *text = NULL, *line, *save = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        /* Every key is shown, as a setting at the start of a line. */
        f = fopen(path, "re");
        if (!f)
                print_error("cannot open %s: %m\n", path);
        assert_non_null(f);
        assert_int_equal(getdelim(&text, &size, '\0', f) > 0, 1);
        fclose(f);
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char needle[64];

                snprintf(needle, sizeof needle, "\n%s = ", keys[i]);
                if (!strstr(text, needle))
                        print_error("key %s is missing from the example\n", keys[i]);
                assert_non_null(strstr(text, needle));
        }
        free(text);

        /* It is valid, except that its users and groups need not exist on this machine. */
        reset(t);
        r = config_load(path, 0, &t->c, &t->errors);
        if (r == 0) {
                assert_int_equal(t->c->n_credentials, 2);
                assert_int_equal(t->c->credentials[0]->n_principals, 2);
                assert_int_equal(t->c->credentials[1]->n_principals, 1);
        } else {
                assert_int_equal(r, -EINVAL);
                for (line = strtok_r(t->errors, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        if (!strstr(line, "\" does not exist"))
                                print_error("example: %s\n", line);
                        assert_non_null(strstr(line, "\" does not exist"));
                }
        }
        free(path);
}

/* ---- default paths ----------------------------------------------------------------------- */

/* Runs config_default_path() and config_default_socket() as uid 65534 in a child with
 * the given environment, returning "PATH|SOCKET". */
static char *defaults_as_nobody(const char *xdg_config, const char *home, const char *xdg_runtime) {
        int fds[2];
        pid_t pid;
        char buf[1024] = {};
        ssize_t n;
        int status;

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char *p, *s;

                close(fds[0]);
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(2);
                xdg_config ? setenv("XDG_CONFIG_HOME", xdg_config, 1) : unsetenv("XDG_CONFIG_HOME");
                home ? setenv("HOME", home, 1) : unsetenv("HOME");
                xdg_runtime ? setenv("XDG_RUNTIME_DIR", xdg_runtime, 1) : unsetenv("XDG_RUNTIME_DIR");
                p = config_default_path();
                s = config_default_socket();
                if (!p || !s)
                        _exit(3);
                dprintf(fds[1], "%s|%s", p, s);
                _exit(0);
        }
        close(fds[1]);
        n = read(fds[0], buf, sizeof buf - 1);
        close(fds[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(n > 0);
        return strdup(buf);
}

static void test_default_paths(void **state) {
        char *p;

        if (geteuid() == 0) {
                p = config_default_path();
                assert_string_equal(p, CREDAGENT_SYSCONFDIR "/credagent.conf");
                free(p);
                /* root ignores XDG_RUNTIME_DIR */
                setenv("XDG_RUNTIME_DIR", "/run/user/0", 1);
                p = config_default_socket();
                assert_string_equal(p, "/run/credagent/agent.sock");
                free(p);
                unsetenv("XDG_RUNTIME_DIR");

                p = defaults_as_nobody("/xdg/config", "/home/u", "/run/user/65534");
                assert_string_equal(p, "/xdg/config/credagent/credagent.conf|/run/user/65534/credagent/agent.sock");
                free(p);
                p = defaults_as_nobody(NULL, "/home/u", NULL);
                assert_string_equal(p, "/home/u/.config/credagent/credagent.conf|/run/credagent/agent.sock");
                free(p);
                /* relative XDG paths are ignored, as the XDG spec says */
                p = defaults_as_nobody("relative", "/home/u", "relative");
                assert_string_equal(p, "/home/u/.config/credagent/credagent.conf|/run/credagent/agent.sock");
                free(p);
        } else {
                skip();
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_full_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_confd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_confd_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_confd_missing_and_main_unreadable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_structure_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_name_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scope_length_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scope_formulas, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scope_expand, setup, teardown),
                cmocka_unit_test_setup_teardown(test_credential_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_token_params, setup, teardown),
                cmocka_unit_test_setup_teardown(test_token_params_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refresh_keys, setup, teardown),
                cmocka_unit_test_setup_teardown(test_principal_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_private_key_jwt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_private_key_jwt_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_multiple_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_never_echoed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_example_config, setup, teardown),
                cmocka_unit_test(test_default_paths),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
