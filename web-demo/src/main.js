// SPDX-License-Identifier: MIT
//
// main.js: the demo page's entry point (bundled by scripts/build-web.sh into
// dist/app.js). It picks the document from ?doc= (or makes up a name and puts it
// in the URL), loads the wasm engine from crdt.wasm next to the page, connects a
// WeftClient (web-demo/client/) to ws(s)://<host>/ws/<doc>, and wires the page:
// the Quill editor through QuillBinding (binding.js), the other editors' cursors
// (cursors.js), the header (status, offline switch, share link, your name,
// who is here) and the version history (history.js). Your name and colour live
// in localStorage.
//
// window.weftDemo = {quill, client, doc, me, history} is exposed for the browser tests
// and for poking around in the console.

import Quill from 'quill';
import 'quill/dist/quill.snow.css';
import './style.css';

import { loadEngine } from '../client/engine.js';
import { WeftClient } from '../client/client.js';
import { QuillBinding, eventData } from './binding.js';
import { CursorOverlay } from './cursors.js';
import { HistoryPanel } from './history.js';
import { cleanDocName, randomDocName, randomIdentity, isColour } from './names.js';

const IDENTITY_KEY = 'weft.identity';
const MAX_NAME_BYTES = 64; // the protocol's limit for HELLO's name

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

/** The document named by ?doc=, or a new random one; the URL is updated to match. */
function chooseDocument() {
  const params = new URLSearchParams(location.search);
  const asked = params.get('doc');
  const doc = cleanDocName(asked) || randomDocName();
  if (asked !== doc) {
    params.set('doc', doc);
    history.replaceState(history.state, '', `${location.pathname}?${params}${location.hash}`);
  }
  return doc;
}

/** Cuts a name to the protocol's 64 UTF-8 bytes without splitting a character. */
function fitName(name) {
  let out = String(name).trim().replace(/\s+/g, ' ');
  const enc = new TextEncoder();
  while (enc.encode(out).length > MAX_NAME_BYTES) out = Array.from(out).slice(0, -1).join('');
  return out;
}

/** {name, color} from localStorage, or a new random identity (then saved). */
function loadIdentity() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(IDENTITY_KEY) || 'null');
  } catch {
    saved = null;
  }
  const fresh = randomIdentity();
  const me = {
    name: saved && typeof saved.name === 'string' && fitName(saved.name) ? fitName(saved.name) : fresh.name,
    color: saved && isColour(saved.color) ? saved.color : fresh.color,
  };
  saveIdentity(me);
  return me;
}

function saveIdentity(me) {
  try {
    localStorage.setItem(IDENTITY_KEY, JSON.stringify(me));
  } catch {
    // storage can be disabled; the identity then lasts for this page only
  }
}

function webSocketUrl(doc) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws/${encodeURIComponent(doc)}`;
}

/** Number of unacknowledged updates, whatever shape client.unacked has. */
function unackedCount(client) {
  const u = client ? client.unacked : 0;
  if (typeof u === 'number') return u;
  if (u && typeof u.length === 'number') return u.length;
  if (u && typeof u.size === 'number') return u.size;
  return 0;
}

const STATUS_TEXT = {
  synced: 'connected',
  connected: 'syncing',
  connecting: 'connecting',
  offline: 'offline',
};

// ERROR codes that need the user's attention (docs/protocol.md): server_error,
// unauthorized, document_too_large. Others pass (the client reconnects or resends).
const STICKY_ERRORS = new Set([8, 10, 13]);

class Page {
  constructor() {
    this.doc = chooseDocument();
    this.me = loadIdentity();
    this.client = null;
    this.engine = null;
    this.wantOnline = true;
    this.renamePending = false;
    this.noticeTimer = 0;
    this.enableTimer = 0;

    document.title = `${this.doc} · weft`;
    $('doc-name').textContent = this.doc;

    this.quill = new Quill('#editor', {
      theme: 'snow',
      modules: { toolbar: false },
      formats: [], // plain text for now: no bold, lists or embeds the CRDT cannot hold
      placeholder: 'Start typing. Everyone with the link edits this page with you.',
    });
    this.quill.root.dataset.testid = 'editor';
    this.quill.root.setAttribute('aria-label', `Document ${this.doc}`);
    this.quill.disable(); // until the engine is loaded

    this.cursors = new CursorOverlay(this.quill);
    this.binding = new QuillBinding(this.quill, {
      onRemote: () => this.cursors.schedule(),
      onDrift: (err) => console.warn('weft demo:', err.message),
    });
    // Local edits move text under remote cursors too.
    this.quill.on('text-change', () => this.cursors.schedule());

    this.history = new HistoryPanel({
      doc: this.doc,
      me: () => this.me,
      peers: () => (this.client ? this.client.peers : new Map()),
      neverEdited: () => this.neverEdited(),
      onPreview: (on) => {
        // The hidden editor must not keep the keyboard; back from a preview it gets it again.
        if (on) {
          this.quill.blur();
        } else {
          this.quill.focus();
          this.cursors.schedule();
        }
      },
      notice: (text, sticky) => this.notice(text, sticky),
    });

    this.wireHeader();
    this.renderPeers();
    this.trackHeaderHeight();
    window.weftDemo = this.testHook();
  }

  testHook() {
    const page = this;
    return {
      get quill() {
        return page.quill;
      },
      get client() {
        return page.client;
      },
      get doc() {
        return page.doc;
      },
      get me() {
        return { ...page.me };
      },
      get history() {
        return page.history;
      },
    };
  }

  async start() {
    try {
      this.engine = await loadEngine(new URL('crdt.wasm', document.baseURI).href);
    } catch (err) {
      this.setStatus('offline', 'engine failed');
      this.notice(`Could not load the editing engine (crdt.wasm): ${err.message}`, true);
      return;
    }
    this.connect();
    // Local edits change the number of unsent updates (the "Saving…" indicator).
    this.quill.on('text-change', (_d, _o, source) => source === 'user' && this.tick());
    window.addEventListener('beforeunload', (ev) => {
      if (unackedCount(this.client) > 0) {
        ev.preventDefault(); // "Leave site? Changes you made may not be saved."
        ev.returnValue = '';
      }
    });
    window.addEventListener('pagehide', () => this.client && this.client.close());
  }

  /** A new client for this document under the current name and colour. */
  connect() {
    const client = new WeftClient({
      url: webSocketUrl(this.doc),
      engine: this.engine,
      name: this.me.name,
      color: this.me.color,
    });
    const abort = new AbortController();
    const opts = { signal: abort.signal };
    client.addEventListener('status', (ev) => this.onStatus(eventData(ev).status), opts);
    client.addEventListener('peers', () => this.onPeers(), opts);
    client.addEventListener('error', (ev) => this.onError(eventData(ev)), opts);
    client.addEventListener('ack', () => this.tick(), opts);
    // The history changes with every edit the server logs: remote ones, and our own once acknowledged.
    client.addEventListener('change', () => this.history.changed(), opts);
    client.addEventListener('ack', () => this.history.changed(), opts);
    this.client = client;
    this.clientAbort = abort;
    this.binding.setClient(client);
    this.setStatus('connecting');
    client.connect();
    if (!this.wantOnline) client.setOnline(false);
    // Editing before the first sync is safe (the CRDT merges it), but the text
    // would jump when the document arrives; so wait for it, a few seconds at most.
    clearTimeout(this.enableTimer);
    this.enableTimer = setTimeout(() => this.quill.enable(), 4000);
  }

  onStatus(status) {
    this.setStatus(status);
    if (status === 'synced' || status === 'offline') {
      clearTimeout(this.enableTimer);
      this.quill.enable();
    }
    this.onPeers();
    this.tick();
  }

  setStatus(status, text) {
    const el = $('status');
    el.dataset.state = status;
    el.textContent = text || STATUS_TEXT[status] || String(status);
  }

  /**
   * True while this document surely has no history on the server (synced, and no
   * operation ever made): the panel then says so without asking (weftd would 404).
   */
  neverEdited() {
    const client = this.client;
    if (!client || client.status !== 'synced' || client.unacked > 0) return false;
    if (!this.emptySv) {
      const blank = this.engine.newDoc(1n);
      this.emptySv = blank.stateVector().join();
      blank.free();
    }
    return client.doc.stateVector().join() === this.emptySv;
  }

  /** The header is sticky; the history panel sits right under it. */
  trackHeaderHeight() {
    const bar = document.querySelector('.bar');
    const set = () => document.documentElement.style.setProperty('--bar-h', `${bar.offsetHeight}px`);
    set();
    if (typeof ResizeObserver === 'function') new ResizeObserver(set).observe(bar);
  }

  onPeers() {
    const peers = this.client ? this.client.peers : new Map();
    this.history.notePeers();
    this.cursors.setPeers(peers);
    this.renderPeers(peers);
  }

  onError({ code, message } = {}) {
    // Code 0 is the client's own (a socket error, a refused update); the status
    // indicator already shows a lost connection, and the client reconnects.
    if (code === 0 && /^WebSocket/.test(message || '')) return;
    const sticky = STICKY_ERRORS.has(code);
    this.notice(`${code ? `Server error ${code}` : 'Error'}: ${message || 'unknown'}`, sticky);
  }

  /** Who is here: you first, then everyone else by name. */
  renderPeers(peers = new Map()) {
    const list = $('peers');
    const items = [this.peerItem({ name: this.me.name, color: this.me.color }, true)];
    const others = [...peers.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
    for (const p of others) items.push(this.peerItem(p, false));
    list.replaceChildren(...items);
    $('my-color').style.background = this.me.color;
  }

  peerItem(peer, self) {
    const li = document.createElement('li');
    li.className = self ? 'peer self' : 'peer';
    li.dataset.name = peer.name || '';
    const dot = document.createElement('span');
    dot.className = 'dot';
    dot.style.background = peer.color || '#888888';
    const name = document.createElement('span');
    name.className = 'peer-name';
    name.textContent = peer.name || 'anonymous';
    li.append(dot, name);
    if (self) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = '(you)';
      li.append(you);
    }
    return li;
  }

  wireHeader() {
    const toggle = $('offline-toggle');
    // Like an editor's toolbar button: a click does not take the caret out of the text.
    toggle.addEventListener('mousedown', (ev) => ev.preventDefault());
    toggle.addEventListener('click', () => {
      this.wantOnline = !this.wantOnline;
      toggle.textContent = this.wantOnline ? 'Go offline' : 'Go online';
      toggle.setAttribute('aria-pressed', String(!this.wantOnline));
      toggle.classList.toggle('active', !this.wantOnline);
      if (this.client) this.client.setOnline(this.wantOnline);
    });

    const share = $('share');
    share.addEventListener('click', async () => {
      const ok = await copyText(location.href);
      share.textContent = ok ? 'Link copied' : 'Copy failed';
      if (!ok) this.notice(`Share this address: ${location.href}`);
      setTimeout(() => (share.textContent = 'Copy link'), 1600);
    });

    const input = $('name');
    input.value = this.me.name;
    const commit = () => {
      const name = fitName(input.value) || this.me.name;
      input.value = name;
      if (name === this.me.name) return;
      this.me.name = name;
      saveIdentity(this.me);
      this.renderPeers(this.client ? this.client.peers : undefined);
      // The name travels in HELLO: it reaches the others with the next connection.
      this.renamePending = true;
      this.tick();
    };
    input.addEventListener('change', commit);
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        input.blur();
        this.quill.focus();
      }
    });
  }

  /** The saved indicator, and a pending rename once nothing is unsent (on status, ack, edits). */
  tick() {
    const client = this.client;
    if (!client) return;
    const unacked = unackedCount(client);
    const status = client.status;
    const saved = $('saved');
    if (status === 'offline') saved.textContent = unacked ? 'Changes kept on this device' : '';
    else if (unacked) saved.textContent = 'Saving…';
    else if (status === 'synced') saved.textContent = 'All changes saved';
    else saved.textContent = '';
    saved.dataset.unacked = String(unacked);

    if (this.renamePending && status === 'synced' && unacked === 0) {
      this.renamePending = false;
      this.quill.disable(); // until the new connection has synced
      this.clientAbort.abort();
      client.close();
      this.connect();
    }
  }

  /** Shows a message under the header; errors stay until clicked away. */
  notice(text, sticky = false) {
    const el = $('notice');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(this.noticeTimer);
    el.onclick = () => (el.hidden = true);
    if (!sticky) this.noticeTimer = setTimeout(() => (el.hidden = true), 6000);
  }
}

/** Copies text to the clipboard; falls back to a hidden textarea on plain http. */
async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.cssText = 'position:fixed;top:-100px;opacity:0';
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

new Page().start();
