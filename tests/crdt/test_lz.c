/* SPDX-License-Identifier: MIT */
/*
 * test_lz.c: the snapshot text compressor (crdt/lz.c). Round trips of empty,
 * one-byte, repetitive, random (fixed seeds), long-run, all-byte-value and
 * generated prose and code inputs, sizes around the block limits; the bounds
 * on expansion of incompressible input and on the compression ratio
 * (CRDT__LZ_MAX_RATIO); appending to a buffer and allocation failure. The
 * decoder is checked against streams built here bit by bit from the format
 * described at the top of lz.c (every length and distance symbol, the longest
 * match and the farthest distance, the widest symbols: 12-bit codes with the
 * most extra bits after 12-bit literals), and must reject each way those streams
 * can be wrong (also mid-block, where the decoder's fast loop reads them),
 * every truncation and extension of real streams, wrong output
 * sizes, and survive random corruption without touching memory outside its
 * buffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lz.h"
#include "test_alloc.h"
#include "testutil.h"

#define GUARD 64 /* bytes checked after every output buffer */
#define GUARD_BYTE 0xa5

/* ---- helpers ------------------------------------------------------------------ */

/* The effort compress() uses: test_lz_compress_fast_effort_roundtrips() runs
 * the round-trip tests again with CRDT__LZ_FAST. */
static int effort = CRDT__LZ_BEST;

static crdt_buf_t compress(const uint8_t *src, size_t n)
{
    crdt_buf_t b;
    assert_int_equal(crdt__buf_init(&crdt__libc_alloc, &b, 16), 0);
    if (effort == CRDT__LZ_BEST)
        assert_int_equal(crdt__lz_compress(&crdt__libc_alloc, src, n, &b), 0);
    else
        assert_int_equal(crdt__lz_compress_ex(&crdt__libc_alloc, src, n, effort, &b), 0);
    return b;
}

/* Decompresses into a buffer of exactly dst_len bytes followed by a guard that
 * must stay untouched. Returns the result code; *out (if not NULL) receives the
 * buffer, to be freed by the caller. */
static int decompress_guarded(const uint8_t *c, size_t clen, size_t dst_len, uint8_t **out)
{
    uint8_t *dst = malloc(dst_len + GUARD);
    int rc;

    assert_non_null(dst);
    memset(dst + dst_len, GUARD_BYTE, GUARD);
    rc = crdt__lz_decompress(c, clen, dst, dst_len);
    assert_true(rc == 0 || rc == CRDT_EMALFORMED);
    for (size_t i = 0; i < GUARD; i++)
        if (dst[dst_len + i] != GUARD_BYTE)
            fail_msg("decompress wrote past dst_len (%zu) at +%zu", dst_len, i);
    if (out)
        *out = dst;
    else
        free(dst);
    return rc;
}

/* Compresses, checks the expansion bound, decompresses and compares. Returns
 * the compressed size. */
static size_t roundtrip(const uint8_t *src, size_t n)
{
    crdt_buf_t b = compress(src, n);
    size_t clen = b.len;
    uint8_t *dst;

    if (clen > n + n / 1024 + 8)
        fail_msg("%zu bytes compressed to %zu, more than the bound", n, clen);
    if (n > clen * (size_t)CRDT__LZ_MAX_RATIO)
        fail_msg("%zu bytes compressed to %zu, beyond CRDT__LZ_MAX_RATIO", n, clen);
    assert_int_equal(b.base[b.len], 0); /* still NUL-terminated */
    if (decompress_guarded(b.base, b.len, n, &dst) != 0)
        fail_msg("round trip of %zu bytes: decompress failed", n);
    if (n && memcmp(dst, src, n) != 0)
        fail_msg("round trip of %zu bytes: output differs", n);
    free(dst);
    crdt_buf_dispose(&b);
    return clen;
}

static uint8_t *random_bytes(uint64_t seed, size_t n)
{
    rng_t r = {seed};
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next(&r);
    return p;
}

/* Prose and C-like lines from a small vocabulary with a skewed distribution,
 * some of it non-ASCII UTF-8: compressible roughly like real text. */
static uint8_t *gen_text(uint64_t seed, size_t n)
{
    static const char *const words[] = {
        "the",      "of",     "and",     "a",          "to",        "in",     "is",
        "that",     "for",    "it",      "as",         "with",      "was",    "on",
        "be",       "by",     "this",    "are",        "document",  "editor", "replica",
        "insert",   "delete", "merge",   "update",     "character", "state",  "version",
        "sequence", "naïve",  "café",    "日本語",     "テキスト",  "😀",      "Straße",
        "über",     "index",  "between", "concurrent", "operation", "peers",  "order"};
    static const char *const code[] = {
        "    if (doc == NULL)\n        return CRDT_EINVAL;\n",
        "    for (size_t i = 0; i < n; i++)\n",
        "        sum += items[i].len;\n",
        "static int crdt__item_split(crdt_doc_t *doc, uint32_t it, uint32_t off)\n{\n",
        "    return 0;\n}\n\n",
        "    /* the right origin of every character */\n",
        "    uint32_t leaf = doc->seq_root, slot = 0;\n"};
    const size_t nw = sizeof(words) / sizeof(words[0]), nc = sizeof(code) / sizeof(code[0]);
    rng_t r = {seed};
    uint8_t *p = malloc(n + 1);
    size_t len = 0, inline_words = 0;

    assert_non_null(p);
    while (len < n) {
        const char *s;
        char tmp[16];
        if (rng_pct(&r, 2)) {
            s = code[rng_below(&r, nc)];
        } else if (rng_pct(&r, 3)) {
            snprintf(tmp, sizeof(tmp), "%u", (unsigned)rng_below(&r, 100000));
            s = tmp;
        } else {
            s = words[rng_below(&r, rng_below(&r, nw) + 1)];
        }
        for (; *s && len < n; s++)
            p[len++] = (uint8_t)*s;
        if (len < n) {
            int nl = ++inline_words > 12 && rng_pct(&r, 20);
            p[len++] = nl ? '\n' : rng_pct(&r, 8) ? ',' : ' ';
            if (nl)
                inline_words = 0;
        }
    }
    return p;
}

/* ---- round trips ------------------------------------------------------------ */

static void test_lz_compress_empty_input_gives_empty_stream(void **state)
{
    crdt_buf_t b;
    uint8_t dst[1] = {0x77};
    (void)state;
    assert_int_equal(crdt__buf_init(&crdt__libc_alloc, &b, 16), 0);
    assert_int_equal(crdt__lz_compress(&crdt__libc_alloc, NULL, 0, &b), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(crdt__lz_decompress(b.base, 0, dst, 0), 0);
    assert_int_equal(crdt__lz_decompress(NULL, 0, NULL, 0), 0);
    /* an empty stream is not one byte, and no bytes are not an empty input */
    assert_int_equal(crdt__lz_decompress(NULL, 0, dst, 1), CRDT_EMALFORMED);
    assert_int_equal(crdt__lz_decompress(dst, 1, dst, 0), CRDT_EMALFORMED);
    crdt_buf_dispose(&b);
}

static void test_lz_compress_roundtrip_one_byte(void **state)
{
    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        uint8_t c = (uint8_t)v;
        assert_true(roundtrip(&c, 1) <= 3);
    }
}

static void test_lz_compress_roundtrip_short_inputs(void **state)
{
    uint8_t *text = gen_text(7, 600);
    (void)state;
    for (size_t n = 0; n <= 600; n++)
        roundtrip(text, n);
    free(text);
}

static void test_lz_compress_roundtrip_repetitive(void **state)
{
    static const char *const units[] = {"ab", "abc", "abcdefg", "0123456789abcdef!",
                                        "the quick brown fox "};
    const size_t n = 100000;
    uint8_t *p = malloc(n);
    (void)state;
    assert_non_null(p);
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t k = strlen(units[u]), clen;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)units[u][i % k];
        clen = roundtrip(p, n);
        if (clen > 200)
            fail_msg("period %zu: %zu bytes compressed to %zu", k, n, clen);
    }
    free(p);
}

/* Short periods exercise the overlapping copies of the decoder, including at
 * the very end of the output where it cannot copy in whole words. */
static void test_lz_compress_roundtrip_overlapping_copies(void **state)
{
    rng_t r = {11};
    uint8_t p[3000];
    (void)state;
    for (unsigned period = 1; period <= 20; period++) {
        for (size_t i = 0; i < sizeof(p); i++)
            p[i] = i < period ? (uint8_t)rng_next(&r) : p[i - period];
        for (size_t n = 8; n <= sizeof(p); n += 331)
            roundtrip(p, n);
    }
}

static void test_lz_compress_roundtrip_random(void **state)
{
    static const size_t sizes[] = {2, 3, 7, 8, 9, 100, 4095, 65536, 300001};
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t seed = 1000 + i;
        uint8_t *p = random_bytes(seed, sizes[i]);
        size_t clen = roundtrip(p, sizes[i]);
        /* stored blocks: at most a few bytes per block more than the input */
        if (clen > sizes[i] + sizes[i] / 1024 + 8)
            fail_msg("seed %llu: random %zu bytes became %zu", (unsigned long long)seed, sizes[i],
                     clen);
        free(p);
    }
}

static void test_lz_compress_roundtrip_long_runs(void **state)
{
    /* 4 MiB + 1 forces a block split on the uncompressed size */
    const size_t n = ((size_t)4 << 20) + 1;
    uint8_t *p = calloc(n, 1);
    size_t clen;
    (void)state;
    assert_non_null(p);
    clen = roundtrip(p, n);
    if (clen > 1000)
        fail_msg("%zu zero bytes compressed to %zu", n, clen);
    /* far beyond what a reader that guessed 1024 would accept */
    assert_true(n / clen > 10000);
    /* runs of varying length and value */
    {
        rng_t r = {5};
        size_t i = 0;
        while (i < n) {
            size_t run = 1 + rng_below(&r, rng_pct(&r, 10) ? 70000 : 300);
            uint8_t v = (uint8_t)rng_below(&r, 4);
            for (; run && i < n; run--)
                p[i++] = v;
        }
        roundtrip(p, n);
    }
    free(p);
}

static void test_lz_compress_roundtrip_all_byte_values(void **state)
{
    uint8_t p[256 * 40];
    rng_t r = {3};
    (void)state;
    for (size_t i = 0; i < 256; i++)
        p[i] = (uint8_t)i;
    roundtrip(p, 256);
    /* every value, then shuffled copies of the sequence */
    for (size_t k = 1; k < 40; k++) {
        memcpy(p + 256 * k, p, 256);
        for (size_t i = 255; i > 0; i--) {
            size_t j = rng_below(&r, i + 1);
            uint8_t t = p[256 * k + i];
            p[256 * k + i] = p[256 * k + j];
            p[256 * k + j] = t;
        }
    }
    roundtrip(p, sizeof(p));
    for (size_t i = 0; i < sizeof(p); i++)
        p[i] = (uint8_t)(255 - i % 256);
    roundtrip(p, sizeof(p));
}

/* Blocks end after 8192 symbols: random bytes are one symbol each, so these
 * sizes put block ends just before, at and after the end of the input. */
static void test_lz_compress_roundtrip_block_boundaries(void **state)
{
    uint8_t *rnd = random_bytes(77, 3 * 8192 + 2);
    uint8_t *text = gen_text(78, 3 * 65536 + 2);
    (void)state;
    for (size_t k = 1; k <= 3; k++) {
        for (size_t n = k * 8192 - 2; n <= k * 8192 + 2; n++)
            roundtrip(rnd, n);
        for (size_t n = k * 65536 - 1; n <= k * 65536 + 1; n++)
            roundtrip(text, n);
    }
    /* text with a random stretch in the middle: Huffman, stored, Huffman */
    memcpy(text + 40000, rnd, 20000);
    roundtrip(text, 100000);
    free(rnd);
    free(text);
}

static void test_lz_compress_roundtrip_text_compresses(void **state)
{
    const size_t n = 400000;
    uint8_t *text = gen_text(42, n);
    size_t clen;
    (void)state;
    clen = roundtrip(text, n);
    if (clen > n * 40 / 100)
        fail_msg("generated text: %zu bytes compressed to %zu", n, clen);
    free(text);
}

/* Less effort: the same stream format (the same round trips pass, text still
 * compresses), a stream of its own, a little bigger than the best effort's. */
static void test_lz_compress_fast_effort_roundtrips(void **state)
{
    const size_t n = 200000;
    uint8_t *text = gen_text(77, n);
    size_t best, fast;
    effort = CRDT__LZ_FAST;
    test_lz_compress_empty_input_gives_empty_stream(state);
    test_lz_compress_roundtrip_one_byte(state);
    test_lz_compress_roundtrip_short_inputs(state);
    test_lz_compress_roundtrip_repetitive(state);
    test_lz_compress_roundtrip_overlapping_copies(state);
    test_lz_compress_roundtrip_random(state);
    test_lz_compress_roundtrip_long_runs(state);
    test_lz_compress_roundtrip_all_byte_values(state);
    test_lz_compress_roundtrip_block_boundaries(state);
    test_lz_compress_roundtrip_text_compresses(state);
    fast = roundtrip(text, n);
    effort = CRDT__LZ_BEST;
    best = roundtrip(text, n);
    if (fast <= best || fast > best + best / 4) /* equal: the effort was not taken */
        fail_msg("generated text: best effort %zu bytes, fast %zu", best, fast);
    free(text);
}

static void test_lz_compress_appends_to_buffer(void **state)
{
    uint8_t *text = gen_text(9, 5000), *dst = malloc(5000);
    crdt_buf_t b, alone;
    (void)state;
    assert_non_null(dst);
    alone = compress(text, 5000);
    assert_int_equal(crdt__buf_init(&crdt__libc_alloc, &b, 16), 0);
    assert_int_equal(crdt__buf_reserve(&b, 3), 0);
    memcpy(b.base, "hdr", 3);
    b.len = 3;
    assert_int_equal(crdt__lz_compress(&crdt__libc_alloc, text, 5000, &b), 0);
    assert_int_equal(b.len, 3 + alone.len);
    assert_memory_equal(b.base, "hdr", 3);
    assert_memory_equal(b.base + 3, alone.base, alone.len);
    assert_int_equal(b.base[b.len], 0);
    assert_int_equal(crdt__lz_decompress(b.base + 3, b.len - 3, dst, 5000), 0);
    assert_memory_equal(dst, text, 5000);
    crdt_buf_dispose(&b);
    crdt_buf_dispose(&alone);
    free(text);
    free(dst);
}

/* Every allocation failure gives CRDT_ENOMEM with the buffer's length as it
 * was, and leaks nothing. */
static void test_lz_compress_enomem_leaves_buffer(void **state)
{
    const size_t n = 70000;
    uint8_t *text = gen_text(21, n);
    crdt_buf_t ref = compress(text, n);
    test_alloc_t ta;
    long k;
    (void)state;
    test_alloc_init(&ta);
    for (k = 0;; k++) {
        crdt_buf_t b;
        size_t failures;
        int rc;
        assert_int_equal(crdt__buf_init(&ta.alloc, &b, 16), 0);
        b.base[0] = 'x';
        b.len = 1;
        test_alloc_fail_after(&ta, k);
        failures = ta.failures;
        rc = crdt__lz_compress(&ta.alloc, text, n, &b);
        test_alloc_fail_after(&ta, -1);
        if (ta.failures == failures) {
            assert_int_equal(rc, 0);
            assert_int_equal(b.len, 1 + ref.len);
            assert_memory_equal(b.base + 1, ref.base, ref.len);
            crdt_buf_dispose(&b);
            break;
        }
        assert_int_equal(rc, CRDT_ENOMEM);
        assert_int_equal(b.len, 1);
        assert_int_equal(b.base[0], 'x');
        crdt_buf_dispose(&b);
        assert_int_equal(test_alloc_live_bytes(&ta), 0);
    }
    assert_true(k > 2);
    assert_int_equal(test_alloc_live_bytes(&ta), 0);
    crdt_buf_dispose(&ref);
    free(text);
}

/* ---- streams built by hand ----------------------------------------------------- */

/* An LSB-first bit writer. */
typedef struct {
    uint8_t b[1 << 16];
    size_t pos; /* bits written */
} bits_t;

static void put_bits(bits_t *w, uint32_t v, unsigned k)
{
    for (unsigned i = 0; i < k; i++, w->pos++) {
        assert_true(w->pos / 8 < sizeof(w->b));
        if ((v >> i) & 1)
            w->b[w->pos / 8] |= (uint8_t)(1u << (w->pos % 8));
    }
}

/* A Huffman code, most significant bit first. */
static void put_code(bits_t *w, uint32_t code, unsigned len)
{
    while (len-- > 0)
        put_bits(w, (code >> len) & 1, 1);
}

static size_t bits_bytes(const bits_t *w)
{
    return (w->pos + 7) / 8;
}

/* Canonical codes of lens[0..n), as the format defines them. */
static void canonical(const uint8_t *lens, unsigned n, uint32_t *codes)
{
    uint32_t code = 0;
    for (unsigned l = 1; l <= 15; l++) {
        for (unsigned s = 0; s < n; s++)
            if (lens[s] == l)
                codes[s] = code++;
        code <<= 1;
    }
}

/* Length symbol for a match length, from the format description. */
static unsigned length_symbol(unsigned len, unsigned *extra, uint32_t *extra_val)
{
    uint32_t v = len - 3;
    *extra = 0;
    *extra_val = 0;
    for (unsigned s = 0; s < 60; s++) {
        unsigned b = 3 + (s - 8) / 4, e = s < 8 ? 0 : b - 2;
        uint32_t base = s < 8 ? s : (uint32_t)(4 + (s - 8) % 4) << (b - 2);
        if (v >= base && v - base < (1u << e)) {
            *extra = e;
            *extra_val = v - base;
            return s;
        }
    }
    fail_msg("no length symbol for %u", len);
    return 0;
}

static unsigned distance_symbol(uint32_t dist, unsigned *extra, uint32_t *extra_val)
{
    uint32_t d = dist - 1;
    *extra = 0;
    *extra_val = 0;
    for (unsigned t = 0; t < 40; t++) {
        unsigned c = t / 2, e = t < 4 ? 0 : c - 1;
        uint32_t base = t < 4 ? t : (uint32_t)(2 + t % 2) << (c - 1);
        if (d >= base && d - base < (1u << e)) {
            *extra = e;
            *extra_val = d - base;
            return t;
        }
    }
    fail_msg("no distance symbol for %u", (unsigned)dist);
    return 0;
}

/* A Huffman block under construction. The precode gives every one of its 16
 * symbols a 4-bit code (code = symbol), unless a test sends its own. */
typedef struct {
    bits_t w;
    uint8_t llens[316], dlens[40];
    uint32_t lcodes[316], dcodes[40];
} craft_t;

static void craft_header(craft_t *c, int last, int huffman, unsigned k, uint32_t blen)
{
    put_bits(&c->w, (uint32_t)last, 1);
    put_bits(&c->w, (uint32_t)huffman, 1);
    put_bits(&c->w, k, 5);
    put_bits(&c->w, blen - 1, k);
}

static unsigned bits_needed(uint32_t v)
{
    unsigned k = 0;
    while (k < 32 && (v >> k) != 0)
        k++;
    return k;
}

/* Sends the code lengths literally, with zero runs as precode symbols 14/15. */
static void craft_lengths(craft_t *c, unsigned nl, unsigned nd)
{
    uint8_t all[356];
    unsigned total = 256 + nl + nd, i = 0;

    memcpy(all, c->llens, 256 + nl);
    memcpy(all + 256 + nl, c->dlens, nd);
    put_bits(&c->w, nl, 6);
    put_bits(&c->w, nd, 6);
    put_bits(&c->w, 15, 4);
    for (unsigned j = 0; j < 16; j++)
        put_bits(&c->w, 4, 3);
    while (i < total) {
        unsigned run = 0;
        while (i + run < total && all[i + run] == 0 && run < 138)
            run++;
        if (run >= 11) {
            put_code(&c->w, 15, 4);
            put_bits(&c->w, run - 11, 7);
            i += run;
        } else if (run >= 3) {
            put_code(&c->w, 14, 4);
            put_bits(&c->w, run - 3, 3);
            i += run;
        } else {
            put_code(&c->w, all[i], 4);
            i++;
        }
    }
    canonical(c->llens, 316, c->lcodes);
    canonical(c->dlens, 40, c->dcodes);
}

static void craft_begin(craft_t *c, int last, uint32_t blen, unsigned nl, unsigned nd)
{
    craft_header(c, last, 1, bits_needed(blen - 1), blen);
    craft_lengths(c, nl, nd);
}

static void craft_literal(craft_t *c, unsigned byte)
{
    put_code(&c->w, c->lcodes[byte], c->llens[byte]);
}

static void craft_match(craft_t *c, unsigned len, uint32_t dist)
{
    unsigned e;
    uint32_t x;
    unsigned s = length_symbol(len, &e, &x);
    put_code(&c->w, c->lcodes[256 + s], c->llens[256 + s]);
    put_bits(&c->w, x, e);
    s = distance_symbol(dist, &e, &x);
    put_code(&c->w, c->dcodes[s], c->dlens[s]);
    put_bits(&c->w, x, e);
}

/* The smallest useful block: literal 'a' and length symbol 0 (length 3) with
 * 1-bit codes, distance symbols 0 and 1 with 1-bit codes. */
static void craft_tiny(craft_t *c, int last, uint32_t blen)
{
    memset(c, 0, sizeof(*c));
    c->llens['a'] = 1;
    c->llens[256] = 1;
    c->dlens[0] = 1;
    c->dlens[1] = 1;
    craft_begin(c, last, blen, 1, 2);
}

/* Starts a stream with a stored block, not the last, of 4096 - short bytes
 * 'a' (short > 0 breaks the rule that such blocks have at least 4096). */
static void craft_stored_a(craft_t *c, unsigned short_by)
{
    memset(c, 0, sizeof(*c));
    craft_header(c, 0, 0, 12, 4096 - short_by);
    c->w.pos = 24;
    for (unsigned i = 0; i < 4096 - short_by; i++)
        put_bits(&c->w, 'a', 8);
}

static void test_lz_decompress_handmade_stream(void **state)
{
    static craft_t c;
    uint8_t out[8];
    (void)state;
    craft_tiny(&c, 1, 4);
    craft_literal(&c, 'a');
    craft_match(&c, 3, 1);
    assert_int_equal(crdt__lz_decompress(c.w.b, bits_bytes(&c.w), out, 4), 0);
    assert_memory_equal(out, "aaaa", 4);

    /* two stored blocks, the first not last: 4096 times "a", then "bc" */
    craft_stored_a(&c, 0);
    craft_header(&c, 1, 0, 1, 2);
    c.w.pos = (c.w.pos + 7) / 8 * 8;
    put_bits(&c.w, 'b', 8);
    put_bits(&c.w, 'c', 8);
    {
        uint8_t big[4098];
        assert_int_equal(crdt__lz_decompress(c.w.b, bits_bytes(&c.w), big, 4098), 0);
        for (size_t i = 0; i < 4096; i++)
            assert_int_equal(big[i], 'a');
        assert_memory_equal(big + 4096, "bc", 2);
    }
}

/* Codes a literal or a match and applies it to the reference output. */
static void ref_literal(craft_t *c, uint8_t *ref, size_t *len, unsigned v)
{
    craft_literal(c, v);
    ref[(*len)++] = (uint8_t)v;
}

static void ref_match(craft_t *c, uint8_t *ref, size_t *len, unsigned l, uint32_t d)
{
    craft_match(c, l, d);
    for (unsigned i = 0; i < l; i++, (*len)++)
        ref[*len] = ref[*len - d];
}

/* Every length and distance symbol, the longest match (65538) and the farthest
 * distance (2^20), checked against a reference decoding done here. */
static void test_lz_decompress_follows_documented_format(void **state)
{
    static craft_t c;
    const size_t n = ((size_t)1 << 20) + 70000 + 300000;
    uint8_t *ref = malloc(n), *out = malloc(n);
    size_t len = 0;
    rng_t r = {99};
    (void)state;
    assert_non_null(ref);
    assert_non_null(out);
    memset(&c, 0, sizeof(c));
    /* complete codes: 196 symbols of 8 bits + 120 of 9; 24 of 5 + 16 of 6 */
    for (unsigned s = 0; s < 316; s++)
        c.llens[s] = s < 196 ? 8 : 9;
    for (unsigned t = 0; t < 40; t++)
        c.dlens[t] = t < 24 ? 5 : 6;
    craft_begin(&c, 1, (uint32_t)n, 60, 40);

#define LIT(v) ref_literal(&c, ref, &len, (v))
#define MATCH(l, d) ref_match(&c, ref, &len, (l), (d))
    for (unsigned v = 0; v < 256; v++)
        LIT(v);
    /* one match for each length symbol, at the smallest and largest length */
    for (unsigned s = 0; s < 60; s++) {
        unsigned b = 3 + (s - 8) / 4, e = s < 8 ? 0 : b - 2;
        unsigned lo = 3 + (s < 8 ? s : (4 + (s - 8) % 4) << (b - 2));
        MATCH(lo, 1 + (unsigned)rng_below(&r, len));
        if (e > 0)
            MATCH(lo + (1u << e) - 1, 1 + (unsigned)rng_below(&r, len));
        LIT((unsigned)rng_below(&r, 256));
    }
    assert_true(len >= 65538);
    /* random matches until more than 2^20 bytes exist */
    while (len < ((size_t)1 << 20) + 1000) {
        if (rng_pct(&r, 30))
            LIT((unsigned)rng_below(&r, 256));
        else
            MATCH(3 + (unsigned)rng_below(&r, 3000), 1 + (uint32_t)rng_below(&r, len));
    }
    /* one match for each distance symbol, smallest and largest distance */
    for (unsigned t = 0; t < 40; t++) {
        unsigned cc = t / 2, e = t < 4 ? 0 : cc - 1;
        uint32_t lo = 1 + (t < 4 ? t : (2 + t % 2) << (cc - 1));
        MATCH(4, lo);
        if (e > 0)
            MATCH(5, lo + (1u << e) - 1);
    }
    assert_true(len <= n);
    while (len < n) {
        size_t left = n - len;
        if (left < 3 || rng_pct(&r, 30))
            LIT((unsigned)rng_below(&r, 256));
        else
            MATCH(3 + (unsigned)rng_below(&r, left - 3 < 500 ? left - 2 : 500),
                  1 + (uint32_t)rng_below(&r, len < 2000 ? len : 2000));
    }
#undef LIT
#undef MATCH
    assert_int_equal(crdt__lz_decompress(c.w.b, bits_bytes(&c.w), out, n), 0);
    assert_memory_equal(out, ref, n);
    free(ref);
    free(out);
}

/* Complete code lengths for n symbols (n <= 4096) in which every symbol
 * keeps a 12-bit code but the first few not marked in `keep`, shortened
 * (most first) until the Kraft sum is exactly 1. */
static void lengths_mostly_12(uint8_t *lens, unsigned n, const uint8_t *keep)
{
    unsigned left = 4096 - n; /* free code space, in 12-bit codes */
    for (unsigned s = 0; s < n; s++)
        lens[s] = 12;
    for (unsigned s = 0; s < n && left > 0; s++) {
        unsigned k = 11;
        if (keep[s])
            continue;
        while ((1u << k) - 1 > left)
            k--;
        lens[s] = (uint8_t)(12 - k);
        left -= (1u << k) - 1;
    }
    assert_int_equal(left, 0);
}

/*
 * The widest symbols: 12-bit codes for the literals used, for every length
 * symbol and for the far distance symbols, so a match with length symbol 59
 * and distance symbol 39 takes 12 + 13 + 12 + 18 = 55 bits and four literals
 * 48, the most the decoder reads per refill; after one to four literals,
 * with extra bits all zeros, all ones and random, checked against a
 * reference decoding done here.
 */
static void test_lz_decompress_widest_symbols(void **state)
{
    static craft_t c;
    const size_t n = 3000000;
    uint8_t *ref = malloc(n), *out = NULL;
    uint8_t keep[316] = {0};
    size_t len = 0;
    rng_t r = {77};
    (void)state;
    assert_non_null(ref);
    memset(&c, 0, sizeof(c));
    for (unsigned v = 'A'; v <= 'Z'; v++)
        keep[v] = 1;
    lengths_mostly_12(c.llens, 316, keep);
    memset(keep, 0, sizeof(keep));
    keep[0] = 1; /* distance 1 */
    lengths_mostly_12(c.dlens, 40, keep);
    assert_int_equal(c.llens['A'], 12);
    assert_int_equal(c.llens[256 + 59], 12);
    assert_int_equal(c.dlens[39], 12);
    craft_begin(&c, 1, (uint32_t)n, 60, 40);

#define LIT(v) ref_literal(&c, ref, &len, (v))
#define MATCH(l, d) ref_match(&c, ref, &len, (l), (d))
    LIT('A');
    while (len < 900000)
        MATCH(65538, 1); /* distance 1: a 12-bit code */
    for (unsigned i = 0; len + 65538 + 4 <= n - 100; i++) {
        /* length symbol 59: 57347 + 13 bits; distance symbol 39: 786433 +
         * 18 bits */
        uint32_t lx = i % 3 == 0 ? 0 : i % 3 == 1 ? 8191 : rng_below(&r, 8192);
        uint32_t dx = i % 3 == 0 ? 262143 : i % 3 == 1 ? 0 : rng_below(&r, 262144);
        if (786433 + dx > len)
            dx = (uint32_t)len - 786433;
        for (unsigned j = 0; j <= i % 4; j++)
            LIT('A' + (unsigned)rng_below(&r, 26));
        MATCH(57347 + lx, 786433 + dx);
    }
    MATCH((unsigned)(n - 50 - len), 786433);
    while (len < n)
        LIT('A' + (unsigned)rng_below(&r, 26));
#undef LIT
#undef MATCH
    assert_int_equal(decompress_guarded(c.w.b, bits_bytes(&c.w), n, &out), 0);
    assert_memory_equal(out, ref, n);
    free(ref);
    free(out);
}

/* One way for a stream to be wrong, built by a test below. */
static void expect_malformed(const bits_t *w, size_t dst_len, const char *what)
{
    if (decompress_guarded(w->b, bits_bytes(w), dst_len, NULL) != CRDT_EMALFORMED)
        fail_msg("accepted a stream with %s", what);
}

/* The tiny block's stream for "aaaa", with a third distance symbol whose
 * length (0) is sent as a run of 3 zeros (overrun) or as a single 0. */
static void craft_tiny_by_hand(craft_t *c, int overrun)
{
    memset(c, 0, sizeof(*c));
    craft_header(c, 1, 1, 2, 4);
    put_bits(&c->w, 1, 6);
    put_bits(&c->w, 3, 6);
    put_bits(&c->w, 15, 4);
    for (unsigned j = 0; j < 16; j++)
        put_bits(&c->w, 4, 3);
    put_code(&c->w, 15, 4);
    put_bits(&c->w, 97 - 11, 7); /* 0..96 */
    put_code(&c->w, 1, 4);       /* 'a' */
    put_code(&c->w, 15, 4);
    put_bits(&c->w, 138 - 11, 7);
    put_code(&c->w, 15, 4);
    put_bits(&c->w, 20 - 11, 7); /* up to 255 */
    put_code(&c->w, 1, 4);       /* length symbol 0 */
    put_code(&c->w, 1, 4);       /* distance symbols 0 and 1 */
    put_code(&c->w, 1, 4);
    if (overrun) {
        put_code(&c->w, 14, 4);
        put_bits(&c->w, 0, 3);
    } else {
        put_code(&c->w, 0, 4);
    }
    put_code(&c->w, 0, 1); /* 'a' */
    put_code(&c->w, 1, 1); /* length 3 */
    put_code(&c->w, 0, 1); /* distance 1 */
}

static void test_lz_decompress_rejects_bad_headers(void **state)
{
    static craft_t c;
    (void)state;

    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 0, 23, 1); /* size field wider than 22 bits */
    expect_malformed(&c.w, 1, "a 23-bit block size");

    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 0, 0, 1);
    put_bits(&c.w, 1, 1); /* nonzero padding before stored bytes */
    c.w.pos = 8;
    put_bits(&c.w, 'x', 8);
    expect_malformed(&c.w, 1, "nonzero padding before stored bytes");

    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 0, 2, 4); /* stored block longer than the input */
    c.w.pos = 8;
    put_bits(&c.w, 'x', 8);
    expect_malformed(&c.w, 4, "a stored block past the end of the input");

    craft_stored_a(&c, 0); /* no last block */
    expect_malformed(&c.w, 4096, "no last block");

    craft_stored_a(&c, 1); /* a block but the last under 4096 bytes */
    craft_header(&c, 1, 0, 0, 1);
    c.w.pos = (c.w.pos + 7) / 8 * 8;
    put_bits(&c.w, 'b', 8);
    expect_malformed(&c.w, 4096, "a short block before the last");

    craft_tiny(&c, 0, 4); /* the same with a Huffman block */
    craft_literal(&c, 'a');
    craft_match(&c, 3, 1);
    craft_header(&c, 1, 0, 0, 1);
    c.w.pos = (c.w.pos + 7) / 8 * 8;
    put_bits(&c.w, 'b', 8);
    expect_malformed(&c.w, 5, "a short Huffman block before the last");

    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 1, 0, 1);
    put_bits(&c.w, 61, 6); /* too many length symbols */
    put_bits(&c.w, 2, 6);
    expect_malformed(&c.w, 1, "61 length symbols");

    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 1, 0, 1);
    put_bits(&c.w, 1, 6);
    put_bits(&c.w, 41, 6); /* too many distance symbols */
    expect_malformed(&c.w, 1, "41 distance symbols");

    /* incomplete literal/length code: 'a' alone */
    memset(&c, 0, sizeof(c));
    c.llens['a'] = 1;
    craft_begin(&c, 1, 1, 0, 0);
    craft_literal(&c, 'a');
    expect_malformed(&c.w, 1, "an incomplete literal/length code");

    /* over-subscribed literal/length code */
    memset(&c, 0, sizeof(c));
    c.llens['a'] = 1;
    c.llens['b'] = 1;
    c.llens['c'] = 1;
    craft_begin(&c, 1, 1, 0, 0);
    expect_malformed(&c.w, 1, "an over-subscribed code");

    /* a length symbol, but no distance code */
    memset(&c, 0, sizeof(c));
    c.llens['a'] = 1;
    c.llens[256] = 1;
    craft_begin(&c, 1, 1, 1, 0);
    craft_literal(&c, 'a');
    expect_malformed(&c.w, 1, "length codes but no distance code");

    /* incomplete distance code */
    memset(&c, 0, sizeof(c));
    c.llens['a'] = 1;
    c.llens[256] = 1;
    c.dlens[0] = 1;
    craft_begin(&c, 1, 4, 1, 1);
    craft_literal(&c, 'a');
    craft_match(&c, 3, 1);
    expect_malformed(&c.w, 4, "an incomplete distance code");

    /* incomplete precode: only symbol 0 has a code */
    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 1, 0, 1);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 3, 4); /* 4 precode lengths, for symbols 14, 15, 13 and 0 */
    put_bits(&c.w, 0, 3);
    put_bits(&c.w, 0, 3);
    put_bits(&c.w, 0, 3);
    put_bits(&c.w, 1, 3);
    expect_malformed(&c.w, 1, "an incomplete precode");

    /* "repeat the previous length" as the first length */
    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 1, 0, 1);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 15, 4);
    for (unsigned j = 0; j < 16; j++)
        put_bits(&c.w, 4, 3);
    put_code(&c.w, 13, 4);
    put_bits(&c.w, 0, 2);
    expect_malformed(&c.w, 1, "a repeat with nothing to repeat");

    /* a zero run past the last length */
    memset(&c, 0, sizeof(c));
    craft_header(&c, 1, 1, 0, 1);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 0, 6);
    put_bits(&c.w, 15, 4);
    for (unsigned j = 0; j < 16; j++)
        put_bits(&c.w, 4, 3);
    put_code(&c.w, 15, 4);
    put_bits(&c.w, 127, 7); /* 138 zeros */
    put_code(&c.w, 15, 4);
    put_bits(&c.w, 127, 7); /* 276 > 256 */
    expect_malformed(&c.w, 1, "a zero run past the end");

    /* a zero run one past the end, where stopping at the end would give a
     * valid stream */
    craft_tiny_by_hand(&c, 1);
    expect_malformed(&c.w, 4, "a zero run one past the end");
    craft_tiny_by_hand(&c, 0);
    {
        uint8_t out[4];
        assert_int_equal(crdt__lz_decompress(c.w.b, bits_bytes(&c.w), out, 4), 0);
        assert_memory_equal(out, "aaaa", 4);
    }
}

static void test_lz_decompress_rejects_bad_matches(void **state)
{
    static craft_t c;
    (void)state;

    craft_tiny(&c, 1, 4);
    craft_literal(&c, 'a');
    craft_match(&c, 3, 2); /* one byte exists, distance 2 */
    expect_malformed(&c.w, 4, "a distance before the start of the output");

    craft_tiny(&c, 1, 3);
    craft_literal(&c, 'a');
    craft_match(&c, 3, 1); /* 4 bytes in a 3-byte block */
    expect_malformed(&c.w, 3, "a match past the end of its block");

    /* a match may reach into an earlier block, but not before the start */
    for (uint32_t dist = 4096; dist <= 4097; dist++) {
        static craft_t d;
        uint8_t big[4096 + 3];
        unsigned e;
        uint32_t x;
        craft_stored_a(&d, 0);
        d.llens['a'] = 1;
        d.llens[256] = 1;
        d.dlens[distance_symbol(4096, &e, &x)] = 1; /* 23 */
        d.dlens[distance_symbol(4097, &e, &x)] = 1; /* 24 */
        craft_begin(&d, 1, 3, 1, 25);
        craft_match(&d, 3, dist);
        if (dist == 4097) {
            expect_malformed(&d.w, sizeof(big), "a distance before the start of the output");
            break;
        }
        assert_int_equal(crdt__lz_decompress(d.w.b, bits_bytes(&d.w), big, sizeof(big)), 0);
        for (size_t i = 0; i < sizeof(big); i++)
            assert_int_equal(big[i], 'a');
    }

    /* nonzero bits after the last symbol */
    craft_tiny(&c, 1, 4);
    craft_literal(&c, 'a');
    craft_match(&c, 3, 1);
    assert_true(c.w.pos % 8 != 0);
    put_bits(&c.w, 1, 1);
    expect_malformed(&c.w, 4, "nonzero padding at the end");
}

/*
 * The same faults in the middle of a long block, with plenty of input after
 * them (where the decoder takes its fast path), next to the same stream made
 * right: 'a' with a 1-bit code, lengths 3 and 100 with 2-bit codes,
 * distances 1 and 200 with 1-bit codes, in a 300-byte block.
 */
static void craft_mid(craft_t *c, unsigned before, unsigned len, uint32_t dist, unsigned after)
{
    unsigned e, s3, s100, d1, d200;
    uint32_t x;
    memset(c, 0, sizeof(*c));
    s3 = length_symbol(3, &e, &x);
    s100 = length_symbol(100, &e, &x);
    d1 = distance_symbol(1, &e, &x);
    d200 = distance_symbol(200, &e, &x);
    c->llens['a'] = 1;
    c->llens[256 + s3] = 2;
    c->llens[256 + s100] = 2;
    c->dlens[d1] = 1;
    c->dlens[d200] = 1;
    craft_begin(c, 1, 300, s100 + 1, d200 + 1);
    for (unsigned i = 0; i < before; i++)
        craft_literal(c, 'a');
    craft_match(c, len, dist);
    for (unsigned i = 0; i < after; i++)
        craft_literal(c, 'a');
}

static void test_lz_decompress_rejects_bad_matches_mid_block(void **state)
{
    static craft_t c;
    uint8_t *out = NULL;
    (void)state;

    craft_mid(&c, 50, 100, 1, 150);
    assert_int_equal(decompress_guarded(c.w.b, bits_bytes(&c.w), 300, &out), 0);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(out[i], 'a');
    free(out);
    craft_mid(&c, 150, 3, 1, 147);
    assert_int_equal(decompress_guarded(c.w.b, bits_bytes(&c.w), 300, NULL), 0);
    craft_mid(&c, 250, 3, 200, 47);
    assert_int_equal(decompress_guarded(c.w.b, bits_bytes(&c.w), 300, NULL), 0);

    craft_mid(&c, 50, 3, 200, 247);
    expect_malformed(&c.w, 300, "a distance before the start of the output, mid-block");
    craft_mid(&c, 199, 100, 200, 1);
    expect_malformed(&c.w, 300, "a distance one before the start of the output, mid-block");
    craft_mid(&c, 250, 100, 1, 100);
    expect_malformed(&c.w, 300, "a match past the end of its block, mid-block");
    craft_mid(&c, 201, 100, 1, 100);
    expect_malformed(&c.w, 300, "a match one past the end of its block, mid-block");
}

/* ---- damaged real streams ----------------------------------------------------- */

static void test_lz_decompress_rejects_every_truncation(void **state)
{
    uint8_t *text = gen_text(31, 20000), *rnd = random_bytes(32, 9000);
    const uint8_t *inputs[] = {text, rnd, text};
    const size_t sizes[] = {20000, 9000, 1};
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        crdt_buf_t b = compress(inputs[k], sizes[k]);
        for (size_t cut = 0; cut < b.len; cut++) {
            if (decompress_guarded(b.base, cut, sizes[k], NULL) != CRDT_EMALFORMED)
                fail_msg("input %zu: accepted the stream cut to %zu of %zu bytes", k, cut, b.len);
        }
        crdt_buf_dispose(&b);
    }
    free(text);
    free(rnd);
}

static void test_lz_decompress_rejects_trailing_bytes(void **state)
{
    uint8_t *text = gen_text(33, 10000);
    crdt_buf_t b = compress(text, 10000);
    (void)state;
    assert_int_equal(crdt__buf_reserve(&b, 2), 0);
    for (unsigned v = 0; v < 256; v++) {
        b.base[b.len] = (uint8_t)v;
        if (decompress_guarded(b.base, b.len + 1, 10000, NULL) != CRDT_EMALFORMED)
            fail_msg("accepted a trailing byte %u", v);
    }
    crdt_buf_dispose(&b);
    free(text);
}

static void test_lz_decompress_rejects_wrong_dst_len(void **state)
{
    static const size_t sizes[] = {1, 5, 9000, 100000};
    (void)state;
    for (size_t k = 0; k < 4; k++) {
        size_t n = sizes[k];
        uint8_t *text = gen_text(34 + k, n);
        crdt_buf_t b = compress(text, n);
        const size_t wrong[] = {0, n - 1, n + 1, n + 8, n * 2, n / 2};
        for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
            if (wrong[i] == n)
                continue;
            if (decompress_guarded(b.base, b.len, wrong[i], NULL) != CRDT_EMALFORMED)
                fail_msg("%zu-byte input accepted with dst_len %zu", n, wrong[i]);
        }
        crdt_buf_dispose(&b);
        free(text);
    }
}

/* Random single-byte changes: never a crash or a write outside dst; either an
 * error or exactly dst_len bytes. Most must be caught. */
static void test_lz_decompress_survives_corruption(void **state)
{
    const uint64_t seed = 2024;
    rng_t r = {seed};
    uint8_t *text = gen_text(35, 30000), *rnd = random_bytes(36, 3000);
    const uint8_t *inputs[] = {text, rnd};
    const size_t sizes[] = {30000, 3000};
    size_t accepted = 0, tries = 0;
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        crdt_buf_t b = compress(inputs[k], sizes[k]);
        for (int i = 0; i < 3000; i++) {
            size_t at = (size_t)rng_below(&r, b.len);
            uint8_t old = b.base[at];
            b.base[at] ^= (uint8_t)(1 + rng_below(&r, 255));
            if (decompress_guarded(b.base, b.len, sizes[k], NULL) == 0)
                accepted++;
            tries++;
            b.base[at] = old;
        }
        crdt_buf_dispose(&b);
    }
    /* stored bytes can change freely; coded ones are mostly caught */
    if (accepted > tries * 3 / 4)
        fail_msg("seed %llu: %zu of %zu corruptions accepted", (unsigned long long)seed, accepted,
                 tries);
    free(text);
    free(rnd);
}

/* Every single-bit flip of a small stream. */
static void test_lz_decompress_survives_every_bit_flip(void **state)
{
    uint8_t *text = gen_text(37, 2000);
    crdt_buf_t b = compress(text, 2000);
    (void)state;
    for (size_t bit = 0; bit < b.len * 8; bit++) {
        b.base[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        decompress_guarded(b.base, b.len, 2000, NULL);
        b.base[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    crdt_buf_dispose(&b);
    free(text);
}

/* Random bytes as a stream, into various sizes. */
static void test_lz_decompress_random_input(void **state)
{
    const uint64_t seed = 555;
    rng_t r = {seed};
    uint8_t in[512];
    (void)state;
    for (int i = 0; i < 20000; i++) {
        size_t n = 1 + rng_below(&r, sizeof(in)), dst_len = rng_below(&r, 5000);
        for (size_t j = 0; j < n; j++)
            in[j] = (uint8_t)rng_next(&r);
        decompress_guarded(in, n, dst_len, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lz_compress_empty_input_gives_empty_stream),
        cmocka_unit_test(test_lz_compress_roundtrip_one_byte),
        cmocka_unit_test(test_lz_compress_roundtrip_short_inputs),
        cmocka_unit_test(test_lz_compress_roundtrip_repetitive),
        cmocka_unit_test(test_lz_compress_roundtrip_overlapping_copies),
        cmocka_unit_test(test_lz_compress_roundtrip_random),
        cmocka_unit_test(test_lz_compress_roundtrip_long_runs),
        cmocka_unit_test(test_lz_compress_roundtrip_all_byte_values),
        cmocka_unit_test(test_lz_compress_roundtrip_block_boundaries),
        cmocka_unit_test(test_lz_compress_roundtrip_text_compresses),
        cmocka_unit_test(test_lz_compress_fast_effort_roundtrips),
        cmocka_unit_test(test_lz_compress_appends_to_buffer),
        cmocka_unit_test(test_lz_compress_enomem_leaves_buffer),
        cmocka_unit_test(test_lz_decompress_handmade_stream),
        cmocka_unit_test(test_lz_decompress_follows_documented_format),
        cmocka_unit_test(test_lz_decompress_widest_symbols),
        cmocka_unit_test(test_lz_decompress_rejects_bad_headers),
        cmocka_unit_test(test_lz_decompress_rejects_bad_matches),
        cmocka_unit_test(test_lz_decompress_rejects_bad_matches_mid_block),
        cmocka_unit_test(test_lz_decompress_rejects_every_truncation),
        cmocka_unit_test(test_lz_decompress_rejects_trailing_bytes),
        cmocka_unit_test(test_lz_decompress_rejects_wrong_dst_len),
        cmocka_unit_test(test_lz_decompress_survives_corruption),
        cmocka_unit_test(test_lz_decompress_survives_every_bit_flip),
        cmocka_unit_test(test_lz_decompress_random_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
