/* SPDX-License-Identifier: MIT */
/*
 * idindex.c: the id index, one B+tree per client from the clock of each of
 * its items (the first clock of the run) to the item's index. Items of one
 * client never overlap in clocks, so the greatest key <= clock names the only
 * candidate holder of an id; the clocks no item holds are the client's
 * deletes (each client keeps its delete records in clock order instead, see
 * crdt__delrec_t). A leaf holds only the item indexes (32 in 136 bytes):
 * an entry's key is its item's clock, read from the item, so the index
 * stores no key twice and an item whose first clock moves (backspacing
 * grows a tombstone leftwards) is re-keyed by that change itself, unless
 * it is the first of its leaf (crdt__idx_rekey()). A client's tree is as
 * deep as its own history needs. Leaves are
 * kept nearly full: a client's new items take ever greater clocks, so a full
 * last leaf passes only its last key on to the new leaf (split_append), and
 * a full leaf elsewhere first hands keys to a sibling with room; only when
 * neither sibling has any does it split in halves. Inner nodes
 * keep the exact smallest key below each child. A client's leaves are
 * chained so its items can be read in clock order (diffs). All trees share
 * two node pools; like the sequence tree, storage is reserved before a
 * change.
 */
#include "crdt_internal.h"

#define HALF_LEAF (CRDT__IDX_LEAF / 2)
#define HALF_FAN (CRDT__IDX_FAN / 2)
/* Keys a leaf split by an append passes on to the new leaf with the new key:
 * one, so that no leaf holds a single key, which could not be removed. */
#define APPEND_MOVE 1

int crdt__idx_init(crdt_doc_t *doc)
{
    doc->idx_count = 0;
    doc->idx_tall = 0;
    return 0;
}

int crdt__idx_reserve(crdt_doc_t *doc, size_t keys)
{
    size_t need;
    int err;
    if (doc->idx_leaves.cap - doc->idx_leaves.len >= keys &&
        doc->idx_inners.cap >= crdt__idx_inner_need(doc, keys))
        return 0;
    err = crdt__pool_reserve(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t), keys);
    if (err)
        return err;
    need = crdt__idx_inner_need(doc, keys);
    if (need > doc->idx_inners.len)
        err = crdt__pool_reserve(doc, &doc->idx_inners, sizeof(crdt__idx_inner_t),
                                 need - doc->idx_inners.len);
    return err;
}

/*
 * The searches below halve without a branch on the comparison (the compiler
 * picks with a conditional move): ids looked up while merging are spread
 * over the document, so a branch on them would be mispredicted half the time.
 * (Counting over all 32 keys instead, vectorized, was as fast once re-keying
 * had its slot hint, and took 15 % more instructions in node_nodecc's merge.)
 */

/* The key of entry i of a leaf: its item's first clock. */
static inline uint32_t key_at(const crdt_doc_t *doc, const crdt__idx_leaf_t *leaf, uint32_t i)
{
    return ITEM(doc, leaf->vals[i]).clock;
}

/* Index of the last key <= k in a sorted array (n >= 1), or 0 if none. */
static inline uint32_t child_for(const uint32_t *keys, uint32_t n, uint32_t k)
{
    const uint32_t *base = keys;
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half] <= k ? base + half : base;
        n -= half;
    }
    return (uint32_t)(base - keys);
}

/* The same over a leaf's keys. */
static inline uint32_t leaf_child_for(const crdt_doc_t *doc, const crdt__idx_leaf_t *leaf,
                                      uint32_t k)
{
    uint32_t lo = 0, n = leaf->n;
    while (n > 1) {
        uint32_t half = n / 2;
        lo = key_at(doc, leaf, lo + half) <= k ? lo + half : lo;
        n -= half;
    }
    return lo;
}

/* First slot of a leaf with key >= k (n if none). */
static inline uint32_t lower_bound(const crdt_doc_t *doc, const crdt__idx_leaf_t *leaf, uint32_t k)
{
    uint32_t lo = 0, n = leaf->n;
    if (n == 0)
        return 0;
    while (n > 1) {
        uint32_t half = n / 2;
        lo = key_at(doc, leaf, lo + half) < k ? lo + half : lo;
        n -= half;
    }
    return lo + (key_at(doc, leaf, lo) < k);
}

/*
 * The finger: per client, the leaf of its last change (idx_leaf). Every leaf
 * of the pool is in its client's tree and leaves never empty, so it needs no
 * invalidation: a key k at or after a leaf's first key and before the next
 * leaf's first has its greatest key <= k in that leaf, and a change at a slot
 * other than 0 (k strictly after the first key) leaves the inner nodes as
 * they were. Typing, backspacing and a remote client's next edit usually
 * land in its last leaf, which skips the descent. Returns the leaf, or NONE.
 */
static inline uint32_t finger_holding(const crdt_doc_t *doc, const crdt__client_t *cl, uint32_t k,
                                      bool strict)
{
    const crdt__idx_leaf_t *leaf;
    uint32_t l = cl->idx_leaf, first;
    if (l == CRDT__NONE)
        return CRDT__NONE;
    leaf = &IDX_LEAF(doc, l);
    first = key_at(doc, leaf, 0);
    if (k < first || (strict && k == first))
        return CRDT__NONE;
    if (k <= key_at(doc, leaf, leaf->n - 1) || leaf->next == CRDT__NONE ||
        k < key_at(doc, &IDX_LEAF(doc, leaf->next), 0))
        return l;
    return CRDT__NONE;
}

/* Descends client `cl`'s tree (not empty) to the leaf where key k belongs,
 * recording the path. */
static uint32_t descend(const crdt_doc_t *doc, const crdt__client_t *cl, uint32_t k, uint32_t *path,
                        uint32_t *slots)
{
    uint32_t node = cl->idx_root;
    for (uint32_t h = cl->idx_height; h > 0; h--) {
        const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        uint32_t i = child_for(in->keys, in->n, k);
        path[h] = node;
        slots[h] = i;
        node = in->child[i];
    }
    return node;
}

/* The same without the path. */
static uint32_t leaf_for(const crdt_doc_t *doc, const crdt__client_t *cl, uint32_t k)
{
    uint32_t node = cl->idx_root;
    for (uint32_t h = cl->idx_height; h > 0; h--) {
        const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        node = in->child[child_for(in->keys, in->n, k)];
    }
    return node;
}

/* A change to slot 0 of a leaf changes the smallest key recorded above it. */
static void fix_min(crdt_doc_t *doc, const crdt__client_t *cl, const uint32_t *path,
                    const uint32_t *slots, uint32_t min)
{
    for (uint32_t h = 1; h <= cl->idx_height; h++) {
        IDX_INNER(doc, path[h]).keys[slots[h]] = min;
        if (slots[h] != 0)
            break;
    }
}

static inline void leaf_put(crdt__idx_leaf_t *leaf, uint32_t s, uint32_t val)
{
    memmove(&leaf->vals[s + 1], &leaf->vals[s], (leaf->n - s) * sizeof(uint32_t));
    leaf->vals[s] = val;
    leaf->n++;
}

/* Splits the full leaf `node` in halves and adds item `val` at
 * slot `s` of the proper half; returns the new leaf, the upper half. */
static uint32_t split_half(crdt_doc_t *doc, crdt__client_t *cl, uint32_t node, uint32_t s,
                           uint32_t val)
{
    uint32_t sib = crdt__pool_take(&doc->idx_leaves);
    crdt__idx_leaf_t *a = &IDX_LEAF(doc, node), *b = &IDX_LEAF(doc, sib), *t = a;
    b->n = a->n - HALF_LEAF;
    memcpy(b->vals, &a->vals[HALF_LEAF], b->n * sizeof(uint32_t));
    a->n = HALF_LEAF;
    b->next = a->next;
    a->next = sib;
    if (s > HALF_LEAF) {
        t = b;
        s -= HALF_LEAF;
        cl->idx_leaf = sib;
    }
    leaf_put(t, s, val);
    return sib;
}

/*
 * A key past the end of the client's last leaf is an append (a client's new
 * items take ever greater clocks): the full leaf keeps all but its last
 * APPEND_MOVE keys, which start the new leaf with the new key, so the
 * leaves behind the appends stay full. (A split in halves would leave each
 * half empty for good.) Returns the new leaf.
 */
static uint32_t split_append(crdt_doc_t *doc, crdt__client_t *cl, uint32_t node, uint32_t val)
{
    uint32_t sib = crdt__pool_take(&doc->idx_leaves);
    crdt__idx_leaf_t *a = &IDX_LEAF(doc, node), *b = &IDX_LEAF(doc, sib);
    a->n -= APPEND_MOVE;
    memcpy(b->vals, &a->vals[a->n], APPEND_MOVE * sizeof(uint32_t));
    b->vals[APPEND_MOVE] = val;
    b->n = APPEND_MOVE + 1;
    b->next = CRDT__NONE;
    a->next = sib;
    cl->idx_leaf = sib;
    return sib;
}

/*
 * Before a full leaf splits, a sibling under the same parent with room takes
 * some of its keys (about half the sibling's room), so leaves filled by
 * appends stay nearly full when keys later land inside them (item splits).
 * The new key stays in the leaf, except that a key past the leaf's last one
 * goes to the right sibling's front. Only the parent's key of whichever of
 * the two leaves got a new first key changes: that leaf is not its parent's
 * first child, so nothing above the parent does. Returns whether the key
 * of item `val`, due at slot `s` of leaf `node`, went in.
 */
static bool shift_to_sibling(crdt_doc_t *doc, crdt__client_t *cl, const uint32_t *path,
                             const uint32_t *slots, uint32_t node, uint32_t s, uint32_t val)
{
    crdt__idx_inner_t *in;
    crdt__idx_leaf_t *leaf, *sib;
    uint32_t i, room_l = 0, room_r = 0, move;
    if (cl->idx_height == 0)
        return false;
    in = &IDX_INNER(doc, path[1]);
    i = slots[1];
    if (i > 0)
        room_l = CRDT__IDX_LEAF - IDX_LEAF(doc, in->child[i - 1]).n;
    if (i + 1 < in->n)
        room_r = CRDT__IDX_LEAF - IDX_LEAF(doc, in->child[i + 1]).n;
    if (room_l == 0 && room_r == 0)
        return false;
    leaf = &IDX_LEAF(doc, node);
    if (room_l >= room_r) {
        /* The first keys go to the end of the left sibling. The leaf is
         * not the first child, so its first key is < clock: s >= 1. */
        assert(s >= 1);
        move = (room_l + 1) / 2;
        if (move > s)
            move = s;
        sib = &IDX_LEAF(doc, in->child[i - 1]);
        memcpy(&sib->vals[sib->n], leaf->vals, move * sizeof(uint32_t));
        sib->n += move;
        leaf->n -= move;
        memmove(leaf->vals, &leaf->vals[move], leaf->n * sizeof(uint32_t));
        leaf_put(leaf, s - move, val);
        in->keys[i] = key_at(doc, leaf, 0);
        return true;
    }
    sib = &IDX_LEAF(doc, in->child[i + 1]);
    cl->idx_leaf = in->child[i + 1];
    if (s == leaf->n) {
        leaf_put(sib, 0, val);
    } else {
        /* The last keys go to the front of the right sibling. */
        move = (room_r + 1) / 2;
        if (move > leaf->n - s)
            move = leaf->n - s;
        memmove(&sib->vals[move], sib->vals, sib->n * sizeof(uint32_t));
        leaf->n -= move;
        memcpy(sib->vals, &leaf->vals[leaf->n], move * sizeof(uint32_t));
        sib->n += move;
        leaf_put(leaf, s, val);
        cl->idx_leaf = node;
    }
    in->keys[i + 1] = key_at(doc, sib, 0);
    return true;
}

void crdt__idx_insert(crdt_doc_t *doc, uint32_t client, uint32_t clock, uint32_t val)
{
    crdt__client_t *cl = &CLIENT(doc, client);
    uint32_t path[CRDT__IDX_MAX_HEIGHT], slots[CRDT__IDX_MAX_HEIGHT];
    uint32_t node, h, s, sib, sib_key;
    crdt__idx_leaf_t *leaf;

    doc->idx_count++;
    if (cl->idx_root == CRDT__NONE) {
        node = crdt__pool_take(&doc->idx_leaves);
        leaf = &IDX_LEAF(doc, node);
        leaf->n = 1;
        leaf->next = CRDT__NONE;
        leaf->vals[0] = val;
        cl->idx_root = cl->idx_leaf = node;
        cl->idx_height = 0;
        return;
    }
    node = finger_holding(doc, cl, clock, true);
    if (node != CRDT__NONE && IDX_LEAF(doc, node).n < CRDT__IDX_LEAF) {
        leaf = &IDX_LEAF(doc, node);
        /* (a client's new item usually goes last: one key read) */
        s = clock > key_at(doc, leaf, leaf->n - 1) ? leaf->n : lower_bound(doc, leaf, clock);
        assert(s > 0 && (s == leaf->n || key_at(doc, leaf, s) != clock));
        leaf_put(leaf, s, val);
        return;
    }
    node = cl->idx_root;
    for (h = cl->idx_height; h > 0; h--) {
        crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        uint32_t i = child_for(in->keys, in->n, clock);
        if (clock < in->keys[i])
            in->keys[i] = clock; /* new smallest key of this subtree */
        path[h] = node;
        slots[h] = i;
        node = in->child[i];
    }
    cl->idx_leaf = node;
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(doc, leaf, clock);
    assert(s == leaf->n || key_at(doc, leaf, s) != clock);
    if (leaf->n < CRDT__IDX_LEAF) {
        leaf_put(leaf, s, val);
        return;
    }

    if (s == leaf->n && leaf->next == CRDT__NONE)
        sib = split_append(doc, cl, node, val);
    else if (shift_to_sibling(doc, cl, path, slots, node, s, val))
        return;
    else
        sib = split_half(doc, cl, node, s, val);
    sib_key = key_at(doc, &IDX_LEAF(doc, sib), 0);

    /* Insert (sib_key, sib) after the child we came from, splitting upwards. */
    for (h = 1;; h++) {
        crdt__idx_inner_t *in, *t;
        uint32_t p, q, at;
        if (h > cl->idx_height) {
            uint32_t r = crdt__pool_take(&doc->idx_inners);
            in = &IDX_INNER(doc, r);
            in->n = 2;
            in->child[0] = node;
            in->keys[0] =
                h == 1 ? key_at(doc, &IDX_LEAF(doc, node), 0) : IDX_INNER(doc, node).keys[0];
            in->child[1] = sib;
            in->keys[1] = sib_key;
            cl->idx_root = r;
            if (cl->idx_height++ == 0)
                doc->idx_tall++;
            assert(cl->idx_height < CRDT__IDX_MAX_HEIGHT);
            return;
        }
        p = path[h];
        at = slots[h] + 1;
        in = &IDX_INNER(doc, p);
        if (in->n < CRDT__IDX_FAN) {
            memmove(&in->keys[at + 1], &in->keys[at], (in->n - at) * sizeof(uint32_t));
            memmove(&in->child[at + 1], &in->child[at], (in->n - at) * sizeof(uint32_t));
            in->keys[at] = sib_key;
            in->child[at] = sib;
            in->n++;
            return;
        }
        q = crdt__pool_take(&doc->idx_inners);
        in = &IDX_INNER(doc, p);
        {
            crdt__idx_inner_t *b = &IDX_INNER(doc, q);
            b->n = in->n - HALF_FAN;
            memcpy(b->keys, &in->keys[HALF_FAN], b->n * sizeof(uint32_t));
            memcpy(b->child, &in->child[HALF_FAN], b->n * sizeof(uint32_t));
            in->n = HALF_FAN;
            t = in;
            if (at > HALF_FAN) {
                t = b;
                at -= HALF_FAN;
            }
            memmove(&t->keys[at + 1], &t->keys[at], (t->n - at) * sizeof(uint32_t));
            memmove(&t->child[at + 1], &t->child[at], (t->n - at) * sizeof(uint32_t));
            t->keys[at] = sib_key;
            t->child[at] = sib;
            t->n++;
            node = p;
            sib = q;
            sib_key = b->keys[0];
        }
    }
}

bool crdt__idx_removable(const crdt_doc_t *doc, uint32_t client, uint32_t clock)
{
    const crdt__client_t *cl = &CLIENT(doc, client);
    uint32_t l = finger_holding(doc, cl, clock, false);
    if (l == CRDT__NONE)
        l = leaf_for(doc, cl, clock);
    return IDX_LEAF(doc, l).n >= 2;
}

void crdt__idx_remove(crdt_doc_t *doc, uint32_t client, uint32_t clock)
{
    crdt__client_t *cl = &CLIENT(doc, client);
    uint32_t path[CRDT__IDX_MAX_HEIGHT], slots[CRDT__IDX_MAX_HEIGHT];
    uint32_t node = finger_holding(doc, cl, clock, true), s;
    crdt__idx_leaf_t *leaf;
    bool fixed = node != CRDT__NONE; /* slot > 0: nothing above changes */
    if (!fixed)
        node = descend(doc, cl, clock, path, slots);
    cl->idx_leaf = node;
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(doc, leaf, clock);
    assert(s < leaf->n && key_at(doc, leaf, s) == clock && leaf->n >= 2);
    memmove(&leaf->vals[s], &leaf->vals[s + 1], (leaf->n - s - 1) * sizeof(uint32_t));
    leaf->n--;
    doc->idx_count--;
    if (s == 0 && !fixed)
        fix_min(doc, cl, path, slots, key_at(doc, leaf, 0));
}

void crdt__idx_rekey(crdt_doc_t *doc, uint32_t item, uint32_t from)
{
    const crdt__item_t *x = &ITEM(doc, item);
    crdt__client_t *cl = &CLIENT(doc, x->client);
    uint32_t path[CRDT__IDX_MAX_HEIGHT], slots[CRDT__IDX_MAX_HEIGHT];
    uint32_t node = cl->idx_leaf, s = cl->idx_slot, to = x->clock;
    crdt__idx_leaf_t *leaf;
    /* The item already holds `to`, which is its key: only the smallest key
     * recorded above its leaf can be stale, if it is the leaf's first. An
     * item is in its client's tree once, so finding it at the hinted slot
     * (not 0) of one of the client's leaves is proof that nothing is. */
    if (node != CRDT__NONE && s > 0 && s < (leaf = &IDX_LEAF(doc, node))->n &&
        leaf->vals[s] == item)
        return;
    node = finger_holding(doc, cl, to, true);
    leaf = node == CRDT__NONE ? NULL : &IDX_LEAF(doc, node);
    if (leaf && (s = lower_bound(doc, leaf, to)) < leaf->n && leaf->vals[s] == item) {
        cl->idx_slot = s;
        return;
    }
    /* The inner nodes still record `from` if the item is first in its leaf. */
    node = descend(doc, cl, from, path, slots);
    cl->idx_leaf = node;
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(doc, leaf, to);
    assert(s < leaf->n && leaf->vals[s] == item);
    cl->idx_slot = s;
    if (s == 0)
        fix_min(doc, cl, path, slots, to);
}

uint32_t crdt__idx_find_le(const crdt_doc_t *doc, uint32_t client, uint32_t clock,
                           uint32_t *start_clock)
{
    const crdt__client_t *cl;
    const crdt__idx_leaf_t *leaf;
    uint32_t l, i, k;
    if (client >= doc->clients.len || (cl = &CLIENT(doc, client))->idx_root == CRDT__NONE)
        return CRDT__NONE;
    l = finger_holding(doc, cl, clock, false);
    leaf = &IDX_LEAF(doc, l != CRDT__NONE ? l : leaf_for(doc, cl, clock));
    i = leaf_child_for(doc, leaf, clock);
    if ((k = key_at(doc, leaf, i)) > clock)
        return CRDT__NONE; /* before the client's first item */
    *start_clock = k;
    return leaf->vals[i];
}

void crdt__idx_seek(const crdt_doc_t *doc, uint32_t client, uint32_t clock, crdt__idx_iter_t *it)
{
    const crdt__client_t *cl;
    const crdt__idx_leaf_t *leaf;
    uint32_t node, s;
    it->client = client;
    it->leaf = CRDT__NONE;
    it->slot = 0;
    if (client >= doc->clients.len || (cl = &CLIENT(doc, client))->idx_root == CRDT__NONE)
        return;
    node = leaf_for(doc, cl, clock);
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(doc, leaf, clock);
    if (s == leaf->n) {
        node = leaf->next;
        s = 0;
    }
    it->leaf = node;
    it->slot = s;
}

bool crdt__idx_next(const crdt_doc_t *doc, crdt__idx_iter_t *it, uint32_t *clock, uint32_t *val)
{
    const crdt__idx_leaf_t *leaf;
    if (it->leaf == CRDT__NONE)
        return false;
    leaf = &IDX_LEAF(doc, it->leaf);
    *clock = key_at(doc, leaf, it->slot);
    *val = leaf->vals[it->slot];
    if (++it->slot == leaf->n) {
        it->leaf = leaf->next;
        it->slot = 0;
    }
    return true;
}

/* Checks one client's subtree: keys ascending across leaves, leaves chained
 * in that order, inner keys the exact minimums, node fill within bounds. */
typedef struct {
    uint32_t client; /* whose tree: every leaf entry must name a live item of it */
    uint32_t last_key, last_leaf, count, inners, leaves;
    bool have_key;
} check_t;

static int check_node(const crdt_doc_t *doc, uint32_t node, uint32_t h, uint32_t *min, check_t *ck)
{
    if (h == 0) {
        const crdt__idx_leaf_t *leaf;
        if (node >= doc->idx_leaves.len)
            return -1;
        leaf = &IDX_LEAF(doc, node);
        if (leaf->n == 0 || leaf->n > CRDT__IDX_LEAF)
            return -1;
        if (ck->last_leaf != CRDT__NONE && IDX_LEAF(doc, ck->last_leaf).next != node)
            return -1;
        for (uint32_t i = 0; i < leaf->n; i++) {
            uint32_t k;
            if (leaf->vals[i] >= doc->items.len || ITEM(doc, leaf->vals[i]).len == 0 ||
                ITEM(doc, leaf->vals[i]).client != ck->client)
                return -1;
            k = key_at(doc, leaf, i);
            if (ck->have_key && k <= ck->last_key)
                return -1;
            ck->last_key = k;
            ck->have_key = true;
        }
        ck->last_leaf = node;
        ck->leaves++;
        *min = key_at(doc, leaf, 0);
        ck->count += leaf->n;
        return 0;
    } else {
        const crdt__idx_inner_t *in;
        if (node >= doc->idx_inners.len)
            return -1;
        in = &IDX_INNER(doc, node);
        if (in->n < 2 || in->n > CRDT__IDX_FAN)
            return -1;
        ck->inners++;
        for (uint32_t i = 0; i < in->n; i++) {
            uint32_t m;
            if (check_node(doc, in->child[i], h - 1, &m, ck) != 0 || m != in->keys[i])
                return -1;
            if (i == 0)
                *min = m;
        }
        return 0;
    }
}

int crdt__idx_check(const crdt_doc_t *doc)
{
    uint32_t count = 0, tall = 0, leaves = 0, inners = 0;
    for (uint32_t c = 0; c < doc->clients.len; c++) {
        const crdt__client_t *cl = &CLIENT(doc, c);
        check_t ck = {c, 0, CRDT__NONE, 0, 0, 0, false};
        uint32_t min;
        if (cl->idx_root == CRDT__NONE) {
            if (cl->idx_height != 0 || cl->idx_leaf != CRDT__NONE)
                return CRDT_EINTERNAL;
            continue;
        }
        if (cl->idx_height >= CRDT__IDX_MAX_HEIGHT ||
            check_node(doc, cl->idx_root, cl->idx_height, &min, &ck) != 0 ||
            IDX_LEAF(doc, ck.last_leaf).next != CRDT__NONE || cl->idx_leaf >= doc->idx_leaves.len)
            return CRDT_EINTERNAL;
        count += ck.count;
        leaves += ck.leaves;
        inners += ck.inners;
        tall += cl->idx_height > 0;
    }
    /* Every node of the pools belongs to exactly one tree. */
    if (count != doc->idx_count || tall != doc->idx_tall || leaves != doc->idx_leaves.len ||
        inners != doc->idx_inners.len)
        return CRDT_EINTERNAL;
    return 0;
}
