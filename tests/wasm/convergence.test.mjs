// SPDX-License-Identifier: MIT
//
// convergence.test.mjs: replicas of one document converge, on the wasm build of the
// engine through web-demo/client/engine.js. This mirrors the C test
// tests/crdt/test_convergence.c (same splitmix64 PRNG, same seeds, same shape of
// game), so the browser runs the engine the C suite checked:
// (a) randomized sessions of three or four replicas making random inserts (single
//     characters, words, pastes of up to 200 characters, with accented letters, CJK,
//     combining marks and emoji) and deletes at random and at shared positions,
//     exchanging updates through per-replica inboxes delivered in random, shuffled
//     subsets with duplicates, syncing pairs by diff or by merging an encoded state,
//     and replaying late duplicates. Every local edit is checked against a string
//     splice and every document with check() (crdt_doc_check) after each change.
//     After full delivery: same text, same state vector bytes, empty diffs, and
//     encoded states that load to the same text; a fresh observer fed the whole log
//     in random order agrees. Versions recorded during the game give their text
//     back through textAt() on every replica; restoring one merges with a concurrent
//     insert.
// (b) FugueMax: words typed concurrently at one place never interleave, in any
//     delivery order.
// (c) updates delivered before their dependencies are held and applied later.
// Seeds are fixed and printed with the game, round and step of a failure.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Rng, bytesEqual, testEngine, whereDiffer } from './lib.mjs';

const engine = await testEngine();

const MASK64 = (1n << 64n) - 1n;
const EXTRA = ['é', 'ß', '中', '文', '\u0301', '😀', '🎉', '—'];

/** Random text: mostly ASCII, with accented letters, CJK, combining marks and emoji. */
function randomText(rng, maxChars) {
  const r = rng.below(100);
  let n;
  if (r < 70) n = 1 + rng.below(4);
  else if (r < 93) n = 5 + rng.below(30);
  else n = 35 + rng.below(166);
  n = Math.min(n, maxChars);
  let s = '';
  for (let i = 0; i < n; i++) {
    if (rng.pct(85)) s += rng.pct(15) ? ' ' : String.fromCharCode(97 + rng.below(26));
    else s += EXTRA[rng.below(EXTRA.length)];
  }
  return s;
}

/** True if UTF-16 index `u` of `t` falls between the halves of a surrogate pair. */
function insidePair(t, u) {
  if (u <= 0 || u >= t.length) return false;
  const c = t.charCodeAt(u);
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Moves `u` back to a character boundary. */
function boundaryFloor(t, u) {
  while (u > 0 && insidePair(t, u)) u--;
  return u;
}

/** One game: n replicas, their inboxes, a log of every update. */
class Sim {
  constructor(seed, game, n) {
    this.seed = BigInt(seed);
    this.game = game;
    this.round = 0;
    this.step = 0;
    this.rng = new Rng((this.seed * 1000003n + BigInt(game)) & MASK64);
    this.n = n;
    this.docs = [];
    this.inbox = [];
    this.log = [];
    this.hot = 0;
    this.versions = [];
    this.recordVersions = false;
    this.stats = { ops: 0, applies: 0, diffs: 0, pendingSeen: 0, maxLen: 0 };
    const ids = [];
    for (let i = 0; i < n; i++) {
      let id;
      do {
        // Small ids and full 64-bit ones, so tie-breaks see both.
        id = this.rng.pct(50) ? BigInt(this.rng.below(8) + 1) : this.rng.next();
      } while (id === 0n || ids.includes(id));
      ids.push(id);
      this.docs.push(engine.newDoc(id));
      this.inbox.push([]);
    }
  }

  fail(msg) {
    assert.fail(`seed ${this.seed} game ${this.game} round ${this.round} step ${this.step}: ${msg}`);
  }

  checkDoc(r, what) {
    try {
      this.docs[r].check();
    } catch (err) {
      this.fail(`replica ${r}: check failed after ${what}: ${err.message}`);
    }
  }

  end() {
    for (const d of this.docs) d.free();
  }

  broadcast(from, u) {
    for (let i = 0; i < this.n; i++) if (i !== from) this.inbox[i].push(u);
    if (this.log.length < 4096) this.log.push(u);
  }

  recordVersion(r) {
    if (!this.recordVersions || this.versions.length >= 48) return;
    this.versions.push({
      replica: r, round: this.round, step: this.step,
      sv: this.docs[r].stateVector(), text: this.docs[r].text(),
    });
  }

  /** One random local edit on replica r, checked against a string splice. */
  localEdit(r) {
    const doc = this.docs[r];
    const rng = this.rng;
    const before = doc.text();
    const len = doc.length();
    const viaDiff = rng.pct(10);
    const pick = rng.below(100);
    let at;
    if (pick < 15) at = Math.min(this.hot, len);
    else if (pick < 22) at = 0;
    else if (pick < 30) at = len;
    else at = rng.below(len + 1);
    at = boundaryFloor(before, at);
    const sv0 = viaDiff ? doc.stateVector() : null;
    let expect;
    let u;
    if (len === 0 || rng.pct(len > 2500 ? 20 : 55)) {
      const ins = randomText(rng, 200);
      try {
        u = doc.insert(at, ins, !viaDiff);
      } catch (err) {
        this.fail(`replica ${r}: insert(${at}, ${JSON.stringify(ins)}): ${err.message}`);
      }
      expect = before.slice(0, at) + ins + before.slice(at);
    } else {
      if (at === len) at = boundaryFloor(before, len - 1);
      const k = rng.below(100);
      let dlen;
      if (k < 55) dlen = 1 + rng.below(3);
      else if (k < 88) dlen = 1 + rng.below(30);
      else dlen = 1 + rng.below(Math.floor(len / 2) + 1);
      let end = Math.min(at + dlen, len);
      while (insidePair(before, end)) end++;
      try {
        u = doc.delete(at, end - at, !viaDiff);
      } catch (err) {
        this.fail(`replica ${r}: delete(${at}, ${end - at}) of ${len}: ${err.message}`);
      }
      expect = before.slice(0, at) + before.slice(end);
    }
    this.checkDoc(r, 'local edit');
    const after = doc.text();
    if (after !== expect) {
      this.fail(`replica ${r}: local edit gave another text than a string splice: ${whereDiffer(after, expect)}`);
    }
    if (doc.length() !== after.length) this.fail(`replica ${r}: length ${doc.length()} != ${after.length}`);
    if (doc.utf8Length() !== new TextEncoder().encode(after).length) {
      this.fail(`replica ${r}: utf8Length disagrees with the text`);
    }
    if (viaDiff) u = doc.diff(sv0);
    this.broadcast(r, u);
    this.stats.maxLen = Math.max(this.stats.maxLen, len);
    this.stats.ops++;
    if (rng.pct(10)) this.hot = rng.below(doc.length() + 1);
  }

  apply(r, bytes, what) {
    try {
      this.docs[r].apply(bytes);
    } catch (err) {
      this.fail(`replica ${r}: apply (${what}, ${bytes.length} bytes): ${err.message}`);
    }
    this.checkDoc(r, what);
    if (this.docs[r].pending() > 0) this.stats.pendingSeen++;
    this.stats.applies++;
  }

  /** Delivers a random, shuffled subset of replica r's inbox; some come again later. */
  deliverSome(r) {
    const q = this.inbox[r];
    if (q.length === 0) return;
    const k = 1 + this.rng.below(q.length);
    for (let i = q.length - 1; i > 0; i--) {
      const j = this.rng.below(i + 1);
      [q[i], q[j]] = [q[j], q[i]];
    }
    const keep = [];
    for (let i = 0; i < q.length; i++) {
      if (i < k) {
        this.apply(r, q[i], 'inbox delivery');
        if (this.rng.pct(12)) keep.push(q[i]); // delivered, but will come again
      } else {
        keep.push(q[i]);
      }
    }
    this.inbox[r] = keep;
  }

  /** Replica y gets from x what it lacks, by state vector and diff. */
  diffSync(x, y) {
    this.apply(y, this.docs[x].diff(this.docs[y].stateVector()), 'diff sync');
    this.stats.diffs++;
  }

  /** Replica y merges x's whole encoded state as an update. */
  stateMerge(x, y) {
    this.apply(y, this.docs[x].encodeState(), "merge of another replica's encoded state");
    this.stats.diffs++;
  }

  stepOnce() {
    const rng = this.rng;
    const a = rng.below(100);
    const r = rng.below(this.n);
    if (a < 55) {
      this.localEdit(r);
    } else if (a < 88) {
      this.deliverSome(r);
    } else if (a < 91) {
      const x = rng.below(this.n);
      if (x !== r) this.diffSync(x, r);
    } else if (a < 93) {
      const x = rng.below(this.n);
      if (x !== r) this.stateMerge(x, r);
    } else if (a < 96) {
      if (this.log.length > 0) this.apply(r, this.log[rng.below(this.log.length)], 'late duplicate');
    } else {
      this.recordVersion(r);
    }
  }

  /** Delivers every inbox completely, shuffled, with some duplicates. */
  flush() {
    let busy = true;
    while (busy) {
      busy = false;
      for (let r = 0; r < this.n; r++) {
        if (this.inbox[r].length > 0) {
          busy = true;
          this.deliverSome(r);
        }
      }
    }
  }

  checkVersions(allReplicas) {
    this.versions.forEach((v, i) => {
      for (let r = 0; r < this.n; r++) {
        if (!allReplicas && r !== v.replica) continue;
        let t;
        try {
          t = this.docs[r].textAt(v.sv);
        } catch (err) {
          this.fail(`replica ${r}: textAt(version ${i} of replica ${v.replica}): ${err.message}`);
        }
        if (t !== v.text) {
          this.fail(`replica ${r}: textAt(version ${i} of replica ${v.replica}, round ${v.round} ` +
            `step ${v.step}) differs from the text then: ${whereDiffer(t, v.text)}`);
        }
      }
    });
  }

  /** After full delivery: one text, one state vector, states that load back. */
  checkConverged() {
    const t0 = this.docs[0].text();
    const sv0 = this.docs[0].stateVector();
    for (let r = 0; r < this.n; r++) {
      const doc = this.docs[r];
      if (doc.pending() !== 0) this.fail(`replica ${r}: ${doc.pending()} operations pending after full delivery`);
      const t = doc.text();
      if (t !== t0) this.fail(`replicas 0 and ${r} diverged: ${whereDiffer(t0, t)}`);
      const sv = doc.stateVector();
      if (!bytesEqual(sv, sv0)) this.fail(`replica ${r} has another state vector than replica 0`);
      this.apply(r, doc.diff(sv), 'empty diff');
      const st = doc.encodeState();
      if (r === 0) {
        this.apply(1, st, "merge of an equal replica's state");
        if (this.docs[1].text() !== t0) this.fail("merging replica 0's state into replica 1 changed it");
      }
      const loaded = engine.loadDoc(0xfeedn, st);
      try {
        loaded.check();
        if (loaded.text() !== t0) this.fail(`replica ${r}: loaded copy has another text`);
        if (!bytesEqual(loaded.stateVector(), sv0)) this.fail(`replica ${r}: loaded copy has another state vector`);
      } finally {
        loaded.free();
      }
    }
  }

  /** A fresh replica fed the whole log of the game in random order. */
  checkObserver() {
    const n = this.log.length;
    if (n === 0 || n >= 4096) return; // the log is incomplete once capped
    const order = [...Array(n).keys()];
    for (let i = n - 1; i > 0; i--) {
      const j = this.rng.below(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const obs = engine.newDoc(0xabcdefn);
    try {
      for (const i of order) obs.apply(this.log[i]);
      obs.check();
      if (obs.pending() !== 0) this.fail(`observer: ${obs.pending()} operations pending after the whole log`);
      const want = this.docs[0].text();
      const got = obs.text();
      if (got !== want) this.fail(`observer fed the log in random order has another text: ${whereDiffer(got, want)}`);
    } finally {
      obs.free();
    }
  }
}

/** Runs `games` games of `rounds` rounds on one seed; adds its statistics to `total`. */
function runRandomSessions(seed, games, rounds, recordVersions, total) {
  for (let g = 0; g < games; g++) {
    const s = new Sim(seed, g, 3 + (g % 2));
    s.recordVersions = recordVersions;
    try {
      for (s.round = 0; s.round < rounds; s.round++) {
        const steps = 5 + s.rng.below(40);
        for (s.step = 0; s.step < steps; s.step++) s.stepOnce();
        if (recordVersions) s.checkVersions(false);
        s.step = -1;
        s.flush();
        s.checkConverged();
        if (recordVersions) s.checkVersions(true);
      }
      s.checkObserver();
    } finally {
      s.end();
    }
    for (const k of Object.keys(total)) {
      total[k] = k === 'maxLen' ? Math.max(total[k], s.stats[k]) : total[k] + s.stats[k];
    }
  }
}

test('random sessions converge (seeds of test_apply_update_random_sessions_converge)', (t) => {
  // The C test plays 10 games of 40 rounds per seed. The PRNG calls here are the
  // C test's, in the same order, so these are the same games; by default the first
  // 6 games and their first 25 rounds keep the run short. WEFT_FULL=1 plays all of
  // them (its totals then equal the ones the C test prints).
  const full = process.env.WEFT_FULL === '1';
  const total = { ops: 0, applies: 0, diffs: 0, pendingSeen: 0, maxLen: 0 };
  for (const seed of [1n, 0x5eedn, 20261125n, 0xdeadbeefcafen]) {
    runRandomSessions(seed, full ? 10 : 6, full ? 40 : 25, false, total);
  }
  t.diagnostic(`${total.ops} edits, ${total.applies} applies (${total.pendingSeen} with ops pending), ` +
    `${total.diffs} diff syncs, longest text ${total.maxLen} units`);
  assert.ok(total.pendingSeen > 0, 'some deliveries must have been held');
  if (full) {
    // What build/crdt_test_convergence prints for the same games (checked 2026-11-25).
    assert.deepEqual(total, { ops: 21799, applies: 71699, diffs: 1470, pendingSeen: 34542, maxLen: 1524 });
  }
});

test('versions recorded during random sessions: textAt on every replica', (t) => {
  const total = { ops: 0, applies: 0, diffs: 0, pendingSeen: 0, maxLen: 0 };
  for (const seed of [7n, 0xc0ffeen]) runRandomSessions(seed, 4, 15, true, total);
  t.diagnostic(`${total.ops} edits`);
});

test('restoring random versions merges with concurrent inserts (as test_restore_random_versions_converge)', (t) => {
  let restores = 0;
  for (const seed of [11n, 0xabad1dean]) {
    for (let g = 0; g < 6; g++) {
      const s = new Sim(seed, g, 3);
      s.recordVersions = true;
      try {
        for (s.round = 0; s.round < 12; s.round++) {
          const steps = 10 + s.rng.below(30);
          for (s.step = 0; s.step < steps; s.step++) s.stepOnce();
          s.step = -1;
          s.flush();
          s.checkConverged();
          if (s.versions.length === 0) continue;
          const v = s.versions[s.rng.below(s.versions.length)];
          const r = s.rng.below(3);
          const o = (r + 1) % 3;
          const ur = s.docs[r].restore(v.sv);
          s.checkDoc(r, 'restore');
          if (s.docs[r].text() !== v.text) s.fail(`restore gave another text than the version's: ${whereDiffer(s.docs[r].text(), v.text)}`);
          // A concurrent insert elsewhere survives the merge.
          const marker = `<#${g}.${s.round}>`;
          const to = s.docs[o].text();
          const uo = s.docs[o].insert(boundaryFloor(to, s.rng.below(s.docs[o].length() + 1)), marker);
          s.broadcast(r, ur);
          s.broadcast(o, uo);
          s.flush();
          s.checkConverged();
          const merged = s.docs[0].text();
          if (!merged.includes(marker)) s.fail(`concurrent insert ${marker} lost in the merge with a restore`);
          if (merged.replace(marker, '') !== v.text) {
            s.fail(`after restore and a concurrent insert, the text without the insert is not the version's: ${whereDiffer(merged.replace(marker, ''), v.text)}`);
          }
          restores++;
          s.checkVersions(true);
        }
      } finally {
        s.end();
      }
    }
  }
  // Same games as the C test: both print 143 restores (2026-11-25).
  t.diagnostic(`${restores} restores merged with concurrent inserts`);
  assert.ok(restores > 50);
});

/** Types `word` at `at`: forwards, or backwards (last character first, each at `at`). */
function typeWord(doc, at, word, backwards) {
  const us = [];
  const chars = [...word];
  for (let i = 0; i < chars.length; i++) {
    const k = backwards ? chars.length - 1 - i : i;
    us.push(doc.insert(backwards ? at : at + i, chars[k]));
    doc.check();
  }
  return us;
}

/** Is `text` prefix + some order of the words + suffix? */
function isConcatenation(text, prefix, suffix, words) {
  if (!text.startsWith(prefix) || !text.endsWith(suffix) || text.length < prefix.length + suffix.length) return false;
  let mid = text.slice(prefix.length, text.length - suffix.length);
  const left = new Set(words);
  while (mid.length > 0) {
    const w = [...left].find((x) => mid.startsWith(x));
    if (w === undefined) return false;
    left.delete(w);
    mid = mid.slice(w.length);
  }
  return left.size === 0;
}

/** As run_no_interleave() in the C test. */
function runNoInterleave(base, at, words, backwards, ids) {
  const origin = engine.newDoc(999n);
  if (base) origin.insert(0, base);
  const st = origin.encodeState();
  origin.free();
  const docs = [];
  const us = [];
  words.forEach((w, i) => {
    docs.push(engine.loadDoc(ids[i], st));
    us.push(typeWord(docs[i], at, w, (backwards >> i) & 1));
  });
  for (let i = 0; i < words.length; i++) {
    for (let j = 0; j < words.length; j++) if (j !== i) for (const u of us[j]) docs[i].apply(u);
  }
  const perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  let want = null;
  for (let order = 0; order < 7; order++) {
    const obs = engine.loadDoc(4242n, st);
    if (order < 6) {
      for (const j of perms[order]) if (j < words.length) for (const u of us[j]) obs.apply(u);
    } else {
      for (let k = 0; k < 16; k++) for (let j = words.length - 1; j >= 0; j--) if (k < us[j].length) obs.apply(us[j][k]);
    }
    const t = obs.text();
    obs.free();
    if (want === null) want = t;
    else assert.equal(t, want, `delivery order ${order}`);
  }
  assert.ok(isConcatenation(want, base.slice(0, at), base.slice(at), words),
    `words interleaved: ${JSON.stringify(want)} (base ${JSON.stringify(base)}, at ${at}, backwards mask ${backwards})`);
  for (const d of docs) {
    assert.equal(d.text(), want);
    d.free();
  }
}

test('concurrent words at one place never interleave (FugueMax), two and three replicas', () => {
  for (const ids of [[1n, 2n], [2n, 1n]]) {
    for (let mask = 0; mask <= 3; mask++) runNoInterleave('', 0, ['abc', 'xyz'], mask, ids);
    runNoInterleave('hello world', 5, ['abc', 'xyz'], 0, ids);
    runNoInterleave('hello world', 5, ['ab😀', '中文z'], 1, ids);
  }
  for (const ids of [[1n, 2n, 3n], [3n, 2n, 1n], [2n, 3n, 1n], [(1n << 64n) - 1n, 7n, 1n << 40n]]) {
    for (let mask = 0; mask < 8; mask++) runNoInterleave('', 0, ['abcd', 'xyz', '12345'], mask, ids);
    runNoInterleave('[]', 1, ['abcd', 'xyz', '12345'], 5, ids);
  }
});

test('updates delivered in random order are held until their dependencies arrive', () => {
  const rng = new Rng(0x701d);
  for (let round = 0; round < 20; round++) {
    const a = engine.newDoc(1n);
    const b = engine.newDoc(2n);
    const us = [];
    for (let i = 0; i < 30; i++) {
      const len = a.length();
      if (len > 0 && rng.pct(30)) {
        const at = boundaryFloor(a.text(), rng.below(len));
        let end = at + 1;
        while (insidePair(a.text(), end)) end++;
        us.push(a.delete(at, end - at));
      } else {
        us.push(a.insert(boundaryFloor(a.text(), rng.below(len + 1)), randomText(rng, 8)));
      }
    }
    for (let i = us.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [us[i], us[j]] = [us[j], us[i]];
    }
    let held = 0;
    for (const u of us) {
      b.apply(u);
      b.check();
      if (b.pending() > 0) held++;
    }
    assert.equal(b.pending(), 0, `round ${round}`);
    assert.equal(b.text(), a.text(), `round ${round}`);
    assert.ok(round > 0 || held > 0);
    a.free();
    b.free();
  }
});
