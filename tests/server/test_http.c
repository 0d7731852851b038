/* SPDX-License-Identifier: MIT */
/*
 * test_http.c: weftd's HTTP side and process behaviour: /healthz, the shape of
 * /metrics (every series the operators rely on, a well-formed commit
 * histogram), /api/docs/<doc> for a document never written (404 JSON), a
 * written one (200 JSON with "text"), `weftd --help` (exit 0, every flag
 * listed), and SIGINT/SIGTERM exiting 0.
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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT 10000

static int setup(void **state)
{
    wt_fixture_t *fx = wt_fixture_new(0x4770, NULL);
    if (fx == NULL)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    wt_fixture_free(*state);
    return 0;
}

static void test_http_healthz_200(void **state)
{
    wt_fixture_t *fx = *state;
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/healthz", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
}

static void test_http_metrics_shape(void **state)
{
    wt_fixture_t *fx = *state;
    /* Some traffic first, so the counters have something to count. */
    wt_editor_t *a = wt_fixture_editor(fx, "m", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "m", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "metrics", NULL), 0);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);

    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/metrics", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_true(wt_http_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/plain"));
    const char *m = (const char *)r.body.data;
    static const char *const series[] = {
        "weft_connections",        "weft_documents_loaded",     "weft_updates_in_total",
        "weft_updates_out_total",  "weft_bytes_in_total",       "weft_bytes_out_total",
        "weft_commit_seconds_sum", "weft_commit_seconds_count",
    };
    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++) {
        double v;
        if (!wt_metric(m, series[i], &v))
            fail_msg("/metrics lacks %s", series[i]);
    }
    double v;
    assert_true(wt_metric(m, "weft_connections", &v) && v == 2);
    assert_true(wt_metric(m, "weft_documents_loaded", &v) && v == 1);
    assert_true(wt_metric(m, "weft_updates_in_total", &v) && v >= 1);
    assert_true(wt_metric(m, "weft_updates_out_total", &v) && v >= 1);
    assert_true(wt_metric(m, "weft_bytes_in_total", &v) && v > 0);
    assert_true(wt_metric(m, "weft_bytes_out_total", &v) && v > 0);
    assert_true(wt_metric(m, "weft_errors_total{code=\"bad_message\"}", &v) && v == 0);
    assert_true(wt_metric(m, "weft_errors_total{code=\"slow_consumer\"}", &v));
    /* Histogram: cumulative buckets, +Inf equal to the count, at least one commit. */
    double count, inf;
    assert_true(wt_metric(m, "weft_commit_seconds_count", &count));
    assert_true(wt_metric(m, "weft_commit_seconds_bucket{le=\"+Inf\"}", &inf));
    assert_true(count >= 1);
    assert_true(inf == count);
    double prev = 0;
    int buckets = 0;
    for (const char *p = strstr(m, "weft_commit_seconds_bucket{"); p;
         p = strstr(p + 1, "weft_commit_seconds_bucket{")) {
        const char *sp = strchr(p, ' ');
        assert_non_null(sp);
        double bv = strtod(sp + 1, NULL);
        assert_true(bv >= prev);
        prev = bv;
        buckets++;
    }
    assert_true(buckets >= 2);
    /* Every sample line is "name[{labels}] value", and TYPE lines name known types. */
    for (const char *p = m; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < 511 ? len : 511), p);
        if (line[0] == '#') {
            if (strncmp(line, "# TYPE ", 7) == 0)
                assert_true(strstr(line, " counter") || strstr(line, " gauge") ||
                            strstr(line, " histogram") || strstr(line, " summary") ||
                            strstr(line, " untyped"));
        } else if (line[0]) {
            const char *sp = strrchr(line, ' ');
            if (sp == NULL || sp == line)
                fail_msg("bad sample line: %s", line);
            char *end;
            strtod(sp + 1, &end);
            if (*end != 0)
                fail_msg("bad sample value: %s", line);
        }
        p += len + (eol ? 1 : 0);
    }
    wt_http_resp_dispose(&r);
}

static void test_http_doc_never_written_404_written_200(void **state)
{
    wt_fixture_t *fx = *state;
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/api/docs/nobody", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr((const char *)r.body.data, "\"error\""));
    wt_http_resp_dispose(&r);
    wt_editor_t *a = wt_fixture_editor(fx, "somebody", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "say \"hi\"\n", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/api/docs/somebody", TIMEOUT, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body.data, "\"text\":\"say \\\"hi\\\"\\n\""));
    wt_http_resp_dispose(&r);
}

static void test_http_help_exits_0_and_lists_flags(void **state)
{
    (void)state;
    static const char *const args[] = {"--help", NULL};
    char *out = NULL;
    assert_int_equal(wt_run_capture(NULL, args, &out, TIMEOUT), 0);
    static const char *const flags[] = {"--listen",       "--data",         "--web-root",
                                        "--max-message",  "--max-queued",   "--ping-interval",
                                        "--ping-timeout", "--unload-after", "--help"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strstr(out, flags[i]) == NULL)
            fail_msg("weftd --help does not mention %s:\n%s", flags[i], out);
    free(out);
}

static void test_http_sigint_exits_0(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "int", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "x", NULL), 0);
    assert_int_equal(wt_weftd_signal(&fx->server, SIGINT), 0);
    assert_int_equal(wt_weftd_wait(&fx->server, TIMEOUT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_healthz_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_metrics_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_doc_never_written_404_written_200, setup,
                                        teardown),
        cmocka_unit_test(test_http_help_exits_0_and_lists_flags),
        cmocka_unit_test_setup_teardown(test_http_sigint_exits_0, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
