// Service benchmarks of issue 3: convergence (100 replicas on one node; scale 100 → 200) and
// failover (3 nodes, 30 replicas, kill -9 one agent → 30 running again; median of 5 runs).
// Real processes throughout: `yun up`, `yun agent` on 127.0.0.2/127.0.0.3, `sleep` tasks. The
// comparison with swarm mode (oci containers against Docker's, measured in the same run) is in
// containers.bench.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startAgent, type AgentProcess } from '../test/helpers/agents.js';
import { ROOT, median, row, startCloudProcess, type CloudProcess } from './lib/cloud-process.js';

const TARGETS = { create100Ms: 3000, scale200Ms: 2000, failoverMedianMs: 10_000 };

async function runningCount(c: CloudProcess, serviceId: string, onNodes?: Set<string>): Promise<number> {
  const r = await c.api<{ items: { node_id: string }[] }>('GET', `/v1/tasks?service_id=${serviceId}&desired_state=running&state=running&limit=1000`);
  return onNodes ? r.body.items.filter((t) => onNodes.has(t.node_id)).length : r.body.items.length;
}

async function waitRunning(c: CloudProcess, serviceId: string, n: number, timeoutMs: number, onNodes?: Set<string>): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if ((await runningCount(c, serviceId, onNodes)) >= n) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`not ${n} running within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function waitGone(c: CloudProcess, serviceId: string, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while ((await c.api<{ items: unknown[] }>('GET', `/v1/tasks?service_id=${serviceId}&limit=1`)).body.items.length > 0) {
    if (Date.now() - t0 > timeoutMs) throw new Error('tasks not removed in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function convergence(results: Record<string, unknown>): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'yun-bench-svc-'));
  const c = await startCloudProcess(dir);
  try {
    await c.api('PATCH', '/v1/projects/admin/quotas', { version: (await c.api('GET', '/v1/projects/admin/quotas')).body.version, tasks: -1, services: -1 });
    const t0 = performance.now();
    const r = await c.api<{ id: string; version: number }>('POST', '/v1/services', { name: 'conv', replicas: 100, task: { command: ['sleep', '3600'] } });
    if (r.status !== 201) throw new Error(`create failed: ${JSON.stringify(r.body)}`);
    await waitRunning(c, r.body.id, 100, 60_000);
    const create100 = performance.now() - t0;
    const svc = (await c.api<{ version: number }>('GET', `/v1/services/${r.body.id}`)).body;
    const t1 = performance.now();
    await c.api('PATCH', `/v1/services/${r.body.id}`, { version: svc.version, replicas: 200 });
    await waitRunning(c, r.body.id, 200, 60_000);
    const scale200 = performance.now() - t1;
    const t2 = performance.now();
    await c.api('DELETE', `/v1/services/${r.body.id}`);
    await waitGone(c, r.body.id);
    const remove200 = performance.now() - t2;
    results.convergence = { create100_ms: Math.round(create100), scale100to200_ms: Math.round(scale200), remove200_ms: Math.round(remove200) };
    return [
      row('create --replicas 100 (sleep) → all running', `${(create100 / 1000).toFixed(2)} s`, '≤ 3 s', create100 <= TARGETS.create100Ms),
      row('scale 100 → 200 → all running', `${(scale200 / 1000).toFixed(2)} s`, '≤ 2 s', scale200 <= TARGETS.scale200Ms),
      row('rm (200 tasks stopped and removed)', `${(remove200 / 1000).toFixed(2)} s`, '', undefined),
    ];
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function failover(results: Record<string, unknown>, runs = 5): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'yun-bench-fo-'));
  const c = await startCloudProcess(dir);
  const agents: AgentProcess[] = [];
  try {
    const token = (await c.api<{ token: string }>('GET', '/v1/cluster/join-tokens/worker')).body.token;
    agents.push(await startAgent({ url: c.url, token, address: '127.0.0.2' }));
    agents.push(await startAgent({ url: c.url, token, address: '127.0.0.3' }));
    const nodes = (await c.api<{ items: { id: string; address: string; status: string }[] }>('GET', '/v1/nodes')).body.items;
    const times: number[] = [];
    for (let run = 0; run < runs; run++) {
      const r = await c.api<{ id: string }>('POST', '/v1/services', { name: `fo${run}`, replicas: 30, task: { command: ['sleep', '3600'], stop_grace_period_ms: 1000 } });
      await waitRunning(c, r.body.id, 30, 60_000);
      const victimIdx = run % 2;
      const victim = agents[victimIdx]!;
      const victimNode = nodes.find((n) => n.address === victim.address)!.id;
      const live = new Set(nodes.filter((n) => n.id !== victimNode).map((n) => n.id));
      const t0 = performance.now();
      await victim.kill9();
      await waitRunning(c, r.body.id, 30, 60_000, live);
      const ms = performance.now() - t0;
      times.push(ms);
      // Bring the node back (same data dir) and let it settle before the next run.
      agents[victimIdx] = await startAgent({ url: c.url, address: victim.address, dataDir: victim.dataDir });
      await c.api('DELETE', `/v1/services/${r.body.id}`);
      await waitGone(c, r.body.id);
      const t1 = Date.now();
      while ((await c.api<{ items: { status: string }[] }>('GET', '/v1/nodes')).body.items.some((n) => n.status !== 'ready')) {
        if (Date.now() - t1 > 20_000) throw new Error('node did not come back');
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    const med = median(times);
    results.failover = { runs_ms: times.map(Math.round), median_ms: Math.round(med) };
    return [
      row(`failover: kill -9 agent, 30 replicas → 30 running (median of ${runs})`, `${(med / 1000).toFixed(2)} s`, '≤ 10 s', med <= TARGETS.failoverMedianMs),
      row('  runs', times.map((t) => (t / 1000).toFixed(1)).join(' '), '', undefined),
      row('  ratio to swarm defaults (≈ 20 s)', `${(20_000 / med).toFixed(1)}× faster`, '', undefined),
    ];
  } finally {
    for (const a of agents) await a.stop().catch(() => undefined);
    await c.stop();
    for (const a of agents) rmSync(a.dataDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: Record<string, unknown> = { at: new Date().toISOString() };
const lines = [...(await convergence(results)), ...(await failover(results))];
console.log('\nServices (real yun up + agents on loopback, sleep tasks, process driver)');
console.log(row('figure', 'value', 'target', undefined));
for (const l of lines) console.log(l);
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'services.json'), JSON.stringify(results, null, 2));
