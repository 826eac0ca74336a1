/* SPDX-License-Identifier: ISC */
#pragma once

#include "secmem.h"

/* Internal to hsm/: the PIN source (DESIGN.md, Secrets and the token).
 *
 *   "file:PATH"        PATH absolute; a regular file (not a symlink), owned by the
 *                      effective user, with no group or other permission bits.
 *   "credential:NAME"  $CREDENTIALS_DIRECTORY/NAME, a systemd credential.  NAME is a
 *                      plain file name.  The file may also be owned by root, and its
 *                      group read bit may be set: systemd writes a credential 0400 owned
 *                      by root and grants the service user read access through a POSIX
 *                      ACL, whose mask stat() shows as the group bits (0440).  No other
 *                      bits are allowed.
 *
 * The PIN is the file's contents with one trailing "\n" or "\r\n" removed; it must be
 * 1 … PIN_MAX bytes and contain no NUL byte. */

/* Longest PIN accepted, in bytes. */
#define PIN_MAX 256

/* Opens the PIN source and checks it as above without reading it.  Returns 0, -ENOMEM,
 * or -EINVAL with a message naming the file and the problem in *RET_ERROR. */
int pin_check(const char *pin_source, char **ret_error);

/* Opens, checks and reads the PIN source into a new locked secbuf stored in *RET.
 * Returns 0, -ENOMEM, or -EINVAL with a message in *RET_ERROR (never the PIN). */
int pin_read(const char *pin_source, struct secbuf **ret, char **ret_error);
