/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http.c: libFuzzer target for the parsers weftd applies to the raw
 * bytes of HTTP requests before anything else looks at them (declared in
 * server/srv_internal.h; all pure, no event loop):
 *
 *   srv__http_route()          request path -> /ws/<doc>, /api/docs/<doc>, history
 *   srv__token_from_request()  Bearer header value or ?token= query parameter
 *   srv__history_route()       history path -> route, seq and query string
 *   srv__history_parse_query() ?before=&limit=, ?from= (numbers)
 *   srv__history_parse_u64()   decimal numbers of paths, queries and bodies
 *   srv__history_parse_body()  the flat JSON bodies of restore and naming
 *   srv__json_string()         JSON string output of names and texts
 *
 * The input is "PATH\nBODY": the bytes before the first '\n' are the request
 * path (its query string starts at its first '?', as H2O gives it), the bytes
 * after it the body and also the value of an Authorization header; without a
 * '\n' there is no body and no header. Each piece is a heap block of its own,
 * so the sanitizers see any read past one. Properties:
 *
 *   - the route agrees with the rule of srv_internal.h, written out here
 *     (document-name rule of srv.h included), and its pointers lie inside
 *     the path;
 *   - a token found is inside the header value (no spaces around it, after
 *     "bearer " in any case) or is the value of the first "token=" parameter
 *     of the query string;
 *   - the history route agrees with the rule of docs/history.md, a seq with
 *     the decimal rule (1..20 digits, at most 2^64 - 1);
 *   - an accepted query string holds, for every parameter given, a "key=N"
 *     with that N and for no other known key any; a refused one names a
 *     known key it holds; accepted parameters written back parse the same;
 *   - an accepted body gives strings within their maximum, of valid UTF-8,
 *     and written back as JSON parses to the same fields; a refused one has a
 *     reason;
 *   - srv__json_string() of the path and of the body, put in a body, parses
 *     back to the same bytes when they are UTF-8 (the replacement character
 *     for each bad byte otherwise).
 *
 * A violated property aborts with its description. Seed corpus in
 * tests/fuzz/corpus/http/ (paths, query strings and bodies, valid and not).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"
#include "fuzz_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_http: %s\n", what);
        abort();
    }
}

static int starts(const char *s, size_t n, const char *lit)
{
    return n >= strlen(lit) && memcmp(s, lit, strlen(lit)) == 0;
}

static int equals(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* 1..20 decimal digits at most 18446744073709551615: the value, else -1. */
static int decimal_rule(const char *s, size_t n, uint64_t *out)
{
    static const char max[] = "18446744073709551615";
    uint64_t v = 0;
    if (n < 1 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    if (n == 20 && memcmp(s, max, 20) > 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    *out = v;
    return 0;
}

/* Length of the UTF-8 sequence at s[0 .. n) (shortest form, no surrogate, at
 * most U+10FFFF), or 0: decodes, then compares with the shortest length. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t k;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        k = 2, cp = s[0] & 0x1fu;
    else if ((s[0] & 0xf0) == 0xe0)
        k = 3, cp = s[0] & 0x0fu;
    else if ((s[0] & 0xf8) == 0xf0)
        k = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (n < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[j] & 0x3fu);
    }
    if (k != (cp < 0x80      ? 1u
              : cp < 0x800   ? 2u
              : cp < 0x10000 ? 3u
                             : 4u) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

static int utf8_rule(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if ((k = utf8_seq((const unsigned char *)s + i, n - i)) == 0)
            return 0;
    return 1;
}

static int inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && p <= base + len && n <= len - (size_t)(p - base);
}

static void buf_add(proto_buf_t *b, const char *s, size_t n)
{
    srv__buf_append(b, s, n);
}

/* ---- routes ---------------------------------------------------------------------- */

static void check_route(const char *path, size_t len, size_t query_at)
{
    srv_route_t r;
    size_t end = query_at < len ? query_at : len;
    int kind = srv__http_route(path, len, query_at, &r);
    enum srv_route_kind want = SRV_ROUTE_BAD;
    const char *slash = NULL;

    must(kind == (int)r.kind, "srv__http_route returned another kind than it stored");
    if (starts(path, end, "/ws/") && fuzz_docname_rule(path + 4, end - 4)) {
        want = SRV_ROUTE_WS;
    } else if (starts(path, end, "/api/docs/")) {
        slash = memchr(path + 10, '/', end - 10);
        if (slash != NULL && fuzz_docname_rule(path + 10, (size_t)(slash - path - 10)))
            want = SRV_ROUTE_HISTORY;
        else if (fuzz_docname_rule(path + 10, end - 10))
            want = SRV_ROUTE_DOC;
    }
    must(r.kind == want, "srv__http_route disagrees with the rule");
    switch (r.kind) {
    case SRV_ROUTE_WS:
        must(r.doc == path + 4 && r.doc_len == end - 4, "/ws/: the wrong document name");
        break;
    case SRV_ROUTE_DOC:
        must(r.doc == path + 10 && r.doc_len == end - 10, "/api/docs/: the wrong document name");
        break;
    case SRV_ROUTE_HISTORY:
        must(r.doc == path + 10 && r.doc + r.doc_len == slash, "history: the wrong document name");
        must(r.rest == slash + 1 && r.rest_len == len - (size_t)(slash + 1 - path),
             "history: the wrong rest of the path");
        break;
    default:
        must(r.doc == NULL && r.rest == NULL, "a bad route with a document");
        break;
    }
    must(r.kind == SRV_ROUTE_BAD ||
             (inside(r.doc, r.doc_len, path, len) && srv_docname_valid(r.doc, r.doc_len)),
         "a route's document outside the path or invalid");
}

static void check_history_route(const char *path, size_t len)
{
    srv_hroute_t r;
    const char *q = memchr(path, '?', len);
    size_t plen = q != NULL ? (size_t)(q - path) : len;
    enum srv_hroute_kind want = SRV_HROUTE_NONE;
    uint64_t seq = 0;

    srv__history_route(path, len, &r);
    if (q != NULL)
        must(r.query == q + 1 && r.query_len == len - plen - 1, "the wrong query string");
    else
        must(r.query == NULL && r.query_len == 0, "a query string without '?'");
    if (equals(path, plen, "versions")) {
        want = SRV_HROUTE_LIST;
    } else if (equals(path, plen, "attribution")) {
        want = SRV_HROUTE_ATTRIBUTION;
    } else if (equals(path, plen, "restore")) {
        want = SRV_HROUTE_RESTORE;
    } else if (starts(path, plen, "versions/") && plen > 9) {
        const char *num = path + 9, *slash = memchr(num, '/', plen - 9);
        size_t numlen = slash != NULL ? (size_t)(slash - num) : plen - 9;
        if (slash != NULL && !equals(slash, plen - (size_t)(slash - path), "/name"))
            want = SRV_HROUTE_NONE;
        else if (decimal_rule(num, numlen, &seq) != 0)
            want = SRV_HROUTE_BAD_SEQ;
        else
            want = slash != NULL ? SRV_HROUTE_NAME : SRV_HROUTE_VERSION;
    }
    must(r.kind == want, "srv__history_route disagrees with the rule");
    must((r.kind != SRV_HROUTE_VERSION && r.kind != SRV_HROUTE_NAME) || r.seq == seq,
         "srv__history_route read the wrong seq");
}

/* ---- tokens in requests ---------------------------------------------------------------- */

static void check_token_query(const char *path, size_t len, size_t query_at)
{
    h2o_iovec_t tok = {NULL, 0};
    int r = srv__token_from_request(NULL, 0, path, len, query_at, &tok);
    const char *p, *end = path + len, *first = NULL;
    size_t first_len = 0;

    /* the first parameter named exactly "token" */
    for (p = query_at < len ? path + query_at + 1 : end; p < end && first == NULL;) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *stop = amp ? amp : end;
        if (stop - p >= 6 && memcmp(p, "token=", 6) == 0) {
            first = p + 6;
            first_len = (size_t)(stop - first);
        }
        p = stop + 1;
    }
    must((r == 0) == (first != NULL), "?token=: found when absent or missed");
    must(r != 0 || (tok.base == first && tok.len == first_len), "?token=: the wrong value");
    must(r != 0 || memchr(tok.base, '&', tok.len) == NULL, "?token=: a value with '&'");
}

static void check_token_header(const char *v, size_t n)
{
    h2o_iovec_t tok = {NULL, 0};
    int r = srv__token_from_request(v, n, "/x?token=abc", 12, 2, &tok);
    int bearer = n > 7;
    for (size_t i = 0; bearer && i < 7; i++) {
        char c = v[i] >= 'A' && v[i] <= 'Z' ? (char)(v[i] - 'A' + 'a') : v[i];
        bearer = c == "bearer "[i];
    }
    must((r == 0) == bearer, "Bearer: found when absent or missed (or the query used)");
    if (r != 0)
        return;
    must(inside(tok.base, tok.len, v + 7, n - 7), "Bearer: a token outside the value");
    must(tok.len == 0 || (tok.base[0] != ' ' && tok.base[tok.len - 1] != ' '),
         "Bearer: spaces around the token");
    for (const char *p = v + 7; p < tok.base; p++)
        must(*p == ' ', "Bearer: something skipped before the token");
    for (const char *p = tok.base + tok.len; p < v + n; p++)
        must(*p == ' ', "Bearer: something cut after the token");
}

/* ---- query strings ----------------------------------------------------------------------- */

/* Whether q[0 .. n) holds a parameter `key` (exactly), and the value of the
 * first that does (*val, *vlen; NULL without '='). */
static int find_param(const char *q, size_t n, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i <= n;) {
        const char *seg = q + i, *amp = memchr(seg, '&', n - i);
        size_t slen = amp != NULL ? (size_t)(amp - seg) : n - i;
        const char *eq = memchr(seg, '=', slen);
        size_t kl = eq != NULL ? (size_t)(eq - seg) : slen;
        if (kl == klen && memcmp(seg, key, klen) == 0) {
            *val = eq != NULL ? eq + 1 : NULL;
            *vlen = eq != NULL ? slen - kl - 1 : 0;
            return 1;
        }
        if (amp == NULL)
            break;
        i += slen + 1;
    }
    return 0;
}

static void check_query_with(const char *q, size_t n, const char *const *keys, size_t nkeys)
{
    srv_hparam_t params[4], again[4];
    size_t bad = 99;
    char line[256];
    size_t o = 0;
    int r;

    if (q == NULL && n > 0)
        return;
    for (size_t k = 0; k < nkeys; k++) {
        params[k].key = keys[k];
        params[k].value = 7 + k;
        params[k].given = 0;
    }
    r = srv__history_parse_query(q, n, params, nkeys, &bad);
    must(r == 0 || r == -1, "srv__history_parse_query returned an unexpected value");
    if (r != 0) {
        const char *v;
        size_t vlen;
        must(bad < nkeys && find_param(q, n, keys[bad], &v, &vlen),
             "a refused query string blames a key it does not hold");
        return;
    }
    for (size_t k = 0; k < nkeys; k++) {
        const char *v = NULL;
        size_t vlen = 0;
        uint64_t want;
        int has = q != NULL && find_param(q, n, keys[k], &v, &vlen);
        must(has == params[k].given, "a parameter given or not, against the query string");
        if (!has) {
            must(params[k].value == 7 + k, "a parameter not given changed its default");
            continue;
        }
        must(v != NULL && decimal_rule(v, vlen, &want) == 0 && want == params[k].value,
             "an accepted parameter does not hold a number, or another one");
        o += (size_t)snprintf(line + o, sizeof line - o, "%s%s=%llu", o ? "&" : "", keys[k],
                              (unsigned long long)params[k].value);
    }
    for (size_t k = 0; k < nkeys; k++) {
        again[k].key = keys[k];
        again[k].value = 7 + k;
        again[k].given = 0;
    }
    must(srv__history_parse_query(line, o, again, nkeys, &bad) == 0,
         "accepted parameters written back are refused");
    for (size_t k = 0; k < nkeys; k++)
        must(again[k].given == params[k].given && again[k].value == params[k].value,
             "accepted parameters written back parse to others");
}

static void check_query(const char *q, size_t n)
{
    static const char *const list[] = {"before", "limit"};
    static const char *const version[] = {"from"};
    static const char *const clash[] = {"token", "limit", "lim", "limitx"};
    check_query_with(q, n, list, 2);
    check_query_with(q, n, version, 1);
    check_query_with(q, n, clash, 4);
}

/* ---- JSON bodies ---------------------------------------------------------------------------- */

/* Writes s[0 .. n) as a JSON string: '"', '\\' and control characters escaped,
 * other bytes as they are (independently of srv__json_string). */
static void json_str(proto_buf_t *b, const char *s, size_t n)
{
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, s + i, 1);
        }
    }
    buf_add(b, "\"", 1);
}

/* JSON whitespace (RFC 8259). */
static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

#define MAXF 3

typedef struct {
    srv_jfield_t f[MAXF];
    char buf[MAXF][STORE_LABEL_MAX];
    size_t n;
} fields_t;

/* kinds[i]: 'u' a number, 's' a string of at most maxes[i] bytes. */
static void fields_init(fields_t *fs, const char *const *keys, const char *kinds,
                        const size_t *maxes, size_t n)
{
    memset(fs, 0, sizeof(*fs));
    fs->n = n;
    for (size_t i = 0; i < n; i++) {
        fs->f[i].key = keys[i];
        fs->f[i].kind = kinds[i] == 'u' ? SRV_JF_UINT : SRV_JF_STR;
        fs->f[i].max = kinds[i] == 'u' ? 0 : maxes[i];
        fs->f[i].str = kinds[i] == 'u' ? NULL : fs->buf[i];
    }
}

static int parse(fields_t *fs, const char *body, size_t len, const char **err)
{
    int r;
    *err = NULL;
    r = srv__history_parse_body(body, len, fs->f, fs->n, err);
    must(r == 0 || r == -1, "srv__history_parse_body returned an unexpected value");
    must(r == 0 || (*err != NULL && **err != '\0'), "a refused body without a reason");
    return r;
}

static void check_body_with(const char *body, size_t len, const char *const *keys,
                            const char *kinds, const size_t *maxes, size_t n)
{
    fields_t fs, again;
    proto_buf_t out = {0};
    const char *err;
    size_t a = 0, z = len;

    fields_init(&fs, keys, kinds, maxes, n);
    if (parse(&fs, body, len, &err) != 0)
        return;
    while (a < len && is_ws(body[a]))
        a++;
    while (z > a && is_ws(body[z - 1]))
        z--;
    must(z - a >= 2 && body[a] == '{' && body[z - 1] == '}', "an accepted body is not {...}");
    buf_add(&out, "{", 1);
    for (size_t i = 0; i < n; i++) {
        const srv_jfield_t *f = &fs.f[i];
        if (!f->given)
            continue;
        if (out.len > 1)
            buf_add(&out, ",", 1);
        json_str(&out, f->key, strlen(f->key));
        buf_add(&out, ":", 1);
        if (f->kind == SRV_JF_UINT) {
            srv__buf_printf(&out, "%llu", (unsigned long long)f->num);
        } else {
            must(f->len <= f->max, "a string member longer than its maximum");
            must(utf8_rule(f->str, f->len), "a string member is not UTF-8");
            json_str(&out, f->str, f->len);
        }
    }
    buf_add(&out, "}", 1);
    fields_init(&again, keys, kinds, maxes, n);
    must(parse(&again, (const char *)out.base, out.len, &err) == 0,
         "an accepted body written back is refused");
    for (size_t i = 0; i < n; i++) {
        const srv_jfield_t *x = &fs.f[i], *y = &again.f[i];
        must(x->given == y->given, "a body written back gives other members");
        if (!x->given)
            continue;
        must(x->kind == SRV_JF_UINT ? x->num == y->num
                                    : x->len == y->len && memcmp(x->str, y->str, x->len) == 0,
             "a body written back parses to other values");
    }
    proto_buf_dispose(&out);
}

static void check_body(const char *body, size_t len)
{
    static const char *const restore[] = {"version", "name"};
    static const size_t restore_max[] = {0, STORE_AUTHOR_NAME_MAX};
    static const char *const naming[] = {"name", "by"};
    static const size_t naming_max[] = {STORE_LABEL_MAX, STORE_AUTHOR_NAME_MAX};
    static const char *const small[] = {"a", "version", "b"};
    static const size_t small_max[] = {0, 0, 3};
    check_body_with(body, len, restore, "us", restore_max, 2);
    check_body_with(body, len, naming, "ss", naming_max, 2);
    check_body_with(body, len, small, "uss", small_max, 3);
}

/* srv__json_string(s), as the value of a body member, parses back to s (each
 * byte that is not UTF-8 replaced with U+FFFD). */
static void check_json_string(const char *s, size_t n)
{
    static const char *const keys[] = {"v"};
    static const size_t maxes[] = {STORE_LABEL_MAX};
    proto_buf_t out = {0}, want = {0};
    fields_t fs;
    const char *err;

    if (n > STORE_LABEL_MAX / 3)
        return;
    buf_add(&out, "{\"v\":", 5);
    srv__json_string(&out, s, n);
    buf_add(&out, "}", 1);
    for (size_t i = 0, k; i < n; i += k) {
        if ((k = utf8_seq((const unsigned char *)s + i, n - i)) == 0) {
            buf_add(&want, "\xef\xbf\xbd", 3);
            k = 1;
        } else {
            buf_add(&want, s + i, k);
        }
    }
    fields_init(&fs, keys, "s", maxes, 1);
    must(parse(&fs, (const char *)out.base, out.len, &err) == 0,
         "srv__json_string's output is refused as a JSON string");
    must(fs.f[0].given && fs.f[0].len == want.len &&
             (want.len == 0 || memcmp(fs.f[0].str, want.base, want.len) == 0),
         "srv__json_string's output parses to other bytes");
    proto_buf_dispose(&out);
    proto_buf_dispose(&want);
}

/* ---- numbers ----------------------------------------------------------------------------------
 */

static void check_u64(const char *s, size_t n)
{
    uint64_t got = 12345, want = 0;
    int r = srv__history_parse_u64(s, n, &got);
    must(r == decimal_rule(s, n, &want), "srv__history_parse_u64 disagrees with the rule");
    must(r == 0 ? got == want : got == 12345, "srv__history_parse_u64: the wrong value");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t len = nl != NULL ? (size_t)(nl - data) : size, blen = nl != NULL ? size - len - 1 : 0;
    char *path = malloc(len ? len : 1), *body = nl != NULL ? malloc(blen ? blen : 1) : NULL;
    const char *q;
    size_t query_at;
    srv_route_t route;

    must(path != NULL && (nl == NULL || body != NULL), "out of memory");
    memcpy(path, data, len);
    if (body != NULL)
        memcpy(body, nl + 1, blen);
    q = memchr(path, '?', len);
    query_at = q != NULL ? (size_t)(q - path) : SIZE_MAX;

    check_route(path, len, query_at);
    check_token_query(path, len, query_at);
    check_history_route(path, len);
    check_u64(path, len);
    if (srv__http_route(path, len, query_at, &route) == SRV_ROUTE_HISTORY) {
        srv_hroute_t hr;
        check_history_route(route.rest, route.rest_len);
        srv__history_route(route.rest, route.rest_len, &hr);
        check_query(hr.query, hr.query_len);
    } else if (q != NULL) {
        check_query(q + 1, len - query_at - 1);
    }
    check_json_string(path, len);
    if (body != NULL) {
        check_body(body, blen);
        check_token_header(body, blen);
        check_u64(body, blen);
        check_json_string(body, blen);
    } else {
        /* no body at all */
        const char *err = NULL;
        srv_jfield_t f = {"version", SRV_JF_UINT, 0, 0, 0, NULL, 0};
        must(srv__history_parse_body(NULL, 0, &f, 1, &err) == -1 && err != NULL,
             "a missing body is accepted");
    }
    free(path);
    free(body);
    return 0;
}
