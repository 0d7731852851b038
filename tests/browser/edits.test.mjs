// SPDX-License-Identifier: MIT
//
// edits.test.mjs: the delta walk of web-demo/src/edits.js in Node, without a
// browser: Quill deltas (retain / insert / delete, attributes ignored) become
// client insert/delete calls in order, and edits are clipped so the CRDT never
// gets Quill's final newline. Replaying the edits on a string must give the same
// text as Quill's Delta.compose.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';
import { deltaToEdits, clipEdits, EMBED_CHAR } from '../../web-demo/src/edits.js';

const require = createRequire(join(ROOT, 'web-demo', 'package.json'));
const Delta = require('quill-delta');

function replay(text, edits) {
  for (const e of edits) {
    if (e.type === 'insert') text = text.slice(0, e.index) + e.text + text.slice(e.index);
    else text = text.slice(0, e.index) + text.slice(e.index + e.length);
  }
  return text;
}

function quillText(delta) {
  return delta.ops.map((op) => (typeof op.insert === 'string' ? op.insert : EMBED_CHAR)).join('');
}

test('retain, insert and delete become ordered edits', () => {
  const ops = [{ retain: 3 }, { insert: 'XY' }, { delete: 2 }, { retain: 1, attributes: { bold: true } }, { insert: 'Z' }];
  assert.deepEqual(deltaToEdits(ops), [
    { type: 'insert', index: 3, text: 'XY' },
    { type: 'delete', index: 5, length: 2 },
    { type: 'insert', index: 6, text: 'Z' },
  ]);
});

test('replaying the edits equals composing the delta (random deltas)', () => {
  let seed = 12345; // xorshift32, fixed seed
  const rand = (n) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const alphabet = ['a', 'b', '\n', 'é', '👋', '世'];
  for (let round = 0; round < 500; round++) {
    let doc = new Delta().insert('hello\nworld 👋\n');
    for (let step = 0; step < 5; step++) {
      const len = doc.length();
      const change = new Delta();
      let pos = 0;
      while (pos < len - 1) {
        const r = rand(4);
        if (r === 0) {
          change.insert(alphabet[rand(alphabet.length)]);
        } else {
          const n = Math.min(1 + rand(3), len - 1 - pos);
          // Never split a surrogate pair, as Quill never does.
          const text = quillText(doc);
          let m = n;
          if (text.charCodeAt(pos + m - 1) >= 0xd800 && text.charCodeAt(pos + m - 1) < 0xdc00) m += 1;
          if (pos + m > len - 1) break;
          if (r === 1) change.delete(m);
          else change.retain(m);
          pos += m;
        }
      }
      const before = quillText(doc).slice(0, -1); // the CRDT text: no final newline
      doc = doc.compose(change);
      const edits = clipEdits(deltaToEdits(change.ops), before.length);
      assert.equal(replay(before, edits), quillText(doc).slice(0, -1), `seed round ${round}`);
    }
  }
});

test('edits past the end of the CRDT text are clipped', () => {
  // Quill document "ab\n": the CRDT holds "ab".
  assert.deepEqual(clipEdits(deltaToEdits([{ retain: 2 }, { delete: 1 }]), 2), []);
  assert.deepEqual(clipEdits(deltaToEdits([{ retain: 1 }, { delete: 5 }]), 2), [{ type: 'delete', index: 1, length: 1 }]);
  assert.deepEqual(clipEdits(deltaToEdits([{ retain: 3 }, { insert: 'x' }]), 2), [{ type: 'insert', index: 2, text: 'x' }]);
});

test('an embed keeps indexes aligned', () => {
  assert.deepEqual(deltaToEdits([{ insert: { image: 'x' } }, { retain: { image: 'y' } }, { insert: 'a' }]), [
    { type: 'insert', index: 0, text: EMBED_CHAR },
    { type: 'insert', index: 2, text: 'a' },
  ]);
});
