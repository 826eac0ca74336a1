/* SPDX-License-Identifier: ISC */
/* hsm/ against a real SoftHSM2 token created in a temporary directory.
 *
 * The test also reaches the same module directly, as another PKCS#11 application in the
 * same process would: p11_kit_module_load(…, P11_KIT_MODULE_UNMANAGED) hands back the
 * module's own function list (p11-kit loads one module once per path), so the test can
 * create objects hsm/ would not (a non-private one), inspect attributes, and close every
 * session of the token behind hsm's back to exercise the session-loss path. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "hsm/hsm.h"
#include "secmem.h"

extern char **environ;

#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN "credagent-test"
#define TOKEN2 "credagent-other"
#define USER_PIN "1234"

static char tmpdir[] = "/tmp/test-hsm-XXXXXX";
static char pin_path[256];
static char token_uri[] = "pkcs11:token=" TOKEN;
static char pin_source[300];
static struct hsm *keeper;

/* ---- helpers ---- */

static int run(char *const argv[]) {
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int status, r;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static void write_file(const char *path, const char *content, mode_t mode) {
        int fd;

        (void) unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static struct hsm_params params_default(void) {
        return (struct hsm_params) {
                .module = SOFTHSM_MODULE,
                .module_dirs = NULL, /* hsm_default_module_dirs */
                .token_uri = token_uri,
                .pin_source = pin_source,
        };
}

static struct hsm *open_default(void) {
        struct hsm_params p = params_default();
        struct hsm *h = NULL;
        char *error = NULL;
        int r;

        r = hsm_open(&p, &h, &error);
        if (r < 0)
                print_error("hsm_open: %d %s\n", r, error ?: "");
        assert_int_equal(r, 0);
        assert_non_null(h);
        assert_null(error);
        return h;
}

/* Opens with P and expects failure R; returns the message (caller frees). */
static char *open_fails(const struct hsm_params *p, int expected) {
        struct hsm *h = (struct hsm *) 0x1;
        char *error = NULL;
        int r;

        r = hsm_open(p, &h, &error);
        if (r != expected)
                print_error("hsm_open: expected %d, got %d (%s)\n", expected, r, error ?: "");
        assert_int_equal(r, expected);
        assert_ptr_equal(h, (struct hsm *) 0x1); /* untouched on failure */
        assert_non_null(error);
        return error;
}

static struct secbuf *secbuf_of(const void *data, size_t len) {
        struct secbuf *b = secbuf_new(len > 0 ? len : 1);

        assert_non_null(b);
        assert_int_equal(secbuf_append(b, data, len), 0);
        return b;
}

static void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static bool strv_contains(char **l, const char *s) {
        for (char **p = l; p && *p; p++)
                if (strcmp(*p, s) == 0)
                        return true;
        return false;
}

/* The module's own function list, as another PKCS#11 user in the process would have it.
 * Only used while the keeper handle (opened for the whole group) keeps the module
 * initialized: C_Initialize of an unmanaged module is not counted by p11-kit. */
struct raw {
        CK_FUNCTION_LIST *m;
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE session;
};

static void raw_open(struct raw *raw, bool login) {
        CK_SLOT_ID slots[8];
        CK_ULONG n = ELEMENTSOF(slots);
        CK_RV rv;

        raw->m = p11_kit_module_load(SOFTHSM_MODULE, P11_KIT_MODULE_UNMANAGED);
        assert_non_null(raw->m);
        /* The keeper handle has initialized this very instance of the module. */
        assert_int_equal(p11_kit_module_initialize(raw->m), CKR_CRYPTOKI_ALREADY_INITIALIZED);
        assert_int_equal(raw->m->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        raw->slot = (CK_SLOT_ID) -1;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                assert_int_equal(raw->m->C_GetTokenInfo(slots[i], &ti), CKR_OK);
                if (p11_kit_space_strlen(ti.label, sizeof ti.label) == strlen(TOKEN) &&
                    memcmp(ti.label, TOKEN, strlen(TOKEN)) == 0)
                        raw->slot = slots[i];
        }
        assert_true(raw->slot != (CK_SLOT_ID) -1);
        assert_int_equal(raw->m->C_OpenSession(raw->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                               &raw->session), CKR_OK);
        if (login) {
                rv = raw->m->C_Login(raw->session, CKU_USER, (CK_UTF8CHAR *) USER_PIN, strlen(USER_PIN));
                assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
        }
}

static void raw_close(struct raw *raw) {
        (void) raw->m->C_CloseSession(raw->session);
        /* No C_Finalize: the module belongs to the keeper handle. */
        p11_kit_module_release(raw->m);
}

static CK_OBJECT_HANDLE raw_find(struct raw *raw, const char *label) {
        CK_OBJECT_CLASS klass = CKO_DATA;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_OBJECT_HANDLE o[2];
        CK_ULONG n = 0;

        assert_int_equal(raw->m->C_FindObjectsInit(raw->session, t, ELEMENTSOF(t)), CKR_OK);
        assert_int_equal(raw->m->C_FindObjects(raw->session, o, ELEMENTSOF(o), &n), CKR_OK);
        assert_int_equal(raw->m->C_FindObjectsFinal(raw->session), CKR_OK);
        assert_int_equal(n, 1);
        return o[0];
}

static CK_OBJECT_HANDLE raw_create(struct raw *raw, const char *label, const char *application, bool private) {
        CK_OBJECT_CLASS klass = CKO_DATA;
        CK_BBOOL yes = CK_TRUE, priv = private ? CK_TRUE : CK_FALSE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &priv, sizeof priv },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_APPLICATION, (void *) application, strlen(application) },
                { CKA_VALUE, (void *) "stored-in-clear", strlen("stored-in-clear") }, /* unless private */
        };
        CK_OBJECT_HANDLE o;

        assert_int_equal(raw->m->C_CreateObject(raw->session, t, ELEMENTSOF(t), &o), CKR_OK);
        return o;
}

static void put(struct hsm *h, const char *label, const char *value) {
        struct secbuf *b = secbuf_of(value, strlen(value));

        assert_int_equal(hsm_write_secret(h, label, b, NULL), 0);
        secbuf_free(b);
}

static void expect_secret(struct hsm *h, const char *uri, const void *value, size_t len) {
        struct secbuf *got = NULL;
        int r;

        r = hsm_read_secret(h, uri, &got);
        if (r < 0) {
                char *e = hsm_last_error(h);
                print_error("hsm_read_secret(%s): %d %s\n", uri, r, e ?: "");
                free(e);
        }
        assert_int_equal(r, 0);
        assert_non_null(got);
        assert_int_equal(got->len, len);
        assert_memory_equal(got->data, value, len);
        assert_int_equal(got->data[len], '\0');
        secbuf_free(got);
}

static void expect_last_error(struct hsm *h, const char *needle) {
        char *e = hsm_last_error(h);

        if (!e || !strstr(e, needle))
                print_error("last error \"%s\" lacks \"%s\"\n", e ?: "(null)", needle);
        assert_non_null(e);
        assert_non_null(strstr(e, needle));
        free(e);
}

/* ---- fixture ---- */

static int group_setup(void **state) {
        char conf[300], tokens[300], buf[700];
        char *init1[] = { "softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", USER_PIN,
                          "--so-pin", "5678", NULL };
        char *init2[] = { "softhsm2-util", "--init-token", "--free", "--label", TOKEN2, "--pin", USER_PIN,
                          "--so-pin", "5678", NULL };

        if (access(SOFTHSM_MODULE, R_OK) < 0) {
                print_error("%s missing: install softhsm2\n", SOFTHSM_MODULE);
                return -1;
        }
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(tokens, sizeof tokens, "%s/tokens", tmpdir);
        if (mkdir(tokens, 0700) < 0)
                return -1;
        snprintf(conf, sizeof conf, "%s/softhsm2.conf", tmpdir);
        snprintf(buf, sizeof buf, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 tokens);
        write_file(conf, buf, 0600);
        setenv("SOFTHSM2_CONF", conf, 1);
        unsetenv("CREDENTIALS_DIRECTORY");

        if (run(init1) < 0 || run(init2) < 0) {
                print_error("softhsm2-util --init-token failed\n");
                return -1;
        }
        snprintf(pin_path, sizeof pin_path, "%s/pin", tmpdir);
        write_file(pin_path, USER_PIN "\n", 0600);
        snprintf(pin_source, sizeof pin_source, "file:%s", pin_path);

        struct hsm_params p = params_default();
        if (hsm_open(&p, &keeper, NULL) < 0) {
                print_error("cannot open the token\n");
                return -1;
        }
        return 0;
}

static int group_teardown(void **state) {
        char *rm[] = { "rm", "-rf", "--", tmpdir, NULL };

        hsm_close(keeper);
        return run(rm) < 0 ? -1 : 0;
}

/* ---- tests ---- */

static void test_errno_from_ckr(void **state) {
        assert_int_equal(hsm_errno_from_ckr(CKR_OK), 0);
        assert_int_equal(hsm_errno_from_ckr(CKR_PIN_INCORRECT), -EACCES);
        assert_int_equal(hsm_errno_from_ckr(CKR_PIN_INVALID), -EACCES);
        assert_int_equal(hsm_errno_from_ckr(CKR_PIN_LEN_RANGE), -EACCES);
        assert_int_equal(hsm_errno_from_ckr(CKR_PIN_EXPIRED), -EACCES);
        assert_int_equal(hsm_errno_from_ckr(CKR_PIN_LOCKED), -EACCES);
        assert_int_equal(hsm_errno_from_ckr(CKR_TOKEN_NOT_PRESENT), -ENODEV);
        assert_int_equal(hsm_errno_from_ckr(CKR_DEVICE_REMOVED), -ENODEV);
        assert_int_equal(hsm_errno_from_ckr(CKR_SESSION_HANDLE_INVALID), -ENODEV);
        assert_int_equal(hsm_errno_from_ckr(CKR_SESSION_CLOSED), -ENODEV);
        assert_int_equal(hsm_errno_from_ckr(CKR_USER_NOT_LOGGED_IN), -ENODEV);
        assert_int_equal(hsm_errno_from_ckr(CKR_GENERAL_ERROR), -EIO);
        assert_int_equal(hsm_errno_from_ckr(CKR_DEVICE_ERROR), -EIO);
        assert_int_equal(hsm_errno_from_ckr(0x80001234UL), -EIO);

        assert_string_equal(hsm_ckr_name(CKR_OK), "CKR_OK");
        assert_string_equal(hsm_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
        assert_string_equal(hsm_ckr_name(CKR_SESSION_HANDLE_INVALID), "CKR_SESSION_HANDLE_INVALID");
        assert_string_equal(hsm_ckr_name(0x80001234UL), "CKR_0x80001234");
}

static void test_default_dirs(void **state) {
        char *real = realpath(SOFTHSM_MODULE, NULL);
        bool found = false;

        assert_non_null(real);
        *strrchr(real, '/') = '\0';
        /* Debian's /usr/lib/softhsm/libsofthsm2.so is a symlink into the multiarch
         * directory; the default list must allow where it really is. */
        for (const char *const *d = hsm_default_module_dirs; *d; d++) {
                char *rd = realpath(*d, NULL);
                if (rd && strcmp(rd, real) == 0)
                        found = true;
                free(rd);
        }
        assert_true(found);
        free(real);
}

static void test_open_close(void **state) {
        struct hsm *h = open_default();

        assert_null(hsm_last_error(h));
        hsm_close(h);
        hsm_close(NULL);

        /* module-path= in the URI instead of [agent] module. */
        struct hsm_params p = params_default();
        p.module = NULL;
        p.token_uri = "pkcs11:token=" TOKEN "?module-path=" SOFTHSM_MODULE;
        h = NULL;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);

        /* Both, naming the same file through different paths. */
        char *real = realpath(SOFTHSM_MODULE, NULL), uri[512];
        assert_non_null(real);
        snprintf(uri, sizeof uri, "pkcs11:token=%s?module-path=%s", TOKEN, real);
        p.module = SOFTHSM_MODULE;
        p.token_uri = uri;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);
        free(real);
}

static void test_round_trip_every_byte(void **state) {
        struct hsm *h = open_default();
        unsigned char v[256];
        struct secbuf *b;
        char *uri = NULL;

        /* Bytes 1 … 255. */
        for (int i = 0; i < 255; i++)
                v[i] = (unsigned char) (i + 1);
        b = secbuf_of(v, 255);
        assert_int_equal(hsm_write_secret(h, "Billing_API.Batch", b, &uri), 0);
        secbuf_free(b);
        assert_string_equal(uri, "pkcs11:token=" TOKEN ";object=Billing_API.Batch;type=data");
        expect_secret(h, uri, v, 255);
        expect_secret(h, "pkcs11:object=Billing_API.Batch", v, 255); /* token and type optional */
        free(uri);

        /* hsm/ is byte-transparent: a NUL inside the value round-trips too, counted by
         * secbuf.len (credctl is what refuses control characters in client secrets). */
        for (int i = 0; i < 256; i++)
                v[i] = (unsigned char) i;
        b = secbuf_of(v, 256);
        assert_int_equal(hsm_write_secret(h, "binary.with_nul", b, NULL), 0);
        secbuf_free(b);
        expect_secret(h, "pkcs11:token=" TOKEN ";object=binary.with_nul;type=data", v, 256);

        /* A second handle sees the same objects. */
        struct hsm *h2 = open_default();
        expect_secret(h2, "pkcs11:token=" TOKEN ";object=binary.with_nul;type=data", v, 256);
        hsm_close(h2);

        assert_int_equal(hsm_remove_secret(h, "Billing_API.Batch"), 0);
        assert_int_equal(hsm_remove_secret(h, "binary.with_nul"), 0);
        hsm_close(h);
}

static void test_written_attributes(void **state) {
        struct hsm *h = open_default();
        struct raw raw;
        CK_OBJECT_HANDLE o;
        CK_BBOOL token = 0, priv = 0, modifiable = 1;
        char app[32] = "";
        CK_ATTRIBUTE a[] = {
                { CKA_TOKEN, &token, sizeof token },
                { CKA_PRIVATE, &priv, sizeof priv },
                { CKA_MODIFIABLE, &modifiable, sizeof modifiable },
                { CKA_APPLICATION, app, sizeof app - 1 },
        };

        put(h, "attrs.check", "value");
        raw_open(&raw, true);
        o = raw_find(&raw, "attrs.check");
        assert_int_equal(raw.m->C_GetAttributeValue(raw.session, o, a, ELEMENTSOF(a)), CKR_OK);
        assert_int_equal(token, CK_TRUE);
        assert_int_equal(priv, CK_TRUE);
        assert_int_equal(modifiable, CK_FALSE);
        app[a[3].ulValueLen] = '\0';
        assert_string_equal(app, HSM_APPLICATION);
        raw_close(&raw);

        assert_int_equal(hsm_remove_secret(h, "attrs.check"), 0);
        hsm_close(h);
}

static void test_duplicate(void **state) {
        struct hsm *h = open_default();
        struct secbuf *b = secbuf_of("second", 6);

        put(h, "dup.label", "first");
        assert_int_equal(hsm_write_secret(h, "dup.label", b, NULL), -EEXIST);
        expect_last_error(h, "already exists");
        expect_secret(h, "pkcs11:object=dup.label", "first", 5); /* unchanged */
        assert_int_equal(hsm_remove_secret(h, "dup.label"), 0);
        assert_int_equal(hsm_write_secret(h, "dup.label", b, NULL), 0);
        expect_secret(h, "pkcs11:object=dup.label", "second", 6);
        assert_int_equal(hsm_remove_secret(h, "dup.label"), 0);
        secbuf_free(b);
        hsm_close(h);
}

static void test_list_and_remove(void **state) {
        struct hsm *h = open_default();
        struct raw raw;
        CK_OBJECT_HANDLE other;
        char **labels = NULL;

        put(h, "zeta.one", "1");
        put(h, "alpha.two", "2");
        put(h, "Mid.three", "3");
        raw_open(&raw, true);
        other = raw_create(&raw, "not.ours", "some-other-app", false);

        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        assert_non_null(labels);
        assert_string_equal(labels[0], "Mid.three");
        assert_string_equal(labels[1], "alpha.two");
        assert_string_equal(labels[2], "zeta.one");
        assert_null(labels[3]);
        assert_false(strv_contains(labels, "not.ours"));
        strv_free(labels);

        /* remove only touches credagent's own objects. */
        assert_int_equal(hsm_remove_secret(h, "not.ours"), -ENOENT);
        expect_last_error(h, "not.ours");
        assert_int_equal(hsm_remove_secret(h, "alpha.two"), 0);
        assert_int_equal(hsm_remove_secret(h, "alpha.two"), -ENOENT);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=alpha.two", &(struct secbuf *) { NULL }), -ENOENT);

        labels = NULL;
        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        assert_string_equal(labels[0], "Mid.three");
        assert_string_equal(labels[1], "zeta.one");
        assert_null(labels[2]);
        strv_free(labels);

        assert_int_equal(hsm_remove_secret(h, "zeta.one"), 0);
        assert_int_equal(hsm_remove_secret(h, "Mid.three"), 0);
        labels = NULL;
        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        assert_null(labels[0]);
        strv_free(labels);

        assert_int_equal(raw.m->C_DestroyObject(raw.session, other), CKR_OK);
        raw_close(&raw);
        hsm_close(h);
}

static void test_object_uris(void **state) {
        struct hsm *h = open_default();
        struct secbuf *got = NULL;
        char uri[600], *real;

        put(h, "uri.test", "v");
        assert_int_equal(hsm_read_secret(h, "pkcs11:token=" TOKEN ";object=missing;type=data", &got), -ENOENT);
        expect_last_error(h, "missing");
        /* The object exists, but the URI names another token. */
        assert_int_equal(hsm_read_secret(h, "pkcs11:token=" TOKEN2 ";object=uri.test", &got), -ENOENT);
        assert_int_equal(hsm_read_secret(h, "pkcs11:serial=0000;object=uri.test", &got), -ENOENT);
        /* Matching token attributes are fine. */
        expect_secret(h, "pkcs11:manufacturer=SoftHSM%20project;token=" TOKEN ";object=uri.test;type=data", "v", 1);
        /* module-path= must be the open module. */
        real = realpath(SOFTHSM_MODULE, NULL);
        snprintf(uri, sizeof uri, "pkcs11:object=uri.test?module-path=%s", real);
        expect_secret(h, uri, "v", 1);
        free(real);
        snprintf(uri, sizeof uri, "pkcs11:object=uri.test?module-path=%s", pin_path); /* another file */
        assert_int_equal(hsm_read_secret(h, uri, &got), -ENOENT);
        expect_last_error(h, "open module");

        assert_int_equal(hsm_read_secret(h, "pkcs11:token=" TOKEN ";object=uri.test;type=cert", &got), -EINVAL);
        assert_int_equal(hsm_read_secret(h, "pkcs11:token=" TOKEN ";type=data", &got), -EINVAL);
        expect_last_error(h, "no object=");
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test;frobnicate=1", &got), -EINVAL);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test?vendor-thing=1", &got), -EINVAL);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test?module-name=softhsm2", &got), -EINVAL);
        assert_int_equal(hsm_read_secret(h, "https://example.invalid/", &got), -EINVAL);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test%zz", &got), -EINVAL);
        /* A PIN in the URI is refused and never repeated in the message. */
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test?pin-value=s3cr3tpin", &got), -EINVAL);
        char *e = hsm_last_error(h);
        assert_non_null(e);
        assert_null(strstr(e, "s3cr3tpin"));
        assert_non_null(strstr(e, "pin-value"));
        free(e);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=uri.test;pin%2dvalue=s3cr3tpin", &got), -EINVAL);
        e = hsm_last_error(h);
        assert_non_null(e);
        assert_null(strstr(e, "s3cr3tpin"));
        free(e);
        assert_null(got);

        assert_int_equal(hsm_remove_secret(h, "uri.test"), 0);
        hsm_close(h);
}

static void test_labels(void **state) {
        struct hsm *h = open_default();
        const char *odd = "a;b/c%d?e=f&g h\"'#";
        char *uri = NULL, long_label[130];
        struct secbuf *b = secbuf_of("x", 1);

        assert_int_equal(hsm_write_secret(h, odd, b, &uri), 0);
        /* The label is percent-encoded in the URI and comes back intact. */
        assert_null(strchr(uri + strlen("pkcs11:"), '?'));
        assert_null(strstr(uri, "b/c"));
        expect_secret(h, uri, "x", 1);
        free(uri);
        assert_int_equal(hsm_remove_secret(h, odd), 0);

        memset(long_label, 'L', 128);
        long_label[128] = '\0';
        assert_int_equal(hsm_write_secret(h, long_label, b, NULL), 0);
        assert_int_equal(hsm_remove_secret(h, long_label), 0);
        long_label[128] = 'L';
        long_label[129] = '\0';
        assert_int_equal(hsm_write_secret(h, long_label, b, NULL), -EINVAL);

        assert_int_equal(hsm_write_secret(h, "", b, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, NULL, b, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, "tab\there", b, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, " lead", b, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, "trail ", b, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, "caf\xc3\xa9", b, NULL), -EINVAL);
        assert_int_equal(hsm_remove_secret(h, "new\nline"), -EINVAL);
        secbuf_free(b);
        hsm_close(h);
}

static void test_sizes(void **state) {
        struct hsm *h = open_default();
        struct secbuf *b = secbuf_new(HSM_SECRET_MAX + 1);
        struct secbuf *empty = secbuf_new(1);

        assert_non_null(b);
        for (size_t i = 0; i < HSM_SECRET_MAX; i++)
                b->data[i] = (unsigned char) ('a' + i % 26);
        b->len = HSM_SECRET_MAX;
        assert_int_equal(hsm_write_secret(h, "size.max", b, NULL), 0);
        expect_secret(h, "pkcs11:object=size.max", b->data, HSM_SECRET_MAX);
        assert_int_equal(hsm_remove_secret(h, "size.max"), 0);

        b->data[HSM_SECRET_MAX] = 'z';
        b->len = HSM_SECRET_MAX + 1;
        assert_int_equal(hsm_write_secret(h, "size.over", b, NULL), -EMSGSIZE);
        assert_int_equal(hsm_write_secret(h, "size.empty", empty, NULL), -EINVAL);
        assert_int_equal(hsm_write_secret(h, "size.null", NULL, NULL), -EINVAL);
        secbuf_free(b);
        secbuf_free(empty);
        hsm_close(h);
}

static void test_wrong_pin_is_sticky(void **state) {
        struct hsm *h = open_default();
        struct secbuf *got = NULL;
        char **labels = NULL;
        struct raw raw;
        CK_TOKEN_INFO ti;

        put(h, "pin.test", "v");
        hsm_close(h);

        write_file(pin_path, "0000\n", 0600);
        h = open_default(); /* the PIN is not tried at open */
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=pin.test", &got), -EACCES);
        expect_last_error(h, "CKR_PIN_INCORRECT");
        raw_open(&raw, false);
        assert_int_equal(raw.m->C_GetTokenInfo(raw.slot, &ti), CKR_OK);
        assert_true(ti.flags & CKF_USER_PIN_COUNT_LOW); /* SoftHSM2 marks a failed login */

        /* Fix the PIN file: the handle must not try again, or it would now succeed (and
         * SoftHSM2 would clear CKF_USER_PIN_COUNT_LOW). */
        write_file(pin_path, USER_PIN "\n", 0600);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=pin.test", &got), -EACCES);
        expect_last_error(h, "refused the PIN");
        assert_int_equal(hsm_list_secrets(h, &labels), -EACCES);
        assert_int_equal(hsm_remove_secret(h, "pin.test"), -EACCES);
        assert_int_equal(hsm_write_secret(h, "pin.other", &(struct secbuf) { .data = (unsigned char *) "x", .len = 1 },
                                          NULL), -EACCES);
        assert_int_equal(raw.m->C_GetTokenInfo(raw.slot, &ti), CKR_OK);
        assert_true(ti.flags & CKF_USER_PIN_COUNT_LOW);
        assert_null(got);
        assert_null(labels);
        hsm_close(h);

        /* A new handle (a reload) uses the fixed PIN. */
        h = open_default();
        expect_secret(h, "pkcs11:object=pin.test", "v", 1);
        assert_int_equal(raw.m->C_GetTokenInfo(raw.slot, &ti), CKR_OK);
        assert_false(ti.flags & CKF_USER_PIN_COUNT_LOW);
        assert_int_equal(hsm_remove_secret(h, "pin.test"), 0);
        raw_close(&raw);
        hsm_close(h);
}

static void test_pin_source(void **state) {
        struct hsm_params p = params_default();
        char path[300], src[320], *e;
        struct hsm *h;

        /* Readable by others. */
        snprintf(path, sizeof path, "%s/pin-0644", tmpdir);
        write_file(path, USER_PIN, 0644);
        snprintf(src, sizeof src, "file:%s", path);
        p.pin_source = src;
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "mode 0644"));
        assert_null(strstr(e, USER_PIN));
        free(e);

        /* Readable by the group. */
        assert_int_equal(chmod(path, 0640), 0);
        free(open_fails(&p, -EINVAL));

        /* A symlink to a good file. */
        snprintf(path, sizeof path, "%s/pin-link", tmpdir);
        (void) unlink(path);
        assert_int_equal(symlink(pin_path, path), 0);
        snprintf(src, sizeof src, "file:%s", path);
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "symbolic link"));
        free(e);

        /* Owned by someone else (needs root to set up). */
        if (geteuid() == 0) {
                snprintf(path, sizeof path, "%s/pin-other", tmpdir);
                write_file(path, USER_PIN, 0600);
                assert_int_equal(chown(path, 65534, 65534), 0);
                snprintf(src, sizeof src, "file:%s", path);
                e = open_fails(&p, -EINVAL);
                assert_non_null(strstr(e, "owned by uid 65534"));
                free(e);
        }

        /* Missing, relative, a directory, an unknown scheme. */
        snprintf(src, sizeof src, "file:%s/no-such-pin", tmpdir);
        free(open_fails(&p, -EINVAL));
        p.pin_source = "file:pin";
        free(open_fails(&p, -EINVAL));
        snprintf(src, sizeof src, "file:%s", tmpdir);
        p.pin_source = src;
        free(open_fails(&p, -EINVAL));
        p.pin_source = "env:PIN";
        free(open_fails(&p, -EINVAL));
        p.pin_source = NULL;
        free(open_fails(&p, -EINVAL));

        /* "\r\n" is stripped; an empty file is refused when the PIN is needed. */
        snprintf(path, sizeof path, "%s/pin-crlf", tmpdir);
        write_file(path, USER_PIN "\r\n", 0600);
        snprintf(src, sizeof src, "file:%s", path);
        p.pin_source = src;
        h = NULL;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        char **labels = NULL;
        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        strv_free(labels);
        hsm_close(h);

        snprintf(path, sizeof path, "%s/pin-empty", tmpdir);
        write_file(path, "\n", 0600);
        snprintf(src, sizeof src, "file:%s", path);
        h = NULL;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        labels = NULL;
        assert_int_equal(hsm_list_secrets(h, &labels), -EINVAL);
        expect_last_error(h, "empty");
        hsm_close(h);
}

static void test_pin_credential(void **state) {
        struct hsm_params p = params_default();
        char dir[300], path[350];
        struct hsm *h = NULL;
        char **labels = NULL;

        p.pin_source = "credential:credagent-pin";
        unsetenv("CREDENTIALS_DIRECTORY");
        free(open_fails(&p, -EINVAL));

        snprintf(dir, sizeof dir, "%s/credentials", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        snprintf(path, sizeof path, "%s/credagent-pin", dir);
        write_file(path, USER_PIN "\n", 0400);
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        strv_free(labels);
        hsm_close(h);

        /* As systemd leaves it for a non-root service: root-owned 0400 plus an ACL whose
         * mask shows as the group read bit. */
        assert_int_equal(chmod(path, 0440), 0);
        h = NULL;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);

        assert_int_equal(chmod(path, 0444), 0);
        free(open_fails(&p, -EINVAL));
        assert_int_equal(chmod(path, 0460), 0);
        free(open_fails(&p, -EINVAL));

        p.pin_source = "credential:../pin";
        free(open_fails(&p, -EINVAL));
        p.pin_source = "credential:";
        free(open_fails(&p, -EINVAL));
        unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_module_allow_list(void **state) {
        struct hsm_params p = params_default();
        char *real, *real_dir, link_dir[300], link_mod[350], dir_link[300];
        const char *only_pkcs11[] = { "/usr/lib/pkcs11", tmpdir, NULL };
        const char *dirs[3] = {};
        struct hsm *h = NULL;
        char *e;

        real = realpath(SOFTHSM_MODULE, NULL);
        assert_non_null(real);
        real_dir = strdup(real);
        *strrchr(real_dir, '/') = '\0';

        /* Outside the allow-list. */
        p.module_dirs = only_pkcs11;
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "not in an allowed module directory"));
        free(e);

        /* A symlink inside an allowed directory does not make its target allowed. */
        snprintf(link_dir, sizeof link_dir, "%s/modules", tmpdir);
        assert_int_equal(mkdir(link_dir, 0700), 0);
        snprintf(link_mod, sizeof link_mod, "%s/libsofthsm2.so", link_dir);
        assert_int_equal(symlink(real, link_mod), 0);
        dirs[0] = link_dir;
        p.module_dirs = dirs;
        p.module = link_mod;
        free(open_fails(&p, -EINVAL));

        /* The real directory, named through a symlink, is allowed. */
        snprintf(dir_link, sizeof dir_link, "%s/dir-link", tmpdir);
        assert_int_equal(symlink(real_dir, dir_link), 0);
        dirs[1] = dir_link;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);

        /* Not there, relative, none given, two that disagree. */
        p.module_dirs = NULL;
        p.module = "/usr/lib/softhsm/no-such-module.so";
        free(open_fails(&p, -ENOENT));
        p.module = "libsofthsm2.so";
        free(open_fails(&p, -EINVAL));
        p.module = NULL;
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "module"));
        free(e);
        p.module = SOFTHSM_MODULE;
        char uri[400];
        snprintf(uri, sizeof uri, "pkcs11:token=%s?module-path=%s", TOKEN, pin_path); /* another file */
        p.token_uri = uri;
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "different modules"));
        free(e);

        free(real);
        free(real_dir);
}

static void test_token_uri(void **state) {
        struct hsm_params p = params_default();
        struct hsm *h = NULL;
        char *e;

        p.token_uri = "pkcs11:token=" TOKEN ";frobnicate=yes";
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "not recognised"));
        free(e);
        p.token_uri = "pkcs11:token=" TOKEN "?vendor-attr=1";
        free(open_fails(&p, -EINVAL));
        p.token_uri = "pkcs11:token=" TOKEN ";object=x";
        free(open_fails(&p, -EINVAL));
        p.token_uri = "pkcs11:token=" TOKEN "?module-name=softhsm2";
        free(open_fails(&p, -EINVAL));
        p.token_uri = "pkcs11:token=" TOKEN "?pin-value=987654";
        e = open_fails(&p, -EINVAL);
        assert_null(strstr(e, "987654"));
        free(e);
        p.token_uri = "pkcs11:token=" TOKEN ";pin-source=file:/etc/passwd";
        free(open_fails(&p, -EINVAL));
        p.token_uri = "pkcs12:token=" TOKEN;
        free(open_fails(&p, -EINVAL));
        p.token_uri = NULL;
        free(open_fails(&p, -EINVAL));

        p.token_uri = "pkcs11:token=no-such-token";
        e = open_fails(&p, -ENOENT);
        assert_non_null(strstr(e, "no-such-token"));
        free(e);

        /* Two initialized tokens match; the uninitialized free slot never counts. */
        p.token_uri = "pkcs11:manufacturer=SoftHSM%20project";
        e = open_fails(&p, -EINVAL);
        assert_non_null(strstr(e, "2 tokens match"));
        free(e);
        p.token_uri = "pkcs11:";
        free(open_fails(&p, -EINVAL));

        /* Slot and module attributes narrow it down. */
        p.token_uri = "pkcs11:manufacturer=SoftHSM%20project;token=" TOKEN2;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);
        p.token_uri = "pkcs11:library-manufacturer=SoftHSM;token=" TOKEN;
        assert_int_equal(hsm_open(&p, &h, NULL), 0);
        hsm_close(h);
        p.token_uri = "pkcs11:library-manufacturer=Nobody;token=" TOKEN;
        free(open_fails(&p, -ENOENT));
}

static void test_non_private_refused(void **state) {
        struct hsm *h = open_default();
        struct secbuf *got = NULL;
        struct raw raw;
        CK_OBJECT_HANDLE o;

        raw_open(&raw, true);
        o = raw_create(&raw, "public.object", HSM_APPLICATION, false);
        assert_int_equal(hsm_read_secret(h, "pkcs11:token=" TOKEN ";object=public.object;type=data", &got),
                         -EACCES);
        expect_last_error(h, "not private");
        assert_null(got);
        /* hsm_write_secret() will not add a second object with that label ... */
        struct secbuf *b = secbuf_of("x", 1);
        assert_int_equal(hsm_write_secret(h, "public.object", b, NULL), -EEXIST);
        secbuf_free(b);
        assert_int_equal(raw.m->C_DestroyObject(raw.session, o), CKR_OK);

        /* ... but another tool may have: two objects with one label are ambiguous. */
        o = raw_create(&raw, "twice", HSM_APPLICATION, true);
        CK_OBJECT_HANDLE o2 = raw_create(&raw, "twice", HSM_APPLICATION, true);
        CK_OBJECT_HANDLE o3 = raw_create(&raw, "twice", HSM_APPLICATION, true);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=twice", &got), -EINVAL);
        expect_last_error(h, "more than one");
        assert_int_equal(raw.m->C_DestroyObject(raw.session, o3), CKR_OK);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=twice", &got), -EINVAL);
        assert_int_equal(raw.m->C_DestroyObject(raw.session, o2), CKR_OK);
        expect_secret(h, "pkcs11:object=twice", "stored-in-clear", 15);
        assert_int_equal(hsm_remove_secret(h, "twice"), 0);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=twice", &got), -ENOENT);
        raw_close(&raw);
        hsm_close(h);
}

static void test_session_loss(void **state) {
        struct hsm *h = open_default();
        struct raw raw;
        CK_SESSION_INFO si;

        put(h, "loss.test", "still here");
        expect_secret(h, "pkcs11:object=loss.test", "still here", 10);

        /* Close every session of the token, hsm's included, and log the token out. */
        raw_open(&raw, false);
        assert_int_equal(raw.m->C_CloseAllSessions(raw.slot), CKR_OK);
        assert_int_equal(raw.m->C_GetSessionInfo(raw.session, &si), CKR_SESSION_HANDLE_INVALID);

        /* The next call reopens and logs in again, within the call. */
        expect_secret(h, "pkcs11:object=loss.test", "still here", 10);
        assert_null(hsm_last_error(h));

        /* Again, with the PIN file made unusable in between: the relogin reads the PIN
         * source again and reports it. */
        assert_int_equal(raw.m->C_OpenSession(raw.slot, CKF_SERIAL_SESSION, NULL, NULL, &raw.session), CKR_OK);
        assert_int_equal(raw.m->C_CloseAllSessions(raw.slot), CKR_OK);
        assert_int_equal(chmod(pin_path, 0644), 0);
        assert_int_equal(hsm_read_secret(h, "pkcs11:object=loss.test", &(struct secbuf *) { NULL }), -EINVAL);
        expect_last_error(h, "mode 0644");
        assert_int_equal(chmod(pin_path, 0600), 0);
        expect_secret(h, "pkcs11:object=loss.test", "still here", 10);

        /* Logged out behind our back, session still open: a search would silently
         * find no private object; the handle notices and logs in again. */
        assert_int_equal(raw.m->C_OpenSession(raw.slot, CKF_SERIAL_SESSION, NULL, NULL, &raw.session), CKR_OK);
        assert_int_equal(raw.m->C_Logout(raw.session), CKR_OK);
        expect_secret(h, "pkcs11:object=loss.test", "still here", 10);
        assert_int_equal(raw.m->C_CloseSession(raw.session), CKR_OK);

        /* Session loss during a write and a list. */
        assert_int_equal(raw.m->C_OpenSession(raw.slot, CKF_SERIAL_SESSION, NULL, NULL, &raw.session), CKR_OK);
        assert_int_equal(raw.m->C_CloseAllSessions(raw.slot), CKR_OK);
        put(h, "loss.second", "x");
        assert_int_equal(raw.m->C_OpenSession(raw.slot, CKF_SERIAL_SESSION, NULL, NULL, &raw.session), CKR_OK);
        assert_int_equal(raw.m->C_CloseAllSessions(raw.slot), CKR_OK);
        char **labels = NULL;
        assert_int_equal(hsm_list_secrets(h, &labels), 0);
        assert_true(strv_contains(labels, "loss.test"));
        assert_true(strv_contains(labels, "loss.second"));
        strv_free(labels);

        assert_int_equal(hsm_remove_secret(h, "loss.test"), 0);
        assert_int_equal(hsm_remove_secret(h, "loss.second"), 0);
        assert_int_equal(raw.m->C_OpenSession(raw.slot, CKF_SERIAL_SESSION, NULL, NULL, &raw.session), CKR_OK);
        raw_close(&raw);
        hsm_close(h);
}

struct thread_arg {
        struct hsm *h;
        int failures;
};

static void *reader(void *userdata) {
        struct thread_arg *a = userdata;

        for (int i = 0; i < 25; i++) {
                struct secbuf *got = NULL;

                if (hsm_read_secret(a->h, "pkcs11:object=thread.test", &got) < 0 || got->len != 6 ||
                    memcmp(got->data, "shared", 6) != 0)
                        a->failures++;
                secbuf_free(got);
        }
        return NULL;
}

static void test_threads(void **state) {
        struct hsm *h = open_default();
        pthread_t t[4];
        struct thread_arg a[4];

        put(h, "thread.test", "shared");
        for (int i = 0; i < 4; i++) {
                a[i] = (struct thread_arg) { .h = h };
                assert_int_equal(pthread_create(&t[i], NULL, reader, &a[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(a[i].failures, 0);
        }
        assert_int_equal(hsm_remove_secret(h, "thread.test"), 0);
        hsm_close(h);
}


/* ---- signing keys ---- */

/* Verifies SIG over DATA with PUB as a JWS of ALG would be verified: ES256 turns the raw
 * r||s into DER first.  Returns OpenSSL's verdict (1 good, 0 bad). */
static int jws_verify(EVP_PKEY *pub, enum hsm_alg alg, const void *data, size_t len, const uint8_t *sig, size_t sig_len) {
        unsigned char der[128], *p = der;
        const unsigned char *check = sig;
        size_t check_len = sig_len;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        int ok;

        assert_non_null(md);
        if (alg == HSM_ALG_ES256) {
                ECDSA_SIG *es = ECDSA_SIG_new();
                int n;

                assert_int_equal(sig_len, 64);
                assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
                n = i2d_ECDSA_SIG(es, &p);
                assert_true(n > 0);
                ECDSA_SIG_free(es);
                check = der;
                check_len = (size_t) n;
        }
        assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub), 1);
        if (alg == HSM_ALG_PS256) {
                assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 1);
        }
        ok = EVP_DigestVerify(md, check, check_len, data, len);
        EVP_MD_CTX_free(md);
        return ok;
}

static char *generate(struct hsm *h, const char *label, enum hsm_alg alg, EVP_PKEY **ret_pub) {
        char *uri = NULL;
        int r = hsm_generate_key(h, label, alg, &uri, ret_pub);

        if (r < 0) {
                char *e = hsm_last_error(h);
                print_error("hsm_generate_key(%s): %d %s\n", label, r, e ?: "");
                free(e);
        }
        assert_int_equal(r, 0);
        assert_non_null(uri);
        return uri;
}

static void test_alg_names(void **state) {
        enum hsm_alg a = HSM_ALG_NONE;

        assert_string_equal(hsm_alg_name(HSM_ALG_ES256), "ES256");
        assert_string_equal(hsm_alg_name(HSM_ALG_RS256), "RS256");
        assert_string_equal(hsm_alg_name(HSM_ALG_PS256), "PS256");
        assert_null(hsm_alg_name(HSM_ALG_NONE));
        assert_null(hsm_alg_name(_HSM_ALG_MAX));
        assert_int_equal(hsm_alg_from_name("PS256", &a), 0);
        assert_int_equal(a, HSM_ALG_PS256);
        assert_int_equal(hsm_alg_from_name("es256", &a), -EINVAL);
        assert_int_equal(hsm_alg_from_name("HS256", &a), -EINVAL);
        assert_int_equal(hsm_alg_from_name("none", &a), -EINVAL);
}

static void test_es256_sign_verify(void **state) {
        static const char input[] = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0";
        struct hsm *h = open_default();
        EVP_PKEY *pub = NULL;
        char *uri = generate(h, "Sign.Es", HSM_ALG_ES256, &pub);
        uint8_t sig[HSM_SIGNATURE_MAX], sig2[HSM_SIGNATURE_MAX];
        size_t n = sizeof sig, n2 = sizeof sig2;
        enum hsm_alg a = HSM_ALG_NONE;

        assert_string_equal(uri, "pkcs11:token=" TOKEN ";object=Sign.Es;type=private");
        assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
        assert_int_equal(EVP_PKEY_get_bits(pub), 256);

        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_NONE, &a), 0);
        assert_int_equal(a, HSM_ALG_ES256);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_ES256, &a), 0);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_RS256, &a), -EOPNOTSUPP);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_PS256, &a), -EOPNOTSUPP);
        expect_last_error(h, "signs ES256");

        assert_int_equal(hsm_sign(h, uri, HSM_ALG_ES256, input, strlen(input), sig, &n), 0);
        assert_int_equal(n, 64);
        assert_int_equal(jws_verify(pub, HSM_ALG_ES256, input, strlen(input), sig, n), 1);
        /* Another input does not verify; ECDSA is randomised, so two signatures differ. */
        assert_int_equal(jws_verify(pub, HSM_ALG_ES256, "x", 1, sig, n), 0);
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_ES256, input, strlen(input), sig2, &n2), 0);
        assert_int_equal(jws_verify(pub, HSM_ALG_ES256, input, strlen(input), sig2, n2), 1);
        assert_memory_not_equal(sig, sig2, 64);
        /* RS256 with an EC key: refused, nothing signed. */
        n = sizeof sig;
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_RS256, input, strlen(input), sig, &n), -EOPNOTSUPP);
        assert_int_equal(n, sizeof sig);
        /* Too little room: refused before signing. */
        n = 63;
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_ES256, input, strlen(input), sig, &n), -EMSGSIZE);
        assert_int_equal(n, 63);
        /* The same URI without type=, and with the public key's id, still names it. */
        n = sizeof sig;
        assert_int_equal(hsm_sign(h, "pkcs11:object=Sign.Es", HSM_ALG_ES256, "", 0, sig, &n), 0);
        assert_int_equal(jws_verify(pub, HSM_ALG_ES256, "", 0, sig, n), 1);

        EVP_PKEY_free(pub);
        free(uri);
        hsm_close(h);
}

static void test_rs256_ps256_sign_verify(void **state) {
        static const char input[] = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0";
        struct hsm *h = open_default();
        EVP_PKEY *pub = NULL;
        char *uri = generate(h, "Sign.Rs", HSM_ALG_RS256, &pub);
        uint8_t sig[HSM_SIGNATURE_MAX], sig2[HSM_SIGNATURE_MAX];
        size_t n = sizeof sig, n2 = sizeof sig2;
        enum hsm_alg a = HSM_ALG_NONE;

        assert_string_equal(uri, "pkcs11:token=" TOKEN ";object=Sign.Rs;type=private");
        assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
        assert_int_equal(EVP_PKEY_get_bits(pub), HSM_RSA_BITS);

        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_NONE, &a), 0);
        assert_int_equal(a, HSM_ALG_RS256);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_PS256, &a), 0); /* SoftHSM2 offers PSS */
        assert_int_equal(a, HSM_ALG_PS256);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_ES256, &a), -EOPNOTSUPP);

        assert_int_equal(hsm_sign(h, uri, HSM_ALG_RS256, input, strlen(input), sig, &n), 0);
        assert_int_equal(n, HSM_RSA_BITS / 8);
        assert_int_equal(jws_verify(pub, HSM_ALG_RS256, input, strlen(input), sig, n), 1);
        assert_int_equal(jws_verify(pub, HSM_ALG_PS256, input, strlen(input), sig, n), 0);
        /* PKCS #1 v1.5 is deterministic. */
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_RS256, input, strlen(input), sig2, &n2), 0);
        assert_memory_equal(sig, sig2, n);

        n = sizeof sig;
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_PS256, input, strlen(input), sig, &n), 0);
        assert_int_equal(n, HSM_RSA_BITS / 8);
        assert_int_equal(jws_verify(pub, HSM_ALG_PS256, input, strlen(input), sig, n), 1);
        assert_int_equal(jws_verify(pub, HSM_ALG_RS256, input, strlen(input), sig, n), 0);

        n = HSM_RSA_BITS / 8 - 1;
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_RS256, input, strlen(input), sig, &n), -EMSGSIZE);

        EVP_PKEY_free(pub);
        free(uri);
        hsm_close(h);
}

static CK_OBJECT_HANDLE raw_find_class(struct raw *raw, CK_OBJECT_CLASS klass, const char *label) {
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &klass, sizeof klass },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_OBJECT_HANDLE o[2];
        CK_ULONG n = 0;

        assert_int_equal(raw->m->C_FindObjectsInit(raw->session, t, ELEMENTSOF(t)), CKR_OK);
        assert_int_equal(raw->m->C_FindObjects(raw->session, o, ELEMENTSOF(o), &n), CKR_OK);
        assert_int_equal(raw->m->C_FindObjectsFinal(raw->session), CKR_OK);
        assert_int_equal(n, 1);
        return o[0];
}

static CK_BBOOL raw_bool(struct raw *raw, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type) {
        CK_BBOOL v = 2;
        CK_ATTRIBUTE a = { type, &v, sizeof v };

        assert_int_equal(raw->m->C_GetAttributeValue(raw->session, o, &a, 1), CKR_OK);
        return v;
}

/* What the generated objects are: the private key never leaves the token. */
static void test_generated_key_attributes(void **state) {
        static const struct {
                const char *label;
                enum hsm_alg alg;
                CK_KEY_TYPE type;
                CK_ATTRIBUTE_TYPE secret; /* an attribute holding private key material */
        } cases[] = {
                { "Attr.Ec", HSM_ALG_ES256, CKK_EC, CKA_VALUE },
                { "Attr.Rsa", HSM_ALG_RS256, CKK_RSA, CKA_PRIVATE_EXPONENT },
        };
        struct hsm *h = open_default();
        struct raw raw;

        raw_open(&raw, true);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *uri = generate(h, cases[i].label, cases[i].alg, NULL);
                CK_OBJECT_HANDLE priv = raw_find_class(&raw, CKO_PRIVATE_KEY, cases[i].label);
                CK_OBJECT_HANDLE pub = raw_find_class(&raw, CKO_PUBLIC_KEY, cases[i].label);
                uint8_t buf[1024], id1[64], id2[64];
                CK_ATTRIBUTE v = { cases[i].secret, buf, sizeof buf };
                CK_ATTRIBUTE i1 = { CKA_ID, id1, sizeof id1 }, i2 = { CKA_ID, id2, sizeof id2 };
                CK_KEY_TYPE type = 0;
                CK_ATTRIBUTE t = { CKA_KEY_TYPE, &type, sizeof type };

                assert_int_equal(raw.m->C_GetAttributeValue(raw.session, priv, &t, 1), CKR_OK);
                assert_int_equal(type, cases[i].type);
                assert_int_equal(raw_bool(&raw, priv, CKA_TOKEN), CK_TRUE);
                assert_int_equal(raw_bool(&raw, priv, CKA_PRIVATE), CK_TRUE);
                assert_int_equal(raw_bool(&raw, priv, CKA_SENSITIVE), CK_TRUE);
                assert_int_equal(raw_bool(&raw, priv, CKA_EXTRACTABLE), CK_FALSE);
                assert_int_equal(raw_bool(&raw, priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
                assert_int_equal(raw_bool(&raw, priv, CKA_SIGN), CK_TRUE);
                assert_int_equal(raw_bool(&raw, priv, CKA_DERIVE), CK_FALSE);
                if (cases[i].type == CKK_RSA)
                        assert_int_equal(raw_bool(&raw, priv, CKA_DECRYPT), CK_FALSE);
                assert_int_equal(raw_bool(&raw, pub, CKA_TOKEN), CK_TRUE);
                assert_int_equal(raw_bool(&raw, pub, CKA_VERIFY), CK_TRUE);
                /* The key material cannot be read, not even by the logged-in user. */
                assert_int_equal(raw.m->C_GetAttributeValue(raw.session, priv, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
                assert_int_equal(v.ulValueLen, CK_UNAVAILABLE_INFORMATION);
                /* Both halves share a random 16-byte CKA_ID. */
                assert_int_equal(raw.m->C_GetAttributeValue(raw.session, priv, &i1, 1), CKR_OK);
                assert_int_equal(raw.m->C_GetAttributeValue(raw.session, pub, &i2, 1), CKR_OK);
                assert_int_equal(i1.ulValueLen, 16);
                assert_int_equal(i2.ulValueLen, 16);
                assert_memory_equal(id1, id2, 16);
                free(uri);
        }
        raw_close(&raw);
        hsm_close(h);
}

/* Makes a key pair behind hsm's back: PARAMS is the DER curve OID (EC) or NULL (RSA of
 * BITS bits); SENSITIVE for the private half. */
static void raw_keypair(struct raw *raw, const char *label, const uint8_t *params, size_t params_len, CK_ULONG bits,
                        bool sensitive) {
        CK_BBOOL yes = CK_TRUE, sens = sensitive ? CK_TRUE : CK_FALSE;
        uint8_t e[] = { 1, 0, 1 };
        CK_ATTRIBUTE pub_ec[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_EC_PARAMS, (void *) params, params_len },
        };
        CK_ATTRIBUTE pub_rsa[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_MODULUS_BITS, &bits, sizeof bits },
                { CKA_PUBLIC_EXPONENT, e, sizeof e },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },
                { CKA_SENSITIVE, &sens, sizeof sens },
                { CKA_SIGN, &yes, sizeof yes },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_MECHANISM m = { params ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
        CK_OBJECT_HANDLE a, b;

        assert_int_equal(raw->m->C_GenerateKeyPair(raw->session, &m, params ? pub_ec : pub_rsa,
                                                   params ? ELEMENTSOF(pub_ec) : ELEMENTSOF(pub_rsa), priv,
                                                   ELEMENTSOF(priv), &a, &b), CKR_OK);
}

static void test_key_refusals(void **state) {
        static const uint8_t p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        struct hsm *h = open_default();
        uint8_t sig[HSM_SIGNATURE_MAX];
        size_t n = sizeof sig;
        enum hsm_alg a = HSM_ALG_NONE;
        char *uri = generate(h, "Refuse.Dup", HSM_ALG_ES256, NULL), *uri2 = (char *) 0x1;
        EVP_PKEY *pub = (EVP_PKEY *) 0x1;
        struct raw raw;

        /* A label in use, by either half. */
        assert_int_equal(hsm_generate_key(h, "Refuse.Dup", HSM_ALG_RS256, &uri2, &pub), -EEXIST);
        assert_ptr_equal(uri2, (char *) 0x1);
        assert_ptr_equal(pub, (EVP_PKEY *) 0x1);
        expect_last_error(h, "already exists");
        assert_int_equal(hsm_generate_key(h, " bad label", HSM_ALG_ES256, NULL, NULL), -EINVAL);
        assert_int_equal(hsm_generate_key(h, "Refuse.None", HSM_ALG_NONE, NULL, NULL), -EINVAL);

        /* No such key; a data object of that label is no key; the URI must say private. */
        put(h, "Refuse.Data", "not a key");
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Missing;type=private", HSM_ALG_NONE, &a), -ENOENT);
        expect_last_error(h, "no private key labelled \"Refuse.Missing\"");
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Data", HSM_ALG_NONE, &a), -ENOENT);
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Dup;type=data", HSM_ALG_NONE, &a), -EINVAL);
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Dup;type=public", HSM_ALG_NONE, &a), -EINVAL);
        assert_int_equal(hsm_key_alg(h, "pkcs11:token=" TOKEN2 ";object=Refuse.Dup", HSM_ALG_NONE, &a), -ENOENT);
        assert_int_equal(hsm_sign(h, "pkcs11:object=Refuse.Missing", HSM_ALG_ES256, "x", 1, sig, &n), -ENOENT);
        assert_int_equal(hsm_sign(h, uri, HSM_ALG_NONE, "x", 1, sig, &n), -EINVAL);
        /* hsm_read_secret() does not hand out keys. */
        {
                struct secbuf *b = NULL;
                assert_int_equal(hsm_read_secret(h, uri, &b), -EINVAL);
                assert_null(b);
        }

        raw_open(&raw, true);
        /* Not sensitive: its value could be read, so it is no key to trust. */
        raw_keypair(&raw, "Refuse.Open", p256, sizeof p256, 0, false);
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Open", HSM_ALG_NONE, &a), -EACCES);
        expect_last_error(h, "not private and sensitive");
        /* Another curve, a short RSA key. */
        raw_keypair(&raw, "Refuse.P384", p384, sizeof p384, 0, true);
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.P384", HSM_ALG_NONE, &a), -EOPNOTSUPP);
        expect_last_error(h, "another curve than P-256");
        raw_keypair(&raw, "Refuse.Short", NULL, 0, 1024, true);
        assert_int_equal(hsm_key_alg(h, "pkcs11:object=Refuse.Short", HSM_ALG_NONE, &a), -EOPNOTSUPP);
        expect_last_error(h, "RSA of 1024 bits");
        /* Two keys of one label: the URI must say which. */
        raw_keypair(&raw, "Refuse.Dup", p256, sizeof p256, 0, true);
        assert_int_equal(hsm_key_alg(h, uri, HSM_ALG_NONE, &a), -EINVAL);
        expect_last_error(h, "add id=");
        raw_close(&raw);

        free(uri);
        hsm_close(h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_errno_from_ckr),
                cmocka_unit_test(test_default_dirs),
                cmocka_unit_test(test_open_close),
                cmocka_unit_test(test_round_trip_every_byte),
                cmocka_unit_test(test_written_attributes),
                cmocka_unit_test(test_duplicate),
                cmocka_unit_test(test_list_and_remove),
                cmocka_unit_test(test_object_uris),
                cmocka_unit_test(test_labels),
                cmocka_unit_test(test_sizes),
                cmocka_unit_test(test_wrong_pin_is_sticky),
                cmocka_unit_test(test_pin_source),
                cmocka_unit_test(test_pin_credential),
                cmocka_unit_test(test_module_allow_list),
                cmocka_unit_test(test_token_uri),
                cmocka_unit_test(test_non_private_refused),
                cmocka_unit_test(test_session_loss),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_alg_names),
                cmocka_unit_test(test_es256_sign_verify),
                cmocka_unit_test(test_rs256_ps256_sign_verify),
                cmocka_unit_test(test_generated_key_attributes),
                cmocka_unit_test(test_key_refusals),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
