// Scheduler benchmark (issue 3, "Benchmarks"): placement throughput of the pure scheduler over
// SIMULATED nodes — in-process snapshots (SchedNode objects built with toSchedNode from node records
// made up here), not agents, not the store, not the network. It measures `schedule()` and the
// conversion of stored tasks (`toSchedTask`), which is what one SchedulerRunner pass does in memory.
//
//   - 5,000 nodes with labels (zone a–d, rack, disk), a few managers, some down/drained/paused;
//   - 1,000,000 tasks of 1,000 services: constraints (==, != on labels and role), spread preferences
//     (zone; zone then rack), reservations (cpu, memory), max replicas per node, host-mode ports, and
//     one service no node can take (its tasks stay pending, with the reason);
//   - target ≥ 20,000 placements/s on this 2-core machine (anchors: Nomad C1M 3,750/s with 5 servers;
//     kube-scheduler perf tests 680–1,100 pods/s); memory used (V8 heap and RSS deltas);
//   - then, if cheap: reconcile throughput for a 1,000-replica service (create, steady state, a
//     rolling-update step), and a stress figure: spread tasks that no longer fit anywhere.
//
// Tasks are built and scheduled in batches (one `schedule()` call per batch, like successive runner
// passes over the same snapshot) to keep memory bounded. Prints a table with the target beside each
// figure, writes bench/results/scheduler.json, and exits 0 even when a target is missed.
//
// Knobs (environment): YUN_BENCH_SCHED_NODES (5000), YUN_BENCH_SCHED_TASKS (1000000),
// YUN_BENCH_SCHED_SERVICES (1000), YUN_BENCH_SCHED_BATCH (100000), YUN_BENCH_SCHED_SEED (42),
// YUN_BENCH_SCHED_STRESS_TASKS (3000).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { schedule } from '../src/scheduler/scheduler.js';
import { toSchedNode, toSchedTask } from '../src/scheduler/runner.js';
import { satisfies } from '../src/scheduler/constraints.js';
import type { SchedNode, SchedTask } from '../src/scheduler/types.js';
import { normalizeSpec, type ServiceSpec, type ServiceSpecInput } from '../src/services/spec.js';
import type { TaskData } from '../src/services/task.js';
import type { StoredObject } from '../src/store/store.js';
import { reconcile, type RNode, type RService, type RTask } from '../src/orchestrator/reconcile.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RESULTS_DIR = join(ROOT, 'bench', 'results');

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, not "${v}"`);
  return n;
}

const CFG = {
  nodes: envInt('YUN_BENCH_SCHED_NODES', 5000),
  tasks: envInt('YUN_BENCH_SCHED_TASKS', 1_000_000),
  services: envInt('YUN_BENCH_SCHED_SERVICES', 1000),
  batch: envInt('YUN_BENCH_SCHED_BATCH', 100_000),
  seed: envInt('YUN_BENCH_SCHED_SEED', 42),
  stressTasks: envInt('YUN_BENCH_SCHED_STRESS_TASKS', 3000),
  reconcileReplicas: 1000,
  reconcileRepeats: 20,
};

const TARGETS = { placementsPerSec: 20_000 };
const ANCHORS = { nomadC1MPerSec: 3750, kubeSchedulerPerSec: [680, 1100] };

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const ZONES = ['a', 'b', 'c', 'd'];
const RACKS_PER_ZONE = 25;

// ---- helpers ------------------------------------------------------------------------------------

/** mulberry32: a small deterministic PRNG, so every run builds the same cluster and services. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = () => undefined;
    }
  }
  gcFn();
  gcFn();
}

const mb = (bytes: number): number => Math.round((bytes / MiB) * 10) / 10;
const r1 = (x: number): number => Math.round(x * 10) / 10;
const r0 = (x: number): number => Math.round(x);
function mem(): { heapUsedMb: number; rssMb: number } {
  const m = process.memoryUsage();
  return { heapUsedMb: mb(m.heapUsed), rssMb: mb(m.rss) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
}

function gitRev(): string | undefined {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${rev}+dirty-src` : rev;
  } catch {
    return undefined;
  }
}

// ---- the simulated cluster ------------------------------------------------------------------------

interface NodeMix { down: number; drain: number; pause: number; managers: number }

function buildNodes(rand: () => number): { nodes: SchedNode[]; mix: NodeMix } {
  const mix: NodeMix = { down: 0, drain: 0, pause: 0, managers: 0 };
  const nodes: SchedNode[] = [];
  for (let i = 0; i < CFG.nodes; i++) {
    const zone = ZONES[i % ZONES.length]!;
    const rack = `${zone}-r${String(Math.floor(rand() * RACKS_PER_ZONE)).padStart(2, '0')}`;
    const role = i < 3 ? 'manager' : 'worker';
    const x = rand();
    const status = x < 0.005 ? 'down' : 'ready';
    const availability = x >= 0.005 && x < 0.01 ? 'drain' : x >= 0.01 && x < 0.015 ? 'pause' : 'active';
    if (status === 'down') mix.down++;
    if (availability === 'drain') mix.drain++;
    if (availability === 'pause') mix.pause++;
    if (role === 'manager') mix.managers++;
    const id = `node${String(i).padStart(5, '0')}`;
    const rec: StoredObject = {
      kind: 'node', id, name: `host-${i}`, project_id: '', version: 1, created_at: '', updated_at: '', revision: 1,
      data: {
        role, status, availability,
        labels: { zone, rack, disk: rand() < 0.5 ? 'ssd' : 'hdd' },
        resources: { cpus: rand() < 0.5 ? 32 : 64, memory_bytes: (rand() < 0.5 ? 128 : 256) * GiB },
        drivers: { process: { available: true }, oci: { available: true }, docker: { available: false, reason: 'no docker daemon' } },
      },
    };
    nodes.push(toSchedNode(rec));
  }
  return { nodes, mix };
}

// ---- services -------------------------------------------------------------------------------------

type Kind = 'plain' | 'zone==' | 'zone!=,ssd' | 'role==worker' | 'spread zone' | 'spread zone,rack' | 'max 1/node' | 'host port' | 'impossible';

interface Service { id: string; kind: Kind; reserves: boolean; spec: ServiceSpec; replicas: number }

function buildServices(rand: () => number): Service[] {
  const out: Service[] = [];
  const per = Math.floor(CFG.tasks / CFG.services);
  let rest = CFG.tasks - per * CFG.services;
  for (let i = 0; i < CFG.services; i++) {
    const replicas = per + (rest-- > 0 ? 1 : 0);
    const x = i === CFG.services - 1 ? -1 : rand();
    const zone = ZONES[Math.floor(rand() * ZONES.length)]!;
    let kind: Kind;
    const placement: { constraints: string[]; preferences: { spread: string }[]; max_replicas_per_node: number } = { constraints: [], preferences: [], max_replicas_per_node: 0 };
    const ports: { target: number; published: number; mode: 'host'; protocol: 'tcp' }[] = [];
    if (x < 0) { kind = 'impossible'; placement.constraints.push('node.labels.zone==z'); }
    else if (x < 0.33) kind = 'plain';
    else if (x < 0.53) { kind = 'zone=='; placement.constraints.push(`node.labels.zone==${zone}`); }
    else if (x < 0.63) { kind = 'zone!=,ssd'; placement.constraints.push(`node.labels.zone!=${zone}`, 'node.labels.disk==ssd'); }
    else if (x < 0.68) { kind = 'role==worker'; placement.constraints.push('node.role==worker'); }
    else if (x < 0.88) { kind = 'spread zone'; placement.preferences.push({ spread: 'node.labels.zone' }); }
    else if (x < 0.95) { kind = 'spread zone,rack'; placement.preferences.push({ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }); }
    else if (x < 0.98) { kind = 'max 1/node'; placement.max_replicas_per_node = 1; }
    else { kind = 'host port'; ports.push({ target: 8080, published: 10000 + i, mode: 'host', protocol: 'tcp' }); }
    const reserves = kind !== 'impossible' && rand() < 0.3;
    const input: ServiceSpecInput = {
      replicas,
      task: {
        command: ['sleep', 'infinity'],
        resources: { reservations: reserves ? { cpu: 0.01 + Math.floor(rand() * 5) / 100, memory_bytes: (16 + Math.floor(rand() * 4) * 16) * MiB } : {} },
        placement,
      },
      endpoint: { ports },
    };
    out.push({ id: `svc${String(i).padStart(4, '0')}`, kind, reserves, spec: normalizeSpec(input), replicas });
  }
  return out;
}

/** Pending TaskData for tasks [from, to) of the whole run (services in creation order). */
function* taskBatches(services: Service[], size: number): Generator<{ id: string; data: TaskData }[]> {
  let batch: { id: string; data: TaskData }[] = [];
  const ts = new Date(0).toISOString();
  let n = 0;
  for (const s of services) {
    const ports = s.spec.endpoint.ports.map((p) => ({ ...p }));
    for (let slot = 1; slot <= s.replicas; slot++) {
      batch.push({
        id: `t${n++}`,
        data: {
          service_id: s.id, service_name: s.id, slot, node_id: null, pinned_node: null, desired_state: 'running',
          status: { state: 'pending', message: 'waiting to be scheduled', error: null, exit_code: null, timestamp: ts },
          spec: s.spec.task, spec_version: 1, ports, not_before: null, shutdown_reason: null,
        },
      });
      if (batch.length === size) { yield batch; batch = []; }
    }
  }
  if (batch.length) yield batch;
}

// ---- the main run ---------------------------------------------------------------------------------

interface MainRun {
  placements: number;
  unplaced: number;
  scheduleSeconds: number;
  convertSeconds: number;
  buildSeconds: number;
  batches: { tasks: number; placed: number; scheduleMs: number; convertMs: number; heapUsedMb: number; rssMb: number }[];
  memory: { baseline: ReturnType<typeof mem>; afterNodes: ReturnType<typeof mem>; peakHeapUsedMb: number; peakRssMb: number; afterRunGc: ReturnType<typeof mem> };
  unplacedReasons: Record<string, number>;
  verify: { overCommittedNodes: number; constraintViolations: number; portClashes: number; maxPerNodeViolations: number; placedOnUnusableNodes: number };
  spread: Record<string, { services: number; worstMaxMinusMin: number; meanMaxMinusMin: number; over: string }>;
  byKind: Record<string, { services: number; tasks: number; placed: number }>;
}

function runMain(nodes: SchedNode[], services: Service[], baseline: ReturnType<typeof mem>, afterNodes: ReturnType<typeof mem>): MainRun {
  const constraintsOf = new Map(services.map((s) => [s.id, toSchedTask('x', fakeData(s)).constraints]));
  const nodeIndex = new Map(nodes.map((n, i) => [n.id, i]));
  // Per service and node: how many tasks placed (as a compact array per service), for verification and spread.
  const perService = new Map<string, Uint16Array>();
  for (const s of services) perService.set(s.id, new Uint16Array(nodes.length));
  const run: MainRun = {
    placements: 0, unplaced: 0, scheduleSeconds: 0, convertSeconds: 0, buildSeconds: 0, batches: [],
    memory: { baseline, afterNodes, peakHeapUsedMb: afterNodes.heapUsedMb, peakRssMb: afterNodes.rssMb, afterRunGc: afterNodes },
    unplacedReasons: {}, verify: { overCommittedNodes: 0, constraintViolations: 0, portClashes: 0, maxPerNodeViolations: 0, placedOnUnusableNodes: 0 },
    spread: {}, byKind: {},
  };
  const usableAtStart = nodes.map((n) => n.ready && n.availability === 'active');
  const gen = taskBatches(services, CFG.batch);
  for (;;) {
    const tb0 = performance.now();
    const next = gen.next();
    if (next.done) break;
    const raw = next.value;
    const tb1 = performance.now();
    const tasks: SchedTask[] = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) tasks[i] = toSchedTask(raw[i]!.id, raw[i]!.data);
    const tc = performance.now();
    const r = schedule(tasks, nodes);
    const ts = performance.now();
    run.buildSeconds += (tb1 - tb0) / 1000;
    run.convertSeconds += (tc - tb1) / 1000;
    run.scheduleSeconds += (ts - tc) / 1000;
    run.placements += r.placements.length;
    run.unplaced += r.unplaced.length;
    const sidOf = new Map<string, string>();
    for (const t of raw) sidOf.set(t.id, t.data.service_id);
    for (const p of r.placements) {
      const sid = sidOf.get(p.taskId)!;
      const ni = nodeIndex.get(p.nodeId)!;
      perService.get(sid)![ni]! += 1;
      if (!usableAtStart[ni]) run.verify.placedOnUnusableNodes++;
      // A service's tasks are alike: check the placement against the service's constraints.
      for (const c of constraintsOf.get(sid)!) if (!satisfies(nodes[ni]!, c)) run.verify.constraintViolations++;
    }
    for (const u of r.unplaced) run.unplacedReasons[u.reason] = (run.unplacedReasons[u.reason] ?? 0) + 1;
    const m = mem();
    run.memory.peakHeapUsedMb = Math.max(run.memory.peakHeapUsedMb, m.heapUsedMb);
    run.memory.peakRssMb = Math.max(run.memory.peakRssMb, m.rssMb);
    run.batches.push({ tasks: raw.length, placed: r.placements.length, scheduleMs: r1(ts - tc), convertMs: r1(tc - tb1), heapUsedMb: m.heapUsedMb, rssMb: m.rssMb });
    process.stdout.write(`  batch ${String(run.batches.length).padStart(3)}: ${raw.length} tasks, ${r.placements.length} placed in ${r0(ts - tc)} ms (convert ${r0(tc - tb1)} ms); heap ${m.heapUsedMb} MB, RSS ${m.rssMb} MB\n`);
  }
  // ---- verify the final snapshot: capacity, ports, max per node ----
  for (const n of nodes) {
    if (n.reservedCpu > n.cpus + 1e-6 || n.reservedMemory > n.memoryBytes) run.verify.overCommittedNodes++;
  }
  for (const s of services) {
    const counts = perService.get(s.id)!;
    const max = s.spec.task.placement.max_replicas_per_node || (s.kind === 'host port' ? 1 : 0);
    if (max) for (const c of counts) if (c > max) (s.kind === 'host port' ? run.verify.portClashes++ : run.verify.maxPerNodeViolations++);
    const placed = counts.reduce((a, b) => a + b, 0);
    const k = (run.byKind[s.kind] ??= { services: 0, tasks: 0, placed: 0 });
    k.services++;
    k.tasks += s.replicas;
    k.placed += placed;
  }
  // ---- spread quality: per service, max − min over the units it spreads over ----
  const spreadOf = (s: Service): { over: string; unitOf: (i: number) => string } | undefined => {
    if (s.kind === 'spread zone') return { over: 'zone values', unitOf: (i) => nodes[i]!.labels.zone ?? '' };
    if (s.kind === 'spread zone,rack') return { over: 'zone values', unitOf: (i) => nodes[i]!.labels.zone ?? '' };
    if (s.kind === 'plain' && !s.reserves) return { over: 'eligible nodes', unitOf: (i) => String(i) };
    return undefined;
  };
  for (const s of services) {
    const sp = spreadOf(s);
    if (!sp) continue;
    const counts = perService.get(s.id)!;
    const units = new Map<string, number>();
    for (let i = 0; i < nodes.length; i++) if (usableAtStart[i]) units.set(sp.unitOf(i), (units.get(sp.unitOf(i)) ?? 0) + counts[i]!);
    const vs = [...units.values()];
    const d = Math.max(...vs) - Math.min(...vs);
    const key = `${s.kind}${s.kind === 'plain' ? ' (no reservation)' : ''}`;
    const e = (run.spread[key] ??= { services: 0, worstMaxMinusMin: 0, meanMaxMinusMin: 0, over: sp.over });
    e.meanMaxMinusMin = (e.meanMaxMinusMin * e.services + d) / (e.services + 1);
    e.services++;
    e.worstMaxMinusMin = Math.max(e.worstMaxMinusMin, d);
  }
  for (const e of Object.values(run.spread)) e.meanMaxMinusMin = r1(e.meanMaxMinusMin);
  return run;
}

const fakeCache = new Map<string, TaskData>();
function fakeData(s: Service): TaskData {
  let d = fakeCache.get(s.id);
  if (!d) {
    d = {
      service_id: s.id, service_name: s.id, slot: 1, node_id: null, desired_state: 'running',
      status: { state: 'pending', message: '', error: null, exit_code: null, timestamp: '' },
      spec: s.spec.task, spec_version: 1, ports: [], not_before: null,
    };
    fakeCache.set(s.id, d);
  }
  return d;
}

// ---- stress: spread tasks that no longer fit --------------------------------------------------------

/** Time to place/explain spread-preference tasks once every node is full for them. */
function stressUnfit(): { tasks: number; unplaced: number; ms: number; perTaskMs: number; heapTasks: number; heapMs: number } {
  const rand = prng(CFG.seed + 7);
  const { nodes } = buildNodes(rand);
  for (const n of nodes) n.reservedCpu = n.cpus; // all cpu taken
  const mk = (spread: boolean, count: number): SchedTask[] => Array.from({ length: count }, (_v, i) => ({
    id: `s${i}`, serviceId: 'stress', groupKey: `stress#${spread}`, drivers: ['process'], constraints: [], spreadOver: spread ? ['zone'] : [],
    reserveCpu: 1, reserveMemory: 0, hostPorts: [], maxReplicasPerNode: 0, requiredFeatures: [],
  }));
  const t0 = performance.now();
  const r = schedule(mk(true, CFG.stressTasks), nodes);
  const ms = performance.now() - t0;
  // The same without the spread preference (the heap path stops at the first task that does not fit).
  const h0 = performance.now();
  schedule(mk(false, CFG.stressTasks), nodes);
  const heapMs = performance.now() - h0;
  return { tasks: CFG.stressTasks, unplaced: r.unplaced.length, ms: r1(ms), perTaskMs: Math.round((ms / CFG.stressTasks) * 1000) / 1000, heapTasks: CFG.stressTasks, heapMs: r1(heapMs) };
}

// ---- reconcile throughput ---------------------------------------------------------------------------

function reconcileBench(): Record<string, { ms: number; tasksPerSec: number; plan: string }> {
  const N = CFG.reconcileReplicas;
  const now = Date.parse('2026-01-01T00:00:00Z');
  const nodes: RNode[] = Array.from({ length: 100 }, (_v, i) => ({ id: `n${i}`, name: `host-${i}`, status: 'ready', availability: 'active', role: 'worker', labels: { zone: ZONES[i % 4]! } }));
  const spec1 = normalizeSpec({ replicas: N, task: { command: ['sleep', 'infinity'] }, update_config: { parallelism: 10 } });
  const spec2 = normalizeSpec({ task: { env: { V: '2' } } }, spec1);
  const svc = (s: ServiceSpec, v: number, updating: boolean): RService => ({
    id: 'svc', name: 'big', spec: s, spec_version: v, previous_spec: updating ? spec1 : null,
    update_status: updating ? { state: 'updating', started_at: new Date(now).toISOString(), message: 'update in progress' } : null,
  });
  const running = (): RTask[] => Array.from({ length: N }, (_v, i) => ({
    id: `t${String(i).padStart(6, '0')}`, created_at: new Date(now - 60_000).toISOString(),
    data: {
      service_id: 'svc', service_name: 'big', slot: i + 1, node_id: `n${i % 100}`, pinned_node: null, desired_state: 'running',
      status: { state: 'running', message: 'started', error: null, exit_code: null, timestamp: new Date(now - 50_000).toISOString(), started_at: new Date(now - 50_000).toISOString() },
      spec: spec1.task, spec_version: 1, ports: [], not_before: null, shutdown_reason: null,
    } as TaskData,
  }));
  // With 5 ended tasks of history per slot (a crash-looping past), as `service ps` keeps.
  const withHistory = (): RTask[] => {
    const out = running();
    for (let i = 0; i < N; i++) for (let h = 0; h < 5; h++) {
      out.push({ id: `h${i}-${h}`, created_at: new Date(now - 600_000 + h * 1000).toISOString(), data: { ...out[i]!.data, desired_state: 'shutdown', status: { ...out[i]!.data.status, state: 'failed', exit_code: 1, error: 'boom' } } as TaskData });
    }
    return out;
  };
  const cases: [string, () => [RService, RTask[]]][] = [
    ['create (0 → 1,000 tasks)', () => [svc(spec1, 1, false), []]],
    ['steady state (1,000 running)', () => [svc(spec1, 1, false), running()]],
    ['steady state + 5,000 ended (history)', () => [svc(spec1, 1, false), withHistory()]],
    ['rolling update step (1,000 old, parallelism 10)', () => [svc(spec2, 2, true), running()]],
    ['scale down 1,000 → 0', () => [svc({ ...spec1, replicas: 0 }, 1, false), running()]],
  ];
  const out: Record<string, { ms: number; tasksPerSec: number; plan: string }> = {};
  for (const [name, mk] of cases) {
    const times: number[] = [];
    let plan = '';
    for (let i = 0; i < CFG.reconcileRepeats; i++) {
      const [s, ts] = mk();
      const t0 = performance.now();
      const p = reconcile(s, ts, nodes, now);
      times.push(performance.now() - t0);
      plan = `create ${p.create.length}, change ${p.change.length}, remove ${p.remove.length}`;
    }
    const ms = median(times);
    const [, ts] = mk();
    out[name] = { ms: Math.round(ms * 100) / 100, tasksPerSec: r0((Math.max(ts.length, N) / ms) * 1000), plan };
  }
  return out;
}

// ---- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  process.stdout.write(`Scheduler benchmark — SIMULATED nodes: ${CFG.nodes.toLocaleString('en')} in-process snapshots (no agents, no store, no network), ` +
    `${CFG.tasks.toLocaleString('en')} tasks of ${CFG.services.toLocaleString('en')} services, batches of ${CFG.batch.toLocaleString('en')}, seed ${CFG.seed}.\n`);
  gc();
  const baseline = mem();
  const rand = prng(CFG.seed);
  const tn0 = performance.now();
  const { nodes, mix } = buildNodes(rand);
  const nodesMs = performance.now() - tn0;
  const services = buildServices(rand);
  gc();
  const afterNodes = mem();
  process.stdout.write(`  ${nodes.length} nodes built in ${r0(nodesMs)} ms (${mix.down} down, ${mix.drain} drained, ${mix.pause} paused, ${mix.managers} managers); heap ${afterNodes.heapUsedMb} MB\n`);

  const main = runMain(nodes, services, baseline, afterNodes);
  // What stays once the pass is over: the node snapshot with 1M placements recorded in it.
  gc();
  main.memory.afterRunGc = mem();
  const placementsPerSec = main.placements / main.scheduleSeconds;
  const e2ePerSec = main.placements / (main.scheduleSeconds + main.convertSeconds);

  process.stdout.write('  stress: spread tasks with no room left …\n');
  const stress = stressUnfit();
  process.stdout.write('  reconcile, 1,000-replica service …\n');
  const rec = reconcileBench();

  const verified = main.verify.overCommittedNodes === 0 && main.verify.constraintViolations === 0 && main.verify.portClashes === 0 && main.verify.maxPerNodeViolations === 0 && main.verify.placedOnUnusableNodes === 0;
  const checks = [
    { name: `placements/s, schedule() only (${CFG.nodes} simulated nodes, ${main.placements.toLocaleString('en')} placed)`, value: r0(placementsPerSec), unit: '/s', target: TARGETS.placementsPerSec, pass: placementsPerSec >= TARGETS.placementsPerSec && verified },
    { name: 'placements/s incl. toSchedTask conversion (one runner pass in memory)', value: r0(e2ePerSec), unit: '/s', target: TARGETS.placementsPerSec, pass: e2ePerSec >= TARGETS.placementsPerSec && verified },
  ];
  const memory = {
    heapUsedDeltaMb: r1(main.memory.afterRunGc.heapUsedMb - baseline.heapUsedMb),
    rssDeltaMb: r1(main.memory.afterRunGc.rssMb - baseline.rssMb),
    peakHeapUsedDeltaMb: r1(main.memory.peakHeapUsedMb - baseline.heapUsedMb),
    peakRssDeltaMb: r1(main.memory.peakRssMb - baseline.rssMb),
    nodesSnapshotHeapMb: r1(afterNodes.heapUsedMb - baseline.heapUsedMb),
  };
  const results = {
    benchmark: 'scheduler',
    simulated: `nodes are SIMULATED: in-process SchedNode snapshots built by toSchedNode from made-up node records; no agents, store, or network are involved`,
    at: new Date().toISOString(),
    git: gitRev(),
    machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryMb: Math.round(totalmem() / MiB), platform: `${process.platform}/${process.arch}` },
    config: CFG,
    targets: TARGETS,
    anchors: ANCHORS,
    checks,
    ratios: {
      toTarget: r1(placementsPerSec / TARGETS.placementsPerSec),
      toNomadC1M: r1(placementsPerSec / ANCHORS.nomadC1MPerSec),
      toKubeScheduler: [r1(placementsPerSec / ANCHORS.kubeSchedulerPerSec[1]!), r1(placementsPerSec / ANCHORS.kubeSchedulerPerSec[0]!)],
    },
    run: {
      tasks: CFG.tasks, placements: main.placements, unplaced: main.unplaced,
      scheduleSeconds: Math.round(main.scheduleSeconds * 1000) / 1000, convertSeconds: Math.round(main.convertSeconds * 1000) / 1000, buildTaskDataSeconds: Math.round(main.buildSeconds * 1000) / 1000,
      unplacedReasons: main.unplacedReasons, byKind: main.byKind, spread: main.spread, verify: main.verify, verified, nodes: { count: nodes.length, ...mix }, batches: main.batches,
    },
    memory: { ...memory, baseline, afterNodes, afterRunGc: main.memory.afterRunGc, peakHeapUsedMb: main.memory.peakHeapUsedMb, peakRssMb: main.memory.peakRssMb },
    stressUnfitSpread: stress,
    reconcile1000: rec,
    totalSeconds: r1((performance.now() - t0) / 1000),
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, 'scheduler.json');
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n');

  const f = (x: number): string => (Number.isFinite(x) ? x.toLocaleString('en') : '-');
  const rows: string[][] = [
    ['figure (SIMULATED nodes)', 'value', 'target', 'result'],
    ...checks.map((c) => [c.name, `${f(c.value)} ${c.unit}`, `≥ ${f(c.target)} ${c.unit}`, c.pass ? 'PASS' : 'MISS']),
    ['V8 heap used after the run (Δ from start, after GC; the snapshot)', `${f(memory.heapUsedDeltaMb)} MB`, 'report', '-'],
    ['RSS after the run (Δ from start)', `${f(memory.rssDeltaMb)} MB`, 'report', '-'],
    ['peak V8 heap used / peak RSS (Δ, sampled per batch)', `${f(memory.peakHeapUsedDeltaMb)} / ${f(memory.peakRssDeltaMb)} MB`, 'report', '-'],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const o: string[] = [''];
  o.push(line(rows[0]!));
  o.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) o.push(line(r));
  o.push('');
  o.push('Details (all nodes SIMULATED in-process)');
  o.push(`  ratios:     ${results.ratios.toTarget}× the target; ${results.ratios.toNomadC1M}× Nomad C1M (3,750/s, 5 servers); ${results.ratios.toKubeScheduler[0]}–${results.ratios.toKubeScheduler[1]}× kube-scheduler perf tests (680–1,100 pods/s)`);
  o.push(`  time:       schedule() ${r1(main.scheduleSeconds)} s, toSchedTask ${r1(main.convertSeconds)} s, building TaskData ${r1(main.buildSeconds)} s (not counted)`);
  o.push(`  placed:     ${f(main.placements)} of ${f(CFG.tasks)}; pending ${f(main.unplaced)}`);
  for (const [reason, n] of Object.entries(main.unplacedReasons)) o.push(`              ${f(n)} × ${reason}`);
  o.push(`  verified:   ${verified ? 'yes' : 'NO'} — over-committed nodes ${main.verify.overCommittedNodes}, constraint violations ${main.verify.constraintViolations}, host-port clashes ${main.verify.portClashes}, max-per-node violations ${main.verify.maxPerNodeViolations}, on unusable nodes ${main.verify.placedOnUnusableNodes}`);
  o.push('  mix:        ' + Object.entries(main.byKind).map(([k, v]) => `${k} ${v.services} svc/${f(v.placed)} placed`).join('; '));
  o.push('  spread:     ' + Object.entries(main.spread).map(([k, v]) => `${k}: max−min over ${v.over} worst ${v.worstMaxMinusMin}, mean ${v.meanMaxMinusMin} (${v.services} svc)`).join('; '));
  o.push(`  memory:     node snapshot ${memory.nodesSnapshotHeapMb} MB heap; heap after GC ${main.memory.afterRunGc.heapUsedMb} MB, RSS ${main.memory.afterRunGc.rssMb} MB (start: heap ${baseline.heapUsedMb}, RSS ${baseline.rssMb} MB)`);
  o.push(`  stress:     ${f(stress.tasks)} spread tasks, every node full: ${f(stress.ms)} ms (${stress.perTaskMs} ms per pending task); same without spread: ${f(stress.heapMs)} ms`);
  o.push('  reconcile, one 1,000-replica service (median of ' + CFG.reconcileRepeats + '):');
  for (const [k, v] of Object.entries(rec)) o.push(`              ${k.padEnd(48)} ${String(v.ms).padStart(8)} ms  (${f(v.tasksPerSec)} tasks/s; plan: ${v.plan})`);
  o.push('');
  o.push(`Wrote ${out} (${results.totalSeconds}s in all). Targets are reported, not enforced: a MISS does not fail the run.`);
  process.stdout.write(o.join('\n') + '\n');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`scheduler benchmark failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
