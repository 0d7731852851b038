/* SPDX-License-Identifier: MIT */
/*
 * wt_frame.h: RFC 6455 WebSocket frames for weft's test clients and the load
 * generator: an encoder (client frames are masked, any opcode, any flags, so
 * conformance tests can also build broken frames) and an incremental reader that
 * takes bytes as they arrive from a blocking or non-blocking socket and yields
 * whole messages (fragments reassembled), pings, pongs and close frames.
 * Nothing here does I/O. No global state.
 */
#ifndef WEFT_WT_FRAME_H
#define WEFT_WT_FRAME_H

#include "wt_buf.h"

#include <stddef.h>
#include <stdint.h>

enum {
    WT_OP_CONT = 0x0,
    WT_OP_TEXT = 0x1,
    WT_OP_BINARY = 0x2,
    WT_OP_CLOSE = 0x8,
    WT_OP_PING = 0x9,
    WT_OP_PONG = 0xA,
};

/* Flags of wt_frame_encode(). */
enum {
    WT_FRAME_NOFIN = 1,    /* clear FIN: a fragment that more frames continue */
    WT_FRAME_UNMASKED = 2, /* send without a mask (forbidden for clients: for tests) */
    WT_FRAME_RSV1 = 4,     /* set the RSV1 bit (no extension is negotiated: for tests) */
};

/* Largest frame header: 2 + 8 (length) + 4 (mask). */
#define WT_FRAME_HEADER_MAX 14

/*
 * Appends one frame to `out`: FIN unless WT_FRAME_NOFIN, the 4-bit `opcode` as
 * given (even a reserved one), the payload masked with `mask` unless
 * WT_FRAME_UNMASKED. `payload` may be NULL when `len` is 0.
 */
void wt_frame_encode(wt_buf_t *out, int opcode, const void *payload, size_t len, uint32_t mask,
                     int flags);

/* What wt_reader_next() found. */
typedef enum {
    WT_EV_NONE = 0,    /* more bytes are needed */
    WT_EV_MESSAGE = 1, /* a whole text or binary message: opcode, data, len */
    WT_EV_PING = 2,    /* data/len: the ping payload (answer with a pong of it) */
    WT_EV_PONG = 3,
    WT_EV_CLOSE = 4, /* close_code (1005 if the frame had none), data/len: the reason */
} wt_event_kind_t;

typedef struct {
    wt_event_kind_t kind;
    int opcode;
    const uint8_t *data; /* borrowed: valid until the next wt_reader_ call */
    size_t len;
    int close_code;
} wt_event_t;

/*
 * Incremental reader of server frames. Feed bytes with wt_reader_space() +
 * wt_reader_commit() (read straight into it) or wt_reader_feed(), then call
 * wt_reader_next() until it returns WT_EV_NONE. A zeroed struct with
 * `max_message` set (0: no limit) is a ready reader.
 */
typedef struct {
    uint64_t max_message;
    wt_buf_t _in; /* received bytes not yet parsed, from _pos */
    size_t _pos;
    wt_buf_t _msg; /* fragments of the message being reassembled */
    int _msg_op;   /* opcode of that message, 0 when none is in progress */
} wt_reader_t;

/* Returns room for at least `want` bytes to read into; then wt_reader_commit(n). */
uint8_t *wt_reader_space(wt_reader_t *r, size_t want);
void wt_reader_commit(wt_reader_t *r, size_t n);
void wt_reader_feed(wt_reader_t *r, const void *data, size_t len);

/* Bytes received but not yet returned as events. */
size_t wt_reader_buffered(const wt_reader_t *r);

/*
 * Parses the next event. Returns its kind (WT_EV_NONE when more bytes are
 * needed), WT_EPROTO for a frame no server may send (masked, reserved bits or
 * opcode, fragmented or long control frame, continuation without a start, new
 * message inside a fragmented one, bad close payload) or WT_ETOOBIG past
 * max_message. After an error the reader must not be used again.
 */
int wt_reader_next(wt_reader_t *r, wt_event_t *ev);

/* Frees the reader's buffers. */
void wt_reader_dispose(wt_reader_t *r);

#endif /* WEFT_WT_FRAME_H */
