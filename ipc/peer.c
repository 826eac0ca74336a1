/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ipc/peer.h"

int peer_from_fd(int fd, struct peer *ret) {
        struct ucred uc;
        socklen_t len = sizeof uc;
        struct peer p = {};

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
                return -errno;
        if (len != sizeof uc)
                return -EIO;
        p.pid = uc.pid;
        p.uid = uc.uid;
        p.gid = uc.gid;

        /* SO_PEERGROUPS: ERANGE tells the size needed; keep what fits, note the rest. */
        len = sizeof p.groups;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p.groups, &len) < 0) {
                if (errno != ERANGE)
                        return -errno;
                gid_t *all = malloc(len);
                if (!all)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, all, &len) < 0) {
                        int r = -errno;
                        free(all);
                        return r;
                }
                memcpy(p.groups, all, sizeof p.groups);
                free(all);
                p.n_groups = PEER_GROUPS_MAX;
                p.groups_truncated = true;
        } else
                p.n_groups = len / sizeof(gid_t);

        *ret = p;
        return 0;
}
