/* SPDX-License-Identifier: MIT */
/*
 * test_protocol_edges.c: the corners of docs/protocol.md and RFC 6455 against a
 * real weftd, with two healthy editors of the same document checked after each
 * case: a second HELLO, a replica id already live (in this and in another
 * document), garbage state vectors, UPDATE seq that does not increase, updates
 * held for a missing dependency, duplicate updates, server-to-client messages
 * sent by a client, bad and empty presence, fragmented messages, ping/pong,
 * the close handshake, a frame declaring 2^62 bytes, bad upgrade requests, and
 * clients that vanish around the upgrade. weftd runs with --max-message 65536.
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
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT 10000
#define SEED 0xed9e5ull

typedef struct {
    wt_fixture_t *fx;
    wt_editor_t *a, *b;
    int round;
    crdt_doc_t *docs[8]; /* replicas of raw clients, freed by teardown */
    size_t ndocs;
} pe_t;

static int setup(void **state)
{
    static const char *const args[] = {"--max-message", "65536", NULL};
    pe_t *t = calloc(1, sizeof *t);
    *state = t;
    t->fx = wt_fixture_new(SEED, args);
    if (t->fx == NULL)
        return -1;
    t->a = wt_fixture_editor(t->fx, "doc", "ada", 1);
    t->b = wt_fixture_editor(t->fx, "doc", "bob", 1);
    return t->a != NULL && t->b != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    pe_t *t = *state;
    wt_fixture_free(t->fx);
    for (size_t i = 0; i < t->ndocs; i++)
        crdt_doc_free(t->docs[i]);
    free(t);
    return 0;
}

/* A replica for a raw client, owned by the test state. */
static crdt_doc_t *replica(pe_t *t, uint64_t id)
{
    assert_true(t->ndocs < 8);
    assert_int_equal(crdt_doc_new(id, NULL, &t->docs[t->ndocs]), 0);
    return t->docs[t->ndocs++];
}

/* The healthy editors still edit, hear each other and got no ERROR. */
static void assert_healthy(pe_t *t)
{
    char word[16];
    snprintf(word, sizeof word, "[%d]", t->round++);
    assert_int_equal(wt_editor_insert(t->a, 0, word, NULL), 0);
    wt_editor_t *eds[] = {t->a, t->b};
    if (wt_editors_wait_converged(eds, 2, TIMEOUT) != 0)
        fail_msg("the healthy editors did not converge (seed %#llx)", (unsigned long long)SEED);
    assert_int_equal(t->a->state, WT_ED_SYNCED);
    assert_int_equal(t->b->state, WT_ED_SYNCED);
    assert_int_equal(t->a->n_errors, 0);
    assert_int_equal(t->b->n_errors, 0);
}

static double metric(pe_t *t, const char *series)
{
    char *m = wt_fixture_metrics(t->fx);
    assert_non_null(m);
    double v = -1;
    if (!wt_metric(m, series, &v))
        fail_msg("/metrics has no %s", series);
    free(m);
    return v;
}

/* Reads messages until one of `type` arrives; fails on the end of the connection. */
static proto_msg_t next_of_type(wt_ws_t *ws, enum proto_type type)
{
    for (;;) {
        proto_msg_t m;
        int rc = wt_proto_recv(ws, TIMEOUT, &m);
        if (rc != 0)
            fail_msg("no %s before: %s (close code %d)", proto_type_name(type), wt_strerror(rc),
                     ws->close_code);
        if (m.type == type)
            return m;
        if (m.type == PROTO_ERROR && type != PROTO_ERROR)
            fail_msg("ERROR %u (%.*s) while waiting for %s", m.u.error.code,
                     (int)m.u.error.message.len, (const char *)m.u.error.message.base,
                     proto_type_name(type));
    }
}

static uint32_t next_error(wt_ws_t *ws, uint64_t *seq)
{
    proto_msg_t m = next_of_type(ws, PROTO_ERROR);
    if (seq)
        *seq = m.u.error.seq;
    return m.u.error.code;
}

/* Reads until the connection ends; returns WT_ECLOSED (ws->close_code) or WT_EEOF. */
static int wait_end(wt_ws_t *ws)
{
    for (;;) {
        wt_ws_msg_t m;
        int rc = wt_ws_recv(ws, TIMEOUT, &m);
        if (rc == 0)
            continue;
        if (rc != WT_ECLOSED && rc != WT_EEOF)
            fail_msg("the connection did not end: %s", wt_strerror(rc));
        return rc;
    }
}

/* The connection stays usable: a PRESENCE is taken without an ERROR or a close. */
static void assert_still_open(wt_ws_t *ws)
{
    static const uint8_t nil_presence[] = {0x93, 0x07, 0xc0, 0xc0};
    assert_int_equal(wt_ws_send(ws, WT_OP_BINARY, nil_presence, sizeof nil_presence), 0);
    wt_ws_msg_t m;
    int rc;
    while ((rc = wt_ws_recv(ws, 300, &m)) == 0) {
        proto_msg_t pm;
        if (proto_decode(m.data, m.len, &pm) == 0 && pm.type == PROTO_ERROR)
            fail_msg("ERROR %u after a nil PRESENCE", pm.u.error.code);
    }
    assert_int_equal(rc, WT_ETIMEOUT);
}

/* A raw client on `path` that said HELLO as `rep` and read WELCOME. */
static wt_ws_t *hello_client(pe_t *t, const char *path, uint64_t rep)
{
    wt_ws_t *ws = wt_fixture_client(t->fx, path);
    assert_non_null(ws);
    assert_int_equal(wt_proto_send_hello(ws, PROTO_VERSION, rep, "raw", "#000000"), 0);
    proto_msg_t m = next_of_type(ws, PROTO_WELCOME);
    assert_int_equal(m.u.welcome.replica, rep);
    return ws;
}

/* Waits for ACK(seq) (a later ACK also covers it). */
static void expect_ack(wt_ws_t *ws, uint64_t seq)
{
    proto_msg_t m = next_of_type(ws, PROTO_ACK);
    assert_int_equal(m.u.ack.seq, seq);
}

/* The text of /api/docs/<doc> (raw JSON string value, malloc'd). */
static char *rest_text(pe_t *t, const char *doc)
{
    char path[160];
    wt_http_resp_t r;
    snprintf(path, sizeof path, "/api/docs/%s", doc);
    assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, path, TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    const char *p = strstr((const char *)r.body.data, "\"text\":\"");
    assert_non_null(p);
    p += 8;
    const char *q = strstr(p, "\",\"length\"");
    assert_non_null(q);
    char *s = strndup(p, (size_t)(q - p));
    wt_http_resp_dispose(&r);
    return s;
}

/* Reads raw frames until a control frame of `kind` arrives (data messages are
 * skipped). Returns 0 and fills *ev (borrowed), or the error. */
static int next_control(wt_ws_t *ws, wt_event_kind_t kind, wt_event_t *ev, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    wt_reader_t *rd = wt_ws_reader(ws);
    for (;;) {
        int k = wt_reader_next(rd, ev);
        if (k < 0)
            return k;
        if (k == (int)kind)
            return 0;
        if (k != WT_EV_NONE)
            continue;
        uint8_t *p = wt_reader_space(rd, 65536);
        ssize_t n = wt_read_some(ws->fd, p, 65536, wt_ms_left(deadline));
        if (n == 0)
            return WT_EEOF;
        if (n < 0)
            return (int)n;
        wt_reader_commit(rd, (size_t)n);
    }
}

/* ---- HELLO ------------------------------------------------------------------ */

static void test_protocol_edges_second_hello_is_bad_message(void **state)
{
    pe_t *t = *state;
    wt_editor_t *c = wt_fixture_editor(t->fx, "doc", "cyd", 1);
    assert_non_null(c);
    assert_int_equal(wt_proto_send_hello(&c->ws, PROTO_VERSION, c->replica, "cyd", "#111111"), 0);
    assert_int_equal(wt_editor_wait_error(c, PROTO_ERR_BAD_MESSAGE, TIMEOUT), 0);
    /* Another replica id in the second HELLO changes nothing either. */
    assert_int_equal(wt_proto_send_hello(&c->ws, PROTO_VERSION, c->replica + 1, "x", "#1"), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    while (c->n_errors < 2 && wt_ms_left(deadline) > 0)
        wt_editor_pump(c, 50);
    assert_int_equal(c->n_errors, 2);
    assert_int_equal(c->errors[1].code, PROTO_ERR_BAD_MESSAGE);
    /* The connection keeps working: an edit is acknowledged and reaches the others. */
    assert_int_equal(wt_editor_insert(c, 0, "after-hello", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(c, TIMEOUT), 0);
    assert_int_equal(c->state, WT_ED_SYNCED);
    char *want = wt_editor_text(c);
    assert_int_equal(wt_editor_wait_text(t->a, want, TIMEOUT), 0);
    free(want);
    /* The others never heard of the second replica id. */
    assert_null(wt_editor_peer(t->a, c->replica + 1));
    assert_healthy(t);
}

static void test_protocol_edges_replica_in_use(void **state)
{
    pe_t *t = *state;
    uint64_t live = t->a->replica;
    wt_ws_t *ws = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ws);
    assert_int_equal(wt_proto_send_hello(ws, PROTO_VERSION, live, "thief", "#ff0000"), 0);
    assert_int_equal(next_error(ws, NULL), PROTO_ERR_REPLICA_IN_USE);
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_int_equal(ws->close_code, 1008);
    assert_int_equal(metric(t, "weft_errors_total{code=\"replica_in_use\"}"), 1);
    /* The same id on another document is fine. */
    wt_ws_t *other = hello_client(t, "/ws/other-doc", live);
    assert_still_open(other);
    /* The thief never appeared to the others; a's presence is still its own. */
    const wt_peer_t *p = wt_editor_peer(t->b, live);
    assert_non_null(p);
    assert_string_equal(p->name, "ada");
    assert_healthy(t);
    /* Once the owner is gone, the id is free again. */
    wt_editor_drop(t->a);
    assert_int_equal(wt_editor_wait_presence(t->b, live, 0, TIMEOUT), 0);
    wt_ws_t *again = hello_client(t, "/ws/doc", live);
    assert_still_open(again);
    wt_ws_abort(again);
    assert_int_equal(wt_editor_reconnect(t->a, 0, TIMEOUT), 0);
    assert_healthy(t);
}

/* ---- SYNC1, UPDATE ----------------------------------------------------------- */

static void test_protocol_edges_sync1_garbage_is_bad_update(void **state)
{
    pe_t *t = *state;
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    static const uint8_t garbage[][9] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
        {0x05, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
    };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(wt_proto_send_bytes(ws, PROTO_SYNC1, garbage[i], sizeof garbage[i]), 0);
        assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_UPDATE);
    }
    /* A good SYNC1 still gets its SYNC2. */
    crdt_buf_t sv = {0};
    crdt_doc_t *d = replica(t, wt_fixture_replica(t->fx));
    assert_int_equal(crdt_doc_state_vector(d, &sv), 0);
    assert_int_equal(wt_proto_send_bytes(ws, PROTO_SYNC1, sv.base, sv.len), 0);
    crdt_buf_dispose(&sv);
    proto_msg_t m = next_of_type(ws, PROTO_SYNC2);
    assert_int_equal(crdt_doc_apply_update(d, m.u.sync2.update.base, m.u.sync2.update.len), 0);
    assert_still_open(ws);
    assert_healthy(t);
}

static void test_protocol_edges_update_seq_must_increase(void **state)
{
    pe_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    wt_ws_t *ws = hello_client(t, "/ws/doc", id);
    crdt_doc_t *d = replica(t, id);
    crdt_buf_t u1 = {0}, u2 = {0}, u3 = {0};
    assert_int_equal(crdt_doc_insert(d, 0, "x", 1, &u1), 0);
    assert_int_equal(crdt_doc_insert(d, 1, "y", 1, &u2), 0);
    assert_int_equal(crdt_doc_insert(d, 2, "z", 1, &u3), 0);
    /* seq 0 is not greater than "nothing yet". */
    assert_int_equal(wt_proto_send_update(ws, 0, u1.base, u1.len), 0);
    uint64_t seq = 99;
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(seq, 0);
    /* Numbers may jump. */
    assert_int_equal(wt_proto_send_update(ws, 5, u1.base, u1.len), 0);
    expect_ack(ws, 5);
    /* Equal, then smaller: refused with that seq, nothing applied. */
    assert_int_equal(wt_proto_send_update(ws, 5, u2.base, u2.len), 0);
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(seq, 5);
    assert_int_equal(wt_proto_send_update(ws, 3, u2.base, u2.len), 0);
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(seq, 3);
    char *text = rest_text(t, "doc");
    assert_non_null(strstr(text, "x"));
    assert_null(strstr(text, "y"));
    free(text);
    /* The sequence goes on from 5. */
    assert_int_equal(wt_proto_send_update(ws, 6, u2.base, u2.len), 0);
    expect_ack(ws, 6);
    assert_int_equal(wt_proto_send_update(ws, UINT64_MAX, u3.base, u3.len), 0);
    expect_ack(ws, UINT64_MAX);
    assert_int_equal(wt_proto_send_update(ws, UINT64_MAX, u3.base, u3.len), 0);
    assert_int_equal(next_error(ws, &seq), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(seq, UINT64_MAX);
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    crdt_buf_dispose(&u3);
    text = rest_text(t, "doc");
    assert_non_null(strstr(text, "xyz"));
    free(text);
    assert_healthy(t);
}

static void test_protocol_edges_held_update_acked_then_released(void **state)
{
    pe_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    crdt_doc_t *d = replica(t, id);
    crdt_buf_t u1 = {0}, u2 = {0};
    assert_int_equal(crdt_doc_insert(d, 0, "held", 4, &u1), 0);
    assert_int_equal(crdt_doc_insert(d, 4, "-back", 5, &u2), 0);
    char *before = rest_text(t, "doc");
    /* u2 alone: its dependency (u1) is missing. Acknowledged (durable), not shown. */
    wt_ws_t *late = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_proto_send_update(late, 1, u2.base, u2.len), 0);
    expect_ack(late, 1);
    wt_editor_t *eds[] = {t->a, t->b};
    wt_editors_pump(eds, 2, 200);
    char *mid = rest_text(t, "doc");
    assert_string_equal(mid, before);
    free(mid);
    char *at = wt_editor_text(t->a);
    assert_null(strstr(at, "back"));
    free(at);
    /* The dependency arrives from another editor: everyone converges. */
    wt_ws_t *early = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_proto_send_update(early, 1, u1.base, u1.len), 0);
    expect_ack(early, 1);
    wt_editor_t *eds2[] = {t->a, t->b};
    int64_t until = wt_now_ms() + TIMEOUT;
    for (;;) {
        at = wt_editor_text(t->a);
        int has = strstr(at, "held-back") != NULL;
        free(at);
        if (has)
            break;
        if (wt_ms_left(until) == 0)
            fail_msg("the editors never saw \"held-back\" once the dependency arrived");
        wt_editors_pump(eds2, 2, 50);
    }
    assert_int_equal(wt_editors_wait_converged(eds2, 2, TIMEOUT), 0);
    char *want = wt_editor_text(t->a);
    /* The client that sent the held part also receives the released text. */
    crdt_doc_t *ld = replica(t, wt_fixture_replica(t->fx));
    int64_t deadline = wt_now_ms() + TIMEOUT;
    for (;;) {
        proto_msg_t m;
        int rc = wt_proto_recv(late, wt_ms_left(deadline), &m);
        if (rc != 0)
            fail_msg("the sender of the held update never got the released text: %s",
                     wt_strerror(rc));
        if (m.type == PROTO_UPDATE || m.type == PROTO_SYNC2) {
            proto_bytes_t u = m.type == PROTO_UPDATE ? m.u.update.update : m.u.sync2.update;
            assert_int_equal(crdt_doc_apply_update(ld, u.base, u.len), 0);
            crdt_buf_t lt = {0};
            assert_int_equal(crdt_doc_text(ld, &lt), 0);
            int found = lt.len >= 9 && memmem(lt.base, lt.len, "held-back", 9) != NULL;
            crdt_buf_dispose(&lt);
            if (found)
                break;
        }
    }
    char *after = rest_text(t, "doc");
    assert_string_equal(after, want);
    free(after);
    free(want);
    free(before);
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    assert_healthy(t);
    /* Both parts are durable: a restart keeps the text. */
    wt_editor_t *all[] = {t->a, t->b};
    assert_int_equal(wt_editors_wait_converged(all, 2, TIMEOUT), 0);
    char *final_text = wt_editor_text(t->a);
    assert_int_equal(wt_weftd_stop(&t->fx->server, TIMEOUT), 0);
    assert_int_equal(wt_weftd_restart(&t->fx->server, TIMEOUT), 0);
    wt_editor_t *probe = wt_fixture_editor(t->fx, "doc", "probe", 1);
    assert_non_null(probe);
    assert_true(wt_editor_text_is(probe, final_text));
    free(final_text);
}

static void test_protocol_edges_duplicate_update_acked_changes_nothing(void **state)
{
    pe_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    crdt_doc_t *d = replica(t, id);
    crdt_buf_t u = {0};
    assert_int_equal(crdt_doc_insert(d, 0, "once", 4, &u), 0);
    wt_ws_t *ws = hello_client(t, "/ws/doc", id);
    assert_int_equal(wt_proto_send_update(ws, 1, u.base, u.len), 0);
    expect_ack(ws, 1);
    assert_healthy(t);
    char *before = rest_text(t, "doc");
    double stored = metric(t, "weft_updates_stored_total");
    double applied = metric(t, "weft_updates_in_total");
    uint64_t a_updates = t->a->updates_in;
    /* The same bytes again, on this connection and on another one. */
    assert_int_equal(wt_proto_send_update(ws, 2, u.base, u.len), 0);
    expect_ack(ws, 2);
    wt_ws_t *ws2 = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_proto_send_update(ws2, 1, u.base, u.len), 0);
    expect_ack(ws2, 1);
    assert_int_equal(wt_proto_send_bytes(ws2, PROTO_SYNC2, u.base, u.len), 0);
    assert_still_open(ws2);
    char *after = rest_text(t, "doc");
    assert_string_equal(after, before);
    assert_int_equal(metric(t, "weft_updates_stored_total"), stored);
    assert_int_equal(metric(t, "weft_updates_in_total"), applied + 3);
    /* Nothing was forwarded to the editors. */
    wt_editor_pump(t->a, 200);
    assert_int_equal(t->a->updates_in, a_updates);
    free(before);
    free(after);
    crdt_buf_dispose(&u);
    assert_healthy(t);
}

/* ---- messages in the wrong direction, presence ---------------------------------- */

static void test_protocol_edges_server_messages_from_client_are_bad_message(void **state)
{
    pe_t *t = *state;
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    proto_msg_t msgs[5];
    memset(msgs, 0, sizeof msgs);
    msgs[0].type = PROTO_WELCOME;
    msgs[0].u.welcome.version = 1;
    msgs[0].u.welcome.replica = 42;
    msgs[0].u.welcome.max_message = 1024;
    msgs[1].type = PROTO_ACK;
    msgs[1].u.ack.seq = 1;
    msgs[2].type = PROTO_PRESENCE_STATE;
    msgs[2].u.presence_state.replica = t->b->replica;
    msgs[2].u.presence_state.name = (proto_bytes_t){(const uint8_t *)"spoof", 5};
    msgs[2].u.presence_state.color = (proto_bytes_t){(const uint8_t *)"#000000", 7};
    msgs[3].type = PROTO_PRESENCE_LEAVE;
    msgs[3].u.presence_leave.replica = t->b->replica;
    msgs[4].type = PROTO_ERROR;
    msgs[4].u.error.code = 1;
    msgs[4].u.error.message = (proto_bytes_t){(const uint8_t *)"x", 1};
    double bad = metric(t, "weft_errors_total{code=\"bad_message\"}");
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(wt_proto_send(ws, &msgs[i]), 0);
        uint32_t code = next_error(ws, NULL);
        if (code != PROTO_ERR_BAD_MESSAGE)
            fail_msg("%s from a client: ERROR %u, want bad_message", proto_type_name(msgs[i].type),
                     code);
    }
    assert_still_open(ws);
    assert_int_equal(metric(t, "weft_errors_total{code=\"bad_message\"}"), bad + 5);
    /* The spoofed presence and leave of b reached nobody. */
    wt_editor_pump(t->a, 200);
    const wt_peer_t *p = wt_editor_peer(t->a, t->b->replica);
    assert_non_null(p);
    assert_true(p->present);
    assert_string_equal(p->name, "bob");
    assert_healthy(t);
}

static void test_protocol_edges_presence_bad_relpos_is_bad_message(void **state)
{
    pe_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    wt_ws_t *ws = hello_client(t, "/ws/doc", id);
    assert_int_equal(wt_editor_wait_presence(t->a, id, 1, TIMEOUT), 0);
    uint64_t heard = wt_editor_peer(t->a, id)->updates;
    static const uint8_t ff16[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t one[1] = {0x07};
    crdt_relpos_t good_pos = {.edge = 1, .assoc = CRDT_ASSOC_AFTER};
    uint8_t good[CRDT_RELPOS_MAX];
    size_t good_len = crdt_relpos_encode(&good_pos, good);
    struct {
        const uint8_t *b;
        size_t len;
    } bad[] = {{ff16, 16}, {one, 1}, {ff16, 0}, {ff16, 3}};
    int sent = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        crdt_relpos_t p;
        if (crdt_relpos_decode(bad[i].b, bad[i].len, &p) == 0)
            continue; /* the engine takes it: not a bad position */
        for (int side = 0; side < 2; side++) {
            proto_msg_t m;
            memset(&m, 0, sizeof m);
            m.type = PROTO_PRESENCE;
            proto_bytes_t badb = {bad[i].b, bad[i].len}, goodb = {good, good_len};
            m.u.presence.anchor = side ? goodb : badb;
            m.u.presence.head = side ? badb : goodb;
            assert_int_equal(wt_proto_send(ws, &m), 0);
            assert_int_equal(next_error(ws, NULL), PROTO_ERR_BAD_MESSAGE);
            sent++;
        }
    }
    assert_true(sent >= 4);
    assert_still_open(ws);
    /* The bad ones were not forwarded; the nil one sent by assert_still_open was. */
    wt_editor_pump(t->a, 200);
    assert_int_equal(wt_editor_peer(t->a, id)->updates, heard + 1);
    assert_healthy(t);
}

static void test_protocol_edges_presence_nil_reaches_others_without_selection(void **state)
{
    pe_t *t = *state;
    assert_int_equal(wt_editor_insert(t->a, 0, "select me", NULL), 0);
    assert_int_equal(wt_editor_wait_text(t->b, "select me", TIMEOUT), 0);
    assert_int_equal(wt_editor_set_presence(t->a, 0, 6), 0);
    int64_t deadline = wt_now_ms() + TIMEOUT;
    const wt_peer_t *p = NULL;
    while (wt_ms_left(deadline) > 0) {
        wt_editor_pump(t->b, 50);
        p = wt_editor_peer(t->b, t->a->replica);
        if (p && p->has_selection)
            break;
    }
    assert_non_null(p);
    assert_true(p->has_selection);
    uint64_t n = p->updates;
    assert_int_equal(wt_editor_clear_presence(t->a), 0);
    while (wt_ms_left(deadline) > 0 && wt_editor_peer(t->b, t->a->replica)->updates == n)
        wt_editor_pump(t->b, 50);
    p = wt_editor_peer(t->b, t->a->replica);
    assert_int_equal(p->updates, n + 1);
    assert_true(p->present);
    assert_false(p->has_selection);
    assert_string_equal(p->name, "ada");
    /* A late joiner sees a present editor without a selection too. */
    wt_editor_t *c = wt_fixture_editor(t->fx, "doc", "cyd", 1);
    assert_non_null(c);
    assert_int_equal(wt_editor_wait_presence(c, t->a->replica, 1, TIMEOUT), 0);
    assert_false(wt_editor_peer(c, t->a->replica)->has_selection);
    assert_healthy(t);
}

/* ---- WebSocket framing ------------------------------------------------------------ */

static void test_protocol_edges_fragmented_messages_are_reassembled(void **state)
{
    pe_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    wt_ws_t *ws = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ws);
    /* HELLO in three frames. */
    proto_buf_t hello = {0};
    proto_msg_t h;
    memset(&h, 0, sizeof h);
    h.type = PROTO_HELLO;
    h.u.hello.version = PROTO_VERSION;
    h.u.hello.replica = id;
    h.u.hello.name = (proto_bytes_t){(const uint8_t *)"frag", 4};
    h.u.hello.color = (proto_bytes_t){(const uint8_t *)"#abcdef", 7};
    assert_int_equal(proto_encode(&h, &hello), 0);
    assert_true(hello.len > 6);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_BINARY, hello.base, 2, WT_FRAME_NOFIN), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, hello.base + 2, 3, WT_FRAME_NOFIN), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, hello.base + 5, hello.len - 5, 0), 0);
    proto_buf_dispose(&hello);
    next_of_type(ws, PROTO_WELCOME);
    /* An UPDATE in four frames, one of them empty, with a ping in between. */
    crdt_doc_t *d = replica(t, id);
    crdt_buf_t u = {0};
    assert_int_equal(crdt_doc_insert(d, 0, "fragmented", 10, &u), 0);
    proto_buf_t up = {0};
    assert_int_equal(proto_encode_update(&up, 1, u.base, u.len), 0);
    size_t third = up.len / 3;
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_BINARY, up.base, third, WT_FRAME_NOFIN), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, NULL, 0, WT_FRAME_NOFIN), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_PING, "mid", 3, 0), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, up.base + third, third, WT_FRAME_NOFIN), 0);
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, up.base + 2 * third, up.len - 2 * third, 0),
                     0);
    wt_event_t ev;
    assert_int_equal(next_control(ws, WT_EV_PONG, &ev, TIMEOUT), 0);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "mid", 3);
    expect_ack(ws, 1);
    proto_buf_dispose(&up);
    crdt_buf_dispose(&u);
    char *text = rest_text(t, "doc");
    assert_non_null(strstr(text, "fragmented"));
    free(text);
    assert_healthy(t);
    char *at = wt_editor_text(t->b);
    assert_non_null(strstr(at, "fragmented"));
    free(at);
}

static void test_protocol_edges_ping_gets_pong(void **state)
{
    pe_t *t = *state;
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    static const char payload[] = "are you there?";
    assert_int_equal(wt_ws_send(ws, WT_OP_PING, payload, strlen(payload)), 0);
    wt_event_t ev;
    assert_int_equal(next_control(ws, WT_EV_PONG, &ev, TIMEOUT), 0);
    assert_int_equal(ev.len, strlen(payload));
    assert_memory_equal(ev.data, payload, ev.len);
    /* An empty ping, and one before HELLO on a fresh connection. */
    assert_int_equal(wt_ws_send(ws, WT_OP_PING, NULL, 0), 0);
    assert_int_equal(next_control(ws, WT_EV_PONG, &ev, TIMEOUT), 0);
    assert_int_equal(ev.len, 0);
    wt_ws_t *fresh = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(fresh);
    assert_int_equal(wt_ws_send(fresh, WT_OP_PING, "x", 1), 0);
    assert_int_equal(next_control(fresh, WT_EV_PONG, &ev, TIMEOUT), 0);
    assert_healthy(t);
}

static void test_protocol_edges_close_is_echoed_with_same_code(void **state)
{
    pe_t *t = *state;
    static const int codes[] = {1000, 1001, 4000, 4999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        uint64_t id = wt_fixture_replica(t->fx);
        wt_ws_t *ws = hello_client(t, "/ws/doc", id);
        assert_int_equal(wt_editor_wait_presence(t->b, id, 1, TIMEOUT), 0);
        uint8_t payload[8] = {(uint8_t)(codes[i] >> 8), (uint8_t)codes[i], 'b', 'y', 'e'};
        assert_int_equal(wt_ws_send(ws, WT_OP_CLOSE, payload, 5), 0);
        ws->close_sent = 1;
        assert_int_equal(wait_end(ws), WT_ECLOSED);
        if (ws->close_code != codes[i])
            fail_msg("close %d was answered with %d", codes[i], ws->close_code);
        /* Then the server ends the TCP connection. */
        uint8_t byte;
        assert_int_equal(wt_read_some(ws->fd, &byte, 1, TIMEOUT), 0);
        assert_int_equal(wt_editor_wait_presence(t->b, id, 0, TIMEOUT), 0);
    }
    /* A close without a code is answered without one. */
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_ws_send(ws, WT_OP_CLOSE, NULL, 0), 0);
    ws->close_sent = 1;
    assert_int_equal(wait_end(ws), WT_ECLOSED);
    assert_int_equal(ws->close_code, 1005);
    assert_healthy(t);
}

static void test_protocol_edges_close_with_invalid_code_is_protocol_error(void **state)
{
    pe_t *t = *state;
    static const int codes[] = {999, 1005, 1006, 1015, 5000};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
        uint8_t payload[2] = {(uint8_t)(codes[i] >> 8), (uint8_t)codes[i]};
        assert_int_equal(wt_ws_send(ws, WT_OP_CLOSE, payload, 2), 0);
        ws->close_sent = 1;
        int rc = wait_end(ws);
        if (rc == WT_ECLOSED && ws->close_code != 1002)
            fail_msg("close code %d was answered with %d, want 1002", codes[i], ws->close_code);
    }
    assert_healthy(t);
}

static void test_protocol_edges_frame_of_2_62_bytes_gets_1009(void **state)
{
    pe_t *t = *state;
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    uint8_t frame[14 + 64];
    size_t n = 0;
    frame[n++] = 0x82; /* FIN, binary */
    frame[n++] = 0x80 | 127;
    uint64_t len = 1ull << 62;
    for (int i = 7; i >= 0; i--)
        frame[n++] = (uint8_t)(len >> (8 * i));
    memcpy(frame + n, "\x11\x22\x33\x44", 4);
    n += 4;
    memset(frame + n, 0x5a, 64);
    n += 64;
    assert_int_equal(wt_ws_send_raw(ws, frame, n), 0);
    int rc = wait_end(ws);
    print_message("2^62-byte frame: %s, close code %d\n", wt_strerror(rc), ws->close_code);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1009);
    /* A length with the top bit set is a protocol error (1002) or the end. */
    wt_ws_t *ws2 = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    frame[2] = 0x80;
    assert_int_equal(wt_ws_send_raw(ws2, frame, n), 0);
    rc = wait_end(ws2);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws2->close_code, 1002);
    /* The server keeps serving: the editors and a newcomer. */
    assert_healthy(t);
    wt_editor_t *c = wt_fixture_editor(t->fx, "doc", "cyd", 1);
    assert_non_null(c);
    assert_true(metric(t, "weft_connections") >= 3);
}

static void test_protocol_edges_unmasked_and_rsv1_frames_are_protocol_errors(void **state)
{
    pe_t *t = *state;
    static const uint8_t nil_presence[] = {0x93, 0x07, 0xc0, 0xc0};
    static const int flags[] = {WT_FRAME_UNMASKED, WT_FRAME_RSV1};
    for (size_t i = 0; i < 2; i++) {
        wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
        assert_int_equal(
            wt_ws_send_frame(ws, WT_OP_BINARY, nil_presence, sizeof nil_presence, flags[i]), 0);
        int rc = wait_end(ws);
        if (rc == WT_ECLOSED)
            assert_int_equal(ws->close_code, 1002);
    }
    /* A continuation without a start, and a reserved opcode. */
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_ws_send_frame(ws, WT_OP_CONT, nil_presence, sizeof nil_presence, 0), 0);
    int rc = wait_end(ws);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1002);
    ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    assert_int_equal(wt_ws_send_frame(ws, 0x3, nil_presence, sizeof nil_presence, 0), 0);
    rc = wait_end(ws);
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1002);
    assert_healthy(t);
}

/*
 * Hostile: a client that floods pings and never reads. wslay queues a pong for
 * each; --max-queued is only checked when weftd itself queues a message, so
 * the pongs must not grow the server's memory without bound: the connection
 * is to be cut off like any slow consumer.
 */
static void test_protocol_edges_ping_flood_from_non_reader_is_bounded(void **state)
{
    pe_t *t = *state;
    wt_ws_t *ws = hello_client(t, "/ws/doc", wt_fixture_replica(t->fx));
    long rss0 = wt_proc_rss_kb(t->fx->server.pid);
    assert_true(rss0 > 0);
    uint8_t payload[125];
    memset(payload, 'p', sizeof payload);
    wt_buf_t burst = {0};
    for (int i = 0; i < 4096; i++)
        wt_frame_encode(&burst, WT_OP_PING, payload, sizeof payload, 0x5eed0000u + (uint32_t)i, 0);
    size_t sent = 0;
    int rc = 0;
    /* 40 MiB of pings (the default --max-queued is 8 MiB). */
    while (sent < (40u << 20) && rc == 0) {
        rc = wt_write_all(ws->fd, burst.data, burst.len, 5000);
        if (rc == 0)
            sent += burst.len;
    }
    wt_buf_dispose(&burst);
    usleep(300 * 1000);
    long rss1 = wt_proc_rss_kb(t->fx->server.pid);
    print_message("ping flood: %zu MiB sent (%s), server RSS %ld -> %ld KiB\n", sent >> 20,
                  rc == 0 ? "all written" : wt_strerror(rc), rss0, rss1);
    assert_true(rss1 > 0);
    /* The server must have cut the connection off long before 40 MiB. */
    if (rc == 0)
        fail_msg("weftd read 40 MiB of pings from a client that never reads without "
                 "cutting it off (--max-queued is 8 MiB)");
#ifndef __SANITIZE_ADDRESS__
    /* (ASan keeps freed memory in quarantine: RSS says nothing there.) */
    if (rss1 - rss0 > 24 * 1024)
        fail_msg("a client that pings and never reads grew weftd by %ld MiB (--max-queued "
                 "is 8 MiB): pongs are queued without limit",
                 (rss1 - rss0) / 1024);
#endif
    wt_ws_abort(ws);
    assert_healthy(t);
}

/* ---- the upgrade ------------------------------------------------------------------ */

/* Sends a raw HTTP request for /ws/doc with the given headers; returns the status. */
static int raw_upgrade(pe_t *t, const char *headers, const void *extra, size_t extra_len,
                       wt_buf_t *rest)
{
    int fd = wt_tcp_connect("127.0.0.1", t->fx->server.port, TIMEOUT);
    assert_true(fd >= 0);
    wt_buf_t req = {0};
    wt_buf_printf(&req, "GET /ws/doc HTTP/1.1\r\nHost: weft\r\n%s\r\n", headers);
    if (extra_len)
        wt_buf_append(&req, extra, extra_len);
    assert_int_equal(wt_write_all(fd, req.data, req.len, TIMEOUT), 0);
    wt_buf_dispose(&req);
    wt_buf_t in = {0};
    wt_http_resp_t r = {0};
    int rc = wt_http_read_response(fd, &in, 1, TIMEOUT, &r);
    if (rc != 0)
        fail_msg("no HTTP response: %s", wt_strerror(rc));
    int status = r.status;
    if (rest != NULL && status == 101) {
        /* Read on until something arrives after the 101 (WELCOME expected). */
        int64_t deadline = wt_now_ms() + TIMEOUT;
        while (in.len < 4 && wt_ms_left(deadline) > 0) {
            uint8_t buf[4096];
            ssize_t n = wt_read_some(fd, buf, sizeof buf, wt_ms_left(deadline));
            if (n <= 0)
                break;
            wt_buf_append(&in, buf, (size_t)n);
        }
        wt_buf_append(rest, in.data, in.len);
    }
    wt_http_resp_dispose(&r);
    wt_buf_dispose(&in);
    close(fd);
    return status;
}

#define UPGRADE_HEADERS "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"

static void test_protocol_edges_bad_upgrades_get_400(void **state)
{
    pe_t *t = *state;
    /* The control case: a correct key is upgraded. */
    assert_int_equal(raw_upgrade(t,
                                 UPGRADE_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                                 NULL, 0, NULL),
                     101);
    assert_int_equal(raw_upgrade(t, UPGRADE_HEADERS, NULL, 0, NULL), 400);
    assert_int_equal(raw_upgrade(t,
                                 UPGRADE_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
                                 NULL, 0, NULL),
                     400);
    assert_int_equal(raw_upgrade(t,
                                 UPGRADE_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n",
                                 NULL, 0, NULL),
                     400);
    /* No upgrade at all. */
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", t->fx->server.port, "/ws/doc", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 400);
    wt_http_resp_dispose(&r);
    assert_int_equal(raw_upgrade(t, "", NULL, 0, NULL), 400);
    /* POST with upgrade headers. */
    int fd = wt_tcp_connect("127.0.0.1", t->fx->server.port, TIMEOUT);
    assert_true(fd >= 0);
    static const char post[] = "POST /ws/doc HTTP/1.1\r\nHost: weft\r\n" UPGRADE_HEADERS
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Content-Length: 0\r\n\r\n";
    assert_int_equal(wt_write_all(fd, post, strlen(post), TIMEOUT), 0);
    wt_buf_t in = {0};
    assert_int_equal(wt_http_read_response(fd, &in, 1, TIMEOUT, &r), 0);
    assert_int_equal(r.status, 400);
    wt_http_resp_dispose(&r);
    wt_buf_dispose(&in);
    close(fd);
    assert_healthy(t);
}

static void test_protocol_edges_hello_pipelined_with_upgrade(void **state)
{
    pe_t *t = *state;
    proto_buf_t hello = {0};
    proto_msg_t h;
    memset(&h, 0, sizeof h);
    h.type = PROTO_HELLO;
    h.u.hello.version = PROTO_VERSION;
    h.u.hello.replica = wt_fixture_replica(t->fx);
    assert_int_equal(proto_encode(&h, &hello), 0);
    wt_buf_t frame = {0}, rest = {0};
    wt_frame_encode(&frame, WT_OP_BINARY, hello.base, hello.len, 0x01020304, 0);
    proto_buf_dispose(&hello);
    assert_int_equal(raw_upgrade(t,
                                 UPGRADE_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                                 frame.data, frame.len, &rest),
                     101);
    /* The bytes after the 101 start with the WELCOME frame. */
    assert_true(rest.len >= 4);
    assert_int_equal(rest.data[0], 0x82);
    assert_int_equal(rest.data[2] & 0xf0, 0x90);
    assert_int_equal(rest.data[3], PROTO_WELCOME);
    wt_buf_dispose(&frame);
    wt_buf_dispose(&rest);
    assert_healthy(t);
}

/*
 * Clients that vanish around the upgrade: reset right after the request, after
 * the request plus HELLO, after the 101 without reading, while an ERROR and a
 * close are owed. Sessions must be freed (weft_connections back to the two
 * editors) and nothing may crash (the sanitizer build reports use-after-free).
 */
static void test_protocol_edges_clients_vanish_around_the_upgrade(void **state)
{
    pe_t *t = *state;
    proto_buf_t hello = {0};
    proto_msg_t h;
    memset(&h, 0, sizeof h);
    h.type = PROTO_HELLO;
    h.u.hello.version = PROTO_VERSION;
    for (int i = 0; i < 60; i++) {
        int fd = wt_tcp_connect("127.0.0.1", t->fx->server.port, TIMEOUT);
        assert_true(fd >= 0);
        wt_buf_t req = {0};
        wt_buf_printf(&req, "GET /ws/doc HTTP/1.1\r\nHost: weft\r\n" UPGRADE_HEADERS
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        int kind = i % 4;
        if (kind >= 1) {
            proto_buf_reset(&hello);
            h.u.hello.replica = wt_fixture_replica(t->fx);
            assert_int_equal(proto_encode(&h, &hello), 0);
            wt_frame_encode(&req, WT_OP_BINARY, hello.base, hello.len, 0x0badf00d, 0);
            /* Kind 3: then something that is not HELLO's follow-up: a text frame
             * (ERROR + close 1003 owed when the socket goes away). */
            if (kind == 3)
                wt_frame_encode(&req, WT_OP_TEXT, "hi", 2, 0x0badf00d, 0);
        }
        assert_int_equal(wt_write_all(fd, req.data, req.len, TIMEOUT), 0);
        wt_buf_dispose(&req);
        if (kind == 2)
            usleep(2000); /* long enough for the 101 and WELCOME to be written */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* RST on close */
        close(fd);
    }
    proto_buf_dispose(&hello);
    assert_healthy(t);
    int64_t deadline = wt_now_ms() + 5000;
    while (metric(t, "weft_connections") != 2 && wt_ms_left(deadline) > 0)
        usleep(50 * 1000);
    assert_int_equal(metric(t, "weft_connections"), 2);
    /* Their presence came and went: nobody is left over for the editors. */
    wt_editor_t *eds[] = {t->a, t->b};
    wt_editors_pump(eds, 2, 200);
    assert_int_equal(wt_editor_peers_present(t->a), 1);
    assert_int_equal(wt_editor_peers_present(t->b), 1);
    assert_healthy(t);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_protocol_edges_second_hello_is_bad_message),
        T(test_protocol_edges_replica_in_use),
        T(test_protocol_edges_sync1_garbage_is_bad_update),
        T(test_protocol_edges_update_seq_must_increase),
        T(test_protocol_edges_held_update_acked_then_released),
        T(test_protocol_edges_duplicate_update_acked_changes_nothing),
        T(test_protocol_edges_server_messages_from_client_are_bad_message),
        T(test_protocol_edges_presence_bad_relpos_is_bad_message),
        T(test_protocol_edges_presence_nil_reaches_others_without_selection),
        T(test_protocol_edges_fragmented_messages_are_reassembled),
        T(test_protocol_edges_ping_gets_pong),
        T(test_protocol_edges_close_is_echoed_with_same_code),
        T(test_protocol_edges_close_with_invalid_code_is_protocol_error),
        T(test_protocol_edges_frame_of_2_62_bytes_gets_1009),
        T(test_protocol_edges_unmasked_and_rsv1_frames_are_protocol_errors),
        T(test_protocol_edges_ping_flood_from_non_reader_is_bounded),
        T(test_protocol_edges_bad_upgrades_get_400),
        T(test_protocol_edges_hello_pipelined_with_upgrade),
        T(test_protocol_edges_clients_vanish_around_the_upgrade),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
