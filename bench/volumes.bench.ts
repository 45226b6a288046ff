// Volume benchmarks, on a real `yun up` on this machine, with one tinyvm VM (m1.tiny, no network):
//  - the control path, p50/p99 over YUN_BENCH_VOLUME_ROUNDS rounds (10) of a 1 GiB blank volume:
//    create (POST → `available`), attach to the VM (→ `in-use`), detach (→ `available`), delete
//    (→ 404). Each is timed from just before its request to the first GET (10 ms polls) that shows
//    the status;
//  - sequential throughput of an attached volume inside the guest: busybox `dd` of 256 MiB with
//    O_DIRECT, write then read, run on the VM's serial console (its unix socket) and timed from the
//    host (command sent → its end marker seen), and the same `dd` on the host against a file of the
//    same kind (a sparse 1 GiB raw file with ext4, as the node makes a blank volume), in a temp dir.
//    The ratio guest/host says what the VM path costs; under TCG (no KVM) it is mostly emulation.
// Writes bench/results/volumes.json (as servers.bench writes servers.json), also after a failure
// with what it got. Cleans up what it made (volumes, the server, the cloud, its temp dir) in a
// finally, also on SIGINT/SIGTERM.
//
// Knobs (environment): YUN_BENCH_VOLUME_ROUNDS (10), YUN_BENCH_VOLUME_DD_REPEATS (5),
// YUN_BENCH_VOLUME_DD_MIB (256), YUN_BENCH_DEBUG (progress on stderr).
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildTinyVm } from '../src/images/tinyvm/build.js';
import { ROOT, YUN_BIN, median, pct, row, startCloudProcess, type CloudProcess } from './lib/cloud-process.js';

const ROUNDS = Number(process.env.YUN_BENCH_VOLUME_ROUNDS ?? 10);
const DD_REPEATS = Number(process.env.YUN_BENCH_VOLUME_DD_REPEATS ?? 5);
const DD_MIB = Number(process.env.YUN_BENCH_VOLUME_DD_MIB ?? 256);
const POLL_MS = 10;
const READY = 'YUN-GUEST ready';

const debug = (m: string) => { if (process.env.YUN_BENCH_DEBUG) console.error(`[volumes.bench] ${m}`); };

// Ctrl-C / SIGTERM (run-bench forwards them): every wait below gives up, so the finally cleans up.
let interrupted: string | undefined;
let onInterrupt: ((why: string) => void)[] = [];
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return; // a second one: cleanup is already under way
    interrupted = `interrupted by ${sig}`;
    for (const f of onInterrupt) f(interrupted);
    onInterrupt = [];
  });
}
/** Resolves `p`, or rejects once the benchmark is interrupted. */
function interruptible<T>(p: Promise<T>): Promise<T> {
  if (interrupted) return Promise.reject(new Error(interrupted));
  return new Promise<T>((resolve, reject) => {
    const f = (why: string) => reject(new Error(why));
    onInterrupt.push(f);
    p.then(resolve, reject).finally(() => { onInterrupt = onInterrupt.filter((x) => x !== f); });
  });
}
const sleep = (ms: number) => interruptible(new Promise<void>((r) => setTimeout(r, ms)));
/** For the cleanup: a sleep that an interrupt does not cut short. */
const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Volume { id: string; name: string; status: string; fault?: { message?: string } | null; message?: string | null; attachments: { server_id: string; device: string | null }[] }
interface Server { id: string; name: string; status: string; fault?: { message?: string; details?: string } | null }

const show = (b: unknown) => JSON.stringify(b);

// ---- volumes ----

/** Milliseconds from t0 until the volume shows `want` (an error status throws with its fault). */
async function untilVolume(c: CloudProcess, id: string, want: string, t0: number, timeoutMs = 120_000): Promise<{ ms: number; v: Volume }> {
  for (;;) {
    const r = await c.api<Volume>('GET', `/v1/volumes/${id}`);
    if (r.status === 200 && r.body.status === want) return { ms: performance.now() - t0, v: r.body };
    if (r.status !== 200) throw new Error(`GET volume ${id} answered ${r.status} while waiting for ${want}: ${show(r.body)}`);
    if (r.body.status.startsWith('error')) throw new Error(`volume ${id} went to ${r.body.status} while waiting for ${want}: ${show(r.body.fault ?? r.body.message)}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`volume ${id} not ${want} within ${timeoutMs} ms (status ${r.body.status}, message ${show(r.body.message)})`);
    await sleep(POLL_MS);
  }
}

async function untilVolumeGone(c: CloudProcess, id: string, t0: number, timeoutMs = 120_000, wait = sleep): Promise<number> {
  for (;;) {
    const r = await c.api<Volume>('GET', `/v1/volumes/${id}`);
    if (r.status === 404) return performance.now() - t0;
    if (r.status === 200 && r.body.status === 'error_deleting') throw new Error(`volume ${id} went to error_deleting: ${show(r.body.fault)}`);
    if (performance.now() - t0 > timeoutMs) throw new Error(`volume ${id} not gone within ${timeoutMs} ms (GET answers ${r.status} ${show(r.body?.status)})`);
    await wait(POLL_MS);
  }
}

async function createVolume(c: CloudProcess, name: string, sizeGiB: number): Promise<{ id: string; ms: number }> {
  const t0 = performance.now();
  const r = await c.api<Volume>('POST', '/v1/volumes', { name, size: sizeGiB });
  if (r.status !== 202) throw new Error(`create volume ${name}: ${r.status} ${show(r.body)}`);
  made.volumes.add(r.body.id);
  return { id: r.body.id, ms: (await untilVolume(c, r.body.id, 'available', t0)).ms };
}

async function attach(c: CloudProcess, id: string, server: string): Promise<{ ms: number; device: string | null }> {
  const t0 = performance.now();
  const r = await c.api<Volume>('POST', `/v1/volumes/${id}/actions`, { action: 'attach', server });
  if (r.status !== 202) throw new Error(`attach volume ${id} to ${server}: ${r.status} ${show(r.body)}`);
  const { ms, v } = await untilVolume(c, id, 'in-use', t0);
  return { ms, device: v.attachments[0]?.device ?? null };
}

async function detach(c: CloudProcess, id: string): Promise<number> {
  const t0 = performance.now();
  const r = await c.api<Volume>('POST', `/v1/volumes/${id}/actions`, { action: 'detach' });
  if (r.status !== 202) throw new Error(`detach volume ${id}: ${r.status} ${show(r.body)}`);
  return (await untilVolume(c, id, 'available', t0)).ms;
}

async function deleteVolume(c: CloudProcess, id: string): Promise<number> {
  const t0 = performance.now();
  const r = await c.api('DELETE', `/v1/volumes/${id}`);
  if (r.status !== 202 && r.status !== 204) throw new Error(`delete volume ${id}: ${r.status} ${show(r.body)}`);
  const ms = await untilVolumeGone(c, id, t0);
  made.volumes.delete(id);
  return ms;
}

// ---- the VM ----

async function createServer(c: CloudProcess, name: string): Promise<Server> {
  const r = await c.api<Server>('POST', '/v1/servers', { name, flavor: 'm1.tiny', image: 'tinyvm', driver: 'qemu', networks: ['none'] });
  if (r.status !== 202) throw new Error(`create server ${name}: ${r.status} ${show(r.body)}`);
  made.servers.add(r.body.id);
  const t0 = performance.now();
  for (;;) {
    const g = await c.api<Server>('GET', `/v1/servers/${r.body.id}`);
    if (g.status === 200 && g.body.status === 'ACTIVE') break;
    if (g.status === 200 && g.body.status === 'ERROR') throw new Error(`server ${name} went to ERROR: ${show(g.body.fault)}`);
    if (performance.now() - t0 > 300_000) throw new Error(`server ${name} not ACTIVE within 300 s: ${g.status} ${show(g.body)}`);
    await sleep(50);
  }
  const log = join(c.dataDir, 'agent', 'servers', r.body.id, 'console.log');
  for (;;) {
    let text = '';
    try { text = readFileSync(log, 'utf8'); } catch { /* not yet */ }
    if (text.includes(READY)) break;
    if (performance.now() - t0 > 300_000) throw new Error(`no "${READY}" on the console of ${name} within 300 s; its end:\n${text.slice(-1500)}`);
    await sleep(50);
  }
  return r.body;
}

async function removeServer(c: CloudProcess, id: string): Promise<void> {
  await c.api('DELETE', `/v1/servers/${id}`);
  const t0 = Date.now();
  while ((await c.api('GET', `/v1/servers/${id}`)).status !== 404) {
    if (Date.now() - t0 > 120_000) throw new Error(`server ${id} not deleted within 120 s`);
    await pause(50);
  }
  made.servers.delete(id);
}

/**
 * The guest's serial console (getty runs a root shell on ttyS0): a command is sent as
 * `\n<cmd>; echo <token>-$?\n` and is done when `<token>-<digits>` comes back (the echo of the
 * command line shows `<token>-$?`, which does not match).
 */
class GuestConsole {
  private buf = '';
  private waiters: (() => void)[] = [];
  private closed = false;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (b: Buffer) => { this.buf += b.toString('latin1'); this.wake(); });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => undefined);
  }

  static open(path: string): Promise<GuestConsole> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new GuestConsole(s)));
      s.once('error', (e) => reject(new Error(`cannot connect to the VM's console ${path}: ${e.message}`)));
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Runs `cmd`; its output (with the echoed command line), exit code, and host-timed milliseconds. */
  async run(cmd: string, timeoutMs = 600_000): Promise<{ code: number; out: string; ms: number }> {
    const token = `YBV${randomBytes(4).toString('hex')}`;
    const re = new RegExp(`${token}-(\\d+)`);
    const from = this.buf.length;
    debug(`guest$ ${cmd}`);
    const t0 = performance.now();
    this.sock.write(`\n${cmd}; echo ${token}-$?\n`);
    for (;;) {
      const m = re.exec(this.buf.slice(from));
      if (m) {
        const ms = performance.now() - t0;
        const out = this.buf.slice(from, from + m.index).replace(/\r/g, '');
        debug(`guest: exit ${m[1]} in ${ms.toFixed(0)} ms: ${out.trim().split('\n').slice(-4).join(' | ')}`);
        return { code: Number(m[1]), out, ms };
      }
      if (this.closed) throw new Error(`the VM's console closed during \`${cmd}\`; it showed: ${this.buf.slice(from).slice(-1000)}`);
      const left = timeoutMs - (performance.now() - t0);
      if (left <= 0) throw new Error(`\`${cmd}\` did not finish in the guest within ${timeoutMs} ms; the console showed: ${this.buf.slice(from).slice(-1000)}`);
      await interruptible(new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 1000));
        this.waiters.push(() => { clearTimeout(timer); r(); });
      }));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

// ---- dd ----

interface DdRun { bytes: number; seconds: number; mbps: number; timed_by: 'dd' | 'host clock'; outside_ms: number; overhead_ms: number; dd_out: string }

/**
 * The figure of one dd: the bytes and seconds dd printed when it printed them (coreutils, and
 * busybox built with its third status line), else the bytes from "N+M records" × the block size
 * and the seconds timed from outside (the host's clock), less `overheadMs`: the median time the
 * same way of a command that does nothing (the console round trip, or spawning a process).
 */
function ddFigure(out: string, outsideMs: number, blockBytes: number, overheadMs: number): DdRun {
  const text = out.trim();
  const full = /(\d+) bytes\b[^\n]*?copied,\s*([\d.]+)\s*s/.exec(text);
  if (full) {
    const bytes = Number(full[1]);
    const seconds = Number(full[2]);
    if (seconds > 0) return { bytes, seconds, mbps: bytes / 1e6 / seconds, timed_by: 'dd', outside_ms: outsideMs, overhead_ms: 0, dd_out: text.slice(-300) };
  }
  const recs = /(\d+)\+(\d+) records out/.exec(text);
  if (!recs) throw new Error(`no "records out" in dd's output: ${text.slice(-500)}`);
  if (Number(recs[2]) !== 0) throw new Error(`dd wrote partial records: ${text.slice(-500)}`);
  const bytes = Number(recs[1]) * blockBytes;
  // Never less than half of what was timed: the overhead is a median, and one run may beat it.
  const seconds = Math.max(outsideMs / 2, outsideMs - overheadMs) / 1000;
  return { bytes, seconds, mbps: bytes / 1e6 / seconds, timed_by: 'host clock', outside_ms: outsideMs, overhead_ms: overheadMs, dd_out: text.slice(-300) };
}

/** The busybox the guest is made of (tinyvm copies the host's static one), so both sides run the same dd. */
function hostDd(): { bin: string; args: string[]; name: string } {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return { bin: p, args: ['dd'], name: `${p} dd` };
  return { bin: 'dd', args: [], name: 'coreutils dd' };
}

function runHost(bin: string, args: string[], timeoutMs = 600_000): Promise<{ code: number; out: string; ms: number }> {
  const t0 = performance.now();
  return interruptible(new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const ms = performance.now() - t0;
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}${err && code === 1 && !stderr ? err.message : ''}`, ms });
    });
  }));
}

// ---- the run ----

const made = { servers: new Set<string>(), volumes: new Set<string>() };
const dir = mkdtempSync(join(tmpdir(), 'yun-bench-vol-'));
let c: CloudProcess | undefined;
let con: GuestConsole | undefined;
const results: Record<string, unknown> = { at: new Date().toISOString(), rounds: ROUNDS, dd: { mib: DD_MIB, block: '1M', repeats: DD_REPEATS } };
try {
  const tiny = await buildTinyVm();
  c = await startCloudProcess(join(dir, 'cloud'), ['--dns-port', '0', '--dataplane-port', '0']);
  const env = { ...process.env, YUN_URL: c.url, YUN_CACERT: join(c.dataDir, 'pki', 'ca.crt'), YUN_TOKEN: c.token, YUN_CONFIG_DIR: join(dir, 'cli') };
  execFileSync(process.execPath, [YUN_BIN, 'image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--name', 'tinyvm', tiny.disk], { env, stdio: 'pipe' });
  const node = (await c.api<{ items: { drivers: Record<string, { available: boolean; attributes?: Record<string, string> }> }[] }>('GET', '/v1/nodes')).body.items[0]!;
  const qemu = node.drivers.qemu;
  if (!qemu?.available) throw new Error(`the qemu driver is not available: ${JSON.stringify(qemu)}`);
  const accel = qemu.attributes?.accel ?? 'tcg';
  results.accel = accel;
  results.kvm = qemu.attributes?.kvm;
  results.qemu = qemu.attributes?.qemu;

  debug('creating the VM');
  const vm = await createServer(c, 'vb-vm');
  results.server_id = vm.id;
  debug(`VM ${vm.id} is ACTIVE and ready`);

  // 1. The control path.
  const creates: number[] = [];
  const attaches: number[] = [];
  const detaches: number[] = [];
  const deletes: number[] = [];
  const devices = new Set<string>();
  for (let i = 0; i < ROUNDS; i++) {
    const v = await createVolume(c, `vb-${i}`, 1);
    creates.push(v.ms);
    const a = await attach(c, v.id, vm.id);
    attaches.push(a.ms);
    devices.add(a.device ?? '(none reported)');
    detaches.push(await detach(c, v.id));
    deletes.push(await deleteVolume(c, v.id));
    debug(`round ${i}: create ${creates[i]!.toFixed(0)} attach ${attaches[i]!.toFixed(0)} detach ${detaches[i]!.toFixed(0)} delete ${deletes[i]!.toFixed(0)} ms`);
  }
  const stats = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return { p50_ms: pct(s, 50), p99_ms: pct(s, 99), samples: xs }; };
  results.control = { create: stats(creates), attach: stats(attaches), detach: stats(detaches), delete: stats(deletes), devices: [...devices] };

  // 2. Sequential throughput: the guest on an attached volume, then the host on a file of the same kind.
  const tv = await createVolume(c, 'vb-dd', 1);
  const ta = await attach(c, tv.id, vm.id);
  const dev = ta.device ?? '/dev/sda';
  con = await GuestConsole.open(join(c.dataDir, 'agent', 'servers', vm.id, 'console.sock'));
  await con.run('true', 30_000); // a fresh prompt, whatever was typed before
  // The guest's kernel sees a hot-plugged SCSI disk a moment after QEMU adds it.
  const seen = await con.run(`i=0; while [ ! -b ${dev} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -b ${dev} ]`, 60_000);
  if (seen.code !== 0) {
    const ls = await con.run('ls /sys/block; cat /proc/partitions', 30_000);
    throw new Error(`the guest has no ${dev} (reported device of volume ${tv.id}) 10 s after it became in-use; /sys/block and /proc/partitions:\n${ls.out.trim()}`);
  }
  // What the console adds to a command: a no-op's round trip (median of 7), taken off dd's time.
  const noop: number[] = [];
  for (let i = 0; i < 7; i++) noop.push((await con.run('true', 30_000)).ms);
  const guestOverhead = median(noop);
  const guest = { write: [] as DdRun[], read: [] as DdRun[] };
  const ddW = `dd if=/dev/zero of=${dev} bs=1M count=${DD_MIB} oflag=direct`;
  const ddR = `dd if=${dev} of=/dev/null bs=1M count=${DD_MIB} iflag=direct`;
  for (let i = 0; i < DD_REPEATS; i++) {
    for (const [kind, cmd] of [['write', ddW], ['read', ddR]] as const) {
      const r = await con.run(cmd);
      if (r.code !== 0) throw new Error(`in the guest, \`${cmd}\` exited ${r.code}: ${r.out.trim().slice(-800)}`);
      guest[kind].push(ddFigure(r.out, r.ms, 1024 * 1024, guestOverhead));
    }
  }
  con.close();
  con = undefined;
  await detach(c, tv.id);
  await deleteVolume(c, tv.id);

  const hd = hostDd();
  const hostFile = join(dir, 'host-volume', 'disk.raw');
  mkdirSync(join(dir, 'host-volume'));
  execFileSync('truncate', ['-s', '1G', hostFile]);
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'bench', '-E', 'nodiscard', hostFile], { stdio: 'pipe' });
  const hostNoop: number[] = [];
  for (let i = 0; i < 7; i++) hostNoop.push((await runHost(hd.bin, hd.args.length ? ['true'] : ['--version'])).ms);
  const hostOverhead = median(hostNoop);
  const host = { write: [] as DdRun[], read: [] as DdRun[], read_cached: [] as DdRun[] };
  const hostArgs = {
    write: [...hd.args, 'if=/dev/zero', `of=${hostFile}`, 'bs=1M', `count=${DD_MIB}`, 'oflag=direct', 'conv=notrunc'],
    read: [...hd.args, `if=${hostFile}`, 'of=/dev/null', 'bs=1M', `count=${DD_MIB}`, 'iflag=direct'],
    read_cached: [...hd.args, `if=${hostFile}`, 'of=/dev/null', 'bs=1M', `count=${DD_MIB}`],
  };
  for (let i = 0; i < DD_REPEATS; i++) {
    for (const kind of ['write', 'read', 'read_cached'] as const) {
      const r = await runHost(hd.bin, hostArgs[kind]);
      if (r.code !== 0) throw new Error(`on the host, \`${hd.name} ${hostArgs[kind].slice(hd.args.length).join(' ')}\` exited ${r.code}: ${r.out.trim().slice(-800)}`);
      host[kind].push(ddFigure(r.out, r.ms, 1024 * 1024, hostOverhead));
    }
  }
  const med = (xs: DdRun[]) => median(xs.map((x) => x.mbps));
  const g = { write: med(guest.write), read: med(guest.read) };
  const h = { write: med(host.write), read: med(host.read), read_cached: med(host.read_cached) };
  results.throughput = {
    guest_device: dev, host_file_fs: 'ext4 in a sparse 1 GiB raw file, on the same file system as the volumes', host_dd: hd.name,
    guest_write_mbps: g.write, guest_read_mbps: g.read, host_write_mbps: h.write, host_read_mbps: h.read, host_read_page_cache_mbps: h.read_cached,
    ratio_write: g.write / h.write, ratio_read: g.read / h.read,
    guest_noop_round_trip_ms: guestOverhead, host_noop_spawn_ms: hostOverhead,
    guest, host,
  };

  // 3. The report.
  const f = (ms: number) => `${ms.toFixed(0)} ms`;
  const mb = (x: number) => `${x.toFixed(1)} MB/s`;
  const by = (xs: DdRun[]) => xs[0]?.timed_by ?? '';
  console.log(`\nVolumes (real yun up; 1 GiB blank volumes, one tinyvm VM m1.tiny; ${ROUNDS} rounds; ${POLL_MS} ms polls; ${accel.toUpperCase()} for the VM)`);
  console.log(row('figure', 'value', 'target', undefined));
  for (const [name, xs] of [['create (POST → available)', creates], ['attach to the VM (→ in-use)', attaches], ['detach (→ available)', detaches], ['delete (→ 404)', deletes]] as const) {
    const s = [...xs].sort((a, b) => a - b);
    console.log(row(`${name}: p50`, f(pct(s, 50)), '', undefined));
    console.log(row(`${name}: p99`, f(pct(s, 99)), '', undefined));
  }
  console.log(`\nSequential throughput, dd bs=1M count=${DD_MIB} with O_DIRECT, median of ${DD_REPEATS} (guest: ${dev}, busybox dd, timed by ${by(guest.write)}; host: ${hd.name}, timed by ${by(host.write)})`);
  if (by(guest.write) === 'host clock') console.log(`  (busybox dd prints no rate: each dd is timed from the host, less a no-op's median time the same way: ${f(guestOverhead)} over the guest's console, ${f(hostOverhead)} to spawn on the host)`);
  console.log(row('guest write (volume via virtio-scsi)', mb(g.write), '', undefined));
  console.log(row('host write (same kind of file)', mb(h.write), '', undefined));
  console.log(row('guest / host, write', `${(g.write / h.write).toFixed(3)}×`, '', undefined));
  console.log(row('guest read (volume via virtio-scsi)', mb(g.read), '', undefined));
  console.log(row('host read (same kind of file, O_DIRECT)', mb(h.read), '', undefined));
  console.log(row('guest / host, read', `${(g.read / h.read).toFixed(3)}×`, '', undefined));
  console.log(row('host read from the page cache (no O_DIRECT)', mb(h.read_cached), '', undefined));
  console.log(`  notes: QEMU opens the volume with the host's page cache (blockdev file driver, cache.direct off), so the guest's`);
  console.log(`  O_DIRECT bypasses only the guest's cache: its reads may be served from the host's page cache.`);
  if (accel !== 'kvm') {
    console.log(`  The VM runs under ${accel.toUpperCase()} (software emulation, no KVM: ${qemu.attributes?.kvm ?? 'not probed'}):`);
    console.log('  the guest\'s CPU and its virtio-scsi driver are emulated, so the guest figures include that cost (QEMU\'s I/O itself runs natively).');
  }
} catch (e) {
  console.error(`benchmark failed: ${(e as Error).stack ?? String(e)}`);
  results.error = (e as Error).message ?? String(e);
  process.exitCode = 1;
} finally {
  con?.close();
  if (c) {
    const cc = c;
    // Volumes first (detached, then deleted), then the server: everything this run made, and
    // anything else in this throwaway cloud.
    const listed = (await cc.api<{ items?: Volume[] }>('GET', '/v1/volumes?all_projects=true').catch(() => ({ body: { items: [] as Volume[] } }))).body.items ?? [];
    const vols = new Set([...made.volumes, ...listed.map((v) => v.id)]);
    for (const id of vols) {
      try {
        const t0 = performance.now();
        for (;;) {
          const r = await cc.api<Volume>('GET', `/v1/volumes/${id}`);
          if (r.status === 404) break;
          const st = r.body.status;
          if (st === 'in-use') await cc.api('POST', `/v1/volumes/${id}/actions`, { action: 'detach' });
          else if (['available', 'error', 'error_extending', 'error_deleting'].includes(st)) await cc.api('DELETE', `/v1/volumes/${id}`);
          if (performance.now() - t0 > 120_000) throw new Error(`still ${st} after 120 s`);
          await pause(100);
        }
      } catch (e) {
        console.error(`cleanup: could not delete volume ${id}: ${(e as Error).message}`);
      }
    }
    const servers = (await cc.api<{ items?: { id: string }[] }>('GET', '/v1/servers?all_projects=true').catch(() => ({ body: { items: [] as { id: string }[] } }))).body.items ?? [];
    for (const id of new Set([...made.servers, ...servers.map((s) => s.id)])) {
      await removeServer(cc, id).catch((e) => console.error(`cleanup: could not delete server ${id}: ${(e as Error).message}`));
    }
  }
  await c?.stop().catch(() => undefined);
  try { rmSync(dir, { recursive: true, force: true }); } catch (e) { console.error(`could not remove ${dir}: ${(e as Error).message}`); }
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'volumes.json'), JSON.stringify(results, null, 2));
console.log(`\nresults: ${join(ROOT, 'bench', 'results', 'volumes.json')}`);
