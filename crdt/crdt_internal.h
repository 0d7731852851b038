/* SPDX-License-Identifier: MIT */
/*
 * crdt_internal.h: data structures shared by the files of crdt/; nothing outside
 * crdt/ (but its white-box tests) includes it.
 *
 * A document holds:
 *  - items: runs of consecutive characters inserted by one client, in a pool
 *    addressed by 32-bit index (stable for the document's life; items are never
 *    freed, deleted characters stay as tombstones so history can be replayed);
 *  - the sequence tree (seq.c): an order-statistic B+tree over the items in
 *    document order, giving index -> item and item -> rank in O(log n);
 *  - the id index (idindex.c): a B+tree from (client, clock) to the item
 *    holding that insert operation, giving id -> item in O(log n);
 *  - delete records: runs of delete operations, each deleting one contiguous run
 *    of character ids;
 *  - the client table: 64-bit replica ids <-> small local indexes, and each
 *    client's next clock (the state vector);
 *  - the text arena: the UTF-8 bytes of every insertion ever made.
 *
 * All growable storage lives in pools (crdt__pool_t) that are reserved before a
 * change starts, so a change either fails with CRDT_ENOMEM before touching the
 * document or runs to completion without allocating.
 */
#ifndef WEFT_CRDT_INTERNAL_H
#define WEFT_CRDT_INTERNAL_H

#include "crdt.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#define CRDT__NONE UINT32_MAX

/* Keeps a large function that runs once per call out of its caller: inlined
 * into one big parse function, several passes share too few registers. */
#if defined(__GNUC__)
#define CRDT__NOINLINE __attribute__((noinline))
#else
#define CRDT__NOINLINE
#endif

/* Checks believed but not proven: abort in debug builds, error in release. */
#ifdef NDEBUG
#define CRDT_ALWAYS(x) (x)
#define CRDT_NEVER(x) (x)
#else
#define CRDT_ALWAYS(x) ((x) ? 1 : (assert(0 && #x), 0))
#define CRDT_NEVER(x) ((x) ? (assert(0 && #x), 1) : 0)
#endif

/* An operation id with the client as a local index; client CRDT__NONE is "no id". */
typedef struct {
    uint32_t client;
    uint32_t clock;
} crdt__id_t;

static inline crdt__id_t crdt__id(uint32_t client, uint32_t clock)
{
    crdt__id_t id = {client, clock};
    return id;
}
static inline bool crdt__id_eq(crdt__id_t a, crdt__id_t b)
{
    return a.client == b.client && a.clock == b.clock;
}
static const crdt__id_t CRDT__NOID = {CRDT__NONE, 0};

/*
 * A run of characters inserted by one client with consecutive clocks, in
 * document order. Character i of the run has id (client, clock + i); its origins
 * are `left` (for i == 0) or the previous character of the run, and `right`.
 */
typedef struct {
    uint32_t clock;
    uint32_t len; /* characters (code points), >= 1 */
    /* First byte in the client's text arena. Arenas hold the text of the
     * client's inserts in clock order (see crdt__client_t), so the run's
     * bytes end where the text of its client's next inserted clock begins;
     * their count is not stored (crdt__item_bytes()). */
    uint32_t text_off : 31;
    /* 1: the run is ASCII, so it has one byte (and one UTF-16 unit) per
     * character. 0: it may not be; then whatever needs its bytes or units
     * counts them from its text. Splits and merges keep it exact when that
     * is cheap, and 0 is never wrong. */
    uint32_t ascii : 1;
    /* The client (below CRDT__CLIENT_LIMIT), and the clients of the origins
     * (CRDT__ITEM_NOCLIENT for no id): 21 bits each, the right origin's in
     * two parts. Read and write origins with crdt__item_left() and the
     * other accessors below. */
    uint32_t client : 21;
    uint32_t rclient_lo : 11;
    uint32_t lclient : 21;
    uint32_t rclient_hi : 10;
    uint32_t spare : 1;
    uint32_t lclock; /* origin-left of the first character, or 0 with no id */
    uint32_t rclock; /* origin-right of every character, or 0 with no id */
    union {
        struct {
            uint32_t leaf : 26;   /* sequence-tree leaf holding this item, or CRDT__NO_LEAF */
            uint32_t slot : 5;    /* index in that leaf's items[] (CRDT__SEQ_LEAF is 32) */
            uint32_t deleted : 1; /* 1 if every character is deleted, else 0 */
        };
        uint32_t place; /* the three as one word, for seq.c's bulk updates */
    };
} crdt__item_t;
_Static_assert(sizeof(crdt__item_t) == 32, "items stay 32 bytes");
/* Clients a document can hold (local indexes 0 .. LIMIT - 1): items name
 * them in 21 bits, and one value is "no client". */
#define CRDT__CLIENT_LIMIT 0x1FFFFFu
#define CRDT__ITEM_NOCLIENT 0x1FFFFFu
static inline crdt__id_t crdt__item_left(const crdt__item_t *x)
{
    crdt__id_t id = {x->lclient == CRDT__ITEM_NOCLIENT ? CRDT__NONE : x->lclient, x->lclock};
    return id;
}
static inline crdt__id_t crdt__item_right(const crdt__item_t *x)
{
    uint32_t c = x->rclient_lo | (uint32_t)x->rclient_hi << 11;
    crdt__id_t id = {c == CRDT__ITEM_NOCLIENT ? CRDT__NONE : c, x->rclock};
    return id;
}
/* Origins name a client of the document or none (CRDT__NONE). */
static inline void crdt__item_set_left(crdt__item_t *x, crdt__id_t id)
{
    assert(id.client == CRDT__NONE || id.client < CRDT__CLIENT_LIMIT);
    x->lclient = id.client == CRDT__NONE ? CRDT__ITEM_NOCLIENT : id.client;
    x->lclock = id.clock;
}
static inline void crdt__item_set_right(crdt__item_t *x, crdt__id_t id)
{
    uint32_t c = id.client == CRDT__NONE ? CRDT__ITEM_NOCLIENT : id.client;
    assert(id.client == CRDT__NONE || id.client < CRDT__CLIENT_LIMIT);
    x->rclient_lo = c & 0x7FFu;
    x->rclient_hi = c >> 11;
    x->rclock = id.clock;
}
/* Whether items x and y have the same right origin (cheaper than building
 * both ids). */
static inline bool crdt__item_right_is(const crdt__item_t *x, const crdt__item_t *y)
{
    return x->rclock == y->rclock && x->rclient_lo == y->rclient_lo &&
           x->rclient_hi == y->rclient_hi;
}
/* The word `place` of a live item at `slot` of leaf `leaf` (the compiler
 * folds the fields' layout away). */
static inline uint32_t crdt__item_place(uint32_t leaf, uint32_t slot)
{
    crdt__item_t t;
    t.place = 0;
    t.leaf = leaf;
    t.slot = slot;
    return t.place;
}
/* Items are 32 bytes: neither their UTF-16 length (crdt__item_u16()) nor
 * their UTF-8 length (crdt__item_bytes()) is kept, the text offset shares a
 * word with the ASCII flag, clients take 21 bits (so three share two words),
 * and their place in the sequence tree shares one word with the deleted
 * flag.
 * An item merged into its left neighbour is dead: len == 0, and `clock` links
 * the free list of dead items. */

/* A run of delete operations of one client (clock .. clock+len-1) deleting
 * `len` characters (tclient, tlo .. tlo+len-1): forward, operation i deletes
 * tlo+i; backward (a run of backspaces), operation i deletes tlo+len-1-i.
 * Delete records are not in the id index: each client keeps its own in
 * clock order (crdt__client_t.dels, as they are created), so the records
 * from a clock on are found by a binary search (crdt__delrecs_from()); ids no
 * item holds are exactly theirs. 16 bytes. */
typedef struct {
    uint32_t clock, len;
    uint32_t tlo;
    uint32_t tclient : 31; /* below CRDT__IDX_DEL, the limit on clients */
    uint32_t backward : 1; /* 1: a run of backspaces */
} crdt__delrec_t;

/* A growable array of fixed-size elements addressed by index. */
typedef struct {
    void *base;
    uint32_t len, cap;
} crdt__pool_t;

/* A replica known to the document. Its inserted text is appended to its own
 * arena in clock order, so characters with consecutive clocks have
 * consecutive bytes: runs can always grow and re-merge, and a run whose last
 * clock is the client's latest inserted one ends at the arena's end
 * (crdt_doc_check() verifies the tiling). An arena stays below
 * CRDT__TEXT_MAX bytes (items keep offsets in 31 bits). */
typedef struct {
    uint64_t id;
    uint32_t next_clock; /* state vector entry */
    /* An item of this client, usually the one it typed into last, or NONE: a
     * lookup hint only (crdt__hint_find() checks it), so it may be stale. */
    uint32_t hint;
    /* This client's id index (idindex.c): its root (NONE while the client
     * has no item), height, and the leaf of its last change or lookup hint
     * (NONE with the root). */
    uint32_t idx_root, idx_height, idx_leaf;
    /* The slot in idx_leaf of the key re-keyed last (0: none), a hint that
     * crdt__idx_rekey() checks: backspacing re-keys the same tombstone. */
    uint32_t idx_slot;
    crdt__pool_t text; /* uint8_t: UTF-8 of every insertion, in clock order */
    crdt__pool_t dels; /* crdt__delrec_t: its delete records, in clock order */
} crdt__client_t;

/* Sequence tree nodes. Inner nodes keep, per child, the visible UTF-16 length
 * and the number of items below it. */
#define CRDT__SEQ_LEAF 32
#define CRDT__SEQ_FAN 32
/* Leaves stay below 2^26 and inner nodes other than the root hold at least
 * CRDT__SEQ_FAN / 2 children, so the tree is at most 8 inner levels high. */
#define CRDT__SEQ_MAX_HEIGHT 16
/* An item's `leaf` (26 bits) when it is in no leaf; crdt__seq_reserve() keeps
 * leaf indexes below it (CRDT_ELIMIT). */
#define CRDT__NO_LEAF ((1u << 26) - 1)
typedef struct {
    uint32_t parent, pslot; /* parent inner node and our index in it */
    uint32_t n;
    uint32_t prev, next;
    uint32_t items[CRDT__SEQ_LEAF];
    uint32_t vis[CRDT__SEQ_LEAF]; /* visible UTF-16 units of items[i] */
} crdt__seq_leaf_t;

typedef struct {
    uint32_t parent, pslot;
    uint32_t n;
    uint32_t child[CRDT__SEQ_FAN];
    uint32_t vis[CRDT__SEQ_FAN];
    uint32_t cnt[CRDT__SEQ_FAN];
} crdt__seq_inner_t;

/* Id index nodes (one tree per client): keys are the first clocks of the
 * client's items, values item indexes (below CRDT__IDX_DEL, the limit on
 * items and delete records). */
#define CRDT__IDX_LEAF 32
#define CRDT__IDX_FAN 32
#define CRDT__IDX_DEL 0x80000000u
#define CRDT__IDX_MAX_HEIGHT 16
typedef struct {
    uint32_t n, next; /* next: the client's next leaf, or NONE */
    /* Item indexes in key order; an entry's key is its item's `clock`. */
    uint32_t vals[CRDT__IDX_LEAF];
} crdt__idx_leaf_t;

typedef struct {
    uint32_t n;
    uint32_t keys[CRDT__IDX_FAN]; /* keys[i] = smallest key under child[i] */
    uint32_t child[CRDT__IDX_FAN];
} crdt__idx_inner_t;

struct crdt_doc {
    crdt_alloc_t alloc;
    const crdt_alloc_t *out_alloc; /* the caller's: buffers handed out outlive us */
    size_t mem;                    /* bytes currently allocated through `alloc` */
    uint32_t self;                 /* local index of this replica's client */

    crdt__pool_t clients;  /* crdt__client_t */
    uint32_t *client_hash; /* open addressing: local index or NONE */
    uint32_t client_hash_cap;

    crdt__pool_t items;  /* crdt__item_t */
    uint32_t free_items; /* head of the dead items' list, or NONE */
    uint32_t live_items; /* items in the sequence */

    crdt__pool_t seq_leaves; /* crdt__seq_leaf_t */
    crdt__pool_t seq_inners; /* crdt__seq_inner_t */
    uint32_t seq_root;       /* leaf if seq_height == 0 */
    uint32_t seq_height;
    /* Finger: a leaf and the visible units before it, remembered by local
     * edits so the next edit nearby skips the descent. NONE when any change
     * outside that leaf may have moved it. */
    uint32_t finger_leaf, finger_vis;
    /* The same for one item (typing keeps editing the same item). */
    uint32_t finger_item, finger_item_vis;
    /* Visible units gained (or lost) by leaf pend_leaf's items that the
     * entries on its path to the root do not count yet (seq.c): typing and
     * deleting in one leaf walk up the tree once, when the next edit goes
     * elsewhere or the tree changes shape, not once per keystroke. Readers of
     * inner nodes add it (seq.c's pend_path()). 0 when none is pending. */
    uint32_t pend_leaf;
    int64_t pend_vis;
    /* The item typing last extended or created, the change count right
     * after, and the visible units up to its end: while nothing else changed
     * the document, it is still this replica's open run, followed by its
     * right origin (doc.c's typing_insert() skips those checks). */
    uint32_t typing_item, typing_end;
    uint64_t typing_changes;
    /* The clients of the last updates applied one operation at a time
     * (apply.c), checked before use: most updates name the same one or two. */
    uint32_t recent_client[2];
    uint32_t vis_len; /* visible UTF-16 units */
    size_t utf8_len;  /* visible UTF-8 bytes */

    crdt__pool_t idx_leaves; /* crdt__idx_leaf_t */
    crdt__pool_t idx_inners; /* crdt__idx_inner_t */
    uint32_t idx_count;      /* keys in all clients' trees */
    uint32_t idx_tall;       /* clients whose tree has inner nodes */

    uint8_t *pending; /* held operations, encoded as an update */
    size_t pending_len;
    size_t pending_ops;
    /* crdt_doc_change_count(): local edits plus applies that changed something. */
    uint64_t changes;
};

/* Pool element access. */
#define CRDT__AT(pool, type, i) (((type *)(pool).base)[i])
#define ITEM(doc, i) CRDT__AT((doc)->items, crdt__item_t, i)
#define DELREC(doc, c, i) CRDT__AT(CLIENT(doc, c).dels, crdt__delrec_t, i)
#define CLIENT(doc, i) CRDT__AT((doc)->clients, crdt__client_t, i)
#define SEQ_LEAF(doc, i) CRDT__AT((doc)->seq_leaves, crdt__seq_leaf_t, i)
#define SEQ_INNER(doc, i) CRDT__AT((doc)->seq_inners, crdt__seq_inner_t, i)
#define IDX_LEAF(doc, i) CRDT__AT((doc)->idx_leaves, crdt__idx_leaf_t, i)
#define IDX_INNER(doc, i) CRDT__AT((doc)->idx_inners, crdt__idx_inner_t, i)

/* alloc.c */
void *crdt__malloc(crdt_doc_t *doc, size_t size);
void *crdt__realloc(crdt_doc_t *doc, void *ptr, size_t old_size, size_t new_size);
void crdt__free(crdt_doc_t *doc, void *ptr, size_t size);
/* Temporary memory of a call that does not change the document (not counted
 * in the document's memory, so const calls stay free of writes). */
void *crdt__tmp_alloc(const crdt_alloc_t *alloc, size_t size);
void crdt__tmp_free(const crdt_alloc_t *alloc, void *ptr, size_t size);
int crdt__pool_reserve(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem, size_t extra);
int crdt__pool_reserve_max(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem, size_t extra,
                           size_t max);
void crdt__pool_shrink(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem);
void crdt__pool_dispose(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem);
static inline uint32_t crdt__pool_take(crdt__pool_t *pool)
{
    assert(pool->len < pool->cap);
    return pool->len++;
}
int crdt__buf_init(const crdt_alloc_t *alloc, crdt_buf_t *buf, size_t cap);
int crdt__buf_reserve(crdt_buf_t *buf, size_t extra);
extern const crdt_alloc_t crdt__libc_alloc;

/* Growable byte writer used by the encoders; appends never fail once
 * crdt__buf_reserve() made room. */
static inline void crdt__put_u8(crdt_buf_t *b, uint8_t v)
{
    assert(b->len < b->_cap);
    b->base[b->len++] = v;
}
static inline void crdt__put_varint(crdt_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        crdt__put_u8(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    crdt__put_u8(b, (uint8_t)v);
}
static inline void crdt__put_u64(crdt_buf_t *b, uint64_t v)
{
    assert(b->len + 8 <= b->_cap);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(b->base + b->len, &v, 8); /* one store */
    b->len += 8;
#else
    for (int i = 0; i < 8; i++)
        crdt__put_u8(b, (uint8_t)(v >> (8 * i)));
#endif
}
static inline void crdt__put_bytes(crdt_buf_t *b, const void *p, size_t n)
{
    assert(b->len + n <= b->_cap);
    if (n)
        memcpy(b->base + b->len, p, n);
    b->len += n;
}
#define CRDT__VARINT_MAX 10

/* Checked reader over untrusted bytes. Every getter fails once the bytes run
 * out or a value does not fit; `err` then stays set. */
typedef struct {
    const uint8_t *p, *end;
    int err;
} crdt__reader_t;
uint64_t crdt__get_varint_slow(crdt__reader_t *r);
/* A byte (else CRDT_EMALFORMED). */
static inline uint8_t crdt__get_u8(crdt__reader_t *r)
{
    if (r->err || r->p >= r->end) {
        r->err = CRDT_EMALFORMED;
        return 0;
    }
    return *r->p++;
}
uint32_t crdt__get_u32v_slow(crdt__reader_t *r);
/* Varints of up to three bytes (clocks below 2^21: nearly all) are read
 * inline. */
static inline uint32_t crdt__get_u32v(crdt__reader_t *r)
{
    if (!r->err && r->end - r->p >= 3) {
        const uint8_t *p = r->p;
        if (p[0] < 0x80) {
            r->p += 1;
            return p[0];
        }
        if (p[1] < 0x80) {
            r->p += 2;
            return (uint32_t)(p[0] & 0x7f) | (uint32_t)p[1] << 7;
        }
        if (p[2] < 0x80) {
            r->p += 3;
            return (uint32_t)(p[0] & 0x7f) | (uint32_t)(p[1] & 0x7f) << 7 | (uint32_t)p[2] << 14;
        }
    } else if (!r->err && r->p < r->end && *r->p < 0x80) {
        return *r->p++;
    }
    return crdt__get_u32v_slow(r);
}
/* Any varint of up to 64 bits. */
static inline uint64_t crdt__get_varint(crdt__reader_t *r)
{
    if (!r->err && r->end - r->p >= 3 && (r->p[0] < 0x80 || r->p[1] < 0x80 || r->p[2] < 0x80))
        return crdt__get_u32v(r);
    return crdt__get_varint_slow(r);
}
static inline size_t crdt__reader_left(const crdt__reader_t *r)
{
    return (size_t)(r->end - r->p);
}
/* A little-endian 64-bit value (else CRDT_EMALFORMED). */
static inline uint64_t crdt__get_u64(crdt__reader_t *r)
{
    const uint8_t *p = r->p;
    if (r->err || crdt__reader_left(r) < 8) {
        r->err = CRDT_EMALFORMED;
        return 0;
    }
    r->p += 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    {
        uint64_t v;
        memcpy(&v, p, 8); /* one load */
        return v;
    }
#else
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
#endif
}

/* utf.c */
/* Validates UTF-8 (no surrogates, no overlongs, max U+10FFFF). On success sets
 * code point and UTF-16 unit counts. Returns 0 or CRDT_EUTF8. */
int crdt__utf8_scan(const uint8_t *s, size_t n, size_t *cps, size_t *u16);
/* The conversions below read valid UTF-8 `s` holding at least the code
 * points asked about. With `ascii` (the caller knows `s` is ASCII: an
 * operation whose bytes equal its characters, an item's flag) they count
 * nothing; without, they count from the start of `s`. */
/* Byte offset of code point `cp`. */
size_t crdt__utf8_offset(const uint8_t *s, bool ascii, uint32_t cp);
/* UTF-16 units of the first `cp` code points. */
uint32_t crdt__utf8_u16_prefix(const uint8_t *s, bool ascii, uint32_t cp);
/* Number of code points whose UTF-16 units fit in the first `u16` units; sets
 * *exact to whether `u16` falls on a character boundary. */
uint32_t crdt__utf8_cp_of_u16(const uint8_t *s, bool ascii, uint32_t u16, bool *exact);
/* Whether the `n` bytes at `s` are all ASCII. */
bool crdt__utf8_is_ascii(const uint8_t *s, size_t n);

/* clients (doc.c) */
/* Local index of client `id`, or CRDT__NONE. */
uint32_t crdt__client_find(const crdt_doc_t *doc, uint64_t id);
/* Makes room for `extra` more clients (pool and hash). */
int crdt__client_reserve(crdt_doc_t *doc, size_t extra);
/* Adds a client known to be absent; room must have been reserved. */
uint32_t crdt__client_add(crdt_doc_t *doc, uint64_t id);

/* seq.c: sequence tree */
int crdt__seq_init(crdt_doc_t *doc);
/* Reserves nodes for `items` more items. */
int crdt__seq_reserve(crdt_doc_t *doc, size_t items);
/* Inserts item `it` directly after item `after` (CRDT__NONE: at the very start).
 * `vis` is its visible UTF-16 length: 0 for a tombstone, else its units (the
 * tree keeps them; items do not). */
void crdt__seq_insert_after(crdt_doc_t *doc, uint32_t after, uint32_t it, uint32_t vis);
/* Inserts items `a` then `b`, of visible lengths `avis` and `bvis`, directly
 * after item `after`. */
void crdt__seq_insert2_after(crdt_doc_t *doc, uint32_t after, uint32_t a, uint32_t avis, uint32_t b,
                             uint32_t bvis);
/* Inserts item `it` directly before item `before` (CRDT__NONE: at the very end). */
void crdt__seq_insert_before(crdt_doc_t *doc, uint32_t before, uint32_t it, uint32_t vis);
/* Removes item `it` from the sequence; its leaf must hold another item. */
void crdt__seq_remove(crdt_doc_t *doc, uint32_t it);
bool crdt__seq_removable(const crdt_doc_t *doc, uint32_t it);
/* crdt__seq_adjust_vis() for a leaf other than the pending one. */
void crdt__seq_adjust_vis_elsewhere(crdt_doc_t *doc, uint32_t l, int64_t dvis);
/* Adds `dvis` visible UTF-16 units to item `it`'s count and those above it
 * (lazily while local edits stay in one leaf: see doc->pend_vis). Inline:
 * every keystroke and backspace comes here. */
static inline void crdt__seq_adjust_vis(crdt_doc_t *doc, uint32_t it, int64_t dvis)
{
    const crdt__item_t *x = &ITEM(doc, it);
    uint32_t l = x->leaf;
    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    leaf->vis[x->slot] = (uint32_t)((int64_t)leaf->vis[x->slot] + dvis);
    if (it != doc->finger_item)
        doc->finger_item = CRDT__NONE;
    if (l != doc->pend_leaf) {
        crdt__seq_adjust_vis_elsewhere(doc, l, dvis);
        return;
    }
    if (l != doc->finger_leaf)
        doc->finger_leaf = CRDT__NONE; /* the units before it may have changed */
    doc->pend_vis += dvis;
}
/* Item holding visible UTF-16 unit `pos` (< vis_len); *off receives the units of
 * that item before `pos`. With `finger` (mutating callers only) the leaf found
 * becomes the document's finger. */
uint32_t crdt__seq_find_vis(const crdt_doc_t *doc, uint32_t pos, uint32_t *off, crdt_doc_t *finger);
/* Number of items before `it`, and visible units before `it`. */
uint32_t crdt__seq_rank(const crdt_doc_t *doc, uint32_t it, uint32_t *vis_before);
/* The item after `it` in document order, or NONE at the end (inline: deletes
 * and typing look at neighbours all the time). */
static inline uint32_t crdt__seq_next(const crdt_doc_t *doc, uint32_t it)
{
    const crdt__item_t *x = &ITEM(doc, it);
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, x->leaf);
    if (x->slot + 1u < leaf->n)
        return leaf->items[x->slot + 1];
    if (leaf->next == CRDT__NONE)
        return CRDT__NONE;
    return SEQ_LEAF(doc, leaf->next).items[0];
}
/* The item before `it`, or NONE at the start. */
static inline uint32_t crdt__seq_prev(const crdt_doc_t *doc, uint32_t it)
{
    const crdt__item_t *x = &ITEM(doc, it);
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, x->leaf);
    if (x->slot > 0)
        return leaf->items[x->slot - 1];
    if (leaf->prev == CRDT__NONE)
        return CRDT__NONE;
    leaf = &SEQ_LEAF(doc, leaf->prev);
    return leaf->items[leaf->n - 1];
}
uint32_t crdt__seq_first(const crdt_doc_t *doc); /* NONE if empty */
uint32_t crdt__seq_last(const crdt_doc_t *doc);  /* NONE if empty */
int crdt__seq_check(const crdt_doc_t *doc);

/* idindex.c: id index */
int crdt__idx_init(crdt_doc_t *doc);
int crdt__idx_reserve(crdt_doc_t *doc, size_t keys);
/*
 * Inner nodes the index may hold after a change inserting `keys` keys. A
 * change takes at most one leaf per key (a split, or a client's first leaf).
 * Every inner node but a root has at least FAN / 2 children (splits make
 * halves, nothing shrinks, snapshot builds make even groups), so a tree of L
 * leaves has at most L / (FAN / 2 - 1) inner nodes plus its root, and all
 * trees together at most leaves / (FAN / 2 - 1) plus one root per tree with
 * inner nodes. A change can give roots to at most `keys` of the clients that
 * have none yet (a change's clients are in the table before it reserves).
 */
static inline size_t crdt__idx_inner_need(const crdt_doc_t *doc, size_t keys)
{
    size_t flat = doc->clients.len - doc->idx_tall;
    return (doc->idx_leaves.len + keys) / (CRDT__IDX_FAN / 2 - 1) + doc->idx_tall +
           (keys < flat ? keys : flat) + 1;
}
void crdt__idx_insert(crdt_doc_t *doc, uint32_t client, uint32_t clock, uint32_t val);
/* Removes an existing key; its leaf must hold another key. */
void crdt__idx_remove(crdt_doc_t *doc, uint32_t client, uint32_t clock);
bool crdt__idx_removable(const crdt_doc_t *doc, uint32_t client, uint32_t clock);
/* After item `item`'s first clock moved from `from` (no other key of its
 * client may lie between the two): its entry's key is the item's clock, so
 * only the inner nodes' copy of a leaf's first key needs fixing. */
void crdt__idx_rekey(crdt_doc_t *doc, uint32_t item, uint32_t from);
/* Client `client`'s greatest entry with key <= clock: returns its value and
 * sets *start_clock, or returns CRDT__NONE. */
uint32_t crdt__idx_find_le(const crdt_doc_t *doc, uint32_t client, uint32_t clock,
                           uint32_t *start_clock);
/* Iteration over client `client`'s entries in key order, from the first with
 * key >= clock. */
typedef struct {
    uint32_t client, leaf, slot;
} crdt__idx_iter_t;
void crdt__idx_seek(const crdt_doc_t *doc, uint32_t client, uint32_t clock, crdt__idx_iter_t *it);
bool crdt__idx_next(const crdt_doc_t *doc, crdt__idx_iter_t *it, uint32_t *clock, uint32_t *val);
int crdt__idx_check(const crdt_doc_t *doc);

/* The item of client `c` holding `clock` if it is the client's hint, else
 * NONE. Cheap; never wrong, as items of one client never share a clock and
 * dead items have len 0. */
static inline uint32_t crdt__hint_find(const crdt_doc_t *doc, uint32_t c, uint32_t clock)
{
    uint32_t h;
    const crdt__item_t *x;
    if (c >= doc->clients.len || (h = CLIENT(doc, c).hint) >= doc->items.len)
        return CRDT__NONE;
    x = &ITEM(doc, h);
    return x->client == c && clock >= x->clock && clock - x->clock < x->len ? h : CRDT__NONE;
}
/* Item holding character id, with the offset of the character in it; or NONE
 * (the id is unknown or names a delete). */
uint32_t crdt__item_find(const crdt_doc_t *doc, crdt__id_t id, uint32_t *off);
/* Splits item `it` at character `off` (0 < off < len); returns the new right
 * part, placed right after it in the sequence and in the id index. Needs one
 * reserved item, sequence and index slot. */
uint32_t crdt__item_split(crdt_doc_t *doc, uint32_t it, uint32_t off);
/* Index of client `c`'s first delete record holding clocks >= `from` (its
 * record count if none): the records from there on, oldest first. */
uint32_t crdt__delrecs_from(const crdt_doc_t *doc, uint32_t c, uint32_t from);
/* Delete records of all clients together. */
size_t crdt__delrecs_total(const crdt_doc_t *doc);
/* Reserves room for `n` more delete records of client `c`. */
int crdt__delrec_reserve_slow(crdt_doc_t *doc, uint32_t c, size_t n);
static inline int crdt__delrec_reserve(crdt_doc_t *doc, uint32_t c, size_t n)
{
    const crdt__pool_t *p = &CLIENT(doc, c).dels;
    return p->cap - p->len >= n ? 0 : crdt__delrec_reserve_slow(doc, c, n);
}
/* crdt_doc_apply_update() into a document being loaded, which the caller
 * frees if this fails: items are reserved as they come (apply.c). */
int crdt__apply_to_fresh(crdt_doc_t *doc, const uint8_t *data, size_t len);
/* Reserves room for `items` new items. */
int crdt__reserve_slow(crdt_doc_t *doc, size_t items);
/* The same; inline for the usual case, a keystroke with room everywhere:
 * these are the conditions under which crdt__seq_reserve(),
 * crdt__idx_reserve() and the pools have nothing to do. */
static inline int crdt__reserve(crdt_doc_t *doc, size_t items)
{
    size_t keys = items;
    if (doc->items.cap - doc->items.len >= items &&
        doc->seq_leaves.cap - doc->seq_leaves.len >= items &&
        doc->seq_inners.cap >=
            (doc->seq_leaves.len + items) / (CRDT__SEQ_FAN / 2 - 1) + doc->seq_height + 3 &&
        doc->idx_leaves.cap - doc->idx_leaves.len >= keys &&
        doc->idx_inners.cap >= crdt__idx_inner_need(doc, keys) &&
        doc->items.len + items < CRDT__IDX_DEL)
        return 0;
    return crdt__reserve_slow(doc, items);
}
/* Bytes a client's text arena may hold: item offsets have 31 bits. */
#define CRDT__TEXT_MAX 0x7fffffffu
/* Reserves `bytes` more text in client `c`'s arena (CRDT_ELIMIT past
 * CRDT__TEXT_MAX). An arena's capacity stays within CRDT__TEXT_MAX too, so
 * text appended into room it already has needs no check. */
int crdt__text_reserve(crdt_doc_t *doc, uint32_t c, size_t bytes);
/* Appends text to client `c`'s arena (reserved); returns its offset. */
static inline uint32_t crdt__text_append(crdt_doc_t *doc, uint32_t c, const uint8_t *text,
                                         uint32_t bytes)
{
    crdt__pool_t *p = &CLIENT(doc, c).text;
    uint32_t off = p->len;
    assert((uint64_t)p->len + bytes <= p->cap);
    if (bytes == 1)
        ((uint8_t *)p->base)[off] = text[0]; /* a keystroke: no call */
    else if (bytes)
        memcpy((uint8_t *)p->base + off, text, bytes);
    p->len += bytes;
    return off;
}
static inline const uint8_t *crdt__item_text(const crdt_doc_t *doc, const crdt__item_t *x)
{
    return (const uint8_t *)CLIENT(doc, x->client).text.base + x->text_off;
}
/* UTF-16 units of item `x`, which is in the sequence: one per character for
 * ASCII, a visible item's count in its leaf, else counted from its text. */
static inline uint32_t crdt__item_u16(const crdt_doc_t *doc, const crdt__item_t *x)
{
    if (x->ascii)
        return x->len;
    if (!x->deleted)
        return SEQ_LEAF(doc, x->leaf).vis[x->slot];
    return crdt__utf8_u16_prefix(crdt__item_text(doc, x), false, x->len);
}
/* UTF-8 bytes of item `x`: one per character for ASCII, else counted from
 * its text. */
static inline uint32_t crdt__item_bytes(const crdt_doc_t *doc, const crdt__item_t *x)
{
    if (x->ascii)
        return x->len;
    return (uint32_t)crdt__utf8_offset(crdt__item_text(doc, x), false, x->len);
}
/* A new item slot (reserved): a dead one or a fresh one. */
uint32_t crdt__item_new(crdt_doc_t *doc);
/* Merges item `b` into item `a` when `a` directly precedes it in the sequence
 * and the two form one run; returns whether it did. */
bool crdt__item_try_merge(crdt_doc_t *doc, uint32_t a, uint32_t b);
void crdt__shrink(crdt_doc_t *doc);

/* A decoded (or about to be encoded) operation. Clients are local indexes for
 * operations built from a document; decoded operations carry indexes into the
 * update's client table until mapped. */
enum { CRDT__OP_INSERT = 0, CRDT__OP_DELETE = 1 };
typedef struct {
    uint32_t kind;
    uint32_t client, clock, len;
    crdt__id_t left, right; /* insert */
    const uint8_t *text;    /* insert */
    uint32_t text_bytes, u16len;
    uint32_t tclient, tlo, backward; /* delete */
} crdt__op_t;

/* codec.c */
/* Encodes `n` operations, grouped by client and in clock order within a client,
 * as an update; their client numbers index `clients`. */
int crdt__encode_ops(const crdt_alloc_t *alloc, const crdt__client_t *clients, size_t nclients,
                     const crdt__op_t *ops, size_t n, crdt_buf_t *out);
/* Decodes an update. On success *ops (allocated through doc) holds *nops
 * operations whose client fields index *ids (*nids replica ids). */
typedef struct {
    crdt__op_t *ops;
    size_t nops, opcap;
    uint64_t *ids;
    size_t nids;
    /* Small updates (a keystroke) decode without allocating. */
    uint64_t small_ids[4];
    crdt__op_t small_ops[4];
    uint8_t *owned; /* memory the operations' text points into, or NULL */
    size_t owned_len;
} crdt__decoded_t;
int crdt__decode_update(const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                        crdt__decoded_t *out);
void crdt__decoded_dispose(const crdt_alloc_t *alloc, crdt__decoded_t *d);
/* Decodes a state vector into per-local-client clocks (array of doc's client
 * count, zero for absent clients). Unknown clients set *unknown_nonzero. */
int crdt__decode_sv(const crdt_doc_t *doc, const uint8_t *data, size_t len, uint32_t **clocks,
                    bool *unknown_nonzero);

/* apply.c */
/* Drops the first `t` clocks of an operation (the part a peer already has). */
void crdt__op_trim(crdt__op_t *op, uint32_t t);
/* `hint` (or NONE) is an item that may hold the left origin. */
void crdt__integrate_insert(crdt_doc_t *doc, const crdt__op_t *op, uint32_t hint);
/* `hint` (or NONE) is an item that may hold the first target. */
void crdt__integrate_delete(crdt_doc_t *doc, const crdt__op_t *op, uint32_t hint);

/* snapshot.c: the whole-document state (format version 2) */
typedef struct crdt__snap crdt__snap_t;
/* `compress`: CRDT__SNAP_LZ or CRDT__SNAP_LZ_FAST compress the body when it is
 * long enough (else it is stored as is, as with CRDT__SNAP_STORED). */
#define CRDT__SNAP_STORED 0
#define CRDT__SNAP_LZ 1
#define CRDT__SNAP_LZ_FAST 2
int crdt__snapshot_encode(const crdt_doc_t *doc, int compress, crdt_buf_t *out);
/* Parses and checks a state; the result may point into `data`. */
int crdt__snapshot_parse(const crdt_alloc_t *a, const uint8_t *data, size_t len,
                         crdt__snap_t **out);
void crdt__snapshot_dispose(const crdt_alloc_t *a, crdt__snap_t *s);
/* Fills a fresh document (created, never edited) from a parsed state. */
int crdt__snapshot_build(crdt_doc_t *doc, crdt__snap_t *s);
/* The state's operations, for merging into a document that has some; `d`
 * takes over the memory their text lives in. */
int crdt__snapshot_to_ops(const crdt_alloc_t *a, crdt__snap_t *s, crdt__decoded_t *d);

/* version.c */
/* Collects the operations of `doc` that a peer with `clocks` (per local client,
 * NULL = empty) lacks, as op runs. */
int crdt__collect_ops(const crdt_doc_t *doc, const uint32_t *clocks, crdt__op_t **ops, size_t *nops,
                      size_t *cap);

#endif /* WEFT_CRDT_INTERNAL_H */
