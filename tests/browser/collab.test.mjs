// SPDX-License-Identifier: MIT
//
// collab.test.mjs: two people editing one document in the demo page, each in
// their own browser context (own storage, own WebSocket), against a weftd of
// their own. (a) They type at the same time, also at the same spot: both pages
// end with the same text, no run of either is torn apart, and weftd's
// GET /api/docs/<doc> returns that text. (b) One goes offline with the page's
// button, both keep typing, it comes back: the edits merge and both pages match.
// Every page must log no console error or warning.

import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildWeb,
  startServer,
  launchBrowser,
  openEditor,
  expectClean,
  waitConverged,
  texts,
  caretTo,
} from './harness.mjs';

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

async function twoEditors(doc) {
  const ada = await openEditor(browser, server, doc, { name: 'Ada', color: '#d62839' });
  open.push(ada);
  const bob = await openEditor(browser, server, doc, { name: 'Bob', color: '#1e6fd9' });
  open.push(bob);
  return [ada, bob];
}

test('two users type at the same time, also at the same spot, and converge', async () => {
  const doc = 'collab-typing';
  const [ada, bob] = await twoEditors(doc);
  const a = ada.page;
  const b = bob.page;

  // Both start in the empty document, caret at 0: the same spot.
  await a.locator('[data-testid="editor"]').click();
  await b.locator('[data-testid="editor"]').click();
  const fromAda = 'Ada was here. ';
  const fromBob = 'Bob too! ';
  await Promise.all([a.keyboard.type(fromAda, { delay: 15 }), b.keyboard.type(fromBob, { delay: 15 })]);
  let text = await waitConverged([a, b]);
  assert.ok(text.includes(fromAda), `Ada's run is whole in ${JSON.stringify(text)}`);
  assert.ok(text.includes(fromBob), `Bob's run is whole in ${JSON.stringify(text)}`);
  assert.equal(text.length, fromAda.length + fromBob.length);

  // Again at one spot inside the text, with new lines and a deletion each.
  const spot = text.indexOf('here');
  await Promise.all([caretTo(a, spot), caretTo(b, spot)]);
  await Promise.all([
    (async () => {
      await a.keyboard.type('[A1]\n', { delay: 10 });
      await a.keyboard.press('Backspace');
      await a.keyboard.type(' [A2] ', { delay: 10 });
    })(),
    (async () => {
      await b.keyboard.type('<b1 b2>', { delay: 10 });
      await b.keyboard.press('Backspace');
      await b.keyboard.type('> ', { delay: 10 });
    })(),
  ]);
  text = await waitConverged([a, b]);
  assert.ok(text.includes('[A1] [A2] '), `Ada's edit in ${JSON.stringify(text)}`);
  assert.ok(text.includes('<b1 b2> '), `Bob's edit in ${JSON.stringify(text)}`);

  // The server holds the same text, and neither page changed the local view.
  const json = await server.docJson(doc);
  assert.equal(json.text, text);
  assert.deepEqual(await texts(a), { editor: text, client: text });
  expectClean(ada, bob);
});

test('offline edits merge when the page goes back online', async () => {
  const doc = 'collab-offline';
  const [ada, bob] = await twoEditors(doc);
  const a = ada.page;
  const b = bob.page;

  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type('Shared start.');
  await waitConverged([a, b]);

  // Ada goes offline with the button; both keep typing.
  await a.locator('[data-testid="offline-toggle"]').click();
  await a.locator('[data-testid="status"]').filter({ hasText: /^offline$/ }).waitFor();
  await a.keyboard.press('End');
  await a.keyboard.type(' Ada, offline.');
  await caretTo(b, 0);
  await b.keyboard.type('Bob, online. ');
  // Bob's text reaches the server but not Ada; Ada's stays in her page.
  await expectText(server, doc, 'Bob, online. Shared start.');
  assert.equal((await texts(a)).editor, 'Shared start. Ada, offline.');
  assert.equal((await texts(b)).editor, 'Bob, online. Shared start.');

  // Back online: both edits everywhere.
  await a.locator('[data-testid="offline-toggle"]').click();
  await a.locator('[data-testid="status"]').filter({ hasText: /^connected$/ }).waitFor();
  const text = await waitConverged([a, b]);
  assert.equal(text, 'Bob, online. Shared start. Ada, offline.');
  assert.equal((await server.docJson(doc)).text, text);
  expectClean(ada, bob);
});

async function expectText(srv, doc, want, timeout = 5000) {
  const deadline = Date.now() + timeout;
  let got;
  for (;;) {
    got = (await srv.docJson(doc)).text;
    if (got === want) return;
    if (Date.now() > deadline) assert.fail(`server text ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the caret stays on its side when the other user types the same character right before it", async () => {
  const doc = 'collab-caret';
  const [ada, bob] = await twoEditors(doc);
  const a = ada.page;
  const b = bob.page;
  await a.locator('[data-testid="editor"]').click();
  await a.keyboard.type('xay');
  await waitConverged([a, b]);
  // Bob's caret right after the "a" (x a | y).
  await caretTo(b, 2);
  const caret = () => b.evaluate(() => window.weftDemo.quill.getSelection()?.index ?? null);
  assert.equal(await caret(), 2);
  // Ada types another "a" right before Bob's "a": xa|ay to a string diff, which
  // would leave Bob's caret before his "a"; exactly, it is x a a | y.
  await caretTo(a, 1);
  // Quill tells where a typed character went from the selection it last saw
  // (updated 1 ms after each selectionchange); a keystroke right after arrow
  // presses could be read as typed after the "a". Reading the selection brings
  // Quill up to date, as the time between a person's keystrokes does.
  assert.equal(await a.evaluate(() => window.weftDemo.quill.getSelection()?.index), 1);
  await a.keyboard.type('a');
  await waitConverged([a, b]);
  assert.equal((await texts(b)).editor, 'xaay');
  assert.equal(await caret(), 3, "Bob's caret is still right after his 'a'");
  // Again with a run of equal characters, and Ada deleting one before the caret.
  await a.keyboard.type('aa'); // xaaaay, Bob's caret after the last "a"
  await waitConverged([a, b]);
  assert.equal(await caret(), 5);
  await a.keyboard.press('Backspace'); // xaaay
  await waitConverged([a, b]);
  assert.equal(await caret(), 4);
  // Bob types where his caret is: after all the a's, before the y.
  await b.keyboard.type('Z');
  assert.equal(await waitConverged([a, b]), 'xaaaZy');
  expectClean(ada, bob);
});
