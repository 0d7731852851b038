/* SPDX-License-Identifier: MIT */
/*
 * auth.c: access control for weftd (docs/security.md). Signed access tokens
 * (HMAC-SHA256 with the server's secret over a document or document prefix, a
 * user name, a role and an expiry), checked at HELLO (session.c) and on the
 * REST routes (http.c); read-only connections; the expiry timer that ends a
 * session with close code 4001; the Origin allow-list of WebSocket upgrades;
 * the --token-secret, --token-secret-file and --allow-origin flags; and the
 * `weftd token` command that issues tokens.
 *
 * Without a secret (srv_config_t.token_secret_len == 0) every check here lets
 * everything through: every connection may write, as before access control.
 *
 * The token code (srv__token_make, srv__token_check) is pure: no clock, no
 * server; the rest runs on the event-loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "srv_internal.h"

#define MAC_LEN 32
#define MAC_B64_LEN 43 /* unpadded base64url of 32 bytes */
/* Largest payload: document (or prefix and '*') 129, name 64, role 5, expiry
 * 20, three separators. */
#define PAYLOAD_MAX (SRV_MAX_DOCNAME + 1 + PROTO_MAX_NAME + 5 + 20 + 3)
/* Longest role or expiry a session can have: ten years (also `weftd token`'s
 * largest --ttl). */
#define MAX_TTL 315360000ull
/* Expiry timer: sessions whose token expires later than this are checked
 * every LONG_CHECK_MS, the others every SHORT_CHECK_MS. */
#define SHORT_CHECK_MS 250
#define LONG_CHECK_MS 60000

/* ---- base64url (RFC 4648 section 5, no padding) ----------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes canonical unpadded base64url: only the alphabet, a length that is
 * not 1 mod 4, and zero bits after the last byte (so each byte string has
 * exactly one encoding). Returns the byte count, or -1. `out` holds at least
 * len * 3 / 4 bytes. */
static long b64_decode(const char *in, size_t len, uint8_t *out)
{
    size_t o = 0, i = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (len % 4 == 1)
        return -1;
    for (; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* leftover bits must be zero */
        return -1;
    return (long)o;
}

/* ---- claims ------------------------------------------------------------------ */

/* Valid UTF-8 (shortest forms, no surrogates) without control characters
 * (U+0000..U+001F, U+007F): what a user name may hold. */
static int name_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || n > PROTO_MAX_NAME)
        return 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            unsigned char d = (unsigned char)s[i + j];
            if ((d & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* A document name, or a prefix of one (possibly empty) followed by '*'. */
static int doc_pattern_ok(const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '*')
        return n == 1 || srv_docname_valid(s, n - 1);
    return srv_docname_valid(s, n);
}

int srv__token_doc_matches(const char *pattern, size_t plen, const char *doc, size_t dlen)
{
    if (plen > 0 && pattern[plen - 1] == '*')
        return dlen >= plen - 1 && memcmp(pattern, doc, plen - 1) == 0;
    return plen == dlen && memcmp(pattern, doc, dlen) == 0;
}

static int mac(const uint8_t *secret, size_t secret_len, const char *data, size_t len,
               uint8_t out[MAC_LEN])
{
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, len, out, &n) ==
            NULL ||
        n != MAC_LEN)
        return -1;
    return 0;
}

int srv__token_make(const uint8_t *secret, size_t secret_len, const srv_token_t *claims, char *out,
                    size_t cap)
{
    char payload[PAYLOAD_MAX + 1];
    uint8_t m[MAC_LEN];
    size_t dlen = strlen(claims->doc), nlen = strlen(claims->name), o;
    int plen;

    if (secret_len == 0 || !doc_pattern_ok(claims->doc, dlen) || !name_ok(claims->name, nlen) ||
        (claims->role != SRV_ROLE_READ && claims->role != SRV_ROLE_WRITE))
        return -1;
    plen = snprintf(payload, sizeof(payload), "%s\n%s\n%s\n%llu", claims->doc, claims->name,
                    claims->role == SRV_ROLE_READ ? "read" : "write",
                    (unsigned long long)claims->expires);
    if (plen < 0 || (size_t)plen >= sizeof(payload))
        return -1;
    if (cap < SRV_MAX_TOKEN + 1)
        return -1;
    memcpy(out, "v1.", 3);
    o = 3 + b64_encode((const uint8_t *)payload, (size_t)plen, out + 3);
    if (mac(secret, secret_len, out, o, m) != 0)
        return -1;
    out[o++] = '.';
    o += b64_encode(m, MAC_LEN, out + o);
    return (int)o;
}

/* Splits the payload at '\n' into exactly four fields. */
static int split4(const char *p, size_t n, const char *f[4], size_t flen[4])
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\n') {
            if (k == 4)
                return -1;
            f[k] = p + start;
            flen[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k == 4 ? 0 : -1;
}

int srv__token_check(const uint8_t *secret, size_t secret_len, const char *token, size_t len,
                     uint64_t now, srv_token_t *out)
{
    const char *dot;
    size_t body_len, mac_len;
    uint8_t want[MAC_LEN], got[MAC_LEN + 3];
    char payload[PAYLOAD_MAX + 3];
    const char *f[4];
    size_t flen[4];
    long plen;
    uint64_t exp = 0;

    if (token == NULL || len < 3 + 1 + 1 + MAC_B64_LEN || len > SRV_MAX_TOKEN ||
        memcmp(token, "v1.", 3) != 0)
        return SRV_TOKEN_EMALFORMED;
    dot = memchr(token + 3, '.', len - 3);
    if (dot == NULL)
        return SRV_TOKEN_EMALFORMED;
    body_len = (size_t)(dot - token); /* "v1." and the payload: what the MAC covers */
    mac_len = len - body_len - 1;
    if (mac_len != MAC_B64_LEN || body_len == 3 || body_len - 3 > (PAYLOAD_MAX + 2) / 3 * 4)
        return SRV_TOKEN_EMALFORMED;
    if (b64_decode(dot + 1, mac_len, got) != MAC_LEN)
        return SRV_TOKEN_EMALFORMED;
    plen = b64_decode(token + 3, body_len - 3, (uint8_t *)payload);
    if (plen < 0 || plen > PAYLOAD_MAX)
        return SRV_TOKEN_EMALFORMED;
    /* The signature before anything in the payload is believed. */
    if (secret_len == 0 || mac(secret, secret_len, token, body_len, want) != 0 ||
        CRYPTO_memcmp(want, got, MAC_LEN) != 0)
        return SRV_TOKEN_EBADMAC;
    /* Signed by us, but parsed as strictly as anything else. */
    if (split4(payload, (size_t)plen, f, flen) != 0 || !doc_pattern_ok(f[0], flen[0]) ||
        !name_ok(f[1], flen[1]) || flen[3] == 0 || flen[3] > 20 || (flen[3] > 1 && f[3][0] == '0'))
        return SRV_TOKEN_EMALFORMED;
    for (size_t i = 0; i < flen[3]; i++) {
        unsigned d = (unsigned char)f[3][i] - '0';
        if (d > 9 || exp > (UINT64_MAX - d) / 10)
            return SRV_TOKEN_EMALFORMED;
        exp = exp * 10 + d;
    }
    memset(out, 0, sizeof(*out));
    if (flen[2] == 4 && memcmp(f[2], "read", 4) == 0)
        out->role = SRV_ROLE_READ;
    else if (flen[2] == 5 && memcmp(f[2], "write", 5) == 0)
        out->role = SRV_ROLE_WRITE;
    else
        return SRV_TOKEN_EMALFORMED;
    memcpy(out->doc, f[0], flen[0]);
    memcpy(out->name, f[1], flen[1]);
    out->expires = exp;
    if (now >= exp)
        return SRV_TOKEN_EEXPIRED;
    return 0;
}

const char *srv__token_strerror(int err)
{
    switch (err) {
    case 0:
        return "valid";
    case SRV_TOKEN_EMALFORMED:
        return "malformed token";
    case SRV_TOKEN_EBADMAC:
        return "bad token signature";
    case SRV_TOKEN_EEXPIRED:
        return "token expired";
    case SRV_TOKEN_EDOC:
        return "token not valid for this document";
    case SRV_TOKEN_EMISSING:
        return "a token is required";
    default:
        return "invalid token";
    }
}

static uint64_t wall_s(void)
{
    return (uint64_t)time(NULL);
}

/* Checks `token` for document `doc`: signature, expiry and document. */
static int check_for_doc(const srv_config_t *cfg, const char *token, size_t len, const char *doc,
                         size_t dlen, srv_token_t *claims)
{
    int err;
    if (token == NULL || len == 0)
        return SRV_TOKEN_EMISSING;
    err = srv__token_check((const uint8_t *)cfg->token_secret, cfg->token_secret_len, token, len,
                           wall_s(), claims);
    if (err != 0)
        return err;
    if (!srv__token_doc_matches(claims->doc, strlen(claims->doc), doc, dlen))
        return SRV_TOKEN_EDOC;
    return 0;
}

/* ---- the secret and the flags -------------------------------------------------- */

/* Reads the secret from `path` into cfg: at most SRV_MAX_TOKEN_SECRET bytes,
 * one trailing newline (LF or CRLF) removed. Warns on stderr when others than
 * the owner and group may read the file. */
static int read_secret_file(srv_config_t *cfg, const char *path, char *err, size_t errlen)
{
    char buf[SRV_MAX_TOKEN_SECRET + 2];
    struct stat st;
    ssize_t n;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        snprintf(err, errlen, "--token-secret-file %s: %s", path, strerror(errno));
        return SRV_EUSAGE;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "--token-secret-file %s: not a regular file", path);
        close(fd);
        return SRV_EUSAGE;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH))
        fprintf(stderr, "weftd: warning: token secret file %s is world-%s (chmod 600 or 640 it)\n",
                path, st.st_mode & S_IWOTH ? "writable" : "readable");
    while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "--token-secret-file %s: %s", path, strerror(errno));
            close(fd);
            return SRV_EUSAGE;
        }
        len += (size_t)n;
    }
    close(fd);
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len < SRV_MIN_TOKEN_SECRET || len > SRV_MAX_TOKEN_SECRET) {
        snprintf(err, errlen, "--token-secret-file %s: the secret must be %d to %d bytes", path,
                 SRV_MIN_TOKEN_SECRET, SRV_MAX_TOKEN_SECRET);
        return SRV_EUSAGE;
    }
    memcpy(cfg->token_secret, buf, len);
    cfg->token_secret_len = len;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}

static int set_secret(srv_config_t *cfg, const char *val, char *err, size_t errlen)
{
    size_t len = strlen(val);
    if (len < SRV_MIN_TOKEN_SECRET || len > SRV_MAX_TOKEN_SECRET) {
        snprintf(err, errlen, "--token-secret: the secret must be %d to %d bytes",
                 SRV_MIN_TOKEN_SECRET, SRV_MAX_TOKEN_SECRET);
        return SRV_EUSAGE;
    }
    memcpy(cfg->token_secret, val, len);
    cfg->token_secret_len = len;
    return 0;
}

/* An origin as browsers send it: scheme "://" host [":" port], nothing else. */
static int origin_ok(const char *s)
{
    const char *p = strstr(s, "://");
    if (p == NULL || p == s || p[3] == '\0' || strlen(s) > 256)
        return 0;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || (*q == '/' && q < p))
            return 0;
    return strchr(p + 3, '/') == NULL;
}

int srv__auth_config_flag(srv_config_t *cfg, const char *name, const char *val, char *err,
                          size_t errlen)
{
    if (strcmp(name, "--token-secret") == 0) {
        if (cfg->token_secret_len != 0) {
            snprintf(err, errlen, "give one token secret (--token-secret or --token-secret-file)");
            return SRV_EUSAGE;
        }
        return set_secret(cfg, val, err, errlen);
    }
    if (strcmp(name, "--token-secret-file") == 0) {
        if (cfg->token_secret_len != 0) {
            snprintf(err, errlen, "give one token secret (--token-secret or --token-secret-file)");
            return SRV_EUSAGE;
        }
        return read_secret_file(cfg, val, err, errlen);
    }
    if (strcmp(name, "--allow-origin") == 0) {
        if (!origin_ok(val)) {
            snprintf(err, errlen,
                     "--allow-origin: '%.100s' is not an origin like "
                     "https://docs.example.com",
                     val);
            return SRV_EUSAGE;
        }
        if (cfg->n_allow_origin == SRV_MAX_ORIGINS) {
            snprintf(err, errlen, "--allow-origin: at most %d origins", SRV_MAX_ORIGINS);
            return SRV_EUSAGE;
        }
        cfg->allow_origin[cfg->n_allow_origin++] = val;
        return 0;
    }
    return 1;
}

/* ---- WebSocket sessions --------------------------------------------------------- */

static void on_expiry_timer(h2o_timeout_entry_t *entry);

/* Links the session's expiry check into the short or the long list. */
static void arm_expiry(srv_session_t *s)
{
    srv_t *srv = s->srv;
    uint64_t now_ms = srv__wall_ms(), exp_ms = s->token_expires * 1000;
    if (srv->auth_timer_users == 0) {
        h2o_timeout_init(srv->loop, &srv->auth_short_timeout, SHORT_CHECK_MS);
        h2o_timeout_init(srv->loop, &srv->auth_long_timeout, LONG_CHECK_MS);
    }
    if (!s->auth_timer_used) {
        s->auth_timer_used = 1;
        srv->auth_timer_users++;
    }
    s->auth_timer.cb = on_expiry_timer;
    if (exp_ms > now_ms + LONG_CHECK_MS + SHORT_CHECK_MS)
        h2o_timeout_link(srv->loop, &srv->auth_long_timeout, &s->auth_timer);
    else
        h2o_timeout_link(srv->loop, &srv->auth_short_timeout, &s->auth_timer);
}

static void on_expiry_timer(h2o_timeout_entry_t *entry)
{
    srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, auth_timer, entry);
    if (s->closing || s->dropping)
        return;
    if (srv__wall_ms() < s->token_expires * 1000) {
        arm_expiry(s);
        return;
    }
    srv__session_error(s, PROTO_ERR_UNAUTHORIZED, "token expired: reconnect with a new token", 0);
    srv__session_close(s, SRV_CLOSE_TOKEN_EXPIRED, "token expired");
}

void srv__auth_session_dispose(srv_session_t *s)
{
    srv_t *srv = s->srv;
    if (!s->auth_timer_used)
        return;
    if (h2o_timeout_is_linked(&s->auth_timer))
        h2o_timeout_unlink(&s->auth_timer);
    s->auth_timer_used = 0;
    if (--srv->auth_timer_users == 0) {
        /* Nothing is linked any more: unregister the lists from the loop, so
         * srv_free finds it as the server left it. */
        h2o_timeout_dispose(srv->loop, &srv->auth_short_timeout);
        h2o_timeout_dispose(srv->loop, &srv->auth_long_timeout);
    }
}

int srv__auth_hello(srv_session_t *s, const proto_msg_t *m)
{
    const srv_config_t *cfg = &s->srv->cfg;
    srv_token_t claims;
    char text[128];
    int err;

    if (cfg->token_secret_len == 0) {
        s->role = SRV_ROLE_WRITE;
        return 0;
    }
    err = check_for_doc(cfg, (const char *)m->u.hello.token.base, m->u.hello.token.len, s->docname,
                        s->docname_len, &claims);
    if (err != 0) {
        snprintf(text, sizeof(text), "unauthorized: %s", srv__token_strerror(err));
        srv__session_error(s, PROTO_ERR_UNAUTHORIZED, text, 0);
        srv__session_close(s, 1008, "unauthorized");
        return -1;
    }
    s->role = claims.role;
    s->token_expires = claims.expires;
    memcpy(s->token_name, claims.name, sizeof(s->token_name));
    arm_expiry(s);
    return 0;
}

void srv__auth_hello_name(srv_session_t *s)
{
    if (s->srv->cfg.token_secret_len != 0)
        memcpy(s->name, s->token_name, sizeof(s->name));
}

int srv__auth_may_write(srv_session_t *s, uint64_t seq)
{
    if (s->role != SRV_ROLE_READ)
        return 1;
    srv__session_error(s, PROTO_ERR_READ_ONLY, "read-only access: changes are refused", seq);
    return 0;
}

int srv__auth_may_history(srv_session_t *s, const proto_msg_t *m)
{
    /* Every GET route only reads; POST routes (restore, naming) write. */
    if (m->u.history.method.len == 3 && memcmp(m->u.history.method.base, "GET", 3) == 0)
        return 1;
    return srv__auth_may_write(s, 0);
}

/* ---- HTTP ------------------------------------------------------------------------ */

static void send_json(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    static const char type[] = "application/json";
    char body[200];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type,
                   sizeof(type) - 1);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"weft\""));
    h2o_send_inline(req, body, (size_t)n);
}

int srv__auth_ws_origin(srv_t *srv, h2o_req_t *req)
{
    const srv_config_t *cfg = &srv->cfg;
    ssize_t i;
    if (cfg->n_allow_origin == 0)
        return 0;
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (i < 0)
        return 0; /* not a browser: browsers always send Origin on an upgrade */
    for (size_t k = 0; k < cfg->n_allow_origin; k++)
        if (h2o_memis(req->headers.entries[i].value.base, req->headers.entries[i].value.len,
                      cfg->allow_origin[k], strlen(cfg->allow_origin[k])))
            return 0;
    srv->metrics.ws_rejected++;
    send_json(req, 403, "Forbidden", "this origin may not open WebSocket connections");
    return -1;
}

int srv__token_from_request(const char *authz, size_t authz_len, const char *path, size_t len,
                            size_t query_at, h2o_iovec_t *tok)
{
    if (authz != NULL) {
        if (authz_len > 7 && h2o_lcstris(authz, 7, H2O_STRLIT("bearer "))) {
            *tok = h2o_iovec_init(authz + 7, authz_len - 7);
            while (tok->len > 0 && tok->base[0] == ' ') {
                tok->base++;
                tok->len--;
            }
            while (tok->len > 0 && tok->base[tok->len - 1] == ' ')
                tok->len--;
            return 0;
        }
        return -1;
    }
    if (query_at < len) {
        const char *p = path + query_at + 1, *end = path + len;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *stop = amp != NULL ? amp : end;
            if (stop - p >= 6 && memcmp(p, "token=", 6) == 0) {
                *tok = h2o_iovec_init(p + 6, (size_t)(stop - p - 6));
                return 0;
            }
            p = stop + 1;
        }
    }
    return -1;
}

/* The token of a REST request (srv__token_from_request). */
static int request_token(h2o_req_t *req, h2o_iovec_t *tok)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        return srv__token_from_request(v.base != NULL ? v.base : "", v.len, req->path.base,
                                       req->path.len, req->query_at, tok);
    }
    return srv__token_from_request(NULL, 0, req->path.base, req->path.len, req->query_at, tok);
}

int srv__auth_http(srv_t *srv, h2o_req_t *req, const char *doc, size_t doc_len, int write)
{
    const srv_config_t *cfg = &srv->cfg;
    h2o_iovec_t tok = {NULL, 0};
    srv_token_t claims;
    char text[128];
    int err;

    if (cfg->token_secret_len == 0)
        return 0;
    if (request_token(req, &tok) != 0)
        tok = h2o_iovec_init(NULL, 0);
    err = check_for_doc(cfg, tok.base, tok.len, doc, doc_len, &claims);
    if (err != 0) {
        snprintf(text, sizeof(text), "unauthorized: %s", srv__token_strerror(err));
        send_json(req, 401, "Unauthorized", text);
        return -1;
    }
    if (write && claims.role != SRV_ROLE_WRITE) {
        send_json(req, 403, "Forbidden", "read-only token: changes are refused");
        return -1;
    }
    return 0;
}

/* ---- weftd token ----------------------------------------------------------------- */

static void token_usage(FILE *out)
{
    fputs("usage: weftd token (--secret-file FILE | --secret SECRET) --doc DOC --name USER\n"
          "                   --role read|write --ttl SECONDS\n"
          "\n"
          "Prints an access token for weftd started with the same secret\n"
          "(--token-secret-file FILE or --token-secret SECRET), then exits.\n"
          "\n"
          "  --secret-file FILE  the secret: the file's bytes, one trailing newline removed\n"
          "  --secret SECRET     the secret itself (visible to other users in ps: prefer a file)\n"
          "  --doc DOC           a document name, or a prefix ending in '*' (\"team-*\"; \"*\" is\n"
          "                      every document)\n"
          "  --name USER         the user name other editors see (1 to 64 bytes of UTF-8)\n"
          "  --role ROLE         read (sees edits and cursors) or write (may also edit,\n"
          "                      restore and name versions)\n"
          "  --ttl SECONDS       validity from now, 0 to 315360000 (0: already expired)\n"
          "  -h, --help          this text\n",
          out);
}

int srv_token_main(int argc, char **argv, FILE *out, FILE *errout)
{
    srv_config_t cfg;
    srv_token_t claims;
    const char *doc = NULL, *name = NULL, *role = NULL, *ttl = NULL;
    char err[256] = "", token[SRV_MAX_TOKEN + 1];
    unsigned long long ttl_v = 0;
    int r = 2;

    memset(&cfg, 0, sizeof(cfg));
    memset(&claims, 0, sizeof(claims));
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0) {
            token_usage(out);
            r = 0;
            goto done;
        }
        if (val == NULL) {
            snprintf(err, sizeof(err), "%s needs a value (try weftd token --help)", flag);
            goto fail;
        }
        i++;
        if (strcmp(flag, "--secret") == 0 || strcmp(flag, "--secret-file") == 0) {
            const char *as = flag[8] == '\0' ? "--token-secret" : "--token-secret-file";
            if (srv__auth_config_flag(&cfg, as, val, err, sizeof(err)) != 0)
                goto fail;
        } else if (strcmp(flag, "--doc") == 0) {
            doc = val;
        } else if (strcmp(flag, "--name") == 0) {
            name = val;
        } else if (strcmp(flag, "--role") == 0) {
            role = val;
        } else if (strcmp(flag, "--ttl") == 0) {
            ttl = val;
        } else {
            snprintf(err, sizeof(err), "unknown option '%.64s' (try weftd token --help)", flag);
            goto fail;
        }
    }
    if (cfg.token_secret_len == 0 || doc == NULL || name == NULL || role == NULL || ttl == NULL) {
        snprintf(err, sizeof(err),
                 "--secret or --secret-file, --doc, --name, --role and --ttl "
                 "are required (try weftd token --help)");
        goto fail;
    }
    if (!doc_pattern_ok(doc, strlen(doc))) {
        snprintf(err, sizeof(err),
                 "--doc: a document name (1 to 128 characters of A-Z a-z 0-9 . "
                 "_ ~ -) or a prefix of one ending in '*'");
        goto fail;
    }
    if (!name_ok(name, strlen(name))) {
        snprintf(err, sizeof(err), "--name: 1 to 64 bytes of UTF-8 without control characters");
        goto fail;
    }
    if (strcmp(role, "read") == 0) {
        claims.role = SRV_ROLE_READ;
    } else if (strcmp(role, "write") == 0) {
        claims.role = SRV_ROLE_WRITE;
    } else {
        snprintf(err, sizeof(err), "--role: read or write");
        goto fail;
    }
    {
        char *end;
        errno = 0;
        ttl_v = *ttl >= '0' && *ttl <= '9' ? strtoull(ttl, &end, 10) : MAX_TTL + 1;
        if (errno != 0 || ttl_v > MAX_TTL || *end != '\0') {
            snprintf(err, sizeof(err), "--ttl: seconds, 0 to %llu", MAX_TTL);
            goto fail;
        }
    }
    snprintf(claims.doc, sizeof(claims.doc), "%s", doc);
    snprintf(claims.name, sizeof(claims.name), "%s", name);
    claims.expires = wall_s() + ttl_v;
    if (srv__token_make((const uint8_t *)cfg.token_secret, cfg.token_secret_len, &claims, token,
                        sizeof(token)) < 0) {
        snprintf(err, sizeof(err), "cannot make the token");
        goto fail;
    }
    fprintf(out, "%s\n", token);
    r = fflush(out) == 0 ? 0 : 1;
    goto done;
fail:
    fprintf(errout, "weftd token: %s\n", err);
    r = 2;
done:
    OPENSSL_cleanse(&cfg, sizeof(cfg));
    return r;
}
