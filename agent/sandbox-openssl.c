/* SPDX-License-Identifier: ISC */
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "agent/sandbox.h"
#include "log.h"

void sandbox_warm_up_openssl(void) {
        unsigned char byte;

        if (RAND_bytes(&byte, 1) != 1)
                log_debug("Warm-up: RAND_bytes() failed");
        OPENSSL_cleanse(&byte, sizeof byte);
}
