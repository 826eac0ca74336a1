/* SPDX-License-Identifier: ISC */
/* agent/config.h: config_load() over an INI file.  The loader has no buffer entry point, so
 * the input is written to a memfd and loaded as /proc/self/fd/N (its conf.d,
 * /proc/self/fd/conf.d, never exists).  Oracles: success and failure are exclusive (a
 * config or an error text), every error line names the file, and a loaded config
 * satisfies config-wire's invariants: it encodes, and decodes to the same bytes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent/config-wire.h"
#include "agent/config.h"
#include "fuzz.h"
#include "ipc/msg.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        log_set_max_level(LOG_CRIT); /* the loader's debug lines are noise here */
        return 0;
}

static void check_wire(const struct config *c) {
        struct config *d = NULL;
        struct buf a, b;
        int r;

        buf_init(&a, MSG_CONFIG_SIZE_MAX);
        r = config_encode(c, &a);
        FUZZ_CHECK(r == 0 || r == -ENOMEM || r == -EMSGSIZE);
        if (r == 0) {
                r = config_decode(a.data, a.len, &d);
                FUZZ_CHECK(r == 0 || r == -ENOMEM);
        }
        if (d) {
                buf_init(&b, MSG_CONFIG_SIZE_MAX);
                r = config_encode(d, &b);
                FUZZ_CHECK(r == 0 || r == -ENOMEM);
                if (r == 0)
                        FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
                buf_done(&b);
                config_free(d);
        }
        buf_done(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct config *c = NULL;
        char *errors = NULL, path[64];
        size_t done = 0;
        int fd, r;

        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        while (done < size) {
                ssize_t k = write(fd, data + done, size - done);

                FUZZ_CHECK(k > 0);
                done += (size_t) k;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        r = config_load(path, 0, &c, &errors);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM || r == -EFBIG);
        if (r == 0) {
                FUZZ_CHECK(c && !errors);
                check_wire(c);
        } else {
                FUZZ_CHECK(!c);
                if (r == -EINVAL) {
                        FUZZ_CHECK(errors && errors[0]);
                        for (const char *l = errors; *l; l = strchr(l, '\n') + 1) {
                                FUZZ_CHECK(strncmp(l, path, strlen(path)) == 0);
                                FUZZ_CHECK(strchr(l, '\n'));
                        }
                }
        }
        free(errors);
        config_free(c);
        close(fd);
        return 0;
}
