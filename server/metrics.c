/* SPDX-License-Identifier: MIT */
/*
 * metrics.c: /metrics in the Prometheus text format (version 0.0.4): the
 * server's counters (srv_metrics_t), gauges read from its state, and the
 * store's commit statistics. Also the small buffer helpers the HTTP routes use.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

void srv__buf_append(proto_buf_t *buf, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (proto_buf_reserve(buf, len) != 0)
        abort();
    memcpy(buf->base + buf->len, data, len);
    buf->len += len;
}

void srv__buf_printf(proto_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || proto_buf_reserve(buf, (size_t)n + 1) != 0)
        abort();
    va_start(ap, fmt);
    vsnprintf((char *)buf->base + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
}

static void metric(proto_buf_t *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    srv__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                    (unsigned long long)value);
}

void srv__metrics_render(srv_t *srv, proto_buf_t *b)
{
    const srv_metrics_t *m = &srv->metrics;
    store_stats_t st;
    uint64_t errors = 0;

    store_stats(srv->store, &st);
    metric(b, "weft_connections", "gauge", "Open WebSocket connections.", srv->nsessions);
    metric(b, "weft_connections_total", "counter", "WebSocket connections accepted.",
           m->connections_total);
    metric(b, "weft_documents_loaded", "gauge", "Documents in memory.", srv->ndocs);
    metric(b, "weft_documents_loaded_total", "counter", "Documents loaded into memory.",
           m->docs_loaded_total);
    metric(b, "weft_documents_unloaded_total", "counter", "Documents unloaded from memory.",
           m->docs_unloaded_total);
    metric(b, "weft_messages_in_total", "counter", "WebSocket messages received.", m->messages_in);
    metric(b, "weft_updates_in_total", "counter", "UPDATE and SYNC2 messages applied.",
           m->updates_in);
    metric(b, "weft_updates_stored_total", "counter",
           "Applied updates that changed a document and were logged.", m->updates_stored);
    metric(b, "weft_updates_out_total", "counter", "Update frames sent to editors.",
           m->updates_out);
    metric(b, "weft_presence_in_total", "counter", "PRESENCE messages received.", m->presence_in);
    metric(b, "weft_acks_out_total", "counter", "ACK messages sent.", m->acks_out);
    metric(b, "weft_bytes_in_total", "counter", "WebSocket payload bytes received.", m->bytes_in);
    metric(b, "weft_bytes_out_total", "counter", "WebSocket payload bytes queued to send.",
           m->bytes_out);
    metric(b, "weft_slow_consumers_total", "counter",
           "Connections cut off because their queued output passed --max-queued.",
           m->slow_consumers);
    metric(b, "weft_ping_timeouts_total", "counter", "Connections dropped for not answering pings.",
           m->ping_timeouts);
    metric(b, "weft_ws_rejected_total", "counter", "WebSocket upgrades refused.", m->ws_rejected);
    metric(b, "weft_http_requests_total", "counter", "HTTP requests to weftd's routes.",
           m->http_requests);

    {
        static const char *const limit_names[SRV_LIMIT_COUNT] = {
            [SRV_LIMIT_CONNS_PER_IP] = "connections_per_ip",
            [SRV_LIMIT_MESSAGES] = "messages_per_second",
            [SRV_LIMIT_RATE_CLOSE] = "messages_per_second_close",
            [SRV_LIMIT_DOC_BYTES] = "document_bytes",
            [SRV_LIMIT_DOCUMENTS] = "documents",
            [SRV_LIMIT_PENDING] = "pending",
        };
        srv__buf_printf(b, "# HELP weft_limited_total Requests and messages refused by a limit "
                           "(docs/server.md, Limits).\n# TYPE weft_limited_total counter\n");
        for (int i = 0; i < SRV_LIMIT_COUNT; i++)
            srv__buf_printf(b, "weft_limited_total{limit=\"%s\"} %llu\n", limit_names[i],
                            (unsigned long long)m->limited[i]);
    }

    srv__buf_printf(b, "# HELP weft_errors_total ERROR messages sent, by code.\n"
                       "# TYPE weft_errors_total counter\n");
    for (uint32_t code = 1; code < sizeof(m->errors) / sizeof(m->errors[0]); code++) {
        const char *name = proto_wire_error_name(code);
        if (strcmp(name, "unknown") == 0)
            continue;
        srv__buf_printf(b, "weft_errors_total{code=\"%s\"} %llu\n", name,
                        (unsigned long long)m->errors[code]);
        errors += m->errors[code];
    }

    srv__buf_printf(b, "# HELP weft_commit_seconds Latency of the store's write transactions "
                       "(begin to fsync).\n# TYPE weft_commit_seconds histogram\n");
    for (int i = 0; i < STORE_LATENCY_BUCKETS; i++)
        srv__buf_printf(b, "weft_commit_seconds_bucket{le=\"%g\"} %llu\n",
                        (double)st.commit_le_bound_us[i] / 1e6,
                        (unsigned long long)st.commit_le[i]);
    srv__buf_printf(b, "weft_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)st.commits);
    srv__buf_printf(b, "weft_commit_seconds_sum %g\n", (double)st.commit_us_sum / 1e6);
    srv__buf_printf(b, "weft_commit_seconds_count %llu\n", (unsigned long long)st.commits);
    metric(b, "weft_store_entries_written_total", "counter", "Log entries committed.",
           st.entries_written);
    metric(b, "weft_store_bytes_written_total", "counter", "Update bytes committed.",
           st.bytes_written);
    metric(b, "weft_store_snapshots_written_total", "counter", "Snapshots committed.",
           st.snapshots_written);
    metric(b, "weft_store_map_size_bytes", "gauge", "LMDB map size.", st.map_size);
    metric(b, "weft_store_queue_entries", "gauge", "Entries queued for the writer.",
           st.queue_entries);
    metric(b, "weft_store_failed", "gauge", "1 when the store has failed.", st.failed != 0);
    (void)errors;
}
