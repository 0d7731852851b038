/* SPDX-License-Identifier: MIT */
/*
 * ws_frame.h: the byte level of weftd's RFC 6455 framing (server/ws.c),
 * without a socket, so that it can be fuzzed (tests/fuzz/fuzz_ws.c).
 *
 * srv__wsf_next() looks at the bytes the peer sent that are not consumed yet
 * (in[0 .. avail)) and reports the first frame there as one event:
 *
 *   SRV_WSF_MORE      the frame is incomplete: wait for more bytes
 *                     (nothing consumed; a header error is reported as soon
 *                     as the header is there, before its payload)
 *   SRV_WSF_FRAGMENT  a non-final data fragment, gathered in the parser
 *   SRV_WSF_MESSAGE   a whole data message (opcode TEXT, valid UTF-8, or
 *                     BINARY) of at most max_message bytes
 *   SRV_WSF_CONTROL   a ping, pong or close frame (payload at most 125 bytes);
 *                     close: code is its status code (0: none), the code and
 *                     the reason were checked, and the parser is done
 *   SRV_WSF_ERROR     a protocol error; code is the close code to answer with
 *                     (1002 framing, 1007 UTF-8, 1009 too big); the parser is
 *                     done
 *
 * ev->consumed is the frame's size (0 with MORE and ERROR, which set nothing
 * but the code): the caller drops that many bytes from the front of its input
 * after handling the event. A frame's payload is unmasked
 * in place in `in` (so it must not be parsed twice); ev->data points there or,
 * for a message gathered from fragments, into the parser (valid until the
 * next call). Once done (close or error) every call returns SRV_WSF_MORE
 * and consumes nothing: nothing more is delivered.
 * Fragments may be interleaved with control frames; data frames must be
 * masked, RSV bits and unknown opcodes are errors, as is a length with its
 * top bit set.
 */
#ifndef WEFT_SRV_WS_FRAME_H
#define WEFT_SRV_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Opcodes (RFC 6455 section 5.2). */
enum {
    SRV_WS_OP_CONT = 0x0,
    SRV_WS_OP_TEXT = 0x1,
    SRV_WS_OP_BINARY = 0x2,
    SRV_WS_OP_CLOSE = 0x8,
    SRV_WS_OP_PING = 0x9,
    SRV_WS_OP_PONG = 0xa
};

typedef enum {
    SRV_WSF_MORE,
    SRV_WSF_FRAGMENT,
    SRV_WSF_MESSAGE,
    SRV_WSF_CONTROL,
    SRV_WSF_ERROR
} srv_wsf_kind_t;

typedef struct {
    proto_buf_t msg;    /* a fragmented message being gathered (or just delivered) */
    uint8_t msg_opcode; /* opcode of the message being gathered, 0 when none */
    uint8_t done;       /* a close frame or a protocol error was reported */
} srv_wsf_parser_t;

typedef struct {
    unsigned opcode;     /* MESSAGE, CONTROL */
    const uint8_t *data; /* MESSAGE, CONTROL: the payload (unmasked) */
    size_t len;
    uint16_t code;   /* CONTROL close: status (0: none); ERROR: close code */
    size_t consumed; /* bytes of the input taken by the frame */
} srv_wsf_event_t;

/* A parser starts zeroed. */
srv_wsf_kind_t srv__wsf_next(srv_wsf_parser_t *p, uint8_t *in, size_t avail, size_t max_message,
                             srv_wsf_event_t *ev);
/* Frees what the parser holds (it may be used again only after zeroing). */
void srv__wsf_dispose(srv_wsf_parser_t *p);

#endif
