/* SPDX-License-Identifier: MIT */
/*
 * test_snapshot.c: the encoded state of a whole document (crdt/snapshot.c,
 * format 2 in docs/update-format.md) through crdt_doc_encode_state(),
 * crdt_doc_load() and crdt_doc_apply_update(). Round trips of an empty
 * document, one client, many clients with concurrent edits and deletes,
 * non-ASCII text with emoji, and documents whose body is large enough to be
 * compressed or small enough not to be: the loaded document passes
 * crdt_doc_check(), has the same text, state vector bytes and re-encoded
 * state, gives the recorded text for every version recorded during the
 * session (crdt_doc_text_at), and keeps editing: its edits and the
 * original's, made concurrently, merge to one text. A state applied as an
 * update to an empty document, to one holding part of the history and to one
 * holding other concurrent edits gives the same text. Both body forms (plain
 * and LZ-compressed; the test makes the missing one itself with crdt/lz.c)
 * are loaded. Hostile input: every truncation is rejected with
 * CRDT_EMALFORMED or CRDT_EFORMAT and leaks nothing, random byte flips never
 * crash and either fail or give a document that passes crdt_doc_check() and
 * keeps doing so through further updates and edits,
 * huge declared counts and body sizes are rejected without a large
 * allocation (the test allocator's peak stays small), unknown flags are
 * CRDT_EFORMAT, and failed allocations at every point of a load leak nothing.
 * Hand-made states that crdt_doc_apply_update() rejects (an origin or delete
 * target at the same client's own or later clock) must be rejected by
 * crdt_doc_load() too, and a state whose items' deleted flags disagree with
 * its delete records must not load into a document other than the one
 * crdt_doc_apply_update() makes of it; delete targets covering items whole,
 * in parts, overlapping or across items are read alike by all three readers.
 * crdt_doc_load_trusted() gives the document crdt_doc_load() gives (also to
 * the state's own replica, and after further edits), and leaks nothing when
 * any allocation fails. The engine's allocator calls are checked never to
 * pass size 0.
 * Randomized tests use fixed seeds and print them on failure.
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
#include "lz.h"
#include "test_alloc.h"
#include "test_rng.h"

/* ---- allocator and documents ------------------------------------------------- */

/* Every document lives in the test allocator `ta`, which also counts calls
 * breaking crdt.h's promise that sizes are never 0; both are checked when
 * each test ends. */
static test_alloc_t ta;
#define strict (ta.alloc)

static int setup(void **state)
{
    (void)state;
    test_alloc_init(&ta);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_alloc_check_clean(&ta);
}

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *d = NULL;
    assert_int_equal(crdt_doc_new(client, &strict, &d), 0);
    return d;
}

static crdt_doc_t *load(uint64_t client, const crdt_buf_t *st)
{
    crdt_doc_t *d = NULL;
    int rc = crdt_doc_load(client, &strict, st->base, st->len, &d);
    if (rc != 0)
        fail_msg("crdt_doc_load: %s", crdt_strerror(rc));
    if (crdt_doc_check(d) != 0)
        fail_msg("loaded document fails crdt_doc_check");
    return d;
}

static void encode(const crdt_doc_t *d, crdt_buf_t *st)
{
    assert_int_equal(crdt_doc_encode_state(d, st), 0);
}

static void apply(crdt_doc_t *d, const crdt_buf_t *u)
{
    int rc = crdt_doc_apply_update(d, u->base, u->len);
    if (rc != 0)
        fail_msg("crdt_doc_apply_update: %s", crdt_strerror(rc));
    if (crdt_doc_check(d) != 0)
        fail_msg("document fails crdt_doc_check after apply");
}

/* Brings `dst` up to date with `src` through a diff. */
static void sync_from(crdt_doc_t *dst, const crdt_doc_t *src)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(dst, &sv), 0);
    assert_int_equal(crdt_doc_diff(src, sv.base, sv.len, &d), 0);
    apply(dst, &d);
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
}

static bool same_bytes(const crdt_buf_t *a, const crdt_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

/* Text, state vector and lengths of two documents are equal. */
static void assert_same_doc(const crdt_doc_t *a, const crdt_doc_t *b)
{
    crdt_buf_t ta_, tb, sa, sb;
    assert_int_equal(crdt_doc_text(a, &ta_), 0);
    assert_int_equal(crdt_doc_text(b, &tb), 0);
    if (!same_bytes(&ta_, &tb))
        fail_msg("texts differ:\n  \"%s\"\n  \"%s\"", (const char *)ta_.base,
                 (const char *)tb.base);
    assert_int_equal(crdt_doc_state_vector(a, &sa), 0);
    assert_int_equal(crdt_doc_state_vector(b, &sb), 0);
    if (!same_bytes(&sa, &sb))
        fail_msg("state vectors differ");
    assert_int_equal(crdt_doc_length(a), crdt_doc_length(b));
    assert_int_equal(crdt_doc_utf8_length(a), crdt_doc_utf8_length(b));
    crdt_buf_dispose(&ta_);
    crdt_buf_dispose(&tb);
    crdt_buf_dispose(&sa);
    crdt_buf_dispose(&sb);
}

/* ---- random editing ---------------------------------------------------------- */

static const char *const alphabet[] = {
    "a", "b", "e", "o", " ", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xf0\x9f\x91\x8d"};
#define NALPHA 9
#define ASCII_ONLY 5

static size_t char_len(uint8_t lead)
{
    return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/* UTF-16 index of character `k` of UTF-8 text t[0..n), and in *units the UTF-16
 * units of the `cnt` characters from there. */
static size_t unit_of_char(const uint8_t *t, size_t n, size_t k, size_t cnt, size_t *units)
{
    size_t i = 0, u = 0, w = 0;
    while (k-- > 0 && i < n) {
        u += char_len(t[i]) == 4 ? 2 : 1;
        i += char_len(t[i]);
    }
    while (cnt-- > 0 && i < n) {
        w += char_len(t[i]) == 4 ? 2 : 1;
        i += char_len(t[i]);
    }
    if (units)
        *units = w;
    return u;
}

static size_t count_chars(const uint8_t *t, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i += char_len(t[i]))
        c++;
    return c;
}

/*
 * One random local edit of `d`: an insert of 1..4 characters or a delete of
 * 1..5 characters, or a typing burst (characters typed one by one, then some
 * backspaced one by one). `ascii` limits the alphabet. Updates are dropped:
 * replicas exchange diffs.
 */
static void random_edit(crdt_doc_t *d, rng_t *r, bool ascii)
{
    crdt_buf_t t;
    size_t chars, u, w;
    uint32_t kind = rng_below(r, 10);
    assert_int_equal(crdt_doc_text(d, &t), 0);
    chars = count_chars(t.base, t.len);
    if (chars > 0 && kind < 3) {
        size_t k = rng_below(r, (uint32_t)chars);
        u = unit_of_char(t.base, t.len, k, rng_below(r, 5) + 1, &w);
        assert_int_equal(crdt_doc_delete(d, u, w, NULL), 0);
    } else if (kind < 8) {
        char s[17] = "";
        for (uint32_t j = rng_below(r, 4) + 1; j > 0; j--)
            strcat(s, alphabet[rng_below(r, ascii ? ASCII_ONLY : NALPHA)]);
        u = unit_of_char(t.base, t.len, rng_below(r, (uint32_t)chars + 1), 0, NULL);
        assert_int_equal(crdt_doc_insert(d, u, s, strlen(s), NULL), 0);
    } else {
        uint32_t typed = rng_below(r, 6) + 2, back = rng_below(r, typed + 1);
        u = unit_of_char(t.base, t.len, rng_below(r, (uint32_t)chars + 1), 0, NULL);
        size_t at = u;
        size_t widths[8];
        for (uint32_t j = 0; j < typed; j++) {
            const char *c = alphabet[rng_below(r, ascii ? ASCII_ONLY : NALPHA)];
            assert_int_equal(crdt_doc_insert(d, at, c, strlen(c), NULL), 0);
            widths[j] = strlen(c) == 4 ? 2 : 1;
            at += widths[j];
        }
        for (uint32_t j = 0; j < back; j++) {
            at -= widths[typed - 1 - j];
            assert_int_equal(crdt_doc_delete(d, at, widths[typed - 1 - j], NULL), 0);
        }
    }
    crdt_buf_dispose(&t);
}

/* ---- sessions: replicas editing concurrently, with recorded versions ------------ */

#define MAXREP 6
#define MAXVER 48

typedef struct {
    crdt_buf_t sv;
    crdt_buf_t text;
} version_t;

typedef struct {
    crdt_doc_t *d[MAXREP];
    int n;
    rng_t r;
    version_t v[MAXVER];
    int nv;
    crdt_buf_t mid_state; /* replica 0's state half-way through */
} session_t;

static void record_version(session_t *s, const crdt_doc_t *d)
{
    version_t *v;
    if (s->nv == MAXVER)
        return;
    v = &s->v[s->nv++];
    assert_int_equal(crdt_doc_state_vector(d, &v->sv), 0);
    assert_int_equal(crdt_doc_text(d, &v->text), 0);
}

/*
 * Runs `steps` random edits over `n` replicas (client ids 101, 102, ...),
 * with random pairwise syncs, recording versions along the way, and ends with
 * every replica holding everything (unless `leave_apart`).
 */
static void session_run(session_t *s, int n, int steps, uint64_t seed, bool ascii, bool leave_apart)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    rng_init(&s->r, seed);
    for (int i = 0; i < n; i++)
        s->d[i] = new_doc(101 + (uint64_t)i);
    for (int step = 0; step < steps; step++) {
        int i = (int)rng_below(&s->r, (uint32_t)n);
        random_edit(s->d[i], &s->r, ascii);
        if (n > 1 && rng_below(&s->r, 4) == 0) {
            int j = (int)rng_below(&s->r, (uint32_t)n);
            if (j != i)
                sync_from(s->d[j], s->d[i]);
        }
        if (rng_below(&s->r, (uint32_t)(steps / MAXVER + 1)) == 0)
            record_version(s, s->d[rng_below(&s->r, (uint32_t)n)]);
        if (step == steps / 2)
            encode(s->d[0], &s->mid_state);
    }
    if (s->mid_state.base == NULL)
        encode(s->d[0], &s->mid_state);
    if (!leave_apart) {
        for (int i = 1; i < n; i++)
            sync_from(s->d[0], s->d[i]);
        for (int i = 1; i < n; i++)
            sync_from(s->d[i], s->d[0]);
        for (int i = 0; i < n; i++)
            if (crdt_doc_check(s->d[i]) != 0)
                fail_msg("seed %#llx: replica %d fails crdt_doc_check", (unsigned long long)seed,
                         i);
    }
    record_version(s, s->d[0]);
}

static void session_free(session_t *s)
{
    for (int i = 0; i < s->n; i++)
        crdt_doc_free(s->d[i]);
    for (int i = 0; i < s->nv; i++) {
        crdt_buf_dispose(&s->v[i].sv);
        crdt_buf_dispose(&s->v[i].text);
    }
    crdt_buf_dispose(&s->mid_state);
}

/* Every recorded version gives its recorded text on `d`. */
static void assert_versions(const session_t *s, const crdt_doc_t *d)
{
    for (int i = 0; i < s->nv; i++) {
        crdt_buf_t t;
        int rc = crdt_doc_text_at(d, s->v[i].sv.base, s->v[i].sv.len, &t);
        if (rc != 0)
            fail_msg("seed %#llx: text_at(version %d): %s", (unsigned long long)s->r.seed, i,
                     crdt_strerror(rc));
        if (!same_bytes(&t, &s->v[i].text))
            fail_msg("seed %#llx: text_at(version %d) is\n  \"%s\", recorded\n  \"%s\"",
                     (unsigned long long)s->r.seed, i, (const char *)t.base,
                     (const char *)s->v[i].text.base);
        crdt_buf_dispose(&t);
    }
}

/*
 * The full round-trip check of document `o` (a replica of session `s`, or
 * NULL): load its state, compare everything, re-encode, apply the state to an
 * empty document and to `o` itself (a no-op), then edit the loaded copy and
 * the original concurrently and check they merge.
 */
static void check_round_trip(crdt_doc_t *o, const session_t *s, uint64_t seed)
{
    crdt_buf_t st, st2, t0, t1;
    crdt_doc_t *l, *e;
    rng_t r;
    rng_init(&r, seed);

    encode(o, &st);
    assert_true(st.len >= 2);
    assert_int_equal(st.base[0], 2);
    l = load(777, &st);
    assert_same_doc(o, l);
    assert_int_equal(crdt_doc_pending(l), 0);
    assert_int_equal(crdt_doc_client(l), 777);
    encode(l, &st2);
    if (!same_bytes(&st, &st2))
        fail_msg("seed %#llx: the loaded document re-encodes differently (%zu vs %zu bytes)",
                 (unsigned long long)seed, st.len, st2.len);
    crdt_buf_dispose(&st2);
    if (s)
        assert_versions(s, l);

    /* As an update: onto an empty document, and onto the original. */
    e = new_doc(778);
    apply(e, &st);
    assert_same_doc(o, e);
    if (s)
        assert_versions(s, e);
    assert_int_equal(crdt_doc_text(o, &t0), 0);
    apply(o, &st);
    assert_int_equal(crdt_doc_text(o, &t1), 0);
    assert_true(same_bytes(&t0, &t1));
    crdt_buf_dispose(&t0);
    crdt_buf_dispose(&t1);

    /* Keep editing: l and o concurrently, then exchange; e follows both. */
    for (int i = 0; i < 60; i++) {
        random_edit(l, &r, false);
        random_edit(o, &r, false);
        if (i % 3 == 2) {
            sync_from(o, l);
            sync_from(l, o);
            assert_same_doc(o, l);
        }
    }
    sync_from(o, l);
    sync_from(l, o);
    sync_from(e, l);
    assert_same_doc(o, l);
    assert_same_doc(o, e);
    if (s)
        assert_versions(s, l);
    crdt_doc_free(l);
    crdt_doc_free(e);
    crdt_buf_dispose(&st);
}

/* ---- body forms ------------------------------------------------------------------ */

static uint64_t read_varint(const uint8_t *p, size_t n, size_t *at)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
        assert_true(*at < n && shift < 64);
        v |= (uint64_t)(p[*at] & 0x7f) << shift;
        shift += 7;
        if (!(p[(*at)++] & 0x80))
            return v;
    }
}

static void buf_put(crdt_buf_t *b, const void *p, size_t n)
{
    assert_int_equal(crdt__buf_reserve(b, n), 0);
    memcpy(b->base + b->len, p, n);
    b->len += n;
    b->base[b->len] = 0;
}

static void buf_put_varint(crdt_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    buf_put(b, tmp, n);
}

/* Offset of the body (after the client table) of a state. */
static size_t header_len(const crdt_buf_t *st)
{
    size_t at = 2;
    uint64_t n = read_varint(st->base, st->len, &at);
    for (uint64_t c = 0; c < n; c++) {
        at += 8;
        (void)read_varint(st->base, st->len, &at);
        (void)read_varint(st->base, st->len, &at);
    }
    return at;
}

/* The same state with its body stored plain (`lz` false) or compressed. */
static void state_form(const crdt_buf_t *st, bool lz, crdt_buf_t *out)
{
    size_t h = header_len(st), at = h, body_len;
    uint8_t *body;
    if (st->base[1] & 1) {
        body_len = (size_t)read_varint(st->base, st->len, &at);
        body = malloc(body_len + 1);
        assert_non_null(body);
        assert_int_equal(crdt__lz_decompress(st->base + at, st->len - at, body, body_len), 0);
    } else {
        body_len = st->len - h;
        body = malloc(body_len + 1);
        assert_non_null(body);
        memcpy(body, st->base + h, body_len);
    }
    assert_int_equal(crdt__buf_init(&strict, out, 64), 0);
    buf_put(out, st->base, h);
    out->base[1] = lz ? 1 : 0;
    if (lz) {
        buf_put_varint(out, body_len);
        assert_int_equal(crdt__lz_compress(&strict, body, body_len, out), 0);
    } else {
        buf_put(out, body, body_len);
    }
    free(body);
}

/* ---- hostile-input helpers ------------------------------------------------------ */

static bool is_reject(int rc)
{
    return rc == CRDT_EMALFORMED || rc == CRDT_EFORMAT || rc == CRDT_ELIMIT || rc == CRDT_EINVALID;
}

/* Updates made on the original after its state was taken, applied to damaged
 * documents that load (see try_load). */
static crdt_buf_t followups[2];

/* Loads `p[0..n)` with a fresh allocator; returns the code, checks that a
 * success gives a sound document and that nothing leaks either way, and
 * reports the allocator's peak. */
static int try_load(const uint8_t *p, size_t n, size_t *peak)
{
    test_alloc_t a;
    crdt_alloc_t sa;
    crdt_doc_t *d = NULL;
    int rc;
    test_alloc_init(&a);
    sa = a.alloc;
    rc = crdt_doc_load(5, &sa, p, n, &d);
    if (rc == 0) {
        crdt_buf_t t, st;
        size_t len;
        if (crdt_doc_check(d) != 0)
            fail_msg("a loaded (damaged) state fails crdt_doc_check");
        assert_int_equal(crdt_doc_text(d, &t), 0);
        assert_int_equal(crdt_doc_encode_state(d, &st), 0);
        crdt_buf_dispose(&t);
        crdt_buf_dispose(&st);
        /* It stays usable: updates made after the original state merge (or
         * are refused), local edits work, and every step keeps it sound. */
        for (int i = 0; i < 2; i++)
            if (followups[i].base != NULL)
                (void)crdt_doc_apply_update(d, followups[i].base, followups[i].len);
        len = crdt_doc_length(d);
        (void)crdt_doc_insert(d, len / 2, "W", 1, NULL);
        if (len > 4)
            (void)crdt_doc_delete(d, 1, 2, NULL);
        if (crdt_doc_check(d) != 0)
            fail_msg("a loaded (damaged) state fails crdt_doc_check after further edits");
        crdt_doc_free(d);
    } else {
        if (d != NULL)
            fail_msg("failed load set *out");
    }
    if (a.live_bytes != 0)
        fail_msg("load returning %d leaked %zu bytes", rc, a.live_bytes);
    if (peak)
        *peak = a.peak_bytes;
    return rc;
}

/* The same through crdt_doc_apply_update() on a fresh empty document. */
static int try_apply_empty(const uint8_t *p, size_t n, size_t *peak)
{
    test_alloc_t a;
    crdt_alloc_t sa;
    crdt_doc_t *d = NULL;
    int rc;
    test_alloc_init(&a);
    sa = a.alloc;
    assert_int_equal(crdt_doc_new(6, &sa, &d), 0);
    rc = crdt_doc_apply_update(d, p, n);
    if (crdt_doc_check(d) != 0)
        fail_msg("apply_update returning %d left a document failing crdt_doc_check", rc);
    if (rc != 0 && (crdt_doc_length(d) != 0 || crdt_doc_pending(d) != 0))
        fail_msg("failed apply_update changed the document");
    crdt_doc_free(d);
    if (a.live_bytes != 0)
        fail_msg("apply_update returning %d leaked %zu bytes", rc, a.live_bytes);
    if (peak)
        *peak = a.peak_bytes;
    return rc;
}

/* Text, state vector and encoded state of a document, to see it unchanged. */
typedef struct {
    crdt_buf_t text, sv, st;
} look_t;

static void look_take(const crdt_doc_t *d, look_t *k)
{
    assert_int_equal(crdt_doc_text(d, &k->text), 0);
    assert_int_equal(crdt_doc_state_vector(d, &k->sv), 0);
    assert_int_equal(crdt_doc_encode_state(d, &k->st), 0);
}

static void look_dispose(look_t *k)
{
    crdt_buf_dispose(&k->text);
    crdt_buf_dispose(&k->sv);
    crdt_buf_dispose(&k->st);
}

static void assert_unchanged(const crdt_doc_t *d, const look_t *k)
{
    look_t now;
    assert_int_equal(crdt_doc_check(d), 0);
    look_take(d, &now);
    if (!same_bytes(&now.text, &k->text) || !same_bytes(&now.sv, &k->sv) ||
        !same_bytes(&now.st, &k->st))
        fail_msg("a rejected update changed the document");
    look_dispose(&now);
}

/* ---- tests: round trips ------------------------------------------------------------ */

/* A state naming more clients than a document can hold (items name them
 * in 21 bits) is refused with CRDT_ELIMIT before its client table is
 * allocated, by a load and by an apply. The table itself is well-formed
 * zeros (10 bytes per client, the least a client takes). */
static void test_doc_load_too_many_clients_elimit(void **state)
{
    size_t n = 2 + 4 + 10 * ((size_t)CRDT__CLIENT_LIMIT + 1), peak = 0;
    uint8_t *p = calloc(n, 1);
    crdt_buf_t st;
    crdt_doc_t *d = new_doc(1);
    (void)state;
    assert_non_null(p);
    encode(d, &st);
    p[0] = st.base[0]; /* the state format's version */
    p[1] = 0;          /* plain body */
    p[2] = 0x80;       /* varint 2^21 = CRDT__CLIENT_LIMIT + 1 */
    p[3] = 0x80;
    p[4] = 0x80;
    p[5] = 0x01;
    assert_int_equal(try_load(p, n, &peak), CRDT_ELIMIT);
    assert_true(peak < 64 * 1024);
    assert_int_equal(try_apply_empty(p, n, &peak), CRDT_ELIMIT);
    assert_true(peak < 64 * 1024);
    crdt_buf_dispose(&st);
    crdt_doc_free(d);
    free(p);
}

static void test_doc_load_empty_document(void **state)
{
    crdt_doc_t *o = new_doc(1), *l, *e;
    crdt_buf_t st, t, sv;
    (void)state;
    encode(o, &st);
    assert_int_equal(st.base[0], 2);
    assert_int_equal(st.base[1], 0);
    l = load(2, &st);
    assert_int_equal(crdt_doc_length(l), 0);
    assert_int_equal(crdt_doc_text(l, &t), 0);
    assert_int_equal(t.len, 0);
    assert_string_equal((const char *)t.base, "");
    crdt_buf_dispose(&t);
    assert_same_doc(o, l);
    /* The empty version. */
    assert_int_equal(crdt_doc_state_vector(l, &sv), 0);
    assert_int_equal(crdt_doc_text_at(l, sv.base, sv.len, &t), 0);
    assert_int_equal(t.len, 0);
    crdt_buf_dispose(&t);
    crdt_buf_dispose(&sv);
    e = new_doc(3);
    apply(e, &st);
    assert_same_doc(o, e);
    crdt_doc_free(e);
    crdt_doc_free(l);
    check_round_trip(o, NULL, 1);
    crdt_doc_free(o);
    crdt_buf_dispose(&st);
}

static void test_doc_load_single_client(void **state)
{
    session_t s;
    (void)state;
    session_run(&s, 1, 300, 0x51, true, false);
    assert_true(crdt_doc_length(s.d[0]) > 0);
    check_round_trip(s.d[0], &s, 0x52);
    session_free(&s);
}

static void test_doc_load_many_clients_concurrent_edits(void **state)
{
    (void)state;
    for (uint64_t seed = 0x600; seed < 0x606; seed++) {
        session_t s;
        session_run(&s, 5, 400, seed, false, false);
        check_round_trip(s.d[(int)(seed % 5)], &s, seed ^ 0xff);
        session_free(&s);
    }
}

static void test_doc_load_non_ascii_text(void **state)
{
    crdt_doc_t *o = new_doc(10);
    crdt_buf_t st, t;
    crdt_doc_t *l;
    const char *text = "h\xc3\xa9llo \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d!";
    (void)state;
    assert_int_equal(crdt_doc_insert(o, 0, text, strlen(text), NULL), 0);
    /* Delete the first emoji (2 units at index 9) and the é. */
    assert_int_equal(crdt_doc_delete(o, 9, 2, NULL), 0);
    assert_int_equal(crdt_doc_delete(o, 1, 1, NULL), 0);
    assert_int_equal(crdt_doc_insert(o, 8, "\xf0\x9f\x8e\x89", 4, NULL), 0);
    encode(o, &st);
    l = load(11, &st);
    assert_int_equal(crdt_doc_text(l, &t), 0);
    assert_string_equal((const char *)t.base,
                        "hllo \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x8e\x89\xf0\x9f\x91\x8d!");
    crdt_buf_dispose(&t);
    assert_int_equal(crdt_doc_length(l), 13);
    assert_same_doc(o, l);
    /* Indexes on the loaded document still count UTF-16 units. */
    assert_int_equal(crdt_doc_insert(l, 9, "x", 1, NULL), CRDT_EINDEX); /* inside the 🎉 */
    assert_int_equal(crdt_doc_insert(l, 10, "x", 1, NULL), 0);
    assert_int_equal(crdt_doc_check(l), 0);
    crdt_doc_free(l);
    crdt_buf_dispose(&st);
    check_round_trip(o, NULL, 0x77);
    crdt_doc_free(o);
}

static void test_doc_load_reopens_own_replica(void **state)
{
    session_t s;
    crdt_buf_t st;
    crdt_doc_t *again, *other;
    rng_t r;
    (void)state;
    rng_init(&r, 0x0e);
    session_run(&s, 3, 200, 0x0e0e, false, false);
    /* Replica 101 saves, quits, and comes back with the same id. */
    encode(s.d[0], &st);
    again = load(101, &st);
    assert_int_equal(crdt_doc_client(again), 101);
    crdt_doc_free(s.d[0]);
    s.d[0] = again;
    other = s.d[1];
    for (int i = 0; i < 40; i++) {
        random_edit(again, &r, false);
        random_edit(other, &r, false);
        sync_from(other, again);
        sync_from(again, other);
        assert_same_doc(again, other);
    }
    assert_versions(&s, again);
    crdt_buf_dispose(&st);
    session_free(&s);
}

static void test_doc_apply_update_state_onto_partial_history(void **state)
{
    session_t s;
    crdt_buf_t st, mid_sv;
    crdt_doc_t *p, *q;
    rng_t r;
    (void)state;
    rng_init(&r, 0x9a);
    session_run(&s, 4, 400, 0x9a9a, false, false);
    encode(s.d[2], &st);
    /* p holds replica 0's state from half-way through. */
    p = load(900, &s.mid_state);
    assert_int_equal(crdt_doc_state_vector(p, &mid_sv), 0);
    apply(p, &st);
    assert_same_doc(s.d[2], p);
    assert_versions(&s, p);
    /* q holds that same part plus concurrent edits of its own. */
    q = load(901, &s.mid_state);
    for (int i = 0; i < 30; i++)
        random_edit(q, &r, false);
    apply(q, &st);
    sync_from(s.d[2], q);
    assert_same_doc(s.d[2], q);
    assert_int_equal(crdt_doc_check(s.d[2]), 0);
    /* The diff from the mid version applied to a copy at the mid version. */
    {
        crdt_doc_t *m = load(902, &s.mid_state);
        crdt_buf_t d;
        assert_int_equal(crdt_doc_diff(p, mid_sv.base, mid_sv.len, &d), 0);
        apply(m, &d);
        crdt_buf_dispose(&d);
        assert_same_doc(p, m);
        crdt_doc_free(m);
    }
    crdt_buf_dispose(&mid_sv);
    crdt_doc_free(p);
    crdt_doc_free(q);
    crdt_buf_dispose(&st);
    session_free(&s);
}

static void test_doc_encode_state_small_body_uncompressed(void **state)
{
    crdt_doc_t *o = new_doc(1);
    crdt_buf_t st;
    (void)state;
    assert_int_equal(crdt_doc_insert(o, 0, "hello world", 11, NULL), 0);
    assert_int_equal(crdt_doc_delete(o, 5, 1, NULL), 0);
    encode(o, &st);
    assert_true(st.len < 256);
    assert_int_equal(st.base[1], 0); /* flags: plain body */
    crdt_buf_dispose(&st);
    check_round_trip(o, NULL, 3);
    crdt_doc_free(o);
}

static void test_doc_encode_state_compresses_large_body(void **state)
{
    session_t s;
    crdt_buf_t st;
    size_t text;
    (void)state;
    session_run(&s, 3, 900, 0x1a76e, false, false);
    encode(s.d[0], &st);
    text = crdt_doc_utf8_length(s.d[0]);
    assert_true(text > 600);
    /* docs/update-format.md: "Bodies of 256 bytes or more are compressed";
     * the body holds at least the inserted text. */
    if (st.base[1] != 1)
        fail_msg("a state whose body holds %zu text bytes (state %zu bytes) has flags %#x, "
                 "not 0x01 (compressed)",
                 text, st.len, st.base[1]);
    crdt_buf_dispose(&st);
    check_round_trip(s.d[0], &s, 0x1a);
    session_free(&s);
}

static void test_doc_load_both_body_forms(void **state)
{
    session_t s;
    crdt_buf_t st, plain, lz;
    (void)state;
    session_run(&s, 3, 600, 0xb0d1, false, false);
    encode(s.d[1], &st);
    state_form(&st, false, &plain);
    state_form(&st, true, &lz);
    assert_int_equal(plain.base[1], 0);
    assert_int_equal(lz.base[1], 1);
    assert_true(lz.len < plain.len);
    {
        crdt_doc_t *a = load(31, &plain), *b = load(32, &lz), *c = new_doc(33), *d = new_doc(34);
        apply(c, &plain);
        apply(d, &lz);
        assert_same_doc(s.d[1], a);
        assert_same_doc(s.d[1], b);
        assert_same_doc(s.d[1], c);
        assert_same_doc(s.d[1], d);
        assert_versions(&s, b);
        assert_versions(&s, d);
        crdt_doc_free(a);
        crdt_doc_free(b);
        crdt_doc_free(c);
        crdt_doc_free(d);
    }
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&plain);
    crdt_buf_dispose(&lz);
    session_free(&s);
}

/* crdt_doc_encode_state_ex(CRDT_STATE_UNCOMPRESSED) gives exactly the plain
 * form of the compressed state, CRDT_STATE_FAST a compressed one of the same
 * document; unknown flags are refused. */
static void test_doc_encode_state_ex_uncompressed(void **state)
{
    session_t s;
    crdt_buf_t st, plain, raw, raw2 = {0};
    (void)state;
    session_run(&s, 3, 600, 0x5eed7, false, false);
    encode(s.d[2], &st);
    state_form(&st, false, &plain);
    assert_int_equal(st.base[1], 1);
    assert_int_equal(crdt_doc_encode_state_ex(s.d[2], CRDT_STATE_UNCOMPRESSED, &raw), 0);
    assert_int_equal(raw.base[1], 0);
    assert_true(same_bytes(&raw, &plain));
    assert_int_equal(raw.base[raw.len], 0); /* NUL-terminated like every buffer */
    assert_int_equal(crdt_doc_encode_state_ex(s.d[2], 0, &raw2), 0);
    assert_true(same_bytes(&raw2, &st));
    crdt_buf_dispose(&raw2);
    {
        crdt_doc_t *a = load(41, &raw), *b = NULL;
        assert_int_equal(crdt_doc_load_trusted(42, &strict, raw.base, raw.len, &b), 0);
        assert_same_doc(s.d[2], a);
        assert_same_doc(s.d[2], b);
        assert_versions(&s, b);
        crdt_doc_free(a);
        crdt_doc_free(b);
    }
    /* CRDT_STATE_FAST: compressed with less effort, the same document;
     * with CRDT_STATE_UNCOMPRESSED it changes nothing. */
    assert_int_equal(crdt_doc_encode_state_ex(s.d[2], CRDT_STATE_FAST, &raw2), 0);
    assert_int_equal(raw2.base[1], 1);
    assert_true(raw2.len < raw.len);
    assert_false(same_bytes(&raw2, &st)); /* not the full effort's stream */
    {
        crdt_doc_t *a = load(43, &raw2);
        assert_same_doc(s.d[2], a);
        assert_versions(&s, a);
        crdt_doc_free(a);
    }
    crdt_buf_dispose(&raw2);
    assert_int_equal(
        crdt_doc_encode_state_ex(s.d[2], CRDT_STATE_FAST | CRDT_STATE_UNCOMPRESSED, &raw2), 0);
    assert_true(same_bytes(&raw2, &raw));
    crdt_buf_dispose(&raw2);
    raw2.base = NULL;
    assert_int_equal(crdt_doc_encode_state_ex(s.d[2], 4, &raw2), CRDT_EINVAL);
    assert_int_equal(crdt_doc_encode_state_ex(NULL, 0, &raw2), CRDT_EINVAL);
    assert_null(raw2.base);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&plain);
    crdt_buf_dispose(&raw);
    session_free(&s);
}

static void test_doc_load_large_document(void **state)
{
    crdt_doc_t *o = new_doc(42);
    rng_t r;
    (void)state;
    rng_init(&r, 0x1a);
    /* A long text typed in bursts, with deletions: thousands of items. */
    for (int i = 0; i < 3000; i++)
        random_edit(o, &r, i % 2 == 0);
    assert_true(o->live_items > 2000);
    check_round_trip(o, NULL, 0x1b);
    crdt_doc_free(o);
}

static void test_doc_load_client_with_only_deletes(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2), *l;
    crdt_buf_t st, u;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abcdefghij", 10, &u), 0);
    apply(b, &u);
    crdt_buf_dispose(&u);
    /* b never inserts: it deletes a's characters (forward, backward, a range). */
    assert_int_equal(crdt_doc_delete(b, 8, 1, NULL), 0);
    assert_int_equal(crdt_doc_delete(b, 7, 1, NULL), 0);
    assert_int_equal(crdt_doc_delete(b, 1, 1, NULL), 0);
    assert_int_equal(crdt_doc_delete(b, 1, 1, NULL), 0);
    assert_int_equal(crdt_doc_delete(b, 2, 2, NULL), 0);
    encode(b, &st);
    l = load(3, &st);
    assert_same_doc(b, l);
    {
        crdt_buf_t t;
        assert_int_equal(crdt_doc_text(l, &t), 0);
        assert_string_equal((const char *)t.base, "adgj");
        crdt_buf_dispose(&t);
    }
    crdt_doc_free(l);
    crdt_buf_dispose(&st);
    check_round_trip(b, NULL, 0xde1);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_doc_load_extreme_client_ids(void **state)
{
    static const uint64_t ids[4] = {UINT64_MAX, 0, (uint64_t)1 << 63, 0x0102030405060708ULL};
    crdt_doc_t *d[4];
    (void)state;
    for (int i = 0; i < 4; i++) {
        d[i] = new_doc(ids[i]);
        assert_int_equal(crdt_doc_insert(d[i], 0, "\xf0\x9f\x98\x80z", 5, NULL), 0);
    }
    for (int i = 1; i < 4; i++)
        sync_from(d[0], d[i]);
    assert_int_equal(crdt_doc_delete(d[0], 3, 3, NULL), 0);
    check_round_trip(d[0], NULL, 0x1d5);
    /* Loading with each of the ids (reopening that replica). */
    {
        crdt_buf_t st;
        encode(d[0], &st);
        for (int i = 0; i < 4; i++) {
            crdt_doc_t *l = load(ids[i], &st);
            assert_same_doc(d[0], l);
            assert_int_equal(crdt_doc_client(l), ids[i]);
            assert_int_equal(crdt_doc_insert(l, 0, "k", 1, NULL), 0);
            assert_int_equal(crdt_doc_check(l), 0);
            crdt_doc_free(l);
        }
        crdt_buf_dispose(&st);
    }
    for (int i = 0; i < 4; i++)
        crdt_doc_free(d[i]);
}

/* ---- tests: hostile input -------------------------------------------------------- */

/* Every proper prefix of `st` is rejected, by load and by apply_update onto a
 * document holding part of the history, which stays unchanged. */
static void check_truncations(const crdt_buf_t *st, crdt_doc_t *partial)
{
    look_t before;
    look_take(partial, &before);
    for (size_t n = 0; n < st->len; n++) {
        int rc = try_load(st->base, n, NULL);
        if (rc != CRDT_EMALFORMED && rc != CRDT_EFORMAT)
            fail_msg("load of the first %zu of %zu bytes: %d (%s)", n, st->len, rc,
                     crdt_strerror(rc));
        rc = crdt_doc_apply_update(partial, st->base, n);
        if (rc != CRDT_EMALFORMED && rc != CRDT_EFORMAT)
            fail_msg("apply of the first %zu of %zu bytes: %d (%s)", n, st->len, rc,
                     crdt_strerror(rc));
        if (n % 101 == 0 || n + 1 == st->len)
            assert_unchanged(partial, &before);
    }
    look_dispose(&before);
}

static void test_doc_load_rejects_every_truncation(void **state)
{
    session_t s;
    crdt_buf_t st, plain, lz, small;
    crdt_doc_t *partial, *o = new_doc(3);
    (void)state;
    assert_int_equal(crdt_doc_insert(o, 0,
                                     "ab\xf0\x9f\x98\x80"
                                     "cd",
                                     8, NULL),
                     0);
    assert_int_equal(crdt_doc_delete(o, 1, 3, NULL), 0);
    encode(o, &small);
    partial = new_doc(4);
    check_truncations(&small, partial);
    crdt_doc_free(partial);
    crdt_doc_free(o);
    crdt_buf_dispose(&small);

    session_run(&s, 3, 250, 0x7c, false, false);
    encode(s.d[0], &st);
    state_form(&st, false, &plain);
    state_form(&st, true, &lz);
    partial = load(5, &s.mid_state);
    check_truncations(&plain, partial);
    check_truncations(&lz, partial);
    crdt_doc_free(partial);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&plain);
    crdt_buf_dispose(&lz);
    session_free(&s);
}

static void flip_bytes(const crdt_buf_t *st, rng_t *r, const char *what, int iters,
                       bool expect_loads)
{
    uint8_t *p = malloc(st->len);
    int ok = 0;
    assert_non_null(p);
    for (int i = 0; i < iters; i++) {
        int rc;
        memcpy(p, st->base, st->len);
        for (uint32_t k = rng_below(r, 3) + 1; k > 0; k--) {
            /* Mostly single bits, sometimes whole bytes; header bytes often. */
            size_t at = rng_below(r, 4) == 0 ? rng_below(r, st->len < 24 ? (uint32_t)st->len : 24)
                                             : rng_below(r, (uint32_t)st->len);
            p[at] ^= rng_below(r, 2) ? (uint8_t)(1u << rng_below(r, 8))
                                     : (uint8_t)(rng_below(r, 255) + 1);
        }
        rc = try_load(p, st->len, NULL);
        if (rc != 0 && !is_reject(rc))
            fail_msg("seed %#llx, %s, flip %d: load returned %d (%s)", (unsigned long long)r->seed,
                     what, i, rc, crdt_strerror(rc));
        ok += rc == 0;
        rc = try_apply_empty(p, st->len, NULL);
        if (rc != 0 && !is_reject(rc))
            fail_msg("seed %#llx, %s, flip %d: apply returned %d (%s)", (unsigned long long)r->seed,
                     what, i, rc, crdt_strerror(rc));
    }
    /* Some damaged states do load (flipped text or clock bits that still make
     * a consistent document), so the success path above is exercised. */
    if (expect_loads && ok == 0)
        fail_msg("seed %#llx, %s: no damaged state loaded", (unsigned long long)r->seed, what);
    free(p);
}

static void test_doc_load_survives_random_byte_flips(void **state)
{
    session_t s;
    crdt_buf_t st, plain, lz;
    rng_t r;
    (void)state;
    rng_init(&r, 0xf11b);
    session_run(&s, 3, 150, 0xf11c, false, false);
    encode(s.d[0], &st);
    state_form(&st, false, &plain);
    state_form(&st, true, &lz);
    {
        crdt_buf_t t;
        size_t u, w;
        assert_int_equal(crdt_doc_text(s.d[0], &t), 0);
        u = unit_of_char(t.base, t.len, 3, 0, NULL);
        assert_int_equal(crdt_doc_insert(s.d[0], u, "Q", 1, &followups[0]), 0);
        crdt_buf_dispose(&t);
        assert_int_equal(crdt_doc_text(s.d[0], &t), 0);
        u = unit_of_char(t.base, t.len, 5, 3, &w);
        assert_int_equal(crdt_doc_delete(s.d[0], u, w, &followups[1]), 0);
        crdt_buf_dispose(&t);
    }
    flip_bytes(&plain, &r, "plain body", 2500, true);
    flip_bytes(&lz, &r, "compressed body", 2500, false);
    crdt_buf_dispose(&followups[0]);
    crdt_buf_dispose(&followups[1]);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&plain);
    crdt_buf_dispose(&lz);
    session_free(&s);
}

/* A builder for hand-made states. */
typedef struct {
    uint8_t b[256];
    size_t n;
} bytes_t;

static void put_u8(bytes_t *w, uint8_t v)
{
    assert_true(w->n < sizeof(w->b));
    w->b[w->n++] = v;
}

static void put_varint(bytes_t *w, uint64_t v)
{
    while (v >= 0x80) {
        put_u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_u8(w, (uint8_t)v);
}

static void put_u64(bytes_t *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        put_u8(w, (uint8_t)(v >> (8 * i)));
}

static void put_raw(bytes_t *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof(w->b));
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* Rejected by load and apply, with the allocator's peak below `limit`. */
static void assert_rejected_small(const bytes_t *w, size_t limit, const char *what)
{
    size_t peak;
    int rc = try_load(w->b, w->n, &peak);
    if (!is_reject(rc))
        fail_msg("%s: load returned %d (%s)", what, rc, crdt_strerror(rc));
    if (peak > limit)
        fail_msg("%s: load allocated up to %zu bytes (limit %zu)", what, peak, limit);
    rc = try_apply_empty(w->b, w->n, &peak);
    if (!is_reject(rc))
        fail_msg("%s: apply returned %d (%s)", what, rc, crdt_strerror(rc));
    if (peak > limit)
        fail_msg("%s: apply allocated up to %zu bytes (limit %zu)", what, peak, limit);
}

/* The header of a one-client state: id 9, `clock` operations, `text` bytes. */
static void one_client(bytes_t *w, uint8_t flags, uint64_t clock, uint64_t text)
{
    w->n = 0;
    put_u8(w, 2);
    put_u8(w, flags);
    put_varint(w, 1);
    put_u64(w, 9);
    put_varint(w, clock);
    put_varint(w, text);
}

/* Six empty item columns and four empty delete columns after the counts. */
static void empty_columns(bytes_t *w, uint64_t nitems, uint64_t ndel)
{
    put_varint(w, nitems);
    for (int i = 0; i < 6; i++)
        put_varint(w, 0);
    put_varint(w, ndel);
    for (int i = 0; i < 4; i++)
        put_varint(w, 0);
}

static void test_doc_load_rejects_huge_declared_sizes(void **state)
{
    const size_t limit = 64 * 1024;
    bytes_t w;
    (void)state;
    /* A client count far beyond the bytes. */
    w.n = 0;
    put_u8(&w, 2);
    put_u8(&w, 0);
    put_varint(&w, (uint64_t)1 << 62);
    put_raw(&w, "0123456789abcdef", 16);
    assert_rejected_small(&w, limit, "huge client count");
    w.n = 0;
    put_u8(&w, 2);
    put_u8(&w, 0);
    put_varint(&w, 200000000);
    assert_rejected_small(&w, limit, "client count, no bytes");
    /* A client with more text than there are bytes. */
    one_client(&w, 0, 3, (uint64_t)1 << 31);
    put_raw(&w, "abc", 3);
    empty_columns(&w, 0, 0);
    assert_rejected_small(&w, limit, "huge text length");
    /* A huge clock that no item or delete record fills. */
    one_client(&w, 0, UINT32_MAX - 1, 0);
    empty_columns(&w, 0, 0);
    assert_rejected_small(&w, limit, "huge clock");
    /* Huge item and delete-record counts. */
    one_client(&w, 0, 1, 1);
    put_raw(&w, "a", 1);
    empty_columns(&w, (uint64_t)1 << 40, 0);
    assert_rejected_small(&w, limit, "huge item count");
    one_client(&w, 0, 1, 1);
    put_raw(&w, "a", 1);
    empty_columns(&w, 0, (uint64_t)1 << 40);
    assert_rejected_small(&w, limit, "huge delete count");
    /* A column longer than the bytes. */
    one_client(&w, 0, 1, 1);
    put_raw(&w, "a", 1);
    put_varint(&w, 1);
    put_varint(&w, (uint64_t)1 << 50);
    assert_rejected_small(&w, limit, "huge column length");
    /* Compressed: a body size far beyond what the stream can produce. */
    one_client(&w, 1, 1, 1);
    put_varint(&w, (uint64_t)1 << 40);
    put_raw(&w, "\x01\x02\x03\x04", 4);
    assert_rejected_small(&w, limit, "huge compressed body size");
    one_client(&w, 1, 1, 1);
    put_varint(&w, UINT64_MAX);
    assert_rejected_small(&w, limit, "maximal compressed body size");
    /* Within the stated ratio (1024 per stream byte) but a bad stream: the
     * allocation is bounded by the ratio. */
    one_client(&w, 1, 1, 1);
    put_varint(&w, 16 * 1024);
    put_raw(&w, "\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_rejected_small(&w, limit, "bad stream within the ratio");
}

/* A column of a hand-made state. */
typedef struct {
    const uint8_t *p;
    size_t n;
} col_t;

#define COL(...)                                                                                   \
    {                                                                                              \
        (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})                     \
    }
#define NOCOL                                                                                      \
    {                                                                                              \
        NULL, 0                                                                                    \
    }

/*
 * A plain state of one client (id 9, `clock` operations, inserted text
 * `text`) with the given item columns (head, client, clock, len, left, right)
 * and delete-record columns (head, client, len, target).
 */
/*
 * Writes a section's columns as docs/update-format.md says: the head column as
 * it is, every other column as its varints' first bytes and then their
 * continuation bytes (none here: every value in these tests is below 0x80).
 */
static void put_columns(bytes_t *w, const col_t *col, int n)
{
    put_varint(w, col[0].n);
    if (col[0].n)
        put_raw(w, col[0].p, col[0].n);
    for (int i = 1; i < n; i++) {
        for (size_t k = 0; k < col[i].n; k++)
            assert_true(col[i].p[k] < 0x80);
        put_varint(w, col[i].n);
        if (col[i].n)
            put_raw(w, col[i].p, col[i].n);
        put_varint(w, 0);
    }
}

static void one_client_state(bytes_t *w, uint64_t clock, const char *text, uint64_t nitems,
                             const col_t icol[6], uint64_t ndel, const col_t dcol[4])
{
    one_client(w, 0, clock, strlen(text));
    put_raw(w, text, strlen(text));
    put_varint(w, nitems);
    put_columns(w, icol, 6);
    put_varint(w, ndel);
    put_columns(w, dcol, 4);
}

static const col_t no_dels[4] = {NOCOL, NOCOL, NOCOL, NOCOL};

/* A column of the given values, multi-byte varints included: their first
 * bytes, then their continuation bytes. */
static void put_value_column(bytes_t *w, const uint64_t *v, size_t count)
{
    bytes_t first = {.n = 0}, rest = {.n = 0}, one;
    for (size_t i = 0; i < count; i++) {
        one.n = 0;
        put_varint(&one, v[i]);
        put_u8(&first, one.b[0]);
        put_raw(&rest, one.b + 1, one.n - 1);
    }
    put_varint(w, first.n);
    put_raw(w, first.b, first.n);
    put_varint(w, rest.n);
    put_raw(w, rest.b, rest.n);
}

/* A plain state of two clients: id 1 typed "ab", id 2 typed "c". The item
 * "c" has one origin written out (mode 3) as (origin_client, origin_clock):
 * with `right` its right origin, and it comes first ("cab"); else its left
 * origin, and it comes last ("abc"). */
static void two_client_state(bytes_t *w, uint64_t origin_client, uint64_t origin_clock, bool right)
{
    const uint64_t clients[2] = {right ? 1 : 0, right ? 0 : 1};
    const uint64_t lens[2] = {right ? 1 : 2, right ? 2 : 1};
    const uint64_t origin[2] = {origin_client, origin_clock};
    w->n = 0;
    put_u8(w, 2);
    put_u8(w, 0);
    put_varint(w, 2);
    for (uint64_t c = 0; c < 2; c++) {
        put_u64(w, c + 1);
        put_varint(w, 2 - c); /* next clock */
        put_varint(w, 2 - c); /* text bytes */
    }
    put_raw(w, right ? "cab" : "abc", 3);
    put_varint(w, 2); /* items */
    put_varint(w, 2); /* the head column: client given, and the origin */
    put_u8(w, (uint8_t)(right ? 0x02 | 3 << 5 : 0x02));
    put_u8(w, (uint8_t)(right ? 0x02 : 0x02 | 3 << 3));
    put_value_column(w, clients, 2);
    put_value_column(w, NULL, 0); /* no clock given */
    put_value_column(w, lens, 2);
    put_value_column(w, origin, right ? 0 : 2);
    put_value_column(w, origin, right ? 2 : 0);
    put_varint(w, 0); /* delete records */
    put_columns(w, no_dels, 4);
}

/* An origin naming a client index past the state's client table is refused,
 * however large the index: it never reaches the item's 21-bit client field
 * (fuzz_load found one that did, before the parse failed). */
static void test_doc_load_origin_client_past_table_emalformed(void **state)
{
    static const uint64_t bad[] = {
        2, 5, CRDT__CLIENT_LIMIT, (uint64_t)CRDT__CLIENT_LIMIT + 1, 0x300000, UINT32_MAX};
    bytes_t w;
    crdt_buf_t t;
    crdt_doc_t *d = NULL;
    (void)state;
    /* The same bytes with a real origin load: the hand-made state is right
     * but for the origin. */
    for (int right = 0; right < 2; right++) {
        two_client_state(&w, 0, right ? 0 : 1, right);
        int rc = crdt_doc_load(1, &strict, w.b, w.n, &d);
        if (rc != 0)
            fail_msg("the %s-origin state: %s", right ? "right" : "left", crdt_strerror(rc));
        assert_int_equal(crdt_doc_check(d), 0);
        assert_int_equal(crdt_doc_text(d, &t), 0);
        assert_string_equal((const char *)t.base, right ? "cab" : "abc");
        crdt_buf_dispose(&t);
        crdt_doc_free(d);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int right = 0; right < 2; right++) {
            two_client_state(&w, bad[i], 1, right);
            int rl = try_load(w.b, w.n, NULL), ra = try_apply_empty(w.b, w.n, NULL);
            if (rl != CRDT_EMALFORMED || ra != CRDT_EMALFORMED)
                fail_msg("%s origin naming client %llu: load %d, apply %d",
                         right ? "right" : "left", (unsigned long long)bad[i], rl, ra);
        }
    }
}

/*
 * An operation may only refer to its own client's earlier clocks (the
 * origins of an insert, the targets of a delete): crdt_doc_apply_update()
 * rejects anything else with CRDT_EMALFORMED, in updates and in encoded
 * states alike. crdt_doc_load() must refuse the same bytes: crdt.h says it
 * returns the errors of crdt_doc_apply_update(), and a document built from
 * them would produce updates every other replica rejects.
 */
static void test_doc_load_rejects_forward_same_client_references(void **state)
{
    struct {
        const char *what;
        bytes_t w;
    } c[5];
    int bad = 0;
    (void)state;
    /* Client 9 typed "ab" (clocks 0, 1). Item heads: 0x02 client given, 0x04
     * clock given, left-mode << 3, right-mode << 5. */
    c[0].what = "left origin (explicit) names a later clock";
    {
        const col_t ic[6] = {COL(0x1e, 0x00), COL(0), COL(3), COL(1, 1), COL(0, 1), NOCOL};
        one_client_state(&c[0].w, 2, "ab", 2, ic, 0, no_dels);
    }
    c[1].what = "right origin (explicit) names a later clock";
    {
        const col_t ic[6] = {COL(0x62, 0x00), COL(0), NOCOL, COL(1, 1), NOCOL, COL(0, 1)};
        one_client_state(&c[1].w, 2, "ab", 2, ic, 0, no_dels);
    }
    c[2].what = "right origin (next item) names a later clock";
    {
        const col_t ic[6] = {COL(0x22, 0x00), COL(0), NOCOL, COL(1, 1), NOCOL, NOCOL};
        one_client_state(&c[2].w, 2, "ab", 2, ic, 0, no_dels);
    }
    c[3].what = "left origin (previous item) names a later clock";
    {
        /* Document order: clock 1, then clock 0 whose left is clock 1. */
        const col_t ic[6] = {COL(0x06, 0x0c), COL(0), COL(2, 3), COL(1, 1), NOCOL, NOCOL};
        one_client_state(&c[3].w, 2, "ab", 2, ic, 0, no_dels);
    }
    c[4].what = "delete (clock 0) targets a later clock";
    {
        /* Clock 0 deletes (9, 1); clock 1 inserted "a". */
        const col_t ic[6] = {COL(0x06), COL(0), COL(2), COL(1), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x02), COL(0), COL(1), COL(0, 1)};
        one_client_state(&c[4].w, 2, "a", 1, ic, 1, dc);
    }
    for (int i = 0; i < 5; i++) {
        int ra = try_apply_empty(c[i].w.b, c[i].w.n, NULL);
        int rl = try_load(c[i].w.b, c[i].w.n, NULL);
        /* The bytes are well-formed otherwise: only the reference is wrong. */
        assert_int_equal(ra, CRDT_EMALFORMED);
        if (rl != CRDT_EMALFORMED) {
            fprintf(stderr, "%s: crdt_doc_apply_update returns %d (%s), crdt_doc_load %d (%s)\n",
                    c[i].what, ra, crdt_strerror(ra), rl, crdt_strerror(rl));
            bad++;
        }
    }
    if (bad)
        fail_msg("crdt_doc_load accepted %d of 5 states that crdt_doc_apply_update rejects", bad);
}

/*
 * An item's `deleted` flag says whether delete records delete all of its
 * characters; crdt_doc_apply_update() derives visibility from the records
 * alone. A state whose flags disagree with its records must not load into a
 * different document than the one crdt_doc_apply_update() makes of the same
 * bytes (same state vector, different text), nor into one whose text differs
 * from crdt_doc_text_at() at its own state vector. Rejecting such a state
 * (CRDT_EMALFORMED) is fine.
 */
static void test_doc_load_deleted_flags_agree_with_delete_records(void **state)
{
    struct {
        const char *what;
        bytes_t w;
    } c[3];
    int bad = 0;
    (void)state;
    c[0].what = "item flagged deleted, no delete record";
    {
        const col_t ic[6] = {COL(0x03), COL(0), NOCOL, COL(1), NOCOL, NOCOL};
        one_client_state(&c[0].w, 1, "a", 1, ic, 0, no_dels);
    }
    c[1].what = "item not flagged, deleted by a record";
    {
        /* Clock 0 inserted "a", clock 1 deletes it (target-same, delta 0). */
        const col_t ic[6] = {COL(0x02), COL(0), NOCOL, COL(1), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x06), COL(0), COL(1), COL(0)};
        one_client_state(&c[1].w, 2, "a", 1, ic, 1, dc);
    }
    c[2].what = "two-character item flagged deleted, one deleted";
    {
        /* Clocks 0-1 inserted "ab", clock 2 deletes (9, 1). */
        const col_t ic[6] = {COL(0x03), COL(0), NOCOL, COL(2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x06), COL(0), COL(1), COL(0)};
        one_client_state(&c[2].w, 3, "ab", 1, ic, 1, dc);
    }
    for (int i = 0; i < 3; i++) {
        crdt_doc_t *l = NULL, *e = new_doc(6);
        int ra, rl;
        ra = crdt_doc_apply_update(e, c[i].w.b, c[i].w.n);
        rl = crdt_doc_load(5, &strict, c[i].w.b, c[i].w.n, &l);
        if (ra != 0 || rl != 0) {
            /* Rejected: both ways of reading the state must reject it. */
            if (ra != rl) {
                fprintf(stderr, "%s: crdt_doc_apply_update returns %d, crdt_doc_load %d\n",
                        c[i].what, ra, rl);
                bad++;
            }
        } else {
            crdt_buf_t tl, te, sv, tat;
            assert_int_equal(crdt_doc_check(l), 0);
            assert_int_equal(crdt_doc_text(l, &tl), 0);
            assert_int_equal(crdt_doc_text(e, &te), 0);
            assert_int_equal(crdt_doc_state_vector(l, &sv), 0);
            assert_int_equal(crdt_doc_text_at(l, sv.base, sv.len, &tat), 0);
            if (!same_bytes(&tl, &te) || !same_bytes(&tl, &tat)) {
                fprintf(stderr,
                        "%s: crdt_doc_load gives \"%s\" (its text_at own state vector \"%s\"), "
                        "crdt_doc_apply_update gives \"%s\"\n",
                        c[i].what, (const char *)tl.base, (const char *)tat.base,
                        (const char *)te.base);
                bad++;
            }
            crdt_buf_dispose(&tl);
            crdt_buf_dispose(&te);
            crdt_buf_dispose(&sv);
            crdt_buf_dispose(&tat);
            crdt_doc_free(l);
        }
        crdt_doc_free(e);
    }
    if (bad)
        fail_msg("%d of 3 states load into a document whose text disagrees with its delete records",
                 bad);
}

static void test_doc_load_unknown_flags_is_eformat(void **state)
{
    crdt_doc_t *o = new_doc(1), *p = new_doc(2);
    crdt_buf_t st;
    look_t before;
    (void)state;
    assert_int_equal(crdt_doc_insert(o, 0, "flags", 5, NULL), 0);
    encode(o, &st);
    look_take(p, &before);
    for (unsigned f = 2; f < 256; f++) {
        uint8_t *b = malloc(st.len);
        int rc;
        assert_non_null(b);
        memcpy(b, st.base, st.len);
        b[1] = (uint8_t)(f | (st.base[1] & 1));
        if (b[1] == st.base[1]) {
            free(b);
            continue;
        }
        rc = try_load(b, st.len, NULL);
        if (rc != CRDT_EFORMAT)
            fail_msg("flags %#x: load returned %d (%s)", b[1], rc, crdt_strerror(rc));
        rc = crdt_doc_apply_update(p, b, st.len);
        if (rc != CRDT_EFORMAT)
            fail_msg("flags %#x: apply returned %d (%s)", b[1], rc, crdt_strerror(rc));
        free(b);
    }
    assert_unchanged(p, &before);
    /* Unknown first bytes (forms other than 1 and 2). */
    for (unsigned v = 0; v < 256; v++) {
        uint8_t b[3] = {(uint8_t)v, 0, 0};
        if (v == 1 || v == 2)
            continue;
        assert_int_equal(try_load(b, sizeof(b), NULL), CRDT_EFORMAT);
        assert_int_equal(crdt_doc_apply_update(p, b, sizeof(b)), CRDT_EFORMAT);
    }
    assert_unchanged(p, &before);
    look_dispose(&before);
    crdt_buf_dispose(&st);
    crdt_doc_free(o);
    crdt_doc_free(p);
}

static void test_doc_load_out_of_memory_leaks_nothing(void **state)
{
    session_t s;
    crdt_buf_t st, lz;
    (void)state;
    session_run(&s, 2, 120, 0x00e, false, false);
    encode(s.d[0], &st);
    state_form(&st, true, &lz);
    for (int form = 0; form < 2; form++) {
        const crdt_buf_t *b = form ? &lz : &st;
        for (long n = 0;; n++) {
            test_alloc_t a;
            crdt_alloc_t sa;
            crdt_doc_t *d = NULL;
            int rc;
            test_alloc_init(&a);
            sa = a.alloc;
            test_alloc_fail_after(&a, n);
            rc = crdt_doc_load(8, &sa, b->base, b->len, &d);
            test_alloc_fail_after(&a, -1);
            if (a.failures == 0) {
                assert_int_equal(rc, 0);
                assert_same_doc(s.d[0], d);
                crdt_doc_free(d);
                assert_int_equal(a.live_bytes, 0);
                break;
            }
            if (rc == 0) {
                /* Only an optional step failed (giving back unused pool room
                 * after a large apply): the document must still be right. */
                assert_same_doc(s.d[0], d);
                crdt_doc_free(d);
                assert_int_equal(a.live_bytes, 0);
                continue;
            }
            if (rc != CRDT_ENOMEM)
                fail_msg("form %d: load with allocation %ld failing returned %d (%s)", form, n, rc,
                         crdt_strerror(rc));
            assert_null(d);
            if (a.live_bytes != 0)
                fail_msg("form %d: load with allocation %ld failing leaked %zu bytes", form, n,
                         a.live_bytes);
        }
    }
    /* Encoding under failing allocations: the document is untouched. */
    {
        look_t before;
        test_alloc_t a;
        crdt_alloc_t sa;
        crdt_doc_t *d = NULL;
        test_alloc_init(&a);
        sa = a.alloc;
        assert_int_equal(crdt_doc_load(8, &sa, st.base, st.len, &d), 0);
        look_take(d, &before);
        for (long n = 0;; n++) {
            crdt_buf_t out;
            size_t f = a.failures;
            int rc;
            memset(&out, 0x5a, sizeof(out));
            test_alloc_fail_after(&a, n);
            rc = crdt_doc_encode_state(d, &out);
            test_alloc_fail_after(&a, -1);
            if (a.failures == f) {
                assert_int_equal(rc, 0);
                crdt_buf_dispose(&out);
                break;
            }
            assert_int_equal(rc, CRDT_ENOMEM);
            assert_int_equal(out.len, (size_t)0x5a5a5a5a5a5a5a5aULL);
            assert_unchanged(d, &before);
        }
        look_dispose(&before);
        crdt_doc_free(d);
        assert_int_equal(a.live_bytes, 0);
    }
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&lz);
    session_free(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- crdt_doc_load_trusted ------------------------------------------------------- */

/* crdt_doc_load_trusted() of `st` with a fresh test allocator: returns the
 * code; a success must give a sound document holding what crdt_doc_load()
 * makes of the same bytes (`want`, or NULL to skip that), which stays sound
 * through local edits; nothing may leak either way. */
static int try_load_trusted(const uint8_t *p, size_t n, const crdt_doc_t *want, uint64_t client)
{
    test_alloc_t a;
    crdt_alloc_t sa;
    crdt_doc_t *d = NULL;
    rng_t r;
    int rc;
    rng_init(&r, 0x7a0 + client);
    test_alloc_init(&a);
    sa = a.alloc;
    rc = crdt_doc_load_trusted(client, &sa, p, n, &d);
    if (rc == 0) {
        if (crdt_doc_check(d) != 0)
            fail_msg("a trusted load gives a document failing crdt_doc_check");
        if (want)
            assert_same_doc(want, d);
        for (int i = 0; i < 20; i++)
            random_edit(d, &r, false);
        if (crdt_doc_check(d) != 0)
            fail_msg("a trusted load fails crdt_doc_check after local edits");
        crdt_doc_free(d);
    } else if (d != NULL) {
        fail_msg("failed trusted load set *out");
    }
    if (a.live_bytes != 0)
        fail_msg("trusted load returning %d leaked %zu bytes", rc, a.live_bytes);
    return rc;
}

/*
 * crdt_doc_load_trusted() builds the same document as crdt_doc_load() from
 * states of one client (its delete records and text arena are taken over,
 * not copied), of several clients, with non-ASCII text, loaded by another
 * replica or by the state's own one (whose later typing appends to the arena
 * it took over); both body forms; every allocation failing in turn leaks
 * nothing and leaves no document.
 */
static void test_doc_load_trusted_matches_load(void **state)
{
    static const struct {
        int n;
        bool ascii;
        uint64_t seed;
    } runs[] = {{1, true, 0x7a1}, {1, false, 0x7a2}, {3, false, 0x7a3}, {5, true, 0x7a4}};
    (void)state;
    for (size_t k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
        session_t s;
        crdt_buf_t st, forms[2];
        session_run(&s, runs[k].n, 250, runs[k].seed, runs[k].ascii, false);
        encode(s.d[0], &st);
        state_form(&st, false, &forms[0]);
        state_form(&st, true, &forms[1]);
        for (int f = 0; f < 2; f++) {
            crdt_doc_t *l = load(777, &forms[f]), *t = NULL;
            crdt_buf_t st2;
            rng_t r;
            /* Another replica, and the state's first client itself. */
            assert_int_equal(try_load_trusted(forms[f].base, forms[f].len, l, 777), 0);
            assert_int_equal(try_load_trusted(forms[f].base, forms[f].len, l, 101), 0);
            /* Same document: same re-encoded state, same versions, and it
             * merges with the original after concurrent edits. */
            assert_int_equal(crdt_doc_load_trusted(101, &strict, forms[f].base, forms[f].len, &t),
                             0);
            encode(t, &st2);
            if (!same_bytes(&st, &st2))
                fail_msg("seed %#llx: a trusted load re-encodes differently",
                         (unsigned long long)runs[k].seed);
            crdt_buf_dispose(&st2);
            assert_versions(&s, t);
            rng_init(&r, runs[k].seed + (uint64_t)f);
            for (int i = 0; i < 40; i++) {
                random_edit(t, &r, runs[k].ascii);
                random_edit(l, &r, runs[k].ascii);
                if (i % 8 == 7 && crdt_doc_check(t) != 0)
                    fail_msg("seed %#llx: trusted load fails crdt_doc_check after edits",
                             (unsigned long long)runs[k].seed);
            }
            sync_from(t, l);
            sync_from(l, t);
            assert_same_doc(l, t);
            assert_int_equal(crdt_doc_check(t), 0);
            crdt_doc_free(t);
            crdt_doc_free(l);
        }
        /* Failing allocations. */
        for (long n = 0;; n++) {
            test_alloc_t a;
            crdt_alloc_t sa;
            crdt_doc_t *d = NULL;
            int rc;
            test_alloc_init(&a);
            sa = a.alloc;
            test_alloc_fail_after(&a, n);
            rc = crdt_doc_load_trusted(8, &sa, forms[1].base, forms[1].len, &d);
            test_alloc_fail_after(&a, -1);
            if (a.failures == 0) {
                assert_int_equal(rc, 0);
                assert_same_doc(s.d[0], d);
                crdt_doc_free(d);
                assert_int_equal(a.live_bytes, 0);
                break;
            }
            if (rc != CRDT_ENOMEM)
                fail_msg("seed %#llx: trusted load with allocation %ld failing returned %d",
                         (unsigned long long)runs[k].seed, n, rc);
            assert_null(d);
            if (a.live_bytes != 0)
                fail_msg("seed %#llx: trusted load with allocation %ld failing leaked %zu bytes",
                         (unsigned long long)runs[k].seed, n, a.live_bytes);
        }
        crdt_buf_dispose(&st);
        crdt_buf_dispose(&forms[0]);
        crdt_buf_dispose(&forms[1]);
        session_free(&s);
    }
}

/*
 * Delete targets checked against the items in every arrangement the loader
 * handles apart: a target covering items whole, one covering one item's
 * characters in several parts, parts and whole covers overlapping, parts at
 * both ends of a target across two items, a target across a run of
 * consecutive items, and targets crossing a delete record's clocks (not
 * inserted characters) or covering part of an item left undeleted.
 * crdt_doc_load_trusted(), crdt_doc_load() and crdt_doc_apply_update() must
 * agree on each: all accept (with the same document) or all reject.
 */
static void test_doc_load_delete_targets_in_parts(void **state)
{
    struct {
        const char *what;
        bool ok;
        bytes_t w;
    } c[7];
    int bad = 0;
    (void)state;
    memset(c, 0, sizeof(c));
    /* Client 9. Item heads: 0x01 deleted, 0x02 client given, left-mode << 3.
     * Delete heads: 0x02 client given, 0x04 target-same, 0x08 len 1, 0x10
     * just typed; a target-same target is tlo = clock - len - d. */
    c[0].what = "\"ab\" deleted by two records, one character each";
    c[0].ok = true;
    {
        const col_t ic[6] = {COL(0x03), COL(0), NOCOL, COL(2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x0e, 0x0c), COL(0), NOCOL, COL(1, 1)};
        one_client_state(&c[0].w, 4, "ab", 1, ic, 2, dc);
    }
    c[1].what = "\"ab\" deleted whole, then its \"b\" again";
    c[1].ok = true;
    {
        const col_t ic[6] = {COL(0x03), COL(0), NOCOL, COL(2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x16, 0x0c), COL(0), COL(2), COL(2)};
        one_client_state(&c[1].w, 5, "ab", 1, ic, 2, dc);
    }
    c[2].what = "\"ab\" \"cd\" deleted as b-c, a, d";
    c[2].ok = true;
    {
        const col_t ic[6] = {COL(0x03, 0x09), COL(0), NOCOL, COL(2, 2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x06, 0x0c, 0x0c), COL(0), COL(2), COL(1, 5, 3)};
        one_client_state(&c[2].w, 8, "abcd", 2, ic, 3, dc);
    }
    c[3].what = "\"a\" \"b\" (consecutive clocks) deleted by one record";
    c[3].ok = true;
    {
        const col_t ic[6] = {COL(0x03, 0x09), COL(0), NOCOL, COL(1, 1), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x16), COL(0), COL(2), NOCOL};
        one_client_state(&c[3].w, 4, "ab", 2, ic, 1, dc);
    }
    c[4].what = "a target across a delete record's clock";
    {
        /* "a" clock 0, a record at clock 1 deletes it, "b" clock 2, a record
         * at clocks 3-5 deletes clocks 0-2. */
        const col_t ic[6] = {COL(0x03, 0x0d), COL(0), COL(2), COL(1, 1), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x1e, 0x14), COL(0), COL(3), NOCOL};
        one_client_state(&c[4].w, 6, "ab", 2, ic, 2, dc);
    }
    c[5].what = "\"ab\" \"cd\" flagged deleted, b-c deleted only";
    {
        const col_t ic[6] = {COL(0x03, 0x09), COL(0), NOCOL, COL(2, 2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x06), COL(0), COL(2), COL(1)};
        one_client_state(&c[5].w, 6, "abcd", 2, ic, 1, dc);
    }
    c[6].what = "\"ab\" deleted, \"cd\" not, b-c deleted";
    {
        const col_t ic[6] = {COL(0x03, 0x08), COL(0), NOCOL, COL(2, 2), NOCOL, NOCOL};
        const col_t dc[4] = {COL(0x06, 0x0c), COL(0), COL(2), COL(1, 5)};
        one_client_state(&c[6].w, 7, "abcd", 2, ic, 2, dc);
    }
    for (int i = 0; i < 7; i++) {
        int ra = try_apply_empty(c[i].w.b, c[i].w.n, NULL);
        int rl = try_load(c[i].w.b, c[i].w.n, NULL);
        crdt_doc_t *want = NULL;
        int rt;
        if (rl == 0)
            assert_int_equal(crdt_doc_load(5, &strict, c[i].w.b, c[i].w.n, &want), 0);
        rt = try_load_trusted(c[i].w.b, c[i].w.n, want, 5);
        crdt_doc_free(want);
        if ((ra == 0) != c[i].ok || (rl == 0) != c[i].ok || (rt == 0) != c[i].ok ||
            (!c[i].ok && (!is_reject(ra) || !is_reject(rl) || !is_reject(rt)))) {
            fprintf(stderr,
                    "%s: expected %s; crdt_doc_apply_update returns %d, crdt_doc_load %d, "
                    "crdt_doc_load_trusted %d\n",
                    c[i].what, c[i].ok ? "success" : "a refusal", ra, rl, rt);
            bad++;
        }
    }
    if (bad)
        fail_msg("%d of 7 hand-made states with delete targets in parts misread", bad);
}

/* Every reader refuses the hand-made state `w`. */
static void assert_refused_everywhere(const bytes_t *w)
{
    assert_true(is_reject(try_apply_empty(w->b, w->n, NULL)));
    assert_true(is_reject(try_load(w->b, w->n, NULL)));
    assert_true(is_reject(try_load_trusted(w->b, w->n, NULL, 5)));
}

/* Every reader accepts `w`, the trusted load giving crdt_doc_load()'s
 * document, which is returned. */
static crdt_doc_t *loaded_everywhere(const bytes_t *w)
{
    crdt_doc_t *d = NULL;
    assert_int_equal(try_apply_empty(w->b, w->n, NULL), 0);
    assert_int_equal(crdt_doc_load(5, &strict, w->b, w->n, &d), 0);
    assert_int_equal(try_load_trusted(w->b, w->n, d, 5), 0);
    return d;
}

/*
 * A state lists items in document order, and an item always comes after its
 * left origin there (integration puts it there). Every way of reading a
 * state refuses one whose item precedes its left origin's item, and accepts
 * the same items in the right order. (This file also runs against an engine
 * that checks references the sparse way: crdt/test_snapshot_sparse.)
 */
static void test_doc_load_item_before_its_left_origin_refused(void **state)
{
    bytes_t bad, good;
    crdt_doc_t *want;
    crdt_buf_t t;
    (void)state;
    /* Client 9 typed "a" (clock 0), then "b" (clock 1) after it. Listed
     * as "b", "a": b's left origin (9, 0), one back, comes after b. */
    {
        const col_t ic[6] = {COL(0x16, 0x04), COL(0), COL(2, 3), COL(1, 1), COL(1), NOCOL};
        one_client_state(&bad, 2, "ba", 2, ic, 0, no_dels);
    }
    /* The same items listed "a", "b". */
    {
        const col_t ic[6] = {COL(0x02, 0x10), COL(0), NOCOL, COL(1, 1), COL(1), NOCOL};
        one_client_state(&good, 2, "ab", 2, ic, 0, no_dels);
    }
    assert_refused_everywhere(&bad);
    want = loaded_everywhere(&good);
    assert_int_equal(crdt_doc_text(want, &t), 0);
    assert_string_equal((const char *)t.base, "ab");
    crdt_buf_dispose(&t);
    crdt_doc_free(want);
}

/*
 * Origins name inserted characters, never the clock of a delete operation:
 * every way of reading a state refuses a right origin (or a left one) that
 * names a delete record's clock, and accepts the same state without it.
 */
static void test_doc_load_origin_naming_a_delete_refused(void **state)
{
    bytes_t bad_right, bad_left, good;
    crdt_doc_t *want;
    /* Client 9: clock 0 "a"; clock 1 deletes it (a backspace); clock 2 "b"
     * after "a". The record fills clock 1, the gap between the items. */
    const col_t dc[4] = {COL(0x1e), COL(0), NOCOL, NOCOL};
    (void)state;
    /* b's right origin (explicit, one back): clock 1, the delete. */
    {
        const col_t ic[6] = {COL(0x03, 0xec), COL(0), COL(2), COL(1, 1), NOCOL, COL(1)};
        one_client_state(&bad_right, 3, "ab", 2, ic, 1, dc);
    }
    /* b's left origin (explicit, one back): clock 1, the delete. */
    {
        const col_t ic[6] = {COL(0x03, 0x14), COL(0), COL(2), COL(1, 1), COL(1), NOCOL};
        one_client_state(&bad_left, 3, "ab", 2, ic, 1, dc);
    }
    /* b after "a" with no right origin. */
    {
        const col_t ic[6] = {COL(0x03, 0x0c), COL(0), COL(2), COL(1, 1), NOCOL, NOCOL};
        one_client_state(&good, 3, "ab", 2, ic, 1, dc);
    }
    assert_refused_everywhere(&bad_right);
    assert_refused_everywhere(&bad_left);
    want = loaded_everywhere(&good);
    assert_int_equal(crdt_doc_length(want), 1);
    crdt_doc_free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_doc_load_empty_document),
        T(test_doc_load_single_client),
        T(test_doc_load_many_clients_concurrent_edits),
        T(test_doc_load_non_ascii_text),
        T(test_doc_load_reopens_own_replica),
        T(test_doc_apply_update_state_onto_partial_history),
        T(test_doc_encode_state_small_body_uncompressed),
        T(test_doc_encode_state_compresses_large_body),
        T(test_doc_load_both_body_forms),
        T(test_doc_encode_state_ex_uncompressed),
        T(test_doc_load_large_document),
        T(test_doc_load_client_with_only_deletes),
        T(test_doc_load_extreme_client_ids),
        T(test_doc_load_rejects_every_truncation),
        T(test_doc_load_survives_random_byte_flips),
        T(test_doc_load_rejects_huge_declared_sizes),
        T(test_doc_load_unknown_flags_is_eformat),
        T(test_doc_load_rejects_forward_same_client_references),
        T(test_doc_load_deleted_flags_agree_with_delete_records),
        T(test_doc_load_out_of_memory_leaks_nothing),
        T(test_doc_load_trusted_matches_load),
        T(test_doc_load_delete_targets_in_parts),
        T(test_doc_load_item_before_its_left_origin_refused),
        T(test_doc_load_origin_naming_a_delete_refused),
        T(test_doc_load_too_many_clients_elimit),
        T(test_doc_load_origin_client_past_table_emalformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
