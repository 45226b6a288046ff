/**
 * Cgroups for the process driver: detection (v2 unified, v1 per-controller hierarchies, or none),
 * one cgroup per task and controller, limits, OOM counters, and removal.
 *
 * Layout (the brief's convention, stable because it is recorded in every task handle):
 *   v1: <root>/<controller>/<cgroup_parent>/<task id>   for controller in memory, cpu, pids
 *   v2: <root>/<cgroup_parent>/<task id>
 * A hybrid machine (v1 controllers plus an empty cgroup2 at <root>/unified) is driven through v1.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError } from '../driver.js';

export type CgroupVersion = 'v1' | 'v2' | 'none';

/** The controllers the process driver uses. */
export const CONTROLLERS = ['memory', 'cpu', 'pids'] as const;
export type Controller = (typeof CONTROLLERS)[number];

export interface CgroupSupport {
  version: CgroupVersion;
  root: string;
  /** Usable controllers (empty when version is `none`). */
  controllers: Controller[];
  /** Why cgroups are not used, when version is `none`. */
  reason?: string;
}

export interface TaskCgroups {
  version: 'v1' | 'v2';
  /** Every cgroup directory of the task (one per controller on v1, one on v2). */
  dirs: string[];
  /** The directory holding the memory controller's files, if the memory controller is used. */
  memory_dir?: string;
}

export interface Limits {
  cpu: number;
  memory_bytes: number;
  pids: number;
}

/** CFS period used for cpu limits (µs). */
export const CPU_PERIOD_US = 100_000;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function writable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Find out which cgroup version (if any) this process can use under `root`. */
export async function detectCgroups(root: string): Promise<CgroupSupport> {
  if (process.platform !== 'linux') return { version: 'none', root, controllers: [], reason: `cgroups exist only on Linux (this is ${process.platform})` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { version: 'none', root, controllers: [], reason: 'not running as root: tasks run without cpu, memory or pids limits' };
  }
  // Unified hierarchy: the root itself is a cgroup2 mount.
  const v2file = join(root, 'cgroup.controllers');
  if (await exists(v2file)) {
    const available = (await readFile(v2file, 'utf8')).split(/\s+/).filter(Boolean);
    const controllers = CONTROLLERS.filter((c) => available.includes(c));
    if (controllers.length === 0) return { version: 'none', root, controllers, reason: `cgroup v2 at ${root} offers none of the memory, cpu and pids controllers` };
    if (!(await writable(root))) return { version: 'none', root, controllers: [], reason: `cgroup v2 at ${root} is not writable (read-only mount?)` };
    return { version: 'v2', root, controllers };
  }
  // v1 (or hybrid): one hierarchy per controller.
  const controllers: Controller[] = [];
  for (const c of CONTROLLERS) {
    if ((await exists(join(root, c, 'cgroup.procs'))) && (await writable(join(root, c)))) controllers.push(c);
  }
  if (controllers.length === 0) return { version: 'none', root, controllers, reason: `no usable cgroup v1 controller (memory, cpu, pids) under ${root} and no cgroup v2 there` };
  return { version: 'v1', root, controllers };
}

/** Split and check a cgroup parent like `yunstack/node-1`: no empty, `.` or `..` parts. */
export function parentParts(cgroupParent: string): string[] {
  const parts = cgroupParent.split('/').filter((p) => p !== '');
  for (const p of parts) {
    if (p === '.' || p === '..') throw new DriverError(`invalid cgroup parent "${cgroupParent}": it must not contain "." or ".." parts`);
  }
  return parts;
}

/** Where the cgroups of task `id` live (without creating anything). */
export function taskCgroupPaths(support: CgroupSupport, cgroupParent: string, id: string): TaskCgroups | undefined {
  if (support.version === 'none') return undefined;
  const parts = parentParts(cgroupParent);
  if (support.version === 'v2') {
    const dir = join(support.root, ...parts, id);
    return { version: 'v2', dirs: [dir], memory_dir: support.controllers.includes('memory') ? dir : undefined };
  }
  const dirs = support.controllers.map((c) => join(support.root, c, ...parts, id));
  const mi = support.controllers.indexOf('memory');
  return { version: 'v1', dirs, memory_dir: mi >= 0 ? dirs[mi] : undefined };
}

function describeError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(err);
}

async function put(file: string, value: string): Promise<void> {
  try {
    await writeFile(file, value);
  } catch (err) {
    throw new DriverError(`could not write "${value}" to ${file} (${describeError(err)})`);
  }
}

/** Create the task's cgroups and apply `limits` (0 = unlimited). Throws a DriverError naming the file on failure. */
export async function createTaskCgroups(support: CgroupSupport, cgroupParent: string, id: string, limits: Limits): Promise<TaskCgroups | undefined> {
  const paths = taskCgroupPaths(support, cgroupParent, id);
  if (!paths) return undefined;
  const need: Array<[Controller, boolean]> = [
    ['memory', limits.memory_bytes > 0],
    ['cpu', limits.cpu > 0],
    ['pids', limits.pids > 0],
  ];
  for (const [c, wanted] of need) {
    if (wanted && !support.controllers.includes(c)) {
      throw new DriverError(`a ${c} limit was asked for, but the ${c} cgroup controller is not available on this node (cgroups ${support.version} under ${support.root})`);
    }
  }
  try {
    if (paths.version === 'v2') await createV2(support, parentParts(cgroupParent), paths.dirs[0]!, limits);
    else await createV1(support, paths, limits);
  } catch (err) {
    // Leave nothing half-made behind.
    await removeCgroups(paths.dirs, 0).catch(() => undefined);
    if (err instanceof DriverError) throw err;
    throw new DriverError(`could not create the task's cgroups (${describeError(err)})`);
  }
  return paths;
}

async function createV1(support: CgroupSupport, paths: TaskCgroups, limits: Limits): Promise<void> {
  for (let i = 0; i < support.controllers.length; i++) {
    const c = support.controllers[i]!;
    const dir = paths.dirs[i]!;
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new DriverError(`could not create cgroup directory ${dir} (${describeError(err)})`);
    }
    if (c === 'memory' && limits.memory_bytes > 0) {
      await put(join(dir, 'memory.limit_in_bytes'), String(limits.memory_bytes));
      // No swap beyond the limit, when the kernel accounts swap (memsw files exist only with swap accounting).
      const memsw = join(dir, 'memory.memsw.limit_in_bytes');
      if ((await exists(memsw)) && (await writable(memsw))) await writeFile(memsw, String(limits.memory_bytes)).catch(() => undefined);
    }
    if (c === 'cpu' && limits.cpu > 0) {
      await put(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      await put(join(dir, 'cpu.cfs_quota_us'), String(cpuQuota(limits.cpu)));
    }
    // One more pid than asked for: the driver's supervisor shim lives in the task's cgroup too.
    if (c === 'pids' && limits.pids > 0) await put(join(dir, 'pids.max'), String(limits.pids + 1));
  }
}

async function createV2(support: CgroupSupport, parts: string[], dir: string, limits: Limits): Promise<void> {
  // Enable the controllers top-down in every ancestor's subtree_control (root … parent).
  const wanted = support.controllers.map((c) => `+${c}`).join(' ');
  let level = support.root;
  const levels = [level];
  for (const p of parts) {
    level = join(level, p);
    levels.push(level);
  }
  for (const l of levels) {
    if (l !== support.root) await mkdir(l, { recursive: true });
    const sc = join(l, 'cgroup.subtree_control');
    const current = (await readFile(sc, 'utf8').catch(() => '')).split(/\s+/);
    if (support.controllers.every((c) => current.includes(c) || current.includes(`+${c}`))) continue;
    await put(sc, wanted);
  }
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new DriverError(`could not create cgroup directory ${dir} (${describeError(err)})`);
  }
  if (limits.memory_bytes > 0) {
    await put(join(dir, 'memory.max'), String(limits.memory_bytes));
    const swap = join(dir, 'memory.swap.max');
    if (await exists(swap)) await writeFile(swap, '0').catch(() => undefined);
  }
  if (limits.cpu > 0) await put(join(dir, 'cpu.max'), `${cpuQuota(limits.cpu)} ${CPU_PERIOD_US}`);
  if (limits.pids > 0) await put(join(dir, 'pids.max'), String(limits.pids + 1));
}

export function cpuQuota(cores: number): number {
  return Math.max(1000, Math.round(cores * CPU_PERIOD_US));
}

/** Put process `pid` into every cgroup of the task. */
export async function joinCgroups(cg: TaskCgroups, pid: number): Promise<void> {
  for (const dir of cg.dirs) await put(join(dir, 'cgroup.procs'), String(pid));
}

/** Every pid in the task's cgroups (live processes only: the kernel lists nothing else). */
export async function cgroupPids(cg: TaskCgroups | undefined): Promise<number[]> {
  if (!cg) return [];
  const out = new Set<number>();
  for (const dir of cg.dirs) {
    const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const t of text.split(/\s+/)) if (/^\d+$/.test(t)) out.add(Number(t));
  }
  return [...out];
}

/** How many times the kernel's OOM killer killed a process of this cgroup (v1 memory.oom_control, v2 memory.events). */
export async function oomKillCount(cg: TaskCgroups | undefined): Promise<number> {
  if (!cg?.memory_dir) return 0;
  const file = join(cg.memory_dir, cg.version === 'v2' ? 'memory.events' : 'memory.oom_control');
  const text = await readFile(file, 'utf8').catch(() => '');
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * Remove the task's cgroup directories (ENOENT is fine). A cgroup still holding processes is busy:
 * retry until `retryMs` has passed, then fail with the full reason.
 */
export async function removeCgroups(dirs: string[], retryMs = 2000): Promise<void> {
  const deadline = Date.now() + retryMs;
  for (const dir of dirs) {
    for (;;) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code === 'EBUSY' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        throw new DriverError(`could not remove cgroup ${dir} (${describeError(err)})`, false);
      }
    }
  }
}
