/* SPDX-License-Identifier: MIT */
/*
 * make_corpus.c: writes the seed corpus of the crdt_doc_apply_update() fuzz
 * target (small valid and invalid updates, most of them about the fixed content
 * of fuzz_apply_update_check.h) into a directory. It is not part of the build:
 * the files it wrote are committed in tests/fuzz/corpus/apply_update/. To
 * regenerate them:
 *
 *   cc -std=c11 -Icrdt tests/fuzz/make_corpus.c build/libcrdt.a -o build/make_corpus
 *   build/make_corpus tests/fuzz/corpus/apply_update
 *
 * Inputs found by fuzzing are added to that directory by hand, named
 * regress-<what>.bin; this program does not touch them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_apply_update_check.h"

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

int main(int argc, char **argv)
{
    crdt_doc_t *r, *doc;
    crdt_buf_t u, sv, follow_up;
    bytes_t w;
    int err;

    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];

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
    return 0;
}
