/* SPDX-License-Identifier: ISC */
#include <errno.h>

#include "policy/policy.h"

bool policy_peer_untrusted(const struct peer *peer) {
        /* pid 0: the peer lives in a pid namespace we cannot see into.  The overflow uid:
         * its user namespace has no mapping for the real uid.  Either way the numbers are
         * not the caller's real identity, so nothing may be decided on them. */
        return !peer || peer->pid == 0 || peer->uid == PEER_OVERFLOW_UID;
}

static bool uid_in(uid_t uid, const uid_t *uids, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (uids[i] == uid)
                        return true;
        return false;
}

static bool gid_in(gid_t gid, const gid_t *gids, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

static bool peer_in_groups(const struct peer *peer, const gid_t *gids, size_t n) {
        size_t n_groups;

        if (gid_in(peer->gid, gids, n))
                return true;

        /* Never trust a count larger than the array: the struct may come from a caller
         * that filled it badly.  Groups past the cap are unknown and so never match. */
        n_groups = peer->n_groups < PEER_GROUPS_MAX ? peer->n_groups : PEER_GROUPS_MAX;
        for (size_t i = 0; i < n_groups; i++)
                if (gid_in(peer->groups[i], gids, n))
                        return true;
        return false;
}

bool policy_rule_matches(const struct policy_rule *rule, const struct peer *peer) {
        bool has_users, has_groups;

        if (!rule || policy_peer_untrusted(peer))
                return false;

        has_users = rule->any_user || rule->n_uids > 0;
        has_groups = rule->n_gids > 0;

        /* A rule that selects nobody in particular must not select everybody. */
        if (!has_users && !has_groups)
                return false;

        if (has_users && !rule->any_user && !uid_in(peer->uid, rule->uids, rule->n_uids))
                return false;

        if (has_groups && !peer_in_groups(peer, rule->gids, rule->n_gids))
                return false;

        return true;
}

int policy_select(const struct policy_rule *const *rules, size_t n, const struct peer *peer, size_t *ret_index) {
        size_t best = 0;
        bool found = false;

        if (!rules && n > 0)
                return -EPERM;

        for (size_t i = 0; i < n; i++) {
                if (!policy_rule_matches(rules[i], peer))
                        continue;
                /* Strictly lower only: on an (invalid) tie the earlier rule stays chosen,
                 * so the answer never depends on anything but the input. */
                if (!found || rules[i]->sequence < rules[best]->sequence) {
                        best = i;
                        found = true;
                }
        }

        if (!found)
                return -EPERM;

        if (ret_index)
                *ret_index = best;
        return 0;
}
