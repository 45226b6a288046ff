/**
 * The server state machine, pure (no I/O, time passed in): which actions each state allows, what an
 * action asks of the agent, how an agent's report moves the server on, and the `status` a user sees
 * (Nova's vm_state × task_state → status map).
 */
import { YunError } from '../errors/errors.js';
import type { FlavorSnapshot } from './flavor.js';
import type { DesiredPower, ImageSnapshot, ServerData, ServerEvent, ServerReport, TaskState, VmState } from './server.js';

/** status by vm_state, and by task_state where that says more (as Nova's API shows it). */
const STATUS: Record<VmState, { rest: string; during?: Partial<Record<TaskState, string>> }> = {
  building: { rest: 'BUILD' },
  active: { rest: 'ACTIVE', during: { rebooting: 'REBOOT', rebooting_hard: 'HARD_REBOOT', rebuilding: 'REBUILD', resize_prep: 'RESIZE' } },
  stopped: { rest: 'SHUTOFF', during: { rebooting_hard: 'HARD_REBOOT', rebuilding: 'REBUILD', resize_prep: 'RESIZE' } },
  paused: { rest: 'PAUSED', during: { rebooting_hard: 'HARD_REBOOT' } },
  suspended: { rest: 'SUSPENDED', during: { rebooting_hard: 'HARD_REBOOT' } },
  resized: { rest: 'VERIFY_RESIZE', during: { resize_reverting: 'REVERT_RESIZE' } },
  error: { rest: 'ERROR', during: { rebuilding: 'REBUILD', rebooting_hard: 'HARD_REBOOT' } },
};

export function serverStatus(vm: VmState, task: TaskState | null): string {
  const s = STATUS[vm];
  return (task && s.during?.[task]) || s.rest;
}

/** Every status a server can show (for docs and filters). */
export const STATUSES = ['BUILD', 'ACTIVE', 'SHUTOFF', 'PAUSED', 'SUSPENDED', 'VERIFY_RESIZE', 'REVERT_RESIZE', 'RESIZE', 'REBOOT', 'HARD_REBOOT', 'REBUILD', 'ERROR'] as const;

export type ServerAction =
  | 'start' | 'stop' | 'reboot' | 'reboot_hard' | 'pause' | 'unpause' | 'suspend' | 'resume'
  | 'rebuild' | 'resize' | 'resize_confirm' | 'resize_revert' | 'delete';

interface ActionRule {
  /** vm_states the action is allowed from (with no other action in progress). */
  from: VmState[];
  /** The task_state while it runs. */
  task: TaskState;
  /** How users name it (CLI verb). */
  verb: string;
}

/** Which states allow which action (Nova's `check_instance_state`, without the task_state exceptions). */
export const ACTIONS: Record<ServerAction, ActionRule> = {
  start: { from: ['stopped'], task: 'powering-on', verb: 'start' },
  stop: { from: ['active', 'error'], task: 'powering-off', verb: 'stop' },
  reboot: { from: ['active'], task: 'rebooting', verb: 'reboot' },
  reboot_hard: { from: ['active', 'stopped', 'paused', 'suspended', 'error'], task: 'rebooting_hard', verb: 'reboot --hard' },
  pause: { from: ['active'], task: 'pausing', verb: 'pause' },
  unpause: { from: ['paused'], task: 'unpausing', verb: 'unpause' },
  suspend: { from: ['active'], task: 'suspending', verb: 'suspend' },
  resume: { from: ['suspended'], task: 'resuming', verb: 'resume' },
  rebuild: { from: ['active', 'stopped', 'error'], task: 'rebuilding', verb: 'rebuild' },
  resize: { from: ['active', 'stopped'], task: 'resize_prep', verb: 'resize' },
  resize_confirm: { from: ['resized'], task: 'resize_confirming', verb: 'resize-confirm' },
  resize_revert: { from: ['resized'], task: 'resize_reverting', verb: 'resize-revert' },
  delete: { from: ['building', 'active', 'stopped', 'paused', 'suspended', 'resized', 'error'], task: 'deleting', verb: 'rm' },
};

/** The statuses an action is allowed from (what a 409 names). */
export function allowedStatuses(action: ServerAction): string[] {
  return ACTIONS[action].from.map((v) => STATUS[v].rest);
}

/** The actions a server allows now (the dashboard offers only these). */
export function allowedActions(d: Pick<ServerData, 'vm_state' | 'task_state' | 'node_id' | 'desired'>): ServerAction[] {
  return (Object.keys(ACTIONS) as ServerAction[]).filter((a) => actionProblem(a, d) === null);
}

function actionProblem(a: ServerAction, d: Pick<ServerData, 'vm_state' | 'task_state' | 'node_id' | 'desired'>): string | null {
  if (d.desired.deleting) return 'it is being deleted';
  if (a === 'delete') return null; // always, even during another action (as Nova)
  if (d.task_state !== null) return `an action is in progress (task_state ${d.task_state})`;
  if (!ACTIONS[a].from.includes(d.vm_state)) return `it is ${STATUS[d.vm_state].rest}`;
  if (d.node_id === null) return 'it was never placed on a node (delete it and create it again)';
  return null;
}

/** Throw the 409 that says why `action` cannot run now and which statuses allow it. */
export function checkAction(action: ServerAction, name: string, d: ServerData): void {
  const problem = actionProblem(action, d);
  if (problem === null) return;
  const status = serverStatus(d.vm_state, d.task_state);
  const allowed = allowedStatuses(action);
  throw new YunError('YUN_INVALID_STATE', `Cannot ${ACTIONS[action].verb} server "${name}": ${problem} (status ${status}, vm_state ${d.vm_state}, task_state ${d.task_state ?? 'none'}); ${ACTIONS[action].verb} is allowed when it is ${allowed.join(', ')}${action === 'delete' ? '' : ' with no other action in progress'}`, {
    extra: { status, vm_state: d.vm_state, task_state: d.task_state, action, allowed_statuses: allowed },
  });
}

export interface ActionContext {
  now: string;
  request_id: string | null;
  user_id: string | null;
}

const MAX_EVENTS = 50;

function withEvent(d: ServerData, action: string, ctx: ActionContext, finished?: { result: 'success' | 'error'; message: string | null }): ServerEvent[] {
  const e: ServerEvent = { action, request_id: ctx.request_id, user_id: ctx.user_id, start_time: ctx.now, finish_time: finished ? ctx.now : null, result: finished?.result ?? null, message: finished?.message ?? null };
  return [...d.events, e].slice(-MAX_EVENTS);
}

/** The power a server has at rest in a vm_state. */
function restingPower(vm: VmState, fallback: DesiredPower): DesiredPower {
  switch (vm) {
    case 'active': return 'active';
    case 'stopped': return 'shutoff';
    case 'paused': return 'paused';
    case 'suspended': return 'suspended';
    default: return fallback;
  }
}

/**
 * Apply an accepted action (call `checkAction` first): the task_state it runs under, what the agent
 * is to do (power, a one-off op, a new generation), and an event for the log.
 */
export function applyAction(d: ServerData, action: ServerAction, ctx: ActionContext, args: { image?: ImageSnapshot; flavor?: FlavorSnapshot } = {}): ServerData {
  const g = d.desired.generation + 1;
  const next: ServerData = { ...d, task_state: ACTIONS[action].task, desired: { ...d.desired, generation: g }, events: withEvent(d, action, ctx) };
  const op = (kind: NonNullable<ServerData['desired']['op']>['kind']) => ({ kind, generation: g });
  switch (action) {
    case 'start': case 'unpause': case 'resume':
      next.desired.power = 'active'; break;
    case 'stop': next.desired.power = 'shutoff'; break;
    case 'pause': next.desired.power = 'paused'; break;
    case 'suspend': next.desired.power = 'suspended'; break;
    case 'reboot': next.desired = { ...next.desired, power: 'active', op: op('reboot') }; break;
    case 'reboot_hard': next.desired = { ...next.desired, power: 'active', op: op('reboot_hard') }; break;
    case 'rebuild':
      if (!args.image) throw new Error('rebuild needs an image');
      next.image = args.image;
      next.desired = { ...next.desired, power: d.vm_state === 'stopped' ? 'shutoff' : 'active', op: op('rebuild') };
      break;
    case 'resize':
      if (!args.flavor) throw new Error('resize needs a flavor');
      next.old_flavor = d.flavor;
      next.flavor = args.flavor;
      next.resize_power = restingPower(d.vm_state, 'active');
      next.desired = { ...next.desired, power: next.resize_power, op: op('resize') };
      break;
    case 'resize_confirm':
      next.desired = { ...next.desired, power: d.resize_power ?? 'active', op: op('resize_confirm') };
      break;
    case 'resize_revert':
      next.flavor = d.old_flavor ?? d.flavor;
      next.desired = { ...next.desired, power: d.resize_power ?? 'active', op: op('resize_revert') };
      break;
    case 'delete':
      next.desired = { ...next.desired, deleting: true };
      break;
  }
  return next;
}

/** vm_state once the agent has carried out the desired state. */
function reachedVmState(d: ServerData): VmState {
  if (d.desired.op?.kind === 'resize' && d.desired.op.generation === d.desired.generation) return 'resized';
  return restingVm(d.desired.power);
}

function finishEvent(d: ServerData, now: string, result: 'success' | 'error', message: string | null): ServerEvent[] {
  const events = [...d.events];
  for (let i = events.length - 1; i >= 0; i--) {
    if (events[i]!.finish_time === null) {
      events[i] = { ...events[i]!, finish_time: now, result, message };
      break;
    }
  }
  return events;
}

/**
 * Move a server on from an agent's report. Returns the next data, or 'delete' once the agent has
 * destroyed a server being deleted.
 */
export function applyReport(d: ServerData, r: ServerReport, now: string): ServerData | 'delete' {
  if (r.destroyed) return d.desired.deleting ? 'delete' : d;
  let next: ServerData = { ...d, power_state: r.power_state, observed_generation: Math.max(d.observed_generation, r.generation), message: r.message ?? null };
  if (d.desired.deleting) return next;
  if (r.fault) {
    const fault = { ...r.fault, created: now };
    return { ...next, vm_state: 'error', task_state: null, fault, events: finishEvent(d, now, 'error', `${fault.message}: ${fault.details}`) };
  }
  const done = r.generation >= d.desired.generation;
  if (done && d.task_state !== null) {
    const vm = reachedVmState(d);
    next = { ...next, vm_state: vm, task_state: null, fault: null, events: finishEvent(d, now, 'success', null) };
    if (vm === 'active' && next.launched_at === null) next.launched_at = now;
    const op = d.desired.op?.generation === d.desired.generation ? d.desired.op.kind : null;
    if (op === 'resize_confirm' || op === 'resize_revert') next = { ...next, old_flavor: null, resize_power: null };
    return next;
  }
  // Nothing asked, and the instance stopped on its own (the guest powered off, or it crashed): the
  // server is SHUTOFF and stays so (Nova's power-state sync); how it ended is kept.
  const resting = d.task_state === null && (d.vm_state === 'active' || d.vm_state === 'paused' || d.vm_state === 'suspended');
  if (done && resting && (r.power_state === 'shutdown' || r.power_state === 'crashed')) {
    const how = r.exit?.error ?? (r.power_state === 'crashed' ? 'it crashed' : 'the guest powered off');
    const ev: ServerEvent = { action: r.power_state === 'crashed' ? 'crashed' : 'power-off by the guest', request_id: null, user_id: null, start_time: now, finish_time: now, result: r.power_state === 'crashed' ? 'error' : 'success', message: how };
    return {
      ...next, vm_state: 'stopped',
      desired: { ...d.desired, power: 'shutoff', generation: d.desired.generation + 1 },
      last_exit: { at: now, exit_code: r.exit?.exit_code ?? null, signal: r.exit?.signal ?? null, error: how },
      events: [...d.events, ev].slice(-MAX_EVENTS),
    };
  }
  return next;
}

function restingVm(p: DesiredPower): VmState {
  return p === 'shutoff' ? 'stopped' : p === 'paused' ? 'paused' : p === 'suspended' ? 'suspended' : 'active';
}

/** A scheduling or building failure before any agent ran the server: ERROR with the whole cause. */
export function failServer(d: ServerData, fault: { code: string; message: string; details: string }, now: string): ServerData {
  return { ...d, vm_state: 'error', task_state: null, fault: { ...fault, created: now }, events: finishEvent(d, now, 'error', `${fault.message}: ${fault.details}`) };
}
