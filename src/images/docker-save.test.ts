// Real `docker save` archives: starts a private Docker engine (its own data root, exec root, pid file
// and socket under a temp dir; no bridge, no iptables; vfs storage so nothing is mounted), loads
// images the store exported or that were made by hand, saves them back with `docker save`, and
// imports those archives. The engine is stopped by pid (and its containerd, by pid) afterwards.
// Skips when dockerd or docker is missing or not root, unless YUN_REQUIRE_ALL=1.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireOrSkip } from '../drivers/testing/conformance.js';
import { ImageStore } from './image-store.js';
import { busyboxRootfs, dockerSaveArchive, makeLayer, staticBusybox } from './testing/fixtures.js';

const run = promisify(execFile);
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const isRoot = () => process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

async function stopPid(pid: number, ms: number): Promise<void> {
  if (!alive(pid)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    while (alive(pid)) await sleep(20);
  }
}

interface Engine {
  docker(...args: string[]): Promise<string>;
}

/** Start a private dockerd; everything it made is removed by the test's after hook. */
async function startEngine(t: TestContext): Promise<Engine> {
  const dir = mkdtempSync('/tmp/yun-dockerd-');
  const sock = join(dir, 'docker.sock');
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  const child = spawn('dockerd', [
    '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'docker.pid'),
    '-H', `unix://${sock}`, '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
    '--storage-driver=vfs', '--log-level=warn',
  ], { stdio: ['ignore', log, log] });
  const pid = child.pid!;
  let helpers: number[] = [];
  t.after(async () => {
    helpers = [...new Set([...helpers, ...childrenOf(pid)])];
    await stopPid(pid, 15_000);
    for (const h of helpers) await stopPid(h, 5_000);
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const m = line.split(' ')[1];
      if (m && m.startsWith(dir)) spawnSync('umount', ['-l', m]);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, DOCKER_CONFIG: join(dir, 'cli') };
  const docker = async (...args: string[]) => (await run('docker', ['-H', `unix://${sock}`, ...args], { env, maxBuffer: 64 << 20 })).stdout;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}): ${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-3000)}`);
    if (existsSync(sock)) {
      try {
        await docker('version', '--format', '{{.Server.Version}}');
        break;
      } catch { /* not ready */ }
    }
    if (Date.now() > deadline) throw new Error(`dockerd did not answer within 30 s: ${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-3000)}`);
    await sleep(100);
  }
  helpers = childrenOf(pid);
  return { docker };
}

describe('real docker save archives', () => {
  it('imports what `docker save` writes (after `docker load` of an export and of a hand-made archive)', { timeout: 60_000 }, async (t) => {
    if (!requireOrSkip(t, has('dockerd') && has('docker'), 'needs the Docker engine (Debian package docker.io)')) return;
    if (!requireOrSkip(t, isRoot(), 'starting dockerd needs root')) return;
    if (!requireOrSkip(t, staticBusybox() !== undefined, 'needs a static busybox (Debian package busybox-static)')) return;
    const dir = mkdtempSync('/tmp/yun-docker-save-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const engine = await startEngine(t);
    const store = new ImageStore(join(dir, 'store'));

    // 1. busybox made by import-rootfs, exported for docker load, saved by docker, imported again.
    busyboxRootfs(join(dir, 'tree'));
    const bb = await store.importRootfs(join(dir, 'tree'), { name: 'yun-test/busybox:1', cmd: ['sh'] });
    const exported = await store.exportDockerArchive(bb.digest, 'yun-test/busybox:1');
    assert.match(await engine.docker('load', '-i', exported), /Loaded image: yun-test\/busybox:1/);
    // 2. A hand-made two-layer archive with whiteouts and an opaque directory.
    const l1 = makeLayer([
      { path: 'etc/', type: 'dir' }, { path: 'etc/keep', data: 'keep' }, { path: 'etc/gone', data: 'gone' },
      { path: 'cache/', type: 'dir' }, { path: 'cache/old', data: 'old' }, { path: 'bin/', type: 'dir' }, { path: 'bin/su', data: 'su', mode: 0o4755 },
    ]);
    const l2 = makeLayer([{ path: 'etc/.wh.gone' }, { path: 'cache/', type: 'dir' }, { path: 'cache/.wh..wh..opq' }, { path: 'cache/new', data: 'new' }], true);
    writeFileSync(join(dir, 'hand.tar'), dockerSaveArchive([{ tags: ['yun-test/hand:2'], layers: [l1, l2] }]));
    assert.match(await engine.docker('load', '-i', join(dir, 'hand.tar')), /Loaded image: yun-test\/hand:2/);

    await engine.docker('save', '-o', join(dir, 'saved.tar'), 'yun-test/busybox:1', 'yun-test/hand:2');
    const fresh = new ImageStore(join(dir, 'fresh'));
    const recs = await fresh.importArchive(join(dir, 'saved.tar'));
    const byName = new Map(recs.flatMap((r) => r.names.map((n) => [n, r] as const)));
    const bb2 = byName.get('yun-test/busybox:1');
    const hand = byName.get('yun-test/hand:2');
    assert.ok(bb2 && hand, `names: ${[...byName.keys()].join(', ')}`);
    assert.deepEqual(bb2.config.rootfs.diff_ids, bb.config.rootfs.diff_ids, 'docker keeps the layer content');
    assert.deepEqual(bb2.config.config?.Cmd, ['sh']);
    assert.deepEqual(hand.config.rootfs.diff_ids, [l1.diffId, l2.diffId]);
    const rf = await fresh.rootfs(bb2.digest);
    assert.deepEqual(readFileSync(join(rf, 'bin/busybox')), readFileSync(staticBusybox()!));
    assert.equal(readlinkSync(join(rf, 'bin/sh')), '/bin/busybox');
    const hf = await fresh.rootfs(hand.digest);
    assert.deepEqual(readdirSync(join(hf, 'etc')), ['keep']);
    assert.deepEqual(readdirSync(join(hf, 'cache')), ['new']);

    // A tampered copy of the real archive: rejected, nothing left.
    const before = readdirSync(join(dir, 'fresh', 'blobs', 'sha256')).sort();
    const x = join(dir, 'x');
    spawnSync('mkdir', [x]);
    spawnSync('tar', ['-xf', join(dir, 'saved.tar'), '-C', x]);
    const manifest = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8')) as { RepoTags: string[]; Layers: string[] }[];
    const victim = manifest.find((m) => m.RepoTags.includes('yun-test/hand:2'))!.Layers[0]!;
    const victimPath = join(x, victim);
    const layerBytes = readFileSync(victimPath);
    const at = layerBytes.lastIndexOf('keep');
    writeFileSync(victimPath, Buffer.concat([layerBytes.subarray(0, at), Buffer.from('KEEP'), layerBytes.subarray(at + 4)]));
    spawnSync('tar', ['-cf', join(dir, 'tampered.tar'), '-C', x, '.']);
    const other = new ImageStore(join(dir, 'other'));
    await assert.rejects(other.importArchive(join(dir, 'tampered.tar')), (e: Error & { code?: string }) => e.code === 'YUN_DIGEST_MISMATCH' && e.message.includes(victim) && e.message.includes(l1.diffId));
    assert.deepEqual(readdirSync(join(dir, 'other', 'blobs', 'sha256')), []);
    assert.deepEqual(readdirSync(join(dir, 'fresh', 'blobs', 'sha256')).sort(), before);
  });
});
