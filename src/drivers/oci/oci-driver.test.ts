// The oci driver: the shared conformance suite on a busybox rootfs built here from the node's static
// busybox (no image store needed), then what only containers do: isolation (ps, hostname, network
// namespace), OOMKilled, read-only bind mounts and rootfs, freeze/thaw, limits in cgroup files,
// recovery after an agent killed with SIGKILL, and a destroy that leaves nothing behind.
//
// Needs root, runc and busybox-static: skips otherwise, unless YUN_REQUIRE_ALL=1 (then it fails).
// Everything made here is removed in `after`, even when a test fails: runc containers (own --root),
// overlay mounts, network namespaces and cgroups of the task ids started here, the temp dirs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError, type TaskConfig, type TaskHandle } from '../driver.js';
import { readLog, requireOrSkip, runConformance, until, within } from '../testing/conformance.js';
import { buildBusyboxRootfs, findStaticBusybox, INDEX_HTML, rootfsImageInfo } from './busybox-rootfs.js';
import { isMountPoint } from './host.js';
import { netnsName, OciDriver, removeTaskCgroups, type OciHandle } from './oci-driver.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
const isRoot = process.getuid?.() === 0;

function onPath(name: string): string | undefined {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!d) continue;
    try {
      accessSync(join(d, name), constants.X_OK);
      return join(d, name);
    } catch {
      /* next */
    }
  }
  return undefined;
}

const runcBin = onPath('runc');
const busybox = findStaticBusybox();
const missing = !isRoot ? 'the oci driver needs root' : !runcBin ? 'runc is not installed (Debian package runc)' : !busybox ? 'no static busybox to build the test image (Debian package busybox-static)' : undefined;

const suffix = randomBytes(4).toString('hex');
const RUNC_ROOT = `/run/yunstack-runc-test-${suffix}`;
const work = missing ? '' : realpathSync(mkdtempSync(join(tmpdir(), 'yun-oci-')));
const rootfs = missing ? '' : buildBusyboxRootfs(join(work, 'image-rootfs'));
const image = missing ? undefined : rootfsImageInfo(rootfs);

/** Every config any driver instance of this file was asked to start: what `after` cleans up. */
const tracked = new Map<string, TaskConfig>();
class TrackedOciDriver extends OciDriver {
  override async start(config: TaskConfig): Promise<TaskHandle> {
    tracked.set(config.id, config);
    return super.start(config);
  }
}
const makeDriver = () => new TrackedOciDriver({ root: RUNC_ROOT });

function mountsUnder(prefix: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && (mp === prefix || mp.startsWith(prefix + '/'))) out.push(mp.replace(/\\040/g, ' '));
  }
  return out;
}

/** Remove whatever a task id may have left (used only in `after`, for ids this file started). */
async function scrub(cfg: TaskConfig): Promise<void> {
  try {
    execFileSync(runcBin!, ['--root', RUNC_ROOT, 'delete', '--force', cfg.id], { stdio: 'ignore' });
  } catch {
    /* not known to runc */
  }
  for (const m of mountsUnder(cfg.dir).reverse()) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  if (existsSync(`/run/netns/${netnsName(cfg.id)}`)) {
    try {
      execFileSync('ip', ['netns', 'delete', netnsName(cfg.id)], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  await removeTaskCgroups(CGROUP_ROOT, '/' + [...cfg.cgroup_parent.split('/').filter(Boolean), cfg.id].join('/')).catch(() => undefined);
}

/** Every cgroup directory `/<parent>/<id>` in any hierarchy. */
function cgroupLeftovers(cfg: TaskConfig): string[] {
  const rel = [...cfg.cgroup_parent.split('/').filter(Boolean), cfg.id];
  const bases = [CGROUP_ROOT, ...readdirSync(CGROUP_ROOT).map((e) => join(CGROUP_ROOT, e))];
  return bases.map((b) => join(b, ...rel)).filter((d) => existsSync(d));
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

after(async () => {
  if (missing) return;
  for (const cfg of tracked.values()) await scrub(cfg);
  for (const m of mountsUnder(work).reverse()) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  rmSync(work, { recursive: true, force: true });
  rmSync(RUNC_ROOT, { recursive: true, force: true });
});

if (missing) {
  describe('driver conformance: oci', () => {
    it('needs root, runc and busybox-static', (t) => {
      requireOrSkip(t, false, missing);
    });
  });
} else {
  runConformance(async () => makeDriver(), { name: 'oci', image: image!.ref, requireRoot: true, baseConfig: { image_info: image!, network_mode: 'private' } });
}

describe('oci driver', () => {
  const cgroupTop = 'yunstack-test';
  const cgroupParent = `${cgroupTop}/oci-${suffix}`;
  let root: string;
  let n = 0;
  const driver = makeDriver();
  const handles: Array<{ d: OciDriver; h: TaskHandle }> = [];

  before(() => {
    if (missing) return;
    root = join(work, 'tasks');
    mkdirSync(root, { recursive: true });
  });

  after(async () => {
    if (missing) return;
    for (const { d, h } of handles.reverse()) {
      await d.stop(h, 0).catch(() => undefined);
      await d.destroy(h).catch(() => undefined);
    }
    for (const e of readdirSync(CGROUP_ROOT)) {
      for (const d of [join(CGROUP_ROOT, e, cgroupParent), join(CGROUP_ROOT, e, cgroupTop)]) {
        try {
          rmdirSync(d);
        } catch {
          /* absent or in use */
        }
      }
    }
  });

  const skip = (t: { skip: (m: string) => void }) => (missing ? !requireOrSkip(t, false, missing) : false);

  function config(over: Partial<TaskConfig> = {}): TaskConfig {
    const id = `oci-${suffix}-${++n}`;
    const dir = join(root, id);
    mkdirSync(dir, { recursive: true });
    return {
      id,
      name: `web.${n}`,
      dir,
      command: ['sleep', '60'],
      shell: false,
      env: {},
      mounts: [],
      read_only: false,
      limits: { cpu: 0, memory_bytes: 0, pids: 0 },
      ports: [],
      network_mode: 'private',
      image: image!.ref,
      image_info: image!,
      cgroup_parent: cgroupParent,
      labels: {},
      ...over,
    };
  }

  async function startTracked(cfg: TaskConfig, d: OciDriver = driver): Promise<OciHandle> {
    const h = (await d.start(cfg)) as OciHandle;
    handles.push({ d, h });
    return h;
  }

  async function finish(h: TaskHandle, d: OciDriver = driver): Promise<void> {
    await d.stop(h, 0);
    await d.destroy(h);
  }

  it('fingerprint: attributes; unavailable with the reason when runc is missing', async (t) => {
    if (skip(t)) return;
    const fp = await driver.fingerprint();
    assert.equal(fp.available, true, JSON.stringify(fp));
    assert.match(fp.attributes?.runc ?? '', /^\d+\.\d+/);
    assert.ok(['v1', 'v2'].includes(fp.attributes?.cgroups ?? ''));
    assert.equal(fp.attributes?.rootfs, 'overlay');
    const none = await new OciDriver({ runc: 'no-such-runc-yun' }).fingerprint();
    assert.deepEqual(none, { available: false, reason: 'no-such-runc-yun not found on PATH: install the Debian package runc' });
    await assert.rejects(new OciDriver({ runc: '/nonexistent/runc' }).start(config()), /not available on this node: runc not found at \/nonexistent\/runc/);
  });

  it('must-show 1: httpd from the image; exec `ps` sees only the task, `hostname` is the task name; lo is up in its own netns', async (t) => {
    if (skip(t)) return;
    const cfg = config({ command: ['httpd', '-f', '-p', '8080', '-h', '/www'], limits: { cpu: 0, memory_bytes: 32 * 1024 * 1024, pids: 0 } });
    const h = await startTracked(cfg);
    const ps = await driver.exec(h, ['ps', '-o', 'pid,comm'], { timeoutMs: 5000 });
    assert.equal(ps.exit_code, 0, ps.stderr);
    const procs = ps.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    const withInit = (await driver.fingerprint()).attributes?.init !== 'none';
    assert.deepEqual(procs.map((p) => p[1]).sort(), withInit ? ['httpd', 'init', 'ps'] : ['httpd', 'ps'], ps.stdout);
    assert.equal(procs.find((p) => p[1] === (withInit ? 'init' : 'httpd'))?.[0], '1', 'the init (or without one the command) is PID 1');
    assert.deepEqual(await driver.exec(h, ['hostname'], { timeoutMs: 5000 }), { exit_code: 0, stdout: `${cfg.name}\n`, stderr: '' });
    const page = await until(async () => {
      const r = await driver.exec(h, ['wget', '-q', '-O', '-', 'http://127.0.0.1:8080/'], { timeoutMs: 5000 });
      return r.exit_code === 0 ? r.stdout : undefined;
    }, 5000, 'httpd to answer on 127.0.0.1:8080 inside the task');
    assert.equal(page, INDEX_HTML);
    // Its own network namespace: only lo, and not the node's.
    const dev = await driver.exec(h, ['cat', '/proc/net/dev'], { timeoutMs: 5000 });
    assert.deepEqual(dev.stdout.split('\n').slice(2).filter(Boolean).map((l) => l.trim().split(':')[0]), ['lo']);
    const ns = (await driver.exec(h, ['readlink', '/proc/self/ns/net'], { timeoutMs: 5000 })).stdout.trim();
    assert.notEqual(ns, readlinkSync('/proc/self/ns/net'));
    assert.equal(h.netns, netnsName(cfg.id));
    assert.equal(ns, `net:[${statSync(`/run/netns/${h.netns}`).ino}]`, 'the task is in its named network namespace');
    const hosts = (await driver.exec(h, ['cat', '/etc/hosts'], { timeoutMs: 5000 })).stdout;
    assert.match(hosts, new RegExp(`^127\\.0\\.1\\.1\\t${cfg.name.replace('.', '\\.')}$`, 'm'));
    await finish(h);
  });

  it('network_mode host: no namespace of its own', async (t) => {
    if (skip(t)) return;
    const cfg = config({ network_mode: 'host' });
    const h = await startTracked(cfg);
    assert.equal(h.netns, undefined);
    assert.equal(existsSync(`/run/netns/${netnsName(cfg.id)}`), false);
    const ns = (await driver.exec(h, ['readlink', '/proc/self/ns/net'], { timeoutMs: 5000 })).stdout.trim();
    assert.equal(ns, readlinkSync('/proc/self/ns/net'));
    assert.equal((await driver.exec(h, ['hostname'], { timeoutMs: 5000 })).stdout, `${cfg.name}\n`, 'its own UTS namespace still');
    await finish(h);
  });

  it('must-show 2: a task over its 32m memory limit ends OOMKilled, said in full', async (t) => {
    if (skip(t)) return;
    const cfg = config({ command: ['sh', '-c', 'x=a; while :; do x=$x$x; done'], limits: { cpu: 0, memory_bytes: 32 * 1024 * 1024, pids: 0 } });
    const h = await startTracked(cfg);
    const r = await within(driver.wait(h), 20_000, 'wait()');
    assert.deepEqual({ ...r, finished_at: '' }, {
      exit_code: 137,
      signal: 'SIGKILL',
      oom_killed: true,
      finished_at: '',
      error: 'OOMKilled: the task used more than its memory limit of 32MiB and was killed by the kernel',
    });
    await driver.destroy(h);
    // Still known after the cgroup is gone (exit.json), and by a fresh driver instance.
    assert.equal((await makeDriver().inspect(h)).exit?.oom_killed, true);
  });

  it('must-show 3: a read-only bind mount cannot be written from inside; the host file is unchanged', async (t) => {
    if (skip(t)) return;
    const data = mkdtempSync(join(work, 'data-'));
    writeFileSync(join(data, 'file.txt'), 'original\n');
    const rw = mkdtempSync(join(work, 'rw-'));
    const cfg = config({
      mounts: [
        { type: 'bind', source: data, target: '/data', readonly: true },
        { type: 'bind', source: rw, target: '/rw' },
        { type: 'tmpfs', target: '/scratch', tmpfs_size_bytes: 1024 * 1024 },
      ],
    });
    const h = await startTracked(cfg);
    const w = await driver.exec(h, ['sh', '-c', 'echo changed > /data/file.txt'], { timeoutMs: 5000 });
    assert.notEqual(w.exit_code, 0);
    assert.match(w.stderr, /read-only file system/i);
    assert.notEqual((await driver.exec(h, ['rm', '/data/file.txt'], { timeoutMs: 5000 })).exit_code, 0);
    assert.notEqual((await driver.exec(h, ['touch', '/data/new'], { timeoutMs: 5000 })).exit_code, 0);
    assert.equal((await driver.exec(h, ['cat', '/data/file.txt'], { timeoutMs: 5000 })).stdout, 'original\n', 'readable inside');
    assert.equal(readFileSync(join(data, 'file.txt'), 'utf8'), 'original\n', 'the host file is unchanged');
    assert.deepEqual(readdirSync(data), ['file.txt']);
    // A writable bind mount writes through; a tmpfs has its size.
    assert.equal((await driver.exec(h, ['sh', '-c', 'echo hi > /rw/out.txt'], { timeoutMs: 5000 })).exit_code, 0);
    assert.equal(readFileSync(join(rw, 'out.txt'), 'utf8'), 'hi\n');
    const df = await driver.exec(h, ['sh', '-c', 'grep " /scratch " /proc/mounts'], { timeoutMs: 5000 });
    assert.match(df.stdout, /tmpfs \/scratch tmpfs .*size=1024k/);
    await finish(h);
    await assert.rejects(driver.start(config({ mounts: [{ type: 'bind', source: join(work, 'no-such-dir'), target: '/x' }] })), /does not exist on this node/);
    await assert.rejects(driver.start(config({ mounts: [{ type: 'volume', source: 'v', target: '/x' }] })), /volume mounts .* not supported/);
  });

  it('--read-only rootfs: nothing in the image can be written, mounts still can', async (t) => {
    if (skip(t)) return;
    const cfg = config({ read_only: true, mounts: [{ type: 'tmpfs', target: '/tmp' }] });
    const h = await startTracked(cfg);
    const w = await driver.exec(h, ['touch', '/newfile'], { timeoutMs: 5000 });
    assert.notEqual(w.exit_code, 0);
    assert.match(w.stderr, /read-only file system/i);
    assert.notEqual((await driver.exec(h, ['rm', '/www/index.html'], { timeoutMs: 5000 })).exit_code, 0);
    assert.equal((await driver.exec(h, ['touch', '/tmp/ok'], { timeoutMs: 5000 })).exit_code, 0, 'the tmpfs is writable');
    await finish(h);
    // Without --read-only, writes land in the task's upper layer, never in the shared image.
    const cfg2 = config();
    const h2 = await startTracked(cfg2);
    assert.equal((await driver.exec(h2, ['sh', '-c', 'echo x > /www/index.html; rm /bin/ls'], { timeoutMs: 5000 })).exit_code, 0);
    assert.equal(readFileSync(join(rootfs, 'www', 'index.html'), 'utf8'), INDEX_HTML);
    assert.ok(existsSync(join(rootfs, 'bin', 'ls')));
    assert.equal(readFileSync(join(cfg2.dir, 'upper', 'www', 'index.html'), 'utf8'), 'x\n');
    await finish(h2);
  });

  it('freeze/thaw through the cgroup freezer (runc pause/resume); stop works on a frozen task', async (t) => {
    if (skip(t)) return;
    const cfg = config({ command: ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done'] });
    const h = await startTracked(cfg);
    const count = () => Number(readFileSync(join(h.rootfs, 'tmp', 'count'), 'utf8').trim() || '0');
    await until(() => existsSync(join(h.rootfs, 'tmp', 'count')) && count() > 2, 5000, 'the counter to run');
    await driver.freeze(h);
    await driver.freeze(h); // idempotent
    assert.equal(await driver.containerStatus(h), 'paused');
    const freezer = join(CGROUP_ROOT, 'freezer', cgroupParent, cfg.id, 'freezer.state');
    if (existsSync(freezer)) assert.equal(readFileSync(freezer, 'utf8').trim(), 'FROZEN');
    const frozenAt = count();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(count(), frozenAt, 'no progress while frozen');
    assert.equal((await driver.inspect(h)).running, true);
    await driver.thaw(h);
    assert.equal(await driver.containerStatus(h), 'running');
    await until(() => count() > frozenAt + 2, 5000, 'progress after thaw');
    await driver.freeze(h);
    const t0 = Date.now();
    await within(driver.stop(h, 5000), 6000, 'stop() of a frozen task');
    assert.ok(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0} ms`);
    const r = await driver.wait(h);
    assert.equal(r.signal, 'SIGTERM', JSON.stringify(r));
    await assert.rejects(driver.freeze(h), /not running/);
    await driver.destroy(h);
  });

  it('limits in the cgroup files; the pids limit holds', async (t) => {
    if (skip(t)) return;
    const cfg = config({ command: ['sh', '-c', 'echo ready; sleep 60'], limits: { cpu: 0.5, memory_bytes: 64 * 1024 * 1024, pids: 20 } });
    const h = await startTracked(cfg);
    const fp = await driver.fingerprint();
    const read = (f: string) => readFileSync(f, 'utf8').trim();
    if (fp.attributes?.cgroups === 'v1') {
      const cg = (c: string) => join(CGROUP_ROOT, c, cgroupParent, cfg.id);
      assert.equal(read(join(cg('memory'), 'memory.limit_in_bytes')), String(64 * 1024 * 1024));
      if (fp.attributes?.swap_limit === 'true') assert.equal(read(join(cg('memory'), 'memory.memsw.limit_in_bytes')), String(64 * 1024 * 1024));
      assert.equal(read(join(cg('cpu'), 'cpu.cfs_quota_us')), '50000');
      assert.equal(read(join(cg('cpu'), 'cpu.cfs_period_us')), '100000');
      assert.equal(read(join(cg('pids'), 'pids.max')), fp.attributes?.init === 'none' ? '20' : '21', 'the limit plus one for the init');
      assert.match(read(`/proc/${h.pid}/cgroup`), new RegExp(`^\\d+:memory:/${cgroupParent}/${cfg.id}$`, 'm'));
    } else {
      const dir = join(CGROUP_ROOT, cgroupParent, cfg.id);
      assert.equal(read(join(dir, 'memory.max')), String(64 * 1024 * 1024));
      assert.equal(read(join(dir, 'cpu.max')), '50000 100000');
      assert.equal(read(join(dir, 'pids.max')), fp.attributes?.init === 'none' ? '20' : '21');
    }
    const fork = await driver.exec(h, ['sh', '-c', 'i=0; while [ $i -lt 40 ]; do sleep 5 >/dev/null 2>&1 & i=$((i+1)); done; echo spawned-all'], { timeoutMs: 10_000 }).catch((e: Error) => ({ exit_code: -1, stdout: '', stderr: e.message }));
    assert.ok(!fork.stdout.includes('spawned-all'), `the pids limit stopped the forks: ${JSON.stringify(fork)}`);
    await finish(h);
  });

  it('user: names resolved in the image; a non-root user has no capabilities', async (t) => {
    if (skip(t)) return;
    const cfg = config({ user: 'nobody', command: ['sh', '-c', 'id; grep CapEff /proc/self/status; echo "$HOME"'] });
    const h = await startTracked(cfg);
    assert.equal((await within(driver.wait(h), 10_000, 'wait()')).exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), 'uid=65534(nobody) gid=65534(nogroup)\nCapEff:\t0000000000000000\n/nonexistent\n');
    await driver.destroy(h);
    const root = config({ user: '', command: ['sh', '-c', 'id -u; grep CapEff /proc/self/status'] });
    const h2 = await startTracked(root);
    await within(driver.wait(h2), 10_000, 'wait()');
    assert.match(readLog(root, 'stdout'), /^0\nCapEff:\t0*a80425fb\n$/, 'root gets Docker\'s default capability set');
    await driver.destroy(h2);
    const numeric = config({ user: '1234:5678', command: ['id'] });
    const h3 = await startTracked(numeric);
    await within(driver.wait(h3), 10_000, 'wait()');
    assert.equal(readLog(numeric, 'stdout'), 'uid=1234 gid=5678\n');
    await driver.destroy(h3);
    await assert.rejects(driver.start(config({ user: 'no-such-user' })), /user "no-such-user" does not exist in the image/);
  });

  it('entrypoint and cmd: the task command replaces Cmd and keeps Entrypoint; workdir and env from the image', async (t) => {
    if (skip(t)) return;
    const img = rootfsImageInfo(rootfs, { entrypoint: ['/bin/echo', 'entry'], cmd: ['default-cmd'], env: ['PATH=/bin', 'FROM_IMAGE=1', 'OVERRIDE=image'], workdir: '/www' });
    const a = config({ image_info: img, command: [] });
    const ha = await startTracked(a);
    await within(driver.wait(ha), 10_000, 'wait()');
    assert.equal(readLog(a, 'stdout'), 'entry default-cmd\n');
    await driver.destroy(ha);
    const b = config({ image_info: img, command: ['given'] });
    const hb = await startTracked(b);
    await within(driver.wait(hb), 10_000, 'wait()');
    assert.equal(readLog(b, 'stdout'), 'entry given\n');
    await driver.destroy(hb);
    const envImg = rootfsImageInfo(rootfs, { env: ['PATH=/bin', 'FROM_IMAGE=1', 'OVERRIDE=image'], workdir: '/www' });
    const c = config({ image_info: envImg, command: ['sh', '-c', 'echo "$FROM_IMAGE $OVERRIDE $HOSTNAME $(pwd)"'], env: { OVERRIDE: 'task' } });
    const hc = await startTracked(c);
    await within(driver.wait(hc), 10_000, 'wait()');
    assert.equal(readLog(c, 'stdout'), `1 task ${c.name} /www\n`);
    await driver.destroy(hc);
    const d = config({ command: ['pwd'], workdir: '/new/dir' });
    const hd = await startTracked(d);
    await within(driver.wait(hd), 10_000, 'wait()');
    assert.equal(readLog(d, 'stdout'), '/new/dir\n', 'a missing workdir is created');
    await driver.destroy(hd);
    await assert.rejects(driver.start(config({ image_info: undefined })), (e: Error) => e instanceof DriverError && /runs images/.test(e.message));
  });

  it('recover: the container outlives an agent killed with SIGKILL; a restarted agent reattaches (same pid)', async (t) => {
    if (skip(t)) return;
    const moduleUrl = new URL('./oci-driver.js', import.meta.url).href;
    const running = config({ command: ['sh', '-c', 'trap "echo bye; exit 5" TERM; echo ready; while :; do sleep 1 & wait $!; done'] });
    const quick = config({ command: ['sh', '-c', 'echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 6'] });
    const { image_info: _i, ...plain1 } = running;
    const { image_info: _j, ...plain2 } = quick;
    void _i;
    void _j;
    const code = `
      const { OciDriver } = await import(${JSON.stringify(moduleUrl)});
      const d = new OciDriver({ root: ${JSON.stringify(RUNC_ROOT)} });
      const img = JSON.parse(process.argv[2]);
      const handles = [];
      for (const c of JSON.parse(process.argv[1])) handles.push(await d.start({ ...c, image_info: img }));
      process.stdout.write(JSON.stringify(handles) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const agent = spawn(process.execPath, ['--input-type=module', '-e', code, JSON.stringify([plain1, plain2]), JSON.stringify({ ...image!, exportDockerArchive: undefined })], { stdio: ['ignore', 'pipe', 'inherit'] });
    tracked.set(running.id, running);
    tracked.set(quick.id, quick);
    try {
      let out = '';
      agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      const line = await until(() => (out.includes('\n') ? out.split('\n')[0] : undefined), 15_000, 'the agent to print its handles');
      const [h1, h2] = JSON.parse(line) as [OciHandle, OciHandle];
      handles.push({ d: driver, h: h1 }, { d: driver, h: h2 });
      await until(() => readLog(running, 'stdout').includes('ready') && readLog(quick, 'stdout').includes('ready'), 5000, 'both tasks ready');
      const exited = new Promise((r) => agent.once('exit', r));
      process.kill(agent.pid!, 'SIGKILL');
      await exited;

      // The second task finishes while no agent runs.
      // (Through the task's overlay mount on the node: its layers must not be changed underneath it.)
      writeFileSync(join(h2.rootfs, 'tmp', 'go'), '');
      await until(() => readFileSync(join(quick.dir, 'exit'), 'utf8') === '6\n', 5000, 'the exit file of the quick task');

      const restarted = makeDriver();
      const r1 = (await restarted.recover(JSON.parse(JSON.stringify(h1)))) as OciHandle | undefined;
      assert.ok(r1, 'the running container is recovered');
      assert.equal(r1.pid, h1.pid);
      assert.deepEqual(await restarted.inspect(r1), { running: true, pid: h1.pid });
      assert.ok(alive(h1.pid), 'same init pid, still alive');
      assert.equal(await restarted.containerStatus(r1), 'running');
      assert.equal((await restarted.exec(r1, ['hostname'], { timeoutMs: 5000 })).stdout, `${running.name}\n`);
      const w1 = restarted.wait(r1);
      await restarted.stop(r1, 5000);
      const e1 = await within(w1, 3000, 'wait() on the recovered handle');
      assert.equal(e1.exit_code, 5);
      assert.equal(e1.error, 'exit code 5');
      assert.match(readLog(running, 'stdout'), /bye/, 'output still reaches the log after the agent died');

      assert.equal(await restarted.recover(h2), undefined, 'the exited task is not recovered');
      const s2 = await restarted.inspect(h2);
      assert.equal(s2.running, false);
      assert.equal(s2.exit?.exit_code, 6);
      await restarted.destroy(r1);
      await restarted.destroy(h2);
    } finally {
      try {
        process.kill(agent.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });

  it('destroy leaves no mount, netns, cgroup, runc state or process; logs stay; a failed start leaves nothing either', async (t) => {
    if (skip(t)) return;
    const cfg = config({ command: ['sh', '-c', 'sleep 300 & echo ready; wait'], limits: { cpu: 0.5, memory_bytes: 64 * 1024 * 1024, pids: 20 } });
    const h = await startTracked(cfg);
    await until(() => readLog(cfg, 'stdout').includes('ready'), 5000, 'ready');
    assert.ok(await isMountPoint(h.rootfs));
    assert.ok(existsSync(`/run/netns/${h.netns}`));
    assert.ok(existsSync(join(RUNC_ROOT, cfg.id)));
    assert.ok(cgroupLeftovers(cfg).length >= 3);
    const pids = readFileSync(join(CGROUP_ROOT, 'pids', cgroupParent, cfg.id, 'cgroup.procs'), 'utf8').trim().split('\n').map(Number);
    assert.ok(pids.length >= 3, `init, sh and sleep: ${pids}`);
    await driver.destroy(h); // without a stop first
    assert.equal(await isMountPoint(h.rootfs), false, 'rootfs unmounted');
    assert.deepEqual(mountsUnder(cfg.dir), []);
    assert.equal(existsSync(`/run/netns/${h.netns}`), false, 'netns deleted');
    assert.deepEqual(cgroupLeftovers(cfg), [], 'no cgroup in any hierarchy');
    assert.equal(existsSync(join(RUNC_ROOT, cfg.id)), false, 'runc state deleted');
    for (const p of [...pids, h.shim_pid]) assert.equal(alive(p), false, `pid ${p} is gone`);
    assert.deepEqual(readdirSync(cfg.dir).sort(), ['exit', 'exit.json', 'runc.log', 'stderr.log', 'stdout.log']);
    await driver.destroy(h); // idempotent
    const s = await driver.inspect(h);
    assert.equal(s.running, false);
    assert.equal(s.exit?.signal, 'SIGKILL');

    // A start that fails (bad command, bad user, runc refusing) cleans up what it had made.
    for (const bad of [config({ command: ['no-such-cmd'] }), config({ user: 'ghost' }), config({ command: ['sh'], cgroup_parent: `${cgroupParent}/x`, limits: { cpu: 0, memory_bytes: 1, pids: 0 } })]) {
      await assert.rejects(driver.start(bad), DriverError);
      assert.deepEqual(mountsUnder(bad.dir), [], 'no mount');
      assert.equal(existsSync(`/run/netns/${netnsName(bad.id)}`), false, 'no netns');
      assert.deepEqual(cgroupLeftovers(bad), [], 'no cgroup');
      assert.equal(existsSync(join(RUNC_ROOT, bad.id)), false, 'no runc state');
      assert.equal(existsSync(join(bad.dir, 'bundle')), false, 'no bundle');
    }
    for (const e of readdirSync(CGROUP_ROOT)) {
      try {
        rmdirSync(join(CGROUP_ROOT, e, cgroupParent, 'x'));
      } catch {
        /* absent */
      }
    }
  });

  it('execTty: an interactive shell on a terminal, with its size, resizable; the exit code comes back', async (t) => {
    if (skip(t)) return;
    if (!requireOrSkip(t, Boolean(onPath('script')), 'no `script` (bsdutils) on this node')) return;
    const h = await startTracked(config());
    const s = await driver.execTty(h, ['sh'], { rows: 33, cols: 99, env: { YUN_X: 'tty-env' } });
    let out = '';
    s.output.on('data', (b: Buffer) => (out += b.toString()));
    try {
      // Type at the prompt, not ahead of it: a line typed before runc has set up the container's
      // terminal can meet it half made (seen once in CI: `stty: standard input: No child processes`).
      await until(() => /# $/.test(out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')), 5000, 'the shell\'s prompt');
      s.stdin.write('tty; stty size; echo "v=$YUN_X"\n');
      await until(() => /v=tty-env/.test(out), 5000, 'the shell to answer');
      assert.match(out, /\/dev\/pts\/\d+\r*\n/);
      assert.match(out, /33 99\r*\n/);
      await s.resize(40, 120);
      s.stdin.write('stty size\n');
      await until(() => /40 120\r*\n/.test(out), 5000, 'the new size inside');
      s.stdin.write('exit 4\n');
      assert.equal(await within(s.wait(), 5000, 'the session to end'), 4);
    } finally {
      s.kill();
    }
    await finish(h);
  });

  it('exec: errors are DriverErrors with the reason; a timeout kills the command', async (t) => {
    if (skip(t)) return;
    const cfg = config();
    const h = await startTracked(cfg);
    await assert.rejects(driver.exec(h, ['nosuchcmd-yun'], { timeoutMs: 2000 }), /executable file not found in \$PATH/);
    const t0 = Date.now();
    await assert.rejects(driver.exec(h, ['sleep', '30'], { timeoutMs: 300 }), /did not finish within 300 ms and was killed/);
    assert.ok(Date.now() - t0 < 3000);
    const ps = await driver.exec(h, ['ps', '-o', 'comm'], { timeoutMs: 5000 });
    const expected = (await driver.fingerprint()).attributes?.init === 'none' ? ['ps', 'sleep'] : ['init', 'ps', 'sleep'];
    assert.deepEqual(ps.stdout.trim().split('\n').slice(1).sort(), expected, 'the timed-out sleep was killed');
    await driver.stop(h, 1000);
    await assert.rejects(driver.exec(h, ['true'], { timeoutMs: 1000 }), /is not running/);
    await driver.destroy(h);
  });
});
