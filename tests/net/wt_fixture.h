/* SPDX-License-Identifier: MIT */
/*
 * wt_fixture.h: what one integration test holds, so its teardown can release
 * everything even when an assertion failed half-way: a weftd process (with its
 * temporary data directory), the simulated editors and raw WebSocket clients
 * the test made, and a seeded PRNG for replica ids and edits. Also a reader of
 * Prometheus text for /metrics checks. A TLS fixture (wt_fixture_new_tls) makes
 * a self-signed certificate for "localhost" at start, runs weftd with it, and
 * its editors, clients and /metrics go over TLS trusting that certificate. No
 * global state.
 */
#ifndef WEFT_WT_FIXTURE_H
#define WEFT_WT_FIXTURE_H

#include "wt_editor.h"
#include "wt_tls.h"
#include "wt_weftd.h"
#include "wt_ws.h"

#include "../support/test_rng.h"

#define WT_FIXTURE_MAX 64

typedef struct {
    wt_weftd_t server;
    rng_t rng;
    wt_editor_t *editors[WT_FIXTURE_MAX];
    size_t n_editors;
    wt_ws_t *clients[WT_FIXTURE_MAX];
    size_t n_clients;
    int use_tls;         /* 1: weftd serves https:// and wss:// */
    wt_tls_config_t tls; /* client config of a TLS fixture (trusts tls_cert) */
    char tls_cert[600];  /* the certificate and key files, in the data directory */
    char tls_key[600];
} wt_fixture_t;

/*
 * Allocates a fixture seeded with `seed` and starts weftd with `extra_args`
 * (NULL-terminated or NULL) on a fresh data directory. Returns NULL when weftd
 * does not start (the reason is on stderr).
 */
wt_fixture_t *wt_fixture_new(uint64_t seed, const char *const *extra_args);

/*
 * As wt_fixture_new(), but weftd serves TLS: a self-signed certificate for
 * "localhost" (EC P-256) is written to tls-cert.pem and tls-key.pem in the
 * fixture's data directory first and passed with --tls-cert/--tls-key before
 * `extra_args`. Everything the fixture connects then goes over TLS with
 * fx->tls. Returns NULL when the certificate cannot be made or weftd does not
 * start.
 */
wt_fixture_t *wt_fixture_new_tls(uint64_t seed, const char *const *extra_args);

/*
 * A new editor of `doc` with a random replica id, named `name` with a colour from
 * the PRNG, owned by the fixture. With `join` it joins within 10 s and returns
 * NULL if that fails (the error is printed).
 */
wt_editor_t *wt_fixture_editor(wt_fixture_t *fx, const char *doc, const char *name, int join);

/* A raw client owned by the fixture, upgraded to `path`; NULL if the upgrade fails. */
wt_ws_t *wt_fixture_client(wt_fixture_t *fx, const char *path);

/* A random replica id (never 0). */
uint64_t wt_fixture_replica(wt_fixture_t *fx);

/* Disposes of every editor and client, kills weftd, removes its data directory,
 * frees the fixture. Safe with NULL. */
void wt_fixture_free(wt_fixture_t *fx);

/*
 * Reads one sample from Prometheus text: the line whose series is exactly
 * `series` (name plus labels as printed, e.g. `weft_errors_total{code="bad_update"}`).
 * Returns 1 and sets *value when found, 0 otherwise.
 */
int wt_metric(const char *text, const char *series, double *value);

/* Sum of every sample of metric `name` whatever its labels (0 when none). */
double wt_metric_sum(const char *text, const char *name);

/* GETs /metrics of the fixture's server into a malloc'd string (free()), or NULL. */
char *wt_fixture_metrics(wt_fixture_t *fx);

#endif /* WEFT_WT_FIXTURE_H */
