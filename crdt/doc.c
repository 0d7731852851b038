/* SPDX-License-Identifier: MIT */
/*
 * doc.c: a document's life (create, free), its client table, items (lookup by
 * id, splitting), local edits (insert, delete), reading the text, relative
 * positions and the whole-document consistency check.
 *
 * Local edits follow one pattern: find what the edit touches, build its
 * operation(s), encode the update bytes, reserve every pool the change can
 * need, and only then change the document, so any failure leaves it as it was.
 */
#include "crdt_internal.h"

/* ---- clients ---------------------------------------------------------- */

static inline uint32_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

uint32_t crdt__client_find(const crdt_doc_t *doc, uint64_t id)
{
    uint32_t mask = doc->client_hash_cap - 1, h = hash_u64(id) & mask;
    for (;;) {
        uint32_t c = doc->client_hash[h];
        if (c == CRDT__NONE)
            return CRDT__NONE;
        if (CLIENT(doc, c).id == id)
            return c;
        h = (h + 1) & mask;
    }
}

static void hash_put(uint32_t *table, uint32_t cap, uint64_t id, uint32_t val)
{
    uint32_t mask = cap - 1, h = hash_u64(id) & mask;
    while (table[h] != CRDT__NONE)
        h = (h + 1) & mask;
    table[h] = val;
}

int crdt__client_reserve(crdt_doc_t *doc, size_t extra)
{
    size_t want = ((size_t)doc->clients.len + extra) * 2, cap = doc->client_hash_cap;
    uint32_t *table;
    int err;
    if ((size_t)doc->clients.len + extra > CRDT__CLIENT_LIMIT)
        return CRDT_ELIMIT; /* items name clients in 21 bits */
    if ((err = crdt__pool_reserve(doc, &doc->clients, sizeof(crdt__client_t), extra)) != 0)
        return err;
    if (want <= cap)
        return 0;
    if (cap == 0)
        cap = 16;
    while (cap < want)
        cap *= 2;
    if (cap > UINT32_MAX / 2)
        return CRDT_ELIMIT;
    table = crdt__malloc(doc, cap * sizeof(uint32_t));
    if (table == NULL)
        return CRDT_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        table[i] = CRDT__NONE;
    for (uint32_t i = 0; i < doc->clients.len; i++)
        hash_put(table, (uint32_t)cap, CLIENT(doc, i).id, i);
    crdt__free(doc, doc->client_hash, doc->client_hash_cap * sizeof(uint32_t));
    doc->client_hash = table;
    doc->client_hash_cap = (uint32_t)cap;
    return 0;
}

uint32_t crdt__client_add(crdt_doc_t *doc, uint64_t id)
{
    uint32_t c = crdt__pool_take(&doc->clients);
    assert(((size_t)doc->clients.len) * 2 <= doc->client_hash_cap);
    CLIENT(doc, c).id = id;
    CLIENT(doc, c).next_clock = 0;
    CLIENT(doc, c).hint = CRDT__NONE;
    CLIENT(doc, c).idx_root = CRDT__NONE;
    CLIENT(doc, c).idx_height = 0;
    CLIENT(doc, c).idx_leaf = CRDT__NONE;
    CLIENT(doc, c).idx_slot = 0;
    memset(&CLIENT(doc, c).text, 0, sizeof(crdt__pool_t));
    memset(&CLIENT(doc, c).dels, 0, sizeof(crdt__pool_t));
    hash_put(doc->client_hash, doc->client_hash_cap, id, c);
    return c;
}

/* ---- life --------------------------------------------------------------- */

int crdt_doc_new(uint64_t client, const crdt_alloc_t *alloc, crdt_doc_t **out)
{
    crdt_doc_t *doc;
    int err;
    if (out == NULL)
        return CRDT_EINVAL;
    if (alloc == NULL)
        alloc = &crdt__libc_alloc;
    if (!alloc->malloc || !alloc->realloc || !alloc->free)
        return CRDT_EINVAL;
    doc = alloc->malloc(alloc->ctx, sizeof(*doc));
    if (doc == NULL)
        return CRDT_ENOMEM;
    memset(doc, 0, sizeof(*doc));
    doc->alloc = *alloc;
    doc->out_alloc = alloc;
    doc->mem = sizeof(*doc);
    doc->free_items = CRDT__NONE;
    doc->finger_leaf = CRDT__NONE;
    doc->finger_item = CRDT__NONE;
    doc->typing_item = CRDT__NONE;
    if ((err = crdt__client_reserve(doc, 1)) != 0 || (err = crdt__seq_init(doc)) != 0 ||
        (err = crdt__idx_init(doc)) != 0) {
        crdt_doc_free(doc);
        return err;
    }
    doc->self = crdt__client_add(doc, client);
    *out = doc;
    return 0;
}

void crdt_doc_free(crdt_doc_t *doc)
{
    crdt_alloc_t alloc;
    if (doc == NULL)
        return;
    alloc = doc->alloc;
    for (uint32_t i = 0; i < doc->clients.len; i++) {
        crdt__pool_dispose(doc, &CLIENT(doc, i).text, 1);
        crdt__pool_dispose(doc, &CLIENT(doc, i).dels, sizeof(crdt__delrec_t));
    }
    crdt__pool_dispose(doc, &doc->clients, sizeof(crdt__client_t));
    crdt__free(doc, doc->client_hash, doc->client_hash_cap * sizeof(uint32_t));
    crdt__pool_dispose(doc, &doc->items, sizeof(crdt__item_t));
    crdt__pool_dispose(doc, &doc->seq_leaves, sizeof(crdt__seq_leaf_t));
    crdt__pool_dispose(doc, &doc->seq_inners, sizeof(crdt__seq_inner_t));
    crdt__pool_dispose(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t));
    crdt__pool_dispose(doc, &doc->idx_inners, sizeof(crdt__idx_inner_t));
    crdt__free(doc, doc->pending, doc->pending_len);
    alloc.free(alloc.ctx, doc, sizeof(*doc));
}

uint64_t crdt_doc_client(const crdt_doc_t *doc)
{
    return CLIENT(doc, doc->self).id;
}

int crdt_doc_set_client(crdt_doc_t *doc, uint64_t client)
{
    uint32_t c;
    int err;
    if (doc == NULL)
        return CRDT_EINVAL;
    c = crdt__client_find(doc, client);
    if (c == CRDT__NONE) {
        if ((err = crdt__client_reserve(doc, 1)) != 0)
            return err;
        c = crdt__client_add(doc, client);
    }
    doc->self = c;
    doc->typing_item = CRDT__NONE; /* typed by the replica before */
    return 0;
}

size_t crdt_doc_length(const crdt_doc_t *doc)
{
    return doc->vis_len;
}

size_t crdt_doc_utf8_length(const crdt_doc_t *doc)
{
    return doc->utf8_len;
}

size_t crdt_doc_mem_bytes(const crdt_doc_t *doc)
{
    return doc->mem;
}

uint64_t crdt_doc_change_count(const crdt_doc_t *doc)
{
    return doc->changes;
}

size_t crdt_doc_pending(const crdt_doc_t *doc)
{
    return doc->pending_ops;
}

/* ---- items -------------------------------------------------------------- */

uint32_t crdt__item_find(const crdt_doc_t *doc, crdt__id_t id, uint32_t *off)
{
    uint32_t start, v;
    if (id.client == CRDT__NONE)
        return CRDT__NONE;
    if ((v = crdt__hint_find(doc, id.client, id.clock)) != CRDT__NONE) {
        *off = id.clock - ITEM(doc, v).clock;
        return v;
    }
    v = crdt__idx_find_le(doc, id.client, id.clock, &start);
    if (v == CRDT__NONE || id.clock - start >= ITEM(doc, v).len)
        return CRDT__NONE;
    *off = id.clock - start;
    return v;
}

/* Moves characters [off, len) of item x (their bytes from `boff` on) to r,
 * which then continues x's run. The parts of a run not flagged ASCII get
 * exact flags: the left part is ASCII when its bytes are its characters, the
 * right part's bytes are looked at (the caller counted the left part's). */
static void split_fields(const crdt_doc_t *doc, crdt__item_t *x, crdt__item_t *r, uint32_t off,
                         uint32_t boff)
{
    *r = *x;
    r->clock = x->clock + off;
    r->len = x->len - off;
    r->text_off = x->text_off + boff;
    crdt__item_set_left(r, crdt__id(x->client, r->clock - 1));
    if (!x->ascii) {
        r->ascii = crdt__utf8_is_ascii(crdt__item_text(doc, r), r->len);
        x->ascii = boff == off;
    }
    x->len = off;
}

uint32_t crdt__item_split(crdt_doc_t *doc, uint32_t it, uint32_t off)
{
    uint32_t y = crdt__item_new(doc), rvis = 0;
    crdt__item_t *x = &ITEM(doc, it), *r = &ITEM(doc, y);
    const uint8_t *text = crdt__item_text(doc, x);

    assert(off > 0 && off < x->len);
    if (!x->deleted)
        rvis = crdt__item_u16(doc, x) - crdt__utf8_u16_prefix(text, x->ascii, off);
    split_fields(doc, x, r, off, (uint32_t)crdt__utf8_offset(text, x->ascii, off));
    if (rvis)
        crdt__seq_adjust_vis(doc, it, -(int64_t)rvis);
    crdt__seq_insert_after(doc, it, y, rvis);
    crdt__idx_insert(doc, r->client, r->clock, y);
    return y;
}

/* Does item b continue item a's run (a directly before b in the sequence)?
 * Their texts are then adjacent too: a client's arena holds its inserts'
 * text in clock order. */
static inline bool continues(const crdt__item_t *a, const crdt__item_t *b)
{
    return a->client == b->client && a->clock + a->len == b->clock && b->lclient == a->client &&
           b->lclock == b->clock - 1 && crdt__item_right_is(b, a);
}

uint32_t crdt__item_new(crdt_doc_t *doc)
{
    uint32_t it = doc->free_items;
    if (it != CRDT__NONE)
        doc->free_items = ITEM(doc, it).clock;
    else
        it = crdt__pool_take(&doc->items);
    doc->live_items++;
    return it;
}

/*
 * Merges b into a. Both must be in the sequence with a right before b; they
 * merge when b continues a's run exactly (same client, next clock, origin-left
 * a's last character, same origin-right, same deleted state), which makes the
 * merged item indistinguishable from one run inserted at once. Nothing is
 * allocated: b leaves the sequence and the id index (unless that would empty a
 * node, in which case the merge is skipped) and joins the free list.
 */
bool crdt__item_try_merge(crdt_doc_t *doc, uint32_t a, uint32_t b)
{
    crdt__item_t *x, *y;
    uint32_t vis;
    if (a == CRDT__NONE || b == CRDT__NONE)
        return false;
    x = &ITEM(doc, a);
    y = &ITEM(doc, b);
    if (x->deleted != y->deleted || !continues(x, y))
        return false;
    if (!crdt__seq_removable(doc, b) || !crdt__idx_removable(doc, y->client, y->clock))
        return false;
    vis = y->deleted ? 0 : crdt__item_u16(doc, y);
    crdt__seq_remove(doc, b);
    crdt__idx_remove(doc, y->client, y->clock);
    x = &ITEM(doc, a);
    y = &ITEM(doc, b);
    x->len += y->len;
    x->ascii = x->ascii & y->ascii;
    if (vis)
        crdt__seq_adjust_vis(doc, a, vis);
    y->len = 0;
    y->clock = doc->free_items;
    doc->free_items = b;
    doc->live_items--;
    return true;
}

int crdt__text_reserve(crdt_doc_t *doc, uint32_t c, size_t bytes)
{
    return crdt__pool_reserve_max(doc, &CLIENT(doc, c).text, 1, bytes, CRDT__TEXT_MAX);
}

int crdt__reserve_slow(crdt_doc_t *doc, size_t items)
{
    int err;
    if (doc->items.cap - doc->items.len >= items && crdt__seq_reserve(doc, items) == 0 &&
        crdt__idx_reserve(doc, items) == 0)
        goto Limits;
    if ((err = crdt__pool_reserve(doc, &doc->items, sizeof(crdt__item_t), items)) != 0 ||
        (err = crdt__seq_reserve(doc, items)) != 0 || (err = crdt__idx_reserve(doc, items)) != 0)
        return err;
Limits:
    if (doc->items.len + items >= CRDT__IDX_DEL)
        return CRDT_ELIMIT;
    return 0;
}

int crdt__delrec_reserve_slow(crdt_doc_t *doc, uint32_t c, size_t n)
{
    crdt__pool_t *p = &CLIENT(doc, c).dels;
    if ((size_t)p->len + n >= CRDT__IDX_DEL)
        return CRDT_ELIMIT;
    return crdt__pool_reserve(doc, p, sizeof(crdt__delrec_t), n);
}

void crdt__shrink(crdt_doc_t *doc)
{
    crdt__pool_shrink(doc, &doc->items, sizeof(crdt__item_t));
    for (uint32_t i = 0; i < doc->clients.len; i++) {
        crdt__pool_shrink(doc, &CLIENT(doc, i).text, 1);
        crdt__pool_shrink(doc, &CLIENT(doc, i).dels, sizeof(crdt__delrec_t));
    }
    crdt__pool_shrink(doc, &doc->seq_leaves, sizeof(crdt__seq_leaf_t));
    crdt__pool_shrink(doc, &doc->seq_inners, sizeof(crdt__seq_inner_t));
    crdt__pool_shrink(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t));
    crdt__pool_shrink(doc, &doc->idx_inners, sizeof(crdt__idx_inner_t));
}

#define item_text crdt__item_text

/* Makes the item/offset of the character containing visible unit `pos` - 1,
 * i.e. the character left of index `pos` (> 0). Fails if `pos` is inside a
 * surrogate pair. */
static int char_before(const crdt_doc_t *doc, size_t pos, uint32_t *it, uint32_t *off,
                       crdt_doc_t *finger)
{
    uint32_t uoff, x = crdt__seq_find_vis(doc, (uint32_t)(pos - 1), &uoff, finger), cp;
    bool exact;
    if (CRDT_NEVER(x == CRDT__NONE))
        return CRDT_EINTERNAL;
    cp = crdt__utf8_cp_of_u16(item_text(doc, &ITEM(doc, x)), ITEM(doc, x).ascii, uoff + 1, &exact);
    if (!exact)
        return CRDT_EINDEX;
    *it = x;
    *off = cp - 1;
    return 0;
}

/* Item/offset of the character starting at visible unit `pos` (< length). */
static int char_at(const crdt_doc_t *doc, size_t pos, uint32_t *it, uint32_t *off,
                   crdt_doc_t *finger)
{
    uint32_t uoff, x = crdt__seq_find_vis(doc, (uint32_t)pos, &uoff, finger), cp;
    bool exact;
    if (CRDT_NEVER(x == CRDT__NONE))
        return CRDT_EINTERNAL;
    cp = crdt__utf8_cp_of_u16(item_text(doc, &ITEM(doc, x)), ITEM(doc, x).ascii, uoff, &exact);
    if (!exact)
        return CRDT_EINDEX;
    *it = x;
    *off = cp;
    return 0;
}

static int empty_update(const crdt_doc_t *doc, crdt_buf_t *update)
{
    if (update == NULL)
        return 0;
    return crdt__encode_ops(doc->out_alloc, NULL, 0, NULL, 0, update);
}

/* ---- local insert --------------------------------------------------------- */

#define CRDT__SLOW 1 /* typing_insert(): take the general path */

/* The insert operation of `text` by this replica at its next clock, with no
 * origins yet. */
static void local_insert_op(const crdt_doc_t *doc, crdt__op_t *op, const char *text, size_t len,
                            size_t cps, size_t u16)
{
    memset(op, 0, sizeof(*op));
    op->kind = CRDT__OP_INSERT;
    op->client = doc->self;
    op->clock = CLIENT(doc, doc->self).next_clock;
    op->len = (uint32_t)cps;
    op->text = (const uint8_t *)text;
    op->text_bytes = (uint32_t)len;
    op->u16len = (uint32_t)u16;
    op->left = CRDT__NOID;
    op->right = CRDT__NOID;
}

/* The update bytes of typing_insert()'s keystroke, out of its way. */
static CRDT__NOINLINE int typing_update(crdt_doc_t *doc, const crdt__item_t *x, const char *text,
                                        size_t len, size_t cps, size_t u16, crdt_buf_t *buf)
{
    crdt__op_t op;
    local_insert_op(doc, &op, text, len, cps, u16);
    op.left = crdt__id(doc->self, CLIENT(doc, doc->self).next_clock - 1);
    op.right = crdt__item_right(x);
    return crdt__encode_ops(doc->out_alloc, &CLIENT(doc, 0), doc->clients.len, &op, 1, buf);
}

/*
 * The common case of typing: inserting right after the last character of the
 * finger item (seq.c keeps it and the visible units before it exact), which
 * is the run this replica typed last, still open (its clocks end at the
 * replica's next clock, so its text ends the arena) and still followed by
 * its right origin. The general path would find the same left
 * and right origins and extend the run; this skips the searches. Returns 0,
 * an error, or CRDT__SLOW when the general path must decide.
 */
static int typing_insert(crdt_doc_t *doc, size_t index, const char *text, size_t len, size_t cps,
                         size_t u16, crdt_buf_t *update)
{
    uint32_t f = doc->finger_item, next;
    crdt__item_t *x = &ITEM(doc, f);
    crdt__client_t *me = &CLIENT(doc, doc->self);
    crdt_buf_t buf = {0};
    int err;

    if (f == doc->typing_item && doc->changes == doc->typing_changes) {
        /* Nothing changed since typing last extended or made f: it is still
         * this replica's open run, followed by its right origin, ending at
         * visible unit typing_end. */
        if (index != doc->typing_end)
            return CRDT__SLOW;
    } else {
        if (x->deleted || index != (size_t)doc->finger_item_vis + crdt__item_u16(doc, x) ||
            x->client != doc->self || x->clock + x->len != me->next_clock)
            return CRDT__SLOW;
        next = crdt__seq_next(doc, f);
        if (next == CRDT__NONE ? crdt__item_right(x).client != CRDT__NONE
                               : !crdt__id_eq(crdt__item_right(x), crdt__id(ITEM(doc, next).client,
                                                                            ITEM(doc, next).clock)))
            return CRDT__SLOW;
    }
    if (update && (err = typing_update(doc, x, text, len, cps, u16, &buf)) != 0)
        return err;
    if (me->text.cap - me->text.len < len && (err = crdt__text_reserve(doc, doc->self, len)) != 0) {
        crdt_buf_dispose(&buf);
        return err;
    }
    me = &CLIENT(doc, doc->self);
    x = &ITEM(doc, f);
    crdt__text_append(doc, doc->self, (const uint8_t *)text, (uint32_t)len);
    x->len += (uint32_t)cps;
    if (len != cps)
        x->ascii = 0;
    crdt__seq_adjust_vis(doc, f, (int64_t)u16);
    me->hint = f;
    me->next_clock += (uint32_t)cps;
    doc->vis_len += (uint32_t)u16;
    doc->utf8_len += len;
    doc->changes++;
    doc->typing_item = f;
    doc->typing_changes = doc->changes;
    doc->typing_end = (uint32_t)index + (uint32_t)u16;
    if (update)
        *update = buf;
    return 0;
}

static int insert_general(crdt_doc_t *doc, size_t index, const char *text, size_t len, size_t cps,
                          size_t u16, crdt_buf_t *update);

int crdt_doc_insert(crdt_doc_t *doc, size_t index, const char *text, size_t len, crdt_buf_t *update)
{
    crdt__client_t *me;
    size_t cps, u16;
    int err;

    if (doc == NULL || (text == NULL && len > 0))
        return CRDT_EINVAL;
    if (index > doc->vis_len)
        return CRDT_EINDEX;
    if (len == 1 && (uint8_t)text[0] < 0x80) {
        cps = u16 = 1; /* a keystroke */
    } else {
        if ((err = crdt__utf8_scan((const uint8_t *)text, len, &cps, &u16)) != 0)
            return err;
        if (cps == 0)
            return empty_update(doc, update);
    }
    me = &CLIENT(doc, doc->self);
    if (len >= UINT32_MAX || (uint64_t)me->next_clock + cps >= UINT32_MAX ||
        (uint64_t)doc->vis_len + u16 >= UINT32_MAX)
        return CRDT_ELIMIT;
    if (index > 0 && doc->finger_item != CRDT__NONE &&
        (err = typing_insert(doc, index, text, len, cps, u16, update)) != CRDT__SLOW)
        return err;
    return insert_general(doc, index, text, len, cps, u16, update);
}

/* crdt_doc_insert() where typing_insert() does not apply: finds the origins,
 * then extends the replica's run or makes an item. Not inlined, so that a
 * keystroke does not pay for its frame. */
static CRDT__NOINLINE int insert_general(crdt_doc_t *doc, size_t index, const char *text,
                                         size_t len, size_t cps, size_t u16, crdt_buf_t *update)
{
    uint32_t left_it = CRDT__NONE, left_off = 0, next, y = CRDT__NONE;
    crdt__op_t op;
    crdt_buf_t buf = {0};
    int err;

    local_insert_op(doc, &op, text, len, cps, u16);
    if (index > 0) {
        if ((err = char_before(doc, index, &left_it, &left_off, doc)) != 0)
            return err;
        op.left = crdt__id(ITEM(doc, left_it).client, ITEM(doc, left_it).clock + left_off);
    }
    if (left_it != CRDT__NONE && left_off + 1 < ITEM(doc, left_it).len) {
        next = CRDT__NONE;
        op.right = crdt__id(op.left.client, op.left.clock + 1);
    } else {
        next = left_it == CRDT__NONE ? crdt__seq_first(doc) : crdt__seq_next(doc, left_it);
        if (next != CRDT__NONE)
            op.right = crdt__id(ITEM(doc, next).client, ITEM(doc, next).clock);
    }

    if (update && (err = crdt__encode_ops(doc->out_alloc, &CLIENT(doc, 0), doc->clients.len, &op, 1,
                                          &buf)) != 0)
        return err;
    if ((err = crdt__reserve(doc, 2)) != 0 ||
        (err = crdt__text_reserve(doc, doc->self, len)) != 0) {
        crdt_buf_dispose(&buf);
        return err;
    }

    /* Typing at the end of this replica's latest run (its last clock is the
     * replica's last, so its text ends the arena) extends the run. */
    if (left_it != CRDT__NONE) {
        crdt__item_t *x = &ITEM(doc, left_it);
        if (x->client == doc->self && left_off + 1 == x->len && x->clock + x->len == op.clock &&
            !x->deleted && crdt__id_eq(crdt__item_right(x), op.right)) {
            crdt__text_append(doc, doc->self, (const uint8_t *)text, (uint32_t)len);
            x->len += op.len;
            if (op.text_bytes != op.len)
                x->ascii = 0;
            crdt__seq_adjust_vis(doc, left_it, op.u16len);
            CLIENT(doc, doc->self).hint = left_it;
            goto Done;
        }
    }
    if (left_it != CRDT__NONE && left_off + 1 < ITEM(doc, left_it).len)
        crdt__item_split(doc, left_it, left_off + 1);
    y = crdt__item_new(doc);
    {
        crdt__item_t *n = &ITEM(doc, y);
        n->client = doc->self;
        n->clock = op.clock;
        n->len = op.len;
        n->text_off = crdt__text_append(doc, doc->self, (const uint8_t *)text, (uint32_t)len);
        n->ascii = op.text_bytes == op.len;
        crdt__item_set_left(n, op.left);
        crdt__item_set_right(n, op.right);
        n->deleted = 0;
        n->leaf = CRDT__NO_LEAF;
    }
    crdt__seq_insert_after(doc, left_it, y, op.u16len);
    crdt__idx_insert(doc, doc->self, op.clock, y);
    CLIENT(doc, doc->self).hint = y;
    /* The next keystroke extends y: let typing_insert() find it. */
    doc->finger_item = y;
    doc->finger_item_vis = (uint32_t)index;
Done:
    doc->vis_len += op.u16len;
    doc->utf8_len += len;
    CLIENT(doc, doc->self).next_clock += op.len;
    doc->changes++;
    /* A new y is followed by its right origin (the general path just found
     * both); a run extended here (y NONE) is checked next time. */
    doc->typing_item = y;
    doc->typing_changes = doc->changes;
    doc->typing_end = (uint32_t)index + op.u16len;
    if (update)
        *update = buf;
    return 0;
}

/* ---- deletes ------------------------------------------------------------ */

/* Hides the visible item `it` (its characters were just deleted). */
static void hide(crdt_doc_t *doc, uint32_t it, uint32_t u16, uint32_t bytes)
{
    crdt__seq_adjust_vis(doc, it, -(int64_t)u16);
    doc->vis_len -= u16;
    doc->utf8_len -= bytes;
}

/*
 * Deleting the first or last k characters of a visible item whose
 * neighbour on that side is a tombstone of the same run moves the
 * characters over to the tombstone instead of splitting: the common case of
 * repeated backspace or delete. Returns whether it applied.
 */
static bool delete_by_moving(crdt_doc_t *doc, uint32_t it, uint32_t off, uint32_t k)
{
    crdt__item_t *x = &ITEM(doc, it), *t;
    const uint8_t *text = crdt__item_text(doc, x);
    uint32_t nb, old, bytes, u16;
    if (off > 0 && off + k == x->len) {
        nb = crdt__seq_next(doc, it);
        if (nb == CRDT__NONE)
            return false;
        t = &ITEM(doc, nb);
        if (!t->deleted || !continues(x, t))
            return false;
        if (x->ascii) {
            bytes = u16 = k;
        } else {
            uint32_t boff = (uint32_t)crdt__utf8_offset(text, false, off);
            bytes = (uint32_t)crdt__utf8_offset(text + boff, false, k);
            u16 = crdt__item_u16(doc, x) - crdt__utf8_u16_prefix(text, false, off);
            x->ascii = boff == off;
            if (bytes != k)
                t->ascii = 0;
        }
        x->len = off;
        old = t->clock;
        t->clock -= k;
        t->len += k;
        t->text_off -= bytes;
        crdt__item_set_left(t, crdt__id(t->client, t->clock - 1));
        crdt__idx_rekey(doc, nb, old);
        hide(doc, it, u16, bytes);
        return true;
    }
    if (off == 0 && k < x->len) {
        nb = crdt__seq_prev(doc, it);
        if (nb == CRDT__NONE)
            return false;
        t = &ITEM(doc, nb);
        if (!t->deleted || !continues(t, x))
            return false;
        if (x->ascii) {
            bytes = u16 = k;
        } else {
            /* (x keeps its flag: 0 is never wrong) */
            bytes = (uint32_t)crdt__utf8_offset(text, false, k);
            u16 = crdt__utf8_u16_prefix(text, false, k);
            if (bytes != k)
                t->ascii = 0;
        }
        t->len += k;
        old = x->clock;
        x->clock += k;
        x->len -= k;
        x->text_off += bytes;
        crdt__item_set_left(x, crdt__id(x->client, x->clock - 1));
        crdt__idx_rekey(doc, it, old);
        hide(doc, it, u16, bytes);
        return true;
    }
    return false;
}

/*
 * Deletes characters [off, off+k) of the visible item `it`, strictly inside
 * it (0 < off, off + k < len): the item becomes three, the middle one a
 * tombstone, with one pass over the sequence leaf and one walk up the tree
 * instead of two splits and a hide (remote deletes inside a run: 15,713 of
 * node_nodecc's). Returns the tombstone. Needs two reserved items.
 */
static uint32_t cut_out(crdt_doc_t *doc, uint32_t it, uint32_t off, uint32_t k)
{
    uint32_t m = crdt__item_new(doc), r = crdt__item_new(doc);
    crdt__item_t *x = &ITEM(doc, it), *xm = &ITEM(doc, m), *xr = &ITEM(doc, r);
    const uint8_t *text = crdt__item_text(doc, x);
    uint32_t b1, b2, u1, u2, total = crdt__item_u16(doc, x);

    assert(off > 0 && off + k < x->len && !x->deleted);
    if (x->ascii) {
        b1 = u1 = off;
        b2 = u2 = off + k;
    } else {
        b1 = (uint32_t)crdt__utf8_offset(text, false, off);
        u1 = crdt__utf8_u16_prefix(text, false, off);
        b2 = (uint32_t)crdt__utf8_offset(text, false, off + k);
        u2 = crdt__utf8_u16_prefix(text, false, off + k);
    }
    split_fields(doc, x, xr, off + k, b2); /* x is now [0, off + k) */
    split_fields(doc, x, xm, off, b1);
    xm->deleted = 1;
    crdt__seq_adjust_vis(doc, it, -(int64_t)(total - u1));
    crdt__seq_insert2_after(doc, it, m, 0, r, total - u2);
    crdt__idx_insert(doc, x->client, xm->clock, m);
    crdt__idx_insert(doc, x->client, xr->clock, r);
    doc->vis_len -= u2 - u1;
    doc->utf8_len -= b2 - b1;
    return m;
}

/* Marks the characters [lo, lo+len) of client `c` deleted, splitting items at
 * the range's ends. Every character must be an inserted one. Needs two
 * reserved items. */
static void delete_range(crdt_doc_t *doc, uint32_t c, uint32_t lo, uint32_t len, uint32_t hint)
{
    uint32_t end = lo + len;
    while (lo < end) {
        uint32_t off, k, it;
        crdt__item_t *x;
        if (hint != CRDT__NONE && ITEM(doc, hint).client == c && ITEM(doc, hint).clock <= lo &&
            lo - ITEM(doc, hint).clock < ITEM(doc, hint).len) {
            it = hint;
            off = lo - ITEM(doc, hint).clock;
        } else {
            it = crdt__item_find(doc, crdt__id(c, lo), &off);
        }
        if (CRDT_NEVER(it == CRDT__NONE))
            return;
        x = &ITEM(doc, it);
        k = x->len - off < end - lo ? x->len - off : end - lo;
        /* A range running on past this item usually goes on in the next. */
        if (x->deleted || delete_by_moving(doc, it, off, k)) {
            lo += k;
            hint = lo < end ? crdt__seq_next(doc, it) : CRDT__NONE;
            continue;
        }
        if (off > 0 && off + k < x->len) {
            /* Inside the item, so the range ends here, and nothing next to
             * the tombstone can merge with it. The part left of it is where
             * a run of backspaces goes next: the client's hint. */
            CLIENT(doc, c).hint = it;
            cut_out(doc, it, off, k);
            return;
        }
        /* After a split the tombstone's neighbour on the cut side is the
         * live rest of the item, and on the other side one that
         * delete_by_moving() found it cannot merge with. */
        if (off > 0 || k < x->len) {
            if (off > 0) {
                CLIENT(doc, c).hint = it; /* as above */
                it = crdt__item_split(doc, it, off);
            }
            if (ITEM(doc, it).len > k)
                crdt__item_split(doc, it, k);
            x = &ITEM(doc, it);
            lo += k;
            hide(doc, it, crdt__item_u16(doc, x), crdt__item_bytes(doc, x));
            x->deleted = 1;
            hint = lo < end ? crdt__seq_next(doc, it) : CRDT__NONE;
            continue;
        }
        lo += k;
        {
            uint32_t prev;
            hide(doc, it, crdt__item_u16(doc, x), crdt__item_bytes(doc, x));
            x->deleted = 1;
            /* Tombstones next to tombstones of the same run merge back. */
            prev = crdt__seq_prev(doc, it);
            if (crdt__item_try_merge(doc, prev, it))
                it = prev;
            hint = crdt__seq_next(doc, it);
            if (crdt__item_try_merge(doc, it, hint) && lo < end)
                hint = crdt__seq_next(doc, it);
        }
    }
}

/* Records delete operation `op`, extending the client's previous delete
 * record when the two form one run (typing backspace or delete repeatedly). */
static void add_delrec(crdt_doc_t *doc, const crdt__op_t *op, uint32_t tlo, uint32_t len)
{
    crdt__pool_t *p = &CLIENT(doc, op->client).dels;
    crdt__delrec_t *d;
    if (p->len > 0) {
        d = &CRDT__AT(*p, crdt__delrec_t, p->len - 1);
        if (d->clock + d->len == op->clock && d->tclient == op->tclient) {
            bool d_back = d->backward || d->len == 1, d_fwd = !d->backward || d->len == 1;
            bool o_back = op->backward || len == 1, o_fwd = !op->backward || len == 1;
            if (d_back && o_back && tlo + len == d->tlo) {
                d->backward = 1;
                d->tlo = tlo;
                d->len += len;
                return;
            }
            if (d_fwd && o_fwd && d->tlo + d->len == tlo) {
                d->backward = 0;
                d->len += len;
                return;
            }
        }
    }
    d = &CRDT__AT(*p, crdt__delrec_t, crdt__pool_take(p));
    d->clock = op->clock;
    d->len = len;
    d->tclient = op->tclient;
    d->tlo = tlo;
    d->backward = op->backward && len > 1;
}

uint32_t crdt__delrecs_from(const crdt_doc_t *doc, uint32_t c, uint32_t from)
{
    const crdt__pool_t *p = &CLIENT(doc, c).dels;
    uint32_t lo = 0, hi = p->len;
    /* the first record ending after `from`; records tile clocks in order */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const crdt__delrec_t *d = &CRDT__AT(*p, crdt__delrec_t, mid);
        if (d->clock + d->len <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t crdt__delrecs_total(const crdt_doc_t *doc)
{
    size_t n = 0;
    for (uint32_t c = 0; c < doc->clients.len; c++)
        n += CLIENT(doc, c).dels.len;
    return n;
}

/* Applies delete operation `op` (targets known to be inserted characters). */
void crdt__integrate_delete(crdt_doc_t *doc, const crdt__op_t *op, uint32_t hint)
{
    delete_range(doc, op->tclient, op->tlo, op->len, hint);
    add_delrec(doc, op, op->tlo, op->len);
}

/*
 * The common case of backspace and delete: a range inside the finger item
 * (seq.c keeps the visible units before it exact), which the general path
 * would turn into the same single operation. Returns 0, an error, or
 * CRDT__SLOW when the general path must decide.
 */
static int typing_delete(crdt_doc_t *doc, size_t index, size_t len, crdt_buf_t *update)
{
    uint32_t f = doc->finger_item, off, end, rel;
    const crdt__item_t *x = &ITEM(doc, f);
    crdt__op_t op;
    crdt_buf_t buf = {0};
    int err;

    if (x->deleted || index < doc->finger_item_vis ||
        index + len > (size_t)doc->finger_item_vis + crdt__item_u16(doc, x))
        return CRDT__SLOW;
    rel = (uint32_t)(index - doc->finger_item_vis);
    if (x->ascii) { /* units are characters */
        off = rel;
        end = rel + (uint32_t)len;
    } else {
        bool exact_off, exact_end;
        const uint8_t *text = item_text(doc, x);
        off = crdt__utf8_cp_of_u16(text, false, rel, &exact_off);
        end = crdt__utf8_cp_of_u16(text, false, rel + (uint32_t)len, &exact_end);
        if (!exact_off || !exact_end)
            return CRDT_EINDEX;
    }
    if ((uint64_t)CLIENT(doc, doc->self).next_clock + (end - off) >= UINT32_MAX)
        return CRDT_ELIMIT;
    memset(&op, 0, sizeof(op));
    op.kind = CRDT__OP_DELETE;
    op.client = doc->self;
    op.clock = CLIENT(doc, doc->self).next_clock;
    op.len = end - off;
    op.tclient = x->client;
    op.tlo = x->clock + off;
    if (update && (err = crdt__encode_ops(doc->out_alloc, &CLIENT(doc, 0), doc->clients.len, &op, 1,
                                          &buf)) != 0)
        return err;
    /* Backspace or delete next to a tombstone of the same run (the common
     * case: delete_by_moving()) makes no item, so needs no reservation but
     * room for one delete record. */
    if (CLIENT(doc, doc->self).dels.cap > CLIENT(doc, doc->self).dels.len &&
        delete_by_moving(doc, f, off, op.len)) {
        add_delrec(doc, &op, op.tlo, op.len);
    } else {
        if ((err = crdt__reserve(doc, 2)) != 0 ||
            (err = crdt__delrec_reserve(doc, doc->self, 1)) != 0) {
            crdt_buf_dispose(&buf);
            return err;
        }
        crdt__integrate_delete(doc, &op, f);
    }
    CLIENT(doc, doc->self).next_clock += op.len;
    doc->changes++;
    if (update)
        *update = buf;
    return 0;
}

int crdt_doc_delete(crdt_doc_t *doc, size_t index, size_t len, crdt_buf_t *update)
{
    crdt__op_t local[4], *ops = local;
    size_t nops = 0, cap = 4, remaining = len, i;
    uint32_t it, off, clock, first_it;
    crdt_buf_t buf = {0};
    int err = 0;

    if (doc == NULL)
        return CRDT_EINVAL;
    if (index > doc->vis_len || len > doc->vis_len - index)
        return CRDT_EINDEX;
    if (len == 0)
        return empty_update(doc, update);
    if (doc->finger_item != CRDT__NONE &&
        (err = typing_delete(doc, index, len, update)) != CRDT__SLOW)
        return err;
    if ((err = char_at(doc, index, &it, &off, doc)) != 0)
        return err;
    clock = CLIENT(doc, doc->self).next_clock;
    first_it = it;

    /* One forward delete operation per run of consecutive ids. */
    while (remaining > 0) {
        const crdt__item_t *x;
        uint32_t avail, end, u0;
        if (CRDT_NEVER(it == CRDT__NONE)) {
            err = CRDT_EINTERNAL;
            goto Exit;
        }
        x = &ITEM(doc, it);
        if (x->deleted) {
            it = crdt__seq_next(doc, it);
            continue;
        }
        u0 = crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, off);
        avail = crdt__item_u16(doc, x) - u0;
        if (remaining >= avail) {
            end = x->len;
            remaining -= avail;
        } else {
            bool exact;
            end =
                crdt__utf8_cp_of_u16(item_text(doc, x), x->ascii, u0 + (uint32_t)remaining, &exact);
            if (!exact) {
                err = CRDT_EINDEX;
                goto Exit;
            }
            remaining = 0;
        }
        if (nops > 0 && ops[nops - 1].tclient == x->client &&
            ops[nops - 1].tlo + ops[nops - 1].len == x->clock + off) {
            ops[nops - 1].len += end - off;
        } else {
            if (nops == cap) {
                size_t ncap = cap * 2;
                crdt__op_t *p = crdt__tmp_alloc(&doc->alloc, ncap * sizeof(*p));
                if (p == NULL) {
                    err = CRDT_ENOMEM;
                    goto Exit;
                }
                memcpy(p, ops, nops * sizeof(*p));
                if (ops != local)
                    crdt__tmp_free(&doc->alloc, ops, cap * sizeof(*ops));
                ops = p;
                cap = ncap;
            }
            memset(&ops[nops], 0, sizeof(ops[nops]));
            ops[nops].kind = CRDT__OP_DELETE;
            ops[nops].client = doc->self;
            ops[nops].tclient = x->client;
            ops[nops].tlo = x->clock + off;
            ops[nops].len = end - off;
            nops++;
        }
        it = crdt__seq_next(doc, it);
        off = 0;
    }
    for (i = 0; i < nops; i++) {
        if ((uint64_t)clock + ops[i].len >= UINT32_MAX) {
            err = CRDT_ELIMIT;
            goto Exit;
        }
        ops[i].clock = clock;
        clock += ops[i].len;
    }
    if (update && (err = crdt__encode_ops(doc->out_alloc, &CLIENT(doc, 0), doc->clients.len, ops,
                                          nops, &buf)) != 0)
        goto Exit;
    /* The operations cover the visible range item by item, so only the
     * range's two ends can split an item (or one item split in three):
     * two new items, however many operations (reserving two per operation
     * left large deletes holding sequence leaves they never use). */
    if ((err = crdt__reserve(doc, 2)) != 0 ||
        (err = crdt__delrec_reserve(doc, doc->self, nops)) != 0)
        goto Exit;
    for (i = 0; i < nops; i++)
        crdt__integrate_delete(doc, &ops[i], i == 0 ? first_it : CRDT__NONE);
    CLIENT(doc, doc->self).next_clock = clock;
    doc->changes++;
    if (update) {
        *update = buf;
        buf.base = NULL;
    }
Exit:
    crdt_buf_dispose(&buf);
    if (ops != local)
        crdt__tmp_free(&doc->alloc, ops, cap * sizeof(*ops));
    return err;
}

/* ---- reading ------------------------------------------------------------ */

int crdt_doc_text(const crdt_doc_t *doc, crdt_buf_t *out)
{
    crdt_buf_t b;
    int err = crdt__buf_init(doc->out_alloc, &b, doc->utf8_len + 1);
    if (err)
        return err;
    for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(doc, l).next) {
        const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
        for (uint32_t i = 0; i < leaf->n; i++) {
            const crdt__item_t *x = &ITEM(doc, leaf->items[i]);
            if (!x->deleted)
                crdt__put_bytes(&b, item_text(doc, x), crdt__item_bytes(doc, x));
        }
    }
    b.base[b.len] = 0;
    *out = b;
    return 0;
}

/* ---- relative positions --------------------------------------------------- */

int crdt_doc_relpos_from_index(const crdt_doc_t *doc, size_t index, int assoc, crdt_relpos_t *out)
{
    crdt_relpos_t p;
    uint32_t it, off;
    int err;
    if (assoc != CRDT_ASSOC_BEFORE && assoc != CRDT_ASSOC_AFTER)
        return CRDT_EINVAL;
    if (index > doc->vis_len)
        return CRDT_EINDEX;
    memset(&p, 0, sizeof(p));
    p.assoc = (int8_t)assoc;
    if (assoc == CRDT_ASSOC_AFTER && index == doc->vis_len)
        p.edge = 2;
    else if (assoc == CRDT_ASSOC_BEFORE && index == 0)
        p.edge = 1;
    else {
        err = assoc == CRDT_ASSOC_AFTER ? char_at(doc, index, &it, &off, NULL)
                                        : char_before(doc, index, &it, &off, NULL);
        if (err)
            return err;
        p.client = CLIENT(doc, ITEM(doc, it).client).id;
        p.clock = ITEM(doc, it).clock + off;
    }
    *out = p;
    return 0;
}

int crdt_doc_relpos_to_index(const crdt_doc_t *doc, const crdt_relpos_t *pos, size_t *index)
{
    uint32_t c, it, off, vis;
    const crdt__item_t *x;
    if (pos->edge == 1) {
        *index = 0;
        return 0;
    }
    if (pos->edge == 2) {
        *index = doc->vis_len;
        return 0;
    }
    if (pos->edge != 0)
        return CRDT_EINVAL;
    c = crdt__client_find(doc, pos->client);
    if (c == CRDT__NONE)
        return CRDT_ENOTFOUND;
    it = crdt__item_find(doc, crdt__id(c, pos->clock), &off);
    if (it == CRDT__NONE)
        return CRDT_ENOTFOUND;
    crdt__seq_rank(doc, it, &vis);
    x = &ITEM(doc, it);
    if (!x->deleted) {
        vis += crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, off);
        if (pos->assoc == CRDT_ASSOC_BEFORE)
            vis += crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, off + 1) -
                   crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, off);
    }
    *index = vis;
    return 0;
}

/* ---- consistency -------------------------------------------------------- */

/* Bytes of the `len` characters at the start of `s` (`n` bytes), counting
 * lead bytes, or SIZE_MAX when it holds fewer; the caller validates them. */
static size_t check_run_bytes(const uint8_t *s, size_t n, uint32_t len)
{
    size_t i = 0;
    for (uint32_t c = 0; c < len; c++) {
        if (i >= n)
            return SIZE_MAX;
        i++;
        while (i < n && (s[i] & 0xc0) == 0x80)
            i++;
    }
    return i;
}

/* Each client's items (in the id index) and delete records (in clock order)
 * tile [0, next_clock), and its items' texts tile its arena (valid UTF-8) in
 * the same order, each as many characters long as the item, ASCII when the
 * item says so. Adds the visible items' UTF-16 units and bytes to *vis and
 * *bytes. */
static int check_tiling(const crdt_doc_t *doc, uint64_t *vis, uint64_t *bytes)
{
    for (uint32_t cl = 0; cl < doc->clients.len; cl++) {
        const crdt__pool_t *dels = &CLIENT(doc, cl).dels, *text = &CLIENT(doc, cl).text;
        uint32_t nd = 0, expect = 0, clock = 0, val = 0;
        size_t tpos = 0, cps, u16;
        crdt__idx_iter_t iter;
        bool more;
        if (text->len > CRDT__TEXT_MAX)
            return CRDT_EINTERNAL; /* its UTF-8 is checked item by item below */
        crdt__idx_seek(doc, cl, 0, &iter);
        more = crdt__idx_next(doc, &iter, &clock, &val);
        for (;;) {
            if (more && clock == expect) {
                const crdt__item_t *x;
                size_t n;
                if (val >= doc->items.len)
                    return CRDT_EINTERNAL;
                x = &ITEM(doc, val);
                if (x->clock != clock || x->len == 0 || x->client != cl || x->text_off != tpos ||
                    tpos >= text->len)
                    return CRDT_EINTERNAL;
                n = check_run_bytes((const uint8_t *)text->base + tpos, text->len - tpos, x->len);
                if (n == SIZE_MAX || (x->ascii && n != x->len) ||
                    crdt__utf8_scan(item_text(doc, x), n, &cps, &u16) != 0 || cps != x->len)
                    return CRDT_EINTERNAL;
                if (!x->deleted) {
                    *vis += u16;
                    *bytes += n;
                }
                tpos += n;
                expect += x->len;
                more = crdt__idx_next(doc, &iter, &clock, &val);
            } else if (nd < dels->len && DELREC(doc, cl, nd).clock == expect &&
                       DELREC(doc, cl, nd).len > 0) {
                expect += DELREC(doc, cl, nd++).len;
            } else {
                break;
            }
        }
        if (nd != dels->len || expect != CLIENT(doc, cl).next_clock || more || tpos != text->len)
            return CRDT_EINTERNAL;
    }
    return 0;
}

int crdt_doc_check(const crdt_doc_t *doc)
{
    uint64_t vis = 0, bytes = 0;
    int err;

    if (crdt__seq_check(doc) != 0 || crdt__idx_check(doc) != 0)
        return CRDT_EINTERNAL;
    for (uint32_t i = 0; i < doc->items.len; i++) {
        const crdt__item_t *x = &ITEM(doc, i);
        uint32_t off;
        if (x->len == 0)
            continue; /* dead */
        if (x->client >= doc->clients.len)
            return CRDT_EINTERNAL;
        if (crdt__item_find(doc, crdt__id(x->client, x->clock), &off) != i || off != 0)
            return CRDT_EINTERNAL;
        if (x->clock + x->len > CLIENT(doc, x->client).next_clock)
            return CRDT_EINTERNAL;
    }
    if ((err = check_tiling(doc, &vis, &bytes)) != 0)
        return err;
    if (vis != doc->vis_len || bytes != doc->utf8_len)
        return CRDT_EINTERNAL;
    return 0;
}
