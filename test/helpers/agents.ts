import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = join(process.cwd(), 'bin', 'yun.js');

/** A real `yun agent` process on a loopback address, with its own data directory. */
export interface AgentProcess {
  address: string;
  dataDir: string;
  child: ChildProcess;
  pid: number;
  output: () => string;
  /** kill -9 (no cleanup: tasks keep running). */
  kill9(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
}

export async function startAgent(opts: { url: string; token?: string; address: string; dataDir?: string; cpus?: number; memory?: string; env?: NodeJS.ProcessEnv; dnsPort?: number; tunnelPort?: number }): Promise<AgentProcess> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), `yun-agent-${opts.address}-`));
  const args = [BIN, 'agent', '--advertise-addr', opts.address, '--data-dir', dataDir, '--log-level', 'info', '--dns-port', String(opts.dnsPort ?? 0), '--dataplane-port', String(opts.tunnelPort ?? 0)];
  if (opts.token) args.push('--join', opts.url, '--token', opts.token);
  if (opts.cpus) args.push('--cpus', String(opts.cpus));
  if (opts.memory) args.push('--memory', opts.memory);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) } });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 15_000;
  while (!out.includes('Connected to the manager')) {
    if (child.exitCode !== null) throw new Error(`agent ${opts.address} exited early:\n${out}`);
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`agent ${opts.address} did not connect within 15 s:\n${out}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    address: opts.address, dataDir, child, pid: child.pid!, output: () => out,
    async kill9() { if (child.exitCode === null) { child.kill('SIGKILL'); await exited; } },
    async stop() { if (child.exitCode === null) { child.kill('SIGTERM'); await exited; } },
  };
}

export function nodeIdOf(a: AgentProcess): string {
  return (JSON.parse(readFileSync(join(a.dataDir, 'node.json'), 'utf8')) as { node_id: string }).node_id;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Poll `fn` until it returns a truthy value or the deadline passes (then throw with `what`). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Is a process alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Remove an agent's data directory once nothing is mounted under it any more: a task's overlay is
 * unmounted by its agent a moment after the task is removed. Mounts this test left behind after
 * 15 s are detached (lazily) so the directory can go.
 */
export async function removeAgentDir(dir: string): Promise<void> {
  const { readFileSync: read } = await import('node:fs');
  const { execFileSync } = await import('node:child_process');
  // The node's nftables table (fast path): an agent killed with -9 could not remove it.
  const nodeId = (() => {
    try { return (JSON.parse(read(`${dir}/node.json`, 'utf8')) as { node_id: string }).node_id; } catch { /* not an agent dir */ }
    try { return read(`${dir}/node-id`, 'utf8').trim(); } catch { return undefined; }
  })();
  if (nodeId) {
    const { nftTableName } = await import('../../src/dataplane/nft.js');
    try { execFileSync('nft', ['delete', 'table', 'ip', nftTableName(nodeId)], { stdio: 'ignore' }); } catch { /* none, or no nft */ }
  }
  const mountsUnder = () => read('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`));
  const deadline = Date.now() + 15_000;
  while (mountsUnder().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const m of mountsUnder()) {
    try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
  rmSync(dir, { recursive: true, force: true });
}
