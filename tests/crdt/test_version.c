/* SPDX-License-Identifier: MIT */
/*
 * test_version.c: versions (crdt/version.c): crdt_doc_text_at(),
 * crdt_doc_restore() and crdt_doc_diff() against earlier state vectors. A
 * scripted session of three replicas records each replica's state vector,
 * text and encoded state at chosen moments, including versions that cut a run
 * of backspaces and a run of forward deletes in the middle (one delete record
 * holding several operations), concurrent inserts, and deletes spanning
 * several clients' characters and emoji. Afterwards, on every replica:
 * text_at of each version is the text recorded then; restoring each version
 * gives that text, and the restore's update brings another replica to the same
 * text; restoring the current version changes nothing; a diff against each
 * recorded state vector, applied to a replica loaded from the state recorded
 * with it, gives the current text. A randomized multi-replica session (with
 * concurrent deletes of the same characters) compares text_at for random,
 * not necessarily causal, versions with a naive model computed from the
 * document's items and delete records. Errors: CRDT_EVERSION for a version
 * ahead of the document or naming an unknown client, CRDT_EMALFORMED for
 * garbage, CRDT_ENOMEM from failed allocations, each leaving the document and
 * the output argument untouched. Randomized tests use fixed seeds and print
 * them on failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdt_internal.h"
#include "test_alloc.h"
#include "test_rng.h"

/* ---- allocator and documents ------------------------------------------------- */

/* Every document lives in the test allocator `ta`, which also counts calls
 * breaking crdt.h's promise that sizes are never 0; both are checked when
 * each test ends. */
static test_alloc_t ta;
#define strict (ta.alloc)

static int setup(void **state)
{
    (void)state;
    test_alloc_init(&ta);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_alloc_check_clean(&ta);
}

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *d = NULL;
    assert_int_equal(crdt_doc_new(client, &strict, &d), 0);
    return d;
}

static crdt_doc_t *load(uint64_t client, const crdt_buf_t *st)
{
    crdt_doc_t *d = NULL;
    int rc = crdt_doc_load(client, &strict, st->base, st->len, &d);
    if (rc != 0)
        fail_msg("crdt_doc_load: %s", crdt_strerror(rc));
    return d;
}

static void ins(crdt_doc_t *d, size_t at, const char *s)
{
    int rc = crdt_doc_insert(d, at, s, strlen(s), NULL);
    if (rc != 0)
        fail_msg("insert(%zu, \"%s\"): %s", at, s, crdt_strerror(rc));
    assert_int_equal(crdt_doc_check(d), 0);
}

static void del(crdt_doc_t *d, size_t at, size_t len)
{
    int rc = crdt_doc_delete(d, at, len, NULL);
    if (rc != 0)
        fail_msg("delete(%zu, %zu): %s", at, len, crdt_strerror(rc));
    assert_int_equal(crdt_doc_check(d), 0);
}

static void apply(crdt_doc_t *d, const crdt_buf_t *u)
{
    int rc = crdt_doc_apply_update(d, u->base, u->len);
    if (rc != 0)
        fail_msg("crdt_doc_apply_update: %s", crdt_strerror(rc));
    assert_int_equal(crdt_doc_check(d), 0);
}

static void sync_from(crdt_doc_t *dst, const crdt_doc_t *src)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(dst, &sv), 0);
    assert_int_equal(crdt_doc_diff(src, sv.base, sv.len, &d), 0);
    apply(dst, &d);
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
}

static bool same_bytes(const crdt_buf_t *a, const crdt_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

static void assert_text(const crdt_doc_t *d, const char *want)
{
    crdt_buf_t t;
    assert_int_equal(crdt_doc_text(d, &t), 0);
    assert_string_equal((const char *)t.base, want);
    crdt_buf_dispose(&t);
}

static void assert_same_doc(const crdt_doc_t *a, const crdt_doc_t *b)
{
    crdt_buf_t x, y;
    assert_int_equal(crdt_doc_text(a, &x), 0);
    assert_int_equal(crdt_doc_text(b, &y), 0);
    if (!same_bytes(&x, &y))
        fail_msg("texts differ:\n  \"%s\"\n  \"%s\"", (const char *)x.base, (const char *)y.base);
    crdt_buf_dispose(&x);
    crdt_buf_dispose(&y);
    assert_int_equal(crdt_doc_state_vector(a, &x), 0);
    assert_int_equal(crdt_doc_state_vector(b, &y), 0);
    if (!same_bytes(&x, &y))
        fail_msg("state vectors differ");
    crdt_buf_dispose(&x);
    crdt_buf_dispose(&y);
}

/* Text, state vector and encoded state, to see a document unchanged. */
typedef struct {
    crdt_buf_t text, sv, st;
} look_t;

static void look_take(const crdt_doc_t *d, look_t *k)
{
    assert_int_equal(crdt_doc_text(d, &k->text), 0);
    assert_int_equal(crdt_doc_state_vector(d, &k->sv), 0);
    assert_int_equal(crdt_doc_encode_state(d, &k->st), 0);
}

static void look_dispose(look_t *k)
{
    crdt_buf_dispose(&k->text);
    crdt_buf_dispose(&k->sv);
    crdt_buf_dispose(&k->st);
}

static void assert_unchanged(const crdt_doc_t *d, const look_t *k)
{
    look_t now;
    assert_int_equal(crdt_doc_check(d), 0);
    look_take(d, &now);
    if (!same_bytes(&now.text, &k->text) || !same_bytes(&now.sv, &k->sv) ||
        !same_bytes(&now.st, &k->st))
        fail_msg("the document changed");
    look_dispose(&now);
}

/* ---- hand-made state vectors -------------------------------------------------- */

typedef struct {
    uint8_t b[256];
    size_t n;
} bytes_t;

static void put_u8(bytes_t *w, uint8_t v)
{
    assert_true(w->n < sizeof(w->b));
    w->b[w->n++] = v;
}

static void put_varint(bytes_t *w, uint64_t v)
{
    while (v >= 0x80) {
        put_u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_u8(w, (uint8_t)v);
}

static void put_u64(bytes_t *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        put_u8(w, (uint8_t)(v >> (8 * i)));
}

/* A state vector of `n` (id, clock) pairs. */
static void make_sv(bytes_t *w, size_t n, const uint64_t *ids, const uint64_t *clocks)
{
    w->n = 0;
    put_u8(w, 1);
    put_varint(w, n);
    for (size_t i = 0; i < n; i++) {
        put_u64(w, ids[i]);
        put_varint(w, clocks[i]);
    }
}

/* ---- the scripted session --------------------------------------------------------- */

#define MAXVER 40

typedef struct {
    crdt_buf_t sv, text, state;
    const char *what;
} version_t;

typedef struct {
    crdt_doc_t *a, *b, *c;
    version_t v[MAXVER];
    int nv;
} script_t;

static void record(script_t *s, const crdt_doc_t *d, const char *what, const char *want)
{
    version_t *v;
    assert_true(s->nv < MAXVER);
    v = &s->v[s->nv++];
    v->what = what;
    assert_int_equal(crdt_doc_state_vector(d, &v->sv), 0);
    assert_int_equal(crdt_doc_text(d, &v->text), 0);
    assert_int_equal(crdt_doc_encode_state(d, &v->state), 0);
    if (want && strcmp((const char *)v->text.base, want) != 0)
        fail_msg("script step \"%s\": text \"%s\", expected \"%s\"", what,
                 (const char *)v->text.base, want);
}

#define EMOJI "\xf0\x9f\x98\x80" /* U+1F600: 2 UTF-16 units */
#define CJK "\xe4\xb8\xad"       /* U+4E2D: 1 unit */

static void script_run(script_t *s)
{
    memset(s, 0, sizeof(*s));
    s->a = new_doc(1);
    s->b = new_doc(2);
    s->c = new_doc(3);
    record(s, s->a, "empty", "");

    /* a types "abcdef" key by key, then backspaces three times. */
    ins(s->a, 0, "a");
    ins(s->a, 1, "b");
    ins(s->a, 2, "c");
    record(s, s->a, "abc typed", "abc");
    ins(s->a, 3, "d");
    ins(s->a, 4, "e");
    ins(s->a, 5, "f");
    record(s, s->a, "abcdef typed", "abcdef");
    del(s->a, 5, 1);
    record(s, s->a, "backspace 1", "abcde");
    del(s->a, 4, 1);
    record(s, s->a, "backspace 2", "abcd");
    del(s->a, 3, 1);
    record(s, s->a, "backspace 3", "abc");

    /* b gets it and types " xyz"; a concurrently types "12" at the start. */
    sync_from(s->b, s->a);
    ins(s->b, 3, " xyz");
    record(s, s->b, "b typed xyz", "abc xyz");
    ins(s->a, 0, "1");
    ins(s->a, 1, "2");
    record(s, s->a, "a typed 12", "12abc");

    /* b presses Delete three times at index 4: a forward run. */
    del(s->b, 4, 1);
    record(s, s->b, "delete 1", "abc yz");
    del(s->b, 4, 1);
    record(s, s->b, "delete 2", "abc z");
    del(s->b, 4, 1);
    record(s, s->b, "delete 3", "abc ");

    /* They merge. */
    sync_from(s->a, s->b);
    sync_from(s->b, s->a);
    record(s, s->a, "merged", "12abc ");

    /* c joins, adds non-ASCII text, and deletes across three clients'
     * characters (a's "c", b's " ", its own emoji): three delete runs. */
    sync_from(s->c, s->a);
    ins(s->c, 6, EMOJI CJK "!");
    record(s, s->c, "c typed emoji", "12abc " EMOJI CJK "!");
    del(s->c, 4, 4);
    record(s, s->c, "c deleted across clients", "12ab" CJK "!");

    /* Meanwhile a types at the end and b deletes "12". */
    ins(s->a, 6, "Z");
    record(s, s->a, "a typed Z", "12abc Z");
    del(s->b, 0, 2);
    record(s, s->b, "b deleted 12", "abc ");

    /* Everyone merges; where Z lands among c's text is FugueMax's choice. */
    sync_from(s->a, s->b);
    sync_from(s->a, s->c);
    sync_from(s->b, s->a);
    sync_from(s->c, s->a);
    record(s, s->a, "all merged", NULL);

    /* a types two emoji at the start and backspaces one (two units). */
    ins(s->a, 0, EMOJI);
    ins(s->a, 2, EMOJI);
    record(s, s->a, "a typed two emoji", NULL);
    del(s->a, 2, 2);
    record(s, s->a, "a backspaced an emoji", NULL);
    /* b appends, c deletes everything it sees, concurrently. */
    ins(s->b, crdt_doc_length(s->b), "end");
    record(s, s->b, "b appended", NULL);
    del(s->c, 0, crdt_doc_length(s->c));
    record(s, s->c, "c cleared", "");

    sync_from(s->a, s->b);
    sync_from(s->a, s->c);
    sync_from(s->b, s->a);
    sync_from(s->c, s->a);
    record(s, s->a, "final", NULL);
    assert_same_doc(s->a, s->b);
    assert_same_doc(s->a, s->c);
}

static void script_free(script_t *s)
{
    crdt_doc_free(s->a);
    crdt_doc_free(s->b);
    crdt_doc_free(s->c);
    for (int i = 0; i < s->nv; i++) {
        crdt_buf_dispose(&s->v[i].sv);
        crdt_buf_dispose(&s->v[i].text);
        crdt_buf_dispose(&s->v[i].state);
    }
}

/* text_at of every recorded version on `d` is the recorded text. */
static void assert_versions(const script_t *s, const crdt_doc_t *d, const char *who)
{
    for (int i = 0; i < s->nv; i++) {
        crdt_buf_t t;
        int rc = crdt_doc_text_at(d, s->v[i].sv.base, s->v[i].sv.len, &t);
        if (rc != 0)
            fail_msg("%s: text_at(\"%s\"): %s", who, s->v[i].what, crdt_strerror(rc));
        if (!same_bytes(&t, &s->v[i].text))
            fail_msg("%s: text_at(\"%s\") is \"%s\", was \"%s\"", who, s->v[i].what,
                     (const char *)t.base, (const char *)s->v[i].text.base);
        assert_int_equal(t.base[t.len], 0);
        crdt_buf_dispose(&t);
    }
}

/* A delete record of local client `self` with this shape exists. */
static bool has_delrec(const crdt_doc_t *d, uint32_t len, uint32_t backward)
{
    for (uint32_t i = 0; i < CLIENT(d, d->self).dels.len; i++) {
        const crdt__delrec_t *r = &DELREC(d, d->self, i);
        if (r->len == len && r->backward == backward)
            return true;
    }
    return false;
}

static const crdt_buf_t sentinel = {(uint8_t *)"sentinel", 8, 99, NULL};

static void assert_sentinel(const crdt_buf_t *b)
{
    assert_ptr_equal(b->base, sentinel.base);
    assert_int_equal(b->len, 8);
    assert_int_equal(b->_cap, 99);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_doc_text_at_scripted_versions(void **state)
{
    script_t s;
    (void)state;
    script_run(&s);
    /* The backspaces and the Delete presses became one run each, so the
     * versions recorded between them cut a delete record in the middle. */
    assert_true(has_delrec(s.a, 3, 1));
    assert_true(has_delrec(s.b, 3, 0));
    assert_versions(&s, s.a, "a");
    assert_versions(&s, s.b, "b");
    assert_versions(&s, s.c, "c");
    {
        crdt_buf_t st;
        crdt_doc_t *l, *e = new_doc(9);
        assert_int_equal(crdt_doc_encode_state(s.a, &st), 0);
        l = load(8, &st);
        apply(e, &st);
        assert_versions(&s, l, "loaded");
        assert_versions(&s, e, "state applied");
        crdt_doc_free(l);
        crdt_doc_free(e);
        crdt_buf_dispose(&st);
    }
    script_free(&s);
}

static void test_doc_text_at_cuts_backspace_run(void **state)
{
    crdt_doc_t *d = new_doc(1), *o = new_doc(2);
    crdt_buf_t sv[6], t;
    static const char *const want[6] = {"abcde",       "abcd", "abc", "x" EMOJI EMOJI "y",
                                        "x" EMOJI "y", "xy"};
    (void)state;
    for (const char *p = "abcdef"; *p; p++) {
        char c[2] = {*p, 0};
        ins(d, crdt_doc_length(d), c);
    }
    for (int i = 0; i < 3; i++) {
        del(d, crdt_doc_length(d) - 1, 1);
        assert_int_equal(crdt_doc_state_vector(d, &sv[i]), 0);
    }
    /* Clear it, then a run of emoji removed by backspaces (two units each)
     * from the middle of the text. */
    del(d, 0, 3);
    ins(d, 0, "x");
    ins(d, 1, EMOJI);
    ins(d, 3, EMOJI);
    ins(d, 5, EMOJI);
    ins(d, 7, "y");
    for (int i = 3; i < 6; i++) {
        del(d, 5 - 2 * (size_t)(i - 3), 2);
        assert_int_equal(crdt_doc_state_vector(d, &sv[i]), 0);
    }
    /* Typing afterwards does not disturb the old versions. */
    ins(d, 1, "more");
    assert_true(has_delrec(d, 3, 1));
    sync_from(o, d);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(crdt_doc_text_at(d, sv[i].base, sv[i].len, &t), 0);
        assert_string_equal((const char *)t.base, want[i]);
        crdt_buf_dispose(&t);
        assert_int_equal(crdt_doc_text_at(o, sv[i].base, sv[i].len, &t), 0);
        assert_string_equal((const char *)t.base, want[i]);
        crdt_buf_dispose(&t);
    }
    for (int i = 0; i < 6; i++)
        crdt_buf_dispose(&sv[i]);
    crdt_doc_free(d);
    crdt_doc_free(o);
}

static void test_doc_text_at_backspace_run_continued_after_reload(void **state)
{
    crdt_doc_t *d = new_doc(1), *peer = new_doc(2), *r;
    crdt_buf_t sv[4], st, t;
    static const char *const want[4] = {"abcde", "abcd", "abc", "ab"};
    (void)state;
    ins(d, 0, "abcdef");
    del(d, 5, 1);
    assert_int_equal(crdt_doc_state_vector(d, &sv[0]), 0);
    del(d, 4, 1);
    assert_int_equal(crdt_doc_state_vector(d, &sv[1]), 0);
    /* Save, quit, reopen as the same replica and keep pressing backspace:
     * the run continues in the loaded delete record. */
    assert_int_equal(crdt_doc_encode_state(d, &st), 0);
    crdt_doc_free(d);
    r = load(1, &st);
    crdt_buf_dispose(&st);
    del(r, 3, 1);
    assert_int_equal(crdt_doc_state_vector(r, &sv[2]), 0);
    del(r, 2, 1);
    assert_int_equal(crdt_doc_state_vector(r, &sv[3]), 0);
    assert_true(has_delrec(r, 4, 1));
    sync_from(peer, r);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(crdt_doc_text_at(r, sv[i].base, sv[i].len, &t), 0);
        assert_string_equal((const char *)t.base, want[i]);
        crdt_buf_dispose(&t);
        assert_int_equal(crdt_doc_text_at(peer, sv[i].base, sv[i].len, &t), 0);
        assert_string_equal((const char *)t.base, want[i]);
        crdt_buf_dispose(&t);
        /* Restoring it on the peer and sending that back. */
        {
            crdt_buf_t u;
            assert_int_equal(crdt_doc_restore(peer, sv[i].base, sv[i].len, &u), 0);
            assert_text(peer, want[i]);
            apply(r, &u);
            crdt_buf_dispose(&u);
            assert_same_doc(r, peer);
        }
    }
    for (int i = 0; i < 4; i++)
        crdt_buf_dispose(&sv[i]);
    crdt_doc_free(r);
    crdt_doc_free(peer);
}

static void test_doc_text_at_empty_version_is_empty_text(void **state)
{
    script_t s;
    crdt_buf_t t;
    uint8_t none = 0;
    (void)state;
    script_run(&s);
    assert_int_equal(crdt_doc_text_at(s.a, NULL, 0, &t), 0);
    assert_int_equal(t.len, 0);
    assert_string_equal((const char *)t.base, "");
    crdt_buf_dispose(&t);
    assert_int_equal(crdt_doc_text_at(s.a, &none, 0, &t), 0);
    assert_int_equal(t.len, 0);
    crdt_buf_dispose(&t);
    /* A state vector listing no clients. */
    {
        bytes_t w;
        make_sv(&w, 0, NULL, NULL);
        assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &t), 0);
        assert_int_equal(t.len, 0);
        crdt_buf_dispose(&t);
    }
    script_free(&s);
}

static void test_doc_restore_each_version(void **state)
{
    script_t s;
    crdt_buf_t st;
    (void)state;
    script_run(&s);
    assert_int_equal(crdt_doc_encode_state(s.a, &st), 0);
    for (int i = 0; i < s.nv; i++) {
        crdt_doc_t *x = load(50, &st), *y = load(51, &st);
        crdt_buf_t u, t;
        int rc = crdt_doc_restore(x, s.v[i].sv.base, s.v[i].sv.len, &u);
        if (rc != 0)
            fail_msg("restore(\"%s\"): %s", s.v[i].what, crdt_strerror(rc));
        assert_int_equal(crdt_doc_check(x), 0);
        assert_int_equal(crdt_doc_text(x, &t), 0);
        if (!same_bytes(&t, &s.v[i].text))
            fail_msg("restore(\"%s\") gives \"%s\", want \"%s\"", s.v[i].what, (const char *)t.base,
                     (const char *)s.v[i].text.base);
        crdt_buf_dispose(&t);
        /* The restore is a forward change: old versions still read back. */
        assert_versions(&s, x, "restored copy");
        apply(y, &u);
        assert_same_doc(x, y);
        crdt_buf_dispose(&u);
        crdt_doc_free(x);
        crdt_doc_free(y);
    }
    crdt_buf_dispose(&st);
    script_free(&s);
}

static void test_doc_restore_in_sequence_on_live_replicas(void **state)
{
    script_t s;
    (void)state;
    script_run(&s);
    /* a restores every version, newest to oldest and back; b and c follow
     * through the updates. */
    for (int k = 0; k < 2 * s.nv; k++) {
        int i = k < s.nv ? s.nv - 1 - k : k - s.nv;
        crdt_buf_t u, t;
        assert_int_equal(crdt_doc_restore(s.a, s.v[i].sv.base, s.v[i].sv.len, &u), 0);
        assert_int_equal(crdt_doc_check(s.a), 0);
        assert_int_equal(crdt_doc_text(s.a, &t), 0);
        if (!same_bytes(&t, &s.v[i].text))
            fail_msg("restore(\"%s\") gives \"%s\", want \"%s\"", s.v[i].what, (const char *)t.base,
                     (const char *)s.v[i].text.base);
        crdt_buf_dispose(&t);
        apply(s.b, &u);
        apply(s.c, &u);
        crdt_buf_dispose(&u);
        assert_same_doc(s.a, s.b);
        assert_same_doc(s.a, s.c);
    }
    assert_versions(&s, s.a, "a after restores");
    assert_versions(&s, s.b, "b after restores");
    script_free(&s);
}

static void test_doc_restore_current_version_is_noop(void **state)
{
    script_t s;
    (void)state;
    script_run(&s);
    for (int who = 0; who < 3; who++) {
        crdt_doc_t *d = who == 0 ? s.a : who == 1 ? s.b : s.c;
        crdt_doc_t *e = new_doc(70);
        crdt_buf_t sv, u, esv;
        look_t before, ebefore;
        assert_int_equal(crdt_doc_state_vector(d, &sv), 0);
        look_take(d, &before);
        assert_int_equal(crdt_doc_restore(d, sv.base, sv.len, &u), 0);
        assert_unchanged(d, &before);
        /* The update holds no operation: it changes neither a replica that
         * has everything nor an empty one. */
        apply(s.b, &u);
        look_dispose(&before);
        look_take(s.b, &before);
        assert_unchanged(s.b, &before);
        look_take(e, &ebefore);
        apply(e, &u);
        assert_unchanged(e, &ebefore);
        assert_int_equal(crdt_doc_pending(e), 0);
        assert_int_equal(crdt_doc_state_vector(e, &esv), 0);
        assert_int_equal(esv.len, ebefore.sv.len);
        crdt_buf_dispose(&esv);
        crdt_buf_dispose(&u);
        crdt_buf_dispose(&sv);
        look_dispose(&before);
        look_dispose(&ebefore);
        crdt_doc_free(e);
    }
    /* Restoring with a NULL update argument works too. */
    {
        crdt_buf_t sv;
        look_t before;
        assert_int_equal(crdt_doc_state_vector(s.a, &sv), 0);
        look_take(s.a, &before);
        assert_int_equal(crdt_doc_restore(s.a, sv.base, sv.len, NULL), 0);
        assert_unchanged(s.a, &before);
        look_dispose(&before);
        crdt_buf_dispose(&sv);
    }
    script_free(&s);
}

static void test_doc_restore_keeps_concurrent_edits(void **state)
{
    script_t s;
    crdt_buf_t u, t;
    (void)state;
    script_run(&s);
    /* a restores "abcdef typed" while b types "QQ" at its start. */
    assert_int_equal(crdt_doc_restore(s.a, s.v[2].sv.base, s.v[2].sv.len, &u), 0);
    assert_text(s.a, "abcdef");
    ins(s.b, 0, "QQ");
    apply(s.b, &u);
    crdt_buf_dispose(&u);
    sync_from(s.a, s.b);
    assert_same_doc(s.a, s.b);
    assert_int_equal(crdt_doc_text(s.a, &t), 0);
    assert_non_null(strstr((const char *)t.base, "QQ"));
    assert_non_null(strstr((const char *)t.base, "abcdef"));
    crdt_buf_dispose(&t);
    script_free(&s);
}

static void test_doc_text_at_future_version_is_eversion(void **state)
{
    script_t s;
    bytes_t w;
    look_t before;
    (void)state;
    script_run(&s);
    look_take(s.a, &before);
    {
        /* One clock past a's own for client 1, the rest as they are. */
        uint64_t ids[3] = {1, 2, 3}, clocks[3];
        for (int i = 0; i < 3; i++) {
            uint32_t c = crdt__client_find(s.a, ids[i]);
            assert_int_not_equal(c, CRDT__NONE);
            clocks[i] = CLIENT(s.a, c).next_clock;
        }
        for (int i = 0; i < 3; i++) {
            crdt_buf_t out = sentinel;
            clocks[i]++;
            make_sv(&w, 3, ids, clocks);
            assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &out), CRDT_EVERSION);
            assert_sentinel(&out);
            assert_int_equal(crdt_doc_restore(s.a, w.b, w.n, &out), CRDT_EVERSION);
            assert_sentinel(&out);
            clocks[i]--;
        }
        /* A client this document has never heard of. */
        {
            uint64_t ids4[4] = {1, 2, 3, 999}, clocks4[4] = {clocks[0], clocks[1], clocks[2], 1};
            crdt_buf_t out = sentinel;
            make_sv(&w, 4, ids4, clocks4);
            assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &out), CRDT_EVERSION);
            assert_sentinel(&out);
            assert_int_equal(crdt_doc_restore(s.a, w.b, w.n, &out), CRDT_EVERSION);
            assert_sentinel(&out);
            make_sv(&w, 1, &ids4[3], &clocks4[3]);
            assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &out), CRDT_EVERSION);
            assert_int_equal(crdt_doc_restore(s.a, w.b, w.n, NULL), CRDT_EVERSION);
            assert_sentinel(&out);
            /* ... with clock 0 it names nothing: that is fine. */
            clocks4[3] = 0;
            make_sv(&w, 4, ids4, clocks4);
            assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &out), 0);
            assert_true(same_bytes(&out, &before.text));
            crdt_buf_dispose(&out);
        }
    }
    /* An empty document has seen nothing. */
    {
        crdt_doc_t *e = new_doc(77);
        crdt_buf_t out = sentinel;
        assert_int_equal(crdt_doc_text_at(e, s.v[1].sv.base, s.v[1].sv.len, &out), CRDT_EVERSION);
        assert_sentinel(&out);
        crdt_doc_free(e);
    }
    assert_unchanged(s.a, &before);
    look_dispose(&before);
    script_free(&s);
}

static void test_doc_text_at_garbage_is_emalformed(void **state)
{
    script_t s;
    look_t before;
    bytes_t w;
    (void)state;
    script_run(&s);
    look_take(s.a, &before);
    {
        static const uint8_t g0[] = {0x00};
        static const uint8_t g1[] = {0x02};
        static const uint8_t g2[] = {0xff, 0x00};
        static const uint8_t g3[] = {0x01};                               /* no count */
        static const uint8_t g4[] = {0x01, 0x01};                         /* one entry, no bytes */
        static const uint8_t g5[] = {0x01, 0x80};                         /* unterminated count */
        static const uint8_t g6[] = {0x01, 0x01, 1, 0, 0, 0, 0, 0, 0, 0}; /* no clock */
        static const uint8_t g7[] = {0x01, 0x01, 1, 0, 0, 0, 0, 0, 0, 0, 0x83}; /* cut varint */
        static const uint8_t g8[] = {0x01, 0x01, 1,    0,    0,    0,    0,
                                     0,    0,    0,    0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}; /* 11 bytes */
        static const uint8_t g9[] = {0x01, 0x01, 1,    0,    0,    0,    0,   0,
                                     0,    0,    0x80, 0x80, 0x80, 0x80, 0x10}; /* clock 2^32 */
        static const uint8_t g10[] = {0x01, 0xff, 0xff, 0xff, 0xff, 0x0f};      /* huge count */
        const struct {
            const uint8_t *p;
            size_t n;
        } g[] = {{g0, sizeof(g0)}, {g1, sizeof(g1)}, {g2, sizeof(g2)},  {g3, sizeof(g3)},
                 {g4, sizeof(g4)}, {g5, sizeof(g5)}, {g6, sizeof(g6)},  {g7, sizeof(g7)},
                 {g8, sizeof(g8)}, {g9, sizeof(g9)}, {g10, sizeof(g10)}};
        for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
            crdt_buf_t out = sentinel;
            int rc = crdt_doc_text_at(s.a, g[i].p, g[i].n, &out);
            if (rc != CRDT_EMALFORMED)
                fail_msg("garbage %zu: text_at returned %d (%s)", i, rc, crdt_strerror(rc));
            assert_sentinel(&out);
            rc = crdt_doc_restore(s.a, g[i].p, g[i].n, &out);
            if (rc != CRDT_EMALFORMED)
                fail_msg("garbage %zu: restore returned %d (%s)", i, rc, crdt_strerror(rc));
            assert_sentinel(&out);
        }
    }
    /* A valid state vector with a byte after it. */
    {
        crdt_buf_t out = sentinel;
        memcpy(w.b, s.v[3].sv.base, s.v[3].sv.len);
        w.n = s.v[3].sv.len;
        put_u8(&w, 0);
        assert_int_equal(crdt_doc_text_at(s.a, w.b, w.n, &out), CRDT_EMALFORMED);
        assert_int_equal(crdt_doc_restore(s.a, w.b, w.n, &out), CRDT_EMALFORMED);
        assert_sentinel(&out);
        /* Every truncation of it. */
        for (size_t n = 1; n + 1 < w.n; n++) {
            assert_int_equal(crdt_doc_text_at(s.a, w.b, n, &out), CRDT_EMALFORMED);
            assert_int_equal(crdt_doc_restore(s.a, w.b, n, &out), CRDT_EMALFORMED);
        }
        assert_sentinel(&out);
    }
    /* An encoded state is not a version. */
    {
        crdt_buf_t out = sentinel;
        assert_int_equal(crdt_doc_text_at(s.a, s.v[3].state.base, s.v[3].state.len, &out),
                         CRDT_EMALFORMED);
        assert_sentinel(&out);
    }
    /* NULL bytes with a length. */
    {
        crdt_buf_t out = sentinel;
        assert_int_equal(crdt_doc_text_at(s.a, NULL, 3, &out), CRDT_EINVAL);
        assert_int_equal(crdt_doc_restore(s.a, NULL, 3, &out), CRDT_EINVAL);
        assert_sentinel(&out);
    }
    assert_unchanged(s.a, &before);
    look_dispose(&before);
    script_free(&s);
}

static void test_doc_diff_against_recorded_versions(void **state)
{
    script_t s;
    (void)state;
    script_run(&s);
    for (int i = 0; i < s.nv; i++) {
        crdt_doc_t *r = load(60, &s.v[i].state);
        crdt_buf_t sv, d;
        /* The replica loaded from the state recorded with the version is at
         * that version. */
        assert_int_equal(crdt_doc_state_vector(r, &sv), 0);
        assert_true(same_bytes(&sv, &s.v[i].sv));
        crdt_buf_dispose(&sv);
        assert_int_equal(crdt_doc_diff(s.a, s.v[i].sv.base, s.v[i].sv.len, &d), 0);
        apply(r, &d);
        assert_int_equal(crdt_doc_pending(r), 0);
        assert_same_doc(s.a, r);
        /* Again: nothing new. */
        apply(r, &d);
        assert_same_doc(s.a, r);
        crdt_buf_dispose(&d);
        /* From another replica holding everything, too. */
        crdt_doc_free(r);
        r = load(61, &s.v[i].state);
        assert_int_equal(crdt_doc_diff(s.c, s.v[i].sv.base, s.v[i].sv.len, &d), 0);
        apply(r, &d);
        assert_same_doc(s.c, r);
        crdt_buf_dispose(&d);
        crdt_doc_free(r);
    }
    script_free(&s);
}

/* ---- randomized: text_at against a model built from items and delete records -- */

static size_t char_len(uint8_t lead)
{
    return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

static const char *const alphabet[] = {"a", "b", "c", "d", " ", "\xc3\xa9", CJK, EMOJI};

/* UTF-16 index of character k of t, and units of `cnt` characters from there. */
static size_t unit_of_char(const crdt_buf_t *t, size_t k, size_t cnt, size_t *units)
{
    size_t i = 0, u = 0, w = 0;
    while (k-- > 0 && i < t->len) {
        u += char_len(t->base[i]) == 4 ? 2 : 1;
        i += char_len(t->base[i]);
    }
    while (cnt-- > 0 && i < t->len) {
        w += char_len(t->base[i]) == 4 ? 2 : 1;
        i += char_len(t->base[i]);
    }
    if (units)
        *units = w;
    return u;
}

static size_t count_chars(const crdt_buf_t *t)
{
    size_t c = 0;
    for (size_t i = 0; i < t->len; i += char_len(t->base[i]))
        c++;
    return c;
}

static void random_edit(crdt_doc_t *d, rng_t *r)
{
    crdt_buf_t t;
    size_t chars, u, w;
    uint32_t kind = rng_below(r, 10);
    assert_int_equal(crdt_doc_text(d, &t), 0);
    chars = count_chars(&t);
    if (chars > 0 && kind < 3) {
        u = unit_of_char(&t, rng_below(r, (uint32_t)chars), rng_below(r, 6) + 1, &w);
        assert_int_equal(crdt_doc_delete(d, u, w, NULL), 0);
    } else if (kind < 7) {
        char s[33] = "";
        for (uint32_t j = rng_below(r, 6) + 1; j > 0; j--)
            strcat(s, alphabet[rng_below(r, 8)]);
        u = unit_of_char(&t, rng_below(r, (uint32_t)chars + 1), 0, NULL);
        assert_int_equal(crdt_doc_insert(d, u, s, strlen(s), NULL), 0);
    } else {
        /* Typing, then backspaces or Delete presses. */
        uint32_t typed = rng_below(r, 6) + 2, gone = rng_below(r, typed + 1);
        size_t at = unit_of_char(&t, rng_below(r, (uint32_t)chars + 1), 0, NULL), start = at;
        size_t widths[8];
        for (uint32_t j = 0; j < typed; j++) {
            const char *c = alphabet[rng_below(r, 8)];
            assert_int_equal(crdt_doc_insert(d, at, c, strlen(c), NULL), 0);
            widths[j] = strlen(c) == 4 ? 2 : 1;
            at += widths[j];
        }
        if (kind == 9) {
            for (uint32_t j = 0; j < gone; j++)
                assert_int_equal(crdt_doc_delete(d, start, widths[j], NULL), 0);
        } else {
            for (uint32_t j = 0; j < gone; j++) {
                at -= widths[typed - 1 - j];
                assert_int_equal(crdt_doc_delete(d, at, widths[typed - 1 - j], NULL), 0);
            }
        }
    }
    crdt_buf_dispose(&t);
}

/*
 * The text at version v[] (per local client) from the definition: walk the
 * items in document order and keep each character inserted inside the version
 * that no delete operation inside the version deletes.
 */
static void model_text_at(const crdt_doc_t *d, const uint32_t *v, crdt_buf_t *out)
{
    uint32_t nc = d->clients.len;
    bool **gone = calloc(nc, sizeof(bool *));
    size_t cap = 64;
    assert_non_null(gone);
    for (uint32_t c = 0; c < nc; c++) {
        gone[c] = calloc(CLIENT(d, c).next_clock + 1, sizeof(bool));
        assert_non_null(gone[c]);
    }
    for (uint32_t c = 0; c < nc; c++) {
        for (uint32_t i = 0; i < CLIENT(d, c).dels.len; i++) {
            const crdt__delrec_t *r = &DELREC(d, c, i);
            for (uint32_t k = 0; k < r->len; k++)
                if (r->clock + k < v[c])
                    gone[r->tclient][r->backward ? r->tlo + r->len - 1 - k : r->tlo + k] = true;
        }
    }
    out->base = malloc(cap);
    out->len = 0;
    assert_non_null(out->base);
    for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(d, l).next) {
        const crdt__seq_leaf_t *leaf = &SEQ_LEAF(d, l);
        for (uint32_t i = 0; i < leaf->n; i++) {
            const crdt__item_t *x = &ITEM(d, leaf->items[i]);
            const uint8_t *p = crdt__item_text(d, x);
            for (uint32_t k = 0, b = 0; k < x->len; k++) {
                size_t n = char_len(p[b]);
                if (x->clock + k < v[x->client] && !gone[x->client][x->clock + k]) {
                    if (out->len + n + 1 > cap) {
                        cap *= 2;
                        out->base = realloc(out->base, cap);
                        assert_non_null(out->base);
                    }
                    memcpy(out->base + out->len, p + b, n);
                    out->len += n;
                }
                b += (uint32_t)n;
            }
        }
    }
    out->base[out->len] = 0;
    for (uint32_t c = 0; c < nc; c++)
        free(gone[c]);
    free(gone);
}

static void test_doc_text_at_random_versions_match_model(void **state)
{
    (void)state;
    for (uint64_t seed = 0xa0; seed < 0xa4; seed++) {
        crdt_doc_t *d[4];
        rng_t r;
        rng_init(&r, seed);
        for (int i = 0; i < 4; i++)
            d[i] = new_doc(40 + (uint64_t)i);
        for (int step = 0; step < 300; step++) {
            int i = (int)rng_below(&r, 4), j = (int)rng_below(&r, 4);
            random_edit(d[i], &r);
            if (rng_below(&r, 8) == 0 && i != j) {
                /* Two replicas in step delete the same range concurrently. */
                crdt_buf_t t;
                size_t u, w;
                sync_from(d[j], d[i]);
                sync_from(d[i], d[j]);
                assert_int_equal(crdt_doc_text(d[i], &t), 0);
                if (count_chars(&t) > 0) {
                    u = unit_of_char(&t, rng_below(&r, (uint32_t)count_chars(&t)), 3, &w);
                    assert_int_equal(crdt_doc_delete(d[i], u, w, NULL), 0);
                    assert_int_equal(crdt_doc_delete(d[j], u, w, NULL), 0);
                }
                crdt_buf_dispose(&t);
            } else if (rng_below(&r, 3) == 0 && i != j) {
                sync_from(d[j], d[i]);
            }
        }
        for (int i = 1; i < 4; i++)
            sync_from(d[0], d[i]);
        assert_int_equal(crdt_doc_check(d[0]), 0);
        {
            crdt_doc_t *x = d[0];
            uint32_t nc = x->clients.len;
            uint32_t *v = calloc(nc, sizeof(uint32_t));
            uint64_t *ids = calloc(nc, sizeof(uint64_t)), *clocks = calloc(nc, sizeof(uint64_t));
            assert_non_null(v);
            assert_non_null(ids);
            assert_non_null(clocks);
            for (int k = 0; k < 400; k++) {
                bytes_t w;
                crdt_buf_t got, want;
                int rc;
                for (uint32_t c = 0; c < nc; c++) {
                    uint32_t top = CLIENT(x, c).next_clock;
                    /* Mostly uniform; sometimes all or nothing. */
                    uint32_t mode = rng_below(&r, 6);
                    v[c] = mode == 0 ? 0 : mode == 1 ? top : rng_below(&r, top + 1);
                    ids[c] = CLIENT(x, c).id;
                    clocks[c] = v[c];
                }
                make_sv(&w, nc, ids, clocks);
                rc = crdt_doc_text_at(x, w.b, w.n, &got);
                if (rc != 0)
                    fail_msg("seed %#llx, version %d: text_at: %s", (unsigned long long)seed, k,
                             crdt_strerror(rc));
                model_text_at(x, v, &want);
                if (got.len != want.len || memcmp(got.base, want.base, got.len) != 0)
                    fail_msg("seed %#llx, version %d: text_at gives\n  \"%s\", model\n  \"%s\"",
                             (unsigned long long)seed, k, (const char *)got.base,
                             (const char *)want.base);
                crdt_buf_dispose(&got);
                /* Restore to some of them (on a copy) gives the same text. */
                if (k % 40 == 0) {
                    crdt_buf_t st, u, t;
                    crdt_doc_t *y, *z;
                    assert_int_equal(crdt_doc_encode_state(x, &st), 0);
                    y = load(90, &st);
                    z = load(91, &st);
                    assert_int_equal(crdt_doc_restore(y, w.b, w.n, &u), 0);
                    assert_int_equal(crdt_doc_check(y), 0);
                    assert_int_equal(crdt_doc_text(y, &t), 0);
                    if (t.len != want.len || memcmp(t.base, want.base, t.len) != 0)
                        fail_msg("seed %#llx, version %d: restore gives\n  \"%s\", want\n  \"%s\"",
                                 (unsigned long long)seed, k, (const char *)t.base,
                                 (const char *)want.base);
                    apply(z, &u);
                    assert_same_doc(y, z);
                    crdt_buf_dispose(&t);
                    crdt_buf_dispose(&u);
                    crdt_buf_dispose(&st);
                    crdt_doc_free(y);
                    crdt_doc_free(z);
                }
                free(want.base);
            }
            free(v);
            free(ids);
            free(clocks);
        }
        for (int i = 0; i < 4; i++)
            crdt_doc_free(d[i]);
    }
}

/* ---- crdt_doc_compare ------------------------------------------------------------ */

/* Spans gathered by a comparison: the texts each pair of kinds spells. */
typedef struct {
    crdt_buf_t to_text;   /* kept + inserted */
    crdt_buf_t from_text; /* kept + deleted */
    size_t nspans, units;
    int last_kind;
    uint64_t last_author;
    uint64_t authors[4]; /* replica ids allowed as authors */
    int stop_after;      /* return 7 from the callback at this span (0: never) */
    int bad;             /* a rule was broken: which */
} spans_t;

/* UTF-16 units of valid UTF-8 bytes. */
static size_t units_of(const char *p, size_t n)
{
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c & 0xc0) != 0x80)
            u += c >= 0xf0 ? 2 : 1;
    }
    return u;
}

static void grow_append(crdt_buf_t *b, const char *p, size_t n)
{
    uint8_t *nb = realloc(b->base, b->len + n + 1);
    assert_non_null(nb);
    memcpy(nb + b->len, p, n);
    b->base = nb;
    b->len += n;
    b->base[b->len] = 0;
}

static int collect_span(void *ctx, const crdt_span_t *sp)
{
    spans_t *s = ctx;
    bool known = sp->author == 0 && sp->kind == CRDT_SPAN_DELETED;
    for (int i = 0; i < 4; i++)
        known |= sp->author == s->authors[i];
    if (!known)
        s->bad = 1;
    if (sp->len == 0 || sp->units != units_of(sp->text, sp->len))
        s->bad = 2;
    if (s->nspans > 0 && sp->kind == s->last_kind && sp->author == s->last_author)
        s->bad = 3; /* neighbours of one kind and author are merged */
    if (sp->kind != CRDT_SPAN_DELETED)
        grow_append(&s->to_text, sp->text, sp->len);
    if (sp->kind != CRDT_SPAN_INSERTED)
        grow_append(&s->from_text, sp->text, sp->len);
    s->units += sp->units;
    s->last_kind = sp->kind;
    s->last_author = sp->author;
    s->nspans++;
    return s->stop_after != 0 && (int)s->nspans == s->stop_after ? 7 : 0;
}

static void spans_dispose(spans_t *s)
{
    free(s->to_text.base);
    free(s->from_text.base);
}

static void assert_spell(const crdt_buf_t *got, const crdt_buf_t *want, const char *what)
{
    size_t n = got->base ? got->len : 0;
    if (n != want->len || (n && memcmp(got->base, want->base, n) != 0))
        fail_msg("%s: spans spell\n  \"%s\", want\n  \"%s\"", what,
                 got->base ? (const char *)got->base : "", (const char *)want->base);
}

/* Who deleted what and who typed what, between two versions of a shared
 * document: kept, inserted and deleted spans with their authors. */
static void test_doc_compare_names_authors_of_changes(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t v1;
    spans_t s;
    (void)state;
    ins(a, 0, "hello");
    sync_from(b, a);
    assert_int_equal(crdt_doc_state_vector(a, &v1), 0);
    ins(b, 5, " world");
    sync_from(a, b);
    del(a, 2, 3); /* "llo" */
    memset(&s, 0, sizeof(s));
    s.authors[0] = 1;
    s.authors[1] = 2;
    assert_int_equal(crdt_doc_compare(a, v1.base, v1.len, NULL, 0, collect_span, &s), 0);
    assert_int_equal(s.bad, 0);
    assert_int_equal(s.nspans, 3);
    assert_string_equal((const char *)s.to_text.base, "he world");
    assert_string_equal((const char *)s.from_text.base, "hello");
    spans_dispose(&s);

    /* Spans one by one: kept "he" (1), deleted "llo" by 1, inserted " world" (2). */
    {
        struct want {
            int kind;
            uint64_t author;
            const char *text;
        } w[] = {{CRDT_SPAN_KEPT, 1, "he"},
                 {CRDT_SPAN_DELETED, 1, "llo"},
                 {CRDT_SPAN_INSERTED, 2, " world"}};
        for (int k = 0; k < 3; k++) {
            memset(&s, 0, sizeof(s));
            s.authors[0] = 1;
            s.authors[1] = 2;
            s.stop_after = k + 1;
            assert_int_equal(crdt_doc_compare(a, v1.base, v1.len, NULL, 0, collect_span, &s), 7);
            assert_int_equal(s.nspans, k + 1);
            assert_int_equal(s.last_kind, w[k].kind);
            assert_int_equal(s.last_author, w[k].author);
            spans_dispose(&s);
        }
    }

    /* Attribution of today's text: from the empty version. */
    memset(&s, 0, sizeof(s));
    s.authors[0] = 1;
    s.authors[1] = 2;
    assert_int_equal(crdt_doc_compare(a, NULL, 0, NULL, 0, collect_span, &s), 0);
    assert_int_equal(s.nspans, 2);
    assert_string_equal((const char *)s.to_text.base, "he world");
    assert_int_equal(s.units, 8);
    spans_dispose(&s);

    /* Errors: garbage and a version ahead of the document. */
    {
        static const uint8_t junk[] = {0xff, 0xff, 0xff};
        crdt_buf_t vb;
        memset(&s, 0, sizeof(s));
        assert_int_equal(crdt_doc_compare(a, junk, sizeof(junk), NULL, 0, collect_span, &s),
                         CRDT_EMALFORMED);
        assert_int_equal(crdt_doc_state_vector(a, &vb), 0);
        ins(a, 0, "x");
        assert_int_equal(crdt_doc_compare(b, vb.base, vb.len, NULL, 0, collect_span, &s),
                         CRDT_EVERSION);
        assert_int_equal(s.nspans, 0);
        assert_int_equal(crdt_doc_compare(a, NULL, 0, NULL, 0, NULL, NULL), CRDT_EINVAL);
        crdt_buf_dispose(&vb);
    }
    crdt_buf_dispose(&v1);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* Random sessions of four replicas: for random pairs of versions (ordered or
 * not), kept + inserted spans spell text_at(to) and kept + deleted spans spell
 * text_at(from); every author is one of the replicas. */
static void test_doc_compare_random_versions_spell_both_texts(void **state)
{
    (void)state;
    for (uint64_t seed = 0xc0; seed < 0xc3; seed++) {
        crdt_doc_t *d[4];
        rng_t r;
        rng_init(&r, seed);
        for (int i = 0; i < 4; i++)
            d[i] = new_doc(60 + (uint64_t)i);
        for (int step = 0; step < 250; step++) {
            int i = (int)rng_below(&r, 4), j = (int)rng_below(&r, 4);
            random_edit(d[i], &r);
            if (rng_below(&r, 3) == 0 && i != j)
                sync_from(d[j], d[i]);
        }
        for (int i = 1; i < 4; i++)
            sync_from(d[0], d[i]);
        {
            crdt_doc_t *x = d[0];
            uint32_t nc = x->clients.len;
            uint64_t *ids = calloc(nc, sizeof(uint64_t)), *clocks = calloc(nc, sizeof(uint64_t));
            assert_non_null(ids);
            assert_non_null(clocks);
            for (int k = 0; k < 150; k++) {
                bytes_t v[2];
                crdt_buf_t t[2];
                spans_t s;
                int rc;
                for (int e = 0; e < 2; e++) {
                    for (uint32_t c = 0; c < nc; c++) {
                        uint32_t top = CLIENT(x, c).next_clock;
                        uint32_t mode = rng_below(&r, 5);
                        ids[c] = CLIENT(x, c).id;
                        clocks[c] = mode == 0 ? 0 : mode == 1 ? top : rng_below(&r, top + 1);
                    }
                    make_sv(&v[e], nc, ids, clocks);
                    assert_int_equal(crdt_doc_text_at(x, v[e].b, v[e].n, &t[e]), 0);
                }
                memset(&s, 0, sizeof(s));
                for (int q = 0; q < 4; q++)
                    s.authors[q] = 60 + (uint64_t)q;
                rc = crdt_doc_compare(x, v[0].b, v[0].n, v[1].b, v[1].n, collect_span, &s);
                if (rc != 0 || s.bad)
                    fail_msg("seed %#llx, pair %d: compare %s, rule %d", (unsigned long long)seed,
                             k, crdt_strerror(rc), s.bad);
                assert_spell(&s.from_text, &t[0], "from");
                assert_spell(&s.to_text, &t[1], "to");
                spans_dispose(&s);
                crdt_buf_dispose(&t[0]);
                crdt_buf_dispose(&t[1]);
            }
            free(ids);
            free(clocks);
        }
        for (int i = 0; i < 4; i++)
            crdt_doc_free(d[i]);
    }
}

static void test_doc_restore_out_of_memory_leaves_document_unchanged(void **state)
{
    script_t s;
    look_t before;
    (void)state;
    script_run(&s);
    look_take(s.a, &before);
    for (long n = 0;; n++) {
        crdt_buf_t u = sentinel;
        size_t f = ta.failures;
        int rc;
        test_alloc_fail_after(&ta, n);
        rc = crdt_doc_restore(s.a, s.v[5].sv.base, s.v[5].sv.len, &u);
        test_alloc_fail_after(&ta, -1);
        if (ta.failures == f) {
            assert_int_equal(rc, 0);
            crdt_buf_dispose(&u);
            break;
        }
        if (rc != CRDT_ENOMEM)
            fail_msg("restore with allocation %ld failing returned %d (%s)", n, rc,
                     crdt_strerror(rc));
        assert_sentinel(&u);
        assert_unchanged(s.a, &before);
    }
    assert_text(s.a, (const char *)s.v[5].text.base);
    /* text_at under failing allocations: ENOMEM, output untouched. */
    for (long n = 0;; n++) {
        crdt_buf_t t = sentinel;
        size_t f = ta.failures;
        int rc;
        test_alloc_fail_after(&ta, n);
        rc = crdt_doc_text_at(s.a, s.v[9].sv.base, s.v[9].sv.len, &t);
        test_alloc_fail_after(&ta, -1);
        if (ta.failures == f) {
            assert_int_equal(rc, 0);
            assert_true(same_bytes(&t, &s.v[9].text));
            crdt_buf_dispose(&t);
            break;
        }
        assert_int_equal(rc, CRDT_ENOMEM);
        assert_sentinel(&t);
    }
    look_dispose(&before);
    script_free(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_doc_text_at_scripted_versions),
        T(test_doc_text_at_cuts_backspace_run),
        T(test_doc_text_at_backspace_run_continued_after_reload),
        T(test_doc_text_at_empty_version_is_empty_text),
        T(test_doc_restore_each_version),
        T(test_doc_restore_in_sequence_on_live_replicas),
        T(test_doc_restore_current_version_is_noop),
        T(test_doc_restore_keeps_concurrent_edits),
        T(test_doc_text_at_future_version_is_eversion),
        T(test_doc_text_at_garbage_is_emalformed),
        T(test_doc_diff_against_recorded_versions),
        T(test_doc_text_at_random_versions_match_model),
        T(test_doc_restore_out_of_memory_leaves_document_unchanged),
        T(test_doc_compare_names_authors_of_changes),
        T(test_doc_compare_random_versions_spell_both_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
