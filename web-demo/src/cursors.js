// SPDX-License-Identifier: MIT
//
// cursors.js: draws the other editors' carets and selections over the Quill
// editor. One absolutely positioned overlay sits inside Quill's container (which
// is position: relative); for each peer with a selection it holds a caret (a
// coloured bar with the peer's name on a flag, data-testid="remote-cursor",
// data-name=<name>) at the selection's head and translucent boxes over the
// selected text, one per visual line. Positions come from Quill (getBounds for
// the caret, DOM Range client rects for the selection), relative to the
// container, so they stay right when the page scrolls. The page calls render()
// after 'peers' events, remote changes, local edits, editor scroll and window
// resize; render() rebuilds the overlay (a handful of elements per peer).

/** Clamps an index into [0, max]. */
function clamp(i, max) {
  return Math.max(0, Math.min(i, max));
}

export class CursorOverlay {
  constructor(quill) {
    this.quill = quill;
    this.peers = new Map();
    this.layer = document.createElement('div');
    this.layer.className = 'remote-cursors';
    this.layer.setAttribute('aria-hidden', 'true');
    quill.container.appendChild(this.layer);
    this.frame = 0;
    quill.root.addEventListener('scroll', () => this.schedule(), { passive: true });
    window.addEventListener('resize', () => this.schedule());
  }

  /** Replaces the peers shown (a Map of {name, color, anchor, head}) and redraws. */
  setPeers(peers) {
    this.peers = peers || new Map();
    this.render();
  }

  /** Redraws on the next animation frame (coalesces bursts of events). */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const quill = this.quill;
    const max = quill.getLength() - 1; // the CRDT text's length
    const box = quill.container.getBoundingClientRect();
    const parts = [];
    for (const [id, peer] of this.peers) {
      if (peer.anchor === null || peer.anchor === undefined) continue;
      if (peer.head === null || peer.head === undefined) continue;
      const color = peer.color || '#888888';
      const anchor = clamp(peer.anchor, max);
      const head = clamp(peer.head, max);
      const from = Math.min(anchor, head);
      const to = Math.max(anchor, head);
      if (to > from) {
        for (const r of this.rangeRects(from, to, box)) {
          const sel = document.createElement('div');
          sel.className = 'remote-selection';
          sel.style.cssText = `left:${r.left}px;top:${r.top}px;width:${r.width}px;height:${r.height}px;background:${color}`;
          parts.push(sel);
        }
      }
      const caret = quill.getBounds(head, 0);
      if (!caret) continue;
      const el = document.createElement('div');
      el.className = 'remote-cursor';
      el.dataset.testid = 'remote-cursor';
      el.dataset.name = peer.name || '';
      el.dataset.replica = String(peer.replica ?? id);
      el.style.cssText = `left:${caret.left}px;top:${caret.top}px;height:${caret.height}px;--peer:${color}`;
      const flag = document.createElement('span');
      flag.className = 'remote-cursor-name';
      flag.textContent = peer.name || 'anonymous';
      el.appendChild(flag);
      parts.push(el);
    }
    this.layer.replaceChildren(...parts);
  }

  /**
   * Client rects of the text between two indexes, relative to the container
   * (`box` is its bounding rect): one per visual line, so a selection over
   * several lines is drawn like a native one. Falls back to Quill's single
   * bounding box when the DOM range cannot be built.
   */
  rangeRects(from, to, box) {
    const quill = this.quill;
    try {
      const start = this.domPoint(from);
      const end = this.domPoint(to);
      if (start && end) {
        const range = document.createRange();
        range.setStart(start[0], start[1]);
        range.setEnd(end[0], end[1]);
        const rects = [];
        for (const r of range.getClientRects()) {
          if (r.width < 1 && r.height < 1) continue;
          rects.push({ left: r.left - box.left, top: r.top - box.top, width: Math.max(r.width, 2), height: r.height });
        }
        if (rects.length) return rects;
      }
    } catch {
      // fall through to the bounding box
    }
    const b = quill.getBounds(from, to - from);
    return b ? [b] : [];
  }

  /** The DOM [node, offset] of a document index, through Quill's leaf blots. */
  domPoint(index) {
    const [leaf, offset] = this.quill.getLeaf(index);
    if (!leaf || typeof leaf.position !== 'function') return null;
    return leaf.position(offset, true);
  }
}
