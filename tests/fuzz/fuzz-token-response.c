/* SPDX-License-Identifier: ISC */
/* agent/oauth.h: oauth_parse_token_response(), the token endpoint's answer.  Input: byte 0
 * picks the HTTP status, byte 1 the Content-Type (low nibble) and the default_ttl/max_ttl
 * pair (high nibble); the rest is the body.  Oracles: the rules of oauth.h — a token is
 * non-empty visible ASCII of at most OAUTH_TOKEN_MAX bytes with 1 ≤ expires_in ≤ max_ttl,
 * only a 200 gives a token, an IdP error code is non-empty and sanitised, descriptions are
 * terminated, and a cleared result holds nothing. */
#include <errno.h>
#include <string.h>

#include "agent/oauth.h"
#include "fuzz.h"

static const long statuses[] = { 200, 400, 401, 403, 429, 201, 204, 301, 302, 500, 503, 0, 199, 499, 600, -1 };
static const char *const content_types[] = {
        NULL, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/html",
        "application/problem+json", "text/plain", "",
};
static const uint32_t ttls[][2] = { { 300, 86400 }, { 1, 1 }, { 3600, 60 }, { UINT32_MAX, UINT32_MAX }, { 1, UINT32_MAX } };

static bool visible_ascii(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x21 || s[i] > 0x7e)
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct oauth_result res;
        uint32_t default_ttl, max_ttl;
        const char *content_type;
        long status;
        int r;

        if (size < 2)
                return 0;
        status = statuses[data[0] % ELEMENTSOF(statuses)];
        content_type = content_types[(data[1] & 0x0f) % ELEMENTSOF(content_types)];
        default_ttl = ttls[(data[1] >> 4) % ELEMENTSOF(ttls)][0];
        max_ttl = ttls[(data[1] >> 4) % ELEMENTSOF(ttls)][1];

        memset(&res, 0xa5, sizeof res);
        r = oauth_parse_token_response(status, content_type, data + 2, size - 2, default_ttl, max_ttl, &res);
        FUZZ_CHECK(r == 0 || r == -ENOMEM);
        FUZZ_CHECK(res.http_status == status);
        FUZZ_CHECK(memchr(res.description, '\0', sizeof res.description));
        FUZZ_CHECK(memchr(res.error_code, '\0', sizeof res.error_code));

        switch (res.outcome) {
        case OAUTH_OK: {
                size_t n;

                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(status == 200);
                FUZZ_CHECK(res.access_token);
                n = strlen(res.access_token);
                FUZZ_CHECK(n > 0 && n <= OAUTH_TOKEN_MAX && visible_ascii(res.access_token, n));
                FUZZ_CHECK(res.expires_in >= 1 && res.expires_in <= max_ttl);
                break;
        }
        case OAUTH_IDP_ERROR: {
                size_t n = strlen(res.error_code);

                FUZZ_CHECK(status >= 400 && status <= 499);
                FUZZ_CHECK(!res.access_token);
                FUZZ_CHECK(n > 0 && n <= OAUTH_ERROR_CODE_MAX);
                for (size_t i = 0; i < n; i++)
                        FUZZ_CHECK(res.error_code[i] >= 0x20 && res.error_code[i] <= 0x7e &&
                                   res.error_code[i] != '"' && res.error_code[i] != '\\');
                break;
        }
        case OAUTH_BAD_RESPONSE:
        case OAUTH_LOCAL_ERROR:
                FUZZ_CHECK(!res.access_token);
                FUZZ_CHECK(res.description[0] != '\0');
                break;
        default:
                FUZZ_CHECK(!"an outcome a parse never gives");
        }

        oauth_result_clear(&res);
        FUZZ_CHECK(!res.access_token && !res.scope);
        return 0;
}
