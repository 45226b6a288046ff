import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireOrSkip } from '../../drivers/testing/conformance.js';
import { CPIO_TRAILER, CpioWriter, cpioArchive, normalizeCpioName } from './cpio.js';

const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'yun-cpio-'));
  dirs.push(d);
  return d;
};

interface Header {
  offset: number;
  name: string;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  rdev: [number, number];
  data: Buffer;
}

/** An independent reader of newc archives, checking alignment as it goes. */
function parse(buf: Buffer): Header[] {
  const out: Header[] = [];
  let o = 0;
  for (;;) {
    assert.equal(o % 4, 0, `header at ${o} is 4-byte aligned`);
    assert.equal(buf.toString('latin1', o, o + 6), '070701', `magic at ${o}`);
    const f = (i: number) => parseInt(buf.toString('latin1', o + 6 + i * 8, o + 14 + i * 8), 16);
    const namesize = f(11);
    const name = buf.toString('utf8', o + 110, o + 110 + namesize - 1);
    assert.equal(buf[o + 110 + namesize - 1], 0, 'name is NUL-terminated');
    let d = o + 110 + namesize;
    d += (4 - (d % 4)) % 4;
    const size = f(6);
    const h: Header = { offset: o, name, mode: f(1), uid: f(2), gid: f(3), nlink: f(4), mtime: f(5), size, rdev: [f(9), f(10)], data: buf.subarray(d, d + size) };
    assert.equal(f(12), 0, 'check field is 0');
    out.push(h);
    o = d + size;
    o += (4 - (o % 4)) % 4;
    if (name === CPIO_TRAILER) break;
  }
  assert.equal(o, buf.length, 'nothing follows the trailer');
  return out;
}

describe('cpio (newc) writer', () => {
  const sample = () =>
    cpioArchive(
      [
        { type: 'dir', name: 'etc', mode: 0o755 },
        { type: 'file', name: 'etc/hostname', data: 'tinyvm\n' },
        { type: 'file', name: '/bin/tool', data: Buffer.from([0, 1, 2, 3, 4]), mode: 0o755 },
        { type: 'symlink', name: 'bin/sh', target: '/bin/tool' },
        { type: 'symlink', name: 'bin/rel', target: 'tool' },
        { type: 'file', name: './deep/er/file with spaces', data: 'x'.repeat(4097), mode: 0o600, uid: 65534, gid: 65534 },
        { type: 'file', name: 'empty', data: '' },
        { type: 'dir', name: 'tmp', mode: 0o1777 },
        { type: 'char', name: 'dev/console', major: 5, minor: 1, mode: 0o600 },
        { type: 'block', name: 'dev/vda', major: 254, minor: 0, mode: 0o660 },
      ],
      1_700_000_000,
    );

  it('writes aligned headers, parents before children, and a trailer', () => {
    const buf = sample();
    assert.equal(buf.length % 4, 0);
    const hs = parse(buf);
    const names = hs.map((h) => h.name);
    assert.deepEqual(names, [
      'etc', 'etc/hostname', 'bin', 'bin/tool', 'bin/sh', 'bin/rel', 'deep', 'deep/er', 'deep/er/file with spaces', 'empty', 'tmp', 'dev', 'dev/console', 'dev/vda', CPIO_TRAILER,
    ]);
    const by = new Map(hs.map((h) => [h.name, h]));
    assert.equal(by.get('etc')!.mode, 0o040755);
    assert.equal(by.get('etc')!.nlink, 2);
    assert.equal(by.get('bin')!.mode, 0o040755, 'implicit parent directory');
    assert.equal(by.get('etc/hostname')!.mode, 0o100644);
    assert.equal(by.get('etc/hostname')!.data.toString(), 'tinyvm\n');
    assert.equal(by.get('etc/hostname')!.mtime, 1_700_000_000);
    assert.equal(by.get('bin/tool')!.mode, 0o100755);
    assert.equal(by.get('bin/sh')!.mode, 0o120777);
    assert.equal(by.get('bin/sh')!.data.toString(), '/bin/tool');
    assert.equal(by.get('deep/er/file with spaces')!.uid, 65534);
    assert.equal(by.get('deep/er/file with spaces')!.size, 4097);
    assert.equal(by.get('tmp')!.mode, 0o041777);
    assert.equal(by.get('dev/console')!.mode, 0o020600);
    assert.deepEqual(by.get('dev/console')!.rdev, [5, 1]);
    assert.equal(by.get('dev/vda')!.mode, 0o060660);
    assert.deepEqual(by.get('dev/vda')!.rdev, [254, 0]);
    const trailer = by.get(CPIO_TRAILER)!;
    assert.equal(trailer.size, 0);
    assert.equal(trailer.mode, 0);
    // Inodes are distinct (the kernel would otherwise treat entries as hard links).
    const inos = hs.slice(0, -1).map((h) => buf.toString('latin1', h.offset + 6, h.offset + 14));
    assert.equal(new Set(inos).size, inos.length);
  });

  it('pads every name length and data length to 4 bytes', () => {
    for (let n = 1; n <= 8; n++) {
      for (let s = 0; s <= 8; s++) {
        const buf = cpioArchive([{ type: 'file', name: 'f'.repeat(n), data: Buffer.alloc(s, 7) }]);
        const hs = parse(buf);
        assert.equal(hs[0].name, 'f'.repeat(n));
        assert.equal(hs[0].data.length, s);
        assert.ok(hs[0].data.every((b) => b === 7));
      }
    }
  });

  it('rejects bad names and misuse', () => {
    assert.throws(() => normalizeCpioName(''), /empty entry name/);
    assert.throws(() => normalizeCpioName('/./'), /empty entry name/);
    assert.throws(() => normalizeCpioName('a/../b'), /contains '\.\.'/);
    assert.equal(normalizeCpioName('./a//b/'), 'a/b');
    const w = new CpioWriter();
    w.add({ type: 'file', name: 'a', data: '' });
    assert.throws(() => w.add({ type: 'dir', name: '/a' }), /duplicate entry a/);
    assert.throws(() => w.add({ type: 'file', name: CPIO_TRAILER, data: '' }), /reserved/);
    assert.throws(() => w.add({ type: 'symlink', name: 'l', target: '' }), /empty target/);
    assert.throws(() => w.add({ type: 'file', name: 'u', data: '', uid: -1 }), /does not fit/);
    w.finish();
    assert.throws(() => w.finish(), /already finished/);
    assert.throws(() => w.add({ type: 'dir', name: 'x' }), /already finished/);
  });

  it('round-trips through busybox cpio -t and -i', (t) => {
    if (!requireOrSkip(t, !!busybox, 'busybox is not installed (Debian package busybox-static)')) return;
    const dir = tmp();
    const archive = join(dir, 'a.cpio');
    writeFileSync(archive, sample());
    const listed = execFileSync(busybox!, ['cpio', '-t', '-F', archive], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n').filter(Boolean);
    assert.deepEqual(listed.sort(), [
      'bin', 'bin/rel', 'bin/sh', 'bin/tool', 'deep', 'deep/er', 'deep/er/file with spaces', 'dev', 'dev/console', 'dev/vda', 'empty', 'etc', 'etc/hostname', 'tmp',
    ]);
    // Device nodes need root to extract; without root extract an archive without them.
    const out = join(dir, 'x');
    execFileSync('mkdir', [out]);
    const src = isRoot
      ? archive
      : (writeFileSync(join(dir, 'b.cpio'), cpioArchive([{ type: 'file', name: 'etc/hostname', data: 'tinyvm\n' }, { type: 'symlink', name: 'bin/sh', target: '/bin/tool' }])), join(dir, 'b.cpio'));
    execFileSync(busybox!, ['cpio', '-i', '-d', '-m', '-F', src], { cwd: out, stdio: ['ignore', 'ignore', 'pipe'] });
    assert.equal(readFileSync(join(out, 'etc/hostname'), 'utf8'), 'tinyvm\n');
    assert.equal(readlinkSync(join(out, 'bin/sh')), '/bin/tool');
    if (!isRoot) return;
    assert.equal(readlinkSync(join(out, 'bin/rel')), 'tool');
    assert.deepEqual(readFileSync(join(out, 'bin/tool')), Buffer.from([0, 1, 2, 3, 4]));
    assert.equal(lstatSync(join(out, 'bin/tool')).mode & 0o7777, 0o755);
    assert.equal(lstatSync(join(out, 'deep/er/file with spaces')).mode & 0o7777, 0o600);
    assert.equal(lstatSync(join(out, 'deep/er/file with spaces')).uid, 65534);
    assert.equal(readFileSync(join(out, 'deep/er/file with spaces'), 'utf8'), 'x'.repeat(4097));
    assert.equal(lstatSync(join(out, 'etc/hostname')).mtimeMs, 1_700_000_000_000);
    assert.equal(readFileSync(join(out, 'empty')).length, 0);
    const con = lstatSync(join(out, 'dev/console'));
    assert.ok(con.isCharacterDevice());
    assert.equal(con.rdev, (5 << 8) | 1);
    assert.ok(lstatSync(join(out, 'dev/vda')).isBlockDevice());
  });
});
