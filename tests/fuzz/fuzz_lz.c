/* SPDX-License-Identifier: MIT */
/*
 * fuzz_lz.c: libFuzzer target for the snapshot text compressor (crdt/lz.c).
 * The first two input bytes give an output size (little-endian, so at most
 * 64 KiB - 1); the rest is decompressed as a stream into a heap buffer of
 * exactly that size, which must give 0 or CRDT_EMALFORMED and touch nothing
 * outside it (the sanitizers watch). Inputs up to 4 KiB are also compressed,
 * decompressed and compared; and the stream is decompressed again with one byte
 * changed (position and value taken from the input), which reaches deep into
 * the decoder far more often than random bytes do.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lz.h"

/* Inputs up to this size are also round-tripped. */
#define ROUNDTRIP_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Decompresses into a buffer of exactly dst_len bytes; returns the result. */
static int decompress(const uint8_t *src, size_t n, size_t dst_len, uint8_t **out)
{
    uint8_t *dst = malloc(dst_len ? dst_len : 1);
    int rc;

    check(dst != NULL);
    rc = crdt__lz_decompress(src, n, dst, dst_len);
    check(rc == 0 || rc == CRDT_EMALFORMED);
    if (out)
        *out = dst;
    else
        free(dst);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crdt_buf_t b;
    uint8_t *dst;

    if (size >= 2) {
        size_t dst_len = (size_t)data[0] | (size_t)data[1] << 8;
        decompress(data + 2, size - 2, dst_len, NULL);
    }
    if (size > ROUNDTRIP_MAX)
        return 0;

    /* round trip */
    check(crdt__buf_init(&crdt__libc_alloc, &b, 16) == 0);
    check(crdt__lz_compress(&crdt__libc_alloc, data, size, &b) == 0);
    check(b.len <= size + size / 1024 + 8);
    check(decompress(b.base, b.len, size, &dst) == 0);
    check(size == 0 || memcmp(dst, data, size) == 0);
    free(dst);
    if (size > 0)
        check(decompress(b.base, b.len, size - 1, NULL) == CRDT_EMALFORMED);
    check(decompress(b.base, b.len, size + 1, NULL) == CRDT_EMALFORMED);

    /* the fast effort: the same format */
    {
        crdt_buf_t f;
        check(crdt__buf_init(&crdt__libc_alloc, &f, 16) == 0);
        check(crdt__lz_compress_ex(&crdt__libc_alloc, data, size, CRDT__LZ_FAST, &f) == 0);
        check(f.len <= size + size / 1024 + 8);
        check(decompress(f.base, f.len, size, &dst) == 0);
        check(size == 0 || memcmp(dst, data, size) == 0);
        free(dst);
        crdt_buf_dispose(&f);
    }

    /* one changed byte */
    if (size >= 4 && b.len > 0) {
        size_t at = ((size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16) % b.len;
        uint8_t old = b.base[at];
        b.base[at] ^= data[3] ? data[3] : 1;
        decompress(b.base, b.len, size, NULL);
        b.base[at] = old;
    }
    crdt_buf_dispose(&b);
    return 0;
}
