/**
 * Node-side plumbing of the oci driver: running helper binaries (runc, mount, ip), the per-task
 * overlay root file system, and named network namespaces (`ip netns`, under /run/netns).
 */
import { spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { findTool } from '../../util/which.js';
import { join } from 'node:path';
import { DriverError } from '../driver.js';
import { errText } from '../common/exit.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a helper binary to completion (no shell), capturing its output; never throws for a non-zero exit. */
export function runCommand(bin: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(bin, args, { stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: opts.env ?? { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
    } catch (err) {
      reject(err);
      return;
    }
    let out = '';
    let errs = '';
    child.stdout!.on('data', (b: Buffer) => {
      if (out.length < 1 << 20) out += b.toString();
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (errs.length < 1 << 20) errs += b.toString();
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          try {
            child.kill('SIGKILL');
          } catch {
            /* gone */
          }
        }, opts.timeoutMs)
      : undefined;
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: errs });
    });
  });
}

/** `PATH` lookup of a helper binary on the node (a name with a `/` is checked as it is). */
export async function findOnPath(name: string): Promise<string | undefined> {
  return findTool(name);
}

/** One line of output for an error message. */
function oneLine(s: string): string {
  return s.trim().split('\n').filter(Boolean).join('; ');
}

/** Decode the octal escapes of /proc/self/mountinfo (`\040` for a space …). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Is something mounted exactly at `path` (in the agent's mount namespace)? */
export async function isMountPoint(path: string): Promise<boolean> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMount(f[4]!) === path) return true;
  }
  return false;
}

/** Characters overlayfs or mount(8) option parsing would misread in a directory path. */
export function checkOverlayPath(p: string, what: string): void {
  if (/[,:\\\n]/.test(p)) throw new DriverError(`the ${what} path ${JSON.stringify(p)} contains a character overlayfs cannot take in a mount option (",", ":", "\\" or a newline)`);
}

/** Mount the task's root file system: the image as the read-only lower layer, the task's own upper. */
export async function mountOverlay(mountBin: string, lower: string, upper: string, work: string, target: string): Promise<void> {
  for (const [p, w] of [
    [lower, 'image rootfs'],
    [upper, 'upper'],
    [work, 'work'],
    [target, 'mount point'],
  ] as const)
    checkOverlayPath(p, w);
  let r: RunResult;
  try {
    r = await runCommand(mountBin, ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target], { timeoutMs: 30_000 });
  } catch (err) {
    throw new DriverError(`could not run ${mountBin} to mount the task's root file system (${errText(err)})`, false);
  }
  if (r.code !== 0) throw new DriverError(`could not mount the task's root file system (overlay of ${lower} at ${target}): ${oneLine(r.stderr) || `mount exited with ${r.code ?? r.signal}`}`, false);
}

/** Unmount `path` if it is a mount point; falls back to a lazy unmount when it stays busy. */
export async function unmount(umountBin: string, path: string): Promise<void> {
  for (let i = 0; i < 20 && (await isMountPoint(path)); i++) {
    const r = await runCommand(umountBin, i < 10 ? [path] : ['-l', path], { timeoutMs: 30_000 }).catch((err) => ({ code: 1, signal: null, stdout: '', stderr: errText(err) }) as RunResult);
    if (r.code === 0) continue;
    if (i === 19) throw new DriverError(`could not unmount ${path}: ${oneLine(r.stderr)}`, false);
    await new Promise((res) => setTimeout(res, 50));
  }
}

export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

/** Create a named network namespace with only `lo`, up. */
export async function createNetns(ipBin: string, name: string): Promise<string> {
  let r: RunResult;
  try {
    r = await runCommand(ipBin, ['netns', 'add', name], { timeoutMs: 30_000 });
    if (r.code === 0) r = await runCommand(ipBin, ['-n', name, 'link', 'set', 'lo', 'up'], { timeoutMs: 30_000 });
  } catch (err) {
    throw new DriverError(`could not run ${ipBin} to create the task's network namespace (${errText(err)})`, false);
  }
  if (r.code !== 0) {
    await deleteNetns(ipBin, name).catch(() => undefined);
    throw new DriverError(`could not create the task's network namespace ${name}: ${oneLine(r.stderr) || `ip exited with ${r.code ?? r.signal}`}`, false);
  }
  return netnsPath(name);
}

export async function netnsExists(name: string): Promise<boolean> {
  try {
    await access(netnsPath(name));
    return true;
  } catch {
    return false;
  }
}

export async function deleteNetns(ipBin: string, name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  const r = await runCommand(ipBin, ['netns', 'delete', name], { timeoutMs: 30_000 });
  if (r.code !== 0 && (await netnsExists(name))) throw new DriverError(`could not delete the task's network namespace ${name}: ${oneLine(r.stderr)}`, false);
}
