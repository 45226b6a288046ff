// Servers end to end (issue 9): devstack's session, for real. A cloud (`yun up`) on a host made of
// a network namespace of the test's own (nothing leaves it), driven with the CLI inside it: the
// five flavors, a real VM from the tinyvm image (qemu; TCG here, KVM where the probe passes) on a
// private network, reached from the host by ping and TCP; its console; suspend, resume, stop and
// start with the root disk kept; a hard reboot; resize with confirm and revert; a flavor too small
// refused; the same lifecycle for a system container (oci, busybox); kill -9 of the cloud while
// servers run, and of a qemu; delete leaving no process, tap, disk or address.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireOrSkip } from './helpers/cloud.js';
import { alive, removeAgentDir, waitFor } from './helpers/agents.js';
import { createLan, lanSupport, type SpawnedProcess, type TestHost, type TestLan } from './helpers/netns.js';
import { buildTinyVm, tinyVmSupport, type TinyVmBuild } from '../src/images/tinyvm/build.js';

const YUN = join(process.cwd(), 'bin', 'yun.js');
const has = (bin: string) => { try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' }); return true; } catch { return false; } };

interface Server {
  id: string; name: string; status: string; vm_state: string; task_state: string | null; power_state: string; driver: string;
  addresses: Record<string, { addr: string; mac: string }[]>; flavor: { name: string; ram_mb: number }; node_id: string;
  fault: { code: string; message: string; details: string } | null; last_exit: { error: string | null } | null;
}

describe('servers: VMs (qemu) and system containers (oci) with their whole lifecycle', { concurrency: false }, () => {
  let lan: TestLan;
  let h1: TestHost;
  let up: SpawnedProcess;
  let dataDir = '';
  let env: NodeJS.ProcessEnv = {};
  let ok = false;
  let why = '';
  let tiny: TinyVmBuild;
  const work = mkdtempSync(join(tmpdir(), 'yun-servers-'));

  const yun = (args: string[], timeoutMs = 120_000) => h1.exec([process.execPath, YUN, ...args], { env: { ...process.env, ...env, NO_COLOR: '1' }, timeoutMs });
  const yunOk = async (args: string[], timeoutMs?: number) => {
    const r = await yun(args, timeoutMs);
    assert.equal(r.code, 0, `yun ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  const show = async (name: string) => JSON.parse((await yunOk(['server', 'show', name, '--json'])).stdout) as Server;
  const consoleLog = async (name: string) => (await yunOk(['server', 'console-log', name])).stdout;
  const addressOf = (s: Server) => Object.values(s.addresses)[0]![0]!.addr;
  const serverDir = (s: Server) => join(dataDir, 'agent', 'servers', s.id);
  const qemuPid = (s: Server) => { try { return Number(readFileSync(join(serverDir(s), 'qemu.pid'), 'utf8').trim()); } catch { return 0; } };
  /** An HTTP GET from inside the host's namespace. */
  const httpGet = (url: string, timeoutMs = 3000) => h1.exec([process.execPath, '-e',
    `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) }).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1); }, (e) => { console.error(String(e.cause ?? e)); process.exit(1); })`], { timeoutMs: timeoutMs + 5000 });
  const userData = (name: string, script: string) => {
    const p = join(work, `${name}.sh`);
    writeFileSync(p, `#!/bin/sh\n${script}\n`);
    return p;
  };
  const startCloud = async () => {
    up = h1.spawn([process.execPath, YUN, 'up', '--data-dir', dataDir, '--listen', `${h1.address}:7443`, '--advertise-addr', h1.address, '--log-level', 'warn']);
    await waitFor('the cloud up', async () => existsSync(join(dataDir, 'admin.env')) && /https:\/\//.test(up.output()), 60_000).catch((e) => { throw new Error(`${(e as Error).message}\n${up.output()}`); });
  };

  before(async () => {
    const lanOk = await lanSupport();
    const missing = [
      process.getuid?.() !== 0 && 'root', !has('qemu-system-x86_64') && 'qemu-system-x86', !has('qemu-img') && 'qemu-utils', !has('runc') && 'runc',
      !existsSync('/bin/busybox') && 'busybox-static', !has('mkfs.vfat') && 'dosfstools', !has('mcopy') && 'mtools', !lanOk.ok && `network namespaces (${lanOk.ok ? '' : lanOk.reason})`,
    ].filter(Boolean);
    const tv = missing.length ? { ok: true as const } : await tinyVmSupport();
    if (!tv.ok) missing.push(tv.reason);
    ok = missing.length === 0;
    why = `needs ${missing.join(', ')}`;
    if (!ok) {
      if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
      return;
    }
    tiny = await buildTinyVm();
    execFileSync(process.execPath, ['scripts/build-busybox-image.mjs', '--no-import'], { stdio: 'pipe' });
    lan = await createLan(1);
    h1 = lan.hosts[0]!;
    dataDir = mkdtempSync(join(tmpdir(), 'yun-servers-cloud-'));
    await startCloud();
    env = {};
    for (const line of readFileSync(join(dataDir, 'admin.env'), 'utf8').split('\n')) {
      const m = /^export (\w+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    env.YUN_CONFIG_DIR = join(work, 'cli');
    await yunOk(['image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--min-ram', '128', '--name', 'tinyvm', tiny.disk]);
    await yunOk(['image', 'import-rootfs', 'build/busybox-rootfs', '--name', 'busybox:latest', '--cmd', 'sh']);
    await yunOk(['network', 'create', 'private']);
  });

  after(async () => {
    if (!lan) return;
    try {
      const servers = JSON.parse((await yun(['server', 'ls', '--json'])).stdout || '[]') as Server[];
      for (const s of servers) await yun(['server', 'rm', '--wait', '--timeout', '60s', s.id]);
    } catch { /* the cloud may be down: what is left is killed below */ }
    // Whatever still runs (a failed test): every qemu of this cloud, by its pid file.
    for (const id of readdirSync(join(dataDir, 'agent', 'servers'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
      const pid = Number(readFileSync(join(dataDir, 'agent', 'servers', id, 'qemu.pid'), 'utf8').trim() || 0);
      if (pid > 1 && alive(pid)) process.kill(pid, 'SIGKILL');
      try { execFileSync('runc', ['--root', '/run/yunstack-runc', 'delete', '-f', id], { stdio: 'ignore' }); } catch { /* not a container */ }
    }
    await up?.stop('SIGTERM', 10_000);
    await lan.cleanup();
    await removeAgentDir(dataDir);
    await removeAgentDir(work);
  });

  it('flavor ls lists the five defaults', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const flavors = JSON.parse((await yunOk(['flavor', 'ls', '--json'])).stdout) as { name: string; vcpus: number; ram_mb: number; disk_gb: number }[];
    assert.deepEqual(flavors.map((f) => [f.name, f.vcpus, f.ram_mb, f.disk_gb]), [
      ['m1.tiny', 1, 512, 1], ['m1.small', 1, 2048, 20], ['m1.medium', 2, 4096, 40], ['m1.large', 4, 8192, 80], ['m1.xlarge', 8, 16384, 160],
    ]);
    const table = (await yunOk(['flavor', 'ls'])).stdout;
    assert.match(table, /m1\.tiny\t1\t512\t1/);
  });

  let vm1: Server;

  it('server create --flavor m1.tiny --image tinyvm --network private --wait vm1: ACTIVE with an address the host reaches (ping, TCP); the console shows the boot and the hostname', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const ud = userData('vm1', [
      'echo "persisted-$(cat /proc/sys/kernel/random/uuid)" > /var/www/marker.txt',
      'i=0; while :; do i=$((i+1)); echo "YUN-TICK $$ $i" > /dev/ttyS0; sleep 0.2; done',
    ].join('\n'));
    const r = await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'tinyvm', '--network', 'private', '--user-data', ud, '--wait', 'vm1']);
    assert.match(r.stderr, /vm1: BUILD/);
    assert.match(r.stderr, /vm1 is ACTIVE/);
    vm1 = await show('vm1');
    assert.equal(vm1.status, 'ACTIVE');
    assert.equal(vm1.driver, 'qemu');
    const addr = addressOf(vm1);
    assert.match(addr, /^10\.\d+\.\d+\.\d+$/);
    await waitFor('the guest ready', async () => (await consoleLog('vm1')).includes('YUN-GUEST ready'), 90_000);
    const log = await consoleLog('vm1');
    assert.match(log, /\[\s+\d+\.\d+\] /, 'the kernel\'s own messages');
    assert.match(log, /YUN-INITRD uptime=/, 'the initramfs');
    assert.match(log, new RegExp(`YUN-GUEST seed instance-id=${vm1.id} hostname=vm1 address=${addr.replace(/\./g, '\\.')}/\\d+`));
    const ping = await h1.exec(['busybox', 'ping', '-c', '3', '-W', '2', addr], { timeoutMs: 20_000 });
    assert.equal(ping.code, 0, `ping ${addr}: ${ping.stdout}${ping.stderr}`);
    assert.match(ping.stdout, /3 packets received/);
    const page = await httpGet(`http://${addr}/`);
    assert.equal(page.code, 0, page.stderr);
    assert.match(page.stdout, /vm1/);
    // Its name resolves in the service DNS of its node.
    const ns = await h1.exec(['busybox', 'nslookup', 'vm1.admin.yun', h1.address], { timeoutMs: 10_000 });
    assert.match(ns.stdout, new RegExp(`Address:\\s+${addr.replace(/\./g, '\\.')}`), ns.stdout + ns.stderr);
    const ls = (await yunOk(['server', 'ls'])).stdout;
    assert.match(ls, new RegExp(`vm1\\tACTIVE\\tprivate=${addr.replace(/\./g, '\\.')}\\ttinyvm:latest\\tm1\\.tiny\\tqemu`));
    const ps = (await yunOk(['node', 'ps', vm1.node_id])).stdout;
    assert.match(ps, /vm1/, 'node ps shows servers beside tasks');
  });

  it('server console: the serial console answers a command; Ctrl-] leaves it', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    // `yun server console` on a pipe (no terminal) inside the host: type a command, read the answer, leave.
    const script = `
      const { spawn } = require('node:child_process');
      const c = spawn(process.execPath, [${JSON.stringify(YUN)}, 'server', 'console', 'vm1'], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (b) => { out += b; if (out.includes('yun-console-42')) c.stdin.write('\\x1d'); });
      setTimeout(() => c.stdin.write('\\necho yun-console-$((40+2))\\n'), 1000);
      setTimeout(() => { console.error('no answer: ' + JSON.stringify(out.slice(-300))); c.kill('SIGKILL'); process.exit(3); }, 20000);
      c.on('exit', (code) => { process.stdout.write(out); process.exit(code ?? 4); });`;
    const r = await h1.exec([process.execPath, '-e', script], { env: { ...process.env, ...env }, timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /yun-console-42/);
  });

  const lastTick = async (name: string) => {
    const ticks = [...(await consoleLog(name)).matchAll(/YUN-TICK (\d+) (\d+)/g)];
    const last = ticks[ticks.length - 1];
    return last ? { pid: Number(last[1]), n: Number(last[2]) } : { pid: 0, n: 0 };
  };

  it('suspend: SUSPENDED, no qemu and no guest clock running; resume: ACTIVE with the same processes', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await waitFor('ticks', async () => (await lastTick('vm1')).n > 3, 30_000);
    const pid = qemuPid(vm1);
    await yunOk(['server', 'suspend', '--wait', 'vm1']);
    assert.equal((await show('vm1')).status, 'SUSPENDED');
    assert.equal(alive(pid), false, 'the VM\'s qemu has ended; its memory is on disk');
    assert.ok(existsSync(join(serverDir(vm1), 'state')));
    const before = await lastTick('vm1');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await lastTick('vm1'), before, 'nothing ticks while suspended');
    await yunOk(['server', 'resume', '--wait', 'vm1']);
    assert.equal((await show('vm1')).status, 'ACTIVE');
    await waitFor('ticks after resume', async () => (await lastTick('vm1')).n > before.n + 2, 30_000);
    const afterResume = await lastTick('vm1');
    assert.equal(afterResume.pid, before.pid, 'the same process ticks');
    const all = [...(await consoleLog('vm1')).matchAll(/YUN-TICK \d+ (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(all.slice(all.indexOf(before.n)).every((n, i, a) => i === 0 || n === a[i - 1]! + 1), 'the count goes on from where it was');
    assert.equal((await consoleLog('vm1')).match(/YUN-GUEST init reached/g)?.length, 1, 'resumed, not booted again');
  });

  it('stop/start keep a file written to the root disk; reboot --hard boots again', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const addr = addressOf(vm1);
    const first = await httpGet(`http://${addr}/marker.txt`);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^persisted-/);
    await yunOk(['server', 'stop', '--wait', 'vm1']);
    const stopped = await show('vm1');
    assert.equal(stopped.status, 'SHUTOFF');
    assert.equal(stopped.power_state, 'shutdown');
    assert.match(await consoleLog('vm1'), /YUN-GUEST shutting down/, 'a graceful power-off (the ACPI power button)');
    await yunOk(['server', 'start', '--wait', 'vm1']);
    await waitFor('the page again', async () => (await httpGet(`http://${addr}/marker.txt`)).code === 0, 90_000);
    assert.equal((await httpGet(`http://${addr}/marker.txt`)).stdout, first.stdout, 'the file survived stop and start');
    assert.match(await consoleLog('vm1'), /user-data skipped \(already run for instance/);
    const boots = (await consoleLog('vm1')).match(/YUN-GUEST init reached/g)!.length;
    await yunOk(['server', 'reboot', '--hard', '--wait', 'vm1']);
    await waitFor('a new boot', async () => ((await consoleLog('vm1')).match(/YUN-GUEST init reached/g)?.length ?? 0) > boots, 90_000);
    await waitFor('the page after the hard reboot', async () => (await httpGet(`http://${addr}/marker.txt`)).stdout === first.stdout, 90_000);
  });

  it('resize m1.tiny → m1.small: VERIFY_RESIZE, then confirm (the VM has the new RAM); a flavor too small for the image is refused before anything is made', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(['server', 'resize', '--flavor', 'm1.small', '--wait', 'vm1']);
    let s = await show('vm1');
    assert.equal(s.status, 'VERIFY_RESIZE');
    assert.equal(s.flavor.name, 'm1.small');
    const cmd = readFileSync(`/proc/${qemuPid(s)}/cmdline`, 'utf8').split('\0');
    assert.equal(cmd[cmd.indexOf('-m') + 1], '2048', 'the VM runs with the new flavor\'s RAM');
    await yunOk(['server', 'resize-confirm', '--wait', 'vm1']);
    s = await show('vm1');
    assert.equal(s.status, 'ACTIVE');
    assert.equal(s.flavor.name, 'm1.small');
    // An image that needs a 2 GiB disk does not fit m1.tiny (1 GiB).
    await yunOk(['image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--min-disk', '2', '--name', 'tinyvm-big', tiny.disk]);
    const r = await yun(['server', 'create', '--flavor', 'm1.tiny', '--image', 'tinyvm-big', '--network', 'private', 'toosmall']);
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /YUN_FLAVOR_TOO_SMALL/);
    assert.match(r.stderr, /m1\.tiny's root disk \(1 GiB\) is smaller than image tinyvm-big:latest needs \(2GiB\)/);
    assert.equal((await yun(['server', 'show', 'toosmall'])).code, 5, 'nothing was created');
  });

  let c1: Server;

  it('--driver oci: a system container from busybox; stop/start keep its root disk, suspend is a freeze, resize and revert', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const ud = userData('c1', 'echo kept > /root/marker; i=0; while :; do i=$((i+1)); echo "YUN-TICK $$ $i"; sleep 0.2; done');
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox', '--driver', 'oci', '--network', 'private', '--user-data', ud, '--wait', 'c1']);
    c1 = await show('c1');
    assert.equal(c1.status, 'ACTIVE');
    assert.equal(c1.driver, 'oci');
    const ping = await h1.exec(['busybox', 'ping', '-c', '2', '-W', '2', addressOf(c1)], { timeoutMs: 20_000 });
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    await waitFor('ticks', async () => (await lastTick('c1')).n > 3, 30_000);
    await yunOk(['server', 'suspend', '--wait', 'c1']);
    assert.equal((await show('c1')).status, 'SUSPENDED');
    const frozen = execFileSync('runc', ['--root', '/run/yunstack-runc', 'state', c1.id], { encoding: 'utf8' });
    assert.match(frozen, /"status": "paused"/, 'suspend freezes the container');
    const at = await lastTick('c1');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await lastTick('c1'), at);
    await yunOk(['server', 'resume', '--wait', 'c1']);
    await waitFor('ticks after resume', async () => (await lastTick('c1')).n > at.n + 2, 10_000);
    assert.equal((await lastTick('c1')).pid, at.pid, 'the same processes');
    await yunOk(['server', 'stop', '--wait', 'c1']);
    assert.equal((await show('c1')).status, 'SHUTOFF');
    await yunOk(['server', 'start', '--wait', 'c1']);
    await waitFor('the second boot', async () => /user-data skipped/.test(await consoleLog('c1')), 20_000);
    assert.equal(readFileSync(join(serverDir(c1), 'upper', 'root', 'marker'), 'utf8'), 'kept\n', 'the root disk (the upper layer) is kept');
    await yunOk(['server', 'resize', '--flavor', 'm1.small', '--wait', 'c1']);
    assert.equal((await show('c1')).status, 'VERIFY_RESIZE');
    await yunOk(['server', 'resize-revert', '--wait', 'c1']);
    const reverted = await show('c1');
    assert.equal(reverted.status, 'ACTIVE');
    assert.equal(reverted.flavor.name, 'm1.tiny');
  });

  it('kill -9 of the cloud while servers run: they keep running, and the restarted cloud reports them ACTIVE; kill -9 of a qemu: SHUTOFF, with how it ended', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const pid = qemuPid(await show('vm1'));
    assert.ok(alive(pid));
    process.kill(up.pid, 'SIGKILL');
    await up.exited;
    assert.ok(alive(pid), 'the VM outlives its agent');
    await startCloud();
    await waitFor('the servers ACTIVE again', async () => (await show('vm1')).status === 'ACTIVE' && (await show('c1')).status === 'ACTIVE', 30_000);
    assert.equal(qemuPid(await show('vm1')), pid, 'the same qemu (reattached, not restarted)');
    process.kill(pid, 'SIGKILL');
    const s = await waitFor('SHUTOFF', async () => { const x = await show('vm1'); return x.status === 'SHUTOFF' ? x : undefined; }, 20_000);
    assert.match(s.last_exit?.error ?? '', /SIGKILL/, JSON.stringify(s.last_exit));
    const events = (await yunOk(['server', 'events', 'vm1'])).stdout;
    assert.match(events, /crashed/);
  });

  it('rm leaves no qemu, container, tap, disk or address', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(['server', 'start', '--wait', 'vm1']);
    const vm = await show('vm1');
    const pid = qemuPid(vm);
    const taps = (await h1.exec(['ip', '-o', 'link', 'show', 'type', 'tun'])).stdout;
    assert.match(taps, /yt[0-9a-f]{10}0/, 'the VM has a tap');
    const addr = addressOf(vm);
    await yunOk(['server', 'rm', '--wait', 'vm1', 'c1']);
    assert.equal((await yun(['server', 'show', 'vm1'])).code, 5);
    assert.equal(alive(pid), false, 'no qemu');
    assert.doesNotMatch((await h1.exec(['ip', '-o', 'link', 'show', 'type', 'tun'])).stdout, /yt[0-9a-f]{10}/, 'no tap');
    assert.equal(existsSync(serverDir(vm)), false, 'no disk, seed or state');
    assert.equal(existsSync(serverDir(c1)), false);
    assert.throws(() => execFileSync('runc', ['--root', '/run/yunstack-runc', 'state', c1.id], { stdio: 'pipe' }), 'no container');
    // The address is free again: the next server on the network gets it.
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox', '--network', 'private', '--wait', 'again']);
    const again = await show('again');
    assert.ok([addr, addressOf(c1)].includes(addressOf(again)), `a freed address is reused (${addressOf(again)})`);
    await yunOk(['server', 'rm', '--wait', 'again']);
  });
});
