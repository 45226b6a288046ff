/**
 * Paths *inside* a container's root file system, resolved on the host the way the container would
 * see them: symlinks are followed with the rootfs as `/` (an absolute link target, or `..` above the
 * top, never leaves it), so an image cannot make the driver read or create anything outside its
 * rootfs. Used before the container starts: to find the command (a clear `exec: … not found` error
 * instead of a runc failure), and to read `/etc/passwd` and `/etc/group` for user names.
 */
import { lstat, open, readFile, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import { DriverError } from '../driver.js';

const MAX_LINKS = 40;

export interface InRoot {
  /** The host path of what `path` names inside the rootfs (for a missing path: where it would be). */
  hostPath: string;
  /** The path inside the container after following every symlink. */
  containerPath: string;
  exists: boolean;
}

/**
 * Resolve `path` (absolute inside the container, or relative to `cwd`) under `root`, following
 * symlinks in every component (also the last one unless `followLast` is false).
 */
export async function resolveInRoot(root: string, path: string, opts: { cwd?: string; followLast?: boolean } = {}): Promise<InRoot> {
  const start = isAbsolute(path) ? path : posix.join(opts.cwd ?? '/', path);
  let pending = start.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let st;
    try {
      st = await lstat(host);
    } catch {
      // Missing: the rest is taken literally (`..` still cannot climb above the root).
      done.push(part);
      for (const rest of pending) {
        if (rest === '..') done.pop();
        else done.push(rest);
      }
      return { hostPath: join(root, ...done), containerPath: '/' + done.join('/'), exists: false };
    }
    const isLast = pending.length === 0;
    if (st.isSymbolicLink() && (!isLast || opts.followLast !== false)) {
      if (++links > MAX_LINKS) throw new DriverError(`too many levels of symbolic links resolving ${start} in the image`);
      const target = await readlink(host);
      const parts = target.split('/').filter((p) => p !== '' && p !== '.');
      if (target.startsWith('/')) done.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    done.push(part);
  }
  return { hostPath: join(root, ...done), containerPath: '/' + done.join('/'), exists: true };
}

/** Read a (small) text file of the image, or undefined when it does not exist. */
export async function readFileInRoot(root: string, path: string, maxBytes = 4 * 1024 * 1024): Promise<string | undefined> {
  const r = await resolveInRoot(root, path);
  if (!r.exists) return undefined;
  try {
    const st = await stat(r.hostPath);
    if (!st.isFile() || st.size > maxBytes) return undefined;
    return await readFile(r.hostPath, 'utf8');
  } catch {
    return undefined;
  }
}

type Check = { ok: true } | { ok: false; why: string; code: 'ENOENT' | 'EACCES' | 'EISDIR' };

async function checkExecutable(root: string, path: string): Promise<Check & { hostPath?: string }> {
  const r = await resolveInRoot(root, path);
  if (!r.exists) return { ok: false, code: 'ENOENT', why: 'no such file or directory' };
  let st;
  try {
    st = await stat(r.hostPath);
  } catch {
    return { ok: false, code: 'ENOENT', why: 'no such file or directory' };
  }
  if (st.isDirectory()) return { ok: false, code: 'EISDIR', why: 'is a directory' };
  if (!st.isFile()) return { ok: false, code: 'EACCES', why: 'permission denied (not a regular file)' };
  if ((st.mode & 0o111) === 0) return { ok: false, code: 'EACCES', why: 'permission denied' };
  return { ok: true, hostPath: r.hostPath };
}

/** Is container path `p` at or below one of `targets` (where something else is mounted at run time)? */
function underMount(p: string, targets: string[]): boolean {
  return targets.some((t) => {
    const n = posix.normalize(t).replace(/\/+$/, '') || '/';
    return n === '/' || p === n || p.startsWith(n + '/');
  });
}

/** A `#!` script whose interpreter is missing from the image fails with a confusing ENOENT: say why now. */
async function checkInterpreter(root: string, name: string, hostPath: string, mountTargets: string[]): Promise<void> {
  let head: string;
  try {
    const fh = await open(hostPath, 'r');
    try {
      const buf = Buffer.alloc(256);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf.subarray(0, bytesRead).toString('latin1');
    } finally {
      await fh.close();
    }
  } catch {
    return;
  }
  if (!head.startsWith('#!')) return;
  const interp = head.slice(2).split('\n')[0]!.trim().split(/[ \t]+/)[0] ?? '';
  if (!interp.startsWith('/') || underMount(interp, mountTargets)) return;
  const c = await checkExecutable(root, interp);
  if (!c.ok) throw new DriverError(`exec: "${name}": bad interpreter "${interp}": ${c.why} in the image`);
}

/**
 * Find `name` in the image like exec(3) in the container would (PATH search unless it contains a
 * `/`). Returns its container path, `undefined` when it cannot be known before the container runs
 * (a candidate lies under a mount), or throws a DriverError saying exactly why it cannot run.
 */
export async function lookupCommandInRoot(root: string, name: string, pathVar: string, cwd: string, mountTargets: string[] = []): Promise<string | undefined> {
  if (name === '') throw new DriverError('exec: "": the command is empty');
  if (name.includes('\0')) throw new DriverError(`exec: ${JSON.stringify(name)}: the command contains a NUL byte`);
  if (name.includes('/')) {
    const full = isAbsolute(name) ? posix.normalize(name) : posix.join(cwd, name);
    if (underMount(full, mountTargets)) return undefined;
    const c = await checkExecutable(root, full);
    if (!c.ok) throw new DriverError(`exec: "${name}": ${c.why} in the image${full !== name ? ` (resolved to ${full})` : ''}`);
    await checkInterpreter(root, name, c.hostPath!, mountTargets);
    return full;
  }
  let denied: string | undefined;
  let unknown = false;
  for (const dir of pathVar.split(':')) {
    const candidate = dir === '' ? posix.join(cwd, name) : isAbsolute(dir) ? posix.join(dir, name) : posix.join(cwd, dir, name);
    if (underMount(candidate, mountTargets)) {
      unknown = true;
      continue;
    }
    const c = await checkExecutable(root, candidate);
    if (c.ok) {
      if (unknown) return undefined; // an earlier PATH entry is a mount: it may hold another match
      await checkInterpreter(root, name, c.hostPath!, mountTargets);
      return candidate;
    }
    if (c.code === 'EACCES' && denied === undefined) denied = candidate;
  }
  if (unknown) return undefined;
  if (denied !== undefined) throw new DriverError(`exec: "${name}": permission denied (${denied} in the image is not executable; PATH=${pathVar})`);
  throw new DriverError(`exec: "${name}": executable file not found in $PATH (PATH=${pathVar}) in the image`);
}
