/* SPDX-License-Identifier: MIT */
/*
 * test_limits.c: weftd's limits against hostile input (docs/server.md,
 * "Limits"), each against its own weftd started with a small value of its
 * flag: what the offending client gets (an HTTP status, an ERROR, a close
 * code), that two healthy editors of the same server keep editing and
 * converging meanwhile, and that /metrics counts the refusal
 * (weft_limited_total{limit} and, for ERRORs, weft_errors_total{code}).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_http.h"
#include "wt_net.h"
#include "wt_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT 10000

typedef struct {
    wt_fixture_t *fx;
    wt_editor_t *a, *b;
    int round;
} lim_t;

/* Starts weftd with `args` and two healthy editors of "doc". */
static lim_t *start(uint64_t seed, const char *const *args)
{
    lim_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->fx = wt_fixture_new(seed, args);
    assert_non_null(t->fx);
    t->a = wt_fixture_editor(t->fx, "doc", "ada", 1);
    t->b = wt_fixture_editor(t->fx, "doc", "bob", 1);
    assert_non_null(t->a);
    assert_non_null(t->b);
    return t;
}

static int teardown(void **state)
{
    lim_t *t = *state;
    if (t != NULL) {
        wt_fixture_free(t->fx);
        free(t);
    }
    return 0;
}

/* The healthy editors still edit, hear each other and get no ERROR. */
static void assert_healthy(lim_t *t)
{
    char word[16];
    snprintf(word, sizeof word, "[%d]", t->round++);
    assert_int_equal(wt_editor_insert(t->a, 0, word, NULL), 0);
    assert_int_equal(wt_editor_insert(t->b, 0, "b", NULL), 0);
    wt_editor_t *eds[] = {t->a, t->b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(t->a->state, WT_ED_SYNCED);
    assert_int_equal(t->b->state, WT_ED_SYNCED);
    assert_int_equal(t->a->n_errors, 0);
    assert_int_equal(t->b->n_errors, 0);
}

static double metric(lim_t *t, const char *series)
{
    char *m = wt_fixture_metrics(t->fx);
    assert_non_null(m);
    double v = 0;
    if (!wt_metric(m, series, &v))
        fail_msg("/metrics has no %s", series);
    free(m);
    return v;
}

static double limited(lim_t *t, const char *limit)
{
    char series[96];
    snprintf(series, sizeof series, "weft_limited_total{limit=\"%s\"}", limit);
    return metric(t, series);
}

/* A raw client of /ws/<doc> that said HELLO and read WELCOME. */
static wt_ws_t *raw_client(lim_t *t, const char *doc)
{
    char path[160];
    snprintf(path, sizeof path, "/ws/%s", doc);
    wt_ws_t *ws = wt_fixture_client(t->fx, path);
    assert_non_null(ws);
    assert_int_equal(
        wt_proto_send_hello(ws, PROTO_VERSION, wt_fixture_replica(t->fx), "raw", "#000000"), 0);
    proto_msg_t m;
    assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
    assert_int_equal(m.type, PROTO_WELCOME);
    return ws;
}

/* ---- --max-connections-per-ip ------------------------------------------------ */

static void test_limits_connections_per_ip_get_429(void **state)
{
    static const char *const args[] = {"--max-connections-per-ip", "4", NULL};
    lim_t *t = start(0x11a1, args);
    *state = t;
    /* a and b are two; two more fill the allowance. */
    wt_ws_t *c1 = raw_client(t, "doc");
    raw_client(t, "other");
    wt_ws_t ws;
    wt_ws_init(&ws, 5);
    int rc = wt_ws_connect(&ws, "127.0.0.1", t->fx->server.port, "/ws/doc", NULL, TIMEOUT);
    if (rc != WT_EHTTP || ws.http.status != 429)
        fail_msg("fifth upgrade: %s, HTTP %d (want 429)", wt_strerror(rc), ws.http.status);
    char type[64] = "";
    assert_true(wt_http_header(&ws.http, "content-type", type, sizeof type));
    assert_non_null(strstr(type, "application/json"));
    assert_non_null(strstr((const char *)ws.http.body.data, "\"error\""));
    wt_ws_dispose(&ws);
    assert_int_equal(limited(t, "connections_per_ip"), 1);
    assert_true(metric(t, "weft_ws_rejected_total") >= 1);
    assert_healthy(t);
    /* Other routes are not counted. */
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, "/healthz", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
    /* A closed connection makes room. */
    assert_int_equal(wt_ws_close(c1, 1000, "", TIMEOUT), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    for (;;) {
        wt_ws_init(&ws, 6);
        rc = wt_ws_connect(&ws, "127.0.0.1", t->fx->server.port, "/ws/doc", NULL, TIMEOUT);
        int status = ws.http.status;
        wt_ws_dispose(&ws);
        if (rc == 0)
            break;
        assert_int_equal(status, 429);
        if (wt_ms_left(deadline) <= 0)
            fail_msg("no room after a connection closed");
        usleep(20000);
    }
    assert_healthy(t);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_limits_connections_per_ip_get_429),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
