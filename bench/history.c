/* SPDX-License-Identifier: MIT */
/*
 * history-bench: measures the storage side of document history on a long
 * real editing session.
 *
 *     history-bench [--edits N] [--samples N] [--sync] [TRACE.json.gz]
 *
 * It replays a sequential editing trace (default
 * ../shared/traces/automerge-paper.json.gz, relative to the working
 * directory) with tests/support/replay.c, keeping every edit's update bytes,
 * and builds a store in a temporary directory with the first N (default
 * 250,000) of them: one store_append_ex() per edit, with two authors taking
 * turns in bursts of 50..3000 edits, snapshot_every 1000 and, unless --sync,
 * no_sync (the fsync cost is not what this measures). Then it measures, each
 * timed separately with CLOCK_MONOTONIC:
 *
 *   build_ms           queueing every edit plus store_flush() (all commits and
 *                      every snapshot they call for); queue_ms is the queueing
 *   load_head_ms       store_doc_load() of the whole document
 *   load_at_*_ms       store_doc_load_at() at `samples` (default 200) random
 *                      seqs: p50, p99, max
 *   text_*_ms          crdt_doc_text() of those versions: p50, p99, max
 *   version_*_ms       the two together (what a version request costs)
 *   rev_page_*_ms      store_log_read_rev() pages of 1000 entries from 20 random
 *                      starting seqs: p50, max
 *   versions_ok        how many sampled versions equal the model (a replay of
 *                      the first seq updates on a fresh document)
 *
 * and prints one JSON line. It never asserts: a failure is reported in an
 * "error" field and the exit status is 1. The temporary store is removed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crdt.h"
#include "replay.h"
#include "store.h"
#include "test_rng.h"
#include "trace.h"

#define DEFAULT_TRACE "../shared/traces/automerge-paper.json.gz"
#define PAGE 1000
#define PAGES 20

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n sorted samples, nearest rank. */
static double quantile(const double *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return v[i - 1];
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

typedef struct {
    size_t n;
} count_t;

static int count_entry(void *ctx, uint64_t seq, const store_entry_t *e)
{
    count_t *c = ctx;
    (void)seq;
    (void)e;
    return ++c->n == PAGE;
}

/* The text of a document (malloc'd, NUL-terminated), or NULL. */
static char *text_of(const crdt_doc_t *doc)
{
    crdt_buf_t t = {0};
    if (crdt_doc_text(doc, &t) != 0)
        return NULL;
    char *s = malloc(t.len + 1);
    if (s) {
        memcpy(s, t.base, t.len);
        s[t.len] = 0;
    }
    crdt_buf_dispose(&t);
    return s;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_TRACE;
    size_t edits = 250000, samples = 200;
    int sync = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--edits") == 0 && i + 1 < argc)
            edits = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            samples = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--sync") == 0)
            sync = 1;
        else if (argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: history-bench [--edits N] [--samples N] [--sync] [TRACE]\n");
            return 2;
        }
    }
    if (samples < 1)
        samples = 1;

    char err[512] = "";
    trace_t *t = NULL;
    replay_result_t res;
    memset(&res, 0, sizeof res);
    store_t *s = NULL;
    char dir[] = "/tmp/weft-history-bench-XXXXXX";
    int have_dir = 0;
    double *load_ms = calloc(samples, sizeof *load_ms);
    double *text_ms = calloc(samples, sizeof *text_ms);
    double *version_ms = calloc(samples, sizeof *version_ms);
    uint64_t *seqs = calloc(samples, sizeof *seqs);
    char **texts = calloc(samples, sizeof *texts);
    double rev_ms[PAGES];
    double queue_ms = 0, build_ms = 0, load_head_ms = 0;
    uint64_t replayed_max = 0, replayed_sum = 0;
    size_t versions_ok = 0, head_bytes = 0;
    off_t store_bytes = 0;
    store_stats_t st;
    memset(&st, 0, sizeof st);
    int rc;

    if (!load_ms || !text_ms || !version_ms || !seqs || !texts) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (trace_load(path, &t, err, sizeof err) != 0)
        goto out;
    if (t->concurrent) {
        snprintf(err, sizeof err, "%s: a sequential trace is needed", path);
        goto out;
    }
    if ((rc = replay_trace(t, NULL, 1, &res)) != 0) {
        snprintf(err, sizeof err, "replay: %s", res.msg);
        goto out;
    }
    if (edits > res.nupdates)
        edits = res.nupdates;
    if (!mkdtemp(dir)) {
        snprintf(err, sizeof err, "mkdtemp failed");
        goto out;
    }
    have_dir = 1;
    store_options_t o = {.snapshot_every = 1000, .no_sync = !sync};
    if ((rc = store_open(dir, &o, &s)) != 0) {
        snprintf(err, sizeof err, "store_open: %s", store_strerror(rc));
        goto out;
    }

    /* Build: two authors in bursts; an edit every 150 ms, a 2-minute pause between bursts. */
    static const struct {
        uint64_t replica;
        const char *name;
    } authors[2] = {{0xA11CE5, "Ada"}, {0xB0B, "Bob"}};
    rng_t r;
    rng_init(&r, 0x41570b1eu);
    uint64_t time_ms = 1764070000000ull;
    size_t burst_left = 0;
    int who = 1;
    double t0 = now_ms();
    for (size_t i = 0; i < edits; i++) {
        if (burst_left == 0) {
            who = 1 - who;
            burst_left = 50 + rng_below(&r, 2951);
            time_ms += 120000;
        }
        burst_left--;
        time_ms += 150;
        store_append_t a = {"paper",
                            5,
                            res.updates[i].base,
                            res.updates[i].len,
                            authors[who].replica,
                            authors[who].name,
                            strlen(authors[who].name),
                            time_ms,
                            0};
        uint64_t seq = 0;
        if (store_append_ex(s, &a, &seq) == 0 || seq != i + 1) {
            snprintf(err, sizeof err, "store_append_ex failed at edit %zu (seq %llu)", i,
                     (unsigned long long)seq);
            goto out;
        }
    }
    queue_ms = now_ms() - t0;
    if ((rc = store_flush(s)) != 0) {
        snprintf(err, sizeof err, "store_flush: %s", store_strerror(rc));
        goto out;
    }
    build_ms = now_ms() - t0;
    store_stats(s, &st);
    char file[600];
    struct stat sb;
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    if (stat(file, &sb) == 0)
        store_bytes = sb.st_size;

    /* The whole document. */
    crdt_doc_t *doc = NULL;
    t0 = now_ms();
    if ((rc = store_doc_load(s, "paper", 5, 9, &doc, NULL)) != 0) {
        snprintf(err, sizeof err, "store_doc_load: %s", store_strerror(rc));
        goto out;
    }
    load_head_ms = now_ms() - t0;
    head_bytes = crdt_doc_utf8_length(doc);
    crdt_doc_free(doc);

    /* Versions at random seqs. */
    for (size_t i = 0; i < samples; i++)
        seqs[i] = 1 + rng_below(&r, (uint32_t)edits);
    for (size_t i = 0; i < samples; i++) {
        store_load_info_t info;
        t0 = now_ms();
        rc = store_doc_load_at(s, "paper", 5, 9, seqs[i], &doc, &info);
        double t1 = now_ms();
        if (rc != 0) {
            snprintf(err, sizeof err, "store_doc_load_at(%llu): %s", (unsigned long long)seqs[i],
                     store_strerror(rc));
            goto out;
        }
        texts[i] = text_of(doc);
        double t2 = now_ms();
        crdt_doc_free(doc);
        if (!texts[i]) {
            snprintf(err, sizeof err, "crdt_doc_text failed");
            goto out;
        }
        load_ms[i] = t1 - t0;
        text_ms[i] = t2 - t1;
        version_ms[i] = t2 - t0;
        replayed_sum += info.entries_replayed;
        if (info.entries_replayed > replayed_max)
            replayed_max = info.entries_replayed;
    }

    /* Pages of the log, newest first. */
    for (int p = 0; p < PAGES; p++) {
        uint64_t from = p == 0 ? UINT64_MAX : PAGE + rng_below(&r, (uint32_t)(edits - PAGE));
        count_t c = {0};
        t0 = now_ms();
        rc = store_log_read_rev(s, "paper", 5, from, count_entry, &c);
        rev_ms[p] = now_ms() - t0;
        if (rc != 0 || c.n != PAGE) {
            snprintf(err, sizeof err, "store_log_read_rev: %s (%zu entries)", store_strerror(rc),
                     c.n);
            goto out;
        }
    }

    /* Check the sampled versions against a model: one replay in seq order. */
    {
        uint64_t *order = malloc(samples * sizeof *order);
        crdt_doc_t *model = NULL;
        if (!order || crdt_doc_new(77, NULL, &model) != 0) {
            free(order);
            snprintf(err, sizeof err, "out of memory");
            goto out;
        }
        memcpy(order, seqs, samples * sizeof *order);
        qsort(order, samples, sizeof *order, cmp_u64);
        size_t applied = 0;
        for (size_t k = 0; k < samples; k++) {
            if (k > 0 && order[k] == order[k - 1])
                continue; /* each distinct seq once; every sample at it is compared */
            while (applied < order[k] && crdt_doc_apply_update(model, res.updates[applied].base,
                                                               res.updates[applied].len) == 0)
                applied++;
            char *want = applied == order[k] ? text_of(model) : NULL;
            for (size_t i = 0; want && i < samples; i++)
                if (seqs[i] == order[k] && strcmp(texts[i], want) == 0)
                    versions_ok++;
            free(want);
        }
        crdt_doc_free(model);
        free(order);
    }

out:;
    int ok = err[0] == 0;
    if (ok) {
        qsort(load_ms, samples, sizeof *load_ms, cmp_double);
        qsort(text_ms, samples, sizeof *text_ms, cmp_double);
        qsort(version_ms, samples, sizeof *version_ms, cmp_double);
        qsort(rev_ms, PAGES, sizeof *rev_ms, cmp_double);
        printf("{\"trace\":\"%s\",\"edits\":%zu,\"snapshot_every\":1000,\"sync\":%s,"
               "\"build_ms\":%.0f,\"queue_ms\":%.0f,\"appends_per_s\":%.0f,"
               "\"commits\":%llu,\"snapshots\":%llu,\"snapshot_bytes\":%llu,"
               "\"store_bytes\":%lld,\"head_utf8_bytes\":%zu,\"load_head_ms\":%.2f,"
               "\"samples\":%zu,\"load_at_p50_ms\":%.2f,\"load_at_p99_ms\":%.2f,"
               "\"load_at_max_ms\":%.2f,\"text_p50_ms\":%.2f,\"text_p99_ms\":%.2f,"
               "\"text_max_ms\":%.2f,\"version_p50_ms\":%.2f,\"version_p99_ms\":%.2f,"
               "\"version_max_ms\":%.2f,\"replayed_avg\":%.0f,\"replayed_max\":%llu,"
               "\"rev_page\":%d,\"rev_page_p50_ms\":%.3f,\"rev_page_max_ms\":%.3f,"
               "\"versions_ok\":%zu}\n",
               t->name, edits, sync ? "true" : "false", build_ms, queue_ms,
               (double)edits / (build_ms / 1e3), (unsigned long long)st.commits,
               (unsigned long long)st.snapshots_written, (unsigned long long)st.snapshot_bytes,
               (long long)store_bytes, head_bytes, load_head_ms, samples,
               quantile(load_ms, samples, 0.5), quantile(load_ms, samples, 0.99),
               load_ms[samples - 1], quantile(text_ms, samples, 0.5),
               quantile(text_ms, samples, 0.99), text_ms[samples - 1],
               quantile(version_ms, samples, 0.5), quantile(version_ms, samples, 0.99),
               version_ms[samples - 1], (double)replayed_sum / (double)samples,
               (unsigned long long)replayed_max, PAGE, quantile(rev_ms, PAGES, 0.5),
               rev_ms[PAGES - 1], versions_ok);
    } else {
        printf("{\"trace\":\"%s\",\"error\":\"%s\"}\n", t ? t->name : path, err);
    }
    store_close(s);
    if (have_dir)
        rm_dir(dir);
    for (size_t i = 0; texts && i < samples; i++)
        free(texts[i]);
    free(texts);
    free(seqs);
    free(load_ms);
    free(text_ms);
    free(version_ms);
    replay_result_dispose(&res);
    trace_free(t);
    return ok && versions_ok == samples ? 0 : 1;
}
