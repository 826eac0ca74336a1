/* SPDX-License-Identifier: ISC */
/* agent/config-wire.h: the payload of a MSG_CONFIG.  Oracles: what config_decode() accepts
 * satisfies the invariants the front relies on (rules[i] and principals[i]->credential
 * point where they should, names are set) and re-encodes to exactly the same bytes; on
 * failure *RET is untouched.  Leaks and bad frees show up under the sanitizers. */
#include <errno.h>
#include <string.h>

#include "agent/config-wire.h"
#include "fuzz.h"
#include "ipc/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct config *c = (struct config *) data; /* any non-NULL marker */
        struct buf out;
        int r;

        r = config_decode(data, size, &c);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r < 0) {
                FUZZ_CHECK(c == (struct config *) data);
                return 0;
        }

        for (size_t i = 0; i < c->n_credentials; i++) {
                const struct config_credential *cred = c->credentials[i];

                FUZZ_CHECK(cred && cred->name);
                FUZZ_CHECK(config_find_credential(c, cred->name) == cred);
                for (size_t j = 0; j < cred->n_principals; j++) {
                        const struct config_principal *p = cred->principals[j];

                        FUZZ_CHECK(p && p->name && p->full_name);
                        FUZZ_CHECK(p->credential == cred);
                        FUZZ_CHECK(cred->rules[j] == &p->rule);
                        FUZZ_CHECK(j == 0 || cred->principals[j - 1]->rule.sequence < p->rule.sequence);
                }
        }

        buf_init(&out, MSG_CONFIG_SIZE_MAX);
        r = config_encode(c, &out);
        /* Whatever decodes encodes again to the same bytes (inputs are far under the cap). */
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        if (r == 0) {
                FUZZ_CHECK(out.len == size);
                FUZZ_CHECK(memcmp(out.data, data, size) == 0);
        }
        buf_done(&out);
        config_free(c);
        return 0;
}
