// The docker driver: the shared conformance suite against a Docker engine this test starts itself
// (its own dockerd, data root and socket in a temp dir; never the node's engine), then what only this
// driver does: labelled containers, image identity by digest, logs resumed after an agent restart,
// OOM, read-only mounts, the unavailable fingerprint, and the archive rewriting without an engine.
// dockerd is stopped by pid and its dirs removed in `after`, also when a test fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import * as tar from 'tar';
import type { DriverFingerprint, TaskConfig, TaskHandle } from '../driver.js';
import { readLog, requireOrSkip, runConformance, until, within } from '../testing/conformance.js';
import { RetagDockerArchive } from './docker-archive.js';
import { DockerDriver, IMAGE_REPOSITORY, type DockerHandle } from './docker-driver.js';
import { buildBusyboxArchive, DOCKERD, startTestDockerd, type TestEngine, type TestImage } from './testing/support.js';

const isRoot = () => process.getuid?.() === 0;
const haveDockerd = existsSync(DOCKERD);
const canRun = haveDockerd && isRoot();
const whyNot = !haveDockerd ? `${DOCKERD} is not installed (Debian package docker.io)` : 'starting dockerd needs root';

// A short path: the engine's sockets live under it (unix socket paths are limited to 108 bytes).
const root = mkdtempSync(join(tmpdir(), 'yun-dk-'));
const engineRoot = join(root, 'e');
let engine: TestEngine | undefined;
let image: TestImage | undefined;
let starting: Promise<void> | undefined;

/** Start the engine and build the image once, for every suite in this file. */
function ready(): Promise<void> {
  starting ??= (async () => {
    engine = await startTestDockerd(engineRoot);
    image = await buildBusyboxArchive(join(root, 'img'));
  })();
  return starting;
}

// Whatever happens, never leave the test's dockerd running.
process.once('exit', () => {
  if (engine) {
    try {
      process.kill(engine.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/**
 * Docker makes a task's cgroup parent in every hierarchy (blkio, freezer, devices, … too), which the
 * conformance suite does not look at: remove this file's parents, when empty, once every suite is done.
 */
function removeCgroupParents(): void {
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c));
  } catch {
    return;
  }
  for (const base of ['/sys/fs/cgroup', ...hierarchies]) {
    for (const top of ['yunstack-conformance', 'yunstack-test']) {
      let kids: string[] = [];
      try {
        kids = readdirSync(join(base, top)).filter((k) => k.startsWith('docker-'));
      } catch {
        continue;
      }
      for (const dir of [...kids.map((k) => join(base, top, k)), join(base, top)]) {
        try {
          rmdirSync(dir);
        } catch {
          /* in use (another suite), or not empty */
        }
      }
    }
  }
}

after(async () => {
  await starting?.catch(() => undefined);
  if (engine) await engine.stop();
  removeCgroupParents();
  rmSync(root, { recursive: true, force: true });
});

if (canRun) {
  // Filled in once the image is built (the suite reads baseConfig when it makes each config).
  const baseConfig: Partial<TaskConfig> = {};
  runConformance(
    async () => {
      await ready();
      baseConfig.image_info = image!.info;
      return new DockerDriver({ socketPath: engine!.socketPath });
    },
    {
      name: 'docker',
      image: 'busybox:latest',
      requireRoot: true,
      baseConfig,
      // Docker makes the container's cgroups under the task's cgroup parent, named by container id.
      cgroupDirs: (h: TaskHandle, cfg: TaskConfig, fp: DriverFingerprint) => {
        const parts = cfg.cgroup_parent.split('/').filter(Boolean);
        const id = (h as DockerHandle).container_id;
        if (fp.attributes?.cgroups === 'v2') return [join('/sys/fs/cgroup', ...parts, id)];
        return ['memory', 'cpu', 'pids'].map((c) => join('/sys/fs/cgroup', c, ...parts, id));
      },
    },
  );
} else {
  it('docker driver conformance', (t) => {
    requireOrSkip(t, false, whyNot);
  });
}

describe('docker driver', () => {
  const suffix = randomBytes(4).toString('hex');
  let n = 0;
  let driver: DockerDriver;
  let docker: Docker;
  const started: Array<{ d: DockerDriver; h: TaskHandle }> = [];

  before(async () => {
    if (!canRun) return;
    await ready();
    driver = new DockerDriver({ socketPath: engine!.socketPath });
    docker = new Docker({ socketPath: engine!.socketPath });
  });

  after(async () => {
    for (const s of started) {
      await s.d.stop(s.h, 0).catch(() => undefined);
      await s.d.destroy(s.h).catch(() => undefined);
    }
  });

  function config(over: Partial<TaskConfig> = {}): TaskConfig {
    const id = `dk-${suffix}-${++n}`;
    const dir = join(root, 'tasks', id);
    mkdirSync(dir, { recursive: true });
    return {
      id,
      name: `web.${n}`,
      dir,
      command: ['true'],
      shell: false,
      env: {},
      mounts: [],
      read_only: false,
      limits: { cpu: 0, memory_bytes: 0, pids: 0 },
      ports: [],
      cgroup_parent: `yunstack-test/docker-${suffix}`,
      labels: {},
      image: 'busybox:latest',
      image_info: image!.info,
      ...over,
    };
  }

  async function run(cfg: TaskConfig, d: DockerDriver = driver): Promise<TaskHandle> {
    const h = await d.start(cfg);
    started.push({ d, h });
    return h;
  }

  it('fingerprint: unavailable, with the full reason, when no engine answers', async () => {
    // Works without an engine: nothing at the path, then a socket that accepts and never answers.
    const missing = join(root, 'no-engine.sock');
    const fp = await new DockerDriver({ socketPath: missing }).fingerprint();
    assert.equal(fp.available, false);
    assert.equal(fp.reason, `no Docker engine answers on ${missing} (connect ENOENT ${missing}): start dockerd, or use the oci driver`);

    const mute = join(root, 'mute.sock');
    const conns: Socket[] = [];
    const server: Server = createServer((c) => conns.push(c));
    await new Promise<void>((r) => server.listen(mute, r));
    try {
      const t0 = Date.now();
      const fp2 = await new DockerDriver({ socketPath: mute, pingTimeoutMs: 300 }).fingerprint();
      assert.ok(Date.now() - t0 < 3000, 'the ping gives up after its timeout');
      assert.equal(fp2.available, false);
      assert.match(fp2.reason ?? '', new RegExp(`^no Docker engine answers on ${mute} \\(.+\\): start dockerd, or use the oci driver$`));
    } finally {
      for (const c of conns) c.destroy();
      server.close();
    }
  });

  it('fingerprint: the engine version and API version', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const fp = await driver.fingerprint();
    assert.equal(fp.available, true, JSON.stringify(fp));
    assert.match(fp.attributes?.server_version ?? '', /^\d+\.\d+/);
    assert.match(fp.attributes?.api_version ?? '', /^1\.\d+$/);
    assert.equal(fp.attributes?.storage_driver, engine!.storageDriver);
    assert.match(fp.attributes?.cgroups ?? '', /^v[12]$/);
  });

  it('a task is a labelled container yun-<task id> with the task settings', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const cfg = config({
      command: ['sleep', '60'],
      hostname: 'web-1.example',
      labels: { 'yunstack.task.id': 'overridden-below', 'yunstack.service.id': 'svc-123', 'yunstack.service.name': 'web' },
      limits: { cpu: 0.5, memory_bytes: 64 * 1024 * 1024, pids: 50 },
      env: { GREETING: 'hi there' },
      workdir: '/tmp',
      user: 'nobody',
      read_only: true,
      mounts: [{ type: 'tmpfs', target: '/scratch', tmpfs_size_bytes: 1024 * 1024 }],
    });
    const h = (await run(cfg)) as DockerHandle;
    assert.equal(h.driver, 'docker');
    assert.equal(h.container_name, `yun-${cfg.id}`);
    const list = await docker.listContainers({ all: true, filters: { label: [`yunstack.task.id=${cfg.id}`] } });
    assert.equal(list.length, 1);
    assert.equal(list[0]!.Id, h.container_id);
    const info = await docker.getContainer(h.container_id).inspect();
    assert.equal(info.Name, `/yun-${cfg.id}`);
    assert.equal(info.Config.Labels['yunstack.task.id'], cfg.id);
    assert.equal(info.Config.Labels['yunstack.service.id'], 'svc-123');
    assert.equal(info.Config.Labels['yunstack.service.name'], 'web');
    assert.equal(info.Config.Hostname, 'web-1.example');
    assert.equal(info.Config.User, 'nobody');
    assert.equal(info.Config.WorkingDir, '/tmp');
    assert.ok(info.Config.Env.includes('GREETING=hi there'));
    assert.ok(info.Config.Env.some((e) => e.startsWith('PATH=')), 'the image env is applied');
    assert.equal(info.Image, image!.configDigest, 'runs the image by its id (the config digest)');
    const hc = info.HostConfig;
    assert.equal(hc.Memory, 64 * 1024 * 1024);
    assert.equal(hc.MemorySwap, 64 * 1024 * 1024);
    assert.equal(hc.NanoCpus, 500_000_000);
    assert.equal(hc.PidsLimit, 50);
    assert.equal(hc.NetworkMode, 'none');
    assert.equal(hc.RestartPolicy?.Name, 'no');
    assert.equal(hc.LogConfig?.Type, 'json-file');
    assert.equal(hc.ReadonlyRootfs, true);
    assert.equal((hc as { Init?: boolean }).Init, true);
    // Inside: hostname, user, read-only root, the tmpfs, only loopback.
    const r = await driver.exec(h, ['sh', '-c', 'hostname; id -u; touch /x 2>/dev/null && echo rw || echo ro; touch /scratch/f && echo tmpfs-ok; ls /sys/class/net'], { timeoutMs: 5000 });
    assert.equal(r.exit_code, 0, r.stderr);
    assert.equal(r.stdout, 'web-1.example\n65534\nro\ntmpfs-ok\nlo\n');
    // ps sees only the task: Docker's init (pid 1) and the command.
    const ps = await driver.exec(h, ['ps', '-o', 'pid,args'], { timeoutMs: 5000 });
    const procs = ps.stdout.trim().split('\n').slice(1).map((l) => l.trim());
    assert.ok(procs.some((l) => /^1 .*docker-init/.test(l)), ps.stdout);
    assert.ok(procs.some((l) => /sleep 60/.test(l)), ps.stdout);
    assert.equal(procs.length, 3, `init, sleep and ps itself: ${ps.stdout}`);
    await driver.stop(h, 2000);
    await driver.destroy(h);
    assert.equal((await docker.listContainers({ all: true, filters: { label: [`yunstack.task.id=${cfg.id}`] } })).length, 0, 'destroy removes the container');
  });

  it('a read-only bind mount cannot be written from inside; the host file is unchanged', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const hostDir = join(root, 'ro-src');
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(join(hostDir, 'f'), 'original\n');
    const cfg = config({
      command: ['sh', '-c', 'cat /data/f; echo changed > /data/f && echo wrote || echo refused'],
      mounts: [{ type: 'bind', source: hostDir, target: '/data', readonly: true }],
    });
    const h = await run(cfg);
    const r = await within(driver.wait(h), 10_000, 'wait()');
    assert.equal(r.exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), 'original\nrefused\n');
    assert.match(readLog(cfg, 'stderr'), /read-only file system/i);
    assert.equal(readFileSync(join(hostDir, 'f'), 'utf8'), 'original\n');
  });

  it('images are found by digest: an engine image of the same name is never run nor re-tagged', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    // Another `busybox:latest` already in the engine (an operator's image of the same name).
    const impostor = await buildBusyboxArchive(join(root, 'impostor'), { marker: 'impostor' });
    const loadStream = await docker.loadImage(impostor.archive);
    for await (const _ of loadStream as AsyncIterable<Buffer>) void _;
    const before = await docker.getImage('busybox:latest').inspect();
    assert.equal(before.Id, impostor.configDigest);

    const fresh = new DockerDriver({ socketPath: engine!.socketPath });
    const cfg = config({ command: ['cat', '/etc/yun-image'] });
    const h = await run(cfg, fresh);
    assert.equal((await within(fresh.wait(h), 10_000, 'wait()')).exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), 'yunstack-test-busybox\n');
    assert.equal((await docker.getImage('busybox:latest').inspect()).Id, impostor.configDigest, 'the engine’s busybox:latest is untouched');
    const ours = await docker.getImage(`${IMAGE_REPOSITORY}:sha256-${image!.info.digest.slice(7)}`).inspect();
    assert.equal(ours.Id, image!.configDigest);
    assert.ok(!(ours.RepoTags ?? []).includes('busybox:latest'), `our image has only the digest tag: ${JSON.stringify(ours.RepoTags)}`);
    // Starting again needs no export: the image is found by its digest tag.
    const exportsBefore = image!.exports();
    const h2 = await run(config({ command: ['true'] }), fresh);
    await within(fresh.wait(h2), 10_000, 'wait()');
    assert.equal(image!.exports(), exportsBefore);
  });

  it('an image missing from the engine is loaded from the archive, once for concurrent starts', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const other = await buildBusyboxArchive(join(root, 'other'), { marker: 'other-image', tag: 'other:1' });
    const cfgs = [1, 2, 3].map(() => config({ command: ['cat', '/etc/yun-image'], image: 'other:1', image_info: other.info }));
    const hs = await Promise.all(cfgs.map((c) => run(c)));
    assert.equal(other.exports(), 1, 'one export and load for three concurrent starts');
    for (const [i, h] of hs.entries()) {
      assert.equal((await within(driver.wait(h), 10_000, 'wait()')).exit_code, 0);
      assert.equal(readLog(cfgs[i]!, 'stdout'), 'other-image\n');
    }
    // A broken archive fails the start with a full error naming the image.
    const broken = join(root, 'broken.tar');
    writeFileSync(broken, Buffer.alloc(4096, 0x41));
    const bad = { ...other.info, digest: `sha256:${'ab'.repeat(32)}`, ref: 'broken:1', exportDockerArchive: async () => broken };
    await assert.rejects(driver.start(config({ image: 'broken:1', image_info: bad })), (e: Error) => {
      assert.equal(e.name, 'DriverError');
      assert.match(e.message, /loading image broken:1 \(sha256:abab.*\) from .*broken\.tar into the Docker engine failed: .+/);
      return true;
    });
  });

  it('an agent restart: a fresh driver recovers the running container (same container, same pid) and its logs resume without gaps or duplicates', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const cfg = config({ command: ['sh', '-c', 'trap "echo bye; exit 5" TERM; i=0; while :; do echo line-$i; echo err-$i >&2; i=$((i+1)); sleep 0.05 & wait $!; done'] });
    const h = (await run(cfg)) as DockerHandle;
    await until(() => readLog(cfg, 'stdout').includes('line-5\n'), 10_000, 'line-5');
    const pid = (await driver.inspect(h)).pid;
    assert.ok(pid && pid > 0);
    // The agent goes away: it stops following the logs; a batch it appended but did not record is left behind.
    await driver.detach(h);
    appendFileSync(join(cfg.dir, 'stdout.log'), 'half-written-batch\n');
    await new Promise((r) => setTimeout(r, 500)); // the task keeps writing meanwhile
    const fresh = new DockerDriver({ socketPath: engine!.socketPath });
    const persisted = JSON.parse(JSON.stringify(h)) as TaskHandle;
    const rec = (await fresh.recover(persisted)) as DockerHandle;
    assert.ok(rec, 'recovered');
    assert.equal(rec.container_id, h.container_id);
    const s = await fresh.inspect(rec);
    assert.equal(s.running, true);
    assert.equal(s.pid, pid, 'the same process');
    await until(() => readLog(cfg, 'stdout').includes('line-25\n'), 10_000, 'line-25 after recover');
    await fresh.stop(rec, 5000);
    const r = await within(fresh.wait(rec), 5000, 'wait()');
    assert.equal(r.exit_code, 5);
    const out = readLog(cfg, 'stdout').split('\n').filter(Boolean);
    const err = readLog(cfg, 'stderr').split('\n').filter(Boolean);
    assert.ok(!out.includes('half-written-batch'), 'the unrecorded batch was cut');
    assert.equal(out.at(-1), 'bye');
    const lines = out.slice(0, -1);
    assert.deepEqual(lines, lines.map((_, i) => `line-${i}`), 'every line once, in order');
    assert.deepEqual(err.slice(0, lines.length - 1), err.slice(0, lines.length - 1).map((_, i) => `err-${i}`));
    // A second fresh driver on the exited task: nothing is added twice.
    const again = new DockerDriver({ socketPath: engine!.socketPath });
    assert.equal(await again.recover(persisted), undefined, 'an exited container is not recovered');
    assert.equal((await again.wait(persisted)).exit_code, 5);
    assert.deepEqual(readLog(cfg, 'stdout').split('\n').filter(Boolean), out);
    await fresh.destroy(rec);
    assert.equal(await new DockerDriver({ socketPath: engine!.socketPath }).recover(persisted), undefined, 'a removed container is gone');
  });

  it('OOM: the engine says OOMKilled and the error says so in full', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const cfg = config({ command: ['sh', '-c', 'x=a; while :; do x=$x$x; done'], limits: { cpu: 0, memory_bytes: 16 * 1024 * 1024, pids: 0 } });
    const h = (await run(cfg)) as DockerHandle;
    const r = await within(driver.wait(h), 20_000, 'wait()');
    assert.equal((await docker.getContainer(h.container_id).inspect()).State.OOMKilled, true);
    assert.equal(r.oom_killed, true);
    assert.equal(r.exit_code, 137);
    assert.equal(r.error, 'OOMKilled: the task used more than its memory limit of 16MiB and was killed by the kernel');
    const s = await driver.inspect(h);
    assert.deepEqual(s.exit, r);
  });

  it('exec: a command that outlives its timeout is killed and reported', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const h = await run(config({ command: ['sleep', '60'] }));
    const t0 = Date.now();
    await assert.rejects(driver.exec(h, ['sleep', '30'], { timeoutMs: 300 }), /did not finish within 300 ms and was killed/);
    assert.ok(Date.now() - t0 < 3000);
    const ps = await driver.exec(h, ['ps', '-o', 'args'], { timeoutMs: 5000 });
    assert.ok(!ps.stdout.includes('sleep 30'), `the timed-out command is gone: ${ps.stdout}`);
    const missing = await driver.exec(h, ['no-such-cmd'], { timeoutMs: 5000 }).catch((e: Error) => e);
    if (missing instanceof Error) assert.match(missing.message, /no-such-cmd/);
    else assert.notEqual(missing.exit_code, 0);
  });

  it('network_mode host: the node network namespace', async (t) => {
    if (!requireOrSkip(t, canRun, whyNot)) return;
    const h = (await run(config({ command: ['sleep', '60'], network_mode: 'host' }))) as DockerHandle;
    assert.equal((await docker.getContainer(h.container_id).inspect()).HostConfig.NetworkMode, 'host');
  });
});

describe('docker save archive re-tagging (no engine)', () => {
  async function makeTar(files: Record<string, string>, dir: string): Promise<Buffer> {
    mkdirSync(dir, { recursive: true });
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), body);
    }
    const out = join(dir, '..', `${randomBytes(4).toString('hex')}.tar`);
    await tar.c({ cwd: dir, file: out, portable: true }, Object.keys(files));
    return readFileSync(out);
  }

  async function entries(buf: Buffer): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const p = new tar.Parser({
      onReadEntry: (e) => {
        const chunks: Buffer[] = [];
        e.on('data', (c: Buffer) => chunks.push(c));
        e.on('end', () => (out[e.path] = Buffer.concat(chunks).toString('utf8')));
      },
    });
    await new Promise<void>((resolve, reject) => {
      p.on('end', resolve);
      p.on('error', reject);
      p.end(buf);
    });
    return out;
  }

  async function retag(buf: Buffer, tag: string, chunk = 100): Promise<{ out: Buffer; r: RetagDockerArchive }> {
    const r = new RetagDockerArchive(tag);
    const parts: Buffer[] = [];
    r.on('data', (c: Buffer) => parts.push(c));
    const done = new Promise<void>((resolve, reject) => {
      r.on('end', resolve);
      r.on('error', reject);
    });
    // Small, odd-sized chunks: headers and entries split anywhere.
    const pieces: Buffer[] = [];
    for (let i = 0; i < buf.length; i += chunk) pieces.push(buf.subarray(i, i + chunk));
    Readable.from(pieces).pipe(r);
    await done;
    return { out: Buffer.concat(parts), r };
  }

  it('rewrites manifest.json to name only our tag, keeps every other entry, and reports the config digest', async () => {
    const dir = mkdtempSync(join(root, 'retag-'));
    const hex = 'c'.repeat(64);
    const longName = `${'d'.repeat(64)}/${'x'.repeat(120)}/layer.tar`;
    const files = {
      [`${hex}.json`]: '{"config":{}}',
      [longName]: 'layer-bytes'.repeat(300),
      'manifest.json': JSON.stringify([{ Config: `${hex}.json`, RepoTags: ['busybox:latest'], Layers: [longName] }]),
      repositories: '{"busybox":{"latest":"x"}}',
    };
    const input = await makeTar(files, join(dir, 'src'));
    for (const chunk of [7, 512, 100_000]) {
      const { out, r } = await retag(input, 'yunstack.local/image:sha256-abc', chunk);
      assert.equal(r.facts.configDigest, `sha256:${hex}`);
      assert.deepEqual(r.facts.originalTags, ['busybox:latest']);
      const got = await entries(out);
      assert.deepEqual(JSON.parse(got['manifest.json']!), [{ Config: `${hex}.json`, RepoTags: ['yunstack.local/image:sha256-abc'], Layers: [longName] }]);
      for (const name of [`${hex}.json`, longName, 'repositories']) assert.equal(got[name], files[name], name);
      assert.equal(out.length % 512, 0);
    }
  });

  it('refuses an archive without a manifest, or a truncated one', async () => {
    const dir = mkdtempSync(join(root, 'retag-bad-'));
    const noManifest = await makeTar({ 'a.txt': 'hello' }, join(dir, 'a'));
    await assert.rejects(retag(noManifest, 't:1'), /no manifest\.json naming an image config/);
    const good = await makeTar({ 'manifest.json': JSON.stringify([{ Config: `blobs/sha256/${'e'.repeat(64)}`, RepoTags: null, Layers: [] }]), 'big.bin': 'z'.repeat(5000) }, join(dir, 'b'));
    await assert.rejects(retag(good.subarray(0, 1500), 't:1'), /truncated/);
    const { r } = await retag(good, 't:1');
    assert.equal(r.facts.configDigest, `sha256:${'e'.repeat(64)}`);
  });
});
