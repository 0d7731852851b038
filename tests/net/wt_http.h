/* SPDX-License-Identifier: MIT */
/*
 * wt_http.h: a tiny blocking HTTP/1.1 client for weft's integration tests
 * (/healthz, /api/docs/<doc>, /metrics) and the response reader the WebSocket
 * handshake (wt_ws.c) shares. One request per connection (Connection: close);
 * bodies by Content-Length, chunked, or up to end of stream. Plain or over TLS
 * (wt_tls.h). No global state.
 */
#ifndef WEFT_WT_HTTP_H
#define WEFT_WT_HTTP_H

#include "wt_buf.h"
#include "wt_tls.h"

#include <stddef.h>
#include <stdint.h>

/* A response. `headers` holds the raw header lines ("Name: value\r\n" each);
 * `body` is NUL-terminated (the NUL is not counted). */
typedef struct {
    int status;
    wt_buf_t headers;
    wt_buf_t body;
} wt_http_resp_t;

/*
 * Sends `method` `path` to host:port with optional `extra_headers` (complete
 * "Name: value\r\n" lines, or NULL) and `body` (may be NULL), and reads the whole
 * response within `timeout_ms`. Returns 0 with *resp filled (any status), or
 * WT_ECONNECT / WT_ETIMEOUT / WT_EIO / WT_EPROTO. The caller disposes of *resp
 * (also after an error: it is then empty).
 */
int wt_http_request(const char *host, uint16_t port, const char *method, const char *path,
                    const char *extra_headers, const void *body, size_t body_len, int timeout_ms,
                    wt_http_resp_t *resp);

/*
 * As wt_http_request(), over TLS configured by `tls_config` (NULL: plain TCP).
 * A failed handshake returns WT_ETLS (its reason is printed on stderr).
 */
int wt_http_request_tls(const wt_tls_config_t *tls_config, const char *host, uint16_t port,
                        const char *method, const char *path, const char *extra_headers,
                        const void *body, size_t body_len, int timeout_ms, wt_http_resp_t *resp);

/* GET shorthand. */
int wt_http_get(const char *host, uint16_t port, const char *path, int timeout_ms,
                wt_http_resp_t *resp);

/*
 * Reads a response from `fd`: bytes already received are in `in` (consumed as
 * parsed; bytes after the response stay there). With `head_only` the body is not
 * read (a 101 Switching Protocols has none). Same returns as wt_http_request().
 */
int wt_http_read_response(int fd, wt_buf_t *in, int head_only, int timeout_ms,
                          wt_http_resp_t *resp);

/* As wt_http_read_response(), reading through the TLS session `tls` (NULL: plain). */
int wt_http_read_response_tls(int fd, wt_tls_t *tls, wt_buf_t *in, int head_only, int timeout_ms,
                              wt_http_resp_t *resp);

/*
 * Copies the value of header `name` (case-insensitive, first match, surrounding
 * spaces trimmed) into `out` (`cap` bytes, NUL-terminated, truncated). Returns 1
 * when found, 0 otherwise.
 */
int wt_http_header(const wt_http_resp_t *resp, const char *name, char *out, size_t cap);

/* Frees a response and zeroes it. */
void wt_http_resp_dispose(wt_http_resp_t *resp);

#endif /* WEFT_WT_HTTP_H */
