/* SPDX-License-Identifier: ISC */
/* credctl secret put|ls|rm: client secrets in the PKCS#11 token (credctl-secret.h). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "agent/credctl-secret.h"
#include "agent/credctl-util.h"
#include "hsm/hsm.h"
#include "policy/names.h"
#include "secmem.h"

static void secret_usage(FILE *f) {
        fputs("Usage: credctl secret put CRED.PRINCIPAL [--replace]   (the secret is read from stdin)\n"
              "       credctl secret ls\n"
              "       credctl secret rm LABEL\n",
              f);
}

static void hsm_closep(struct hsm **h) {
        hsm_close(*h);
}

/* ---- reading the secret ---- */

/* The terminal state to put back, for the signal handler as well. */
static struct termios saved_termios;
static volatile sig_atomic_t termios_changed;

static const int restore_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

static void restore_terminal(void) {
        if (termios_changed) {
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
                termios_changed = 0;
        }
}

static void on_signal(int sig) {
        /* Only async-signal-safe calls: tcsetattr(), write(), raise().  SA_RESETHAND has
         * put back the default action, so raise() ends the process as the signal would. */
        int saved_errno = errno;

        if (termios_changed) {
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
                termios_changed = 0;
                (void) !write(STDERR_FILENO, "\n", 1);
        }
        errno = saved_errno;
        (void) raise(sig);
}

/* Reads the secret from standard input into a new secbuf (see credctl-secret.h).
 * Returns 0, or 1 after printing an error. */
static int read_secret(const char *label, struct secbuf **ret) {
        _cleanup_secbuf_ struct secbuf *b = NULL;
        struct sigaction old[ELEMENTSOF(restore_signals)];
        bool tty = isatty(STDIN_FILENO);
        int read_errno = 0;

        /* Room for HSM_SECRET_MAX bytes, a "\r\n", and one more byte to notice an overlong
         * secret without reading it anywhere else. */
        b = secbuf_new(HSM_SECRET_MAX + 3);
        if (!b) {
                fprintf(stderr, "credctl: out of memory\n");
                return 1;
        }

        if (tty) {
                struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND };
                struct termios t;

                if (tcgetattr(STDIN_FILENO, &saved_termios) < 0) {
                        fprintf(stderr, "credctl: cannot read the terminal settings: %s\n", strerror(errno));
                        return 1;
                }
                sigemptyset(&sa.sa_mask);
                for (size_t i = 0; i < ELEMENTSOF(restore_signals); i++)
                        (void) sigaction(restore_signals[i], &sa, &old[i]);

                fprintf(stderr, "Secret for %s: ", label);
                fflush(stderr);
                t = saved_termios;
                t.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK);
                t.c_lflag |= ECHONL; /* the Enter key still moves to the next line */
                termios_changed = 1;
                if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0) {
                        read_errno = errno;
                        termios_changed = 0;
                }
        }

        while (read_errno == 0 && b->len < b->cap) {
                ssize_t n = read(STDIN_FILENO, b->data + b->len, b->cap - b->len);

                if (n < 0) {
                        if (errno != EINTR)
                                read_errno = errno;
                        continue;
                }
                if (n == 0)
                        break;
                b->len += (size_t) n;
                /* From a terminal the secret is one line. */
                if (tty && memchr(b->data + b->len - n, '\n', (size_t) n))
                        break;
        }
        b->data[b->len] = '\0';

        if (tty) {
                restore_terminal();
                for (size_t i = 0; i < ELEMENTSOF(restore_signals); i++)
                        (void) sigaction(restore_signals[i], &old[i], NULL);
        }
        if (read_errno != 0) {
                fprintf(stderr, "credctl: cannot read the secret from standard input: %s\n", strerror(read_errno));
                return 1;
        }

        if (tty) {
                /* Anything after the first newline is not part of it. */
                unsigned char *nl = memchr(b->data, '\n', b->len);
                if (nl) {
                        size_t keep = (size_t) (nl - b->data) + 1;
                        secure_wipe(b->data + keep, b->len - keep);
                        b->len = keep;
                }
        }
        if (b->len > 0 && b->data[b->len - 1] == '\n') {
                b->data[--b->len] = '\0';
                if (b->len > 0 && b->data[b->len - 1] == '\r')
                        b->data[--b->len] = '\0';
        }
        b->data[b->len] = '\0';

        if (b->len == 0) {
                fprintf(stderr, "credctl: the secret is empty; nothing written\n");
                return 1;
        }
        if (b->len > HSM_SECRET_MAX) {
                fprintf(stderr, "credctl: the secret is longer than %d bytes; nothing written\n", HSM_SECRET_MAX);
                return 1;
        }
        for (size_t i = 0; i < b->len; i++)
                if (b->data[i] < 0x20 || b->data[i] == 0x7f) {
                        fprintf(stderr, "credctl: the secret contains a control character (a NUL, tab, newline, …); "
                                "a client secret is printable text; nothing written\n");
                        return 1;
                }

        *ret = TAKE_PTR(b);
        return 0;
}

/* ---- talking to the token ---- */

static int open_token(const struct config *cfg, struct hsm **ret) {
        _cleanup_free_ char *error = NULL;
        struct hsm_params p;
        int r;

        config_hsm_params(cfg, &p);
        r = hsm_open(&p, ret, &error);
        if (r < 0) {
                fprintf(stderr, "credctl: cannot open the token: %s\n", error ?: strerror(-r));
                return 1;
        }
        return 0;
}

/* Prints "credctl: WHAT: why" for a failed call on H.  Returns 1. */
static int report(struct hsm *h, int r, const char *what, const char *label, const char *tail) {
        _cleanup_free_ char *detail = hsm_last_error(h);
        const char *hint = "";

        if (r == -EACCES && detail && strstr(detail, "PIN"))
                hint = " (check the PIN that pin_source gives)";
        else if (r == -ENODEV)
                hint = " (is the token still present?)";
        fprintf(stderr, "credctl: %s \"%s\": %s%s%s\n", what, label, detail ?: strerror(-r), hint, tail ?: "");
        return 1;
}

/* Prints LABEL with bytes outside printable ASCII as \xHH: labels written by other tools
 * could hold terminal escapes. */
static void print_label(const char *label) {
        for (const unsigned char *p = (const unsigned char *) label; *p; p++)
                if (*p >= 0x20 && *p < 0x7f)
                        putchar(*p);
                else
                        printf("\\x%02x", *p);
        putchar('\n');
}

static int flush_stdout(void) {
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "credctl: cannot write to standard output: %s\n", strerror(errno));
                return 1;
        }
        return 0;
}

/* ---- subcommands ---- */


static int secret_put(const struct config *cfg, int argc, char **argv) {
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        _cleanup_secbuf_ struct secbuf *secret = NULL;
        _cleanup_free_ char *uri = NULL;
        const char *label = NULL;
        bool replace = false, removed = false, options_done = false;
        int r;

        for (int i = 2; i < argc; i++) {
                if (!options_done && strcmp(argv[i], "--replace") == 0)
                        replace = true;
                else if (!options_done && strcmp(argv[i], "--") == 0)
                        options_done = true;
                else if (!options_done && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
                        secret_usage(stdout);
                        return 0;
                } else if (!options_done && argv[i][0] == '-') {
                        fprintf(stderr, "credctl: secret put: unknown option \"%s\"\n", argv[i]);
                        secret_usage(stderr);
                        return 2;
                } else if (!label)
                        label = argv[i];
                else {
                        fprintf(stderr, "credctl: secret put takes one label (the secret is read from stdin)\n");
                        secret_usage(stderr);
                        return 2;
                }
        }
        if (!label) {
                secret_usage(stderr);
                return 2;
        }
        if (!credctl_label_is_valid(label))
                return 2;

        /* Open the token first, so that a bad module, token or PIN file is reported
         * before anyone types a secret. */
        if (open_token(cfg, &h) != 0)
                return 1;
        if (read_secret(label, &secret) != 0)
                return 1;

        if (replace) {
                r = hsm_remove_secret(h, label);
                if (r < 0 && r != -ENOENT)
                        return report(h, r, "cannot remove the old secret", label, NULL);
                removed = r >= 0;
        }
        r = hsm_write_secret(h, label, secret, &uri);
        secret = secbuf_free(secret);
        if (r == -EEXIST) {
                fprintf(stderr, "credctl: a secret labelled \"%s\" already exists on the token; "
                        "use --replace to overwrite it\n", label);
                return 1;
        }
        if (r < 0)
                return report(h, r, "cannot write the secret", label,
                              removed ? "; the old secret was already removed, run the command again" : NULL);

        printf("%s\n", uri);
        if (flush_stdout() != 0)
                return 1;
        fprintf(stderr, "put this in [principal %s]: client_secret = %s\n", label, uri);
        return 0;
}

static int secret_ls(const struct config *cfg, int argc, char **argv) {
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        char **labels = NULL;
        int r;

        if (argc > 2) {
                fprintf(stderr, "credctl: secret ls takes no arguments\n");
                secret_usage(stderr);
                return 2;
        }
        if (open_token(cfg, &h) != 0)
                return 1;
        r = hsm_list_secrets(h, &labels);
        if (r < 0)
                return report(h, r, "cannot list the secrets on token", cfg->token, NULL);
        for (char **l = labels; *l; l++) {
                print_label(*l);
                free(*l);
        }
        free(labels);
        return flush_stdout();
}

static int secret_rm(const struct config *cfg, int argc, char **argv) {
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        const char *label;
        int r;

        if (argc != 3 || argv[2][0] == '-') {
                secret_usage(stderr);
                return 2;
        }
        label = argv[2];
        if (open_token(cfg, &h) != 0)
                return 1;
        r = hsm_remove_secret(h, label);
        if (r == -ENOENT) {
                fprintf(stderr, "credctl: no secret labelled \"%s\" on the token\n", label);
                return 1;
        }
        if (r < 0)
                return report(h, r, "cannot remove the secret", label, NULL);
        return 0;
}

int credctl_secret_main(const struct config *cfg, int argc, char **argv) {
        if (argc < 2) {
                secret_usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "put") == 0)
                return secret_put(cfg, argc, argv);
        if (strcmp(argv[1], "ls") == 0)
                return secret_ls(cfg, argc, argv);
        if (strcmp(argv[1], "rm") == 0)
                return secret_rm(cfg, argc, argv);
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                secret_usage(stdout);
                return 0;
        }
        fprintf(stderr, "credctl: unknown secret command \"%s\"\n", argv[1]);
        secret_usage(stderr);
        return 2;
}
