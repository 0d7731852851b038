/* SPDX-License-Identifier: MIT */
/*
 * replay.h: replays a loaded editing trace (trace.h) on crdt/ documents. It is
 * shared by the trace tests (tests/crdt/test_traces.c) and the benchmark
 * (bench/crdt-trace.c), so it holds the replay logic only: no timing, no printing.
 * A sequential trace is applied as local edits to one document. A concurrent trace
 * gets one replica per agent: before each transaction the agent's replica receives,
 * as remote updates, every ancestor transaction it has not seen yet (in index
 * order), then applies the transaction's patches locally; at the end a fresh replica
 * merges every update. Test support code: it uses libc's allocator for its own
 * bookkeeping and the caller's crdt_alloc_t for the documents.
 */
#ifndef WEFT_REPLAY_H
#define WEFT_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "crdt.h"
#include "trace.h"

/*
 * What a replay leaves behind; everything in it is owned by the result and released
 * by replay_result_dispose().
 */
typedef struct {
    /* The final document: for a sequential trace the edited one (client 1); for a
     * concurrent trace the replica that merged every update (client num_agents + 1).
     * NULL if the replay failed before creating it. */
    crdt_doc_t *doc;
    /* Concurrent traces: agents[a] is agent a's replica (client a + 1), or NULL if
     * agent a has no transaction; nagents is the trace's num_agents. Sequential: NULL
     * and 0. */
    crdt_doc_t **agents;
    uint32_t nagents;
    /* Update bytes of every local edit, in the order made (a patch that deletes and
     * inserts makes two), when kept: always for concurrent traces, on request for
     * sequential ones. A startContent insert comes first. The updates of
     * transaction i are updates[txn_updates[i] .. txn_updates[i + 1]). Each entry is
     * one update, to be applied on its own; they are not meant to be concatenated. */
    crdt_buf_t *updates;
    size_t nupdates;
    size_t *txn_updates; /* ntxns + 1 entries, or NULL */
    size_t update_bytes; /* sum of the updates' lengths */
    /* After a failure: which step failed and why. Empty after success. */
    char msg[256];

    const trace_t *_trace;
    const crdt_alloc_t *_alloc;
    size_t _cap; /* capacity of `updates` */
} replay_result_t;

/*
 * Replays trace `t`. Documents are created with `alloc` (NULL: libc). For a
 * sequential trace `want_updates` non-zero asks every edit for its update bytes and
 * keeps them in res->updates; with 0 edits are made with a NULL update pointer. A
 * concurrent trace always needs and keeps updates, whatever `want_updates` says.
 * Does not compare the text (see replay_check_text()) nor call crdt_doc_check().
 * Always initialises *res; call replay_result_dispose() afterwards, also on failure.
 * Returns 0, or the crdt error code of the first failing call (res->msg names the
 * transaction, the patch and the call), CRDT_ENOMEM if bookkeeping memory ran out,
 * or CRDT_EINVAL for a trace it cannot replay (characters outside the BMP).
 * `t` must outlive *res.
 */
int replay_trace(const trace_t *t, const crdt_alloc_t *alloc, int want_updates,
                 replay_result_t *res);

/*
 * Compares the text of `doc` with the trace's endContent. Returns 1 if equal, 0 if
 * not (then `msg`, if not NULL, describes the first difference), or a negative crdt
 * error code if the text could not be read.
 */
int replay_check_text(const trace_t *t, const crdt_doc_t *doc, char *msg, size_t msglen);

/*
 * Creates, in *out, a new document with client id `client` (and the replay's
 * allocator) and applies to it every update in res->updates, in order, each as a
 * remote update. The caller frees *out with crdt_doc_free(). Returns 0, CRDT_EINVAL
 * if no updates were kept, or the first crdt error (res->msg says which update).
 */
int replay_merge(replay_result_t *res, uint64_t client, crdt_doc_t **out);

/*
 * Concurrent traces: brings each agent replica up to date with res->doc by the
 * sync protocol: the replica's state vector goes to res->doc, whose
 * crdt_doc_diff() against it is applied to the replica as one update. Returns 0
 * (also for sequential traces, which have no agents) or the first crdt error
 * (res->msg says which agent and call).
 */
int replay_sync_agents(replay_result_t *res);

/* Frees every document and buffer held by `res` and zeroes it. Safe to repeat. */
void replay_result_dispose(replay_result_t *res);

#endif /* WEFT_REPLAY_H */
