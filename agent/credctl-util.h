/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>

#include "agent/config.h"

/* Pieces shared by credctl-admin's commands (secret, key). */

/* Loads the [agent] section of CONFIG_PATH (NULL: config_default_path()) with
 * CONFIG_LOAD_AGENT_ONLY.  On failure prints every error ("FILE:LINE: …") or the reason to
 * stderr and returns 1; on success stores the config in *RET (free with config_free()) and
 * returns 0. */
int credctl_load_config(const char *config_path, struct config **ret);

/* Checks that LABEL is CRED.PRINCIPAL: two names joined by one dot, each following the name
 * rule (policy/names.h).  Prints why not to stderr and returns false otherwise. */
bool credctl_label_is_valid(const char *label);
