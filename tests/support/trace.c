/* SPDX-License-Identifier: MIT */
/*
 * trace.c: reads a gzipped JSON editing trace with zlib and parses it with a small
 * JSON parser that knows only what the traces need (objects, arrays, strings with
 * every JSON escape, unsigned integers; other values are validated and skipped).
 * Parsing appends into growable staging arrays (transactions, patches, parents and
 * one pool of decoded, NUL-terminated strings); a last pass checks the trace's
 * rules and packs everything into the single block that trace_free() releases.
 * Test support code: uses libc's allocator and stdio, holds no global state.
 */
#include "trace.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Nesting limit for values that are skipped, so hostile input cannot blow the stack. */
#define MAX_DEPTH 64
/* Largest decompressed file accepted; the biggest shared trace is 16 MB. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

/* A growable array of bytes; staging arrays hold elements of one type in it. */
typedef struct {
    char *base;
    size_t len, cap; /* in bytes */
} vec_t;

typedef struct {
    size_t parents_off, nparents; /* in stage parents (uint32_t) */
    size_t patches_off, npatches; /* in stage patches */
    uint32_t agent;
    unsigned char has_parents, has_agent;
} stage_txn_t;

typedef struct {
    uint32_t pos, del;
    size_t ins_off, ins_len; /* in the string pool */
} stage_patch_t;

/* A decoded string: offset and length in the string pool (which NUL-terminates it). */
typedef struct {
    size_t off, len;
} span_t;

typedef struct {
    const char *base, *p, *end; /* the JSON text and the read position */
    const char *name;
    char *err;
    size_t errlen;
    vec_t txns, patches, parents, pool;
    int non_bmp;
} parser_t;

/* What the top-level object held. */
typedef struct {
    span_t start, end, kind;
    uint32_t num_agents;
    unsigned char has_start, has_end, has_kind, has_num_agents, has_txns;
} root_t;

static void PRINTF_LIKE(3, 4) put_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reports an error at the current read position; always returns -1. */
static int PRINTF_LIKE(2, 3) fail(parser_t *ps, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    put_err(ps->err, ps->errlen, "%s: byte %zu: %s", ps->name, (size_t)(ps->p - ps->base), msg);
    return -1;
}

/* Reports an error about the trace's content rather than its syntax; returns -1. */
static int PRINTF_LIKE(2, 3) fail_trace(parser_t *ps, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    put_err(ps->err, ps->errlen, "%s: %s", ps->name, msg);
    return -1;
}

static int vec_reserve(parser_t *ps, vec_t *v, size_t more)
{
    size_t need, cap;
    char *p;

    if (v->cap - v->len >= more)
        return 0;
    if (more > SIZE_MAX - v->len)
        return fail(ps, "out of memory");
    need = v->len + more;
    cap = v->cap ? v->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(v->base, cap);
    if (p == NULL)
        return fail(ps, "out of memory");
    v->base = p;
    v->cap = cap;
    return 0;
}

static int vec_push(parser_t *ps, vec_t *v, const void *elem, size_t size)
{
    if (vec_reserve(ps, v, size) < 0)
        return -1;
    memcpy(v->base + v->len, elem, size);
    v->len += size;
    return 0;
}

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

/* Formats the byte at the read position for a message: 'c', \xHH or end of input. */
static const char *found(const parser_t *ps, char buf[8])
{
    unsigned char c;

    if (ps->p >= ps->end)
        return "end of input";
    c = (unsigned char)*ps->p;
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, 8, "'%c'", c);
    else
        snprintf(buf, 8, "\\x%02X", c);
    return buf;
}

/* Skips white space and consumes `c`, or fails. */
static int expect(parser_t *ps, char c)
{
    char buf[8];

    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != c)
        return fail(ps, "expected '%c', found %s", c, found(ps, buf));
    ps->p++;
    return 0;
}

/*
 * Consumes the opening bracket of an object or array. Returns 1 if an element
 * follows, 0 if the container is empty (the closing bracket is consumed too), -1 on
 * error. Use with next_elem():
 *     for (r = open_container(ps, '[', ']'); r == 1; r = next_elem(ps, ']')) ...
 */
static int open_container(parser_t *ps, char open, char close)
{
    if (expect(ps, open) < 0)
        return -1;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    return 1;
}

/* After an element: consumes ',' and returns 1, or the closing bracket and returns 0. */
static int next_elem(parser_t *ps, char close)
{
    char buf[8];

    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        return 1;
    }
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    return fail(ps, "expected ',' or '%c', found %s", close, found(ps, buf));
}

/*
 * Length of the valid UTF-8 sequence starting at `s` (a byte >= 0x80), or 0 if it is
 * invalid: overlong, a surrogate, above U+10FFFF, or cut short by `end`.
 */
static size_t utf8_seq_len(const unsigned char *s, const unsigned char *end)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n, i;

    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    if ((size_t)(end - s) < n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

static int hex4(parser_t *ps, uint32_t *out)
{
    uint32_t v = 0;
    int i;

    if (ps->end - ps->p < 4)
        return fail(ps, "truncated \\u escape");
    for (i = 0; i < 4; i++) {
        char c = ps->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return fail(ps, "bad hex digit in \\u escape");
    }
    ps->p += 4;
    *out = v;
    return 0;
}

/* Decodes the escape after a backslash (ps->p is past the backslash) into `out`. */
static int decode_escape(parser_t *ps, char out[4], size_t *n)
{
    uint32_t cp, lo;
    char c;

    if (ps->p >= ps->end)
        return fail(ps, "truncated escape");
    c = *ps->p++;
    *n = 1;
    switch (c) {
    case '"':
    case '\\':
    case '/':
        out[0] = c;
        return 0;
    case 'b':
        out[0] = '\b';
        return 0;
    case 'f':
        out[0] = '\f';
        return 0;
    case 'n':
        out[0] = '\n';
        return 0;
    case 'r':
        out[0] = '\r';
        return 0;
    case 't':
        out[0] = '\t';
        return 0;
    case 'u':
        break;
    default:
        ps->p--;
        return fail(ps, "invalid escape '\\%c'", c);
    }
    if (hex4(ps, &cp) < 0)
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(ps, "unpaired low surrogate \\u%04X", (unsigned)cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return fail(ps, "unpaired high surrogate \\u%04X", (unsigned)cp);
        ps->p += 2;
        if (hex4(ps, &lo) < 0)
            return -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail(ps, "high surrogate \\u%04X followed by \\u%04X", (unsigned)cp,
                        (unsigned)lo);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        *n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        *n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        *n = 4;
        ps->non_bmp = 1;
    }
    return 0;
}

/*
 * Parses a JSON string (after optional white space) and appends its decoded,
 * NUL-terminated UTF-8 bytes to the pool. Unescaped runs are validated as UTF-8 and
 * copied in one piece. A caller that only needs the string for a moment (a key, a
 * skipped value) truncates the pool back to out->off afterwards.
 */
static int parse_string(parser_t *ps, span_t *out)
{
    size_t start = ps->pool.len;

    if (expect(ps, '"') < 0)
        return -1;
    for (;;) {
        const char *run = ps->p;
        char esc[4];
        size_t n;

        while (ps->p < ps->end) {
            unsigned char c = (unsigned char)*ps->p;
            if (c >= 0x80) {
                n = utf8_seq_len((const unsigned char *)ps->p, (const unsigned char *)ps->end);
                if (n == 0)
                    return fail(ps, "invalid UTF-8 in string");
                if (n == 4)
                    ps->non_bmp = 1;
                ps->p += n;
            } else if (c == '"' || c == '\\' || c < 0x20) {
                break;
            } else {
                ps->p++;
            }
        }
        n = (size_t)(ps->p - run);
        if (n > 0) {
            if (vec_reserve(ps, &ps->pool, n) < 0)
                return -1;
            memcpy(ps->pool.base + ps->pool.len, run, n);
            ps->pool.len += n;
        }
        if (ps->p >= ps->end)
            return fail(ps, "unterminated string");
        if (*ps->p == '"')
            break;
        if (*ps->p != '\\')
            return fail(ps, "unescaped control character in string");
        ps->p++;
        if (decode_escape(ps, esc, &n) < 0 || vec_push(ps, &ps->pool, esc, n) < 0)
            return -1;
    }
    ps->p++;
    out->off = start;
    out->len = ps->pool.len - start;
    return vec_push(ps, &ps->pool, "", 1);
}

/* Parses an unsigned integer that fits 32 bits (JSON syntax: no sign, no leading 0). */
static int parse_u32(parser_t *ps, uint32_t *out)
{
    uint64_t v = 0;
    const char *digits;

    skip_ws(ps);
    digits = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        v = v * 10 + (uint64_t)(*ps->p - '0');
        if (v > UINT32_MAX)
            return fail(ps, "integer larger than 2^32 - 1");
        ps->p++;
    }
    if (ps->p == digits)
        return fail(ps, "expected an unsigned integer");
    if (*digits == '0' && ps->p - digits > 1) {
        ps->p = digits;
        return fail(ps, "integer with a leading zero");
    }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
        return fail(ps, "expected an integer, found a fraction or exponent");
    *out = (uint32_t)v;
    return 0;
}

static size_t skip_digits(parser_t *ps)
{
    const char *from = ps->p;

    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
        ps->p++;
    return (size_t)(ps->p - from);
}

/* Skips any JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(parser_t *ps)
{
    const char *digits;
    size_t n;

    if (ps->p < ps->end && *ps->p == '-')
        ps->p++;
    digits = ps->p;
    n = skip_digits(ps);
    if (n == 0 || (n > 1 && *digits == '0'))
        return fail(ps, "malformed number");
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (skip_digits(ps) == 0)
            return fail(ps, "malformed number");
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (skip_digits(ps) == 0)
            return fail(ps, "malformed number");
    }
    return 0;
}

static int skip_literal(parser_t *ps, const char *word)
{
    size_t n = strlen(word);
    char buf[8];

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected %s", found(ps, buf));
    ps->p += n;
    return 0;
}

/* Validates and skips one JSON value of any kind. */
static int skip_value(parser_t *ps, int depth)
{
    char buf[8];
    span_t s;
    int r;

    if (depth > MAX_DEPTH)
        return fail(ps, "values nested more than %d deep", MAX_DEPTH);
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "expected a value, found end of input");
    switch (*ps->p) {
    case '{':
        for (r = open_container(ps, '{', '}'); r == 1; r = next_elem(ps, '}')) {
            if (parse_string(ps, &s) < 0)
                return -1;
            ps->pool.len = s.off;
            if (expect(ps, ':') < 0 || skip_value(ps, depth + 1) < 0)
                return -1;
        }
        return r;
    case '[':
        for (r = open_container(ps, '[', ']'); r == 1; r = next_elem(ps, ']'))
            if (skip_value(ps, depth + 1) < 0)
                return -1;
        return r;
    case '"':
        if (parse_string(ps, &s) < 0)
            return -1;
        ps->pool.len = s.off;
        return 0;
    case 't':
        return skip_literal(ps, "true");
    case 'f':
        return skip_literal(ps, "false");
    case 'n':
        return skip_literal(ps, "null");
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return skip_number(ps);
        return fail(ps, "unexpected %s", found(ps, buf));
    }
}

/* Parses an object key and the ':' after it; the key stays in the pool at key->off. */
static int parse_key(parser_t *ps, span_t *key)
{
    if (parse_string(ps, key) < 0)
        return -1;
    return expect(ps, ':');
}

static int key_is(const parser_t *ps, span_t key, const char *name)
{
    return key.len == strlen(name) && memcmp(ps->pool.base + key.off, name, key.len) == 0;
}

/*
 * Claims a known key: fails on a second occurrence, otherwise drops the key from the
 * pool and sets *seen.
 */
static int claim_key(parser_t *ps, span_t key, unsigned char *seen)
{
    if (*seen)
        return fail(ps, "duplicate key \"%s\"", ps->pool.base + key.off);
    *seen = 1;
    ps->pool.len = key.off;
    return 0;
}

/* Parses [pos, del, "text"]. */
static int parse_patch(parser_t *ps)
{
    stage_patch_t patch;
    span_t ins;

    if (expect(ps, '[') < 0 || parse_u32(ps, &patch.pos) < 0 || expect(ps, ',') < 0 ||
        parse_u32(ps, &patch.del) < 0 || expect(ps, ',') < 0 || parse_string(ps, &ins) < 0)
        return -1;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ']')
        return fail(ps, "a patch must be [pos, delCount, \"text\"]");
    ps->p++;
    patch.ins_off = ins.off;
    patch.ins_len = ins.len;
    return vec_push(ps, &ps->patches, &patch, sizeof patch);
}

static int parse_txn(parser_t *ps)
{
    stage_txn_t txn;
    unsigned char has_patches = 0;
    const char *at;
    span_t key;
    uint32_t parent;
    int r, r2;

    memset(&txn, 0, sizeof txn);
    skip_ws(ps);
    at = ps->p;
    for (r = open_container(ps, '{', '}'); r == 1; r = next_elem(ps, '}')) {
        if (parse_key(ps, &key) < 0)
            return -1;
        if (key_is(ps, key, "patches")) {
            if (claim_key(ps, key, &has_patches) < 0)
                return -1;
            txn.patches_off = ps->patches.len / sizeof(stage_patch_t);
            for (r2 = open_container(ps, '[', ']'); r2 == 1; r2 = next_elem(ps, ']'))
                if (parse_patch(ps) < 0)
                    return -1;
            if (r2 < 0)
                return -1;
            txn.npatches = ps->patches.len / sizeof(stage_patch_t) - txn.patches_off;
        } else if (key_is(ps, key, "parents")) {
            if (claim_key(ps, key, &txn.has_parents) < 0)
                return -1;
            txn.parents_off = ps->parents.len / sizeof(uint32_t);
            for (r2 = open_container(ps, '[', ']'); r2 == 1; r2 = next_elem(ps, ']'))
                if (parse_u32(ps, &parent) < 0 ||
                    vec_push(ps, &ps->parents, &parent, sizeof parent) < 0)
                    return -1;
            if (r2 < 0)
                return -1;
            txn.nparents = ps->parents.len / sizeof(uint32_t) - txn.parents_off;
        } else if (key_is(ps, key, "agent")) {
            if (claim_key(ps, key, &txn.has_agent) < 0 || parse_u32(ps, &txn.agent) < 0)
                return -1;
        } else {
            ps->pool.len = key.off;
            if (skip_value(ps, 1) < 0)
                return -1;
        }
    }
    if (r < 0)
        return -1;
    if (!has_patches) {
        ps->p = at;
        return fail(ps, "transaction without \"patches\"");
    }
    return vec_push(ps, &ps->txns, &txn, sizeof txn);
}

static int parse_root(parser_t *ps, root_t *root)
{
    span_t key;
    int r, r2;

    skip_ws(ps);
    for (r = open_container(ps, '{', '}'); r == 1; r = next_elem(ps, '}')) {
        if (parse_key(ps, &key) < 0)
            return -1;
        if (key_is(ps, key, "txns")) {
            if (claim_key(ps, key, &root->has_txns) < 0)
                return -1;
            for (r2 = open_container(ps, '[', ']'); r2 == 1; r2 = next_elem(ps, ']'))
                if (parse_txn(ps) < 0)
                    return -1;
            if (r2 < 0)
                return -1;
        } else if (key_is(ps, key, "startContent")) {
            if (claim_key(ps, key, &root->has_start) < 0 || parse_string(ps, &root->start) < 0)
                return -1;
        } else if (key_is(ps, key, "endContent")) {
            if (claim_key(ps, key, &root->has_end) < 0 || parse_string(ps, &root->end) < 0)
                return -1;
        } else if (key_is(ps, key, "kind")) {
            if (claim_key(ps, key, &root->has_kind) < 0 || parse_string(ps, &root->kind) < 0)
                return -1;
        } else if (key_is(ps, key, "numAgents")) {
            if (claim_key(ps, key, &root->has_num_agents) < 0 ||
                parse_u32(ps, &root->num_agents) < 0)
                return -1;
        } else {
            ps->pool.len = key.off;
            if (skip_value(ps, 1) < 0)
                return -1;
        }
    }
    if (r < 0)
        return -1;
    skip_ws(ps);
    if (ps->p != ps->end)
        return fail(ps, "data after the top-level object");
    return 0;
}

static size_t align_up(size_t n)
{
    size_t a = _Alignof(max_align_t);

    return (n + a - 1) / a * a;
}

/* Reserves `count` elements of `size` bytes at the aligned end of a block layout. */
static int layout_add(size_t *total, size_t count, size_t size, size_t *offset)
{
    size_t start = align_up(*total);

    if (start < *total || (size != 0 && count > (SIZE_MAX - start) / size))
        return -1;
    *offset = start;
    *total = start + count * size;
    return 0;
}

/*
 * Checks the trace-level rules on the staged data and packs it into one block:
 * trace_t, transactions, patches, parents, then the string pool and the name.
 */
static int build(parser_t *ps, const root_t *root, trace_t **out)
{
    const stage_txn_t *st = (const stage_txn_t *)ps->txns.base;
    const stage_patch_t *sp = (const stage_patch_t *)ps->patches.base;
    const uint32_t *spar = (const uint32_t *)ps->parents.base;
    size_t ntxns = ps->txns.len / sizeof *st;
    size_t npatches = ps->patches.len / sizeof *sp;
    size_t name_len = strlen(ps->name);
    size_t nparents, total = 0, o_trace, o_txns, o_patches, o_parents, o_pool, o_name, i, j;
    uint32_t num_agents = 1, *parents;
    trace_patch_t *patches;
    trace_txn_t *txns;
    const char *pool;
    trace_t *t;
    char *block;
    int concurrent = 0;

    if (!root->has_end)
        return fail_trace(ps, "no \"endContent\"");
    if (!root->has_txns)
        return fail_trace(ps, "no \"txns\"");
    if (ntxns > UINT32_MAX)
        return fail_trace(ps, "more than 2^32 - 1 txns");
    if (root->has_kind) {
        if (key_is(ps, root->kind, "concurrent"))
            concurrent = 1;
        else if (!key_is(ps, root->kind, "sequential"))
            return fail_trace(ps, "unknown kind \"%s\"", ps->pool.base + root->kind.off);
    }
    if (concurrent) {
        if (root->has_start && root->start.len > 0)
            return fail_trace(ps, "a concurrent trace with a startContent is not supported");
        num_agents = 0;
        for (i = 0; i < ntxns; i++) {
            if (!st[i].has_parents || !st[i].has_agent)
                return fail_trace(ps, "txn %zu: no \"%s\"", i,
                                  st[i].has_parents ? "agent" : "parents");
            for (j = 0; j < st[i].nparents; j++)
                if (spar[st[i].parents_off + j] >= i)
                    return fail_trace(ps, "txn %zu: parent %u is not an earlier txn", i,
                                      (unsigned)spar[st[i].parents_off + j]);
            if (root->has_num_agents && st[i].agent >= root->num_agents)
                return fail_trace(ps, "txn %zu: agent %u but numAgents is %u", i,
                                  (unsigned)st[i].agent, (unsigned)root->num_agents);
            if (st[i].agent >= num_agents) {
                if (st[i].agent == UINT32_MAX)
                    return fail_trace(ps, "txn %zu: agent too large", i);
                num_agents = st[i].agent + 1;
            }
        }
        if (root->has_num_agents)
            num_agents = root->num_agents;
        nparents = ps->parents.len / sizeof *spar;
    } else {
        nparents = ntxns > 0 ? ntxns - 1 : 0;
    }

    if (layout_add(&total, 1, sizeof(trace_t), &o_trace) < 0 ||
        layout_add(&total, ntxns, sizeof(trace_txn_t), &o_txns) < 0 ||
        layout_add(&total, npatches, sizeof(trace_patch_t), &o_patches) < 0 ||
        layout_add(&total, nparents, sizeof(uint32_t), &o_parents) < 0 ||
        layout_add(&total, ps->pool.len, 1, &o_pool) < 0 ||
        layout_add(&total, name_len + 1, 1, &o_name) < 0)
        return fail_trace(ps, "trace too large");
    block = malloc(total);
    if (block == NULL)
        return fail_trace(ps, "out of memory");

    t = (trace_t *)(block + o_trace);
    txns = (trace_txn_t *)(block + o_txns);
    patches = (trace_patch_t *)(block + o_patches);
    parents = (uint32_t *)(block + o_parents);
    if (ps->pool.len > 0)
        memcpy(block + o_pool, ps->pool.base, ps->pool.len);
    pool = block + o_pool;
    memcpy(block + o_name, ps->name, name_len + 1);

    for (i = 0; i < npatches; i++) {
        patches[i].pos = sp[i].pos;
        patches[i].del = sp[i].del;
        patches[i].ins = pool + sp[i].ins_off;
        patches[i].ins_len = sp[i].ins_len;
    }
    if (concurrent && nparents > 0)
        memcpy(parents, spar, nparents * sizeof *parents);
    for (i = 0; i < ntxns; i++) {
        txns[i].patches = patches + st[i].patches_off;
        txns[i].npatches = st[i].npatches;
        if (concurrent) {
            txns[i].parents = parents + st[i].parents_off;
            txns[i].nparents = st[i].nparents;
            txns[i].agent = st[i].agent;
        } else {
            /* Sequential: txn i's only parent is i - 1, stored at parents[i - 1]. */
            if (i > 0)
                parents[i - 1] = (uint32_t)(i - 1);
            txns[i].parents = i > 0 ? parents + (i - 1) : parents;
            txns[i].nparents = i > 0 ? 1 : 0;
            txns[i].agent = 0;
        }
    }

    t->concurrent = concurrent;
    t->num_agents = num_agents;
    t->name = block + o_name;
    t->start_content = root->has_start ? pool + root->start.off : block + o_name + name_len;
    t->start_len = root->has_start ? root->start.len : 0;
    t->end_content = pool + root->end.off;
    t->end_len = root->end.len;
    t->txns = txns;
    t->ntxns = ntxns;
    t->npatches = npatches;
    t->non_bmp = ps->non_bmp;
    *out = t;
    return 0;
}

int trace_parse(const char *json, size_t len, const char *name, trace_t **out, char *err,
                size_t errlen)
{
    parser_t ps;
    root_t root;
    int rc = -1;

    memset(&ps, 0, sizeof ps);
    memset(&root, 0, sizeof root);
    ps.base = ps.p = json;
    ps.end = json + len;
    ps.name = name;
    ps.err = err;
    ps.errlen = errlen;
    if (parse_root(&ps, &root) == 0 && build(&ps, &root, out) == 0)
        rc = 0;
    free(ps.txns.base);
    free(ps.patches.base);
    free(ps.parents.base);
    free(ps.pool.base);
    return rc;
}

/* The file's base name without ".gz" and then ".json", written into `buf`. */
static void base_name(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(base);

    if (n > 3 && strcmp(base + n - 3, ".gz") == 0)
        n -= 3;
    if (n > 5 && strncmp(base + n - 5, ".json", 5) == 0)
        n -= 5;
    if (n >= size)
        n = size - 1;
    memcpy(buf, base, n);
    buf[n] = '\0';
}

/* Reads the whole (decompressed) file into a malloc'd buffer. */
static int read_gz(const char *path, char **out, size_t *out_len, char *err, size_t errlen)
{
    size_t len = 0, cap = 0;
    char *buf = NULL, *p;
    gzFile f;
    int n, errnum, rc = -1;

    errno = 0;
    f = gzopen(path, "rb");
    if (f == NULL) {
        put_err(err, errlen, "%s: %s", path, errno ? strerror(errno) : "cannot open");
        return -1;
    }
    gzbuffer(f, 1u << 17);
    for (;;) {
        size_t want;

        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                put_err(err, errlen, "%s: larger than %zu bytes uncompressed", path,
                        MAX_FILE_BYTES);
                goto exit;
            }
            cap = cap ? cap * 2 : (size_t)1 << 20;
            p = realloc(buf, cap);
            if (p == NULL) {
                put_err(err, errlen, "%s: out of memory", path);
                goto exit;
            }
            buf = p;
        }
        want = cap - len < INT_MAX ? cap - len : INT_MAX;
        n = gzread(f, buf + len, (unsigned)want);
        if (n <= 0) {
            /* 0 is the end of the data, but also of a truncated file (Z_BUF_ERROR). */
            const char *msg = gzerror(f, &errnum);
            if (n == 0 && errnum == Z_OK)
                break;
            if (errnum == Z_ERRNO)
                put_err(err, errlen, "%s: %s", path, strerror(errno));
            else
                put_err(err, errlen, "%s", msg); /* zlib's message starts with the path */
            goto exit;
        }
        len += (size_t)n;
    }
    rc = 0;
exit:
    if (gzclose_r(f) != Z_OK && rc == 0) {
        put_err(err, errlen, "%s: error reading the file", path);
        rc = -1;
    }
    if (rc == 0) {
        *out = buf;
        *out_len = len;
    } else {
        free(buf);
    }
    return rc;
}

int trace_load(const char *path, trace_t **out, char *err, size_t errlen)
{
    char name[256], *json = NULL;
    size_t len = 0;
    int rc;

    if (read_gz(path, &json, &len, err, errlen) < 0)
        return -1;
    base_name(path, name, sizeof name);
    rc = trace_parse(json, len, name, out, err, errlen);
    free(json);
    return rc;
}

void trace_free(trace_t *t)
{
    free(t);
}
