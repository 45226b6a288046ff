/**
 * The volume state machine, pure (no I/O, time passed in): which actions each status allows (a 409
 * naming the status and the allowed ones otherwise), and how a node's reports move a volume on:
 * its own report (created, size, snapshots, destroyed) and its server's (attached or not).
 */
import { YunError } from '../errors/errors.js';
import { GiB, type SnapshotData, type VolumeData, type VolumeReport, type VolumeStatus } from './volume.js';

export type VolumeAction = 'attach' | 'detach' | 'extend' | 'snapshot' | 'delete';

/** The statuses each action is allowed from (Cinder's, with extend of an in-use volume as since 3.42). */
export const VOLUME_ACTIONS: Record<VolumeAction, { from: VolumeStatus[]; verb: string }> = {
  attach: { from: ['available'], verb: 'attach' },
  detach: { from: ['in-use'], verb: 'detach' },
  extend: { from: ['available', 'in-use'], verb: 'extend' },
  snapshot: { from: ['available', 'in-use'], verb: 'snapshot' },
  delete: { from: ['available', 'error', 'error_extending', 'error_deleting'], verb: 'delete' },
};

/** The actions a volume allows now. */
export function allowedVolumeActions(d: VolumeData): VolumeAction[] {
  return (Object.keys(VOLUME_ACTIONS) as VolumeAction[]).filter((a) => VOLUME_ACTIONS[a].from.includes(d.status) && !d.desired.deleting);
}

/** Throw the 409 that says why `action` cannot run on the volume now. */
export function checkVolumeAction(action: VolumeAction, name: string, d: VolumeData): void {
  const rule = VOLUME_ACTIONS[action];
  if (rule.from.includes(d.status) && !d.desired.deleting) return;
  if (action === 'delete' && d.attachment) {
    throw new YunError('YUN_IN_USE', `Volume "${name}" is attached to server "${d.attachment.server_name}" (${d.attachment.server_id}), so it cannot be deleted`, {
      extra: { status: d.status, attached_to: d.attachment.server_id },
      hint: d.attachment.boot ? 'It is the server\'s root disk: delete the server (`yun server rm`), then the volume.' : `Detach it first: \`yun volume detach ${name}\`.`,
    });
  }
  if (action === 'attach' && d.attachment) {
    throw new YunError('YUN_IN_USE', `Volume "${name}" is already attached to server "${d.attachment.server_name}" (${d.attachment.server_id}); a volume is attached to one server at a time`, {
      extra: { status: d.status, attached_to: d.attachment.server_id },
      hint: `Detach it first (\`yun volume detach ${name}\`), or make a copy to attach: \`yun volume snapshot ${name}\`, then \`yun volume create --snapshot …\`.`,
    });
  }
  throw new YunError('YUN_INVALID_STATE', `Cannot ${rule.verb} volume "${name}": it is ${d.desired.deleting ? 'being deleted' : d.status}; ${rule.verb} is allowed when it is ${rule.from.join(', ')}`, {
    extra: { status: d.status, action, allowed_statuses: rule.from },
    hint: d.status.endsWith('ing') ? 'Wait for what is in progress to finish (`yun volume show`).' : 'Bring the volume into one of the statuses named first.',
  });
}

/** The status a volume rests in once nothing is in progress. */
export function restingStatus(d: Pick<VolumeData, 'attachment'>): VolumeStatus {
  return d.attachment ? (d.attachment.attached_at ? 'in-use' : 'attaching') : 'available';
}

/**
 * Apply the volume's own report from its node. `'delete'` when the node destroyed it (after a
 * delete). Progress only: a report for an older generation moves nothing but the message.
 */
export function applyVolumeReport(d: VolumeData, r: VolumeReport, now: string): VolumeData | 'delete' {
  if (r.destroyed && d.desired.deleting) return 'delete';
  let next: VolumeData = { ...d, message: r.message ?? null };
  if (r.fault && r.generation >= d.desired.generation) {
    const status: VolumeStatus = d.desired.deleting ? 'error_deleting' : d.status === 'extending' ? 'error_extending' : d.status === 'creating' ? 'error' : d.status;
    return { ...next, status, fault: { ...r.fault, created: now }, observed_generation: r.generation };
  }
  if (r.generation < d.desired.generation) return next;
  next = { ...next, observed_generation: r.generation };
  if (d.status === 'creating' && r.created) next = { ...next, status: restingStatus(d), fault: null };
  if (d.status === 'extending' && r.size_bytes >= d.desired.size_gb * GiB) next = { ...next, status: restingStatus(d), size_gb: d.desired.size_gb, fault: null };
  return next;
}

/** A snapshot's status after its volume's report: complete on the node → available; gone after a delete → 'delete'. */
export function applySnapshotReport(id: string, s: SnapshotData, r: VolumeReport, volume: VolumeData, now: string): SnapshotData | 'delete' {
  const held = r.snapshots.includes(id);
  if (s.status === 'creating' && held) return { ...s, status: 'available', fault: null };
  if (s.status === 'deleting' && !held && !volume.desired.snapshots.includes(id)) return 'delete';
  if (s.status === 'creating' && r.fault && r.generation >= volume.desired.generation) return { ...s, status: 'error', fault: { ...r.fault, created: now } };
  return s;
}

/** The volume after its server's node reported whether it is attached. */
export function applyAttachment(d: VolumeData, attached: boolean, now: string): VolumeData {
  if (!d.attachment) return d;
  if (attached && !d.attachment.attached_at && d.status === 'attaching') return { ...d, status: 'in-use', attachment: { ...d.attachment, attached_at: now } };
  if (!attached && d.status === 'detaching') return { ...d, status: 'available', attachment: null };
  return d;
}

/**
 * Its server's node could not attach (or detach) the volume: it goes back to how the instance has
 * it, with the node's error as its fault (never stuck attaching or detaching).
 */
export function rollBackAttachment(d: VolumeData, action: 'attach' | 'detach', details: string, now: string): VolumeData {
  const fault = { code: 'YUN_VOLUME_FAILED', message: `${action === 'attach' ? 'attaching' : 'detaching'} the volume failed on its node`, details, created: now };
  if (action === 'attach' && d.status === 'attaching') return { ...d, status: 'available', attachment: null, fault };
  if (action === 'detach' && d.status === 'detaching') return { ...d, status: 'in-use', fault };
  return d;
}

/** What becomes of a volume when the server it is attached to is deleted. */
export function releaseFromServer(d: VolumeData): VolumeData {
  if (!d.attachment) return d;
  if (d.attachment.delete_on_termination) return { ...d, attachment: null, status: 'deleting', desired: { ...d.desired, deleting: true, generation: d.desired.generation + 1 } };
  return { ...d, attachment: null, status: d.status === 'creating' ? 'creating' : 'available' };
}
