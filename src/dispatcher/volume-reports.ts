/**
 * How nodes' reports move volumes and snapshots on (the dispatcher's side; the rules are the pure
 * functions of volumes/states.ts): a volume's own report, and the attachments a server's report
 * lists (attaching → in-use, detaching → available; a deleted server's volumes released or deleted).
 */
import { YunError } from '../errors/errors.js';
import type { Op, Store } from '../store/store.js';
import { snapshotsOf, volumesOf } from '../volumes/queries.js';
import type { ServerReport } from '../servers/server.js';
import { applyAttachment, applySnapshotReport, applyVolumeReport, releaseFromServer } from '../volumes/states.js';
import type { SnapshotData, VolumeData, VolumeReport } from '../volumes/volume.js';

const changed = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);

/** Ops for the volumes of a server after its node's report (`deleted`: the server goes). */
export async function attachmentOps(store: Store, serverId: string, report: ServerReport, deleted: boolean, now: string): Promise<Op[]> {
  const ops: Op[] = [];
  const have = new Set((report.volumes ?? []).map((v) => v.id));
  for (const o of await volumesOf(store, serverId)) {
    const d = o.data as VolumeData;
    let next = deleted ? releaseFromServer(d) : applyAttachment(d, d.attachment?.boot ? report.power_state !== 'nostate' || have.has(o.id) : have.has(o.id), now);
    const dev = (report.volumes ?? []).find((v) => v.id === o.id)?.device;
    if (!deleted && next.attachment && dev !== undefined && next.attachment.device !== dev) next = { ...next, attachment: { ...next.attachment, device: dev } };
    if (changed(next, d)) ops.push({ op: 'update', kind: 'volume', id: o.id, version: o.version, data: next });
  }
  return ops;
}

/** Apply volumes' reports from their node, re-reading on a conflict; a volume gone is removed there too. */
export async function applyVolumeReports(store: Store, nodeId: string, updates: { volume_id: string; report: VolumeReport }[], now: string, removed: (id: string) => void): Promise<void> {
  const latest = new Map<string, VolumeReport>();
  for (const u of updates) latest.set(u.volume_id, u.report);
  for (const [id, report] of latest) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const o = await store.get('volume', id);
      if (!o || (o.data as VolumeData).node_id !== nodeId) {
        removed(id);
        break;
      }
      const d = o.data as VolumeData;
      const next = applyVolumeReport(d, report, now);
      const ops: Op[] = [];
      for (const s of await snapshotsOf(store, id)) {
        const sn = applySnapshotReport(s.id, s.data as SnapshotData, report, d, now);
        if (sn === 'delete') ops.push({ op: 'delete', kind: 'volume_snapshot', id: s.id, version: s.version });
        else if (changed(sn, s.data)) ops.push({ op: 'update', kind: 'volume_snapshot', id: s.id, version: s.version, data: sn });
      }
      if (next === 'delete') ops.push({ op: 'delete', kind: 'volume', id, version: o.version });
      else if (changed(next, d)) ops.push({ op: 'update', kind: 'volume', id, version: o.version, data: next });
      try {
        if (ops.length) await store.batch(ops);
        break;
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
      }
    }
  }
}
