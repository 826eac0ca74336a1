/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "ipc/buf.h"
#include "ipc/msg.h"

/* A loaded struct config on the wire: what MSG_CONFIG's memfd holds, which the supervisor
 * sends each child on start and the front on every reload (ipc/PROTOCOL.md has the byte
 * layout).  Every field
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

/* Appends to OUT the encoding of C (what a MSG_CONFIG's memfd holds, ipc/msg.h).
 * Returns 0; -EMSGSIZE when a count or string is over its cap above or the encoding over
 * OUT's max (config_send() allows MSG_CONFIG_SIZE_MAX);
 * -EINVAL for a config that a load never produces (a credential or principal without a
 * name, a principal whose full_name is not "CRED.NAME", principals not in ascending
 * sequence order, duplicate credential names, a client_auth out of range, a scope written
 * as a formula without scope_formula or the other way round, a name table whose ids are not
 * strictly ascending or with a name that is NULL, empty or over CONFIG_NAME_LEN_MAX; a table
 * over CONFIG_NAMES_MAX entries or both over CONFIG_NAMES_BYTES_MAX is -EMSGSIZE); -ENOMEM.
 * On failure OUT is left as it was (what was appended is wiped). */
int config_encode(const struct config *c, struct buf *out);

/* Decodes the encoding P[0..N) (config_encode()'s) into a new config stored in *RET (free
 * with config_free()): principals in the order sent, each credential's rules[] rebuilt to
 * point at its principals' rules and each principal's credential at its credential.
 * Returns 0, -EBADMSG for anything malformed (short, trailing bytes, a count or string over
 * its cap, an embedded NUL, a boolean other than 0/1, a scope formula that does not compile,
 * the invariants config_encode() checks), or -ENOMEM; *RET is untouched on failure.
 * Pure: fuzzed. */
int config_decode(const uint8_t *p, size_t n, struct config **ret);

/* Flags for config_send(). */
enum {
        /* Only [agent]: no credential, principal or name table (for net and hsm, which read
         * nothing else and so need not hold a large configuration). */
        CONFIG_SEND_AGENT_ONLY = 1 << 0,
};

/* Sends C (or only its [agent] part, FLAGS) on the channel FD as a MSG_CONFIG: the encoding
 * is written to a new memfd, sealed (F_SEAL_SEAL, _SHRINK, _GROW, _WRITE) and passed with
 * SCM_RIGHTS; the frame carries its size in bytes.  Our memfd is closed before returning.
 * Returns 0, config_encode()'s errors (-EMSGSIZE over MSG_CONFIG_SIZE_MAX bytes), or the
 * negative errno of memfd_create(), write(), fcntl() or msg_send() (-EPIPE: the peer is
 * gone; -EAGAIN: a full non-blocking channel). */
int config_send(int fd, const struct config *c, unsigned flags);

/* Reads and decodes the configuration of a received MSG_CONFIG: M is its decoded frame and
 * MEMFD the fd that came with it (the caller keeps and closes it).  Stores a new config in
 * *RET (free with config_free()).  Returns 0; -EBADMSG when MEMFD is not a memfd sealed as
 * config_send() seals it, holds more or fewer than M->size bytes, or the contents do not
 * decode (config_decode()); -ENOMEM; or pread()'s negative errno.  *RET is untouched on
 * failure. */
int config_receive(int memfd, const struct msg_config *m, struct config **ret);

/* Sends MEMFD, sealed as config_send() seals it and holding SIZE bytes of a config's
 * encoding, on the channel FD as a MSG_CONFIG (the supervisor passes on what credagent-config
 * made, without decoding it).  MEMFD stays the caller's.  Returns 0, or -EINVAL for a SIZE of
 * 0 or over MSG_CONFIG_SIZE_MAX, or msg_send()'s errors. */
int config_send_memfd(int fd, int memfd, uint64_t size);

/* As config_receive(), but decodes only the [agent] part (what the supervisor reads) into
 * *RET, a config with no credential and no name table, and stores in *RET_N_CREDENTIALS (if
 * not NULL) how many credentials the encoding holds, without decoding them: bytes after that
 * count are not looked at.  Same errors as config_receive(). */
int config_receive_agent(int memfd, const struct msg_config *m, struct config **ret, size_t *ret_n_credentials);
