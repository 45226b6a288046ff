/**
 * How nodes' reports move volumes and snapshots on (the dispatcher's side; the rules are the pure
 * functions of volumes/states.ts): a volume's own report, and the attachments a server's report
 * lists (attaching → in-use, detaching → available; a deleted server's volumes released or deleted).
 */
import { YunError } from '../errors/errors.js';
import type { Op, Store } from '../store/store.js';
import { snapshotsOf, volumesOf } from '../volumes/queries.js';
import type { ServerData, ServerReport, ServerVolume } from '../servers/server.js';
import { applyAttachment, applySnapshotReport, applyVolumeReport, releaseFromServer, rollBackAttachment } from '../volumes/states.js';
import type { SnapshotData, VolumeData, VolumeReport } from '../volumes/volume.js';

const changed = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);

/**
 * Ops for the volumes of a server after its node's report (`deleted`: the server goes), and the
 * server's volume list when an attach or detach that failed is rolled back.
 */
export async function attachmentOps(store: Store, server: ServerData, serverId: string, report: ServerReport, deleted: boolean, now: string): Promise<{ ops: Op[]; volumes?: ServerVolume[] }> {
  const ops: Op[] = [];
  const have = new Set((report.volumes ?? []).map((v) => v.id));
  let volumes = server.volumes;
  for (const o of await volumesOf(store, serverId)) {
    const d = o.data as VolumeData;
    const failed = deleted ? undefined : (report.volume_faults ?? []).find((f) => f.id === o.id);
    let next = deleted ? releaseFromServer(d)
      : failed ? rollBackAttachment(d, failed.action, failed.details, now)
        : applyAttachment(d, d.attachment?.boot ? report.power_state !== 'nostate' || have.has(o.id) : have.has(o.id), now);
    if (failed && next !== d) {
      if (failed.action === 'attach') volumes = (volumes ?? []).filter((v) => v.id !== o.id);
      else if (d.attachment && !(volumes ?? []).some((v) => v.id === o.id)) {
        volumes = [...(volumes ?? []), { id: o.id, serial: d.serial, content: d.content, mount_path: d.attachment.mount_path, boot: false, delete_on_termination: d.attachment.delete_on_termination }];
      }
    }
    const dev = (report.volumes ?? []).find((v) => v.id === o.id)?.device;
    if (!deleted && next.attachment && dev !== undefined && next.attachment.device !== dev) next = { ...next, attachment: { ...next.attachment, device: dev } };
    if (changed(next, d)) ops.push({ op: 'update', kind: 'volume', id: o.id, version: o.version, data: next });
  }
  return volumes === server.volumes ? { ops } : { ops, volumes };
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
