/**
 * The agent's side of a server, pure: from what is wanted (the server's desired state) and what is
 * on the node (the instance's local state), the steps that remain. The agent runs them one at a
 * time, saving the local state after each, and plans again after every step and after a restart:
 * the plan is a function of the states alone, so a half-done action is finished, never repeated
 * from its start or left stuck.
 */
import type { DesiredPower, PowerState, ServerOp } from './server.js';

export interface Want {
  power: DesiredPower;
  generation: number;
  op: ServerOp | null;
  deleting: boolean;
  /** The image the root disk is to come from. */
  image_digest: string;
  /** The volumes to have attached (not the root volume: that one is the root disk). */
  volumes: string[];
}

/** What the node has of the instance (persisted by the agent). */
export interface LocalInstance {
  /** A handle exists: root disk, seed, plumbing. */
  prepared: boolean;
  /** The image its root disk was made from. */
  image_digest: string | null;
  /** The generation of the rebuild its root disk was made for (0: made when the server was built). */
  prepared_for: number;
  /** A process runs (frozen or not). */
  running: boolean;
  frozen: boolean;
  /** Suspended (frozen in memory or saved to disk). */
  suspended: boolean;
  /** The generation of the last one-off op carried out. */
  op_done: number;
  /** Saved copies of the root disk (`resize`). */
  saved: string[];
  /** The steps already done for the op in progress (its generation), so a replan does not repeat them. */
  op_steps: { generation: number; done: Step['do'][] };
  /** The volumes the instance has (plugged in while it runs, or in its config for the next boot). */
  attached: string[];
}

export type Step =
  | { do: 'prepare' }
  | { do: 'boot' }
  | { do: 'stop'; hard: boolean }
  | { do: 'freeze' }
  | { do: 'thaw' }
  | { do: 'suspend' }
  | { do: 'resume' }
  | { do: 'destroy' }
  | { do: 'save_disk'; tag: string }
  | { do: 'restore_disk'; tag: string }
  | { do: 'drop_disk'; tag: string }
  | { do: 'attach'; volume: string }
  | { do: 'detach'; volume: string }
  | { do: 'op_done'; generation: number };

export const EMPTY_LOCAL: LocalInstance = { prepared: false, image_digest: null, prepared_for: 0, running: false, frozen: false, suspended: false, op_done: 0, saved: [], op_steps: { generation: 0, done: [] }, attached: [] };

const RESIZE_TAG = 'resize';

/** The steps from `l` to `w`, in order; [] when the node already has what is wanted. */
export function planServer(w: Want, l: LocalInstance): Step[] {
  const steps: Step[] = [];
  const live = l.running || l.suspended;
  if (w.deleting) {
    if (live) steps.push({ do: 'stop', hard: true });
    if (l.prepared) steps.push({ do: 'destroy' });
    return steps;
  }
  const op = w.op && w.op.generation > l.op_done ? w.op : null;
  // The saved disk of a resize lives while the server waits for confirm or revert.
  const keepSaved = w.op?.kind === 'resize' || (op?.kind === 'resize_revert');
  // A rebuild replaces the root disk (once per rebuild, even from the same image).
  const rebuild = op?.kind === 'rebuild' && l.prepared_for < op.generation;
  if (!l.prepared || rebuild) {
    if (l.prepared) {
      if (live) steps.push({ do: 'stop', hard: false });
      steps.push({ do: 'destroy' });
    }
    steps.push({ do: 'prepare' });
    const fresh = { ...EMPTY_LOCAL, prepared: true, image_digest: w.image_digest, prepared_for: rebuild ? op!.generation : l.prepared_for, op_done: l.op_done, attached: w.volumes };
    return [...steps, ...converge(w, fresh), ...(op?.kind === 'rebuild' ? [{ do: 'op_done' as const, generation: op.generation }] : [])];
  }
  if (op) {
    const did = (step: Step['do']) => l.op_steps.generation === op.generation && l.op_steps.done.includes(step);
    // The op's first step (a stop), unless done already; then the instance is down for the rest.
    const stopFirst = (hard: boolean): LocalInstance => {
      if (live && !did('stop')) steps.push({ do: 'stop', hard });
      return did('stop') ? l : { ...l, running: false, frozen: false, suspended: false };
    };
    const finish = { do: 'op_done' as const, generation: op.generation };
    switch (op.kind) {
      case 'reboot':
      case 'reboot_hard': {
        const down = stopFirst(op.kind === 'reboot_hard' || l.frozen || l.suspended);
        if (!did('boot') && w.power !== 'shutoff') return [...steps, { do: 'boot' }, finish];
        return [...steps, ...converge(w, down), finish];
      }
      case 'rebuild': // the disk is already from the new image (prepared above when it was not)
        return [...converge(w, l), finish];
      case 'resize': {
        const down = stopFirst(false);
        if (!l.saved.includes(RESIZE_TAG)) steps.push({ do: 'save_disk', tag: RESIZE_TAG });
        return [...steps, ...converge(w, down), finish];
      }
      case 'resize_revert': {
        const down = stopFirst(false);
        if (l.saved.includes(RESIZE_TAG) && !did('restore_disk')) steps.push({ do: 'restore_disk', tag: RESIZE_TAG });
        return [...steps, ...converge(w, down), finish, ...(l.saved.includes(RESIZE_TAG) ? [{ do: 'drop_disk' as const, tag: RESIZE_TAG }] : [])];
      }
      case 'resize_confirm':
        return [...(l.saved.includes(RESIZE_TAG) ? [{ do: 'drop_disk' as const, tag: RESIZE_TAG }] : []), ...converge(w, l), finish];
    }
  }
  if (!keepSaved && l.saved.includes(RESIZE_TAG)) steps.push({ do: 'drop_disk', tag: RESIZE_TAG });
  return [...steps, ...attachments(w, l), ...converge(w, l)];
}

/** Volumes to detach, then to attach (detached first: a volume moving between paths never has two). */
function attachments(w: Want, l: LocalInstance): Step[] {
  const have = l.attached ?? [];
  return [
    ...have.filter((v) => !w.volumes.includes(v)).map((volume) => ({ do: 'detach' as const, volume })),
    ...w.volumes.filter((v) => !have.includes(v)).map((volume) => ({ do: 'attach' as const, volume })),
  ];
}

/** The steps that bring the power state of a prepared instance to `w.power`. */
function converge(w: Want, l: LocalInstance): Step[] {
  switch (w.power) {
    case 'active':
      if (l.suspended) return [{ do: 'resume' }];
      if (l.frozen) return [{ do: 'thaw' }];
      return l.running ? [] : [{ do: 'boot' }];
    case 'shutoff':
      return l.running || l.suspended ? [{ do: 'stop', hard: false }] : [];
    case 'paused':
      if (l.suspended) return [{ do: 'resume' }, { do: 'freeze' }];
      if (!l.running) return [{ do: 'boot' }, { do: 'freeze' }];
      return l.frozen ? [] : [{ do: 'freeze' }];
    case 'suspended':
      if (l.suspended) return [];
      if (!l.running) return [{ do: 'boot' }, { do: 'suspend' }];
      return l.frozen ? [{ do: 'thaw' }, { do: 'suspend' }] : [{ do: 'suspend' }];
  }
}

/** The local state after a step succeeded (what the agent saves). */
export function afterStep(l: LocalInstance, s: Step, w: Want): LocalInstance {
  const next = applyStep(l, s, w);
  const op = w.op && w.op.generation > l.op_done ? w.op : null;
  if (!op || s.do === 'op_done') return next;
  const prior = l.op_steps.generation === op.generation ? l.op_steps.done : [];
  return { ...next, op_steps: { generation: op.generation, done: [...new Set([...prior, s.do])] } };
}

function applyStep(l: LocalInstance, s: Step, w: Want): LocalInstance {
  switch (s.do) {
    case 'prepare': return { ...l, attached: w.volumes, prepared: true, image_digest: w.image_digest, prepared_for: w.op?.kind === 'rebuild' && w.op.generation > l.op_done ? w.op.generation : l.prepared_for, running: false, frozen: false, suspended: false };
    case 'boot': return { ...l, running: true, frozen: false, suspended: false };
    case 'stop': return { ...l, running: false, frozen: false, suspended: false };
    case 'freeze': return { ...l, frozen: true };
    case 'thaw': return { ...l, frozen: false };
    case 'suspend': return { ...l, suspended: true, frozen: false };
    case 'resume': return { ...l, suspended: false, running: true, frozen: false };
    case 'destroy': return { ...EMPTY_LOCAL, op_done: l.op_done, prepared_for: l.prepared_for };
    case 'save_disk': return { ...l, saved: [...new Set([...l.saved, s.tag])] };
    case 'restore_disk': return l;
    case 'drop_disk': return { ...l, saved: l.saved.filter((t) => t !== s.tag) };
    case 'attach': return { ...l, attached: [...new Set([...(l.attached ?? []), s.volume])] };
    case 'detach': return { ...l, attached: (l.attached ?? []).filter((v) => v !== s.volume) };
    case 'op_done': return { ...l, op_done: Math.max(l.op_done, s.generation), op_steps: { generation: 0, done: [] } };
  }
}

/** The power state the node reports for a local state. */
export function powerOf(l: LocalInstance): PowerState {
  if (!l.prepared) return 'nostate';
  if (l.suspended) return 'suspended';
  if (l.frozen) return 'paused';
  return l.running ? 'running' : 'shutdown';
}
