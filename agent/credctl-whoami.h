/* SPDX-License-Identifier: ISC */
#pragma once

/* `credctl whoami`: asks the agent on SOCKET_ARG (NULL: client_socket_path()'s choice) how it
 * sees the caller (GET /v1/whoami: uid, gid, pid, groups, unit, principals; numbers only) and
 * prints that JSON object, pretty-printed, with "user" and "group" added: the names of uid
 * and gid looked up here, as the caller, through NSS (getpwuid(), getgrgid()); null for an id
 * without a name.  It lives in credctl-admin, a dynamically linked program, because NSS
 * modules are shared objects that a statically linked credctl could load only from the very
 * glibc it was linked with.
 *
 * ARGV[0] is "whoami" and takes no argument.  Errors go to standard error as "credctl: …" (an
 * error answer of the agent as credctl_print_error_answer() prints it).  Returns the exit
 * status: 0 success, 1 failure, 2 usage error. */
int credctl_whoami_main(const char *socket_arg, int argc, char **argv);
