// SPDX-License-Identifier: MIT
//
// weftd.mjs: helpers for the Node tests of the JS client (tests/client/*.test.mjs)
// against a real weftd: start build/weftd (WEFTD env to use another binary) on a
// free port with a temporary data directory, kill it, start it again on the same
// port and directory, clean up; make WeftClients (engine from build/wasm/crdt.wasm or
// WEFT_WASM, WebSocket from the `ws` package); read /api/docs; wait for a condition.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WeftClient } from '../../web-demo/client/client.js';
import { loadEngine } from '../../web-demo/client/engine.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '..', '..');

/** The `ws` package's WebSocket, from web-demo/node_modules (npm ci in web-demo/). */
export const WebSocket = createRequire(path.join(ROOT, 'web-demo', 'package.json'))('ws');

/** The weftd binary under test. */
export const WEFTD = process.env.WEFTD ? path.resolve(process.env.WEFTD) : path.join(ROOT, 'build', 'weftd');

/** The wasm engine used by the clients. */
export const WASM = process.env.WEFT_WASM ? path.resolve(process.env.WEFT_WASM) : path.join(ROOT, 'build', 'wasm', 'crdt.wasm');

let enginePromise = null;

/** The engine, loaded once per test file. */
export function engine() {
  enginePromise ??= loadEngine(WASM);
  return enginePromise;
}

/**
 * A weftd child process on 127.0.0.1 with its own temporary data directory.
 * start() picks a free port the first time and keeps it for restarts.
 */
export class Weftd {
  constructor(extraArgs = []) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'weft-client-test-'));
    this.data = path.join(this.dir, 'data');
    this.webRoot = path.join(this.dir, 'www');
    this.extraArgs = extraArgs;
    this.port = 0;
    this.proc = null;
  }

  /** Starts weftd and resolves once it listens. */
  async start() {
    const args = ['--listen', `127.0.0.1:${this.port}`, '--data', this.data, '--web-root', this.webRoot, ...this.extraArgs];
    const proc = spawn(WEFTD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    let stderr = '';
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    const port = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`weftd did not start within 10 s: ${stderr}`)), 10000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      proc.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`weftd exited (${code ?? sig}) before listening: ${stderr}`));
      });
    });
    proc.stdout.resume();
    this.port = port;
    return this;
  }

  /** Base HTTP URL. */
  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** WebSocket URL of a document. */
  wsUrl(doc) {
    return `ws://127.0.0.1:${this.port}/ws/${doc}`;
  }

  /**
   * Stops the process with `signal` (SIGKILL: a crash) and waits for it to exit.
   * @param {NodeJS.Signals} [signal='SIGTERM']
   */
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    this.proc = null;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    await exited;
  }

  /** Stops weftd (SIGKILL if SIGTERM takes too long) and removes its directory. */
  async cleanup() {
    const proc = this.proc;
    if (proc !== null) {
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await this.stop('SIGTERM');
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * GET /api/docs/<doc>: {name, text, length, editors, loaded}, or null for 404.
   * @param {string} doc
   */
  async getDoc(doc) {
    const res = await fetch(`${this.http}/api/docs/${doc}`);
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET /api/docs/${doc}: HTTP ${res.status}`);
    return res.json();
  }
}

/**
 * A WeftClient on the `ws` package's WebSocket, already connect()ed unless
 * `connect: false`. Options as WeftClient's.
 */
export async function makeClient(server, doc, options = {}) {
  const { connect = true, ...rest } = options;
  const client = new WeftClient({ url: server.wsUrl(doc), engine: await engine(), WebSocket, ...rest });
  if (connect) client.connect();
  return client;
}

/**
 * Waits until `cond()` is true, polling every 10 ms.
 * @param {() => boolean} cond
 * @param {string} what for the timeout message
 * @param {number} [timeoutMs=10000]
 */
export async function waitFor(cond, what, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until every client is synced. */
export function waitSynced(clients, timeoutMs = 10000) {
  return waitFor(() => clients.every((c) => c.status === 'synced'), 'clients synced', timeoutMs);
}

/** Waits until all clients hold the same text and have nothing unacknowledged; returns the text. */
export async function waitConverged(clients, timeoutMs = 10000) {
  await waitFor(
    () => clients.every((c) => c.text === clients[0].text && c.unacked === 0 && c.status === 'synced'),
    `convergence (${clients.map((c) => `${c.status}/${c.unacked}/${JSON.stringify(c.text.slice(0, 40))}`).join(', ')})`,
    timeoutMs,
  );
  return clients[0].text;
}

/** A document name unique to this run. */
export function docName(prefix) {
  return `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
}
