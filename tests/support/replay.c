/* SPDX-License-Identifier: MIT */
/*
 * replay.c: trace replay on crdt/ documents, as declared in replay.h. Concurrent
 * traces use one replica per agent and a byte per agent and transaction saying
 * whether its replica has seen it (bytes rather than bits: one load to test, and
 * agents times transactions stays small for real traces). That set is always closed under ancestry
 * (a replica only ever receives whole ancestor closures), so finding what an agent lacks before its
 * next transaction is a search from the transaction's parents that stops at seen transactions: each
 * transaction is visited at most once per agent. The search marks what it finds in a scratch
 * bitmap, which is then read (and cleared) word by word from the lowest index found, so the updates
 * go out in index order without a sort. The update array is sized once from the trace (one update
 * per delete and per insert of each patch), so each edit writes its update straight into the next
 * slot, and a replica that receives every update (the merge replica) reads them
 * in order, as transactions were made in index order.
 */
#include "replay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Records what failed in res->msg and returns `rc`. */
static int PRINTF_LIKE(3, 4) fail(replay_result_t *res, int rc, const char *fmt, ...)
{
    char what[192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(res->msg, sizeof res->msg, "%s: %s", what, crdt_strerror(rc));
    return rc;
}

/*
 * Sizes res->updates for every update the trace's edits can make: at most one per
 * delete and one per insert of each patch, plus startContent (pages never written
 * are never touched). Returns 0 or CRDT_ENOMEM.
 */
static int size_updates(replay_result_t *res)
{
    size_t n = res->_trace->npatches;

    n = n > (SIZE_MAX / sizeof *res->updates - 1) / 2 ? SIZE_MAX : 2 * n + 1;
    res->updates = n == SIZE_MAX ? NULL : malloc(n * sizeof *res->updates);
    if (res->updates == NULL)
        return fail(res, CRDT_ENOMEM, "replay: room for %zu updates", n);
    res->_cap = n;
    return 0;
}

/*
 * The slot for the next kept update. size_updates() made room for every update
 * the trace's edits can make, so this only grows the array if that bound were
 * ever wrong (a safety net, out of the way of the loop). NULL: out of memory.
 */
static crdt_buf_t *grow_updates(replay_result_t *res)
{
    size_t cap = res->_cap ? res->_cap * 2 : 1024;
    crdt_buf_t *p = cap > SIZE_MAX / sizeof *p ? NULL : realloc(res->updates, cap * sizeof *p);

    if (p == NULL) {
        fail(res, CRDT_ENOMEM, "replay: keeping update %zu", res->nupdates);
        return NULL;
    }
    res->updates = p;
    res->_cap = cap;
    return &p[res->nupdates];
}

static inline crdt_buf_t *update_slot(replay_result_t *res)
{
    return res->nupdates < res->_cap ? &res->updates[res->nupdates] : grow_updates(res);
}

/* Counts the update just written into update_slot(res) as kept. */
static inline void keep_update(replay_result_t *res)
{
    res->update_bytes += res->updates[res->nupdates++].len;
}

/*
 * Applies one patch as local edits: the delete, then the insert, at p->pos. With
 * `keep` each edit writes its update bytes straight into the next slot of
 * res->updates (an edit that fails leaves the slot uncounted).
 */
static int apply_patch(replay_result_t *res, crdt_doc_t *doc, size_t txn, size_t k,
                       const trace_patch_t *p, int keep)
{
    crdt_buf_t *buf = NULL;
    int rc;

    if (p->del > 0) {
        if (keep && (buf = update_slot(res)) == NULL)
            return CRDT_ENOMEM;
        rc = crdt_doc_delete(doc, p->pos, p->del, buf);
        if (rc < 0)
            return fail(res, rc, "txn %zu patch %zu: crdt_doc_delete(pos %u, len %u)", txn, k,
                        (unsigned)p->pos, (unsigned)p->del);
        if (keep)
            keep_update(res);
    }
    if (p->ins_len > 0) {
        if (keep && (buf = update_slot(res)) == NULL)
            return CRDT_ENOMEM;
        rc = crdt_doc_insert(doc, p->pos, p->ins, p->ins_len, buf);
        if (rc < 0)
            return fail(res, rc, "txn %zu patch %zu: crdt_doc_insert(pos %u, %zu bytes)", txn, k,
                        (unsigned)p->pos, p->ins_len);
        if (keep)
            keep_update(res);
    }
    return 0;
}

static int apply_txn_local(replay_result_t *res, crdt_doc_t *doc, size_t i, int keep)
{
    const trace_txn_t *txn = &res->_trace->txns[i];
    size_t k;
    int rc;

    if (keep)
        res->txn_updates[i] = res->nupdates;
    for (k = 0; k < txn->npatches; k++)
        if ((rc = apply_patch(res, doc, i, k, &txn->patches[k], keep)) < 0)
            return rc;
    if (keep)
        res->txn_updates[i + 1] = res->nupdates;
    return 0;
}

/* Records the failure of kept update `u` (of transaction `txn`) applied to a
 * replica as a remote update. */
static int remote_fail(replay_result_t *res, int rc, const char *who, uint32_t agent, size_t txn,
                       size_t u)
{
    return fail(res, rc, "%s %u: crdt_doc_apply_update(update %zu of txn %zu)", who,
                (unsigned)agent, u - res->txn_updates[txn], txn);
}

/* Applies the kept updates of transaction `i` to `doc` as remote updates. */
static inline int apply_txn_remote(replay_result_t *res, crdt_doc_t *doc, size_t i, const char *who,
                                   uint32_t agent)
{
    const crdt_buf_t *up = res->updates;
    size_t u, end = res->txn_updates[i + 1];
    int rc;

    for (u = res->txn_updates[i]; u < end; u++)
        if ((rc = crdt_doc_apply_update(doc, up[u].base, up[u].len)) < 0)
            return remote_fail(res, rc, who, agent, i, u);
    return 0;
}

/*
 * A sequential trace without updates to keep: each transaction applies on top
 * of the one before, and trace.c stores all patches in one array in
 * transaction order, so they apply as one run with nothing to look up between
 * edits. Walking transaction by transaction cost automerge-paper's replay
 * about a tenth of its time in the harness (docs/performance.md).
 */
static int apply_all_patches(replay_result_t *res, crdt_doc_t *doc)
{
    const trace_t *t = res->_trace;
    const trace_patch_t *p = t->ntxns > 0 ? t->txns[0].patches : NULL;
    const char *call = NULL;
    size_t k, i = 0;
    int rc = 0;

    for (k = 0; k < t->npatches; k++) {
        if (p[k].del > 0 && (rc = crdt_doc_delete(doc, p[k].pos, p[k].del, NULL)) < 0) {
            call = "crdt_doc_delete";
            break;
        }
        if (p[k].ins_len > 0 &&
            (rc = crdt_doc_insert(doc, p[k].pos, p[k].ins, p[k].ins_len, NULL)) < 0) {
            call = "crdt_doc_insert";
            break;
        }
    }
    if (call == NULL)
        return 0;
    /* The failing patch's transaction, for the message. */
    while (i + 1 < t->ntxns && t->txns[i + 1].patches <= &p[k])
        i++;
    return fail(res, rc, "txn %zu patch %zu: %s(pos %u, delete %u, insert %zu bytes)", i,
                (size_t)(&p[k] - t->txns[i].patches), call, (unsigned)p[k].pos, (unsigned)p[k].del,
                p[k].ins_len);
}

static int replay_sequential(replay_result_t *res, int keep)
{
    const trace_t *t = res->_trace;
    crdt_buf_t *buf = NULL;
    size_t i;
    int rc;

    if ((rc = crdt_doc_new(1, res->_alloc, &res->doc)) < 0)
        return fail(res, rc, "crdt_doc_new(1)");
    if (t->start_len > 0) {
        if (keep && (buf = update_slot(res)) == NULL)
            return CRDT_ENOMEM;
        rc = crdt_doc_insert(res->doc, 0, t->start_content, t->start_len, buf);
        if (rc < 0)
            return fail(res, rc, "crdt_doc_insert(startContent, %zu bytes)", t->start_len);
        if (keep)
            keep_update(res);
    }
    if (!keep)
        return apply_all_patches(res, res->doc);
    for (i = 0; i < t->ntxns; i++)
        if ((rc = apply_txn_local(res, res->doc, i, keep)) < 0)
            return rc;
    return 0;
}

#define SEEN(seen, i) ((seen)[i])
#define SEE(seen, i) ((seen)[i] = 1)

/* Index of the lowest set bit of x (x != 0). */
static int ctz64(uint64_t x)
{
#if defined(__GNUC__)
    return __builtin_ctzll(x);
#else
    int n = 0;

    while (!(x & 1)) {
        x >>= 1;
        n++;
    }
    return n;
#endif
}

static int replay_concurrent(replay_result_t *res)
{
    const trace_t *t = res->_trace;
    size_t stride = t->ntxns, i, k, sp, lo, w, u;
    unsigned char *seen = NULL;
    uint64_t *want = NULL; /* scratch: the ancestors to send; all zero between txns */
    uint32_t *stack = NULL;
    int rc;

    res->nagents = t->num_agents;
    if (t->num_agents > 0) {
        res->agents = calloc(t->num_agents, sizeof *res->agents);
        seen = stride > 0 && t->num_agents > SIZE_MAX / stride
                   ? NULL
                   : calloc((size_t)t->num_agents * stride + 1, 1);
    }
    if (t->ntxns > 0) {
        stack = malloc(t->ntxns * sizeof *stack);
        want = calloc((t->ntxns + 63) / 64, sizeof *want);
    }
    if ((t->num_agents > 0 && (res->agents == NULL || seen == NULL)) ||
        (t->ntxns > 0 && (stack == NULL || want == NULL))) {
        rc = fail(res, CRDT_ENOMEM, "replay: bookkeeping for %zu txns", t->ntxns);
        goto exit;
    }

    for (i = 0; i < t->ntxns; i++) {
        const trace_txn_t *txn = &t->txns[i];
        uint32_t a = txn->agent;
        unsigned char *bits = seen + (size_t)a * stride;

        if (res->agents[a] == NULL) {
            rc = crdt_doc_new((uint64_t)a + 1, res->_alloc, &res->agents[a]);
            if (rc < 0) {
                rc = fail(res, rc, "crdt_doc_new(%u) for agent %u", (unsigned)a + 1, (unsigned)a);
                goto exit;
            }
        }
        /* Find the ancestors agent `a` has not seen (all below i); mark them seen in
         * `bits` and wanted in `want`, and note the lowest. */
        sp = 0;
        lo = i;
        for (k = 0; k < txn->nparents; k++) {
            if (!SEEN(bits, txn->parents[k])) {
                SEE(bits, txn->parents[k]);
                stack[sp++] = txn->parents[k];
            }
        }
        while (sp > 0) {
            uint32_t x = stack[--sp];
            const trace_txn_t *anc = &t->txns[x];

            want[x >> 6] |= (uint64_t)1 << (x & 63);
            if (x < lo)
                lo = x;
            for (k = 0; k < anc->nparents; k++) {
                if (!SEEN(bits, anc->parents[k])) {
                    SEE(bits, anc->parents[k]);
                    stack[sp++] = anc->parents[k];
                }
            }
        }
        /* Send them in index order, clearing `want` on the way. */
        for (w = lo >> 6; lo < i && w <= (i - 1) >> 6; w++) {
            while (want[w] != 0) {
                size_t x = w * 64 + (size_t)ctz64(want[w]);

                want[w] &= want[w] - 1;
                if ((rc = apply_txn_remote(res, res->agents[a], x, "agent", a)) < 0)
                    goto exit;
            }
        }
        if ((rc = apply_txn_local(res, res->agents[a], i, 1)) < 0)
            goto exit;
        SEE(bits, i);
    }

    if ((rc = crdt_doc_new((uint64_t)t->num_agents + 1, res->_alloc, &res->doc)) < 0) {
        rc = fail(res, rc, "crdt_doc_new(%u) for the merge", (unsigned)t->num_agents + 1);
        goto exit;
    }
    /* Transactions were made in index order, so their updates are all of them
     * in order. */
    for (u = 0; u < res->nupdates; u++) {
        if ((rc = crdt_doc_apply_update(res->doc, res->updates[u].base, res->updates[u].len)) < 0) {
            for (i = 0; res->txn_updates[i + 1] <= u; i++)
                ;
            rc = remote_fail(res, rc, "merge replica", t->num_agents + 1, i, u);
            goto exit;
        }
    }
    rc = 0;
exit:
    free(seen);
    free(stack);
    free(want);
    return rc;
}

int replay_trace(const trace_t *t, const crdt_alloc_t *alloc, int want_updates,
                 replay_result_t *res)
{
    int keep = t->concurrent || want_updates;

    memset(res, 0, sizeof *res);
    res->_trace = t;
    res->_alloc = alloc;
    if (t->non_bmp)
        return fail(res, CRDT_EINVAL,
                    "replay: trace %s has characters outside the BMP, so its code-point "
                    "positions are not UTF-16 indexes",
                    t->name);
    if (keep) {
        res->txn_updates = calloc(t->ntxns + 1, sizeof *res->txn_updates);
        if (res->txn_updates == NULL)
            return fail(res, CRDT_ENOMEM, "replay: bookkeeping for %zu txns", t->ntxns);
        if (size_updates(res) < 0)
            return CRDT_ENOMEM;
    }
    return t->concurrent ? replay_concurrent(res) : replay_sequential(res, keep);
}

/* Copies up to 24 bytes of `s` into `out` as a printable snippet. */
static void snippet(const char *s, size_t len, char out[25])
{
    size_t i, n = len < 24 ? len : 24;

    for (i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '.';
    out[n] = '\0';
}

int replay_check_text(const trace_t *t, const crdt_doc_t *doc, char *msg, size_t msglen)
{
    char got[25], want[25];
    crdt_buf_t text;
    size_t i, n;
    int rc;

    memset(&text, 0, sizeof text);
    if ((rc = crdt_doc_text(doc, &text)) < 0) {
        if (msg != NULL && msglen > 0)
            snprintf(msg, msglen, "crdt_doc_text: %s", crdt_strerror(rc));
        return rc;
    }
    rc = text.len == t->end_len && memcmp(text.base, t->end_content, t->end_len) == 0;
    if (!rc && msg != NULL && msglen > 0) {
        n = text.len < t->end_len ? text.len : t->end_len;
        for (i = 0; i < n && text.base[i] == (uint8_t)t->end_content[i]; i++)
            ;
        snippet((const char *)text.base + i, text.len - i, got);
        snippet(t->end_content + i, t->end_len - i, want);
        snprintf(msg, msglen,
                 "text differs from endContent at byte %zu (%zu bytes, want %zu): "
                 "got \"%s\", want \"%s\"",
                 i, text.len, t->end_len, got, want);
    }
    crdt_buf_dispose(&text);
    return rc;
}

int replay_merge(replay_result_t *res, uint64_t client, crdt_doc_t **out)
{
    crdt_doc_t *doc = NULL;
    size_t u;
    int rc;

    if (res->txn_updates == NULL)
        return fail(res, CRDT_EINVAL, "replay_merge: no updates were kept");
    if ((rc = crdt_doc_new(client, res->_alloc, &doc)) < 0)
        return fail(res, rc, "replay_merge: crdt_doc_new(%llu)", (unsigned long long)client);
    for (u = 0; u < res->nupdates; u++) {
        rc = crdt_doc_apply_update(doc, res->updates[u].base, res->updates[u].len);
        if (rc < 0) {
            crdt_doc_free(doc);
            return fail(res, rc, "replay_merge: crdt_doc_apply_update(update %zu)", u);
        }
    }
    *out = doc;
    return 0;
}

int replay_sync_agents(replay_result_t *res)
{
    crdt_buf_t sv, diff;
    uint32_t a;
    int rc = 0;

    if (res->nagents > 0 && res->doc == NULL)
        return fail(res, CRDT_EINVAL, "replay_sync_agents: the replay did not finish");
    for (a = 0; a < res->nagents && rc == 0; a++) {
        crdt_doc_t *doc = res->agents[a];

        if (doc == NULL)
            continue;
        memset(&sv, 0, sizeof sv);
        memset(&diff, 0, sizeof diff);
        if ((rc = crdt_doc_state_vector(doc, &sv)) < 0)
            rc = fail(res, rc, "agent %u: crdt_doc_state_vector", (unsigned)a);
        else if ((rc = crdt_doc_diff(res->doc, sv.base, sv.len, &diff)) < 0)
            rc = fail(res, rc, "agent %u: crdt_doc_diff", (unsigned)a);
        else if ((rc = crdt_doc_apply_update(doc, diff.base, diff.len)) < 0)
            rc = fail(res, rc, "agent %u: crdt_doc_apply_update(diff of %zu bytes)", (unsigned)a,
                      diff.len);
        crdt_buf_dispose(&sv);
        crdt_buf_dispose(&diff);
    }
    return rc;
}

void replay_result_dispose(replay_result_t *res)
{
    size_t i;

    for (i = 0; i < res->nupdates; i++)
        crdt_buf_dispose(&res->updates[i]);
    crdt_doc_free(res->doc);
    if (res->agents != NULL)
        for (i = 0; i < res->nagents; i++)
            crdt_doc_free(res->agents[i]);
    free(res->agents);
    free(res->updates);
    free(res->txn_updates);
    memset(res, 0, sizeof *res);
}
