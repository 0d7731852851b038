/* SPDX-License-Identifier: MIT */
/*
 * doc.c: the documents weftd holds in memory. A document is loaded from the
 * store when its first editor says HELLO (or a REST call needs it), shared by
 * all its editors, and unloaded --unload-after seconds after the last one left.
 *
 * Broadcast. The first change of a tick records the document's state vector;
 * at the end of the tick the difference against it (crdt_doc_diff) is ONE
 * update holding every operation of the tick, framed once and queued to every
 * editor. The only writer of a tick is skipped (it has all of it already),
 * unless held operations may have been released by its update. A tick with
 * one update that was applied whole (nothing held before or after) sends that
 * update on as received, without the diff.
 *
 * Pacing. A document with many editors is broadcast at most every
 * srv__doc_pace_ms() (--broadcast-pace per editor, at most SRV_PACE_MAX_MS):
 * until then it stays dirty, and "the tick" above spans every tick up to its
 * broadcast (server.c decides when, and wakes the loop for it). ACKs its
 * editors get meanwhile wait for that broadcast (pace_due), which gives every
 * editor with output a write. A frame for SRV_SHARE_MIN or more editors is
 * one reference-counted buffer shared by their outputs (ws.c).
 *
 * Event-loop thread only.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "srv_internal.h"

static uint64_t hash_name(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

srv_doc_t *srv__doc_find(srv_t *srv, const char *name, size_t len)
{
    if (srv->docs_cap == 0)
        return NULL;
    for (srv_doc_t *d = srv->docs[hash_name(name, len) & (srv->docs_cap - 1)]; d != NULL;
         d = d->hash_next)
        if (d->name_len == len && memcmp(d->name, name, len) == 0)
            return d;
    return NULL;
}

static void hash_grow(srv_t *srv)
{
    size_t cap = srv->docs_cap ? srv->docs_cap * 2 : 64;
    srv_doc_t **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        abort();
    for (size_t i = 0; i < srv->docs_cap; i++) {
        srv_doc_t *d = srv->docs[i], *next;
        for (; d != NULL; d = next) {
            size_t b = hash_name(d->name, d->name_len) & (cap - 1);
            next = d->hash_next;
            d->hash_next = t[b];
            t[b] = d;
        }
    }
    free(srv->docs);
    srv->docs = t;
    srv->docs_cap = cap;
}

static void hash_remove(srv_t *srv, srv_doc_t *doc)
{
    srv_doc_t **p = &srv->docs[hash_name(doc->name, doc->name_len) & (srv->docs_cap - 1)];
    while (*p != doc)
        p = &(*p)->hash_next;
    *p = doc->hash_next;
    srv->ndocs--;
}

uint64_t srv__random_replica(void)
{
    uint64_t r = 0;
    while (r == 0)
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            abort();
    return r;
}

static void doc_free(srv_doc_t *doc)
{
    if (h2o_timeout_is_linked(&doc->unload_timer))
        h2o_timeout_unlink(&doc->unload_timer);
    if (h2o_linklist_is_linked(&doc->dirty_link))
        h2o_linklist_unlink(&doc->dirty_link);
    crdt_buf_dispose(&doc->tick_sv);
    proto_buf_dispose(&doc->relay);
    crdt_doc_free(doc->crdt);
    free(doc);
}

/* Whether an editor-less document can go now: flushed, and everything it
 * logged durable (a load reads only what is committed), and the store working
 * (what never reached the disk stays, for /api/docs at least). */
static int unloadable(srv_doc_t *doc)
{
    const srv_t *srv = doc->srv;
    return doc->nsessions == 0 && !h2o_linklist_is_linked(&doc->dirty_link) &&
           srv->durable >= doc->last_ticket && srv->store_error == 0;
}

/* --max-documents: unloads one idle document. Returns 1, or 0 when none can go. */
static int unload_one_idle(srv_t *srv)
{
    for (size_t i = 0; i < srv->docs_cap; i++)
        for (srv_doc_t *d = srv->docs[i]; d != NULL; d = d->hash_next)
            if (unloadable(d)) {
                hash_remove(srv, d);
                srv->metrics.docs_unloaded_total++;
                doc_free(d);
                return 1;
            }
    return 0;
}

static void on_unload(h2o_timeout_entry_t *entry)
{
    srv_doc_t *doc = H2O_STRUCT_FROM_MEMBER(srv_doc_t, unload_timer, entry);
    srv_t *srv = doc->srv;
    if (doc->nsessions > 0)
        return;
    /* Flush first, and wait until the store has every update: a load reads
     * only what is committed, so unloading earlier would lose the rest until
     * the next load. */
    if (h2o_linklist_is_linked(&doc->dirty_link) || srv->durable < doc->last_ticket) {
        /* (Not the unload timeout itself: with --unload-after 0 the timer
         * would fire again within the same pass of the loop, for ever.) */
        h2o_timeout_link(srv->loop, &srv->unload_retry_timeout, &doc->unload_timer);
        return;
    }
    if (srv->store_error != 0)
        return; /* keep what never reached the disk, for /api/docs at least */
    hash_remove(srv, doc);
    srv->metrics.docs_unloaded_total++;
    doc_free(doc);
}

int srv__doc_open(srv_t *srv, const char *name, size_t len, srv_doc_t **out)
{
    srv_doc_t *doc = srv__doc_find(srv, name, len);
    crdt_doc_t *crdt = NULL;
    store_load_info_t info;
    uint64_t replica;
    int err;

    if (doc != NULL) {
        *out = doc;
        return 0;
    }
    if (srv->ndocs >= srv->cfg.max_documents && !unload_one_idle(srv)) {
        srv->metrics.limited[SRV_LIMIT_DOCUMENTS]++;
        return SRV_EBUSY;
    }
    replica = srv__random_replica();
    memset(&info, 0, sizeof(info));
    err = store_doc_load(srv->store, name, len, replica, &crdt, &info);
    if (err == STORE_ENOTFOUND)
        err = crdt_doc_new(replica, NULL, &crdt);
    if (err != 0) {
        fprintf(stderr, "weftd: document '%.*s' cannot be loaded: %s\n", (int)len, name,
                err <= -200 ? store_strerror(err) : crdt_strerror(err));
        return err;
    }
    doc = calloc(1, sizeof(*doc));
    if (doc == NULL)
        abort();
    doc->srv = srv;
    memcpy(doc->name, name, len);
    doc->name_len = len;
    doc->crdt = crdt;
    doc->last_seq = info.last_seq; /* nothing of it is queued: unloads wait for commits */
    h2o_linklist_init_anchor(&doc->sessions);
    doc->unload_timer.cb = on_unload;
    if (srv->ndocs + 1 > srv->docs_cap / 4 * 3)
        hash_grow(srv);
    {
        size_t b = hash_name(name, len) & (srv->docs_cap - 1);
        doc->hash_next = srv->docs[b];
        srv->docs[b] = doc;
    }
    srv->ndocs++;
    srv->metrics.docs_loaded_total++;
    /* Unloaded in due course if nobody joins (a REST read, a failed HELLO). */
    h2o_timeout_link(srv->loop, &srv->unload_timeout, &doc->unload_timer);
    *out = doc;
    return 0;
}

void srv__doc_join(srv_doc_t *doc, srv_session_t *s)
{
    if (h2o_timeout_is_linked(&doc->unload_timer))
        h2o_timeout_unlink(&doc->unload_timer);
    h2o_linklist_insert(&doc->sessions, &s->doc_link);
    doc->nsessions++;
    s->doc = doc;
}

void srv__doc_leave(srv_doc_t *doc, srv_session_t *s)
{
    srv_t *srv = doc->srv;
    h2o_linklist_unlink(&s->doc_link);
    doc->nsessions--;
    s->doc = NULL;
    if (doc->tick_author == s) {
        doc->tick_author = NULL;
        doc->tick_many = 1;
    }
    if (s->has_presence) {
        proto_msg_t m;
        memset(&m, 0, sizeof(m));
        m.type = PROTO_PRESENCE_LEAVE;
        m.u.presence_leave.replica = s->replica;
        proto_buf_reset(&srv->scratch);
        if (proto_encode(&m, &srv->scratch) != 0)
            abort();
        srv__doc_broadcast(doc, NULL, srv->scratch.base, srv->scratch.len);
    }
    if (doc->nsessions == 0)
        h2o_timeout_link(srv->loop, &srv->unload_timeout, &doc->unload_timer);
}

int srv__doc_begin_change(srv_doc_t *doc, srv_session_t *s)
{
    srv_t *srv = doc->srv;
    if (!h2o_linklist_is_linked(&doc->dirty_link)) {
        crdt_buf_dispose(&doc->tick_sv);
        if (crdt_doc_state_vector(doc->crdt, &doc->tick_sv) != 0)
            abort();
        doc->tick_pending = crdt_doc_pending(doc->crdt);
        doc->tick_author = s;
        doc->tick_many = s == NULL;
        doc->tick_changes = 1;
        doc->relay.len = 0;
        h2o_linklist_insert(&srv->dirty_docs, &doc->dirty_link);
    } else {
        doc->tick_changes++;
        if (doc->tick_author != s)
            doc->tick_many = 1;
    }
    return 0;
}

void srv__doc_broadcast(srv_doc_t *doc, srv_session_t *except, const uint8_t *msg, size_t len)
{
    srv_shared_t *sh = doc->nsessions >= SRV_SHARE_MIN ? srv__shared_new(msg, len) : NULL;
    for (h2o_linklist_t *l = doc->sessions.next; l != &doc->sessions; l = l->next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, doc_link, l);
        if (s != except) {
            if (sh != NULL)
                srv__session_send_shared(s, sh, len);
            else
                srv__session_send(s, msg, len);
        }
    }
    if (sh != NULL)
        srv__shared_release(sh);
}

uint64_t srv__doc_pace_ms(const srv_doc_t *doc)
{
    uint64_t us = (uint64_t)doc->nsessions * doc->srv->cfg.broadcast_pace_us;
    return us >= SRV_PACE_MAX_MS * 1000 ? SRV_PACE_MAX_MS : us / 1000;
}

void srv__doc_flush_tick(srv_doc_t *doc)
{
    srv_t *srv = doc->srv;
    crdt_buf_t sv = {0}, diff = {0};
    srv_session_t *skip = NULL;
    srv_shared_t *sh = NULL;
    int waited = doc->pace_due != 0; /* editors may hold ACKs for this broadcast */

    h2o_linklist_unlink(&doc->dirty_link);
    if (doc->relay.len > 0 && doc->tick_changes == 1) {
        /* One update from one editor, wholly applied, nothing held before or
         * after (on_update_bytes kept it only then, and no other change came
         * since): it is the tick's news. Sent on as received (operations the
         * document knew already are harmless to the others), without the
         * state vector and diff of the general case. */
        proto_buf_reset(&srv->scratch);
        if (proto_encode_update(&srv->scratch, 0, doc->relay.base, doc->relay.len) != 0)
            abort();
        skip = doc->tick_author;
        goto Send;
    }
    if (crdt_doc_state_vector(doc->crdt, &sv) != 0)
        abort();
    if (sv.len == doc->tick_sv.len && memcmp(sv.base, doc->tick_sv.base, sv.len) == 0)
        goto Exit; /* nothing new became visible (duplicates, held operations) */
    if (crdt_doc_diff(doc->crdt, doc->tick_sv.base, doc->tick_sv.len, &diff) != 0)
        abort();
    if (!doc->tick_many && doc->tick_pending == 0)
        skip = doc->tick_author;
    proto_buf_reset(&srv->scratch);
    if (proto_encode_update(&srv->scratch, 0, diff.base, diff.len) != 0)
        abort();
Send:
    /* Many recipients share one copy of the frame. */
    if (doc->nsessions >= SRV_SHARE_MIN)
        sh = srv__shared_new(srv->scratch.base, srv->scratch.len);
    for (h2o_linklist_t *l = doc->sessions.next; l != &doc->sessions; l = l->next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, doc_link, l);
        if (s == skip) {
            if (waited && srv__ws_queued(&s->ws) != 0)
                srv__session_mark_proceed(s);
            continue;
        }
        if ((sh != NULL ? srv__session_send_shared(s, sh, srv->scratch.len)
                        : srv__session_send(s, srv->scratch.base, srv->scratch.len)) == 0)
            srv->metrics.updates_out++;
    }
    if (sh != NULL)
        srv__shared_release(sh);
    waited = 0;
Exit:
    /* ACKs held for this broadcast (srv__session_ack_durable) go out now. */
    if (waited)
        for (h2o_linklist_t *l = doc->sessions.next; l != &doc->sessions; l = l->next) {
            srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, doc_link, l);
            if (srv__ws_queued(&s->ws) != 0)
                srv__session_mark_proceed(s);
        }
    doc->flushed_at = srv__now_ms(srv);
    doc->pace_due = 0;
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&diff);
    doc->tick_author = NULL;
    doc->tick_many = 0;
    doc->tick_changes = 0;
    doc->relay.len = 0;
}

void srv__doc_free_all(srv_t *srv)
{
    for (size_t i = 0; i < srv->docs_cap; i++) {
        srv_doc_t *d = srv->docs[i], *next;
        for (; d != NULL; d = next) {
            next = d->hash_next;
            doc_free(d);
        }
    }
    free(srv->docs);
    srv->docs = NULL;
    srv->docs_cap = srv->ndocs = 0;
}
