#!/usr/bin/env node
// Runs every compiled test (dist/**/*.test.js) with node's test runner.
// YUN_REQUIRE_ALL=1 (set by .ci/run) turns every skip for a missing privilege or package into a failure.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

const roots = ['dist/src', 'dist/test'];
const files = [];
const filter = process.argv[2];
function walk(dir) {
  let entries = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e.endsWith('.test.js') && (!filter || p.includes(filter))) files.push(p);
  }
}
roots.forEach(walk);
files.sort();
if (files.length === 0) {
  console.error('no test files found under dist/ (did the build run?)');
  process.exit(1);
}
const args = ['--test', '--test-reporter=spec', `--test-concurrency=${process.env.YUN_TEST_CONCURRENCY ?? 2}`, '--enable-source-maps', ...files];
const child = spawn(process.execPath, args, { stdio: 'inherit', env: process.env });
child.on('exit', (code, signal) => process.exit(signal ? 1 : code ?? 1));
