/* SPDX-License-Identifier: ISC */
/* agent/discovery.h: discovery_parse(), an authorization server's metadata document (RFC
 * 8414, OpenID Connect Discovery).  Input: byte 0 picks the configured issuer and
 * allow_insecure_loopback; the rest is the body.  Oracles: an accepted document names exactly
 * the configured issuer, a token endpoint that is https (or http with the flag) of at most
 * MSG_URL_MAX bytes without '#', and at most DISCOVERY_METHODS_MAX methods; a refused one
 * leaves *RET zeroed and a terminated description; discovery_allows() agrees with the list. */
#include <errno.h>
#include <string.h>

#include "agent/discovery.h"
#include "fuzz.h"
#include "ipc/msg.h"

static const char *const issuers[] = {
        "https://idp.example.com", "https://idp.example.com/tenants/t1", "http://127.0.0.1:8080", "https://i",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct discovery_doc d;
        const char *issuer;
        bool insecure;
        char why[257];
        int r;

        if (size < 1)
                return 0;
        issuer = issuers[(data[0] & 0x7f) % ELEMENTSOF(issuers)];
        insecure = data[0] & 0x80;
        memset(&d, 0xa5, sizeof d);
        memset(why, 'x', sizeof why);
        r = discovery_parse(issuer, insecure, data + 1, size - 1, &d, why, sizeof why);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r < 0) {
                FUZZ_CHECK(!d.issuer && !d.token_endpoint && !d.auth_methods);
                FUZZ_CHECK(r == -ENOMEM || memchr(why, '\0', sizeof why));
                return 0;
        }
        FUZZ_CHECK(strcmp(d.issuer, issuer) == 0);
        FUZZ_CHECK(strlen(d.token_endpoint) <= MSG_URL_MAX && !strchr(d.token_endpoint, '#'));
        FUZZ_CHECK(strncmp(d.token_endpoint, "https://", 8) == 0 ||
                   (insecure && strncmp(d.token_endpoint, "http://", 7) == 0));
        if (d.auth_methods) {
                size_t n = 0;
                bool basic = false;

                for (; d.auth_methods[n]; n++)
                        if (strcmp(d.auth_methods[n], "client_secret_basic") == 0)
                                basic = true;
                FUZZ_CHECK(n <= DISCOVERY_METHODS_MAX);
                FUZZ_CHECK(discovery_allows(&d, CLIENT_AUTH_BASIC) == basic);
        } else
                FUZZ_CHECK(discovery_allows(&d, CLIENT_AUTH_POST));
        discovery_doc_clear(&d);
        FUZZ_CHECK(!d.issuer && !d.token_endpoint && !d.auth_methods);
        return 0;
}
