/* SPDX-License-Identifier: MIT */
/*
 * srv_internal.h: what the files of server/ share and nothing outside includes.
 *
 * The pieces: server.c owns the event loop, the listener, the store's
 * completion socket and the end-of-tick work; http.c routes HTTP requests;
 * session.c is one WebSocket editor (the protocol conversation); doc.c is one
 * document in memory with its editors, its per-tick broadcast and presence;
 * history.c serves the history routes (REST and WebSocket HISTORY messages);
 * metrics.c renders /metrics.
 *
 * Ticks. One pass of the event loop (h2o_evloop_run returning) is a tick.
 * During a tick, updates are applied to their documents at once; at the end of
 * the tick (srv__tick_end) each changed document encodes ONE update frame
 * holding everything new since the tick began and queues it to its editors,
 * acknowledgements whose commits became durable are queued, and every
 * connection with queued output is given one chance to write. A document
 * with many editors is paced (--broadcast-pace, doc.c): its frame then holds
 * everything since its previous broadcast, however many ticks ago.
 *
 * All of it runs on the event-loop thread.
 */
#ifndef WEFT_SRV_INTERNAL_H
#define WEFT_SRV_INTERNAL_H

#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/websocket.h>

#include "crdt.h"
#include "proto.h"
#include "srv.h"
#include "store.h"
#include "ws_frame.h"

typedef struct srv_doc srv_doc_t;
typedef struct srv_session srv_session_t;

/* The limits of docs/server.md ("Limits"), as counted in /metrics by
 * weft_limited_total{limit}. */
enum srv_limit {
    SRV_LIMIT_CONNS_PER_IP, /* an upgrade refused with HTTP 429 */
    SRV_LIMIT_MESSAGES,     /* a message dropped by the rate limit */
    SRV_LIMIT_RATE_CLOSE,   /* a connection closed for dropping too many */
    SRV_LIMIT_DOC_BYTES,    /* an update refused: the document could pass its size */
    SRV_LIMIT_DOCUMENTS,    /* a document not loaded: --max-documents are, none idle */
    SRV_LIMIT_PENDING,      /* an update refused: the document holds --max-pending runs */
    SRV_LIMIT_COUNT
};

/* A client address as the per-address connection count keys it: 4 bytes
 * (IPv4, also an IPv4-mapped IPv6 address) or 16 (IPv6); len 0 when unknown. */
typedef struct {
    uint8_t len;
    uint8_t addr[16];
} srv_ip_t;

/* Open WebSocket sessions of one client address (srv->ips). */
typedef struct srv_ip_count {
    srv_ip_t ip;
    uint32_t n; /* > 0 while the entry exists */
    struct srv_ip_count *next;
} srv_ip_count_t;

/* Counters for /metrics (event-loop thread only). */
typedef struct srv_metrics {
    uint64_t connections_total;
    uint64_t updates_in;     /* UPDATE and SYNC2 messages applied */
    uint64_t updates_stored; /* of those, the ones that changed the document */
    uint64_t updates_out;    /* update frames queued to editors */
    uint64_t bytes_in;       /* WebSocket message payload bytes received */
    uint64_t bytes_out;      /* WebSocket message payload bytes queued */
    uint64_t messages_in;
    uint64_t presence_in;
    uint64_t acks_out;
    uint64_t slow_consumers;
    uint64_t ping_timeouts;
    uint64_t docs_loaded_total;
    uint64_t docs_unloaded_total;
    uint64_t http_requests;
    uint64_t errors[16];               /* ERROR messages sent, by wire code (docs/protocol.md) */
    uint64_t ws_rejected;              /* upgrades refused with an HTTP error */
    uint64_t limited[SRV_LIMIT_COUNT]; /* refusals by limit (enum srv_limit) */
} srv_metrics_t;

/* A pending acknowledgement: ACK(seq) may go once `ticket` is durable. */
typedef struct {
    uint64_t ticket;
    uint64_t seq;
} srv_ack_t;

/* A server frame (header and payload) queued on several connections at once:
 * one document's broadcast. Reference-counted: each connection holding it in
 * its output has a reference, and so has whoever made it until it lets go. */
typedef struct srv_shared {
    uint32_t refs; /* > 0 */
    size_t len;
    uint8_t bytes[];
} srv_shared_t;

/* A piece of a connection's output: a shared frame, or bytes of its own
 * buffer (sh NULL: out.base[off .. off + len), or writing.base[...]). */
typedef struct {
    srv_shared_t *sh;
    size_t off, len;
} srv_wseg_t;

/* A session's WebSocket transport (ws.c: its own RFC 6455 framing). */
typedef struct srv_ws {
    h2o_socket_t *sock;  /* NULL until the upgrade completes */
    proto_buf_t out;     /* own frames for the next write (freed when idle) */
    proto_buf_t writing; /* own frames of the write in flight */
    /* When shared frames are queued, the output in order: segs[0 .. nsegs)
     * then out.base[out_open .. out.len); without any, just out. The same
     * for the write in flight: wsegs and writing (wsegs_n 0: writing alone). */
    srv_wseg_t *segs, *wsegs;
    uint32_t nsegs, segs_cap, wsegs_n, wsegs_cap;
    size_t out_open;
    size_t out_shared;   /* bytes of the shared frames in segs */
    srv_wsf_parser_t rx; /* the framing of the input (ws_frame.h) */
    uint32_t out_frames; /* frames in out and segs */
    uint16_t close_code_sent;
    uint8_t close_sent;     /* a close frame was queued: nothing is sent after it */
    uint8_t close_received; /* the peer's close frame arrived */
    uint8_t read_done;      /* nothing more is read (close received, protocol error) */
    uint8_t upgrading;      /* the 101 response is still being sent */
} srv_ws_t;

struct srv_session {
    srv_t *srv;
    srv_ws_t ws;
    srv_doc_t *doc; /* NULL until HELLO */
    char docname[SRV_MAX_DOCNAME + 1];
    size_t docname_len;

    srv_ip_t ip; /* the client's address, counted in srv->ips (len 0: not counted) */

    uint64_t replica;
    char name[PROTO_MAX_NAME + 1];
    char color[PROTO_MAX_COLOR + 1];
    uint64_t last_seq;  /* highest UPDATE seq received */
    uint8_t added_held; /* 1 once an update of this connection grew crdt_doc_pending */

    /* Presence: the selection as encoded relative positions. */
    uint8_t anchor[PROTO_MAX_RELPOS], head[PROTO_MAX_RELPOS];
    uint8_t anchor_len, head_len;
    uint8_t has_selection; /* 1: anchor/head hold a selection */
    uint8_t has_presence;  /* 1: a PRESENCE was received (others were told) */

    /* Acknowledgements waiting for durability, oldest first (a ring). */
    srv_ack_t *acks;
    size_t acks_head, acks_len, acks_cap;
    h2o_linklist_t ack_link; /* in srv->ack_waiters while acks_len > 0 */

    /* Rate limit (--max-messages-per-second): a token bucket in thousandths
     * of a message, at most max_msgs_per_sec * 1000, refilled at
     * max_msgs_per_sec per ms; and the messages dropped since drop_window. */
    uint64_t tokens;
    uint64_t tokens_at; /* ms: last refill */
    uint64_t drop_window;
    uint64_t drops;

    /* Liveness. */
    uint64_t last_heard;   /* ms: last byte of any message */
    uint64_t ping_sent_at; /* ms, 0 when no ping is outstanding */
    h2o_timeout_entry_t timer;

    h2o_linklist_t doc_link;     /* in doc->sessions */
    h2o_linklist_t all_link;     /* in srv->sessions */
    h2o_linklist_t proceed_link; /* in srv->to_proceed while output is queued */
    uint8_t closing;             /* closing: input is ignored, nothing more is sent */
    uint16_t close_code;         /* close frame owed once queued messages are out, or 0 */
    char close_reason[64];
    h2o_linklist_t close_link; /* in srv->closing while close_code != 0 */
    uint8_t dropping;          /* to be freed at the end of the tick */

    /* Access (auth.c). role: SRV_ROLE_WRITE without a token secret, else
     * what the HELLO's token grants (0 before HELLO). */
    uint8_t role;
    uint8_t auth_timer_used;             /* counted in srv->auth_timer_users */
    uint64_t token_expires;              /* unix seconds; 0 without a token */
    char token_name[PROTO_MAX_NAME + 1]; /* the token's user name */
    h2o_timeout_entry_t auth_timer;      /* checks the expiry: close 4001 */
};

struct srv_doc {
    srv_t *srv;
    char name[SRV_MAX_DOCNAME + 1];
    size_t name_len;
    crdt_doc_t *crdt;
    h2o_linklist_t sessions; /* srv_session_t.doc_link */
    size_t nsessions;

    /* Tick state: set by the first change of a tick, cleared at its end. */
    crdt_buf_t tick_sv;         /* state vector before the tick's first change */
    srv_session_t *tick_author; /* the only writer this tick, or NULL */
    uint8_t tick_many;          /* more than one writer this tick */
    size_t tick_pending;        /* held operations when the tick began */
    uint32_t tick_changes;      /* srv__doc_begin_change calls this tick */
    proto_buf_t relay;          /* the tick's only update, sent on as is (len 0: none) */
    h2o_linklist_t dirty_link;  /* in srv->dirty_docs */
    /* Pacing (--broadcast-pace): the time of the last broadcast, and while
     * the document is dirty but its next broadcast must wait, when it is due
     * (else 0). "The tick" above is then every tick until that broadcast. */
    uint64_t flushed_at, pace_due;

    /* Upper bound of the UTF-8 bytes held operations may still make visible
     * (--max-document-bytes): grows by an update's bound when the update left
     * more held runs than before, back to 0 once nothing is held. */
    uint64_t held_bytes;

    uint64_t last_ticket; /* store ticket of its latest logged update */
    uint64_t last_seq;    /* log seq of its latest entry, committed or only queued */
    h2o_timeout_entry_t unload_timer;
    srv_doc_t *hash_next;
};

struct srv {
    srv_config_t cfg;
    h2o_globalconf_t h2o_config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    h2o_socket_t *listener;
    uint16_t port;
    volatile int stop_requested;
    int stopping;

    store_t *store;
    h2o_socket_t *store_sock; /* watches store_completion_fd() */
    uint64_t durable;         /* highest durable ticket seen */
    int store_error;          /* the store failed: nothing more is durable */

    /* Documents in memory: a chained hash table of power-of-two size. */
    srv_doc_t **docs;
    size_t docs_cap, ndocs;

    h2o_linklist_t sessions; /* every WebSocket session */
    size_t nsessions;
    /* Sessions per client address: a chained hash table of SRV_IP_BUCKETS
     * buckets (allocated on first use); an entry goes when its count does. */
    srv_ip_count_t **ips;
    h2o_linklist_t dirty_docs;  /* documents changed this tick */
    h2o_linklist_t ack_waiters; /* sessions with pending acks */
    h2o_linklist_t to_proceed;  /* sessions with queued output */
    h2o_linklist_t closing;     /* sessions owing a close frame (after their ERROR) */

    h2o_timeout_t ping_interval_timeout;
    h2o_timeout_t ping_answer_timeout;
    h2o_timeout_t close_timeout;
    h2o_timeout_t unload_timeout;
    h2o_timeout_t unload_retry_timeout; /* a document waiting for its commits */
    /* Token expiry checks (auth.c): registered with the loop while
     * auth_timer_users > 0 (sessions with a token). */
    h2o_timeout_t auth_short_timeout, auth_long_timeout;
    size_t auth_timer_users;

    proto_buf_t scratch; /* encoding buffer reused for every message */
    h2o_iovec_t *iov;    /* scratch of srv__ws_flush */
    size_t iov_cap;
    /* Empty output buffers of connections gone idle, for the next ones to
     * write (ws.c): at most SRV_BUF_POOL, each of at most SRV_BUF_POOL_CAP. */
    proto_buf_t *buf_pool;
    size_t n_buf_pool;
    srv_metrics_t metrics;
};

/* server.c */
uint64_t srv__now_ms(srv_t *srv);
uint64_t srv__wall_ms(void);

/* doc.c */
/* A random nonzero replica id (getrandom). */
uint64_t srv__random_replica(void);
srv_doc_t *srv__doc_find(srv_t *srv, const char *name, size_t len);
/* Finds or loads a document (store, else empty). Returns 0 or an error:
 * SRV_EBUSY when --max-documents are loaded and none of them could be unloaded
 * (each has editors or updates not yet durable), or a CRDT_E* / STORE_E* code
 * when the stored document cannot be loaded. */
int srv__doc_open(srv_t *srv, const char *name, size_t len, srv_doc_t **out);
void srv__doc_join(srv_doc_t *doc, srv_session_t *s);
void srv__doc_leave(srv_doc_t *doc, srv_session_t *s);
/* Called before a change to the document from session `s` (NULL: the server). */
int srv__doc_begin_change(srv_doc_t *doc, srv_session_t *s);
/* Longest wait of a document's broadcast (--broadcast-pace). */
#define SRV_PACE_MAX_MS 50
/* Recipients from which a broadcast frame is shared, not copied. */
#define SRV_SHARE_MIN 8
/* The broadcast interval of the document (ms): --broadcast-pace per editor,
 * at most SRV_PACE_MAX_MS. */
uint64_t srv__doc_pace_ms(const srv_doc_t *doc);
/* Queues the tick's update frame to the document's editors (and gives every
 * editor with output held for it, srv__session_ack_durable, its write). */
void srv__doc_flush_tick(srv_doc_t *doc);
void srv__doc_broadcast(srv_doc_t *doc, srv_session_t *except, const uint8_t *msg, size_t len);
void srv__doc_free_all(srv_t *srv);

/* session.c */
srv_session_t *srv__session_new(srv_t *srv, const char *docname, size_t len);
/* A whole message (or control frame) received on the session: its opcode
 * (SRV_WS_OP_*, ws_frame.h) and unmasked payload. */
void srv__session_on_message(srv_session_t *s, unsigned opcode, const uint8_t *msg, size_t len);
/* The connection ended (socket error, EOF, handshake over): frees the session.
 * Only from the transport's socket callbacks. */
void srv__session_closed(srv_session_t *s);
/* Queues one encoded message; cuts the connection off past --max-queued.
 * Returns 0, or -1 when the session was closed (it stays allocated until the
 * end of the tick only if it is in a list; do not use it after -1). */
int srv__session_send(srv_session_t *s, const uint8_t *msg, size_t len);
/* The same for a shared frame holding a message of msg_len bytes. */
int srv__session_send_shared(srv_session_t *s, srv_shared_t *sh, size_t msg_len);
/* Gives the session a write at the end of the tick (its output was held). */
void srv__session_mark_proceed(srv_session_t *s);
/* Queues ERROR(code, text, seq) and counts it. */
void srv__session_error(srv_session_t *s, uint32_t code, const char *text, uint64_t seq);
/* Closes the connection with a close frame, sent after the messages already
 * queued (an ERROR first, then the close frame). */
void srv__session_close(srv_session_t *s, uint16_t code, const char *reason);
/* End of tick: queues owed close frames whose session's output has gone out. */
void srv__session_close_owed(srv_t *srv);
/* Ends the connection now, without a close frame. */
void srv__session_drop(srv_session_t *s);
void srv__session_ack_durable(srv_session_t *s, uint64_t durable);
void srv__session_timer_start(srv_session_t *s);
/* End of tick: writes queued output, or frees a dropped session. */
void srv__session_proceed(srv_session_t *s);

/* ws.c */
/* Messages queued on one connection past which it counts as a slow reader
 * whatever their size (tiny pongs to a ping flood would otherwise pile up
 * under --max-queued, which counts payload bytes). */
#define SRV_MAX_QUEUED_MSGS 16384
/* The pool of output buffers (srv.buf_pool). */
#define SRV_BUF_POOL 256
#define SRV_BUF_POOL_CAP 16384
/* Whether the connection's queued output is past a bound (--max-queued bytes
 * with `extra` more, or SRV_MAX_QUEUED_MSGS messages). */
int srv__ws_over_bound(const srv_session_t *s, size_t extra);
/* Answers the upgrade request with 101 and takes the socket over. */
int srv__ws_accept(srv_session_t *s, h2o_req_t *req, const char *client_key);
/* Frames one binary message into the connection's output buffer. Returns
 * 0, or -1 when no more messages may go (a close frame was received or sent). */
int srv__ws_send_binary(srv_session_t *s, const uint8_t *msg, size_t len);
/* A shared frame of a binary message (refs 1: the caller's). */
srv_shared_t *srv__shared_new(const uint8_t *msg, size_t len);
void srv__shared_release(srv_shared_t *sh);
/* Queues a reference to a shared frame (srv__ws_send_binary's rules). */
int srv__ws_send_shared(srv_session_t *s, srv_shared_t *sh);
/* The same for a ping (payload at most 125 bytes). */
int srv__ws_send_ping(srv_session_t *s, const uint8_t *payload, size_t len);
/* Queues a close frame after everything queued (reason at most 123 bytes). */
void srv__ws_close(srv_session_t *s, uint16_t code, const char *reason);
/* The code of the close frame sent (0: none, or one without a code). */
uint16_t srv__ws_close_code_sent(const srv_ws_t *ws);
/* Hands the queued frames to the socket in one write, if none is in flight. */
void srv__ws_flush(srv_session_t *s);
/* Bytes queued and not yet handed to the socket. */
size_t srv__ws_queued(const srv_ws_t *ws);
void srv__ws_dispose(srv_ws_t *ws);

/* http.c */
#define SRV_IP_BUCKETS 1024
int srv__http_register(srv_t *srv);
/* What a request path names under the routes /ws/ and /api/docs/. */
enum srv_route_kind {
    SRV_ROUTE_BAD,    /* neither, or a bad document name (400) */
    SRV_ROUTE_WS,     /* /ws/<document> */
    SRV_ROUTE_DOC,    /* /api/docs/<document> */
    SRV_ROUTE_HISTORY /* /api/docs/<document>/<rest>: history.c */
};
typedef struct {
    enum srv_route_kind kind;
    const char *doc; /* a valid document name (not SRV_ROUTE_BAD); borrowed from path */
    size_t doc_len;
    const char *rest; /* SRV_ROUTE_HISTORY: after "<document>/", query string included */
    size_t rest_len;
} srv_route_t;
/* Routes the raw request path path[0 .. len) whose query string starts at
 * query_at (its '?'; SIZE_MAX: none), as h2o_req_t gives them: the name ends
 * at the query string or, for history, at the first '/' after it. Fills *out
 * and returns out->kind. Pure (the handlers of http.c call it first). */
int srv__http_route(const char *path, size_t len, size_t query_at, srv_route_t *out);
/* Counts one more session of `ip` unless that would pass
 * --max-connections-per-ip. Returns 0 (counted) or -1 (at the limit). */
int srv__ip_acquire(srv_t *srv, const srv_ip_t *ip);
/* Counts one session of `ip` less (after srv__ip_acquire() returned 0). */
void srv__ip_release(srv_t *srv, const srv_ip_t *ip);
void srv__ip_free_all(srv_t *srv);

/* history.c */
/* Largest request body of a history route (bytes); more is 413. */
#define SRV_HISTORY_MAX_BODY 4096

/* One request to the history routes of docs/history.md, from REST or from a
 * HISTORY message. Everything is borrowed for the call. */
typedef struct {
    const char *method; /* "GET" or "POST" (HEAD comes as GET); others get 405 or 404 */
    size_t method_len;
    const char *path; /* after "/api/docs/<document>/", query string included */
    size_t path_len;
    const char *body; /* NULL: no body */
    size_t body_len;
    srv_session_t *session; /* the WebSocket asking, or NULL for REST */
} srv_history_req_t;

/*
 * Serves a history request for document `doc` (a valid name): writes the JSON
 * answer (an object, or {"error": ...}) into *out, replacing what it held, and
 * returns its HTTP status. A restore changes the live document and is
 * broadcast at the end of the tick like any edit.
 */
int srv__history_serve(srv_t *srv, const char *doc, size_t doc_len, const srv_history_req_t *req,
                       proto_buf_t *out);
/* The reason phrase of an HTTP status weftd answers with ("OK", "Not Found", ...). */
const char *srv__http_reason(int status);
/* Appends `len` bytes as a JSON string (quotes included). Bytes that are not
 * UTF-8 become U+FFFD, so the output is valid JSON whatever the input. */
void srv__json_string(proto_buf_t *out, const char *s, size_t len);

/* The parsers of history.c under srv__history_serve(): pure (no server, no
 * clock), shared only so tests/fuzz/fuzz_http.c can reach them. */
/* An unsigned decimal of 1..20 digits (nothing else) that fits in 64 bits:
 * 0 with *out set, or -1 with *out untouched. */
int srv__history_parse_u64(const char *s, size_t n, uint64_t *out);
/* A known query parameter: `key`, its value (set the default before the
 * call) and whether it was given. */
typedef struct {
    const char *key;
    uint64_t value;
    int given;
} srv_hparam_t;
/* Reads a query string q[0 .. n) (after '?'; q may be NULL when n is 0) of
 * key=value pairs separated by '&' into the known `params`; unknown keys are
 * ignored (cache busters). Returns 0, or -1 with *bad the index of a known
 * key given twice or with a value that is not a decimal (srv__history_parse_u64);
 * on -1 the params before the error may have been set. */
int srv__history_parse_query(const char *q, size_t n, srv_hparam_t *params, size_t nparams,
                             size_t *bad);
/* A member of a JSON body that a route knows. */
enum { SRV_JF_UINT, SRV_JF_STR };
typedef struct {
    const char *key;
    int kind;
    size_t max; /* SRV_JF_STR: longest value in bytes */
    int given;  /* 1 once a value (not null) was read */
    uint64_t num;
    char *str; /* SRV_JF_STR: caller's buffer of max bytes */
    size_t len;
} srv_jfield_t;
/* Parses the body body[0 .. len) (NULL: no body) of a history route: one flat
 * JSON object (RFC 8259) whose members are strings, non-negative integers,
 * true, false or null; a nested object or array, a fraction, an exponent or a
 * negative number is refused. Strings are decoded (escapes, \u with surrogate
 * pairs) into UTF-8 and must be valid UTF-8 in the body. Known members are
 * stored in `fields` (null counts as absent; the wrong type, a string longer
 * than max, or a member given twice is refused); unknown ones are checked and
 * skipped. Returns 0, or -1 with *err a static reason (fields may have been
 * partly set). */
int srv__history_parse_body(const char *body, size_t len, srv_jfield_t *fields, size_t nfields,
                            const char **err);
/* The route of a history path (srv_history_req_t.path) regardless of method. */
enum srv_hroute_kind {
    SRV_HROUTE_NONE,        /* no such route (404) */
    SRV_HROUTE_BAD_SEQ,     /* versions/<not a number>[/name] (400) */
    SRV_HROUTE_LIST,        /* versions */
    SRV_HROUTE_ATTRIBUTION, /* attribution */
    SRV_HROUTE_RESTORE,     /* restore */
    SRV_HROUTE_VERSION,     /* versions/<seq> */
    SRV_HROUTE_NAME         /* versions/<seq>/name */
};
typedef struct {
    enum srv_hroute_kind kind;
    uint64_t seq;      /* SRV_HROUTE_VERSION, SRV_HROUTE_NAME */
    const char *query; /* after the first '?', or NULL without one; borrowed from path */
    size_t query_len;
} srv_hroute_t;
void srv__history_route(const char *path, size_t len, srv_hroute_t *out);

/* auth.c: access tokens, roles, Origin allow-list (docs/security.md). */
enum { SRV_ROLE_READ = 1, SRV_ROLE_WRITE = 2 };
/* Close code of a session whose token expired (docs/protocol.md). */
#define SRV_CLOSE_TOKEN_EXPIRED 4001
/* Longest token accepted (bytes). */
#define SRV_MAX_TOKEN 512

/* What a token grants. */
typedef struct {
    char doc[SRV_MAX_DOCNAME + 2]; /* document name, or a prefix ending in '*' */
    char name[PROTO_MAX_NAME + 1]; /* user name: UTF-8, no control characters */
    int role;                      /* SRV_ROLE_READ or SRV_ROLE_WRITE */
    uint64_t expires;              /* unix seconds; valid while now < expires */
} srv_token_t;

#define SRV_TOKEN_EMALFORMED (-1)
#define SRV_TOKEN_EBADMAC (-2)
#define SRV_TOKEN_EEXPIRED (-3)
#define SRV_TOKEN_EDOC (-4)
#define SRV_TOKEN_EMISSING (-5)

/* Writes the token of `claims` signed with `secret` into out[cap] (cap at
 * least SRV_MAX_TOKEN + 1), NUL-terminated. Returns its length, or -1 when a
 * claim is invalid. */
int srv__token_make(const uint8_t *secret, size_t secret_len, const srv_token_t *claims, char *out,
                    size_t cap);
/* Verifies `token` (len bytes, any content): format, signature (constant
 * time), then claims. Returns 0 with *out filled, SRV_TOKEN_EMALFORMED,
 * SRV_TOKEN_EBADMAC, or SRV_TOKEN_EEXPIRED (when now >= expires; *out is
 * filled then too). Does not look at the document. */
int srv__token_check(const uint8_t *secret, size_t secret_len, const char *token, size_t len,
                     uint64_t now, srv_token_t *out);
/* 1 when a token for `pattern` (a name, or a prefix ending in '*') covers `doc`. */
int srv__token_doc_matches(const char *pattern, size_t plen, const char *doc, size_t dlen);
/* The token of a REST request (http.c, srv__auth_http): with an
 * Authorization header (authz[0 .. authz_len), authz not NULL) "Bearer
 * <token>" (the scheme in any case, spaces around the token removed), else
 * nothing; without one, the value of the first `token=` parameter of the
 * query string path(query_at .. len) (query_at: the '?'; SIZE_MAX: none).
 * Returns 0 with *tok set (borrowed from authz or path; maybe empty), or -1. */
int srv__token_from_request(const char *authz, size_t authz_len, const char *path, size_t len,
                            size_t query_at, h2o_iovec_t *tok);
/* A static description of a SRV_TOKEN_E* code. */
const char *srv__token_strerror(int err);
/* config.c: handles --token-secret, --token-secret-file and --allow-origin.
 * Returns 0, SRV_EUSAGE (reason in err), or 1 when `name` is another flag. */
int srv__auth_config_flag(srv_config_t *cfg, const char *name, const char *val, char *err,
                          size_t errlen);
/* session.c, HELLO: 0 when the session may join (role, token name and expiry
 * timer set); -1 when ERROR unauthorized and close 1008 were queued. */
int srv__auth_hello(srv_session_t *s, const proto_msg_t *m);
/* session.c, after HELLO's name was copied: the token's user name replaces it. */
void srv__auth_hello_name(srv_session_t *s);
/* 1 when the session may change the document; else queues ERROR read_only
 * (about `seq`) and returns 0. */
int srv__auth_may_write(srv_session_t *s, uint64_t seq);
/* The same for a HISTORY message: GET routes are reads, others writes. */
int srv__auth_may_history(srv_session_t *s, const proto_msg_t *m);
/* session.c, when a session is freed: stops its expiry timer. */
void srv__auth_session_dispose(srv_session_t *s);
/* http.c, WebSocket upgrade: 0 when the Origin is allowed; else answers 403. */
int srv__auth_ws_origin(srv_t *srv, h2o_req_t *req);
/* http.c, REST about document `doc`: 0 when the request's token (Bearer or
 * ?token=) allows it (`write`: a write token); else answers 401 or 403. */
int srv__auth_http(srv_t *srv, h2o_req_t *req, const char *doc, size_t doc_len, int write);

/* metrics.c */
void srv__metrics_render(srv_t *srv, proto_buf_t *out);
void srv__buf_append(proto_buf_t *buf, const void *data, size_t len);
void srv__buf_printf(proto_buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
