/* SPDX-License-Identifier: MIT */
/*
 * utf.c: UTF-8 validation and the conversions between code points (the unit of
 * clocks) and UTF-16 code units (the unit of indexes in the public API).
 * Runs that are pure ASCII take a fast path: bytes == code points == units.
 */
#include "crdt_internal.h"

/* Length of the UTF-8 sequence starting with byte `b` (0 for a continuation or
 * invalid lead byte). */
static inline unsigned seq_len(uint8_t b)
{
    if (b < 0x80)
        return 1;
    if (b < 0xc2)
        return 0;
    if (b < 0xe0)
        return 2;
    if (b < 0xf0)
        return 3;
    if (b < 0xf5)
        return 4;
    return 0;
}

int crdt__utf8_scan(const uint8_t *s, size_t n, size_t *cps, size_t *u16)
{
    size_t i = 0, c = 0, u = 0;
    while (i < n) {
        uint8_t b = s[i];
        unsigned k;
        if (b < 0x80) {
            i++, c++, u++;
            /* ASCII goes on: eight bytes at a time while it lasts. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8, c += 8, u += 8;
            }
            continue;
        }
        k = seq_len(b);
        if (k == 0 || i + k > n)
            return CRDT_EUTF8;
        for (unsigned j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return CRDT_EUTF8;
        if (k == 3) {
            if (b == 0xe0 && s[i + 1] < 0xa0) /* overlong */
                return CRDT_EUTF8;
            if (b == 0xed && s[i + 1] >= 0xa0) /* surrogate */
                return CRDT_EUTF8;
        } else if (k == 4) {
            if (b == 0xf0 && s[i + 1] < 0x90) /* overlong */
                return CRDT_EUTF8;
            if (b == 0xf4 && s[i + 1] >= 0x90) /* above U+10FFFF */
                return CRDT_EUTF8;
        }
        u += k == 4 ? 2 : 1;
        c++;
        i += k;
    }
    *cps = c;
    *u16 = u;
    return 0;
}

size_t crdt__utf8_offset(const uint8_t *s, bool ascii, uint32_t cp)
{
    size_t i = 0;
    if (ascii)
        return cp;
    while (cp > 0) {
        i += seq_len(s[i]);
        cp--;
    }
    return i;
}

uint32_t crdt__utf8_u16_prefix(const uint8_t *s, bool ascii, uint32_t cp)
{
    size_t i = 0;
    uint32_t u = 0;
    if (ascii)
        return cp;
    while (cp > 0) {
        unsigned k = seq_len(s[i]);
        u += k == 4 ? 2 : 1;
        i += k;
        cp--;
    }
    return u;
}

uint32_t crdt__utf8_cp_of_u16(const uint8_t *s, bool ascii, uint32_t u16, bool *exact)
{
    size_t i = 0;
    uint32_t u = 0, c = 0;
    if (ascii) {
        *exact = true;
        return u16;
    }
    while (u < u16) {
        unsigned k = seq_len(s[i]);
        unsigned w = k == 4 ? 2 : 1;
        if (u + w > u16) {
            *exact = false;
            return c;
        }
        u += w;
        i += k;
        c++;
    }
    *exact = true;
    return c;
}

bool crdt__utf8_is_ascii(const uint8_t *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 32; i += 32) { /* whole arenas come here (snapshot.c) */
        uint64_t w[4];
        memcpy(w, s + i, 32);
        if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ull)
            return false;
    }
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull)
            return false;
    }
    for (; i < n; i++)
        if (s[i] >= 0x80)
            return false;
    return true;
}
