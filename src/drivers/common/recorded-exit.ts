/**
 * How a supervised task ended, for the drivers whose tasks run under the `sh` shim (process, oci):
 * the status the shim wrote to `DIR/exit`, or the shim's own exit when the agent saw it, plus the
 * OOM counter of the task's cgroups. Cached in memory and in `DIR/exit.json`, so it is still known
 * after the cgroups are gone and after an agent restart.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { ExitResult } from '../driver.js';
import { oomKillCount, type TaskCgroups } from '../process/cgroups.js';
import { exitError, statusSignal, stderrHint } from './exit.js';

export const STDERR_LOG = 'stderr.log';
export const EXIT_FILE = 'exit';
export const EXIT_JSON = 'exit.json';

export interface SupervisedTask {
  dir: string;
  shim_pid: number;
  cgroups?: TaskCgroups | null;
  memory_limit_bytes: number;
}

/** The shim as the agent saw it, when the agent started it. */
export interface ShimWatch {
  exited: Promise<unknown>;
  done?: { code: number | null; signal: NodeJS.Signals | null; at: string };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function recordedExit(h: SupervisedTask, live: ShimWatch | undefined, cache: Map<string, ExitResult>, key: string): Promise<ExitResult> {
  const cached = cache.get(key);
  if (cached) return cached;
  if (live && !live.done) await Promise.race([live.exited, sleep(1000)]);

  const jsonFile = join(h.dir, EXIT_JSON);
  try {
    const saved = JSON.parse(await readFile(jsonFile, 'utf8')) as ExitResult & { shim_pid?: number };
    if (saved.shim_pid === h.shim_pid) {
      const { shim_pid: _ignored, ...r } = saved;
      void _ignored;
      cache.set(key, r);
      return r;
    }
  } catch {
    /* not computed yet */
  }

  const exitFile = join(h.dir, EXIT_FILE);
  let status: number | undefined;
  let finishedAt: string | undefined;
  try {
    const text = (await readFile(exitFile, 'utf8')).trim();
    if (/^\d+$/.test(text)) {
      status = Number(text);
      finishedAt = (await stat(exitFile)).mtime.toISOString();
    }
  } catch {
    /* no status recorded */
  }
  if (status === undefined && live?.done) {
    const d = live.done;
    if (d.signal) status = 128 + (osConstants.signals[d.signal] ?? 0);
    else if (d.code !== null) status = d.code;
    finishedAt = d.at;
  }
  finishedAt ??= live?.done?.at ?? new Date().toISOString();

  const oom = (await oomKillCount(h.cgroups ?? undefined)) > 0;
  if (status === undefined) {
    // Not cached: a later stop() may still record it.
    return {
      exit_code: null,
      signal: null,
      oom_killed: oom,
      finished_at: finishedAt,
      error: `the task's supervisor (pid ${h.shim_pid}) ended without recording an exit status (it was probably killed with SIGKILL while the agent was not running)`,
    };
  }
  const result: ExitResult = {
    exit_code: status,
    signal: statusSignal(status),
    oom_killed: oom,
    finished_at: finishedAt,
    error: exitError(status, oom, h.memory_limit_bytes, !oom && (status === 126 || status === 127) ? await stderrHint(h.dir, STDERR_LOG) : ''),
  };
  cache.set(key, result);
  await writeFile(jsonFile, JSON.stringify({ ...result, shim_pid: h.shim_pid }) + '\n').catch(() => undefined);
  return result;
}
