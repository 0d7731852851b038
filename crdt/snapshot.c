/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c: the encoded state of a whole document (format version 2, see
 * docs/update-format.md). Unlike an update, which lists operations in clock
 * order for a peer to integrate, a snapshot lists the items in document order,
 * so loading it builds the sequence tree and the id index directly, in linear
 * time, without integrating anything. Every inserted character's text is
 * stored once, item by item in document order (prose compresses better than
 * typing order); loading moves it into each client's arena in clock order.
 *
 * Parsing treats the bytes as hostile: counts are bounded by the bytes left,
 * every client's items and delete records must tile its clocks exactly, text
 * must be valid UTF-8 of the declared lengths, and every origin must name an
 * inserted character. A parsed snapshot is either built into a fresh document
 * (crdt_doc_load) or turned into operations (crdt_doc_apply_update).
 */
#include "crdt_internal.h"
#include "lz.h"

#include <stdlib.h>

#define SNAP_VERSION 2
#define SNAP_F_LZ 0x01
/* Bodies smaller than this are stored as they are. */
#define SNAP_LZ_MIN 256
/* A compressed body may declare at most this many bytes per stream byte, so
 * hostile input cannot make a reader allocate more than a small multiple of
 * its size; a body that compresses better than this is stored as it is. */
#define SNAP_LZ_MAX_RATIO 64

/* item head */
#define I_DELETED 0x01
#define I_CLIENT 0x02
#define I_CLOCK 0x04
#define I_LEFT_SHIFT 3 /* 0 none, 1 previous item's last char, 2 own delta, 3 explicit */
/* right-mode: 0 none, 1 next item's first char, 2 previous item's right, 3 explicit */
#define I_RIGHT_SHIFT 5
#define I_RIGHT_SAME 0x80 /* right-mode 3 as a delta back from this item's clock */
#define I_MASK 0xff
/* delete record head */
#define D_BACKWARD 0x01
#define D_CLIENT 0x02
#define D_TARGET_SAME 0x04
#define D_LEN1 0x08       /* len is 1 and not written */
#define D_JUST_TYPED 0x10 /* target-same with d = 0: deletes what was typed just before */
#define D_MASK 0x1f

static inline uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- encoding ------------------------------------------------------------ */

/* The columns of the items and delete-record sections: each is written as
 * its length and bytes, so similar values sit together and compress well. */
enum { C_HEAD, C_CLIENT, C_CLOCK, C_LEN, C_LEFT, C_RIGHT, NICOLS };
enum { D_HEADC, D_CLIENTC, D_LENC, D_TARGETC, NDCOLS };

static void put_id(crdt_buf_t *b, crdt__id_t id, const uint32_t *ref)
{
    crdt__put_varint(b, ref[id.client]);
    crdt__put_varint(b, id.clock);
}

/* Where an item's clock is written from: right after its left origin when
 * that is the same client's (typing continues there), else where the
 * client's previous item in this list ended. */
static inline uint32_t clock_base(uint32_t client, crdt__id_t left, unsigned lm, uint32_t end)
{
    return (lm == 1 || lm == 3) && left.client == client ? left.clock + 1 : end;
}

/* Column 0 (the heads) is written as it is. The others hold varints and are
 * written as two streams, the first byte of every varint and then the
 * continuation bytes, which compresses markedly better. */
static void put_cols(crdt_buf_t *b, crdt_buf_t *cols, int n)
{
    crdt__put_varint(b, cols[0].len);
    crdt__put_bytes(b, cols[0].base, cols[0].len);
    for (int i = 1; i < n; i++) {
        const uint8_t *p = cols[i].base;
        size_t nfirst = 0, len = cols[i].len;
        for (size_t k = 0; k < len; k++)
            nfirst += k == 0 || p[k - 1] < 0x80;
        crdt__put_varint(b, nfirst);
        for (size_t k = 0; k < len; k++)
            if (k == 0 || p[k - 1] < 0x80)
                crdt__put_u8(b, p[k]);
        crdt__put_varint(b, len - nfirst);
        for (size_t k = 0; k < len; k++)
            if (k > 0 && p[k - 1] >= 0x80)
                crdt__put_u8(b, p[k]);
    }
}

int crdt__snapshot_encode(const crdt_doc_t *doc, int compress, crdt_buf_t *out)
{
    const crdt_alloc_t *a = doc->out_alloc;
    uint32_t nc = doc->clients.len, nref = 0, *ref = NULL, *end = NULL, *order = NULL;
    size_t text = 0, ndel = crdt__delrecs_total(doc), nitems = doc->live_items, body_len;
    crdt_buf_t b = {0}, body = {0}, ic[NICOLS], dc[NDCOLS];
    int err;

    memset(ic, 0, sizeof(ic));
    memset(dc, 0, sizeof(dc));
    ref = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    end = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    order = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    if (!ref || !end || !order) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    /* Clients with operations, numbered in ascending replica id order. */
    for (uint32_t c = 0; c < nc; c++) {
        uint32_t k;
        if (CLIENT(doc, c).next_clock == 0)
            continue;
        k = nref++;
        while (k > 0 && CLIENT(doc, order[k - 1]).id > CLIENT(doc, c).id) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = c;
        text += CLIENT(doc, c).text.len;
    }
    for (uint32_t c = 0; c < nc; c++) {
        ref[c] = CRDT__NONE;
        end[c] = 0;
    }
    for (uint32_t k = 0; k < nref; k++)
        ref[order[k]] = k;
    for (int i = 0; i < NICOLS; i++)
        if ((err = crdt__buf_init(a, &ic[i],
                                  nitems * (i == C_HEAD ? 1 : 2 * CRDT__VARINT_MAX) + 1)) != 0)
            goto Exit;
    for (int i = 0; i < NDCOLS; i++)
        if ((err = crdt__buf_init(a, &dc[i],
                                  ndel * (i == D_HEADC ? 1 : 2 * CRDT__VARINT_MAX) + 1)) != 0)
            goto Exit;

    /* Items in document order. */
    {
        const crdt__item_t *prev = NULL;
        for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(doc, l).next) {
            const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
            for (uint32_t i = 0; i < leaf->n; i++) {
                const crdt__item_t *x = &ITEM(doc, leaf->items[i]);
                const crdt__item_t *next = NULL;
                uint8_t head = x->deleted ? I_DELETED : 0;
                const crdt__id_t xl = crdt__item_left(x), xr = crdt__item_right(x);
                unsigned lm, rm;
                uint32_t base;
                if (i + 1 < leaf->n)
                    next = &ITEM(doc, leaf->items[i + 1]);
                else if (leaf->next != CRDT__NONE)
                    next = &ITEM(doc, SEQ_LEAF(doc, leaf->next).items[0]);
                if (!prev || prev->client != x->client)
                    head |= I_CLIENT;
                if (xl.client == CRDT__NONE)
                    lm = 0;
                else if (prev &&
                         crdt__id_eq(xl, crdt__id(prev->client, prev->clock + prev->len - 1)))
                    lm = 1;
                else if (xl.client == x->client && xl.clock < x->clock)
                    lm = 2;
                else
                    lm = 3;
                if (xr.client == CRDT__NONE)
                    rm = 0;
                else if (next && crdt__id_eq(xr, crdt__id(next->client, next->clock)))
                    rm = 1;
                else if (prev && crdt__id_eq(xr, crdt__item_right(prev)))
                    rm = 2;
                else
                    rm = 3;
                base = clock_base(x->client, xl, lm, end[x->client]);
                if (x->clock != base)
                    head |= I_CLOCK;
                head |= (uint8_t)(lm << I_LEFT_SHIFT | rm << I_RIGHT_SHIFT);
                if (rm == 3 && xr.client == x->client && xr.clock < x->clock)
                    head |= I_RIGHT_SAME;
                crdt__put_u8(&ic[C_HEAD], head);
                if (head & I_CLIENT)
                    crdt__put_varint(&ic[C_CLIENT], ref[x->client]);
                if (lm == 2)
                    crdt__put_varint(&ic[C_LEFT], x->clock - xl.clock);
                else if (lm == 3)
                    put_id(&ic[C_LEFT], xl, ref);
                if (head & I_CLOCK)
                    crdt__put_varint(&ic[C_CLOCK], zigzag((int64_t)x->clock - base));
                crdt__put_varint(&ic[C_LEN], x->len);
                if (head & I_RIGHT_SAME)
                    crdt__put_varint(&ic[C_RIGHT], x->clock - xr.clock);
                else if (rm == 3)
                    put_id(&ic[C_RIGHT], xr, ref);
                end[x->client] = x->clock + x->len;
                prev = x;
            }
        }
    }

    /* Delete records per client in clock order; their clocks are implied:
     * they fill, in order, the clocks no item holds. A record deleting what
     * was typed just before it (the usual backspace) has delta == len. */
    for (uint32_t k = 0, last = CRDT__NONE; k < nref; k++) {
        uint32_t c = order[k], nd = CLIENT(doc, c).dels.len;
        for (uint32_t i = 0; i < nd; i++) {
            const crdt__delrec_t *d = &DELREC(doc, c, i);
            uint8_t head;
            head = (d->backward ? D_BACKWARD : 0) | (c != last ? D_CLIENT : 0) |
                   (d->len == 1 ? D_LEN1 : 0) |
                   (d->tclient == c && d->tlo + d->len <= d->clock ? D_TARGET_SAME : 0);
            if ((head & D_TARGET_SAME) && d->tlo + d->len == d->clock)
                head |= D_JUST_TYPED;
            crdt__put_u8(&dc[D_HEADC], head);
            if (head & D_CLIENT)
                crdt__put_varint(&dc[D_CLIENTC], ref[c]);
            if (!(head & D_LEN1))
                crdt__put_varint(&dc[D_LENC], d->len);
            if (head & D_JUST_TYPED)
                ; /* target implied */
            else if (head & D_TARGET_SAME)
                crdt__put_varint(&dc[D_TARGETC], d->clock - d->tlo - d->len);
            else
                put_id(&dc[D_TARGETC], crdt__id(d->tclient, d->tlo), ref);
            last = c;
        }
    }

    /* The body: text, items, delete records. */
    body_len = text + 2 * CRDT__VARINT_MAX + 2 * (NICOLS + NDCOLS) * CRDT__VARINT_MAX;
    for (int i = 0; i < NICOLS; i++)
        body_len += ic[i].len;
    for (int i = 0; i < NDCOLS; i++)
        body_len += dc[i].len;
    if ((err = crdt__buf_init(a, &body, body_len + 1)) != 0)
        goto Exit;
    /* The text of every item in document order: prose reads on and
     * compresses better than in typing order. */
    for (uint32_t l = 0; l != CRDT__NONE; l = SEQ_LEAF(doc, l).next) {
        const crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
        for (uint32_t i = 0; i < leaf->n; i++) {
            const crdt__item_t *x = &ITEM(doc, leaf->items[i]);
            crdt__put_bytes(&body, crdt__item_text(doc, x), crdt__item_bytes(doc, x));
        }
    }
    crdt__put_varint(&body, nitems);
    put_cols(&body, ic, NICOLS);
    crdt__put_varint(&body, ndel);
    put_cols(&body, dc, NDCOLS);

    if ((err = crdt__buf_init(a, &b, 32 + (size_t)nref * (8 + 2 * CRDT__VARINT_MAX))) != 0)
        goto Exit;
    crdt__put_u8(&b, SNAP_VERSION);
    crdt__put_u8(&b, compress && body.len >= SNAP_LZ_MIN ? SNAP_F_LZ : 0);
    crdt__put_varint(&b, nref);
    for (uint32_t k = 0; k < nref; k++) {
        const crdt__client_t *cl = &CLIENT(doc, order[k]);
        crdt__put_u64(&b, cl->id);
        crdt__put_varint(&b, cl->next_clock);
        crdt__put_varint(&b, cl->text.len);
    }
    if (b.base[1] == SNAP_F_LZ) {
        /* Compressed body: its length, then the stream. */
        size_t mark = b.len, start;
        crdt__put_varint(&b, body.len);
        start = b.len;
        if ((err = crdt__lz_compress_ex(
                 a, body.base, body.len,
                 compress == CRDT__SNAP_LZ_FAST ? CRDT__LZ_FAST : CRDT__LZ_BEST, &b)) != 0)
            goto Exit;
        if (body.len > (b.len - start) * SNAP_LZ_MAX_RATIO) {
            b.len = mark; /* too compressible for readers to accept: store it */
            b.base[1] = 0;
        }
    }
    if (b.base[1] == 0) {
        if ((err = crdt__buf_reserve(&b, body.len)) != 0)
            goto Exit;
        crdt__put_bytes(&b, body.base, body.len);
    }
    b.base[b.len] = 0;
    *out = b;
    b.base = NULL;
Exit:
    crdt_buf_dispose(&b);
    crdt_buf_dispose(&body);
    for (int i = 0; i < NICOLS; i++)
        crdt_buf_dispose(&ic[i]);
    for (int i = 0; i < NDCOLS; i++)
        crdt_buf_dispose(&dc[i]);
    crdt__tmp_free(a, ref, nc * sizeof(uint32_t));
    crdt__tmp_free(a, end, nc * sizeof(uint32_t));
    crdt__tmp_free(a, order, nc * sizeof(uint32_t));
    return err;
}

/* ---- parsing --------------------------------------------------------------- */

/* A parsed item is a document item, so a loaded document adopts the array:
 * clients are snapshot client numbers (the loaded document numbers its
 * clients the same way). Its `leaf` and `slot` are 0 and its `text_off` is
 * unset until the document is built (the offset is in the snapshot's aoff[]
 * until then). */
typedef crdt__item_t snap_item_t;

/* An origin written out explicitly, to be checked against the items once
 * they are sorted by id: it must name an inserted character, and a left
 * origin's item must come before item `i` in document order. */
typedef struct {
    uint32_t client, clock;
    uint32_t i; /* the item's index in document order, | REF_RIGHT */
} snap_ref_t;
#define REF_RIGHT 0x80000000u

/* A parsed delete record is a document's; its client is kept beside it
 * (crdt__snap_t.dclient), so a loaded document whose records are all one
 * client's adopts the array as that client's pool. */
typedef crdt__delrec_t snap_del_t;

typedef struct {
    uint64_t id;
    uint32_t next_clock, text_len;
    const uint8_t *text; /* into `arenas` */
} snap_client_t;

/* An item as the id-order checks need it, packed into 16 bytes (lookups by
 * id are the load's main random accesses): the items sorted by (client,
 * clock) are an array of these, read in order or looked up. */
typedef struct {
    uint32_t client, clock, end; /* its clocks are clock .. end-1 */
    uint32_t idx;                /* its index in document order, | BID_DELETED */
} snap_bid_t;
/* In snap_bid_t.idx: the item's deleted flag (items number below 2^31). */
#define BID_DELETED 0x80000000u
#define BID_IDX(b) ((b).idx & ~BID_DELETED)
#define SNAP_MAX_ITEMS (BID_DELETED - 1)

/* A run of a client's clocks that no item holds (lo < hi). */
typedef struct {
    uint32_t lo, hi;
} gap_t;

struct crdt__snap {
    uint32_t nclients, nitems, ndel;
    snap_client_t *clients;
    snap_item_t *items; /* document order */
    snap_bid_t *bid;    /* the items sorted by (client, clock) */
    /* Per by-id position: the clocks of the item's client before it that no
     * item holds; two items of a client have no gap between them exactly
     * when these are equal. */
    uint32_t *gap;
    /* The same gaps listed, client by client in clock order (place_by_id()
     * notes them): client c's are glist[gfirst[c] .. gfirst[c + 1]). At most
     * one before each item and one after each client's last. */
    gap_t *glist;
    uint32_t *gfirst; /* nclients + 1 entries */
    /* Per item in document order: where its text starts in the body's text
     * (nitems + 1 entries, the last the text's length), then in its client's
     * arena (nitems entries). Compact, so that the passes in id order need
     * not touch the items. */
    uint32_t *toff, *aoff;
    snap_ref_t *refs; /* up to 2 * nitems */
    uint32_t nrefs;
    /* When the clients' clocks are dense enough (see dense_init()): a bitmap
     * of the inserted characters, client c's clock x at bit vbase[c] + x,
     * filled by parse_items() in document order, followed by (at
     * vbits + vwords) a bitmap of the characters of the items flagged
     * deleted; then refs holds only the right origins. NULL otherwise. */
    uint64_t *vbits, *vbase;
    size_t vwords;
    /* With vbits: the bitmap of the deleted characters (vwords words),
     * which parse_dels() fills, checking each target against vbits. */
    uint64_t *vdel;
    snap_del_t *dels;  /* per client in clock order */
    uint32_t *dclient; /* the client of each of dels */
    uint32_t *dcount;  /* per client: its delete records (parse_dels() counts) */
    uint8_t *owned;    /* the decompressed body */
    size_t owned_len;
    uint8_t *arenas; /* every client's text, in clock order */
    size_t arenas_len;
};

void crdt__snapshot_dispose(const crdt_alloc_t *a, crdt__snap_t *s)
{
    if (s == NULL)
        return;
    crdt__tmp_free(a, s->clients, s->nclients * sizeof(snap_client_t));
    crdt__tmp_free(a, s->items, s->nitems * sizeof(snap_item_t));
    crdt__tmp_free(a, s->bid, s->nitems * sizeof(snap_bid_t));
    crdt__tmp_free(a, s->gap, s->nitems * sizeof(uint32_t));
    crdt__tmp_free(a, s->glist, ((size_t)s->nitems + s->nclients) * sizeof(gap_t));
    crdt__tmp_free(a, s->gfirst, ((size_t)s->nclients + 1) * sizeof(uint32_t));
    crdt__tmp_free(a, s->toff, ((size_t)s->nitems + 1) * sizeof(uint32_t));
    crdt__tmp_free(a, s->aoff, s->nitems * sizeof(uint32_t));
    crdt__tmp_free(a, s->refs, 2 * (size_t)s->nitems * sizeof(snap_ref_t));
    crdt__tmp_free(a, s->vbits, 2 * s->vwords * sizeof(uint64_t));
    crdt__tmp_free(a, s->vbase, s->nclients * sizeof(uint64_t));
    crdt__tmp_free(a, s->vdel, s->vdel ? s->vwords * sizeof(uint64_t) : 0);
    crdt__tmp_free(a, s->dels, s->ndel * sizeof(snap_del_t));
    crdt__tmp_free(a, s->dclient, s->ndel * sizeof(uint32_t));
    crdt__tmp_free(a, s->dcount, s->nclients * sizeof(uint32_t));
    crdt__tmp_free(a, s->owned, s->owned_len);
    crdt__tmp_free(a, s->arenas, s->arenas_len);
    crdt__tmp_free(a, s, sizeof(*s));
}

typedef struct {
    uint64_t key;
    uint64_t val;
} kv_t;

/* Index of the lowest set bit at or above `from` in `v`, or 64 if none. */
static unsigned next_bit(uint64_t v, unsigned from)
{
    unsigned b = from;
    if (from >= 64)
        return 64;
    v >>= from;
    if (v == 0)
        return 64;
    while (!(v & 1)) {
        v >>= 1;
        b++;
    }
    return b;
}

/*
 * LSD radix sort of (key, value) pairs, stable. It sorts only on key bits
 * that vary, in digits of up to 11 bits (8 for short arrays, whose count
 * table must stay cheap to clear) starting at a varying bit, so a document of
 * one client with 260,000 clocks takes two passes. `vary` has (at least) the
 * bits in which some two keys differ: the OR of the keys XOR their AND, which
 * the callers gather while they fill the array.
 */
static void sort_kv(kv_t *a, kv_t *tmp, size_t n, uint64_t vary)
{
    unsigned maxbits = n >= 4096 ? 11 : 8, dbits = maxbits, span, passes;
    kv_t *src = a, *dst = tmp;
    size_t count[(1u << 11) + 1];
    /* As few passes as digits of maxbits allow, with the bits spread evenly
     * over them: smaller digits scatter to fewer places at once. */
    if (vary != 0) {
        unsigned lo = next_bit(vary, 0), hi = 63;
        while (!(vary >> hi & 1))
            hi--;
        span = hi - lo + 1;
        passes = (span + maxbits - 1) / maxbits;
        dbits = (span + passes - 1) / passes;
    }
    for (unsigned shift = next_bit(vary, 0); shift < 64; shift = next_bit(vary, shift + dbits)) {
        size_t nb = (size_t)1 << dbits, mask = nb - 1;
        memset(count, 0, (nb + 1) * sizeof(count[0]));
        for (size_t i = 0; i < n; i++)
            count[((src[i].key >> shift) & mask) + 1]++;
        for (size_t k = 0; k < nb; k++)
            count[k + 1] += count[k];
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i].key >> shift) & mask]++] = src[i];
        {
            kv_t *t = src;
            src = dst;
            dst = t;
        }
    }
    if (src != a)
        memcpy(a, src, n * sizeof(kv_t));
}

/*
 * Finds items by id in constant time (typically): the clocks of client c are
 * cut into buckets of 2^shift clocks, with at most about twice as many
 * buckets as the client has items (so the table stays of the size of the
 * item array whatever clocks the header declares), and tab[base + b] is the
 * by-id position of the client's first item ending after bucket b starts;
 * tab[base + nb] is the position after the client's last item. It needs the
 * items sorted by id and not overlapping (place_by_id() checked that).
 */
typedef struct {
    uint32_t next_clock, shift, base, stop; /* stop: after the client's last item */
} idmap_client_t;

typedef struct {
    uint32_t *tab;
    idmap_client_t *cl;
    size_t ntab;
} idmap_t;

static void idmap_dispose(const crdt_alloc_t *a, idmap_t *m, uint32_t nclients)
{
    crdt__tmp_free(a, m->tab, m->ntab * sizeof(uint32_t));
    crdt__tmp_free(a, m->cl, nclients * sizeof(idmap_client_t));
}

CRDT__NOINLINE static int idmap_init(const crdt_alloc_t *a, idmap_t *m, const crdt__snap_t *s)
{
    uint32_t nc = s->nclients, k = 0;
    size_t total = 0;
    memset(m, 0, sizeof(*m));
    if ((m->cl = crdt__tmp_alloc(a, nc * sizeof(idmap_client_t))) == NULL)
        return CRDT_ENOMEM;
    for (uint32_t c = 0; c < nc; c++) {
        idmap_client_t *mc = &m->cl[c];
        uint32_t first = k, sh = 0;
        uint64_t last = s->clients[c].next_clock - 1;
        uint32_t hi = s->nitems;
        /* Its items end at the first position of a later client. */
        while (k < hi) {
            uint32_t mid = k + (hi - k) / 2;
            if (s->bid[mid].client > c)
                hi = mid;
            else
                k = mid + 1;
        }
        /* At most 2 * items + 1 buckets. */
        while ((last >> sh) > 2 * (uint64_t)(k - first))
            sh++;
        mc->next_clock = s->clients[c].next_clock;
        mc->shift = sh;
        mc->base = (uint32_t)total;
        mc->stop = k;
        total += (size_t)(last >> sh) + 2;
    }
    /* total <= 2 * nitems + 3 * nclients, so total * 4 cannot wrap size_t
     * where the items (48 bytes each) and clients were allocated. */
    m->ntab = total;
    if ((m->tab = crdt__tmp_alloc(a, total * sizeof(uint32_t))) == NULL)
        return CRDT_ENOMEM;
    k = 0;
    for (uint32_t c = 0; c < nc; c++) {
        const idmap_client_t *mc = &m->cl[c];
        uint32_t *t = m->tab + mc->base, sh = mc->shift;
        uint64_t nb = ((uint64_t)(mc->next_clock - 1) >> sh) + 1, b = 0,
                 mask = ((uint64_t)1 << sh) - 1;
        /* Item k is the first ending after the starts of buckets b with
         * end(k - 1) <= b << sh < end(k). */
        for (; k < mc->stop; k++)
            for (uint64_t bend = ((uint64_t)s->bid[k].end + mask) >> sh; b < bend; b++)
                t[b] = k;
        for (; b <= nb; b++)
            t[b] = k;
    }
    return 0;
}

/* By-id position of the item of client c holding clock x, or CRDT__NONE. */
static inline uint32_t idmap_find(const idmap_t *m, const snap_bid_t *bid, uint32_t c, uint32_t x)
{
    const idmap_client_t *mc = &m->cl[c];
    const uint32_t *t;
    uint32_t lo, hi;
    if (x >= mc->next_clock)
        return CRDT__NONE;
    t = m->tab + mc->base + (uint32_t)((uint64_t)x >> mc->shift);
    /* The item is the first in [lo, hi] ending after x (hi may be the
     * client's stop: then there is none). */
    lo = t[0];
    /* Usually one of the first few items from there (ends increase, so
     * the first ending after x is the one). */
    for (int step = 0; step < 4; step++, lo++) {
        if (lo >= mc->stop)
            return CRDT__NONE;
        if (bid[lo].end > x)
            return bid[lo].clock <= x ? lo : CRDT__NONE;
    }
    hi = t[1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (bid[mid].end > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo < mc->stop && bid[lo].clock <= x ? lo : CRDT__NONE;
}

/*
 * Checks that every written-out origin and every delete target names inserted
 * characters (a target's characters must be consecutive items' with no gap
 * between them), that an item comes after its left origin in document order,
 * and that an item's deleted flag says what the delete records say: all of its
 * characters deleted, or none. For the last, each target adds one to the items
 * it covers whole (a difference array over by-id positions) and notes the
 * parts of items it covers in part; those (rare) parts are sorted and their
 * union checked per item. Linear time but for that sort. This is the
 * general way, for clocks too sparse for check_refs_dense().
 */
CRDT__NOINLINE static int check_refs_sparse(const crdt_alloc_t *a, const crdt__snap_t *s)
{
    uint32_t n = s->nitems, *diff = NULL;
    const snap_bid_t *bid = s->bid;
    kv_t *part = NULL;
    size_t npart = 0, part_cap = 0;
    idmap_t m;
    int err;
    if ((err = idmap_init(a, &m, s)) != 0)
        goto Exit;
    if ((diff = crdt__tmp_alloc(a, ((size_t)n + 1) * sizeof(uint32_t))) == NULL) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    memset(diff, 0, ((size_t)n + 1) * sizeof(uint32_t));
    err = CRDT_EMALFORMED;
    for (uint32_t r = 0; r < s->nrefs; r++) {
        const snap_ref_t *ref = &s->refs[r];
        uint32_t k = idmap_find(&m, bid, ref->client, ref->clock);
        /* An item comes after its left origin in document order: the
         * integration of any insert puts it there. (Not so for the right
         * origin: an insert whose right origin lies before its left one is
         * integrated after the left one.) */
        if (k == CRDT__NONE || (!(ref->i & REF_RIGHT) && BID_IDX(bid[k]) >= ref->i))
            goto Exit;
    }
    for (uint32_t j = 0; j < s->ndel; j++) {
        const snap_del_t *d = &s->dels[j];
        uint32_t lo = d->tlo, hi = d->tlo + d->len; /* parse_dels() bounded it */
        uint32_t klo = idmap_find(&m, bid, d->tclient, lo), khi = klo, a0, b0;
        if (klo == CRDT__NONE)
            goto Exit;
        if (hi > bid[klo].end) {
            /* Across items: to the one holding hi - 1, with no gap. */
            khi = idmap_find(&m, bid, d->tclient, hi - 1);
            if (khi == CRDT__NONE || s->gap[khi] != s->gap[klo])
                goto Exit;
        }
        /* Items covered whole: a0 .. b0 - 1. */
        a0 = klo + (lo != bid[klo].clock);
        b0 = khi + (hi == bid[khi].end);
        if (a0 < b0) {
            diff[a0]++;
            diff[b0]--;
        }
        if (lo != bid[klo].clock || hi != bid[khi].end) {
            if (part == NULL) {
                /* At most two parts per target, and room to sort them. */
                part_cap = 2 * (size_t)s->ndel;
                if (2 * (uint64_t)part_cap > SIZE_MAX / sizeof(kv_t) ||
                    (part = crdt__tmp_alloc(a, 2 * part_cap * sizeof(kv_t))) == NULL) {
                    part_cap = 0;
                    err = CRDT_ENOMEM;
                    goto Exit;
                }
            }
            if (lo != bid[klo].clock) {
                part[npart].key = (uint64_t)klo << 32 | lo;
                part[npart++].val = hi < bid[klo].end ? hi : bid[klo].end;
            }
            if (hi != bid[khi].end && (khi != klo || lo == bid[klo].clock)) {
                part[npart].key = (uint64_t)khi << 32 | (khi != klo ? bid[khi].clock : lo);
                part[npart++].val = hi;
            }
        }
    }
    if (npart > 0) {
        uint64_t all_or = 0, all_and = ~(uint64_t)0;
        for (size_t p = 0; p < npart; p++) {
            all_or |= part[p].key;
            all_and &= part[p].key;
        }
        sort_kv(part, part + part_cap, npart, all_or ^ all_and);
    }
    {
        uint32_t whole = 0, pk = npart > 0 ? (uint32_t)(part[0].key >> 32) : CRDT__NONE;
        size_t p = 0;
        for (uint32_t k = 0; k < n; k++) {
            whole += diff[k];
            if (k != pk) {
                /* Deleted whole, or nothing deleted. */
                if ((whole != 0) != ((bid[k].idx & BID_DELETED) != 0))
                    goto Exit;
                continue;
            }
            if (!(bid[k].idx & BID_DELETED))
                goto Exit;
            if (whole != 0) {
                while (p < npart && (uint32_t)(part[p].key >> 32) == k)
                    p++;
            } else {
                /* Deleted, so its parts must cover it. */
                uint32_t upto = bid[k].clock;
                for (; p < npart && (uint32_t)(part[p].key >> 32) == k; p++) {
                    if ((uint32_t)part[p].key > upto)
                        goto Exit;
                    if (part[p].val > upto)
                        upto = (uint32_t)part[p].val;
                }
                if (upto != bid[k].end)
                    goto Exit;
            }
            pk = p < npart ? (uint32_t)(part[p].key >> 32) : CRDT__NONE;
        }
    }
    err = 0;
Exit:
    idmap_dispose(a, &m, s->nclients);
    crdt__tmp_free(a, diff, ((size_t)n + 1) * sizeof(uint32_t));
    crdt__tmp_free(a, part, 2 * part_cap * sizeof(kv_t));
    return err;
}

/* Bitmaps over the clocks of every client (client c's clock x is bit
 * base[c] + x): bits_set() sets bits lo .. hi-1 (lo < hi). */
static inline void bits_set(uint64_t *w, uint64_t lo, uint64_t hi)
{
    uint64_t a = lo >> 6, b = (hi - 1) >> 6;
    uint64_t ma = ~(uint64_t)0 << (lo & 63), mb = ~(uint64_t)0 >> (63 - ((hi - 1) & 63));
    if (a == b) {
        w[a] |= ma & mb;
        return;
    }
    w[a] |= ma;
    for (uint64_t k = a + 1; k < b; k++)
        w[k] = ~(uint64_t)0;
    w[b] |= mb;
}

/* Sets bits lo .. lo + len - 1 (len > 0) of w, and of the bitmap of
 * `words` words that follows it if `both`. */
static inline void bits_set2(uint64_t *w, size_t words, uint64_t lo, uint32_t len, bool both)
{
    uint64_t hi = lo + len - 1, a = lo >> 6, b = hi >> 6;
    uint64_t ma = ~(uint64_t)0 << (lo & 63), mb = ~(uint64_t)0 >> (63 - (hi & 63));
    uint64_t *w2 = w + words, m2 = 0 - (uint64_t)both;
    /* Within one word (a == b) the first and last words' masks are both
     * ma & mb, so that no branch tells the cases apart. */
    const uint64_t one = 0 - (uint64_t)(a == b);
    ma &= mb | ~one;
    mb &= ma | ~one;
    w[a] |= ma;
    w2[a] |= ma & m2;
    for (uint64_t k = a + 1; k < b; k++) {
        w[k] = ~(uint64_t)0;
        w2[k] |= m2;
    }
    w[b] |= mb;
    w2[b] |= mb & m2;
}

/*
 * The dense way of checking references, when every client's clocks fit in a
 * bitmap of modest size (at most DENSE_BITS bits per item): parse_items()
 * sets the bits of each item's characters as it reads them in document
 * order, so an item's left origin must already be set when the item is read
 * (that checks both that it names an inserted character and that its item
 * comes earlier in document order), and check_refs_dense() checks the rest
 * against the full bitmap. No lookups by id; every access is sequential or
 * cache-resident. dense_init() allocates the bitmap (or leaves s->vbits
 * NULL for the sparse way).
 */
#ifndef CRDT_SNAPSHOT_DENSE_BITS
#define CRDT_SNAPSHOT_DENSE_BITS 256 /* a test build sets 0: always the sparse way */
#endif
#define DENSE_BITS CRDT_SNAPSHOT_DENSE_BITS
static int dense_init(const crdt_alloc_t *a, crdt__snap_t *s)
{
    uint64_t total = 0, limit = DENSE_BITS * ((uint64_t)s->nitems + 1);
    for (uint32_t c = 0; c < s->nclients && total <= limit; c++)
        total += ((uint64_t)s->clients[c].next_clock + 63) & ~(uint64_t)63;
    if (total > limit || total / 64 + 1 > SIZE_MAX / sizeof(uint64_t) / 2)
        return 0;
    if ((s->vbase = crdt__tmp_alloc(a, s->nclients * sizeof(uint64_t))) == NULL)
        return CRDT_ENOMEM;
    s->vwords = (size_t)(total / 64) + 1;
    if ((s->vbits = crdt__tmp_alloc(a, 2 * s->vwords * sizeof(uint64_t))) == NULL) {
        s->vwords = 0;
        return CRDT_ENOMEM;
    }
    memset(s->vbits, 0, 2 * s->vwords * sizeof(uint64_t));
    total = 0;
    for (uint32_t c = 0; c < s->nclients; c++) {
        s->vbase[c] = total;
        total += ((uint64_t)s->clients[c].next_clock + 63) & ~(uint64_t)63;
    }
    return 0;
}

/* Whether client c's clock x is set in the dense bitmap (false for a client
 * or clock out of range: the ids come from the state). */
static inline bool clock_set(const crdt__snap_t *s, uint32_t c, uint32_t x)
{
    uint64_t bit;
    if (c >= s->nclients || x >= s->clients[c].next_clock)
        return false;
    bit = s->vbase[c] + x;
    return s->vbits[bit >> 6] >> (bit & 63) & 1;
}

/*
 * The rest of the dense check (see dense_init()), once every item's bits are
 * set: right origins name inserted characters, and the deleted characters,
 * collected by parse_dels() in another bitmap (each target within its
 * client's clocks), are exactly the characters of the items flagged deleted
 * (the bitmap that parse_items() set). That makes every item's deleted flag
 * true (all of its characters deleted, or none) and every delete target name
 * inserted characters only (exactly "consecutive items with no gap"), as
 * the flagged characters are inserted ones.
 */
CRDT__NOINLINE static int check_refs_dense(const crdt_alloc_t *a, const crdt__snap_t *s)
{
    const uint64_t *flagged = s->vbits + s->vwords, *del = s->vdel;
    (void)a;
    for (uint32_t r = 0; r < s->nrefs; r++) {
        if (!clock_set(s, s->refs[r].client, s->refs[r].clock))
            return CRDT_EMALFORMED; /* not an inserted character */
    }
    /* The items do not overlap (place_by_id()), so the
     * flagged characters are those of whole items. */
    for (size_t w = 0; w < s->vwords; w++)
        if (del[w] != flagged[w])
            return CRDT_EMALFORMED;
    return 0;
}

static int check_refs(const crdt_alloc_t *a, const crdt__snap_t *s)
{
    return s->vbits ? check_refs_dense(a, s) : check_refs_sparse(a, s);
}

/*
 * A column of the items or delete-record sections (see put_cols()): the
 * first byte of every varint at p .. end, their continuation bytes at
 * q .. qend, read without putting them back together. The head column has no
 * continuation bytes and is read a byte at a time. Errors stick (every one
 * refuses the state), and varints follow crdt__reader_t's rules (at most 10 bytes, 64
 * bits; col_u32() refuses values above 32 bits).
 */
typedef struct {
    const uint8_t *p, *end;
    const uint8_t *q, *qend;
    bool err; /* a bool: stores to the items' uint32_t fields cannot alias it */
} col_t;

static inline uint8_t col_u8(col_t *c)
{
    if (c->p >= c->end) {
        c->err = true;
        return 0;
    }
    return *c->p++;
}

/* The rest of a varint whose first byte `b` (with its high bit set) was
 * just read. */
static uint64_t col_varint_rest(col_t *c, uint8_t b)
{
    uint64_t v = b & 0x7f;
    for (unsigned shift = 7; shift < 64; shift += 7) {
        if (c->q >= c->qend) {
            c->err = true;
            return 0;
        }
        b = *c->q++;
        if (shift == 63 && b > 1)
            break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->err = true;
    return 0;
}

static inline uint64_t col_u64(col_t *c)
{
    uint8_t b = col_u8(c);
    if (b < 0x80)
        return b;
    if (c->qend - c->q >= 2) {
        const uint8_t *q = c->q;
        if (q[0] < 0x80) {
            c->q += 1;
            return (uint64_t)(b & 0x7f) | (uint64_t)q[0] << 7;
        }
        if (q[1] < 0x80) {
            c->q += 2;
            return (uint64_t)(b & 0x7f) | (uint64_t)(q[0] & 0x7f) << 7 | (uint64_t)q[1] << 14;
        }
    }
    return col_varint_rest(c, b);
}

static inline uint32_t col_u32(col_t *c)
{
    uint64_t v = col_u64(c);
    if (v > UINT32_MAX) {
        c->err = true;
        return 0;
    }
    return (uint32_t)v;
}

static crdt__id_t get_id(col_t *r, uint32_t nclients)
{
    crdt__id_t id;
    id.client = col_u32(r);
    id.clock = col_u32(r);
    if (id.client >= nclients) {
        /* The parse fails at the end (the column's error); until then the
         * id names client 0, so it stays a valid index (items name clients
         * in 21 bits). */
        r->err = true;
        id.client = 0;
    }
    return id;
}

static void *alloc_array(const crdt_alloc_t *a, size_t n, size_t size, int *err)
{
    /* Sizes that would wrap size_t (32-bit targets) cannot be had. */
    void *p = size && n > SIZE_MAX / size ? NULL : crdt__tmp_alloc(a, n * size);
    if (p == NULL)
        *err = CRDT_ENOMEM;
    return p;
}

/* Reads the items (document order) from their columns. */
/* Bytes and UTF-16 units of `len` code points at t[0..left), validated. */
static int measure_text(const uint8_t *t, size_t left, uint32_t len, size_t *bytes_out,
                        size_t *u16_out)
{
    size_t bytes = 0, u16 = 0;
    uint32_t i = 0;
    if (len <= left) {
        /* ASCII runs: eight bytes at a time. */
        for (; i + 8 <= len; i += 8) {
            uint64_t w;
            memcpy(&w, t + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
        }
        for (; i < len && t[i] < 0x80; i++)
            ;
        if (i == len) {
            *bytes_out = *u16_out = len;
            return 0;
        }
    }
    for (uint32_t cps = 0; cps < len; cps++) {
        size_t c1, u1, k1;
        uint8_t lead;
        if (bytes >= left)
            return CRDT_EMALFORMED;
        lead = t[bytes];
        k1 = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
        if (k1 > left - bytes)
            return CRDT_EMALFORMED;
        if (k1 > 1 && (crdt__utf8_scan(t + bytes, k1, &c1, &u1) != 0 || c1 != 1))
            return CRDT_EMALFORMED;
        if (k1 == 1 && lead >= 0x80)
            return CRDT_EMALFORMED;
        bytes += k1;
        u16 += k1 == 4 ? 2 : 1;
    }
    *bytes_out = bytes;
    *u16_out = u16;
    return 0;
}

/*
 * Reads the items (document order) from their columns. Each item also takes
 * its `len` characters of the text in turn (noting where they start in
 * s->toff), explicit origins are queued in s->refs for check_refs(), and its
 * sort key by id goes to kv[i] (*vary: the key bits in which some two keys
 * differ, for sort_kv()). A right origin "the next item" is resolved, and
 * checked, when that item is read. The loop keeps what it needs of the
 * previous item and of the current client in locals: a column read that
 * fails yields 0 and is reported after the loop, every value is range
 * checked before it is used, so nothing here reads out of bounds meanwhile.
 */
/* v with every bit below its highest set bit set too. */
static inline uint32_t smear32(uint32_t v)
{
    v |= v >> 1;
    v |= v >> 2;
    v |= v >> 4;
    v |= v >> 8;
    return v | v >> 16;
}

#if defined(__GNUC__)
#define SNAP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SNAP_ALWAYS_INLINE inline
#endif
static SNAP_ALWAYS_INLINE int parse_items_as(col_t *col, crdt__snap_t *s, uint32_t *end,
                                             const uint8_t *text, size_t total, kv_t *kv,
                                             uint64_t *vary, bool ascii, bool dense)
{
    const uint32_t n = s->nitems, nclients = s->nclients;
    snap_item_t *items = s->items;
    uint32_t *toff = s->toff;
    snap_ref_t *refs = s->refs;
    uint32_t nrefs = 0;
    uint64_t *vbits = dense ? s->vbits : NULL;
    const uint64_t *vbase = s->vbase;
    const size_t vwords = s->vwords;
    col_t cclient = col[C_CLIENT], cclock = col[C_CLOCK], clen = col[C_LEN];
    col_t cleft = col[C_LEFT], cright = col[C_RIGHT];
    /* The current client, where its previous item ended, its clock limit
     * and (dense) where its clocks start in the bitmaps. */
    uint32_t client = CRDT__NONE, cend = 0, climit = 0;
    uint64_t cbase = 0;
    /* The previous item: its client, clock, length and right origin as read
     * (client CRDT__NONE - 1: the next item, not yet resolved). */
    uint32_t pclient = CRDT__NONE, pclock = 0, plen = 0;
    crdt__id_t pright = CRDT__NOID;
    uint64_t all_or = 0, all_and = ~(uint64_t)0;
    size_t pos = 0;
    /* The head column holds exactly one byte per item (the caller checked). */
    const uint8_t *heads = col[C_HEAD].p;
    col[C_HEAD].p = col[C_HEAD].end;
    /* The first item names its client and has no previous item to refer
     * to (so the loop need not check). */
    if (n > 0 && (!(heads[0] & I_CLIENT) || ((heads[0] >> I_LEFT_SHIFT) & 3) == 1 ||
                  ((heads[0] >> I_RIGHT_SHIFT) & 3) == 2))
        return CRDT_EMALFORMED;
    for (uint32_t c = 0; c < nclients; c++)
        end[c] = 0;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned head = heads[i];
        const unsigned lm = (head >> I_LEFT_SHIFT) & 3, rm = (head >> I_RIGHT_SHIFT) & 3;
        const uint16_t deleted = (uint16_t)(head & I_DELETED);
        crdt__id_t left = CRDT__NOID, right = CRDT__NOID;
        uint32_t len, tbytes;
        int64_t clock;
        uint64_t key;
        if (head & I_CLIENT) {
            uint32_t c = col_u32(&cclient);
            if (c >= nclients)
                return CRDT_EMALFORMED;
            if (client != CRDT__NONE)
                end[client] = cend;
            client = c;
            cend = end[c];
            climit = s->clients[c].next_clock;
            if (dense)
                cbase = vbase[c];
        }
        /* The left origin first: the clock may be written relative to it. */
        if (lm == 1) {
            left = crdt__id(pclient, pclock + plen - 1);
        } else if (lm == 3) {
            left = get_id(&cleft, nclients);
        }
        clock = clock_base(client, left, lm, cend);
        if (head & I_CLOCK) {
            uint64_t z = col_u64(&cclock);
            if (z > 2 * (uint64_t)UINT32_MAX + 1)
                return CRDT_EMALFORMED; /* no clock is that far off */
            clock += unzigzag(z);
        }
        len = col_u32(&clen);
        if (clock < 0 || len == 0 || (uint64_t)clock + len > climit)
            return CRDT_EMALFORMED;
        cend = (uint32_t)clock + len;
        if (lm == 2) {
            uint32_t d = col_u32(&cleft);
            if (d == 0 || d > clock)
                return CRDT_EMALFORMED;
            left = crdt__id(client, (uint32_t)clock - d);
        }
        if (rm == 1) {
            right.client = CRDT__NONE - 1; /* the next item: resolved below */
        } else if (rm == 2) {
            right = pright;
        } else if (rm == 3 && (head & I_RIGHT_SAME)) {
            uint32_t d = col_u32(&cright);
            if (d == 0 || d > clock)
                return CRDT_EMALFORMED;
            right = crdt__id(client, (uint32_t)clock - d);
        } else if (rm == 3) {
            right = get_id(&cright, nclients);
        }
        if ((head & I_RIGHT_SAME) && rm != 3)
            return CRDT_EMALFORMED;
        /* The previous item's right origin may be this item (read after
         * this item's rm 2 copied it, so such a copy is resolved to the next
         * item in turn). */
        if (pright.client == CRDT__NONE - 1) {
            if (client == pclient && clock >= pclock)
                return CRDT_EMALFORMED;
            crdt__item_set_right(&items[i - 1], crdt__id(client, (uint32_t)clock));
        }
        /* Origins come before the insert: never the client's own later
         * clocks (the same rule updates follow). */
        if ((left.client == client && left.clock >= clock) ||
            (right.client == client && right.clock >= clock))
            return CRDT_EMALFORMED;
        /* Its text (ASCII: not read here, so the length is checked once, at
         * the end). */
        if (ascii) {
            tbytes = len;
        } else {
            size_t bytes, units;
            if (measure_text(text + pos, total - pos, len, &bytes, &units) != 0)
                return CRDT_EMALFORMED;
            tbytes = (uint32_t)bytes;
            (void)units; /* the sequence tree counts them when it is built */
        }
        toff[i] = (uint32_t)pos;
        pos += tbytes;
        if (dense) {
            /* Dense: the left origin's item came earlier (its bits are
             * set), then this item's characters are set. */
            if (lm == 2) {
                /* own client, an earlier clock: in range */
                uint64_t bit = cbase + left.clock;
                if (!(vbits[bit >> 6] >> (bit & 63) & 1))
                    return CRDT_EMALFORMED;
            } else if (lm == 3 && !clock_set(s, left.client, left.clock)) {
                return CRDT_EMALFORMED;
            }
            bits_set2(vbits, vwords, cbase + (uint64_t)clock, len, deleted);
        } else if (lm >= 2) {
            refs[nrefs++] = (snap_ref_t){left.client, left.clock, i};
        }
        if (rm == 3)
            refs[nrefs++] = (snap_ref_t){right.client, right.clock, i | REF_RIGHT};
        key = (uint64_t)client << 32 | (uint64_t)clock;
        kv[i].key = key;
        kv[i].val = (uint64_t)len << 32 | i | (deleted ? BID_DELETED : 0);
        if (!dense) {
            all_or |= key;
            all_and &= key;
        }
        /* leaf, slot and text_off are set when the document is built */
        {
            snap_item_t *x = &items[i];
            x->client = client;
            x->clock = (uint32_t)clock;
            x->len = len;
            x->ascii = tbytes == len;
            crdt__item_set_left(x, left);
            /* (an unresolved right origin is set with the next item) */
            crdt__item_set_right(x, right.client == CRDT__NONE - 1 ? CRDT__NOID : right);
            x->place = 0;
            x->deleted = deleted;
        }
        pclient = client;
        pclock = (uint32_t)clock;
        plen = len;
        pright = right;
    }
    if (pright.client == CRDT__NONE - 1 || pos != total)
        return CRDT_EMALFORMED;
    /* A column read past its end (or a bad varint, or a client out of
     * range) is reported now. */
    if (cclient.err || cclock.err || clen.err || cleft.err || cright.err)
        return CRDT_EMALFORMED;
    col[C_CLIENT] = cclient;
    col[C_CLOCK] = cclock;
    col[C_LEN] = clen;
    col[C_LEFT] = cleft;
    col[C_RIGHT] = cright;
    toff[n] = (uint32_t)pos;
    s->nrefs = nrefs;
    if (dense) {
        /* Dense clocks are few: every bit of a client number or clock in
         * range may vary (enough for sort_kv()), and the loop need not
         * gather them. */
        uint32_t maxclock = 0;
        for (uint32_t c = 0; c < nclients; c++)
            if (s->clients[c].next_clock > maxclock)
                maxclock = s->clients[c].next_clock;
        all_or = (uint64_t)smear32(nclients - 1) << 32 | smear32(maxclock - 1);
        all_and = 0;
    }
    *vary = all_or ^ all_and;
    return 0;
}

/* parse_items_as() made for the common case (ASCII text, dense clocks), so
 * that the loop carries neither test, and for the others. */
CRDT__NOINLINE static int parse_items(col_t *col, crdt__snap_t *s, uint32_t *end,
                                      const uint8_t *text, size_t total, kv_t *kv, uint64_t *vary)
{
    bool ascii = crdt__utf8_is_ascii(text, total);
    if (ascii && s->vbits != NULL)
        return parse_items_as(col, s, end, text, total, kv, vary, true, true);
    return parse_items_as(col, s, end, text, total, kv, vary, ascii, s->vbits != NULL);
}

/*
 * Sorts the items by (client, clock) into s->bid (linear: sort_kv() on the
 * packed keys parse_items() put in kv[0 .. nitems), each item's length and
 * deleted flag riding along with its index; s->bid, not yet written and as
 * large, serves as the sort's scratch space) and, in the same pass, notes the
 * gaps (s->gap) and places their text: per client in clock order, the items
 * must not overlap and their text (at s->toff[], in document order) is copied
 * into the client's arena, which must come out exactly text_len bytes long;
 * s->aoff[] records where each item's text went. The gaps are also listed
 * (s->glist, s->gfirst) for parse_dels().
 */
CRDT__NOINLINE static int place_by_id(const crdt_alloc_t *a, crdt__snap_t *s, kv_t *kv,
                                      uint64_t vary, const uint8_t *text, size_t total,
                                      uint32_t *used)
{
    size_t off = 0;
    const uint8_t *arena_end;
    uint32_t client = CRDT__NONE, end = 0, gap = 0, ng = 0, next = 0;
    gap_t *g;
    uint32_t *gfirst;
    if ((s->arenas = crdt__tmp_alloc(a, total)) == NULL)
        return CRDT_ENOMEM;
    s->arenas_len = total;
    if ((s->gap = crdt__tmp_alloc(a, (size_t)s->nitems * sizeof(uint32_t))) == NULL ||
        (s->glist = crdt__tmp_alloc(a, ((size_t)s->nitems + s->nclients) * sizeof(gap_t))) ==
            NULL ||
        (s->gfirst = crdt__tmp_alloc(a, ((size_t)s->nclients + 1) * sizeof(uint32_t))) == NULL)
        return CRDT_ENOMEM;
    g = s->glist;
    gfirst = s->gfirst;
    for (uint32_t c = 0; c < s->nclients; c++) {
        s->clients[c].text = s->arenas + off;
        off += s->clients[c].text_len;
        used[c] = 0;
    }
    arena_end = s->arenas + total;
    _Static_assert(sizeof(snap_bid_t) >= sizeof(kv_t), "s->bid is the sort's scratch space");
    sort_kv(kv, (kv_t *)(void *)s->bid, s->nitems, vary);
    {
        /* The items come client by client: the current one's arena, how
         * much of it is filled and its size are kept at hand. */
        const uint32_t *toff = s->toff;
        uint32_t *aoff = s->aoff, *gaps = s->gap, cused = 0, csize = 0;
        snap_bid_t *bid = s->bid;
        uint8_t *arena = NULL;
        for (uint32_t k = 0, n = s->nitems; k < n; k++) {
            uint32_t c = (uint32_t)(kv[k].key >> 32), clock = (uint32_t)kv[k].key;
            uint32_t idx = (uint32_t)kv[k].val & ~BID_DELETED, from = toff[idx];
            uint32_t bytes = toff[idx + 1] - from;
            uint8_t *dst;
            size_t span;
            if (c != client) {
                if (client != CRDT__NONE) {
                    used[client] = cused;
                    if (end < s->clients[client].next_clock)
                        g[ng++] = (gap_t){end, s->clients[client].next_clock};
                }
                /* (next: the first client not yet listed) */
                for (; next < c; next++) {
                    gfirst[next] = ng;
                    g[ng++] = (gap_t){0, s->clients[next].next_clock}; /* no items */
                }
                gfirst[c] = ng;
                next = c + 1;
                client = c;
                end = gap = 0;
                arena = (uint8_t *)s->clients[c].text;
                csize = s->clients[c].text_len;
                cused = 0;
            } else if (clock < end) {
                return CRDT_EMALFORMED; /* overlaps the client's previous item */
            }
            /* A gap before it (stored anyway, kept if there is one: no
             * branch to mispredict; there is room, as ng <= k + client). */
            g[ng] = (gap_t){end, clock};
            ng += clock > end;
            gap += clock - end;
            bid[k].client = c;
            bid[k].clock = clock;
            gaps[k] = gap;
            bid[k].end = end = clock + (uint32_t)(kv[k].val >> 32); /* bounded by parse_items() */
            bid[k].idx = (uint32_t)kv[k].val;
            if (bytes > csize - cused)
                return CRDT_EMALFORMED;
            dst = arena + cused;
            span = bytes <= 32 ? 32 : ((size_t)bytes + 15) & ~(size_t)15;
            if (total - from >= span && (size_t)(arena_end - dst) >= span) {
                /* In 16-byte chunks, two whatever the length (most items
                 * are shorter). Items are copied in arena order, so what
                 * this writes past the item's text is overwritten by the
                 * items after it. */
                memcpy(dst, text + from, 16);
                memcpy(dst + 16, text + from + 16, 16);
                for (size_t o = 32; o < bytes; o += 16)
                    memcpy(dst + o, text + from + o, 16);
            } else {
                memcpy(dst, text + from, bytes);
            }
            aoff[idx] = cused;
            cused += bytes;
        }
        if (client != CRDT__NONE) {
            used[client] = cused;
            if (end < s->clients[client].next_clock)
                g[ng++] = (gap_t){end, s->clients[client].next_clock};
        }
        for (; next < s->nclients; next++) {
            gfirst[next] = ng;
            g[ng++] = (gap_t){0, s->clients[next].next_clock}; /* no items */
        }
        gfirst[s->nclients] = ng;
    }
    for (uint32_t c = 0; c < s->nclients; c++)
        if (used[c] != s->clients[c].text_len)
            return CRDT_EMALFORMED;
    return 0;
}

/*
 * Reads the delete records. Their clocks fill, per client and in order, the
 * clocks no item holds (the gaps place_by_id() listed): each record takes
 * the next clocks of its client's current gap
 * and moves to the next gap once one is full; afterwards every gap must be
 * full. `fill` and `at` (per client) are scratch: the client's fill point and
 * current gap. As in parse_items(), column read errors are reported after
 * the loop.
 */
CRDT__NOINLINE static int parse_dels(col_t *col, crdt__snap_t *s, uint32_t *fill, uint32_t *at)
{
    const uint32_t nclients = s->nclients;
    snap_del_t *dels = s->dels;
    uint32_t *dclient = s->dclient;
    col_t cclient = col[D_CLIENTC], clen = col[D_LENC], ctarget = col[D_TARGETC];
    const gap_t *g = s->glist; /* listed by place_by_id() */
    const uint32_t *gfirst = s->gfirst;
    int err = CRDT_EMALFORMED;
    /* The current client: its fill point, current gap's end, gap and the
     * first gap of the next client. */
    uint32_t client = CRDT__NONE, cfill = 0, gend = 0, gi = 0, glast = 0;
    uint32_t *dcount = s->dcount;
    /* Dense clocks: the deleted characters are collected, each target
     * within its client's clocks; check_refs_dense() then finds them all
     * characters of items (flagged deleted). */
    const bool dense = s->vbits != NULL;
    const uint64_t *vbase = s->vbase;
    uint64_t *del = s->vdel;
    for (uint32_t c = 0; c < nclients; c++) {
        dcount[c] = 0;
        at[c] = gfirst[c];
        fill[c] = gfirst[c + 1] > gfirst[c] ? g[gfirst[c]].lo : 0;
    }
    /* The head column holds exactly one byte per record (the caller checked). */
    const uint8_t *heads = col[D_HEADC].p;
    col[D_HEADC].p = col[D_HEADC].end;
    for (uint32_t i = 0, nd = s->ndel; i < nd; i++) {
        snap_del_t *d = &dels[i];
        uint8_t head = heads[i];
        uint32_t len;
        if (head & ~D_MASK)
            goto Exit;
        if ((head & D_JUST_TYPED) && !(head & D_TARGET_SAME))
            goto Exit;
        if (head & D_CLIENT) {
            uint32_t c = col_u32(&cclient);
            if (c >= nclients)
                goto Exit;
            if (client != CRDT__NONE) {
                fill[client] = cfill;
                at[client] = gi;
            }
            client = c;
            cfill = fill[c];
            gi = at[c];
            glast = gfirst[c + 1];
            gend = gi < glast ? g[gi].hi : cfill;
        } else if (client == CRDT__NONE) {
            goto Exit; /* the first record names its client */
        }
        len = (head & D_LEN1) ? 1 : col_u32(&clen);
        if (cfill == gend) {
            /* This gap is full: the next one. */
            if (gi + 1 >= glast)
                goto Exit; /* more delete records than free clocks */
            gi++;
            cfill = g[gi].lo;
            gend = g[gi].hi;
        }
        if (len == 0 || len > gend - cfill)
            goto Exit;
        dclient[i] = client;
        d->clock = cfill;
        d->len = len;
        d->backward = (head & D_BACKWARD) != 0;
        dcount[client]++;
        cfill += len;
        if (head & D_TARGET_SAME) {
            uint32_t delta = (head & D_JUST_TYPED) ? 0 : col_u32(&ctarget);
            if (len > d->clock || delta > d->clock - len)
                goto Exit; /* the target starts before clock 0 */
            d->tclient = client;
            d->tlo = d->clock - len - delta; /* below the client's next clock */
        } else {
            crdt__id_t t = get_id(&ctarget, nclients);
            if ((uint64_t)t.clock + len > UINT32_MAX ||
                (t.client == client && t.clock + len > d->clock))
                goto Exit;
            if (dense &&
                (t.client >= nclients || (uint64_t)t.clock + len > s->clients[t.client].next_clock))
                goto Exit;
            d->tclient = t.client;
            d->tlo = t.clock;
        }
        if (dense) {
            uint64_t lo = vbase[d->tclient] + d->tlo;
            bits_set(del, lo, lo + len);
        }
    }
    if (client != CRDT__NONE) {
        fill[client] = cfill;
        at[client] = gi;
    }
    if (cclient.err || clen.err || ctarget.err)
        goto Exit;
    col[D_CLIENTC] = cclient;
    col[D_LENC] = clen;
    col[D_TARGETC] = ctarget;
    /* Every gap full: each client at its last gap's end. */
    for (uint32_t c = 0; c < nclients; c++)
        if (gfirst[c] < gfirst[c + 1] &&
            (at[c] != gfirst[c + 1] - 1 || fill[c] != g[gfirst[c + 1] - 1].hi))
            goto Exit;
    err = 0;
Exit:
    return err;
}

/*
 * Every operation must be reachable in causal order, as crdt_doc_apply_update()
 * would apply them; otherwise (a dependency cycle between clients) the state is
 * refused, as applying it would hold those operations forever. This walks each
 * client's operations in clock order, advancing a client while its next
 * operation's origins or delete targets are already reached, until nothing
 * moves.
 */
static int check_causal(const crdt_alloc_t *a, const crdt__snap_t *s)
{
    uint32_t nc = s->nclients, *front, *icur, *dcur, *dend, *dorder;
    int err = 0;
    bool progress = true;
    /* With one client, parse_items() and parse_dels() already made every
     * reference name an earlier clock, and the clocks tile: it holds. */
    if (nc <= 1)
        return 0;
    front = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    icur = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    dcur = crdt__tmp_alloc(a, (nc + 1) * sizeof(uint32_t));
    dend = crdt__tmp_alloc(a, nc * sizeof(uint32_t));
    dorder = crdt__tmp_alloc(a, s->ndel * sizeof(uint32_t));
    if (!front || !icur || !dcur || !dend || !dorder) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    /* Delete records grouped by client (counting sort keeps clock order). */
    memset(dcur, 0, (nc + 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < s->ndel; i++)
        dcur[s->dclient[i] + 1]++;
    for (uint32_t c = 0; c < nc; c++)
        dcur[c + 1] += dcur[c];
    for (uint32_t c = 0; c < nc; c++)
        dend[c] = dcur[c];
    for (uint32_t i = 0; i < s->ndel; i++)
        dorder[dend[s->dclient[i]]++] = i;
    for (uint32_t c = 0, k = 0; c < nc; c++) {
        front[c] = 0;
        icur[c] = k;
        while (k < s->nitems && s->bid[k].client == c)
            k++;
    }
    while (progress) {
        progress = false;
        for (uint32_t c = 0; c < nc; c++) {
            for (;;) {
                const snap_item_t *x =
                    icur[c] < s->nitems ? &s->items[BID_IDX(s->bid[icur[c]])] : NULL;
                if (x && x->client == c && x->clock == front[c]) {
                    crdt__id_t l = crdt__item_left(x), r = crdt__item_right(x);
                    if ((l.client != CRDT__NONE && l.clock >= front[l.client]) ||
                        (r.client != CRDT__NONE && r.clock >= front[r.client]))
                        break;
                    front[c] += x->len;
                    icur[c]++;
                } else if (dcur[c] < dend[c] && s->dels[dorder[dcur[c]]].clock == front[c]) {
                    const snap_del_t *d = &s->dels[dorder[dcur[c]]];
                    if (d->tlo + d->len > front[d->tclient])
                        break;
                    front[c] += d->len;
                    dcur[c]++;
                } else {
                    break;
                }
                progress = true;
            }
        }
    }
    for (uint32_t c = 0; c < nc; c++)
        if (front[c] != s->clients[c].next_clock) {
            err = CRDT_EMALFORMED;
            break;
        }
Exit:
    crdt__tmp_free(a, front, nc * sizeof(uint32_t));
    crdt__tmp_free(a, icur, nc * sizeof(uint32_t));
    crdt__tmp_free(a, dcur, (nc + 1) * sizeof(uint32_t));
    crdt__tmp_free(a, dend, nc * sizeof(uint32_t));
    crdt__tmp_free(a, dorder, s->ndel * sizeof(uint32_t));
    return err;
}

/* Takes a length-prefixed run of bytes off `r`. */
static int get_span(crdt__reader_t *r, crdt__reader_t *span)
{
    uint64_t len = crdt__get_varint(r);
    if (r->err || len > crdt__reader_left(r))
        return CRDT_EMALFORMED;
    span->p = r->p;
    span->end = r->p + len;
    span->err = 0;
    r->p += len;
    return 0;
}

/* Reads the `n` columns of a section (see put_cols()) in place: a varint
 * column is read from its two streams as they are. */
static int get_cols(crdt__reader_t *r, col_t *col, int n)
{
    for (int i = 0; i < n; i++) {
        crdt__reader_t first, rest = {NULL, NULL, 0};
        int err;
        if ((err = get_span(r, &first)) != 0 || (i > 0 && (err = get_span(r, &rest)) != 0))
            return err;
        col[i].p = first.p;
        col[i].end = first.end;
        col[i].q = rest.p;
        col[i].qend = rest.end;
        col[i].err = false;
    }
    return 0;
}

/* Were the columns read exactly to their ends? */
static bool cols_done(const col_t *col, int n)
{
    for (int i = 0; i < n; i++)
        if (col[i].err || col[i].p != col[i].end || col[i].q != col[i].qend)
            return false;
    return true;
}

int crdt__snapshot_parse(const crdt_alloc_t *a, const uint8_t *data, size_t len, crdt__snap_t **out)
{
    crdt__reader_t r = {data, data + len, 0};
    col_t icol[NICOLS], dcol[NDCOLS];
    crdt__snap_t *s;
    uint32_t *tmp = NULL, *aux = NULL;
    size_t total_text = 0;
    kv_t *kv = NULL;
    uint64_t vary = 0;
    const uint8_t *doc_text;
    uint8_t flags;
    uint64_t n;
    int err = 0;

    if (data == NULL || len < 2 || data[0] != SNAP_VERSION)
        return CRDT_EMALFORMED;
    s = crdt__tmp_alloc(a, sizeof(*s));
    if (s == NULL)
        return CRDT_ENOMEM;
    memset(s, 0, sizeof(*s));
    r.p++;
    flags = crdt__get_u8(&r);
    if (flags & ~SNAP_F_LZ) {
        err = CRDT_EFORMAT;
        goto Fail;
    }
    n = crdt__get_varint(&r);
    if (r.err || n > crdt__reader_left(&r) / 10) {
        err = CRDT_EMALFORMED;
        goto Fail;
    }
    if (n > CRDT__CLIENT_LIMIT) {
        err = CRDT_ELIMIT; /* items name clients in 21 bits */
        goto Fail;
    }
    if ((s->clients = alloc_array(a, (size_t)n, sizeof(snap_client_t), &err)) == NULL)
        goto Fail;
    s->nclients = (uint32_t)n; /* sizes are recorded as soon as memory is held */
    for (uint32_t c = 0; c < s->nclients; c++) {
        snap_client_t *sc = &s->clients[c];
        sc->id = crdt__get_u64(&r);
        sc->next_clock = crdt__get_u32v(&r);
        sc->text_len = crdt__get_u32v(&r);
        total_text += sc->text_len;
        if (r.err || sc->next_clock == 0 || (c > 0 && sc->id <= s->clients[c - 1].id)) {
            err = CRDT_EMALFORMED; /* ids must be distinct, in ascending order */
            goto Fail;
        }
    }
    if (flags & SNAP_F_LZ) {
        /* The body is compressed: its declared size is bounded by what the
         * stream format can expand to, then checked by decompressing. */
        uint64_t body = crdt__get_varint(&r);
        if (r.err || body > (uint64_t)crdt__reader_left(&r) * SNAP_LZ_MAX_RATIO ||
            body > SIZE_MAX / 2) {
            err = CRDT_EMALFORMED;
            goto Fail;
        }
        s->owned_len = (size_t)body;
        if ((s->owned = alloc_array(a, s->owned_len, 1, &err)) == NULL)
            goto Fail;
        if (crdt__lz_decompress(r.p, crdt__reader_left(&r), s->owned, s->owned_len) != 0) {
            err = CRDT_EMALFORMED;
            goto Fail;
        }
        r.p = s->owned;
        r.end = s->owned + s->owned_len;
    }
    if (total_text > crdt__reader_left(&r)) {
        err = CRDT_EMALFORMED;
        goto Fail;
    }
    if (total_text > UINT32_MAX) {
        err = CRDT_ELIMIT; /* text offsets are 32 bits */
        goto Fail;
    }
    doc_text = r.p;
    r.p += total_text;

    /* Items: one head byte each, so the head column's length is the count. */
    n = crdt__get_varint(&r);
    if ((err = get_cols(&r, icol, NICOLS)) != 0)
        goto Fail;
    if (n != (size_t)(icol[C_HEAD].end - icol[C_HEAD].p)) {
        err = CRDT_EMALFORMED;
        goto Fail;
    }
    if (n > SNAP_MAX_ITEMS) {
        err = CRDT_ELIMIT;
        goto Fail;
    }
    if ((s->items = alloc_array(a, (size_t)n, sizeof(snap_item_t), &err)) == NULL)
        goto Fail;
    s->nitems = (uint32_t)n;
    if ((s->bid = alloc_array(a, (size_t)n, sizeof(snap_bid_t), &err)) == NULL)
        goto Fail;
    if ((tmp = alloc_array(a, s->nclients, sizeof(uint32_t), &err)) == NULL ||
        (aux = alloc_array(a, s->nclients, sizeof(uint32_t), &err)) == NULL)
        goto Fail;
    if ((kv = alloc_array(a, (size_t)n, sizeof(kv_t), &err)) == NULL ||
        (s->toff = alloc_array(a, (size_t)n + 1, sizeof(uint32_t), &err)) == NULL ||
        (s->aoff = alloc_array(a, (size_t)n, sizeof(uint32_t), &err)) == NULL ||
        (s->refs = alloc_array(a, 2 * (size_t)n, sizeof(snap_ref_t), &err)) == NULL)
        goto Fail;
    if ((err = dense_init(a, s)) != 0)
        goto Fail;
    if ((err = parse_items(icol, s, aux, doc_text, total_text, kv, &vary)) != 0 ||
        !cols_done(icol, NICOLS)) {
        err = err ? err : CRDT_EMALFORMED;
        goto Fail;
    }
    if ((err = place_by_id(a, s, kv, vary, doc_text, total_text, aux)) != 0)
        goto Fail;
    crdt__tmp_free(a, kv, (size_t)n * sizeof(kv_t));
    kv = NULL;
    crdt__tmp_free(a, s->toff, ((size_t)n + 1) * sizeof(uint32_t));
    s->toff = NULL;

    n = crdt__get_varint(&r);
    if ((err = get_cols(&r, dcol, NDCOLS)) != 0)
        goto Fail;
    if (n != (size_t)(dcol[D_HEADC].end - dcol[D_HEADC].p)) {
        err = CRDT_EMALFORMED;
        goto Fail;
    }
    s->ndel = (uint32_t)n; /* the size of both arrays, for the dispose */
    if ((s->dels = alloc_array(a, (size_t)n, sizeof(snap_del_t), &err)) == NULL ||
        (s->dclient = alloc_array(a, (size_t)n, sizeof(uint32_t), &err)) == NULL)
        goto Fail;
    if ((s->dcount = alloc_array(a, s->nclients, sizeof(uint32_t), &err)) == NULL)
        goto Fail;
    if (s->vbits) {
        if ((s->vdel = alloc_array(a, s->vwords, sizeof(uint64_t), &err)) == NULL)
            goto Fail;
        memset(s->vdel, 0, s->vwords * sizeof(uint64_t));
    }
    if ((err = parse_dels(dcol, s, tmp, aux)) != 0 || !cols_done(dcol, NDCOLS) || r.p != r.end) {
        err = err ? err : CRDT_EMALFORMED;
        goto Fail;
    }
    crdt__tmp_free(a, s->glist, ((size_t)s->nitems + s->nclients) * sizeof(gap_t));
    s->glist = NULL;
    crdt__tmp_free(a, s->gfirst, ((size_t)s->nclients + 1) * sizeof(uint32_t));
    s->gfirst = NULL;
    /* Everything is read out of the body (the text is in the arenas): its
     * memory can serve the checks and the build. */
    crdt__tmp_free(a, s->owned, s->owned_len);
    s->owned = NULL;
    s->owned_len = 0;
    if ((err = check_refs(a, s)) != 0 || (err = check_causal(a, s)) != 0)
        goto Fail;
    crdt__tmp_free(a, s->refs, 2 * (size_t)s->nitems * sizeof(snap_ref_t));
    s->refs = NULL;
    crdt__tmp_free(a, tmp, s->nclients * sizeof(uint32_t));
    crdt__tmp_free(a, aux, s->nclients * sizeof(uint32_t));
    *out = s;
    return 0;
Fail:
    crdt__tmp_free(a, tmp, s->nclients * sizeof(uint32_t));
    crdt__tmp_free(a, aux, s->nclients * sizeof(uint32_t));
    crdt__tmp_free(a, kv, (size_t)s->nitems * sizeof(kv_t));
    crdt__snapshot_dispose(a, s);
    return err ? err : CRDT_EMALFORMED;
}

/* ---- use -------------------------------------------------------------------- */

int crdt__snapshot_to_ops(const crdt_alloc_t *a, crdt__snap_t *s, crdt__decoded_t *d)
{
    size_t n = (size_t)s->nitems + s->ndel, k = 0;
    memset(d, 0, sizeof(*d));
    d->ids = crdt__tmp_alloc(a, s->nclients * sizeof(uint64_t));
    d->ops = crdt__tmp_alloc(a, n * sizeof(crdt__op_t));
    if (!d->ids || !d->ops) {
        crdt__tmp_free(a, d->ids, s->nclients * sizeof(uint64_t));
        crdt__tmp_free(a, d->ops, n * sizeof(crdt__op_t));
        memset(d, 0, sizeof(*d));
        return CRDT_ENOMEM;
    }
    d->nids = s->nclients;
    d->opcap = n;
    for (uint32_t c = 0; c < s->nclients; c++)
        d->ids[c] = s->clients[c].id;
    for (uint32_t i = 0; i < s->nitems; i++) {
        uint32_t idx = BID_IDX(s->bid[i]);
        const snap_item_t *x = &s->items[idx];
        crdt__op_t *op = &d->ops[k++];
        memset(op, 0, sizeof(*op));
        op->kind = CRDT__OP_INSERT;
        op->client = x->client;
        op->clock = x->clock;
        op->len = x->len;
        op->left = crdt__item_left(x);
        op->right = crdt__item_right(x);
        op->text = s->clients[x->client].text + s->aoff[idx];
        op->text_bytes = op->u16len = x->len;
        if (!x->ascii) {
            size_t bytes = 0, units = 0;
            const snap_client_t *sc = &s->clients[x->client];
            /* (checked by the parse: cannot fail) */
            measure_text(op->text, sc->text_len - s->aoff[idx], x->len, &bytes, &units);
            op->text_bytes = (uint32_t)bytes;
            op->u16len = (uint32_t)units;
        }
    }
    for (uint32_t i = 0; i < s->ndel; i++) {
        const snap_del_t *x = &s->dels[i];
        crdt__op_t *op = &d->ops[k++];
        memset(op, 0, sizeof(*op));
        op->kind = CRDT__OP_DELETE;
        op->client = s->dclient[i];
        op->clock = x->clock;
        op->len = x->len;
        op->tclient = x->tclient;
        op->tlo = x->tlo;
        op->backward = x->backward;
    }
    d->nops = k;
    /* The operations' text lives in the arenas. */
    d->owned = s->arenas;
    d->owned_len = s->arenas_len;
    s->arenas = NULL;
    s->arenas_len = 0;
    return 0;
}

/* Number of nodes of each size when `count` children are spread evenly over
 * nodes of at most `fan`. */
static uint32_t groups_of(uint32_t count, uint32_t fan)
{
    return (count + fan - 1) / fan;
}

static uint32_t group_size(uint32_t count, uint32_t groups, uint32_t g)
{
    return count / groups + (g < count % groups ? 1 : 0);
}

/* Builds the sequence tree over items 0 .. n-1, already in document order. */
static void build_seq(crdt_doc_t *doc, const crdt__snap_t *s, uint32_t n)
{
    const uint32_t flag = ~crdt__item_place(CRDT__NO_LEAF, CRDT__SEQ_LEAF - 1);
    uint32_t nleaves = n ? groups_of(n, CRDT__SEQ_LEAF) : 1, first = 0, level, count;
    uint32_t it = 0;
    uint32_t vis_len = 0; /* summed in registers */
    size_t utf8_len = 0;
    for (uint32_t j = 0; j < nleaves; j++) {
        uint32_t l = j == 0 ? 0 : crdt__pool_take(&doc->seq_leaves);
        crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, l);
        uint32_t m = n ? group_size(n, nleaves, j) : 0;
        assert(l == j);
        leaf->parent = CRDT__NONE;
        leaf->pslot = 0;
        leaf->n = m;
        leaf->prev = j == 0 ? CRDT__NONE : j - 1;
        leaf->next = j + 1 < nleaves ? j + 1 : CRDT__NONE;
        for (uint32_t i = 0; i < m; i++, it++) {
            crdt__item_t *x = &ITEM(doc, it);
            /* masks, not branches: deleted items come in no pattern */
            uint32_t keep = (uint32_t)(x->deleted != 0) - 1u, u16 = x->len, bytes = x->len;
            x->text_off = s->aoff[it];
            if (!x->ascii) { /* count its UTF-16 units and bytes */
                size_t b = 0, u = 0;
                measure_text(crdt__item_text(doc, x), CLIENT(doc, x->client).text.len - s->aoff[it],
                             x->len, &b, &u);
                u16 = (uint32_t)u;
                bytes = (uint32_t)b;
            }
            leaf->items[i] = it;
            leaf->vis[i] = u16 & keep;
            vis_len += u16 & keep;
            utf8_len += bytes & keep;
            x->place = (x->place & flag) | crdt__item_place(l, i);
        }
    }
    doc->vis_len += vis_len;
    doc->utf8_len += utf8_len;
    /* Inner levels, bottom-up: the children of a level are consecutive node
     * indexes starting at `first`. */
    count = nleaves;
    level = 0;
    while (count > 1) {
        uint32_t groups = groups_of(count, CRDT__SEQ_FAN), child = first;
        uint32_t start = doc->seq_inners.len;
        for (uint32_t g = 0; g < groups; g++) {
            uint32_t p = crdt__pool_take(&doc->seq_inners);
            crdt__seq_inner_t *in = &SEQ_INNER(doc, p);
            in->parent = CRDT__NONE;
            in->pslot = 0;
            in->n = group_size(count, groups, g);
            for (uint32_t i = 0; i < in->n; i++, child++) {
                uint32_t v = 0, c = 0;
                in->child[i] = child;
                if (level == 0) {
                    crdt__seq_leaf_t *leaf = &SEQ_LEAF(doc, child);
                    for (uint32_t k = 0; k < leaf->n; k++)
                        v += leaf->vis[k];
                    c = leaf->n;
                    leaf->parent = p;
                    leaf->pslot = i;
                } else {
                    crdt__seq_inner_t *ch = &SEQ_INNER(doc, child);
                    for (uint32_t k = 0; k < ch->n; k++) {
                        v += ch->vis[k];
                        c += ch->cnt[k];
                    }
                    ch->parent = p;
                    ch->pslot = i;
                }
                in->vis[i] = v;
                in->cnt[i] = c;
            }
        }
        first = start;
        count = groups;
        level++;
    }
    doc->seq_root = level == 0 ? 0 : first;
    doc->seq_height = level;
    doc->pend_leaf = CRDT__NONE; /* every entry was just summed */
    doc->pend_vis = 0;
}

/* Builds client `c`'s id index from its `n` (> 0) items, s->bid[at ..] in
 * clock order: even leaves, then even inner levels. */
static void build_client_idx(crdt_doc_t *doc, const crdt__snap_t *s, uint32_t c, uint32_t at,
                             uint32_t n)
{
    crdt__client_t *cl = &CLIENT(doc, c);
    uint32_t nleaves = groups_of(n, CRDT__IDX_LEAF), first = doc->idx_leaves.len, level = 0;
    uint32_t count, i = at;
    for (uint32_t lf = 0; lf < nleaves; lf++) {
        crdt__idx_leaf_t *leaf = &IDX_LEAF(doc, crdt__pool_take(&doc->idx_leaves));
        leaf->n = group_size(n, nleaves, lf);
        leaf->next = lf + 1 < nleaves ? first + lf + 1 : CRDT__NONE;
        for (uint32_t m = 0; m < leaf->n; m++, i++) {
            leaf->vals[m] = BID_IDX(s->bid[i]);
        }
    }
    cl->idx_leaf = first + nleaves - 1; /* where the client's next item goes */
    count = nleaves;
    while (count > 1) {
        uint32_t groups = groups_of(count, CRDT__IDX_FAN), child = first;
        uint32_t start = doc->idx_inners.len;
        for (uint32_t g = 0; g < groups; g++) {
            crdt__idx_inner_t *in = &IDX_INNER(doc, crdt__pool_take(&doc->idx_inners));
            in->n = group_size(count, groups, g);
            for (uint32_t k = 0; k < in->n; k++, child++) {
                in->child[k] = child;
                in->keys[k] = level == 0 ? ITEM(doc, IDX_LEAF(doc, child).vals[0]).clock
                                         : IDX_INNER(doc, child).keys[0];
            }
        }
        first = start;
        count = groups;
        level++;
    }
    cl->idx_root = first;
    cl->idx_height = level;
    doc->idx_tall += level > 0;
    doc->idx_count += n;
}

/* The by-id position after the last item of the client of item i (binary
 * search: the items are sorted by client). */
static uint32_t client_run_end(const crdt__snap_t *s, uint32_t i)
{
    uint32_t c = s->bid[i].client, lo = i + 1, hi = s->nitems;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->bid[mid].client == c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Builds every client's id index from the items in id order. */
static void build_idx(crdt_doc_t *doc, const crdt__snap_t *s)
{
    for (uint32_t i = 0, j; i < s->nitems; i = j) {
        j = client_run_end(s, i);
        build_client_idx(doc, s, s->bid[i].client, i, j - i);
    }
}

/* Inner nodes needed above `count` nodes. */
static uint32_t inner_nodes(uint32_t count, uint32_t fan)
{
    uint32_t total = 0;
    while (count > 1) {
        count = groups_of(count, fan);
        total += count;
    }
    return total;
}

int crdt__snapshot_build(crdt_doc_t *doc, crdt__snap_t *s)
{
    const crdt_alloc_t *a = &doc->alloc;
    uint32_t *map = NULL, dels_of = CRDT__NONE; /* the one client holding every record */
    bool adopt_text;
    int err;

    assert(doc->items.len == 0 && doc->clients.len == 1);
    if (s->nitems >= CRDT__IDX_DEL || s->ndel >= CRDT__IDX_DEL)
        return CRDT_ELIMIT;
    map = crdt__tmp_alloc(a, s->nclients * sizeof(uint32_t));
    if (!map) {
        err = CRDT_ENOMEM;
        goto Exit;
    }
    /* The fresh document's client table becomes the snapshot's, in the same
     * order (so ids sort the same way), with this replica appended if new. */
    if ((err = crdt__client_reserve(doc, s->nclients)) != 0)
        goto Exit;
    {
        uint64_t self = CLIENT(doc, doc->self).id;
        uint32_t self_at = CRDT__NONE;
        for (uint32_t i = 0; i < doc->client_hash_cap; i++)
            doc->client_hash[i] = CRDT__NONE;
        doc->clients.len = 0;
        for (uint32_t c = 0; c < s->nclients; c++) {
            map[c] = crdt__client_add(doc, s->clients[c].id);
            assert(map[c] == c); /* items keep snapshot client numbers */
            if (s->clients[c].id == self)
                self_at = map[c];
        }
        doc->self = self_at != CRDT__NONE ? self_at : crdt__client_add(doc, self);
    }
    /* A single client's text arena is adopted as it is (below); others are
     * copied. */
    adopt_text = s->nclients == 1 && s->arenas_len == s->clients[0].text_len && s->arenas_len > 0 &&
                 s->arenas_len <= CRDT__TEXT_MAX;
    for (uint32_t c = adopt_text ? 1 : 0; c < s->nclients; c++)
        if ((err = crdt__text_reserve(doc, map[c], s->clients[c].text_len)) != 0)
            goto Exit;
    {
        uint32_t leaves = s->nitems ? groups_of(s->nitems, CRDT__SEQ_LEAF) : 1;
        uint32_t ileaves = 0, iinners = 0;
        for (uint32_t i = 0, j; i < s->nitems; i = j) {
            uint32_t nl;
            j = client_run_end(s, i);
            nl = groups_of(j - i, CRDT__IDX_LEAF);
            ileaves += nl;
            iinners += inner_nodes(nl, CRDT__IDX_FAN);
        }
        if ((err = crdt__pool_reserve(doc, &doc->seq_leaves, sizeof(crdt__seq_leaf_t),
                                      leaves - 1)) != 0 ||
            (err = crdt__pool_reserve(doc, &doc->seq_inners, sizeof(crdt__seq_inner_t),
                                      inner_nodes(leaves, CRDT__SEQ_FAN))) != 0 ||
            (err = crdt__pool_reserve(doc, &doc->idx_leaves, sizeof(crdt__idx_leaf_t), ileaves)) !=
                0 ||
            (err = crdt__pool_reserve(doc, &doc->idx_inners, sizeof(crdt__idx_inner_t), iinners)) !=
                0)
            goto Exit;
    }
    /* Delete records all of one client are adopted (below); else each
     * client's pool is reserved here and they are copied. */
    for (uint32_t c = 0; c < s->nclients; c++)
        if (s->dcount[c] == s->ndel)
            dels_of = c;
    for (uint32_t c = 0; c < s->nclients && dels_of == CRDT__NONE; c++)
        if (s->dcount[c] > 0 &&
            (err = crdt__pool_reserve(doc, &CLIENT(doc, map[c]).dels, sizeof(crdt__delrec_t),
                                      s->dcount[c])) != 0)
            goto Exit;

    /* Nothing below allocates. */
    for (uint32_t c = 0; c < s->nclients; c++) {
        crdt__client_t *cl = &CLIENT(doc, map[c]);
        cl->next_clock = s->clients[c].next_clock;
        if (adopt_text) {
            crdt__pool_dispose(doc, &cl->text, 1);
            cl->text.base = s->arenas;
            cl->text.len = cl->text.cap = (uint32_t)s->arenas_len;
            doc->mem += s->arenas_len;
            s->arenas = NULL;
            s->arenas_len = 0;
        } else {
            crdt__text_append(doc, map[c], s->clients[c].text, s->clients[c].text_len);
        }
    }
    /* The parsed items become the document's items (same client numbers). */
    if (s->nitems > 0) {
        crdt__pool_dispose(doc, &doc->items, sizeof(crdt__item_t));
        doc->items.base = s->items;
        doc->items.len = doc->items.cap = s->nitems;
        doc->mem += (size_t)s->nitems * sizeof(crdt__item_t);
        s->items = NULL;
    }
    doc->live_items = s->nitems;
    build_seq(doc, s, s->nitems);
    build_idx(doc, s);
    /* The parsed delete records (same client numbers) become their clients'
     * pools, each client's in clock order as parsed. */
    if (dels_of != CRDT__NONE && s->ndel > 0) {
        crdt__pool_t *p = &CLIENT(doc, map[dels_of]).dels;
        crdt__pool_dispose(doc, p, sizeof(crdt__delrec_t));
        p->base = s->dels;
        p->len = p->cap = s->ndel;
        doc->mem += (size_t)s->ndel * sizeof(crdt__delrec_t);
        s->dels = NULL;
    } else {
        for (uint32_t i = 0; i < s->ndel; i++) {
            crdt__pool_t *p = &CLIENT(doc, map[s->dclient[i]]).dels;
            CRDT__AT(*p, crdt__delrec_t, crdt__pool_take(p)) = s->dels[i];
        }
    }
    err = 0;
Exit:
    crdt__tmp_free(a, map, s->nclients * sizeof(uint32_t));
    return err;
}
