/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>

#include "ipc/msg.h"

/* Small pieces every credagent process uses around its channels (ipc/PROTOCOL.md). */

/* Closes *FD if it is open and sets it to -1. */
void proc_close(int *fd);

/* Sets O_NONBLOCK on FD.  Returns 0 or a negative errno. */
int proc_set_nonblock(int fd);

/* Sends MSG_HELLO {MSG_VERSION, ROLE} on FD if FD ≥ 0; a failure is logged at debug level
 * (the peer's absence shows up as EOF on its own). */
void proc_send_hello(int fd, enum msg_role role);

/* Checks a received MSG_HELLO frame.  Returns 0, or -EPROTO for another protocol version
 * or a malformed hello. */
int proc_check_hello(const struct msg_frame *f);

/* Reports a protocol violation (or an unreadable frame) by the peer of role PEER: logs it
 * with NAME and ERROR and asks the supervisor, with signal SIGRTMIN + PEER sent to the
 * parent, to restart that peer.  The caller drops the channel. */
void proc_report_peer_fault(enum msg_role peer, const char *name, int error);

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it creates later)
 * and returns a non-blocking signalfd for them, or a negative errno. */
int proc_signalfd(void);

/* Reads the pending signals of SFD.  Returns true when one of them asks to exit
 * (SIGTERM, SIGINT); SIGHUP is ignored by the children (the supervisor handles reloads). */
bool proc_signal_wants_exit(int sfd);

/* With -Dtest_hooks=true: installs the hook that makes PROCESS try a forbidden syscall on
 * SIGUSR2 (agent/sandbox.h).  Otherwise does nothing. */
void proc_test_hooks(const char *process);

struct config;

/* The fds of the children's programs (credagent-front, -net, -hsm), as agent/main.c places
 * them before it execs one: the listening socket (front only), then its channels in the
 * order of the edges front–net, front–hsm, net–hsm, then the supervisor's channel. */
enum {
        PROC_FRONT_LISTEN_FD = 3, PROC_FRONT_NET_FD = 4, PROC_FRONT_HSM_FD = 5, PROC_FRONT_SUPER_FD = 6,
        PROC_NET_FRONT_FD = 3, PROC_NET_HSM_FD = 4, PROC_NET_SUPER_FD = 5,
        PROC_HSM_FRONT_FD = 3, PROC_HSM_NET_FD = 4, PROC_HSM_SUPER_FD = 5,
};

/* The start of a child's program, before its process function: sets one malloc arena, the
 * log ident IDENT and, with "--debug" in ARGV, debug logging; then reads, blocking on
 * SUPER_FD (channel SUPER_CHANNEL), the supervisor's MSG_HELLO (which must carry
 * MSG_VERSION: the programs of one agent must be of one build) and the MSG_CONFIG that
 * follows it (config_receive()).  Stores the config in *RET (the caller's to free).
 * Returns 0, or a negative errno after logging why: -EBADF when SUPER_FD is not a channel
 * (the program was run by hand, not by credagent), -EPROTO for another version or any other
 * first frames, -EINVAL for an unknown argument, or config_receive()'s errors. */
int proc_child_start(int argc, char **argv, const char *ident, int super_fd, enum msg_channel super_channel,
                     struct config **ret);
