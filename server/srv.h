/* SPDX-License-Identifier: MIT */
/*
 * srv.h: the public interface of weftd, weft's collaborative editing server.
 *
 * A srv_t is one running server: an H2O event loop serving HTTP/1.1 (plain,
 * or over TLS with --tls-cert/--tls-key) on one address (the WebSocket
 * endpoint /ws/<document>, the REST API under /api/, /healthz, /metrics and
 * the web demo's static files), the documents being edited in memory, and
 * the LMDB store (storage/store.h) whose writer thread makes every update
 * durable before it is acknowledged.
 *
 * Threads. Everything here runs on the thread that calls srv_run(), except
 * srv_request_stop(), which may be called from a signal handler.
 *
 * Errors. Functions that can fail return 0 or a negative SRV_E* code
 * (-300 .. -399); srv_strerror() describes them.
 */
#ifndef WEFT_SRV_H
#define WEFT_SRV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_ERRNO_MAP(X)                                                                           \
    X(EUSAGE, -300, "invalid command line")                                                        \
    X(ELISTEN, -301, "cannot listen on the address")                                               \
    X(ESTORE, -302, "cannot open the data directory")                                              \
    X(ENOMEM, -303, "out of memory")                                                               \
    X(ETLS, -304, "cannot load the TLS certificate or key")                                        \
    X(EBUSY, -305, "too many documents open")

enum srv_errno {
#define SRV__ERRNO_ENUM(name, value, text) SRV_##name = value,
    SRV_ERRNO_MAP(SRV__ERRNO_ENUM)
#undef SRV__ERRNO_ENUM
};

/* Returns a static description of an SRV_E* code (never NULL). */
const char *srv_strerror(int err);

/* Longest document name, in bytes. Names are 1..SRV_MAX_DOCNAME bytes of
 * [A-Za-z0-9._~-]. */
#define SRV_MAX_DOCNAME 128

/* Returns 1 when `name` (`len` bytes, not necessarily NUL-terminated) is a valid
 * document name, 0 otherwise. */
int srv_docname_valid(const char *name, size_t len);

/* Token secrets are SRV_MIN_TOKEN_SECRET..SRV_MAX_TOKEN_SECRET bytes; at most
 * SRV_MAX_ORIGINS --allow-origin flags. */
#define SRV_MIN_TOKEN_SECRET 16
#define SRV_MAX_TOKEN_SECRET 1024
#define SRV_MAX_ORIGINS 16

/* Everything weftd can be told on its command line. Strings are borrowed from
 * argv (or static defaults) and must outlive the server. */
typedef struct srv_config {
    char listen_host[64]; /* --listen HOST:PORT; port 0 picks a free one */
    uint16_t listen_port;
    const char *data_dir;          /* --data */
    const char *web_root;          /* --web-root: the built demo, served at / */
    size_t max_message;            /* --max-message: largest WebSocket message (bytes) */
    size_t max_queued;             /* --max-queued: output queued per connection (bytes) */
    unsigned ping_interval;        /* --ping-interval: seconds of silence before a ping */
    unsigned ping_timeout;         /* --ping-timeout: seconds to answer it */
    unsigned unload_after;         /* --unload-after: seconds a document stays loaded idle */
    unsigned snapshot_every;       /* --snapshot-every: log entries between snapshots */
    unsigned snapshot_log_percent; /* --snapshot-log-percent: the size rule (docs/storage.md) */
    unsigned snapshot_compression; /* --snapshot-compression: 1 compress, 0 store as is */
    size_t map_size_mb;            /* --map-size: initial LMDB map size (MiB) */
    /* --history-burst-gap / --history-burst-max: log entries at most this far
     * apart (ms), and a burst spanning at most this long (ms), are listed as one
     * version (docs/history.md). */
    uint64_t history_burst_gap_ms;
    uint64_t history_burst_max_ms;
    /* --token-secret / --token-secret-file: the HMAC key of access tokens
     * (docs/security.md), copied here; token_secret_len 0: no access control. */
    char token_secret[SRV_MAX_TOKEN_SECRET];
    size_t token_secret_len;
    /* --allow-origin (repeatable): the Origin headers a WebSocket upgrade may
     * carry (borrowed from argv); none: any origin. */
    const char *allow_origin[SRV_MAX_ORIGINS];
    size_t n_allow_origin;
    /* --max-connections-per-ip: open WebSocket sessions of one client address;
     * more upgrades get HTTP 429. 0: no limit (behind a proxy on this host). */
    unsigned max_conns_per_ip;
    /* --tls-cert / --tls-key: PEM certificate chain and private key; both set
     * (weftd serves https:// and wss://) or both NULL (plain HTTP). */
    const char *tls_cert;
    const char *tls_key;
    /* --max-messages-per-second: a token bucket per connection (burst as
     * large); excess messages get ERROR rate_limited and are dropped, more than
     * SRV_RATE_CLOSE_FACTOR times as many within SRV_RATE_WINDOW_MS close it. */
    unsigned max_msgs_per_sec;
    /* --max-document-bytes: largest visible text of a document (UTF-8 bytes);
     * an update that could pass it gets ERROR document_too_large. */
    uint64_t max_doc_bytes;
    /* --max-documents: documents in memory; a HELLO for another one unloads
     * an idle document, or gets ERROR server_error and close 1013. */
    size_t max_documents;
    /* --max-pending: held runs of operations per document; once a document
     * holds this many, updates from connections that added held runs are
     * refused with ERROR bad_update. */
    size_t max_pending;
    /* --broadcast-pace: microseconds per editor between two broadcasts of a
     * document's updates (at most SRV_PACE_MAX_MS ms in all; 0: every tick). */
    uint32_t broadcast_pace_us;
    /* --commit-spacing: under steady load the store commits at most once per
     * this many microseconds (more appends share an fsync; ACKs wait up to
     * that long). 0: commit as soon as anything is queued. */
    uint32_t commit_spacing_us;
} srv_config_t;

#define SRV_RATE_CLOSE_FACTOR 4
#define SRV_RATE_WINDOW_MS 10000

/* Fills *cfg with the defaults (`weftd` alone serves http://127.0.0.1:8080 with
 * data in ./data). */
void srv_config_init(srv_config_t *cfg);

/*
 * Parses weftd's command line into *cfg (which srv_config_init() filled).
 * Returns 0, 1 when --help was asked for (nothing else parsed matters), or
 * SRV_EUSAGE with a one-line reason in err[errlen] (also when only one of
 * --tls-cert and --tls-key is given).
 */
int srv_config_parse(srv_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/* Writes the --help text (every flag with its default) to `out`. */
void srv_config_usage(FILE *out);

typedef struct srv srv_t;

/*
 * Loads the TLS certificate and key when cfg->tls_cert is set, opens the store
 * in cfg->data_dir and binds the listening socket. Returns 0 and sets *out,
 * SRV_ETLS (a file cannot be read, or the key does not match the certificate),
 * SRV_ESTORE, SRV_ELISTEN (with errno set) or SRV_ENOMEM. Errors are also
 * described on stderr.
 */
int srv_new(const srv_config_t *cfg, srv_t **out);

/* The port the server listens on (the chosen one when the config said 0). */
uint16_t srv_port(const srv_t *srv);

/*
 * Serves until srv_request_stop(). Then it stops accepting, makes every update
 * received before the stop durable, acknowledges it, closes every connection
 * with close code 1001 (messages arriving after the stop are ignored: clients
 * resend unacknowledged updates on their next connection) and returns 0.
 */
int srv_run(srv_t *srv);

/* Asks srv_run() to stop. Async-signal-safe. */
void srv_request_stop(srv_t *srv);

/* Closes the store and frees the server. srv_free(NULL) does nothing. */
void srv_free(srv_t *srv);

/*
 * `weftd token ...` (argv[0] is "token"): issues an access token
 * (docs/security.md) and prints it on `out`. Returns the exit status: 0 (also
 * for --help, printed on `out`), 2 for a bad command line (reason on `err`).
 */
int srv_token_main(int argc, char **argv, FILE *out, FILE *err);

#endif
