/* SPDX-License-Identifier: ISC */
/* credctl-admin: the commands of credctl that use the PKCS#11 token directly (secret, key),
 * with the module, token and PIN of the config's [agent] section, and whoami, which looks
 * up user and group names through NSS.  credctl, statically linked for its token path,
 * execs it with its own argv, so the options are credctl's. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/credctl-key.h"
#include "agent/credctl-secret.h"
#include "agent/credctl-util.h"
#include "agent/credctl-whoami.h"
#include "build-config.h"
#include "log.h"

static const char *socket_arg;
static const char *config_arg;

static int cmd_secret(int argc, char **argv) {
        _cleanup_(config_freep) struct config *cfg = NULL;

        if (credctl_load_config(config_arg, &cfg) != 0)
                return 1;
        return credctl_secret_main(cfg, argc, argv);
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 'a' },
                { "config", required_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        int c;

        log_set_ident("credctl");
        log_set_max_level(LOG_WARNING);
        while ((c = getopt_long(argc, argv, "+a:f:hV", longopts, NULL)) >= 0)
                switch (c) {
                case 'a': socket_arg = optarg; break;
                case 'f': config_arg = optarg; break;
                case 'h':
                        printf("Usage: credctl [-a SOCKET] whoami | [-f CONFIG] secret put|ls|rm … | key generate …  (see credctl --help)\n");
                        return 0;
                case 'V': printf("credctl %s\n", CREDAGENT_VERSION); return 0;
                default: return 2;
                }
        if (optind >= argc) {
                fprintf(stderr, "credctl: whoami, secret or key command expected\n");
                return 2;
        }
        argc -= optind;
        argv += optind;
        if (strcmp(argv[0], "secret") == 0)
                return cmd_secret(argc, argv);
        if (strcmp(argv[0], "key") == 0)
                return credctl_key_main(config_arg, argc, argv);
        if (strcmp(argv[0], "whoami") == 0)
                return credctl_whoami_main(socket_arg, argc, argv);
        fprintf(stderr, "credctl: unknown command \"%s\"\n", argv[0]);
        return 2;
}
