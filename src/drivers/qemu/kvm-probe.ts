/**
 * Does KVM work here? Not "does /dev/kvm exist": some hosts expose a paravirtual KVM (e.g.
 * `kvm_pvm`) on which QEMU aborts ("failed to set MSR 0x10a") or a stock guest kernel hangs. So the
 * probe boots a real guest with `-accel kvm`: a kernel and a two-line busybox initramfs that prints
 * a marker and powers off. Only that marker within the timeout says yes; anything else is the
 * reason it is no, and VMs run under TCG. The answer is cached per boot of the host (in /run) for
 * this QEMU, host kernel and guest kernel.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cpioArchive } from '../../images/tinyvm/cpio.js';

export interface KvmProbe {
  /** KVM boots a guest here. */
  ok: boolean;
  /** `works (guest booted in N ms)`, or why not. */
  detail: string;
  at: string;
}

const MARKER = 'YUN-KVM-PROBE-OK';
const CACHE_DIR = '/run/yunstack';

async function readable(p: string): Promise<boolean> {
  try {
    await access(p, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Boot `kernel` under KVM once; `busybox` is a static busybox for the probe's init. */
export async function probeKvm(opts: { qemu: string; qemuVersion: string; kernel: string; busybox: string; timeoutMs?: number; cache?: boolean }): Promise<KvmProbe> {
  const at = new Date().toISOString();
  if (!(await readable('/dev/kvm'))) return { ok: false, detail: '/dev/kvm is missing or not accessible (no hardware virtualisation, or the kvm module is not loaded)', at };
  const ks = await stat(opts.kernel).catch(() => undefined);
  if (!ks) return { ok: false, detail: `not probed: the guest kernel ${opts.kernel} is missing`, at };
  const key = createHash('sha256').update(`${opts.qemuVersion}|${release()}|${opts.kernel}|${ks.size}|${ks.mtimeMs}`).digest('hex').slice(0, 16);
  const cacheFile = join(CACHE_DIR, `kvm-probe-${key}.json`);
  if (opts.cache !== false) {
    try {
      return JSON.parse(await readFile(cacheFile, 'utf8')) as KvmProbe;
    } catch { /* not probed yet */ }
  }
  const work = await mkdtemp(join(tmpdir(), 'yun-kvm-probe-'));
  let result: KvmProbe;
  try {
    const init = `#!/bin/busybox sh\n/bin/busybox echo ${MARKER}\n/bin/busybox poweroff -f\n`;
    const initrd = join(work, 'initrd.gz');
    await writeFile(initrd, gzipSync(cpioArchive([
      { type: 'dir', name: 'bin' },
      { type: 'file', name: 'bin/busybox', data: await readFile(opts.busybox), mode: 0o755 },
      { type: 'file', name: 'init', data: init, mode: 0o755 },
      { type: 'dir', name: 'dev' },
      { type: 'char', name: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    ]), { level: 1 }));
    // `-cpu host` first (what KVM guests use); a host that refuses it may still take the default CPU.
    let last = '';
    result = { ok: false, detail: '', at };
    for (const cpu of [['-cpu', 'host'], []]) {
      const r = await bootOnce(opts.qemu, [...cpu, '-kernel', opts.kernel, '-initrd', initrd], opts.timeoutMs ?? 8000);
      if (r.ok) { result = { ok: true, detail: `works (a guest booted in ${r.ms} ms${cpu.length ? '' : ' with the default CPU model'})`, at }; break; }
      last = r.why;
      if (r.hung) break; // a hang costs the whole timeout: do not try again
    }
    if (!result.ok) result = { ok: false, detail: `a guest does not boot under KVM here: ${last}`, at };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  if (opts.cache !== false) {
    await mkdir(CACHE_DIR, { recursive: true }).catch(() => undefined);
    await writeFile(cacheFile, JSON.stringify(result)).catch(() => undefined);
  }
  return result;
}

function bootOnce(qemu: string, args: string[], timeoutMs: number): Promise<{ ok: true; ms: number } | { ok: false; why: string; hung: boolean }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(qemu, ['-M', 'microvm,acpi=on', '-accel', 'kvm', '-m', '128', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'stdio', ...args, '-append', 'console=ttyS0 quiet panic=-1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let settled = false;
    const finish = (v: { ok: true; ms: number } | { ok: false; why: string; hung: boolean }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
      resolve(v);
    };
    const timer = setTimeout(() => finish({ ok: false, why: `the guest printed nothing within ${timeoutMs} ms (it hangs under KVM)`, hung: true }), timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes(MARKER)) finish({ ok: true, ms: Date.now() - t0 });
    });
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    child.on('error', (e) => finish({ ok: false, why: `qemu could not run: ${e.message}`, hung: false }));
    child.on('exit', (code, signal) => {
      const lines = err.trim().split('\n').filter(Boolean);
      const msg = lines.find((l) => /error|failed|Assertion/i.test(l)) ?? lines.at(-1) ?? '';
      finish({ ok: false, why: `qemu ended (${signal ?? `exit ${code}`}) before the guest ran${msg ? `: ${msg.replace(/^qemu-system-x86_64: /, '')}` : ''}`, hung: false });
    });
  });
}
