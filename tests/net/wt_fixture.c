/* SPDX-License-Identifier: MIT */
/*
 * wt_fixture.c: the integration tests' fixture and the /metrics reader (see
 * wt_fixture.h).
 */
#define _GNU_SOURCE
#include "wt_fixture.h"
#include "wt_http.h"
#include "wt_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wt_fixture_t *wt_fixture_new(uint64_t seed, const char *const *extra_args)
{
    wt_fixture_t *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        abort();
    rng_init(&fx->rng, seed);
    if (wt_weftd_start(&fx->server, NULL, extra_args, 10000) != 0) {
        wt_fixture_free(fx);
        return NULL;
    }
    return fx;
}

wt_fixture_t *wt_fixture_new_tls(uint64_t seed, const char *const *extra_args)
{
    wt_fixture_t *fx = calloc(1, sizeof *fx);
    const char *args[WT_WEFTD_MAX_ARGS];
    size_t n = 0;
    if (fx == NULL)
        abort();
    rng_init(&fx->rng, seed);
    if (wt_weftd_make_dir(&fx->server) != 0)
        goto fail;
    snprintf(fx->tls_cert, sizeof fx->tls_cert, "%s/tls-cert.pem", fx->server.data_dir);
    snprintf(fx->tls_key, sizeof fx->tls_key, "%s/tls-key.pem", fx->server.data_dir);
    if (wt_tls_make_cert(fx->tls_cert, fx->tls_key, "localhost") != 0) {
        fprintf(stderr, "wt_fixture: cannot make a certificate in %s\n", fx->server.data_dir);
        goto fail;
    }
    fx->use_tls = 1;
    wt_tls_config_init(&fx->tls, fx->tls_cert);
    args[n++] = "--tls-cert";
    args[n++] = fx->tls_cert;
    args[n++] = "--tls-key";
    args[n++] = fx->tls_key;
    for (size_t i = 0; extra_args && extra_args[i] && n + 1 < WT_WEFTD_MAX_ARGS; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;
    if (wt_weftd_start(&fx->server, NULL, args, 10000) != 0)
        goto fail;
    return fx;
fail:
    wt_fixture_free(fx);
    return NULL;
}

uint64_t wt_fixture_replica(wt_fixture_t *fx)
{
    uint64_t r;
    do {
        r = rng_next(&fx->rng) >> 12; /* below 2^53, as JavaScript clients keep them */
    } while (r == 0);
    return r;
}

wt_editor_t *wt_fixture_editor(wt_fixture_t *fx, const char *doc, const char *name, int join)
{
    if (fx->n_editors == WT_FIXTURE_MAX)
        return NULL;
    wt_editor_t *ed = calloc(1, sizeof *ed);
    if (ed == NULL)
        abort();
    char color[8];
    snprintf(color, sizeof color, "#%06x", (unsigned)(rng_next(&fx->rng) & 0xffffff));
    if (wt_editor_init(ed, "127.0.0.1", fx->server.port, doc, wt_fixture_replica(fx), name, color,
                       rng_next(&fx->rng)) != 0) {
        free(ed);
        return NULL;
    }
    if (fx->use_tls)
        ed->ws.tls_config = &fx->tls;
    fx->editors[fx->n_editors++] = ed;
    if (join) {
        int rc = wt_editor_join(ed, 10000);
        if (rc != 0) {
            const wt_error_t *e = wt_editor_error(ed, 0);
            fprintf(stderr, "wt_fixture: editor %s cannot join %s: %s%s%s\n", name, doc,
                    wt_strerror(rc), e ? ": " : "", e ? e->message : "");
            return NULL;
        }
    }
    return ed;
}

wt_ws_t *wt_fixture_client(wt_fixture_t *fx, const char *path)
{
    if (fx->n_clients == WT_FIXTURE_MAX)
        return NULL;
    wt_ws_t *ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        abort();
    wt_ws_init(ws, rng_next(&fx->rng));
    if (fx->use_tls)
        ws->tls_config = &fx->tls;
    fx->clients[fx->n_clients++] = ws;
    int rc = wt_ws_connect(ws, "127.0.0.1", fx->server.port, path, NULL, 10000);
    if (rc != 0) {
        fprintf(stderr, "wt_fixture: cannot upgrade %s: %s (HTTP %d)\n", path, wt_strerror(rc),
                ws->http.status);
        return NULL;
    }
    return ws;
}

void wt_fixture_free(wt_fixture_t *fx)
{
    if (fx == NULL)
        return;
    for (size_t i = 0; i < fx->n_editors; i++) {
        wt_editor_dispose(fx->editors[i]);
        free(fx->editors[i]);
    }
    for (size_t i = 0; i < fx->n_clients; i++) {
        wt_ws_dispose(fx->clients[i]);
        free(fx->clients[i]);
    }
    wt_weftd_cleanup(&fx->server);
    free(fx);
}

int wt_metric(const char *text, const char *series, double *value)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (*p != '#' && strncmp(p, series, n) == 0 && (p[n] == ' ' || p[n] == '\t')) {
            *value = strtod(p + n + 1, NULL);
            return 1;
        }
        p = eol ? eol + 1 : NULL;
    }
    return 0;
}

double wt_metric_sum(const char *text, const char *name)
{
    size_t n = strlen(name);
    double sum = 0;
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (*p != '#' && strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) {
            const char *v = p[n] == '{' ? strchr(p + n, '}') : p + n;
            if (v && (!eol || v < eol))
                sum += strtod(v + 1, NULL);
        }
        p = eol ? eol + 1 : NULL;
    }
    return sum;
}

char *wt_fixture_metrics(wt_fixture_t *fx)
{
    wt_http_resp_t r;
    if (wt_http_request_tls(fx->use_tls ? &fx->tls : NULL, "127.0.0.1", fx->server.port, "GET",
                            "/metrics", NULL, NULL, 0, 5000, &r) != 0)
        return NULL;
    char *s = r.status == 200 ? strdup((const char *)r.body.data) : NULL;
    wt_http_resp_dispose(&r);
    return s;
}
