// A manager as a real process (`yun up` in a data dir, on a fixed loopback port), for tests that
// kill it (SIGKILL) and start it again on the same data dir. Every manager started is in `managers`,
// for the test's cleanup (stopManager, by pid).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { waitFor } from './services.js';

export const YUN = join(process.cwd(), 'bin', 'yun.js');

/** The environment a child starts from: no YUN_* settings and no proxies from the caller. */
export function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('YUN_') || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

export function envFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Manager {
  child: ChildProcess;
  pid: number;
  url: string;
  output: () => string;
  exited: Promise<void>;
}

export const managers: Manager[] = [];

/** `yun up --data-dir DIR --listen 127.0.0.1:PORT`, once its `API:` line is printed. */
export async function startManager(dataDir: string, port: number): Promise<Manager> {
  const child = spawn(process.execPath, [YUN, 'up', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--log-level', 'info'], { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const m: Manager = { child, pid: child.pid!, url: '', output: () => out, exited };
  managers.push(m);
  const url = await waitFor('yun up to print its API line', async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`yun up exited early:\n${out}`);
    return /^\s*API:\s+(\S+)\s*$/m.exec(out)?.[1];
  }, 20_000, 50).catch((e: Error) => { throw new Error(`${e.message}\n${out}`); });
  m.url = url;
  return m;
}

export async function stopManager(m: Manager, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (m.child.exitCode !== null || m.child.signalCode !== null) return;
  m.child.kill(signal);
  const t = setTimeout(() => { if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL'); }, graceMs);
  await m.exited;
  clearTimeout(t);
}

