/* SPDX-License-Identifier: MIT */
/*
 * crdt.h: the public interface of weft's text CRDT engine.
 *
 * A crdt_doc_t is one replica of a plain-text document. Local edits (insert and
 * delete at an index) return the update bytes describing them; update bytes from
 * other replicas are merged with crdt_doc_apply_update(). Merging is commutative,
 * associative and idempotent, so replicas that have seen the same updates hold the
 * same text, in whatever order the updates arrived.
 *
 * Model. Every operation has an id (client, clock): `client` is the 64-bit replica
 * id chosen by the caller, `clock` counts that replica's operations (one per
 * inserted or deleted character). Concurrent inserts at one place are ordered with
 * FugueMax, so they never interleave. A version is a state vector (client -> next
 * clock): the engine keeps the whole history, so the text at any version it has
 * seen can be produced, and restored as a new forward edit.
 *
 * Index unit. Every index and length in this API counts UTF-16 code units, the
 * unit browser editors (JavaScript strings) use. A character outside the Basic
 * Multilingual Plane (an emoji, for example) counts 2. An index that falls between
 * the two halves of such a character is rejected with CRDT_EINDEX. Text goes in and
 * comes out as UTF-8.
 *
 * Threads. A document has no locks: one thread at a time may call functions on it;
 * functions taking a const document may run concurrently with each other.
 * There is no global mutable state: any number of documents may live in a process.
 *
 * Memory. The engine allocates only through the crdt_alloc_t given when the
 * document is created (libc by default). Allocation failure is reported as
 * CRDT_ENOMEM and leaves the document exactly as it was. Buffers the engine returns
 * are released with crdt_buf_dispose(), never with free().
 *
 * Errors. Functions that can fail return 0 on success or a negative CRDT_E* code;
 * on failure their output arguments are left untouched.
 */
#ifndef WEFT_CRDT_H
#define WEFT_CRDT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes, -1 .. -99. Generated with crdt_strerror() from one list. */
#define CRDT_ERRNO_MAP(X)                                                                          \
    X(ENOMEM, -1, "out of memory")                                                                 \
    X(EINVAL, -2, "invalid argument")                                                              \
    X(EINDEX, -3, "index out of range or inside a character")                                      \
    X(EUTF8, -4, "text is not valid UTF-8")                                                        \
    X(EMALFORMED, -5, "malformed update bytes")                                                    \
    X(EFORMAT, -6, "unsupported update format version")                                            \
    X(EINVALID, -7, "update refers to operations that are not insertions")                         \
    X(ELIMIT, -8, "a size or clock limit was exceeded")                                            \
    X(ENOTFOUND, -9, "the referenced character is not known to this document")                     \
    X(EVERSION, -10, "version is not one this document has seen")                                  \
    X(EINTERNAL, -11, "internal consistency check failed")

enum crdt_errno {
#define CRDT__ERRNO_ENUM(name, value, text) CRDT_##name = value,
    CRDT_ERRNO_MAP(CRDT__ERRNO_ENUM)
#undef CRDT__ERRNO_ENUM
};

/* Returns a static, human-readable description of an error code (never NULL). */
const char *crdt_strerror(int err);

/*
 * Allocator hook. All three functions receive `ctx`. `realloc` and `free` are told
 * the size of the block; `free` may be given NULL with size 0 and must then do
 * nothing. `malloc`/`realloc` return NULL on failure (and then `realloc` leaves the
 * old block valid). Sizes passed are never 0.
 */
typedef struct crdt_alloc {
    void *(*malloc)(void *ctx, size_t size);
    void *(*realloc)(void *ctx, void *ptr, size_t old_size, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
    void *ctx;
} crdt_alloc_t;

/* Borrowed bytes. */
typedef struct {
    const uint8_t *base;
    size_t len;
} crdt_bytes_t;

/*
 * Bytes the engine allocated for the caller (update bytes, text, state vectors).
 * `base` is NUL-terminated (the NUL is not counted in `len`), so text can be used
 * as a C string. Release with crdt_buf_dispose(); the buffer stays valid after the
 * document that produced it is freed as long as its allocator is still usable.
 */
typedef struct {
    uint8_t *base;
    size_t len;
    size_t _cap;
    const crdt_alloc_t *_alloc;
} crdt_buf_t;

/* Releases a buffer's memory and zeroes it. Safe on a zeroed buffer. */
void crdt_buf_dispose(crdt_buf_t *buf);

typedef struct crdt_doc crdt_doc_t;

/*
 * Creates an empty document whose local operations use replica id `client`.
 * `alloc` may be NULL for libc's allocator; otherwise it must outlive the document
 * and every buffer the document returns. Two replicas editing at the same time
 * must use different client ids (pick them at random).
 * Returns 0 and sets *out, or CRDT_ENOMEM / CRDT_EINVAL (out NULL).
 */
int crdt_doc_new(uint64_t client, const crdt_alloc_t *alloc, crdt_doc_t **out);

/* Frees a document and all it holds. crdt_doc_free(NULL) does nothing. */
void crdt_doc_free(crdt_doc_t *doc);

/* The replica id given at creation. */
uint64_t crdt_doc_client(const crdt_doc_t *doc);

/*
 * Makes later local edits use replica id `client` (the document's history is
 * kept). Use a fresh random id, or one this replica used before: two replicas
 * editing under one id at the same time break convergence. Lets one process
 * give each person's edits their own id (weftd's restores) without reloading
 * the document. Returns 0, CRDT_EINVAL or CRDT_ENOMEM (nothing changed).
 */
int crdt_doc_set_client(crdt_doc_t *doc, uint64_t client);

/* Current length of the visible text in UTF-16 code units. */
size_t crdt_doc_length(const crdt_doc_t *doc);

/* Current length of the visible text in UTF-8 bytes. */
size_t crdt_doc_utf8_length(const crdt_doc_t *doc);

/*
 * Copies the current text (UTF-8) into *out. Returns 0 or CRDT_ENOMEM.
 */
int crdt_doc_text(const crdt_doc_t *doc, crdt_buf_t *out);

/*
 * Inserts `len` bytes of UTF-8 `text` so that its first character ends up at
 * `index` (UTF-16 units, 0 .. length). If `update` is not NULL it receives the
 * update bytes of this change, to be sent to the other replicas; the caller
 * disposes of them. Inserting empty text changes nothing and returns an update
 * holding no operation (only `index` <= length is checked then).
 * Returns 0, CRDT_EINDEX, CRDT_EUTF8 (nothing inserted), CRDT_ELIMIT (the local
 * clock would pass 2^32 - 1, or the text this replica inserted over the
 * document's life, deleted text included, 2^31 - 1 bytes), or CRDT_ENOMEM.
 */
int crdt_doc_insert(crdt_doc_t *doc, size_t index, const char *text, size_t len,
                    crdt_buf_t *update);

/*
 * Deletes the `len` UTF-16 units starting at `index`. `update` as for insert.
 * Returns 0, CRDT_EINDEX (range outside the text or splitting a character),
 * CRDT_ELIMIT, or CRDT_ENOMEM.
 */
int crdt_doc_delete(crdt_doc_t *doc, size_t index, size_t len, crdt_buf_t *update);

/*
 * Merges update bytes produced by another replica (a local change, a diff, or an
 * encoded state). Operations already seen are skipped; operations whose causal
 * dependencies have not arrived are held and applied once they arrive (see
 * crdt_doc_pending()). The update is applied completely or not at all.
 * Returns 0 (also when everything was already known or is held), or
 * CRDT_EMALFORMED / CRDT_EFORMAT / CRDT_ELIMIT (bytes rejected), CRDT_EINVALID (an
 * operation refers to an id that is a deletion), CRDT_ENOMEM; on error the document
 * is unchanged.
 */
int crdt_doc_apply_update(crdt_doc_t *doc, const uint8_t *data, size_t len);

/*
 * A counter that grows whenever the document changes: a local edit, or an apply
 * that integrated or held anything new. An apply whose operations are all
 * integrated already leaves it as it was, so a caller can tell a duplicate update
 * from a new one by reading it before and after (operations held again, while
 * their dependencies are still missing, may count as a change). O(1).
 */
uint64_t crdt_doc_change_count(const crdt_doc_t *doc);

/* What an update holds, without applying it (crdt_update_summary()). */
typedef struct {
    uint64_t ops;      /* operations (one per inserted or deleted character) */
    uint64_t inserted; /* UTF-16 units inserted */
    uint64_t deleted;  /* characters deleted */
    uint64_t clients;  /* distinct replica ids it names */
} crdt_update_summary_t;

/*
 * Decodes update bytes (crdt_doc_insert(), crdt_doc_diff(), an encoded
 * state, ...) and counts what they hold, for history listings. `alloc` as for
 * crdt_doc_new() (NULL: libc). Returns 0, CRDT_EINVAL, CRDT_EMALFORMED,
 * CRDT_EFORMAT, CRDT_ELIMIT or CRDT_ENOMEM (*out untouched on error).
 */
int crdt_update_summary(const uint8_t *data, size_t len, const crdt_alloc_t *alloc,
                        crdt_update_summary_t *out);

/* Number of held runs of operations (a run of consecutive clocks of one
 * client counts once) waiting for missing dependencies; 0 when none. */
size_t crdt_doc_pending(const crdt_doc_t *doc);

/*
 * Encodes the document's state vector (client -> number of operations seen) into
 * *out. A state vector is also a version. Returns 0 or CRDT_ENOMEM.
 */
int crdt_doc_state_vector(const crdt_doc_t *doc, crdt_buf_t *out);

/*
 * Encodes the update holding every operation this document has and a peer with
 * state vector `sv` (as from crdt_doc_state_vector(); NULL/0 for an empty peer)
 * lacks. Held (pending) operations are not included.
 * Returns 0, CRDT_EMALFORMED (bad state vector) or CRDT_ENOMEM.
 */
int crdt_doc_diff(const crdt_doc_t *doc, const uint8_t *sv, size_t sv_len, crdt_buf_t *out);

/*
 * Encodes the whole document (its full history) into *out. Load it back with
 * crdt_doc_load(); it is also a valid update for crdt_doc_apply_update().
 * Returns 0 or CRDT_ENOMEM.
 */
int crdt_doc_encode_state(const crdt_doc_t *doc, crdt_buf_t *out);

/* crdt_doc_encode_state_ex() flag: the body is stored as is, not compressed.
 * The bytes are the same state format (loaded and applied like any other) and
 * about 2.7 times bigger for prose, but made about ten times faster and loaded
 * without decompressing: for snapshots a store writes often. */
#define CRDT_STATE_UNCOMPRESSED 1u
/* crdt_doc_encode_state_ex() flag: the body is compressed with less effort
 * (several times faster, a somewhat larger state, the same format), for a
 * store compacting busy documents. Ignored with CRDT_STATE_UNCOMPRESSED. */
#define CRDT_STATE_FAST 2u

/*
 * crdt_doc_encode_state() with `flags` (0, or CRDT_STATE_UNCOMPRESSED or
 * CRDT_STATE_FAST). Returns 0, CRDT_EINVAL (unknown flags) or CRDT_ENOMEM.
 */
int crdt_doc_encode_state_ex(const crdt_doc_t *doc, unsigned flags, crdt_buf_t *out);

/*
 * Creates a document with replica id `client` from bytes made by
 * crdt_doc_encode_state() (or any update), integrating every operation as
 * crdt_doc_apply_update() does: safe for bytes from anywhere, and the result is
 * exactly the document any replica makes of them. `alloc` as for
 * crdt_doc_new(). Returns 0 and sets *out, or the errors of
 * crdt_doc_apply_update().
 */
int crdt_doc_load(uint64_t client, const crdt_alloc_t *alloc, const uint8_t *data, size_t len,
                  crdt_doc_t **out);

/*
 * The fast load, for states this program wrote itself and kept safe (weftd's
 * own store): builds the document directly from the items in the order the
 * state lists them, in linear time, without integrating. Every byte is still
 * checked (structure, UTF-8, clocks, references, causal order; malformed input
 * gives CRDT_EMALFORMED and never crashes), but the relative order of
 * concurrent inserts is taken as written: a forged state could put two
 * concurrent inserts in another order than integration would. Same arguments
 * and errors as crdt_doc_load(); bytes that are not a state are loaded by
 * crdt_doc_load().
 */
int crdt_doc_load_trusted(uint64_t client, const crdt_alloc_t *alloc, const uint8_t *data,
                          size_t len, crdt_doc_t **out);

/*
 * Text at an earlier version `version` (an encoded state vector this document has
 * reached or passed: every clock in it at most the document's own). The text
 * holds every character inserted by an operation inside the version and not
 * deleted by one inside it. Returns 0, CRDT_EMALFORMED, CRDT_EVERSION (the
 * version names operations this document does not have), or CRDT_ENOMEM.
 */
int crdt_doc_text_at(const crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *out);

/*
 * Restores an earlier version: applies, as a new local change, the inserts and
 * deletes that turn the current text into the text at `version`, and returns that
 * change's update bytes in *update (may be NULL). Concurrent edits made elsewhere
 * are kept when they merge. Errors as crdt_doc_text_at() plus CRDT_ELIMIT; on
 * error the document is unchanged.
 */
int crdt_doc_restore(crdt_doc_t *doc, const uint8_t *version, size_t version_len,
                     crdt_buf_t *update);

/* What a span of crdt_doc_compare() is. */
enum { CRDT_SPAN_KEPT = 0, CRDT_SPAN_INSERTED = 1, CRDT_SPAN_DELETED = 2 };

/*
 * A span of text in the comparison of two versions. `text` (UTF-8, `len` bytes,
 * `units` UTF-16 units, not NUL-terminated) is borrowed until the callback
 * returns. `author`: for kept and inserted text, the replica that typed it; for
 * deleted text, the replica whose deletion (inside the `to` version) removed it,
 * or 0 when the text is simply absent from `to` (versions that are not ordered).
 */
typedef struct {
    int kind; /* CRDT_SPAN_* */
    uint64_t author;
    const char *text;
    size_t len;
    size_t units;
} crdt_span_t;

/* Receives spans; a nonzero return stops the walk. */
typedef int (*crdt_span_cb)(void *ctx, const crdt_span_t *span);

/*
 * Compares the text at version `from` with the text at version `to` (encoded
 * state vectors the document has reached or passed; `from` NULL/0 is the empty
 * document, `to` NULL the current state) and calls `cb` with the spans of the
 * result in document order: text in both (KEPT), only in `to` (INSERTED) and
 * only in `from` (DELETED). Neighbouring spans of one kind and author are
 * merged. Kept and inserted spans, in order, spell the text at `to`; kept and
 * deleted ones the text at `from`. Comparing the empty version with the
 * current state gives who wrote each part of today's text (attribution).
 * Returns 0, the callback's nonzero value, CRDT_EMALFORMED, CRDT_EVERSION,
 * CRDT_EINVAL or CRDT_ENOMEM. O(items + deletions log deletions).
 */
int crdt_doc_compare(const crdt_doc_t *doc, const uint8_t *from, size_t from_len, const uint8_t *to,
                     size_t to_len, crdt_span_cb cb, void *ctx);

/*
 * A relative position: a place in the text anchored to a character's id rather
 * than an index, so it keeps its place through concurrent edits (cursors and
 * selections are built on it). With CRDT_ASSOC_AFTER the position sticks to the
 * character after it (it stays before that character); with CRDT_ASSOC_BEFORE, to
 * the character before it. A position at the very start or end of the document
 * has no character on that side and stays at the start or end.
 */
enum { CRDT_ASSOC_BEFORE = -1, CRDT_ASSOC_AFTER = 1 };

typedef struct {
    uint64_t client; /* id of the anchor character (unused if `edge`) */
    uint32_t clock;
    int8_t assoc; /* CRDT_ASSOC_BEFORE or CRDT_ASSOC_AFTER */
    uint8_t edge; /* 0: anchored to the id; 1: document start; 2: document end */
} crdt_relpos_t;

/* Maximum size of an encoded relative position. */
#define CRDT_RELPOS_MAX 16

/*
 * Makes a relative position for `index` (0 .. length). Returns 0, CRDT_EINDEX or
 * CRDT_EINVAL (assoc not one of the two values).
 */
int crdt_doc_relpos_from_index(const crdt_doc_t *doc, size_t index, int assoc, crdt_relpos_t *out);

/*
 * Current index of a relative position. If its anchor character was deleted, the
 * position is where that character would be. Returns 0, or CRDT_ENOTFOUND when
 * the anchor is not (yet) known to this document.
 */
int crdt_doc_relpos_to_index(const crdt_doc_t *doc, const crdt_relpos_t *pos, size_t *index);

/*
 * Encodes a relative position into `buf` (at least CRDT_RELPOS_MAX bytes) and
 * returns the number of bytes written. Decoding returns 0 or CRDT_EMALFORMED.
 */
size_t crdt_relpos_encode(const crdt_relpos_t *pos, uint8_t buf[CRDT_RELPOS_MAX]);
int crdt_relpos_decode(const uint8_t *data, size_t len, crdt_relpos_t *out);

/* Bytes of memory the document currently holds, from its own allocation accounting. */
size_t crdt_doc_mem_bytes(const crdt_doc_t *doc);

/*
 * Walks the whole document and verifies every internal invariant (tree counts,
 * ordering, id index, state vector). Returns 0 or CRDT_EINTERNAL. O(n); for tests.
 */
int crdt_doc_check(const crdt_doc_t *doc);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_CRDT_H */
