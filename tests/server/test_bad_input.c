/* SPDX-License-Identifier: MIT */
/*
 * test_bad_input.c: weftd against bad input, each kind on its own connection
 * while two healthy editors of the same document keep working: malformed
 * msgpack, an unknown type, a message before HELLO (close 1008), another
 * protocol version (close 1002), update bytes the engine rejects (ERROR
 * bad_update, nothing stored), a text frame (close 1003), an oversized message
 * (close 1009, or at least the end of the connection), bad document names (HTTP
 * 400), and a slow reader cut off (slow_consumer) while the others keep
 * receiving. Each kind is checked in /metrics. weftd runs with
 * --max-message 65536 and --max-queued 262144 to keep the big cases small.
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

#define TIMEOUT 10000
#define MAX_MESSAGE 65536

typedef struct {
    wt_fixture_t *fx;
    wt_editor_t *a, *b;
    int round;
} bad_t;

static int setup(void **state)
{
    static const char *const args[] = {"--max-message", "65536", "--max-queued", "262144", NULL};
    bad_t *t = calloc(1, sizeof *t);
    *state = t;
    t->fx = wt_fixture_new(0xbad0001, args);
    if (t->fx == NULL)
        return -1;
    t->a = wt_fixture_editor(t->fx, "doc", "ada", 1);
    t->b = wt_fixture_editor(t->fx, "doc", "bob", 1);
    if (t->a == NULL || t->b == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    bad_t *t = *state;
    wt_fixture_free(t->fx);
    free(t);
    return 0;
}

/* The healthy editors still edit and hear each other. */
static void assert_healthy(bad_t *t)
{
    char word[16];
    snprintf(word, sizeof word, "[%d]", t->round++);
    assert_int_equal(wt_editor_insert(t->a, 0, word, NULL), 0);
    wt_editor_t *eds[] = {t->a, t->b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(t->a->state, WT_ED_SYNCED);
    assert_int_equal(t->b->state, WT_ED_SYNCED);
    assert_int_equal(t->a->n_errors, 0);
    assert_int_equal(t->b->n_errors, 0);
}

static double metric(bad_t *t, const char *series)
{
    char *m = wt_fixture_metrics(t->fx);
    assert_non_null(m);
    double v = 0;
    if (!wt_metric(m, series, &v))
        print_error("/metrics has no %s\n", series);
    free(m);
    return v;
}

static double error_count(bad_t *t, const char *code)
{
    char series[96];
    snprintf(series, sizeof series, "weft_errors_total{code=\"%s\"}", code);
    return metric(t, series);
}

/* A raw client on /ws/doc. With `hello` it says HELLO and reads the welcome. */
static wt_ws_t *raw_client(bad_t *t, int hello)
{
    wt_ws_t *ws = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ws);
    if (hello) {
        assert_int_equal(
            wt_proto_send_hello(ws, PROTO_VERSION, wt_fixture_replica(t->fx), "raw", "#000000"), 0);
        proto_msg_t m;
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        assert_int_equal(m.type, PROTO_WELCOME);
    }
    return ws;
}

/* Reads until an ERROR arrives; returns its code (the connection must not end first). */
static uint32_t next_error(wt_ws_t *ws, uint64_t *seq)
{
    for (;;) {
        proto_msg_t m;
        int rc = wt_proto_recv(ws, TIMEOUT, &m);
        if (rc != 0)
            fail_msg("no ERROR before: %s (close code %d)", wt_strerror(rc), ws->close_code);
        if (m.type == PROTO_ERROR) {
            if (seq)
                *seq = m.u.error.seq;
            return m.u.error.code;
        }
    }
}

/* Reads until the connection ends; returns WT_ECLOSED (ws->close_code) or WT_EEOF. */
static int wait_end(wt_ws_t *ws)
{
    for (;;) {
        wt_ws_msg_t m;
        int rc = wt_ws_recv(ws, TIMEOUT, &m);
        if (rc == 0)
            continue;
        assert_true(rc == WT_ECLOSED || rc == WT_EEOF);
        return rc;
    }
}

/* The connection stays usable: a PRESENCE is accepted and no close follows. */
static void assert_still_open(wt_ws_t *ws)
{
    static const uint8_t nil_presence[] = {0x93, 0x07, 0xc0, 0xc0};
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, nil_presence, sizeof nil_presence), 0);
    wt_ws_msg_t m;
    int rc;
    while ((rc = wt_ws_recv(ws, 300, &m)) == 0)
        ;
    assert_int_equal(rc, WT_ETIMEOUT);
}

static void test_bad_input_malformed_msgpack_gets_bad_message(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 1);
    static const uint8_t never_used[] = {0xc1};
    static const uint8_t truncated[] = {0x93, 0x05, 0x01, 0xc4, 0x10, 0x01};
    static const uint8_t nested[] = {0x92, 0x05, 0x91, 0x01};
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, never_used, sizeof never_used), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, truncated, sizeof truncated), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, nested, sizeof nested), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_MESSAGE);
    assert_still_open(ws);
    assert_true(error_count(t, "bad_message") >= 3);
    assert_healthy(t);
}

static void test_bad_input_unknown_type_gets_unknown_type(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 1);
    static const uint8_t type11[] = {0x91, 0x0b};
    static const uint8_t history[] = {0x92, 0x12, 0x01}; /* 18: still reserved */
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, type11, sizeof type11), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_UNKNOWN_TYPE);
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, history, sizeof history), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_UNKNOWN_TYPE);
    assert_still_open(ws);
    assert_int_equal(error_count(t, "unknown_type"), 2);
    assert_healthy(t);
}

static void test_bad_input_message_before_hello_closes_1008(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 0);
    static const uint8_t presence[] = {0x93, 0x07, 0xc0, 0xc0};
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, presence, sizeof presence), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_NOT_HELLO_FIRST);
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_int_equal(ws->close_code, 1008);
    assert_int_equal(error_count(t, "not_hello_first"), 1);
    assert_healthy(t);
}

static void test_bad_input_wrong_version_closes_1002(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 0);
    assert_int_equal(wt_proto_send_hello(ws, 2, wt_fixture_replica(t->fx), "future", "#ffffff"), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_VERSION_UNSUPPORTED);
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_int_equal(ws->close_code, 1002);
    assert_int_equal(error_count(t, "version_unsupported"), 1);
    assert_healthy(t);
}

static void test_bad_input_rejected_update_stores_nothing(void **state)
{
    bad_t *t = *state;
    assert_healthy(t);
    wt_http_resp_t before, after;
    assert_int_equal(
        wt_http_get("127.0.0.1", t->fx->server.port, "/api/docs/doc", TIMEOUT, &before), 0);
    assert_int_equal(before.status, 200);
    wt_ws_t *ws = raw_client(t, 1);
    /* Claims five client ids and holds none; an unknown format byte; an insert whose
     * UTF-8 is broken. */
    static const uint8_t short_table[] = {0x01, 0x05};
    static const uint8_t future_form[] = {0x07, 0x00};
    static const uint8_t bad_utf8[] = {0x01, 0x01, 0x07, 0,    0,    0,    0,    0,    0,
                                       0,    0x01, 0x00, 0x00, 0x01, 0x80, 0x02, 0xc3, 0x28};
    assert_int_equal(wt_proto_send_update(ws, 1, short_table, sizeof short_table), 0);
    uint64_t seq = 0;
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_UPDATE);
    assert_int_equal(seq, 1);
    assert_int_equal(wt_proto_send_update(ws, 2, future_form, sizeof future_form), 0);
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_UPDATE);
    assert_int_equal(seq, 2);
    assert_int_equal(wt_proto_send_update(ws, 3, bad_utf8, sizeof bad_utf8), 0);
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_UPDATE);
    assert_int_equal(seq, 3);
    assert_still_open(ws);
    assert_int_equal(error_count(t, "bad_update"), 3);
    assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, "/api/docs/doc", TIMEOUT, &after),
                     0);
    assert_int_equal(after.status, 200);
    /* Same text (other fields, such as the number of editors, may differ). */
    const char *tb = strstr((const char *)before.body.data, "\"text\"");
    const char *ta = strstr((const char *)after.body.data, "\"text\"");
    assert_non_null(tb);
    assert_non_null(ta);
    const char *eb = strstr(tb + 7, "\",\""), *ea = strstr(ta + 7, "\",\"");
    assert_non_null(eb);
    assert_non_null(ea);
    assert_int_equal(ea - ta, eb - tb);
    assert_memory_equal(ta, tb, (size_t)(eb - tb));
    wt_http_resp_dispose(&before);
    wt_http_resp_dispose(&after);
    /* A later good update on the same connection is handled and acknowledged. */
    crdt_doc_t *d;
    crdt_buf_t up = {0};
    assert_int_equal(crdt_doc_new(wt_fixture_replica(t->fx), NULL, &d), 0);
    assert_int_equal(crdt_doc_insert(d, 0, "ok", 2, &up), 0);
    assert_int_equal(wt_proto_send_update(ws, 4, up.base, up.len), 0);
    for (;;) {
        proto_msg_t m;
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        if (m.type == PROTO_ACK) {
            assert_int_equal(m.u.ack.seq, 4);
            break;
        }
    }
    crdt_buf_dispose(&up);
    crdt_doc_free(d);
    assert_healthy(t);
}

static void test_bad_input_text_frame_closes_1003(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 1);
    static const char json[] = "[7,null,null]";
    assert_int_equal(wt_ws_send(ws, WT_OP_TEXT, json, strlen(json)), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_int_equal(ws->close_code, 1003);
    assert_true(error_count(t, "bad_message") >= 1);
    assert_healthy(t);
}

static void test_bad_input_text_frame_bad_utf8_closes_1007(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 1);
    static const uint8_t presence[] = {0x93, 0x07, 0xc0, 0xc0}; /* not UTF-8 */
    assert_int_equal(wt_ws_send(ws, WT_OP_TEXT, presence, sizeof presence), 0);
    int rc = wait_end(ws);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1007);
    assert_healthy(t);
}

static void test_bad_input_oversized_message_ends_connection(void **state)
{
    bad_t *t = *state;
    wt_ws_t *ws = raw_client(t, 1);
    size_t len = MAX_MESSAGE + 1024;
    uint8_t *big = calloc(1, len);
    big[0] = 0x93;
    big[1] = 0x05;
    /* The server may close before taking it all: a failed send is fine. */
    wt_ws_send(ws, WT_OP_BINARY, big, len);
    free(big);
    int rc = wait_end(ws);
    print_message("oversized message: %s, close code %d\n", wt_strerror(rc), ws->close_code);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1009);
    assert_healthy(t);
    char *m = wt_fixture_metrics(t->fx);
    assert_non_null(m);
    double v = 0;
    int found = wt_metric(m, "weft_errors_total{code=\"too_large\"}", &v);
    free(m);
    if (!found || v < 1)
        fail_msg("the oversized message is not counted in /metrics "
                 "(weft_errors_total{code=\"too_large\"} = %g)",
                 v);
}

static void test_bad_input_bad_document_names_get_400(void **state)
{
    bad_t *t = *state;
    char long_name[4 + 129 + 1] = "/ws/";
    memset(long_name + 4, 'x', 129);
    long_name[4 + 129] = 0;
    const char *paths[] = {"/ws/", "/ws/a%20b", "/ws/a/b", "/ws/a*b", "/ws/%C3%A4", long_name};
    double rejected = metric(t, "weft_ws_rejected_total");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        wt_ws_t ws;
        wt_ws_init(&ws, i);
        int rc = wt_ws_connect(&ws, "127.0.0.1", t->fx->server.port, paths[i], NULL, TIMEOUT);
        if (rc != WT_EHTTP || ws.http.status != 400)
            fail_msg("upgrade of %.40s: %s, HTTP %d (want 400)", paths[i], wt_strerror(rc),
                     ws.http.status);
        wt_ws_dispose(&ws);
        /* The REST route refuses the same names. */
        char rest[200];
        snprintf(rest, sizeof rest, "/api/docs/%s", paths[i] + 4);
        /* (/api/docs/a/b is document "a", history route "b": 404, in test_history.) */
        if (paths[i][4] != 0 && strchr(paths[i] + 4, '/') == NULL) {
            wt_http_resp_t r;
            assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, rest, TIMEOUT, &r), 0);
            if (r.status != 400)
                fail_msg("GET %.50s: HTTP %d (want 400)", rest, r.status);
            wt_http_resp_dispose(&r);
        }
    }
    /* The longest good name is fine. */
    long_name[4 + 128] = 0;
    wt_ws_t ok;
    wt_ws_init(&ok, 99);
    assert_int_equal(wt_ws_connect(&ok, "127.0.0.1", t->fx->server.port, long_name, NULL, TIMEOUT),
                     0);
    wt_ws_dispose(&ok);
    assert_true(metric(t, "weft_ws_rejected_total") >= rejected + 6);
    assert_healthy(t);
}

/* A reader that stops reading is cut off; with `extra` more editors reading
 * (9 or more in the document: its broadcasts are shared frames, doc.c). */
static void slow_reader_case(bad_t *t, size_t extra)
{
    wt_editor_t *eds[2 + 8];
    size_t n = 2;
    assert_true(extra <= 8);
    eds[0] = t->a;
    eds[1] = t->b;
    for (size_t i = 0; i < extra; i++) {
        char name[16];
        snprintf(name, sizeof name, "ex%zu", i);
        eds[n] = wt_fixture_editor(t->fx, "doc", name, 1);
        assert_non_null(eds[n]);
        n++;
    }
    wt_ws_t *slow = raw_client(t, 1);
    /* It answers SYNC1 and then never reads its socket again. */
    static const uint8_t empty_sv_sync1[] = {0x92, 0x03, 0xc4, 0x01, 0x00};
    assert_int_equal(wt_ws_send(slow, WT_OP_BINARY, empty_sv_sync1, sizeof empty_sv_sync1), 0);
    char chunk[8001];
    memset(chunk, 'z', sizeof chunk - 1);
    chunk[sizeof chunk - 1] = 0;
    int64_t deadline = wt_now_ms() + 30000;
    int cut = 0, typed = 0;
    while (!cut && wt_ms_left(deadline) > 0) {
        /* Type 80 KB in 10 updates, let b read it, then look at the metrics. */
        for (int i = 0; i < 10; i++, typed++)
            assert_int_equal(wt_editor_insert(t->a, 0, chunk, NULL), 0);
        assert_int_equal(wt_editors_wait_converged(eds, n, TIMEOUT), 0);
        cut = error_count(t, "slow_consumer") >= 1;
    }
    print_message("slow reader cut off after %d KB typed\n", typed * 8);
    assert_true(cut);
    assert_true(metric(t, "weft_slow_consumers_total") >= 1);
    /* The others go on at once. */
    assert_healthy(t);
    /* The slow reader, reading at last, finds its connection ended (ERROR
     * slow_consumer and close 1008, unless the server dropped it). */
    int saw_error = 0, rc;
    for (;;) {
        proto_msg_t m;
        rc = wt_proto_recv(slow, TIMEOUT, &m);
        if (rc != 0)
            break;
        if (m.type == PROTO_ERROR && m.u.error.code == PROTO_ERR_SLOW_CONSUMER)
            saw_error = 1;
    }
    print_message("slow reader: %s, close %d, ERROR slow_consumer seen: %d\n", wt_strerror(rc),
                  slow->close_code, saw_error);
    assert_true(rc == WT_ECLOSED || rc == WT_EEOF);
    if (rc == WT_ECLOSED)
        assert_int_equal(slow->close_code, 1008);
    for (size_t i = 2; i < n; i++)
        assert_int_equal(eds[i]->n_errors, 0);
}

static void test_bad_input_slow_reader_cut_off(void **state)
{
    slow_reader_case(*state, 0);
}

static void test_bad_input_slow_reader_cut_off_shared_frames(void **state)
{
    slow_reader_case(*state, 6);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bad_input_malformed_msgpack_gets_bad_message),
        T(test_bad_input_unknown_type_gets_unknown_type),
        T(test_bad_input_message_before_hello_closes_1008),
        T(test_bad_input_wrong_version_closes_1002),
        T(test_bad_input_rejected_update_stores_nothing),
        T(test_bad_input_text_frame_closes_1003),
        T(test_bad_input_text_frame_bad_utf8_closes_1007),
        T(test_bad_input_oversized_message_ends_connection),
        T(test_bad_input_bad_document_names_get_400),
        T(test_bad_input_slow_reader_cut_off),
        T(test_bad_input_slow_reader_cut_off_shared_frames),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
