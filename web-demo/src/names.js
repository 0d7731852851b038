// SPDX-License-Identifier: MIT
//
// names.js: the demo page's small vocabulary. Random readable document names
// ("quiet-river-42") for a page opened without ?doc=, random person names
// ("Blue Heron") and colours for a first visit, and the check that a document
// name is one weftd accepts (1 to 128 bytes of A-Z a-z 0-9 . _ ~ -, see
// docs/server.md). Randomness comes from crypto.getRandomValues.

const ADJECTIVES = [
  'amber', 'bold', 'brisk', 'calm', 'clever', 'cosy', 'crisp', 'eager', 'gentle', 'golden',
  'happy', 'honest', 'keen', 'lively', 'lucky', 'merry', 'misty', 'noble', 'quiet', 'rapid',
  'silver', 'sunny', 'swift', 'tidy', 'velvet', 'warm', 'wild', 'witty',
];
const NOUNS = [
  'anchor', 'breeze', 'brook', 'canyon', 'cedar', 'comet', 'delta', 'ember', 'falcon', 'fern',
  'forest', 'harbor', 'island', 'lagoon', 'meadow', 'orchard', 'pebble', 'prairie', 'river',
  'summit', 'thicket', 'tundra', 'valley', 'willow',
];
const COLOURS = [
  ['Blue', '#1e6fd9'], ['Crimson', '#d62839'], ['Green', '#2e9e44'], ['Amber', '#d98a00'],
  ['Violet', '#8a3ffc'], ['Teal', '#00897b'], ['Coral', '#e8590c'], ['Indigo', '#3f51b5'],
  ['Magenta', '#c2185b'], ['Olive', '#6b8e23'],
];
const ANIMALS = [
  'Heron', 'Otter', 'Fox', 'Lynx', 'Badger', 'Falcon', 'Marten', 'Puffin', 'Beaver', 'Hare',
  'Owl', 'Wren', 'Seal', 'Ibex', 'Crane', 'Kestrel', 'Panda', 'Koala', 'Moose', 'Robin',
];

/** A uniformly random integer in [0, n). */
export function randomInt(n) {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return buf[0] % n;
}

function pick(list) {
  return list[randomInt(list.length)];
}

/** A random document name such as "quiet-river-42". */
export function randomDocName() {
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${10 + randomInt(90)}`;
}

/** A random identity: {name: "Blue Heron", color: "#1e6fd9"}; the colour matches the name. */
export function randomIdentity() {
  const [word, color] = pick(COLOURS);
  return { name: `${word} ${pick(ANIMALS)}`, color };
}

const DOC_NAME = /^[A-Za-z0-9._~-]{1,128}$/;

/** True when weftd accepts `name` as a document name. */
export function isValidDocName(name) {
  return typeof name === 'string' && DOC_NAME.test(name);
}

/**
 * Turns what a user typed into ?doc= into a name weftd accepts: spaces and other
 * characters become '-', the result is cut to 128 characters. Returns '' when
 * nothing usable is left.
 */
export function cleanDocName(name) {
  return String(name ?? '')
    .trim()
    .replace(/[^A-Za-z0-9._~-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 128);
}

/** True for a "#rrggbb" colour. */
export function isColour(value) {
  return typeof value === 'string' && /^#[0-9a-fA-F]{6}$/.test(value);
}
