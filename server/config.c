/* SPDX-License-Identifier: MIT */
/*
 * config.c: weftd's command line. Every flag has a default, so `weftd` alone
 * serves the demo on http://127.0.0.1:8080 with data in ./data; --help lists
 * them all. Also the document-name rule shared by every route.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

const char *srv_strerror(int err)
{
    switch (err) {
#define SRV__ERRNO_CASE(name, value, text)                                                         \
    case value:                                                                                    \
        return text;
        SRV_ERRNO_MAP(SRV__ERRNO_CASE)
#undef SRV__ERRNO_CASE
    case 0:
        return "success";
    default:
        return "unknown error";
    }
}

int srv_docname_valid(const char *name, size_t len)
{
    if (len == 0 || len > SRV_MAX_DOCNAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '~' || c == '-'))
            return 0;
    }
    return 1;
}

void srv_config_init(srv_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->data_dir = "./data";
    cfg->web_root = "./web-demo/dist";
    cfg->max_message = 1u << 20;
    cfg->max_queued = 8u << 20;
    cfg->ping_interval = 20;
    cfg->ping_timeout = 10;
    cfg->unload_after = 30;
    cfg->snapshot_every = 1000;
    cfg->snapshot_log_percent = 100;
    cfg->snapshot_compression = 1;
    cfg->map_size_mb = 64;
    cfg->history_burst_gap_ms = 60000;
    cfg->history_burst_max_ms = 600000;
    cfg->max_conns_per_ip = 64;
    cfg->max_msgs_per_sec = 1000;
    cfg->max_doc_bytes = 64u << 20;
    cfg->max_documents = 10000;
    cfg->max_pending = 10000;
    cfg->broadcast_pace_us = 25;
    cfg->commit_spacing_us = 1000;
}

void srv_config_usage(FILE *out)
{
    fputs("usage: weftd [options]\n"
          "\n"
          "weft's collaborative editing server: WebSocket editors at /ws/<document>,\n"
          "the web demo at /, REST at /api/docs/<document>, /healthz and /metrics.\n"
          "\n"
          "  --listen HOST:PORT    address to serve (default 127.0.0.1:8080; port 0 picks\n"
          "                        a free port, printed at start)\n"
          "  --data DIR            data directory, created if missing (default ./data)\n"
          "  --web-root DIR        static files served at / (default ./web-demo/dist)\n"
          "  --max-message BYTES   largest WebSocket message accepted (default 1048576,\n"
          "                        at most 67108864)\n"
          "  --max-queued BYTES    output queued for one connection before it is cut off\n"
          "                        as a slow reader (default 8388608)\n"
          "  --ping-interval SEC   silence before the server pings a connection (default 20)\n"
          "  --ping-timeout SEC    time to answer a ping before the connection is dropped\n"
          "                        and its cursor removed (default 10)\n"
          "  --unload-after SEC    how long a document stays in memory after its last\n"
          "                        editor left (default 30)\n"
          "  --snapshot-every N    at least N log entries between two snapshots of a\n"
          "                        document (default 1000)\n"
          "  --snapshot-log-percent P  a snapshot also waits until the update bytes logged\n"
          "                        since the latest reach P % of that snapshot's size\n"
          "                        (default 100; replay at load vs compaction CPU)\n"
          "  --snapshot-compression 0|1  1: snapshots compressed (default); 0: stored\n"
          "                        as is, bigger but far cheaper to write and load\n"
          "  --map-size MIB        initial LMDB map size; it grows when full (default 64)\n"
          "  --history-burst-gap MS  edits at most this far apart are listed as one\n"
          "                        version in the history (default 60000)\n"
          "  --history-burst-max MS  longest time one listed version spans (default 600000)\n",
          out);
    /* (two strings: C compilers need support only 4095 bytes in one) */
    fputs("  --max-connections-per-ip N  open WebSocket connections from one client\n"
          "                        address; more upgrades get HTTP 429 (default 64;\n"
          "                        0: no limit, e.g. behind a proxy on this host)\n"
          "  --tls-cert FILE       serve https:// and wss:// with this PEM certificate\n"
          "                        (chain); needs --tls-key (default: plain HTTP)\n"
          "  --tls-key FILE        the PEM private key of --tls-cert\n"
          "  --token-secret-file FILE  require access tokens signed with the secret in\n"
          "                        FILE (see `weftd token --help`, docs/security.md)\n"
          "  --token-secret SECRET the same with the secret itself (visible in ps)\n"
          "  --allow-origin ORIGIN WebSocket upgrades only from this Origin, e.g.\n"
          "                        https://docs.example.com (repeatable; default: any)\n"
          "  --max-messages-per-second N  WebSocket messages per second of one\n"
          "                        connection, in bursts of up to N; excess messages get\n"
          "                        ERROR rate_limited and are dropped, and more than 4*N\n"
          "                        dropped within 10 s close the connection (1008)\n"
          "                        (default 1000)\n"
          "  --max-document-bytes N  largest text of a document in UTF-8 bytes; an\n"
          "                        update that could pass it gets ERROR\n"
          "                        document_too_large (default 67108864)\n"
          "  --max-documents N     documents in memory; a new one unloads an idle one\n"
          "                        or is refused with close 1013 (default 10000)\n"
          "  --max-pending N       runs of operations a document holds for missing\n"
          "                        dependencies; past it, connections that added some\n"
          "                        get ERROR bad_update for their updates (default 10000)\n"
          "  --broadcast-pace US   a document's updates go to its editors at most once\n"
          "                        per US microseconds times its editors, at most every\n"
          "                        50 ms; 0: every tick (default 25)\n"
          "  --commit-spacing US   under steady load, commit to disk at most once per US\n"
          "                        microseconds, so edits share an fsync (ACKs wait up to\n"
          "                        that long); 0: commit at once (default 1000)\n"
          "  -h, --help            this text\n"
          "\n"
          "On start weftd prints 'weftd: listening on http://HOST:PORT' on stdout\n"
          "(https:// with TLS). TLS is 1.2 or 1.3, with ALPN http/1.1 only.\n"
          "SIGINT or SIGTERM: stop accepting, make every received edit durable, close\n"
          "connections (code 1001) and exit 0.\n",
          out);
}

/* Parses an unsigned decimal in [min, max]. */
static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    unsigned long long v;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_listen(srv_config_t *cfg, const char *s)
{
    const char *colon = strrchr(s, ':');
    unsigned long long port;
    size_t hostlen;
    if (colon == NULL)
        return -1;
    hostlen = (size_t)(colon - s);
    if (hostlen >= 2 && s[0] == '[' && s[hostlen - 1] == ']') { /* [::1]:8080 */
        s++;
        hostlen -= 2;
    }
    if (hostlen == 0 || hostlen >= sizeof(cfg->listen_host))
        return -1;
    if (parse_uint(colon + 1, 0, 65535, &port) != 0)
        return -1;
    memcpy(cfg->listen_host, s, hostlen);
    cfg->listen_host[hostlen] = '\0';
    cfg->listen_port = (uint16_t)port;
    return 0;
}

/* Parses into a copy, so *cfg is untouched when the command line is refused. */
static int parse_into(srv_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

int srv_config_parse(srv_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    srv_config_t c = *cfg;
    int r = parse_into(&c, argc, argv, err, errlen);
    if (r == 0)
        *cfg = c;
    return r;
}

static int parse_into(srv_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *val = NULL;
        char name[32];
        const char *eq;
        unsigned long long v;
        int auth;
        if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0 ||
            strncmp(flag, "--help=", 7) == 0)
            return 1;
        if (strncmp(flag, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (try --help)", flag);
            return SRV_EUSAGE;
        }
        /* --flag=value or --flag value */
        eq = strchr(flag, '=');
        if (eq != NULL) {
            size_t n = (size_t)(eq - flag);
            if (n >= sizeof(name))
                n = sizeof(name) - 1;
            memcpy(name, flag, n);
            name[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", flag);
            if (i + 1 < argc)
                val = argv[++i];
        }
        if (val == NULL) {
            snprintf(err, errlen, "%s needs a value (try --help)", name);
            return SRV_EUSAGE;
        }
#define UINT_FLAG(flagname, field, min, max)                                                       \
    if (strcmp(name, flagname) == 0) {                                                             \
        if (parse_uint(val, min, max, &v) != 0) {                                                  \
            snprintf(err, errlen, "%s: '%s' is not a number in %llu..%llu", name, val,             \
                     (unsigned long long)(min), (unsigned long long)(max));                        \
            return SRV_EUSAGE;                                                                     \
        }                                                                                          \
        cfg->field = v;                                                                            \
        continue;                                                                                  \
    }
        UINT_FLAG("--max-message", max_message, 64, 64ull << 20)
        UINT_FLAG("--max-queued", max_queued, 1024, 1ull << 34)
        UINT_FLAG("--ping-interval", ping_interval, 1, 86400)
        UINT_FLAG("--ping-timeout", ping_timeout, 1, 86400)
        UINT_FLAG("--unload-after", unload_after, 0, 86400)
        UINT_FLAG("--snapshot-every", snapshot_every, 1, 1u << 30)
        UINT_FLAG("--snapshot-log-percent", snapshot_log_percent, 1, 100000)
        UINT_FLAG("--snapshot-compression", snapshot_compression, 0, 1)
        UINT_FLAG("--map-size", map_size_mb, 1, 1u << 20)
        UINT_FLAG("--history-burst-gap", history_burst_gap_ms, 0, 1ull << 40)
        UINT_FLAG("--history-burst-max", history_burst_max_ms, 0, 1ull << 40)
        UINT_FLAG("--max-connections-per-ip", max_conns_per_ip, 0, 1u << 20)
        UINT_FLAG("--max-messages-per-second", max_msgs_per_sec, 1, 1000000)
        UINT_FLAG("--max-document-bytes", max_doc_bytes, 1, 1ull << 40)
        UINT_FLAG("--max-documents", max_documents, 1, 1u << 24)
        UINT_FLAG("--max-pending", max_pending, 1, 1u << 24)
        UINT_FLAG("--broadcast-pace", broadcast_pace_us, 0, 50000)
        UINT_FLAG("--commit-spacing", commit_spacing_us, 0, 100000)
#undef UINT_FLAG
        if (strcmp(name, "--listen") == 0) {
            if (parse_listen(cfg, val) != 0) {
                snprintf(err, errlen, "--listen: '%s' is not HOST:PORT", val);
                return SRV_EUSAGE;
            }
        } else if (strcmp(name, "--data") == 0) {
            if (*val == '\0' || strlen(val) > PATH_MAX - 64) {
                snprintf(err, errlen, "--data: bad directory");
                return SRV_EUSAGE;
            }
            cfg->data_dir = val;
        } else if (strcmp(name, "--tls-cert") == 0 || strcmp(name, "--tls-key") == 0) {
            if (*val == '\0') {
                snprintf(err, errlen, "%s: empty file name", name);
                return SRV_EUSAGE;
            }
            if (name[6] == 'c')
                cfg->tls_cert = val;
            else
                cfg->tls_key = val;
        } else if (strcmp(name, "--web-root") == 0) {
            if (*val == '\0' || strlen(val) > PATH_MAX - 64) {
                snprintf(err, errlen, "--web-root: bad directory");
                return SRV_EUSAGE;
            }
            cfg->web_root = val;
        } else if ((auth = srv__auth_config_flag(cfg, name, val, err, errlen)) != 1) {
            if (auth != 0)
                return auth; /* --token-secret(-file), --allow-origin: auth.c */
        } else {
            snprintf(err, errlen, "unknown option '%s' (try --help)", name);
            return SRV_EUSAGE;
        }
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        snprintf(err, errlen, "%s needs %s as well (TLS takes both, or neither)",
                 cfg->tls_cert ? "--tls-cert" : "--tls-key",
                 cfg->tls_cert ? "--tls-key" : "--tls-cert");
        return SRV_EUSAGE;
    }
    return 0;
}
