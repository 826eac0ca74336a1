/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>

#include "hsm/error.h"
#include "hsm/hsm.h"
#include "hsm/module.h"
#include "log.h"

/* HSM_MULTIARCH is the compiler's -print-multiarch ("x86_64-linux-gnu"), set by
 * hsm/meson.build when the compiler knows it. */
const char *const hsm_default_module_dirs[] = {
#ifdef HSM_MULTIARCH
        "/usr/lib/" HSM_MULTIARCH "/pkcs11",
        "/usr/lib/" HSM_MULTIARCH "/softhsm", /* Debian's /usr/lib/softhsm/libsofthsm2.so points here */
#endif
        "/usr/lib/softhsm",
        "/usr/lib/pkcs11",
        "/usr/lib64/pkcs11",
        "/usr/lib64/softhsm",
        "/usr/local/lib/pkcs11",
        "/usr/local/lib/softhsm",
        NULL,
};

static int resolve_file(const char *what, const char *path, char **ret, char **ret_error) {
        char *p;

        if (path[0] != '/')
                return hsm_error_setf(ret_error, -EINVAL, "%s \"%s\" is not an absolute path", what, path);
        p = realpath(path, NULL);
        if (!p) {
                int r = -errno;
                return hsm_error_setf(ret_error, r == -ENOMEM ? r : (r == -ENOENT ? -ENOENT : -EINVAL),
                                      "%s \"%s\": %s", what, path, strerror(-r));
        }
        *ret = p;
        return 0;
}

int module_resolve(const char *module, const char *uri_module_path, const char *const *dirs,
                   char **ret_path, char **ret_error) {
        _cleanup_free_ char *path = NULL, *other = NULL, *dir = NULL;
        struct stat st;
        char *slash;
        int r;

        if (!module && !uri_module_path)
                return hsm_error_setf(ret_error, -EINVAL,
                                      "no PKCS#11 module given: set [agent] module or module-path= in the token URI");

        r = resolve_file("module", module ?: uri_module_path, &path, ret_error);
        if (r < 0)
                return r;
        if (module && uri_module_path) {
                r = resolve_file("module-path=", uri_module_path, &other, ret_error);
                if (r < 0)
                        return r;
                if (strcmp(path, other) != 0)
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "module \"%s\" and the token URI's module-path=\"%s\" name different modules",
                                              module, uri_module_path);
        }

        if (stat(path, &st) < 0) {
                int e = errno;
                return hsm_error_setf(ret_error, e == ENOENT ? -ENOENT : -EINVAL, "module \"%s\": %s", path,
                                      strerror(e));
        }
        if (!S_ISREG(st.st_mode))
                return hsm_error_setf(ret_error, -EINVAL, "module \"%s\" is not a regular file", path);

        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        /* realpath() is absolute, so there is a slash; "/x" has the directory "/". */
        slash[slash == dir ? 1 : 0] = '\0';

        for (const char *const *d = dirs ?: hsm_default_module_dirs; *d; d++) {
                _cleanup_free_ char *allowed = realpath(*d, NULL);

                if (!allowed) {
                        log_debug_errno(errno, "hsm: allowed module directory \"%s\" skipped: %m", *d);
                        continue;
                }
                if (strcmp(allowed, dir) == 0) {
                        log_debug("hsm: module \"%s\" is in allowed directory \"%s\"", path, *d);
                        *ret_path = TAKE_PTR(path);
                        return 0;
                }
        }

        return hsm_error_setf(ret_error, -EINVAL,
                              "module \"%s\" (resolved to \"%s\") is not in an allowed module directory",
                              module ?: uri_module_path, path);
}

int module_load(const char *path, CK_FUNCTION_LIST **ret, char **ret_error) {
        CK_FUNCTION_LIST *m;
        CK_RV rv;

        /* Flags 0: managed by p11-kit (reference-counted C_Initialize, sessions tracked and
         * closed at finalize), loaded from this path only, not from the p11-kit registry. */
        m = p11_kit_module_load(path, 0);
        if (!m) {
                const char *msg = p11_kit_message();
                return hsm_error_setf(ret_error, -EIO, "cannot load module \"%s\"%s%s", path,
                                      msg ? ": " : "", msg ?: "");
        }

        rv = p11_kit_module_initialize(m);
        if (rv != CKR_OK) {
                int r = hsm_errno_from_ckr(rv);
                p11_kit_module_release(m);
                return hsm_error_setf(ret_error, r == -ENOMEM ? r : -EIO,
                                      "C_Initialize of module \"%s\" failed: %s", path, hsm_ckr_name(rv));
        }

        *ret = m;
        return 0;
}

void module_unload(CK_FUNCTION_LIST *m) {
        CK_RV rv;

        if (!m)
                return;
        rv = p11_kit_module_finalize(m);
        if (rv != CKR_OK)
                log_debug("hsm: C_Finalize failed: %s", hsm_ckr_name(rv));
        p11_kit_module_release(m);
}
