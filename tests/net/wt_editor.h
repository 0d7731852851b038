/* SPDX-License-Identifier: MIT */
/*
 * wt_editor.h: a simulated editor for weft's integration tests: one CRDT
 * replica (crdt_doc_t) plus one WebSocket connection to weftd speaking protocol
 * version 1. It joins a document (HELLO, WELCOME, SYNC1 both ways, SYNC2),
 * types and deletes at an index (local CRDT edits sent as UPDATEs with
 * increasing seq and kept until acknowledged, also across reconnects), pumps
 * incoming messages (remote updates, ACKs, presence of the other editors,
 * ERRORs, pings), waits for conditions with timeouts, and drops or closes its
 * connection. Everything a test may want to assert on is a public field.
 * Blocking; one thread; no global state.
 */
#ifndef WEFT_WT_EDITOR_H
#define WEFT_WT_EDITOR_H

#include "crdt.h"
#include "proto.h"
#include "wt_ws.h"

#include <stddef.h>
#include <stdint.h>

/* Another editor's presence as this one last heard it. */
typedef struct {
    uint64_t replica;
    char name[PROTO_MAX_NAME + 1];
    char color[PROTO_MAX_COLOR + 1];
    int has_selection; /* 0 when anchor and head were nil */
    uint8_t anchor[PROTO_MAX_RELPOS], head[PROTO_MAX_RELPOS];
    size_t anchor_len, head_len;
    int present;      /* 1 after PRESENCE_STATE, 0 after PRESENCE_LEAVE */
    uint64_t updates; /* PRESENCE_STATE messages received for it */
    uint64_t leaves;  /* PRESENCE_LEAVE messages received for it */
} wt_peer_t;

/* An ERROR message received. */
typedef struct {
    uint32_t code;
    uint64_t seq;
    char message[PROTO_MAX_ERROR_MESSAGE + 1];
} wt_error_t;

/* A local update not yet acknowledged; `seq` is its number on the current
 * connection, 0 while it has not been sent on it. */
typedef struct {
    uint64_t seq;
    crdt_buf_t update;
} wt_unacked_t;

typedef enum {
    WT_ED_OFFLINE = 0, /* no connection (never joined, dropped or closed) */
    WT_ED_JOINING,     /* HELLO sent, SYNC2 not yet received */
    WT_ED_SYNCED,      /* joined and in sync */
    WT_ED_ENDED,       /* the server ended the connection: see end_rc, ws.close_code */
} wt_editor_state_t;

typedef struct {
    /* Configuration (set by wt_editor_init). */
    char host[64];
    uint16_t port;
    char doc_name[129];
    char name[PROTO_MAX_NAME + 1];
    char color[PROTO_MAX_COLOR + 1];
    uint64_t replica;
    /* State. */
    crdt_doc_t *doc;
    wt_ws_t ws;
    wt_editor_state_t state;
    int end_rc;           /* WT_ECLOSED, WT_EEOF or another error that ended the connection */
    uint64_t next_seq;    /* seq of the next UPDATE on this connection (starts at 1) */
    uint64_t acked;       /* highest ACK seq received on this connection */
    uint64_t max_message; /* from WELCOME */
    wt_unacked_t *unacked;
    size_t n_unacked, _cap_unacked;
    wt_peer_t *peers;
    size_t n_peers, _cap_peers;
    wt_error_t *errors; /* every ERROR received, oldest first */
    size_t n_errors, _cap_errors;
    uint64_t updates_in, acks_in, sync2_in, presence_in, leaves_in;
    int apply_failures; /* remote updates the local engine rejected (should stay 0) */
    int last_apply_error;
    uint64_t _seed;
    /* 1: on each join, after the server's SYNC2, send SYNC2 with what the server
     * lacks (the diff from the state vector of its SYNC1) before resending the
     * unacknowledged updates, as the web client does. 0 (default): no SYNC2. */
    int send_sync2;
    uint8_t *_server_sv; /* the state vector of the server's last SYNC1 (send_sync2) */
    size_t _server_sv_len;
} wt_editor_t;

/*
 * Prepares an editor of document `doc_name` on host:port with an empty replica
 * `replica` (not 0), `name` and `color` (copied), masks seeded from `seed`.
 * Does not connect. Returns 0 or a CRDT error.
 */
int wt_editor_init(wt_editor_t *ed, const char *host, uint16_t port, const char *doc_name,
                   uint64_t replica, const char *name, const char *color, uint64_t seed);

/*
 * Connects to /ws/<doc_name> and joins: HELLO, WELCOME, answers the server's SYNC1
 * with its own state vector, applies SYNC2, then (re)sends every unacknowledged
 * update with new seq numbers. Returns 0 when synced; WT_EHTTP (ed->ws.http),
 * WT_ESERVER (an ERROR arrived: ed->errors), WT_ECLOSED / WT_EEOF (state ENDED),
 * WT_ETIMEOUT, or another error.
 */
int wt_editor_join(wt_editor_t *ed, int timeout_ms);

/*
 * Local edits at a UTF-16 index: applied to the replica, recorded as
 * unacknowledged and, when synced, sent as UPDATE(seq). Offline the update waits
 * for the next join. Returns 0, a CRDT error (nothing changed) or a send error.
 * `*seq_out` (may be NULL) receives the seq used (0 when not sent).
 */
int wt_editor_insert(wt_editor_t *ed, size_t index, const char *text, uint64_t *seq_out);
int wt_editor_delete(wt_editor_t *ed, size_t index, size_t len, uint64_t *seq_out);

/* Sends PRESENCE with a selection from `anchor` to `head` (UTF-16 indexes). */
int wt_editor_set_presence(wt_editor_t *ed, size_t anchor, size_t head);

/* Sends PRESENCE with no selection (nil, nil). */
int wt_editor_clear_presence(wt_editor_t *ed);

/*
 * Handles the messages that arrive within `timeout_ms` (waiting for the first one,
 * then taking whatever is already there). Returns the number handled (0 on
 * timeout), or the error that ended the connection (WT_ECLOSED, WT_EEOF, ...;
 * state becomes ENDED). Offline it returns WT_EEOF at once.
 */
int wt_editor_pump(wt_editor_t *ed, int timeout_ms);

/* Handles one decoded message as the pump does (for tests that read by hand). */
int wt_editor_handle(wt_editor_t *ed, const proto_msg_t *msg);

/* The replica's text, malloc'd and NUL-terminated: free() it. */
char *wt_editor_text(const wt_editor_t *ed);

/* 1 when the replica's text equals `text`. */
int wt_editor_text_is(const wt_editor_t *ed, const char *text);

/* Presence of `replica` as last heard, or NULL if never heard. */
const wt_peer_t *wt_editor_peer(const wt_editor_t *ed, uint64_t replica);

/* Number of peers currently present (PRESENCE_STATE without a later LEAVE). */
size_t wt_editor_peers_present(const wt_editor_t *ed);

/* The last ERROR with `code` (0: the last one), or NULL. */
const wt_error_t *wt_editor_error(const wt_editor_t *ed, uint32_t code);

/* Waits, pumping, until the text equals `text`. Returns 0 or WT_ETIMEOUT / an end error. */
int wt_editor_wait_text(wt_editor_t *ed, const char *text, int timeout_ms);

/* Waits until every local update is acknowledged. */
int wt_editor_wait_acked(wt_editor_t *ed, int timeout_ms);

/* Waits until an ACK covering `seq` arrived on this connection. */
int wt_editor_wait_ack(wt_editor_t *ed, uint64_t seq, int timeout_ms);

/* Waits until `replica` is present (present = 1) or has left (present = 0). */
int wt_editor_wait_presence(wt_editor_t *ed, uint64_t replica, int present, int timeout_ms);

/* Waits until an ERROR with `code` has been received. */
int wt_editor_wait_error(wt_editor_t *ed, uint32_t code, int timeout_ms);

/* Waits until the server ends the connection. Returns 0 when it did (see end_rc). */
int wt_editor_wait_ended(wt_editor_t *ed, int timeout_ms);

/* Drops the connection without a close frame (unacked updates are kept). */
void wt_editor_drop(wt_editor_t *ed);

/* Closes the connection with a close frame 1000. Returns wt_ws_close()'s result. */
int wt_editor_close(wt_editor_t *ed, int timeout_ms);

/*
 * Reconnects: drops any connection, optionally moves the replica to a new id
 * (`new_replica` not 0: the document's content is kept, its local operations
 * from then on use the new id, as a client does for each new session), joins, and
 * resends the unacknowledged updates. Returns wt_editor_join()'s result.
 */
int wt_editor_reconnect(wt_editor_t *ed, uint64_t new_replica, int timeout_ms);

/* Drops the connection and frees everything. */
void wt_editor_dispose(wt_editor_t *ed);

/*
 * Pumps several editors at once: waits up to `timeout_ms` for any of them to
 * have input and handles it. Returns the number of messages handled. Editors
 * whose connection ends are left in state ENDED (not an error here).
 */
int wt_editors_pump(wt_editor_t *const *eds, size_t n, int timeout_ms);

/* Waits until all `n` editors hold the same text and have no unacked update.
 * Returns 0 or WT_ETIMEOUT. */
int wt_editors_wait_converged(wt_editor_t *const *eds, size_t n, int timeout_ms);

#endif /* WEFT_WT_EDITOR_H */
