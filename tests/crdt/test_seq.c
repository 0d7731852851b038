/* SPDX-License-Identifier: MIT */
/*
 * test_seq.c: white-box tests of crdt/seq.c, the order-statistic B+tree over a
 * document's items, driven through real documents (crdt_doc_new() and local
 * inserts and deletes, plus updates from a second replica). Thousands of
 * single-character inserts at random places and at the front split many
 * leaves and inner nodes, so the tree grows (doc->seq_height, one level at a
 * time). After such runs the module's own functions are compared with a naive
 * model: the items read along the leaf chain with crdt__seq_first/next give a
 * plain array of visible lengths, and crdt__seq_rank (items and visible units
 * before an item), crdt__seq_find_vis (the item holding a visible unit, with
 * and without the finger), crdt__seq_prev and crdt__seq_last must agree with
 * it, while crdt__seq_check verifies the inner counts. Edits alternating
 * between two distant places, backspace runs, and remote inserts landing in
 * other leaves check that the edit finger never goes stale: every step is
 * compared with a naive string model of the text. A tree built directly by
 * crdt_doc_load() (full leaves) keeps splitting correctly under edits.
 * Alternating inserts at the end and at the front must leave all but a few
 * leaves full (an item after the last one splits a full last leaf
 * unevenly; a full leaf fills a sibling before it splits). Local and remote
 * inserts into full leaves, at a leaf's first item too, and deletes after
 * them keep two replicas equal to a string model, with the tree checked
 * after every step.
 * Smaller runs call crdt_doc_check() after every operation. Randomized tests use fixed seeds and
 * print them on failure.
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

/* ---- naive text model: UTF-8 bytes, indexed in UTF-16 units ----------------- */

typedef struct {
    char *s;
    size_t n, cap;
} model_t;

static size_t char_len(uint8_t lead)
{
    return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

static size_t model_units(const model_t *m)
{
    size_t u = 0;
    for (size_t i = 0; i < m->n; i += char_len((uint8_t)m->s[i]))
        u += char_len((uint8_t)m->s[i]) == 4 ? 2 : 1;
    return u;
}

/* Byte offset of UTF-16 index `u` (which must be a character boundary). */
static size_t model_byte(const model_t *m, size_t u)
{
    size_t i = 0, at = 0;
    while (at < u) {
        assert_true(i < m->n);
        at += char_len((uint8_t)m->s[i]) == 4 ? 2 : 1;
        i += char_len((uint8_t)m->s[i]);
    }
    assert_int_equal(at, u);
    return i;
}

static void model_insert(model_t *m, size_t u, const char *text)
{
    size_t b = model_byte(m, u), n = strlen(text);
    if (m->n + n + 1 > m->cap) {
        m->cap = (m->n + n + 1) * 2;
        m->s = realloc(m->s, m->cap);
        assert_non_null(m->s);
    }
    memmove(m->s + b + n, m->s + b, m->n - b);
    memcpy(m->s + b, text, n);
    m->n += n;
    m->s[m->n] = 0;
}

static void model_delete(model_t *m, size_t u, size_t len)
{
    size_t b = model_byte(m, u), e = model_byte(m, u + len);
    memmove(m->s + b, m->s + e, m->n - e);
    m->n -= e - b;
    m->s[m->n] = 0;
}

static void model_free(model_t *m)
{
    free(m->s);
    memset(m, 0, sizeof(*m));
}

/* ---- documents ----------------------------------------------------------------- */

static test_alloc_t g_alloc;

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_new(client, &g_alloc.alloc, &doc), 0);
    return doc;
}

static int setup(void **state)
{
    (void)state;
    test_alloc_init(&g_alloc);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (test_alloc_live_bytes(&g_alloc) != 0) {
        fprintf(stderr, "%zu bytes leaked\n", test_alloc_live_bytes(&g_alloc));
        return -1;
    }
    return 0;
}

static void assert_text_is(const crdt_doc_t *doc, const model_t *m)
{
    crdt_buf_t b;
    assert_int_equal(crdt_doc_text(doc, &b), 0);
    if (b.len != m->n || memcmp(b.base, m->s ? m->s : "", m->n) != 0)
        fail_msg("text differs from the model (%zu vs %zu bytes)", b.len, m->n);
    crdt_buf_dispose(&b);
    assert_int_equal(crdt_doc_length(doc), model_units(m));
    assert_int_equal(crdt_doc_utf8_length(doc), m->n);
}

static void ins(crdt_doc_t *doc, model_t *m, size_t u, const char *text)
{
    int rc = crdt_doc_insert(doc, u, text, strlen(text), NULL);
    if (rc != 0)
        fail_msg("insert(%zu, \"%s\"): %s", u, text, crdt_strerror(rc));
    if (m)
        model_insert(m, u, text);
}

static void del(crdt_doc_t *doc, model_t *m, size_t u, size_t len)
{
    int rc = crdt_doc_delete(doc, u, len, NULL);
    if (rc != 0)
        fail_msg("delete(%zu, %zu): %s", u, len, crdt_strerror(rc));
    if (m)
        model_delete(m, u, len);
}

/* Characters of 1 to 4 UTF-8 bytes (1 or 2 UTF-16 units). */
static const char *const alphabet[] = {
    "a", "b", "c", "x", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};

/* A random index that is a character boundary of the model. */
static size_t boundary(rng_t *r, const model_t *m)
{
    size_t chars = 0, k, i = 0, u = 0;
    for (size_t j = 0; j < m->n; j += char_len((uint8_t)m->s[j]))
        chars++;
    k = rng_below(r, (uint32_t)chars + 1);
    while (k-- > 0) {
        u += char_len((uint8_t)m->s[i]) == 4 ? 2 : 1;
        i += char_len((uint8_t)m->s[i]);
    }
    return u;
}

/* UTF-16 index of the model's character number `k` (clamped to the end). */
static size_t unit_of_char(const model_t *m, size_t k)
{
    size_t i = 0, u = 0;
    while (k-- > 0 && i < m->n) {
        u += char_len((uint8_t)m->s[i]) == 4 ? 2 : 1;
        i += char_len((uint8_t)m->s[i]);
    }
    return u;
}

/* Number of characters in the model. */
static size_t model_chars(const model_t *m)
{
    size_t c = 0;
    for (size_t j = 0; j < m->n; j += char_len((uint8_t)m->s[j]))
        c++;
    return c;
}

/* UTF-16 units of the up to `k` characters starting at boundary `u`. */
static size_t units_of_chars(const model_t *m, size_t u, size_t k)
{
    size_t i = model_byte(m, u), n = 0;
    while (k-- > 0 && i < m->n) {
        n += char_len((uint8_t)m->s[i]) == 4 ? 2 : 1;
        i += char_len((uint8_t)m->s[i]);
    }
    return n;
}

/* ---- the model of the tree: items in leaf-chain order ---------------------------- */

/*
 * Reads the items along the leaf chain (crdt__seq_first, crdt__seq_next) into
 * arrays of item indexes and visible lengths, checks that the walk back with
 * crdt__seq_prev is its mirror image, and that crdt__seq_rank and
 * crdt__seq_find_vis agree with the prefix sums of the visible lengths.
 * `probes` random visible units are looked up (all of them when 0).
 */
static void check_against_naive(crdt_doc_t *doc, rng_t *r, size_t probes)
{
    size_t n = 0, cap = doc->live_items + 1, total = 0;
    uint32_t *items = malloc(cap * sizeof(uint32_t));
    uint32_t *vis = malloc(cap * sizeof(uint32_t));
    uint64_t *before = malloc((cap + 1) * sizeof(uint64_t));
    assert_non_null(items);
    assert_non_null(vis);
    assert_non_null(before);

    assert_int_equal(crdt__seq_check(doc), 0);
    for (uint32_t it = crdt__seq_first(doc); it != CRDT__NONE; it = crdt__seq_next(doc, it)) {
        const crdt__item_t *x = &ITEM(doc, it);
        if (n == cap)
            fail_msg("the leaf chain holds more than the %u live items", doc->live_items);
        items[n] = it;
        vis[n] = x->deleted ? 0 : crdt__utf8_u16_prefix(crdt__item_text(doc, x), x->ascii, x->len);
        before[n] = total;
        total += vis[n];
        n++;
    }
    before[n] = total;
    assert_int_equal(n, doc->live_items);
    assert_int_equal(total, crdt_doc_length(doc));
    assert_int_equal(total, doc->vis_len);
    if (n == 0) {
        assert_int_equal(crdt__seq_first(doc), CRDT__NONE);
        assert_int_equal(crdt__seq_last(doc), CRDT__NONE);
    } else {
        assert_int_equal(crdt__seq_last(doc), items[n - 1]);
        assert_int_equal(crdt__seq_prev(doc, items[0]), CRDT__NONE);
        assert_int_equal(SEQ_LEAF(doc, 0).items[0], items[0]); /* leaf 0 is leftmost */
    }
    /* Backwards. */
    {
        size_t k = n;
        for (uint32_t it = crdt__seq_last(doc); it != CRDT__NONE; it = crdt__seq_prev(doc, it)) {
            assert_true(k > 0);
            assert_int_equal(it, items[--k]);
        }
        assert_int_equal(k, 0);
    }
    /* Ranks. */
    for (size_t k = 0; k < n; k++) {
        uint32_t vb = 0xdeadbeef, rank = crdt__seq_rank(doc, items[k], &vb);
        if (rank != k || vb != before[k])
            fail_msg("item %u at %zu: rank %u, %u units before (want %zu, %llu)", items[k], k, rank,
                     vb, k, (unsigned long long)before[k]);
        assert_int_equal(crdt__seq_rank(doc, items[k], NULL), k);
    }
    /* Index lookups, without touching the finger. */
    {
        size_t k = 0;
        for (size_t p = 0; p < total; p++) {
            uint32_t pos = (uint32_t)p, off = 0xdeadbeef, got;
            if (probes) {
                if (p >= probes)
                    break;
                pos = rng_below(r, (uint32_t)total);
                /* Binary search for the item holding pos. */
                size_t lo = 0, hi = n;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (before[mid + 1] <= pos)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                k = lo;
            } else {
                while (before[k + 1] <= pos)
                    k++;
            }
            got = crdt__seq_find_vis(doc, pos, &off, NULL);
            if (got != items[k] || off != pos - before[k])
                fail_msg("find_vis(%u): item %u offset %u, want item %u offset %llu", pos, got, off,
                         items[k], (unsigned long long)(pos - before[k]));
        }
    }
    free(items);
    free(vis);
    free(before);
}

/* Looks up `pos` with the document as the finger to update, then checks the
 * finger is consistent (crdt__seq_check verifies it) and answers the same. */
static void find_with_finger(crdt_doc_t *doc, uint32_t pos)
{
    uint32_t off1, off2, a, b;
    a = crdt__seq_find_vis(doc, pos, &off1, NULL);
    b = crdt__seq_find_vis(doc, pos, &off2, doc);
    assert_int_equal(a, b);
    assert_int_equal(off1, off2);
    assert_int_equal(crdt__seq_check(doc), 0);
    b = crdt__seq_find_vis(doc, pos, &off2, NULL);
    assert_int_equal(a, b);
    assert_int_equal(off1, off2);
}

/* Item counts of the leaves in chain order (white-box); returns how many. */
static size_t leaf_sizes(const crdt_doc_t *doc, uint32_t *sizes, size_t max)
{
    size_t n = 0;
    for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(doc, l).next, n++)
        if (n < max)
            sizes[n] = SEQ_LEAF(doc, l).n;
    return n;
}

/* Applies `u` (an update from one replica) to the other one, and frees it. */
static void pass_on(crdt_doc_t *to, crdt_buf_t *u)
{
    int rc = crdt_doc_apply_update(to, u->base, u->len);
    if (rc != 0)
        fail_msg("apply_update: %s", crdt_strerror(rc));
    crdt_buf_dispose(u);
}

/* Alternating inserts at the end and at the front: every character is an
 * item of its own (neither can continue the one before it). */
static void build_ends(crdt_doc_t *doc, model_t *m, int count)
{
    for (int i = 0; i < count; i++)
        ins(doc, m, i % 2 ? 0 : model_units(m), alphabet[i % 7]);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_seq_first_last_empty_document(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    rng_t r;
    (void)state;
    rng_init(&r, 1);
    assert_int_equal(crdt__seq_first(doc), CRDT__NONE);
    assert_int_equal(crdt__seq_last(doc), CRDT__NONE);
    assert_int_equal(doc->seq_height, 0);
    assert_int_equal(crdt__seq_check(doc), 0);
    check_against_naive(doc, &r, 0);
    crdt_doc_free(doc);
}

static void test_seq_next_prev_single_item(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    model_t m = {0};
    rng_t r;
    uint32_t it, off;
    (void)state;
    rng_init(&r, 2);
    ins(doc, &m, 0, "hello");
    it = crdt__seq_first(doc);
    assert_int_not_equal(it, CRDT__NONE);
    assert_int_equal(crdt__seq_last(doc), it);
    assert_int_equal(crdt__seq_next(doc, it), CRDT__NONE);
    assert_int_equal(crdt__seq_prev(doc, it), CRDT__NONE);
    assert_int_equal(crdt__seq_rank(doc, it, &off), 0);
    assert_int_equal(off, 0);
    for (uint32_t p = 0; p < 5; p++) {
        assert_int_equal(crdt__seq_find_vis(doc, p, &off, NULL), it);
        assert_int_equal(off, p);
    }
    /* Typing on extends the same item. */
    ins(doc, &m, 5, " world");
    assert_int_equal(doc->live_items, 1);
    assert_text_is(doc, &m);
    check_against_naive(doc, &r, 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_find_vis_skips_deleted_items(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    model_t m = {0};
    rng_t r;
    uint32_t off, it;
    (void)state;
    rng_init(&r, 3);
    ins(doc, &m, 0, "abcdefgh");
    del(doc, &m, 2, 3); /* ab[cde]fgh: three items, the middle one deleted */
    assert_text_is(doc, &m);
    assert_int_equal(doc->live_items, 3);
    it = crdt__seq_find_vis(doc, 2, &off, NULL);
    assert_false(ITEM(doc, it).deleted);
    assert_int_equal(off, 0);
    assert_int_equal(ITEM(doc, it).clock, 5); /* 'f' */
    it = crdt__seq_find_vis(doc, 1, &off, NULL);
    assert_int_equal(ITEM(doc, it).clock, 0);
    assert_int_equal(off, 1);
    check_against_naive(doc, &r, 0);
    /* Everything deleted: items stay as tombstones, nothing is visible. */
    del(doc, &m, 0, 5);
    assert_int_equal(crdt_doc_length(doc), 0);
    assert_true(doc->live_items >= 1);
    check_against_naive(doc, &r, 0);
    assert_int_equal(crdt_doc_check(doc), 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_insert_random_positions_splits_nodes(void **state)
{
    crdt_doc_t *doc = new_doc(7);
    model_t m = {0};
    rng_t r;
    uint32_t height = 0, leaves0;
    (void)state;
    rng_init(&r, 0x5e9);
    leaves0 = doc->seq_leaves.len;
    for (int i = 0; i < 14000; i++) {
        size_t u = boundary(&r, &m);
        char s[13] = "";
        /* One to three characters: later inserts land inside these runs and
         * split them. */
        for (uint32_t k = rng_below(&r, 3) + 1; k > 0; k--)
            strcat(s, alphabet[rng_below(&r, 7)]);
        ins(doc, &m, u, s);
        if (doc->seq_height < height)
            fail_msg("seed %#llx, insert %d: tree height shrank", (unsigned long long)r.seed, i);
        if (doc->seq_height > height + 1)
            fail_msg("seed %#llx, insert %d: height jumped", (unsigned long long)r.seed, i);
        height = doc->seq_height;
        if (i % 500 == 499) {
            if (crdt_doc_check(doc) != 0)
                fail_msg("seed %#llx: crdt_doc_check failed after insert %d",
                         (unsigned long long)r.seed, i);
            assert_text_is(doc, &m);
        }
    }
    /* Inserts inside runs split them: more items than inserts. */
    assert_true(doc->live_items > 16000);
    assert_true(doc->seq_leaves.len > leaves0 + 500);
    assert_true(doc->seq_inners.len > 20);
    assert_true(doc->seq_height >= 3);
    assert_text_is(doc, &m);
    check_against_naive(doc, &r, 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_insert_at_front_grows_three_levels(void **state)
{
    crdt_doc_t *doc = new_doc(3);
    model_t m = {0};
    rng_t r;
    uint32_t height = 0, raised = 0;
    (void)state;
    rng_init(&r, 4);
    /* No left neighbour: every character is an item of its own, always
     * inserted into leaf 0, so splits leave half-full nodes. */
    for (int i = 0; i < 20000; i++) {
        ins(doc, NULL, 0, i % 2 ? "y" : "z");
        if (doc->seq_height != height) {
            assert_int_equal(doc->seq_height, height + 1);
            raised++;
            height = doc->seq_height;
            assert_int_equal(crdt__seq_check(doc), 0);
        }
    }
    assert_int_equal(doc->live_items, 20000);
    assert_true(doc->seq_height >= 3);
    assert_int_equal(raised, doc->seq_height);
    {
        crdt_buf_t b;
        assert_int_equal(crdt_doc_text(doc, &b), 0);
        assert_int_equal(b.len, 20000);
        for (size_t i = 0; i < b.len; i++)
            assert_int_equal(b.base[i], (20000 - 1 - i) % 2 ? 'y' : 'z');
        crdt_buf_dispose(&b);
    }
    check_against_naive(doc, &r, 20000);
    assert_int_equal(crdt_doc_check(doc), 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_rank_matches_naive_model_with_deletes(void **state)
{
    crdt_doc_t *doc = new_doc(11);
    model_t m = {0};
    rng_t r;
    (void)state;
    rng_init(&r, 0x4a2c);
    for (int i = 0; i < 6000; i++) {
        size_t len = model_units(&m);
        if (len > 10 && rng_below(&r, 3) == 0) {
            size_t a = boundary(&r, &m), b = boundary(&r, &m), t;
            if (a > b)
                t = a, a = b, b = t;
            if (b - a > 40)
                b = a; /* keep ranges short */
            if (b > a)
                del(doc, &m, a, b - a);
        } else {
            size_t u = boundary(&r, &m);
            ins(doc, &m, u, alphabet[rng_below(&r, 7)]);
        }
        if (i % 1000 == 999) {
            check_against_naive(doc, &r, 0);
            assert_text_is(doc, &m);
        }
    }
    assert_true(doc->seq_height >= 1);
    check_against_naive(doc, &r, 0);
    assert_int_equal(crdt_doc_check(doc), 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_check_after_every_operation(void **state)
{
    rng_t r;
    (void)state;
    for (uint64_t seed = 100; seed < 104; seed++) {
        crdt_doc_t *doc = new_doc(seed);
        model_t m = {0};
        rng_init(&r, seed);
        for (int i = 0; i < 1200; i++) {
            size_t len = model_units(&m);
            uint32_t op = rng_below(&r, 10);
            if (len > 0 && op < 3) {
                size_t a = boundary(&r, &m), k = units_of_chars(&m, a, rng_below(&r, 8) + 1);
                if (k > 0)
                    del(doc, &m, a, k);
            } else if (len > 0 && op < 4) {
                /* A backspace run at a random place. */
                size_t u = boundary(&r, &m);
                for (int k = 0; k < 4 && u > 0; k++) {
                    size_t s = model_byte(&m, u);
                    do
                        s--;
                    while ((m.s[s] & 0xc0) == 0x80);
                    {
                        size_t w = char_len((uint8_t)m.s[s]) == 4 ? 2 : 1;
                        del(doc, &m, u - w, w);
                        u -= w;
                    }
                    if (crdt_doc_check(doc) != 0)
                        fail_msg("seed %llu, op %d: check failed in a backspace run",
                                 (unsigned long long)seed, i);
                }
            } else {
                size_t u = boundary(&r, &m);
                int k = (int)rng_below(&r, 4) + 1;
                for (int j = 0; j < k; j++) {
                    const char *c = alphabet[rng_below(&r, 7)];
                    ins(doc, &m, u, c);
                    u += strlen(c) == 4 ? 2 : 1;
                }
            }
            if (crdt_doc_check(doc) != 0)
                fail_msg("seed %llu: crdt_doc_check failed after op %d", (unsigned long long)seed,
                         i);
            assert_text_is(doc, &m);
        }
        check_against_naive(doc, &r, 0);
        crdt_doc_free(doc);
        model_free(&m);
    }
}

static void test_seq_find_vis_finger_alternating_distant_edits(void **state)
{
    crdt_doc_t *doc = new_doc(21);
    model_t m = {0};
    rng_t r;
    (void)state;
    rng_init(&r, 0xf1);
    /* A long text of many items (front inserts), so the two places are in
     * different leaves and subtrees. */
    for (int i = 0; i < 3000; i++)
        ins(doc, &m, 0, alphabet[i % 4]);
    assert_true(doc->seq_height >= 1);
    for (int i = 0; i < 3000; i++) {
        size_t chars = model_chars(&m);
        size_t near = unit_of_char(&m, 10 + (size_t)(i % 7));
        size_t far = unit_of_char(&m, chars - 10 - (size_t)(i % 5));
        size_t at = i % 2 ? near : far;
        switch (rng_below(&r, 4)) {
        case 0:
        case 1:
            ins(doc, &m, at, alphabet[rng_below(&r, 7)]);
            break;
        case 2:
            /* Delete the character at `at`. */
            del(doc, &m, at, units_of_chars(&m, at, 1));
            break;
        default:
            /* Backspace. */
            {
                size_t s = model_byte(&m, at);
                do
                    s--;
                while ((m.s[s] & 0xc0) == 0x80);
                del(doc, &m, at - (char_len((uint8_t)m.s[s]) == 4 ? 2 : 1),
                    char_len((uint8_t)m.s[s]) == 4 ? 2 : 1);
            }
            break;
        }
        if (crdt__seq_check(doc) != 0)
            fail_msg("seed %#llx, step %d: crdt__seq_check failed", (unsigned long long)r.seed, i);
        assert_text_is(doc, &m);
    }
    assert_int_equal(crdt_doc_check(doc), 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_find_vis_finger_typing_then_jump(void **state)
{
    crdt_doc_t *doc = new_doc(5);
    model_t m = {0};
    (void)state;
    for (int i = 0; i < 2000; i++)
        ins(doc, &m, 0, "q");
    /* Type a word at the far end, then one near the start, then continue the
     * first: each jump must find its place afresh. */
    for (int round = 0; round < 200; round++) {
        size_t len = model_units(&m);
        size_t far = len - 3, near = 3 + (size_t)round % 5;
        const char *w = round % 3 == 0 ? "\xf0\x9f\x98\x80" : round % 3 == 1 ? "\xc3\xa9" : "k";
        ins(doc, &m, far, w);
        ins(doc, &m, far + (strlen(w) == 4 ? 2 : 1), "t");
        del(doc, &m, far + (strlen(w) == 4 ? 2 : 1) + 1, 1); /* the char after "t" */
        ins(doc, &m, near, "n");
        del(doc, &m, near - 1, 1); /* backspace before "n" */
        if (crdt_doc_check(doc) != 0)
            fail_msg("round %d: crdt_doc_check failed", round);
        assert_text_is(doc, &m);
    }
    {
        rng_t r;
        rng_init(&r, 6);
        check_against_naive(doc, &r, 0);
    }
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_find_vis_finger_updates_consistently(void **state)
{
    crdt_doc_t *doc = new_doc(9);
    model_t m = {0};
    rng_t r;
    (void)state;
    rng_init(&r, 0xbee);
    for (int i = 0; i < 4000; i++)
        ins(doc, &m, boundary(&r, &m), alphabet[rng_below(&r, 4)]);
    for (int i = 0; i < 3000; i++) {
        uint32_t len = (uint32_t)crdt_doc_length(doc);
        /* Lookups that move the finger, interleaved with edits elsewhere. */
        find_with_finger(doc, rng_below(&r, len));
        find_with_finger(doc, i % 2 ? 0 : len - 1);
        if (i % 10 == 0) {
            size_t u = boundary(&r, &m);
            ins(doc, &m, u, "w");
            find_with_finger(doc, (uint32_t)u);
        }
    }
    assert_text_is(doc, &m);
    check_against_naive(doc, &r, 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_find_vis_finger_survives_remote_inserts(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    model_t m = {0};
    rng_t r;
    (void)state;
    rng_init(&r, 0x2e2);
    /* Both start from the same 2000 characters. */
    for (int i = 0; i < 2000; i++)
        ins(a, &m, 0, alphabet[i % 4]);
    {
        crdt_buf_t s;
        assert_int_equal(crdt_doc_encode_state(a, &s), 0);
        assert_int_equal(crdt_doc_apply_update(b, s.base, s.len), 0);
        crdt_buf_dispose(&s);
    }
    /* a types at the end; b inserts near the start (another leaf) and its
     * updates reach a between a's keystrokes, shifting a's place. */
    for (int i = 0; i < 800; i++) {
        crdt_buf_t u;
        size_t len = model_units(&m), at = unit_of_char(&m, 5 + rng_below(&r, 20));
        const char *c = alphabet[rng_below(&r, 7)];
        ins(a, &m, len - 2, "t");
        assert_int_equal(crdt_doc_insert(b, at, c, strlen(c), &u), 0);
        assert_int_equal(crdt_doc_apply_update(a, u.base, u.len), 0);
        crdt_buf_dispose(&u);
        model_insert(&m, at, c);
        if (i % 4 == 0) {
            assert_int_equal(crdt_doc_delete(b, at, strlen(c) == 4 ? 2 : 1, &u), 0);
            assert_int_equal(crdt_doc_apply_update(a, u.base, u.len), 0);
            crdt_buf_dispose(&u);
            model_delete(&m, at, strlen(c) == 4 ? 2 : 1);
        }
        /* b's inserts went left of a's place: a's next edit must not use
         * the visible offset remembered before them. */
        del(a, &m, model_units(&m) - 1, 1);
        if (crdt__seq_check(a) != 0)
            fail_msg("seed %#llx, step %d: crdt__seq_check failed", (unsigned long long)r.seed, i);
        if (i % 20 == 0)
            assert_text_is(a, &m);
    }
    assert_text_is(a, &m);
    assert_int_equal(crdt_doc_check(a), 0);
    check_against_naive(a, &r, 0);
    crdt_doc_free(a);
    crdt_doc_free(b);
    model_free(&m);
}

static void test_seq_insert_splits_tree_built_by_load(void **state)
{
    crdt_doc_t *a = new_doc(1), *b;
    model_t m = {0};
    rng_t r;
    crdt_buf_t st;
    (void)state;
    rng_init(&r, 0x10ad);
    /* 12000 one-character items: the loaded tree has full leaves. */
    for (int i = 0; i < 12000; i++)
        ins(a, &m, 0, alphabet[i % 7]);
    assert_int_equal(crdt_doc_encode_state(a, &st), 0);
    assert_int_equal(crdt_doc_load(2, &g_alloc.alloc, st.base, st.len, &b), 0);
    crdt_buf_dispose(&st);
    crdt_doc_free(a);
    assert_int_equal(crdt_doc_check(b), 0);
    assert_true(b->seq_height >= 1);
    check_against_naive(b, &r, 3000);
    assert_text_is(b, &m);
    /* Random inserts and deletes on it split the built nodes. */
    for (int i = 0; i < 6000; i++) {
        size_t u = boundary(&r, &m);
        if (i % 4 == 3) {
            size_t w = units_of_chars(&m, u, rng_below(&r, 3) + 1);
            if (w > 0)
                del(b, &m, u, w);
        } else {
            ins(b, &m, u, alphabet[rng_below(&r, 7)]);
        }
        if (i % 1000 == 999) {
            if (crdt_doc_check(b) != 0)
                fail_msg("seed %#llx: check failed after op %d", (unsigned long long)r.seed, i);
            assert_text_is(b, &m);
        }
    }
    check_against_naive(b, &r, 0);
    crdt_doc_free(b);
    model_free(&m);
}

static void test_seq_appends_and_front_inserts_fill_leaves(void **state)
{
    crdt_doc_t *doc = new_doc(5);
    model_t m = {0};
    rng_t r;
    uint32_t sizes[512];
    size_t n, full = 0;
    (void)state;
    rng_init(&r, 0xf111);
    build_ends(doc, &m, 8000);
    assert_int_equal(doc->live_items, 8000);
    assert_int_equal(crdt_doc_check(doc), 0);
    assert_text_is(doc, &m);
    /* An item after the last leaf's last one leaves that leaf with all but
     * one of its items; a full leaf 0 fills its right sibling before it
     * splits. Only leaf 0, the last leaf and the leaf where the two ends
     * meet may be short. */
    n = leaf_sizes(doc, sizes, 512);
    for (size_t j = 0; j < n && j < 512; j++)
        full += sizes[j] >= CRDT__SEQ_LEAF - 1;
    if (full + 3 < n)
        fail_msg("%zu of %zu leaves hold fewer than %u items", n - full, n, CRDT__SEQ_LEAF - 1);
    assert_true(SEQ_LEAF(doc, 0).n >= 2 && sizes[n - 1] >= 2);
    check_against_naive(doc, &r, 0);
    crdt_doc_free(doc);
    model_free(&m);
}

static void test_seq_full_leaves_shift_and_split_match_model(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    model_t m = {0};
    rng_t r;
    crdt_buf_t u;
    uint32_t sizes[1024];
    size_t leaves0;
    (void)state;
    rng_init(&r, 0x5eb5);
    /* Full leaves, the same on both replicas. */
    build_ends(a, &m, 6000);
    assert_int_equal(crdt_doc_encode_state(a, &u), 0);
    pass_on(b, &u);
    leaves0 = leaf_sizes(a, sizes, 1024);
    /* Local and remote inserts inside full leaves (a sibling with room
     * takes items, or the leaf splits), inserts at the first item of a
     * leaf (local ones go after the previous leaf's last item, remote ones
     * before the leaf's first), then deletes: removes after the shifts. */
    for (int i = 0; i < 5000; i++) {
        uint32_t op = rng_below(&r, 10);
        const char *c = alphabet[rng_below(&r, 7)];
        size_t at;
        if (op < 3 || (op < 5 && i < 2500)) {
            at = boundary(&r, &m);
            assert_int_equal(crdt_doc_insert(a, at, c, strlen(c), &u), 0);
            pass_on(b, &u);
        } else if (op < 5 || (op < 7 && i < 2500)) {
            at = boundary(&r, &m);
            assert_int_equal(crdt_doc_insert(b, at, c, strlen(c), &u), 0);
            pass_on(a, &u);
        } else if (op < 7) {
            /* At a leaf's first item (its visible units before it). */
            size_t nl = leaf_sizes(a, NULL, 0), j = rng_below(&r, (uint32_t)nl);
            uint32_t l = 0, before = 0;
            while (j-- > 0)
                l = SEQ_LEAF(a, l).next;
            crdt__seq_rank(a, SEQ_LEAF(a, l).items[0], &before);
            at = before;
            if (model_byte(&m, at) < m.n && ((uint8_t)m.s[model_byte(&m, at)] & 0xc0) == 0x80)
                continue;
            assert_int_equal(crdt_doc_insert(op == 5 ? a : b, at, c, strlen(c), &u), 0);
            pass_on(op == 5 ? b : a, &u);
        } else {
            size_t w;
            at = boundary(&r, &m);
            w = units_of_chars(&m, at, rng_below(&r, 3) + 1);
            if (w == 0)
                continue;
            assert_int_equal(crdt_doc_delete(op == 7 ? b : a, at, w, &u), 0);
            pass_on(op == 7 ? a : b, &u);
            model_delete(&m, at, w);
            c = NULL;
        }
        if (c)
            model_insert(&m, at, c);
        if (crdt__seq_check(a) != 0 || crdt__seq_check(b) != 0)
            fail_msg("seed %#llx, step %d (op %u at %zu): crdt__seq_check failed",
                     (unsigned long long)r.seed, i, op, at);
        if (i % 250 == 249) {
            if (crdt_doc_check(a) != 0 || crdt_doc_check(b) != 0)
                fail_msg("seed %#llx, step %d: crdt_doc_check failed", (unsigned long long)r.seed,
                         i);
            assert_text_is(a, &m);
            assert_text_is(b, &m);
        }
    }
    assert_text_is(a, &m);
    assert_text_is(b, &m);
    check_against_naive(a, &r, 0);
    check_against_naive(b, &r, 0);
    /* The shifts and splits happened (white-box). */
    if (leaf_sizes(a, NULL, 0) <= leaves0)
        fail_msg("seed %#llx: no leaf was added", (unsigned long long)r.seed);
    crdt_doc_free(a);
    crdt_doc_free(b);
    model_free(&m);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_seq_first_last_empty_document),
        T(test_seq_next_prev_single_item),
        T(test_seq_find_vis_skips_deleted_items),
        T(test_seq_insert_random_positions_splits_nodes),
        T(test_seq_insert_at_front_grows_three_levels),
        T(test_seq_rank_matches_naive_model_with_deletes),
        T(test_seq_check_after_every_operation),
        T(test_seq_find_vis_finger_alternating_distant_edits),
        T(test_seq_find_vis_finger_typing_then_jump),
        T(test_seq_find_vis_finger_updates_consistently),
        T(test_seq_find_vis_finger_survives_remote_inserts),
        T(test_seq_insert_splits_tree_built_by_load),
        T(test_seq_appends_and_front_inserts_fill_leaves),
        T(test_seq_full_leaves_shift_and_split_match_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
