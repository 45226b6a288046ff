/**
 * Start a long-running program under the supervisor shim (../process/shim.ts) in a session of its
 * own: it outlives the agent, and the shim records its exit status in `DIR/exit`, so a restarted
 * agent still learns how it ended (see recorded-exit.ts). Resolves once the program has been
 * exec'd, with the shim's pid and start time (the handle's identity) and a watch on it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { DriverError } from '../driver.js';
import { errText } from './exit.js';
import { EXIT_FILE, EXIT_JSON } from './recorded-exit.js';
import { readStarted, sendGo } from './shim-io.js';
import { SHIM_NAME, START_SHIM } from '../process/shim.js';
import { readProcStatSync } from '../process/procfs.js';

export interface Supervised {
  shim_pid: number;
  shim_start: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: string }>;
  done?: { code: number | null; signal: NodeJS.Signals | null; at: string };
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export async function startSupervised(dir: string, argv: string[], opts: { stdout: string; stderr: string; what: string }): Promise<Supervised> {
  await Promise.all([rm(join(dir, EXIT_FILE), { force: true }), rm(join(dir, EXIT_JSON), { force: true })]);
  const out = await open(join(dir, opts.stdout), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
  const err = opts.stderr === opts.stdout ? out : await open(join(dir, opts.stderr), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
  const exitf = await open(join(dir, EXIT_FILE), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o640);
  const ownAdj = (await readFile('/proc/self/oom_score_adj', 'utf8').catch(() => '')).trim();
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', START_SHIM, SHIM_NAME, '0', '', ownAdj, ...argv], { cwd: dir, env: { PATH }, detached: true, stdio: ['ignore', out.fd, err.fd, 'pipe', exitf.fd] });
  } catch (e) {
    throw new DriverError(`could not start ${opts.what}'s supervisor (/bin/sh): ${errText(e)}`, false);
  } finally {
    await out.close();
    if (err !== out) await err.close();
    await exitf.close();
  }
  child.on('error', () => undefined);
  (child.stdio[3] as Writable | null)?.on('error', () => undefined);
  const s = { child } as Supervised;
  s.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      s.done = { code, signal, at: new Date().toISOString() };
      resolve(s.done);
    });
  });
  child.unref();
  const pid = child.pid;
  const st = pid !== undefined ? readProcStatSync(pid) : undefined;
  if (pid === undefined || !st) {
    if (pid !== undefined) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    throw new DriverError(`could not start ${opts.what}'s supervisor (/bin/sh)`, false);
  }
  s.shim_pid = pid;
  s.shim_start = st.starttime;
  try {
    await writeFile(`/proc/${pid}/oom_score_adj`, '-1000').catch(() => undefined);
    await sendGo(child.stdio[3] as Writable, false);
  } catch (e) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    throw new DriverError(`could not start ${opts.what}'s supervisor: ${errText(e)}`, false);
  }
  if (!(await readStarted(child.stdio[3] as Readable, 10_000)) && !s.done) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    throw new DriverError(`${opts.what}'s supervisor did not start it within 10 s`, false);
  }
  return s;
}
