/* SPDX-License-Identifier: MIT */
/*
 * test_convergence.c: replicas of one document converge. (a) Randomized sessions
 * of three or four replicas making random inserts (single characters, words and
 * pastes of up to 200 characters, with non-ASCII text and emoji) and deletes
 * (also long ranges across runs of several clients) at random and at shared
 * positions, exchanging update bytes through per-replica inboxes delivered in
 * random subsets, shuffled, duplicated and delayed, and syncing pairs through
 * crdt_doc_diff() or by merging one's encoded state into the other; after full
 * delivery every replica has the same text, the same state vector (also byte
 * for byte) and an encoded state that loads to the same text. Every local edit
 * is checked against a plain string splice. (b) FugueMax: words typed
 * concurrently at one place, forwards or backwards, by two or three replicas,
 * never interleave, whatever the delivery order. (c) Updates delivered before
 * their causal dependencies are held (crdt_doc_pending()) and applied when the
 * dependencies arrive, with their text intact. (d) Versions: the text at a
 * recorded state vector is the text the replica had then, on every replica that
 * has seen it (also the version after every keystroke of a typing session);
 * restoring a version gives that text and merges with concurrent edits;
 * versions from the future or of unknown clients give CRDT_EVERSION.
 * Randomized tests use fixed seeds and a splitmix64 PRNG, and print the seed,
 * round and step of a failure.
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
#include "test_alloc.h"
#include "testutil.h"

#define EMOJI "\xf0\x9f\x98\x80"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* ---- small helpers ------------------------------------------------------------- */

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *doc = NULL;
    assert_int_equal(crdt_doc_new(client, NULL, &doc), 0);
    return doc;
}

static void apply_ok(crdt_doc_t *doc, const crdt_buf_t *u)
{
    int rc = crdt_doc_apply_update(doc, u->base, u->len);
    if (rc != 0)
        fail_msg("apply_update: %s", crdt_strerror(rc));
    assert_check(doc);
}

static void sync_to(crdt_doc_t *b, const crdt_doc_t *a)
{
    crdt_buf_t sv, d;
    assert_int_equal(crdt_doc_state_vector(b, &sv), 0);
    assert_int_equal(crdt_doc_diff(a, sv.base, sv.len, &d), 0);
    apply_ok(b, &d);
    crdt_buf_dispose(&d);
    crdt_buf_dispose(&sv);
}

static void buf_copy(crdt_buf_t *dst, const crdt_buf_t *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->base = malloc(src->len + 1);
    assert_non_null(dst->base);
    memcpy(dst->base, src->base, src->len);
    dst->base[src->len] = 0;
    dst->len = src->len;
}

/* ---- (a) randomized sessions ------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n;
} msg_t;

typedef struct {
    msg_t *m;
    size_t n, cap;
} msgs_t;

static void msgs_push(msgs_t *q, const uint8_t *p, size_t n)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->m = realloc(q->m, q->cap * sizeof(msg_t));
        assert_non_null(q->m);
    }
    q->m[q->n].p = malloc(n ? n : 1);
    assert_non_null(q->m[q->n].p);
    memcpy(q->m[q->n].p, p, n);
    q->m[q->n].n = n;
    q->n++;
}

static void msgs_clear(msgs_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->m[i].p);
    free(q->m);
    memset(q, 0, sizeof(*q));
}

#define MAX_REPLICAS 4
#define MAX_VERSIONS 48

/* A state vector and the text its replica had at that moment. */
typedef struct {
    size_t replica;
    crdt_buf_t sv;
    char *text;
    int round, step;
} version_rec_t;

typedef struct {
    uint64_t seed;
    int game, round, step;
    rng_t rng;
    size_t n;
    crdt_doc_t *doc[MAX_REPLICAS];
    uint64_t id[MAX_REPLICAS];
    msgs_t inbox[MAX_REPLICAS];
    msgs_t log; /* every update of the game, for late duplicates */
    size_t hot; /* a shared index, so replicas edit at the same place */
    version_rec_t ver[MAX_VERSIONS];
    size_t nver;
    int record_versions;
    /* Statistics. */
    size_t ops, applies, diffs, pending_seen, max_len, sv_byte_mismatch; /* diffs: also states */
    char first_mismatch[128];
} sim_t;

static void sim_fail(const sim_t *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void sim_fail(const sim_t *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_msg("seed %llu game %d round %d step %d: %s", (unsigned long long)s->seed, s->game,
             s->round, s->step, msg);
}

/* Where two strings first differ, with some context, for failure messages. */
static const char *where_differ(const char *a, const char *b, char *out, size_t size)
{
    size_t i = 0, from;
    while (a[i] && a[i] == b[i])
        i++;
    from = i > 20 ? i - 20 : 0;
    snprintf(out, size, "lengths %zu and %zu, first difference at byte %zu: \"%.60s\" vs \"%.60s\"",
             strlen(a), strlen(b), i, a + from, b + from);
    return out;
}

static void sim_check_doc(const sim_t *s, size_t r, const char *what)
{
    if (crdt_doc_check(s->doc[r]) != 0)
        sim_fail(s, "replica %zu: crdt_doc_check failed after %s", r, what);
}

static void sim_start(sim_t *s, uint64_t seed, int game, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->game = game;
    s->rng.s = seed * 1000003u + (uint64_t)game;
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        int dup;
        do {
            /* Small ids and full 64-bit ones, so tie-breaks see both. */
            id = rng_pct(&s->rng, 50) ? rng_below(&s->rng, 8) + 1 : rng_next(&s->rng);
            dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= s->id[j] == id;
        } while (dup);
        s->id[i] = id;
        s->doc[i] = new_doc(id);
    }
}

static void sim_end(sim_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        crdt_doc_free(s->doc[i]);
        msgs_clear(&s->inbox[i]);
    }
    msgs_clear(&s->log);
    for (size_t i = 0; i < s->nver; i++) {
        free(s->ver[i].sv.base);
        free(s->ver[i].text);
    }
}

/* Sends update bytes from replica `from` to every other replica's inbox. */
static void sim_broadcast(sim_t *s, size_t from, const crdt_buf_t *u)
{
    for (size_t i = 0; i < s->n; i++)
        if (i != from)
            msgs_push(&s->inbox[i], u->base, u->len);
    if (s->log.n < 4096)
        msgs_push(&s->log, u->base, u->len);
}

/* Random text: mostly ASCII, with accented letters, CJK, combining marks and
 * emoji. Returns its byte length. */
static size_t random_text(rng_t *rng, char *out, size_t max_chars)
{
    static const char *const extra[] = {
        "\xc3\xa9",         /* é */
        "\xc3\x9f",         /* ß */
        "\xe4\xb8\xad",     /* 中 */
        "\xe6\x96\x87",     /* 文 */
        "\xcc\x81",         /* combining acute */
        EMOJI,              /* U+1F600 */
        "\xf0\x9f\x8e\x89", /* U+1F389 */
        "\xe2\x80\x94",     /* em dash */
    };
    size_t nchars, len = 0;
    uint64_t r = rng_below(rng, 100);
    if (r < 70)
        nchars = 1 + rng_below(rng, 4);
    else if (r < 93)
        nchars = 5 + rng_below(rng, 30);
    else
        nchars = 35 + rng_below(rng, 166);
    if (nchars > max_chars)
        nchars = max_chars;
    for (size_t i = 0; i < nchars; i++) {
        if (rng_pct(rng, 85)) {
            out[len++] = (char)(rng_pct(rng, 15) ? ' ' : 'a' + (char)rng_below(rng, 26));
        } else {
            const char *e = extra[rng_below(rng, sizeof(extra) / sizeof(extra[0]))];
            size_t k = strlen(e);
            memcpy(out + len, e, k);
            len += k;
        }
    }
    out[len] = 0;
    return len;
}

/* Moves UTF-16 index `u` of text `t` back to a character boundary. */
static size_t boundary_floor(const char *t, size_t tlen, size_t u)
{
    while (u > 0 && u16_to_byte(t, tlen, u) == SIZE_MAX)
        u--;
    return u;
}

static void sim_record_version(sim_t *s, size_t r)
{
    version_rec_t *v;
    crdt_buf_t sv;
    if (!s->record_versions || s->nver == MAX_VERSIONS)
        return;
    v = &s->ver[s->nver++];
    v->replica = r;
    v->round = s->round;
    v->step = s->step;
    assert_int_equal(crdt_doc_state_vector(s->doc[r], &sv), 0);
    buf_copy(&v->sv, &sv);
    crdt_buf_dispose(&sv);
    v->text = doc_text(s->doc[r]);
}

/* One random local edit on replica r, checked against a string splice. */
static void sim_local_edit(sim_t *s, size_t r)
{
    crdt_doc_t *doc = s->doc[r];
    char *before = doc_text(doc), *after, ins[1024];
    size_t blen = strlen(before), len = crdt_doc_length(doc), at;
    char *expect;
    crdt_buf_t u = {0}, sv0 = {0};
    int via_diff = rng_pct(&s->rng, 10), rc;
    uint64_t pick = rng_below(&s->rng, 100);

    if (pick < 15)
        at = s->hot <= len ? s->hot : len;
    else if (pick < 22)
        at = 0;
    else if (pick < 30)
        at = len;
    else
        at = rng_below(&s->rng, len + 1);
    at = boundary_floor(before, blen, at);
    if (via_diff)
        assert_int_equal(crdt_doc_state_vector(doc, &sv0), 0);

    if (len == 0 || rng_pct(&s->rng, len > 2500 ? 20 : 55)) {
        size_t ilen = random_text(&s->rng, ins, 200), b = u16_to_byte(before, blen, at);
        rc = crdt_doc_insert(doc, at, ins, ilen, via_diff ? NULL : &u);
        if (rc != 0)
            sim_fail(s, "replica %zu: insert(%zu, %zu bytes): %s", r, at, ilen, crdt_strerror(rc));
        expect = malloc(blen + ilen + 1);
        assert_non_null(expect);
        memcpy(expect, before, b);
        memcpy(expect + b, ins, ilen);
        memcpy(expect + b + ilen, before + b, blen - b + 1);
        if (crdt_doc_length(doc) != len + u16_len(ins, ilen))
            sim_fail(s, "replica %zu: length %zu after inserting %zu units into %zu", r,
                     crdt_doc_length(doc), u16_len(ins, ilen), len);
    } else {
        size_t dlen, end, b0, b1;
        uint64_t k = rng_below(&s->rng, 100);
        if (at == len)
            at = boundary_floor(before, blen, len - 1);
        if (k < 55)
            dlen = 1 + rng_below(&s->rng, 3);
        else if (k < 88)
            dlen = 1 + rng_below(&s->rng, 30);
        else
            dlen = 1 + rng_below(&s->rng, len / 2 + 1);
        end = at + dlen > len ? len : at + dlen;
        while (u16_to_byte(before, blen, end) == SIZE_MAX)
            end++;
        b0 = u16_to_byte(before, blen, at);
        b1 = u16_to_byte(before, blen, end);
        rc = crdt_doc_delete(doc, at, end - at, via_diff ? NULL : &u);
        if (rc != 0)
            sim_fail(s, "replica %zu: delete(%zu, %zu) of %zu: %s", r, at, end - at, len,
                     crdt_strerror(rc));
        expect = malloc(blen + 1);
        assert_non_null(expect);
        memcpy(expect, before, b0);
        memcpy(expect + b0, before + b1, blen - b1 + 1);
        if (crdt_doc_length(doc) != len - (end - at))
            sim_fail(s, "replica %zu: length %zu after deleting %zu of %zu", r,
                     crdt_doc_length(doc), end - at, len);
    }
    sim_check_doc(s, r, "local edit");
    after = doc_text(doc);
    if (strcmp(after, expect) != 0) {
        char d[256];
        sim_fail(s, "replica %zu: local edit gave another text than a string splice: %s", r,
                 where_differ(after, expect, d, sizeof d));
    }
    if (crdt_doc_utf8_length(doc) != strlen(after))
        sim_fail(s, "replica %zu: utf8_length %zu, text has %zu bytes", r,
                 crdt_doc_utf8_length(doc), strlen(after));
    if (via_diff) {
        rc = crdt_doc_diff(doc, sv0.base, sv0.len, &u);
        if (rc != 0)
            sim_fail(s, "replica %zu: diff: %s", r, crdt_strerror(rc));
        crdt_buf_dispose(&sv0);
    }
    sim_broadcast(s, r, &u);
    crdt_buf_dispose(&u);
    if (len > s->max_len)
        s->max_len = len;
    s->ops++;
    if (rng_pct(&s->rng, 10))
        s->hot = rng_below(&s->rng, crdt_doc_length(doc) + 1);
    free(before);
    free(after);
    free(expect);
}

static void sim_apply(sim_t *s, size_t r, const uint8_t *p, size_t n, const char *what)
{
    int rc = crdt_doc_apply_update(s->doc[r], p, n);
    if (rc != 0)
        sim_fail(s, "replica %zu: apply_update (%s, %zu bytes): %s", r, what, n, crdt_strerror(rc));
    sim_check_doc(s, r, what);
    if (crdt_doc_pending(s->doc[r]) > 0)
        s->pending_seen++;
    s->applies++;
}

/* Delivers a random, shuffled subset of replica r's inbox; some messages stay
 * behind to be delivered again later (duplicates). */
static void sim_deliver_some(sim_t *s, size_t r)
{
    msgs_t *q = &s->inbox[r];
    size_t k, w = 0;
    if (q->n == 0)
        return;
    k = 1 + rng_below(&s->rng, q->n);
    /* Fisher-Yates over the whole inbox, then deliver the first k. */
    for (size_t i = q->n - 1; i > 0; i--) {
        size_t j = rng_below(&s->rng, i + 1);
        msg_t t = q->m[i];
        q->m[i] = q->m[j];
        q->m[j] = t;
    }
    for (size_t i = 0; i < q->n; i++) {
        if (i < k) {
            sim_apply(s, r, q->m[i].p, q->m[i].n, "inbox delivery");
            if (rng_pct(&s->rng, 12)) {
                q->m[w++] = q->m[i]; /* delivered, but will come again */
                continue;
            }
            free(q->m[i].p);
        } else {
            q->m[w++] = q->m[i];
        }
    }
    q->n = w;
}

/* Replica y asks x for what it lacks; afterwards y has all that x had. */
static void sim_diff_sync(sim_t *s, size_t x, size_t y)
{
    crdt_buf_t sv, d;
    sv_t svx, svy;
    int rc;
    assert_int_equal(crdt_doc_state_vector(s->doc[y], &sv), 0);
    rc = crdt_doc_diff(s->doc[x], sv.base, sv.len, &d);
    if (rc != 0)
        sim_fail(s, "diff %zu -> %zu: %s", x, y, crdt_strerror(rc));
    sim_apply(s, y, d.base, d.len, "diff sync");
    doc_sv(s->doc[x], &svx);
    doc_sv(s->doc[y], &svy);
    for (size_t i = 0; i < svx.n; i++)
        if (sv_clock(&svy, svx.e[i].id) < svx.e[i].clock)
            sim_fail(s, "after diff sync %zu -> %zu, client %llx: %llu < %llu", x, y,
                     (unsigned long long)svx.e[i].id,
                     (unsigned long long)sv_clock(&svy, svx.e[i].id),
                     (unsigned long long)svx.e[i].clock);
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&d);
    s->diffs++;
}

/* Replica y merges x's whole encoded state as an update (a state is also a
 * valid update); afterwards y has all that x had. */
static void sim_state_merge(sim_t *s, size_t x, size_t y)
{
    crdt_buf_t st;
    sv_t svx, svy;
    int rc = crdt_doc_encode_state(s->doc[x], &st);
    if (rc != 0)
        sim_fail(s, "encode_state of replica %zu: %s", x, crdt_strerror(rc));
    sim_apply(s, y, st.base, st.len, "merge of another replica's encoded state");
    doc_sv(s->doc[x], &svx);
    doc_sv(s->doc[y], &svy);
    for (size_t i = 0; i < svx.n; i++)
        if (sv_clock(&svy, svx.e[i].id) < svx.e[i].clock)
            sim_fail(s, "after merging the state of %zu into %zu, client %llx: %llu < %llu", x, y,
                     (unsigned long long)svx.e[i].id,
                     (unsigned long long)sv_clock(&svy, svx.e[i].id),
                     (unsigned long long)svx.e[i].clock);
    crdt_buf_dispose(&st);
    s->diffs++;
}

static void sim_step(sim_t *s)
{
    uint64_t a = rng_below(&s->rng, 100);
    size_t r = rng_below(&s->rng, s->n);
    if (a < 55) {
        sim_local_edit(s, r);
    } else if (a < 88) {
        sim_deliver_some(s, r);
    } else if (a < 91) {
        size_t x = rng_below(&s->rng, s->n);
        if (x != r)
            sim_diff_sync(s, x, r);
    } else if (a < 93) {
        size_t x = rng_below(&s->rng, s->n);
        if (x != r)
            sim_state_merge(s, x, r);
    } else if (a < 96) {
        if (s->log.n > 0) {
            const msg_t *m = &s->log.m[rng_below(&s->rng, s->log.n)];
            sim_apply(s, r, m->p, m->n, "late duplicate");
        }
    } else {
        sim_record_version(s, r);
    }
}

/* Delivers every inbox completely, shuffled, with some duplicates. */
static void sim_flush(sim_t *s)
{
    int busy = 1;
    while (busy) {
        busy = 0;
        for (size_t r = 0; r < s->n; r++) {
            if (s->inbox[r].n > 0) {
                busy = 1;
                sim_deliver_some(s, r);
            }
        }
    }
}

static void sim_check_versions(sim_t *s, int all_replicas)
{
    for (size_t i = 0; i < s->nver; i++) {
        const version_rec_t *v = &s->ver[i];
        for (size_t r = 0; r < s->n; r++) {
            crdt_buf_t t;
            int rc;
            if (!all_replicas && r != v->replica)
                continue;
            rc = crdt_doc_text_at(s->doc[r], v->sv.base, v->sv.len, &t);
            if (rc != 0)
                sim_fail(s,
                         "replica %zu: text_at(version %zu of replica %zu, round %d step %d): "
                         "%s",
                         r, i, v->replica, v->round, v->step, crdt_strerror(rc));
            if (strcmp((const char *)t.base, v->text) != 0) {
                char d[256];
                sim_fail(s,
                         "replica %zu: text_at(version %zu of replica %zu, round %d step %d) "
                         "differs from the text then: %s",
                         r, i, v->replica, v->round, v->step,
                         where_differ((const char *)t.base, v->text, d, sizeof d));
            }
            crdt_buf_dispose(&t);
        }
    }
}

/* After full delivery: one text, one state vector, and encoded states that load
 * back to the same text and state vector. */
static void sim_check_converged(sim_t *s)
{
    char *t0 = doc_text(s->doc[0]);
    crdt_buf_t sv0b;
    sv_t sv0;
    assert_int_equal(crdt_doc_state_vector(s->doc[0], &sv0b), 0);
    doc_sv(s->doc[0], &sv0);
    for (size_t r = 0; r < s->n; r++) {
        crdt_doc_t *loaded = NULL;
        crdt_buf_t st, svb, d;
        sv_t sv;
        char *t;
        int rc;
        if (crdt_doc_pending(s->doc[r]) != 0)
            sim_fail(s, "replica %zu: %zu operations still pending after full delivery", r,
                     crdt_doc_pending(s->doc[r]));
        t = doc_text(s->doc[r]);
        if (strcmp(t, t0) != 0) {
            char dd[256];
            sim_fail(s, "replicas 0 and %zu diverged: %s", r, where_differ(t0, t, dd, sizeof dd));
        }
        doc_sv(s->doc[r], &sv);
        if (!sv_equal(&sv, &sv0))
            sim_fail(s, "replica %zu has another state vector than replica 0", r);
        assert_int_equal(crdt_doc_state_vector(s->doc[r], &svb), 0);
        if (!buf_equal(&svb, &sv0b)) {
            if (s->sv_byte_mismatch++ == 0)
                snprintf(s->first_mismatch, sizeof s->first_mismatch,
                         "seed %llu game %d round %d: replicas 0 and %zu",
                         (unsigned long long)s->seed, s->game, s->round, r);
        }
        /* Nothing left to send: the diff against its own state vector is empty
         * and changes nothing. */
        assert_int_equal(crdt_doc_diff(s->doc[r], svb.base, svb.len, &d), 0);
        sim_apply(s, r, d.base, d.len, "empty diff");
        crdt_buf_dispose(&d);
        /* Encoded state round trip; merged into an equal replica it is a no-op. */
        rc = crdt_doc_encode_state(s->doc[r], &st);
        if (rc != 0)
            sim_fail(s, "replica %zu: encode_state: %s", r, crdt_strerror(rc));
        if (r == 0) {
            sim_apply(s, 1, st.base, st.len, "merge of an equal replica's state");
            char *t1 = doc_text(s->doc[1]);
            if (strcmp(t1, t0) != 0) {
                char dd[256];
                sim_fail(s, "merging replica 0's state into replica 1 changed it: %s",
                         where_differ(t1, t0, dd, sizeof dd));
            }
            free(t1);
        }
        rc = crdt_doc_load(0xfeedULL, NULL, st.base, st.len, &loaded);
        if (rc != 0)
            sim_fail(s, "replica %zu: load of its encoded state: %s", r, crdt_strerror(rc));
        if (crdt_doc_check(loaded) != 0)
            sim_fail(s, "replica %zu: loaded copy fails crdt_doc_check", r);
        {
            char *lt = doc_text(loaded);
            sv_t lsv;
            if (strcmp(lt, t0) != 0) {
                char dd[256];
                sim_fail(s, "replica %zu: loaded copy has another text: %s", r,
                         where_differ(lt, t0, dd, sizeof dd));
            }
            doc_sv(loaded, &lsv);
            if (!sv_equal(&lsv, &sv0))
                sim_fail(s, "replica %zu: loaded copy has another state vector", r);
            free(lt);
        }
        crdt_doc_free(loaded);
        crdt_buf_dispose(&st);
        crdt_buf_dispose(&svb);
        free(t);
    }
    crdt_buf_dispose(&sv0b);
    free(t0);
}

/* A fresh replica fed the whole log of the game in random order. */
static void sim_check_observer(sim_t *s)
{
    crdt_doc_t *obs = new_doc(0xabcdef);
    char *want = doc_text(s->doc[0]), *got;
    size_t n = s->log.n;
    size_t *order = malloc((n ? n : 1) * sizeof(size_t));
    assert_non_null(order);
    if (n == 0 || n >= 4096) { /* log incomplete once capped */
        free(order);
        free(want);
        crdt_doc_free(obs);
        return;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_below(&s->rng, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = crdt_doc_apply_update(obs, s->log.m[order[i]].p, s->log.m[order[i]].n);
        if (rc != 0)
            sim_fail(s, "observer: apply_update: %s", crdt_strerror(rc));
    }
    if (crdt_doc_check(obs) != 0)
        sim_fail(s, "observer: crdt_doc_check failed");
    if (crdt_doc_pending(obs) != 0)
        sim_fail(s, "observer: %zu operations pending after the whole log", crdt_doc_pending(obs));
    got = doc_text(obs);
    if (strcmp(got, want) != 0) {
        char d[256];
        sim_fail(s, "observer fed the log in random order has another text: %s",
                 where_differ(got, want, d, sizeof d));
    }
    free(got);
    free(want);
    free(order);
    crdt_doc_free(obs);
}

/* Runs `games` games of `rounds` rounds on one seed; returns the sim's totals
 * through *total. */
static void run_random_sessions(uint64_t seed, int games, int rounds, int record_versions,
                                sim_t *total)
{
    for (int g = 0; g < games; g++) {
        sim_t s;
        sim_start(&s, seed, g, 3 + (size_t)(g % 2));
        s.record_versions = record_versions;
        for (s.round = 0; s.round < rounds; s.round++) {
            int steps = 5 + (int)rng_below(&s.rng, 40);
            for (s.step = 0; s.step < steps; s.step++)
                sim_step(&s);
            if (record_versions)
                sim_check_versions(&s, 0);
            s.step = -1;
            sim_flush(&s);
            sim_check_converged(&s);
            if (record_versions)
                sim_check_versions(&s, 1);
        }
        sim_check_observer(&s);
        total->ops += s.ops;
        total->applies += s.applies;
        total->diffs += s.diffs;
        total->pending_seen += s.pending_seen;
        if (s.max_len > total->max_len)
            total->max_len = s.max_len;
        if (s.sv_byte_mismatch && total->sv_byte_mismatch == 0)
            memcpy(total->first_mismatch, s.first_mismatch, sizeof s.first_mismatch);
        total->sv_byte_mismatch += s.sv_byte_mismatch;
        total->round += rounds;
        sim_end(&s);
    }
}

static void test_apply_update_random_sessions_converge(void **state)
{
    static const uint64_t seeds[] = {1, 0x5eed, 20261125, 0xdeadbeefcafeULL};
    sim_t total;
    (void)state;
    memset(&total, 0, sizeof(total));
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
        run_random_sessions(seeds[i], 10, 40, 0, &total);
    print_message("%d rounds, %zu edits, %zu applies (%zu with ops pending), %zu diff syncs, "
                  "longest text %zu units\n",
                  total.round, total.ops, total.applies, total.pending_seen, total.diffs,
                  total.max_len);
    assert_true(total.pending_seen > 0);
    if (total.sv_byte_mismatch)
        fail_msg("state vectors equal as maps but not byte for byte after full delivery in "
                 "%zu replica checks; first: %s",
                 total.sv_byte_mismatch, total.first_mismatch);
}

/* The smallest case of the byte comparison above. */
static void test_state_vector_identical_bytes_on_converged_replicas(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t ua, ub, sva, svb;
    sv_t da, db;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "a", 1, &ua), 0);
    assert_int_equal(crdt_doc_insert(b, 0, "b", 1, &ub), 0);
    apply_ok(a, &ub);
    apply_ok(b, &ua);
    assert_text(a, "ab");
    assert_text(b, "ab");
    assert_int_equal(crdt_doc_state_vector(a, &sva), 0);
    assert_int_equal(crdt_doc_state_vector(b, &svb), 0);
    assert_int_equal(sv_decode(sva.base, sva.len, &da), 0);
    assert_int_equal(sv_decode(svb.base, svb.len, &db), 0);
    assert_true(sv_equal(&da, &db)); /* the same version ... */
    /* ... must be the same bytes, so versions can be compared and stored as keys. */
    assert_int_equal(sva.len, svb.len);
    assert_memory_equal(sva.base, svb.base, sva.len);
    crdt_buf_dispose(&ua);
    crdt_buf_dispose(&ub);
    crdt_buf_dispose(&sva);
    crdt_buf_dispose(&svb);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* ---- (b) non-interleaving ------------------------------------------------------------- */

typedef struct {
    crdt_buf_t u[16];
    size_t n;
} updates_t;

static void updates_dispose(updates_t *us)
{
    for (size_t i = 0; i < us->n; i++)
        crdt_buf_dispose(&us->u[i]);
    us->n = 0;
}

/* Types `word` at `at`: forwards appends each character; backwards inserts the
 * characters last to first, each at `at`. */
static void type_word(crdt_doc_t *doc, size_t at, const char *word, int backwards, updates_t *us)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < n; i++) {
        size_t k = backwards ? n - 1 - i : i;
        assert_true(us->n < 16);
        assert_int_equal(
            crdt_doc_insert(doc, backwards ? at : at + i, &word[k], 1, &us->u[us->n++]), 0);
        assert_check(doc);
    }
}

/* Is `text` == prefix + some order of the words + suffix? */
static int is_concatenation(const char *text, const char *prefix, const char *suffix,
                            const char *const *words, size_t nwords)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), tl = strlen(text);
    const char *mid;
    size_t ml, used = 0;
    if (tl < pl + sl || strncmp(text, prefix, pl) != 0 || strcmp(text + tl - sl, suffix) != 0)
        return 0;
    mid = text + pl;
    ml = tl - pl - sl;
    /* Greedy is enough: the words are distinct and share no first letter. */
    while (ml > 0) {
        size_t w;
        for (w = 0; w < nwords; w++) {
            size_t wl = strlen(words[w]);
            if (!(used & (1u << w)) && wl <= ml && strncmp(mid, words[w], wl) == 0) {
                used |= 1u << w;
                mid += wl;
                ml -= wl;
                break;
            }
        }
        if (w == nwords)
            return 0;
    }
    return used == (1u << nwords) - 1;
}

/* Replicas with ids `ids` start from `base`, type words[i] at `at` concurrently
 * (backwards if bit i of `backwards`), then receive each other's updates in
 * several orders. Every replica and observer must end with the same text, with
 * each word whole. */
static void run_no_interleave(const char *base, size_t at, const char *const *words, size_t nwords,
                              unsigned backwards, const uint64_t *ids)
{
    crdt_doc_t *docs[3], *origin = new_doc(999);
    updates_t us[3];
    crdt_buf_t st;
    char prefix[64], *want = NULL;
    memset(us, 0, sizeof(us));
    if (*base)
        assert_int_equal(crdt_doc_insert(origin, 0, base, strlen(base), NULL), 0);
    assert_int_equal(crdt_doc_encode_state(origin, &st), 0);
    assert_true(at < sizeof(prefix));
    memcpy(prefix, base, at);
    prefix[at] = 0;
    for (size_t i = 0; i < nwords; i++) {
        assert_int_equal(crdt_doc_load(ids[i], NULL, st.base, st.len, &docs[i]), 0);
        type_word(docs[i], at, words[i], (backwards >> i) & 1, &us[i]);
    }
    /* Each replica receives the others' updates, in replica order. */
    for (size_t i = 0; i < nwords; i++)
        for (size_t j = 0; j < nwords; j++)
            if (j != i)
                for (size_t k = 0; k < us[j].n; k++)
                    apply_ok(docs[i], &us[j].u[k]);
    /* Observers: every replica order (both orders for two, all six for three),
     * and the operations of all replicas interleaved one by one. */
    for (int order = 0; order < 7; order++) {
        static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                        {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        crdt_doc_t *obs = NULL;
        char *t;
        assert_int_equal(crdt_doc_load(4242, NULL, st.base, st.len, &obs), 0);
        if (order < 6) {
            for (int p = 0; p < 3; p++) {
                size_t j = (size_t)perms[order][p];
                if (j >= nwords)
                    continue;
                for (size_t k = 0; k < us[j].n; k++)
                    apply_ok(obs, &us[j].u[k]);
            }
        } else {
            for (size_t k = 0; k < 16; k++)
                for (size_t j = nwords; j-- > 0;)
                    if (k < us[j].n)
                        apply_ok(obs, &us[j].u[k]);
        }
        t = doc_text(obs);
        if (want == NULL)
            want = t;
        else {
            if (strcmp(t, want) != 0)
                fail_msg("delivery order %d gave \"%s\", another gave \"%s\"", order, t, want);
            free(t);
        }
        crdt_doc_free(obs);
    }
    if (!is_concatenation(want, prefix, base + at, words, nwords))
        fail_msg("words interleaved: \"%s\" (base \"%s\", at %zu, backwards mask %u)", want, base,
                 at, backwards);
    for (size_t i = 0; i < nwords; i++) {
        assert_text(docs[i], want);
        crdt_doc_free(docs[i]);
        updates_dispose(&us[i]);
    }
    free(want);
    crdt_buf_dispose(&st);
    crdt_doc_free(origin);
}

static void test_insert_concurrent_forward_no_interleave(void **state)
{
    const char *words[] = {"abc", "xyz"};
    const uint64_t lo_hi[] = {1, 2}, hi_lo[] = {2, 1};
    (void)state;
    run_no_interleave("", 0, words, 2, 0, lo_hi);
    run_no_interleave("", 0, words, 2, 0, hi_lo);
}

static void test_insert_concurrent_backward_no_interleave(void **state)
{
    const char *words[] = {"abc", "xyz"};
    const uint64_t lo_hi[] = {1, 2}, hi_lo[] = {2, 1};
    (void)state;
    run_no_interleave("", 0, words, 2, 3, lo_hi);
    run_no_interleave("", 0, words, 2, 3, hi_lo);
}

static void test_insert_concurrent_mixed_direction_no_interleave(void **state)
{
    const char *words[] = {"abc", "xyz"};
    const uint64_t lo_hi[] = {1, 2}, hi_lo[] = {2, 1};
    (void)state;
    for (unsigned mask = 1; mask <= 2; mask++) {
        run_no_interleave("", 0, words, 2, mask, lo_hi);
        run_no_interleave("", 0, words, 2, mask, hi_lo);
    }
}

static void test_insert_concurrent_three_replicas_no_interleave(void **state)
{
    const char *words[] = {"abcd", "xyz", "12345"};
    const uint64_t ids[][3] = {{1, 2, 3}, {3, 2, 1}, {2, 3, 1}, {UINT64_MAX, 7, 1ULL << 40}};
    (void)state;
    for (size_t k = 0; k < 4; k++)
        for (unsigned mask = 0; mask < 8; mask++)
            run_no_interleave("", 0, words, 3, mask, ids[k]);
}

static void test_insert_concurrent_in_middle_no_interleave(void **state)
{
    const char *two[] = {"abc", "xyz"};
    const char *three[] = {"abc", "xyz", "123"};
    const uint64_t ids[] = {5, 3, 9}, rev[] = {9, 5, 3};
    const char *base = "hello world";
    (void)state;
    for (unsigned mask = 0; mask < 4; mask++) {
        for (size_t at = 0; at <= strlen(base); at += 5) {
            run_no_interleave(base, at, two, 2, mask, ids);
            run_no_interleave(base, at, two, 2, mask, rev);
        }
    }
    for (unsigned mask = 0; mask < 8; mask++) {
        run_no_interleave(base, 6, three, 3, mask, ids);
        run_no_interleave(base, 6, three, 3, mask, rev);
    }
}

/* Text typed over a region another replica deleted concurrently. */
static void test_insert_concurrent_with_delete_no_interleave(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2), *c = new_doc(3);
    updates_t ua, ub;
    crdt_buf_t uc;
    char *t;
    (void)state;
    memset(&ua, 0, sizeof(ua));
    memset(&ub, 0, sizeof(ub));
    assert_int_equal(crdt_doc_insert(a, 0, "0123456789", 10, NULL), 0);
    sync_to(b, a);
    sync_to(c, a);
    type_word(a, 5, "abc", 0, &ua);
    type_word(b, 5, "xyz", 1, &ub);
    assert_int_equal(crdt_doc_delete(c, 3, 4, &uc), 0); /* 3456 */
    for (size_t k = 0; k < 3; k++) {
        apply_ok(b, &ua.u[k]);
        apply_ok(c, &ub.u[2 - k]);
    }
    for (size_t k = 0; k < 3; k++) {
        apply_ok(a, &ub.u[k]);
        apply_ok(c, &ua.u[k]);
    }
    apply_ok(a, &uc);
    apply_ok(b, &uc);
    t = doc_text(a);
    assert_true(strcmp(t, "012abcxyz789") == 0 || strcmp(t, "012xyzabc789") == 0);
    assert_text(b, t);
    assert_text(c, t);
    free(t);
    updates_dispose(&ua);
    updates_dispose(&ub);
    crdt_buf_dispose(&uc);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
}

/*
 * A hostile (or broken) peer sends an insert whose origins cannot have been
 * neighbours: its right origin comes before its left origin. Replicas that get
 * it and an honest concurrent insert in different orders must still end with
 * one text; the engine may instead refuse the hostile update (then it must do
 * so on every replica). Minimal case found by a brute-force search over the
 * origins of two one-character inserts into "abcd".
 */
static size_t hostile_insert(bytes_t *w, uint64_t id, uint32_t left, uint32_t right, char c)
{
    memset(w, 0, sizeof(*w));
    put_u8(w, 1);     /* update */
    put_varint(w, 2); /* clients: the sender, A */
    put_u64(w, id);
    put_u64(w, 0xa);
    put_varint(w, 1);              /* one block: */
    put_varint(w, 0);              /* the sender, */
    put_varint(w, 0);              /* clock 0, */
    put_varint(w, 1);              /* one operation: */
    put_u8(w, 0x80 | 0x08 | 0x20); /* ASCII insert with both origins */
    put_varint(w, 1);
    put_varint(w, left);
    put_varint(w, 1);
    put_varint(w, right);
    put_varint(w, 1);
    put_u8(w, (uint8_t)c);
    return w->n;
}

static void test_apply_update_inverted_origins_converge(void **state)
{
    static const struct {
        uint32_t xl, xr, yl, yr;
        uint64_t xid, yid;
    } cases[] = {
        {2, 1, 1, 2, 0x58, 0x59}, /* X between 'c' and 'b'; Y honestly between 'b' and 'c' */
        {1, 1, 0, 1, 0x58, 0x59}, /* X's two origins are the same character */
        {3, 1, 2, 3, 0x58, 0x59},
        /* X's right origin far left of its left one, X's replica id below the
         * text's, Y concurrent at X's left origin: X must count as having no
         * right origin in Y's scan too (found by fuzz_apply_update) */
        {2, 0, 2, 3, 0x6, 0xe},
    };
    crdt_doc_t *a = new_doc(0xa);
    crdt_buf_t base;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abcd", 4, &base), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bytes_t x, y;
        crdt_doc_t *d1 = new_doc(1), *d2 = new_doc(2);
        int rx1, ry1, ry2, rx2;
        char *t1, *t2, msg[256] = "";
        hostile_insert(&x, cases[i].xid, cases[i].xl, cases[i].xr, 'X');
        hostile_insert(&y, cases[i].yid, cases[i].yl, cases[i].yr, 'Y');
        apply_ok(d1, &base);
        apply_ok(d2, &base);
        rx1 = crdt_doc_apply_update(d1, x.b, x.n);
        ry1 = crdt_doc_apply_update(d1, y.b, y.n);
        ry2 = crdt_doc_apply_update(d2, y.b, y.n);
        rx2 = crdt_doc_apply_update(d2, x.b, x.n);
        assert_int_equal(ry1, 0);
        assert_int_equal(ry2, 0);
        assert_int_equal(rx1, rx2);
        assert_check(d1);
        assert_check(d2);
        t1 = doc_text(d1);
        t2 = doc_text(d2);
        if (strcmp(t1, t2) != 0)
            snprintf(msg, sizeof msg,
                     "X (origins A%u, A%u) then Y (A%u, A%u) gives \"%s\", Y then X gives \"%s\"",
                     (unsigned)cases[i].xl, (unsigned)cases[i].xr, (unsigned)cases[i].yl,
                     (unsigned)cases[i].yr, t1, t2);
        free(t1);
        free(t2);
        crdt_doc_free(d1);
        crdt_doc_free(d2);
        if (msg[0]) {
            crdt_buf_dispose(&base);
            crdt_doc_free(a);
            fail_msg("%s", msg);
        }
    }
    crdt_buf_dispose(&base);
    crdt_doc_free(a);
}

/* ---- (c) out-of-order delivery ---------------------------------------------------------- */

static void test_apply_update_reverse_order_held_until_dependencies(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    updates_t us;
    char *want;
    (void)state;
    memset(&us, 0, sizeof(us));
    type_word(a, 0, "hello", 0, &us);
    assert_int_equal(crdt_doc_delete(a, 1, 1, &us.u[us.n++]), 0);
    assert_int_equal(
        crdt_doc_insert(a, 4, " w" EMOJI "rld", strlen(" w" EMOJI "rld"), &us.u[us.n++]), 0);
    assert_int_equal(crdt_doc_delete(a, 0, 3, &us.u[us.n++]), 0);
    want = doc_text(a);
    for (size_t i = us.n; i-- > 1;) {
        apply_ok(b, &us.u[i]);
        if (crdt_doc_pending(b) == 0)
            fail_msg("update %zu of %zu applied before its dependencies: nothing pending", i, us.n);
        assert_text(b, "");
        assert_int_equal(crdt_doc_length(b), 0);
    }
    /* Duplicates of held updates change nothing. */
    {
        size_t held = crdt_doc_pending(b);
        apply_ok(b, &us.u[3]);
        apply_ok(b, &us.u[us.n - 1]);
        assert_int_equal(crdt_doc_pending(b), held);
    }
    apply_ok(b, &us.u[0]);
    assert_int_equal(crdt_doc_pending(b), 0);
    assert_text(b, want);
    free(want);
    updates_dispose(&us);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

static void test_apply_update_delete_before_insert_held(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2), *c = new_doc(3);
    crdt_buf_t ins, del;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abcdef", 6, &ins), 0);
    apply_ok(b, &ins);
    assert_int_equal(crdt_doc_delete(b, 1, 3, &del), 0);
    /* c hears of the delete first. */
    apply_ok(c, &del);
    assert_true(crdt_doc_pending(c) > 0);
    assert_text(c, "");
    {
        /* The held delete is not part of what c sends. */
        crdt_buf_t st;
        crdt_doc_t *d = NULL;
        assert_int_equal(crdt_doc_encode_state(c, &st), 0);
        assert_int_equal(crdt_doc_load(4, NULL, st.base, st.len, &d), 0);
        assert_int_equal(crdt_doc_pending(d), 0);
        assert_text(d, "");
        crdt_doc_free(d);
        crdt_buf_dispose(&st);
    }
    apply_ok(c, &ins);
    assert_int_equal(crdt_doc_pending(c), 0);
    assert_text(c, "aef");
    assert_text(b, "aef");
    crdt_buf_dispose(&ins);
    crdt_buf_dispose(&del);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
}

/*
 * An allocator that overwrites each block with 0xdd when it frees it (realloc
 * always moves the block and overwrites the old one), so that reading memory
 * after its release shows up as wrong text instead of silently reading bytes that
 * happen to be still there.
 */
/* Through a volatile pointer, so the compiler cannot drop the stores as dead
 * before free(). */
static void poison_bytes(void *p, size_t n)
{
    volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = 0xdd;
}

static void *poison_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void *poison_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    void *q = malloc(new_size);
    (void)ctx;
    if (q == NULL)
        return NULL;
    memcpy(q, p, old_size < new_size ? old_size : new_size);
    poison_bytes(p, old_size);
    free(p);
    return q;
}

static void poison_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    if (p != NULL) {
        poison_bytes(p, size);
        free(p);
    }
}

static const crdt_alloc_t poison_alloc = {poison_malloc, poison_realloc, poison_free, NULL};

/* Held insertions are integrated when their dependency arrives; their text must
 * still be readable then. */
static void test_apply_update_held_insert_text_intact_when_applied(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = NULL;
    crdt_buf_t u1, u2, u3;
    (void)state;
    assert_int_equal(crdt_doc_new(2, &poison_alloc, &b), 0);
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, &u1), 0);
    assert_int_equal(crdt_doc_insert(a, 3, "def", 3, &u2), 0);
    assert_int_equal(crdt_doc_insert(a, 0, "xy", 2, &u3), 0);
    apply_ok(b, &u2); /* held: it follows "abc" */
    assert_int_equal(crdt_doc_pending(b), 1);
    assert_int_equal(crdt_doc_apply_update(b, u1.base, u1.len), 0);
    assert_int_equal(crdt_doc_pending(b), 0);
    assert_text(b, "abcdef"); /* not "abc" followed by three 0xdd bytes */
    assert_check(b);
    apply_ok(b, &u3);
    assert_text(b, "xyabcdef");
    crdt_buf_dispose(&u1);
    crdt_buf_dispose(&u2);
    crdt_buf_dispose(&u3);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* Updates of three replicas depending on each other, delivered to a fresh
 * replica in random orders: it holds some, and ends with the same text. */
static void test_apply_update_random_order_held_then_applied(void **state)
{
    enum { NU = 60 };
    crdt_doc_t *r[3];
    crdt_buf_t u[NU];
    size_t n = 0;
    rng_t rng = {77};
    char *want;
    (void)state;
    for (int i = 0; i < 3; i++)
        r[i] = new_doc((uint64_t)i + 10);
    while (n < NU) {
        size_t i = rng_below(&rng, 3), len = crdt_doc_length(r[i]);
        if (len > 4 && rng_pct(&rng, 30)) {
            size_t at = rng_below(&rng, len - 2);
            assert_int_equal(crdt_doc_delete(r[i], at, 2, &u[n]), 0);
        } else {
            char w[8];
            size_t at = rng_below(&rng, len + 1), k = 1 + rng_below(&rng, 5);
            for (size_t c = 0; c < k; c++)
                w[c] = (char)('a' + rng_below(&rng, 26));
            assert_int_equal(crdt_doc_insert(r[i], at, w, k, &u[n]), 0);
        }
        /* Spread it to the others right away, so later edits depend on it. */
        for (int j = 0; j < 3; j++)
            if ((size_t)j != i)
                apply_ok(r[j], &u[n]);
        n++;
    }
    want = doc_text(r[0]);
    for (uint64_t seed = 1; seed <= 30; seed++) {
        crdt_doc_t *obs = new_doc(99);
        size_t order[NU], held_max = 0;
        rng_t o = {seed};
        for (size_t i = 0; i < NU; i++)
            order[i] = i;
        for (size_t i = NU - 1; i > 0; i--) {
            size_t j = rng_below(&o, i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t i = 0; i < NU; i++) {
            int rc = crdt_doc_apply_update(obs, u[order[i]].base, u[order[i]].len);
            if (rc != 0 || crdt_doc_check(obs) != 0)
                fail_msg("seed %llu step %zu: apply: %s", (unsigned long long)seed, i,
                         crdt_strerror(rc));
            if (crdt_doc_pending(obs) > held_max)
                held_max = crdt_doc_pending(obs);
            if (rng_pct(&o, 20)) /* a duplicate now and then */
                assert_int_equal(crdt_doc_apply_update(obs, u[order[i]].base, u[order[i]].len), 0);
        }
        if (held_max == 0)
            fail_msg("seed %llu: no update was ever held", (unsigned long long)seed);
        if (crdt_doc_pending(obs) != 0)
            fail_msg("seed %llu: %zu still pending", (unsigned long long)seed,
                     crdt_doc_pending(obs));
        {
            char *t = doc_text(obs);
            if (strcmp(t, want) != 0)
                fail_msg("seed %llu: \"%s\" != \"%s\"", (unsigned long long)seed, t, want);
            free(t);
        }
        crdt_doc_free(obs);
    }
    free(want);
    for (size_t i = 0; i < NU; i++)
        crdt_buf_dispose(&u[i]);
    for (int i = 0; i < 3; i++)
        crdt_doc_free(r[i]);
}

/* ---- (d) versions ----------------------------------------------------------------------- */

static void test_text_at_random_versions(void **state)
{
    static const uint64_t seeds[] = {3, 0xfeedface};
    sim_t total;
    (void)state;
    memset(&total, 0, sizeof(total));
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
        run_random_sessions(seeds[i], 6, 30, 1, &total);
    print_message("%d rounds with recorded versions checked\n", total.round);
}

/*
 * Two replicas type (runs, backspaces, forward deletes, cursor jumps, some
 * non-ASCII) and sync now and then; the version after every keystroke of
 * replica 0 is recorded with its text. Every one must come back from text_at on
 * both replicas, and restoring some of them gives their text.
 */
static void test_text_at_every_keystroke(void **state)
{
    enum { STEPS = 4000 };
    static const char *const chars[] = {"a", "b", "c", " ", "\xc3\xa9", EMOJI, "\xe4\xb8\xad"};
    crdt_doc_t *r[2];
    crdt_buf_t *sv = calloc(STEPS, sizeof(crdt_buf_t));
    char **texts = calloc(STEPS, sizeof(char *));
    size_t cursor[2] = {0, 0}, nv = 0;
    rng_t rng = {0x4b3};
    (void)state;
    assert_non_null(sv);
    assert_non_null(texts);
    r[0] = new_doc(1);
    r[1] = new_doc(2);
    for (int step = 0; step < STEPS; step++) {
        size_t w = rng_pct(&rng, 80) ? 0 : 1;
        crdt_doc_t *d = r[w];
        char *t = doc_text(d);
        size_t len = crdt_doc_length(d), tl = strlen(t), c = cursor[w];
        uint64_t k = rng_below(&rng, 100);
        if (c > len || k < 5)
            c = rng_below(&rng, len + 1);
        while (c > 0 && u16_to_byte(t, tl, c) == SIZE_MAX)
            c--;
        if (k < 60 || len == 0) {
            const char *ch = chars[rng_below(&rng, sizeof(chars) / sizeof(chars[0]))];
            assert_int_equal(crdt_doc_insert(d, c, ch, strlen(ch), NULL), 0);
            c += u16_len(ch, strlen(ch));
        } else if (k < 85 && c > 0) {
            size_t from = c - 1;
            while (from > 0 && u16_to_byte(t, tl, from) == SIZE_MAX)
                from--;
            assert_int_equal(crdt_doc_delete(d, from, c - from, NULL), 0);
            c = from;
        } else if (c < len) {
            size_t to = c + 1;
            while (u16_to_byte(t, tl, to) == SIZE_MAX)
                to++;
            assert_int_equal(crdt_doc_delete(d, c, to - c, NULL), 0);
        }
        free(t);
        cursor[w] = c;
        if (rng_pct(&rng, 5)) {
            sync_to(r[1 - w], r[w]);
            cursor[1 - w] = rng_below(&rng, crdt_doc_length(r[1 - w]) + 1);
        }
        if (w == 0) {
            assert_int_equal(crdt_doc_state_vector(r[0], &sv[nv]), 0);
            texts[nv++] = doc_text(r[0]);
        }
    }
    assert_check(r[0]);
    assert_check(r[1]);
    sync_to(r[1], r[0]);
    sync_to(r[0], r[1]);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < nv; i++) {
            crdt_buf_t t;
            assert_int_equal(crdt_doc_text_at(r[k], sv[i].base, sv[i].len, &t), 0);
            if (strcmp((const char *)t.base, texts[i]) != 0)
                fail_msg("replica %d: text_at(version after keystroke %zu) is \"%s\", was \"%s\"",
                         k, i, (const char *)t.base, texts[i]);
            crdt_buf_dispose(&t);
        }
    }
    for (int k = 0; k < 20; k++) {
        size_t i = rng_below(&rng, nv);
        crdt_buf_t u;
        assert_int_equal(crdt_doc_restore(r[k % 2], sv[i].base, sv[i].len, &u), 0);
        assert_check(r[k % 2]);
        assert_text(r[k % 2], texts[i]);
        apply_ok(r[1 - k % 2], &u);
        assert_text(r[1 - k % 2], texts[i]);
        crdt_buf_dispose(&u);
    }
    for (size_t i = 0; i < nv; i++) {
        crdt_buf_dispose(&sv[i]);
        free(texts[i]);
    }
    free(sv);
    free(texts);
    crdt_doc_free(r[0]);
    crdt_doc_free(r[1]);
}

static void test_text_at_current_and_empty_version(void **state)
{
    crdt_doc_t *a = new_doc(1);
    crdt_buf_t sv, t;
    (void)state;
    assert_int_equal(crdt_doc_text_at(a, NULL, 0, &t), 0);
    assert_int_equal(t.len, 0);
    crdt_buf_dispose(&t);
    assert_int_equal(crdt_doc_insert(a, 0, "abc" EMOJI, 7, NULL), 0);
    assert_int_equal(crdt_doc_delete(a, 1, 1, NULL), 0);
    assert_int_equal(crdt_doc_state_vector(a, &sv), 0);
    assert_int_equal(crdt_doc_text_at(a, sv.base, sv.len, &t), 0);
    assert_string_equal((const char *)t.base, "ac" EMOJI);
    crdt_buf_dispose(&t);
    assert_int_equal(crdt_doc_text_at(a, NULL, 0, &t), 0);
    assert_string_equal((const char *)t.base, "");
    crdt_buf_dispose(&t);
    crdt_buf_dispose(&sv);
    crdt_doc_free(a);
}

/* Versions in the middle of a run of backspaces and of a forward delete. */
static void test_text_at_inside_delete_runs(void **state)
{
    crdt_doc_t *a = new_doc(1);
    crdt_buf_t sv[16], t;
    char *texts[16];
    size_t n = 0;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "0123456789", 10, NULL), 0);
    for (int i = 0; i < 4; i++) { /* backspace from the end of "0123456" */
        assert_int_equal(crdt_doc_delete(a, 6 - (size_t)i, 1, NULL), 0);
        assert_int_equal(crdt_doc_state_vector(a, &sv[n]), 0);
        texts[n++] = doc_text(a);
    }
    for (int i = 0; i < 3; i++) { /* forward delete at index 1 */
        assert_int_equal(crdt_doc_delete(a, 1, 1, NULL), 0);
        assert_int_equal(crdt_doc_state_vector(a, &sv[n]), 0);
        texts[n++] = doc_text(a);
    }
    assert_text(a, "089");
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(crdt_doc_text_at(a, sv[i].base, sv[i].len, &t), 0);
        assert_string_equal((const char *)t.base, texts[i]);
        crdt_buf_dispose(&t);
    }
    /* The same from a replica that received it all as one state. */
    {
        crdt_doc_t *b = new_doc(2);
        sync_to(b, a);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(crdt_doc_text_at(b, sv[i].base, sv[i].len, &t), 0);
            assert_string_equal((const char *)t.base, texts[i]);
            crdt_buf_dispose(&t);
        }
        crdt_doc_free(b);
    }
    for (size_t i = 0; i < n; i++) {
        crdt_buf_dispose(&sv[i]);
        free(texts[i]);
    }
    crdt_doc_free(a);
}

static void test_text_at_future_or_unknown_version_eversion(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2), *c = new_doc(3);
    crdt_buf_t sv_future, sv_c, t, u;
    snap_t sb;
    bytes_t w;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "abc", 3, NULL), 0);
    sync_to(b, a);
    assert_int_equal(crdt_doc_insert(a, 3, "def", 3, NULL), 0);
    assert_int_equal(crdt_doc_state_vector(a, &sv_future), 0);
    assert_int_equal(crdt_doc_insert(c, 0, "zzz", 3, NULL), 0);
    assert_int_equal(crdt_doc_state_vector(c, &sv_c), 0);
    snap_take(b, &sb);
    memset(&t, 0x5a, sizeof(t));
    u = t;
    assert_int_equal(crdt_doc_text_at(b, sv_future.base, sv_future.len, &t), CRDT_EVERSION);
    assert_int_equal(crdt_doc_text_at(b, sv_c.base, sv_c.len, &t), CRDT_EVERSION);
    assert_int_equal(crdt_doc_restore(b, sv_future.base, sv_future.len, &u), CRDT_EVERSION);
    assert_int_equal(crdt_doc_restore(b, sv_c.base, sv_c.len, &u), CRDT_EVERSION);
    /* Hand-made: a known client one past its clock; an unknown client. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 1);
    put_u64(&w, 1);
    put_varint(&w, 4);
    assert_int_equal(crdt_doc_text_at(b, w.b, w.n, &t), CRDT_EVERSION);
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 2);
    put_u64(&w, 1);
    put_varint(&w, 2);
    put_u64(&w, 0x77);
    put_varint(&w, 1);
    assert_int_equal(crdt_doc_text_at(b, w.b, w.n, &t), CRDT_EVERSION);
    /* An unknown client at clock 0 is no operation: fine. */
    memset(&w, 0, sizeof(w));
    put_u8(&w, 1);
    put_varint(&w, 2);
    put_u64(&w, 1);
    put_varint(&w, 2);
    put_u64(&w, 0x77);
    put_varint(&w, 0);
    assert_int_equal(crdt_doc_text_at(b, w.b, w.n, &t), 0);
    assert_string_equal((const char *)t.base, "ab");
    crdt_buf_dispose(&t);
    memset(&t, 0x5a, sizeof(t));
    /* Malformed versions. */
    {
        static const uint8_t bad1[] = {2, 0}, bad2[] = {1, 1, 1, 0, 0}, bad3[] = {1, 0, 0};
        assert_int_equal(crdt_doc_text_at(b, bad1, sizeof bad1, &t), CRDT_EMALFORMED);
        assert_int_equal(crdt_doc_text_at(b, bad2, sizeof bad2, &t), CRDT_EMALFORMED);
        assert_int_equal(crdt_doc_text_at(b, bad3, sizeof bad3, &t), CRDT_EMALFORMED);
        assert_int_equal(crdt_doc_restore(b, bad2, sizeof bad2, &u), CRDT_EMALFORMED);
    }
    {
        crdt_buf_t junk;
        memset(&junk, 0x5a, sizeof(junk));
        assert_memory_equal(&t, &junk, sizeof(t));
        assert_memory_equal(&u, &junk, sizeof(u));
    }
    assert_unchanged(b, &sb);
    snap_dispose(&sb);
    crdt_buf_dispose(&sv_future);
    crdt_buf_dispose(&sv_c);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);
}

static void test_restore_merges_with_concurrent_edits(void **state)
{
    crdt_doc_t *a = new_doc(1), *b = new_doc(2);
    crdt_buf_t v1, ur, ub;
    char *t;
    (void)state;
    assert_int_equal(crdt_doc_insert(a, 0, "hello world", 11, NULL), 0);
    sync_to(b, a);
    assert_int_equal(crdt_doc_state_vector(a, &v1), 0);
    assert_int_equal(crdt_doc_delete(a, 0, 6, NULL), 0);
    assert_int_equal(crdt_doc_insert(a, 0, "goodbye ", 8, NULL), 0);
    assert_int_equal(crdt_doc_insert(a, 13, EMOJI, 4, NULL), 0);
    sync_to(b, a);
    assert_text(b, "goodbye world" EMOJI);
    /* a restores v1 while b appends, concurrently. */
    assert_int_equal(crdt_doc_restore(a, v1.base, v1.len, &ur), 0);
    assert_check(a);
    assert_text(a, "hello world");
    assert_int_equal(crdt_doc_insert(b, 15, "!!", 2, &ub), 0);
    apply_ok(a, &ub);
    apply_ok(b, &ur);
    assert_text(a, "hello world!!");
    assert_text(b, "hello world!!");
    /* Restoring the version one is at changes nothing; restoring again is a
     * no-op as well. */
    {
        crdt_buf_t sv, u2;
        snap_t s;
        assert_int_equal(crdt_doc_state_vector(a, &sv), 0);
        snap_take(a, &s);
        assert_int_equal(crdt_doc_restore(a, sv.base, sv.len, &u2), 0);
        t = doc_text(a);
        assert_string_equal(t, "hello world!!");
        free(t);
        apply_ok(b, &u2);
        assert_text(b, "hello world!!");
        crdt_buf_dispose(&u2);
        crdt_buf_dispose(&sv);
        snap_dispose(&s);
    }
    /* Restore to the empty version. */
    assert_int_equal(crdt_doc_restore(b, NULL, 0, NULL), 0);
    assert_text(b, "");
    sync_to(a, b);
    assert_text(a, "");
    crdt_buf_dispose(&v1);
    crdt_buf_dispose(&ur);
    crdt_buf_dispose(&ub);
    crdt_doc_free(a);
    crdt_doc_free(b);
}

/* Random sessions; at the end of each game, restore random recorded versions on
 * one replica while another edits concurrently, and check convergence. */
static void test_restore_random_versions_converge(void **state)
{
    static const uint64_t seeds[] = {11, 0xabad1dea};
    int restores = 0;
    (void)state;
    for (size_t si = 0; si < sizeof(seeds) / sizeof(seeds[0]); si++) {
        for (int g = 0; g < 6; g++) {
            sim_t s;
            sim_start(&s, seeds[si], g, 3);
            s.record_versions = 1;
            for (s.round = 0; s.round < 12; s.round++) {
                int steps = 10 + (int)rng_below(&s.rng, 30);
                for (s.step = 0; s.step < steps; s.step++)
                    sim_step(&s);
                s.step = -1;
                sim_flush(&s);
                sim_check_converged(&s);
                if (s.nver == 0)
                    continue;
                {
                    const version_rec_t *v = &s.ver[rng_below(&s.rng, s.nver)];
                    size_t r = rng_below(&s.rng, 3), o = (r + 1) % 3;
                    char marker[32], *t;
                    crdt_buf_t ur, uo;
                    int rc;
                    rc = crdt_doc_restore(s.doc[r], v->sv.base, v->sv.len, &ur);
                    if (rc != 0)
                        sim_fail(&s, "restore on replica %zu: %s", r, crdt_strerror(rc));
                    sim_check_doc(&s, r, "restore");
                    t = doc_text(s.doc[r]);
                    if (strcmp(t, v->text) != 0) {
                        char d[256];
                        sim_fail(&s, "restore gave another text than the version's: %s",
                                 where_differ(t, v->text, d, sizeof d));
                    }
                    free(t);
                    /* A concurrent insert elsewhere survives the merge. */
                    snprintf(marker, sizeof marker, "<#%d.%d>", g, s.round);
                    t = doc_text(s.doc[o]);
                    rc = crdt_doc_insert(
                        s.doc[o],
                        boundary_floor(t, strlen(t),
                                       rng_below(&s.rng, crdt_doc_length(s.doc[o]) + 1)),
                        marker, strlen(marker), &uo);
                    free(t);
                    assert_int_equal(rc, 0);
                    sim_broadcast(&s, r, &ur);
                    sim_broadcast(&s, o, &uo);
                    crdt_buf_dispose(&ur);
                    crdt_buf_dispose(&uo);
                    sim_flush(&s);
                    sim_check_converged(&s);
                    /* Without the marker, the text is the restored version. */
                    t = doc_text(s.doc[0]);
                    {
                        char *m = strstr(t, marker);
                        char d[256];
                        if (m == NULL)
                            sim_fail(&s,
                                     "concurrent insert \"%s\" lost in the merge with a "
                                     "restore",
                                     marker);
                        memmove(m, m + strlen(marker), strlen(m + strlen(marker)) + 1);
                        if (strcmp(t, v->text) != 0)
                            sim_fail(&s,
                                     "after restore and a concurrent insert, the text "
                                     "without the insert is not the version's: %s",
                                     where_differ(t, v->text, d, sizeof d));
                    }
                    free(t);
                    restores++;
                }
                sim_check_versions(&s, 1);
            }
            sim_end(&s);
        }
    }
    print_message("%d restores merged with concurrent inserts\n", restores);
    assert_true(restores > 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_update_random_sessions_converge),
        cmocka_unit_test(test_state_vector_identical_bytes_on_converged_replicas),
        cmocka_unit_test(test_insert_concurrent_forward_no_interleave),
        cmocka_unit_test(test_insert_concurrent_backward_no_interleave),
        cmocka_unit_test(test_insert_concurrent_mixed_direction_no_interleave),
        cmocka_unit_test(test_insert_concurrent_three_replicas_no_interleave),
        cmocka_unit_test(test_insert_concurrent_in_middle_no_interleave),
        cmocka_unit_test(test_insert_concurrent_with_delete_no_interleave),
        cmocka_unit_test(test_apply_update_inverted_origins_converge),
        cmocka_unit_test(test_apply_update_reverse_order_held_until_dependencies),
        cmocka_unit_test(test_apply_update_delete_before_insert_held),
        cmocka_unit_test(test_apply_update_held_insert_text_intact_when_applied),
        cmocka_unit_test(test_apply_update_random_order_held_then_applied),
        cmocka_unit_test(test_text_at_random_versions),
        cmocka_unit_test(test_text_at_every_keystroke),
        cmocka_unit_test(test_text_at_current_and_empty_version),
        cmocka_unit_test(test_text_at_inside_delete_runs),
        cmocka_unit_test(test_text_at_future_or_unknown_version_eversion),
        cmocka_unit_test(test_restore_merges_with_concurrent_edits),
        cmocka_unit_test(test_restore_random_versions_converge),
    };

    if (getenv("CMOCKA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
