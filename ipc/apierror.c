/* SPDX-License-Identifier: ISC */
#include "ipc/apierror.h"

static const struct {
        const char *name;
        unsigned status;
} table[_API_ERROR_MAX] = {
        [API_OK] = { "ok", 200 },
        [API_ACCESS_DENIED] = { "access_denied", 403 },
        [API_UNKNOWN_CREDENTIAL] = { "unknown_credential", 404 },
        [API_IDP_ERROR] = { "idp_error", 502 },
        [API_HSM_UNAVAILABLE] = { "hsm_unavailable", 503 },
        [API_IDP_TIMEOUT] = { "idp_timeout", 504 },
        [API_INVALID_REQUEST] = { "invalid_request", 400 },
        [API_NOT_FOUND] = { "not_found", 404 },
        [API_METHOD_NOT_ALLOWED] = { "method_not_allowed", 405 },
        [API_SERVER_BUSY] = { "server_busy", 503 },
        [API_NOT_REFRESHABLE] = { "not_refreshable", 409 },
};

const char *api_error_name(enum api_error e) {
        return (unsigned) e < _API_ERROR_MAX ? table[e].name : "server_error";
}

unsigned api_error_status(enum api_error e) {
        return (unsigned) e < _API_ERROR_MAX ? table[e].status : 500;
}
