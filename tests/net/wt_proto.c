/* SPDX-License-Identifier: MIT */
/*
 * wt_proto.c: protocol messages over the blocking WebSocket client (see
 * wt_proto.h). Each send encodes into a fresh proto_buf_t: tests send few
 * messages, and this keeps the helpers free of hidden state.
 */
#include "wt_proto.h"
#include "wt_net.h"

#include <string.h>

int wt_proto_send(wt_ws_t *ws, const proto_msg_t *msg)
{
    proto_buf_t buf = {0};
    int rc = proto_encode(msg, &buf);
    if (rc == 0)
        rc = wt_ws_send(ws, WT_OP_BINARY, buf.base, buf.len);
    proto_buf_dispose(&buf);
    return rc;
}

int wt_proto_recv(wt_ws_t *ws, int timeout_ms, proto_msg_t *msg)
{
    wt_ws_msg_t m;
    int rc = wt_ws_recv(ws, timeout_ms, &m);
    if (rc != 0)
        return rc;
    if (m.opcode != WT_OP_BINARY)
        return WT_EUNEXPECTED;
    return proto_decode(m.data, m.len, msg);
}

int wt_proto_send_hello(wt_ws_t *ws, uint64_t version, uint64_t replica, const char *name,
                        const char *color)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_HELLO;
    m.u.hello.version = version;
    m.u.hello.replica = replica;
    m.u.hello.name = (proto_bytes_t){(const uint8_t *)name, strlen(name)};
    m.u.hello.color = (proto_bytes_t){(const uint8_t *)color, strlen(color)};
    m.u.hello.token = (proto_bytes_t){NULL, 0};
    return wt_proto_send(ws, &m);
}

int wt_proto_send_update(wt_ws_t *ws, uint64_t seq, const uint8_t *update, size_t len)
{
    proto_buf_t buf = {0};
    int rc = proto_encode_update(&buf, seq, update, len);
    if (rc == 0)
        rc = wt_ws_send(ws, WT_OP_BINARY, buf.base, buf.len);
    proto_buf_dispose(&buf);
    return rc;
}

int wt_proto_send_bytes(wt_ws_t *ws, enum proto_type type, const uint8_t *data, size_t len)
{
    proto_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    proto_bytes_t b = {data ? data : (const uint8_t *)"", len};
    if (type == PROTO_SYNC1)
        m.u.sync1.sv = b;
    else if (type == PROTO_SYNC2)
        m.u.sync2.update = b;
    else
        return WT_EINVAL;
    return wt_proto_send(ws, &m);
}

char *wt_proto_str(proto_bytes_t b, char *out, size_t cap)
{
    size_t n = b.base == NULL ? 0 : b.len < cap - 1 ? b.len : cap - 1;
    if (n)
        memcpy(out, b.base, n);
    out[n] = 0;
    return out;
}
