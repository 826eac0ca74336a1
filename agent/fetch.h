/* SPDX-License-Identifier: ISC */
#pragma once

#include "agent/config.h"
#include "agent/tokcache.h"
#include "hsm/hsm.h"

/* Runs token fetches for the cache: each fetch is one worker thread that reads the
 * principal's client secret from the token (hsm) into locked memory, runs the
 * client-credentials grant (oauth_fetch), wipes the secret and completes the cache entry.
 * The front's event loop never waits for it.  This is the seam along which the hsm and net
 * processes will be split off (DESIGN.md, Processes). */

/* Most fetches running at once; more are refused with -EBUSY (callers get server_busy). */
#define FETCHER_MAX_IN_FLIGHT 64

struct fetcher;

/* Returns a new fetcher using CFG (for ca_file) and HSM, completing entries of CACHE;
 * CACHE may be set later with fetcher_set_cache().  NULL on ENOMEM.  Nothing is owned. */
struct fetcher *fetcher_new(const struct config *cfg, struct hsm *hsm);
void fetcher_set_cache(struct fetcher *f, struct tokcache *cache);

/* A tokcache_fetch_fn: USERDATA is the struct fetcher.  Returns 0, -EBUSY when
 * FETCHER_MAX_IN_FLIGHT fetches run, -ECANCELED after fetcher_shutdown(), -ENOMEM or
 * pthread_create()'s error. */
int fetcher_start(void *userdata, struct tokcache_entry *e, const struct config_principal *p, const char *scope);

/* Aborts running transfers and waits until every worker has completed its entry. */
void fetcher_shutdown(struct fetcher *f);

/* Frees F (after fetcher_shutdown()).  Accepts NULL. */
void fetcher_free(struct fetcher *f);
