/* SPDX-License-Identifier: MIT */
/*
 * test_sync.c: integration tests of editing through a real weftd: editors
 * converge (also when typing at the same place at once), a REST read returns the
 * converged text, a late joiner gets exactly the document, a reconnecting editor
 * with offline edits converges with everyone, and every UPDATE is acknowledged.
 * Each test starts its own weftd (tests/net/wt_fixture.h); the teardown stops
 * it and every client even after a failed assertion. Random edits use fixed
 * seeds, printed when a test fails.
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT 10000

static int setup(void **state)
{
    wt_fixture_t *fx = wt_fixture_new(0x5eed0001, NULL);
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

/* Fails the test with the seed and every editor's text when they differ. */
static void assert_converged(wt_editor_t *const *eds, size_t n, uint64_t seed)
{
    int rc = wt_editors_wait_converged(eds, n, TIMEOUT);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            char *t = wt_editor_text(eds[i]);
            print_error("editor %zu (%s): %zu unacked, state %d, text \"%.200s\"\n", i,
                        eds[i]->name, eds[i]->n_unacked, (int)eds[i]->state, t);
            free(t);
        }
        fail_msg("editors did not converge within %d ms (seed 0x%llx)", TIMEOUT,
                 (unsigned long long)seed);
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(eds[i]->apply_failures, 0);
        assert_int_equal(crdt_doc_check(eds[i]->doc), 0);
    }
}

/* The text of a document through GET /api/docs/<doc> ("text" of the JSON). */
static char *rest_text(wt_fixture_t *fx, const char *doc, int *status)
{
    char path[200];
    snprintf(path, sizeof path, "/api/docs/%s", doc);
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, path, TIMEOUT, &r), 0);
    *status = r.status;
    char *out = NULL;
    const char *body = (const char *)r.body.data;
    const char *k = strstr(body, "\"text\"");
    if (k) {
        k = strchr(k + 6, '"');
        if (k) {
            /* Unescape the JSON string. */
            size_t cap = strlen(k) + 1, n = 0;
            out = malloc(cap);
            for (const char *p = k + 1; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) {
                    p++;
                    char c = *p;
                    if (c == 'n')
                        c = '\n';
                    else if (c == 't')
                        c = '\t';
                    else if (c == 'r')
                        c = '\r';
                    else if (c == 'u') {
                        unsigned v =
                            (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
                        p += 4;
                        c = (char)v; /* tests only use ASCII control characters here */
                    }
                    out[n++] = c;
                } else {
                    out[n++] = *p;
                }
            }
            out[n] = 0;
        }
    }
    if (out == NULL && r.status == 200)
        print_error("no \"text\" in %s\n", body);
    wt_http_resp_dispose(&r);
    return out;
}

static void test_sync_two_editors_converge(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "two", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "two", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "hello", NULL), 0);
    assert_int_equal(wt_editor_wait_text(b, "hello", TIMEOUT), 0);
    assert_int_equal(wt_editor_insert(b, 5, " world", NULL), 0);
    assert_int_equal(wt_editor_wait_text(a, "hello world", TIMEOUT), 0);
    assert_int_equal(wt_editor_delete(a, 0, 1, NULL), 0);
    assert_int_equal(wt_editor_insert(a, 0, "J", NULL), 0);
    assert_int_equal(wt_editor_wait_text(b, "Jello world", TIMEOUT), 0);
    wt_editor_t *eds[] = {a, b};
    assert_converged(eds, 2, 0);
}

static void test_sync_concurrent_same_spot_no_interleaving(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "spot", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "spot", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "[]", NULL), 0);
    assert_int_equal(wt_editor_wait_text(b, "[]", TIMEOUT), 0);
    /* Both type a word at index 1, one keystroke per update, before hearing the other. */
    const char *wa = "alpha", *wb = "BRAVO";
    for (size_t i = 0; i < 5; i++) {
        char ca[2] = {wa[i], 0}, cb[2] = {wb[i], 0};
        assert_int_equal(wt_editor_insert(a, 1 + i, ca, NULL), 0);
        assert_int_equal(wt_editor_insert(b, 1 + i, cb, NULL), 0);
    }
    wt_editor_t *eds[] = {a, b};
    assert_converged(eds, 2, 0);
    char *t = wt_editor_text(a);
    if (strcmp(t, "[alphaBRAVO]") != 0 && strcmp(t, "[BRAVOalpha]") != 0)
        fail_msg("concurrent words interleaved: \"%s\"", t);
    free(t);
}

/* One random edit by `ed`: mostly inserts of 1..4 letters, some deletes. */
static void random_edit(wt_editor_t *ed, rng_t *rng)
{
    size_t len = crdt_doc_length(ed->doc);
    if (len > 0 && rng_below(rng, 4) == 0) {
        size_t at = rng_below(rng, (uint32_t)len);
        size_t n = 1 + rng_below(rng, (uint32_t)(len - at < 3 ? len - at : 3));
        assert_int_equal(wt_editor_delete(ed, at, n, NULL), 0);
    } else {
        char text[5];
        size_t n = 1 + rng_below(rng, 4);
        for (size_t i = 0; i < n; i++)
            text[i] = (char)('a' + rng_below(rng, 26));
        text[n] = 0;
        assert_int_equal(wt_editor_insert(ed, rng_below(rng, (uint32_t)len + 1), text, NULL), 0);
    }
}

static void test_sync_ten_editors_random_edits_converge(void **state)
{
    wt_fixture_t *fx = *state;
    const uint64_t seed = 0x10ed17;
    rng_t rng;
    rng_init(&rng, seed);
    wt_editor_t *eds[10];
    for (size_t i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "ed%zu", i);
        eds[i] = wt_fixture_editor(fx, "ten", name, 1);
        assert_non_null(eds[i]);
    }
    for (int round = 0; round < 30; round++) {
        for (size_t i = 0; i < 10; i++)
            if (rng_below(&rng, 2))
                random_edit(eds[i], &rng);
        /* Let some messages through, but not all: edits stay concurrent. */
        wt_editors_pump(eds, 10, (int)rng_below(&rng, 5));
    }
    assert_converged(eds, 10, seed);
    char *t = wt_editor_text(eds[0]);
    int status;
    char *rest = rest_text(fx, "ten", &status);
    assert_int_equal(status, 200);
    assert_non_null(rest);
    if (strcmp(rest, t) != 0)
        fail_msg("REST text \"%s\" differs from the editors' \"%s\" (seed 0x%llx)", rest, t,
                 (unsigned long long)seed);
    free(rest);
    free(t);
}

static void test_sync_late_joiner_gets_document(void **state)
{
    wt_fixture_t *fx = *state;
    rng_t rng;
    rng_init(&rng, 0x1a7e);
    wt_editor_t *a = wt_fixture_editor(fx, "late", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "late", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 50; i++)
        random_edit(i % 2 ? a : b, &rng);
    wt_editor_t *two[] = {a, b};
    assert_converged(two, 2, 0x1a7e);
    wt_editor_t *c = wt_fixture_editor(fx, "late", "cyd", 1);
    assert_non_null(c);
    char *want = wt_editor_text(a);
    char *got = wt_editor_text(c);
    assert_string_equal(got, want);
    free(got);
    /* Its state vector says it has everything: a diff from a's side is empty of ops. */
    crdt_buf_t sv = {0}, diff = {0};
    assert_int_equal(crdt_doc_state_vector(c->doc, &sv), 0);
    assert_int_equal(crdt_doc_diff(a->doc, sv.base, sv.len, &diff), 0);
    crdt_doc_t *probe;
    assert_int_equal(crdt_doc_load(99, NULL, diff.base, diff.len, &probe), 0);
    assert_int_equal(crdt_doc_length(probe), 0);
    crdt_doc_free(probe);
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&diff);
    /* And it edits like anyone else. */
    assert_int_equal(wt_editor_insert(c, 0, "!", NULL), 0);
    wt_editor_t *three[] = {a, b, c};
    assert_converged(three, 3, 0x1a7e);
    free(want);
}

static void test_sync_reconnect_offline_edits_converge(void **state)
{
    wt_fixture_t *fx = *state;
    const uint64_t seed = 0x0ff11e;
    rng_t rng;
    rng_init(&rng, seed);
    wt_editor_t *a = wt_fixture_editor(fx, "offline", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "offline", "bob", 1);
    wt_editor_t *c = wt_fixture_editor(fx, "offline", "cyd", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(wt_editor_insert(a, 0, "shared base text", NULL), 0);
    wt_editor_t *eds[] = {a, b, c};
    assert_converged(eds, 3, seed);
    /* c drops without a close frame, edits offline while the others edit too. */
    wt_editor_drop(c);
    for (int i = 0; i < 20; i++) {
        random_edit(c, &rng);
        random_edit(i % 2 ? a : b, &rng);
    }
    assert_int_equal(c->n_unacked, 20);
    wt_editor_t *ab[] = {a, b};
    assert_converged(ab, 2, seed);
    /* Back online as a new session; the offline edits are resent and acknowledged. */
    assert_int_equal(wt_editor_reconnect(c, wt_fixture_replica(fx), TIMEOUT), 0);
    assert_converged(eds, 3, seed);
    /* An update sent but not acknowledged before a drop is resent too (a duplicate
     * for the server if it had stored it: applying twice is a no-op). */
    assert_int_equal(wt_editor_insert(c, 0, ">", NULL), 0);
    wt_editor_drop(c);
    assert_int_equal(c->n_unacked, 1);
    assert_int_equal(wt_editor_reconnect(c, wt_fixture_replica(fx), TIMEOUT), 0);
    assert_converged(eds, 3, seed);
    char *t = wt_editor_text(a);
    assert_int_equal(t[0], '>');
    free(t);
}

static void test_sync_every_seq_acked(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "acks", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "acks", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    uint64_t last = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t seq;
        assert_int_equal(wt_editor_insert(a, (size_t)i, "x", &seq), 0);
        assert_int_equal(seq, last + 1);
        last = seq;
        if (i % 20 == 0)
            wt_editor_pump(a, 0);
    }
    assert_int_equal(wt_editor_wait_ack(a, last, TIMEOUT), 0);
    assert_int_equal(a->acked, last);
    assert_int_equal(a->n_unacked, 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    assert_int_equal(a->n_errors, 0);
    /* The other editor got all of it; it wrote nothing, so it has no ACK. */
    wt_editor_t *eds[] = {a, b};
    assert_converged(eds, 2, 0);
    assert_int_equal(b->acks_in, 0);
    assert_int_equal(crdt_doc_length(b->doc), 200);
}

/* weftd with a broadcast pace of 5 ms per editor: a document of 12 editors
 * broadcasts at most every 50 ms (the cap), in frames shared by its editors,
 * and its ACKs wait for those broadcasts. */
static int setup_paced(void **state)
{
    static const char *const args[] = {"--broadcast-pace", "5000", NULL};
    wt_fixture_t *fx = wt_fixture_new(0x5eed0002, args);
    if (fx == NULL)
        return -1;
    *state = fx;
    return 0;
}

/* Under pacing nothing is lost: every edit reaches every editor, every one is
 * acknowledged (in order: `acked` never goes back), presence and leaves reach
 * everyone. */
static void test_sync_paced_document_many_editors(void **state)
{
    enum { N = 12 };
    wt_fixture_t *fx = *state;
    const uint64_t seed = 0x9ace;
    rng_t rng;
    rng_init(&rng, seed);
    wt_editor_t *eds[N];
    uint64_t acked[N] = {0};
    for (size_t i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "ed%zu", i);
        eds[i] = wt_fixture_editor(fx, "paced", name, 1);
        assert_non_null(eds[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++)
            if (i != j)
                assert_int_equal(wt_editor_wait_presence(eds[i], eds[j]->replica, 1, TIMEOUT), 0);
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < N; i++)
            if (rng_below(&rng, 2))
                random_edit(eds[i], &rng);
        wt_editors_pump(eds, N, (int)rng_below(&rng, 8));
        for (size_t i = 0; i < N; i++) {
            if (eds[i]->acked < acked[i])
                fail_msg("editor %zu: ACK %llu after %llu (seed 0x%llx)", i,
                         (unsigned long long)eds[i]->acked, (unsigned long long)acked[i],
                         (unsigned long long)seed);
            acked[i] = eds[i]->acked;
        }
    }
    assert_converged(eds, N, seed);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(eds[i]->n_errors, 0);
        assert_int_equal(eds[i]->acked, eds[i]->next_seq - 1);
    }
    /* A lone writer is left out of the broadcasts of its own edits: its held
     * ACKs must still go out with them. */
    for (int k = 0; k < 5; k++) {
        uint64_t seq;
        assert_int_equal(wt_editor_insert(eds[1], 0, "ab", &seq), 0);
        assert_true(wt_editor_pump(eds[1], 2) >= 0);
        assert_int_equal(wt_editor_insert(eds[1], 1, "c", &seq), 0);
        assert_int_equal(wt_editor_wait_ack(eds[1], seq, TIMEOUT), 0);
    }
    assert_converged(eds, N, seed);
    /* A cursor and a leave reach every other editor. */
    assert_int_equal(wt_editor_set_presence(eds[0], 1, 1), 0);
    for (size_t i = 1; i < N; i++) {
        for (int k = 0; k < 100; k++) {
            const wt_peer_t *p = wt_editor_peer(eds[i], eds[0]->replica);
            if (p != NULL && p->has_selection)
                break;
            wt_editor_pump(eds[i], 100);
        }
        const wt_peer_t *p = wt_editor_peer(eds[i], eds[0]->replica);
        assert_non_null(p);
        assert_true(p->has_selection);
    }
    assert_int_equal(wt_editor_close(eds[N - 1], TIMEOUT), 0);
    for (size_t i = 0; i < N - 1; i++)
        assert_int_equal(wt_editor_wait_presence(eds[i], eds[N - 1]->replica, 0, TIMEOUT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_two_editors_converge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_concurrent_same_spot_no_interleaving, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sync_ten_editors_random_edits_converge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sync_late_joiner_gets_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_reconnect_offline_edits_converge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sync_every_seq_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_paced_document_many_editors, setup_paced,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
