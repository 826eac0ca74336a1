/* SPDX-License-Identifier: ISC */
/* agent/config.c (the loader) and agent/config-data.c (the loaded struct config) share these;
 * so does agent/config-wire.c.  Not for other users. */
#pragma once

#include <stddef.h>

#include "agent/config.h"

/* Free a principal or a credential with its principals, as config_free() does.  NULL is fine.
 * Return NULL. */
struct config_principal *config_principal_free(struct config_principal *p);
struct config_credential *config_credential_free(struct config_credential *c);

/* Frees the N names of a name table and the table. */
void config_names_free(struct config_name *v, size_t n);

/* Frees a NULL-terminated string list and its strings.  NULL is fine. */
void config_strv_free(char **v);

/* A bump allocator for a decoded config (struct config's arena): blocks of
 * CONFIG_ARENA_BLOCK bytes, or one of its own for a larger request. */
#define CONFIG_ARENA_BLOCK (64 * 1024)
struct config_arena {
        struct config_arena *next;
        size_t used, size;
        max_align_t data[];
};

/* Returns N zeroed bytes, aligned for any type, from the arena at *HEAD (a new block is put
 * in front when needed), or NULL on ENOMEM.  Freed only all at once, by config_arena_free(). */
void *config_arena_alloc(struct config_arena **head, size_t n);

/* Frees every block of the arena HEAD.  NULL is fine. */
void config_arena_free(struct config_arena *head);
