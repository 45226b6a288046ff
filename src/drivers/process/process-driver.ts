/**
 * The `process` driver: runs a host command without a shell (unless asked), in its own session and
 * process group, under a tiny POSIX-sh supervisor shim (see shim.ts) that outlives the agent and
 * records the exit status in `${dir}/exit`. With root and cgroups (v1 or v2), every task gets its own
 * cgroups with the memory/cpu/pids limits; without them it runs unconfined and the fingerprint says so.
 *
 * Files in the task dir: `stdout.log`, `stderr.log` (raw output, opened O_APPEND, never rotated or
 * removed here), `exit` (the shim's status line), `exit.json` (the computed ExitResult, cached so it
 * stays the same after the cgroups are gone).
 */
import { readStarted, sendGo } from '../common/shim-io.js';
import { recordedExit } from '../common/recorded-exit.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  DriverError,
  type Driver,
  type DriverFingerprint,
  type ExecResult,
  type ExitResult,
  type TaskConfig,
  type TaskHandle,
  type TaskState,
  type DriverCapabilities,
} from '../driver.js';
import {
  cgroupPids,
  createTaskCgroups,
  detectCgroups,
  joinCgroups,
  removeCgroups,
  type CgroupSupport,
  type TaskCgroups,
} from './cgroups.js';
import { DEFAULT_PATH, resolveCommand } from './lookup.js';
import { childrenOf, isAlive, readProcStat, readProcStatSync, scanProcesses } from './procfs.js';
import { errText, formatBytes, normalizeSignal } from '../common/exit.js';
import { EXEC_SHIM, EXEC_SHIM_NAME, SHIM_HANDSHAKE_FAILED, SHIM_NAME, SHIM_VAR_PREFIX, START_SHIM } from './shim.js';

export interface ProcessDriverOptions {
  /** Where cgroup file systems are mounted (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** How often `wait` polls a recovered task (default 100 ms). */
  pollIntervalMs?: number;
}

/** What the process driver keeps in a task handle (persisted by the agent; JSON). */
export interface ProcessHandle extends TaskHandle {
  driver: 'process';
  /** Handle format version. */
  version: 1;
  /** The task dir (logs, exit file). */
  dir: string;
  /** The supervisor shim: process-group and session leader (pgid = sid = shim_pid). */
  shim_pid: number;
  /** Field 22 of /proc/<shim_pid>/stat: tells the shim from a later process that got its pid. */
  shim_start: string;
  pgid: number;
  /** The command's pid (the shim's only child) and its start time, when it was seen running. */
  pid?: number;
  pid_start?: string;
  /** The environment and working directory the task runs with (for `exec`). */
  env: Record<string, string>;
  workdir: string;
  uid?: number;
  gid?: number;
  /** The task's cgroups, or null when it runs without them. */
  cgroups: TaskCgroups | null;
  memory_limit_bytes: number;
}

export { formatBytes };

export const STDOUT_LOG = 'stdout.log';
import { EXIT_FILE, EXIT_JSON, STDERR_LOG } from '../common/recorded-exit.js';
export { EXIT_FILE, EXIT_JSON, STDERR_LOG };

/** Output kept per stream by `exec` (health checks need far less). */
const EXEC_OUTPUT_CAP = 1024 * 1024;
/** After SIGKILL, how long to wait for the shim to record the status before killing it too. */
const KILL_SETTLE_MS = 2000;
/** How long `start` waits for the shim to report that the command is starting. */
const START_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ShimExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: string;
}

/** A shim this driver instance spawned (so it gets the exit event rather than polling /proc). */
interface Live {
  child: ChildProcess;
  exited: Promise<ShimExit>;
  done?: ShimExit;
}

function validateEnv(env: Record<string, string>, what: string): void {
  for (const [k, v] of Object.entries(env)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw new DriverError(`invalid ${what} variable name ${JSON.stringify(k)}: it must be non-empty and contain no "=" or NUL`);
    if (typeof v !== 'string') throw new DriverError(`invalid ${what} variable ${k}: its value must be a string`);
    if (v.includes('\0')) throw new DriverError(`invalid ${what} variable ${k}: its value contains a NUL byte`);
    if (k.startsWith(SHIM_VAR_PREFIX)) throw new DriverError(`${what} variable ${k} uses the prefix ${SHIM_VAR_PREFIX}, which is reserved for the process driver`);
  }
}

async function lookupId(file: string, name: string): Promise<string[] | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return f;
  }
  return undefined;
}

/** `uid`, `uid:gid`, `name` or `name:group` → numeric ids (names from /etc/passwd and /etc/group). */
async function resolveUser(spec: string): Promise<{ uid: number; gid: number }> {
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const pw = (await readFile('/etc/passwd', 'utf8').catch(() => '')).split('\n').map((l) => l.split(':')).find((f) => f[2] === u);
    if (pw) gid = Number(pw[3]);
  } else {
    const pw = await lookupId('/etc/passwd', u);
    if (!pw) throw new DriverError(`user "${u}" does not exist on this node (not in /etc/passwd)`);
    uid = Number(pw[2]);
    gid = Number(pw[3]);
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const gr = await lookupId('/etc/group', g);
      if (!gr) throw new DriverError(`group "${g}" does not exist on this node (not in /etc/group)`);
      gid = Number(gr[2]);
    }
  }
  return { uid, gid: gid ?? uid };
}

export class ProcessDriver implements Driver {
  readonly name = 'process';
  readonly capabilities: DriverCapabilities = { command: true, exec: true, terminal: false, pause: false, suspend: null, instances: false, console: false, volumes: false, image_kinds: [], network_kinds: ['host'] };
  private readonly cgroupRoot: string;
  private readonly pollMs: number;
  private supportP?: Promise<CgroupSupport>;
  private readonly live = new Map<string, Live>();
  private readonly results = new Map<string, ExitResult>();

  constructor(opts: ProcessDriverOptions = {}) {
    this.cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.pollMs = opts.pollIntervalMs ?? 100;
  }

  /** Which cgroups this driver uses (detected once per instance). */
  cgroupSupport(): Promise<CgroupSupport> {
    this.supportP ??= detectCgroups(this.cgroupRoot);
    return this.supportP;
  }

  async fingerprint(): Promise<DriverFingerprint> {
    if (process.platform !== 'linux') return { available: false, reason: `the process driver runs only on Linux (this node is ${process.platform})` };
    try {
      await stat('/bin/sh');
    } catch {
      return { available: false, reason: 'the process driver needs /bin/sh (a POSIX shell) for its supervisor shim, and this node has none' };
    }
    const s = await this.cgroupSupport();
    const attributes: Record<string, string> = {
      cgroups: s.version,
      root: String(typeof process.getuid === 'function' && process.getuid() === 0),
      cgroup_root: s.root,
    };
    if (s.version === 'none') attributes.cgroups_reason = s.reason ?? 'cgroups unavailable';
    else attributes.cgroup_controllers = s.controllers.join(',');
    return { available: true, attributes };
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    if (process.platform !== 'linux') throw new DriverError(`the process driver runs only on Linux (this node is ${process.platform})`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/.test(config.id)) throw new DriverError(`invalid task id "${config.id}": it must be a safe file and cgroup name (letters, digits, "_", ".", "-")`);
    if (!Array.isArray(config.command) || config.command.length === 0) throw new DriverError('the task has no command to run (the process driver needs a command)');
    if (config.mounts && config.mounts.length > 0) throw new DriverError('the process driver does not support mounts: the task runs directly on the host file system (use the oci or docker driver for --mount)');
    for (const a of config.command) if (typeof a !== 'string' || a.includes('\0')) throw new DriverError(`invalid command argument ${JSON.stringify(a)}: arguments must be strings without NUL bytes`);

    const dir = config.dir;
    await mkdir(dir, { recursive: true });
    const workdir = config.workdir && config.workdir !== '' ? config.workdir : dir;
    try {
      const st = await stat(workdir);
      if (!st.isDirectory()) throw new DriverError(`workdir "${workdir}" is not a directory on this node`);
    } catch (err) {
      if (err instanceof DriverError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new DriverError(`workdir "${workdir}" does not exist on this node`);
      throw new DriverError(`workdir "${workdir}" cannot be used (${errText(err)})`);
    }

    const env: Record<string, string> = { ...(config.env ?? {}) };
    validateEnv(env, 'environment');
    if (env.PATH === undefined) env.PATH = DEFAULT_PATH;

    let ids: { uid: number; gid: number } | undefined;
    if (config.user && config.user !== '') {
      ids = await resolveUser(config.user);
      const me = process.getuid?.();
      if (me !== 0 && me !== ids.uid) throw new DriverError(`cannot run the task as user "${config.user}": the agent is not running as root`);
    }

    const [cmd0, ...rest] = config.command as [string, ...string[]];
    const argv = config.shell ? [await resolveCommand('/bin/sh', env.PATH, workdir), '-c', cmd0, ...rest] : [await resolveCommand(cmd0, env.PATH, workdir), ...rest];

    const limits = {
      cpu: config.limits?.cpu ?? 0,
      memory_bytes: config.limits?.memory_bytes ?? 0,
      pids: config.limits?.pids ?? 0,
    };
    const support = await this.cgroupSupport();
    const exitFile = join(dir, EXIT_FILE);
    await rm(exitFile, { force: true });
    await rm(join(dir, EXIT_JSON), { force: true });
    this.results.delete(config.id);
    const cgroups = support.version === 'none' ? undefined : await createTaskCgroups(support, config.cgroup_parent ?? '', config.id, limits);
    const dropCgroups = async () => {
      if (cgroups) await removeCgroups(cgroups.dirs).catch(() => undefined);
    };

    let out: FileHandle | undefined;
    let errf: FileHandle | undefined;
    let exitf: FileHandle | undefined;
    try {
      out = await open(join(dir, STDOUT_LOG), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
      errf = await open(join(dir, STDERR_LOG), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
      // Empty until the shim writes the status into it (through fd 4).
      exitf = await open(exitFile, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o640);
    } catch (err) {
      await out?.close();
      await errf?.close();
      await dropCgroups();
      throw new DriverError(`could not open the task's log files in ${dir} (${errText(err)})`, false);
    }

    const isRoot = process.getuid?.() === 0;
    const ownAdj = isRoot ? (await readFile('/proc/self/oom_score_adj', 'utf8').catch(() => '')).trim() : '';
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', START_SHIM, SHIM_NAME, env.PWD !== undefined ? '1' : '0', env.PWD ?? '', ownAdj, ...argv], {
        cwd: workdir,
        env,
        detached: true,
        stdio: ['ignore', out.fd, errf.fd, 'pipe', exitf.fd],
        ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
      });
    } catch (err) {
      await out.close();
      await errf.close();
      await exitf.close();
      await dropCgroups();
      throw new DriverError(`could not start the task's supervisor (/bin/sh) (${errText(err)})`, false);
    }
    const pid = child.pid;
    // Read the shim's identity now: it cannot be reaped before this synchronous code yields.
    const shimStat = pid !== undefined ? readProcStatSync(pid) : undefined;
    const spawnError = new Promise<unknown>((resolve) => child.once('error', resolve));
    const live = this.track(child);
    await out.close();
    await errf.close();
    await exitf.close();
    if (pid === undefined || !shimStat) {
      if (pid !== undefined) this.signal(pid, 'SIGKILL');
      const spawnErr = await Promise.race([spawnError, sleep(1000).then(() => undefined)]);
      await dropCgroups();
      throw new DriverError(`could not start the task's supervisor (/bin/sh) (${spawnErr ? errText(spawnErr) : 'no pid'})`, false);
    }
    const key = `${pid}:${shimStat.starttime}`;
    this.live.set(key, live);

    try {
      if (isRoot) await writeFile(`/proc/${pid}/oom_score_adj`, '-1000').catch(() => undefined);
      if (cgroups) await joinCgroups(cgroups, pid);
      await sendGo(child.stdio[3] as Writable, false);
    } catch (err) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await live.exited;
      this.live.delete(key);
      await dropCgroups();
      if (err instanceof DriverError) throw err;
      throw new DriverError(`could not start the task (${errText(err)})`, false);
    }

    // The command is the shim's only child: once it says `started`, record its pid.
    const startedOk = await readStarted(child.stdio[3] as Readable, START_TIMEOUT_MS);
    let cmdPid: number | undefined;
    let cmdStart: string | undefined;
    for (const kid of await childrenOf(pid)) {
      const st = await readProcStat(kid);
      if (st && st.ppid === pid) {
        cmdPid = st.pid;
        cmdStart = st.starttime;
        break;
      }
    }
    if (!startedOk) {
      this.signal(pid, 'SIGKILL');
      if (cmdPid !== undefined) this.signal(cmdPid, 'SIGKILL');
      await Promise.race([live.exited, sleep(1000)]);
      this.live.delete(key);
      await dropCgroups();
      const d = live.done;
      throw new DriverError(
        `the task supervisor did not start the command within ${START_TIMEOUT_MS} ms${d ? ` (it exited with ${d.signal ? `signal ${d.signal}` : `code ${d.code}`}${d.code === SHIM_HANDSHAKE_FAILED ? ': the handshake with the driver failed' : ''})` : ''}`,
        false,
      );
    }

    const handle: ProcessHandle = {
      driver: 'process',
      version: 1,
      task_id: config.id,
      started_at: new Date().toISOString(),
      dir,
      shim_pid: pid,
      shim_start: shimStat.starttime,
      pgid: pid,
      ...(cmdPid !== undefined ? { pid: cmdPid, pid_start: cmdStart } : {}),
      env,
      workdir,
      ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
      cgroups: cgroups ?? null,
      memory_limit_bytes: cgroups ? limits.memory_bytes : 0,
    };
    return handle;
  }

  async wait(handle: TaskHandle): Promise<ExitResult> {
    const h = this.asHandle(handle);
    const cached = this.results.get(h.task_id + ':' + h.shim_pid);
    if (cached) return cached;
    const live = this.live.get(this.key(h));
    for (;;) {
      if (live?.done) break;
      if (!live && !(await isAlive(h.shim_pid, h.shim_start))) break;
      // The timer also keeps the event loop alive while someone waits (the child itself is unref'd).
      await (live ? Promise.race([live.exited, sleep(this.pollMs)]) : sleep(this.pollMs));
    }
    return this.exitResult(h);
  }

  async inspect(handle: TaskHandle): Promise<TaskState> {
    const h = this.asHandle(handle);
    if (await isAlive(h.shim_pid, h.shim_start)) return { running: true, pid: h.pid ?? h.shim_pid };
    return { running: false, ...(h.pid !== undefined ? { pid: h.pid } : {}), exit: await this.exitResult(h) };
  }

  async recover(handle: TaskHandle): Promise<TaskHandle | undefined> {
    const h = this.asHandle(handle);
    if (!(await isAlive(h.shim_pid, h.shim_start))) return undefined;
    const out: ProcessHandle = { ...h };
    if (out.pid === undefined || !(await isAlive(out.pid, out.pid_start))) {
      const kids = await childrenOf(h.shim_pid);
      const st = kids.length > 0 ? await readProcStat(kids[0]!) : undefined;
      if (st && st.ppid === h.shim_pid) {
        out.pid = st.pid;
        out.pid_start = st.starttime;
      }
    }
    return out;
  }

  async stop(handle: TaskHandle, graceMs: number, signal = 'SIGTERM'): Promise<void> {
    const h = this.asHandle(handle);
    const sig = normalizeSignal(signal);
    if (await isAlive(h.shim_pid, h.shim_start)) {
      const target = await this.commandPid(h);
      if (target !== undefined) this.signal(target, sig);
      const exited = sig !== 'SIGKILL' && (await this.waitShimExit(h, Math.max(0, graceMs)));
      if (!exited) await this.kill(h);
    }
    await this.killLeftovers(h);
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    if (await isAlive(h.shim_pid, h.shim_start)) await this.kill(h);
    await this.killLeftovers(h);
    // Compute (and cache in exit.json) the exit result while the OOM counter still exists.
    await this.exitResult(h).catch(() => undefined);
    if (h.cgroups) await removeCgroups(h.cgroups.dirs);
    this.live.delete(this.key(h));
  }

  async exec(handle: TaskHandle, command: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ExecResult> {
    const h = this.asHandle(handle);
    if (!Array.isArray(command) || command.length === 0) throw new DriverError('exec: no command given', false);
    if (!(await isAlive(h.shim_pid, h.shim_start))) throw new DriverError(`cannot exec in task ${h.task_id}: it is not running`, false);
    const env: Record<string, string> = { ...h.env, ...(opts.env ?? {}) };
    validateEnv(env, 'exec environment');
    if (env.PATH === undefined) env.PATH = DEFAULT_PATH;
    const [cmd0, ...rest] = command as [string, ...string[]];
    const argv0 = await resolveCommand(cmd0, env.PATH, h.workdir);

    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', EXEC_SHIM, EXEC_SHIM_NAME, env.PWD !== undefined ? '1' : '0', env.PWD ?? '', argv0, ...rest], {
        cwd: h.workdir,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        ...(h.uid !== undefined ? { uid: h.uid, gid: h.gid ?? h.uid } : {}),
      });
    } catch (err) {
      throw new DriverError(`exec: could not start ${JSON.stringify(command)} (${errText(err)})`, false);
    }
    const collect = (s: Readable | null) => {
      const chunks: Buffer[] = [];
      let size = 0;
      s?.on('data', (b: Buffer) => {
        if (size >= EXEC_OUTPUT_CAP) return;
        chunks.push(b.subarray(0, EXEC_OUTPUT_CAP - size));
        size += b.length;
      });
      return () => Buffer.concat(chunks).toString('utf8');
    };
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: unknown }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    // After the exit, output still in the pipes is read; a background process holding them open is not waited for.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    (child.stdio[3] as Writable | null)?.on('error', () => undefined);
    const pid = child.pid;
    if (pid === undefined) {
      const r = await exited;
      throw new DriverError(`exec: could not start ${JSON.stringify(command)} (${errText(r.error)})`, false);
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, Math.max(1, opts.timeoutMs));
    try {
      if (h.cgroups) await joinCgroups(h.cgroups, pid);
      await sendGo(child.stdio[3] as Writable);
    } catch (err) {
      clearTimeout(timer);
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await exited;
      if (err instanceof DriverError) throw new DriverError(`exec in task ${h.task_id}: ${err.message}`, false);
      throw new DriverError(`exec in task ${h.task_id}: the command could not be started (${errText(err)})`, false);
    }
    const r = await exited;
    clearTimeout(timer);
    await Promise.race([closed, sleep(200)]);
    child.stdout?.destroy();
    child.stderr?.destroy();
    if (timedOut) throw new DriverError(`exec: ${JSON.stringify(command)} did not finish within ${opts.timeoutMs} ms and was killed`, false);
    const code = r.code ?? (r.signal ? 128 + (osConstants.signals[r.signal] ?? 0) : 1);
    return { exit_code: code, stdout: stdout(), stderr: stderr() };
  }

  // ---- internals ----

  private key(h: ProcessHandle): string {
    return `${h.shim_pid}:${h.shim_start}`;
  }

  private asHandle(handle: TaskHandle): ProcessHandle {
    const h = handle as Partial<ProcessHandle>;
    if (!h || h.driver !== 'process') throw new DriverError(`not a process driver handle (driver is ${JSON.stringify(h?.driver)})`);
    if (!Number.isInteger(h.shim_pid) || typeof h.shim_start !== 'string' || !/^\d+$/.test(h.shim_start) || typeof h.dir !== 'string' || !Number.isInteger(h.pgid)) {
      throw new DriverError(`malformed process driver handle for task ${JSON.stringify(h.task_id)}: it lacks shim_pid, shim_start, pgid or dir`);
    }
    return { env: {}, workdir: h.dir, cgroups: null, memory_limit_bytes: 0, ...h } as ProcessHandle;
  }

  private track(child: ChildProcess): Live {
    const live = {} as Live;
    live.child = child;
    child.on('error', () => undefined); // spawn failures are handled by `start`
    live.exited = new Promise<ShimExit>((resolve) => {
      child.once('exit', (code, signal) => {
        live.done = { code, signal, at: new Date().toISOString() };
        resolve(live.done);
      });
    });
    // Never hold the agent's event loop open for a task; `wait` keeps it alive with its own timer.
    child.unref();
    const s3 = child.stdio[3] as (Writable & { unref?: () => void }) | null;
    s3?.on('error', () => undefined);
    return live;
  }



  private signal(pid: number, sig: NodeJS.Signals | number): void {
    // Never 0, 1 or -1: kill(0) would signal our own process group, kill(-1) every process.
    if (!Number.isSafeInteger(pid) || (pid >= -1 && pid <= 1)) return;
    try {
      process.kill(pid, sig);
    } catch {
      /* exited meanwhile */
    }
  }

  /** The command's pid, verified (start time) to still be the task's. */
  private async commandPid(h: ProcessHandle): Promise<number | undefined> {
    if (h.pid !== undefined && h.pid_start !== undefined && (await isAlive(h.pid, h.pid_start))) return h.pid;
    if (!(await isAlive(h.shim_pid, h.shim_start))) return undefined;
    for (const kid of await childrenOf(h.shim_pid)) {
      const st = await readProcStat(kid);
      if (st && st.ppid === h.shim_pid && st.state !== 'Z') return kid;
    }
    return undefined;
  }

  /** Wait up to `ms` for the shim to exit; true when it has. */
  private async waitShimExit(h: ProcessHandle, ms: number): Promise<boolean> {
    const live = this.live.get(this.key(h));
    const deadline = Date.now() + ms;
    for (;;) {
      if (live?.done) return true;
      if (!(await isAlive(h.shim_pid, h.shim_start))) {
        // A child of ours: let Node reap it so the exit event is seen.
        if (live) await Promise.race([live.exited, sleep(1000)]);
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await (live ? Promise.race([live.exited, sleep(Math.min(50, left))]) : sleep(Math.min(50, left)));
    }
  }

  /**
   * Every process of the task. With cgroups: the cgroup members (exact, even for processes that left
   * the session). Without: the members of the shim's process group and session, when that group is
   * provably still ours (the shim is alive, or no other process has taken its pid since).
   */
  private async taskPids(h: ProcessHandle): Promise<number[]> {
    if (h.cgroups) return cgroupPids(h.cgroups);
    if (!(await isAlive(h.shim_pid, h.shim_start))) {
      const st = await readProcStat(h.pgid);
      if (st && st.starttime !== h.shim_start) return []; // pid recycled: our group is empty
    }
    const start = BigInt(h.shim_start);
    return (await scanProcesses())
      .filter((p) => (p.pgrp === h.pgid || p.session === h.pgid) && p.state !== 'Z' && BigInt(p.starttime) >= start)
      .map((p) => p.pid);
  }

  /** SIGKILL the command and everything else of the task but the shim, so the shim records the status; then the shim if it must. */
  private async kill(h: ProcessHandle): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    do {
      for (const p of await this.taskPids(h)) if (p !== h.shim_pid) this.signal(p, 'SIGKILL');
      if (await this.waitShimExit(h, 100)) return;
    } while (Date.now() < deadline);
    if (await isAlive(h.shim_pid, h.shim_start)) this.signal(h.shim_pid, 'SIGKILL');
    await this.waitShimExit(h, 1000);
    // The shim could not record it: we know what happened.
    const exitFile = join(h.dir, EXIT_FILE);
    const cur = await readFile(exitFile, 'utf8').catch(() => '');
    if (cur.trim() === '') await writeFile(exitFile, '137\n').catch(() => undefined);
  }

  /** Kill whatever of the task is left (background processes after the command exited). */
  private async killLeftovers(h: ProcessHandle): Promise<void> {
    const deadline = Date.now() + KILL_SETTLE_MS;
    for (;;) {
      const pids = await this.taskPids(h);
      if (pids.length === 0) return;
      for (const p of pids) this.signal(p, 'SIGKILL');
      if (Date.now() > deadline) return;
      await sleep(20);
    }
  }

  private async exitResult(h: ProcessHandle): Promise<ExitResult> {
    return recordedExit(h, this.live.get(this.key(h)), this.results, h.task_id + ':' + h.shim_pid);
  }

}
