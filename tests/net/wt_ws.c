/* SPDX-License-Identifier: MIT */
/*
 * wt_ws.c: the blocking WebSocket client of tests/net (see wt_ws.h), with the
 * SHA-1 and base64 its handshake check needs (RFC 3174, RFC 4648), written
 * here so the plain helpers depend on nothing but libc. Over TLS, every read
 * and write goes through the session (wt_tls.h).
 */
#define _GNU_SOURCE
#include "wt_ws.h"
#include "wt_net.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 64) {
        sha1_block(h, p);
        p += 64;
        left -= 64;
    }
    uint8_t tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tl = left + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tl == 128)
        sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

void wt_ws_init(wt_ws_t *ws, uint64_t seed)
{
    memset(ws, 0, sizeof *ws);
    ws->fd = -1;
    ws->auto_pong = 1;
    rng_init(&ws->_rng, seed);
}

int wt_ws_connect(wt_ws_t *ws, const char *host, uint16_t port, const char *path,
                  const char *extra_headers, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    if (ws->fd >= 0)
        wt_ws_abort(ws);
    wt_http_resp_dispose(&ws->http);
    wt_reader_dispose(&ws->_rd);
    ws->close_code = 0;
    ws->close_reason[0] = 0;
    ws->close_sent = 0;
    ws->eof = 0;
    int fd = wt_tcp_connect(host, port, timeout_ms);
    if (fd < 0)
        return fd;
    wt_tls_t *tls = NULL;
    if (ws->tls_config != NULL) {
        char why[256];
        int trc = wt_tls_connect(fd, ws->tls_config, wt_ms_left(deadline), &tls, why, sizeof why);
        if (trc != 0) {
            if (trc == WT_ETLS)
                fprintf(stderr, "wt_ws: TLS handshake with %s:%u failed: %s\n", host,
                        (unsigned)port, why);
            close(fd);
            return trc;
        }
    }
    uint8_t key[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next(&ws->_rng);
        memcpy(key + i, &r, 8);
    }
    char key64[32];
    base64(key, sizeof key, key64);
    wt_buf_t req = {0};
    wt_buf_printf(&req,
                  "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n%s\r\n",
                  path, host, (unsigned)port, key64, extra_headers ? extra_headers : "");
    int rc = wt_io_write_all(fd, tls, req.data, req.len, wt_ms_left(deadline));
    wt_buf_dispose(&req);
    wt_buf_t in = {0};
    if (rc == 0)
        rc = wt_http_read_response_tls(fd, tls, &in, 0, wt_ms_left(deadline), &ws->http);
    if (rc == 0 && ws->http.status != 101)
        rc = WT_EHTTP; /* a refusal: status, headers and body are in ws->http */
    if (rc == 0) {
        char accept[64], want[32];
        char cat[96];
        uint8_t dig[20];
        snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
        sha1(cat, strlen(cat), dig);
        base64(dig, sizeof dig, want);
        if (!wt_http_header(&ws->http, "Sec-WebSocket-Accept", accept, sizeof accept) ||
            strcmp(accept, want) != 0)
            rc = WT_EPROTO;
    }
    if (rc != 0) {
        wt_buf_dispose(&in);
        wt_tls_free(tls);
        close(fd);
        return rc;
    }
    ws->fd = fd;
    ws->tls = tls;
    if (in.len)
        wt_reader_feed(&ws->_rd, in.data, in.len);
    wt_buf_dispose(&in);
    return 0;
}

int wt_ws_send_raw(wt_ws_t *ws, const void *bytes, size_t len)
{
    if (ws->fd < 0)
        return WT_EIO;
    int rc = wt_io_write_all(ws->fd, ws->tls, bytes, len, 10000);
    if (rc == 0)
        ws->bytes_out += len;
    return rc;
}

int wt_ws_send_frame(wt_ws_t *ws, int opcode, const void *data, size_t len, int flags)
{
    ws->_out.len = 0;
    wt_frame_encode(&ws->_out, opcode, data, len, (uint32_t)rng_next(&ws->_rng), flags);
    if (opcode == WT_OP_CLOSE)
        ws->close_sent = 1;
    return wt_ws_send_raw(ws, ws->_out.data, ws->_out.len);
}

int wt_ws_send(wt_ws_t *ws, int opcode, const void *data, size_t len)
{
    return wt_ws_send_frame(ws, opcode, data, len, 0);
}

wt_reader_t *wt_ws_reader(wt_ws_t *ws)
{
    return &ws->_rd;
}

int wt_ws_buffered(const wt_ws_t *ws)
{
    return wt_reader_buffered(&ws->_rd) > 0 || (ws->tls != NULL && wt_tls_pending(ws->tls) > 0);
}

int wt_ws_recv(wt_ws_t *ws, int timeout_ms, wt_ws_msg_t *msg)
{
    int64_t deadline = wt_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    if (ws->close_code)
        return WT_ECLOSED;
    if (ws->eof || ws->fd < 0)
        return WT_EEOF;
    for (;;) {
        wt_event_t ev;
        int k = wt_reader_next(&ws->_rd, &ev);
        if (k < 0)
            return k;
        if (k == WT_EV_MESSAGE) {
            msg->opcode = ev.opcode;
            msg->data = ev.data;
            msg->len = ev.len;
            return 0;
        }
        if (k == WT_EV_PING) {
            ws->pings++;
            if (ws->auto_pong) {
                int rc = wt_ws_send_frame(ws, WT_OP_PONG, ev.data, ev.len, 0);
                if (rc != 0)
                    return rc;
            }
            continue;
        }
        if (k == WT_EV_PONG)
            continue;
        if (k == WT_EV_CLOSE) {
            ws->close_code = ev.close_code;
            size_t n = ev.len < sizeof ws->close_reason - 1 ? ev.len : sizeof ws->close_reason - 1;
            memcpy(ws->close_reason, ev.data, n);
            ws->close_reason[n] = 0;
            if (!ws->close_sent) {
                uint8_t echo[2] = {(uint8_t)(ev.close_code >> 8), (uint8_t)ev.close_code};
                wt_ws_send_frame(ws, WT_OP_CLOSE, echo, ev.close_code == 1005 ? 0 : 2, 0);
            }
            return WT_ECLOSED;
        }
        uint8_t *p = wt_reader_space(&ws->_rd, 65536);
        ssize_t n = wt_io_read_some(ws->fd, ws->tls, p, 65536, wt_ms_left(deadline));
        if (n == 0) {
            ws->eof = 1;
            return WT_EEOF;
        }
        if (n == WT_EIO) {
            ws->eof = 1; /* a reset ends the stream as well */
            return WT_EEOF;
        }
        if (n < 0)
            return (int)n;
        ws->bytes_in += (size_t)n;
        wt_reader_commit(&ws->_rd, (size_t)n);
    }
}

int wt_ws_close(wt_ws_t *ws, int code, const char *reason, int timeout_ms)
{
    if (ws->fd < 0)
        return WT_EIO;
    int64_t deadline = wt_now_ms() + timeout_ms;
    int rc = 0;
    if (!ws->close_sent) {
        uint8_t payload[125];
        size_t len = 0;
        if (code) {
            payload[0] = (uint8_t)(code >> 8);
            payload[1] = (uint8_t)code;
            len = 2;
            size_t rl = reason ? strlen(reason) : 0;
            if (rl > 123)
                rl = 123;
            memcpy(payload + 2, reason, rl);
            len += rl;
        }
        rc = wt_ws_send_frame(ws, WT_OP_CLOSE, payload, len, 0);
    }
    if (rc == 0) {
        for (;;) {
            wt_ws_msg_t m;
            rc = wt_ws_recv(ws, wt_ms_left(deadline), &m);
            if (rc == 0)
                continue;
            if (rc == WT_ECLOSED)
                rc = 0;
            break;
        }
    }
    wt_tls_shutdown(ws->tls);
    wt_tls_free(ws->tls);
    ws->tls = NULL;
    close(ws->fd);
    ws->fd = -1;
    return rc;
}

void wt_ws_abort(wt_ws_t *ws)
{
    wt_tls_free(ws->tls);
    ws->tls = NULL;
    if (ws->fd >= 0) {
        close(ws->fd);
        ws->fd = -1;
    }
}

void wt_ws_dispose(wt_ws_t *ws)
{
    wt_ws_abort(ws);
    wt_reader_dispose(&ws->_rd);
    wt_buf_dispose(&ws->_out);
    wt_http_resp_dispose(&ws->http);
}
