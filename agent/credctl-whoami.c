/* SPDX-License-Identifier: ISC */
#include <grp.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdio.h>

#include "agent/credctl-client.h"
#include "agent/credctl-whoami.h"

int credctl_whoami_main(const char *socket_arg, int argc, char **argv) {
        struct client_response resp = {};
        struct json_object *o, *v;
        int r = 0;

        if (argc != 1) {
                fprintf(stderr, "credctl: usage: credctl whoami\n");
                return 2;
        }
        if (credctl_call(socket_arg, "GET", "/v1/whoami", NULL, &resp))
                return 1;
        if (resp.status != 200) {
                r = credctl_print_error_answer(&resp);
                client_response_clear(&resp);
                return r;
        }
        o = json_tokener_parse(resp.body);
        if (!o) {
                fprintf(stderr, "credctl: the agent's answer is not JSON\n");
                client_response_clear(&resp);
                return 1;
        }
        /* The agent answers numbers; names are looked up here, as the caller. */
        if (json_object_object_get_ex(o, "uid", &v)) {
                struct passwd *pw = getpwuid((uid_t) json_object_get_int64(v));
                json_object_object_add(o, "user", pw ? json_object_new_string(pw->pw_name) : NULL);
        }
        if (json_object_object_get_ex(o, "gid", &v)) {
                struct group *gr = getgrgid((gid_t) json_object_get_int64(v));
                json_object_object_add(o, "group", gr ? json_object_new_string(gr->gr_name) : NULL);
        }
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        client_response_clear(&resp);
        return r;
}
