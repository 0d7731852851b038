/* SPDX-License-Identifier: MIT */
/*
 * proto.h: the public interface of weft's wire codec (docs/protocol.md, version 1).
 *
 * Every WebSocket message between an editor and weftd is one msgpack array whose
 * element 0 is the message type. This module turns such bytes into a proto_msg_t
 * (proto_decode) and a proto_msg_t into bytes (proto_encode), checking every rule
 * and limit of docs/protocol.md on the way in and on the way out, so a message the
 * encoder accepts is one the decoder accepts, with the same fields.
 *
 * Decoding never trusts the input: a bounded walk over the bytes (at most 16
 * scalar elements, every length checked against the bytes that remain, no nested
 * containers) runs before msgpack-c sees them, so no input can make the decoder
 * reserve memory from a declared count. Decoding allocates nothing: byte fields of
 * the result point into the input buffer.
 *
 * Threads. There is no global mutable state; any function may run on any thread.
 * A proto_buf_t is used by one thread at a time.
 *
 * Errors. Functions that can fail return 0 or a negative PROTO_E* code (-100 ..
 * -199); on failure their output arguments are left untouched. Those codes are this
 * library's; the numbers an ERROR message carries on the wire are the separate
 * PROTO_ERR_* list (proto_wire_error_for() maps one to the other for decode errors).
 */
#ifndef WEFT_PROTO_H
#define WEFT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version this module speaks (HELLO and WELCOME carry it). */
#define PROTO_VERSION 1

/* Error codes, -100 .. -199. Generated with proto_strerror() from one list. */
#define PROTO_ERRNO_MAP(X)                                                                         \
    X(ENOMEM, -100, "out of memory")                                                               \
    X(EINVAL, -101, "invalid argument")                                                            \
    X(EMALFORMED, -102, "malformed message")                                                       \
    X(ETYPE, -103, "message type not defined by this protocol version")                            \
    X(ELIMIT, -104, "a message field is over its size limit")                                      \
    X(EINTERNAL, -105, "internal consistency check failed")

enum proto_errno {
#define PROTO__ERRNO_ENUM(name, value, text) PROTO_##name = value,
    PROTO_ERRNO_MAP(PROTO__ERRNO_ENUM)
#undef PROTO__ERRNO_ENUM
};

/* Returns a static, human-readable description of an error code (never NULL). */
const char *proto_strerror(int err);

/* Message types (element 0 of every message). 1..10 are the editing messages,
 * 16 and 17 the history request and its answer (docs/history.md); 11..15 and
 * 18..31 are reserved and decode, like every other number, as PROTO_ETYPE. */
enum proto_type {
    PROTO_HELLO = 1,
    PROTO_WELCOME = 2,
    PROTO_SYNC1 = 3,
    PROTO_SYNC2 = 4,
    PROTO_UPDATE = 5,
    PROTO_ACK = 6,
    PROTO_PRESENCE = 7,
    PROTO_PRESENCE_STATE = 8,
    PROTO_PRESENCE_LEAVE = 9,
    PROTO_ERROR = 10,
    PROTO_HISTORY = 16,
    PROTO_HISTORY_RESULT = 17
};

/* 1 when `type` is a message type this version defines (1..10, 16, 17). */
int proto_type_defined(uint64_t type);

/* Returns the upper-case name of a message type ("HELLO", ..., "HISTORY",
 * "HISTORY_RESULT"), "RESERVED" for the reserved 11..15 and 18..31, or "UNKNOWN".
 * Static, never NULL. For logs. */
const char *proto_type_name(uint64_t type);

/* Wire error codes carried by the ERROR message (the table in docs/protocol.md). */
#define PROTO_WIRE_ERRORS(X)                                                                       \
    X(BAD_MESSAGE, 1, "bad_message")                                                               \
    X(UNKNOWN_TYPE, 2, "unknown_type")                                                             \
    X(VERSION_UNSUPPORTED, 3, "version_unsupported")                                               \
    X(NOT_HELLO_FIRST, 4, "not_hello_first")                                                       \
    X(TOO_LARGE, 5, "too_large")                                                                   \
    X(BAD_UPDATE, 6, "bad_update")                                                                 \
    X(REPLICA_IN_USE, 7, "replica_in_use")                                                         \
    X(SERVER_ERROR, 8, "server_error")                                                             \
    X(SLOW_CONSUMER, 9, "slow_consumer")                                                           \
    X(UNAUTHORIZED, 10, "unauthorized")                                                            \
    X(READ_ONLY, 11, "read_only")                                                                  \
    X(RATE_LIMITED, 12, "rate_limited")                                                            \
    X(DOCUMENT_TOO_LARGE, 13, "document_too_large")                                                \
    X(SHUTTING_DOWN, 14, "shutting_down")

enum proto_wire_error {
#define PROTO__WIRE_ENUM(name, value, text) PROTO_ERR_##name = value,
    PROTO_WIRE_ERRORS(PROTO__WIRE_ENUM)
#undef PROTO__WIRE_ENUM
};

/* Returns the protocol name of a wire error code ("bad_message", ...), or "unknown"
 * for a code the table does not define. Static, never NULL. */
const char *proto_wire_error_name(uint32_t code);

/*
 * Maps a proto_decode() result to the wire code the server answers it with:
 * PROTO_EMALFORMED -> PROTO_ERR_BAD_MESSAGE, PROTO_ETYPE -> PROTO_ERR_UNKNOWN_TYPE,
 * PROTO_ELIMIT -> PROTO_ERR_TOO_LARGE, anything else negative (ENOMEM, EINTERNAL,
 * EINVAL) -> PROTO_ERR_SERVER_ERROR. Returns 0 for 0.
 */
uint32_t proto_wire_error_for(int err);

/* Field limits of docs/protocol.md, in bytes. */
#define PROTO_MAX_NAME 64           /* HELLO / PRESENCE_STATE name (str) */
#define PROTO_MAX_COLOR 32          /* HELLO / PRESENCE_STATE color (str) */
#define PROTO_MAX_TOKEN 4096        /* HELLO token (str or nil) */
#define PROTO_MAX_SV 65536          /* SYNC1 state vector (bin) */
#define PROTO_MAX_RELPOS 16         /* PRESENCE(_STATE) anchor and head (bin or nil) */
#define PROTO_MAX_ERROR_MESSAGE 256 /* ERROR message (str) */
#define PROTO_MAX_METHOD 8          /* HISTORY method (str) */
#define PROTO_MAX_PATH 512          /* HISTORY path (str) */
#define PROTO_MAX_HISTORY_BODY 4096 /* HISTORY body (str or nil) */
/* HISTORY_RESULT body (str) has no limit of its own: the message limit bounds it. */
/* Most elements a message may have (defined ones plus ignored later ones). */
#define PROTO_MAX_ELEMENTS 16

/*
 * Borrowed bytes. After proto_decode, `base` points into the decoded input and is
 * valid while the input is; it is NULL only for a nil field (token, anchor, head),
 * and non-NULL for an empty str/bin. For proto_encode, `base` NULL means nil in the
 * fields that may be nil, and an empty value elsewhere (then `len` must be 0).
 * str fields (name, color, token, message) hold UTF-8 and are not NUL-terminated.
 */
typedef struct {
    const uint8_t *base;
    size_t len;
} proto_bytes_t;

/*
 * One message, as laid out in docs/protocol.md. Only the member of `u` named after
 * `type` is meaningful. Integers are as on the wire, except:
 *   - replica is never 0 (HELLO, WELCOME, PRESENCE_STATE, PRESENCE_LEAVE);
 *   - error.code and history_result.status fit in 32 bits (larger is malformed);
 *     unknown codes are kept; a status is not checked against HTTP's list;
 *   - presence anchor and head are both nil or both bin.
 * version is not checked against PROTO_VERSION: answering another version with
 * `version_unsupported` is the server's job.
 */
typedef struct proto_msg {
    enum proto_type type;
    union {
        struct {
            uint64_t version, replica;
            proto_bytes_t name, color, token; /* token.base NULL if nil */
        } hello;
        struct {
            uint64_t version, replica, max_message;
        } welcome;
        struct {
            proto_bytes_t sv;
        } sync1;
        struct {
            proto_bytes_t update;
        } sync2;
        struct {
            uint64_t seq;
            proto_bytes_t update;
        } update;
        struct {
            uint64_t seq;
        } ack;
        struct {
            proto_bytes_t anchor, head; /* base NULL = nil */
        } presence;
        struct {
            uint64_t replica;
            proto_bytes_t name, color, anchor, head;
        } presence_state;
        struct {
            uint64_t replica;
        } presence_leave;
        struct {
            uint32_t code;
            uint64_t seq;
            proto_bytes_t message;
        } error;
        struct {
            uint64_t req;                     /* chosen by the client, echoed in the result */
            proto_bytes_t method, path, body; /* body.base NULL if nil */
        } history;
        struct {
            uint64_t req;
            uint32_t status;    /* the HTTP status of the REST route */
            proto_bytes_t body; /* JSON */
        } history_result;
    } u;
} proto_msg_t;

/*
 * Growable output buffer. A zeroed proto_buf_t ({0}) is an empty buffer ready for
 * use; `base[0 .. len)` holds what was encoded. The memory is malloc'd by this
 * module and released with proto_buf_dispose() (never free() it yourself).
 */
typedef struct {
    uint8_t *base;
    size_t len, cap;
} proto_buf_t;

/* Frees the buffer's memory and zeroes it. Safe on a zeroed buffer. */
void proto_buf_dispose(proto_buf_t *buf);

/* Sets len to 0 and keeps the memory for the next encodes. */
void proto_buf_reset(proto_buf_t *buf);

/* Makes room for at least `extra` more bytes after len, so that encodes up to that
 * size do not reallocate. Returns 0, PROTO_ENOMEM or PROTO_EINVAL (buf NULL or size
 * overflow); on error the buffer is unchanged. */
int proto_buf_reserve(proto_buf_t *buf, size_t extra);

/*
 * Decodes one whole message from data[0 .. len). On success returns 0 and fills
 * *out; its byte fields point INTO `data` and stay valid as long as `data` does.
 * Allocates nothing.
 *
 * The input is checked in this order, the first failure giving the result:
 *   1. a msgpack array header of 1..16 elements (fixarray, array16 or array32),
 *      then element 0, an unsigned integer:                      else PROTO_EMALFORMED
 *   2. the type is 1..10, 16 or 17:     else PROTO_ETYPE (0, 11..15, 18.., reserved ..31)
 *   3. every other element is a scalar whose bytes are all there: nil, bool, an
 *      integer, a str holding valid UTF-8, or a bin; no float, ext, array or map,
 *      and no byte after the array:                              else PROTO_EMALFORMED
 *   4. the defined fields, in order: present and of their type (integers given in
 *      any msgpack encoding whose value is >= 0, so uint8..64, fixint and a signed
 *      encoding of a non-negative value all work; a negative value, a bool or nil
 *      where an integer is due is malformed), replica not 0, error code and
 *      history status < 2^32,
 *      anchor and head both nil or both bin:                     else PROTO_EMALFORMED
 *      and within their limit (PROTO_MAX_*):                     else PROTO_ELIMIT
 * Elements after the defined ones pass step 3 and are otherwise ignored.
 * An undefined type is reported as PROTO_ETYPE whatever follows element 0.
 *
 * Returns 0, PROTO_EMALFORMED, PROTO_ETYPE, PROTO_ELIMIT, PROTO_EINVAL (data or out
 * NULL), PROTO_ENOMEM or PROTO_EINTERNAL (msgpack-c disagreed with the walk; a
 * bug). On error *out is untouched.
 */
int proto_decode(const uint8_t *data, size_t len, proto_msg_t *out);

/*
 * Reads only the type of a message: the array header and element 0, the first
 * 2..10 bytes. Nothing after element 0 is looked at, so a message that
 * proto_decode() rejects may still have a type here; a server uses it to tell
 * an unknown type from a damaged message, or to route without decoding.
 * Returns the type (>= 0, whether or not this version defines it), PROTO_ETYPE for
 * a type number above INT32_MAX, or PROTO_EMALFORMED when the bytes do not start
 * with an array header of 1..16 elements followed by an unsigned integer.
 */
int proto_peek_type(const uint8_t *data, size_t len);

/*
 * Appends the encoding of *msg to *out (so several encodes can share one buffer),
 * in the shortest msgpack form of every value and with exactly the elements the
 * type defines. The result decodes to the same fields.
 * The message is checked against the same rules as decoding:
 *   PROTO_EINVAL  msg or out NULL; an undefined type; replica 0; error.code 0 is
 *                 allowed; a str field that is not valid UTF-8; base NULL with len
 *                 > 0; anchor and head not both nil or both given;
 *   PROTO_ELIMIT  a field over its PROTO_MAX_* limit, or a str/bin of 2^32 bytes or
 *                 more.
 * Returns 0, PROTO_EINVAL, PROTO_ELIMIT or PROTO_ENOMEM; on error out->len and the
 * bytes before it are unchanged (the buffer may have grown).
 */
int proto_encode(const proto_msg_t *msg, proto_buf_t *out);

/*
 * Appends an UPDATE message [5, seq, update] framing `len` bytes at `update`
 * without building a proto_msg_t (the server's per-tick broadcast). Same result and
 * return codes as proto_encode() of that message; `update` may be NULL if len is 0.
 */
int proto_encode_update(proto_buf_t *out, uint64_t seq, const uint8_t *update, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_PROTO_H */
