import type { Logger } from 'pino';
import { YunError } from '../errors/errors.js';
import type { Change, Op, Store, StoredObject } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import type { ServiceData } from '../services/spec.js';
import type { TaskData } from '../services/task.js';
import { reconcile, type RNode, type RService, type RTask } from './reconcile.js';

/**
 * Runs `reconcile` for every service whose desired or actual state changed (from the store's change
 * feed), and applies each plan in one batch. Plans that lose a race (version conflict) are retried.
 */
export class Orchestrator {
  private dirty = new Set<string>();
  private scheduled = false;
  private running = false;
  private timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private unwatch?: () => void;
  private stopped = false;
  /** Resolves when the queue is empty (tests and benchmarks). */
  private idleWaiters: (() => void)[] = [];

  constructor(private store: Store, private clock: Clock, private log: Logger) {}

  async start(): Promise<void> {
    const rev = await this.store.revision();
    // Reconcile everything once at start: the manager may have been down while things changed.
    const services = await listAll(this.store, 'service');
    for (const s of services) this.dirty.add(s.id);
    const orphans = await listAll(this.store, 'task');
    const known = new Set(services.map((s) => s.id));
    for (const t of orphans) if (!known.has((t.data as TaskData).service_id)) this.dirty.add((t.data as TaskData).service_id);
    this.unwatch = await this.store.watch(rev, (changes) => this.onChanges(changes));
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
  }

  private onChanges(changes: Change[]): void {
    for (const c of changes) {
      if (c.kind === 'service') this.dirty.add(c.id);
      else if (c.kind === 'task') this.dirty.add((c.object.data as TaskData).service_id);
      else if (c.kind === 'node') {
        // Only transitions that matter to placement: status, availability, labels, role.
        this.markAll();
      }
    }
    this.kick();
  }

  private markAll(): void {
    void listAll(this.store, 'service').then((services) => {
      for (const s of services) this.dirty.add(s.id);
      this.kick();
    });
  }

  /** Mark a service for reconciliation (the API does this after writes, as does a timer). */
  enqueue(serviceId: string): void {
    this.dirty.add(serviceId);
    this.kick();
  }

  private kick(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  async idle(): Promise<void> {
    if (!this.running && this.dirty.size === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private async drain(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.dirty.size > 0 && !this.stopped) {
        const ids = [...this.dirty];
        this.dirty.clear();
        const nodes = await this.nodes();
        for (const id of ids) {
          try {
            await this.reconcileOne(id, nodes);
          } catch (e) {
            if (e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND')) {
              this.dirty.add(id); // lost a race with an agent or the API: read again
            } else {
              this.log.error({ err: e, service_id: id }, 'reconcile failed');
              this.wakeAt(id, this.clock.now() + 1000);
            }
          }
        }
      }
    } finally {
      this.running = false;
      if (this.dirty.size > 0) this.kick();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async nodes(): Promise<RNode[]> {
    return (await listAll(this.store, 'node')).map((n) => ({
      id: n.id, name: n.name, status: n.data.status as RNode['status'], availability: n.data.availability as RNode['availability'],
      role: n.data.role as string, labels: (n.data.labels as Record<string, string>) ?? {},
    }));
  }

  private wakeAt(serviceId: string, at: number): void {
    const existing = this.timers.get(serviceId);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(serviceId);
      this.enqueue(serviceId);
    }, Math.max(0, at - this.clock.now()) + 5);
    timer.unref();
    this.timers.set(serviceId, { at, timer });
  }

  private async reconcileOne(serviceId: string, nodes: RNode[]): Promise<void> {
    const svc = await this.store.get('service', serviceId);
    const taskObjs = (await this.store.list('task', { limit: 1_000_000, filters: [{ field: 'service_id', op: 'eq', value: serviceId }] })).items;
    if (!svc && taskObjs.length === 0) return;
    const sd = svc?.data as ServiceData | undefined;
    const rservice: RService | null = svc && sd
      ? { id: svc.id, name: svc.name, updated_at: (sd.spec_changed_at as string | undefined) ?? svc.created_at, spec: sd.spec, spec_version: sd.spec_version, previous_spec: sd.previous_spec, update_status: sd.update_status }
      : null;
    const tasks: RTask[] = taskObjs.map((t) => ({ id: t.id, created_at: t.created_at, data: t.data as TaskData }));
    const now = this.clock.now();
    const plan = reconcile(rservice, tasks, nodes, now);
    if (plan.wakeAt !== undefined) this.wakeAt(serviceId, plan.wakeAt);
    const byId = new Map(taskObjs.map((t) => [t.id, t]));
    const ops: Op[] = [];
    const iso = new Date(now).toISOString();
    if (plan.service && svc) {
      ops.push({ op: 'update', kind: 'service', id: svc.id, version: svc.version, data: { ...svc.data, ...plan.service } });
    }
    for (const c of plan.change) {
      const t = byId.get(c.id)!;
      const d = t.data as TaskData;
      const next: TaskData = { ...d };
      if (c.desired_state) next.desired_state = c.desired_state;
      if (c.shutdown_reason !== undefined) next.shutdown_reason = c.shutdown_reason;
      if (c.state === 'orphaned') next.status = { ...d.status, state: 'orphaned', message: c.shutdown_reason ?? 'node removed', timestamp: iso };
      if (c.state === 'shutdown') next.status = { ...d.status, state: 'shutdown', message: c.message ?? 'shut down', timestamp: iso };
      ops.push({ op: 'update', kind: 'task', id: t.id, version: t.version, data: next });
    }
    for (const id of plan.remove) {
      const t = byId.get(id);
      if (t) ops.push({ op: 'delete', kind: 'task', id, version: t.version });
    }
    if (svc && sd) {
      for (const n of plan.create) ops.push({ op: 'create', kind: 'task', project_id: svc.project_id, name: '', data: newTask(svc, sd, n.slot, n.node_id, iso) });
    }
    if (ops.length === 0) return;
    // Task names are their ids (the API shows service.slot): fill them in.
    for (const op of ops) if (op.op === 'create') { op.id = newTaskId(); op.name = op.id; }
    await this.store.batch(ops);
  }
}

import { newId } from '../util/ids.js';
import { listAll } from '../store/paging.js';
const newTaskId = newId;

export function newTask(svc: StoredObject, sd: ServiceData, slot: number | null, nodeId: string | null, iso: string): TaskData {
  return {
    service_id: svc.id,
    service_name: svc.name,
    slot,
    node_id: null,
    pinned_node: nodeId,
    desired_state: 'running',
    status: { state: 'pending', message: 'waiting to be scheduled', error: null, exit_code: null, timestamp: iso },
    spec: sd.spec.task,
    spec_version: sd.spec_version,
    ports: sd.spec.endpoint.ports.map((p) => ({ ...p })),
    ...(sd.spec.networks.length ? { networks: sd.spec.networks.map((id) => ({ id, address: null })) } : {}),
    not_before: null,
    shutdown_reason: null,
  };
}
