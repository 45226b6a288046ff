import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { YunError } from '../errors/errors.js';
import { applyAttachment, applySnapshotReport, applyVolumeReport, checkVolumeAction, releaseFromServer, rollBackAttachment } from './states.js';
import { GiB, type SnapshotData, type VolumeData } from './volume.js';

const NOW = '2026-12-07T00:00:00.000Z';
const vol = (over: Partial<VolumeData> = {}): VolumeData => ({
  size_gb: 1, volume_type: 'file', description: '', status: 'available', node_id: 'n1', source: { kind: 'blank' }, content: 'ext4', bootable: false,
  serial: 'yun-x', attachment: null, desired: { size_gb: 1, snapshots: [], deleting: false, generation: 1 }, observed_generation: 1, fault: null,
  quota_usage: { volumes: 1, gigabytes: 1 }, ...over,
});
const att = { server_id: 's1', server_name: 'vm1', mount_path: null, device: null, boot: false, delete_on_termination: false, attached_at: null };
const code = (f: () => void) => { try { f(); return 'none'; } catch (e) { return (e as YunError).code; } };

describe('volume states (pure)', () => {
  it('a 409 names the server it is attached to, and the statuses an action is allowed from', () => {
    assert.equal(code(() => checkVolumeAction('delete', 'v', vol({ status: 'in-use', attachment: { ...att, attached_at: NOW } }))), 'YUN_IN_USE');
    assert.equal(code(() => checkVolumeAction('attach', 'v', vol({ status: 'in-use', attachment: { ...att, attached_at: NOW } }))), 'YUN_IN_USE');
    assert.equal(code(() => checkVolumeAction('extend', 'v', vol({ status: 'creating' }))), 'YUN_INVALID_STATE');
    assert.equal(code(() => checkVolumeAction('attach', 'v', vol())), 'none');
    try { checkVolumeAction('detach', 'v', vol()); } catch (e) { assert.match((e as Error).message, /allowed when it is in-use/); }
  });

  it('a node\'s report: created → available (attaching when it is a server\'s root), extended, a fault by what was in progress, destroyed → delete', () => {
    const r = { generation: 1, created: true, size_bytes: GiB, snapshots: [] };
    assert.equal((applyVolumeReport(vol({ status: 'creating' }), r, NOW) as VolumeData).status, 'available');
    assert.equal((applyVolumeReport(vol({ status: 'creating', attachment: att }), r, NOW) as VolumeData).status, 'attaching');
    const ext = vol({ status: 'extending', desired: { size_gb: 2, snapshots: [], deleting: false, generation: 2 } });
    assert.equal((applyVolumeReport(ext, r, NOW) as VolumeData).status, 'extending', 'an older generation moves nothing');
    assert.deepEqual([(applyVolumeReport(ext, { ...r, generation: 2, size_bytes: 2 * GiB }, NOW) as VolumeData)].map((d) => [d.status, d.size_gb]), [['available', 2]]);
    assert.equal((applyVolumeReport(ext, { ...r, generation: 2, fault: { code: 'YUN_VOLUME_FAILED', message: 'm', details: 'disk full' } }, NOW) as VolumeData).status, 'error_extending');
    assert.equal(applyVolumeReport(vol({ status: 'deleting', desired: { size_gb: 1, snapshots: [], deleting: true, generation: 2 } }), { ...r, generation: 2, destroyed: true }, NOW), 'delete');
  });

  it('snapshots: available once the node holds one; gone once deleted there', () => {
    const s: SnapshotData = { volume_id: 'v', volume_name: 'v', size_gb: 1, node_id: 'n1', description: '', status: 'creating', quiesced: false, fault: null, quota_usage: { snapshots: 1, gigabytes: 1 } };
    const v = vol({ desired: { size_gb: 1, snapshots: ['s'], deleting: false, generation: 2 } });
    assert.equal((applySnapshotReport('s', s, { generation: 2, created: true, size_bytes: GiB, snapshots: ['s'] }, v, NOW) as SnapshotData).status, 'available');
    assert.equal(applySnapshotReport('s', { ...s, status: 'deleting' }, { generation: 3, created: true, size_bytes: GiB, snapshots: [] }, vol(), NOW), 'delete');
  });

  it('attachments: attaching → in-use when the instance has it, detaching → available when not; a failure rolls back, never stuck', () => {
    assert.equal(applyAttachment(vol({ status: 'attaching', attachment: att }), true, NOW).status, 'in-use');
    assert.equal(applyAttachment(vol({ status: 'attaching', attachment: att }), false, NOW).status, 'attaching');
    const detaching = vol({ status: 'detaching', attachment: { ...att, attached_at: NOW } });
    assert.deepEqual([applyAttachment(detaching, false, NOW)].map((d) => [d.status, d.attachment]), [['available', null]]);
    const failed = rollBackAttachment(vol({ status: 'attaching', attachment: att }), 'attach', 'QEMU refused', NOW);
    assert.deepEqual([failed.status, failed.attachment, failed.fault?.details], ['available', null, 'QEMU refused']);
    assert.equal(rollBackAttachment(detaching, 'detach', 'busy', NOW).status, 'in-use');
  });

  it('a deleted server releases its volumes, or deletes those made to go with it', () => {
    assert.deepEqual([releaseFromServer(vol({ status: 'in-use', attachment: { ...att, attached_at: NOW } }))].map((d) => [d.status, d.attachment]), [['available', null]]);
    const gone = releaseFromServer(vol({ status: 'in-use', attachment: { ...att, attached_at: NOW, delete_on_termination: true } }));
    assert.deepEqual([gone.status, gone.desired.deleting, gone.desired.generation], ['deleting', true, 2]);
  });
});
