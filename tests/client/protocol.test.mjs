// SPDX-License-Identifier: MIT
//
// protocol.test.mjs: the JS client (web-demo/client/client.js) against a scripted
// fake WebSocket, for what a real weftd does not easily show: the exact messages
// and their order (HELLO fields, SYNC1 answered, SYNC2 with what the server lacks
// and the unacknowledged UPDATEs resent with new seqs after the server's SYNC2),
// ACKs counting down, a fresh replica id per connection (after replica_in_use),
// bad_update dropping its update, uint64 replica ids in PRESENCE_STATE, ignored
// own presence and unknown message types, and no reconnect after close().
//
// Run: node --test tests/client/*.test.mjs

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { MSG, WeftClient, spansToDelta } from '../../web-demo/client/client.js';
import { engine } from './weftd.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const msgpack = createRequire(path.join(here, '..', '..', 'web-demo', 'package.json'))('@msgpack/msgpack');

/** A WebSocket stand-in the test drives; instances are collected in `sockets`. */
function fakeSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }

    send(bytes) {
      assert.ok(bytes instanceof Uint8Array);
      this.sent.push(msgpack.decode(bytes, { useBigInt64: true }));
    }

    close(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closed = code;
      this.onclose?.({ code });
    }

    // ---- driven by the test ----
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    deliver(msg) {
      const bytes = msgpack.encode(msg, { useBigInt64: true }); // bigints as uint64, as a C server may
      this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    }

    drop() {
      this.readyState = 3;
      this.onclose?.({ code: 1006 });
    }

    take() {
      const s = this.sent;
      this.sent = [];
      return s;
    }
  }
  return { FakeWebSocket, sockets };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

test('handshake, resend of unacknowledged updates, ACKs, and a fresh replica per connection', async () => {
  const e = await engine();
  const { FakeWebSocket, sockets } = fakeSocketClass();
  const c = new WeftClient({
    url: 'ws://example.invalid/ws/d', engine: e, name: 'ada', color: '#123456', token: 'tok', WebSocket: FakeWebSocket,
  });
  // A server-side document with text the client lacks.
  const server = e.newDoc(99n);
  server.insert(0, 'server text');

  c.insert(0, 'mine '); // before connecting: queued
  assert.equal(c.unacked, 1);
  c.connect();
  const s1 = sockets[0];
  assert.equal(s1.url, 'ws://example.invalid/ws/d');
  assert.equal(c.status, 'connecting');
  s1.open();
  const [hello] = s1.take();
  assert.equal(hello.length, 6);
  assert.deepEqual([hello[0], hello[1], hello[3], hello[4], hello[5]], [MSG.HELLO, 1, 'ada', '#123456', 'tok']);
  const replica1 = BigInt(hello[2]);
  assert.equal(replica1, c.replica);
  assert.ok(replica1 > 0n && replica1 < 2n ** 53n);

  s1.deliver([MSG.WELCOME, 1, hello[2], 1 << 20]);
  assert.equal(c.status, 'connected');
  s1.deliver([MSG.SYNC1, server.stateVector()]);
  const [sync1] = s1.take();
  assert.equal(sync1[0], MSG.SYNC1);
  const changes = [];
  c.addEventListener('change', (ev) => changes.push(ev.detail));
  s1.deliver([MSG.SYNC2, server.diff(sync1[1])]);
  assert.equal(c.status, 'synced');
  assert.equal(changes.length, 1);
  assert.equal(changes[0].previous, 'mine ');
  assert.equal(changes[0].origin, 'remote');
  assert.equal(c.text, changes[0].text);
  const out = s1.take();
  assert.deepEqual(out.map((m) => m[0]), [MSG.SYNC2, MSG.UPDATE]);
  assert.equal(out[1][1], 1); // seq
  server.apply(out[0][1]);
  assert.equal(server.text(), c.text);

  c.insert(0, 'x');
  c.insert(0, 'y');
  assert.deepEqual(s1.take().map((m) => [m[0], m[1]]), [[MSG.UPDATE, 2], [MSG.UPDATE, 3]]);
  assert.equal(c.unacked, 3);
  s1.deliver([MSG.ACK, 2]);
  assert.equal(c.unacked, 1);

  // Dropped: the third update is resent on the next connection, under seq 1.
  s1.drop();
  assert.equal(c.status, 'offline');
  c.insert(0, 'z'); // offline edit
  await tick(600); // first retry after 250 .. 250 ms (jitter) with backoff attempt 0
  const s2 = sockets[1];
  assert.ok(s2, 'reconnected');
  s2.open();
  const [hello2] = s2.take();
  assert.notEqual(BigInt(hello2[2]), replica1, 'fresh replica id');
  assert.equal(c.doc.replica, BigInt(hello2[2]));
  // replica_in_use: ERROR then close; the next attempt uses yet another id.
  const errors = [];
  c.addEventListener('error', (ev) => errors.push(ev.detail));
  s2.deliver([MSG.ERROR, 7, 'replica id in use', 0]);
  s2.drop();
  assert.deepEqual(errors, [{ code: 7, message: 'replica id in use', seq: 0 }]);
  await tick(1200);
  const s3 = sockets[2];
  assert.ok(s3);
  s3.open();
  const [hello3] = s3.take();
  assert.ok(![BigInt(hello[2]), BigInt(hello2[2])].includes(BigInt(hello3[2])));
  s3.deliver([MSG.WELCOME, 1, hello3[2], 1 << 20]);
  s3.deliver([MSG.SYNC1, server.stateVector()]);
  s3.take();
  s3.deliver([MSG.SYNC2, server.diff(c.doc.stateVector())]);
  const resent = s3.take();
  assert.deepEqual(resent.map((m) => [m[0], m[0] === MSG.UPDATE ? m[1] : null]),
    [[MSG.SYNC2, null], [MSG.UPDATE, 1], [MSG.UPDATE, 2]]);
  server.apply(resent[0][1]);
  assert.equal(server.text(), c.text);
  // bad_update about seq 1 drops that update; ACK 2 then empties the queue.
  s3.deliver([MSG.ERROR, 6, 'no', 1]);
  assert.equal(c.unacked, 1);
  s3.deliver([MSG.ACK, 2]);
  assert.equal(c.unacked, 0);

  c.close();
  assert.equal(s3.closed, 1000);
  await tick(600);
  assert.equal(sockets.length, 3, 'no reconnect after close()');
  server.free();
});

test('presence: uint64 replica ids, own presence ignored, unknown types ignored, peers cleared on drop', async () => {
  const e = await engine();
  const { FakeWebSocket, sockets } = fakeSocketClass();
  const c = new WeftClient({ url: 'ws://x/ws/d', engine: e, WebSocket: FakeWebSocket, presenceThrottleMs: 0 });
  c.connect();
  const s = sockets[0];
  s.open();
  const [hello] = s.take();
  s.deliver([MSG.WELCOME, 1, hello[2], 1 << 20]);
  s.deliver([MSG.SYNC1, new Uint8Array(0)]);
  const other = e.newDoc(5n);
  other.insert(0, 'abcdef');
  s.deliver([MSG.SYNC2, other.encodeState()]);
  s.take();
  assert.equal(c.text, 'abcdef');

  const big = 2n ** 63n + 5n;
  s.deliver([MSG.PRESENCE_STATE, big, 'eve', '#00ff00', other.relposFromIndex(2), other.relposFromIndex(4)]);
  s.deliver([MSG.PRESENCE_STATE, hello[2], 'me', '#000000', null, null]); // own: ignored
  s.deliver([20, 'a later message type']);
  const p = c.peers.get(String(big));
  assert.deepEqual(p, { replica: big, name: 'eve', color: '#00ff00', anchor: 2, head: 4 });
  assert.equal(c.peers.size, 1);

  c.setSelection(1, 3);
  const [pres] = s.take();
  assert.equal(pres[0], MSG.PRESENCE);
  assert.equal(other.relposToIndex(pres[1]), 1);
  assert.equal(other.relposToIndex(pres[2]), 3);
  c.setSelection(null);
  assert.deepEqual(s.take(), [[MSG.PRESENCE, null, null]]);

  let peersEvents = 0;
  c.addEventListener('peers', () => peersEvents++);
  c.insert(0, '>>'); // moves eve's selection
  assert.equal(c.peers.get(String(big)).anchor, 4);
  assert.equal(peersEvents, 1);
  s.deliver([MSG.PRESENCE_LEAVE, big]);
  assert.equal(c.peers.size, 0);
  s.deliver([MSG.PRESENCE_STATE, 77, 'x', '#111111', null, null]);
  assert.equal(c.peers.size, 1);
  c.setOnline(false);
  assert.equal(c.peers.size, 0, 'peers cleared when the connection ends');
  assert.equal(c.status, 'offline');
  c.close();
  other.free();
});

test('a server that ends every session right after the handshake gets ever longer retry delays', async () => {
  const e = await engine();
  const { FakeWebSocket, sockets } = fakeSocketClass();
  const c = new WeftClient({ url: 'ws://x/ws/d', engine: e, WebSocket: FakeWebSocket, random: () => 0.5 });
  const serve = (s) => {
    s.open();
    const [hello] = s.take();
    s.deliver([MSG.WELCOME, 1, hello[2], 1 << 20]);
    s.deliver([MSG.SYNC1, new Uint8Array(0)]);
    s.deliver([MSG.SYNC2, new Uint8Array(0)]);
    assert.equal(c.status, 'synced');
    s.deliver([MSG.ERROR, 8, 'storage failed', 0]);
    s.drop();
  };
  c.addEventListener('error', () => {});
  c.connect();
  let served = 0;
  const start = Date.now();
  while (Date.now() - start < 2500) {
    while (served < sockets.length) serve(sockets[served++]);
    await tick(5);
  }
  c.close();
  // At random() = 0.5 the delays are 250, 375, 750, 1500 ms: 4 sessions in 2.5 s
  // (a backoff reset by every handshake would make about 10).
  assert.ok(sockets.length >= 3 && sockets.length <= 5, `${sockets.length} sessions in 2.5 s`);
});

test('spansToDelta: merged ops, inserts before deletes, no final retain', () => {
  const span = (kind, text) => ({ kind, author: 1n, units: text.length, text });
  assert.deepEqual(spansToDelta([]), []);
  assert.deepEqual(spansToDelta([span('kept', 'abc')]), []);
  assert.deepEqual(spansToDelta([span('kept', 'ab'), span('kept', 'c'), span('inserted', 'x'), span('kept', 'd')]),
    [{ retain: 3 }, { insert: 'x' }]);
  assert.deepEqual(spansToDelta([span('deleted', 'ab'), span('inserted', 'x'), span('inserted', 'y'), span('deleted', 'c'),
    span('kept', '😀'), span('deleted', '中')]),
  [{ insert: 'xy' }, { delete: 3 }, { retain: 2 }, { delete: 1 }]);
});

test("'change' deltas: exact next to equal characters, held operations counted when they show", async () => {
  const e = await engine();
  const { FakeWebSocket, sockets } = fakeSocketClass();
  const c = new WeftClient({ url: 'ws://x/ws/d', engine: e, WebSocket: FakeWebSocket });
  const changes = [];
  c.addEventListener('change', (ev) => changes.push(ev.detail));
  c.connect();
  const s = sockets[0];
  s.open();
  const [hello] = s.take();
  s.deliver([MSG.WELCOME, 1, hello[2], 1 << 20]);
  s.deliver([MSG.SYNC1, new Uint8Array(0)]);
  const other = e.newDoc(5n);
  const u0 = other.insert(0, 'aaa');
  s.deliver([MSG.SYNC2, u0]);
  assert.deepEqual(changes.map((d) => d.delta), [[{ insert: 'aaa' }]]);

  // Two updates of the other editor arrive out of order: the second is held (no
  // change), and the first releases it: one change holding both.
  const u1 = other.insert(1, 'a'); // before the second 'a'
  const u2 = other.insert(2, 'b'); // right after the new 'a'
  s.deliver([MSG.UPDATE, 1, u2]);
  assert.equal(changes.length, 1);
  assert.ok(c.doc.pending() > 0);
  s.deliver([MSG.UPDATE, 2, u1]);
  assert.equal(c.text, 'aabaa');
  assert.deepEqual(changes.at(-1), { previous: 'aaa', text: 'aabaa', delta: [{ retain: 1 }, { insert: 'ab' }], origin: 'remote' });

  // Local edits in between: the delta is against the text the client had, local edits included.
  c.insert(5, 'a'); // aabaaa
  const u3 = other.delete(3, 1); // deletes the 'a' right after 'b'
  s.deliver([MSG.UPDATE, 3, u3]);
  assert.equal(c.text, 'aabaa');
  assert.deepEqual(changes.at(-1).delta, [{ retain: 3 }, { delete: 1 }]);
  assert.equal(changes.at(-1).previous, 'aabaaa');

  // A duplicate changes nothing and fires nothing.
  s.deliver([MSG.UPDATE, 4, u1]);
  assert.equal(changes.length, 3);
  c.close();
  other.free();
});
