/* SPDX-License-Identifier: ISC */
/* The hsm process's sandbox (docs/privsep.md, Sandbox).  The PKCS#11 module runs in this
 * process: SoftHSM2 reads and rewrites its token files (open O_RDWR|O_CREAT, ftruncate,
 * fcntl locks) and the PIN file is read again at each login; p11-kit-client.so connects to
 * the Unix socket of `p11-kit server`.  No network sockets, no execve(), no fork().  Which
 * files a module needs is the module's business (SoftHSM2's token directory, tpm2-pkcs11's
 * database and /dev/tpmrm0, …), so Landlock only forbids executing anything and creating
 * device nodes, FIFOs, sockets and symlinks. */
#include "agent/sandbox.h"

const struct sandbox_policy sandbox_policy_hsm = {
        .groups = SB_STDIO |
                  SB_THREADS |     /* modules may run threads of their own */
                  SB_UNIX_IO |     /* the channels */
                  SB_UNIX_CLIENT | /* p11-kit-client.so → p11-kit server */
                  SB_FILE_READ |   /* token files, the PIN file at (re)login */
                  SB_FILE_WRITE,   /* SoftHSM2 rewrites token.object at login */
        .fs = SANDBOX_FS_NO_EXEC,
};
