/* SPDX-License-Identifier: ISC */
/* credagent-config: loads and checks a configuration for credagent's supervisor, which runs
 * it at start, on SIGHUP and for --check, so that the supervisor itself maps neither inih nor
 * libcurl (URL checks) nor p11-kit (URI checks) and holds no parsed configuration: it keeps
 * the encoding this program sends, in a sealed memfd, and passes it on to the front.
 *
 *   credagent-config [--debug] --start PATH    errors to stderr as "FILE:LINE: …" lines and a
 *                                              last line naming PATH; the config on fd 3
 *   credagent-config [--debug] --reload PATH   errors as log lines, the token opened as for
 *                                              --check; the config on fd 3
 *   credagent-config [--debug] --check PATH    also opens the token (short of logging in);
 *                                              prints one line; nothing is sent
 *
 * fd 3 is a SOCK_SEQPACKET channel to the supervisor (CHAN_SUPER_NET's rules: one MSG_CONFIG,
 * agent/config-wire.h).  Exit status: 0 loaded (and sent), 1 invalid or not sent, 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "agent/config-wire.h"
#include "agent/config.h"
#include "hsm/hsm.h"
#include "log.h"
#include "macro.h"

#define CHANNEL_FD 3

static void print_errors(const char *path, int r, char *errors, bool as_log) {
        if (!as_log) {
                if (errors)
                        fprintf(stderr, "%s%s", errors, errors[0] && errors[strlen(errors) - 1] == '\n' ? "" : "\n");
                else
                        fprintf(stderr, "credagent: %s: %s\n", path, strerror(-r));
                fprintf(stderr, "credagent: %s: the configuration is invalid\n", path);
                return;
        }
        log_error("The new configuration is invalid; keeping the running one:");
        for (char *line = errors, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                log_error("  %s", line);
        }
        if (!errors)
                log_error_errno(r, "  %s: %m", path);
}

/* Opens the token as the hsm process will at start, short of logging in: the module (in an
 * allowed directory), the token, the PIN source (owner, mode).  With AS_LOG (a reload) a
 * failure is logged as an invalid configuration and success says nothing; otherwise both
 * are printed.  Returns the exit status. */
static int check_token(const char *path, const struct config *cfg, bool as_log) {
        _cleanup_free_ char *hsm_err = NULL;
        struct hsm_params hp;
        struct hsm *h = NULL;
        size_t n_principals = 0;
        int r;

        for (size_t i = 0; i < cfg->n_credentials; i++)
                n_principals += cfg->credentials[i]->n_principals;
        config_hsm_params(cfg, &hp);
        r = hsm_open(&hp, &h, &hsm_err);
        if (r < 0 && as_log) {
                log_error("The new configuration is invalid; keeping the running one:");
                log_error("  %s: [agent] module, token or pin_source: the PKCS#11 token cannot be used: %s", path,
                          hsm_err ? hsm_err : strerror(-r));
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "credagent: %s: [agent] module, token or pin_source: the PKCS#11 token cannot be used: %s\n",
                        path, hsm_err ? hsm_err : strerror(-r));
                return 1;
        }
        hsm_close(h);
        if (as_log)
                return 0;
        printf("%s: configuration OK (%zu credential%s, %zu principal%s; token found, PIN source usable)\n", path,
               cfg->n_credentials, cfg->n_credentials == 1 ? "" : "s", n_principals, n_principals == 1 ? "" : "s");
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(config_freep) struct config *cfg = NULL;
        _cleanup_free_ char *errors = NULL;
        const char *mode = NULL, *path = NULL;
        int r;

        log_set_ident("credagent-config");
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--debug") == 0)
                        log_set_max_level(LOG_DEBUG);
                else if (strcmp(argv[i], "--start") == 0 || strcmp(argv[i], "--reload") == 0 ||
                         strcmp(argv[i], "--check") == 0)
                        mode = argv[i] + 2;
                else if (!path && argv[i][0] != '-')
                        path = argv[i];
                else
                        mode = NULL, i = argc;
        }
        if (!mode || !path) {
                fprintf(stderr, "usage: credagent-config [--debug] --start|--reload|--check PATH\n"
                                "(run by credagent; use credagent --check to check a configuration)\n");
                return 2;
        }

        r = config_load(path, 0, &cfg, &errors);
        if (r < 0) {
                print_errors(path, r, errors, strcmp(mode, "reload") == 0);
                return 1;
        }
        if (strcmp(mode, "check") == 0)
                return check_token(path, cfg, false);
        /* A reload is refused, as at start, when the token cannot be used with the new [agent]
         * (else the hsm process would fail over and over once restarted with it). */
        if (strcmp(mode, "reload") == 0 && check_token(path, cfg, true) != 0)
                return 1;

        r = config_send(CHANNEL_FD, cfg, 0);
        if (r < 0) {
                log_error_errno(r, "Cannot hand the configuration to the supervisor: %m");
                return 1;
        }
        return 0;
}
