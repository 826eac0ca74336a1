/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>

/* Longest name accepted for a credential, principal or endpoint, in bytes. */
#define NAME_MAX_LEN 80

/* The seed's name rule for credentials, principals and endpoints: only ASCII letters,
 * digits and underscores; begins with a letter; does not end with an underscore; no
 * two consecutive underscores; 1 … NAME_MAX_LEN bytes.  Uniqueness is the config's
 * business.  Returns true when NAME follows the rule.  On false, if RET_WHY is not NULL
 * it points to a static English phrase saying which part of the rule failed
 * (e.g. "must begin with a letter"). */
bool name_is_valid(const char *name, const char **ret_why);
