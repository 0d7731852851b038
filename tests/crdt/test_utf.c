/* SPDX-License-Identifier: MIT */
/*
 * test_utf.c: white-box tests of crdt/utf.c, the UTF-8 validation and the
 * conversions between code points and UTF-16 units. crdt__utf8_scan() must
 * accept exactly well-formed UTF-8 (Unicode's table 3-7): it is checked on
 * hand-picked cases (overlong 2/3/4-byte forms, surrogates, code points above
 * U+10FFFF, truncated sequences, stray continuation bytes, C0/C1/F5..FF leads)
 * and against a reference decoder written here, exhaustively for every 1- and
 * 2-byte input, every 3-byte input with an E0..EF lead, every 4-byte input with
 * an F0..F4 lead and a sample of last bytes, every Unicode scalar value, and
 * random byte strings. crdt__utf8_offset, crdt__utf8_u16_prefix and
 * crdt__utf8_cp_of_u16 are compared with tables built by the reference decoder
 * for fixed mixed strings (ASCII, 2-byte, CJK, emoji) and random valid strings,
 * including the `exact` flag inside a surrogate pair and the ASCII fast path,
 * and so is crdt__utf8_is_ascii on every prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdt_internal.h"

/* ---- reference ------------------------------------------------------------- */

/*
 * Decodes one well-formed UTF-8 sequence at s[0..n): returns its length and
 * sets *cp, or returns 0 when the bytes there are not well-formed. Written from
 * the definition: the value is assembled first, then rejected when it is a
 * surrogate, above U+10FFFF or not encoded in the fewest bytes.
 */
static size_t ref_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    size_t k;
    uint32_t v, min;
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0)
        k = 2, v = s[0] & 0x1f, min = 0x80;
    else if ((s[0] & 0xf0) == 0xe0)
        k = 3, v = s[0] & 0x0f, min = 0x800;
    else if ((s[0] & 0xf8) == 0xf0)
        k = 4, v = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return k;
}

/* Whole-string reference scan: 0 and counts, or -1. */
static int ref_scan(const uint8_t *s, size_t n, size_t *cps, size_t *u16)
{
    size_t i = 0, c = 0, u = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = ref_decode(s + i, n - i, &cp);
        if (k == 0)
            return -1;
        c++;
        u += cp >= 0x10000 ? 2 : 1;
        i += k;
    }
    *cps = c;
    *u16 = u;
    return 0;
}

/* Encodes a scalar value; returns its length. */
static size_t ref_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Compares the engine's scan of s[0..n) with the reference; returns whether
 * they agree (and prints the input when they do not). */
static bool scan_agrees(const uint8_t *s, size_t n)
{
    size_t rc = 0, ru = 0, ec = 12345, eu = 54321;
    int want = ref_scan(s, n, &rc, &ru);
    int got = crdt__utf8_scan(s, n, &ec, &eu);
    bool ok;
    if (want == 0)
        ok = got == 0 && ec == rc && eu == ru;
    else
        ok = got == CRDT_EUTF8 && ec == 12345 && eu == 54321;
    if (!ok) {
        fprintf(stderr, "scan mismatch on");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %02X", s[i]);
        fprintf(stderr, ": reference %s (%zu cps, %zu units), engine %d (%zu, %zu)\n",
                want == 0 ? "valid" : "invalid", rc, ru, got, ec, eu);
    }
    return ok;
}

/* ---- PRNG (splitmix64) ----------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng() % n);
}

/* ---- helpers ----------------------------------------------------------------- */

static void assert_valid(const char *s, size_t want_cps, size_t want_u16)
{
    size_t cps = 0, u16 = 0;
    int rc = crdt__utf8_scan((const uint8_t *)s, strlen(s), &cps, &u16);
    if (rc != 0)
        fail_msg("\"%s\" rejected: %d", s, rc);
    assert_int_equal(cps, want_cps);
    assert_int_equal(u16, want_u16);
}

static void assert_invalid_n(const uint8_t *s, size_t n)
{
    size_t cps = 777, u16 = 888;
    if (crdt__utf8_scan(s, n, &cps, &u16) != CRDT_EUTF8) {
        fprintf(stderr, "accepted:");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %02X", s[i]);
        fprintf(stderr, "\n");
        fail_msg("invalid UTF-8 accepted");
    }
    /* Outputs are untouched on failure. */
    assert_int_equal(cps, 777);
    assert_int_equal(u16, 888);
}

#define assert_invalid(...)                                                                        \
    do {                                                                                           \
        const uint8_t b_[] = {__VA_ARGS__};                                                        \
        assert_invalid_n(b_, sizeof(b_));                                                          \
    } while (0)

#define assert_valid_bytes(want_cps, want_u16, ...)                                                \
    do {                                                                                           \
        const uint8_t b_[] = {__VA_ARGS__};                                                        \
        size_t c_ = 0, u_ = 0;                                                                     \
        assert_int_equal(crdt__utf8_scan(b_, sizeof(b_), &c_, &u_), 0);                            \
        assert_int_equal(c_, (want_cps));                                                          \
        assert_int_equal(u_, (want_u16));                                                          \
    } while (0)

/*
 * Checks offset, u16_prefix and cp_of_u16 of valid UTF-8 s[0..n) at every
 * code point and every UTF-16 unit against tables from the reference decoder.
 */
static void check_conversions(const uint8_t *s, size_t n)
{
    size_t cps = 0, u16 = 0;
    size_t *byte_at, *unit_at; /* per code point index 0..cps */
    uint32_t i = 0, c = 0;

    assert_int_equal(ref_scan(s, n, &cps, &u16), 0);
    byte_at = malloc((cps + 1) * sizeof(size_t));
    unit_at = malloc((cps + 1) * sizeof(size_t));
    assert_non_null(byte_at);
    assert_non_null(unit_at);
    byte_at[0] = 0;
    unit_at[0] = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = ref_decode(s + i, n - i, &cp);
        assert_true(k > 0);
        i += (uint32_t)k;
        c++;
        byte_at[c] = i;
        unit_at[c] = unit_at[c - 1] + (cp >= 0x10000 ? 2 : 1);
    }
    /* With the ASCII hint when the string is ASCII, then counting (which
     * must give the same answers on ASCII too). */
    for (int pass = 0; pass < 2; pass++) {
        bool ascii = pass == 0 && n == cps;
        for (uint32_t p = 0; p <= cps; p++) {
            size_t off = crdt__utf8_offset(s, ascii, p);
            uint32_t pre = crdt__utf8_u16_prefix(s, ascii, p);
            if (off != byte_at[p] || pre != unit_at[p])
                fail_msg("cp %u: offset %zu (want %zu), u16 prefix %u (want %zu)", p, off,
                         byte_at[p], pre, unit_at[p]);
        }
        for (uint32_t u = 0, p = 0; u <= u16; u++) {
            bool exact = !(u & 1); /* poison */
            uint32_t got = crdt__utf8_cp_of_u16(s, ascii, u, &exact);
            bool want_exact;
            while (p < cps && unit_at[p + 1] <= u)
                p++;
            want_exact = unit_at[p] == u;
            if (got != p || exact != want_exact)
                fail_msg("unit %u: %u code points, exact %d (want %u, %d)", u, got, exact, p,
                         want_exact);
        }
    }
    /* Every prefix is ASCII exactly when its bytes are its code points. */
    for (uint32_t p = 0; p <= cps; p++)
        if (crdt__utf8_is_ascii(s, byte_at[p]) != (byte_at[p] == p))
            fail_msg("prefix of %u code points: is_ascii wrong", p);
    free(byte_at);
    free(unit_at);
}

/* ---- crdt__utf8_scan ---------------------------------------------------------- */

static void test_utf8_scan_counts_ascii(void **state)
{
    (void)state;
    assert_valid("", 0, 0);
    assert_valid("a", 1, 1);
    assert_valid("hello, world", 12, 12);
    {
        /* Every ASCII byte, NUL included. */
        uint8_t all[128];
        size_t cps, u16;
        for (int i = 0; i < 128; i++)
            all[i] = (uint8_t)i;
        assert_int_equal(crdt__utf8_scan(all, sizeof(all), &cps, &u16), 0);
        assert_int_equal(cps, 128);
        assert_int_equal(u16, 128);
    }
}

static void test_utf8_scan_counts_two_byte(void **state)
{
    (void)state;
    assert_valid("\xc3\xa9", 1, 1);                 /* é U+00E9 */
    assert_valid("caf\xc3\xa9", 4, 4);              /* café */
    assert_valid("\xc2\x80", 1, 1);                 /* U+0080, smallest 2-byte */
    assert_valid("\xdf\xbf", 1, 1);                 /* U+07FF, largest 2-byte */
    assert_valid("\xd0\x9f\xd1\x80\xd0\xb8", 3, 3); /* При */
}

static void test_utf8_scan_counts_cjk(void **state)
{
    (void)state;
    assert_valid("\xe4\xb8\xad\xe6\x96\x87", 2, 2); /* 中文 */
    assert_valid("\xe0\xa0\x80", 1, 1);             /* U+0800, smallest 3-byte */
    assert_valid("\xed\x9f\xbf", 1, 1);             /* U+D7FF, just below the surrogates */
    assert_valid("\xee\x80\x80", 1, 1);             /* U+E000, just above them */
    assert_valid("\xef\xbf\xbf", 1, 1);             /* U+FFFF, largest 3-byte */
    assert_valid("a\xe4\xb8\xad"
                 "b",
                 3, 3);
}

static void test_utf8_scan_counts_emoji(void **state)
{
    (void)state;
    assert_valid("\xf0\x9f\x98\x80", 1, 2);                   /* U+1F600 */
    assert_valid("\xf0\x90\x80\x80", 1, 2);                   /* U+10000, smallest 4-byte */
    assert_valid("\xf4\x8f\xbf\xbf", 1, 2);                   /* U+10FFFF, the last one */
    assert_valid("a\xf0\x9f\x98\x80\xf0\x9f\x98\x81z", 4, 6); /* a😀😁z */
    /* Mixed: a é 中 😀 b -> 5 code points, 6 units. */
    assert_valid("a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"
                 "b",
                 5, 6);
}

static void test_utf8_scan_rejects_overlong(void **state)
{
    (void)state;
    assert_invalid(0xc0, 0x80); /* U+0000 in 2 bytes */
    assert_invalid(0xc0, 0xaf); /* '/' in 2 bytes */
    assert_invalid(0xc1, 0xbf); /* U+007F in 2 bytes */
    assert_invalid(0xe0, 0x80, 0x80);
    assert_invalid(0xe0, 0x80, 0xaf);
    assert_invalid(0xe0, 0x9f, 0xbf); /* U+07FF in 3 bytes */
    assert_invalid(0xf0, 0x80, 0x80, 0x80);
    assert_invalid(0xf0, 0x80, 0x80, 0xaf);
    assert_invalid(0xf0, 0x8f, 0xbf, 0xbf); /* U+FFFF in 4 bytes */
    /* The same after valid text. */
    assert_invalid('o', 'k', 0xe0, 0x9f, 0xbf);
}

static void test_utf8_scan_rejects_surrogates(void **state)
{
    (void)state;
    assert_invalid(0xed, 0xa0, 0x80); /* U+D800 */
    assert_invalid(0xed, 0xad, 0xbf); /* U+DB7F */
    assert_invalid(0xed, 0xb0, 0x80); /* U+DC00 */
    assert_invalid(0xed, 0xbf, 0xbf); /* U+DFFF */
    /* A surrogate pair encoded as two 3-byte sequences (CESU-8) is not UTF-8. */
    assert_invalid(0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80);
    assert_valid_bytes(1, 1, 0xed, 0x9f, 0xbf); /* U+D7FF is fine */
}

static void test_utf8_scan_rejects_above_max(void **state)
{
    (void)state;
    assert_invalid(0xf4, 0x90, 0x80, 0x80); /* U+110000 */
    assert_invalid(0xf4, 0xbf, 0xbf, 0xbf);
    assert_invalid(0xf5, 0x80, 0x80, 0x80);
    assert_invalid(0xf7, 0xbf, 0xbf, 0xbf); /* U+1FFFFF */
    assert_valid_bytes(1, 2, 0xf4, 0x8f, 0xbf, 0xbf);
}

static void test_utf8_scan_rejects_truncated(void **state)
{
    (void)state;
    assert_invalid(0xc3);
    assert_invalid(0xe4);
    assert_invalid(0xe4, 0xb8);
    assert_invalid(0xf0);
    assert_invalid(0xf0, 0x9f);
    assert_invalid(0xf0, 0x9f, 0x98);
    /* Cut short by the next character rather than by the end. */
    assert_invalid(0xc3, 'a');
    assert_invalid(0xe4, 0xb8, 'a');
    assert_invalid(0xf0, 0x9f, 0x98, 'a');
    assert_invalid(0xe4, 0xb8, 0xe4, 0xb8, 0xad);
    assert_invalid(0xf0, 0x9f, 0xc3, 0xa9);
    /* Every proper prefix of a valid multi-byte character at the end. */
    {
        const uint8_t s[] = {'x', 0xf0, 0x9f, 0x98, 0x80};
        for (size_t n = 2; n < sizeof(s); n++)
            assert_invalid_n(s, n);
    }
}

static void test_utf8_scan_rejects_stray_continuation(void **state)
{
    (void)state;
    assert_invalid(0x80);
    assert_invalid(0xbf);
    assert_invalid('a', 0x80, 'b');
    assert_invalid(0xc3, 0xa9, 0xa9); /* one continuation too many */
    assert_invalid(0xe4, 0xb8, 0xad, 0x80);
    assert_invalid(0xf0, 0x9f, 0x98, 0x80, 0x80);
    for (unsigned b = 0x80; b < 0xc0; b++)
        assert_invalid((uint8_t)b);
}

static void test_utf8_scan_rejects_bad_leads(void **state)
{
    (void)state;
    /* C0 and C1 can only start overlong forms. */
    for (unsigned t = 0x80; t < 0xc0; t++) {
        assert_invalid(0xc0, (uint8_t)t);
        assert_invalid(0xc1, (uint8_t)t);
    }
    /* F5..FF never start a sequence. */
    for (unsigned b = 0xf5; b <= 0xff; b++) {
        assert_invalid((uint8_t)b);
        assert_invalid((uint8_t)b, 0x80, 0x80, 0x80);
        assert_invalid('a', (uint8_t)b, 0x80, 0x80, 0x80);
    }
}

static void test_utf8_scan_matches_reference_one_and_two_bytes(void **state)
{
    unsigned bad = 0;
    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        uint8_t s[1] = {(uint8_t)a};
        bad += !scan_agrees(s, 1);
    }
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            bad += !scan_agrees(s, 2);
        }
    assert_int_equal(bad, 0);
}

static void test_utf8_scan_matches_reference_three_bytes(void **state)
{
    unsigned bad = 0;
    (void)state;
    /* Every sequence with a 3-byte lead. */
    for (unsigned a = 0xe0; a < 0xf0; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c++) {
                uint8_t s[3] = {(uint8_t)a, (uint8_t)b, (uint8_t)c};
                bad += !scan_agrees(s, 3);
            }
    /* A random sample of all others. */
    rng_state = 3;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rng();
        uint8_t s[3] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16)};
        if (!scan_agrees(s, 3)) {
            fprintf(stderr, "seed 3, iteration %d\n", i);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_utf8_scan_matches_reference_four_bytes(void **state)
{
    /* Last bytes that cover each class: ASCII, continuation edges, leads. */
    static const uint8_t last[] = {0x00, 0x41, 0x7f, 0x80, 0x9f, 0xa0,
                                   0xbf, 0xc0, 0xe0, 0xf0, 0xff};
    unsigned bad = 0;
    (void)state;
    for (unsigned a = 0xf0; a < 0xf8; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c++)
                for (size_t d = 0; d < sizeof(last); d++) {
                    uint8_t s[4] = {(uint8_t)a, (uint8_t)b, (uint8_t)c, last[d]};
                    bad += !scan_agrees(s, 4);
                }
    rng_state = 4;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rng();
        uint8_t s[4] = {(uint8_t)(0xf0 | (r & 7)), (uint8_t)(r >> 8), (uint8_t)(r >> 16),
                        (uint8_t)(r >> 24)};
        if (!scan_agrees(s, 4)) {
            fprintf(stderr, "seed 4, iteration %d\n", i);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_utf8_scan_accepts_every_scalar_value(void **state)
{
    unsigned bad = 0;
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        uint8_t s[4];
        size_t n, cps = 0, u16 = 0;
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        n = ref_encode(cp, s);
        if (crdt__utf8_scan(s, n, &cps, &u16) != 0 || cps != 1 ||
            u16 != (cp >= 0x10000 ? 2u : 1u)) {
            if (bad++ < 10)
                fprintf(stderr, "U+%04X: rejected or miscounted\n", (unsigned)cp);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_utf8_scan_matches_reference_random_strings(void **state)
{
    /* Bytes biased towards the interesting ranges, strings up to 24 bytes. */
    static const uint8_t pool[] = {'a',  0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                   0xc0, 0xc1, 0xc2, 0xc3, 0xdf, 0xe0, 0xe4, 0xed, 0xef,
                                   0xf0, 0xf3, 0xf4, 0xf5, 0xf8, 0xfe, 0xff};
    unsigned bad = 0;
    (void)state;
    rng_state = 5;
    for (int i = 0; i < 300000; i++) {
        uint8_t s[24];
        size_t n = rng_below(sizeof(s) + 1);
        for (size_t k = 0; k < n; k++)
            s[k] = rng_below(3) == 0 ? (uint8_t)rng() : pool[rng_below(sizeof(pool))];
        if (!scan_agrees(s, n)) {
            fprintf(stderr, "seed 5, iteration %d\n", i);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* ---- conversions ------------------------------------------------------------ */

static void test_utf8_offset_mixed_string(void **state)
{
    /* a é 中 😀 b: bytes 0,1,3,6,10,11 */
    const uint8_t *s = (const uint8_t *)"a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"
                                        "b";
    static const size_t want[] = {0, 1, 3, 6, 10, 11};
    (void)state;
    for (uint32_t cp = 0; cp < 6; cp++)
        assert_int_equal(crdt__utf8_offset(s, false, cp), want[cp]);
    check_conversions(s, 11);
}

static void test_utf8_offset_ascii_fast_path(void **state)
{
    const uint8_t *s = (const uint8_t *)"hello";
    (void)state;
    for (uint32_t cp = 0; cp <= 5; cp++) {
        bool exact = false;
        assert_int_equal(crdt__utf8_offset(s, true, cp), cp);
        assert_int_equal(crdt__utf8_u16_prefix(s, true, cp), cp);
        assert_int_equal(crdt__utf8_cp_of_u16(s, true, cp, &exact), cp);
        assert_true(exact);
    }
    check_conversions(s, 5);
}

static void test_utf8_u16_prefix_mixed_string(void **state)
{
    /* 😀 a 😁 é: units 0,2,3,5,6 */
    const uint8_t *s = (const uint8_t *)"\xf0\x9f\x98\x80"
                                        "a\xf0\x9f\x98\x81\xc3\xa9";
    static const uint32_t want[] = {0, 2, 3, 5, 6};
    (void)state;
    for (uint32_t cp = 0; cp < 5; cp++)
        assert_int_equal(crdt__utf8_u16_prefix(s, false, cp), want[cp]);
    check_conversions(s, 11);
}

static void test_utf8_cp_of_u16_inexact_inside_surrogate_pair(void **state)
{
    /* a 😀 b: unit 2 is the low half of the emoji. */
    const uint8_t *s = (const uint8_t *)"a\xf0\x9f\x98\x80"
                                        "b";
    bool exact;
    (void)state;
    exact = false;
    assert_int_equal(crdt__utf8_cp_of_u16(s, false, 0, &exact), 0);
    assert_true(exact);
    exact = false;
    assert_int_equal(crdt__utf8_cp_of_u16(s, false, 1, &exact), 1);
    assert_true(exact);
    exact = true;
    assert_int_equal(crdt__utf8_cp_of_u16(s, false, 2, &exact), 1);
    assert_false(exact);
    exact = false;
    assert_int_equal(crdt__utf8_cp_of_u16(s, false, 3, &exact), 2);
    assert_true(exact);
    exact = false;
    assert_int_equal(crdt__utf8_cp_of_u16(s, false, 4, &exact), 3);
    assert_true(exact);
    /* Two emoji in a row: units 1 and 3 are inside. */
    {
        const uint8_t *e = (const uint8_t *)"\xf0\x9f\x98\x80\xf0\x9f\x98\x81";
        static const uint32_t cps[] = {0, 0, 1, 1, 2};
        for (uint32_t u = 0; u <= 4; u++) {
            exact = (u & 1) != 0;
            assert_int_equal(crdt__utf8_cp_of_u16(e, false, u, &exact), cps[u]);
            assert_int_equal(exact, (u & 1) == 0);
        }
    }
    check_conversions(s, 6);
}

static void test_utf8_cp_of_u16_bmp_is_always_exact(void **state)
{
    /* é 中 文 x: 4 code points, 4 units, every unit a boundary. */
    const uint8_t *s = (const uint8_t *)"\xc3\xa9\xe4\xb8\xad\xe6\x96\x87x";
    (void)state;
    for (uint32_t u = 0; u <= 4; u++) {
        bool exact = false;
        assert_int_equal(crdt__utf8_cp_of_u16(s, false, u, &exact), u);
        assert_true(exact);
    }
    check_conversions(s, 9);
}

static void test_utf8_u16_conversions_match_reference_random_strings(void **state)
{
    (void)state;
    rng_state = 6;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t s[4 * 64];
        size_t n = 0, cps = rng_below(64) + 1;
        unsigned mix = rng_below(4); /* 0: ASCII only, else mixed */
        for (size_t k = 0; k < cps; k++) {
            uint32_t cls = mix == 0 ? 0 : rng_below(4), cp;
            if (cls == 0)
                cp = rng_below(0x80);
            else if (cls == 1)
                cp = 0x80 + rng_below(0x800 - 0x80);
            else if (cls == 2) {
                do
                    cp = 0x800 + rng_below(0x10000 - 0x800);
                while (cp >= 0xd800 && cp <= 0xdfff);
            } else
                cp = 0x10000 + rng_below(0x110000 - 0x10000);
            n += ref_encode(cp, s + n);
        }
        {
            size_t c = 0, u = 0;
            if (crdt__utf8_scan(s, n, &c, &u) != 0 || c != cps)
                fail_msg("seed 6, iteration %d: valid string rejected or miscounted", iter);
        }
        check_conversions(s, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_scan_counts_ascii),
        cmocka_unit_test(test_utf8_scan_counts_two_byte),
        cmocka_unit_test(test_utf8_scan_counts_cjk),
        cmocka_unit_test(test_utf8_scan_counts_emoji),
        cmocka_unit_test(test_utf8_scan_rejects_overlong),
        cmocka_unit_test(test_utf8_scan_rejects_surrogates),
        cmocka_unit_test(test_utf8_scan_rejects_above_max),
        cmocka_unit_test(test_utf8_scan_rejects_truncated),
        cmocka_unit_test(test_utf8_scan_rejects_stray_continuation),
        cmocka_unit_test(test_utf8_scan_rejects_bad_leads),
        cmocka_unit_test(test_utf8_scan_matches_reference_one_and_two_bytes),
        cmocka_unit_test(test_utf8_scan_matches_reference_three_bytes),
        cmocka_unit_test(test_utf8_scan_matches_reference_four_bytes),
        cmocka_unit_test(test_utf8_scan_accepts_every_scalar_value),
        cmocka_unit_test(test_utf8_scan_matches_reference_random_strings),
        cmocka_unit_test(test_utf8_offset_mixed_string),
        cmocka_unit_test(test_utf8_offset_ascii_fast_path),
        cmocka_unit_test(test_utf8_u16_prefix_mixed_string),
        cmocka_unit_test(test_utf8_cp_of_u16_inexact_inside_surrogate_pair),
        cmocka_unit_test(test_utf8_cp_of_u16_bmp_is_always_exact),
        cmocka_unit_test(test_utf8_u16_conversions_match_reference_random_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
