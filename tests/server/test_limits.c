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
#include <stdbool.h>
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

static double error_count(lim_t *t, const char *code)
{
    char series[96];
    snprintf(series, sizeof series, "weft_errors_total{code=\"%s\"}", code);
    return metric(t, series);
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

/* One-character insert update bytes from a fresh replica (dispose *up). */
static void make_update(lim_t *t, const char *text, crdt_buf_t *up)
{
    crdt_doc_t *d;
    assert_int_equal(crdt_doc_new(wt_fixture_replica(t->fx), NULL, &d), 0);
    assert_int_equal(crdt_doc_insert(d, 0, text, strlen(text), up), 0);
    crdt_doc_free(d);
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

/* Like raw_client(), but a HELLO answered with ERROR server_error is read up to
 * the end of the connection (ws->close_code tells how it ended; 0 after WELCOME). */
static wt_ws_t *raw_client_or_error(lim_t *t, const char *doc)
{
    char path[160];
    snprintf(path, sizeof path, "/ws/%s", doc);
    wt_ws_t *ws = wt_fixture_client(t->fx, path);
    assert_non_null(ws);
    assert_int_equal(
        wt_proto_send_hello(ws, PROTO_VERSION, wt_fixture_replica(t->fx), "raw", "#000000"), 0);
    proto_msg_t m;
    assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
    if (m.type == PROTO_WELCOME)
        return ws;
    assert_int_equal(m.type, PROTO_ERROR);
    assert_int_equal(m.u.error.code, PROTO_ERR_SERVER_ERROR);
    char text[PROTO_MAX_ERROR_MESSAGE + 1];
    assert_string_equal(wt_proto_str(m.u.error.message, text, sizeof text),
                        "too many documents open");
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_true(ws->close_code != 0);
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

/* ---- --max-messages-per-second --------------------------------------------- */

static const uint8_t nil_presence[] = {0x93, 0x07, 0xc0, 0xc0};

static void test_limits_messages_per_second_drop_excess(void **state)
{
    static const char *const args[] = {"--max-messages-per-second", "20", NULL};
    lim_t *t = start(0x11a2, args);
    *state = t;
    wt_ws_t *ws = raw_client(t, "doc");
    crdt_buf_t up = {0}, up2 = {0};
    make_update(t, "x", &up);
    make_update(t, "y", &up2);
    /* A burst of 30 (the HELLO took one token): about 10 are dropped, and so is
     * the UPDATE right behind them, with its seq in the ERROR. */
    for (int i = 0; i < 30; i++)
        assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, nil_presence, sizeof nil_presence), 0);
    assert_int_equal(wt_proto_send_update(ws, 7, up.base, up.len), 0);
    int errors = 0, seq7 = 0, rc;
    proto_msg_t m;
    while ((rc = wt_proto_recv(ws, 500, &m)) == 0) {
        if (m.type == PROTO_ACK)
            fail_msg("the UPDATE past the limit was acknowledged");
        if (m.type != PROTO_ERROR)
            continue;
        assert_int_equal(m.u.error.code, PROTO_ERR_RATE_LIMITED);
        errors++;
        if (m.u.error.seq == 7)
            seq7 = 1;
    }
    assert_int_equal(rc, WT_ETIMEOUT);
    print_message("30 presence + 1 update at 20/s: %d dropped\n", errors);
    assert_true(errors >= 5 && errors <= 12);
    assert_true(seq7);
    assert_int_equal(limited(t, "messages_per_second"), errors);
    assert_int_equal(error_count(t, "rate_limited"), errors);
    assert_int_equal(limited(t, "messages_per_second_close"), 0);
    assert_healthy(t);
    /* Nothing of the dropped update reached the document. */
    char *before = wt_editor_text(t->a);
    bool has_x = strchr(before, 'x') != NULL;
    free(before);
    assert_false(has_x);
    /* A second later the bucket is full again: the update goes through. */
    usleep(1100 * 1000);
    assert_int_equal(wt_proto_send_update(ws, 8, up2.base, up2.len), 0);
    for (;;) {
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        assert_int_not_equal(m.type, PROTO_ERROR);
        if (m.type == PROTO_ACK) {
            assert_int_equal(m.u.ack.seq, 8);
            break;
        }
    }
    assert_healthy(t);
    char *text = wt_editor_text(t->b);
    assert_non_null(strchr(text, 'y'));
    free(text);
    crdt_buf_dispose(&up);
    crdt_buf_dispose(&up2);
}

static void test_limits_message_flood_closes_1008(void **state)
{
    static const char *const args[] = {"--max-messages-per-second", "20", NULL};
    lim_t *t = start(0x11a3, args);
    *state = t;
    wt_ws_t *ws = raw_client(t, "doc");
    /* 200 at once: well over 4 * 20 dropped within 10 s. */
    for (int i = 0; i < 200; i++)
        if (wt_ws_send(ws, WT_OP_BINARY, nil_presence, sizeof nil_presence) != 0)
            break; /* the server may close before taking them all */
    int saw_closing = 0, rc;
    for (;;) {
        proto_msg_t m;
        rc = wt_proto_recv(ws, TIMEOUT, &m);
        if (rc != 0)
            break;
        if (m.type == PROTO_ERROR) {
            assert_int_equal(m.u.error.code, PROTO_ERR_RATE_LIMITED);
            char text[PROTO_MAX_ERROR_MESSAGE + 1];
            if (strstr(wt_proto_str(m.u.error.message, text, sizeof text), "closing") != NULL)
                saw_closing = 1;
        }
    }
    assert_int_equal(rc, WT_ECLOSED);
    assert_int_equal(ws->close_code, 1008);
    assert_true(saw_closing);
    assert_int_equal(limited(t, "messages_per_second_close"), 1);
    assert_true(limited(t, "messages_per_second") > 80);
    assert_healthy(t);
}

/* ---- --max-document-bytes ---------------------------------------------------- */

/* Sends UPDATE(seq) inserting `n` copies of `c` at 0 from a fresh replica
 * and returns the code of the ERROR about it, or 0 once it is acknowledged. */
static uint32_t send_insert(lim_t *t, wt_ws_t *ws, uint64_t seq, size_t n, char c)
{
    char *text = malloc(n + 1);
    crdt_buf_t up = {0};
    memset(text, c, n);
    text[n] = 0;
    make_update(t, text, &up);
    free(text);
    assert_int_equal(wt_proto_send_update(ws, seq, up.base, up.len), 0);
    crdt_buf_dispose(&up);
    for (;;) {
        proto_msg_t m;
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        if (m.type == PROTO_ACK && m.u.ack.seq == seq)
            return 0;
        if (m.type == PROTO_ERROR) {
            assert_int_equal(m.u.error.seq, seq);
            return m.u.error.code;
        }
    }
}

/* The "length" of GET /api/docs/<doc>. */
static long doc_length(lim_t *t, const char *doc)
{
    char path[160];
    wt_http_resp_t r;
    snprintf(path, sizeof path, "/api/docs/%s", doc);
    assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, path, TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    const char *l = strstr((const char *)r.body.data, "\"length\":");
    assert_non_null(l);
    long n = strtol(l + 9, NULL, 10);
    wt_http_resp_dispose(&r);
    return n;
}

static void test_limits_document_bytes_refuse_update(void **state)
{
    static const char *const args[] = {"--max-document-bytes", "1000", NULL};
    lim_t *t = start(0x11a4, args);
    *state = t;
    wt_ws_t *ws = raw_client(t, "big");
    /* 300 characters: at most 900 bytes, within 1000. */
    assert_int_equal(send_insert(t, ws, 1, 300, 'a'), 0);
    /* 250 more could be 750 bytes: 1050 is past the limit. */
    assert_int_equal(send_insert(t, ws, 2, 250, 'b'), PROTO_ERR_DOCUMENT_TOO_LARGE);
    assert_int_equal(doc_length(t, "big"), 300);
    /* 200 fit (300 + 600), and the connection goes on. */
    assert_int_equal(send_insert(t, ws, 3, 200, 'c'), 0);
    assert_int_equal(doc_length(t, "big"), 500);
    assert_int_equal(limited(t, "document_bytes"), 1);
    assert_int_equal(error_count(t, "document_too_large"), 1);
    /* The limit is per document: "doc" of the healthy editors is unaffected. */
    assert_healthy(t);
    /* A SYNC2 is held to the same limit. */
    char text[401];
    crdt_buf_t up = {0};
    memset(text, 'd', 400);
    text[400] = 0;
    make_update(t, text, &up);
    assert_int_equal(wt_proto_send_bytes(ws, PROTO_SYNC2, up.base, up.len), 0);
    crdt_buf_dispose(&up);
    for (;;) {
        proto_msg_t m;
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        if (m.type == PROTO_ERROR) {
            assert_int_equal(m.u.error.code, PROTO_ERR_DOCUMENT_TOO_LARGE);
            assert_int_equal(m.u.error.seq, 0);
            break;
        }
    }
    assert_int_equal(doc_length(t, "big"), 500);
    assert_int_equal(limited(t, "document_bytes"), 2);
}

/* ---- --max-documents ---------------------------------------------------------- */

/* Connects to /ws/<doc> and says HELLO: returns 0 after WELCOME (the client
 * stays open in *out), or the close code after an ERROR server_error. */
static int hello_doc(lim_t *t, const char *doc, wt_ws_t **out)
{
    wt_ws_t *ws = raw_client_or_error(t, doc);
    *out = ws;
    return ws->close_code;
}

static void test_limits_documents_unload_idle_or_refuse(void **state)
{
    static const char *const args[] = {"--max-documents", "2", NULL};
    lim_t *t = start(0x11a5, args);
    *state = t;
    wt_ws_t *d2, *d3;
    /* "doc" (the healthy editors') and "d2" fill the table. */
    assert_int_equal(hello_doc(t, "d2", &d2), 0);
    assert_int_equal(metric(t, "weft_documents_loaded"), 2);
    /* Both have editors: "d3" is refused, try again later. */
    assert_int_equal(hello_doc(t, "d3", &d3), 1013);
    assert_int_equal(limited(t, "documents"), 1);
    assert_int_equal(error_count(t, "server_error"), 1);
    assert_healthy(t);
    /* Once "d2" is idle, it is unloaded to make room (before --unload-after). */
    assert_int_equal(wt_ws_close(d2, 1000, "", TIMEOUT), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    while (hello_doc(t, "d3", &d3) != 0)
        if (wt_ms_left(deadline) <= 0)
            fail_msg("d3 still refused after d2 was left");
    assert_int_equal(metric(t, "weft_documents_loaded"), 2);
    assert_true(metric(t, "weft_documents_unloaded_total") >= 1);
    assert_healthy(t);
}

/* ---- --max-pending ------------------------------------------------------------ */

/* Two updates of a fresh replica: *first inserts `a`, *second `b` after it,
 * so *second alone waits for *first (one held run). */
static void make_pair(lim_t *t, char a, char b, crdt_buf_t *first, crdt_buf_t *second)
{
    crdt_doc_t *d;
    assert_int_equal(crdt_doc_new(wt_fixture_replica(t->fx), NULL, &d), 0);
    assert_int_equal(crdt_doc_insert(d, 0, &a, 1, first), 0);
    assert_int_equal(crdt_doc_insert(d, 1, &b, 1, second), 0);
    crdt_doc_free(d);
}

/* Sends UPDATE(seq) and returns the code of the ERROR about it, or 0 once it
 * is acknowledged (held operations are acknowledged too: they are stored). */
static uint32_t send_update(wt_ws_t *ws, uint64_t seq, const crdt_buf_t *up)
{
    assert_int_equal(wt_proto_send_update(ws, seq, up->base, up->len), 0);
    for (;;) {
        proto_msg_t m;
        assert_int_equal(wt_proto_recv(ws, TIMEOUT, &m), 0);
        if (m.type == PROTO_ACK && m.u.ack.seq == seq)
            return 0;
        if (m.type == PROTO_ERROR) {
            assert_int_equal(m.u.error.seq, seq);
            return m.u.error.code;
        }
    }
}

static void test_limits_pending_refuses_who_adds_held(void **state)
{
    static const char *const args[] = {"--max-pending", "3", NULL};
    lim_t *t = start(0x11a6, args);
    *state = t;
    crdt_buf_t first[5], second[5];
    memset(first, 0, sizeof first);
    memset(second, 0, sizeof second);
    for (int i = 0; i < 5; i++)
        make_pair(t, (char)('p' + i), (char)('P' + i), &first[i], &second[i]);
    /* A client on the healthy editors' own document sends only second halves:
     * three held runs reach the limit, the fourth is refused. */
    wt_ws_t *bad = raw_client(t, "doc");
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_update(bad, (uint64_t)i + 1, &second[i]), 0);
    assert_int_equal(send_update(bad, 4, &second[3]), PROTO_ERR_BAD_UPDATE);
    assert_int_equal(limited(t, "pending"), 1);
    assert_int_equal(error_count(t, "bad_update"), 1);
    /* The editors of that document add nothing held: they go on. */
    assert_healthy(t);
    /* Another connection may send what is missing: "p" and "P" appear, and
     * the document is below its limit again. */
    wt_ws_t *good = raw_client(t, "doc");
    assert_int_equal(send_update(good, 1, &first[0]), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    for (;;) {
        wt_editor_pump(t->a, 50);
        char *text = wt_editor_text(t->a);
        int seen = strstr(text, "pP") != NULL;
        free(text);
        if (seen)
            break;
        if (wt_ms_left(deadline) <= 0)
            fail_msg("the released operations never reached the editors");
    }
    assert_int_equal(send_update(bad, 5, &second[4]), 0);
    assert_int_equal(limited(t, "pending"), 1);
    assert_healthy(t);
    for (int i = 0; i < 5; i++) {
        crdt_buf_dispose(&first[i]);
        crdt_buf_dispose(&second[i]);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_limits_connections_per_ip_get_429),
        T(test_limits_messages_per_second_drop_excess),
        T(test_limits_message_flood_closes_1008),
        T(test_limits_document_bytes_refuse_update),
        T(test_limits_documents_unload_idle_or_refuse),
        T(test_limits_pending_refuses_who_adds_held),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
