/* SPDX-License-Identifier: ISC */
#pragma once

#include "ipc/client.h"

/* Pieces of credctl's agent commands (token, refresh in credctl; whoami in credctl-admin)
 * that talk to the agent over its socket.  libc, json-c and ipc/client.c only: credctl links
 * this into its static token path. */

/* How long credctl waits for the agent, in seconds: longer than the longest token request
 * timeout. */
#define CREDCTL_TIMEOUT 330

/* Sends METHOD PATH with optional JSON BODY (NULL for none) to the agent on SOCKET_ARG, or
 * the socket client_socket_path() picks when SOCKET_ARG is NULL, waiting at most
 * CREDCTL_TIMEOUT seconds.  Any HTTP status is a success: returns 0 and fills *RET (release
 * with client_response_clear()).  On failure (out of memory, no agent, an answer that is not
 * HTTP, …) prints "credctl: …" with the reason to stderr, returns 1 and leaves *RET untouched. */
int credctl_call(const char *socket_arg, const char *method, const char *path, const char *body,
                 struct client_response *ret);

/* Prints the agent's error answer RESP ({"error", "error_description", "idp_error"},
 * ipc/PROTOCOL.md) to stderr as "credctl: ERROR (HTTP STATUS): DESCRIPTION [IdP said: …]";
 * a body that is not JSON prints as "error".  Returns 1 (the exit status). */
int credctl_print_error_answer(const struct client_response *resp);
