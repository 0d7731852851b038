/* SPDX-License-Identifier: MIT */
/*
 * test_lifecycle.c: a real weftd over time: documents unloaded --unload-after
 * seconds after their last editor left and loaded again with the same text,
 * /api/docs the same for a loaded and an unloaded document, SIGTERM while
 * editors are connected (every edit acknowledged, then close 1001, exit 0),
 * SIGTERM with idle HTTP connections open, a second weftd on the same data
 * directory, refusals to start (a --data path that is a file, an address in
 * use), and snapshots (--snapshot-every 5) surviving a restart. Each test starts
 * its own weftd on a fresh temporary directory through the fixture.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT 10000
#define SEED 0x11fec7c1e

typedef struct {
    wt_fixture_t *fx;
    char tmp[256]; /* a scratch directory of the test, removed by teardown */
} lc_t;

static int teardown(void **state)
{
    lc_t *t = *state;
    if (t == NULL)
        return 0;
    wt_fixture_free(t->fx);
    if (t->tmp[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "test_lifecycle: cannot remove %s\n", t->tmp);
    }
    free(t);
    return 0;
}

/* A fixture with weftd started with `args`; fails the test if it does not start. */
static lc_t *start(void **state, const char *const *args)
{
    lc_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    *state = t;
    t->fx = wt_fixture_new(SEED, args);
    if (t->fx == NULL)
        fail_msg("weftd did not start (seed %#llx)", (unsigned long long)SEED);
    return t;
}

static double metric(wt_fixture_t *fx, const char *series)
{
    char *m = wt_fixture_metrics(fx);
    assert_non_null(m);
    double v = -1;
    if (!wt_metric(m, series, &v))
        fail_msg("/metrics has no %s", series);
    free(m);
    return v;
}

/* Polls /metrics until `series` equals `want`; returns the milliseconds it took,
 * or -1 after `timeout_ms`. */
static int wait_metric(wt_fixture_t *fx, const char *series, double want, int timeout_ms)
{
    int64_t start_ms = wt_now_ms(), deadline = start_ms + timeout_ms;
    for (;;) {
        if (metric(fx, series) == want)
            return (int)(wt_now_ms() - start_ms);
        if (wt_ms_left(deadline) == 0)
            return -1;
        usleep(50 * 1000);
    }
}

/* GET /api/docs/<doc>: returns the HTTP status; *text gets the raw JSON string
 * value of "text" (still escaped, malloc'd) and *loaded the "loaded" flag. */
static int api_doc(wt_fixture_t *fx, const char *doc, char **text, int *loaded)
{
    char path[200];
    wt_http_resp_t r;
    snprintf(path, sizeof path, "/api/docs/%s", doc);
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, path, TIMEOUT, &r), 0);
    int status = r.status;
    if (text != NULL)
        *text = NULL;
    if (status == 200) {
        const char *body = (const char *)r.body.data;
        const char *p = strstr(body, "\"text\":\"");
        assert_non_null(p);
        p += 8;
        const char *q = p;
        while (*q && *q != '"')
            q += *q == '\\' && q[1] ? 2 : 1;
        assert_int_equal(*q, '"');
        if (text != NULL)
            *text = strndup(p, (size_t)(q - p));
        if (loaded != NULL) {
            if (strstr(body, "\"loaded\":true") != NULL)
                *loaded = 1;
            else if (strstr(body, "\"loaded\":false") != NULL)
                *loaded = 0;
            else
                fail_msg("no \"loaded\" in %s", body);
        }
    }
    wt_http_resp_dispose(&r);
    return status;
}

/* ---- unloading -------------------------------------------------------------- */

static void test_lifecycle_unload_after_last_editor_and_reload(void **state)
{
    static const char *const args[] = {"--unload-after", "1", NULL};
    lc_t *t = start(state, args);
    wt_editor_t *a = wt_fixture_editor(t->fx, "unl", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(t->fx, "unl", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "kept through an unload", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    assert_int_equal(wt_editor_wait_text(b, "kept through an unload", TIMEOUT), 0);
    assert_int_equal(metric(t->fx, "weft_documents_loaded"), 1);

    /* One editor left: the document stays loaded well past --unload-after. */
    assert_int_equal(wt_editor_close(a, TIMEOUT), 0);
    usleep(1600 * 1000);
    assert_int_equal(metric(t->fx, "weft_documents_loaded"), 1);

    /* The last one leaves: not at once, but about a second later. */
    double unloaded_before = metric(t->fx, "weft_documents_unloaded_total");
    wt_editor_drop(b);
    usleep(300 * 1000);
    assert_int_equal(metric(t->fx, "weft_documents_loaded"), 1);
    int ms = wait_metric(t->fx, "weft_documents_loaded", 0, 5000);
    if (ms < 0)
        fail_msg("the document is still loaded 5 s after its last editor left (--unload-after 1)");
    print_message("unloaded %d ms after the 300 ms check\n", ms);
    assert_int_equal(metric(t->fx, "weft_documents_unloaded_total"), unloaded_before + 1);

    char *text = NULL;
    int loaded = -1;
    assert_int_equal(api_doc(t->fx, "unl", &text, &loaded), 200);
    assert_int_equal(loaded, 0);
    assert_string_equal(text, "kept through an unload");
    free(text);
    /* A REST read does not load it. */
    assert_int_equal(metric(t->fx, "weft_documents_loaded"), 0);

    /* An editor comes back: loaded again, same text, still editable. */
    double loaded_total = metric(t->fx, "weft_documents_loaded_total");
    wt_editor_t *c = wt_fixture_editor(t->fx, "unl", "cyd", 1);
    assert_non_null(c);
    assert_true(wt_editor_text_is(c, "kept through an unload"));
    assert_int_equal(metric(t->fx, "weft_documents_loaded"), 1);
    assert_int_equal(metric(t->fx, "weft_documents_loaded_total"), loaded_total + 1);
    assert_int_equal(wt_editor_insert(c, 0, ">", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(c, TIMEOUT), 0);
    assert_int_equal(api_doc(t->fx, "unl", &text, &loaded), 200);
    assert_int_equal(loaded, 1);
    assert_string_equal(text, ">kept through an unload");
    free(text);
}

static void test_lifecycle_api_docs_same_loaded_and_unloaded(void **state)
{
    static const char *const args[] = {"--unload-after", "1", NULL};
    lc_t *t = start(state, args);
    wt_editor_t *a = wt_fixture_editor(t->fx, "same", "ada", 1);
    assert_non_null(a);
    /* Text that needs JSON escaping, with multi-byte and astral characters, and
     * a deletion in the middle. */
    static const char typed[] = "quote \" backslash \\ tab \t nl \n ctl \x01 del \x7f "
                                "\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80 end";
    assert_int_equal(wt_editor_insert(a, 0, typed, NULL), 0);
    assert_int_equal(wt_editor_delete(a, 0, 6, NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    char *loaded_text = NULL, *unloaded_text = NULL;
    int loaded = -1;
    assert_int_equal(api_doc(t->fx, "same", &loaded_text, &loaded), 200);
    assert_int_equal(loaded, 1);
    assert_string_equal(loaded_text, "\\\" backslash \\\\ tab \\u0009 nl \\n ctl \\u0001 del "
                                     "\\u007f \xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80 end");
    assert_int_equal(wt_editor_close(a, TIMEOUT), 0);
    if (wait_metric(t->fx, "weft_documents_loaded", 0, 5000) < 0)
        fail_msg("not unloaded");
    assert_int_equal(api_doc(t->fx, "same", &unloaded_text, &loaded), 200);
    assert_int_equal(loaded, 0);
    assert_string_equal(unloaded_text, loaded_text);
    free(loaded_text);
    free(unloaded_text);
    /* An unknown document is 404 either way. */
    assert_int_equal(api_doc(t->fx, "never-written", NULL, NULL), 404);
}

/*
 * Hostile: the last editor types and leaves at once (a closed tab) while the
 * store's writer is busy with a big commit of another document. With
 * --unload-after 0 the document is unloaded before its last update is
 * committed; store_doc_load() reads only committed data, so the next editor, and
 * /api/docs, must still see that update.
 */
static void test_lifecycle_unload_does_not_lose_uncommitted_updates(void **state)
{
    static const char *const args[] = {"--unload-after",
                                       "0",
                                       "--max-message",
                                       "67108864",
                                       "--max-queued",
                                       "268435456",
                                       "--snapshot-every",
                                       "2",
                                       NULL};
    lc_t *t = start(state, args);
    wt_editor_t *big = wt_fixture_editor(t->fx, "big", "big", 1);
    assert_non_null(big);
    size_t chunk_len = 1u << 20;
    char *chunk = malloc(chunk_len + 1);
    assert_non_null(chunk);
    int lost = 0, rounds = 0;
    static const int pause_ms[] = {0, 2, 5, 10, 0, 2, 5, 10};
    for (int round = 0; round < 8 && !lost; round++, rounds++) {
        char doc[32], word[32];
        snprintf(doc, sizeof doc, "race%d", round);
        snprintf(word, sizeof word, "typed-then-left-%d", round);
        wt_editor_t *a = wt_fixture_editor(t->fx, doc, "ada", 1);
        assert_non_null(a);
        /* Keep the writer busy: big updates of another document first, then
         * the small one while they are being committed. */
        for (int k = 0; k < 3; k++) {
            memset(chunk, 'a' + k, chunk_len);
            chunk[chunk_len] = 0;
            assert_int_equal(wt_editor_insert(big, 0, chunk, NULL), 0);
        }
        usleep((useconds_t)pause_ms[round] * 1000);
        assert_int_equal(wt_editor_insert(a, 0, word, NULL), 0);
        usleep(2000);
        wt_editor_drop(a); /* gone before its ACK */
        usleep(30 * 1000);
        wt_editor_t *b = wt_fixture_editor(t->fx, doc, "bob", 1);
        assert_non_null(b);
        assert_int_equal(wt_editor_wait_acked(big, 30000), 0);
        wt_editor_pump(b, 200);
        char *seen = wt_editor_text(b);
        char *rest = NULL;
        assert_int_equal(api_doc(t->fx, doc, &rest, NULL), 200);
        if (strcmp(seen, word) != 0 || strcmp(rest, word) != 0) {
            print_error("round %d: the last editor's update is lost for online editors: "
                        "the next editor sees \"%s\", /api/docs \"%s\", want \"%s\"\n",
                        round, seen, rest, word);
            lost = 1;
        }
        free(seen);
        free(rest);
        wt_editor_drop(b);
    }
    free(chunk);
    if (lost)
        fail_msg("an update committed after its document was unloaded is missing from the "
                 "reloaded document (seed %#llx)",
                 (unsigned long long)SEED);
    print_message("%d rounds, nothing lost\n", rounds);
}

/* ---- SIGTERM ---------------------------------------------------------------- */

static void test_lifecycle_sigterm_acks_everything_then_closes_1001(void **state)
{
    lc_t *t = start(state, NULL);
    enum { N = 3, EDITS = 25 };
    wt_editor_t *eds[N];
    for (int i = 0; i < N; i++) {
        char name[8];
        snprintf(name, sizeof name, "ed%d", i);
        eds[i] = wt_fixture_editor(t->fx, "term", name, 1);
        assert_non_null(eds[i]);
    }
    /* A raw client that upgraded but never said HELLO is closed too. */
    wt_ws_t *raw = wt_fixture_client(t->fx, "/ws/term");
    assert_non_null(raw);
    for (int k = 0; k < EDITS; k++)
        for (int i = 0; i < N; i++) {
            char tok[16];
            snprintf(tok, sizeof tok, "<%d.%d>", i, k);
            assert_int_equal(wt_editor_insert(eds[i], 0, tok, NULL), 0);
        }
    uint64_t last_seq[N];
    for (int i = 0; i < N; i++)
        last_seq[i] = eds[i]->next_seq - 1;
    /* Everything is on the server's side of the sockets before the signal. */
    usleep(200 * 1000);
    int64_t t0 = wt_now_ms();
    assert_int_equal(wt_weftd_signal(&t->fx->server, SIGTERM), 0);
    int64_t deadline = t0 + 6000;
    for (;;) {
        int ended = 0;
        for (int i = 0; i < N; i++)
            ended += eds[i]->state == WT_ED_ENDED;
        if (ended == N || wt_ms_left(deadline) == 0)
            break;
        wt_editors_pump(eds, N, 50);
    }
    for (int i = 0; i < N; i++) {
        if (eds[i]->state != WT_ED_ENDED)
            fail_msg("editor %d: no end of connection 6 s after SIGTERM", i);
        if (eds[i]->end_rc != WT_ECLOSED)
            fail_msg("editor %d: connection ended with %s, not a close frame", i,
                     wt_strerror(eds[i]->end_rc));
        assert_int_equal(eds[i]->ws.close_code, 1001);
        /* Every UPDATE was acknowledged before the close frame. */
        if (eds[i]->n_unacked != 0 || eds[i]->acked != last_seq[i])
            fail_msg("editor %d: %zu updates unacknowledged at the close (acked %llu of %llu)", i,
                     eds[i]->n_unacked, (unsigned long long)eds[i]->acked,
                     (unsigned long long)last_seq[i]);
        assert_int_equal(eds[i]->apply_failures, 0);
    }
    wt_ws_msg_t m;
    int rc;
    while ((rc = wt_ws_recv(raw, 6000, &m)) == 0)
        ;
    assert_int_equal(rc, WT_ECLOSED);
    assert_int_equal(raw->close_code, 1001);
    int status = wt_weftd_wait(&t->fx->server, 6000);
    print_message("weftd exited %d, %lld ms after SIGTERM\n", status,
                  (long long)(wt_now_ms() - t0));
    assert_int_equal(status, 0);
    assert_true(wt_now_ms() - t0 < 5000);

    /* Everything is there after a restart. */
    assert_int_equal(wt_weftd_restart(&t->fx->server, TIMEOUT), 0);
    wt_editor_t *probe = wt_fixture_editor(t->fx, "term", "probe", 1);
    assert_non_null(probe);
    assert_int_equal(crdt_doc_length(probe->doc), crdt_doc_length(eds[0]->doc));
    char *want = wt_editor_text(eds[0]);
    assert_true(wt_editor_text_is(probe, want));
    free(want);
}

/* An HTTP client that keeps its connection open (keep-alive after a request, or
 * connected and silent) must not stop weftd from exiting 0 on SIGTERM. */
static void check_sigterm_with_idle_http(void **state, int send_request)
{
    lc_t *t = start(state, NULL);
    wt_editor_t *a = wt_fixture_editor(t->fx, "idle", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "x", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(a, TIMEOUT), 0);
    int fd = wt_tcp_connect("127.0.0.1", t->fx->server.port, TIMEOUT);
    assert_true(fd >= 0);
    if (send_request) {
        static const char req[] = "GET /healthz HTTP/1.1\r\nHost: weft\r\n\r\n";
        assert_int_equal(wt_write_all(fd, req, strlen(req), TIMEOUT), 0);
        wt_buf_t in = {0};
        wt_http_resp_t r = {0};
        assert_int_equal(wt_http_read_response(fd, &in, 0, TIMEOUT, &r), 0);
        assert_int_equal(r.status, 200);
        wt_http_resp_dispose(&r);
        wt_buf_dispose(&in);
    }
    usleep(100 * 1000);
    int64_t t0 = wt_now_ms();
    assert_int_equal(wt_weftd_signal(&t->fx->server, SIGTERM), 0);
    wt_editor_t *eds[] = {a};
    while (a->state != WT_ED_ENDED && wt_now_ms() - t0 < 6000)
        wt_editors_pump(eds, 1, 50);
    int status = wt_weftd_wait(&t->fx->server, 8000);
    close(fd);
    print_message("weftd exited %d (%s), %lld ms after SIGTERM\n", status,
                  status == -SIGABRT ? "SIGABRT"
                  : status < 0       ? "a signal"
                                     : "exit code",
                  (long long)(wt_now_ms() - t0));
    if (status != 0)
        fail_msg("weftd with an idle HTTP connection open (%s) ended with %d on SIGTERM, "
                 "not exit 0",
                 send_request ? "keep-alive after GET /healthz" : "connected, nothing sent",
                 status);
}

static void test_lifecycle_sigterm_with_keepalive_http_connection_exits_0(void **state)
{
    check_sigterm_with_idle_http(state, 1);
}

static void test_lifecycle_sigterm_with_silent_tcp_connection_exits_0(void **state)
{
    check_sigterm_with_idle_http(state, 0);
}

/* ---- two servers, refusals to start ------------------------------------------- */

static void test_lifecycle_second_weftd_on_same_data_dir(void **state)
{
    lc_t *t = start(state, NULL);
    wt_weftd_t second;
    memset(&second, 0, sizeof second);
    int rc = wt_weftd_start(&second, t->fx->server.data_dir, NULL, TIMEOUT);
    if (rc != 0) {
        /* Refusing a directory in use is a fine answer too. */
        print_message("a second weftd on the same data directory refuses to start\n");
        wt_weftd_cleanup(&second);
        wt_editor_t *a = wt_fixture_editor(t->fx, "one", "ada", 1);
        assert_non_null(a);
        return;
    }
    print_message("a second weftd runs on the same data directory (port %u)\n",
                  (unsigned)second.port);
    /* Each server edits its own document. */
    wt_editor_t *a = wt_fixture_editor(t->fx, "one", "ada", 1);
    assert_non_null(a);
    wt_editor_t b;
    assert_int_equal(wt_editor_init(&b, "127.0.0.1", second.port, "two", wt_fixture_replica(t->fx),
                                    "bob", "#123456", 77),
                     0);
    int jrc = wt_editor_join(&b, TIMEOUT);
    for (int i = 0; i < 30 && jrc == 0; i++) {
        char tok[16];
        snprintf(tok, sizeof tok, "[a%d]", i);
        assert_int_equal(wt_editor_insert(a, crdt_doc_length(a->doc), tok, NULL), 0);
        snprintf(tok, sizeof tok, "[b%d]", i);
        assert_int_equal(wt_editor_insert(&b, crdt_doc_length(b.doc), tok, NULL), 0);
    }
    int arc = wt_editor_wait_acked(a, TIMEOUT);
    int brc = jrc == 0 ? wt_editor_wait_acked(&b, TIMEOUT) : jrc;
    char *ta = wt_editor_text(a), *tb = wt_editor_text(&b);
    wt_editor_dispose(&b);
    int st2 = wt_weftd_stop(&second, TIMEOUT);
    wt_weftd_cleanup(&second);
    assert_int_equal(arc, 0);
    assert_int_equal(brc, 0);
    assert_int_equal(st2, 0);
    assert_int_equal(wt_weftd_stop(&t->fx->server, TIMEOUT), 0);
    assert_int_equal(wt_weftd_restart(&t->fx->server, TIMEOUT), 0);
    char *ra = NULL, *rb = NULL;
    assert_int_equal(api_doc(t->fx, "one", &ra, NULL), 200);
    assert_int_equal(api_doc(t->fx, "two", &rb, NULL), 200);
    assert_string_equal(ra, ta);
    assert_string_equal(rb, tb);
    free(ra);
    free(rb);
    free(ta);
    free(tb);
}

static void make_tmp(lc_t *t)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(t->tmp, sizeof t->tmp, "%s/weft-lc-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(t->tmp));
}

static void test_lifecycle_data_path_is_a_file_fails_clearly(void **state)
{
    lc_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    *state = t;
    make_tmp(t);
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-dir", t->tmp);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("hello\n", f);
    fclose(f);
    const char *args[] = {"--listen", "127.0.0.1:0", "--data", file, NULL};
    char *out = NULL;
    int rc = wt_run_capture(NULL, args, &out, 5000);
    print_message("weftd --data <file>: exit %d: %s", rc, out);
    assert_true(rc > 0);
    assert_non_null(strstr(out, "weftd:"));
    assert_non_null(strstr(out, file));
    assert_null(strstr(out, "listening on"));
    free(out);
    /* The file is untouched. */
    f = fopen(file, "r");
    char line[16] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "hello\n");
}

static void test_lifecycle_listen_address_in_use_fails_clearly(void **state)
{
    lc_t *t = start(state, NULL);
    make_tmp(t);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)t->fx->server.port);
    const char *args[] = {"--listen", listen, "--data", t->tmp, NULL};
    char *out = NULL;
    int rc = wt_run_capture(NULL, args, &out, 5000);
    print_message("weftd --listen %s (in use): exit %d: %s", listen, rc, out);
    assert_true(rc > 0);
    assert_non_null(strstr(out, "weftd:"));
    assert_non_null(strstr(out, listen));
    assert_null(strstr(out, "listening on"));
    free(out);
    /* The first server is unharmed. */
    wt_editor_t *a = wt_fixture_editor(t->fx, "ok", "ada", 1);
    assert_non_null(a);
}

static void test_lifecycle_bad_command_line_exits_2(void **state)
{
    (void)state;
    const char *args[] = {"--ping-interval", "zero", NULL};
    char *out = NULL;
    int rc = wt_run_capture(NULL, args, &out, 5000);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--ping-interval"));
    free(out);
}

/* ---- snapshots ------------------------------------------------------------------ */

static void test_lifecycle_snapshots_survive_restart(void **state)
{
    /* --snapshot-log-percent 1: a snapshot every 5 entries, whatever their size. */
    static const char *const args[] = {"--snapshot-every", "5", "--snapshot-log-percent", "1",
                                       NULL};
    lc_t *t = start(state, args);
    wt_editor_t *a = wt_fixture_editor(t->fx, "snap", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(t->fx, "snap", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    rng_t rng;
    rng_init(&rng, SEED);
    wt_editor_t *eds[] = {a, b};
    for (int i = 0; i < 40; i++) {
        wt_editor_t *e = eds[i % 2];
        size_t len = crdt_doc_length(e->doc);
        if (len > 4 && rng_next(&rng) % 4 == 0) {
            size_t at = rng_next(&rng) % (len - 2);
            assert_int_equal(wt_editor_delete(e, at, 2, NULL), 0);
        } else {
            char tok[16];
            snprintf(tok, sizeof tok, "%c%d ", 'a' + i % 2, i);
            assert_int_equal(wt_editor_insert(e, len ? rng_next(&rng) % (len + 1) : 0, tok, NULL),
                             0);
        }
        if (i % 3 == 0)
            wt_editors_pump(eds, 2, 5);
    }
    if (wt_editors_wait_converged(eds, 2, TIMEOUT) != 0)
        fail_msg("editors did not converge (seed %#llx)", (unsigned long long)SEED);
    char *want = wt_editor_text(a);
    assert_int_equal(wt_weftd_stop(&t->fx->server, TIMEOUT), 0);
    assert_int_equal(wt_weftd_restart(&t->fx->server, TIMEOUT), 0);
    /* Snapshots were written (the counter is per process: write some more). */
    wt_editor_t *c = wt_fixture_editor(t->fx, "snap", "cyd", 1);
    assert_non_null(c);
    if (!wt_editor_text_is(c, want)) {
        char *got = wt_editor_text(c);
        fail_msg("after restart: \"%s\", want \"%s\" (seed %#llx)", got, want,
                 (unsigned long long)SEED);
    }
    char *rest = NULL;
    assert_int_equal(api_doc(t->fx, "snap", &rest, NULL), 200);
    free(rest);
    for (int i = 0; i < 12; i++)
        assert_int_equal(wt_editor_insert(c, 0, "s", NULL), 0);
    assert_int_equal(wt_editor_wait_acked(c, TIMEOUT), 0);
    int64_t deadline = wt_now_ms() + 5000;
    while (metric(t->fx, "weft_store_snapshots_written_total") < 1 && wt_ms_left(deadline) > 0)
        usleep(50 * 1000);
    assert_true(metric(t->fx, "weft_store_snapshots_written_total") >= 1);
    wt_editor_drop(c);
    assert_int_equal(wt_weftd_stop(&t->fx->server, TIMEOUT), 0);
    assert_int_equal(wt_weftd_restart(&t->fx->server, TIMEOUT), 0);
    wt_editor_t *d = wt_fixture_editor(t->fx, "snap", "dan", 1);
    assert_non_null(d);
    char *after = malloc(strlen(want) + 13);
    assert_non_null(after);
    snprintf(after, strlen(want) + 13, "ssssssssssss%s", want);
    assert_true(wt_editor_text_is(d, after));
    free(after);
    free(want);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lifecycle_unload_after_last_editor_and_reload),
        T(test_lifecycle_api_docs_same_loaded_and_unloaded),
        T(test_lifecycle_unload_does_not_lose_uncommitted_updates),
        T(test_lifecycle_sigterm_acks_everything_then_closes_1001),
        T(test_lifecycle_sigterm_with_keepalive_http_connection_exits_0),
        T(test_lifecycle_sigterm_with_silent_tcp_connection_exits_0),
        T(test_lifecycle_second_weftd_on_same_data_dir),
        T(test_lifecycle_data_path_is_a_file_fails_clearly),
        T(test_lifecycle_listen_address_in_use_fails_clearly),
        T(test_lifecycle_bad_command_line_exits_2),
        T(test_lifecycle_snapshots_survive_restart),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
