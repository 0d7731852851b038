/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.h: a crdt_alloc_t for tests. It counts live bytes and live blocks,
 * checks that the engine gives back the same size it was handed for every block
 * (a mismatch aborts the test program), and can be told to fail one allocation
 * (malloc or realloc) to exercise the engine's out-of-memory paths, as in STYLE.md
 * §9. Each test_alloc_t is independent; one must only be used by one thread at a
 * time, like the documents it serves.
 */
#ifndef WEFT_TEST_ALLOC_H
#define WEFT_TEST_ALLOC_H

#include <stddef.h>

#include "crdt.h"

/*
 * Counters are public for reading; change them only through the functions below.
 * Pass `&a->alloc` wherever the engine wants a `const crdt_alloc_t *`; the
 * test_alloc_t must outlive every document and buffer made with it.
 */
typedef struct {
    crdt_alloc_t alloc;
    size_t live_bytes;      /* bytes requested and not yet freed */
    size_t live_blocks;     /* blocks allocated and not yet freed */
    size_t peak_bytes;      /* highest live_bytes seen */
    size_t calls;           /* malloc and realloc calls so far, failed or not */
    size_t failures;        /* calls failed on purpose so far */
    size_t zero_size_calls; /* malloc/realloc asked for 0 bytes (crdt.h promises never) */
    long _countdown;        /* calls left before the one that fails; < 0: none fails */
} test_alloc_t;

/* Sets up `a` with all counters zero and no failure planned. */
void test_alloc_init(test_alloc_t *a);

/*
 * Plans one failure: the next `n` malloc/realloc calls succeed and the call after
 * them returns NULL (n = 0 fails the very next one); later calls succeed again.
 * n < 0 cancels a planned failure. Typical loop (STYLE.md §9):
 *     for (n = 0;; n++) { test_alloc_fail_after(&a, n); size_t f = a.failures;
 *         rc = operation(); if (a.failures == f) break; check unchanged; }
 */
void test_alloc_fail_after(test_alloc_t *a, long n);

/* Bytes currently allocated through `a` (0 once everything has been freed). */
size_t test_alloc_live_bytes(const test_alloc_t *a);

/* After a test: 0 if nothing is still allocated and no call asked for 0
 * bytes; otherwise says which on stderr and returns -1 (a cmocka teardown
 * failure). */
int test_alloc_check_clean(const test_alloc_t *a);

#endif /* WEFT_TEST_ALLOC_H */
