// Scheduler tests (pure: `schedule(tasks, nodes)` over an in-memory snapshot, DESIGN.md convention 1).
// Example tests for each filter and scorer, the exact wording of the pending reason, the store
// conversions of runner.ts, and a property test (fast-check) over random clusters and task sets.
//
// The fast-check seed is fixed by default and printed; FC_SEED=<n> replays or explores another one,
// FC_RUNS=<n> changes the number of runs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { schedule } from './scheduler.js';
import { filtersFor } from './filters.js';
import { parseConstraint } from './constraints.js';
import { toSchedNode, toSchedTask } from './runner.js';
import type { Constraint, SchedNode, SchedTask } from './types.js';
import { normalizeSpec, type ServiceSpecInput } from '../services/spec.js';
import type { TaskData } from '../services/task.js';
import type { StoredObject } from '../store/store.js';

const SEED = process.env.FC_SEED !== undefined && process.env.FC_SEED !== '' ? Number(process.env.FC_SEED) : 20261125;
const RUNS = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 300;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

// ---- builders ---------------------------------------------------------------------------------------

interface NodeOpts {
  name?: string;
  role?: string;
  labels?: Record<string, string>;
  ready?: boolean;
  availability?: SchedNode['availability'];
  drivers?: string[];
  cpus?: number;
  memory?: number;
  reservedCpu?: number;
  reservedMemory?: number;
  hostPorts?: string[];
  serviceTasks?: Record<string, number>;
  totalTasks?: number;
}

function node(id: string, o: NodeOpts = {}): SchedNode {
  const serviceTasks = new Map(Object.entries(o.serviceTasks ?? {}));
  return {
    id,
    name: o.name ?? `host-${id}`,
    role: o.role ?? 'worker',
    labels: o.labels ?? {},
    ready: o.ready ?? true,
    availability: o.availability ?? 'active',
    drivers: new Set(o.drivers ?? ['process']),
    missingFeatures: new Map(),
    cpus: o.cpus ?? 4,
    memoryBytes: o.memory ?? 8 * GiB,
    reservedCpu: o.reservedCpu ?? 0,
    reservedMemory: o.reservedMemory ?? 0,
    hostPorts: new Set(o.hostPorts ?? []),
    serviceTasks,
    totalTasks: o.totalTasks ?? [...serviceTasks.values()].reduce((a, b) => a + b, 0),
  };
}

interface TaskOpts {
  constraints?: string[];
  spreadOver?: string[];
  cpu?: number;
  memory?: number;
  hostPorts?: string[];
  maxPerNode?: number;
  pinned?: string;
  drivers?: string[];
  group?: string;
}

function constraints(texts: string[]): Constraint[] {
  return texts.map((t) => {
    const c = parseConstraint(t);
    if (typeof c === 'string') throw new Error(c);
    return c;
  });
}

function task(id: string, serviceId: string, o: TaskOpts = {}): SchedTask {
  return {
    id,
    serviceId,
    groupKey: o.group ?? `${serviceId}#1#${o.pinned ?? ''}`,
    drivers: o.drivers ?? ['process'],
    constraints: constraints(o.constraints ?? []),
    spreadOver: o.spreadOver ?? [],
    reserveCpu: o.cpu ?? 0,
    reserveMemory: o.memory ?? 0,
    hostPorts: o.hostPorts ?? [],
    maxReplicasPerNode: o.maxPerNode ?? 0,
    pinnedNode: o.pinned,
    requiredFeatures: [],
  };
}

/** `count` tasks of one service, ids `${service}.1` … */
function tasks(serviceId: string, count: number, o: TaskOpts = {}): SchedTask[] {
  return Array.from({ length: count }, (_v, i) => task(`${serviceId}.${i + 1}`, serviceId, o));
}

function countBy<T>(xs: T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}

function nodesOf(result: ReturnType<typeof schedule>): string[] {
  return result.placements.map((p) => p.nodeId);
}

function cloneNode(n: SchedNode): SchedNode {
  return { ...n, labels: { ...n.labels }, drivers: new Set(n.drivers), missingFeatures: new Map(n.missingFeatures), hostPorts: new Set(n.hostPorts), serviceTasks: new Map(n.serviceTasks) };
}

// ---- scorers ----------------------------------------------------------------------------------------

describe('scheduler: scorers', () => {
  it('spreads a service over different nodes first', () => {
    const ns = [node('n1'), node('n2'), node('n3')];
    const r = schedule(tasks('web', 3), ns);
    assert.equal(r.unplaced.length, 0);
    assert.deepEqual(nodesOf(r).sort(), ['n1', 'n2', 'n3']);
    const r2 = schedule(tasks('api', 7), [node('a'), node('b'), node('c')]);
    assert.deepEqual(Object.values(countBy(r2.placements, (p) => p.nodeId)).sort(), [2, 2, 3]);
  });

  it("prefers a node without the service's tasks over a less loaded node that has one", () => {
    const ns = [node('busy', { serviceTasks: { other: 10 } }), node('idle', { serviceTasks: { web: 1 } })];
    const r = schedule(tasks('web', 1), ns);
    assert.deepEqual(nodesOf(r), ['busy']);
  });

  it('then picks the least loaded node (fewest tasks in total)', () => {
    const ns = [node('n1', { serviceTasks: { x: 5 } }), node('n2', { serviceTasks: { x: 1 } }), node('n3', { serviceTasks: { x: 3 } })];
    const r = schedule(tasks('web', 1), ns);
    assert.deepEqual(nodesOf(r), ['n2']);
    // Second and third tasks of the same service go to the other nodes, least loaded first.
    const r2 = schedule(tasks('api', 3), [node('n1', { totalTasks: 5 }), node('n2', { totalTasks: 1 }), node('n3', { totalTasks: 3 })]);
    assert.deepEqual(nodesOf(r2), ['n2', 'n3', 'n1']);
  });

  it('counts placements of earlier tasks in the same pass (snapshot updated in place)', () => {
    const ns = [node('n1'), node('n2')];
    const r = schedule([...tasks('a', 2), ...tasks('b', 2)], ns);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { n1: 2, n2: 2 });
    assert.equal(ns[0]!.totalTasks, 2);
    assert.equal(ns[0]!.serviceTasks.get('a'), 1);
  });

  it("spreads across a service's groups too (tasks of two spec versions during an update)", () => {
    const ts = [...tasks('web', 2, { group: 'web#1#' }), ...tasks('web', 2, { group: 'web#2#' }).map((t) => ({ ...t, id: `${t.id}b` }))];
    const r = schedule(ts, [node('n1'), node('n2'), node('n3'), node('n4')]);
    assert.deepEqual(nodesOf(r).sort(), ['n1', 'n2', 'n3', 'n4']);
  });

  it('is deterministic: the same snapshot gives the same placements', () => {
    const mk = () => Array.from({ length: 20 }, (_v, i) => node(`n${String(i).padStart(2, '0')}`, { labels: { zone: 'abc'[i % 3]! }, totalTasks: i % 4 }));
    const ts = () => [...tasks('a', 30, { spreadOver: ['zone'] }), ...tasks('b', 25, { cpu: 0.5 }), ...tasks('c', 10, { constraints: ['node.labels.zone!=a'] })];
    assert.deepEqual(schedule(ts(), mk()), schedule(ts(), mk()));
  });
});

// ---- filters ----------------------------------------------------------------------------------------

describe('scheduler: constraints', () => {
  const ns = () => [
    node('id1', { name: 'alpha', role: 'manager', labels: { zone: 'a', disk: 'ssd' } }),
    node('id2', { name: 'beta', role: 'worker', labels: { zone: 'b', disk: 'hdd' } }),
    node('id3', { name: 'gamma', role: 'worker', labels: { zone: 'b' } }),
    node('id4', { name: 'delta', role: 'worker', labels: {} }),
  ];
  const where = (cs: string[], count = 8) => {
    const r = schedule(tasks('svc', count, { constraints: cs }), ns());
    return [...new Set(nodesOf(r))].sort();
  };

  it('node.id == / !=', () => {
    assert.deepEqual(where(['node.id==id3']), ['id3']);
    assert.deepEqual(where(['node.id!=id3']), ['id1', 'id2', 'id4']);
  });
  it('node.hostname == / !=', () => {
    assert.deepEqual(where(['node.hostname==beta']), ['id2']);
    assert.deepEqual(where(['node.hostname!=beta']), ['id1', 'id3', 'id4']);
  });
  it('node.role == / !=', () => {
    assert.deepEqual(where(['node.role==manager']), ['id1']);
    assert.deepEqual(where(['node.role!=manager']), ['id2', 'id3', 'id4']);
  });
  it('node.labels.X == / != (a node without the label does not match ==, does match !=)', () => {
    assert.deepEqual(where(['node.labels.zone==b']), ['id2', 'id3']);
    assert.deepEqual(where(['node.labels.zone!=b']), ['id1', 'id4']);
    assert.deepEqual(where(['node.labels.disk==ssd']), ['id1']);
    assert.deepEqual(where(['node.labels.disk!=ssd']), ['id2', 'id3', 'id4']);
  });
  it('several constraints must all hold', () => {
    assert.deepEqual(where(['node.labels.zone==b', 'node.labels.disk!=hdd']), ['id3']);
    assert.deepEqual(where(['node.role==worker', 'node.hostname!=delta', 'node.labels.zone!=a']), ['id2', 'id3']);
  });
  it('no node matches: every task pending with the constraint named', () => {
    const r = schedule(tasks('svc', 3, { constraints: ['node.labels.zone==z'] }), ns());
    assert.equal(r.placements.length, 0);
    assert.equal(r.unplaced.length, 3);
    for (const u of r.unplaced) assert.equal(u.reason, 'no suitable node (constraint node.labels.zone==z not satisfied on 4 nodes)');
  });
  it('parses spaces around the operator and values with spaces; rejects anything else with a clear message', () => {
    const c = parseConstraint(' node.labels.zone  ==  b ');
    assert.deepEqual(c, { key: 'labels.zone', op: '==', value: 'b', text: 'node.labels.zone==b' });
    const c2 = parseConstraint('node.labels.room!=server room 2');
    assert.deepEqual(c2, { key: 'labels.room', op: '!=', value: 'server room 2', text: 'node.labels.room!=server room 2' });
    for (const bad of ['node.zone==a', 'labels.zone==a', 'node.labels.zone=a', 'node.labels.zone==', 'node.id>=x', '']) {
      const r = parseConstraint(bad);
      assert.equal(typeof r, 'string', bad);
      assert.match(r as string, /is not a placement constraint/);
    }
  });
});

describe('scheduler: reserved cpu and memory', () => {
  it('never over-commits cpu; the rest stay pending with the reason', () => {
    const ns = [node('n1', { cpus: 2 }), node('n2', { cpus: 1, reservedCpu: 0.5 })];
    const r = schedule(tasks('svc', 10, { cpu: 0.5 }), ns);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { n1: 4, n2: 1 });
    assert.equal(r.unplaced.length, 5);
    assert.equal(r.unplaced[0]!.reason, 'no suitable node (insufficient CPU on 2 nodes (needs 0.5))');
    assert.ok(ns[0]!.reservedCpu <= 2 && ns[1]!.reservedCpu <= 1);
  });

  it('never over-commits memory', () => {
    const ns = [node('n1', { memory: 3 * GiB }), node('n2', { memory: 2 * GiB, reservedMemory: 1 * GiB }), node('n3', { memory: 512 * MiB })];
    const r = schedule(tasks('svc', 10, { memory: GiB }), ns);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { n1: 3, n2: 1 });
    assert.equal(r.unplaced[0]!.reason, 'no suitable node (insufficient memory on 3 nodes (needs 1GiB))');
  });

  it('a task needing more than any node has stays pending, and is placed once a big enough node joins', () => {
    const t = () => tasks('big', 1, { memory: 64 * GiB });
    const r = schedule(t(), [node('n1'), node('n2')]);
    assert.deepEqual(r.unplaced, [{ taskId: 'big.1', reason: 'no suitable node (insufficient memory on 2 nodes (needs 64GiB))' }]);
    const r2 = schedule(t(), [node('n1'), node('n2'), node('huge', { memory: 128 * GiB })]);
    assert.deepEqual(r2.placements, [{ taskId: 'big.1', nodeId: 'huge' }]);
  });

  it('a task with no reservation fits on a full node', () => {
    const r = schedule(tasks('svc', 2), [node('n1', { cpus: 1, reservedCpu: 1, memory: GiB, reservedMemory: GiB })]);
    assert.equal(r.placements.length, 2);
  });
});

describe('scheduler: host ports and max replicas per node', () => {
  it('host-mode published ports conflict per node and protocol', () => {
    const ns = [node('n1', { hostPorts: ['tcp/443'] }), node('n2'), node('n3')];
    const r = schedule(tasks('web', 3, { hostPorts: ['tcp/8080'] }), ns);
    assert.deepEqual(nodesOf(r).sort(), ['n1', 'n2', 'n3']);
    const r2 = schedule(tasks('web2', 1, { hostPorts: ['tcp/8080'] }), ns);
    assert.deepEqual(r2.unplaced, [{ taskId: 'web2.1', reason: 'no suitable node (host port tcp/8080 already in use on 3 nodes)' }]);
    const r3 = schedule(tasks('dns', 1, { hostPorts: ['udp/8080'] }), ns);
    assert.equal(r3.placements.length, 1, 'udp/8080 does not clash with tcp/8080');
    const r4 = schedule(tasks('tls', 3, { hostPorts: ['tcp/443', 'tcp/80'] }), [node('n1', { hostPorts: ['tcp/443'] }), node('n2')]);
    assert.deepEqual(nodesOf(r4), ['n2']);
    assert.equal(r4.unplaced[0]!.reason, 'no suitable node (host ports tcp/443, tcp/80 already in use on 2 nodes)');
  });

  it('max replicas per node', () => {
    const r = schedule(tasks('svc', 7, { maxPerNode: 2 }), [node('n1'), node('n2'), node('n3')]);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { n1: 2, n2: 2, n3: 2 });
    assert.deepEqual(r.unplaced, [{ taskId: 'svc.7', reason: 'no suitable node (max replicas per node (2) reached on 3 nodes)' }]);
    // Existing tasks of the service count.
    const r2 = schedule(tasks('svc', 3, { maxPerNode: 1 }), [node('n1', { serviceTasks: { svc: 1 } }), node('n2'), node('n3')]);
    assert.deepEqual(nodesOf(r2).sort(), ['n2', 'n3']);
    assert.equal(r2.unplaced.length, 1);
  });
});

describe('scheduler: placement preference spread=node.labels.X', () => {
  it('spreads evenly over label values, not over nodes', () => {
    const ns = [
      node('a1', { labels: { zone: 'a' } }), node('a2', { labels: { zone: 'a' } }), node('a3', { labels: { zone: 'a' } }), node('a4', { labels: { zone: 'a' } }),
      node('b1', { labels: { zone: 'b' } }),
      node('c1', { labels: { zone: 'c' } }),
    ];
    const zone = (id: string) => ns.find((n) => n.id === id)!.labels.zone!;
    const r = schedule(tasks('svc', 9, { spreadOver: ['zone'] }), ns);
    assert.deepEqual(countBy(r.placements, (p) => zone(p.nodeId)), { a: 3, b: 3, c: 3 });
    // Within a zone, still spread over nodes.
    assert.deepEqual(countBy(r.placements.filter((p) => zone(p.nodeId) === 'a'), (p) => p.nodeId), { a1: 1, a2: 1, a3: 1 });
  });

  it('nodes without the label form a group of their own', () => {
    const ns = [node('a1', { labels: { zone: 'a' } }), node('a2', { labels: { zone: 'a' } }), node('x1'), node('x2')];
    const r = schedule(tasks('svc', 4, { spreadOver: ['zone'] }), ns);
    assert.deepEqual(countBy(r.placements, (p) => ns.find((n) => n.id === p.nodeId)!.labels.zone ?? '(none)'), { a: 2, '(none)': 2 });
  });

  it("counts the service's existing tasks per label value", () => {
    const ns = [node('a1', { labels: { zone: 'a' }, serviceTasks: { svc: 3 } }), node('b1', { labels: { zone: 'b' } }), node('b2', { labels: { zone: 'b' } })];
    const r = schedule(tasks('svc', 3, { spreadOver: ['zone'] }), ns);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { b1: 2, b2: 1 });
  });

  it('a full label value overflows to the others', () => {
    const ns = [node('a1', { labels: { zone: 'a' }, cpus: 1 }), node('b1', { labels: { zone: 'b' }, cpus: 8 })];
    const r = schedule(tasks('svc', 6, { spreadOver: ['zone'], cpu: 1 }), ns);
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { a1: 1, b1: 5 });
  });

  it('several preferences apply in order (zone first, then rack within a zone), as docker', () => {
    // Zone a has two racks, zone b one: spreading over zone first gives each zone half the tasks.
    const ns = [
      node('a1', { labels: { zone: 'a', rack: 'r1' } }), node('a2', { labels: { zone: 'a', rack: 'r2' } }),
      node('b1', { labels: { zone: 'b', rack: 'r3' } }), node('b2', { labels: { zone: 'b', rack: 'r3' } }),
    ];
    const r = schedule(tasks('svc', 8, { spreadOver: ['zone', 'rack'] }), ns);
    const zone = (id: string) => ns.find((n) => n.id === id)!.labels.zone!;
    assert.deepEqual(countBy(r.placements, (p) => zone(p.nodeId)), { a: 4, b: 4 });
    assert.deepEqual(countBy(r.placements, (p) => p.nodeId), { a1: 2, a2: 2, b1: 2, b2: 2 });
  });
});

describe('scheduler: node availability and status', () => {
  it('drained, paused and down nodes get nothing', () => {
    const ns = [node('drained', { availability: 'drain' }), node('paused', { availability: 'pause' }), node('down', { ready: false }), node('ok')];
    const r = schedule([...tasks('a', 4), ...tasks('b', 2, { spreadOver: ['zone'] })], ns);
    assert.deepEqual(new Set(nodesOf(r)), new Set(['ok']));
    const r2 = schedule(tasks('c', 2), ns.slice(0, 3));
    assert.equal(r2.placements.length, 0);
    assert.equal(r2.unplaced[0]!.reason, 'no suitable node (3 nodes not ready or not active (down, paused or drained))');
  });

  it('a node without the driver gets nothing', () => {
    const r = schedule(tasks('img', 2, { drivers: ['oci', 'docker'] }), [node('n1'), node('n2', { drivers: ['process', 'docker'] })]);
    assert.deepEqual(nodesOf(r), ['n2', 'n2']);
    const r2 = schedule(tasks('img', 1, { drivers: ['oci', 'docker'] }), [node('n1')]);
    assert.equal(r2.unplaced[0]!.reason, 'no suitable node (driver oci or docker not available on 1 node)');
  });

  it('an empty cluster says so', () => {
    const r = schedule(tasks('a', 1), []);
    assert.deepEqual(r.unplaced, [{ taskId: 'a.1', reason: 'no suitable node (no nodes in the cluster)' }]);
  });
});

describe('scheduler: global services (pinned tasks)', () => {
  it('each task goes to its own node, and only there', () => {
    const ns = [node('n1'), node('n2'), node('n3')];
    const ts = ns.map((n) => task(`g.${n.id}`, 'g', { pinned: n.id }));
    const r = schedule(ts, ns);
    assert.deepEqual(r.placements, [{ taskId: 'g.n1', nodeId: 'n1' }, { taskId: 'g.n2', nodeId: 'n2' }, { taskId: 'g.n3', nodeId: 'n3' }]);
  });

  it('a pinned task whose node cannot take it stays pending, with its node\'s reason', () => {
    const ns = [node('n1', { availability: 'drain' }), node('n2', { memory: GiB }), node('n3')];
    const r = schedule([task('g.n1', 'g', { pinned: 'n1', memory: 2 * GiB }), task('g.n2', 'g', { pinned: 'n2', memory: 2 * GiB }), task('g.n3', 'g', { pinned: 'n3', memory: 2 * GiB })], ns);
    assert.deepEqual(r.placements, [{ taskId: 'g.n3', nodeId: 'n3' }]);
    assert.deepEqual(r.unplaced, [
      { taskId: 'g.n1', reason: 'no suitable node (1 node not ready or not active (down, paused or drained))' },
      { taskId: 'g.n2', reason: 'no suitable node (insufficient memory on 1 node (needs 2GiB))' },
    ]);
  });

  it('a task pinned to a node that left the cluster is not reported as "no nodes in the cluster"', () => {
    const r = schedule([task('g.gone', 'g', { pinned: 'gone' })], [node('n1'), node('n2')]);
    assert.equal(r.placements.length, 0);
    assert.equal(r.unplaced.length, 1);
    assert.match(r.unplaced[0]!.reason, /^no suitable node/);
    assert.doesNotMatch(r.unplaced[0]!.reason, /no nodes in the cluster/, 'the cluster has 2 nodes; the reason should say the task\'s node is gone');
  });
});

describe('scheduler: the pending reason', () => {
  it('has the format `no suitable node (insufficient memory on 3 nodes …; constraint node.labels.zone==b not satisfied on 2 nodes)`', () => {
    const ns = [
      node('a1', { labels: { zone: 'a' } }), node('a2', { labels: { zone: 'a' } }),
      node('b1', { labels: { zone: 'b' }, memory: 512 * MiB }), node('b2', { labels: { zone: 'b' }, memory: 512 * MiB }), node('b3', { labels: { zone: 'b' }, memory: 512 * MiB }),
    ];
    const r = schedule(tasks('svc', 2, { constraints: ['node.labels.zone==b'], memory: GiB }), ns);
    assert.equal(r.placements.length, 0);
    // filters.ts adds what the task needs to the memory part: "(needs 1GiB)".
    const want = 'no suitable node (insufficient memory on 3 nodes (needs 1GiB); constraint node.labels.zone==b not satisfied on 2 nodes)';
    assert.deepEqual(r.unplaced, [{ taskId: 'svc.1', reason: want }, { taskId: 'svc.2', reason: want }]);
  });

  it('gives every reason, most frequent first, each node counted once (by the first filter it fails), singular for 1 node', () => {
    const ns = [
      node('d1', { ready: false }),
      node('c1', { labels: { zone: 'a' } }), node('c2', { labels: { zone: 'a' } }), node('c3', { labels: { zone: 'a' } }),
      node('m1', { labels: { zone: 'b' }, cpus: 1 }), node('m2', { labels: { zone: 'b' }, cpus: 1 }),
    ];
    const r = schedule(tasks('svc', 1, { constraints: ['node.labels.zone==b'], cpu: 2 }), ns);
    assert.equal(r.unplaced[0]!.reason, 'no suitable node (constraint node.labels.zone==b not satisfied on 3 nodes; insufficient CPU on 2 nodes (needs 2); 1 node not ready or not active (down, paused or drained))');
  });

  it('built from a stored task (toSchedTask) with a normalized spec', () => {
    const spec = normalizeSpec({ replicas: 2, task: { command: ['sleep', '1'], resources: { reservations: { memory_bytes: GiB } }, placement: { constraints: ['node.labels.zone==b'] } } });
    const d = taskData('s1', 1, spec);
    const ns = ['a1', 'a2'].map((id) => storedNode(id, { zone: 'a' }, 8 * GiB)).concat(['b1', 'b2', 'b3'].map((id) => storedNode(id, { zone: 'b' }, 512 * MiB))).map(toSchedNode);
    const r = schedule([toSchedTask('t1', d)], ns);
    assert.equal(r.unplaced[0]!.reason, 'no suitable node (insufficient memory on 3 nodes (needs 1GiB); constraint node.labels.zone==b not satisfied on 2 nodes)');
  });
});

// ---- conversions from store objects (runner.ts) --------------------------------------------------------

function taskData(serviceId: string, slot: number | null, spec: ReturnType<typeof normalizeSpec>, extra: Partial<TaskData> = {}): TaskData {
  return {
    service_id: serviceId, service_name: serviceId, slot, node_id: null, pinned_node: null, desired_state: 'running',
    status: { state: 'pending', message: '', error: null, exit_code: null, timestamp: new Date(0).toISOString() },
    spec: spec.task, spec_version: 1, ports: spec.endpoint.ports.map((p) => ({ ...p })), not_before: null, shutdown_reason: null, ...extra,
  };
}

function storedNode(id: string, labels: Record<string, string>, memory: number, extra: Record<string, unknown> = {}): StoredObject {
  return {
    kind: 'node', id, name: `host-${id}`, project_id: '', version: 1, created_at: '', updated_at: '', revision: 1,
    data: { role: 'worker', labels, status: 'ready', availability: 'active', resources: { cpus: 2, memory_bytes: memory }, drivers: { process: { available: true }, oci: { available: false, reason: 'no runc' } }, ...extra },
  };
}

describe('scheduler: store conversions (toSchedTask, toSchedNode)', () => {
  it('toSchedTask maps the spec: constraints, spread, reservations, host ports, max replicas, pinned node, drivers', () => {
    const input: ServiceSpecInput = {
      replicas: 3,
      task: {
        command: ['x'], resources: { reservations: { cpu: 0.25, memory_bytes: 64 * MiB } },
        placement: { constraints: ['node.role==worker', 'node.labels.zone != a'], preferences: [{ spread: 'node.labels.zone' }, { spread: 'node.labels.rack' }], max_replicas_per_node: 2 },
      },
      endpoint: { ports: [{ target: 80, published: 8080, mode: 'host', protocol: 'tcp' }, { target: 53, published: 5353, mode: 'host', protocol: 'udp' }, { target: 443, published: 443, mode: 'ingress', protocol: 'tcp' }, { target: 9000, mode: 'host', protocol: 'tcp' }] },
    };
    const spec = normalizeSpec(input);
    const t = toSchedTask('t1', taskData('s1', 2, spec, { spec_version: 7 }));
    assert.equal(t.serviceId, 's1');
    assert.equal(t.groupKey, 's1#7#');
    assert.deepEqual(t.drivers, ['process']);
    assert.deepEqual(t.constraints.map((c) => c.text), ['node.role==worker', 'node.labels.zone!=a']);
    assert.deepEqual(t.spreadOver, ['zone', 'rack']);
    assert.equal(t.reserveCpu, 0.25);
    assert.equal(t.reserveMemory, 64 * MiB);
    assert.deepEqual(t.hostPorts, ['tcp/8080', 'udp/5353']);
    assert.equal(t.maxReplicasPerNode, 2);
    assert.equal(t.pinnedNode, undefined);
    const g = toSchedTask('t2', taskData('s2', null, normalizeSpec({ mode: 'global', task: { image: 'nginx' } }), { pinned_node: 'n9' }));
    assert.equal(g.pinnedNode, 'n9');
    assert.equal(g.groupKey, 's2#1#n9');
    assert.deepEqual(g.drivers, ['oci', 'docker']);
  });

  it('toSchedNode: ready/availability, resources, only available drivers, nothing reserved yet', () => {
    const n = toSchedNode(storedNode('n1', { zone: 'a' }, 4 * GiB, { availability: 'pause' }));
    assert.equal(n.ready, true);
    assert.equal(n.availability, 'pause');
    assert.equal(n.cpus, 2);
    assert.equal(n.memoryBytes, 4 * GiB);
    assert.deepEqual([...n.drivers], ['process']);
    assert.equal(n.reservedCpu, 0);
    assert.equal(n.totalTasks, 0);
    assert.equal(toSchedNode(storedNode('n2', {}, GiB, { status: 'down' })).ready, false);
  });
});

// ---- property test -------------------------------------------------------------------------------------

interface GenService {
  cpu: number;
  memory: number;
  constraints: string[];
  spread: boolean;
  hostPort: string | null;
  maxPerNode: number;
  drivers: string[];
  count: number;
  global: boolean;
}

const CONSTRAINT_POOL = ['node.labels.zone==a', 'node.labels.zone!=a', 'node.labels.zone==b', 'node.role==manager', 'node.role!=manager', 'node.hostname!=host-n0', 'node.id==n1', 'node.labels.disk==ssd'];

const genNode = fc.record({
  cpus: fc.integer({ min: 1, max: 8 }),
  memGiB: fc.integer({ min: 1, max: 16 }),
  zone: fc.constantFrom('a', 'b', 'c', undefined),
  disk: fc.constantFrom('ssd', undefined),
  role: fc.constantFrom('worker', 'worker', 'manager'),
  ready: fc.integer({ min: 0, max: 9 }).map((x) => x > 0),
  availability: fc.constantFrom('active', 'active', 'active', 'active', 'pause', 'drain') as fc.Arbitrary<SchedNode['availability']>,
  drivers: fc.constantFrom<string[]>(['process'], ['process', 'oci'], ['oci']),
  usedCpuFrac: fc.constantFrom(0, 0, 0.25, 0.5, 1),
  usedMemFrac: fc.constantFrom(0, 0, 0.5, 1),
  ports: fc.subarray(['tcp/80', 'tcp/443', 'udp/53']),
  otherTasks: fc.integer({ min: 0, max: 5 }),
});

const genService: fc.Arbitrary<GenService> = fc.record({
  cpu: fc.constantFrom(0, 0, 0.25, 0.5, 1, 3),
  memory: fc.constantFrom(0, 0, 256 * MiB, GiB, 4 * GiB),
  constraints: fc.subarray(CONSTRAINT_POOL, { maxLength: 2 }),
  spread: fc.boolean(),
  hostPort: fc.constantFrom(null, null, null, 'tcp/80', 'tcp/8080', 'udp/53'),
  maxPerNode: fc.constantFrom(0, 0, 0, 1, 2, 3),
  drivers: fc.constantFrom<string[]>(['process'], ['process'], ['oci', 'docker']),
  count: fc.integer({ min: 0, max: 25 }),
  global: fc.integer({ min: 0, max: 5 }).map((x) => x === 0),
});

type GenNode = typeof genNode extends fc.Arbitrary<infer T> ? T : never;

function buildCase(genNodes: GenNode[], services: GenService[], order: number[]): { nodes: SchedNode[]; tasks: SchedTask[] } {
  const nodes = genNodes.map((g, i) => node(`n${i}`, {
    cpus: g.cpus, memory: g.memGiB * GiB, labels: { ...(g.zone ? { zone: g.zone } : {}), ...(g.disk ? { disk: g.disk } : {}) }, role: g.role,
    ready: g.ready, availability: g.availability, drivers: g.drivers, reservedCpu: g.cpus * g.usedCpuFrac, reservedMemory: g.memGiB * GiB * g.usedMemFrac,
    hostPorts: g.ports, serviceTasks: g.otherTasks ? { other: g.otherTasks } : {},
  }));
  const all: SchedTask[] = [];
  services.forEach((s, si) => {
    const opts: TaskOpts = { cpu: s.cpu, memory: s.memory, constraints: s.constraints, spreadOver: s.spread ? ['zone'] : [], hostPorts: s.hostPort ? [s.hostPort] : [], maxPerNode: s.maxPerNode, drivers: s.drivers };
    if (s.global) {
      // One task per node id, plus one for a node that is not in the cluster.
      for (const id of [...nodes.map((n) => n.id), 'gone']) all.push(task(`s${si}.${id}`, `s${si}`, { ...opts, pinned: id }));
    } else {
      for (let i = 0; i < s.count; i++) all.push(task(`s${si}.${i + 1}`, `s${si}`, opts));
    }
  });
  // Interleave the services' tasks (the runner sorts by creation time, not by service).
  const shuffled = all.map((t, i) => ({ t, k: order[i % Math.max(1, order.length)]! * 1000 + i })).sort((a, b) => a.k - b.k).map((x) => x.t);
  return { nodes, tasks: shuffled };
}

function staticOk(t: SchedTask, n: SchedNode): boolean {
  return filtersFor(t).filter((f) => f.kind === 'static').every((f) => f.check(t, n));
}

describe('scheduler: properties (fast-check)', () => {
  it('never over-commits, places only where every filter holds, leaves a task pending only when no node fits, spreads evenly', () => {
    console.log(`# scheduler property: fast-check seed ${SEED}, ${RUNS} runs (FC_SEED / FC_RUNS to change)`);
    fc.assert(
      fc.property(fc.array(genNode, { minLength: 0, maxLength: 12 }), fc.array(genService, { minLength: 1, maxLength: 5 }), fc.array(fc.nat({ max: 9 }), { minLength: 1, maxLength: 20 }), (gn, gs, order) => {
        const { nodes, tasks: ts } = buildCase(gn, gs, order);
        const before = new Map(nodes.map((n) => [n.id, cloneNode(n)]));
        const byTask = new Map(ts.map((t) => [t.id, t]));
        const r = schedule(ts, nodes);

        // Every task is either placed or pending, exactly once.
        const seen = [...r.placements.map((p) => p.taskId), ...r.unplaced.map((u) => u.taskId)];
        assert.equal(seen.length, ts.length);
        assert.deepEqual(new Set(seen), new Set(ts.map((t) => t.id)));

        // Recompute each node's use from the placements.
        const use = new Map([...before.values()].map((n) => [n.id, cloneNode(n)]));
        for (const p of r.placements) {
          const t = byTask.get(p.taskId)!;
          const n = use.get(p.nodeId)!;
          assert.ok(n, `placed on unknown node ${p.nodeId}`);
          assert.ok(staticOk(t, before.get(p.nodeId)!), `${t.id} placed on ${p.nodeId}, which fails a static filter (ready/active, driver, constraint, pinned)`);
          if (t.pinnedNode !== undefined) assert.equal(p.nodeId, t.pinnedNode);
          n.reservedCpu += t.reserveCpu;
          n.reservedMemory += t.reserveMemory;
          for (const port of t.hostPorts) {
            assert.ok(!n.hostPorts.has(port), `host port ${port} used twice on ${n.id}`);
            n.hostPorts.add(port);
          }
          const c = (n.serviceTasks.get(t.serviceId) ?? 0) + 1;
          n.serviceTasks.set(t.serviceId, c);
          if (t.maxReplicasPerNode > 0) assert.ok(c <= t.maxReplicasPerNode, `${c} tasks of ${t.serviceId} on ${n.id} (max ${t.maxReplicasPerNode})`);
          n.totalTasks += 1;
        }
        for (const n of nodes) {
          const u = use.get(n.id)!;
          const b = before.get(n.id)!;
          // Reservations never exceed capacity (beyond what was already reserved before the pass).
          if (u.reservedCpu > b.reservedCpu) assert.ok(u.reservedCpu <= n.cpus + 1e-6, `cpu over-committed on ${n.id}: ${u.reservedCpu} > ${n.cpus}`);
          if (u.reservedMemory > b.reservedMemory) assert.ok(u.reservedMemory <= n.memoryBytes, `memory over-committed on ${n.id}`);
          // The snapshot was updated consistently.
          assert.ok(Math.abs(n.reservedCpu - u.reservedCpu) < 1e-6);
          assert.equal(n.reservedMemory, u.reservedMemory);
          assert.equal(n.totalTasks, u.totalTasks);
          assert.deepEqual(n.hostPorts, u.hostPorts);
        }

        // Pending only when no node could take the task, even at the end of the pass (resources only
        // shrink during a pass), and always with a reason.
        for (const un of r.unplaced) {
          const t = byTask.get(un.taskId)!;
          assert.match(un.reason, /^no suitable node/);
          const fits = nodes.filter((n) => filtersFor(t).every((f) => f.check(t, n)));
          assert.deepEqual(fits.map((n) => n.id), [], `${t.id} left pending (${un.reason}) although it fits on ${fits.map((n) => n.id).join(', ')}`);
        }

        // Spread: a service limited by nothing dynamic has its tasks evenly over eligible nodes
        // (or over zone values with the spread preference).
        gs.forEach((s, si) => {
          if (s.global || s.cpu || s.memory || s.hostPort || s.maxPerNode || s.count === 0) return;
          const sid = `s${si}`;
          const sample = ts.find((t) => t.serviceId === sid)!;
          const eligible = [...before.values()].filter((n) => staticOk(sample, n));
          if (eligible.length === 0) return;
          const placed = r.placements.filter((p) => byTask.get(p.taskId)!.serviceId === sid);
          assert.equal(placed.length, s.count);
          const key = (id: string) => (s.spread ? before.get(id)!.labels.zone ?? '(none)' : id);
          const counts = countBy(placed, (p) => key(p.nodeId));
          for (const n of eligible) counts[key(n.id)] ??= 0;
          const vs = Object.values(counts);
          assert.ok(Math.max(...vs) - Math.min(...vs) <= 1, `${sid} (spread ${s.spread ? 'zone' : 'nodes'}) uneven: ${JSON.stringify(counts)}`);
        });
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('places exactly min(tasks, capacity) for one service with uniform reservations', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ cpus: fc.integer({ min: 0, max: 8 }), memGiB: fc.integer({ min: 0, max: 8 }), usable: fc.integer({ min: 0, max: 5 }).map((x) => x > 0) }), { maxLength: 10 }),
        fc.constantFrom(0.5, 1, 2), fc.constantFrom(0, GiB, 3 * GiB), fc.constantFrom(0, 1, 2), fc.integer({ min: 0, max: 60 }), fc.boolean(),
        (gn, cpu, mem, maxPer, count, spread) => {
          const nodes = gn.map((g, i) => node(`n${i}`, { cpus: g.cpus, memory: g.memGiB * GiB, availability: g.usable ? 'active' : 'drain', labels: { zone: 'ab'[i % 2]! } }));
          const cap = gn.reduce((sum, g) => {
            if (!g.usable) return sum;
            let k = Math.floor(g.cpus / cpu);
            if (mem) k = Math.min(k, Math.floor((g.memGiB * GiB) / mem));
            if (maxPer) k = Math.min(k, maxPer);
            return sum + k;
          }, 0);
          const r = schedule(tasks('s', count, { cpu, memory: mem, maxPerNode: maxPer, spreadOver: spread ? ['zone'] : [] }), nodes);
          assert.equal(r.placements.length, Math.min(count, cap));
          assert.equal(r.unplaced.length, count - Math.min(count, cap));
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });
});
