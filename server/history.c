/* SPDX-License-Identifier: MIT */
/*
 * history.c: a document's history (docs/history.md), served the same way to
 * REST (http.c: /api/docs/<document>/...) and to HISTORY messages on a
 * document's WebSocket (session.c): the versions listed as bursts of log
 * entries, the text of any version and what changed in it, who wrote each
 * part of the text, restoring a version, and naming one.
 *
 * Reads come from what the store has committed: `head` is the committed last
 * seq, and entries still queued (typed a few milliseconds ago) show up once
 * their commit is done. Asking for a seq that is queued but not committed yet
 * gets 503 (retry shortly). A restore works on the live document in memory
 * (loading it if needed): it is a new edit by the server's replica, logged
 * with the version it restored and broadcast at the end of the tick.
 *
 * Everything here runs on the event-loop thread; store reads are short LMDB
 * read transactions. Every request parameter and body is hostile until
 * checked: numbers, paths and the small JSON bodies are parsed by bounded
 * code of our own (the srv__history_parse_* and srv__history_route functions:
 * pure, declared in srv_internal.h for tests/fuzz/fuzz_http.c).
 */
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 200
#define RESTORE_NAME_DEFAULT "restore"
/* The replica id of the documents built from the store here: they are only
 * read, never edited, so any id does. */
#define READ_CLIENT 1

/* ---- JSON output --------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0 .. n) (shortest forms, no
 * surrogates, at most U+10FFFF), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (b >= 0xe0 && b <= 0xef) {
        unsigned char lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (b >= 0xf0 && b <= 0xf4) {
        unsigned char lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

void srv__json_string(proto_buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;
    srv__buf_append(out, "\"", 1);
    while (i < len) {
        unsigned char c = u[i];
        char esc[6];
        size_t n = 0, skip = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        } else if (c >= 0x80) {
            skip = utf8_len(u + i, len - i);
            if (skip == 0) {
                memcpy(esc, "\\ufffd", 6); /* not UTF-8: the replacement character */
                n = 6;
                skip = 1;
            }
        }
        if (n) {
            srv__buf_append(out, s + start, i - start);
            srv__buf_append(out, esc, n);
            start = i + skip;
        }
        i += skip;
    }
    srv__buf_append(out, s + start, len - start);
    srv__buf_append(out, "\"", 1);
}

const char *srv__http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

/* ---- the request ---------------------------------------------------------- */

/* A replica's user name as the store knows it (cached for one request). */
typedef struct {
    uint64_t replica;
    int found;
    size_t len;
    char name[STORE_AUTHOR_NAME_MAX + 1];
} name_cache_t;

/* A named version. */
typedef struct {
    uint64_t seq;
    size_t len;
    char label[STORE_LABEL_MAX];
} label_t;

typedef struct {
    srv_t *srv;
    const char *doc;
    size_t doc_len;
    srv_session_t *session;
    proto_buf_t *out;
    name_cache_t *names;
    size_t nnames, names_cap;
    label_t *labels; /* in seq order */
    size_t nlabels, labels_cap;
} hreq_t;

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        abort(); /* server/ aborts on OOM */
    return p;
}

/* Writes {"error": msg} as the answer and returns `status`. */
static int fail(hreq_t *h, int status, const char *msg)
{
    proto_buf_reset(h->out);
    srv__buf_append(h->out, "{\"error\":", 9);
    srv__json_string(h->out, msg, strlen(msg));
    srv__buf_append(h->out, "}\n", 2);
    return status;
}

static void out_str(hreq_t *h, const char *s)
{
    srv__buf_append(h->out, s, strlen(s));
}

/* {"name": ..., "replica": "..."} of a replica; name null when the store has
 * none for it. */
static void out_author(hreq_t *h, uint64_t replica)
{
    name_cache_t *c = NULL;
    for (size_t i = 0; i < h->nnames; i++)
        if (h->names[i].replica == replica)
            c = &h->names[i];
    if (c == NULL) {
        if (h->nnames == h->names_cap) {
            h->names_cap = h->names_cap ? h->names_cap * 2 : 8;
            h->names = xrealloc(h->names, h->names_cap * sizeof(*h->names));
        }
        c = &h->names[h->nnames++];
        memset(c, 0, sizeof(*c));
        c->replica = replica;
        c->found = store_replica_name(h->srv->store, h->doc, h->doc_len, replica, c->name) == 0;
        if (c->found)
            c->len = strnlen(c->name, STORE_AUTHOR_NAME_MAX);
    }
    out_str(h, "{\"name\":");
    if (c->found)
        srv__json_string(h->out, c->name, c->len);
    else
        out_str(h, "null");
    srv__buf_printf(h->out, ",\"replica\":\"%llu\"}", (unsigned long long)replica);
}

/* Committed head of the document. A document that lives only in memory so
 * far (its first entries still queued) exists with head 0. Returns 0, or the
 * status of the error answer written. */
static int doc_head(hreq_t *h, uint64_t *head)
{
    store_doc_stat_t st;
    int err = store_doc_stat(h->srv->store, h->doc, h->doc_len, &st);
    if (err == STORE_ENOTFOUND && srv__doc_find(h->srv, h->doc, h->doc_len) != NULL) {
        *head = 0;
        return 0;
    }
    if (err == STORE_ENOTFOUND)
        return fail(h, 404, "no such document");
    if (err != 0)
        return fail(h, 500, "the document's history cannot be read");
    *head = st.last_seq;
    return 0;
}

/* Checks that version `seq` exists (0 .. head). A seq already given to an
 * entry that is not committed yet is 503: it exists in a moment. */
static int check_seq(hreq_t *h, uint64_t seq, uint64_t head)
{
    srv_doc_t *doc;
    if (seq <= head)
        return 0;
    doc = srv__doc_find(h->srv, h->doc, h->doc_len);
    if (doc != NULL && seq <= doc->last_seq)
        return fail(h, 503, "this version is not committed yet: retry in a moment");
    return fail(h, 404, "no such version");
}

static int on_label(void *ctx, uint64_t seq, const store_version_t *v)
{
    hreq_t *h = ctx;
    label_t *l;
    if (v->label_len == 0)
        return 0;
    if (h->nlabels == h->labels_cap) {
        h->labels_cap = h->labels_cap ? h->labels_cap * 2 : 8;
        h->labels = xrealloc(h->labels, h->labels_cap * sizeof(*h->labels));
    }
    l = &h->labels[h->nlabels++];
    l->seq = seq;
    l->len = v->label_len < STORE_LABEL_MAX ? v->label_len : STORE_LABEL_MAX;
    memcpy(l->label, v->label, l->len);
    return 0;
}

static int load_labels(hreq_t *h)
{
    int err = store_version_list(h->srv->store, h->doc, h->doc_len, on_label, h);
    if (err != 0 && err != STORE_ENOTFOUND)
        return fail(h, 500, "the document's named versions cannot be read");
    return 0;
}

/* The named version at `seq`, or NULL. */
static const label_t *label_at(const hreq_t *h, uint64_t seq)
{
    size_t lo = 0, hi = h->nlabels;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->labels[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->nlabels && h->labels[lo].seq == seq ? &h->labels[lo] : NULL;
}

/* ---- parsing parameters ----------------------------------------------------- */

int srv__history_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int srv__history_parse_query(const char *q, size_t n, srv_hparam_t *params, size_t nparams,
                             size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        size_t end = i, eq;
        while (end < n && q[end] != '&')
            end++;
        for (eq = i; eq < end && q[eq] != '='; eq++)
            ;
        for (size_t k = 0; k < nparams; k++) {
            if (strlen(params[k].key) != eq - i || memcmp(params[k].key, q + i, eq - i) != 0)
                continue;
            if (params[k].given || eq == end ||
                srv__history_parse_u64(q + eq + 1, end - eq - 1, &params[k].value) != 0) {
                *bad = k;
                return -1;
            }
            params[k].given = 1;
        }
        i = end + 1;
    }
    return 0;
}

/* srv__history_parse_query(), answering 400 about the parameter at fault.
 * Returns 0 or the status of the answer written. */
static int parse_query(hreq_t *h, const char *q, size_t n, srv_hparam_t *params, size_t nparams)
{
    size_t bad = 0;
    char msg[64];
    if (srv__history_parse_query(q, n, params, nparams, &bad) == 0)
        return 0;
    snprintf(msg, sizeof(msg), "bad parameter '%s': a number expected", params[bad].key);
    return fail(h, 400, msg);
}

/* ---- parsing JSON bodies -------------------------------------------------------- */

/*
 * The bodies are one flat JSON object ({"version": 12, "name": "Ada"}). The
 * parser takes exactly RFC 8259 for that: members whose values are strings,
 * non-negative integers, true, false or null; a nested object or array, a
 * fraction, an exponent or a negative number is refused. Strings are decoded
 * (escapes, \u with surrogate pairs) into UTF-8 and must be valid UTF-8 in the
 * body. Unknown members are skipped; a known one given twice is refused.
 */
typedef struct {
    const unsigned char *p, *end;
    const char *err;
} jparser_t;

static void jp_ws(jparser_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Parses a string at j->p (the opening quote) and decodes it into out[0 ..
 * cap); *len is set to its decoded length, which may exceed cap (then only
 * cap bytes were stored). Returns 0 or -1 with j->err set. */
static int jp_string(jparser_t *j, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    j->p++; /* the quote */
    for (;;) {
        unsigned char c, enc[4];
        size_t k;
        unsigned cp;
        if (j->p >= j->end) {
            j->err = "unterminated string";
            return -1;
        }
        c = *j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) {
            j->err = "control character in a string";
            return -1;
        }
        if (c != '\\') {
            k = utf8_len(j->p, (size_t)(j->end - j->p));
            if (k == 0) {
                j->err = "invalid UTF-8";
                return -1;
            }
            for (size_t i = 0; i < k; i++, n++)
                if (n < cap)
                    out[n] = (char)j->p[i];
            j->p += k;
            continue;
        }
        if (j->end - j->p < 2) {
            j->err = "unterminated string";
            return -1;
        }
        c = j->p[1];
        j->p += 2;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            cp = c;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (j->end - j->p < 4 || hex4(j->p, &cp) != 0) {
                j->err = "bad \\u escape";
                return -1;
            }
            j->p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                j->err = "lone surrogate in a \\u escape";
                return -1;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                    hex4(j->p + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                    j->err = "lone surrogate in a \\u escape";
                    return -1;
                }
                j->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        default:
            j->err = "bad escape in a string";
            return -1;
        }
        if (cp < 0x80) {
            enc[0] = (unsigned char)cp;
            k = 1;
        } else if (cp < 0x800) {
            enc[0] = (unsigned char)(0xc0 | cp >> 6);
            enc[1] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 2;
        } else if (cp < 0x10000) {
            enc[0] = (unsigned char)(0xe0 | cp >> 12);
            enc[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 3;
        } else {
            enc[0] = (unsigned char)(0xf0 | cp >> 18);
            enc[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (unsigned char)(0x80 | (cp & 0x3f));
            k = 4;
        }
        for (size_t i = 0; i < k; i++, n++)
            if (n < cap)
                out[n] = (char)enc[i];
    }
    *len = n;
    return 0;
}

/* A non-negative integer without fraction or exponent. */
static int jp_uint(jparser_t *j, uint64_t *out)
{
    const unsigned char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) {
        j->err = "numbers must be integers";
        return -1;
    }
    if ((j->p - start > 1 && *start == '0') ||
        srv__history_parse_u64((const char *)start, (size_t)(j->p - start), out) != 0) {
        j->err = "bad number";
        return -1;
    }
    return 0;
}

static int jp_literal(jparser_t *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) {
        j->err = "body is not JSON";
        return -1;
    }
    j->p += n;
    return 0;
}

int srv__history_parse_body(const char *body, size_t len, srv_jfield_t *fields, size_t nfields,
                            const char **err)
{
    jparser_t j;
    char key[32];
    int first = 1;

    /* Before any arithmetic on `body`: NULL + 0 is undefined too (UBSan). */
    if (body == NULL) {
        *err = "a JSON object body is expected";
        return -1;
    }
    j.p = (const unsigned char *)body;
    j.end = j.p + len;
    j.err = NULL;
    jp_ws(&j);
    if (j.p >= j.end || *j.p != '{') {
        *err = "a JSON object body is expected";
        return -1;
    }
    j.p++;
    for (;;) {
        srv_jfield_t *f = NULL;
        size_t klen, vlen;
        jp_ws(&j);
        if (j.p < j.end && *j.p == '}' && first) {
            j.p++;
            break;
        }
        if (j.p >= j.end || *j.p != '"') {
            j.err = "body is not JSON";
            goto Fail;
        }
        if (jp_string(&j, key, sizeof(key), &klen) != 0)
            goto Fail;
        for (size_t i = 0; i < nfields; i++)
            if (klen == strlen(fields[i].key) && memcmp(key, fields[i].key, klen) == 0)
                f = &fields[i];
        jp_ws(&j);
        if (j.p >= j.end || *j.p != ':') {
            j.err = "body is not JSON";
            goto Fail;
        }
        j.p++;
        jp_ws(&j);
        if (j.p >= j.end) {
            j.err = "body is not JSON";
            goto Fail;
        }
        if (f != NULL && f->given) {
            j.err = "a member is given twice";
            goto Fail;
        }
        switch (*j.p) {
        case '"':
            /* (An unknown member's string is checked, not stored.) */
            if (jp_string(&j, f && f->kind == SRV_JF_STR ? f->str : NULL,
                          f && f->kind == SRV_JF_STR ? f->max : 0, &vlen) != 0)
                goto Fail;
            if (f != NULL && f->kind != SRV_JF_STR) {
                j.err = "a member has the wrong type";
                goto Fail;
            }
            if (f != NULL) {
                if (vlen > f->max) {
                    j.err = "a string member is too long";
                    goto Fail;
                }
                f->len = vlen;
                f->given = 1;
            }
            break;
        case '{':
        case '[':
            j.err = "nested objects and arrays are not accepted";
            goto Fail;
        case 't':
        case 'f':
            if (jp_literal(&j, *j.p == 't' ? "true" : "false") != 0)
                goto Fail;
            if (f != NULL) {
                j.err = "a member has the wrong type";
                goto Fail;
            }
            break;
        case 'n':
            if (jp_literal(&j, "null") != 0)
                goto Fail;
            break; /* null: as if absent */
        case '-':
            j.err = "numbers must not be negative";
            goto Fail;
        default:
            if (*j.p < '0' || *j.p > '9') {
                j.err = "body is not JSON";
                goto Fail;
            }
            if (f != NULL && f->kind != SRV_JF_UINT) {
                j.err = "a member has the wrong type";
                goto Fail;
            }
            if (jp_uint(&j, f != NULL ? &f->num : &(uint64_t){0}) != 0)
                goto Fail;
            if (f != NULL)
                f->given = 1;
            break;
        }
        first = 0;
        jp_ws(&j);
        if (j.p < j.end && *j.p == ',') {
            j.p++;
            continue;
        }
        if (j.p < j.end && *j.p == '}') {
            j.p++;
            break;
        }
        j.err = "body is not JSON";
        goto Fail;
    }
    jp_ws(&j);
    if (j.p != j.end) {
        j.err = "bytes after the JSON object";
        goto Fail;
    }
    return 0;
Fail:
    *err = j.err;
    return -1;
}

/* srv__history_parse_body(), answering 400 with the reason. Returns 0 or the
 * status of the answer written. */
static int parse_body(hreq_t *h, const char *body, size_t len, srv_jfield_t *fields, size_t nfields)
{
    const char *err = NULL;
    if (srv__history_parse_body(body, len, fields, nfields, &err) == 0)
        return 0;
    return fail(h, 400, err);
}

/* Names and labels: no control characters (they would only confuse lists). */
static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* ---- bursts ------------------------------------------------------------------ */

/*
 * Bursts are defined walking the log forward: an entry joins the burst of the
 * entry before it unless it comes more than the gap after it, either of the
 * two is a restore, the earlier one carries a name, or it comes more than the
 * burst maximum after the burst's first entry. The first three rules depend
 * on two neighbours only and cut the log into segments; the last one needs
 * the segment's start. So a walk backwards (newest first) collects a segment
 * until a break, then splits it forward. Pagination and version lookups thus
 * see the same boundaries wherever they start.
 */
typedef struct {
    uint64_t seq, time, restore_of;
} ent_t;

typedef struct {
    uint64_t first, last;
} span_t;

typedef struct {
    hreq_t *h;
    ent_t *seg; /* the open segment, newest first */
    size_t nseg, seg_cap;
} segwalk_t;

/* Whether `older` and the entry right after it (`newer`) are in different
 * segments. */
static int seg_break(const hreq_t *h, const ent_t *older, const ent_t *newer)
{
    const srv_config_t *cfg = &h->srv->cfg;
    return (newer->time > older->time && newer->time - older->time > cfg->history_burst_gap_ms) ||
           older->restore_of != 0 || newer->restore_of != 0 || label_at(h, older->seq) != NULL;
}

static void seg_push(segwalk_t *w, const ent_t *e)
{
    if (w->nseg == w->seg_cap) {
        w->seg_cap = w->seg_cap ? w->seg_cap * 2 : 64;
        w->seg = xrealloc(w->seg, w->seg_cap * sizeof(*w->seg));
    }
    w->seg[w->nseg++] = *e;
}

/* Splits the open segment into bursts by the burst maximum. Returns them in
 * *out (malloc'd, newest first) and their count. */
static size_t seg_split(const segwalk_t *w, span_t **out)
{
    uint64_t max = w->h->srv->cfg.history_burst_max_ms;
    span_t *b = xrealloc(NULL, w->nseg * sizeof(*b));
    size_t n = 0, start = w->nseg - 1;
    for (size_t i = w->nseg - 1; i-- > 0;) {
        if (w->seg[i].time > w->seg[start].time && w->seg[i].time - w->seg[start].time > max) {
            b[n++] = (span_t){w->seg[start].seq, w->seg[i + 1].seq};
            start = i;
        }
    }
    b[n++] = (span_t){w->seg[start].seq, w->seg[0].seq};
    for (size_t i = 0; i < n / 2; i++) { /* oldest first -> newest first */
        span_t t = b[i];
        b[i] = b[n - 1 - i];
        b[n - 1 - i] = t;
    }
    *out = b;
    return n;
}

/* The versions of one page: bursts whose last seq is below `before`. */
typedef struct {
    segwalk_t w;
    uint64_t before;
    size_t limit;
    span_t *bursts; /* newest first */
    size_t n;
} listwalk_t;

static void list_flush(listwalk_t *l)
{
    span_t *b;
    size_t n;
    if (l->w.nseg == 0)
        return;
    n = seg_split(&l->w, &b);
    for (size_t i = 0; i < n && l->n < l->limit; i++)
        if (b[i].last < l->before)
            l->bursts[l->n++] = b[i];
    free(b);
    l->w.nseg = 0;
}

static int on_list_entry(void *ctx, uint64_t seq, const store_entry_t *e)
{
    listwalk_t *l = ctx;
    ent_t cur = {seq, e->time_ms, e->restore_of};
    if (l->w.nseg > 0 && seg_break(l->w.h, &cur, &l->w.seg[l->w.nseg - 1])) {
        list_flush(l);
        if (l->n == l->limit)
            return 1;
    }
    seg_push(&l->w, &cur);
    return 0;
}

/* The burst holding `seq` (>= 1): its first seq, and the time of entry `seq`. */
typedef struct {
    segwalk_t w;
    int stopped;
} startwalk_t;

static int on_start_entry(void *ctx, uint64_t seq, const store_entry_t *e)
{
    startwalk_t *s = ctx;
    ent_t cur = {seq, e->time_ms, e->restore_of};
    if (s->w.nseg > 0 && seg_break(s->w.h, &cur, &s->w.seg[s->w.nseg - 1])) {
        s->stopped = 1;
        return 1;
    }
    seg_push(&s->w, &cur);
    return 0;
}

static int burst_start(hreq_t *h, uint64_t seq, uint64_t *first, uint64_t *time)
{
    startwalk_t s;
    span_t *b;
    int err;
    memset(&s, 0, sizeof(s));
    s.w.h = h;
    err = store_log_read_rev(h->srv->store, h->doc, h->doc_len, seq, on_start_entry, &s);
    if (err != 0 || s.w.nseg == 0 || s.w.seg[0].seq != seq) {
        free(s.w.seg);
        return fail(h, 500, "the document's history cannot be read");
    }
    seg_split(&s.w, &b);
    *first = b[0].first; /* the newest burst of the segment holds `seq` */
    *time = s.w.seg[0].time;
    free(b);
    free(s.w.seg);
    return 0;
}

/* ---- GET versions ------------------------------------------------------------- */

typedef struct {
    uint64_t replica, first_seq;
    size_t len;
    char name[STORE_AUTHOR_NAME_MAX];
} vauthor_t;

typedef struct {
    uint64_t start, end, entries, inserted, deleted, restore_of;
    vauthor_t *authors;
    size_t nauthors, authors_cap;
} vinfo_t;

typedef struct {
    const span_t *bursts;
    vinfo_t *info;
    size_t n, cur;
} detailwalk_t;

static int on_detail_entry(void *ctx, uint64_t seq, const store_entry_t *e)
{
    detailwalk_t *d = ctx;
    crdt_update_summary_t sum;
    vinfo_t *v;
    vauthor_t *a = NULL;

    while (d->cur < d->n && seq < d->bursts[d->cur].first)
        d->cur++;
    if (d->cur == d->n)
        return 1;
    v = &d->info[d->cur];
    if (v->entries == 0) {
        v->end = e->time_ms;
        v->restore_of = e->restore_of;
    }
    v->start = e->time_ms; /* walking backwards: the last one seen is the first */
    v->entries++;
    if (crdt_update_summary(e->update, e->update_len, NULL, &sum) == 0) {
        v->inserted += sum.inserted;
        v->deleted += sum.deleted;
    }
    for (size_t i = 0; i < v->nauthors; i++)
        if (v->authors[i].replica == e->author)
            a = &v->authors[i];
    if (a == NULL) {
        if (v->nauthors == v->authors_cap) {
            v->authors_cap = v->authors_cap ? v->authors_cap * 2 : 4;
            v->authors = xrealloc(v->authors, v->authors_cap * sizeof(*v->authors));
        }
        a = &v->authors[v->nauthors++];
        a->replica = e->author;
    }
    /* The name of its earliest entry in the burst. */
    a->first_seq = seq;
    a->len =
        e->author_name_len < STORE_AUTHOR_NAME_MAX ? e->author_name_len : STORE_AUTHOR_NAME_MAX;
    memcpy(a->name, e->author_name, a->len);
    return seq == d->bursts[d->n - 1].first;
}

static int by_first_seq(const void *a, const void *b)
{
    const vauthor_t *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static int route_list(hreq_t *h, const char *q, size_t qlen)
{
    srv_hparam_t params[] = {{"before", 0, 0}, {"limit", LIST_LIMIT_DEFAULT, 0}};
    listwalk_t l;
    detailwalk_t d;
    uint64_t head, top;
    int status, err;

    if ((status = parse_query(h, q, qlen, params, 2)) != 0)
        return status;
    if (params[1].value < 1 || params[1].value > LIST_LIMIT_MAX)
        return fail(h, 400, "bad parameter 'limit': 1 to 200");
    if ((status = doc_head(h, &head)) != 0 || (status = load_labels(h)) != 0)
        return status;

    memset(&l, 0, sizeof(l));
    l.w.h = h;
    l.before = params[0].given ? params[0].value : UINT64_MAX;
    l.limit = (size_t)params[1].value;
    l.bursts = xrealloc(NULL, l.limit * sizeof(*l.bursts));
    /* From `before` itself: whether before - 1 ends a burst depends on it. */
    top = l.before < head ? l.before : head;
    err = top == 0 ? 0
                   : store_log_read_rev(h->srv->store, h->doc, h->doc_len, top, on_list_entry, &l);
    if (err == 0 && l.n < l.limit)
        list_flush(&l);
    free(l.w.seg);

    memset(&d, 0, sizeof(d));
    d.bursts = l.bursts;
    d.n = l.n;
    d.info = xrealloc(NULL, (l.n ? l.n : 1) * sizeof(*d.info));
    memset(d.info, 0, (l.n ? l.n : 1) * sizeof(*d.info));
    if (err == 0 && l.n > 0)
        err = store_log_read_rev(h->srv->store, h->doc, h->doc_len, l.bursts[0].last,
                                 on_detail_entry, &d);
    if (err != 0) {
        status = fail(h, 500, "the document's history cannot be read");
        goto Exit;
    }

    proto_buf_reset(h->out);
    out_str(h, "{\"document\":");
    srv__json_string(h->out, h->doc, h->doc_len);
    srv__buf_printf(h->out, ",\"head\":%llu,\"versions\":[", (unsigned long long)head);
    for (size_t i = 0; i < l.n; i++) {
        vinfo_t *v = &d.info[i];
        const label_t *label = label_at(h, l.bursts[i].last);
        srv__buf_printf(h->out,
                        "%s\n{\"seq\":%llu,\"first_seq\":%llu,\"start\":%llu,\"end\":%llu,"
                        "\"authors\":[",
                        i ? "," : "", (unsigned long long)l.bursts[i].last,
                        (unsigned long long)l.bursts[i].first, (unsigned long long)v->start,
                        (unsigned long long)v->end);
        qsort(v->authors, v->nauthors, sizeof(*v->authors), by_first_seq);
        for (size_t k = 0; k < v->nauthors; k++) {
            out_str(h, k ? ",{\"name\":" : "{\"name\":");
            srv__json_string(h->out, v->authors[k].name, v->authors[k].len);
            srv__buf_printf(h->out, ",\"replica\":\"%llu\"}",
                            (unsigned long long)v->authors[k].replica);
        }
        srv__buf_printf(h->out, "],\"entries\":%llu,\"inserted\":%llu,\"deleted\":%llu,\"name\":",
                        (unsigned long long)v->entries, (unsigned long long)v->inserted,
                        (unsigned long long)v->deleted);
        if (label != NULL)
            srv__json_string(h->out, label->label, label->len);
        else
            out_str(h, "null");
        if (v->restore_of != 0)
            srv__buf_printf(h->out, ",\"restore_of\":%llu}", (unsigned long long)v->restore_of);
        else
            out_str(h, ",\"restore_of\":null}");
    }
    if (l.n > 0 && l.bursts[l.n - 1].first > 1)
        srv__buf_printf(h->out, "],\"next_before\":%llu}\n",
                        (unsigned long long)l.bursts[l.n - 1].first);
    else
        out_str(h, "],\"next_before\":null}\n");
    status = 200;
Exit:
    for (size_t i = 0; i < l.n; i++)
        free(d.info[i].authors);
    free(d.info);
    free(l.bursts);
    return status;
}

/* ---- GET versions/<seq> ------------------------------------------------------------ */

/* The document as of `seq` (0: empty). Returns 0 or the status written. */
static int load_at(hreq_t *h, uint64_t seq, crdt_doc_t **out)
{
    int err;
    if (seq == 0)
        err = crdt_doc_new(READ_CLIENT, NULL, out);
    else
        err = store_doc_load_at(h->srv->store, h->doc, h->doc_len, READ_CLIENT, seq, out, NULL);
    if (err == CRDT_ENOMEM || err == STORE_ENOMEM)
        abort();
    if (err != 0)
        return fail(h, 500, "the version cannot be built from the log");
    return 0;
}

static int state_vector_of(const crdt_doc_t *doc, crdt_buf_t *sv)
{
    if (crdt_doc_state_vector(doc, sv) != 0)
        abort();
    return 0;
}

static const char *const kind_names[] = {"kept", "inserted", "deleted"};

typedef struct {
    hreq_t *h;
    int n;
    int with_kind; /* changes (kind, author of inserted/deleted) or attribution (author) */
} spanout_t;

static int on_span(void *ctx, const crdt_span_t *sp)
{
    spanout_t *so = ctx;
    hreq_t *h = so->h;
    out_str(h, so->n++ ? ",\n{" : "\n{");
    if (so->with_kind) {
        if (sp->kind < 0 || sp->kind > 2)
            return 1;
        srv__buf_printf(h->out, "\"kind\":\"%s\",", kind_names[sp->kind]);
    }
    out_str(h, "\"text\":");
    srv__json_string(h->out, sp->text, sp->len);
    if (!so->with_kind || sp->kind != CRDT_SPAN_KEPT) {
        out_str(h, ",\"author\":");
        if (sp->author != 0)
            out_author(h, sp->author);
        else
            out_str(h, "null");
    }
    out_str(h, "}");
    return 0;
}

static int route_version(hreq_t *h, uint64_t seq, const char *q, size_t qlen)
{
    srv_hparam_t params[] = {{"from", 0, 0}};
    crdt_doc_t *hi = NULL, *lo = NULL;
    crdt_buf_t sv_lo = {0}, sv_hi = {0}, text = {0};
    uint64_t head, from, first = 0, time = 0;
    spanout_t so = {h, 0, 1};
    int status, err;

    if ((status = parse_query(h, q, qlen, params, 1)) != 0 || (status = doc_head(h, &head)) != 0 ||
        (status = check_seq(h, seq, head)) != 0)
        return status;
    if (params[0].given && (status = check_seq(h, params[0].value, head)) != 0)
        return status;
    if (seq > 0) {
        if ((status = load_labels(h)) != 0 || (status = burst_start(h, seq, &first, &time)) != 0)
            return status;
    }
    from = params[0].given ? params[0].value : seq > 0 ? first - 1 : 0;

    /* One document holding both versions: the later one; the earlier one as
     * a state vector. */
    if ((status = load_at(h, seq > from ? seq : from, &hi)) != 0)
        goto Exit;
    if (seq == from) {
        state_vector_of(hi, &sv_lo);
    } else {
        if ((status = load_at(h, seq < from ? seq : from, &lo)) != 0)
            goto Exit;
        state_vector_of(lo, &sv_lo);
    }
    if (seq >= from)
        err = crdt_doc_text(hi, &text);
    else
        err = crdt_doc_text_at(hi, sv_lo.base, sv_lo.len, &text);
    if (err != 0) {
        status = fail(h, 500, "the version's text cannot be built");
        goto Exit;
    }

    proto_buf_reset(h->out);
    out_str(h, "{\"document\":");
    srv__json_string(h->out, h->doc, h->doc_len);
    srv__buf_printf(h->out, ",\"seq\":%llu,\"from\":%llu,\"text\":", (unsigned long long)seq,
                    (unsigned long long)from);
    srv__json_string(h->out, (const char *)text.base, text.len);
    if (seq > 0)
        srv__buf_printf(h->out, ",\"time\":%llu,\"changes\":[", (unsigned long long)time);
    else
        out_str(h, ",\"time\":null,\"changes\":[");
    if (seq >= from) {
        err = crdt_doc_compare(hi, sv_lo.base, sv_lo.len, NULL, 0, on_span, &so);
    } else {
        /* From the later version (all of `hi`) back to the earlier one. */
        state_vector_of(hi, &sv_hi);
        err = crdt_doc_compare(hi, sv_hi.base, sv_hi.len, sv_lo.base, sv_lo.len, on_span, &so);
    }
    if (err != 0) {
        status = fail(h, 500, "the versions cannot be compared");
        goto Exit;
    }
    out_str(h, "]}\n");
    status = 200;
Exit:
    crdt_doc_free(hi);
    crdt_doc_free(lo);
    crdt_buf_dispose(&sv_lo);
    crdt_buf_dispose(&sv_hi);
    crdt_buf_dispose(&text);
    return status;
}

/* ---- GET attribution ---------------------------------------------------------------- */

static int route_attribution(hreq_t *h)
{
    crdt_doc_t *doc = NULL;
    store_load_info_t info;
    spanout_t so = {h, 0, 0};
    int err, status = 200;

    memset(&info, 0, sizeof(info));
    err = store_doc_load(h->srv->store, h->doc, h->doc_len, READ_CLIENT, &doc, &info);
    if (err == STORE_ENOTFOUND && srv__doc_find(h->srv, h->doc, h->doc_len) != NULL)
        err = crdt_doc_new(READ_CLIENT, NULL, &doc); /* nothing committed yet */
    if (err == STORE_ENOTFOUND)
        return fail(h, 404, "no such document");
    if (err == STORE_ENOMEM || err == CRDT_ENOMEM)
        abort();
    if (err != 0)
        return fail(h, 500, "the document cannot be loaded");
    proto_buf_reset(h->out);
    out_str(h, "{\"document\":");
    srv__json_string(h->out, h->doc, h->doc_len);
    srv__buf_printf(h->out, ",\"head\":%llu,\"spans\":[", (unsigned long long)info.last_seq);
    /* From the empty version, every span is inserted, by whoever typed it. */
    if (crdt_doc_compare(doc, NULL, 0, NULL, 0, on_span, &so) != 0)
        status = fail(h, 500, "the document cannot be walked");
    else
        out_str(h, "]}\n");
    crdt_doc_free(doc);
    return status;
}

/* ---- POST restore ------------------------------------------------------------------ */

static int route_restore(hreq_t *h, const char *body, size_t body_len)
{
    srv_t *srv = h->srv;
    char name[STORE_AUTHOR_NAME_MAX];
    srv_jfield_t fields[] = {{"version", SRV_JF_UINT, 0, 0, 0, NULL, 0},
                             {"name", SRV_JF_STR, sizeof(name), 0, 0, name, 0}};
    crdt_doc_t *version = NULL;
    crdt_buf_t sv = {0}, now = {0}, then = {0}, update = {0};
    srv_doc_t *doc;
    uint64_t head, seq = 0, ticket;
    size_t mark;
    int status, err, same;

    if ((status = parse_body(h, body, body_len, fields, 2)) != 0)
        return status;
    if (!fields[0].given)
        return fail(h, 400, "\"version\" (the seq to restore) is missing");
    if (!fields[1].given) {
        memcpy(name, RESTORE_NAME_DEFAULT, strlen(RESTORE_NAME_DEFAULT));
        fields[1].len = strlen(RESTORE_NAME_DEFAULT);
    }
    if (has_control(name, fields[1].len))
        return fail(h, 400, "\"name\" holds control characters");
    if (srv->stopping)
        return fail(h, 503, "the server is shutting down");
    if (srv->store_error)
        return fail(h, 500, "storage failed: edits cannot be saved");
    if ((status = doc_head(h, &head)) != 0 || (status = check_seq(h, fields[0].num, head)) != 0)
        return status;
    if ((status = load_at(h, fields[0].num, &version)) != 0)
        return status;
    state_vector_of(version, &sv);
    crdt_doc_free(version);
    if (srv__doc_open(srv, h->doc, h->doc_len, &doc) != 0) {
        status = fail(h, 500, "the document cannot be loaded");
        goto Exit;
    }

    /* The live document holds every committed entry, so it has the version. */
    if (crdt_doc_text(doc->crdt, &now) != 0)
        abort();
    err = crdt_doc_text_at(doc->crdt, sv.base, sv.len, &then);
    if (err != 0) {
        status = fail(h, 500, "the version cannot be built");
        goto Exit;
    }
    same = now.len == then.len && memcmp(now.base, then.base, now.len) == 0;
    if (!same) {
        store_append_t a;
        srv__doc_begin_change(doc, NULL);
        /* Each restore gets a replica id of its own, so who typed the
         * restored text (attribution, changes) names the person who asked
         * for this restore, not whoever restored first. */
        if (crdt_doc_set_client(doc->crdt, srv__random_replica()) != 0)
            abort();
        err = crdt_doc_restore(doc->crdt, sv.base, sv.len, &update);
        if (err == CRDT_ENOMEM)
            abort();
        if (err != 0) {
            status = fail(h, 500, "the version cannot be restored");
            goto Exit;
        }
        memset(&a, 0, sizeof(a));
        a.name = h->doc;
        a.name_len = h->doc_len;
        a.update = update.base;
        a.update_len = update.len;
        a.author = crdt_doc_client(doc->crdt);
        a.author_name = name;
        a.author_name_len = fields[1].len;
        a.time_ms = srv__wall_ms();
        /* The store cannot mark a restore of version 0 (restore_of 0 means
         * none): that one is logged as a plain edit. */
        a.restore_of = fields[0].num;
        ticket = store_append_ex(srv->store, &a, &seq);
        if (ticket == 0) {
            /* Applied in memory and broadcast, but never durable: as for an
             * editor's update when the store fails. */
            srv->store_error = store_failed(srv->store);
            if (srv->store_error == 0)
                abort(); /* out of memory */
            status = fail(h, 500, "storage failed: edits cannot be saved");
            goto Exit;
        }
        srv->metrics.updates_stored++;
        doc->last_ticket = ticket;
        doc->last_seq = seq;
        crdt_buf_dispose(&now);
        if (crdt_doc_text(doc->crdt, &now) != 0)
            abort();
    }
    proto_buf_reset(h->out);
    out_str(h, "{\"document\":");
    srv__json_string(h->out, h->doc, h->doc_len);
    srv__buf_printf(h->out, ",\"restored\":%llu,\"seq\":", (unsigned long long)fields[0].num);
    if (same)
        out_str(h, "null");
    else
        srv__buf_printf(h->out, "%llu", (unsigned long long)seq);
    out_str(h, ",\"text\":");
    /* Over the WebSocket the answer must fit one message, and the restore is
     * done: rather than a 413, the text (which the UPDATE brings anyway) is
     * left out. (32 bytes cover the HISTORY_RESULT framing and the end.) */
    mark = h->out->len;
    srv__json_string(h->out, (const char *)now.base, now.len);
    if (h->session != NULL && h->out->len + 32 > srv->cfg.max_message) {
        h->out->len = mark;
        out_str(h, "null");
    }
    out_str(h, "}\n");
    status = 200;
Exit:
    crdt_buf_dispose(&sv);
    crdt_buf_dispose(&now);
    crdt_buf_dispose(&then);
    crdt_buf_dispose(&update);
    return status;
}

/* ---- POST versions/<seq>/name ---------------------------------------------------------- */

static int route_name(hreq_t *h, uint64_t seq, const char *body, size_t body_len)
{
    char label[STORE_LABEL_MAX], by[STORE_AUTHOR_NAME_MAX];
    srv_jfield_t fields[] = {{"name", SRV_JF_STR, sizeof(label), 0, 0, label, 0},
                             {"by", SRV_JF_STR, sizeof(by), 0, 0, by, 0}};
    uint64_t head;
    int status;

    if ((status = parse_body(h, body, body_len, fields, 2)) != 0)
        return status;
    if (!fields[0].given)
        return fail(h, 400, "\"name\" (the label, empty to remove it) is missing");
    if (has_control(label, fields[0].len) || has_control(by, fields[1].len))
        return fail(h, 400, "\"name\" or \"by\" holds control characters");
    if ((status = doc_head(h, &head)) != 0)
        return status;
    if (seq == 0)
        return fail(h, 404, "version 0 (the empty document) cannot be named");
    if ((status = check_seq(h, seq, head)) != 0)
        return status;
    /* The store keeps a replica id as the author of a name: the WebSocket's
     * own, or 0 for REST ("by" is checked but not kept). */
    if (store_version_put(h->srv->store, h->doc, h->doc_len, seq, label, fields[0].len,
                          h->session != NULL ? h->session->replica : 0, srv__wall_ms()) == 0)
        return fail(h, 500, "storage failed: the name cannot be saved");
    proto_buf_reset(h->out);
    out_str(h, "{\"document\":");
    srv__json_string(h->out, h->doc, h->doc_len);
    srv__buf_printf(h->out, ",\"seq\":%llu,\"name\":", (unsigned long long)seq);
    if (fields[0].len > 0)
        srv__json_string(h->out, label, fields[0].len);
    else
        out_str(h, "null");
    out_str(h, "}\n");
    return 200;
}

/* ---- routing ----------------------------------------------------------------------- */

static int is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

void srv__history_route(const char *path, size_t len, srv_hroute_t *out)
{
    const char *slash, *mark = memchr(path, '?', len);

    memset(out, 0, sizeof(*out));
    if (mark != NULL) {
        out->query = mark + 1;
        out->query_len = len - (size_t)(out->query - path);
        len = (size_t)(mark - path);
    }
    if (is(path, len, "versions")) {
        out->kind = SRV_HROUTE_LIST;
    } else if (is(path, len, "attribution")) {
        out->kind = SRV_HROUTE_ATTRIBUTION;
    } else if (is(path, len, "restore")) {
        out->kind = SRV_HROUTE_RESTORE;
    } else if (len > 9 && memcmp(path, "versions/", 9) == 0) {
        const char *num = path + 9;
        size_t numlen = len - 9;
        slash = memchr(num, '/', numlen);
        if (slash != NULL)
            numlen = (size_t)(slash - num);
        if (slash != NULL && !is(slash, len - (size_t)(slash - path), "/name"))
            out->kind = SRV_HROUTE_NONE;
        else if (srv__history_parse_u64(num, numlen, &out->seq) != 0)
            out->kind = SRV_HROUTE_BAD_SEQ;
        else
            out->kind = slash == NULL ? SRV_HROUTE_VERSION : SRV_HROUTE_NAME;
    } else {
        out->kind = SRV_HROUTE_NONE;
    }
}

int srv__history_serve(srv_t *srv, const char *doc, size_t doc_len, const srv_history_req_t *req,
                       proto_buf_t *out)
{
    hreq_t h;
    srv_hroute_t r;
    int get = is(req->method, req->method_len, "GET");
    int post = is(req->method, req->method_len, "POST");
    int status;

    memset(&h, 0, sizeof(h));
    h.srv = srv;
    h.doc = doc;
    h.doc_len = doc_len;
    h.session = req->session;
    h.out = out;

    if (req->body != NULL && req->body_len > SRV_HISTORY_MAX_BODY) {
        status = fail(&h, 413, "the body is larger than 4096 bytes");
        goto Exit;
    }
    srv__history_route(req->path, req->path_len, &r);
    switch (r.kind) {
    case SRV_HROUTE_LIST:
        status = get ? route_list(&h, r.query, r.query_len) : fail(&h, 405, "only GET");
        break;
    case SRV_HROUTE_ATTRIBUTION:
        status = get ? route_attribution(&h) : fail(&h, 405, "only GET");
        break;
    case SRV_HROUTE_RESTORE:
        status = post ? route_restore(&h, req->body, req->body_len) : fail(&h, 405, "only POST");
        break;
    case SRV_HROUTE_BAD_SEQ:
        status = fail(&h, 400, "bad version: a seq (a number) expected");
        break;
    case SRV_HROUTE_VERSION:
        status = get ? route_version(&h, r.seq, r.query, r.query_len) : fail(&h, 405, "only GET");
        break;
    case SRV_HROUTE_NAME:
        status =
            post ? route_name(&h, r.seq, req->body, req->body_len) : fail(&h, 405, "only POST");
        break;
    default:
        status = fail(&h, 404, "no such route");
        break;
    }
Exit:
    free(h.names);
    free(h.labels);
    return status;
}
