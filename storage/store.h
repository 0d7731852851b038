/* SPDX-License-Identifier: MIT */
/*
 * store.h: the public interface of weft's storage module, an LMDB environment
 * in one data directory holding every document's update log, periodic
 * snapshots (full encoded states), document metadata and named versions.
 *
 * Threads. One store_t is shared by two kinds of threads. The caller's thread
 * (weftd's event loop) queues writes with store_append(), store_append_ex()
 * and store_version_put(), which copy their arguments and return a ticket
 * without writing to the disk, and reads with store_doc_load(),
 * store_doc_load_at(), store_log_read(), store_log_read_rev(),
 * store_doc_stat(), store_version_list() and store_replica_name(), each of
 * which keeps one LMDB read transaction inside the call. The store's own writer thread owns every
 * write transaction: it takes everything queued, writes it in one transaction, commits (fsync), and
 * publishes "durable through ticket T", signalled on store_completion_fd(). It also grows the map
 * when it is full. The store's compaction thread (at a lower priority) builds and encodes snapshots
 * in read transactions and hands each to the writer, which stores it with its next round, so a
 * commit never waits for a snapshot to be built. Every function here may be called from
 * any thread except where noted; store_open() and store_close() are not concurrent with anything
 * else on the same store.
 *
 * fork(). Never use a store across fork(): a child must not call any function
 * on a store its parent opened (not even store_close()); it opens its own.
 *
 * Errors. Functions that can fail return 0 or a negative STORE_E* code
 * (-200 .. -299); LMDB's codes never escape. On failure, output arguments are
 * left untouched. Functions taking a callback never call it when they fail
 * (the data is checked before the first call), except store_log_read_rev(),
 * which checks each entry just before its call.
 *
 * One process. Only one process at a time may append to a store: sequence
 * numbers are chosen when entries are queued, from this process's view of
 * the log.
 */
#ifndef WEFT_STORE_H
#define WEFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "crdt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes, -200 .. -299. Generated with store_strerror() from one list. */
#define STORE_ERRNO_MAP(X)                                                                         \
    X(ENOMEM, -200, "out of memory")                                                               \
    X(EINVAL, -201, "invalid argument")                                                            \
    X(ENOTFOUND, -202, "no such document")                                                         \
    X(ECORRUPT, -203, "stored data is corrupt or malformed")                                       \
    X(EFORMAT, -204, "stored data has an unsupported format version")                              \
    X(EIO, -205, "I/O error on the data directory")                                                \
    X(EFULL, -206, "the database reached its maximum map size")                                    \
    X(EFAILED, -207, "the store stopped writing after a failed commit")                            \
    X(EBUSY, -208, "too many concurrent LMDB readers")                                             \
    X(EACCES, -209, "permission denied on the data directory")                                     \
    X(EINTERNAL, -210, "internal error in the storage module")

enum store_errno {
#define STORE__ERRNO_ENUM(name, value, text) STORE_##name = value,
    STORE_ERRNO_MAP(STORE__ERRNO_ENUM)
#undef STORE__ERRNO_ENUM
};

/* Returns a static, human-readable description of an error code (never NULL). */
const char *store_strerror(int err);

/* Limits of the arguments the store accepts. */
#define STORE_NAME_MAX 128        /* document name: 1..128 bytes of [A-Za-z0-9._~-] */
#define STORE_AUTHOR_NAME_MAX 64  /* author name: 0..64 bytes, any bytes */
#define STORE_LABEL_MAX 128       /* version label: 0..128 bytes, any bytes */
#define STORE_UPDATE_MAX 67108864 /* one update: at most 64 MiB */

/*
 * Options for store_open(). A zero field means its default, so
 * `store_options_t o = {0};` (or passing NULL) gives every default.
 */
typedef struct {
    size_t map_size_initial; /* bytes of the LMDB map at first open; default 64 MiB */
    size_t map_size_max;     /* the map doubles when full up to this; default 64 GiB */
    uint32_t snapshot_every; /* at least this many log entries between snapshots; default 1000 */
    /*
     * Snapshots are spaced by size as well as by entries, so that writing them
     * costs at most a constant factor of the log bytes written: a document owes
     * a snapshot once at least snapshot_every entries were logged after its
     * latest one AND either the update bytes of those entries reach
     * snapshot_log_percent % (default 100) of that snapshot's state length or
     * there are snapshot_max_factor * snapshot_every (default 64) of them. A
     * snapshot is placed at the first seq where this holds, so the entries a
     * load replays after one are bounded by the larger of snapshot_every and
     * the entries holding snapshot_log_percent % of its length, and never
     * reach snapshot_max_factor * snapshot_every. snapshot_max_factor 1 gives
     * the plain rule: a snapshot every snapshot_every entries.
     */
    uint32_t snapshot_log_percent;
    uint32_t snapshot_max_factor;
    /* Nonzero: snapshots are stored uncompressed (CRDT_STATE_UNCOMPRESSED):
     * about 2.7 times the bytes for prose, less of the compaction thread's CPU
     * to make, and no decompression to load. Zero: compressed with
     * CRDT_STATE_FAST (a few percent bigger than crdt_doc_encode_state()'s). */
    int uncompressed_snapshots;
    /*
     * Nonzero: open LMDB with MDB_NOSYNC, so commits are not flushed to disk.
     * Tickets are then reported "durable" when committed, which is NOT durable:
     * an OS crash or power loss can lose them (and, per LMDB, a crash can even
     * corrupt the file). For benchmarks and throwaway data only.
     */
    int no_sync;
    /*
     * Commit spacing: under steady load the writer commits at most once per
     * this many microseconds, so that more appends share a commit and its
     * fsync (fewer than 64 queued appends within that time of the previous
     * commit's start wait out the rest; an append after a quiet spell
     * commits at once, and a flush, a close or 64 appends found queued when
     * the writer wakes do not wait, while one coming during a wait waits for
     * its end). ACKs come up to this much later.
     * Default 1000; STORE_SPACING_OFF: commit as soon as anything is queued.
     */
    uint32_t commit_spacing_us;
} store_options_t;

#define STORE_SPACING_OFF UINT32_MAX /* store_options_t.commit_spacing_us: none */
#define STORE_SPACING_MAX 100000     /* larger values are taken as this */

typedef struct store store_t;

/*
 * Opens (creating if missing, mode 0700 for the directory, 0600 for files) the
 * store in directory `dir` (NUL-terminated path) and starts its writer and
 * compaction threads.
 * Clears reader slots left by dead processes (mdb_reader_check). `opts` may be
 * NULL. Returns 0 and sets *out, or STORE_EINVAL, STORE_ENOMEM, STORE_EIO,
 * STORE_EACCES, STORE_ECORRUPT / STORE_EFORMAT (not a weft store of a format
 * this build reads).
 */
int store_open(const char *dir, const store_options_t *opts, store_t **out);

/*
 * Drains the queue (everything queued becomes durable, unless the store has
 * failed), lets the store write the snapshots owed (as store_flush()), joins
 * its threads and closes the environment. Returns 0 or the store's failure (store_failed());
 * the store is freed either way. store_close(NULL) does nothing and returns 0.
 */
int store_close(store_t *store);

/*
 * Queues one update of document `name` (`name_len` bytes, not NUL-terminated,
 * 1..STORE_NAME_MAX of [A-Za-z0-9._~-]) for the log: copies `update`
 * (1..STORE_UPDATE_MAX bytes), the author's replica id, the author's name
 * (0..STORE_AUTHOR_NAME_MAX bytes, may be NULL when 0) and the time in
 * milliseconds since the epoch. A document is created by its first append.
 * Never writes to the disk and never waits for a commit (only for a mutex
 * the writer holds for a few instructions). The first append to a document
 * in this process reads its committed metadata (one LMDB lookup, normally
 * in the page cache since the document was just loaded) to learn its next
 * sequence number. Entries of one document get consecutive sequence numbers
 * (from 1) in the order they were queued.
 * Returns a ticket >= 1, larger than every ticket issued before, or 0 when the
 * entry was not queued: out of memory, invalid arguments, the document's
 * metadata is unreadable (corrupt), or the store has failed (see
 * store_failed()).
 */
uint64_t store_append(store_t *store, const char *name, size_t name_len, const uint8_t *update,
                      size_t update_len, uint64_t author, const char *author_name,
                      size_t author_name_len, uint64_t time_ms);

/* The arguments of store_append_ex(); borrowed for the duration of the call. */
typedef struct {
    const char *name; /* document, as store_append() */
    size_t name_len;
    const uint8_t *update; /* 1..STORE_UPDATE_MAX bytes */
    size_t update_len;
    uint64_t author;         /* the author's replica id */
    const char *author_name; /* 0..STORE_AUTHOR_NAME_MAX bytes, NULL when 0 */
    size_t author_name_len;
    uint64_t time_ms;    /* milliseconds since the epoch */
    uint64_t restore_of; /* 0, or the seq of the version this entry restores */
} store_append_t;

/*
 * As store_append(), plus `restore_of` (kept with the entry and returned by
 * the log walks; it must be 0 or less than the seq the entry gets, otherwise
 * the entry is refused), and, on success, *seq_out (may be NULL) = the
 * sequence number this entry will have in the document's log. Sequence
 * numbers are assigned here, at queue time: consecutive per document in
 * queue order, continuing the committed log (1 for a new document). The seq
 * is only a promise until the ticket is durable (store_durable()); if the
 * store fails first, the entry is never written, and a failed store refuses
 * new entries (returns 0, *seq_out untouched), so it never hands out a seq
 * that could be written by anything else.
 * Returns the ticket, or 0 as store_append() (then *seq_out is untouched).
 */
uint64_t store_append_ex(store_t *store, const store_append_t *a, uint64_t *seq_out);

/*
 * A nonblocking file descriptor (an eventfd) that becomes readable whenever
 * the durable ticket advances (and when the store fails). Owned by the store;
 * do not close or read it yourself: call store_durable().
 */
int store_completion_fd(const store_t *store);

/*
 * Drains the completion fd and returns the highest durable ticket: every
 * ticket <= it has been committed and fsynced. Never blocks; 0 before the
 * first commit. It never advances again once the store has failed.
 */
uint64_t store_durable(store_t *store);

/* The latest ticket issued (0 if none). */
uint64_t store_last_ticket(store_t *store);

/*
 * 0 while the store is healthy; after a commit failed (I/O error, or the map
 * could not grow past map_size_max), the STORE_E* code of that failure. A
 * failed store writes nothing more; queued and later tickets never become
 * durable. Reads keep working on what was committed.
 */
int store_failed(store_t *store);

/*
 * Blocks until every ticket issued before the call is durable and the
 * snapshots they call for are written. Returns 0, or the failure code if the
 * store has failed. For shutdown and tests; not for the event loop.
 */
int store_flush(store_t *store);

/* What store_doc_load() did; all zero when it failed. */
typedef struct {
    uint64_t last_seq;           /* sequence number of the last log entry applied */
    uint64_t snapshot_seq;       /* the snapshot loaded (0: none, replayed from the start) */
    uint64_t entries_replayed;   /* log entries applied after the snapshot */
    uint32_t snapshot_fallbacks; /* newer snapshots skipped as corrupt (checksum, format, load) */
} store_load_info_t;

/*
 * Builds document `name` as committed: the latest valid snapshot (its checksum
 * verified, then crdt_doc_load_trusted()) plus every later log entry in
 * sequence order (crdt_doc_apply_update()). A snapshot that fails is skipped
 * for an older one, or for a replay of the whole log, counted in
 * info->snapshot_fallbacks and in store_stats(). The document uses replica id
 * `client` and libc's allocator; free it with crdt_doc_free(). `info` may be
 * NULL. Entries still queued (not yet committed) are not included.
 * Returns 0 and sets *out; STORE_ENOTFOUND (never written: start an empty
 * document), STORE_EINVAL (bad name), STORE_ECORRUPT (a log entry or the
 * metadata is malformed, missing, or rejected by the engine), STORE_EFORMAT,
 * STORE_ENOMEM, STORE_EBUSY, STORE_EIO.
 */
int store_doc_load(store_t *store, const char *name, size_t name_len, uint64_t client,
                   crdt_doc_t **out, store_load_info_t *info);

/*
 * Builds document `name` as of log entry `seq`, i.e. after committed entries
 * 1..seq (seq 0: the empty document): the latest valid snapshot with a
 * sequence <= `seq` (corrupt ones skipped and counted as in store_doc_load())
 * plus the log entries after it up to `seq` (found with a cursor: snapshots
 * need not lie at regular seqs). Snapshots are kept forever and spaced as
 * store_options_t says, so when none is corrupt fewer than
 * snapshot_max_factor * snapshot_every entries are replayed, and fewer than
 * snapshot_every unless those entries hold more than
 * snapshot_log_percent % of the snapshot's length. `client`, `out` and `info` as
 * store_doc_load() (info->last_seq is `seq`). Returns 0 and sets *out;
 * STORE_ENOTFOUND (no such document), STORE_EINVAL (bad name, or `seq` past
 * the last committed entry), STORE_ECORRUPT, STORE_EFORMAT, STORE_ENOMEM,
 * STORE_EBUSY, STORE_EIO.
 */
int store_doc_load_at(store_t *store, const char *name, size_t name_len, uint64_t client,
                      uint64_t seq, crdt_doc_t **out, store_load_info_t *info);

/* One log entry, borrowed: valid only during the callback that receives it. */
typedef struct {
    const uint8_t *update;
    size_t update_len;
    uint64_t author;
    const char *author_name; /* not NUL-terminated */
    size_t author_name_len;
    uint64_t time_ms;
    uint64_t restore_of; /* 0, or the seq of the version this entry restored */
} store_entry_t;

/* Returns 0 to continue, nonzero to stop the walk early. */
typedef int (*store_log_cb)(void *ctx, uint64_t seq, const store_entry_t *entry);

/*
 * Calls `cb` for every committed log entry of `name` with sequence >= from_seq,
 * in order. The whole range is read in one read transaction and checked before
 * the first call, so a malformed entry means an error and no call. The
 * callback must not call store functions (it runs inside a read transaction
 * that holds the store's resize lock shared). Returns 0 (also when the
 * callback stopped the walk or the range is empty), STORE_ENOTFOUND,
 * STORE_EINVAL, STORE_ECORRUPT, STORE_EFORMAT, STORE_EBUSY, STORE_EIO.
 */
int store_log_read(store_t *store, const char *name, size_t name_len, uint64_t from_seq,
                   store_log_cb cb, void *ctx);

/*
 * Calls `cb` for the committed log entries of `name` from `from_seq`
 * (inclusive; UINT64_MAX or any seq past the last entry means the last
 * entry; 0 means none) DOWN to 1, newest first, in one read transaction; the
 * callback stops the walk by returning nonzero. Unlike the other walks, each
 * entry is checked just before its callback: a malformed entry (or a gap in
 * the sequence) ends the walk with STORE_ECORRUPT / STORE_EFORMAT after the
 * calls for the newer entries were made. The cost is proportional to the
 * entries visited, not to the size of the log. The callback must not call
 * store functions. Returns 0 (also when stopped or empty), STORE_ENOTFOUND,
 * STORE_EINVAL, STORE_ECORRUPT, STORE_EFORMAT, STORE_EBUSY, STORE_EIO.
 */
int store_log_read_rev(store_t *store, const char *name, size_t name_len, uint64_t from_seq,
                       store_log_cb cb, void *ctx);

/*
 * Copies into `out` the author name first logged for replica `replica` in
 * document `name`, NUL-terminated (at most STORE_AUTHOR_NAME_MAX bytes + NUL;
 * names may hold any bytes, a NUL included, so this is for display). The
 * writer records a replica's name when it commits the first entry of that
 * replica with a non-empty author name in that document; later names of the
 * same replica are ignored (first name wins). Entries committed before a
 * store had this index are indexed when store_open() first opens it.
 * Returns 0; STORE_ENOTFOUND (no such document, or no named entry of that
 * replica in it; `out` untouched), STORE_EINVAL, STORE_ECORRUPT, STORE_EFORMAT,
 * STORE_EBUSY, STORE_EIO.
 */
int store_replica_name(store_t *store, const char *name, size_t name_len, uint64_t replica,
                       char out[STORE_AUTHOR_NAME_MAX + 1]);

/* A document's committed size, from its metadata record (one lookup). */
typedef struct {
    uint64_t doc_id;       /* internal id, stable for the life of the store */
    uint64_t entries;      /* log entries */
    uint64_t bytes;        /* update bytes in the log */
    uint64_t last_seq;     /* sequence of the last entry (== entries) */
    uint64_t snapshot_seq; /* sequence of the latest snapshot, 0 if none */
    uint64_t created_ms;   /* time of the first entry */
    uint64_t
        snapshot_len; /* state bytes of that snapshot (0: none, or written before this was kept) */
} store_doc_stat_t;

/* Fills *out for `name`. Returns 0, STORE_ENOTFOUND, STORE_EINVAL, STORE_ECORRUPT, ... */
int store_doc_stat(store_t *store, const char *name, size_t name_len, store_doc_stat_t *out);

/*
 * Queues a named version of `name` at log sequence `seq`: a label of
 * 1..STORE_LABEL_MAX bytes, its author and time. Returns a ticket as
 * store_append() does. The writer records it only if the document exists
 * when the entry is written (otherwise it is dropped and counted in
 * store_stats_t.versions_dropped); naming the same seq again replaces the
 * label. An empty label (label_len 0, label may be NULL) REMOVES the name at
 * `seq` (nothing happens if there is none).
 */
uint64_t store_version_put(store_t *store, const char *name, size_t name_len, uint64_t seq,
                           const char *label, size_t label_len, uint64_t author, uint64_t time_ms);

/* A named version, borrowed: valid only during the callback. */
typedef struct {
    const char *label; /* not NUL-terminated */
    size_t label_len;
    uint64_t author;
    uint64_t time_ms;
} store_version_t;

typedef int (*store_version_cb)(void *ctx, uint64_t seq, const store_version_t *version);

/* Calls `cb` for every named version of `name` in seq order; as store_log_read(). */
int store_version_list(store_t *store, const char *name, size_t name_len, store_version_cb cb,
                       void *ctx);

/* Commit latency histogram: upper bounds (microseconds) of the finite buckets. */
#define STORE_LATENCY_BUCKETS 12
#define STORE_LATENCY_BOUNDS_US                                                                    \
    {                                                                                              \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000              \
    }

/*
 * Counters for /metrics, a consistent copy taken under a lock. Histogram
 * counts are cumulative like Prometheus's `le` buckets: commit_le[i] counts
 * commits that took <= commit_le_bound_us[i]; the +Inf bucket is `commits`.
 */
typedef struct {
    uint64_t commits;         /* write transactions committed (batches, snapshots, or both) */
    uint64_t batches;         /* of which held a group-commit batch of queued entries */
    uint64_t entries_written; /* log entries committed */
    uint64_t bytes_written;   /* update bytes of those entries */
    uint64_t commit_us_sum;   /* total commit latency (txn begin to fsync done) */
    uint64_t commit_us_max;   /* slowest commit */
    uint64_t commit_le_bound_us[STORE_LATENCY_BUCKETS];
    uint64_t commit_le[STORE_LATENCY_BUCKETS];
    uint64_t snapshots_written;  /* compaction snapshots committed */
    uint64_t snapshot_bytes;     /* encoded state bytes of those */
    uint64_t snapshot_errors;    /* compactions skipped (would not build, or a read failed) */
    uint64_t snapshot_fallbacks; /* corrupt snapshots skipped by loads */
    uint64_t versions_dropped;   /* store_version_put() for a document that did not exist */
    uint64_t map_size;           /* current LMDB map size in bytes */
    uint64_t map_used;           /* bytes of the map in use (last page) */
    uint64_t map_growths;        /* times the map was grown after MDB_MAP_FULL */
    uint64_t queue_entries;      /* entries queued, not yet taken by the writer */
    uint64_t queue_bytes;        /* their bytes */
    uint64_t last_ticket;
    uint64_t durable_ticket;
    int failed; /* store_failed() */
} store_stats_t;

/* Copies the counters into *out. Thread-safe; never blocks on the disk. */
void store_stats(store_t *store, store_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_STORE_H */
