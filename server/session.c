/* SPDX-License-Identifier: MIT */
/*
 * session.c: one editor's WebSocket connection and its side of the protocol
 * (docs/protocol.md): HELLO and the sync handshake, UPDATE and SYNC2 applied to
 * the document and handed to the store, ACK once durable, PRESENCE, HISTORY
 * requests (answered by history.c), ERROR and closing, pings and dead-peer
 * detection.
 *
 * Lifetime. A session is created when /ws/<document> is upgraded and freed when
 * H2O reports the connection closed (the message callback with arg NULL), or at
 * the end of a tick after srv__session_drop(). Nothing frees a session inside
 * its own message callback: drops are deferred, so code iterating sessions may
 * send to them freely. Event-loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

/* Time a closing connection gets to send its close frame and hear the reply. */
#define CLOSE_GRACE_MS 3000

static void on_timer(h2o_timeout_entry_t *entry);

srv_session_t *srv__session_new(srv_t *srv, const char *docname, size_t len)
{
    srv_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->srv = srv;
    memcpy(s->docname, docname, len);
    s->docname_len = len;
    s->last_heard = srv__now_ms(srv);
    s->tokens = (uint64_t)srv->cfg.max_msgs_per_sec * 1000;
    s->tokens_at = s->drop_window = s->last_heard;
    s->timer.cb = on_timer;
    h2o_linklist_insert(&srv->sessions, &s->all_link);
    srv->nsessions++;
    srv->metrics.connections_total++;
    return s;
}

static void mark_proceed(srv_session_t *s)
{
    if (!h2o_linklist_is_linked(&s->proceed_link))
        h2o_linklist_insert(&s->srv->to_proceed, &s->proceed_link);
}

void srv__session_mark_proceed(srv_session_t *s)
{
    mark_proceed(s);
}

/* Unlinks the session from everything and frees it; closes the socket when
 * `close_ws`. */
static void destroy(srv_session_t *s)
{
    srv_t *srv = s->srv;
    if (s->doc != NULL)
        srv__doc_leave(s->doc, s);
    if (h2o_timeout_is_linked(&s->timer))
        h2o_timeout_unlink(&s->timer);
    srv__auth_session_dispose(s);
    if (h2o_linklist_is_linked(&s->ack_link))
        h2o_linklist_unlink(&s->ack_link);
    if (h2o_linklist_is_linked(&s->proceed_link))
        h2o_linklist_unlink(&s->proceed_link);
    if (h2o_linklist_is_linked(&s->close_link))
        h2o_linklist_unlink(&s->close_link);
    h2o_linklist_unlink(&s->all_link);
    srv->nsessions--;
    srv__ip_release(srv, &s->ip);
    srv__ws_dispose(&s->ws);
    free(s->acks);
    free(s);
}

void srv__session_closed(srv_session_t *s)
{
    /* ws.c refuses an oversized message with close 1009 on its own. */
    if (srv__ws_close_code_sent(&s->ws) == 1009)
        s->srv->metrics.errors[PROTO_ERR_TOO_LARGE]++;
    destroy(s);
}

void srv__session_proceed(srv_session_t *s)
{
    if (s->ws.upgrading)
        return; /* H2O owns the socket until the 101 is out: on_upgraded comes back */
    if (s->dropping) {
        srv__session_closed(s);
        return;
    }
    srv__ws_flush(s);
}

void srv__session_drop(srv_session_t *s)
{
    s->dropping = 1;
    mark_proceed(s);
}

/* Queues a message (or, with sh, a shared frame holding it); a write follows
 * at the end of the tick unless `hold`. */
static int queue_out(srv_session_t *s, const uint8_t *msg, size_t len, srv_shared_t *sh, int hold)
{
    if (s->ws.sock == NULL || s->closing || s->dropping)
        return -1;
    if (srv__ws_over_bound(s, sh != NULL ? sh->len : len)) {
        s->srv->metrics.slow_consumers++;
        s->srv->metrics.errors[PROTO_ERR_SLOW_CONSUMER]++;
        srv__session_drop(s);
        return -1;
    }
    if ((sh != NULL ? srv__ws_send_shared(s, sh) : srv__ws_send_binary(s, msg, len)) != 0)
        return -1; /* the close handshake is under way: it ends the connection */
    s->srv->metrics.bytes_out += len;
    if (!hold)
        mark_proceed(s);
    return 0;
}

int srv__session_send(srv_session_t *s, const uint8_t *msg, size_t len)
{
    return queue_out(s, msg, len, NULL, 0);
}

int srv__session_send_shared(srv_session_t *s, srv_shared_t *sh, size_t msg_len)
{
    return queue_out(s, NULL, msg_len, sh, 0);
}

/* Encodes `m` into the server's scratch buffer and queues it. */
static int send_msg(srv_session_t *s, const proto_msg_t *m)
{
    proto_buf_t *buf = &s->srv->scratch;
    proto_buf_reset(buf);
    if (proto_encode(m, buf) != 0)
        abort(); /* our own messages are always within the limits */
    return srv__session_send(s, buf->base, buf->len);
}

void srv__session_error(srv_session_t *s, uint32_t code, const char *text, uint64_t seq)
{
    proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PROTO_ERROR;
    m.u.error.code = code;
    m.u.error.seq = seq;
    m.u.error.message.base = (const uint8_t *)text;
    m.u.error.message.len = strlen(text);
    if (m.u.error.message.len > PROTO_MAX_ERROR_MESSAGE)
        m.u.error.message.len = PROTO_MAX_ERROR_MESSAGE;
    if (code < sizeof(s->srv->metrics.errors) / sizeof(s->srv->metrics.errors[0]))
        s->srv->metrics.errors[code]++;
    send_msg(s, &m);
}

void srv__session_close(srv_session_t *s, uint16_t code, const char *reason)
{
    if (s->ws.sock == NULL || s->closing || s->dropping)
        return;
    s->closing = 1;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    h2o_linklist_insert(&s->srv->closing, &s->close_link);
    mark_proceed(s);
    if (h2o_timeout_is_linked(&s->timer))
        h2o_timeout_unlink(&s->timer);
    h2o_timeout_link(s->srv->loop, &s->srv->close_timeout, &s->timer);
}

void srv__session_close_owed(srv_t *srv)
{
    h2o_linklist_t *l, *next;
    for (l = srv->closing.next; l != &srv->closing; l = next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, close_link, l);
        next = l->next;
        if (s->ws.sock == NULL || s->dropping)
            continue;
        /* The close frame goes after the messages already queued (the ERROR). */
        h2o_linklist_unlink(&s->close_link);
        srv__ws_close(s, s->close_code, s->close_reason);
        s->close_code = 0;
        mark_proceed(s);
    }
}

void srv__session_timer_start(srv_session_t *s)
{
    h2o_timeout_link(s->srv->loop, &s->srv->ping_interval_timeout, &s->timer);
}

/* Liveness: after --ping-interval of silence a ping goes out; a peer that says
 * nothing for --ping-timeout after it is dropped (and its cursor with it). */
static void on_timer(h2o_timeout_entry_t *entry)
{
    srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, timer, entry);
    srv_t *srv = s->srv;
    uint64_t now = srv__now_ms(srv);
    if (s->closing) {
        srv__session_drop(s); /* the close handshake did not finish in time */
        return;
    }
    if (s->ping_sent_at != 0 && s->last_heard < s->ping_sent_at) {
        srv->metrics.ping_timeouts++;
        srv__session_drop(s);
        return;
    }
    s->ping_sent_at = 0;
    if (s->ws.sock != NULL && now - s->last_heard + 50 >= (uint64_t)srv->cfg.ping_interval * 1000) {
        if (srv__ws_send_ping(s, (const uint8_t *)"weft", 4) == 0) {
            s->ping_sent_at = now;
            mark_proceed(s);
            h2o_timeout_link(srv->loop, &srv->ping_answer_timeout, &s->timer);
            return;
        }
    }
    h2o_timeout_link(srv->loop, &srv->ping_interval_timeout, &s->timer);
}

/* ---- acknowledgements ---------------------------------------------------- */

static void push_ack(srv_session_t *s, uint64_t ticket, uint64_t seq)
{
    if (s->acks_len == s->acks_cap) {
        size_t cap = s->acks_cap ? s->acks_cap * 2 : 8;
        srv_ack_t *a = malloc(cap * sizeof(*a));
        if (a == NULL)
            abort();
        for (size_t i = 0; i < s->acks_len; i++)
            a[i] = s->acks[(s->acks_head + i) % s->acks_cap];
        free(s->acks);
        s->acks = a;
        s->acks_cap = cap;
        s->acks_head = 0;
    }
    s->acks[(s->acks_head + s->acks_len) % s->acks_cap] = (srv_ack_t){ticket, seq};
    s->acks_len++;
    if (!h2o_linklist_is_linked(&s->ack_link))
        h2o_linklist_insert(&s->srv->ack_waiters, &s->ack_link);
}

void srv__session_ack_durable(srv_session_t *s, uint64_t durable)
{
    uint64_t seq = 0;
    while (s->acks_len > 0 && s->acks[s->acks_head].ticket <= durable) {
        seq = s->acks[s->acks_head].seq;
        s->acks_head = (s->acks_head + 1) % s->acks_cap;
        s->acks_len--;
    }
    if (s->acks_len == 0 && h2o_linklist_is_linked(&s->ack_link))
        h2o_linklist_unlink(&s->ack_link);
    if (seq != 0) {
        proto_msg_t m;
        proto_buf_t *buf = &s->srv->scratch;
        memset(&m, 0, sizeof(m));
        m.type = PROTO_ACK;
        m.u.ack.seq = seq;
        s->srv->metrics.acks_out++;
        proto_buf_reset(buf);
        if (proto_encode(&m, buf) != 0)
            abort();
        /* A paced document's broadcast is coming (srv__doc_flush_tick): the
         * ACK waits for it and goes out in the same write. */
        queue_out(s, buf->base, buf->len, NULL, s->doc != NULL && s->doc->pace_due != 0);
    }
}

/* ---- messages -------------------------------------------------------------- */

/* Encodes the PRESENCE_STATE of `of` into the server's scratch buffer. */
static void encode_presence_of(const srv_session_t *of)
{
    proto_msg_t m;
    memset(&m, 0, sizeof(m));
    m.type = PROTO_PRESENCE_STATE;
    m.u.presence_state.replica = of->replica;
    m.u.presence_state.name = (proto_bytes_t){(const uint8_t *)of->name, strlen(of->name)};
    m.u.presence_state.color = (proto_bytes_t){(const uint8_t *)of->color, strlen(of->color)};
    if (of->has_selection) {
        m.u.presence_state.anchor = (proto_bytes_t){of->anchor, of->anchor_len};
        m.u.presence_state.head = (proto_bytes_t){of->head, of->head_len};
    }
    proto_buf_reset(&of->srv->scratch);
    if (proto_encode(&m, &of->srv->scratch) != 0)
        abort(); /* names, colours and positions were checked when received */
}

static void send_presence_of(srv_session_t *to, const srv_session_t *of)
{
    encode_presence_of(of);
    srv__session_send(to, to->srv->scratch.base, to->srv->scratch.len);
}

/* Tells every other editor of the document where `s` is (encoded once). */
static void broadcast_presence(srv_session_t *s)
{
    encode_presence_of(s);
    srv__doc_broadcast(s->doc, s, s->srv->scratch.base, s->srv->scratch.len);
}

static void copy_str(char *dst, proto_bytes_t src)
{
    memcpy(dst, src.base, src.len);
    dst[src.len] = '\0';
}

static void on_hello(srv_session_t *s, const proto_msg_t *m)
{
    srv_t *srv = s->srv;
    srv_doc_t *doc;
    proto_msg_t out;
    crdt_buf_t sv = {0};
    int err;

    if (m->u.hello.version != PROTO_VERSION) {
        srv__session_error(s, PROTO_ERR_VERSION_UNSUPPORTED,
                           "this server speaks protocol version 1 only", 0);
        srv__session_close(s, 1002, "unsupported protocol version");
        return;
    }
    if (srv->stopping) {
        srv__session_error(s, PROTO_ERR_SHUTTING_DOWN, "the server is shutting down", 0);
        srv__session_close(s, 1001, "shutting down");
        return;
    }
    if (srv__auth_hello(s, m) != 0)
        return; /* no token for this document: refused before any of its data */
    if ((err = srv__doc_open(srv, s->docname, s->docname_len, &doc)) == SRV_EBUSY) {
        srv__session_error(s, PROTO_ERR_SERVER_ERROR, "too many documents open", 0);
        srv__session_close(s, 1013, "try again later");
        return;
    }
    if (err != 0) {
        srv__session_error(s, PROTO_ERR_SERVER_ERROR, "the document cannot be loaded", 0);
        srv__session_close(s, 1011, "document cannot be loaded");
        return;
    }
    for (h2o_linklist_t *l = doc->sessions.next; l != &doc->sessions; l = l->next) {
        srv_session_t *o = H2O_STRUCT_FROM_MEMBER(srv_session_t, doc_link, l);
        if (o->replica == m->u.hello.replica) {
            srv__session_error(s, PROTO_ERR_REPLICA_IN_USE,
                               "another connection of this document uses this replica id", 0);
            srv__session_close(s, 1008, "replica id in use");
            return;
        }
    }
    s->replica = m->u.hello.replica;
    copy_str(s->name, m->u.hello.name);
    srv__auth_hello_name(s);
    copy_str(s->color, m->u.hello.color);

    memset(&out, 0, sizeof(out));
    out.type = PROTO_WELCOME;
    out.u.welcome.version = PROTO_VERSION;
    out.u.welcome.replica = s->replica;
    out.u.welcome.max_message = srv->cfg.max_message;
    if (send_msg(s, &out) != 0)
        return;
    if (crdt_doc_state_vector(doc->crdt, &sv) != 0)
        abort();
    memset(&out, 0, sizeof(out));
    out.type = PROTO_SYNC1;
    out.u.sync1.sv = (proto_bytes_t){sv.base, sv.len};
    err = send_msg(s, &out);
    crdt_buf_dispose(&sv);
    if (err != 0)
        return;
    for (h2o_linklist_t *l = doc->sessions.next; l != &doc->sessions; l = l->next) {
        srv_session_t *o = H2O_STRUCT_FROM_MEMBER(srv_session_t, doc_link, l);
        if (o->has_presence)
            send_presence_of(s, o);
    }
    srv__doc_join(doc, s);
    /* Others learn of the newcomer at once (who is here), without a cursor. */
    s->has_presence = 1;
    broadcast_presence(s);
}

/* Applies update bytes from the session; acknowledges them under `seq` when
 * `ack` (UPDATE) and not at all for SYNC2. */
static void on_update_bytes(srv_session_t *s, proto_bytes_t u, uint64_t seq, int ack)
{
    srv_t *srv = s->srv;
    srv_doc_t *doc = s->doc;
    uint64_t before, ticket, bound = 0;
    crdt_update_summary_t sum;
    size_t pending;
    int err;

    if (srv->store_error) {
        srv__session_error(s, PROTO_ERR_SERVER_ERROR, "storage failed: edits cannot be saved", seq);
        srv__session_close(s, 1011, "storage failed");
        return;
    }
    /* --max-document-bytes, checked before applying (an apply cannot be
     * undone): each inserted UTF-16 unit is at most 3 UTF-8 bytes, and what
     * held operations may still reveal counts as taken. Bytes that do not
     * decode are left to the apply to refuse. */
    if (crdt_update_summary(u.base, u.len, NULL, &sum) == 0) {
        bound = sum.inserted * 3;
        if (sum.inserted > UINT64_MAX / 3 ||
            crdt_doc_utf8_length(doc->crdt) + doc->held_bytes + bound > srv->cfg.max_doc_bytes) {
            srv->metrics.limited[SRV_LIMIT_DOC_BYTES]++;
            srv__session_error(s, PROTO_ERR_DOCUMENT_TOO_LARGE,
                               "the document would pass its size limit", seq);
            return;
        }
    }
    /* --max-pending. Whether an update would be held cannot be known before
     * applying it, and an apply cannot be undone; editors that send whole
     * histories never add held operations. So once the document holds the
     * limit, only connections that have added held runs are refused: the
     * others, whose updates may be the missing dependencies, go on. */
    pending = crdt_doc_pending(doc->crdt);
    if (pending >= srv->cfg.max_pending && s->added_held) {
        srv->metrics.limited[SRV_LIMIT_PENDING]++;
        srv__session_error(s, PROTO_ERR_BAD_UPDATE,
                           "update refused: the document holds too many operations waiting "
                           "for missing ones",
                           seq);
        return;
    }
    before = crdt_doc_change_count(doc->crdt);
    srv__doc_begin_change(doc, s);
    err = crdt_doc_apply_update(doc->crdt, u.base, u.len);
    if (err == CRDT_ENOMEM)
        abort();
    if (err == 0 && crdt_doc_pending(doc->crdt) == 0)
        doc->held_bytes = 0;
    else if (err == 0 && crdt_doc_pending(doc->crdt) > pending) {
        doc->held_bytes += bound;
        s->added_held = 1;
    }
    if (err != 0) {
        char text[128];
        snprintf(text, sizeof(text), "update rejected: %s", crdt_strerror(err));
        srv__session_error(s, PROTO_ERR_BAD_UPDATE, text, seq);
        return;
    }
    srv->metrics.updates_in++;
    if (crdt_doc_change_count(doc->crdt) != before) {
        store_append_t a;
        uint64_t log_seq = 0;
        memset(&a, 0, sizeof(a));
        a.name = doc->name;
        a.name_len = doc->name_len;
        a.update = u.base;
        a.update_len = u.len;
        a.author = s->replica;
        a.author_name = s->name;
        a.author_name_len = strlen(s->name);
        a.time_ms = srv__wall_ms();
        ticket = store_append_ex(srv->store, &a, &log_seq);
        if (ticket == 0) {
            /* The writer thread failed meanwhile (the update is applied in
             * memory but will never be acknowledged: the client keeps it). */
            srv->store_error = store_failed(srv->store);
            if (srv->store_error == 0)
                abort(); /* out of memory */
            srv__session_error(s, PROTO_ERR_SERVER_ERROR, "storage failed: edits cannot be saved",
                               seq);
            srv__session_close(s, 1011, "storage failed");
            return;
        }
        srv->metrics.updates_stored++;
        doc->last_ticket = ticket;
        doc->last_seq = log_seq;
        /* The tick's only change, wholly applied: srv__doc_flush_tick sends
         * it on as it is. */
        if (doc->tick_changes == 1 && doc->tick_pending == 0 && crdt_doc_pending(doc->crdt) == 0)
            srv__buf_append(&doc->relay, u.base, u.len);
    } else {
        /* Known already: durable once everything queued before it is. */
        ticket = store_last_ticket(srv->store);
    }
    if (ack)
        push_ack(s, ticket, seq);
}

static void on_sync1(srv_session_t *s, const proto_msg_t *m)
{
    crdt_buf_t diff = {0};
    proto_msg_t out;
    int err = crdt_doc_diff(s->doc->crdt, m->u.sync1.sv.base, m->u.sync1.sv.len, &diff);
    if (err == CRDT_ENOMEM)
        abort();
    if (err != 0) {
        srv__session_error(s, PROTO_ERR_BAD_UPDATE, "state vector rejected", 0);
        return;
    }
    memset(&out, 0, sizeof(out));
    out.type = PROTO_SYNC2;
    out.u.sync2.update = (proto_bytes_t){diff.base, diff.len};
    send_msg(s, &out);
    crdt_buf_dispose(&diff);
}

static int relpos_ok(proto_bytes_t b)
{
    crdt_relpos_t p;
    return b.base == NULL || crdt_relpos_decode(b.base, b.len, &p) == 0;
}

static void on_presence(srv_session_t *s, const proto_msg_t *m)
{
    proto_bytes_t a = m->u.presence.anchor, h = m->u.presence.head;
    s->srv->metrics.presence_in++;
    if (!relpos_ok(a) || !relpos_ok(h)) {
        srv__session_error(s, PROTO_ERR_BAD_MESSAGE, "presence: bad relative position", 0);
        return;
    }
    if (a.base == NULL)
        a = h;
    if (h.base == NULL)
        h = a;
    s->has_selection = a.base != NULL;
    if (s->has_selection) {
        memcpy(s->anchor, a.base, a.len);
        s->anchor_len = (uint8_t)a.len;
        memcpy(s->head, h.base, h.len);
        s->head_len = (uint8_t)h.len;
    }
    s->has_presence = 1;
    broadcast_presence(s);
}

/* HISTORY: the REST route's answer, as HISTORY_RESULT. A restore reaches
 * this editor too, as an UPDATE at the end of the tick. */
static void on_history(srv_session_t *s, const proto_msg_t *m)
{
    srv_t *srv = s->srv;
    srv_history_req_t hr;
    proto_buf_t body = {0};
    proto_msg_t out;
    int status;

    memset(&hr, 0, sizeof(hr));
    hr.method = (const char *)m->u.history.method.base;
    hr.method_len = m->u.history.method.len;
    hr.path = (const char *)m->u.history.path.base;
    hr.path_len = m->u.history.path.len;
    hr.body = (const char *)m->u.history.body.base; /* NULL for nil */
    hr.body_len = m->u.history.body.len;
    hr.session = s;
    status = srv__history_serve(srv, s->doc->name, s->doc->name_len, &hr, &body);

    memset(&out, 0, sizeof(out));
    out.type = PROTO_HISTORY_RESULT;
    out.u.history_result.req = m->u.history.req;
    out.u.history_result.status = (uint32_t)status;
    out.u.history_result.body = (proto_bytes_t){body.base, body.len};
    proto_buf_reset(&srv->scratch);
    if (proto_encode(&out, &srv->scratch) != 0)
        abort(); /* JSON is UTF-8 and under 4 GiB */
    if (srv->scratch.len > srv->cfg.max_message) {
        static const char too_big[] =
            "{\"error\":\"the answer is larger than the message limit: use the REST route\"}\n";
        out.u.history_result.status = 413;
        out.u.history_result.body = (proto_bytes_t){(const uint8_t *)too_big, sizeof(too_big) - 1};
        proto_buf_reset(&srv->scratch);
        if (proto_encode(&out, &srv->scratch) != 0)
            abort();
    }
    srv__session_send(s, srv->scratch.base, srv->scratch.len);
    proto_buf_dispose(&body);
}

static void on_binary(srv_session_t *s, const uint8_t *data, size_t len)
{
    proto_msg_t m;
    int err = proto_decode(data, len, &m);

    if (err != 0) {
        uint32_t code = err == PROTO_ETYPE    ? PROTO_ERR_UNKNOWN_TYPE
                        : err == PROTO_ELIMIT ? PROTO_ERR_TOO_LARGE
                                              : PROTO_ERR_BAD_MESSAGE;
        if (s->doc == NULL) {
            srv__session_error(s, PROTO_ERR_NOT_HELLO_FIRST, "the first message must be HELLO", 0);
            srv__session_close(s, 1008, "HELLO expected");
            return;
        }
        srv__session_error(s, code, proto_strerror(err), 0);
        return;
    }
    if (s->doc == NULL) {
        if (m.type != PROTO_HELLO) {
            srv__session_error(s, PROTO_ERR_NOT_HELLO_FIRST, "the first message must be HELLO", 0);
            srv__session_close(s, 1008, "HELLO expected");
            return;
        }
        on_hello(s, &m);
        return;
    }
    switch (m.type) {
    case PROTO_HELLO:
        srv__session_error(s, PROTO_ERR_BAD_MESSAGE, "HELLO was already received", 0);
        break;
    case PROTO_SYNC1:
        on_sync1(s, &m);
        break;
    case PROTO_SYNC2:
        if (srv__auth_may_write(s, 0))
            on_update_bytes(s, m.u.sync2.update, 0, 0);
        break;
    case PROTO_UPDATE:
        if (!srv__auth_may_write(s, m.u.update.seq))
            break;
        if (m.u.update.seq <= s->last_seq) {
            srv__session_error(s, PROTO_ERR_BAD_MESSAGE, "UPDATE seq must increase on a connection",
                               m.u.update.seq);
            break;
        }
        s->last_seq = m.u.update.seq;
        on_update_bytes(s, m.u.update.update, m.u.update.seq, 1);
        break;
    case PROTO_PRESENCE:
        on_presence(s, &m);
        break;
    case PROTO_HISTORY:
        if (srv__auth_may_history(s, &m))
            on_history(s, &m);
        break;
    default:
        srv__session_error(s, PROTO_ERR_BAD_MESSAGE, "this message goes from server to client", 0);
        break;
    }
}

/* Takes a token from the session's bucket. Returns 1, or 0 when it is empty. */
static int take_token(srv_session_t *s, uint64_t now)
{
    uint64_t rate = s->srv->cfg.max_msgs_per_sec, cap = rate * 1000;
    if (now > s->tokens_at) {
        uint64_t elapsed = now - s->tokens_at;
        s->tokens = elapsed >= 1000 ? cap : s->tokens + elapsed * rate;
        if (s->tokens > cap)
            s->tokens = cap;
        s->tokens_at = now;
    }
    if (s->tokens < 1000)
        return 0;
    s->tokens -= 1000;
    return 1;
}

/* A message past the rate limit: dropped unread but for an UPDATE's seq (so
 * the client knows which one to send again), answered with ERROR rate_limited;
 * a connection that keeps flooding is closed. */
static void on_rate_limited(srv_session_t *s, unsigned opcode, const uint8_t *msg, size_t len,
                            uint64_t now)
{
    srv_t *srv = s->srv;
    uint64_t seq = 0;
    proto_msg_t m;
    if (now - s->drop_window >= SRV_RATE_WINDOW_MS) {
        s->drop_window = now;
        s->drops = 0;
    }
    s->drops++;
    srv->metrics.limited[SRV_LIMIT_MESSAGES]++;
    if (s->drops > (uint64_t)SRV_RATE_CLOSE_FACTOR * srv->cfg.max_msgs_per_sec) {
        srv->metrics.limited[SRV_LIMIT_RATE_CLOSE]++;
        srv__session_error(s, PROTO_ERR_RATE_LIMITED, "too many messages per second: closing", 0);
        srv__session_close(s, 1008, "rate limited");
        return;
    }
    if (opcode == SRV_WS_OP_BINARY && proto_decode(msg, len, &m) == 0 && m.type == PROTO_UPDATE)
        seq = m.u.update.seq;
    srv__session_error(s, PROTO_ERR_RATE_LIMITED, "too many messages per second: message dropped",
                       seq);
}

void srv__session_on_message(srv_session_t *s, unsigned opcode, const uint8_t *msg, size_t len)
{
    srv_t *srv = s->srv;

    s->last_heard = srv__now_ms(srv);
    if (s->closing || s->dropping)
        return;
    if ((opcode == SRV_WS_OP_BINARY || opcode == SRV_WS_OP_TEXT) && !take_token(s, s->last_heard)) {
        srv->metrics.messages_in++;
        srv->metrics.bytes_in += len;
        on_rate_limited(s, opcode, msg, len, s->last_heard);
        return;
    }
    switch (opcode) {
    case SRV_WS_OP_BINARY:
        srv->metrics.messages_in++;
        srv->metrics.bytes_in += len;
        on_binary(s, msg, len);
        break;
    case SRV_WS_OP_TEXT:
        srv->metrics.messages_in++;
        srv->metrics.bytes_in += len;
        srv__session_error(s, PROTO_ERR_BAD_MESSAGE, "text frames are not part of the protocol", 0);
        srv__session_close(s, 1003, "binary messages only");
        break;
    default: /* ping (ws.c answers it), pong, close (ws.c replies) */
        break;
    }
}
