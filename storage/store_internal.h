/* SPDX-License-Identifier: MIT */
/*
 * store_internal.h: what the storage module's files share and nothing outside
 * the module includes (tests excepted): the store_t structure, the on-disk
 * formats of keys and values (docs/storage.md) with their encoders and
 * checked parsers, and the functions store.c and writer.c call in each other.
 *
 * Threads. The caller's threads queue and read; the writer thread owns every
 * write transaction; the compaction thread builds and encodes snapshots in
 * read transactions of its own and hands each finished one to the writer
 * (`ready`), which stores it in its next round's write transaction.
 *
 * Locking. `mu` guards the queue, tickets, the per-document next-seq cache,
 * flush generations, the failure code and `ready`; `cmu` guards the
 * compaction state (the documents owing a snapshot, the one in flight, the
 * stop and dead flags); `stats_mu` guards `stats`. `resize` is a rwlock
 * every LMDB transaction (read or write) holds shared for its whole life;
 * growing the map (mdb_env_set_mapsize) takes it exclusive, so it runs only
 * while this process has no transaction open, as LMDB requires. Lock order:
 * mu, then resize, then stats_mu. Only the next-seq cache takes resize while
 * holding mu (it reads a document's committed metadata the first time the
 * document is appended to); no thread ever takes mu while it holds resize
 * (the writer releases its transaction before publishing, the compaction
 * thread its read transaction before handing a snapshot over), so that order
 * cannot deadlock. mu and stats_mu are never held together. cmu is a leaf:
 * nothing else is taken while it is held, and it is never taken while mu,
 * resize or stats_mu is held.
 */
#ifndef WEFT_STORE_INTERNAL_H
#define WEFT_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>

#include "store.h"

/* ---- on-disk format --------------------------------------------------- */

/* Named databases. */
#define STORE__DB_SYS "sys"           /* "format" -> u32, "next_doc_id" -> u64 */
#define STORE__DB_DOCS "docs"         /* name -> meta */
#define STORE__DB_LOG "log"           /* (doc id, seq) -> entry */
#define STORE__DB_SNAPS "snapshots"   /* (doc id, seq) -> snapshot */
#define STORE__DB_VERSIONS "versions" /* (doc id, seq) -> version */
#define STORE__DB_REPLICAS "replicas" /* (doc id, replica id) -> author name */

/* sys key present once every log entry's author is recorded in `replicas`. */
#define STORE__SYS_REPLICAS "replica_names"

#define STORE__FORMAT 1u /* the store's layout version, in sys "format" */
#define STORE__VALUE_V1 1u
#define STORE__VALUE_V2 2u /* log entries since document history: + restore_of */

/* Value sizes. */
#define STORE__META_LEN_V1 49u  /* fmt 1, doc id, next seq, snap seq, created, entries, bytes */
#define STORE__META_LEN 65u     /* fmt 2: the same + snapshot length, log bytes at the snapshot */
#define STORE__ENTRY_HDR_V1 22u /* fmt 1, crc32c, author, time, author name len */
#define STORE__ENTRY_HDR 30u    /* fmt 2, crc32c, author, time, restore_of, author name len */
#define STORE__SNAP_HDR 5u      /* fmt, crc32c */
#define STORE__VERSION_HDR 18u  /* fmt, author, time, label len */
#define STORE__REPLICA_HDR 2u   /* fmt, name len */

/* Offsets inside a format-2 log entry value. */
#define STORE__ENTRY_AUTHOR 5u
#define STORE__ENTRY_TIME 13u
#define STORE__ENTRY_RESTORE 21u
#define STORE__ENTRY_NAME_LEN 29u

/*
 * A document's metadata. The last two fields exist since format-2 metadata
 * (size-aware snapshots); a format-1 value reads them as 0.
 */
typedef struct {
    uint64_t doc_id, next_seq, snapshot_seq, created_ms, entries, bytes;
    uint64_t snapshot_len;   /* state bytes of the snapshot at snapshot_seq (0: unknown) */
    uint64_t snapshot_bytes; /* `bytes` as of snapshot_seq (update bytes of entries 1..it) */
} store__meta_t;

/* A (doc id, seq) key: 16 bytes, both big-endian, so cursors walk in order. */
typedef struct {
    uint8_t b[16];
} store__key_t;

void store__put_u32(uint8_t *p, uint32_t v);
void store__put_u64(uint8_t *p, uint64_t v);
uint32_t store__get_u32(const uint8_t *p);
uint64_t store__get_u64(const uint8_t *p);
void store__key(store__key_t *k, uint64_t doc_id, uint64_t seq);
/*
 * Classifies a key met while walking document `doc_id`'s records: 1 if it is
 * one of them (*seq set), 0 if it belongs to something else (the walk ends),
 * -1 if it starts with this document's id but is not a 16-byte key (corrupt).
 */
int store__key_in_doc(const MDB_val *v, uint64_t doc_id, uint64_t *seq);

uint32_t store__crc32c(const uint8_t *p, size_t n);

/* Writes a format-2 meta value. */
void store__meta_encode(uint8_t out[STORE__META_LEN], const store__meta_t *m);
/* Parses a format-1 or format-2 meta value: 0, STORE_EFORMAT or STORE_ECORRUPT. */
int store__meta_parse(const MDB_val *v, store__meta_t *m);
/*
 * Writes a format-2 entry value into `out` (STORE__ENTRY_HDR + name + update
 * bytes), restore_of included.
 */
void store__entry_encode(uint8_t *out, const store_entry_t *e);
/* Parses a format-1 (restore_of read as 0) or format-2 entry value. */
int store__entry_parse(const MDB_val *v, store_entry_t *e);
/* An entry value's layout without its checksum: header size and author name
 * length (what store__entry_parse() checks before the CRC). 0, STORE_EFORMAT
 * or STORE_ECORRUPT. */
int store__entry_layout(const MDB_val *v, size_t *hdr, size_t *name_len);
/* The state bytes of a snapshot whose format and checksum are good. */
int store__snap_parse(const MDB_val *v, const uint8_t **state, size_t *len);
int store__version_parse(const MDB_val *v, store_version_t *out);
/* Replica name value: [0] format 1, [1] name length (<= 64), the name. */
size_t store__replica_encode(uint8_t *out, const char *name, size_t len);
int store__replica_parse(const MDB_val *v, const char **name, size_t *len);

bool store__name_ok(const char *name, size_t len);
/* Translates an LMDB or errno code into a STORE_E* code. */
int store__from_mdb(int rc);
uint64_t store__now_us(void);

/* ---- the store -------------------------------------------------------- */

enum { STORE__JOB_APPEND = 1, STORE__JOB_VERSION = 2 };

/* One queued write; all its bytes live in `data` right after the struct. */
typedef struct store__job {
    struct store__job *next;
    uint64_t ticket;
    int kind;
    uint8_t name_len;
    char name[STORE_NAME_MAX];
    /* APPEND: the encoded entry value. VERSION: the encoded version value. */
    size_t value_len;
    size_t update_len; /* APPEND: update bytes inside the value (for stats) */
    /* APPEND: the seq chosen at queue time (the writer checks the log agrees).
     * VERSION: the named seq. */
    uint64_t seq;
    uint8_t value[];
} store__job_t;

/*
 * One document of the next-seq cache: the seq its next queued entry gets.
 * Invariant: next_seq - 1 is the seq of the last entry queued for the
 * document in this process, or its committed last seq if none was queued
 * since the entry was loaded. An entry may be evicted only when last_ticket
 * <= durable (everything queued for it is committed, so reloading it from
 * the metadata gives the same value).
 */
typedef struct store__seq {
    struct store__seq *next; /* hash chain */
    uint64_t next_seq;
    uint64_t last_ticket; /* ticket of the last entry queued for it (0: none) */
    uint8_t name_len;
    char name[STORE_NAME_MAX];
} store__seq_t;

/* A document of the batch being written (writer only): its metadata read
 * once, changed by each job, written once at the end of the transaction. */
typedef struct {
    const char *name; /* the first job's name (jobs live until the batch is freed) */
    uint8_t name_len;
    uint8_t state; /* STORE__BD_* */
    uint32_t slot; /* in bidx */
    store__meta_t m;
} store__bdoc_t;
enum { STORE__BD_ABSENT = 1, STORE__BD_CLEAN, STORE__BD_DIRTY };

/* A document owing a snapshot. */
typedef struct {
    uint8_t name_len;
    char name[STORE_NAME_MAX];
} store__pending_t;

/*
 * A snapshot the compaction thread built and encoded in a read transaction,
 * handed to the writer, which stores it only if the committed metadata still
 * calls for it (same doc id, its latest snapshot below `seq`, `seq` inside
 * the log) and drops it otherwise.
 */
typedef struct {
    uint8_t name_len;
    char name[STORE_NAME_MAX];
    uint64_t doc_id;   /* the document it was built for */
    uint64_t seq;      /* the state after log entries 1..seq */
    uint64_t bytes_at; /* update bytes of entries 1..seq (for the metadata) */
    uint32_t crc;      /* CRC-32C of the state */
    crdt_buf_t state;  /* crdt_doc_encode_state_ex() bytes */
} store__snap_t;

struct store {
    MDB_env *env;
    MDB_dbi db_sys, db_docs, db_log, db_snaps, db_versions, db_replicas;
    int efd; /* eventfd, nonblocking */
    uint32_t snapshot_every;
    int64_t commit_spacing_ns; /* store_options_t.commit_spacing_us; 0: none */
    uint32_t snapshot_percent; /* store_options_t.snapshot_log_percent */
    uint64_t snapshot_cap;     /* entries after which a snapshot is owed whatever its size */
    unsigned snapshot_flags;   /* crdt_doc_encode_state_ex() flags of snapshots */
    size_t map_size, map_max;  /* map_size: current; changed by the writer only */
    pthread_rwlock_t resize;
    pthread_t writer;
    pthread_t compactor;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* the writer waits on it for work */
    pthread_cond_t done_cv;    /* store_flush() waits on it */
    store__job_t *head, *tail; /* FIFO of queued jobs, tickets ascending */
    uint64_t queued_entries, queued_bytes;
    uint64_t last_ticket; /* latest ticket issued */
    uint64_t durable;     /* highest ticket committed */
    uint64_t flush_req;   /* flush generations asked for */
    uint64_t flush_done;  /* flush generations served */
    int failed;           /* STORE_E* once a commit failed; sticky */
    store__seq_t **seqs;  /* next-seq cache: hash table of chains */
    size_t n_seqs, cap_seqs;
    bool closing;
    store__snap_t *ready; /* a finished snapshot for the writer's next round */

    /* Compaction state, under cmu. A document is "in flight" from the moment
     * the compaction thread takes it off `pending` until the writer stored or
     * dropped its snapshot (or the compaction thread found nothing to do);
     * one at a time, so a document's next snapshot is always planned from
     * metadata that records its previous one. */
    pthread_mutex_t cmu;
    pthread_cond_t compact_cv; /* the compaction thread waits on it for work */
    pthread_cond_t idle_cv;    /* store_flush() waits on it for compaction to finish */
    store__pending_t *pending; /* documents owing a snapshot (served from the end) */
    size_t n_pending, cap_pending;
    bool in_flight;
    bool compact_stop; /* store_close(): the compaction thread exits */
    bool compact_dead; /* the store failed: nothing more is compacted */

    /* Writer-only state. */
    /* The documents of the batch being written: bdocs[0 .. n_bdocs), found
     * through bidx (open addressing, cap_bidx a power of two, slots hold an
     * index + 1, 0 when empty). */
    store__bdoc_t *bdocs;
    size_t n_bdocs, cap_bdocs;
    uint32_t *bidx;
    size_t cap_bidx;
    /* (doc id, replica) pairs whose author record is known to be committed:
     * open addressing, doc id 0 marks an empty slot; cleared when half full. */
    uint64_t (*known)[2];
    size_t n_known;
    /* Pairs recorded by the batch being written, added to `known` once it
     * commits. */
    uint64_t (*fresh)[2];
    size_t n_fresh, cap_fresh;

    pthread_mutex_t stats_mu;
    store_stats_t stats;
};

/* writer.c */
void *store__writer_main(void *arg);
void *store__compactor_main(void *arg);

/* store.c: begin / end a read transaction holding the resize lock shared. */
int store__read_begin(store_t *s, MDB_txn **txn);
void store__read_end(store_t *s, MDB_txn *txn);

/*
 * Builds document `doc_id` (meta `m`) as of log entry `upto` (1 .. next_seq
 * - 1) inside `txn`: its latest good snapshot at or below `upto` plus the log
 * entries after it up to `upto`. Shared by loads and compaction.
 */
int store__build(store_t *s, MDB_txn *txn, const store__meta_t *m, uint64_t upto, uint64_t client,
                 crdt_doc_t **out, store_load_info_t *info);

/* Looks up and parses the meta of `name` in `txn`. */
int store__meta_get(store_t *s, MDB_txn *txn, const char *name, size_t len, store__meta_t *m);

void store__stats_commit(store_t *s, uint64_t us);

#endif /* WEFT_STORE_INTERNAL_H */
