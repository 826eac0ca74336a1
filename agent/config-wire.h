/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "ipc/buf.h"

/* A loaded struct config on the wire: the payload of MSG_CONFIG, which the supervisor sends
 * the front on start and on every reload (ipc/PROTOCOL.md has the byte layout).  Every field
 * travels, the resolved policy rules and the user and group name tables included, so the
 * front never reads a file or looks up a user; a scope formula travels as its source text
 * and is compiled again on decoding.  The decoded config is equal to the encoded one and
 * freed with config_free(). */

/* Caps on what one encoding may hold; more is -EMSGSIZE to encode and -EBADMSG to decode. */
#define CONFIG_WIRE_CREDENTIALS_MAX 4096
#define CONFIG_WIRE_PRINCIPALS_MAX 4096         /* per credential */
#define CONFIG_WIRE_IDS_MAX 65536               /* uids, and gids, per principal */
#define CONFIG_WIRE_REFRESH_STATUS_MAX 1024     /* per credential */
#define CONFIG_WIRE_MODULE_DIRS_MAX 1024
#define CONFIG_WIRE_STRING_MAX (64 * 1024)      /* bytes in any one string */

/* Appends to OUT a whole MSG_CONFIG frame (ipc/msg.h: header + payload) carrying C, ready
 * for msg_send() on CHAN_SUPER_FRONT.  Returns 0; -EMSGSIZE when a count or string is over
 * its cap above or the frame over msg_channel_max(CHAN_SUPER_FRONT) (or OUT's max);
 * -EINVAL for a config that a load never produces (a credential or principal without a
 * name, a principal whose full_name is not "CRED.NAME", principals not in ascending
 * sequence order, duplicate credential names, a client_auth out of range, a scope written
 * as a formula without scope_formula or the other way round, a name table whose ids are not
 * strictly ascending or with a name that is NULL, empty or over CONFIG_NAME_LEN_MAX; a table
 * over CONFIG_NAMES_MAX entries or both over CONFIG_NAMES_BYTES_MAX is -EMSGSIZE); -ENOMEM.
 * On failure OUT is left as it was (what was appended is wiped). */
int config_encode(const struct config *c, struct buf *out);

/* Decodes the payload P[0..N) of a MSG_CONFIG frame into a new config stored in *RET (free
 * with config_free()): principals in the order sent, each credential's rules[] rebuilt to
 * point at its principals' rules and each principal's credential at its credential.
 * Returns 0, -EBADMSG for anything malformed (short, trailing bytes, a count or string over
 * its cap, an embedded NUL, a boolean other than 0/1, a scope formula that does not compile,
 * the invariants config_encode() checks), or -ENOMEM; *RET is untouched on failure.
 * Pure: fuzzed. */
int config_decode(const uint8_t *p, size_t n, struct config **ret);
