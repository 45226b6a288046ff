#!/usr/bin/env node
// Writes docs/cli.md from the CLI's own --help output, so the reference never drifts from the code.
import { writeFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../dist/src/cli/program.js';

const path = fileURLToPath(new URL('../docs/cli.md', import.meta.url));
const program = buildProgram();
const out = ['# CLI reference', '', 'Generated from `yun --help` by `npm run docs:cli`; a test fails when it is out of date.', ''];
function walk(cmd, prefix) {
  const name = prefix ? `${prefix} ${cmd.name()}` : cmd.name();
  out.push(`## ${name}`, '', '```', cmd.helpInformation().trimEnd(), '```', '');
  for (const sub of cmd.commands) walk(sub, name);
}
walk(program, '');
const text = out.join('\n');
if (process.argv.includes('--check')) {
  if (readFileSync(path, 'utf8') !== text) { console.error('docs/cli.md is out of date: run npm run docs:cli'); process.exit(1); }
} else {
  writeFileSync(path, text);
  console.log('wrote docs/cli.md');
}
