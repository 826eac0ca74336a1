/* SPDX-License-Identifier: ISC */
/* credagent-hsm: the hsm process's program (hsm/hsmproc.h), started by credagent with its
 * fds in place (agent/procutil.h); the only one that loads the PKCS#11 module, holding only
 * the [agent] part of the configuration. */
#include "agent/config.h"
#include "agent/procutil.h"
#include "hsm/hsmproc.h"

int main(int argc, char **argv) {
        _cleanup_(config_freep) struct config *cfg = NULL;

        if (proc_child_start(argc, argv, "credagent-hsm", PROC_HSM_SUPER_FD, CHAN_SUPER_HSM, &cfg) < 0)
                return 1;
        return hsmproc(cfg, PROC_HSM_FRONT_FD, PROC_HSM_NET_FD, PROC_HSM_SUPER_FD);
}
