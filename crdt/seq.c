/* SPDX-License-Identifier: MIT */
/*
 * seq.c: the sequence tree, an order-statistic B+tree over a document's items
 * in document order. Leaves hold item indexes; inner nodes hold, for each
 * child, its visible UTF-16 length and its number of items, so an index finds
 * its item and an item finds its rank by walking one root-to-leaf path.
 *
 * Items leave the tree only when merged into their left neighbour, and never
 * from a leaf holding one item, so leaves never empty and nodes only split.
 * A full leaf takes an item after the document's last one by passing only
 * its own last item on to a new leaf (split_append); elsewhere it first
 * fills a sibling that has plenty of room (shift_to_sibling) and splits in
 * halves only when neither has: leaves stay fuller than halves would.
 * Each node knows its parent, each item its leaf, and leaves also keep each
 * item's visible length so walks stay inside the tree. The leftmost leaf is
 * always leaf 0: splits move the upper half to a new node.
 * Node storage is reserved by crdt__seq_reserve() before a change, so inserts
 * never allocate.
 */
#include "crdt_internal.h"

#define HALF_LEAF (CRDT__SEQ_LEAF / 2)
#define HALF_FAN (CRDT__SEQ_FAN / 2)
/* Items a leaf split by an append passes on to the new leaf with the new
 * one: one, so that no leaf holds a single item (which could not merge away). */
#define APPEND_MOVE 1
/* A full leaf hands items to a sibling that has room for at least this many
 * (and then fills it); with less room it splits. Shifting costs instructions
 * (every moved item and every item whose slot changes is rewritten), so a
 * shift must move enough to pay for itself. */
#define SHIFT_MIN 12

int crdt__seq_init(crdt_doc_t *doc)
{
    int err = crdt__pool_reserve(doc, &doc->seq_leaves, sizeof(crdt__seq_leaf_t), 1);
    uint32_t l;
    if (err)
        return err;
    l = crdt__pool_take(&doc->seq_leaves);
    SEQ_LEAF(doc, l).parent = CRDT__NONE;
    SEQ_LEAF(doc, l).n = 0;
    SEQ_LEAF(doc, l).prev = CRDT__NONE;
    SEQ_LEAF(doc, l).next = CRDT__NONE;
    doc->seq_root = l;
    doc->seq_height = 0;
    doc->pend_leaf = CRDT__NONE;
    doc->pend_vis = 0;
    return 0;
}

/*
 * Room for `items` more items. Each insert splits at most one leaf, so k
 * inserts make at most k leaves. Inner nodes other than the root hold at
 * least HALF_FAN children (they never lose any), which bounds their total.
 */
int crdt__seq_reserve(crdt_doc_t *doc, size_t items)
{
    size_t leaves = doc->seq_leaves.len;
    size_t new_leaves = items;
    size_t inner_total;
    int err;
    if (leaves + items > CRDT__NO_LEAF)
        return CRDT_ELIMIT; /* an item could not name its leaf */
    /* Nothing to do when the pools already hold what the code below asks. */
    if (doc->seq_leaves.cap - leaves >= items &&
        doc->seq_inners.cap >= (leaves + items) / (HALF_FAN - 1) + doc->seq_height + 3)
        return 0;
    err = crdt__pool_reserve(doc, &doc->seq_leaves, sizeof(crdt__seq_leaf_t), new_leaves);
    if (err)
        return err;
    inner_total = (leaves + new_leaves) / (HALF_FAN - 1) + doc->seq_height + 3;
    if (inner_total > doc->seq_inners.len)
        err = crdt__pool_reserve(doc, &doc->seq_inners, sizeof(crdt__seq_inner_t),
                                 inner_total - doc->seq_inners.len);
    return err;
}

static inline uint32_t node_parent(const crdt_doc_t *doc, uint32_t node, bool leaf)
{
    return leaf ? SEQ_LEAF(doc, node).parent : SEQ_INNER(doc, node).parent;
}

static inline uint32_t node_pslot(const crdt_doc_t *doc, uint32_t node, bool leaf)
{
    return leaf ? SEQ_LEAF(doc, node).pslot : SEQ_INNER(doc, node).pslot;
}

/* Points children [from, n) of inner node `p` back at it. */
static void relink(crdt_doc_t *doc, uint32_t p, uint32_t from, bool leaf_children)
{
    const crdt__seq_inner_t *in = &SEQ_INNER(doc, p);
    for (uint32_t j = from; j < in->n; j++) {
        if (leaf_children) {
            SEQ_LEAF(doc, in->child[j]).parent = p;
            SEQ_LEAF(doc, in->child[j]).pslot = j;
        } else {
            SEQ_INNER(doc, in->child[j]).parent = p;
            SEQ_INNER(doc, in->child[j]).pslot = j;
        }
    }
}

static inline uint32_t item_slot(const crdt_doc_t *doc, uint32_t it)
{
    assert(SEQ_LEAF(doc, ITEM(doc, it).leaf).items[ITEM(doc, it).slot] == it);
    return ITEM(doc, it).slot;
}

/* Points items [from, to) of leaf `l` back at their place; their deleted
 * flags stay. */
static void reslot_range(crdt_doc_t *doc, uint32_t l, uint32_t from, uint32_t to)
{
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    const uint32_t flag = ~crdt__item_place(CRDT__NO_LEAF, CRDT__SEQ_LEAF - 1);
    for (uint32_t j = from; j < to; j++) {
        crdt__item_t *x = &ITEM(doc, leaf->items[j]);
        x->place = (x->place & flag) | crdt__item_place(l, j);
    }
}

/* Points items [from, n) of leaf `l` back at their place. */
static void reslot(crdt_doc_t *doc, uint32_t l, uint32_t from)
{
    reslot_range(doc, l, from, SEQ_LEAF(doc, l).n);
}

/* Items [from, n) of leaf `l` moved `by` slots along it (one add each). */
static void shift_slots(crdt_doc_t *doc, uint32_t l, uint32_t from, int32_t by)
{
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    const uint32_t step = (uint32_t)by * crdt__item_place(0, 1);
    for (uint32_t j = from; j < leaf->n; j++)
        ITEM(doc, leaf->items[j]).place += step;
}

/* Adds (dv, dc) to the entries on the path from `node` to the root. */
static void propagate(crdt_doc_t *doc, uint32_t node, bool leaf, int64_t dv, int64_t dc)
{
    uint32_t p, s;
    if (!leaf || node != doc->finger_leaf)
        doc->finger_leaf = CRDT__NONE;
    p = node_parent(doc, node, leaf), s = node_pslot(doc, node, leaf);
    while (p != CRDT__NONE) {
        crdt__seq_inner_t *in = &SEQ_INNER(doc, p);
        in->vis[s] = (uint32_t)((int64_t)in->vis[s] + dv);
        in->cnt[s] = (uint32_t)((int64_t)in->cnt[s] + dc);
        p = in->parent;
        s = in->pslot;
    }
}

/* Adds the pending visible units to the entries on their leaf's path. */
static void settle(crdt_doc_t *doc)
{
    uint32_t p, s;
    if (doc->pend_vis == 0)
        return;
    p = SEQ_LEAF(doc, doc->pend_leaf).parent, s = SEQ_LEAF(doc, doc->pend_leaf).pslot;
    while (p != CRDT__NONE) {
        crdt__seq_inner_t *in = &SEQ_INNER(doc, p);
        in->vis[s] = (uint32_t)((int64_t)in->vis[s] + doc->pend_vis);
        p = in->parent;
        s = in->pslot;
    }
    doc->pend_vis = 0;
}

/* For readers of inner nodes that cannot settle (const): the pending leaf's
 * ancestor at each height h (node[h]) and its entry there (slot[h]), the
 * entries that lack doc->pend_vis. Returns false if nothing is pending. */
typedef struct {
    uint32_t node[CRDT__SEQ_MAX_HEIGHT + 1], slot[CRDT__SEQ_MAX_HEIGHT + 1];
} pend_path_t;

static bool pend_path(const crdt_doc_t *doc, pend_path_t *pp)
{
    uint32_t p, s, h = 1;
    if (doc->pend_vis == 0)
        return false;
    p = SEQ_LEAF(doc, doc->pend_leaf).parent, s = SEQ_LEAF(doc, doc->pend_leaf).pslot;
    for (; p != CRDT__NONE && h <= CRDT__SEQ_MAX_HEIGHT; h++) {
        pp->node[h] = p;
        pp->slot[h] = s;
        s = SEQ_INNER(doc, p).pslot;
        p = SEQ_INNER(doc, p).parent;
    }
    return true;
}

/* The pending units missing from entry i of inner node n at height h. */
static inline int64_t pend_at(const crdt_doc_t *doc, const pend_path_t *pp, bool pending,
                              uint32_t h, uint32_t n, uint32_t i)
{
    return pending && h <= doc->seq_height && pp->node[h] == n && pp->slot[h] == i ? doc->pend_vis
                                                                                   : 0;
}

static void leaf_agg(const crdt_doc_t *doc, uint32_t l, uint32_t *vis, uint32_t *cnt)
{
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    uint32_t v = 0;
    for (uint32_t i = 0; i < leaf->n; i++)
        v += leaf->vis[i];
    *vis = v;
    *cnt = leaf->n;
}

static void inner_agg(const crdt_doc_t *doc, uint32_t n, uint32_t *vis, uint32_t *cnt)
{
    const crdt__seq_inner_t *in = &SEQ_INNER(doc, n);
    uint32_t v = 0, c = 0;
    for (uint32_t i = 0; i < in->n; i++) {
        v += in->vis[i];
        c += in->cnt[i];
    }
    *vis = v;
    *cnt = c;
}

/* Puts the k items `its`, of visible lengths `vis`, at `slot` of leaf `l`,
 * which has room for them: the items after them move once and the path up is
 * walked once. */
static inline void leaf_insert(crdt_doc_t *doc, uint32_t l, uint32_t slot, const uint32_t *its,
                               const uint32_t *vis, uint32_t k)
{
    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    int64_t v = 0;
    assert(leaf->n + k <= CRDT__SEQ_LEAF);
    settle(doc);
    memmove(&leaf->items[slot + k], &leaf->items[slot], (leaf->n - slot) * sizeof(uint32_t));
    memmove(&leaf->vis[slot + k], &leaf->vis[slot], (leaf->n - slot) * sizeof(uint32_t));
    for (uint32_t i = 0; i < k; i++) {
        leaf->items[slot + i] = its[i];
        leaf->vis[slot + i] = vis[i];
        v += leaf->vis[slot + i];
    }
    leaf->n += k;
    reslot_range(doc, l, slot, slot + k);
    shift_slots(doc, l, slot + k, (int32_t)k);
    doc->finger_item = CRDT__NONE;
    propagate(doc, l, true, v, k);
}

/* Puts item `it` (visible units v) at `slot` of leaf `l`, which has room;
 * the caller fixes slots and counts. */
static inline void leaf_put(crdt_doc_t *doc, uint32_t l, uint32_t slot, uint32_t it, uint32_t v)
{
    crdt__seq_leaf_t *t = &SEQ_LEAF(doc, l);
    memmove(&t->items[slot + 1], &t->items[slot], (t->n - slot) * sizeof(uint32_t));
    memmove(&t->vis[slot + 1], &t->vis[slot], (t->n - slot) * sizeof(uint32_t));
    t->items[slot] = it;
    t->vis[slot] = v;
    t->n++;
}

/* A new leaf right after leaf `l`, in the leaf chain but not yet in a parent. */
static uint32_t new_leaf_after(crdt_doc_t *doc, uint32_t l)
{
    uint32_t sib = crdt__pool_take(&doc->seq_leaves);
    crdt__seq_leaf_t *a = &SEQ_LEAF(doc, l), *b = &SEQ_LEAF(doc, sib);
    b->n = 0;
    b->parent = a->parent;
    b->prev = l;
    b->next = a->next;
    if (a->next != CRDT__NONE)
        SEQ_LEAF(doc, a->next).prev = sib;
    a->next = sib;
    return sib;
}

/* Moves the last `k` items of leaf `l` to the empty leaf `sib`. */
static void move_tail(crdt_doc_t *doc, uint32_t l, uint32_t sib, uint32_t k)
{
    crdt__seq_leaf_t *a = &SEQ_LEAF(doc, l), *b = &SEQ_LEAF(doc, sib);
    a->n -= k;
    memcpy(b->items, &a->items[a->n], k * sizeof(uint32_t));
    memcpy(b->vis, &a->vis[a->n], k * sizeof(uint32_t));
    b->n = k;
}

/* Splits the full leaf `l` in halves, item `it` going to `slot` of the
 * proper half; returns the new leaf (the upper half). */
static uint32_t split_half(crdt_doc_t *doc, uint32_t l, uint32_t slot, uint32_t it, uint32_t v)
{
    uint32_t sib = new_leaf_after(doc, l);
    move_tail(doc, l, sib, SEQ_LEAF(doc, l).n - HALF_LEAF);
    if (slot > HALF_LEAF) {
        leaf_put(doc, sib, slot - HALF_LEAF, it, v);
    } else {
        leaf_put(doc, l, slot, it, v);
        reslot(doc, l, slot);
    }
    reslot(doc, sib, 0);
    return sib;
}

/*
 * An item after the last one of the last leaf (typing at the end of the
 * document): the full leaf keeps all but its last APPEND_MOVE items,
 * which start the new leaf with `it`, so the leaves behind stay full (a
 * split in halves would leave each lower half half empty for good). Returns
 * the new leaf.
 */
static uint32_t split_append(crdt_doc_t *doc, uint32_t l, uint32_t it, uint32_t v)
{
    uint32_t sib = new_leaf_after(doc, l);
    move_tail(doc, l, sib, APPEND_MOVE);
    leaf_put(doc, sib, APPEND_MOVE, it, v);
    reslot(doc, sib, 0);
    return sib;
}

/*
 * Before a full leaf `l` splits, a sibling under the same parent with room
 * for at least SHIFT_MIN items is filled from it (the one with more room),
 * so leaves stay fuller as items land inside them. Item `it` (due at `slot`)
 * stays in the leaf: only items before it move left, only items after it
 * move right; at the leaf's very start or end it goes to the sibling on
 * that side instead. The parent's counts of the two leaves change and the
 * nodes above gain the one item. Returns whether it went in.
 */
static bool shift_to_sibling(crdt_doc_t *doc, uint32_t l, uint32_t slot, uint32_t it, uint32_t v)
{
    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l), *sib;
    uint32_t p = leaf->parent, i = leaf->pslot, room_l = 0, room_r = 0, move, sl, vs = 0;
    crdt__seq_inner_t *in;
    if (p == CRDT__NONE)
        return false;
    in = &SEQ_INNER(doc, p);
    if (i > 0)
        room_l = CRDT__SEQ_LEAF - SEQ_LEAF(doc, in->child[i - 1]).n;
    if (i + 1 < in->n)
        room_r = CRDT__SEQ_LEAF - SEQ_LEAF(doc, in->child[i + 1]).n;
    if (room_l < SHIFT_MIN && room_r < SHIFT_MIN)
        return false;
    if (room_l >= room_r) {
        /* The first `move` items go to the end of the left sibling. */
        sl = in->child[i - 1];
        sib = &SEQ_LEAF(doc, sl);
        move = room_l;
        if (move > slot)
            move = slot;
        for (uint32_t k = 0; k < move; k++)
            vs += leaf->vis[k];
        memcpy(&sib->items[sib->n], leaf->items, move * sizeof(uint32_t));
        memcpy(&sib->vis[sib->n], leaf->vis, move * sizeof(uint32_t));
        sib->n += move;
        leaf->n -= move;
        memmove(leaf->items, &leaf->items[move], leaf->n * sizeof(uint32_t));
        memmove(leaf->vis, &leaf->vis[move], leaf->n * sizeof(uint32_t));
        if (move == 0) { /* it goes at the very start: the sibling's end does */
            leaf_put(doc, sl, sib->n, it, v);
            reslot(doc, sl, sib->n - 1);
            in->vis[i - 1] += v;
            in->cnt[i - 1]++;
        } else {
            leaf_put(doc, l, slot - move, it, v);
            reslot(doc, sl, sib->n - move);
            reslot(doc, l, 0);
            in->vis[i - 1] += vs;
            in->cnt[i - 1] += move;
            in->vis[i] = in->vis[i] - vs + v;
            in->cnt[i] = in->cnt[i] - move + 1;
        }
    } else {
        /* The last `move` items go to the front of the right sibling. */
        sl = in->child[i + 1];
        sib = &SEQ_LEAF(doc, sl);
        move = room_r;
        if (move > leaf->n - slot)
            move = leaf->n - slot;
        for (uint32_t k = leaf->n - move; k < leaf->n; k++)
            vs += leaf->vis[k];
        memmove(&sib->items[move], sib->items, sib->n * sizeof(uint32_t));
        memmove(&sib->vis[move], sib->vis, sib->n * sizeof(uint32_t));
        leaf->n -= move;
        memcpy(sib->items, &leaf->items[leaf->n], move * sizeof(uint32_t));
        memcpy(sib->vis, &leaf->vis[leaf->n], move * sizeof(uint32_t));
        sib->n += move;
        if (move == 0) { /* it goes at the very end: the sibling's front does */
            leaf_put(doc, sl, 0, it, v);
            in->vis[i + 1] += v;
            in->cnt[i + 1]++;
        } else {
            leaf_put(doc, l, slot, it, v);
            reslot(doc, l, slot);
            in->vis[i + 1] += vs;
            in->cnt[i + 1] += move;
            in->vis[i] = in->vis[i] - vs + v;
            in->cnt[i] = in->cnt[i] - move + 1;
        }
        reslot(doc, sl, 0);
    }
    propagate(doc, p, false, v, 1);
    return true;
}

/* Inserts item `it`, of `v` visible units, at `slot` of leaf `l`: into the
 * leaf when it has room, else into a sibling with room, else splitting nodes
 * up the tree. */
static void insert_at(crdt_doc_t *doc, uint32_t l, uint32_t slot, uint32_t it, uint32_t v)
{
    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    uint32_t child = l, sib;
    bool leaf_level = true;

    settle(doc);
    if (leaf->n < CRDT__SEQ_LEAF) {
        leaf_insert(doc, l, slot, &it, &v, 1);
        return;
    }
    doc->finger_item = CRDT__NONE;
    doc->finger_leaf = CRDT__NONE;
    if (slot == leaf->n && leaf->next == CRDT__NONE)
        sib = split_append(doc, l, it, v);
    else if (shift_to_sibling(doc, l, slot, it, v))
        return;
    else
        sib = split_half(doc, l, slot, it, v);

    /* Hang `sib` next to `child` in their parent, splitting upwards. */
    for (;;) {
        uint32_t p = node_parent(doc, child, leaf_level);
        uint32_t cv, cc, sv, sc, s;
        crdt__seq_inner_t *in;
        if (leaf_level) {
            leaf_agg(doc, child, &cv, &cc);
            leaf_agg(doc, sib, &sv, &sc);
        } else {
            inner_agg(doc, child, &cv, &cc);
            inner_agg(doc, sib, &sv, &sc);
        }
        if (p == CRDT__NONE) {
            uint32_t r = crdt__pool_take(&doc->seq_inners);
            in = &SEQ_INNER(doc, r);
            in->parent = CRDT__NONE;
            in->n = 2;
            in->child[0] = child;
            in->vis[0] = cv;
            in->cnt[0] = cc;
            in->child[1] = sib;
            in->vis[1] = sv;
            in->cnt[1] = sc;
            in->pslot = 0;
            relink(doc, r, 0, leaf_level);
            doc->seq_root = r;
            doc->seq_height++;
            return;
        }
        in = &SEQ_INNER(doc, p);
        s = node_pslot(doc, child, leaf_level);
        in->vis[s] = cv;
        in->cnt[s] = cc;
        s++;
        if (in->n < CRDT__SEQ_FAN) {
            uint32_t m = in->n - s;
            memmove(&in->child[s + 1], &in->child[s], m * sizeof(uint32_t));
            memmove(&in->vis[s + 1], &in->vis[s], m * sizeof(uint32_t));
            memmove(&in->cnt[s + 1], &in->cnt[s], m * sizeof(uint32_t));
            in->child[s] = sib;
            in->vis[s] = sv;
            in->cnt[s] = sc;
            in->n++;
            relink(doc, p, s, leaf_level);
            propagate(doc, p, false, v, 1);
            return;
        }
        /* Split the full inner node `p` into p and a new node. */
        {
            uint32_t q = crdt__pool_take(&doc->seq_inners);
            crdt__seq_inner_t *a = &SEQ_INNER(doc, p), *b = &SEQ_INNER(doc, q);
            uint32_t keep = HALF_FAN;
            b->n = a->n - keep;
            memcpy(b->child, &a->child[keep], b->n * sizeof(uint32_t));
            memcpy(b->vis, &a->vis[keep], b->n * sizeof(uint32_t));
            memcpy(b->cnt, &a->cnt[keep], b->n * sizeof(uint32_t));
            a->n = keep;
            b->parent = a->parent;
            b->pslot = a->pslot; /* fixed when q is hung in the parent */
            {
                crdt__seq_inner_t *t = a;
                uint32_t tn = p;
                if (s > keep) {
                    t = b;
                    tn = q;
                    s -= keep;
                }
                memmove(&t->child[s + 1], &t->child[s], (t->n - s) * sizeof(uint32_t));
                memmove(&t->vis[s + 1], &t->vis[s], (t->n - s) * sizeof(uint32_t));
                memmove(&t->cnt[s + 1], &t->cnt[s], (t->n - s) * sizeof(uint32_t));
                t->child[s] = sib;
                t->vis[s] = sv;
                t->cnt[s] = sc;
                t->n++;
                relink(doc, q, 0, leaf_level);
                if (tn == p)
                    relink(doc, p, s, leaf_level);
            }
            child = p;
            sib = q;
            leaf_level = false;
        }
    }
}

static uint32_t last_leaf(const crdt_doc_t *doc)
{
    uint32_t n = doc->seq_root;
    for (uint32_t h = doc->seq_height; h > 0; h--) {
        const crdt__seq_inner_t *in = &SEQ_INNER(doc, n);
        n = in->child[in->n - 1];
    }
    return n;
}

void crdt__seq_insert_after(crdt_doc_t *doc, uint32_t after, uint32_t it, uint32_t vis)
{
    if (after == CRDT__NONE)
        insert_at(doc, 0, 0, it, vis);
    else
        insert_at(doc, ITEM(doc, after).leaf, item_slot(doc, after) + 1, it, vis);
}

void crdt__seq_insert2_after(crdt_doc_t *doc, uint32_t after, uint32_t a, uint32_t avis, uint32_t b,
                             uint32_t bvis)
{
    uint32_t l = ITEM(doc, after).leaf, slot = item_slot(doc, after) + 1, its[2] = {a, b};
    uint32_t vis[2] = {avis, bvis};
    if (SEQ_LEAF(doc, l).n + 2 <= CRDT__SEQ_LEAF) {
        leaf_insert(doc, l, slot, its, vis, 2);
    } else {
        insert_at(doc, l, slot, a, avis);
        crdt__seq_insert_after(doc, a, b, bvis);
    }
}

void crdt__seq_insert_before(crdt_doc_t *doc, uint32_t before, uint32_t it, uint32_t vis)
{
    if (before == CRDT__NONE) {
        uint32_t l = last_leaf(doc);
        insert_at(doc, l, SEQ_LEAF(doc, l).n, it, vis);
    } else {
        insert_at(doc, ITEM(doc, before).leaf, item_slot(doc, before), it, vis);
    }
}

/* Local edits (in the finger leaf, which a local edit's lookup set) start a
 * pending count there; others, such as remote operations all over the
 * document, go up the tree at once, as deferring them would only move the
 * walk. Either way the other leaf's pending units stay pending: the two
 * paths' entries add up independently. */
void crdt__seq_adjust_vis_elsewhere(crdt_doc_t *doc, uint32_t l, int64_t dvis)
{
    if (l == doc->finger_leaf) {
        settle(doc);
        doc->pend_leaf = l;
        doc->pend_vis = dvis;
    } else {
        propagate(doc, l, true, dvis, 0);
    }
}

bool crdt__seq_removable(const crdt_doc_t *doc, uint32_t it)
{
    return SEQ_LEAF(doc, ITEM(doc, it).leaf).n >= 2;
}

void crdt__seq_remove(crdt_doc_t *doc, uint32_t it)
{
    uint32_t l = ITEM(doc, it).leaf, s = item_slot(doc, it);
    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    int64_t v = leaf->vis[s];
    settle(doc);
    assert(leaf->n >= 2);
    memmove(&leaf->items[s], &leaf->items[s + 1], (leaf->n - s - 1) * sizeof(uint32_t));
    memmove(&leaf->vis[s], &leaf->vis[s + 1], (leaf->n - s - 1) * sizeof(uint32_t));
    leaf->n--;
    ITEM(doc, it).leaf = CRDT__NO_LEAF;
    shift_slots(doc, l, s, -1);
    doc->finger_item = CRDT__NONE;
    propagate(doc, l, true, -v, -1);
}

/* Visible units held by leaf `l`, from its entry in the parent. */
static inline uint32_t leaf_vis(const crdt_doc_t *doc, uint32_t l)
{
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
    if (leaf->parent == CRDT__NONE)
        return doc->vis_len;
    return (uint32_t)(SEQ_INNER(doc, leaf->parent).vis[leaf->pslot] +
                      (l == doc->pend_leaf ? doc->pend_vis : 0));
}

uint32_t crdt__seq_find_vis(const crdt_doc_t *doc, uint32_t pos, uint32_t *off, crdt_doc_t *finger)
{
    uint32_t n = doc->seq_root, start = 0;
    const crdt__seq_leaf_t *leaf;
    if (doc->finger_item != CRDT__NONE && pos >= doc->finger_item_vis) {
        const crdt__item_t *x = &ITEM(doc, doc->finger_item);
        if (!x->deleted && pos - doc->finger_item_vis < crdt__item_u16(doc, x)) {
            *off = pos - doc->finger_item_vis;
            return doc->finger_item;
        }
    }
    if (doc->finger_leaf != CRDT__NONE && pos >= doc->finger_vis &&
        pos - doc->finger_vis < leaf_vis(doc, doc->finger_leaf)) {
        n = doc->finger_leaf;
        start = doc->finger_vis;
    } else {
        uint32_t p = pos;
        pend_path_t pp;
        bool pending = pend_path(doc, &pp);
        for (uint32_t h = doc->seq_height; h > 0; h--) {
            const crdt__seq_inner_t *in = &SEQ_INNER(doc, n);
            uint32_t i, v;
            for (i = 0; i + 1 < in->n; i++) {
                v = (uint32_t)(in->vis[i] + pend_at(doc, &pp, pending, h, n, i));
                if (p < v)
                    break;
                p -= v;
            }
            n = in->child[i];
        }
        start = pos - p;
        if (finger) {
            finger->finger_leaf = n;
            finger->finger_vis = start;
        }
    }
    leaf = &SEQ_LEAF(doc, n);
    for (uint32_t i = 0, p = pos - start; i < leaf->n; i++) {
        uint32_t v = leaf->vis[i];
        if (p < v) {
            *off = p;
            if (finger) {
                finger->finger_item = leaf->items[i];
                finger->finger_item_vis = pos - p;
            }
            return leaf->items[i];
        }
        p -= v;
    }
    return CRDT__NONE;
}

uint32_t crdt__seq_rank(const crdt_doc_t *doc, uint32_t it, uint32_t *vis_before)
{
    uint32_t node = ITEM(doc, it).leaf, rank = 0, vis = 0;
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, node);
    uint32_t p;
    pend_path_t pp;
    bool pending = vis_before && pend_path(doc, &pp);
    for (uint32_t i = 0; leaf->items[i] != it; i++) {
        rank++;
        vis += leaf->vis[i];
    }
    p = leaf->parent;
    node = leaf->pslot;
    for (uint32_t h = 1; p != CRDT__NONE; h++) {
        const crdt__seq_inner_t *in = &SEQ_INNER(doc, p);
        for (uint32_t i = 0; i < node; i++) {
            rank += in->cnt[i];
            vis += in->vis[i];
        }
        if (pending && pp.node[h] == p && pp.slot[h] < node)
            vis += (uint32_t)doc->pend_vis;
        node = in->pslot;
        p = in->parent;
    }
    if (vis_before)
        *vis_before = vis;
    return rank;
}

uint32_t crdt__seq_last(const crdt_doc_t *doc)
{
    const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, last_leaf(doc));
    return leaf->n ? leaf->items[leaf->n - 1] : CRDT__NONE;
}

uint32_t crdt__seq_first(const crdt_doc_t *doc)
{
    return SEQ_LEAF(doc, 0).n ? SEQ_LEAF(doc, 0).items[0] : CRDT__NONE;
}

/* Verifies a subtree; returns its (vis, cnt) through the pointers, or -1. */
static int check_node(const crdt_doc_t *doc, uint32_t node, uint32_t height, uint32_t parent,
                      uint32_t pslot, uint32_t *vis, uint32_t *cnt, uint32_t *prev_leaf,
                      const pend_path_t *pp, bool pending)
{
    if (height == 0) {
        const crdt__seq_leaf_t *leaf;
        if (node >= doc->seq_leaves.len)
            return -1;
        leaf = &SEQ_LEAF(doc, node);
        if (leaf->parent != parent || (parent != CRDT__NONE && leaf->pslot != pslot) ||
            leaf->n > CRDT__SEQ_LEAF || leaf->prev != *prev_leaf)
            return -1;
        if (*prev_leaf != CRDT__NONE && SEQ_LEAF(doc, *prev_leaf).next != node)
            return -1;
        if (leaf->n == 0 && doc->live_items != 0)
            return -1;
        for (uint32_t i = 0; i < leaf->n; i++) {
            const crdt__item_t *x;
            if (leaf->items[i] >= doc->items.len)
                return -1;
            x = &ITEM(doc, leaf->items[i]);
            if (x->leaf != node || x->slot != i || x->len == 0 ||
                leaf->vis[i] !=
                    (x->deleted ? 0
                                : crdt__utf8_u16_prefix(crdt__item_text(doc, x), x->ascii, x->len)))
                return -1;
        }
        leaf_agg(doc, node, vis, cnt);
        *prev_leaf = node;
        return 0;
    } else {
        const crdt__seq_inner_t *in;
        uint32_t v = 0, c = 0;
        if (node >= doc->seq_inners.len)
            return -1;
        in = &SEQ_INNER(doc, node);
        if (in->parent != parent || (parent != CRDT__NONE && in->pslot != pslot) || in->n < 2 ||
            in->n > CRDT__SEQ_FAN)
            return -1;
        for (uint32_t i = 0; i < in->n; i++) {
            uint32_t cv, cc;
            if (check_node(doc, in->child[i], height - 1, node, i, &cv, &cc, prev_leaf, pp,
                           pending) != 0)
                return -1;
            if (cv != in->vis[i] + pend_at(doc, pp, pending, height, node, i) || cc != in->cnt[i])
                return -1;
            v += cv;
            c += cc;
        }
        *vis = v;
        *cnt = c;
        return 0;
    }
}

int crdt__seq_check(const crdt_doc_t *doc)
{
    uint32_t vis, cnt, prev = CRDT__NONE;
    pend_path_t pp;
    bool pending;
    if (doc->pend_vis != 0 &&
        (doc->pend_leaf >= doc->seq_leaves.len || doc->seq_height > CRDT__SEQ_MAX_HEIGHT))
        return CRDT_EINTERNAL; /* before pend_path() reads them */
    pending = pend_path(doc, &pp);
    if (check_node(doc, doc->seq_root, doc->seq_height, CRDT__NONE, 0, &vis, &cnt, &prev, &pp,
                   pending) != 0)
        return CRDT_EINTERNAL;
    if (vis != doc->vis_len || cnt != doc->live_items)
        return CRDT_EINTERNAL;
    if (prev == CRDT__NONE || SEQ_LEAF(doc, prev).next != CRDT__NONE)
        return CRDT_EINTERNAL;
    if (doc->finger_item != CRDT__NONE) {
        uint32_t before;
        if (ITEM(doc, doc->finger_item).len == 0)
            return CRDT_EINTERNAL;
        crdt__seq_rank(doc, doc->finger_item, &before);
        if (before != doc->finger_item_vis)
            return CRDT_EINTERNAL;
    }
    if (doc->finger_leaf != CRDT__NONE && SEQ_LEAF(doc, doc->finger_leaf).n > 0) {
        uint32_t before;
        crdt__seq_rank(doc, SEQ_LEAF(doc, doc->finger_leaf).items[0], &before);
        if (before != doc->finger_vis)
            return CRDT_EINTERNAL;
    }
    return 0;
}
