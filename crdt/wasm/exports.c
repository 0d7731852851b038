/* SPDX-License-Identifier: MIT */
/*
 * exports.c: the JavaScript face of the crdt/ engine when it is built to
 * WebAssembly (scripts/build-wasm.sh links it with the engine's sources into
 * build/wasm/crdt.wasm). Each export is a thin wrapper over one crdt.h function; it
 * adds no behaviour of its own beyond checking for NULL handles and turning C types
 * into ones JavaScript can pass through a wasm32 call. This file uses crdt.h only
 * and holds no global state, so one wasm instance can hold any number of documents.
 *
 * Conventions for JavaScript callers:
 *
 * - Start-up: the module is a WASI reactor; call `_initialize()` once after
 *   instantiation. It needs no imports: instantiate with `{}`.
 * - Numbers: pointers, sizes, indexes and lengths are wasm32 i32 values. JavaScript
 *   receives them as signed Numbers, so read unsigned results with `x >>> 0`.
 * - Client ids: crdt.h's 64-bit client id is passed as two uint32 halves
 *   `(hi, lo)`, client = hi * 2^32 + lo, so no BigInt is involved.
 * - Indexes and lengths count UTF-16 code units, like JavaScript strings (an emoji
 *   counts 2; an index inside one is rejected). Text goes in and comes out as UTF-8.
 * - Bytes in: `p = weft_alloc(n)`, copy into `new Uint8Array(memory.buffer, p, n)`,
 *   make the call, then `weft_free(p)`. weft_alloc(0) returns a valid pointer.
 * - Bytes out: functions that produce bytes write them into a buffer handle made
 *   with `weft_buf_new()`. Read them with `weft_buf_base(b)` and `weft_buf_len(b)`
 *   and copy them out (`.slice()`): any later call may grow memory and detach
 *   views. A wrapper first releases whatever the handle held, so one handle can be
 *   reused for many calls; `weft_buf_reset(b)` releases the bytes early (a large
 *   encoded state, say) and `weft_buf_free(b)` releases the handle too. Where a handle is
 *   optional (the update of insert, delete, restore) 0 means "not wanted".
 * - Errors: functions returning int return 0 (or a non-negative result where
 *   stated) on success and a negative CRDT_E* code from crdt.h on failure;
 *   `weft_strerror(code)` returns a NUL-terminated UTF-8 description.
 * - Relative positions travel as their crdt_relpos_encode() bytes (at most
 *   `weft_relpos_max()` bytes), which is also what a client sends to its peers.
 * - Comparisons (weft_doc_compare) come out as a list of spans in one buffer, see
 *   there.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crdt.h"

#if defined(__wasm__)
#define WEFT_EXPORT(name) __attribute__((export_name(#name)))
#else
#define WEFT_EXPORT(name)
#endif

/* ---- memory ------------------------------------------------------------- */

/* Allocates `size` bytes (at least 1) for JavaScript to fill. Returns 0 on failure. */
WEFT_EXPORT(weft_alloc) void *weft_alloc(size_t size);
/* Releases memory from weft_alloc(). weft_free(0) does nothing. */
WEFT_EXPORT(weft_free) void weft_free(void *ptr);

/* A new, empty buffer handle (a crdt_buf_t). Returns 0 on failure. */
WEFT_EXPORT(weft_buf_new) crdt_buf_t *weft_buf_new(void);
/* Releases the bytes a handle holds, keeping the handle for reuse. */
WEFT_EXPORT(weft_buf_reset) void weft_buf_reset(crdt_buf_t *buf);
/* Releases a buffer handle and the bytes it holds. weft_buf_free(0) does nothing. */
WEFT_EXPORT(weft_buf_free) void weft_buf_free(crdt_buf_t *buf);
/* Address of the bytes a handle holds (0 while it holds none). */
WEFT_EXPORT(weft_buf_base) uint8_t *weft_buf_base(const crdt_buf_t *buf);
/* Number of bytes a handle holds. */
WEFT_EXPORT(weft_buf_len) size_t weft_buf_len(const crdt_buf_t *buf);

/* Static NUL-terminated description of an error code. */
WEFT_EXPORT(weft_strerror) const char *weft_strerror(int err);

/* ---- documents ---------------------------------------------------------- */

/* A new empty document with client id (hi, lo). Returns 0 on failure (out of memory). */
WEFT_EXPORT(weft_doc_new) crdt_doc_t *weft_doc_new(uint32_t client_hi, uint32_t client_lo);
/*
 * A document with client id (hi, lo) loaded from encoded state or update bytes. On
 * success stores the document's address in the 4 bytes at `out` and returns 0.
 */
WEFT_EXPORT(weft_doc_load)
int weft_doc_load(uint32_t client_hi, uint32_t client_lo, const uint8_t *data, size_t len,
                  crdt_doc_t **out);
/* Frees a document. weft_doc_free(0) does nothing. */
WEFT_EXPORT(weft_doc_free) void weft_doc_free(crdt_doc_t *doc);
/* The two halves of the document's client id. */
WEFT_EXPORT(weft_doc_client_hi) uint32_t weft_doc_client_hi(const crdt_doc_t *doc);
WEFT_EXPORT(weft_doc_client_lo) uint32_t weft_doc_client_lo(const crdt_doc_t *doc);

/* Visible length in UTF-16 units, and in UTF-8 bytes. */
WEFT_EXPORT(weft_doc_length) size_t weft_doc_length(const crdt_doc_t *doc);
WEFT_EXPORT(weft_doc_utf8_length) size_t weft_doc_utf8_length(const crdt_doc_t *doc);
/* Current text (UTF-8) into `out`. */
WEFT_EXPORT(weft_doc_text) int weft_doc_text(const crdt_doc_t *doc, crdt_buf_t *out);

/* Inserts `len` bytes of UTF-8 at `index`; the change's update bytes into `update` (or 0). */
WEFT_EXPORT(weft_doc_insert)
int weft_doc_insert(crdt_doc_t *doc, size_t index, const char *text, size_t len,
                    crdt_buf_t *update);
/* Deletes `len` UTF-16 units at `index`; the change's update bytes into `update` (or 0). */
WEFT_EXPORT(weft_doc_delete)
int weft_doc_delete(crdt_doc_t *doc, size_t index, size_t len, crdt_buf_t *update);
/* Merges update bytes from another replica. */
WEFT_EXPORT(weft_doc_apply_update)
int weft_doc_apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len);
/* Number of operations held back because their dependencies are missing. */
WEFT_EXPORT(weft_doc_pending) size_t weft_doc_pending(const crdt_doc_t *doc);

/* Encoded state vector (also a version) into `out`. */
WEFT_EXPORT(weft_doc_state_vector)
int weft_doc_state_vector(const crdt_doc_t *doc, crdt_buf_t *out);
/* The update a peer with state vector `sv` (0/0: an empty peer) lacks, into `out`. */
WEFT_EXPORT(weft_doc_diff)
int weft_doc_diff(const crdt_doc_t *doc, const uint8_t *sv, size_t sv_len, crdt_buf_t *out);
/* The whole document, for weft_doc_load() or weft_doc_apply_update(), into `out`. */
WEFT_EXPORT(weft_doc_encode_state)
int weft_doc_encode_state(const crdt_doc_t *doc, crdt_buf_t *out);

/* Text (UTF-8) at an earlier version (an encoded state vector) into `out`. */
WEFT_EXPORT(weft_doc_text_at)
int weft_doc_text_at(const crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *out);
/* Restores an earlier version as a new local change; its update bytes into `update` (or 0). */
WEFT_EXPORT(weft_doc_restore)
int weft_doc_restore(crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *update);

/*
 * Compares the text at version `from` (`from_len` bytes; 0/0: the empty document)
 * with the text at version `to` (0/0: the current state; a non-NULL `to` with
 * `to_len` 0 is the empty version) with crdt_doc_compare(), and writes the spans,
 * in document order, into `out`, one record after another (little-endian):
 *
 *     kind   u8    0 kept, 1 inserted, 2 deleted (CRDT_SPAN_*)
 *     author u64   crdt_span_t's author (0: none)
 *     units  u32   length in UTF-16 units
 *     len    u32   length in UTF-8 bytes
 *     text   len bytes of UTF-8
 *
 * `out` may end up empty (both versions empty). Returns 0 or crdt_doc_compare()'s
 * errors; CRDT_ELIMIT for a span over 2^32 - 1 units or bytes.
 */
WEFT_EXPORT(weft_doc_compare)
int weft_doc_compare(const crdt_doc_t *doc, const uint8_t *from, size_t from_len, const uint8_t *to,
                     size_t to_len, crdt_buf_t *out);
/* Size of a span record's header in weft_doc_compare's output (17 bytes). */
WEFT_EXPORT(weft_span_header_size) size_t weft_span_header_size(void);

/* ---- relative positions -------------------------------------------------- */

/* Size JavaScript must reserve for an encoded relative position (CRDT_RELPOS_MAX). */
WEFT_EXPORT(weft_relpos_max) size_t weft_relpos_max(void);
/*
 * Encodes the relative position of `index` (assoc: -1 before, 1 after) into the
 * weft_relpos_max() bytes at `out`. Returns the encoded length (> 0) or an error.
 */
WEFT_EXPORT(weft_doc_relpos_from_index)
int weft_doc_relpos_from_index(const crdt_doc_t *doc, size_t index, int assoc, uint8_t *out);
/*
 * Current index of an encoded relative position. Returns the index (>= 0) or an
 * error (CRDT_EMALFORMED, CRDT_ENOTFOUND; CRDT_ELIMIT past 2^31 - 1).
 */
WEFT_EXPORT(weft_doc_relpos_to_index)
int weft_doc_relpos_to_index(const crdt_doc_t *doc, const uint8_t *data, size_t len);

/* ---- diagnostics ---------------------------------------------------------- */

/* Bytes of memory the document holds. */
WEFT_EXPORT(weft_doc_mem_bytes) size_t weft_doc_mem_bytes(const crdt_doc_t *doc);
/* Verifies every internal invariant: 0 or CRDT_EINTERNAL (O(n), for tests). */
WEFT_EXPORT(weft_doc_check) int weft_doc_check(const crdt_doc_t *doc);

/* ------------------------------------------------------------------------- */

/* A wasm32 client id is split into halves because a uint64 parameter would be a BigInt. */
static uint64_t client_id(uint32_t hi, uint32_t lo)
{
    return ((uint64_t)hi << 32) | lo;
}

/*
 * Output handles are reused by JavaScript, so whatever a handle still holds is
 * released before the engine writes to it (the engine overwrites without freeing).
 */
static crdt_buf_t *reset(crdt_buf_t *buf)
{
    if (buf != NULL)
        crdt_buf_dispose(buf);
    return buf;
}

void *weft_alloc(size_t size)
{
    return malloc(size > 0 ? size : 1);
}

void weft_free(void *ptr)
{
    free(ptr);
}

crdt_buf_t *weft_buf_new(void)
{
    return calloc(1, sizeof(crdt_buf_t));
}

void weft_buf_reset(crdt_buf_t *buf)
{
    reset(buf);
}

void weft_buf_free(crdt_buf_t *buf)
{
    if (buf == NULL)
        return;
    crdt_buf_dispose(buf);
    free(buf);
}

uint8_t *weft_buf_base(const crdt_buf_t *buf)
{
    return buf != NULL ? buf->base : NULL;
}

size_t weft_buf_len(const crdt_buf_t *buf)
{
    return buf != NULL ? buf->len : 0;
}

const char *weft_strerror(int err)
{
    return crdt_strerror(err);
}

crdt_doc_t *weft_doc_new(uint32_t client_hi, uint32_t client_lo)
{
    crdt_doc_t *doc = NULL;

    if (crdt_doc_new(client_id(client_hi, client_lo), NULL, &doc) != 0)
        return NULL;
    return doc;
}

int weft_doc_load(uint32_t client_hi, uint32_t client_lo, const uint8_t *data, size_t len,
                  crdt_doc_t **out)
{
    if (out == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    return crdt_doc_load(client_id(client_hi, client_lo), NULL, data, len, out);
}

void weft_doc_free(crdt_doc_t *doc)
{
    crdt_doc_free(doc);
}

uint32_t weft_doc_client_hi(const crdt_doc_t *doc)
{
    return doc != NULL ? (uint32_t)(crdt_doc_client(doc) >> 32) : 0;
}

uint32_t weft_doc_client_lo(const crdt_doc_t *doc)
{
    return doc != NULL ? (uint32_t)crdt_doc_client(doc) : 0;
}

size_t weft_doc_length(const crdt_doc_t *doc)
{
    return doc != NULL ? crdt_doc_length(doc) : 0;
}

size_t weft_doc_utf8_length(const crdt_doc_t *doc)
{
    return doc != NULL ? crdt_doc_utf8_length(doc) : 0;
}

int weft_doc_text(const crdt_doc_t *doc, crdt_buf_t *out)
{
    if (doc == NULL || out == NULL)
        return CRDT_EINVAL;
    return crdt_doc_text(doc, reset(out));
}

int weft_doc_insert(crdt_doc_t *doc, size_t index, const char *text, size_t len, crdt_buf_t *update)
{
    if (doc == NULL || (text == NULL && len > 0))
        return CRDT_EINVAL;
    return crdt_doc_insert(doc, index, text != NULL ? text : "", len, reset(update));
}

int weft_doc_delete(crdt_doc_t *doc, size_t index, size_t len, crdt_buf_t *update)
{
    if (doc == NULL)
        return CRDT_EINVAL;
    return crdt_doc_delete(doc, index, len, reset(update));
}

int weft_doc_apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len)
{
    if (doc == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    return crdt_doc_apply_update(doc, data, len);
}

size_t weft_doc_pending(const crdt_doc_t *doc)
{
    return doc != NULL ? crdt_doc_pending(doc) : 0;
}

int weft_doc_state_vector(const crdt_doc_t *doc, crdt_buf_t *out)
{
    if (doc == NULL || out == NULL)
        return CRDT_EINVAL;
    return crdt_doc_state_vector(doc, reset(out));
}

int weft_doc_diff(const crdt_doc_t *doc, const uint8_t *sv, size_t sv_len, crdt_buf_t *out)
{
    if (doc == NULL || out == NULL || (sv == NULL && sv_len > 0))
        return CRDT_EINVAL;
    return crdt_doc_diff(doc, sv, sv_len, reset(out));
}

int weft_doc_encode_state(const crdt_doc_t *doc, crdt_buf_t *out)
{
    if (doc == NULL || out == NULL)
        return CRDT_EINVAL;
    return crdt_doc_encode_state(doc, reset(out));
}

int weft_doc_text_at(const crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *out)
{
    if (doc == NULL || out == NULL || (version == NULL && version_len > 0))
        return CRDT_EINVAL;
    return crdt_doc_text_at(doc, version, version_len, reset(out));
}

int weft_doc_restore(crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *update)
{
    if (doc == NULL || (version == NULL && version_len > 0))
        return CRDT_EINVAL;
    return crdt_doc_restore(doc, version, version_len, reset(update));
}

/*
 * The comparison's output buffer. Its bytes are owned by a crdt_buf_t like every
 * other output, so JavaScript reads and releases them the same way; the buffer's
 * allocator is libc's through these three functions (no context, no state).
 */
static void *span_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void *span_realloc(void *ctx, void *ptr, size_t old_size, size_t new_size)
{
    (void)ctx;
    (void)old_size;
    return realloc(ptr, new_size);
}

static void span_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size;
    free(ptr);
}

static const crdt_alloc_t span_alloc = {span_malloc, span_realloc, span_free, NULL};

#define SPAN_HEADER 17u

/* Appends `n` bytes to `out`, growing it (with room for the NUL crdt_buf_t promises). */
static int span_append(crdt_buf_t *out, const void *bytes, size_t n)
{
    if (out->len + n + 1 > out->_cap) {
        size_t cap = out->_cap > 0 ? out->_cap : 256;
        uint8_t *grown;

        while (cap < out->len + n + 1) {
            if (cap > SIZE_MAX / 2)
                return CRDT_ELIMIT;
            cap *= 2;
        }
        grown = out->base == NULL ? span_malloc(NULL, cap)
                                  : span_realloc(NULL, out->base, out->_cap, cap);
        if (grown == NULL)
            return CRDT_ENOMEM;
        out->base = grown;
        out->_cap = cap;
        out->_alloc = &span_alloc;
    }
    if (n > 0)
        memcpy(out->base + out->len, bytes, n);
    out->len += n;
    out->base[out->len] = 0;
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int span_record(void *ctx, const crdt_span_t *span)
{
    crdt_buf_t *out = ctx;
    uint8_t head[SPAN_HEADER];
    int err;

    if (span->units > UINT32_MAX || span->len > UINT32_MAX)
        return CRDT_ELIMIT;
    head[0] = (uint8_t)span->kind;
    put_le(head + 1, span->author, 8);
    put_le(head + 9, span->units, 4);
    put_le(head + 13, span->len, 4);
    err = span_append(out, head, sizeof head);
    if (err == 0)
        err = span_append(out, span->text, span->len);
    return err;
}

int weft_doc_compare(const crdt_doc_t *doc, const uint8_t *from, size_t from_len, const uint8_t *to,
                     size_t to_len, crdt_buf_t *out)
{
    crdt_buf_t spans = {0};
    int err;

    if (doc == NULL || out == NULL || (from == NULL && from_len > 0) || (to == NULL && to_len > 0))
        return CRDT_EINVAL;
    err = crdt_doc_compare(doc, from, from_len, to, to_len, span_record, &spans);
    if (err != 0) {
        crdt_buf_dispose(&spans);
        return err;
    }
    *reset(out) = spans;
    return 0;
}

size_t weft_span_header_size(void)
{
    return SPAN_HEADER;
}

size_t weft_relpos_max(void)
{
    return CRDT_RELPOS_MAX;
}

int weft_doc_relpos_from_index(const crdt_doc_t *doc, size_t index, int assoc, uint8_t *out)
{
    crdt_relpos_t pos;
    int err;

    if (doc == NULL || out == NULL)
        return CRDT_EINVAL;
    err = crdt_doc_relpos_from_index(doc, index, assoc, &pos);
    if (err != 0)
        return err;
    return (int)crdt_relpos_encode(&pos, out);
}

int weft_doc_relpos_to_index(const crdt_doc_t *doc, const uint8_t *data, size_t len)
{
    crdt_relpos_t pos;
    size_t index;
    int err;

    if (doc == NULL || (data == NULL && len > 0))
        return CRDT_EINVAL;
    err = crdt_relpos_decode(data, len, &pos);
    if (err != 0)
        return err;
    err = crdt_doc_relpos_to_index(doc, &pos, &index);
    if (err != 0)
        return err;
    if (index > INT32_MAX)
        return CRDT_ELIMIT;
    return (int)index;
}

size_t weft_doc_mem_bytes(const crdt_doc_t *doc)
{
    return doc != NULL ? crdt_doc_mem_bytes(doc) : 0;
}

int weft_doc_check(const crdt_doc_t *doc)
{
    if (doc == NULL)
        return CRDT_EINVAL;
    return crdt_doc_check(doc);
}
