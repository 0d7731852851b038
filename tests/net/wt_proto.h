/* SPDX-License-Identifier: MIT */
/*
 * wt_proto.h: weft protocol messages (protocol/proto.h) over a wt_ws_t client:
 * encode and send one message as a binary frame, receive and decode the next
 * one. Used by the editor helper (wt_editor.h) and by tests that speak the
 * protocol by hand. No global state.
 */
#ifndef WEFT_WT_PROTO_H
#define WEFT_WT_PROTO_H

#include "proto.h"
#include "wt_ws.h"

/* Encodes *msg and sends it as one binary message. Returns 0, a PROTO_E* code
 * (the message breaks a rule of the codec), or a wt_ws_send() error. */
int wt_proto_send(wt_ws_t *ws, const proto_msg_t *msg);

/*
 * Receives the next message within `timeout_ms` and decodes it into *msg, whose
 * byte fields are borrowed from the client until its next wt_ws_ call. Returns
 * 0; a wt_ws_recv() error (WT_ETIMEOUT, WT_ECLOSED, WT_EEOF, ...); WT_EUNEXPECTED
 * for a text frame; or the PROTO_E* code of bytes the codec rejects.
 */
int wt_proto_recv(wt_ws_t *ws, int timeout_ms, proto_msg_t *msg);

/* Sends HELLO with the given fields (token nil). */
int wt_proto_send_hello(wt_ws_t *ws, uint64_t version, uint64_t replica, const char *name,
                        const char *color);

/* Sends UPDATE(seq, update bytes). */
int wt_proto_send_update(wt_ws_t *ws, uint64_t seq, const uint8_t *update, size_t len);

/* Sends a one-byte-field message of type SYNC1 or SYNC2 holding `len` bytes. */
int wt_proto_send_bytes(wt_ws_t *ws, enum proto_type type, const uint8_t *data, size_t len);

/* Copies a str field into out[cap] as a C string (truncated). Returns out. */
char *wt_proto_str(proto_bytes_t b, char *out, size_t cap);

#endif /* WEFT_WT_PROTO_H */
