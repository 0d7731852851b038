/* SPDX-License-Identifier: MIT */
/*
 * test_crash.c: crash safety of a real weftd under write load. Four editors on
 * three documents type unique tokens as fast as acknowledgements allow (up to
 * WINDOW updates in flight each) while the test kills weftd with SIGKILL after
 * a random delay, starts it again on the same data directory, and checks that
 * every edit acknowledged before any kill so far is in its document, exactly
 * once and unbroken, both in GET /api/docs/<doc> and in what a joining editor
 * receives. Two editors live through all rounds: they reconnect after each
 * restart, send SYNC2 with what the server lacks and resend what was not
 * acknowledged, as the web client does (so at the end every edit they made
 * must be there, once). The other two are new in every round; their
 * unacknowledged edits may or may not survive. After each restart the
 * store must not be failed and the server must acknowledge new edits. Snapshots
 * are taken every 50 log entries so some kills land around them.
 *
 * Rounds: 30 (20 under AddressSanitizer), WEFT_CRASH_ROUNDS overrides. The
 * seed is printed; WEFT_SEED=<n> repeats the kill delays (how many edits are
 * typed and acknowledged before each kill, and so where they go, depends on
 * the machine's speed).
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

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wt_asan.h"

#define TIMEOUT 10000
#define N_EDITORS 4
#define N_DOCS 3
#define PERSISTENT 2       /* editors 0 and 1 reconnect; 2 and 3 are new every round */
#define WINDOW 16          /* updates in flight per editor */
#define MAX_KILL_DELAY 400 /* ms of load before the kill, at most */
#define DEFAULT_SEED 0xc4a5e5afeULL

enum { TOK_PENDING, TOK_ACKED, TOK_DROPPED };

typedef struct {
    uint32_t doc;
    uint32_t round; /* typed in */
    uint32_t ed;    /* typed by */
    int state;      /* TOK_*: DROPPED: unacknowledged when its editor went away */
} token_t;

typedef struct {
    wt_fixture_t *fx;
    rng_t rng;      /* insert positions, editor masks */
    rng_t rng_kill; /* kill delays: its own stream, so a seed repeats them exactly */
    wt_editor_t eds[N_EDITORS];
    int live[N_EDITORS];
    token_t *toks;
    size_t ntok, cap;
    uint8_t *seen; /* per token: times found in the text being checked */
} crash_t;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return dflt;
    return strtoull(s, NULL, 0);
}

static int setup(void **state)
{
    uint64_t seed = env_u64("WEFT_SEED", DEFAULT_SEED);
    print_message("test_crash: seed %" PRIu64 " (WEFT_SEED=%" PRIu64 " repeats it)\n", seed, seed);
    static const char *const args[] = {"--snapshot-every", "50", "--max-messages-per-second",
                                       "1000000", NULL};
    crash_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    c->fx = wt_fixture_new(seed, args);
    if (c->fx == NULL) {
        free(c);
        return -1;
    }
    rng_init(&c->rng, seed ^ 0x5eed);
    rng_init(&c->rng_kill, seed ^ 0xdead);
    *state = c;
    return 0;
}

/* Disposes of the editors from `from` on. */
static void drop_editors(crash_t *c, size_t from)
{
    for (size_t i = from; i < N_EDITORS; i++)
        if (c->live[i]) {
            wt_editor_dispose(&c->eds[i]);
            c->live[i] = 0;
        }
}

static int teardown(void **state)
{
    crash_t *c = *state;
    drop_editors(c, 0);
    wt_fixture_free(c->fx);
    free(c->toks);
    free(c->seen);
    free(c);
    return 0;
}

static void doc_name(uint32_t doc, char *out, size_t cap)
{
    snprintf(out, cap, "crash-%" PRIu32, doc);
}

/* Inserts a new token "<id in hex>" at a token boundary of the editor's view:
 * the start, the end, or before a random token. */
static uint64_t type_token(crash_t *c, size_t e, uint32_t round)
{
    wt_editor_t *ed = &c->eds[e];
    if (c->ntok == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        c->toks = realloc(c->toks, c->cap * sizeof *c->toks);
        assert_non_null(c->toks);
    }
    size_t id = c->ntok;
    token_t *t = &c->toks[c->ntok++];
    *t = (token_t){.doc = (uint32_t)(e % N_DOCS), .round = round, .ed = (uint32_t)e};
    char text[24];
    snprintf(text, sizeof text, "<%zx>", id);
    size_t len = crdt_doc_length(ed->doc), at = 0;
    uint32_t where = rng_below(&c->rng, 16);
    if (where < 7) {
        at = 0;
    } else if (where < 14 || len == 0) {
        at = len;
    } else {
        char *cur = wt_editor_text(ed);
        assert_non_null(cur);
        const char *p = strchr(cur + rng_below(&c->rng, (uint32_t)len), '<');
        at = p ? (size_t)(p - cur) : len; /* ASCII only: bytes are UTF-16 units */
        free(cur);
    }
    uint64_t seq;
    assert_int_equal(wt_editor_insert(ed, at, text, &seq), 0);
    return seq;
}

/*
 * Checks one document's text: every "<hex>" is a known token of this document
 * found once; every acknowledged token of it is there. Returns the number of
 * acknowledged tokens of the document.
 */
static size_t check_text(crash_t *c, uint32_t doc, const char *text, const char *what,
                         uint32_t round)
{
    memset(c->seen, 0, c->ntok);
    for (const char *p = strchr(text, '<'); p != NULL; p = strchr(p + 1, '<')) {
        char *end;
        unsigned long long id = strtoull(p + 1, &end, 16);
        if (end == p + 1 || *end != '>' || id >= c->ntok || c->toks[id].doc != doc)
            fail_msg("round %" PRIu32 ", %s of crash-%" PRIu32 ": broken or foreign token at "
                     "\"%.24s\"",
                     round, what, doc, p);
        if (c->seen[id]++ != 0)
            fail_msg("round %" PRIu32 ", %s of crash-%" PRIu32 ": token <%llx> twice", round, what,
                     doc, id);
    }
    size_t acked = 0;
    for (size_t i = 0; i < c->ntok; i++) {
        if (c->toks[i].doc != doc || c->toks[i].state != TOK_ACKED)
            continue;
        acked++;
        if (!c->seen[i])
            fail_msg("round %" PRIu32 ", %s of crash-%" PRIu32 ": token <%zx> (typed in round "
                     "%" PRIu32 " by editor %" PRIu32 ") was acknowledged but is missing",
                     round, what, doc, i, c->toks[i].round, c->toks[i].ed);
    }
    return acked;
}

/* The REST view of every document holds every acknowledged token. */
static size_t check_rest(crash_t *c, uint32_t round)
{
    free(c->seen);
    c->seen = malloc(c->ntok + 1);
    assert_non_null(c->seen);
    size_t acked = 0;
    for (uint32_t d = 0; d < N_DOCS; d++) {
        char path[64], name[32];
        doc_name(d, name, sizeof name);
        snprintf(path, sizeof path, "/api/docs/%s", name);
        wt_http_resp_t r;
        assert_int_equal(wt_http_get("127.0.0.1", c->fx->server.port, path, TIMEOUT, &r), 0);
        if (r.status == 404 && round == 0) {
            wt_http_resp_dispose(&r);
            continue;
        }
        assert_int_equal(r.status, 200);
        acked += check_text(c, d, (const char *)r.body.data, "REST text", round);
        wt_http_resp_dispose(&r);
    }
    return acked;
}

/* The store did not fail. */
static void check_store(crash_t *c)
{
    char *m = wt_fixture_metrics(c->fx);
    assert_non_null(m);
    double failed = -1;
    assert_true(wt_metric(m, "weft_store_failed", &failed));
    assert_true(failed == 0);
    free(m);
}

/* The persistent editors reconnect (with a new replica id, resending what was
 * not acknowledged), new ones join; each one's synced text holds every
 * acknowledged token of its document. */
static void join_editors(crash_t *c, uint32_t round)
{
    for (size_t i = 0; i < N_EDITORS; i++) {
        int rc;
        if (c->live[i]) {
            c->eds[i].port = c->fx->server.port;
            rc = wt_editor_reconnect(&c->eds[i], wt_fixture_replica(c->fx), TIMEOUT);
        } else {
            char name[32], who[16];
            doc_name((uint32_t)(i % N_DOCS), name, sizeof name);
            snprintf(who, sizeof who, "w%zu", i);
            assert_int_equal(wt_editor_init(&c->eds[i], "127.0.0.1", c->fx->server.port, name,
                                            wt_fixture_replica(c->fx), who, "#336699",
                                            rng_next(&c->rng)),
                             0);
            c->live[i] = 1;
            /* Like the web client: after a crash the server may lack operations
             * this replica has (even other editors' ones it forwarded before
             * they were durable), and edits acknowledged later may build on them. */
            c->eds[i].send_sync2 = 1;
            rc = wt_editor_join(&c->eds[i], TIMEOUT);
        }
        if (rc != 0)
            fail_msg("round %" PRIu32 ": editor %zu cannot join: %s", round, i, wt_strerror(rc));
        char *text = wt_editor_text(&c->eds[i]);
        assert_non_null(text);
        check_text(c, (uint32_t)(i % N_DOCS), text, "synced text", round);
        free(text);
    }
}

static int all_ended(const crash_t *c)
{
    for (size_t i = 0; i < N_EDITORS; i++)
        if (c->eds[i].state != WT_ED_ENDED && c->eds[i].state != WT_ED_OFFLINE)
            return 0;
    return 1;
}

/*
 * After a kill: an editor's unacknowledged updates are its last n_unacked
 * pending tokens, in the order typed (ACKs cover a prefix, resends keep the
 * order), so the others are acknowledged now. Editors from `drop_from` on go
 * away, and with them their unacknowledged tokens. Returns the number newly
 * acknowledged.
 */
static size_t settle_tokens(crash_t *c, size_t drop_from)
{
    size_t acked = 0;
    for (size_t e = 0; e < N_EDITORS; e++) {
        size_t pending = 0, k = 0;
        for (size_t i = 0; i < c->ntok; i++)
            pending += c->toks[i].ed == e && c->toks[i].state == TOK_PENDING;
        size_t unacked = c->live[e] ? c->eds[e].n_unacked : pending;
        assert_true(unacked <= pending);
        for (size_t i = 0; i < c->ntok; i++) {
            token_t *t = &c->toks[i];
            if (t->ed != e || t->state != TOK_PENDING)
                continue;
            if (k++ < pending - unacked) {
                t->state = TOK_ACKED;
                acked++;
            } else if (e >= drop_from) {
                t->state = TOK_DROPPED;
            }
        }
    }
    drop_editors(c, drop_from);
    return acked;
}

static void test_crash_sigkill_under_load_keeps_acked_edits(void **state)
{
    crash_t *c = *state;
    uint32_t rounds = (uint32_t)env_u64("WEFT_CRASH_ROUNDS", WT_ASAN ? 20 : 30);
    print_message("test_crash: %" PRIu32 " rounds%s\n", rounds,
                  WT_ASAN ? " (AddressSanitizer)" : "");
    size_t total_acked = 0;
    for (uint32_t round = 0; round < rounds; round++) {
        if (round > 0) {
            int rc = wt_weftd_restart(&c->fx->server, TIMEOUT);
            if (rc != 0)
                fail_msg("round %" PRIu32 ": weftd does not start again after SIGKILL: %s", round,
                         wt_strerror(rc));
        }
        check_store(c);
        check_rest(c, round);
        join_editors(c, round);
        wt_editor_t *eds[N_EDITORS];
        for (size_t i = 0; i < N_EDITORS; i++)
            eds[i] = &c->eds[i];

        /* The restarted server takes and acknowledges new edits. */
        uint64_t seqs[N_EDITORS];
        size_t first = c->ntok;
        for (size_t i = 0; i < N_EDITORS; i++)
            seqs[i] = type_token(c, i, round);
        for (size_t i = 0; i < N_EDITORS; i++)
            assert_int_equal(wt_editor_wait_ack(&c->eds[i], seqs[i], TIMEOUT), 0);

        /* Load, then SIGKILL at a random moment. */
        uint32_t delay =
            rng_below(&c->rng_kill, 8) == 0 ? 0 : rng_below(&c->rng_kill, MAX_KILL_DELAY);
        int64_t kill_at = wt_now_ms() + delay;
        do {
            for (size_t i = 0; i < N_EDITORS; i++)
                while (c->eds[i].n_unacked < WINDOW)
                    type_token(c, i, round);
            wt_editors_pump(eds, N_EDITORS, 1);
        } while (wt_ms_left(kill_at) > 0);
        for (size_t i = 0; i < N_EDITORS; i++) /* a full window in flight at the kill */
            while (c->eds[i].n_unacked < WINDOW)
                type_token(c, i, round);
        assert_int_equal(wt_weftd_signal(&c->fx->server, SIGKILL), 0);
        /* Whatever the server sent before it died counts: ACKs are promises. */
        int64_t deadline = wt_now_ms() + TIMEOUT;
        while (!all_ended(c) && wt_ms_left(deadline) > 0)
            wt_editors_pump(eds, N_EDITORS, 50);
        assert_true(all_ended(c));
        assert_int_equal(wt_weftd_wait(&c->fx->server, TIMEOUT), -SIGKILL);

        size_t acked = settle_tokens(c, PERSISTENT);
        total_acked += acked;
        print_message("round %2" PRIu32 ": SIGKILL after %3" PRIu32 " ms of load, %4zu edits "
                      "typed, %4zu acknowledged\n",
                      round, delay, c->ntok - first, acked);
    }

    /* Last restart: everything acknowledged is there; the persistent editors
     * resend the rest, and then every edit they ever made is there too;
     * a clean stop exits 0. */
    assert_int_equal(wt_weftd_restart(&c->fx->server, TIMEOUT), 0);
    check_store(c);
    assert_int_equal(check_rest(c, rounds), total_acked);
    join_editors(c, rounds);
    for (size_t i = 0; i < N_EDITORS; i++)
        type_token(c, i, rounds);
    for (size_t i = 0; i < N_EDITORS; i++)
        assert_int_equal(wt_editor_wait_acked(&c->eds[i], TIMEOUT), 0);
    total_acked += settle_tokens(c, 0);
    size_t dropped = 0;
    for (size_t i = 0; i < c->ntok; i++) {
        assert_true(c->toks[i].state != TOK_PENDING);
        dropped += c->toks[i].state == TOK_DROPPED;
        assert_true(c->toks[i].ed >= PERSISTENT || c->toks[i].state == TOK_ACKED);
    }
    assert_int_equal(check_rest(c, rounds), total_acked);
    assert_int_equal(wt_weftd_stop(&c->fx->server, TIMEOUT), 0);
    print_message("test_crash: %" PRIu32 " SIGKILL rounds, %zu edits, %zu acknowledged and all "
                  "present after every restart (%zu unacknowledged ones given up)\n",
                  rounds, c->ntok, total_acked, dropped);
    assert_int_equal(total_acked + dropped, c->ntok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crash_sigkill_under_load_keeps_acked_edits, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
