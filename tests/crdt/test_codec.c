/* SPDX-License-Identifier: MIT */
/*
 * test_codec.c: the update decoder seen through crdt_doc_apply_update(), which
 * must treat its input as hostile. Empty input, a wrong format version, every
 * truncation of valid updates and every single-byte mutation of small valid
 * updates either apply or fail with the document exactly as it was (text, state
 * vector, encoded state and pending count compared before and after); huge
 * declared counts are refused without large allocations (the test allocator's
 * peak is watched); an operation kind of a newer format gives CRDT_EFORMAT and
 * operations referring to deletions give CRDT_EINVALID. Hand-made updates are
 * written in the formats of docs/update-format.md. Hostile updates that the
 * engine accepts (references to later clocks of their own client, also through
 * a repeated client-table entry or an encoded state; conflicting histories of
 * one client) must not stop the document from merging later updates, nor make
 * merging lose idempotence. Also round trips: a diff against an empty state
 * vector rebuilds the document like the encoded state does, diffs against
 * partial state vectors, crdt_doc_load() of encoded states, and malformed state
 * vectors.
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
#include "test_alloc.h"
#include "testutil.h"

#define EMOJI "\xf0\x9f\x98\x80"

/* Format 1 operation heads. */
#define OP_INSERT 0x00
#define OP_DELETE 0x01
#define F_LEFT 0x08
#define F_LEFT_SAME 0x10
#define F_RIGHT 0x20
#define F_RIGHT_SAME 0x40
#define F_ASCII 0x80
#define F_BACKWARD 0x08
#define F_TARGET_SAME 0x10

#define ID_A 0xa1a1a1a1a1a1a1a1ULL
#define ID_B 0xb2ULL
#define ID_C 0xc3c3ULL
#define ID_X 0x5858585858ULL /* a client the fixture has never seen */

static crdt_doc_t *new_doc(uint64_t client, const crdt_alloc_t *alloc)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_new(client, alloc, &doc), 0);
    return doc;
}

static void apply_ok(crdt_doc_t *doc, const uint8_t *p, size_t n)
{
    int rc = crdt_doc_apply_update(doc, p, n);
    if (rc != 0)
        fail_msg("apply_update: %s", crdt_strerror(rc));
    assert_check(doc);
}

static void sync_to(crdt_doc_t *b, const crdt_doc_t *a)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(b, &sv), 0);
    assert_int_equal(crdt_doc_diff(a, sv.base, sv.len, &d), 0);
    apply_ok(b, d.base, d.len);
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
}

static int is_rejection(int rc)
{
    return rc == CRDT_EMALFORMED || rc == CRDT_EFORMAT || rc == CRDT_ELIMIT || rc == CRDT_EINVALID;
}

/* ---- fixture ---------------------------------------------------------------------- */

/*
 * Three clients edit one text: A writes, B and C insert into A's runs (also
 * non-ASCII), A deletes across runs and backspaces. `base` is the encoded state
 * before the last round of edits; the updates of that round are kept one by one
 * and are valid on `base`:
 *   ins  - C inserts "hé😀" inside one of B's runs (both origins are B's)
 *   del  - A deletes a range across runs of all three clients (several operations)
 *   bksp - A backspaces three characters (one backward delete run, made by diff)
 *   held - B types after text whose update the fixture document has not seen, so
 *          applying it to `base` leaves operations pending
 *   state - the encoded state of everything
 */
typedef struct {
    crdt_buf_t base, ins, del, bksp, held, held_dep, state;
} fixture_t;

static void fixture_make(fixture_t *f)
{
    crdt_doc_t *a = new_doc(ID_A, NULL), *b = new_doc(ID_B, NULL), *c = new_doc(ID_C, NULL);
    crdt_buf_t sv;
    memset(f, 0, sizeof(*f));
    assert_int_equal(crdt_doc_insert(a, 0, "The quick brown fox", 19, NULL), 0);
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(b, 4, "very ", 5, NULL), 0);
    assert_int_equal(crdt_doc_insert(b, 0, "\xc2\xbb ", 3, NULL), 0);
    sync_to(c, b);
    assert_int_equal(crdt_doc_insert(c, 11, "\xe4\xb8\xad", 3, NULL), 0);
    sync_to(a, c);
    sync_to(b, a);
    assert_int_equal(crdt_doc_delete(a, 20, 3, NULL), 0);
    sync_to(b, a);
    sync_to(c, a);
    assert_int_equal(crdt_doc_encode_state(a, &f->base), 0);
    /* The last round, each edit made on a replica holding exactly `base`. */
    assert_int_equal(crdt_doc_insert(c, 8, "h\xc3\xa9" EMOJI, 7, &f->ins), 0);
    assert_int_equal(crdt_doc_delete(a, 1, 14, &f->del), 0);
    assert_int_equal(crdt_doc_state_vector(a, &sv), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(crdt_doc_delete(a, crdt_doc_length(a) - 1 - (size_t)i, 1, NULL), 0);
    assert_int_equal(crdt_doc_diff(a, sv.base, sv.len, &f->bksp), 0);
    crdt_buf_dispose(&sv);
    assert_int_equal(crdt_doc_insert(b, crdt_doc_length(b), "!", 1, &f->held_dep), 0);
    assert_int_equal(crdt_doc_insert(b, crdt_doc_length(b), "?" EMOJI, 5, &f->held), 0);
    sync_to(a, b);
    sync_to(a, c);
    assert_int_equal(crdt_doc_encode_state(a, &f->state), 0);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
}

static void fixture_dispose(fixture_t *f)
{
    crdt_buf_dispose(&f->base);
    crdt_buf_dispose(&f->ins);
    crdt_buf_dispose(&f->del);
    crdt_buf_dispose(&f->bksp);
    crdt_buf_dispose(&f->held);
    crdt_buf_dispose(&f->held_dep);
    crdt_buf_dispose(&f->state);
}

/* A document holding `base` and the held operations of `held`. */
static crdt_doc_t *fixture_doc(const fixture_t *f, const crdt_alloc_t *alloc)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_load(0x77, alloc, f->base.base, f->base.len, &doc), 0);
    assert_int_equal(crdt_doc_apply_update(doc, f->held.base, f->held.len), 0);
    assert_true(crdt_doc_pending(doc) > 0);
    assert_check(doc);
    return doc;
}

static void test_apply_update_fixture_updates_apply(void **state)
{
    fixture_t f;
    crdt_doc_t *doc, *full = NULL;
    char *want;
    (void)state;
    fixture_make(&f);
    doc = fixture_doc(&f, NULL);
    apply_ok(doc, f.ins.base, f.ins.len);
    apply_ok(doc, f.del.base, f.del.len);
    apply_ok(doc, f.bksp.base, f.bksp.len);
    assert_true(crdt_doc_pending(doc) > 0);
    apply_ok(doc, f.held_dep.base, f.held_dep.len);
    assert_int_equal(crdt_doc_pending(doc), 0);
    assert_int_equal(crdt_doc_load(5, NULL, f.state.base, f.state.len, &full), 0);
    want = doc_text(full);
    assert_text(doc, want);
    free(want);
    crdt_doc_free(full);
    crdt_doc_free(doc);
    fixture_dispose(&f);
}

/* ---- simple rejections --------------------------------------------------------------- */

static void test_apply_update_empty_input_emalformed(void **state)
{
    fixture_t f;
    crdt_doc_t *doc;
    snap_t s;
    uint8_t byte = 0;
    (void)state;
    fixture_make(&f);
    doc = fixture_doc(&f, NULL);
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_apply_update(doc, &byte, 0), CRDT_EMALFORMED);
    assert_int_equal(crdt_doc_apply_update(doc, NULL, 0), CRDT_EMALFORMED);
    assert_int_equal(crdt_doc_apply_update(doc, NULL, 5), CRDT_EINVAL);
    assert_int_equal(crdt_doc_apply_update(NULL, f.ins.base, f.ins.len), CRDT_EINVAL);
    assert_unchanged(doc, &s);
    snap_dispose(&s);
    crdt_doc_free(doc);
    fixture_dispose(&f);
}

static void test_apply_update_wrong_version_eformat(void **state)
{
    /* 1 is the update format; 2 is taken by encoded states. */
    static const uint8_t versions[] = {0x00, 0x03, 0x04, 0x7f, 0x80, 0xff};
    fixture_t f;
    crdt_doc_t *doc, *fresh = NULL, *keep = (crdt_doc_t *)&f;
    snap_t s;
    (void)state;
    fixture_make(&f);
    doc = fixture_doc(&f, NULL);
    snap_take(doc, &s);
    for (size_t i = 0; i < sizeof(versions); i++) {
        const crdt_buf_t *u[] = {&f.ins, &f.del, &f.state};
        for (size_t k = 0; k < 3; k++) {
            uint8_t *copy = malloc(u[k]->len);
            assert_non_null(copy);
            memcpy(copy, u[k]->base, u[k]->len);
            copy[0] = versions[i];
            assert_int_equal(crdt_doc_apply_update(doc, copy, u[k]->len), CRDT_EFORMAT);
            fresh = keep;
            assert_int_equal(crdt_doc_load(9, NULL, copy, u[k]->len, &fresh), CRDT_EFORMAT);
            assert_ptr_equal(fresh, keep);
            free(copy);
        }
        /* The version byte alone. */
        assert_int_equal(crdt_doc_apply_update(doc, &versions[i], 1), CRDT_EFORMAT);
    }
    assert_unchanged(doc, &s);
    snap_dispose(&s);
    crdt_doc_free(doc);
    fixture_dispose(&f);
}

/* Every strict prefix of a valid update is malformed and changes nothing, on a
 * fresh document and on one with held operations. */
static void test_apply_update_truncated_every_length_emalformed(void **state)
{
    fixture_t f;
    crdt_doc_t *docs[2];
    snap_t snaps[2];
    (void)state;
    fixture_make(&f);
    docs[0] = new_doc(3, NULL);
    docs[1] = fixture_doc(&f, NULL);
    for (int d = 0; d < 2; d++)
        snap_take(docs[d], &snaps[d]);
    {
        const crdt_buf_t *u[] = {&f.ins, &f.del, &f.bksp, &f.held, &f.state, &f.base};
        const char *names[] = {"ins", "del", "bksp", "held", "state", "base"};
        for (size_t k = 0; k < sizeof(u) / sizeof(u[0]); k++) {
            for (size_t len = 0; len < u[k]->len; len++) {
                /* A private copy, so reading past `len` is caught by ASan. */
                uint8_t *copy = malloc(len ? len : 1);
                assert_non_null(copy);
                memcpy(copy, u[k]->base, len);
                for (int d = 0; d < 2; d++) {
                    int rc = crdt_doc_apply_update(docs[d], copy, len);
                    const char *what;
                    if (rc != CRDT_EMALFORMED)
                        fail_msg("%s truncated to %zu of %zu bytes: apply returned %d (%s)",
                                 names[k], len, u[k]->len, rc, crdt_strerror(rc));
                    what = snap_diff(docs[d], &snaps[d]);
                    if (what)
                        fail_msg("%s truncated to %zu bytes: %s", names[k], len, what);
                }
                free(copy);
            }
        }
    }
    for (int d = 0; d < 2; d++) {
        snap_dispose(&snaps[d]);
        crdt_doc_free(docs[d]);
    }
    fixture_dispose(&f);
}

/*
 * Replaces byte `pos` of update `u` by every other value (or by a fixed set of
 * interesting values when `all` is 0) and applies each to a fresh fixture
 * document: either the update applies (the document passes its check, applying
 * it again changes nothing, and its encoded state loads to the same text) or it
 * is rejected with a documented code and the document is unchanged.
 */
static void mutate_and_apply(const fixture_t *f, const char *name, const crdt_buf_t *u, int all,
                             size_t *applied, size_t *rejected)
{
    crdt_doc_t *tmpl = fixture_doc(f, NULL);
    snap_t s;
    uint8_t *copy = malloc(u->len);
    assert_non_null(copy);
    snap_take(tmpl, &s);
    for (size_t pos = 0; pos < u->len; pos++) {
        uint8_t orig = u->base[pos];
        uint8_t vals[256];
        size_t nv = 0;
        if (all) {
            for (unsigned v = 0; v < 256; v++)
                if (v != orig)
                    vals[nv++] = (uint8_t)v;
        } else {
            static const uint8_t fixed[] = {0x00, 0x01, 0x02, 0x07, 0x3f, 0x7f,
                                            0x80, 0x81, 0xc0, 0xf0, 0xfe, 0xff};
            for (size_t i = 0; i < sizeof(fixed); i++)
                vals[nv++] = fixed[i];
            vals[nv++] = (uint8_t)(orig + 1);
            vals[nv++] = (uint8_t)(orig - 1);
            vals[nv++] = orig ^ 0x80;
            vals[nv++] = orig ^ 0x08;
            vals[nv++] = orig ^ 0x10;
        }
        for (size_t i = 0; i < nv; i++) {
            crdt_doc_t *doc = NULL;
            int rc;
            if (vals[i] == orig)
                continue;
            memcpy(copy, u->base, u->len);
            copy[pos] = vals[i];
            assert_int_equal(crdt_doc_load(0x77, NULL, f->base.base, f->base.len, &doc), 0);
            assert_int_equal(crdt_doc_apply_update(doc, f->held.base, f->held.len), 0);
            rc = crdt_doc_apply_update(doc, copy, u->len);
            if (rc == 0) {
                snap_t after;
                const char *what;
                crdt_doc_t *loaded = NULL;
                if (crdt_doc_check(doc) != 0)
                    fail_msg("%s byte %zu = 0x%02x: applied, then crdt_doc_check failed", name, pos,
                             vals[i]);
                snap_take(doc, &after);
                rc = crdt_doc_apply_update(doc, copy, u->len);
                if (rc != 0)
                    fail_msg("%s byte %zu = 0x%02x: applied once, then refused: %s", name, pos,
                             vals[i], crdt_strerror(rc));
                what = snap_diff(doc, &after);
                if (what)
                    fail_msg("%s byte %zu = 0x%02x: applying it twice: %s", name, pos, vals[i],
                             what);
                rc = crdt_doc_load(0x78, NULL, after.state.base, after.state.len, &loaded);
                if (rc != 0)
                    fail_msg("%s byte %zu = 0x%02x: its encoded state does not load: %s", name, pos,
                             vals[i], crdt_strerror(rc));
                {
                    char *t = doc_text(loaded);
                    if (strcmp(t, (const char *)after.text.base) != 0)
                        fail_msg("%s byte %zu = 0x%02x: loaded copy has another text", name, pos,
                                 vals[i]);
                    free(t);
                }
                crdt_doc_free(loaded);
                snap_dispose(&after);
                (*applied)++;
            } else {
                const char *what;
                if (!is_rejection(rc))
                    fail_msg("%s byte %zu = 0x%02x: unexpected error %d (%s)", name, pos, vals[i],
                             rc, crdt_strerror(rc));
                what = snap_diff(doc, &s);
                if (what)
                    fail_msg("%s byte %zu = 0x%02x: rejected (%s) but %s", name, pos, vals[i],
                             crdt_strerror(rc), what);
                (*rejected)++;
            }
            crdt_doc_free(doc);
        }
    }
    free(copy);
    snap_dispose(&s);
    crdt_doc_free(tmpl);
}

static void test_apply_update_single_byte_mutations(void **state)
{
    fixture_t f;
    size_t applied = 0, rejected = 0;
    (void)state;
    fixture_make(&f);
    mutate_and_apply(&f, "ins", &f.ins, 1, &applied, &rejected);
    mutate_and_apply(&f, "del", &f.del, 1, &applied, &rejected);
    mutate_and_apply(&f, "bksp", &f.bksp, 1, &applied, &rejected);
    mutate_and_apply(&f, "held_dep", &f.held_dep, 1, &applied, &rejected);
    mutate_and_apply(&f, "state", &f.state, 0, &applied, &rejected);
    print_message("%zu mutated updates applied, %zu rejected\n", applied, rejected);
    assert_true(applied > 0 && rejected > 0);
    fixture_dispose(&f);
}

/* ---- hand-made updates ------------------------------------------------------------------ */

static void upd_begin(bytes_t *w, const uint64_t *ids, size_t nids, uint64_t nblocks)
{
    memset(w, 0, sizeof(*w));
    put_u8(w, 1);
    put_varint(w, nids);
    for (size_t i = 0; i < nids; i++)
        put_u64(w, ids[i]);
    put_varint(w, nblocks);
}

static void upd_block(bytes_t *w, uint64_t client_ref, uint64_t clock, uint64_t nops)
{
    put_varint(w, client_ref);
    put_varint(w, clock);
    put_varint(w, nops);
}

/* An ASCII insert with origins given as (ref, clock); ref < 0 means none. */
static void upd_insert(bytes_t *w, int lref, uint32_t lclock, int rref, uint32_t rclock,
                       const char *text)
{
    uint8_t head = OP_INSERT | F_ASCII;
    if (lref >= 0)
        head |= F_LEFT;
    if (rref >= 0)
        head |= F_RIGHT;
    put_u8(w, head);
    if (lref >= 0) {
        put_varint(w, (uint64_t)lref);
        put_varint(w, lclock);
    }
    if (rref >= 0) {
        put_varint(w, (uint64_t)rref);
        put_varint(w, rclock);
    }
    put_varint(w, strlen(text));
    put_raw(w, text, strlen(text));
}

static void upd_delete(bytes_t *w, uint32_t len, uint64_t tref, uint32_t tlo)
{
    put_u8(w, OP_DELETE);
    put_varint(w, len);
    put_varint(w, tref);
    put_varint(w, tlo);
}

static void test_apply_update_hand_made_insert_applies(void **state)
{
    const uint64_t ids[] = {ID_X};
    crdt_doc_t *doc = new_doc(1, NULL);
    bytes_t w;
    (void)state;
    upd_begin(&w, ids, 1, 1);
    upd_block(&w, 0, 0, 2);
    upd_insert(&w, -1, 0, -1, 0, "hi");
    put_u8(&w, OP_INSERT | F_LEFT | F_LEFT_SAME); /* non-ASCII, left origin = own clock 1 */
    put_varint(&w, 1);
    put_varint(&w, 1);
    put_varint(&w, 4);
    put_raw(&w, EMOJI, 4);
    apply_ok(doc, w.b, w.n);
    assert_text(doc, "hi" EMOJI);
    assert_int_equal(crdt_doc_length(doc), 4);
    /* The same bytes again: nothing new. */
    apply_ok(doc, w.b, w.n);
    assert_text(doc, "hi" EMOJI);
    crdt_doc_free(doc);
}

/* Runs one hand-made update on a fresh fixture document with a test allocator:
 * expects `want`, an unchanged document, and peak memory during the call below
 * `limit` bytes above what was live before it. */
static void expect_rejected_small(const fixture_t *f, const char *what, const uint8_t *p, size_t n,
                                  int want, size_t limit)
{
    test_alloc_t ta;
    crdt_doc_t *doc;
    snap_t s;
    size_t live;
    int rc;
    test_alloc_init(&ta);
    doc = fixture_doc(f, &ta.alloc);
    snap_take(doc, &s);
    live = ta.live_bytes;
    rc = crdt_doc_apply_update(doc, p, n);
    if (rc != want)
        fail_msg("%s: apply returned %d (%s), expected %d (%s)", what, rc, crdt_strerror(rc), want,
                 crdt_strerror(want));
    if (ta.peak_bytes > live + limit)
        fail_msg("%s: %zu bytes of %zu input allocated at the peak (limit %zu)", what,
                 ta.peak_bytes - live, n, limit);
    if (ta.live_bytes != live)
        fail_msg("%s: %zu bytes live before, %zu after", what, live, ta.live_bytes);
    {
        const char *d = snap_diff(doc, &s);
        if (d)
            fail_msg("%s: %s", what, d);
    }
    snap_dispose(&s);
    crdt_doc_free(doc);
    assert_int_equal(test_alloc_live_bytes(&ta), 0);
}

static void test_apply_update_huge_counts_rejected_without_allocating(void **state)
{
    const uint64_t ids[] = {ID_X, ID_A};
    fixture_t f;
    bytes_t w;
    (void)state;
    fixture_make(&f);

    /* 2^40 clients. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 1ULL << 40);
    put_u64(&w, ID_X);
    expect_rejected_small(&f, "2^40 clients", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* 2^63 clients, and a varint of 10 bytes that overflows 64 bits. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 1ULL << 63);
    expect_rejected_small(&f, "2^63 clients", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    for (int i = 0; i < 9; i++)
        put_u8(&w, 0xff);
    put_u8(&w, 0x7f);
    expect_rejected_small(&f, "70-bit client count", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* As many clients as there are bytes left / 8, but then nothing. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 400);
    for (int i = 0; i < 400; i++)
        put_u64(&w, (uint64_t)i + 1000);
    expect_rejected_small(&f, "400 clients, no blocks", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* 2^40 blocks. */
    upd_begin(&w, ids, 2, 1ULL << 40);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, -1, 0, "x");
    expect_rejected_small(&f, "2^40 blocks", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* 2^40 operations in a block. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1ULL << 40);
    upd_insert(&w, -1, 0, -1, 0, "x");
    expect_rejected_small(&f, "2^40 operations", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* 2^31 bytes of text. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_INSERT | F_ASCII);
    put_varint(&w, 1ULL << 31);
    put_raw(&w, "abc", 3);
    expect_rejected_small(&f, "2^31 text bytes", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* 2^32 - 1 characters in 3 bytes of text. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_INSERT);
    put_varint(&w, UINT32_MAX);
    put_varint(&w, 3);
    put_raw(&w, "abc", 3);
    expect_rejected_small(&f, "2^32-1 characters", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* Many small blocks each declaring as many operations as the bytes left
     * allow, but truncated: the decoder may allocate only in proportion. */
    {
        upd_begin(&w, ids, 2, 300);
        for (int i = 0; i < 300; i++) {
            upd_block(&w, 0, (uint64_t)i, 1);
            upd_insert(&w, -1, 0, -1, 0, "y");
        }
        w.n -= 1; /* cut inside the last text */
        expect_rejected_small(&f, "300 blocks cut short", w.b, w.n, CRDT_EMALFORMED,
                              64 * 1024 + 64 * w.n);
    }
    /* The same in an encoded state (form 2): 2^40 clients, 2^40 items, 2^31
     * bytes of text. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 2);
    put_u8(&w, 0);
    put_varint(&w, 1ULL << 40);
    put_u64(&w, ID_X);
    expect_rejected_small(&f, "state of 2^40 clients", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    memset(&w, 0, sizeof(w));
    put_u8(&w, 2);
    put_u8(&w, 0);
    put_varint(&w, 1);
    put_u64(&w, ID_X);
    put_varint(&w, 1);
    put_varint(&w, 1);
    put_u8(&w, 'a');
    put_varint(&w, 1ULL << 40);
    put_u8(&w, 0);
    expect_rejected_small(&f, "state of 2^40 items", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    memset(&w, 0, sizeof(w));
    put_u8(&w, 2);
    put_u8(&w, 0);
    put_varint(&w, 1);
    put_u64(&w, ID_X);
    put_varint(&w, 1);
    put_varint(&w, 1ULL << 31);
    put_raw(&w, "abc", 3);
    expect_rejected_small(&f, "state of 2^31 text bytes", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);
    /* A delete of 2^32 - 1 characters: decodes, but its targets are unknown, so
     * it is held (not an error), without allocating for its length. */
    {
        test_alloc_t ta;
        crdt_doc_t *doc;
        size_t live;
        test_alloc_init(&ta);
        doc = fixture_doc(&f, &ta.alloc);
        live = ta.live_bytes;
        upd_begin(&w, ids, 2, 1);
        upd_block(&w, 0, 0, 1);
        upd_delete(&w, UINT32_MAX, 1, 0);
        assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), 0);
        assert_check(doc);
        assert_true(ta.peak_bytes < live + 64 * 1024);
        crdt_doc_free(doc);
        assert_int_equal(test_alloc_live_bytes(&ta), 0);
    }
    fixture_dispose(&f);
}

static void test_apply_update_unknown_operation_kind_eformat(void **state)
{
    const uint64_t ids[] = {ID_X};
    fixture_t f;
    bytes_t w;
    (void)state;
    fixture_make(&f);
    for (uint8_t kind = 2; kind < 8; kind++) {
        char what[64];
        upd_begin(&w, ids, 1, 1);
        upd_block(&w, 0, 0, 1);
        put_u8(&w, kind);
        put_varint(&w, 1);
        put_varint(&w, 0);
        snprintf(what, sizeof what, "operation kind %u", kind);
        expect_rejected_small(&f, what, w.b, w.n, CRDT_EFORMAT, 64 * 1024);
        /* After a valid insert in the same block: nothing of it is applied. */
        upd_begin(&w, ids, 1, 1);
        upd_block(&w, 0, 0, 2);
        upd_insert(&w, -1, 0, -1, 0, "ok");
        put_u8(&w, kind | 0x80);
        put_varint(&w, 1);
        snprintf(what, sizeof what, "insert then operation kind %u", kind);
        expect_rejected_small(&f, what, w.b, w.n, CRDT_EFORMAT, 64 * 1024);
    }
    fixture_dispose(&f);
}

/* Malformed details of otherwise plausible updates. */
static void test_apply_update_malformed_fields_rejected(void **state)
{
    const uint64_t ids[] = {ID_X, ID_A};
    fixture_t f;
    bytes_t w;
    (void)state;
    fixture_make(&f);

    upd_begin(&w, ids, 2, 1); /* trailing byte */
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, -1, 0, "x");
    put_u8(&w, 0);
    expect_rejected_small(&f, "trailing byte", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* block client outside the table */
    upd_block(&w, 2, 0, 1);
    upd_insert(&w, -1, 0, -1, 0, "x");
    expect_rejected_small(&f, "block client 2 of 2", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* origin client outside the table */
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, 5, 0, -1, 0, "x");
    expect_rejected_small(&f, "origin client 5 of 2", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* delete target client outside the table */
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 1, 9, 0);
    expect_rejected_small(&f, "delete target client 9 of 2", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* block of zero operations */
    upd_block(&w, 0, 0, 0);
    expect_rejected_small(&f, "empty block", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* empty insert */
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, -1, 0, "");
    expect_rejected_small(&f, "empty insert", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* ASCII flag on non-ASCII text */
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, -1, 0, "\xc3\xa9");
    expect_rejected_small(&f, "ASCII flag, 2-byte character", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* invalid UTF-8 */
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_INSERT);
    put_varint(&w, 1);
    put_varint(&w, 3);
    put_raw(&w, "\xed\xa0\x80", 3);
    expect_rejected_small(&f, "surrogate in text", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* character count not matching the text */
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_INSERT);
    put_varint(&w, 2);
    put_varint(&w, 4);
    put_raw(&w, EMOJI, 4);
    expect_rejected_small(&f, "2 characters claimed for one emoji", w.b, w.n, CRDT_EMALFORMED,
                          64 * 1024);

    upd_begin(&w, ids, 2, 1); /* same-client flag without the origin flag */
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_INSERT | F_ASCII | F_LEFT_SAME);
    put_varint(&w, 1);
    put_raw(&w, "x", 1);
    expect_rejected_small(&f, "F_LEFT_SAME without F_LEFT", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* same-client origin at distance 0 (itself) */
    upd_block(&w, 0, 3, 1);
    put_u8(&w, OP_INSERT | F_ASCII | F_LEFT | F_LEFT_SAME);
    put_varint(&w, 0);
    put_varint(&w, 1);
    put_raw(&w, "x", 1);
    expect_rejected_small(&f, "origin is the character itself", w.b, w.n, CRDT_EMALFORMED,
                          64 * 1024);

    upd_begin(&w, ids, 2, 1); /* same-client origin before clock 0 */
    upd_block(&w, 0, 3, 1);
    put_u8(&w, OP_INSERT | F_ASCII | F_RIGHT | F_RIGHT_SAME);
    put_varint(&w, 4);
    put_varint(&w, 1);
    put_raw(&w, "x", 1);
    expect_rejected_small(&f, "origin before clock 0", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* unknown delete flag */
    upd_block(&w, 0, 0, 1);
    put_u8(&w, OP_DELETE | 0x20);
    put_varint(&w, 1);
    put_varint(&w, 1);
    put_varint(&w, 0);
    expect_rejected_small(&f, "delete flag 0x20", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* delete of nothing */
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 0, 1, 0);
    expect_rejected_small(&f, "delete of 0 characters", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* own delete overlapping itself */
    upd_block(&w, 0, 2, 1);
    put_u8(&w, OP_DELETE | F_TARGET_SAME);
    put_varint(&w, 3);
    put_varint(&w, 2);
    expect_rejected_small(&f, "delete targeting itself", w.b, w.n, CRDT_EMALFORMED, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* clock range past 2^32 - 1 */
    upd_block(&w, 0, UINT32_MAX - 1, 1);
    upd_insert(&w, -1, 0, -1, 0, "xy");
    expect_rejected_small(&f, "clocks past 2^32-1", w.b, w.n, CRDT_ELIMIT, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* delete target range past 2^32 - 1 */
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 2, 1, UINT32_MAX - 1);
    expect_rejected_small(&f, "delete targets past 2^32-1", w.b, w.n, CRDT_ELIMIT, 64 * 1024);

    upd_begin(&w, ids, 2, 1); /* block clock of 33 bits */
    upd_block(&w, 0, 1ULL << 32, 1);
    upd_insert(&w, -1, 0, -1, 0, "x");
    {
        test_alloc_t ta;
        crdt_doc_t *doc;
        snap_t s;
        int rc;
        test_alloc_init(&ta);
        doc = fixture_doc(&f, &ta.alloc);
        snap_take(doc, &s);
        rc = crdt_doc_apply_update(doc, w.b, w.n);
        assert_true(rc == CRDT_ELIMIT || rc == CRDT_EMALFORMED);
        assert_unchanged(doc, &s);
        snap_dispose(&s);
        crdt_doc_free(doc);
    }
    fixture_dispose(&f);
}

/* ---- references to deletions ------------------------------------------------------------------
 */

static void test_apply_update_delete_of_deletion_einvalid(void **state)
{
    crdt_doc_t *a = new_doc(ID_A, NULL), *doc;
    crdt_buf_t st;
    bytes_t w;
    snap_t s;
    const uint64_t ids[] = {ID_X, ID_A};
    (void)state;
    /* A: "abc" is clocks 0..2, deleting 'b' is clock 3, "d" is clock 4. */
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, NULL), 0);
    assert_int_equal(crdt_doc_delete(a, 1, 1, NULL), 0);
    assert_int_equal(crdt_doc_insert(a, 2, "d", 1, NULL), 0);
    assert_text(a, "acd");
    assert_int_equal(crdt_doc_encode_state(a, &st), 0);
    assert_int_equal(crdt_doc_load(ID_B, NULL, st.base, st.len, &doc), 0);
    snap_take(doc, &s);

    /* X deletes A's clock 3, which is a deletion, not a character. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 1, 1, 3);
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    assert_unchanged(doc, &s);
    /* A range of characters running into the deletion. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 2, 1, 2);
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    assert_unchanged(doc, &s);
    /* After valid operations in the same update: nothing is applied. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 2);
    upd_insert(&w, 1, 0, -1, 0, "zz");
    upd_delete(&w, 1, 1, 3);
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    assert_unchanged(doc, &s);
    /* An insert whose origin is the deletion. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, 1, 3, -1, 0, "q");
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, 1, 3, "q");
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    assert_unchanged(doc, &s);
    /* A deletion made earlier in the same update. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 2);
    upd_delete(&w, 1, 1, 0);               /* X0 deletes 'a' */
    put_u8(&w, OP_DELETE | F_TARGET_SAME); /* X1 deletes X0 */
    put_varint(&w, 1);
    put_varint(&w, 1);
    assert_int_equal(crdt_doc_apply_update(doc, w.b, w.n), CRDT_EINVALID);
    assert_unchanged(doc, &s);
    /* The valid ones alone apply. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 2);
    upd_insert(&w, 1, 0, -1, 0, "zz");
    upd_delete(&w, 1, 1, 4);
    apply_ok(doc, w.b, w.n);
    assert_text(doc, "azzc");
    snap_dispose(&s);
    crdt_buf_dispose(&st);
    crdt_doc_free(doc);
    crdt_doc_free(a);
}

/*
 * An operation referring to a later clock of its own client (an origin or a
 * delete target given with an explicit client number equal to its own) can
 * never apply. Whether the engine rejects it or holds it, the document must go
 * on accepting valid updates afterwards.
 */
static void expect_still_usable(const uint8_t *bad, size_t n, const char *what)
{
    crdt_doc_t *doc = new_doc(1, NULL), *peer = new_doc(2, NULL);
    crdt_buf_t good;
    snap_t s;
    char msg[256] = "";
    int rc, rc0;
    snap_take(doc, &s);
    rc0 = crdt_doc_apply_update(doc, bad, n);
    if (rc0 != 0) {
        assert_true(is_rejection(rc0));
        assert_unchanged(doc, &s);
    }
    assert_check(doc);
    assert_int_equal(crdt_doc_insert(peer, 0, "hi", 2, &good), 0);
    rc = crdt_doc_apply_update(doc, good.base, good.len);
    if (rc != 0)
        snprintf(msg, sizeof msg,
                 "%s (applying it returned %d, %zu pending): a valid update afterwards is "
                 "refused: %s",
                 what, rc0, crdt_doc_pending(doc), crdt_strerror(rc));
    else if (crdt_doc_check(doc) != 0)
        snprintf(msg, sizeof msg, "%s: crdt_doc_check fails after a valid update", what);
    /* Free first, so a failure leaves nothing for LeakSanitizer to report. */
    snap_dispose(&s);
    crdt_buf_dispose(&good);
    crdt_doc_free(peer);
    if (msg[0] == 0) {
        char *t = doc_text(doc);
        if (strcmp(t, "hi") != 0)
            snprintf(msg, sizeof msg, "%s: text \"%s\" after a valid update, not \"hi\"", what, t);
        free(t);
    }
    crdt_doc_free(doc);
    if (msg[0])
        fail_msg("%s", msg);
}

static void test_apply_update_self_forward_reference_keeps_doc_usable(void **state)
{
    const uint64_t ids[] = {ID_X};
    bytes_t w;
    (void)state;
    /* X's first operation inserts "a" after X's clock 5. */
    upd_begin(&w, ids, 1, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, 0, 5, -1, 0, "a");
    expect_still_usable(w.b, w.n, "insert with left origin at its own later clock");
    /* ... before X's clock 5. */
    upd_begin(&w, ids, 1, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, 0, 5, "a");
    expect_still_usable(w.b, w.n, "insert with right origin at its own later clock");
    /* X's first operation deletes X's clock 7. */
    upd_begin(&w, ids, 1, 1);
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 1, 0, 7);
    expect_still_usable(w.b, w.n, "delete of its own later clock");
}

/*
 * An encoded state (form 2, docs/update-format.md) whose first item has the next
 * item, a later clock of the same client, as its right origin (found by
 * fuzz_apply_update; this is the smallest form of it). The bytes follow the
 * column layout of the state format; forged_state() first makes sure the same
 * bytes without the right origin are still a valid state, so that a layout
 * change shows up as a failure instead of these tests passing for the wrong
 * reason.
 */
#define FORGED_STATE_LEN 40
#define FORGED_STATE_HEAD 17 /* the first item's head byte */

static void forged_state(uint8_t out[FORGED_STATE_LEN])
{
    /* clang-format off */
    static const uint8_t bytes[FORGED_STATE_LEN] = {
        0x02, 0x00,                         /* form 2, not compressed */
        0x01, 0x58, 0, 0, 0, 0, 0, 0, 0,    /* 1 client: X, */
        0x02, 0x02,                         /* 2 clocks, 2 text bytes */
        'a', 'b',                           /* the text, in document order */
        0x02,                               /* 2 items: */
        0x02, 0x22, 0x00,                   /* heads: X0 right = next item; X1 */
        0x01, 0x00, 0x00,                   /* clients: X */
        0x00, 0x00,                         /* clocks: the bases (0, 1) */
        0x02, 0x01, 0x01, 0x00,             /* lengths: 1, 1 */
        0x00, 0x00,                         /* left origins: none */
        0x00, 0x00,                         /* right origins: none written */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no delete records */
    };
    /* clang-format on */
    crdt_doc_t *doc = new_doc(1, NULL);
    memcpy(out, bytes, FORGED_STATE_LEN);
    out[FORGED_STATE_HEAD] = 0x02; /* the same state with no right origin: "ab" */
    if (crdt_doc_apply_update(doc, out, FORGED_STATE_LEN) != 0)
        fail_msg("the hand-made state no longer parses: update it to docs/update-format.md");
    assert_text(doc, "ab");
    crdt_doc_free(doc);
    out[FORGED_STATE_HEAD] = 0x22;
}

static void test_apply_update_state_with_forward_origin_keeps_doc_usable(void **state)
{
    uint8_t forged[FORGED_STATE_LEN];
    (void)state;
    forged_state(forged);
    expect_still_usable(forged, sizeof forged, "state whose item has a later own right origin");
}

/* crdt_doc_load() of that state: what apply_update refuses, load must refuse
 * too; a loaded document whose state its peers refuse could never sync. */
static void test_load_state_with_forward_origin_refused_like_apply(void **state)
{
    uint8_t forged[FORGED_STATE_LEN];
    crdt_doc_t *fresh = new_doc(2, NULL), *loaded = NULL;
    char msg[256] = "";
    int rc_apply, rc_load;
    (void)state;
    forged_state(forged);
    rc_apply = crdt_doc_apply_update(fresh, forged, sizeof forged);
    rc_load = crdt_doc_load(3, NULL, forged, sizeof forged, &loaded);
    if (rc_load == 0) {
        crdt_doc_t *peer = new_doc(4, NULL);
        crdt_buf_t st;
        int rc;
        assert_check(loaded);
        assert_int_equal(crdt_doc_encode_state(loaded, &st), 0);
        rc = crdt_doc_apply_update(peer, st.base, st.len);
        if (rc != 0)
            snprintf(msg, sizeof msg,
                     "crdt_doc_load accepted the state (apply_update: %s), but a peer refuses "
                     "the loaded document's own encoded state: %s",
                     crdt_strerror(rc_apply), crdt_strerror(rc));
        else if (rc_apply != 0)
            snprintf(msg, sizeof msg,
                     "apply_update refuses the state (%s) but crdt_doc_load "
                     "accepts it",
                     crdt_strerror(rc_apply));
        crdt_buf_dispose(&st);
        crdt_doc_free(peer);
    }
    crdt_doc_free(loaded);
    crdt_doc_free(fresh);
    if (msg[0])
        fail_msg("%s", msg);
}

/*
 * crdt_doc_load() must build the document crdt_doc_apply_update() would make of
 * the same state, or refuse it: two documents with one state vector and two
 * texts never exchange anything again. `honest` is a valid state of the same
 * layout, which must load and apply, so that a layout change shows up as a
 * failure instead of the test passing for the wrong reason.
 */
static void expect_load_like_apply(const uint8_t *honest, size_t hn, const char *honest_text,
                                   const uint8_t *forged, size_t fn)
{
    crdt_doc_t *applied = new_doc(2, NULL), *loaded = NULL;
    char msg[320] = "";
    int rc_apply, rc_load;
    rc_apply = crdt_doc_apply_update(applied, honest, hn);
    rc_load = crdt_doc_load(3, NULL, honest, hn, &loaded);
    if (rc_apply != 0 || rc_load != 0)
        fail_msg("the hand-made valid state no longer parses: update it to "
                 "docs/update-format.md");
    assert_text(applied, honest_text);
    assert_text(loaded, honest_text);
    crdt_doc_free(applied);
    crdt_doc_free(loaded);
    applied = new_doc(2, NULL);
    loaded = NULL;
    rc_apply = crdt_doc_apply_update(applied, forged, fn);
    rc_load = crdt_doc_load(3, NULL, forged, fn, &loaded);
    if (rc_load == 0) {
        crdt_doc_t *peer = new_doc(4, NULL);
        crdt_buf_t st;
        char *tl = doc_text(loaded), *ta = doc_text(applied), *tp;
        assert_check(loaded);
        assert_int_equal(crdt_doc_encode_state(loaded, &st), 0);
        assert_int_equal(crdt_doc_apply_update(peer, st.base, st.len), 0);
        tp = doc_text(peer);
        if (rc_apply != 0)
            snprintf(msg, sizeof msg,
                     "crdt_doc_load built \"%s\" from a state apply_update refuses (%s)", tl,
                     crdt_strerror(rc_apply));
        else if (strcmp(tl, ta) != 0 || crdt_doc_pending(applied) != 0)
            snprintf(msg, sizeof msg,
                     "crdt_doc_load built \"%s\", apply_update of the same state gives \"%s\" "
                     "with %zu operations held",
                     tl, ta, crdt_doc_pending(applied));
        else if (strcmp(tl, tp) != 0 || crdt_doc_pending(peer) != 0)
            snprintf(msg, sizeof msg,
                     "crdt_doc_load built \"%s\", a peer merging its encoded state has \"%s\" "
                     "with %zu operations held",
                     tl, tp, crdt_doc_pending(peer));
        free(tl);
        free(ta);
        free(tp);
        crdt_buf_dispose(&st);
        crdt_doc_free(peer);
    } else {
        assert_true(is_rejection(rc_load));
    }
    crdt_doc_free(loaded);
    crdt_doc_free(applied);
    if (msg[0])
        fail_msg("%s", msg);
}

/*
 * An encoded state listing X's characters "a" (X0) and "b" (X1, left origin X0)
 * in the order "b", "a", which contradicts the origins (found by
 * fuzz_apply_update; this is the smallest form of it). apply_update integrates
 * the operations to "ab"; load built "ba", with the same state vector.
 */
static void test_load_state_order_contradicting_origins_matches_apply(void **state)
{
    /* clang-format off */
    static const uint8_t honest[] = {
        0x02, 0x00,                         /* form 2, not compressed */
        0x01, 0x58, 0, 0, 0, 0, 0, 0, 0,    /* 1 client: X, */
        0x02, 0x02,                         /* 2 clocks, 2 text bytes */
        'a', 'b',                           /* the text, in document order */
        0x02,                               /* 2 items: */
        0x02, 0x02, 0x10,                   /* heads: X0; X1 with left = own - 1 */
        0x01, 0x00, 0x00,                   /* clients: X */
        0x00, 0x00,                         /* clocks: the bases (0, 1) */
        0x02, 0x01, 0x01, 0x00,             /* lengths: 1, 1 */
        0x01, 0x01, 0x00,                   /* left origins: X1 - 1 */
        0x00, 0x00,                         /* right origins: none */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no delete records */
    };
    static const uint8_t forged[] = {
        0x02, 0x00,                         /* form 2, not compressed */
        0x01, 0x58, 0, 0, 0, 0, 0, 0, 0,    /* 1 client: X, */
        0x02, 0x02,                         /* 2 clocks, 2 text bytes */
        'b', 'a',                           /* the text, in (claimed) document order */
        0x02,                               /* 2 items: */
        0x02, 0x16, 0x04,                   /* heads: X1 with left = own - 1; X0 */
        0x01, 0x00, 0x00,                   /* clients: X */
        0x02, 0x02, 0x03, 0x00,             /* clocks: zigzag(1), zigzag(-2) */
        0x02, 0x01, 0x01, 0x00,             /* lengths: 1, 1 */
        0x01, 0x01, 0x00,                   /* left origins: X1 - 1 */
        0x00, 0x00,                         /* right origins: none */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no delete records */
    };
    /* clang-format on */
    (void)state;
    expect_load_like_apply(honest, sizeof honest, "ab", forged, sizeof forged);
}

/*
 * An encoded state in which X0 "a" has Y0 as its left origin and Y0 "b" has X0
 * as its right origin: neither could have been inserted first (found by
 * fuzz_apply_update; this is the smallest form of it). apply_update holds both
 * operations for ever; load built a document showing "ba" that no peer can ever
 * receive: its encoded state is held for ever by everyone else.
 */
static void test_load_state_with_dependency_cycle_matches_apply(void **state)
{
    /* clang-format off */
    static const uint8_t honest[] = {
        0x02, 0x00,                         /* form 2, not compressed */
        0x02,                               /* 2 clients: */
        0x58, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, /* X: 1 clock, 1 text byte */
        0x59, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, /* Y: 1 clock, 1 text byte */
        'b', 'a',                           /* the text, in document order */
        0x02,                               /* 2 items: */
        0x02, 0x22, 0x02,                   /* heads: Y0 right = next item; X0 */
        0x02, 0x01, 0x00, 0x00,             /* clients: Y, X */
        0x00, 0x00,                         /* clocks: the bases (0, 0) */
        0x02, 0x01, 0x01, 0x00,             /* lengths: 1, 1 */
        0x00, 0x00,                         /* left origins: none written */
        0x00, 0x00,                         /* right origins: none written */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no delete records */
    };
    static const uint8_t forged[] = {
        0x02, 0x00,                         /* form 2, not compressed */
        0x02,                               /* 2 clients: */
        0x58, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, /* X: 1 clock, 1 text byte */
        0x59, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, /* Y: 1 clock, 1 text byte */
        'b', 'a',                           /* the text, in document order */
        0x02,                               /* 2 items: */
        0x02, 0x22, 0x0a,                   /* heads: Y0 right = next item; X0 left = previous */
        0x02, 0x01, 0x00, 0x00,             /* clients: Y, X */
        0x00, 0x00,                         /* clocks: the bases (0, 0) */
        0x02, 0x01, 0x01, 0x00,             /* lengths: 1, 1 */
        0x00, 0x00,                         /* left origins: none written */
        0x00, 0x00,                         /* right origins: none written */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* no delete records */
    };
    /* clang-format on */
    (void)state;
    expect_load_like_apply(honest, sizeof honest, "ba", forged, sizeof forged);
}

/* The same, with X named twice in the client table, so the reference goes
 * through the second entry (found by fuzz_apply_update). */
static void test_apply_update_duplicate_client_entry_keeps_doc_usable(void **state)
{
    const uint64_t ids[] = {ID_X, ID_X};
    bytes_t w;
    (void)state;
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, 1, 5, -1, 0, "a");
    expect_still_usable(w.b, w.n, "insert after its own later clock, through a second entry");
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_insert(&w, -1, 0, 1, 5, "a");
    expect_still_usable(w.b, w.n, "insert before its own later clock, through a second entry");
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 1);
    upd_delete(&w, 1, 1, 7);
    expect_still_usable(w.b, w.n, "delete of its own later clock, through a second entry");
    /* A delete of its own clocks 0..2 made at clocks 2..4: it overlaps itself. */
    upd_begin(&w, ids, 2, 1);
    upd_block(&w, 0, 0, 2);
    upd_insert(&w, -1, 0, -1, 0, "ab");
    upd_delete(&w, 3, 1, 0);
    expect_still_usable(w.b, w.n, "delete overlapping itself, through a second entry");
}

/*
 * Two updates that disagree about client Y's history (Y reused by a forger, or
 * two replicas given one id): `held` says Y1 inserts "y" after Y0, `forged` says
 * Y0..Y2 delete A's first three characters. Whatever wins, merging must stay
 * idempotent and commutative: applying `forged` twice changes nothing the
 * second time, and the two delivery orders give one text. (Found by
 * fuzz_apply_update: the held Y1, invalid once Y0 turns out to be a deletion, is
 * dropped together with the update's own Y2, which is neither applied nor held,
 * and arrives only when the same bytes come again.)
 */
static void test_apply_update_conflicting_held_operation_stays_idempotent(void **state)
{
    const uint64_t yid[] = {ID_X}, ya[] = {ID_X, ID_A};
    crdt_doc_t *a = new_doc(ID_A, NULL), *d, *e;
    crdt_buf_t abcd;
    bytes_t held, forged;
    snap_t s;
    char *td, *te, msg[256] = "";
    const char *what;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abcd", 4, &abcd), 0);
    upd_begin(&held, yid, 1, 1); /* Y1: "y" after Y0 */
    upd_block(&held, 0, 1, 1);
    put_u8(&held, OP_INSERT | F_ASCII | F_LEFT | F_LEFT_SAME);
    put_varint(&held, 1);
    put_varint(&held, 1);
    put_u8(&held, 'y');
    upd_begin(&forged, ya, 2, 1); /* Y0: delete A0; Y1..Y2: delete A1..A2 */
    upd_block(&forged, 0, 0, 2);
    upd_delete(&forged, 1, 1, 0);
    upd_delete(&forged, 2, 1, 1);

    d = new_doc(0xd, NULL);
    apply_ok(d, abcd.base, abcd.len);
    apply_ok(d, held.b, held.n);
    assert_int_equal(crdt_doc_pending(d), 1);
    apply_ok(d, forged.b, forged.n);
    snap_take(d, &s);
    apply_ok(d, forged.b, forged.n);
    what = snap_diff(d, &s);
    e = new_doc(0xe, NULL);
    apply_ok(e, abcd.base, abcd.len);
    apply_ok(e, forged.b, forged.n);
    apply_ok(e, held.b, held.n);
    td = doc_text(d);
    te = doc_text(e);
    if (what != NULL)
        snprintf(msg, sizeof msg, "applying the same update a second time: %s", what);
    else if (strcmp(td, te) != 0)
        snprintf(msg, sizeof msg, "held then forged gives \"%s\", forged then held gives \"%s\"",
                 td, te);
    free(td);
    free(te);
    snap_dispose(&s);
    crdt_buf_dispose(&abcd);
    crdt_doc_free(a);
    crdt_doc_free(d);
    crdt_doc_free(e);
    if (msg[0])
        fail_msg("%s", msg);
}

/* ---- round trips --------------------------------------------------------------------------- */

/* Loads `bytes` into a fresh document and checks it holds the text and state
 * vector of `want`. */
static void expect_same_doc(const crdt_doc_t *want, const crdt_buf_t *bytes, const char *what)
{
    crdt_doc_t *fresh = new_doc(0x99, NULL);
    char *t = doc_text(want), *g;
    sv_t a, b;
    int rc = crdt_doc_apply_update(fresh, bytes->base, bytes->len);
    if (rc != 0)
        fail_msg("%s: apply to a fresh document: %s", what, crdt_strerror(rc));
    assert_check(fresh);
    assert_int_equal(crdt_doc_pending(fresh), 0);
    g = doc_text(fresh);
    if (strcmp(g, t) != 0)
        fail_msg("%s: fresh document has \"%s\", not \"%s\"", what, g, t);
    doc_sv(want, &a);
    doc_sv(fresh, &b);
    if (!sv_equal(&a, &b))
        fail_msg("%s: fresh document has another state vector", what);
    free(g);
    free(t);
    crdt_doc_free(fresh);
}

static void test_diff_empty_sv_equals_state(void **state)
{
    fixture_t f;
    crdt_doc_t *doc = NULL, *empty = new_doc(2, NULL);
    crdt_buf_t d0, d1, d2, st, empty_sv;
    static const uint8_t sv_none[] = {1, 0};
    (void)state;
    fixture_make(&f);
    assert_int_equal(crdt_doc_load(1, NULL, f.state.base, f.state.len, &doc), 0);
    assert_check(doc);
    assert_int_equal(crdt_doc_state_vector(empty, &empty_sv), 0);
    assert_int_equal(crdt_doc_diff(doc, NULL, 0, &d0), 0);
    assert_int_equal(crdt_doc_diff(doc, sv_none, sizeof sv_none, &d1), 0);
    assert_int_equal(crdt_doc_diff(doc, empty_sv.base, empty_sv.len, &d2), 0);
    assert_int_equal(crdt_doc_encode_state(doc, &st), 0);
    /* Three ways to say "an empty peer" give one update. */
    assert_true(buf_equal(&d0, &d1));
    assert_true(buf_equal(&d0, &d2));
    /* It and the encoded state both rebuild the document. */
    expect_same_doc(doc, &d0, "diff against an empty state vector");
    expect_same_doc(doc, &st, "encoded state");
    {
        crdt_doc_t *loaded = NULL;
        char *t;
        assert_int_equal(crdt_doc_load(3, NULL, d0.base, d0.len, &loaded), 0);
        t = doc_text(doc);
        assert_text(loaded, t);
        free(t);
        crdt_doc_free(loaded);
    }
    crdt_buf_dispose(&d0);
    crdt_buf_dispose(&d1);
    crdt_buf_dispose(&d2);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&empty_sv);
    crdt_doc_free(empty);
    crdt_doc_free(doc);
    fixture_dispose(&f);
}

static void test_diff_partial_sv_brings_peer_up_to_date(void **state)
{
    fixture_t f;
    crdt_doc_t *full = NULL, *peer = NULL;
    crdt_buf_t sv, d;
    char *want;
    (void)state;
    fixture_make(&f);
    assert_int_equal(crdt_doc_load(1, NULL, f.state.base, f.state.len, &full), 0);
    assert_int_equal(crdt_doc_load(2, NULL, f.base.base, f.base.len, &peer), 0);
    apply_ok(peer, f.ins.base, f.ins.len); /* the peer has part of the last round */
    assert_int_equal(crdt_doc_state_vector(peer, &sv), 0);
    assert_int_equal(crdt_doc_diff(full, sv.base, sv.len, &d), 0);
    assert_true(d.len < f.state.len);
    apply_ok(peer, d.base, d.len);
    want = doc_text(full);
    assert_text(peer, want);
    free(want);
    /* Its own state vector gives an update without operations. */
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
    assert_int_equal(crdt_doc_state_vector(full, &sv), 0);
    assert_int_equal(crdt_doc_diff(full, sv.base, sv.len, &d), 0);
    {
        crdt_buf_t none;
        assert_int_equal(crdt_doc_insert(full, 0, "", 0, &none), 0);
        assert_true(buf_equal(&d, &none));
        crdt_buf_dispose(&none);
    }
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
    crdt_doc_free(full);
    crdt_doc_free(peer);
    fixture_dispose(&f);
}

static void test_diff_malformed_sv_emalformed(void **state)
{
    static const struct {
        const char *what;
        uint8_t b[24];
        size_t n;
    } bad[] = {
        {"wrong version", {2, 0}, 2},
        {"version 0", {0, 0}, 2},
        {"count without entries", {1, 1}, 2},
        {"truncated id", {1, 1, 1, 2, 3}, 5},
        {"missing clock", {1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, 10},
        {"unterminated clock", {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0x80}, 11},
        {"trailing byte", {1, 0, 0}, 3},
        {"2^40 entries", {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, 7},
        {"clock of 35 bits", {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x40}, 15},
    };
    fixture_t f;
    crdt_doc_t *doc = NULL;
    crdt_buf_t out, junk;
    (void)state;
    fixture_make(&f);
    assert_int_equal(crdt_doc_load(1, NULL, f.state.base, f.state.len, &doc), 0);
    memset(&junk, 0x6b, sizeof(junk));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc;
        out = junk;
        rc = crdt_doc_diff(doc, bad[i].b, bad[i].n, &out);
        if (rc != CRDT_EMALFORMED)
            fail_msg("%s: diff returned %d (%s)", bad[i].what, rc, crdt_strerror(rc));
        assert_memory_equal(&out, &junk, sizeof(out));
        rc = crdt_doc_text_at(doc, bad[i].b, bad[i].n, &out);
        if (rc != CRDT_EMALFORMED)
            fail_msg("%s: text_at returned %d (%s)", bad[i].what, rc, crdt_strerror(rc));
        assert_memory_equal(&out, &junk, sizeof(out));
    }
    assert_int_equal(crdt_doc_diff(doc, NULL, 3, &out), CRDT_EINVAL);
    crdt_doc_free(doc);
    fixture_dispose(&f);
}

static void test_load_roundtrip(void **state)
{
    fixture_t f;
    crdt_doc_t *a = NULL, *b = NULL, *keep = (crdt_doc_t *)&f, *out;
    crdt_buf_t st;
    char *ta;
    (void)state;
    fixture_make(&f);
    assert_int_equal(crdt_doc_load(1, NULL, f.state.base, f.state.len, &a), 0);
    assert_check(a);
    assert_int_equal(crdt_doc_pending(a), 0);
    assert_int_equal(crdt_doc_client(a), 1);
    assert_int_equal(crdt_doc_encode_state(a, &st), 0);
    assert_int_equal(crdt_doc_load(2, NULL, st.base, st.len, &b), 0);
    assert_check(b);
    ta = doc_text(a);
    assert_text(b, ta);
    {
        sv_t sa, sb;
        doc_sv(a, &sa);
        doc_sv(b, &sb);
        assert_true(sv_equal(&sa, &sb));
    }
    /* Text at the base version is the same in both. */
    {
        crdt_doc_t *base = NULL;
        crdt_buf_t sv, t1, t2;
        assert_int_equal(crdt_doc_load(3, NULL, f.base.base, f.base.len, &base), 0);
        assert_int_equal(crdt_doc_state_vector(base, &sv), 0);
        assert_int_equal(crdt_doc_text_at(a, sv.base, sv.len, &t1), 0);
        assert_int_equal(crdt_doc_text_at(b, sv.base, sv.len, &t2), 0);
        assert_true(buf_equal(&t1, &t2));
        assert_text(base, (const char *)t1.base);
        crdt_buf_dispose(&sv);
        crdt_buf_dispose(&t1);
        crdt_buf_dispose(&t2);
        crdt_doc_free(base);
    }
    /* Errors leave *out alone. */
    out = keep;
    assert_int_equal(crdt_doc_load(4, NULL, st.base, st.len - 1, &out), CRDT_EMALFORMED);
    assert_ptr_equal(out, keep);
    assert_int_equal(crdt_doc_load(4, NULL, st.base, st.len, NULL), CRDT_EINVAL);
    free(ta);
    crdt_buf_dispose(&st);
    crdt_doc_free(a);
    crdt_doc_free(b);
    fixture_dispose(&f);
}

/* crdt_update_summary counts operations, inserted UTF-16 units and deleted
 * characters of an update (or an encoded state) without applying it, and
 * refuses garbage. */
static void test_update_summary_counts_operations(void **state)
{
    crdt_doc_t *a = new_doc(5, NULL);
    crdt_buf_t u1, u2, st;
    crdt_update_summary_t sum;
    static const uint8_t junk[] = {1, 0xff, 0xff, 0xff, 0xff, 0xff};
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "h\xc3\xa9llo\xf0\x9f\x98\x80", 10, &u1), 0);
    assert_int_equal(crdt_update_summary(u1.base, u1.len, NULL, &sum), 0);
    assert_int_equal(sum.ops, 6);
    assert_int_equal(sum.inserted, 7);
    assert_int_equal(sum.deleted, 0);
    assert_int_equal(sum.clients, 1);
    assert_int_equal(crdt_doc_delete(a, 1, 2, &u2), 0);
    assert_int_equal(crdt_update_summary(u2.base, u2.len, NULL, &sum), 0);
    assert_int_equal(sum.ops, 2);
    assert_int_equal(sum.inserted, 0);
    assert_int_equal(sum.deleted, 2);
    memset(&sum, 0x55, sizeof(sum));
    assert_int_not_equal(crdt_update_summary(junk, sizeof(junk), NULL, &sum), 0);
    assert_int_equal(sum.ops, 0x5555555555555555ull);
    assert_int_equal(crdt_doc_encode_state(a, &st), 0);
    assert_int_equal(crdt_update_summary(st.base, st.len, NULL, &sum), 0); /* the whole history */
    assert_int_equal(sum.ops, 8);
    assert_int_equal(sum.inserted, 7);
    assert_int_equal(sum.deleted, 2);
    assert_int_equal(crdt_update_summary(NULL, 0, NULL, NULL), CRDT_EINVAL);
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    crdt_buf_dispose(&st);
    crdt_doc_free(a);
}

/* Text of `doc` (a malloc'd NUL-terminated copy). */
static char *text_of(const crdt_doc_t *doc)
{
    crdt_buf_t t;
    assert_int_equal(crdt_doc_text(doc, &t), 0);
    char *s = malloc(t.len + 1);
    assert_non_null(s);
    memcpy(s, t.base, t.len);
    s[t.len] = 0;
    crdt_buf_dispose(&t);
    return s;
}

/* Applies `u` to `b` and checks that `b` now reads like `a`; returns how many
 * clients `u`'s id table names. */
static uint64_t apply_and_compare(crdt_doc_t *b, const crdt_doc_t *a, crdt_buf_t *u)
{
    crdt_update_summary_t sum;
    assert_int_equal(crdt_update_summary(u->base, u->len, NULL, &sum), 0);
    apply_ok(b, u->base, u->len);
    char *ta = text_of(a), *tb = text_of(b);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
    crdt_buf_dispose(u);
    return sum.clients;
}

/*
 * An update names only the clients its operations use, however many the
 * document knows (70 besides its own here, more than the encoder's table on
 * the stack): a keystroke one, a delete of another client's character two,
 * a delete across many clients' characters (more operations than the
 * encoder's short path takes) each of them; and a replica built from a diff
 * of everything reads the same.
 */
static void test_update_names_only_the_clients_it_uses(void **state)
{
    crdt_doc_t *a = new_doc(1, NULL), *b = new_doc(2, NULL), *fresh = new_doc(3, NULL);
    crdt_buf_t u;
    (void)state;
    for (uint64_t c = 100; c < 170; c++) {
        crdt_doc_t *r = new_doc(c, NULL);
        sync_to(r, a);
        assert_int_equal(crdt_doc_insert(r, 0, "x", 1, &u), 0);
        apply_ok(a, u.base, u.len);
        crdt_buf_dispose(&u);
        crdt_doc_free(r);
    }
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(a, crdt_doc_length(a), "y", 1, &u), 0);
    assert_int_equal(apply_and_compare(b, a, &u), 2); /* own, and the left origin's */
    assert_int_equal(crdt_doc_insert(a, crdt_doc_length(a), "z", 1, &u), 0);
    assert_int_equal(apply_and_compare(b, a, &u), 1);
    assert_int_equal(crdt_doc_delete(a, 3, 1, &u), 0);
    assert_int_equal(apply_and_compare(b, a, &u), 2);  /* own, and the target's */
    assert_int_equal(crdt_doc_delete(a, 5, 9, &u), 0); /* nine clients' characters */
    assert_int_equal(apply_and_compare(b, a, &u), 10);
    assert_int_equal(crdt_doc_insert(a, 20, "mid", 3, &u), 0);
    assert_true(apply_and_compare(b, a, &u) <= 3);
    sync_to(fresh, a);
    char *ta = text_of(a), *tf = text_of(fresh);
    assert_string_equal(ta, tf);
    free(ta);
    free(tf);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_update_fixture_updates_apply),
        cmocka_unit_test(test_apply_update_empty_input_emalformed),
        cmocka_unit_test(test_apply_update_wrong_version_eformat),
        cmocka_unit_test(test_apply_update_truncated_every_length_emalformed),
        cmocka_unit_test(test_apply_update_single_byte_mutations),
        cmocka_unit_test(test_apply_update_hand_made_insert_applies),
        cmocka_unit_test(test_apply_update_huge_counts_rejected_without_allocating),
        cmocka_unit_test(test_apply_update_unknown_operation_kind_eformat),
        cmocka_unit_test(test_apply_update_malformed_fields_rejected),
        cmocka_unit_test(test_apply_update_delete_of_deletion_einvalid),
        cmocka_unit_test(test_apply_update_self_forward_reference_keeps_doc_usable),
        cmocka_unit_test(test_apply_update_duplicate_client_entry_keeps_doc_usable),
        cmocka_unit_test(test_apply_update_state_with_forward_origin_keeps_doc_usable),
        cmocka_unit_test(test_load_state_with_forward_origin_refused_like_apply),
        cmocka_unit_test(test_load_state_order_contradicting_origins_matches_apply),
        cmocka_unit_test(test_load_state_with_dependency_cycle_matches_apply),
        cmocka_unit_test(test_apply_update_conflicting_held_operation_stays_idempotent),
        cmocka_unit_test(test_diff_empty_sv_equals_state),
        cmocka_unit_test(test_diff_partial_sv_brings_peer_up_to_date),
        cmocka_unit_test(test_diff_malformed_sv_emalformed),
        cmocka_unit_test(test_load_roundtrip),
        cmocka_unit_test(test_update_summary_counts_operations),
        cmocka_unit_test(test_update_names_only_the_clients_it_uses),
    };

    if (getenv("CMOCKA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
