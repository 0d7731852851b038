/* SPDX-License-Identifier: MIT */
/*
 * wt_http.c: the blocking HTTP/1.1 client of tests/net (see wt_http.h). The
 * response reader is shared with the WebSocket handshake, which is why it takes a
 * buffer of bytes already received and leaves what follows the response in it.
 */
#define _GNU_SOURCE
#include "wt_http.h"
#include "wt_net.h"
#include "wt_tls.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Reads more bytes into `in`; 0 on data, 1 at end of stream, or an error. */
static int fill(int fd, wt_tls_t *tls, wt_buf_t *in, int64_t deadline)
{
    uint8_t *p = wt_buf_reserve(in, 16384);
    ssize_t n = wt_io_read_some(fd, tls, p, 16384, wt_ms_left(deadline));
    if (n < 0)
        return (int)n;
    if (n == 0)
        return 1;
    in->len += (size_t)n;
    in->data[in->len] = 0;
    return 0;
}

/* Index just past the first "\r\n" at or after `from`, or 0 when there is none yet. */
static size_t line_end(const wt_buf_t *in, size_t from)
{
    for (size_t i = from; i + 1 < in->len; i++)
        if (in->data[i] == '\r' && in->data[i + 1] == '\n')
            return i + 2;
    return 0;
}

int wt_http_header(const wt_http_resp_t *resp, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = (const char *)resp->headers.data;
    if (p == NULL)
        return 0;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        if (eol == NULL)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (cap) {
                size_t n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
                memcpy(out, v, n);
                out[n] = 0;
            }
            return 1;
        }
        p = *eol ? eol + 2 : eol;
    }
    return 0;
}

static int read_chunked(int fd, wt_tls_t *tls, wt_buf_t *in, int64_t deadline, wt_buf_t *body)
{
    for (;;) {
        size_t e;
        while ((e = line_end(in, 0)) == 0) {
            int rc = fill(fd, tls, in, deadline);
            if (rc != 0)
                return rc == 1 ? WT_EPROTO : rc;
        }
        char *endp;
        unsigned long long size = strtoull((const char *)in->data, &endp, 16);
        if (endp == (char *)in->data)
            return WT_EPROTO;
        wt_buf_consume(in, e);
        if (size == 0) {
            /* Trailers, up to an empty line. */
            for (;;) {
                while ((e = line_end(in, 0)) == 0) {
                    int rc = fill(fd, tls, in, deadline);
                    if (rc != 0)
                        return rc == 1 ? 0 : rc;
                }
                wt_buf_consume(in, e);
                if (e == 2)
                    return 0;
            }
        }
        while (in->len < size + 2) {
            int rc = fill(fd, tls, in, deadline);
            if (rc != 0)
                return rc == 1 ? WT_EPROTO : rc;
        }
        wt_buf_append(body, in->data, (size_t)size);
        wt_buf_consume(in, (size_t)size + 2);
    }
}

static int read_response(int fd, wt_tls_t *tls, wt_buf_t *in, int head_only, int timeout_ms,
                         wt_http_resp_t *resp)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    memset(resp, 0, sizeof *resp);
    /* Head: up to the empty line. */
    size_t head_end = 0;
    for (;;) {
        const uint8_t *d = in->data;
        for (size_t i = 0; d && i + 3 < in->len; i++) {
            if (d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' && d[i + 3] == '\n') {
                head_end = i + 4;
                break;
            }
        }
        if (head_end)
            break;
        if (in->len > 65536)
            return WT_EPROTO;
        int rc = fill(fd, tls, in, deadline);
        if (rc != 0)
            return rc == 1 ? WT_EPROTO : rc;
    }
    const char *s = (const char *)in->data;
    if (strncmp(s, "HTTP/1.", 7) != 0 || head_end < 12 || !isdigit((unsigned char)s[9]))
        return WT_EPROTO;
    resp->status = atoi(s + 9);
    size_t first = line_end(in, 0);
    wt_buf_append(&resp->headers, in->data + first, head_end - 2 - first);
    wt_buf_consume(in, head_end);
    if (head_only || resp->status == 101 || resp->status == 204 || resp->status == 304 ||
        resp->status / 100 == 1)
        return 0;
    char v[64];
    if (wt_http_header(resp, "Transfer-Encoding", v, sizeof v) && strcasestr(v, "chunked"))
        return read_chunked(fd, tls, in, deadline, &resp->body);
    if (wt_http_header(resp, "Content-Length", v, sizeof v)) {
        size_t want = (size_t)strtoull(v, NULL, 10);
        while (in->len < want) {
            int rc = fill(fd, tls, in, deadline);
            if (rc != 0)
                return rc == 1 ? WT_EPROTO : rc;
        }
        wt_buf_append(&resp->body, in->data, want);
        wt_buf_consume(in, want);
        return 0;
    }
    for (;;) {
        int rc = fill(fd, tls, in, deadline);
        if (rc == 1)
            break;
        if (rc != 0)
            return rc;
    }
    wt_buf_append(&resp->body, in->data, in->len);
    wt_buf_consume(in, in->len);
    return 0;
}

int wt_http_read_response(int fd, wt_buf_t *in, int head_only, int timeout_ms, wt_http_resp_t *resp)
{
    return wt_http_read_response_tls(fd, NULL, in, head_only, timeout_ms, resp);
}

int wt_http_read_response_tls(int fd, wt_tls_t *tls, wt_buf_t *in, int head_only, int timeout_ms,
                              wt_http_resp_t *resp)
{
    int rc = read_response(fd, tls, in, head_only, timeout_ms, resp);
    /* Callers may use the body and headers as C strings, even when empty. */
    wt_buf_append(&resp->headers, "", 0);
    wt_buf_append(&resp->body, "", 0);
    return rc;
}

int wt_http_request(const char *host, uint16_t port, const char *method, const char *path,
                    const char *extra_headers, const void *body, size_t body_len, int timeout_ms,
                    wt_http_resp_t *resp)
{
    return wt_http_request_tls(NULL, host, port, method, path, extra_headers, body, body_len,
                               timeout_ms, resp);
}

int wt_http_request_tls(const wt_tls_config_t *tls_config, const char *host, uint16_t port,
                        const char *method, const char *path, const char *extra_headers,
                        const void *body, size_t body_len, int timeout_ms, wt_http_resp_t *resp)
{
    memset(resp, 0, sizeof *resp);
    int64_t deadline = wt_now_ms() + timeout_ms;
    int fd = wt_tcp_connect(host, port, timeout_ms);
    if (fd < 0)
        return fd;
    wt_tls_t *tls = NULL;
    if (tls_config != NULL) {
        char why[256];
        int trc = wt_tls_connect(fd, tls_config, wt_ms_left(deadline), &tls, why, sizeof why);
        if (trc != 0) {
            if (trc == WT_ETLS)
                fprintf(stderr, "wt_http: TLS handshake with %s:%u failed: %s\n", host,
                        (unsigned)port, why);
            close(fd);
            return trc;
        }
    }
    wt_buf_t req = {0};
    wt_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n", method, path,
                  host, (unsigned)port);
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        wt_buf_printf(&req, "Content-Length: %zu\r\n", body_len);
    if (extra_headers)
        wt_buf_printf(&req, "%s", extra_headers);
    wt_buf_printf(&req, "\r\n");
    if (body_len)
        wt_buf_append(&req, body, body_len);
    int rc = wt_io_write_all(fd, tls, req.data, req.len, wt_ms_left(deadline));
    wt_buf_dispose(&req);
    wt_buf_t in = {0};
    if (rc == 0)
        rc = wt_http_read_response_tls(fd, tls, &in, strcmp(method, "HEAD") == 0,
                                       wt_ms_left(deadline), resp);
    wt_buf_dispose(&in);
    wt_tls_free(tls);
    close(fd);
    if (rc != 0)
        wt_http_resp_dispose(resp);
    return rc;
}

int wt_http_get(const char *host, uint16_t port, const char *path, int timeout_ms,
                wt_http_resp_t *resp)
{
    return wt_http_request(host, port, "GET", path, NULL, NULL, 0, timeout_ms, resp);
}

void wt_http_resp_dispose(wt_http_resp_t *resp)
{
    wt_buf_dispose(&resp->headers);
    wt_buf_dispose(&resp->body);
    resp->status = 0;
}
