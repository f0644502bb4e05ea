// Every UI string exists in both languages, with the same {placeholders}.
import assert from 'node:assert/strict';
import { test } from 'node:test';

globalThis.document ??= { documentElement: {} };
const { STRINGS } = await import('../js/i18n.js');

test('Vietnamese and English have the same keys and placeholders', () => {
  const vi = Object.keys(STRINGS.vi).sort();
  const en = Object.keys(STRINGS.en).sort();
  assert.deepEqual(vi.filter((k) => !en.includes(k)), [], 'keys missing in English');
  assert.deepEqual(en.filter((k) => !vi.includes(k)), [], 'keys missing in Vietnamese');
  const vars = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',');
  for (const k of vi) assert.equal(vars(STRINGS.vi[k]), vars(STRINGS.en[k]), `placeholders of ${k}`);
});
