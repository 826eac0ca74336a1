/* SPDX-License-Identifier: ISC */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

/* One logging facility for every program of the project.
 *
 * Library folders (ipc/, policy/, hsm/ helpers, common/) log at debug level at most;
 * process entry points and main() log decisions.  Nothing that logs may be handed a
 * secret, a PIN or an access token: tokens appear only as log_fingerprint() output.
 *
 * Levels are syslog's (LOG_ERR … LOG_DEBUG).  Output goes to stderr by default, to
 * syslog after log_open_syslog().  Messages are capped at 1 KiB. */

void log_set_max_level(int level);
int log_get_max_level(void);
void log_set_ident(const char *ident);
/* Send later messages to syslog(3) (LOG_DAEMON) instead of stderr. */
void log_open_syslog(void);

/* Send later messages to WRITER instead (NULL: back to stderr).  WRITER gets the level and
 * the formatted message without timestamp or ident; it is called under the log lock. */
typedef void (*log_writer_t)(int level, const char *message);
void log_set_writer(log_writer_t writer);

/* Logs one line at LEVEL; if ERROR is non-zero, "%m" in FORMAT expands to
 * strerror(|error|).  Returns -|error| (or 0 when ERROR is 0), so it can be used as
 * `return log_error_errno(r, "…: %m");`. */
int log_internal(int level, int error, const char *file, int line, const char *format, ...) _printf_(5, 6);

#define log_full_errno(level, error, ...) log_internal((level), (error), __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* Writes into RET (at least 9 bytes) the first 8 hex digits of SHA-256(DATA, LEN):
 * the only form in which a token may be logged.  Returns RET. */
char *log_fingerprint(const void *data, size_t len, char ret[static 9]);

/* Copies at most MAX bytes of untrusted IN into RET (size RET_SIZE), escaping
 * quotes, backslashes and non-printable bytes as \xHH, and marking truncation with "…".
 * For quoting caller-supplied or IdP-supplied text in logs.  Returns RET. */
char *log_escape(const void *in, size_t len, size_t max, char *ret, size_t ret_size);
