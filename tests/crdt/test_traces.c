/* SPDX-License-Identifier: MIT */
/*
 * test_traces.c: replays the real-world editing traces of WEFT_TRACES_DIR
 * (../shared/traces/) on the crdt/ engine, one test per trace file, and checks the
 * final text against the trace's endContent. Sequential traces are applied as local
 * edits, with and without update bytes, and their updates are merged into a second
 * replica; concurrent traces use one replica per agent (tests/support/replay.c),
 * merge everything into a fresh replica and sync every agent replica. Each final
 * document passes crdt_doc_check(), survives crdt_doc_encode_state() /
 * crdt_doc_load(), and everything is freed (the test allocator must end with no
 * live bytes). A missing trace file skips its test. The loader itself is tested
 * without the engine: a naive string splice of each sequential trace must give its
 * endContent, and small JSON documents check escapes and rejections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdt.h"
#include "replay.h"
#include "test_alloc.h"
#include "trace.h"

#ifndef WEFT_TRACES_DIR
#error "WEFT_TRACES_DIR must name the directory of the editing traces"
#endif

/* Writes the path of trace `name` into `path`; returns 0 if the file is missing. */
static int trace_path(const char *name, char *path, size_t size)
{
    FILE *f;

    snprintf(path, size, "%s/%s.json.gz", WEFT_TRACES_DIR, name);
    f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    fclose(f);
    return 1;
}

/* Loads trace `name`; returns NULL, after skip(), if its file is missing. */
static trace_t *load_or_skip(const char *name)
{
    char path[1024], err[256];
    trace_t *t = NULL;

    if (!trace_path(name, path, sizeof path)) {
        print_message("skipping: %s not found\n", path);
        skip();
        return NULL;
    }
    if (trace_load(path, &t, err, sizeof err) != 0)
        fail_msg("trace_load: %s", err);
    return t;
}

static void expect_end_text(const trace_t *t, const crdt_doc_t *doc, const char *what)
{
    char msg[256];
    int rc = replay_check_text(t, doc, msg, sizeof msg);

    if (rc != 1)
        fail_msg("%s: %s: %s", t->name, what, rc < 0 ? crdt_strerror(rc) : msg);
    rc = crdt_doc_check(doc);
    if (rc != 0)
        fail_msg("%s: %s: crdt_doc_check: %s", t->name, what, crdt_strerror(rc));
    if (crdt_doc_pending(doc) != 0)
        fail_msg("%s: %s: %zu operations still pending", t->name, what, crdt_doc_pending(doc));
}

/* Encodes `doc`'s whole state, loads it into a new document and checks its text. */
static void expect_roundtrip(const trace_t *t, const crdt_doc_t *doc, const crdt_alloc_t *alloc)
{
    crdt_buf_t state;
    crdt_doc_t *loaded = NULL;
    int rc;

    memset(&state, 0, sizeof state);
    rc = crdt_doc_encode_state(doc, &state);
    if (rc != 0)
        fail_msg("%s: crdt_doc_encode_state: %s", t->name, crdt_strerror(rc));
    rc = crdt_doc_load((uint64_t)t->num_agents + 2, alloc, state.base, state.len, &loaded);
    if (rc != 0)
        fail_msg("%s: crdt_doc_load(%zu bytes): %s", t->name, state.len, crdt_strerror(rc));
    expect_end_text(t, loaded, "document loaded from crdt_doc_encode_state");
    crdt_doc_free(loaded);
    crdt_buf_dispose(&state);
}

static void replay_or_fail(const trace_t *t, const crdt_alloc_t *alloc, int want_updates,
                           replay_result_t *res)
{
    if (replay_trace(t, alloc, want_updates, res) != 0)
        fail_msg("%s: replay: %s", t->name, res->msg);
}

static void check_sequential(const trace_t *t, const crdt_alloc_t *alloc)
{
    replay_result_t res;
    crdt_doc_t *merged = NULL;

    replay_or_fail(t, alloc, 0, &res);
    expect_end_text(t, res.doc, "local edits without update bytes");
    replay_result_dispose(&res);

    replay_or_fail(t, alloc, 1, &res);
    expect_end_text(t, res.doc, "local edits with update bytes");
    if (replay_merge(&res, 2, &merged) != 0)
        fail_msg("%s: %s", t->name, res.msg);
    expect_end_text(t, merged, "replica fed every update");
    crdt_doc_free(merged);
    expect_roundtrip(t, res.doc, alloc);
    print_message("%s: %zu patches, %zu updates of %zu bytes in all\n", t->name, t->npatches,
                  res.nupdates, res.update_bytes);
    replay_result_dispose(&res);
}

static void check_concurrent(const trace_t *t, const crdt_alloc_t *alloc)
{
    replay_result_t res;
    char what[64];
    uint32_t a;

    replay_or_fail(t, alloc, 1, &res);
    expect_end_text(t, res.doc, "replica merging every update");
    if (replay_sync_agents(&res) != 0)
        fail_msg("%s: %s", t->name, res.msg);
    for (a = 0; a < res.nagents; a++) {
        if (res.agents[a] == NULL)
            continue;
        snprintf(what, sizeof what, "agent %u after sync", (unsigned)a);
        expect_end_text(t, res.agents[a], what);
    }
    expect_roundtrip(t, res.doc, alloc);
    print_message("%s: %zu txns, %zu patches, %u agents, %zu updates of %zu bytes in all\n",
                  t->name, t->ntxns, t->npatches, (unsigned)t->num_agents, res.nupdates,
                  res.update_bytes);
    replay_result_dispose(&res);
}

static void check_trace(const char *name)
{
    trace_t *t = load_or_skip(name);
    test_alloc_t ta;

    if (t == NULL)
        return;
    test_alloc_init(&ta);
    if (t->concurrent)
        check_concurrent(t, &ta.alloc);
    else
        check_sequential(t, &ta.alloc);
    if (test_alloc_live_bytes(&ta) != 0)
        fail_msg("%s: %zu bytes in %zu blocks still allocated after freeing everything", name,
                 test_alloc_live_bytes(&ta), ta.live_blocks);
    trace_free(t);
}

static void test_replay_automerge_paper(void **state)
{
    (void)state;
    check_trace("automerge-paper");
}

static void test_replay_seph_blog1(void **state)
{
    (void)state;
    check_trace("seph-blog1");
}

static void test_replay_friendsforever(void **state)
{
    (void)state;
    check_trace("friendsforever");
}

static void test_replay_clownschool(void **state)
{
    (void)state;
    check_trace("clownschool");
}

static void test_replay_node_nodecc(void **state)
{
    (void)state;
    check_trace("node_nodecc");
}

/*
 * The naive replay: the text as an array of code points with a gap at the last
 * edit, so typing (edits near each other) moves little memory.
 */
typedef struct {
    uint32_t *cp;
    size_t cap, gap_start, gap_end; /* text = cp[0, gap_start) + cp[gap_end, cap) */
} gap_text_t;

static size_t gap_len(const gap_text_t *g)
{
    return g->cap - (g->gap_end - g->gap_start);
}

static void gap_move(gap_text_t *g, size_t pos)
{
    size_t n;

    if (pos < g->gap_start) {
        n = g->gap_start - pos;
        memmove(g->cp + g->gap_end - n, g->cp + pos, n * sizeof *g->cp);
        g->gap_start -= n;
        g->gap_end -= n;
    } else if (pos > g->gap_start) {
        n = pos - g->gap_start;
        memmove(g->cp + g->gap_start, g->cp + g->gap_end, n * sizeof *g->cp);
        g->gap_start += n;
        g->gap_end += n;
    }
}

static void gap_reserve(gap_text_t *g, size_t n)
{
    size_t tail, cap;

    if (g->gap_end - g->gap_start >= n)
        return;
    tail = g->cap - g->gap_end;
    cap = (g->cap + n) * 2;
    g->cp = realloc(g->cp, cap * sizeof *g->cp);
    assert_non_null(g->cp);
    memmove(g->cp + cap - tail, g->cp + g->gap_end, tail * sizeof *g->cp);
    g->gap_end = cap - tail;
    g->cap = cap;
}

/* Decodes one UTF-8 character (the loader validated it) and advances *s. */
static uint32_t utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = p[0];

    if (c < 0x80) {
        *s = p + 1;
    } else if (c < 0xE0) {
        c = ((c & 0x1F) << 6) | (p[1] & 0x3F);
        *s = p + 2;
    } else if (c < 0xF0) {
        c = ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        *s = p + 3;
    } else {
        c = ((c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
            (p[3] & 0x3F);
        *s = p + 4;
    }
    return c;
}

static void gap_splice(gap_text_t *g, size_t pos, size_t del, const char *ins, size_t ins_len)
{
    const unsigned char *s = (const unsigned char *)ins, *end = s + ins_len;

    gap_move(g, pos);
    g->gap_end += del;
    gap_reserve(g, ins_len); /* at least as many bytes as code points */
    while (s < end)
        g->cp[g->gap_start++] = utf8_next(&s);
}

/* Applies every patch of a sequential trace to its startContent, in code points. */
static void naive_replay(const trace_t *t)
{
    gap_text_t g = {NULL, 0, 0, 0};
    char *text, *out;
    size_t i, k, j, len;

    gap_splice(&g, 0, 0, t->start_content, t->start_len);
    for (i = 0; i < t->ntxns; i++) {
        for (k = 0; k < t->txns[i].npatches; k++) {
            const trace_patch_t *p = &t->txns[i].patches[k];
            len = gap_len(&g);
            if (p->pos > len || p->del > len - p->pos)
                fail_msg("%s: txn %zu patch %zu: pos %u del %u outside a text of %zu", t->name, i,
                         k, (unsigned)p->pos, (unsigned)p->del, len);
            gap_splice(&g, p->pos, p->del, p->ins, p->ins_len);
        }
    }
    /* Back to UTF-8; every code point takes at most 4 bytes. */
    gap_move(&g, gap_len(&g));
    text = malloc(g.gap_start * 4 + 1);
    assert_non_null(text);
    out = text;
    for (j = 0; j < g.gap_start; j++) {
        uint32_t c = g.cp[j];
        if (c < 0x80) {
            *out++ = (char)c;
        } else if (c < 0x800) {
            *out++ = (char)(0xC0 | (c >> 6));
            *out++ = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            *out++ = (char)(0xE0 | (c >> 12));
            *out++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (char)(0x80 | (c & 0x3F));
        } else {
            *out++ = (char)(0xF0 | (c >> 18));
            *out++ = (char)(0x80 | ((c >> 12) & 0x3F));
            *out++ = (char)(0x80 | ((c >> 6) & 0x3F));
            *out++ = (char)(0x80 | (c & 0x3F));
        }
    }
    assert_int_equal((size_t)(out - text), t->end_len);
    assert_memory_equal(text, t->end_content, t->end_len);
    free(text);
    free(g.cp);
}

static void test_trace_load_naive_replay_matches_end(void **state)
{
    static const char *const names[] = {"automerge-paper", "seph-blog1"};
    char path[1024], err[256];
    size_t i, done = 0;

    (void)state;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        trace_t *t = NULL;
        if (!trace_path(names[i], path, sizeof path)) {
            print_message("skipping: %s not found\n", path);
            continue;
        }
        if (trace_load(path, &t, err, sizeof err) != 0)
            fail_msg("trace_load: %s", err);
        assert_int_equal(t->concurrent, 0);
        assert_int_equal(t->num_agents, 1);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->non_bmp, 0);
        naive_replay(t);
        trace_free(t);
        done++;
    }
    if (done == 0)
        skip();
}

static trace_t *parse_ok(const char *json)
{
    char err[256] = "";
    trace_t *t = NULL;

    if (trace_parse(json, strlen(json), "inline", &t, err, sizeof err) != 0)
        fail_msg("trace_parse failed: %s\n on: %s", err, json);
    return t;
}

static void test_trace_parse_decodes_escapes(void **state)
{
    static const char json[] =
        " {\"startContent\": \"s\", \"endContent\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC"
        "\\ud83d\\ude00\\u0000z\",\n"
        "  \"txns\": [{\"time\": \"2021-01-01\", \"patches\": [[0, 1, \"\\u00e9\\u20ac\"], "
        "[2, 0, \"\"]], \"extra\": {\"a\": [1, -2.5e+3, 0.5, true, false, null, {}, []]}},"
        " {\"patches\": []}]} ";
    static const char end[] = "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z";
    trace_t *t;

    (void)state;
    t = parse_ok(json);
    assert_string_equal(t->name, "inline");
    assert_int_equal(t->concurrent, 0);
    assert_int_equal(t->num_agents, 1);
    assert_int_equal(t->non_bmp, 1);
    assert_int_equal(t->start_len, 1);
    assert_string_equal(t->start_content, "s");
    assert_int_equal(t->end_len, sizeof end - 1);
    assert_memory_equal(t->end_content, end, sizeof end);
    assert_int_equal(t->ntxns, 2);
    assert_int_equal(t->npatches, 2);
    assert_int_equal(t->txns[0].nparents, 0);
    assert_int_equal(t->txns[1].nparents, 1);
    assert_int_equal(t->txns[1].parents[0], 0);
    assert_int_equal(t->txns[0].npatches, 2);
    assert_int_equal(t->txns[0].patches[0].pos, 0);
    assert_int_equal(t->txns[0].patches[0].del, 1);
    assert_int_equal(t->txns[0].patches[0].ins_len, 5);
    assert_string_equal(t->txns[0].patches[0].ins, "\xc3\xa9\xe2\x82\xac");
    assert_int_equal(t->txns[0].patches[1].pos, 2);
    assert_int_equal(t->txns[0].patches[1].ins_len, 0);
    assert_string_equal(t->txns[0].patches[1].ins, "");
    assert_int_equal(t->txns[1].npatches, 0);
    trace_free(t);

    t = parse_ok("{\"kind\":\"concurrent\",\"endContent\":\"ab\",\"txns\":["
                 "{\"parents\":[],\"numChildren\":1,\"agent\":2,\"patches\":[[0,0,\"a\"]]},"
                 "{\"parents\":[0],\"agent\":0,\"patches\":[[1,0,\"b\"]],\"_dtSpan\":[1,2]},"
                 "{\"agent\":1,\"parents\":[0,1],\"patches\":[]}]}");
    assert_int_equal(t->concurrent, 1);
    assert_int_equal(t->num_agents, 3);
    assert_int_equal(t->start_len, 0);
    assert_string_equal(t->start_content, "");
    assert_int_equal(t->non_bmp, 0);
    assert_int_equal(t->ntxns, 3);
    assert_int_equal(t->txns[0].agent, 2);
    assert_int_equal(t->txns[0].nparents, 0);
    assert_int_equal(t->txns[2].nparents, 2);
    assert_int_equal(t->txns[2].parents[0], 0);
    assert_int_equal(t->txns[2].parents[1], 1);
    assert_string_equal(t->txns[1].patches[0].ins, "b");
    trace_free(t);

    t = parse_ok("{\"kind\":\"concurrent\",\"numAgents\":5,\"endContent\":\"\",\"txns\":[]}");
    assert_int_equal(t->num_agents, 5);
    assert_int_equal(t->ntxns, 0);
    trace_free(t);
}

static void test_trace_parse_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"endContent\":\"a\",\"txns\":[]} x",
        "{\"endContent\":\"a\",\"txns\":[]",
        "{\"endContent\":\"abc",
        "{\"endContent\":\"\\ud800\",\"txns\":[]}",
        "{\"endContent\":\"\\ud800\\u0041\",\"txns\":[]}",
        "{\"endContent\":\"\\udc00\\ud800\",\"txns\":[]}",
        "{\"endContent\":\"\\u12G4\",\"txns\":[]}",
        "{\"endContent\":\"\\u12\",\"txns\":[]}",
        "{\"endContent\":\"\\x\",\"txns\":[]}",
        "{\"endContent\":\"a\nb\",\"txns\":[]}",
        "{\"endContent\":\"\xff\",\"txns\":[]}",
        "{\"endContent\":\"\xc0\xaf\",\"txns\":[]}",
        "{\"endContent\":\"\xed\xa0\x80\",\"txns\":[]}",
        "{\"endContent\":\"\xe2\x82\",\"txns\":[]}",
        "{\"txns\":[]}",
        "{\"endContent\":\"\"}",
        "{\"endContent\":\"\",\"endContent\":\"\",\"txns\":[]}",
        "{\"endContent\":\"\",\"txns\":[{\"time\":\"t\"}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[0,0]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[0,0,\"a\",1]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[-1,0,\"a\"]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[4294967296,0,\"\"]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[01,0,\"\"]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[1.5,0,\"\"]]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[[0,0,\"\"],]}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[],\"x\":01}]}",
        "{\"endContent\":\"\",\"txns\":[{\"patches\":[],\"x\":tru}]}",
        "{\"kind\":\"other\",\"endContent\":\"\",\"txns\":[]}",
        "{\"kind\":\"concurrent\",\"endContent\":\"\",\"txns\":[{\"parents\":[0],\"agent\":0,"
        "\"patches\":[]}]}",
        "{\"kind\":\"concurrent\",\"endContent\":\"\",\"txns\":[{\"agent\":0,\"patches\":[]}]}",
        "{\"kind\":\"concurrent\",\"endContent\":\"\",\"txns\":[{\"parents\":[],\"patches\":[]}]}",
        "{\"kind\":\"concurrent\",\"numAgents\":1,\"endContent\":\"\",\"txns\":[{\"parents\":[],"
        "\"agent\":1,\"patches\":[]}]}",
        "{\"kind\":\"concurrent\",\"startContent\":\"x\",\"endContent\":\"\",\"txns\":[]}",
    };
    static trace_t dummy;
    char err[256], deep[512];
    trace_t *t, *sentinel = &dummy;
    size_t i, n = 0;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = sentinel;
        err[0] = '\0';
        if (trace_parse(bad[i], strlen(bad[i]), "bad", &t, err, sizeof err) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_ptr_equal(t, sentinel);
        assert_true(strncmp(err, "bad: ", 5) == 0);
    }

    /* An unknown value nested 100 deep is refused, not recursed into without end. */
    n += (size_t)snprintf(deep, sizeof deep, "{\"endContent\":\"\",\"txns\":[],\"x\":");
    for (i = 0; i < 100; i++)
        deep[n++] = '[';
    for (i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    t = sentinel;
    assert_int_equal(trace_parse(deep, n, "deep", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "nested"));
    assert_ptr_equal(t, sentinel);
    t = sentinel;
    assert_int_equal(trace_load(WEFT_TRACES_DIR "/no-such-trace.json.gz", &t, err, sizeof err), -1);
    assert_ptr_equal(t, sentinel);
    assert_non_null(strstr(err, "no-such-trace"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_parse_decodes_escapes),
        cmocka_unit_test(test_trace_parse_rejects_malformed),
        cmocka_unit_test(test_trace_load_naive_replay_matches_end),
        cmocka_unit_test(test_replay_automerge_paper),
        cmocka_unit_test(test_replay_seph_blog1),
        cmocka_unit_test(test_replay_friendsforever),
        cmocka_unit_test(test_replay_clownschool),
        cmocka_unit_test(test_replay_node_nodecc),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
