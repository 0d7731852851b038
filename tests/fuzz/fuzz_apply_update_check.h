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
 * and the document must still accept a valid update from one of the clients,
 * ending with the text of a document that got that valid update first and the
 * input second (merging commutes; not asked of inputs that claim client B's
 * clock 6 themselves: two histories of one client are a forgery, and which one
 * wins is not specified). Independently, if crdt_doc_load() accepts the input as a new document, that
 * document must pass crdt_doc_check() and its encoded state must apply to an
 * empty document, giving the same text: a loaded document can always be sent
 * to peers. Header only (static inline functions), C11 and crdt.h only; libc's allocator.
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

/* Does `doc` know client B's clock 6, the clock of the follow-up update? */
static inline int fuzz_knows_b6(const crdt_doc_t *doc)
{
    /* A state vector (docs/update-format.md): version 1, one client, B at 7. */
    static const uint8_t sv_b7[] = {1, 1, FUZZ_CLIENT_B, 0, 0, 0, 0, 0, 0, 0, 7};
    crdt_buf_t t = {0};
    int rc = crdt_doc_text_at(doc, sv_b7, sizeof sv_b7, &t);
    crdt_buf_dispose(&t);
    return rc != CRDT_EVERSION;
}

/* `doc` got the input, then the follow-up update; a fresh initial document that
 * gets them the other way round must end with the same text. */
static inline const char *fuzz_commute_check(const crdt_doc_t *doc, const uint8_t *data,
                                             size_t size)
{
    crdt_doc_t *other = NULL;
    crdt_buf_t follow_up = {0}, t1 = {0}, t2 = {0};
    const char *bad = NULL;
    if (fuzz_initial_doc(&other, &follow_up) != 0)
        return NULL;
    if (crdt_doc_apply_update(other, follow_up.base, follow_up.len) != 0 ||
        crdt_doc_apply_update(other, data, size) != 0)
        goto Exit; /* out of memory, or refused in this order: nothing to compare */
    if (crdt_doc_check(other) != 0) {
        bad = "crdt_doc_check fails after the valid update and then the input";
        goto Exit;
    }
    if (crdt_doc_text(doc, &t1) != 0 || crdt_doc_text(other, &t2) != 0)
        goto Exit;
    if (crdt_doc_pending(doc) == crdt_doc_pending(other) && !fuzz_buf_equal(&t1, &t2))
        bad = "the input and a valid update give different texts in the two orders";
Exit:
    crdt_buf_dispose(&t1);
    crdt_buf_dispose(&t2);
    crdt_buf_dispose(&follow_up);
    crdt_doc_free(other);
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
    int rc, claims_b6 = 0;

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
    claims_b6 = fuzz_knows_b6(doc);
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
    if (!claims_b6)
        bad = fuzz_commute_check(doc, data, size);
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
