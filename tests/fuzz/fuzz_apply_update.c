/* SPDX-License-Identifier: MIT */
/*
 * fuzz_apply_update.c: libFuzzer target for crdt_doc_apply_update(). Each input
 * is applied as update bytes to a document with fixed content from two clients
 * and one held operation; fuzz_apply_update_check.h states and checks the
 * properties (an error leaves the document unchanged; an accepted update leaves
 * a consistent document that round-trips through its encoded state, applies
 * idempotently and still accepts valid updates). A violated property aborts with
 * its description. Build with -DFUZZ=ON (clang); seed corpus in
 * tests/fuzz/corpus/apply_update/ (also replayed by tests/crdt/test_corpus.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_apply_update_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bad = fuzz_apply_update_check(data, size);
    if (bad != NULL) {
        fprintf(stderr, "fuzz_apply_update: %s (input of %zu bytes)\n", bad, size);
        abort();
    }
    return 0;
}
