/* SPDX-License-Identifier: MIT */
/*
 * make_corpus.c: writes the seed corpora of the fuzz targets that need
 * generated inputs into a directory. It is not part of the build: the files it
 * wrote are committed in tests/fuzz/corpus/<corpus>/. To regenerate them:
 *
 *   cc -std=c11 -Icrdt -Itests/fuzz tests/fuzz/make_corpus.c build/libcrdt.a \
 *       -o build/make_corpus
 *   build/make_corpus apply_update tests/fuzz/corpus/apply_update
 *   build/make_corpus load tests/fuzz/corpus/load
 *   build/make_corpus lz tests/fuzz/corpus/lz
 *   build/make_corpus srv_config tests/fuzz/corpus/srv_config
 *
 * (`make_corpus DIR` alone writes the apply_update corpus.) Every corpus is
 * made the same way on every run (fixed inputs, fixed pseudo-random seeds).
 *
 *   apply_update  small valid and invalid updates, most of them about the fixed
 *                 content of fuzz_apply_update_check.h (fuzz_apply_update);
 *   load          encoded states (crdt_doc_encode_state) of documents edited in
 *                 many ways, compressed and not, a few updates and a few damaged
 *                 states (fuzz_load);
 *   lz            two bytes of size then an lz stream (crdt/lz.h) of texts of
 *                 every kind (runs, prose, random, skewed), a few damaged
 *                 (fuzz_lz);
 *   srv_config    NUL-separated weftd command lines and document names
 *                 (fuzz_srv_config).
 *
 * Inputs found by fuzzing are added to a corpus by hand, named
 * regress-<what>.bin; this program does not touch them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_apply_update_check.h"
#include "lz.h"

static const char *out_dir;

static void die(const char *what, int err)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, err ? crdt_strerror(err) : "failed");
    exit(1);
}

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die(path, 0);
    printf("%-44s %4zu bytes\n", name, n);
}

static void write_buf(const char *name, crdt_buf_t *b)
{
    write_file(name, b->base, b->len);
    crdt_buf_dispose(b);
}

/* A replica (client `id`) holding what the fuzz target's document holds. */
static crdt_doc_t *replica(uint64_t id)
{
    crdt_doc_t *doc = NULL, *r = NULL;
    crdt_buf_t follow_up, st;
    int err;
    if ((err = fuzz_initial_doc(&doc, &follow_up)) != 0 ||
        (err = crdt_doc_encode_state(doc, &st)) != 0 ||
        (err = crdt_doc_load(id, NULL, st.base, st.len, &r)) != 0)
        die("replica", err);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&follow_up);
    crdt_doc_free(doc);
    return r;
}

/* Byte builder for hand-made updates (format 1). */
typedef struct {
    uint8_t b[512];
    size_t n;
} bytes_t;

static void u8(bytes_t *w, uint8_t v)
{
    if (w->n == sizeof(w->b))
        die("bytes_t full", 0);
    w->b[w->n++] = v;
}

static void varint(bytes_t *w, uint64_t v)
{
    while (v >= 0x80) {
        u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    u8(w, (uint8_t)v);
}

static void u64le(bytes_t *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        u8(w, (uint8_t)(v >> (8 * i)));
}

/* Header with clients {0x0d, A, B} and one block of `nops` by client 0 at clock 0. */
static void begin(bytes_t *w, uint64_t nops)
{
    memset(w, 0, sizeof(*w));
    u8(w, 1);
    varint(w, 3);
    u64le(w, 0x0d);
    u64le(w, FUZZ_CLIENT_A);
    u64le(w, FUZZ_CLIENT_B);
    varint(w, 1);
    varint(w, 0);
    varint(w, 0);
    varint(w, nops);
}

static void corpus_apply_update(void)
{
    crdt_doc_t *r, *doc;
    crdt_buf_t u, sv, follow_up;
    bytes_t w;
    int err;

    /* ---- valid ---- */
    if ((err = crdt_doc_new(0x0d, NULL, &r)) != 0 || (err = crdt_doc_insert(r, 0, "", 0, &u)) != 0)
        die("empty", err);
    write_buf("valid-empty-update.bin", &u);
    crdt_doc_free(r);

    r = replica(0x0d);
    if ((err = crdt_doc_insert(r, 0, "fuzz ", 5, &u)) != 0)
        die("insert at start", err);
    write_buf("valid-insert-at-start.bin", &u);
    crdt_doc_free(r);

    r = replica(0x0d);
    if ((err = crdt_doc_insert(r, 11, "\xc3\xa9\xf0\x9f\x98\x80", 6, &u)) != 0) /* after 'w' */
        die("insert into run", err);
    write_buf("valid-insert-into-run.bin", &u);
    crdt_doc_free(r);

    /* Concurrent with B's "[B]": the same origins, A's ',' and ' '. */
    begin(&w, 1);
    u8(&w, 0x80 | 0x08 | 0x20);
    varint(&w, 1);
    varint(&w, 5);
    varint(&w, 1);
    varint(&w, 6);
    varint(&w, 3);
    u8(&w, '[');
    u8(&w, 'D');
    u8(&w, ']');
    write_file("valid-insert-concurrent-same-place.bin", w.b, w.n);

    r = replica(0x0d);
    if ((err = crdt_doc_delete(r, 4, 9, &u)) != 0) /* "o,[B] wö" */
        die("delete across clients", err);
    write_buf("valid-delete-across-clients.bin", &u);
    crdt_doc_free(r);

    r = replica(0x0d);
    if ((err = crdt_doc_state_vector(r, &sv)) != 0)
        die("sv", err);
    for (int i = 0; i < 3; i++)
        if ((err = crdt_doc_delete(r, 13 - (size_t)i, 1, NULL)) != 0)
            die("backspace", err);
    if ((err = crdt_doc_diff(r, sv.base, sv.len, &u)) != 0)
        die("diff", err);
    write_buf("valid-backspace-run.bin", &u);
    crdt_buf_dispose(&sv);
    crdt_doc_free(r);

    if ((err = fuzz_partner_update(&u)) != 0)
        die("partner", err);
    write_buf("valid-concurrent-third-client.bin", &u);

    if ((err = fuzz_initial_doc(&doc, &follow_up)) != 0)
        die("initial", err);
    write_buf("valid-follow-up-releases-held.bin", &follow_up);
    if ((err = crdt_doc_encode_state(doc, &u)) != 0)
        die("state", err);
    write_buf("valid-state-of-initial-doc.bin", &u);
    if ((err = crdt_doc_state_vector(doc, &sv)) != 0)
        die("sv", err);
    r = replica(0x0d);
    if ((err = crdt_doc_insert(r, 0, ">> ", 3, NULL)) != 0 ||
        (err = crdt_doc_delete(r, 5, 2, NULL)) != 0 ||
        (err = crdt_doc_insert(r, 10, "\xe4\xb8\xad", 3, NULL)) != 0 ||
        (err = crdt_doc_diff(r, sv.base, sv.len, &u)) != 0)
        die("multi-op diff", err);
    write_buf("valid-diff-several-ops.bin", &u);
    /* A second change of 0x0d without the first: held. */
    if ((err = crdt_doc_insert(r, 0, "later", 5, &u)) != 0)
        die("held", err);
    write_buf("valid-held-missing-dependency.bin", &u);
    crdt_buf_dispose(&sv);
    crdt_doc_free(r);
    crdt_doc_free(doc);

    /* The state of an unrelated document of three clients. */
    {
        crdt_doc_t *x = NULL, *y = NULL;
        if ((err = crdt_doc_new(0x100, NULL, &x)) != 0 ||
            (err = crdt_doc_new(0x200, NULL, &y)) != 0 ||
            (err = crdt_doc_insert(x, 0, "other document", 14, &u)) != 0 ||
            (err = crdt_doc_apply_update(y, u.base, u.len)) != 0)
            die("other", err);
        crdt_buf_dispose(&u);
        if ((err = crdt_doc_delete(y, 0, 6, NULL)) != 0 ||
            (err = crdt_doc_insert(y, 3, "\xf0\x9f\x98\x80", 4, NULL)) != 0 ||
            (err = crdt_doc_encode_state(y, &u)) != 0)
            die("other state", err);
        write_buf("valid-state-of-other-doc.bin", &u);
        crdt_doc_free(x);
        crdt_doc_free(y);
    }

    /* ---- invalid ---- */
    r = replica(0x0d);
    if ((err = crdt_doc_insert(r, 3, "truncated", 9, &u)) != 0)
        die("truncated", err);
    write_file("invalid-truncated.bin", u.base, u.len / 2);
    u.base[0] = 3;
    write_file("invalid-format-version-3.bin", u.base, u.len);
    u.base[0] = 1;
    {
        uint8_t *longer = malloc(u.len + 1);
        if (longer == NULL)
            die("malloc", 0);
        memcpy(longer, u.base, u.len);
        longer[u.len] = 0;
        write_file("invalid-trailing-byte.bin", longer, u.len + 1);
        free(longer);
    }
    crdt_buf_dispose(&u);
    crdt_doc_free(r);

    begin(&w, 1); /* operation kind 5 (3 bytes, the smallest operation) */
    u8(&w, 5);
    varint(&w, 1);
    varint(&w, 0);
    write_file("invalid-unknown-op-kind.bin", w.b, w.n);

    begin(&w, 1); /* delete of B's clock 3, which is B's delete of "r" */
    u8(&w, 1);
    varint(&w, 1);
    varint(&w, 2);
    varint(&w, 3);
    write_file("invalid-delete-of-deletion.bin", w.b, w.n);

    begin(&w, 1); /* insert with invalid UTF-8 (a surrogate) */
    u8(&w, 0x00);
    varint(&w, 1);
    varint(&w, 3);
    u8(&w, 0xed);
    u8(&w, 0xa0);
    u8(&w, 0x80);
    write_file("invalid-utf8-surrogate.bin", w.b, w.n);

    memset(&w, 0, sizeof(w)); /* 2^40 clients */
    u8(&w, 1);
    varint(&w, 1ULL << 40);
    u64le(&w, 0x0d);
    write_file("invalid-huge-client-count.bin", w.b, w.n);

    begin(&w, 1ULL << 40); /* 2^40 operations */
    u8(&w, 0x80);
    varint(&w, 1);
    u8(&w, 'x');
    write_file("invalid-huge-op-count.bin", w.b, w.n);

    begin(&w, 1); /* clocks past 2^32 - 1 */
    w.n -= 2;
    varint(&w, 0xfffffffeULL);
    varint(&w, 1);
    u8(&w, 0x80);
    varint(&w, 2);
    u8(&w, 'x');
    u8(&w, 'y');
    write_file("invalid-clock-overflow.bin", w.b, w.n);
}

/* ---- shared helpers of the other corpora ------------------------------------ */

/* xorshift64*: the same numbers on every machine. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rng_next(s) % n) : 0;
}

static void must_ok(int err, const char *what)
{
    if (err != 0)
        die(what, err);
}

static crdt_doc_t *new_doc(uint64_t client)
{
    crdt_doc_t *d = NULL;
    must_ok(crdt_doc_new(client, NULL, &d), "crdt_doc_new");
    return d;
}

/* Sends everything `from` has and `to` lacks. */
static void sync_to(crdt_doc_t *from, crdt_doc_t *to)
{
    crdt_buf_t sv, u;
    must_ok(crdt_doc_state_vector(to, &sv), "state vector");
    must_ok(crdt_doc_diff(from, sv.base, sv.len, &u), "diff");
    must_ok(crdt_doc_apply_update(to, u.base, u.len), "apply diff");
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&u);
}

static void write_state(const char *name, const crdt_doc_t *d)
{
    crdt_buf_t st;
    must_ok(crdt_doc_encode_state(d, &st), "encode state");
    write_buf(name, &st);
}

static void ins(crdt_doc_t *d, size_t at, const char *s)
{
    must_ok(crdt_doc_insert(d, at, s, strlen(s), NULL), "insert");
}

static void del(crdt_doc_t *d, size_t at, size_t n)
{
    must_ok(crdt_doc_delete(d, at, n, NULL), "delete");
}

static const char *const words[] = {
    "the ",
    "quick ",
    "brown ",
    "fox ",
    "jumps ",
    "over ",
    "lazy ",
    "dog ",
    "and ",
    "a ",
    "document ",
    "edits ",
    "merge ",
    "\xc3\xa9t\xc3\xa9 ",
    "\xe4\xb8\xad\xe6\x96\x87 ",
    "\xf0\x9f\x98\x80 ",
    "\n",
    ", ",
    ". ",
    "weft ",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

/*
 * A random editing session of `nclients` replicas (ids base+1 ..): `steps`
 * edits (inserts of a word or deletes of a short range, at random places), with
 * the replicas synced at random moments and all of them at the end. Returns
 * replica 0 (the caller frees it).
 */
static crdt_doc_t *session(uint64_t seed, int nclients, int steps, uint64_t base)
{
    crdt_doc_t *r[8];
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < nclients; i++)
        r[i] = new_doc(base + 1 + (uint64_t)i);
    for (int k = 0; k < steps; k++) {
        crdt_doc_t *d = r[rng_below(&s, (size_t)nclients)];
        size_t len = crdt_doc_length(d);
        if (len > 0 && rng_below(&s, 3) == 0) {
            size_t at = rng_below(&s, len), n = 1 + rng_below(&s, 6);
            if (n > len - at)
                n = len - at;
            (void)crdt_doc_delete(d, at, n, NULL); /* may split a surrogate pair: skipped */
        } else {
            const char *wd = words[rng_below(&s, NWORDS)];
            (void)crdt_doc_insert(d, rng_below(&s, len + 1), wd, strlen(wd), NULL);
        }
        if (rng_below(&s, 5) == 0) {
            int a = (int)rng_below(&s, (size_t)nclients), b = (int)rng_below(&s, (size_t)nclients);
            if (a != b)
                sync_to(r[a], r[b]);
        }
    }
    for (int i = 1; i < nclients; i++)
        sync_to(r[i], r[0]);
    for (int i = 1; i < nclients; i++)
        crdt_doc_free(r[i]);
    return r[0];
}

/* ---- load: encoded states ------------------------------------------------- */

static void corpus_load(void)
{
    crdt_doc_t *a, *b, *c;
    crdt_buf_t u, sv, st;
    char name[64];

    a = new_doc(1);
    write_state("empty", a); /* the names of the first seeds of this corpus */
    ins(a, 0, "hello");
    write_state("hello", a);
    crdt_doc_free(a);

    a = new_doc(2); /* typed one character at a time */
    {
        const char *line = "typed one key at a time";
        for (size_t i = 0; line[i]; i++) {
            char ch[2] = {line[i], 0};
            ins(a, i, ch);
        }
    }
    write_state("typed-forward.bin", a);
    crdt_doc_free(a);

    a = new_doc(3); /* every character typed at the start */
    {
        const char *line = "backwards";
        for (size_t i = 0; line[i]; i++) {
            char ch[2] = {line[i], 0};
            ins(a, 0, ch);
        }
    }
    write_state("typed-at-start.bin", a);
    ins(a, 4, "[mid]");
    ins(a, 2, "<");
    ins(a, 9, ">");
    write_state("typed-middle.bin", a);
    crdt_doc_free(a);

    a = new_doc(4);
    ins(a, 0, "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 end");
    write_state("unicode.bin", a);
    del(a, 4, 3); /* " \u4e2d\u6587" */
    del(a, 5, 2); /* the first emoji (a surrogate pair) */
    write_state("unicode-deleted.bin", a);
    crdt_doc_free(a);

    a = new_doc(5);
    ins(a, 0, "delete from the middle of this");
    del(a, 7, 9);
    write_state("delete-middle.bin", a);
    del(a, 0, crdt_doc_length(a));
    write_state("delete-all.bin", a);
    ins(a, 0, "again");
    write_state("delete-all-retype.bin", a);
    crdt_doc_free(a);

    a = new_doc(0x10); /* two replicas typing at one place at the same time */
    b = new_doc(0x20);
    ins(a, 0, "base text");
    sync_to(a, b);
    ins(a, 4, " AAA");
    ins(b, 4, " BBB");
    sync_to(a, b);
    sync_to(b, a);
    write_state("concurrent-same-place.bin", a);
    del(a, 2, 6); /* across both replicas' text */
    del(b, 5, 3); /* concurrently, partly the same characters */
    sync_to(a, b);
    sync_to(b, a);
    write_state("concurrent-deletes.bin", b);
    c = new_doc(0x30);
    sync_to(a, c);
    ins(c, crdt_doc_length(c), " and C");
    del(c, 0, 2);
    sync_to(c, a);
    write_state("three-clients.bin", a);
    crdt_doc_free(a);
    crdt_doc_free(b);
    crdt_doc_free(c);

    a = new_doc(UINT64_MAX); /* extreme replica ids */
    b = new_doc(1);
    ins(a, 0, "max id");
    sync_to(a, b);
    ins(b, 3, " min");
    sync_to(b, a);
    must_ok(crdt_doc_set_client(a, 0x100000000ULL), "set_client");
    ins(a, 0, "2^32 ");
    write_state("extreme-client-ids.bin", a);
    crdt_doc_free(a);
    crdt_doc_free(b);

    a = new_doc(0x1000); /* sixteen replicas, a word each */
    for (int i = 0; i < 16; i++) {
        b = new_doc(0x2000 + (uint64_t)i);
        sync_to(a, b);
        ins(b, rng_below(&(uint64_t){(uint64_t)i + 7}, crdt_doc_length(b) + 1), words[i]);
        sync_to(b, a);
        crdt_doc_free(b);
    }
    write_state("sixteen-clients.bin", a);
    crdt_doc_free(a);

    a = new_doc(0x41); /* restore of an earlier version */
    ins(a, 0, "version one");
    must_ok(crdt_doc_state_vector(a, &sv), "sv");
    del(a, 0, 8);
    ins(a, 0, "second ");
    ins(a, crdt_doc_length(a), " and more");
    must_ok(crdt_doc_restore(a, sv.base, sv.len, NULL), "restore");
    write_state("restored.bin", a);
    crdt_buf_dispose(&sv);
    crdt_doc_free(a);

    a = new_doc(0x51); /* loaded from a state, then edited by the loader */
    ins(a, 0, "written by one");
    must_ok(crdt_doc_encode_state(a, &st), "state");
    must_ok(crdt_doc_load(0x52, NULL, st.base, st.len, &b), "load");
    crdt_buf_dispose(&st);
    ins(b, 10, " then another");
    del(b, 0, 3);
    write_state("loaded-then-edited.bin", b);
    crdt_doc_free(a);
    crdt_doc_free(b);

    /* bodies of 256 bytes and more are compressed */
    a = new_doc(0x61);
    for (int i = 0; i < 40; i++)
        ins(a, crdt_doc_length(a), words[i % NWORDS]);
    write_state("compressed-prose.bin", a);
    crdt_doc_free(a);
    a = new_doc(0x62);
    {
        char run[601];
        memset(run, 'z', 600);
        run[600] = 0;
        ins(a, 0, run);
    }
    write_state("long-run.bin", a);
    crdt_doc_free(a);

    for (int i = 0; i < 8; i++) { /* random sessions, small to compressed */
        static const int steps[8] = {6, 10, 15, 20, 30, 45, 80, 150};
        a = session(100 + (uint64_t)i, 2 + i % 3, steps[i], 0x700 + 16 * (uint64_t)i);
        snprintf(name, sizeof name, "session-%d-%dsteps.bin", i, steps[i]);
        write_state(name, a);
        crdt_doc_free(a);
    }

    /* not states: updates (loaded by integrating) */
    a = new_doc(0x81);
    must_ok(crdt_doc_insert(a, 0, "an update", 9, &u), "insert");
    write_buf("update-insert.bin", &u);
    must_ok(crdt_doc_delete(a, 0, 3, &u), "delete");
    write_buf("update-delete-alone.bin", &u);
    must_ok(crdt_doc_diff(a, NULL, 0, &u), "diff");
    write_buf("update-diff.bin", &u);
    crdt_doc_free(a);

    /* damaged states */
    a = session(7, 2, 25, 0x900);
    must_ok(crdt_doc_encode_state(a, &st), "state");
    write_file("damaged-truncated.bin", st.base, st.len - st.len / 3);
    st.base[st.len / 2] ^= 0x40;
    write_file("damaged-flipped-bit.bin", st.base, st.len);
    st.base[st.len / 2] ^= 0x40;
    st.base[0] = 3;
    write_file("damaged-version-3.bin", st.base, st.len);
    crdt_buf_dispose(&st);
    crdt_doc_free(a);
}

/* ---- lz: size + stream ---------------------------------------------------- */

/* Writes [n as 16-bit little-endian][stream of src], with the size changed by
 * `size_delta` and the stream cut by `cut` bytes or followed by `extra` zero bytes. */
static void write_lz(const char *name, const uint8_t *src, size_t n, int size_delta, size_t cut,
                     size_t extra)
{
    crdt_buf_t b;
    size_t declared = (size_t)((long)n + size_delta);
    if (n > 0xffff)
        die("lz seed over 64 KiB", 0);
    must_ok(crdt__buf_init(&crdt__libc_alloc, &b, 16), "buf_init");
    must_ok(crdt__buf_reserve(&b, 2), "buf_reserve");
    crdt__put_u8(&b, (uint8_t)(declared & 0xff));
    crdt__put_u8(&b, (uint8_t)(declared >> 8));
    must_ok(crdt__lz_compress(&crdt__libc_alloc, src, n, &b), "compress");
    if (cut > b.len - 2)
        die("lz cut", 0);
    b.len -= cut;
    must_ok(crdt__buf_reserve(&b, extra), "buf_reserve");
    for (size_t i = 0; i < extra; i++)
        crdt__put_u8(&b, 0);
    write_buf(name, &b);
}

static void write_lz_str(const char *name, const char *s)
{
    write_lz(name, (const uint8_t *)s, strlen(s), 0, 0, 0);
}

static const char prose[] =
    "Real-time collaborative editing lets several people change one text at the same "
    "time. Every replica applies its own edits at once and sends them to the others, "
    "which merge them in any order and still end with the same text. The server keeps "
    "the log of updates and a snapshot every thousand entries, compressed with a small "
    "LZ77 coder followed by Huffman codes rebuilt for every block.\n";

static void corpus_lz(void)
{
    static uint8_t buf[65535];
    uint64_t s = 0x1234567;
    size_t n;

    write_lz_str("empty.bin", "");
    write_lz_str("one-byte.bin", "a");
    write_lz_str("three-bytes.bin", "abc");
    write_lz_str("short-run.bin", "aaaaaaaaaa");
    write_lz_str("prose.bin", prose);
    write_lz_str("utf8.bin", "caf\xc3\xa9, na\xc3\xafve, \xe4\xb8\xad\xe6\x96\x87\xe6\x96\x87\xe6"
                             "\x9c\xac, \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, "
                             "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x8e\x89 caf\xc3\xa9");
    write_lz_str("json.bin",
                 "{\"versions\":[{\"seq\":1,\"time\":1700000000000,\"authors\":[\"0a\"]},"
                 "{\"seq\":2,\"time\":1700000000500,\"authors\":[\"0a\",\"0b\"]},"
                 "{\"seq\":3,\"time\":1700000001000,\"authors\":[\"0b\"]}]}");
    write_lz_str("code.bin", "static int f(int x)\n{\n    if (x < 0)\n        return -x;\n    "
                             "return x;\n}\n\nstatic int g(int y)\n{\n    if (y < 0)\n        "
                             "return -y;\n    return y;\n}\n");
    write_lz_str("alternating.bin", "abababababababababababababababababababababababababab");

    memset(buf, 'x', 4096);
    write_lz("run-4096.bin", buf, 4096, 0, 0, 0);
    memset(buf, 'z', 65535);
    write_lz("run-65535.bin", buf, 65535, 0, 0, 0);

    for (n = 0; n < 256; n++)
        buf[n] = (uint8_t)n;
    write_lz("all-bytes.bin", buf, 256, 0, 0, 0);

    for (n = 0; n < 300; n++)
        buf[n] = (uint8_t)rng_next(&s);
    write_lz("random-300.bin", buf, 300, 0, 0, 0); /* stored */
    for (n = 0; n < 9000; n++)
        buf[n] = (uint8_t)rng_next(&s);
    write_lz("random-9000.bin", buf, 9000, 0, 0, 0); /* stored, two blocks */

    for (n = 0; n < 700; n++) /* far repeats */
        buf[n] = (uint8_t)('a' + rng_below(&s, 26));
    memcpy(buf + 700, buf, 700);
    memcpy(buf + 1400, buf, 700);
    write_lz("far-repeats.bin", buf, 2100, 0, 0, 0);

    for (n = 0; n < 2000; n++) /* two symbols, no runs to speak of */
        buf[n] = rng_below(&s, 2) ? 'L' : 'R';
    write_lz("two-symbols.bin", buf, 2000, 0, 0, 0);

    memset(buf, 'q', 500); /* one symbol and one odd byte */
    buf[250] = '!';
    write_lz("one-odd-byte.bin", buf, 500, 0, 0, 0);

    /* skewed frequencies (Fibonacci weights) push code lengths to their limit */
    {
        static const unsigned fib[20] = {1,  1,   2,   3,   5,   8,   13,   21,   34,   55,
                                         89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765};
        size_t total = 0;
        for (int i = 0; i < 20; i++)
            total += fib[i];
        for (n = 0; n < 12000; n++) {
            size_t r = rng_below(&s, total);
            int i = 0;
            while (r >= fib[i])
                r -= fib[i++];
            buf[n] = (uint8_t)(0x20 + i);
        }
        write_lz("skewed-12000.bin", buf, 12000, 0, 0, 0);
    }

    /* words in random order: many blocks of matches */
    n = 0;
    while (n < 30000) {
        const char *wd = words[rng_below(&s, NWORDS)];
        size_t l = strlen(wd);
        memcpy(buf + n, wd, l);
        n += l;
    }
    write_lz("words-30000.bin", buf, n, 0, 0, 0);
    write_lz("prose-4000.bin", buf, 4000, 0, 0, 0);

    /* damaged */
    write_lz("bad-size-plus-one.bin", (const uint8_t *)prose, sizeof prose - 1, 1, 0, 0);
    write_lz("bad-size-minus-one.bin", (const uint8_t *)prose, sizeof prose - 1, -1, 0, 0);
    write_lz("bad-truncated.bin", (const uint8_t *)prose, sizeof prose - 1, 0, 1, 0);
    write_lz("bad-trailing-byte.bin", (const uint8_t *)prose, sizeof prose - 1, 0, 0, 1);
    write_lz("bad-run-truncated.bin", buf, 4000, 0, 5, 0);
}

/* ---- srv_config: command lines and document names ----------------------- */

/* Writes the arguments joined by NUL bytes. */
static void write_args(const char *name, const char *const *args, size_t nargs)
{
    bytes_t w;
    memset(&w, 0, sizeof w);
    for (size_t i = 0; i < nargs; i++) {
        if (i > 0)
            u8(&w, 0);
        for (const char *p = args[i]; *p; p++)
            u8(&w, (uint8_t)*p);
    }
    write_file(name, w.b, w.n);
}

#define ARGS(name, ...)                                                                            \
    do {                                                                                           \
        const char *const a_[] = {__VA_ARGS__};                                                    \
        write_args(name, a_, sizeof(a_) / sizeof(a_[0]));                                          \
    } while (0)

static void corpus_srv_config(void)
{
    char name129[130];

    /* document names (also read as one argument) */
    ARGS("doc-simple.txt", "notes");
    ARGS("doc-all-kinds.txt", "A-z.0_9~x");
    ARGS("doc-dots.txt", "..");
    memset(name129, 'n', 129);
    name129[128] = 0;
    ARGS("doc-128.txt", name129);
    name129[128] = 'n';
    name129[129] = 0;
    ARGS("doc-129.txt", name129);
    ARGS("doc-slash.txt", "a/b");
    ARGS("doc-space.txt", "my doc");
    ARGS("doc-percent.txt", "a%2Fb");
    ARGS("doc-utf8.txt", "caf\xc3\xa9");

    /* accepted command lines */
    ARGS("ok-listen.txt", "--listen", "127.0.0.1:8080");
    ARGS("ok-listen-eq-v6.txt", "--listen=[::1]:0");
    ARGS("ok-listen-any.txt", "--listen", "0.0.0.0:65535");
    ARGS("ok-dirs.txt", "--data", "/var/lib/weft", "--web-root=web-demo/dist");
    ARGS("ok-data-looks-like-flag.txt", "--data", "--help");
    ARGS("ok-limits-min.txt", "--max-message=64", "--max-queued=1024", "--ping-interval=1",
         "--ping-timeout=1", "--unload-after=0", "--snapshot-every=1", "--map-size=1",
         "--history-burst-gap=0", "--history-burst-max=0", "--max-connections-per-ip=0");
    ARGS("ok-limits-max.txt", "--max-message", "67108864", "--max-queued", "17179869184",
         "--ping-interval", "86400", "--ping-timeout", "86400", "--unload-after", "86400",
         "--snapshot-every", "1073741824", "--map-size", "1048576", "--history-burst-gap",
         "1099511627776", "--history-burst-max", "1099511627776", "--max-connections-per-ip",
         "1048576");
    ARGS("ok-leading-zeros.txt", "--ping-interval=0007", "--listen", "h:000080");
    ARGS("ok-repeated-flag.txt", "--map-size=8", "--map-size=16");
    ARGS("ok-everything.txt", "--listen", "localhost:9000", "--data", "d", "--web-root", "w",
         "--max-message", "4096", "--max-queued", "65536", "--ping-interval", "5", "--ping-timeout",
         "3", "--unload-after", "60", "--snapshot-every", "100", "--map-size", "128",
         "--history-burst-gap", "1000", "--history-burst-max", "5000");
    ARGS("ok-host-63.txt", "--listen",
         "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh:1");

    /* help */
    ARGS("help-long.txt", "--help");
    ARGS("help-short.txt", "--map-size", "4", "-h");
    ARGS("help-eq.txt", "--help=yes");

    /* refused */
    ARGS("bad-positional.txt", "serve");
    ARGS("bad-unknown.txt", "--verbose=1");
    ARGS("bad-missing-value.txt", "--listen");
    ARGS("bad-empty-value.txt", "--data=");
    ARGS("bad-listen-no-port.txt", "--listen", "localhost");
    ARGS("bad-listen-empty-host.txt", "--listen", ":80");
    ARGS("bad-listen-empty-brackets.txt", "--listen", "[]:80");
    ARGS("bad-listen-port-range.txt", "--listen", "h:65536");
    ARGS("bad-host-64.txt", "--listen",
         "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh:1");
    ARGS("bad-below-min.txt", "--max-message=63");
    ARGS("bad-above-max.txt", "--snapshot-every=1073741825");
    ARGS("bad-overflow.txt", "--max-queued", "18446744073709551616");
    ARGS("bad-sign.txt", "--ping-timeout=-1");
    ARGS("bad-plus.txt", "--ping-timeout=+1");
    ARGS("bad-space.txt", "--unload-after= 5");
    ARGS("bad-hex.txt", "--map-size=0x10");
    ARGS("bad-trailing.txt", "--map-size=10MiB");
    ARGS("bad-long-flag-name.txt", "--a-flag-name-much-longer-than-thirty-one-characters=1");
    ARGS("bad-after-good.txt", "--data", "d", "--nope", "--help");
    ARGS("bad-single-dash.txt", "-listen", "h:1");
    ARGS("bad-conns-above-max.txt", "--max-connections-per-ip=1048577");

    /* access control, TLS, limits */
    ARGS("ok-token-secret.txt", "--token-secret", "0123456789abcdef0123456789abcdef");
    ARGS("ok-origins.txt", "--allow-origin", "https://docs.example.com",
         "--allow-origin=http://localhost:8080");
    ARGS("ok-tls.txt", "--tls-cert", "cert.pem", "--tls-key=key.pem");
    ARGS("ok-rate-and-size.txt", "--max-messages-per-second=1000000", "--max-document-bytes",
         "1099511627776");
    ARGS("bad-token-secret-short.txt", "--token-secret=short");
    ARGS("bad-token-secret-twice.txt", "--token-secret", "0123456789abcdef", "--token-secret",
         "fedcba9876543210");
    ARGS("bad-token-secret-file-missing.txt", "--token-secret-file", "/nonexistent/weft/secret");
    ARGS("bad-token-secret-file-dir.txt", "--token-secret-file=/");
    ARGS("bad-origin-path.txt", "--allow-origin", "https://docs.example.com/path");
    ARGS("bad-origin-no-scheme.txt", "--allow-origin", "docs.example.com");
    ARGS("bad-tls-cert-alone.txt", "--tls-cert", "cert.pem");
    ARGS("bad-rate-zero.txt", "--max-messages-per-second=0");
    ARGS("bad-document-bytes-zero.txt", "--max-document-bytes", "0");
    ARGS("ok-max-documents.txt", "--max-documents=16777216");
    ARGS("bad-max-documents-zero.txt", "--max-documents", "0");
}

int main(int argc, char **argv)
{
    const char *which;

    if (argc == 2) {
        which = "apply_update";
        out_dir = argv[1];
    } else if (argc == 3) {
        which = argv[1];
        out_dir = argv[2];
    } else {
        fprintf(stderr, "usage: make_corpus [apply_update|load|lz|srv_config] DIR\n");
        return 2;
    }
    if (strcmp(which, "apply_update") == 0)
        corpus_apply_update();
    else if (strcmp(which, "load") == 0)
        corpus_load();
    else if (strcmp(which, "lz") == 0)
        corpus_lz();
    else if (strcmp(which, "srv_config") == 0)
        corpus_srv_config();
    else {
        fprintf(stderr, "make_corpus: unknown corpus '%s'\n", which);
        return 2;
    }
    return 0;
}
