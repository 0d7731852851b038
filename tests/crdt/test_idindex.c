/* SPDX-License-Identifier: MIT */
/*
 * test_idindex.c: white-box tests of crdt/idindex.c, the id index: one
 * B+tree per client from clocks to item values. Each test takes the empty
 * index of a fresh document with NCLIENTS clients (crdt_doc_new() calls
 * crdt__idx_init()) and drives crdt__idx_reserve/insert/remove/rekey/
 * find_le/seek/next on it directly, with values that name nothing in the
 * document; so only crdt__idx_check() (never crdt_doc_check()) judges the
 * structure. A model (a sorted array of (client, clock) keys and values)
 * gives the expected answers: find_le returns the greatest key <= the probe
 * when it has the probe's client and NONE otherwise; seek/next walk one
 * client's keys in order across leaves; inserts of distinct keys in random,
 * ascending and descending order grow the trees to several levels; removes
 * (of a leaf's first key too, which
 * changes the minimum keys kept in inner nodes) and rekeys keep the check
 * passing. Ascending keys (appends) must leave every leaf but the last with
 * all but one key; keys inserted into full leaves (inside, right after a
 * leaf's last key, right before a leaf's first) go to a sibling with room
 * or split the leaf, and removes after them keep matching the model. Randomized tests use fixed
 * seeds and print them on failure; the documents use the counting test allocator and must give back
 * every byte.
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

/* ---- model: keys and values sorted by key ------------------------------------ */

typedef struct {
    uint64_t key;
    uint32_t val;
} entry_t;

typedef struct {
    entry_t *e;
    size_t n, cap;
} model_t;

static uint64_t key_of(uint32_t client, uint32_t clock)
{
    return (uint64_t)client << 32 | clock;
}

/* First index with key >= k. */
static size_t model_lower(const model_t *m, uint64_t k)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->e[mid].key < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool model_has(const model_t *m, uint64_t k)
{
    size_t i = model_lower(m, k);
    return i < m->n && m->e[i].key == k;
}

static void model_insert(model_t *m, uint64_t k, uint32_t val)
{
    size_t i = model_lower(m, k);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->e = realloc(m->e, m->cap * sizeof(entry_t));
        assert_non_null(m->e);
    }
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(entry_t));
    m->e[i].key = k;
    m->e[i].val = val;
    m->n++;
}

static void model_remove_at(model_t *m, size_t i)
{
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(entry_t));
    m->n--;
}

static void model_free(model_t *m)
{
    free(m->e);
    memset(m, 0, sizeof(*m));
}

/* ---- fixture --------------------------------------------------------------------- */

typedef struct {
    test_alloc_t ta;
    crdt_doc_t *doc;
    model_t m;
} fix_t;

/* Clients 0 .. NCLIENTS-1 exist in every fixture's document. */
#define NCLIENTS 8

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(fix_t));
    if (f == NULL)
        return -1;
    test_alloc_init(&f->ta);
    if (crdt_doc_new(1, &f->ta.alloc, &f->doc) != 0 ||
        crdt__client_reserve(f->doc, NCLIENTS - 1) != 0)
        return -1;
    for (uint64_t id = 2; id <= NCLIENTS; id++)
        crdt__client_add(f->doc, id);
    *state = f;
    return 0;
}

/* Height of client `c`'s tree. */
static uint32_t height_of(const fix_t *f, uint32_t c)
{
    return CLIENT(f->doc, c).idx_height;
}

/* The tallest client tree. */
static uint32_t max_height(const fix_t *f)
{
    uint32_t h = 0;
    for (uint32_t c = 0; c < NCLIENTS; c++)
        if (height_of(f, c) > h)
            h = height_of(f, c);
    return h;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    crdt_doc_free(f->doc);
    model_free(&f->m);
    if (test_alloc_live_bytes(&f->ta) != 0) {
        fprintf(stderr, "%zu bytes leaked\n", test_alloc_live_bytes(&f->ta));
        free(f);
        return -1;
    }
    free(f);
    return 0;
}

/* A new live item of client `client` starting at `clock`: an index entry's
 * value is an item, and its key is that item's clock. */
static uint32_t new_item(fix_t *f, uint32_t client, uint32_t clock)
{
    uint32_t it;
    crdt__item_t *x;
    assert_int_equal(crdt__pool_reserve(f->doc, &f->doc->items, sizeof(crdt__item_t), 1), 0);
    it = crdt__item_new(f->doc);
    x = &ITEM(f->doc, it);
    memset(x, 0, sizeof(*x));
    x->client = client;
    x->clock = clock;
    x->len = 1;
    x->leaf = CRDT__NO_LEAF;
    return it;
}

/* Adds the key (client, clock) for a new item; returns the item. */
static uint32_t idx_add(fix_t *f, uint32_t client, uint32_t clock)
{
    uint32_t val = new_item(f, client, clock);
    assert_int_equal(crdt__idx_reserve(f->doc, 1), 0);
    crdt__idx_insert(f->doc, client, clock, val);
    model_insert(&f->m, key_of(client, clock), val);
    return val;
}

/* Moves model entry i's item to clock `to` and re-keys the index after it,
 * as the document does. */
static void idx_rekey(fix_t *f, size_t i, uint32_t to)
{
    uint32_t c = (uint32_t)(f->m.e[i].key >> 32), from = (uint32_t)f->m.e[i].key;
    ITEM(f->doc, f->m.e[i].val).clock = to;
    crdt__idx_rekey(f->doc, f->m.e[i].val, from);
    f->m.e[i].key = key_of(c, to);
}

#define assert_idx_ok(f)                                                                           \
    do {                                                                                           \
        assert_int_equal(crdt__idx_check((f)->doc), 0);                                            \
        assert_int_equal((f)->doc->idx_count, (f)->m.n);                                           \
    } while (0)

/* Every client's index, walked from its start, equals the model. */
static void assert_iter_all(const fix_t *f)
{
    size_t i = 0;
    for (uint32_t c = 0; c < NCLIENTS; c++) {
        crdt__idx_iter_t it;
        uint32_t k, v;
        crdt__idx_seek(f->doc, c, 0, &it);
        while (crdt__idx_next(f->doc, &it, &k, &v)) {
            if (i >= f->m.n)
                fail_msg("iteration yields more than the %zu keys", f->m.n);
            if (key_of(c, k) != f->m.e[i].key || v != f->m.e[i].val)
                fail_msg("entry %zu: got (%u, %u) -> %u, want (%u, %u) -> %u", i, c, k, v,
                         (uint32_t)(f->m.e[i].key >> 32), (uint32_t)f->m.e[i].key, f->m.e[i].val);
            i++;
        }
        assert_false(crdt__idx_next(f->doc, &it, &k, &v)); /* stays at the end */
    }
    assert_int_equal(i, f->m.n);
}

/* find_le for one probe against the model. */
static void check_find_le(const fix_t *f, uint32_t client, uint32_t clock)
{
    uint64_t k = key_of(client, clock);
    size_t i = model_lower(&f->m, k + 1); /* first key > k */
    uint32_t want = CRDT__NONE, want_start = 0xdeadbeef, start = 0xdeadbeef;
    uint32_t got = crdt__idx_find_le(f->doc, client, clock, &start);
    if (i > 0 && (uint32_t)(f->m.e[i - 1].key >> 32) == client) {
        want = f->m.e[i - 1].val;
        want_start = (uint32_t)f->m.e[i - 1].key;
    }
    if (got != want || (want != CRDT__NONE && start != want_start))
        fail_msg("find_le(%u, %u): got %u from clock %u, want %u from clock %u", client, clock, got,
                 start, want, want_start);
    if (want == CRDT__NONE && start != 0xdeadbeef)
        fail_msg("find_le(%u, %u) returned NONE but wrote *start_clock", client, clock);
}

/* seek(client, clock) then up to `steps` next calls against the model: the
 * client's keys from clock on. */
static void check_seek(const fix_t *f, uint32_t client, uint32_t clock, size_t steps)
{
    crdt__idx_iter_t it;
    size_t i = model_lower(&f->m, key_of(client, clock));
    uint32_t c = client, k, v;
    crdt__idx_seek(f->doc, client, clock, &it);
    for (size_t s = 0; s < steps; s++, i++) {
        bool more = crdt__idx_next(f->doc, &it, &k, &v);
        if (i == f->m.n || (uint32_t)(f->m.e[i].key >> 32) != client) {
            if (more)
                fail_msg("seek(%u, %u): step %zu yields past the last key", client, clock, s);
            return;
        }
        if (!more)
            fail_msg("seek(%u, %u): iteration ended after %zu steps, %zu keys left", client, clock,
                     s, f->m.n - i);
        if (key_of(c, k) != f->m.e[i].key || v != f->m.e[i].val)
            fail_msg("seek(%u, %u): step %zu got (%u, %u), want (%u, %u)", client, clock, s, c, k,
                     (uint32_t)(f->m.e[i].key >> 32), (uint32_t)f->m.e[i].key);
    }
}

/* Client `c`'s first (leftmost) index leaf, or NONE (white-box). */
static uint32_t first_leaf(const crdt_doc_t *doc, uint32_t c)
{
    uint32_t node = CLIENT(doc, c).idx_root;
    if (node == CRDT__NONE)
        return CRDT__NONE;
    for (uint32_t h = CLIENT(doc, c).idx_height; h > 0; h--)
        node = IDX_INNER(doc, node).child[0];
    return node;
}

/* Keys of the first (or last) slot of every leaf of client `c`, in key order
 * (white-box). */
static size_t leaf_edge_keys(const crdt_doc_t *doc, uint32_t c, bool last, uint64_t *out,
                             size_t max)
{
    size_t n = 0;
    for (uint32_t node = first_leaf(doc, c); node != CRDT__NONE && n < max;
         node = IDX_LEAF(doc, node).next) {
        const crdt__idx_leaf_t *leaf = &IDX_LEAF(doc, node);
        if (leaf->n > 0)
            out[n++] = key_of(c, ITEM(doc, leaf->vals[last ? leaf->n - 1 : 0]).clock);
    }
    return n;
}

static size_t leaf_first_keys(const crdt_doc_t *doc, uint32_t c, uint64_t *out, size_t max)
{
    return leaf_edge_keys(doc, c, false, out, max);
}

/* Number of leaves of client `c`, and (with `sizes`) their key counts in
 * order (white-box). */
static size_t leaf_sizes(const crdt_doc_t *doc, uint32_t c, uint32_t *sizes, size_t max)
{
    size_t n = 0;
    for (uint32_t node = first_leaf(doc, c); node != CRDT__NONE;
         node = IDX_LEAF(doc, node).next, n++)
        if (sizes && n < max)
            sizes[n] = IDX_LEAF(doc, node).n;
    return n;
}

/* One insert with the structure and the lookups around the key checked. */
static void idx_add_checked(fix_t *f, unsigned long long seed, uint32_t c, uint32_t k,
                            const char *what)
{
    idx_add(f, c, k);
    if (crdt__idx_check(f->doc) != 0 || f->doc->idx_count != f->m.n)
        fail_msg("seed %#llx: check failed after inserting (%u, %u) %s", seed, c, k, what);
    check_find_le(f, c, k);
    if (k > 0)
        check_find_le(f, c, k - 1);
    check_find_le(f, c, k + 1);
}

/* Inserts `count` distinct random keys over `clients` clients. */
static void insert_random(fix_t *f, rng_t *r, size_t count, uint32_t clients, uint32_t clock_range)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t c, k;
        do {
            c = rng_below(r, clients);
            k = rng_below(r, clock_range);
        } while (model_has(&f->m, key_of(c, k)));
        idx_add(f, c, k);
    }
}

/* ---- tests --------------------------------------------------------------------- */

static void test_idx_find_le_empty_index(void **state)
{
    fix_t *f = *state;
    crdt__idx_iter_t it;
    uint32_t start = 7, k, v;
    assert_idx_ok(f);
    assert_int_equal(crdt__idx_find_le(f->doc, 0, 0, &start), CRDT__NONE);
    assert_int_equal(crdt__idx_find_le(f->doc, 5, UINT32_MAX, &start), CRDT__NONE);
    assert_int_equal(crdt__idx_find_le(f->doc, NCLIENTS + 3, 0, &start), CRDT__NONE);
    assert_int_equal(start, 7);
    crdt__idx_seek(f->doc, 0, 0, &it);
    assert_false(crdt__idx_next(f->doc, &it, &k, &v));
    crdt__idx_seek(f->doc, NCLIENTS + 3, 0, &it); /* no such client */
    assert_false(crdt__idx_next(f->doc, &it, &k, &v));
}

static void test_idx_find_le_same_client_only(void **state)
{
    fix_t *f = *state;
    uint32_t start = 0;
    uint32_t v10 = idx_add(f, 1, 10), v20 = idx_add(f, 1, 20);
    uint32_t v0 = idx_add(f, 3, 0), v5 = idx_add(f, 3, 5);
    assert_idx_ok(f);
    /* Exactly at a key, inside a run, and past the last key of the client. */
    assert_int_equal(crdt__idx_find_le(f->doc, 1, 10, &start), v10);
    assert_int_equal(start, 10);
    assert_int_equal(crdt__idx_find_le(f->doc, 1, 19, &start), v10);
    assert_int_equal(start, 10);
    assert_int_equal(crdt__idx_find_le(f->doc, 1, 20, &start), v20);
    assert_int_equal(start, 20);
    assert_int_equal(crdt__idx_find_le(f->doc, 1, UINT32_MAX, &start), v20);
    assert_int_equal(start, 20);
    /* Below the client's first key: the greater key of client 0 or none. */
    assert_int_equal(crdt__idx_find_le(f->doc, 1, 9, &start), CRDT__NONE);
    assert_int_equal(crdt__idx_find_le(f->doc, 0, 50, &start), CRDT__NONE);
    /* Client 2 has no keys (client 1's keys are in another tree). */
    assert_int_equal(crdt__idx_find_le(f->doc, 2, 0, &start), CRDT__NONE);
    assert_int_equal(crdt__idx_find_le(f->doc, 2, UINT32_MAX, &start), CRDT__NONE);
    assert_int_equal(crdt__idx_find_le(f->doc, 3, 4, &start), v0);
    assert_int_equal(start, 0);
    assert_int_equal(crdt__idx_find_le(f->doc, 3, 5, &start), v5);
    assert_int_equal(crdt__idx_find_le(f->doc, 4, 0, &start), CRDT__NONE);
}

static void test_idx_insert_random_keys(void **state)
{
    fix_t *f = *state;
    rng_t r;
    rng_init(&r, 0x1d1);
    for (int round = 0; round < 40; round++) {
        insert_random(f, &r, 100, 6, 100000);
        if (crdt__idx_check(f->doc) != 0)
            fail_msg("seed %#llx, round %d: crdt__idx_check failed", (unsigned long long)r.seed,
                     round);
        assert_int_equal(f->doc->idx_count, f->m.n);
    }
    assert_true(max_height(f) >= 1);
    assert_iter_all(f);
}

static void test_idx_find_le_matches_model(void **state)
{
    fix_t *f = *state;
    rng_t r;
    rng_init(&r, 0xf1d);
    insert_random(f, &r, 6000, 5, 50000);
    assert_idx_ok(f);
    assert_true(max_height(f) >= 1);
    /* Random probes, every key itself, and the keys on either side of each. */
    for (int i = 0; i < 50000; i++) {
        uint32_t c = rng_below(&r, 7), k = rng_below(&r, 50010);
        check_find_le(f, c, k);
    }
    for (size_t i = 0; i < f->m.n; i++) {
        uint32_t c = (uint32_t)(f->m.e[i].key >> 32), k = (uint32_t)f->m.e[i].key;
        check_find_le(f, c, k);
        check_find_le(f, c, k + 1);
        if (k > 0)
            check_find_le(f, c, k - 1);
    }
    for (uint32_t c = 0; c < 7; c++) {
        check_find_le(f, c, 0);
        check_find_le(f, c, UINT32_MAX);
    }
}

static void test_idx_seek_next_order_across_leaves(void **state)
{
    fix_t *f = *state;
    rng_t r;
    rng_init(&r, 0x5ee);
    insert_random(f, &r, 3000, 4, 20000);
    assert_idx_ok(f);
    assert_true(f->doc->idx_leaves.len > 50);
    assert_iter_all(f);
    /* From random points, at keys, and at every leaf's first and last key. */
    for (int i = 0; i < 2000; i++)
        check_seek(f, rng_below(&r, 5), rng_below(&r, 20010), 80);
    for (size_t i = 0; i < f->m.n; i += 7)
        check_seek(f, (uint32_t)(f->m.e[i].key >> 32), (uint32_t)f->m.e[i].key, 40);
    for (uint32_t c = 0; c < NCLIENTS; c++) {
        /* From every leaf's first and last key, and between leaves. */
        static uint64_t edges[4096];
        size_t n = leaf_edge_keys(f->doc, c, false, edges, 4096);
        for (size_t i = 0; i < n; i++)
            check_seek(f, c, (uint32_t)edges[i], 40);
        n = leaf_edge_keys(f->doc, c, true, edges, 4096);
        for (size_t i = 0; i < n; i++) {
            check_seek(f, c, (uint32_t)edges[i], 40);
            check_seek(f, c, (uint32_t)edges[i] + 1, 40);
        }
    }
    /* Past the end. */
    check_seek(f, 4, 0, 5);
    check_seek(f, UINT32_MAX - 1, UINT32_MAX, 5);
}

static void test_idx_insert_ascending_builds_several_levels(void **state)
{
    fix_t *f = *state;
    uint32_t last_height[NCLIENTS] = {0};
    /* Ascending keys fill leaves but leave every split inner node half full.
     * Client 0 gets 20,000 keys (three levels), three more clients 2,000. */
    for (uint32_t i = 0; i < 26000; i++) {
        uint32_t c = i < 20000 ? 0 : 1 + (i - 20000) / 2000, h;
        idx_add(f, c, (i < 20000 ? i : (i - 20000) % 2000) * 3);
        h = height_of(f, c);
        assert_true(h == last_height[c] || h == last_height[c] + 1); /* one level at a time */
        last_height[c] = h;
        if (i % 997 == 0)
            assert_idx_ok(f);
    }
    assert_idx_ok(f);
    assert_true(height_of(f, 0) >= 3);
    assert_true(height_of(f, 1) >= 1);
    assert_iter_all(f);
    for (uint32_t c = 0; c < 5; c++)
        for (uint32_t k = 0; k < 60000; k += 13)
            check_find_le(f, c, k);
}

static void test_idx_insert_descending_keys(void **state)
{
    fix_t *f = *state;
    /* Every insert becomes the new minimum: inner minimum keys change all
     * the way up on each one. */
    for (uint32_t i = 12000; i-- > 0;) {
        idx_add(f, 2, i);
        if (i % 1009 == 0)
            assert_idx_ok(f);
    }
    assert_idx_ok(f);
    assert_true(height_of(f, 2) >= 2);
    assert_iter_all(f);
    check_find_le(f, 2, 0);
    check_find_le(f, 1, UINT32_MAX);
    check_find_le(f, 3, 0);
}

static void test_idx_append_keeps_leaves_full(void **state)
{
    fix_t *f = *state;
    uint32_t sizes[512];
    size_t n;
    /* A client's new items take ever greater clocks: each full last leaf
     * passes one key on with the new one and keeps the rest. */
    for (uint32_t i = 0; i < 5000; i++) {
        idx_add(f, 4, 100 + 7 * i);
        if (i % 499 == 0)
            assert_idx_ok(f);
    }
    assert_idx_ok(f);
    n = leaf_sizes(f->doc, 4, sizes, 512);
    assert_int_equal(n, (5000 - 2) / (CRDT__IDX_LEAF - 1) + 1);
    for (size_t j = 0; j + 1 < n; j++)
        if (sizes[j] != CRDT__IDX_LEAF - 1)
            fail_msg("leaf %zu of %zu holds %u keys, want %u", j, n, sizes[j], CRDT__IDX_LEAF - 1);
    assert_true(sizes[n - 1] >= 2); /* its keys stay removable */
    assert_true(crdt__idx_removable(f->doc, 4, 100 + 7 * 4999));
    assert_iter_all(f);
    check_seek(f, 4, 0, 5001);
    for (uint32_t k = 0; k < 100 + 7 * 5000; k += 5)
        check_find_le(f, 4, k);
}

static void test_idx_insert_into_full_leaves_shifts_to_siblings(void **state)
{
    fix_t *f = *state;
    rng_t r;
    uint64_t edges[1024];
    size_t leaves_full, leaves, removed = 0;
    rng_init(&r, 0x5b1f);
    /* Full leaves of keys 8 apart; clients 2 and 6 share the pools. */
    for (uint32_t i = 0; i < 4000; i++) {
        idx_add(f, 3, 8 * i + 8);
        if (i % 4 == 0)
            idx_add(f, i % 8 == 0 ? 2 : 6, i);
    }
    assert_idx_ok(f);
    leaves_full = leaf_sizes(f->doc, 3, NULL, 0);
    /* Keys inside full leaves go to a sibling with room (left or right) or
     * split the leaf; every tenth lands right after a leaf's last key or
     * right before a leaf's first key (the end of the leaf before it). */
    for (uint32_t i = 0; i < 3000; i++) {
        uint32_t k;
        if (i % 10 == 0) {
            bool last = rng_below(&r, 2) == 1;
            size_t ne = leaf_edge_keys(f->doc, 3, last, edges, 1024);
            k = (uint32_t)edges[rng_below(&r, (uint32_t)ne)] + (last ? 1 : (uint32_t)-1);
            if (model_has(&f->m, key_of(3, k)))
                continue;
            idx_add_checked(f, r.seed, 3, k, last ? "after a leaf" : "before a leaf");
        } else {
            do
                k = 1 + rng_below(&r, 8 * 4000 + 8);
            while (model_has(&f->m, key_of(3, k)));
            idx_add_checked(f, r.seed, 3, k, "inside");
        }
    }
    leaves = leaf_sizes(f->doc, 3, NULL, 0);
    /* Splits in halves alone would leave the 7,000 keys in about 350 leaves
     * of 20 or so; siblings taking keys keep them fuller. */
    if (leaves > 7000 / 24)
        fail_msg("seed %#llx: %zu leaves for 7,000 keys (%zu when full)",
                 (unsigned long long)r.seed, leaves, leaves_full);
    assert_iter_all(f);
    /* Removes (leaf first keys too) mixed with inserts after the shifts. */
    while (removed < 2500) {
        size_t i = rng_below(&r, (uint32_t)f->m.n);
        uint32_t c = (uint32_t)(f->m.e[i].key >> 32), k = (uint32_t)f->m.e[i].key;
        if (removed % 5 == 0) {
            size_t ne = leaf_first_keys(f->doc, 3, edges, 1024);
            c = 3;
            k = (uint32_t)edges[rng_below(&r, (uint32_t)ne)];
            i = model_lower(&f->m, key_of(c, k));
        }
        if (crdt__idx_removable(f->doc, c, k)) {
            crdt__idx_remove(f->doc, c, k);
            model_remove_at(&f->m, i);
            removed++;
            if (crdt__idx_check(f->doc) != 0 || f->doc->idx_count != f->m.n)
                fail_msg("seed %#llx: check failed after removing (%u, %u)",
                         (unsigned long long)r.seed, c, k);
            check_find_le(f, c, k);
        }
        if (removed % 3 == 0) {
            do
                k = rng_below(&r, 8 * 4000 + 64);
            while (model_has(&f->m, key_of(3, k)));
            idx_add_checked(f, r.seed, 3, k, "between removes");
        }
    }
    assert_idx_ok(f);
    assert_iter_all(f);
    for (uint32_t k = 0; k < 8 * 4000 + 80; k += 3) {
        check_find_le(f, 3, k);
        check_find_le(f, 2, k);
        check_find_le(f, 6, k);
    }
}

static void test_idx_remove_keeps_check(void **state)
{
    fix_t *f = *state;
    rng_t r;
    size_t removed = 0, skipped = 0;
    rng_init(&r, 0x7e3);
    insert_random(f, &r, 4000, 3, 30000);
    assert_idx_ok(f);
    while (removed < 3000) {
        size_t i = rng_below(&r, (uint32_t)f->m.n);
        uint32_t c = (uint32_t)(f->m.e[i].key >> 32), k = (uint32_t)f->m.e[i].key;
        if (!crdt__idx_removable(f->doc, c, k)) {
            if (++skipped > 100000)
                fail_msg("seed %#llx: nothing removable", (unsigned long long)r.seed);
            continue;
        }
        crdt__idx_remove(f->doc, c, k);
        model_remove_at(&f->m, i);
        removed++;
        if (crdt__idx_check(f->doc) != 0 || f->doc->idx_count != f->m.n)
            fail_msg("seed %#llx: check failed after removing (%u, %u), removal %zu",
                     (unsigned long long)r.seed, c, k, removed);
        if (removed % 100 == 0) {
            check_find_le(f, c, k);
            check_seek(f, c, k, 40);
        }
    }
    assert_iter_all(f);
    for (int i = 0; i < 5000; i++)
        check_find_le(f, rng_below(&r, 4), rng_below(&r, 30000));
}

static void test_idx_remove_leaf_first_key_updates_inner_minimums(void **state)
{
    fix_t *f = *state;
    uint64_t firsts[4096];
    size_t nf;
    /* Two levels, ascending (leaves full). */
    for (uint32_t i = 0; i < 12000; i++)
        idx_add(f, 1, 2 * i);
    assert_idx_ok(f);
    assert_true(height_of(f, 1) >= 2);
    /* Remove the first key of every leaf, then again, while leaves allow. */
    for (int pass = 0; pass < 3; pass++) {
        nf = leaf_first_keys(f->doc, 1, firsts, 4096);
        assert_true(nf > 100);
        for (size_t j = 0; j < nf; j++) {
            uint32_t c = (uint32_t)(firsts[j] >> 32), k = (uint32_t)firsts[j];
            size_t i = model_lower(&f->m, firsts[j]);
            if (!crdt__idx_removable(f->doc, c, k))
                continue;
            crdt__idx_remove(f->doc, c, k);
            model_remove_at(&f->m, i);
            if (crdt__idx_check(f->doc) != 0)
                fail_msg("pass %d: check failed after removing leaf %zu's first key (%u, %u)", pass,
                         j, c, k);
            /* The removed key now finds its predecessor (from the previous leaf). */
            check_find_le(f, c, k);
        }
    }
    /* The very first key of the index (first of every inner node on the path). */
    {
        uint32_t c = (uint32_t)(f->m.e[0].key >> 32), k = (uint32_t)f->m.e[0].key;
        assert_true(crdt__idx_removable(f->doc, c, k));
        crdt__idx_remove(f->doc, c, k);
        model_remove_at(&f->m, 0);
        assert_idx_ok(f);
        check_find_le(f, c, k);
    }
    assert_iter_all(f);
}

static void test_idx_removable_false_for_single_key_leaf(void **state)
{
    fix_t *f = *state;
    idx_add(f, 0, 5);
    assert_false(crdt__idx_removable(f->doc, 0, 5));
    idx_add(f, 0, 9);
    assert_true(crdt__idx_removable(f->doc, 0, 5));
    crdt__idx_remove(f->doc, 0, 5);
    model_remove_at(&f->m, 0);
    assert_idx_ok(f);
    assert_false(crdt__idx_removable(f->doc, 0, 9));
    check_find_le(f, 0, 5);
    check_find_le(f, 0, 9);
}

static void test_idx_rekey_keeps_order_and_values(void **state)
{
    fix_t *f = *state;
    rng_t r;
    int done = 0;
    rng_init(&r, 0x4e7);
    /* Sparse clocks leave room between neighbours. */
    for (uint32_t i = 0; i < 3000; i++)
        idx_add(f, i % 3, (i / 3) * 1000 + 500);
    assert_idx_ok(f);
    while (done < 5000) {
        size_t i = rng_below(&r, (uint32_t)f->m.n);
        uint64_t k = f->m.e[i].key;
        uint32_t c = (uint32_t)(k >> 32), from = (uint32_t)k, lo, hi, to;
        /* Any clock strictly between the neighbouring keys of this client. */
        lo =
            i > 0 && (uint32_t)(f->m.e[i - 1].key >> 32) == c ? (uint32_t)f->m.e[i - 1].key + 1 : 0;
        hi = i + 1 < f->m.n && (uint32_t)(f->m.e[i + 1].key >> 32) == c
                 ? (uint32_t)f->m.e[i + 1].key - 1
                 : from + 5000;
        if (hi < lo)
            continue;
        to = lo + rng_below(&r, hi - lo + 1);
        idx_rekey(f, i, to);
        done++;
        if (crdt__idx_check(f->doc) != 0)
            fail_msg("seed %#llx: check failed after rekey (%u: %u -> %u), step %d",
                     (unsigned long long)r.seed, c, from, to, done);
        check_find_le(f, c, to);
        if (to > 0)
            check_find_le(f, c, to - 1);
        if (from > 0)
            check_find_le(f, c, from - 1);
        check_find_le(f, c, from);
    }
    assert_iter_all(f);
}

static void test_idx_rekey_leaf_first_key(void **state)
{
    fix_t *f = *state;
    uint64_t firsts[1024];
    size_t nf;
    for (uint32_t i = 0; i < 8000; i++)
        idx_add(f, 0, 10 * i + 10);
    assert_idx_ok(f);
    assert_true(height_of(f, 0) >= 2);
    nf = leaf_first_keys(f->doc, 0, firsts, 1024);
    /* Move each leaf's first key down (towards the previous leaf) and back up. */
    for (size_t j = 0; j < nf; j++) {
        uint32_t from = (uint32_t)firsts[j], to = from - 9;
        size_t i = model_lower(&f->m, firsts[j]);
        idx_rekey(f, i, to);
        if (crdt__idx_check(f->doc) != 0)
            fail_msg("check failed after rekeying leaf %zu's first key %u -> %u", j, from, to);
        check_find_le(f, 0, to);
        check_find_le(f, 0, to - 1);
        idx_rekey(f, i, from + 5);
        if (crdt__idx_check(f->doc) != 0)
            fail_msg("check failed after rekeying leaf %zu's first key %u -> %u", j, to, from + 5);
        check_find_le(f, 0, from + 4);
        check_find_le(f, 0, from + 5);
    }
    assert_iter_all(f);
}

static void test_idx_insert_remove_rekey_match_model(void **state)
{
    fix_t *f = *state;
    rng_t r;
    rng_init(&r, 0x313);
    for (int step = 0; step < 12000; step++) {
        uint32_t op = rng_below(&r, 10);
        if (op < 5 || f->m.n < 2) {
            insert_random(f, &r, 1, 4, 8000);
        } else if (op < 7) {
            size_t i = rng_below(&r, (uint32_t)f->m.n);
            uint32_t c = (uint32_t)(f->m.e[i].key >> 32), k = (uint32_t)f->m.e[i].key;
            if (crdt__idx_removable(f->doc, c, k)) {
                crdt__idx_remove(f->doc, c, k);
                model_remove_at(&f->m, i);
            }
        } else if (op < 8) {
            size_t i = rng_below(&r, (uint32_t)f->m.n);
            uint32_t c = (uint32_t)(f->m.e[i].key >> 32), from = (uint32_t)f->m.e[i].key;
            bool has_next = i + 1 < f->m.n && (uint32_t)(f->m.e[i + 1].key >> 32) == c;
            uint32_t lim = has_next ? (uint32_t)f->m.e[i + 1].key : from + 100;
            if (lim - from > 1) {
                uint32_t to = from + 1 + rng_below(&r, lim - from - 1);
                idx_rekey(f, i, to);
            }
        } else if (op < 9) {
            check_find_le(f, rng_below(&r, 5), rng_below(&r, 8100));
        } else {
            check_seek(f, rng_below(&r, 5), rng_below(&r, 8100), 20);
        }
        if (step % 50 == 0 && (crdt__idx_check(f->doc) != 0 || f->doc->idx_count != f->m.n))
            fail_msg("seed %#llx: check failed at step %d", (unsigned long long)r.seed, step);
    }
    assert_idx_ok(f);
    assert_iter_all(f);
}

static void test_idx_reserve_then_insert_never_allocates(void **state)
{
    fix_t *f = *state;
    rng_t r;
    rng_init(&r, 0xa11);
    for (int round = 0; round < 30; round++) {
        size_t calls;
        assert_int_equal(crdt__idx_reserve(f->doc, 200), 0);
        assert_int_equal(crdt__pool_reserve(f->doc, &f->doc->items, sizeof(crdt__item_t), 200), 0);
        calls = f->ta.calls;
        for (int i = 0; i < 200; i++) {
            uint32_t c, k, v;
            do {
                c = rng_below(&r, 3);
                k = rng_below(&r, 1u << 20);
            } while (model_has(&f->m, key_of(c, k)));
            v = new_item(f, c, k);
            crdt__idx_insert(f->doc, c, k, v);
            model_insert(&f->m, key_of(c, k), v);
        }
        assert_int_equal(f->ta.calls, calls);
        assert_idx_ok(f);
    }
    assert_iter_all(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_idx_find_le_empty_index),
        T(test_idx_find_le_same_client_only),
        T(test_idx_insert_random_keys),
        T(test_idx_find_le_matches_model),
        T(test_idx_seek_next_order_across_leaves),
        T(test_idx_insert_ascending_builds_several_levels),
        T(test_idx_insert_descending_keys),
        T(test_idx_append_keeps_leaves_full),
        T(test_idx_insert_into_full_leaves_shifts_to_siblings),
        T(test_idx_remove_keeps_check),
        T(test_idx_remove_leaf_first_key_updates_inner_minimums),
        T(test_idx_removable_false_for_single_key_leaf),
        T(test_idx_rekey_keeps_order_and_values),
        T(test_idx_rekey_leaf_first_key),
        T(test_idx_insert_remove_rekey_match_model),
        T(test_idx_reserve_then_insert_never_allocates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
