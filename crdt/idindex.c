/* SPDX-License-Identifier: MIT */
/*
 * idindex.c: the id index, a B+tree from insert operation ids to the items
 * holding them. Keys are (local client << 32 | first clock) of each item; the
 * value is the item index. Items of one client never overlap in clocks, so
 * the greatest key <= (client, clock) names the only candidate holder of an
 * id; the clocks no item holds are the client's deletes (delete records are
 * chained per client instead, see crdt__delrec_t). Inner nodes keep the exact
 * smallest key below each child. Leaves are chained so a client's items can
 * be read in clock order (diffs).
 * Like the sequence tree, storage is reserved before a change.
 */
#include "crdt_internal.h"

#define HALF_LEAF (CRDT__IDX_LEAF / 2)
#define HALF_FAN (CRDT__IDX_FAN / 2)
#define MAX_HEIGHT CRDT__IDX_MAX_HEIGHT

static inline uint64_t key_of(uint32_t client, uint32_t clock)
{
    return (uint64_t)client << 32 | clock;
}

int crdt__idx_init(crdt_doc_t *doc)
{
    int err = crdt__pool_reserve(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t), 1);
    uint32_t l;
    if (err)
        return err;
    l = crdt__pool_take(&doc->idx_leaves);
    IDX_LEAF(doc, l).n = 0;
    IDX_LEAF(doc, l).next = CRDT__NONE;
    doc->idx_root = l;
    doc->idx_finger = l;
    doc->idx_height = 0;
    doc->idx_count = 0;
    return 0;
}

/* Same bounds as the sequence tree (see crdt__seq_reserve()). */
int crdt__idx_reserve(crdt_doc_t *doc, size_t keys)
{
    size_t leaves = doc->idx_leaves.len;
    size_t new_leaves = keys;
    size_t inner_total;
    int err;
    if (doc->idx_height + 2 >= MAX_HEIGHT)
        return CRDT_ELIMIT;
    /* Nothing to do when the pools already hold what the code below asks. */
    if (doc->idx_leaves.cap - leaves >= keys &&
        doc->idx_inners.cap >= (leaves + keys) / (HALF_FAN - 1) + doc->idx_height + 3)
        return 0;
    err = crdt__pool_reserve(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t), new_leaves);
    if (err)
        return err;
    inner_total = (leaves + new_leaves) / (HALF_FAN - 1) + doc->idx_height + 3;
    if (inner_total > doc->idx_inners.len)
        err = crdt__pool_reserve(doc, &doc->idx_inners, sizeof(crdt__idx_inner_t),
                                 inner_total - doc->idx_inners.len);
    return err;
}

/* Index of the last key <= k in a sorted array, or 0 if none. */
static inline uint32_t child_for(const uint64_t *keys, uint32_t n, uint64_t k)
{
    uint32_t lo = 0, hi = n; /* first index with keys[i] > k */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (keys[mid] <= k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? lo - 1 : 0;
}

/* First index with keys[i] >= k. */
static inline uint32_t lower_bound(const uint64_t *keys, uint32_t n, uint64_t k)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (keys[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * The fingers: the leaf of the last change (doc->idx_finger), and per client
 * the leaf of its last change (idx_leaf). Every leaf of the pool is in the
 * tree and leaves never empty, so they need no invalidation: a key strictly
 * inside a leaf's key range has its greatest key <= k in it, and a change at
 * a slot other than 0 leaves the inner nodes as they were. Typing and
 * backspacing keep hitting the same leaf, which skips the descent; with many
 * clients, each one's next key (a new delete record, an insert) usually
 * lands in its own last leaf. Returns the leaf's index, or NONE.
 */
static inline uint32_t leaf_holding(const crdt_doc_t *doc, uint32_t l, uint64_t k)
{
    const crdt__idx_leaf_t *leaf;
    if (l >= doc->idx_leaves.len)
        return CRDT__NONE;
    leaf = &IDX_LEAF(doc, l);
    if (leaf->n == 0 || k <= leaf->keys[0])
        return CRDT__NONE;
    if (k <= leaf->keys[leaf->n - 1] || leaf->next == CRDT__NONE ||
        k < IDX_LEAF(doc, leaf->next).keys[0])
        return l;
    return CRDT__NONE;
}

static inline uint32_t finger_holding(const crdt_doc_t *doc, uint32_t client, uint64_t k)
{
    uint32_t l = leaf_holding(doc, doc->idx_finger, k), own;
    if (l == CRDT__NONE && client < doc->clients.len &&
        (own = CLIENT(doc, client).idx_leaf) != doc->idx_finger)
        l = leaf_holding(doc, own, k);
    return l;
}

/* Notes leaf l as the last change, of the document and of `client`. */
static inline void finger_set(crdt_doc_t *doc, uint32_t client, uint32_t l)
{
    doc->idx_finger = l;
    if (client < doc->clients.len)
        CLIENT(doc, client).idx_leaf = l;
}

void crdt__idx_insert(crdt_doc_t *doc, uint32_t client, uint32_t clock, uint32_t val)
{
    uint64_t k = key_of(client, clock);
    uint32_t path[MAX_HEIGHT], slots[MAX_HEIGHT];
    uint32_t node = doc->idx_root, h, s, sib;
    uint64_t sib_key;
    uint32_t fl = finger_holding(doc, client, k);
    crdt__idx_leaf_t *leaf = fl == CRDT__NONE ? NULL : &IDX_LEAF(doc, fl);

    if (leaf && leaf->n < CRDT__IDX_LEAF) {
        s = lower_bound(leaf->keys, leaf->n, k);
        assert(s > 0 && (s == leaf->n || leaf->keys[s] != k));
        memmove(&leaf->keys[s + 1], &leaf->keys[s], (leaf->n - s) * sizeof(uint64_t));
        memmove(&leaf->vals[s + 1], &leaf->vals[s], (leaf->n - s) * sizeof(uint32_t));
        leaf->keys[s] = k;
        leaf->vals[s] = val;
        leaf->n++;
        doc->idx_count++;
        finger_set(doc, client, fl);
        return;
    }
    for (h = doc->idx_height; h > 0; h--) {
        crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        uint32_t i = child_for(in->keys, in->n, k);
        if (k < in->keys[i])
            in->keys[i] = k; /* new smallest key of this subtree */
        path[h] = node;
        slots[h] = i;
        node = in->child[i];
    }
    doc->idx_count++;
    finger_set(doc, client, node);
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(leaf->keys, leaf->n, k);
    assert(s == leaf->n || leaf->keys[s] != k);
    if (leaf->n < CRDT__IDX_LEAF) {
        memmove(&leaf->keys[s + 1], &leaf->keys[s], (leaf->n - s) * sizeof(uint64_t));
        memmove(&leaf->vals[s + 1], &leaf->vals[s], (leaf->n - s) * sizeof(uint32_t));
        leaf->keys[s] = k;
        leaf->vals[s] = val;
        leaf->n++;
        return;
    }

    /* Split the leaf and insert into the proper half. */
    sib = crdt__pool_take(&doc->idx_leaves);
    leaf = &IDX_LEAF(doc, node);
    {
        crdt__idx_leaf_t *b = &IDX_LEAF(doc, sib), *t = leaf;
        b->n = leaf->n - HALF_LEAF;
        memcpy(b->keys, &leaf->keys[HALF_LEAF], b->n * sizeof(uint64_t));
        memcpy(b->vals, &leaf->vals[HALF_LEAF], b->n * sizeof(uint32_t));
        leaf->n = HALF_LEAF;
        b->next = leaf->next;
        leaf->next = sib;
        if (s > HALF_LEAF) {
            t = b;
            s -= HALF_LEAF;
        }
        memmove(&t->keys[s + 1], &t->keys[s], (t->n - s) * sizeof(uint64_t));
        memmove(&t->vals[s + 1], &t->vals[s], (t->n - s) * sizeof(uint32_t));
        t->keys[s] = k;
        t->vals[s] = val;
        t->n++;
        sib_key = b->keys[0];
    }

    /* Insert (sib_key, sib) after the child we came from, splitting upwards. */
    for (h = 1;; h++) {
        crdt__idx_inner_t *in, *t;
        uint32_t p, q, at;
        if (h > doc->idx_height) {
            uint32_t r = crdt__pool_take(&doc->idx_inners);
            in = &IDX_INNER(doc, r);
            in->n = 2;
            in->child[0] = node;
            in->keys[0] = h == 1 ? IDX_LEAF(doc, node).keys[0] : IDX_INNER(doc, node).keys[0];
            in->child[1] = sib;
            in->keys[1] = sib_key;
            doc->idx_root = r;
            doc->idx_height++;
            return;
        }
        p = path[h];
        at = slots[h] + 1;
        in = &IDX_INNER(doc, p);
        if (in->n < CRDT__IDX_FAN) {
            memmove(&in->keys[at + 1], &in->keys[at], (in->n - at) * sizeof(uint64_t));
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
            memcpy(b->keys, &in->keys[HALF_FAN], b->n * sizeof(uint64_t));
            memcpy(b->child, &in->child[HALF_FAN], b->n * sizeof(uint32_t));
            in->n = HALF_FAN;
            t = in;
            if (at > HALF_FAN) {
                t = b;
                at -= HALF_FAN;
            }
            memmove(&t->keys[at + 1], &t->keys[at], (t->n - at) * sizeof(uint64_t));
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

/* Descends to the leaf where key k belongs, recording the path. */
static uint32_t descend(const crdt_doc_t *doc, uint64_t k, uint32_t *path, uint32_t *slots)
{
    uint32_t node = doc->idx_root;
    for (uint32_t h = doc->idx_height; h > 0; h--) {
        const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        uint32_t i = child_for(in->keys, in->n, k);
        path[h] = node;
        slots[h] = i;
        node = in->child[i];
    }
    return node;
}

bool crdt__idx_removable(const crdt_doc_t *doc, uint32_t client, uint32_t clock)
{
    uint32_t path[MAX_HEIGHT], slots[MAX_HEIGHT];
    return IDX_LEAF(doc, descend(doc, key_of(client, clock), path, slots)).n >= 2;
}

/* Removing a leaf's first key changes the smallest key recorded above it. */
void crdt__idx_remove(crdt_doc_t *doc, uint32_t client, uint32_t clock)
{
    uint64_t k = key_of(client, clock);
    uint32_t path[MAX_HEIGHT], slots[MAX_HEIGHT];
    uint32_t node = descend(doc, k, path, slots), s;
    crdt__idx_leaf_t *leaf = &IDX_LEAF(doc, node);
    finger_set(doc, client, node);
    s = lower_bound(leaf->keys, leaf->n, k);
    assert(s < leaf->n && leaf->keys[s] == k && leaf->n >= 2);
    memmove(&leaf->keys[s], &leaf->keys[s + 1], (leaf->n - s - 1) * sizeof(uint64_t));
    memmove(&leaf->vals[s], &leaf->vals[s + 1], (leaf->n - s - 1) * sizeof(uint32_t));
    leaf->n--;
    doc->idx_count--;
    if (s == 0) {
        for (uint32_t h = 1; h <= doc->idx_height; h++) {
            IDX_INNER(doc, path[h]).keys[slots[h]] = leaf->keys[0];
            if (slots[h] != 0)
                break;
        }
    }
}

void crdt__idx_rekey(crdt_doc_t *doc, uint32_t client, uint32_t from, uint32_t to)
{
    uint64_t k = key_of(client, from);
    uint32_t path[MAX_HEIGHT], slots[MAX_HEIGHT];
    uint32_t node = finger_holding(doc, client, k), s;
    crdt__idx_leaf_t *leaf = node == CRDT__NONE ? NULL : &IDX_LEAF(doc, node);
    if (leaf && (s = lower_bound(leaf->keys, leaf->n, k)) < leaf->n && leaf->keys[s] == k) {
        leaf->keys[s] = key_of(client, to);
        finger_set(doc, client, node);
        return;
    }
    node = descend(doc, k, path, slots);
    finger_set(doc, client, node);
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(leaf->keys, leaf->n, k);
    assert(s < leaf->n && leaf->keys[s] == k);
    leaf->keys[s] = key_of(client, to);
    if (s == 0) {
        for (uint32_t h = 1; h <= doc->idx_height; h++) {
            IDX_INNER(doc, path[h]).keys[slots[h]] = leaf->keys[0];
            if (slots[h] != 0)
                break;
        }
    }
}

uint32_t crdt__idx_find_le(const crdt_doc_t *doc, uint32_t client, uint32_t clock,
                           uint32_t *start_clock)
{
    uint64_t k = key_of(client, clock);
    uint32_t node = doc->idx_root, i;
    uint32_t fl = finger_holding(doc, client, k);
    const crdt__idx_leaf_t *leaf = fl == CRDT__NONE ? NULL : &IDX_LEAF(doc, fl);
    if (leaf == NULL) {
        for (uint32_t h = doc->idx_height; h > 0; h--) {
            const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
            node = in->child[child_for(in->keys, in->n, k)];
        }
        leaf = &IDX_LEAF(doc, node);
    }
    i = lower_bound(leaf->keys, leaf->n, k + 1); /* first key > k */
    if (i == 0)
        return CRDT__NONE;
    i--;
    if ((uint32_t)(leaf->keys[i] >> 32) != client)
        return CRDT__NONE;
    *start_clock = (uint32_t)leaf->keys[i];
    return leaf->vals[i];
}

void crdt__idx_seek(const crdt_doc_t *doc, uint32_t client, uint32_t clock, crdt__idx_iter_t *it)
{
    uint64_t k = key_of(client, clock);
    uint32_t node = doc->idx_root, s;
    const crdt__idx_leaf_t *leaf;
    for (uint32_t h = doc->idx_height; h > 0; h--) {
        const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        node = in->child[child_for(in->keys, in->n, k)];
    }
    leaf = &IDX_LEAF(doc, node);
    s = lower_bound(leaf->keys, leaf->n, k);
    if (s == leaf->n) {
        node = leaf->next;
        s = 0;
    }
    it->leaf = node;
    it->slot = s;
}

bool crdt__idx_next(const crdt_doc_t *doc, crdt__idx_iter_t *it, uint32_t *client, uint32_t *clock,
                    uint32_t *val)
{
    const crdt__idx_leaf_t *leaf;
    if (it->leaf == CRDT__NONE)
        return false;
    leaf = &IDX_LEAF(doc, it->leaf);
    if (it->slot >= leaf->n)
        return false; /* only the empty root leaf */
    *client = (uint32_t)(leaf->keys[it->slot] >> 32);
    *clock = (uint32_t)leaf->keys[it->slot];
    *val = leaf->vals[it->slot];
    if (++it->slot == leaf->n) {
        it->leaf = leaf->next;
        it->slot = 0;
    }
    return true;
}

static int check_node(const crdt_doc_t *doc, uint32_t node, uint32_t h, uint64_t *min,
                      uint64_t *last, bool *have_last, uint32_t *count)
{
    if (h == 0) {
        const crdt__idx_leaf_t *leaf = &IDX_LEAF(doc, node);
        if (node >= doc->idx_leaves.len || leaf->n > CRDT__IDX_LEAF)
            return -1;
        if (leaf->n == 0)
            return doc->idx_count == 0 ? 0 : -1;
        for (uint32_t i = 0; i < leaf->n; i++) {
            if (*have_last && leaf->keys[i] <= *last)
                return -1;
            *last = leaf->keys[i];
            *have_last = true;
        }
        *min = leaf->keys[0];
        *count += leaf->n;
        return 0;
    } else {
        const crdt__idx_inner_t *in = &IDX_INNER(doc, node);
        if (node >= doc->idx_inners.len || in->n < 2 || in->n > CRDT__IDX_FAN)
            return -1;
        for (uint32_t i = 0; i < in->n; i++) {
            uint64_t m;
            if (check_node(doc, in->child[i], h - 1, &m, last, have_last, count) != 0)
                return -1;
            if (m != in->keys[i])
                return -1;
            if (i == 0)
                *min = m;
        }
        return 0;
    }
}

int crdt__idx_check(const crdt_doc_t *doc)
{
    uint64_t min = 0, last = 0;
    bool have = false;
    uint32_t count = 0;
    if (check_node(doc, doc->idx_root, doc->idx_height, &min, &last, &have, &count) != 0)
        return CRDT_EINTERNAL;
    return count == doc->idx_count ? 0 : CRDT_EINTERNAL;
}
