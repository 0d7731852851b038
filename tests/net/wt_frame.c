/* SPDX-License-Identifier: MIT */
/*
 * wt_frame.c: WebSocket frame encoder and incremental reader (see wt_frame.h).
 * The reader keeps unparsed input in one buffer and compacts it lazily, so a
 * burst of small frames costs one memmove per read rather than one per frame.
 */
#include "wt_frame.h"
#include "wt_net.h"

#include <string.h>

void wt_frame_encode(wt_buf_t *out, int opcode, const void *payload, size_t len, uint32_t mask,
                     int flags)
{
    uint8_t *h = wt_buf_reserve(out, WT_FRAME_HEADER_MAX + len);
    size_t n = 0;
    int masked = !(flags & WT_FRAME_UNMASKED);
    h[n++] = (uint8_t)((flags & WT_FRAME_NOFIN ? 0 : 0x80) | (flags & WT_FRAME_RSV1 ? 0x40 : 0) |
                       (opcode & 0x0f));
    uint8_t mbit = masked ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        h[n++] = mbit | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t m[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                    (uint8_t)mask};
    if (masked) {
        memcpy(h + n, m, 4);
        n += 4;
    }
    const uint8_t *src = payload;
    uint8_t *dst = h + n;
    if (masked) {
        for (size_t i = 0; i < len; i++)
            dst[i] = src[i] ^ m[i & 3];
    } else if (len) {
        memcpy(dst, src, len);
    }
    out->len += n + len;
    out->data[out->len] = 0;
}

uint8_t *wt_reader_space(wt_reader_t *r, size_t want)
{
    if (r->_pos > 0 && (r->_pos == r->_in.len || r->_pos >= r->_in.cap / 2)) {
        wt_buf_consume(&r->_in, r->_pos);
        r->_pos = 0;
    }
    return wt_buf_reserve(&r->_in, want);
}

void wt_reader_commit(wt_reader_t *r, size_t n)
{
    r->_in.len += n;
    r->_in.data[r->_in.len] = 0;
}

void wt_reader_feed(wt_reader_t *r, const void *data, size_t len)
{
    uint8_t *p = wt_reader_space(r, len);
    memcpy(p, data, len);
    wt_reader_commit(r, len);
}

size_t wt_reader_buffered(const wt_reader_t *r)
{
    return r->_in.len - r->_pos;
}

int wt_reader_next(wt_reader_t *r, wt_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    for (;;) {
        const uint8_t *p = r->_in.data + r->_pos;
        size_t avail = r->_in.len - r->_pos;
        if (avail < 2)
            return WT_EV_NONE;
        int fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        if (p[0] & 0x70)
            return WT_EPROTO;
        if (p[1] & 0x80)
            return WT_EPROTO; /* servers never mask */
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                return WT_EV_NONE;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return WT_EV_NONE;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            if (len >> 63)
                return WT_EPROTO;
            hl = 10;
        }
        int control = op >= 0x8;
        if (control && (len > 125 || !fin))
            return WT_EPROTO;
        if (op != WT_OP_CONT && op != WT_OP_TEXT && op != WT_OP_BINARY && op != WT_OP_CLOSE &&
            op != WT_OP_PING && op != WT_OP_PONG)
            return WT_EPROTO;
        if (r->max_message && !control && (r->_msg_op ? r->_msg.len : 0) + len > r->max_message)
            return WT_ETOOBIG;
        if (avail - hl < len)
            return WT_EV_NONE;
        const uint8_t *payload = p + hl;
        r->_pos += hl + (size_t)len;
        if (control) {
            ev->opcode = op;
            if (op == WT_OP_PING) {
                ev->kind = WT_EV_PING;
            } else if (op == WT_OP_PONG) {
                ev->kind = WT_EV_PONG;
            } else {
                ev->kind = WT_EV_CLOSE;
                if (len == 1)
                    return WT_EPROTO;
                ev->close_code = len >= 2 ? (payload[0] << 8) | payload[1] : 1005;
                if (len >= 2) {
                    payload += 2;
                    len -= 2;
                }
            }
            ev->data = payload;
            ev->len = (size_t)len;
            return ev->kind;
        }
        if (op == WT_OP_CONT) {
            if (r->_msg_op == 0)
                return WT_EPROTO;
        } else {
            if (r->_msg_op != 0)
                return WT_EPROTO;
            if (fin) {
                /* The common case: a whole message in one frame, returned in place. */
                ev->kind = WT_EV_MESSAGE;
                ev->opcode = op;
                ev->data = payload;
                ev->len = (size_t)len;
                return ev->kind;
            }
            r->_msg_op = op;
            r->_msg.len = 0;
        }
        wt_buf_append(&r->_msg, payload, (size_t)len);
        if (fin) {
            ev->kind = WT_EV_MESSAGE;
            ev->opcode = r->_msg_op;
            ev->data = r->_msg.data;
            ev->len = r->_msg.len;
            r->_msg_op = 0;
            return ev->kind;
        }
    }
}

void wt_reader_dispose(wt_reader_t *r)
{
    wt_buf_dispose(&r->_in);
    wt_buf_dispose(&r->_msg);
    r->_pos = 0;
    r->_msg_op = 0;
}
