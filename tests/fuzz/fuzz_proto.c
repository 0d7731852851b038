/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proto.c: libFuzzer target for proto_decode() (protocol/proto.h). Each
 * input is decoded as one message; fuzz_proto_check() states the properties: the
 * result is 0 or a decode error; proto_peek_type() agrees with it; an accepted
 * message has its byte fields inside the input, encodes without error, decodes
 * from that encoding to the same fields, and encodes again to the same bytes.
 * A violated property aborts with its description. Build with -DFUZZ=ON (clang);
 * seed corpus in tests/fuzz/corpus/proto/. tests/protocol/test_proto.c includes
 * this file to run the same check on the corpus and on mutated messages.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True if both byte fields are nil, or both hold the same bytes. */
static int fuzz_bytes_equal(proto_bytes_t a, proto_bytes_t b)
{
    if ((a.base == NULL) != (b.base == NULL) || a.len != b.len)
        return 0;
    return a.len == 0 || memcmp(a.base, b.base, a.len) == 0;
}

/* True if `v` is nil or lies inside data[0 .. size). */
static int fuzz_bytes_inside(proto_bytes_t v, const uint8_t *data, size_t size)
{
    uintptr_t p = (uintptr_t)v.base, d = (uintptr_t)data;
    return v.base == NULL || (p >= d && v.len <= size && p - d <= size - v.len);
}

/* Applies `f` to every pair of byte fields of two messages of the same type;
 * returns 1 if it held for all. */
static int fuzz_each_bytes(const proto_msg_t *a, const proto_msg_t *b,
                           int (*f)(proto_bytes_t, proto_bytes_t, const void *), const void *ctx)
{
#define FB(field) f(a->u.field, b->u.field, ctx)
    switch (a->type) {
    case PROTO_HELLO:
        return FB(hello.name) && FB(hello.color) && FB(hello.token);
    case PROTO_SYNC1:
        return FB(sync1.sv);
    case PROTO_SYNC2:
        return FB(sync2.update);
    case PROTO_UPDATE:
        return FB(update.update);
    case PROTO_PRESENCE:
        return FB(presence.anchor) && FB(presence.head);
    case PROTO_PRESENCE_STATE:
        return FB(presence_state.name) && FB(presence_state.color) && FB(presence_state.anchor) &&
               FB(presence_state.head);
    case PROTO_ERROR:
        return FB(error.message);
    case PROTO_HISTORY:
        return FB(history.method) && FB(history.path) && FB(history.body);
    case PROTO_HISTORY_RESULT:
        return FB(history_result.body);
    default:
        return 1;
    }
#undef FB
}

static int fuzz_pair_equal(proto_bytes_t a, proto_bytes_t b, const void *ctx)
{
    (void)ctx;
    return fuzz_bytes_equal(a, b);
}

struct fuzz_span {
    const uint8_t *data;
    size_t size;
};

static int fuzz_pair_inside(proto_bytes_t a, proto_bytes_t b, const void *ctx)
{
    const struct fuzz_span *s = ctx;
    (void)b;
    return fuzz_bytes_inside(a, s->data, s->size);
}

/* True if two decoded messages carry the same type and fields. */
static int fuzz_msg_equal(const proto_msg_t *a, const proto_msg_t *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case PROTO_HELLO:
        if (a->u.hello.version != b->u.hello.version || a->u.hello.replica != b->u.hello.replica)
            return 0;
        break;
    case PROTO_WELCOME:
        if (a->u.welcome.version != b->u.welcome.version ||
            a->u.welcome.replica != b->u.welcome.replica ||
            a->u.welcome.max_message != b->u.welcome.max_message)
            return 0;
        break;
    case PROTO_UPDATE:
        if (a->u.update.seq != b->u.update.seq)
            return 0;
        break;
    case PROTO_ACK:
        if (a->u.ack.seq != b->u.ack.seq)
            return 0;
        break;
    case PROTO_PRESENCE_STATE:
        if (a->u.presence_state.replica != b->u.presence_state.replica)
            return 0;
        break;
    case PROTO_PRESENCE_LEAVE:
        if (a->u.presence_leave.replica != b->u.presence_leave.replica)
            return 0;
        break;
    case PROTO_ERROR:
        if (a->u.error.code != b->u.error.code || a->u.error.seq != b->u.error.seq)
            return 0;
        break;
    case PROTO_HISTORY:
        if (a->u.history.req != b->u.history.req)
            return 0;
        break;
    case PROTO_HISTORY_RESULT:
        if (a->u.history_result.req != b->u.history_result.req ||
            a->u.history_result.status != b->u.history_result.status)
            return 0;
        break;
    default:
        break;
    }
    return fuzz_each_bytes(a, b, fuzz_pair_equal, NULL);
}

/*
 * Decodes data[0 .. size) and checks every property above. Returns NULL if they
 * all hold, else a description of the first that does not. *rc_out (if not
 * NULL) receives proto_decode()'s result.
 */
static const char *fuzz_proto_check(const uint8_t *data, size_t size, int *rc_out)
{
    proto_msg_t m, m2;
    proto_buf_t b1 = {0}, b2 = {0};
    struct fuzz_span span = {data, size};
    const char *bad = NULL;
    int rc, peek;

    memset(&m, 0xa5, sizeof m);
    memcpy(&m2, &m, sizeof m);
    rc = proto_decode(data, size, &m);
    if (rc_out != NULL)
        *rc_out = rc;
    peek = proto_peek_type(data, size);
    if (rc != 0) {
        if (rc != PROTO_EMALFORMED && rc != PROTO_ETYPE && rc != PROTO_ELIMIT)
            return "decode returned an unexpected error";
        if (memcmp(&m, &m2, sizeof m) != 0)
            return "failed decode changed its output";
        /* Both read the same header and element 0 first: an undefined type is
         * ETYPE in decode exactly when peek sees one. */
        if ((rc == PROTO_ETYPE) !=
            (peek == PROTO_ETYPE || (peek >= 0 && !proto_type_defined((uint64_t)peek))))
            return "decode and peek disagree about an undefined type";
        return NULL;
    }
    if (peek != (int)m.type)
        return "peek type differs from decoded type";
    if (!fuzz_each_bytes(&m, &m, fuzz_pair_inside, &span))
        return "a decoded field points outside the input";
    if (proto_encode(&m, &b1) != 0) {
        bad = "encode rejected a decoded message";
        goto done;
    }
    if (proto_decode(b1.base, b1.len, &m2) != 0) {
        bad = "decode rejected an encoded message";
        goto done;
    }
    if (!fuzz_msg_equal(&m, &m2)) {
        bad = "fields changed through encode and decode";
        goto done;
    }
    if (proto_encode(&m2, &b2) != 0 || b1.len != b2.len || memcmp(b1.base, b2.base, b1.len) != 0)
        bad = "second encoding differs from the first";
done:
    proto_buf_dispose(&b1);
    proto_buf_dispose(&b2);
    return bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bad = fuzz_proto_check(data, size, NULL);
    if (bad != NULL) {
        fprintf(stderr, "fuzz_proto: %s (input of %zu bytes)\n", bad, size);
        abort();
    }
    return 0;
}
