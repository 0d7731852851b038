// SPDX-License-Identifier: MIT
//
// lib.mjs: helpers shared by the Node tests of the wasm engine (tests/wasm/*.test.mjs):
// where crdt.wasm is (WEFT_WASM, else build/wasm/crdt.wasm), loading it once
// through web-demo/client/engine.js, and the tests' splitmix64 PRNG, the same
// generator as tests/support/test_rng.h, so seeds mean the same thing here and in C.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadEngine } from '../../web-demo/client/engine.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Repository root. */
export const ROOT = path.resolve(here, '..', '..');

/** The wasm module under test: $WEFT_WASM or build/wasm/crdt.wasm. */
export const WASM_PATH = process.env.WEFT_WASM
  ? path.resolve(process.env.WEFT_WASM)
  : path.join(ROOT, 'build', 'wasm', 'crdt.wasm');

/** The editing traces: $WEFT_TRACES_DIR or ../shared/traces next to the repository. */
export const TRACES_DIR = process.env.WEFT_TRACES_DIR
  ? path.resolve(process.env.WEFT_TRACES_DIR)
  : path.resolve(ROOT, '..', 'shared', 'traces');

let enginePromise = null;

/**
 * The engine under test, loaded once per test file.
 * @returns {Promise<import('../../web-demo/client/engine.js').Engine>}
 */
export function testEngine() {
  if (!existsSync(WASM_PATH)) {
    throw new Error(`${WASM_PATH} missing: build it with scripts/build-wasm.sh or cmake --build build`);
  }
  enginePromise ??= loadEngine(WASM_PATH);
  return enginePromise;
}

const MASK64 = (1n << 64n) - 1n;

/** splitmix64, as tests/support/test_rng.h (and tests/crdt/testutil.h). */
export class Rng {
  /** @param {bigint|number} seed */
  constructor(seed) {
    this.seed = BigInt(seed) & MASK64;
    this.s = this.seed;
  }

  /** @returns {bigint} the next 64-bit value */
  next() {
    this.s = (this.s + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** @returns {number} uniform enough in [0, n); 0 when n is 0 */
  below(n) {
    return n > 0 ? Number(this.next() % BigInt(n)) : 0;
  }

  /** @returns {boolean} true with probability pct % */
  pct(pct) {
    return this.below(100) < pct;
  }
}

/**
 * Whether two byte arrays hold the same bytes.
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Where two strings first differ, with some context, for failure messages.
 * @param {string} a
 * @param {string} b
 */
export function whereDiffer(a, b) {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const from = Math.max(0, i - 20);
  return `lengths ${a.length} and ${b.length}, first difference at ${i}: ` +
    `${JSON.stringify(a.slice(from, i + 40))} vs ${JSON.stringify(b.slice(from, i + 40))}`;
}
