// SPDX-License-Identifier: MIT
//
// history.js: the demo page's document history (docs/history.md): a side panel
// listing the document's versions, newest first, and a read-only preview of one
// version that takes the editor's place.
//
// - List: GET /api/docs/<doc>/versions?limit=N, then ?before=<next_before> for
//   "Load more". Each version shows its time (relative, and absolute), its authors
//   with their colour when the page knows it (you, the people here, people seen
//   since the page opened), the size of its change (+inserted −deleted units), its
//   name if it has one (named versions stand out), and whether it is a restore.
//   The list is reloaded (debounced) while the panel is open and the document
//   changes: the page calls changed() on remote changes and on acknowledgements
//   of its own edits (they are in the server's log then).
// - Preview: clicking a version loads GET /versions/<seq>: its text, with the
//   changes of that version marked (inserted text underlined in green, deleted
//   text struck through in red, each with its author in a tooltip), in place of
//   the editor, with "Back to editing", "Restore this version" (POST /restore with
//   {version, name}: the restore is an ordinary edit that reaches every editor,
//   this one included, through the sync) and "Name this version" (POST
//   /versions/<seq>/name with {name, by}).
// - Phones (max-width 640 px): the panel is a full-width sheet; opening a preview
//   puts the sheet away, "History" brings it back.
//
// Test hooks (docs/web-demo.md): data-testid history-toggle, history, version
// (data-seq), history-more, preview, back-to-editor, restore-version,
// version-name-input, name-version.

const PAGE_SIZE = 20;
const REFRESH_DELAY_MS = 800;
const CLOCK_TICK_MS = 30000;
const NARROW = '(max-width: 640px)';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

/** An element with a class and children (strings become text). */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const RELATIVE = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })
  : null;

/** "just now", "3 minutes ago", "yesterday", ... for a time in ms since the epoch. */
export function relativeTime(ms, now = Date.now()) {
  // The server's clock may run a little ahead of this one: that is "just now" too.
  const s = Math.min(0, Math.round((ms - now) / 1000));
  const abs = Math.abs(s);
  if (abs < 45) return 'just now';
  const steps = [
    [3600, 60, 'minute'],
    [86400, 3600, 'hour'],
    [86400 * 7, 86400, 'day'],
    [86400 * 30, 86400 * 7, 'week'],
    [86400 * 365, 86400 * 30, 'month'],
    [Infinity, 86400 * 365, 'year'],
  ];
  for (const [limit, unit, name] of steps) {
    if (abs < limit) {
      const n = Math.round(s / unit);
      return RELATIVE ? RELATIVE.format(n, name) : `${Math.abs(n)} ${name}${Math.abs(n) === 1 ? '' : 's'} ago`;
    }
  }
  return '';
}

/** "25 Nov 2025, 19:28" (the browser's locale). */
export function absoluteTime(ms) {
  const d = new Date(ms);
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return d.toLocaleString(undefined, {
    day: 'numeric', month: 'short', year: sameYear ? undefined : 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

/** An Error from a failed API call, with the server's {"error"} text when there is one. */
async function apiError(res, what) {
  let detail = '';
  try {
    detail = (await res.json()).error || '';
  } catch {
    detail = '';
  }
  const err = new Error(`${what}: ${detail || `HTTP ${res.status}`}`);
  err.status = res.status;
  return err;
}

export class HistoryPanel {
  /**
   * @param {object} o
   * @param {string} o.doc the document's name
   * @param {() => {name: string, color: string}} o.me who you are
   * @param {() => Map<string, {replica: bigint, name: string, color: string}>} o.peers who is here
   * @param {() => boolean} o.neverEdited true while the document surely has no history yet
   *   (nothing to ask the server; it would answer 404)
   * @param {(previewing: boolean) => void} o.onPreview the page hides or shows its editor
   * @param {(text: string, sticky?: boolean) => void} o.notice messages for the user
   */
  constructor({ doc, me, peers, neverEdited = () => false, onPreview = () => {}, notice = () => {} }) {
    this.doc = doc;
    this.me = me;
    this.peersOf = peers;
    this.neverEdited = neverEdited;
    this.onPreview = onPreview;
    this.notice = notice;
    this.pageSize = PAGE_SIZE;
    this.base = new URL(`api/docs/${encodeURIComponent(doc)}/`, document.baseURI);

    this.open = false;
    this.versions = []; // as the server lists them, newest first
    this.head = null;
    this.nextBefore = null;
    this.loading = null; // the request in flight (a promise), if any
    this.again = false; // another refresh was asked for while one was in flight
    this.error = '';
    this.refreshTimer = 0;
    this.clockTimer = 0;
    this.preview = null; // {seq, data} of the version shown
    this.colours = new Map(); // name -> colour of everyone seen while the page is open

    this.toggle = $('history-toggle');
    this.panel = $('history');
    this.list = this.panel.querySelector('.versions');
    this.status = this.panel.querySelector('.history-status');
    this.more = $('history-more');
    this.previewEl = $('preview');
    this.previewText = this.previewEl.querySelector('.preview-text');
    this.previewTitle = this.previewEl.querySelector('.preview-title');
    this.previewMeta = this.previewEl.querySelector('.preview-meta');
    this.nameInput = $('version-name-input');
    this.nameButton = $('name-version');
    this.restoreButton = $('restore-version');
    this.narrow = window.matchMedia(NARROW);

    this.toggle.addEventListener('click', () => this.setOpen(!this.open || this.hiddenByPreview()));
    this.panel.querySelector('.history-close').addEventListener('click', () => this.setOpen(false));
    this.more.addEventListener('click', () => this.loadMore());
    $('back-to-editor').addEventListener('click', () => this.closePreview());
    this.restoreButton.addEventListener('click', () => this.restore());
    this.previewEl.querySelector('.name-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.nameVersion();
    });
    document.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape' || ev.defaultPrevented) return;
      if (this.preview) this.closePreview();
      else if (this.open) this.setOpen(false);
    });
  }

  /** Remembers the colours of the people here now (called on every 'peers' event). */
  notePeers() {
    for (const p of this.peersOf().values()) if (p.name && p.color) this.colours.set(p.name, p.color);
  }

  /** The colour of an author, when known. */
  colourOf(author) {
    const me = this.me();
    if (author.name === me.name) return me.color;
    for (const p of this.peersOf().values()) {
      if (String(p.replica) === String(author.replica) && p.color) return p.color;
    }
    return this.colours.get(author.name) || null;
  }

  /** On phones the sheet steps aside while a preview is shown. */
  hiddenByPreview() {
    return this.narrow.matches && this.preview !== null && this.panel.classList.contains('stowed');
  }

  setOpen(open) {
    this.open = open;
    this.panel.classList.remove('stowed');
    this.panel.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.toggle.classList.toggle('active', open);
    document.body.classList.toggle('history-open', open);
    clearInterval(this.clockTimer);
    if (open) {
      this.refresh();
      this.clockTimer = setInterval(() => this.renderTimes(), CLOCK_TICK_MS);
      this.panel.querySelector('.history-close').focus({ preventScroll: true });
    } else {
      clearTimeout(this.refreshTimer);
    }
  }

  /** The document changed: reload the list soon (if it is shown). */
  changed() {
    if (!this.open) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  // ---- the list --------------------------------------------------------------

  async getJson(path) {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(new URL(path, this.base), { headers: { accept: 'application/json' } });
      // 503: a version the server has queued but not committed yet; it is there in a moment.
      if (res.status === 503 && attempt < 3) {
        await sleep(150 * (attempt + 1));
        continue;
      }
      if (!res.ok) throw await apiError(res, 'history');
      return res.json();
    }
  }

  async postJson(path, body, what) {
    const res = await fetch(new URL(path, this.base), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw await apiError(res, what);
    return res.json();
  }

  /** Reloads the newest versions (as many as are shown, so "Load more" pages stay). */
  async refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    const limit = Math.min(200, Math.max(this.pageSize, this.versions.length));
    this.loading = (async () => {
      try {
        if (this.neverEdited()) {
          this.versions = [];
          this.head = 0;
          this.nextBefore = null;
        } else {
          const page = await this.getJson(`versions?limit=${limit}`);
          this.versions = page.versions || [];
          this.head = page.head;
          this.nextBefore = page.next_before ?? null;
        }
        this.error = '';
      } catch (err) {
        if (err.status === 404) {
          this.versions = []; // a document nobody has written to yet
          this.nextBefore = null;
          this.error = '';
        } else {
          this.error = `Could not load the history (${err.message}).`;
        }
      }
    })();
    await this.loading;
    this.loading = null;
    this.render();
    if (this.again) {
      this.again = false;
      await this.refresh();
    }
    return undefined;
  }

  /**
   * Refreshes until `done()` holds (a name or a restore the server has queued is
   * listed once its store commits it, a few milliseconds later), for about 2 s at most.
   */
  async refreshUntil(done) {
    for (const wait of [0, 50, 100, 200, 400, 800]) {
      if (wait) await sleep(wait);
      await this.refresh();
      if (done()) return;
    }
  }

  async loadMore() {
    if (this.nextBefore === null || this.loading) return;
    this.more.disabled = true;
    this.more.textContent = 'Loading…';
    this.loading = (async () => {
      try {
        const page = await this.getJson(`versions?before=${this.nextBefore}&limit=${this.pageSize}`);
        const have = new Set(this.versions.map((v) => v.seq));
        this.versions.push(...(page.versions || []).filter((v) => !have.has(v.seq)));
        this.nextBefore = page.next_before ?? null;
        this.error = '';
      } catch (err) {
        this.error = `Could not load more versions (${err.message}).`;
      }
    })();
    await this.loading;
    this.loading = null;
    this.render();
  }

  /** The label of a version for messages: its name, or its time. */
  describe(seq) {
    const v = this.versions.find((x) => x.seq === seq);
    if (v && v.name) return `“${v.name}”`;
    if (v) return `the version of ${absoluteTime(v.end)}`;
    return `version ${seq}`;
  }

  render() {
    this.notePeers();
    const items = this.versions.map((v) => this.item(v));
    this.list.replaceChildren(...items);
    if (this.error) {
      this.status.textContent = this.error;
      this.status.className = 'history-status error';
    } else if (this.versions.length === 0) {
      this.status.textContent = 'No versions yet. Start typing: every burst of edits becomes one.';
      this.status.className = 'history-status';
    } else {
      this.status.textContent = '';
      this.status.className = 'history-status';
    }
    this.status.hidden = this.status.textContent === '';
    this.more.hidden = this.nextBefore === null;
    this.more.disabled = false;
    this.more.textContent = 'Load more';
  }

  item(v) {
    const li = el('li', 'version');
    li.dataset.testid = 'version';
    li.dataset.seq = String(v.seq);
    if (v.name) li.classList.add('named');
    if (v.restore_of !== null && v.restore_of !== undefined) li.classList.add('restore');
    if (this.preview && this.preview.seq === v.seq) li.classList.add('selected');

    const button = el('button', 'version-main');
    button.type = 'button';
    if (this.preview && this.preview.seq === v.seq) button.setAttribute('aria-current', 'true');
    button.addEventListener('click', () => this.openPreview(v.seq));

    const top = el('span', 'version-top');
    if (v.name) top.append(el('span', 'version-name', v.name));
    const time = el('time', 'version-time');
    time.dateTime = new Date(v.end).toISOString();
    time.dataset.ms = String(v.end);
    time.textContent = relativeTime(v.end);
    time.title = v.start !== v.end
      ? `${absoluteTime(v.start)} – ${absoluteTime(v.end)}`
      : absoluteTime(v.end);
    top.append(time);
    if (v.seq === this.head) top.append(el('span', 'tag current', 'Current'));
    button.append(top);

    button.append(el('span', 'version-abs', absoluteTime(v.end)));

    if (v.restore_of !== null && v.restore_of !== undefined) {
      button.append(el('span', 'version-restore', `↺ Restored ${this.describe(v.restore_of)}`));
    }

    const authors = el('span', 'version-authors');
    const seen = new Set();
    for (const a of v.authors || []) {
      const name = a.name || 'anonymous';
      if (seen.has(name)) continue;
      seen.add(name);
      const dot = el('span', 'dot');
      const colour = this.colourOf(a);
      if (colour) dot.style.background = colour;
      else dot.classList.add('unknown');
      const who = el('span', 'author', dot, name);
      who.dataset.name = name;
      authors.append(who);
    }
    const size = el('span', 'version-size');
    size.title = `${v.inserted} characters added, ${v.deleted} removed in ${v.entries} edit${v.entries === 1 ? '' : 's'}`;
    if (v.inserted > 0 || v.deleted === 0) size.append(el('span', 'plus', `+${v.inserted}`));
    if (v.deleted > 0) size.append(el('span', 'minus', `−${v.deleted}`));
    button.append(el('span', 'version-bottom', authors, size));
    li.append(button);
    return li;
  }

  /** Keeps the relative times true while the panel stays open. */
  renderTimes() {
    for (const t of this.list.querySelectorAll('time[data-ms]')) t.textContent = relativeTime(Number(t.dataset.ms));
  }

  // ---- the preview -----------------------------------------------------------

  async openPreview(seq) {
    const token = {};
    this.pending = token;
    let data;
    try {
      data = await this.getJson(`versions/${seq}`);
    } catch (err) {
      if (this.pending === token) this.notice(`Could not open that version: ${err.message}`);
      return;
    }
    if (this.pending !== token) return; // another version was clicked meanwhile
    const fresh = this.preview === null;
    this.preview = { seq, data };
    this.renderPreview();
    this.previewEl.hidden = false;
    document.body.classList.add('previewing');
    if (fresh) this.onPreview(true);
    if (this.narrow.matches) this.panel.classList.add('stowed');
    for (const li of this.list.children) {
      const on = li.dataset.seq === String(seq);
      li.classList.toggle('selected', on);
      if (on) li.firstChild.setAttribute('aria-current', 'true');
      else li.firstChild.removeAttribute('aria-current');
    }
    this.previewEl.scrollIntoView({ block: 'nearest' });
  }

  renderPreview() {
    const { seq, data } = this.preview;
    const v = this.versions.find((x) => x.seq === seq);
    this.previewTitle.textContent = v && v.name ? v.name : `Version of ${absoluteTime(data.time)}`;
    this.previewTitle.classList.toggle('named', Boolean(v && v.name));
    const meta = [];
    if (v && v.name) meta.push(absoluteTime(v.end));
    meta.push(relativeTime(v ? v.end : data.time));
    if (seq === this.head) meta.push('current version');
    this.previewMeta.textContent = meta.join(' · ');
    this.nameInput.value = v && v.name ? v.name : '';

    const parts = [];
    for (const c of data.changes || []) {
      if (!c.text) continue;
      if (c.kind === 'inserted' || c.kind === 'deleted') {
        const node = el(c.kind === 'inserted' ? 'ins' : 'del', `chg chg-${c.kind}`, c.text);
        const who = c.author && c.author.name ? c.author.name : null;
        node.title = c.kind === 'inserted' ? `Added by ${who || 'someone'}` : who ? `Deleted by ${who}` : 'Not in this version';
        const colour = c.author ? this.colourOf(c.author) : null;
        if (colour) node.style.setProperty('--author', colour);
        if (who) node.dataset.author = who;
        parts.push(node);
      } else {
        parts.push(document.createTextNode(c.text));
      }
    }
    if (parts.length === 0) parts.push(el('span', 'preview-empty', 'This version is empty.'));
    this.previewText.replaceChildren(...parts);
  }

  closePreview() {
    if (this.preview === null) return;
    this.preview = null;
    this.pending = null;
    this.previewEl.hidden = true;
    document.body.classList.remove('previewing');
    this.panel.classList.remove('stowed');
    if (this.narrow.matches && this.open) this.setOpen(false);
    for (const li of this.list.children) {
      li.classList.remove('selected');
      li.firstChild.removeAttribute('aria-current');
    }
    this.onPreview(false);
  }

  async restore() {
    if (this.preview === null) return;
    const { seq } = this.preview;
    const label = this.describe(seq);
    this.restoreButton.disabled = true;
    try {
      const res = await this.postJson('restore', { version: seq, name: this.me().name }, 'restore');
      if (res.seq === null || res.seq === undefined) {
        this.notice(`The document already reads as ${label}.`);
      } else {
        this.notice(`Restored ${label}.`);
      }
      this.closePreview();
      await this.refreshUntil(() => res.seq === null || res.seq === undefined || this.versions.some((v) => v.seq === res.seq));
    } catch (err) {
      this.notice(`Could not restore: ${err.message}`, true);
    } finally {
      this.restoreButton.disabled = false;
    }
  }

  async nameVersion() {
    if (this.preview === null) return;
    const { seq } = this.preview;
    const name = this.nameInput.value.replace(/[\u0000-\u001f\u007f]/g, ' ').trim();
    if (new TextEncoder().encode(name).length > 128) {
      this.notice('A version name has at most 128 bytes.');
      return;
    }
    this.nameButton.disabled = true;
    try {
      await this.postJson(`versions/${seq}/name`, { name, by: this.me().name }, 'name');
      this.notice(name ? `Named this version “${name}”.` : 'Removed the name of this version.');
      await this.refreshUntil(() => this.versions.some((v) => v.seq === seq && (v.name || '') === name));
      if (this.preview && this.preview.seq === seq) this.renderPreview();
    } catch (err) {
      this.notice(`Could not name the version: ${err.message}`, true);
    } finally {
      this.nameButton.disabled = false;
    }
  }
}
