/* SPDX-License-Identifier: MIT */
/*
 * weft-load.c: load generator for weftd. Opens N WebSocket editors over D
 * documents (editor i edits document i % D), each a real CRDT replica that
 * joins with the protocol's HELLO/SYNC1/SYNC2 conversation and then types at a
 * fixed rate; one thread, epoll, non-blocking sockets, the frame encoder and
 * reader of tests/net. Prints one JSON line of results.
 *
 * Latency scheme. Every edit inserts a 16-byte marker "<SSSSSSQQQQQQQQ>"
 * (sender index and edit number in hex) into the editor's own replica, at a
 * marker boundary of its own text. Editors never apply each other's updates
 * (that keeps the generator lean with thousands of replicas), so their
 * operations only ever reference their own characters and no insert ever lands
 * inside a marker: the marker's bytes stay contiguous in every update the server
 * forwards (the update format keeps inserted text as plain UTF-8 runs, whether
 * the server relays, concatenates or merges updates). A receiver scans each
 * UPDATE it gets for markers and looks up the send time in the sender's ring of
 * timestamps (indexed by edit number, checked against it). Deliveries to the
 * sender itself (its own operations coming back inside a merged UPDATE) are not
 * counted. ACK latency (edit sent -> ACK, i.e. durable) is measured too.
 */
#define _GNU_SOURCE
#include "crdt.h"
#include "proto.h"
#include "wt_frame.h"
#include "wt_net.h"
#include "wt_weftd.h"
#include "wt_ws.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MARKER_LEN 16
#define RING 1024

typedef struct {
    wt_ws_t ws;
    int fd;
    uint32_t index, doc;
    crdt_doc_t *crdt;
    uint32_t markers; /* markers in the replica */
    uint64_t seq;     /* edits sent */
    uint64_t acked;
    int ready, dead, want_out;
    wt_buf_t out;
    struct {
        uint64_t seq; /* edit seq sent at us, kept at seq % RING */
        int64_t us;
    } sent[RING];
} editor_t;

/* Latencies in microseconds as a histogram: exact below 1,024 us, then 64
 * buckets per power of two (about 1.6 % wide). */
#define HIST_BUCKETS (1024 + 64 * 54)
typedef struct {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max;
} samples_t;

/* Large UPDATE frames are the same bytes for every editor of a document (one
 * broadcast): the markers found in one are kept with their send times, and a
 * receiver of the very same bytes (compared whole) reuses them. */
#define FCACHE 8
#define FCACHE_MIN 512
typedef struct {
    uint32_t sender;
    int64_t sent_us;
} hit_t;
typedef struct {
    uint8_t *bytes;
    size_t len, cap;
    hit_t *hits;
    size_t nhits, cap_hits;
    uint64_t used; /* for LRU */
} fcache_t;

static struct {
    int connections, docs, idle, spawn, verbose, anywhere;
    double rate, duration;
    const char *host, *weftd;
    int port;
    uint64_t seed;
} opt = {100, 10, 0, 0, 0, 0, 2.0, 10.0, "127.0.0.1", NULL, 0, 0x10ad};

static editor_t *eds;
static int ep;
static rng_t rng;
static samples_t lat, ack_lat;
static fcache_t fcache[FCACHE];
static uint64_t fcache_clock;
static uint64_t errors, edits, deliveries, acks;
static int measuring;
static int64_t t_start, t_end;

static void usage(FILE *f)
{
    fprintf(f, "usage: weft-load [options]\n"
               "  --connections N   editors (WebSocket connections), default 100\n"
               "  --docs D          documents; editor i edits document i %% D, default 10\n"
               "  --rate E          edits per second per editor, default 2\n"
               "  --duration T      seconds of measurement, default 10\n"
               "  --host H --port P weftd to load (default host 127.0.0.1)\n"
               "  --spawn           start a weftd (WEFTD_PATH) on a temporary data directory\n"
               "                    and report its RSS and CPU\n"
               "  --weftd PATH      the weftd binary --spawn starts (default: this build's)\n"
               "  --idle            hold the connections without editing (memory per idle editor)\n"
               "  --anywhere        inserts anywhere in the editor's own text, its start included\n"
               "                    (default: never before its first marker, typed before the\n"
               "                    window)\n"
               "  --seed S          PRNG seed (replica ids, positions, masks)\n"
               "  --verbose         progress on stderr\n"
               "  --help            this text\n"
               "Prints one JSON line: connections, docs, edits_per_s, deliveries_per_s,\n"
               "latency_p50_ms/p99_ms (edit sent -> received by the other editors),\n"
               "ack_p50_ms/p99_ms (edit sent -> durable ACK; percentiles from a histogram,\n"
               "exact below 1 ms, 1.6 %% wide buckets above), server_rss_mb, errors, cpu_s\n"
               "(this generator's CPU over the window and the 2 s tail), and with --spawn\n"
               "server_cpu_s and server_cpu_us_per_edit (weftd's utime+stime, all threads,\n"
               "over the same span; null without --spawn), server_sys_s (its stime part).\n");
}

static unsigned hist_bucket(uint64_t us)
{
    if (us < 1024)
        return (unsigned)us;
    unsigned e = 63 - (unsigned)__builtin_clzll(us); /* >= 10 */
    unsigned b = 1024 + (e - 10) * 64 + (unsigned)((us >> (e - 6)) & 63);
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The smallest latency of bucket b. */
static uint64_t hist_value(unsigned b)
{
    if (b < 1024)
        return b;
    unsigned e = (b - 1024) / 64 + 10, sub = (b - 1024) % 64;
    return (uint64_t)(64 + sub) << (e - 6);
}

static void sample_add(samples_t *s, int64_t us)
{
    if (us < 0)
        us = 0;
    s->count[hist_bucket((uint64_t)us)]++;
    s->n++;
    if ((uint64_t)us > s->max)
        s->max = (uint64_t)us;
}

static double pct_ms(samples_t *s, double p)
{
    if (s->n == 0)
        return -1;
    uint64_t rank = (uint64_t)(p * (double)(s->n - 1)), seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += s->count[b];
        if (seen > rank) {
            uint64_t v = hist_value(b);
            return (double)(v > s->max ? s->max : v) / 1000.0;
        }
    }
    return (double)s->max / 1000.0;
}

static void update_events(editor_t *e)
{
    struct epoll_event ev = {.events = EPOLLIN | (e->want_out ? EPOLLOUT : 0), .data.ptr = e};
    epoll_ctl(ep, EPOLL_CTL_MOD, e->fd, &ev);
}

static void kill_editor(editor_t *e, const char *why)
{
    if (e->dead)
        return;
    e->dead = 1;
    errors++;
    if (opt.verbose || errors <= 5)
        fprintf(stderr, "weft-load: editor %u: %s\n", e->index, why);
    epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
    wt_ws_abort(&e->ws);
}

static void flush(editor_t *e)
{
    while (e->out.len > 0) {
        ssize_t n = send(e->fd, e->out.data, e->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            wt_buf_consume(&e->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        kill_editor(e, "send failed");
        return;
    }
    int want = e->out.len > 0;
    if (want != e->want_out) {
        e->want_out = want;
        update_events(e);
    }
}

/* Queues a masked binary frame holding one encoded message. */
static void queue_msg(editor_t *e, const proto_buf_t *msg)
{
    wt_frame_encode(&e->out, WT_OP_BINARY, msg->base, msg->len, (uint32_t)rng_next(&rng), 0);
}

static void send_msg(editor_t *e, const proto_msg_t *m)
{
    proto_buf_t b = {0};
    if (proto_encode(m, &b) != 0)
        abort();
    queue_msg(e, &b);
    proto_buf_dispose(&b);
    flush(e);
}

static void edit(editor_t *e)
{
    char marker[MARKER_LEN + 1];
    uint64_t seq = e->seq + 1;
    snprintf(marker, sizeof marker, "<%06x%08x>", e->index & 0xffffff, (unsigned)seq);
    crdt_buf_t up = {0};
    /* Within the editor's own text. By default never at its start once it
     * has a marker: an insert there has no left origin, like typing at the
     * very start of the document, and with every editor doing so the engine's
     * integration walks all their concurrent inserts there (--anywhere). */
    size_t at = opt.anywhere || e->markers == 0
                    ? (size_t)MARKER_LEN * rng_below(&rng, e->markers + 1)
                    : (size_t)MARKER_LEN * (1 + rng_below(&rng, e->markers));
    if (crdt_doc_insert(e->crdt, at, marker, MARKER_LEN, &up) != 0)
        abort();
    e->markers++;
    e->seq = seq;
    e->sent[seq % RING].us = wt_now_us();
    e->sent[seq % RING].seq = seq;
    proto_buf_t b = {0};
    if (proto_encode_update(&b, seq, up.base, up.len) != 0)
        abort();
    queue_msg(e, &b);
    proto_buf_dispose(&b);
    crdt_buf_dispose(&up);
    if (measuring)
        edits++;
    flush(e);
}

static const int8_t hexdig[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* The value of n lowercase hex digits, or -1. */
static int64_t hexval(const uint8_t *p, int n)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        int d = hexdig[p[i]];
        if (d == 0)
            return -1;
        v = v * 16 + d - 1;
    }
    return v;
}

/* Calls found(ctx, sender, sent_us) for every marker in the bytes that names
 * an edit still in its sender's ring. */
static void find_markers(const uint8_t *p, size_t len, void (*found)(void *, uint32_t, int64_t),
                         void *ctx)
{
    const uint8_t *end = p + len;
    while (end - p >= MARKER_LEN) {
        const uint8_t *m = memchr(p, '<', (size_t)(end - p) - (MARKER_LEN - 1));
        if (m == NULL)
            break;
        int64_t sender, seq;
        if (m[MARKER_LEN - 1] == '>' && (sender = hexval(m + 1, 6)) >= 0 &&
            (seq = hexval(m + 7, 8)) >= 0 && sender < opt.connections) {
            editor_t *s = &eds[sender];
            if (s->sent[seq % RING].seq == (uint64_t)seq)
                found(ctx, (uint32_t)sender, s->sent[seq % RING].us);
            p = m + MARKER_LEN;
        } else {
            p = m + 1;
        }
    }
}

typedef struct {
    const editor_t *rcv;
    int64_t now;
} deliver_t;

/* One delivery to d->rcv of an edit sent at sent_us (its own are not counted). */
static void deliver(void *ctx, uint32_t sender, int64_t sent_us)
{
    const deliver_t *d = ctx;
    if (sender != d->rcv->index && (measuring || t_end)) {
        deliveries++;
        sample_add(&lat, d->now - sent_us);
    }
}

static void remember(void *ctx, uint32_t sender, int64_t sent_us)
{
    fcache_t *c = ctx;
    if (c->nhits == c->cap_hits) {
        c->cap_hits = c->cap_hits ? c->cap_hits * 2 : 64;
        if ((c->hits = realloc(c->hits, c->cap_hits * sizeof *c->hits)) == NULL)
            abort();
    }
    c->hits[c->nhits++] = (hit_t){sender, sent_us};
}

/* Finds every marker in an UPDATE's bytes and records its delivery latency. */
static void scan_markers(editor_t *rcv, const uint8_t *p, size_t len)
{
    deliver_t d = {rcv, wt_now_us()};
    fcache_t *c = NULL;
    if (len < FCACHE_MIN) {
        find_markers(p, len, deliver, &d);
        return;
    }
    for (int i = 0; i < FCACHE; i++) {
        fcache_t *k = &fcache[i];
        if (k->len == len && memcmp(k->bytes, p, len) == 0) {
            c = k;
            break;
        }
        if (c == NULL || k->used < c->used)
            c = k; /* the least recently used, replaced on a miss */
    }
    if (c->len != len || memcmp(c->bytes, p, len) != 0) {
        if (c->cap < len) {
            c->cap = len;
            free(c->bytes);
            if ((c->bytes = malloc(len)) == NULL)
                abort();
        }
        memcpy(c->bytes, p, len);
        c->len = len;
        c->nhits = 0;
        find_markers(p, len, remember, c);
    }
    c->used = ++fcache_clock;
    for (size_t i = 0; i < c->nhits; i++)
        deliver(&d, c->hits[i].sender, c->hits[i].sent_us);
}

static void on_message(editor_t *e, const uint8_t *data, size_t len)
{
    int type = proto_peek_type(data, len);
    if (type == PROTO_UPDATE) {
        scan_markers(e, data, len);
        return;
    }
    proto_msg_t m;
    if (proto_decode(data, len, &m) != 0) {
        kill_editor(e, "undecodable message");
        return;
    }
    switch (m.type) {
    case PROTO_SYNC1: {
        crdt_buf_t sv = {0};
        if (crdt_doc_state_vector(e->crdt, &sv) != 0)
            abort();
        proto_msg_t r = {.type = PROTO_SYNC1};
        r.u.sync1.sv = (proto_bytes_t){sv.base, sv.len};
        send_msg(e, &r);
        crdt_buf_dispose(&sv);
        break;
    }
    case PROTO_SYNC2:
        e->ready = 1;
        break;
    case PROTO_ACK: {
        int64_t now = wt_now_us();
        for (uint64_t s = e->acked + 1; s <= m.u.ack.seq; s++) {
            if (e->sent[s % RING].seq == s && (measuring || t_end))
                sample_add(&ack_lat, now - e->sent[s % RING].us);
        }
        if (m.u.ack.seq > e->acked)
            e->acked = m.u.ack.seq;
        acks++;
        break;
    }
    case PROTO_ERROR: {
        char msg[300];
        snprintf(msg, sizeof msg, "ERROR %s: %.*s", proto_wire_error_name(m.u.error.code),
                 (int)m.u.error.message.len, (const char *)m.u.error.message.base);
        errors++;
        if (errors <= 5)
            fprintf(stderr, "weft-load: editor %u: %s\n", e->index, msg);
        break;
    }
    default:
        break;
    }
}

static void on_readable(editor_t *e)
{
    wt_reader_t *rd = wt_ws_reader(&e->ws);
    for (;;) {
        uint8_t *p = wt_reader_space(rd, 65536);
        ssize_t n = recv(e->fd, p, 65536, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            kill_editor(e, n == 0 ? "connection ended" : "recv failed");
            return;
        }
        wt_reader_commit(rd, (size_t)n);
        wt_event_t ev;
        int k;
        while ((k = wt_reader_next(rd, &ev)) > 0) {
            if (k == WT_EV_MESSAGE) {
                on_message(e, ev.data, ev.len);
            } else if (k == WT_EV_PING) {
                wt_frame_encode(&e->out, WT_OP_PONG, ev.data, ev.len, (uint32_t)rng_next(&rng), 0);
                flush(e);
            } else if (k == WT_EV_CLOSE) {
                char why[64];
                snprintf(why, sizeof why, "close frame %d", ev.close_code);
                kill_editor(e, why);
                return;
            }
            if (e->dead)
                return;
        }
        if (k < 0) {
            kill_editor(e, "bad frame from the server");
            return;
        }
        if ((size_t)n < 65536)
            break;
    }
}

static void run_loop(int64_t until_us, int editing)
{
    struct epoll_event evs[1024];
    double interval_us = editing ? 1e6 / (opt.rate * opt.connections) : 0;
    static double next_due;
    static uint32_t rr;
    if (editing && next_due == 0)
        next_due = (double)wt_now_us();
    for (;;) {
        int64_t now = wt_now_us();
        if (now >= until_us)
            return;
        if (editing) {
            /* Round robin over the editors, evenly spaced; skipped turns are dropped. */
            int budget = opt.connections;
            while ((double)now >= next_due && budget-- > 0) {
                editor_t *e = &eds[rr];
                rr = (rr + 1) % (uint32_t)opt.connections;
                if (e->ready && !e->dead)
                    edit(e);
                next_due += interval_us;
            }
            if ((double)now - next_due > 1e6)
                next_due = (double)now; /* fell behind by a second: do not burst */
        }
        int64_t wait_us = until_us - now;
        if (editing && next_due - (double)now < (double)wait_us)
            wait_us = (int64_t)(next_due - (double)now);
        int timeout = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);
        int n = epoll_wait(ep, evs, 1024, timeout);
        for (int i = 0; i < n; i++) {
            editor_t *e = evs[i].data.ptr;
            if (e->dead)
                continue;
            if (evs[i].events & EPOLLOUT)
                flush(e);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(e);
        }
    }
}

/* utime + stime of every thread of process `pid` in seconds (fields 14 and 15
 * of /proc/<pid>/stat, which count all threads), or -1. */
static double proc_cpu_s(pid_t pid, double *sys_s)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces: start after its ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    *sys_s = (double)stime / (double)sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"connections", required_argument, 0, 'c'},
        {"docs", required_argument, 0, 'd'},
        {"rate", required_argument, 0, 'r'},
        {"duration", required_argument, 0, 't'},
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"spawn", no_argument, 0, 's'},
        {"weftd", required_argument, 0, 'w'},
        {"idle", no_argument, 0, 'i'},
        {"anywhere", no_argument, 0, 'a'},
        {"seed", required_argument, 0, 'S'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.connections = atoi(optarg);
            break;
        case 'd':
            opt.docs = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 't':
            opt.duration = atof(optarg);
            break;
        case 'H':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 's':
            opt.spawn = 1;
            break;
        case 'w':
            opt.weftd = optarg;
            break;
        case 'i':
            opt.idle = 1;
            break;
        case 'a':
            opt.anywhere = 1;
            break;
        case 'S':
            opt.seed = strtoull(optarg, NULL, 0);
            break;
        case 'v':
            opt.verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (opt.connections < 1 || opt.docs < 1 || opt.rate <= 0 || opt.duration <= 0 ||
        opt.connections > 0xffffff || (!opt.spawn && (opt.port <= 0 || opt.port > 65535))) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    rng_init(&rng, opt.seed);
    wt_weftd_t server = {0};
    server.binary = opt.weftd;
    if (opt.spawn) {
        /* Every simulated editor comes from 127.0.0.1: lift the per-IP cap. */
        static const char *const args[] = {"--max-connections-per-ip", "0", NULL};
        if (wt_weftd_start(&server, NULL, args, 10000) != 0) {
            fprintf(stderr, "weft-load: cannot start weftd\n");
            return 1;
        }
        opt.port = server.port;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    eds = calloc((size_t)opt.connections, sizeof *eds);
    if (eds == NULL || ep < 0)
        abort();
    int64_t t0 = wt_now_us();
    int failed = 0;
    for (int i = 0; i < opt.connections; i++) {
        editor_t *e = &eds[i];
        e->index = (uint32_t)i;
        e->doc = (uint32_t)(i % opt.docs);
        uint64_t replica;
        do {
            replica = rng_next(&rng) >> 12;
        } while (replica == 0);
        if (crdt_doc_new(replica, NULL, &e->crdt) != 0)
            abort();
        wt_ws_init(&e->ws, rng_next(&rng));
        char path[64];
        snprintf(path, sizeof path, "/ws/load-%u", e->doc);
        int rc = wt_ws_connect(&e->ws, opt.host, (uint16_t)opt.port, path, NULL, 10000);
        if (rc != 0) {
            if (failed++ < 5)
                fprintf(stderr, "weft-load: editor %d cannot connect: %s\n", i, wt_strerror(rc));
            e->dead = 1;
            errors++;
            continue;
        }
        e->fd = e->ws.fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
        epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev);
    }
    /* HELLOs only once every connection is open: the joins then come in a
     * burst the server takes many at a time (one write per editor per tick
     * for the presence of all the newcomers), not one join per tick while
     * the blocking connects of later editors wait: with thousands of editors
     * of one document that made joining take about a minute. */
    for (int i = 0; i < opt.connections; i++) {
        editor_t *e = &eds[i];
        if (e->dead)
            continue;
        proto_msg_t h = {.type = PROTO_HELLO};
        h.u.hello.version = PROTO_VERSION;
        h.u.hello.replica = crdt_doc_client(e->crdt);
        char name[32];
        snprintf(name, sizeof name, "load%d", i);
        h.u.hello.name = (proto_bytes_t){(const uint8_t *)name, strlen(name)};
        h.u.hello.color = (proto_bytes_t){(const uint8_t *)"#336699", 7};
        send_msg(e, &h);
        if ((i & 255) == 255)
            run_loop(wt_now_us(), 0); /* keep up with the welcomes */
    }
    /* Wait until every live editor has synced (at most 30 s). */
    int64_t join_deadline = wt_now_us() + 30000000;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < opt.connections; i++)
            pending += !eds[i].dead && !eds[i].ready;
        if (pending == 0 || wt_now_us() > join_deadline) {
            if (pending)
                fprintf(stderr, "weft-load: %d editors did not sync\n", pending);
            break;
        }
        run_loop(wt_now_us() + 10000, 0);
    }
    /* Warm-up (not measured): every editor types its first marker, which has
     * no origins (all of them land at the document's start together), and
     * waits for its ACK. */
    if (!opt.idle && !opt.anywhere) {
        for (int i = 0; i < opt.connections; i++) {
            if (eds[i].ready && !eds[i].dead)
                edit(&eds[i]);
            if ((i & 255) == 255)
                run_loop(wt_now_us(), 0);
        }
        int64_t warm_deadline = wt_now_us() + 30000000;
        for (;;) {
            int pending = 0;
            for (int i = 0; i < opt.connections; i++)
                pending += !eds[i].dead && eds[i].ready && eds[i].acked < 1;
            if (pending == 0 || wt_now_us() > warm_deadline) {
                if (pending)
                    fprintf(stderr, "weft-load: %d editors got no ACK of their first edit\n",
                            pending);
                break;
            }
            run_loop(wt_now_us() + 10000, 0);
        }
    }
    double connect_s = (double)(wt_now_us() - t0) / 1e6;
    if (opt.verbose)
        fprintf(stderr, "weft-load: %d editors joined in %.2f s\n", opt.connections, connect_s);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double srv_sys0 = 0, srv_sys1 = 0;
    double srv_cpu0 = opt.spawn ? proc_cpu_s(server.pid, &srv_sys0) : -1;
    measuring = 1;
    t_start = wt_now_us();
    run_loop(t_start + (int64_t)(opt.duration * 1e6), !opt.idle);
    t_end = wt_now_us();
    measuring = 0;
    long rss_kb = opt.spawn ? wt_proc_rss_kb(server.pid) : -1;
    /* Collect what is still in flight (deliveries and ACKs of edits made in the window). */
    run_loop(t_end + 2000000, 0);
    /* The server's CPU over the window and the tail that serves its edits
     * (the tail is idle but for them). */
    double srv_cpu1 = opt.spawn ? proc_cpu_s(server.pid, &srv_sys1) : -1;
    char srv_cpu[32] = "null", srv_us[32] = "null", srv_sys[32] = "null";
    if (srv_cpu0 >= 0 && srv_cpu1 >= 0) {
        snprintf(srv_cpu, sizeof srv_cpu, "%.2f", srv_cpu1 - srv_cpu0);
        snprintf(srv_sys, sizeof srv_sys, "%.2f", srv_sys1 - srv_sys0);
        if (edits > 0)
            snprintf(srv_us, sizeof srv_us, "%.1f", (srv_cpu1 - srv_cpu0) * 1e6 / (double)edits);
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                   (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double secs = (double)(t_end - t_start) / 1e6;
    char rss[32] = "null";
    if (rss_kb >= 0)
        snprintf(rss, sizeof rss, "%.1f", rss_kb / 1024.0);
    int live = 0;
    for (int i = 0; i < opt.connections; i++)
        live += !eds[i].dead;
    /* Each edit should reach the other editors of its document. */
    double peers = (double)opt.connections / opt.docs - 1;
    printf("{\"connections\":%d,\"docs\":%d,\"rate\":%g,\"duration_s\":%.2f,\"idle\":%s,"
           "\"live_connections\":%d,\"connect_s\":%.2f,\"edits\":%llu,\"edits_per_s\":%.1f,"
           "\"deliveries\":%llu,\"deliveries_per_s\":%.1f,\"expected_deliveries_per_s\":%.1f,"
           "\"latency_p50_ms\":%.2f,\"latency_p99_ms\":%.2f,\"latency_max_ms\":%.2f,"
           "\"ack_p50_ms\":%.2f,\"ack_p99_ms\":%.2f,\"server_rss_mb\":%s,"
           "\"errors\":%llu,\"cpu_s\":%.2f,\"server_cpu_s\":%s,\"server_cpu_us_per_edit\":%s,"
           "\"server_sys_s\":%s}\n",
           opt.connections, opt.docs, opt.rate, secs, opt.idle ? "true" : "false", live, connect_s,
           (unsigned long long)edits, (double)edits / secs, (unsigned long long)deliveries,
           (double)deliveries / secs, (double)edits / secs * peers, pct_ms(&lat, 0.50),
           pct_ms(&lat, 0.99), lat.n ? (double)lat.max / 1000.0 : -1, pct_ms(&ack_lat, 0.50),
           pct_ms(&ack_lat, 0.99), rss, (unsigned long long)errors, cpu_s, srv_cpu, srv_us,
           srv_sys);
    fflush(stdout);
    for (int i = 0; i < opt.connections; i++) {
        wt_ws_dispose(&eds[i].ws);
        wt_buf_dispose(&eds[i].out);
        crdt_doc_free(eds[i].crdt);
    }
    free(eds);
    for (int i = 0; i < FCACHE; i++) {
        free(fcache[i].bytes);
        free(fcache[i].hits);
    }
    close(ep);
    if (opt.spawn) {
        int st = wt_weftd_stop(&server, 10000);
        if (st != 0)
            fprintf(stderr, "weft-load: weftd exited with %d\n", st);
        wt_weftd_cleanup(&server);
    }
    return 0;
}
