#!/usr/bin/env node
// Writes docs/errors.md from the error catalogue (dist/src/errors/catalogue.js). `--check` only
// compares (used by the test that keeps catalogue and docs in sync).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { render } from '../dist/src/errors/docs.js';

const path = fileURLToPath(new URL('../docs/errors.md', import.meta.url));
const text = render();
if (process.argv.includes('--check')) {
  const cur = readFileSync(path, 'utf8');
  if (cur !== text) { console.error('docs/errors.md is out of date: run npm run docs:errors'); process.exit(1); }
} else {
  writeFileSync(path, text);
  console.log('wrote docs/errors.md');
}
