/**
 * Small, exact readers of /proc for the process driver: a process's identity (pid + start time, so a
 * recycled pid is never mistaken for a task), its children, and the members of a process group or
 * session.
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

export interface ProcStat {
  pid: number;
  /** One letter: R, S, D, Z (zombie), X (dead), T, … */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  /** Field 22 of /proc/PID/stat: start time in clock ticks since boot (a string: it is only compared). */
  starttime: string;
}

/** Parse the text of /proc/PID/stat. `comm` may contain spaces and parentheses, so split after the last `)`. */
export function parseProcStat(pid: number, text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields from 3 (state) onwards.
  const f = text.slice(close + 2).trim().split(' ');
  if (f.length < 20) return undefined;
  return {
    pid,
    state: f[0]!,
    ppid: Number(f[1]),
    pgrp: Number(f[2]),
    session: Number(f[3]),
    starttime: f[19]!,
  };
}

export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return parseProcStat(pid, await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Synchronous variant: used right after spawn, before the event loop can reap the child. */
export function readProcStatSync(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return parseProcStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Is `pid` the very process that started at `starttime`, and not yet dead (zombies count as dead)? */
export async function isAlive(pid: number | undefined, starttime: string | undefined): Promise<boolean> {
  if (pid === undefined || starttime === undefined) return false;
  const st = await readProcStat(pid);
  return st !== undefined && st.starttime === starttime && st.state !== 'Z' && st.state !== 'X';
}

/** The direct children of `pid` (uses /proc/PID/task/PID/children, falling back to a scan of /proc). */
export async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    const all = await scanProcesses();
    return all.filter((p) => p.ppid === pid).map((p) => p.pid);
  }
}

/** Every process on the machine (a snapshot; processes may come and go while it is taken). */
export async function scanProcesses(): Promise<ProcStat[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const pids = names.filter((n) => /^\d+$/.test(n)).map(Number);
  const stats = await Promise.all(pids.map((p) => readProcStat(p)));
  return stats.filter((s): s is ProcStat => s !== undefined);
}
