// Shared harness for the swarm-mode end-to-end tests (test/services-*.test.ts): a cluster made of a
// manager (in-process, or any API URL) and real `yun agent` processes on loopback addresses, with
// small API wrappers for services, tasks and nodes, and bookkeeping of everything a test creates
// (services, agents, task pids, temp dirs) so that `cleanup()` can remove it all even after a failure.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { alive, removeDir, startAgent, waitFor, type AgentProcess } from './agents.js';
import type { Api, Res } from './cloud.js';

export { alive, waitFor };

export interface Task {
  id: string;
  name: string;
  service_id: string;
  slot: number | null;
  node_id: string | null;
  desired_state: string;
  status: { state: string; message: string; error: string | null; exit_code: number | null; timestamp: string; pid?: number | null; health?: string | null; started_at?: string | null };
  shutdown_reason: string | null;
  spec_version: number;
  spec: { command: string[]; health_check?: { command?: string[] } };
  created_at: string;
}

export interface Service {
  id: string;
  name: string;
  version: number;
  replicas: number;
  mode: string;
  spec: Record<string, any>;
  spec_version: number;
  update_status: { state: string; message: string } | null;
  tasks?: { running: number; desired: number };
}

export interface NodeView {
  id: string;
  name: string;
  address: string;
  status: string;
  availability: string;
  version: number;
  role: string;
  last_heartbeat: string | null;
}

// ---- processes -------------------------------------------------------------------------------------

interface ProcStat { state: string; ppid: number; pgrp: number; starttime: string }

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]), starttime: f[19]! };
  } catch {
    return undefined;
  }
}

/** `alive(pid)` (kill -0), and not a zombie: an exited process whose parent has not reaped it yet is gone. */
export function running(pid: number): boolean {
  if (!alive(pid)) return false;
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z' && st.state !== 'X';
}

/** A process's argv, with argv[0] reduced to its base name (the driver execs the resolved path). */
export function cmdline(pid: number): string[] {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    if (argv[0]) argv[0] = argv[0].slice(argv[0].lastIndexOf('/') + 1);
    return argv;
  } catch {
    return [];
  }
}

/** The parent of a live process (for a task's command: the process driver's supervisor shim). */
export function parentOf(pid: number): number | undefined {
  return procStat(pid)?.ppid;
}

/** Task processes seen by any test, with their start time so a recycled pid is never killed. */
const seenPids = new Map<number, string>();

export function trackPid(pid: number | null | undefined): void {
  if (!pid || seenPids.has(pid)) return;
  const st = procStat(pid);
  if (st) seenPids.set(pid, st.starttime);
}

/** Kill (SIGKILL) every task process seen that is still the same process, and its supervisor shim. */
export function killTrackedPids(): number[] {
  const killed: number[] = [];
  for (const [pid, start] of seenPids) {
    const st = procStat(pid);
    if (!st || st.starttime !== start || st.state === 'Z') continue;
    try { process.kill(pid, 'SIGKILL'); killed.push(pid); } catch { /* gone */ }
    // The command's process group is led by the process driver's shim: kill it too if it is one.
    if (st.pgrp > 1 && st.pgrp !== pid && cmdline(st.pgrp).includes('yun-shim')) {
      try { process.kill(st.pgrp, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  return killed;
}

/** Stop an agent process: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
export async function stopAgentProcess(a: AgentProcess, graceMs = 5000): Promise<void> {
  const c = a.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, graceMs);
  await exited;
  clearTimeout(t);
}

function nodeCgroupDirs(nodeIds: string[]): string[] {
  const roots: string[] = [];
  try {
    for (const c of readdirSync('/sys/fs/cgroup')) roots.push(join('/sys/fs/cgroup', c, 'yunstack'));
  } catch { return []; }
  roots.push('/sys/fs/cgroup/yunstack');
  return roots.flatMap((r) => nodeIds.map((id) => join(r, id)));
}

/**
 * Kill (SIGKILL) every process left in the cgroups the process driver made for these nodes: task
 * processes this harness never saw a pid for (a test that failed half way) are found there.
 */
export function killNodeCgroupProcs(nodeIds: string[]): number[] {
  const killed: number[] = [];
  const walk = (dir: string) => {
    let entries: string[] = [];
    try { entries = readdirSync(dir); } catch { return; }
    if (entries.includes('cgroup.procs')) {
      let text = '';
      try { text = readFileSync(join(dir, 'cgroup.procs'), 'utf8'); } catch { /* gone */ }
      for (const line of text.split('\n')) {
        const pid = Number(line);
        if (pid > 1 && pid !== process.pid) { try { process.kill(pid, 'SIGKILL'); killed.push(pid); } catch { /* gone */ } }
      }
    }
    for (const e of entries) {
      const p = join(dir, e);
      try { if (statSync(p).isDirectory()) walk(p); } catch { /* gone */ }
    }
  };
  for (const d of nodeCgroupDirs(nodeIds)) walk(d);
  return killed;
}

/** Remove the (empty) cgroups the process driver made for these nodes (cgroup v1 and v2), best effort. */
export function removeNodeCgroups(nodeIds: string[]): void {
  const rmTree = (dir: string) => {
    let entries: string[] = [];
    try { entries = readdirSync(dir); } catch { return; }
    for (const e of entries) {
      const p = join(dir, e);
      try { if (statSync(p).isDirectory()) rmTree(p); } catch { /* gone */ }
    }
    try { rmdirSync(dir); } catch { /* busy or gone */ }
  };
  for (const d of nodeCgroupDirs(nodeIds)) rmTree(d);
}

// ---- the cluster ------------------------------------------------------------------------------------

export const GiB = 1024 ** 3;

export class Cluster {
  readonly agents: AgentProcess[] = [];
  readonly services = new Set<string>();
  readonly dataDirs = new Set<string>();
  readonly nodeIds = new Set<string>();
  joinToken = '';

  constructor(public api: Api, public token: string, public url: string) {}

  async req<T = any>(method: string, path: string, body?: unknown): Promise<Res<T>> {
    return this.api.req<T>(method, path, { token: this.token, ...(body !== undefined ? { body } : {}) });
  }

  /** A request that must answer `status`; returns the body. */
  async ok<T = any>(method: string, path: string, body?: unknown, status = 200): Promise<T> {
    const r = await this.req<T>(method, path, body);
    assert.equal(r.status, status, `${method} ${path}: expected ${status}, got ${r.status}: ${r.text}`);
    return r.body;
  }

  async fetchJoinToken(): Promise<string> {
    this.joinToken = (await this.ok<{ token: string }>('GET', '/v1/cluster/join-tokens/worker')).token;
    return this.joinToken;
  }

  /** Start a real `yun agent` on `address` and wait until its node is ready. */
  async addAgent(address: string, opts: { memory?: string; cpus?: number; dataDir?: string } = {}): Promise<AgentProcess> {
    if (!this.joinToken) await this.fetchJoinToken();
    const a = await startAgent({ url: this.url, token: this.joinToken, address, ...opts });
    this.agents.push(a);
    this.dataDirs.add(a.dataDir);
    const id = nodeIdOfDir(a.dataDir);
    this.nodeIds.add(id);
    await waitFor(`node ${id} (${address}) ready`, async () => (await this.node(id)).status === 'ready', 15_000);
    return a;
  }

  /** Start an agent again on its data dir (it has joined already: no token needed). */
  async restartAgent(old: AgentProcess): Promise<AgentProcess> {
    const a = await startAgent({ url: this.url, address: old.address, dataDir: old.dataDir });
    this.agents.push(a);
    return a;
  }

  async nodes(): Promise<NodeView[]> {
    return (await this.ok<{ items: NodeView[] }>('GET', '/v1/nodes?limit=1000')).items;
  }

  async node(id: string): Promise<NodeView> {
    return this.ok<NodeView>('GET', `/v1/nodes/${id}`);
  }

  async setAvailability(id: string, availability: 'active' | 'pause' | 'drain'): Promise<void> {
    for (let i = 0; ; i++) {
      const n = await this.node(id);
      const r = await this.req('PATCH', `/v1/nodes/${id}`, { version: n.version, availability });
      if (r.status === 200) return;
      if (r.status !== 409 || i >= 20) assert.fail(`PATCH /v1/nodes/${id} availability=${availability}: ${r.status} ${r.text}`);
    }
  }

  async createService(body: Record<string, unknown>): Promise<Service> {
    const s = await this.ok<Service>('POST', '/v1/services', body, 201);
    this.services.add(s.id);
    return s;
  }

  async service(id: string): Promise<Service> {
    return this.ok<Service>('GET', `/v1/services/${id}`);
  }

  /** PATCH a service at its current version (retried on a version conflict with the orchestrator). */
  async updateService(id: string, patch: Record<string, unknown>): Promise<Service> {
    for (let i = 0; ; i++) {
      const s = await this.service(id);
      const r = await this.req<Service>('PATCH', `/v1/services/${id}`, { version: s.version, ...patch });
      if (r.status === 200) return r.body;
      if (r.status !== 409 || i >= 20) assert.fail(`PATCH /v1/services/${id}: ${r.status} ${r.text}`);
    }
  }

  /** Every task of a service (optionally filtered); every pid seen is remembered for cleanup. */
  async tasks(serviceId: string, desired?: string): Promise<Task[]> {
    const q = `service_id=${serviceId}${desired ? `&desired_state=${desired}` : ''}&limit=1000`;
    const items = (await this.ok<{ items: Task[] }>('GET', `/v1/tasks?${q}`)).items;
    for (const t of items) trackPid(t.status.pid);
    return items;
  }

  /** Tasks desired running and observed running. */
  async runningTasks(serviceId: string): Promise<Task[]> {
    return (await this.tasks(serviceId, 'running')).filter((t) => t.status.state === 'running');
  }

  /** Wait until exactly `n` tasks are desired and observed running (and `extra` holds); returns them. */
  async waitRunning(serviceId: string, n: number, timeoutMs = 30_000, extra: (ts: Task[]) => boolean = () => true): Promise<Task[]> {
    let last: Task[] = [];
    try {
      return await waitFor(`${n} running tasks of service ${serviceId}`, async () => {
        const all = await this.tasks(serviceId, 'running');
        last = all;
        const run = all.filter((t) => t.status.state === 'running');
        return all.length === n && run.length === n && run.every((t) => t.status.pid) && extra(run) ? run : undefined;
      }, timeoutMs);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nlast tasks desired running: ${describeTasks(last)}`);
    }
  }

  /** DELETE a service and wait until its tasks' processes are gone. */
  async removeService(id: string, timeoutMs = 20_000): Promise<void> {
    const pids = (await this.tasks(id).catch(() => [] as Task[])).map((t) => t.status.pid).filter((p): p is number => !!p);
    const r = await this.req('DELETE', `/v1/services/${id}`);
    if (r.status !== 204 && r.status !== 404) assert.fail(`DELETE /v1/services/${id}: ${r.status} ${r.text}`);
    this.services.delete(id);
    await waitFor(`processes of service ${id} to exit (${pids.join(', ')})`, async () => pids.every((p) => !running(p)), timeoutMs);
  }

  /**
   * Everything this cluster created, in order: services (their tasks stop through the agents), agents
   * (SIGTERM, then SIGKILL), task processes still alive (by pid), cgroups, data dirs. Never throws.
   */
  async cleanup(): Promise<void> {
    for (const id of [...this.services]) await this.removeService(id, 15_000).catch(() => undefined);
    for (const a of this.agents) await stopAgentProcess(a).catch(() => undefined);
    this.agents.length = 0;
  }

  /** After the manager is closed as well: kill left-over task processes, remove cgroups and dirs. */
  async finalCleanup(): Promise<void> {
    const killed = [...killTrackedPids(), ...killNodeCgroupProcs([...this.nodeIds])];
    const deadline = Date.now() + 3000;
    while (killed.some((p) => running(p)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    removeNodeCgroups([...this.nodeIds]);
    for (const d of this.dataDirs) removeDir(d);
  }
}

export function nodeIdOfDir(dataDir: string): string {
  return (JSON.parse(readFileSync(join(dataDir, 'node.json'), 'utf8')) as { node_id: string }).node_id;
}

export function describeTasks(ts: Task[]): string {
  return ts.map((t) => `${t.name}@${t.node_id ?? '-'} desired=${t.desired_state} state=${t.status.state} pid=${t.status.pid ?? '-'} health=${t.status.health ?? '-'} msg=${JSON.stringify(t.status.message)}${t.status.error ? ` err=${JSON.stringify(t.status.error)}` : ''}${t.shutdown_reason ? ` reason=${JSON.stringify(t.shutdown_reason)}` : ''}`).join('\n  ');
}

/** A long-running command every task can run (the seconds vary so that a change is a new task spec). */
export function sleepCmd(seconds = 300): string[] {
  return ['sleep', String(seconds)];
}
