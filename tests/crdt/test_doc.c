/* SPDX-License-Identifier: MIT */
/*
 * test_doc.c: the local editing API of one crdt/ document. Insert and delete at
 * the start, middle and end, deletes spanning items of several clients, range
 * and UTF-8 errors (which leave the document and the update argument untouched),
 * the UTF-16 index unit (emoji count 2 and cannot be split, CJK counts 1,
 * combining marks are characters of their own), the UTF-8 length, empty edits
 * (whose update applies as a no-op), crdt_strerror() for every code, and relative
 * positions: creation, index round trips, both associativities, the document
 * edges, concurrent inserts, deletion of the anchor, unknown anchors, and the
 * encode/decode round trip with malformed input. Every change is followed by
 * crdt_doc_check(). White-box: the ASCII flags of the parts of split mixed
 * runs, and the limit on a client's text arena.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdt.h"
#include "crdt_internal.h" /* the white-box tests at the end */
#include "test_alloc.h"
#include "testutil.h"

#define EMOJI "\xf0\x9f\x98\x80"       /* U+1F600, 4 UTF-8 bytes, 2 UTF-16 units */
#define CJK "\xe4\xb8\xad\xe6\x96\x87" /* U+4E2D U+6587, 3 bytes and 1 unit each */
#define E_ACUTE "e\xcc\x81"            /* e + U+0301 COMBINING ACUTE ACCENT */

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_new(client, NULL, &doc), 0);
    assert_non_null(doc);
    return doc;
}

static void ins(crdt_doc_t *doc, size_t index, const char *s)
{
    int rc = crdt_doc_insert(doc, index, s, strlen(s), NULL);
    if (rc != 0)
        fail_msg("insert(%zu, \"%s\"): %s", index, s, crdt_strerror(rc));
    assert_check(doc);
}

static void del(crdt_doc_t *doc, size_t index, size_t len)
{
    int rc = crdt_doc_delete(doc, index, len, NULL);
    if (rc != 0)
        fail_msg("delete(%zu, %zu): %s", index, len, crdt_strerror(rc));
    assert_check(doc);
}

/* Applies `u` to `doc` and disposes of it. */
static void apply(crdt_doc_t *doc, crdt_buf_t *u)
{
    int rc = crdt_doc_apply_update(doc, u->base, u->len);
    if (rc != 0)
        fail_msg("apply_update: %s", crdt_strerror(rc));
    assert_check(doc);
    crdt_buf_dispose(u);
}

/* Brings b up to date with a through a diff. */
static void sync_to(crdt_doc_t *b, const crdt_doc_t *a)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(b, &sv), 0);
    assert_int_equal(crdt_doc_diff(a, sv.base, sv.len, &d), 0);
    apply(b, &d);
    crdt_buf_dispose(&sv);
}

/* A crdt_buf_t holding recognisable junk, to see that failing calls leave it be. */
static crdt_buf_t sentinel_buf(void)
{
    crdt_buf_t b;
    memset(&b, 0xa5, sizeof(b));
    return b;
}

static void assert_sentinel(const crdt_buf_t *b)
{
    crdt_buf_t s = sentinel_buf();
    assert_memory_equal(b, &s, sizeof(s));
}

/* ---- insert / delete / text ------------------------------------------------- */

static void test_new_rejects_null_out(void **state)
{
    crdt_alloc_t bad = {NULL, NULL, NULL, NULL};
    crdt_doc_t *doc = (crdt_doc_t *)&bad;
    (void)state;
    assert_int_equal(crdt_doc_new(1, NULL, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_doc_new(1, &bad, &doc), CRDT_EINVAL);
    assert_ptr_equal(doc, (crdt_doc_t *)&bad);
    crdt_doc_free(NULL);
}

static void test_new_is_empty(void **state)
{
    crdt_doc_t *doc = new_doc(0x1234567890abcdefULL);
    (void)state;
    assert_int_equal(crdt_doc_client(doc), 0x1234567890abcdefULL);
    assert_int_equal(crdt_doc_length(doc), 0);
    assert_int_equal(crdt_doc_utf8_length(doc), 0);
    assert_int_equal(crdt_doc_pending(doc), 0);
    assert_text(doc, "");
    assert_check(doc);
    crdt_doc_free(doc);
}

static void test_insert_at_start_middle_end(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, "world");
    assert_text(doc, "world");
    ins(doc, 0, "hello");
    assert_text(doc, "helloworld");
    ins(doc, 5, ", ");
    assert_text(doc, "hello, world");
    ins(doc, 12, "!");
    assert_text(doc, "hello, world!");
    ins(doc, 1, "E");
    assert_text(doc, "hEello, world!");
    ins(doc, 14, "?");
    assert_text(doc, "hEello, world!?");
    assert_int_equal(crdt_doc_length(doc), 15);
    assert_int_equal(crdt_doc_utf8_length(doc), 15);
    crdt_doc_free(doc);
}

static void test_insert_typing_one_char_at_a_time(void **state)
{
    const char *word = "the quick brown fox";
    crdt_doc_t *doc = new_doc(1), *peer = new_doc(2);
    crdt_buf_t u;
    (void)state;
    for (size_t i = 0; word[i]; i++) {
        assert_int_equal(crdt_doc_insert(doc, i, &word[i], 1, &u), 0);
        assert_check(doc);
        apply(peer, &u);
    }
    assert_text(doc, word);
    assert_text(peer, word);
    /* Now type into the middle of that run, then backwards at the start. */
    ins(doc, 4, "very ");
    ins(doc, 0, "c");
    ins(doc, 0, "b");
    ins(doc, 0, "a");
    assert_text(doc, "abcthe very quick brown fox");
    sync_to(peer, doc);
    assert_text(peer, "abcthe very quick brown fox");
    crdt_doc_free(doc);
    crdt_doc_free(peer);
}

static void test_insert_returns_update_for_peer(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, &u), 0);
    assert_non_null(u.base);
    assert_true(u.len > 0);
    assert_int_equal(u.base[u.len], 0); /* documented NUL terminator */
    apply(b, &u);
    assert_text(b, "abc");
    assert_int_equal(crdt_doc_insert(a, 1, CJK, strlen(CJK), &u), 0);
    apply(b, &u);
    assert_text(b, "a" CJK "bc");
    assert_int_equal(crdt_doc_delete(a, 0, 2, &u), 0);
    apply(b, &u);
    assert_text(b, "\xe6\x96\x87"
                   "bc");
    assert_text(a, "\xe6\x96\x87"
                   "bc");
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_delete_at_start_middle_end(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, "0123456789");
    del(doc, 0, 1);
    assert_text(doc, "123456789");
    del(doc, 8, 1);
    assert_text(doc, "12345678");
    del(doc, 3, 2);
    assert_text(doc, "123678");
    del(doc, 0, 6);
    assert_text(doc, "");
    assert_int_equal(crdt_doc_length(doc), 0);
    ins(doc, 0, "again");
    assert_text(doc, "again");
    crdt_doc_free(doc);
}

static void test_delete_range_across_items_of_several_clients(void **state)
{
    crdt_doc_t *a = new_doc(10), *b = new_doc(20), *c = new_doc(30);
    crdt_buf_t u;
    (void)state;
    ins(a, 0, "aaaaaaaaaa");
    sync_to(b, a);
    sync_to(c, a);
    ins(b, 3, "BBB"); /* aaaBBBaaaaaaa */
    ins(c, 8, "CC");  /* concurrently: aaaaaaaaCCaa */
    ins(a, 5, "A");   /* aaaaaAaaaaa */
    sync_to(a, b);
    sync_to(a, c);
    sync_to(b, a);
    sync_to(c, a);
    assert_text(a, "aaaBBBaaAaaaCCaa");
    del(a, 4, 6); /* "BBaaAa": pieces of three clients' items */
    assert_text(a, "aaaBaaCCaa");
    /* Concurrently, a second range starting inside one item and ending inside
     * another. */
    assert_int_equal(crdt_doc_delete(b, 1, 14, &u), 0);
    assert_check(b);
    assert_text(b, "aa");
    apply(c, &u);
    sync_to(c, a);
    sync_to(a, c);
    sync_to(b, c);
    assert_text(a, "aa");
    assert_text(b, "aa");
    assert_text(c, "aa");
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
}

static void test_delete_spanning_tombstones(void **state)
{
    crdt_doc_t *doc = new_doc(1), *peer = new_doc(2);
    crdt_buf_t u;
    (void)state;
    ins(doc, 0, "abcdefghij");
    del(doc, 2, 2); /* ab|efghij, cd tombstones */
    del(doc, 4, 2); /* abef|ij, gh tombstones */
    assert_text(doc, "abefij");
    assert_int_equal(crdt_doc_delete(doc, 1, 4, &u), 0); /* b e f i over tombstones */
    assert_check(doc);
    assert_text(doc, "aj");
    crdt_buf_dispose(&u);
    sync_to(peer, doc);
    assert_text(peer, "aj");
    crdt_doc_free(doc);
    crdt_doc_free(peer);
}

static void test_insert_out_of_range_eindex(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    crdt_buf_t u = sentinel_buf();
    snap_t s;
    (void)state;
    assert_int_equal(crdt_doc_insert(doc, 1, "x", 1, &u), CRDT_EINDEX);
    assert_sentinel(&u);
    ins(doc, 0, "abc");
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_insert(doc, 4, "x", 1, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_insert(doc, SIZE_MAX, "x", 1, &u), CRDT_EINDEX);
    assert_sentinel(&u);
    assert_unchanged(doc, &s);
    snap_dispose(&s);
    crdt_doc_free(doc);
}

static void test_delete_out_of_range_eindex(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    crdt_buf_t u = sentinel_buf();
    snap_t s;
    (void)state;
    assert_int_equal(crdt_doc_delete(doc, 0, 1, &u), CRDT_EINDEX);
    ins(doc, 0, "abc");
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_delete(doc, 4, 0, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, 3, 1, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, 0, 4, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, 2, 2, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, 1, SIZE_MAX, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, SIZE_MAX, 1, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_delete(doc, SIZE_MAX, SIZE_MAX, &u), CRDT_EINDEX);
    assert_sentinel(&u);
    assert_unchanged(doc, &s);
    snap_dispose(&s);
    crdt_doc_free(doc);
}

static void test_insert_invalid_utf8_eutf8(void **state)
{
    static const struct {
        const char *what, *bytes;
    } bad[] = {
        {"overlong 2-byte '/'", "\xc0\xaf"},
        {"overlong 2-byte C1", "\xc1\xbf"},
        {"overlong 3-byte '/'", "\xe0\x80\xaf"},
        {"overlong 3-byte U+07FF", "\xe0\x9f\xbf"},
        {"overlong 4-byte '/'", "\xf0\x80\x80\xaf"},
        {"overlong 4-byte U+FFFF", "\xf0\x8f\xbf\xbf"},
        {"high surrogate U+D800", "\xed\xa0\x80"},
        {"low surrogate U+DFFF", "\xed\xbf\xbf"},
        {"CESU-8 surrogate pair", "\xed\xa0\xbd\xed\xb8\x80"},
        {"above U+10FFFF", "\xf4\x90\x80\x80"},
        {"F5 lead byte", "\xf5\x80\x80\x80"},
        {"FF byte", "a\xff"},
        {"lone continuation", "\x80"},
        {"continuation after ASCII", "ab\xbf"},
        {"truncated 2-byte", "a\xc3"},
        {"truncated 3-byte", "\xe2\x82"},
        {"truncated 4-byte", "\xf0\x9f\x98"},
        {"truncated 4-byte then ASCII", "\xf0\x9f\x98z"},
        {"5-byte form", "\xf8\x88\x80\x80\x80"},
    };
    crdt_doc_t *doc = new_doc(1);
    crdt_buf_t u = sentinel_buf();
    snap_t s;
    (void)state;
    ins(doc, 0, "ok " EMOJI);
    snap_take(doc, &s);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = crdt_doc_insert(doc, 1, bad[i].bytes, strlen(bad[i].bytes), &u);
        if (rc != CRDT_EUTF8)
            fail_msg("%s: insert returned %d (%s), expected CRDT_EUTF8", bad[i].what, rc,
                     crdt_strerror(rc));
        assert_sentinel(&u);
        assert_unchanged(doc, &s);
    }
    /* The largest code point and U+FFFF are fine; so is a NUL byte. */
    ins(doc, 0, "\xf4\x8f\xbf\xbf\xef\xbf\xbf");
    assert_int_equal(crdt_doc_length(doc), s.length + 3);
    assert_int_equal(crdt_doc_insert(doc, 0, "a\0b", 3, NULL), 0);
    assert_int_equal(crdt_doc_utf8_length(doc), s.utf8_length + 7 + 3);
    assert_check(doc);
    snap_dispose(&s);
    crdt_doc_free(doc);
}

static void test_insert_null_text_einval(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    assert_int_equal(crdt_doc_insert(doc, 0, NULL, 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_doc_insert(NULL, 0, "a", 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_doc_delete(NULL, 0, 0, NULL), CRDT_EINVAL);
    assert_check(doc);
    crdt_doc_free(doc);
}

/* ---- the UTF-16 index unit ------------------------------------------------------ */

static void test_length_emoji_counts_two(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, EMOJI);
    assert_int_equal(crdt_doc_length(doc), 2);
    assert_int_equal(crdt_doc_utf8_length(doc), 4);
    ins(doc, 2, "b");
    ins(doc, 0, "a");
    assert_text(doc, "a" EMOJI "b");
    assert_int_equal(crdt_doc_length(doc), 4);
    assert_int_equal(crdt_doc_utf8_length(doc), 6);
    ins(doc, 3, EMOJI); /* right after the first emoji */
    assert_text(doc, "a" EMOJI EMOJI "b");
    assert_int_equal(crdt_doc_length(doc), 6);
    crdt_doc_free(doc);
}

static void test_insert_inside_emoji_eindex(void **state)
{
    crdt_doc_t *doc = new_doc(1), *peer = new_doc(2);
    crdt_buf_t u = sentinel_buf();
    snap_t s;
    (void)state;
    ins(doc, 0, "a" EMOJI "b" EMOJI);
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_insert(doc, 2, "x", 1, &u), CRDT_EINDEX);
    assert_int_equal(crdt_doc_insert(doc, 5, "x", 1, &u), CRDT_EINDEX);
    assert_sentinel(&u);
    assert_unchanged(doc, &s);
    /* The same holds when the emoji came from another replica and sits alone in
     * its own item. */
    sync_to(peer, doc);
    ins(peer, 4, EMOJI);
    assert_text(peer, "a" EMOJI "b" EMOJI EMOJI);
    assert_int_equal(crdt_doc_insert(peer, 5, "x", 1, NULL), CRDT_EINDEX);
    assert_int_equal(crdt_doc_insert(peer, 7, "x", 1, NULL), CRDT_EINDEX);
    ins(peer, 6, "x");
    assert_text(peer, "a" EMOJI "b" EMOJI "x" EMOJI);
    snap_dispose(&s);
    crdt_doc_free(doc);
    crdt_doc_free(peer);
}

static void test_delete_inside_emoji_eindex(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    crdt_buf_t u = sentinel_buf();
    snap_t s;
    (void)state;
    ins(doc, 0, "a" EMOJI "b");
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_delete(doc, 2, 1, &u), CRDT_EINDEX); /* low half */
    assert_int_equal(crdt_doc_delete(doc, 1, 1, &u), CRDT_EINDEX); /* high half */
    assert_int_equal(crdt_doc_delete(doc, 0, 2, &u), CRDT_EINDEX); /* ends inside */
    assert_int_equal(crdt_doc_delete(doc, 2, 2, &u), CRDT_EINDEX); /* starts inside */
    assert_sentinel(&u);
    assert_unchanged(doc, &s);
    del(doc, 1, 2);
    assert_text(doc, "ab");
    snap_dispose(&s);
    crdt_doc_free(doc);
}

static void test_delete_emoji_range_ending_inside_later_item_eindex(void **state)
{
    crdt_doc_t *doc = new_doc(1), *peer = new_doc(2);
    snap_t s;
    (void)state;
    ins(doc, 0, "ab");
    sync_to(peer, doc);
    ins(peer, 1, EMOJI "c"); /* a😀cb, the emoji in another item */
    sync_to(doc, peer);
    assert_text(doc, "a" EMOJI "cb");
    snap_take(doc, &s);
    assert_int_equal(crdt_doc_delete(doc, 0, 2, NULL), CRDT_EINDEX);
    assert_unchanged(doc, &s);
    del(doc, 0, 3);
    assert_text(doc, "cb");
    snap_dispose(&s);
    crdt_doc_free(doc);
    crdt_doc_free(peer);
}

static void test_length_cjk_counts_one(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, CJK);
    assert_int_equal(crdt_doc_length(doc), 2);
    assert_int_equal(crdt_doc_utf8_length(doc), 6);
    ins(doc, 1, "-");
    assert_text(doc, "\xe4\xb8\xad-\xe6\x96\x87");
    del(doc, 0, 1);
    assert_text(doc, "-\xe6\x96\x87");
    assert_int_equal(crdt_doc_length(doc), 2);
    assert_int_equal(crdt_doc_utf8_length(doc), 4);
    crdt_doc_free(doc);
}

static void test_delete_combining_mark_separately(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, E_ACUTE E_ACUTE);
    assert_int_equal(crdt_doc_length(doc), 4);
    assert_int_equal(crdt_doc_utf8_length(doc), 6);
    del(doc, 1, 1); /* the accent of the first one */
    assert_text(doc, "e" E_ACUTE);
    del(doc, 1, 1); /* the second base letter, leaving its accent */
    assert_text(doc, "e\xcc\x81");
    ins(doc, 1, "X");
    assert_text(doc, "eX\xcc\x81");
    assert_int_equal(crdt_doc_length(doc), 3);
    crdt_doc_free(doc);
}

static void test_utf8_length_tracks_edits(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    const char *mix = "a" EMOJI CJK E_ACUTE "z";
    (void)state;
    ins(a, 0, mix);
    assert_int_equal(crdt_doc_utf8_length(a), strlen(mix));
    assert_int_equal(crdt_doc_length(a), 1 + 2 + 2 + 2 + 1);
    del(a, 1, 2);
    assert_int_equal(crdt_doc_utf8_length(a), strlen(mix) - 4);
    sync_to(b, a);
    assert_int_equal(crdt_doc_utf8_length(b), strlen(mix) - 4);
    assert_int_equal(crdt_doc_length(b), 6);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* ---- empty edits ------------------------------------------------------------------ */

static void test_insert_empty_update_is_noop(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u;
    snap_t sa, sb;
    (void)state;
    ins(a, 0, "abc");
    sync_to(b, a);
    snap_take(a, &sa);
    snap_take(b, &sb);
    assert_int_equal(crdt_doc_insert(a, 1, "", 0, &u), 0);
    assert_non_null(u.base);
    assert_unchanged(a, &sa);
    assert_int_equal(crdt_doc_apply_update(b, u.base, u.len), 0);
    assert_unchanged(b, &sb);
    assert_int_equal(crdt_doc_apply_update(a, u.base, u.len), 0);
    assert_unchanged(a, &sa);
    crdt_buf_dispose(&u);
    assert_int_equal(crdt_doc_insert(a, 3, NULL, 0, &u), 0);
    assert_int_equal(crdt_doc_apply_update(b, u.base, u.len), 0);
    assert_unchanged(b, &sb);
    crdt_buf_dispose(&u);
    assert_int_equal(crdt_doc_insert(a, 0, "", 0, NULL), 0);
    assert_unchanged(a, &sa);
    /* An empty update also loads as an empty document. */
    {
        crdt_doc_t *c = NULL;
        assert_int_equal(crdt_doc_insert(a, 0, "", 0, &u), 0);
        assert_int_equal(crdt_doc_load(3, NULL, u.base, u.len, &c), 0);
        assert_text(c, "");
        assert_check(c);
        crdt_doc_free(c);
        crdt_buf_dispose(&u);
    }
    snap_dispose(&sa);
    snap_dispose(&sb);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_delete_empty_update_is_noop(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u;
    snap_t sa, sb;
    (void)state;
    ins(a, 0, "abc");
    sync_to(b, a);
    snap_take(a, &sa);
    snap_take(b, &sb);
    for (size_t i = 0; i <= 3; i++) {
        assert_int_equal(crdt_doc_delete(a, i, 0, &u), 0);
        assert_non_null(u.base);
        assert_unchanged(a, &sa);
        assert_int_equal(crdt_doc_apply_update(b, u.base, u.len), 0);
        assert_unchanged(b, &sb);
        crdt_buf_dispose(&u);
    }
    assert_int_equal(crdt_doc_delete(a, 0, 0, NULL), 0);
    assert_unchanged(a, &sa);
    snap_dispose(&sa);
    snap_dispose(&sb);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* ---- strerror --------------------------------------------------------------------- */

static void test_strerror_every_code(void **state)
{
    static const struct {
        int code;
        const char *text;
    } codes[] = {
#define X(name, value, text) {CRDT_##name, text},
        CRDT_ERRNO_MAP(X)
#undef X
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    const char *unknown;
    (void)state;
    assert_int_equal(n, 11);
    for (size_t i = 0; i < n; i++) {
        const char *s = crdt_strerror(codes[i].code);
        assert_non_null(s);
        assert_string_equal(s, codes[i].text);
        assert_true(codes[i].code < 0 && codes[i].code >= -99);
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i].code, codes[j].code);
            assert_string_not_equal(s, crdt_strerror(codes[j].code));
        }
    }
    assert_non_null(crdt_strerror(0));
    unknown = crdt_strerror(-98);
    assert_non_null(unknown);
    assert_non_null(crdt_strerror(1));
    assert_non_null(crdt_strerror(-1000));
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(unknown, codes[i].text);
}

/* ---- relative positions --------------------------------------------------------------- */

static crdt_relpos_t relpos(const crdt_doc_t *doc, size_t index, int assoc)
{
    crdt_relpos_t p;
    int rc = crdt_doc_relpos_from_index(doc, index, assoc, &p);
    if (rc != 0)
        fail_msg("relpos_from_index(%zu, %d): %s", index, assoc, crdt_strerror(rc));
    return p;
}

static size_t relpos_index(const crdt_doc_t *doc, const crdt_relpos_t *p)
{
    size_t i = SIZE_MAX;
    int rc = crdt_doc_relpos_to_index(doc, p, &i);
    if (rc != 0)
        fail_msg("relpos_to_index: %s", crdt_strerror(rc));
    return i;
}

static void test_relpos_from_index_roundtrip(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    const int assocs[] = {CRDT_ASSOC_BEFORE, CRDT_ASSOC_AFTER};
    (void)state;
    ins(a, 0, "ab" EMOJI "cd");
    sync_to(b, a);
    ins(b, 3 + 1, CJK); /* after the emoji, another client's item */
    sync_to(a, b);
    assert_text(a, "ab" EMOJI CJK "cd");
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i <= crdt_doc_length(a); i++) {
            crdt_relpos_t p;
            int rc = crdt_doc_relpos_from_index(a, i, assocs[k], &p);
            if (i == 3) { /* inside the emoji */
                assert_int_equal(rc, CRDT_EINDEX);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(p.assoc, assocs[k]);
            assert_int_equal(relpos_index(a, &p), i);
            assert_int_equal(relpos_index(b, &p), i);
        }
    }
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_relpos_from_index_errors(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    crdt_relpos_t p, keep;
    (void)state;
    memset(&keep, 0x5a, sizeof(keep));
    p = keep;
    assert_int_equal(crdt_doc_relpos_from_index(doc, 1, CRDT_ASSOC_AFTER, &p), CRDT_EINDEX);
    ins(doc, 0, "x" EMOJI);
    assert_int_equal(crdt_doc_relpos_from_index(doc, 4, CRDT_ASSOC_AFTER, &p), CRDT_EINDEX);
    assert_int_equal(crdt_doc_relpos_from_index(doc, 2, CRDT_ASSOC_AFTER, &p), CRDT_EINDEX);
    assert_int_equal(crdt_doc_relpos_from_index(doc, 2, CRDT_ASSOC_BEFORE, &p), CRDT_EINDEX);
    assert_int_equal(crdt_doc_relpos_from_index(doc, 1, 0, &p), CRDT_EINVAL);
    assert_int_equal(crdt_doc_relpos_from_index(doc, 1, 2, &p), CRDT_EINVAL);
    assert_memory_equal(&p, &keep, sizeof(p));
    crdt_doc_free(doc);
}

static void test_relpos_to_index_edges(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_relpos_t start, end, start_after, end_before;
    crdt_buf_t u;
    (void)state;
    /* In an empty document both edges are the only index, 0. */
    start = relpos(a, 0, CRDT_ASSOC_BEFORE);
    end = relpos(a, 0, CRDT_ASSOC_AFTER);
    assert_int_equal(start.edge, 1);
    assert_int_equal(end.edge, 2);
    assert_int_equal(relpos_index(a, &start), 0);
    assert_int_equal(relpos_index(a, &end), 0);
    ins(a, 0, "middle");
    assert_int_equal(relpos_index(a, &start), 0);
    assert_int_equal(relpos_index(a, &end), 6);
    /* Index 0 sticking to the character after it, and the end sticking to the
     * character before it, are anchored to characters, not edges. */
    start_after = relpos(a, 0, CRDT_ASSOC_AFTER);
    end_before = relpos(a, 6, CRDT_ASSOC_BEFORE);
    assert_int_equal(start_after.edge, 0);
    assert_int_equal(end_before.edge, 0);
    assert_int_equal(relpos(a, 6, CRDT_ASSOC_AFTER).edge, 2);
    assert_int_equal(relpos(a, 0, CRDT_ASSOC_BEFORE).edge, 1);
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(b, 0, "<<", 2, &u), 0);
    apply(a, &u);
    assert_int_equal(crdt_doc_insert(b, 8, ">>>", 3, &u), 0);
    apply(a, &u);
    assert_text(a, "<<middle>>>");
    assert_int_equal(relpos_index(a, &start), 0);
    assert_int_equal(relpos_index(a, &end), 11);
    assert_int_equal(relpos_index(a, &start_after), 2);
    assert_int_equal(relpos_index(a, &end_before), 8);
    /* An edge position is the same in every document, even an empty one. */
    {
        crdt_doc_t *e = new_doc(3);
        assert_int_equal(relpos_index(e, &start), 0);
        assert_int_equal(relpos_index(e, &end), 0);
        crdt_doc_free(e);
    }
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_relpos_to_index_survives_concurrent_inserts(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_relpos_t after, before, mid;
    crdt_buf_t u;
    (void)state;
    ins(a, 0, "hello world");
    sync_to(b, a);
    after = relpos(a, 5, CRDT_ASSOC_AFTER);   /* sticks to ' ' */
    before = relpos(a, 5, CRDT_ASSOC_BEFORE); /* sticks to 'o' */
    mid = relpos(a, 8, CRDT_ASSOC_AFTER);     /* sticks to 'r' */
    /* Another replica inserts before the positions and exactly at them. */
    assert_int_equal(crdt_doc_insert(b, 0, "Oh, ", 4, &u), 0);
    apply(a, &u);
    assert_int_equal(crdt_doc_insert(b, 9, EMOJI "XYZ", 7, &u), 0);
    apply(a, &u);
    assert_text(a, "Oh, hello" EMOJI "XYZ world");
    assert_int_equal(relpos_index(a, &before), 9);
    assert_int_equal(relpos_index(a, &after), 14);
    assert_int_equal(relpos_index(a, &mid), 17);
    /* Concurrent local and remote edits: a types before the positions too. */
    assert_int_equal(crdt_doc_insert(b, 0, "[b]", 3, &u), 0);
    ins(a, 4, "[a]");
    apply(a, &u);
    assert_int_equal(relpos_index(a, &before), 15);
    assert_int_equal(relpos_index(a, &after), 20);
    sync_to(b, a);
    assert_int_equal(relpos_index(b, &before), 15);
    assert_int_equal(relpos_index(b, &after), 20);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_relpos_to_index_survives_anchor_deletion(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_relpos_t after, before;
    crdt_buf_t u;
    (void)state;
    ins(a, 0, "abcdef");
    sync_to(b, a);
    after = relpos(a, 3, CRDT_ASSOC_AFTER);   /* 'd' */
    before = relpos(a, 3, CRDT_ASSOC_BEFORE); /* 'c' */
    /* The other replica deletes both anchors and a neighbour. */
    assert_int_equal(crdt_doc_delete(b, 2, 3, &u), 0);
    apply(a, &u);
    assert_text(a, "abf");
    assert_int_equal(relpos_index(a, &after), 2);
    assert_int_equal(relpos_index(a, &before), 2);
    assert_int_equal(relpos_index(b, &after), 2);
    /* Text typed later where the anchors were moves the positions with it. */
    ins(a, 0, "__");
    assert_int_equal(relpos_index(a, &after), 4);
    ins(a, 4, "XY");
    assert_text(a, "__abXYf");
    {
        size_t i = relpos_index(a, &after);
        assert_true(i >= 4 && i <= 6);
    }
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_relpos_to_index_unknown_anchor_enotfound(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_relpos_t p;
    crdt_buf_t u;
    size_t idx = 12345;
    (void)state;
    ins(a, 0, "abc");
    p = relpos(a, 1, CRDT_ASSOC_AFTER);
    assert_int_equal(crdt_doc_relpos_to_index(b, &p, &idx), CRDT_ENOTFOUND);
    assert_int_equal(idx, 12345);
    /* Known client, unknown clock. */
    ins(b, 0, "x");
    sync_to(a, b);
    p.client = 2;
    p.clock = 1;
    assert_int_equal(crdt_doc_relpos_to_index(a, &p, &idx), CRDT_ENOTFOUND);
    p.clock = UINT32_MAX;
    assert_int_equal(crdt_doc_relpos_to_index(a, &p, &idx), CRDT_ENOTFOUND);
    /* An id that is a deletion, not a character. */
    assert_int_equal(crdt_doc_delete(a, 0, 1, &u), 0); /* a's clock 3 is a delete */
    crdt_buf_dispose(&u);
    p.client = 1;
    p.clock = 3;
    assert_int_equal(crdt_doc_relpos_to_index(a, &p, &idx), CRDT_ENOTFOUND);
    assert_int_equal(idx, 12345);
    /* Once the anchor arrives it resolves. */
    p = relpos(a, 1, CRDT_ASSOC_AFTER);
    sync_to(b, a);
    assert_int_equal(crdt_doc_relpos_to_index(b, &p, &idx), 0);
    assert_int_equal(idx, 1);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_relpos_encode_roundtrip(void **state)
{
    crdt_doc_t *doc = new_doc(UINT64_MAX);
    crdt_relpos_t ps[8];
    size_t n = 0;
    (void)state;
    ins(doc, 0, "hello");
    ps[n++] = relpos(doc, 0, CRDT_ASSOC_BEFORE);
    ps[n++] = relpos(doc, 0, CRDT_ASSOC_AFTER);
    ps[n++] = relpos(doc, 3, CRDT_ASSOC_BEFORE);
    ps[n++] = relpos(doc, 3, CRDT_ASSOC_AFTER);
    ps[n++] = relpos(doc, 5, CRDT_ASSOC_BEFORE);
    ps[n++] = relpos(doc, 5, CRDT_ASSOC_AFTER);
    memset(&ps[n], 0, sizeof(ps[n]));
    ps[n].client = UINT64_MAX;
    ps[n].clock = UINT32_MAX;
    ps[n++].assoc = CRDT_ASSOC_BEFORE;
    memset(&ps[n], 0, sizeof(ps[n]));
    ps[n++].assoc = CRDT_ASSOC_AFTER;
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[CRDT_RELPOS_MAX + 8];
        crdt_relpos_t back;
        size_t len;
        memset(buf, 0xee, sizeof(buf));
        len = crdt_relpos_encode(&ps[i], buf);
        assert_true(len >= 1 && len <= CRDT_RELPOS_MAX);
        for (size_t k = len; k < sizeof(buf); k++)
            assert_int_equal(buf[k], 0xee);
        memset(&back, 0x77, sizeof(back));
        assert_int_equal(crdt_relpos_decode(buf, len, &back), 0);
        assert_int_equal(back.edge, ps[i].edge);
        assert_int_equal(back.assoc, ps[i].assoc);
        if (ps[i].edge == 0) {
            assert_int_equal(back.client, ps[i].client);
            assert_int_equal(back.clock, ps[i].clock);
            if (i < 6)
                assert_int_equal(relpos_index(doc, &back), relpos_index(doc, &ps[i]));
        }
        /* Every strict prefix is malformed, and so is one byte too many. */
        for (size_t k = 0; k < len; k++) {
            crdt_relpos_t keep = back;
            assert_int_equal(crdt_relpos_decode(buf, k, &back), CRDT_EMALFORMED);
            assert_memory_equal(&keep, &back, sizeof(back));
        }
        buf[len] = 0;
        assert_int_equal(crdt_relpos_decode(buf, len + 1, &back), CRDT_EMALFORMED);
    }
    crdt_doc_free(doc);
}

static void test_relpos_decode_malformed(void **state)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } bad[] = {
        {"empty", {0}, 0},
        {"edge 3", {0x03}, 1},
        {"unknown flag 0x04", {0x05}, 1},
        {"unknown flag 0x20", {0x21}, 1},
        {"unknown flag 0x80", {0x81}, 1},
        {"edge with trailing byte", {0x01, 0x00}, 2},
        {"anchor without id", {0x00}, 1},
        {"anchor with 7-byte client", {0x00, 1, 2, 3, 4, 5, 6, 7}, 8},
        {"anchor without clock", {0x00, 1, 0, 0, 0, 0, 0, 0, 0}, 9},
        {"clock varint unterminated", {0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0x80}, 10},
        {"clock above 32 bits", {0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10}, 14},
    };
    crdt_relpos_t p, keep;
    (void)state;
    memset(&keep, 0x3c, sizeof(keep));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc;
        p = keep;
        rc = crdt_relpos_decode(bad[i].bytes, bad[i].len, &p);
        if (rc != CRDT_EMALFORMED)
            fail_msg("%s: decode returned %d, expected CRDT_EMALFORMED", bad[i].what, rc);
        assert_memory_equal(&p, &keep, sizeof(p));
    }
    assert_int_equal(crdt_relpos_decode(NULL, 0, &p), CRDT_EMALFORMED);
    /* A struct with an invalid edge is refused by to_index. */
    {
        crdt_doc_t *doc = new_doc(1);
        size_t idx = 7;
        memset(&p, 0, sizeof(p));
        p.edge = 3;
        p.assoc = CRDT_ASSOC_AFTER;
        assert_int_equal(crdt_doc_relpos_to_index(doc, &p, &idx), CRDT_EINVAL);
        assert_int_equal(idx, 7);
        crdt_doc_free(doc);
    }
}

static void test_relpos_to_index_unaffected_by_pending(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u1, u2;
    crdt_relpos_t p;
    size_t idx = 99;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, &u1), 0);
    assert_int_equal(crdt_doc_insert(a, 3, "def", 3, &u2), 0);
    p = relpos(a, 4, CRDT_ASSOC_AFTER); /* 'e', from u2 */
    assert_int_equal(crdt_doc_apply_update(b, u2.base, u2.len), 0);
    assert_true(crdt_doc_pending(b) > 0);
    assert_int_equal(crdt_doc_relpos_to_index(b, &p, &idx), CRDT_ENOTFOUND);
    apply(b, &u1);
    assert_int_equal(crdt_doc_pending(b), 0);
    assert_int_equal(relpos_index(b, &p), 4);
    crdt_buf_dispose(&u2);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* After crdt_doc_set_client, local edits carry the new replica id (seen in
 * the state vector and in who typed what) and merge like anyone's. */
static void test_set_client_switches_replica_of_local_edits(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u1, u2;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "ab", 2, &u1), 0);
    assert_int_equal(crdt_doc_set_client(a, 77), 0);
    assert_int_equal(crdt_doc_client(a), 77);
    assert_int_equal(crdt_doc_insert(a, 2, "cd", 2, &u2), 0);
    assert_int_equal(crdt_doc_check(a), 0);
    assert_int_equal(crdt_doc_apply_update(b, u2.base, u2.len), 0);
    assert_true(crdt_doc_pending(b) > 0); /* "cd" by 77 follows "ab" by 1 */
    assert_int_equal(crdt_doc_apply_update(b, u1.base, u1.len), 0);
    assert_text(b, "abcd");
    /* Back to an id used before: its clock continues. */
    crdt_buf_dispose(&u1);
    assert_int_equal(crdt_doc_set_client(a, 1), 0);
    assert_int_equal(crdt_doc_insert(a, 4, "e", 1, &u1), 0);
    assert_int_equal(crdt_doc_apply_update(b, u1.base, u1.len), 0);
    assert_int_equal(crdt_doc_pending(b), 0);
    assert_text(b, "abcde");
    assert_int_equal(crdt_doc_set_client(NULL, 5), CRDT_EINVAL);
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* Typing goes on where the cursor is, whatever happened since the last
 * keystroke: a remote insert right after the typed run, a jump elsewhere,
 * a delete, a switch of replica. Both replicas end with the same text. */
static void test_typing_continues_correctly_after_other_changes(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "a", 1, NULL), 0);
    assert_int_equal(crdt_doc_insert(a, 1, "b", 1, NULL), 0);
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(b, 2, "X", 1, &u), 0); /* right after the run */
    apply(a, &u);
    assert_text(a, "abX");
    assert_int_equal(crdt_doc_insert(a, 2, "c", 1, NULL), 0); /* before X, not after */
    assert_int_equal(crdt_doc_insert(a, 3, "d", 1, NULL), 0);
    assert_text(a, "abcdX");
    assert_int_equal(crdt_doc_insert(a, 1, "Z", 1, NULL), 0); /* a jump back */
    assert_int_equal(crdt_doc_insert(a, 2, "Y", 1, NULL), 0);
    assert_text(a, "aZYbcdX");
    assert_int_equal(crdt_doc_delete(a, 6, 1, NULL), 0); /* X goes */
    assert_int_equal(crdt_doc_insert(a, 6, "e", 1, NULL), 0);
    assert_int_equal(crdt_doc_set_client(a, 3), 0);
    assert_int_equal(crdt_doc_insert(a, 7, "f", 1, NULL), 0);
    assert_int_equal(crdt_doc_insert(a, 8, "g", 1, NULL), 0);
    assert_text(a, "aZYbcdefg");
    assert_check(a);
    sync_to(b, a);
    assert_text(b, "aZYbcdefg");
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* Positions read while typing and backspacing in one place of a document big
 * enough to have inner tree nodes: the units typed there reach the inner nodes
 * lazily (crdt/seq.c), and every reader must still see them (index to
 * relative position and back, edits elsewhere, the text, the checker). */
static void test_positions_stay_exact_while_typing_in_a_large_document(void **state)
{
    enum { START = 3000, STEPS = 600 };
    crdt_doc_t *doc = new_doc(1);
    char *model = malloc(START + STEPS + 1);
    size_t len = 0, cursor;
    const uint64_t seed = 0x5eed7;
    rng_t r = {seed};
    (void)state;
    assert_non_null(model);
    for (size_t i = 0; i < START; i++) { /* one item each: every insert goes before the last */
        char c = (char)('a' + i % 26);
        assert_int_equal(crdt_doc_insert(doc, 0, &c, 1, NULL), 0);
        memmove(model + 1, model, len++);
        model[0] = c;
    }
    cursor = START / 2;
    for (size_t step = 0; step < STEPS; step++) {
        uint64_t what = rng_below(&r, 10);
        if (what < 6) { /* type at the cursor */
            char c = (char)('A' + rng_below(&r, 26));
            if (crdt_doc_insert(doc, cursor, &c, 1, NULL) != 0)
                fail_msg("seed %#llx step %zu: insert", (unsigned long long)seed, step);
            memmove(model + cursor + 1, model + cursor, len - cursor);
            model[cursor++] = c;
            len++;
        } else if (what < 8 && cursor > 0) { /* backspace */
            if (crdt_doc_delete(doc, cursor - 1, 1, NULL) != 0)
                fail_msg("seed %#llx step %zu: delete", (unsigned long long)seed, step);
            memmove(model + cursor - 1, model + cursor, len - cursor);
            cursor--;
            len--;
        } else { /* jump */
            cursor = rng_below(&r, len + 1);
        }
        if (step % 25 == 0) {
            for (int k = 0; k < 40; k++) {
                size_t i = rng_below(&r, len + 1), back = SIZE_MAX;
                crdt_relpos_t p;
                assert_int_equal(crdt_doc_relpos_from_index(doc, i, CRDT_ASSOC_AFTER, &p), 0);
                assert_int_equal(crdt_doc_relpos_to_index(doc, &p, &back), 0);
                if (back != i)
                    fail_msg("seed %#llx step %zu: index %zu came back as %zu",
                             (unsigned long long)seed, step, i, back);
            }
            model[len] = '\0';
            assert_text(doc, model);
            assert_check(doc);
        }
    }
    model[len] = '\0';
    assert_text(doc, model);
    assert_check(doc);
    free(model);
    crdt_doc_free(doc);
}

/* The change counter grows with every new operation, local or remote, held or
 * integrated, and stays put when integrated operations come again. */
static void test_change_count_grows_only_on_change(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t u1, u2, u3;
    uint64_t n;
    (void)state;
    n = crdt_doc_change_count(a);
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, &u1), 0);
    assert_true(crdt_doc_change_count(a) > n);
    n = crdt_doc_change_count(a);
    assert_int_equal(crdt_doc_insert(a, 3, "def", 3, &u2), 0);
    assert_int_equal(crdt_doc_delete(a, 0, 1, &u3), 0);
    assert_true(crdt_doc_change_count(a) > n);

    n = crdt_doc_change_count(b);
    assert_int_equal(crdt_doc_apply_update(b, u3.base, u3.len), 0); /* held */
    assert_true(crdt_doc_change_count(b) > n);
    assert_int_equal(crdt_doc_apply_update(b, u3.base, u3.len), 0); /* held again */
    n = crdt_doc_change_count(b);
    assert_int_equal(crdt_doc_apply_update(b, u2.base, u2.len), 0); /* held, new */
    assert_true(crdt_doc_change_count(b) > n);
    n = crdt_doc_change_count(b);
    assert_int_equal(crdt_doc_apply_update(b, u1.base, u1.len), 0); /* all in */
    assert_true(crdt_doc_change_count(b) > n);
    assert_int_equal(crdt_doc_pending(b), 0);
    n = crdt_doc_change_count(b);
    assert_int_equal(crdt_doc_apply_update(b, u1.base, u1.len), 0);
    assert_int_equal(crdt_doc_apply_update(b, u2.base, u2.len), 0);
    assert_int_equal(crdt_doc_change_count(b), n);
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    crdt_buf_dispose(&u3);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/*
 * A typing session (ASCII, so units are characters): a cursor moves, types runs,
 * backspaces and deletes forward. A model of the visible characters' ids
 * (clocks) says where every relative position must be; positions whose anchor
 * was deleted must stay within the text. A peer fed every update agrees.
 */
static void test_relpos_to_index_tracks_typing_session(void **state)
{
    enum { STEPS = 3000, MAXP = 64 };
    crdt_doc_t *doc = new_doc(1), *peer = new_doc(2);
    uint32_t *model = malloc(sizeof(uint32_t) * (STEPS * 4 + 16));
    size_t n = 0, cursor = 0, np = 0;
    uint32_t clock = 0;
    crdt_relpos_t pos[MAXP];
    rng_t rng = {0x7e1a};
    (void)state;
    assert_non_null(model);
    for (int step = 0; step < STEPS; step++) {
        uint64_t k = rng_below(&rng, 100);
        crdt_buf_t u;
        if (k < 10)
            cursor = rng_below(&rng, n + 1);
        if (k < 60 || n == 0) {
            char text[4];
            size_t len = 1 + rng_below(&rng, 3);
            for (size_t i = 0; i < len; i++)
                text[i] = (char)('a' + rng_below(&rng, 26));
            assert_int_equal(crdt_doc_insert(doc, cursor, text, len, &u), 0);
            memmove(&model[cursor + len], &model[cursor], (n - cursor) * sizeof(uint32_t));
            for (size_t i = 0; i < len; i++)
                model[cursor + i] = clock++;
            n += len;
            cursor += len;
        } else if (k < 85 && cursor > 0) { /* backspace */
            assert_int_equal(crdt_doc_delete(doc, cursor - 1, 1, &u), 0);
            memmove(&model[cursor - 1], &model[cursor], (n - cursor) * sizeof(uint32_t));
            n--;
            cursor--;
            clock++;
        } else if (cursor < n) { /* delete forward, sometimes a word */
            size_t len = 1 + rng_below(&rng, n - cursor < 5 ? n - cursor : 5);
            assert_int_equal(crdt_doc_delete(doc, cursor, len, &u), 0);
            memmove(&model[cursor], &model[cursor + len], (n - cursor - len) * sizeof(uint32_t));
            n -= len;
            clock += (uint32_t)len;
        } else {
            continue;
        }
        apply(peer, &u);
        assert_int_equal(crdt_doc_length(doc), n);
        if (step % 7 == 0) {
            int assoc = rng_pct(&rng, 50) ? CRDT_ASSOC_AFTER : CRDT_ASSOC_BEFORE;
            size_t at = rng_below(&rng, n + 1);
            crdt_relpos_t p = relpos(doc, at, assoc);
            if (p.edge == 0) {
                uint32_t want = model[assoc == CRDT_ASSOC_AFTER ? at : at - 1];
                if (p.clock != want || p.client != 1)
                    fail_msg("step %d: relpos at %zu anchored to clock %u, the character there "
                             "is clock %u",
                             step, at, (unsigned)p.clock, (unsigned)want);
            }
            pos[np++ % MAXP] = p;
        }
        for (size_t i = 0; i < np && i < MAXP; i++) {
            size_t got = relpos_index(doc, &pos[i]), want = SIZE_MAX;
            if (pos[i].edge == 1)
                want = 0;
            else if (pos[i].edge == 2)
                want = n;
            else
                for (size_t j = 0; j < n; j++)
                    if (model[j] == pos[i].clock)
                        want = pos[i].assoc == CRDT_ASSOC_AFTER ? j : j + 1;
            if (want == SIZE_MAX ? got > n : got != want)
                fail_msg("step %d: relative position %zu (clock %u, assoc %d) at %zu, expected "
                         "%zu",
                         step, i, (unsigned)pos[i].clock, pos[i].assoc, got, want);
            if (relpos_index(peer, &pos[i]) != got)
                fail_msg("step %d: the peer puts relative position %zu elsewhere", step, i);
        }
    }
    assert_check(doc);
    assert_check(peer);
    {
        char *a = doc_text(doc);
        assert_text(peer, a);
        free(a);
    }
    free(model);
    crdt_doc_free(doc);
    crdt_doc_free(peer);
}

/* The test allocator sees every byte back. */
static void test_doc_free_releases_everything(void **state)
{
    test_alloc_t ta;
    crdt_doc_t *a = NULL, *b = NULL;
    crdt_buf_t u, t;
    (void)state;
    test_alloc_init(&ta);
    assert_int_equal(crdt_doc_new(1, &ta.alloc, &a), 0);
    assert_int_equal(crdt_doc_new(2, &ta.alloc, &b), 0);
    for (int i = 0; i < 200; i++) {
        size_t at = (size_t)(i * 7) % (crdt_doc_length(a) + 1);
        assert_int_equal(crdt_doc_insert(a, at, "ab" CJK, 8, &u), 0);
        apply(b, &u);
        if (i % 3 == 0) {
            assert_int_equal(crdt_doc_delete(b, (size_t)i % 5, 1, &u), 0);
            apply(a, &u);
        }
    }
    assert_int_equal(crdt_doc_text(a, &t), 0);
    crdt_doc_free(a);
    /* Buffers outlive their document. */
    assert_true(t.len == crdt_doc_utf8_length(b));
    crdt_buf_dispose(&t);
    crdt_buf_dispose(&t);
    crdt_doc_free(b);
    assert_int_equal(test_alloc_live_bytes(&ta), 0);
}

/* ---- white-box: items' ASCII flags, the text arena's limit ---------------- */

/* Every item in the sequence of `doc` is flagged ASCII exactly when its text
 * is. */
static void assert_ascii_flags_exact(const crdt_doc_t *doc)
{
    for (uint32_t it = crdt__seq_first(doc); it != CRDT__NONE; it = crdt__seq_next(doc, it)) {
        const crdt__item_t *x = &ITEM(doc, it);
        bool ascii = crdt__utf8_is_ascii(crdt__item_text(doc, x), crdt__item_bytes(doc, x));
        if (x->ascii != ascii)
            fail_msg("item %u (%u characters) flagged %u", it, x->len, x->ascii);
    }
}

/* Splitting a run that mixes ASCII and CJK gives each part the flag its own
 * text calls for; deletes around and inside such parts (tombstones growing
 * over CJK characters, a cut out of the middle) keep the text right. */
static void test_split_mixed_run_flags_each_part(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    (void)state;
    ins(doc, 0, "abc" CJK "def");
    ins(doc, 1, "X"); /* a | X | bc CJK def */
    assert_text(doc, "aXbc" CJK "def");
    ins(doc, 7, "Y"); /* bc CJK d | Y | ef */
    assert_text(doc, "aXbc" CJK "dYef");
    assert_ascii_flags_exact(doc);
    ins(doc, 4, "Z"); /* bc | Z | CJK d */
    assert_text(doc, "aXbcZ" CJK "dYef");
    assert_ascii_flags_exact(doc);
    /* Backspace over the CJK characters, then forward delete. */
    del(doc, 6, 1);
    del(doc, 5, 1);
    assert_text(doc, "aXbcZdYef");
    ins(doc, 5, CJK "q" CJK);
    assert_text(doc, "aXbcZ" CJK "q" CJK "dYef");
    del(doc, 6, 3); /* inside the new run: a cut */
    assert_text(doc, "aXbcZ" CJK "dYef");
    assert_ascii_flags_exact(doc);
    del(doc, 5, 1);
    del(doc, 5, 1);
    assert_text(doc, "aXbcZdYef");
    crdt_doc_free(doc);
}

/* An arena near CRDT__TEXT_MAX bytes refuses text that would take it past
 * (faked: the arena's length and capacity are set to just below the limit,
 * and no byte of it is read before the refusal), and a pool reserved with a
 * limit never grows past it. */
static void test_text_arena_limit_elimit(void **state)
{
    crdt_doc_t *doc = new_doc(1);
    crdt__pool_t saved, *text, pool = {0};
    (void)state;
    ins(doc, 0, "hello");
    text = &CLIENT(doc, doc->self).text;
    saved = *text;
    text->len = text->cap = CRDT__TEXT_MAX - 2;
    /* typing at the end, then the general path in the middle */
    assert_int_equal(crdt_doc_insert(doc, 5, "abc", 3, NULL), CRDT_ELIMIT);
    assert_int_equal(crdt_doc_insert(doc, 2, "abc", 3, NULL), CRDT_ELIMIT);
    *text = saved;
    assert_check(doc);
    assert_text(doc, "hello");

    assert_int_equal(crdt__pool_reserve_max(doc, &pool, 1, 5, 6), 0);
    assert_int_equal(pool.cap, 6); /* not the minimum of 8 */
    pool.len = 5;
    assert_int_equal(crdt__pool_reserve_max(doc, &pool, 1, 1, 6), 0);
    assert_int_equal(crdt__pool_reserve_max(doc, &pool, 1, 2, 6), CRDT_ELIMIT);
    assert_int_equal(pool.cap, 6);
    crdt__pool_dispose(doc, &pool, 1);
    crdt_doc_free(doc);
}

/* Items name clients in 21 bits: origins keep every client index below
 * CRDT__CLIENT_LIMIT and "no id" exactly (the right origin's client is
 * stored in two parts), and a document refuses a client past the limit
 * before allocating anything. */
static void test_item_clients_in_21_bits(void **state)
{
    const uint32_t clients[] = {0, 1, 0x7FF, 0x800, 0xFFFFF, CRDT__CLIENT_LIMIT - 1};
    crdt__item_t x;
    crdt_doc_t *doc = new_doc(1);
    size_t mem = crdt_doc_mem_bytes(doc);
    (void)state;
    memset(&x, 0, sizeof x);
    for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++) {
        uint32_t c = clients[i], d = clients[(i + 1) % (sizeof clients / sizeof clients[0])];
        x.client = c;
        crdt__item_set_left(&x, crdt__id(c, 7 + (uint32_t)i));
        crdt__item_set_right(&x, crdt__id(d, UINT32_MAX - (uint32_t)i));
        assert_int_equal(x.client, c);
        assert_true(crdt__id_eq(crdt__item_left(&x), crdt__id(c, 7 + (uint32_t)i)));
        assert_true(crdt__id_eq(crdt__item_right(&x), crdt__id(d, UINT32_MAX - (uint32_t)i)));
        crdt__item_set_left(&x, CRDT__NOID);
        crdt__item_set_right(&x, CRDT__NOID);
        assert_true(crdt__id_eq(crdt__item_left(&x), CRDT__NOID));
        assert_true(crdt__id_eq(crdt__item_right(&x), CRDT__NOID));
        assert_int_equal(x.client, c);
    }
    assert_int_equal(crdt__client_reserve(doc, CRDT__CLIENT_LIMIT), CRDT_ELIMIT);
    assert_int_equal(crdt_doc_mem_bytes(doc), mem);
    assert_check(doc);
    crdt_doc_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_null_out),
        cmocka_unit_test(test_new_is_empty),
        cmocka_unit_test(test_insert_at_start_middle_end),
        cmocka_unit_test(test_insert_typing_one_char_at_a_time),
        cmocka_unit_test(test_insert_returns_update_for_peer),
        cmocka_unit_test(test_delete_at_start_middle_end),
        cmocka_unit_test(test_delete_range_across_items_of_several_clients),
        cmocka_unit_test(test_delete_spanning_tombstones),
        cmocka_unit_test(test_insert_out_of_range_eindex),
        cmocka_unit_test(test_delete_out_of_range_eindex),
        cmocka_unit_test(test_insert_invalid_utf8_eutf8),
        cmocka_unit_test(test_insert_null_text_einval),
        cmocka_unit_test(test_length_emoji_counts_two),
        cmocka_unit_test(test_insert_inside_emoji_eindex),
        cmocka_unit_test(test_delete_inside_emoji_eindex),
        cmocka_unit_test(test_delete_emoji_range_ending_inside_later_item_eindex),
        cmocka_unit_test(test_length_cjk_counts_one),
        cmocka_unit_test(test_delete_combining_mark_separately),
        cmocka_unit_test(test_utf8_length_tracks_edits),
        cmocka_unit_test(test_insert_empty_update_is_noop),
        cmocka_unit_test(test_delete_empty_update_is_noop),
        cmocka_unit_test(test_strerror_every_code),
        cmocka_unit_test(test_relpos_from_index_roundtrip),
        cmocka_unit_test(test_relpos_from_index_errors),
        cmocka_unit_test(test_relpos_to_index_edges),
        cmocka_unit_test(test_relpos_to_index_survives_concurrent_inserts),
        cmocka_unit_test(test_relpos_to_index_survives_anchor_deletion),
        cmocka_unit_test(test_relpos_to_index_unknown_anchor_enotfound),
        cmocka_unit_test(test_relpos_encode_roundtrip),
        cmocka_unit_test(test_relpos_decode_malformed),
        cmocka_unit_test(test_relpos_to_index_unaffected_by_pending),
        cmocka_unit_test(test_relpos_to_index_tracks_typing_session),
        cmocka_unit_test(test_change_count_grows_only_on_change),
        cmocka_unit_test(test_set_client_switches_replica_of_local_edits),
        cmocka_unit_test(test_typing_continues_correctly_after_other_changes),
        cmocka_unit_test(test_positions_stay_exact_while_typing_in_a_large_document),
        cmocka_unit_test(test_doc_free_releases_everything),
        cmocka_unit_test(test_split_mixed_run_flags_each_part),
        cmocka_unit_test(test_text_arena_limit_elimit),
        cmocka_unit_test(test_item_clients_in_21_bits),
    };

    if (getenv("CMOCKA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
