/* SPDX-License-Identifier: MIT */
/*
 * apply.c: merging remote updates. crdt_doc_apply_update() decodes the update,
 * joins it with the operations held from earlier updates, drops what is
 * already known, and plans an order in which every operation's dependencies
 * (its predecessor clock, its origins, its delete targets) come first. Only
 * after every pool has been reserved does it change the document, so a bad or
 * unaffordable update leaves it untouched. Operations still missing
 * dependencies are re-encoded and held.
 *
 * crdt__integrate_insert() places one insertion with FugueMax ordering (the
 * YjsMod formulation of Weidner & Kleppmann, "The Art of the Fugue"):
 * concurrent insertions at one place never interleave.
 */
#include "crdt_internal.h"

#include <stdlib.h>

/* Position of a character in document order: (item rank, offset). */
static int64_t char_rank(const crdt_doc_t *doc, crdt__id_t id)
{
    uint32_t off, it = crdt__item_find(doc, id, &off);
    if (CRDT_NEVER(it == CRDT__NONE))
        return -1;
    return (int64_t)crdt__seq_rank(doc, it, NULL) << 32 | off;
}

void crdt__integrate_insert(crdt_doc_t *doc, const crdt__op_t *op, uint32_t hint)
{
    uint32_t left_it = CRDT__NONE, right_it = CRDT__NONE, off, o = CRDT__NONE, dest, y;
    uint32_t prev, pred; /* the items before o and before dest (NONE: none) */
    int64_t left_rank = -1, right_rank = INT64_MAX;
    bool have_o = false;
    uint64_t my_id = CLIENT(doc, op->client).id;
    bool scanning = false;

    if (op->left.client != CRDT__NONE) {
        const crdt__item_t *h = hint < doc->items.len ? &ITEM(doc, hint) : NULL;
        if (h && h->client == op->left.client && op->left.clock >= h->clock &&
            op->left.clock - h->clock < h->len) {
            left_it = hint;
            off = op->left.clock - h->clock;
        } else {
            left_it = crdt__item_find(doc, op->left, &off);
        }
        if (CRDT_NEVER(left_it == CRDT__NONE))
            return;
        if (off + 1 < ITEM(doc, left_it).len)
            crdt__item_split(doc, left_it, off + 1);
    }
    if (op->right.client != CRDT__NONE) {
        /* Usually the right origin is what follows the left one. */
        o = left_it == CRDT__NONE ? crdt__seq_first(doc) : crdt__seq_next(doc, left_it);
        have_o = true;
        if (o != CRDT__NONE && ITEM(doc, o).client == op->right.client &&
            ITEM(doc, o).clock == op->right.clock) {
            right_it = o;
            off = 0;
        } else {
            right_it = crdt__item_find(doc, op->right, &off);
            if (CRDT_NEVER(right_it == CRDT__NONE))
                return;
            /* A right origin at or before the left one (only a forged
             * operation has one) is ignored, the same way on every replica,
             * so the insert still lands after its left origin. */
            if (left_it != CRDT__NONE &&
                ((int64_t)crdt__seq_rank(doc, right_it, NULL) << 32 | off) <=
                    ((int64_t)crdt__seq_rank(doc, left_it, NULL) << 32 |
                     (ITEM(doc, left_it).len - 1)))
                right_it = CRDT__NONE;
        }
        if (right_it != CRDT__NONE && off > 0) {
            right_it = crdt__item_split(doc, right_it, off);
            have_o = false; /* the split may have put the right part next */
        }
    }

    if (!have_o)
        o = left_it == CRDT__NONE ? crdt__seq_first(doc) : crdt__seq_next(doc, left_it);
    dest = o;
    prev = pred = left_it;
    if (o != right_it) {
        if (left_it != CRDT__NONE)
            left_rank =
                (int64_t)crdt__seq_rank(doc, left_it, NULL) << 32 | (ITEM(doc, left_it).len - 1);
        if (right_it != CRDT__NONE)
            right_rank = (int64_t)crdt__seq_rank(doc, right_it, NULL) << 32;
    }
    for (;;) {
        const crdt__item_t *x;
        crdt__id_t xl, xr;
        int64_t oleft, oright;
        if (!scanning) {
            dest = o;
            pred = prev;
        }
        if (o == CRDT__NONE || o == right_it)
            break;
        x = &ITEM(doc, o);
        xl = crdt__item_left(x);
        if (crdt__id_eq(xl, op->left))
            oleft = left_rank;
        else
            oleft = xl.client == CRDT__NONE ? -1 : char_rank(doc, xl);
        if (oleft < left_rank)
            break;
        if (oleft == left_rank) {
            xr = crdt__item_right(x);
            if (crdt__id_eq(xr, op->right))
                oright = right_rank;
            else
                oright = xr.client == CRDT__NONE ? INT64_MAX : char_rank(doc, xr);
            /* A right origin at or before the left one was ignored when x
             * was integrated (see above): it counts as none here too, or
             * the order of concurrent inserts would depend on arrival. */
            if (oright <= oleft)
                oright = INT64_MAX;
            if (oright < right_rank) {
                scanning = true;
            } else if (oright == right_rank) {
                if (my_id < CLIENT(doc, x->client).id)
                    break;
                scanning = false;
            } else {
                scanning = false;
            }
        }
        prev = o;
        o = crdt__seq_next(doc, o);
    }

    /* A run typed remotely arrives a piece at a time: when the new
     * characters continue the run right before their place, grow it (the
     * run's text ends the arena: its last clock is the client's last). */
    if (pred != CRDT__NONE) {
        crdt__item_t *x = &ITEM(doc, pred);
        if (x->client == op->client && x->clock + x->len == op->clock && !x->deleted &&
            crdt__id_eq(op->left, crdt__id(x->client, op->clock - 1)) &&
            crdt__id_eq(op->right, crdt__item_right(x))) {
            crdt__text_append(doc, op->client, op->text, op->text_bytes);
            x->len += op->len;
            if (op->text_bytes != op->len)
                x->ascii = 0;
            crdt__seq_adjust_vis(doc, pred, op->u16len);
            CLIENT(doc, op->client).hint = pred;
            doc->vis_len += op->u16len;
            doc->utf8_len += op->text_bytes;
            return;
        }
    }
    y = crdt__item_new(doc);
    {
        crdt__item_t *n = &ITEM(doc, y);
        n->client = op->client;
        n->clock = op->clock;
        n->len = op->len;
        n->text_off = crdt__text_append(doc, op->client, op->text, op->text_bytes);
        n->ascii = op->text_bytes == op->len;
        crdt__item_set_left(n, op->left);
        crdt__item_set_right(n, op->right);
        n->deleted = 0;
        n->leaf = CRDT__NO_LEAF;
    }
    crdt__seq_insert_before(doc, dest, y, op->u16len);
    crdt__idx_insert(doc, op->client, op->clock, y);
    CLIENT(doc, op->client).hint = y;
    doc->vis_len += op->u16len;
    doc->utf8_len += op->text_bytes;
}

/* ---- planning ------------------------------------------------------------- */

typedef struct {
    crdt__op_t op;
    uint32_t seq;     /* arrival order, breaks ties when sorting */
    uint32_t hint;    /* an item found by the dependency check (see deps_of), or NONE */
    uint8_t from_new; /* 1: from this update, 0: held from before */
    uint8_t state;    /* WAITING, PLANNED, DROPPED */
} cand_t;

enum { WAITING = 0, PLANNED = 1, DROPPED = 2 };

/* The candidates of one client: c[start .. end), sorted by clock and not
 * overlapping, and the clock planned so far. Groups are sorted by client. */
typedef struct {
    uint32_t client, start, end, psv;
} group_t;

typedef struct {
    const crdt_doc_t *doc;
    cand_t *c;
    size_t n;
    group_t *g;
    uint32_t ng;
} plan_t;

static int cmp_cand(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->op.client != y->op.client)
        return x->op.client < y->op.client ? -1 : 1;
    if (x->op.clock != y->op.clock)
        return x->op.clock < y->op.clock ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void crdt__op_trim(crdt__op_t *op, uint32_t t)
{
    if (t == 0)
        return;
    if (op->kind == CRDT__OP_INSERT) {
        bool ascii = op->text_bytes == op->len;
        size_t boff = crdt__utf8_offset(op->text, ascii, t);
        uint32_t u = crdt__utf8_u16_prefix(op->text, ascii, t);
        op->text += boff;
        op->text_bytes -= (uint32_t)boff;
        op->u16len -= u;
        op->left = crdt__id(op->client, op->clock + t - 1);
    } else if (!op->backward) {
        op->tlo += t;
    }
    op->clock += t;
    op->len -= t;
}

static const group_t *find_group(const plan_t *p, uint32_t c)
{
    uint32_t lo = 0, hi = p->ng;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (p->g[m].client < c)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < p->ng && p->g[lo].client == c ? &p->g[lo] : NULL;
}

enum { DEP_OK = 0, DEP_MISSING = 1, DEP_INVALID = 2 };

/* Are characters (c, lo .. lo+n-1) all inserted, in the document or among the
 * operations planned so far? If `found` is not NULL and the document's item
 * holding (c, lo) was looked up, it is stored there (for the integration that
 * follows), else it is left alone. */
static int deps_inserted(const plan_t *p, uint32_t c, uint32_t lo, uint32_t n, uint32_t *found)
{
    const crdt_doc_t *doc = p->doc;
    const group_t *g = find_group(p, c);
    uint32_t hi = lo + n, doc_sv = c < doc->clients.len ? CLIENT(doc, c).next_clock : 0;
    if (hi < lo || hi > (g ? g->psv : doc_sv))
        return DEP_MISSING;
    /* Part held by the document. */
    if (lo < doc_sv) {
        uint32_t start, v = crdt__hint_find(doc, c, lo), ck;
        uint32_t end = hi < doc_sv ? hi : doc_sv;
        if (v != CRDT__NONE)
            start = ITEM(doc, v).clock;
        else
            v = crdt__idx_find_le(doc, c, lo, &start);
        crdt__idx_iter_t it;
        /* Items hold all of [lo, end) when the one holding lo and those after
         * it follow each other without a gap (a gap is a client's deletes). */
        if (v == CRDT__NONE || lo - start >= ITEM(doc, v).len)
            return DEP_INVALID;
        if (found)
            *found = v;
        start += ITEM(doc, v).len;
        if (start < end) {
            crdt__idx_seek(doc, c, start, &it);
            while (start < end) {
                if (!crdt__idx_next(doc, &it, &ck, &v) || ck != start)
                    return DEP_INVALID;
                start = ck + ITEM(doc, v).len;
            }
        }
        lo = end;
    }
    /* Part planned from this batch: binary search the first candidate
     * reaching past lo. */
    if (lo < hi) {
        uint32_t a, b;
        if (g == NULL)
            return DEP_MISSING;
        a = g->start;
        b = g->end;
        while (a < b) {
            uint32_t m = a + (b - a) / 2;
            if (p->c[m].op.clock + p->c[m].op.len <= lo)
                a = m + 1;
            else
                b = m;
        }
        for (; a < g->end && lo < hi; a++) {
            const cand_t *k = &p->c[a];
            if (k->state != PLANNED || k->op.clock > lo)
                return DEP_MISSING;
            if (k->op.kind != CRDT__OP_INSERT)
                return DEP_INVALID;
            lo = k->op.clock + k->op.len;
        }
        if (lo < hi)
            return DEP_MISSING;
    }
    return DEP_OK;
}

/* Is `id` the right origin of a live item of the document? Then it names an
 * inserted character: every item's origins were inserted characters when it
 * was integrated (loads check the same), and stay so. Typing in one place
 * keeps one right origin, so the hint of the typing client usually has it. */
static bool known_right(const crdt_doc_t *doc, uint32_t client, crdt__id_t id)
{
    uint32_t h;
    if (client >= doc->clients.len || (h = CLIENT(doc, client).hint) >= doc->items.len)
        return false;
    return ITEM(doc, h).len > 0 && crdt__id_eq(crdt__item_right(&ITEM(doc, h)), id);
}

/* `found` (or NULL) as for deps_inserted(): the item holding the left origin
 * of an insert, or the first target of a delete. */
/* Is `right` the character right after `left` in the document, whose item
 * `lf` holds it? Then it is an inserted character (the usual right origin). */
static bool right_follows(const crdt_doc_t *doc, uint32_t lf, crdt__id_t left, crdt__id_t right)
{
    const crdt__item_t *x = &ITEM(doc, lf);
    uint32_t nx;
    if (left.clock - x->clock + 1 < x->len)
        return crdt__id_eq(right, crdt__id(x->client, left.clock + 1));
    nx = crdt__seq_next(doc, lf);
    return nx != CRDT__NONE &&
           crdt__id_eq(right, crdt__id(ITEM(doc, nx).client, ITEM(doc, nx).clock));
}

static int deps_of(const plan_t *p, const crdt__op_t *op, uint32_t *found)
{
    uint32_t lf = CRDT__NONE;
    int r;
    if (op->kind == CRDT__OP_DELETE)
        return deps_inserted(p, op->tclient, op->tlo, op->len, found);
    if (op->left.client != CRDT__NONE) {
        if ((r = deps_inserted(p, op->left.client, op->left.clock, 1, &lf)) != 0)
            return r;
        if (found)
            *found = lf;
    }
    if (op->right.client != CRDT__NONE && !known_right(p->doc, op->client, op->right) &&
        (lf == CRDT__NONE || !right_follows(p->doc, lf, op->left, op->right)))
        return deps_inserted(p, op->right.client, op->right.clock, 1, NULL);
    return DEP_OK;
}

/* Does an operation name its own client's current or later clocks as an
 * origin or target? Such an operation could never be applied. */
static bool refers_forward(const crdt__op_t *op)
{
    if (op->kind == CRDT__OP_INSERT)
        return (op->left.client == op->client && op->left.clock >= op->clock) ||
               (op->right.client == op->client && op->right.clock >= op->clock);
    return op->tclient == op->client && (uint64_t)op->tlo + op->len > op->clock;
}

/* Rewrites a decoded operation's client numbers to local ones. */
static void map_op(crdt__op_t *op, const uint32_t *map)
{
    op->client = map[op->client];
    if (op->kind == CRDT__OP_INSERT) {
        if (op->left.client != CRDT__NONE)
            op->left.client = map[op->left.client];
        if (op->right.client != CRDT__NONE)
            op->right.client = map[op->right.client];
    } else {
        op->tclient = map[op->tclient];
    }
}

#define CRDT__SLOW 1 /* apply_one(): take the general path */

/* crdt__client_find() behind doc->recent_client. */
static inline uint32_t find_client_recent(crdt_doc_t *doc, uint64_t id)
{
    uint32_t c0 = doc->recent_client[0], c1 = doc->recent_client[1], c;
    if (c0 < doc->clients.len && CLIENT(doc, c0).id == id)
        return c0;
    if (c1 < doc->clients.len && CLIENT(doc, c1).id == id)
        return c1;
    if ((c = crdt__client_find(doc, id)) != CRDT__NONE) {
        doc->recent_client[1] = c0;
        doc->recent_client[0] = c;
    }
    return c;
}

/*
 * The common case of a single operation from a known client that is next in
 * line and whose dependencies the document has: applied without planning.
 * Returns 0 (applied, or already known), an error, or CRDT__SLOW when the
 * general path must decide (new clients, missing dependencies, overlaps).
 */
static int apply_one(crdt_doc_t *doc, const crdt__decoded_t *dn, plan_t *p)
{
    crdt__op_t op = dn->ops[0];
    uint32_t map[3] = {CRDT__NONE, CRDT__NONE, CRDT__NONE}, c, found = CRDT__NONE;
    int r, err;
    if (dn->nids > 3)
        return CRDT__SLOW;
    for (size_t i = 0; i < dn->nids; i++)
        if ((map[i] = find_client_recent(doc, dn->ids[i])) == CRDT__NONE)
            return CRDT__SLOW;
    map_op(&op, map);
    if (refers_forward(&op))
        return CRDT_EMALFORMED;
    c = op.client;
    if (op.clock + op.len <= CLIENT(doc, c).next_clock)
        return 0; /* already known */
    if (op.clock != CLIENT(doc, c).next_clock)
        return CRDT__SLOW;
    p->doc = doc;
    p->ng = 0; /* dependencies are looked up in the document only */
    r = deps_of(p, &op, &found);
    if (r == DEP_INVALID)
        return CRDT_EINVALID;
    if (r == DEP_MISSING)
        return CRDT__SLOW;
    if (op.kind == CRDT__OP_INSERT) {
        if ((err = crdt__reserve(doc, 3)) != 0 ||
            (err = crdt__text_reserve(doc, c, op.text_bytes)) != 0)
            return err;
        crdt__integrate_insert(doc, &op, found);
    } else {
        if ((err = crdt__reserve(doc, 2)) != 0 || (err = crdt__delrec_reserve(doc, c, 1)) != 0)
            return err;
        crdt__integrate_delete(doc, &op, found);
    }
    CLIENT(doc, c).next_clock = op.clock + op.len;
    doc->changes++;
    return 0;
}

/* Temporary memory of one apply, taken in one allocation. */
typedef struct {
    void *block;
    size_t size;
    uint64_t *newids;
    uint32_t *map; /* update's (then held ops') client numbers -> local */
    cand_t *c;
    uint32_t *plan;
    group_t *g;
} scratch_t;

static int scratch_init(const crdt_alloc_t *a, scratch_t *s, size_t nids, size_t nops, void *stack,
                        size_t stack_size)
{
    size_t o_newids = 0, o_cand, o_map, o_plan, o_g, total;
    o_cand = o_newids + nids * sizeof(uint64_t);
    o_g = o_cand + nops * sizeof(cand_t);
    o_map = o_g + nops * sizeof(group_t);
    o_plan = o_map + nids * sizeof(uint32_t);
    total = o_plan + nops * sizeof(uint32_t);
    if (total <= stack_size) {
        s->block = stack;
        s->size = 0; /* not to be freed */
    } else {
        s->block = crdt__tmp_alloc(a, total);
        if (s->block == NULL)
            return CRDT_ENOMEM;
        s->size = total;
    }
    s->newids = (uint64_t *)((char *)s->block + o_newids);
    s->c = (cand_t *)(void *)((char *)s->block + o_cand);
    s->g = (group_t *)(void *)((char *)s->block + o_g);
    s->map = (uint32_t *)(void *)((char *)s->block + o_map);
    s->plan = (uint32_t *)(void *)((char *)s->block + o_plan);
    return 0;
}

/*
 * crdt_doc_apply_update(); `fresh`: the document is being loaded and is
 * discarded if this fails (crdt_doc_load()), so the commit may reserve as it
 * goes instead of for the worst case up front. The worst case is one new
 * leaf in each tree per item, which for a whole history is far more than is
 * used (about 14 MB per tree for automerge-paper's state, given back right
 * after), and glibc returned and took back that heap on every load.
 */
static int apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len, bool fresh)
{
    const crdt_alloc_t *a;
    crdt__decoded_t dn, dp; /* only their pointers and counts need setting */
    scratch_t s = {0};
    union {
        uint64_t align;
        char bytes[1024];
    } stack;
    size_t nnew = 0, nall, i, nplan = 0, nleft = 0, nitems = 0, ntmpclients = 0;
    crdt__client_t *tmpclients = NULL;
    crdt__op_t *leftover = NULL;
    crdt_buf_t pend = {0};
    uint8_t *new_pending = NULL;
    plan_t p;
    bool changed = false, superseded = false;
    int err;

    if (doc == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    a = &doc->alloc;
    dp.ops = NULL;
    dp.ids = NULL;
    dp.owned = NULL;
    dp.nops = dp.opcap = dp.nids = dp.owned_len = 0;
    memset(&p, 0, sizeof(p));
    p.doc = doc;
    if ((err = crdt__decode_update(a, data, len, &dn)) != 0)
        return err;
    if (dn.nops == 0)
        goto Exit;
    if (dn.nops == 1 && doc->pending_len == 0) {
        /* A keystroke: one operation, nothing held. */
        err = apply_one(doc, &dn, &p);
        if (err != CRDT__SLOW)
            goto Exit;
        err = 0;
        memset(&p, 0, sizeof(p));
        p.doc = doc;
    }
    if (doc->pending_len > 0 &&
        CRDT_NEVER(crdt__decode_update(a, doc->pending, doc->pending_len, &dp) != 0)) {
        err = CRDT_EINTERNAL; /* our own encoding of held operations must decode */
        goto Exit;
    }
    nall = dp.nops + dn.nops;
    if ((err = scratch_init(a, &s, dn.nids + dp.nids, nall, stack.bytes, sizeof(stack.bytes))) != 0)
        goto Exit;

    /* Local client numbers; unknown replica ids get provisional ones after
     * the existing clients, in sorted order, added to the table on commit. */
    for (i = 0; i < dn.nids + dp.nids; i++) {
        uint64_t id = i < dn.nids ? dn.ids[i] : dp.ids[i - dn.nids];
        if (crdt__client_find(doc, id) == CRDT__NONE)
            s.newids[nnew++] = id;
    }
    if (nnew > 1) {
        size_t w = 0;
        qsort(s.newids, nnew, sizeof(uint64_t), cmp_u64);
        for (i = 0; i < nnew; i++)
            if (w == 0 || s.newids[w - 1] != s.newids[i])
                s.newids[w++] = s.newids[i];
        nnew = w;
    }
    if ((uint64_t)doc->clients.len + nnew >= CRDT__NONE / 2) {
        err = CRDT_ELIMIT;
        goto Exit;
    }
    for (i = 0; i < dn.nids + dp.nids; i++) {
        uint64_t id = i < dn.nids ? dn.ids[i] : dp.ids[i - dn.nids];
        uint32_t c = crdt__client_find(doc, id);
        if (c == CRDT__NONE) {
            const uint64_t *f = bsearch(&id, s.newids, nnew, sizeof(uint64_t), cmp_u64);
            c = doc->clients.len + (uint32_t)(f - s.newids);
        }
        s.map[i] = c;
    }

    /* Candidates: held operations first, then the new ones. */
    p.c = s.c;
    for (i = 0; i < nall; i++) {
        cand_t *k = &p.c[i];
        bool from_new = i >= dp.nops;
        k->op = from_new ? dn.ops[i - dp.nops] : dp.ops[i];
        map_op(&k->op, from_new ? s.map : s.map + dn.nids);
        if (refers_forward(&k->op)) {
            /* Two table entries for one replica can hide this from the
             * decoder: an operation depending on its own later clocks. */
            err = CRDT_EMALFORMED;
            goto Exit;
        }
        k->seq = (uint32_t)i;
        k->hint = CRDT__NONE;
        k->from_new = from_new;
        k->state = WAITING;
    }
    for (i = 1; i < nall; i++)
        if (cmp_cand(&p.c[i - 1], &p.c[i]) > 0)
            break;
    if (i < nall)
        qsort(p.c, nall, sizeof(cand_t), cmp_cand);

    /* A held operation whose clocks overlap an operation of this update is
     * superseded by it: an honest peer sends the same operation again, and a
     * conflicting one must not win because it arrived first and was held. */
    if (dp.nops > 0) {
        size_t g0 = 0;
        while (g0 < nall) {
            size_t g1 = g0, j = g0;
            while (g1 < nall && p.c[g1].op.client == p.c[g0].op.client)
                g1++;
            for (size_t h = g0; h < g1; h++) {
                const crdt__op_t *ho = &p.c[h].op;
                if (p.c[h].from_new)
                    continue;
                while (j < g1 && (!p.c[j].from_new || p.c[j].op.clock + p.c[j].op.len <= ho->clock))
                    j++;
                if (j < g1 && p.c[j].op.clock < ho->clock + ho->len)
                    p.c[h].state = DROPPED;
            }
            g0 = g1;
        }
    }

    /* Drop what is known, trim what is partly known, group by client. */
    p.g = s.g;
    {
        size_t w = 0;
        group_t *g = NULL;
        for (i = 0; i < nall; i++) {
            cand_t *k = &p.c[i];
            uint32_t c = k->op.client;
            if (g == NULL || g->client != c) {
                g = &p.g[p.ng++];
                g->client = c;
                g->start = g->end = (uint32_t)w;
                g->psv = c < doc->clients.len ? CLIENT(doc, c).next_clock : 0;
            }
            if (k->state == DROPPED) {
                superseded = true;
                continue;
            }
            if (k->op.clock + k->op.len <= g->psv)
                continue;
            if (k->op.clock < g->psv)
                crdt__op_trim(&k->op, g->psv - k->op.clock);
            g->psv = k->op.clock + k->op.len; /* temporarily: covered so far */
            p.c[w++] = *k;
            g->end = (uint32_t)w;
        }
        p.n = w;
        for (uint32_t j = 0; j < p.ng; j++) {
            uint32_t c = p.g[j].client;
            p.g[j].psv = c < doc->clients.len ? CLIENT(doc, c).next_clock : 0;
        }
    }

    /* Plan: repeatedly take each client's next operation whose dependencies
     * are met, until nothing moves. */
    for (bool progress = true; progress;) {
        progress = false;
        for (uint32_t j = 0; j < p.ng; j++) {
            group_t *g = &p.g[j];
            uint32_t k = g->start;
            while (k < g->end && p.c[k].state != WAITING)
                k++;
            for (; k < g->end; k++) {
                cand_t *x = &p.c[k];
                int r;
                if (x->op.clock != g->psv)
                    break;
                r = deps_of(&p, &x->op, &x->hint);
                if (r == DEP_MISSING)
                    break;
                if (r == DEP_INVALID) {
                    if (x->from_new) {
                        err = CRDT_EINVALID;
                        goto Exit;
                    }
                    for (uint32_t m = k; m < g->end; m++)
                        p.c[m].state = DROPPED;
                    break;
                }
                x->state = PLANNED;
                s.plan[nplan++] = k;
                g->psv = x->op.clock + x->op.len;
                progress = true;
                nitems += x->op.kind == CRDT__OP_INSERT ? 3 : 2;
            }
        }
    }

    /* Operations still waiting are held, re-encoded against the table that
     * will exist after commit. */
    for (i = 0; i < p.n; i++) {
        if (p.c[i].state == WAITING) {
            nleft++;
            changed |= p.c[i].from_new;
        } else if (p.c[i].state == DROPPED) {
            changed = true;
        }
    }
    if (nleft > 0) {
        size_t w = 0;
        ntmpclients = doc->clients.len + nnew;
        leftover = crdt__tmp_alloc(a, nleft * sizeof(crdt__op_t));
        tmpclients = crdt__tmp_alloc(a, ntmpclients * sizeof(crdt__client_t));
        if (!leftover || !tmpclients) {
            err = CRDT_ENOMEM;
            goto Exit;
        }
        for (i = 0; i < doc->clients.len; i++)
            tmpclients[i] = CLIENT(doc, i);
        for (i = 0; i < nnew; i++)
            tmpclients[doc->clients.len + i].id = s.newids[i];
        for (i = 0; i < p.n; i++)
            if (p.c[i].state == WAITING)
                leftover[w++] = p.c[i].op;
        if ((err = crdt__encode_ops(a, tmpclients, ntmpclients, leftover, nleft, &pend)) != 0)
            goto Exit;
    }
    if (nplan == 0 && !changed && !superseded)
        goto Exit; /* nothing new: all known, or held as before */

    /* New clients join the table first (invisible: they have no operation
     * yet) because their text arenas are reserved per client. */
    if ((err = crdt__client_reserve(doc, nnew)) != 0)
        goto Exit;
    for (i = 0; i < nnew; i++)
        crdt__client_add(doc, s.newids[i]);
    for (uint32_t j = 0; j < p.ng; j++) {
        const group_t *g = &p.g[j];
        size_t bytes = 0, ndel = 0;
        for (uint32_t k = g->start; k < g->end; k++) {
            if (p.c[k].state != PLANNED)
                continue;
            if (p.c[k].op.kind == CRDT__OP_INSERT)
                bytes += p.c[k].op.text_bytes;
            else
                ndel++;
        }
        if (bytes && (err = crdt__text_reserve(doc, g->client, bytes)) != 0)
            goto Exit;
        if (ndel && (err = crdt__delrec_reserve(doc, g->client, ndel)) != 0)
            goto Exit;
    }
    if (!fresh && (err = crdt__reserve(doc, nitems)) != 0)
        goto Exit;
    /* The held operations' new encoding; the old one stays alive until the
     * planned operations (whose text may point into it) are integrated. */
    if (nleft > 0) {
        new_pending = crdt__malloc(doc, pend.len);
        if (new_pending == NULL) {
            err = CRDT_ENOMEM;
            goto Exit;
        }
        memcpy(new_pending, pend.base, pend.len);
    }

    /* Commit: nothing below allocates (but a fresh document's items, see
     * above). The items the planning found may have been split or merged
     * away since; the integration checks a hint before it uses it. */
    for (i = 0; i < nplan; i++) {
        const crdt__op_t *op = &p.c[s.plan[i]].op;
        uint32_t hint = p.c[s.plan[i]].hint;
        if (fresh && (err = crdt__reserve(doc, 3)) != 0)
            goto Exit; /* the caller frees the half-loaded document */
        if (op->kind == CRDT__OP_INSERT)
            crdt__integrate_insert(doc, op, hint);
        else
            crdt__integrate_delete(doc, op, hint);
        CLIENT(doc, op->client).next_clock = op->clock + op->len;
    }
    crdt__free(doc, doc->pending, doc->pending_len);
    doc->pending = new_pending;
    doc->pending_len = nleft > 0 ? pend.len : 0;
    doc->pending_ops = nleft;
    doc->changes++;
    if (nitems > 64)
        crdt__shrink(doc);
Exit:
    if (err && new_pending)
        crdt__free(doc, new_pending, pend.len);
    /* A keystroke's apply allocated none of these: skip the calls. */
    if (pend.base)
        crdt_buf_dispose(&pend);
    if (leftover)
        crdt__tmp_free(a, leftover, nleft * sizeof(crdt__op_t));
    if (tmpclients)
        crdt__tmp_free(a, tmpclients, ntmpclients * sizeof(crdt__client_t));
    if (s.size)
        crdt__tmp_free(a, s.block, s.size);
    /* Small updates (a keystroke) own no memory: skip the calls. */
    if (dp.ops != NULL || dp.ids != NULL || dp.owned != NULL)
        crdt__decoded_dispose(a, &dp);
    if ((dn.ops != NULL && dn.ops != dn.small_ops) || (dn.ids != NULL && dn.ids != dn.small_ids) ||
        dn.owned != NULL)
        crdt__decoded_dispose(a, &dn);
    return err;
}

int crdt_doc_apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len)
{
    return apply_update(doc, data, len, false);
}

int crdt__apply_to_fresh(crdt_doc_t *doc, const uint8_t *data, size_t len)
{
    return apply_update(doc, data, len, true);
}
