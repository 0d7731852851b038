/* SPDX-License-Identifier: MIT */
/*
 * store.c: the storage module's public entry points other than the writer
 * thread (writer.c): opening and closing the LMDB environment (indexing the
 * authors of stores written before the replica-name index existed), queueing
 * appends and versions for the writer with the per-document next-seq cache
 * that assigns sequence numbers at queue time, tickets, the completion
 * eventfd, flush, statistics, and the read paths (document load = snapshot +
 * log tail, at the head or at any seq; forward and reverse log walks, version
 * walks, replica names, document stats). Reads run on the caller's thread,
 * each inside one read transaction (the environment is opened MDB_NOTLS) held
 * with the resize rwlock shared; see store_internal.h for the lock rules.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np: writer-preferring rwlock */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAP_INITIAL ((size_t)64 << 20)
#define DEFAULT_MAP_MAX ((size_t)64 << 30)
#define DEFAULT_SNAPSHOT_EVERY 1000u
#define DEFAULT_COMMIT_SPACING_US 1000u
#define DEFAULT_SNAPSHOT_LOG_PERCENT 100u
#define DEFAULT_SNAPSHOT_MAX_FACTOR 64u

/* ---- transactions ------------------------------------------------------ */

/*
 * Begins a read transaction holding the resize lock shared. If another
 * process grew the map (MDB_MAP_RESIZED), adopts its size with the lock held
 * exclusive (no transaction of this process is open then) and retries.
 */
int store__read_begin(store_t *s, MDB_txn **txn)
{
    for (;;) {
        pthread_rwlock_rdlock(&s->resize);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&s->resize);
        if (rc != MDB_MAP_RESIZED)
            return store__from_mdb(rc);
        pthread_rwlock_wrlock(&s->resize);
        rc = mdb_env_set_mapsize(s->env, 0);
        pthread_rwlock_unlock(&s->resize);
        if (rc)
            return store__from_mdb(rc);
    }
}

void store__read_end(store_t *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize);
}

int store__meta_get(store_t *s, MDB_txn *txn, const char *name, size_t len, store__meta_t *m)
{
    MDB_val k = {len, (void *)name}, v;
    int rc = mdb_get(txn, s->db_docs, &k, &v);
    if (rc)
        return store__from_mdb(rc);
    return store__meta_parse(&v, m);
}

/* ---- building a document ---------------------------------------------- */

/*
 * Walks the document's snapshots from the newest at or below `upto` down
 * until one has a good format byte and checksum and loads; counts the ones
 * skipped. Then applies the log from the entry after it, checking that the
 * sequence numbers are exactly snapshot+1 .. upto. For a load of the head
 * (upto == next_seq - 1) the walk starts past the document's last key, so a
 * snapshot claiming a seq beyond the log is counted as a fallback too.
 */
int store__build(store_t *s, MDB_txn *txn, const store__meta_t *m, uint64_t upto, uint64_t client,
                 crdt_doc_t **out, store_load_info_t *info)
{
    MDB_cursor *cur = NULL;
    crdt_doc_t *doc = NULL;
    store_load_info_t inf = {0};
    store__key_t key;
    MDB_val k, v;
    uint64_t seq;
    int rc, err;

    rc = mdb_cursor_open(txn, s->db_snaps, &cur);
    if (rc) {
        err = store__from_mdb(rc);
        goto fail;
    }
    if (upto >= m->next_seq) {
        err = STORE_EINVAL;
        goto fail;
    }
    if (upto == m->next_seq - 1)
        store__key(&key, m->doc_id + 1, 0);
    else
        store__key(&key, m->doc_id, upto + 1);
    k.mv_size = sizeof key.b;
    k.mv_data = key.b;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    else if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    while (rc == 0) {
        if (store__key_in_doc(&k, m->doc_id, &seq) != 1)
            break; /* a malformed key is skipped like a bad snapshot would be */
        const uint8_t *state;
        size_t state_len;
        if (seq <= upto && store__snap_parse(&v, &state, &state_len) == 0) {
            int crc = crdt_doc_load_trusted(client, NULL, state, state_len, &doc);
            if (crc == 0) {
                inf.snapshot_seq = seq;
                break;
            }
            if (crc == CRDT_ENOMEM) {
                err = STORE_ENOMEM;
                goto fail;
            }
        }
        inf.snapshot_fallbacks++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        err = store__from_mdb(rc);
        goto fail;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    if (!doc && crdt_doc_new(client, NULL, &doc) != 0) {
        err = STORE_ENOMEM;
        goto fail;
    }

    rc = mdb_cursor_open(txn, s->db_log, &cur);
    if (rc) {
        err = store__from_mdb(rc);
        goto fail;
    }
    uint64_t expect = inf.snapshot_seq + 1;
    store__key(&key, m->doc_id, expect);
    k.mv_size = sizeof key.b;
    k.mv_data = key.b;
    rc = expect <= upto ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : MDB_NOTFOUND;
    while (rc == 0) {
        int in = store__key_in_doc(&k, m->doc_id, &seq);
        if (in == 0)
            break;
        if (in < 0 || seq != expect) {
            err = STORE_ECORRUPT;
            goto fail;
        }
        store_entry_t e;
        err = store__entry_parse(&v, &e);
        if (err)
            goto fail;
        int crc = crdt_doc_apply_update(doc, e.update, e.update_len);
        if (crc) {
            err = crc == CRDT_ENOMEM ? STORE_ENOMEM : STORE_ECORRUPT;
            goto fail;
        }
        expect++;
        inf.entries_replayed++;
        if (expect > upto && upto != m->next_seq - 1)
            break; /* an earlier version; a head load goes on to check what follows */
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        err = store__from_mdb(rc);
        goto fail;
    }
    if (expect != upto + 1) { /* entries missing at the end of the range */
        err = STORE_ECORRUPT;
        goto fail;
    }
    mdb_cursor_close(cur);
    inf.last_seq = upto;
    *out = doc;
    if (info)
        *info = inf;
    if (inf.snapshot_fallbacks) {
        pthread_mutex_lock(&s->stats_mu);
        s->stats.snapshot_fallbacks += inf.snapshot_fallbacks;
        pthread_mutex_unlock(&s->stats_mu);
    }
    return 0;

fail:
    if (cur)
        mdb_cursor_close(cur);
    crdt_doc_free(doc);
    return err;
}

/* ---- reads --------------------------------------------------------------- */

int store_doc_load(store_t *s, const char *name, size_t name_len, uint64_t client, crdt_doc_t **out,
                   store_load_info_t *info)
{
    MDB_txn *txn;
    store__meta_t m;
    if (!s || !out || !store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    if (err == 0)
        err = store__build(s, txn, &m, m.next_seq - 1, client, out, info);
    store__read_end(s, txn);
    return err;
}

int store_doc_load_at(store_t *s, const char *name, size_t name_len, uint64_t client, uint64_t seq,
                      crdt_doc_t **out, store_load_info_t *info)
{
    MDB_txn *txn;
    store__meta_t m;
    if (!s || !out || !store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    if (err == 0 && seq >= m.next_seq)
        err = STORE_EINVAL;
    if (err == 0 && seq > 0) {
        err = store__build(s, txn, &m, seq, client, out, info);
    } else if (err == 0) { /* version 0: the empty document */
        crdt_doc_t *doc;
        if (crdt_doc_new(client, NULL, &doc) != 0) {
            err = STORE_ENOMEM;
        } else {
            *out = doc;
            if (info)
                memset(info, 0, sizeof *info);
        }
    }
    store__read_end(s, txn);
    return err;
}

int store_doc_stat(store_t *s, const char *name, size_t name_len, store_doc_stat_t *out)
{
    MDB_txn *txn;
    store__meta_t m;
    if (!s || !out || !store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    store__read_end(s, txn);
    if (err)
        return err;
    out->doc_id = m.doc_id;
    out->entries = m.entries;
    out->bytes = m.bytes;
    out->last_seq = m.next_seq - 1;
    out->snapshot_seq = m.snapshot_seq;
    out->created_ms = m.created_ms;
    out->snapshot_len = m.snapshot_len;
    return 0;
}

/*
 * Positions `cur` on the first record of `doc_id` with seq >= from; the walk
 * then stops at the first record of another document. Returns an LMDB code.
 */
static int range_first(MDB_cursor *cur, uint64_t doc_id, uint64_t from, MDB_val *k, MDB_val *v,
                       store__key_t *key)
{
    store__key(key, doc_id, from);
    k->mv_size = sizeof key->b;
    k->mv_data = key->b;
    return mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
}

/*
 * One walk over a document's records in `dbi`: a first pass checks every
 * record (key size, value parse), a second pass calls the callback, so the
 * callback is never called when the walk fails.
 */
typedef struct {
    int kind; /* 0: log entries, 1: versions */
    store_log_cb log_cb;
    store_version_cb ver_cb;
    void *ctx;
} walk_t;

static int walk(store_t *s, MDB_dbi dbi, const char *name, size_t name_len, uint64_t from,
                const walk_t *w)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    store__meta_t m;
    store__key_t key;
    MDB_val k, v;
    uint64_t seq;
    int rc;

    if (!store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    if (err)
        goto done;
    rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) {
        err = store__from_mdb(rc);
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) {
        rc = range_first(cur, m.doc_id, from, &k, &v, &key);
        while (rc == 0) {
            int in = store__key_in_doc(&k, m.doc_id, &seq);
            if (in < 0) {
                err = STORE_ECORRUPT;
                goto done;
            }
            if (in == 0)
                break;
            int stop = 0;
            if (w->kind == 0) {
                store_entry_t e;
                err = store__entry_parse(&v, &e);
                if (err == 0 && seq >= m.next_seq)
                    err = STORE_ECORRUPT; /* beyond what the metadata says exists */
                if (err)
                    goto done;
                if (pass == 1)
                    stop = w->log_cb(w->ctx, seq, &e);
            } else {
                store_version_t ver;
                err = store__version_parse(&v, &ver);
                if (err)
                    goto done;
                if (pass == 1)
                    stop = w->ver_cb(w->ctx, seq, &ver);
            }
            if (stop)
                goto done;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc != 0 && rc != MDB_NOTFOUND) {
            err = store__from_mdb(rc);
            goto done;
        }
    }
done:
    if (cur)
        mdb_cursor_close(cur);
    store__read_end(s, txn);
    return err;
}

int store_log_read(store_t *s, const char *name, size_t name_len, uint64_t from_seq,
                   store_log_cb cb, void *ctx)
{
    if (!s || !cb)
        return STORE_EINVAL;
    walk_t w = {0, cb, NULL, ctx};
    return walk(s, s->db_log, name, name_len, from_seq, &w);
}

int store_version_list(store_t *s, const char *name, size_t name_len, store_version_cb cb,
                       void *ctx)
{
    if (!s || !cb)
        return STORE_EINVAL;
    walk_t w = {1, NULL, cb, ctx};
    return walk(s, s->db_versions, name, name_len, 0, &w);
}

/*
 * The reverse walk checks as it goes (a first checking pass would cost the
 * whole range before the first call): it positions on the first key after
 * `from`, steps back, and expects exactly from, from - 1, ..., 1.
 */
int store_log_read_rev(store_t *s, const char *name, size_t name_len, uint64_t from_seq,
                       store_log_cb cb, void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    store__meta_t m;
    store__key_t key;
    MDB_val k, v;
    uint64_t seq;
    int rc;

    if (!s || !cb || !store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    if (err)
        goto done;
    uint64_t expect = from_seq < m.next_seq ? from_seq : m.next_seq - 1;
    if (expect == 0)
        goto done;
    rc = mdb_cursor_open(txn, s->db_log, &cur);
    if (rc) {
        err = store__from_mdb(rc);
        goto done;
    }
    rc = range_first(cur, m.doc_id, expect + 1, &k, &v, &key);
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    else if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    while (rc == 0 && expect > 0) {
        int in = store__key_in_doc(&k, m.doc_id, &seq);
        if (in != 1 || seq != expect) { /* a gap, a foreign or malformed key */
            err = STORE_ECORRUPT;
            goto done;
        }
        store_entry_t e;
        if ((err = store__entry_parse(&v, &e)))
            goto done;
        if (cb(ctx, seq, &e))
            goto done;
        if (--expect > 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    if (rc == MDB_NOTFOUND)
        err = STORE_ECORRUPT; /* entries missing at the start of the log */
    else if (rc)
        err = store__from_mdb(rc);
done:
    if (cur)
        mdb_cursor_close(cur);
    store__read_end(s, txn);
    return err;
}

int store_replica_name(store_t *s, const char *name, size_t name_len, uint64_t replica,
                       char out[STORE_AUTHOR_NAME_MAX + 1])
{
    MDB_txn *txn;
    store__meta_t m;
    store__key_t key;
    if (!s || !out || !store__name_ok(name, name_len))
        return STORE_EINVAL;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, name_len, &m);
    if (err == 0) {
        store__key(&key, m.doc_id, replica);
        MDB_val k = {sizeof key.b, key.b}, v;
        const char *author;
        size_t len;
        int rc = mdb_get(txn, s->db_replicas, &k, &v);
        if (rc)
            err = store__from_mdb(rc);
        else if ((err = store__replica_parse(&v, &author, &len)) == 0) {
            memcpy(out, author, len);
            out[len] = 0;
        }
    }
    store__read_end(s, txn);
    return err;
}

/* ---- the queue ---------------------------------------------------------- */

/*
 * The next-seq cache: a chained hash table of documents appended to in this
 * process, under `mu`. Entries whose queued work is all durable are evicted
 * when the table passes SEQ_CACHE_SWEEP entries (a later append reloads them
 * from the metadata, which then holds the same value).
 */
#define SEQ_CACHE_SWEEP 4096u

static size_t seq_hash(const char *name, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32));
}

static store__seq_t *seq_find(store_t *s, const char *name, size_t len)
{
    if (!s->cap_seqs)
        return NULL;
    store__seq_t *e = s->seqs[seq_hash(name, len) & (s->cap_seqs - 1)];
    while (e && (e->name_len != len || memcmp(e->name, name, len) != 0))
        e = e->next;
    return e;
}

/* Removes every entry whose queued entries are all durable. */
static void seq_sweep(store_t *s)
{
    for (size_t i = 0; i < s->cap_seqs; i++) {
        store__seq_t **pp = &s->seqs[i];
        while (*pp) {
            store__seq_t *e = *pp;
            if (e->last_ticket <= s->durable) {
                *pp = e->next;
                free(e);
                s->n_seqs--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Links a new entry, growing the table (load factor 1). Returns 0 or STORE_ENOMEM. */
static int seq_insert(store_t *s, store__seq_t *e)
{
    if (s->n_seqs >= SEQ_CACHE_SWEEP && s->n_seqs >= s->cap_seqs)
        seq_sweep(s);
    if (s->n_seqs >= s->cap_seqs) {
        size_t cap = s->cap_seqs ? s->cap_seqs * 2 : 64;
        store__seq_t **t = calloc(cap, sizeof *t);
        if (!t)
            return STORE_ENOMEM;
        for (size_t i = 0; i < s->cap_seqs; i++)
            for (store__seq_t *x = s->seqs[i], *n; x; x = n) {
                n = x->next;
                size_t h = seq_hash(x->name, x->name_len) & (cap - 1);
                x->next = t[h];
                t[h] = x;
            }
        free(s->seqs);
        s->seqs = t;
        s->cap_seqs = cap;
    }
    size_t h = seq_hash(e->name, e->name_len) & (s->cap_seqs - 1);
    e->next = s->seqs[h];
    s->seqs[h] = e;
    s->n_seqs++;
    return 0;
}

/*
 * The cache entry of a document, loaded from its committed metadata if
 * missing (called with `mu` held; see the lock order in store_internal.h).
 * Returns 0 or a STORE_E* code.
 */
static int seq_get(store_t *s, const char *name, size_t len, store__seq_t **out)
{
    store__seq_t *e = seq_find(s, name, len);
    if (e) {
        *out = e;
        return 0;
    }
    MDB_txn *txn;
    store__meta_t m;
    int err = store__read_begin(s, &txn);
    if (err)
        return err;
    err = store__meta_get(s, txn, name, len, &m);
    store__read_end(s, txn);
    if (err == STORE_ENOTFOUND) {
        m.next_seq = 1;
        err = 0;
    }
    if (err)
        return err;
    e = malloc(sizeof *e);
    if (!e)
        return STORE_ENOMEM;
    e->next_seq = m.next_seq;
    e->last_ticket = 0;
    e->name_len = (uint8_t)len;
    memcpy(e->name, name, len);
    if ((err = seq_insert(s, e))) {
        free(e);
        return err;
    }
    *out = e;
    return 0;
}

/*
 * Links a job at the tail and gives it the next ticket; an APPEND job also
 * gets its document's next seq (*seq_out) and must restore an earlier seq.
 * Returns 0 (and frees the job) if the store is down or the seq cannot be
 * assigned.
 */
static uint64_t enqueue(store_t *s, store__job_t *job, size_t bytes, uint64_t restore_of,
                        uint64_t *seq_out)
{
    uint64_t t = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->failed && !s->closing) {
        if (job->kind == STORE__JOB_APPEND) {
            store__seq_t *e;
            if (seq_get(s, job->name, job->name_len, &e) != 0 || restore_of >= e->next_seq ||
                e->next_seq >= UINT64_MAX - 1)
                goto out;
            job->seq = e->next_seq++;
            e->last_ticket = s->last_ticket + 1;
            if (seq_out)
                *seq_out = job->seq;
        }
        t = job->ticket = ++s->last_ticket;
        job->next = NULL;
        if (s->tail)
            s->tail->next = job;
        else
            s->head = job;
        s->tail = job;
        s->queued_entries++;
        s->queued_bytes += bytes;
        pthread_cond_signal(&s->work_cv);
    }
out:
    pthread_mutex_unlock(&s->mu);
    if (!t)
        free(job);
    return t;
}

static store__job_t *job_new(int kind, const char *name, size_t name_len, size_t value_len)
{
    store__job_t *job = malloc(sizeof *job + value_len);
    if (!job)
        return NULL;
    job->kind = kind;
    job->name_len = (uint8_t)name_len;
    memcpy(job->name, name, name_len);
    job->value_len = value_len;
    job->update_len = 0;
    job->seq = 0;
    return job;
}

uint64_t store_append_ex(store_t *s, const store_append_t *a, uint64_t *seq_out)
{
    if (!s || !a || !store__name_ok(a->name, a->name_len) || !a->update || a->update_len == 0 ||
        a->update_len > STORE_UPDATE_MAX || a->author_name_len > STORE_AUTHOR_NAME_MAX ||
        (a->author_name_len && !a->author_name))
        return 0;
    size_t vlen = STORE__ENTRY_HDR + a->author_name_len + a->update_len;
    store__job_t *job = job_new(STORE__JOB_APPEND, a->name, a->name_len, vlen);
    if (!job)
        return 0;
    store_entry_t e = {a->update,          a->update_len, a->author,    a->author_name,
                       a->author_name_len, a->time_ms,    a->restore_of};
    store__entry_encode(job->value, &e);
    job->update_len = a->update_len;
    return enqueue(s, job, a->update_len, a->restore_of, seq_out);
}

uint64_t store_append(store_t *s, const char *name, size_t name_len, const uint8_t *update,
                      size_t update_len, uint64_t author, const char *author_name,
                      size_t author_name_len, uint64_t time_ms)
{
    store_append_t a = {name,        name_len,        update,  update_len, author,
                        author_name, author_name_len, time_ms, 0};
    return store_append_ex(s, &a, NULL);
}

uint64_t store_version_put(store_t *s, const char *name, size_t name_len, uint64_t seq,
                           const char *label, size_t label_len, uint64_t author, uint64_t time_ms)
{
    if (!s || !store__name_ok(name, name_len) || label_len > STORE_LABEL_MAX ||
        (label_len && !label))
        return 0;
    size_t vlen = STORE__VERSION_HDR + label_len;
    store__job_t *job = job_new(STORE__JOB_VERSION, name, name_len, vlen);
    if (!job)
        return 0;
    job->seq = seq;
    job->value[0] = STORE__VALUE_V1;
    store__put_u64(job->value + 1, author);
    store__put_u64(job->value + 9, time_ms);
    job->value[17] = (uint8_t)label_len;
    if (label_len)
        memcpy(job->value + STORE__VERSION_HDR, label, label_len);
    return enqueue(s, job, 0, 0, NULL);
}

int store_completion_fd(const store_t *s)
{
    return s->efd;
}

uint64_t store_durable(store_t *s)
{
    uint64_t n;
    while (read(s->efd, &n, sizeof n) > 0)
        ; /* drain: an eventfd read returns the whole count at once */
    pthread_mutex_lock(&s->mu);
    uint64_t d = s->durable;
    pthread_mutex_unlock(&s->mu);
    return d;
}

uint64_t store_last_ticket(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t t = s->last_ticket;
    pthread_mutex_unlock(&s->mu);
    return t;
}

int store_failed(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    int f = s->failed;
    pthread_mutex_unlock(&s->mu);
    return f;
}

/*
 * Two steps: the writer serves the flush generation once it has committed
 * everything queued before it and put the documents those entries made owe a
 * snapshot on the compaction list; then the compaction state must become idle
 * (nothing listed, nothing in flight), or dead when the store fails.
 */
int store_flush(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t gen = ++s->flush_req;
    pthread_cond_signal(&s->work_cv);
    while (s->flush_done < gen && !s->failed)
        pthread_cond_wait(&s->done_cv, &s->mu);
    int f = s->failed;
    pthread_mutex_unlock(&s->mu);
    if (f)
        return f;
    pthread_mutex_lock(&s->cmu);
    while (!s->compact_dead && (s->n_pending > 0 || s->in_flight))
        pthread_cond_wait(&s->idle_cv, &s->cmu);
    pthread_mutex_unlock(&s->cmu);
    return store_failed(s);
}

void store_stats(store_t *s, store_stats_t *out)
{
    pthread_mutex_lock(&s->stats_mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->stats_mu);
    pthread_mutex_lock(&s->mu);
    out->queue_entries = s->queued_entries;
    out->queue_bytes = s->queued_bytes;
    out->last_ticket = s->last_ticket;
    out->durable_ticket = s->durable;
    out->failed = s->failed;
    pthread_mutex_unlock(&s->mu);
}

void store__stats_commit(store_t *s, uint64_t us)
{
    pthread_mutex_lock(&s->stats_mu);
    s->stats.commits++;
    s->stats.commit_us_sum += us;
    if (us > s->stats.commit_us_max)
        s->stats.commit_us_max = us;
    for (int i = 0; i < STORE_LATENCY_BUCKETS; i++)
        if (us <= s->stats.commit_le_bound_us[i])
            s->stats.commit_le[i]++;
    pthread_mutex_unlock(&s->stats_mu);
}

/* ---- open and close ------------------------------------------------------ */

/*
 * Records in `replicas` the first non-empty author name of every replica in
 * every document's log: run once, when a store written before the index
 * existed is opened. Malformed keys and entries are skipped (loads report
 * them). Returns an LMDB code.
 */
static int index_replicas(store_t *s, MDB_txn *txn)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t last_doc = 0, last_author = 0;
    int rc = mdb_cursor_open(txn, s->db_log, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        store_entry_t e;
        if (k.mv_size == 16 && store__entry_parse(&v, &e) == 0 && e.author_name_len > 0) {
            uint64_t doc = store__get_u64(k.mv_data);
            if (doc != last_doc || e.author != last_author) {
                store__key_t key;
                uint8_t val[STORE__REPLICA_HDR + STORE_AUTHOR_NAME_MAX];
                store__key(&key, doc, e.author);
                MDB_val rk = {sizeof key.b, key.b};
                MDB_val rv = {store__replica_encode(val, e.author_name, e.author_name_len), val};
                rc = mdb_put(txn, s->db_replicas, &rk, &rv, MDB_NOOVERWRITE);
                if (rc && rc != MDB_KEYEXIST)
                    break;
                last_doc = doc;
                last_author = e.author;
            }
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Creates the named databases, checks or writes the store's format, and
 * indexes replica names once (stores written before the index existed).
 */
static int init_dbs(store_t *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return store__from_mdb(rc);
    if ((rc = mdb_dbi_open(txn, STORE__DB_SYS, MDB_CREATE, &s->db_sys)) ||
        (rc = mdb_dbi_open(txn, STORE__DB_DOCS, MDB_CREATE, &s->db_docs)) ||
        (rc = mdb_dbi_open(txn, STORE__DB_LOG, MDB_CREATE, &s->db_log)) ||
        (rc = mdb_dbi_open(txn, STORE__DB_SNAPS, MDB_CREATE, &s->db_snaps)) ||
        (rc = mdb_dbi_open(txn, STORE__DB_VERSIONS, MDB_CREATE, &s->db_versions)) ||
        (rc = mdb_dbi_open(txn, STORE__DB_REPLICAS, MDB_CREATE, &s->db_replicas)))
        goto fail;
    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, s->db_sys, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint8_t b[4];
        store__put_u32(b, STORE__FORMAT);
        v.mv_size = 4;
        v.mv_data = b;
        if ((rc = mdb_put(txn, s->db_sys, &k, &v, 0)))
            goto fail;
    } else if (rc) {
        goto fail;
    } else if (v.mv_size != 4 || store__get_u32(v.mv_data) != STORE__FORMAT) {
        mdb_txn_abort(txn);
        return STORE_EFORMAT;
    }
    MDB_val rk = {sizeof STORE__SYS_REPLICAS - 1, STORE__SYS_REPLICAS};
    rc = mdb_get(txn, s->db_sys, &rk, &v);
    if (rc == MDB_NOTFOUND) {
        uint8_t b[4];
        store__put_u32(b, 1);
        v.mv_size = 4;
        v.mv_data = b;
        if ((rc = index_replicas(s, txn)) || (rc = mdb_put(txn, s->db_sys, &rk, &v, 0)))
            goto fail;
    } else if (rc) {
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    return store__from_mdb(rc);
fail:
    mdb_txn_abort(txn);
    return store__from_mdb(rc);
}

int store_open(const char *dir, const store_options_t *opts, store_t **out)
{
    static const uint64_t bounds[STORE_LATENCY_BUCKETS] = STORE_LATENCY_BOUNDS_US;
    store_options_t o = {0};
    struct stat st;
    int err, rc;
    bool locks = false;

    if (!dir || !out)
        return STORE_EINVAL;
    if (opts)
        o = *opts;
    if (!o.map_size_initial)
        o.map_size_initial = DEFAULT_MAP_INITIAL;
    if (!o.map_size_max)
        o.map_size_max = DEFAULT_MAP_MAX;
    if (o.map_size_max < o.map_size_initial)
        o.map_size_max = o.map_size_initial;
    if (!o.snapshot_every)
        o.snapshot_every = DEFAULT_SNAPSHOT_EVERY;
    if (!o.snapshot_log_percent)
        o.snapshot_log_percent = DEFAULT_SNAPSHOT_LOG_PERCENT;
    if (!o.snapshot_max_factor)
        o.snapshot_max_factor = DEFAULT_SNAPSHOT_MAX_FACTOR;
    if (!o.commit_spacing_us)
        o.commit_spacing_us = DEFAULT_COMMIT_SPACING_US;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return errno == EACCES || errno == EROFS ? STORE_EACCES : STORE_EIO;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return STORE_EIO;

    store_t *s = calloc(1, sizeof *s);
    if (!s)
        return STORE_ENOMEM;
    s->efd = -1;
    s->snapshot_every = o.snapshot_every;
    if (o.commit_spacing_us == STORE_SPACING_OFF)
        s->commit_spacing_ns = 0;
    else if (o.commit_spacing_us > STORE_SPACING_MAX)
        s->commit_spacing_ns = (int64_t)STORE_SPACING_MAX * 1000;
    else
        s->commit_spacing_ns = (int64_t)o.commit_spacing_us * 1000;
    s->snapshot_percent = o.snapshot_log_percent;
    s->snapshot_cap = (uint64_t)o.snapshot_every * o.snapshot_max_factor;
    /* Compressed snapshots take the faster effort: a store rewrites them for
     * its busiest documents over and over (docs/storage.md, "Compaction"). */
    s->snapshot_flags = o.uncompressed_snapshots ? CRDT_STATE_UNCOMPRESSED : CRDT_STATE_FAST;
    s->map_max = o.map_size_max;
    for (int i = 0; i < STORE_LATENCY_BUCKETS; i++)
        s->stats.commit_le_bound_us[i] = bounds[i];

    if ((rc = mdb_env_create(&s->env))) {
        s->env = NULL;
        err = store__from_mdb(rc);
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, 8)) ||
        (rc = mdb_env_set_mapsize(s->env, o.map_size_initial)) ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS | (o.no_sync ? MDB_NOSYNC : 0), 0600))) {
        err = store__from_mdb(rc);
        goto fail;
    }
    int dead;
    if ((rc = mdb_reader_check(s->env, &dead))) {
        err = store__from_mdb(rc);
        goto fail;
    }
    /* Indexing an old store's replica names may need a larger map. */
    while ((err = init_dbs(s)) == STORE_EFULL && o.map_size_initial < o.map_size_max) {
        o.map_size_initial =
            o.map_size_initial > o.map_size_max / 2 ? o.map_size_max : o.map_size_initial * 2;
        if ((rc = mdb_env_set_mapsize(s->env, o.map_size_initial))) {
            err = store__from_mdb(rc);
            goto fail;
        }
    }
    if (err)
        goto fail;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    s->stats.map_size = info.me_mapsize;

    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        err = STORE_EIO;
        goto fail;
    }
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* Readers come often; a resize must not starve behind them. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->resize, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    pthread_cond_init(&s->compact_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    locks = true;
    if (pthread_create(&s->writer, NULL, store__writer_main, s) != 0) {
        err = STORE_ENOMEM;
        goto fail;
    }
    if (pthread_create(&s->compactor, NULL, store__compactor_main, s) != 0) {
        pthread_mutex_lock(&s->mu);
        s->closing = true; /* nothing queued yet: the writer just exits */
        pthread_cond_signal(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer, NULL);
        err = STORE_ENOMEM;
        goto fail;
    }
    *out = s;
    return 0;

fail:
    if (locks) {
        pthread_rwlock_destroy(&s->resize);
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->stats_mu);
        pthread_mutex_destroy(&s->cmu);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->done_cv);
        pthread_cond_destroy(&s->compact_cv);
        pthread_cond_destroy(&s->idle_cv);
    }
    if (s->efd >= 0)
        close(s->efd);
    if (s->env)
        mdb_env_close(s->env);
    free(s);
    return err;
}

/*
 * A flush (everything queued committed, every snapshot owed written, unless
 * the store fails), then the compaction thread is stopped and joined while the
 * writer still runs (so a snapshot it hands over is still stored or dropped),
 * then the writer.
 */
int store_close(store_t *s)
{
    if (!s)
        return 0;
    (void)store_flush(s);
    pthread_mutex_lock(&s->cmu);
    s->compact_stop = true;
    pthread_cond_signal(&s->compact_cv);
    pthread_mutex_unlock(&s->cmu);
    pthread_join(s->compactor, NULL);
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);

    int f = s->failed;
    for (store__job_t *j = s->head, *n; j; j = n) { /* only left when failed */
        n = j->next;
        free(j);
    }
    if (s->ready) { /* only left when failed */
        crdt_buf_dispose(&s->ready->state);
        free(s->ready);
    }
    free(s->pending);
    free(s->bdocs);
    free(s->bidx);
    free(s->known);
    free(s->fresh);
    for (size_t i = 0; i < s->cap_seqs; i++)
        for (store__seq_t *e = s->seqs[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(s->seqs);
    mdb_env_close(s->env);
    close(s->efd);
    pthread_rwlock_destroy(&s->resize);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->stats_mu);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_cond_destroy(&s->compact_cv);
    pthread_cond_destroy(&s->idle_cv);
    free(s);
    return f;
}
