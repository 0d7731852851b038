/* SPDX-License-Identifier: MIT */
/*
 * crdt-trace: benchmarks the crdt/ engine on real editing traces.
 *
 *     crdt-trace [--runs N] FILE.json.gz...    (options may also follow the files)
 *
 * Each trace is replayed with tests/support/replay.c (the same replay the trace
 * tests use) and one JSON object is printed per trace, on one line:
 *
 *   trace             the trace's name (file name without .json.gz)
 *   kind              "sequential" or "concurrent"
 *   txns, edits       number of transactions and of patches (edits) in the trace
 *   final_ok          true if the replay succeeded and the final document's text
 *                     equals the trace's endContent (checked after the first run of
 *                     each replay mode)
 *   load_ok           true if the documents made by both loads have that text too
 *   apply_ms          replay time. Sequential traces: every patch applied as local
 *                     edits (crdt_doc_delete, then crdt_doc_insert) with no update
 *                     bytes requested (NULL). Concurrent traces: the whole replay, one
 *                     replica per agent fed its missing ancestors as remote updates,
 *                     then every update merged into a fresh replica; updates are needed
 *                     for that, so it is the same measurement as apply_updates_ms.
 *   apply_updates_ms  the same replay with every edit also producing its update bytes
 *                     (kept until the timing ends, then freed)
 *   update_bytes      total size of those update bytes
 *   encode_bytes      size of crdt_doc_encode_state() of the final document
 *   load_ms           time of crdt_doc_load_trusted() of those bytes: building the
 *                     document directly, as weftd does with states it stored itself
 *   load_verified_ms  time of crdt_doc_load(): integrating every operation, as for
 *                     states from anywhere
 *   mem_bytes         crdt_doc_mem_bytes() of the final document right after replay
 *                     (for concurrent traces the merge replica)
 *   load_mem_bytes    crdt_doc_mem_bytes() of the document crdt_doc_load_trusted()
 *                     made: what a server holds for a document it loaded
 *   merge_ms          concurrent traces only: the merge alone. The update bytes of
 *                     one replay (every agent's transactions as it made them) are
 *                     kept, untimed; then a fresh replica applies all of them as
 *                     remote updates, in transaction order, one crdt_doc_apply_update()
 *                     per edit, and must end with endContent (else final_ok is
 *                     false). What a server or a newly joining replica does with the
 *                     history; apply_ms adds making the edits on one replica per
 *                     agent and delivering them to every other agent.
 *   runs              number of runs; every *_ms field is the median over them
 *   error             only when something failed: what failed
 *
 * Times are wall-clock (CLOCK_MONOTONIC) milliseconds and include creating the
 * documents but not loading the trace nor freeing the results. The exit status is 0
 * if every trace loaded, replayed and gave its endContent, 1 if not, 2 on bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crdt.h"
#include "replay.h"
#include "trace.h"

#define DEFAULT_RUNS 5

typedef struct {
    int final_ok, load_ok;
    double apply_ms, apply_updates_ms, load_ms, load_verified_ms, merge_ms;
    size_t update_bytes, encode_bytes, mem_bytes, load_mem_bytes;
    char error[320];
} result_t;

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median of `n` samples (sorted in place). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/*
 * Times `runs` replays of `t` in one mode into samples[] and checks the first run's
 * text. If `state` is not NULL, the first run's final document also gives
 * r->mem_bytes and its encoded state in *state (left empty if encoding fails, with
 * r->error set). Each result is freed once timed, so runs do not pile up memory.
 * Returns 0, or -1 with r->error set if a replay failed.
 */
static int time_replays(const trace_t *t, int want_updates, int runs, double *samples, result_t *r,
                        crdt_buf_t *state)
{
    replay_result_t res;
    char msg[256];
    int i, rc;

    for (i = 0; i < runs; i++) {
        double t0 = now_ms();
        rc = replay_trace(t, NULL, want_updates, &res);
        samples[i] = now_ms() - t0;
        if (rc != 0) {
            r->final_ok = 0;
            snprintf(r->error, sizeof r->error, "replay: %s", res.msg);
            replay_result_dispose(&res);
            return -1;
        }
        if (i == 0) {
            r->update_bytes = res.update_bytes;
            rc = replay_check_text(t, res.doc, msg, sizeof msg);
            if (rc != 1) {
                r->final_ok = 0;
                if (r->error[0] == '\0')
                    snprintf(r->error, sizeof r->error, "%s%s",
                             want_updates ? "with updates: " : "",
                             rc < 0 ? crdt_strerror(rc) : msg);
            }
            if (state != NULL) {
                r->mem_bytes = crdt_doc_mem_bytes(res.doc);
                rc = crdt_doc_encode_state(res.doc, state);
                if (rc != 0 && r->error[0] == '\0')
                    snprintf(r->error, sizeof r->error, "crdt_doc_encode_state: %s",
                             crdt_strerror(rc));
                r->encode_bytes = state->len;
            }
        }
        replay_result_dispose(&res);
    }
    return 0;
}

/* Times `runs` merges of one replay's updates into a fresh replica and checks
 * the first one's text. */
static int time_merges(const trace_t *t, int runs, double *samples, result_t *r)
{
    replay_result_t res;
    crdt_doc_t *doc;
    char msg[256];
    int i, rc;

    if ((rc = replay_trace(t, NULL, 1, &res)) != 0) {
        r->final_ok = 0;
        snprintf(r->error, sizeof r->error, "replay for the merge: %s", res.msg);
        replay_result_dispose(&res);
        return -1;
    }
    for (i = 0; i < runs; i++) {
        double t0 = now_ms();
        rc = replay_merge(&res, (uint64_t)t->num_agents + 3, &doc);
        samples[i] = now_ms() - t0;
        if (rc != 0) {
            r->final_ok = 0;
            snprintf(r->error, sizeof r->error, "merge: %s", res.msg);
            replay_result_dispose(&res);
            return -1;
        }
        if (i == 0) {
            rc = replay_check_text(t, doc, msg, sizeof msg);
            if (rc != 1) {
                r->final_ok = 0;
                if (r->error[0] == '\0')
                    snprintf(r->error, sizeof r->error, "merge: %s",
                             rc < 0 ? crdt_strerror(rc) : msg);
            }
        }
        crdt_doc_free(doc);
    }
    replay_result_dispose(&res);
    return 0;
}

typedef int (*load_fn)(uint64_t, const crdt_alloc_t *, const uint8_t *, size_t, crdt_doc_t **);

/* Times `runs` loads of the encoded state and checks the first one's text. */
static int time_loads(const trace_t *t, const crdt_buf_t *state, int runs, double *samples,
                      result_t *r, load_fn load)
{
    crdt_doc_t *doc;
    char msg[256];
    int i, rc;

    for (i = 0; i < runs; i++) {
        double t0 = now_ms();
        rc = load((uint64_t)t->num_agents + 2, NULL, state->base, state->len, &doc);
        samples[i] = now_ms() - t0;
        if (rc != 0) {
            snprintf(r->error, sizeof r->error, "load: %s", crdt_strerror(rc));
            r->load_ok = 0;
            return -1;
        }
        if (i == 0) {
            if (load == crdt_doc_load_trusted)
                r->load_mem_bytes = crdt_doc_mem_bytes(doc);
            rc = replay_check_text(t, doc, msg, sizeof msg);
            r->load_ok &= rc == 1;
            if (rc != 1 && r->error[0] == '\0')
                snprintf(r->error, sizeof r->error, "loaded document: %s",
                         rc < 0 ? crdt_strerror(rc) : msg);
        }
        crdt_doc_free(doc);
    }
    return 0;
}

/* Runs every measurement on one trace. Returns 0 if all went well and the texts matched. */
static int bench_trace(const trace_t *t, int runs, double *samples, result_t *r)
{
    crdt_buf_t state;

    memset(&state, 0, sizeof state);
    r->final_ok = 1;
    if (time_replays(t, 0, runs, samples, r, &state) == 0) {
        r->apply_ms = median(samples, runs);
        if (t->concurrent) {
            r->apply_updates_ms = r->apply_ms;
            if (time_merges(t, runs, samples, r) == 0)
                r->merge_ms = median(samples, runs);
        } else if (time_replays(t, 1, runs, samples, r, NULL) == 0)
            r->apply_updates_ms = median(samples, runs);
        r->load_ok = 1;
        if (state.base != NULL &&
            time_loads(t, &state, runs, samples, r, crdt_doc_load_trusted) == 0)
            r->load_ms = median(samples, runs);
        if (state.base != NULL && time_loads(t, &state, runs, samples, r, crdt_doc_load) == 0)
            r->load_verified_ms = median(samples, runs);
    }
    crdt_buf_dispose(&state);
    return r->final_ok && r->load_ok ? 0 : -1;
}

static void print_result(const trace_t *t, int runs, const result_t *r)
{
    printf("{\"trace\":");
    print_json_string(t->name);
    printf(",\"kind\":\"%s\",\"txns\":%zu,\"edits\":%zu,\"final_ok\":%s,\"load_ok\":%s,"
           "\"apply_ms\":%.3f,\"apply_updates_ms\":%.3f,\"update_bytes\":%zu,"
           "\"encode_bytes\":%zu,\"load_ms\":%.3f,\"load_verified_ms\":%.3f,"
           "\"mem_bytes\":%zu,\"load_mem_bytes\":%zu,\"runs\":%d",
           t->concurrent ? "concurrent" : "sequential", t->ntxns, t->npatches,
           r->final_ok ? "true" : "false", r->load_ok ? "true" : "false", r->apply_ms,
           r->apply_updates_ms, r->update_bytes, r->encode_bytes, r->load_ms, r->load_verified_ms,
           r->mem_bytes, r->load_mem_bytes, runs);
    if (t->concurrent)
        printf(",\"merge_ms\":%.3f", r->merge_ms);
    if (r->error[0] != '\0') {
        printf(",\"error\":");
        print_json_string(r->error);
    }
    printf("}\n");
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: crdt-trace [--runs N] FILE.json.gz...\n");
    return 2;
}

int main(int argc, char **argv)
{
    int runs = DEFAULT_RUNS, status = 0, first = 1, nfiles = 1, i;
    double *samples;

    /* Options may come before or after the files; "--" ends them. */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            for (i++; i < argc; i++)
                argv[nfiles++] = argv[i];
            break;
        }
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[i + 1], &end, 10);
            if (*argv[i + 1] == '\0' || *end != '\0' || n < 1 || n > 1000000)
                return usage();
            runs = (int)n;
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ||
                   strncmp(argv[i], "--", 2) == 0) {
            return usage();
        } else {
            argv[nfiles++] = argv[i];
        }
    }
    if (nfiles == first)
        return usage();
    argc = nfiles;
    samples = malloc((size_t)runs * sizeof *samples);
    if (samples == NULL) {
        fprintf(stderr, "crdt-trace: out of memory\n");
        return 1;
    }

    for (i = first; i < argc; i++) {
        char err[512];
        trace_t *t = NULL;
        result_t r;

        if (trace_load(argv[i], &t, err, sizeof err) != 0) {
            fprintf(stderr, "crdt-trace: %s\n", err);
            status = 1;
            continue;
        }
        memset(&r, 0, sizeof r);
        if (bench_trace(t, runs, samples, &r) != 0)
            status = 1;
        print_result(t, runs, &r);
        trace_free(t);
    }
    free(samples);
    return status;
}
