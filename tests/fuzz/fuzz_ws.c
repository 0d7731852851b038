/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ws.c: libFuzzer target for weftd's WebSocket framing of client input
 * (srv__wsf_next() in server/ws.c, declared in server/ws_frame.h): the frames
 * a peer sends, parsed and unmasked in place, fragments gathered, control
 * frames between them, close codes and UTF-8 checked, the message size limit.
 * The parser needs no socket, so it runs here without an event loop.
 *
 * The first byte's low bit picks the mode, the second byte the message size
 * limit (one of LIMITS[]):
 *
 *   0  raw: byte 2 (mod 8) is a number of cut points, each 2 bytes (an
 *      offset); the rest is the byte stream from the peer. It is parsed once
 *      in one piece and once cut at those offsets (so the parser sees partial
 *      headers, masking keys and payloads), each time in an exact-size buffer
 *      holding only the bytes not yet consumed, as H2O's input buffer does.
 *      Both give the same events (fragments, messages, control frames, the
 *      error and its close code), and the events hold to the rules below.
 *   1  round trip: the rest of the input drives an encoder written here
 *      (independently of ws.c): messages of both kinds (text made valid
 *      UTF-8 by the encoder), split into fragments at random, masked with
 *      random keys, with pings and pongs between fragments, 7-, 16- and
 *      64-bit lengths, and at the end perhaps a close frame with a valid code
 *      and reason. Fed to the parser at random cut points, it parses back to
 *      exactly the frames and messages encoded, and no error.
 *
 * Rules of every event: a message is at most the limit; a text message is
 * valid UTF-8 (checked by a decoder written here); a control frame is a ping,
 * pong or close of at most 125 bytes, a close has no code or a valid one (RFC
 * 6455 section 7.4) and a UTF-8 reason; an error's code is 1002, 1007 or
 * 1009; nothing consumes more than it was given, an incomplete frame nothing;
 * after an error or a close nothing more is reported. A violated property
 * aborts with its description. Seed corpus in tests/fuzz/corpus/ws/ (made by
 * hand, one file per case; see docs/fuzzing.md). FUZZ_WS_VERBOSE=1 prints
 * every event (expected and parsed) on stderr.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t LIMITS[] = {0, 1, 125, 126, 200, 1000, 65535, 65536, 70000, 1 << 20};
#define NLIMITS (sizeof(LIMITS) / sizeof(LIMITS[0]))

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ws: %s\n", what);
        abort();
    }
}

/* A growing byte array (its own, not proto_buf_t). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes_t;

static void put(bytes_t *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        must(b->p != NULL, "out of memory");
        b->cap = cap;
    }
    if (n != 0)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(bytes_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

/* An event as logged: kind, opcode, code, length, payload. */
static int verbose = -1; /* FUZZ_WS_VERBOSE=1: every parsed event on stderr */

static void log_event(bytes_t *log, srv_wsf_kind_t kind, unsigned opcode, unsigned code,
                      const uint8_t *data, size_t len)
{
    if (verbose < 0)
        verbose = getenv("FUZZ_WS_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "fuzz_ws: event %d opcode %u code %u len %zu\n", (int)kind, opcode, code,
                len);
    uint8_t h[2] = {(uint8_t)kind, (uint8_t)opcode};
    put(log, h, 2);
    put_u32(log, code);
    put_u32(log, (uint32_t)len);
    put(log, data, len);
}

/* UTF-8 by decoding each sequence to its code point and re-deriving the
 * length it must have been encoded with. */
static int utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k, need;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if (p[i] >= 0xc0 && p[i] < 0xe0)
            k = 2, cp = p[i] & 0x1fu;
        else if (p[i] >= 0xe0 && p[i] < 0xf0)
            k = 3, cp = p[i] & 0x0fu;
        else if (p[i] >= 0xf0 && p[i] < 0xf8)
            k = 4, cp = p[i] & 0x07u;
        else
            return 0;
        if (i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if (p[i + j] < 0x80 || p[i + j] > 0xbf)
                return 0;
            cp = cp << 6 | (p[i + j] & 0x3fu);
        }
        need = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (need != k || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
            return 0;
        i += k;
    }
    return 1;
}

static int close_code_ok(unsigned c)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (c == ok[i])
            return 1;
    return c >= 3000 && c < 5000;
}

/* a[0 .. na) then b[0 .. nb) in a buffer of exactly that size, so that
 * ASan sees a read past it (NULL when empty, as H2O's buffer may be). */
static uint8_t *joined(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    uint8_t *p;
    if (na + nb == 0)
        return NULL;
    p = malloc(na + nb);
    must(p != NULL, "out of memory");
    if (na != 0)
        memcpy(p, a, na);
    if (nb != 0)
        memcpy(p + na, b, nb);
    return p;
}

/* The parser over a stream given in pieces (cuts: ascending offsets), each
 * call on an exact-size copy of the bytes not yet consumed. Logs every event
 * but MORE; returns the log. */
static bytes_t run(const uint8_t *stream, size_t len, const size_t *cuts, size_t ncuts,
                   size_t max_message)
{
    srv_wsf_parser_t p;
    bytes_t log = {0};
    uint8_t *buf = NULL; /* the unconsumed input, exactly `have` bytes */
    size_t have = 0, pos = 0;
    int ended = 0;
    memset(&p, 0, sizeof(p));
    for (size_t c = 0; c <= ncuts; c++) {
        size_t to = c < ncuts ? cuts[c] : len;
        uint8_t *nb = joined(buf, have, to > pos ? stream + pos : NULL, to - pos);
        free(buf);
        buf = nb;
        have += to - pos;
        pos = to;
        for (;;) {
            srv_wsf_event_t ev;
            srv_wsf_kind_t k = srv__wsf_next(&p, buf, have, max_message, &ev);
            if (k == SRV_WSF_MORE) {
                break;
            }
            must(!ended, "an event after an error or a close");
            must(k != SRV_WSF_ERROR ? ev.consumed > 0 && ev.consumed <= have : 1,
                 "a frame consumed nothing or more than it was given");
            switch (k) {
            case SRV_WSF_ERROR:
                must(ev.code == 1002 || ev.code == 1007 || ev.code == 1009, "error code");
                log_event(&log, k, 0, ev.code, NULL, 0);
                ended = 1;
                break;
            case SRV_WSF_FRAGMENT:
                log_event(&log, k, 0, 0, NULL, 0);
                break;
            case SRV_WSF_MESSAGE:
                must(ev.opcode == SRV_WS_OP_TEXT || ev.opcode == SRV_WS_OP_BINARY,
                     "message opcode");
                must(ev.len <= max_message, "a message over the limit");
                must(ev.opcode != SRV_WS_OP_TEXT || utf8_ok(ev.data, ev.len),
                     "a text message that is not UTF-8");
                log_event(&log, k, ev.opcode, 0, ev.data, ev.len);
                break;
            case SRV_WSF_CONTROL:
                must(ev.opcode == SRV_WS_OP_PING || ev.opcode == SRV_WS_OP_PONG ||
                         ev.opcode == SRV_WS_OP_CLOSE,
                     "control opcode");
                must(ev.len <= 125, "a control frame over 125 bytes");
                if (ev.opcode == SRV_WS_OP_CLOSE) {
                    must(ev.len != 1, "a close frame of 1 byte");
                    must(ev.len == 0
                             ? ev.code == 0
                             : ev.code == (ev.data[0] << 8 | ev.data[1]) &&
                                   close_code_ok(ev.code) && utf8_ok(ev.data + 2, ev.len - 2),
                         "a close frame's code or reason");
                    ended = 1;
                } else {
                    must(ev.code == 0, "a code on a ping or pong");
                }
                log_event(&log, k, ev.opcode, ev.code, ev.data, ev.len);
                break;
            case SRV_WSF_MORE:
                break;
            }
            if (k == SRV_WSF_ERROR)
                break; /* nothing more is read (ws.c drops the rest) */
            /* Drop what was consumed: a new exact-size buffer. */
            nb = joined(buf + ev.consumed, have - ev.consumed, NULL, 0);
            free(buf);
            buf = nb;
            have -= ev.consumed;
        }
    }
    free(buf);
    srv__wsf_dispose(&p);
    return log;
}

/* Input bytes as a stream of choices (0 once exhausted). */
typedef struct {
    const uint8_t *p;
    size_t n;
} src_t;

static unsigned take(src_t *s)
{
    if (s->n == 0)
        return 0;
    s->n--;
    return *s->p++;
}

/* One client frame: FIN, opcode, masked with a key from the input. */
static void encode_frame(bytes_t *out, src_t *s, int fin, unsigned opcode, const uint8_t *pl,
                         size_t len)
{
    uint8_t h[14], key[4];
    size_t n = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len <= 125) {
        h[1] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len;
        n = 4;
    } else {
        uint64_t l = len;
        h[1] = 0x80 | 127;
        for (int i = 9; i >= 2; i--, l >>= 8)
            h[i] = (uint8_t)l;
        n = 10;
    }
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)take(s);
    memcpy(h + n, key, 4);
    put(out, h, n + 4);
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)(pl[i] ^ key[i % 4]);
        put(out, &b, 1);
    }
}

/* A code point from the input, encoded as UTF-8 (never a surrogate). */
static void put_utf8(bytes_t *b, src_t *s)
{
    unsigned sel = take(s);
    uint32_t cp = (uint32_t)take(s) << 8 | take(s);
    uint8_t u[4];
    switch (sel & 3) {
    case 0:
        cp &= 0x7f;
        u[0] = (uint8_t)cp;
        put(b, u, 1);
        return;
    case 1:
        cp = 0x80 + cp % (0x800 - 0x80);
        u[0] = (uint8_t)(0xc0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3f));
        put(b, u, 2);
        return;
    case 2:
        cp = 0x800 + cp % (0x10000 - 0x800 - 0x800);
        if (cp >= 0xd800)
            cp += 0x800; /* past the surrogates */
        u[0] = (uint8_t)(0xe0 | cp >> 12), u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (uint8_t)(0x80 | (cp & 0x3f));
        put(b, u, 3);
        return;
    default:
        cp = 0x10000 + ((cp << 4 | (sel >> 4)) % 0x100000);
        u[0] = (uint8_t)(0xf0 | cp >> 18), u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (uint8_t)(0x80 | (cp & 0x3f));
        put(b, u, 4);
        return;
    }
}

/* A ping or pong with a payload from the input: frame and expected event. */
static void encode_control(bytes_t *out, bytes_t *want, src_t *s)
{
    uint8_t pl[125];
    unsigned op = take(s) & 1 ? SRV_WS_OP_PONG : SRV_WS_OP_PING;
    size_t n = take(s) % 126;
    for (size_t i = 0; i < n; i++)
        pl[i] = (uint8_t)take(s);
    encode_frame(out, s, 1, op, pl, n);
    log_event(want, SRV_WSF_CONTROL, op, 0, pl, n);
}

static void round_trip(src_t *s, size_t max_message)
{
    bytes_t out = {0}, want = {0}, got, msg = {0};
    size_t cuts[64], ncuts = 0;
    unsigned nmsg = take(s) % 8;
    for (unsigned m = 0; m < nmsg && s->n != 0; m++) {
        unsigned kind = take(s), nfrag = 1 + take(s) % 5;
        unsigned op = kind & 1 ? SRV_WS_OP_TEXT : SRV_WS_OP_BINARY;
        size_t target = kind & 4 ? (take(s) << 8 | take(s)) % 4096 : take(s) % 200, at = 0;
        msg.n = 0;
        if ((kind & 0x18) == 0x18)
            target += 65536; /* 64-bit lengths */
        if (op == SRV_WS_OP_TEXT) {
            while (msg.n < target && s->n != 0)
                put_utf8(&msg, s);
        } else {
            while (msg.n < target) {
                uint8_t b = (uint8_t)(s->n != 0 ? take(s) : msg.n * 131);
                put(&msg, &b, 1);
            }
        }
        if (msg.n > max_message)
            continue; /* over the limit: raw mode covers it */
        for (unsigned f = 0; f < nfrag; f++) {
            /* Fragments may cut a UTF-8 sequence: only the message must be whole. */
            size_t left = msg.n - at;
            size_t flen = f + 1 == nfrag ? left : (left == 0 ? 0 : (take(s) * left) / 255);
            encode_frame(&out, s, f + 1 == nfrag, f == 0 ? op : SRV_WS_OP_CONT,
                         msg.p ? msg.p + at : NULL, flen);
            at += flen;
            if (f + 1 < nfrag) {
                log_event(&want, SRV_WSF_FRAGMENT, 0, 0, NULL, 0);
                if (take(s) & 1)
                    encode_control(&out, &want, s);
            }
        }
        log_event(&want, SRV_WSF_MESSAGE, op, 0, msg.p, msg.n);
        if (take(s) & 1)
            encode_control(&out, &want, s);
    }
    if (take(s) & 1) {
        static const unsigned codes[] = {1000, 1001, 1003, 1008, 1011, 3000, 4999};
        uint8_t pl[125];
        unsigned code = codes[take(s) % (sizeof(codes) / sizeof(codes[0]))];
        bytes_t reason = {0};
        size_t rn = take(s) % 40;
        for (size_t i = 0; i < rn; i++)
            put_utf8(&reason, s);
        if (reason.n > 123)
            reason.n = 0;
        pl[0] = (uint8_t)(code >> 8), pl[1] = (uint8_t)code;
        if (reason.n != 0)
            memcpy(pl + 2, reason.p, reason.n);
        encode_frame(&out, s, 1, SRV_WS_OP_CLOSE, pl, 2 + reason.n);
        log_event(&want, SRV_WSF_CONTROL, SRV_WS_OP_CLOSE, code, pl, 2 + reason.n);
        free(reason.p);
    }
    /* Random cuts, ascending. */
    {
        size_t at = 0;
        unsigned nc = take(s) % 64;
        for (unsigned i = 0; i < nc && at < out.n; i++) {
            at += 1 + (take(s) << 8 | take(s)) % (out.n - at);
            cuts[ncuts++] = at;
        }
    }
    got = run(out.p, out.n, cuts, ncuts, max_message);
    must(got.n == want.n && (want.n == 0 || memcmp(got.p, want.p, want.n) == 0),
         "round trip: frames parse back differently");
    free(got.p);
    free(want.p);
    free(out.p);
    free(msg.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max_message, cuts[8], ncuts = 0;
    bytes_t whole, split;
    if (size < 2)
        return 0;
    max_message = LIMITS[data[1] % NLIMITS];
    if (data[0] & 1) {
        src_t s = {data + 2, size - 2};
        round_trip(&s, max_message);
        return 0;
    }
    if (size < 3)
        return 0;
    {
        unsigned n = data[2] % 8;
        const uint8_t *stream = data + 3 + 2 * n;
        size_t len, prev = 0;
        if (size < 3 + 2 * (size_t)n)
            return 0;
        len = size - 3 - 2 * n;
        for (unsigned i = 0; i < n; i++) {
            size_t c = (size_t)(data[3 + 2 * i] << 8 | data[4 + 2 * i]);
            if (c > len)
                c %= len + 1;
            if (c < prev)
                c = prev; /* ascending; empty pieces are allowed */
            cuts[ncuts++] = prev = c;
        }
        /* The parser unmasks in place: each run gets its own copy. */
        whole = run(stream, len, NULL, 0, max_message);
        split = run(stream, len, cuts, ncuts, max_message);
        must(whole.n == split.n && (whole.n == 0 || memcmp(whole.p, split.p, whole.n) == 0),
             "one piece and cut up parse differently");
        free(whole.p);
        free(split.p);
    }
    return 0;
}
