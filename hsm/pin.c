/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsm/error.h"
#include "hsm/pin.h"
#include "log.h"

/* Opens the file the PIN source names, checks it, and returns its fd. */
static int pin_open(const char *pin_source, int *ret_fd, char **ret_error) {
        _cleanup_free_ char *cred_path = NULL;
        _cleanup_close_ int fd = -1;
        const char *path;
        bool credential;
        struct stat st;
        mode_t forbidden;

        if (!pin_source)
                return hsm_error_setf(ret_error, -EINVAL, "no pin_source given");

        if (strncmp(pin_source, "file:", 5) == 0) {
                credential = false;
                path = pin_source + 5;
                if (path[0] != '/')
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "pin_source \"%s\": the path must be absolute", pin_source);
        } else if (strncmp(pin_source, "credential:", 11) == 0) {
                const char *name = pin_source + 11, *dir;

                credential = true;
                if (name[0] == '\0' || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "pin_source \"%s\": a credential name is a plain file name",
                                              pin_source);
                dir = secure_getenv("CREDENTIALS_DIRECTORY");
                if (!dir || dir[0] != '/')
                        return hsm_error_setf(ret_error, -EINVAL,
                                              "pin_source \"%s\": $CREDENTIALS_DIRECTORY is not set to an absolute path "
                                              "(systemd sets it for a unit with LoadCredential=)", pin_source);
                if (asprintf(&cred_path, "%s/%s", dir, name) < 0) {
                        cred_path = NULL;
                        return -ENOMEM;
                }
                path = cred_path;
        } else
                return hsm_error_setf(ret_error, -EINVAL,
                                      "pin_source \"%s\": must begin with \"file:\" or \"credential:\"", pin_source);

        /* O_NONBLOCK so that a FIFO put in the file's place does not block us before
         * fstat() refuses it; it does not affect reading a regular file. */
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                int e = errno;
                return hsm_error_setf(ret_error, -EINVAL, "PIN file \"%s\": %s", path,
                                      e == ELOOP ? "is a symbolic link" : strerror(e));
        }
        if (fstat(fd, &st) < 0)
                return hsm_error_setf(ret_error, -EINVAL, "PIN file \"%s\": %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return hsm_error_setf(ret_error, -EINVAL, "PIN file \"%s\" is not a regular file", path);
        if (st.st_uid != geteuid() && !(credential && st.st_uid == 0))
                return hsm_error_setf(ret_error, -EINVAL, "PIN file \"%s\" is owned by uid %u, not by uid %u",
                                      path, (unsigned) st.st_uid, (unsigned) geteuid());
        forbidden = credential ? (S_IWGRP | S_IXGRP | S_IRWXO) : (S_IRWXG | S_IRWXO);
        if (st.st_mode & forbidden)
                return hsm_error_setf(ret_error, -EINVAL,
                                      "PIN file \"%s\" has mode %04o; it must not be accessible to group or others "
                                      "(chmod 0600)", path, (unsigned) (st.st_mode & 07777));

        *ret_fd = TAKE_FD(fd);
        return 0;
}

int pin_check(const char *pin_source, char **ret_error) {
        _cleanup_close_ int fd = -1;

        return pin_open(pin_source, &fd, ret_error);
}

int pin_read(const char *pin_source, struct secbuf **ret, char **ret_error) {
        _cleanup_secbuf_ struct secbuf *b = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        r = pin_open(pin_source, &fd, ret_error);
        if (r < 0)
                return r;

        /* Room for PIN_MAX bytes, a "\r\n", and one more byte to notice an overlong file. */
        b = secbuf_new(PIN_MAX + 3);
        if (!b)
                return -ENOMEM;
        while (b->len < b->cap) {
                ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return hsm_error_setf(ret_error, -EINVAL, "reading PIN from %s: %s", pin_source,
                                              strerror(errno));
                }
                if (n == 0)
                        break;
                b->len += (size_t) n;
        }
        b->data[b->len] = '\0';

        if (b->len > 0 && b->data[b->len - 1] == '\n') {
                b->data[--b->len] = '\0';
                if (b->len > 0 && b->data[b->len - 1] == '\r')
                        b->data[--b->len] = '\0';
        }
        if (b->len == 0)
                return hsm_error_setf(ret_error, -EINVAL, "PIN from %s is empty", pin_source);
        if (b->len > PIN_MAX)
                return hsm_error_setf(ret_error, -EINVAL, "PIN from %s is longer than %d bytes", pin_source, PIN_MAX);
        if (memchr(b->data, '\0', b->len))
                return hsm_error_setf(ret_error, -EINVAL, "PIN from %s contains a NUL byte", pin_source);

        *ret = TAKE_PTR(b);
        return 0;
}
