/* SPDX-License-Identifier: MIT */
/*
 * trace.h: loader for the real-world editing traces in ../shared/traces/ (gzipped
 * JSON, format described in that directory's README.md). It is test and benchmark
 * support code, not part of any module: it uses zlib and libc's allocator, and never
 * the crdt/ engine. A loaded trace is immutable and lives in one allocation, so any
 * number of threads may read it at once.
 */
#ifndef WEFT_TRACE_H
#define WEFT_TRACE_H

#include <stddef.h>
#include <stdint.h>

/*
 * One patch: at index `pos` delete `del` characters, then insert `ins`. Both
 * numbers count code points, as in the files; while the trace's `non_bmp` is 0 they
 * are also UTF-16 units, the crdt/ index unit. `ins` is UTF-8 (validated, JSON
 * escapes decoded, surrogate pairs joined), `ins_len` bytes long and NUL-terminated
 * (a "\u0000" escape would also put a NUL inside it, so use the length). A patch
 * may insert nothing (ins_len 0) or delete nothing (del 0).
 */
typedef struct {
    uint32_t pos, del;
    const char *ins;
    size_t ins_len;
} trace_patch_t;

/*
 * One transaction: its patches apply in order to the document state after the
 * transactions in `parents` (indexes of earlier transactions, each smaller than this
 * one's index; none means the empty document, or startContent for a sequential
 * trace). `agent` is below the trace's num_agents.
 */
typedef struct {
    const uint32_t *parents;
    size_t nparents;
    uint32_t agent;
    const trace_patch_t *patches;
    size_t npatches;
} trace_txn_t;

/*
 * A whole trace. For a sequential trace `concurrent` is 0, num_agents is 1, every
 * agent is 0 and each transaction's only parent is the one before it (transaction 0
 * has none). For a concurrent trace ("kind": "concurrent") num_agents is the file's
 * "numAgents" (or one more than the highest agent if it has none) and
 * start_content is empty. `name` is the file's base name without ".json.gz" (or
 * ".json" / ".gz"). All strings are NUL-terminated; lengths are in bytes.
 * `npatches` is the total over all transactions. `non_bmp` is 1 if some text holds a
 * character outside the Basic Multilingual Plane (none of the shared traces does):
 * then code-point positions are not UTF-16 indexes and the trace cannot be fed to
 * crdt/ as it is.
 */
typedef struct {
    int concurrent;
    uint32_t num_agents;
    const char *name;
    const char *start_content;
    size_t start_len;
    const char *end_content;
    size_t end_len;
    const trace_txn_t *txns;
    size_t ntxns;
    size_t npatches;
    int non_bmp;
} trace_t;

/*
 * Reads and parses the trace at `path` (gzipped JSON; a plain JSON file also
 * works). On success returns 0 and sets *out to a trace the caller frees with
 * trace_free(). On failure returns -1, leaves *out alone and writes a one-line,
 * NUL-terminated message naming the file and, for bad JSON, the byte offset into
 * `err` (truncated to `errlen` bytes; err may be NULL when errlen is 0).
 * Rejected: unreadable or corrupt files, invalid JSON or UTF-8, missing required
 * fields ("endContent", "txns", and per concurrent transaction "parents" and
 * "agent"; "patches" always), numbers that are not unsigned 32-bit integers, a
 * parent that is not an earlier transaction, an agent not below numAgents, and a
 * concurrent trace with a non-empty "startContent". Unknown keys ("time",
 * "numChildren", "_dtSpan", ...) are skipped whatever their value.
 */
int trace_load(const char *path, trace_t **out, char *err, size_t errlen);

/*
 * Like trace_load() but parses `len` bytes of JSON already in memory; `name`
 * becomes the trace's name as given. Error messages start with `name`.
 */
int trace_parse(const char *json, size_t len, const char *name, trace_t **out, char *err,
                size_t errlen);

/* Frees a trace and everything it points to. trace_free(NULL) does nothing. */
void trace_free(trace_t *t);

#endif /* WEFT_TRACE_H */
