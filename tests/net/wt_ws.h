/* SPDX-License-Identifier: MIT */
/*
 * wt_ws.h: a blocking RFC 6455 WebSocket client over TCP for weft's integration
 * tests: the HTTP/1.1 upgrade (the refused response is kept for tests of HTTP
 * errors), masked frames of any opcode and raw bytes (for conformance tests),
 * whole messages received with a timeout, pings answered automatically unless
 * switched off (to play a dead peer), close frames and end of stream reported
 * apart, clean close and abrupt drop. Masks and handshake keys come from a
 * seeded splitmix64, so a run repeats exactly. One thread per client; no
 * global state. Over TLS (wss://) when tls_config is set before connecting.
 */
#ifndef WEFT_WT_WS_H
#define WEFT_WT_WS_H

#include "wt_buf.h"
#include "wt_frame.h"
#include "wt_http.h"
#include "wt_tls.h"

#include "../support/test_rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;                 /* -1 when not connected */
    int auto_pong;          /* 1 (default): answer pings; 0: ignore them (a dead peer) */
    wt_http_resp_t http;    /* the upgrade response (status, headers, body) */
    int close_code;         /* code of the close frame received (1005: none), 0 if none */
    char close_reason[128]; /* its reason, NUL-terminated */
    int close_sent;         /* 1 once this side sent a close frame */
    int eof;                /* 1 once the stream ended */
    uint64_t pings;         /* pings received */
    uint64_t bytes_in, bytes_out;
    const wt_tls_config_t *tls_config; /* NULL (default): plain ws://; else wss:// with it
                                          (borrowed; set after wt_ws_init, kept by reconnects) */
    wt_tls_t *tls;                     /* the TLS session while connected over TLS, else NULL */
    wt_reader_t _rd;
    rng_t _rng;
    wt_buf_t _out;
} wt_ws_t;

/* A received message, borrowed from the client until its next wt_ws_ call. */
typedef struct {
    int opcode; /* WT_OP_TEXT or WT_OP_BINARY */
    const uint8_t *data;
    size_t len;
} wt_ws_msg_t;

/* Prepares a client (not connected); `seed` drives masks and keys. */
void wt_ws_init(wt_ws_t *ws, uint64_t seed);

/*
 * Connects and upgrades `path` (for example "/ws/doc") on host:port.
 * `extra_headers` are complete "Name: value\r\n" lines or NULL. Returns 0 when
 * upgraded (101 with a correct Sec-WebSocket-Accept); WT_EHTTP when the server
 * answered another status (ws->http holds it; the socket is closed); WT_EPROTO,
 * WT_ECONNECT, WT_ETIMEOUT, WT_EIO; WT_ETLS when ws->tls_config is set and the
 * handshake failed (the reason is printed on stderr).
 */
int wt_ws_connect(wt_ws_t *ws, const char *host, uint16_t port, const char *path,
                  const char *extra_headers, int timeout_ms);

/* Sends one whole message (a single masked frame with FIN). Returns 0 or WT_EIO/WT_ETIMEOUT. */
int wt_ws_send(wt_ws_t *ws, int opcode, const void *data, size_t len);

/* Sends one frame with wt_frame_encode() `flags` (fragments, unmasked, RSV1). */
int wt_ws_send_frame(wt_ws_t *ws, int opcode, const void *data, size_t len, int flags);

/* Sends raw bytes as they are (broken frames, partial frames). */
int wt_ws_send_raw(wt_ws_t *ws, const void *bytes, size_t len);

/*
 * Receives the next whole data message within `timeout_ms`, answering pings on
 * the way (if auto_pong). Returns 0 and fills *msg; WT_ETIMEOUT; WT_ECLOSED when
 * a close frame arrived (ws->close_code, ws->close_reason; the close is echoed);
 * WT_EEOF when the stream ended without one; WT_EIO; WT_EPROTO or WT_ETOOBIG
 * when the server broke the framing.
 */
int wt_ws_recv(wt_ws_t *ws, int timeout_ms, wt_ws_msg_t *msg);

/* The client's frame reader, for callers that take over a plain (not TLS)
 * socket after the upgrade (the load generator reads with epoll and feeds it;
 * bytes that arrived with the handshake response are already in it). */
wt_reader_t *wt_ws_reader(wt_ws_t *ws);

/* 1 when received bytes wait in the client's buffer or its TLS session (poll()
 * would not show them). */
int wt_ws_buffered(const wt_ws_t *ws);

/*
 * Clean close: sends a close frame with `code` (0: no code) and `reason`, reads
 * until the server's close frame or end of stream (discarding messages), then
 * closes the socket. Returns 0 when the server answered with a close frame,
 * WT_EEOF when it just ended the stream, WT_ETIMEOUT, WT_EIO.
 */
int wt_ws_close(wt_ws_t *ws, int code, const char *reason, int timeout_ms);

/* Abrupt drop: closes the socket without a close frame (the server sees EOF). */
void wt_ws_abort(wt_ws_t *ws);

/* Drops the connection if open and frees everything. */
void wt_ws_dispose(wt_ws_t *ws);

#endif /* WEFT_WT_WS_H */
