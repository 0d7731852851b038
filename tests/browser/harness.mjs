// SPDX-License-Identifier: MIT
//
// harness.mjs: shared helpers of the browser tests (tests/browser/*.test.mjs,
// run with `node --test tests/browser/*.test.mjs`). Not a test file itself.
//
// - buildWeb(): scripts/build-web.sh (the demo into web-demo/dist; fast when
//   nothing changed). Each test file calls it in its `before` hook. With
//   WEFT_WEB_ROOT=<dir> set, the tests serve a demo already built in <dir>.
// - startServer(): its own build/weftd on a free port (--listen 127.0.0.1:0) with a
//   fresh temporary data directory and --web-root web-demo/dist; stop() ends it
//   with SIGTERM and removes the directory.
// - launchBrowser(): Debian's /usr/bin/chromium through web-demo's playwright-core,
//   headless, with the flags of /work/shared/notes/wasm-and-browser.md.
// - openEditor(): one simulated user: a new browser context (own storage, own
//   WebSocket) with a fixed name and colour, the demo page on a document, waiting
//   until the status says `connected`. Every console error or warning and every
//   uncaught page error is recorded; expectClean() fails the test on any.
// - Small waits on the page state (text, saved, status) with clear failure messages.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(ROOT, 'web-demo', 'package.json'));
const { chromium } = require('playwright-core');

// WEFTD=<path> tests another weftd binary (as in tests/client).
const WEFTD = process.env.WEFTD || join(ROOT, 'build', 'weftd');
// WEFT_WEB_ROOT=<dir> serves an already built demo from <dir> and skips the build.
const WEB_ROOT = process.env.WEFT_WEB_ROOT || join(ROOT, 'web-demo', 'dist');

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Builds the demo (scripts/build-web.sh); throws with its output on failure. */
export function buildWeb() {
  if (process.env.WEFT_WEB_ROOT) return;
  execFileSync('bash', [join(ROOT, 'scripts', 'build-web.sh')], { cwd: ROOT, stdio: 'pipe' });
}

/** Starts build/weftd on a free port with a temporary data directory. */
export async function startServer() {
  assert.ok(existsSync(WEFTD), `${WEFTD} is missing: cmake -S . -B build && cmake --build build`);
  const data = mkdtempSync(join(tmpdir(), 'weft-browser-'));
  const proc = spawn(WEFTD, ['--listen', '127.0.0.1:0', '--data', data, '--web-root', WEB_ROOT], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`weftd did not start: ${stderr}`)), 5000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code }) => reject(new Error(`weftd exited (${code}): ${stderr}`)));
  });
  return {
    url,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(data, { recursive: true, force: true });
    },
    /** GET /api/docs/<doc> as JSON. */
    async docJson(doc) {
      const res = await fetch(`${url}/api/docs/${doc}`);
      assert.equal(res.status, 200, `GET /api/docs/${doc}: ${res.status}`);
      return res.json();
    },
  };
}

export function launchBrowser() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
}

/**
 * Opens the demo page on `doc` as a new user. Returns {context, page, problems,
 * name, close()}; `problems` collects console errors/warnings and page errors.
 */
export async function openEditor(browser, server, doc, { name, color, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport || { width: 900, height: 640 } });
  if (name) {
    // Fixed identity for readable assertions and screenshots (kept across reloads).
    await context.addInitScript(
      ([key, value]) => {
        if (!localStorage.getItem(key)) localStorage.setItem(key, value);
      },
      ['weft.identity', JSON.stringify({ name, color: color || '#1e6fd9' })],
    );
  }
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    // A WebSocket torn down when a page closes is not a failure of the page.
    if (!req.url().startsWith('ws')) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  await page.goto(`${server.url}/?doc=${encodeURIComponent(doc)}`);
  await waitConnected(page);
  return {
    context,
    page,
    problems,
    name,
    async close() {
      await context.close();
    },
  };
}

/** Fails the test when the page logged errors or warnings. */
export function expectClean(...editors) {
  for (const e of editors) assert.deepEqual(e.problems, [], `problems in ${e.name || 'a page'}'s page`);
}

export async function waitConnected(page, timeout = 10000) {
  await page.locator('[data-testid="status"]').filter({ hasText: /^connected$/ }).waitFor({ timeout });
}

/** The editor's text (Quill's, without its final newline) and the client's. */
export function texts(page) {
  return page.evaluate(() => ({
    editor: window.weftDemo.quill.getText().slice(0, -1),
    client: window.weftDemo.client.text,
  }));
}

/** Waits until every page's editor shows the same text and has nothing unacknowledged. */
export async function waitConverged(pages, timeout = 10000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await Promise.all(
      pages.map((p) =>
        p.evaluate(() => ({
          editor: window.weftDemo.quill.getText().slice(0, -1),
          client: window.weftDemo.client.text,
          unacked: ((u) => (typeof u === 'number' ? u : (u?.length ?? u?.size ?? 0)))(
            window.weftDemo.client.unacked,
          ),
        })),
      ),
    );
    const same = last.every((s) => s.editor === last[0].editor && s.client === s.editor && s.unacked === 0);
    if (same) return last[0].editor;
    if (Date.now() > deadline) assert.fail(`pages did not converge: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Puts the caret at `index` with the keyboard (Ctrl+Home, then arrows). */
export async function caretTo(page, index) {
  await page.locator('[data-testid="editor"]').focus();
  await page.keyboard.press('Control+Home');
  for (let i = 0; i < index; i++) await page.keyboard.press('ArrowRight');
}
