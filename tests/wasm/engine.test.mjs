// SPDX-License-Identifier: MIT
//
// engine.test.mjs: web-demo/client/engine.js over build/wasm/crdt.wasm: every way
// of loading the module, each Doc method against what crdt.h promises (UTF-16
// indexes, errors as WeftError with the crdt.h code, relative positions and null
// for an unknown anchor, versions, restore, setReplica), and no leak in the wasm
// heap: the module's memory stays the same size over thousands of create / edit /
// encode / load / free cycles once warmed up.
//
// Run: node --test tests/wasm/*.test.mjs   (WEFT_WASM=path/to/crdt.wasm to test another build)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';

import {
  ASSOC_AFTER, ASSOC_BEFORE, ERRORS, WeftError, loadEngine,
} from '../../web-demo/client/engine.js';
import { Rng, WASM_PATH, bytesEqual, testEngine, whereDiffer } from './lib.mjs';

const engine = await testEngine();

/** Asserts that fn throws a WeftError with `code`. */
function throwsCode(fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof WeftError, `WeftError expected, got ${err}`);
    assert.equal(err.code, code);
    assert.equal(err.message, engine.strerror(code));
    return true;
  });
}

test('loadEngine accepts a path, a file: URL, bytes, an ArrayBuffer, a Module and a Response', async () => {
  const bytes = readFileSync(WASM_PATH);
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const sources = [
    WASM_PATH,
    pathToFileURL(WASM_PATH),
    pathToFileURL(WASM_PATH).href,
    new Uint8Array(bytes),
    ab,
    new WebAssembly.Module(bytes),
    new Response(bytes, { headers: { 'content-type': 'application/wasm' } }),
    new Response(bytes), // no wasm MIME type: read, then instantiated
  ];
  for (const src of sources) {
    const e = await loadEngine(src);
    const d = e.newDoc(1n);
    d.insert(0, 'ok');
    assert.equal(d.text(), 'ok');
    d.free();
  }
  await assert.rejects(loadEngine(new Response('nope', { status: 404 })), /HTTP 404/);
  await assert.rejects(loadEngine(42), TypeError);
});

test('the module needs no imports', () => {
  const mod = new WebAssembly.Module(readFileSync(WASM_PATH));
  assert.deepEqual(WebAssembly.Module.imports(mod), []);
});

test('insert, delete, text and length count UTF-16 units like JS strings', () => {
  const d = engine.newDoc(7n);
  try {
    assert.equal(d.replica, 7n);
    assert.equal(d.text(), '');
    assert.equal(d.length(), 0);
    const u = d.insert(0, 'a😀中b');
    assert.ok(u instanceof Uint8Array && u.length > 0);
    assert.equal(d.text(), 'a😀中b');
    assert.equal(d.length(), 'a😀中b'.length);
    assert.equal(d.utf8Length(), new TextEncoder().encode('a😀中b').length);
    d.delete(1, 2); // the emoji
    assert.equal(d.text(), 'a中b');
    assert.equal(d.insert(3, 'é', false), null);
    assert.equal(d.text(), 'a中bé');
    assert.equal(d.delete(0, 1, false), null);
    assert.equal(d.text(), '中bé');
    assert.ok(d.memBytes() > 0);
    d.check();
  } finally {
    d.free();
  }
});

test('errors are WeftErrors with the crdt.h code and leave the document unchanged', () => {
  const d = engine.newDoc(8n);
  try {
    d.insert(0, 'x😀y');
    throwsCode(() => d.insert(2, 'z'), ERRORS.EINDEX); // inside the emoji
    throwsCode(() => d.insert(5, 'z'), ERRORS.EINDEX); // past the end
    throwsCode(() => d.delete(1, 1), ERRORS.EINDEX); // half an emoji
    throwsCode(() => d.delete(3, 5), ERRORS.EINDEX);
    throwsCode(() => d.insert(-1, 'z'), ERRORS.EINDEX);
    throwsCode(() => d.apply(new Uint8Array(32).fill(0xff)), ERRORS.EFORMAT); // version byte
    const g = engine.newDoc(9n);
    const good = g.insert(0, 'abc');
    g.free();
    throwsCode(() => d.apply(good.subarray(0, good.length - 1)), ERRORS.EMALFORMED);
    assert.throws(() => d.insert(1.5, 'z'), TypeError);
    assert.throws(() => d.insert(0, 5), TypeError);
    assert.equal(d.text(), 'x😀y');
    d.check();
    const err = (() => {
      try {
        d.insert(9, 'z');
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.equal(err.name, 'WeftError');
    assert.equal(err.op, 'insert');
    assert.match(err.message, /index out of range/);
  } finally {
    d.free();
  }
});

test('replica ids: bigint or safe Number, 1 .. 2^64 - 1', () => {
  const big = (1n << 64n) - 1n;
  const d = engine.newDoc(big);
  assert.equal(d.replica, big);
  d.free();
  const n = engine.newDoc(2 ** 53 - 1);
  assert.equal(n.replica, 2n ** 53n - 1n);
  n.free();
  assert.throws(() => engine.newDoc(0n), RangeError);
  assert.throws(() => engine.newDoc(1n << 64n), RangeError);
  assert.throws(() => engine.newDoc(2 ** 60), TypeError);
  assert.throws(() => engine.newDoc('1'), TypeError);
});

test('two replicas converge through updates, diffs and encoded states', () => {
  const a = engine.newDoc(1n);
  const b = engine.newDoc(2n);
  try {
    const base = a.insert(0, '[]');
    b.apply(base);
    const ua = [];
    const ub = [];
    for (const ch of 'hello') ua.push(a.insert(a.length() - 1, ch));
    for (const ch of '世界🌍') ub.push(b.insert(b.length() - 1, ch));
    for (const u of ua.toReversed()) b.apply(u); // held until the first arrives
    for (const u of ub) a.apply(u);
    b.apply(ua[0]); // duplicate
    assert.equal(b.pending(), 0);
    assert.equal(a.text(), b.text());
    assert.ok(['[hello世界🌍]', '[世界🌍hello]'].includes(a.text()), a.text());
    assert.ok(bytesEqual(a.stateVector(), b.stateVector()));

    const c = engine.newDoc(3n);
    c.insert(0, 'offline ');
    const toC = a.diff(c.stateVector());
    const toA = c.diff(a.stateVector());
    c.apply(toC);
    a.apply(toA);
    assert.equal(c.text(), a.text());
    assert.equal(a.diff(a.stateVector()).length > 0, true); // an empty update still has a header
    const loaded = engine.loadDoc(4n, a.encodeState());
    assert.equal(loaded.text(), a.text());
    assert.equal(loaded.replica, 4n);
    const fresh = engine.newDoc(5n);
    fresh.apply(a.diff(null));
    assert.equal(fresh.text(), a.text());
    const st = a.encodeState();
    throwsCode(() => engine.loadDoc(6n, st.subarray(0, st.length - 2)), ERRORS.EMALFORMED);
    for (const d of [c, loaded, fresh]) d.free();
  } finally {
    a.free();
    b.free();
  }
});

test('held updates: pending() counts them until their dependencies arrive', () => {
  const a = engine.newDoc(10n);
  const b = engine.newDoc(11n);
  const u1 = a.insert(0, 'ab');
  const u2 = a.insert(2, 'cd');
  b.apply(u2);
  assert.equal(b.text(), '');
  assert.ok(b.pending() > 0);
  b.apply(u1);
  assert.equal(b.pending(), 0);
  assert.equal(b.text(), 'abcd');
  a.free();
  b.free();
});

test('textAt and restore', () => {
  const a = engine.newDoc(20n);
  const b = engine.newDoc(21n);
  b.apply(a.insert(0, 'hello world'));
  const v1 = a.stateVector();
  b.apply(a.delete(0, 6));
  b.apply(a.insert(0, 'goodbye '));
  assert.equal(a.textAt(v1), 'hello world');
  assert.equal(a.textAt(null), '');
  const other = engine.newDoc(22n);
  other.insert(0, 'zzz');
  throwsCode(() => a.textAt(other.stateVector()), ERRORS.EVERSION);
  const ub = b.insert(b.length(), '!!');
  const ur = a.restore(v1);
  assert.equal(a.text(), 'hello world');
  a.apply(ub);
  b.apply(ur);
  assert.equal(a.text(), 'hello world!!');
  assert.equal(b.text(), a.text());
  for (const d of [a, b, other]) d.free();
});

/** The texts a comparison's spans spell: [from, to]. Also checks units and merging. */
function spell(spans) {
  let from = '';
  let to = '';
  spans.forEach((s, i) => {
    assert.ok(['kept', 'inserted', 'deleted'].includes(s.kind), s.kind);
    assert.equal(typeof s.author, 'bigint');
    assert.equal(s.units, s.text.length, `units of ${JSON.stringify(s.text)}`);
    assert.ok(s.units > 0, 'no empty span');
    const prev = spans[i - 1];
    assert.ok(!prev || prev.kind !== s.kind || prev.author !== s.author, 'neighbours of one kind and author are merged');
    if (s.kind !== 'inserted') from += s.text;
    if (s.kind !== 'deleted') to += s.text;
  });
  return [from, to];
}

test('compare: kept, inserted and deleted spans with their authors', () => {
  const a = engine.newDoc(60n);
  const b = engine.newDoc(61n);
  b.apply(a.insert(0, 'hello world'));
  const v1 = a.stateVector();
  b.apply(a.delete(0, 6)); // Ada deletes "hello "
  a.apply(b.insert(b.length(), ' 😀中')); // Bob appends
  assert.deepEqual(a.compare(v1), [
    { kind: 'deleted', author: 60n, units: 6, text: 'hello ' },
    { kind: 'kept', author: 60n, units: 5, text: 'world' },
    { kind: 'inserted', author: 61n, units: 4, text: ' 😀中' },
  ]);
  // From the empty version: who wrote each part of today's text.
  assert.deepEqual(a.compare(null), [
    { kind: 'inserted', author: 60n, units: 5, text: 'world' },
    { kind: 'inserted', author: 61n, units: 4, text: ' 😀中' },
  ]);
  // Backwards: what v1 has that today lacks is "inserted"; today's additions are
  // deleted with no deleter (no deletion inside v1 removed them).
  const now = a.stateVector();
  assert.deepEqual(spell(a.compare(now, v1)), ['world 😀中', 'hello world']);
  assert.equal(a.compare(now, v1).at(-1).author, 0n);
  // Same version on both sides: one kept span; the empty version on both: none.
  assert.deepEqual(a.compare(v1, v1), [{ kind: 'kept', author: 60n, units: 11, text: 'hello world' }]);
  assert.deepEqual(a.compare(null, new Uint8Array(0)), []);
  assert.deepEqual(engine.newDoc(62n).compare(null), []);
  // Versions the document has not seen, and malformed ones.
  const other = engine.newDoc(63n);
  other.insert(0, 'zzz');
  throwsCode(() => a.compare(other.stateVector()), ERRORS.EVERSION);
  throwsCode(() => a.compare(v1, other.stateVector()), ERRORS.EVERSION);
  throwsCode(() => a.compare(new Uint8Array([0xff, 0xff])), ERRORS.EMALFORMED);
  for (const d of [a, b, other]) d.free();
});

test('compare: spans spell both texts between every pair of versions of random edits', () => {
  const rng = new Rng(0xc0ffeen);
  const docs = [engine.newDoc(70n), engine.newDoc(71n), engine.newDoc(72n)];
  const alphabet = ['a', 'b', ' ', '\n', 'é', '中', '😀'];
  const versions = [];
  for (let step = 0; step < 120; step++) {
    const d = docs[rng.below(docs.length)];
    const t = d.text();
    const boundary = (i) => (i > 0 && i < t.length && /[\udc00-\udfff]/.test(t[i]) ? i - 1 : i);
    if (t.length > 0 && rng.pct(35)) {
      const i = boundary(rng.below(t.length));
      let end = boundary(Math.min(t.length, i + 1 + rng.below(4)));
      if (end <= i) end = Math.min(t.length, i + 2);
      d.delete(i, end - i, false);
    } else {
      let word = '';
      for (let k = 1 + rng.below(4); k > 0; k--) word += alphabet[rng.below(alphabet.length)];
      d.insert(boundary(rng.below(t.length + 1)), word, false);
    }
    if (rng.pct(30)) {
      // Sync two replicas: the first one's versions now include the other's edits.
      const x = docs[rng.below(docs.length)];
      const y = docs[rng.below(docs.length)];
      if (x !== y) x.apply(y.diff(x.stateVector()));
    }
    if (step % 8 === 0) versions.push({ sv: d.stateVector(), doc: d });
  }
  // Every version is known to a document that has everything.
  const all = engine.newDoc(79n);
  for (const d of docs) all.apply(d.encodeState());
  versions.push({ sv: all.stateVector(), doc: all });
  let pairs = 0;
  for (const v of versions) {
    for (const w of versions) {
      const [from, to] = spell(all.compare(v.sv, w.sv));
      const wantFrom = all.textAt(v.sv);
      const wantTo = all.textAt(w.sv);
      assert.ok(from === wantFrom, `from: ${whereDiffer(from, wantFrom)}`);
      assert.ok(to === wantTo, `to: ${whereDiffer(to, wantTo)}`);
      pairs++;
    }
    // On the replica that made the version, up to its current state.
    const [old, cur] = spell(v.doc.compare(v.sv));
    assert.equal(old, v.doc.textAt(v.sv));
    assert.equal(cur, v.doc.text());
  }
  assert.ok(pairs > 200);
  for (const d of [...docs, all]) d.free();
});

test('relative positions: round trip, follow edits, null for an unknown anchor', () => {
  const a = engine.newDoc(30n);
  const b = engine.newDoc(31n);
  b.apply(a.insert(0, 'a😀bc'));
  const t = a.text();
  for (let i = 0; i <= t.length; i++) {
    if (i === 2) continue; // inside the emoji
    for (const assoc of [ASSOC_BEFORE, ASSOC_AFTER]) {
      assert.equal(a.relposToIndex(a.relposFromIndex(i, assoc)), i, `index ${i} assoc ${assoc}`);
    }
  }
  throwsCode(() => a.relposFromIndex(2), ERRORS.EINDEX);
  throwsCode(() => a.relposFromIndex(0, 0), ERRORS.EINVAL);
  const pos = a.relposFromIndex(3); // before 'b'
  assert.ok(pos.length <= 16);
  b.apply(a.insert(0, 'XY'));
  assert.equal(a.relposToIndex(pos), 5);
  assert.equal(b.relposToIndex(pos), 5);
  // An anchor this document has never seen.
  const c = engine.newDoc(32n);
  c.insert(0, 'zz');
  const unknown = c.relposFromIndex(1);
  assert.equal(a.relposToIndex(unknown), null);
  throwsCode(() => a.relposToIndex(new Uint8Array([0xff])), ERRORS.EMALFORMED);
  for (const d of [a, b, c]) d.free();
});

test('setReplica keeps the history and the object; later edits use the new id', () => {
  const a = engine.newDoc(40n);
  const b = engine.newDoc(41n);
  const u1 = a.insert(0, 'one ');
  a.setReplica(42n);
  assert.equal(a.replica, 42n);
  assert.equal(a.text(), 'one ');
  const u2 = a.insert(4, 'two');
  b.apply(u2);
  assert.ok(b.pending() > 0);
  b.apply(u1); // bytes made under the old id stay valid
  assert.equal(b.text(), 'one two');
  a.check();
  a.free();
  b.free();
});

test('free() twice is fine; a freed Doc refuses to be used', () => {
  const d = engine.newDoc(50n);
  d.free();
  d.free();
  assert.equal(d.freed, true);
  assert.throws(() => d.text(), /after free/);
});

test('no leak: the wasm memory stays the same size over many operations', () => {
  const e = engine;
  const payload = 'lorem ipsum 😀 中文 '.repeat(40); // ~700 units, ~1 KB of UTF-8
  const cycle = (i) => {
    const a = e.newDoc(BigInt(1000 + i));
    const b = e.newDoc(BigInt(5000 + i));
    const ups = [];
    for (let k = 0; k < 8; k++) ups.push(a.insert(a.length(), payload));
    ups.push(a.delete(10, 300));
    for (const u of ups) b.apply(u);
    const sv = b.stateVector();
    const c = e.loadDoc(9n, a.encodeState());
    c.apply(a.diff(sv));
    a.relposToIndex(a.relposFromIndex(50));
    assert.equal(c.textAt(sv), b.text());
    assert.equal(c.compare(sv).length > 0, true);
    try {
      c.compare(a.stateVector(), new Uint8Array([0xff]));
    } catch {
      // an error of compare must not leak either
    }
    b.restore(null);
    try {
      b.insert(1e6, 'x');
    } catch {
      // the error path must not leak either
    }
    try {
      c.apply(new Uint8Array(200).fill(0x7f));
    } catch {
      // nor a rejected update
    }
    a.free();
    b.free();
    c.free();
  };
  for (let i = 0; i < 50; i++) cycle(i);
  const before = e.memoryBytes;
  for (let i = 0; i < 1000; i++) cycle(i); // ~10 MB of update bytes through the heap
  assert.equal(e.memoryBytes, before, `memory grew from ${before} to ${e.memoryBytes} bytes`);
});
