/* SPDX-License-Identifier: MIT */
/*
 * test_alloc_fail.c: out-of-memory behaviour of crdt/ (STYLE.md §9, after
 * SQLite's faultsim). For each public operation that allocates (insert, delete,
 * apply_update of a multi-client update, of one that leaves operations held and
 * of one that releases them, restore, load, diff, encode_state, state_vector,
 * text, text_at, new) the test allocator fails the Nth allocation for N = 0, 1,
 * 2, ... until the operation runs without an injected failure. Whenever the
 * operation fails it must say CRDT_ENOMEM and leave the document exactly as it
 * was (crdt_doc_check(), text, state vector, encoded state and pending count)
 * and its output arguments untouched; whenever it succeeds (an injected failure
 * may be survivable, e.g. a failed shrink) the result must equal that of a run
 * without failures. Every iteration ends with all memory given back.
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
#define MAX_N 10000

/* ---- fixture ------------------------------------------------------------------------ */

/*
 * Made once with libc's allocator. Three replicas edit at random; `base` is the
 * encoded state half-way, `base_sv` its state vector, `full` the final state,
 * `big` the update taking a `base` document to `full` (many operations of three
 * clients, two of them unknown to a document loaded from `base_b`, the state of
 * replica b alone before it merged anything), `held` an update that depends on
 * `held_dep`, which a `full` document lacks.
 */
typedef struct {
    crdt_buf_t base, base_sv, base_b, full, big, held, held_dep;
} fixture_t;

static void sync_to(crdt_doc_t *b, const crdt_doc_t *a)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(b, &sv), 0);
    assert_int_equal(crdt_doc_diff(a, sv.base, sv.len, &d), 0);
    assert_int_equal(crdt_doc_apply_update(b, d.base, d.len), 0);
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
}

static void random_edits(crdt_doc_t **r, int steps, rng_t *rng)
{
    static const char *const words[] = {
        "lorem ", "ipsum", " dolor", "\xc3\xa9t\xc3\xa9", EMOJI, "x", "\xe4\xb8\xad\xe6\x96\x87"};
    for (int i = 0; i < steps; i++) {
        crdt_doc_t *d = r[rng_below(rng, 3)];
        char *t = doc_text(d);
        size_t len = crdt_doc_length(d), tl = strlen(t);
        size_t at = rng_below(rng, len + 1);
        while (at > 0 && u16_to_byte(t, tl, at) == SIZE_MAX)
            at--;
        if (len > 10 && rng_pct(rng, 35)) {
            size_t end = at + 1 + rng_below(rng, 6);
            if (at == len)
                at = 0;
            if (end > len)
                end = len;
            while (u16_to_byte(t, tl, end) == SIZE_MAX)
                end++;
            assert_int_equal(crdt_doc_delete(d, at, end - at, NULL), 0);
        } else {
            const char *w = words[rng_below(rng, sizeof(words) / sizeof(words[0]))];
            assert_int_equal(crdt_doc_insert(d, at, w, strlen(w), NULL), 0);
        }
        free(t);
        if (rng_pct(rng, 20)) {
            size_t x = rng_below(rng, 3), y = rng_below(rng, 3);
            if (x != y)
                sync_to(r[y], r[x]);
        }
    }
}

static void fixture_make(fixture_t *f)
{
    crdt_doc_t *r[3];
    rng_t rng = {0xa110c};
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < 3; i++)
        assert_int_equal(crdt_doc_new(0x100 + (uint64_t)i, NULL, &r[i]), 0);
    assert_int_equal(crdt_doc_insert(r[1], 0, "b's own text", 12, NULL), 0);
    assert_int_equal(crdt_doc_encode_state(r[1], &f->base_b), 0);
    random_edits(r, 60, &rng);
    sync_to(r[0], r[1]);
    sync_to(r[0], r[2]);
    assert_int_equal(crdt_doc_encode_state(r[0], &f->base), 0);
    assert_int_equal(crdt_doc_state_vector(r[0], &f->base_sv), 0);
    random_edits(r, 60, &rng);
    for (int i = 1; i < 3; i++)
        sync_to(r[0], r[i]);
    for (int i = 1; i < 3; i++)
        sync_to(r[i], r[0]);
    assert_int_equal(crdt_doc_encode_state(r[0], &f->full), 0);
    assert_int_equal(crdt_doc_diff(r[0], f->base_sv.base, f->base_sv.len, &f->big), 0);
    assert_int_equal(crdt_doc_insert(r[1], 3, "!", 1, &f->held_dep), 0);
    assert_int_equal(crdt_doc_insert(r[1], 4, "?" EMOJI, 5, &f->held), 0);
    for (int i = 0; i < 3; i++)
        crdt_doc_free(r[i]);
}

static void fixture_dispose(fixture_t *f)
{
    crdt_buf_dispose(&f->base);
    crdt_buf_dispose(&f->base_sv);
    crdt_buf_dispose(&f->base_b);
    crdt_buf_dispose(&f->full);
    crdt_buf_dispose(&f->big);
    crdt_buf_dispose(&f->held);
    crdt_buf_dispose(&f->held_dep);
}

static crdt_doc_t *load(const crdt_buf_t *state, const crdt_alloc_t *a)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_load(0x42, a, state->base, state->len, &doc), 0);
    return doc;
}

/* ---- the driver ---------------------------------------------------------------------- */

/* Builds the document an operation works on (NULL if it makes its own). */
typedef crdt_doc_t *(*setup_fn)(const fixture_t *f, const crdt_alloc_t *a);
/* Runs the operation; it may fill *out and/or *dout. */
typedef int (*run_fn)(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                      crdt_doc_t **dout);

/* A document's text, state vector (decoded) and pending count, in libc memory so
 * it outlives the allocator of the run that made it. */
typedef struct {
    char *text;
    sv_t sv;
    size_t pending;
} dsnap_t;

static void dsnap_take(const crdt_doc_t *doc, dsnap_t *d)
{
    d->text = doc_text(doc);
    doc_sv(doc, &d->sv);
    d->pending = crdt_doc_pending(doc);
}

static int dsnap_equal(const dsnap_t *a, const dsnap_t *b)
{
    return strcmp(a->text, b->text) == 0 && sv_equal(&a->sv, &b->sv) && a->pending == b->pending;
}

/* What a run produced, to compare runs with injected failures against. */
typedef struct {
    int has_doc, has_out, has_dout;
    dsnap_t doc, dout;
    crdt_buf_t out; /* base from malloc() */
} result_t;

static void result_dispose(result_t *r)
{
    free(r->doc.text);
    free(r->dout.text);
    free(r->out.base);
    memset(r, 0, sizeof(*r));
}

static crdt_buf_t junk_buf(void)
{
    crdt_buf_t b;
    memset(&b, 0xa5, sizeof(b));
    return b;
}

#define JUNK_DOC ((crdt_doc_t *)(uintptr_t)0xdeadbeefu)

/* Takes what the run produced; disposes of out/dout. */
static void collect(result_t *r, const crdt_doc_t *doc, crdt_buf_t *out, crdt_doc_t *dout)
{
    crdt_buf_t junk = junk_buf();
    memset(r, 0, sizeof(*r));
    if (doc != NULL) {
        r->has_doc = 1;
        dsnap_take(doc, &r->doc);
    }
    if (dout != JUNK_DOC && dout != NULL) {
        r->has_dout = 1;
        assert_int_equal(crdt_doc_check(dout), 0);
        dsnap_take(dout, &r->dout);
        crdt_doc_free(dout);
    }
    if (memcmp(out, &junk, sizeof(junk)) != 0) {
        r->has_out = 1;
        r->out.base = malloc(out->len + 1);
        assert_non_null(r->out.base);
        memcpy(r->out.base, out->base, out->len + 1);
        r->out.len = out->len;
        crdt_buf_dispose(out);
    }
}

/*
 * The fault simulation loop. Returns the number of allocations the operation
 * needed (the first N that no longer fails).
 */
static long faultsim(const char *name, const fixture_t *f, setup_fn setup, run_fn run)
{
    result_t want;
    long n;

    /* A run without failures gives the expected result. */
    {
        test_alloc_t ta;
        crdt_doc_t *doc, *dout = JUNK_DOC;
        crdt_buf_t out = junk_buf();
        int rc;
        test_alloc_init(&ta);
        doc = setup ? setup(f, &ta.alloc) : NULL;
        rc = run(doc, f, &ta.alloc, &out, &dout);
        if (rc != 0)
            fail_msg("%s: fails without injected failures: %s", name, crdt_strerror(rc));
        if (doc)
            assert_int_equal(crdt_doc_check(doc), 0);
        collect(&want, doc, &out, dout);
        crdt_doc_free(doc);
        if (test_alloc_live_bytes(&ta) != 0)
            fail_msg("%s: %zu bytes leaked by a successful run", name, test_alloc_live_bytes(&ta));
    }

    for (n = 0; n < MAX_N; n++) {
        test_alloc_t ta;
        crdt_doc_t *doc, *dout = JUNK_DOC;
        crdt_buf_t out = junk_buf();
        snap_t before;
        size_t failures;
        int rc, injected;

        test_alloc_init(&ta);
        doc = setup ? setup(f, &ta.alloc) : NULL;
        if (doc)
            snap_take(doc, &before);
        failures = ta.failures;
        test_alloc_fail_after(&ta, n);
        rc = run(doc, f, &ta.alloc, &out, &dout);
        test_alloc_fail_after(&ta, -1);
        injected = ta.failures != failures;

        if (rc != 0) {
            const char *what;
            crdt_buf_t junk = junk_buf();
            if (!injected || rc != CRDT_ENOMEM)
                fail_msg("%s, allocation %ld failing: returned %d (%s)%s", name, n, rc,
                         crdt_strerror(rc), injected ? "" : " without an injected failure");
            if (doc && (what = snap_diff(doc, &before)) != NULL)
                fail_msg("%s, allocation %ld failing: CRDT_ENOMEM but %s", name, n, what);
            if (memcmp(&out, &junk, sizeof(out)) != 0)
                fail_msg("%s, allocation %ld failing: output buffer written", name, n);
            if (dout != JUNK_DOC)
                fail_msg("%s, allocation %ld failing: output document written", name, n);
        } else {
            result_t got;
            if (doc && crdt_doc_check(doc) != 0)
                fail_msg("%s, allocation %ld failing: succeeded, then crdt_doc_check failed", name,
                         n);
            collect(&got, doc, &out, dout);
            if (got.has_doc && !dsnap_equal(&got.doc, &want.doc))
                fail_msg("%s, allocation %ld failing: succeeded with another document than a "
                         "run without failures",
                         name, n);
            if (got.has_dout != want.has_dout ||
                (got.has_dout && !dsnap_equal(&got.dout, &want.dout)))
                fail_msg("%s, allocation %ld failing: succeeded with another new document", name,
                         n);
            if (got.has_out != want.has_out || (got.has_out && !buf_equal(&got.out, &want.out)))
                fail_msg("%s, allocation %ld failing: succeeded with another output", name, n);
            result_dispose(&got);
        }
        if (doc)
            snap_dispose(&before);
        crdt_doc_free(doc);
        if (test_alloc_live_bytes(&ta) != 0)
            fail_msg("%s, allocation %ld failing: %zu bytes in %zu blocks leaked", name, n,
                     test_alloc_live_bytes(&ta), ta.live_blocks);
        if (!injected)
            break;
    }
    result_dispose(&want);
    if (n == MAX_N)
        fail_msg("%s: still failing after %d injected failures", name, MAX_N);
    print_message("%s: %ld allocations\n", name, n);
    return n;
}

/* ---- setups ----------------------------------------------------------------------------- */

static crdt_doc_t *setup_base(const fixture_t *f, const crdt_alloc_t *a)
{
    return load(&f->base, a);
}

static crdt_doc_t *setup_base_b(const fixture_t *f, const crdt_alloc_t *a)
{
    return load(&f->base_b, a);
}

static crdt_doc_t *setup_full(const fixture_t *f, const crdt_alloc_t *a)
{
    return load(&f->full, a);
}

/* `full` with `held` waiting for `held_dep`. */
static crdt_doc_t *setup_full_held(const fixture_t *f, const crdt_alloc_t *a)
{
    crdt_doc_t *doc = load(&f->full, a);
    assert_int_equal(crdt_doc_apply_update(doc, f->held.base, f->held.len), 0);
    assert_true(crdt_doc_pending(doc) > 0);
    return doc;
}

/* A fresh document: pools at their smallest, so every change must grow them. */
static crdt_doc_t *setup_empty(const fixture_t *f, const crdt_alloc_t *a)
{
    crdt_doc_t *doc = NULL;
    (void)f;
    assert_int_equal(crdt_doc_new(0x42, a, &doc), 0);
    return doc;
}

/* ---- operations --------------------------------------------------------------------------- */

/* A character boundary at or after `i` (no allocation: relpos creation fails on
 * an index inside a character). */
static size_t boundary_up(const crdt_doc_t *doc, size_t i)
{
    crdt_relpos_t p;
    while (i < crdt_doc_length(doc) &&
           crdt_doc_relpos_from_index(doc, i, CRDT_ASSOC_AFTER, &p) == CRDT_EINDEX)
        i++;
    return i;
}

static int run_insert(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                      crdt_doc_t **dout)
{
    const char *s = "h\xc3\xa9llo " EMOJI;
    (void)f, (void)a, (void)dout;
    return crdt_doc_insert(doc, boundary_up(doc, crdt_doc_length(doc) / 2), s, strlen(s), out);
}

static int run_insert_no_update(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                                crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)f, (void)a, (void)out, (void)dout;
    return crdt_doc_insert(doc, 0, "start ", 6, NULL);
}

static int run_insert_paste(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                            crdt_buf_t *out, crdt_doc_t **dout)
{
    char text[4096];
    (void)f, (void)a, (void)dout;
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    return crdt_doc_insert(doc, crdt_doc_length(doc), text, sizeof(text), out);
}

/* Deletes almost everything: many runs of all clients. */
static int run_delete_many(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                           crdt_buf_t *out, crdt_doc_t **dout)
{
    size_t from = boundary_up(doc, 1), to = boundary_up(doc, crdt_doc_length(doc) - 1);
    (void)f, (void)a, (void)dout;
    return crdt_doc_delete(doc, from, to - from, out);
}

static int run_delete_one(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                          crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_delete(doc, 0, boundary_up(doc, 1), out);
}

static int run_apply_big(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                         crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)a, (void)out, (void)dout;
    return crdt_doc_apply_update(doc, f->big.base, f->big.len);
}

static int run_apply_full(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                          crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)a, (void)out, (void)dout;
    return crdt_doc_apply_update(doc, f->full.base, f->full.len);
}

static int run_apply_held(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                          crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)a, (void)out, (void)dout;
    return crdt_doc_apply_update(doc, f->held.base, f->held.len);
}

static int run_apply_held_dep(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                              crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)a, (void)out, (void)dout;
    return crdt_doc_apply_update(doc, f->held_dep.base, f->held_dep.len);
}

static int run_restore(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                       crdt_doc_t **dout)
{
    (void)a, (void)dout;
    return crdt_doc_restore(doc, f->base_sv.base, f->base_sv.len, out);
}

static int run_restore_empty(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                             crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_restore(doc, NULL, 0, out);
}

static int run_load_state(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                          crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)doc, (void)out;
    return crdt_doc_load(7, a, f->full.base, f->full.len, dout);
}

static int run_load_update(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                           crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)doc, (void)out;
    return crdt_doc_load(7, a, f->held_dep.base, f->held_dep.len, dout);
}

static int run_new(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                   crdt_doc_t **dout)
{
    (void)doc, (void)f, (void)out;
    return crdt_doc_new(7, a, dout);
}

static int run_diff(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                    crdt_doc_t **dout)
{
    (void)a, (void)dout;
    return crdt_doc_diff(doc, f->base_sv.base, f->base_sv.len, out);
}

static int run_diff_all(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                        crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_diff(doc, NULL, 0, out);
}

static int run_encode_state(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                            crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_encode_state(doc, out);
}

static int run_state_vector(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a,
                            crdt_buf_t *out, crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_state_vector(doc, out);
}

static int run_text(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                    crdt_doc_t **dout)
{
    (void)f, (void)a, (void)dout;
    return crdt_doc_text(doc, out);
}

static int run_text_at(crdt_doc_t *doc, const fixture_t *f, const crdt_alloc_t *a, crdt_buf_t *out,
                       crdt_doc_t **dout)
{
    (void)a, (void)dout;
    return crdt_doc_text_at(doc, f->base_sv.base, f->base_sv.len, out);
}

/* ---- a non-aborting size check ---------------------------------------------------------- */

/*
 * The engine must give back every block with the size it asked for (crdt.h:
 * "realloc and free are told the size of the block"). test_alloc aborts the
 * program on a mismatch; this allocator records the first one instead, so a
 * test can name the allocation whose failure led to it. It also fails one
 * chosen call, like test_alloc.
 */
typedef struct {
    void *p;
    size_t size;
} strict_block_t;

typedef struct {
    crdt_alloc_t alloc;
    strict_block_t blocks[1024];
    size_t n;
    long countdown; /* calls before the one that fails; < 0: none */
    int failed;
    char mismatch[160];
} strict_alloc_t;

static strict_block_t *strict_find(strict_alloc_t *s, const void *p)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->blocks[i].p == p)
            return &s->blocks[i];
    return NULL;
}

static void strict_check(strict_alloc_t *s, const void *p, size_t size, const char *op)
{
    strict_block_t *b = strict_find(s, p);
    if (b == NULL) {
        if (!s->mismatch[0])
            snprintf(s->mismatch, sizeof s->mismatch, "%s of a block it never allocated", op);
    } else if (b->size != size && !s->mismatch[0]) {
        snprintf(s->mismatch, sizeof s->mismatch, "%s of a %zu-byte block as %zu bytes", op,
                 b->size, size);
    }
}

static int strict_fail_now(strict_alloc_t *s)
{
    if (s->countdown < 0)
        return 0;
    if (s->countdown-- > 0)
        return 0;
    s->failed = 1;
    return 1;
}

static void *strict_malloc(void *ctx, size_t size)
{
    strict_alloc_t *s = ctx;
    void *p;
    if (strict_fail_now(s) || s->n == sizeof(s->blocks) / sizeof(s->blocks[0]))
        return NULL;
    p = malloc(size);
    if (p != NULL) {
        s->blocks[s->n].p = p;
        s->blocks[s->n++].size = size;
    }
    return p;
}

static void *strict_realloc(void *ctx, void *ptr, size_t old_size, size_t new_size)
{
    strict_alloc_t *s = ctx;
    strict_block_t *b;
    void *p;
    if (ptr == NULL)
        return strict_malloc(ctx, new_size);
    strict_check(s, ptr, old_size, "realloc");
    if (strict_fail_now(s))
        return NULL;
    p = realloc(ptr, new_size);
    if (p != NULL && (b = strict_find(s, ptr)) != NULL) {
        b->p = p;
        b->size = new_size;
    }
    return p;
}

static void strict_free(void *ctx, void *ptr, size_t size)
{
    strict_alloc_t *s = ctx;
    strict_block_t *b;
    if (ptr == NULL)
        return;
    strict_check(s, ptr, size, "free");
    if ((b = strict_find(s, ptr)) != NULL)
        *b = s->blocks[--s->n];
    free(ptr);
}

static void strict_init(strict_alloc_t *s, long fail_after)
{
    memset(s, 0, sizeof(*s));
    s->alloc.malloc = strict_malloc;
    s->alloc.realloc = strict_realloc;
    s->alloc.free = strict_free;
    s->alloc.ctx = s;
    s->countdown = fail_after;
}

/* Loading an encoded state (and applying it as an update) under every single
 * allocation failure gives every block back with its own size. */
static void test_load_enomem_frees_blocks_with_their_size(void **state)
{
    crdt_doc_t *a = NULL, *b = NULL;
    crdt_buf_t st;
    (void)state;
    assert_int_equal(crdt_doc_new(1, NULL, &a), 0);
    assert_int_equal(crdt_doc_new(2, NULL, &b), 0);
    assert_int_equal(crdt_doc_insert(a, 0, "hello", 5, NULL), 0);
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(b, 2, "XY", 2, NULL), 0);
    assert_int_equal(crdt_doc_delete(b, 0, 1, NULL), 0);
    sync_to(a, b);
    /* Enough items that a load's pools grow while it integrates them
     * (crdt_doc_load reserves as it goes), so failures land there too. */
    for (int i = 0; i < 300; i++)
        assert_int_equal(crdt_doc_insert(a, 0, i % 2 ? "x" : "\xc3\xa9", i % 2 ? 1 : 2, NULL), 0);
    assert_int_equal(crdt_doc_encode_state(a, &st), 0);
    for (int how = 0; how < 2; how++) {
        long n;
        for (n = 0; n < MAX_N; n++) {
            strict_alloc_t *s = malloc(sizeof(*s));
            crdt_doc_t *d = NULL;
            int rc, failed;
            assert_non_null(s);
            strict_init(s, -1);
            if (how == 1)
                assert_int_equal(crdt_doc_new(3, &s->alloc, &d), 0);
            s->countdown = n;
            if (how == 0)
                rc = crdt_doc_load(3, &s->alloc, st.base, st.len, &d);
            else
                rc = crdt_doc_apply_update(d, st.base, st.len);
            s->countdown = -1;
            failed = s->failed;
            if (rc == 0) { /* e.g. only a shrink failed, which is harmless */
                char *got = doc_text(d), *want = doc_text(a);
                assert_string_equal(got, want);
                free(got);
                free(want);
            }
            if (rc == 0 || how == 1)
                crdt_doc_free(d);
            if (s->mismatch[0]) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "%s with allocation %ld failing (%s): the engine did a %s",
                         how == 0 ? "crdt_doc_load" : "crdt_doc_apply_update", n, crdt_strerror(rc),
                         s->mismatch);
                free(s);
                crdt_buf_dispose(&st);
                crdt_doc_free(a);
                crdt_doc_free(b);
                fail_msg("%s", msg);
                return; /* not reached: fail_msg() jumps out */
            }
            assert_int_equal(s->n, 0); /* nothing leaked */
            free(s);
            if (!failed)
                break;
            if (rc != 0)
                assert_int_equal(rc, CRDT_ENOMEM);
        }
        assert_true(n < MAX_N);
    }
    crdt_buf_dispose(&st);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* ---- tests -------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    fixture_t *f = malloc(sizeof(*f));
    if (f == NULL)
        return -1;
    fixture_make(f);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture_t *f = *state;
    fixture_dispose(f);
    free(f);
    return 0;
}

static void test_insert_enomem_leaves_doc_unchanged(void **state)
{
    const fixture_t *f = *state;
    faultsim("insert into base", f, setup_base, run_insert);
    faultsim("insert into an empty document", f, setup_empty, run_insert);
    faultsim("insert without update bytes", f, setup_full_held, run_insert_no_update);
    faultsim("insert of a 4 KiB paste", f, setup_base, run_insert_paste);
}

static void test_delete_enomem_leaves_doc_unchanged(void **state)
{
    const fixture_t *f = *state;
    faultsim("delete across many runs", f, setup_full, run_delete_many);
    faultsim("delete across many runs, with held operations", f, setup_full_held, run_delete_many);
    faultsim("delete one character", f, setup_base, run_delete_one);
}

static void test_apply_update_enomem_leaves_doc_unchanged(void **state)
{
    const fixture_t *f = *state;
    faultsim("apply a multi-client update", f, setup_base, run_apply_big);
    faultsim("apply a multi-client update to a document with new clients", f, setup_base_b,
             run_apply_full);
    faultsim("apply an update to an empty document", f, setup_empty, run_apply_full);
    faultsim("apply an update that is held", f, setup_full, run_apply_held);
    faultsim("apply an update that releases held operations", f, setup_full_held,
             run_apply_held_dep);
    faultsim("apply a held update again", f, setup_full_held, run_apply_held);
}

static void test_restore_enomem_leaves_doc_unchanged(void **state)
{
    const fixture_t *f = *state;
    faultsim("restore the base version", f, setup_full, run_restore);
    faultsim("restore the empty version", f, setup_base, run_restore_empty);
    faultsim("restore with held operations", f, setup_full_held, run_restore);
}

static void test_load_enomem_returns_no_doc(void **state)
{
    const fixture_t *f = *state;
    faultsim("load an encoded state", f, NULL, run_load_state);
    faultsim("load an update", f, NULL, run_load_update);
    faultsim("new", f, NULL, run_new);
}

static void test_diff_enomem_leaves_output_untouched(void **state)
{
    const fixture_t *f = *state;
    faultsim("diff against the base version", f, setup_full, run_diff);
    faultsim("diff against nothing", f, setup_full_held, run_diff_all);
    faultsim("encode_state", f, setup_full_held, run_encode_state);
    faultsim("state_vector", f, setup_full, run_state_vector);
}

static void test_text_enomem_leaves_output_untouched(void **state)
{
    const fixture_t *f = *state;
    faultsim("text", f, setup_full, run_text);
    faultsim("text_at", f, setup_full, run_text_at);
}

/* After a long life of edits and merges on one test allocator, freeing the
 * documents gives every byte back. */
static void test_doc_free_leaves_no_live_bytes(void **state)
{
    const fixture_t *f = *state;
    test_alloc_t ta;
    crdt_doc_t *a, *b, *c = NULL;
    crdt_buf_t u, t;
    test_alloc_init(&ta);
    a = load(&f->base, &ta.alloc);
    b = load(&f->base_b, &ta.alloc);
    assert_int_equal(crdt_doc_apply_update(a, f->big.base, f->big.len), 0);
    assert_int_equal(crdt_doc_apply_update(b, f->held.base, f->held.len), 0);
    assert_int_equal(crdt_doc_apply_update(b, f->full.base, f->full.len), 0);
    assert_int_equal(crdt_doc_restore(a, f->base_sv.base, f->base_sv.len, &u), 0);
    assert_int_equal(crdt_doc_apply_update(b, u.base, u.len), 0);
    crdt_buf_dispose(&u);
    assert_int_equal(crdt_doc_diff(b, NULL, 0, &u), 0);
    assert_int_equal(crdt_doc_load(9, &ta.alloc, u.base, u.len, &c), 0);
    crdt_buf_dispose(&u);
    assert_int_equal(crdt_doc_text(c, &t), 0);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
    crdt_buf_dispose(&t);
    assert_int_equal(test_alloc_live_bytes(&ta), 0);
    assert_int_equal(ta.live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_enomem_frees_blocks_with_their_size),
        cmocka_unit_test(test_insert_enomem_leaves_doc_unchanged),
        cmocka_unit_test(test_delete_enomem_leaves_doc_unchanged),
        cmocka_unit_test(test_apply_update_enomem_leaves_doc_unchanged),
        cmocka_unit_test(test_restore_enomem_leaves_doc_unchanged),
        cmocka_unit_test(test_load_enomem_returns_no_doc),
        cmocka_unit_test(test_diff_enomem_leaves_output_untouched),
        cmocka_unit_test(test_text_enomem_leaves_output_untouched),
        cmocka_unit_test(test_doc_free_leaves_no_live_bytes),
    };

    if (getenv("CMOCKA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
