/* SPDX-License-Identifier: ISC */
#pragma once

/* The stable error names of the socket API (DESIGN.md, Wire protocol), in RFC 6749 §5.2
 * style: every error answer is {"error": NAME, "error_description": TEXT} with the HTTP
 * status of the table.  Numbers and names are never reused. */
enum api_error {
        API_OK = 0,
        API_ACCESS_DENIED,      /* 403: no principal of the credential matches the caller */
        API_UNKNOWN_CREDENTIAL, /* 404 */
        API_IDP_ERROR,          /* 502: the token endpoint failed or refused (idp_error carries its §5.2 code) */
        API_HSM_UNAVAILABLE,    /* 503: the token, its session or the secret object could not be used */
        API_IDP_TIMEOUT,        /* 504 */
        API_INVALID_REQUEST,    /* 400 */
        API_NOT_FOUND,          /* 404: no such path */
        API_METHOD_NOT_ALLOWED, /* 405 */
        API_SERVER_BUSY,        /* 503: too many token requests in flight */
        API_NOT_REFRESHABLE,    /* 409: the reported status does not force a refresh */
        _API_ERROR_MAX,
};

/* Returns the wire name ("access_denied", …) of E; "server_error" for an out-of-range value. */
const char *api_error_name(enum api_error e);

/* Returns the HTTP status code for E (200 for API_OK, 500 for an out-of-range value). */
unsigned api_error_status(enum api_error e);
