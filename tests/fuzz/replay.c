/* SPDX-License-Identifier: ISC */
/* main() for a fuzz target built without libFuzzer (-Dfuzz=false): runs
 * LLVMFuzzerTestOneInput() once over every regular file of each directory (or file) given,
 * so the corpora are replayed by `meson test` as ordinary tests.  Exits 0 after running at
 * least one input; 1 when nothing could be run (a missing or empty corpus is a failure,
 * not a pass); a finding aborts the process. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Optional in a target. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path, size_t *n_run) {
        struct stat st;
        uint8_t *data;
        size_t size = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        /* An exact-size copy, so that reading one byte past the input is caught. */
        data = malloc(st.st_size > 0 ? (size_t) st.st_size : 1);
        if (!data) {
                close(fd);
                return -1;
        }
        while (size < (size_t) st.st_size) {
                ssize_t k = read(fd, data + size, (size_t) st.st_size - size);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        fprintf(stderr, "%s: short read\n", path);
                        free(data);
                        close(fd);
                        return -1;
                }
                size += (size_t) k;
        }
        close(fd);
        fprintf(stderr, "running %s (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput(data, size);
        free(data);
        (*n_run)++;
        return 0;
}

static int compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int run_dir(const char *dir, size_t *n_run) {
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        int r = 0;
        DIR *d;

        d = opendir(dir);
        if (!d) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        while ((de = readdir(d))) {
                char **a;

                if (de->d_name[0] == '.')
                        continue;
                a = realloc(names, (n + 1) * sizeof *names);
                if (!a || asprintf(&a[n], "%s/%s", dir, de->d_name) < 0) {
                        names = a ? a : names;
                        r = -1;
                        break;
                }
                names = a;
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof *names, compare);
        for (size_t i = 0; i < n; i++) {
                struct stat st;

                if (r == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode) && run_file(names[i], n_run) < 0)
                        r = -1;
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char **argv) {
        size_t n_run = 0;
        int r = 0;

        if (LLVMFuzzerInitialize)
                (void) LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        r = -1;
                } else if (S_ISDIR(st.st_mode)) {
                        if (run_dir(argv[i], &n_run) < 0)
                                r = -1;
                } else if (run_file(argv[i], &n_run) < 0)
                        r = -1;
        }
        fprintf(stderr, "%zu input(s) run\n", n_run);
        return r == 0 && n_run > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
