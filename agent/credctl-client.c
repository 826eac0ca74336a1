/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "agent/credctl-client.h"
#include "macro.h"

int credctl_call(const char *socket_arg, const char *method, const char *path, const char *body,
                 struct client_response *ret) {
        _cleanup_free_ char *sock = client_socket_path(socket_arg);
        int r;

        if (!sock) {
                fprintf(stderr, "credctl: out of memory\n");
                return 1;
        }
        r = client_request(sock, method, path, body, CREDCTL_TIMEOUT, ret);
        if (r < 0) {
                const char *hint = r == -ENOENT || r == -ECONNREFUSED ? " (is credagent running? set CREDAGENT_SOCK)" : "";
                fprintf(stderr, "credctl: cannot talk to the agent on %s: %s%s\n", sock, strerror(-r), hint);
                return 1;
        }
        return 0;
}

int credctl_print_error_answer(const struct client_response *resp) {
        struct json_object *o = json_tokener_parse(resp->body), *v;
        const char *error = "error", *desc = NULL, *idp = NULL;

        if (o && json_object_object_get_ex(o, "error", &v))
                error = json_object_get_string(v);
        if (o && json_object_object_get_ex(o, "error_description", &v))
                desc = json_object_get_string(v);
        if (o && json_object_object_get_ex(o, "idp_error", &v))
                idp = json_object_get_string(v);
        fprintf(stderr, "credctl: %s (HTTP %ld)%s%s%s%s%s\n", error, resp->status, desc ? ": " : "", desc ? desc : "",
                idp ? " [IdP said: " : "", idp ? idp : "", idp ? "]" : "");
        json_object_put(o);
        return 1;
}
