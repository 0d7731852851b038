/* SPDX-License-Identifier: MIT */
/*
 * lz.h: the compressor for the text stored in document snapshots (module
 * internal: included by the files of crdt/ and white-box tests only). It is an LZ77 coder
 * with a 1 MiB window followed by canonical Huffman coding in blocks, in weft's
 * own stream format, described at the top of lz.c. Both functions are pure: they
 * keep no state between calls and may run concurrently on different buffers.
 */
#ifndef WEFT_CRDT_LZ_H
#define WEFT_CRDT_LZ_H

#include "crdt_internal.h"

/*
 * Appends the compressed form of src[0..n) to *out, growing it with
 * crdt__buf_reserve(); `out` must have been set up by crdt__buf_init() (its
 * existing bytes are kept) and stays NUL-terminated. Temporary memory (at most
 * about 5 MiB, less for small inputs) comes from `a` and is freed before
 * returning. The stream for n == 0 is empty. The stream never exceeds
 * n + n / 1024 + 8 bytes (incompressible input is stored as raw blocks). The
 * output depends only on src[0..n) (not on the allocator or the machine).
 * Returns 0, or CRDT_ENOMEM, in which case out->len is as it was on entry.
 */
int crdt__lz_compress(const crdt_alloc_t *a, const uint8_t *src, size_t n, crdt_buf_t *out);

/*
 * The same with a choice of effort: CRDT__LZ_BEST (what crdt__lz_compress()
 * does: deep match search, lazy matching) or CRDT__LZ_FAST (a few candidates
 * per position, the first match taken: several times faster, a larger
 * stream). Both write the one format crdt__lz_decompress() reads.
 */
#define CRDT__LZ_BEST 0
#define CRDT__LZ_FAST 1
int crdt__lz_compress_ex(const crdt_alloc_t *a, const uint8_t *src, size_t n, int effort,
                         crdt_buf_t *out);

/*
 * Decompresses exactly dst_len bytes from the stream src[0..n) into dst (which
 * must not overlap src). Returns 0, or CRDT_EMALFORMED if the stream is corrupt
 * or truncated, has trailing bytes, or does not produce exactly dst_len bytes;
 * dst's contents are then unspecified. Never reads or writes outside src[0..n)
 * and dst[0..dst_len), allocates nothing (its tables, about 33 KiB, are on the
 * stack) and runs in time linear in n + dst_len.
 */
int crdt__lz_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_len);

/*
 * A stream of n bytes never decompresses to more than n * CRDT__LZ_MAX_RATIO
 * bytes: the longest match, 65538 bytes, can cost as little as 15 bits. Long
 * runs really do get close (4 MiB of one byte compress to 150 bytes), so a
 * reader may reject a declared size above this bound before allocating, but
 * no lower one.
 */
#define CRDT__LZ_MAX_RATIO 34954

#endif /* WEFT_CRDT_LZ_H */
