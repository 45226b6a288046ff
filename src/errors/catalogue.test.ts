import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { catalogue } from './catalogue.js';
import { render } from './docs.js';
import { YunError } from './errors.js';

test('docs/errors.md is generated from the catalogue (npm run docs:errors)', () => {
  assert.equal(readFileSync('docs/errors.md', 'utf8'), render());
});

test('every code used in the source is in the catalogue', () => {
  const used = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/(?:YunError\(|local\(|code: |e.code === )'(YUN_[A-Z_]+)'/g)) used.add(m[1]!);
    }
  };
  walk('src');
  const missing = [...used].filter((c) => !(c in catalogue));
  assert.deepEqual(missing, []);
});

test('catalogue entries are complete: a 4xx/5xx status, a title, and a hint that says how to fix', () => {
  for (const [code, e] of Object.entries(catalogue)) {
    assert.match(code, /^YUN_[A-Z_]+$/);
    assert.ok(e.status >= 400 && e.status < 600, code);
    assert.ok(e.title.length > 3, code);
    assert.ok(e.hint.length > 10, code);
  }
});

test('a YunError carries its code, status and a detail with the hint, never truncated', () => {
  const long = 'x'.repeat(5000);
  const e = new YunError('YUN_QUOTA_EXCEEDED', `quota "tasks" exceeded ${long}`);
  assert.equal(e.status, 403);
  assert.ok(e.detail.includes(long));
  assert.ok(e.detail.endsWith(catalogue.YUN_QUOTA_EXCEEDED.hint));
  const body = e.toBody('req-1');
  assert.equal(body.error.code, 'YUN_QUOTA_EXCEEDED');
  assert.equal(body.error.request_id, 'req-1');
});
