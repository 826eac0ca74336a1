/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/procutil.h"
#include "agent/sandbox.h"
#include "log.h"

void proc_close(int *fd) {
        if (*fd >= 0) {
                close(*fd);
                *fd = -1;
        }
}

int proc_set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

void proc_send_hello(int fd, enum msg_role role) {
        struct msg_hello h = { .version = MSG_VERSION, .role = (uint8_t) role };
        struct buf b;
        int r;

        if (fd < 0)
                return;
        buf_init(&b, 64);
        r = msg_hello_encode(&h, &b);
        if (r == 0)
                r = msg_send(fd, &b, -1);
        if (r < 0)
                log_debug_errno(r, "Sending hello failed: %m");
        buf_done(&b);
}

int proc_check_hello(const struct msg_frame *f) {
        struct msg_hello h;
        int r = msg_hello_decode(f->payload, f->len, &h);

        if (r < 0)
                return -EPROTO;
        if (h.version != MSG_VERSION) {
                log_error("peer %s speaks protocol version %u, not %u", msg_role_name(h.role), h.version, MSG_VERSION);
                return -EPROTO;
        }
        return 0;
}

void proc_report_peer_fault(enum msg_role peer, const char *name, int error) {
        log_error_errno(error, "Dropping the %s channel after a bad frame: %m", name);
        (void) kill(getppid(), SIGRTMIN + (int) peer);
}

int proc_signalfd(void) {
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
                return -EINVAL;
        fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

bool proc_signal_wants_exit(int sfd) {
        struct signalfd_siginfo si;
        bool exit_wanted = false;

        while (read(sfd, &si, sizeof si) == (ssize_t) sizeof si)
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                        exit_wanted = true;
        return exit_wanted;
}

void proc_test_hooks(const char *process) {
#ifdef CREDAGENT_TEST_HOOKS
        sandbox_test_hook_install(process);
#else
        (void) process;
#endif
}
