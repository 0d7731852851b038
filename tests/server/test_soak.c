/* SPDX-License-Identifier: MIT */
/*
 * test_soak.c: a bounded soak of a real weftd with churning connections. Each
 * wave starts 1 to WAVE clients that connect, join (HELLO, sync), edit, half of
 * the editors send presence, and then go away in every way a client can: clean
 * close, drop without a close frame (acknowledged or with updates in flight),
 * drop in the middle of a frame, drop after the first fragment of a message,
 * drop after HELLO before the sync ends, drop right after the upgrade, and
 * plain TCP clients that send part of an upgrade request. Each EPOCH_WAVES
 * waves use N_DOCS new documents (so documents stay small and memory use has
 * no reason to grow with the run's length) and sometimes an older one, which
 * by then is unloaded (--unload-after 1) and is loaded again from the store.
 *
 * Checked, with weftd idle (no connections and no documents loaded, polled on
 * /metrics) after 400 warm-up waves and again after 1600 more (100 and 900
 * under AddressSanitizer; WEFT_SOAK_WAVES overrides the second number): the
 * number of open file descriptors is exactly the same; the anonymous resident memory
 * (RssAnon) grew by less than RSS_MARGIN_KB (not under AddressSanitizer, where
 * RSS says nothing); every upgrade made is counted once in
 * weft_connections_total; the store has not failed; a clean SIGTERM stop exits
 * 0 (under the sanitizer build that includes LeakSanitizer's report at exit).
 *
 * A second test does the same over TLS, 40 warm-up waves and 300 (150 under
 * AddressSanitizer; WEFT_SOAK_TLS_WAVES overrides); its plain TCP clients send
 * part of a TLS record holding a ClientHello instead.
 *
 * The seed is printed; WEFT_SEED=<n> repeats the choices. WEFT_SOAK_WEFTD
 * runs another program as weftd (below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wt_editor.h"
#include "wt_fixture.h"
#include "wt_http.h"
#include "wt_net.h"
#include "wt_proto.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wt_asan.h"

#define TIMEOUT 10000
#define WAVE 8
#define N_DOCS 4       /* documents of one epoch */
#define EPOCH_WAVES 50 /* waves of one epoch */
#define RSS_MARGIN_KB (8 * 1024)
#define DEFAULT_SEED 0x50a4c0de5ULL

/* How a client of a wave goes away. */
enum {
    END_CLOSE,         /* editor: close frame 1000 */
    END_DROP_ACKED,    /* editor: every update acknowledged, then the socket is closed */
    END_DROP_INFLIGHT, /* editor: updates just sent, then the socket is closed */
    END_MID_FRAME,     /* editor: part of a frame header or payload, then closed */
    END_MID_MESSAGE,   /* editor: the first fragment of a message, then closed */
    END_MID_JOIN,      /* raw client: HELLO sent, then closed before the sync */
    END_AFTER_UPGRADE, /* raw client: upgraded, then closed */
    END_HALF_REQUEST,  /* raw TCP: half of an upgrade request, then closed */
    END_KINDS
};

typedef struct {
    wt_fixture_t *fx;
    rng_t rng;
    wt_editor_t eds[WAVE];
    int live[WAVE];
    wt_ws_t raw[WAVE];
    int raw_live[WAVE];
    int tls;           /* 1: weftd serves TLS, every client speaks it */
    uint64_t wave;     /* waves started */
    uint64_t upgrades; /* successful WebSocket upgrades made */
    uint64_t ends[END_KINDS];
} soak_t;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return dflt;
    return strtoull(s, NULL, 0);
}

static int setup_common(void **state, int tls)
{
    uint64_t seed = env_u64("WEFT_SEED", DEFAULT_SEED);
    print_message("test_soak%s: seed %" PRIu64 " (WEFT_SEED=%" PRIu64 " repeats it)\n",
                  tls ? " (TLS)" : "", seed, seed);
    static const char *const args[] = {"--unload-after", "1", NULL};
    soak_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->tls = tls;
    s->fx = tls ? wt_fixture_new_tls(seed, args) : wt_fixture_new(seed, args);
    if (s->fx == NULL) {
        free(s);
        return -1;
    }
    rng_init(&s->rng, seed ^ 0x50a);
    /* WEFT_SOAK_WEFTD: another program to run as weftd, e.g. a script that execs
     * valgrind with weftd and "$@" (it must print weftd's first stdout line). */
    const char *binary = getenv("WEFT_SOAK_WEFTD");
    if (binary != NULL && *binary != '\0') {
        wt_weftd_kill(&s->fx->server);
        s->fx->server.binary = binary;
        if (wt_weftd_restart(&s->fx->server, 6 * TIMEOUT) != 0) {
            wt_fixture_free(s->fx);
            free(s);
            return -1;
        }
    }
    *state = s;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, 0);
}

static int setup_tls(void **state)
{
    return setup_common(state, 1);
}

static void release_all(soak_t *s)
{
    for (size_t i = 0; i < WAVE; i++) {
        if (s->live[i]) {
            wt_editor_dispose(&s->eds[i]);
            s->live[i] = 0;
        }
        if (s->raw_live[i]) {
            wt_ws_dispose(&s->raw[i]);
            s->raw_live[i] = 0;
        }
    }
}

static int teardown(void **state)
{
    soak_t *s = *state;
    release_all(s);
    wt_fixture_free(s->fx);
    free(s);
    return 0;
}

/* Mostly one of the current epoch's documents, sometimes one of an earlier
 * epoch (unloaded by then: loaded again from the store). Documents stay small,
 * so memory use does not grow with the run's length. */
static void doc_name(soak_t *s, char *out, size_t cap)
{
    uint64_t epoch = s->wave / EPOCH_WAVES;
    if (epoch > 0 && rng_below(&s->rng, 8) == 0)
        epoch = rng_below(&s->rng, (uint32_t)epoch);
    snprintf(out, cap, "soak-%" PRIu64 "-%" PRIu32, epoch, rng_below(&s->rng, N_DOCS));
}

/* A small random edit of the editor's view; the text stays short. */
static void edit(soak_t *s, wt_editor_t *ed)
{
    size_t len = crdt_doc_length(ed->doc);
    if (len > 200) {
        size_t n = 1 + rng_below(&s->rng, 100);
        assert_int_equal(wt_editor_delete(ed, rng_below(&s->rng, (uint32_t)(len - n + 1)), n, NULL),
                         0);
        return;
    }
    static const char *const words[] = {"soak ", "churn ", "ü ", "é", "x"};
    assert_int_equal(wt_editor_insert(ed, rng_below(&s->rng, (uint32_t)len + 1),
                                      words[rng_below(&s->rng, 5)], NULL),
                     0);
}

/* Editors: join, edit, maybe presence. */
static void start_editor(soak_t *s, size_t i)
{
    char doc[32], who[16];
    doc_name(s, doc, sizeof doc);
    snprintf(who, sizeof who, "s%zu", i);
    wt_editor_t *ed = &s->eds[i];
    assert_int_equal(wt_editor_init(ed, "127.0.0.1", s->fx->server.port, doc,
                                    wt_fixture_replica(s->fx), who, "#aa3377", rng_next(&s->rng)),
                     0);
    if (s->tls)
        ed->ws.tls_config = &s->fx->tls;
    s->live[i] = 1;
    int rc = wt_editor_join(ed, TIMEOUT);
    if (rc != 0)
        fail_msg("editor cannot join %s: %s", doc, wt_strerror(rc));
    s->upgrades++;
    uint32_t n = 1 + rng_below(&s->rng, 4);
    for (uint32_t k = 0; k < n; k++)
        edit(s, ed);
    if (rng_below(&s->rng, 2) == 0) {
        size_t len = crdt_doc_length(ed->doc);
        size_t a = rng_below(&s->rng, (uint32_t)len + 1), h = rng_below(&s->rng, (uint32_t)len + 1);
        assert_int_equal(wt_editor_set_presence(ed, a, h), 0);
    }
}

/* Raw clients: upgrade (and HELLO for END_MID_JOIN). */
static void start_raw(soak_t *s, size_t i, int kind)
{
    char path[48], doc[32];
    doc_name(s, doc, sizeof doc);
    snprintf(path, sizeof path, "/ws/%s", doc);
    wt_ws_t *ws = &s->raw[i];
    wt_ws_init(ws, rng_next(&s->rng));
    if (s->tls)
        ws->tls_config = &s->fx->tls;
    s->raw_live[i] = 1;
    int rc = wt_ws_connect(ws, "127.0.0.1", s->fx->server.port, path, NULL, TIMEOUT);
    if (rc != 0)
        fail_msg("raw client cannot upgrade %s: %s", path, wt_strerror(rc));
    s->upgrades++;
    if (kind == END_MID_JOIN)
        assert_int_equal(wt_proto_send_hello(ws, 1, wt_fixture_replica(s->fx), "raw", "#123456"),
                         0);
}

static void half_request(soak_t *s)
{
    char doc[32], req[512];
    doc_name(s, doc, sizeof doc);
    int n = snprintf(req, sizeof req,
                     "GET /ws/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     doc);
    if (s->tls) {
        /* The start of a TLS record holding a ClientHello, then nothing. */
        static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03,
                                        0x03, 0x5e, 0x1f, 0x42, 0x77, 0x08, 0x99, 0xa0, 0x3c, 0x61};
        memcpy(req, hello, sizeof hello);
        n = (int)sizeof hello;
    }
    int fd = wt_tcp_connect("127.0.0.1", s->fx->server.port, TIMEOUT);
    assert_true(fd >= 0);
    size_t part = 1 + rng_below(&s->rng, (uint32_t)n - 1);
    assert_int_equal(wt_write_all(fd, req, part, TIMEOUT), 0);
    close(fd);
}

/* Ends editor i in the way `kind` says. */
static void end_editor(soak_t *s, size_t i, int kind)
{
    wt_editor_t *ed = &s->eds[i];
    switch (kind) {
    case END_CLOSE:
        assert_int_equal(wt_editor_wait_acked(ed, TIMEOUT), 0);
        wt_editor_close(ed, TIMEOUT);
        break;
    case END_DROP_ACKED:
        assert_int_equal(wt_editor_wait_acked(ed, TIMEOUT), 0);
        wt_editor_drop(ed);
        break;
    case END_DROP_INFLIGHT:
        wt_editor_drop(ed);
        break;
    case END_MID_FRAME: {
        uint8_t payload[300];
        for (size_t k = 0; k < sizeof payload; k++)
            payload[k] = (uint8_t)rng_next(&s->rng);
        wt_buf_t frame = {0};
        wt_frame_encode(&frame, WT_OP_BINARY, payload, 1 + rng_below(&s->rng, sizeof payload),
                        (uint32_t)rng_next(&s->rng), 0);
        size_t part = 1 + rng_below(&s->rng, (uint32_t)frame.len - 1);
        assert_int_equal(wt_ws_send_raw(&ed->ws, frame.data, part), 0);
        wt_buf_dispose(&frame);
        wt_editor_drop(ed);
        break;
    }
    case END_MID_MESSAGE: {
        uint8_t payload[64];
        for (size_t k = 0; k < sizeof payload; k++)
            payload[k] = (uint8_t)rng_next(&s->rng);
        assert_int_equal(wt_ws_send_frame(&ed->ws, WT_OP_BINARY, payload,
                                          1 + rng_below(&s->rng, sizeof payload), WT_FRAME_NOFIN),
                         0);
        wt_editor_drop(ed);
        break;
    }
    default:
        fail_msg("kind %d is not an editor's", kind);
    }
    s->ends[kind]++;
    wt_editor_dispose(ed);
    s->live[i] = 0;
}

/* One wave: up to WAVE clients start, live together for a moment, then end. */
static void wave(soak_t *s)
{
    int kinds[WAVE];
    s->wave++;
    size_t n = 1 + rng_below(&s->rng, WAVE);
    for (size_t i = 0; i < n; i++) {
        kinds[i] = (int)rng_below(&s->rng, END_KINDS);
        if (kinds[i] <= END_MID_MESSAGE)
            start_editor(s, i);
        else if (kinds[i] != END_HALF_REQUEST)
            start_raw(s, i, kinds[i]);
    }
    /* Let the updates and presence go round. */
    wt_editor_t *eds[WAVE];
    size_t ne = 0;
    for (size_t i = 0; i < n; i++)
        if (s->live[i])
            eds[ne++] = &s->eds[i];
    wt_editors_pump(eds, ne, 1 + (int)rng_below(&s->rng, 5));
    for (size_t i = 0; i < n; i++) {
        if (kinds[i] <= END_MID_MESSAGE) {
            end_editor(s, i, kinds[i]);
        } else if (kinds[i] == END_HALF_REQUEST) {
            half_request(s);
            s->ends[kinds[i]]++;
        } else {
            wt_ws_abort(&s->raw[i]);
            wt_ws_dispose(&s->raw[i]);
            s->raw_live[i] = 0;
            s->ends[kinds[i]]++;
        }
    }
}

static double metric(soak_t *s, const char *series)
{
    char *m = wt_fixture_metrics(s->fx);
    assert_non_null(m);
    double v = -1;
    if (!wt_metric(m, series, &v))
        fail_msg("no %s in /metrics", series);
    free(m);
    return v;
}

/* Lists the open descriptors of weftd (for a failure message). */
static void print_fds(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[384], target[256];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        print_message("  fd %s -> %s\n", de->d_name, target);
    }
    closedir(d);
}

/*
 * Waits until weftd is idle: no WebSocket connection and no document loaded
 * (as /metrics says), then until its descriptor count is `want` (< 0: until
 * it stops changing). Returns the count.
 */
static int quiesce(soak_t *s, int want)
{
    int64_t deadline = wt_now_ms() + 3 * TIMEOUT;
    while (metric(s, "weft_connections") != 0 || metric(s, "weft_documents_loaded") != 0) {
        if (wt_ms_left(deadline) == 0)
            fail_msg("weftd still has %.0f connections and %.0f documents loaded",
                     metric(s, "weft_connections"), metric(s, "weft_documents_loaded"));
        usleep(50 * 1000);
    }
    /* The /metrics requests' own connections close when weftd reads their end. */
    pid_t pid = s->fx->server.pid;
    int fds = wt_proc_fd_count(pid), same = 0;
    deadline = wt_now_ms() + TIMEOUT;
    while (wt_ms_left(deadline) > 0) {
        usleep(20 * 1000);
        int now = wt_proc_fd_count(pid);
        if (want >= 0 ? now == want : (now == fds && ++same == 10))
            return now;
        if (now != fds)
            same = 0;
        fds = now;
    }
    print_message("weftd's descriptors (wanted %d, has %d):\n", want, fds);
    print_fds(pid);
    return fds;
}

/* `warmup` waves, then the baseline, then `waves` more. The allocator's
 * footprint grows fastest at first (fragmentation), so a longer warm-up makes
 * the RSS bound a sharper test of weftd's own memory. */
static void soak(soak_t *s, uint64_t warmup, uint64_t waves)
{
    pid_t pid = s->fx->server.pid;
    int fds_start = wt_proc_fd_count(pid);
    assert_true(fds_start > 0);
    double conns_total0 = metric(s, "weft_connections_total");

    for (uint64_t w = 0; w < warmup; w++)
        wave(s);
    int fds_warm = quiesce(s, -1);
    long anon_warm = wt_proc_status_kb(pid, "RssAnon:"), rss_warm = wt_proc_rss_kb(pid);
    print_message("test_soak%s: fds %d at start, %d after %" PRIu64
                  " warm-up waves; RssAnon %ld KiB, VmRSS "
                  "%ld KiB\n",
                  s->tls ? " (TLS)" : "", fds_start, fds_warm, warmup, anon_warm, rss_warm);

    int64_t t0 = wt_now_ms();
    for (uint64_t w = 0; w < waves; w++)
        wave(s);
    int64_t ms = wt_now_ms() - t0;
    int fds_end = quiesce(s, fds_warm);
    long anon_end = wt_proc_status_kb(pid, "RssAnon:"), rss_end = wt_proc_rss_kb(pid);
    double conns_total = metric(s, "weft_connections_total") - conns_total0;
    print_message("test_soak%s: %" PRIu64 " waves in %.1f s, %" PRIu64 " upgrades (close %" PRIu64
                  ", drop acked %" PRIu64 ", drop in flight %" PRIu64 ", mid-frame %" PRIu64
                  ", mid-message %" PRIu64 ", mid-join %" PRIu64 ", after upgrade %" PRIu64
                  "; half requests %" PRIu64 ")\n",
                  s->tls ? " (TLS)" : "", waves, (double)ms / 1000, s->upgrades, s->ends[END_CLOSE],
                  s->ends[END_DROP_ACKED], s->ends[END_DROP_INFLIGHT], s->ends[END_MID_FRAME],
                  s->ends[END_MID_MESSAGE], s->ends[END_MID_JOIN], s->ends[END_AFTER_UPGRADE],
                  s->ends[END_HALF_REQUEST]);
    print_message("test_soak%s: at the end fds %d, RssAnon %ld KiB (%+ld), VmRSS %ld KiB (%+ld)\n",
                  s->tls ? " (TLS)" : "", fds_end, anon_end, anon_end - anon_warm, rss_end,
                  rss_end - rss_warm);

    assert_int_equal(fds_end, fds_warm);
    assert_true(conns_total == (double)s->upgrades);
    assert_true(metric(s, "weft_store_failed") == 0);
    const char *other = getenv("WEFT_SOAK_WEFTD");
    if (!WT_ASAN && (other == NULL || *other == '\0')) {
        assert_true(anon_warm > 0 && anon_end > 0);
        if (anon_end > anon_warm + RSS_MARGIN_KB)
            fail_msg("weftd's anonymous memory grew from %ld to %ld KiB", anon_warm, anon_end);
    }
    assert_int_equal(wt_weftd_stop(&s->fx->server, 3 * TIMEOUT), 0);
}

static void test_soak_churning_connections(void **state)
{
    soak(*state, WT_ASAN ? 100 : 400, env_u64("WEFT_SOAK_WAVES", WT_ASAN ? 900 : 1600));
}

/* The same over TLS: handshakes, wss:// drops and half ClientHellos. */
static void test_soak_churning_tls_connections(void **state)
{
    soak(*state, 40, env_u64("WEFT_SOAK_TLS_WAVES", WT_ASAN ? 150 : 300));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_soak_churning_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soak_churning_tls_connections, setup_tls, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
