/* SPDX-License-Identifier: ISC */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *ident = "credagent";
static bool use_syslog;
static log_writer_t writer;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_ident(const char *s) {
        ident = s;
}

void log_set_writer(log_writer_t w) {
        writer = w;
}

void log_open_syslog(void) {
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
        use_syslog = true;
}

static const char *level_name(int level) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
                [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
        };
        return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

int log_internal(int level, int error, const char *file, int line, const char *format, ...) {
        int saved_errno = errno;
        int e = error < 0 ? -error : error;

        if (level > max_level)
                return -e;

        char buf[1024];
        va_list ap;
        va_start(ap, format);
        errno = e; /* for %m */
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        if (writer) {
                pthread_mutex_lock(&log_lock);
                writer(level, buf);
                pthread_mutex_unlock(&log_lock);
        } else if (use_syslog)
                syslog(level, "%s", buf);
        else {
                struct timespec ts;
                struct tm tm;
                char when[32];

                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
                pthread_mutex_lock(&log_lock);
                if (max_level >= LOG_DEBUG)
                        fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s (%s:%d)\n", when, ts.tv_nsec / 1000000,
                                ident, (int) getpid(), level_name(level), buf, file, line);
                else
                        fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s\n", when, ts.tv_nsec / 1000000, ident,
                                (int) getpid(), level_name(level), buf);
                pthread_mutex_unlock(&log_lock);
        }
        errno = saved_errno;
        return -e;
}

char *log_escape(const void *in, size_t len, size_t max, char *ret, size_t ret_size) {
        const unsigned char *p = in;
        size_t o = 0;

        if (ret_size == 0)
                return ret;
        for (size_t i = 0; i < len && i < max; i++) {
                char tmp[5];
                size_t n;

                if (p[i] == '"' || p[i] == '\\') {
                        tmp[0] = '\\';
                        tmp[1] = (char) p[i];
                        n = 2;
                } else if (p[i] < 0x20 || p[i] >= 0x7f) {
                        snprintf(tmp, sizeof tmp, "\\x%02x", p[i]);
                        n = 4;
                } else {
                        tmp[0] = (char) p[i];
                        n = 1;
                }
                if (o + n + 4 >= ret_size) {
                        len = i + 1; /* force the truncation mark */
                        max = i;
                        break;
                }
                memcpy(ret + o, tmp, n);
                o += n;
        }
        if (len > max && o + 4 < ret_size) {
                memcpy(ret + o, "\xe2\x80\xa6", 3); /* … */
                o += 3;
        }
        ret[o] = '\0';
        return ret;
}
