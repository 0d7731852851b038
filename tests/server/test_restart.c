/* SPDX-License-Identifier: MIT */
/*
 * test_restart.c: durability through a real weftd: after SIGTERM (exit status 0)
 * and after SIGKILL, a weftd started again on the same data directory serves
 * every edit that was acknowledged, and editors that reconnect and resend their
 * unacknowledged updates converge with it. Edits are unique tokens, so "every
 * acknowledged edit is there" is a substring check.
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
#define MAX_TOKENS 400

static int setup(void **state)
{
    wt_fixture_t *fx = wt_fixture_new(0x4e57a47, NULL);
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

typedef struct {
    char text[16];
    wt_editor_t *ed;
    uint64_t seq; /* on the connection it was sent on */
    int acked;
} token_t;

/* Each editor appends unique tokens ("<a12>") at the end of its own view. */
static void type_tokens(wt_editor_t *const *eds, size_t n, int per_editor, token_t *toks,
                        size_t *ntok)
{
    for (int i = 0; i < per_editor; i++) {
        for (size_t e = 0; e < n; e++) {
            token_t *t = &toks[(*ntok)++];
            snprintf(t->text, sizeof t->text, "<%c%d>", (char)('a' + e), i);
            t->ed = eds[e];
            assert_int_equal(
                wt_editor_insert(eds[e], crdt_doc_length(eds[e]->doc), t->text, &t->seq), 0);
        }
        wt_editors_pump(eds, n, 0);
    }
}

static void mark_acked(token_t *toks, size_t ntok)
{
    for (size_t i = 0; i < ntok; i++)
        if (toks[i].seq != 0 && toks[i].seq <= toks[i].ed->acked)
            toks[i].acked = 1;
}

/* A fresh editor on the restarted server: its text must hold every acked token. */
static size_t check_acked_present(wt_fixture_t *fx, const char *doc, token_t *toks, size_t ntok)
{
    wt_editor_t *probe = wt_fixture_editor(fx, doc, "probe", 1);
    assert_non_null(probe);
    char *text = wt_editor_text(probe);
    size_t acked = 0;
    for (size_t i = 0; i < ntok; i++) {
        if (!toks[i].acked)
            continue;
        acked++;
        if (strstr(text, toks[i].text) == NULL)
            fail_msg("acknowledged edit %s is missing after the restart; text: %.300s",
                     toks[i].text, text);
    }
    free(text);
    return acked;
}

static void test_restart_sigterm_keeps_every_edit(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "restart", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "restart", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    wt_editor_t *eds[] = {a, b};
    static token_t toks[MAX_TOKENS];
    size_t ntok = 0;
    type_tokens(eds, 2, 50, toks, &ntok);
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    char *before = wt_editor_text(a);
    assert_int_equal(wt_weftd_stop(&fx->server, TIMEOUT), 0);
    /* The editors see their connections end. */
    assert_int_equal(wt_editor_wait_ended(a, TIMEOUT), 0);
    assert_int_equal(wt_weftd_restart(&fx->server, TIMEOUT), 0);
    wt_editor_t *c = wt_fixture_editor(fx, "restart", "cyd", 1);
    assert_non_null(c);
    char *after = wt_editor_text(c);
    assert_string_equal(after, before);
    free(after);
    /* The REST view agrees. */
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/api/docs/restart", TIMEOUT, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body.data, "<b49>"));
    wt_http_resp_dispose(&r);
    free(before);
    /* Editing goes on after reconnecting. */
    a->port = b->port = fx->server.port;
    assert_int_equal(wt_editor_reconnect(a, wt_fixture_replica(fx), TIMEOUT), 0);
    assert_int_equal(wt_editor_insert(a, 0, "again ", NULL), 0);
    wt_editor_t *ac[] = {a, c};
    assert_int_equal(wt_editors_wait_converged(ac, 2, TIMEOUT), 0);
}

static void test_restart_sigkill_keeps_acked_edits(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "crash", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "crash", "bob", 1);
    wt_editor_t *c = wt_fixture_editor(fx, "crash", "cyd", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    wt_editor_t *eds[] = {a, b, c};
    static token_t toks[MAX_TOKENS];
    size_t ntok = 0;
    type_tokens(eds, 3, 40, toks, &ntok);
    assert_int_equal(wt_editors_wait_converged(eds, 3, TIMEOUT), 0);
    /* A second burst, killed while acknowledgements are still arriving. */
    type_tokens(eds, 3, 60, toks, &ntok);
    wt_editors_pump(eds, 3, 2);
    assert_int_equal(wt_weftd_signal(&fx->server, SIGKILL), 0);
    /* Read whatever the server sent before it died: ACKs it sent are promises. */
    int64_t deadline = wt_now_ms() + TIMEOUT;
    while ((a->state != WT_ED_ENDED || b->state != WT_ED_ENDED || c->state != WT_ED_ENDED) &&
           wt_ms_left(deadline) > 0)
        wt_editors_pump(eds, 3, 50);
    assert_int_equal(wt_weftd_wait(&fx->server, TIMEOUT), -SIGKILL);
    mark_acked(toks, ntok);
    assert_int_equal(wt_weftd_restart(&fx->server, TIMEOUT), 0);
    size_t acked = check_acked_present(fx, "crash", toks, ntok);
    print_message("%zu of %zu edits were acknowledged before SIGKILL; all of them survived\n",
                  acked, ntok);
    assert_true(acked >= 120);
    /* Everyone reconnects, resends what was not acknowledged, and converges with
     * every token there. */
    for (size_t i = 0; i < 3; i++) {
        eds[i]->port = fx->server.port;
        assert_int_equal(wt_editor_reconnect(eds[i], wt_fixture_replica(fx), TIMEOUT), 0);
    }
    assert_int_equal(wt_editors_wait_converged(eds, 3, TIMEOUT), 0);
    char *text = wt_editor_text(a);
    for (size_t i = 0; i < ntok; i++)
        if (strstr(text, toks[i].text) == NULL)
            fail_msg("edit %s is lost after reconnecting", toks[i].text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_sigterm_keeps_every_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_sigkill_keeps_acked_edits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
