/* SPDX-License-Identifier: MIT */
/*
 * test_store.c: the storage module (storage/ (store.c, writer.c, codec.c)) through store.h, with
 * raw LMDB writes where a test needs a damaged file. Every document is built from real random edits
 * made with the crdt engine. Covered: reopening keeps every document and log entry (bytes, author,
 * name, time); load = snapshot + tail gives the same text as a replay of the whole log; snapshots
 * every N entries (the plain rule) and spaced by size (a document with a large state gets fewer,
 * each where the rule first holds, across batches and a reopen; the entry cap), every version
 * equal to a replay; metadata in the old format (49 bytes) still loads; corrupt snapshots fall
 * back to older ones or a full replay; hostile log and metadata values are errors, never crashes;
 * group commit (fewer commits than entries, durable ticket reaches the last ticket, the completion
 * fd becomes readable); map growth from 1 MiB while another thread loads; named versions; an
 * `mdb_copy` of a live store opens and holds every entry durable before the copy; the compaction
 * thread (a snapshot written with the queue idle and no flush; many documents compacted while
 * appends and loads go on, placements exactly by the rule; close while snapshots are being built;
 * a map that may not grow failing on a round that holds only a snapshot); and crash safety:
 * a child process appending under load is SIGKILLed at random moments, and every entry it was told
 * is durable is there, byte for byte, and every document loads. Randomized tests use fixed seeds
 * and print them on failure; temporary directories are removed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdatomic.h>

#include <cmocka.h>

#include "store_internal.h"
#include "test_rng.h"

extern char **environ;

/* ---- helpers --------------------------------------------------------------- */

/* Printed before a randomized test runs, so a failure shows its seed. */
static void note_seed(const char *test, uint64_t seed)
{
    printf("# %s: seed %#llx\n", test, (unsigned long long)seed);
    fflush(stdout);
}

static void make_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/weft-store-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

/* Removes a store directory (it holds only files). */
static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* A document being edited by one replica, with every update it produced. */
typedef struct {
    crdt_doc_t *doc;
    uint8_t **upd;
    size_t *len;
    size_t n, cap;
} editor_t;

static void editor_init(editor_t *ed, uint64_t client)
{
    memset(ed, 0, sizeof *ed);
    assert_int_equal(crdt_doc_new(client, NULL, &ed->doc), 0);
}

static void editor_dispose(editor_t *ed)
{
    for (size_t i = 0; i < ed->n; i++)
        free(ed->upd[i]);
    free(ed->upd);
    free(ed->len);
    crdt_doc_free(ed->doc);
    memset(ed, 0, sizeof *ed);
}

/*
 * One random edit: mostly an insert of 1..maxlen ASCII letters at a random
 * place, sometimes a delete. The update is kept in ed->upd[ed->n - 1].
 */
static void editor_edit(editor_t *ed, rng_t *r, size_t maxlen)
{
    crdt_buf_t u = {0};
    size_t len = crdt_doc_length(ed->doc);
    if (len > 0 && rng_below(r, 4) == 0) {
        size_t at = rng_below(r, (uint32_t)len);
        size_t n = 1 + rng_below(r, (uint32_t)(len - at < 8 ? len - at : 8));
        assert_int_equal(crdt_doc_delete(ed->doc, at, n, &u), 0);
    } else {
        char text[1024];
        size_t n = 1 + rng_below(r, (uint32_t)(maxlen < sizeof text ? maxlen : sizeof text));
        for (size_t i = 0; i < n; i++)
            text[i] = (char)('a' + rng_below(r, 26));
        assert_int_equal(crdt_doc_insert(ed->doc, rng_below(r, (uint32_t)len + 1), text, n, &u), 0);
    }
    if (ed->n == ed->cap) {
        ed->cap = ed->cap ? ed->cap * 2 : 64;
        ed->upd = realloc(ed->upd, ed->cap * sizeof *ed->upd);
        ed->len = realloc(ed->len, ed->cap * sizeof *ed->len);
        assert_non_null(ed->upd);
        assert_non_null(ed->len);
    }
    ed->upd[ed->n] = malloc(u.len);
    assert_non_null(ed->upd[ed->n]);
    memcpy(ed->upd[ed->n], u.base, u.len);
    ed->len[ed->n++] = u.len;
    crdt_buf_dispose(&u);
}

/* The text of a document as a malloc'd C string. */
static char *doc_text(const crdt_doc_t *doc)
{
    crdt_buf_t t = {0};
    assert_int_equal(crdt_doc_text(doc, &t), 0);
    char *s = strdup((const char *)t.base);
    crdt_buf_dispose(&t);
    assert_non_null(s);
    return s;
}

static void assert_doc_text(store_t *s, const char *name, const crdt_doc_t *want,
                            store_load_info_t *info)
{
    crdt_doc_t *got = NULL;
    int rc = store_doc_load(s, name, strlen(name), 7, &got, info);
    if (rc)
        fail_msg("load %s: %s", name, store_strerror(rc));
    char *a = doc_text(got), *b = doc_text(want);
    assert_string_equal(a, b);
    assert_int_equal(crdt_doc_check(got), 0);
    free(a);
    free(b);
    crdt_doc_free(got);
}

static uint64_t append_doc(store_t *s, const char *name, const uint8_t *u, size_t n, uint64_t t)
{
    uint64_t ticket = store_append(s, name, strlen(name), u, n, 1000 + t % 7, "ann", 3, t);
    assert_true(ticket >= 1);
    return ticket;
}

/* Collects a document's log into arrays (store_log_read callback). */
typedef struct {
    size_t n;
    uint64_t seq[4096];
    uint8_t *upd[4096];
    size_t len[4096];
    uint64_t author[4096], time[4096];
    char name[4096][STORE_AUTHOR_NAME_MAX + 1];
} log_copy_t;

static int collect(void *ctx, uint64_t seq, const store_entry_t *e)
{
    log_copy_t *c = ctx;
    if (c->n == 4096)
        return 1;
    c->seq[c->n] = seq;
    c->upd[c->n] = malloc(e->update_len);
    memcpy(c->upd[c->n], e->update, e->update_len);
    c->len[c->n] = e->update_len;
    c->author[c->n] = e->author;
    c->time[c->n] = e->time_ms;
    memcpy(c->name[c->n], e->author_name, e->author_name_len);
    c->name[c->n][e->author_name_len] = 0;
    c->n++;
    return 0;
}

static void log_copy_free(log_copy_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->upd[i]);
    free(c);
}

static log_copy_t *read_log(store_t *s, const char *name)
{
    log_copy_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    int rc = store_log_read(s, name, strlen(name), 1, collect, c);
    if (rc)
        fail_msg("log_read %s: %s", name, store_strerror(rc));
    return c;
}

/* Text of a full replay of a log copy's first n entries. */
static crdt_doc_t *replay(const log_copy_t *c, size_t n)
{
    crdt_doc_t *d;
    assert_int_equal(crdt_doc_new(99, NULL, &d), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(crdt_doc_apply_update(d, c->upd[i], c->len[i]), 0);
    return d;
}

/* ---- raw LMDB access for damaging a closed store -------------------------- */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw_t;

static void raw_open(raw_t *r, const char *dir, const char *db)
{
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 8), 0);
    assert_int_equal(mdb_env_open(r->env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, db, 0, &r->dbi), 0);
}

static void raw_close(raw_t *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

static void raw_put(raw_t *r, uint64_t doc_id, uint64_t seq, const void *data, size_t n)
{
    store__key_t k;
    store__key(&k, doc_id, seq);
    MDB_val kv = {16, k.b}, v = {n, (void *)data};
    assert_int_equal(mdb_put(r->txn, r->dbi, &kv, &v, 0), 0);
}

/* Copies a record's value into buf; returns its length. */
static size_t raw_get(raw_t *r, uint64_t doc_id, uint64_t seq, uint8_t *buf, size_t cap)
{
    store__key_t k;
    store__key(&k, doc_id, seq);
    MDB_val kv = {16, k.b}, v;
    assert_int_equal(mdb_get(r->txn, r->dbi, &kv, &v), 0);
    assert_true(v.mv_size <= cap);
    memcpy(buf, v.mv_data, v.mv_size);
    return v.mv_size;
}

static size_t raw_count(raw_t *r)
{
    MDB_stat st;
    assert_int_equal(mdb_stat(r->txn, r->dbi, &st), 0);
    return st.ms_entries;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_store_strerror_and_args(void **state)
{
    (void)state;
    assert_string_equal(store_strerror(STORE_ENOTFOUND), "no such document");
    assert_string_equal(store_strerror(0), "success");
    assert_string_equal(store_strerror(-299), "unknown error");
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    assert_int_equal(store_open(dir, NULL, &s), 0);
    crdt_doc_t *d = NULL;
    const uint8_t u[1] = {0};
    assert_int_equal(store_doc_load(s, "nope", 4, 1, &d, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_doc_load(s, "a/b", 3, 1, &d, NULL), STORE_EINVAL);
    assert_int_equal(store_doc_load(s, "", 0, 1, &d, NULL), STORE_EINVAL);
    char longname[STORE_NAME_MAX + 1];
    memset(longname, 'x', sizeof longname);
    assert_int_equal(store_doc_load(s, longname, sizeof longname, 1, &d, NULL), STORE_EINVAL);
    assert_null(d);
    /* The name is (pointer, length): bytes after the length are never read. */
    assert_int_equal(store_doc_load(s, "ok!!", 2, 1, &d, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_append(s, "a b", 3, u, 1, 1, NULL, 0, 1), 0);
    assert_int_equal(store_append(s, "ab", 2, u, 0, 1, NULL, 0, 1), 0);
    assert_int_equal(store_append(s, "ab", 2, u, 1, 1, "x", STORE_AUTHOR_NAME_MAX + 1, 1), 0);
    assert_int_equal(store_last_ticket(s), 0);
    assert_int_equal(store_durable(s), 0);
    assert_int_equal(store_flush(s), 0);
    assert_int_equal(store_close(s), 0);
    rm_dir(dir);
}

#define NDOCS 3
static const char *const doc_names[NDOCS] = {"alpha", "beta.2", "gamma~x-y_z"};

static void test_store_reopen_keeps_everything(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0001;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 25};
    store_t *s;
    editor_t ed[NDOCS];
    for (int i = 0; i < NDOCS; i++)
        editor_init(&ed[i], 100 + (uint64_t)i);

    assert_int_equal(store_open(dir, &o, &s), 0);
    uint64_t t = 0;
    for (int round = 0; round < 4; round++) {
        for (int k = 0; k < 80; k++) {
            int d = (int)rng_below(&r, NDOCS);
            editor_edit(&ed[d], &r, 12);
            editor_t *e = &ed[d];
            append_doc(s, doc_names[d], e->upd[e->n - 1], e->len[e->n - 1], ++t);
        }
        assert_int_equal(store_flush(s), 0); /* several batches, several snapshots */
    }
    assert_int_equal(store_close(s), 0);

    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int d = 0; d < NDOCS; d++) {
        store_doc_stat_t st;
        assert_int_equal(store_doc_stat(s, doc_names[d], strlen(doc_names[d]), &st), 0);
        assert_int_equal(st.entries, ed[d].n);
        assert_int_equal(st.last_seq, ed[d].n);
        log_copy_t *c = read_log(s, doc_names[d]);
        assert_int_equal(c->n, ed[d].n);
        size_t bytes = 0;
        for (size_t i = 0; i < c->n; i++) {
            assert_int_equal(c->seq[i], i + 1);
            assert_int_equal(c->len[i], ed[d].len[i]);
            assert_memory_equal(c->upd[i], ed[d].upd[i], c->len[i]);
            assert_string_equal(c->name[i], "ann");
            assert_int_equal(c->author[i], 1000 + c->time[i] % 7);
            bytes += c->len[i];
        }
        assert_int_equal(st.bytes, bytes);
        /* snapshot + tail == full replay == the editor's own text */
        store_load_info_t info;
        assert_doc_text(s, doc_names[d], ed[d].doc, &info);
        assert_true(info.snapshot_seq > 0);
        assert_int_equal(info.snapshot_seq, st.snapshot_seq);
        assert_int_equal(info.snapshot_seq + info.entries_replayed, ed[d].n);
        assert_int_equal(info.snapshot_fallbacks, 0);
        crdt_doc_t *full = replay(c, c->n);
        assert_doc_text(s, doc_names[d], full, NULL);
        crdt_doc_free(full);
        /* a walk from the middle */
        log_copy_t *tail = calloc(1, sizeof *tail);
        assert_int_equal(store_log_read(s, doc_names[d], strlen(doc_names[d]), 10, collect, tail),
                         0);
        assert_int_equal(tail->n, c->n - 9);
        assert_int_equal(tail->seq[0], 10);
        log_copy_free(tail);
        log_copy_free(c);
    }
    assert_int_equal(store_close(s), 0);
    for (int i = 0; i < NDOCS; i++)
        editor_dispose(&ed[i]);
    rm_dir(dir);
}

/* Appends `n` edits of one document and waits until they (and their snapshot) are written. */
static void append_flush(store_t *s, editor_t *ed, rng_t *r, const char *name, int n)
{
    for (int i = 0; i < n; i++) {
        editor_edit(ed, r, 6);
        append_doc(s, name, ed->upd[ed->n - 1], ed->len[ed->n - 1], ed->n);
    }
    assert_int_equal(store_flush(s), 0);
}

static void test_store_snapshot_every_n(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0002);
    note_seed(__func__, 0x5eed0002);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 10, .snapshot_max_factor = 1}; /* the plain rule */
    store_t *s;
    editor_t ed;
    editor_init(&ed, 5);
    assert_int_equal(store_open(dir, &o, &s), 0);
    store_doc_stat_t st;
    for (int i = 1; i <= 4; i++) {
        append_flush(s, &ed, &r, "doc", 10);
        assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
        assert_int_equal(st.snapshot_seq, 10 * i);
    }
    append_flush(s, &ed, &r, "doc", 5);
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(st.snapshot_seq, 40);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.snapshots_written, 4);
    assert_true(ss.snapshot_bytes > 0);
    store_load_info_t info;
    assert_doc_text(s, "doc", ed.doc, &info);
    assert_int_equal(info.snapshot_seq, 40);
    assert_int_equal(info.entries_replayed, 5);
    assert_int_equal(info.last_seq, 45);
    assert_int_equal(store_close(s), 0);

    raw_t raw;
    raw_open(&raw, dir, STORE__DB_SNAPS);
    assert_int_equal(raw_count(&raw), 4);
    raw_close(&raw);
    editor_dispose(&ed);
    rm_dir(dir);
}

/* The state in the snapshot at `seq` of document `doc_id` (written in `dir`
 * by a store now closed), copied into buf; returns its length. */
static size_t snapshot_state(const char *dir, uint64_t doc_id, uint64_t seq, uint8_t *buf,
                             size_t cap)
{
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_SNAPS);
    size_t n = raw_get(&raw, doc_id, seq, buf, cap);
    raw_close(&raw);
    assert_true(n > STORE__SNAP_HDR + 2);
    memmove(buf, buf + STORE__SNAP_HDR, n - STORE__SNAP_HDR);
    return n - STORE__SNAP_HDR;
}

/* The same ten edits (about 500 letters) in a store with compressed snapshots
 * and one with uncompressed_snapshots: the second writes its snapshot's body as
 * is (flags byte 0, more bytes), the first compresses it; both load. */
static void test_store_uncompressed_snapshots(void **state)
{
    (void)state;
    static uint8_t buf[2][1 << 16];
    size_t len[2];
    for (int uncompressed = 0; uncompressed < 2; uncompressed++) {
        rng_t r;
        rng_init(&r, 0x5eed0017);
        note_seed(__func__, 0x5eed0017);
        char dir[64];
        make_tmpdir(dir, sizeof dir);
        store_options_t o = {.snapshot_every = 10, .uncompressed_snapshots = uncompressed};
        store_t *s;
        editor_t ed;
        editor_init(&ed, 5);
        assert_int_equal(store_open(dir, &o, &s), 0);
        for (int i = 0; i < 10; i++) {
            editor_edit(&ed, &r, 100);
            append_doc(s, "doc", ed.upd[ed.n - 1], ed.len[ed.n - 1], ed.n);
        }
        assert_int_equal(store_flush(s), 0);
        store_doc_stat_t st;
        assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
        assert_int_equal(st.snapshot_seq, 10);
        store_load_info_t info;
        assert_doc_text(s, "doc", ed.doc, &info);
        assert_int_equal(info.snapshot_seq, 10);
        assert_int_equal(store_close(s), 0);
        len[uncompressed] = snapshot_state(dir, st.doc_id, 10, buf[uncompressed], sizeof buf[0]);
        editor_dispose(&ed);
        rm_dir(dir);
    }
    assert_int_equal(buf[0][1], 1); /* state flags: compressed body */
    assert_int_equal(buf[1][1], 0); /* stored as is */
    assert_true(len[1] > len[0]);
}

static void test_store_corrupt_snapshot_falls_back(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0003);
    note_seed(__func__, 0x5eed0003);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 10, .snapshot_max_factor = 1}; /* the plain rule */
    store_t *s;
    editor_t ed;
    editor_init(&ed, 6);
    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int i = 0; i < 3; i++)
        append_flush(s, &ed, &r, "doc", 10);
    append_flush(s, &ed, &r, "doc", 3);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(st.snapshot_seq, 30);
    assert_int_equal(store_close(s), 0);

    static uint8_t buf[1 << 16];
    raw_t raw;
    /* A flipped byte in the state of the newest snapshot: its checksum fails. */
    raw_open(&raw, dir, STORE__DB_SNAPS);
    size_t n = raw_get(&raw, st.doc_id, 30, buf, sizeof buf);
    buf[n / 2 + 3] ^= 0x40;
    raw_put(&raw, st.doc_id, 30, buf, n);
    raw_close(&raw);
    assert_int_equal(store_open(dir, &o, &s), 0);
    store_load_info_t info;
    assert_doc_text(s, "doc", ed.doc, &info);
    assert_int_equal(info.snapshot_fallbacks, 1);
    assert_int_equal(info.snapshot_seq, 20);
    assert_int_equal(info.entries_replayed, 13);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.snapshot_fallbacks, 1);
    assert_int_equal(store_close(s), 0);

    /* Every snapshot bad: unknown format byte, truncated, a valid checksum over
     * bytes that are not a state. Loading replays the whole log. */
    raw_open(&raw, dir, STORE__DB_SNAPS);
    n = raw_get(&raw, st.doc_id, 20, buf, sizeof buf);
    buf[0] = 77;
    raw_put(&raw, st.doc_id, 20, buf, n);
    raw_put(&raw, st.doc_id, 10, buf, 3);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    junk[0] = STORE__VALUE_V1;
    store__put_u32(junk + 1, store__crc32c(junk + 5, sizeof junk - 5));
    raw_put(&raw, st.doc_id, 30, junk, sizeof junk);
    raw_put(&raw, st.doc_id, 99, junk, sizeof junk); /* beyond the log */
    raw_close(&raw);
    assert_int_equal(store_open(dir, &o, &s), 0);
    assert_doc_text(s, "doc", ed.doc, &info);
    assert_int_equal(info.snapshot_fallbacks, 4);
    assert_int_equal(info.snapshot_seq, 0);
    assert_int_equal(info.entries_replayed, 33);
    /* The next compaction writes a good snapshot again, snapshot_every after the
     * previous one (30), rebuilt by a full replay. */
    append_flush(s, &ed, &r, "doc", 10);
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(st.snapshot_seq, 40);
    assert_doc_text(s, "doc", ed.doc, &info);
    assert_int_equal(info.snapshot_seq, 40);
    assert_int_equal(info.entries_replayed, 3);
    assert_int_equal(info.snapshot_fallbacks, 1); /* the forged one at 99 */
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

static int never_called(void *ctx, uint64_t seq, const store_entry_t *e)
{
    (void)ctx;
    (void)seq;
    (void)e;
    fail_msg("callback called on a failing walk");
    return 1;
}

/* Replaces (or with n == SIZE_MAX deletes) one record of a closed store. */
static void damage(const char *dir, const char *db, uint64_t doc_id, uint64_t seq, const uint8_t *v,
                   size_t n)
{
    raw_t raw;
    raw_open(&raw, dir, db);
    if (n == SIZE_MAX) {
        store__key_t k;
        store__key(&k, doc_id, seq);
        MDB_val kv = {16, k.b};
        assert_int_equal(mdb_del(raw.txn, raw.dbi, &kv, NULL), 0);
    } else {
        raw_put(&raw, doc_id, seq, v, n);
    }
    raw_close(&raw);
}

static void test_store_hostile_log_values(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0004);
    note_seed(__func__, 0x5eed0004);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed;
    editor_init(&ed, 8);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    append_flush(s, &ed, &r, "doc", 6);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(store_close(s), 0);

    raw_t raw;
    static uint8_t good[4096];
    raw_open(&raw, dir, STORE__DB_LOG);
    size_t good_len = raw_get(&raw, st.doc_id, 3, good, sizeof good);
    raw_close(&raw);

    uint8_t v[256];
    struct {
        const char *what;
        size_t len;
        int want;
    } cases[] = {
        {"empty", 0, STORE_ECORRUPT},
        {"format only", 1, STORE_ECORRUPT},
        {"unknown format", 30, STORE_EFORMAT},
        {"short header", 21, STORE_ECORRUPT},
        {"name too long", 200, STORE_ECORRUPT},
        {"name past end", 40, STORE_ECORRUPT},
        {"bad checksum", 0, STORE_ECORRUPT},
        {"garbage update", 90, STORE_ECORRUPT},
        {"missing entry", 0, STORE_ECORRUPT},
        {"v2 short header", 29, STORE_ECORRUPT},
        {"v2 name too long", 60, STORE_ECORRUPT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].len;
        memset(v, 0, sizeof v);
        v[0] = STORE__VALUE_V1;
        switch (c) {
        case 2:
            v[0] = 9;
            break;
        case 4:
            v[21] = 200;
            break;
        case 5:
            v[21] = 60;
            store__put_u32(v + 1, store__crc32c(v + 5, n - 5));
            break;
        case 6:
            memcpy(v, good, good_len);
            n = good_len;
            v[n - 1] ^= 1;
            break;
        case 7:
            for (size_t i = 22; i < n; i++)
                v[i] = (uint8_t)(0xF0 + i);
            store__put_u32(v + 1, store__crc32c(v + 5, n - 5));
            break;
        case 8:
            n = SIZE_MAX;
            break;
        case 9:
            v[0] = STORE__VALUE_V2;
            break;
        case 10:
            v[0] = STORE__VALUE_V2;
            v[STORE__ENTRY_NAME_LEN] = 65;
            store__put_u32(v + 1, store__crc32c(v + 5, n - 5));
            break;
        }
        damage(dir, STORE__DB_LOG, st.doc_id, 3, v, n);
        assert_int_equal(store_open(dir, NULL, &s), 0);
        crdt_doc_t *d = NULL;
        int rc = store_doc_load(s, "doc", 3, 1, &d, NULL);
        if (rc != cases[c].want)
            fail_msg("%s: load gave %d (%s)", cases[c].what, rc, store_strerror(rc));
        assert_null(d);
        if (c != 7 && c != 8) /* walks check values, not update bytes or gaps */
            assert_int_equal(store_log_read(s, "doc", 3, 1, never_called, NULL), cases[c].want);
        /* Later seqs still read; the writer keeps working on other documents. */
        log_copy_t *lc = calloc(1, sizeof *lc);
        assert_int_equal(store_log_read(s, "doc", 3, 4, collect, lc), 0);
        assert_int_equal(lc->n, 3);
        log_copy_free(lc);
        assert_int_equal(store_close(s), 0);
    }
    damage(dir, STORE__DB_LOG, st.doc_id, 3, good, good_len);

    /* Damaged metadata and keys of the wrong size. */
    uint8_t meta[STORE__META_LEN];
    store__meta_t m = {st.doc_id, 7, 0, 1, 99, 1, 0, 0}; /* entries != next_seq - 1 */
    store__meta_encode(meta, &m);
    raw_open(&raw, dir, STORE__DB_DOCS);
    MDB_val k = {3, "doc"}, mv = {sizeof meta, meta};
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &k, &mv, 0), 0);
    raw_close(&raw);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    crdt_doc_t *d = NULL;
    assert_int_equal(store_doc_load(s, "doc", 3, 1, &d, NULL), STORE_ECORRUPT);
    store_doc_stat_t st2;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st2), STORE_ECORRUPT);
    assert_int_equal(store_close(s), 0);

    m.entries = 6;
    m.next_seq = 9; /* the metadata claims two entries the log lacks */
    m.entries = 8;
    store__meta_encode(meta, &m);
    raw_open(&raw, dir, STORE__DB_DOCS);
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &k, &mv, 0), 0);
    raw_close(&raw);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    assert_int_equal(store_doc_load(s, "doc", 3, 1, &d, NULL), STORE_ECORRUPT);
    assert_int_equal(store_close(s), 0);

    m.next_seq = 7;
    m.entries = 6;
    store__meta_encode(meta, &m);
    raw_open(&raw, dir, STORE__DB_DOCS);
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &k, &mv, 0), 0);
    raw_close(&raw);
    raw_open(&raw, dir, STORE__DB_LOG);
    MDB_val badk = {9, "123456789"}, badv = {1, "x"};
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &badk, &badv, 0), 0);
    raw_close(&raw);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    assert_doc_text(s, "doc", ed.doc, NULL); /* a stray key of no document is not ours */
    assert_int_equal(store_close(s), 0);
    /* A short key with this document's id prefix is. */
    uint8_t shortk[9];
    store__put_u64(shortk, st.doc_id);
    shortk[8] = 0xFF;
    raw_open(&raw, dir, STORE__DB_LOG);
    badk.mv_size = sizeof shortk;
    badk.mv_data = shortk;
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &badk, &badv, 0), 0);
    raw_close(&raw);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    assert_int_equal(store_doc_load(s, "doc", 3, 1, &d, NULL), STORE_ECORRUPT);
    assert_int_equal(store_log_read(s, "doc", 3, 1, never_called, NULL), STORE_ECORRUPT);
    assert_int_equal(store_close(s), 0);

    editor_dispose(&ed);
    rm_dir(dir);
}

typedef struct {
    int n;
    uint64_t seq[4];
    char label[4][32];
    uint64_t author[4];
} versions_t;

static int collect_version(void *ctx, uint64_t seq, const store_version_t *v)
{
    versions_t *g = ctx;
    if (g->n == 4)
        return 1;
    g->seq[g->n] = seq;
    memcpy(g->label[g->n], v->label, v->label_len);
    g->label[g->n][v->label_len] = 0;
    g->author[g->n] = v->author;
    g->n++;
    return 0;
}

static void test_store_versions_list(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0006);
    note_seed(__func__, 0x5eed0006);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed;
    editor_init(&ed, 9);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    append_flush(s, &ed, &r, "doc", 5);
    assert_true(store_version_put(s, "doc", 3, 5, "final", 5, 43, 1235) > 0);
    assert_true(store_version_put(s, "doc", 3, 3, "draft", 5, 42, 1234) > 0);
    assert_true(store_version_put(s, "doc", 3, 3, "first draft", 11, 42, 1236) > 0);
    assert_true(store_version_put(s, "nodoc", 5, 1, "x", 1, 1, 1) > 0);
    assert_int_equal(store_flush(s), 0);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.versions_dropped, 1);
    assert_int_equal(store_close(s), 0);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    versions_t g = {0};
    assert_int_equal(store_version_list(s, "doc", 3, collect_version, &g), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.seq[0], 3);
    assert_string_equal(g.label[0], "first draft");
    assert_int_equal(g.seq[1], 5);
    assert_string_equal(g.label[1], "final");
    assert_int_equal(g.author[1], 43);
    assert_int_equal(store_version_list(s, "nodoc", 5, collect_version, &g), STORE_ENOTFOUND);
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

static void test_store_group_commit(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0007);
    note_seed(__func__, 0x5eed0007);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    enum { DOCS = 4, N = 4000 };
    editor_t ed[DOCS];
    for (int i = 0; i < DOCS; i++)
        editor_init(&ed[i], 200 + (uint64_t)i);
    char names[DOCS][8];
    for (int i = 0; i < DOCS; i++)
        snprintf(names[i], sizeof names[i], "gc%d", i);
    /* Make the edits first so the appends come as fast as a busy server's. */
    int which[N];
    for (int i = 0; i < N; i++) {
        which[i] = (int)rng_below(&r, DOCS);
        editor_edit(&ed[which[i]], &r, 10);
    }
    assert_int_equal(store_open(dir, NULL, &s), 0);
    int fd = store_completion_fd(s);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    size_t next[DOCS] = {0};
    uint64_t t0 = store__now_us(), last = 0;
    for (int i = 0; i < N; i++) {
        editor_t *e = &ed[which[i]];
        size_t k = next[which[i]]++;
        uint64_t t = append_doc(s, names[which[i]], e->upd[k], e->len[k], (uint64_t)i);
        assert_true(t > last);
        last = t;
    }
    assert_int_equal(store_last_ticket(s), last);
    /* The event loop's view: poll the fd until the durable ticket reaches the last. */
    uint64_t durable = 0;
    int wakeups = 0;
    while (durable < last) {
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, 10000);
        assert_int_equal(rc, 1);
        assert_true(p.revents & POLLIN);
        uint64_t d = store_durable(s);
        assert_true(d >= durable);
        durable = d;
        wakeups++;
    }
    uint64_t dt = store__now_us() - t0;
    assert_int_equal(durable, last);
    assert_int_equal(store_failed(s), 0);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.entries_written, N);
    assert_true(ss.batches < N);
    assert_true(ss.batches >= 1);
    assert_int_equal(ss.durable_ticket, last);
    uint64_t cum = 0;
    for (int i = 0; i < STORE_LATENCY_BUCKETS; i++) {
        assert_true(ss.commit_le[i] >= cum);
        cum = ss.commit_le[i];
    }
    assert_true(cum <= ss.commits);
    printf("# group commit: %d entries in %llu batches (%.1f entries/commit), %.0f entries/s, "
           "%d wakeups, commit latency avg %llu us max %llu us\n",
           N, (unsigned long long)ss.batches, (double)N / (double)ss.batches,
           (double)N * 1e6 / (double)dt, wakeups,
           (unsigned long long)(ss.commit_us_sum / (ss.commits ? ss.commits : 1)),
           (unsigned long long)ss.commit_us_max);
    /* After the fd is drained it is not readable until the next commit. The
     * writer signals just after it publishes a durable ticket, so the signal
     * of the last batch may still be on its way: the flush waits for the
     * writer to finish that round first. */
    assert_int_equal(store_flush(s), 0);
    (void)store_durable(s);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0);
    for (int i = 0; i < DOCS; i++)
        assert_doc_text(s, names[i], ed[i].doc, NULL);

    /* Closed loop, like a server whose clients wait for acks: at most 32
     * entries in flight; more arrive while a commit (fsync) runs. */
    store_stats_t s0;
    store_stats(s, &s0);
    enum { M = 3000, WINDOW = 32 };
    t0 = store__now_us();
    for (int i = 0; i < M; i++) {
        int d = i % DOCS;
        editor_edit(&ed[d], &r, 10);
        last = append_doc(s, names[d], ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1], (uint64_t)i);
        while (last - store_durable(s) >= WINDOW) {
            struct pollfd q = {fd, POLLIN, 0};
            assert_true(poll(&q, 1, 10000) == 1);
        }
    }
    while (store_durable(s) < last) {
        struct pollfd q = {fd, POLLIN, 0};
        assert_true(poll(&q, 1, 10000) == 1);
    }
    dt = store__now_us() - t0;
    store_stats(s, &ss);
    uint64_t batches = ss.batches - s0.batches;
    printf("# closed loop (window %d): %d entries in %llu commits, %.1f entries/commit, "
           "%.0f commits/s, %.0f entries/s\n",
           WINDOW, M, (unsigned long long)batches, (double)M / (double)batches,
           (double)batches * 1e6 / (double)dt, (double)M * 1e6 / (double)dt);
    assert_true(batches < M);
    for (int i = 0; i < DOCS; i++)
        assert_doc_text(s, names[i], ed[i].doc, NULL);
    assert_int_equal(store_close(s), 0);
    for (int i = 0; i < DOCS; i++)
        editor_dispose(&ed[i]);
    rm_dir(dir);
}

/* Commit spacing at its longest (STORE_SPACING_MAX), and off: appends made
 * one at a time, each waited for (an editor waiting for its ACK), a burst of
 * more than 64 queued at once, and an append queued when the store closes
 * all become durable and read back. Whether commits are grouped, and that a
 * flush or a close does not wait out the spacing, shows only in timing: the
 * benchmarks measure it (docs/performance.md, "Commit spacing"). */
static void test_store_commit_spacing(void **state)
{
    (void)state;
    const uint32_t spacing[] = {STORE_SPACING_MAX, STORE_SPACING_OFF};
    rng_t r;
    rng_init(&r, 0x5eed0011);
    note_seed(__func__, 0x5eed0011);
    for (size_t v = 0; v < sizeof spacing / sizeof spacing[0]; v++) {
        char dir[64];
        store_t *s;
        store_options_t o = {0};
        editor_t ed;
        uint64_t last = 0;
        int fd;
        make_tmpdir(dir, sizeof dir);
        editor_init(&ed, 300 + v);
        o.commit_spacing_us = spacing[v];
        assert_int_equal(store_open(dir, &o, &s), 0);
        fd = store_completion_fd(s);
        for (int i = 0; i < 8; i++) {
            editor_edit(&ed, &r, 10);
            last = append_doc(s, "sp", ed.upd[ed.n - 1], ed.len[ed.n - 1], (uint64_t)i);
            while (store_durable(s) < last) {
                struct pollfd q = {fd, POLLIN, 0};
                assert_int_equal(poll(&q, 1, 10000), 1);
            }
        }
        for (int i = 0; i < 200; i++) {
            editor_edit(&ed, &r, 10);
            last = append_doc(s, "sp", ed.upd[ed.n - 1], ed.len[ed.n - 1], (uint64_t)(8 + i));
        }
        assert_int_equal(store_flush(s), 0);
        assert_int_equal(store_durable(s), last);
        assert_int_equal(store_failed(s), 0);
        assert_doc_text(s, "sp", ed.doc, NULL);
        editor_edit(&ed, &r, 10);
        last = append_doc(s, "sp", ed.upd[ed.n - 1], ed.len[ed.n - 1], 999);
        assert_int_equal(store_close(s), 0); /* commits what is queued */
        assert_int_equal(store_open(dir, &o, &s), 0);
        assert_doc_text(s, "sp", ed.doc, NULL);
        assert_int_equal(store_close(s), 0);
        editor_dispose(&ed);
        rm_dir(dir);
    }
}

/* ---- map growth with concurrent loads ------------------------------------ */

typedef struct {
    store_t *s;
    atomic_int stop;
    int loads, errors;
} loader_t;

static void *loader_main(void *arg)
{
    loader_t *l = arg;
    char name[8];
    int i = 0;
    while (!l->stop) {
        snprintf(name, sizeof name, "mg%d", i++ % 4);
        crdt_doc_t *d = NULL;
        int rc = store_doc_load(l->s, name, strlen(name), 3, &d, NULL);
        if (rc == 0) {
            if (crdt_doc_check(d) != 0)
                l->errors++;
            crdt_doc_free(d);
            l->loads++;
        } else if (rc != STORE_ENOTFOUND) {
            l->errors++;
        }
    }
    return NULL;
}

static void test_store_map_growth_while_loading(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0008);
    note_seed(__func__, 0x5eed0008);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.map_size_initial = 1 << 20, .snapshot_every = 300};
    store_t *s;
    enum { DOCS = 4 };
    editor_t ed[DOCS];
    for (int i = 0; i < DOCS; i++)
        editor_init(&ed[i], 300 + (uint64_t)i);
    assert_int_equal(store_open(dir, &o, &s), 0);
    loader_t l = {s, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, loader_main, &l), 0);
    char name[8];
    for (int i = 0; i < 6000; i++) {
        int d = (int)rng_below(&r, DOCS);
        editor_edit(&ed[d], &r, 900);
        snprintf(name, sizeof name, "mg%d", d);
        append_doc(s, name, ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1], (uint64_t)i);
        if (i % 500 == 499)
            assert_int_equal(store_flush(s), 0);
    }
    assert_int_equal(store_flush(s), 0);
    l.stop = 1;
    pthread_join(th, NULL);
    store_stats_t ss;
    store_stats(s, &ss);
    printf("# map growth: %llu growths to %llu bytes (%llu used), %d concurrent loads, "
           "%llu snapshots\n",
           (unsigned long long)ss.map_growths, (unsigned long long)ss.map_size,
           (unsigned long long)ss.map_used, l.loads, (unsigned long long)ss.snapshots_written);
    assert_int_equal(l.errors, 0);
    assert_true(ss.map_growths >= 3);
    assert_int_equal(store_failed(s), 0);
    for (int i = 0; i < DOCS; i++) {
        snprintf(name, sizeof name, "mg%d", i);
        assert_doc_text(s, name, ed[i].doc, NULL);
    }
    assert_int_equal(store_close(s), 0);
    /* The grown map is adopted on reopen with the small initial size. */
    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int i = 0; i < DOCS; i++) {
        snprintf(name, sizeof name, "mg%d", i);
        assert_doc_text(s, name, ed[i].doc, NULL);
    }
    assert_int_equal(store_close(s), 0);
    for (int i = 0; i < DOCS; i++)
        editor_dispose(&ed[i]);
    rm_dir(dir);
}

/*
 * A map that may not grow past its size fails the store cleanly. Twice: with
 * snapshots off, the failing commit is a batch, so its tickets never become
 * durable; with the default snapshots, it may be a round storing only a
 * snapshot (built meanwhile by the compaction thread), after which every
 * ticket may be durable, but the store has failed all the same.
 */
static void test_store_map_max_fails_cleanly(void **state)
{
    (void)state;
    for (int snaps = 0; snaps < 2; snaps++) {
        rng_t r;
        rng_init(&r, 0x5eed0009);
        note_seed(__func__, 0x5eed0009);
        char dir[64];
        make_tmpdir(dir, sizeof dir);
        store_options_t o = {.map_size_initial = 1 << 20,
                             .map_size_max = 2 << 20,
                             .snapshot_every = snaps ? 0 : 1u << 30};
        store_t *s;
        editor_t ed;
        editor_init(&ed, 11);
        assert_int_equal(store_open(dir, &o, &s), 0);
        uint64_t before = 0;
        for (int i = 0; i < 200; i++) {
            editor_edit(&ed, &r, 1000);
            append_doc(s, "big", ed.upd[i], ed.len[i], (uint64_t)i);
        }
        assert_int_equal(store_flush(s), 0);
        before = store_durable(s);
        assert_true(before > 0);
        int rc = 0;
        for (int i = 0; i < 20 && rc == 0; i++) {
            for (int k = 0; k < 200; k++) {
                editor_edit(&ed, &r, 1000);
                store_append(s, "big", 3, ed.upd[ed.n - 1], ed.len[ed.n - 1], 1, NULL, 0, 1);
            }
            rc = store_flush(s);
        }
        assert_int_equal(rc, STORE_EFULL);
        assert_int_equal(store_failed(s), STORE_EFULL);
        uint64_t d = store_durable(s);
        if (snaps)
            assert_true(d <= store_last_ticket(s));
        else
            assert_true(d < store_last_ticket(s));
        assert_int_equal(store_append(s, "big", 3, ed.upd[0], ed.len[0], 1, NULL, 0, 1), 0);
        /* A failed store hands out no seq. */
        uint64_t seq = 12345;
        store_append_t a = {
            .name = "big", .name_len = 3, .update = ed.upd[0], .update_len = ed.len[0]};
        assert_int_equal(store_append_ex(s, &a, &seq), 0);
        assert_int_equal(seq, 12345);
        /* Reads still work on what was committed. */
        store_doc_stat_t st;
        assert_int_equal(store_doc_stat(s, "big", 3, &st), 0);
        assert_true(st.entries >= 200);
        assert_int_equal(store_close(s), STORE_EFULL);
        assert_int_equal(store_open(dir, &o, &s), 0);
        crdt_doc_t *doc = NULL;
        assert_int_equal(store_doc_load(s, "big", 3, 1, &doc, NULL), 0);
        crdt_doc_free(doc);
        /* The seqs promised to entries that were never written are given again. */
        assert_true(store_append_ex(s, &a, &seq) > 0);
        assert_int_equal(seq, st.last_seq + 1);
        /* With snapshots, the one owed may still not fit. */
        rc = store_flush(s);
        assert_true(rc == 0 || (snaps && rc == STORE_EFULL));
        assert_int_equal(store_close(s), rc);
        editor_dispose(&ed);
        rm_dir(dir);
    }
}

/* ---- mdb_copy of a live store ---------------------------------------------- */

typedef struct {
    store_t *s;
    editor_t ed[NDOCS];
    rng_t r;
    atomic_int stop;
    int appended;
} appender_t;

static void *appender_main(void *arg)
{
    appender_t *a = arg;
    while (!a->stop) {
        for (int k = 0; k < 50; k++) {
            int d = (int)rng_below(&a->r, NDOCS);
            editor_t *e = &a->ed[d];
            editor_edit(e, &a->r, 40);
            store_append(a->s, doc_names[d], strlen(doc_names[d]), e->upd[e->n - 1],
                         e->len[e->n - 1], 5, "bob", 3, (uint64_t)a->appended++);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Full path of `prog` found in PATH, or NULL. */
static char *which_prog(const char *prog)
{
    const char *path = getenv("PATH");
    static char buf[512];
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0)
            return buf;
        path += n + (end ? 1 : 0);
    }
    return NULL;
}

static void test_store_mdb_copy_live(void **state)
{
    (void)state;
    char *mdb_copy = which_prog("mdb_copy");
    if (!mdb_copy)
        fail_msg("mdb_copy not found in PATH: install Debian's lmdb-utils (scripts/deps.sh)");
    char dir[64], copy[64];
    make_tmpdir(dir, sizeof dir);
    make_tmpdir(copy, sizeof copy);
    static appender_t a;
    memset(&a, 0, sizeof a);
    rng_init(&a.r, 0x5eed000a);
    note_seed(__func__, 0x5eed000a);
    for (int i = 0; i < NDOCS; i++)
        editor_init(&a.ed[i], 400 + (uint64_t)i);
    store_options_t o = {.snapshot_every = 100, .map_size_initial = 1 << 20};
    assert_int_equal(store_open(dir, &o, &a.s), 0);
    /* Phase A: durable before the copy starts. */
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 50; k++) {
            int d = (int)rng_below(&a.r, NDOCS);
            editor_t *e = &a.ed[d];
            editor_edit(e, &a.r, 40);
            append_doc(a.s, doc_names[d], e->upd[e->n - 1], e->len[e->n - 1],
                       (uint64_t)a.appended++);
        }
    }
    assert_int_equal(store_flush(a.s), 0);
    size_t before[NDOCS];
    for (int d = 0; d < NDOCS; d++)
        before[d] = a.ed[d].n;
    /* Phase B: the writer is busy while mdb_copy runs. */
    a.stop = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, appender_main, &a), 0);
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    char *argv[] = {mdb_copy, dir, copy, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, mdb_copy, NULL, NULL, argv, environ), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    nanosleep(&ts, NULL);
    a.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(store_flush(a.s), 0);

    store_t *c;
    assert_int_equal(store_open(copy, &o, &c), 0);
    size_t total_src = 0, total_copy = 0;
    for (int d = 0; d < NDOCS; d++) {
        log_copy_t *lc = read_log(c, doc_names[d]);
        log_copy_t *ls = read_log(a.s, doc_names[d]);
        assert_true(lc->n >= before[d]);
        assert_true(lc->n <= ls->n);
        for (size_t i = 0; i < lc->n; i++) {
            assert_int_equal(lc->len[i], ls->len[i]);
            assert_memory_equal(lc->upd[i], ls->upd[i], lc->len[i]);
        }
        crdt_doc_t *want = replay(ls, lc->n);
        assert_doc_text(c, doc_names[d], want, NULL);
        crdt_doc_free(want);
        assert_doc_text(a.s, doc_names[d], a.ed[d].doc, NULL);
        total_src += ls->n;
        total_copy += lc->n;
        log_copy_free(lc);
        log_copy_free(ls);
    }
    printf("# mdb_copy: copy holds %zu of %zu entries (%zu durable before the copy)\n", total_copy,
           total_src, before[0] + before[1] + before[2]);
    assert_int_equal(store_close(c), 0);
    assert_int_equal(store_close(a.s), 0);
    for (int i = 0; i < NDOCS; i++)
        editor_dispose(&a.ed[i]);
    rm_dir(dir);
    rm_dir(copy);
}

/* ---- crash safety -------------------------------------------------------------- */

#define CRASH_DOCS 3
/* The child stops appending after this many entries (the checking side copies
 * at most 4096 entries of each document) and waits to be killed. */
#define CRASH_MAX_ENTRIES 12000u

/* Entry t (from 1) of the crash workload: its document and its update, the same
 * in the child and in the parent, which regenerates them to check the store. */
typedef struct {
    editor_t ed[CRASH_DOCS];
    rng_t r;
    uint64_t t;
} workload_t;

static void workload_init(workload_t *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    rng_init(&w->r, seed);
    for (int i = 0; i < CRASH_DOCS; i++)
        editor_init(&w->ed[i], 500 + (uint64_t)i);
}

static int workload_next(workload_t *w)
{
    int d = (int)((w->t++) % CRASH_DOCS);
    editor_edit(&w->ed[d], &w->r, 200);
    return d;
}

static void workload_dispose(workload_t *w)
{
    for (int i = 0; i < CRASH_DOCS; i++)
        editor_dispose(&w->ed[i]);
}

static const char *const crash_names[CRASH_DOCS] = {"c0", "c1", "c2"};

/* The child: appends forever, reporting each new durable ticket on `out`. */
static void crash_child(const char *dir, uint64_t seed, int out)
{
    store_options_t o = {.snapshot_every = 20, .map_size_initial = 1 << 20};
    store_t *s;
    if (store_open(dir, &o, &s) != 0)
        _exit(3);
    workload_t w;
    workload_init(&w, seed);
    uint64_t reported = 0;
    int fd = store_completion_fd(s);
    for (;;) {
        if (w.t >= CRASH_MAX_ENTRIES) { /* enough: report the rest, then wait */
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, 100);
            uint64_t dur = store_durable(s);
            if (dur > reported) {
                reported = dur;
                if (write(out, &dur, sizeof dur) != sizeof dur)
                    _exit(5);
            }
            continue;
        }
        int d = workload_next(&w);
        editor_t *e = &w.ed[d];
        uint64_t t = store_append(s, crash_names[d], 2, e->upd[e->n - 1], e->len[e->n - 1],
                                  (uint64_t)d + 1, "crash", 5, w.t);
        if (t != w.t)
            _exit(4);
        for (;;) {
            struct pollfd p = {fd, POLLIN, 0};
            /* Keep at most 64 entries in flight, like clients waiting for acks. */
            poll(&p, 1, w.t - reported > 64 ? 100 : 0);
            uint64_t dur = store_durable(s);
            if (dur > reported) {
                reported = dur;
                if (write(out, &dur, sizeof dur) != sizeof dur)
                    _exit(5);
            }
            if (w.t - reported <= 64)
                break;
        }
    }
}

static void test_store_crash_safety(void **state)
{
    (void)state;
    const int rounds = 20;
    for (int round = 0; round < rounds; round++) {
        const uint64_t seed = 0xc0ffee00u + (uint64_t)round;
        rng_t r;
        rng_init(&r, seed);
        if (round == 0)
            note_seed(__func__, seed);
        char dir[64];
        make_tmpdir(dir, sizeof dir);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(dir, seed, pfd[1]);
            _exit(0);
        }
        close(pfd[1]);
        struct timespec ts = {0, (long)(20 + rng_below(&r, 400)) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("seed %#llx: child exited with %d", (unsigned long long)seed,
                     WEXITSTATUS(status));
        uint64_t durable = 0, v;
        while (read(pfd[0], &v, sizeof v) == sizeof v) {
            if (v <= durable)
                fail_msg("seed %#llx: durable ticket went from %llu to %llu",
                         (unsigned long long)seed, (unsigned long long)durable,
                         (unsigned long long)v);
            durable = v;
        }
        close(pfd[0]);

        /* Reopen: every entry reported durable is there, byte for byte. */
        store_options_t o = {.snapshot_every = 20, .map_size_initial = 1 << 20};
        store_t *s;
        int rc = store_open(dir, &o, &s);
        if (rc)
            fail_msg("seed %#llx: reopen: %s", (unsigned long long)seed, store_strerror(rc));
        log_copy_t *logs[CRASH_DOCS];
        size_t have = 0;
        for (int d = 0; d < CRASH_DOCS; d++) {
            logs[d] = calloc(1, sizeof *logs[d]);
            rc = store_log_read(s, crash_names[d], 2, 1, collect, logs[d]);
            if (rc != 0 && !(rc == STORE_ENOTFOUND && durable < (uint64_t)d + 1))
                fail_msg("seed %#llx: log %d: %s", (unsigned long long)seed, d, store_strerror(rc));
            have += logs[d]->n;
        }
        if (have < durable)
            fail_msg("seed %#llx: %zu entries stored, %llu reported durable",
                     (unsigned long long)seed, have, (unsigned long long)durable);
        workload_t w;
        workload_init(&w, seed);
        size_t seen[CRASH_DOCS] = {0};
        for (uint64_t t = 1; t <= have; t++) {
            int d = workload_next(&w);
            size_t i = seen[d]++;
            editor_t *e = &w.ed[d];
            if (i >= logs[d]->n || logs[d]->len[i] != e->len[e->n - 1] ||
                memcmp(logs[d]->upd[i], e->upd[e->n - 1], logs[d]->len[i]) != 0 ||
                logs[d]->time[i] != t || logs[d]->author[i] != (uint64_t)d + 1)
                fail_msg("seed %#llx: entry %llu (doc %d seq %zu) differs or is missing",
                         (unsigned long long)seed, (unsigned long long)t, d, i + 1);
        }
        for (int d = 0; d < CRASH_DOCS; d++) {
            if (logs[d]->n == 0)
                continue;
            assert_int_equal(seen[d], logs[d]->n);
            assert_doc_text(s, crash_names[d], w.ed[d].doc, NULL);
        }
        /* The reopened store keeps working. */
        int d0 = workload_next(&w);
        append_doc(s, crash_names[d0], w.ed[d0].upd[w.ed[d0].n - 1], w.ed[d0].len[w.ed[d0].n - 1],
                   0);
        assert_int_equal(store_flush(s), 0);
        assert_doc_text(s, crash_names[d0], w.ed[d0].doc, NULL);
        assert_int_equal(store_close(s), 0);
        if (round == 0 || round == rounds - 1)
            printf("# crash round %d: killed after %ld ms, %llu durable, %zu stored\n", round,
                   ts.tv_nsec / 1000000L, (unsigned long long)durable, have);
        for (int d = 0; d < CRASH_DOCS; d++)
            log_copy_free(logs[d]);
        workload_dispose(&w);
        rm_dir(dir);
    }
}

/* ---- document history: seqs at queue time, restore_of, versions at any seq ---- */

static uint64_t append_ex(store_t *s, const char *name, const uint8_t *u, size_t n, uint64_t author,
                          const char *aname, uint64_t t, uint64_t restore_of, uint64_t *seq)
{
    store_append_t a = {name, strlen(name), u, n, author, aname, aname ? strlen(aname) : 0,
                        t,    restore_of};
    uint64_t ticket = store_append_ex(s, &a, seq);
    assert_true(ticket >= 1);
    return ticket;
}

/* What the test appended to one document, by seq (index seq - 1). */
typedef struct {
    size_t n;
    uint64_t seqs[2048];
    size_t upd[2048]; /* index into the editor's updates */
    uint64_t restore_of[2048];
} promised_t;

static void test_store_append_ex_seqs(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0101;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 20};
    store_t *s;
    editor_t ed[NDOCS];
    static promised_t pr[NDOCS];
    memset(pr, 0, sizeof pr);
    for (int i = 0; i < NDOCS; i++)
        editor_init(&ed[i], 200 + (uint64_t)i);
    assert_int_equal(store_open(dir, &o, &s), 0);
    uint64_t t = 0, last_ticket = 0;
    for (int round = 0; round < 6; round++) {
        int n = 1 + (int)rng_below(&r, 120);
        for (int k = 0; k < n; k++) {
            int d = (int)rng_below(&r, NDOCS);
            editor_edit(&ed[d], &r, 8);
            promised_t *p = &pr[d];
            uint64_t restore =
                p->n > 0 && rng_below(&r, 5) == 0 ? 1 + rng_below(&r, (uint32_t)p->n) : 0;
            uint64_t seq = 0;
            uint64_t ticket =
                append_ex(s, doc_names[d], ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1],
                          300 + (uint64_t)d, "ed", ++t, restore, &seq);
            assert_true(ticket > last_ticket);
            last_ticket = ticket;
            assert_int_equal(seq, p->n + 1); /* consecutive from 1, across batches and opens */
            p->seqs[p->n] = seq;
            p->upd[p->n] = ed[d].n - 1;
            p->restore_of[p->n] = restore;
            p->n++;
        }
        /* An entry may only restore an earlier seq. */
        uint64_t seq = 777;
        store_append_t bad = {
            doc_names[0], strlen(doc_names[0]), ed[0].upd[0], ed[0].len[0], 1, NULL, 0, 1,
            pr[0].n + 1};
        assert_int_equal(store_append_ex(s, &bad, &seq), 0);
        assert_int_equal(seq, 777);
        if (rng_below(&r, 2)) {
            assert_int_equal(store_flush(s), 0);
        }
        if (round == 2 || round == 4) { /* queued entries become durable at close */
            assert_int_equal(store_close(s), 0);
            assert_int_equal(store_open(dir, &o, &s), 0);
            last_ticket = 0; /* tickets count per process, seqs per document */
        }
    }
    assert_int_equal(store_flush(s), 0);
    for (int d = 0; d < NDOCS; d++) {
        log_copy_t *c = read_log(s, doc_names[d]);
        assert_int_equal(c->n, pr[d].n);
        for (size_t i = 0; i < c->n; i++) {
            assert_int_equal(c->seq[i], pr[d].seqs[i]);
            size_t u = pr[d].upd[i];
            assert_int_equal(c->len[i], ed[d].len[u]);
            assert_memory_equal(c->upd[i], ed[d].upd[u], c->len[i]);
            assert_string_equal(c->name[i], "ed");
            assert_int_equal(c->author[i], 300 + (uint64_t)d);
        }
        log_copy_free(c);
        assert_doc_text(s, doc_names[d], ed[d].doc, NULL);
    }
    assert_int_equal(store_close(s), 0);
    for (int i = 0; i < NDOCS; i++)
        editor_dispose(&ed[i]);
    rm_dir(dir);
}

/* Collects restore_of by seq (store_log_read / store_log_read_rev callback). */
typedef struct {
    size_t n;
    uint64_t seq[2048], restore_of[2048];
} restores_t;

static int collect_restore(void *ctx, uint64_t seq, const store_entry_t *e)
{
    restores_t *g = ctx;
    if (g->n == 2048)
        return 1;
    g->seq[g->n] = seq;
    g->restore_of[g->n++] = e->restore_of;
    return 0;
}

static void test_store_restore_of_round_trip(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0102);
    note_seed(__func__, 0x5eed0102);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed;
    editor_init(&ed, 12);
    uint64_t want[40] = {0};
    assert_int_equal(store_open(dir, NULL, &s), 0);
    for (uint64_t i = 1; i <= 40; i++) {
        editor_edit(&ed, &r, 5);
        want[i - 1] = i % 3 == 0 ? 1 + rng_below(&r, (uint32_t)(i - 1)) : 0;
        if (i == 40)
            want[i - 1] = UINT64_C(39);
        uint64_t seq;
        append_ex(s, "doc", ed.upd[i - 1], ed.len[i - 1], 5, "r", i, want[i - 1], &seq);
        assert_int_equal(seq, i);
    }
    assert_int_equal(store_close(s), 0);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    restores_t *g = calloc(1, sizeof *g);
    assert_int_equal(store_log_read(s, "doc", 3, 1, collect_restore, g), 0);
    assert_int_equal(g->n, 40);
    for (size_t i = 0; i < 40; i++)
        assert_int_equal(g->restore_of[i], want[i]);
    memset(g, 0, sizeof *g);
    assert_int_equal(store_log_read_rev(s, "doc", 3, UINT64_MAX, collect_restore, g), 0);
    assert_int_equal(g->n, 40);
    for (size_t i = 0; i < 40; i++) {
        assert_int_equal(g->seq[i], 40 - i);
        assert_int_equal(g->restore_of[i], want[39 - i]);
    }
    free(g);
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

/* Encodes a log value the way the code before document history did (format 1). */
static size_t encode_v1(uint8_t *out, const uint8_t *u, size_t n, uint64_t author,
                        const char *aname, uint64_t t)
{
    size_t an = strlen(aname);
    out[0] = STORE__VALUE_V1;
    store__put_u64(out + 5, author);
    store__put_u64(out + 13, t);
    out[21] = (uint8_t)an;
    memcpy(out + 22, aname, an);
    memcpy(out + 22 + an, u, n);
    store__put_u32(out + 1, store__crc32c(out + 5, 22 + an + n - 5));
    return 22 + an + n;
}

static void test_store_old_format_values_read(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0103);
    note_seed(__func__, 0x5eed0103);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 1000};
    store_t *s;
    editor_t ed;
    editor_init(&ed, 13);
    assert_int_equal(store_open(dir, &o, &s), 0);
    append_flush(s, &ed, &r, "doc", 12);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(store_close(s), 0);

    /* Rewrite the whole log in format 1 as the old code wrote it (authors 1 and 2
     * alternating, names by entry), and forget the replica index: the store now
     * looks like one written before document history. */
    static uint8_t v[4096];
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_LOG);
    for (uint64_t i = 1; i <= 12; i++) {
        char aname[16];
        snprintf(aname, sizeof aname, "old%llu", (unsigned long long)i);
        size_t n = encode_v1(v, ed.upd[i - 1], ed.len[i - 1], 1 + i % 2, aname, 500 + i);
        raw_put(&raw, st.doc_id, i, v, n);
    }
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(raw.txn, STORE__DB_REPLICAS, 0, &dbi), 0);
    assert_int_equal(mdb_drop(raw.txn, dbi, 0), 0);
    assert_int_equal(mdb_dbi_open(raw.txn, STORE__DB_SYS, 0, &dbi), 0);
    MDB_val k = {strlen(STORE__SYS_REPLICAS), STORE__SYS_REPLICAS};
    assert_int_equal(mdb_del(raw.txn, dbi, &k, NULL), 0);
    raw_close(&raw);

    assert_int_equal(store_open(dir, &o, &s), 0);
    log_copy_t *c = read_log(s, "doc");
    assert_int_equal(c->n, 12);
    for (size_t i = 0; i < 12; i++) {
        assert_memory_equal(c->upd[i], ed.upd[i], c->len[i]);
        assert_int_equal(c->author[i], 1 + (i + 1) % 2);
        assert_int_equal(c->time[i], 500 + i + 1);
    }
    log_copy_free(c);
    restores_t *g = calloc(1, sizeof *g);
    assert_int_equal(store_log_read_rev(s, "doc", 3, UINT64_MAX, collect_restore, g), 0);
    assert_int_equal(g->n, 12);
    for (size_t i = 0; i < 12; i++)
        assert_int_equal(g->restore_of[i], 0);
    assert_doc_text(s, "doc", ed.doc, NULL);
    /* store_open indexed the old entries' authors: first name wins. */
    char name[STORE_AUTHOR_NAME_MAX + 1];
    assert_int_equal(store_replica_name(s, "doc", 3, 2, name), 0);
    assert_string_equal(name, "old1");
    assert_int_equal(store_replica_name(s, "doc", 3, 1, name), 0);
    assert_string_equal(name, "old2");
    /* New entries (format 2) follow the old ones. */
    editor_edit(&ed, &r, 5);
    uint64_t seq;
    append_ex(s, "doc", ed.upd[12], ed.len[12], 3, "new", 9, 4, &seq);
    assert_int_equal(seq, 13);
    assert_int_equal(store_flush(s), 0);
    memset(g, 0, sizeof *g);
    assert_int_equal(store_log_read(s, "doc", 3, 12, collect_restore, g), 0);
    assert_int_equal(g->n, 2);
    assert_int_equal(g->restore_of[0], 0);
    assert_int_equal(g->restore_of[1], 4);
    assert_doc_text(s, "doc", ed.doc, NULL);
    assert_int_equal(store_close(s), 0);
    raw_open(&raw, dir, STORE__DB_LOG);
    assert_int_equal(raw_get(&raw, st.doc_id, 13, v, sizeof v) > 0, 1);
    assert_int_equal(v[0], STORE__VALUE_V2);
    raw_close(&raw);
    free(g);
    editor_dispose(&ed);
    rm_dir(dir);
}

/*
 * Two replicas editing one document, syncing now and then; every update is
 * logged by the replica that made it, after what it had seen, so the log is
 * causal. Returns the number of entries; the updates are in ed[0..1] and
 * order[i] says which (replica, index) is seq i + 1.
 */
typedef struct {
    size_t n;
    int who[1024];
    size_t idx[1024];
} session_t;

static void random_session(store_t *s, const char *name, editor_t ed[2], rng_t *r, size_t n,
                           session_t *ss)
{
    size_t seen[2] = {0, 0}; /* updates of the other replica applied */
    ss->n = 0;
    for (size_t i = 0; i < n; i++) {
        int w = rng_below(r, 8) < 5 ? 0 : 1;
        if (rng_below(r, 4) == 0) { /* w catches up with the other replica */
            editor_t *o = &ed[1 - w];
            for (; seen[w] < o->n; seen[w]++)
                assert_int_equal(crdt_doc_apply_update(ed[w].doc, o->upd[seen[w]], o->len[seen[w]]),
                                 0);
        }
        editor_edit(&ed[w], r, 6);
        uint64_t seq;
        append_ex(s, name, ed[w].upd[ed[w].n - 1], ed[w].len[ed[w].n - 1], 70 + (uint64_t)w,
                  w ? "bob" : "ada", i, 0, &seq);
        assert_int_equal(seq, i + 1);
        ss->who[ss->n] = w;
        ss->idx[ss->n++] = ed[w].n - 1;
        if (rng_below(r, 40) == 0)
            assert_int_equal(store_flush(s), 0); /* vary the batches */
    }
    assert_int_equal(store_flush(s), 0);
}

/* Texts of the model: model[seq] = text after applying entries 1..seq in order. */
static char **model_texts(editor_t ed[2], const session_t *ss)
{
    char **t = calloc(ss->n + 1, sizeof *t);
    crdt_doc_t *m;
    assert_int_equal(crdt_doc_new(98, NULL, &m), 0);
    t[0] = doc_text(m);
    for (size_t i = 0; i < ss->n; i++) {
        editor_t *e = &ed[ss->who[i]];
        assert_int_equal(crdt_doc_apply_update(m, e->upd[ss->idx[i]], e->len[ss->idx[i]]), 0);
        t[i + 1] = doc_text(m);
    }
    crdt_doc_free(m);
    return t;
}

/* store_doc_load_at(seq) for every seq equals the model; returns total fallbacks. */
static uint32_t check_every_version(store_t *s, const char *name, char **model, size_t n,
                                    uint32_t every, uint64_t seed)
{
    uint32_t fallbacks = 0;
    for (uint64_t seq = 0; seq <= n; seq++) {
        crdt_doc_t *d = NULL;
        store_load_info_t info;
        int rc = store_doc_load_at(s, name, strlen(name), 5, seq, &d, &info);
        if (rc)
            fail_msg("seed %#llx: load_at %llu: %s", (unsigned long long)seed,
                     (unsigned long long)seq, store_strerror(rc));
        char *txt = doc_text(d);
        if (strcmp(txt, model[seq]) != 0)
            fail_msg("seed %#llx: version %llu differs from the model", (unsigned long long)seed,
                     (unsigned long long)seq);
        assert_int_equal(crdt_doc_check(d), 0);
        assert_int_equal(info.last_seq, seq);
        assert_true(info.snapshot_seq <= seq);
        assert_int_equal(info.snapshot_seq + info.entries_replayed, seq);
        if (info.snapshot_fallbacks == 0 && seq > 0)
            assert_true(seq - info.snapshot_seq < every); /* the replay is bounded */
        fallbacks += info.snapshot_fallbacks;
        free(txt);
        crdt_doc_free(d);
    }
    return fallbacks;
}

static void test_store_doc_load_at_every_seq(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0104;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    const uint32_t every = 16;
    /* The plain rule (snapshot_max_factor 1): a snapshot every `every` entries. */
    store_options_t o = {.snapshot_every = every, .snapshot_max_factor = 1};
    store_t *s;
    editor_t ed[2];
    editor_init(&ed[0], 71);
    editor_init(&ed[1], 72);
    session_t *ss = calloc(1, sizeof *ss);
    assert_int_equal(store_open(dir, &o, &s), 0);
    const size_t n = 300;
    random_session(s, "doc", ed, &r, n, ss);
    char **model = model_texts(ed, ss);

    /* Snapshots lie exactly `every` apart, whatever the batches were. */
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(st.last_seq, n);
    assert_int_equal(st.snapshot_seq, n / every * every);
    assert_int_equal(check_every_version(s, "doc", model, n, every, seed), 0);
    crdt_doc_t *d = NULL;
    assert_int_equal(store_doc_load_at(s, "doc", 3, 5, n + 1, &d, NULL), STORE_EINVAL);
    assert_int_equal(store_doc_load_at(s, "doc", 3, 5, UINT64_MAX, &d, NULL), STORE_EINVAL);
    assert_int_equal(store_doc_load_at(s, "nodoc", 5, 5, 0, &d, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_doc_load_at(s, "no/doc", 6, 5, 0, &d, NULL), STORE_EINVAL);
    assert_null(d);
    assert_int_equal(store_close(s), 0);
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_SNAPS);
    assert_int_equal(raw_count(&raw), n / every);

    /* Corrupt snapshots: seq 48 (checksum) and 64 (format byte), 160 truncated. */
    static uint8_t buf[1 << 16];
    size_t len = raw_get(&raw, st.doc_id, 48, buf, sizeof buf);
    buf[len - 1] ^= 0x10;
    raw_put(&raw, st.doc_id, 48, buf, len);
    len = raw_get(&raw, st.doc_id, 64, buf, sizeof buf);
    buf[0] = 99;
    raw_put(&raw, st.doc_id, 64, buf, len);
    raw_put(&raw, st.doc_id, 160, buf, 3);
    raw_close(&raw);
    assert_int_equal(store_open(dir, &o, &s), 0);
    /* seqs 48..63 skip one snapshot, 64..79 two, 160..175 one. */
    assert_int_equal(check_every_version(s, "doc", model, n, every, seed), 16 + 32 + 16);
    store_load_info_t info;
    assert_int_equal(store_doc_load_at(s, "doc", 3, 5, 70, &d, &info), 0);
    assert_int_equal(info.snapshot_seq, 32);
    assert_int_equal(info.snapshot_fallbacks, 2);
    assert_int_equal(info.entries_replayed, 38);
    crdt_doc_free(d);
    assert_int_equal(store_close(s), 0);

    for (size_t i = 0; i <= n; i++)
        free(model[i]);
    free(model);
    free(ss);
    editor_dispose(&ed[0]);
    editor_dispose(&ed[1]);
    rm_dir(dir);
}

/* ---- size-aware snapshot spacing --------------------------------------------- */

/* The seqs and state lengths of a document's snapshots in a closed store, in order. */
typedef struct {
    size_t n;
    uint64_t seq[256];
    uint64_t len[256];
} snaps_t;

static void raw_snaps(const char *dir, uint64_t doc_id, snaps_t *out)
{
    raw_t raw;
    MDB_cursor *cur;
    store__key_t key;
    MDB_val k = {16, key.b}, v;
    uint64_t seq;
    raw_open(&raw, dir, STORE__DB_SNAPS);
    assert_int_equal(mdb_cursor_open(raw.txn, raw.dbi, &cur), 0);
    store__key(&key, doc_id, 0);
    out->n = 0;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && store__key_in_doc(&k, doc_id, &seq) == 1) {
        assert_true(out->n < 256);
        assert_true(v.mv_size > STORE__SNAP_HDR);
        out->seq[out->n] = seq;
        out->len[out->n++] = v.mv_size - STORE__SNAP_HDR;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    raw_close(&raw);
}

/*
 * Checks that the snapshots lie where the rule of store_options_t first holds,
 * from the start: the first at `every`, each next one at the first seq at least
 * `every` entries on whose entries' bytes reach `pct` % of the previous
 * snapshot's length, or `cap` entries on; and none is owed at the head.
 * `len[i]` are the update bytes of seq i + 1.
 */
static void check_spacing(const char *what, const snaps_t *sn, const size_t *len, size_t n,
                          uint64_t every, uint64_t pct, uint64_t cap, uint64_t seed)
{
    uint64_t prev = 0, plen = 0;
    size_t i = 0;
    for (;;) {
        uint64_t want = 0, bytes = 0;
        for (uint64_t q = prev + 1; q <= n; q++) {
            bytes += len[q - 1];
            if (q - prev >= every && (bytes >= plen * pct / 100 || q - prev >= cap)) {
                want = q;
                break;
            }
        }
        if (want == 0)
            break; /* nothing owed at the head */
        if (i >= sn->n || sn->seq[i] != want)
            fail_msg("seed %#llx: %s: snapshot %zu at %llu, expected at %llu",
                     (unsigned long long)seed, what, i,
                     (unsigned long long)(i < sn->n ? sn->seq[i] : 0), (unsigned long long)want);
        prev = want;
        plen = sn->len[i++];
    }
    if (i != sn->n)
        fail_msg("seed %#llx: %s: %zu snapshots, expected %zu", (unsigned long long)seed, what,
                 sn->n, i);
}

/* store_doc_load_at(seq) for every seq equals a replay of the editor's first
 * seq updates, starting from the newest snapshot at or below seq. */
static void check_versions_vs_replay(store_t *s, const char *name, const editor_t *ed,
                                     const snaps_t *sn, uint64_t seed)
{
    crdt_doc_t *m;
    assert_int_equal(crdt_doc_new(98, NULL, &m), 0);
    size_t k = 0; /* snapshots at or below seq */
    for (uint64_t seq = 0; seq <= ed->n; seq++) {
        if (seq > 0)
            assert_int_equal(crdt_doc_apply_update(m, ed->upd[seq - 1], ed->len[seq - 1]), 0);
        while (k < sn->n && sn->seq[k] <= seq)
            k++;
        crdt_doc_t *d = NULL;
        store_load_info_t info;
        int rc = store_doc_load_at(s, name, strlen(name), 5, seq, &d, &info);
        if (rc)
            fail_msg("seed %#llx: %s: load_at %llu: %s", (unsigned long long)seed, name,
                     (unsigned long long)seq, store_strerror(rc));
        char *a = doc_text(d), *b = doc_text(m);
        if (strcmp(a, b) != 0)
            fail_msg("seed %#llx: %s: version %llu differs from the replay",
                     (unsigned long long)seed, name, (unsigned long long)seq);
        assert_int_equal(info.snapshot_fallbacks, 0);
        assert_int_equal(info.snapshot_seq, k ? sn->seq[k - 1] : 0);
        assert_int_equal(info.snapshot_seq + info.entries_replayed, seq);
        free(a);
        free(b);
        crdt_doc_free(d);
    }
    crdt_doc_free(m);
}

/*
 * Two documents in one store, the same number of small edits each, but one
 * starts with about 9 KB of text: its snapshots are large, so it gets far
 * fewer of them. Snapshots lie exactly where the rule first holds, whatever
 * the batches were and across a close and reopen; every version of both loads
 * equal to a replay, from the newest snapshot at or below it.
 */
static void test_store_snapshot_spacing_by_size(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0201;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    const uint32_t every = 8;
    store_options_t o = {.snapshot_every = every}; /* 100 %, max factor 64: the defaults */
    store_t *s;
    editor_t ed[2];
    const char *names[2] = {"small", "big"};
    editor_init(&ed[0], 21);
    editor_init(&ed[1], 22);
    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int i = 0; i < 24; i++) { /* the big one's text: 24 inserts of up to 1024 letters */
        editor_edit(&ed[1], &r, 1024);
        append_doc(s, "big", ed[1].upd[ed[1].n - 1], ed[1].len[ed[1].n - 1], ed[1].n);
    }
    const int edits = 600;
    for (int i = 0; i < 2 * edits; i++) {
        int d = i % 2;
        editor_edit(&ed[d], &r, 6);
        append_doc(s, names[d], ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1], ed[d].n);
        if (rng_below(&r, 30) == 0)
            assert_int_equal(store_flush(s), 0); /* vary the batches */
        if (i == edits) {                        /* a clean close and reopen midway */
            assert_int_equal(store_close(s), 0);
            assert_int_equal(store_open(dir, &o, &s), 0);
        }
    }
    assert_int_equal(store_flush(s), 0);
    store_doc_stat_t st[2];
    for (int d = 0; d < 2; d++)
        assert_int_equal(store_doc_stat(s, names[d], strlen(names[d]), &st[d]), 0);
    assert_int_equal(store_close(s), 0);

    snaps_t *sn = calloc(2, sizeof *sn);
    assert_non_null(sn);
    for (int d = 0; d < 2; d++) {
        raw_snaps(dir, st[d].doc_id, &sn[d]);
        check_spacing(names[d], &sn[d], ed[d].len, ed[d].n, every, 100, 64 * every, seed);
        assert_true(sn[d].n > 0);
        assert_int_equal(st[d].snapshot_seq, sn[d].seq[sn[d].n - 1]);
        assert_int_equal(st[d].snapshot_len, sn[d].len[sn[d].n - 1]);
    }
    printf("# snapshots: small %zu (last %llu bytes), big %zu (last %llu bytes)\n", sn[0].n,
           (unsigned long long)sn[0].len[sn[0].n - 1], sn[1].n,
           (unsigned long long)sn[1].len[sn[1].n - 1]);
    /* More entries, far fewer snapshots: at most half as many. */
    assert_true(ed[1].n > ed[0].n);
    assert_true(sn[1].n * 2 <= sn[0].n);

    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int d = 0; d < 2; d++) {
        check_versions_vs_replay(s, names[d], &ed[d], &sn[d], seed);
        store_load_info_t info;
        assert_doc_text(s, names[d], ed[d].doc, &info);
        assert_int_equal(info.snapshot_seq, st[d].snapshot_seq);
    }
    assert_int_equal(store_close(s), 0);
    free(sn);
    editor_dispose(&ed[0]);
    editor_dispose(&ed[1]);
    rm_dir(dir);
}

/*
 * The entry-count cap: with snapshot_log_percent 400 (the log bytes must reach
 * four times the snapshot's length, which small edits after a big text take
 * long to do) and
 * max factor 2, snapshots still come at most 2 * every entries apart, and
 * every version loads.
 */
static void test_store_snapshot_cap(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0202;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {
        .snapshot_every = 5, .snapshot_log_percent = 400, .snapshot_max_factor = 2};
    store_t *s;
    editor_t ed;
    editor_init(&ed, 23);
    assert_int_equal(store_open(dir, &o, &s), 0);
    for (int i = 0; i < 8; i++) { /* a big text first: small edits never reach its size */
        editor_edit(&ed, &r, 1024);
        append_doc(s, "doc", ed.upd[ed.n - 1], ed.len[ed.n - 1], ed.n);
    }
    for (int i = 0; i < 100; i++) {
        editor_edit(&ed, &r, 3);
        append_doc(s, "doc", ed.upd[ed.n - 1], ed.len[ed.n - 1], ed.n);
        if (rng_below(&r, 10) == 0)
            assert_int_equal(store_flush(s), 0);
    }
    assert_int_equal(store_flush(s), 0);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(store_close(s), 0);
    snaps_t *sn = calloc(1, sizeof *sn);
    assert_non_null(sn);
    raw_snaps(dir, st.doc_id, sn);
    check_spacing("doc", sn, ed.len, ed.n, 5, 400, 10, seed);
    for (size_t i = 1; i < sn->n; i++)
        assert_true(sn->seq[i] - sn->seq[i - 1] <= 10);
    assert_true(sn->n >= 10);
    assert_int_equal(store_open(dir, &o, &s), 0);
    check_versions_vs_replay(s, "doc", &ed, sn, seed);
    assert_int_equal(store_close(s), 0);
    free(sn);
    editor_dispose(&ed);
    rm_dir(dir);
}

/* ---- the compaction thread ---------------------------------------------------- */

/* Waits (poll on the completion fd) until ticket `t` is durable. */
static void wait_durable(store_t *s, uint64_t t)
{
    int fd = store_completion_fd(s);
    while (store_durable(s) < t) {
        struct pollfd q = {fd, POLLIN, 0};
        assert_true(poll(&q, 1, 10000) == 1);
    }
}

/*
 * With the queue idle and no flush, a snapshot owed is still written (by the
 * compaction thread and then the writer), and loads start from it. (The wait
 * is a hang guard, not a timing assertion.)
 */
static void test_store_snapshot_written_when_idle(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0301;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t o = {.snapshot_every = 10, .snapshot_max_factor = 1};
    store_t *s;
    editor_t ed;
    editor_init(&ed, 31);
    assert_int_equal(store_open(dir, &o, &s), 0);
    uint64_t t = 0;
    for (int i = 0; i < 13; i++) {
        editor_edit(&ed, &r, 20);
        t = append_doc(s, "idle", ed.upd[ed.n - 1], ed.len[ed.n - 1], ed.n);
    }
    wait_durable(s, t);
    store_doc_stat_t st = {0};
    for (int i = 0; i < 6000; i++) { /* up to 60 s */
        assert_int_equal(store_doc_stat(s, "idle", 4, &st), 0);
        if (st.snapshot_seq != 0)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(st.snapshot_seq, 10);
    assert_true(st.snapshot_len > 0);
    store_load_info_t info;
    assert_doc_text(s, "idle", ed.doc, &info);
    assert_int_equal(info.snapshot_seq, 10);
    assert_int_equal(info.entries_replayed, 3);
    assert_int_equal(store_flush(s), 0);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.snapshots_written, 1);
    assert_int_equal(ss.snapshot_errors, 0);
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

#define LIVE_DOCS 24

/* Loads documents while they are appended to and compacted: every load must
 * succeed, be consistent, and start from a snapshot it can use. */
typedef struct {
    store_t *s;
    atomic_int stop;
    int loads, from_snapshot, errors;
    char why[160];
} live_loader_t;

static void *live_loader_main(void *arg)
{
    live_loader_t *l = arg;
    char name[16];
    int i = 0;
    while (!l->stop) {
        snprintf(name, sizeof name, "live%d", (i++ * 7) % LIVE_DOCS);
        crdt_doc_t *d = NULL;
        store_load_info_t info;
        int rc = store_doc_load(l->s, name, strlen(name), 3, &d, &info);
        if (rc == STORE_ENOTFOUND)
            continue;
        if (rc != 0 || crdt_doc_check(d) != 0 || info.snapshot_fallbacks != 0 ||
            info.snapshot_seq + info.entries_replayed != info.last_seq) {
            if (!l->errors++)
                snprintf(l->why, sizeof l->why, "%s: rc %d, snapshot %llu + %llu != %llu", name, rc,
                         (unsigned long long)info.snapshot_seq,
                         (unsigned long long)info.entries_replayed,
                         (unsigned long long)info.last_seq);
        }
        l->from_snapshot += rc == 0 && info.snapshot_seq > 0;
        l->loads++;
        crdt_doc_free(d);
    }
    return NULL;
}

/*
 * Many documents owe snapshots while entries keep arriving (a window of
 * unacknowledged appends, like a server's) and another thread loads them: every
 * ticket becomes durable, every load is consistent, and after a flush every
 * document's snapshots lie exactly where the rule first holds (the compaction
 * thread plans each from committed metadata, one at a time), the stats agree
 * with what is stored, and every version equals a replay.
 */
static void test_store_compaction_while_appending(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0302;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    const uint32_t every = 6;
    store_options_t o = {.snapshot_every = every}; /* 100 %, max factor 64 */
    store_t *s;
    editor_t *ed = calloc(LIVE_DOCS, sizeof *ed);
    assert_non_null(ed);
    char names[LIVE_DOCS][16];
    for (int d = 0; d < LIVE_DOCS; d++) {
        editor_init(&ed[d], 400 + (uint64_t)d);
        snprintf(names[d], sizeof names[d], "live%d", d);
    }
    assert_int_equal(store_open(dir, &o, &s), 0);
    live_loader_t l = {.s = s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, live_loader_main, &l), 0);
    uint64_t last = 0;
    enum { ROUNDS = 90, WINDOW = 64 };
    for (int i = 0; i < ROUNDS * LIVE_DOCS; i++) {
        int d = (int)rng_below(&r, LIVE_DOCS);
        /* Every document starts with some text so that its builds take a while. */
        editor_edit(&ed[d], &r, ed[d].n < 4 ? 800 : 8);
        last = append_doc(s, names[d], ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1], ed[d].n);
        if (last > WINDOW)
            wait_durable(s, last - WINDOW);
    }
    wait_durable(s, last);
    assert_int_equal(store_flush(s), 0);
    l.stop = 1;
    pthread_join(th, NULL);
    if (l.errors)
        fail_msg("seed %#llx: %d bad loads of %d, first: %s", (unsigned long long)seed, l.errors,
                 l.loads, l.why);
    store_stats_t ss;
    store_stats(s, &ss);
    assert_int_equal(ss.snapshot_errors, 0);
    assert_int_equal(ss.durable_ticket, last);
    store_doc_stat_t *st = calloc(LIVE_DOCS, sizeof *st);
    assert_non_null(st);
    for (int d = 0; d < LIVE_DOCS; d++) {
        assert_int_equal(store_doc_stat(s, names[d], strlen(names[d]), &st[d]), 0);
        store_load_info_t info;
        assert_doc_text(s, names[d], ed[d].doc, &info);
        assert_int_equal(info.snapshot_seq, st[d].snapshot_seq);
    }
    printf("# live compaction: %llu entries, %llu snapshots (%llu bytes), %d concurrent loads "
           "(%d from a snapshot)\n",
           (unsigned long long)ss.entries_written, (unsigned long long)ss.snapshots_written,
           (unsigned long long)ss.snapshot_bytes, l.loads, l.from_snapshot);
    assert_int_equal(store_close(s), 0);

    snaps_t *sn = calloc(1, sizeof *sn);
    assert_non_null(sn);
    uint64_t total = 0;
    for (int d = 0; d < LIVE_DOCS; d++) {
        raw_snaps(dir, st[d].doc_id, sn);
        check_spacing(names[d], sn, ed[d].len, ed[d].n, every, 100, 64 * every, seed);
        if (sn->n) {
            assert_int_equal(st[d].snapshot_seq, sn->seq[sn->n - 1]);
            assert_int_equal(st[d].snapshot_len, sn->len[sn->n - 1]);
        }
        total += sn->n;
        if (d < 3) { /* every version of a few of them */
            assert_int_equal(store_open(dir, &o, &s), 0);
            check_versions_vs_replay(s, names[d], &ed[d], sn, seed);
            assert_int_equal(store_close(s), 0);
        }
    }
    assert_int_equal(total, ss.snapshots_written);
    assert_true(total >= LIVE_DOCS);
    free(sn);
    free(st);
    for (int d = 0; d < LIVE_DOCS; d++)
        editor_dispose(&ed[d]);
    free(ed);
    rm_dir(dir);
}

/*
 * store_close() right after the appends that make documents owe snapshots
 * (often while the compaction thread is building one), after no wait or a
 * short random one: close returns 0, and the reopened store holds every
 * snapshot owed, where the rule puts it, and loads from the latest.
 */
static void test_store_close_while_compacting(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0303;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    const uint32_t every = 5;
    store_options_t o = {.snapshot_every = every, .snapshot_max_factor = 1};
    enum { DOCS = 3 };
    const char *names[DOCS] = {"c-a", "c-b", "c-c"};
    for (int round = 0; round < 8; round++) {
        char dir[64];
        make_tmpdir(dir, sizeof dir);
        editor_t ed[DOCS];
        store_t *s;
        assert_int_equal(store_open(dir, &o, &s), 0);
        for (int d = 0; d < DOCS; d++) {
            editor_init(&ed[d], 600 + (uint64_t)d);
            for (int i = 0; i < 12; i++) { /* 12 entries: 2 snapshots each */
                editor_edit(&ed[d], &r, i < 6 ? 1000 : 10);
                append_doc(s, names[d], ed[d].upd[ed[d].n - 1], ed[d].len[ed[d].n - 1], ed[d].n);
            }
        }
        if (round % 2) { /* let the writer and the compaction thread get going */
            struct timespec ts = {0, (long)rng_below(&r, 3000) * 1000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(store_close(s), 0);

        snaps_t *sn = calloc(1, sizeof *sn);
        assert_non_null(sn);
        assert_int_equal(store_open(dir, &o, &s), 0);
        for (int d = 0; d < DOCS; d++) {
            store_doc_stat_t st;
            assert_int_equal(store_doc_stat(s, names[d], strlen(names[d]), &st), 0);
            assert_int_equal(st.last_seq, 12);
            if (st.snapshot_seq != 10)
                fail_msg("seed %#llx: round %d, %s: snapshot at %llu", (unsigned long long)seed,
                         round, names[d], (unsigned long long)st.snapshot_seq);
            store_load_info_t info;
            assert_doc_text(s, names[d], ed[d].doc, &info);
            assert_int_equal(info.snapshot_seq, 10);
            assert_int_equal(info.entries_replayed, 2);
            assert_int_equal(store_close(s), 0);
            raw_snaps(dir, st.doc_id, sn);
            check_spacing(names[d], sn, ed[d].len, ed[d].n, every, 100, every, seed);
            assert_int_equal(store_open(dir, &o, &s), 0);
        }
        assert_int_equal(store_close(s), 0);
        free(sn);
        for (int d = 0; d < DOCS; d++)
            editor_dispose(&ed[d]);
        rm_dir(dir);
    }
}

/* Puts `n` bytes as the metadata value of `name` in a closed store. */
static void raw_meta_put(const char *dir, const char *name, const uint8_t *v, size_t n)
{
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_DOCS);
    MDB_val k = {strlen(name), (void *)name}, mv = {n, (void *)v};
    assert_int_equal(mdb_put(raw.txn, raw.dbi, &k, &mv, 0), 0);
    raw_close(&raw);
}

static size_t raw_meta_get(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_DOCS);
    MDB_val k = {strlen(name), (void *)name}, v;
    assert_int_equal(mdb_get(raw.txn, raw.dbi, &k, &v), 0);
    assert_true(v.mv_size <= cap);
    memcpy(buf, v.mv_data, v.mv_size);
    raw_close(&raw);
    return v.mv_size;
}

/*
 * A document whose metadata is in format 1 (49 bytes, as written before
 * size-aware snapshots) loads at every seq; its next snapshot follows the
 * plain rule (its latest snapshot's size is unknown) and rewrites the metadata
 * in format 2 with the snapshot's length and the log bytes up to it. Hostile
 * metadata values (lengths, format, byte counts) are errors.
 */
static void test_store_old_format_meta(void **state)
{
    (void)state;
    const uint64_t seed = 0x5eed0203;
    rng_t r;
    rng_init(&r, seed);
    note_seed(__func__, seed);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_options_t plain = {.snapshot_every = 10, .snapshot_max_factor = 1};
    store_t *s;
    editor_t ed;
    editor_init(&ed, 24);
    assert_int_equal(store_open(dir, &plain, &s), 0);
    append_flush(s, &ed, &r, "doc", 25);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(st.snapshot_seq, 20);
    assert_int_equal(store_close(s), 0);

    uint8_t meta[128], v1[STORE__META_LEN_V1];
    assert_int_equal(raw_meta_get(dir, "doc", meta, sizeof meta), STORE__META_LEN);
    assert_int_equal(meta[0], STORE__VALUE_V2);
    snaps_t *sn = calloc(1, sizeof *sn);
    assert_non_null(sn);
    raw_snaps(dir, st.doc_id, sn);
    assert_int_equal(sn->n, 2);
    assert_int_equal(store__get_u64(meta + 49), sn->len[1]); /* the snapshot at 20 */
    uint64_t bytes20 = 0;
    for (int i = 0; i < 20; i++)
        bytes20 += ed.len[i];
    assert_int_equal(store__get_u64(meta + 57), bytes20);

    /* The old format: the first 49 bytes, format byte 1. */
    memcpy(v1, meta, sizeof v1);
    v1[0] = STORE__VALUE_V1;
    raw_meta_put(dir, "doc", v1, sizeof v1);
    store_options_t o = {.snapshot_every = 10}; /* size-aware (defaults) */
    assert_int_equal(store_open(dir, &o, &s), 0);
    store_doc_stat_t st1;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st1), 0);
    assert_int_equal(st1.last_seq, 25);
    assert_int_equal(st1.snapshot_seq, 20);
    assert_int_equal(st1.snapshot_len, 0); /* not in the old format */
    assert_int_equal(st1.bytes, st.bytes);
    check_versions_vs_replay(s, "doc", &ed, sn, seed);
    append_flush(s, &ed, &r, "doc", 10); /* to 35: owed at 30 (the size is unknown) */
    assert_int_equal(store_doc_stat(s, "doc", 3, &st1), 0);
    assert_int_equal(st1.snapshot_seq, 30);
    assert_true(st1.snapshot_len > 0);
    assert_doc_text(s, "doc", ed.doc, NULL);
    assert_int_equal(store_close(s), 0);
    assert_int_equal(raw_meta_get(dir, "doc", meta, sizeof meta), STORE__META_LEN);
    assert_int_equal(meta[0], STORE__VALUE_V2);
    assert_int_equal(store__get_u64(meta + 49), st1.snapshot_len);
    uint64_t bytes30 = 0;
    for (int i = 0; i < 30; i++)
        bytes30 += ed.len[i];
    assert_int_equal(store__get_u64(meta + 57), bytes30);
    raw_snaps(dir, st.doc_id, sn);
    assert_int_equal(sn->n, 3);

    /* Hostile metadata: wrong lengths for either format, an unknown format,
     * more bytes up to the snapshot than in the whole log. */
    uint8_t good[STORE__META_LEN], bad[STORE__META_LEN + 1];
    memcpy(good, meta, sizeof good);
    struct {
        const char *what;
        uint8_t fmt;
        size_t len;
        int want;
    } cases[] = {
        {"v2 short", STORE__VALUE_V2, STORE__META_LEN - 1, STORE_ECORRUPT},
        {"v2 long", STORE__VALUE_V2, STORE__META_LEN + 1, STORE_ECORRUPT},
        {"v2 as long as v1", STORE__VALUE_V2, STORE__META_LEN_V1, STORE_ECORRUPT},
        {"v1 as long as v2", STORE__VALUE_V1, STORE__META_LEN, STORE_ECORRUPT},
        {"format 3", 3, STORE__META_LEN, STORE_EFORMAT},
        {"bytes past the log", STORE__VALUE_V2, STORE__META_LEN, STORE_ECORRUPT},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memset(bad, 0, sizeof bad);
        memcpy(bad, good, sizeof good);
        bad[0] = cases[c].fmt;
        if (c == 5)
            store__put_u64(bad + 57, st1.bytes + 1);
        raw_meta_put(dir, "doc", bad, cases[c].len);
        assert_int_equal(store_open(dir, &o, &s), 0);
        store_doc_stat_t x;
        crdt_doc_t *d = NULL;
        int rc = store_doc_stat(s, "doc", 3, &x);
        if (rc != cases[c].want)
            fail_msg("%s: stat gave %d (%s)", cases[c].what, rc, store_strerror(rc));
        assert_int_equal(store_doc_load(s, "doc", 3, 1, &d, NULL), cases[c].want);
        assert_int_equal(store_doc_load_at(s, "doc", 3, 1, 5, &d, NULL), cases[c].want);
        assert_null(d);
        assert_int_equal(store_close(s), 0);
    }
    raw_meta_put(dir, "doc", good, sizeof good);
    assert_int_equal(store_open(dir, &o, &s), 0);
    assert_doc_text(s, "doc", ed.doc, NULL);
    assert_int_equal(store_close(s), 0);
    free(sn);
    editor_dispose(&ed);
    rm_dir(dir);
}

static int stop_after(void *ctx, uint64_t seq, const store_entry_t *e)
{
    int *left = ctx;
    (void)seq;
    (void)e;
    return --*left == 0;
}

static void test_store_log_read_rev(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0105);
    note_seed(__func__, 0x5eed0105);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed, other;
    editor_init(&ed, 14);
    editor_init(&other, 15);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    append_flush(s, &other, &r, "before", 7); /* neighbours in the log */
    append_flush(s, &ed, &r, "doc", 50);
    append_flush(s, &other, &r, "later", 7);
    log_copy_t *fwd = read_log(s, "doc");
    assert_int_equal(fwd->n, 50);

    uint64_t froms[] = {UINT64_MAX, 50, 1000, 20, 1};
    for (size_t f = 0; f < sizeof froms / sizeof froms[0]; f++) {
        log_copy_t *c = calloc(1, sizeof *c);
        assert_int_equal(store_log_read_rev(s, "doc", 3, froms[f], collect, c), 0);
        uint64_t top = froms[f] > 50 ? 50 : froms[f];
        assert_int_equal(c->n, top);
        for (size_t i = 0; i < c->n; i++) {
            size_t j = top - 1 - i; /* the same entry in the forward walk */
            assert_int_equal(c->seq[i], top - i);
            assert_int_equal(c->len[i], fwd->len[j]);
            assert_memory_equal(c->upd[i], fwd->upd[j], c->len[i]);
            assert_int_equal(c->time[i], fwd->time[j]);
        }
        log_copy_free(c);
    }
    assert_int_equal(store_log_read_rev(s, "doc", 3, 0, never_called, NULL), 0);
    int left = 5;
    assert_int_equal(store_log_read_rev(s, "doc", 3, UINT64_MAX, stop_after, &left), 0);
    assert_int_equal(left, 0);
    assert_int_equal(store_log_read_rev(s, "nodoc", 5, 1, never_called, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_log_read_rev(s, "a b", 3, 1, never_called, NULL), STORE_EINVAL);
    assert_int_equal(store_log_read_rev(s, "doc", 3, 1, NULL, NULL), STORE_EINVAL);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "doc", 3, &st), 0);
    assert_int_equal(store_close(s), 0);

    /* A malformed entry at 30: the newer ones are reported, then the error. */
    static uint8_t v[4096];
    raw_t raw;
    raw_open(&raw, dir, STORE__DB_LOG);
    size_t n = raw_get(&raw, st.doc_id, 30, v, sizeof v);
    raw_close(&raw);
    v[n - 1] ^= 1;
    damage(dir, STORE__DB_LOG, st.doc_id, 30, v, n);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    log_copy_t *c = calloc(1, sizeof *c);
    assert_int_equal(store_log_read_rev(s, "doc", 3, UINT64_MAX, collect, c), STORE_ECORRUPT);
    assert_int_equal(c->n, 20);
    assert_int_equal(c->seq[19], 31);
    log_copy_free(c);
    c = calloc(1, sizeof *c);
    assert_int_equal(store_log_read_rev(s, "doc", 3, 29, collect, c), 0);
    assert_int_equal(c->n, 29);
    log_copy_free(c);
    assert_int_equal(store_close(s), 0);

    /* A missing entry (gap) at 10 is corrupt too, after 29..11. */
    v[n - 1] ^= 1;
    damage(dir, STORE__DB_LOG, st.doc_id, 30, v, n);
    damage(dir, STORE__DB_LOG, st.doc_id, 10, NULL, SIZE_MAX);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    c = calloc(1, sizeof *c);
    assert_int_equal(store_log_read_rev(s, "doc", 3, 29, collect, c), STORE_ECORRUPT);
    assert_int_equal(c->n, 19);
    log_copy_free(c);
    /* ... and so is a log missing its first entries. */
    damage(dir, STORE__DB_LOG, st.doc_id, 1, NULL, SIZE_MAX);
    c = calloc(1, sizeof *c);
    assert_int_equal(store_log_read_rev(s, "doc", 3, 9, collect, c), STORE_ECORRUPT);
    assert_int_equal(c->n, 8);
    log_copy_free(c);
    assert_int_equal(store_close(s), 0);
    log_copy_free(fwd);
    editor_dispose(&ed);
    editor_dispose(&other);
    rm_dir(dir);
}

static void test_store_replica_names(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0106);
    note_seed(__func__, 0x5eed0106);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed;
    editor_init(&ed, 16);
    char longname[STORE_AUTHOR_NAME_MAX + 1];
    memset(longname, 'L', STORE_AUTHOR_NAME_MAX);
    longname[STORE_AUTHOR_NAME_MAX] = 0;
    struct {
        const char *doc;
        uint64_t replica;
        const char *name;
    } seq[] = {
        {"a", 1, "ann"}, {"a", 1, "anna"},   {"a", 2, ""},    {"a", 2, "bob"},
        {"b", 1, "zed"}, {"a", 4, longname}, {"b", 2, "bee"},
    };
    assert_int_equal(store_open(dir, NULL, &s), 0);
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        editor_edit(&ed, &r, 4);
        append_ex(s, seq[i].doc, ed.upd[i], ed.len[i], seq[i].replica, seq[i].name, i, 0, NULL);
        if (i == 2)
            assert_int_equal(store_flush(s), 0);
    }
    assert_int_equal(store_close(s), 0);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    editor_edit(&ed, &r, 4); /* after reopening: still the first name */
    append_ex(s, "a", ed.upd[ed.n - 1], ed.len[ed.n - 1], 1, "later", 99, 0, NULL);
    assert_int_equal(store_flush(s), 0);
    char out[STORE_AUTHOR_NAME_MAX + 1];
    assert_int_equal(store_replica_name(s, "a", 1, 1, out), 0);
    assert_string_equal(out, "ann");
    assert_int_equal(store_replica_name(s, "a", 1, 2, out), 0);
    assert_string_equal(out, "bob"); /* empty names are not recorded */
    assert_int_equal(store_replica_name(s, "a", 1, 4, out), 0);
    assert_string_equal(out, longname);
    assert_int_equal(store_replica_name(s, "b", 1, 1, out), 0);
    assert_string_equal(out, "zed"); /* per document */
    assert_int_equal(store_replica_name(s, "b", 1, 2, out), 0);
    assert_string_equal(out, "bee");
    strcpy(out, "untouched");
    assert_int_equal(store_replica_name(s, "a", 1, 3, out), STORE_ENOTFOUND);
    assert_int_equal(store_replica_name(s, "b", 1, 4, out), STORE_ENOTFOUND);
    assert_int_equal(store_replica_name(s, "c", 1, 1, out), STORE_ENOTFOUND);
    assert_int_equal(store_replica_name(s, "c/", 2, 1, out), STORE_EINVAL);
    assert_string_equal(out, "untouched");
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

static void test_store_version_remove(void **state)
{
    (void)state;
    rng_t r;
    rng_init(&r, 0x5eed0107);
    note_seed(__func__, 0x5eed0107);
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    editor_t ed;
    editor_init(&ed, 17);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    append_flush(s, &ed, &r, "doc", 6);
    assert_true(store_version_put(s, "doc", 3, 2, "two", 3, 1, 10) > 0);
    assert_true(store_version_put(s, "doc", 3, 4, "four", 4, 1, 11) > 0);
    assert_true(store_version_put(s, "doc", 3, 6, "six", 3, 1, 12) > 0);
    assert_true(store_version_put(s, "doc", 3, 4, NULL, 0, 2, 13) > 0); /* removes 4 */
    assert_true(store_version_put(s, "doc", 3, 5, NULL, 0, 2, 14) > 0); /* none at 5 */
    assert_int_equal(store_flush(s), 0);
    versions_t g = {0};
    assert_int_equal(store_version_list(s, "doc", 3, collect_version, &g), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.seq[0], 2);
    assert_int_equal(g.seq[1], 6);
    /* Removed in one batch, named again in the next. */
    assert_true(store_version_put(s, "doc", 3, 2, "", 0, 2, 15) > 0);
    assert_int_equal(store_flush(s), 0);
    assert_true(store_version_put(s, "doc", 3, 4, "again", 5, 3, 16) > 0);
    assert_int_equal(store_close(s), 0);
    assert_int_equal(store_open(dir, NULL, &s), 0);
    memset(&g, 0, sizeof g);
    assert_int_equal(store_version_list(s, "doc", 3, collect_version, &g), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.seq[0], 4);
    assert_string_equal(g.label[0], "again");
    assert_int_equal(g.author[0], 3);
    assert_int_equal(g.seq[1], 6);
    assert_int_equal(store_close(s), 0);
    editor_dispose(&ed);
    rm_dir(dir);
}

/* More documents than the next-seq cache keeps: evicted ones reload correctly. */
static void test_store_seq_cache_eviction(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    store_t *s;
    crdt_doc_t *d;
    crdt_buf_t u = {0};
    assert_int_equal(crdt_doc_new(18, NULL, &d), 0);
    assert_int_equal(crdt_doc_insert(d, 0, "x", 1, &u), 0);
    store_options_t o = {.no_sync = 1};
    assert_int_equal(store_open(dir, &o, &s), 0);
    char name[32];
    uint64_t seq;
    for (int i = 0; i < 5000; i++) {
        if (i == 3000)
            assert_int_equal(store_flush(s), 0);
        snprintf(name, sizeof name, "d%d", i);
        append_ex(s, name, u.base, u.len, 1, NULL, 1, 0, &seq);
        assert_int_equal(seq, 1);
    }
    for (int i = 0; i < 5000; i += 499) { /* evicted (durable) and cached ones */
        snprintf(name, sizeof name, "d%d", i);
        append_ex(s, name, u.base, u.len, 1, NULL, 2, 0, &seq);
        assert_int_equal(seq, 2);
    }
    assert_int_equal(store_close(s), 0);
    assert_int_equal(store_open(dir, &o, &s), 0);
    store_doc_stat_t st;
    assert_int_equal(store_doc_stat(s, "d499", 4, &st), 0);
    assert_int_equal(st.last_seq, 2);
    assert_int_equal(store_doc_stat(s, "d500", 4, &st), 0);
    assert_int_equal(st.last_seq, 1);
    assert_int_equal(store_close(s), 0);
    crdt_buf_dispose(&u);
    crdt_doc_free(d);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_strerror_and_args),
        cmocka_unit_test(test_store_reopen_keeps_everything),
        cmocka_unit_test(test_store_snapshot_every_n),
        cmocka_unit_test(test_store_uncompressed_snapshots),
        cmocka_unit_test(test_store_corrupt_snapshot_falls_back),
        cmocka_unit_test(test_store_hostile_log_values),
        cmocka_unit_test(test_store_versions_list),
        cmocka_unit_test(test_store_group_commit),
        cmocka_unit_test(test_store_commit_spacing),
        cmocka_unit_test(test_store_map_growth_while_loading),
        cmocka_unit_test(test_store_map_max_fails_cleanly),
        cmocka_unit_test(test_store_mdb_copy_live),
        cmocka_unit_test(test_store_crash_safety),
        cmocka_unit_test(test_store_append_ex_seqs),
        cmocka_unit_test(test_store_restore_of_round_trip),
        cmocka_unit_test(test_store_old_format_values_read),
        cmocka_unit_test(test_store_doc_load_at_every_seq),
        cmocka_unit_test(test_store_log_read_rev),
        cmocka_unit_test(test_store_replica_names),
        cmocka_unit_test(test_store_version_remove),
        cmocka_unit_test(test_store_seq_cache_eviction),
        cmocka_unit_test(test_store_snapshot_spacing_by_size),
        cmocka_unit_test(test_store_snapshot_cap),
        cmocka_unit_test(test_store_old_format_meta),
        cmocka_unit_test(test_store_snapshot_written_when_idle),
        cmocka_unit_test(test_store_compaction_while_appending),
        cmocka_unit_test(test_store_close_while_compacting),
    };
    if (getenv("CMOCKA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
