/* SPDX-License-Identifier: MIT */
/*
 * wt_tls.h: the optional TLS layer of weft's network test helpers (tests/net),
 * over OpenSSL 3. A wt_tls_t is one client TLS session on a non-blocking socket
 * made by wt_tcp_connect(); reads and writes wait with poll() so every call
 * honours its timeout, as the plain ones of wt_net.h do. wt_io_read_some() and
 * wt_io_write_all() take an optional session, so the HTTP and WebSocket
 * clients run over either. Also makes self-signed certificates at test time.
 * No global state (OpenSSL initialises itself); one thread per session.
 */
#ifndef WEFT_WT_TLS_H
#define WEFT_WT_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How a client connects. Strings are borrowed for the duration of each connect. */
typedef struct {
    const char *ca_file;     /* PEM certificate(s) to trust; NULL: the server is not verified */
    const char *server_name; /* SNI, and the DNS name the certificate must hold; NULL: neither */
    int min_version;         /* TLS1_2_VERSION and the like (openssl/ssl.h); 0: OpenSSL's */
    int max_version;         /* 0: OpenSSL's */
    int legacy;              /* 1: security level 0, so TLS 1.0/1.1 can be offered (tests of
                                refusals only) */
    const char *alpn;        /* protocols offered, comma-separated ("h2,http/1.1"); NULL: no ALPN */
} wt_tls_config_t;

/* Zeroes *cfg, then trusts `ca_file` and expects the name "localhost" (SNI included). */
void wt_tls_config_init(wt_tls_config_t *cfg, const char *ca_file);

typedef struct wt_tls wt_tls_t;

/*
 * Runs a client handshake on `fd` (connected, non-blocking) within `timeout_ms`.
 * Returns 0 and sets *out (free with wt_tls_free; the fd stays the caller's),
 * WT_ETLS when the handshake failed (OpenSSL's reason is copied into why[whylen]
 * when `why` is not NULL), WT_ETIMEOUT, or WT_EINVAL (a bad config).
 */
int wt_tls_connect(int fd, const wt_tls_config_t *cfg, int timeout_ms, wt_tls_t **out, char *why,
                   size_t whylen);

/* As wt_read_some() (wt_net.h), over the session: bytes (> 0), 0 at the end of
 * the stream (close_notify or EOF), WT_ETIMEOUT or WT_EIO. */
ssize_t wt_tls_read_some(wt_tls_t *t, void *buf, size_t cap, int timeout_ms);

/* As wt_write_all(), over the session: 0, WT_ETIMEOUT or WT_EIO. */
int wt_tls_write_all(wt_tls_t *t, const void *data, size_t len, int timeout_ms);

/* Decrypted bytes already buffered in the session (poll() on the fd would not show them). */
size_t wt_tls_pending(const wt_tls_t *t);

/* The protocol version agreed (TLS1_3_VERSION and the like). */
int wt_tls_version(const wt_tls_t *t);

/* Copies the ALPN protocol the server selected into out[cap] (NUL-terminated; ""
 * when none was). Returns `out`. */
const char *wt_tls_alpn(const wt_tls_t *t, char *out, size_t cap);

/* Sends close_notify without waiting for the answer (best effort). */
void wt_tls_shutdown(wt_tls_t *t);

/* Frees the session (the fd is not closed). wt_tls_free(NULL) does nothing. */
void wt_tls_free(wt_tls_t *t);

/* Reads or writes on `fd` through `tls` when it is not NULL, plainly otherwise. */
ssize_t wt_io_read_some(int fd, wt_tls_t *tls, void *buf, size_t cap, int timeout_ms);
int wt_io_write_all(int fd, wt_tls_t *tls, const void *data, size_t len, int timeout_ms);

/*
 * Makes a self-signed certificate for `name` (subject CN and DNS subjectAltName,
 * plus IP 127.0.0.1), valid from an hour ago for a day, with a new EC P-256
 * key, and writes both as PEM to `cert_path` and `key_path` (mode 0600). The
 * certificate is its own CA: trust it with wt_tls_config_t.ca_file. Returns 0
 * or WT_EIO.
 */
int wt_tls_make_cert(const char *cert_path, const char *key_path, const char *name);

#endif /* WEFT_WT_TLS_H */
