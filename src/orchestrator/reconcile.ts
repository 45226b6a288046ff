import { parseConstraint, satisfies } from '../scheduler/constraints.js';
import type { SchedNode } from '../scheduler/types.js';
import type { ServiceSpec, UpdateConfig, UpdateStatus } from '../services/spec.js';
import { isTerminal, type TaskData } from '../services/task.js';

/**
 * Reconcile one service: desired (its spec) against actual (its tasks, the nodes) → a plan.
 * Pure (DESIGN.md, convention 2): no I/O, time passed in; the caller applies the plan.
 *
 * Tasks live in slots: 1..replicas for a replicated service, one per eligible node (keyed by node
 * id) for a global one. A slot's live task is the one whose desired state is `running`.
 */

/** How many ended tasks each slot keeps for `service ps`. */
export const HISTORY_PER_SLOT = 5;

export interface RTask {
  id: string;
  created_at: string;
  data: TaskData;
}

export interface RNode {
  id: string;
  status: 'ready' | 'down' | 'unknown';
  availability: 'active' | 'pause' | 'drain';
  name: string;
  role: string;
  labels: Record<string, string>;
}

export interface RService {
  id: string;
  /** When the service was last changed (a slot that ended before it starts afresh). */
  updated_at?: string;
  name: string;
  spec: ServiceSpec;
  spec_version: number;
  previous_spec: ServiceSpec | null;
  update_status: UpdateStatus | null;
}

export interface NewTask {
  slot: number | null;
  node_id: string | null;
  spec_version: number;
}

export interface TaskChange {
  id: string;
  desired_state?: 'running' | 'shutdown' | 'remove';
  shutdown_reason?: string;
  /** Only ever moves forward: `orphaned` when its node was removed, `shutdown` when it never reached a node. */
  state?: 'orphaned' | 'shutdown';
  message?: string;
}

export interface Plan {
  create: NewTask[];
  change: TaskChange[];
  remove: string[];
  service?: Partial<Pick<RService, 'spec' | 'spec_version' | 'previous_spec' | 'update_status'>>;
  /** Call again at this time (restart delays, update delays, monitor windows). */
  wakeAt?: number;
}

type Reason = 'scale' | 'node' | 'update' | 'removed' | 'constraint';

const REASON_PREFIX: Record<Reason, string> = {
  scale: 'scaled down',
  node: 'node',
  update: 'replaced by a rolling update',
  removed: 'service removed',
  constraint: 'node no longer eligible',
};

function reasonKind(t: TaskData): Reason | undefined {
  const r = t.shutdown_reason ?? '';
  for (const [k, p] of Object.entries(REASON_PREFIX) as [Reason, string][]) if (r.startsWith(p)) return k;
  return undefined;
}

const ts = (iso: string | null | undefined) => (iso ? Date.parse(iso) : NaN);

function failed(t: TaskData): boolean {
  const s = t.status.state;
  return s === 'failed' || s === 'rejected' || (s === 'complete' && (t.status.exit_code ?? 0) !== 0);
}

/** A task is stable once running (and healthy, if it has a health check). */
function stable(t: TaskData): boolean {
  return t.status.state === 'running' && (!t.spec.health_check || t.status.health === 'healthy');
}

export function reconcile(service: RService | null, inputTasks: RTask[], nodes: RNode[], now: number): Plan {
  // Work on copies: the caller's objects stay as they were (reconcile is pure).
  const tasks = inputTasks.map((t) => ({ ...t }));
  const plan: Plan = { create: [], change: [], remove: [] };
  const wake = (at: number) => {
    if (Number.isFinite(at) && at > now && (plan.wakeAt === undefined || at < plan.wakeAt)) plan.wakeAt = at;
  };
  const changed = new Map<string, TaskChange>();
  const change = (t: RTask, c: Omit<TaskChange, 'id'>) => {
    const prev = changed.get(t.id) ?? { id: t.id };
    const next = { ...prev, ...c };
    changed.set(t.id, next);
    if (c.desired_state) t.data = { ...t.data, desired_state: c.desired_state, shutdown_reason: c.shutdown_reason ?? t.data.shutdown_reason };
  };

  // ---- the service is gone: every task goes -------------------------------------------------
  if (!service) {
    for (const t of tasks) {
      if (t.data.node_id === null || isTerminal(t.data.status.state)) plan.remove.push(t.id);
      else if (t.data.desired_state !== 'remove') change(t, { desired_state: 'remove', shutdown_reason: REASON_PREFIX.removed });
    }
    plan.change = [...changed.values()];
    return plan;
  }

  const spec = service.spec;
  const nodeById = new Map(nodes.map((n) => [n.id, n]));

  // ---- tasks on nodes that are down, drained, removed, or (global) no longer eligible ---------
  const constraints = spec.task.placement.constraints.map(parseConstraint).filter((c): c is Exclude<typeof c, string> => typeof c !== 'string');
  const eligibleForGlobal = (n: RNode) =>
    n.status === 'ready' && n.availability === 'active' &&
    constraints.every((c) => satisfies({ id: n.id, name: n.name, role: n.role, labels: n.labels } as SchedNode, c));
  for (const t of tasks) {
    const d = t.data;
    if (d.node_id !== null && !nodeById.has(d.node_id) && !isTerminal(d.status.state)) {
      // Its node is gone for good: nobody will ever report on it.
      change(t, { desired_state: d.desired_state === 'remove' ? 'remove' : 'shutdown', shutdown_reason: d.desired_state === 'running' ? `${REASON_PREFIX.node} removed from the cluster` : d.shutdown_reason ?? `${REASON_PREFIX.node} removed from the cluster` });
      changed.get(t.id)!.state = 'orphaned';
      t.data = { ...t.data, status: { ...t.data.status, state: 'orphaned' } };
      continue;
    }
    if (d.desired_state !== 'running' || d.node_id === null) continue;
    const n = nodeById.get(d.node_id);
    if (!n) continue; // ended on a node since removed: the restart policy below decides
    if (n.status !== 'ready') {
      change(t, { desired_state: 'shutdown', shutdown_reason: `${REASON_PREFIX.node} ${n.name} is ${n.status}` });
    } else if (n.availability === 'drain') {
      change(t, { desired_state: 'shutdown', shutdown_reason: `${REASON_PREFIX.node} ${n.name} is drained` });
    } else if (spec.mode === 'global' && !constraints.every((c) => satisfies({ id: n.id, name: n.name, role: n.role, labels: n.labels } as SchedNode, c))) {
      change(t, { desired_state: 'shutdown', shutdown_reason: `${REASON_PREFIX.constraint}: ${n.name} no longer satisfies the constraints` });
    }
  }
  // Tasks that ended while desired running, on nodes still fine, stay "live" for the restart logic below.

  // ---- slots -----------------------------------------------------------------------------------
  const slotKey = (t: TaskData) => (t.slot !== null ? String(t.slot) : t.pinned_node ?? t.node_id ?? '');
  const slots = new Map<string, RTask[]>();
  for (const t of tasks) {
    const k = slotKey(t.data);
    const list = slots.get(k);
    if (list) list.push(t);
    else slots.set(k, [t]);
  }
  for (const list of slots.values()) list.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));

  const wanted: string[] = spec.mode === 'replicated'
    ? Array.from({ length: spec.replicas }, (_v, i) => String(i + 1))
    : nodes.filter(eligibleForGlobal).map((n) => n.id);
  const wantedSet = new Set(wanted);
  // Global: keep tasks on paused nodes (pause keeps what runs, places nothing new).
  const keepGlobal = (k: string) => spec.mode === 'global' && nodeById.get(k)?.availability === 'pause' && nodeById.get(k)?.status === 'ready';

  // Slots no longer wanted: shut down their live tasks.
  for (const [k, list] of slots) {
    if (wantedSet.has(k) || keepGlobal(k)) continue;
    for (const t of list) {
      if (t.data.desired_state === 'running') {
        change(t, { desired_state: 'shutdown', shutdown_reason: spec.mode === 'replicated' ? `${REASON_PREFIX.scale} to ${spec.replicas}` : `${REASON_PREFIX.constraint}` });
      }
    }
  }

  // ---- rolling update bookkeeping --------------------------------------------------------------
  let updateStatus = service.update_status;
  const rollingBack = updateStatus?.state.startsWith('rollback') ?? false;
  const cfg: UpdateConfig = rollingBack ? spec.rollback_config : spec.update_config;
  const paused = updateStatus?.state === 'paused' || updateStatus?.state === 'rollback_paused';
  const current = service.spec_version;
  // A task is up to date when it runs the current task spec (a rollback leaves tasks that already
  // run the restored spec alone; a scale-only change touches none).
  const specKey = JSON.stringify([spec.task, spec.endpoint.ports, spec.networks ?? []]);
  const isNew = (t: RTask) => t.data.spec_version >= current || JSON.stringify([t.data.spec, t.data.ports, (t.data.networks ?? []).map((n) => n.id)]) === specKey;

  // Update failures: new-version tasks that failed during their monitor window.
  if (updateStatus && (updateStatus.state === 'updating' || updateStatus.state === 'rollback_started')) {
    const updateStart = ts(updateStatus.started_at);
    const failures = tasks.filter((t) => isNew(t) && ts(t.created_at) >= updateStart && failed(t.data) && reasonKind(t.data) === undefined &&
      (ts(t.data.status.timestamp) - (ts(t.data.status.started_at) || ts(t.created_at)) <= cfg.monitor_ms || !t.data.status.started_at));
    const total = Math.max(1, wanted.length);
    if (failures.length > 0 && failures.length / total > cfg.max_failure_ratio && cfg.failure_action !== 'continue') {
      const f = failures[failures.length - 1]!;
      const why = `task ${f.data.service_name}.${f.data.slot ?? f.data.node_id} failed: ${f.data.status.error ?? f.data.status.message ?? f.data.status.state}`;
      if (cfg.failure_action === 'rollback' && !rollingBack && service.previous_spec) {
        plan.service = {
          spec: service.previous_spec,
          previous_spec: spec,
          spec_version: current + 1,
          update_status: { state: 'rollback_started', started_at: new Date(now).toISOString(), message: `update rolled back: ${why}` },
        };
        // The new spec applies on the next pass; finish this one with the bookkeeping done so far.
        plan.change = [...changed.values()];
        return plan;
      }
      updateStatus = { ...updateStatus, state: rollingBack ? 'rollback_paused' : 'paused', message: `${rollingBack ? 'rollback' : 'update'} paused: ${why}` };
      plan.service = { update_status: updateStatus };
    }
  }
  const updatePaused = paused || updateStatus?.state === 'paused' || updateStatus?.state === 'rollback_paused';

  // Slots currently being updated, and when the last batch settled.
  let inFlight = 0;
  let lastSettled = 0;
  const dirtySlots: string[] = [];
  for (const k of wanted) {
    const list = slots.get(k) ?? [];
    const live = list.filter((t) => t.data.desired_state === 'running');
    const liveNew = live.filter(isNew);
    const liveOld = live.filter((t) => !isNew(t));
    const nodeReady = (t: RTask) => t.data.node_id !== null && nodeById.get(t.data.node_id)?.status === 'ready';
    const stoppingForUpdate = list.some((t) => t.data.desired_state !== 'running' && !isTerminal(t.data.status.state) && reasonKind(t.data) === 'update' && nodeReady(t));
    const lastUpdateStop = list.filter((t) => reasonKind(t.data) === 'update').pop();
    const lastTask = list[list.length - 1];
    if (liveNew.length > 0 && liveOld.length > 0) inFlight++; // start-first: new one starting
    else if (stoppingForUpdate) inFlight++; // stop-first: old one stopping
    else if (live.length === 0 && lastTask && reasonKind(lastTask.data) === 'update') inFlight++; // stop-first: old one stopped, new one not yet made
    else if (liveNew.length > 0 && !stable(liveNew[liveNew.length - 1]!.data) && lastUpdateStop) inFlight++; // new one starting
    else if (liveOld.length > 0) dirtySlots.push(k);
    for (const t of liveNew) if (stable(t.data) && lastUpdateStop) lastSettled = Math.max(lastSettled, ts(t.data.status.timestamp));
  }
  const parallelism = cfg.parallelism === 0 ? Infinity : cfg.parallelism;
  const nextBatchAt = lastSettled ? lastSettled + cfg.delay_ms : 0;
  let canStart = updatePaused ? 0 : Math.max(0, parallelism - inFlight);
  if (canStart > 0 && dirtySlots.length > 0 && inFlight === 0 && nextBatchAt > now) {
    canStart = 0;
    wake(nextBatchAt);
  } else if (inFlight > 0 && canStart > 0 && cfg.delay_ms > 0) {
    canStart = 0; // with a delay, batches do not overlap
  }
  const toUpdate = new Set(dirtySlots.slice(0, canStart));

  // ---- per slot: keep one live task at the current spec ------------------------------------------
  const policy = spec.task.restart_policy;
  for (const k of wanted) {
    const list = slots.get(k) ?? [];
    const live = list.filter((t) => t.data.desired_state === 'running');
    const nodeId = spec.mode === 'global' ? k : null;
    const slot = spec.mode === 'replicated' ? Number(k) : null;

    // Live tasks that ended by themselves: the restart policy decides.
    const ended = live.filter((t) => isTerminal(t.data.status.state));
    for (const t of ended) change(t, { desired_state: 'shutdown', shutdown_reason: undefined });
    const running = live.filter((t) => !isTerminal(t.data.status.state));

    // Start-first update in progress: once the new task is stable, retire the old one.
    const runningNew = running.filter(isNew);
    const runningOld = running.filter((t) => !isNew(t));
    if (runningNew.length > 0 && runningOld.length > 0) {
      if (runningNew.some((t) => stable(t.data))) {
        for (const t of runningOld) change(t, { desired_state: 'shutdown', shutdown_reason: REASON_PREFIX.update });
      }
      continue;
    }
    if (running.length > 1) {
      // Never more than one live task per slot: keep the newest.
      for (const t of running.slice(0, -1)) change(t, { desired_state: 'shutdown', shutdown_reason: `${REASON_PREFIX.scale}: duplicate in slot` });
    }
    if (running.length > 0) {
      const t = running[running.length - 1]!;
      if (!isNew(t) && toUpdate.has(k)) {
        if (cfg.order === 'start-first') plan.create.push({ slot, node_id: nodeId, spec_version: current });
        else change(t, { desired_state: 'shutdown', shutdown_reason: REASON_PREFIX.update });
      }
      if (!isNew(t) && toUpdate.has(k) && cfg.order === 'stop-first') {
        // fallthrough: the slot is recreated once the old task has stopped
      }
      continue;
    }

    // No live task. Wait for one stopping for an update (stop-first), unless its node is gone.
    const stopping = list.filter((t) => !isTerminal(t.data.status.state) && t.data.desired_state === 'shutdown' && reasonKind(t.data) === 'update');
    if (stopping.some((t) => nodeById.get(t.data.node_id ?? '')?.status === 'ready')) continue;

    const last = list[list.length - 1];
    const endedBeforeChange = last !== undefined && service.updated_at !== undefined && ts(last.data.status.timestamp) < ts(service.updated_at);
    if (last && !endedBeforeChange && reasonKind(last.data) === undefined && (isTerminal(last.data.status.state) || ended.includes(last))) {
      // It ended by itself: apply the restart policy.
      const lastFailed = failed(last.data);
      if (policy.condition === 'none' || (policy.condition === 'on-failure' && !lastFailed)) continue;
      if (policy.max_attempts > 0) {
        const windowStart = policy.window_ms > 0 ? now - policy.window_ms : -Infinity;
        const attempts = list.filter((t) => isTerminal(t.data.status.state) && reasonKind(t.data) === undefined && t.data.spec_version === last.data.spec_version && ts(t.created_at) >= windowStart).length;
        if (attempts >= policy.max_attempts) {
          const note = `not restarted: ${attempts} of ${policy.max_attempts} attempts used (restart max attempts ${policy.max_attempts}${policy.window_ms ? ` within ${policy.window_ms} ms` : ''})`;
          if (last.data.shutdown_reason !== note) change(last, { desired_state: 'shutdown', shutdown_reason: note });
          continue;
        }
      }
      const readyAt = ts(last.data.status.timestamp) + policy.delay_ms;
      if (readyAt > now) {
        wake(readyAt);
        continue;
      }
    }
    if (spec.mode === 'global' && nodeById.get(k)?.availability === 'pause') continue;
    plan.create.push({ slot, node_id: nodeId, spec_version: current });
  }

  // ---- update finished? ---------------------------------------------------------------------------
  if (updateStatus && (updateStatus.state === 'updating' || updateStatus.state === 'rollback_started')) {
    const pendingWork = dirtySlots.length > 0 || inFlight > 0 || plan.create.length > 0 ||
      // a wanted slot still empty (e.g. waiting for its restart delay) is not done yet
      wanted.some((k) => !(slots.get(k) ?? []).some((t) => t.data.desired_state === 'running' && changed.get(t.id)?.desired_state !== 'shutdown')) ||
      wanted.some((k) => (slots.get(k) ?? []).some((t) => t.data.desired_state === 'running' && isNew(t) && !stable(t.data)));
    if (!pendingWork) {
      plan.service = {
        ...plan.service,
        update_status: {
          ...updateStatus,
          state: updateStatus.state === 'updating' ? 'completed' : 'rollback_completed',
          completed_at: new Date(now).toISOString(),
          message: updateStatus.state === 'updating' ? 'update completed' : `rollback completed (${updateStatus.message})`,
        },
      };
    }
  }

  // ---- history: keep the newest HISTORY_PER_SLOT ended tasks of each slot ----------------------------
  for (const list of slots.values()) {
    const done = list.filter((t) => isTerminal(t.data.status.state) && (t.data.desired_state !== 'running' || changed.get(t.id)?.desired_state === 'shutdown'));
    for (const t of done.slice(0, Math.max(0, done.length - HISTORY_PER_SLOT))) plan.remove.push(t.id);
  }
  // Tasks shut down before they ever reached a node go at once: they never ran, and no agent will
  // ever report on them.
  for (const t of tasks) {
    const c = changed.get(t.id);
    if (t.data.node_id === null && c?.desired_state && c.desired_state !== 'running' && !isTerminal(t.data.status.state) && !plan.remove.includes(t.id)) plan.remove.push(t.id);
  }
  const removed = new Set(plan.remove);
  plan.change = [...changed.values()].filter((c) => !removed.has(c.id));
  return plan;
}
