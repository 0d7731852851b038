/* SPDX-License-Identifier: MIT */
/*
 * testutil.h: small helpers shared by the cmocka tests of crdt/ (header only, all
 * functions static inline, so each test executable stays one source file). A
 * self-contained PRNG (splitmix64) for randomized tests with fixed seeds; reading
 * a document's text; snapshots of everything observable about a document (text,
 * state vector, encoded state, pending count) to assert that a failed call left it
 * unchanged; and a decoder of encoded state vectors (format 1: version byte,
 * varint count, then per client a little-endian u64 id and a varint clock) used
 * to compare versions independently of the order the engine writes clients in.
 * Include it after <cmocka.h>.
 */
#ifndef WEFT_TESTS_CRDT_TESTUTIL_H
#define WEFT_TESTS_CRDT_TESTUTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crdt.h"

/* ---- PRNG ------------------------------------------------------------------ */

typedef struct {
    uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform-enough integer in [0, n); 0 when n is 0. */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}

/* 1 with probability pct/100. */
static inline int rng_pct(rng_t *r, unsigned pct)
{
    return rng_below(r, 100) < pct;
}

/* ---- text ------------------------------------------------------------------ */

/* The document's text as a malloc'd C string (fails the test on error). */
static inline char *doc_text(const crdt_doc_t *doc)
{
    crdt_buf_t b;
    char *s;
    int rc = crdt_doc_text(doc, &b);

    if (rc != 0)
        fail_msg("crdt_doc_text: %s", crdt_strerror(rc));
    s = malloc(b.len + 1);
    assert_non_null(s);
    memcpy(s, b.base, b.len + 1);
    crdt_buf_dispose(&b);
    return s;
}

#define assert_text(doc, expected)                                                                 \
    do {                                                                                           \
        char *text_ = doc_text(doc);                                                               \
        assert_string_equal(text_, (expected));                                                    \
        free(text_);                                                                               \
    } while (0)

#define assert_check(doc) assert_int_equal(crdt_doc_check(doc), 0)

/* UTF-16 length of valid UTF-8 `s` (n bytes). */
static inline size_t u16_len(const char *s, size_t n)
{
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        if ((b & 0xc0) != 0x80)
            u += b >= 0xf0 ? 2 : 1;
    }
    return u;
}

/*
 * Byte offset in valid UTF-8 `s` (n bytes) of UTF-16 index `u`, or SIZE_MAX if
 * `u` falls inside a character or past the end.
 */
static inline size_t u16_to_byte(const char *s, size_t n, size_t u)
{
    size_t i = 0, at = 0;
    while (at < u && i < n) {
        uint8_t b = (uint8_t)s[i];
        size_t k = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
        at += k == 4 ? 2 : 1;
        i += k;
    }
    return at == u ? i : SIZE_MAX;
}

/* ---- buffers ---------------------------------------------------------------- */

static inline int buf_equal(const crdt_buf_t *a, const crdt_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

/* ---- snapshots -------------------------------------------------------------- */

/* Everything a caller can observe about a document. */
typedef struct {
    crdt_buf_t text, sv, state;
    size_t pending, length, utf8_length;
} snap_t;

static inline void snap_take(const crdt_doc_t *doc, snap_t *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(crdt_doc_text(doc, &s->text), 0);
    assert_int_equal(crdt_doc_state_vector(doc, &s->sv), 0);
    assert_int_equal(crdt_doc_encode_state(doc, &s->state), 0);
    s->pending = crdt_doc_pending(doc);
    s->length = crdt_doc_length(doc);
    s->utf8_length = crdt_doc_utf8_length(doc);
}

static inline void snap_dispose(snap_t *s)
{
    crdt_buf_dispose(&s->text);
    crdt_buf_dispose(&s->sv);
    crdt_buf_dispose(&s->state);
}

/* NULL if `doc` still looks exactly like snapshot `s`, else what differs. */
static inline const char *snap_diff(const crdt_doc_t *doc, const snap_t *s)
{
    snap_t now;
    const char *what = NULL;

    if (crdt_doc_check(doc) != 0)
        return "crdt_doc_check failed";
    snap_take(doc, &now);
    if (!buf_equal(&now.text, &s->text))
        what = "text changed";
    else if (!buf_equal(&now.sv, &s->sv))
        what = "state vector changed";
    else if (!buf_equal(&now.state, &s->state))
        what = "encoded state changed";
    else if (now.pending != s->pending)
        what = "pending count changed";
    else if (now.length != s->length || now.utf8_length != s->utf8_length)
        what = "length changed";
    snap_dispose(&now);
    return what;
}

#define assert_unchanged(doc, snap)                                                                \
    do {                                                                                           \
        const char *what_ = snap_diff((doc), (snap));                                              \
        if (what_ != NULL)                                                                         \
            fail_msg("document not left unchanged: %s", what_);                                    \
    } while (0)

/* ---- state vectors ------------------------------------------------------------ */

typedef struct {
    uint64_t id;
    uint64_t clock;
} sv_entry_t;

#define SV_MAX_CLIENTS 64

typedef struct {
    size_t n;
    sv_entry_t e[SV_MAX_CLIENTS];
} sv_t;

static inline int sv_entry_cmp(const void *a, const void *b)
{
    const sv_entry_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Decodes state vector bytes into entries sorted by client id, dropping zero
 * clocks. Returns 0, or -1 if the bytes are not a state vector. */
static inline int sv_decode(const uint8_t *p, size_t len, sv_t *out)
{
    const uint8_t *end = p + len;
    uint64_t n = 0;
    unsigned shift = 0;

    out->n = 0;
    if (len == 0 || *p++ != 1)
        return -1;
    do {
        if (p >= end || shift > 63)
            return -1;
        n |= (uint64_t)(*p & 0x7f) << shift;
        shift += 7;
    } while (*p++ & 0x80);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = 0, clock = 0;
        if (end - p < 8)
            return -1;
        for (int k = 0; k < 8; k++)
            id |= (uint64_t)p[k] << (8 * k);
        p += 8;
        shift = 0;
        do {
            if (p >= end || shift > 63)
                return -1;
            clock |= (uint64_t)(*p & 0x7f) << shift;
            shift += 7;
        } while (*p++ & 0x80);
        if (clock == 0)
            continue;
        if (out->n == SV_MAX_CLIENTS)
            return -1;
        out->e[out->n].id = id;
        out->e[out->n].clock = clock;
        out->n++;
    }
    if (p != end)
        return -1;
    qsort(out->e, out->n, sizeof(sv_entry_t), sv_entry_cmp);
    return 0;
}

static inline void doc_sv(const crdt_doc_t *doc, sv_t *out)
{
    crdt_buf_t b;
    assert_int_equal(crdt_doc_state_vector(doc, &b), 0);
    if (sv_decode(b.base, b.len, out) != 0)
        fail_msg("crdt_doc_state_vector returned bytes that do not decode");
    crdt_buf_dispose(&b);
}

static inline int sv_equal(const sv_t *a, const sv_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->e[i].id != b->e[i].id || a->e[i].clock != b->e[i].clock)
            return 0;
    return 1;
}

/* Clock of client `id` in `sv` (0 if absent). */
static inline uint64_t sv_clock(const sv_t *sv, uint64_t id)
{
    for (size_t i = 0; i < sv->n; i++)
        if (sv->e[i].id == id)
            return sv->e[i].clock;
    return 0;
}

/* ---- update byte builder (hand-made updates for codec tests) --------------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} bytes_t;

static inline void put_u8(bytes_t *w, uint8_t v)
{
    assert_true(w->n < sizeof(w->b));
    w->b[w->n++] = v;
}

static inline void put_varint(bytes_t *w, uint64_t v)
{
    while (v >= 0x80) {
        put_u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_u8(w, (uint8_t)v);
}

static inline void put_u64(bytes_t *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        put_u8(w, (uint8_t)(v >> (8 * i)));
}

static inline void put_raw(bytes_t *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

#endif /* WEFT_TESTS_CRDT_TESTUTIL_H */
