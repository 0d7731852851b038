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

void crdt__integrate_insert(crdt_doc_t *doc, const crdt__op_t *op)
{
    uint32_t left_it = CRDT__NONE, right_it = CRDT__NONE, off, o, dest, y;
    int64_t left_rank = -1, right_rank = INT64_MAX;
    uint64_t my_id = CLIENT(doc, op->client).id;
    bool scanning = false;

    if (op->left.client != CRDT__NONE) {
        left_it = crdt__item_find(doc, op->left, &off);
        if (CRDT_NEVER(left_it == CRDT__NONE))
            return;
        if (off + 1 < ITEM(doc, left_it).len)
            crdt__item_split(doc, left_it, off + 1);
    }
    if (op->right.client != CRDT__NONE) {
        right_it = crdt__item_find(doc, op->right, &off);
        if (CRDT_NEVER(right_it == CRDT__NONE))
            return;
        if (off > 0)
            right_it = crdt__item_split(doc, right_it, off);
    }

    o = left_it == CRDT__NONE ? crdt__seq_first(doc) : crdt__seq_next(doc, left_it);
    dest = o;
    if (o != right_it) {
        if (left_it != CRDT__NONE)
            left_rank = (int64_t)crdt__seq_rank(doc, left_it, NULL) << 32 |
                        (ITEM(doc, left_it).len - 1);
        if (right_it != CRDT__NONE)
            right_rank = (int64_t)crdt__seq_rank(doc, right_it, NULL) << 32;
    }
    for (;;) {
        const crdt__item_t *x;
        int64_t oleft, oright;
        if (!scanning)
            dest = o;
        if (o == CRDT__NONE || o == right_it)
            break;
        x = &ITEM(doc, o);
        if (crdt__id_eq(x->left, op->left))
            oleft = left_rank;
        else
            oleft = x->left.client == CRDT__NONE ? -1 : char_rank(doc, x->left);
        if (oleft < left_rank)
            break;
        if (oleft == left_rank) {
            if (crdt__id_eq(x->right, op->right))
                oright = right_rank;
            else
                oright = x->right.client == CRDT__NONE ? INT64_MAX : char_rank(doc, x->right);
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
        o = crdt__seq_next(doc, o);
    }

    y = crdt__item_new(doc);
    {
        crdt__item_t *n = &ITEM(doc, y);
        n->client = op->client;
        n->clock = op->clock;
        n->len = op->len;
        n->u16len = op->u16len;
        n->text_off = crdt__text_append(doc, op->client, op->text, op->text_bytes);
        n->text_bytes = op->text_bytes;
        n->left = op->left;
        n->right = op->right;
        n->deleted = 0;
        n->leaf = CRDT__NONE;
    }
    crdt__seq_insert_before(doc, dest, y);
    crdt__idx_insert(doc, op->client, op->clock, y);
    doc->vis_len += op->u16len;
    doc->utf8_len += op->text_bytes;
    /* A run typed remotely arrives a piece at a time: grow the run. */
    crdt__item_try_merge(doc, crdt__seq_prev(doc, y), y);
}

/* ---- planning ------------------------------------------------------------- */

typedef struct {
    crdt__op_t op;
    uint32_t seq;     /* arrival order, breaks ties when sorting */
    uint8_t from_new; /* 1: from this update, 0: held from before */
    uint8_t state;    /* WAITING, PLANNED, DROPPED */
} cand_t;

enum { WAITING = 0, PLANNED = 1, DROPPED = 2 };

typedef struct {
    crdt_doc_t *doc;
    cand_t *c;
    size_t n;
    uint32_t nclients;   /* existing + provisional */
    uint32_t *psv;       /* planned state vector per client */
    uint32_t *grp_start; /* per client: first candidate, or NONE */
    uint32_t *grp_end;
    uint32_t *groups; /* clients that have candidates */
    uint32_t ngroups;
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
        size_t boff = crdt__utf8_offset(op->text, op->text_bytes, op->len, t);
        uint32_t u = crdt__utf8_u16_prefix(op->text, op->text_bytes, op->len, t);
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

enum { DEP_OK = 0, DEP_MISSING = 1, DEP_INVALID = 2 };

/* Are characters (c, lo .. lo+n-1) all inserted, in the document or among the
 * operations planned so far? */
static int deps_inserted(const plan_t *p, uint32_t c, uint32_t lo, uint32_t n)
{
    const crdt_doc_t *doc = p->doc;
    uint32_t hi = lo + n, doc_sv = c < doc->clients.len ? CLIENT(doc, c).next_clock : 0;
    if (c >= p->nclients || hi > p->psv[c] || hi < lo)
        return DEP_MISSING;
    /* Part held by the document. */
    if (lo < doc_sv) {
        uint32_t start, v = crdt__idx_find_le(doc, c, lo, &start), cc, ck;
        uint32_t end = hi < doc_sv ? hi : doc_sv;
        crdt__idx_iter_t it;
        if (v == CRDT__NONE)
            return DEP_INVALID;
        crdt__idx_seek(doc, c, start, &it);
        while (start < end && crdt__idx_next(doc, &it, &cc, &ck, &v)) {
            if (cc != c)
                break;
            if (v & CRDT__IDX_DEL)
                return DEP_INVALID;
            start = ck + ITEM(doc, v).len;
        }
        lo = end;
    }
    /* Part planned from this batch: candidates of client c are sorted and
     * non-overlapping; binary search the first one reaching past lo. */
    if (lo < hi) {
        uint32_t a = p->grp_start[c], b = p->grp_end[c];
        while (a < b) {
            uint32_t m = a + (b - a) / 2;
            if (p->c[m].op.clock + p->c[m].op.len <= lo)
                a = m + 1;
            else
                b = m;
        }
        for (; a < p->grp_end[c] && lo < hi; a++) {
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

static int deps_of(const plan_t *p, const crdt__op_t *op)
{
    int r;
    if (op->kind == CRDT__OP_DELETE)
        return deps_inserted(p, op->tclient, op->tlo, op->len);
    if (op->left.client != CRDT__NONE && (r = deps_inserted(p, op->left.client, op->left.clock, 1)))
        return r;
    if (op->right.client != CRDT__NONE)
        return deps_inserted(p, op->right.client, op->right.clock, 1);
    return DEP_OK;
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

int crdt_doc_apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len)
{
    const crdt_alloc_t *a;
    crdt__decoded_t dn = {0}, dp = {0};
    uint64_t *newids = NULL;
    size_t nnew = 0, nall, i, nplan = 0, nleft = 0, nitems = 0, ndel = 0;
    uint32_t *map_n = NULL, *map_p = NULL, *plan = NULL;
    crdt__client_t *tmpclients = NULL;
    crdt__op_t *leftover = NULL;
    crdt_buf_t pend = {0};
    plan_t p;
    bool changed = false;
    int err;

    if (doc == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    a = &doc->alloc;
    memset(&p, 0, sizeof(p));
    p.doc = doc;
    if ((err = crdt__decode_update(a, data, len, &dn)) != 0)
        return err;
    if (dn.nops == 0)
        goto Exit;
    if (doc->pending_len > 0 &&
        (err = crdt__decode_update(a, doc->pending, doc->pending_len, &dp)) != 0)
        goto Exit;

    /* Local client numbers; unknown replica ids get provisional ones after
     * the existing clients, in sorted order, added to the table on commit. */
    newids = crdt__tmp_alloc(a, (dn.nids + dp.nids) * sizeof(uint64_t));
    map_n = crdt__tmp_alloc(a, dn.nids * sizeof(uint32_t));
    map_p = crdt__tmp_alloc(a, dp.nids * sizeof(uint32_t));
    if (!newids || !map_n || !map_p) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    for (i = 0; i < dn.nids; i++)
        if (crdt__client_find(doc, dn.ids[i]) == CRDT__NONE)
            newids[nnew++] = dn.ids[i];
    for (i = 0; i < dp.nids; i++)
        if (crdt__client_find(doc, dp.ids[i]) == CRDT__NONE)
            newids[nnew++] = dp.ids[i];
    qsort(newids, nnew, sizeof(uint64_t), cmp_u64);
    {
        size_t w = 0;
        for (i = 0; i < nnew; i++)
            if (w == 0 || newids[w - 1] != newids[i])
                newids[w++] = newids[i];
        nnew = w;
    }
    if ((uint64_t)doc->clients.len + nnew >= CRDT__NONE / 2) {
        err = CRDT_ELIMIT;
        goto Exit;
    }
    p.nclients = doc->clients.len + (uint32_t)nnew;
    for (int pass = 0; pass < 2; pass++) {
        const crdt__decoded_t *d = pass ? &dp : &dn;
        uint32_t *map = pass ? map_p : map_n;
        for (i = 0; i < d->nids; i++) {
            uint32_t c = crdt__client_find(doc, d->ids[i]);
            if (c == CRDT__NONE) {
                const uint64_t *f = bsearch(&d->ids[i], newids, nnew, sizeof(uint64_t), cmp_u64);
                c = doc->clients.len + (uint32_t)(f - newids);
            }
            map[i] = c;
        }
    }

    /* Candidates: held operations first, then the new ones. */
    nall = dp.nops + dn.nops;
    p.c = crdt__tmp_alloc(a, nall * sizeof(cand_t));
    p.psv = crdt__tmp_alloc(a, p.nclients * sizeof(uint32_t));
    p.grp_start = crdt__tmp_alloc(a, p.nclients * sizeof(uint32_t));
    p.grp_end = crdt__tmp_alloc(a, p.nclients * sizeof(uint32_t));
    p.groups = crdt__tmp_alloc(a, p.nclients * sizeof(uint32_t));
    plan = crdt__tmp_alloc(a, nall * sizeof(uint32_t));
    if (!p.c || !p.psv || !p.grp_start || !p.grp_end || !p.groups || !plan) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    for (i = 0; i < nall; i++) {
        cand_t *k = &p.c[i];
        bool from_new = i >= dp.nops;
        k->op = from_new ? dn.ops[i - dp.nops] : dp.ops[i];
        map_op(&k->op, from_new ? map_n : map_p);
        k->seq = (uint32_t)i;
        k->from_new = from_new;
        k->state = WAITING;
    }
    qsort(p.c, nall, sizeof(cand_t), cmp_cand);
    p.n = nall;
    for (i = 0; i < p.nclients; i++) {
        p.psv[i] = i < doc->clients.len ? CLIENT(doc, i).next_clock : 0;
        p.grp_start[i] = p.grp_end[i] = 0;
    }
    /* Drop what is known, trim what is partly known, group by client. */
    {
        size_t w = 0;
        uint32_t covered = 0, cur = CRDT__NONE;
        for (i = 0; i < nall; i++) {
            cand_t *k = &p.c[i];
            uint32_t c = k->op.client;
            if (c != cur) {
                if (cur != CRDT__NONE)
                    p.grp_end[cur] = (uint32_t)w;
                cur = c;
                covered = p.psv[c];
                p.grp_start[c] = (uint32_t)w;
                p.groups[p.ngroups++] = c;
            }
            if (k->op.clock + k->op.len <= covered)
                continue;
            if (k->op.clock < covered)
                crdt__op_trim(&k->op, covered - k->op.clock);
            covered = k->op.clock + k->op.len;
            p.c[w++] = *k;
        }
        if (cur != CRDT__NONE)
            p.grp_end[cur] = (uint32_t)w;
        p.n = w;
    }

    /* Plan: repeatedly take each client's next operation whose dependencies
     * are met, until nothing moves. */
    for (bool progress = true; progress;) {
        progress = false;
        for (uint32_t g = 0; g < p.ngroups; g++) {
            uint32_t c = p.groups[g], k = p.grp_start[c];
            while (k < p.grp_end[c] && p.c[k].state != WAITING)
                k++;
            for (; k < p.grp_end[c]; k++) {
                cand_t *x = &p.c[k];
                int r;
                if (x->op.clock != p.psv[c])
                    break;
                r = deps_of(&p, &x->op);
                if (r == DEP_MISSING)
                    break;
                if (r == DEP_INVALID) {
                    if (x->from_new) {
                        err = CRDT_EINVALID;
                        goto Exit;
                    }
                    for (uint32_t j = k; j < p.grp_end[c]; j++)
                        p.c[j].state = DROPPED;
                    break;
                }
                x->state = PLANNED;
                plan[nplan++] = k;
                p.psv[c] = x->op.clock + x->op.len;
                progress = true;
                if (x->op.kind == CRDT__OP_INSERT) {
                    nitems += 3;
                } else {
                    nitems += 2;
                    ndel++;
                }
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
        leftover = crdt__tmp_alloc(a, nleft * sizeof(crdt__op_t));
        tmpclients = crdt__tmp_alloc(a, p.nclients * sizeof(crdt__client_t));
        if (!leftover || !tmpclients) {
            err = CRDT_ENOMEM;
            goto Exit;
        }
        for (i = 0; i < doc->clients.len; i++)
            tmpclients[i] = CLIENT(doc, i);
        for (i = 0; i < nnew; i++)
            tmpclients[doc->clients.len + i].id = newids[i];
        for (i = 0; i < p.n; i++)
            if (p.c[i].state == WAITING)
                leftover[w++] = p.c[i].op;
        if ((err = crdt__encode_ops(a, tmpclients, p.nclients, leftover, nleft, &pend)) != 0)
            goto Exit;
    }
    if (nplan == 0 && !changed)
        goto Exit; /* nothing new: all known, or held as before */

    /* New clients join the table first (invisible: they have no operation
     * yet) because their text arenas are reserved per client. */
    if ((err = crdt__client_reserve(doc, nnew)) != 0)
        goto Exit;
    for (i = 0; i < nnew; i++)
        crdt__client_add(doc, newids[i]);
    nnew = 0;
    for (uint32_t g = 0; g < p.ngroups; g++) {
        uint32_t c = p.groups[g];
        size_t bytes = 0;
        for (uint32_t k = p.grp_start[c]; k < p.grp_end[c]; k++)
            if (p.c[k].state == PLANNED && p.c[k].op.kind == CRDT__OP_INSERT)
                bytes += p.c[k].op.text_bytes;
        if (bytes && (err = crdt__text_reserve(doc, c, bytes)) != 0)
            goto Exit;
    }
    if ((err = crdt__reserve(doc, nitems, ndel)) != 0)
        goto Exit;
    if (nleft > 0 && pend.len > 0) {
        uint8_t *copy = crdt__malloc(doc, pend.len);
        if (copy == NULL) {
            err = CRDT_ENOMEM;
            goto Exit;
        }
        memcpy(copy, pend.base, pend.len);
        crdt__free(doc, doc->pending, doc->pending_len);
        doc->pending = copy;
        doc->pending_len = pend.len;
    } else {
        crdt__free(doc, doc->pending, doc->pending_len);
        doc->pending = NULL;
        doc->pending_len = 0;
    }
    doc->pending_ops = nleft;

    /* Commit: nothing below allocates. */
    for (i = 0; i < nplan; i++) {
        const crdt__op_t *op = &p.c[plan[i]].op;
        if (op->kind == CRDT__OP_INSERT)
            crdt__integrate_insert(doc, op);
        else
            crdt__integrate_delete(doc, op);
        CLIENT(doc, op->client).next_clock = op->clock + op->len;
    }
    if (nitems > 64)
        crdt__shrink(doc);
Exit:
    crdt_buf_dispose(&pend);
    crdt__tmp_free(a, leftover, nleft * sizeof(crdt__op_t));
    crdt__tmp_free(a, tmpclients, p.nclients * sizeof(crdt__client_t));
    crdt__tmp_free(a, plan, (dp.nops + dn.nops) * sizeof(uint32_t));
    crdt__tmp_free(a, p.c, (dp.nops + dn.nops) * sizeof(cand_t));
    crdt__tmp_free(a, p.psv, p.nclients * sizeof(uint32_t));
    crdt__tmp_free(a, p.grp_start, p.nclients * sizeof(uint32_t));
    crdt__tmp_free(a, p.grp_end, p.nclients * sizeof(uint32_t));
    crdt__tmp_free(a, p.groups, p.nclients * sizeof(uint32_t));
    crdt__tmp_free(a, map_n, dn.nids * sizeof(uint32_t));
    crdt__tmp_free(a, map_p, dp.nids * sizeof(uint32_t));
    crdt__tmp_free(a, newids, (dn.nids + dp.nids) * sizeof(uint64_t));
    crdt__decoded_dispose(a, &dp);
    crdt__decoded_dispose(a, &dn);
    return err;
}
