/* SPDX-License-Identifier: MIT */
/*
 * proto.c: the msgpack codec of weft's wire messages (protocol/proto.h,
 * docs/protocol.md). Decoding is two passes over the input: a walk of our own
 * that bounds everything (array of at most 16 scalars, every length within the
 * bytes left, UTF-8 of every str) and records where each element lies, then
 * msgpack-c's unpacker on bytes already known to be safe, unpacking into a zone
 * that lives on the stack, so no message allocates. Encoding packs with
 * msgpack-c's packer, whose write callback appends to a proto_buf_t that was
 * grown once, up front, to the message's exact size. No global mutable state.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "proto.h"

/* ---- error names ------------------------------------------------------- */

const char *proto_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define PROTO__ERRNO_CASE(name, value, text)                                                       \
    case value:                                                                                    \
        return text;
        PROTO_ERRNO_MAP(PROTO__ERRNO_CASE)
#undef PROTO__ERRNO_CASE
    default:
        return "unknown error";
    }
}

const char *proto_wire_error_name(uint32_t code)
{
    switch (code) {
#define PROTO__WIRE_CASE(name, value, text)                                                        \
    case value:                                                                                    \
        return text;
        PROTO_WIRE_ERRORS(PROTO__WIRE_CASE)
#undef PROTO__WIRE_CASE
    default:
        return "unknown";
    }
}

uint32_t proto_wire_error_for(int err)
{
    switch (err) {
    case 0:
        return 0;
    case PROTO_EMALFORMED:
        return PROTO_ERR_BAD_MESSAGE;
    case PROTO_ETYPE:
        return PROTO_ERR_UNKNOWN_TYPE;
    case PROTO_ELIMIT:
        return PROTO_ERR_TOO_LARGE;
    default:
        return PROTO_ERR_SERVER_ERROR;
    }
}

const char *proto_type_name(uint64_t type)
{
    static const char *const names[] = {
        NULL,  "HELLO",    "WELCOME",        "SYNC1",          "SYNC2", "UPDATE",
        "ACK", "PRESENCE", "PRESENCE_STATE", "PRESENCE_LEAVE", "ERROR",
    };
    if (type >= 1 && type <= PROTO_ERROR)
        return names[type];
    if (type == PROTO_HISTORY)
        return "HISTORY";
    if (type == PROTO_HISTORY_RESULT)
        return "HISTORY_RESULT";
    if (type >= 11 && type <= 31)
        return "RESERVED";
    return "UNKNOWN";
}

/* Elements each type defines, element 0 (the type) included. */
static unsigned defined_elements(uint64_t type)
{
    static const unsigned char n[] = {0, 6, 4, 2, 2, 3, 2, 3, 6, 2, 4, 0, 0, 0, 0, 0, 5, 4};
    return type < sizeof n ? n[type] : 0;
}

int proto_type_defined(uint64_t type)
{
    return defined_elements(type) != 0;
}

/* ---- output buffer ----------------------------------------------------- */

void proto_buf_dispose(proto_buf_t *buf)
{
    if (buf == NULL)
        return;
    free(buf->base);
    buf->base = NULL;
    buf->len = buf->cap = 0;
}

void proto_buf_reset(proto_buf_t *buf)
{
    if (buf != NULL)
        buf->len = 0;
}

int proto_buf_reserve(proto_buf_t *buf, size_t extra)
{
    size_t need, cap;
    uint8_t *p;

    if (buf == NULL || extra > SIZE_MAX - buf->len)
        return PROTO_EINVAL;
    need = buf->len + extra;
    if (need <= buf->cap)
        return 0;
    /* Grow by half (at least to 64 bytes) so appends are amortized O(1). */
    cap = buf->cap < 64 ? 64 : buf->cap;
    while (cap < need)
        cap = cap > SIZE_MAX - cap / 2 ? need : cap + cap / 2;
    p = realloc(buf->base, cap);
    if (p == NULL)
        return PROTO_ENOMEM;
    buf->base = p;
    buf->cap = cap;
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* True if s[0 .. n) is valid UTF-8: shortest forms only, no surrogates
 * (U+D800..DFFF), nothing above U+10FFFF. ASCII runs take a fast path. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) {
            if (n - i < 2 || (s[i + 1] & 0xc0) != 0x80)
                return false;
            i += 2;
        } else if (b >= 0xe0 && b <= 0xef) {
            uint8_t lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
            if (n - i < 3 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xc0) != 0x80)
                return false;
            i += 3;
        } else if (b >= 0xf0 && b <= 0xf4) {
            uint8_t lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
            if (n - i < 4 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xc0) != 0x80 ||
                (s[i + 3] & 0xc0) != 0x80)
                return false;
            i += 4;
        } else {
            return false; /* continuation byte, 0xc0/0xc1 overlong lead, or > 0xf4 */
        }
    }
    return true;
}

/* ---- decoding: the bounding walk --------------------------------------- */

enum kind { K_NIL, K_BOOL, K_UINT, K_NINT, K_STR, K_BIN };

/* Where one scalar element lies in the input. For K_STR/K_BIN, `off` is the
 * offset of the payload and `len` its size; for K_UINT, `u` is the value. */
struct elem {
    enum kind kind;
    size_t off, len;
    uint64_t u;
};

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * Reads the array header at data[0]. On success sets *count (1..16) and *pos to
 * the first element. Counts above 16 are rejected before anything else looks at
 * them, so a declared count never sizes anything.
 */
static int walk_header(const uint8_t *data, size_t len, size_t *pos, unsigned *count)
{
    uint64_t n;
    size_t p;

    if (len == 0)
        return PROTO_EMALFORMED;
    if (data[0] >= 0x90 && data[0] <= 0x9f) {
        n = data[0] & 0x0f;
        p = 1;
    } else if (data[0] == 0xdc || data[0] == 0xdd) {
        unsigned w = data[0] == 0xdc ? 2 : 4;
        if (len < 1 + (size_t)w)
            return PROTO_EMALFORMED;
        n = load_be(data + 1, w);
        p = 1 + w;
    } else {
        return PROTO_EMALFORMED;
    }
    if (n == 0 || n > PROTO_MAX_ELEMENTS)
        return PROTO_EMALFORMED;
    *pos = p;
    *count = (unsigned)n;
    return 0;
}

/*
 * Reads the scalar at data[*pos] into *e and advances *pos past it. Every length
 * is checked against the bytes left before it is used; str payloads are checked
 * for UTF-8. Arrays, maps, floats, ext types and the unused byte 0xc1 are
 * PROTO_EMALFORMED.
 */
static int walk_scalar(const uint8_t *data, size_t len, size_t *pos, struct elem *e)
{
    size_t p = *pos, left;
    uint8_t b;
    unsigned w; /* width of a length or integer field after the lead byte */

    if (p >= len)
        return PROTO_EMALFORMED;
    b = data[p++];
    left = len - p;
    e->off = p;
    e->len = 0;
    e->u = 0;
    if (b <= 0x7f) {
        e->kind = K_UINT;
        e->u = b;
    } else if (b >= 0xe0) {
        e->kind = K_NINT;
    } else if (b >= 0xa0 && b <= 0xbf) {
        e->kind = K_STR;
        e->len = b & 0x1f;
    } else if (b == 0xc0) {
        e->kind = K_NIL;
    } else if (b == 0xc2 || b == 0xc3) {
        e->kind = K_BOOL;
        e->u = b == 0xc3;
    } else if (b >= 0xcc && b <= 0xd3) {
        /* uint8..64 (0xcc..0xcf), int8..64 (0xd0..0xd3) */
        w = 1u << ((b - 0xcc) & 3);
        if (left < w)
            return PROTO_EMALFORMED;
        e->u = load_be(data + p, w);
        p += w;
        if (b >= 0xd0 && (e->u >> (8 * w - 1)) != 0)
            e->kind = K_NINT; /* sign bit set: a negative value */
        else
            e->kind = K_UINT;
    } else if ((b >= 0xc4 && b <= 0xc6) || (b >= 0xd9 && b <= 0xdb)) {
        /* bin8/16/32 (0xc4..0xc6), str8/16/32 (0xd9..0xdb) */
        e->kind = b <= 0xc6 ? K_BIN : K_STR;
        w = 1u << (b <= 0xc6 ? b - 0xc4 : b - 0xd9);
        if (left < w)
            return PROTO_EMALFORMED;
        e->len = (size_t)load_be(data + p, w);
        p += w;
        e->off = p;
    } else {
        /* 0x80..0x9f fixmap/fixarray, 0xc1, 0xc7..0xc9 ext, 0xca/0xcb float,
         * 0xd4..0xd8 fixext, 0xdc..0xdf array/map */
        return PROTO_EMALFORMED;
    }
    if (e->len > len - p)
        return PROTO_EMALFORMED;
    if (e->kind == K_STR && !utf8_valid(data + p, e->len))
        return PROTO_EMALFORMED;
    *pos = p + e->len;
    return 0;
}

int proto_peek_type(const uint8_t *data, size_t len)
{
    struct elem e;
    unsigned n;
    size_t pos;
    int rc;

    if (data == NULL)
        return PROTO_EMALFORMED;
    rc = walk_header(data, len, &pos, &n);
    if (rc == 0)
        rc = walk_scalar(data, len, &pos, &e);
    if (rc != 0 || e.kind != K_UINT)
        return PROTO_EMALFORMED;
    return e.u > INT32_MAX ? PROTO_ETYPE : (int)e.u;
}

/* ---- decoding: fields from msgpack-c's objects ------------------------- */

/*
 * Each getter reads field i from msgpack-c's object and the walk's record of the
 * same element. msgpack_unpack() leaves str/bin pointers into the input (it does
 * not copy them into its zone), but for an empty value the pointer it gives is
 * NULL (fixstr) or the address of the length byte (bin8), so the borrowed pointer
 * is taken from the walk's offset: always inside `data`, and non-NULL for an
 * empty value so it stays distinct from nil. For non-empty values we check that
 * msgpack-c agrees; a disagreement between the two parsers is PROTO_EINTERNAL.
 */
struct fields {
    const uint8_t *data;
    const msgpack_object *o;
    const struct elem *e;
};

static int get_uint(const struct fields *f, unsigned i, uint64_t *v)
{
    const msgpack_object *o = &f->o[i];

    if (f->e[i].kind != K_UINT)
        return PROTO_EMALFORMED;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 != f->e[i].u)
        return PROTO_EINTERNAL;
    *v = o->via.u64;
    return 0;
}

/* A str (want K_STR) or bin (K_BIN) of at most `max` bytes; nil too if
 * `nil_ok`, giving base NULL. */
static int get_bytes(const struct fields *f, unsigned i, enum kind want, bool nil_ok, size_t max,
                     proto_bytes_t *v)
{
    const msgpack_object *o = &f->o[i];
    const struct elem *e = &f->e[i];
    const char *ptr;
    uint32_t size;

    if (e->kind == K_NIL && nil_ok) {
        if (o->type != MSGPACK_OBJECT_NIL)
            return PROTO_EINTERNAL;
        v->base = NULL;
        v->len = 0;
        return 0;
    }
    if (e->kind != want)
        return PROTO_EMALFORMED;
    if (want == K_STR) {
        if (o->type != MSGPACK_OBJECT_STR)
            return PROTO_EINTERNAL;
        ptr = o->via.str.ptr;
        size = o->via.str.size;
    } else {
        if (o->type != MSGPACK_OBJECT_BIN)
            return PROTO_EINTERNAL;
        ptr = o->via.bin.ptr;
        size = o->via.bin.size;
    }
    if (size != e->len || (size > 0 && (const uint8_t *)ptr != f->data + e->off))
        return PROTO_EINTERNAL;
    if (e->len > max)
        return PROTO_ELIMIT;
    v->base = f->data + e->off;
    v->len = e->len;
    return 0;
}

static int get_replica(const struct fields *f, unsigned i, uint64_t *v)
{
    int rc = get_uint(f, i, v);
    return rc == 0 && *v == 0 ? PROTO_EMALFORMED : rc;
}

/* anchor and head: each bin of at most PROTO_MAX_RELPOS bytes or nil, both nil or
 * neither. */
static int get_selection(const struct fields *f, unsigned i, proto_bytes_t *anchor,
                         proto_bytes_t *head)
{
    int rc = get_bytes(f, i, K_BIN, true, PROTO_MAX_RELPOS, anchor);
    if (rc == 0)
        rc = get_bytes(f, i + 1, K_BIN, true, PROTO_MAX_RELPOS, head);
    if (rc == 0 && (anchor->base == NULL) != (head->base == NULL))
        rc = PROTO_EMALFORMED;
    return rc;
}

/* Fills *m from the elements; the type is known to be defined and the count to be
 * at least defined_elements(type). */
static int get_fields(const struct fields *f, proto_msg_t *m)
{
    int rc;
    uint64_t code;

    switch (m->type) {
    case PROTO_HELLO:
        if ((rc = get_uint(f, 1, &m->u.hello.version)) != 0 ||
            (rc = get_replica(f, 2, &m->u.hello.replica)) != 0 ||
            (rc = get_bytes(f, 3, K_STR, false, PROTO_MAX_NAME, &m->u.hello.name)) != 0 ||
            (rc = get_bytes(f, 4, K_STR, false, PROTO_MAX_COLOR, &m->u.hello.color)) != 0)
            return rc;
        return get_bytes(f, 5, K_STR, true, PROTO_MAX_TOKEN, &m->u.hello.token);
    case PROTO_WELCOME:
        if ((rc = get_uint(f, 1, &m->u.welcome.version)) != 0 ||
            (rc = get_replica(f, 2, &m->u.welcome.replica)) != 0)
            return rc;
        return get_uint(f, 3, &m->u.welcome.max_message);
    case PROTO_SYNC1:
        return get_bytes(f, 1, K_BIN, false, PROTO_MAX_SV, &m->u.sync1.sv);
    case PROTO_SYNC2:
        return get_bytes(f, 1, K_BIN, false, SIZE_MAX, &m->u.sync2.update);
    case PROTO_UPDATE:
        if ((rc = get_uint(f, 1, &m->u.update.seq)) != 0)
            return rc;
        return get_bytes(f, 2, K_BIN, false, SIZE_MAX, &m->u.update.update);
    case PROTO_ACK:
        return get_uint(f, 1, &m->u.ack.seq);
    case PROTO_PRESENCE:
        return get_selection(f, 1, &m->u.presence.anchor, &m->u.presence.head);
    case PROTO_PRESENCE_STATE:
        if ((rc = get_replica(f, 1, &m->u.presence_state.replica)) != 0 ||
            (rc = get_bytes(f, 2, K_STR, false, PROTO_MAX_NAME, &m->u.presence_state.name)) != 0 ||
            (rc = get_bytes(f, 3, K_STR, false, PROTO_MAX_COLOR, &m->u.presence_state.color)) != 0)
            return rc;
        return get_selection(f, 4, &m->u.presence_state.anchor, &m->u.presence_state.head);
    case PROTO_PRESENCE_LEAVE:
        return get_replica(f, 1, &m->u.presence_leave.replica);
    case PROTO_ERROR:
        if ((rc = get_uint(f, 1, &code)) != 0)
            return rc;
        if (code > UINT32_MAX)
            return PROTO_EMALFORMED;
        m->u.error.code = (uint32_t)code;
        if ((rc = get_bytes(f, 2, K_STR, false, PROTO_MAX_ERROR_MESSAGE, &m->u.error.message)) != 0)
            return rc;
        return get_uint(f, 3, &m->u.error.seq);
    case PROTO_HISTORY:
        if ((rc = get_uint(f, 1, &m->u.history.req)) != 0 ||
            (rc = get_bytes(f, 2, K_STR, false, PROTO_MAX_METHOD, &m->u.history.method)) != 0 ||
            (rc = get_bytes(f, 3, K_STR, false, PROTO_MAX_PATH, &m->u.history.path)) != 0)
            return rc;
        return get_bytes(f, 4, K_STR, true, PROTO_MAX_HISTORY_BODY, &m->u.history.body);
    case PROTO_HISTORY_RESULT:
        if ((rc = get_uint(f, 1, &m->u.history_result.req)) != 0 ||
            (rc = get_uint(f, 2, &code)) != 0)
            return rc;
        if (code > UINT32_MAX)
            return PROTO_EMALFORMED;
        m->u.history_result.status = (uint32_t)code;
        return get_bytes(f, 3, K_STR, false, SIZE_MAX, &m->u.history_result.body);
    }
    return PROTO_EINTERNAL;
}

int proto_decode(const uint8_t *data, size_t len, proto_msg_t *out)
{
    struct elem elems[PROTO_MAX_ELEMENTS];
    /* The zone msgpack-c unpacks into: the top-level array's element objects are
     * its only allocation (the walk proved there are at most 16 and no nested
     * container), so a stack block of that size serves every message. */
    union {
        msgpack_object objs[PROTO_MAX_ELEMENTS];
        char bytes[PROTO_MAX_ELEMENTS * sizeof(msgpack_object)];
    } chunk;
    msgpack_zone zone;
    msgpack_object root;
    msgpack_unpack_return ur;
    struct fields f;
    proto_msg_t m;
    uint64_t type;
    unsigned n, i;
    size_t pos, off = 0;
    int rc;

    if (data == NULL || out == NULL)
        return PROTO_EINVAL;

    /* Pass 1: header, type, then every element, all bounded by `len`. */
    if ((rc = walk_header(data, len, &pos, &n)) != 0)
        return rc;
    if ((rc = walk_scalar(data, len, &pos, &elems[0])) != 0)
        return rc;
    if (elems[0].kind != K_UINT)
        return PROTO_EMALFORMED;
    if (defined_elements(elems[0].u) == 0)
        return PROTO_ETYPE;
    for (i = 1; i < n; i++)
        if ((rc = walk_scalar(data, len, &pos, &elems[i])) != 0)
            return rc;
    if (pos != len)
        return PROTO_EMALFORMED; /* trailing bytes */
    if (n < defined_elements(elems[0].u))
        return PROTO_EMALFORMED; /* a required element is missing */

    /* Pass 2: msgpack-c, into the stack zone. The zone's fields are public in
     * msgpack/zone.h; a zone with no chunk list and `free` bytes at `ptr`
     * allocates from there and only calls malloc if that runs out. */
    memset(&zone, 0, sizeof zone);
    zone.chunk_list.free = sizeof chunk.bytes;
    zone.chunk_list.ptr = chunk.bytes;
    zone.chunk_size = MSGPACK_ZONE_CHUNK_SIZE;
    ur = msgpack_unpack((const char *)data, len, &off, &zone, &root);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        rc = PROTO_ENOMEM;
        goto done;
    }
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || root.type != MSGPACK_OBJECT_ARRAY ||
        root.via.array.size != n) {
        rc = PROTO_EINTERNAL;
        goto done;
    }

    f.data = data;
    f.o = root.via.array.ptr;
    f.e = elems;
    memset(&m, 0, sizeof m);
    if ((rc = get_uint(&f, 0, &type)) != 0)
        goto done;
    m.type = (enum proto_type)type;
    if ((rc = get_fields(&f, &m)) != 0)
        goto done;
    *out = m;

done:
    /* Only if msgpack-c ever needed more than the stack block (it should not). */
    if (zone.chunk_list.head != NULL)
        msgpack_zone_destroy(&zone);
    return rc;
}

/* ---- encoding ---------------------------------------------------------- */

/* msgpack-c's write callback: appends to the proto_buf_t given as `data`. */
static int buf_write(void *data, const char *bytes, size_t n)
{
    proto_buf_t *b = data;

    if (n == 0)
        return 0;
    if (proto_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->base + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* Encoded size of an unsigned integer in its shortest form. */
static size_t uint_size(uint64_t v)
{
    return v < 0x80 ? 1 : v <= UINT8_MAX ? 2 : v <= UINT16_MAX ? 3 : v <= UINT32_MAX ? 5 : 9;
}

/* Encoded size of a str or bin header (bin has no fixbin form). */
static size_t bytes_header_size(size_t len, bool str)
{
    if (str && len < 32)
        return 1;
    return len <= UINT8_MAX ? 2 : len <= UINT16_MAX ? 3 : 5;
}

/*
 * Checks one str/bin field for encoding and adds its encoded size to *size.
 * `nil_ok`: base NULL means nil (and len must be 0); otherwise base NULL with len 0
 * is an empty value.
 */
static int check_bytes(const proto_bytes_t *v, bool str, bool nil_ok, size_t max, size_t *size)
{
    if (v->base == NULL && v->len != 0)
        return PROTO_EINVAL;
    if (v->base == NULL && nil_ok) {
        *size += 1;
        return 0;
    }
    if (v->len > max || v->len > UINT32_MAX)
        return PROTO_ELIMIT;
    if (str && v->len > 0 && !utf8_valid(v->base, v->len))
        return PROTO_EINVAL;
    if (v->len > SIZE_MAX - 16 - *size)
        return PROTO_ELIMIT;
    *size += bytes_header_size(v->len, str) + v->len;
    return 0;
}

static int check_selection(const proto_bytes_t *anchor, const proto_bytes_t *head, size_t *size)
{
    int rc;

    if ((anchor->base == NULL) != (head->base == NULL))
        return PROTO_EINVAL;
    if ((rc = check_bytes(anchor, false, true, PROTO_MAX_RELPOS, size)) != 0)
        return rc;
    return check_bytes(head, false, true, PROTO_MAX_RELPOS, size);
}

/* Validates *m against the rules of proto_decode and computes its exact encoded
 * size (header and type byte included). */
static int check_msg(const proto_msg_t *m, size_t *size)
{
    size_t s = 1 + 1; /* fixarray header, the type (below 0x80) as a fixint */
    int rc = 0;

    switch (m->type) {
    case PROTO_HELLO:
        if (m->u.hello.replica == 0)
            return PROTO_EINVAL;
        s += uint_size(m->u.hello.version) + uint_size(m->u.hello.replica);
        if ((rc = check_bytes(&m->u.hello.name, true, false, PROTO_MAX_NAME, &s)) != 0 ||
            (rc = check_bytes(&m->u.hello.color, true, false, PROTO_MAX_COLOR, &s)) != 0 ||
            (rc = check_bytes(&m->u.hello.token, true, true, PROTO_MAX_TOKEN, &s)) != 0)
            return rc;
        break;
    case PROTO_WELCOME:
        if (m->u.welcome.replica == 0)
            return PROTO_EINVAL;
        s += uint_size(m->u.welcome.version) + uint_size(m->u.welcome.replica) +
             uint_size(m->u.welcome.max_message);
        break;
    case PROTO_SYNC1:
        rc = check_bytes(&m->u.sync1.sv, false, false, PROTO_MAX_SV, &s);
        break;
    case PROTO_SYNC2:
        rc = check_bytes(&m->u.sync2.update, false, false, SIZE_MAX, &s);
        break;
    case PROTO_UPDATE:
        s += uint_size(m->u.update.seq);
        rc = check_bytes(&m->u.update.update, false, false, SIZE_MAX, &s);
        break;
    case PROTO_ACK:
        s += uint_size(m->u.ack.seq);
        break;
    case PROTO_PRESENCE:
        rc = check_selection(&m->u.presence.anchor, &m->u.presence.head, &s);
        break;
    case PROTO_PRESENCE_STATE:
        if (m->u.presence_state.replica == 0)
            return PROTO_EINVAL;
        s += uint_size(m->u.presence_state.replica);
        if ((rc = check_bytes(&m->u.presence_state.name, true, false, PROTO_MAX_NAME, &s)) != 0 ||
            (rc = check_bytes(&m->u.presence_state.color, true, false, PROTO_MAX_COLOR, &s)) != 0)
            return rc;
        rc = check_selection(&m->u.presence_state.anchor, &m->u.presence_state.head, &s);
        break;
    case PROTO_PRESENCE_LEAVE:
        if (m->u.presence_leave.replica == 0)
            return PROTO_EINVAL;
        s += uint_size(m->u.presence_leave.replica);
        break;
    case PROTO_ERROR:
        s += uint_size(m->u.error.code) + uint_size(m->u.error.seq);
        rc = check_bytes(&m->u.error.message, true, false, PROTO_MAX_ERROR_MESSAGE, &s);
        break;
    case PROTO_HISTORY:
        s += uint_size(m->u.history.req);
        if ((rc = check_bytes(&m->u.history.method, true, false, PROTO_MAX_METHOD, &s)) != 0 ||
            (rc = check_bytes(&m->u.history.path, true, false, PROTO_MAX_PATH, &s)) != 0)
            return rc;
        rc = check_bytes(&m->u.history.body, true, true, PROTO_MAX_HISTORY_BODY, &s);
        break;
    case PROTO_HISTORY_RESULT:
        s += uint_size(m->u.history_result.req) + uint_size(m->u.history_result.status);
        rc = check_bytes(&m->u.history_result.body, true, false, SIZE_MAX, &s);
        break;
    default:
        return PROTO_EINVAL;
    }
    *size = s;
    return rc;
}

static int pack_bytes(msgpack_packer *pk, const proto_bytes_t *v, bool str)
{
    if (str)
        return msgpack_pack_str(pk, v->len) || msgpack_pack_str_body(pk, v->base, v->len);
    return msgpack_pack_bin(pk, v->len) || msgpack_pack_bin_body(pk, v->base, v->len);
}

/* A field that may be nil: base NULL packs nil. */
static int pack_opt(msgpack_packer *pk, const proto_bytes_t *v, bool str)
{
    return v->base == NULL ? msgpack_pack_nil(pk) : pack_bytes(pk, v, str);
}

/* Packs a message check_msg() accepted. Returns non-zero if a write failed. */
static int pack_msg(msgpack_packer *pk, const proto_msg_t *m)
{
    int e = msgpack_pack_array(pk, defined_elements(m->type)) ||
            msgpack_pack_uint64(pk, (uint64_t)m->type);

    switch (m->type) {
    case PROTO_HELLO:
        return e || msgpack_pack_uint64(pk, m->u.hello.version) ||
               msgpack_pack_uint64(pk, m->u.hello.replica) ||
               pack_bytes(pk, &m->u.hello.name, true) || pack_bytes(pk, &m->u.hello.color, true) ||
               pack_opt(pk, &m->u.hello.token, true);
    case PROTO_WELCOME:
        return e || msgpack_pack_uint64(pk, m->u.welcome.version) ||
               msgpack_pack_uint64(pk, m->u.welcome.replica) ||
               msgpack_pack_uint64(pk, m->u.welcome.max_message);
    case PROTO_SYNC1:
        return e || pack_bytes(pk, &m->u.sync1.sv, false);
    case PROTO_SYNC2:
        return e || pack_bytes(pk, &m->u.sync2.update, false);
    case PROTO_UPDATE:
        return e || msgpack_pack_uint64(pk, m->u.update.seq) ||
               pack_bytes(pk, &m->u.update.update, false);
    case PROTO_ACK:
        return e || msgpack_pack_uint64(pk, m->u.ack.seq);
    case PROTO_PRESENCE:
        return e || pack_opt(pk, &m->u.presence.anchor, false) ||
               pack_opt(pk, &m->u.presence.head, false);
    case PROTO_PRESENCE_STATE:
        return e || msgpack_pack_uint64(pk, m->u.presence_state.replica) ||
               pack_bytes(pk, &m->u.presence_state.name, true) ||
               pack_bytes(pk, &m->u.presence_state.color, true) ||
               pack_opt(pk, &m->u.presence_state.anchor, false) ||
               pack_opt(pk, &m->u.presence_state.head, false);
    case PROTO_PRESENCE_LEAVE:
        return e || msgpack_pack_uint64(pk, m->u.presence_leave.replica);
    case PROTO_ERROR:
        return e || msgpack_pack_uint64(pk, m->u.error.code) ||
               pack_bytes(pk, &m->u.error.message, true) || msgpack_pack_uint64(pk, m->u.error.seq);
    case PROTO_HISTORY:
        return e || msgpack_pack_uint64(pk, m->u.history.req) ||
               pack_bytes(pk, &m->u.history.method, true) ||
               pack_bytes(pk, &m->u.history.path, true) || pack_opt(pk, &m->u.history.body, true);
    case PROTO_HISTORY_RESULT:
        return e || msgpack_pack_uint64(pk, m->u.history_result.req) ||
               msgpack_pack_uint64(pk, m->u.history_result.status) ||
               pack_bytes(pk, &m->u.history_result.body, true);
    }
    return 1;
}

int proto_encode(const proto_msg_t *msg, proto_buf_t *out)
{
    msgpack_packer pk;
    size_t size = 0, start;
    int rc;

    if (msg == NULL || out == NULL)
        return PROTO_EINVAL;
    if ((rc = check_msg(msg, &size)) != 0)
        return rc;
    /* One reservation of the exact size: the packer's writes then only copy. */
    if ((rc = proto_buf_reserve(out, size)) != 0)
        return rc;
    start = out->len;
    msgpack_packer_init(&pk, out, buf_write);
    if (pack_msg(&pk, msg) != 0) {
        out->len = start;
        return PROTO_ENOMEM;
    }
    if (out->len - start != size) {
        out->len = start;
        return PROTO_EINTERNAL;
    }
    return 0;
}

int proto_encode_update(proto_buf_t *out, uint64_t seq, const uint8_t *update, size_t len)
{
    proto_msg_t m;

    m.type = PROTO_UPDATE;
    m.u.update.seq = seq;
    m.u.update.update.base = update;
    m.u.update.update.len = len;
    return proto_encode(&m, out);
}
