/* SPDX-License-Identifier: MIT */
/*
 * fuzz_load.c: libFuzzer target for crdt_doc_load_trusted(), which builds a
 * document directly from an encoded state (format 2) without integrating
 * operations. Whatever the input, loading must not crash; when it succeeds the
 * document must pass crdt_doc_check(), take local edits, and survive a round
 * trip through crdt_doc_encode_state() with the same text and state vector; and
 * crdt_doc_load() (which integrates) must accept the same bytes.
 * Build with -DFUZZ=ON (clang). Seed inputs: encoded states, e.g. made with
 * crdt_doc_encode_state() (tests/fuzz/corpus/load/).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok, const char *what, size_t size)
{
    if (!ok) {
        fprintf(stderr, "fuzz_load: %s (input of %zu bytes)\n", what, size);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crdt_doc_t *d = NULL, *e = NULL;
    crdt_buf_t t1 = {0}, t2 = {0}, st = {0}, sv1 = {0}, sv2 = {0};
    if (crdt_doc_load_trusted(0x5eed, NULL, data, size, &d) != 0)
        return 0;
    must(crdt_doc_check(d) == 0, "loaded document fails crdt_doc_check", size);
    must(crdt_doc_text(d, &t1) == 0 && crdt_doc_state_vector(d, &sv1) == 0, "read back", size);
    must(crdt_doc_encode_state(d, &st) == 0, "encode_state of a loaded document", size);
    must(crdt_doc_load_trusted(0x5eee, NULL, st.base, st.len, &e) == 0, "reload of its own state",
         size);
    must(crdt_doc_text(e, &t2) == 0 && crdt_doc_state_vector(e, &sv2) == 0, "read back 2", size);
    must(t1.len == t2.len && memcmp(t1.base, t2.base, t1.len) == 0, "text changed by a round trip",
         size);
    must(sv1.len == sv2.len && memcmp(sv1.base, sv2.base, sv1.len) == 0,
         "state vector changed by a round trip", size);
    must(crdt_doc_insert(d, 0, "x", 1, NULL) == 0, "insert into a loaded document", size);
    if (crdt_doc_length(d) > 1)
        must(crdt_doc_delete(d, 1, 1, NULL) == 0 || crdt_doc_length(d) < 2,
             "delete in a loaded document", size);
    must(crdt_doc_check(d) == 0, "edited document fails crdt_doc_check", size);
    crdt_doc_free(e);
    e = NULL;
    must(crdt_doc_load(0x5eef, NULL, data, size, &e) == 0,
         "crdt_doc_load refuses what crdt_doc_load_trusted accepts", size);
    crdt_buf_dispose(&t1);
    crdt_buf_dispose(&t2);
    crdt_buf_dispose(&st);
    crdt_buf_dispose(&sv1);
    crdt_buf_dispose(&sv2);
    crdt_doc_free(d);
    crdt_doc_free(e);
    return 0;
}
