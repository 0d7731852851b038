/* SPDX-License-Identifier: MIT */
/*
 * fuzz_token.c: libFuzzer target for weftd's access tokens (server/auth.c,
 * declared in server/srv_internal.h): srv__token_check(), srv__token_make()
 * and srv__token_doc_matches(). The token code is pure (no clock, no server),
 * so it runs here without an event loop.
 *
 * The first byte of the input picks a mode (its value mod 4); the rest is:
 *
 *   0  a token, as a client would send it. Checked with a fixed secret: the
 *      result is 0 or a SRV_TOKEN_E* code of srv__token_check(); 0 or
 *      SRV_TOKEN_EEXPIRED only when the token's MAC, recomputed here with
 *      OpenSSL, is right (so random bytes never verify); a token that verifies
 *      is checked again with another secret (refused) and its claims pass the
 *      properties of a verified token below.
 *   1  the payload of a token, which the target signs itself (base64url and
 *      HMAC-SHA256 written here, independently of auth.c), so the fuzzer gets
 *      past the signature into the claims parser: a token within
 *      SRV_MAX_TOKEN is never refused for its MAC, and one that verifies has
 *      exactly the claims the payload spells ("doc\nname\nrole\nexpires").
 *   2  claims: role byte, 8 bytes expiry, 8 bytes "now", then the document
 *      pattern, '\n', the user name, '\n', a document name. srv__token_make()
 *      refuses exactly the claims that break the rules of srv_internal.h
 *      (checked by an independent rule here); a token it makes is at most
 *      SRV_MAX_TOKEN bytes and verifies (0, or SRV_TOKEN_EEXPIRED when now >=
 *      expires) to the same claims; one changed byte anywhere makes it
 *      refused.
 *   3  a pattern, '\n', a document name: srv__token_doc_matches() agrees with
 *      the rule "a name equals it, or a pattern ending in '*' is a prefix".
 *
 * Every verified token (modes 0, 1, 2) must re-encode consistently: made
 * again from its claims with the same secret, it is the same bytes (tokens
 * are canonical), and srv__token_doc_matches() of its own pattern accepts the
 * document it names. A violated property aborts with its description. Seed
 * corpus in tests/fuzz/corpus/token/ (one file per mode and case; the valid
 * tokens there are signed with SECRET below).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "srv_internal.h"
#include "fuzz_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The secret of the seed corpus's valid tokens (32 bytes). */
static const char SECRET[] = "weft-fuzz-secret-0123456789abcde";
static const char OTHER[] = "weft-fuzz-secret-0123456789abcdX";
/* "now" of mode 0 and 1: 2023-11-14; the seeds' tokens expire later or earlier. */
#define NOW 1700000000ull

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_token: %s\n", what);
        abort();
    }
}

static const uint8_t *key(const char *s)
{
    return (const uint8_t *)s;
}

/* base64url without padding, written without auth.c's code. */
static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

/* The MAC part a token with this body ("v1." and the payload) must end with. */
static void expected_mac(const char *secret, const char *body, size_t len, char out[64])
{
    uint8_t m[32];
    unsigned int n = 0;
    must(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, m, &n) !=
                 NULL &&
             n == 32,
         "HMAC failed");
    b64url(m, 32, out);
}

/* 1 when token[0 .. len) is "<body>.<base64url of HMAC(secret, body)>". */
static int mac_is_right(const char *secret, const char *token, size_t len)
{
    char want[64];
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--)
        if (token[i - 1] == '.') {
            dot = token + i - 1;
            break;
        }
    if (dot == NULL)
        return 0;
    expected_mac(secret, token, (size_t)(dot - token), want);
    return strlen(want) == len - (size_t)(dot - token) - 1 &&
           memcmp(want, dot + 1, strlen(want)) == 0;
}

/* A document name, or a (possibly empty) prefix of one followed by '*'. */
static int pattern_rule(const char *p, size_t n)
{
    if (n >= 1 && p[n - 1] == '*')
        return n == 1 || fuzz_docname_rule(p, n - 1);
    return fuzz_docname_rule(p, n);
}

/* A user name: 1..PROTO_MAX_NAME bytes of UTF-8 (shortest forms, no
 * surrogates, at most U+10FFFF) without U+0000..U+001F and U+007F. Decodes
 * each sequence and compares it with the shortest encoding of its value. */
static int name_rule(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    if (n < 1 || n > PROTO_MAX_NAME)
        return 0;
    while (i < n) {
        uint32_t cp;
        size_t k, need;
        if (u[i] < 0x80) {
            if (u[i] < 0x20 || u[i] == 0x7f)
                return 0;
            i++;
            continue;
        }
        if ((u[i] & 0xe0) == 0xc0)
            k = 2, cp = u[i] & 0x1fu;
        else if ((u[i] & 0xf0) == 0xe0)
            k = 3, cp = u[i] & 0x0fu;
        else if ((u[i] & 0xf8) == 0xf0)
            k = 4, cp = u[i] & 0x07u;
        else
            return 0;
        if (n - i < k)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((u[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (u[i + j] & 0x3fu);
        }
        need = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (need != k || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static int matches_rule(const char *pat, size_t plen, const char *doc, size_t dlen)
{
    if (plen >= 1 && pat[plen - 1] == '*')
        return dlen >= plen - 1 && memcmp(pat, doc, plen - 1) == 0;
    return plen == dlen && memcmp(pat, doc, plen) == 0;
}

static int same_claims(const srv_token_t *a, const srv_token_t *b)
{
    return strcmp(a->doc, b->doc) == 0 && strcmp(a->name, b->name) == 0 && a->role == b->role &&
           a->expires == b->expires;
}

/* Properties of every token that verified (r is 0 or SRV_TOKEN_EEXPIRED). */
static void check_verified(const char *token, size_t len, uint64_t now, int r, const srv_token_t *c)
{
    char again[SRV_MAX_TOKEN + 1];
    srv_token_t c2;
    size_t dlen = strnlen(c->doc, sizeof c->doc), nlen = strnlen(c->name, sizeof c->name);
    int n;

    must(dlen < sizeof c->doc && nlen < sizeof c->name, "claims not NUL-terminated");
    must(pattern_rule(c->doc, dlen), "a verified token's document breaks the rule");
    must(name_rule(c->name, nlen), "a verified token's user name breaks the rule");
    must(c->role == SRV_ROLE_READ || c->role == SRV_ROLE_WRITE, "a verified token has no role");
    must((r == SRV_TOKEN_EEXPIRED) == (now >= c->expires), "expiry and the result disagree");
    must(mac_is_right(SECRET, token, len), "a token verified without the right MAC");
    n = srv__token_make(key(SECRET), strlen(SECRET), c, again, sizeof again);
    must(n >= 0 && (size_t)n == len && memcmp(again, token, len) == 0,
         "a verified token's claims do not re-encode to the same token");
    must(srv__token_check(key(OTHER), strlen(OTHER), token, len, now, &c2) == SRV_TOKEN_EBADMAC,
         "a verified token is not refused for its MAC under another secret");
    if (c->doc[dlen - 1] == '*') {
        char doc[SRV_MAX_DOCNAME + 1];
        memcpy(doc, c->doc, dlen - 1);
        doc[dlen - 1] = 'x';
        must(srv__token_doc_matches(c->doc, dlen, doc, dlen), "a pattern misses a name under it");
    } else {
        must(srv__token_doc_matches(c->doc, dlen, c->doc, dlen), "a token misses its own document");
    }
}

static int check_result_ok(int r)
{
    return r == 0 || r == SRV_TOKEN_EMALFORMED || r == SRV_TOKEN_EBADMAC || r == SRV_TOKEN_EEXPIRED;
}

/* Mode 0: a token as sent. */
static void raw_token(const uint8_t *p, size_t n)
{
    char *tok = malloc(n ? n : 1);
    srv_token_t c;
    int r;

    must(tok != NULL, "out of memory");
    memcpy(tok, p, n);
    r = srv__token_check(key(SECRET), strlen(SECRET), tok, n, NOW, &c);
    must(check_result_ok(r), "srv__token_check returned an unexpected value");
    must(strlen(srv__token_strerror(r)) > 0, "empty reason");
    if (r == 0 || r == SRV_TOKEN_EEXPIRED)
        check_verified(tok, n, NOW, r, &c);
    must(n <= SRV_MAX_TOKEN || r == SRV_TOKEN_EMALFORMED,
         "a token longer than SRV_MAX_TOKEN is not refused as malformed");
    /* Without a secret nothing verifies. */
    r = srv__token_check(key(SECRET), 0, tok, n, NOW, &c);
    must(r == SRV_TOKEN_EMALFORMED || r == SRV_TOKEN_EBADMAC, "a token verified without secret");
    free(tok);
}

/* Mode 1: a payload, signed here. */
static void signed_payload(const uint8_t *p, size_t n)
{
    char tok[4 * 1024];
    char mac[64];
    srv_token_t c;
    size_t len;
    int r;

    if (n > 2048)
        return;
    memcpy(tok, "v1.", 3);
    len = 3 + b64url(p, n, tok + 3);
    expected_mac(SECRET, tok, len, mac);
    tok[len++] = '.';
    memcpy(tok + len, mac, strlen(mac));
    len += strlen(mac);
    r = srv__token_check(key(SECRET), strlen(SECRET), tok, len, NOW, &c);
    must(check_result_ok(r), "srv__token_check returned an unexpected value");
    must(r != SRV_TOKEN_EBADMAC, "a rightly signed token refused for its MAC");
    must(n > 0 || r == SRV_TOKEN_EMALFORMED, "an empty payload verified");
    if (r == 0 || r == SRV_TOKEN_EEXPIRED) {
        /* The payload spells exactly these claims. */
        char spelled[512];
        int k = snprintf(spelled, sizeof spelled, "%s\n%s\n%s\n%llu", c.doc, c.name,
                         c.role == SRV_ROLE_READ ? "read" : "write", (unsigned long long)c.expires);
        must(k > 0 && (size_t)k == n && memcmp(spelled, p, n) == 0,
             "a verified payload does not spell its claims");
        check_verified(tok, len, NOW, r, &c);
    }
}

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Splits p[0 .. n) at the first '\n': the part before, and *rest after. */
static size_t field(const uint8_t *p, size_t n, const uint8_t **rest, size_t *rest_len)
{
    const uint8_t *nl = memchr(p, '\n', n);
    size_t k = nl != NULL ? (size_t)(nl - p) : n;
    *rest = nl != NULL ? nl + 1 : p + n;
    *rest_len = nl != NULL ? n - k - 1 : 0;
    return k;
}

/* Mode 2: claims, made into a token and checked back. */
static void claims_round_trip(const uint8_t *p, size_t n)
{
    srv_token_t c, back;
    char tok[SRV_MAX_TOKEN + 1];
    const uint8_t *rest, *doc;
    size_t dlen, nlen, doclen, rlen;
    uint64_t now;
    int made, r, valid;

    if (n < 17)
        return;
    memset(&c, 0, sizeof c);
    c.role = p[0] % 4; /* 0 and 3 are no role */
    c.expires = u64_at(p + 1);
    now = u64_at(p + 9);
    p += 17;
    n -= 17;
    dlen = field(p, n, &rest, &rlen);
    nlen = field(rest, rlen, &doc, &doclen);
    if (dlen >= sizeof c.doc || nlen >= sizeof c.name)
        return;
    memcpy(c.doc, p, dlen);
    memcpy(c.name, rest, nlen);
    /* What srv__token_make sees ends at the first NUL. */
    valid = pattern_rule(c.doc, strlen(c.doc)) && name_rule(c.name, strlen(c.name)) &&
            (c.role == SRV_ROLE_READ || c.role == SRV_ROLE_WRITE);
    made = srv__token_make(key(SECRET), strlen(SECRET), &c, tok, sizeof tok);
    must(made == -1 || made > 0, "srv__token_make returned an unexpected value");
    must((made > 0) == valid, "srv__token_make disagrees with the claim rules");
    must(srv__token_make(key(SECRET), 0, &c, tok, sizeof tok) == -1, "a token made without secret");
    if (made < 0)
        return;
    must((size_t)made <= SRV_MAX_TOKEN && strlen(tok) == (size_t)made,
         "a made token is too long or not terminated");
    r = srv__token_check(key(SECRET), strlen(SECRET), tok, (size_t)made, now, &back);
    must(r == (now >= c.expires ? SRV_TOKEN_EEXPIRED : 0), "a made token does not verify");
    must(same_claims(&c, &back), "a made token verifies to other claims");
    check_verified(tok, (size_t)made, now, r, &back);
    {
        /* the document named after the claims */
        char *d = malloc(doclen ? doclen : 1);
        must(d != NULL, "out of memory");
        memcpy(d, doc, doclen);
        must(srv__token_doc_matches(back.doc, strlen(back.doc), d, doclen) ==
                 matches_rule(back.doc, strlen(back.doc), d, doclen),
             "srv__token_doc_matches disagrees with the rule");
        free(d);
    }
    /* One changed byte, chosen by the input, makes it refused. */
    if (doclen > 0) {
        size_t at = doc[0] % (size_t)made;
        char was = tok[at];
        tok[at] = (char)(was ^ (doclen > 1 && doc[1] != 0 ? doc[1] : 1));
        r = srv__token_check(key(SECRET), strlen(SECRET), tok, (size_t)made, now, &back);
        must(r == SRV_TOKEN_EMALFORMED || r == SRV_TOKEN_EBADMAC,
             "a token with one changed byte still verifies");
        tok[at] = was;
    }
}

/* Mode 3: pattern '\n' document. */
static void doc_matches(const uint8_t *p, size_t n)
{
    const uint8_t *rest;
    size_t rlen, plen = field(p, n, &rest, &rlen);
    char *pat = malloc(plen ? plen : 1), *doc = malloc(rlen ? rlen : 1);
    must(pat != NULL && doc != NULL, "out of memory");
    memcpy(pat, p, plen);
    memcpy(doc, rest, rlen);
    must(srv__token_doc_matches(pat, plen, doc, rlen) == matches_rule(pat, plen, doc, rlen),
         "srv__token_doc_matches disagrees with the rule");
    free(pat);
    free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        raw_token(data + 1, size - 1);
        break;
    case 1:
        signed_payload(data + 1, size - 1);
        break;
    case 2:
        claims_round_trip(data + 1, size - 1);
        break;
    default:
        doc_matches(data + 1, size - 1);
        break;
    }
    return 0;
}
