/* SPDX-License-Identifier: MIT */
/*
 * lz.c: the compressor for the text in document snapshots, declared in lz.h
 * (used by snapshot.c). LZ77 with a 1 MiB window, found with hash chains and
 * lazy matching, feeds canonical Huffman codes that are rebuilt for every block
 * of 8192 symbols, or stored raw when that is smaller; decoding is table driven
 * and checks every bit of its input. Pure functions: no state outlives a call,
 * the compressor's tables are allocated per call and the decoder's are on the
 * stack, so calls may run concurrently.
 *
 * Stream format (weft's own, deflate-like but not compatible). The stream
 * does not record the decompressed size: the container does. It is a sequence
 * of blocks packed into bits, least significant bit of each byte first; a field
 * of k bits is stored low bit first, a Huffman code most significant code bit
 * first. The last block ends the stream; the bits left in its final byte must
 * be zero and no byte may follow. An empty input is an empty stream (zero
 * blocks). Every block starts:
 *
 *   1 bit   last: 1 on the final block
 *   1 bit   type: 0 stored, 1 Huffman
 *   5 bits  k (0..22), then k bits: the block's decompressed size minus 1
 *
 * A block that is not the last decompresses to at least 4096 bytes (so the
 * decoder's per-block work, mostly filling 8 KiB of tables, stays a small
 * fraction of its output).
 *
 * Stored: zero bits up to the next byte boundary, then the bytes themselves.
 *
 * Huffman: 6 bits NL (0..60): length symbols sent; 6 bits ND (0..40): distance
 * symbols sent; 4 bits NP - 1 (NP 1..16): precode lengths sent; NP 3-bit precode
 * code lengths for the precode symbols in the order 14 15 13 0 7 8 6 9 5 10 4
 * 11 3 12 2 1 (the rest are 0). Then, coded with the precode, the code lengths
 * of the 256 + NL literal/length symbols followed by the ND distance symbols:
 * precode symbols 0..12 are a length, 13 repeats the previous length 3..6 times
 * (2 extra bits), 14 writes 3..10 zeros (3 extra bits), 15 writes 11..138 zeros
 * (7 extra bits); a run may cross from one alphabet into the next but not past
 * the end. Unsent lengths are 0. Codes are canonical (as in deflate: code values
 * increase with (length, symbol)), at most 12 bits (7 for the precode) and
 * complete (Kraft sum exactly 1); the distance code may instead be empty, but
 * only if no length symbol has a code. Then come symbols until the block's size
 * is reached (there is no end-of-block symbol):
 *
 *   literal/length symbol 0..255: that byte;
 *   256 + s (s = 0..59): a match of length 3 + v, where v = s for s < 8 and
 *     otherwise v = ((4 + (s - 8) % 4) << (b - 2)) + (b - 2 extra bits), with
 *     b = 3 + (s - 8) / 4; then a distance symbol t (0..39) gives the distance
 *     1 + d, where d = t for t < 4 and otherwise d = ((2 + t % 2) << (c - 1)) +
 *     (c - 1 extra bits), with c = t / 2. Extra bits follow their symbol.
 *
 * A match copies `length` bytes starting `distance` bytes back (it may overlap
 * its own output; it may reach into earlier blocks but not before the start of
 * the output, and may not run past the end of its block). So a length is 3 to
 * 65538 and a distance 1 to 1048576 (2^20).
 */
#include "lz.h"

/* ---- format constants ------------------------------------------------------ */

#define WBITS 20
#define MIN_MATCH 3
#define MAX_MATCH (MIN_MATCH + 65535)
#define NLIT 256
#define NLENSYM 60
#define NLITLEN (NLIT + NLENSYM)
#define NDIST 40
#define NPRE 16
#define MAXBITS 12    /* literal/length and distance codes */
#define PRE_MAXBITS 7 /* precode */
#define KMAX 22       /* widest block size field */
#define BLOCK_MAX ((size_t)1 << KMAX)
#define BLOCK_MIN 4096 /* smallest block but the last */

static const uint8_t pre_order[NPRE] = {14, 15, 13, 0, 7, 8, 6, 9, 5, 10, 4, 11, 3, 12, 2, 1};

/* ---- little helpers ---------------------------------------------------------- */

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t load_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* Index of the highest set bit of v (v > 0). */
static inline unsigned log2u(uint32_t v)
{
#if defined(__GNUC__)
    return 31u - (unsigned)__builtin_clz(v);
#else
    unsigned b = 0;
    while (v >>= 1)
        b++;
    return b;
#endif
}

/* Number of trailing zero bits of v (v > 0). */
static inline unsigned ctz64(uint64_t v)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(v);
#else
    unsigned b = 0;
    while (!(v & 1)) {
        v >>= 1;
        b++;
    }
    return b;
#endif
}

/* The low `len` bits of `code` reversed (len <= 16): the low 16 bits swapped
 * in halves, then the top `len` of them. */
static inline uint32_t bitrev(uint32_t code, unsigned len)
{
    uint32_t x = code & 0xffff;
    assert(len <= 16);
    x = (x & 0x5555) << 1 | (x >> 1 & 0x5555);
    x = (x & 0x3333) << 2 | (x >> 2 & 0x3333);
    x = (x & 0x0f0f) << 4 | (x >> 4 & 0x0f0f);
    x = (x & 0x00ff) << 8 | x >> 8;
    return x >> (16 - len);
}

/* Length symbol (0..59) of v = length - 3, and its extra bits. */
static inline unsigned len_slot(uint32_t v)
{
    unsigned b;
    if (v < 8)
        return v;
    b = log2u(v);
    return 8 + (b - 3) * 4 + ((v >> (b - 2)) & 3);
}

static inline unsigned len_slot_extra(unsigned s)
{
    return s < 8 ? 0 : (s - 8) / 4 + 1;
}

static inline uint32_t len_slot_base(unsigned s)
{
    return s < 8 ? s : (uint32_t)(4 + (s - 8) % 4) << ((s - 8) / 4 + 1);
}

/* Distance symbol (0..39) of d = distance - 1, and its extra bits. */
static inline unsigned dist_slot(uint32_t d)
{
    unsigned b;
    if (d < 4)
        return d;
    b = log2u(d);
    return 4 + (b - 2) * 2 + ((d >> (b - 1)) & 1);
}

static inline unsigned dist_slot_extra(unsigned t)
{
    return t < 4 ? 0 : t / 2 - 1;
}

static inline uint32_t dist_slot_base(unsigned t)
{
    return t < 4 ? t : (uint32_t)(2 + t % 2) << (t / 2 - 1);
}

/* ---- Huffman code construction ------------------------------------------------- */

/*
 * Sets lens[0..n) to the code lengths of a complete prefix code for `freq`
 * whose lengths are at most `limit`. Fewer than two used symbols are padded
 * with symbol 0 or 1 (so a code always has two symbols unless none is used,
 * when every length is 0). Optimal lengths come from the in-place algorithm of
 * Moffat and Katajainen over the frequencies sorted ascending; lengths over the
 * limit are clamped and the Kraft sum is then brought back to exactly 1 by
 * lengthening the rarest codes and shortening the most frequent ones.
 */
static void build_lengths(const uint32_t *freq, unsigned n, unsigned limit, uint8_t *lens)
{
    uint32_t sym[NLITLEN], a[NLITLEN];
    unsigned m = 0;
    uint32_t kraft, target = 1u << limit;

    memset(lens, 0, n);
    for (unsigned s = 0; s < n; s++) {
        if (freq[s] == 0)
            continue;
        /* insertion sort by (freq, symbol) ascending */
        unsigned j = m++;
        while (j > 0 && freq[sym[j - 1]] > freq[s]) {
            sym[j] = sym[j - 1];
            j--;
        }
        sym[j] = s;
    }
    if (m == 0)
        return;
    if (m == 1) {
        lens[sym[0]] = 1;
        lens[sym[0] == 0 ? 1 : 0] = 1;
        return;
    }
    for (unsigned i = 0; i < m; i++)
        a[i] = freq[sym[i]];

    /* Moffat-Katajainen: first pass builds the tree as parent pointers, the
     * second turns them into internal node depths, the third into leaf
     * depths (a[0], the rarest symbol, gets the deepest). */
    {
        unsigned root = 0, leaf = 2, next;
        a[0] += a[1];
        for (next = 1; next < m - 1; next++) {
            if (leaf >= m || a[root] < a[leaf]) {
                a[next] = a[root];
                a[root++] = next;
            } else {
                a[next] = a[leaf++];
            }
            if (leaf >= m || (root < next && a[root] < a[leaf])) {
                a[next] += a[root];
                a[root++] = next;
            } else {
                a[next] += a[leaf++];
            }
        }
        a[m - 2] = 0;
        for (unsigned i = m - 2; i-- > 0;)
            a[i] = a[a[i]] + 1;
        {
            unsigned avail = 1, used = 0, depth = 0;
            int r = (int)m - 2, nx = (int)m - 1;
            while (avail > 0) {
                while (r >= 0 && a[r] == depth) {
                    used++;
                    r--;
                }
                while (avail > used) {
                    a[nx--] = depth;
                    avail--;
                }
                avail = 2 * used;
                depth++;
                used = 0;
            }
        }
    }

    /* Enforce the limit. a[i] is now the length of sym[i]. */
    kraft = 0;
    for (unsigned i = 0; i < m; i++) {
        if (a[i] > limit)
            a[i] = limit;
        kraft += target >> a[i];
    }
    while (kraft > target) {
        /* lengthen the rarest code that can still grow */
        for (unsigned i = 0; i < m; i++) {
            if (a[i] < limit) {
                a[i]++;
                kraft -= target >> a[i];
                break;
            }
        }
    }
    while (kraft < target) {
        /* shorten the most frequent code whose shortening still fits */
        for (unsigned i = m; i-- > 0;) {
            if (a[i] > 1 && kraft + (target >> a[i]) <= target) {
                kraft += target >> a[i];
                a[i]--;
                break;
            }
        }
    }
    for (unsigned i = 0; i < m; i++)
        lens[sym[i]] = (uint8_t)a[i];
}

/* Canonical codes for lens[0..n), bit-reversed for LSB-first output. */
static void assign_codes(const uint8_t *lens, unsigned n, uint16_t *codes)
{
    uint32_t count[16] = {0}, next[16];
    uint32_t code = 0;

    for (unsigned s = 0; s < n; s++)
        count[lens[s]]++;
    count[0] = 0;
    next[0] = 0;
    for (unsigned l = 1; l < 16; l++) {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
    }
    for (unsigned s = 0; s < n; s++)
        codes[s] = lens[s] ? (uint16_t)bitrev(next[lens[s]]++, lens[s]) : 0;
}

/* ---- compressor ------------------------------------------------------------------ */

/* Symbols per block (at least BLOCK_MIN, as every symbol is at least one
 * byte, and blocks end early only near BLOCK_MAX): small blocks let the codes follow the text
 * (measured best around 4K-8K symbols on prose and source code); each costs a header of a few dozen
 * bytes. */
#define SEQ_MAX 8192
_Static_assert(SEQ_MAX >= BLOCK_MIN && BLOCK_MAX - MAX_MATCH >= BLOCK_MIN, "blocks too small");
/* Inputs larger than this are compressed in independent pieces, so positions
 * fit 32 bits. */
#define PIECE_MAX ((size_t)1 << 30)

/*
 * Match finder. Three tables map a hash of the bytes at a position to the
 * latest position with that hash: head3 (3 bytes), head4 (4 bytes) and headc
 * (CHAIN_BYTES bytes), and prev[] chains every position to the previous one
 * with the same headc hash. Chaining on 6 bytes rather than 4 skips most
 * candidates that could only give short matches, which the single-entry
 * tables cover. The numbers were tuned on prose and C source.
 */
#define CHAIN_BYTES 6
#define CHAIN_MAX 64    /* chain candidates examined per search */
#define NICE_LEN 128    /* a match this long ends the search */
#define LAZY_MAX 64     /* a match this long is taken without looking further */
#define GOOD_LEN 32     /* after a match this long, search a quarter as deep */
#define DIST3_MAX 4096  /* farthest length-3 match worth coding */
#define DIST4_MAX 65536 /* farthest length-4 match worth coding */
#define HASH3_BITS 14   /* table sizes (at most; smaller for small inputs) */
#define HASH4_BITS 15
#define HASHC_BITS 17
#define SKIP_AFTER 256 /* searches without a match before skipping some */
#define SKIP_MAX 32    /* most positions skipped at a time */
/* CRDT__LZ_FAST: chain candidates examined, and the length that ends a search */
#define FAST_CHAIN_MAX 4
#define FAST_NICE_LEN 32

typedef struct {
    uint32_t len;  /* 0 for a literal */
    uint32_t dist; /* the literal byte, or the match distance */
} seq_t;

/* The block being prepared. */
typedef struct {
    uint32_t lfreq[NLITLEN], dfreq[NDIST], pfreq[NPRE];
    uint8_t llen[NLITLEN + NDIST]; /* distance lengths follow the literal/length ones */
    uint8_t plen[NPRE];
    uint16_t lcode[NLITLEN], dcode[NDIST], pcode[NPRE];
    uint8_t rle[NLITLEN + NDIST], rle_extra[NLITLEN + NDIST];
    unsigned nrle, nl, nd, np;
} block_t;

typedef struct {
    const uint8_t *src; /* start of the current piece */
    size_t n;           /* its length */
    uint32_t *headc, *head4, *head3, *prev;
    unsigned hbitsc, hbits4, hbits3;
    uint32_t wmask; /* prev[] has wmask + 1 entries */
    size_t headc_size, head4_size, head3_size, prev_size;
    unsigned chain_max, nice_len; /* CHAIN_MAX and NICE_LEN, or the fast ones */

    seq_t *seq;
    size_t nseq;
    const uint8_t *blk_src; /* the uncompressed bytes of the pending block */
    size_t blk_raw;         /* their number */

    crdt_buf_t *out;
    uint64_t bb; /* bits not yet written to out (fewer than 8) */
    unsigned bc;
    block_t blk;
} enc_t;

/* Positions are stored biased by the window size, so the zeroed tables read as
 * "too far away". */
#define BIAS ((uint32_t)1 << WBITS)

/* Hash of the CHAIN_BYTES bytes at p (8 readable). */
static inline uint32_t hashc(const uint8_t *p, unsigned bits)
{
    return (uint32_t)(((load_le64(p) << (64 - 8 * CHAIN_BYTES)) * 0x9E3779B97F4A7C15ull) >>
                      (64 - bits));
}

static inline uint32_t hash4(const uint8_t *p, unsigned bits)
{
    return (load_le32(p) * 0x9E3779B1u) >> (32 - bits);
}

static inline uint32_t hash3(const uint8_t *p, unsigned bits)
{
    return ((load_le32(p) & 0xffffffu) * 0x9E3779B1u) >> (32 - bits);
}

/* Length of the common prefix of a and b, at most end - b (a < b). */
static inline size_t common_len(const uint8_t *a, const uint8_t *b, const uint8_t *end)
{
    const uint8_t *start = b;
    while (end - b >= 8) {
        uint64_t x = load_le64(a) ^ load_le64(b);
        if (x)
            return (size_t)(b - start) + (ctz64(x) >> 3);
        a += 8;
        b += 8;
    }
    while (b < end && *a == *b) {
        a++;
        b++;
    }
    return (size_t)(b - start);
}

/* Inserts position pos (with at least 8 bytes left) into the hash tables. */
static inline void insert_pos(enc_t *e, uint32_t pos)
{
    const uint8_t *p = e->src + pos;
    uint32_t hc = hashc(p, e->hbitsc);
    e->prev[pos & e->wmask] = e->headc[hc];
    e->headc[hc] = pos + BIAS;
    e->head4[hash4(p, e->hbits4)] = pos + BIAS;
    e->head3[hash3(p, e->hbits3)] = pos + BIAS;
}

/*
 * Inserts pos (with at least 8 bytes left) and looks for a match longer than
 * `min_len` starting there. Returns its length (0 if none) and sets *dist.
 */
static unsigned find_match(enc_t *e, uint32_t pos, unsigned min_len, uint32_t *dist)
{
    const uint8_t *src = e->src, *p = src + pos;
    size_t left = e->n - pos;
    unsigned maxlen = left < MAX_MATCH ? (unsigned)left : MAX_MATCH;
    uint32_t hc = hashc(p, e->hbitsc), h4 = hash4(p, e->hbits4), h3 = hash3(p, e->hbits3);
    uint32_t cand = e->headc[hc], c4 = e->head4[h4], c3 = e->head3[h3];
    uint32_t cur = pos + BIAS, limit = e->wmask; /* farthest distance + 1 */
    unsigned best = min_len < MIN_MATCH - 1 ? MIN_MATCH - 1 : min_len;
    unsigned chain = e->chain_max, nice = e->nice_len;
    uint32_t p4 = load_le32(p);

    e->prev[pos & e->wmask] = cand;
    e->headc[hc] = cur;
    e->head4[h4] = cur;
    e->head3[h3] = cur;
    *dist = 0;
    if (best >= maxlen)
        return 0;
    if (best < 4 && cur - c4 < limit && cur - c4 <= DIST4_MAX &&
        load_le32(src + (c4 - BIAS)) == p4) {
        best = (unsigned)common_len(src + (c4 - BIAS), p, p + maxlen);
        *dist = cur - c4;
    } else if (best < MIN_MATCH && cur - c3 <= DIST3_MAX) {
        const uint8_t *c = src + (c3 - BIAS);
        if (c[0] == p[0] && c[1] == p[1] && c[2] == p[2]) {
            best = MIN_MATCH;
            *dist = cur - c3;
        }
    }
    if (best >= nice || best >= maxlen)
        return *dist ? best : 0;
    if (min_len >= GOOD_LEN)
        chain >>= 2;
    while (cur - cand < limit && chain-- > 0) {
        const uint8_t *c = src + (cand - BIAS);
        if (c[best] == p[best] && load_le32(c) == p4) {
            unsigned len = (unsigned)common_len(c, p, p + maxlen);
            if (len > best) {
                best = len;
                *dist = cur - cand;
                if (len >= nice || len >= maxlen)
                    break;
            }
        }
        cand = e->prev[(cand - BIAS) & e->wmask];
    }
    if (best == 4 && *dist > DIST4_MAX)
        return 0;
    return *dist ? best : 0;
}

/* Bit writer into out->base; room was reserved by the caller. */
typedef struct {
    uint8_t *p;
    uint64_t bb;
    unsigned bc;
} bw_t;

static inline void bw_put(bw_t *w, uint32_t v, unsigned n)
{
    w->bb |= (uint64_t)v << w->bc;
    w->bc += n;
}

static inline void bw_flush(bw_t *w)
{
    store_le64(w->p, w->bb);
    w->p += w->bc >> 3;
    w->bb >>= w->bc & 56;
    w->bc &= 7;
}

/* Run-length codes the concatenated code lengths with the precode alphabet. */
static void rle_lengths(block_t *b)
{
    const uint8_t *l = b->llen;
    unsigned total = b->nl + b->nd, i = 0;

    b->nrle = 0;
    memset(b->pfreq, 0, sizeof(b->pfreq));
#define RLE_EMIT(sym, extra)                                                                       \
    do {                                                                                           \
        b->rle[b->nrle] = (uint8_t)(sym);                                                          \
        b->rle_extra[b->nrle++] = (uint8_t)(extra);                                                \
        b->pfreq[sym]++;                                                                           \
    } while (0)
    while (i < total) {
        unsigned v = l[i], run = 1;
        while (i + run < total && l[i + run] == v)
            run++;
        i += run;
        if (v == 0) {
            while (run >= 11) {
                unsigned r = run < 138 ? run : 138;
                RLE_EMIT(15, r - 11);
                run -= r;
            }
            if (run >= 3) {
                RLE_EMIT(14, run - 3);
                run = 0;
            }
        } else {
            RLE_EMIT(v, 0);
            run--;
            while (run >= 3) {
                unsigned r = run < 6 ? run : 6;
                RLE_EMIT(13, r - 3);
                run -= r;
            }
        }
        while (run-- > 0)
            RLE_EMIT(v, 0);
    }
#undef RLE_EMIT
}

static const uint8_t pre_extra[NPRE] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7};

/* Writes the pending block (nonempty) and empties it. */
static int flush_block(enc_t *e, int last)
{
    block_t *b = &e->blk;
    size_t raw = e->blk_raw, nbytes, n;
    uint64_t hbits, sbits, extra_bits = 0;
    unsigned k = raw > 1 ? log2u((uint32_t)(raw - 1)) + 1 : 0;
    unsigned head = 2 + 5 + k;
    bw_t w;
    int stored;

    assert(raw > 0 && raw <= BLOCK_MAX && (last || raw >= BLOCK_MIN));
    memset(b->lfreq, 0, sizeof(b->lfreq));
    memset(b->dfreq, 0, sizeof(b->dfreq));
    for (size_t i = 0; i < e->nseq; i++) {
        const seq_t *s = &e->seq[i];
        if (s->len == 0) {
            b->lfreq[s->dist]++;
        } else {
            unsigned ls = len_slot(s->len - MIN_MATCH), ds = dist_slot(s->dist - 1);
            b->lfreq[NLIT + ls]++;
            b->dfreq[ds]++;
            extra_bits += len_slot_extra(ls) + dist_slot_extra(ds);
        }
    }
    build_lengths(b->lfreq, NLITLEN, MAXBITS, b->llen);
    build_lengths(b->dfreq, NDIST, MAXBITS, b->llen + NLITLEN);
    b->nl = NLITLEN;
    while (b->nl > NLIT && b->llen[b->nl - 1] == 0)
        b->nl--;
    b->nd = NDIST;
    while (b->nd > 0 && b->llen[NLITLEN + b->nd - 1] == 0)
        b->nd--;
    /* gather the distance lengths right after the sent literal/length ones */
    memmove(b->llen + b->nl, b->llen + NLITLEN, NDIST);
    rle_lengths(b);
    build_lengths(b->pfreq, NPRE, PRE_MAXBITS, b->plen);
    b->np = NPRE;
    while (b->np > 1 && b->plen[pre_order[b->np - 1]] == 0)
        b->np--;

    hbits = head + 6 + 6 + 4 + 3 * b->np + extra_bits;
    for (unsigned i = 0; i < NPRE; i++)
        hbits += (uint64_t)b->pfreq[i] * (b->plen[i] + pre_extra[i]);
    for (unsigned s = 0; s < NLITLEN; s++)
        hbits += (uint64_t)b->lfreq[s] * (s < b->nl ? b->llen[s] : 0);
    for (unsigned t = 0; t < b->nd; t++)
        hbits += (uint64_t)b->dfreq[t] * b->llen[b->nl + t];
    sbits = head + ((8 - (e->bc + head) % 8) % 8) + 8 * (uint64_t)raw;
    stored = sbits <= hbits;

    n = stored ? (size_t)(sbits / 8) : (size_t)(hbits / 8);
    nbytes = n + 16;
    if (crdt__buf_reserve(e->out, nbytes) != 0)
        return CRDT_ENOMEM;
    w.p = e->out->base + e->out->len;
    w.bb = e->bb;
    w.bc = e->bc;
    bw_put(&w, (uint32_t)last, 1);
    bw_put(&w, (uint32_t)!stored, 1);
    bw_put(&w, k, 5);
    bw_put(&w, (uint32_t)(raw - 1), k);
    bw_flush(&w);
    if (stored) {
        if (w.bc)
            bw_put(&w, 0, 8 - w.bc);
        bw_flush(&w);
        memcpy(w.p, e->blk_src, raw);
        w.p += raw;
    } else {
        assign_codes(b->llen, b->nl, b->lcode);
        assign_codes(b->llen + b->nl, b->nd, b->dcode);
        assign_codes(b->plen, NPRE, b->pcode);
        bw_put(&w, b->nl - NLIT, 6);
        bw_put(&w, b->nd, 6);
        bw_put(&w, b->np - 1, 4);
        bw_flush(&w);
        for (unsigned i = 0; i < b->np; i++) {
            bw_put(&w, b->plen[pre_order[i]], 3);
            bw_flush(&w);
        }
        for (unsigned i = 0; i < b->nrle; i++) {
            unsigned s = b->rle[i];
            bw_put(&w, b->pcode[s], b->plen[s]);
            bw_put(&w, b->rle_extra[i], pre_extra[s]);
            bw_flush(&w);
        }
        for (size_t i = 0; i < e->nseq; i++) {
            const seq_t *s = &e->seq[i];
            if (s->len == 0) {
                bw_put(&w, b->lcode[s->dist], b->llen[s->dist]);
            } else {
                uint32_t v = s->len - MIN_MATCH, d = s->dist - 1;
                unsigned ls = len_slot(v), ds = dist_slot(d);
                bw_put(&w, b->lcode[NLIT + ls], b->llen[NLIT + ls]);
                bw_put(&w, v - len_slot_base(ls), len_slot_extra(ls));
                bw_put(&w, b->dcode[ds], b->llen[b->nl + ds]);
                bw_put(&w, d - dist_slot_base(ds), dist_slot_extra(ds));
            }
            bw_flush(&w);
        }
    }
    if (last && w.bc) {
        /* the final partial byte; its unused bits are zero */
        w.bc = 8;
        bw_flush(&w);
    }
    assert((size_t)(w.p - (e->out->base + e->out->len)) <= n + 2);
    e->out->len = (size_t)(w.p - e->out->base);
    e->bb = w.bb;
    e->bc = w.bc;
    e->blk_src += raw;
    e->blk_raw = 0;
    e->nseq = 0;
    return 0;
}

static inline int add_literal(enc_t *e, uint8_t c)
{
    if (e->nseq == SEQ_MAX || e->blk_raw == BLOCK_MAX) {
        int err = flush_block(e, 0);
        if (err)
            return err;
    }
    e->seq[e->nseq].len = 0;
    e->seq[e->nseq++].dist = c;
    e->blk_raw++;
    return 0;
}

static inline int add_match(enc_t *e, unsigned len, uint32_t dist)
{
    if (e->nseq == SEQ_MAX || e->blk_raw + len > BLOCK_MAX) {
        int err = flush_block(e, 0);
        if (err)
            return err;
    }
    e->seq[e->nseq].len = len;
    e->seq[e->nseq++].dist = dist;
    e->blk_raw += len;
    return 0;
}

/*
 * Lazy matching's test: whether the match (len, dist) found one byte after the
 * match (prev_len, prev_dist) is worth emitting a literal first. A rough bit
 * count: each matched byte saves about 3 bits, a distance costs its log2, the
 * literal about 1 more than the distances' difference suggests.
 */
static inline int later_is_better(unsigned prev_len, uint32_t prev_dist, unsigned len,
                                  uint32_t dist)
{
    if (len <= prev_len)
        return 0;
    return (int)(3 * len) - (int)log2u(dist) - 1 > (int)(3 * prev_len) - (int)log2u(prev_dist);
}

/* Parses the current piece with lazy matching: a match found at p is taken
 * unless the one at p + 1 is better (later_is_better), in which case p becomes
 * a literal and the match at p + 1 is weighed against the one at p + 2. */
static int parse_piece(enc_t *e)
{
    const uint8_t *src = e->src;
    size_t n = e->n, pos = 0;
    unsigned prev_len = 0;
    uint32_t prev_dist = 0;
    size_t misses = 0; /* searches in a row that found nothing */
    int have_prev = 0, err = 0;

    memset(e->headc, 0, e->headc_size * sizeof(uint32_t));
    memset(e->head4, 0, e->head4_size * sizeof(uint32_t));
    memset(e->head3, 0, e->head3_size * sizeof(uint32_t));
    while (pos < n) {
        unsigned cur_len = 0;
        uint32_t cur_dist = 0;
        if (n - pos >= 8) {
            if (have_prev && prev_len >= LAZY_MAX)
                insert_pos(e, (uint32_t)pos);
            else
                cur_len = find_match(e, (uint32_t)pos, have_prev ? prev_len : 0, &cur_dist);
        }
        if (have_prev && prev_len >= MIN_MATCH &&
            !later_is_better(prev_len, prev_dist, cur_len, cur_dist)) {
            size_t end = pos - 1 + prev_len;
            err = add_match(e, prev_len, prev_dist);
            if (err)
                return err;
            for (size_t q = pos + 1; q < end && n - q >= 8; q++)
                insert_pos(e, (uint32_t)q);
            pos = end;
            have_prev = 0;
            prev_len = 0;
            misses = 0;
        } else {
            if (have_prev) {
                err = add_literal(e, src[pos - 1]);
                if (err)
                    return err;
            }
            if (cur_len == 0 && ++misses > SKIP_AFTER) {
                /* Incompressible so far: take this and the next few bytes as
                 * literals without looking for matches, more the longer
                 * the drought lasts. */
                size_t step = 1 + ((misses - SKIP_AFTER) >> 4);
                if (step > SKIP_MAX)
                    step = SKIP_MAX;
                if (step > n - pos)
                    step = n - pos;
                for (size_t q = pos; q < pos + step; q++) {
                    err = add_literal(e, src[q]);
                    if (err)
                        return err;
                }
                pos += step;
                have_prev = 0;
                prev_len = 0;
                continue;
            }
            if (cur_len)
                misses = 0;
            have_prev = 1;
            prev_len = cur_len;
            prev_dist = cur_dist;
            pos++;
        }
    }
    /* the last 7 bytes are never searched, so this is a literal */
    assert(!have_prev || prev_len == 0);
    if (have_prev)
        err = add_literal(e, src[n - 1]);
    return err;
}

/* CRDT__LZ_FAST's parse: the match found at a position is taken (no lazy
 * step), and inside a long match only its first positions are indexed. */
static int parse_piece_fast(enc_t *e)
{
    const uint8_t *src = e->src;
    size_t n = e->n, pos = 0, misses = 0;
    int err = 0;

    memset(e->headc, 0, e->headc_size * sizeof(uint32_t));
    memset(e->head4, 0, e->head4_size * sizeof(uint32_t));
    memset(e->head3, 0, e->head3_size * sizeof(uint32_t));
    while (pos < n) {
        uint32_t dist = 0;
        unsigned len = n - pos >= 8 ? find_match(e, (uint32_t)pos, 0, &dist) : 0;
        if (len >= MIN_MATCH) {
            size_t end = pos + len, q, stop;
            if ((err = add_match(e, len, dist)) != 0)
                return err;
            stop = end - pos > 16 ? pos + 16 : end;
            for (q = pos + 1; q < stop && n - q >= 8; q++)
                insert_pos(e, (uint32_t)q);
            pos = end;
            misses = 0;
            continue;
        }
        if ((err = add_literal(e, src[pos])) != 0)
            return err;
        pos++;
        if (++misses > SKIP_AFTER) {
            /* As in parse_piece(): a drought skips ahead, more the longer it lasts. */
            size_t step = (misses - SKIP_AFTER) >> 4;
            if (step > SKIP_MAX)
                step = SKIP_MAX;
            if (step > n - pos)
                step = n - pos;
            for (size_t q = pos; q < pos + step; q++)
                if ((err = add_literal(e, src[q])) != 0)
                    return err;
            pos += step;
        }
    }
    return err;
}

static unsigned ceil_log2(size_t n)
{
    unsigned b = 0;
    while (b < 31 && ((size_t)1 << b) < n)
        b++;
    return b;
}

int crdt__lz_compress(const crdt_alloc_t *a, const uint8_t *src, size_t n, crdt_buf_t *out)
{
    return crdt__lz_compress_ex(a, src, n, CRDT__LZ_BEST, out);
}

int crdt__lz_compress_ex(const crdt_alloc_t *a, const uint8_t *src, size_t n, int effort,
                         crdt_buf_t *out)
{
    enc_t *e;
    size_t start_len = out->len, first = n < PIECE_MAX ? n : PIECE_MAX;
    unsigned wb = ceil_log2(first);
    int err = CRDT_ENOMEM;

    if (n == 0) {
        if (crdt__buf_reserve(out, 0) != 0)
            return CRDT_ENOMEM;
        out->base[out->len] = 0;
        return 0;
    }
    e = crdt__tmp_alloc(a, sizeof(*e));
    if (e == NULL)
        return CRDT_ENOMEM;
    memset(e, 0, sizeof(*e));
    e->out = out;
    e->chain_max = effort == CRDT__LZ_FAST ? FAST_CHAIN_MAX : CHAIN_MAX;
    e->nice_len = effort == CRDT__LZ_FAST ? FAST_NICE_LEN : NICE_LEN;
    if (wb > WBITS)
        wb = WBITS;
    if (wb < 10)
        wb = 10;
    e->wmask = ((uint32_t)1 << wb) - 1;
    e->hbitsc = wb < HASHC_BITS ? wb : HASHC_BITS;
    e->hbits4 = wb < HASH4_BITS ? wb : HASH4_BITS;
    e->hbits3 = wb < HASH3_BITS ? wb : HASH3_BITS;
    e->headc_size = (size_t)1 << e->hbitsc;
    e->head4_size = (size_t)1 << e->hbits4;
    e->head3_size = (size_t)1 << e->hbits3;
    e->prev_size = (size_t)e->wmask + 1;
    e->headc = crdt__tmp_alloc(a, e->headc_size * sizeof(uint32_t));
    e->head4 = crdt__tmp_alloc(a, e->head4_size * sizeof(uint32_t));
    e->head3 = crdt__tmp_alloc(a, e->head3_size * sizeof(uint32_t));
    e->prev = crdt__tmp_alloc(a, e->prev_size * sizeof(uint32_t));
    e->seq = crdt__tmp_alloc(a, SEQ_MAX * sizeof(seq_t));
    if (!e->headc || !e->head4 || !e->head3 || !e->prev || !e->seq)
        goto Exit;

    e->blk_src = src;
    for (size_t off = 0; off < n; off += e->n) {
        e->src = src + off;
        e->n = n - off < PIECE_MAX ? n - off : PIECE_MAX;
        err = effort == CRDT__LZ_FAST ? parse_piece_fast(e) : parse_piece(e);
        if (err)
            goto Exit;
    }
    err = flush_block(e, 1);
    if (err)
        goto Exit;
    assert(e->bc == 0);
    out->base[out->len] = 0;

Exit:
    if (err)
        out->len = start_len;
    crdt__tmp_free(a, e->headc, e->headc_size * sizeof(uint32_t));
    crdt__tmp_free(a, e->head4, e->head4_size * sizeof(uint32_t));
    crdt__tmp_free(a, e->head3, e->head3_size * sizeof(uint32_t));
    crdt__tmp_free(a, e->prev, e->prev_size * sizeof(uint32_t));
    crdt__tmp_free(a, e->seq, SEQ_MAX * sizeof(seq_t));
    crdt__tmp_free(a, e, sizeof(*e));
    return err;
}

/* ---- decompressor ------------------------------------------------------------------ */

/*
 * Decoding table entries (uint32_t), indexed by the next MAXBITS (or
 * PRE_MAXBITS) input bits. In every table, bits 0..5 are the number of bits
 * t the entry consumes: the code length l, plus the x extra bits that follow
 * the code of a length or distance symbol. The extra bits are taken as the
 * top x of the low t input bits: shifted up by 32 - t in 32 bits, then down
 * by 32 - x in 64 bits (so x = 0 gives 0), which costs two shifts and no
 * mask (see extra_bits()).
 *
 *   literal/length table:
 *     bit  6        E_EXTRA: a length whose extra bits are still to be added
 *     bit  7        E_MATCH: a length symbol (clear: a literal)
 *     bits 8..15    a literal's byte, or
 *     bits 8..13    for a length, 32 - x
 *     bits 14..31   for a length, 3 + its base
 *   distance table:
 *     bits 6..11    32 - x
 *     bits 12..31   1 + the distance base (at most 1 + 3 << 18: 20 bits)
 *   precode table:
 *     bits 12..31   the precode symbol
 *
 * Every field above bits 0..5 starts at bit 6 or higher, so subtracting a
 * whole entry from a bit count kept modulo 64 subtracts t (decode_fast()
 * does).
 *
 * A length symbol whose code and extra bits fit the index (l + x <= MAXBITS,
 * most of them) is resolved in the table instead: each of the 2^x values of
 * its extra bits gets its own entries (indexed by the code followed by those
 * bits), holding the whole length with x taken as 0 and E_EXTRA clear.
 */
#define E_EXTRA 0x40u
#define E_MATCH 0x80u
#define E_BITS(e) ((e)&63)
#define E_LITERAL(e) ((uint8_t)((e) >> 8))
#define E_LEN_SHIFT 14  /* length value */
#define E_LEN_XSHIFT 8  /* its 32 - x */
#define E_DIST_SHIFT 12 /* distance value (and precode symbol) */
#define E_DIST_XSHIFT 6 /* its 32 - x */

enum { T_LITLEN, T_DIST, T_PRE };

/* The extra bits of an entry consuming t = E_BITS(e) bits (1..30) with
 * 32 - x at bit `xshift`, from the input bits bb that start with its code. */
static inline uint32_t extra_bits(uint32_t e, unsigned xshift, uint64_t bb)
{
    uint32_t top = (uint32_t)bb << ((0u - e) & 31); /* the t bits at the top */
    return (uint32_t)((uint64_t)top >> ((e >> xshift) & 63));
}

static inline uint32_t len_value(uint32_t e, uint64_t bb)
{
    return (e >> E_LEN_SHIFT) + extra_bits(e, E_LEN_XSHIFT, bb);
}

static inline uint32_t dist_value(uint32_t e, uint64_t bb)
{
    return (e >> E_DIST_SHIFT) + extra_bits(e, E_DIST_XSHIFT, bb);
}

/* The entry of length symbol s (0..59) with code length l, its extra bits
 * left to the decoder if x > 0, or else resolved with their value v. */
static inline uint32_t len_entry(unsigned s, unsigned l, unsigned x, uint32_t v)
{
    return (MIN_MATCH + len_slot_base(s) + v) << E_LEN_SHIFT | (32 - x) << E_LEN_XSHIFT | E_MATCH |
           (x ? E_EXTRA : 0) | (l + x);
}

/* The entry of symbol sym with code length l (extra bits left to the
 * decoder). */
static inline uint32_t table_entry(int kind, unsigned sym, unsigned l)
{
    if (kind == T_LITLEN)
        return sym < NLIT ? (uint32_t)sym << 8 | l
                          : len_entry(sym - NLIT, l, len_slot_extra(sym - NLIT), 0);
    if (kind == T_DIST) {
        uint32_t x = dist_slot_extra(sym);
        return (1 + dist_slot_base(sym)) << E_DIST_SHIFT | (32 - x) << E_DIST_XSHIFT | (l + x);
    }
    return (uint32_t)sym << E_DIST_SHIFT | l;
}

/* The l-bit code after the one whose bit-reversed form is rev, bit-reversed:
 * the carry runs down from bit l - 1, clearing ones until it sets a zero.
 * For the last code (all ones; nothing follows it in a complete code) it
 * returns rev. */
static inline uint32_t rev_next(uint32_t rev, unsigned l)
{
    uint32_t bit = 1u << (l - 1);
    while (rev & bit)
        bit >>= 1;
    return (rev & (bit - 1)) | bit;
}

/*
 * Fills the 2^tbits-entry table for code lengths lens[0..n) (each 0..tbits).
 * Returns 0, or CRDT_EMALFORMED unless the code is complete.
 *
 * The table is grown by doubling: once every code of length l is in place
 * (its bit-reversed code is an index below 2^l), the first 2^l entries are
 * copied to the next 2^l, since an index of l + 1 bits whose low l bits are
 * those of a code decodes to that code. The codes of length l + 1 then take
 * their own entries; a prefix code never puts one where a shorter code is.
 * So each symbol is stored once and the rest is memcpy. Entries not yet
 * reached by any code while the table is small are copied but always
 * overwritten later, as the code is complete. A length symbol resolved with
 * its x extra bits (see above) is placed the same way, only x levels later:
 * its 2^x entries, one per value of the extra bits, once the table has
 * l + x index bits.
 */
static int build_table(uint32_t *table, unsigned tbits, const uint8_t *lens, unsigned n, int kind)
{
    uint32_t count[16] = {0}, offs[16], rev = 0; /* rev: the next code, bit-reversed */
    uint16_t sorted[NLITLEN];
    /* resolved length symbols waiting for their level: a list per level */
    uint8_t wait_head[16], wait_next[NLENSYM], wait_len[NLENSYM];
    uint16_t wait_rev[NLENSYM];
    int32_t left = 1;
    size_t size = 1;
    unsigned k = 0;

    for (unsigned s = 0; s < n; s++)
        count[lens[s]]++;
    for (unsigned l = 1; l <= tbits; l++) {
        left = 2 * left - (int32_t)count[l];
        if (left < 0)
            return CRDT_EMALFORMED;
    }
    if (left != 0)
        return CRDT_EMALFORMED;
    /* Symbols in canonical order: by length, then by value. */
    offs[1] = 0;
    for (unsigned l = 1; l < tbits; l++)
        offs[l + 1] = offs[l] + count[l];
    for (unsigned s = 0; s < n; s++)
        if (lens[s])
            sorted[offs[lens[s]]++] = (uint16_t)s;
    memset(wait_head, 0xff, sizeof(wait_head));
    table[0] = 0;
    for (unsigned l = 1; l <= tbits; l++) {
        memcpy(table + size, table, size * sizeof(uint32_t));
        size *= 2;
        for (uint32_t c = 0; c < count[l]; c++, k++, rev = rev_next(rev, l)) {
            unsigned s = sorted[k], x;
            if (kind == T_LITLEN && s >= NLIT && (x = len_slot_extra(s - NLIT)) != 0 &&
                l + x <= tbits) {
                unsigned i = s - NLIT;
                wait_rev[i] = (uint16_t)rev;
                wait_len[i] = (uint8_t)l;
                wait_next[i] = wait_head[l + x];
                wait_head[l + x] = (uint8_t)i;
                continue;
            }
            table[rev] = table_entry(kind, s, l);
        }
        for (unsigned i = wait_head[l]; i != 0xff; i = wait_next[i]) {
            unsigned cl = wait_len[i], x = l - cl;
            for (uint32_t j = 0; j < (1u << x); j++)
                table[wait_rev[i] | j << cl] = len_entry(i, l, 0, j);
        }
        /* the next code gets a 0 appended: reversed, the same number */
    }
    return 0;
}

/* Copies a match of `len` bytes from `dist` bytes back (checked by the caller
 * to lie inside the output and the block, which ends at blk_end). Chunks may
 * write up to 15 bytes past the match, which only ever lands on output of
 * the block not yet produced. */
static inline uint8_t *copy_match(uint8_t *out, uint32_t len, uint32_t dist, const uint8_t *blk_end)
{
    const uint8_t *from = out - dist;
    uint8_t *end = out + len;
    if (dist >= 16 && (size_t)(blk_end - end) >= 16) {
        do {
            memcpy(out, from, 16);
            out += 16;
            from += 16;
        } while (out < end);
    } else if (dist >= 8 && (size_t)(blk_end - end) >= 8) {
        do {
            memcpy(out, from, 8);
            out += 8;
            from += 8;
        } while (out < end);
    } else if (dist == 1) {
        memset(out, out[-1], len);
    } else {
        do
            *out++ = *from++;
        while (out < end);
    }
    return end;
}

/*
 * The symbols of a Huffman block while at least 16 input bytes are left and
 * the block has at least 4 bytes to go (16 to start): every refill is one 8-byte load
 * (whose address is known a refill ahead, so it does not wait for the
 * symbols before it), leaving at least 56 bits, enough for four literals
 * (4 x 12 bits) or a match (12 + 13 + 12 + 18 = 55 bits). The count of
 * bits in bb is kept modulo 64 in bc: a whole entry is subtracted, as every
 * field above its low 6 bits (its bits consumed) is a multiple of 64. The
 * entry of the next symbol is looked up as soon as its bits are there:
 * after a match, before the match is copied, so that this load (on which
 * all that follows depends) does not wait for the copy's branches. lt is
 * the literal/length table followed by the distance table. A separate
 * function so that the few values it needs stay in registers.
 * Updates the bit reader and the output position; returns 0, or
 * CRDT_EMALFORMED for a match that reaches outside the output or past the
 * block.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int
decode_fast(const uint32_t *lt, const uint8_t **in_p, const uint8_t *in_end, uint64_t *bb_p,
            unsigned *bc_p, uint8_t **out_p, uint8_t *blk_end, const uint8_t *dst)
{
    const uint8_t *in = *in_p, *in_last, *in_last2;
    uint8_t *out = *out_p, *out_last, *blk_end15;
    uint64_t bb = *bb_p;
    unsigned bc = *bc_p;
    uint32_t e;
    int err = 0;
    if (in_end - in < 16 || blk_end - out < 16)
        return 0;
    /* A refill at in <= in_last reads inside the input, and so do two in a
     * row from in <= in_last2 (a refill advances at most 7 bytes). At the top
     * of the loop in <= in_last, so a match there may refill once. */
    in_last = in_end - 8;
    in_last2 = in_end - 15;
    out_last = blk_end - 4;
    blk_end15 = blk_end - 15;
/* Fills bb up to 56..63 bits with whole bytes, as REFILL() does. */
#define REFILL_FAST()                                                                              \
    do {                                                                                           \
        bb |= load_le64(in) << (bc & 63);                                                          \
        in += (~bc >> 3) & 7;                                                                      \
        bc |= 56;                                                                                  \
    } while (0)
    REFILL_FAST();
    e = lt[bb & ((1u << MAXBITS) - 1)];
    for (;;) { /* bb holds at least 56 bits, e is the next symbol's entry */
        uint32_t len, dist, d;
        if (!(e & E_MATCH)) {
            /* Up to four literals; after fewer, a match (the block has room
             * for it to start) needs a refill, which keeps the bits of e. */
#define LITERAL()                                                                                  \
    do {                                                                                           \
        bb >>= E_BITS(e);                                                                          \
        bc -= e;                                                                                   \
        *out++ = E_LITERAL(e);                                                                     \
        e = lt[bb & ((1u << MAXBITS) - 1)];                                                        \
    } while (0)
            LITERAL();
            if (e & E_MATCH)
                goto Refill;
            LITERAL();
            if (e & E_MATCH)
                goto Refill;
            LITERAL();
            if (e & E_MATCH)
                goto Refill;
            LITERAL();
#undef LITERAL
            if (out > out_last || in > in_last2)
                break;
            REFILL_FAST();
            e = lt[bb & ((1u << MAXBITS) - 1)];
            continue;
        Refill:
            if (in > in_last2)
                break;
            REFILL_FAST();
        }
        /* A match. Extra bits come right after their code. */
        len = e >> E_LEN_SHIFT;
        if (e & E_EXTRA)
            len += extra_bits(e, E_LEN_XSHIFT, bb);
        bb >>= E_BITS(e);
        bc -= e;
        d = lt[(1u << MAXBITS) + (bb & ((1u << MAXBITS) - 1))]; /* dt[] */
        dist = dist_value(d, bb);
        bb >>= E_BITS(d);
        bc -= d;
        /* The next symbol's entry is fetched before the copy, so that its
         * load does not wait for the copy's branches (in <= in_last here). */
        REFILL_FAST();
        e = lt[bb & ((1u << MAXBITS) - 1)];
        if ((ptrdiff_t)len <= blk_end15 - out && dist >= 16 && dist <= (size_t)(out - dst)) {
            /* the common case: 16-byte chunks, not overlapping, and room
             * for 15 bytes more after the match */
            const uint8_t *from = out - dist;
            uint8_t *end = out + len;
            memcpy(out, from, 16);
            while (len > 16) {
                out += 16;
                from += 16;
                len -= 16;
                memcpy(out, from, 16);
            }
            out = end;
        } else if (len > (size_t)(blk_end - out) || dist > (size_t)(out - dst)) {
            err = CRDT_EMALFORMED;
            break;
        } else {
            out = copy_match(out, len, dist, blk_end);
        }
        if (out > out_last || in > in_last)
            break;
    }
#undef REFILL_FAST
    *in_p = in;
    *out_p = out;
    *bb_p = bb;
    *bc_p = bc & 63;
    return err;
}

int crdt__lz_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_len)
{
    uint32_t lt[2 << MAXBITS], pt[1 << PRE_MAXBITS]; /* dt follows lt */
    uint32_t *dt = lt + (1 << MAXBITS);
    uint8_t lens[NLITLEN + NDIST];
    const uint8_t *in = src, *in_end = src + n;
    uint8_t *out = dst, *dst_end = dst + dst_len;
    uint64_t bb = 0, consumed;
    unsigned bc = 0, over = 0; /* over: zero bytes read past the end */
    int last = 0;

    if (n == 0 || dst_len == 0)
        return n == 0 && dst_len == 0 ? 0 : CRDT_EMALFORMED;

/* Makes bc >= 56. Past the end of the input, reads zero bytes; eight of them
 * mean more bits were consumed than exist. */
#define REFILL()                                                                                   \
    do {                                                                                           \
        if (in_end - in >= 8) {                                                                    \
            bb |= load_le64(in) << bc;                                                             \
            in += (63 - bc) >> 3;                                                                  \
            bc |= 56;                                                                              \
        } else {                                                                                   \
            while (bc <= 55) {                                                                     \
                if (in < in_end)                                                                   \
                    bb |= (uint64_t)*in++ << bc;                                                   \
                else if (++over >= 8)                                                              \
                    goto Bad;                                                                      \
                bc += 8;                                                                           \
            }                                                                                      \
        }                                                                                          \
    } while (0)
#define BITS(k) ((uint32_t)bb & ((1u << (k)) - 1))
#define DROP(k)                                                                                    \
    do {                                                                                           \
        bb >>= (k);                                                                                \
        bc -= (k);                                                                                 \
    } while (0)
/* Bits consumed so far. */
#define CONSUMED() (((uint64_t)(in - src) + over) * 8 - bc)

    while (!last) {
        uint8_t *blk_end;
        uint32_t k, blen;
        REFILL();
        last = (int)BITS(1);
        DROP(1);
        if (!BITS(1)) {
            /* stored */
            uint64_t q, pad;
            DROP(1);
            k = BITS(5);
            DROP(5);
            if (k > KMAX)
                goto Bad;
            blen = BITS(k) + 1;
            DROP(k);
            if (blen > (size_t)(dst_end - out) || (!last && blen < BLOCK_MIN))
                goto Bad;
            consumed = CONSUMED();
            q = (consumed + 7) / 8;
            pad = q * 8 - consumed;
            if (BITS(pad) != 0 || q > n || n - q < blen)
                goto Bad;
            memcpy(out, src + q, blen);
            out += blen;
            in = src + q + blen;
            bb = 0;
            bc = 0;
            over = 0;
            continue;
        }
        DROP(1);
        k = BITS(5);
        DROP(5);
        if (k > KMAX)
            goto Bad;
        blen = BITS(k) + 1;
        DROP(k);
        if (blen > (size_t)(dst_end - out) || (!last && blen < BLOCK_MIN))
            goto Bad;
        blk_end = out + blen;

        /* code lengths */
        {
            unsigned nl, nd, np, total, i = 0, have_len = 0, have_dist = 0;
            uint8_t plens[NPRE] = {0};
            REFILL();
            nl = NLIT + BITS(6);
            DROP(6);
            nd = BITS(6);
            DROP(6);
            np = BITS(4) + 1;
            DROP(4);
            if (nl > NLITLEN || nd > NDIST)
                goto Bad;
            REFILL(); /* 16 x 3 bits */
            for (unsigned j = 0; j < np; j++) {
                plens[pre_order[j]] = (uint8_t)BITS(3);
                DROP(3);
            }
            if (build_table(pt, PRE_MAXBITS, plens, NPRE, T_PRE) != 0)
                goto Bad;
            total = nl + nd;
            memset(lens, 0, sizeof(lens));
            while (i < total) {
                uint32_t e, sym, run;
                uint8_t v = 0;
                if (bc < PRE_MAXBITS + 7) /* a symbol and its extra bits */
                    REFILL();
                e = pt[BITS(PRE_MAXBITS)];
                DROP(E_BITS(e));
                sym = e >> E_DIST_SHIFT;
                if (sym < 13) {
                    lens[i++] = (uint8_t)sym;
                    continue;
                }
                if (sym == 13) {
                    if (i == 0)
                        goto Bad;
                    v = lens[i - 1];
                    run = 3 + BITS(2);
                    DROP(2);
                } else if (sym == 14) {
                    run = 3 + BITS(3);
                    DROP(3);
                } else {
                    run = 11 + BITS(7);
                    DROP(7);
                }
                if (run > total - i)
                    goto Bad;
                memset(lens + i, v, run);
                i += run;
            }
            /* distance lengths move to their own place */
            memmove(lens + NLITLEN, lens + nl, nd);
            memset(lens + nl, 0, NLITLEN - nl);
            memset(lens + NLITLEN + nd, 0, NDIST - nd);
            if (build_table(lt, MAXBITS, lens, NLITLEN, T_LITLEN) != 0)
                goto Bad;
            for (unsigned s = NLIT; s < NLITLEN; s++)
                have_len |= lens[s];
            for (unsigned t = 0; t < NDIST; t++)
                have_dist |= lens[NLITLEN + t];
            if (have_dist) {
                if (build_table(dt, MAXBITS, lens + NLITLEN, NDIST, T_DIST) != 0)
                    goto Bad;
            } else if (have_len) {
                goto Bad; /* a length symbol would have no distance code */
            }
        }

        /* symbols */
        if (decode_fast(lt, &in, in_end, &bb, &bc, &out, blk_end, dst) != 0)
            goto Bad;
        while (out < blk_end) {
            uint32_t e, len, dist;
            REFILL();
            e = lt[BITS(MAXBITS)];
            if (!(e & E_MATCH)) {
                DROP(E_BITS(e));
                *out++ = E_LITERAL(e);
                continue;
            }
            len = len_value(e, bb);
            DROP(E_BITS(e));
            e = dt[BITS(MAXBITS)];
            dist = dist_value(e, bb);
            DROP(E_BITS(e));
            if (len > (size_t)(blk_end - out) || dist > (size_t)(out - dst))
                goto Bad;
            out = copy_match(out, len, dist, blk_end);
        }
    }

    /* the stream must end here, padded with zero bits to a byte boundary */
    consumed = CONSUMED();
    if ((consumed + 7) / 8 != n || BITS((8 - consumed % 8) % 8) != 0 || out != dst_end)
        goto Bad;
    return 0;
Bad:
    return CRDT_EMALFORMED;
#undef REFILL
#undef BITS
#undef DROP
#undef CONSUMED
}
