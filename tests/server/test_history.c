/* SPDX-License-Identifier: MIT */
/*
 * test_history.c: integration tests of document history (docs/history.md)
 * through a real weftd: edits grouped into listed versions (bursts, cut by
 * time gaps, the burst maximum, restores and names), paging, the text of a
 * version and the changes against another one with their authors,
 * attribution, restore by REST and over the WebSocket while editors are
 * connected (also with a concurrent offline edit, and of a version that
 * followed a restore), naming, and hostile requests. weftd runs with short
 * burst times (--history-burst-gap 250, --history-burst-max 1200) so bursts
 * can be made in a fraction of a second. Responses are read with a small JSON
 * parser of this file. Each test starts its own weftd; teardown cleans up.
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
#include <time.h>

#define TIMEOUT 10000
#define GAP_MS 250
#define SETTLE_MS 400 /* a pause longer than the gap: the next edit starts a burst */

static const char *const weftd_args[] = {"--history-burst-gap", "250", "--history-burst-max",
                                         "1200", NULL};

static int setup(void **state)
{
    wt_fixture_t *fx = wt_fixture_new(0x415700001, weftd_args);
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

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a small JSON reader ------------------------------------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct json json_t;
struct json {
    int type;
    double num;
    char *str; /* J_STR (NUL-terminated, may hold NULs: see len) */
    size_t len;
    json_t **items; /* J_ARR values; J_OBJ values */
    char **keys;    /* J_OBJ keys */
    size_t n;
};

static void json_free(json_t *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n; i++) {
        json_free(j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

static void jskip(const char **p)
{
    while (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t')
        (*p)++;
}

static void put_utf8(char *out, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xc0 | cp >> 6);
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xe0 | cp >> 12);
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*n)++] = (char)(0xf0 | cp >> 18);
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static char *jstring(const char **p, size_t *len)
{
    const char *s = *p + 1;
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    assert_non_null(out);
    while (*s != '"') {
        if (*s == '\0') {
            free(out);
            return NULL;
        }
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        char c = *s++;
        if (c == 'u') {
            char hex[5] = {s[0], s[1], s[2], s[3], 0};
            unsigned cp = (unsigned)strtoul(hex, NULL, 16);
            s += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && s[0] == '\\' && s[1] == 'u') {
                char lo[5] = {s[2], s[3], s[4], s[5], 0};
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)strtoul(lo, NULL, 16) - 0xdc00);
                s += 6;
            }
            put_utf8(out, &n, cp);
        } else {
            out[n++] = c == 'n'   ? '\n'
                       : c == 't' ? '\t'
                       : c == 'r' ? '\r'
                       : c == 'b' ? '\b'
                       : c == 'f' ? '\f'
                                  : c;
        }
    }
    out[n] = '\0';
    *len = n;
    *p = s + 1;
    return out;
}

static json_t *jvalue(const char **p)
{
    json_t *j = calloc(1, sizeof *j);
    assert_non_null(j);
    jskip(p);
    if (**p == '{' || **p == '[') {
        int obj = **p == '{';
        j->type = obj ? J_OBJ : J_ARR;
        (*p)++;
        jskip(p);
        if (**p == (obj ? '}' : ']')) {
            (*p)++;
            return j;
        }
        for (;;) {
            char *key = NULL;
            size_t kl;
            jskip(p);
            if (obj) {
                if (**p != '"' || (key = jstring(p, &kl)) == NULL)
                    goto Bad;
                jskip(p);
                if (*(*p)++ != ':') {
                    free(key);
                    goto Bad;
                }
            }
            json_t *v = jvalue(p);
            if (v == NULL) {
                free(key);
                goto Bad;
            }
            j->items = realloc(j->items, (j->n + 1) * sizeof *j->items);
            if (obj)
                j->keys = realloc(j->keys, (j->n + 1) * sizeof *j->keys);
            j->items[j->n] = v;
            if (obj)
                j->keys[j->n] = key;
            j->n++;
            jskip(p);
            if (**p == ',') {
                (*p)++;
                continue;
            }
            if (**p == (obj ? '}' : ']')) {
                (*p)++;
                return j;
            }
            goto Bad;
        }
    }
    if (**p == '"') {
        j->type = J_STR;
        if ((j->str = jstring(p, &j->len)) == NULL)
            goto Bad;
        return j;
    }
    if (strncmp(*p, "null", 4) == 0) {
        *p += 4;
        return j;
    }
    if (strncmp(*p, "true", 4) == 0 || strncmp(*p, "false", 5) == 0) {
        j->type = J_BOOL;
        j->num = **p == 't';
        *p += **p == 't' ? 4 : 5;
        return j;
    }
    if ((**p >= '0' && **p <= '9') || **p == '-') {
        char *end;
        j->type = J_NUM;
        j->num = strtod(*p, &end);
        *p = end;
        return j;
    }
Bad:
    json_free(j);
    return NULL;
}

static json_t *json_parse(const char *text)
{
    const char *p = text;
    json_t *j = jvalue(&p);
    if (j != NULL) {
        jskip(&p);
        if (*p != '\0') {
            json_free(j);
            j = NULL;
        }
    }
    if (j == NULL)
        fail_msg("not JSON: %.400s", text);
    return j;
}

/* Member `key` of an object (NULL if absent). */
static json_t *jget(const json_t *o, const char *key)
{
    assert_non_null(o);
    assert_int_equal(o->type, J_OBJ);
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return o->items[i];
    return NULL;
}

static uint64_t jnum(const json_t *o, const char *key)
{
    json_t *v = jget(o, key);
    if (v == NULL || v->type != J_NUM)
        fail_msg("member %s is not a number", key);
    return (uint64_t)v->num;
}

static const char *jstr(const json_t *o, const char *key)
{
    json_t *v = jget(o, key);
    if (v == NULL || v->type != J_STR)
        fail_msg("member %s is not a string", key);
    return v->str;
}

static int jis_null(const json_t *o, const char *key)
{
    json_t *v = jget(o, key);
    assert_non_null(v);
    return v->type == J_NULL;
}

static const json_t *jarr(const json_t *o, const char *key)
{
    json_t *v = jget(o, key);
    if (v == NULL || v->type != J_ARR)
        fail_msg("member %s is not an array", key);
    return v;
}

/* ---- requests ------------------------------------------------------------ */

/* Sends a request under /api/docs/<doc>/<path>; returns the parsed body (the
 * caller frees it) and sets *status. */
static json_t *req(wt_fixture_t *fx, const char *method, const char *doc, const char *path,
                   const char *body, int *status)
{
    char full[1024];
    wt_http_resp_t r;
    snprintf(full, sizeof full, "/api/docs/%s/%s", doc, path);
    assert_int_equal(wt_http_request("127.0.0.1", fx->server.port, method, full,
                                     body ? "Content-Type: application/json\r\n" : NULL, body,
                                     body ? strlen(body) : 0, TIMEOUT, &r),
                     0);
    *status = r.status;
    json_t *j = json_parse((const char *)r.body.data);
    wt_http_resp_dispose(&r);
    return j;
}

/* A request that must answer 200. */
static json_t *ok(wt_fixture_t *fx, const char *method, const char *doc, const char *path,
                  const char *body)
{
    int status;
    json_t *j = req(fx, method, doc, path, body, &status);
    if (status != 200) {
        json_t *e = jget(j, "error");
        fail_msg("%s %s/%s: %d %s", method, doc, path, status, e && e->str ? e->str : "");
    }
    return j;
}

/* A request that must fail with `want` and an "error" string. */
static void expect_status(wt_fixture_t *fx, const char *method, const char *doc, const char *path,
                          const char *body, int want)
{
    int status;
    json_t *j = req(fx, method, doc, path, body, &status);
    if (status != want)
        fail_msg("%s %s/%s with %.80s: %d, want %d", method, doc, path, body ? body : "(none)",
                 status, want);
    assert_non_null(jstr(j, "error"));
    json_free(j);
}

static json_t *versions(wt_fixture_t *fx, const char *doc, const char *query)
{
    char path[128];
    snprintf(path, sizeof path, "versions%s", query ? query : "");
    return ok(fx, "GET", doc, path, NULL);
}

/* Waits until the listing's head is at least `seq` (entries are listed once
 * committed). */
static void wait_head(wt_fixture_t *fx, const char *doc, uint64_t seq)
{
    for (int i = 0; i < TIMEOUT / 20; i++) {
        json_t *v = versions(fx, doc, "?limit=1");
        uint64_t head = jnum(v, "head");
        json_free(v);
        if (head >= seq)
            return;
        sleep_ms(20);
    }
    fail_msg("head of %s never reached %llu", doc, (unsigned long long)seq);
}

/* The text of version `seq`. */
static char *version_text(wt_fixture_t *fx, const char *doc, uint64_t seq)
{
    char path[64];
    snprintf(path, sizeof path, "versions/%llu", (unsigned long long)seq);
    json_t *j = ok(fx, "GET", doc, path, NULL);
    char *t = strdup(jstr(j, "text"));
    json_free(j);
    return t;
}

/* Types `text` one character per update (one log entry each) at `index`. */
static void type_chars(wt_editor_t *ed, size_t index, const char *text)
{
    for (size_t i = 0; text[i]; i++) {
        char c[2] = {text[i], 0};
        assert_int_equal(wt_editor_insert(ed, index + i, c, NULL), 0);
    }
}

static void acked(wt_editor_t *ed)
{
    assert_int_equal(wt_editor_wait_acked(ed, TIMEOUT), 0);
}

static void assert_text(wt_editor_t *ed, const char *text)
{
    if (wt_editor_wait_text(ed, text, TIMEOUT) != 0) {
        char *t = wt_editor_text(ed);
        fail_msg("editor %s has \"%s\", want \"%s\"", ed->name, t, text);
    }
}

/* Checks that the spans of a changes list spell `to` (kept + inserted) and
 * `from` (kept + deleted). */
static void assert_changes_spell(const json_t *changes, const char *to, const char *from)
{
    char a[4096] = "", b[4096] = "";
    for (size_t i = 0; i < changes->n; i++) {
        const char *kind = jstr(changes->items[i], "kind"), *t = jstr(changes->items[i], "text");
        if (strcmp(kind, "deleted") != 0)
            strcat(a, t);
        if (strcmp(kind, "inserted") != 0)
            strcat(b, t);
    }
    assert_string_equal(a, to);
    assert_string_equal(b, from);
}

/* The author name of a span or version author ("" when null). */
static const char *author_name(const json_t *span)
{
    json_t *a = jget(span, "author");
    assert_non_null(a);
    if (a->type == J_NULL)
        return "";
    json_t *n = jget(a, "name");
    return n->type == J_STR ? n->str : "";
}

/* ---- tests --------------------------------------------------------------- */

static void test_history_bursts_grouped(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "burst", "ada", 1);
    assert_non_null(a);
    type_chars(a, 0, "the quick brown fox jumps over"); /* 30 edits, quickly */
    acked(a);
    json_t *v = versions(fx, "burst", NULL);
    assert_int_equal(jnum(v, "head"), 30);
    assert_string_equal(jstr(v, "document"), "burst");
    const json_t *list = jarr(v, "versions");
    assert_int_equal(list->n, 1);
    const json_t *x = list->items[0];
    assert_int_equal(jnum(x, "seq"), 30);
    assert_int_equal(jnum(x, "first_seq"), 1);
    assert_int_equal(jnum(x, "entries"), 30);
    assert_int_equal(jnum(x, "inserted"), 30);
    assert_int_equal(jnum(x, "deleted"), 0);
    assert_true(jnum(x, "start") <= jnum(x, "end"));
    assert_true(jnum(x, "start") > 1700000000000ull); /* ms since the epoch */
    assert_true(jis_null(x, "name"));
    assert_true(jis_null(x, "restore_of"));
    const json_t *authors = jarr(x, "authors");
    assert_int_equal(authors->n, 1);
    assert_string_equal(jstr(authors->items[0], "name"), "ada");
    char rep[32];
    snprintf(rep, sizeof rep, "%llu", (unsigned long long)a->replica);
    assert_string_equal(jstr(authors->items[0], "replica"), rep);
    assert_true(jis_null(v, "next_before"));
    json_free(v);

    /* After a pause, another editor's burst; deletes count as deleted. */
    sleep_ms(SETTLE_MS);
    wt_editor_t *b = wt_fixture_editor(fx, "burst", "bob", 1);
    assert_non_null(b);
    assert_int_equal(wt_editor_delete(b, 0, 4, NULL), 0);
    type_chars(b, 0, "A");
    acked(b);
    v = versions(fx, "burst", NULL);
    list = jarr(v, "versions");
    assert_int_equal(list->n, 2);
    x = list->items[0];
    assert_int_equal(jnum(x, "seq"), 32);
    assert_int_equal(jnum(x, "first_seq"), 31);
    assert_int_equal(jnum(x, "entries"), 2);
    assert_int_equal(jnum(x, "inserted"), 1);
    assert_int_equal(jnum(x, "deleted"), 4);
    assert_string_equal(jstr(jarr(x, "authors")->items[0], "name"), "bob");
    assert_int_equal(jnum(list->items[1], "seq"), 30);
    json_free(v);
}

static void test_history_burst_max_and_two_authors(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "long", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "long", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    /* Both type, alternately, a character every 100 ms for 2 s: no gap, but
     * longer than the 1.2 s burst maximum. */
    for (int i = 0; i < 20; i++) {
        wt_editor_t *ed = i % 2 ? b : a;
        wt_editor_t *eds[] = {a, b};
        assert_int_equal(wt_editor_insert(ed, 0, i % 2 ? "b" : "a", NULL), 0);
        sleep_ms(100);
        wt_editors_pump(eds, 2, 1);
    }
    acked(a);
    acked(b);
    json_t *v = versions(fx, "long", NULL);
    const json_t *list = jarr(v, "versions");
    assert_true(list->n >= 2);
    uint64_t entries = 0, next_first = 21;
    for (size_t i = 0; i < list->n; i++) {
        const json_t *x = list->items[i];
        assert_int_equal(jnum(x, "seq"), next_first - 1); /* contiguous, newest first */
        next_first = jnum(x, "first_seq");
        assert_true(jnum(x, "end") - jnum(x, "start") <= 1200);
        entries += jnum(x, "entries");
        const json_t *authors = jarr(x, "authors");
        if (jnum(x, "entries") >= 2) {
            assert_int_equal(authors->n, 2);
            /* Ordered by first entry. */
            assert_string_equal(jstr(authors->items[0], "name"),
                                jnum(x, "first_seq") % 2 ? "ada" : "bob");
        }
    }
    assert_int_equal(next_first, 1);
    assert_int_equal(entries, 20);
    json_free(v);
}

static void test_history_paging(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "pages", "ada", 1);
    assert_non_null(a);
    /* Five bursts of two entries: seqs 1-2, 3-4, ..., 9-10. */
    for (int k = 0; k < 5; k++) {
        if (k > 0)
            sleep_ms(SETTLE_MS);
        type_chars(a, (size_t)k * 2, "xy");
        acked(a);
    }
    json_t *v = versions(fx, "pages", "?limit=2");
    const json_t *list = jarr(v, "versions");
    assert_int_equal(list->n, 2);
    assert_int_equal(jnum(list->items[0], "seq"), 10);
    assert_int_equal(jnum(list->items[1], "seq"), 8);
    assert_int_equal(jnum(v, "next_before"), 7);
    json_free(v);
    v = versions(fx, "pages", "?limit=2&before=7");
    list = jarr(v, "versions");
    assert_int_equal(list->n, 2);
    assert_int_equal(jnum(list->items[0], "seq"), 6);
    assert_int_equal(jnum(list->items[1], "first_seq"), 3);
    assert_int_equal(jnum(v, "next_before"), 3);
    json_free(v);
    v = versions(fx, "pages", "?before=3&limit=2");
    list = jarr(v, "versions");
    assert_int_equal(list->n, 1);
    assert_int_equal(jnum(list->items[0], "seq"), 2);
    assert_true(jis_null(v, "next_before"));
    json_free(v);
    /* `before` inside a burst leaves that burst out; past the head is the head. */
    v = versions(fx, "pages", "?before=10");
    list = jarr(v, "versions");
    assert_int_equal(list->n, 4);
    assert_int_equal(jnum(list->items[0], "seq"), 8);
    json_free(v);
    v = versions(fx, "pages", "?before=1000&limit=200");
    assert_int_equal(jarr(v, "versions")->n, 5);
    json_free(v);
    v = versions(fx, "pages", "?before=0");
    assert_int_equal(jarr(v, "versions")->n, 0);
    assert_true(jis_null(v, "next_before"));
    json_free(v);
    /* Unknown parameters are ignored. */
    v = versions(fx, "pages", "?_=123&limit=1");
    assert_int_equal(jarr(v, "versions")->n, 1);
    json_free(v);
}

static void test_history_version_text_at_several_seqs(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "texts", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "texts", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    char *seen[40] = {NULL};
    uint64_t seq = 0;
    rng_t rng;
    rng_init(&rng, 0x7e47);
    /* Editors take turns (each waiting for the other), so seq i is the i-th edit. */
    for (int i = 0; i < 30; i++) {
        wt_editor_t *ed = rng_below(&rng, 2) ? a : b, *other = ed == a ? b : a;
        size_t len = crdt_doc_length(ed->doc);
        if (len > 3 && rng_below(&rng, 3) == 0) {
            assert_int_equal(wt_editor_delete(ed, rng_below(&rng, (uint32_t)len), 1, NULL), 0);
        } else {
            char c[3] = {(char)('a' + rng_below(&rng, 26)), 0, 0};
            if (i == 7)
                strcpy(c, "\xc3\xa9"); /* é: UTF-8 text comes back as it went */
            assert_int_equal(wt_editor_insert(ed, rng_below(&rng, (uint32_t)len + 1), c, NULL), 0);
        }
        acked(ed);
        char *t = wt_editor_text(ed);
        assert_int_equal(wt_editor_wait_text(other, t, TIMEOUT), 0);
        seen[++seq] = t;
    }
    for (uint64_t s = 1; s <= seq; s += 3) {
        char *t = version_text(fx, "texts", s);
        if (strcmp(t, seen[s]) != 0)
            fail_msg("version %llu: \"%s\", the editors had \"%s\" (seed 0x7e47)",
                     (unsigned long long)s, t, seen[s]);
        free(t);
    }
    char *t = version_text(fx, "texts", seq);
    assert_string_equal(t, seen[seq]);
    free(t);
    /* Version 0 is the empty document. */
    json_t *j = ok(fx, "GET", "texts", "versions/0", NULL);
    assert_string_equal(jstr(j, "text"), "");
    assert_true(jis_null(j, "time"));
    assert_int_equal(jarr(j, "changes")->n, 0);
    json_free(j);
    for (uint64_t s = 1; s <= seq; s++)
        free(seen[s]);
}

static void test_history_changes_spell_both_texts_with_authors(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "diff", "ada", 1);
    assert_non_null(a);
    assert_int_equal(wt_editor_insert(a, 0, "Hello world", NULL), 0);
    acked(a);
    sleep_ms(SETTLE_MS);
    wt_editor_t *b = wt_fixture_editor(fx, "diff", "bob", 1);
    assert_non_null(b);
    assert_int_equal(wt_editor_delete(b, 6, 5, NULL), 0);
    assert_int_equal(wt_editor_insert(b, 6, "there", NULL), 0);
    acked(b);

    /* Default `from`: the version before bob's burst. */
    json_t *j = ok(fx, "GET", "diff", "versions/3", NULL);
    assert_int_equal(jnum(j, "seq"), 3);
    assert_int_equal(jnum(j, "from"), 1);
    assert_string_equal(jstr(j, "text"), "Hello there");
    assert_true(jnum(j, "time") > 0);
    const json_t *ch = jarr(j, "changes");
    assert_changes_spell(ch, "Hello there", "Hello world");
    int saw_ins = 0, saw_del = 0;
    for (size_t i = 0; i < ch->n; i++) {
        const char *kind = jstr(ch->items[i], "kind");
        if (strcmp(kind, "inserted") == 0) {
            assert_string_equal(author_name(ch->items[i]), "bob");
            saw_ins = 1;
        } else if (strcmp(kind, "deleted") == 0) {
            assert_string_equal(author_name(ch->items[i]), "bob");
            saw_del = 1;
        } else {
            assert_null(jget(ch->items[i], "author"));
        }
    }
    assert_true(saw_ins && saw_del);
    json_free(j);

    /* From the empty document: who typed each part. */
    j = ok(fx, "GET", "diff", "versions/3?from=0", NULL);
    ch = jarr(j, "changes");
    assert_changes_spell(ch, "Hello there", "");
    assert_int_equal(ch->n, 2);
    assert_string_equal(jstr(ch->items[0], "text"), "Hello ");
    assert_string_equal(author_name(ch->items[0]), "ada");
    assert_string_equal(jstr(ch->items[1], "text"), "there");
    assert_string_equal(author_name(ch->items[1]), "bob");
    char rep[32];
    snprintf(rep, sizeof rep, "%llu", (unsigned long long)b->replica);
    assert_string_equal(jstr(jget(ch->items[1], "author"), "replica"), rep);
    json_free(j);

    /* Backwards: `from` after `seq`. */
    j = ok(fx, "GET", "diff", "versions/1?from=3", NULL);
    assert_string_equal(jstr(j, "text"), "Hello world");
    ch = jarr(j, "changes");
    assert_changes_spell(ch, "Hello world", "Hello there");
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(jstr(ch->items[i], "kind"), "inserted") == 0)
            assert_string_equal(author_name(ch->items[i]), "ada");
    json_free(j);
}

/* POST restore {"version": v, "name": who}; returns the answer. */
static json_t *restore(wt_fixture_t *fx, const char *doc, uint64_t version, const char *who)
{
    char body[256];
    if (who)
        snprintf(body, sizeof body, "{\"version\": %llu, \"name\": \"%s\"}",
                 (unsigned long long)version, who);
    else
        snprintf(body, sizeof body, "{\"version\":%llu}", (unsigned long long)version);
    return ok(fx, "POST", doc, "restore", body);
}

static void test_history_attribution(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "attr", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "attr", "Zoë \"z\"", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "abcdef", NULL), 0);
    assert_text(b, "abcdef");
    assert_int_equal(wt_editor_insert(b, 3, "XYZ", NULL), 0);
    assert_int_equal(wt_editor_delete(b, 7, 1, NULL), 0);
    assert_text(a, "abcXYZdf");
    acked(a);
    acked(b);
    json_t *j = ok(fx, "GET", "attr", "attribution", NULL);
    assert_int_equal(jnum(j, "head"), 3);
    const json_t *sp = jarr(j, "spans");
    assert_int_equal(sp->n, 3);
    assert_string_equal(jstr(sp->items[0], "text"), "abc");
    assert_string_equal(author_name(sp->items[0]), "ada");
    assert_string_equal(jstr(sp->items[1], "text"), "XYZ");
    assert_string_equal(author_name(sp->items[1]), "Zoë \"z\"");
    assert_string_equal(jstr(sp->items[2], "text"), "df");
    assert_string_equal(author_name(sp->items[2]), "ada");
    json_free(j);

    /* Restored text is credited to whoever asked for that restore: carol
     * brings the text back, eve empties it, dave brings it back again. */
    json_free(restore(fx, "attr", 3, "carol")); /* nothing to do: 3 is current */
    json_free(restore(fx, "attr", 0, "eve"));   /* 4 */
    assert_text(a, "");
    wait_head(fx, "attr", 4);
    json_free(restore(fx, "attr", 3, "carol")); /* 5 */
    wait_head(fx, "attr", 5);
    json_free(restore(fx, "attr", 4, "eve")); /* 6 */
    wait_head(fx, "attr", 6);
    json_free(restore(fx, "attr", 3, "dave")); /* 7 */
    assert_text(b, "abcXYZdf");
    wait_head(fx, "attr", 7);
    j = ok(fx, "GET", "attr", "attribution", NULL);
    sp = jarr(j, "spans");
    assert_int_equal(sp->n, 1);
    assert_string_equal(jstr(sp->items[0], "text"), "abcXYZdf");
    assert_string_equal(author_name(sp->items[0]), "dave");
    json_free(j);
}

static void test_history_restore_rest_two_editors(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "rest", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "rest", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    type_chars(a, 0, "one");
    acked(a);
    assert_text(b, "one");
    sleep_ms(SETTLE_MS);
    type_chars(b, 3, " two");
    acked(b);
    assert_text(a, "one two");

    json_t *j = restore(fx, "rest", 3, "carol");
    assert_int_equal(jnum(j, "restored"), 3);
    assert_int_equal(jnum(j, "seq"), 8);
    assert_string_equal(jstr(j, "text"), "one");
    json_free(j);
    assert_text(a, "one");
    assert_text(b, "one");
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);

    /* The restore is its own listed version, by carol. */
    wait_head(fx, "rest", 8);
    json_t *v = versions(fx, "rest", NULL);
    const json_t *list = jarr(v, "versions");
    assert_int_equal(list->n, 3);
    assert_int_equal(jnum(list->items[0], "seq"), 8);
    assert_int_equal(jnum(list->items[0], "first_seq"), 8);
    assert_int_equal(jnum(list->items[0], "restore_of"), 3);
    assert_int_equal(jnum(list->items[0], "deleted"), 4);
    assert_string_equal(jstr(jarr(list->items[0], "authors")->items[0], "name"), "carol");
    assert_true(jis_null(list->items[1], "restore_of"));
    json_free(v);

    /* Restoring again undoes it; the default author name is "restore". */
    j = restore(fx, "rest", 7, NULL);
    assert_int_equal(jnum(j, "seq"), 9);
    assert_string_equal(jstr(j, "text"), "one two");
    json_free(j);
    assert_text(a, "one two");
    assert_text(b, "one two");
    wait_head(fx, "rest", 9);
    v = versions(fx, "rest", "?limit=1");
    assert_int_equal(jnum(jarr(v, "versions")->items[0], "restore_of"), 7);
    assert_string_equal(jstr(jarr(jarr(v, "versions")->items[0], "authors")->items[0], "name"),
                        "restore");
    json_free(v);

    /* The text of the restore version, and its changes, by the restorer. */
    j = ok(fx, "GET", "rest", "versions/8", NULL);
    assert_string_equal(jstr(j, "text"), "one");
    assert_int_equal(jnum(j, "from"), 7);
    const json_t *ch = jarr(j, "changes");
    assert_changes_spell(ch, "one", "one two");
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(jstr(ch->items[i], "kind"), "deleted") == 0)
            assert_string_equal(author_name(ch->items[i]), "carol");
    json_free(j);

    /* Restoring the current text logs nothing. */
    j = restore(fx, "rest", 9, NULL);
    assert_true(jis_null(j, "seq"));
    assert_string_equal(jstr(j, "text"), "one two");
    json_free(j);
    /* Editing goes on after restores. */
    type_chars(a, 0, ">");
    assert_text(b, ">one two");
}

static void test_history_restore_keeps_concurrent_edit(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "conc", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "conc", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "alpha beta", NULL), 0); /* seq 1 */
    acked(a);
    assert_text(b, "alpha beta");
    assert_int_equal(wt_editor_insert(a, 10, " gamma", NULL), 0); /* seq 2 */
    acked(a);
    assert_text(b, "alpha beta gamma");
    /* bob types while offline: concurrent with the restore. */
    wt_editor_drop(b);
    assert_int_equal(wt_editor_insert(b, 6, "XYZ ", NULL), 0);
    json_t *j = restore(fx, "conc", 1, "ada");
    assert_string_equal(jstr(j, "text"), "alpha beta");
    json_free(j);
    assert_text(a, "alpha beta");
    assert_int_equal(wt_editor_reconnect(b, wt_fixture_replica(fx), TIMEOUT), 0);
    wt_editor_t *eds[] = {a, b};
    assert_int_equal(wt_editors_wait_converged(eds, 2, TIMEOUT), 0);
    char *t = wt_editor_text(a);
    assert_string_equal(t, "alpha XYZ beta");
    free(t);
}

static void test_history_restore_of_a_restore(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "rr", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "rr", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wt_editor_insert(a, 0, "a", NULL), 0); /* 1 */
    acked(a);
    assert_int_equal(wt_editor_insert(a, 1, "b", NULL), 0); /* 2 */
    acked(a);
    json_t *j = restore(fx, "rr", 1, NULL); /* 3: "a" */
    assert_int_equal(jnum(j, "seq"), 3);
    json_free(j);
    assert_text(b, "a");
    assert_int_equal(wt_editor_insert(b, 1, "c", NULL), 0); /* 4: "ac" */
    acked(b);
    assert_text(a, "ac");
    wait_head(fx, "rr", 4);
    j = restore(fx, "rr", 3, "bob"); /* 5: back to the restore's text */
    assert_int_equal(jnum(j, "seq"), 5);
    assert_string_equal(jstr(j, "text"), "a");
    json_free(j);
    assert_text(a, "a");
    assert_text(b, "a");
    j = restore(fx, "rr", 2, NULL); /* 6: "ab", the b typed before the first restore */
    assert_string_equal(jstr(j, "text"), "ab");
    json_free(j);
    assert_text(a, "ab");
    assert_text(b, "ab");
    wait_head(fx, "rr", 6);
    json_t *v = versions(fx, "rr", NULL);
    const json_t *list = jarr(v, "versions");
    /* 6, 5 and 3 are restores; 4 stands alone between two restores. */
    assert_int_equal(list->n, 5);
    assert_int_equal(jnum(list->items[0], "restore_of"), 2);
    assert_int_equal(jnum(list->items[1], "restore_of"), 3);
    assert_int_equal(jnum(list->items[2], "seq"), 4);
    assert_true(jis_null(list->items[2], "restore_of"));
    assert_int_equal(jnum(list->items[3], "restore_of"), 1);
    assert_int_equal(jnum(list->items[4], "seq"), 2);
    assert_int_equal(jnum(list->items[4], "first_seq"), 1);
    json_free(v);
    char *t = version_text(fx, "rr", 5);
    assert_string_equal(t, "a");
    free(t);
}

/* Waits until the version listed at `seq` has the label `name` (NULL: none). */
static void wait_label(wt_fixture_t *fx, const char *doc, uint64_t seq, const char *name)
{
    for (int i = 0; i < TIMEOUT / 20; i++) {
        json_t *v = versions(fx, doc, NULL);
        const json_t *list = jarr(v, "versions");
        int found = 0;
        for (size_t k = 0; k < list->n; k++) {
            json_t *x = list->items[k], *n = jget(x, "name");
            if (jnum(x, "seq") == seq &&
                (name ? n->type == J_STR && strcmp(n->str, name) == 0 : n->type == J_NULL))
                found = 1;
        }
        json_free(v);
        if (found)
            return;
        sleep_ms(20);
    }
    fail_msg("version %llu never listed with name %s", (unsigned long long)seq,
             name ? name : "null");
}

static void test_history_naming(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "named", "ada", 1);
    assert_non_null(a);
    type_chars(a, 0, "abcdef"); /* one burst, 1..6 */
    acked(a);
    json_t *j = ok(fx, "POST", "named", "versions/4/name",
                   "{\"name\": \"Entw\\u00fcrf \\ud83d\\ude00\", \"by\": \"ada\"}");
    assert_int_equal(jnum(j, "seq"), 4);
    assert_string_equal(jstr(j, "name"), "Entwürf \xf0\x9f\x98\x80");
    json_free(j);
    /* A name ends a burst: 1..4 (named) and 5..6. */
    wait_label(fx, "named", 4, "Entwürf \xf0\x9f\x98\x80");
    json_t *v = versions(fx, "named", NULL);
    const json_t *list = jarr(v, "versions");
    assert_int_equal(list->n, 2);
    assert_int_equal(jnum(list->items[0], "first_seq"), 5);
    assert_true(jis_null(list->items[0], "name"));
    assert_int_equal(jnum(list->items[1], "seq"), 4);
    json_free(v);
    /* Renaming replaces; an empty name removes it and the burst is whole again. */
    j = ok(fx, "POST", "named", "versions/4/name", "{\"name\":\"v1\"}");
    json_free(j);
    wait_label(fx, "named", 4, "v1");
    j = ok(fx, "POST", "named", "versions/4/name", "{\"name\":\"\"}");
    assert_true(jis_null(j, "name"));
    json_free(j);
    for (int i = 0; i < TIMEOUT / 20; i++) {
        v = versions(fx, "named", NULL);
        size_t n = jarr(v, "versions")->n;
        json_free(v);
        if (n == 1)
            break;
        sleep_ms(20);
    }
    wait_label(fx, "named", 6, NULL);
    /* Names are 1..128 bytes; version 0 and versions past the head have none. */
    char body[300] = "{\"name\":\"";
    memset(body + 9, 'n', 129);
    strcpy(body + 9 + 129, "\"}");
    expect_status(fx, "POST", "named", "versions/4/name", body, 400);
    body[9 + 128] = '"', body[9 + 129] = '}', body[9 + 130] = 0;
    j = ok(fx, "POST", "named", "versions/4/name", body);
    json_free(j);
    expect_status(fx, "POST", "named", "versions/0/name", "{\"name\":\"x\"}", 404);
    expect_status(fx, "POST", "named", "versions/7/name", "{\"name\":\"x\"}", 404);
    expect_status(fx, "POST", "named", "versions/4/name", "{\"by\":\"x\"}", 400);
    expect_status(fx, "POST", "named", "versions/4/name", "{\"name\":\"a\\nb\"}", 400);
}

/* ---- over the WebSocket ------------------------------------------------------ */

/* Sends HISTORY(req, method, path, body) on an editor's connection and
 * returns the parsed body of its HISTORY_RESULT (other messages on the way
 * are handled by the editor). */
static json_t *ws_history(wt_editor_t *ed, uint64_t reqid, const char *method, const char *path,
                          const char *body, uint32_t *status)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_HISTORY;
    m.u.history.req = reqid;
    m.u.history.method = (proto_bytes_t){(const uint8_t *)method, strlen(method)};
    m.u.history.path = (proto_bytes_t){(const uint8_t *)path, strlen(path)};
    if (body)
        m.u.history.body = (proto_bytes_t){(const uint8_t *)body, strlen(body)};
    assert_int_equal(wt_proto_send(&ed->ws, &m), 0);
    for (;;) {
        proto_msg_t in;
        int rc = wt_proto_recv(&ed->ws, TIMEOUT, &in);
        if (rc != 0)
            fail_msg("no HISTORY_RESULT for request %llu: %s", (unsigned long long)reqid,
                     wt_strerror(rc));
        if (in.type == PROTO_HISTORY_RESULT) {
            assert_int_equal(in.u.history_result.req, reqid);
            *status = in.u.history_result.status;
            char *text = malloc(in.u.history_result.body.len + 1);
            memcpy(text, in.u.history_result.body.base, in.u.history_result.body.len);
            text[in.u.history_result.body.len] = 0;
            json_t *j = json_parse(text);
            free(text);
            return j;
        }
        assert_int_equal(wt_editor_handle(ed, &in), 0);
    }
}

static void test_history_websocket_routes(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "ws", "ada", 1);
    wt_editor_t *b = wt_fixture_editor(fx, "ws", "bob", 1);
    assert_non_null(a);
    assert_non_null(b);
    type_chars(a, 0, "hey");
    acked(a);
    sleep_ms(SETTLE_MS);
    type_chars(a, 3, " you");
    acked(a);
    assert_text(b, "hey you");
    uint32_t st;

    json_t *j = ws_history(b, 1, "GET", "versions?limit=20", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(jnum(j, "head"), 7);
    assert_int_equal(jarr(j, "versions")->n, 2);
    assert_int_equal(jnum(jarr(j, "versions")->items[1], "seq"), 3);
    json_free(j);

    j = ws_history(b, 2, "GET", "versions/3", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(j, "text"), "hey");
    json_free(j);

    j = ws_history(b, 3, "GET", "attribution", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(author_name(jarr(j, "spans")->items[0]), "ada");
    json_free(j);

    /* A restore over the WebSocket reaches everyone, the requester included. */
    j = ws_history(b, 4, "POST", "restore", "{\"version\": 3, \"name\": \"bob\"}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(jnum(j, "seq"), 8);
    assert_string_equal(jstr(j, "text"), "hey");
    json_free(j);
    assert_text(b, "hey");
    assert_text(a, "hey");

    /* Naming over the WebSocket. */
    j = ws_history(a, 5, "POST", "versions/7/name", "{\"name\":\"before\"}", &st);
    assert_int_equal(st, 200);
    json_free(j);
    wait_label(fx, "ws", 7, "before");

    /* Errors come back as results; the connection stays usable. */
    j = ws_history(a, 6, "GET", "nowhere", NULL, &st);
    assert_int_equal(st, 404);
    json_free(j);
    j = ws_history(a, 7, "POST", "restore", NULL, &st);
    assert_int_equal(st, 400);
    json_free(j);
    j = ws_history(a, 8, "PUT", "restore", "{}", &st);
    assert_int_equal(st, 405);
    json_free(j);
    j = ws_history(a, 9, "GET", "versions/99", NULL, &st);
    assert_int_equal(st, 404);
    json_free(j);
    j = ws_history(a, UINT64_MAX, "POST", "restore", "{\"version\": [3]}", &st);
    assert_int_equal(st, 400);
    json_free(j);
    type_chars(a, 3, "!");
    assert_text(b, "hey!");
    assert_int_equal(a->n_errors, 0);
    assert_int_equal(b->n_errors, 0);
}

static void test_history_websocket_result_over_message_limit(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-message", "1024", NULL};
    wt_fixture_t *fx = wt_fixture_new(0x415700002, args);
    assert_non_null(fx);
    wt_editor_t *a = wt_fixture_editor(fx, "big", "ada", 1);
    if (a == NULL) {
        wt_fixture_free(fx);
        fail_msg("editor cannot join");
    }
    char text[900];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    assert_int_equal(wt_editor_insert(a, 0, text, NULL), 0);
    assert_int_equal(wt_editor_insert(a, 0, text, NULL), 0);
    acked(a);
    uint32_t st;
    json_t *j = ws_history(a, 1, "GET", "versions/2", NULL, &st);
    assert_int_equal(st, 413);
    assert_non_null(jstr(j, "error"));
    json_free(j);
    j = ws_history(a, 2, "GET", "versions?limit=1", NULL, &st);
    assert_int_equal(st, 200);
    json_free(j);
    /* A restore is done even when its text would not fit: it comes as null. */
    assert_int_equal(wt_editor_insert(a, 0, "y", NULL), 0);
    acked(a);
    j = ws_history(a, 3, "POST", "restore", "{\"version\": 2}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(jnum(j, "seq"), 4);
    assert_true(jis_null(j, "text"));
    json_free(j);
    char want[2 * sizeof text];
    snprintf(want, sizeof want, "%s%s", text, text);
    assert_int_equal(wt_editor_wait_text(a, want, TIMEOUT), 0); /* the "y" is gone */
    wt_fixture_free(fx);
}

/* ---- hostile requests ----------------------------------------------------- */

static void test_history_hostile_requests(void **state)
{
    wt_fixture_t *fx = *state;
    wt_editor_t *a = wt_fixture_editor(fx, "hostile", "ada", 1);
    assert_non_null(a);
    type_chars(a, 0, "safe");
    acked(a);

    static const char *const bad_bodies[] = {
        "",
        "   ",
        "{",
        "}",
        "[]",
        "null",
        "{\"version\": -1}",
        "{\"version\": 1.5}",
        "{\"version\": 1e2}",
        "{\"version\": 01}",
        "{\"version\": \"1\"}",
        "{\"version\": true}",
        "{\"version\": 18446744073709551616}",
        "{\"version\": 1, \"version\": 2}",
        "{\"version\": [1]}",
        "{\"version\": {\"a\": 1}}",
        "{\"version\": 1} x",
        "{\"version\": 1,}",
        "{,\"version\": 1}",
        "{\"version\" 1}",
        "{'version': 1}",
        "{\"version\": 1, \"name\": \"\\ud800\"}",
        "{\"version\": 1, \"name\": \"\\udc00x\"}",
        "{\"version\": 1, \"name\": \"\\u12\"}",
        "{\"version\": 1, \"name\": \"\\x41\"}",
        "{\"version\": 1, \"name\": \"a\tb\"}",
        "{\"version\": 1, \"name\": \"\xc3\x28\"}",
        "{\"version\": 1, \"name\": \"\xed\xa0\x80\"}",
        "{\"version\": 1, \"name\": \"\xc0\xaf\"}",
        "{\"version\": 1, \"other\": \"\xff\"}",
        "{\"version\": 1, \"name\": \"unterminated}",
        "{\"version\": 1, \"name\": 5}",
        "{\"name\": \"no version\"}",
        "{\"version\": 1, \"name\": "
        "\"0123456789012345678901234567890123456789012345678901234567890123"
        "4\"}",
    };
    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++)
        expect_status(fx, "POST", "hostile", "restore", bad_bodies[i], 400);
    /* Deep nesting is refused at the first level. */
    char deep[4000];
    strcpy(deep, "{\"version\":");
    memset(deep + 11, '[', 3000);
    deep[3011] = 0;
    expect_status(fx, "POST", "hostile", "restore", deep, 400);
    /* Bodies over 4 KiB: 413 (ours up to 64 KiB, then H2O's own). */
    char *huge = malloc(200000);
    memset(huge, ' ', 200000);
    memcpy(huge, "{\"version\":4}", 13);
    huge[4097] = 0;
    expect_status(fx, "POST", "hostile", "restore", huge, 413);
    huge[4096] = 0; /* exactly 4 KiB of valid JSON with trailing spaces: accepted */
    json_t *j = ok(fx, "POST", "hostile", "restore", huge);
    json_free(j);
    huge[199999] = 0;
    {
        wt_http_resp_t r;
        assert_int_equal(wt_http_request("127.0.0.1", fx->server.port, "POST",
                                         "/api/docs/hostile/restore", NULL, huge, 199999, TIMEOUT,
                                         &r),
                         0);
        assert_int_equal(r.status, 413);
        wt_http_resp_dispose(&r);
    }
    free(huge);
    /* Unknown and odd escapes that are valid JSON are fine; unknown members ignored. */
    j = ok(fx, "POST", "hostile", "restore",
           " {\"extra\": null, \"flag\": true, \"n\": 0, \"s\": \"\\\"\\/\\b\\f\\n\\r\\t\","
           " \"version\": 4, \"name\": null} ");
    json_free(j);

    /* Random byte mutations of a good body (fixed seed): 200 or 400, nothing else. */
    {
        static const char good[] = "{\"name\": \"a\\u00e9\\ud83d\\ude00 b\", \"by\": \"x\"}";
        rng_t rng;
        rng_init(&rng, 0xb0d1);
        for (int i = 0; i < 300; i++) {
            char m[sizeof good + 8];
            size_t len = sizeof good - 1;
            memcpy(m, good, len);
            for (uint32_t k = 0, n = 1 + rng_below(&rng, 3); k < n; k++) {
                uint32_t at = rng_below(&rng, (uint32_t)len);
                switch (rng_below(&rng, 3)) {
                case 0: /* any byte but NUL (the request helper takes a C string) */
                    m[at] = (char)(1 + rng_below(&rng, 255));
                    break;
                case 1: /* drop one */
                    memmove(m + at, m + at + 1, len - at - 1);
                    len--;
                    break;
                default: /* a JSON-ish character */
                    m[at] = "{}[]\",:\\u0 -.e"[rng_below(&rng, 15)];
                    break;
                }
            }
            m[len] = 0;
            int status;
            wt_http_resp_t r;
            assert_int_equal(wt_http_request("127.0.0.1", fx->server.port, "POST",
                                             "/api/docs/hostile/versions/2/name", NULL, m, len,
                                             TIMEOUT, &r),
                             0);
            status = r.status;
            if (status != 200 && status != 400)
                fail_msg("mutation %d (seed 0xb0d1): HTTP %d for %s", i, status, m);
            json_free(json_parse((const char *)r.body.data));
            wt_http_resp_dispose(&r);
        }
    }

    /* Bad seqs and parameters. */
    static const char *const bad_paths[] = {
        "versions/abc",
        "versions/-1",
        "versions/18446744073709551616",
        "versions/1x",
        "versions/%31",
        "versions?limit=0",
        "versions?limit=201",
        "versions?limit=abc",
        "versions?limit=",
        "versions?limit",
        "versions?before=-3",
        "versions?before=1&before=2",
        "versions/2?from=x",
        "versions/1/name/x/../../3",
    };
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        int status;
        json_t *r = req(fx, "GET", "hostile", bad_paths[i], NULL, &status);
        if (status != 400 && status != 404)
            fail_msg("GET %s: %d", bad_paths[i], status);
        json_free(r);
    }
    expect_status(fx, "GET", "hostile", "versions/abc", NULL, 400);
    expect_status(fx, "GET", "hostile", "versions/99", NULL, 404);
    expect_status(fx, "GET", "hostile", "versions/18446744073709551615", NULL, 404);
    expect_status(fx, "GET", "hostile", "versions/2?from=99", NULL, 404);
    expect_status(fx, "GET", "hostile", "nope", NULL, 404);
    expect_status(fx, "GET", "hostile", "versions/", NULL, 404);
    expect_status(fx, "GET", "hostile", "versions/1/other", NULL, 404);
    expect_status(fx, "GET", "hostile", "", NULL, 404);
    expect_status(fx, "GET", "hostile", "restore", NULL, 405);
    expect_status(fx, "POST", "hostile", "versions", "{}", 405);
    expect_status(fx, "DELETE", "hostile", "attribution", NULL, 405);
    expect_status(fx, "GET", "hostile", "versions/1/name", NULL, 405);
    expect_status(fx, "GET", "never-written", "versions", NULL, 404);
    expect_status(fx, "GET", "never-written", "attribution", NULL, 404);
    expect_status(fx, "POST", "never-written", "restore", "{\"version\":0}", 404);
    expect_status(fx, "POST", "hostile", "restore", "{\"version\":99}", 404);
    expect_status(fx, "GET", "bad%20name", "versions", NULL, 400);

    /* Still healthy, the text intact (the restores above were of the current text). */
    assert_text(a, "safe");
    char *t = version_text(fx, "hostile", 4);
    assert_string_equal(t, "safe");
    free(t);
    wt_http_resp_t r;
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/healthz", TIMEOUT, &r), 0);
    assert_int_equal(r.status, 200);
    wt_http_resp_dispose(&r);
    /* The plain document route is unchanged. */
    assert_int_equal(wt_http_get("127.0.0.1", fx->server.port, "/api/docs/hostile", TIMEOUT, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body.data, "\"text\":\"safe\""));
    wt_http_resp_dispose(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_history_bursts_grouped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_burst_max_and_two_authors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_version_text_at_several_seqs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_changes_spell_both_texts_with_authors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_history_attribution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_restore_rest_two_editors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_restore_keeps_concurrent_edit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_history_restore_of_a_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_naming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_websocket_routes, setup, teardown),
        cmocka_unit_test(test_history_websocket_result_over_message_limit),
        cmocka_unit_test_setup_teardown(test_history_hostile_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
