/* SPDX-License-Identifier: MIT */
/*
 * ws.c: the WebSocket transport of a session: H2O's socket after the HTTP/1.1
 * upgrade, with wslay doing the framing (RFC 6455: masking, fragmentation,
 * control frames, close handshake, UTF-8 of text frames and close reasons).
 *
 * Why not H2O's own websocket.c: in 2.2.5 it writes each frame's header and
 * payload as separate socket writes and toggles read interest around every
 * write. Here wslay's output for a tick goes into one buffer and out in ONE
 * write per connection; while that write is in flight, further messages wait
 * in wslay's queue (which is what --max-queued bounds). Reading stays on.
 *
 * A connection ends (srv__session_closed) on a socket error or EOF, when wslay
 * gives up, or when the close handshake is over (nothing left to read or
 * write). Event-loop thread only.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

/* Write buffers larger than this are released once written (idle
 * connections keep no big buffer). */
#define KEEP_BUFFER 16384

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user_data)
{
    srv_session_t *s = user_data;
    h2o_buffer_t *in = s->ws.sock->input;
    (void)flags;
    if (in->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > in->size)
        len = in->size;
    memcpy(buf, in->bytes, len);
    h2o_buffer_consume(&s->ws.sock->input, len);
    return (ssize_t)len;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user_data)
{
    srv_session_t *s = user_data;
    (void)ctx;
    (void)flags;
    srv__buf_append(&s->ws.out, data, len);
    return (ssize_t)len;
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *user_data)
{
    (void)ctx;
    srv__session_on_message(user_data, arg);
}

static const struct wslay_event_callbacks wslay_callbacks = {
    .recv_callback = on_wslay_recv,
    .send_callback = on_wslay_send,
    .on_msg_recv_callback = on_wslay_msg,
};

static void on_write_done(h2o_socket_t *sock, const char *err);

/* True when the connection has nothing more to do: the close handshake is
 * over, or wslay stopped after an error it reported with a close frame. */
static int finished(srv_session_t *s)
{
    return !wslay_event_want_read(s->ws.ctx) && !wslay_event_want_write(s->ws.ctx) &&
           s->ws.out.len == 0 && !h2o_socket_is_writing(s->ws.sock);
}

void srv__ws_flush(srv_session_t *s)
{
    srv_ws_t *ws = &s->ws;
    h2o_iovec_t iov;
    proto_buf_t t;
    if (ws->sock == NULL || h2o_socket_is_writing(ws->sock))
        return;
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        srv__session_drop(s);
        return;
    }
    if (ws->out.len == 0) {
        if (finished(s))
            srv__session_drop(s);
        return;
    }
    /* The buffer being written must stay put: swap in the other one. */
    t = ws->writing;
    ws->writing = ws->out;
    ws->out = t;
    ws->out.len = 0;
    iov = h2o_iovec_init(ws->writing.base, ws->writing.len);
    h2o_socket_write(ws->sock, &iov, 1, on_write_done);
}

static void on_write_done(h2o_socket_t *sock, const char *err)
{
    srv_session_t *s = sock->data;
    if (err != NULL) {
        srv__session_closed(s);
        return;
    }
    s->ws.writing.len = 0;
    if (s->ws.writing.cap > KEEP_BUFFER)
        proto_buf_dispose(&s->ws.writing);
    srv__ws_flush(s);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    srv_session_t *s = sock->data;
    if (err != NULL) {
        srv__session_closed(s);
        return;
    }
    if (wslay_event_want_read(s->ws.ctx) && wslay_event_recv(s->ws.ctx) != 0) {
        srv__session_closed(s);
        return;
    }
    if (!wslay_event_want_read(s->ws.ctx))
        h2o_buffer_consume(&sock->input, sock->input->size); /* after a close: ignored */
    /* wslay answers every ping with a pong of its own: a peer that pings and
     * never reads would grow the queue without end. */
    if (srv__ws_over_bound(s, 0)) {
        s->srv->metrics.slow_consumers++;
        s->srv->metrics.errors[PROTO_ERR_SLOW_CONSUMER]++;
        srv__session_drop(s);
        return;
    }
    srv__ws_flush(s);
}

static void on_upgraded(void *user_data, h2o_socket_t *sock, size_t reqsize)
{
    srv_session_t *s = user_data;
    s->ws.upgrading = 0;
    if (sock == NULL) {
        srv__session_closed(s);
        return;
    }
    s->ws.sock = sock;
    sock->data = s;
    if (s->dropping) { /* dropped while the 101 was going out */
        srv__session_closed(s);
        return;
    }
    h2o_buffer_consume(&sock->input, reqsize);
    h2o_socket_read_start(sock, on_read);
    if (sock->input->size != 0)
        on_read(sock, NULL);
}

/* Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)). (H2O 2.2.5
 * declares a function for it but does not export it.) */
static void accept_key(char dst[29], const char *client_key)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t src[24 + sizeof(guid) - 1], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    memcpy(src, client_key, 24);
    memcpy(src + 24, guid, sizeof(guid) - 1);
    if (EVP_Digest(src, sizeof(src), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        abort();
    h2o_base64_encode(dst, md, 20, 0);
    dst[28] = '\0';
}

int srv__ws_accept(srv_session_t *s, h2o_req_t *req, const char *client_key)
{
    char accept[29];
    if (wslay_event_context_server_init(&s->ws.ctx, &wslay_callbacks, s) != 0)
        return -1;
    wslay_event_config_set_max_recv_msg_length(s->ws.ctx, s->srv->cfg.max_message);
    accept_key(accept, client_key);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0,
                          NULL, accept, strlen(accept));
    s->ws.upgrading = 1;
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, s);
    return 0;
}

size_t srv__ws_queued(const srv_ws_t *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx) + ws->out.len;
}

int srv__ws_over_bound(const srv_session_t *s, size_t extra)
{
    return srv__ws_queued(&s->ws) + extra > s->srv->cfg.max_queued ||
           wslay_event_get_queued_msg_count(s->ws.ctx) >= SRV_MAX_QUEUED_MSGS;
}

void srv__ws_dispose(srv_ws_t *ws)
{
    if (ws->sock != NULL) {
        h2o_socket_close(ws->sock);
        ws->sock = NULL;
    }
    if (ws->ctx != NULL) {
        wslay_event_context_free(ws->ctx);
        ws->ctx = NULL;
    }
    proto_buf_dispose(&ws->out);
    proto_buf_dispose(&ws->writing);
}
