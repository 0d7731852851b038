/* SPDX-License-Identifier: MIT */
/*
 * test_ws_framing.c: weftd's own WebSocket framing (server/ws.c) at the edges
 * the other suites do not reach: frames that arrive a byte at a time or cut
 * inside their header, 16- and 64-bit payload lengths, a message in fragments
 * with a ping between them written in one piece, a close reason that is not
 * UTF-8 (1007), text frames (1003, or 1007 when not UTF-8, also across
 * fragments), and the memory an idle editor keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_frame.h"
#include "wt_net.h"
#include "wt_proto.h"
#include "wt_weftd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wt_asan.h"

#define TIMEOUT 10000
#define SEED 0xf4a3e5ull
#define IDLE_CONNECTIONS 400

typedef struct {
    wt_fixture_t *fx;
    wt_editor_t *a;
} fr_t;

static int setup(void **state)
{
    static const char *const args[] = {"--max-connections-per-ip", "0", NULL};
    fr_t *t = calloc(1, sizeof *t);
    *state = t;
    print_message("test_ws_framing: seed %#llx\n", (unsigned long long)SEED);
    t->fx = wt_fixture_new(SEED, args);
    if (t->fx == NULL)
        return -1;
    t->a = wt_fixture_editor(t->fx, "doc", "ada", 1);
    return t->a != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    fr_t *t = *state;
    wt_fixture_free(t->fx);
    free(t);
    return 0;
}

/* Reads until a control event of `kind`; fails on an error or the end. */
static void next_control(wt_ws_t *ws, wt_event_kind_t kind, wt_event_t *ev)
{
    int64_t deadline = wt_now_ms() + TIMEOUT;
    wt_reader_t *rd = wt_ws_reader(ws);
    for (;;) {
        int k = wt_reader_next(rd, ev);
        if (k < 0)
            fail_msg("bad frame from weftd (%d)", k);
        if (k == (int)kind)
            return;
        if (k != WT_EV_NONE)
            continue;
        uint8_t *p = wt_reader_space(rd, 65536);
        ssize_t n = wt_read_some(ws->fd, p, 65536, wt_ms_left(deadline));
        if (n <= 0)
            fail_msg("no control frame %d: %s", (int)kind, n == 0 ? "EOF" : wt_strerror((int)n));
        wt_reader_commit(rd, (size_t)n);
    }
}

/* Reads messages until one of `type`; fails on an ERROR or the end. */
static void next_of_type(wt_ws_t *ws, enum proto_type type)
{
    for (;;) {
        proto_msg_t m;
        int rc = wt_proto_recv(ws, TIMEOUT, &m);
        if (rc != 0)
            fail_msg("no %s: %s (close code %d)", proto_type_name(type), wt_strerror(rc),
                     ws->close_code);
        if (m.type == type)
            return;
        if (m.type == PROTO_ERROR)
            fail_msg("ERROR %s while waiting for %s", proto_wire_error_name(m.u.error.code),
                     proto_type_name(type));
    }
}

/* Writes bytes[0 .. len) in pieces cut at `cuts` (offsets, increasing), with
 * a pause after each so that weftd reads them separately. */
static void send_in_pieces(wt_ws_t *ws, const uint8_t *bytes, size_t len, const size_t *cuts,
                           size_t ncuts)
{
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end > at) {
            assert_int_equal(wt_ws_send_raw(ws, bytes + at, end - at), 0);
            usleep(2000);
        }
        at = end;
    }
}

static void test_ws_framing_frames_cut_anywhere(void **state)
{
    fr_t *t = *state;
    uint64_t id = wt_fixture_replica(t->fx);
    wt_ws_t *ws = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ws);
    wt_buf_t b = {0};
    wt_event_t ev;

    /* A ping, one byte at a time. */
    wt_frame_encode(&b, WT_OP_PING, "byte by byte", 12, 0x11223344u, 0);
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(wt_ws_send_raw(ws, b.data + i, 1), 0);
        usleep(1000);
    }
    next_control(ws, WT_EV_PONG, &ev);
    assert_int_equal(ev.len, 12);
    assert_memory_equal(ev.data, "byte by byte", 12);

    /* HELLO (a 7-bit length) cut after the first byte and inside the mask. */
    proto_buf_t hello = {0};
    proto_msg_t h;
    char name[PROTO_MAX_NAME];
    memset(name, 'n', sizeof name);
    memset(&h, 0, sizeof h);
    h.type = PROTO_HELLO;
    h.u.hello.version = PROTO_VERSION;
    h.u.hello.replica = id;
    h.u.hello.name = (proto_bytes_t){(const uint8_t *)name, sizeof name};
    h.u.hello.color = (proto_bytes_t){(const uint8_t *)"#abcdef", 7};
    assert_int_equal(proto_encode(&h, &hello), 0);
    b.len = 0;
    wt_frame_encode(&b, WT_OP_BINARY, hello.base, hello.len, 0x5a5a1234u, 0);
    static const size_t cuts7[] = {1, 3, 5};
    send_in_pieces(ws, b.data, b.len, cuts7, 3);
    next_of_type(ws, PROTO_WELCOME);
    next_of_type(ws, PROTO_SYNC1);

    /* Two UPDATEs: 300 characters (a 16-bit length, cut inside it and inside
     * the mask) and 70,000 (a 64-bit length, cut in its header and twice in
     * its payload). Another editor sees the text. */
    crdt_doc_t *d;
    assert_int_equal(crdt_doc_new(id, NULL, &d), 0);
    size_t n = 70300;
    char *text = malloc(n + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + i % 26);
    text[n] = '\0';
    crdt_buf_t u = {0};
    proto_buf_t upd = {0};
    assert_int_equal(crdt_doc_insert(d, 0, text, 300, &u), 0);
    assert_int_equal(proto_encode_update(&upd, 1, u.base, u.len), 0);
    b.len = 0;
    wt_frame_encode(&b, WT_OP_BINARY, upd.base, upd.len, 0x0badf00du, 0);
    assert_true(b.len > 126 + 8 && b.len < 65536);
    static const size_t cuts16[] = {1, 3, 6, 9};
    send_in_pieces(ws, b.data, b.len, cuts16, 4);
    next_of_type(ws, PROTO_ACK);
    crdt_buf_dispose(&u);
    assert_int_equal(crdt_doc_insert(d, 300, text + 300, n - 300, &u), 0);
    proto_buf_reset(&upd);
    assert_int_equal(proto_encode_update(&upd, 2, u.base, u.len), 0);
    b.len = 0;
    wt_frame_encode(&b, WT_OP_BINARY, upd.base, upd.len, 0x600df00du, 0);
    assert_true(b.len > 65536);
    const size_t cuts64[] = {2, 7, 12, b.len / 2, b.len - 1};
    send_in_pieces(ws, b.data, b.len, cuts64, 5);
    next_of_type(ws, PROTO_ACK);
    assert_int_equal(wt_editor_wait_text(t->a, text, TIMEOUT), 0);

    /* A PRESENCE in three fragments with a ping between them, all in one write. */
    static const uint8_t nil_presence[] = {0x93, 0x07, 0xc0, 0xc0};
    b.len = 0;
    wt_frame_encode(&b, WT_OP_BINARY, nil_presence, 1, 1u, WT_FRAME_NOFIN);
    wt_frame_encode(&b, WT_OP_PING, "mid", 3, 2u, 0);
    wt_frame_encode(&b, WT_OP_CONT, nil_presence + 1, 2, 3u, WT_FRAME_NOFIN);
    wt_frame_encode(&b, WT_OP_CONT, nil_presence + 3, 1, 4u, 0);
    assert_int_equal(wt_ws_send_raw(ws, b.data, b.len), 0);
    next_control(ws, WT_EV_PONG, &ev);
    assert_int_equal(ev.len, 3);
    assert_int_equal(wt_editor_wait_presence(t->a, id, 1, TIMEOUT), 0);
    assert_int_equal(t->a->n_errors, 0);

    wt_buf_dispose(&b);
    proto_buf_dispose(&hello);
    proto_buf_dispose(&upd);
    crdt_buf_dispose(&u);
    crdt_doc_free(d);
    free(text);
}

static void test_ws_framing_close_reason_not_utf8_gets_1007(void **state)
{
    fr_t *t = *state;
    wt_ws_t *ws = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ws);
    static const uint8_t payload[] = {0x03, 0xe8, 'o', 0xc3, 0x28}; /* 1000, "o" + bad UTF-8 */
    assert_int_equal(wt_ws_send(ws, WT_OP_CLOSE, payload, sizeof payload), 0);
    ws->close_sent = 1;
    int rc;
    wt_ws_msg_t m;
    while ((rc = wt_ws_recv(ws, TIMEOUT, &m)) == 0)
        ;
    if (rc != WT_ECLOSED && rc != WT_EEOF)
        fail_msg("the connection did not end: %s", wt_strerror(rc));
    if (rc == WT_ECLOSED)
        assert_int_equal(ws->close_code, 1007);
    /* A valid UTF-8 reason is echoed with the code. */
    wt_ws_t *ok = wt_fixture_client(t->fx, "/ws/doc");
    assert_non_null(ok);
    static const uint8_t good[] = {0x0f, 0xa0, 'h', 0xc3, 0xa9}; /* 4000, "hé" */
    assert_int_equal(wt_ws_send(ok, WT_OP_CLOSE, good, sizeof good), 0);
    ok->close_sent = 1;
    while ((rc = wt_ws_recv(ok, TIMEOUT, &m)) == 0)
        ;
    assert_int_equal(rc, WT_ECLOSED);
    assert_int_equal(ok->close_code, 4000);
}

/* Sends `frames` of one message (the first TEXT, the rest continuations) and
 * returns the close code weftd ends the connection with (0 if it only dropped
 * the connection). */
static int text_message_close_code(wt_fixture_t *fx, const char *const *frames, int n)
{
    wt_ws_t *ws = wt_fixture_client(fx, "/ws/doc");
    assert_non_null(ws);
    for (int i = 0; i < n; i++)
        assert_int_equal(wt_ws_send_frame(ws, i == 0 ? WT_OP_TEXT : WT_OP_CONT, frames[i],
                                          strlen(frames[i]), i + 1 < n ? WT_FRAME_NOFIN : 0),
                         0);
    int rc;
    wt_ws_msg_t m;
    while ((rc = wt_ws_recv(ws, TIMEOUT, &m)) == 0)
        ;
    if (rc != WT_ECLOSED && rc != WT_EEOF)
        fail_msg("the connection did not end: %s", wt_strerror(rc));
    return rc == WT_ECLOSED ? ws->close_code : 0;
}

/* Text frames: weftd speaks binary msgpack only, so valid UTF-8 text ends the
 * connection with 1003 (unsupported data); text that is not UTF-8, whole or
 * split across fragments (also inside one character), with 1007. */
static void test_ws_framing_text_frames_utf8(void **state)
{
    fr_t *t = *state;
    static const char *const good[] = {"h\xc3\xa9llo"};
    static const char *const good_split[] = {"h\xc3", "\xa9l", "lo"};
    static const char *const bad[] = {"h\xc3\x28llo"};
    static const char *const bad_split[] = {"ok", "\xe2\x82", "\x28"};
    static const char *const overlong[] = {"\xc0\xaf"};
    static const char *const surrogate[] = {"a\xed\xa0\x80"};
    assert_int_equal(text_message_close_code(t->fx, good, 1), 1003);
    assert_int_equal(text_message_close_code(t->fx, good_split, 3), 1003);
    assert_int_equal(text_message_close_code(t->fx, bad, 1), 1007);
    assert_int_equal(text_message_close_code(t->fx, bad_split, 3), 1007);
    assert_int_equal(text_message_close_code(t->fx, overlong, 1), 1007);
    assert_int_equal(text_message_close_code(t->fx, surrogate, 1), 1007);
    /* The editor of the document was not disturbed. */
    assert_int_equal(t->a->n_errors, 0);
}

/* Idle editors keep no buffers: their memory is a few KB each (it was about
 * 11 KB with wslay). Not under ASan, whose allocator says nothing here. */
static void test_ws_framing_idle_editors_are_small(void **state)
{
    fr_t *t = *state;
    if (WT_ASAN) {
        skip();
        return;
    }
    wt_ws_t *ws = calloc(IDLE_CONNECTIONS, sizeof *ws);
    assert_non_null(ws);
    long rss0 = wt_proc_rss_kb(t->fx->server.pid);
    assert_true(rss0 > 0);
    for (int i = 0; i < IDLE_CONNECTIONS; i++) {
        wt_ws_init(&ws[i], SEED + (uint64_t)i);
        assert_int_equal(
            wt_ws_connect(&ws[i], "127.0.0.1", t->fx->server.port, "/ws/idle", NULL, TIMEOUT), 0);
        char who[16];
        snprintf(who, sizeof who, "idle%d", i);
        assert_int_equal(
            wt_proto_send_hello(&ws[i], PROTO_VERSION, wt_fixture_replica(t->fx), who, "#123456"),
            0);
    }
    /* Every editor has its WELCOME and SYNC1 (and the others' presence). */
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        next_of_type(&ws[i], PROTO_SYNC1);
    usleep(200 * 1000);
    long rss1 = wt_proc_rss_kb(t->fx->server.pid);
    double per = (double)(rss1 - rss0) * 1024.0 / IDLE_CONNECTIONS;
    print_message("%d idle editors: weftd RSS %ld -> %ld KiB, %.0f bytes each\n", IDLE_CONNECTIONS,
                  rss0, rss1, per);
    if (per > 6000)
        fail_msg("an idle editor takes %.0f bytes of weftd's memory (want at most 6000)", per);
    for (int i = 0; i < IDLE_CONNECTIONS; i++)
        wt_ws_dispose(&ws[i]);
    free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ws_framing_frames_cut_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_framing_close_reason_not_utf8_gets_1007, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ws_framing_text_frames_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_framing_idle_editors_are_small, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
