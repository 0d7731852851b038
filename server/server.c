/* SPDX-License-Identifier: MIT */
/*
 * server.c: weftd's event loop. srv_new() opens the store and binds the
 * listening socket; srv_run() turns the H2O evloop, and after each pass (a
 * tick) does the end-of-tick work: one update frame per changed document,
 * acknowledgements of what became durable, one write chance per connection
 * with queued output. The store's writer thread commits in the background and
 * wakes the loop through an eventfd when a commit is durable.
 *
 * TLS (--tls-cert/--tls-key): one SSL_CTX, made by setup_tls() before anything
 * else and handed to H2O through accept_ctx.ssl_ctx; H2O runs the handshakes.
 * TLS 1.2 minimum, no compression or renegotiation, the server's cipher order,
 * and ALPN offering http/1.1 only (H2O 2.2.5's HTTP/2 is not used).
 *
 * Shutdown (srv_request_stop, from SIGINT/SIGTERM): the listener closes, every
 * update received is made durable and acknowledged, connections get close
 * code 1001, and srv_run() returns once they are gone (or after a grace time).
 */
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srv_internal.h"

/* Longest wait for connections to close at shutdown. */
#define SHUTDOWN_GRACE_MS 3000
/* Connections accepted per readiness event of the listener. */
#define ACCEPT_BATCH 64

uint64_t srv__now_ms(srv_t *srv)
{
    return h2o_now(srv->loop);
}

uint64_t srv__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    srv_t *srv = listener->data;
    if (err != NULL)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            break;
        h2o_accept(&srv->accept_ctx, sock);
    }
}

static void on_store_ready(h2o_socket_t *sock, const char *err)
{
    srv_t *srv = sock->data;
    (void)err;
    srv->durable = store_durable(srv->store);
    if (!srv->store_error && store_failed(srv->store) != 0) {
        srv->store_error = store_failed(srv->store);
        fprintf(stderr, "weftd: storage failed: %s; edits are no longer accepted\n",
                store_strerror(srv->store_error));
    }
}

/* Prints the reason OpenSSL queued for the last failure, after `what`. */
static void tls_error(const char *what, const char *file)
{
    char buf[256] = "";
    unsigned long code = ERR_peek_last_error();
    if (code != 0)
        ERR_error_string_n(code, buf, sizeof(buf));
    fprintf(stderr, "weftd: %s %s%s%s\n", what, file, code != 0 ? ": " : "", buf);
    ERR_clear_error();
}

/* 0 when `file` can be opened for reading; otherwise says why on stderr. */
static int tls_readable(const char *flag, const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "weftd: %s %s: %s\n", flag, file, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* The ALPN protocols offered, in H2O's form (ends with an empty entry). Only
 * HTTP/1.1: a client asking for h2 alone gets no ALPN and talks HTTP/1.1. */
static const h2o_iovec_t alpn_protocols[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};

/* Makes the server's SSL_CTX from cfg->tls_cert and cfg->tls_key. */
static int setup_tls(const srv_config_t *cfg, SSL_CTX **out)
{
    SSL_CTX *ctx;
    *out = NULL;
    ERR_clear_error();
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        tls_error("cannot make a TLS context", "");
        return SRV_ENOMEM;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.2: forward secrecy and AEAD only (TLS 1.3's suites all are). */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20") != 1) {
        tls_error("cannot configure TLS", "");
        SSL_CTX_free(ctx);
        return SRV_ENOMEM;
    }
    if (tls_readable("--tls-cert", cfg->tls_cert) != 0 ||
        tls_readable("--tls-key", cfg->tls_key) != 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        tls_error("cannot load the TLS certificate (--tls-cert)", cfg->tls_cert);
        goto fail;
    }
    /* A key of another certificate fails here already (key values mismatch). */
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long code = ERR_peek_last_error();
        if (ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
            tls_error("the TLS private key (--tls-key) does not match the certificate:",
                      cfg->tls_key);
        else
            tls_error("cannot load the TLS private key (--tls-key)", cfg->tls_key);
        goto fail;
    }
    h2o_ssl_register_alpn_protocols(ctx, alpn_protocols);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return SRV_ETLS;
}

static int listen_on(srv_t *srv)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int fd = -1, on = 1, gai;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned)srv->cfg.listen_port);
    if ((gai = getaddrinfo(srv->cfg.listen_host, port, &hints, &res)) != 0) {
        fprintf(stderr, "weftd: --listen %s:%s: %s\n", srv->cfg.listen_host, port,
                gai_strerror(gai));
        return SRV_ELISTEN;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        fprintf(stderr, "weftd: cannot listen on %s:%s: %s\n", srv->cfg.listen_host, port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return SRV_ELISTEN;
    }
    freeaddrinfo(res);
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    srv->listener = h2o_evloop_socket_create(srv->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    srv->listener->data = srv;
    h2o_socket_read_start(srv->listener, on_accept);
    return 0;
}

int srv_new(const srv_config_t *cfg, srv_t **out)
{
    srv_t *srv = calloc(1, sizeof(*srv));
    store_options_t sopts;
    h2o_socket_t *ssock;
    int err;

    if (srv == NULL)
        return SRV_ENOMEM;
    srv->cfg = *cfg;
    if (cfg->tls_cert != NULL && (err = setup_tls(cfg, &srv->accept_ctx.ssl_ctx)) != 0) {
        free(srv);
        return err;
    }
    h2o_linklist_init_anchor(&srv->sessions);
    h2o_linklist_init_anchor(&srv->dirty_docs);
    h2o_linklist_init_anchor(&srv->ack_waiters);
    h2o_linklist_init_anchor(&srv->to_proceed);
    h2o_linklist_init_anchor(&srv->closing);

    memset(&sopts, 0, sizeof(sopts));
    sopts.map_size_initial = cfg->map_size_mb << 20;
    sopts.snapshot_every = cfg->snapshot_every;
    sopts.snapshot_log_percent = cfg->snapshot_log_percent;
    sopts.uncompressed_snapshots = !cfg->snapshot_compression;
    sopts.commit_spacing_us = cfg->commit_spacing_us ? cfg->commit_spacing_us : STORE_SPACING_OFF;
    if ((err = store_open(cfg->data_dir, &sopts, &srv->store)) != 0) {
        fprintf(stderr, "weftd: cannot open the store in %s: %s\n", cfg->data_dir,
                store_strerror(err));
        SSL_CTX_free(srv->accept_ctx.ssl_ctx);
        free(srv);
        return SRV_ESTORE;
    }

    h2o_config_init(&srv->h2o_config);
    srv->h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("weftd"));
    if (srv__http_register(srv) != 0) {
        store_close(srv->store);
        h2o_config_dispose(&srv->h2o_config);
        SSL_CTX_free(srv->accept_ctx.ssl_ctx);
        free(srv);
        return SRV_ENOMEM;
    }
    srv->loop = h2o_evloop_create();
    h2o_context_init(&srv->ctx, srv->loop, &srv->h2o_config);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->h2o_config.hosts;

    h2o_timeout_init(srv->loop, &srv->ping_interval_timeout, (uint64_t)cfg->ping_interval * 1000);
    h2o_timeout_init(srv->loop, &srv->ping_answer_timeout, (uint64_t)cfg->ping_timeout * 1000);
    h2o_timeout_init(srv->loop, &srv->close_timeout, 3000);
    h2o_timeout_init(srv->loop, &srv->unload_timeout, (uint64_t)cfg->unload_after * 1000);
    h2o_timeout_init(srv->loop, &srv->unload_retry_timeout, 100);

    ssock = h2o_evloop_socket_create(srv->loop, store_completion_fd(srv->store),
                                     H2O_SOCKET_FLAG_DONT_READ);
    ssock->data = srv;
    h2o_socket_read_start(ssock, on_store_ready);
    srv->store_sock = ssock;

    if ((err = listen_on(srv)) != 0) {
        srv_free(srv);
        return err;
    }
    *out = srv;
    return 0;
}

uint16_t srv_port(const srv_t *srv)
{
    return srv->port;
}

void srv_request_stop(srv_t *srv)
{
    srv->stop_requested = 1;
}

/* Acknowledges what became durable, to the sessions waiting for it. */
static void ack_durable(srv_t *srv)
{
    h2o_linklist_t *l, *next;
    for (l = srv->ack_waiters.next; l != &srv->ack_waiters; l = next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, ack_link, l);
        next = l->next;
        srv__session_ack_durable(s, srv->durable);
    }
}

/* Broadcasts the changed documents whose pace allows (all when `force`);
 * the others stay dirty until their pace_due. Returns the earliest pace_due
 * left, or 0. */
static uint64_t flush_docs(srv_t *srv, int force)
{
    uint64_t now = srv__now_ms(srv), next_due = 0;
    h2o_linklist_t *l, *next;
    for (l = srv->dirty_docs.next; l != &srv->dirty_docs; l = next) {
        srv_doc_t *doc = H2O_STRUCT_FROM_MEMBER(srv_doc_t, dirty_link, l);
        uint64_t due = doc->flushed_at + srv__doc_pace_ms(doc);
        next = l->next; /* flushing unlinks only this document */
        if (!force && due > now) {
            doc->pace_due = due;
            if (next_due == 0 || due < next_due)
                next_due = due;
            continue;
        }
        srv__doc_flush_tick(doc);
    }
    return next_due;
}

/* The end of a tick; returns the earliest time a paced broadcast is due, or 0. */
static uint64_t tick_end_ex(srv_t *srv, int force)
{
    uint64_t next_due = 0;
    if (!h2o_linklist_is_empty(&srv->dirty_docs))
        next_due = flush_docs(srv, force);
    if (!h2o_linklist_is_empty(&srv->ack_waiters))
        ack_durable(srv);
    do {
        /* Proceeding may close sessions, which may queue output to others
         * (PRESENCE_LEAVE): take them one at a time until none is left. */
        while (!h2o_linklist_is_empty(&srv->to_proceed)) {
            srv_session_t *s =
                H2O_STRUCT_FROM_MEMBER(srv_session_t, proceed_link, srv->to_proceed.next);
            h2o_linklist_unlink(&s->proceed_link);
            srv__session_proceed(s);
        }
        /* Close frames owed by sessions whose ERROR has now gone out. */
        if (!h2o_linklist_is_empty(&srv->closing))
            srv__session_close_owed(srv);
    } while (!h2o_linklist_is_empty(&srv->to_proceed));
    return next_due;
}

static void tick_end(srv_t *srv)
{
    tick_end_ex(srv, 1);
}

static void begin_shutdown(srv_t *srv)
{
    srv->stopping = 1;
    /* H2O 2.2.5 has no graceful shutdown for HTTP/1 connections: make the
     * request timeout expire at once, so idle keep-alive and silent
     * connections close at the next tick (requests in progress finish). */
    srv->ctx.http1.req_timeout.timeout = 0;
    /* Likewise for TLS handshakes still in progress (H2O's accept timeout). */
    srv->ctx.handshake_timeout.timeout = 0;
    if (srv->listener != NULL) {
        h2o_socket_read_stop(srv->listener);
        h2o_socket_close(srv->listener);
        srv->listener = NULL;
    }
    /* Everything received becomes durable, then everyone hears so. */
    tick_end(srv);
    store_flush(srv->store);
    srv->durable = store_durable(srv->store);
    ack_durable(srv);
    for (h2o_linklist_t *l = srv->sessions.next; l != &srv->sessions; l = l->next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, all_link, l);
        if (s->ws.sock != NULL && !s->closing)
            srv__session_close(s, 1001, "server shutting down");
    }
    tick_end(srv);
}

int srv_run(srv_t *srv)
{
    uint64_t deadline = 0, next_due = 0;
    for (;;) {
        int32_t wait = srv->stopping ? 50 : 500;
        if (srv->stop_requested && !srv->stopping) {
            begin_shutdown(srv);
            deadline = srv__now_ms(srv) + SHUTDOWN_GRACE_MS;
        }
        if (srv->stopping &&
            ((srv->nsessions == 0 && h2o_linklist_is_empty(&srv->ctx.http1._conns) &&
              h2o_linklist_is_empty(&srv->ctx.handshake_timeout._entries)) ||
             srv__now_ms(srv) >= deadline))
            break;
        /* A short wait bound so a stop request is seen promptly, and none
         * past the next paced broadcast. */
        if (next_due != 0) {
            uint64_t now = srv__now_ms(srv);
            wait = next_due <= now                   ? 0
                   : next_due - now < (uint64_t)wait ? (int32_t)(next_due - now)
                                                     : wait;
        }
        if (h2o_evloop_run(srv->loop, wait) != 0 && errno != EINTR) {
            perror("weftd: event loop");
            return -1;
        }
        next_due = tick_end_ex(srv, srv->stopping);
    }
    /* Whoever is left did not finish the close handshake: cut them off
     * (but for upgrades still in H2O's hands, which end with the loop). */
    for (h2o_linklist_t *l = srv->sessions.next, *next; l != &srv->sessions; l = next) {
        srv_session_t *s = H2O_STRUCT_FROM_MEMBER(srv_session_t, all_link, l);
        next = l->next;
        srv__session_drop(s);
        srv__session_proceed(s);
    }
    return 0;
}

void srv_free(srv_t *srv)
{
    int leftovers;
    if (srv == NULL)
        return;
    if (srv->listener != NULL)
        h2o_socket_close(srv->listener);
    if (srv->store_sock != NULL) {
        /* The fd belongs to the store: export it back out of the loop. */
        h2o_socket_export_t info;
        if (h2o_socket_export(srv->store_sock, &info) == 0)
            (void)info; /* the store closes the fd itself */
        srv->store_sock = NULL;
    }
    srv__doc_free_all(srv);
    /* H2O asserts that no connection is left when its context goes; one still
     * stuck in a request (or an upgrade) at the deadline leaves the loop and
     * the server to the process exit. */
    leftovers = srv->loop != NULL &&
                (!h2o_linklist_is_empty(&srv->ctx.http1._conns) || srv->nsessions != 0 ||
                 !h2o_linklist_is_empty(&srv->ctx.handshake_timeout._entries));
    if (leftovers) {
        fprintf(stderr, "weftd: connections still open at exit\n");
    } else if (srv->loop != NULL) {
        h2o_timeout_dispose(srv->loop, &srv->ping_interval_timeout);
        h2o_timeout_dispose(srv->loop, &srv->ping_answer_timeout);
        h2o_timeout_dispose(srv->loop, &srv->close_timeout);
        h2o_timeout_dispose(srv->loop, &srv->unload_timeout);
        h2o_timeout_dispose(srv->loop, &srv->unload_retry_timeout);
        h2o_context_dispose(&srv->ctx);
        /* Let the loop run the closes it deferred, then free it. */
        h2o_evloop_run(srv->loop, 0);
        h2o_evloop_destroy(srv->loop);
    }
    if (!leftovers)
        h2o_config_dispose(&srv->h2o_config);
    if (srv->store != NULL) {
        int err = store_close(srv->store);
        if (err != 0)
            fprintf(stderr, "weftd: closing the store: %s\n", store_strerror(err));
        srv->store = NULL;
    }
    proto_buf_dispose(&srv->scratch);
    free(srv->iov);
    for (size_t i = 0; i < srv->n_buf_pool; i++)
        proto_buf_dispose(&srv->buf_pool[i]);
    free(srv->buf_pool);
    /* TLS connections hold their own references to it. */
    SSL_CTX_free(srv->accept_ctx.ssl_ctx);
    srv->accept_ctx.ssl_ctx = NULL;
    if (!leftovers) {
        srv__ip_free_all(srv); /* every session is gone, and with it every count */
        free(srv);
    }
}
