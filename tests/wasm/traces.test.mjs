// SPDX-License-Identifier: MIT
//
// traces.test.mjs: replays real-world editing traces (../shared/traces/*.json.gz,
// format in that directory's README.md, read with node:zlib) on the wasm build of
// the engine through web-demo/client/engine.js, and checks the final text against
// the trace's endContent. This mirrors the C test tests/crdt/test_traces.c (and
// tests/support/replay.c): a sequential trace is applied as local edits, with and
// without update bytes, and its updates are merged into a second replica; a
// concurrent trace uses one replica per agent (before each transaction the agent's
// replica receives the ancestors named by `parents` it has not seen, in index
// order), everything is merged into a fresh replica, and every agent replica is
// synced from it. Each final document passes check() (crdt_doc_check), has nothing
// pending, and survives encodeState() / loadDoc(). A missing trace file skips its
// test. Which traces run is chosen to keep the file under ~30 s on a small VM;
// WEFT_TRACES=all replays all five.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';

import { TRACES_DIR, testEngine, whereDiffer } from './lib.mjs';

const engine = await testEngine();

// node_nodecc (204 agent replicas) takes ~40 s and 1.6 GB of wasm memory: opt-in only.
const DEFAULT_TRACES = ['automerge-paper', 'seph-blog1', 'friendsforever', 'clownschool'];
const ALL_TRACES = ['automerge-paper', 'seph-blog1', 'friendsforever', 'clownschool', 'node_nodecc'];
const chosen = process.env.WEFT_TRACES === 'all' ? ALL_TRACES : DEFAULT_TRACES;

/** Loads a trace; null if its file is missing. */
function loadTrace(name) {
  const file = path.join(TRACES_DIR, `${name}.json.gz`);
  if (!existsSync(file)) return null;
  const t = JSON.parse(gunzipSync(readFileSync(file)).toString('utf8'));
  t.name = name;
  t.concurrent = t.kind === 'concurrent';
  t.startContent ??= '';
  // Positions are code points; with only BMP text they equal UTF-16 indexes.
  const astral = /[\ud800-\udfff]/;
  t.nonBmp = astral.test(t.endContent) || astral.test(t.startContent) ||
    t.txns.some((x) => x.patches.some((p) => astral.test(p[2])));
  return t;
}

/** UTF-16 index of code point offset `cp` in `text`. */
function cpToU16(text, cp) {
  let u = 0;
  for (let i = 0; i < cp; i++) u += text.codePointAt(u) > 0xffff ? 2 : 1;
  return u;
}

/** Applies one patch as local edits (the delete, then the insert); pushes updates to `out`. */
function applyPatch(doc, t, p, out, where) {
  const [pos, del, ins] = p;
  const keep = out !== null;
  try {
    if (t.nonBmp) {
      const text = doc.text();
      const at = cpToU16(text, pos);
      const end = at + cpToU16(text.slice(at), del);
      if (end > at) {
        const u = doc.delete(at, end - at, keep);
        if (keep) out.push(u);
      }
      if (ins.length > 0) {
        const u = doc.insert(at, ins, keep);
        if (keep) out.push(u);
      }
      return;
    }
    if (del > 0) {
      const u = doc.delete(pos, del, keep);
      if (keep) out.push(u);
    }
    if (ins.length > 0) {
      const u = doc.insert(pos, ins, keep);
      if (keep) out.push(u);
    }
  } catch (err) {
    assert.fail(`${t.name}: ${where}: patch [${pos}, ${del}, ${ins.length} chars]: ${err.message}`);
  }
}

/** The final checks of every replayed document. */
function expectEnd(t, doc, what) {
  const text = doc.text();
  if (text !== t.endContent) assert.fail(`${t.name}: ${what}: ${whereDiffer(text, t.endContent)}`);
  doc.check();
  assert.equal(doc.pending(), 0, `${t.name}: ${what}: operations still pending`);
}

/** Encodes the whole state, loads it into a new document and checks its text. */
function expectRoundtrip(t, doc, replica) {
  const loaded = engine.loadDoc(replica, doc.encodeState());
  try {
    expectEnd(t, loaded, 'document loaded from encodeState');
  } finally {
    loaded.free();
  }
}

function checkSequential(t, diag) {
  const plain = engine.newDoc(1n);
  if (t.startContent) plain.insert(0, t.startContent, false);
  for (const [i, txn] of t.txns.entries()) for (const p of txn.patches) applyPatch(plain, t, p, null, `txn ${i}`);
  expectEnd(t, plain, 'local edits without update bytes');
  plain.free();

  const doc = engine.newDoc(1n);
  const updates = [];
  if (t.startContent) updates.push(doc.insert(0, t.startContent));
  for (const [i, txn] of t.txns.entries()) for (const p of txn.patches) applyPatch(doc, t, p, updates, `txn ${i}`);
  expectEnd(t, doc, 'local edits with update bytes');
  const merged = engine.newDoc(2n);
  for (const u of updates) merged.apply(u);
  expectEnd(t, merged, 'replica fed every update');
  merged.free();
  expectRoundtrip(t, doc, 3n);
  doc.free();
  const bytes = updates.reduce((n, u) => n + u.length, 0);
  diag(`${t.name}: ${t.txns.length} txns, ${updates.length} updates of ${bytes} bytes in all`);
}

function checkConcurrent(t, diag) {
  const n = t.txns.length;
  const numAgents = t.numAgents ?? 1 + Math.max(...t.txns.map((x) => x.agent));
  const agents = new Array(numAgents).fill(null);
  const seen = new Array(numAgents).fill(null);
  const txnUpdates = new Array(n);
  let nupdates = 0;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const txn = t.txns[i];
    const a = txn.agent;
    if (agents[a] === null) {
      agents[a] = engine.newDoc(BigInt(a + 1));
      seen[a] = new Uint8Array(n);
    }
    const doc = agents[a];
    const s = seen[a];
    // The ancestors this agent has not seen: a search from the parents that stops
    // at seen transactions (the seen set is closed under ancestry).
    const missing = [];
    const stack = [...txn.parents];
    while (stack.length > 0) {
      const j = stack.pop();
      if (s[j]) continue;
      s[j] = 1;
      missing.push(j);
      for (const q of t.txns[j].parents) if (!s[q]) stack.push(q);
    }
    missing.sort((x, y) => x - y);
    for (const j of missing) for (const u of txnUpdates[j]) doc.apply(u);
    const out = [];
    for (const p of txn.patches) applyPatch(doc, t, p, out, `txn ${i} (agent ${a})`);
    s[i] = 1;
    txnUpdates[i] = out;
    nupdates += out.length;
    for (const u of out) bytes += u.length;
  }
  const merged = engine.newDoc(BigInt(numAgents + 1));
  for (const us of txnUpdates) for (const u of us) merged.apply(u);
  expectEnd(t, merged, 'replica merging every update');
  for (const [a, doc] of agents.entries()) {
    if (doc === null) continue;
    doc.apply(merged.diff(doc.stateVector()));
    expectEnd(t, doc, `agent ${a} after sync`);
    doc.free();
  }
  expectRoundtrip(t, merged, BigInt(numAgents + 2));
  merged.free();
  diag(`${t.name}: ${n} txns, ${numAgents} agents, ${nupdates} updates of ${bytes} bytes in all`);
}

for (const name of chosen) {
  test(`replay ${name}`, (tc) => {
    const t = loadTrace(name);
    if (t === null) {
      tc.skip(`${path.join(TRACES_DIR, name)}.json.gz not found`);
      return;
    }
    const before = engine.memoryBytes;
    const start = performance.now();
    if (t.concurrent) checkConcurrent(t, (m) => tc.diagnostic(m));
    else checkSequential(t, (m) => tc.diagnostic(m));
    tc.diagnostic(`${name}: ${Math.round(performance.now() - start)} ms, wasm memory ` +
      `${(before / 1048576).toFixed(1)} -> ${(engine.memoryBytes / 1048576).toFixed(1)} MiB`);
  });
}
