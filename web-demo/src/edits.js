// SPDX-License-Identifier: MIT
//
// edits.js: turns a Quill delta (retain / insert / delete ops, as Quill reports a
// local 'text-change') into the ordered list of index-based edits the weft client
// takes (client.insert(index, text), client.delete(index, length)). Pure: no
// Quill, no DOM, so Node can test it (tests/browser/edits.test.mjs).
//
// Indexes are UTF-16 code units, like Quill's and JavaScript's. Each edit's index
// is in the text as it is after the edits before it, which is how delta ops
// compose: an insert moves the cursor past the inserted text, a delete does not
// move it. Attributes are ignored (the demo is plain text for now). An embed (an
// insert that is not a string) has length 1 in Quill; it becomes U+FFFC so the
// indexes on both sides stay aligned.

export const EMBED_CHAR = '\uFFFC';

/**
 * Returns [{type: 'insert', index, text} | {type: 'delete', index, length}] for
 * `ops` (a delta's ops array). Adjacent ops that Quill never produces back to back
 * are still handled in order.
 */
export function deltaToEdits(ops) {
  const edits = [];
  let index = 0;
  for (const op of ops) {
    if (op.retain !== undefined) {
      // A retain of an embed (an object) covers one position.
      index += typeof op.retain === 'number' ? op.retain : 1;
    } else if (op.insert !== undefined) {
      const text = typeof op.insert === 'string' ? op.insert : EMBED_CHAR;
      if (text.length > 0) {
        edits.push({ type: 'insert', index, text });
        index += text.length;
      }
    } else if (op.delete !== undefined) {
      if (op.delete > 0) edits.push({ type: 'delete', index, length: op.delete });
    }
  }
  return edits;
}

/**
 * Clips `edits` to a text that is `length` code units long before the first edit
 * (Quill's document is the CRDT text plus one trailing '\n' that the CRDT must not
 * get): inserts past the end go at the end, deletes stop at the end. Returns a new
 * list; edits that become empty are dropped.
 */
export function clipEdits(edits, length) {
  const out = [];
  let len = length;
  for (const e of edits) {
    if (e.type === 'insert') {
      const index = Math.min(e.index, len);
      out.push({ type: 'insert', index, text: e.text });
      len += e.text.length;
    } else {
      const index = Math.min(e.index, len);
      const n = Math.min(e.length, len - index);
      if (n > 0) {
        out.push({ type: 'delete', index, length: n });
        len -= n;
      }
    }
  }
  return out;
}
