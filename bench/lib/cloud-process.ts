// A real `yun up` process for benchmarks: spawn, wait for its URL, log in, and stop it by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const YUN_BIN = join(ROOT, 'bin', 'yun.js');

export interface CloudProcess {
  child: ChildProcess;
  url: string;
  dataDir: string;
  token: string;
  agent: Agent;
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startCloudProcess(dataDir: string, extraArgs: string[] = []): Promise<CloudProcess> {
  const child = spawn(process.execPath, [YUN_BIN, 'up', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--log-level', process.env.YUN_BENCH_LOG_LEVEL ?? 'warn', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); if (process.env.YUN_BENCH_DEBUG) process.stderr.write(`[yun up] ${c.toString()}`); });
  const deadline = Date.now() + 30_000;
  let url: string | undefined;
  while (!url) {
    const m = /API:\s+(https:\/\/127\.0\.0\.1:\d+)/.exec(out);
    if (m) url = m[1];
    else if (child.exitCode !== null) throw new Error(`yun up exited: ${out}`);
    else if (Date.now() > deadline) throw new Error(`yun up did not print its URL: ${out}`);
    else await new Promise((r) => setTimeout(r, 20));
  }
  const env = readFileSync(join(dataDir, 'admin.env'), 'utf8');
  const pw = /YUN_PASSWORD=(.*)/.exec(env)![1]!;
  const agent = new Agent({ connect: { ca: readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8') } });
  const login = await request(`${url}/v1/auth/tokens`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: pw, project: 'admin' }) });
  await login.body.text();
  const token = String(login.headers['x-subject-token']);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child, url, dataDir, token, agent,
    async api(method, path, body) {
      const r = await request(`${url}${path}`, { method: method as 'GET', dispatcher: agent, headers: { 'x-auth-token': token, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
      const text = await r.body.text();
      return { status: r.statusCode, body: text ? JSON.parse(text) : undefined };
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) {
        child.kill(signal);
        await exited;
      }
      await agent.close();
    },
  };
}

export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(xs: number[]): number {
  return pct([...xs].sort((a, b) => a - b), 50);
}

export function row(name: string, value: string, target: string, ok: boolean | undefined): string {
  return `${name.padEnd(52)} ${value.padStart(14)}   ${target.padEnd(14)} ${ok === undefined ? '' : ok ? 'PASS' : 'MISS'}`;
}
