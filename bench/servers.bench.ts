// Server benchmarks of issue 9, on a real `yun up` on this machine:
//  - create → guest init reached, p50/p99 over 20 boots each, for oci (a busybox system container),
//    qemu under TCG, and qemu under KVM where the probe says KVM works (else that row is not run,
//    and the probe's reason is printed). "Guest init reached" is the `YUN-GUEST init reached` line of
//    the server's console, timed by watching the console file on the node (10 ms polls) from just
//    before the create request;
//  - the same guest booted by a bare `qemu-system-x86_64` (no Yunstack): the baseline for the qemu rows;
//  - 10 concurrent creates (qemu): each one's create → init, and the RSS of each qemu once all are up.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildTinyVm, type TinyVmBuild } from '../src/images/tinyvm/build.js';
import { tcgKernelArgs } from '../src/drivers/qemu/tcg.js';
import { ROOT, YUN_BIN, pct, row, startCloudProcess, type CloudProcess } from './lib/cloud-process.js';

const BOOTS = Number(process.env.YUN_BENCH_BOOTS ?? 20);
const CONCURRENT = Number(process.env.YUN_BENCH_CONCURRENT ?? 10);
const MARK = 'YUN-GUEST init reached';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function consoleFile(c: CloudProcess, id: string, driver: string): string {
  return join(c.dataDir, 'agent', 'servers', id, driver === 'qemu' ? 'console.log' : 'stdout.log');
}

async function untilInit(file: string, t0: number, timeoutMs = 120_000): Promise<number> {
  for (;;) {
    try { if (readFileSync(file, 'utf8').includes(MARK)) return performance.now() - t0; } catch { /* not yet */ }
    if (performance.now() - t0 > timeoutMs) throw new Error(`no "${MARK}" in ${file} within ${timeoutMs} ms`);
    await sleep(10);
  }
}

async function create(c: CloudProcess, name: string, image: string, driver: string): Promise<{ id: string; ms: Promise<number> }> {
  const t0 = performance.now();
  const r = await c.api<{ id: string }>('POST', '/v1/servers', { name, flavor: 'm1.tiny', image, driver, networks: ['none'] });
  if (r.status !== 202) throw new Error(`create ${name}: ${JSON.stringify(r.body)}`);
  return { id: r.body.id, ms: untilInit(consoleFile(c, r.body.id, driver), t0) };
}

async function remove(c: CloudProcess, id: string): Promise<void> {
  await c.api('DELETE', `/v1/servers/${id}`);
  const t0 = Date.now();
  while ((await c.api('GET', `/v1/servers/${id}`)).status !== 404) {
    if (Date.now() - t0 > 60_000) throw new Error(`server ${id} not deleted within 60 s`);
    await sleep(50);
  }
}

async function boots(c: CloudProcess, image: string, driver: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + 1; i++) {
    const s = await create(c, `b-${driver}-${i}`, image, driver);
    const ms = await s.ms;
    if (i > 0) out.push(ms); // the first boot brings the image to the node: not a steady-state boot
    await remove(c, s.id);
    if (process.env.YUN_BENCH_DEBUG) console.error(`${driver} boot ${i}: ${ms.toFixed(0)} ms`);
  }
  return out.sort((a, b) => a - b);
}

/** The same guest under a bare qemu: spawn → init line on its serial console. */
async function bareQemu(tiny: TinyVmBuild, dir: string, accel: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const disk = join(dir, `bare-${i}.qcow2`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', tiny.disk, disk]);
    const t0 = performance.now();
    const ms = await new Promise<number>((resolve, reject) => {
      const q = spawn('qemu-system-x86_64', ['-M', 'microvm,acpi=on', '-accel', accel, '-m', '512', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'stdio',
        '-drive', `id=root,file=${disk},format=qcow2,if=none`, '-device', 'virtio-blk-device,drive=root', '-kernel', tiny.kernel, '-initrd', tiny.initrd, '-append', [tiny.cmdline, ...(accel === 'tcg' ? tcgKernelArgs() : [])].join(' ')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let buf = '';
      const timer = setTimeout(() => { q.kill('SIGKILL'); reject(new Error('bare qemu: no init within 120 s')); }, 120_000);
      q.stdout.on('data', (b: Buffer) => {
        buf += b.toString();
        if (buf.includes(MARK)) { clearTimeout(timer); resolve(performance.now() - t0); q.kill('SIGKILL'); }
      });
      q.on('exit', () => { clearTimeout(timer); if (!buf.includes(MARK)) reject(new Error(`bare qemu ended: ${buf.slice(-500)}`)); });
    });
    out.push(ms);
    await sleep(200);
  }
  return out.sort((a, b) => a - b);
}

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const dir = mkdtempSync(join(tmpdir(), 'yun-bench-srv-'));
let c: CloudProcess | undefined;
const results: Record<string, unknown> = { at: new Date().toISOString(), boots: BOOTS, concurrent: CONCURRENT };
try {
  const tiny = await buildTinyVm();
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-busybox-image.mjs'), '--no-import'], { stdio: 'pipe' });
  c = await startCloudProcess(join(dir, 'cloud'), ['--dns-port', '0', '--dataplane-port', '0']);
  const env = { ...process.env, YUN_URL: c.url, YUN_CACERT: join(c.dataDir, 'pki', 'ca.crt'), YUN_TOKEN: c.token, YUN_CONFIG_DIR: join(dir, 'cli') };
  execFileSync(process.execPath, [YUN_BIN, 'image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--name', 'tinyvm', tiny.disk], { env, stdio: 'pipe' });
  execFileSync(process.execPath, [YUN_BIN, 'image', 'import-rootfs', join(ROOT, 'build', 'busybox-rootfs'), '--name', 'busybox:latest', '--cmd', 'sh'], { env, stdio: 'pipe' });
  const node = (await c.api<{ items: { drivers: Record<string, { available: boolean; attributes?: Record<string, string> }> }[] }>('GET', '/v1/nodes')).body.items[0]!;
  const qemu = node.drivers.qemu;
  if (!qemu?.available) throw new Error(`the qemu driver is not available: ${JSON.stringify(qemu)}`);
  const accel = qemu.attributes?.accel ?? 'tcg';

  const oci = await boots(c, 'busybox', 'oci', BOOTS);
  const vm = await boots(c, 'tinyvm', 'qemu', BOOTS);
  const bare = await bareQemu(tiny, dir, accel, 5);

  // Concurrent creates: all at once, each timed from its own request.
  const many = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => create(c!, `many-${i}`, 'tinyvm', 'qemu')));
  const manyMs = (await Promise.all(many.map((s) => s.ms))).sort((a, b) => a - b);
  await sleep(1000);
  const rss = many.map((s) => {
    const pidFile = join(c!.dataDir, 'agent', 'servers', s.id, 'qemu.pid');
    return existsSync(pidFile) ? rssKiB(Number(readFileSync(pidFile, 'utf8').trim())) : 0;
  });
  const rssMiB = rss.reduce((a, b) => a + b, 0) / rss.length / 1024;
  for (const s of many) await remove(c, s.id);

  results.accel = accel;
  results.kvm = qemu.attributes?.kvm;
  results.oci = { p50_ms: pct(oci, 50), p99_ms: pct(oci, 99), samples: oci };
  results[`qemu_${accel}`] = { p50_ms: pct(vm, 50), p99_ms: pct(vm, 99), samples: vm };
  results.bare_qemu = { accel, p50_ms: pct(bare, 50), samples: bare };
  results.concurrent = { n: CONCURRENT, p50_ms: pct(manyMs, 50), p99_ms: pct(manyMs, 99), max_ms: manyMs[manyMs.length - 1], rss_mib_per_vm: rssMiB };

  const f = (ms: number) => `${ms.toFixed(0)} ms`;
  console.log(`\nServers (real yun up, m1.tiny, no network; create → "${MARK}" on the console; ${BOOTS} boots each; ${accel.toUpperCase()} for VMs)`);
  console.log(row('figure', 'value', 'target', undefined));
  console.log(row('oci (busybox system container): p50', f(pct(oci, 50)), '≤ 300 ms', pct(oci, 50) <= 300));
  console.log(row('oci: p99', f(pct(oci, 99)), '', undefined));
  console.log(row(`qemu+${accel.toUpperCase()} microvm (tinyvm): p50`, f(pct(vm, 50)), accel === 'kvm' ? '≤ 1000 ms' : '', accel === 'kvm' ? pct(vm, 50) <= 1000 : undefined));
  console.log(row(`qemu+${accel.toUpperCase()}: p99`, f(pct(vm, 99)), '', undefined));
  console.log(row(`bare qemu+${accel.toUpperCase()}, same guest (baseline): p50`, f(pct(bare, 50)), '', undefined));
  console.log(row('Yunstack qemu boot / bare qemu boot (p50)', `${(pct(vm, 50) / pct(bare, 50)).toFixed(2)}×`, '', undefined));
  if (accel !== 'kvm') console.log(row('qemu+KVM', 'not run', '≤ 1000 ms', undefined), `\n  (${qemu.attributes?.kvm ?? 'KVM not probed'})`);
  console.log(row(`${CONCURRENT} concurrent qemu creates: p50 / p99 / max`, `${f(pct(manyMs, 50))} / ${f(pct(manyMs, 99))}`, '', undefined));
  console.log(row(`qemu RSS per VM (${CONCURRENT} booted, 512 MiB guests)`, `${rssMiB.toFixed(0)} MiB`, '', undefined));
} catch (e) {
  console.error(`benchmark failed: ${(e as Error).stack ?? String(e)}`);
  process.exitCode = 1;
} finally {
  if (c) {
    for (const s of (await c.api<{ items: { id: string }[] }>('GET', '/v1/servers?all_projects=true').catch(() => ({ body: { items: [] } }))).body.items ?? []) await remove(c, s.id).catch(() => undefined);
  }
  await c?.stop().catch(() => undefined);
  try { rmSync(dir, { recursive: true, force: true }); } catch (e) { console.error(`could not remove ${dir}: ${(e as Error).message}`); }
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'servers.json'), JSON.stringify(results, null, 2));
