// Volumes end to end (issue 10): a cloud (`yun up`) on a host made of a network namespace of the
// test's own, driven with the CLI inside it. A 1 GiB volume attached to a running VM (hot-plugged:
// the guest sees the disk and writes a file), detached, attached to a system container (a mount:
// the file is there), extended while the VM has it (the guest sees the new size), snapshotted
// (a volume from the snapshot has the file), refused deletion while attached; boot from volume for
// both drivers, the data surviving `server rm`; bad sizes refused with nothing made.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireOrSkip } from './helpers/cloud.js';
import { waitFor } from './helpers/agents.js';
import { debugfsCat, VmCloud, vmCloudSupport } from './helpers/vm-cloud.js';

const GiB = 1024 ** 3;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Volume { id: string; name: string; status: string; size: number; attachments: { server_name: string; device: string | null; mount_path: string | null }[]; fault: unknown; node: string }
interface Server { id: string; name: string; status: string; node_id: string; volumes_attached: { id: string; name: string }[] }

const containerPid = (id: string) => (JSON.parse(execFileSync('runc', ['--root', '/run/yunstack-runc', 'state', id], { encoding: 'utf8' })) as { pid: number }).pid;
const inContainer = (id: string, cmd: string) => execFileSync('nsenter', ['-t', String(containerPid(id)), '-m', '-p', '--', '/bin/sh', '-c', cmd], { encoding: 'utf8' });

describe('volumes: attach to VMs and containers, extend, snapshot, boot from volume', { concurrency: false }, () => {
  const cloud = new VmCloud('yun-volumes-test');
  let ok = false;
  let why = '';
  const yun = (args: string[], timeoutMs?: number) => cloud.yun(args, timeoutMs);
  const yunOk = (args: string[], timeoutMs?: number) => cloud.ok(args, timeoutMs);
  const vol = (name: string) => cloud.json<Volume>(['volume', 'show', name]);
  const show = (name: string) => cloud.json<Server>(['server', 'show', name]);
  const consoleLog = (name: string) => cloud.consoleLog(name);
  const volFile = (v: Volume) => cloud.volumeFile(v.id);
  const guest = (name: string, cmd: string) => cloud.guest(name, cmd);
  const userData = (name: string, script: string) => cloud.userData(name, script);
  let dataDir = '';
  let h1: VmCloud['h1'];
  let env: NodeJS.ProcessEnv;

  before(async () => {
    ({ ok, why } = await vmCloudSupport([['debugfs', 'e2fsprogs'], ['nsenter', 'util-linux']]));
    if (!ok) return;
    await cloud.start();
    dataDir = cloud.dataDir;
    h1 = cloud.h1;
    env = cloud.env;
  });

  after(() => cloud.cleanup());

  it('bad sizes are refused with the stable code, and nothing is made', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    for (const size of ['0', '-1', 'abc']) {
      const r = await yun(['volume', 'create', '--size', size, 'bad']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /YUN_USAGE|YUN_VALIDATION_FAILED/, r.stderr);
    }
    // Past the CLI, the API refuses the same.
    const api = async (body: unknown) => h1.exec([process.execPath, '-e', `
      const { request } = require('undici'); const { readFileSync } = require('node:fs');
      const { Agent } = require('undici');
      const d = new Agent({ connect: { ca: readFileSync(process.env.YUN_CACERT) } });
      request(process.env.YUN_URL + '/v1/auth/tokens', { method: 'POST', dispatcher: d, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: process.env.YUN_USERNAME, password: process.env.YUN_PASSWORD, project: process.env.YUN_PROJECT }) })
        .then(async (t) => { const tok = t.headers['x-subject-token']; await t.body.text(); const r = await request(process.env.YUN_URL + '/v1/volumes', { method: 'POST', dispatcher: d, headers: { 'content-type': 'application/json', 'x-auth-token': tok }, body: ${JSON.stringify(JSON.stringify(body))} }); process.stdout.write(r.statusCode + ' ' + await r.body.text()); });`], { env: { ...process.env, ...env } });
    for (const size of [0, -1, 'abc', 99999]) {
      const r = await api({ name: 'bad', size });
      assert.match(r.stdout, /^400 .*YUN_VALIDATION_FAILED/, `size ${size}: ${r.stdout}${r.stderr}`);
    }
    const big = await api({ name: 'bad', size: 16000 });
    assert.match(big.stdout, /^422 .*YUN_INSUFFICIENT_DISK.*free of/, big.stdout + big.stderr);
    const list = JSON.parse((await yunOk(['volume', 'ls', '--json'])).stdout) as Volume[];
    assert.deepEqual(list, [], 'nothing was created');
    assert.deepEqual(existsSync(join(dataDir, 'agent', 'volumes')) ? readdirSync(join(dataDir, 'agent', 'volumes')) : [], [], 'no file left behind');
  });

  it('images: download gives the disk back byte for byte; a checksum mismatch or a corrupt qcow2 is refused with nothing made', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const out = join(cloud.work, 'tinyvm.qcow2');
    const r = await yunOk(['image', 'download', 'tinyvm', '-o', out, '--json']);
    const info = JSON.parse(r.stdout) as { disk_format: string; checksum: string; bytes: number };
    const tinyDisk = readFileSync(cloud.tiny!.disk);
    assert.equal(info.disk_format, 'qcow2');
    assert.equal(sha256(readFileSync(out)), sha256(tinyDisk), 'the same bytes');
    assert.equal(info.checksum, `sha256:${sha256(tinyDisk)}`);
    const wrong = await yun(['image', 'import', '--disk-format', 'qcow2', '--checksum', '0'.repeat(64), '--name', 'wrongsum', cloud.tiny!.disk]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /YUN_DIGEST_MISMATCH/);
    assert.match(wrong.stderr, new RegExp(`SHA-256 is ${sha256(tinyDisk)}, not the checksum given`));
    const right = await yun(['image', 'import', '--disk-format', 'qcow2', '--checksum', sha256(tinyDisk), '--name', 'rightsum', cloud.tiny!.disk]);
    assert.equal(right.code, 0, right.stderr);
    const corrupt = join(cloud.work, 'corrupt.qcow2');
    writeFileSync(corrupt, Buffer.concat([Buffer.from('QFI\xfb'), Buffer.alloc(4096, 7)]));
    const bad = await yun(['image', 'import', '--disk-format', 'qcow2', '--name', 'corrupt', corrupt]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /YUN_IMAGE_INVALID|YUN_VALIDATION_FAILED/, bad.stderr);
    const names = (JSON.parse((await yunOk(['image', 'ls', '--json'])).stdout) as { name: string }[]).map((i) => i.name);
    assert.ok(!names.some((n) => n.startsWith('wrongsum') || n.startsWith('corrupt')), names.join(', '));
    assert.ok(names.includes('rightsum:latest'));
    await yunOk(['image', 'rm', 'rightsum']);
  });

  let data1: Volume;

  it('a 1 GiB volume attached to a running VM: the guest sees the disk and writes a file; detached, it leaves the guest', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const r = await yunOk(['volume', 'create', '--size', '1', '--wait', 'data1']);
    assert.match(r.stderr, /data1 is available/);
    data1 = await vol('data1');
    assert.equal(data1.size, 1);
    assert.ok(existsSync(volFile(data1)));
    assert.ok(Number(execFileSync('du', ['-k', volFile(data1)], { encoding: 'utf8' }).split('\t')[0]) < 64 * 1024, 'the file is sparse');
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'tinyvm', '--network', 'none', '--wait', 'vm1']);
    await waitFor('the guest ready', async () => (await consoleLog('vm1')).includes('YUN-GUEST ready'), 90_000);
    await yunOk(['volume', 'attach', '--wait', 'data1', 'vm1']);
    const v = await vol('data1');
    assert.equal(v.status, 'in-use');
    assert.equal(v.attachments[0]!.server_name, 'vm1');
    assert.equal(v.attachments[0]!.device, '/dev/sda');
    assert.deepEqual((await show('vm1')).volumes_attached.map((x) => x.name), ['data1']);
    await waitFor('the disk in the guest', async () => /sda/.test(await guest('vm1', 'ls /sys/block')), 30_000);
    const size = await guest('vm1', 'cat /sys/block/sda/size');
    assert.match(size, new RegExp(`\\b${GiB / 512}\\b`), 'the guest sees 1 GiB');
    await guest('vm1', 'mkdir -p /mnt/v && mount /dev/sda /mnt/v && echo written-by-vm1 > /mnt/v/hello.txt && sync && umount /mnt/v');
    await yunOk(['volume', 'detach', '--wait', 'data1']);
    assert.equal((await vol('data1')).status, 'available');
    await waitFor('the disk gone from the guest', async () => !/sda/.test(await guest('vm1', 'ls /sys/block')), 30_000);
    assert.equal(debugfsCat(volFile(data1), '/hello.txt'), 'written-by-vm1\n', 'the file is on the volume');
  });

  let c1: Server;

  it('attached to a system container (oci) while it runs: mounted at its path, the file is there', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox', '--driver', 'oci', '--network', 'none', '--wait', 'c1']);
    c1 = await show('c1');
    await yunOk(['volume', 'attach', '--mount-path', '/data', '--wait', 'data1', 'c1']);
    const v = await vol('data1');
    assert.equal(v.status, 'in-use');
    assert.equal(v.attachments[0]!.mount_path, '/data');
    assert.equal(inContainer(c1.id, 'cat /data/hello.txt'), 'written-by-vm1\n');
    inContainer(c1.id, 'echo from-c1 > /data/c1.txt');
    await yunOk(['volume', 'detach', '--wait', 'data1']);
    assert.doesNotMatch(inContainer(c1.id, 'cat /proc/self/mountinfo'), / \/data /, 'the mount is gone inside');
    assert.equal(debugfsCat(volFile(data1), '/c1.txt'), 'from-c1\n');
  });

  it('extend to 2 GiB while attached to the VM: the guest sees the new size', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await yunOk(['volume', 'attach', '--wait', 'data1', 'vm1']);
    await waitFor('the disk in the guest', async () => /sda/.test(await guest('vm1', 'ls /sys/block')), 30_000);
    await yunOk(['volume', 'extend', '--size', '2', '--wait', 'data1']);
    const v = await vol('data1');
    assert.equal(v.size, 2);
    assert.equal(v.status, 'in-use');
    await waitFor('the guest sees 2 GiB', async () => (await guest('vm1', 'cat /sys/block/sda/size')).includes(String(2 * GiB / 512)), 30_000);
  });

  it('snapshot of the in-use volume; a volume from the snapshot has the file; rm refused while attached or with snapshots, then frees the file', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await guest('vm1', 'mount /dev/sda /mnt/v && echo before-snapshot > /mnt/v/snap.txt && sync && umount /mnt/v');
    const r = await yunOk(['volume', 'snapshot', '--name', 'snap1', '--wait', 'data1']);
    assert.match(r.stderr, /snap1 is available/);
    const snaps = JSON.parse((await yunOk(['volume', 'snapshot-ls', '--json'])).stdout) as { name: string; status: string; quiesced: boolean }[];
    assert.deepEqual(snaps.map((s) => [s.name, s.status, s.quiesced]), [['snap1', 'available', true]]);
    await yunOk(['volume', 'create', '--snapshot', 'snap1', '--wait', 'data2']);
    const d2 = await vol('data2');
    assert.equal(d2.size, 2);
    assert.equal(debugfsCat(volFile(d2), '/snap.txt'), 'before-snapshot\n', 'the volume from the snapshot has the file');
    const inUse = await yun(['volume', 'rm', 'data1']);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.stderr, /YUN_IN_USE/);
    assert.match(inUse.stderr, /attached to server "vm1"/);
    await yunOk(['volume', 'detach', '--wait', 'data1']);
    const withSnap = await yun(['volume', 'rm', 'data1']);
    assert.match(withSnap.stderr, /has snapshots: snap1[\s\S]*YUN_IN_USE/);
    await yunOk(['volume', 'snapshot-rm', '--wait', 'snap1']);
    const file = volFile(data1);
    await yunOk(['volume', 'rm', '--wait', 'data1', 'data2']);
    assert.equal(existsSync(file), false, 'the volume\'s file is freed');
    assert.deepEqual(JSON.parse((await yunOk(['volume', 'ls', '--json'])).stdout), []);
  });

  it('server image-create of a running VM and of a running container: a new server from the image has the file written before', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    await guest('vm1', 'echo image-of-vm1 > /root/img.txt && sync');
    const made = await yunOk(['server', 'image-create', 'vm1', '--name', 'vm1-image', '--json']);
    const img = JSON.parse(made.stdout) as { status: string; disk_format: string; visibility: string };
    assert.deepEqual([img.status, img.disk_format, img.visibility], ['active', 'qcow2', 'private']);
    const twice = await yun(['server', 'image-create', 'vm1', '--name', 'vm1-image']);
    assert.match(twice.stderr, /YUN_NAME_CONFLICT/);
    assert.equal((await show('vm1')).status, 'ACTIVE', 'it runs on after the copy');
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'vm1-image', '--network', 'none', '--wait', 'vm2']);
    await waitFor('vm2 ready', async () => (await consoleLog('vm2')).includes('YUN-GUEST ready'), 90_000);
    assert.equal((await guest('vm2', 'cat /root/img.txt')).trim().split('\n').pop(), 'image-of-vm1');
    inContainer(c1.id, 'echo image-of-c1 > /root/img.txt');
    await yunOk(['server', 'image-create', 'c1', '--name', 'c1-image']);
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'c1-image', '--network', 'none', '--wait', 'c2']);
    assert.equal(inContainer((await show('c2')).id, 'cat /root/img.txt'), 'image-of-c1\n');
    const bad = await yun(['server', 'image-create', 'vm1', '--name', 'Not A Name']);
    assert.match(bad.stderr, /YUN_VALIDATION_FAILED/);
    await yunOk(['server', 'rm', '--wait', 'vm2', 'c2']);
  });

  it('boot from volume, for a VM and for a container: the data survives `server rm` with the root volume kept', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const udVm = userData('bfv-vm', 'echo "kept-$(cat /proc/sys/kernel/random/uuid)" > /root/bfv.txt; sync; echo YUN-BFV-WRITTEN > /dev/ttyS0');
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'tinyvm', '--network', 'none', '--boot-from-volume', '1', '--keep-root-volume', '--user-data', udVm, '--wait', 'bfv1']);
    const s = await show('bfv1');
    assert.equal(s.status, 'ACTIVE');
    assert.deepEqual(s.volumes_attached.map((x) => x.name), ['bfv1-root']);
    assert.equal((await vol('bfv1-root')).status, 'in-use');
    await waitFor('the marker written', async () => (await consoleLog('bfv1')).includes('YUN-BFV-WRITTEN'), 90_000);
    const udC = userData('bfv-c', 'echo kept-by-container > /root/bfv.txt; sync');
    await yunOk(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox', '--driver', 'oci', '--network', 'none', '--boot-from-volume', '1', '--keep-root-volume', '--user-data', udC, '--wait', 'bfv2']);
    await waitFor('the container wrote its file', async () => { try { return inContainer((await show('bfv2')).id, 'cat /root/bfv.txt') === 'kept-by-container\n'; } catch { return false; } }, 20_000);
    await yunOk(['server', 'rm', '--wait', 'bfv1', 'bfv2']);
    const root1 = await waitFor('bfv1-root available', async () => { const v = await vol('bfv1-root'); return v.status === 'available' ? v : undefined; }, 20_000);
    const root2 = await waitFor('bfv2-root available', async () => { const v = await vol('bfv2-root'); return v.status === 'available' ? v : undefined; }, 20_000);
    assert.match(debugfsCat(volFile(root1), '/root/bfv.txt'), /^kept-[0-9a-f-]+\n$/);
    assert.equal(debugfsCat(volFile(root2), '/root/bfv.txt'), 'kept-by-container\n');
    await yunOk(['volume', 'rm', '--wait', 'bfv1-root', 'bfv2-root']);
  });
});
