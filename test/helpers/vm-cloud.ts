// A one-node cloud for VM and system-container tests: `yun up` inside a network namespace of the
// test's own (nothing leaves it), the tinyvm and busybox images imported, the CLI driven inside the
// namespace, a VM's serial console scripted, and everything the cloud made (qemus, containers,
// mounts, the namespace) cleaned up even after a failed test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, removeAgentDir, waitFor } from './agents.js';
import { createLan, lanSupport, type ExecResult, type SpawnedProcess, type TestHost, type TestLan } from './netns.js';
import { netnsName } from '../../src/drivers/oci/oci-driver.js';
import { buildTinyVm, tinyVmSupport, type TinyVmBuild } from '../../src/images/tinyvm/build.js';

const YUN = join(process.cwd(), 'bin', 'yun.js');
const has = (bin: string) => { try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' }); return true; } catch { return false; } };

/** Read a file from an ext4 volume's raw file on the node (the volume not mounted anywhere). */
export const debugfsCat = (file: string, path: string) => execFileSync('debugfs', ['-R', `cat ${path}`, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** What the machine lacks for these tests ([] when nothing). */
export async function vmCloudMissing(extra: [string, string][] = []): Promise<string[]> {
  const lanOk = await lanSupport();
  const missing = [
    process.getuid?.() !== 0 && 'root', !has('qemu-system-x86_64') && 'qemu-system-x86', !has('qemu-img') && 'qemu-utils', !has('runc') && 'runc',
    !existsSync('/bin/busybox') && 'busybox-static', !has('mkfs.vfat') && 'dosfstools', !lanOk.ok && `network namespaces (${lanOk.ok ? '' : lanOk.reason})`,
    ...extra.filter(([bin]) => !has(bin)).map(([, pkg]) => pkg),
  ].filter((x): x is string => typeof x === 'string');
  if (missing.length === 0) {
    const tv = await tinyVmSupport();
    if (!tv.ok) missing.push(tv.reason);
  }
  return missing;
}

/**
 * Whether the tests can run here: `{ ok: false, why }` to skip, and with YUN_REQUIRE_ALL=1 a throw
 * instead (CI must not skip them).
 */
export async function vmCloudSupport(extra: [string, string][] = []): Promise<{ ok: boolean; why: string }> {
  const missing = await vmCloudMissing(extra);
  const why = `needs ${missing.join(', ')}`;
  if (missing.length && process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
  return { ok: missing.length === 0, why };
}

export class VmCloud {
  lan!: TestLan;
  h1!: TestHost;
  up?: SpawnedProcess;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'yun-vmcloud-'));
  readonly work = mkdtempSync(join(tmpdir(), 'yun-vmcloud-work-'));
  env: NodeJS.ProcessEnv = {};
  tiny?: TinyVmBuild;

  constructor(private readonly logName: string) {}

  async start(): Promise<void> {
    const tiny = await buildTinyVm();
    this.tiny = tiny;
    execFileSync(process.execPath, ['scripts/build-busybox-image.mjs', '--no-import'], { stdio: 'pipe' });
    this.lan = await createLan(1);
    this.h1 = this.lan.hosts[0]!;
    await this.startCloud();
    for (const line of readFileSync(join(this.dataDir, 'admin.env'), 'utf8').split('\n')) {
      const m = /^export (\w+)=(.*)$/.exec(line);
      if (m) this.env[m[1]!] = m[2]!;
    }
    this.env.YUN_CONFIG_DIR = join(this.work, 'cli');
    await this.ok(['image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--min-ram', '128', '--name', 'tinyvm', tiny.disk]);
    await this.ok(['image', 'import-rootfs', 'build/busybox-rootfs', '--name', 'busybox:latest', '--cmd', 'sh']);
  }

  /** `yun up` on the data dir (again, after a kill). */
  async startCloud(): Promise<void> {
    this.up = this.h1.spawn([process.execPath, YUN, 'up', '--data-dir', this.dataDir, '--listen', `${this.h1.address}:7443`, '--advertise-addr', this.h1.address, '--log-level', 'warn']);
    const up = this.up;
    await waitFor('the cloud up', async () => existsSync(join(this.dataDir, 'admin.env')) && /https:\/\//.test(up.output()), 60_000).catch((e) => { throw new Error(`${(e as Error).message}\n${up.output()}`); });
  }

  /** kill -9 of the cloud (its manager and its agent). */
  async kill(): Promise<void> {
    process.kill(this.up!.pid, 'SIGKILL');
    await this.up!.exited;
  }

  yun(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return this.h1.exec([process.execPath, YUN, ...args], { env: { ...process.env, ...this.env, NO_COLOR: '1' }, timeoutMs });
  }

  async ok(args: string[], timeoutMs?: number): Promise<ExecResult> {
    const r = await this.yun(args, timeoutMs);
    assert.equal(r.code, 0, `yun ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse((await this.ok([...args, '--json'])).stdout) as T;
  }

  async consoleLog(name: string): Promise<string> {
    return (await this.ok(['server', 'console-log', name])).stdout;
  }

  /** The file of a volume on the node. */
  volumeFile(id: string): string {
    return join(this.dataDir, 'agent', 'volumes', id, 'disk.raw');
  }

  userData(name: string, script: string): string {
    const p = join(this.work, `${name}.sh`);
    writeFileSync(p, `#!/bin/sh\n${script}\n`);
    return p;
  }

  /** Run a shell command on a VM's serial console; its output (up to a marker; it must exit 0). */
  async guest(name: string, cmd: string): Promise<string> {
    const mark = `YUNDONE${Math.random().toString(36).slice(2, 8)}`;
    const script = `
      const { spawn } = require('node:child_process');
      const c = spawn(process.execPath, [${JSON.stringify(YUN)}, 'server', 'console', ${JSON.stringify(name)}], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      const re = new RegExp(${JSON.stringify(mark)} + '-(\\\\d+)');
      c.stdout.on('data', (b) => { out += b; if (re.test(out.split(${JSON.stringify(mark)} + '-$')[1] ?? out)) c.stdin.write('\\x1d'); });
      setTimeout(() => c.stdin.write('\\n' + ${JSON.stringify(cmd)} + '; echo ${mark}-$?\\n'), 700);
      setTimeout(() => { console.error('no answer: ' + JSON.stringify(out.slice(-600))); c.kill('SIGKILL'); process.exit(3); }, 30000);
      c.on('exit', () => { process.stdout.write(out); process.exit(0); });`;
    const r = await this.h1.exec([process.execPath, '-e', script], { env: { ...process.env, ...this.env }, timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const after = r.stdout.slice(r.stdout.indexOf(`${mark}-$?`) + mark.length + 3);
    const m = new RegExp(`([\\s\\S]*?)${mark}-(\\d+)`).exec(after);
    assert.ok(m, `no marker in ${JSON.stringify(r.stdout.slice(-500))}`);
    assert.equal(m[2], '0', `guest command failed: ${cmd}\n${m[1]}`);
    return m[1]!;
  }

  async cleanup(): Promise<void> {
    if (!this.lan) return;
    try {
      for (const s of JSON.parse((await this.yun(['server', 'ls', '--json'])).stdout || '[]') as { id: string }[]) await this.yun(['server', 'rm', '--wait', '--timeout', '60s', s.id]);
    } catch { /* the cloud may be down */ }
    const servers = join(this.dataDir, 'agent', 'servers');
    for (const id of existsSync(servers) ? readdirSync(servers) : []) {
      let pid = 0;
      try { pid = Number(readFileSync(join(servers, id, 'qemu.pid'), 'utf8').trim() || 0); } catch { /* a container */ }
      if (pid > 1 && alive(pid)) process.kill(pid, 'SIGKILL');
      try { execFileSync('runc', ['--root', '/run/yunstack-runc', 'delete', '-f', id], { stdio: 'ignore' }); } catch { /* not a container */ }
      // A container's network namespace, when its cloud died before destroying it.
      try { execFileSync('ip', ['netns', 'delete', netnsName(id)], { stdio: 'ignore' }); } catch { /* none */ }
    }
    await this.up?.stop('SIGTERM', 10_000);
    // Whatever is still mounted under the data dir (a failed test) is unmounted before it is removed.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => !!p && p.startsWith(this.dataDir));
    for (const m of mounts.sort((a, b) => b.length - a.length)) { try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* gone */ } }
    await this.lan.cleanup();
    // The cloud's log outlives the run, for a failure to be looked into.
    try { execFileSync('cp', [join(this.dataDir, 'logs', 'yun.log'), join(tmpdir(), `${this.logName}-last.log`)]); } catch { /* no log */ }
    await removeAgentDir(this.dataDir);
    await removeAgentDir(this.work);
  }
}
