/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <syslog.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/config-wire.h"
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

int proc_child_start(int argc, char **argv, const char *ident, int super_fd, enum msg_channel super_channel,
                     struct config **ret) {
        _cleanup_free_ uint8_t *rbuf = NULL;
        size_t rbuf_size = msg_channel_max(super_channel);
        struct msg_frame fr = { .fd = -1 };
        struct msg_config m;
        int r;

        /* One malloc arena: glibc's per-thread arenas cost memory, and shrinking one opens
         * /proc/sys/vm/overcommit_memory, which the front's filter forbids (a burst of
         * connections got the front killed with SIGSYS). */
        mallopt(M_ARENA_MAX, 1);
        log_set_ident(ident);
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--debug") == 0)
                        log_set_max_level(LOG_DEBUG);
                else {
                        log_error("Unknown argument \"%s\" (%s is started by credagent)", argv[i], ident);
                        return -EINVAL;
                }
        }
        if (fcntl(super_fd, F_GETFD) < 0) {
                log_error("No channel on fd %d: %s is started by credagent, not by hand", super_fd, ident);
                return -EBADF;
        }
        rbuf = malloc(rbuf_size);
        if (!rbuf)
                return log_error_errno(-ENOMEM, "Out of memory");
        r = msg_recv(super_fd, super_channel, true, rbuf, rbuf_size, &fr);
        if (r >= 0 && fr.type != MSG_HELLO)
                r = -EPROTO;
        if (r >= 0)
                r = proc_check_hello(&fr);
        if (r < 0)
                return log_error_errno(r == -ENOTSOCK ? -EBADF : r,
                                       "The supervisor's first frame is not its hello (%s must come from the same build as credagent): %m",
                                       ident);
        r = msg_recv(super_fd, super_channel, true, rbuf, rbuf_size, &fr);
        if (r >= 0 && fr.type != MSG_CONFIG)
                r = -EPROTO;
        if (r >= 0)
                r = msg_config_decode(fr.payload, fr.len, &m);
        if (r >= 0)
                r = config_receive(fr.fd, &m, ret);
        proc_close(&fr.fd);
        if (r < 0)
                return log_error_errno(r, "Cannot read the configuration from the supervisor: %m");
        /* Give back what decoding took beyond the config itself. */
        (void) malloc_trim(0);
        return 0;
}
