// The node image store: verified blobs, imports of docker save archives (hand-made, both layouts) and
// OCI layouts (hand-made, skopeo, umoci; directory and tar), all-or-nothing on failure, safe unpacking
// (escapes, links, devices), whiteouts, import-rootfs from a busybox tree, export for docker load.
// Every test works in its own temp dir, removed afterwards.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { YunError } from '../errors/errors.js';
import { requireOrSkip } from '../drivers/testing/conformance.js';
import { sha256 } from './digest.js';
import { ImageStore } from './image-store.js';
import { isBareTag, normalizeImageName, parseImageName, repositoryFromFileName } from './names.js';
import { namesFromAnnotations } from './oci-layout.js';
import { MT, type Manifest } from './oci.js';
import { busyboxRootfs, dockerSaveArchive, makeConfig, makeLayer, ociLayoutDir, staticBusybox, tarBuffer, type FixtureLayer } from './testing/fixtures.js';

const isRoot = () => process.getuid?.() === 0;
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

function tempDir(t: TestContext): string {
  const d = mkdtempSync(join(tmpdir(), 'yun-images-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Every path under `root` (files and directories), sorted: the store's state. */
function listAll(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) walk(join(d, e.name), r);
    }
  };
  walk(root, '');
  return out.sort();
}

/** Put an image straight into the store (as a pull would), bypassing the import checks. */
async function putImage(store: ImageStore, layers: FixtureLayer[]): Promise<string> {
  for (const l of layers) await store.putBlob(l.data, { digest: l.digest, size: l.data.length });
  const config = makeConfig(layers);
  const c = await store.putBlob(config);
  const m: Manifest = {
    schemaVersion: 2, mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: c.digest, size: c.size },
    layers: layers.map((l) => ({ mediaType: l.gzip ? MT.ociLayerGzip : MT.ociLayer, digest: l.digest, size: l.data.length })),
  };
  return (await store.putBlob(Buffer.from(JSON.stringify(m)))).digest;
}

async function rejects(p: Promise<unknown>, code: string, ...parts: (string | RegExp)[]): Promise<YunError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${code} error, got success`);
  assert.ok(err instanceof YunError, `expected a YunError, got ${(err as Error).stack}`);
  assert.equal(err.code, code, err.message);
  for (const part of parts) {
    if (typeof part === 'string') assert.ok(err.message.includes(part), `"${part}" not in: ${err.message}`);
    else assert.match(err.message, part);
  }
  return err;
}

const mode = (p: string) => lstatSync(p).mode & 0o7777;
const T1 = new Date('2020-02-02T02:02:02Z');

// Two layers: files, a setuid binary, links, directories; the second (gzip) whites out and makes a
// directory opaque, and keeps what it adds itself.
const lower = () => makeLayer([
  { path: 'bin/', type: 'dir' },
  { path: 'bin/busybox', data: 'not really busybox', mode: 0o755, mtime: T1 },
  { path: 'bin/sh', type: 'symlink', linkpath: '/bin/busybox' },
  { path: 'bin/su', data: 'su', mode: 0o4755 },
  { path: 'bin/ls', type: 'link', linkpath: 'bin/busybox' },
  { path: 'etc/', type: 'dir', mode: 0o750, mtime: T1 },
  { path: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 },
  { path: 'etc/shadow', data: 'secret', mode: 0o600 },
  { path: 'var/cache/', type: 'dir' },
  { path: 'var/cache/a', data: 'a' },
  { path: 'var/cache/sub/b', data: 'b' },
  { path: 'tmp/', type: 'dir', mode: 0o1777 },
]);
const upper = () => makeLayer([
  { path: 'etc/.wh.shadow' },
  { path: 'var/cache/', type: 'dir' },
  { path: 'var/cache/new', data: 'added before the opaque marker' },
  { path: 'var/cache/.wh..wh..opq' },
  { path: 'var/cache/later', data: 'added after' },
  { path: 'bin/.wh.ls' },
  { path: 'usr/local/bin/tool', data: '#!/bin/sh\n', mode: 0o755 },
], true);

describe('image names', () => {
  it('normalizes to repo:tag the Docker way and rejects what is not a name', () => {
    assert.equal(normalizeImageName('busybox'), 'busybox:latest');
    assert.equal(normalizeImageName('docker.io/library/busybox:1.36'), 'busybox:1.36');
    assert.equal(normalizeImageName('docker.io/me/app'), 'me/app:latest');
    assert.equal(normalizeImageName('localhost:5000/a/b'), 'localhost:5000/a/b:latest');
    assert.equal(normalizeImageName('reg.example.com/team/app:v2'), 'reg.example.com/team/app:v2');
    for (const bad of ['', 'Busybox', 'a//b', 'busybox@sha256:' + '0'.repeat(64), 'x:bad tag', '../x']) {
      assert.throws(() => normalizeImageName(bad), (e: unknown) => e instanceof YunError && e.code === 'YUN_VALIDATION_FAILED', bad);
    }
    assert.equal(parseImageName('a:b:c'), undefined);
    assert.ok(isBareTag('latest') && !isBareTag('busybox:1'));
    assert.equal(repositoryFromFileName('BusyBox-OCI.tar'), 'busybox-oci');
    assert.equal(repositoryFromFileName('layout'), 'layout');
  });

  it('names OCI images from their annotations', () => {
    assert.deepEqual(namesFromAnnotations({ 'org.opencontainers.image.ref.name': 'latest' }, 'busybox'), ['busybox:latest']);
    assert.deepEqual(namesFromAnnotations({ 'org.opencontainers.image.ref.name': 'v1' }, undefined), []);
    assert.deepEqual(namesFromAnnotations({ 'org.opencontainers.image.ref.name': 'example.com/app:2' }, 'x'), ['example.com/app:2']);
    assert.deepEqual(namesFromAnnotations({ 'io.containerd.image.name': 'docker.io/library/alpine:3', 'org.opencontainers.image.ref.name': '3' }, 'x'), ['alpine:3']);
    assert.deepEqual(namesFromAnnotations(undefined, 'x'), []);
  });
});

describe('image store', () => {
  it('putBlob verifies digest and size while streaming, and is atomic', async (t) => {
    const store = new ImageStore(join(tempDir(t), 'store'));
    const data = randomBytes(300_000);
    const d = sha256(data);
    assert.deepEqual(await store.putBlob(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { digest: d, size: data.length }), { digest: d, size: data.length });
    assert.ok(store.hasBlob(d));
    assert.deepEqual(await store.readBlob(d), data);
    assert.equal(store.blobPath(d), join(store.root, 'blobs', 'sha256', d.slice(7)));
    // Again: fine, nothing changes.
    assert.deepEqual(await store.putBlob(data), { digest: d, size: data.length });

    const before = listAll(store.root);
    const other = sha256('something else');
    const e = await rejects(store.putBlob(Readable.from([data]), { digest: other }), 'YUN_DIGEST_MISMATCH', other, d);
    assert.equal(e.extra.expected, other);
    assert.equal(e.extra.actual, d);
    await rejects(store.putBlob(data, { digest: other, size: data.length }), 'YUN_DIGEST_MISMATCH', other, d);
    await rejects(store.putBlob(Readable.from([data]), { digest: d, size: 1000 }), 'YUN_DIGEST_MISMATCH', 'expected 1000 bytes');
    await rejects(store.putBlob(Readable.from([data.subarray(0, 10)]), { digest: d, size: data.length }), 'YUN_DIGEST_MISMATCH', `expected ${data.length} bytes`);
    await rejects(store.putBlob(data, { digest: 'sha256:xyz' }), 'YUN_VALIDATION_FAILED');
    assert.deepEqual(listAll(store.root), before, 'failed puts leave nothing behind');
    assert.throws(() => store.blobPath('sha256:../../etc/passwd'), YunError);
    assert.equal(store.hasBlob('md5:abc'), false);
    await rejects(store.readBlob(sha256('absent')), 'YUN_NOT_FOUND', sha256('absent'));
  });

  it('imports a hand-made docker save archive: names, OCI manifest, diff_ids, whiteouts and modes in the rootfs', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const l1 = lower();
    const l2 = upper();
    writeFileSync(join(dir, 'save.tar'), dockerSaveArchive([{ tags: ['busybox:latest', 'localhost:5000/team/box:1'], layers: [l1, l2] }]));
    const events: string[] = [];
    const [rec, ...more] = await store.importArchive(join(dir, 'save.tar'), (e) => events.push(`${e.phase} ${e.done}/${e.total}`));
    assert.equal(more.length, 0);
    assert.deepEqual(rec!.names, ['busybox:latest', 'localhost:5000/team/box:1']);
    assert.deepEqual(rec!.manifest.layers.map((l) => [l.mediaType, l.digest, l.size]), [[MT.ociLayer, l1.digest, l1.data.length], [MT.ociLayerGzip, l2.digest, l2.data.length]]);
    assert.deepEqual(rec!.config.rootfs.diff_ids, [l1.diffId, l2.diffId]);
    assert.equal(rec!.manifest.mediaType, MT.ociManifest);
    assert.equal(sha256(await store.readBlob(rec!.digest)), rec!.digest);
    assert.ok(events.includes('blob 4/4'), events.join(', '));
    const img = await store.image(rec!.digest);
    assert.deepEqual(img.manifest, rec!.manifest);
    assert.equal(img.size, rec!.size);
    assert.deepEqual(readdirSync(store.tmpDir), []);

    // The same archive again: the same manifest digest (deterministic), nothing new.
    const again = await store.importArchive(join(dir, 'save.tar'));
    assert.equal(again[0]!.digest, rec!.digest);

    const [a, b] = await Promise.all([store.rootfs(rec!.digest), store.rootfs(rec!.digest)]);
    assert.equal(a, b, 'concurrent callers share one build');
    assert.equal(a, join(store.root, 'rootfs', rec!.digest.slice(7)));
    assert.equal(readFileSync(join(a, 'bin/busybox'), 'utf8'), 'not really busybox');
    assert.equal(readlinkSync(join(a, 'bin/sh')), '/bin/busybox');
    assert.equal(mode(join(a, 'bin/su')), 0o4755, 'setuid kept');
    assert.equal(mode(join(a, 'etc')), 0o750);
    assert.equal(mode(join(a, 'tmp')), 0o1777);
    assert.equal(mode(join(a, 'etc/shadow').replace('shadow', 'passwd')), 0o644);
    assert.equal(statSync(join(a, 'bin/busybox')).mtime.getTime(), T1.getTime());
    assert.equal(statSync(join(a, 'etc')).mtime.getTime(), T1.getTime(), 'directory mtimes are applied last');
    assert.ok(!existsSync(join(a, 'etc/shadow')), '.wh.shadow removed it');
    assert.ok(!existsSync(join(a, 'bin/ls')), '.wh.ls removed the hard link');
    assert.deepEqual(readdirSync(join(a, 'var/cache')).sort(), ['later', 'new'], 'opaque: lower content gone, this layer\'s kept');
    assert.equal(readFileSync(join(a, 'usr/local/bin/tool'), 'utf8'), '#!/bin/sh\n');
    assert.ok(!readdirSync(a, { recursive: true }).some((p) => String(p).includes('.wh.')), 'no whiteout files in the rootfs');
    if (isRoot()) assert.equal(statSync(join(a, 'etc/passwd')).uid, 0);
    assert.deepEqual(readdirSync(store.tmpDir), []);
    assert.equal(await store.rootfs(rec!.digest), a, 'made once');
  });

  it('imports the Docker ≥ 25 layout (blobs/sha256 + OCI index), and a gzip-compressed archive', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const l1 = lower();
    writeFileSync(join(dir, 'new.tar.gz'), gzipSync(dockerSaveArchive([{ tags: ['app:2'], layers: [l1] }, { tags: ['other:1'], layers: [l1, upper()] }], { style: 'oci' })));
    const recs = await store.importArchive(join(dir, 'new.tar.gz'));
    assert.deepEqual(recs.map((r) => r.names), [['app:2'], ['other:1']]);
    assert.equal(recs[0]!.manifest.layers[0]!.digest, l1.digest);
    assert.ok(existsSync(join(await store.rootfs(recs[1]!.digest), 'usr/local/bin/tool')));
  });

  it('rejects a tampered layer naming it, and leaves nothing of the import behind', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    // An image already in the store shares a layer with the archive: that blob must stay.
    const shared = lower();
    const first = await store.importArchive((writeFileSync(join(dir, 'first.tar'), dockerSaveArchive([{ tags: ['first:1'], layers: [shared] }])), join(dir, 'first.tar')));
    const before = listAll(store.root);

    const good = makeLayer([{ path: 'good', data: 'fine' }], true);
    const victim = makeLayer([{ path: 'bin/app', data: 'the real program' }]);
    const evil = tarBuffer([{ path: 'bin/app', data: 'the evil program' }]);
    writeFileSync(join(dir, 'tampered.tar'), dockerSaveArchive([
      { tags: ['victim:1'], layers: [shared, good, victim] },
    ], { tamper: { layer: 2, data: evil } }));
    const e = await rejects(store.importArchive(join(dir, 'tampered.tar')), 'YUN_DIGEST_MISMATCH', 'layer 3/3', victim.diffId, sha256(evil), 'victim:1');
    assert.equal(e.extra.expected, victim.diffId);
    assert.deepEqual(listAll(store.root), before, 'no blob of the failed import remains; the shared one stays');
    assert.ok(store.hasBlob(shared.digest));
    await store.image(first[0]!.digest);

    // The same in an OCI layout: a blob whose bytes do not match its name and descriptor.
    const layout = join(dir, 'layout');
    ociLayoutDir(layout, [{ refName: 'latest', layers: [good, victim] }]);
    writeFileSync(join(layout, 'blobs', 'sha256', victim.digest.slice(7)), evil);
    await rejects(store.importArchive(layout), 'YUN_DIGEST_MISMATCH', `layer 2/2 (${victim.digest})`, sha256(evil));
    assert.deepEqual(listAll(store.root), before);
    // …and as a tar of the layout.
    execFileSync('tar', ['-cf', join(dir, 'layout.tar'), '-C', layout, '.']);
    await rejects(store.importArchive(join(dir, 'layout.tar')), 'YUN_DIGEST_MISMATCH', victim.digest, sha256(evil));
    assert.deepEqual(listAll(store.root), before);

    // A tampered manifest (its digest no longer matches index.json) and something that is no image.
    ociLayoutDir(join(dir, 'l2'), [{ refName: 'latest', layers: [good] }]);
    const idx = JSON.parse(readFileSync(join(dir, 'l2', 'index.json'), 'utf8'));
    const mp = join(dir, 'l2', 'blobs', 'sha256', idx.manifests[0].digest.slice(7));
    writeFileSync(mp, readFileSync(mp, 'utf8').replace('"schemaVersion":2', '"schemaVersion":2 '));
    await rejects(store.importArchive(join(dir, 'l2')), 'YUN_DIGEST_MISMATCH', idx.manifests[0].digest);
    writeFileSync(join(dir, 'junk.tar'), randomBytes(5000));
    await rejects(store.importArchive(join(dir, 'junk.tar')), 'YUN_IMAGE_INVALID', 'junk.tar');
    writeFileSync(join(dir, 'plain.tar'), tarBuffer([{ path: 'hello', data: 'x' }]));
    await rejects(store.importArchive(join(dir, 'plain.tar')), 'YUN_IMAGE_INVALID', 'neither a docker save archive');
    assert.deepEqual(listAll(store.root), before);
  });

  it('rejects a layer with a ../ entry naming the layer and the entry, at import and when unpacking', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const marker = `yun-evil-${randomBytes(4).toString('hex')}`;
    const bad = makeLayer([{ path: 'ok', data: 'x' }, { path: `../../../../../../../../tmp/${marker}`, data: 'pwned' }], true);
    const base = makeLayer([{ path: 'etc/', type: 'dir' }]);
    writeFileSync(join(dir, 'evil.tar'), dockerSaveArchive([{ tags: ['evil:1'], layers: [base, bad] }]));
    const before = listAll(store.root);
    const e = await rejects(store.importArchive(join(dir, 'evil.tar')), 'YUN_UNSAFE_LAYER', `layer 2/2 (${bad.digest})`, `"../../../../../../../../tmp/${marker}"`, 'escapes');
    assert.equal(e.extra.layer, bad.digest);
    assert.equal(e.extra.entry, `../../../../../../../../tmp/${marker}`);
    assert.deepEqual(listAll(store.root), before);

    // Had it come in another way (a pull), unpacking refuses it just the same, and writes nothing outside.
    const digest = await putImage(store, [base, bad]);
    await rejects(store.rootfs(digest), 'YUN_UNSAFE_LAYER', bad.digest, marker);
    assert.ok(!existsSync(`/tmp/${marker}`));
    assert.deepEqual(readdirSync(store.tmpDir), [], 'the half-built rootfs is gone');
    assert.deepEqual(readdirSync(store.rootfsDir), []);

    // Absolute paths, and `..` that stays inside (fine).
    const abs = makeLayer([{ path: '/etc/passwd', data: 'x' }]);
    await rejects(store.rootfs(await putImage(store, [abs])), 'YUN_UNSAFE_LAYER', '"/etc/passwd"', 'absolute');
    const inside = makeLayer([{ path: 'a/', type: 'dir' }, { path: 'a/../b', data: 'b' }]);
    assert.equal(readFileSync(join(await store.rootfs(await putImage(store, [inside])), 'b'), 'utf8'), 'b');
  });

  it('never writes through a symbolic link, absolute or relative, in the same or a lower layer', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    const cases: { name: string; layers: FixtureLayer[]; entry: string; via: string }[] = [
      { name: 'absolute, lower layer', layers: [makeLayer([{ path: 'etc', type: 'symlink', linkpath: outside }]), makeLayer([{ path: 'etc/passwd', data: 'x' }])], entry: 'etc/passwd', via: 'etc' },
      { name: 'relative, lower layer', layers: [makeLayer([{ path: 'a/', type: 'dir' }, { path: 'a/up', type: 'symlink', linkpath: '../../../../../../..' + outside }]), makeLayer([{ path: 'a/up/x', data: 'x' }], true)], entry: 'a/up/x', via: 'a/up' },
      { name: 'same layer', layers: [makeLayer([{ path: 'lib', type: 'symlink', linkpath: outside }, { path: 'lib/evil.so', data: 'x' }])], entry: 'lib/evil.so', via: 'lib' },
      { name: 'whiteout through a link', layers: [makeLayer([{ path: 'w', type: 'symlink', linkpath: outside }]), makeLayer([{ path: 'w/.wh.keep' }])], entry: 'w/.wh.keep', via: 'w' },
      { name: 'directory through a link', layers: [makeLayer([{ path: 'd', type: 'symlink', linkpath: outside }, { path: 'd/sub/', type: 'dir' }])], entry: 'd/sub/', via: 'd' },
    ];
    writeFileSync(join(outside, 'keep'), 'keep');
    for (const c of cases) {
      const n = c.layers.length;
      writeFileSync(join(dir, 'x.tar'), dockerSaveArchive([{ tags: ['x:1'], layers: c.layers }]));
      const last = c.layers[n - 1]!.digest;
      await rejects(store.importArchive(join(dir, 'x.tar')), 'YUN_UNSAFE_LAYER', `layer ${n}/${n} (${last})`, `"${c.entry}"`, `"${c.via}", a symbolic link`);
      await rejects(store.rootfs(await putImage(store, c.layers)), 'YUN_UNSAFE_LAYER', `layer ${n}/${n} (${last})`, `"${c.entry}"`, `"${c.via}", a symbolic link`);
    }
    assert.deepEqual(readdirSync(outside), ['keep'], 'nothing was written or removed outside');

    // Hard links: to something outside, to nothing, to a directory.
    for (const [linkpath, why] of [['../../../etc/passwd', 'escapes'], ['nope', 'does not exist'], ['d', 'a directory']] as const) {
      const l = makeLayer([{ path: 'd/', type: 'dir' }, { path: 'hl', type: 'link', linkpath }]);
      await rejects(store.rootfs(await putImage(store, [l])), 'YUN_UNSAFE_LAYER', '"hl"', why);
      writeFileSync(join(dir, 'x.tar'), dockerSaveArchive([{ tags: ['x:1'], layers: [l] }]));
      await rejects(store.importArchive(join(dir, 'x.tar')), 'YUN_UNSAFE_LAYER', '"hl"', why);
    }
    // A symlink replaced by a directory in a later layer is fine, and links may point anywhere.
    const ok = await putImage(store, [
      makeLayer([{ path: 'etc', type: 'symlink', linkpath: outside }, { path: 'sh', type: 'symlink', linkpath: '/bin/busybox' }]),
      makeLayer([{ path: 'etc/', type: 'dir' }, { path: 'etc/passwd', data: 'in the image' }]),
    ]);
    const rf = await store.rootfs(ok);
    assert.equal(readFileSync(join(rf, 'etc/passwd'), 'utf8'), 'in the image');
    assert.ok(lstatSync(join(rf, 'etc')).isDirectory());
    assert.equal(readlinkSync(join(rf, 'sh')), '/bin/busybox');
    assert.deepEqual(readdirSync(outside), ['keep']);
  });

  it('rejects device nodes when not privileged; creates them (and FIFOs) as root', async (t) => {
    const dir = tempDir(t);
    const layer = makeLayer([{ path: 'dev/', type: 'dir' }, { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }, { path: 'dev/fifo', type: 'fifo', mode: 0o600 }]);
    const unpriv = new ImageStore(join(dir, 'unpriv'), { privileged: false });
    writeFileSync(join(dir, 'dev.tar'), dockerSaveArchive([{ tags: ['dev:1'], layers: [layer] }]));
    const before = listAll(unpriv.root);
    await rejects(unpriv.importArchive(join(dir, 'dev.tar')), 'YUN_UNSAFE_LAYER', '"dev/null"', 'character device', layer.digest);
    assert.deepEqual(listAll(unpriv.root), before);
    await rejects(unpriv.rootfs(await putImage(unpriv, [layer])), 'YUN_UNSAFE_LAYER', '"dev/null"', 'character device', layer.digest);
    // FIFOs are fine without privileges.
    const fifo = await unpriv.rootfs(await putImage(unpriv, [makeLayer([{ path: 'p', type: 'fifo', mode: 0o640 }])]));
    assert.ok(lstatSync(join(fifo, 'p')).isFIFO());
    assert.equal(mode(join(fifo, 'p')), 0o640);

    if (!requireOrSkip(t, isRoot(), 'creating device nodes needs root')) return;
    const priv = new ImageStore(join(dir, 'priv'), { privileged: true });
    const [rec] = await priv.importArchive(join(dir, 'dev.tar'));
    const rf = await priv.rootfs(rec!.digest);
    const st = lstatSync(join(rf, 'dev/null'));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, (1 << 8) | 3);
    assert.equal(mode(join(rf, 'dev/null')), 0o666);
    assert.ok(lstatSync(join(rf, 'dev/fifo')).isFIFO());
  });

  it('import-rootfs of a busybox tree (directory, tar, tar.gz): one gzip layer, config, names; rootfs() has the files with modes', async (t) => {
    if (!requireOrSkip(t, staticBusybox() !== undefined, 'needs a static busybox (Debian package busybox-static)')) return;
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const tree = join(dir, 'tree');
    busyboxRootfs(tree);
    writeFileSync(join(tree, 'bin', 'setuid-thing'), 'x', { mode: 0o4711 });
    execFileSync('chmod', ['4711', join(tree, 'bin', 'setuid-thing')]);
    execFileSync('mkfifo', [join(tree, 'tmp', 'fifo')]); // special files of a directory are left out
    const rec = await store.importRootfs(tree, { name: 'busybox', cmd: ['sh', '-c', 'echo hi'], env: ['A=1'], workdir: '/root', user: '0' });
    assert.deepEqual(rec.names, ['busybox:latest']);
    assert.equal(rec.manifest.layers.length, 1);
    assert.equal(rec.manifest.layers[0]!.mediaType, MT.ociLayerGzip);
    assert.equal(rec.config.os, 'linux');
    assert.equal(rec.config.architecture, 'amd64');
    assert.deepEqual(rec.config.config, { Env: ['A=1'], Cmd: ['sh', '-c', 'echo hi'], WorkingDir: '/root', User: '0' });
    assert.deepEqual(await store.image(rec.digest), { ...rec, names: [] });

    const rf = await store.rootfs(rec.digest);
    assert.deepEqual(readFileSync(join(rf, 'bin/busybox')), readFileSync(staticBusybox()!));
    assert.equal(mode(join(rf, 'bin/busybox')), 0o755);
    assert.equal(mode(join(rf, 'bin/setuid-thing')), 0o4711);
    assert.equal(mode(join(rf, 'tmp')), 0o1777);
    assert.deepEqual(readdirSync(join(rf, 'tmp')), []);
    assert.equal(readlinkSync(join(rf, 'bin/sh')), '/bin/busybox');
    assert.equal(readlinkSync(join(rf, 'usr/bin/env')), '../../bin/busybox');
    assert.equal(statSync(join(rf, 'etc/passwd')).mtime.getTime(), Math.floor(statSync(join(tree, 'etc/passwd')).mtimeMs / 1000) * 1000);
    if (isRoot() && has('chroot')) {
      assert.equal(execFileSync('chroot', [rf, '/bin/sh', '-c', 'echo hello from $(echo busybox)'], { encoding: 'utf8' }), 'hello from busybox\n');
    }

    // From a tar and a tar.gz of the same tree: same content, same diff_id.
    execFileSync('tar', ['-cf', join(dir, 'tree.tar'), '-C', tree, '.']);
    execFileSync('sh', ['-c', `gzip -c ${join(dir, 'tree.tar')} > ${join(dir, 'tree.tgz')}`]);
    const fromTar = await store.importRootfs(join(dir, 'tree.tar'), { name: 'reg.example.com/bb:t' });
    const fromTgz = await store.importRootfs(join(dir, 'tree.tgz'), { name: 'bb:tgz' });
    assert.deepEqual(fromTar.names, ['reg.example.com/bb:t']);
    assert.equal(fromTgz.config.rootfs.diff_ids[0], fromTar.config.rootfs.diff_ids[0]);
    assert.equal(fromTgz.manifest.layers[0]!.digest, sha256(readFileSync(join(dir, 'tree.tgz'))), 'a tar.gz is taken as it is');
    assert.deepEqual(fromTar.config.config, { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] });
    const rf2 = await store.rootfs(fromTgz.digest);
    assert.equal(readlinkSync(join(rf2, 'bin/ls')), '/bin/busybox');
    assert.equal(mode(join(rf2, 'bin/setuid-thing')), 0o4711);

    const before = listAll(store.root);
    await rejects(store.importRootfs(tree, { name: 'Bad Name' }), 'YUN_VALIDATION_FAILED');
    writeFileSync(join(dir, 'not.tar'), 'definitely not a tar archive '.repeat(40));
    await rejects(store.importRootfs(join(dir, 'not.tar'), { name: 'x' }), 'YUN_IMAGE_INVALID', 'not.tar');
    writeFileSync(join(dir, 'evil.tar'), tarBuffer([{ path: 'ok', data: 'x' }, { path: '../evil', data: 'x' }]));
    await rejects(store.importRootfs(join(dir, 'evil.tar'), { name: 'x' }), 'YUN_UNSAFE_LAYER', '"../evil"', 'layer 1/1');
    assert.deepEqual(listAll(store.root), before);
  });

  it('exports a docker save archive that imports back with the same diff_ids (cached per image and name)', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const [rec] = await store.importArchive((writeFileSync(join(dir, 's.tar'), dockerSaveArchive([{ tags: ['app:1'], layers: [lower(), upper()] }])), join(dir, 's.tar')));
    const out = await store.exportDockerArchive(rec!.digest, 'app');
    assert.equal(await store.exportDockerArchive(rec!.digest, 'app:latest'), out, 'cached');
    assert.notEqual(await store.exportDockerArchive(rec!.digest, 'app:2'), out);
    const listing = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n');
    assert.ok(listing.includes('manifest.json'));
    const manifest = JSON.parse(execFileSync('tar', ['-xOf', out, 'manifest.json'], { encoding: 'utf8' }));
    assert.deepEqual(manifest[0].RepoTags, ['app:latest']);
    assert.deepEqual(manifest[0].Layers, rec!.config.rootfs.diff_ids.map((d) => `${d.slice(7)}/layer.tar`));
    // Layers are uncompressed in the archive (what docker load takes most reliably).
    const layer2 = execFileSync('tar', ['-xOf', out, manifest[0].Layers[1]]);
    assert.equal(sha256(layer2), rec!.config.rootfs.diff_ids[1]);

    const other = new ImageStore(join(dir, 'other'));
    const [back] = await other.importArchive(out);
    assert.deepEqual(back!.names, ['app:latest']);
    assert.deepEqual(back!.config.rootfs.diff_ids, rec!.config.rootfs.diff_ids);
    assert.equal(back!.manifest.config.digest, rec!.manifest.config.digest, 'the config is carried byte for byte');
    assert.deepEqual(readdirSync(await other.rootfs(back!.digest)).sort(), readdirSync(await store.rootfs(rec!.digest)).sort());
  });

  it('picks linux/amd64 from a multi-platform index, and names from annotations', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const layout = join(dir, 'multi');
    const amd = makeLayer([{ path: 'arch', data: 'amd64' }], true);
    const arm = makeLayer([{ path: 'arch', data: 'arm64' }], true);
    const { manifestDigests: [mAmd, mArm] } = ociLayoutDir(layout, [{ layers: [amd] }, { layers: [arm] }]);
    const size = (d: string) => statSync(join(layout, 'blobs/sha256', d.slice(7))).size;
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: MT.ociIndex,
      manifests: [
        { mediaType: MT.ociManifest, digest: mArm, size: size(mArm!), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: MT.ociManifest, digest: mAmd, size: size(mAmd!), platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }));
    writeFileSync(join(layout, 'blobs/sha256', sha256(index).slice(7)), index);
    writeFileSync(join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: MT.ociIndex, digest: sha256(index), size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'example.com/multi:3' } }],
    }));
    const [rec] = await store.importArchive(layout);
    assert.equal(rec!.digest, mAmd);
    assert.deepEqual(rec!.names, ['example.com/multi:3']);
    assert.equal(readFileSync(join(await store.rootfs(rec!.digest), 'arch'), 'utf8'), 'amd64');
    assert.ok(!store.hasBlob(arm.digest), 'the other platform is not imported');

    // Only arm64: a clear error listing what there is.
    const only = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MT.ociManifest, digest: mArm, size: size(mArm!), platform: { os: 'linux', architecture: 'arm64' } }] }));
    writeFileSync(join(layout, 'blobs/sha256', sha256(only).slice(7)), only);
    writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MT.ociIndex, digest: sha256(only), size: only.length }] }));
    await rejects(store.importArchive(layout), 'YUN_IMAGE_INVALID', 'no linux/amd64 image', 'linux/arm64');

    // No ref name: no names.
    const plain = join(dir, 'plain');
    ociLayoutDir(plain, [{ layers: [amd] }]);
    assert.deepEqual((await store.importArchive(plain))[0]!.names, []);
  });

  it('imports OCI layouts made by skopeo (directory and oci-archive tar)', async (t) => {
    if (!requireOrSkip(t, has('skopeo'), 'needs skopeo (Debian package skopeo)')) return;
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    writeFileSync(join(dir, 'src.tar'), dockerSaveArchive([{ tags: ['demo:1'], layers: [lower(), upper()] }]));
    const [orig] = await store.importArchive(join(dir, 'src.tar'));
    const skopeo = (...args: string[]) => execFileSync('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    skopeo('copy', `docker-archive:${join(dir, 'src.tar')}`, `oci:${join(dir, 'demo')}:v1`);
    skopeo('copy', `docker-archive:${join(dir, 'src.tar')}`, `oci-archive:${join(dir, 'demo-archive.tar')}:example.com/team/demo:2`);

    const [fromDir] = await store.importArchive(join(dir, 'demo'));
    assert.deepEqual(fromDir!.names, ['demo:v1'], 'a bare tag gets the layout directory as repository');
    assert.deepEqual(fromDir!.config.rootfs.diff_ids, orig!.config.rootfs.diff_ids);
    const [fromTar] = await store.importArchive(join(dir, 'demo-archive.tar'), undefined);
    assert.deepEqual(fromTar!.names, ['example.com/team/demo:2']);
    assert.deepEqual(fromTar!.config.rootfs.diff_ids, orig!.config.rootfs.diff_ids);
    const [renamed] = await store.importArchive(join(dir, 'demo'), undefined, { repository: 'given' });
    assert.deepEqual(renamed!.names, ['given:v1']);
    const rf = await store.rootfs(fromTar!.digest);
    assert.deepEqual(readdirSync(join(rf, 'var/cache')).sort(), ['later', 'new']);
    assert.equal(mode(join(rf, 'bin/su')), 0o4755);
    assert.deepEqual(readdirSync(store.tmpDir), []);
  });

  it('imports layouts made by umoci (directory and tar), with whiteouts from umoci repack', async (t) => {
    if (!requireOrSkip(t, has('umoci'), 'needs umoci (Debian package umoci)')) return;
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const L = join(dir, 'busybox');
    const umoci = (...args: string[]) => execFileSync('umoci', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const files = join(dir, 'files');
    mkdirSync(join(files, 'etc'), { recursive: true });
    writeFileSync(join(files, 'etc', 'motd'), 'hello\n');
    writeFileSync(join(files, 'etc', 'gone'), 'bye\n');
    umoci('init', '--layout', L);
    umoci('new', '--image', `${L}:latest`);
    umoci('insert', '--image', `${L}:latest`, join(files, 'etc'), '/etc');
    umoci('config', '--image', `${L}:latest`, '--config.cmd', 'sh');
    umoci('unpack', '--rootless', '--image', `${L}:latest`, join(dir, 'bundle'));
    rmSync(join(dir, 'bundle', 'rootfs', 'etc', 'gone'));
    writeFileSync(join(dir, 'bundle', 'rootfs', 'etc', 'new'), 'new\n');
    umoci('repack', '--image', `${L}:latest`, join(dir, 'bundle'));

    const [rec] = await store.importArchive(L);
    assert.deepEqual(rec!.names, ['busybox:latest']);
    assert.deepEqual(rec!.config.config?.Cmd, ['sh']);
    assert.equal(rec!.manifest.layers.length, 2);
    const rf = await store.rootfs(rec!.digest);
    assert.deepEqual(readdirSync(join(rf, 'etc')).sort(), ['motd', 'new'], 'the repack whiteout removed etc/gone');
    execFileSync('tar', ['-cf', join(dir, 'umoci.tar'), '-C', L, '.']);
    const [fromTar] = await store.importArchive(join(dir, 'umoci.tar'));
    assert.equal(fromTar!.digest, rec!.digest);
    assert.deepEqual(fromTar!.names, ['umoci:latest']);
  });

  it('remove() deletes the rootfs, exports and the blobs no kept image uses', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const shared = lower();
    const own = upper();
    writeFileSync(join(dir, 'a.tar'), dockerSaveArchive([{ tags: ['a:1'], layers: [shared] }, { tags: ['b:1'], layers: [shared, own] }]));
    const [a, b] = await store.importArchive(join(dir, 'a.tar'));
    const rf = await store.rootfs(b!.digest);
    const ex = await store.exportDockerArchive(b!.digest, 'b:1');
    await store.remove(b!.digest, [a!.digest, b!.digest]);
    assert.ok(existsSync(rf), 'an image listed in keep stays');
    await store.remove(b!.digest, [a!.digest]);
    assert.ok(!existsSync(rf));
    assert.ok(!existsSync(ex));
    assert.ok(!store.hasBlob(b!.digest) && !store.hasBlob(own.digest) && !store.hasBlob(b!.manifest.config.digest));
    assert.ok(store.hasBlob(shared.digest), 'a layer the kept image uses stays');
    await store.image(a!.digest);
    await store.remove(a!.digest, []);
    assert.deepEqual(readdirSync(join(store.root, 'blobs', 'sha256')), []);
    await rejects(store.image(a!.digest), 'YUN_NOT_FOUND', a!.digest);
    await rejects(store.rootfs('sha256:nothex'), 'YUN_VALIDATION_FAILED');
  });

  it('reads a layer whose last padding is missing (as umoci 0.4 writes), rejects a truncated or corrupt one naming the layer', async (t) => {
    const dir = tempDir(t);
    const store = new ImageStore(join(dir, 'store'));
    const full = tarBuffer([{ path: 'a', data: 'hello' }]);
    const layerOf = (data: Buffer): FixtureLayer => ({ data, digest: sha256(data), diffId: sha256(data), gzip: false });
    const unpadded = layerOf(full.subarray(0, 512 + 5));
    assert.equal(readFileSync(join(await store.rootfs(await putImage(store, [unpadded])), 'a'), 'utf8'), 'hello');
    writeFileSync(join(dir, 'u.tar'), dockerSaveArchive([{ tags: ['u:1'], layers: [unpadded] }]));
    assert.deepEqual((await store.importArchive(join(dir, 'u.tar')))[0]!.names, ['u:1']);

    const truncated = layerOf(full.subarray(0, 512 + 3));
    await rejects(store.rootfs(await putImage(store, [truncated])), 'YUN_IMAGE_INVALID', truncated.digest, 'Truncated');
    writeFileSync(join(dir, 't.tar'), dockerSaveArchive([{ tags: ['t:1'], layers: [truncated] }]));
    await rejects(store.importArchive(join(dir, 't.tar')), 'YUN_IMAGE_INVALID', truncated.digest, 'Truncated');
    const big = makeLayer([{ path: 'big', data: randomBytes(200_000) }], true);
    const cut = { ...big, data: big.data.subarray(0, 100_000) };
    Object.assign(cut, { digest: sha256(cut.data) });
    await rejects(store.rootfs(await putImage(store, [cut])), 'YUN_IMAGE_INVALID', cut.digest);
    assert.deepEqual(readdirSync(store.tmpDir), []);

    // A blob damaged on disk after it was stored is noticed when unpacking.
    const ok = makeLayer([{ path: 'f', data: 'content' }]);
    const d = await putImage(store, [ok]);
    rmSync(store.blobPath(ok.digest), { force: true });
    writeFileSync(store.blobPath(ok.digest), Buffer.from(ok.data).fill(0x41, 512, 515));
    await rejects(store.rootfs(d), 'YUN_DIGEST_MISMATCH', ok.digest);
  });

  it('atomically() rolls back the blobs it wrote (for pulls)', async (t) => {
    const store = new ImageStore(join(tempDir(t), 'store'));
    const kept = await store.putBlob(Buffer.from('was there before'));
    const before = listAll(store.root);
    await assert.rejects(store.atomically(async (sink) => {
      await sink.putBlob(Buffer.from('was there before'));
      await sink.putBlob(Buffer.from('new one'));
      throw new Error('network gone');
    }), /network gone/);
    assert.deepEqual(listAll(store.root), before);
    assert.ok(store.hasBlob(kept.digest));
    const d = await store.atomically(async (sink) => (await sink.putBlob(Buffer.from('committed'))).digest);
    assert.ok(store.hasBlob(d));

    // Leftovers of a crash in tmp/ go at start-up; fresh ones (someone else's work) stay.
    mkdirSync(join(store.tmpDir, 'import-old'));
    writeFileSync(join(store.tmpDir, 'import-old', 'f'), 'x');
    execFileSync('touch', ['-d', '2 hours ago', join(store.tmpDir, 'import-old')]);
    writeFileSync(join(store.tmpDir, 'upload-new'), 'x');
    assert.equal(await store.cleanTemp(), 1);
    assert.deepEqual(readdirSync(store.tmpDir), ['upload-new']);
  });
});
