// SPDX-License-Identifier: MIT
//
// smoke.mjs: checks the WebAssembly build of the crdt/ engine (build/wasm/crdt.wasm,
// made by scripts/build-wasm.sh) from JavaScript, the way the browser will use it:
// instantiation with no imports, byte buffers across the boundary, UTF-16 indexes
// with emoji and CJK text, concurrent edits that converge without interleaving,
// sync by state vector and diff, encode/load, text at an older version, restore,
// and relative positions. Needs only Node.js (no npm packages).
//
// Usage: node tests/wasm/smoke.mjs [path/to/crdt.wasm]
// Prints one line per check and ends with "<N> passed, <M> failed"; exits 1 on failure.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const wasmPath = process.argv[2] ?? path.join(here, '..', '..', 'build', 'wasm', 'crdt.wasm');

// Error codes from crdt.h.
const CRDT_EINDEX = -3;
const CRDT_EVERSION = -10;
const ASSOC_BEFORE = -1;
const ASSOC_AFTER = 1;

class CrdtError extends Error {
  constructor(code, what, text) {
    super(`${what}: ${text} (${code})`);
    this.code = code;
  }
}

// A thin JavaScript binding over crdt/wasm/exports.c.
class Engine {
  constructor(instance) {
    this.x = instance.exports;
    this.encoder = new TextEncoder();
    this.decoder = new TextDecoder('utf-8', { fatal: true });
    this.x._initialize();
    this.buf = this.x.weft_buf_new() >>> 0;
    if (this.buf === 0) throw new Error('weft_buf_new failed');
  }

  // A fresh view each time: memory growth detaches older ones.
  get u8() {
    return new Uint8Array(this.x.memory.buffer);
  }

  // Copies `bytes` into wasm memory for the duration of fn(ptr, len).
  withBytes(bytes, fn) {
    const ptr = this.x.weft_alloc(bytes.length) >>> 0;
    if (ptr === 0) throw new Error('weft_alloc failed');
    this.u8.set(bytes, ptr);
    try {
      return fn(ptr, bytes.length);
    } finally {
      this.x.weft_free(ptr);
    }
  }

  // Copies out what the shared buffer handle holds, then releases those bytes.
  take() {
    const base = this.x.weft_buf_base(this.buf) >>> 0;
    const len = this.x.weft_buf_len(this.buf) >>> 0;
    const bytes = this.u8.slice(base, base + len);
    this.x.weft_buf_reset(this.buf);
    return bytes;
  }

  cString(ptr) {
    const u8 = this.u8;
    let end = ptr;
    while (u8[end] !== 0) end++;
    return this.decoder.decode(u8.subarray(ptr, end));
  }

  strerror(code) {
    return this.cString(this.x.weft_strerror(code) >>> 0);
  }

  check(rc, what) {
    if (rc < 0) throw new CrdtError(rc, what, this.strerror(rc));
    return rc;
  }
}

const halves = (client) => [Number(client >> 32n), Number(client & 0xffffffffn)];

class Doc {
  constructor(engine, ptr) {
    this.e = engine;
    this.x = engine.x;
    this.ptr = ptr;
  }

  static create(engine, client) {
    const ptr = engine.x.weft_doc_new(...halves(client)) >>> 0;
    if (ptr === 0) throw new Error('weft_doc_new failed');
    return new Doc(engine, ptr);
  }

  static load(engine, client, bytes) {
    const cell = engine.x.weft_alloc(4) >>> 0;
    try {
      engine.withBytes(bytes, (p, n) =>
        engine.check(engine.x.weft_doc_load(...halves(client), p, n, cell), 'load'));
      return new Doc(engine, new DataView(engine.x.memory.buffer).getUint32(cell, true));
    } finally {
      engine.x.weft_free(cell);
    }
  }

  free() {
    this.x.weft_doc_free(this.ptr);
    this.ptr = 0;
  }

  client() {
    const hi = this.x.weft_doc_client_hi(this.ptr) >>> 0;
    const lo = this.x.weft_doc_client_lo(this.ptr) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  length() {
    return this.x.weft_doc_length(this.ptr) >>> 0;
  }

  utf8Length() {
    return this.x.weft_doc_utf8_length(this.ptr) >>> 0;
  }

  pending() {
    return this.x.weft_doc_pending(this.ptr) >>> 0;
  }

  text() {
    this.e.check(this.x.weft_doc_text(this.ptr, this.e.buf), 'text');
    return this.e.decoder.decode(this.e.take());
  }

  // Raw insert: returns the error code (0 or negative) and the update bytes.
  tryInsert(index, str) {
    const rc = this.e.withBytes(this.e.encoder.encode(str), (p, n) =>
      this.x.weft_doc_insert(this.ptr, index, p, n, this.e.buf));
    return { rc, update: rc === 0 ? this.e.take() : null };
  }

  insert(index, str) {
    const { rc, update } = this.tryInsert(index, str);
    this.e.check(rc, 'insert');
    return update;
  }

  tryDelete(index, len) {
    const rc = this.x.weft_doc_delete(this.ptr, index, len, this.e.buf);
    return { rc, update: rc === 0 ? this.e.take() : null };
  }

  delete(index, len) {
    const { rc, update } = this.tryDelete(index, len);
    this.e.check(rc, 'delete');
    return update;
  }

  tryApply(bytes) {
    return this.e.withBytes(bytes, (p, n) => this.x.weft_doc_apply_update(this.ptr, p, n));
  }

  apply(bytes) {
    this.e.check(this.tryApply(bytes), 'apply_update');
  }

  stateVector() {
    this.e.check(this.x.weft_doc_state_vector(this.ptr, this.e.buf), 'state_vector');
    return this.e.take();
  }

  diff(sv) {
    this.e.withBytes(sv, (p, n) =>
      this.e.check(this.x.weft_doc_diff(this.ptr, p, n, this.e.buf), 'diff'));
    return this.e.take();
  }

  encodeState() {
    this.e.check(this.x.weft_doc_encode_state(this.ptr, this.e.buf), 'encode_state');
    return this.e.take();
  }

  tryTextAt(version) {
    const rc = this.e.withBytes(version, (p, n) =>
      this.x.weft_doc_text_at(this.ptr, p, n, this.e.buf));
    return { rc, text: rc === 0 ? this.e.decoder.decode(this.e.take()) : null };
  }

  textAt(version) {
    const { rc, text } = this.tryTextAt(version);
    this.e.check(rc, 'text_at');
    return text;
  }

  restore(version) {
    this.e.withBytes(version, (p, n) =>
      this.e.check(this.x.weft_doc_restore(this.ptr, p, n, this.e.buf), 'restore'));
    return this.e.take();
  }

  relposFromIndex(index, assoc) {
    const max = this.x.weft_relpos_max() >>> 0;
    const out = this.x.weft_alloc(max) >>> 0;
    try {
      const n = this.e.check(
        this.x.weft_doc_relpos_from_index(this.ptr, index, assoc, out), 'relpos_from_index');
      if (n < 1 || n > max) throw new Error(`relpos length ${n} outside 1..${max}`);
      return this.e.u8.slice(out, out + n);
    } finally {
      this.x.weft_free(out);
    }
  }

  relposToIndex(bytes) {
    return this.e.withBytes(bytes, (p, n) =>
      this.e.check(this.x.weft_doc_relpos_to_index(this.ptr, p, n), 'relpos_to_index'));
  }

  check() {
    this.e.check(this.x.weft_doc_check(this.ptr), 'check');
  }
}

// ---- the checks ------------------------------------------------------------

let passed = 0;
let failed = 0;

function test(name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(err && err.stack ? err.stack : err).replace(/\n/g, '\n  ')}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

function eq(actual, expected, msg) {
  if (actual !== expected) {
    throw new Error(`${msg}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

function bytesEqual(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// Types `str` into `doc` one code point at a time starting at `index`, as an editor
// would, and returns the update of every keystroke.
function type(doc, index, str) {
  const updates = [];
  for (const ch of str) {
    updates.push(doc.insert(index, ch));
    index += ch.length;
  }
  return updates;
}

// A throw outside a check (a trap, say) still ends with the summary line.
process.on('uncaughtException', (err) => {
  failed++;
  console.log(`not ok - uncaught: ${err && err.stack ? err.stack : err}`);
  finish();
});

function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

let bytes;
try {
  bytes = readFileSync(wasmPath);
} catch (err) {
  console.log(`not ok - read ${wasmPath}: ${err.message}`);
  failed++;
  finish();
}

const wasmModule = new WebAssembly.Module(bytes);
const imports = WebAssembly.Module.imports(wasmModule);

test('module needs no imports (instantiates with {})', () => {
  eq(imports.map((i) => `${i.module}.${i.name}`).join(', '), '', 'imports');
});

// If that failed, stub the imports so that the other checks still run.
const importObject = {};
for (const imp of imports) {
  importObject[imp.module] ??= {};
  importObject[imp.module][imp.name] = () => {
    throw new Error(`import ${imp.module}.${imp.name} called`);
  };
}
const instance = new WebAssembly.Instance(wasmModule, importObject);

const expectedExports = [
  'memory', '_initialize', 'weft_alloc', 'weft_free', 'weft_buf_new', 'weft_buf_free',
  'weft_buf_reset', 'weft_buf_base', 'weft_buf_len', 'weft_strerror', 'weft_doc_new', 'weft_doc_load',
  'weft_doc_free', 'weft_doc_client_hi', 'weft_doc_client_lo', 'weft_doc_length',
  'weft_doc_utf8_length', 'weft_doc_text', 'weft_doc_insert', 'weft_doc_delete',
  'weft_doc_apply_update', 'weft_doc_pending', 'weft_doc_state_vector', 'weft_doc_diff',
  'weft_doc_encode_state', 'weft_doc_text_at', 'weft_doc_restore', 'weft_relpos_max',
  'weft_doc_relpos_from_index', 'weft_doc_relpos_to_index', 'weft_doc_mem_bytes',
  'weft_doc_check',
];
test('module exports the whole binding', () => {
  const missing = expectedExports.filter((name) => !(name in instance.exports));
  eq(missing.join(', '), '', 'missing exports');
});

let engine;
test('_initialize and a buffer handle', () => {
  engine = new Engine(instance);
});
if (!engine) finish();

const CLIENT_A = 0xdeadbeef_00c0ffeen; // both halves exercise the high bit
const CLIENT_B = 0x00000001_80000002n;
let a;
let b;
test('two documents with different client ids', () => {
  a = Doc.create(engine, CLIENT_A);
  b = Doc.create(engine, CLIENT_B);
});
if (!a || !b) finish();

test('client ids round-trip through the two uint32 halves', () => {
  eq(a.client(), CLIENT_A, 'client a');
  eq(b.client(), CLIENT_B, 'client b');
});

test('lengths count UTF-16 units (emoji 2, CJK 1), text comes back as UTF-8', () => {
  const d = Doc.create(engine, 77n);
  try {
    const s = 'a😀中b';
    d.insert(0, s);
    eq(d.text(), s, 'text');
    eq(d.length(), s.length, 'length');
    eq(d.length(), 5, 'length in UTF-16 units');
    eq(d.utf8Length(), new TextEncoder().encode(s).length, 'utf8 length');
    eq(engine.x.weft_doc_mem_bytes(d.ptr) >>> 0 > 0, true, 'mem_bytes > 0');
  } finally {
    d.free();
  }
});

test('an index inside a surrogate pair is rejected and changes nothing', () => {
  const d = Doc.create(engine, 78n);
  try {
    d.insert(0, 'x😀y');
    eq(d.tryInsert(2, 'z').rc, CRDT_EINDEX, 'insert inside emoji');
    eq(d.tryDelete(2, 1).rc, CRDT_EINDEX, 'delete starting inside emoji');
    eq(d.tryDelete(1, 1).rc, CRDT_EINDEX, 'delete half an emoji');
    eq(d.tryInsert(5, 'z').rc, CRDT_EINDEX, 'insert past the end');
    eq(d.text(), 'x😀y', 'text unchanged');
    d.check();
  } finally {
    d.free();
  }
});

let base;
let v1;
let t1;
const wordA = 'Hello 🌍!';
const wordB = '你好，世界 😀';
test('a returned buffer outlives its document (crdt.h: crdt_buf_t)', () => {
  const d = Doc.create(engine, 79n);
  const own = engine.x.weft_buf_new() >>> 0;
  try {
    d.insert(0, 'kept');
    engine.check(engine.x.weft_doc_text(d.ptr, own), 'text');
    d.free();
    const base = engine.x.weft_buf_base(own) >>> 0;
    const len = engine.x.weft_buf_len(own) >>> 0;
    eq(engine.decoder.decode(engine.u8.slice(base, base + len)), 'kept', 'text after free');
  } finally {
    if (d.ptr) d.free();
    engine.x.weft_buf_free(own);
  }
});

// A shared base, then concurrent typing at the same place on both replicas.
test('concurrent typing with emoji and CJK converges without interleaving', () => {
  base = a.insert(0, '[]');
  b.apply(base);
  eq(b.text(), '[]', 'base on b');
  const fromA = type(a, 1, wordA);
  const fromB = type(b, 1, wordB);
  v1 = a.stateVector();
  t1 = a.text();
  eq(t1, `[${wordA}]`, 'a before merging');
  // a receives b's keystrokes in order; b receives a's in reverse order (each one
  // depends on the previous, so b has to hold them until the first arrives).
  for (const u of fromB) a.apply(u);
  for (const u of [...fromA].reverse()) b.apply(u);
  eq(b.pending(), 0, 'nothing pending on b');
  // Duplicates change nothing.
  for (const u of fromA) b.apply(u);
  a.apply(base);
  const ta = a.text();
  const tb = b.text();
  eq(ta, tb, 'a and b converge');
  assert(ta === `[${wordA}${wordB}]` || ta === `[${wordB}${wordA}]`,
    `no interleaving: ${JSON.stringify(ta)}`);
  eq(a.length(), ta.length, 'length');
  a.check();
  b.check();
});

test('deleting an emoji and CJK text replicates', () => {
  const t = a.text();
  const at = t.indexOf('🌍');
  b.apply(a.delete(at, 2));
  const cjk = b.text().indexOf('世界');
  a.apply(b.delete(cjk, 2));
  const expected = t.replace('🌍', '').replace('世界', '');
  eq(a.text(), expected, 'a');
  eq(b.text(), expected, 'b');
});

test('sync by state vector and diff', () => {
  const c = Doc.create(engine, 3n);
  try {
    c.insert(0, 'offline ✍');
    const fromA = a.diff(c.stateVector());
    const fromC = c.diff(a.stateVector());
    c.apply(fromA);
    a.apply(fromC);
    b.apply(fromC);
    eq(c.text(), a.text(), 'c equals a');
    eq(b.text(), a.text(), 'b equals a');
    assert(a.text().includes('offline ✍'), 'offline edit merged');
    // A peer that is up to date needs nothing more.
    const before = a.text();
    c.apply(a.diff(c.stateVector()));
    eq(c.text(), before, 'empty diff changes nothing');
    c.check();
  } finally {
    c.free();
  }
});

test('encode_state and load', () => {
  const state = a.encodeState();
  const d = Doc.load(engine, 4n, state);
  try {
    eq(d.text(), a.text(), 'loaded text');
    eq(d.client(), 4n, 'loaded client');
    const u = d.insert(0, '🎉');
    a.apply(u);
    b.apply(u);
    eq(a.text(), d.text(), 'edit after load reaches a');
    eq(b.text(), d.text(), 'edit after load reaches b');
    // The encoded state is also an update.
    const e = Doc.create(engine, 5n);
    e.apply(d.encodeState());
    eq(e.text(), d.text(), 'state applied as update');
    e.free();
  } finally {
    d.free();
  }
});

test('text_at an older version', () => {
  eq(a.textAt(v1), t1, 'text at v1');
  const other = Doc.create(engine, 99n);
  eq(a.textAt(other.stateVector()), '', 'text at the empty version');
  other.insert(0, 'zzz');
  eq(a.tryTextAt(other.stateVector()).rc, CRDT_EVERSION, 'unknown version rejected');
  other.free();
});

test('restore an earlier version as a new edit', () => {
  const u = a.restore(v1);
  eq(a.text(), t1, 'a restored');
  b.apply(u);
  eq(b.text(), t1, 'b follows the restore');
  a.check();
  b.check();
});

test('relative positions round-trip and follow concurrent edits', () => {
  const t = b.text();
  for (let i = 0; i <= t.length; i++) {
    // Skip indexes inside a surrogate pair.
    if (i > 0 && i < t.length && /[\udc00-\udfff]/.test(t[i])) continue;
    for (const assoc of [ASSOC_BEFORE, ASSOC_AFTER]) {
      eq(b.relposToIndex(b.relposFromIndex(i, assoc)), i, `index ${i} assoc ${assoc}`);
    }
  }
  const at = t.indexOf('!');
  const pos = b.relposFromIndex(at, ASSOC_AFTER);
  eq(a.relposToIndex(pos), at, 'same index on the other replica');
  b.apply(a.insert(0, '😀中'));
  eq(b.relposToIndex(pos), at + 3, 'moved by an insert before it');
  eq(a.relposToIndex(pos), at + 3, 'moved on a too');
  eq(b.text()[b.relposToIndex(pos)], '!', 'still before the same character');
});

test('malformed update bytes are rejected and change nothing', () => {
  const before = a.text();
  const sv = a.stateVector();
  const garbage = new Uint8Array(32).fill(0xff);
  const rc = a.tryApply(garbage);
  assert(rc < 0, `garbage rejected (rc ${rc})`);
  assert(engine.strerror(rc).length > 0, 'strerror');
  eq(a.text(), before, 'text unchanged');
  assert(bytesEqual(a.stateVector(), sv), 'state vector unchanged');
  a.check();
});

test('documents are freed and the buffer handle released', () => {
  a.free();
  b.free();
  engine.x.weft_doc_free(0);
  engine.x.weft_buf_free(engine.buf);
  engine.x.weft_buf_free(0);
});

finish();
