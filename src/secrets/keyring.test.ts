import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring } from './keyring.js';

function withDir(fn: (dir: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'yun-keyring-'));
  try { fn(dir); } finally { rmSync(dir, { recursive: true, force: true }); }
}

test('seals and opens; the file is made with mode 0600 and holds no plaintext', () => withDir((dir) => {
  const path = join(dir, 'secrets.key');
  const k = Keyring.open(path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const s = k.seal(Buffer.from('hunter2'), 'secret/a');
  assert.ok(!JSON.stringify(s).includes('hunter2'));
  assert.notDeepEqual(k.seal(Buffer.from('hunter2'), 'secret/a').iv, s.iv, 'a fresh nonce each time');
  assert.equal(Keyring.open(path).unseal(s, 'secret/a').toString(), 'hunter2');
}));

test('a seal is bound to its object and to its bytes', () => withDir((dir) => {
  const k = Keyring.open(join(dir, 'secrets.key'));
  const s = k.seal(Buffer.from('value'), 'secret/a');
  assert.throws(() => k.unseal(s, 'secret/b'), /does not open/);
  const ct = Buffer.from(s.ct, 'base64'); ct[0]! ^= 1;
  assert.throws(() => k.unseal({ ...s, ct: ct.toString('base64') }, 'secret/a'), /does not open/);
}));

test('rotate keeps old seals readable until retire drops the old keys', () => withDir((dir) => {
  const path = join(dir, 'secrets.key');
  const k = Keyring.open(path);
  const old = k.seal(Buffer.from('v'), 'x');
  const first = k.activeKid;
  const kid = k.rotate();
  assert.notEqual(kid, first);
  assert.equal(k.seal(Buffer.from('v'), 'x').kid, kid);
  assert.equal(Keyring.open(path).unseal(old, 'x').toString(), 'v');
  assert.deepEqual(k.retire(), [first]);
  assert.throws(() => Keyring.open(path).unseal(old, 'x'), /is not in/);
}));

test('a damaged key file is refused with how to fix it, never replaced', () => withDir((dir) => {
  const path = join(dir, 'secrets.key');
  writeFileSync(path, '{not json', { mode: 0o644 });
  assert.throws(() => Keyring.open(path), (e: Error & { code?: string; hint?: string }) => e.code === 'YUN_CONFIG_INVALID' && /backup/.test(String(e.hint ?? e.message)));
  assert.equal(readFileSync(path, 'utf8'), '{not json');
}));
