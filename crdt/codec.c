/* SPDX-License-Identifier: MIT */
/*
 * codec.c: the binary update format (docs/update-format.md), state vectors and
 * relative positions. Encoders write into buffers sized up front; the decoder
 * treats its input as hostile: every count is bounded by the bytes left, every
 * clock range checked for overflow, all text validated as UTF-8, and nothing is
 * allocated beyond a small multiple of the input size. An update of one
 * operation (a keystroke) takes a fast path both ways: the encoder writes it
 * through a local pointer into a buffer of its exact size, and the decoder
 * reads it without the checked reader, leaving every other or doubtful input
 * to the general decoder; sanitizer builds check both against the general code.
 */
#include "crdt_internal.h"

#include <stdlib.h>

#define FORMAT_VERSION 1
#define SV_VERSION 1

#define OP_KIND_MASK 0x07
/* insert flags */
#define F_LEFT 0x08
#define F_LEFT_SAME 0x10
#define F_RIGHT 0x20
#define F_RIGHT_SAME 0x40
#define F_ASCII 0x80
/* delete flags */
#define F_BACKWARD 0x08
#define F_TARGET_SAME 0x10
#define F_DELETE_MASK (F_BACKWARD | F_TARGET_SAME)

/* Smallest encoding of one operation and one block (for count bounds). */
#define MIN_OP_BYTES 3
#define MIN_BLOCK_BYTES 3

/* Sanitizer builds (tests, fuzz targets) check every fast path against the
 * general code it stands in for. */
#if defined(__SANITIZE_ADDRESS__)
#define CODEC_CROSSCHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CODEC_CROSSCHECK 1
#endif
#endif
#ifndef CODEC_CROSSCHECK
#define CODEC_CROSSCHECK 0
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* Same-client references to earlier clocks use the short delta form. */
static inline bool same_earlier(crdt__id_t o, uint32_t own, uint32_t clock)
{
    return o.client == own && o.clock < clock;
}

/*
 * The encoder's numbering of the clients an update names (its id table), in
 * order of first use. A few operations (a keystroke: one) name at most three
 * clients each, found by a short linear search, so encoding them costs
 * nothing per client of the document; more operations use a table indexed by
 * local client number.
 */
#define REFS_SMALL_OPS 4
typedef struct {
    uint32_t *table;                   /* NULL: small, else NONE or the ref of each client */
    uint32_t used[3 * REFS_SMALL_OPS]; /* small: the clients, in ref order */
    uint32_t n;
} refs_t;

static inline uint32_t ref_of(const refs_t *r, uint32_t c)
{
    if (r->table)
        return r->table[c];
    for (uint32_t i = 0; i < r->n; i++)
        if (r->used[i] == c)
            return i;
    return CRDT__NONE;
}

static inline void ref_use(refs_t *r, uint32_t c)
{
    if (ref_of(r, c) != CRDT__NONE)
        return;
    if (r->table)
        r->table[c] = r->n;
    else
        r->used[r->n] = c;
    r->n++;
}

static void put_origin(crdt_buf_t *b, crdt__id_t o, uint32_t own, uint32_t clock,
                       const refs_t *refs)
{
    if (same_earlier(o, own, clock))
        crdt__put_varint(b, clock - o.clock);
    else {
        crdt__put_varint(b, ref_of(refs, o.client));
        crdt__put_varint(b, o.clock);
    }
}

/* Bytes of `v` (below 2^32) as a varint. */
static ALWAYS_INLINE size_t varint_len(uint32_t v)
{
    return v < 1u << 7 ? 1 : v < 1u << 14 ? 2 : v < 1u << 21 ? 3 : v < 1u << 28 ? 4 : 5;
}

static ALWAYS_INLINE uint8_t *write_varint(uint8_t *p, uint32_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/*
 * One operation (a local edit's update): the same bytes as the general
 * encoder, in a buffer of exactly their size (and the NUL), written through a
 * local pointer. The operation names at most three clients; its own is ref 0.
 */
static ALWAYS_INLINE int encode_one(const crdt_alloc_t *alloc, const crdt__client_t *clients,
                                    const crdt__op_t *op, crdt_buf_t *out)
{
    uint32_t own = op->client, clock = op->clock, used[3], n = 1, i;
    uint32_t ref[3] = {0, 0, 0}; /* of the left origin, the right one, the target */
    uint8_t head;
    size_t size;
    crdt_buf_t b;
    uint8_t *p;

#define REF(c, slot)                                                                               \
    do {                                                                                           \
        for (i = 0; i < n && used[i] != (c); i++)                                                  \
            ;                                                                                      \
        if (i == n)                                                                                \
            used[n++] = (c);                                                                       \
        ref[slot] = i;                                                                             \
    } while (0)
    used[0] = own;
    /* version, the client count, one block of one op: ref 0, clock, count, head */
    size = 1 + 1 + 1 + 1 + varint_len(clock) + 1 + 1;
    if (op->kind == CRDT__OP_INSERT) {
        head = CRDT__OP_INSERT;
        if (op->left.client != CRDT__NONE) {
            REF(op->left.client, 0);
            head |= F_LEFT;
            if (same_earlier(op->left, own, clock)) {
                head |= F_LEFT_SAME;
                size += varint_len(clock - op->left.clock);
            } else {
                size += 1 + varint_len(op->left.clock);
            }
        }
        if (op->right.client != CRDT__NONE) {
            REF(op->right.client, 1);
            head |= F_RIGHT;
            if (same_earlier(op->right, own, clock)) {
                head |= F_RIGHT_SAME;
                size += varint_len(clock - op->right.clock);
            } else {
                size += 1 + varint_len(op->right.clock);
            }
        }
        if (op->text_bytes == op->len)
            head |= F_ASCII;
        else
            size += varint_len(op->len);
        size += varint_len(op->text_bytes) + op->text_bytes;
    } else {
        REF(op->tclient, 2);
        head = CRDT__OP_DELETE | (op->backward ? F_BACKWARD : 0);
        size += varint_len(op->len);
        if (op->tclient == own && op->tlo + op->len <= clock) {
            head |= F_TARGET_SAME;
            size += varint_len(clock - op->tlo);
        } else {
            size += 1 + varint_len(op->tlo);
        }
    }
#undef REF
    size += (size_t)n * 8;
    b.base = alloc->malloc(alloc->ctx, size + 1);
    if (b.base == NULL)
        return CRDT_ENOMEM;
    b._cap = size + 1;
    b._alloc = alloc;
    p = b.base;
    *p++ = FORMAT_VERSION;
    *p++ = (uint8_t)n;
    for (i = 0; i < n; i++, p += 8) {
        uint64_t id = clients[used[i]].id;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(p, &id, 8);
#else
        for (int k = 0; k < 8; k++)
            p[k] = (uint8_t)(id >> (8 * k));
#endif
    }
    *p++ = 1; /* blocks */
    *p++ = 0; /* the block's client: ref 0 */
    p = write_varint(p, clock);
    *p++ = 1; /* operations in the block */
    *p++ = head;
    if (op->kind == CRDT__OP_INSERT) {
        if (head & F_LEFT_SAME) {
            p = write_varint(p, clock - op->left.clock);
        } else if (head & F_LEFT) {
            *p++ = (uint8_t)ref[0];
            p = write_varint(p, op->left.clock);
        }
        if (head & F_RIGHT_SAME) {
            p = write_varint(p, clock - op->right.clock);
        } else if (head & F_RIGHT) {
            *p++ = (uint8_t)ref[1];
            p = write_varint(p, op->right.clock);
        }
        if (!(head & F_ASCII))
            p = write_varint(p, op->len);
        p = write_varint(p, op->text_bytes);
        if (op->text_bytes == 1)
            *p = op->text[0]; /* a typed character */
        else if (op->text_bytes > 0)
            memcpy(p, op->text, op->text_bytes);
        p += op->text_bytes;
    } else {
        p = write_varint(p, op->len);
        if (head & F_TARGET_SAME) {
            p = write_varint(p, clock - op->tlo);
        } else {
            *p++ = (uint8_t)ref[2];
            p = write_varint(p, op->tlo);
        }
    }
    b.len = (size_t)(p - b.base);
    assert(b.len == size);
    b.base[b.len] = 0;
    *out = b;
    return 0;
}

static CRDT__NOINLINE int encode_general(const crdt_alloc_t *alloc, const crdt__client_t *clients,
                                         size_t nids, const crdt__op_t *ops, size_t n,
                                         crdt_buf_t *out)
{
    uint32_t stack_ref[64];
    refs_t refs = {NULL, {0}, 0};
    size_t bound = 32, nblocks = 0, i;
    crdt_buf_t b;
    int err;

    if (n > REFS_SMALL_OPS) {
        refs.table = nids > 64 ? crdt__tmp_alloc(alloc, nids * sizeof(uint32_t)) : stack_ref;
        if (refs.table == NULL)
            return CRDT_ENOMEM;
        for (i = 0; i < nids; i++)
            refs.table[i] = CRDT__NONE;
    }
#define USE(c) ref_use(&refs, c)
    for (i = 0; i < n; i++) {
        const crdt__op_t *op = &ops[i];
        if (i == 0 || op->client != ops[i - 1].client ||
            op->clock != ops[i - 1].clock + ops[i - 1].len) {
            USE(op->client);
            nblocks++;
            bound += 3 * CRDT__VARINT_MAX;
        }
        bound += 1 + 6 * CRDT__VARINT_MAX;
        if (op->kind == CRDT__OP_INSERT) {
            if (op->left.client != CRDT__NONE)
                USE(op->left.client);
            if (op->right.client != CRDT__NONE)
                USE(op->right.client);
            bound += op->text_bytes;
        } else {
            USE(op->tclient);
        }
    }
#undef USE
    bound += (size_t)refs.n * 8;

    err = crdt__buf_init(alloc, &b, bound + 1);
    if (err)
        goto Exit;
    crdt__put_u8(&b, FORMAT_VERSION);
    crdt__put_varint(&b, refs.n);
    if (refs.table == NULL) {
        for (i = 0; i < refs.n; i++)
            crdt__put_u64(&b, clients[refs.used[i]].id);
    } else {
        /* Table in ref order. */
        size_t start = b.len;
        b.len += (size_t)refs.n * 8;
        for (i = 0; i < nids; i++) {
            if (refs.table[i] != CRDT__NONE) {
                size_t save = b.len;
                b.len = start + (size_t)refs.table[i] * 8;
                crdt__put_u64(&b, clients[i].id);
                b.len = save;
            }
        }
    }
    crdt__put_varint(&b, nblocks);
    for (i = 0; i < n;) {
        const crdt__op_t *op = &ops[i];
        size_t j = i + 1;
        while (j < n && ops[j].client == op->client &&
               ops[j].clock == ops[j - 1].clock + ops[j - 1].len)
            j++;
        crdt__put_varint(&b, ref_of(&refs, op->client));
        crdt__put_varint(&b, op->clock);
        crdt__put_varint(&b, j - i);
        for (; i < j; i++) {
            op = &ops[i];
            if (op->kind == CRDT__OP_INSERT) {
                uint8_t head = CRDT__OP_INSERT;
                if (op->left.client != CRDT__NONE)
                    head |=
                        F_LEFT | (same_earlier(op->left, op->client, op->clock) ? F_LEFT_SAME : 0);
                if (op->right.client != CRDT__NONE)
                    head |= F_RIGHT |
                            (same_earlier(op->right, op->client, op->clock) ? F_RIGHT_SAME : 0);
                if (op->text_bytes == op->len)
                    head |= F_ASCII;
                crdt__put_u8(&b, head);
                if (head & F_LEFT)
                    put_origin(&b, op->left, op->client, op->clock, &refs);
                if (head & F_RIGHT)
                    put_origin(&b, op->right, op->client, op->clock, &refs);
                if (!(head & F_ASCII))
                    crdt__put_varint(&b, op->len);
                crdt__put_varint(&b, op->text_bytes);
                crdt__put_bytes(&b, op->text, op->text_bytes);
            } else {
                uint8_t head = CRDT__OP_DELETE | (op->backward ? F_BACKWARD : 0);
                if (op->tclient == op->client && op->tlo + op->len <= op->clock)
                    head |= F_TARGET_SAME;
                crdt__put_u8(&b, head);
                crdt__put_varint(&b, op->len);
                if (head & F_TARGET_SAME)
                    crdt__put_varint(&b, op->clock - op->tlo);
                else {
                    crdt__put_varint(&b, ref_of(&refs, op->tclient));
                    crdt__put_varint(&b, op->tlo);
                }
            }
        }
    }
    b.base[b.len] = 0;
    *out = b;
Exit:
    if (refs.table != NULL && refs.table != stack_ref)
        crdt__tmp_free(alloc, refs.table, nids * sizeof(uint32_t));
    return err;
}

int crdt__encode_ops(const crdt_alloc_t *alloc, const crdt__client_t *clients, size_t nids,
                     const crdt__op_t *ops, size_t n, crdt_buf_t *out)
{
    int err;
    if (n != 1)
        return encode_general(alloc, clients, nids, ops, n, out);
    err = encode_one(alloc, clients, ops, out);
#if CODEC_CROSSCHECK
    if (err == 0) {
        crdt_buf_t g;
        if (encode_general(alloc, clients, nids, ops, n, &g) == 0) {
            if (g.len != out->len || memcmp(g.base, out->base, g.len) != 0)
                abort(); /* the fast path must write the general encoder's bytes */
            crdt_buf_dispose(&g);
        }
    }
#endif
    return err;
}

void crdt__decoded_dispose(const crdt_alloc_t *alloc, crdt__decoded_t *d)
{
    if ((d->ops == NULL || d->ops == d->small_ops) && (d->ids == NULL || d->ids == d->small_ids) &&
        d->owned == NULL) {
        d->ops = NULL;
        d->ids = NULL;
        d->nops = d->opcap = d->nids = d->owned_len = 0;
        return; /* nothing allocated (a small update) */
    }
    if (d->ops != d->small_ops)
        crdt__tmp_free(alloc, d->ops, d->opcap * sizeof(crdt__op_t));
    if (d->ids != d->small_ids)
        crdt__tmp_free(alloc, d->ids, d->nids * sizeof(uint64_t));
    crdt__tmp_free(alloc, d->owned, d->owned_len);
    d->ops = NULL;
    d->ids = NULL;
    d->owned = NULL;
    d->nops = d->opcap = d->nids = d->owned_len = 0;
}

static inline crdt__id_t get_origin(crdt__reader_t *r, bool same, uint32_t own, uint32_t clock,
                                    size_t nids)
{
    crdt__id_t o = CRDT__NOID;
    if (same) {
        uint32_t delta = crdt__get_u32v(r);
        if (!r->err && (delta == 0 || delta > clock))
            r->err = CRDT_EMALFORMED;
        o.client = own;
        o.clock = clock - delta;
    } else {
        uint32_t c = crdt__get_u32v(r);
        o.clock = crdt__get_u32v(r);
        if (!r->err && c >= nids)
            r->err = CRDT_EMALFORMED;
        o.client = c;
    }
    return o;
}

/*
 * The fast path for the usual update, one operation from one client (a
 * keystroke, a paste, a deletion): straight-line reads through a local
 * pointer instead of the checked reader. It accepts only input that the
 * general decoder accepts with the same result, and leaves everything else
 * (other shapes, varints of more than three bytes, and every malformed or
 * refused input) to it, so errors stay exactly those of the general decoder.
 * Returns true when it decoded the update into `d`.
 */
/* Fewer bytes cannot hold one operation (an insert of one byte without
 * origins, or a delete, takes 17 at least). */
#define FAST_MIN_BYTES 17

/* A varint of at most three bytes from [*pp, end), else false. Decodes as
 * crdt__get_u32v() does, overlong forms included. */
static ALWAYS_INLINE bool fast_u21(const uint8_t **pp, const uint8_t *end, uint32_t *v)
{
    const uint8_t *p = *pp;
    size_t left = (size_t)(end - p);
    if (left >= 1 && p[0] < 0x80) {
        *v = p[0];
        *pp = p + 1;
        return true;
    }
    if (left >= 2 && p[1] < 0x80) {
        *v = (uint32_t)(p[0] & 0x7f) | (uint32_t)p[1] << 7;
        *pp = p + 2;
        return true;
    }
    if (left >= 3 && p[2] < 0x80) {
        *v = (uint32_t)(p[0] & 0x7f) | (uint32_t)(p[1] & 0x7f) << 7 | (uint32_t)p[2] << 14;
        *pp = p + 3;
        return true;
    }
    return false;
}

/* An insert's origin as get_origin() reads it, also refusing an origin of the
 * insert's own client at or after its clock; false where the general decoder
 * fails. */
static ALWAYS_INLINE bool fast_origin(const uint8_t **pp, const uint8_t *end, bool same,
                                      uint32_t own, uint32_t clock, uint32_t nids, crdt__id_t *o)
{
    uint32_t a, b;
    if (!same) {
        /* A one-byte ref, as it is below nids, and a clock. */
        if (*pp >= end || (a = **pp) >= nids)
            return false;
        ++*pp;
        if (!fast_u21(pp, end, &b) || (a == own && b >= clock))
            return false;
        o->client = a;
        o->clock = b;
        return true;
    }
    if (!fast_u21(pp, end, &a) || a == 0 || a > clock)
        return false;
    o->client = own;
    o->clock = clock - a;
    return true;
}

static ALWAYS_INLINE bool decode_one(const uint8_t *data, size_t len, crdt__decoded_t *d)
{
    const uint8_t *p = data, *end = data + len;
    crdt__op_t *op = &d->small_ops[0];
    uint32_t nids, client, clock, head, n, i;

    /* Version 1, at most four ids (a one-byte count), one block of one operation. */
    if (len < FAST_MIN_BYTES || p[0] != FORMAT_VERSION)
        return false;
    nids = p[1];
    if (nids == 0 || nids > 4 || len - 2 < 8 * (size_t)nids + 4)
        return false;
    p += 2;
    for (i = 0; i < nids; i++, p += 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(&d->small_ids[i], p, 8);
#else
        d->small_ids[i] = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                          (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
                          (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
#endif
    }
    /* One block (its header's count bound: at least three bytes follow; the
     * four checked above hold the count and the block's client, a one-byte
     * ref as it is below nids) of one operation. */
    if (p[0] != 1 || (client = p[1]) >= nids)
        return false;
    p += 2;
    if (!fast_u21(&p, end, &clock) || end - p < 1 + MIN_OP_BYTES || p[0] != 1)
        return false;
    head = p[1];
    p += 2;
    op->kind = head & OP_KIND_MASK;
    op->client = client;
    op->clock = clock;
    if (op->kind == CRDT__OP_INSERT) {
        size_t cps, u16;
        op->left = CRDT__NOID;
        op->right = CRDT__NOID;
        if (head & F_LEFT) {
            if (!fast_origin(&p, end, head & F_LEFT_SAME, client, clock, nids, &op->left))
                return false;
        } else if (head & F_LEFT_SAME) {
            return false;
        }
        if (head & F_RIGHT) {
            if (!fast_origin(&p, end, head & F_RIGHT_SAME, client, clock, nids, &op->right))
                return false;
        } else if (head & F_RIGHT_SAME) {
            return false;
        }
        if ((head & F_ASCII) && end - p == 2 && p[0] == 1 && p[1] < 0x80) {
            n = op->len = 1; /* a typed ASCII character ends the update */
            u16 = 1;
            p++;
        } else {
            if (!(head & F_ASCII) && !fast_u21(&p, end, &op->len))
                return false;
            if (!fast_u21(&p, end, &n))
                return false;
            if (head & F_ASCII)
                op->len = n;
            /* The text ends the update. */
            if (op->len == 0 || (size_t)(end - p) != n)
                return false;
            if (crdt__utf8_scan(p, n, &cps, &u16) != 0 || cps != op->len)
                return false;
        }
        op->text = p;
        op->text_bytes = n;
        op->u16len = (uint32_t)u16;
        op->tclient = op->tlo = op->backward = 0;
    } else if (op->kind == CRDT__OP_DELETE) {
        if (head & ~(OP_KIND_MASK | F_DELETE_MASK) || !fast_u21(&p, end, &op->len))
            return false;
        if (head & F_TARGET_SAME) {
            uint32_t delta;
            if (!fast_u21(&p, end, &delta) || delta < op->len || delta > clock)
                return false;
            op->tclient = client;
            op->tlo = clock - delta;
        } else if (!fast_u21(&p, end, &op->tclient) || !fast_u21(&p, end, &op->tlo) ||
                   op->tclient >= nids) {
            return false;
        }
        if (p != end || op->len == 0 ||
            (op->tclient == client && (uint64_t)op->tlo + op->len > clock))
            return false;
        /* tlo + len and clock + len stay far below 2^32: all below 2^22. */
        op->backward = (head & F_BACKWARD) ? 1 : 0;
        op->left = op->right = crdt__id(0, 0);
        op->text = NULL;
        op->text_bytes = op->u16len = 0;
    } else {
        return false;
    }
    d->ops = d->small_ops;
    d->nops = 1;
    d->opcap = 4;
    d->ids = d->small_ids;
    d->nids = nids;
    d->owned = NULL;
    d->owned_len = 0;
    return true;
}

static CRDT__NOINLINE int decode_general(const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                                         crdt__decoded_t *out)
{
    crdt__reader_t r = {data, data + len, 0};
    crdt__decoded_t *d = out;
    size_t cap = 0, nblocks, i;
    uint8_t version;

    d->ops = NULL;
    d->ids = NULL;
    d->owned = NULL;
    d->nops = d->opcap = d->nids = d->owned_len = 0;
    if (data == NULL || len == 0)
        return CRDT_EMALFORMED;
    version = crdt__get_u8(&r);
    if (version == 2) {
        crdt__snap_t *s;
        int err = crdt__snapshot_parse(alloc, data, len, &s);
        if (err)
            return err;
        err = crdt__snapshot_to_ops(alloc, s, out);
        crdt__snapshot_dispose(alloc, s);
        return err;
    }
    if (version != FORMAT_VERSION)
        return CRDT_EFORMAT;
    {
        uint64_t n = crdt__get_varint(&r);
        if (r.err || n > crdt__reader_left(&r) / 8)
            return CRDT_EMALFORMED;
        d->nids = (size_t)n;
    }
    d->ids = d->nids <= 4 ? d->small_ids : crdt__tmp_alloc(alloc, d->nids * sizeof(uint64_t));
    if (d->ids == NULL) {
        d->nids = 0;
        return CRDT_ENOMEM;
    }
    for (i = 0; i < d->nids; i++)
        d->ids[i] = crdt__get_u64(&r);
    {
        uint64_t n = crdt__get_varint(&r);
        if (r.err || n > crdt__reader_left(&r) / MIN_BLOCK_BYTES) {
            r.err = CRDT_EMALFORMED;
            goto Exit;
        }
        nblocks = (size_t)n;
    }
    for (size_t blk = 0; blk < nblocks && !r.err; blk++) {
        uint32_t client = crdt__get_u32v(&r);
        uint64_t clock = crdt__get_u32v(&r);
        uint64_t nops = crdt__get_varint(&r);
        if (r.err)
            break;
        if (client >= d->nids || nops == 0 || nops > crdt__reader_left(&r) / MIN_OP_BYTES) {
            r.err = CRDT_EMALFORMED;
            break;
        }
        if (d->nops + nops > cap) {
            size_t ncap = cap * 2 > d->nops + nops ? cap * 2 : d->nops + nops;
            crdt__op_t *p;
            if (d->ops == NULL && ncap <= 4) {
                p = d->small_ops;
                ncap = 4;
            } else if (d->ops == NULL || d->ops == d->small_ops) {
                p = alloc->malloc(alloc->ctx, ncap * sizeof(crdt__op_t));
                if (p && d->nops)
                    memcpy(p, d->ops, d->nops * sizeof(crdt__op_t));
            } else {
                p = alloc->realloc(alloc->ctx, d->ops, cap * sizeof(crdt__op_t),
                                   ncap * sizeof(crdt__op_t));
            }
            if (p == NULL) {
                r.err = CRDT_ENOMEM;
                break;
            }
            d->ops = p;
            cap = ncap;
            d->opcap = cap;
        }
        for (uint64_t k = 0; k < nops && !r.err; k++) {
            crdt__op_t *op = &d->ops[d->nops];
            uint8_t head = crdt__get_u8(&r);
            memset(op, 0, sizeof(*op));
            op->client = client;
            if (clock >= UINT32_MAX) {
                r.err = CRDT_ELIMIT;
                break;
            }
            op->clock = (uint32_t)clock;
            op->kind = head & OP_KIND_MASK;
            if (r.err)
                break;
            if (op->kind == CRDT__OP_INSERT) {
                size_t cps, u16;
                op->left = CRDT__NOID;
                op->right = CRDT__NOID;
                if (head & F_LEFT)
                    op->left = get_origin(&r, head & F_LEFT_SAME, client, op->clock, d->nids);
                else if (head & F_LEFT_SAME)
                    r.err = CRDT_EMALFORMED;
                if (head & F_RIGHT)
                    op->right = get_origin(&r, head & F_RIGHT_SAME, client, op->clock, d->nids);
                else if (head & F_RIGHT_SAME)
                    r.err = CRDT_EMALFORMED;
                if ((op->left.client == client && op->left.clock >= op->clock) ||
                    (op->right.client == client && op->right.clock >= op->clock)) {
                    r.err = CRDT_EMALFORMED; /* an origin must come before its insert */
                    break;
                }
                if (!(head & F_ASCII))
                    op->len = crdt__get_u32v(&r);
                op->text_bytes = crdt__get_u32v(&r);
                if (head & F_ASCII)
                    op->len = op->text_bytes;
                if (r.err)
                    break;
                if (op->len == 0 || op->text_bytes > crdt__reader_left(&r)) {
                    r.err = CRDT_EMALFORMED;
                    break;
                }
                op->text = r.p;
                if (op->text_bytes == 1 && r.p[0] < 0x80) {
                    cps = u16 = 1; /* a typed ASCII character */
                } else if (crdt__utf8_scan(r.p, op->text_bytes, &cps, &u16) != 0) {
                    r.err = CRDT_EMALFORMED;
                    break;
                }
                if (cps != op->len) {
                    r.err = CRDT_EMALFORMED;
                    break;
                }
                op->u16len = (uint32_t)u16;
                r.p += op->text_bytes;
            } else if (op->kind == CRDT__OP_DELETE) {
                if (head & ~(OP_KIND_MASK | F_DELETE_MASK)) {
                    r.err = CRDT_EMALFORMED;
                    break;
                }
                op->backward = (head & F_BACKWARD) ? 1 : 0;
                op->len = crdt__get_u32v(&r);
                if (head & F_TARGET_SAME) {
                    uint32_t delta = crdt__get_u32v(&r);
                    op->tclient = client;
                    if (!r.err && (delta < op->len || delta > op->clock))
                        r.err = CRDT_EMALFORMED;
                    op->tlo = op->clock - delta;
                } else {
                    op->tclient = crdt__get_u32v(&r);
                    op->tlo = crdt__get_u32v(&r);
                    if (!r.err && op->tclient >= d->nids)
                        r.err = CRDT_EMALFORMED;
                }
                if (r.err)
                    break;
                if (op->len == 0 ||
                    (op->tclient == client && (uint64_t)op->tlo + op->len > op->clock)) {
                    r.err = CRDT_EMALFORMED; /* deletes only what came before */
                    break;
                }
                if ((uint64_t)op->tlo + op->len > UINT32_MAX) {
                    r.err = CRDT_ELIMIT;
                    break;
                }
            } else {
                r.err = CRDT_EFORMAT; /* an operation kind of a newer format */
                break;
            }
            if (clock + op->len > UINT32_MAX) {
                r.err = CRDT_ELIMIT;
                break;
            }
            clock += op->len;
            d->nops++;
        }
    }
    if (!r.err && r.p != r.end)
        r.err = CRDT_EMALFORMED;
Exit:
    if (r.err) {
        crdt__decoded_dispose(alloc, d);
        return r.err;
    }
    return 0;
}

#if CODEC_CROSSCHECK
static bool same_op(const crdt__op_t *a, const crdt__op_t *b)
{
    return a->kind == b->kind && a->client == b->client && a->clock == b->clock &&
           a->len == b->len && crdt__id_eq(a->left, b->left) && crdt__id_eq(a->right, b->right) &&
           a->text == b->text && a->text_bytes == b->text_bytes && a->u16len == b->u16len &&
           a->tclient == b->tclient && a->tlo == b->tlo && a->backward == b->backward;
}

/* Sanitizer builds (the tests and fuzz targets) decode every update the
 * fast path took again with the general decoder: it must agree. */
static void crosscheck_one(const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                           const crdt__decoded_t *d)
{
    crdt__decoded_t g;
    if (decode_general(alloc, data, len, &g) != 0)
        abort(); /* the fast path accepted what the general decoder refuses */
    if (g.nids != d->nids || memcmp(g.ids, d->ids, g.nids * sizeof(uint64_t)) != 0 ||
        g.nops != d->nops || g.opcap != d->opcap || g.owned != d->owned ||
        !same_op(&g.ops[0], &d->ops[0]))
        abort();
    crdt__decoded_dispose(alloc, &g);
}
#endif

int crdt__decode_update(const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                        crdt__decoded_t *out)
{
    if (data != NULL && decode_one(data, len, out)) {
#if CODEC_CROSSCHECK
        crosscheck_one(alloc, data, len, out);
#endif
        return 0;
    }
    return decode_general(alloc, data, len, out);
}

int crdt__decode_sv(const crdt_doc_t *doc, const uint8_t *data, size_t len, uint32_t **clocks,
                    bool *unknown_nonzero)
{
    crdt__reader_t r = {data, data + len, 0};
    size_t nc = doc->clients.len;
    uint32_t *c;
    uint64_t n;

    *unknown_nonzero = false;
    c = crdt__tmp_alloc(&doc->alloc, nc * sizeof(uint32_t));
    if (c == NULL)
        return CRDT_ENOMEM;
    memset(c, 0, nc * sizeof(uint32_t));
    if (len == 0 || data == NULL)
        goto Done;
    if (crdt__get_u8(&r) != SV_VERSION) {
        r.err = CRDT_EMALFORMED;
        goto Fail;
    }
    n = crdt__get_varint(&r);
    if (r.err || n > crdt__reader_left(&r) / 9) {
        r.err = CRDT_EMALFORMED;
        goto Fail;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = crdt__get_u64(&r);
        uint32_t clock = crdt__get_u32v(&r);
        uint32_t local;
        if (r.err)
            goto Fail;
        local = crdt__client_find(doc, id);
        if (local == CRDT__NONE) {
            if (clock > 0)
                *unknown_nonzero = true;
        } else if (clock > c[local]) {
            c[local] = clock;
        }
    }
    if (r.p != r.end) {
        r.err = CRDT_EMALFORMED;
        goto Fail;
    }
Done:
    *clocks = c;
    return 0;
Fail:
    crdt__tmp_free(&doc->alloc, c, nc * sizeof(uint32_t));
    return r.err == CRDT_ELIMIT ? CRDT_EMALFORMED : r.err;
}

static int cmp_entry(const void *a, const void *b)
{
    const crdt__client_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Clients are written in ascending replica id order, so replicas that have
 * seen the same operations produce the same bytes. */
int crdt_doc_state_vector(const crdt_doc_t *doc, crdt_buf_t *out)
{
    size_t n = 0;
    crdt__client_t *e;
    crdt_buf_t b;
    int err;
    e = crdt__tmp_alloc(&doc->alloc, doc->clients.len * sizeof(crdt__client_t));
    if (e == NULL)
        return CRDT_ENOMEM;
    for (uint32_t i = 0; i < doc->clients.len; i++)
        if (CLIENT(doc, i).next_clock > 0)
            e[n++] = CLIENT(doc, i);
    qsort(e, n, sizeof(*e), cmp_entry);
    err = crdt__buf_init(doc->out_alloc, &b, 1 + CRDT__VARINT_MAX + n * (8 + 5) + 1);
    if (err == 0) {
        crdt__put_u8(&b, SV_VERSION);
        crdt__put_varint(&b, n);
        for (size_t i = 0; i < n; i++) {
            crdt__put_u64(&b, e[i].id);
            crdt__put_varint(&b, e[i].next_clock);
        }
        b.base[b.len] = 0;
        *out = b;
    }
    crdt__tmp_free(&doc->alloc, e, doc->clients.len * sizeof(crdt__client_t));
    return err;
}

size_t crdt_relpos_encode(const crdt_relpos_t *pos, uint8_t buf[CRDT_RELPOS_MAX])
{
    crdt_buf_t b = {buf, 0, CRDT_RELPOS_MAX, NULL};
    uint8_t head = (uint8_t)(pos->edge & 3) | (pos->assoc < 0 ? 0x10 : 0);
    crdt__put_u8(&b, head);
    if (pos->edge == 0) {
        crdt__put_u64(&b, pos->client);
        crdt__put_varint(&b, pos->clock);
    }
    return b.len;
}

int crdt_relpos_decode(const uint8_t *data, size_t len, crdt_relpos_t *out)
{
    crdt__reader_t r = {data, data + len, 0};
    crdt_relpos_t p;
    uint8_t head;
    if (data == NULL)
        return CRDT_EMALFORMED;
    head = crdt__get_u8(&r);
    memset(&p, 0, sizeof(p));
    if (r.err || (head & ~0x13) || (head & 3) == 3)
        return CRDT_EMALFORMED;
    p.edge = head & 3;
    p.assoc = (head & 0x10) ? CRDT_ASSOC_BEFORE : CRDT_ASSOC_AFTER;
    if (p.edge == 0) {
        p.client = crdt__get_u64(&r);
        p.clock = crdt__get_u32v(&r);
    }
    if (r.err || r.p != r.end)
        return CRDT_EMALFORMED;
    *out = p;
    return 0;
}

int crdt_update_summary(const uint8_t *data, size_t len, const crdt_alloc_t *alloc,
                        crdt_update_summary_t *out)
{
    crdt__decoded_t d;
    crdt_update_summary_t sum = {0, 0, 0, 0};
    int err;
    if (out == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    if (alloc == NULL)
        alloc = &crdt__libc_alloc;
    if ((err = crdt__decode_update(alloc, data, len, &d)) != 0)
        return err;
    for (size_t i = 0; i < d.nops; i++) {
        const crdt__op_t *op = &d.ops[i];
        sum.ops += op->len;
        if (op->kind == CRDT__OP_INSERT)
            sum.inserted += op->u16len;
        else
            sum.deleted += op->len;
    }
    sum.clients = d.nids;
    crdt__decoded_dispose(alloc, &d);
    *out = sum;
    return 0;
}
