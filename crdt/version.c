/* SPDX-License-Identifier: MIT */
/*
 * version.c: everything that reads the history. Collecting the operations a
 * peer lacks (diffs, the encoded state), loading a document, the text at an
 * earlier version (a state vector), and restoring such a version as a new
 * forward change.
 *
 * A character is in the text at version V when the operation inserting it is
 * in V and no delete operation in V deletes it; delete records map their
 * operation clocks to target characters, so a version cut in the middle of a
 * run of deletes is exact.
 */
#include "crdt_internal.h"

#include <stdlib.h>

#define item_text crdt__item_text

static int push_op(const crdt_alloc_t *a, crdt__op_t **ops, size_t *n, size_t *cap,
                   const crdt__op_t *op)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        crdt__op_t *p = crdt__tmp_alloc(a, ncap * sizeof(crdt__op_t));
        if (p == NULL)
            return CRDT_ENOMEM;
        if (*n)
            memcpy(p, *ops, *n * sizeof(crdt__op_t));
        crdt__tmp_free(a, *ops, *cap * sizeof(crdt__op_t));
        *ops = p;
        *cap = ncap;
    }
    (*ops)[(*n)++] = *op;
    return 0;
}

/* Appends item `x` (from clock `from` on) as an insert operation of client
 * `c`, joined to the previous operation when both are fragments of one run
 * split by later edits (they travel as one). */
static int push_item(const crdt_doc_t *doc, uint32_t c, const crdt__item_t *x, uint32_t from,
                     crdt__op_t **ops, size_t *n, size_t *cap)
{
    crdt__op_t op, *prev = *n ? &(*ops)[*n - 1] : NULL;
    memset(&op, 0, sizeof(op));
    op.kind = CRDT__OP_INSERT;
    op.client = c;
    op.clock = x->clock;
    op.len = x->len;
    op.left = crdt__item_left(x);
    op.right = crdt__item_right(x);
    op.text = item_text(doc, x);
    op.text_bytes = crdt__item_bytes(doc, x);
    op.u16len = crdt__item_u16(doc, x);
    if (prev && prev->kind == CRDT__OP_INSERT && prev->client == c &&
        prev->clock + prev->len == op.clock && op.clock >= from &&
        crdt__id_eq(op.left, crdt__id(c, op.clock - 1)) && crdt__id_eq(op.right, prev->right) &&
        prev->text + prev->text_bytes == op.text) {
        prev->len += op.len;
        prev->text_bytes += op.text_bytes;
        prev->u16len += op.u16len;
        return 0;
    }
    if (op.clock < from)
        crdt__op_trim(&op, from - op.clock);
    return push_op(&doc->alloc, ops, n, cap, &op);
}

/* Appends client `c`'s delete record `d` (from clock `from` on) as a delete
 * operation. */
static int push_delrec(const crdt_doc_t *doc, uint32_t c, const crdt__delrec_t *d, uint32_t from,
                       crdt__op_t **ops, size_t *n, size_t *cap)
{
    crdt__op_t op;
    memset(&op, 0, sizeof(op));
    op.kind = CRDT__OP_DELETE;
    op.client = c;
    op.clock = d->clock;
    op.len = d->len;
    op.tclient = d->tclient;
    op.tlo = d->tlo;
    op.backward = d->backward;
    if (op.clock < from)
        crdt__op_trim(&op, from - op.clock);
    return push_op(&doc->alloc, ops, n, cap, &op);
}

int crdt__collect_ops(const crdt_doc_t *doc, const uint32_t *clocks, crdt__op_t **out, size_t *nout,
                      size_t *capout)
{
    const crdt_alloc_t *a = &doc->alloc;
    crdt__op_t *ops = NULL;
    size_t n = 0, cap = 0;
    int err = 0;

    for (uint32_t c = 0; c < doc->clients.len; c++) {
        uint32_t from = clocks ? clocks[c] : 0, start, ck, v, ndel, k = 0;
        crdt__idx_iter_t it;
        bool more;
        if (from >= CLIENT(doc, c).next_clock)
            continue;
        /* the client's delete records from `from` on: k .. ndel - 1 */
        k = crdt__delrecs_from(doc, c, from);
        ndel = CLIENT(doc, c).dels.len;
        /* Items from the one holding `from`, or the last before it (then
         * `from` is a delete's and the item is skipped), merged in clock
         * order with the delete records. */
        if (crdt__idx_find_le(doc, c, from, &start) == CRDT__NONE)
            start = from;
        crdt__idx_seek(doc, c, start, &it);
        more = crdt__idx_next(doc, &it, &ck, &v);
        while (more || k < ndel) {
            if (more && (k == ndel || ck < DELREC(doc, c, k).clock)) {
                const crdt__item_t *x = &ITEM(doc, v);
                if (ck + x->len > from && (err = push_item(doc, c, x, from, &ops, &n, &cap)) != 0)
                    goto Fail;
                more = crdt__idx_next(doc, &it, &ck, &v);
            } else if ((err = push_delrec(doc, c, &DELREC(doc, c, k++), from, &ops, &n, &cap)) !=
                       0) {
                goto Fail;
            }
        }
    }
    *out = ops;
    *nout = n;
    *capout = cap;
    return 0;
Fail:
    crdt__tmp_free(a, ops, cap * sizeof(crdt__op_t));
    return err;
}

/* Encodes the operations a peer at `clocks` lacks. */
static int encode_missing(const crdt_doc_t *doc, const uint32_t *clocks, crdt_buf_t *out)
{
    crdt__op_t *ops = NULL;
    size_t n = 0, cap = 0;
    int err = crdt__collect_ops(doc, clocks, &ops, &n, &cap);
    if (err)
        return err;
    err = crdt__encode_ops(doc->out_alloc, &CLIENT(doc, 0), doc->clients.len, ops, n, out);
    crdt__tmp_free(&doc->alloc, ops, cap * sizeof(crdt__op_t));
    return err;
}

int crdt_doc_diff(const crdt_doc_t *doc, const uint8_t *sv, size_t sv_len, crdt_buf_t *out)
{
    uint32_t *clocks = NULL;
    bool unknown;
    int err;
    if (doc == NULL || out == NULL || (sv == NULL && sv_len > 0))
        return CRDT_EINVAL;
    if ((err = crdt__decode_sv(doc, sv, sv_len, &clocks, &unknown)) != 0)
        return err;
    err = encode_missing(doc, clocks, out);
    crdt__tmp_free(&doc->alloc, clocks, doc->clients.len * sizeof(uint32_t));
    return err;
}

int crdt_doc_encode_state(const crdt_doc_t *doc, crdt_buf_t *out)
{
    return crdt_doc_encode_state_ex(doc, 0, out);
}

int crdt_doc_encode_state_ex(const crdt_doc_t *doc, unsigned flags, crdt_buf_t *out)
{
    if (doc == NULL || out == NULL || (flags & ~(CRDT_STATE_UNCOMPRESSED | CRDT_STATE_FAST)))
        return CRDT_EINVAL;
    return crdt__snapshot_encode(doc,
                                 flags & CRDT_STATE_UNCOMPRESSED ? CRDT__SNAP_STORED
                                 : flags & CRDT_STATE_FAST       ? CRDT__SNAP_LZ_FAST
                                                                 : CRDT__SNAP_LZ,
                                 out);
}

int crdt_doc_load(uint64_t client, const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                  crdt_doc_t **out)
{
    crdt_doc_t *doc;
    int err;
    if (out == NULL)
        return CRDT_EINVAL;
    if ((err = crdt_doc_new(client, alloc, &doc)) != 0)
        return err;
    if ((err = crdt__apply_to_fresh(doc, data, len)) != 0) {
        crdt_doc_free(doc);
        return err;
    }
    *out = doc;
    return 0;
}

int crdt_doc_load_trusted(uint64_t client, const crdt_alloc_t *alloc, const uint8_t *data,
                          size_t len, crdt_doc_t **out)
{
    crdt_doc_t *doc;
    crdt__snap_t *s;
    int err;
    if (out == NULL)
        return CRDT_EINVAL;
    if (data == NULL || len == 0 || data[0] != 2)
        return crdt_doc_load(client, alloc, data, len, out);
    if ((err = crdt_doc_new(client, alloc, &doc)) != 0)
        return err;
    if ((err = crdt__snapshot_parse(&doc->alloc, data, len, &s)) == 0) {
        err = crdt__snapshot_build(doc, s);
        crdt__snapshot_dispose(&doc->alloc, s);
    }
    if (err) {
        crdt_doc_free(doc);
        return err;
    }
    *out = doc;
    return 0;
}

/* ---- versions ----------------------------------------------------------- */

typedef struct {
    uint32_t client, lo, hi;
    uint32_t by; /* local index of the client that deleted them (the first one) */
} range_t;

static int cmp_range(const void *a, const void *b)
{
    const range_t *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The characters deleted at version `v` as sorted, disjoint ranges. */
typedef struct {
    uint32_t *v; /* clock per local client */
    range_t *del;
    size_t ndel, delcap;
} version_t;

static void version_dispose(const crdt_doc_t *doc, version_t *ver)
{
    crdt__tmp_free(&doc->alloc, ver->v, doc->clients.len * sizeof(uint32_t));
    crdt__tmp_free(&doc->alloc, ver->del, ver->delcap * sizeof(range_t));
}

static int version_init(const crdt_doc_t *doc, const uint8_t *data, size_t len, version_t *ver)
{
    bool unknown;
    size_t w = 0;
    int err;
    memset(ver, 0, sizeof(*ver));
    if (data == NULL && len > 0)
        return CRDT_EINVAL;
    if ((err = crdt__decode_sv(doc, data, len, &ver->v, &unknown)) != 0)
        return err;
    if (unknown)
        goto Bad;
    for (uint32_t c = 0; c < doc->clients.len; c++)
        if (ver->v[c] > CLIENT(doc, c).next_clock)
            goto Bad;
    ver->delcap = crdt__delrecs_total(doc);
    ver->del = crdt__tmp_alloc(&doc->alloc, ver->delcap * sizeof(range_t));
    if (ver->del == NULL) {
        version_dispose(doc, ver);
        return CRDT_ENOMEM;
    }
    for (uint32_t c = 0; c < doc->clients.len; c++) {
        for (uint32_t i = 0; i < CLIENT(doc, c).dels.len; i++) {
            const crdt__delrec_t *d = &DELREC(doc, c, i);
            uint32_t vc = ver->v[c], m;
            if (vc <= d->clock)
                break; /* and so are the client's later records */
            m = vc - d->clock < d->len ? vc - d->clock : d->len;
            ver->del[ver->ndel].client = d->tclient;
            ver->del[ver->ndel].lo = d->backward ? d->tlo + d->len - m : d->tlo;
            ver->del[ver->ndel].hi = ver->del[ver->ndel].lo + m;
            ver->del[ver->ndel].by = c;
            ver->ndel++;
        }
    }
    qsort(ver->del, ver->ndel, sizeof(range_t), cmp_range);
    for (size_t i = 0; i < ver->ndel; i++) {
        range_t r = ver->del[i];
        if (w > 0 && ver->del[w - 1].client == r.client && r.lo <= ver->del[w - 1].hi) {
            if (r.hi > ver->del[w - 1].hi)
                ver->del[w - 1].hi = r.hi;
        } else {
            ver->del[w++] = r;
        }
    }
    ver->ndel = w;
    return 0;
Bad:
    version_dispose(doc, ver);
    return CRDT_EVERSION;
}

/* Calls `fn` for each maximal run of characters of item `it` within the item
 * offsets [a0, b0) with the same visibility at the version: [a, b) character
 * offsets, visible or not, and for runs deleted at the version the local index
 * of the client that deleted them (CRDT__NONE otherwise). */
typedef int (*run_fn)(const crdt_doc_t *doc, uint32_t it, uint32_t a, uint32_t b, bool vis,
                      uint32_t by, void *ctx);

static int version_runs_in(const crdt_doc_t *doc, const version_t *ver, uint32_t it, uint32_t a0,
                           uint32_t b0, run_fn fn, void *ctx)
{
    const crdt__item_t *x = &ITEM(doc, it);
    uint32_t lo = x->clock + a0, end = x->clock + b0;
    uint32_t vis_end = ver->v[x->client] < end ? ver->v[x->client] : end;
    size_t a = 0, b = ver->ndel;
    int err;
    if (vis_end <= lo)
        return fn(doc, it, a0, b0, false, CRDT__NONE, ctx);
    /* First deleted range of this client ending after lo. */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        const range_t *r = &ver->del[m];
        if (r->client < x->client || (r->client == x->client && r->hi <= lo))
            a = m + 1;
        else
            b = m;
    }
    while (lo < vis_end) {
        const range_t *r = a < ver->ndel && ver->del[a].client == x->client ? &ver->del[a] : NULL;
        if (r && r->lo <= lo) {
            uint32_t h = r->hi < vis_end ? r->hi : vis_end;
            if ((err = fn(doc, it, lo - x->clock, h - x->clock, false, r->by, ctx)) != 0)
                return err;
            lo = h;
            a++;
        } else {
            uint32_t h = r && r->lo < vis_end ? r->lo : vis_end;
            if ((err = fn(doc, it, lo - x->clock, h - x->clock, true, CRDT__NONE, ctx)) != 0)
                return err;
            lo = h;
        }
    }
    if (vis_end < end)
        return fn(doc, it, vis_end - x->clock, b0, false, CRDT__NONE, ctx);
    return 0;
}

static int version_runs(const crdt_doc_t *doc, const version_t *ver, uint32_t it, run_fn fn,
                        void *ctx)
{
    return version_runs_in(doc, ver, it, 0, ITEM(doc, it).len, fn, ctx);
}

static int for_each_item(const crdt_doc_t *doc, const version_t *ver, run_fn fn, void *ctx)
{
    int err;
    for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(doc, l).next) {
        const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
        for (uint32_t i = 0; i < leaf->n; i++)
            if ((err = version_runs(doc, ver, leaf->items[i], fn, ctx)) != 0)
                return err;
    }
    return 0;
}

static int text_run(const crdt_doc_t *doc, uint32_t it, uint32_t a, uint32_t b, bool vis,
                    uint32_t by, void *ctx)
{
    const crdt__item_t *x = &ITEM(doc, it);
    crdt_buf_t *out = ctx;
    size_t ba, bb;
    int err;
    (void)by;
    if (!vis)
        return 0;
    ba = crdt__utf8_offset(item_text(doc, x), x->ascii, a);
    bb = crdt__utf8_offset(item_text(doc, x), x->ascii, b);
    if ((err = crdt__buf_reserve(out, bb - ba)) != 0)
        return err;
    crdt__put_bytes(out, item_text(doc, x) + ba, bb - ba);
    return 0;
}

int crdt_doc_text_at(const crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *out)
{
    version_t ver;
    crdt_buf_t b;
    int err;
    if (doc == NULL || out == NULL)
        return CRDT_EINVAL;
    if ((err = version_init(doc, version, version_len, &ver)) != 0)
        return err;
    if ((err = crdt__buf_init(doc->out_alloc, &b, doc->utf8_len + 1)) == 0) {
        err = for_each_item(doc, &ver, text_run, &b);
        if (err)
            crdt_buf_dispose(&b);
        else {
            b.base[b.len] = 0;
            *out = b;
        }
    }
    version_dispose(doc, &ver);
    return err;
}

/* ---- comparing two versions ------------------------------------------------ */

typedef struct {
    const version_t *from;
    crdt_span_cb cb;
    void *ctx;
    bool vis_to;     /* visibility at `to` of the run being split by `from` */
    uint32_t by_to;  /* its deleter at `to`, or CRDT__NONE */
    crdt_span_t cur; /* the span being gathered */
    uint32_t cur_author;
    bool have;
    crdt_buf_t text; /* its text */
} compare_t;

static int compare_emit(compare_t *c)
{
    int r;
    if (!c->have)
        return 0;
    c->cur.text = (const char *)c->text.base;
    c->cur.len = c->text.len;
    r = c->cb(c->ctx, &c->cur);
    c->have = false;
    c->text.len = 0;
    return r;
}

static int compare_from_run(const crdt_doc_t *doc, uint32_t it, uint32_t a, uint32_t b,
                            bool vis_from, uint32_t by, void *ctx)
{
    const crdt__item_t *x = &ITEM(doc, it);
    compare_t *c = ctx;
    int kind;
    uint32_t author;
    size_t ba, bb;
    int err;
    (void)by;
    if (vis_from && c->vis_to) {
        kind = CRDT_SPAN_KEPT;
        author = x->client;
    } else if (c->vis_to) {
        kind = CRDT_SPAN_INSERTED;
        author = x->client;
    } else if (vis_from) {
        kind = CRDT_SPAN_DELETED;
        author = c->by_to;
    } else {
        return 0;
    }
    if (c->have && (c->cur.kind != kind || c->cur_author != author) && (err = compare_emit(c)) != 0)
        return err;
    if (!c->have) {
        c->have = true;
        c->cur.kind = kind;
        c->cur.author = author == CRDT__NONE ? 0 : CLIENT(doc, author).id;
        c->cur.units = 0;
        c->cur_author = author;
    }
    ba = crdt__utf8_offset(item_text(doc, x), x->ascii, a);
    bb = crdt__utf8_offset(item_text(doc, x), x->ascii, b);
    if ((err = crdt__buf_reserve(&c->text, bb - ba)) != 0)
        return err;
    crdt__put_bytes(&c->text, item_text(doc, x) + ba, bb - ba);
    c->cur.units += crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, b) -
                    crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, a);
    return 0;
}

static int compare_to_run(const crdt_doc_t *doc, uint32_t it, uint32_t a, uint32_t b, bool vis_to,
                          uint32_t by, void *ctx)
{
    compare_t *c = ctx;
    c->vis_to = vis_to;
    c->by_to = by;
    return version_runs_in(doc, c->from, it, a, b, compare_from_run, c);
}

int crdt_doc_compare(const crdt_doc_t *doc, const uint8_t *from, size_t from_len, const uint8_t *to,
                     size_t to_len, crdt_span_cb cb, void *ctx)
{
    version_t vfrom, vto;
    compare_t c;
    crdt_buf_t cur = {0};
    int err;

    if (doc == NULL || cb == NULL || (from == NULL && from_len > 0))
        return CRDT_EINVAL;
    if (to == NULL) { /* the current state */
        if ((err = crdt_doc_state_vector(doc, &cur)) != 0)
            return err;
        to = cur.base;
        to_len = cur.len;
    }
    if ((err = version_init(doc, from, from_len, &vfrom)) != 0)
        goto Exit;
    if ((err = version_init(doc, to, to_len, &vto)) != 0) {
        version_dispose(doc, &vfrom);
        goto Exit;
    }
    memset(&c, 0, sizeof(c));
    c.from = &vfrom;
    c.cb = cb;
    c.ctx = ctx;
    if ((err = crdt__buf_init(&doc->alloc, &c.text, 64)) == 0) {
        err = for_each_item(doc, &vto, compare_to_run, &c);
        if (err == 0)
            err = compare_emit(&c);
        crdt_buf_dispose(&c.text);
    }
    version_dispose(doc, &vto);
    version_dispose(doc, &vfrom);
Exit:
    crdt_buf_dispose(&cur);
    return err;
}

/* ---- restore -------------------------------------------------------------- */

/* One edit of the restore script, in the current text's UTF-16 indexes. */
typedef struct {
    uint32_t index;
    uint32_t del;      /* units to delete, or 0 for an insert */
    uint32_t text_off; /* insert: bytes in the script's text buffer */
    uint32_t text_bytes;
} edit_t;

typedef struct {
    const crdt_alloc_t *a;
    edit_t *e;
    size_t n, cap;
    crdt_buf_t text;
    uint32_t cur; /* current-text index reached */
} script_t;

static edit_t *script_push(script_t *s)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        edit_t *p = crdt__tmp_alloc(s->a, ncap * sizeof(edit_t));
        if (p == NULL)
            return NULL;
        if (s->n)
            memcpy(p, s->e, s->n * sizeof(edit_t));
        crdt__tmp_free(s->a, s->e, s->cap * sizeof(edit_t));
        s->e = p;
        s->cap = ncap;
    }
    return &s->e[s->n++];
}

static int script_run(const crdt_doc_t *doc, uint32_t it, uint32_t a, uint32_t b, bool vis,
                      uint32_t by, void *ctx)
{
    const crdt__item_t *x = &ITEM(doc, it);
    script_t *s = ctx;
    uint32_t u = crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, b) -
                 crdt__utf8_u16_prefix(item_text(doc, x), x->ascii, a);
    edit_t *last = s->n ? &s->e[s->n - 1] : NULL;
    int err;
    (void)by;
    if (!x->deleted && vis) {
        s->cur += u;
    } else if (!x->deleted && !vis) {
        if (last && last->del && last->index + last->del == s->cur) {
            last->del += u;
        } else {
            edit_t *e = script_push(s);
            if (e == NULL)
                return CRDT_ENOMEM;
            e->index = s->cur;
            e->del = u;
            e->text_off = e->text_bytes = 0;
        }
        s->cur += u;
    } else if (x->deleted && vis) {
        size_t ba = crdt__utf8_offset(item_text(doc, x), x->ascii, a);
        size_t bb = crdt__utf8_offset(item_text(doc, x), x->ascii, b);
        if ((err = crdt__buf_reserve(&s->text, bb - ba)) != 0)
            return err;
        if (last && !last->del && last->index == s->cur &&
            last->text_off + last->text_bytes == s->text.len) {
            last->text_bytes += (uint32_t)(bb - ba);
        } else {
            edit_t *e = script_push(s);
            if (e == NULL)
                return CRDT_ENOMEM;
            e->index = s->cur;
            e->del = 0;
            e->text_off = (uint32_t)s->text.len;
            e->text_bytes = (uint32_t)(bb - ba);
        }
        crdt__put_bytes(&s->text, item_text(doc, x) + ba, bb - ba);
    }
    return 0;
}

/*
 * Restoring works on a copy: the script of edits is applied, from the end of
 * the text backwards so earlier indexes stay valid, to a document loaded from
 * this one's state, and what the copy then has beyond this document's state
 * vector is applied here as one update. That keeps restore all-or-nothing.
 */
int crdt_doc_restore(crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *update)
{
    version_t ver;
    script_t s;
    crdt_doc_t *copy = NULL;
    crdt_buf_t state = {0}, sv = {0}, diff = {0};
    int err;

    if (doc == NULL)
        return CRDT_EINVAL;
    if ((err = version_init(doc, version, version_len, &ver)) != 0)
        return err;
    memset(&s, 0, sizeof(s));
    s.a = &doc->alloc;
    if ((err = crdt__buf_init(doc->out_alloc, &s.text, 64)) != 0)
        goto Exit;
    if ((err = for_each_item(doc, &ver, script_run, &s)) != 0)
        goto Exit;
    if ((err = crdt_doc_encode_state(doc, &state)) != 0 ||
        (err = crdt_doc_load_trusted(crdt_doc_client(doc), &doc->alloc, state.base, state.len,
                                     &copy)) != 0 ||
        (err = crdt_doc_state_vector(doc, &sv)) != 0)
        goto Exit;
    for (size_t i = s.n; i-- > 0;) {
        const edit_t *e = &s.e[i];
        if (e->del)
            err = crdt_doc_delete(copy, e->index, e->del, NULL);
        else
            err = crdt_doc_insert(copy, e->index, (const char *)s.text.base + e->text_off,
                                  e->text_bytes, NULL);
        if (err)
            goto Exit;
    }
    if ((err = crdt_doc_diff(copy, sv.base, sv.len, &diff)) != 0 ||
        (err = crdt_doc_apply_update(doc, diff.base, diff.len)) != 0)
        goto Exit;
    if (update) {
        *update = diff;
        diff.base = NULL;
    }
Exit:
    crdt_buf_dispose(&diff);
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&state);
    crdt_doc_free(copy);
    crdt_buf_dispose(&s.text);
    crdt__tmp_free(&doc->alloc, s.e, s.cap * sizeof(edit_t));
    version_dispose(doc, &ver);
    return err;
}
