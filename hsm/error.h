/* SPDX-License-Identifier: ISC */
#pragma once

#include "macro.h"

/* Internal to hsm/: error messages for callers.
 *
 * Messages name what went wrong (a path, a URI, a CKR_ name) and never carry a PIN or a
 * secret; callers must not pass either in FORMAT's arguments. */

/* Formats a message, logs it at debug level and, if RET_ERROR is not NULL, replaces
 * *RET_ERROR with it (malloc()ed; the old value is freed).  Returns R (a negative errno)
 * so it can be used as `return hsm_error_setf(ret_error, -EINVAL, "…");`.  If formatting
 * runs out of memory the old message is freed and *RET_ERROR becomes NULL. */
int hsm_error_setf(char **ret_error, int r, const char *format, ...) _printf_(3, 4);
