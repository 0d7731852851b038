/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c: the counting, failure-injecting allocator declared in
 * test_alloc.h. Each block carries a small header holding its size and a marker,
 * so frees and reallocs with the wrong size or of foreign pointers are caught at
 * once (the program aborts with a message) instead of corrupting the counts.
 */
#include "test_alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE_MARK ((size_t)0x7e57a110u)
#define DEAD_MARK ((size_t)0xdeadb10cu)

/* Sits before each block; its size keeps the block aligned like malloc's. */
typedef union {
    struct {
        size_t size;
        size_t mark;
    } h;
    max_align_t align;
} header_t;

static void die(const char *what, size_t expected, size_t got)
{
    fprintf(stderr, "test_alloc: %s (block of %zu bytes, caller said %zu)\n", what, expected, got);
    abort();
}

/* Returns the header of a block after checking it is live and of the given size. */
static header_t *header_of(void *ptr, size_t size)
{
    header_t *h = (header_t *)ptr - 1;

    if (h->h.mark != LIVE_MARK)
        die(h->h.mark == DEAD_MARK ? "block freed twice" : "pointer not from this allocator", 0,
            size);
    if (h->h.size != size)
        die("size mismatch", h->h.size, size);
    return h;
}

/* Counts a call and says whether it is the one planned to fail. */
static int should_fail(test_alloc_t *a)
{
    a->calls++;
    if (a->_countdown < 0)
        return 0;
    if (a->_countdown-- > 0)
        return 0;
    a->failures++;
    return 1;
}

static void count(test_alloc_t *a, size_t add, size_t sub)
{
    a->live_bytes = a->live_bytes - sub + add;
    if (a->live_bytes > a->peak_bytes)
        a->peak_bytes = a->live_bytes;
}

static void *ta_malloc(void *ctx, size_t size)
{
    test_alloc_t *a = ctx;
    header_t *h;

    a->zero_size_calls += size == 0;
    if (should_fail(a) || size > SIZE_MAX - sizeof *h)
        return NULL;
    h = malloc(sizeof *h + size);
    if (h == NULL)
        return NULL;
    h->h.size = size;
    h->h.mark = LIVE_MARK;
    a->live_blocks++;
    count(a, size, 0);
    return h + 1;
}

static void *ta_realloc(void *ctx, void *ptr, size_t old_size, size_t new_size)
{
    test_alloc_t *a = ctx;
    header_t *h, *n;

    if (ptr == NULL)
        return ta_malloc(ctx, new_size);
    a->zero_size_calls += new_size == 0 || old_size == 0;
    h = header_of(ptr, old_size);
    if (should_fail(a) || new_size > SIZE_MAX - sizeof *h)
        return NULL;
    n = realloc(h, sizeof *n + new_size);
    if (n == NULL)
        return NULL;
    n->h.size = new_size;
    count(a, new_size, old_size);
    return n + 1;
}

static void ta_free(void *ctx, void *ptr, size_t size)
{
    test_alloc_t *a = ctx;
    header_t *h;

    if (ptr == NULL)
        return;
    h = header_of(ptr, size);
    h->h.mark = DEAD_MARK;
    a->live_blocks--;
    count(a, 0, size);
    free(h);
}

void test_alloc_init(test_alloc_t *a)
{
    a->alloc.malloc = ta_malloc;
    a->alloc.realloc = ta_realloc;
    a->alloc.free = ta_free;
    a->alloc.ctx = a;
    a->live_bytes = 0;
    a->live_blocks = 0;
    a->peak_bytes = 0;
    a->calls = 0;
    a->failures = 0;
    a->zero_size_calls = 0;
    a->_countdown = -1;
}

void test_alloc_fail_after(test_alloc_t *a, long n)
{
    a->_countdown = n < 0 ? -1 : n;
}

size_t test_alloc_live_bytes(const test_alloc_t *a)
{
    return a->live_bytes;
}

int test_alloc_check_clean(const test_alloc_t *a)
{
    if (a->live_bytes != 0) {
        fprintf(stderr, "%zu bytes leaked\n", a->live_bytes);
        return -1;
    }
    if (a->zero_size_calls != 0) {
        fprintf(stderr, "the engine made %zu allocator calls with size 0\n", a->zero_size_calls);
        return -1;
    }
    return 0;
}
