import { filtersFor, type Filter } from './filters.js';
import { NodeHeap } from './heap.js';
import { cpuNeed, memoryNeed, type Placement, type ScheduleResult, type SchedNode, type SchedTask, type Unplaced } from './types.js';

/**
 * Place tasks on nodes: filters, then scorers (spread the service's tasks over nodes, then the
 * least loaded node), over a snapshot. Pure: the snapshot is updated in place as tasks are placed,
 * so later tasks see earlier placements; nothing else is touched.
 *
 * Tasks of one group (same service and spec) share their static filters, which run once per group;
 * a heap then yields the best node per task in O(log n).
 */
export function schedule(tasks: SchedTask[], nodes: SchedNode[]): ScheduleResult {
  const placements: Placement[] = [];
  const unplaced: Unplaced[] = [];
  const groups = new Map<string, SchedTask[]>();
  for (const t of tasks) {
    const g = groups.get(t.groupKey);
    if (g) g.push(t);
    else groups.set(t.groupKey, [t]);
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (const group of groups.values()) {
    const first = group[0]!;
    const filters = filtersFor(first);
    const staticFilters = filters.filter((f) => f.kind === 'static' && f.name !== 'pinned');
    const dynamicFilters = filters.filter((f) => f.kind === 'dynamic');
    // Global services: each task is pinned; check it against its own node only.
    if (first.pinnedNode !== undefined) {
      for (const t of group) {
        const n = byId.get(t.pinnedNode!);
        if (n && filters.every((f) => f.check(t, n))) {
          assign(t, n, placements);
        } else {
          unplaced.push({ taskId: t.id, reason: n ? explain(t, [n], filters) : `no suitable node (node ${t.pinnedNode} is no longer in the cluster)` });
        }
      }
      continue;
    }
    const eligible = nodes.filter((n) => staticFilters.every((f) => f.check(first, n)));
    if (eligible.length === 0) {
      const reason = explain(first, nodes, filters);
      for (const t of group) unplaced.push({ taskId: t.id, reason });
      continue;
    }
    const serviceId = first.serviceId;
    const score = (n: SchedNode) => (n.serviceTasks.get(serviceId) ?? 0) * 1e7 + n.totalTasks;
    if (first.spreadOver.length === 0) {
      placeFromHeap(group, new NodeHeap(score, eligible), dynamicFilters, filters, nodes, placements, unplaced);
    } else {
      placeWithSpread(group, eligible, score, dynamicFilters, filters, nodes, placements, unplaced);
    }
  }
  return { placements, unplaced };
}

function assign(t: SchedTask, n: SchedNode, placements: Placement[]): void {
  n.reservedCpu += cpuNeed(t, n);
  n.reservedMemory += memoryNeed(t, n);
  if (t.reserveDisk) n.reservedDisk = (n.reservedDisk ?? 0) + t.reserveDisk;
  for (const p of t.hostPorts) n.hostPorts.add(p);
  n.serviceTasks.set(t.serviceId, (n.serviceTasks.get(t.serviceId) ?? 0) + 1);
  n.totalTasks += 1;
  placements.push({ taskId: t.id, nodeId: n.id });
}

function placeFromHeap(group: SchedTask[], heap: NodeHeap<SchedNode>, dynamic: Filter[], all: Filter[], nodes: SchedNode[], placements: Placement[], unplaced: Unplaced[]): void {
  for (let i = 0; i < group.length; i++) {
    const t = group[i]!;
    const setAside: SchedNode[] = [];
    let placed = false;
    while (heap.size > 0) {
      const n = heap.pop()!;
      if (dynamic.every((f) => f.check(t, n))) {
        assign(t, n, placements);
        heap.push(n);
        placed = true;
        break;
      }
      setAside.push(n);
    }
    if (!placed) {
      // Tasks of a group are alike: when none fits this one, none fits the rest.
      const reason = explain(t, nodes, all);
      for (const rest of group.slice(i)) unplaced.push({ taskId: rest.id, reason });
      return;
    }
    // Nodes set aside stay aside: what ruled them out (resources, ports, replicas per node) only grows.
  }
}

function placeWithSpread(group: SchedTask[], eligible: SchedNode[], score: (n: SchedNode) => number, dynamic: Filter[], all: Filter[], nodes: SchedNode[], placements: Placement[], unplaced: Unplaced[]): void {
  const first = group[0]!;
  const keys = first.spreadOver;
  // Preferences apply in order (as in swarm): spread over the values of the first label, then,
  // within each, over the values of the second, and so on. Nodes without a label form their own
  // group. Buckets hold the nodes of one full combination; counts are kept per prefix.
  const prefixes = (n: SchedNode) => keys.map((_k, i) => keys.slice(0, i + 1).map((key) => n.labels[key] ?? '\u0000').join('\u0001'));
  const counts = new Map<string, number>();
  const buckets = new Map<string, { heap: NodeHeap<SchedNode>; path: string[] }>();
  for (const n of eligible) {
    const path = prefixes(n);
    const k = path[path.length - 1]!;
    let b = buckets.get(k);
    if (!b) { b = { heap: new NodeHeap(score), path }; buckets.set(k, b); }
    b.heap.push(n);
    const c = n.serviceTasks.get(first.serviceId) ?? 0;
    for (const p of path) counts.set(p, (counts.get(p) ?? 0) + c);
  }
  const order = () => [...buckets.values()].sort((a, b) => {
    for (let i = 0; i < keys.length; i++) {
      const d = (counts.get(a.path[i]!) ?? 0) - (counts.get(b.path[i]!) ?? 0);
      if (d !== 0) return d;
      if (a.path[i] !== b.path[i]) return a.path[i]! < b.path[i]! ? -1 : 1;
    }
    return 0;
  });
  for (let i = 0; i < group.length; i++) {
    const t = group[i]!;
    let placed = false;
    for (const b of order()) {
      const setAside: SchedNode[] = [];
      while (b.heap.size > 0) {
        const n = b.heap.pop()!;
        if (dynamic.every((f) => f.check(t, n))) {
          assign(t, n, placements);
          b.heap.push(n);
          for (const p of b.path) counts.set(p, (counts.get(p) ?? 0) + 1);
          placed = true;
          break;
        }
        setAside.push(n);
      }
      // What ruled these nodes out only grows within a pass: leave them out of this bucket.
      if (placed) break;
    }
    if (!placed) {
      // Tasks of a group are alike: when none fits this one, none fits the rest.
      const reason = explain(t, nodes, all);
      for (const rest of group.slice(i)) unplaced.push({ taskId: rest.id, reason });
      return;
    }
  }
}

/** `no suitable node (insufficient memory on 3 nodes; constraint node.labels.zone==b not satisfied on 2 nodes)` */
export function explain(t: SchedTask, nodes: SchedNode[], filters: Filter[]): string {
  if (nodes.length === 0) return 'no suitable node (no nodes in the cluster)';
  const counts = new Map<Filter, number>();
  for (const n of nodes) {
    const f = filters.find((x) => !x.check(t, n));
    if (f) counts.set(f, (counts.get(f) ?? 0) + 1);
  }
  if (counts.size === 0) return 'no suitable node';
  const parts = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([f, c]) => f.explain(c, t));
  return `no suitable node (${parts.join('; ')})`;
}
