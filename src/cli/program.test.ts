import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

test('docs/cli.md is generated from the CLI\'s help (npm run docs:cli)', () => {
  execFileSync(process.execPath, ['scripts/gen-cli-docs.mjs', '--check'], { stdio: 'pipe' });
  assert.ok(true);
});
