/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/credctl-util.h"
#include "macro.h"
#include "policy/names.h"

int credctl_load_config(const char *config_path, struct config **ret) {
        _cleanup_free_ char *default_path = NULL, *errors = NULL;
        const char *path = config_path;
        int r;

        if (!path) {
                default_path = config_default_path();
                path = default_path;
        }
        if (!path) {
                fprintf(stderr, "credctl: out of memory\n");
                return 1;
        }
        r = config_load(path, CONFIG_LOAD_AGENT_ONLY, ret, &errors);
        if (r < 0) {
                if (errors)
                        fprintf(stderr, "%s%s", errors, errors[0] && errors[strlen(errors) - 1] == '\n' ? "" : "\n");
                else
                        fprintf(stderr, "credctl: %s: %s\n", path, strerror(-r));
                return 1;
        }
        return 0;
}

bool credctl_label_is_valid(const char *label) {
        _cleanup_free_ char *cred = NULL;
        const char *dot = strchr(label, '.'), *why = NULL;

        if (!dot || strchr(dot + 1, '.')) {
                fprintf(stderr, "credctl: label \"%s\" must be CRED.PRINCIPAL: two names joined by one dot\n", label);
                return false;
        }
        cred = strndup(label, (size_t) (dot - label));
        if (!cred) {
                fprintf(stderr, "credctl: out of memory\n");
                return false;
        }
        if (!name_is_valid(cred, &why)) {
                fprintf(stderr, "credctl: label \"%s\": credential name \"%s\" %s\n", label, cred, why ?: "is not valid");
                return false;
        }
        if (!name_is_valid(dot + 1, &why)) {
                fprintf(stderr, "credctl: label \"%s\": principal name \"%s\" %s\n", label, dot + 1,
                        why ?: "is not valid");
                return false;
        }
        return true;
}
