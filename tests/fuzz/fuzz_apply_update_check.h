/* SPDX-License-Identifier: MIT */
/*
 * fuzz_apply_update_check.h: the properties crdt_doc_apply_update() must keep
 * for any input bytes, shared by the libFuzzer target (fuzz_apply_update.c), the
 * replay of the committed corpus as a cmocka test (tests/crdt/test_corpus.c) and
 * the corpus generator (make_corpus.c), so that all three use one definition.
 *
 * The input is applied to a document with fixed content from two clients (and
 * one operation held, waiting for its dependency). If the engine rejects it, the
 * error must be a documented one and the document exactly as before (text, state
 * vector, encoded state, pending count, crdt_doc_check()). If it accepts it, the
 * document must pass crdt_doc_check(), its encoded state must load into a
 * document with the same text, applying the input again must change nothing,
 * and the document must still accept a valid update from one of the clients.
 * Merging commutes: the input and a concurrent valid update of a third client,
 * applied in either order, give one text (not asked of inputs that name that
 * client themselves: two histories of one client are a forgery, and which one
 * wins is not specified). Independently, if crdt_doc_load() accepts the input
 * as a new document, that document must pass crdt_doc_check() and its encoded
 * state must apply to an empty document, giving the same text: a loaded
 * document can always be sent to peers. Header only (static inline functions),
 * C11 and crdt.h only; libc's allocator.
 */
#ifndef WEFT_FUZZ_APPLY_UPDATE_CHECK_H
#define WEFT_FUZZ_APPLY_UPDATE_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crdt.h"

/* Replica ids of the fixed content. Inputs that name them reach the content. */
#define FUZZ_CLIENT_A 0x0a
#define FUZZ_CLIENT_B 0x0b
#define FUZZ_CLIENT_DOC 0x0c
#define FUZZ_CLIENT_E 0x0e /* writes the update the input must commute with */

/*
 * The fixed starting point, made the same way every time:
 *   A types "Hello, w\u00f6rld! \U0001F600 \u4e2d\u6587" (A 0..17, 19 UTF-16 units),
 *   B (having A's text) inserts "[B]" after "Hello," and deletes "rld" (B 0..5),
 *   B then types "?" after the "!" (B 6) and "!" after that (B 7).
 * The document under test (client FUZZ_CLIENT_DOC) has A's and B's first changes
 * and B's "!" held (it lacks B's "?"). `follow_up` receives B's "?" update, which
 * applies to the document and releases the held "!".
 * Returns 0, or the first crdt error.
 */
static inline int fuzz_initial_doc(crdt_doc_t **out, crdt_buf_t *follow_up)
{
    static const char hello[] = "Hello, w\xc3\xb6rld! \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87";
    crdt_doc_t *a = NULL, *b = NULL, *doc = NULL;
    crdt_buf_t ua = {0}, ub1 = {0}, ub2 = {0}, ub3 = {0}, ub4 = {0};
    int err;

    memset(follow_up, 0, sizeof(*follow_up));
    if ((err = crdt_doc_new(FUZZ_CLIENT_A, NULL, &a)) != 0 ||
        (err = crdt_doc_new(FUZZ_CLIENT_B, NULL, &b)) != 0 ||
        (err = crdt_doc_new(FUZZ_CLIENT_DOC, NULL, &doc)) != 0 ||
        (err = crdt_doc_insert(a, 0, hello, sizeof(hello) - 1, &ua)) != 0 ||
        (err = crdt_doc_apply_update(b, ua.base, ua.len)) != 0 ||
        (err = crdt_doc_insert(b, 6, "[B]", 3, &ub1)) != 0 ||
        (err = crdt_doc_delete(b, 12, 3, &ub2)) != 0 ||
        (err = crdt_doc_insert(b, 13, "?", 1, &ub3)) != 0 ||
        (err = crdt_doc_insert(b, 14, "!", 1, &ub4)) != 0 ||
        (err = crdt_doc_apply_update(doc, ua.base, ua.len)) != 0 ||
        (err = crdt_doc_apply_update(doc, ub1.base, ub1.len)) != 0 ||
        (err = crdt_doc_apply_update(doc, ub2.base, ub2.len)) != 0 ||
        (err = crdt_doc_apply_update(doc, ub4.base, ub4.len)) != 0)
        goto Exit;
    *follow_up = ub3;
    ub3.base = NULL;
    *out = doc;
    doc = NULL;
Exit:
    crdt_buf_dispose(&ua);
    crdt_buf_dispose(&ub1);
    crdt_buf_dispose(&ub2);
    crdt_buf_dispose(&ub3);
    crdt_buf_dispose(&ub4);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(doc);
    return err;
}

/* Everything observable about a document. */
typedef struct {
    crdt_buf_t text, sv, state;
    size_t pending;
} fuzz_snap_t;

static inline void fuzz_snap_dispose(fuzz_snap_t *s)
{
    crdt_buf_dispose(&s->text);
    crdt_buf_dispose(&s->sv);
    crdt_buf_dispose(&s->state);
}

static inline int fuzz_snap_take(const crdt_doc_t *doc, fuzz_snap_t *s)
{
    int err;
    memset(s, 0, sizeof(*s));
    if ((err = crdt_doc_text(doc, &s->text)) != 0 ||
        (err = crdt_doc_state_vector(doc, &s->sv)) != 0 ||
        (err = crdt_doc_encode_state(doc, &s->state)) != 0) {
        fuzz_snap_dispose(s);
        return err;
    }
    s->pending = crdt_doc_pending(doc);
    return 0;
}

static inline int fuzz_buf_equal(const crdt_buf_t *a, const crdt_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

/* NULL if `doc` still matches `s`, else what differs. */
static inline const char *fuzz_snap_diff(const crdt_doc_t *doc, const fuzz_snap_t *s)
{
    fuzz_snap_t now;
    const char *what = NULL;
    if (crdt_doc_check(doc) != 0)
        return "crdt_doc_check fails";
    if (fuzz_snap_take(doc, &now) != 0)
        return "cannot read the document back (out of memory)";
    if (!fuzz_buf_equal(&now.text, &s->text))
        what = "text changed";
    else if (!fuzz_buf_equal(&now.sv, &s->sv))
        what = "state vector changed";
    else if (!fuzz_buf_equal(&now.state, &s->state))
        what = "encoded state changed";
    else if (now.pending != s->pending)
        what = "pending count changed";
    fuzz_snap_dispose(&now);
    return what;
}

/* If `data` loads as a document, its encoded state must apply to an empty one. */
static inline const char *fuzz_load_check(const uint8_t *data, size_t size)
{
    crdt_doc_t *loaded = NULL, *peer = NULL;
    crdt_buf_t state = {0}, t1 = {0}, t2 = {0};
    const char *bad = NULL;
    int rc = crdt_doc_load(FUZZ_CLIENT_DOC + 2, NULL, data, size, &loaded);
    if (rc != 0)
        return NULL;
    if (crdt_doc_check(loaded) != 0) {
        bad = "a document loaded from the input fails crdt_doc_check";
        goto Exit;
    }
    if (crdt_doc_encode_state(loaded, &state) != 0 ||
        crdt_doc_new(FUZZ_CLIENT_DOC + 3, NULL, &peer) != 0)
        goto Exit;
    rc = crdt_doc_apply_update(peer, state.base, state.len);
    if (rc == CRDT_ENOMEM)
        goto Exit;
    if (rc != 0) {
        bad = "the encoded state of a document loaded from the input is refused by a peer";
        goto Exit;
    }
    if (crdt_doc_check(peer) != 0) {
        bad = "a peer fails crdt_doc_check after merging the state of a loaded document";
        goto Exit;
    }
    if (crdt_doc_text(loaded, &t1) != 0 || crdt_doc_text(peer, &t2) != 0)
        goto Exit;
    if (!fuzz_buf_equal(&t1, &t2))
        bad = "a peer merging the state of a loaded document has another text";
Exit:
    crdt_buf_dispose(&state);
    crdt_buf_dispose(&t1);
    crdt_buf_dispose(&t2);
    crdt_doc_free(loaded);
    crdt_doc_free(peer);
    return bad;
}

/* An update of client FUZZ_CLIENT_E (not in the fixed content) typing "~" right
 * after the "!", concurrently with B's "?" and held "!". */
static inline int fuzz_partner_update(crdt_buf_t *out)
{
    crdt_doc_t *doc = NULL, *e = NULL;
    crdt_buf_t follow_up = {0}, state = {0};
    int err;
    memset(out, 0, sizeof(*out));
    if ((err = fuzz_initial_doc(&doc, &follow_up)) == 0 &&
        (err = crdt_doc_encode_state(doc, &state)) == 0 &&
        (err = crdt_doc_load(FUZZ_CLIENT_E, NULL, state.base, state.len, &e)) == 0)
        err = crdt_doc_insert(e, 13, "~", 1, out);
    crdt_buf_dispose(&follow_up);
    crdt_buf_dispose(&state);
    crdt_doc_free(doc);
    crdt_doc_free(e);
    return err;
}

/* Does the client table of update bytes (form 1 or 2) name replica `id`? Bytes
 * that do not parse that far count as naming it. */
static inline int fuzz_names_client(const uint8_t *p, size_t n, uint64_t id)
{
    const uint8_t *end = p + n;
    uint64_t count = 0;
    unsigned shift = 0;
    int form;
    if (n < 2 || (p[0] != 1 && p[0] != 2))
        return 1;
    form = *p++;
    if (form == 2)
        p++; /* flags */
    do {
        if (p >= end || shift > 63)
            return 1;
        count |= (uint64_t)(*p & 0x7f) << shift;
        shift += 7;
    } while (*p++ & 0x80);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t v = 0;
        if (end - p < 8)
            return 1;
        for (int k = 0; k < 8; k++)
            v |= (uint64_t)p[k] << (8 * k);
        p += 8;
        if (v == id)
            return 1;
        for (int k = 0; form == 2 && k < 2; k++) { /* next_clock, text_bytes */
            do {
                if (p >= end)
                    return 1;
            } while (*p++ & 0x80);
        }
    }
    return 0;
}

/* The input and the partner update, applied to two initial documents in both
 * orders, must give one text. Not asked of inputs naming FUZZ_CLIENT_E: two
 * histories of one client are a forgery, and which one wins is not specified. */
static inline const char *fuzz_commute_check(const uint8_t *data, size_t size)
{
    crdt_doc_t *d1 = NULL, *d2 = NULL;
    crdt_buf_t f1 = {0}, f2 = {0}, partner = {0}, t1 = {0}, t2 = {0};
    const char *bad = NULL;
    if (fuzz_names_client(data, size, FUZZ_CLIENT_E) || fuzz_partner_update(&partner) != 0 ||
        fuzz_initial_doc(&d1, &f1) != 0 || fuzz_initial_doc(&d2, &f2) != 0)
        goto Exit;
    if (crdt_doc_apply_update(d1, data, size) != 0 ||
        crdt_doc_apply_update(d1, partner.base, partner.len) != 0 ||
        crdt_doc_apply_update(d2, partner.base, partner.len) != 0 ||
        crdt_doc_apply_update(d2, data, size) != 0)
        goto Exit; /* out of memory, or refused in one order: nothing to compare */
    if (crdt_doc_check(d1) != 0 || crdt_doc_check(d2) != 0) {
        bad = "crdt_doc_check fails after the input and a concurrent valid update";
        goto Exit;
    }
    if (crdt_doc_text(d1, &t1) != 0 || crdt_doc_text(d2, &t2) != 0)
        goto Exit;
    if (crdt_doc_pending(d1) == crdt_doc_pending(d2) && !fuzz_buf_equal(&t1, &t2))
        bad = "the input and a concurrent valid update give different texts in the two orders";
Exit:
    crdt_buf_dispose(&t1);
    crdt_buf_dispose(&t2);
    crdt_buf_dispose(&f1);
    crdt_buf_dispose(&f2);
    crdt_buf_dispose(&partner);
    crdt_doc_free(d1);
    crdt_doc_free(d2);
    return bad;
}

/*
 * Applies `data` to the fixed document and checks the properties above.
 * Returns NULL if they hold, else a static description of the first violated one.
 */
static inline const char *fuzz_apply_update_check(const uint8_t *data, size_t size)
{
    crdt_doc_t *doc = NULL, *loaded = NULL;
    crdt_buf_t follow_up = {0}, text = {0};
    fuzz_snap_t before, after;
    const char *bad = NULL;
    int rc;

    memset(&before, 0, sizeof(before));
    memset(&after, 0, sizeof(after));
    if (fuzz_initial_doc(&doc, &follow_up) != 0)
        return "cannot build the initial document";
    if (crdt_doc_pending(doc) == 0 || crdt_doc_check(doc) != 0) {
        bad = "the initial document is not as expected";
        goto Exit;
    }
    if (fuzz_snap_take(doc, &before) != 0) {
        bad = "cannot read the initial document";
        goto Exit;
    }

    rc = crdt_doc_apply_update(doc, data, size);
    if (rc != 0) {
        if (rc != CRDT_EMALFORMED && rc != CRDT_EFORMAT && rc != CRDT_ELIMIT &&
            rc != CRDT_EINVALID && rc != CRDT_ENOMEM) {
            bad = "apply_update returned an undocumented error";
            goto Exit;
        }
        bad = fuzz_snap_diff(doc, &before);
        goto Exit;
    }

    /* Accepted. */
    if (crdt_doc_check(doc) != 0) {
        bad = "crdt_doc_check fails after the update was applied";
        goto Exit;
    }
    if (fuzz_snap_take(doc, &after) != 0)
        goto Exit; /* out of memory: nothing more to learn */
    rc = crdt_doc_load(FUZZ_CLIENT_DOC + 1, NULL, after.state.base, after.state.len, &loaded);
    if (rc == CRDT_ENOMEM)
        goto Exit;
    if (rc != 0) {
        bad = "the encoded state of the document does not load";
        goto Exit;
    }
    if (crdt_doc_check(loaded) != 0) {
        bad = "the document loaded from the encoded state fails crdt_doc_check";
        goto Exit;
    }
    if (crdt_doc_text(loaded, &text) != 0)
        goto Exit;
    if (!fuzz_buf_equal(&text, &after.text)) {
        bad = "the document loaded from the encoded state has another text";
        goto Exit;
    }
    rc = crdt_doc_apply_update(doc, data, size);
    if (rc == CRDT_ENOMEM)
        goto Exit;
    if (rc != 0) {
        bad = "applying the same update a second time fails";
        goto Exit;
    }
    if ((bad = fuzz_snap_diff(doc, &after)) != NULL) {
        bad = "applying the same update a second time changes the document";
        goto Exit;
    }
    rc = crdt_doc_apply_update(doc, follow_up.base, follow_up.len);
    if (rc == CRDT_ENOMEM)
        goto Exit;
    if (rc != 0) {
        bad = "a valid update is refused after the input was applied";
        goto Exit;
    }
    if (crdt_doc_check(doc) != 0) {
        bad = "crdt_doc_check fails after a valid update followed the input";
        goto Exit;
    }
    bad = fuzz_commute_check(data, size);
Exit:
    if (bad == NULL)
        bad = fuzz_load_check(data, size);
    fuzz_snap_dispose(&before);
    fuzz_snap_dispose(&after);
    crdt_buf_dispose(&text);
    crdt_buf_dispose(&follow_up);
    crdt_doc_free(loaded);
    crdt_doc_free(doc);
    return bad;
}

#endif /* WEFT_FUZZ_APPLY_UPDATE_CHECK_H */
