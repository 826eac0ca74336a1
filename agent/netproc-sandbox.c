/* SPDX-License-Identifier: ISC */
/* The net process's sandbox (docs/privsep.md, Sandbox).  libcurl + OpenSSL: outbound TCP
 * (and UDP for DNS) to the token endpoints, name resolution, reading the CA bundle and the
 * resolver's files.  No execve(), fork() or ptrace(), no file writes, no listening, no
 * AF_UNIX sockets to local daemons (glibc's nscd client gets EAFNOSUPPORT and falls back). */
#include <stddef.h>

#include "agent/sandbox.h"

/* What glibc's resolver and OpenSSL's certificate lookup read after start-up.  The CA bundle
 * named by the config is added at run time (fs_read_extra). */
static const char *const net_read[] = {
        "/etc/hosts",
        "/etc/resolv.conf",   /* a symlink is followed: the rule is on its target */
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/etc/ssl/certs",                   /* curl's default CA path: hashed links … */
        "/usr/share/ca-certificates",       /* … to these */
        "/usr/local/share/ca-certificates",
        NULL,
};

const struct sandbox_policy sandbox_policy_net = {
        .groups = SB_STDIO |
                  SB_THREADS |     /* libcurl's threaded resolver: one thread per lookup */
                  SB_UNIX_IO |     /* the channels; poll; curl's wake-up socketpair */
                  SB_INET_CLIENT | /* TCP to the IdP, UDP to the DNS server, netlink for getaddrinfo */
                  SB_FILE_READ,    /* resolver files, CA bundle, hashed CA path */
        .fs = SANDBOX_FS_PATHS,
        .fs_read = net_read,
};
