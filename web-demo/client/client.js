// SPDX-License-Identifier: MIT
//
// client.js: weft's JavaScript client. One WeftClient edits one document of a
// weftd server over one WebSocket (`ws://host:port/ws/<doc>`), speaking the wire
// protocol of docs/protocol.md (msgpack arrays, @msgpack/msgpack) on top of the
// wasm engine (engine.js). It works without the demo page: in a browser, or in
// Node.js with a WebSocket class passed in (the `ws` package).
//
// - Local edits (insert/delete) apply to the local Doc at once and go out as
//   UPDATE with increasing `seq`; each is kept until the server ACKs it, and resent
//   on the next connection. Offline (setOnline(false) or a dropped connection),
//   edits keep working and are queued.
// - Every connection uses a fresh random replica id (the server refuses an id still
//   live on another connection, and may not have noticed a dropped one yet): the
//   Doc is reloaded under the new id (Doc.setReplica, same object), queued update
//   bytes stay valid.
// - Handshake: HELLO -> WELCOME; the server's SYNC1 is answered with ours; its
//   SYNC2 is applied, then we send SYNC2 with what the server lacks and resend the
//   unacknowledged UPDATEs; status 'synced'.
// - Drops: reconnect with exponential backoff and jitter (250 ms .. 10 s), also after
//   an ERROR that closes the connection; the backoff resets after a connection
//   stayed synced for 5 s, or on connect() / setOnline(true).
// - Presence: own selection as relative positions (they follow concurrent edits),
//   throttled, re-sent after a reconnect; other editors from PRESENCE_STATE /
//   PRESENCE_LEAVE, their positions resolved on the current text.
// Events are dispatched synchronously from socket callbacks and from the methods.

import { Decoder, Encoder } from '@msgpack/msgpack';

import { ASSOC_AFTER, WeftError } from './engine.js';

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Message types of docs/protocol.md. */
export const MSG = Object.freeze({
  HELLO: 1,
  WELCOME: 2,
  SYNC1: 3,
  SYNC2: 4,
  UPDATE: 5,
  ACK: 6,
  PRESENCE: 7,
  PRESENCE_STATE: 8,
  PRESENCE_LEAVE: 9,
  ERROR: 10,
});

/** ERROR codes of docs/protocol.md, by name. */
export const ERROR_CODES = Object.freeze({
  bad_message: 1,
  unknown_type: 2,
  version_unsupported: 3,
  not_hello_first: 4,
  too_large: 5,
  bad_update: 6,
  replica_in_use: 7,
  server_error: 8,
  slow_consumer: 9,
  unauthorized: 10,
  read_only: 11,
  rate_limited: 12,
  document_too_large: 13,
  shutting_down: 14,
});

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10000;
// A connection synced this long counts as healthy: the next drop retries from the
// shortest delay. Shorter-lived ones keep the backoff growing, so a server that
// ends every session soon after the handshake is not hammered.
const STABLE_MS = 5000;
const WS_OPEN = 1;

/** A CustomEvent (Node.js 20 has Event but no global CustomEvent). */
function makeEvent(type, detail) {
  if (typeof CustomEvent === 'function') return new CustomEvent(type, { detail });
  const ev = new Event(type);
  Object.defineProperty(ev, 'detail', { value: detail, enumerable: true });
  return ev;
}

/** Bytes of a binary message as a Uint8Array; null for a text frame or anything else. */
function messageBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/** A bigint from a msgpack integer (a Number, or a bigint for uint64 encodings). */
function toBigInt(v) {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return null;
}

/**
 * Turns the spans of Doc.compare(from, to) into the change from the text at `from`
 * to the text at `to` as Quill-style delta ops, in UTF-16 units: `{retain: n}`
 * (kept), `{insert: text}`, `{delete: n}`. Neighbouring ops of one type are
 * merged, an insert next to a delete comes first, and a final retain is left out
 * (an unchanged text gives []).
 * @param {{kind: string, units: number, text: string}[]} spans
 * @returns {({retain: number}|{insert: string}|{delete: number})[]}
 */
export function spansToDelta(spans) {
  const ops = [];
  const push = (op) => {
    let at = ops.length;
    // Inserts go before a delete at the same place (Quill's canonical order).
    if (op.insert !== undefined && at > 0 && ops[at - 1].delete !== undefined) at--;
    const prev = ops[at - 1];
    if (prev !== undefined && op.retain !== undefined && prev.retain !== undefined) prev.retain += op.retain;
    else if (prev !== undefined && op.insert !== undefined && prev.insert !== undefined) prev.insert += op.insert;
    else if (prev !== undefined && op.delete !== undefined && prev.delete !== undefined) prev.delete += op.delete;
    else ops.splice(at, 0, op);
  };
  for (const span of spans) {
    if (span.units === 0) continue;
    if (span.kind === 'kept') push({ retain: span.units });
    else if (span.kind === 'inserted') push({ insert: span.text });
    else if (span.kind === 'deleted') push({ delete: span.units });
  }
  if (ops.length > 0 && ops.at(-1).retain !== undefined) ops.pop();
  return ops;
}

/**
 * A collaborative editing session on one document of a weftd server.
 *
 * Events (each a CustomEvent; `detail` as listed):
 * - `status` {status}: 'offline' | 'connecting' (socket opening, HELLO sent) |
 *   'connected' (WELCOME received, syncing) | 'synced'. While waiting to retry
 *   after a drop the status is 'offline'.
 * - `change` {previous, text, delta, origin: 'remote'}: after a message from the
 *   server (SYNC2 or UPDATE) changed the text; one per message. Local edits fire
 *   none. `delta`: exactly what changed, as Quill-style ops in UTF-16 units
 *   ([{retain: n}, {insert: 'text'}, {delete: n}], see spansToDelta), from the
 *   engine's comparison of the versions before and after the message (held
 *   operations the message released included), so an insert next to an equal
 *   character is on the right side; applied to `previous` it gives `text`. null
 *   only if the comparison failed (then diff the two texts).
 * - `peers` {peers}: the other editors' presence changed, or edits (remote or
 *   local) moved their resolved positions. `peers` as the getter returns.
 * - `ack` {unacked}: the server acknowledged updates (they are durable).
 * - `error` {code, message, seq}: an ERROR from the server (code as ERROR_CODES;
 *   its `seq` is the UPDATE it is about, or 0). Update bytes from the server that
 *   the engine refuses give code 0 and the engine's message.
 */
export class WeftClient extends EventTarget {
  #url;
  #name;
  #color;
  #token;
  #WS;
  #throttleMs;
  #random;
  #encoder = new Encoder();
  #decoder = new Decoder({ useBigInt64: true });

  #doc;
  #text = '';
  #ownReplicas = new Set();
  #connections = 0;

  #ws = null;
  #status = 'offline';
  #wanted = false;
  #online = true;
  #closed = false;
  #attempt = 0;
  #retryTimer = null;
  #syncedAt = null;

  #seq = 0;
  #unacked = []; // {update: Uint8Array, seq: number (0: not sent on this connection)}
  #serverSv = null;
  #synced = false;

  #selection = undefined; // undefined: never set; null: none; {anchor, head} relpos bytes
  #presenceTimer = null;
  #presenceSentAt = -Infinity;

  #peers = new Map(); // key -> {replica, name, color, anchorPos, headPos}
  #resolved = new Map(); // key -> {anchor, head} last reported

  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL of the document, `ws://host:port/ws/<doc>`
   * @param {import('./engine.js').Engine} options.engine from loadEngine()
   * @param {string} [options.name=''] how other editors see this one (at most 64 bytes of UTF-8)
   * @param {string} [options.color='#888888'] `#rrggbb`
   * @param {string|null} [options.token=null] access token, if the server wants one
   * @param {typeof WebSocket} [options.WebSocket=globalThis.WebSocket] WebSocket class (Node.js: the `ws` package)
   * @param {number} [options.presenceThrottleMs=50] least time between two PRESENCE messages
   * @param {() => number} [options.random=Math.random] source of replica ids and backoff jitter
   */
  constructor({
    url, engine, name = '', color = '#888888', token = null,
    WebSocket = globalThis.WebSocket, presenceThrottleMs = 50, random = Math.random,
  } = {}) {
    super();
    if (typeof url !== 'string' && !(url instanceof URL)) throw new TypeError('WeftClient: url is required');
    if (!engine || typeof engine.newDoc !== 'function') throw new TypeError('WeftClient: engine (from loadEngine) is required');
    if (typeof WebSocket !== 'function') throw new TypeError('WeftClient: no WebSocket class (pass one, e.g. from the ws package)');
    this.#url = String(url);
    this.#name = String(name);
    this.#color = String(color);
    this.#token = token == null ? null : String(token);
    this.#WS = WebSocket;
    this.#throttleMs = presenceThrottleMs;
    this.#random = random;
    this.#doc = engine.newDoc(this.#newReplica());
  }

  // ---- public API ------------------------------------------------------------

  /**
   * Starts the session: opens the socket (unless offline by setOnline(false)) and
   * keeps reconnecting after drops until close().
   */
  connect() {
    if (this.#closed) throw new Error('WeftClient: connect() after close()');
    this.#wanted = true;
    if (this.#online && this.#ws === null) {
      this.#attempt = 0;
      this.#open();
    }
  }

  /**
   * Ends the session for good: closes the socket and stops reconnecting. The doc
   * and text stay readable (and editable, locally).
   */
  close() {
    this.#closed = true;
    this.#wanted = false;
    this.#clearRetry();
    this.#disconnect();
  }

  /**
   * Goes offline (false: closes the socket and stays offline; edits keep working
   * and are queued) or back online (true: reconnects now).
   * @param {boolean} online
   */
  setOnline(online) {
    this.#online = Boolean(online);
    if (!this.#online) {
      this.#clearRetry();
      this.#disconnect();
    } else if (this.#wanted && !this.#closed && this.#ws === null) {
      this.#clearRetry();
      this.#attempt = 0;
      this.#open();
    }
  }

  /** @returns {'connecting'|'connected'|'synced'|'offline'} */
  get status() {
    return this.#status;
  }

  /** @returns {string} the current text */
  get text() {
    return this.#text;
  }

  /**
   * The engine Doc (the same object for the client's life; its replica id changes
   * with every connection). Edit through insert()/delete() of the client, not of
   * the Doc, or the edits are not sent.
   * @returns {import('./engine.js').Doc}
   */
  get doc() {
    return this.#doc;
  }

  /** @returns {bigint} the replica id of the current (or next) connection */
  get replica() {
    return this.#doc.replica;
  }

  /** @returns {number} local updates the server has not acknowledged yet */
  get unacked() {
    return this.#unacked.length;
  }

  /**
   * The other editors of the document, by replica id (decimal string), with their
   * selection resolved on the current text (null: none, or its anchor not known here).
   * @returns {Map<string, {replica: bigint, name: string, color: string, anchor: number|null, head: number|null}>}
   */
  get peers() {
    const out = new Map();
    for (const [key, p] of this.#peers) {
      const { anchor, head } = this.#resolve(p);
      out.set(key, { replica: p.replica, name: p.name, color: p.color, anchor, head });
    }
    return out;
  }

  /**
   * Inserts `text` at `index` (UTF-16 units, as JS strings count) and sends it.
   * @param {number} index
   * @param {string} text
   */
  insert(index, text) {
    if (text === '') return;
    const update = this.#doc.insert(index, text);
    this.#text = this.#text.slice(0, index) + text + this.#text.slice(index);
    this.#queue(update);
  }

  /**
   * Deletes `length` UTF-16 units at `index` and sends it.
   * @param {number} index
   * @param {number} length
   */
  delete(index, length) {
    if (length === 0) return;
    const update = this.#doc.delete(index, length);
    this.#text = this.#text.slice(0, index) + this.#text.slice(index + length);
    this.#queue(update);
  }

  /**
   * Sets this editor's selection (head defaults to anchor: a caret), or clears it
   * with null. Sent as PRESENCE (throttled); re-sent after a reconnect.
   * @param {number|null} anchor
   * @param {number} [head]
   */
  setSelection(anchor, head = anchor) {
    if (anchor === null || anchor === undefined) {
      this.#selection = null;
    } else {
      this.#selection = { anchor: this.#relpos(anchor), head: this.#relpos(head ?? anchor) };
    }
    this.#schedulePresence();
  }

  // ---- connection ------------------------------------------------------------

  /** A random replica id: nonzero, below 2^53, not used before by this client. */
  #newReplica() {
    const hi = Math.floor(this.#random() * 0x200000) % 0x200000;
    const lo = Math.floor(this.#random() * 0x100000000) % 0x100000000;
    let r = hi * 0x100000000 + lo;
    // A poor random() (a constant, in tests) must not repeat an id: step to the next free one.
    while (r === 0 || this.#ownReplicas.has(String(r))) r = (r % Number.MAX_SAFE_INTEGER) + 1;
    return BigInt(r);
  }

  #setStatus(status) {
    if (status === this.#status) return;
    this.#status = status;
    this.dispatchEvent(makeEvent('status', { status }));
  }

  #open() {
    if (this.#connections++ > 0) this.#doc.setReplica(this.#newReplica());
    this.#ownReplicas.add(String(this.#doc.replica));
    this.#seq = 0;
    this.#serverSv = null;
    this.#synced = false;
    this.#syncedAt = null;
    for (const e of this.#unacked) e.seq = 0;
    let ws;
    try {
      ws = new this.#WS(this.#url);
    } catch (err) {
      this.#ws = null;
      this.dispatchEvent(makeEvent('error', { code: 0, message: `WebSocket: ${err.message}`, seq: 0 }));
      this.#setStatus('offline');
      this.#scheduleRetry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#send([MSG.HELLO, PROTOCOL_VERSION, Number(this.#doc.replica), this.#name, this.#color, this.#token]);
    };
    ws.onmessage = (ev) => {
      if (ws !== this.#ws) return;
      const bytes = messageBytes(ev.data);
      if (bytes !== null) this.#onMessage(bytes);
    };
    ws.onerror = () => {
      // A close event follows; reconnecting is handled there.
    };
    ws.onclose = () => {
      if (ws !== this.#ws) return;
      this.#dropped();
    };
    this.#setStatus('connecting');
  }

  /** Closes the current socket (if any) without scheduling a retry. */
  #disconnect() {
    const ws = this.#ws;
    this.#ws = null;
    this.#synced = false;
    this.#clearPresenceTimer();
    if (ws !== null) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    this.#clearPeers();
    this.#setStatus('offline');
  }

  /** The socket closed or failed: go offline and retry later. */
  #dropped() {
    if (this.#syncedAt !== null && Date.now() - this.#syncedAt >= STABLE_MS) this.#attempt = 0;
    this.#syncedAt = null;
    this.#ws = null;
    this.#synced = false;
    this.#clearPresenceTimer();
    this.#clearPeers();
    this.#setStatus('offline');
    if (this.#wanted && this.#online && !this.#closed) this.#scheduleRetry();
  }

  #scheduleRetry() {
    this.#clearRetry();
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.#attempt, 16));
    const delay = Math.max(BACKOFF_MIN_MS, Math.round(cap * (0.5 + 0.5 * this.#random())));
    this.#attempt++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#wanted && this.#online && !this.#closed && this.#ws === null) this.#open();
    }, delay);
  }

  #clearRetry() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #send(msg) {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== WS_OPEN) return false;
    ws.send(this.#encoder.encode(msg));
    return true;
  }

  // ---- messages --------------------------------------------------------------

  #onMessage(bytes) {
    let msg;
    try {
      msg = this.#decoder.decode(bytes);
    } catch {
      return; // not msgpack: ignore (the server never sends such)
    }
    if (!Array.isArray(msg) || msg.length === 0) return;
    const type = Number(msg[0]);
    switch (type) {
      case MSG.WELCOME:
        this.#setStatus('connected');
        break;
      case MSG.SYNC1:
        if (msg[1] instanceof Uint8Array) {
          this.#serverSv = msg[1].slice();
          this.#send([MSG.SYNC1, this.#doc.stateVector()]);
        }
        break;
      case MSG.SYNC2:
        if (msg[1] instanceof Uint8Array) this.#applyRemote(msg[1]);
        if (!this.#synced) this.#handshakeDone();
        break;
      case MSG.UPDATE:
        if (msg[2] instanceof Uint8Array) this.#applyRemote(msg[2]);
        break;
      case MSG.ACK:
        this.#onAck(Number(msg[1]));
        break;
      case MSG.PRESENCE_STATE:
        this.#onPresence(msg);
        break;
      case MSG.PRESENCE_LEAVE: {
        const r = toBigInt(msg[1]);
        if (r !== null && this.#peers.delete(String(r))) this.#emitPeers();
        break;
      }
      case MSG.ERROR:
        this.#onError(Number(msg[1]), typeof msg[2] === 'string' ? msg[2] : '', Number(msg[3] ?? 0));
        break;
      default:
        break; // types of later versions
    }
  }

  /** Server's SYNC2 applied: send what it lacks, resend unacknowledged updates. */
  #handshakeDone() {
    this.#synced = true;
    if (this.#serverSv !== null) {
      let missing = null;
      try {
        missing = this.#doc.diff(this.#serverSv);
      } catch {
        missing = null; // a state vector the engine refuses: the resends below still cover our edits
      }
      if (missing !== null) this.#send([MSG.SYNC2, missing]);
    }
    for (const e of this.#unacked) {
      e.seq = ++this.#seq;
      this.#send([MSG.UPDATE, e.seq, e.update]);
    }
    this.#syncedAt = Date.now();
    this.#setStatus('synced');
    if (this.#selection !== undefined) this.#sendPresence();
  }

  #applyRemote(update) {
    const previous = this.#text;
    // The version before: what became visible since (this update, and held
    // operations it released) is exactly the comparison from it to the new state.
    const before = this.#doc.stateVector();
    try {
      this.#doc.apply(update);
    } catch (err) {
      const message = err instanceof WeftError ? `update from the server refused: ${err.message}` : String(err);
      this.dispatchEvent(makeEvent('error', { code: 0, message, seq: 0 }));
      return;
    }
    const text = this.#doc.text();
    if (text !== previous) {
      this.#text = text;
      let delta = null;
      try {
        delta = spansToDelta(this.#doc.compare(before));
      } catch {
        delta = null; // cannot happen with a version the doc itself made; listeners fall back to a diff
      }
      this.dispatchEvent(makeEvent('change', { previous, text, delta, origin: 'remote' }));
      this.#peersMaybeMoved();
    }
  }

  #onAck(seq) {
    if (!(seq > 0)) return;
    const before = this.#unacked.length;
    this.#unacked = this.#unacked.filter((e) => e.seq === 0 || e.seq > seq);
    if (this.#unacked.length !== before) this.dispatchEvent(makeEvent('ack', { unacked: this.#unacked.length }));
  }

  #onError(code, message, seq) {
    if (code === ERROR_CODES.bad_update && seq > 0) {
      // The server will never take these bytes; resending them would fail again.
      const before = this.#unacked.length;
      this.#unacked = this.#unacked.filter((e) => e.seq !== seq);
      if (this.#unacked.length !== before) this.dispatchEvent(makeEvent('ack', { unacked: this.#unacked.length }));
    }
    this.dispatchEvent(makeEvent('error', { code, message, seq }));
  }

  #queue(update) {
    const e = { update, seq: 0 };
    this.#unacked.push(e);
    if (this.#synced) {
      e.seq = ++this.#seq;
      this.#send([MSG.UPDATE, e.seq, update]);
    }
    this.#peersMaybeMoved();
  }

  // ---- presence --------------------------------------------------------------

  /** Relative position of an index, clamped to the text and off a surrogate pair's middle. */
  #relpos(index) {
    const len = this.#doc.length();
    let i = Math.max(0, Math.min(len, Math.trunc(Number(index)) || 0));
    const c = this.#text.charCodeAt(i);
    if (i > 0 && i < len && c >= 0xdc00 && c <= 0xdfff) i--;
    return this.#doc.relposFromIndex(i, ASSOC_AFTER);
  }

  #schedulePresence() {
    if (!this.#synced || this.#presenceTimer !== null) return;
    const wait = this.#presenceSentAt + this.#throttleMs - Date.now();
    if (wait <= 0) {
      this.#sendPresence();
    } else {
      this.#presenceTimer = setTimeout(() => {
        this.#presenceTimer = null;
        this.#sendPresence();
      }, wait);
    }
  }

  #sendPresence() {
    if (!this.#synced || this.#selection === undefined) return;
    this.#clearPresenceTimer();
    const sel = this.#selection;
    if (this.#send([MSG.PRESENCE, sel ? sel.anchor : null, sel ? sel.head : null])) {
      this.#presenceSentAt = Date.now();
    }
  }

  #clearPresenceTimer() {
    if (this.#presenceTimer !== null) clearTimeout(this.#presenceTimer);
    this.#presenceTimer = null;
  }

  #onPresence(msg) {
    const r = toBigInt(msg[1]);
    if (r === null) return;
    const key = String(r);
    if (this.#ownReplicas.has(key)) return; // our own, from a connection the server has not dropped yet
    const bin = (v) => (v instanceof Uint8Array ? v.slice() : null);
    this.#peers.set(key, {
      replica: r,
      name: typeof msg[2] === 'string' ? msg[2] : '',
      color: typeof msg[3] === 'string' ? msg[3] : '',
      anchorPos: bin(msg[4]),
      headPos: bin(msg[5]),
    });
    this.#emitPeers();
  }

  #resolve(p) {
    const at = (pos) => {
      if (pos === null) return null;
      try {
        return this.#doc.relposToIndex(pos);
      } catch {
        return null; // malformed bytes from another client
      }
    };
    return { anchor: at(p.anchorPos), head: at(p.headPos) };
  }

  #emitPeers() {
    const peers = this.peers;
    this.#resolved = new Map([...peers].map(([k, p]) => [k, { anchor: p.anchor, head: p.head }]));
    this.dispatchEvent(makeEvent('peers', { peers }));
  }

  /** After an edit: emit 'peers' if a peer's resolved selection moved. */
  #peersMaybeMoved() {
    for (const [key, p] of this.#peers) {
      if (p.anchorPos === null && p.headPos === null) continue;
      const now = this.#resolve(p);
      const was = this.#resolved.get(key);
      if (!was || was.anchor !== now.anchor || was.head !== now.head) {
        this.#emitPeers();
        return;
      }
    }
  }

  #clearPeers() {
    if (this.#peers.size === 0) return;
    this.#peers.clear();
    this.#emitPeers();
  }
}
