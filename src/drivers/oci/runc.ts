/**
 * The few runc commands the driver uses besides `run` (which runs under the supervisor shim):
 * state, kill, pause, resume, delete and --version. Every call uses the driver's state root and JSON
 * logging, so runc's own error message can be quoted in full.
 */
import { DriverError } from '../driver.js';
import { errText } from '../common/exit.js';
import { runCommand, type RunResult } from './host.js';

export interface RuncState {
  id: string;
  pid: number;
  /** created | running | paused | stopped */
  status: string;
  bundle: string;
}

/** runc's error from its JSON log lines on stderr (the last `error`/`fatal` message), else the raw text. */
export function runcError(stderr: string): string {
  let msg: string | undefined;
  const plain: string[] = [];
  for (const line of stderr.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    if (t.startsWith('{')) {
      try {
        const j = JSON.parse(t) as { level?: string; msg?: string };
        if ((j.level === 'error' || j.level === 'fatal') && j.msg) msg = j.msg;
        continue;
      } catch {
        /* not JSON */
      }
    }
    plain.push(t);
  }
  return msg ?? plain.join('; ');
}

export class Runc {
  constructor(
    readonly bin: string,
    readonly root: string,
  ) {}

  /** Global arguments for every runc invocation. */
  globalArgs(logFile?: string): string[] {
    return ['--root', this.root, '--log-format', 'json', ...(logFile ? ['--log', logFile] : [])];
  }

  async exec(args: string[], timeoutMs = 30_000): Promise<RunResult> {
    try {
      return await runCommand(this.bin, [...this.globalArgs(), ...args], { timeoutMs });
    } catch (err) {
      throw new DriverError(`could not run ${this.bin} (${errText(err)})`, false);
    }
  }

  async version(): Promise<{ version: string; spec?: string; text: string }> {
    const r = await runCommand(this.bin, ['--version'], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(runcError(r.stderr) || `runc --version exited with ${r.code ?? r.signal}`);
    const version = /runc version (\S+)/.exec(r.stdout)?.[1] ?? r.stdout.trim().split('\n')[0] ?? 'unknown';
    const spec = /spec: (\S+)/.exec(r.stdout)?.[1];
    return { version, ...(spec ? { spec } : {}), text: r.stdout };
  }

  /** The container's state, or undefined when runc does not know it. */
  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.exec(['state', id]);
    if (r.code !== 0) {
      if (/does not exist|not exist/i.test(r.stderr)) return undefined;
      throw new DriverError(`runc state ${id} failed: ${runcError(r.stderr)}`, false);
    }
    return JSON.parse(r.stdout) as RuncState;
  }

  /** Signal the container's init (or with `all` every process of it). False when it is not running. */
  async kill(id: string, signal: string, all = false): Promise<boolean> {
    const r = await this.exec(['kill', ...(all ? ['--all'] : []), id, signal.replace(/^SIG/, '')]);
    if (r.code === 0) return true;
    const why = runcError(r.stderr);
    if (/not running|does not exist|container not|process already finished|no such process/i.test(why)) return false;
    throw new DriverError(`runc kill ${id} ${signal} failed: ${why}`, false);
  }

  async pause(id: string): Promise<void> {
    const r = await this.exec(['pause', id]);
    if (r.code !== 0) throw new DriverError(`could not freeze task ${id}: runc pause failed: ${runcError(r.stderr)}`, false);
  }

  async resume(id: string): Promise<void> {
    const r = await this.exec(['resume', id]);
    if (r.code !== 0) throw new DriverError(`could not thaw task ${id}: runc resume failed: ${runcError(r.stderr)}`, false);
  }

  /** Delete the container (killing what is left with `force`); fine when runc does not know it. */
  async delete(id: string, force = true): Promise<void> {
    const r = await this.exec(['delete', ...(force ? ['--force'] : []), id]);
    if (r.code === 0) return;
    const why = runcError(r.stderr);
    if (/does not exist/i.test(why)) return;
    throw new DriverError(`runc delete ${id} failed: ${why}`, false);
  }
}
