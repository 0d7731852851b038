/* SPDX-License-Identifier: MIT */
/*
 * writer.c: the store's writer thread, the only thread that opens LMDB write
 * transactions. Each round it takes everything queued, writes it in one
 * transaction (group commit: each log entry at the seq chosen when it was
 * queued, which must be the document's next seq, and the author's name in
 * `replicas` if the replica is new to the document), commits (fsync unless
 * no_sync), publishes the last ticket of the round as durable and signals the
 * eventfd. Then it writes at most one snapshot a document owes (compaction),
 * in its own transaction, so snapshots never delay the acknowledgement of the
 * entries that triggered them; snapshots lie exactly snapshot_every entries
 * apart, so a document that owes several gets one per round. MDB_MAP_FULL
 * aborts the transaction, doubles the map with the resize lock held exclusive
 * (no transaction of this process open), and retries the whole round. A commit that fails otherwise
 * puts the store in its failed state: queued and later work is dropped and no ticket is reported
 * durable again. Locks as in store_internal.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The replica id of documents the writer builds to snapshot them (never edited). */
#define COMPACT_CLIENT 0x5707eULL

/* Begins a write transaction holding the resize lock shared. */
static int write_begin(store_t *s, MDB_txn **txn)
{
    for (;;) {
        pthread_rwlock_rdlock(&s->resize);
        int rc = mdb_txn_begin(s->env, NULL, 0, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&s->resize);
        if (rc != MDB_MAP_RESIZED)
            return rc;
        pthread_rwlock_wrlock(&s->resize);
        rc = mdb_env_set_mapsize(s->env, 0);
        pthread_rwlock_unlock(&s->resize);
        if (rc)
            return rc;
    }
}

/*
 * Doubles the map (up to map_max) while no transaction of this process is
 * open. Returns 0 or STORE_EFULL / a translated LMDB error.
 */
static int grow(store_t *s)
{
    MDB_envinfo info;
    pthread_rwlock_wrlock(&s->resize);
    mdb_env_info(s->env, &info);
    size_t cur = info.me_mapsize;
    int err = 0;
    if (cur >= s->map_max) {
        err = STORE_EFULL;
    } else {
        size_t next = cur > s->map_max / 2 ? s->map_max : cur * 2;
        int rc = mdb_env_set_mapsize(s->env, next);
        if (rc)
            err = store__from_mdb(rc);
        else
            s->map_size = next;
    }
    pthread_rwlock_unlock(&s->resize);
    if (!err) {
        pthread_mutex_lock(&s->stats_mu);
        s->stats.map_size = s->map_size;
        s->stats.map_growths++;
        pthread_mutex_unlock(&s->stats_mu);
    }
    return err;
}

static void note_map_used(store_t *s)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    pthread_mutex_lock(&s->stats_mu);
    s->stats.map_used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    s->stats.map_size = info.me_mapsize;
    pthread_mutex_unlock(&s->stats_mu);
}

/*
 * Remembers that document `name` owes a snapshot (once). `front` puts it
 * where it is served last (compaction pops from the end), so documents
 * owing many snapshots take turns.
 */
static void pending_add(store_t *s, const char *name, size_t len, bool front)
{
    for (size_t i = 0; i < s->n_pending; i++)
        if (s->pending[i].name_len == len && memcmp(s->pending[i].name, name, len) == 0)
            return;
    if (s->n_pending == s->cap_pending) {
        size_t cap = s->cap_pending ? s->cap_pending * 2 : 16;
        store__pending_t *p = realloc(s->pending, cap * sizeof *p);
        if (!p)
            return; /* the next append to the document asks again */
        s->pending = p;
        s->cap_pending = cap;
    }
    if (front)
        memmove(s->pending + 1, s->pending, s->n_pending * sizeof *s->pending);
    store__pending_t *p = &s->pending[front ? 0 : s->n_pending];
    s->n_pending++;
    p->name_len = (uint8_t)len;
    memcpy(p->name, name, len);
}

/* Allocates the next document id from sys "next_doc_id". Returns an LMDB code. */
static int next_doc_id(store_t *s, MDB_txn *txn, uint64_t *id)
{
    MDB_val k = {11, "next_doc_id"}, v;
    uint64_t next = 1;
    int rc = mdb_get(txn, s->db_sys, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8)
            return MDB_CORRUPTED;
        next = store__get_u64(v.mv_data);
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    if (next == 0 || next == UINT64_MAX)
        return MDB_CORRUPTED;
    uint8_t b[8];
    store__put_u64(b, next + 1);
    v.mv_size = 8;
    v.mv_data = b;
    rc = mdb_put(txn, s->db_sys, &k, &v, 0);
    if (rc == 0)
        *id = next;
    return rc;
}

typedef struct {
    uint64_t entries, bytes, dropped;
} batch_counts_t;

/* Writes one queued job inside `txn`. Returns an LMDB code or a STORE_E* code. */
static int write_job(store_t *s, MDB_txn *txn, const store__job_t *job, batch_counts_t *c)
{
    store__meta_t m;
    store__key_t key;
    uint8_t mv[STORE__META_LEN];
    MDB_val nk = {job->name_len, (void *)job->name};
    MDB_val k = {sizeof key.b, key.b}, v;
    int rc;

    int err = store__meta_get(s, txn, job->name, job->name_len, &m);
    if (err == STORE_ENOTFOUND && job->kind == STORE__JOB_VERSION) {
        c->dropped++;
        return 0;
    }
    if (err == STORE_ENOTFOUND) {
        memset(&m, 0, sizeof m);
        if ((rc = next_doc_id(s, txn, &m.doc_id)))
            return rc;
        m.next_seq = 1;
        m.created_ms = store__get_u64(job->value + STORE__ENTRY_TIME); /* the entry's time */
    } else if (err) {
        return err;
    }

    if (job->kind == STORE__JOB_VERSION) {
        store__key(&key, m.doc_id, job->seq);
        if (job->value_len == STORE__VERSION_HDR) { /* empty label: remove the name */
            rc = mdb_del(txn, s->db_versions, &k, NULL);
            return rc == MDB_NOTFOUND ? 0 : rc;
        }
        v.mv_size = job->value_len;
        v.mv_data = (void *)job->value;
        return mdb_put(txn, s->db_versions, &k, &v, 0);
    }
    /* The seq promised at queue time must be the next one; anything else
     * (another process appended) fails the store before it is reported. */
    if (job->seq != m.next_seq)
        return STORE_EINTERNAL;
    store__key(&key, m.doc_id, m.next_seq);
    v.mv_size = job->value_len;
    v.mv_data = (void *)job->value;
    if ((rc = mdb_put(txn, s->db_log, &k, &v, MDB_NOOVERWRITE)))
        return rc; /* MDB_KEYEXIST: the metadata is behind the log (corrupt) */
    size_t author_len = job->value[STORE__ENTRY_NAME_LEN];
    if (author_len) { /* first name wins: an existing record stays */
        uint8_t rv[STORE__REPLICA_HDR + STORE_AUTHOR_NAME_MAX];
        store__key(&key, m.doc_id, store__get_u64(job->value + STORE__ENTRY_AUTHOR));
        v.mv_size =
            store__replica_encode(rv, (const char *)job->value + STORE__ENTRY_HDR, author_len);
        v.mv_data = rv;
        rc = mdb_put(txn, s->db_replicas, &k, &v, MDB_NOOVERWRITE);
        if (rc && rc != MDB_KEYEXIST)
            return rc;
    }
    m.next_seq++;
    m.entries++;
    m.bytes += job->update_len;
    store__meta_encode(mv, &m);
    v.mv_size = sizeof mv;
    v.mv_data = mv;
    if ((rc = mdb_put(txn, s->db_docs, &nk, &v, 0)))
        return rc;
    c->entries++;
    c->bytes += job->update_len;
    return 0;
}

/*
 * Writes a whole batch in one transaction and commits it; on MDB_MAP_FULL
 * grows the map and starts over. Returns 0 or a STORE_E* code.
 */
static int write_batch(store_t *s, store__job_t *batch)
{
    for (;;) {
        MDB_txn *txn;
        batch_counts_t c = {0};
        uint64_t t0 = store__now_us();
        int rc = write_begin(s, &txn);
        if (rc)
            return store__from_mdb(rc);
        for (store__job_t *j = batch; j && rc == 0; j = j->next)
            rc = write_job(s, txn, j, &c);
        if (rc == 0) {
            rc = mdb_txn_commit(txn); /* frees the txn, also on failure */
        } else {
            mdb_txn_abort(txn);
        }
        pthread_rwlock_unlock(&s->resize);
        if (rc == MDB_MAP_FULL) {
            int err = grow(s);
            if (err)
                return err;
            continue;
        }
        if (rc)
            return rc < 0 && rc >= -299 && rc <= -200 ? rc : store__from_mdb(rc);
        store__stats_commit(s, store__now_us() - t0);
        pthread_mutex_lock(&s->stats_mu);
        s->stats.batches++;
        s->stats.entries_written += c.entries;
        s->stats.bytes_written += c.bytes;
        s->stats.versions_dropped += c.dropped;
        pthread_mutex_unlock(&s->stats_mu);
        return 0;
    }
}

/*
 * After a committed batch: every document that now has snapshot_every or
 * more entries after its latest snapshot owes one. Reads the committed
 * metadata in a short read transaction of the writer's own.
 */
static void note_owed_snapshots(store_t *s, const store__job_t *batch)
{
    MDB_txn *txn;
    pthread_rwlock_rdlock(&s->resize);
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) {
        pthread_rwlock_unlock(&s->resize);
        return;
    }
    const store__job_t *prev = NULL;
    for (const store__job_t *j = batch; j; prev = j, j = j->next) {
        store__meta_t m;
        if (j->kind != STORE__JOB_APPEND)
            continue;
        if (prev && prev->name_len == j->name_len && memcmp(prev->name, j->name, j->name_len) == 0)
            continue; /* runs of one document: check once */
        if (store__meta_get(s, txn, j->name, j->name_len, &m) == 0 &&
            m.next_seq - 1 - m.snapshot_seq >= s->snapshot_every)
            pending_add(s, j->name, j->name_len, false);
    }
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize);
}

/*
 * Writes a snapshot of the last owed document at its latest snapshot's seq +
 * snapshot_every: builds it from its latest good snapshot at or below that
 * and the log up to it inside the write transaction, encodes its state, and
 * stores it with its checksum. Snapshots thus lie exactly snapshot_every
 * apart however large the batches were, which bounds the replay of
 * store_doc_load_at(); a document owing more goes back on the list. A
 * document that will not build is skipped and counted (loads report the same
 * corruption to the server). Returns 0 or the STORE_E* code of a failed
 * commit.
 */
static int compact_one(store_t *s)
{
    store__pending_t p = s->pending[--s->n_pending];
    for (;;) {
        MDB_txn *txn;
        crdt_doc_t *doc = NULL;
        crdt_buf_t state = {0};
        store__meta_t m;
        store__key_t key;
        uint8_t mv[STORE__META_LEN];
        MDB_val k = {sizeof key.b, key.b}, v;
        uint64_t t0 = store__now_us();
        int rc = write_begin(s, &txn), err = 0;
        if (rc)
            return store__from_mdb(rc);
        err = store__meta_get(s, txn, p.name, p.name_len, &m);
        if (err || m.next_seq - 1 - m.snapshot_seq < s->snapshot_every) {
            mdb_txn_abort(txn);
            pthread_rwlock_unlock(&s->resize);
            return 0; /* nothing owed (or unreadable: loads will say so) */
        }
        uint64_t seq = m.snapshot_seq + s->snapshot_every;
        err = store__build(s, txn, &m, seq, COMPACT_CLIENT, &doc, NULL);
        if (err == 0 && crdt_doc_encode_state(doc, &state) != 0)
            err = STORE_ENOMEM;
        crdt_doc_free(doc);
        if (err) {
            mdb_txn_abort(txn);
            pthread_rwlock_unlock(&s->resize);
            pthread_mutex_lock(&s->stats_mu);
            s->stats.snapshot_errors++;
            pthread_mutex_unlock(&s->stats_mu);
            return 0;
        }
        store__key(&key, m.doc_id, seq);
        v.mv_size = STORE__SNAP_HDR + state.len;
        rc = mdb_put(txn, s->db_snaps, &k, &v, MDB_RESERVE);
        if (rc == 0) {
            uint8_t *out = v.mv_data;
            out[0] = STORE__VALUE_V1;
            store__put_u32(out + 1, store__crc32c(state.base, state.len));
            memcpy(out + STORE__SNAP_HDR, state.base, state.len);
            m.snapshot_seq = seq;
            store__meta_encode(mv, &m);
            MDB_val nk = {p.name_len, p.name}, mval = {sizeof mv, mv};
            rc = mdb_put(txn, s->db_docs, &nk, &mval, 0);
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&s->resize);
        size_t state_len = state.len;
        crdt_buf_dispose(&state);
        if (rc == MDB_MAP_FULL) {
            if ((err = grow(s)))
                return err;
            continue;
        }
        if (rc)
            return store__from_mdb(rc);
        store__stats_commit(s, store__now_us() - t0);
        pthread_mutex_lock(&s->stats_mu);
        s->stats.snapshots_written++;
        s->stats.snapshot_bytes += state_len;
        pthread_mutex_unlock(&s->stats_mu);
        if (m.next_seq - 1 - seq >= s->snapshot_every)
            pending_add(s, p.name, p.name_len, true);
        return 0;
    }
}

static void signal_fd(store_t *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->efd, &one, sizeof one);
    (void)n; /* EAGAIN only if the counter is near 2^64: it is readable then anyway */
}

static void set_failed(store_t *s, int err)
{
    pthread_mutex_lock(&s->mu);
    if (!s->failed)
        s->failed = err;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
    signal_fd(s);
}

static void free_jobs(store__job_t *j)
{
    while (j) {
        store__job_t *n = j->next;
        free(j);
        j = n;
    }
}

void *store__writer_main(void *arg)
{
    store_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->closing && (s->n_pending == 0 || s->failed) &&
               s->flush_req == s->flush_done)
            pthread_cond_wait(&s->work_cv, &s->mu);
        store__job_t *batch = s->head;
        s->head = s->tail = NULL;
        s->queued_entries = s->queued_bytes = 0;
        uint64_t gen = s->flush_req;
        int failed = s->failed;
        pthread_mutex_unlock(&s->mu);

        if (batch && !failed) {
            uint64_t last = batch->ticket;
            for (store__job_t *j = batch; j; j = j->next)
                last = j->ticket;
            int err = write_batch(s, batch);
            if (err) {
                set_failed(s, err);
                failed = err;
            } else {
                pthread_mutex_lock(&s->mu);
                s->durable = last;
                pthread_mutex_unlock(&s->mu);
                signal_fd(s);
                note_map_used(s);
                note_owed_snapshots(s, batch);
            }
        }
        free_jobs(batch);
        if (s->n_pending && !failed) {
            int err = compact_one(s);
            if (err) {
                set_failed(s, err);
                failed = err;
            }
        }
        if (failed)
            s->n_pending = 0;

        pthread_mutex_lock(&s->mu);
        if (s->n_pending == 0 && s->flush_done < gen) {
            s->flush_done = gen;
            pthread_cond_broadcast(&s->done_cv);
        }
        bool stop = s->closing && !s->head && s->n_pending == 0;
        if (stop && s->flush_done < s->flush_req) {
            s->flush_done = s->flush_req;
            pthread_cond_broadcast(&s->done_cv);
        }
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
    }
    return NULL;
}
