/* SPDX-License-Identifier: ISC */
/* log_fingerprint() (common/log.h), apart from the rest of the log so that a process that
 * never computes one (the front: net sends it with each token) links no OpenSSL. */
#include <openssl/sha.h>
#include <stdio.h>

#include "log.h"

char *log_fingerprint(const void *data, size_t len, char ret[static 9]) {
        unsigned char md[SHA256_DIGEST_LENGTH];

        SHA256(data, len, md);
        for (int i = 0; i < 4; i++)
                snprintf(ret + 2 * i, 3, "%02x", md[i]);
        return ret;
}
