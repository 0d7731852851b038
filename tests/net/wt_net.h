/* SPDX-License-Identifier: MIT */
/*
 * wt_net.h: the bottom of weft's network test helpers (tests/net): error codes
 * shared by every wt_ function, monotonic clocks, and TCP connections with
 * timeouts. Sockets made here are non-blocking; reads and writes wait with poll()
 * so every call honours its timeout. No global state.
 */
#ifndef WEFT_WT_NET_H
#define WEFT_WT_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Error codes of the wt_ helpers, -1000 .. -1099. Functions that also call the
 * CRDT engine or the protocol codec pass their codes (-1..-99, -100..) through.
 */
#define WT_ERRNO_MAP(X)                                                                            \
    X(ETIMEOUT, -1000, "timed out")                                                                \
    X(EIO, -1001, "socket error")                                                                  \
    X(ECONNECT, -1002, "cannot connect")                                                           \
    X(EEOF, -1003, "connection ended without a close frame")                                       \
    X(ECLOSED, -1004, "connection closed by a close frame")                                        \
    X(EHTTP, -1005, "server refused the request (HTTP status)")                                    \
    X(EPROTO, -1006, "peer broke the WebSocket or HTTP protocol")                                  \
    X(ETOOBIG, -1007, "message larger than the limit")                                             \
    X(EINVAL, -1008, "invalid argument")                                                           \
    X(ESPAWN, -1009, "cannot start or talk to weftd")                                              \
    X(EUNEXPECTED, -1010, "unexpected message")                                                    \
    X(ESERVER, -1011, "server sent an ERROR message")                                              \
    X(ETLS, -1012, "TLS handshake failed")

enum wt_errno {
#define WT__ERRNO_ENUM(name, value, text) WT_##name = value,
    WT_ERRNO_MAP(WT__ERRNO_ENUM)
#undef WT__ERRNO_ENUM
};

/* A static description of a wt_, crdt or proto error code (never NULL). */
const char *wt_strerror(int err);

/* Monotonic clock in milliseconds and microseconds. */
int64_t wt_now_ms(void);
int64_t wt_now_us(void);

/*
 * Connects to host:port (numeric address or name) within `timeout_ms`.
 * Returns a non-blocking socket (TCP_NODELAY set), or WT_ECONNECT / WT_ETIMEOUT.
 */
int wt_tcp_connect(const char *host, uint16_t port, int timeout_ms);

/*
 * Writes all `len` bytes, waiting up to `timeout_ms` in total (negative: no limit).
 * Returns 0, WT_ETIMEOUT (part may have been written) or WT_EIO (also EPIPE).
 */
int wt_write_all(int fd, const void *data, size_t len, int timeout_ms);

/*
 * Reads what is available (at most `cap` bytes), waiting up to `timeout_ms` for
 * something to arrive (0: do not wait). Returns the byte count (> 0), 0 at end of
 * stream, WT_ETIMEOUT or WT_EIO (also a connection reset).
 */
ssize_t wt_read_some(int fd, void *buf, size_t cap, int timeout_ms);

/* Milliseconds left until `deadline_ms` (wt_now_ms() based), at least 0. */
int wt_ms_left(int64_t deadline_ms);

#endif /* WEFT_WT_NET_H */
