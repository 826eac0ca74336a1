/* SPDX-License-Identifier: ISC */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ini.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "build-config.h"
#include "agent/config.h"
#include "agent/config-internal.h"
#include "agent/oauth.h"
#include "ipc/client.h"
#include "ipc/msg.h"
#include "hsm/hsm.h"
#include "log.h"
#include "macro.h"
#include "policy/names.h"
#include "secmem.h"

_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
               "users=/groups= lists are parsed as uint32_t");

/* Caps on what one load reads: a config is written by the administrator, but a runaway
 * file (or a conf.d full of junk) must not make the agent eat memory. */
#define CONFIG_FILE_MAX ((size_t) 1 << 20) /* bytes per file */
#define CONFIG_DROPINS_MAX 4096            /* conf.d/ *.conf files */

/* Values quoted in messages are cut after this many bytes. */
#define QUOTE_MAX 128
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)

#define CLIENT_ID_MAX 256
#define TTL_MIN 1
#define TTL_MAX 31536000 /* one year */
#define TIMEOUT_MIN 1
#define TIMEOUT_MAX 300

#define DEFAULT_TTL 300
#define DEFAULT_MAX_TTL 86400
#define DEFAULT_CONNECT_TIMEOUT 5
#define DEFAULT_TIMEOUT 15
#define KEY_ID_MAX 256 /* JWT_KID_MAX */

/* The same URI types hsm/ parses with, so the config accepts exactly the URIs the
 * token side will accept. */
#define URI_TARGET_TYPES (P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT | P11_KIT_URI_FOR_MODULE_WITH_VERSION)

/* Escapes S for a message, inside the quotes the format string supplies. */
#define Q(s) quote((s), (char[QUOTE_BUF]) { 0 })

static char *quote(const char *s, char *buf) {
        return log_escape(s, strlen(s), QUOTE_MAX, buf, QUOTE_BUF);
}

/* ---- Phase 1: files → sections of (key, value, line) ----------------------------- */

struct ini_entry {
        char *key;
        char *value;    /* continuation lines appended, joined by one space */
        unsigned line;
};

enum section_kind {
        SECTION_UNKNOWN,
        SECTION_AGENT,
        SECTION_CREDENTIAL,
        SECTION_PRINCIPAL,
        SECTION_ENDPOINT,
};

struct section {
        char *header;           /* the text between "[" and "]", as written */
        size_t file;            /* index into loader.files */
        unsigned line;
        struct ini_entry *entries;
        size_t n_entries;
        /* filled in by phase 2 */
        enum section_kind kind;
        char *name;             /* credential NAME, principal CRED.NAME; NULL for [agent] */
        char *label;            /* "credential NAME", escaped: what messages show in [ ] */
};

struct error {
        size_t file;
        unsigned line;          /* 0: about the whole file */
        size_t seq;             /* order found, to keep the sort stable */
        char *msg;
};

struct pending_principal {
        struct config_principal *p;
        const struct section *s;
        bool names_ok;          /* CRED and NAME valid: look the credential up */
        bool sequence_ok;       /* sequence known: attach it (checking uniqueness) */
        /* Keys whose presence depends on the credential's client_auth, checked when the
         * principal is linked to it (NULL: absent). */
        const struct ini_entry *client_secret, *client_key, *key_id, *assertion_alg;
        bool auth_missing_reported; /* neither client_secret nor client_key, already said */
};

struct loader {
        unsigned flags;
        char **files;
        size_t n_files;
        struct section **sections;
        size_t n_sections;
        struct error *errors;
        size_t n_errors;
        bool oom;
        struct config *config;
        struct pending_principal *principals;
        size_t n_principals;
        const struct section *agent;
        void *seen;             /* tsearch() index of the sections read so far, by kind and name:
                                   finding a duplicate is O(log n), not a scan (28,000
                                   principals took 3 s, 140,000 two and a half minutes) */
        /* The first scope formula that needs the user (group) name table: where a problem
         * reading the database is reported. */
        const struct section *users_section, *groups_section;
        const struct ini_entry *users_entry, *groups_entry;
};

_printf_(4, 5)
static void loader_error(struct loader *l, size_t file, unsigned line, const char *format, ...) {
        struct error *e;
        va_list ap;
        char *msg;
        int r;

        va_start(ap, format);
        r = vasprintf(&msg, format, ap);
        va_end(ap);
        if (r < 0) {
                l->oom = true;
                return;
        }

        e = reallocarray(l->errors, l->n_errors + 1, sizeof *e);
        if (!e) {
                free(msg);
                l->oom = true;
                return;
        }
        l->errors = e;
        l->errors[l->n_errors] = (struct error) { .file = file, .line = line, .seq = l->n_errors, .msg = msg };
        l->n_errors++;
}

/* "[credential X]: …" on the section's header line. */
#define section_error(l, s, ...) section_error_at(l, s, (s)->line, __VA_ARGS__)
#define section_error_at(l, s, line, fmt, ...) \
        loader_error((l), (s)->file, (line), "[%s]: " fmt, (s)->label, ##__VA_ARGS__)
/* "[credential X] key: …" on the key's line. */
#define key_error(l, s, e, fmt, ...) \
        loader_error((l), (s)->file, (e)->line, "[%s] %s: " fmt, (s)->label, (e)->key, ##__VA_ARGS__)

static struct section *section_free(struct section *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_entries; i++) {
                free(s->entries[i].key);
                /* A value may be a literal secret pasted where a URI belongs. */
                free_wiped(s->entries[i].value);
        }
        free(s->entries);
        free(s->header);
        free(s->name);
        free(s->label);
        free(s);
        return NULL;
}

enum line_kind {
        LINE_OTHER,             /* blank, comment, section header, or replaced */
        LINE_KEY,               /* inih should call the handler for it */
        LINE_CONTINUATION,      /* indented line after a key: more of that key's value */
};

/* State of one file being fed to inih line by line.  inih 55 does not pass line numbers
 * to the handler, truncates section names to 49 bytes and reports only the first syntax
 * error, so the reader numbers lines itself, hands inih section headers as short
 * aliases ("[17]" = l->sections[17]) and notices lines inih did not accept. */
struct reader {
        struct loader *l;
        size_t file;
        char *buf;              /* the file, NUL-terminated; lines are cut in place */
        size_t size;
        size_t pos;
        unsigned line;          /* number of the line last handed to inih */
        enum line_kind kind;    /* of that line */
        bool handled;           /* the handler was called for that line */
        /* Mirrors inih's prev_name: set by a key line, cleared by a section header.  While
         * set, an indented line continues the last key's value. */
        bool key_active;
        struct section *section; /* current section, NULL before the first or after a bad header */
        bool bad_section;        /* after a malformed header: its keys are dropped quietly */
        bool append_ok;          /* continuation lines go to section's last entry */
};

static void reader_finish_line(struct reader *r) {
        if (r->kind == LINE_KEY && !r->handled)
                /* The line itself is not quoted: it could be a secret pasted on its own. */
                loader_error(r->l, r->file, r->line,
                             "syntax error: expected \"key = value\", a [section] header or a comment");
        r->kind = LINE_OTHER;
        r->handled = false;
}

/* Like inih's find_chars_or_comment(S, "]"): the first ']' or the ';' starting an inline
 * comment (one preceded by whitespace), whichever comes first. */
static const char *find_section_end(const char *s) {
        bool was_space = false;

        for (; *s; s++) {
                if (*s == ']')
                        return s;
                if (was_space && strchr(ini_inline_comment_prefixes, *s) && ini_allow_inline_comments)
                        return NULL;
                was_space = isspace((unsigned char) *s);
        }
        return NULL;
}

static int reader_add_section(struct reader *r, const char *header, size_t len) {
        struct loader *l = r->l;
        struct section **a, *s;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->header = strndup(header, len);
        if (!s->header) {
                free(s);
                return -ENOMEM;
        }
        s->file = r->file;
        s->line = r->line;

        a = reallocarray(l->sections, l->n_sections + 1, sizeof *a);
        if (!a) {
                section_free(s);
                return -ENOMEM;
        }
        l->sections = a;
        l->sections[l->n_sections++] = s;
        r->section = s;
        return 0;
}

static char *reader_read(char *str, int num, void *stream) {
        struct reader *r = stream;
        char *line, *nl, *s, *p;
        size_t len;

        reader_finish_line(r);

        if (r->l->oom || r->pos >= r->size) {
                /* inih's line buffer still holds the last line, which may be a secret. */
                secure_wipe(str, (size_t) num);
                return NULL;
        }

        line = r->buf + r->pos;
        nl = memchr(line, '\n', r->size - r->pos);
        len = nl ? (size_t) (nl - line) : r->size - r->pos;
        r->pos += len + (nl ? 1 : 0);
        line[len] = '\0';
        r->line++;

        /* By default inih sees an empty line: nothing happens, its state is kept. */
        str[0] = '\n';
        str[1] = '\0';

        if (strlen(line) != len) {
                loader_error(r->l, r->file, r->line, "line contains a NUL byte");
                r->append_ok = false;
                return str;
        }

        p = line;
        if (r->line == 1 && ini_allow_bom && strncmp(p, "\xef\xbb\xbf", 3) == 0)
                p += 3;
        for (s = p; isspace((unsigned char) *s); s++)
                ;

        if (*s == '\0' || strchr(ini_start_comment_prefixes, *s))
                return str;

        if (r->key_active && s > line && ini_allow_multiline)
                r->kind = LINE_CONTINUATION;
        else if (*s == '[') {
                const char *end = find_section_end(s + 1);

                if (!end) {
                        char *e;

                        /* Trim for the message; a section header holds no secret. */
                        for (e = s + strlen(s); e > s && isspace((unsigned char) e[-1]); e--)
                                ;
                        *e = '\0';
                        loader_error(r->l, r->file, r->line, "malformed section header \"%s\": no closing \"]\"",
                                     Q(s));
                        /* Keys that follow belong to no usable section: drop them quietly. */
                        r->section = NULL;
                        r->bad_section = true;
                        r->append_ok = false;
                        return str;
                }
                if (reader_add_section(r, s + 1, (size_t) (end - s - 1)) < 0) {
                        r->l->oom = true;
                        return NULL;
                }
                r->key_active = false;
                r->append_ok = false;
                r->bad_section = false;
                snprintf(str, (size_t) num, "[%zu]\n", r->l->n_sections - 1);
                return str;
        } else
                r->kind = LINE_KEY;

        if (len + 2 > (size_t) num) {
                loader_error(r->l, r->file, r->line, "line is %zu bytes long; lines may be at most %d bytes "
                             "(long lists can go on indented continuation lines)", len, num - 2);
                /* Later continuation lines must not land on some other key. */
                r->kind = LINE_OTHER;
                r->append_ok = false;
                return str;
        }

        memcpy(str, line, len);
        str[len] = '\n';
        str[len + 1] = '\0';
        return str;
}

static int reader_handler(void *user, const char *section, const char *name, const char *value) {
        struct reader *r = user;
        struct loader *l = r->l;
        struct ini_entry *a;

        r->handled = true;

        if (r->kind == LINE_CONTINUATION) {
                struct ini_entry *e;
                char *joined;

                if (!r->append_ok || !r->section || r->section->n_entries == 0)
                        return 1;
                e = &r->section->entries[r->section->n_entries - 1];
                if (asprintf(&joined, "%s %s", e->value, value) < 0) {
                        l->oom = true;
                        return 1;
                }
                free_wiped(e->value);
                e->value = joined;
                return 1;
        }

        /* A key line. */
        r->key_active = true;
        r->append_ok = false;

        if (r->kind != LINE_KEY)
                return 1; /* cannot happen: every line inih parses was classified */

        if (!r->section) {
                if (!r->bad_section)
                        loader_error(l, r->file, r->line,
                                     "key \"%s\" is outside any section; put it under [agent], "
                                     "[credential NAME] or [principal CRED.NAME]", Q(name));
                return 1;
        }

        if (name[0] == '\0') {
                loader_error(l, r->file, r->line, "syntax error: no key name before \"=\"");
                return 1;
        }

        a = reallocarray(r->section->entries, r->section->n_entries + 1, sizeof *a);
        if (!a) {
                l->oom = true;
                return 1;
        }
        r->section->entries = a;
        a = &r->section->entries[r->section->n_entries];
        *a = (struct ini_entry) { .key = strdup(name), .value = strdup(value), .line = r->line };
        if (!a->key || !a->value) {
                free(a->key);
                free_wiped(a->value);
                l->oom = true;
                return 1;
        }
        r->section->n_entries++;
        r->append_ok = true;
        return 1;
}

/* Frees a buffer from read_file(), wiping it first: a config may hold a secret pasted
 * where a URI belongs. */
static void file_free(char *buf, size_t size) {
        if (!buf)
                return;
        secure_wipe(buf, size + 1);
        free(buf);
}

/* Reads PATH (a regular file of at most CONFIG_FILE_MAX bytes) into a new NUL-terminated
 * buffer, to be freed with file_free(). */
static int read_file(const char *path, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        size_t size = 0;
        char *buf;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;

        buf = malloc(CONFIG_FILE_MAX + 2);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + size, CONFIG_FILE_MAX + 1 - size);
                int r = -errno;

                if (n < 0 && r == -EINTR)
                        continue;
                if (n < 0 || (n > 0 && size + (size_t) n > CONFIG_FILE_MAX)) {
                        file_free(buf, n > 0 ? size + (size_t) n : size);
                        return n < 0 ? r : -EFBIG;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        buf[size] = '\0';

        *ret = buf;
        *ret_size = size;
        return 0;
}

static const char *read_file_strerror(int r) {
        switch (r) {
        case -EBADFD:
                return "not a regular file";
        case -EFBIG:
                return "larger than 1 MiB";
        default:
                return strerror(-r);
        }
}

static int loader_add_file(struct loader *l, const char *path, size_t *ret_index) {
        char **a;

        a = reallocarray(l->files, l->n_files + 1, sizeof *a);
        if (!a)
                return -ENOMEM;
        l->files = a;
        l->files[l->n_files] = strdup(path);
        if (!l->files[l->n_files])
                return -ENOMEM;
        *ret_index = l->n_files++;
        return 0;
}

/* Reads one file into l->sections.  Problems with the contents are collected in
 * l->errors; the return value is negative only for a file that cannot be read (already
 * recorded as an error) or ENOMEM. */
static int loader_parse_file(struct loader *l, const char *path) {
        struct reader r = {};
        size_t size = 0, file;
        char *buf = NULL;
        int k;

        k = loader_add_file(l, path, &file);
        if (k < 0)
                return k;

        k = read_file(path, &buf, &size);
        if (k == -ENOMEM)
                return k;
        if (k < 0) {
                loader_error(l, file, 0, "cannot read: %s", read_file_strerror(k));
                return k;
        }

        r = (struct reader) { .l = l, .file = file, .buf = buf, .size = size };
        k = ini_parse_stream(reader_read, &r, reader_handler, &r);
        reader_finish_line(&r);
        file_free(buf, size);
        if (l->oom || k == -2)
                return -ENOMEM;
        if (k > 0) {
                /* inih saw a problem on line K; every kind it knows is reported above, so
                 * this is only a safety net for a future inih. */
                bool reported = false;

                for (size_t i = 0; i < l->n_errors; i++)
                        if (l->errors[i].file == file && l->errors[i].line == (unsigned) k)
                                reported = true;
                if (!reported)
                        loader_error(l, file, (unsigned) k, "syntax error");
        }
        return 0;
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_dropin_name(const char *name) {
        size_t n = strlen(name);

        /* What the shell glob "*.conf" matches: no hidden files. */
        return name[0] != '.' && n > strlen(".conf") && strcmp(name + n - strlen(".conf"), ".conf") == 0;
}

/* Lists DIR's *.conf in strcmp() order.  A missing DIR gives an empty list. */
static int list_dropins(const char *dir, char ***ret, size_t *ret_n) {
        DIR *d;
        char **v = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT) {
                        *ret = NULL;
                        *ret_n = 0;
                        return 0;
                }
                return -errno;
        }

        for (;;) {
                char **a, *path;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        r = -errno;
                        break;
                }
                if (!is_dropin_name(de->d_name))
                        continue;
                if (n >= CONFIG_DROPINS_MAX) {
                        r = -E2BIG;
                        break;
                }
                if (asprintf(&path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                a = reallocarray(v, n + 2, sizeof *a);
                if (!a) {
                        free(path);
                        r = -ENOMEM;
                        break;
                }
                v = a;
                v[n++] = path;
                v[n] = NULL;
        }
        closedir(d);

        if (r < 0) {
                config_strv_free(v);
                return r;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, strcmp_ptr);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- Phase 2: sections → struct config -------------------------------------------- */

/* Parses a string of ASCII digits (nothing else: no sign, no space, no base prefix).
 * A number too large for uint64_t gives UINT64_MAX, which every caller rejects as out of
 * range.  Returns false when S is not a string of digits. */
static bool parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!*s)
                return false;
        for (; *s; s++) {
                unsigned d;

                if (*s < '0' || *s > '9')
                        return false;
                d = (unsigned) (*s - '0');
                v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        }
        *ret = v;
        return true;
}

static bool is_digits(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

static bool has_value(const struct ini_entry *e) {
        return e && e->value[0] != '\0';
}

/* Splits S at runs of the bytes in SEP into a NULL-terminated vector of new strings. */
static char **split(const char *s, const char *sep) {
        char **v = NULL;
        size_t n = 0;

        for (;;) {
                size_t k;
                char **a;

                s += strspn(s, sep);
                if (!*s)
                        break;
                k = strcspn(s, sep);
                a = reallocarray(v, n + 2, sizeof *a);
                if (!a)
                        goto fail;
                v = a;
                v[n] = strndup(s, k);
                if (!v[n])
                        goto fail;
                v[++n] = NULL;
                s += k;
        }
        if (!v) {
                v = calloc(1, sizeof *v);
                if (!v)
                        return NULL;
        }
        return v;

fail:
        if (v)
                v[n] = NULL;
        config_strv_free(v);
        return NULL;
}

static int lookup_id(bool user, const char *name, uint32_t *ret) {
        long size = sysconf(user ? _SC_GETPW_R_SIZE_MAX : _SC_GETGR_R_SIZE_MAX);

        if (size <= 0)
                size = 4096;
        for (;;) {
                _cleanup_free_ char *buf = malloc((size_t) size);
                struct passwd pw, *pwr = NULL;
                struct group gr, *grr = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                if (user)
                        r = getpwnam_r(name, &pw, buf, (size_t) size, &pwr);
                else
                        r = getgrnam_r(name, &gr, buf, (size_t) size, &grr);
                if (r == ERANGE && size < (1L << 24)) {
                        size *= 2;
                        continue;
                }
                /* NSS modules disagree on how to say "no such entry". */
                if (r == 0 && !pwr && !grr)
                        return -ENOENT;
                if (r == ENOENT || r == ESRCH)
                        return -ENOENT;
                if (r != 0)
                        return -r;
                *ret = user ? (uint32_t) pw.pw_uid : (uint32_t) gr.gr_gid;
                return 0;
        }
}

/* Resolves one users=/groups= item: a number, or a name looked up with getpwnam_r() or
 * getgrnam_r().  Reports its own errors; returns false on one. */
static bool resolve_id(struct loader *l, const struct section *s, const struct ini_entry *e, bool user,
                       const char *item, uint32_t *ret) {
        const char *what = user ? "user" : "group";
        uint64_t v;
        int r;

        if (is_digits(item)) {
                /* (uid_t) -1 and (gid_t) -1 mean "no change" to the kernel: never an id. */
                if (!parse_uint64(item, &v) || v >= UINT32_MAX) {
                        key_error(l, s, e, "\"%s\" is not a valid %s id", Q(item), what);
                        return false;
                }
                *ret = (uint32_t) v;
                return true;
        }

        r = lookup_id(user, item, ret);
        if (r == -ENOENT) {
                key_error(l, s, e, "%s \"%s\" does not exist", what, Q(item));
                return false;
        }
        if (r == -ENOMEM) {
                l->oom = true;
                return false;
        }
        if (r < 0) {
                key_error(l, s, e, "cannot look up %s \"%s\": %s", what, Q(item), strerror(-r));
                return false;
        }
        return true;
}

/* Parses a users= or groups= list into a new array of unique ids.  *RET_ANY is set for
 * "users = *".  Returns false after reporting an error. */
static bool parse_id_list(struct loader *l, const struct section *s, const struct ini_entry *e, bool user,
                          uint32_t **ret, size_t *ret_n, bool *ret_any) {
        char **items = split(e->value, " \t,");
        _cleanup_free_ uint32_t *ids = NULL;
        size_t n = 0, n_items = 0;
        bool ok = true, any = false;

        if (!items) {
                l->oom = true;
                return false;
        }
        for (char **p = items; *p; p++)
                n_items++;

        if (n_items == 0) {
                key_error(l, s, e, "empty value");
                ok = false;
                goto done;
        }

        ids = calloc(n_items, sizeof *ids);
        if (!ids) {
                l->oom = true;
                ok = false;
                goto done;
        }

        for (char **p = items; *p; p++) {
                uint32_t id;
                bool dup = false;

                if (user && strcmp(*p, "*") == 0) {
                        if (n_items > 1) {
                                key_error(l, s, e, "\"*\" (every user) must be the only entry");
                                ok = false;
                        }
                        any = true;
                        continue;
                }
                if (!resolve_id(l, s, e, user, *p, &id)) {
                        ok = false;
                        continue;
                }
                for (size_t i = 0; i < n; i++)
                        if (ids[i] == id)
                                dup = true;
                if (!dup)
                        ids[n++] = id;
        }

done:
        config_strv_free(items);
        if (!ok)
                return false;
        *ret = n > 0 ? TAKE_PTR(ids) : NULL;
        *ret_n = n;
        if (ret_any)
                *ret_any = any;
        return true;
}

static bool parse_bool(const char *v, bool *ret) {
        if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
                *ret = true;
                return true;
        }
        if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
                *ret = false;
                return true;
        }
        return false;
}

static bool parse_seconds(struct loader *l, const struct section *s, const struct ini_entry *e,
                          uint32_t min, uint32_t max, uint32_t *ret) {
        uint64_t v;

        if (!parse_uint64(e->value, &v)) {
                key_error(l, s, e, "\"%s\" is not a non-negative integer", Q(e->value));
                return false;
        }
        if (v < min || v > max) {
                key_error(l, s, e, "\"%s\" is out of range: it must be between %" PRIu32 " and %" PRIu32 " seconds",
                          Q(e->value), min, max);
                return false;
        }
        *ret = (uint32_t) v;
        return true;
}

/* Looks up each entry's key in KEYS (NULL-terminated), storing the entry in SEEN at the
 * key's index.  Unknown and repeated keys are errors, as are empty values. */
static void section_collect(struct loader *l, const struct section *s, const char *const *keys,
                            const struct ini_entry **seen) {
        for (size_t i = 0; i < s->n_entries; i++) {
                const struct ini_entry *e = &s->entries[i];
                size_t k;

                for (k = 0; keys[k]; k++)
                        if (strcmp(keys[k], e->key) == 0)
                                break;
                if (!keys[k]) {
                        loader_error(l, s->file, e->line, "[%s] %s: unknown key", s->label, Q(e->key));
                        continue;
                }
                if (seen[k]) {
                        key_error(l, s, e, "duplicate key; it is already set on line %u", seen[k]->line);
                        continue;
                }
                seen[k] = e;
                if (e->value[0] == '\0')
                        key_error(l, s, e, "empty value");
        }
}

static bool check_absolute_path(struct loader *l, const struct section *s, const struct ini_entry *e, const char *path) {
        if (path[0] != '/') {
                key_error(l, s, e, "\"%s\" is not an absolute path", Q(path));
                return false;
        }
        return true;
}

/* The names of a PKCS#11 URI's query attributes ("?a=1&b=2") must be ones p11-kit
 * knows: p11-kit keeps any other as a vendor attribute without flagging it.  Stores
 * the first unknown name (a pointer into S) and its length. */
static bool uri_query_names_known(const char *s, const char **ret_name, size_t *ret_len) {
        static const char *const known[] = { "pin-source", "pin-value", "module-name", "module-path", "pinfile" };
        const char *q = strchr(s, '?');

        if (!q)
                return true;
        for (const char *p = q + 1; *p;) {
                size_t n = strcspn(p, "&");
                size_t name_len = strcspn(p, "=&");
                bool ok = false;

                if (name_len > n)
                        name_len = n;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        if (name_len == strlen(known[i]) && strncmp(p, known[i], name_len) == 0)
                                ok = true;
                if (!ok && name_len > 0) {
                        *ret_name = p;
                        *ret_len = name_len;
                        return false;
                }
                p += n;
                if (*p == '&')
                        p++;
        }
        return true;
}

static void uri_freep(P11KitUri **u) {
        if (*u)
                p11_kit_uri_free(*u);
}

/* Might quoting this URI show a PIN?  Then it is not quoted. */
static bool uri_may_show_pin(const char *s) {
        return strcasestr(s, "pin") || strchr(s, '%');
}

/* [agent] token.  Sets *RET_MODULE_PATH when the URI names the module. */
static bool check_token_uri(struct loader *l, const struct section *s, const struct ini_entry *e, bool *ret_module_path) {
        _cleanup_(uri_freep) P11KitUri *u = NULL;
        const char *v = e->value, *name;
        bool show = !uri_may_show_pin(v);
        size_t name_len;
        int r;

        /* RFC 3986 has no whitespace in a URI, but p11-kit takes it literally: a value
         * continued on an indented line would otherwise pass as a label with a space. */
        if (strpbrk(v, " \t")) {
                if (show)
                        key_error(l, s, e, "\"%s\" contains whitespace; write a space in a label as %%20", Q(v));
                else
                        key_error(l, s, e, "the URI contains whitespace; write a space in a label as %%20");
                return false;
        }

        u = p11_kit_uri_new();
        if (!u) {
                l->oom = true;
                return false;
        }
        /* Not checked for P11_KIT_URI_NO_MEMORY: it is the same code as
         * P11_KIT_URI_UNEXPECTED, which p11-kit 0.24 also returns for a query attribute
         * name it dislikes ("?Foo=1"), so it is reported as a bad URI. */
        r = p11_kit_uri_parse(v, URI_TARGET_TYPES, u);
        if (r != P11_KIT_URI_OK) {
                if (show)
                        key_error(l, s, e, "\"%s\" is not a valid PKCS#11 URI: %s", Q(v), p11_kit_uri_message(r));
                else
                        key_error(l, s, e, "not a valid PKCS#11 URI: %s", p11_kit_uri_message(r));
                return false;
        }
        if (p11_kit_uri_get_pin_value(u)) {
                key_error(l, s, e, "pin-value is not allowed in config; use pin_source");
                return false;
        }
        if (p11_kit_uri_get_pin_source(u)) {
                key_error(l, s, e, "pin-source is not allowed in the token URI; use pin_source");
                return false;
        }
        if (p11_kit_uri_get_module_name(u)) {
                key_error(l, s, e, "module-name is not allowed; name the module with module (or module-path= in the URI)");
                return false;
        }
        if (p11_kit_uri_any_unrecognized(u)) {
                if (show)
                        key_error(l, s, e, "\"%s\" has an attribute that p11-kit does not recognise or that does not "
                                  "belong in a token URI", Q(v));
                else
                        key_error(l, s, e, "the URI has an attribute that p11-kit does not recognise or that does not "
                                  "belong in a token URI");
                return false;
        }
        if (!uri_query_names_known(v, &name, &name_len)) {
                _cleanup_free_ char *n = strndup(name, name_len);

                if (!n) {
                        l->oom = true;
                        return false;
                }
                key_error(l, s, e, "unknown query attribute \"%s\"", Q(n));
                return false;
        }

        *ret_module_path = p11_kit_uri_get_module_path(u) != NULL;
        return true;
}

/* [principal] client_secret (KLASS CKO_DATA) or client_key (CKO_PRIVATE_KEY).  The value
 * is never quoted: it may be the secret itself, or a key pasted where its URI belongs. */
static bool check_object_uri(struct loader *l, const struct section *s, const struct ini_entry *e, CK_OBJECT_CLASS want) {
        _cleanup_(uri_freep) P11KitUri *u = NULL;
        const char *v = e->value, *name;
        CK_ATTRIBUTE *a;
        size_t name_len;
        int r;

        if (strncmp(v, "pkcs11:", strlen("pkcs11:")) != 0) {
                if (want == CKO_DATA)
                        loader_error(l, s->file, e->line,
                                     "[%s] client_secret must be a PKCS#11 URI, not the secret itself: store the secret "
                                     "with \"credctl secret put %s\" and put the URI it prints here",
                                     s->label, s->name ? Q(s->name) : "CRED.NAME");
                else
                        loader_error(l, s->file, e->line,
                                     "[%s] client_key must be the PKCS#11 URI of a private key in the token: generate "
                                     "one with \"credctl key generate %s --alg ES256\" and put the URI it prints here",
                                     s->label, s->name ? Q(s->name) : "CRED.NAME");
                return false;
        }

        if (strpbrk(v, " \t")) { /* see check_token_uri() */
                key_error(l, s, e, "the PKCS#11 URI contains whitespace; write a space in a label as %%20");
                return false;
        }
        if (strlen(v) > MSG_ID_MAX) {
                key_error(l, s, e, "the PKCS#11 URI is longer than %d bytes", MSG_ID_MAX);
                return false;
        }

        u = p11_kit_uri_new();
        if (!u) {
                l->oom = true;
                return false;
        }
        r = p11_kit_uri_parse(v, URI_TARGET_TYPES | P11_KIT_URI_FOR_OBJECT, u); /* see check_token_uri() */
        if (r != P11_KIT_URI_OK) {
                key_error(l, s, e, "not a valid PKCS#11 URI: %s", p11_kit_uri_message(r));
                return false;
        }
        if (p11_kit_uri_get_pin_value(u)) {
                key_error(l, s, e, "pin-value is not allowed in config; use pin_source in [agent]");
                return false;
        }
        if (p11_kit_uri_get_pin_source(u)) {
                key_error(l, s, e, "pin-source is not allowed here; the PIN comes from pin_source in [agent]");
                return false;
        }
        if (p11_kit_uri_get_module_name(u)) {
                key_error(l, s, e, "module-name is not allowed; the module is set in [agent]");
                return false;
        }
        if (p11_kit_uri_any_unrecognized(u)) {
                key_error(l, s, e, "the PKCS#11 URI has an attribute that p11-kit does not recognise or that does "
                          "not belong in an object URI");
                return false;
        }
        if (!uri_query_names_known(v, &name, &name_len)) {
                _cleanup_free_ char *n = strndup(name, name_len);

                if (!n) {
                        l->oom = true;
                        return false;
                }
                key_error(l, s, e, "unknown query attribute \"%s\"", Q(n));
                return false;
        }

        a = p11_kit_uri_get_attribute(u, CKA_LABEL);
        if (!a || a->ulValueLen == 0) {
                key_error(l, s, e, "the PKCS#11 URI has no object= attribute (the label of the %s)",
                          want == CKO_DATA ? "secret" : "key");
                return false;
        }
        if (memchr(a->pValue, '\0', a->ulValueLen)) {
                key_error(l, s, e, "the object= label contains %%00");
                return false;
        }
        a = p11_kit_uri_get_attribute(u, CKA_CLASS);
        if (a) {
                CK_OBJECT_CLASS klass;

                if (a->ulValueLen != sizeof klass ||
                    (memcpy(&klass, a->pValue, sizeof klass), klass != want)) {
                        if (want == CKO_DATA)
                                key_error(l, s, e, "type= must be data: a client secret is a data object");
                        else
                                key_error(l, s, e, "type= must be private: client_key names the private key");
                        return false;
                }
        }
        return true;
}

static bool is_loopback_literal(const char *host) {
        struct in_addr a4;
        struct in6_addr a6;
        char buf[INET6_ADDRSTRLEN + 2];
        size_t n = strlen(host);

        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;

        if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
                memcpy(buf, host + 1, n - 2);
                buf[n - 2] = '\0';
                if (inet_pton(AF_INET6, buf, &a6) == 1)
                        return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
        }
        return false;
}

static void curl_freep(char **p) {
        curl_free(*p);
}

/* [credential] token_url, checked when the section is complete because
 * allow_insecure_loopback may follow it. */
static bool check_token_url(struct loader *l, const struct section *s, const struct ini_entry *e, bool allow_insecure) {
        _cleanup_(curl_freep) char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *options = NULL,
                                   *fragment = NULL;
        const char *v = e->value;
        CURLU *u;
        CURLUcode rc;
        bool ok = false;

        if (strlen(v) > MSG_URL_MAX) {
                key_error(l, s, e, "longer than %d bytes", MSG_URL_MAX);
                return false;
        }
        u = curl_url();
        if (!u) {
                l->oom = true;
                return false;
        }
        rc = curl_url_set(u, CURLUPART_URL, v, 0);
        if (rc == CURLUE_OUT_OF_MEMORY) {
                l->oom = true;
                goto out;
        }
        if (rc != CURLUE_OK) {
                /* A bad URL with "@" in it may carry a password: not quoted then. */
                if (strchr(v, '@'))
                        key_error(l, s, e, "not a valid URL: %s", curl_url_strerror(rc));
                else
                        key_error(l, s, e, "\"%s\" is not a valid URL: %s", Q(v), curl_url_strerror(rc));
                goto out;
        }

        (void) curl_url_get(u, CURLUPART_USER, &user, 0);
        (void) curl_url_get(u, CURLUPART_PASSWORD, &password, 0);
        (void) curl_url_get(u, CURLUPART_OPTIONS, &options, 0);
        if (user || password || options) {
                key_error(l, s, e, "the URL must not contain a user name or password (\"user:password@\"); "
                          "client_id and client_secret belong in [principal]");
                goto out;
        }

        (void) curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
        if (fragment || strchr(v, '#')) {
                key_error(l, s, e, "\"%s\" must not contain a fragment (\"#...\")", Q(v));
                goto out;
        }

        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
                key_error(l, s, e, "\"%s\" has no scheme or host", Q(v));
                goto out;
        }

        if (strcmp(scheme, "https") == 0)
                ok = true;
        else if (strcmp(scheme, "http") != 0)
                key_error(l, s, e, "\"%s\" must use https", Q(v));
        else if (!allow_insecure)
                key_error(l, s, e, "\"%s\" uses http, which is allowed only with allow_insecure_loopback = yes "
                          "and a loopback IP address (127.0.0.0/8 or [::1])", Q(v));
        else if (!is_loopback_literal(host))
                key_error(l, s, e, "\"%s\" uses http, which is allowed only to a loopback IP address "
                          "(127.0.0.0/8 or [::1]), not \"%s\"", Q(v), Q(host));
        else
                ok = true;

out:
        curl_url_cleanup(u);
        return ok;
}

/* RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR,
 * NQCHAR = %x21 / %x23-5B / %x5D-7E. */
static bool scope_is_valid(const char *v) {
        bool token = false;

        for (const unsigned char *p = (const unsigned char *) v; *p; p++) {
                if (*p == ' ') {
                        if (!token)
                                return false; /* leading or double space */
                        token = false;
                        continue;
                }
                if (!(*p == 0x21 || (*p >= 0x23 && *p <= 0x5b) || (*p >= 0x5d && *p <= 0x7e)))
                        return false;
                token = true;
        }
        return token; /* not empty, no trailing space */
}

static bool client_id_is_valid(const char *v) {
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

/* ---- [agent] ----------------------------------------------------------------------- */

enum {
        AGENT_SOCKET,
        AGENT_SOCKET_GROUP,
        AGENT_MODULE,
        AGENT_MODULE_DIRS,
        AGENT_TOKEN,
        AGENT_PIN_SOURCE,
        AGENT_CA_FILE,
        _AGENT_MAX,
};

static const char *const agent_keys[_AGENT_MAX + 1] = {
        [AGENT_SOCKET] = "socket",
        [AGENT_SOCKET_GROUP] = "socket_group",
        [AGENT_MODULE] = "module",
        [AGENT_MODULE_DIRS] = "module_dirs",
        [AGENT_TOKEN] = "token",
        [AGENT_PIN_SOURCE] = "pin_source",
        [AGENT_CA_FILE] = "ca_file",
};

static bool strdup_to(struct loader *l, char **dst, const char *src) {
        char *p = strdup(src);

        if (!p) {
                l->oom = true;
                return false;
        }
        free(*dst);
        *dst = p;
        return true;
}

static void validate_agent(struct loader *l, const struct section *s) {
        const struct ini_entry *seen[_AGENT_MAX] = {};
        struct config *c = l->config;
        const struct ini_entry *e;
        bool token_ok = false, module_path = false;

        section_collect(l, s, agent_keys, seen);

        e = seen[AGENT_SOCKET];
        if (has_value(e) && check_absolute_path(l, s, e, e->value)) {
                if (strlen(e->value) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                        key_error(l, s, e, "\"%s\" is %zu bytes long; a Unix socket path may be at most %zu bytes",
                                  Q(e->value), strlen(e->value), sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1);
                else
                        strdup_to(l, &c->socket, e->value);
        }

        e = seen[AGENT_SOCKET_GROUP];
        if (has_value(e)) {
                uint32_t gid;

                if (resolve_id(l, s, e, false, e->value, &gid) && strdup_to(l, &c->socket_group, e->value))
                        c->socket_gid = (gid_t) gid;
        }

        e = seen[AGENT_MODULE];
        if (has_value(e) && check_absolute_path(l, s, e, e->value))
                strdup_to(l, &c->module, e->value);

        e = seen[AGENT_MODULE_DIRS];
        if (has_value(e)) {
                char **dirs = split(e->value, " \t");
                bool ok = true;

                if (!dirs) {
                        l->oom = true;
                        return;
                }
                for (char **d = dirs; *d; d++)
                        if (!check_absolute_path(l, s, e, *d))
                                ok = false;
                if (ok) {
                        config_strv_free(c->module_dirs);
                        c->module_dirs = dirs;
                } else
                        config_strv_free(dirs);
        }

        e = seen[AGENT_TOKEN];
        if (has_value(e) && check_token_uri(l, s, e, &module_path)) {
                token_ok = true;
                strdup_to(l, &c->token, e->value);
        }

        e = seen[AGENT_PIN_SOURCE];
        if (has_value(e)) {
                const char *v = e->value;

                if (strncmp(v, "file:", 5) == 0) {
                        if (v[5] != '/')
                                key_error(l, s, e, "\"%s\": the file must be an absolute path (file:/path/to/pin)",
                                          Q(v));
                        else
                                strdup_to(l, &c->pin_source, v);
                } else if (strncmp(v, "credential:", 11) == 0) {
                        const char *n = v + 11;

                        if (!*n || strchr(n, '/') || strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
                                key_error(l, s, e, "\"%s\": the credential name must be a file name in "
                                          "$CREDENTIALS_DIRECTORY, without \"/\"", Q(v));
                        else
                                strdup_to(l, &c->pin_source, v);
                } else
                        key_error(l, s, e, "\"%s\" must be file:/absolute/path or credential:NAME", Q(v));
        }

        e = seen[AGENT_CA_FILE];
        if (has_value(e)) {
                struct stat st;

                if (access(e->value, R_OK) < 0)
                        key_error(l, s, e, "\"%s\" is not readable: %s", Q(e->value), strerror(errno));
                else if (stat(e->value, &st) < 0)
                        key_error(l, s, e, "\"%s\": %s", Q(e->value), strerror(errno));
                else if (!S_ISREG(st.st_mode))
                        key_error(l, s, e, "\"%s\" is not a regular file", Q(e->value));
                else
                        strdup_to(l, &c->ca_file, e->value);
        }

        if (!seen[AGENT_TOKEN])
                section_error(l, s, "missing required key \"token\"");
        if (!seen[AGENT_PIN_SOURCE])
                section_error(l, s, "missing required key \"pin_source\"");
        /* Whether the module may be left out is known only from a valid token URI. */
        if (!seen[AGENT_MODULE] && token_ok && !module_path)
                section_error(l, s, "missing required key \"module\" (or module-path= in the token URI)");
}

/* ---- [credential NAME] ------------------------------------------------------------- */

enum {
        CRED_LABEL,
        CRED_FLOW,
        CRED_TOKEN_URL,
        CRED_CLIENT_AUTH,
        CRED_SCOPE,
        CRED_REFRESH_STATUS,
        CRED_ALLOW_INSECURE_LOOPBACK,
        CRED_DEFAULT_TTL,
        CRED_MAX_TTL,
        CRED_REFRESH_AT,
        CRED_REFRESH_MARGIN,
        CRED_CONNECT_TIMEOUT,
        CRED_TIMEOUT,
        CRED_ASSERTION_AUDIENCE,
        CRED_ASSERTION_LIFETIME,
        CRED_ISSUER,
        CRED_AUDIENCE,
        CRED_RESOURCE,
        CRED_TOKEN_PARAMS,
        _CRED_MAX,
};

static const char *const credential_keys[_CRED_MAX + 1] = {
        [CRED_LABEL] = "label",
        [CRED_FLOW] = "flow",
        [CRED_TOKEN_URL] = "token_url",
        [CRED_CLIENT_AUTH] = "client_auth",
        [CRED_SCOPE] = "scope",
        [CRED_REFRESH_STATUS] = "refresh_status",
        [CRED_ALLOW_INSECURE_LOOPBACK] = "allow_insecure_loopback",
        [CRED_DEFAULT_TTL] = "default_ttl",
        [CRED_MAX_TTL] = "max_ttl",
        [CRED_REFRESH_AT] = "refresh_at",
        [CRED_REFRESH_MARGIN] = "refresh_margin",
        [CRED_CONNECT_TIMEOUT] = "connect_timeout",
        [CRED_TIMEOUT] = "timeout",
        [CRED_ASSERTION_AUDIENCE] = "assertion_audience",
        [CRED_ASSERTION_LIFETIME] = "assertion_lifetime",
        [CRED_ISSUER] = "issuer",
        [CRED_AUDIENCE] = "audience",
        [CRED_RESOURCE] = "resource",
        [CRED_TOKEN_PARAMS] = "token_params",
};

static void parse_refresh_status(struct loader *l, const struct section *s, const struct ini_entry *e,
                                 struct config_credential *cred) {
        char **items = split(e->value, " \t,");
        _cleanup_free_ int *v = NULL;
        size_t n = 0, n_items = 0;
        bool ok = true;

        if (!items) {
                l->oom = true;
                return;
        }
        for (char **p = items; *p; p++)
                n_items++;
        v = calloc(n_items ?: 1, sizeof *v);
        if (!v) {
                l->oom = true;
                config_strv_free(items);
                return;
        }
        for (char **p = items; *p; p++) {
                uint64_t x;
                bool dup = false;

                if (!parse_uint64(*p, &x) || x < 400 || x > 599) {
                        key_error(l, s, e, "\"%s\" is not an HTTP status code from 400 to 599", Q(*p));
                        ok = false;
                        continue;
                }
                for (size_t i = 0; i < n; i++)
                        if (v[i] == (int) x)
                                dup = true;
                if (!dup)
                        v[n++] = (int) x;
        }
        config_strv_free(items);
        if (!ok)
                return;
        if (n_items == 0) {
                key_error(l, s, e, "empty value");
                return;
        }
        free(cred->refresh_status);
        cred->refresh_status = TAKE_PTR(v);
        cred->n_refresh_status = n;
}

/* [credential] refresh_at = 80% (the "%" may be left out): a whole percent from
 * CONFIG_REFRESH_AT_MIN to CONFIG_REFRESH_AT_MAX. */
static void parse_refresh_at(struct loader *l, const struct section *s, const struct ini_entry *e,
                             struct config_credential *cred) {
        char digits[8];
        size_t n = strlen(e->value);
        uint64_t v;

        if (n > 0 && e->value[n - 1] == '%')
                n--;
        if (n == 0 || n >= sizeof digits) {
                key_error(l, s, e, "\"%s\" is not a percentage like 80%%", Q(e->value));
                return;
        }
        memcpy(digits, e->value, n);
        digits[n] = '\0';
        if (!parse_uint64(digits, &v)) {
                key_error(l, s, e, "\"%s\" is not a percentage like 80%%", Q(e->value));
                return;
        }
        if (v < CONFIG_REFRESH_AT_MIN || v > CONFIG_REFRESH_AT_MAX) {
                key_error(l, s, e, "\"%s\" is out of range: it must be between %d%% and %d%% of the token's lifetime",
                          Q(e->value), CONFIG_REFRESH_AT_MIN, CONFIG_REFRESH_AT_MAX);
                return;
        }
        cred->refresh_at = (uint32_t) v;
}

/* [credential] scope = {!…}: compiled now, so that a formula with an error never loads; the
 * source text is kept in cred->scope. */
static void parse_scope_formula(struct loader *l, const struct section *s, const struct ini_entry *e,
                                struct config_credential *cred) {
        struct formula *f = NULL;
        const char *message = NULL;
        unsigned column = 0;
        int r;

        r = formula_parse(e->value, &f, &column, &message);
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                key_error(l, s, e, "column %u: %s", column, message);
                return;
        }
        if (!strdup_to(l, &cred->scope, e->value)) {
                formula_free(f);
                return;
        }
        formula_free(cred->scope_formula);
        cred->scope_formula = f;

        if (!l->users_section && formula_uses(f, FORMULA_VAR_USER_NAME)) {
                l->users_section = s;
                l->users_entry = e;
        }
        if (!l->groups_section &&
            (formula_uses(f, FORMULA_VAR_USER_GROUP) || formula_uses(f, FORMULA_VAR_USER_GROUPS))) {
                l->groups_section = s;
                l->groups_entry = e;
        }
}

/* RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":". */
static bool has_uri_scheme(const char *v) {
        size_t n = 0;

        if (!((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= 'A' && v[0] <= 'Z')))
                return false;
        while (v[n] && v[n] != ':') {
                char c = v[n];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
                      c == '-' || c == '.'))
                        return false;
                n++;
        }
        return v[n] == ':';
}

/* [credential] resource: RFC 8707 §2 resource indicators, each an absolute URI (RFC 3986
 * §4.3) without a fragment; http and https ones must parse as URLs (libcurl) with a host.
 * Stored joined by single spaces. */
static void parse_resource(struct loader *l, const struct section *s, const struct ini_entry *e,
                           struct config_credential *cred) {
        char **items = split(e->value, " \t");
        _cleanup_free_ char *joined = NULL;
        size_t n = 0;
        bool ok = true;

        if (!items) {
                l->oom = true;
                return;
        }
        joined = malloc(strlen(e->value) + 1);
        if (!joined) {
                l->oom = true;
                config_strv_free(items);
                return;
        }
        for (char **p = items; *p; p++) {
                const char *v = *p;
                bool chars = true;

                /* RFC 3986 characters: no space, '"', '<', '>', '\\', '^', '`', '{', '|', '}', no
                 * control or non-ASCII byte. */
                for (const unsigned char *c = (const unsigned char *) v; *c; c++)
                        if (*c <= 0x20 || *c >= 0x7f || strchr("\"<>\\^`{|}", *c))
                                chars = false;
                if (!chars || !has_uri_scheme(v)) {
                        key_error(l, s, e, "\"%s\" is not an absolute URI (RFC 8707: a resource indicator is "
                                  "an absolute URI such as https://api.example.com/)", Q(v));
                        ok = false;
                        continue;
                }
                if (strchr(v, '#')) {
                        key_error(l, s, e, "\"%s\" must not contain a fragment (\"#...\"; RFC 8707 section 2)", Q(v));
                        ok = false;
                        continue;
                }
                if (strncasecmp(v, "https:", 6) == 0 || strncasecmp(v, "http:", 5) == 0) {
                        CURLU *u = curl_url();
                        CURLUcode rc;

                        if (!u) {
                                l->oom = true;
                                break;
                        }
                        rc = curl_url_set(u, CURLUPART_URL, v, 0);
                        curl_url_cleanup(u);
                        if (rc == CURLUE_OUT_OF_MEMORY) {
                                l->oom = true;
                                break;
                        }
                        if (rc != CURLUE_OK) {
                                key_error(l, s, e, "\"%s\" is not a valid URL: %s", Q(v), curl_url_strerror(rc));
                                ok = false;
                                continue;
                        }
                }
                if (n > 0)
                        joined[n++] = ' ';
                memcpy(joined + n, v, strlen(v));
                n += strlen(v);
        }
        config_strv_free(items);
        if (!ok || l->oom)
                return;
        joined[n] = '\0';
        if (n > MSG_PARAMS_MAX) {
                key_error(l, s, e, "longer than %d bytes", MSG_PARAMS_MAX);
                return;
        }
        free(cred->resource);
        cred->resource = TAKE_PTR(joined);
}

/* [credential] token_params: static pairs (oauth_token_params_parse()), stored normalised. */
static void parse_token_params(struct loader *l, const struct section *s, const struct ini_entry *e,
                               struct config_credential *cred) {
        char why[384] = "", *normal = NULL;
        int r;

        r = oauth_token_params_parse(e->value, &normal, why, sizeof why);
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                key_error(l, s, e, "%s", why);
                return;
        }
        if (!normal[0]) {
                free(normal);
                key_error(l, s, e, "no key=value pair");
                return;
        }
        free(cred->token_params);
        cred->token_params = normal;
}

static void validate_credential(struct loader *l, const struct section *s, struct config_credential *cred) {
        const struct ini_entry *seen[_CRED_MAX] = {};
        const struct ini_entry *e;
        bool ttl_ok, timeout_ok, auth_bad = false;

        section_collect(l, s, credential_keys, seen);

        e = seen[CRED_LABEL];
        if (has_value(e))
                strdup_to(l, &cred->label, e->value);

        e = seen[CRED_FLOW];
        if (has_value(e) && strcmp(e->value, "client_credentials") != 0)
                key_error(l, s, e, "\"%s\" is not supported; the only flow is client_credentials", Q(e->value));

        e = seen[CRED_CLIENT_AUTH];
        if (has_value(e)) {
                if (strcmp(e->value, "basic") == 0)
                        cred->client_auth = CLIENT_AUTH_BASIC;
                else if (strcmp(e->value, "post") == 0)
                        cred->client_auth = CLIENT_AUTH_POST;
                else if (strcmp(e->value, "private_key_jwt") == 0)
                        cred->client_auth = CLIENT_AUTH_PRIVATE_KEY_JWT;
                else {
                        key_error(l, s, e, "\"%s\" is not one of basic, post, private_key_jwt", Q(e->value));
                        auth_bad = true;
                }
        }

        /* private_key_jwt's own keys; a client_auth that is bad is reported above. */
        for (size_t k = CRED_ASSERTION_AUDIENCE; k <= CRED_ASSERTION_LIFETIME; k++) {
                e = seen[k];
                if (!has_value(e))
                        continue;
                if (cred->client_auth != CLIENT_AUTH_PRIVATE_KEY_JWT) {
                        if (!auth_bad)
                                key_error(l, s, e, "only used with client_auth = private_key_jwt");
                        continue;
                }
                if (k == CRED_ASSERTION_LIFETIME)
                        (void) parse_seconds(l, s, e, 1, ASSERTION_LIFETIME_MAX, &cred->assertion_lifetime);
                else if (strlen(e->value) > MSG_URL_MAX)
                        key_error(l, s, e, "longer than %d bytes", MSG_URL_MAX);
                else if (!scope_is_valid(e->value) || strchr(e->value, ' '))
                        key_error(l, s, e, "\"%s\" is not an audience: one URI or identifier, printable ASCII "
                                  "without spaces or quotes (the IdP's token endpoint URL or its issuer)", Q(e->value));
                else
                        strdup_to(l, &cred->assertion_audience, e->value);
        }

        e = seen[CRED_SCOPE];
        if (has_value(e)) {
                if (formula_is_formula(e->value))
                        parse_scope_formula(l, s, e, cred);
                else if (strlen(e->value) > MSG_SCOPE_MAX)
                        key_error(l, s, e, "longer than %d bytes", MSG_SCOPE_MAX);
                else if (!scope_is_valid(e->value))
                        key_error(l, s, e, "\"%s\" is not a list of scope tokens separated by single spaces "
                                  "(RFC 6749 section 3.3: printable ASCII except space, '\"' and '\\')", Q(e->value));
                else
                        strdup_to(l, &cred->scope, e->value);
        }

        e = seen[CRED_REFRESH_STATUS];
        if (has_value(e))
                parse_refresh_status(l, s, e, cred);

        e = seen[CRED_ALLOW_INSECURE_LOOPBACK];
        if (has_value(e) && !parse_bool(e->value, &cred->allow_insecure_loopback))
                key_error(l, s, e, "\"%s\" is not a boolean (yes, no, true, false, 1, 0)", Q(e->value));

        /* A key that is absent keeps its default and counts as valid. */
        e = seen[CRED_DEFAULT_TTL];
        ttl_ok = !e || (has_value(e) && parse_seconds(l, s, e, TTL_MIN, TTL_MAX, &cred->default_ttl));
        e = seen[CRED_MAX_TTL];
        ttl_ok = (!e || (has_value(e) && parse_seconds(l, s, e, TTL_MIN, TTL_MAX, &cred->max_ttl))) && ttl_ok;
        e = seen[CRED_REFRESH_AT];
        if (has_value(e))
                parse_refresh_at(l, s, e, cred);
        e = seen[CRED_REFRESH_MARGIN];
        if (has_value(e))
                (void) parse_seconds(l, s, e, 0, CONFIG_REFRESH_MARGIN_MAX, &cred->refresh_margin);
        e = seen[CRED_CONNECT_TIMEOUT];
        timeout_ok = !e || (has_value(e) && parse_seconds(l, s, e, TIMEOUT_MIN, TIMEOUT_MAX, &cred->connect_timeout));
        e = seen[CRED_TIMEOUT];
        timeout_ok = (!e || (has_value(e) && parse_seconds(l, s, e, TIMEOUT_MIN, TIMEOUT_MAX, &cred->timeout))) &&
                timeout_ok;

        /* Checks that involve two keys, now that all are known and valid.  Reported on the
         * line of the key that was set (the second one if both were). */
        if (ttl_ok && cred->max_ttl < cred->default_ttl) {
                if (seen[CRED_MAX_TTL])
                        key_error(l, s, seen[CRED_MAX_TTL], "%" PRIu32 " is less than default_ttl (%" PRIu32 ")",
                                  cred->max_ttl, cred->default_ttl);
                else
                        key_error(l, s, seen[CRED_DEFAULT_TTL], "%" PRIu32 " is more than max_ttl (%" PRIu32 ", the default)",
                                  cred->default_ttl, cred->max_ttl);
        }
        if (timeout_ok && cred->timeout < cred->connect_timeout) {
                if (seen[CRED_TIMEOUT])
                        key_error(l, s, seen[CRED_TIMEOUT], "%" PRIu32 " is less than connect_timeout (%" PRIu32 ")",
                                  cred->timeout, cred->connect_timeout);
                else
                        key_error(l, s, seen[CRED_CONNECT_TIMEOUT],
                                  "%" PRIu32 " is more than timeout (%" PRIu32 ", the default)",
                                  cred->connect_timeout, cred->timeout);
        }

        e = seen[CRED_AUDIENCE];
        if (has_value(e)) {
                if (strlen(e->value) > MSG_URL_MAX)
                        key_error(l, s, e, "longer than %d bytes", MSG_URL_MAX);
                else if (!scope_is_valid(e->value) || strchr(e->value, ' '))
                        key_error(l, s, e, "\"%s\" is not an audience: one URI or identifier, printable ASCII "
                                  "without spaces or quotes", Q(e->value));
                else
                        strdup_to(l, &cred->audience, e->value);
        }
        e = seen[CRED_RESOURCE];
        if (has_value(e))
                parse_resource(l, s, e, cred);
        e = seen[CRED_TOKEN_PARAMS];
        if (has_value(e))
                parse_token_params(l, s, e, cred);

        /* The token endpoint: given, or discovered from the issuer (exactly one of them). */
        e = seen[CRED_ISSUER];
        if (e && seen[CRED_TOKEN_URL])
                key_error(l, s, e, "token_url is set too (line %u): give either the token endpoint or the issuer "
                          "whose metadata names it", seen[CRED_TOKEN_URL]->line);
        else if (has_value(e)) {
                if (check_token_url(l, s, e, cred->allow_insecure_loopback)) {
                        /* RFC 8414 §2: an issuer has no query (and no fragment, checked above). */
                        if (strchr(e->value, '?'))
                                key_error(l, s, e, "\"%s\" must not contain a query (\"?...\"; RFC 8414 section 2)",
                                          Q(e->value));
                        else
                                strdup_to(l, &cred->issuer, e->value);
                }
        }

        e = seen[CRED_TOKEN_URL];
        if (!e && !seen[CRED_ISSUER])
                section_error(l, s, "missing required key \"token_url\" (or \"issuer\", to discover it)");
        else if (has_value(e) && check_token_url(l, s, e, cred->allow_insecure_loopback))
                strdup_to(l, &cred->token_url, e->value);
}

/* ---- [principal CRED.NAME] --------------------------------------------------------- */

enum {
        PRINCIPAL_SEQUENCE,
        PRINCIPAL_CLIENT_ID,
        PRINCIPAL_CLIENT_SECRET,
        PRINCIPAL_USERS,
        PRINCIPAL_GROUPS,
        PRINCIPAL_CLIENT_KEY,
        PRINCIPAL_KEY_ID,
        PRINCIPAL_ASSERTION_ALG,
        _PRINCIPAL_MAX,
};

static const char *const principal_keys[_PRINCIPAL_MAX + 1] = {
        [PRINCIPAL_SEQUENCE] = "sequence",
        [PRINCIPAL_CLIENT_ID] = "client_id",
        [PRINCIPAL_CLIENT_SECRET] = "client_secret",
        [PRINCIPAL_USERS] = "users",
        [PRINCIPAL_GROUPS] = "groups",
        [PRINCIPAL_CLIENT_KEY] = "client_key",
        [PRINCIPAL_KEY_ID] = "key_id",
        [PRINCIPAL_ASSERTION_ALG] = "assertion_alg",
};

/* The key_id value: printable ASCII, no leading or trailing space. */
static bool key_id_is_valid(const char *v) {
        size_t n = strlen(v);

        return n > 0 && n <= KEY_ID_MAX && client_id_is_valid(v) && v[0] != ' ' && v[n - 1] != ' ';
}

/* Returns true when the sequence number is known (so duplicates can be checked).  Which of
 * client_secret and client_key a principal needs depends on its credential's client_auth:
 * their entries go to PP, for check_principal_auth(). */
static bool validate_principal(struct loader *l, const struct section *s, struct config_principal *p,
                               struct pending_principal *pp, bool names_ok, const struct config_credential *known) {
        const struct ini_entry *seen[_PRINCIPAL_MAX] = {};
        const struct ini_entry *e;
        bool sequence_ok = false;

        section_collect(l, s, principal_keys, seen);

        e = seen[PRINCIPAL_SEQUENCE];
        if (!e)
                section_error(l, s, "missing required key \"sequence\"");
        else if (has_value(e)) {
                if (!parse_uint64(e->value, &p->rule.sequence))
                        key_error(l, s, e, "\"%s\" is not a non-negative integer", Q(e->value));
                else if (p->rule.sequence == UINT64_MAX)
                        key_error(l, s, e, "\"%s\" is out of range: it must be less than %" PRIu64, Q(e->value),
                                  UINT64_MAX);
                else
                        sequence_ok = true;
        }

        e = seen[PRINCIPAL_CLIENT_ID];
        if (!e)
                section_error(l, s, "missing required key \"client_id\"");
        else if (has_value(e)) {
                if (strlen(e->value) > CLIENT_ID_MAX)
                        key_error(l, s, e, "\"%s\" is %zu bytes long; the limit is %d", Q(e->value),
                                  strlen(e->value), CLIENT_ID_MAX);
                else if (!client_id_is_valid(e->value))
                        key_error(l, s, e, "\"%s\" contains a character that is not printable ASCII", Q(e->value));
                else
                        strdup_to(l, &p->client_id, e->value);
        }

        e = seen[PRINCIPAL_CLIENT_SECRET];
        pp->client_secret = e;
        if (has_value(e) && check_object_uri(l, s, e, CKO_DATA))
                strdup_to(l, &p->client_secret, e->value);

        e = seen[PRINCIPAL_CLIENT_KEY];
        pp->client_key = e;
        if (has_value(e) && check_object_uri(l, s, e, CKO_PRIVATE_KEY))
                strdup_to(l, &p->client_key, e->value);

        e = seen[PRINCIPAL_KEY_ID];
        pp->key_id = e;
        if (has_value(e)) {
                if (!key_id_is_valid(e->value))
                        key_error(l, s, e, "\"%s\" is not a key id: 1 to %d bytes of printable ASCII, no leading or "
                                  "trailing space", Q(e->value), KEY_ID_MAX);
                else
                        strdup_to(l, &p->key_id, e->value);
        }

        e = seen[PRINCIPAL_ASSERTION_ALG];
        pp->assertion_alg = e;
        if (has_value(e) && hsm_alg_from_name(e->value, &p->assertion_alg) < 0)
                key_error(l, s, e, "\"%s\" is not one of ES256, RS256, PS256 (the default is the key's own: "
                          "ES256 for EC P-256, RS256 for RSA)", Q(e->value));

        /* Neither: say which one is missing now if the credential is known already (or never
         * will be); otherwise check_principal_auth() says it once the credential is found. */
        if (!pp->client_secret && !pp->client_key && (known || !names_ok)) {
                if (known && known->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT)
                        section_error(l, s, "missing required key \"client_key\" ([credential %s] has client_auth = "
                                      "private_key_jwt): the URI printed by \"credctl key generate %s\"",
                                      Q(known->name), Q(p->full_name));
                else
                        section_error(l, s, "missing required key \"client_secret\"");
                pp->auth_missing_reported = true;
        }

        e = seen[PRINCIPAL_USERS];
        if (has_value(e))
                (void) parse_id_list(l, s, e, true, (uint32_t **) &p->rule.uids, &p->rule.n_uids, &p->rule.any_user);

        e = seen[PRINCIPAL_GROUPS];
        if (has_value(e))
                (void) parse_id_list(l, s, e, false, (uint32_t **) &p->rule.gids, &p->rule.n_gids, NULL);

        if (!seen[PRINCIPAL_USERS] && !seen[PRINCIPAL_GROUPS])
                section_error(l, s, "no users= or groups=, so it would match no caller; add users= or groups= "
                              "(users = * allows every local user)");

        return sequence_ok;
}

/* ---- Sections ---------------------------------------------------------------------- */

static bool section_name_check(struct loader *l, const struct section *s, const char *what, const char *name) {
        const char *why = NULL;

        if (name_is_valid(name, &why))
                return true;
        section_error(l, s, "%s name \"%s\" %s", what, Q(name), why);
        return false;
}

/* Works out S's kind, name and label from its header.  Returns false (after reporting)
 * when the header is not usable at all. */
static bool section_classify(struct loader *l, struct section *s) {
        _cleanup_free_ char *type = NULL;
        const char *h = s->header, *rest;
        size_t n;

        h += strspn(h, " \t");
        n = strcspn(h, " \t");
        type = strndup(h, n);
        if (!type) {
                l->oom = true;
                return false;
        }
        rest = h + n;
        rest += strspn(rest, " \t");
        s->name = strdup(rest);
        if (!s->name) {
                l->oom = true;
                return false;
        }
        for (n = strlen(s->name); n > 0 && (s->name[n - 1] == ' ' || s->name[n - 1] == '\t'); n--)
                s->name[n - 1] = '\0';

        if (strcmp(type, "agent") == 0)
                s->kind = SECTION_AGENT;
        else if (strcmp(type, "credential") == 0)
                s->kind = SECTION_CREDENTIAL;
        else if (strcmp(type, "principal") == 0)
                s->kind = SECTION_PRINCIPAL;
        else if (strcmp(type, "endpoint") == 0)
                s->kind = SECTION_ENDPOINT;
        else
                s->kind = SECTION_UNKNOWN;

        if (asprintf(&s->label, "%s%s%s", type, s->name[0] ? " " : "", Q(s->name)) < 0) {
                s->label = NULL;
                l->oom = true;
                return false;
        }

        if (s->kind == SECTION_AGENT && s->name[0]) {
                section_error(l, s, "the [agent] section takes no name");
                return false;
        }
        if (s->kind == SECTION_AGENT) {
                free(s->name);
                s->name = NULL;
        }
        return true;
}

/* Orders sections by kind and name, for the index of loader.seen. */
static int section_compare(const void *a, const void *b) {
        const struct section *x = a, *y = b;

        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        return strcmp_null(x->name, y->name);
}

static void free_nothing(void *p) {
        (void) p;
}

static int push_credential(struct loader *l, struct config_credential *cred) {
        struct config_credential **a;

        a = reallocarray(l->config->credentials, l->config->n_credentials + 1, sizeof *a);
        if (!a)
                return -ENOMEM;
        l->config->credentials = a;
        a[l->config->n_credentials++] = cred;
        return 0;
}

static void load_credential(struct loader *l, const struct section *s) {
        struct config_credential *cred;

        (void) section_name_check(l, s, "credential", s->name[0] ? s->name : "");

        cred = calloc(1, sizeof *cred);
        if (!cred) {
                l->oom = true;
                return;
        }
        *cred = (struct config_credential) {
                .client_auth = CLIENT_AUTH_BASIC,
                .default_ttl = DEFAULT_TTL,
                .max_ttl = DEFAULT_MAX_TTL,
                .refresh_at = CONFIG_REFRESH_AT_DEFAULT,
                .refresh_margin = CONFIG_REFRESH_MARGIN_DEFAULT,
                .connect_timeout = DEFAULT_CONNECT_TIMEOUT,
                .timeout = DEFAULT_TIMEOUT,
                .assertion_lifetime = ASSERTION_LIFETIME_DEFAULT,
                .line = s->line,
        };
        cred->name = strdup(s->name);
        cred->file = strdup(l->files[s->file]);
        if (!cred->name || !cred->file || push_credential(l, cred) < 0) {
                config_credential_free(cred);
                l->oom = true;
                return;
        }

        validate_credential(l, s, cred);
}

static void load_principal(struct loader *l, const struct section *s) {
        struct config_principal *p;
        struct pending_principal *a;
        const char *dot = strchr(s->name, '.');
        const struct config_credential *known = NULL;
        bool names_ok = false, sequence_ok;

        if (!dot)
                section_error(l, s, "\"%s\" must be CRED.NAME: the credential's name, \".\", the principal's name",
                              Q(s->name));
        else {
                _cleanup_free_ char *cred = strndup(s->name, (size_t) (dot - s->name));

                if (!cred) {
                        l->oom = true;
                        return;
                }
                names_ok = section_name_check(l, s, "credential", cred);
                names_ok = section_name_check(l, s, "principal", dot + 1) && names_ok;
                if (names_ok)
                        known = config_find_credential(l->config, cred);
        }

        p = calloc(1, sizeof *p);
        if (!p) {
                l->oom = true;
                return;
        }
        p->full_name = strdup(s->name);
        p->name = strdup(dot ? dot + 1 : s->name);
        p->file = strdup(l->files[s->file]);
        p->line = s->line;
        a = reallocarray(l->principals, l->n_principals + 1, sizeof *a);
        if (a)
                l->principals = a;
        if (!p->full_name || !p->name || !p->file || !a) {
                config_principal_free(p);
                l->oom = true;
                return;
        }
        l->principals[l->n_principals++] = (struct pending_principal) { .p = p, .s = s };

        sequence_ok = validate_principal(l, s, p, &l->principals[l->n_principals - 1], names_ok, known);
        l->principals[l->n_principals - 1].names_ok = names_ok;
        l->principals[l->n_principals - 1].sequence_ok = sequence_ok;
}

static void load_section(struct loader *l, struct section *s) {
        const struct section *first;
        bool agent_only = l->flags & CONFIG_LOAD_AGENT_ONLY;

        if (!section_classify(l, s))
                return;
        /* The first section of this kind and name; S itself when it is the first. */
        {
                const struct section **slot = tsearch(s, &l->seen, section_compare);

                if (!slot) {
                        l->oom = true;
                        return;
                }
                first = *slot == s ? NULL : *slot;
        }

        if (agent_only && s->kind != SECTION_AGENT)
                return;

        if (s->kind == SECTION_UNKNOWN) {
                loader_error(l, s->file, s->line, "unknown section [%s]; sections are [agent], "
                             "[credential NAME] and [principal CRED.NAME]", Q(s->header));
                return;
        }
        if (s->kind == SECTION_ENDPOINT) {
                section_error(l, s, "endpoints and callouts are not supported by this version");
                return;
        }
        if (s->kind != SECTION_AGENT && !s->name[0]) {
                section_error(l, s, "a %s section needs a name: [%s]", s->kind == SECTION_CREDENTIAL ? "credential" : "principal",
                              s->kind == SECTION_CREDENTIAL ? "credential NAME" : "principal CRED.NAME");
                return;
        }

        if (first) {
                section_error(l, s, "duplicate section; it is already defined at %s:%u", l->files[first->file],
                              first->line);
                return;
        }

        switch (s->kind) {
        case SECTION_AGENT:
                l->agent = s;
                validate_agent(l, s);
                break;
        case SECTION_CREDENTIAL:
                load_credential(l, s);
                break;
        case SECTION_PRINCIPAL:
                load_principal(l, s);
                break;
        default:
                break;
        }
}

static int principal_compare(const void *a, const void *b) {
        const struct config_principal *x = *(struct config_principal *const *) a;
        const struct config_principal *y = *(struct config_principal *const *) b;

        return x->rule.sequence < y->rule.sequence ? -1 : x->rule.sequence > y->rule.sequence;
}

/* The keys that depend on the credential's client_auth: exactly one of client_secret (basic,
 * post) and client_key (private_key_jwt), and key_id and assertion_alg only with the latter. */
static void check_principal_auth(struct loader *l, const struct pending_principal *pp,
                                 const struct config_credential *cred) {
        const struct section *s = pp->s;
        bool jwt = cred->client_auth == CLIENT_AUTH_PRIVATE_KEY_JWT;
        const char *auth = cred->client_auth == CLIENT_AUTH_POST ? "post" : "basic";

        if (jwt) {
                if (pp->client_secret)
                        key_error(l, s, pp->client_secret, "not used with client_auth = private_key_jwt of "
                                  "[credential %s]: the key named by client_key signs the assertion; remove "
                                  "client_secret", Q(cred->name));
                if (!pp->client_key && !pp->auth_missing_reported)
                        section_error(l, s, "missing required key \"client_key\" ([credential %s] has "
                                      "client_auth = private_key_jwt): the URI printed by \"credctl key generate %s\"",
                                      Q(cred->name), Q(pp->p->full_name));
                return;
        }
        if (!pp->client_secret && !pp->auth_missing_reported)
                section_error(l, s, "missing required key \"client_secret\"");
        if (pp->client_key)
                key_error(l, s, pp->client_key, "only used with client_auth = private_key_jwt; [credential %s] has "
                          "client_auth = %s, which sends client_secret", Q(cred->name), auth);
        if (pp->key_id)
                key_error(l, s, pp->key_id, "only used with client_auth = private_key_jwt");
        if (pp->assertion_alg)
                key_error(l, s, pp->assertion_alg, "only used with client_auth = private_key_jwt");
}

/* Attaches every principal to its credential, in load order, checking that the
 * credential exists and that sequences are unique within it. */
static void link_principals(struct loader *l) {
        for (size_t i = 0; i < l->n_principals; i++) {
                struct pending_principal *pp = &l->principals[i];
                struct config_principal *p = pp->p, **a;
                struct config_credential *cred = NULL;
                _cleanup_free_ char *cred_name = NULL;
                bool dup = false;

                if (!pp->names_ok)
                        continue;

                cred_name = strndup(p->full_name, strlen(p->full_name) - strlen(p->name) - 1);
                if (!cred_name) {
                        l->oom = true;
                        return;
                }
                cred = (struct config_credential *) config_find_credential(l->config, cred_name);
                if (!cred) {
                        section_error(l, pp->s, "there is no [credential %s]", Q(cred_name));
                        if (!pp->client_secret && !pp->client_key && !pp->auth_missing_reported)
                                section_error(l, pp->s, "missing required key \"client_secret\"");
                        continue;
                }
                check_principal_auth(l, pp, cred);
                if (!pp->sequence_ok)
                        continue;

                for (size_t j = 0; j < cred->n_principals; j++)
                        if (cred->principals[j]->rule.sequence == p->rule.sequence) {
                                section_error(l, pp->s, "sequence %" PRIu64 " is already used by [principal %s] at %s:%u",
                                              p->rule.sequence, Q(cred->principals[j]->full_name),
                                              cred->principals[j]->file, cred->principals[j]->line);
                                dup = true;
                        }
                if (dup)
                        continue;

                a = reallocarray(cred->principals, cred->n_principals + 1, sizeof *a);
                if (!a) {
                        l->oom = true;
                        return;
                }
                cred->principals = a;
                cred->principals[cred->n_principals++] = p;
                p->credential = cred;
                pp->p = NULL; /* owned by the credential now */
        }

        for (size_t i = 0; i < l->config->n_credentials; i++) {
                struct config_credential *cred = l->config->credentials[i];

                if (cred->n_principals == 0)
                        continue;
                qsort(cred->principals, cred->n_principals, sizeof *cred->principals, principal_compare);
                cred->rules = calloc(cred->n_principals, sizeof *cred->rules);
                if (!cred->rules) {
                        l->oom = true;
                        return;
                }
                for (size_t j = 0; j < cred->n_principals; j++)
                        cred->rules[j] = &cred->principals[j]->rule;
        }
}

/* ---- Name tables (struct config's users and groups) --------------------------------- */

struct name_builder {
        struct config_name *v;
        size_t *seq;            /* the order entries were found in, to keep the first of an id */
        size_t n, allocated;
        size_t bytes;           /* as counted against CONFIG_NAMES_BYTES_MAX */
};

static void name_builder_done(struct name_builder *b) {
        for (size_t i = 0; i < b->n; i++)
                free(b->v[i].name);
        free(b->v);
        free(b->seq);
        *b = (struct name_builder) {};
}

/* Returns 0, -ENOMEM, or -E2BIG past a cap (BYTES: both tables so far). */
static int name_builder_add(struct name_builder *b, size_t *bytes, uint32_t id, const char *name) {
        size_t len = strlen(name);

        if (len == 0 || len > CONFIG_NAME_LEN_MAX)
                return 0; /* no usable name: the id has none in the table */
        if (b->n >= CONFIG_NAMES_MAX || *bytes + len + 8 > CONFIG_NAMES_BYTES_MAX)
                return -E2BIG;
        if (b->n == b->allocated) {
                size_t k = b->allocated ? b->allocated * 2 : 64;
                struct config_name *v = reallocarray(b->v, k, sizeof *v);
                size_t *seq;

                if (!v)
                        return -ENOMEM;
                b->v = v;
                seq = reallocarray(b->seq, k, sizeof *seq);
                if (!seq)
                        return -ENOMEM;
                b->seq = seq;
                b->allocated = k;
        }
        b->v[b->n].name = strdup(name);
        if (!b->v[b->n].name)
                return -ENOMEM;
        b->v[b->n].id = id;
        b->seq[b->n] = b->n;
        b->n++;
        *bytes += len + 8;
        return 0;
}

static bool name_builder_has(const struct name_builder *b, uint32_t id) {
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].id == id)
                        return true;
        return false;
}

/* qsort_r() over indexes into NAMES: by id, then by the order found. */
static int name_index_compare(const void *a, const void *b, void *names) {
        const struct config_name *v = names;
        size_t x = *(const size_t *) a, y = *(const size_t *) b;

        if (v[x].id != v[y].id)
                return v[x].id < v[y].id ? -1 : 1;
        return x < y ? -1 : x > y;
}

/* Sorts by id keeping the first entry of each id; hands the table to *RET. */
static int name_builder_finish(struct name_builder *b, struct config_name **ret, size_t *ret_n) {
        struct config_name *out;
        size_t n = 0;

        if (b->n == 0) {
                name_builder_done(b);
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        out = calloc(b->n, sizeof *out);
        if (!out)
                return -ENOMEM;
        qsort_r(b->seq, b->n, sizeof *b->seq, name_index_compare, b->v);
        for (size_t i = 0; i < b->n; i++) {
                struct config_name *e = &b->v[b->seq[i]];

                if (n > 0 && out[n - 1].id == e->id)
                        continue; /* a later duplicate: freed with the builder */
                out[n++] = *e;
                e->name = NULL;
        }
        name_builder_done(b);
        *ret = out;
        *ret_n = n;
        return 0;
}

/* Grows *BUF (*SIZE bytes) for an NSS _r call that said ERANGE.  Returns 0, -ENOMEM or -ERANGE. */
static int grow_nss_buffer(char **buf, size_t *size) {
        char *p;

        if (*size >= ((size_t) 1 << 24))
                return -ERANGE;
        p = realloc(*buf, *size * 2);
        if (!p)
                return -ENOMEM;
        *buf = p;
        *size *= 2;
        return 0;
}

/* Reads every entry of the passwd (USERS) or group database into B.  Returns 0, -ENOMEM,
 * -E2BIG past a cap, or another negative errno from NSS. */
static int names_enumerate(bool users, struct name_builder *b, size_t *bytes) {
        size_t size = 4096;
        char *buf = malloc(size);
        int r = 0;

        if (!buf)
                return -ENOMEM;
        if (users)
                setpwent();
        else
                setgrent();
        for (;;) {
                struct passwd pw, *pwr = NULL;
                struct group gr, *grr = NULL;
                int k;

                k = users ? getpwent_r(&pw, buf, size, &pwr) : getgrent_r(&gr, buf, size, &grr);
                if (k == ERANGE) {
                        /* glibc hands the same entry again after ERANGE. */
                        r = grow_nss_buffer(&buf, &size);
                        if (r < 0)
                                break;
                        continue;
                }
                if (k == ENOENT || (k == 0 && !pwr && !grr))
                        break;
                if (k != 0) {
                        r = -k;
                        break;
                }
                r = users ? name_builder_add(b, bytes, (uint32_t) pw.pw_uid, pw.pw_name)
                          : name_builder_add(b, bytes, (uint32_t) gr.gr_gid, gr.gr_name);
                if (r < 0)
                        break;
        }
        if (users)
                endpwent();
        else
                endgrent();
        free(buf);
        return r;
}

/* Adds the name of ID from getpwuid_r()/getgrgid_r() when B has none yet: NSS sources that
 * do not enumerate (sssd's default, LDAP) still answer these.  An id without a name is not
 * an error here (users=/groups= take numbers); returns 0, -ENOMEM or -E2BIG. */
static int names_add_id(bool users, struct name_builder *b, size_t *bytes, uint32_t id) {
        size_t size = 4096;
        char *buf;
        int r = 0;

        if (name_builder_has(b, id))
                return 0;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                struct passwd pw, *pwr = NULL;
                struct group gr, *grr = NULL;
                int k = users ? getpwuid_r((uid_t) id, &pw, buf, size, &pwr)
                              : getgrgid_r((gid_t) id, &gr, buf, size, &grr);

                if (k == ERANGE) {
                        r = grow_nss_buffer(&buf, &size);
                        if (r == 0)
                                continue;
                        r = r == -ENOMEM ? r : 0;
                        break;
                }
                if (k == 0 && pwr)
                        r = name_builder_add(b, bytes, id, pw.pw_name);
                else if (k == 0 && grr)
                        r = name_builder_add(b, bytes, id, gr.gr_name);
                break;
        }
        free(buf);
        return r;
}

static int build_name_table(struct loader *l, bool users, size_t *bytes) {
        _cleanup_(name_builder_done) struct name_builder b = {};
        const struct section *s = users ? l->users_section : l->groups_section;
        const struct ini_entry *e = users ? l->users_entry : l->groups_entry;
        struct config *c = l->config;
        int r;

        r = names_enumerate(users, &b, bytes);
        for (size_t i = 0; r >= 0 && i < c->n_credentials; i++) {
                const struct config_credential *cred = c->credentials[i];

                if (!cred->scope_formula)
                        continue;
                for (size_t j = 0; r >= 0 && j < cred->n_principals; j++) {
                        const struct policy_rule *rule = &cred->principals[j]->rule;

                        if (users)
                                for (size_t k = 0; r >= 0 && k < rule->n_uids; k++)
                                        r = names_add_id(true, &b, bytes, (uint32_t) rule->uids[k]);
                        else
                                for (size_t k = 0; r >= 0 && k < rule->n_gids; k++)
                                        r = names_add_id(false, &b, bytes, (uint32_t) rule->gids[k]);
                }
        }
        if (r >= 0)
                r = users ? name_builder_finish(&b, &c->users, &c->n_users)
                          : name_builder_finish(&b, &c->groups, &c->n_groups);
        if (r == -ENOMEM) {
                l->oom = true;
                return r;
        }
        if (r == -E2BIG)
                key_error(l, s, e, "the %s database is too large for %s: the agent keeps at most %d names "
                          "and %d KiB of them", users ? "passwd" : "group",
                          users ? "$User.Name" : "$User.Group and $User.Groups", CONFIG_NAMES_MAX,
                          CONFIG_NAMES_BYTES_MAX / 1024);
        else if (r < 0)
                key_error(l, s, e, "cannot read the %s database for %s: %s", users ? "passwd" : "group",
                          users ? "$User.Name" : "$User.Group and $User.Groups", strerror(-r));
        return r;
}

/* The name tables that the loaded formulas need (config.h, struct config). */
static void load_names(struct loader *l) {
        size_t bytes = 0;

        if (l->users_section && build_name_table(l, true, &bytes) == -ENOMEM)
                return;
        if (l->groups_section)
                (void) build_name_table(l, false, &bytes);
}

static int error_compare(const void *a, const void *b) {
        const struct error *x = a, *y = b;

        if (x->file != y->file)
                return x->file < y->file ? -1 : 1;
        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int loader_format_errors(struct loader *l, char **ret) {
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        qsort(l->errors, l->n_errors, sizeof *l->errors, error_compare);

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_errors; i++) {
                const struct error *e = &l->errors[i];

                if (e->line > 0)
                        fprintf(f, "%s:%u: %s\n", l->files[e->file], e->line, e->msg);
                else
                        fprintf(f, "%s: %s\n", l->files[e->file], e->msg);
        }
        if (fclose(f) != 0) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        return 0;
}

static void loader_done(struct loader *l) {
        tdestroy(l->seen, free_nothing);
        for (size_t i = 0; i < l->n_files; i++)
                free(l->files[i]);
        free(l->files);
        for (size_t i = 0; i < l->n_sections; i++)
                section_free(l->sections[i]);
        free(l->sections);
        for (size_t i = 0; i < l->n_errors; i++)
                free(l->errors[i].msg);
        free(l->errors);
        for (size_t i = 0; i < l->n_principals; i++)
                config_principal_free(l->principals[i].p);
        free(l->principals);
        config_free(l->config);
}

static int config_defaults(struct config *c) {
        size_t n = 0;

        if (!c->socket) {
                c->socket = config_default_socket();
                if (!c->socket)
                        return -ENOMEM;
        }
        if (!c->module_dirs) {
                while (hsm_default_module_dirs[n])
                        n++;
                c->module_dirs = calloc(n + 1, sizeof *c->module_dirs);
                if (!c->module_dirs)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        c->module_dirs[i] = strdup(hsm_default_module_dirs[i]);
                        if (!c->module_dirs[i])
                                return -ENOMEM;
                }
        }
        return 0;
}

static int load_dropins(struct loader *l, const char *path) {
        _cleanup_free_ char *copy = NULL, *dir = NULL;
        char **dropins = NULL;
        size_t n = 0, file;
        const char *parent;
        int r;

        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        parent = dirname(copy);
        if (asprintf(&dir, "%s%sconf.d", parent, parent[strlen(parent) - 1] == '/' ? "" : "/") < 0) {
                dir = NULL;
                return -ENOMEM;
        }

        r = list_dropins(dir, &dropins, &n);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                r = loader_add_file(l, dir, &file);
                if (r < 0)
                        return r;
                loader_error(l, file, 0, "cannot read the directory: %s",
                             r == -E2BIG ? "too many files" : strerror(-r));
                return 0;
        }

        for (size_t i = 0; i < n; i++) {
                r = loader_parse_file(l, dropins[i]);
                if (r == -ENOMEM)
                        break;
                r = 0; /* unreadable drop-ins are reported, and the rest are still read */
        }
        config_strv_free(dropins);
        return r;
}

int config_load(const char *path, unsigned flags, struct config **ret, char **ret_errors) {
        struct loader l = { .flags = flags };
        int r;

        if (!path || !ret)
                return -EINVAL;

        l.config = calloc(1, sizeof *l.config);
        if (!l.config)
                return -ENOMEM;
        l.config->path = strdup(path);
        if (!l.config->path) {
                r = -ENOMEM;
                goto finish;
        }

        r = loader_parse_file(&l, path);
        if (r == -ENOMEM)
                goto finish;
        if (r < 0) {
                /* The main file could not be read at all: keep its errno (ENOENT, EACCES…). */
                if (ret_errors && loader_format_errors(&l, ret_errors) < 0)
                        *ret_errors = NULL;
                goto finish;
        }

        r = load_dropins(&l, path);
        if (r < 0)
                goto finish;

        for (size_t i = 0; i < l.n_sections && !l.oom; i++)
                load_section(&l, l.sections[i]);
        if (!l.agent && !l.oom)
                loader_error(&l, 0, 0, "no [agent] section");
        if (!l.oom && !(flags & CONFIG_LOAD_AGENT_ONLY))
                link_principals(&l);
        /* Only for a config that is otherwise valid: reading the databases may take a while. */
        if (!l.oom && l.n_errors == 0 && !(flags & CONFIG_LOAD_AGENT_ONLY))
                load_names(&l);
        if (l.oom) {
                r = -ENOMEM;
                goto finish;
        }

        if (l.n_errors > 0) {
                r = -EINVAL;
                if (ret_errors && loader_format_errors(&l, ret_errors) < 0)
                        r = -ENOMEM;
                goto finish;
        }

        r = config_defaults(l.config);
        if (r < 0)
                goto finish;

        *ret = TAKE_PTR(l.config);
        r = 0;

finish:
        loader_done(&l);
        return r;
}
