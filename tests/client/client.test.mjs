// SPDX-License-Identifier: MIT
//
// client.test.mjs: the JS client (web-demo/client/client.js) against a real weftd
// (build/weftd on a free port, temporary data directory removed at the end):
// status transitions, two editors typing at the same spot converge without
// interleaving and match GET /api/docs, every update acknowledged, a late joiner,
// offline editing with setOnline(false), reconnecting after weftd is killed and
// restarted on the same port and data with edits made meanwhile, presence with
// name and colour that follows edits and leaves on close, four editors editing at
// random while going offline and online at random, and a bounded reconnect
// rate while the server is down.
//
// Run: node --test tests/client/*.test.mjs   (needs build/weftd and build/wasm/crdt.wasm,
// and `npm ci` in web-demo/ for @msgpack/msgpack and ws)

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  WebSocket, Weftd, docName, makeClient, waitConverged, waitFor, waitSynced,
} from './weftd.mjs';

const server = new Weftd();
const clients = [];

before(async () => {
  await server.start();
});

after(async () => {
  for (const c of clients) c.close();
  await server.cleanup();
});

/** makeClient, remembered for cleanup. */
async function client(doc, options) {
  const c = await makeClient(server, doc, options);
  clients.push(c);
  return c;
}

/**
 * Applies Quill-style delta ops (retain / insert / delete, UTF-16 units) to a
 * string, checking that they stay inside it.
 */
function applyDelta(text, ops) {
  let out = '';
  let at = 0;
  for (const op of ops) {
    const keys = Object.keys(op);
    assert.equal(keys.length, 1, `one key per op: ${JSON.stringify(op)}`);
    if (op.retain !== undefined) {
      assert.ok(Number.isInteger(op.retain) && op.retain > 0 && at + op.retain <= text.length, `retain ${op.retain} at ${at}`);
      out += text.slice(at, at + op.retain);
      at += op.retain;
    } else if (op.delete !== undefined) {
      assert.ok(Number.isInteger(op.delete) && op.delete > 0 && at + op.delete <= text.length, `delete ${op.delete} at ${at}`);
      at += op.delete;
    } else {
      assert.ok(typeof op.insert === 'string' && op.insert.length > 0, `insert ${JSON.stringify(op.insert)}`);
      out += op.insert;
    }
  }
  return out + text.slice(at);
}

/** Collects a client's 'change' details and checks each delta against its texts. */
function watchDeltas(c) {
  const seen = [];
  c.addEventListener('change', (ev) => {
    const { previous, text, delta } = ev.detail;
    assert.ok(Array.isArray(delta), 'change carries a delta');
    assert.equal(applyDelta(previous, delta), text, `delta ${JSON.stringify(delta)} on ${JSON.stringify(previous)}`);
    assert.ok(delta.length > 0 && delta.at(-1).retain === undefined, 'no final retain');
    seen.push(ev.detail);
  });
  return seen;
}

/** Types `word` one character at a time, starting at `index`. */
function type(c, index, word) {
  for (const ch of word) {
    c.insert(index, ch);
    index += ch.length;
  }
}

test('status goes offline -> connecting -> connected -> synced, and offline on close', async () => {
  const doc = docName('status');
  const c = await client(doc, { connect: false });
  const seen = [];
  c.addEventListener('status', (ev) => seen.push(ev.detail.status));
  assert.equal(c.status, 'offline');
  c.connect();
  await waitSynced([c]);
  assert.deepEqual(seen, ['connecting', 'connected', 'synced']);
  c.close();
  assert.equal(c.status, 'offline');
  assert.deepEqual(seen, ['connecting', 'connected', 'synced', 'offline']);
  assert.throws(() => c.connect(), /after close/);
});

test('two editors typing at the same spot converge without interleaving; all acked; REST agrees', async () => {
  const doc = docName('same-spot');
  const a = await client(doc, { name: 'ada' });
  const b = await client(doc, { name: 'bob' });
  await waitSynced([a, b]);
  a.insert(0, '[]');
  await waitFor(() => b.text === '[]', 'b sees the base');
  const changes = [];
  b.addEventListener('change', (ev) => changes.push(ev.detail));
  // Concurrent: neither has seen the other's words while typing.
  type(a, 1, 'hello😀');
  type(b, 1, 'wörld中');
  assert.ok(a.unacked > 0);
  const text = await waitConverged([a, b]);
  assert.ok(text === '[hello😀wörld中]' || text === '[wörld中hello😀]', text);
  assert.ok(changes.length > 0);
  for (const ch of changes) assert.equal(ch.origin, 'remote');
  assert.equal(changes.at(-1).text, text);
  const rest = await server.getDoc(doc);
  assert.equal(rest.text, text);
  assert.equal(rest.length, text.length);
  assert.equal(a.doc.text(), text);
  // Deletes replicate too.
  a.delete(1, 7); // 'hello😀' or 'wörld中' + ... : whatever is first
  const after1 = await waitConverged([a, b]);
  assert.equal(after1.length, text.length - 7);
  assert.equal((await server.getDoc(doc)).text, after1);
});

test("change deltas are exact: equal characters typed or deleted next to each other land on the right side", async () => {
  const doc = docName('delta');
  const a = await client(doc, { name: 'ada' });
  const b = await client(doc, { name: 'bob' });
  await waitSynced([a, b]);
  const seen = watchDeltas(b);
  a.insert(0, 'xay');
  await waitFor(() => b.text === 'xay', 'b sees xay');
  assert.deepEqual(seen.at(-1).delta, [{ insert: 'xay' }]);
  // Ada types "a" before the "a": a string diff would say "after it" (retain 2).
  a.insert(1, 'a');
  await waitFor(() => b.text === 'xaay', 'b sees xaay');
  assert.deepEqual(seen.at(-1).delta, [{ retain: 1 }, { insert: 'a' }]);
  // ... and types "aa" after both: retain 3, not 1.
  a.insert(3, 'aa');
  await waitFor(() => b.text === 'xaaaay', 'b sees xaaaay');
  assert.deepEqual(seen.at(-1).delta, [{ retain: 3 }, { insert: 'aa' }]);
  // Deletes the first "a" (a string diff would delete the last one).
  a.delete(1, 1);
  await waitFor(() => b.text === 'xaaay', 'b sees xaaay');
  assert.deepEqual(seen.at(-1).delta, [{ retain: 1 }, { delete: 1 }]);
  // A replacement of "xa" by "xa" typed anew: delete and insert, not nothing.
  // weftd may deliver the two updates in one frame (one change) or in two.
  const mark = seen.length;
  a.delete(0, 2);
  a.insert(0, 'XA');
  await waitFor(() => b.text === 'XAaay', 'b sees XAaay');
  const after = seen.slice(mark).map((d) => d.delta);
  const forms = [
    [[{ delete: 2 }], [{ insert: 'XA' }]],
    [[{ insert: 'XA' }, { delete: 2 }]],
    [[{ delete: 2 }, { insert: 'XA' }]],
  ];
  assert.ok(
    forms.some((f) => JSON.stringify(f) === JSON.stringify(after)),
    `replacement deltas: ${JSON.stringify(after)}`,
  );
  // Emoji and CJK count UTF-16 units.
  a.insert(2, '😀中');
  await waitFor(() => b.text === 'XA😀中aay', 'b sees the emoji');
  assert.deepEqual(seen.at(-1).delta, [{ retain: 2 }, { insert: '😀中' }]);
  a.insert(6, 'é');
  await waitFor(() => b.text === 'XA😀中aéay', 'b sees é');
  assert.deepEqual(seen.at(-1).delta, [{ retain: 6 }, { insert: 'é' }]);
  // A late joiner's first change is the whole text as one insert.
  const late = await client(doc);
  const lateSeen = watchDeltas(late);
  await waitConverged([a, b, late]);
  assert.deepEqual(lateSeen.map((d) => d.delta), [[{ insert: 'XA😀中aéay' }]]);
});

test('a late joiner gets the whole text', async () => {
  const doc = docName('late');
  const a = await client(doc);
  await waitSynced([a]);
  a.insert(0, 'written before anyone else came');
  await waitFor(() => a.unacked === 0, 'ack');
  const late = await client(doc);
  const text = await waitConverged([a, late]);
  assert.equal(text, 'written before anyone else came');
});

test('offline with setOnline(false): both type, back online, texts merge and match the server', async () => {
  const doc = docName('offline');
  const a = await client(doc);
  const b = await client(doc);
  await waitSynced([a, b]);
  a.insert(0, 'shared line\n');
  await waitConverged([a, b]);
  const replicaBefore = a.replica;

  a.setOnline(false);
  assert.equal(a.status, 'offline');
  await new Promise((r) => setTimeout(r, 300)); // it stays offline: no reconnect
  assert.equal(a.status, 'offline');
  type(a, a.text.length, 'offline words');
  a.delete(0, 6); // "shared"
  type(b, 0, '>> ');
  await waitFor(() => b.unacked === 0, 'b acked');
  assert.ok(a.unacked > 0, 'a queued its edits');
  assert.ok(!a.text.includes('>>'), 'a saw nothing while offline');

  a.setOnline(true);
  const text = await waitConverged([a, b]);
  assert.notEqual(a.replica, replicaBefore, 'a new replica id per connection');
  assert.equal(text, '>>  line\noffline words');
  assert.equal((await server.getDoc(doc)).text, text);
});

test('reconnects after weftd is killed and restarted on the same port and data; edits meanwhile merge', async () => {
  const doc = docName('restart');
  const a = await client(doc);
  const b = await client(doc);
  await waitSynced([a, b]);
  a.insert(0, 'before the crash. ');
  await waitConverged([a, b]);

  await server.stop('SIGKILL');
  await waitFor(() => a.status === 'offline' && b.status === 'offline', 'both notice the drop');
  a.insert(a.text.length, 'a while down. ');
  b.insert(0, 'b while down. ');
  assert.ok(a.unacked > 0 && b.unacked > 0);
  await new Promise((r) => setTimeout(r, 400)); // a retry or two fails meanwhile

  await server.start();
  const text = await waitConverged([a, b], 20000);
  assert.ok(text.includes('before the crash. '), text);
  assert.ok(text.includes('a while down. '), text);
  assert.ok(text.includes('b while down. '), text);
  assert.equal(text.length, 'before the crash. a while down. b while down. '.length);
  assert.equal((await server.getDoc(doc)).text, text);
  // Still live after the restart.
  b.insert(b.text.length, '!');
  await waitConverged([a, b]);
  assert.ok(a.text.endsWith('!'));
});

test('presence: name, colour and selection appear, follow edits, leave on close', async () => {
  const doc = docName('presence');
  const a = await client(doc, { name: 'ada', color: '#e91e63', presenceThrottleMs: 20 });
  const b = await client(doc, { name: 'bob', color: '#2196f3' });
  await waitSynced([a, b]);
  a.insert(0, 'hello world');
  await waitConverged([a, b]);

  const key = String(a.replica);
  await waitFor(() => b.peers.has(key), 'b lists a (joined, no selection yet)');
  assert.equal(b.peers.get(key).anchor, null);
  a.setSelection(6, 11); // "world"
  await waitFor(() => b.peers.get(key)?.anchor === 6, 'b sees a\'s selection');
  const p = b.peers.get(key);
  assert.deepEqual(p, { replica: a.replica, name: 'ada', color: '#e91e63', anchor: 6, head: 11 });
  assert.equal(typeof p.replica, 'bigint');
  assert.ok(!a.peers.has(key), 'own presence is not a peer');
  assert.equal(a.peers.get(String(b.replica))?.name, 'bob');

  // A remote edit before the selection moves it, with a 'peers' event.
  let moved = false;
  b.addEventListener('peers', () => {
    moved = true;
  });
  a.insert(0, '>> ');
  await waitFor(() => b.peers.get(key)?.anchor === 9, 'selection moved by the insert');
  assert.equal(b.peers.get(key).head, 14);
  assert.ok(moved);
  // b's own edit moves it too.
  b.insert(0, '#');
  assert.equal(b.peers.get(key).anchor, 10);
  await waitConverged([a, b]); // a's next selection is made on the same text

  // Throttled: a burst of selections ends with the last one.
  for (let i = 0; i <= 5; i++) a.setSelection(i);
  await waitFor(() => b.peers.get(key)?.anchor === 5 && b.peers.get(key)?.head === 5, 'last caret');
  a.setSelection(null);
  await waitFor(() => b.peers.get(key)?.anchor === null, 'selection cleared');

  // Own presence is re-sent after a reconnect (under the new replica id).
  a.setSelection(3);
  a.setOnline(false);
  await waitFor(() => !b.peers.has(key), 'b drops a when it goes offline');
  a.setOnline(true);
  await waitSynced([a]);
  const key2 = String(a.replica);
  await waitFor(() => b.peers.get(key2)?.anchor === 3, 'presence re-sent after reconnect');

  const left = new Promise((resolve) => b.addEventListener('peers', (ev) => {
    if (!ev.detail.peers.has(key2)) resolve();
  }));
  a.close();
  await left;
  assert.ok(!b.peers.has(key2));
});

test('four editors editing at random, going offline and online at random, converge', async () => {
  const doc = docName('random');
  const eds = [];
  for (let i = 0; i < 4; i++) eds.push(await client(doc, { name: `ed${i}` }));
  await waitSynced(eds);
  const deltas = eds.map((c) => watchDeltas(c)); // each 'change' delta turns previous into text
  let seed = 0x2545f491; // xorshift32, fixed seed (network timing still varies from run to run)
  const rand = (n) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const pieces = ['a', 'bc', 'word ', 'é', '中文', '😀', '\n'];
  let edits = 0;
  for (let step = 0; step < 200; step++) {
    const c = eds[rand(eds.length)];
    const len = c.text.length;
    const k = rand(100);
    // An index on a character boundary (not inside a surrogate pair).
    const boundary = (i) => (i > 0 && i < len && /[\udc00-\udfff]/.test(c.text[i]) ? i - 1 : i);
    if (k < 65 || len === 0) {
      c.insert(boundary(rand(len + 1)), pieces[rand(pieces.length)]);
      edits++;
    } else if (k < 90) {
      const at = boundary(rand(len));
      let end = Math.min(len, at + 1 + rand(4));
      if (end < len && /[\udc00-\udfff]/.test(c.text[end])) end++;
      c.delete(at, end - at);
      edits++;
    } else {
      c.setOnline(c.status === 'offline' ? true : rand(2) === 0);
    }
    if (rand(4) === 0) await new Promise((r) => setTimeout(r, rand(15)));
  }
  for (const c of eds) c.setOnline(true);
  const text = await waitConverged(eds, 20000);
  assert.equal((await server.getDoc(doc)).text, text, `REST text after ${edits} edits`);
  for (const c of eds) assert.equal(c.doc.text(), text);
  assert.ok(deltas.every((d) => d.length > 0), 'every editor saw remote changes');
});

test('while the server is down, reconnects back off (no busy loop)', async () => {
  const doc = docName('backoff');
  let opened = 0;
  class CountingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      opened++;
    }
  }
  const c = await client(doc, { WebSocket: CountingWebSocket, random: () => 0.5 });
  await waitSynced([c]);
  await server.stop('SIGKILL');
  const from = opened;
  await new Promise((r) => setTimeout(r, 2500));
  // Delays at random() = 0.5: 250, 375, 750, 1500 ms ... at most 4 tries in 2.5 s.
  const tries = opened - from;
  assert.ok(tries >= 2 && tries <= 4, `${tries} connection attempts in 2.5 s`);
  await server.start();
  await waitSynced([c], 15000);
  c.insert(0, 'back');
  await waitFor(() => c.unacked === 0, 'ack after restart');
  assert.equal((await server.getDoc(doc)).text, 'back');
});

test('ERROR from the server is an error event (a second HELLO is bad_message)', async () => {
  // Drive the server through a client whose WebSocket sends an extra HELLO.
  const doc = docName('error');
  let sock = null;
  class Spy extends WebSocket {
    constructor(...args) {
      super(...args);
      sock = this;
    }
  }
  const c = await client(doc, { WebSocket: Spy });
  await waitSynced([c]);
  const errors = [];
  c.addEventListener('error', (ev) => errors.push(ev.detail));
  sock.send(Uint8Array.from([0x96, 0x01, 0x01, 0x2a, 0xa0, 0xa0, 0xc0])); // HELLO again
  await waitFor(() => errors.length > 0, 'error event');
  assert.equal(errors[0].code, 1);
  assert.equal(typeof errors[0].message, 'string');
  // The connection stays open and usable.
  c.insert(0, 'still fine');
  await waitFor(() => c.unacked === 0, 'ack');
  assert.equal(c.status, 'synced');
});
