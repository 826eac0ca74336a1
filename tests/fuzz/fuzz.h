/* SPDX-License-Identifier: ISC */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The libFuzzer entry points (https://llvm.org/docs/LibFuzzer.html).  Each fuzz-*.c defines
 * LLVMFuzzerTestOneInput(); with -Dfuzz=false, replay.c supplies main() and runs it over a
 * corpus.  A finding aborts the process (abort(), a sanitizer report). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Aborts with a message when COND is false: an oracle of a fuzz target. */
#define FUZZ_CHECK(cond)                                                                \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                        \
                }                                                                       \
        } while (0)
