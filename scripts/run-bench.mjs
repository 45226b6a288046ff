#!/usr/bin/env node
// Runs every compiled benchmark (dist/bench/**/*.bench.js) in sequence, one process each.
// An optional argument keeps only the benchmarks whose path contains it (`npm run bench -- api`).
// A benchmark reports its figures and exits 0 even when a target is missed; this script exits
// non-zero only when a benchmark crashed (non-zero exit or a signal), or when none was found.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchRoot = join(root, 'dist', 'bench');
const filter = process.argv[2];
const files = [];
function walk(dir) {
  let entries = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e.endsWith('.bench.js') && (!filter || relative(root, p).includes(filter))) files.push(p);
  }
}
walk(benchRoot);
files.sort();
if (files.length === 0) {
  console.error(filter ? `no benchmark under dist/bench/ matches "${filter}"` : 'no benchmarks found under dist/bench/ (did the build run?)');
  process.exit(1);
}

function run(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--enable-source-maps', file], { cwd: root, stdio: 'inherit', env: process.env });
    // Pass Ctrl-C / SIGTERM on, so the benchmark can stop its own children and clean up.
    const forward = (sig) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (err) => resolve({ code: null, signal: null, err }));
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve({ code, signal });
    });
  });
}

const failed = [];
const started = Date.now();
for (const file of files) {
  const name = relative(root, file);
  const t0 = Date.now();
  process.stdout.write(`\n=== ${name} ${'='.repeat(Math.max(3, 72 - name.length))}\n`);
  const { code, signal, err } = await run(file);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (code === 0) {
    process.stdout.write(`=== ${name}: done in ${secs}s\n`);
  } else {
    const why = err ? err.message : signal ? `killed by ${signal}` : `exit code ${code}`;
    process.stdout.write(`=== ${name}: CRASHED (${why}) after ${secs}s\n`);
    failed.push(`${name} (${why})`);
  }
}
process.stdout.write(`\n${files.length} benchmark(s) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
if (failed.length) {
  process.stdout.write(`; ${failed.length} crashed:\n${failed.map((f) => `  ${f}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('; none crashed.\n');
