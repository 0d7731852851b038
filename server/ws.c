/* SPDX-License-Identifier: MIT */
/*
 * ws.c: the WebSocket transport of a session: H2O's socket after the HTTP/1.1
 * upgrade, and the RFC 6455 framing of the server's side: masked client
 * frames, fragmentation, control frames between fragments, the close
 * handshake, UTF-8 of text messages and close reasons, the message size limit.
 *
 * Why not H2O's own websocket.c: in 2.2.5 it writes each frame's header and
 * payload as separate socket writes and toggles read interest around every
 * write. Why not wslay (used until 2026-11): its context is 9.4 KB per
 * connection (two 4 KiB buffers), most of the memory of an idle editor, and
 * it copies every message twice on the way out.
 *
 * Input. Frames are parsed in H2O's input buffer and unmasked in place by
 * srv__wsf_next() (the byte level, no socket: ws_frame.h, fuzzed by
 * tests/fuzz/fuzz_ws.c); a message in one frame (nearly all) goes to the
 * session straight from there; only fragmented messages are gathered
 * (ws->rx.msg, freed after each). Once the input is consumed the buffer goes
 * back to H2O, so an idle connection holds no buffer at all.
 *
 * Output. A tick's frames go into one buffer (ws->out) and out in ONE write
 * per connection; while that write is in flight further frames gather in
 * ws->out, which is what --max-queued bounds. Once written and with nothing
 * more to send the buffers are freed. Reading stays on.
 *
 * A connection ends (srv__session_closed) on a socket error or EOF, or when
 * the close handshake is over: a close frame sent and the peer's received (or
 * a protocol error answered with a close frame), and everything written.
 * Event-loop thread only.
 */
#include <assert.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

enum {
    OP_CONT = SRV_WS_OP_CONT,
    OP_TEXT = SRV_WS_OP_TEXT,
    OP_BINARY = SRV_WS_OP_BINARY,
    OP_CLOSE = SRV_WS_OP_CLOSE,
    OP_PING = SRV_WS_OP_PING,
    OP_PONG = SRV_WS_OP_PONG
};

/* 1 when data[0 .. len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static int utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Close codes a peer may send (RFC 6455 section 7.4). */
static int close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1011 && code != 1004 && code != 1005 && code != 1006) ||
           (code >= 3000 && code <= 4999);
}

static size_t frame_header(uint8_t hdr[10], unsigned opcode, size_t len);

/* An output buffer of a connection gone idle goes to the server's pool (or
 * is freed when the pool is full or the buffer large), so that write bursts
 * do not malloc and free their buffers each time. */
static void buf_release(srv_t *srv, proto_buf_t *b)
{
    if (b->base != NULL && b->cap <= SRV_BUF_POOL_CAP && srv->n_buf_pool < SRV_BUF_POOL) {
        if (srv->buf_pool == NULL && (srv->buf_pool = malloc(SRV_BUF_POOL * sizeof(*b))) == NULL)
            abort();
        b->len = 0;
        srv->buf_pool[srv->n_buf_pool++] = *b;
        memset(b, 0, sizeof(*b));
        return;
    }
    proto_buf_dispose(b);
}

/* Appends one unmasked frame (FIN set) to the output buffer. */
static void put_frame(srv_ws_t *ws, unsigned opcode, const uint8_t *payload, size_t len)
{
    uint8_t hdr[10];
    size_t n = frame_header(hdr, opcode, len);
    if (ws->out.base == NULL) { /* a buffer from the pool, if any */
        srv_t *srv = H2O_STRUCT_FROM_MEMBER(srv_session_t, ws, ws)->srv;
        if (srv->n_buf_pool > 0)
            ws->out = srv->buf_pool[--srv->n_buf_pool];
    }
    if (proto_buf_reserve(&ws->out, n + len) != 0)
        abort();
    memcpy(ws->out.base + ws->out.len, hdr, n);
    if (len != 0)
        memcpy(ws->out.base + ws->out.len + n, payload, len);
    ws->out.len += n + len;
    ws->out_frames++;
}

/* Queues a close frame (code 0: without a code); nothing is sent after it. */
static void put_close(srv_ws_t *ws, unsigned code, const char *reason, size_t reason_len)
{
    uint8_t p[125];
    size_t n = 0;
    if (ws->close_sent)
        return;
    if (code != 0) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (reason_len > sizeof(p) - 2)
            reason_len = sizeof(p) - 2;
        if (reason_len != 0)
            memcpy(p + 2, reason, reason_len);
        n += reason_len;
    }
    put_frame(ws, OP_CLOSE, p, n);
    ws->close_sent = 1;
    ws->close_code_sent = (uint16_t)code;
}

/* A protocol violation: close frame with `code`, and nothing more is read. */
static void fail(srv_ws_t *ws, unsigned code)
{
    put_close(ws, code, NULL, 0);
    ws->read_done = 1;
}

/* The error of a frame: a close frame with `code` follows, nothing more. */
static srv_wsf_kind_t wsf_error(srv_wsf_parser_t *p, unsigned code, srv_wsf_event_t *ev)
{
    proto_buf_dispose(&p->msg);
    p->msg_opcode = 0;
    p->done = 1;
    memset(ev, 0, sizeof(*ev)); /* nothing but the code */
    ev->code = (uint16_t)code;
    return SRV_WSF_ERROR;
}

srv_wsf_kind_t srv__wsf_next(srv_wsf_parser_t *p, uint8_t *in, size_t avail, size_t max_message,
                             srv_wsf_event_t *ev)
{
    size_t hlen = 2;
    unsigned fin, rsv, opcode, masked;
    uint64_t len;
    uint8_t *pl, *key;
    memset(ev, 0, sizeof(*ev));
    if (p->msg_opcode == 0)
        proto_buf_dispose(&p->msg); /* the message delivered last time */
    if (p->done || avail < 2)
        return SRV_WSF_MORE;
    fin = in[0] >> 7, rsv = (in[0] >> 4) & 7, opcode = in[0] & 0xf;
    masked = in[1] >> 7;
    len = in[1] & 0x7f;
    if (rsv != 0 || (opcode > OP_BINARY && opcode < OP_CLOSE) || opcode > OP_PONG || !masked)
        return wsf_error(p, 1002, ev);
    if (len == 126) {
        if (avail < 4)
            return SRV_WSF_MORE;
        len = (uint64_t)in[2] << 8 | in[3];
        hlen = 4;
    } else if (len == 127) {
        if (avail < 10)
            return SRV_WSF_MORE;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | in[2 + i];
        hlen = 10;
        if (len >> 63)
            return wsf_error(p, 1002, ev);
    }
    if (opcode >= OP_CLOSE) {
        if (!fin || len > 125)
            return wsf_error(p, 1002, ev);
    } else {
        if ((opcode == OP_CONT) != (p->msg_opcode != 0))
            return wsf_error(p, 1002,
                             ev); /* a continuation without a start, or a start inside one */
        if (len > max_message || p->msg.len + len > (uint64_t)max_message)
            return wsf_error(p, 1009, ev);
    }
    hlen += 4; /* the masking key */
    if (avail < hlen || avail - hlen < len)
        return SRV_WSF_MORE; /* wait for the whole frame */
    pl = in + hlen, key = in + hlen - 4;
    for (uint64_t i = 0; i < len; i++)
        pl[i] ^= key[i & 3];
    ev->consumed = hlen + (size_t)len;
    ev->opcode = opcode;
    ev->data = pl;
    ev->len = (size_t)len;
    if (opcode >= OP_CLOSE) {
        if (opcode != OP_CLOSE)
            return SRV_WSF_CONTROL;
        if (len == 1)
            return wsf_error(p, 1002, ev);
        if (len >= 2) {
            ev->code = (uint16_t)(pl[0] << 8 | pl[1]);
            if (!close_code_valid(ev->code))
                return wsf_error(p, 1002, ev);
            if (!utf8_valid(pl + 2, (size_t)len - 2))
                return wsf_error(p, 1007, ev);
        }
        proto_buf_dispose(&p->msg);
        p->msg_opcode = 0;
        p->done = 1;
        return SRV_WSF_CONTROL;
    }
    if (opcode != OP_CONT && fin) {
        /* A message in one frame: from the input buffer, no copy. */
    } else {
        if (opcode != OP_CONT)
            p->msg_opcode = (uint8_t)opcode;
        srv__buf_append(&p->msg, pl, (size_t)len);
        if (!fin)
            return SRV_WSF_FRAGMENT;
        ev->opcode = p->msg_opcode;
        ev->data = p->msg.base;
        ev->len = p->msg.len;
        p->msg_opcode = 0; /* p->msg is freed on the next call */
    }
    if (ev->opcode == OP_TEXT && !utf8_valid(ev->data, ev->len))
        return wsf_error(p, 1007, ev);
    return SRV_WSF_MESSAGE;
}

void srv__wsf_dispose(srv_wsf_parser_t *p)
{
    proto_buf_dispose(&p->msg);
    p->msg_opcode = 0;
}

/* A whole control frame (a close frame's code and reason are checked). */
static void on_control(srv_session_t *s, const srv_wsf_event_t *ev)
{
    srv_ws_t *ws = &s->ws;
    if (ev->opcode == OP_PING) {
        if (!ws->close_sent)
            put_frame(ws, OP_PONG, ev->data, ev->len);
        srv__session_on_message(s, ev->opcode, ev->data, ev->len);
        return;
    }
    if (ev->opcode == OP_PONG) {
        srv__session_on_message(s, ev->opcode, ev->data, ev->len);
        return;
    }
    /* Close. */
    ws->close_received = 1;
    ws->read_done = 1;
    srv__session_on_message(s, ev->opcode, ev->data, ev->len);
    put_close(ws, ev->code, NULL, 0); /* the echo (unless we had closed first) */
}

/*
 * Handles every whole frame in the socket's input; the input left over is an
 * incomplete frame. Stops at a protocol error (close frame queued).
 */
static void parse_input(srv_session_t *s)
{
    srv_ws_t *ws = &s->ws;
    srv_wsf_event_t ev;
    while (!ws->read_done && !s->dropping) {
        h2o_buffer_t *in = ws->sock->input;
        switch (
            srv__wsf_next(&ws->rx, (uint8_t *)in->bytes, in->size, s->srv->cfg.max_message, &ev)) {
        case SRV_WSF_MORE:
            return;
        case SRV_WSF_ERROR:
            fail(ws, ev.code);
            return;
        case SRV_WSF_FRAGMENT:
            break;
        case SRV_WSF_MESSAGE:
            srv__session_on_message(s, ev.opcode, ev.data, ev.len);
            break;
        case SRV_WSF_CONTROL:
            on_control(s, &ev);
            break;
        }
        h2o_buffer_consume(&ws->sock->input, ev.consumed);
    }
}

static void on_write_done(h2o_socket_t *sock, const char *err);

/* True when the connection has nothing more to do: the close handshake is
 * over (or a protocol error was answered with a close frame) and written. */
static int finished(srv_session_t *s)
{
    return s->ws.close_sent && (s->ws.close_received || s->ws.read_done) &&
           srv__ws_queued(&s->ws) == 0 && !h2o_socket_is_writing(s->ws.sock);
}

static void release_segs(srv_wseg_t *segs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (segs[i].sh != NULL)
            srv__shared_release(segs[i].sh);
}

static void push_seg(srv_ws_t *ws, srv_shared_t *sh, size_t off, size_t len)
{
    if (ws->nsegs == ws->segs_cap) {
        uint32_t cap = ws->segs_cap ? ws->segs_cap * 2 : 4;
        srv_wseg_t *n = realloc(ws->segs, cap * sizeof(*n));
        if (n == NULL)
            abort();
        ws->segs = n;
        ws->segs_cap = cap;
    }
    ws->segs[ws->nsegs++] = (srv_wseg_t){sh, off, len};
}

/* Room for n iovecs in the server's scratch array (H2O copies the array of
 * a write it cannot finish at once; the bytes must stay until it is done). */
static h2o_iovec_t *iov_reserve(srv_t *srv, size_t n)
{
    if (n > srv->iov_cap) {
        size_t cap = srv->iov_cap ? srv->iov_cap : 16;
        while (cap < n)
            cap *= 2;
        free(srv->iov);
        if ((srv->iov = malloc(cap * sizeof(*srv->iov))) == NULL)
            abort();
        srv->iov_cap = cap;
    }
    return srv->iov;
}

void srv__ws_flush(srv_session_t *s)
{
    srv_ws_t *ws = &s->ws;
    h2o_iovec_t *iov;
    size_t n = 0, open;
    proto_buf_t t;
    srv_wseg_t *ts;
    uint32_t tcap;
    if (ws->sock == NULL || h2o_socket_is_writing(ws->sock))
        return;
    if (srv__ws_queued(ws) == 0) {
        if (finished(s))
            srv__session_drop(s);
        return;
    }
    /* What is being written must stay put: swap in the other buffer (and
     * list of pieces; the one swapped in is empty, its frames released). */
    t = ws->writing;
    ws->writing = ws->out;
    ws->out = t;
    ws->out.len = 0;
    ws->out_frames = 0;
    if (ws->nsegs == 0) { /* own frames only (out_open is 0) */
        h2o_iovec_t one = h2o_iovec_init(ws->writing.base, ws->writing.len);
        h2o_socket_write(ws->sock, &one, 1, on_write_done);
        return;
    }
    ts = ws->wsegs;
    tcap = ws->wsegs_cap;
    ws->wsegs = ws->segs;
    ws->wsegs_cap = ws->segs_cap;
    ws->wsegs_n = ws->nsegs;
    ws->segs = ts;
    ws->segs_cap = tcap;
    ws->nsegs = 0;
    open = ws->out_open;
    ws->out_open = 0;
    ws->out_shared = 0;
    iov = iov_reserve(s->srv, ws->wsegs_n + 1);
    for (uint32_t i = 0; i < ws->wsegs_n; i++) {
        const srv_wseg_t *g = &ws->wsegs[i];
        iov[n++] = g->sh != NULL ? h2o_iovec_init(g->sh->bytes, g->sh->len)
                                 : h2o_iovec_init(ws->writing.base + g->off, g->len);
    }
    if (ws->writing.len > open)
        iov[n++] = h2o_iovec_init(ws->writing.base + open, ws->writing.len - open);
    h2o_socket_write(ws->sock, iov, n, on_write_done);
}

static void on_write_done(h2o_socket_t *sock, const char *err)
{
    srv_session_t *s = sock->data;
    srv_ws_t *ws = &s->ws;
    if (ws->wsegs_n != 0) {
        release_segs(ws->wsegs, ws->wsegs_n);
        ws->wsegs_n = 0;
    }
    if (err != NULL) {
        srv__session_closed(s);
        return;
    }
    /* Idle connections keep no buffer (theirs go to the pool). */
    buf_release(s->srv, &ws->writing);
    if (srv__ws_queued(ws) == 0) {
        buf_release(s->srv, &ws->out);
        if (ws->segs_cap != 0 || ws->wsegs_cap != 0) {
            free(ws->segs);
            free(ws->wsegs);
            ws->segs = ws->wsegs = NULL;
            ws->segs_cap = ws->wsegs_cap = 0;
        }
    }
    srv__ws_flush(s);
}

/* An idle connection keeps no input buffer: H2O allocates one of 8 KiB (and
 * keeps it) on the first read; once everything read is consumed it goes back
 * to H2O's recycling allocator and the next read takes one again. */
static void release_input(h2o_socket_t *sock)
{
    if (sock->input->size == 0 && sock->input->bytes != NULL) {
        h2o_buffer_dispose(&sock->input);
        h2o_buffer_init(&sock->input, &h2o_socket_buffer_prototype);
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    srv_session_t *s = sock->data;
    if (err != NULL) {
        srv__session_closed(s);
        return;
    }
    parse_input(s);
    if (s->ws.read_done)
        h2o_buffer_consume(&sock->input, sock->input->size); /* after a close: ignored */
    /* Every ping is answered with a pong: a peer that pings and never reads
     * would grow the output without end. */
    if (srv__ws_over_bound(s, 0)) {
        s->srv->metrics.slow_consumers++;
        s->srv->metrics.errors[PROTO_ERR_SLOW_CONSUMER]++;
        srv__session_drop(s);
        return;
    }
    release_input(sock);
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
    else
        release_input(sock);
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

int srv__ws_send_binary(srv_session_t *s, const uint8_t *msg, size_t len)
{
    /* No messages once a close frame was received or sent. */
    if (s->ws.close_sent || s->ws.close_received || s->ws.read_done)
        return -1;
    put_frame(&s->ws, OP_BINARY, msg, len);
    return 0;
}

/* The header of an unmasked frame with FIN set; returns its length. */
static size_t frame_header(uint8_t hdr[10], unsigned opcode, size_t len)
{
    hdr[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

srv_shared_t *srv__shared_new(const uint8_t *msg, size_t len)
{
    uint8_t hdr[10];
    size_t n = frame_header(hdr, OP_BINARY, len);
    srv_shared_t *sh = malloc(sizeof(*sh) + n + len);
    if (sh == NULL)
        abort();
    sh->refs = 1;
    sh->len = n + len;
    memcpy(sh->bytes, hdr, n);
    if (len != 0)
        memcpy(sh->bytes + n, msg, len);
    return sh;
}

void srv__shared_release(srv_shared_t *sh)
{
    assert(sh->refs > 0);
    if (--sh->refs == 0)
        free(sh);
}

int srv__ws_send_shared(srv_session_t *s, srv_shared_t *sh)
{
    srv_ws_t *ws = &s->ws;
    if (ws->close_sent || ws->close_received || ws->read_done)
        return -1;
    if (ws->out.len > ws->out_open)
        push_seg(ws, NULL, ws->out_open, ws->out.len - ws->out_open);
    push_seg(ws, sh, 0, sh->len);
    ws->out_open = ws->out.len;
    ws->out_shared += sh->len;
    ws->out_frames++;
    sh->refs++;
    return 0;
}

int srv__ws_send_ping(srv_session_t *s, const uint8_t *payload, size_t len)
{
    if (s->ws.close_sent || s->ws.close_received || s->ws.read_done || len > 125)
        return -1;
    put_frame(&s->ws, OP_PING, payload, len);
    return 0;
}

void srv__ws_close(srv_session_t *s, uint16_t code, const char *reason)
{
    put_close(&s->ws, code, reason, strlen(reason));
}

uint16_t srv__ws_close_code_sent(const srv_ws_t *ws)
{
    return ws->close_sent ? ws->close_code_sent : 0;
}

size_t srv__ws_queued(const srv_ws_t *ws)
{
    return ws->out.len + ws->out_shared;
}

int srv__ws_over_bound(const srv_session_t *s, size_t extra)
{
    return srv__ws_queued(&s->ws) + extra > s->srv->cfg.max_queued ||
           s->ws.out_frames >= SRV_MAX_QUEUED_MSGS;
}

void srv__ws_dispose(srv_ws_t *ws)
{
    if (ws->sock != NULL) {
        h2o_socket_close(ws->sock);
        ws->sock = NULL;
    }
    srv_t *srv = H2O_STRUCT_FROM_MEMBER(srv_session_t, ws, ws)->srv;
    buf_release(srv, &ws->out);
    buf_release(srv, &ws->writing);
    release_segs(ws->segs, ws->nsegs);
    release_segs(ws->wsegs, ws->wsegs_n);
    free(ws->segs);
    free(ws->wsegs);
    ws->segs = ws->wsegs = NULL;
    ws->nsegs = ws->wsegs_n = ws->segs_cap = ws->wsegs_cap = 0;
    ws->out_open = ws->out_shared = 0;
    srv__wsf_dispose(&ws->rx);
}
