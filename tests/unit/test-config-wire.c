/* SPDX-License-Identifier: ISC */
/* agent/config-wire: a loaded config survives MSG_CONFIG field for field; malformed
 * payloads and configs a load never makes are refused. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/config-wire.h"
#include "agent/config.h"
#include "ipc/msg.h"

/* ---- Deep equality, field by field ------------------------------------------------- */

static void str_eq(const char *a, const char *b) {
        if (!a || !b) {
                assert_null(a);
                assert_null(b);
                return;
        }
        assert_ptr_not_equal(a, b); /* a copy, not shared */
        assert_string_equal(a, b);
}

static void ids_eq(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
                assert_int_equal(a[i], b[i]);
}

static void principal_eq(const struct config_principal *a, const struct config_principal *b) {
        str_eq(a->name, b->name);
        str_eq(a->full_name, b->full_name);
        assert_true(a->rule.sequence == b->rule.sequence);
        assert_int_equal(a->rule.any_user, b->rule.any_user);
        ids_eq((const uint32_t *) a->rule.uids, a->rule.n_uids, (const uint32_t *) b->rule.uids, b->rule.n_uids);
        ids_eq((const uint32_t *) a->rule.gids, a->rule.n_gids, (const uint32_t *) b->rule.gids, b->rule.n_gids);
        str_eq(a->client_id, b->client_id);
        str_eq(a->client_secret, b->client_secret);
        str_eq(a->client_key, b->client_key);
        str_eq(a->key_id, b->key_id);
        assert_int_equal(a->assertion_alg, b->assertion_alg);
        str_eq(a->file, b->file);
        assert_int_equal(a->line, b->line);
}

static void credential_eq(const struct config_credential *a, const struct config_credential *b) {
        str_eq(a->name, b->name);
        str_eq(a->label, b->label);
        str_eq(a->token_url, b->token_url);
        assert_int_equal(a->client_auth, b->client_auth);
        str_eq(a->scope, b->scope);
        /* A formula is compiled again from its text on the receiving side. */
        assert_int_equal(a->scope_formula != NULL, b->scope_formula != NULL);
        assert_true(!b->scope_formula || b->scope_formula != a->scope_formula);
        for (unsigned v = 0; a->scope_formula && v < _FORMULA_VAR_MAX; v++)
                assert_int_equal(formula_uses(a->scope_formula, v), formula_uses(b->scope_formula, v));
        assert_int_equal(a->n_refresh_status, b->n_refresh_status);
        for (size_t i = 0; i < a->n_refresh_status; i++)
                assert_int_equal(a->refresh_status[i], b->refresh_status[i]);
        assert_int_equal(a->allow_insecure_loopback, b->allow_insecure_loopback);
        assert_int_equal(a->default_ttl, b->default_ttl);
        assert_int_equal(a->max_ttl, b->max_ttl);
        assert_int_equal(a->refresh_at, b->refresh_at);
        assert_int_equal(a->refresh_margin, b->refresh_margin);
        assert_int_equal(a->connect_timeout, b->connect_timeout);
        assert_int_equal(a->timeout, b->timeout);
        str_eq(a->assertion_audience, b->assertion_audience);
        assert_int_equal(a->assertion_lifetime, b->assertion_lifetime);
        str_eq(a->issuer, b->issuer);
        str_eq(a->audience, b->audience);
        str_eq(a->resource, b->resource);
        str_eq(a->token_params, b->token_params);
        str_eq(a->file, b->file);
        assert_int_equal(a->line, b->line);
        assert_int_equal(a->n_principals, b->n_principals);
        for (size_t i = 0; i < a->n_principals; i++) {
                principal_eq(a->principals[i], b->principals[i]);
                /* The links of the decoded side point into the decoded side. */
                assert_ptr_equal(b->principals[i]->credential, b);
                assert_ptr_equal(b->rules[i], &b->principals[i]->rule);
        }
        if (a->n_principals == 0) {
                assert_null(b->principals);
                assert_null(b->rules);
        }
}

static void names_eq(const struct config_name *a, size_t na, const struct config_name *b, size_t nb) {
        assert_int_equal(na, nb);
        if (na == 0)
                assert_null(b);
        for (size_t i = 0; i < na; i++) {
                assert_int_equal(a[i].id, b[i].id);
                str_eq(a[i].name, b[i].name);
        }
}

static void config_eq(const struct config *a, const struct config *b) {
        size_t n = 0;

        assert_ptr_not_equal(a, b);
        str_eq(a->path, b->path);
        str_eq(a->socket, b->socket);
        str_eq(a->socket_group, b->socket_group);
        assert_int_equal(a->socket_gid, b->socket_gid);
        str_eq(a->module, b->module);
        if (!a->module_dirs)
                assert_null(b->module_dirs);
        else {
                assert_non_null(b->module_dirs);
                for (; a->module_dirs[n]; n++)
                        str_eq(a->module_dirs[n], b->module_dirs[n]);
                assert_null(b->module_dirs[n]);
        }
        str_eq(a->token, b->token);
        str_eq(a->pin_source, b->pin_source);
        str_eq(a->ca_file, b->ca_file);
        assert_int_equal(a->n_credentials, b->n_credentials);
        for (size_t i = 0; i < a->n_credentials; i++)
                credential_eq(a->credentials[i], b->credentials[i]);
        names_eq(a->users, a->n_users, b->users, b->n_users);
        names_eq(a->groups, a->n_groups, b->groups, b->n_groups);
}

/* Encodes C, decodes it and checks equality and that re-encoding gives the same bytes. */
static struct config *roundtrip(const struct config *c) {
        struct config *d = NULL;
        struct buf b, again;

        buf_init(&b, MSG_CONFIG_SIZE_MAX);
        assert_int_equal(config_encode(c, &b), 0);
        assert_int_equal(config_decode(b.data, b.len, &d), 0);
        assert_non_null(d);
        config_eq(c, d);

        buf_init(&again, MSG_CONFIG_SIZE_MAX);
        assert_int_equal(config_encode(d, &again), 0);
        assert_int_equal(again.len, b.len);
        assert_memory_equal(again.data, b.data, b.len);
        buf_done(&again);
        buf_done(&b);
        return d;
}

/* ---- A config loaded from files ---------------------------------------------------- */

static char dir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void write_file(const char *name, const char *text) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
        char path[128];

        strcpy(dir, "/tmp/test-config-wire-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/conf.d", dir);
        assert_int_equal(mkdir(path, 0755), 0);
        return 0;
}

static int teardown(void **state) {
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static void test_loaded_config(void **state) {
        _cleanup_(config_freep) struct config *c = NULL, *d = NULL;
        _cleanup_free_ char *errors = NULL, *main_conf = NULL;
        const struct config_credential *cred;
        char path[128], ca[128];
        int r;

        snprintf(ca, sizeof ca, "%s/ca.pem", dir);
        write_file("ca.pem", "test\n");
        assert_true(asprintf(&main_conf,
                "[agent]\n"
                "socket = /run/credagent/wire.sock\n"
                "socket_group = root\n"
                "module = /usr/lib/softhsm/libsofthsm2.so\n"
                "module_dirs = /usr/lib/softhsm /opt/pkcs11 /usr/local/lib\n"
                "token = pkcs11:token=credagent\n"
                "pin_source = file:/etc/credagent/pin\n"
                "ca_file = %s\n"
                "\n"
                "[principal Billing_API.Later]\n"
                "sequence = 30\n"
                "client_id = billing-later\n"
                "client_secret = pkcs11:token=credagent;object=Billing_API.Later;type=data\n"
                "users = *\n"
                "\n"
                "[credential Billing_API]\n"
                "label = Billing API (production)\n"
                "token_url = http://127.0.0.1:8443/oauth2/token\n"
                "allow_insecure_loopback = yes\n"
                "client_auth = post\n"
                "scope = billing:read billing:write\n"
                "refresh_status = 403 419\n"
                "default_ttl = 600\n"
                "max_ttl = 3600\n"
                "refresh_at = 70%%\n"
                "refresh_margin = 30\n"
                "connect_timeout = 2\n"
                "timeout = 30\n"
                "\n"
                "[principal Billing_API.Batch]\n"
                "sequence = 5\n"
                "client_id = billing-batch\n"
                "client_secret = pkcs11:token=credagent;object=Billing_API.Batch;type=data\n"
                "users = root 4242 daemon\n"
                "groups = root 3000\n"
                "\n"
                "[credential Minimal]\n"
                "token_url = https://idp.example.com/token\n",
                ca) > 0);
        write_file("credagent.conf", main_conf);
        write_file("conf.d/10-ops.conf",
                "[principal Billing_API.Ops]\n"
                "sequence = 10\n"
                "client_id = billing-ops\n"
                "client_secret = pkcs11:object=ops\n"
                "groups = 0 1 2\n"
                "\n"
                "[credential Reports]\n"
                "token_url = https://idp.example.com/reports\n"
                "scope = {!\"reports role:\" + $User.Group + \" u:\" + $User.Name + \" \" + $User.Groups}\n");
        write_file("conf.d/20-reports.conf",
                "[principal Reports.Anyone]\n"
                "sequence = 18446744073709551614\n"
                "client_id = reports\n"
                "client_secret = pkcs11:object=reports\n"
                "users = *\n"
                "[principal Reports.Root]\n"
                "sequence = 0\n"
                "client_id = reports-root\n"
                "client_secret = pkcs11:object=reports-root\n"
                "users = 0\n");
        write_file("conf.d/40-extras.conf",
                "[credential Extras]\n"
                "issuer = https://idp.example.com/tenants/t1\n"
                "audience = api://extras\n"
                "resource = https://a.example/v1 urn:example:b\n"
                "token_params = tenant=t1&region=eu\n");
        write_file("conf.d/30-jwt.conf",
                "[credential Signed]\n"
                "token_url = https://idp.example.com/signed\n"
                "client_auth = private_key_jwt\n"
                "assertion_audience = https://idp.example.com\n"
                "assertion_lifetime = 120\n"
                "[principal Signed.Batch]\n"
                "sequence = 1\n"
                "client_id = signed-batch\n"
                "client_key = pkcs11:token=credagent;object=Signed.Batch;type=private\n"
                "key_id = batch-2024\n"
                "assertion_alg = PS256\n"
                "users = *\n"
                "[principal Signed.Ec]\n"
                "sequence = 2\n"
                "client_id = signed-ec\n"
                "client_key = pkcs11:object=Signed.Ec\n"
                "users = 0\n");

        snprintf(path, sizeof path, "%s/credagent.conf", dir);
        r = config_load(path, 0, &c, &errors);
        if (r < 0)
                print_error("%s", errors ? errors : "(no errors)\n");
        assert_int_equal(r, 0);

        /* What was loaded is what this test is about: several of everything. */
        assert_int_equal(c->n_credentials, 5);
        assert_null(c->credentials[4]->token_url);
        assert_string_equal(c->credentials[4]->issuer, "https://idp.example.com/tenants/t1");
        assert_string_equal(c->credentials[4]->token_params, "tenant=t1 region=eu");
        assert_int_equal(c->credentials[3]->client_auth, CLIENT_AUTH_PRIVATE_KEY_JWT);
        assert_int_equal(c->credentials[3]->principals[0]->assertion_alg, HSM_ALG_PS256);
        assert_non_null(c->credentials[2]->scope_formula);
        assert_true(c->n_users > 0 && c->n_groups > 0);
        assert_int_equal(c->credentials[0]->n_principals, 3);
        assert_int_equal(c->credentials[1]->n_principals, 0);
        assert_int_equal(c->credentials[2]->n_principals, 2);
        assert_int_equal(c->credentials[0]->principals[0]->rule.n_uids, 3);

        d = roundtrip(c);

        /* The decoded config works with the lookups the front uses. */
        cred = config_find_credential(d, "Reports");
        assert_non_null(cred);
        assert_ptr_equal(cred, d->credentials[2]);
        assert_string_equal(cred->principals[0]->name, "Root");
        assert_true(cred->principals[1]->rule.sequence == UINT64_MAX - 1);
        assert_ptr_equal(config_find_principal(d, "Billing_API.Ops"), d->credentials[0]->principals[1]);
        /* private_key_jwt's fields, set and unset (credential_eq() compared every one). */
        assert_string_equal(config_find_principal(d, "Signed.Batch")->key_id, "batch-2024");
        assert_null(config_find_principal(d, "Signed.Ec")->key_id);
        assert_null(config_find_principal(d, "Signed.Ec")->client_secret);
        assert_int_equal(config_find_credential(d, "Signed")->assertion_lifetime, 120);
        /* Refresh timing, set and by default. */
        assert_int_equal(d->credentials[0]->refresh_at, 70);
        assert_int_equal(d->credentials[0]->refresh_margin, 30);
        assert_int_equal(d->credentials[1]->refresh_at, CONFIG_REFRESH_AT_DEFAULT);
        assert_int_equal(d->credentials[1]->refresh_margin, CONFIG_REFRESH_MARGIN_DEFAULT);
        assert_string_equal(d->credentials[0]->principals[1]->file, c->credentials[0]->principals[1]->file);
        assert_non_null(strstr(d->credentials[0]->principals[1]->file, "conf.d/10-ops.conf"));
        /* The name tables came along: the decoded side answers as the loaded one. */
        assert_string_equal(config_user_name(d, 0), config_user_name(c, 0));
        assert_string_equal(config_group_name(d, 0), config_group_name(c, 0));
        {
                struct peer peer = { .pid = 1, .uid = 0, .gid = 0 };
                char a[FORMULA_SCOPE_MAX + 1], b[FORMULA_SCOPE_MAX + 1];
                const char *sa = NULL, *sb = NULL;

                assert_int_equal(config_scope_expand(c, c->credentials[2]->principals[0], &peer, a, sizeof a, NULL, 0,
                                                     &sa), 0);
                assert_int_equal(config_scope_expand(d, cred->principals[0], &peer, b, sizeof b, NULL, 0, &sb), 0);
                assert_string_equal(sa, sb);
                assert_non_null(strstr(sb, "reports role:"));
        }
}

/* ---- Hand-made configs ------------------------------------------------------------- */

/* A small config in static storage (never freed): agent, credential "C" with principals
 * C.P1 (sequence 1) and C.P2 (sequence 2). */
struct fixture {
        struct config c;
        struct config_credential cred, *creds[1];
        struct config_principal p[2], *ps[2];
        const struct policy_rule *rules[2];
        uid_t uids[2];
        gid_t gids[1];
        int refresh[1];
        char *dirs[2];
        struct config_name users[2], groups[3];
};

static void fixture_init(struct fixture *x) {
        *x = (struct fixture) {
                .uids = { 0, 4242 },
                .gids = { 3000 },
                .refresh = { 403 },
                .dirs = { (char *) "/usr/lib/softhsm", NULL },
        };
        x->p[0] = (struct config_principal) {
                .name = (char *) "P1", .full_name = (char *) "C.P1", .credential = &x->cred,
                .rule = { .sequence = 1, .uids = x->uids, .n_uids = 2, .gids = x->gids, .n_gids = 1 },
                .client_id = (char *) "id1", .client_secret = (char *) "pkcs11:object=p1", .file = (char *) "f", .line = 3,
        };
        x->p[1] = (struct config_principal) {
                .name = (char *) "P2", .full_name = (char *) "C.P2", .credential = &x->cred,
                .rule = { .sequence = 2, .any_user = true },
                .client_id = (char *) "id2", .client_secret = (char *) "pkcs11:object=p2", .file = (char *) "f", .line = 9,
        };
        x->ps[0] = &x->p[0];
        x->ps[1] = &x->p[1];
        x->rules[0] = &x->p[0].rule;
        x->rules[1] = &x->p[1].rule;
        x->cred = (struct config_credential) {
                .name = (char *) "C", .token_url = (char *) "https://idp/token", .client_auth = CLIENT_AUTH_BASIC,
                .refresh_status = x->refresh, .n_refresh_status = 1, .default_ttl = 300, .max_ttl = 600,
                .connect_timeout = 5, .timeout = 15, .principals = x->ps, .rules = x->rules, .n_principals = 2,
                .file = (char *) "f", .line = 1,
        };
        x->creds[0] = &x->cred;
        x->users[0] = (struct config_name) { .id = 0, .name = (char *) "root" };
        x->users[1] = (struct config_name) { .id = 4242, .name = (char *) "svc" };
        x->groups[0] = (struct config_name) { .id = 0, .name = (char *) "root" };
        x->groups[1] = (struct config_name) { .id = 3000, .name = (char *) "ops" };
        x->groups[2] = (struct config_name) { .id = 4294967294u, .name = (char *) "last" };
        x->c = (struct config) {
                .path = (char *) "/etc/credagent/credagent.conf", .socket = (char *) "/run/s",
                .module = (char *) "/usr/lib/softhsm/libsofthsm2.so", .module_dirs = x->dirs,
                .token = (char *) "pkcs11:token=t", .pin_source = (char *) "file:/p",
                .credentials = x->creds, .n_credentials = 1,
                .users = x->users, .n_users = 2, .groups = x->groups, .n_groups = 3,
        };
}

static void test_handmade_roundtrips(void **state) {
        struct fixture x;
        struct config *d;
        uid_t *many;

        /* The fixture as it is. */
        fixture_init(&x);
        d = roundtrip(&x.c);
        config_free(d);

        /* Every optional string NULL, no module_dirs list at all (not an empty one). */
        fixture_init(&x);
        x.c.path = x.c.socket = x.c.module = x.c.token = x.c.pin_source = NULL;
        x.c.module_dirs = NULL;
        x.cred.token_url = x.cred.file = NULL;
        x.p[0].client_id = x.p[0].client_secret = x.p[0].file = NULL;
        d = roundtrip(&x.c);
        assert_null(d->module_dirs);
        config_free(d);

        /* A formula travels as its text and is compiled again; no name tables at all. */
        fixture_init(&x);
        {
                const char *text = "{!\"role:\" + $User.Group + \" \" + $Principal.Name}";
                struct formula *f = NULL;

                assert_int_equal(formula_parse(text, &f, NULL, NULL), 0);
                x.cred.scope = (char *) text;
                x.cred.scope_formula = f;
                x.c.users = x.c.groups = NULL;
                x.c.n_users = x.c.n_groups = 0;
                d = roundtrip(&x.c);
                assert_non_null(d->credentials[0]->scope_formula);
                assert_true(formula_uses(d->credentials[0]->scope_formula, FORMULA_VAR_PRINCIPAL_NAME));
                assert_null(d->users);
                assert_null(d->groups);
                config_free(d);
                formula_free(f);
        }

        /* The most names a table may have. */
        fixture_init(&x);
        {
                struct config_name *v = calloc(CONFIG_NAMES_MAX, sizeof *v);

                assert_non_null(v);
                for (size_t i = 0; i < CONFIG_NAMES_MAX; i++)
                        v[i] = (struct config_name) { .id = (uint32_t) i * 3, .name = (char *) "n" };
                x.c.users = v;
                x.c.n_users = CONFIG_NAMES_MAX;
                d = roundtrip(&x.c);
                assert_string_equal(config_user_name(d, 3 * 1000), "n");
                assert_null(config_user_name(d, 3 * 1000 + 1));
                config_free(d);
                free(v);
        }

        /* An empty module_dirs list stays an empty list. */
        fixture_init(&x);
        x.dirs[0] = NULL;
        d = roundtrip(&x.c);
        assert_non_null(d->module_dirs);
        assert_null(d->module_dirs[0]);
        config_free(d);

        /* Nothing but [agent]. */
        fixture_init(&x);
        x.c.n_credentials = 0;
        x.c.credentials = NULL;
        d = roundtrip(&x.c);
        assert_null(d->credentials);
        config_free(d);

        /* The most ids a principal may have, and a status at each end of the range. */
        fixture_init(&x);
        many = calloc(CONFIG_WIRE_IDS_MAX, sizeof *many);
        assert_non_null(many);
        for (size_t i = 0; i < CONFIG_WIRE_IDS_MAX; i++)
                many[i] = (uid_t) (i * 7919);
        x.p[0].rule.uids = many;
        x.p[0].rule.n_uids = CONFIG_WIRE_IDS_MAX;
        x.refresh[0] = 999;
        x.cred.client_auth = CLIENT_AUTH_POST;
        x.cred.allow_insecure_loopback = true;
        d = roundtrip(&x.c);
        config_free(d);
        free(many);
}

/* Expects config_encode() to fail with EXPECTED and leave OUT holding only its marker. */
static void expect_encode_fails(const struct config *c, int expected) {
        struct buf out;
        int r;

        buf_init(&out, 4 << 20);
        assert_int_equal(buf_put(&out, "mark", 4), 0);
        r = config_encode(c, &out);
        if (r != expected)
                print_error("config_encode returned %d, expected %d\n", r, expected);
        assert_int_equal(r, expected);
        assert_int_equal(out.len, 4);
        assert_memory_equal(out.data, "mark", 4);
        buf_done(&out);
}

static void test_encode_rejects(void **state) {
        struct config_credential other, *two[2];
        struct fixture x;
        char *long_str;
        uid_t *many;

        fixture_init(&x);
        x.cred.name = NULL;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].name = NULL;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].full_name = NULL;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].full_name = (char *) "D.P2";     /* another credential's */
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].full_name = (char *) "C.P1";     /* not its own name */
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].full_name = (char *) "CP2";
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].rule.sequence = 1;               /* same sequence twice */
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[0].rule.sequence = 3;               /* not ascending */
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.cred.client_auth = (enum client_auth) 3;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.cred.assertion_lifetime = ASSERTION_LIFETIME_MAX + 1;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.cred.refresh_at = CONFIG_REFRESH_AT_MAX + 1;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.cred.refresh_margin = CONFIG_REFRESH_MARGIN_MAX + 1;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.p[1].assertion_alg = _HSM_ALG_MAX;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.refresh[0] = 99;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.refresh[0] = 1000;
        expect_encode_fails(&x.c, -EINVAL);

        /* A scope written as a formula must come with it compiled, and only then. */
        fixture_init(&x);
        x.cred.scope = (char *) "{!$User.Name}";
        expect_encode_fails(&x.c, -EINVAL);
        {
                struct formula *f = NULL;

                assert_int_equal(formula_parse("read", &f, NULL, NULL), 0);
                fixture_init(&x);
                x.cred.scope = (char *) "read";
                x.cred.scope_formula = f;
                expect_encode_fails(&x.c, -EINVAL);
                formula_free(f);
        }

        /* Name tables: ids strictly ascending, names of 1 … CONFIG_NAME_LEN_MAX bytes. */
        fixture_init(&x);
        x.users[1].id = 0;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.groups[0].id = 5000;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.groups[1].name = NULL;
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.users[0].name = (char *) "";
        expect_encode_fails(&x.c, -EINVAL);
        fixture_init(&x);
        x.c.users = NULL;
        expect_encode_fails(&x.c, -EINVAL);
        {
                char name[CONFIG_NAME_LEN_MAX + 2];

                memset(name, 'n', sizeof name - 1);
                name[sizeof name - 1] = '\0';
                fixture_init(&x);
                x.users[1].name = name;
                expect_encode_fails(&x.c, -EINVAL);
                name[CONFIG_NAME_LEN_MAX] = '\0'; /* exactly the cap is fine */
                config_free(roundtrip(&x.c));
        }
        {
                struct config_name *v = calloc(CONFIG_NAMES_MAX + 1, sizeof *v);
                char *name = malloc(CONFIG_NAME_LEN_MAX + 1);

                assert_non_null(v);
                assert_non_null(name);
                for (size_t i = 0; i <= CONFIG_NAMES_MAX; i++)
                        v[i] = (struct config_name) { .id = (uint32_t) i, .name = (char *) "n" };
                fixture_init(&x);
                x.c.groups = v;
                x.c.n_groups = CONFIG_NAMES_MAX + 1;
                expect_encode_fails(&x.c, -EMSGSIZE);
                /* Bytes: both tables count; (256 + 8) bytes × 2600 entries > 640 KiB. */
                memset(name, 'n', CONFIG_NAME_LEN_MAX);
                name[CONFIG_NAME_LEN_MAX] = '\0';
                for (size_t i = 0; i < 2000; i++)
                        v[i].name = name;
                fixture_init(&x);
                x.c.groups = v;
                x.c.n_groups = 2000;
                config_free(roundtrip(&x.c));
                x.c.users = v;
                x.c.n_users = 600;
                expect_encode_fails(&x.c, -EMSGSIZE);
                free(name);
                free(v);
        }

        /* Duplicate credential names. */
        fixture_init(&x);
        other = (struct config_credential) { .name = (char *) "C" };
        two[0] = &x.cred;
        two[1] = &other;
        x.c.credentials = two;
        x.c.n_credentials = 2;
        expect_encode_fails(&x.c, -EINVAL);

        /* Over a cap. */
        long_str = malloc(CONFIG_WIRE_STRING_MAX + 2);
        assert_non_null(long_str);
        memset(long_str, 'x', CONFIG_WIRE_STRING_MAX + 1);
        long_str[CONFIG_WIRE_STRING_MAX + 1] = '\0';
        fixture_init(&x);
        x.p[1].client_secret = long_str;
        expect_encode_fails(&x.c, -EMSGSIZE);
        long_str[CONFIG_WIRE_STRING_MAX] = '\0'; /* exactly the cap is fine */
        {
                struct config *d = roundtrip(&x.c);
                config_free(d);
        }
        free(long_str);

        many = calloc(CONFIG_WIRE_IDS_MAX + 1, sizeof *many);
        assert_non_null(many);
        fixture_init(&x);
        x.p[0].rule.gids = many;
        x.p[0].rule.n_gids = CONFIG_WIRE_IDS_MAX + 1;
        expect_encode_fails(&x.c, -EMSGSIZE);
        /* Seventeen principals of 65536 ids each (4.25 MiB) are over the 4 MiB OUT of
         * expect_encode_fails(). */
        {
                struct config_principal ps[17], *pp[17];
                const struct policy_rule *rules[17];
                char names[17][8], full[17][8];

                fixture_init(&x);
                for (int i = 0; i < 17; i++) {
                        snprintf(names[i], sizeof names[i], "P%d", i);
                        snprintf(full[i], sizeof full[i], "C.P%d", i);
                        ps[i] = (struct config_principal) {
                                .name = names[i], .full_name = full[i], .credential = &x.cred,
                                .rule = { .sequence = (uint64_t) i, .uids = many, .n_uids = CONFIG_WIRE_IDS_MAX },
                        };
                        pp[i] = &ps[i];
                        rules[i] = &ps[i].rule;
                }
                x.cred.principals = pp;
                x.cred.rules = rules;
                x.cred.n_principals = 17;
                expect_encode_fails(&x.c, -EMSGSIZE);
                x.cred.n_principals = 3; /* 768 KiB: fits */
                {
                        struct config *d = roundtrip(&x.c);
                        config_free(d);
                }
        }
        free(many);
}

/* ---- Decoder rejections ------------------------------------------------------------ */

static void expect_decode_fails(const uint8_t *p, size_t n) {
        struct config *d = (struct config *) 0x1; /* untouched on failure */
        int r = config_decode(p, n, &d);

        if (r != -EBADMSG)
                print_error("config_decode returned %d for %zu bytes\n", r, n);
        assert_int_equal(r, -EBADMSG);
        assert_ptr_equal(d, (struct config *) 0x1);
}

/* The payload of C's encoding, as a malloc()ed copy in *RET / *RET_N. */
static void payload_of(const struct config *c, uint8_t **ret, size_t *ret_n) {
        struct buf b;

        buf_init(&b, 4 << 20);
        assert_int_equal(config_encode(c, &b), 0);
        *ret_n = b.len;
        *ret = malloc(*ret_n + 1);
        assert_non_null(*ret);
        memcpy(*ret, b.data, *ret_n);
        buf_done(&b);
}

static void test_decode_truncated_and_trailing(void **state) {
        struct fixture x;
        uint8_t *p;
        size_t n;

        fixture_init(&x);
        payload_of(&x.c, &p, &n);
        for (size_t i = 0; i < n; i++)
                expect_decode_fails(p, i);
        p[n] = 0;
        expect_decode_fails(p, n + 1);
        free(p);
}

/* Finds the unique occurrence of NEEDLE in P[0..N); returns its offset. */
static size_t find(const uint8_t *p, size_t n, const void *needle, size_t len) {
        size_t at = SIZE_MAX;

        for (size_t i = 0; i + len <= n; i++)
                if (memcmp(p + i, needle, len) == 0) {
                        assert_true(at == SIZE_MAX);
                        at = i;
                }
        assert_true(at != SIZE_MAX);
        return at;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

/* Patches one spot of the fixture's payload (found by a unique marker value) and expects
 * the decoder to refuse it. */
static void test_decode_rejects(void **state) {
        struct fixture x;
        uint8_t *p;
        size_t n, at;

        /* client_auth 3: its byte follows token_url ("https://idp/token"). */
        fixture_init(&x);
        payload_of(&x.c, &p, &n);
        at = find(p, n, "https://idp/token", 17) + 17;
        assert_int_equal(p[at], CLIENT_AUTH_BASIC);
        p[at] = 3;
        expect_decode_fails(p, n);
        p[at] = CLIENT_AUTH_PRIVATE_KEY_JWT; /* a valid value: the payload decodes */
        {
                struct config *d = NULL;
                assert_int_equal(config_decode(p, n, &d), 0);
                assert_int_equal(d->credentials[0]->client_auth, CLIENT_AUTH_PRIVATE_KEY_JWT);
                config_free(d);
        }
        /* allow_insecure_loopback 2: after scope (NULL), the count 1 and the status 403. */
        p[at] = CLIENT_AUTH_BASIC;
        at = find(p, n, "\x00\x00\x00\x01\x00\x00\x01\x93", 8) + 8; /* n_refresh_status 1, 403 */
        assert_int_equal(p[at], 0);
        p[at] = 2;
        expect_decode_fails(p, n);
        p[at] = 0;
        /* A refresh status out of range. */
        put_be32(p + at - 4, 99);
        expect_decode_fails(p, n);
        put_be32(p + at - 4, 1000);
        expect_decode_fails(p, n);
        put_be32(p + at - 4, 403);
        /* An embedded NUL in a string. */
        at = find(p, n, "pkcs11:object=p1", 16);
        p[at + 6] = '\0';
        expect_decode_fails(p, n);
        p[at + 6] = ':';
        /* The principal's name changed so that full_name no longer matches. */
        at = find(p, n, "\x00\x00\x00\x02P2", 6);
        p[at + 5] = '3';
        expect_decode_fails(p, n);
        p[at + 5] = '2';
        /* Its sequence made equal to the first's. */
        at = find(p, n, "C.P2", 4) + 4;
        assert_int_equal(p[at + 7], 2);
        p[at + 7] = 1;
        expect_decode_fails(p, n);
        p[at + 7] = 2;
        /* any_user 2. */
        assert_int_equal(p[at + 8], 1);
        p[at + 8] = 2;
        expect_decode_fails(p, n);
        p[at + 8] = 1;
        /* A required name sent as NULL: the credential's "C" (count 1, 'C', then the NULL label). */
        at = find(p, n, "\x00\x00\x00\x01" "C\xff\xff\xff\xff", 9);
        memcpy(p + at, "\xff\xff\xff\xff", 4);
        expect_decode_fails(p, n);
        free(p);

        /* Name tables: ids out of order ("svc" 4242 made 0, like "root" before it), an empty
         * name, a NULL name. */
        fixture_init(&x);
        payload_of(&x.c, &p, &n);
        at = find(p, n, "\x00\x00\x10\x92\x00\x00\x00\x03svc", 11);
        put_be32(p + at, 0);
        expect_decode_fails(p, n);
        put_be32(p + at, 4242);
        put_be32(p + at + 4, 0);
        memcpy(p + at + 8, "\x00\x00\x00", 3);
        /* (the 3 bytes after the now-empty name are left over: trailing garbage either way) */
        expect_decode_fails(p, n);
        free(p);
        fixture_init(&x);
        payload_of(&x.c, &p, &n);
        at = find(p, n, "\x00\x00\x00\x03ops", 7);
        memcpy(p + at, "\xff\xff\xff\xff", 4);
        expect_decode_fails(p, n);
        free(p);

        /* A scope that starts as a formula but does not parse. */
        fixture_init(&x);
        x.cred.scope = (char *) "{!$User.Nam}";
        {
                struct formula *f = NULL;

                assert_int_equal(formula_parse("{!$User.Uid}", &f, NULL, NULL), 0);
                x.cred.scope = (char *) "{!$User.Uid}";
                x.cred.scope_formula = f;
                payload_of(&x.c, &p, &n);
                formula_free(f);
        }
        at = find(p, n, "{!$User.Uid}", 12);
        p[at + 8] = 'X';
        expect_decode_fails(p, n);
        p[at + 8] = 'U';
        {
                struct config *d = NULL;
                assert_int_equal(config_decode(p, n, &d), 0);
                config_free(d);
        }
        free(p);

        /* Still valid after all the patches were undone?  (Shows each patch alone was the cause.) */
        fixture_init(&x);
        payload_of(&x.c, &p, &n);
        {
                struct config *d = NULL;
                assert_int_equal(config_decode(p, n, &d), 0);
                config_free(d);
        }
        free(p);
}

/* Hand-built payloads for counts over their caps. */
static void put_agent_part(struct buf *b, uint32_t n_dirs, uint32_t n_credentials) {
        buf_init(b, 4 << 20);
        for (int i = 0; i < 3; i++)
                assert_int_equal(buf_put_str(b, NULL), 0); /* path, socket, socket_group */
        assert_int_equal(buf_put_u32(b, 0), 0);             /* socket_gid */
        assert_int_equal(buf_put_str(b, NULL), 0);          /* module */
        assert_int_equal(buf_put_u32(b, n_dirs), 0);
        for (uint32_t i = 0; i < n_dirs && n_dirs != UINT32_MAX; i++)
                assert_int_equal(buf_put_str(b, "/d"), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(buf_put_str(b, NULL), 0); /* token, pin_source, ca_file */
        assert_int_equal(buf_put_u32(b, n_credentials), 0);
}

static void put_credential(struct buf *b, const char *name, uint32_t n_principals) {
        assert_int_equal(buf_put_str(b, name), 0);
        assert_int_equal(buf_put_str(b, NULL), 0);  /* label */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* token_url */
        assert_int_equal(buf_put_u8(b, 0), 0);      /* client_auth */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* scope */
        assert_int_equal(buf_put_u32(b, 0), 0);     /* refresh_status */
        assert_int_equal(buf_put_u8(b, 0), 0);      /* allow_insecure_loopback */
        /* default_ttl, max_ttl, refresh_at, refresh_margin, connect_timeout, timeout */
        for (int i = 0; i < 6; i++)
                assert_int_equal(buf_put_u32(b, 1), 0);
        assert_int_equal(buf_put_str(b, NULL), 0);  /* assertion_audience */
        assert_int_equal(buf_put_u32(b, 60), 0);    /* assertion_lifetime */
        for (int i = 0; i < 4; i++)
                assert_int_equal(buf_put_str(b, NULL), 0); /* issuer, audience, resource, token_params */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* file */
        assert_int_equal(buf_put_u32(b, 1), 0);     /* line */
        assert_int_equal(buf_put_u32(b, n_principals), 0);
}

static void put_principal(struct buf *b, const char *name, const char *full_name, uint64_t sequence, uint32_t n_uids) {
        assert_int_equal(buf_put_str(b, name), 0);
        assert_int_equal(buf_put_str(b, full_name), 0);
        assert_int_equal(buf_put_u64(b, sequence), 0);
        assert_int_equal(buf_put_u8(b, 0), 0);
        assert_int_equal(buf_put_u32(b, n_uids), 0);
        for (uint32_t i = 0; i < n_uids; i++)
                assert_int_equal(buf_put_u32(b, i), 0);
        assert_int_equal(buf_put_u32(b, 0), 0);     /* gids */
        for (int i = 0; i < 2; i++)
                assert_int_equal(buf_put_str(b, NULL), 0); /* client_id, client_secret */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* client_key */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* key_id */
        assert_int_equal(buf_put_u8(b, 0), 0);      /* assertion_alg */
        assert_int_equal(buf_put_str(b, NULL), 0);  /* file */
        assert_int_equal(buf_put_u32(b, 0), 0);     /* line */
}

/* The two name tables that end every payload: empty. */
static void put_no_names(struct buf *b) {
        assert_int_equal(buf_put_u32(b, 0), 0);
        assert_int_equal(buf_put_u32(b, 0), 0);
}

static void decode_ok(struct buf *b) {
        struct config *d = NULL;

        put_no_names(b);
        assert_int_equal(config_decode(b->data, b->len, &d), 0);
        config_free(d);
        buf_done(b);
}

static void decode_bad(struct buf *b) {
        put_no_names(b);
        expect_decode_fails(b->data, b->len);
        buf_done(b);
}

static void test_decode_counts(void **state) {
        struct buf b;
        char name[16];

        /* The builders make valid payloads. */
        put_agent_part(&b, 2, 1);
        put_credential(&b, "C", 1);
        put_principal(&b, "P", "C.P", 1, 3);
        decode_ok(&b);
        put_agent_part(&b, UINT32_MAX, 0);
        decode_ok(&b);

        /* Credentials: 4096 fine, 4097 not (even with the bytes there). */
        put_agent_part(&b, 0, CONFIG_WIRE_CREDENTIALS_MAX);
        for (int i = 0; i < CONFIG_WIRE_CREDENTIALS_MAX; i++) {
                snprintf(name, sizeof name, "C%d", i);
                put_credential(&b, name, 0);
        }
        decode_ok(&b);
        put_agent_part(&b, 0, CONFIG_WIRE_CREDENTIALS_MAX + 1);
        for (int i = 0; i < CONFIG_WIRE_CREDENTIALS_MAX + 1; i++) {
                snprintf(name, sizeof name, "C%d", i);
                put_credential(&b, name, 0);
        }
        decode_bad(&b);
        /* A count far beyond the bytes that follow. */
        put_agent_part(&b, 0, 1000);
        put_credential(&b, "C", 0);
        decode_bad(&b);
        /* Duplicate credential names. */
        put_agent_part(&b, 0, 2);
        put_credential(&b, "C", 0);
        put_credential(&b, "C", 0);
        decode_bad(&b);

        /* Principals per credential. */
        put_agent_part(&b, 0, 1);
        put_credential(&b, "C", CONFIG_WIRE_PRINCIPALS_MAX + 1);
        for (int i = 0; i < CONFIG_WIRE_PRINCIPALS_MAX + 1; i++) {
                char full[24];

                snprintf(name, sizeof name, "P%d", i);
                snprintf(full, sizeof full, "C.P%d", i);
                put_principal(&b, name, full, (uint64_t) i, 0);
        }
        decode_bad(&b);

        /* Ids: 65536 fine, 65537 not. */
        put_agent_part(&b, 0, 1);
        put_credential(&b, "C", 1);
        put_principal(&b, "P", "C.P", 1, CONFIG_WIRE_IDS_MAX);
        decode_ok(&b);
        put_agent_part(&b, 0, 1);
        put_credential(&b, "C", 1);
        put_principal(&b, "P", "C.P", 1, CONFIG_WIRE_IDS_MAX + 1);
        decode_bad(&b);

        /* module_dirs: over the cap, and a NULL entry in the list. */
        put_agent_part(&b, CONFIG_WIRE_MODULE_DIRS_MAX + 1, 0);
        decode_bad(&b);
        buf_init(&b, 1024);
        for (int i = 0; i < 3; i++)
                assert_int_equal(buf_put_str(&b, NULL), 0);
        assert_int_equal(buf_put_u32(&b, 0), 0);
        assert_int_equal(buf_put_str(&b, NULL), 0);
        assert_int_equal(buf_put_u32(&b, 1), 0);
        assert_int_equal(buf_put_str(&b, NULL), 0); /* the one dir */
        for (int i = 0; i < 3; i++)
                assert_int_equal(buf_put_str(&b, NULL), 0);
        assert_int_equal(buf_put_u32(&b, 0), 0);
        decode_bad(&b);

        /* Name tables: over the count cap, a count beyond the bytes, a name over its cap, and
         * without any tables at all. */
        put_agent_part(&b, 0, 0);
        assert_int_equal(buf_put_u32(&b, CONFIG_NAMES_MAX + 1), 0);
        for (uint32_t i = 0; i <= CONFIG_NAMES_MAX; i++) {
                assert_int_equal(buf_put_u32(&b, i), 0);
                assert_int_equal(buf_put_str(&b, "n"), 0);
        }
        assert_int_equal(buf_put_u32(&b, 0), 0);
        expect_decode_fails(b.data, b.len);
        buf_done(&b);
        put_agent_part(&b, 0, 0);
        assert_int_equal(buf_put_u32(&b, 0), 0);
        assert_int_equal(buf_put_u32(&b, 100), 0);
        assert_int_equal(buf_put_u32(&b, 1), 0);
        assert_int_equal(buf_put_str(&b, "n"), 0);
        expect_decode_fails(b.data, b.len);
        buf_done(&b);
        {
                char longname[CONFIG_NAME_LEN_MAX + 2];

                memset(longname, 'n', sizeof longname - 1);
                longname[sizeof longname - 1] = '\0';
                put_agent_part(&b, 0, 0);
                assert_int_equal(buf_put_u32(&b, 1), 0);
                assert_int_equal(buf_put_u32(&b, 7), 0);
                assert_int_equal(buf_put_str(&b, longname), 0);
                assert_int_equal(buf_put_u32(&b, 0), 0);
                expect_decode_fails(b.data, b.len);
                buf_done(&b);
                longname[CONFIG_NAME_LEN_MAX] = '\0';
                put_agent_part(&b, 0, 0);
                assert_int_equal(buf_put_u32(&b, 1), 0);
                assert_int_equal(buf_put_u32(&b, 7), 0);
                assert_int_equal(buf_put_str(&b, longname), 0);
                assert_int_equal(buf_put_u32(&b, 0), 0);
                {
                        struct config *d = NULL;

                        assert_int_equal(config_decode(b.data, b.len, &d), 0);
                        assert_string_equal(config_user_name(d, 7), longname);
                        config_free(d);
                }
                buf_done(&b);
        }
        put_agent_part(&b, 0, 0);
        expect_decode_fails(b.data, b.len);
        buf_done(&b);

        /* Nothing at all. */
        expect_decode_fails(NULL, 0);
}

/* ---- config_send() / config_receive(): a memfd over a channel ------------------------ */

/* Receives one MSG_CONFIG on SV and reads it with config_receive(): its result, *RET set. */
static int receive_one(int sv, enum msg_channel chan, struct config **ret) {
        uint8_t rbuf[8192];
        struct msg_frame f;
        struct msg_config m;
        int r;

        assert_int_equal(msg_recv(sv, chan, true, rbuf, sizeof rbuf, &f), 0);
        assert_int_equal(f.type, MSG_CONFIG);
        assert_true(f.fd >= 0);
        assert_int_equal(msg_config_decode(f.payload, f.len, &m), 0);
        r = config_receive(f.fd, &m, ret);
        close(f.fd);
        return r;
}

/* Sends a hand-made MSG_CONFIG of SIZE with FD attached on SV[0]. */
static void send_raw(int sv, uint64_t size, int fd) {
        struct buf b;

        buf_init(&b, 64);
        assert_int_equal(msg_config_encode(&(struct msg_config) { .size = size }, &b), 0);
        assert_int_equal(msg_send(sv, &b, fd), 0);
        buf_done(&b);
}

static void test_send_receive(void **state) {
        struct config_principal *ps;
        struct config_principal **pp;
        const struct policy_rule **rules;
        struct config *d = NULL;
        struct fixture x;
        struct buf enc;
        char (*names)[16], (*full)[16];
        int sv[2], fd, p[2];
        const size_t n = 4000; /* principals with a long URI each: far over a datagram */
        char uri[300];

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);

        /* The whole config; then [agent] only: same [agent], no credential, no names. */
        fixture_init(&x);
        assert_int_equal(config_send(sv[0], &x.c, 0), 0);
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), 0);
        config_eq(&x.c, d);
        config_free(d);
        assert_int_equal(config_send(sv[0], &x.c, CONFIG_SEND_AGENT_ONLY), 0);
        d = NULL;
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_NET, &d), 0);
        assert_string_equal(d->token, x.c.token);
        assert_string_equal(d->module_dirs[0], x.c.module_dirs[0]);
        assert_int_equal(d->n_credentials, 0);
        assert_int_equal(d->n_users, 0);
        assert_int_equal(d->n_groups, 0);
        config_free(d);

        /* A config of several MiB, which no datagram would carry. */
        ps = calloc(n, sizeof *ps);
        pp = calloc(n, sizeof *pp);
        rules = calloc(n, sizeof *rules);
        names = calloc(n, sizeof *names);
        full = calloc(n, sizeof *full);
        assert_true(ps && pp && rules && names && full);
        memset(uri, 'u', sizeof uri - 1);
        memcpy(uri, "pkcs11:object=", 14);
        uri[sizeof uri - 1] = '\0';
        fixture_init(&x);
        for (size_t i = 0; i < n; i++) {
                snprintf(names[i], sizeof names[i], "P%zu", i);
                snprintf(full[i], sizeof full[i], "C.P%zu", i);
                ps[i] = (struct config_principal) {
                        .name = names[i], .full_name = full[i], .credential = &x.cred,
                        .rule = { .sequence = (uint64_t) i + 1, .any_user = true },
                        .client_id = uri, .client_secret = uri, .file = uri, .line = 1,
                };
                pp[i] = &ps[i];
                rules[i] = &ps[i].rule;
        }
        x.cred.principals = pp;
        x.cred.rules = rules;
        x.cred.n_principals = n;
        buf_init(&enc, MSG_CONFIG_SIZE_MAX);
        assert_int_equal(config_encode(&x.c, &enc), 0);
        assert_true(enc.len > 3 * 1024 * 1024);
        assert_int_equal(config_send(sv[0], &x.c, 0), 0);
        d = NULL;
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), 0);
        config_eq(&x.c, d);
        /* A string that repeats is stored once (the decoder's arena), a distinct one apart. */
        assert_ptr_equal(d->credentials[0]->principals[0]->client_id, d->credentials[0]->principals[n - 1]->client_secret);
        assert_ptr_equal(d->credentials[0]->principals[1]->file, d->credentials[0]->principals[2]->file);
        assert_ptr_not_equal(d->credentials[0]->principals[1]->name, d->credentials[0]->principals[2]->name);
        assert_non_null(d->arena);
        config_free(d);

        /* Not a memfd (a pipe); a memfd that is not sealed; one sealed but with fewer or more
         * bytes than the frame says: all malformed, nothing stored. */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], enc.data, 64), 64);
        send_raw(sv[0], 64, p[0]);
        d = (struct config *) 0x1;
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), -EBADMSG);
        assert_ptr_equal(d, (struct config *) 0x1);
        close(p[0]);
        close(p[1]);

        fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, enc.data, enc.len), (ssize_t) enc.len);
        send_raw(sv[0], enc.len, fd);
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), -EBADMSG); /* unsealed: could change */
        assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 0);
        send_raw(sv[0], enc.len - 1, fd);
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), -EBADMSG); /* more than it said */
        send_raw(sv[0], enc.len + 1, fd);
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), -EBADMSG); /* fewer */
        send_raw(sv[0], enc.len, fd);
        assert_int_equal(receive_one(sv[1], CHAN_SUPER_FRONT, &d), 0); /* exactly: fine */
        config_eq(&x.c, d);
        config_free(d);
        close(fd);

        /* The peer gone: the error comes back. */
        close(sv[1]);
        assert_int_equal(config_send(sv[0], &x.c, 0), -EPIPE);
        close(sv[0]);
        buf_done(&enc);
        free(ps);
        free(pp);
        free(rules);
        free(names);
        free(full);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_loaded_config, setup, teardown),
                cmocka_unit_test(test_handmade_roundtrips),
                cmocka_unit_test(test_encode_rejects),
                cmocka_unit_test(test_decode_truncated_and_trailing),
                cmocka_unit_test(test_decode_rejects),
                cmocka_unit_test(test_decode_counts),
                cmocka_unit_test(test_send_receive),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
