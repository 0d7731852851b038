// SPDX-License-Identifier: MIT
//
// page.test.mjs: the demo page on its own. (d) After a reload the page shows the
// document as it was (also multi-line text, emoji and CJK), and so does a
// newcomer's page. (e) Screenshots: two editors of one document side by side,
// composed into build/screenshots/two-editors.png, and the page at phone width
// (build/screenshots/phone.png), which must not scroll sideways. (f) A page
// opened without ?doc= gets a random document name in its URL and loads without
// a single console error or warning (every test here checks that).

import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ROOT,
  buildWeb,
  startServer,
  launchBrowser,
  openEditor,
  expectClean,
  waitConverged,
  waitConnected,
  texts,
  caretTo,
} from './harness.mjs';

const SHOTS = join(ROOT, 'build', 'screenshots');

let browser;
let server;
const open = [];

before(async () => {
  buildWeb();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});
beforeEach(async () => {
  server = await startServer();
});
afterEach(async () => {
  for (const e of open.splice(0)) await e.close();
  await server.stop();
});

test('a page without ?doc= picks a readable name and loads cleanly', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(e.message));
  open.push({ close: () => context.close() });
  await page.goto(`${server.url}/`);
  await waitConnected(page);
  const doc = new URL(page.url()).searchParams.get('doc');
  assert.match(doc, /^[a-z]+-[a-z]+-\d{2}$/);
  assert.equal(await page.locator('[data-testid="doc-name"]').textContent(), doc);
  assert.equal(await page.evaluate(() => window.weftDemo.doc), doc);
  // A random name and colour, kept for the next visit.
  const name = await page.locator('[data-testid="name"]').inputValue();
  assert.match(name, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
  await page.reload();
  await waitConnected(page);
  assert.equal(await page.locator('[data-testid="name"]').inputValue(), name);
  assert.equal(new URL(page.url()).searchParams.get('doc'), doc);
  assert.deepEqual(problems, []);
});

test('a reloaded page shows the document as it was', async () => {
  const doc = 'page-reload';
  const ada = await openEditor(browser, server, doc, { name: 'Ada', color: '#d62839' });
  open.push(ada);
  const a = ada.page;
  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type('First line\nSecond line 👋 世界\n\nFourth');
  await caretTo(a, 6);
  await a.keyboard.press('Delete');
  await a.keyboard.type('L');
  const want = 'First Line\nSecond line 👋 世界\n\nFourth';
  assert.equal(await waitConverged([a]), want);
  await a.locator('[data-testid="saved"]').filter({ hasText: 'All changes saved' }).waitFor();

  await a.reload();
  await waitConnected(a);
  assert.deepEqual(await texts(a), { editor: want, client: want });
  assert.equal(await a.locator('[data-testid="name"]').inputValue(), 'Ada');

  // A newcomer sees the same, and so does the REST view.
  const eve = await openEditor(browser, server, doc, { name: 'Eve', color: '#2e9e44' });
  open.push(eve);
  assert.deepEqual(await texts(eve.page), { editor: want, client: want });
  assert.equal((await server.docJson(doc)).text, want);
  expectClean(ada, eve);
});

test('screenshots: two editors side by side, and a phone', async () => {
  const doc = 'meeting-notes';
  const size = { width: 760, height: 560 };
  const ada = await openEditor(browser, server, doc, { name: 'Ada Lovelace', color: '#d62839', viewport: size });
  open.push(ada);
  const bob = await openEditor(browser, server, doc, { name: 'Bob Kahn', color: '#1e6fd9', viewport: size });
  open.push(bob);
  const a = ada.page;
  const b = bob.page;

  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type('Weekly notes\n\nAgenda: ship the browser demo.\nOwners: Ada, Bob.');
  await waitConverged([a, b]);
  await b.locator('[data-testid="editor"]').click();
  await b.keyboard.press('Control+End');
  await b.keyboard.type('\nBob: tests are green.');
  await waitConverged([a, b]);
  // Ada selects a word so Bob's page shows a selection; Bob's caret stays at the end.
  await caretTo(a, 'Weekly notes\n\nAgenda: '.length);
  for (let i = 0; i < 4; i++) await a.keyboard.press('Shift+ArrowRight');
  await a.locator('[data-testid="remote-cursor"][data-name="Bob Kahn"]').waitFor();
  await b.locator('[data-testid="remote-cursor"][data-name="Ada Lovelace"]').waitFor();
  await b.locator('.remote-selection').first().waitFor();
  await a.waitForTimeout(100); // the overlays redraw on the next frame

  mkdirSync(SHOTS, { recursive: true });
  const [shotA, shotB] = await Promise.all([a.screenshot(), b.screenshot()]);
  const composer = await browser.newPage({ viewport: { width: size.width * 2 + 36, height: size.height + 24 } });
  await composer.setContent(
    `<body style="margin:0;padding:12px;display:flex;gap:12px;background:#3a3f47">` +
      [shotA, shotB]
        .map((png) => `<img style="display:block;border-radius:4px" src="data:image/png;base64,${png.toString('base64')}">`)
        .join('') +
      `</body>`,
  );
  await composer.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
  const file = join(SHOTS, 'two-editors.png');
  writeFileSync(file, await composer.screenshot());
  await composer.close();

  // Phone width: everything fits, nothing scrolls sideways.
  await b.setViewportSize({ width: 375, height: 740 });
  await b.waitForTimeout(100);
  const overflow = await b.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than a 375px phone`);
  writeFileSync(join(SHOTS, 'phone.png'), await b.screenshot());
  expectClean(ada, bob);
});
