/* SPDX-License-Identifier: ISC */
/* agent/config.c (the loader) and agent/config-data.c (the loaded struct config) share these;
 * so does agent/config-wire.c.  Not for other users. */
#pragma once

#include "agent/config.h"

/* Free a principal or a credential with its principals, as config_free() does.  NULL is fine.
 * Return NULL. */
struct config_principal *config_principal_free(struct config_principal *p);
struct config_credential *config_credential_free(struct config_credential *c);

/* Frees the N names of a name table and the table. */
void config_names_free(struct config_name *v, size_t n);

/* Frees a NULL-terminated string list and its strings.  NULL is fine. */
void config_strv_free(char **v);
