/* SPDX-License-Identifier: ISC */
/* credagent-front: the front process's program (agent/frontproc.h), started by credagent
 * with its fds in place (agent/procutil.h); it maps libmicrohttpd and json-c, not libcurl
 * or the PKCS#11 module. */
#include "agent/config.h"
#include "agent/frontproc.h"
#include "agent/procutil.h"

int main(int argc, char **argv) {
        struct config *cfg = NULL;

        if (proc_child_start(argc, argv, "credagent-front", PROC_FRONT_SUPER_FD, CHAN_SUPER_FRONT, &cfg) < 0)
                return 1;
        /* frontproc() takes CFG over. */
        return frontproc(cfg, PROC_FRONT_LISTEN_FD, PROC_FRONT_NET_FD, PROC_FRONT_HSM_FD, PROC_FRONT_SUPER_FD);
}
