// SPDX-License-Identifier: MIT
//
// presence.test.mjs: the other editors' cursors in the demo page. (c) Ada puts
// her caret inside the text; in Bob's page a cursor element named "Ada"
// (data-testid="remote-cursor") appears where that character index is drawn in
// Bob's editor (measured independently with a DOM Range over the editor's text),
// follows when she moves and when Bob types before it, and disappears, with her
// entry in the who-is-here list, when she closes her page. Bob's new name reaches
// Ada's list. No console errors or warnings.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
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

let browser;
let server;

before(async () => {
  buildWeb();
  browser = await launchBrowser();
  server = await startServer();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Viewport rect of the caret position before character `index` of line 0 in `page`. */
function charRect(page, index) {
  return page.evaluate((i) => {
    const walker = document.createTreeWalker(document.querySelector('[data-testid="editor"]'), NodeFilter.SHOW_TEXT);
    let left = i;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (left <= node.length) {
        const range = document.createRange();
        range.setStart(node, left);
        range.setEnd(node, left);
        const r = range.getBoundingClientRect();
        return { x: r.left, y: r.top, height: r.height };
      }
      left -= node.length;
    }
    return null;
  }, index);
}

async function expectCursorAt(page, name, index) {
  const cursor = page.locator(`[data-testid="remote-cursor"][data-name="${name}"]`);
  const want = await charRect(page, index);
  assert.ok(want, `index ${index} is in the text`);
  // The overlay redraws on the next animation frame: poll briefly.
  const deadline = Date.now() + 5000;
  let box;
  for (;;) {
    box = (await cursor.count()) === 1 ? await cursor.boundingBox() : null;
    if (box && Math.abs(box.x + box.width / 2 - want.x) <= 3 && Math.abs(box.y - want.y) <= 4) break;
    if (Date.now() > deadline) assert.fail(`cursor of ${name} at ${JSON.stringify(box)}, want near ${JSON.stringify(want)}`);
    await page.waitForTimeout(50);
  }
  assert.ok(box.height >= want.height * 0.6, `cursor is about a line high (${box.height})`);
}

test("a remote cursor is drawn at the other editor's caret and goes when it leaves", async () => {
  const doc = 'presence-cursor';
  const ada = await openEditor(browser, server, doc, { name: 'Ada', color: '#d62839' });
  const bob = await openEditor(browser, server, doc, { name: 'Bob', color: '#1e6fd9' });
  const a = ada.page;
  const b = bob.page;

  // Both see each other in the who-is-here list.
  await b.locator('[data-testid="peers"] [data-name="Ada"]').waitFor();
  await a.locator('[data-testid="peers"] [data-name="Bob"]').waitFor();

  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type('Hello world, from Ada');
  await waitConverged([a, b]);
  // Her caret after the text she just typed (the end of the document).
  await expectCursorAt(b, 'Ada', 'Hello world, from Ada'.length);

  await caretTo(a, 5);
  await expectCursorAt(b, 'Ada', 5);
  // It follows her caret.
  await a.keyboard.press('End');
  await expectCursorAt(b, 'Ada', 'Hello world, from Ada'.length);
  // A selection is drawn too (boxes behind the text, in her colour).
  await a.keyboard.press('Shift+Home');
  await b.locator('.remote-selection').first().waitFor();
  await expectCursorAt(b, 'Ada', 0);

  // Bob typing before her caret moves her cursor along in his page.
  await a.keyboard.press('End');
  await expectCursorAt(b, 'Ada', 21);
  await b.locator('[data-testid="editor"]').click();
  await caretTo(b, 0);
  await b.keyboard.type('Hi! ');
  await waitConverged([a, b]);
  await expectCursorAt(b, 'Ada', 25);
  await expectCursorAt(a, 'Bob', 4);
  assert.equal(await b.locator('[data-testid="remote-cursor"]').count(), 1, 'only Ada has a cursor in Bob’s page');

  // Bob renames himself: Ada's list follows (the name travels in a new HELLO).
  await b.locator('[data-testid="name"]').fill('Robert');
  await b.locator('[data-testid="name"]').press('Enter');
  await a.locator('[data-testid="peers"] [data-name="Robert"]').waitFor({ timeout: 5000 });
  await a.locator('[data-testid="peers"] [data-name="Bob"]').waitFor({ state: 'detached', timeout: 5000 });
  await waitConnected(b);
  assert.equal((await texts(b)).editor, 'Hi! Hello world, from Ada');

  // Ada leaves: her cursor and her entry go.
  await ada.close();
  await b.locator('[data-testid="remote-cursor"]').waitFor({ state: 'detached', timeout: 5000 });
  await b.locator('[data-testid="peers"] [data-name="Ada"]').waitFor({ state: 'detached', timeout: 5000 });
  assert.equal(await b.locator('[data-testid="peers"] li').count(), 1, 'only Bob is left');
  expectClean(ada, bob);
  await bob.close();
});
