/**
 * Resolve a command the way exec(3) would, before anything is started, so that a missing or
 * unrunnable command fails `start` with a full, Go-style message (`exec: "x": executable file not
 * found in $PATH`) instead of an exit code.
 */
import { constants as fsConstants } from 'node:fs';
import { access, open, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { DriverError } from '../driver.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

type Check = { ok: true } | { ok: false; why: string; code: string };

async function checkExecutable(path: string): Promise<Check> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, code: 'ENOENT', why: 'no such file or directory' };
    if (code === 'EACCES') return { ok: false, code, why: 'permission denied' };
    return { ok: false, code, why: (err as Error).message };
  }
  if (st.isDirectory()) return { ok: false, code: 'EISDIR', why: 'is a directory' };
  if (!st.isFile()) return { ok: false, code: 'EACCES', why: 'permission denied (not a regular file)' };
  try {
    await access(path, fsConstants.X_OK);
  } catch {
    return { ok: false, code: 'EACCES', why: 'permission denied' };
  }
  return { ok: true };
}

/** A `#!` script whose interpreter does not exist fails with a confusing ENOENT at exec time: say why now. */
async function checkInterpreter(name: string, path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
    const buf = Buffer.alloc(256);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead).toString('latin1');
    if (!head.startsWith('#!')) return;
    const line = head.slice(2).split('\n')[0]!.trim();
    const interp = line.split(/[ \t]+/)[0] ?? '';
    if (!interp.startsWith('/')) return;
    const c = await checkExecutable(interp);
    if (!c.ok) throw new DriverError(`exec: "${name}": bad interpreter "${interp}": ${c.why}`);
  } catch (err) {
    if (err instanceof DriverError) throw err;
    // Unreadable (e.g. execute-only): let exec decide.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/**
 * The absolute path exec would run for `name` with this PATH and working directory, or a DriverError
 * whose message says exactly why not.
 */
export async function resolveCommand(name: string, pathVar: string, workdir: string): Promise<string> {
  if (name === '') throw new DriverError('exec: "": the command is empty');
  if (name.includes('\0')) throw new DriverError(`exec: ${JSON.stringify(name)}: the command contains a NUL byte`);
  if (name.includes('/')) {
    const full = isAbsolute(name) ? name : resolve(workdir, name);
    const c = await checkExecutable(full);
    if (!c.ok) throw new DriverError(`exec: "${name}": ${c.why}${full !== name ? ` (resolved to ${full})` : ''}`);
    await checkInterpreter(name, full);
    return full;
  }
  let denied: string | undefined;
  for (const dir of pathVar.split(':')) {
    const candidate = dir === '' ? resolve(workdir, name) : isAbsolute(dir) ? join(dir, name) : resolve(workdir, dir, name);
    const c = await checkExecutable(candidate);
    if (c.ok) {
      await checkInterpreter(name, candidate);
      return candidate;
    }
    if (c.code === 'EACCES' && denied === undefined) denied = candidate;
  }
  if (denied !== undefined) throw new DriverError(`exec: "${name}": permission denied (${denied} is not executable; PATH=${pathVar})`);
  throw new DriverError(`exec: "${name}": executable file not found in $PATH (PATH=${pathVar})`);
}
