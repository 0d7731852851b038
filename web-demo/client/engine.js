// SPDX-License-Identifier: MIT
//
// engine.js: weft's CRDT engine (crdt/, built to build/wasm/crdt.wasm by
// scripts/build-wasm.sh) for JavaScript, in the browser and in Node.js. A thin
// wrapper over the exports of crdt/wasm/exports.c: every method is one call of
// the C API of crdt/crdt.h, with bytes copied in and out of the module's memory.
//
// - Indexes and lengths count UTF-16 code units, exactly like JavaScript string
//   indexes; an index inside a surrogate pair is refused (WeftError EINDEX).
// - Replica ids are bigints (1 .. 2^64 - 1); safe-integer Numbers are accepted too.
// - Update bytes, state vectors, versions and relative positions are Uint8Arrays
//   owned by the caller (copied out of wasm memory).
// - Errors are thrown as WeftError with `.code`, the crdt.h error number.
// - Memory: views of the wasm memory are re-created after every call (a call may
//   grow the memory and detach older views); every temporary allocation is freed
//   before a method returns. A Doc holds wasm memory until doc.free() (a
//   FinalizationRegistry frees documents that are garbage-collected unfreed).
//
// One Engine (one wasm instance) holds any number of documents. Calls are
// synchronous; a Doc is not shared between threads.

/** crdt.h error codes (negative), by name without the CRDT_ prefix. */
export const ERRORS = Object.freeze({
  ENOMEM: -1,
  EINVAL: -2,
  EINDEX: -3,
  EUTF8: -4,
  EMALFORMED: -5,
  EFORMAT: -6,
  EINVALID: -7,
  ELIMIT: -8,
  ENOTFOUND: -9,
  EVERSION: -10,
  EINTERNAL: -11,
});

/** Span kinds of Doc.compare(), by crdt.h's CRDT_SPAN_* number. */
const SPAN_KINDS = Object.freeze(['kept', 'inserted', 'deleted']);

/** Relative position association (crdt.h CRDT_ASSOC_BEFORE / CRDT_ASSOC_AFTER). */
export const ASSOC_BEFORE = -1;
/** The position sticks to the character after it (stays before that character). */
export const ASSOC_AFTER = 1;

const MAX_U64 = (1n << 64n) - 1n;
// Size of a span record's header in weft_doc_compare's output (kind u8, author
// u64, units u32, len u32; crdt/wasm/exports.c).
const SPAN_HEADER = 17;
const U32 = 0xffffffff;

/**
 * An error reported by the engine.
 * `code` is the crdt.h error number (a negative value of ERRORS), `message` the
 * engine's description (crdt_strerror), `op` the operation that failed.
 */
export class WeftError extends Error {
  /**
   * @param {number} code crdt.h error code (negative)
   * @param {string} message the engine's description of the code
   * @param {string} [op] the operation that failed, e.g. 'insert'
   */
  constructor(code, message, op = '') {
    super(message);
    this.name = 'WeftError';
    this.code = code;
    this.op = op;
  }
}

/**
 * Converts a replica id to a bigint and checks its range (1 .. 2^64 - 1).
 * @param {bigint|number} replica
 * @returns {bigint}
 */
function toReplica(replica) {
  let r;
  if (typeof replica === 'bigint') {
    r = replica;
  } else if (typeof replica === 'number' && Number.isSafeInteger(replica)) {
    r = BigInt(replica);
  } else {
    throw new TypeError('replica must be a bigint (or a safe integer Number)');
  }
  if (r < 1n || r > MAX_U64) throw new RangeError(`replica ${r} outside 1 .. 2^64 - 1`);
  return r;
}

/**
 * Checks an index or length: a non-negative integer that fits a wasm32 size_t.
 * Negative or huge values would wrap in the i32 call, so they are refused here.
 * @param {number} n
 * @param {string} op
 * @param {Engine} engine
 * @returns {number}
 */
function toSize(n, op, engine) {
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw new TypeError(`${op}: index and length must be integers`);
  }
  if (n < 0 || n > U32) throw engine._error(ERRORS.EINDEX, op);
  return n;
}

/**
 * Normalises bytes given by a caller to a Uint8Array (null/undefined: empty).
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView|null|undefined} bytes
 * @returns {Uint8Array}
 */
function toBytes(bytes) {
  if (bytes == null) return new Uint8Array(0);
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError('expected a Uint8Array');
}

/** Whether this runs in Node.js (where fetch() cannot read file: URLs). */
function inNode() {
  return typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
}

/**
 * Reads a file in Node.js; the module name is computed so that bundlers for the
 * browser leave the import alone.
 * @param {string|URL} where file path or file: URL
 * @returns {Promise<Uint8Array>}
 */
async function readLocalFile(where) {
  const name = ['node', 'fs/promises'].join(':');
  const fs = await import(name);
  return fs.readFile(where);
}

/**
 * Instantiates crdt.wasm from any of the accepted sources.
 * @param {ArrayBuffer|ArrayBufferView|Response|Promise<Response>|string|URL|WebAssembly.Module} source
 * @returns {Promise<WebAssembly.Instance>}
 */
async function instantiate(source) {
  const imports = {};
  source = await source;
  if (source instanceof WebAssembly.Module) return WebAssembly.instantiate(source, imports);
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    return (await WebAssembly.instantiate(toBytes(source), imports)).instance;
  }
  if (typeof source === 'string' || source instanceof URL) {
    const text = String(source);
    if (text.startsWith('file:') || (inNode() && !/^[a-z][a-z0-9+.-]*:/i.test(text))) {
      const where = text.startsWith('file:') ? new URL(text) : text;
      return (await WebAssembly.instantiate(await readLocalFile(where), imports)).instance;
    }
    source = await fetch(text);
  }
  if (typeof Response !== 'undefined' && source instanceof Response) {
    if (!source.ok) throw new Error(`crdt.wasm: HTTP ${source.status} ${source.statusText}`);
    const type = source.headers.get('content-type') || '';
    if (typeof WebAssembly.instantiateStreaming === 'function' && type.startsWith('application/wasm')) {
      return (await WebAssembly.instantiateStreaming(source, imports)).instance;
    }
    return (await WebAssembly.instantiate(await source.arrayBuffer(), imports)).instance;
  }
  throw new TypeError('loadEngine: expected bytes, a Response, a URL or a WebAssembly.Module');
}

/**
 * Loads the engine: instantiates crdt.wasm with an empty import object and calls
 * its `_initialize` export.
 * @param {ArrayBuffer|ArrayBufferView|Response|Promise<Response>|string|URL|WebAssembly.Module} source
 *   the module's bytes, a fetch() Response, a URL (fetched; in Node.js a file path
 *   or file: URL is read from disk) or a compiled module
 * @returns {Promise<Engine>}
 */
export async function loadEngine(source) {
  return new Engine(await instantiate(source));
}

/**
 * One instance of crdt.wasm. Make it with loadEngine(); it creates documents.
 */
export class Engine {
  /**
   * @param {WebAssembly.Instance} instance an instance of crdt.wasm, not yet initialised
   */
  constructor(instance) {
    const x = instance.exports;
    if (typeof x.weft_doc_new !== 'function' || !(x.memory instanceof WebAssembly.Memory)) {
      throw new TypeError('not a crdt.wasm instance (weft_doc_new or memory missing)');
    }
    /** @type {Record<string, Function> & {memory: WebAssembly.Memory}} the raw exports */
    this.exports = x;
    if (typeof x._initialize === 'function') x._initialize();
    this._encoder = new TextEncoder();
    this._decoder = new TextDecoder('utf-8', { fatal: true });
    this._buf = x.weft_buf_new() >>> 0;
    if (this._buf === 0) throw this._error(ERRORS.ENOMEM, 'buf_new');
    this._relposMax = x.weft_relpos_max() >>> 0;
    this._finalizer =
      typeof FinalizationRegistry === 'function'
        ? new FinalizationRegistry((ptr) => x.weft_doc_free(ptr))
        : null;
  }

  /**
   * Creates an empty document whose local edits use replica id `replica`.
   * @param {bigint|number} replica 1 .. 2^64 - 1; pick it at random, one per editor session
   * @returns {Doc}
   */
  newDoc(replica) {
    const r = toReplica(replica);
    const [hi, lo] = halves(r);
    const ptr = this.exports.weft_doc_new(hi, lo) >>> 0;
    if (ptr === 0) throw this._error(ERRORS.ENOMEM, 'doc_new');
    return new Doc(this, ptr, r);
  }

  /**
   * Creates a document with replica id `replica` from encoded state (Doc.encodeState)
   * or any update bytes.
   * @param {bigint|number} replica
   * @param {Uint8Array} stateBytes
   * @returns {Doc}
   */
  loadDoc(replica, stateBytes) {
    const r = toReplica(replica);
    return new Doc(this, this._load(r, toBytes(stateBytes)), r);
  }

  /**
   * The engine's description of an error code.
   * @param {number} code a crdt.h error code
   * @returns {string}
   */
  strerror(code) {
    const ptr = this.exports.weft_strerror(code) >>> 0;
    const u8 = this._u8();
    let end = ptr;
    while (u8[end] !== 0) end++;
    return this._decoder.decode(u8.subarray(ptr, end));
  }

  /**
   * Size of the module's linear memory in bytes (it grows, never shrinks): with a
   * steady workload it stays constant, which is how tests look for leaks.
   * @returns {number}
   */
  get memoryBytes() {
    return this.exports.memory.buffer.byteLength;
  }

  // ---- internals shared with Doc ------------------------------------------

  /** A fresh view of the whole memory (older ones may be detached). */
  _u8() {
    return new Uint8Array(this.exports.memory.buffer);
  }

  /** @returns {WeftError} */
  _error(code, op) {
    return new WeftError(code, this.strerror(code), op);
  }

  /** Throws for a negative return code; returns other values. */
  _check(rc, op) {
    if (rc < 0) throw this._error(rc, op);
    return rc;
  }

  /** Copies `bytes` into wasm memory for the duration of fn(ptr, len). */
  _withBytes(bytes, fn) {
    const x = this.exports;
    const ptr = x.weft_alloc(bytes.length) >>> 0;
    if (ptr === 0) throw this._error(ERRORS.ENOMEM, 'alloc');
    try {
      this._u8().set(bytes, ptr);
      return fn(ptr, bytes.length);
    } finally {
      x.weft_free(ptr);
    }
  }

  /** Encodes `text` as UTF-8 straight into wasm memory for the duration of fn(ptr, len). */
  _withText(text, fn) {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    const x = this.exports;
    const cap = text.length * 3;
    const ptr = x.weft_alloc(cap) >>> 0;
    if (ptr === 0) throw this._error(ERRORS.ENOMEM, 'alloc');
    try {
      const { written } = this._encoder.encodeInto(text, this._u8().subarray(ptr, ptr + cap));
      return fn(ptr, written);
    } finally {
      x.weft_free(ptr);
    }
  }

  /** Copies out the bytes the shared buffer handle holds, then releases them. */
  _take() {
    const x = this.exports;
    const base = x.weft_buf_base(this._buf) >>> 0;
    const len = x.weft_buf_len(this._buf) >>> 0;
    const out = this._u8().slice(base, base + len);
    x.weft_buf_reset(this._buf);
    return out;
  }

  /** Like _take(), decoded as UTF-8 text. */
  _takeText() {
    const x = this.exports;
    const base = x.weft_buf_base(this._buf) >>> 0;
    const len = x.weft_buf_len(this._buf) >>> 0;
    const text = len === 0 ? '' : this._decoder.decode(this._u8().subarray(base, base + len));
    x.weft_buf_reset(this._buf);
    return text;
  }

  /** Decodes the span records weft_doc_compare wrote into the shared handle, then releases them. */
  _takeSpans() {
    const x = this.exports;
    const base = x.weft_buf_base(this._buf) >>> 0;
    const len = x.weft_buf_len(this._buf) >>> 0;
    const spans = [];
    try {
      const view = new DataView(x.memory.buffer, base, len);
      const u8 = this._u8();
      let at = 0;
      while (at < len) {
        if (len - at < SPAN_HEADER) throw new Error('compare: truncated span record');
        const kind = SPAN_KINDS[view.getUint8(at)];
        const author = view.getBigUint64(at + 1, true);
        const units = view.getUint32(at + 9, true);
        const bytes = view.getUint32(at + 13, true);
        at += SPAN_HEADER;
        if (kind === undefined || len - at < bytes) throw new Error('compare: malformed span record');
        const text = bytes === 0 ? '' : this._decoder.decode(u8.subarray(base + at, base + at + bytes));
        at += bytes;
        spans.push({ kind, author, units, text });
      }
    } finally {
      x.weft_buf_reset(this._buf);
    }
    return spans;
  }

  /** weft_doc_load: returns the new document's pointer. */
  _load(replica, bytes) {
    const x = this.exports;
    const [hi, lo] = halves(replica);
    const cell = x.weft_alloc(4) >>> 0;
    if (cell === 0) throw this._error(ERRORS.ENOMEM, 'alloc');
    try {
      this._withBytes(bytes, (p, n) => this._check(x.weft_doc_load(hi, lo, p, n, cell), 'load'));
      return new DataView(x.memory.buffer).getUint32(cell, true);
    } finally {
      x.weft_free(cell);
    }
  }
}

/** A 64-bit replica id as the two uint32 halves exports.c takes. */
function halves(replica) {
  return [Number(replica >> 32n), Number(replica & 0xffffffffn)];
}

/**
 * One replica of a plain-text document (a crdt_doc_t in wasm memory). Made by
 * Engine.newDoc() or Engine.loadDoc(); release it with free().
 */
export class Doc {
  /**
   * @param {Engine} engine
   * @param {number} ptr the crdt_doc_t's address
   * @param {bigint} replica
   */
  constructor(engine, ptr, replica) {
    this._e = engine;
    this._x = engine.exports;
    this._ptr = ptr;
    this._replica = replica;
    if (engine._finalizer) engine._finalizer.register(this, ptr, this);
  }

  /** The replica id local edits use (bigint). */
  get replica() {
    return this._replica;
  }

  /** Whether free() was called. */
  get freed() {
    return this._ptr === 0;
  }

  /** The document's pointer; throws once it is freed. */
  _p() {
    if (this._ptr === 0) throw new Error('weft Doc used after free()');
    return this._ptr;
  }

  /**
   * Releases the document's wasm memory. Safe to call twice.
   */
  free() {
    if (this._ptr === 0) return;
    if (this._e._finalizer) this._e._finalizer.unregister(this);
    this._x.weft_doc_free(this._ptr);
    this._ptr = 0;
  }

  /**
   * Re-creates this document under another replica id, keeping its whole history
   * and this object (encodeState() + load, then the old one is freed). Edits made
   * under the old id stay valid. Used by a client that picks a fresh replica id for
   * every connection.
   * @param {bigint|number} replica
   */
  setReplica(replica) {
    const r = toReplica(replica);
    const state = this.encodeState();
    const ptr = this._e._load(r, state);
    const old = this._p();
    if (this._e._finalizer) this._e._finalizer.unregister(this);
    this._x.weft_doc_free(old);
    this._ptr = ptr;
    this._replica = r;
    if (this._e._finalizer) this._e._finalizer.register(this, ptr, this);
  }

  /**
   * Current text.
   * @returns {string}
   */
  text() {
    this._e._check(this._x.weft_doc_text(this._p(), this._e._buf), 'text');
    return this._e._takeText();
  }

  /**
   * Current length in UTF-16 code units (what text().length would say).
   * @returns {number}
   */
  length() {
    return this._x.weft_doc_length(this._p()) >>> 0;
  }

  /**
   * Current length in UTF-8 bytes.
   * @returns {number}
   */
  utf8Length() {
    return this._x.weft_doc_utf8_length(this._p()) >>> 0;
  }

  /**
   * Inserts `text` at `index` (0 .. length()).
   * @param {number} index UTF-16 units
   * @param {string} text
   * @param {boolean} [wantUpdate=true] false: skip encoding the update, return null
   * @returns {Uint8Array|null} the update bytes of this change, for the other replicas
   */
  insert(index, text, wantUpdate = true) {
    toSize(index, 'insert', this._e);
    const out = wantUpdate ? this._e._buf : 0;
    this._e._withText(text, (p, n) =>
      this._e._check(this._x.weft_doc_insert(this._p(), index, p, n, out), 'insert'));
    return wantUpdate ? this._e._take() : null;
  }

  /**
   * Deletes `len` UTF-16 units starting at `index`.
   * @param {number} index
   * @param {number} len
   * @param {boolean} [wantUpdate=true] false: skip encoding the update, return null
   * @returns {Uint8Array|null} the update bytes of this change
   */
  delete(index, len, wantUpdate = true) {
    toSize(index, 'delete', this._e);
    toSize(len, 'delete', this._e);
    const out = wantUpdate ? this._e._buf : 0;
    this._e._check(this._x.weft_doc_delete(this._p(), index, len, out), 'delete');
    return wantUpdate ? this._e._take() : null;
  }

  /**
   * Merges update bytes from another replica (an update, a diff or an encoded
   * state). Duplicates change nothing; operations whose dependencies are missing
   * are held (see pending()). All or nothing: on error the document is unchanged.
   * @param {Uint8Array} bytes
   */
  apply(bytes) {
    const b = toBytes(bytes);
    this._e._withBytes(b, (p, n) =>
      this._e._check(this._x.weft_doc_apply_update(this._p(), p, n), 'apply'));
  }

  /**
   * Number of held runs of operations waiting for missing dependencies (0: none).
   * @returns {number}
   */
  pending() {
    return this._x.weft_doc_pending(this._p()) >>> 0;
  }

  /**
   * The encoded state vector; it is also a version (for textAt and restore).
   * @returns {Uint8Array}
   */
  stateVector() {
    this._e._check(this._x.weft_doc_state_vector(this._p(), this._e._buf), 'state_vector');
    return this._e._take();
  }

  /**
   * The update holding everything this document has and a peer with state vector
   * `sv` lacks (null or empty: an empty peer).
   * @param {Uint8Array|null} [sv]
   * @returns {Uint8Array}
   */
  diff(sv) {
    const b = toBytes(sv);
    this._e._withBytes(b, (p, n) =>
      this._e._check(this._x.weft_doc_diff(this._p(), p, n, this._e._buf), 'diff'));
    return this._e._take();
  }

  /**
   * The whole document (history included), for Engine.loadDoc() or apply().
   * @returns {Uint8Array}
   */
  encodeState() {
    this._e._check(this._x.weft_doc_encode_state(this._p(), this._e._buf), 'encode_state');
    return this._e._take();
  }

  /**
   * Text at an earlier version (a state vector this document has reached).
   * Throws WeftError EVERSION for a version it has not seen.
   * @param {Uint8Array|null} version null or empty: the empty version
   * @returns {string}
   */
  textAt(version) {
    const b = toBytes(version);
    this._e._withBytes(b, (p, n) =>
      this._e._check(this._x.weft_doc_text_at(this._p(), p, n, this._e._buf), 'text_at'));
    return this._e._takeText();
  }

  /**
   * Restores an earlier version as a new local edit (concurrent edits elsewhere
   * survive the merge).
   * @param {Uint8Array|null} version
   * @returns {Uint8Array} the update bytes of that edit
   */
  restore(version) {
    const b = toBytes(version);
    this._e._withBytes(b, (p, n) =>
      this._e._check(this._x.weft_doc_restore(this._p(), p, n, this._e._buf), 'restore'));
    return this._e._take();
  }

  /**
   * Compares the text at version `fromSv` with the text at version `toSv`
   * (crdt_doc_compare): the spans of the result in document order. Kept and
   * inserted spans spell textAt(toSv); kept and deleted ones textAt(fromSv).
   * `author`: who typed kept and inserted text; who deleted deleted text (0n when
   * the text is only absent from `toSv`, versions that are not ordered).
   * Neighbouring spans of one kind and author come merged.
   * @param {Uint8Array|null} fromSv null or empty: the empty version
   * @param {Uint8Array|null} [toSv=null] null: the current state; empty: the empty version
   * @returns {{kind: 'kept'|'inserted'|'deleted', author: bigint, units: number, text: string}[]}
   */
  compare(fromSv, toSv = null) {
    const e = this._e;
    const from = toBytes(fromSv);
    const run = (fp, fn, tp, tn) =>
      e._check(this._x.weft_doc_compare(this._p(), fp, fn, tp, tn, e._buf), 'compare');
    e._withBytes(from, (fp, fn) => {
      if (toSv == null) run(fp, fn, 0, 0);
      else e._withBytes(toBytes(toSv), (tp, tn) => run(fp, fn, tp, tn));
    });
    return e._takeSpans();
  }

  /**
   * A relative position for `index` (0 .. length()): bytes that keep their place
   * through concurrent edits (cursors, selections; what PRESENCE carries).
   * @param {number} index
   * @param {number} [assoc=ASSOC_AFTER] ASSOC_AFTER (1) or ASSOC_BEFORE (-1)
   * @returns {Uint8Array} at most 16 bytes
   */
  relposFromIndex(index, assoc = ASSOC_AFTER) {
    toSize(index, 'relpos_from_index', this._e);
    const x = this._x;
    const max = this._e._relposMax;
    const out = x.weft_alloc(max) >>> 0;
    if (out === 0) throw this._e._error(ERRORS.ENOMEM, 'alloc');
    try {
      const n = this._e._check(
        x.weft_doc_relpos_from_index(this._p(), index, assoc, out), 'relpos_from_index');
      return this._e._u8().slice(out, out + n);
    } finally {
      x.weft_free(out);
    }
  }

  /**
   * Current index of a relative position.
   * @param {Uint8Array} bytes from relposFromIndex() (here or on any replica)
   * @returns {number|null} the index, or null while its anchor character is unknown here
   */
  relposToIndex(bytes) {
    const b = toBytes(bytes);
    const rc = this._e._withBytes(b, (p, n) => this._x.weft_doc_relpos_to_index(this._p(), p, n));
    if (rc === ERRORS.ENOTFOUND) return null;
    return this._e._check(rc, 'relpos_to_index');
  }

  /**
   * Bytes of wasm memory the document holds (the engine's own accounting).
   * @returns {number}
   */
  memBytes() {
    return this._x.weft_doc_mem_bytes(this._p()) >>> 0;
  }

  /**
   * Verifies every internal invariant (crdt_doc_check; O(n), for tests).
   * Throws WeftError EINTERNAL when one is broken.
   */
  check() {
    this._e._check(this._x.weft_doc_check(this._p()), 'check');
  }
}
