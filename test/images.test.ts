// Images as Glance has them (issue 10): statuses queued → saving → active, killed with the reason;
// visibility private / shared (members who accept) / public. A real cloud in this process (SQLite,
// the image store on disk), real uploads over HTTPS; and a real `yun up` killed with SIGKILL in the
// middle of an upload, to show that an image never stays saving. Everything is removed in `after`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fetch } from 'undici';
import { Api, startTestCloud, type TestCloud } from './helpers/cloud.js';
import { YUN, baseEnv, envFile, freePort, managers, startManager, stopManager } from './helpers/manager-process.js';
import { waitFor } from './helpers/services.js';

const disk = randomBytes(2 * 1024 * 1024);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('images: statuses and visibility', { timeout: 120_000 }, () => {
  let cloud: TestCloud;
  let admin: string;
  let bob: string;
  let carol: string;
  const tmp = mkdtempSync(join(tmpdir(), 'yun-images-'));

  const api = (method: string, path: string, token: string, body?: unknown) => cloud.api.req(method, path, { token, ...(body !== undefined ? { body } : {}) });
  const put = async (id: string, token: string, data: Buffer, query = '') => {
    const r = await fetch(`${cloud.url}/v1/images/${id}/file${query}`, { method: 'PUT', headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' }, body: data, dispatcher: cloud.api.agent });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
  const tmpFiles = () => (existsSync(join(cloud.dataDir, 'images', 'tmp')) ? readdirSync(join(cloud.dataDir, 'images', 'tmp')) : []);
  const names = (r: { body: { items: { name: string }[] } }) => r.body.items.map((i) => i.name).sort();

  before(async () => {
    // A node of 2 CPUs and 2 GiB: the 'big' flavor below fits the quota but no node.
    cloud = await startTestCloud({ resources: { cpus: 2, memoryBytes: 2 * 1024 ** 3 } });
    admin = await cloud.api.login('admin', cloud.adminPassword);
    for (const [user, project] of [['bob', 'team-b'], ['carol', 'team-c']]) {
      assert.equal((await api('POST', '/v1/projects', admin, { name: project })).status, 201);
      assert.equal((await api('POST', '/v1/users', admin, { name: user, password: `${user}-secret-1`, default_project: project })).status, 201);
      assert.equal((await api('PUT', `/v1/projects/${project}/members/${user}/roles/member`, admin)).status, 204);
    }
    bob = await cloud.api.login('bob', 'bob-secret-1');
    carol = await cloud.api.login('carol', 'carol-secret-1');
  });

  after(async () => {
    await cloud?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('queued → saving → active: a record first, then its disk; nothing uses it before', async () => {
    const c = await api('POST', '/v1/images', admin, { name: 'two-step:1', disk_format: 'raw', min_disk: 1, min_ram: 64 });
    assert.equal(c.status, 201, c.text);
    assert.equal(c.body.status, 'queued');
    assert.equal(c.body.digest, null);
    assert.equal(c.body.visibility, 'private');
    assert.equal(c.body.owner, c.body.project_id);
    const id = c.body.id as string;
    const dl = await api('GET', `/v1/images/${id}/file`, admin);
    assert.equal(dl.status, 409);
    assert.equal(dl.body.error.code, 'YUN_INVALID_STATE');
    assert.match(dl.body.error.detail, /queued: its data was never uploaded/);
    const vol = await api('POST', '/v1/volumes', admin, { name: 'from-queued', image: id });
    assert.equal(vol.status, 409, vol.text);
    assert.match(vol.body.error.detail, /Cannot make a volume from it: image two-step:1 is queued/);
    assert.equal((await api('GET', '/v1/volumes', admin)).body.items.length, 0, 'no volume was made');
    const srv = await api('POST', '/v1/servers', admin, { name: 's1', flavor: 'm1.tiny', image: 'two-step:1', networks: ['none'] });
    assert.equal(srv.status, 409, srv.text);
    assert.equal(srv.body.error.code, 'YUN_INVALID_STATE');

    const up = await put(id, admin, disk, `?checksum=sha256:${sha(disk)}`);
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.status, 'active');
    assert.equal(up.body.id, id, 'the same image, now with its data');
    assert.equal(up.body.os_hash_algo, 'sha256');
    assert.equal(up.body.os_hash_value, sha(disk));
    assert.equal(up.body.min_disk, 1);
    assert.equal(up.body.min_ram, 64);
    assert.equal(up.body.virtual_size, disk.length);
    const again = await put(id, admin, disk);
    assert.equal(again.status, 409);
    assert.match(again.body.error.detail, /already has its data/);
    const got = await fetch(`${cloud.url}/v1/images/${id}/file`, { headers: { 'x-auth-token': admin }, dispatcher: cloud.api.agent });
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(disk), 'the download is the upload, byte for byte');
    assert.deepEqual(tmpFiles(), [], 'no upload left in the image store\'s tmp');
  });

  it('killed, with the reason: a corrupt qcow2, a checksum mismatch; nothing left behind; only delete is left', async () => {
    const q = await api('POST', '/v1/images', admin, { name: 'broken:1', disk_format: 'qcow2' });
    const bad = await put(q.body.id, admin, Buffer.from('this is not a qcow2 disk at all, just text'));
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.code, 'YUN_IMAGE_INVALID');
    const k = await api('GET', `/v1/images/${q.body.id}`, admin);
    assert.equal(k.body.status, 'killed');
    assert.equal(k.body.status_code, 'YUN_IMAGE_INVALID');
    assert.match(k.body.status_reason, /not a qcow2 image/);
    assert.equal(k.body.digest, null);
    const retry = await put(q.body.id, admin, disk);
    assert.equal(retry.status, 409);
    assert.match(retry.body.error.detail, /was killed: The disk is not a qcow2 image/);

    const m = await api('POST', '/v1/images', admin, { name: 'mismatch:1', disk_format: 'raw' });
    const mm = await put(m.body.id, admin, disk, `?checksum=${'0'.repeat(64)}`);
    assert.equal(mm.status, 422);
    assert.equal(mm.body.error.code, 'YUN_DIGEST_MISMATCH');
    const mk = (await api('GET', `/v1/images/${m.body.id}`, admin)).body;
    assert.equal(mk.status, 'killed');
    assert.match(mk.status_reason, new RegExp(`SHA-256 is ${sha(disk)}, not the checksum given`));
    assert.deepEqual(tmpFiles(), []);
    const killed = await api('GET', '/v1/images?status=killed', admin);
    assert.deepEqual(names(killed), ['broken:1', 'mismatch:1']);
    for (const id of [q.body.id, m.body.id]) assert.equal((await api('DELETE', `/v1/images/${id}`, admin)).status, 204);

    // Bad metadata: refused before anything is made.
    for (const [body, code] of [
      [{ name: 'Bad Name', disk_format: 'raw' }, 'YUN_VALIDATION_FAILED'],
      [{ name: 'x:1', disk_format: 'vmdk' }, 'YUN_VALIDATION_FAILED'],
      [{ name: 'x:1', disk_format: 'raw', min_disk: -1 }, 'YUN_VALIDATION_FAILED'],
      [{ name: 'two-step:1', disk_format: 'raw' }, 'YUN_NAME_CONFLICT'],
    ] as const) {
      const r = await api('POST', '/v1/images', admin, body);
      assert.equal(r.body.error?.code, code, `${JSON.stringify(body)}: ${r.text}`);
    }
    assert.deepEqual(names(await api('GET', '/v1/images', admin)), ['two-step:1']);
  });

  it('private → shared with a member who accepts → public; only the owner changes it, only an admin publishes', async () => {
    const img = (await api('GET', '/v1/images/two-step:1', admin)).body;
    // private: another project neither lists, shows, nor uses it.
    assert.deepEqual(names(await api('GET', '/v1/images', bob)), []);
    assert.equal((await api('GET', `/v1/images/${img.id}`, bob)).status, 404);
    assert.equal((await api('GET', `/v1/images/${img.id}/file`, bob)).status, 404);
    const noMembers = await api('POST', `/v1/images/${img.id}/members`, admin, { member: 'team-b' });
    assert.equal(noMembers.status, 409);
    assert.match(noMembers.body.error.detail, /is private: only a shared image has members/);

    assert.equal((await api('PATCH', `/v1/images/${img.id}`, admin, { visibility: 'shared' })).body.visibility, 'shared');
    const add = await api('POST', `/v1/images/${img.id}/members`, admin, { member: 'team-b' });
    assert.equal(add.status, 201, add.text);
    assert.equal(add.body.status, 'pending');
    assert.equal(add.body.member_name, 'team-b');
    assert.equal((await api('POST', `/v1/images/${img.id}/members`, admin, { member: 'team-b' })).body.error.code, 'YUN_NAME_CONFLICT');
    assert.equal((await api('POST', `/v1/images/${img.id}/members`, admin, { member: 'no-such-project' })).status, 404);

    // pending: usable by id, not listed, not found by name.
    assert.deepEqual(names(await api('GET', '/v1/images', bob)), []);
    assert.deepEqual(names(await api('GET', '/v1/images?member_status=pending', bob)), ['two-step:1']);
    assert.equal((await api('GET', `/v1/images/${img.id}`, bob)).body.name, 'two-step:1');
    assert.equal((await api('GET', '/v1/images/two-step:1', bob)).status, 404);
    assert.equal((await api('GET', `/v1/images/${img.id}`, carol)).status, 404, 'not shared with team-c');
    // Only the member answers for itself; the owner cannot accept for it.
    const me = (await api('GET', '/v1/auth/tokens', bob)).body.token.project.id as string;
    assert.equal((await api('PUT', `/v1/images/${img.id}/members/${me}`, admin, { status: 'accepted' })).status, 403);
    assert.equal((await api('PUT', `/v1/images/${img.id}/members/${me}`, carol, { status: 'accepted' })).status, 404, 'carol cannot see it');
    const acc = await api('PUT', `/v1/images/${img.id}/members/${me}`, bob, { status: 'accepted' });
    assert.equal(acc.status, 200, acc.text);
    assert.equal(acc.body.status, 'accepted');
    assert.deepEqual(names(await api('GET', '/v1/images', bob)), ['two-step:1']);
    assert.equal((await api('GET', '/v1/images/two-step:1', bob)).body.id, img.id, 'found by name once accepted');
    const members = await api('GET', `/v1/images/${img.id}/members`, bob);
    assert.deepEqual(members.body.items.map((m: { member_id: string }) => m.member_id), [me], 'a member sees itself only');

    // A member may use it, but not change, share, publish or delete it.
    for (const [method, path, body] of [
      ['PATCH', `/v1/images/${img.id}`, { min_disk: 5 }],
      ['POST', `/v1/images/${img.id}/members`, { member: 'team-c' }],
      ['DELETE', `/v1/images/${img.id}`, undefined],
    ] as const) {
      const r = await api(method, path, bob, body);
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
      assert.match(r.body.error.detail, /only its owner may/);
    }
    // Tagging it gives bob's project its own name for the same content.
    const tag = await api('POST', `/v1/images/${img.id}/tags`, bob, { name: 'mine:1' });
    assert.equal(tag.status, 201, tag.text);
    assert.equal(tag.body.owner, me);
    assert.equal(tag.body.digest, img.digest);
    assert.equal(tag.body.visibility, 'private');
    assert.equal((await api('DELETE', `/v1/images/${tag.body.id}`, bob)).status, 204);

    // Publishing takes a cloud administrator: bob cannot make his own image public.
    const own = await api('POST', '/v1/images', bob, { name: 'bobs:1', disk_format: 'raw', visibility: 'public' });
    assert.equal(own.status, 403);
    assert.match(own.body.error.detail, /Only a cloud administrator may make image bobs:1 public/);
    assert.equal((await api('GET', '/v1/images/bobs:1', bob)).status, 404, 'nothing was made');
    const pub = await api('PATCH', `/v1/images/${img.id}`, admin, { visibility: 'public' });
    assert.equal(pub.body.visibility, 'public');
    assert.deepEqual(names(await api('GET', '/v1/images', carol)), ['two-step:1'], 'public: every project sees it');
    assert.deepEqual(names(await api('GET', '/v1/images?visibility=public', carol)), ['two-step:1']);
    assert.deepEqual(names(await api('GET', '/v1/images?visibility=private', carol)), []);

    // Back to shared, bob removed: bob loses it, carol too.
    await api('PATCH', `/v1/images/${img.id}`, admin, { visibility: 'shared' });
    assert.equal((await api('DELETE', `/v1/images/${img.id}/members/team-b`, admin)).status, 204);
    assert.deepEqual(names(await api('GET', '/v1/images', bob)), []);
    assert.equal((await api('GET', `/v1/images/${img.id}`, bob)).status, 404);
    assert.deepEqual(names(await api('GET', '/v1/images', carol)), []);
  });

  it('a name two visible images carry is ambiguous, named by id it is not; the owner\'s own name wins', async () => {
    const mk = async (token: string) => {
      const c = await api('POST', '/v1/images', token, { name: 'common:1', disk_format: 'raw' });
      assert.equal(c.status, 201, c.text);
      assert.equal((await put(c.body.id, token, disk)).status, 200);
      return c.body.id as string;
    };
    const a = await mk(admin);
    const b = await mk(bob);
    await api('PATCH', `/v1/images/${a}`, admin, { visibility: 'public' });
    await api('PATCH', `/v1/images/${b}`, admin, { visibility: 'public' });
    const amb = await api('GET', '/v1/images/common:1', carol);
    assert.equal(amb.status, 409);
    assert.equal(amb.body.error.code, 'YUN_AMBIGUOUS_NAME');
    assert.match(amb.body.error.detail, new RegExp(`2 images named common:1 .*${a}.*${b}|2 images named common:1 .*${b}.*${a}`));
    assert.equal((await api('GET', `/v1/images/${a}`, carol)).body.id, a);
    assert.equal((await api('GET', '/v1/images/common:1', bob)).body.id, b, 'bob\'s own first');
    // The owner deleting content another project's server uses is refused, naming no foreign server.
    assert.equal((await api('POST', '/v1/flavors', admin, { name: 'big', vcpus: 4, ram_mb: 16 * 1024, disk_gb: 1 })).status, 201);
    const srvs: string[] = [];
    for (const [name, image] of [['on-a', a], ['on-b', b]]) {
      const srv = await api('POST', '/v1/servers', carol, { name, flavor: 'big', image, networks: ['none'] });
      assert.equal(srv.status, 202, srv.text);
      srvs.push(srv.body.id);
    }
    const del = await api('DELETE', `/v1/images/${a}`, admin);
    assert.equal(del.status, 409);
    assert.equal(del.body.error.code, 'YUN_IN_USE');
    assert.match(del.body.error.detail, /root disk of 1 server: "on-a"/, 'a cloud administrator is told which');
    const delB = await api('DELETE', `/v1/images/${b}`, bob);
    assert.equal(delB.status, 409);
    assert.match(delB.body.error.detail, /root disk of 1 server: a server of another project/, 'bob is not told carol\'s server names');
    for (const id of srvs) {
      assert.ok((await api('DELETE', `/v1/servers/${id}`, carol)).status < 300);
      await waitFor('the server gone', async () => (await api('GET', `/v1/servers/${id}`, carol)).status === 404, 30_000);
    }
    assert.equal((await api('DELETE', `/v1/images/${a}`, admin)).status, 204);
    assert.equal((await api('DELETE', `/v1/images/${b}`, bob)).status, 204);
  });

  it('the CLI: image create --file, ls with status and visibility, set, member add / accept, upload refused once active', async () => {
    const env = { ...envFile(cloud.envPath), YUN_CONFIG_DIR: join(tmp, 'cli-admin'), NO_COLOR: '1' };
    const bobEnv = { ...env, YUN_USERNAME: 'bob', YUN_PASSWORD: 'bob-secret-1', YUN_PROJECT: 'team-b', YUN_CONFIG_DIR: join(tmp, 'cli-bob') };
    const yun = (args: string[], e: Record<string, string> = env) => new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
      execFile(process.execPath, [YUN, ...args], { env: { ...baseEnv(), ...e }, timeout: 60_000 }, (err, stdout, stderr) => res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
    const ok = async (args: string[], e?: Record<string, string>) => {
      const r = await yun(args, e);
      assert.equal(r.code, 0, `yun ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const file = join(tmp, 'disk.raw');
    writeFileSync(file, disk);
    const img = JSON.parse(await ok(['image', 'create', 'cli-img:1', '--disk-format', 'raw', '--file', file, '--checksum', sha(disk), '--visibility', 'shared', '--min-disk', '1', '--json']));
    assert.equal(img.status, 'active');
    assert.equal(img.visibility, 'shared');
    assert.equal(img.os_hash_value, sha(disk));
    const table = await ok(['image', 'ls', '-f', 'name=cli-img:1']);
    assert.match(table, /^cli-img\t1\t[0-9a-f]{12}\t\S+\tvm\/raw\tactive\tshared\t/);
    assert.match(await ok(['image', 'member', 'add', 'cli-img:1', 'team-b']), /team-b\tpending/);
    assert.deepEqual(JSON.parse(await ok(['image', 'ls', '--json'], bobEnv)).map((i: { name: string }) => i.name), []);
    assert.deepEqual(JSON.parse(await ok(['image', 'ls', '--member-status', 'pending', '--json'], bobEnv)).map((i: { id: string }) => i.id), [img.id]);
    assert.match(await ok(['image', 'member', 'accept', img.id], bobEnv), /accepted by team-b/);
    assert.deepEqual(JSON.parse(await ok(['image', 'ls', '--json'], bobEnv)).map((i: { name: string }) => i.name), ['cli-img:1']);
    assert.equal(JSON.parse(await ok(['image', 'member', 'ls', 'cli-img:1', '--json']))[0].status, 'accepted');
    const pub = await yun(['image', 'set', 'cli-img:1', '--visibility', 'public'], bobEnv);
    assert.notEqual(pub.code, 0);
    assert.match(pub.stderr, /YUN_FORBIDDEN/);
    assert.match(await ok(['image', 'set', 'cli-img:1', '--visibility', 'public', '--min-disk', '2']), /public\tmin_disk 2 GiB/);
    const again = await yun(['image', 'upload', 'cli-img:1', file]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /YUN_INVALID_STATE/);
    assert.match(again.stderr, /already has its data/);
    const bad = await yun(['image', 'create', 'x:1', '--disk-format', 'vmdk']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--disk-format must be qcow2 or raw, not "vmdk"/);
    const killed = await yun(['image', 'create', 'cli-bad:1', '--disk-format', 'qcow2', '--file', file]);
    assert.notEqual(killed.code, 0);
    assert.match(killed.stderr, /YUN_IMAGE_INVALID/);
    assert.match(killed.stderr, /was killed; delete it with `yun image rm/);
    assert.equal(JSON.parse(await ok(['image', 'inspect', 'cli-bad:1'])).status, 'killed');
    await ok(['image', 'rm', 'cli-bad:1', 'cli-img:1']);
  });
});

describe('an image never stays saving: the manager killed with SIGKILL during an upload', { timeout: 90_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'yun-img-kill-'));
  after(async () => {
    for (const m of managers) await stopManager(m).catch(() => undefined);
    const { removeAgentDir } = await import('./helpers/agents.js');
    await removeAgentDir(dataDir);
  });

  it('killed with the reason when the manager comes back; the partial upload is gone', async () => {
    const port = await freePort();
    let mgr = await startManager(dataDir, port);
    const env = envFile(join(dataDir, 'admin.env'));
    const ca = readFileSync(env.YUN_CACERT!, 'utf8');
    let client = new Api(mgr.url, ca);
    try {
      let token = await client.login(env.YUN_USERNAME!, env.YUN_PASSWORD!, env.YUN_PROJECT);
      const img = (await client.req('POST', '/v1/images', { token, body: { name: 'cut-off:1', disk_format: 'raw' } })).body;
      // An upload that sends a little and then waits: the manager is killed while it is saving.
      let stop!: () => void;
      const stalled = new Promise<void>((r) => { stop = r; });
      const body = (async function* () { yield randomBytes(256 * 1024); await stalled; })();
      const upload = fetch(`${mgr.url}/v1/images/${img.id}/file`, { method: 'PUT', headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' }, body, duplex: 'half', dispatcher: client.agent } as Parameters<typeof fetch>[1]).catch((e: Error) => e);
      await waitFor('the image saving', async () => (await client.req('GET', `/v1/images/${img.id}`, { token })).body.status === 'saving', 10_000);
      await waitFor('part of the upload in tmp', async () => readdirSync(join(dataDir, 'images', 'tmp')).length > 0, 10_000);
      await stopManager(mgr, 'SIGKILL');
      stop();
      await upload; // it fails or ends: either way the manager is gone
      await client.close();
      mgr = await startManager(dataDir, port);
      client = new Api(mgr.url, ca);
      token = await client.login(env.YUN_USERNAME!, env.YUN_PASSWORD!, env.YUN_PROJECT);
      const after = (await client.req('GET', `/v1/images/${img.id}`, { token })).body;
      assert.equal(after.status, 'killed');
      assert.match(after.status_reason, /manager stopped while the image was being saved/);
      assert.deepEqual(readdirSync(join(dataDir, 'images', 'tmp')), [], 'the partial upload was cleaned up');
      assert.equal((await client.req('DELETE', `/v1/images/${img.id}`, { token })).status, 204);
    } finally {
      await client.close();
    }
  });
});
