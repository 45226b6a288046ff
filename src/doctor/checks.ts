import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { promisify } from 'node:util';
import { proxyCaptures, readProxyEnv } from '../util/proxy.js';
import { formatSize } from '../util/size.js';

const run = promisify(execFile);

export type CheckStatus = 'pass' | 'warn' | 'fail';

/** One finding of `yun doctor`: what, its status, the detail, and how to fix it (when not pass). */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
  /** Features this check's failure breaks (the scheduler keeps tasks that need them away). */
  breaks?: string[];
}

async function has(cmd: string, args: string[] = ['--version']): Promise<string | undefined> {
  try {
    const r = await run(cmd, args, { timeout: 5000 });
    return (r.stdout || r.stderr).trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

/** Whether a tool runs at all (some print their version and exit non-zero, some need an argument). */
async function onPath(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args, { timeout: 5000 });
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code !== 'ENOENT';
  }
}

function kernelModule(name: string): boolean {
  if (existsSync(`/sys/module/${name}`)) return true;
  const dir = `/lib/modules/${release()}`;
  try {
    return readFileSync(`${dir}/modules.builtin`, 'utf8').includes(`/${name}.ko`) || readFileSync(`${dir}/modules.dep`, 'utf8').includes(`/${name}.ko`);
  } catch {
    return false;
  }
}

export function cgroupLayout(root = '/sys/fs/cgroup'): { mode: 'v1' | 'v2' | 'hybrid' | 'none'; controllers: string[] } {
  if (existsSync(`${root}/cgroup.controllers`)) {
    return { mode: 'v2', controllers: readFileSync(`${root}/cgroup.controllers`, 'utf8').trim().split(/\s+/).filter(Boolean) };
  }
  let entries: string[] = [];
  try { entries = readdirSync(root); } catch { return { mode: 'none', controllers: [] }; }
  const v1 = ['memory', 'cpu', 'pids', 'freezer', 'cpuacct', 'cpuset', 'blkio', 'devices'].filter((c) => entries.includes(c));
  if (v1.length === 0) return { mode: 'none', controllers: [] };
  return { mode: entries.includes('unified') ? 'hybrid' : 'v1', controllers: v1 };
}

/** Checks of this node, run by its agent (and by `yun doctor --local`). */
export async function localChecks(opts: { dataDir: string; clusterHosts: string[]; isRoot?: boolean; skewMs?: number | null }): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const root = opts.isRoot ?? process.getuid?.() === 0;

  const ns = ['pid', 'net', 'mnt', 'uts', 'ipc'].filter((n) => !existsSync(`/proc/self/ns/${n}`));
  out.push(ns.length === 0
    ? { name: 'namespaces', status: 'pass', detail: 'pid, net, mnt, uts, ipc namespaces available' }
    : { name: 'namespaces', status: 'fail', detail: `missing namespaces: ${ns.join(', ')}`, fix: 'Use a kernel built with CONFIG_NAMESPACES and the missing namespace options.', breaks: ['oci'] });

  const cg = cgroupLayout();
  const needed = ['memory', 'cpu', 'pids'].filter((c) => !cg.controllers.includes(c));
  if (cg.mode === 'none') out.push({ name: 'cgroups', status: 'warn', detail: 'no cgroup file system found: task limits cannot be enforced', fix: 'Mount cgroup2 at /sys/fs/cgroup (or the v1 controllers).' });
  else if (needed.length) out.push({ name: 'cgroups', status: 'warn', detail: `cgroup ${cg.mode}: controllers ${needed.join(', ')} missing; those limits cannot be enforced`, fix: 'Enable the controllers (cgroup v2: in cgroup.subtree_control of the parent).' });
  else out.push({ name: 'cgroups', status: root ? 'pass' : 'warn', detail: `cgroup ${cg.mode} (${cg.controllers.join(', ')})${root ? '' : '; not root, so limits are not applied'}`, ...(root ? {} : { fix: 'Run the agent as root to enforce memory, CPU and pids limits.' }) });

  const fs = readFileSync('/proc/filesystems', 'utf8');
  const overlay = fs.includes('overlay') || kernelModule('overlay');
  out.push(overlay
    ? { name: 'overlayfs', status: 'pass', detail: 'overlay file system available' }
    : { name: 'overlayfs', status: 'fail', detail: 'the kernel has no overlay file system: containers cannot get a root file system', fix: 'Load it (modprobe overlay) or use a kernel with CONFIG_OVERLAY_FS.', breaks: ['oci'] });

  const runc = await has('runc');
  out.push(runc
    ? { name: 'runc', status: 'pass', detail: runc }
    : { name: 'runc', status: 'fail', detail: 'runc not found on PATH: the oci driver (containers from images) is unavailable', fix: 'Install the Debian package runc (apt-get install runc).', breaks: ['oci'] });

  // Volumes: files made and grown with e2fsprogs and qemu-img, mounted into containers with util-linux.
  const tools: [string, string, string[]][] = [
    ['mke2fs', 'e2fsprogs', ['-V']], ['resize2fs', 'e2fsprogs', []], ['e2fsck', 'e2fsprogs', ['-V']], ['qemu-img', 'qemu-utils', ['--version']],
    ['losetup', 'util-linux', ['--version']], ['nsenter', 'util-linux', ['--version']], ['fsfreeze', 'util-linux', ['--version']], ['mount', 'mount', ['--version']],
  ];
  const missing = (await Promise.all(tools.map(async ([cmd, pkg, args]) => ((await onPath(cmd, args)) ? undefined : { cmd, pkg })))).filter((x): x is { cmd: string; pkg: string } => Boolean(x));
  const loop = existsSync('/dev/loop-control') || kernelModule('loop');
  out.push(missing.length === 0 && loop
    ? { name: 'volumes', status: 'pass', detail: `volume tools present (${tools.map((t) => t[0]).join(', ')}); loop devices available` }
    : {
        name: 'volumes', status: 'warn',
        detail: [missing.length ? `missing ${missing.map((m) => m.cmd).join(', ')}: volumes cannot be made, grown or attached on this node` : '', loop ? '' : 'no loop devices: volumes cannot be attached to containers'].filter(Boolean).join('; '),
        fix: [missing.length ? `Install the Debian packages ${[...new Set(missing.map((m) => m.pkg))].join(', ')} (apt-get install …).` : '', loop ? '' : 'Load the loop module (modprobe loop).'].filter(Boolean).join(' '),
      });

  const vxlan = kernelModule('vxlan');
  out.push(vxlan
    ? { name: 'vxlan', status: 'pass', detail: 'vxlan kernel module available' }
    : { name: 'vxlan', status: 'warn', detail: 'no vxlan module: on overlay networks, tasks reach tasks of other nodes only through service VIPs (the portable tunnel), not by address', fix: 'Optional: load the vxlan module (modprobe vxlan) for the kernel data path.' });

  const nft = await has('nft', ['--version']);
  out.push(nft
    ? { name: 'nftables', status: 'pass', detail: nft }
    : { name: 'nftables', status: 'warn', detail: 'nft not found: the nftables fast path is unavailable (the portable proxy path is used)', fix: 'Optional: install the Debian package nftables.' });

  const ct = await has('conntrack', ['--version']);
  out.push(ct
    ? { name: 'conntrack', status: 'pass', detail: `${ct}: the fast path DNATs to tasks on other nodes too` }
    : { name: 'conntrack', status: 'warn', detail: 'conntrack not found: traffic to tasks on other nodes stays on the proxy and tunnel (the kernel fast path needs it to drop connections to a backend that stops answering)', fix: 'Optional: install the Debian package conntrack.' });

  try {
    const st = statfsSync(opts.dataDir);
    const free = Number(st.bavail) * Number(st.bsize);
    const status: CheckStatus = free < 100 * 1024 ** 2 ? 'fail' : free < 1024 ** 3 ? 'warn' : 'pass';
    out.push({ name: 'disk', status, detail: `${formatSize(free)} free on the file system of ${opts.dataDir}`, ...(status !== 'pass' ? { fix: 'Free some space (old images: yun image rm; logs) or move the data directory.' } : {}), ...(status === 'fail' ? { breaks: ['oci', 'docker', 'process'] } : {}) });
  } catch (e) {
    out.push({ name: 'disk', status: 'warn', detail: `cannot read free space of ${opts.dataDir}: ${(e as Error).message}` });
  }

  const env = readProxyEnv();
  const captured = opts.clusterHosts.filter((h) => proxyCaptures(h, env));
  out.push(captured.length === 0
    ? { name: 'proxy', status: 'pass', detail: env.httpProxy || env.httpsProxy ? 'proxy variables set; NO_PROXY covers the cluster\'s addresses' : 'no proxy variables' }
    : { name: 'proxy', status: 'warn', detail: `HTTP(S)_PROXY is set and NO_PROXY does not cover ${captured.join(', ')}: tools that honour these variables would send cluster traffic through the proxy (Yunstack itself never does)`, fix: `Add them to NO_PROXY, e.g. export NO_PROXY=$NO_PROXY,${captured.join(',')}` });

  if (opts.skewMs !== undefined && opts.skewMs !== null) {
    const s = Math.abs(opts.skewMs);
    const status: CheckStatus = s > 30_000 ? 'fail' : s > 1000 ? 'warn' : 'pass';
    out.push({ name: 'clock', status, detail: `clock ${opts.skewMs >= 0 ? 'ahead of' : 'behind'} the manager by ${s} ms`, ...(status !== 'pass' ? { fix: 'Synchronise the clocks (systemd-timesyncd, chrony or ntpd).' } : {}) });
  }
  return out;
}
