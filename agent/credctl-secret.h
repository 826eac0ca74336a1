/* SPDX-License-Identifier: ISC */
#pragma once

#include "agent/config.h"

/* `credctl secret …`: the client secrets kept in the PKCS#11 token, written and removed
 * directly through hsm/ (never through the agent), using the [agent] module, module_dirs,
 * token and pin_source of CFG (loaded with CONFIG_LOAD_AGENT_ONLY).
 *
 *   secret put LABEL [--replace]
 *       LABEL is CRED.PRINCIPAL: two names joined by one dot, each following the name
 *       rule (policy/names.h).  The secret is read from standard input, never from argv or
 *       the environment: from a terminal, after the prompt "Secret for LABEL: " on
 *       standard error with echo turned off (and restored, also on SIGINT, SIGTERM,
 *       SIGHUP and SIGQUIT), up to the end of the line; otherwise up to end of file.
 *       One trailing "\n" or "\r\n" is removed.  The secret must be 1 … HSM_SECRET_MAX
 *       bytes with no control character (RFC 6749 Appendix A.2: a client secret is
 *       printable text).  --replace removes an existing secret of that label first (if
 *       writing the new one then fails, the old one is gone: the message says so).
 *       Prints the object URI on standard output, one line, and on standard error the
 *       hint "put this in [principal LABEL]: client_secret = URI".
 *   secret ls
 *       Prints the labels of the secrets credctl wrote (CKA_APPLICATION "credagent"), one
 *       per line, sorted.  Never reads a value.
 *   secret rm LABEL
 *       Removes the secret LABEL; an unknown label is an error.
 *
 * ARGV[0] is "secret", ARGV[1] the subcommand.  Errors go to standard error as
 * "credctl: …", naming what went wrong (wrong PIN, token not found, module not allowed,
 * …) and never containing a secret or a PIN.  Returns the exit status: 0 success,
 * 1 failure, 2 usage error. */
int credctl_secret_main(const struct config *cfg, int argc, char **argv);
