/* SPDX-License-Identifier: ISC */
#include <string.h>

#include "policy/names.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static bool is_ascii_letter(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_ascii_digit(char c) {
        return c >= '0' && c <= '9';
}

bool name_is_valid(const char *name, const char **ret_why) {
        const char *why = NULL;
        size_t len;

        if (!name || name[0] == '\0') {
                why = "must not be empty";
                goto fail;
        }

        len = strnlen(name, NAME_MAX_LEN + 1);
        if (len > NAME_MAX_LEN) {
                why = "must be at most " STRINGIFY(NAME_MAX_LEN) " bytes long";
                goto fail;
        }

        if (!is_ascii_letter(name[0])) {
                why = "must begin with a letter";
                goto fail;
        }

        for (size_t i = 0; i < len; i++)
                if (!is_ascii_letter(name[i]) && !is_ascii_digit(name[i]) && name[i] != '_') {
                        why = "may contain only ASCII letters, digits and underscores";
                        goto fail;
                }

        if (strstr(name, "__")) {
                why = "must not contain two consecutive underscores";
                goto fail;
        }

        if (name[len - 1] == '_') {
                why = "must not end with an underscore";
                goto fail;
        }

        return true;

fail:
        if (ret_why)
                *ret_why = why;
        return false;
}
