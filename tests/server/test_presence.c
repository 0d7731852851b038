/* SPDX-License-Identifier: MIT */
/*
 * test_presence.c: integration tests of presence through a real weftd: a
 * cursor set by one editor reaches the others with its name and colour, is sent
 * to editors who join later, and PRESENCE_LEAVE arrives when its editor closes,
 * drops without a close frame, or stops answering pings (no ghost cursors).
 * weftd runs with --ping-interval 1 --ping-timeout 1, so every live editor is
 * pumped (and answers pings) while a test waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_net.h"

#include <string.h>

#define TIMEOUT 10000

static int setup(void **state)
{
    static const char *const args[] = {"--ping-interval", "1", "--ping-timeout", "1", NULL};
    wt_fixture_t *fx = wt_fixture_new(0x9e5e0001, args);
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

/* Pumps every editor in `eds` until `watcher` sees `replica` present or gone. */
static int wait_presence_all(wt_editor_t *const *eds, size_t n, wt_editor_t *watcher,
                             uint64_t replica, int present, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    for (;;) {
        const wt_peer_t *p = wt_editor_peer(watcher, replica);
        if (p != NULL && (present ? p->present : !p->present))
            return 0;
        int left = wt_ms_left(deadline);
        if (left == 0)
            return WT_ETIMEOUT;
        wt_editors_pump(eds, n, left > 50 ? 50 : left);
    }
}

/* Index where a peer's encoded relative position lands in `ed`'s replica. */
static size_t peer_index(const wt_editor_t *ed, const uint8_t *pos, size_t len)
{
    crdt_relpos_t rp;
    assert_int_equal(crdt_relpos_decode(pos, len, &rp), 0);
    size_t idx;
    assert_int_equal(crdt_doc_relpos_to_index(ed->doc, &rp, &idx), 0);
    return idx;
}

static void test_presence_reaches_others_with_name_and_colour(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "pres", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "pres", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editor_insert(a, 0, "hello world", NULL), 0);
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(wt_editor_set_presence(a, 6, 11), 0);
    assert_int_equal(wait_presence_all(eds, 2, b, a->replica, 1, TIMEOUT), 0);
    /* weftd announces a newcomer without a cursor: wait for the cursor itself. */
    int64_t deadline = wt_now_ms() + TIMEOUT;
    while (!wt_editor_peer(b, a->replica)->has_selection && wt_ms_left(deadline) > 0)
        wt_editors_pump(eds, 2, 50);
    const wt_peer_t *p = wt_editor_peer(b, a->replica);
    assert_string_equal(p->name, "ada");
    assert_string_equal(p->color, a->color);
    assert_int_equal(p->has_selection, 1);
    assert_int_equal(peer_index(b, p->anchor, p->anchor_len), 6);
    assert_int_equal(peer_index(b, p->head, p->head_len), 11);
    /* The cursor keeps its place through an edit before it. */
    assert_int_equal(wt_editor_insert(b, 0, ">> ", NULL), 0);
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(peer_index(b, p->anchor, p->anchor_len), 9);
    /* No selection: nil, nil. */
    uint64_t before = p->updates;
    assert_int_equal(wt_editor_clear_presence(a), 0);
    deadline = wt_now_ms() + TIMEOUT;
    while (wt_editor_peer(b, a->replica)->updates == before && wt_ms_left(deadline) > 0)
        wt_editors_pump(eds, 2, 50);
    p = wt_editor_peer(b, a->replica);
    assert_true(p->updates > before);
    assert_int_equal(p->has_selection, 0);
    assert_int_equal(p->present, 1);
    /* The writer does not hear of itself. */
    assert_null(wt_editor_peer(a, a->replica));
}

static void test_presence_sent_to_late_joiner(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "pres-late", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "pres-late", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editor_insert(a, 0, "abc", NULL), 0);
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    assert_int_equal(wt_editor_set_presence(a, 1, 1), 0);
    assert_int_equal(wait_presence_all(eds, 2, b, a->replica, 1, TIMEOUT), 0);
    wt_editor_t *c = wt_fixture_editor(fx, "pres-late", "cyd", 1);
    assert_non_null(c);
    wt_editor_t *all[] = {a, b, c};
    assert_int_equal(wait_presence_all(all, 3, c, a->replica, 1, TIMEOUT), 0);
    const wt_peer_t *p = wt_editor_peer(c, a->replica);
    assert_string_equal(p->name, "ada");
    assert_int_equal(peer_index(c, p->anchor, p->anchor_len), 1);
}

/* Shared body: b sets a cursor, a sees it, `leave` makes b go, a must hear
 * PRESENCE_LEAVE, and a newcomer must not see b. */
static void check_leave(wt_fixture_t *fx, const char *doc, void (*leave)(wt_editor_t *b),
                        int pump_leaver)
{
    wt_editor_t *a = wt_fixture_editor(fx, doc, "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, doc, "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editor_set_presence(b, 0, 0), 0);
    assert_int_equal(wait_presence_all(eds, 2, a, b->replica, 1, TIMEOUT), 0);
    int64_t t0 = wt_now_ms();
    leave(b);
    assert_int_equal(wait_presence_all(eds, pump_leaver ? 2 : 1, a, b->replica, 0, TIMEOUT), 0);
    print_message("PRESENCE_LEAVE after %lld ms\n", (long long)(wt_now_ms() - t0));
    assert_int_equal(wt_editor_peer(a, b->replica)->leaves, 1);
    wt_editor_t *c = wt_fixture_editor(fx, doc, "cyd", 1);
    assert_non_null(c);
    /* Give the server time to send what it has, then look: no ghost of b. */
    wt_editor_t *ac[] = {a, c};
    assert_int_equal(wt_editor_set_presence(a, 0, 0), 0);
    assert_int_equal(wait_presence_all(ac, 2, c, a->replica, 1, TIMEOUT), 0);
    const wt_peer_t *ghost = wt_editor_peer(c, b->replica);
    assert_true(ghost == NULL || !ghost->present);
}

static void leave_close(wt_editor_t *b)
{
    assert_int_equal(wt_editor_close(b, TIMEOUT), 0);
}

static void leave_drop(wt_editor_t *b)
{
    wt_editor_drop(b);
}

static void leave_stop_ponging(wt_editor_t *b)
{
    b->ws.auto_pong = 0;
}

static void test_presence_leave_on_close(void **state)
{
    check_leave(*state, "leave-close", leave_close, 0);
}

static void test_presence_leave_on_drop_without_close_frame(void **state)
{
    check_leave(*state, "leave-drop", leave_drop, 0);
}

static void test_presence_leave_on_ping_timeout(void **state)
{
    wt_fixture_t *fx = *state;
    /* b keeps reading (so only the missing pongs can give it away). */
    check_leave(fx, "leave-ping", leave_stop_ponging, 1);
    wt_editor_t *b = fx->editors[1];
    assert_true(b->ws.pings > 0);
    /* Its connection is closed without a close frame (docs/protocol.md). */
    assert_int_equal(wt_editor_wait_ended(b, TIMEOUT), 0);
    assert_int_equal(b->end_rc, WT_EEOF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_presence_reaches_others_with_name_and_colour, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_presence_sent_to_late_joiner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_leave_on_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_leave_on_drop_without_close_frame, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_presence_leave_on_ping_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
