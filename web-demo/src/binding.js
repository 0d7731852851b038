// SPDX-License-Identifier: MIT
//
// binding.js: keeps a Quill 2 editor and a WeftClient (web-demo/client/client.js)
// showing the same text.
//
// - Quill's document is always the CRDT text plus one trailing '\n' (Quill keeps
//   a final newline that can never be deleted). The binding never gives that
//   newline to the CRDT: local edits are clipped to the CRDT's length.
// - Local edits: Quill 'text-change' events with source 'user' are walked op by
//   op (edits.js) and become client.insert / client.delete calls, in order.
// - Remote edits: the client's 'change' event carries {previous, text, delta}.
//   `delta` is exactly what changed (from the engine's comparison of the two
//   versions), so an insert next to an equal character lands on the right side
//   and the local caret with it. The binding applies it with source 'api' when the
//   editor shows `previous`; otherwise (or without a delta) it diffs the editor's
//   current text against `text` with Quill's Delta. Either way Quill moves the
//   local selection along with the text and the 'user'-only listener above
//   ignores it (no feedback loop).
// - Selection: after every edit and selection change the local range goes to
//   client.setSelection(anchor, head) (anchor > head for a backward selection), or
//   null when the editor loses focus.
// - Safety net: after each local edit and on every 'synced' the binding checks
//   that the editor shows exactly the client's text, and if not (an edit the
//   client refused, say) replaces the editor's text with the client's.
//
// The client can be swapped (setClient) when the page reconnects under a new
// name; the Quill listeners stay.

import { Delta } from 'quill';
import { deltaToEdits, clipEdits } from './edits.js';

/** The detail of a client event: a CustomEvent's detail, else the event itself. */
export function eventData(ev) {
  return ev.detail !== undefined && ev.detail !== null ? ev.detail : ev;
}

/** True when the document's selection inside `root` runs from right to left. */
function isBackward(root) {
  const sel = root.ownerDocument.getSelection();
  if (!sel || sel.rangeCount === 0 || !root.contains(sel.anchorNode)) return false;
  const { anchorNode, anchorOffset, focusNode, focusOffset } = sel;
  if (anchorNode === focusNode) return focusOffset < anchorOffset;
  return Boolean(anchorNode.compareDocumentPosition(focusNode) & Node.DOCUMENT_POSITION_PRECEDING);
}

export class QuillBinding {
  /**
   * quill: a Quill instance; onRemote(): called after a remote change was shown
   * (the cursor overlay redraws then); onDrift(): called when the safety net had to
   * reset the editor (shown in the page as a warning, also useful in tests).
   */
  constructor(quill, { onRemote = () => {}, onDrift = () => {} } = {}) {
    this.quill = quill;
    this.client = null;
    this.onRemote = onRemote;
    this.onDrift = onDrift;
    this.lastSelection = undefined; // what was last sent: [anchor, head] or null
    this.clientListeners = [];

    // Quill emits 'editor-change' before 'text-change' for an edit: the selection is
    // sent from 'text-change', once the client holds the edit, so that an index at
    // the new end of the text means the same thing to the client as to Quill.
    quill.on('text-change', (delta, _old, source) => {
      if (source === 'user') this.applyLocal(delta);
      this.sendSelection();
    });
    quill.on('selection-change', () => this.sendSelection());
  }

  /** Binds to `client` (and unbinds the previous one), then shows its text. */
  setClient(client) {
    for (const [type, fn] of this.clientListeners) this.client.removeEventListener(type, fn);
    this.clientListeners = [];
    this.client = client;
    this.lastSelection = undefined;
    if (!client) return;
    const on = (type, fn) => {
      client.addEventListener(type, fn);
      this.clientListeners.push([type, fn]);
    };
    on('change', (ev) => {
      const { text, previous, delta } = eventData(ev);
      this.applyRemote(text, Array.isArray(delta) ? { previous, delta } : null);
    });
    on('status', (ev) => {
      if (eventData(ev).status === 'synced') {
        this.check();
        this.lastSelection = undefined; // a new connection has no presence yet
        this.sendSelection();
      }
    });
    this.applyRemote(client.text);
  }

  /** The editor's text without Quill's final newline. */
  editorText() {
    return this.quill.getText().slice(0, -1);
  }

  applyLocal(delta) {
    const client = this.client;
    if (!client) return;
    const edits = clipEdits(deltaToEdits(delta.ops), client.text.length);
    try {
      for (const e of edits) {
        if (e.type === 'insert') client.insert(e.index, e.text);
        else client.delete(e.index, e.length);
      }
    } catch (err) {
      this.onDrift(err);
    }
    this.check();
  }

  /**
   * Shows `text` in the editor, keeping the local selection in place. With
   * `exact` ({previous, delta} of a 'change' event) and the editor showing
   * `previous`, the delta itself is applied; otherwise the smallest change
   * between the editor's text and `text`.
   */
  applyRemote(text, exact = null) {
    let current = this.editorText();
    if (exact && current === exact.previous && exact.delta.length > 0) {
      this.quill.updateContents(exact.delta, 'api');
      current = this.editorText();
      if (current !== text) this.onDrift(new Error('remote change did not give the document text; editor reset'));
    }
    if (current !== text) {
      const change = new Delta().insert(current).diff(new Delta().insert(text));
      this.quill.updateContents(change, 'api');
    }
    this.onRemote();
  }

  /** Safety net: resets the editor to the client's text when they differ. */
  check() {
    if (!this.client) return;
    const text = this.client.text;
    if (this.editorText() !== text) {
      this.onDrift(new Error('editor and document differ; editor reset'));
      this.applyRemote(text);
    }
  }

  /** Sends the local selection as presence when it changed since the last send. */
  sendSelection() {
    const client = this.client;
    if (!client) return;
    const range = this.quill.hasFocus() ? this.quill.getSelection() : null;
    let sel = null;
    if (range) {
      const max = client.text.length; // the final '\n' is not in the CRDT
      const start = Math.min(range.index, max);
      const end = Math.min(range.index + range.length, max);
      // Quill's range has no direction; the DOM selection does (a selection made
      // with Shift+Left has its head, where the caret is drawn, at the start).
      sel = end > start && isBackward(this.quill.root) ? [end, start] : [start, end];
    }
    const last = this.lastSelection;
    if (last !== undefined && (last === sel || (last && sel && last[0] === sel[0] && last[1] === sel[1]))) {
      return;
    }
    this.lastSelection = sel;
    try {
      if (sel) client.setSelection(sel[0], sel[1]);
      else client.setSelection(null);
    } catch (err) {
      this.onDrift(err);
    }
  }
}
