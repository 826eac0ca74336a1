/* SPDX-License-Identifier: ISC */
#pragma once

#include <p11-kit/pkcs11.h>

/* Internal to hsm/: loading a PKCS#11 module by explicit path, checked against an
 * allow-list of directories (DESIGN.md, Secrets and the token). */

/* Resolves the module to load and checks it against the allow-list.
 * MODULE is the configured path (may be NULL), URI_MODULE_PATH the token URI's
 * module-path= (may be NULL); at least one must be given, and if both are they must
 * resolve to the same file.  DIRS is a NULL-terminated allow-list (NULL: the default
 * hsm_default_module_dirs); realpath(module)'s directory must equal realpath() of one of
 * them (directories that do not exist are skipped).
 * On success returns 0 and stores the resolved path (malloc()ed) in *RET_PATH.
 * Errors: -EINVAL no module named, the two disagree, or not in the allow-list;
 * -ENOENT the module file does not exist; -ENOMEM.  A message goes to *RET_ERROR. */
int module_resolve(const char *module, const char *uri_module_path, const char *const *dirs,
                   char **ret_path, char **ret_error);

/* Loads the module at the already resolved PATH with p11_kit_module_load() (never the
 * p11-kit registry) and initializes it.  On success returns 0 and stores the function
 * list in *RET (release with module_unload()).  Errors: -EIO the module could not be
 * loaded, or C_Initialize failed (as hsm_errno_from_ckr()).  A message goes to *RET_ERROR. */
int module_load(const char *path, CK_FUNCTION_LIST **ret, char **ret_error);

/* Finalizes and releases a module from module_load().  Accepts NULL. */
void module_unload(CK_FUNCTION_LIST *m);
