/* SPDX-License-Identifier: MIT */
/*
 * alloc.c: memory for crdt/. Every allocation of a document goes through its
 * crdt_alloc_t and is counted in doc->mem; pools are growable arrays reserved
 * ahead of a change so the change itself never allocates. Also holds the
 * returned-buffer helpers, the checked byte reader and crdt_strerror().
 */
#include "crdt_internal.h"

#include <stdlib.h>

static void *libc_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_realloc(void *ctx, void *ptr, size_t old_size, size_t new_size)
{
    (void)ctx;
    (void)old_size;
    return realloc(ptr, new_size);
}

static void libc_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size;
    free(ptr);
}

const crdt_alloc_t crdt__libc_alloc = {libc_malloc, libc_realloc, libc_free, NULL};

void *crdt__malloc(crdt_doc_t *doc, size_t size)
{
    void *p = doc->alloc.malloc(doc->alloc.ctx, size);
    if (p)
        doc->mem += size;
    return p;
}

void *crdt__realloc(crdt_doc_t *doc, void *ptr, size_t old_size, size_t new_size)
{
    void *p;
    if (ptr == NULL)
        return crdt__malloc(doc, new_size);
    p = doc->alloc.realloc(doc->alloc.ctx, ptr, old_size, new_size);
    if (p)
        doc->mem = doc->mem - old_size + new_size;
    return p;
}

void crdt__free(crdt_doc_t *doc, void *ptr, size_t size)
{
    if (ptr == NULL)
        return;
    doc->alloc.free(doc->alloc.ctx, ptr, size);
    doc->mem -= size;
}

void *crdt__tmp_alloc(const crdt_alloc_t *alloc, size_t size)
{
    return alloc->malloc(alloc->ctx, size ? size : 1);
}

void crdt__tmp_free(const crdt_alloc_t *alloc, void *ptr, size_t size)
{
    if (ptr)
        alloc->free(alloc->ctx, ptr, size ? size : 1);
}

/* Grows a pool so that `extra` more elements fit, by at least a quarter of its
 * size so that appends are amortized O(1) while little room sits unused,
 * but never past `max` elements (CRDT_ELIMIT if they would not fit).
 * Indexes stay valid; pointers do not. */
int crdt__pool_reserve_max(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem, size_t extra,
                           size_t max)
{
    size_t want = (size_t)pool->len + extra, cap;
    void *p;
    assert(max <= (size_t)UINT32_MAX - 1);
    if (want <= pool->cap)
        return 0;
    if (want > max || want > SIZE_MAX / elem / 2)
        return CRDT_ELIMIT;
    cap = (size_t)pool->cap + pool->cap / 4;
    if (cap < want)
        cap = want;
    if (cap < 8)
        cap = 8;
    if (cap > max)
        cap = max;
    p = crdt__realloc(doc, pool->base, (size_t)pool->cap * elem, cap * elem);
    if (p == NULL)
        return CRDT_ENOMEM;
    pool->base = p;
    pool->cap = (uint32_t)cap;
    return 0;
}

int crdt__pool_reserve(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem, size_t extra)
{
    return crdt__pool_reserve_max(doc, pool, elem, extra, (size_t)UINT32_MAX - 1);
}

/* Gives back most of a pool's unused room after a large reservation (room for
 * one leaf per inserted item, say): down to a quarter over its length once it
 * is more than about half over. Growing back costs an apply at least a quarter
 * of the pool's length in items, so the copies stay amortized. A failed
 * shrink keeps the larger block, which is harmless. */
void crdt__pool_shrink(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem)
{
    size_t cap = (size_t)pool->len + pool->len / 4 + 8;
    void *p;
    if (pool->cap <= cap + cap / 4 || pool->base == NULL)
        return;
    p = doc->alloc.realloc(doc->alloc.ctx, pool->base, (size_t)pool->cap * elem, cap * elem);
    if (p == NULL)
        return;
    doc->mem = doc->mem - (size_t)pool->cap * elem + cap * elem;
    pool->base = p;
    pool->cap = (uint32_t)cap;
}

void crdt__pool_dispose(crdt_doc_t *doc, crdt__pool_t *pool, size_t elem)
{
    crdt__free(doc, pool->base, (size_t)pool->cap * elem);
    memset(pool, 0, sizeof(*pool));
}

int crdt__buf_init(const crdt_alloc_t *alloc, crdt_buf_t *buf, size_t cap)
{
    memset(buf, 0, sizeof(*buf));
    buf->_alloc = alloc;
    if (cap < 16)
        cap = 16;
    buf->base = alloc->malloc(alloc->ctx, cap);
    if (buf->base == NULL)
        return CRDT_ENOMEM;
    buf->_cap = cap;
    return 0;
}

/* Room for `extra` more bytes plus the terminating NUL. */
int crdt__buf_reserve(crdt_buf_t *buf, size_t extra)
{
    size_t want = buf->len + extra + 1, cap;
    uint8_t *p;
    if (want <= buf->_cap)
        return 0;
    cap = buf->_cap + buf->_cap / 2;
    if (cap < want)
        cap = want;
    p = buf->_alloc->realloc(buf->_alloc->ctx, buf->base, buf->_cap, cap);
    if (p == NULL)
        return CRDT_ENOMEM;
    buf->base = p;
    buf->_cap = cap;
    return 0;
}

void crdt_buf_dispose(crdt_buf_t *buf)
{
    if (buf == NULL)
        return;
    if (buf->base && buf->_alloc)
        buf->_alloc->free(buf->_alloc->ctx, buf->base, buf->_cap);
    memset(buf, 0, sizeof(*buf));
}

uint64_t crdt__get_varint_slow(crdt__reader_t *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b = crdt__get_u8(r);
        if (r->err)
            return 0;
        if (shift == 63 && b > 1) {
            r->err = CRDT_EMALFORMED;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->err = CRDT_EMALFORMED;
    return 0;
}

uint32_t crdt__get_u32v_slow(crdt__reader_t *r)
{
    uint64_t v = crdt__get_varint_slow(r);
    if (v > UINT32_MAX) {
        if (!r->err)
            r->err = CRDT_ELIMIT;
        return 0;
    }
    return (uint32_t)v;
}

const char *crdt_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define CRDT__ERRNO_CASE(name, value, text)                                                        \
    case CRDT_##name:                                                                              \
        return text;
        CRDT_ERRNO_MAP(CRDT__ERRNO_CASE)
#undef CRDT__ERRNO_CASE
    default:
        return "unknown error";
    }
}
