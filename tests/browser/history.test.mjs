// SPDX-License-Identifier: MIT
//
// history.test.mjs: the version history of the demo page (web-demo/src/history.js
// over weftd's /api/docs/<doc>/versions, /versions/<seq>, /restore and
// /versions/<seq>/name, docs/history.md). Ada types a text and names that
// version "first draft"; both edit more; Bob opens the history, sees "first
// draft" (authors with their colours), previews it (the old text, Ada's typing
// marked as inserted), restores it: both editors show the old text again and the
// list shows the restore. Ada's list pages with "Load more". The panel at phone
// width is a full-width sheet and nothing scrolls sideways; screenshots in
// build/screenshots/history*.png. No console errors or warnings.
//
// Run: node --test tests/browser/*.test.mjs

import { test, before, after } from 'node:test';
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
  texts,
} from './harness.mjs';

const SHOTS = join(ROOT, 'build', 'screenshots');
let browser;
let server;

before(async () => {
  buildWeb();
  mkdirSync(SHOTS, { recursive: true });
  browser = await launchBrowser();
  server = await startServer();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const ADA = { name: 'Ada', color: '#d62839' };
const BOB = { name: 'Bob', color: '#1e6fd9' };

/** The preview's text as the version reads: everything but the deleted spans. */
function previewText(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-testid="preview"] .preview-text');
    let out = '';
    const walk = (node) => {
      for (const c of node.childNodes) {
        if (c.nodeType === Node.TEXT_NODE) out += c.data;
        else if (c.nodeName !== 'DEL') walk(c);
      }
    };
    walk(root);
    return out;
  });
}

/** Waits until the page has sent all its edits (the server logged them). */
async function waitSaved(page) {
  await page.locator('[data-testid="saved"][data-unacked="0"]').waitFor();
}

const version = (page, extra = '') => page.locator(`[data-testid="history"] [data-testid="version"]${extra}`);

test('name a version, preview it and restore it; every editor follows', async () => {
  const doc = 'history-restore';
  const ada = await openEditor(browser, server, doc, ADA);
  const bob = await openEditor(browser, server, doc, BOB);
  const a = ada.page;
  const b = bob.page;
  const draft = 'The first draft: short and plain.';

  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type(draft);
  await waitConverged([a, b]);
  await waitSaved(a);

  // Ada opens the history: one version, hers, the current one. She names it.
  await a.locator('[data-testid="history-toggle"]').click();
  const panelA = a.locator('[data-testid="history"]');
  await panelA.waitFor();
  assert.equal(await a.locator('[data-testid="history-toggle"]').getAttribute('aria-expanded'), 'true');
  await version(a).first().waitFor();
  assert.equal(await version(a).count(), 1);
  const first = version(a).first();
  assert.match(await first.innerText(), /Ada/);
  assert.match(await first.innerText(), /\+33/);
  assert.equal(await first.locator('time').count(), 1);
  await first.locator('button').click();
  await a.locator('[data-testid="preview"]').waitFor();
  assert.equal(await a.locator('[data-testid="editor"]').isVisible(), false, 'the preview takes the editor’s place');
  assert.equal(await previewText(a), draft);
  await a.locator('[data-testid="version-name-input"]').fill('first draft');
  await a.locator('[data-testid="name-version"]').click();
  await version(a, '.named').filter({ hasText: 'first draft' }).waitFor();
  const namedSeq = await version(a, '.named').getAttribute('data-seq');
  await a.locator('[data-testid="back-to-editor"]').click();
  await a.locator('[data-testid="preview"]').waitFor({ state: 'hidden' });
  assert.equal(await a.locator('[data-testid="editor"]').isVisible(), true);

  // Both edit more: a new version after the named one.
  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.press('Control+End');
  await a.keyboard.type(' Ada adds more.');
  await b.locator('[data-testid="editor"]').click();
  await b.keyboard.press('Control+Home');
  await b.keyboard.type('Bob was here. ');
  const edited = await waitConverged([a, b]);
  assert.equal(edited, `Bob was here. ${draft} Ada adds more.`);
  await waitSaved(a);
  await waitSaved(b);
  // Ada's open list follows (debounced): the newest version on top, the named one below.
  await version(a).nth(1).waitFor({ timeout: 5000 });
  assert.equal(await version(a).first().locator('.version-name').count(), 0);

  // Bob opens the history and finds "first draft", authors in their colours.
  await b.locator('[data-testid="history-toggle"]').click();
  const named = version(b, '.named').filter({ hasText: 'first draft' });
  await named.waitFor();
  assert.equal(await named.getAttribute('data-seq'), namedSeq);
  const newest = version(b).first();
  assert.ok(Number(await newest.getAttribute('data-seq')) > Number(namedSeq));
  const dot = (who) => newest.locator(`.author[data-name="${who}"] .dot`).evaluate((d) => getComputedStyle(d).backgroundColor);
  assert.equal(await dot('Ada'), 'rgb(214, 40, 57)');
  assert.equal(await dot('Bob'), 'rgb(30, 111, 217)');

  // He previews it: the old text, Ada's typing marked as inserted by her.
  await named.locator('button').click();
  const preview = b.locator('[data-testid="preview"]');
  await preview.waitFor();
  assert.equal(await previewText(b), draft);
  const ins = preview.locator('.preview-text ins');
  assert.ok((await ins.count()) >= 1);
  assert.equal(await ins.first().getAttribute('title'), 'Added by Ada');
  assert.match(await preview.locator('.preview-title').innerText(), /first draft/);
  await b.screenshot({ path: join(SHOTS, 'history.png') });

  // ... and restores it: both editors show the old text; the list shows the restore.
  await b.locator('[data-testid="restore-version"]').click();
  await preview.waitFor({ state: 'hidden' });
  const restored = await waitConverged([a, b]);
  assert.equal(restored, draft);
  assert.equal((await texts(a)).editor, draft);
  assert.equal((await server.docJson(doc)).text, draft);
  const restore = version(b, '.restore').first();
  await restore.waitFor();
  assert.match(await restore.innerText(), /Restored “first draft”/);
  assert.match(await restore.innerText(), /Bob/);
  assert.equal(await version(b).first().getAttribute('data-seq'), await restore.getAttribute('data-seq'));
  // The restore's preview: what it removed struck through, attributed to Bob.
  await restore.locator('button').click();
  await preview.waitFor();
  assert.equal(await previewText(b), draft);
  const del = preview.locator('.preview-text del');
  assert.deepEqual(await del.allInnerTexts(), ['Bob was here. ', ' Ada adds more.']);
  assert.equal(await del.first().getAttribute('title'), 'Deleted by Bob');
  assert.equal(await del.first().evaluate((d) => getComputedStyle(d).textDecorationLine), 'line-through');
  await b.locator('[data-testid="back-to-editor"]').click();
  await preview.waitFor({ state: 'hidden' });

  // Ada's list, one version a page: "Load more" brings the older ones.
  await a.locator('[data-testid="history-toggle"]').click(); // close
  await panelA.waitFor({ state: 'hidden' });
  await a.evaluate(() => {
    window.weftDemo.history.pageSize = 1;
    window.weftDemo.history.versions = [];
  });
  await a.locator('[data-testid="history-toggle"]').click();
  await version(a, '.restore').waitFor();
  assert.equal(await version(a).count(), 1);
  const more = a.locator('[data-testid="history-more"]');
  await more.click();
  await version(a).nth(1).waitFor();
  await more.click();
  await version(a, '.named').waitFor();
  assert.equal(await version(a).count(), 3);
  await more.waitFor({ state: 'hidden' });

  expectClean(ada, bob);
  await ada.close();
  await bob.close();
});

test('at phone width the history is a full-width sheet and nothing scrolls sideways', async () => {
  const doc = 'history-phone';
  const eve = await openEditor(browser, server, doc, { name: 'Eve', color: '#2e9e44', viewport: { width: 375, height: 740 } });
  const p = eve.page;
  await p.locator('[data-testid="editor"]').click();
  await p.keyboard.type('Typed on a phone.');
  await waitSaved(p);
  await p.locator('[data-testid="history-toggle"]').click();
  const panel = p.locator('[data-testid="history"]');
  await version(p).first().waitFor();
  const box = await panel.boundingBox();
  assert.equal(Math.round(box.x), 0);
  assert.equal(Math.round(box.width), 375);
  await p.screenshot({ path: join(SHOTS, 'history-phone.png') });
  // A preview puts the sheet away; back to editing shows the editor again.
  await version(p).first().locator('button').click();
  await p.locator('[data-testid="preview"]').waitFor();
  await panel.waitFor({ state: 'hidden' });
  let overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `preview is ${overflow}px wider than the phone`);
  await p.screenshot({ path: join(SHOTS, 'history-phone-preview.png') });
  await p.locator('[data-testid="back-to-editor"]').click();
  await p.locator('[data-testid="editor"]').waitFor();
  overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0);
  expectClean(eve);
  await eve.close();
});
