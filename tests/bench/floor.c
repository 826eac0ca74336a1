/* SPDX-License-Identifier: ISC */
/* credagent-floor: the resident memory of a bare process that loads and initialises what one
 * of the agent's processes must, and nothing of the agent itself — the floor that process's
 * RSS can be compared with (README, Performance).  Libraries are dlopen()ed, so each kind
 * maps only its own:
 *
 *   credagent-floor libc            a process that only has libc (the supervisor's kind)
 *   credagent-floor front           + libmicrohttpd (which initialises GnuTLS) and json-c
 *   credagent-floor net             + libcurl, curl_global_init() and an OpenSSL TLS client
 *                                   context (run it with GNUTLS_NO_IMPLICIT_INIT=1, as net is)
 *   credagent-floor hsm MODULE      + the PKCS#11 MODULE: C_Initialize(), a session on the
 *                                   first slot with a token (no login)
 *
 * Prints "rss_kib=N" (VmRSS after the set-up) and exits 0; 1 when a library cannot be used. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static long rss_kib(void) {
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/self/status", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld", &v) == 1)
                        break;
        fclose(f);
        return v;
}

static void *need(const char *lib) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);

        if (!h)
                fprintf(stderr, "credagent-floor: %s\n", dlerror());
        return h;
}

static void *sym(void *h, const char *name) {
        void *p = h ? dlsym(h, name) : NULL;

        if (!p)
                fprintf(stderr, "credagent-floor: no %s\n", name);
        return p;
}

static int net(void) {
        void *curl = need("libcurl.so.4"), *ssl = need("libssl.so.3");
        int (*global_init)(long) = sym(curl, "curl_global_init");
        void *(*easy_init)(void) = sym(curl, "curl_easy_init");
        const void *(*client_method)(void) = sym(ssl, "TLS_client_method");
        void *(*ctx_new)(const void *) = sym(ssl, "SSL_CTX_new");

        if (!global_init || !easy_init || !client_method || !ctx_new)
                return 1;
        if (global_init(3 /* CURL_GLOBAL_DEFAULT */) != 0 || !easy_init() || !ctx_new(client_method()))
                return 1;
        return 0;
}

static int hsm(const char *module) {
        void *m = module ? need(module) : NULL;
        CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = sym(m, "C_GetFunctionList");
        CK_FUNCTION_LIST_PTR f = NULL;
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16;
        CK_SESSION_HANDLE s;

        if (!get_list || get_list(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK)
                return 1;
        if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0 ||
            f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
                return 1;
        return 0;
}

int main(int argc, char **argv) {
        const char *kind = argc > 1 ? argv[1] : "";
        int r;

        if (strcmp(kind, "libc") == 0)
                r = 0;
        else if (strcmp(kind, "front") == 0)
                r = need("libmicrohttpd.so.12") && need("libjson-c.so.5") ? 0 : 1;
        else if (strcmp(kind, "net") == 0)
                r = net();
        else if (strcmp(kind, "hsm") == 0)
                r = hsm(argc > 2 ? argv[2] : NULL);
        else {
                fputs("usage: credagent-floor libc|front|net|hsm MODULE\n", stderr);
                return 2;
        }
        if (r != 0)
                return 1;
        printf("rss_kib=%ld\n", rss_kib());
        return 0;
}
