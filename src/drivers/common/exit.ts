/**
 * What every supervised driver (process, oci) says about how a task ended, so that exit codes,
 * signal names, `OOMKilled: …` errors and sizes read the same whichever driver ran the task.
 *
 * The supervisor shim records a shell status (`$?`): the exit code, or 128+N after signal N.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { DriverError } from '../driver.js';

export const SIGNAL_NAMES: Map<number, string> = (() => {
  const m = new Map<number, string>();
  for (const [name, num] of Object.entries(osConstants.signals)) if (!m.has(num)) m.set(num, name);
  return m;
})();

/** `TERM`, `sigterm`, `15` → `SIGTERM`; a DriverError for anything else. */
export function normalizeSignal(signal: string): NodeJS.Signals {
  let s = signal.trim().toUpperCase();
  if (/^\d+$/.test(s)) {
    const name = SIGNAL_NAMES.get(Number(s));
    if (!name) throw new DriverError(`unknown signal "${signal}"`);
    return name as NodeJS.Signals;
  }
  if (!s.startsWith('SIG')) s = `SIG${s}`;
  if (!(s in osConstants.signals)) throw new DriverError(`unknown signal "${signal}" (expected a name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1)`);
  return s as NodeJS.Signals;
}

/** 33554432 → `32MiB`: limits the way people write them. */
export function formatBytes(n: number): string {
  const units: Array<[number, string]> = [
    [1024 ** 4, 'TiB'],
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [size, unit] of units) if (n >= size && n % size === 0) return `${n / size}${unit}`;
  for (const [size, unit] of units.slice(1)) if (n >= size * 10) return `${(n / size).toFixed(1)}${unit}`;
  return `${n} bytes`;
}

/** An error as one line: `ENOENT: no such file …` when it has a code. */
export function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(err);
}

/**
 * Shells exit 127 (not found) or 126 (not executable) when *they* could not run a command; the reason
 * is the last line they wrote to `${dir}/${file}`. Returns ` (that line)`, or '' when there is none.
 */
export async function stderrHint(dir: string, file = 'stderr.log'): Promise<string> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(join(dir, file), 'r');
    const size = (await fh.stat()).size;
    const len = Math.min(size, 4096);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n');
    // The first line may be cut by the 4 KiB window: only use it when the window holds the whole file.
    const whole = len === size ? lines : lines.slice(1);
    const last = whole.map((l) => l.trim()).filter(Boolean).pop();
    return last ? ` (${last})` : '';
  } catch {
    return '';
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** The signal name for a shell status above 128 (`137` → `SIGKILL`), else null. */
export function statusSignal(status: number): string | null {
  return status > 128 ? SIGNAL_NAMES.get(status - 128) ?? null : null;
}

/**
 * The full error for a non-zero status (null for 0): `exit code 3`, `killed by signal SIGTERM`, or
 * `OOMKilled: …` when the task's memory cgroup counted an OOM kill. `hint` is appended to 126/127.
 */
export function exitError(status: number, oomKilled: boolean, memoryLimitBytes: number, hint = ''): string | null {
  if (status === 0) return null;
  const sigName = statusSignal(status);
  if (oomKilled) {
    const limit = memoryLimitBytes > 0 ? ` of ${formatBytes(memoryLimitBytes)}` : '';
    return sigName === 'SIGKILL'
      ? `OOMKilled: the task used more than its memory limit${limit} and was killed by the kernel`
      : `OOMKilled: a process of the task used more than the task's memory limit${limit} and was killed by the kernel; the task then exited with code ${status}`;
  }
  if (sigName) return `killed by signal ${sigName}`;
  return `exit code ${status}${status === 126 || status === 127 ? hint : ''}`;
}
