/* SPDX-License-Identifier: MIT */
/*
 * writer.c: the store's two threads.
 *
 * The writer thread is the only thread that opens LMDB write transactions.
 * Each round it takes everything queued and the snapshot the compaction
 * thread finished (if any), writes them in one transaction (group commit:
 * each log entry at the seq chosen when it was queued, which must be the
 * document's next seq, and the author's name in `replicas` if the replica is
 * new to the document; the snapshot, if the metadata still calls for it, as
 * two puts), commits (fsync unless no_sync), publishes the last ticket of the
 * round as durable and signals the eventfd. Then it lists the documents the
 * round left owing a snapshot for the compaction thread. A document owes one
 * after snapshot_every entries once their bytes reach a share of its latest
 * snapshot's length (or after snapshot_max_factor times as many entries): see
 * snap_owed(). MDB_MAP_FULL aborts the transaction, doubles the map with the
 * resize lock held exclusive (no transaction of this process open), and
 * retries the whole round. A commit that fails otherwise puts the store in its
 * failed state: queued and later work is dropped and no ticket is reported
 * durable again.
 *
 * Under steady load the writer commits at most once per commit_spacing_us
 * (store_options_t; commit spacing): when it finds fewer than
 * COMMIT_SPACING_JOBS jobs queued within that time of its previous commit's
 * start, it sleeps out the rest first, so more appends share the commit and
 * its fsync. An append after a quiet spell commits at once; a flush, a close,
 * a snapshot to store or a full enough queue found when the writer wakes does
 * not wait (one coming during the sleep waits for its end: appends wake
 * nobody then). ACKs wait at most that much longer; nothing is acknowledged
 * before its commit, as always.
 *
 * The compaction thread (niceness +10, so a busy machine gives the cores to
 * the event loop and the writer) takes one listed document at a time, and in
 * a read transaction picks where its next snapshot goes (the first seq where
 * the rule holds, snap_target()) and builds the document as of that seq from
 * its latest good snapshot and the log; after the transaction it encodes
 * (compresses) the state and hands it over. The build and the encoding, the
 * costly part, therefore never sit inside a write transaction: commits (and
 * the ACKs and deliveries behind them) wait at most for the two puts of a
 * finished snapshot. The document stays "in flight" until the writer stored or
 * dropped its snapshot, so its next one is planned from metadata recording
 * this one; a document owing several gets one per round, taking turns with
 * the others. Locks as in store_internal.h.
 */
#define _GNU_SOURCE /* syscall(SYS_gettid), pthread_setname_np */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Commit spacing (see the header comment): with the default millisecond, at
 * 10,000 appends a second a commit carries about ten of them instead of
 * three, and the fsyncs, page writes and wake-ups per append fall with it. */
#define COMMIT_SPACING_JOBS 64

/* The replica id of documents built to snapshot them (never edited). */
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
 * Remembers that document `name` owes a snapshot (once); called with cmu
 * held. `front` puts it where it is served last (compaction pops from the
 * end), so documents owing many snapshots take turns.
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

/* Slots of the set of committed author records (16 bytes each). */
#define KNOWN_CAP 65536

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The slot of (doc, rep) in s->known, or the empty slot where it would go. */
static size_t known_slot(const store_t *s, uint64_t doc, uint64_t rep)
{
    size_t mask = KNOWN_CAP - 1, i = (size_t)(mix64(doc * 0x9e3779b97f4a7c15ULL ^ rep) & mask);
    while (s->known[i][0] != 0 && (s->known[i][0] != doc || s->known[i][1] != rep))
        i = (i + 1) & mask;
    return i;
}

static bool known_has(const store_t *s, uint64_t doc, uint64_t rep)
{
    return s->known != NULL && s->known[known_slot(s, doc, rep)][0] != 0;
}

/* The batch recorded (doc, rep): remembered once it commits. */
static void fresh_push(store_t *s, uint64_t doc, uint64_t rep)
{
    if (s->n_fresh == s->cap_fresh) {
        size_t cap = s->cap_fresh ? s->cap_fresh * 2 : 64;
        uint64_t(*f)[2] = realloc(s->fresh, cap * sizeof *f);
        if (!f)
            return; /* not remembered: the record is just put again next time */
        s->fresh = f;
        s->cap_fresh = cap;
    }
    s->fresh[s->n_fresh][0] = doc;
    s->fresh[s->n_fresh][1] = rep;
    s->n_fresh++;
}

/* After a commit: the batch's author records are known to be stored. */
static void known_add_fresh(store_t *s)
{
    if (!s->known && !(s->known = calloc(KNOWN_CAP, sizeof *s->known)))
        s->n_fresh = 0;
    for (size_t k = 0; k < s->n_fresh; k++) {
        if (s->n_known >= KNOWN_CAP / 2) {
            memset(s->known, 0, KNOWN_CAP * sizeof *s->known);
            s->n_known = 0;
        }
        size_t i = known_slot(s, s->fresh[k][0], s->fresh[k][1]);
        if (s->known[i][0] == 0) {
            s->known[i][0] = s->fresh[k][0];
            s->known[i][1] = s->fresh[k][1];
            s->n_known++;
        }
    }
    s->n_fresh = 0;
}

static uint64_t hash_name(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Empties the batch's document table and makes room for `jobs` documents.
 * Returns 0 or STORE_ENOMEM. */
static int bdocs_reset(store_t *s, size_t jobs)
{
    size_t need = 16;
    while (need < jobs * 2)
        need *= 2;
    if (s->cap_bidx < need) {
        free(s->bidx);
        s->cap_bidx = 0;
        if (!(s->bidx = calloc(need, sizeof *s->bidx)))
            return STORE_ENOMEM;
        s->cap_bidx = need;
    } else {
        for (size_t i = 0; i < s->n_bdocs; i++) /* only the slots used */
            s->bidx[s->bdocs[i].slot] = 0;
    }
    s->n_bdocs = 0;
    if (s->cap_bdocs < jobs) {
        store__bdoc_t *b = realloc(s->bdocs, jobs * sizeof *b);
        if (!b)
            return STORE_ENOMEM;
        s->bdocs = b;
        s->cap_bdocs = jobs;
    }
    return 0;
}

/* The batch's entry for document `name` (state 0 when new to the batch). */
static store__bdoc_t *bdoc_find(store_t *s, const char *name, size_t len)
{
    size_t mask = s->cap_bidx - 1, i = (size_t)(hash_name(name, len) & mask);
    for (uint32_t v; (v = s->bidx[i]) != 0; i = (i + 1) & mask) {
        store__bdoc_t *bd = &s->bdocs[v - 1];
        if (bd->name_len == len && memcmp(bd->name, name, len) == 0)
            return bd;
    }
    store__bdoc_t *bd = &s->bdocs[s->n_bdocs++];
    bd->name = name;
    bd->name_len = (uint8_t)len;
    bd->state = 0;
    bd->slot = (uint32_t)i;
    s->bidx[i] = (uint32_t)s->n_bdocs;
    return bd;
}

/* Writes one queued job inside `txn`; its document's metadata changes in the
 * batch's table (written by write_batch). Returns an LMDB code or a STORE_E*
 * code. */
static int write_job(store_t *s, MDB_txn *txn, const store__job_t *job, batch_counts_t *c)
{
    store__bdoc_t *bd = bdoc_find(s, job->name, job->name_len);
    store__meta_t *m = &bd->m;
    store__key_t key;
    MDB_val k = {sizeof key.b, key.b}, v;
    int rc;

    if (bd->state == 0) {
        int err = store__meta_get(s, txn, job->name, job->name_len, m);
        if (err && err != STORE_ENOTFOUND)
            return err;
        bd->state = err ? STORE__BD_ABSENT : STORE__BD_CLEAN;
    }
    if (bd->state == STORE__BD_ABSENT) {
        if (job->kind == STORE__JOB_VERSION) {
            c->dropped++;
            return 0;
        }
        memset(m, 0, sizeof *m);
        if ((rc = next_doc_id(s, txn, &m->doc_id)))
            return rc;
        m->next_seq = 1;
        m->created_ms = store__get_u64(job->value + STORE__ENTRY_TIME); /* the entry's time */
        bd->state = STORE__BD_DIRTY;
    }

    if (job->kind == STORE__JOB_VERSION) {
        store__key(&key, m->doc_id, job->seq);
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
    if (job->seq != m->next_seq)
        return STORE_EINTERNAL;
    store__key(&key, m->doc_id, m->next_seq);
    v.mv_size = job->value_len;
    v.mv_data = (void *)job->value;
    if ((rc = mdb_put(txn, s->db_log, &k, &v, MDB_NOOVERWRITE)))
        return rc; /* MDB_KEYEXIST: the metadata is behind the log (corrupt) */
    size_t author_len = job->value[STORE__ENTRY_NAME_LEN];
    uint64_t author = store__get_u64(job->value + STORE__ENTRY_AUTHOR);
    if (author_len && !known_has(s, m->doc_id, author)) { /* first name wins */
        uint8_t rv[STORE__REPLICA_HDR + STORE_AUTHOR_NAME_MAX];
        store__key(&key, m->doc_id, author);
        v.mv_size =
            store__replica_encode(rv, (const char *)job->value + STORE__ENTRY_HDR, author_len);
        v.mv_data = rv;
        rc = mdb_put(txn, s->db_replicas, &k, &v, MDB_NOOVERWRITE);
        if (rc && rc != MDB_KEYEXIST)
            return rc;
        fresh_push(s, m->doc_id, author);
    }
    m->next_seq++;
    m->entries++;
    m->bytes += job->update_len;
    bd->state = STORE__BD_DIRTY;
    c->entries++;
    c->bytes += job->update_len;
    return 0;
}

/* Writes the metadata of every document the batch changed. */
static int write_metas(store_t *s, MDB_txn *txn)
{
    for (size_t i = 0; i < s->n_bdocs; i++) {
        const store__bdoc_t *bd = &s->bdocs[i];
        uint8_t mv[STORE__META_LEN];
        if (bd->state != STORE__BD_DIRTY)
            continue;
        store__meta_encode(mv, &bd->m);
        MDB_val nk = {bd->name_len, (void *)bd->name}, v = {sizeof mv, mv};
        int rc = mdb_put(txn, s->db_docs, &nk, &v, 0);
        if (rc)
            return rc;
    }
    return 0;
}

/*
 * Whether a document owes a snapshot when `entries` entries holding `bytes`
 * update bytes follow its latest snapshot, whose state is `snap_len` bytes
 * (0 if none or unknown): at least snapshot_every entries, and either their
 * bytes reach snapshot_percent % of snap_len or there are snapshot_cap of
 * them. So the snapshot bytes written are at most 100 / snapshot_percent
 * times the log bytes written (besides one snapshot per snapshot_every entries
 * while a document is small), and the replay after a snapshot stays bounded
 * by its length and by snapshot_cap entries.
 */
static bool snap_owed(const store_t *s, uint64_t entries, uint64_t bytes, uint64_t snap_len)
{
    if (entries < s->snapshot_every)
        return false;
    if (entries >= s->snapshot_cap)
        return true;
    uint64_t need = snap_len > UINT64_MAX / s->snapshot_percent
                        ? UINT64_MAX
                        : snap_len * s->snapshot_percent / 100;
    return bytes >= need;
}

static bool meta_owes(const store_t *s, const store__meta_t *m)
{
    return snap_owed(s, m->next_seq - 1 - m->snapshot_seq, m->bytes - m->snapshot_bytes,
                     m->snapshot_len);
}

/*
 * Stores the snapshot the compaction thread handed over, inside the round's
 * transaction, if the document's metadata (as the batch left it) still calls
 * for it: the same doc id, its latest snapshot below the snapshot's seq, and
 * that seq inside the log. Otherwise it is dropped (*stored false). Two puts:
 * the snapshot, and the metadata with the batch's (write_metas).
 */
static int put_snapshot(store_t *s, MDB_txn *txn, const store__snap_t *sn, bool *stored)
{
    store__bdoc_t *bd = bdoc_find(s, sn->name, sn->name_len);
    store__meta_t *m = &bd->m;
    *stored = false;
    if (bd->state == 0) {
        int err = store__meta_get(s, txn, sn->name, sn->name_len, m);
        bd->state = err ? STORE__BD_ABSENT : STORE__BD_CLEAN;
        /* Unreadable metadata: dropped here; the next batch or load says why. */
    }
    if (bd->state == STORE__BD_ABSENT || m->doc_id != sn->doc_id || m->snapshot_seq >= sn->seq ||
        sn->seq >= m->next_seq || sn->bytes_at > m->bytes)
        return 0;
    store__key_t key;
    store__key(&key, m->doc_id, sn->seq);
    MDB_val k = {sizeof key.b, key.b}, v = {STORE__SNAP_HDR + sn->state.len, NULL};
    int rc = mdb_put(txn, s->db_snaps, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    uint8_t *out = v.mv_data;
    out[0] = STORE__VALUE_V1;
    store__put_u32(out + 1, sn->crc);
    memcpy(out + STORE__SNAP_HDR, sn->state.base, sn->state.len);
    m->snapshot_seq = sn->seq;
    m->snapshot_len = sn->state.len;
    m->snapshot_bytes = sn->bytes_at;
    bd->state = STORE__BD_DIRTY;
    *stored = true;
    return 0;
}

/*
 * Writes one round in one transaction and commits it: the whole batch of
 * queued jobs (may be NULL) and the snapshot handed over (may be NULL); on
 * MDB_MAP_FULL grows the map and starts over. Each document's metadata is
 * read once and written once. *stored says whether the snapshot was written.
 * Returns 0 or a STORE_E* code.
 */
static int write_round(store_t *s, store__job_t *batch, const store__snap_t *snap, bool *stored)
{
    size_t jobs = 0;
    for (store__job_t *j = batch; j; j = j->next)
        jobs++;
    for (;;) {
        MDB_txn *txn;
        batch_counts_t c = {0};
        uint64_t t0 = store__now_us();
        int err = bdocs_reset(s, jobs + 1);
        if (err)
            return err;
        s->n_fresh = 0;
        *stored = false;
        int rc = write_begin(s, &txn);
        if (rc)
            return store__from_mdb(rc);
        for (store__job_t *j = batch; j && rc == 0; j = j->next)
            rc = write_job(s, txn, j, &c);
        if (rc == 0 && snap)
            rc = put_snapshot(s, txn, snap, stored);
        if (rc == 0)
            rc = write_metas(s, txn);
        if (rc == 0) {
            rc = mdb_txn_commit(txn); /* frees the txn, also on failure */
        } else {
            mdb_txn_abort(txn);
        }
        pthread_rwlock_unlock(&s->resize);
        if (rc == MDB_MAP_FULL) {
            if ((err = grow(s)))
                return err;
            continue;
        }
        if (rc)
            return rc < 0 && rc >= -299 && rc <= -200 ? rc : store__from_mdb(rc);
        if (batch || *stored)
            store__stats_commit(s, store__now_us() - t0);
        pthread_mutex_lock(&s->stats_mu);
        if (batch)
            s->stats.batches++;
        s->stats.entries_written += c.entries;
        s->stats.bytes_written += c.bytes;
        s->stats.versions_dropped += c.dropped;
        if (*stored) {
            s->stats.snapshots_written++;
            s->stats.snapshot_bytes += snap->state.len;
        }
        pthread_mutex_unlock(&s->stats_mu);
        known_add_fresh(s);
        return 0;
    }
}

/*
 * The update bytes of a log entry value, from its lengths only (no checksum:
 * the build that follows checks every entry it replays). Returns false if the
 * value is malformed.
 */
static bool entry_update_len(const MDB_val *v, uint64_t *len)
{
    size_t hdr, name_len;
    if (store__entry_layout(v, &hdr, &name_len) != 0)
        return false;
    *len = v->mv_size - hdr - name_len;
    return true;
}

/*
 * Where the next snapshot of document `m` goes: the first seq after its
 * latest snapshot at which snap_owed() holds (counting the entries and update
 * bytes from the snapshot on), so snapshots lie where the rule first holds
 * whatever the batch sizes were. Walks the log from the snapshot on (lengths
 * only) up to that seq, so a long backlog is not walked again by every
 * snapshot it calls for; only metadata written before these counts were kept
 * (a snapshot of unknown length) is walked to the head once, to learn the
 * bytes up to the target as the log's total less what follows. Sets *seq and
 * *bytes_at (the update bytes of entries 1..seq, for the metadata). If the
 * walk meets a malformed entry or a gap, or the rule never holds (the
 * metadata's byte counts disagree with the log), the head is used; the build
 * then reports any damage. Returns an LMDB code.
 */
static int snap_target(store_t *s, MDB_txn *txn, const store__meta_t *m, uint64_t *seq,
                       uint64_t *bytes_at)
{
    MDB_cursor *cur;
    store__key_t key;
    MDB_val k = {sizeof key.b, key.b}, v;
    uint64_t head = m->next_seq - 1, expect = m->snapshot_seq + 1, at, len;
    uint64_t upto = 0, total = 0; /* bytes of entries up to the target; of all walked */
    bool found = false, whole = false;
    bool unknown = m->snapshot_seq > 0 && m->snapshot_len == 0; /* format-1 metadata */
    int rc = mdb_cursor_open(txn, s->db_log, &cur);
    if (rc)
        return rc;
    store__key(&key, m->doc_id, expect);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && expect <= head) {
        if (store__key_in_doc(&k, m->doc_id, &at) != 1 || at != expect ||
            !entry_update_len(&v, &len))
            break;
        total += len;
        if (!found && snap_owed(s, expect - m->snapshot_seq, total, m->snapshot_len)) {
            found = true;
            *seq = expect;
            upto = total;
            if (!unknown)
                break;
        }
        if (expect == head)
            whole = true;
        expect++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (!found) {
        *seq = head;
        upto = total;
    }
    uint64_t after = total - upto;
    if (unknown && whole && after <= m->bytes)
        *bytes_at = m->bytes - after;
    else
        *bytes_at = m->snapshot_bytes + upto;
    if (*bytes_at > m->bytes)
        *bytes_at = m->bytes;
    return 0;
}

/*
 * Builds the snapshot document `p` owes, on the compaction thread: in one read
 * transaction, reads its metadata, picks the seq with snap_target(), builds
 * the document as of that seq (its latest good snapshot at or below it plus
 * the log up to it) and ends the transaction; then encodes the state and
 * checksums it. Sets *out (NULL when nothing is owed, or the metadata is
 * unreadable: loads will say so). A document that will not build, or a read
 * that fails, is skipped and counted in snapshot_errors (the next append to
 * the document lists it again).
 */
static void build_snapshot(store_t *s, const store__pending_t *p, store__snap_t **out)
{
    MDB_txn *txn;
    crdt_doc_t *doc = NULL;
    store__meta_t m;
    uint64_t seq = 0, bytes_at = 0;
    *out = NULL;
    int err = store__read_begin(s, &txn);
    if (err == 0) {
        if (store__meta_get(s, txn, p->name, p->name_len, &m) != 0 || !meta_owes(s, &m)) {
            store__read_end(s, txn);
            return;
        }
        int rc = snap_target(s, txn, &m, &seq, &bytes_at);
        err = rc ? store__from_mdb(rc) : store__build(s, txn, &m, seq, COMPACT_CLIENT, &doc, NULL);
        store__read_end(s, txn);
    }
    store__snap_t *sn = NULL;
    if (err == 0 && !(sn = calloc(1, sizeof *sn)))
        err = STORE_ENOMEM;
    if (err == 0 && crdt_doc_encode_state_ex(doc, s->snapshot_flags, &sn->state) != 0)
        err = STORE_ENOMEM;
    crdt_doc_free(doc);
    if (err) {
        free(sn);
        pthread_mutex_lock(&s->stats_mu);
        s->stats.snapshot_errors++;
        pthread_mutex_unlock(&s->stats_mu);
        return;
    }
    sn->name_len = p->name_len;
    memcpy(sn->name, p->name, p->name_len);
    sn->doc_id = m.doc_id;
    sn->seq = seq;
    sn->bytes_at = bytes_at;
    sn->crc = store__crc32c(sn->state.base, sn->state.len);
    *out = sn;
}

static void snap_free(store__snap_t *sn)
{
    if (sn) {
        crdt_buf_dispose(&sn->state);
        free(sn);
    }
}

/* The compaction thread's niceness above the process's: on a busy machine it
 * yields the cores to the event loop and the writer. */
#define COMPACT_NICE 10

/*
 * The compaction thread: takes the last listed document (one at a time),
 * builds its snapshot and hands it to the writer through `ready`. The
 * document stays in flight until the writer stored or dropped the snapshot;
 * the writer then lists it again if it owes another.
 */
void *store__compactor_main(void *arg)
{
    store_t *s = arg;
    /* Linux: a thread id as PRIO_PROCESS changes that thread only. Failure
     * (a sandbox refusing it) just leaves the thread at the process's. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), COMPACT_NICE);
    (void)pthread_setname_np(pthread_self(), "weft-compact"); /* for top -H, perf */
    for (;;) {
        pthread_mutex_lock(&s->cmu);
        while (!s->compact_stop && (s->compact_dead || s->in_flight || s->n_pending == 0))
            pthread_cond_wait(&s->compact_cv, &s->cmu);
        if (s->compact_stop) {
            pthread_mutex_unlock(&s->cmu);
            break;
        }
        store__pending_t p = s->pending[--s->n_pending];
        s->in_flight = true;
        pthread_mutex_unlock(&s->cmu);

        store__snap_t *sn;
        build_snapshot(s, &p, &sn);
        if (sn) {
            pthread_mutex_lock(&s->mu);
            if (!s->failed) {
                s->ready = sn; /* the writer clears in_flight */
                sn = NULL;
                pthread_cond_signal(&s->work_cv);
                pthread_mutex_unlock(&s->mu);
                continue;
            }
            pthread_mutex_unlock(&s->mu);
            snap_free(sn);
        }
        pthread_mutex_lock(&s->cmu);
        s->in_flight = false;
        pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->cmu);
    }
    return NULL;
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

/*
 * After a round: lists the documents it changed that now owe a snapshot (the
 * one whose snapshot was just stored first, at the front, so documents owing
 * many take turns), ends the snapshot's flight, and wakes the compaction
 * thread and flushes waiting for it. A failed store lists nothing again.
 */
static void compaction_after(store_t *s, bool wrote, const store__snap_t *snap, bool stored,
                             bool failed)
{
    pthread_mutex_lock(&s->cmu);
    if (failed) {
        s->compact_dead = true;
        s->n_pending = 0;
    } else if (wrote) {
        if (stored) {
            const store__bdoc_t *bd = bdoc_find(s, snap->name, snap->name_len);
            if (meta_owes(s, &bd->m))
                pending_add(s, snap->name, snap->name_len, true);
        }
        for (size_t i = 0; i < s->n_bdocs; i++) {
            const store__bdoc_t *bd = &s->bdocs[i];
            if (bd->state == STORE__BD_DIRTY && meta_owes(s, &bd->m))
                pending_add(s, bd->name, bd->name_len, false);
        }
    }
    if (snap)
        s->in_flight = false;
    pthread_cond_signal(&s->compact_cv);
    pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->cmu);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* With s->mu held and appends queued: how long the round should wait for
 * more (0: none), given when the previous round's commit started. Only
 * appends may wait; a snapshot to store, a flush, a close or a queue of
 * COMMIT_SPACING_JOBS go at once. */
static int64_t spacing_wait_ns(const store_t *s, int64_t last_start)
{
    int64_t wait;
    if (s->commit_spacing_ns == 0 || s->ready || s->closing || s->flush_req != s->flush_done ||
        s->queued_entries >= COMMIT_SPACING_JOBS)
        return 0;
    wait = last_start + s->commit_spacing_ns - mono_ns();
    return wait > 0 ? wait : 0;
}

void *store__writer_main(void *arg)
{
    store_t *s = arg;
    int64_t last_start = 0, wait;
    (void)pthread_setname_np(pthread_self(), "weft-writer");
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->ready && !s->closing && s->flush_req == s->flush_done)
            pthread_cond_wait(&s->work_cv, &s->mu);
        /* Commit spacing: a plain sleep, not a timed wait, so the appends
         * queued meanwhile signal no waiter and cost no wake-up. */
        if (s->head && (wait = spacing_wait_ns(s, last_start)) > 0) {
            struct timespec ts = {(time_t)(wait / 1000000000), (long)(wait % 1000000000)};
            pthread_mutex_unlock(&s->mu);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&s->mu);
        }
        last_start = mono_ns();
        store__job_t *batch = s->head;
        s->head = s->tail = NULL;
        s->queued_entries = s->queued_bytes = 0;
        store__snap_t *snap = s->ready;
        s->ready = NULL;
        uint64_t gen = s->flush_req;
        int failed = s->failed;
        pthread_mutex_unlock(&s->mu);

        bool wrote = false, stored = false;
        if ((batch || snap) && !failed) {
            uint64_t last = 0;
            for (store__job_t *j = batch; j; j = j->next)
                last = j->ticket;
            int err = write_round(s, batch, snap, &stored);
            if (err) {
                set_failed(s, err);
                failed = err;
            } else {
                wrote = true;
                if (batch) {
                    pthread_mutex_lock(&s->mu);
                    s->durable = last;
                    pthread_mutex_unlock(&s->mu);
                    signal_fd(s);
                }
                note_map_used(s);
            }
        }
        if (wrote || snap || failed) /* before the jobs go: bdocs point at their names */
            compaction_after(s, wrote, snap, stored, failed != 0);
        free_jobs(batch);
        snap_free(snap);

        pthread_mutex_lock(&s->mu);
        if (s->flush_done < gen) { /* what was queued before it is committed and listed */
            s->flush_done = gen;
            pthread_cond_broadcast(&s->done_cv);
        }
        bool stop = s->closing && !s->head && !s->ready;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
    }
    return NULL;
}
