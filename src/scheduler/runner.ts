import type { Logger } from 'pino';
import { YunError } from '../errors/errors.js';
import type { Change, Op, Store, StoredObject } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { isActive, type TaskData } from '../services/task.js';
import { freeSlice, freeTaskAddress, nodeSliceCount, parseCidr } from '../network/ipam.js';
import type { NetworkData } from '../manager/routes/networks.js';
import type { TaskTemplate } from '../services/spec.js';
import { parseConstraint } from './constraints.js';
import { schedule } from './scheduler.js';
import type { Constraint, SchedNode, SchedTask } from './types.js';

/** The drivers a task may use: its own, or (no driver given) oci/docker for an image, process otherwise. */
export function candidateDrivers(spec: TaskTemplate): string[] {
  if (spec.driver) return [spec.driver];
  return spec.image ? ['oci', 'docker'] : ['process'];
}

export function toSchedTask(id: string, d: TaskData): SchedTask {
  const spec = d.spec;
  return {
    id,
    serviceId: d.service_id,
    groupKey: `${d.service_id}#${d.spec_version}#${d.pinned_node ?? ''}`,
    drivers: candidateDrivers(spec),
    constraints: spec.placement.constraints.map(parseConstraint).filter((c): c is Constraint => typeof c !== 'string'),
    spreadOver: spec.placement.preferences.map((p) => p.spread.replace(/^node\.labels\./, '')),
    reserveCpu: spec.resources.reservations.cpu,
    reserveMemory: spec.resources.reservations.memory_bytes,
    hostPorts: d.ports.filter((p) => p.mode === 'host' && p.published).map((p) => `${p.protocol}/${p.published}`),
    maxReplicasPerNode: spec.placement.max_replicas_per_node,
    pinnedNode: d.pinned_node ?? undefined,
    requiredFeatures: d.networks?.length ? ['overlay'] : [],
  };
}

export function toSchedNode(n: StoredObject): SchedNode {
  const d = n.data as Record<string, any>;
  const drivers = new Set<string>(Object.entries((d.drivers ?? {}) as Record<string, { available: boolean }>).filter(([, v]) => v.available).map(([k]) => k));
  return {
    id: n.id, name: n.name, role: d.role, labels: d.labels ?? {}, ready: d.status === 'ready', availability: d.availability,
    drivers, missingFeatures: new Map(Object.entries((d.missing_features ?? {}) as Record<string, string>)),
    cpus: d.resources?.cpus ?? 0, memoryBytes: d.resources?.memory_bytes ?? 0,
    reservedCpu: 0, reservedMemory: 0, hostPorts: new Set(), serviceTasks: new Map(), totalTasks: 0,
  };
}

/**
 * Places pending tasks whenever something that could change a placement happens: a task becomes
 * pending, a task ends (resources free up), a node joins or changes. Unplaceable tasks stay
 * `pending`, with the reason in their status message.
 */
export class SchedulerRunner {
  private scheduled = false;
  private running = false;
  private again = false;
  private unwatch?: () => void;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private store: Store, private clock: Clock, private log: Logger) {}

  async start(): Promise<void> {
    const rev = await this.store.revision();
    this.unwatch = await this.store.watch(rev, (cs) => this.onChanges(cs));
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
  }

  private onChanges(changes: Change[]): void {
    for (const c of changes) {
      if (c.kind === 'node') return this.kick();
      if (c.kind !== 'task') continue;
      const d = c.object.data as TaskData;
      // New pending work, or resources freed up.
      if (d.status.state === 'pending' || c.type === 'delete' || d.status.state === 'complete' || d.status.state === 'failed' || d.status.state === 'shutdown' || d.status.state === 'rejected' || d.status.state === 'orphaned') {
        return this.kick();
      }
    }
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) { this.again = true; return; }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.pass();
    });
  }

  async idle(): Promise<void> {
    if (!this.running && !this.scheduled) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private async pass(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      do {
        this.again = false;
        await this.passOnce();
      } while (this.again && !this.stopped);
    } catch (e) {
      if (!(e instanceof YunError && e.code === 'YUN_VERSION_CONFLICT')) this.log.error({ err: e }, 'scheduling pass failed');
      setTimeout(() => this.kick(), 200).unref();
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async passOnce(): Promise<void> {
    const pending = (await this.store.list('task', { limit: 1_000_000, filters: [{ field: 'status.state', op: 'eq', value: 'pending' }, { field: 'desired_state', op: 'eq', value: 'running' }] })).items;
    if (pending.length === 0) return;
    const nodeObjs = (await this.store.list('node', { limit: 100000 })).items;
    const nodes = nodeObjs.map(toSchedNode);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const active = (await this.store.list('task', { limit: 10_000_000, filters: [{ field: 'node_id', op: 'exists' }] })).items;
    for (const t of active) {
      const d = t.data as TaskData;
      if (!isActive(d)) continue;
      const n = byId.get(d.node_id!);
      if (!n) continue;
      n.reservedCpu += d.spec.resources.reservations.cpu;
      n.reservedMemory += d.spec.resources.reservations.memory_bytes;
      for (const p of d.ports) if (p.mode === 'host' && p.published) n.hostPorts.add(`${p.protocol}/${p.published}`);
      n.serviceTasks.set(d.service_id, (n.serviceTasks.get(d.service_id) ?? 0) + 1);
      n.totalTasks += 1;
    }
    pending.sort((a, b) => a.created_at.localeCompare(b.created_at));
    const result = schedule(pending.map((t) => toSchedTask(t.id, t.data as TaskData)), nodes);
    const byTask = new Map(pending.map((t) => [t.id, t]));
    const iso = this.clock.iso();
    const ops: Op[] = [];
    const addressing = await this.addresses(result.placements.map((p) => ({ task: byTask.get(p.taskId)!, nodeId: p.nodeId })), active);
    if (addressing.conflict) this.again = true;
    for (const p of result.placements) {
      const t = byTask.get(p.taskId)!;
      const d = t.data as TaskData;
      const nets = addressing.tasks.get(t.id);
      if (nets === null) continue; // its network's update conflicted: next pass
      if (typeof nets === 'string') {
        result.unplaced.push({ taskId: t.id, reason: nets });
        continue;
      }
      ops.push({ op: 'update', kind: 'task', id: t.id, version: t.version, data: { ...d, ...(nets ? { networks: nets } : {}), node_id: p.nodeId, status: { ...d.status, state: 'assigned', message: `assigned to node ${byId.get(p.nodeId)?.name ?? p.nodeId}`, timestamp: iso } } });
    }
    for (const u of result.unplaced) {
      const t = byTask.get(u.taskId)!;
      const d = t.data as TaskData;
      if (d.status.message === u.reason) continue;
      ops.push({ op: 'update', kind: 'task', id: t.id, version: t.version, data: { ...d, status: { ...d.status, message: u.reason, timestamp: iso } } });
    }
    // Apply in chunks so a conflict on one task does not undo the rest.
    for (let i = 0; i < ops.length; i += 500) {
      const chunk = ops.slice(i, i + 500);
      try {
        await this.store.batch(chunk);
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        for (const op of chunk) {
          try { await this.store.batch([op]); } catch { this.again = true; }
        }
      }
    }
  }

  /**
   * Overlay addresses for placed tasks: the node's slice of each network (allocated here on the
   * node's first task of it, stored on the network) and the lowest free address in it. Per task:
   * its networks, a reason it cannot be placed (string), or null when a network changed meanwhile.
   */
  private async addresses(placed: { task: StoredObject; nodeId: string }[], active: StoredObject[]): Promise<{ tasks: Map<string, TaskData['networks'] | string | null>; conflict: boolean }> {
    const out = new Map<string, TaskData['networks'] | string | null>();
    const needs = placed.filter((p) => (p.task.data as TaskData).networks?.length);
    if (needs.length === 0) return { tasks: out, conflict: false };
    const nets = new Map<string, { obj: StoredObject; data: NetworkData; dirty: boolean }>();
    const used = new Map<string, Set<string>>(); // network id → addresses held by active tasks
    for (const t of active) {
      const d = t.data as TaskData;
      if (!isActive(d)) continue;
      for (const n of d.networks ?? []) if (n.address) (used.get(n.id) ?? used.set(n.id, new Set()).get(n.id)!).add(n.address);
    }
    for (const { task, nodeId } of needs) {
      const d = task.data as TaskData;
      const assigned: NonNullable<TaskData['networks']> = [];
      let problem: string | null = null;
      for (const tn of d.networks!) {
        let net = nets.get(tn.id);
        if (!net) {
          const obj = await this.store.get('network', tn.id);
          if (!obj) { problem = `network ${tn.id} no longer exists`; break; }
          net = { obj, data: structuredClone(obj.data as NetworkData), dirty: false };
          nets.set(tn.id, net);
        }
        const cidr = parseCidr(net.data.subnet);
        let index = net.data.slices[nodeId];
        if (index === undefined) {
          const free = freeSlice(cidr, Object.values(net.data.slices));
          if (free === null) { problem = `network "${net.obj.name}" (${net.data.subnet}) has address space for ${nodeSliceCount(cidr)} nodes, and all are taken: recreate it with a larger --subnet`; break; }
          index = free;
          net.data.slices[nodeId] = free;
          net.dirty = true;
        }
        const u = used.get(tn.id) ?? used.set(tn.id, new Set()).get(tn.id)!;
        const address = freeTaskAddress(cidr, index, u);
        if (!address) { problem = `network "${net.obj.name}" has no free address left on this node (its slice of ${net.data.subnet} is full)`; break; }
        u.add(address);
        assigned.push({ id: tn.id, address });
      }
      out.set(task.id, problem ?? assigned);
    }
    let conflict = false;
    for (const [id, net] of nets) {
      if (!net.dirty) continue;
      try {
        await this.store.batch([{ op: 'update', kind: 'network', id, version: net.obj.version, data: net.data }]);
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        conflict = true;
        for (const { task } of needs) if ((task.data as TaskData).networks!.some((n) => n.id === id)) out.set(task.id, null);
      }
    }
    return { tasks: out, conflict };
  }
}
