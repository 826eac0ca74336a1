/* SPDX-License-Identifier: ISC */
/* credctl: the command-line client of credagent. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "agent/credctl-client.h"
#include "policy/names.h"
#include "secmem.h"

static const char *socket_arg;
static const char *config_arg;

static void usage(FILE *f) {
        fputs("Usage: credctl [-a SOCKET] [-f CONFIG] COMMAND [ARGS]\n"
              "\n"
              "Commands:\n"
              "  token CRED [--format raw|json|header] [--min-ttl SECONDS]\n"
              "                         print an access token for credential CRED\n"
              "  refresh CRED [--status HTTP_STATUS]\n"
              "                         report that a token was refused (default 401) and get a fresh one\n"
              "  whoami                 show how the agent sees you and which principals you map to\n"
              "  secret put CRED.PRINCIPAL [--replace]\n"
              "                         store a client secret read from stdin in the token, print its URI\n"
              "  secret ls              list the labels of stored secrets\n"
              "  secret rm CRED.PRINCIPAL\n"
              "                         delete a stored secret\n"
              "  key generate CRED.PRINCIPAL [--alg ES256|RS256|PS256]\n"
              "                         make a private_key_jwt signing key in the token, print its URI and public key\n"
              "\n"
              "  -a, --socket SOCKET    agent socket (default $CREDAGENT_SOCK, then the default path)\n"
              "  -f, --config CONFIG    configuration (secret and key commands only; they use the token directly)\n"
              "  -h, --help             this text\n",
              f);
}

static int check_credential_name(const char *name) {
        const char *why;

        if (!name_is_valid(name, &why)) {
                fprintf(stderr, "credctl: \"%s\" is not a credential name: %s\n", name, why);
                return -EINVAL;
        }
        return 0;
}

enum format { FORMAT_RAW, FORMAT_JSON, FORMAT_HEADER };

static int print_token(const struct client_response *resp, enum format fmt) {
        struct json_object *o, *v;
        int r = 0;

        if (fmt == FORMAT_JSON) {
                fwrite(resp->body, 1, resp->len, stdout);
                if (resp->len == 0 || resp->body[resp->len - 1] != '\n')
                        putchar('\n');
                return 0;
        }
        o = json_tokener_parse(resp->body);
        if (!o || !json_object_object_get_ex(o, "access_token", &v) || !json_object_is_type(v, json_type_string)) {
                fprintf(stderr, "credctl: the agent's answer has no access_token\n");
                r = 1;
        } else if (fmt == FORMAT_HEADER)
                printf("Authorization: Bearer %s\n", json_object_get_string(v));
        else
                printf("%s\n", json_object_get_string(v));
        if (o) {
                /* The parsed copy of the token lives in json-c's heap: wipe it before freeing. */
                if (v && json_object_is_type(v, json_type_string))
                        secure_wipe((char *) json_object_get_string(v), (size_t) json_object_get_string_len(v));
                json_object_put(o);
        }
        return r;
}

static int cmd_token(int argc, char **argv) {
        static const struct option longopts[] = {
                { "format", required_argument, NULL, 'F' },
                { "min-ttl", required_argument, NULL, 'm' },
                {},
        };
        enum format fmt = FORMAT_RAW;
        const char *min_ttl = NULL;
        struct client_response resp = {};
        char path[256];
        int c, r;

        optind = 0; /* re-initialise getopt: options may follow the credential name */
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0)
                switch (c) {
                case 'F':
                        if (strcmp(optarg, "raw") == 0)
                                fmt = FORMAT_RAW;
                        else if (strcmp(optarg, "json") == 0)
                                fmt = FORMAT_JSON;
                        else if (strcmp(optarg, "header") == 0)
                                fmt = FORMAT_HEADER;
                        else {
                                fprintf(stderr, "credctl: unknown format \"%s\" (raw, json or header)\n", optarg);
                                return 2;
                        }
                        break;
                case 'm':
                        if (strspn(optarg, "0123456789") != strlen(optarg) || !*optarg || strlen(optarg) > 9) {
                                fprintf(stderr, "credctl: --min-ttl takes a number of seconds\n");
                                return 2;
                        }
                        min_ttl = optarg;
                        break;
                default:
                        return 2;
                }
        if (argc - optind != 1) {
                fprintf(stderr, "credctl: usage: credctl token CRED [--format raw|json|header] [--min-ttl S]\n");
                return 2;
        }
        if (check_credential_name(argv[optind]) < 0)
                return 2;
        snprintf(path, sizeof path, "/v1/token/%s%s%s", argv[optind], min_ttl ? "?min_ttl=" : "", min_ttl ? min_ttl : "");
        if (credctl_call(socket_arg, "GET", path, NULL, &resp))
                return 1;
        r = resp.status == 200 ? print_token(&resp, fmt) : credctl_print_error_answer(&resp);
        client_response_clear(&resp);
        return r;
}

static int cmd_refresh(int argc, char **argv) {
        static const struct option longopts[] = {
                { "status", required_argument, NULL, 's' },
                { "format", required_argument, NULL, 'F' },
                {},
        };
        struct client_response resp = {};
        enum format fmt = FORMAT_RAW;
        long status = 401;
        char path[256], body[64], *end;
        int c, r;

        optind = 0; /* re-initialise getopt: options may follow the credential name */
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0)
                switch (c) {
                case 's':
                        errno = 0;
                        status = strtol(optarg, &end, 10);
                        if (errno || *end || status < 100 || status > 599) {
                                fprintf(stderr, "credctl: --status takes an HTTP status code\n");
                                return 2;
                        }
                        break;
                case 'F':
                        fmt = strcmp(optarg, "json") == 0 ? FORMAT_JSON :
                              strcmp(optarg, "header") == 0 ? FORMAT_HEADER : FORMAT_RAW;
                        break;
                default:
                        return 2;
                }
        if (argc - optind != 1) {
                fprintf(stderr, "credctl: usage: credctl refresh CRED [--status N]\n");
                return 2;
        }
        if (check_credential_name(argv[optind]) < 0)
                return 2;
        snprintf(path, sizeof path, "/v1/token/%s/refresh", argv[optind]);
        snprintf(body, sizeof body, "{\"status\":%ld}", status);
        if (credctl_call(socket_arg, "POST", path, body, &resp))
                return 1;
        r = resp.status == 200 ? print_token(&resp, fmt) : credctl_print_error_answer(&resp);
        client_response_clear(&resp);
        return r;
}

/* secret and key talk to the token with the config's module and PIN, and whoami looks up
 * names through NSS: they live in credctl-admin, a dynamically linked program, so that
 * credctl's token path links neither p11-kit nor OpenSSL nor libcurl, can be linked
 * statically (NSS modules would tie a static credctl to the glibc it was built with), and
 * starts about as fast as a bare process.  credctl-admin is looked for beside this program
 * first (a build tree), then in CREDAGENT_LIBEXECDIR. */
static int exec_admin(char **argv) {
        char self[4096], path[4200];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(path, sizeof path, "%s/credctl-admin", self);
                        if (access(path, X_OK) == 0)
                                execv(path, argv);
                }
        }
        snprintf(path, sizeof path, "%s/credctl-admin", CREDAGENT_LIBEXECDIR);
        execv(path, argv);
        fprintf(stderr, "credctl: cannot run %s: %s\n", path, strerror(errno));
        return 1;
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 'a' },
                { "config", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        char **full_argv = argv;
        int c;

        while ((c = getopt_long(argc, argv, "+a:f:hV", longopts, NULL)) >= 0)
                switch (c) {
                case 'a': socket_arg = optarg; break;
                case 'f': config_arg = optarg; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("credctl %s\n", CREDAGENT_VERSION); return 0;
                default: usage(stderr); return 2;
                }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        argc -= optind;
        argv += optind;
        if (strcmp(argv[0], "token") == 0)
                return cmd_token(argc, argv);
        if (strcmp(argv[0], "refresh") == 0)
                return cmd_refresh(argc, argv);
        if (strcmp(argv[0], "whoami") == 0 || strcmp(argv[0], "secret") == 0 || strcmp(argv[0], "key") == 0)
                return exec_admin(full_argv);
        fprintf(stderr, "credctl: unknown command \"%s\"\n", argv[0]);
        usage(stderr);
        return 2;
}
