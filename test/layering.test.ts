import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The shape of the source tree, checked: test kits stay out of the product, and dependencies
 * point down (domain folders never reach into the manager's HTTP layer).
 */
const root = resolve(import.meta.dirname, '../..');
const src = join(root, 'src');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every module a file imports: relative ones resolved to src-relative paths, others as written. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
    const spec = (m[1] ?? m[2])!;
    out.push(spec.startsWith('.') ? relative(src, resolve(dirname(file), spec)).replace(/\.js$/, '.ts') : spec);
  }
  return out;
}

const isTestKit = (rel: string) => rel.endsWith('.test.ts') || rel.split('/').includes('testing');
const product = sources(src).map((f) => ({ file: f, rel: relative(src, f) })).filter((f) => !isTestKit(f.rel));

test('the product never imports a test, a test kit or a test library', () => {
  const bad: string[] = [];
  for (const f of product) {
    for (const i of imports(f.file)) {
      if (isTestKit(i) || i === 'node:test' || i === 'fast-check' || i.startsWith('node:test/')) bad.push(`${f.rel} imports ${i}`);
    }
  }
  assert.deepEqual(bad, [], 'test kits belong in a testing/ folder (compiled only for tests); see tsconfig.build.json');
});

test('test kits live in testing/ folders, never beside the product under another name', () => {
  const named = product.filter((f) => /(testutil|test-support|testkit|test-fixtures|fixtures|conformance|fake)/i.test(f.rel)).map((f) => f.rel);
  assert.deepEqual(named, []);
});

test('domain folders never reach into the manager\'s HTTP layer', () => {
  const bad: string[] = [];
  for (const f of product) {
    const top = f.rel.split('/')[0]!;
    if (['manager', 'cli', 'up'].includes(top)) continue;
    for (const i of imports(f.file)) if (i.startsWith('manager/routes/') || i === 'manager/http.ts' || i === 'manager/app.ts') bad.push(`${f.rel} imports ${i}`);
  }
  assert.deepEqual(bad, [], 'domain types and schemas belong in their domain folder (or util/); routes import them, not the reverse');
});

test('the shipped build leaves tests and test kits out', () => {
  const cfg = readFileSync(join(root, 'tsconfig.build.json'), 'utf8');
  assert.match(cfg, /"src\/\*\*\/\*\.test\.ts"/);
  assert.match(cfg, /"src\/\*\*\/testing\/\*\*"/);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string>; files: string[] };
  assert.match(pkg.scripts.prepare!, /tsconfig\.build\.json/);
  assert.ok(pkg.files.includes('!dist/src/**/*.test.js') && pkg.files.includes('!dist/src/**/testing/'), `package.json files: ${pkg.files.join(', ')}`);
});

test('docs/design.md\'s folder map names every folder of src/', () => {
  const map = readFileSync(join(root, 'docs/design.md'), 'utf8');
  const folders = readdirSync(src).filter((e) => statSync(join(src, e)).isDirectory());
  const missing = folders.filter((d) => !new RegExp(`^\\s+${d}/`, 'm').test(map));
  assert.deepEqual(missing, [], 'add them to the map in docs/design.md');
});

test('routes take the narrow part of the manager they use, never the whole context', () => {
  const routes = product.filter((f) => f.rel.startsWith('manager/routes/') && !f.rel.endsWith('index.ts'));
  const whole = routes.filter((f) => /ctx: ManagerContext\b/.test(readFileSync(f.file, 'utf8'))).map((f) => f.rel);
  assert.deepEqual(whole, [], 'declare ctx as Pick<ManagerContext, ...> of what the routes use');
});
