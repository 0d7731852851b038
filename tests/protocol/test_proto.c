/* SPDX-License-Identifier: MIT */
/*
 * test_proto.c: tests of the wire codec (protocol/proto.c): round trips of every
 * message type, the example bytes of docs/protocol.md, every class of bad input
 * (truncations, trailing bytes, nested containers, huge declared counts, invalid
 * UTF-8, over-limit fields, wrong and negative types, floats, unknown and reserved
 * types), the history messages 16 and 17, encoder validation, a randomized mutation test (fixed
 * seeds, printed on failure) and a replay of the seed corpus tests/fuzz/corpus/proto/. The
 * properties of an accepted input are those of the fuzz target, whose check this
 * file includes (tests/fuzz/fuzz_proto.c).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "proto.h"
#include "test_rng.h"

#include "../fuzz/fuzz_proto.c"

#ifndef WEFT_CORPUS_DIR
#error "WEFT_CORPUS_DIR must name the directory of the fuzz corpora"
#endif

/* Bytes of a literal: BYTES(0x92, 0x06, 0x07) expands to pointer, length. */
#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

/* ---- a small msgpack writer for hand-made inputs ------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} wbuf_t;

static void w_raw(wbuf_t *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    if (n > 0)
        memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_byte(wbuf_t *w, uint8_t v)
{
    w_raw(w, &v, 1);
}

static void w_be(wbuf_t *w, uint64_t v, unsigned width)
{
    for (unsigned i = width; i-- > 0;)
        w_byte(w, (uint8_t)(v >> (8 * i)));
}

/* An unsigned integer in the shortest form. */
static void w_uint(wbuf_t *w, uint64_t v)
{
    if (v < 0x80)
        w_byte(w, (uint8_t)v);
    else if (v <= 0xff)
        w_byte(w, 0xcc), w_be(w, v, 1);
    else if (v <= 0xffff)
        w_byte(w, 0xcd), w_be(w, v, 2);
    else if (v <= 0xffffffff)
        w_byte(w, 0xce), w_be(w, v, 4);
    else
        w_byte(w, 0xcf), w_be(w, v, 8);
}

static void w_str(wbuf_t *w, const void *s, size_t n)
{
    if (n < 32)
        w_byte(w, (uint8_t)(0xa0 | n));
    else if (n <= 0xff)
        w_byte(w, 0xd9), w_be(w, n, 1);
    else if (n <= 0xffff)
        w_byte(w, 0xda), w_be(w, n, 2);
    else
        w_byte(w, 0xdb), w_be(w, n, 4);
    w_raw(w, s, n);
}

static void w_bin(wbuf_t *w, const void *s, size_t n)
{
    if (n <= 0xff)
        w_byte(w, 0xc4), w_be(w, n, 1);
    else if (n <= 0xffff)
        w_byte(w, 0xc5), w_be(w, n, 2);
    else
        w_byte(w, 0xc6), w_be(w, n, 4);
    w_raw(w, s, n);
}

static void w_array(wbuf_t *w, unsigned n)
{
    w_byte(w, (uint8_t)(0x90 | n));
}

static void w_free(wbuf_t *w)
{
    free(w->b);
    memset(w, 0, sizeof *w);
}

/* Decodes a copy of the bytes in a heap block of exactly that size (so the
 * sanitizers see any read past the end) and returns the result. */
static int dec(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    proto_msg_t m;
    int rc;

    assert_non_null(copy);
    if (n > 0)
        memcpy(copy, p, n);
    rc = proto_decode(copy, n, &m);
    free(copy);
    return rc;
}

/* ---- sample messages ----------------------------------------------------- */

static const uint8_t relpos_a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t relpos_max[PROTO_MAX_RELPOS] = {0xff, 0, 0x80};
static const uint8_t sv_bytes[] = {2, 0x2a, 5, 0x81, 0x01, 3};
static uint8_t big[PROTO_MAX_SV + 300]; /* filled with 'x' by setup */

#define STR(s) ((proto_bytes_t){(const uint8_t *)(s), sizeof(s) - 1})
#define BIN(a) ((proto_bytes_t){(a), sizeof(a)})
#define NIL ((proto_bytes_t){NULL, 0})
#define BIG(n) ((proto_bytes_t){big, (n)})

static int setup_big(void **state)
{
    (void)state;
    memset(big, 'x', sizeof big);
    return 0;
}

/* Fills m[] with messages covering every type and the edges of every field;
 * returns how many. */
static size_t sample_msgs(proto_msg_t *m, size_t max)
{
    size_t n = 0;
    proto_msg_t x;

#define ADD(...)                                                                                   \
    do {                                                                                           \
        memset(&x, 0, sizeof x);                                                                   \
        x = (proto_msg_t)__VA_ARGS__;                                                              \
        assert_true(n < max);                                                                      \
        m[n++] = x;                                                                                \
    } while (0)

    ADD({PROTO_HELLO, .u.hello = {1, 42, STR("ada"), STR("#e91e63"), NIL}});
    ADD({PROTO_HELLO, .u.hello = {UINT64_MAX, UINT64_MAX, BIG(PROTO_MAX_NAME), BIG(PROTO_MAX_COLOR),
                                  BIG(PROTO_MAX_TOKEN)}});
    ADD({PROTO_HELLO, .u.hello = {0, 1, STR(""), STR(""), STR("")}});
    ADD({PROTO_HELLO, .u.hello = {2, 0x100000000ULL, STR("Zoë \xe2\x9c\x8d\xf0\x9f\x98\x80"),
                                  STR("#000"), STR("tok.en")}});
    ADD({PROTO_WELCOME, .u.welcome = {1, 42, 1 << 20}});
    ADD({PROTO_WELCOME, .u.welcome = {0, UINT64_MAX, 0}});
    ADD({PROTO_SYNC1, .u.sync1 = {BIN(sv_bytes)}});
    ADD({PROTO_SYNC1, .u.sync1 = {BIG(PROTO_MAX_SV)}});
    ADD({PROTO_SYNC1, .u.sync1 = {NIL}}); /* empty state vector */
    ADD({PROTO_SYNC2, .u.sync2 = {BIG(300)}});
    ADD({PROTO_SYNC2, .u.sync2 = {BIG(0)}});
    ADD({PROTO_UPDATE, .u.update = {1, BIN(sv_bytes)}});
    ADD({PROTO_UPDATE, .u.update = {0, BIG(sizeof big)}});
    ADD({PROTO_UPDATE, .u.update = {UINT64_MAX, BIG(255)}});
    ADD({PROTO_UPDATE, .u.update = {65535, BIG(256)}});
    ADD({PROTO_ACK, .u.ack = {7}});
    ADD({PROTO_ACK, .u.ack = {0}});
    ADD({PROTO_ACK, .u.ack = {0xffffffffULL}});
    ADD({PROTO_PRESENCE, .u.presence = {NIL, NIL}});
    ADD({PROTO_PRESENCE, .u.presence = {BIN(relpos_a), BIN(relpos_a)}});
    ADD({PROTO_PRESENCE, .u.presence = {BIN(relpos_a), BIN(relpos_max)}});
    ADD({PROTO_PRESENCE_STATE,
         .u.presence_state = {42, STR("ada"), STR("#e91e63"), BIN(relpos_a), BIN(relpos_max)}});
    ADD({PROTO_PRESENCE_STATE, .u.presence_state = {1, STR(""), STR(""), NIL, NIL}});
    ADD({PROTO_PRESENCE_LEAVE, .u.presence_leave = {42}});
    ADD({PROTO_PRESENCE_LEAVE, .u.presence_leave = {UINT64_MAX}});
    ADD({PROTO_ERROR, .u.error = {PROTO_ERR_BAD_UPDATE, 17, STR("update rejected")}});
    ADD({PROTO_ERROR, .u.error = {UINT32_MAX, UINT64_MAX, BIG(PROTO_MAX_ERROR_MESSAGE)}});
    ADD({PROTO_ERROR, .u.error = {0, 0, STR("")}});
    ADD({PROTO_HISTORY, .u.history = {1, STR("GET"), STR("versions?limit=20"), NIL}});
    ADD({PROTO_HISTORY,
         .u.history = {UINT64_MAX, STR("POST"), STR("restore"), STR("{\"version\": 12}")}});
    ADD({PROTO_HISTORY, .u.history = {0, BIG(PROTO_MAX_METHOD), BIG(PROTO_MAX_PATH),
                                      BIG(PROTO_MAX_HISTORY_BODY)}});
    ADD({PROTO_HISTORY, .u.history = {300, STR(""), STR(""), STR("")}});
    ADD({PROTO_HISTORY_RESULT, .u.history_result = {1, 200, STR("{\"seq\":3}")}});
    ADD({PROTO_HISTORY_RESULT, .u.history_result = {UINT64_MAX, UINT32_MAX, BIG(sizeof big)}});
    ADD({PROTO_HISTORY_RESULT, .u.history_result = {0, 0, STR("")}});
#undef ADD
    return n;
}

#define MAX_SAMPLES 64

/* ---- names ------------------------------------------------------------- */

static void test_proto_strerror_every_code(void **state)
{
    (void)state;
#define CHECK_ERRNO(name, value, text)                                                             \
    assert_int_equal(PROTO_##name, value);                                                         \
    assert_string_equal(proto_strerror(value), text);                                              \
    assert_true(value <= -100 && value >= -199);
    PROTO_ERRNO_MAP(CHECK_ERRNO)
#undef CHECK_ERRNO
    assert_string_equal(proto_strerror(0), "success");
    assert_string_equal(proto_strerror(-1), "unknown error");
    assert_string_equal(proto_strerror(-199), "unknown error");
}

static void test_proto_wire_error_name_every_code(void **state)
{
    unsigned count = 0;
    (void)state;
#define CHECK_WIRE(name, value, text)                                                              \
    assert_int_equal(PROTO_ERR_##name, value);                                                     \
    assert_string_equal(proto_wire_error_name(value), text);                                       \
    count++;
    PROTO_WIRE_ERRORS(CHECK_WIRE)
#undef CHECK_WIRE
    assert_int_equal(count, 14);
    assert_string_equal(proto_wire_error_name(1), "bad_message");
    assert_string_equal(proto_wire_error_name(14), "shutting_down");
    assert_string_equal(proto_wire_error_name(0), "unknown");
    assert_string_equal(proto_wire_error_name(15), "unknown");
    assert_string_equal(proto_wire_error_name(UINT32_MAX), "unknown");
}

static void test_proto_wire_error_for_decode_results(void **state)
{
    (void)state;
    assert_int_equal(proto_wire_error_for(0), 0);
    assert_int_equal(proto_wire_error_for(PROTO_EMALFORMED), PROTO_ERR_BAD_MESSAGE);
    assert_int_equal(proto_wire_error_for(PROTO_ETYPE), PROTO_ERR_UNKNOWN_TYPE);
    assert_int_equal(proto_wire_error_for(PROTO_ELIMIT), PROTO_ERR_TOO_LARGE);
    assert_int_equal(proto_wire_error_for(PROTO_ENOMEM), PROTO_ERR_SERVER_ERROR);
    assert_int_equal(proto_wire_error_for(PROTO_EINTERNAL), PROTO_ERR_SERVER_ERROR);
}

static void test_proto_type_name_every_type(void **state)
{
    (void)state;
    assert_string_equal(proto_type_name(PROTO_HELLO), "HELLO");
    assert_string_equal(proto_type_name(PROTO_PRESENCE_STATE), "PRESENCE_STATE");
    assert_string_equal(proto_type_name(PROTO_ERROR), "ERROR");
    assert_string_equal(proto_type_name(0), "UNKNOWN");
    assert_string_equal(proto_type_name(11), "RESERVED");
    assert_string_equal(proto_type_name(15), "RESERVED");
    assert_string_equal(proto_type_name(PROTO_HISTORY), "HISTORY");
    assert_string_equal(proto_type_name(PROTO_HISTORY_RESULT), "HISTORY_RESULT");
    assert_string_equal(proto_type_name(18), "RESERVED");
    assert_string_equal(proto_type_name(31), "RESERVED");
    assert_string_equal(proto_type_name(32), "UNKNOWN");
    assert_string_equal(proto_type_name(UINT64_MAX), "UNKNOWN");
}

/* ---- round trips and examples ------------------------------------------ */

static void test_proto_encode_roundtrip_every_type(void **state)
{
    proto_msg_t m[MAX_SAMPLES], d;
    proto_buf_t b1 = {0}, b2 = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    unsigned seen = 0;
    (void)state;

    for (size_t i = 0; i < n; i++) {
        proto_buf_reset(&b1);
        proto_buf_reset(&b2);
        assert_int_equal(proto_encode(&m[i], &b1), 0);
        assert_int_equal(proto_decode(b1.base, b1.len, &d), 0);
        assert_true(fuzz_msg_equal(&m[i], &d) ||
                    /* an empty bin given as base NULL comes back non-NULL */
                    (m[i].type == PROTO_SYNC1 && d.u.sync1.sv.len == 0));
        assert_int_equal(proto_encode(&d, &b2), 0);
        assert_int_equal(b1.len, b2.len);
        assert_memory_equal(b1.base, b2.base, b1.len);
        assert_int_equal(proto_peek_type(b1.base, b1.len), (int)m[i].type);
        assert_null(fuzz_proto_check(b1.base, b1.len, NULL));
        seen |= 1u << m[i].type;
    }
    assert_int_equal(seen, 0x7fe | 1u << 16 | 1u << 17); /* types 1..10, 16, 17 */
    proto_buf_dispose(&b1);
    proto_buf_dispose(&b2);
}

static void expect_encoding(const proto_msg_t *m, const uint8_t *want, size_t n)
{
    proto_buf_t b = {0};
    assert_int_equal(proto_encode(m, &b), 0);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.base, want, n);
    proto_buf_dispose(&b);
}

static void test_proto_decode_doc_examples(void **state)
{
    static const uint8_t hello[] = {0x96, 0x01, 0x01, 0x2a, 0xa3, 0x61, 0x64, 0x61, 0xa7,
                                    0x23, 0x65, 0x39, 0x31, 0x65, 0x36, 0x33, 0xc0};
    static const uint8_t ack[] = {0x92, 0x06, 0x07};
    static const uint8_t presence[] = {0x93, 0x07, 0xc0, 0xc0};
    proto_msg_t m;
    (void)state;

    assert_int_equal(proto_decode(hello, sizeof hello, &m), 0);
    assert_int_equal(m.type, PROTO_HELLO);
    assert_int_equal(m.u.hello.version, 1);
    assert_int_equal(m.u.hello.replica, 42);
    assert_int_equal(m.u.hello.name.len, 3);
    assert_memory_equal(m.u.hello.name.base, "ada", 3);
    assert_int_equal(m.u.hello.color.len, 7);
    assert_memory_equal(m.u.hello.color.base, "#e91e63", 7);
    assert_null(m.u.hello.token.base);
    expect_encoding(&m, hello, sizeof hello);

    assert_int_equal(proto_decode(ack, sizeof ack, &m), 0);
    assert_int_equal(m.type, PROTO_ACK);
    assert_int_equal(m.u.ack.seq, 7);
    expect_encoding(&m, ack, sizeof ack);

    assert_int_equal(proto_decode(presence, sizeof presence, &m), 0);
    assert_int_equal(m.type, PROTO_PRESENCE);
    assert_null(m.u.presence.anchor.base);
    assert_null(m.u.presence.head.base);
    expect_encoding(&m, presence, sizeof presence);

    /* Field order of ERROR is [10, code, message, seq]. */
    m = (proto_msg_t){PROTO_ERROR, .u.error = {PROTO_ERR_BAD_UPDATE, 3, STR("no")}};
    expect_encoding(&m, BYTES(0x94, 0x0a, 0x06, 0xa2, 'n', 'o', 0x03));
    m = (proto_msg_t){PROTO_UPDATE, .u.update = {1, BIN(sv_bytes)}};
    expect_encoding(&m, BYTES(0x93, 0x05, 0x01, 0xc4, 0x06, 2, 0x2a, 5, 0x81, 0x01, 3));
    m = (proto_msg_t){PROTO_WELCOME, .u.welcome = {1, 42, 1 << 20}};
    expect_encoding(&m, BYTES(0x94, 0x02, 0x01, 0x2a, 0xce, 0x00, 0x10, 0x00, 0x00));
    /* HISTORY request 7, GET "attribution", no body; its result 200 "{}" */
    m = (proto_msg_t){PROTO_HISTORY, .u.history = {7, STR("GET"), STR("attribution"), NIL}};
    expect_encoding(&m, BYTES(0x95, 0x10, 0x07, 0xa3, 'G', 'E', 'T', 0xab, 'a', 't', 't', 'r', 'i',
                              'b', 'u', 't', 'i', 'o', 'n', 0xc0));
    m = (proto_msg_t){PROTO_HISTORY_RESULT, .u.history_result = {7, 200, STR("{}")}};
    expect_encoding(&m, BYTES(0x94, 0x11, 0x07, 0xcc, 0xc8, 0xa2, '{', '}'));
}

static void test_proto_history_fields(void **state)
{
    proto_msg_t m;
    (void)state;

    /* a body given: [16, 1, "POST", "restore", "{}"] */
    assert_int_equal(proto_decode(BYTES(0x95, 0x10, 0x01, 0xa4, 'P', 'O', 'S', 'T', 0xa7, 'r', 'e',
                                        's', 't', 'o', 'r', 'e', 0xa2, '{', '}'),
                                  &m),
                     0);
    assert_int_equal(m.type, PROTO_HISTORY);
    assert_int_equal(m.u.history.req, 1);
    assert_int_equal(m.u.history.method.len, 4);
    assert_memory_equal(m.u.history.method.base, "POST", 4);
    assert_int_equal(m.u.history.path.len, 7);
    assert_int_equal(m.u.history.body.len, 2);
    assert_non_null(m.u.history.body.base);
    /* an empty body is not nil */
    assert_int_equal(proto_decode(BYTES(0x95, 0x10, 0x01, 0xa0, 0xa0, 0xa0), &m), 0);
    assert_non_null(m.u.history.body.base);
    assert_int_equal(m.u.history.body.len, 0);
    /* wrong kinds: bin method, nil path, int body, bin body, negative req */
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xc4, 0x00, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xa0, 0xc0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xa0, 0xa0, 0x01)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xa0, 0xa0, 0xc4, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0xff, 0xa0, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0xc0, 0xa0, 0xa0, 0xc0)), PROTO_EMALFORMED);
    /* invalid UTF-8 in the path, the body */
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xa0, 0xa1, 0xff, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x95, 0x10, 0x01, 0xa0, 0xa0, 0xa2, 0xc3, 0x28)), PROTO_EMALFORMED);
    /* HISTORY_RESULT: status above 32 bits, str status, bin body, nil body */
    assert_int_equal(dec(BYTES(0x94, 0x11, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x11, 0x01, 0xce, 0xff, 0xff, 0xff, 0xff, 0xa0)), 0);
    assert_int_equal(dec(BYTES(0x94, 0x11, 0x01, 0xa1, '2', 0xa0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x11, 0x01, 0xcc, 0xc8, 0xc4, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x11, 0x01, 0xcc, 0xc8, 0xc0)), PROTO_EMALFORMED);
    /* later elements are ignored, as for every type */
    assert_int_equal(dec(BYTES(0x96, 0x10, 0x01, 0xa0, 0xa0, 0xc0, 0xff)), 0);
    assert_int_equal(dec(BYTES(0x95, 0x11, 0x01, 0x00, 0xa0, 0xc3)), 0);
}

/* ---- bad input ----------------------------------------------------------- */

static void test_proto_decode_truncated_every_prefix(void **state)
{
    proto_msg_t m[MAX_SAMPLES];
    proto_buf_t b = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        proto_buf_reset(&b);
        assert_int_equal(proto_encode(&m[i], &b), 0);
        /* The big samples: every prefix up to 300 bytes, then a stride. */
        for (size_t k = 0; k < b.len; k += k < 300 ? 1 : 997) {
            int rc = dec(b.base, k);
            if (rc != PROTO_EMALFORMED)
                fail_msg("sample %zu (%s) cut to %zu of %zu bytes: %d", i,
                         proto_type_name(m[i].type), k, b.len, rc);
        }
        assert_int_equal(dec(b.base, b.len - 1), PROTO_EMALFORMED);
        assert_int_equal(dec(b.base, b.len), 0);
    }
    proto_buf_dispose(&b);
}

static void test_proto_decode_trailing_bytes(void **state)
{
    proto_msg_t m[MAX_SAMPLES];
    proto_buf_t b = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    static const uint8_t tails[] = {0x00, 0xc0, 0x92, 0xff};
    (void)state;

    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; t < sizeof tails; t++) {
            proto_buf_reset(&b);
            assert_int_equal(proto_encode(&m[i], &b), 0);
            b.base[b.len++] = tails[t]; /* encode reserved exactly; there is room */
            assert_int_equal(dec(b.base, b.len), PROTO_EMALFORMED);
        }
    }
    /* A second whole message after the first is trailing bytes too. */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0x07, 0x92, 0x06, 0x08)), PROTO_EMALFORMED);
    proto_buf_dispose(&b);
}

static void test_proto_decode_nested_containers(void **state)
{
    (void)state;
    /* ACK whose seq is an array / a map */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0x91, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0x90)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0x80)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0x81, 0x01, 0x02)), PROTO_EMALFORMED);
    /* array16/32 and map16/32 as elements */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xdc, 0x00, 0x01, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xdd, 0x00, 0x00, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xde, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xdf, 0x00, 0x00, 0x00, 0x00)), PROTO_EMALFORMED);
    /* a nested container after the defined elements is still refused */
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0x90)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0x80)), PROTO_EMALFORMED);
    /* deep nesting */
    assert_int_equal(dec(BYTES(0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x06)),
                     PROTO_EMALFORMED);
    /* a top-level map, or anything but an array */
    assert_int_equal(dec(BYTES(0x81, 0x00, 0x06)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x06)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xc4, 0x01, 0x92)), PROTO_EMALFORMED);
    /* an empty array, an array whose element 0 is not an integer */
    assert_int_equal(dec(BYTES(0x90)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x90, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0xa1, 0x06, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0xc0, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0xc3, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(NULL, 0), PROTO_EMALFORMED);
}

/* Run under ASan (scripts/test.sh --sanitize): a decoder that reserved memory
 * from these counts would ask for gigabytes and abort. */
static void test_proto_decode_huge_counts(void **state)
{
    (void)state;
    assert_int_equal(dec(BYTES(0xdd, 0xff, 0xff, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xdd, 0xff, 0xff, 0xff, 0xff, 0x06, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xdc, 0xff, 0xff, 0x06, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xdc, 0x00, 0x11)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xdf, 0xff, 0xff, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0xde, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x9f)), PROTO_EMALFORMED);
    /* element lengths larger than the input */
    assert_int_equal(dec(BYTES(0x93, 0x05, 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x05, 0x01, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x03, 0xc5, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x03, 0xc4, 0x02, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x00)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0x01, 0xda, 0xff, 0xff, 0x00)), PROTO_EMALFORMED);
    /* a huge ext length */
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01)),
                     PROTO_EMALFORMED);
    /* array16 and array32 headers with an honest count are fine */
    assert_int_equal(dec(BYTES(0xdc, 0x00, 0x02, 0x06, 0x07)), 0);
    assert_int_equal(dec(BYTES(0xdd, 0x00, 0x00, 0x00, 0x02, 0x06, 0x07)), 0);
    assert_int_equal(dec(BYTES(0xdd, 0x00, 0x00, 0x00, 0x10, 0x06, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               0, 0, 0, 0, 0)),
                     0);
}

/* [1, 1, 42, name, "#fff", nil] with the given name bytes. */
static int dec_hello_name(const uint8_t *name, size_t n)
{
    wbuf_t w = {0};
    int rc;
    w_array(&w, 6);
    w_uint(&w, 1), w_uint(&w, 1), w_uint(&w, 42);
    w_str(&w, name, n);
    w_str(&w, "#fff", 4);
    w_byte(&w, 0xc0);
    rc = dec(w.b, w.n);
    w_free(&w);
    return rc;
}

static void test_proto_decode_invalid_utf8(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain", 1},
        {"\xc3\xa9", 1},           /* é */
        {"\xe2\x82\xac", 1},       /* € */
        {"\xf0\x9f\x98\x80", 1},   /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 1},   /* U+10FFFF */
        {"\xed\x9f\xbf", 1},       /* U+D7FF */
        {"\xee\x80\x80", 1},       /* U+E000 */
        {"\x80", 0},               /* lone continuation */
        {"a\xbf", 0},              /* lone continuation */
        {"\xc3", 0},               /* cut sequence */
        {"\xe2\x82", 0},           /* cut sequence */
        {"\xf0\x9f\x98", 0},       /* cut sequence */
        {"\xc0\xaf", 0},           /* overlong '/' */
        {"\xc1\xbf", 0},           /* overlong */
        {"\xe0\x80\xaf", 0},       /* overlong */
        {"\xe0\x9f\xbf", 0},       /* overlong */
        {"\xf0\x80\x80\xaf", 0},   /* overlong */
        {"\xf0\x8f\xbf\xbf", 0},   /* overlong */
        {"\xed\xa0\x80", 0},       /* surrogate U+D800 */
        {"\xed\xbf\xbf", 0},       /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 0},   /* U+110000 */
        {"\xf5\x80\x80\x80", 0},   /* lead byte 0xf5 */
        {"\xff", 0},               /* never valid */
        {"\xc3\x28", 0},           /* bad continuation */
        {"\xe2\x28\xa1", 0},       /* bad continuation */
        {"\xf0\x9f\x98\x28", 0},   /* bad continuation */
        {"ok\xe2\x82\xac\xc3", 0}, /* valid, then cut */
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = dec_hello_name((const uint8_t *)cases[i].s, strlen(cases[i].s));
        if (rc != (cases[i].ok ? 0 : PROTO_EMALFORMED))
            fail_msg("UTF-8 case %zu: %d", i, rc);
    }
    /* in color, token, an ERROR message and an ignored later element */
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa1, 0xff, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xa2, 0xc3, 0x28)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0x01, 0xa1, 0x80, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xa1, 0x80)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xa1, 0x41)), 0);
    /* bin is not checked: any bytes */
    assert_int_equal(dec(BYTES(0x92, 0x03, 0xc4, 0x02, 0xff, 0x80)), 0);
}

static void test_proto_decode_over_limit(void **state)
{
    static const struct {
        enum proto_type type;
        unsigned field; /* which field gets the big value */
        size_t limit;
    } cases[] = {
        {PROTO_HELLO, 3, PROTO_MAX_NAME},
        {PROTO_HELLO, 4, PROTO_MAX_COLOR},
        {PROTO_HELLO, 5, PROTO_MAX_TOKEN},
        {PROTO_SYNC1, 1, PROTO_MAX_SV},
        {PROTO_PRESENCE, 1, PROTO_MAX_RELPOS},
        {PROTO_PRESENCE, 2, PROTO_MAX_RELPOS},
        {PROTO_PRESENCE_STATE, 2, PROTO_MAX_NAME},
        {PROTO_PRESENCE_STATE, 3, PROTO_MAX_COLOR},
        {PROTO_PRESENCE_STATE, 4, PROTO_MAX_RELPOS},
        {PROTO_PRESENCE_STATE, 5, PROTO_MAX_RELPOS},
        {PROTO_ERROR, 2, PROTO_MAX_ERROR_MESSAGE},
        {PROTO_HISTORY, 2, PROTO_MAX_METHOD},
        {PROTO_HISTORY, 3, PROTO_MAX_PATH},
        {PROTO_HISTORY, 4, PROTO_MAX_HISTORY_BODY},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t extra = 0; extra <= 1; extra++) {
            size_t len = cases[i].limit + extra;
            wbuf_t w = {0};
            int rc;
            /* each field: the big value if it is the chosen one, else a small one */
#define FIELD(k, str, small)                                                                       \
    ((k) == cases[i].field ? ((str) ? w_str(&w, big, len) : w_bin(&w, big, len))                   \
                           : ((str) ? w_str(&w, small, strlen(small)) : w_bin(&w, small, 1)))
            switch (cases[i].type) {
            case PROTO_HELLO:
                w_array(&w, 6), w_uint(&w, 1), w_uint(&w, 1), w_uint(&w, 9);
                FIELD(3, 1, "n"), FIELD(4, 1, "c"), FIELD(5, 1, "t");
                break;
            case PROTO_SYNC1:
                w_array(&w, 2), w_uint(&w, 3);
                FIELD(1, 0, "s");
                break;
            case PROTO_PRESENCE:
                w_array(&w, 3), w_uint(&w, 7);
                FIELD(1, 0, "a"), FIELD(2, 0, "h");
                break;
            case PROTO_PRESENCE_STATE:
                w_array(&w, 6), w_uint(&w, 8), w_uint(&w, 9);
                FIELD(2, 1, "n"), FIELD(3, 1, "c"), FIELD(4, 0, "a"), FIELD(5, 0, "h");
                break;
            case PROTO_HISTORY:
                w_array(&w, 5), w_uint(&w, 16), w_uint(&w, 3);
                FIELD(2, 1, "m"), FIELD(3, 1, "p"), FIELD(4, 1, "b");
                break;
            default:
                w_array(&w, 4), w_uint(&w, 10), w_uint(&w, 1);
                FIELD(2, 1, "m"), w_uint(&w, 0);
                break;
            }
#undef FIELD
            rc = dec(w.b, w.n);
            if (rc != (extra ? PROTO_ELIMIT : 0))
                fail_msg("case %zu (%s field %u) with %zu bytes: %d", i,
                         proto_type_name(cases[i].type), cases[i].field, len, rc);
            w_free(&w);
        }
    }
}

static void test_proto_decode_wrong_types(void **state)
{
    (void)state;
    /* HELLO: version str, replica bin, name bin, color nil, token bin, token int */
    assert_int_equal(dec(BYTES(0x96, 0x01, 0xa1, 0x31, 0x2a, 0xa0, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0xc4, 0x01, 0x2a, 0xa0, 0xa0, 0xc0)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xc4, 0x00, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xc0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xc4, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xa0)), 0);
    /* SYNC1/SYNC2/UPDATE: str or nil instead of bin */
    assert_int_equal(dec(BYTES(0x92, 0x03, 0xa1, 0x41)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x03, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x04, 0xa0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x05, 0x01, 0xa0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x05, 0xc0, 0xc4, 0x00)), PROTO_EMALFORMED);
    /* ACK: nil, bool, bin seq */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xc2)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xc4, 0x01, 0x07)), PROTO_EMALFORMED);
    /* PRESENCE: str anchor, int head */
    assert_int_equal(dec(BYTES(0x93, 0x07, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x07, 0xc4, 0x00, 0x01)), PROTO_EMALFORMED);
    /* WELCOME: bool max_message; PRESENCE_LEAVE: str replica */
    assert_int_equal(dec(BYTES(0x94, 0x02, 0x01, 0x2a, 0xc3)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x09, 0xa1, 0x31)), PROTO_EMALFORMED);
    /* ERROR: message bin, code nil, seq str */
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0x01, 0xc4, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0xc0, 0xa0, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0x01, 0xa0, 0xa0)), PROTO_EMALFORMED);
    /* ERROR code above 32 bits */
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x00)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x0a, 0xce, 0xff, 0xff, 0xff, 0xff, 0xa0, 0x00)), 0);
}

static void test_proto_decode_missing_elements(void **state)
{
    static const uint8_t minimal[][8] = {
        {0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xc0},
        {0x94, 0x02, 0x01, 0x2a, 0x00},
        {0x92, 0x03, 0xc4, 0x00},
        {0x92, 0x04, 0xc4, 0x00},
        {0x93, 0x05, 0x01, 0xc4, 0x00},
        {0x92, 0x06, 0x07},
        {0x93, 0x07, 0xc0, 0xc0},
        {0x96, 0x08, 0x2a, 0xa0, 0xa0, 0xc0, 0xc0},
        {0x92, 0x09, 0x2a},
        {0x94, 0x0a, 0x01, 0xa0, 0x00},
        {0x95, 0x10, 0x01, 0xa0, 0xa0, 0xc0},
        {0x94, 0x11, 0x01, 0x00, 0xa0},
    };
    (void)state;

    for (size_t t = 0; t < sizeof minimal / sizeof minimal[0]; t++) {
        uint8_t b[8];
        unsigned n = minimal[t][0] & 0x0f;
        size_t len = 1;
        /* the full message */
        for (unsigned k = 0; k < n; k++)
            len += minimal[t][len] == 0xc4 ? 2 : 1;
        assert_int_equal(dec(minimal[t], len), 0);
        /* fewer elements, the array header saying so */
        for (unsigned keep = 1; keep < n; keep++) {
            size_t l = 1;
            for (unsigned k = 0; k < keep; k++)
                l += minimal[t][l] == 0xc4 ? 2 : 1;
            memcpy(b, minimal[t], l);
            b[0] = (uint8_t)(0x90 | keep);
            if (dec(b, l) != PROTO_EMALFORMED)
                fail_msg("type %u with %u of %u elements accepted", minimal[t][1], keep, n);
        }
    }
}

static void test_proto_decode_unknown_types(void **state)
{
    (void)state;
    assert_int_equal(dec(BYTES(0x91, 0x00)), PROTO_ETYPE);
    for (uint8_t t = 11; t < 0x80; t++) {
        uint8_t b[] = {0x92, t, 0x00};
        if (t == PROTO_HISTORY || t == PROTO_HISTORY_RESULT) {
            assert_int_equal(dec(b, sizeof b), PROTO_EMALFORMED); /* too few elements */
            continue;
        }
        assert_int_equal(dec(b, sizeof b), PROTO_ETYPE);
        assert_int_equal(proto_peek_type(b, sizeof b), t);
    }
    /* reserved history range, in other integer widths */
    assert_int_equal(dec(BYTES(0x92, 0xcc, 0x12, 0x00)), PROTO_ETYPE);
    assert_int_equal(dec(BYTES(0x92, 0xcd, 0x00, 0x1f, 0x00)), PROTO_ETYPE);
    assert_int_equal(dec(BYTES(0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
                     PROTO_ETYPE);
    assert_int_equal(
        proto_peek_type(BYTES(0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
        PROTO_ETYPE);
    /* an unknown type wins over what follows it, even a damaged rest */
    assert_int_equal(dec(BYTES(0x93, 0x12, 0x90)), PROTO_ETYPE);
    assert_int_equal(dec(BYTES(0x93, 0x12, 0xc6, 0xff, 0xff, 0xff, 0xff)), PROTO_ETYPE);
    /* but not over a bad array header */
    assert_int_equal(dec(BYTES(0xdc, 0x00, 0x11, 0x12)), PROTO_EMALFORMED);
    /* the history types in a wider integer encoding are still defined */
    assert_int_equal(dec(BYTES(0x95, 0xcc, 0x10, 0x01, 0xa0, 0xa0, 0xc0)), 0);
    assert_int_equal(dec(BYTES(0x94, 0xd0, 0x11, 0x01, 0x00, 0xa0)), 0);
    assert_true(proto_type_defined(PROTO_HISTORY) && proto_type_defined(PROTO_HISTORY_RESULT));
    assert_false(proto_type_defined(0) || proto_type_defined(11) || proto_type_defined(15) ||
                 proto_type_defined(18) || proto_type_defined(UINT64_MAX));
    /* a type given as a negative, float, str or nil value is malformed */
    assert_int_equal(dec(BYTES(0x92, 0xff, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0xd0, 0xfa, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0xca, 0x40, 0xc0, 0x00, 0x00, 0x07)), PROTO_EMALFORMED);
}

static void test_proto_decode_integer_encodings(void **state)
{
    proto_msg_t m;
    (void)state;

    /* seq 7 of an ACK in every unsigned width and every signed one */
    const uint8_t *forms[] = {
        (const uint8_t[]){0x92, 0x06, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xcc, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xcd, 0x00, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xce, 0x00, 0x00, 0x00, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xd0, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xd1, 0x00, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xd2, 0x00, 0x00, 0x00, 0x07},
        (const uint8_t[]){0x92, 0x06, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0x07},
    };
    const size_t lens[] = {3, 4, 5, 7, 11, 4, 5, 7, 11};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memset(&m, 0, sizeof m);
        assert_int_equal(proto_decode(forms[i], lens[i], &m), 0);
        assert_int_equal(m.type, PROTO_ACK);
        assert_int_equal(m.u.ack.seq, 7);
        expect_encoding(&m, BYTES(0x92, 0x06, 0x07)); /* re-encoded in the shortest form */
    }
    /* the type itself in a wide form */
    assert_int_equal(proto_decode(BYTES(0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 6, 0x07), &m), 0);
    assert_int_equal(m.type, PROTO_ACK);
    /* largest values */
    assert_int_equal(
        proto_decode(BYTES(0x92, 0x06, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), &m),
        0);
    assert_true(m.u.ack.seq == UINT64_MAX);
    assert_int_equal(
        proto_decode(BYTES(0x92, 0x06, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), &m),
        0);
    assert_true(m.u.ack.seq == INT64_MAX);

    /* negative values in every signed form */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xe0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xd0, 0x80)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xd1, 0xff, 0xff)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xd2, 0x80, 0x00, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0xff, 0xa0, 0xa0, 0xc0)), PROTO_EMALFORMED);
    /* a negative value in an ignored later element is fine */
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xff)), 0);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0)), 0);
}

static void test_proto_decode_floats_and_ext(void **state)
{
    (void)state;
    /* seq as float32 7.0 and float64 7.0 */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xca, 0x40, 0xe0, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xcb, 0x40, 0x1c, 0, 0, 0, 0, 0, 0)), PROTO_EMALFORMED);
    /* a float after the defined elements */
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xca, 0, 0, 0, 0)), PROTO_EMALFORMED);
    /* fixext 1..16, ext8/16/32, and the never-used byte 0xc1 */
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xd4, 0x01, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(
        dec(BYTES(0x93, 0x06, 0x07, 0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
        PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xc7, 0x00, 0x01)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x06, 0x07, 0xc8, 0x00, 0x00, 0x01)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xc1)), PROTO_EMALFORMED);
    /* timestamp ext (-1) as seq */
    assert_int_equal(dec(BYTES(0x92, 0x06, 0xd6, 0xff, 0, 0, 0, 1)), PROTO_EMALFORMED);
}

static void test_proto_decode_replica_zero(void **state)
{
    (void)state;
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0x00, 0xa0, 0xa0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x01, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0xa0, 0xc0)),
                     PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x94, 0x02, 0x01, 0x00, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x08, 0x00, 0xa0, 0xa0, 0xc0, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x09, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x92, 0x09, 0x01)), 0);
}

static void test_proto_decode_half_selection(void **state)
{
    (void)state;
    assert_int_equal(dec(BYTES(0x93, 0x07, 0xc0, 0xc4, 0x01, 0x05)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x93, 0x07, 0xc4, 0x01, 0x05, 0xc0)), PROTO_EMALFORMED);
    assert_int_equal(dec(BYTES(0x96, 0x08, 0x2a, 0xa0, 0xa0, 0xc0, 0xc4, 0x00)), PROTO_EMALFORMED);
    /* empty bins are a (strange but) present selection */
    assert_int_equal(dec(BYTES(0x93, 0x07, 0xc4, 0x00, 0xc4, 0x00)), 0);
}

static void test_proto_decode_extra_elements_ignored(void **state)
{
    uint8_t b[64];
    proto_msg_t m;
    size_t len;
    (void)state;

    /* ACK padded with later elements of every scalar kind up to 16 elements */
    len = 0;
    b[len++] = 0x9f; /* 15 elements */
    b[len++] = 0x06;
    b[len++] = 0x07;
    b[len++] = 0xc0;
    b[len++] = 0xc2;
    b[len++] = 0xc3;
    b[len++] = 0xff;
    b[len++] = 0xa1;
    b[len++] = 'x';
    b[len++] = 0xc4;
    b[len++] = 0x01;
    b[len++] = 0x00;
    b[len++] = 0xcd;
    b[len++] = 0x12;
    b[len++] = 0x34;
    for (int k = 0; k < 6; k++)
        b[len++] = 0x01;
    assert_int_equal(proto_decode(b, len, &m), 0);
    assert_int_equal(m.type, PROTO_ACK);
    assert_int_equal(m.u.ack.seq, 7);
    /* 16 elements via array16 */
    memmove(b + 3, b + 1, len - 1);
    b[0] = 0xdc, b[1] = 0x00, b[2] = 0x10;
    len += 2;
    b[len++] = 0x02;
    assert_int_equal(proto_decode(b, len, &m), 0);
    /* 17 elements are refused */
    b[2] = 0x11;
    b[len++] = 0x03;
    assert_int_equal(dec(b, len), PROTO_EMALFORMED);
    /* HELLO with a later element re-encodes without it */
    assert_int_equal(
        proto_decode(BYTES(0x97, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xc0, 0xa3, 'n', 'e', 'w'), &m), 0);
    expect_encoding(&m, BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xc0));
}

static void test_proto_decode_pointers_into_input(void **state)
{
    proto_msg_t m[MAX_SAMPLES], d;
    proto_buf_t b = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    (void)state;

    for (size_t i = 0; i < n; i++) {
        proto_buf_reset(&b);
        assert_int_equal(proto_encode(&m[i], &b), 0);
        assert_int_equal(proto_decode(b.base, b.len, &d), 0);
        assert_true(fuzz_each_bytes(&d, &d, fuzz_pair_inside, &(struct fuzz_span){b.base, b.len}));
    }
    /* exactly where they should be */
    static const uint8_t upd[] = {0x93, 0x05, 0x01, 0xc4, 0x02, 0xaa, 0xbb};
    assert_int_equal(proto_decode(upd, sizeof upd, &d), 0);
    assert_ptr_equal(d.u.update.update.base, upd + 5);
    assert_int_equal(d.u.update.update.len, 2);
    static const uint8_t empty[] = {0x92, 0x04, 0xc4, 0x00};
    assert_int_equal(proto_decode(empty, sizeof empty, &d), 0);
    assert_ptr_equal(d.u.sync2.update.base, empty + 4); /* empty but not nil */
    assert_int_equal(d.u.sync2.update.len, 0);
    proto_buf_dispose(&b);
}

static void test_proto_decode_error_leaves_out_untouched(void **state)
{
    proto_msg_t m, before;
    (void)state;

    memset(&m, 0x5a, sizeof m);
    before = m;
    assert_int_equal(proto_decode(BYTES(0x92, 0x06, 0xff), &m), PROTO_EMALFORMED);
    assert_memory_equal(&m, &before, sizeof m);
    assert_int_equal(proto_decode(BYTES(0x92, 0x0b, 0x00), &m), PROTO_ETYPE);
    assert_memory_equal(&m, &before, sizeof m);
    assert_int_equal(proto_decode(BYTES(0x93, 0x07, 0xc4, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                        12, 13, 14, 15, 16, 17, 0xc0),
                                  &m),
                     PROTO_ELIMIT);
    assert_memory_equal(&m, &before, sizeof m);
    /* HELLO fails on its last field after earlier fields were read */
    assert_int_equal(proto_decode(BYTES(0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0x01), &m),
                     PROTO_EMALFORMED);
    assert_memory_equal(&m, &before, sizeof m);
    assert_int_equal(proto_decode(NULL, 3, &m), PROTO_EINVAL);
    assert_int_equal(proto_decode(BYTES(0x92, 0x06, 0x07), NULL), PROTO_EINVAL);
}

/* ---- peek ---------------------------------------------------------------- */

static void test_proto_peek_type_reads_only_the_head(void **state)
{
    (void)state;
    assert_int_equal(proto_peek_type(BYTES(0x92, 0x06, 0x07)), PROTO_ACK);
    /* the rest may be anything, even missing */
    assert_int_equal(proto_peek_type(BYTES(0x93, 0x05)), PROTO_UPDATE);
    assert_int_equal(proto_peek_type(BYTES(0x93, 0x05, 0x90, 0xff)), PROTO_UPDATE);
    assert_int_equal(proto_peek_type(BYTES(0xdd, 0x00, 0x00, 0x00, 0x02, 0xcc, 0x14)), 20);
    assert_int_equal(proto_peek_type(BYTES(0x91, 0xce, 0x7f, 0xff, 0xff, 0xff)), INT32_MAX);
    assert_int_equal(proto_peek_type(BYTES(0x91, 0xce, 0x80, 0x00, 0x00, 0x00)), PROTO_ETYPE);
    assert_int_equal(proto_peek_type(BYTES(0x91, 0x00)), 0);
    /* a bad head */
    assert_int_equal(proto_peek_type(NULL, 0), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0x92)), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0x90)), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0xdd, 0xff, 0xff, 0xff, 0xff, 0x06)), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0x92, 0xcd, 0x00)), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0x92, 0xff, 0x07)), PROTO_EMALFORMED);
    assert_int_equal(proto_peek_type(BYTES(0x82, 0x06, 0x07)), PROTO_EMALFORMED);
}

/* ---- encoding -------------------------------------------------------------- */

static void expect_encode_error(proto_msg_t m, int want)
{
    proto_buf_t b = {0};
    assert_int_equal(proto_encode(&(proto_msg_t){PROTO_ACK, .u.ack = {1}}, &b), 0);
    size_t len = b.len;
    uint8_t first[3];
    memcpy(first, b.base, len);
    int rc = proto_encode(&m, &b);
    if (rc != want)
        fail_msg("%s: encode gave %d (%s), want %d", proto_type_name(m.type), rc,
                 proto_strerror(rc), want);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.base, first, len);
    proto_buf_dispose(&b);
}

static void test_proto_encode_rejects_invalid(void **state)
{
    static const uint8_t bad_utf8[] = {0xc3, 0x28};
    (void)state;

    expect_encode_error((proto_msg_t){0}, PROTO_EINVAL);
    expect_encode_error((proto_msg_t){11, .u.ack = {0}}, PROTO_EINVAL);
    expect_encode_error((proto_msg_t){18, .u.ack = {0}}, PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_HELLO, .u.hello = {1, 0, STR("a"), STR("b"), NIL}},
                        PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_WELCOME, .u.welcome = {1, 0, 10}}, PROTO_EINVAL);
    expect_encode_error(
        (proto_msg_t){PROTO_PRESENCE_STATE, .u.presence_state = {0, STR(""), STR(""), NIL, NIL}},
        PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_PRESENCE_LEAVE, .u.presence_leave = {0}}, PROTO_EINVAL);
    /* limits */
    expect_encode_error(
        (proto_msg_t){PROTO_HELLO, .u.hello = {1, 1, BIG(PROTO_MAX_NAME + 1), STR(""), NIL}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_HELLO, .u.hello = {1, 1, STR(""), BIG(PROTO_MAX_COLOR + 1), NIL}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_HELLO, .u.hello = {1, 1, STR(""), STR(""), BIG(PROTO_MAX_TOKEN + 1)}},
        PROTO_ELIMIT);
    expect_encode_error((proto_msg_t){PROTO_SYNC1, .u.sync1 = {BIG(PROTO_MAX_SV + 1)}},
                        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_PRESENCE, .u.presence = {BIG(PROTO_MAX_RELPOS + 1), BIG(1)}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_PRESENCE, .u.presence = {BIG(1), BIG(PROTO_MAX_RELPOS + 1)}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_PRESENCE_STATE,
                      .u.presence_state = {1, STR(""), STR(""), BIG(1), BIG(PROTO_MAX_RELPOS + 1)}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_ERROR, .u.error = {1, 0, BIG(PROTO_MAX_ERROR_MESSAGE + 1)}},
        PROTO_ELIMIT);
    expect_encode_error((proto_msg_t){PROTO_UPDATE, .u.update = {1, {big, (size_t)UINT32_MAX + 1}}},
                        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_HISTORY, .u.history = {1, BIG(PROTO_MAX_METHOD + 1), STR(""), NIL}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_HISTORY, .u.history = {1, STR("GET"), BIG(PROTO_MAX_PATH + 1), NIL}},
        PROTO_ELIMIT);
    expect_encode_error(
        (proto_msg_t){PROTO_HISTORY, .u.history = {1, STR("POST"), STR("restore"),
                                                   BIG(PROTO_MAX_HISTORY_BODY + 1)}},
        PROTO_ELIMIT);
    expect_encode_error((proto_msg_t){PROTO_HISTORY, .u.history = {1, BIN(bad_utf8), STR(""), NIL}},
                        PROTO_EINVAL);
    expect_encode_error(
        (proto_msg_t){PROTO_HISTORY_RESULT, .u.history_result = {1, 200, BIN(bad_utf8)}},
        PROTO_EINVAL);
    /* bad UTF-8, base NULL with a length, half a selection */
    expect_encode_error((proto_msg_t){PROTO_HELLO, .u.hello = {1, 1, BIN(bad_utf8), STR(""), NIL}},
                        PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_ERROR, .u.error = {1, 0, BIN(bad_utf8)}}, PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_UPDATE, .u.update = {1, {NULL, 3}}}, PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_HELLO, .u.hello = {1, 1, STR(""), STR(""), {NULL, 1}}},
                        PROTO_EINVAL);
    expect_encode_error((proto_msg_t){PROTO_PRESENCE, .u.presence = {NIL, BIN(relpos_a)}},
                        PROTO_EINVAL);
    expect_encode_error(
        (proto_msg_t){PROTO_PRESENCE_STATE,
                      .u.presence_state = {1, STR(""), STR(""), BIN(relpos_a), NIL}},
        PROTO_EINVAL);
    assert_int_equal(proto_encode(NULL, &(proto_buf_t){0}), PROTO_EINVAL);
    assert_int_equal(proto_encode(&(proto_msg_t){PROTO_ACK, .u.ack = {1}}, NULL), PROTO_EINVAL);
}

static void test_proto_encode_appends(void **state)
{
    proto_msg_t m[MAX_SAMPLES], d;
    proto_buf_t all = {0}, one = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES), off = 0;
    (void)state;

    for (size_t i = 0; i < n; i++)
        assert_int_equal(proto_encode(&m[i], &all), 0);
    for (size_t i = 0; i < n; i++) {
        proto_buf_reset(&one);
        assert_int_equal(proto_encode(&m[i], &one), 0);
        assert_true(off + one.len <= all.len);
        assert_memory_equal(all.base + off, one.base, one.len);
        assert_int_equal(proto_decode(all.base + off, one.len, &d), 0);
        assert_true(fuzz_msg_equal(&m[i], &d) || m[i].type == PROTO_SYNC1);
        off += one.len;
    }
    assert_int_equal(off, all.len);
    proto_buf_dispose(&all);
    proto_buf_dispose(&one);
}

static void test_proto_encode_update_matches_encode(void **state)
{
    proto_buf_t a = {0}, b = {0};
    static const uint64_t seqs[] = {0, 1, 127, 128, 255, 256, 65535, 65536, UINT64_MAX};
    static const size_t lens[] = {0, 1, 255, 256, 65535, 65536, sizeof big};
    (void)state;

    for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            proto_msg_t m = {PROTO_UPDATE, .u.update = {seqs[s], BIG(lens[l])}};
            proto_buf_reset(&a);
            proto_buf_reset(&b);
            assert_int_equal(proto_encode(&m, &a), 0);
            assert_int_equal(proto_encode_update(&b, seqs[s], big, lens[l]), 0);
            assert_int_equal(a.len, b.len);
            assert_memory_equal(a.base, b.base, a.len);
        }
    }
    proto_buf_reset(&b);
    assert_int_equal(proto_encode_update(&b, 3, NULL, 0), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.base, "\x93\x05\x03\xc4\x00", 5);
    assert_int_equal(proto_encode_update(&b, 3, NULL, 1), PROTO_EINVAL);
    assert_int_equal(b.len, 5);
    proto_buf_dispose(&a);
    proto_buf_dispose(&b);
}

static void test_proto_buf_reset_keeps_capacity(void **state)
{
    proto_buf_t b = {0};
    uint8_t *base;
    size_t cap;
    (void)state;

    assert_int_equal(proto_encode_update(&b, 1, big, 1000), 0);
    base = b.base;
    cap = b.cap;
    assert_true(cap >= 1000);
    proto_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(proto_encode_update(&b, 2, big, 900), 0);
    assert_ptr_equal(b.base, base);
    assert_int_equal(b.cap, cap);
    assert_int_equal(proto_buf_reserve(&b, 0), 0);
    assert_int_equal(proto_buf_reserve(&b, SIZE_MAX), PROTO_EINVAL);
    assert_int_equal(proto_buf_reserve(NULL, 1), PROTO_EINVAL);
    proto_buf_dispose(&b);
    assert_null(b.base);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    proto_buf_dispose(&b); /* twice is fine */
    proto_buf_dispose(NULL);
    proto_buf_reset(NULL);
}

/* ---- randomized -------------------------------------------------------------- */

static void test_proto_decode_mutations_never_crash(void **state)
{
    static const uint64_t seeds[] = {1, 0x5eed, 20240601};
    proto_msg_t m[MAX_SAMPLES];
    proto_buf_t b = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    unsigned accepted = 0, rejected = 0;
    (void)state;

    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        rng_t r;
        rng_init(&r, seeds[s]);
        for (unsigned iter = 0; iter < 20000; iter++) {
            size_t i = rng_below(&r, (uint32_t)n), len, cap;
            uint8_t *p;
            const char *bad;
            int rc;

            proto_buf_reset(&b);
            assert_int_equal(proto_encode(&m[i], &b), 0);
            if (b.len > 400)
                continue; /* the big samples would only slow this down */
            cap = b.len + 8;
            p = malloc(cap);
            assert_non_null(p);
            memcpy(p, b.base, b.len);
            len = b.len;
            for (unsigned k = 1 + rng_below(&r, 4); k > 0; k--) {
                size_t at = rng_below(&r, (uint32_t)len);
                switch (rng_below(&r, 6)) {
                case 0: /* flip a bit */
                    p[at] ^= (uint8_t)(1u << rng_below(&r, 8));
                    break;
                case 1: /* replace a byte with an interesting one */
                    p[at] = (const uint8_t[]){
                        0x00, 0x7f, 0x80, 0x90, 0x9f, 0xc0, 0xc1, 0xc4, 0xc6,
                        0xca, 0xcf, 0xd3, 0xd9, 0xdb, 0xdd, 0xdf, 0xe0, 0xff}[rng_below(&r, 18)];
                    break;
                case 2: /* a random byte */
                    p[at] = (uint8_t)rng_next(&r);
                    break;
                case 3: /* cut */
                    len = at;
                    break;
                case 4: /* insert a byte */
                    if (len < cap) {
                        memmove(p + at + 1, p + at, len - at);
                        p[at] = (uint8_t)rng_next(&r);
                        len++;
                    }
                    break;
                default: /* delete a byte */
                    if (len > 0) {
                        memmove(p + at, p + at + 1, len - at - 1);
                        len--;
                    }
                    break;
                }
                if (len == 0)
                    break;
            }
            {
                /* decode from a block of exactly len bytes */
                uint8_t *exact = malloc(len ? len : 1);
                assert_non_null(exact);
                memcpy(exact, p, len);
                bad = fuzz_proto_check(exact, len, &rc);
                free(exact);
            }
            free(p);
            if (bad != NULL)
                fail_msg("seed %llu iteration %u (sample %zu): %s", (unsigned long long)seeds[s],
                         iter, i, bad);
            if (rc == 0)
                accepted++;
            else
                rejected++;
        }
    }
    /* the mutations reach both outcomes */
    assert_true(accepted > 1000);
    assert_true(rejected > 1000);
    proto_buf_dispose(&b);
}

/* ---- the seed corpus ------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Every file of tests/fuzz/corpus/proto/ passes the fuzz target's check, and its
 * name's prefix states the decode result: ok-, malformed-, type- or limit-.
 */
static void test_proto_decode_corpus(void **state)
{
    DIR *dir = opendir(WEFT_CORPUS_DIR "/proto");
    struct dirent *de;
    char *names[256];
    size_t count = 0, kinds[4] = {0};
    (void)state;

    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        assert_true(count < 256);
        names[count] = strdup(de->d_name);
        assert_non_null(names[count]);
        count++;
    }
    closedir(dir);
    qsort(names, count, sizeof names[0], by_name);
    for (size_t i = 0; i < count; i++) {
        static const struct {
            const char *prefix;
            int rc;
        } want[] = {
            {"ok-", 0},
            {"malformed-", PROTO_EMALFORMED},
            {"type-", PROTO_ETYPE},
            {"limit-", PROTO_ELIMIT},
        };
        char path[512];
        static uint8_t buf[1 << 17];
        size_t len;
        FILE *f;
        const char *bad;
        int rc, k;

        snprintf(path, sizeof path, "%s/%s", WEFT_CORPUS_DIR "/proto", names[i]);
        f = fopen(path, "rb");
        assert_non_null(f);
        len = fread(buf, 1, sizeof buf, f);
        assert_true(feof(f));
        fclose(f);
        bad = fuzz_proto_check(buf, len, &rc);
        if (bad != NULL)
            fail_msg("%s: %s", names[i], bad);
        for (k = 0; k < 4; k++)
            if (strncmp(names[i], want[k].prefix, strlen(want[k].prefix)) == 0)
                break;
        if (k == 4)
            fail_msg("%s: name has none of the prefixes ok-, malformed-, type-, limit-", names[i]);
        if (rc != want[k].rc)
            fail_msg("%s: decode gave %d (%s)", names[i], rc, proto_strerror(rc));
        kinds[k]++;
        free(names[i]);
    }
    for (int k = 0; k < 4; k++)
        assert_true(kinds[k] > 0);
}

/* ---- no allocation on the decode path ------------------------------------------ */

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TEST_NO_MALLOC_HOOK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_NO_MALLOC_HOOK 1
#endif

#if defined(__GLIBC__) && !defined(TEST_NO_MALLOC_HOOK)
/* Counts malloc calls (from this program and from libmsgpackc) while `counting`
 * is set, forwarding to glibc's allocator. Only in builds without a sanitizer,
 * which would bring its own malloc. */
extern void *__libc_malloc(size_t size);
static volatile int malloc_counting;
static volatile unsigned long malloc_calls;

void *malloc(size_t size)
{
    if (malloc_counting)
        malloc_calls++;
    return __libc_malloc(size);
}

static void test_proto_decode_allocates_nothing(void **state)
{
    proto_msg_t m[MAX_SAMPLES], d;
    proto_buf_t b = {0};
    size_t n = sample_msgs(m, MAX_SAMPLES);
    (void)state;

    for (size_t i = 0; i < n; i++)
        assert_int_equal(proto_encode(&m[i], &b), 0);
    /* the hook works */
    malloc_counting = 1;
    {
        void *volatile p = malloc(16);
        free(p);
    }
    malloc_counting = 0;
    assert_int_equal(malloc_calls, 1);
    /* and sees the allocations made inside libmsgpackc */
    malloc_calls = 0;
    malloc_counting = 1;
    msgpack_zone_free(msgpack_zone_new(64));
    malloc_counting = 0;
    assert_true(malloc_calls >= 1);
    malloc_calls = 0;
    for (size_t i = 0, off = 0; i < n; i++) {
        proto_buf_t one = {0};
        assert_int_equal(proto_encode(&m[i], &one), 0);
        malloc_counting = 1;
        int rc = proto_decode(b.base + off, one.len, &d);
        int peek = proto_peek_type(b.base + off, one.len);
        malloc_counting = 0;
        assert_int_equal(rc, 0);
        assert_int_equal(peek, (int)m[i].type);
        off += one.len;
        proto_buf_dispose(&one);
    }
    if (malloc_calls != 0)
        fail_msg("decode of %zu messages called malloc %lu times", n, malloc_calls);
    proto_buf_dispose(&b);
}
#define NO_MALLOC_TEST cmocka_unit_test_setup(test_proto_decode_allocates_nothing, setup_big),
#else
#define NO_MALLOC_TEST
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_strerror_every_code),
        cmocka_unit_test(test_proto_wire_error_name_every_code),
        cmocka_unit_test(test_proto_wire_error_for_decode_results),
        cmocka_unit_test(test_proto_type_name_every_type),
        cmocka_unit_test(test_proto_encode_roundtrip_every_type),
        cmocka_unit_test(test_proto_decode_doc_examples),
        cmocka_unit_test(test_proto_history_fields),
        cmocka_unit_test(test_proto_decode_truncated_every_prefix),
        cmocka_unit_test(test_proto_decode_trailing_bytes),
        cmocka_unit_test(test_proto_decode_nested_containers),
        cmocka_unit_test(test_proto_decode_huge_counts),
        cmocka_unit_test(test_proto_decode_invalid_utf8),
        cmocka_unit_test(test_proto_decode_over_limit),
        cmocka_unit_test(test_proto_decode_wrong_types),
        cmocka_unit_test(test_proto_decode_missing_elements),
        cmocka_unit_test(test_proto_decode_unknown_types),
        cmocka_unit_test(test_proto_decode_integer_encodings),
        cmocka_unit_test(test_proto_decode_floats_and_ext),
        cmocka_unit_test(test_proto_decode_replica_zero),
        cmocka_unit_test(test_proto_decode_half_selection),
        cmocka_unit_test(test_proto_decode_extra_elements_ignored),
        cmocka_unit_test(test_proto_decode_pointers_into_input),
        cmocka_unit_test(test_proto_decode_error_leaves_out_untouched),
        cmocka_unit_test(test_proto_peek_type_reads_only_the_head),
        cmocka_unit_test(test_proto_encode_rejects_invalid),
        cmocka_unit_test(test_proto_encode_appends),
        cmocka_unit_test(test_proto_encode_update_matches_encode),
        cmocka_unit_test(test_proto_buf_reset_keeps_capacity),
        cmocka_unit_test(test_proto_decode_mutations_never_crash),
        cmocka_unit_test(test_proto_decode_corpus),
        NO_MALLOC_TEST};
    return cmocka_run_group_tests(tests, setup_big, NULL);
}
