/* SPDX-License-Identifier: ISC */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Caller → principal mapping.  Pure: no I/O, no logging, no allocation.
 *
 * A caller is described by the peer credentials the kernel gave at connect time
 * (SO_PEERCRED, SO_PEERGROUPS).  A principal's rule matches when every selector it has
 * matches; among the matching principals of one credential the one with the lowest
 * sequence wins (DESIGN.md, "A token request"). */

/* Cap on supplementary groups kept per caller (the kernel's NGROUPS_MAX is 65536). */
#define PEER_GROUPS_MAX 256

/* uid the kernel reports for a peer in a user namespace that has no mapping. */
#define PEER_OVERFLOW_UID 65534

struct peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;                      /* primary group */
        size_t n_groups;                /* supplementary groups, from SO_PEERGROUPS */
        gid_t groups[PEER_GROUPS_MAX];
        bool groups_truncated;          /* more than PEER_GROUPS_MAX: the rest are unknown */
};

/* The selectors of one principal, resolved to numbers when the config was loaded. */
struct policy_rule {
        uint64_t sequence;
        bool any_user;  /* users = *            */
        uid_t *uids;    /* users = alice 1001   */
        size_t n_uids;
        gid_t *gids;    /* groups = ops 2000    */
        size_t n_gids;
};

/* Returns true when PEER is a caller the agent will never serve: pid 0 or the overflow
 * uid 65534, i.e. a peer from another user/pid namespace (DESIGN.md, Secrets and the token). */
bool policy_peer_untrusted(const struct peer *peer);

/* Returns true when every selector of RULE matches PEER: `users` if present contains the
 * peer's uid (or is `*`), `groups` if present contains its primary gid or one of its
 * supplementary gids.  A rule without any selector matches nobody.  An untrusted peer
 * (policy_peer_untrusted()) matches nothing. */
bool policy_rule_matches(const struct policy_rule *rule, const struct peer *peer);

/* Picks, among RULES[0..N), the matching rule with the lowest sequence.
 * Returns 0 and stores its index in *RET_INDEX, or -EPERM when none matches
 * (*RET_INDEX untouched).  Sequences are unique within a credential (config
 * validation), so the choice is deterministic. */
int policy_select(const struct policy_rule *const *rules, size_t n, const struct peer *peer, size_t *ret_index);
