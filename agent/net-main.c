/* SPDX-License-Identifier: ISC */
/* credagent-net: the net process's program (agent/netproc.h), started by credagent with its
 * fds in place (agent/procutil.h); it maps libcurl and OpenSSL, not libmicrohttpd or the
 * PKCS#11 module, and holds only the [agent] part of the configuration. */
#include "agent/config.h"
#include "agent/netproc.h"
#include "agent/procutil.h"

int main(int argc, char **argv) {
        _cleanup_(config_freep) struct config *cfg = NULL;

        if (proc_child_start(argc, argv, "credagent-net", PROC_NET_SUPER_FD, CHAN_SUPER_NET, &cfg) < 0)
                return 1;
        return netproc(cfg, PROC_NET_FRONT_FD, PROC_NET_HSM_FD, PROC_NET_SUPER_FD);
}
