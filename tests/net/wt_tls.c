/* SPDX-License-Identifier: MIT */
/*
 * wt_tls.c: the client TLS layer of tests/net and its certificate maker (see
 * wt_tls.h). Each connect makes its own SSL_CTX (the SSL keeps a reference),
 * so configurations never leak between connections. OpenSSL writes with
 * write(), which raises SIGPIPE on a closed peer: SIGPIPE is blocked around
 * every call that may write and a pending one is discarded, as MSG_NOSIGNAL
 * does for the plain helpers.
 */
#define _GNU_SOURCE
#include "wt_tls.h"
#include "wt_net.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct wt_tls {
    SSL *ssl;
    int fd;
};

void wt_tls_config_init(wt_tls_config_t *cfg, const char *ca_file)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ca_file = ca_file;
    cfg->server_name = "localhost";
}

/* Waits for `events` on fd; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        return n > 0;
    }
}

/* Blocks SIGPIPE in this thread, keeping the previous mask in *old. */
static void sigpipe_block(sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

/* Discards a SIGPIPE raised while blocked (unless it was blocked before), then
 * restores the mask. */
static void sigpipe_restore(const sigset_t *old)
{
    if (!sigismember(old, SIGPIPE)) {
        sigset_t s;
        struct timespec zero = {0, 0};
        sigemptyset(&s);
        sigaddset(&s, SIGPIPE);
        while (sigtimedwait(&s, NULL, &zero) > 0) {
        }
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Describes why the handshake of `ssl` failed with SSL_get_error() `e`. */
static void describe(SSL *ssl, int e, char *why, size_t whylen)
{
    unsigned long code = ERR_peek_error();
    long verify = SSL_get_verify_result(ssl);
    if (why == NULL || whylen == 0)
        return;
    if (verify != X509_V_OK)
        snprintf(why, whylen, "certificate: %s", X509_verify_cert_error_string(verify));
    else if (code != 0)
        ERR_error_string_n(code, why, whylen);
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(why, whylen, "the server closed the connection during the handshake");
    else if (e == SSL_ERROR_SYSCALL)
        snprintf(why, whylen, "connection ended during the handshake%s%s", errno ? ": " : "",
                 errno ? strerror(errno) : "");
    else
        snprintf(why, whylen, "SSL error %d", e);
}

/* Turns "a,bc" into ALPN's wire format ("\1a\2bc"). Returns its length or 0. */
static size_t alpn_wire(const char *list, unsigned char *out, size_t cap)
{
    size_t n = 0;
    while (*list) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        if (len == 0 || len > 255 || n + 1 + len > cap)
            return 0;
        out[n++] = (unsigned char)len;
        memcpy(out + n, list, len);
        n += len;
        list += len + (comma ? 1 : 0);
    }
    return n;
}

int wt_tls_connect(int fd, const wt_tls_config_t *cfg, int timeout_ms, wt_tls_t **out, char *why,
                   size_t whylen)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    wt_tls_t *t = NULL;
    unsigned char alpn[256];
    size_t alpn_len;
    sigset_t old;
    int rc = WT_EINVAL;

    if (why != NULL && whylen > 0)
        why[0] = 0;
    ERR_clear_error();
    if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
        goto Exit;
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (cfg->legacy) {
        SSL_CTX_set_security_level(ctx, 0);
        if (SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0") != 1)
            goto Exit;
    }
    if ((cfg->min_version != 0 && SSL_CTX_set_min_proto_version(ctx, cfg->min_version) != 1) ||
        (cfg->max_version != 0 && SSL_CTX_set_max_proto_version(ctx, cfg->max_version) != 1))
        goto Exit;
    if (cfg->ca_file != NULL) {
        if (SSL_CTX_load_verify_file(ctx, cfg->ca_file) != 1)
            goto Exit;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cfg->alpn != NULL) {
        if ((alpn_len = alpn_wire(cfg->alpn, alpn, sizeof alpn)) == 0 ||
            SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpn_len) != 0)
            goto Exit;
    }
    if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
        goto Exit;
    if (cfg->server_name != NULL) {
        if (SSL_set_tlsext_host_name(ssl, cfg->server_name) != 1)
            goto Exit;
        if (cfg->ca_file != NULL && SSL_set1_host(ssl, cfg->server_name) != 1)
            goto Exit;
    }
    for (;;) {
        int r, e, w;
        ERR_clear_error();
        errno = 0;
        sigpipe_block(&old);
        r = SSL_connect(ssl);
        e = SSL_get_error(ssl, r);
        sigpipe_restore(&old);
        if (r == 1)
            break;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            describe(ssl, e, why, whylen);
            rc = WT_ETLS;
            goto Exit;
        }
        w = wait_fd(fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, wt_ms_left(deadline));
        if (w == 0) {
            rc = WT_ETIMEOUT;
            goto Exit;
        }
        if (w < 0) {
            rc = WT_EIO;
            goto Exit;
        }
    }
    if ((t = calloc(1, sizeof *t)) == NULL)
        abort();
    t->ssl = ssl;
    t->fd = fd;
    ssl = NULL;
    *out = t;
    rc = 0;
Exit:
    if (rc == WT_EINVAL && why != NULL && whylen > 0 && ERR_peek_error() != 0)
        ERR_error_string_n(ERR_peek_error(), why, whylen);
    SSL_free(ssl);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    return rc;
}

ssize_t wt_tls_read_some(wt_tls_t *t, void *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        size_t n = 0;
        int r, e, w;
        sigset_t old;
        ERR_clear_error();
        sigpipe_block(&old);
        r = SSL_read_ex(t->ssl, buf, cap, &n);
        e = SSL_get_error(t->ssl, r);
        sigpipe_restore(&old);
        if (r == 1)
            return (ssize_t)n;
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0; /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return WT_EIO;
        if (wt_ms_left(deadline) == 0)
            return WT_ETIMEOUT;
        w = wait_fd(t->fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, wt_ms_left(deadline));
        if (w < 0)
            return WT_EIO;
        if (w == 0)
            return WT_ETIMEOUT;
    }
}

int wt_tls_write_all(wt_tls_t *t, const void *data, size_t len, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : wt_now_ms() + timeout_ms;
    const uint8_t *p = data;
    while (len > 0) {
        size_t n = 0;
        int r, e, w;
        sigset_t old;
        ERR_clear_error();
        sigpipe_block(&old);
        /* After WANT_*, OpenSSL wants the same buffer again: it is. */
        r = SSL_write_ex(t->ssl, p, len, &n);
        e = SSL_get_error(t->ssl, r);
        sigpipe_restore(&old);
        if (r == 1) {
            p += n;
            len -= n;
            continue;
        }
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return WT_EIO;
        w = wait_fd(t->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                    timeout_ms < 0 ? -1 : wt_ms_left(deadline));
        if (w < 0)
            return WT_EIO;
        if (w == 0)
            return WT_ETIMEOUT;
    }
    return 0;
}

size_t wt_tls_pending(const wt_tls_t *t)
{
    int n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
}

int wt_tls_version(const wt_tls_t *t)
{
    return SSL_version(t->ssl);
}

const char *wt_tls_alpn(const wt_tls_t *t, char *out, size_t cap)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (cap > 0) {
        size_t n = len < cap - 1 ? len : cap - 1;
        if (n > 0)
            memcpy(out, p, n);
        out[n] = 0;
    }
    return out;
}

void wt_tls_shutdown(wt_tls_t *t)
{
    sigset_t old;
    if (t == NULL)
        return;
    sigpipe_block(&old);
    SSL_shutdown(t->ssl);
    sigpipe_restore(&old);
    ERR_clear_error();
}

void wt_tls_free(wt_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

ssize_t wt_io_read_some(int fd, wt_tls_t *tls, void *buf, size_t cap, int timeout_ms)
{
    return tls != NULL ? wt_tls_read_some(tls, buf, cap, timeout_ms)
                       : wt_read_some(fd, buf, cap, timeout_ms);
}

int wt_io_write_all(int fd, wt_tls_t *tls, const void *data, size_t len, int timeout_ms)
{
    return tls != NULL ? wt_tls_write_all(tls, data, len, timeout_ms)
                       : wt_write_all(fd, data, len, timeout_ms);
}

/* Adds the X.509v3 extension `nid` written as in openssl.cnf. Returns 1 or 0. */
static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* Writes `x` (or, when NULL, `pkey`) as PEM to `path`, mode 0600. Returns 1 or 0. */
static int write_file(const char *path, X509 *x, EVP_PKEY *pkey)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    ok = x != NULL ? PEM_write_X509(f, x) == 1
                   : PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;
    if (fclose(f) != 0)
        ok = 0;
    return ok;
}

int wt_tls_make_cert(const char *cert_path, const char *key_path, const char *name)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *subject;
    X509V3_CTX v3;
    char san[300];
    int rc = WT_EIO;

    if (pkey == NULL || x == NULL || strlen(name) > 200)
        goto Exit;
    snprintf(san, sizeof san, "DNS:%s,IP:127.0.0.1", name);
    subject = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), (uint64_t)wt_now_us()) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL ||
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, subject) != 1 || X509_set_pubkey(x, pkey) != 1)
        goto Exit;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    if (!add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_ext(x, &v3, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
        !add_ext(x, &v3, NID_subject_key_identifier, "hash") ||
        !add_ext(x, &v3, NID_subject_alt_name, san))
        goto Exit;
    if (X509_sign(x, pkey, EVP_sha256()) == 0)
        goto Exit;
    if (!write_file(key_path, NULL, pkey) || !write_file(cert_path, x, NULL))
        goto Exit;
    rc = 0;
Exit:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}
