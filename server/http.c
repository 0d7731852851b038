/* SPDX-License-Identifier: MIT */
/*
 * http.c: weftd's HTTP routes on H2O.
 *
 *   GET /ws/<document>        WebSocket upgrade (a session: session.c)
 *   GET /api/docs/<document>  JSON: the current text and a few facts
 *   GET|POST /api/docs/<document>/...  the history routes (history.c)
 *   GET /healthz              200 "ok"
 *   GET /metrics              Prometheus text (metrics.c)
 *   GET /...                  the web demo's static files (--web-root)
 *
 * Document names are checked before anything else (HTTP 400). Event-loop
 * thread only.
 */
#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "srv_internal.h"

typedef struct {
    h2o_handler_t super;
    srv_t *srv;
} handler_t;

static void send_text(h2o_req_t *req, int status, const char *reason, const char *type,
                      const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

static void send_json_error(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    send_text(req, status, reason, "application/json", body, (size_t)n);
}

int srv__http_route(const char *path, size_t len, size_t query_at, srv_route_t *out)
{
    size_t end = len;
    memset(out, 0, sizeof(*out));
    if (query_at < end)
        end = query_at;
    if (end >= 4 && memcmp(path, "/ws/", 4) == 0 && srv_docname_valid(path + 4, end - 4)) {
        out->kind = SRV_ROUTE_WS;
        out->doc = path + 4;
        out->doc_len = end - 4;
    } else if (end >= 10 && memcmp(path, "/api/docs/", 10) == 0) {
        const char *name = path + 10, *slash = memchr(name, '/', end - 10);
        if (slash != NULL && srv_docname_valid(name, (size_t)(slash - name))) {
            out->kind = SRV_ROUTE_HISTORY;
            out->doc = name;
            out->doc_len = (size_t)(slash - name);
            out->rest = slash + 1; /* the rest of the path, query string included */
            out->rest_len = len - (size_t)(out->rest - path);
        } else if (srv_docname_valid(name, end - 10)) {
            out->kind = SRV_ROUTE_DOC;
            out->doc = name;
            out->doc_len = end - 10;
        }
    }
    return out->kind;
}

static int is_get(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

/* ---- sessions per client address ---------------------------------------- */

/* The peer address of the request's connection; an IPv4-mapped IPv6 address
 * counts as the IPv4 address it maps. len 0 when unknown (not a TCP peer). */
static srv_ip_t peer_ip(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    srv_ip_t ip;
    memset(&ip, 0, sizeof(ip));
    memset(&ss, 0, sizeof(ss));
    if (req->conn->callbacks->get_peername == NULL ||
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) == 0)
        return ip;
    if (ss.ss_family == AF_INET) {
        ip.len = 4;
        memcpy(ip.addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            ip.len = 4;
            memcpy(ip.addr, a + 12, 4);
        } else {
            ip.len = 16;
            memcpy(ip.addr, a, 16);
        }
    }
    return ip;
}

static srv_ip_count_t **ip_slot(srv_t *srv, const srv_ip_t *ip)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    srv_ip_count_t **p;
    for (size_t i = 0; i < ip->len; i++)
        h = (h ^ ip->addr[i]) * 16777619u;
    for (p = &srv->ips[h & (SRV_IP_BUCKETS - 1)]; *p != NULL; p = &(*p)->next)
        if ((*p)->ip.len == ip->len && memcmp((*p)->ip.addr, ip->addr, ip->len) == 0)
            break;
    return p;
}

int srv__ip_acquire(srv_t *srv, const srv_ip_t *ip)
{
    srv_ip_count_t **p;
    if (ip->len == 0 || srv->cfg.max_conns_per_ip == 0)
        return 0;
    if (srv->ips == NULL && (srv->ips = calloc(SRV_IP_BUCKETS, sizeof(*srv->ips))) == NULL)
        abort();
    p = ip_slot(srv, ip);
    if (*p == NULL) {
        if ((*p = calloc(1, sizeof(**p))) == NULL)
            abort();
        (*p)->ip = *ip;
    } else if ((*p)->n >= srv->cfg.max_conns_per_ip) {
        return -1;
    }
    (*p)->n++;
    return 0;
}

void srv__ip_release(srv_t *srv, const srv_ip_t *ip)
{
    srv_ip_count_t **p, *e;
    if (ip->len == 0 || srv->ips == NULL)
        return;
    p = ip_slot(srv, ip);
    if ((e = *p) == NULL)
        return;
    assert(e->n > 0);
    if (--e->n == 0) {
        *p = e->next;
        free(e);
    }
}

void srv__ip_free_all(srv_t *srv)
{
    if (srv->ips == NULL)
        return;
    for (size_t i = 0; i < SRV_IP_BUCKETS; i++) {
        srv_ip_count_t *e = srv->ips[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(srv->ips);
    srv->ips = NULL;
}

static int on_ws(h2o_handler_t *self, h2o_req_t *req)
{
    srv_t *srv = ((handler_t *)self)->srv;
    srv_route_t route;
    h2o_iovec_t name;
    const char *key;
    srv_session_t *s;
    srv_ip_t ip;

    srv->metrics.http_requests++;
    if (srv__http_route(req->path.base, req->path.len, req->query_at, &route) != SRV_ROUTE_WS) {
        srv->metrics.ws_rejected++;
        send_json_error(req, 400, "Bad Request",
                        "bad document name: 1 to 128 characters of A-Z a-z 0-9 . _ ~ -");
        return 0;
    }
    name = h2o_iovec_init(route.doc, route.doc_len);
    if (req->version >= 0x200 || h2o_is_websocket_handshake(req, &key) != 0 || key == NULL) {
        srv->metrics.ws_rejected++;
        send_json_error(req, 400, "Bad Request", "expected a WebSocket upgrade (HTTP/1.1)");
        return 0;
    }
    {
        /* RFC 6455 4.4: this server speaks version 13 only. */
        ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-version"), -1);
        if (i < 0 || !h2o_memis(req->headers.entries[i].value.base,
                                req->headers.entries[i].value.len, H2O_STRLIT("13"))) {
            srv->metrics.ws_rejected++;
            h2o_add_header_by_str(&req->pool, &req->res.headers,
                                  H2O_STRLIT("sec-websocket-version"), 0, NULL, H2O_STRLIT("13"));
            send_json_error(req, 426, "Upgrade Required", "WebSocket version 13 expected");
            return 0;
        }
    }
    if (srv__auth_ws_origin(srv, req) != 0)
        return 0; /* an Origin outside --allow-origin: 403 */
    if (srv->stopping) {
        srv->metrics.ws_rejected++;
        send_json_error(req, 503, "Service Unavailable", "the server is shutting down");
        return 0;
    }
    ip = peer_ip(req);
    if (srv__ip_acquire(srv, &ip) != 0) {
        srv->metrics.ws_rejected++;
        srv->metrics.limited[SRV_LIMIT_CONNS_PER_IP]++;
        send_json_error(req, 429, "Too Many Requests",
                        "too many connections from this address (--max-connections-per-ip)");
        return 0;
    }
    s = srv__session_new(srv, name.base, name.len);
    if (s == NULL) {
        srv__ip_release(srv, &ip);
        send_json_error(req, 503, "Service Unavailable", "out of memory");
        return 0;
    }
    s->ip = ip;
    if (srv__ws_accept(s, req, key) != 0)
        abort(); /* out of memory */
    srv__session_timer_start(s);
    return 0;
}

/* /api/docs/<document>/<path>: the history routes, answered by history.c.
 * `name` is the document's name, already checked. */
static int on_history(srv_t *srv, h2o_req_t *req, h2o_iovec_t name, const char *path,
                      size_t path_len)
{
    srv_history_req_t hr;
    proto_buf_t body = {0};
    int status;

    if (srv__auth_http(srv, req, name.base, name.len, !is_get(req)) != 0)
        return 0; /* 401 without a valid token, 403 for a read token's POST */
    memset(&hr, 0, sizeof(hr));
    if (is_get(req)) {
        hr.method = "GET";
        hr.method_len = 3;
    } else {
        hr.method = req->method.base;
        hr.method_len = req->method.len;
    }
    hr.path = path;
    hr.path_len = path_len;
    if (req->entity.base != NULL) {
        hr.body = req->entity.base;
        hr.body_len = req->entity.len;
    }
    status = srv__history_serve(srv, name.base, name.len, &hr, &body);
    send_text(req, status, srv__http_reason(status), "application/json; charset=utf-8",
              (const char *)body.base, body.len);
    proto_buf_dispose(&body);
    return 0;
}

static int on_api_docs(h2o_handler_t *self, h2o_req_t *req)
{
    srv_t *srv = ((handler_t *)self)->srv;
    srv_route_t route;
    h2o_iovec_t name;
    srv_doc_t *doc;
    crdt_doc_t *crdt = NULL, *tmp = NULL;
    crdt_buf_t text = {0};
    proto_buf_t body = {0};
    size_t editors = 0;
    int err;

    srv->metrics.http_requests++;
    switch (srv__http_route(req->path.base, req->path.len, req->query_at, &route)) {
    case SRV_ROUTE_HISTORY:
        return on_history(srv, req, h2o_iovec_init(route.doc, route.doc_len), route.rest,
                          route.rest_len);
    case SRV_ROUTE_DOC:
        name = h2o_iovec_init(route.doc, route.doc_len);
        break;
    default:
        send_json_error(req, 400, "Bad Request", "bad document name");
        return 0;
    }
    if (!is_get(req)) {
        send_json_error(req, 405, "Method Not Allowed", "only GET");
        return 0;
    }
    if (srv__auth_http(srv, req, name.base, name.len, 0) != 0)
        return 0;
    doc = srv__doc_find(srv, name.base, name.len);
    if (doc != NULL) {
        crdt = doc->crdt;
        editors = doc->nsessions;
    } else {
        err = store_doc_load(srv->store, name.base, name.len, 1, &tmp, NULL);
        if (err == STORE_ENOTFOUND) {
            send_json_error(req, 404, "Not Found", "no such document");
            return 0;
        }
        if (err != 0) {
            send_json_error(req, 500, "Internal Server Error", "the document cannot be loaded");
            return 0;
        }
        crdt = tmp;
    }
    if (crdt_doc_text(crdt, &text) != 0)
        abort();
    srv__buf_append(&body, "{\"name\":", 8);
    srv__json_string(&body, name.base, name.len);
    srv__buf_append(&body, ",\"text\":", 8);
    srv__json_string(&body, (const char *)text.base, text.len);
    srv__buf_printf(&body, ",\"length\":%zu,\"editors\":%zu,\"loaded\":%s}\n",
                    crdt_doc_length(crdt), editors, doc != NULL ? "true" : "false");
    send_text(req, 200, "OK", "application/json; charset=utf-8", (const char *)body.base, body.len);
    crdt_buf_dispose(&text);
    proto_buf_dispose(&body);
    crdt_doc_free(tmp);
    return 0;
}

static int on_healthz(h2o_handler_t *self, h2o_req_t *req)
{
    srv_t *srv = ((handler_t *)self)->srv;
    srv->metrics.http_requests++;
    if (srv->store_error) {
        send_text(req, 503, "Service Unavailable", "text/plain", H2O_STRLIT("storage failed\n"));
        return 0;
    }
    send_text(req, 200, "OK", "text/plain", H2O_STRLIT("ok\n"));
    return 0;
}

static int on_metrics(h2o_handler_t *self, h2o_req_t *req)
{
    srv_t *srv = ((handler_t *)self)->srv;
    proto_buf_t body = {0};
    srv->metrics.http_requests++;
    srv__metrics_render(srv, &body);
    send_text(req, 200, "OK", "text/plain; version=0.0.4", (const char *)body.base, body.len);
    proto_buf_dispose(&body);
    return 0;
}

static int on_no_demo(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    send_text(req, 404, "Not Found", "text/plain",
              H2O_STRLIT("weftd: the web demo is not built here (see --web-root; the README's "
                         "start command builds it)\n"));
    return 0;
}

static int add_handler(h2o_hostconf_t *host, const char *path, srv_t *srv,
                       int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
    h2o_pathconf_t *pc = h2o_config_register_path(host, path, 0);
    handler_t *h = (handler_t *)h2o_create_handler(pc, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = srv;
    return 0;
}

int srv__http_register(srv_t *srv)
{
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    struct stat st;

    /* Only the history routes take a body (4 KiB at most, 413 past it with
     * JSON); H2O refuses far larger ones itself, before buffering them. */
    srv->h2o_config.max_request_entity_size = 64 * 1024;
    add_handler(host, "/ws", srv, on_ws);
    add_handler(host, "/api/docs", srv, on_api_docs);
    add_handler(host, "/healthz", srv, on_healthz);
    add_handler(host, "/metrics", srv, on_metrics);
    if (stat(srv->cfg.web_root, &st) == 0 && S_ISDIR(st.st_mode)) {
        static const char *index_files[] = {"index.html", NULL};
        h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
        /* 2.2.5 predates these types; browsers refuse to stream-compile a
         * .wasm served as anything but application/wasm. */
        h2o_mimemap_t *types = h2o_mimemap_create();
        h2o_mimemap_define_mimetype(types, "wasm", "application/wasm", NULL);
        h2o_mimemap_define_mimetype(types, "mjs", "application/javascript", NULL);
        h2o_mimemap_define_mimetype(types, "map", "application/json", NULL);
        h2o_file_register(pc, srv->cfg.web_root, index_files, types, 0);
        h2o_mem_release_shared(types);
    } else {
        fprintf(stderr, "weftd: --web-root %s is not a directory: / serves no demo\n",
                srv->cfg.web_root);
        add_handler(host, "/", srv, on_no_demo);
    }
    return 0;
}
