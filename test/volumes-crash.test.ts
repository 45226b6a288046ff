// Volumes survive a crash of their node's agent (issue 10): kill -9 of the cloud (`yun up` holds the
// manager and the node's agent) right after a volume create from an image is accepted, and right
// after an attach to a running VM is accepted. After the restart nothing stays in a transitional
// status: every volume is available or in-use, and what the API says agrees with the guest (it has
// the disk exactly when the volume is in-use) and with the node (the volume's file is complete).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requireOrSkip } from './helpers/cloud.js';
import { waitFor } from './helpers/agents.js';
import { VmCloud, vmCloudSupport } from './helpers/vm-cloud.js';

interface Volume { id: string; name: string; status: string; size: number; attachments: { server_name: string }[] }

describe('volumes: kill -9 of the agent during create and during attach', { concurrency: false }, () => {
  const cloud = new VmCloud('yun-volumes-crash-test');
  let ok = false;
  let why = '';
  const vol = (name: string) => cloud.json<Volume>(['volume', 'show', name]);
  const resting = async (name: string) => {
    const v = await waitFor(`${name} at rest`, async () => { const x = await vol(name); return ['available', 'in-use', 'error'].includes(x.status) ? x : undefined; }, 90_000);
    return v;
  };

  before(async () => {
    ({ ok, why } = await vmCloudSupport([['qemu-img', 'qemu-utils']]));
    if (!ok) return;
    await cloud.start();
  });

  after(() => cloud.cleanup());

  it('kill -9 while volumes are being made: after the restart each is available, its file complete', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    // From an image (a disk converted) and blank (a file system made): both take a moment.
    await cloud.ok(['volume', 'create', '--image', 'tinyvm', '--size', '1', 'fromimg']);
    await cloud.ok(['volume', 'create', '--size', '2', 'blank']);
    await cloud.kill();
    await cloud.startCloud();
    for (const name of ['fromimg', 'blank']) {
      const v = await resting(name);
      assert.equal(v.status, 'available', `${name}: ${JSON.stringify(v)}`);
    }
    // The volume from the image boots a VM: its file is whole.
    await cloud.ok(['server', 'create', '--flavor', 'm1.tiny', '--image', 'tinyvm', '--network', 'none', '--volume', 'blank', '--wait', 'vm1']);
    await waitFor('the guest ready', async () => (await cloud.consoleLog('vm1')).includes('YUN-GUEST ready'), 90_000);
    assert.match(await cloud.guest('vm1', 'ls /sys/block'), /sda/, 'the volume given at create is attached at boot');
    assert.equal((await vol('blank')).status, 'in-use');
    await cloud.ok(['volume', 'detach', '--wait', 'blank']);
  });

  it('kill -9 right after an attach is accepted: after the restart the volume is in-use and the guest has the disk (or available and it has not)', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    for (let round = 0; round < 2; round++) {
      const before = (await cloud.guest('vm1', 'ls /sys/block')).includes('sda');
      assert.equal(before, false);
      await cloud.ok(['volume', 'attach', 'fromimg', 'vm1']);
      await cloud.kill();
      await cloud.startCloud();
      const v = await resting('fromimg');
      await waitFor('the server ACTIVE again', async () => (await cloud.json<{ status: string }>(['server', 'show', 'vm1'])).status === 'ACTIVE', 60_000);
      const has = (await cloud.guest('vm1', 'ls /sys/block')).includes('sda');
      assert.equal(has, v.status === 'in-use', `status ${v.status}, the guest ${has ? 'has' : 'has not'} the disk`);
      assert.ok(['in-use', 'available'].includes(v.status), v.status);
      if (v.status === 'in-use') {
        await cloud.ok(['volume', 'detach', '--wait', 'fromimg']);
        await waitFor('the disk gone from the guest', async () => !(await cloud.guest('vm1', 'ls /sys/block')).includes('sda'), 30_000);
      }
    }
    await cloud.ok(['server', 'rm', '--wait', 'vm1']);
    await cloud.ok(['volume', 'rm', '--wait', 'fromimg', 'blank']);
  });
});
