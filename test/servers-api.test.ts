// Servers over HTTP (the server API, flavors, key pairs, quotas, tenancy) against an in-process cloud
// whose agent runs real system containers (oci driver, runc) from a busybox image built offline.
// Every request is real; every wait polls. Each test makes the servers it needs and deletes them;
// `after` deletes whatever is left. Needs root, runc and busybox-static (YUN_REQUIRE_ALL=1 turns the
// skip into a failure). Nothing here uses the qemu driver: `driver: 'qemu'` appears only in a create
// that validation refuses before anything is made.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { requireOrSkip, startTestCloud, type Res, type TestCloud } from './helpers/cloud.js';
import { waitFor } from './helpers/agents.js';
import { buildBusyboxRootfs } from '../src/drivers/oci/busybox-rootfs.js';
import { contains, ipToInt, parseCidr } from '../src/network/ipam.js';

const root = process.getuid?.() === 0;
const runc = (() => { try { execFileSync('runc', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
const busybox = existsSync('/bin/busybox');
const why = `needs root, runc and busybox-static (root=${root}, runc=${runc}, busybox=${busybox})`;
const RUNC_ROOT = '/run/yunstack-runc';
const MiB = 1024 ** 2;

interface Flavor { id: string; name: string; vcpus: number; ram_mb: number; disk_gb: number; ephemeral_gb: number; swap_mb: number; is_public: boolean; projects: string[]; description: string; properties: Record<string, string>; version: number }
interface Server {
  id: string; name: string; project_id: string; status: string; vm_state: string; task_state: string | null; power_state: string; driver: string; version: number;
  flavor: { id: string; name: string; vcpus: number; ram_mb: number }; old_flavor: { name: string } | null; image: { name: string; kind: string };
  addresses: Record<string, { addr: string; version: number; mac: string }[]>; networks: { id: string; name: string; address: string | null; mac: string }[];
  node_id: string | null; node: string | null; key_name: string | null; metadata: Record<string, string>; has_user_data: boolean;
  fault: { code: string; message: string; details: string } | null; allowed_actions: string[];
  user_data_b64?: unknown; public_keys?: unknown;
}
interface List<T> { items: T[]; next: string | null; count?: number }

/** A gzip tar of a busybox root file system (built in a directory of our own, so no other test's build is touched). */
async function busyboxTar(): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'yun-servers-api-rootfs-'));
  try {
    buildBusyboxRootfs(join(dir, 'rootfs'));
    const chunks: Buffer[] = [];
    for await (const c of tar.c({ cwd: join(dir, 'rootfs'), gzip: true, portable: false }, ['.']) as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An OpenSSH ed25519 public key line made with node's crypto, and its fingerprint as ssh-keygen -l prints it. */
function ed25519Key(comment = 'test@yunstack'): { line: string; blob: Buffer; fingerprint: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const raw = der.subarray(der.length - 32);
  const sshString = (b: Buffer) => { const n = Buffer.alloc(4); n.writeUInt32BE(b.length); return Buffer.concat([n, b]); };
  const blob = Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(raw)]);
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { line: `ssh-ed25519 ${blob.toString('base64')} ${comment}`, blob, fingerprint, privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** runc's view of a container of ours: running, paused, stopped, or undefined when runc has none. */
function runcStatus(id: string): string | undefined {
  try {
    return (JSON.parse(execFileSync('runc', ['--root', RUNC_ROOT, 'state', id], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as { status: string }).status;
  } catch {
    return undefined;
  }
}
function runcIds(): string[] {
  try {
    return execFileSync('runc', ['--root', RUNC_ROOT, 'list', '-q'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** The console split into boots: the text from each `YUN-GUEST init reached` to the next. */
function boots(log: string): string[] {
  return log.split(/(?=YUN-GUEST init reached)/).filter((b) => b.startsWith('YUN-GUEST init reached'));
}

describe('servers API: flavors, key pairs and system containers on the oci driver', { concurrency: false }, () => {
  let cloud: TestCloud;
  let ok = false;
  let admin = '';
  let alice = ''; // member of demo
  let rita = ''; // reader of demo
  let bob = ''; // member of other
  let quinn = ''; // member of quota
  const projects: Record<string, string> = {}; // name → id
  let net1: { id: string; name: string; subnet: string };
  let image: Buffer;

  const req = <T = any>(method: string, path: string, body?: unknown, token = alice, headers?: Record<string, string>) => cloud.api.req<T>(method, path, { token, body, ...(headers ? { headers } : {}) });

  /** An error answer: its status, its code, the one error shape; returns the error body. */
  const expectError = (what: string, r: Res, status: number, code: string) => {
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body?.error?.code, code, `${what}: ${r.text}`);
    assert.equal(typeof r.body.error.detail, 'string', `${what}: error.detail`);
    assert.ok(r.body.error.detail.length > 0, `${what}: error.detail`);
    return r.body.error as { code: string; detail: string; [k: string]: unknown };
  };

  const importBusybox = async (token: string) => {
    const r = await cloud.api.req('POST', '/v1/images/import-rootfs?name=busybox:latest&cmd=sh', { token, rawBody: image as unknown as string, headers: { 'content-type': 'application/gzip' } });
    assert.equal(r.status, 201, r.text);
  };

  const get = async (ref: string, token = alice) => req<Server>('GET', `/v1/servers/${encodeURIComponent(ref)}`, undefined, token);

  /** Create a server (defaults: m1.tiny, busybox, net1) and expect 202 BUILD. */
  const create = async (name: string, extra: Record<string, unknown> = {}, token = alice): Promise<Server> => {
    const r = await req<Server>('POST', '/v1/servers', { name, flavor: 'm1.tiny', image: 'busybox', networks: [net1.name], ...extra }, token);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.status, 'BUILD', r.text);
    assert.equal(r.body.vm_state, 'building');
    assert.equal(r.body.name, name);
    assert.equal(r.headers.get('location'), `/v1/servers/${r.body.id}`);
    return r.body;
  };

  /** Wait until the server rests (no action in progress) and expect `status` there. */
  const waitStatus = async (id: string, status: string, token = alice, ms = 30_000): Promise<Server> => {
    const s = await waitFor(`server ${id} to rest in ${status}`, async () => {
      const r = await get(id, token);
      if (r.status !== 200) return undefined;
      const x = r.body;
      return x.task_state === null && (x.status === status || x.status === 'ERROR') ? x : undefined;
    }, ms, 50);
    assert.equal(s.status, status, `server ${s.name}: ${JSON.stringify(s.fault ?? s)}`);
    return s;
  };

  const createActive = async (name: string, extra: Record<string, unknown> = {}, token = alice) => waitStatus((await create(name, extra, token)).id, 'ACTIVE', token);

  /** POST an action; expect 202 and the task_state it runs under. */
  const act = async (id: string, action: string, extra: Record<string, unknown> = {}, token = alice): Promise<Server> => {
    const r = await req<Server>('POST', `/v1/servers/${id}/actions`, { action, ...extra }, token);
    assert.equal(r.status, 202, `${action}: ${r.text}`);
    return r.body;
  };

  const consoleLog = async (id: string, token = alice) => {
    const r = await req<{ output: string }>('GET', `/v1/servers/${id}/console-log`, undefined, token);
    assert.equal(r.status, 200, r.text);
    return r.body.output;
  };
  const waitConsole = (id: string, what: string, test: (log: string) => boolean, ms = 15_000) =>
    waitFor(`console of ${id}: ${what}`, async () => { const l = await consoleLog(id); return test(l) ? l : undefined; }, ms, 50);

  const serverDir = (id: string) => join(cloud.dataDir, 'agent', 'servers', id);

  /** Delete a server (any project, as the admin) and wait until it and its container are gone. */
  const destroy = async (id: string, token = admin) => {
    const r = await req('DELETE', `/v1/servers/${id}`, undefined, token);
    assert.ok(r.status === 202 || r.status === 204 || r.status === 404, `DELETE ${id}: ${r.status} ${r.text}`);
    await waitFor(`server ${id} gone`, async () => (await get(id, admin)).status === 404, 30_000, 50);
    await waitFor(`container ${id} gone`, async () => !runcIds().includes(id) && !existsSync(serverDir(id)), 30_000, 50);
  };

  const quotas = async (project: string) => {
    const r = await req('GET', `/v1/projects/${projects[project]}/quotas`, undefined, admin);
    assert.equal(r.status, 200, r.text);
    return r.body as { version: number; quotas: Record<string, { limit: number; in_use: number }> };
  };
  const setQuotas = async (project: string, q: Record<string, number>) => {
    const cur = await quotas(project);
    const r = await req('PATCH', `/v1/projects/${projects[project]}/quotas`, { version: cur.version, ...q }, admin);
    assert.equal(r.status, 200, r.text);
    return r.body as { quotas: Record<string, { limit: number; in_use: number }> };
  };

  before(async () => {
    ok = root && runc && busybox;
    if (!ok) {
      if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
      return;
    }
    cloud = await startTestCloud();
    admin = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    for (const p of ['demo', 'other', 'quota']) {
      const r = await req('POST', '/v1/projects', { name: p }, admin);
      assert.equal(r.status, 201, r.text);
      projects[p] = r.body.id;
    }
    projects.admin = (await req('GET', '/v1/projects/admin', undefined, admin)).body.id;
    for (const [user, project, role] of [['alice', 'demo', 'member'], ['rita', 'demo', 'reader'], ['bob', 'other', 'member'], ['quinn', 'quota', 'member']] as const) {
      assert.equal((await req('POST', '/v1/users', { name: user, password: `${user}-secret-123`, default_project: project }, admin)).status, 201);
      assert.equal((await req('PUT', `/v1/projects/${project}/members/${user}/roles/${role}`, undefined, admin)).status, 204);
    }
    alice = await cloud.api.login('alice', 'alice-secret-123', 'demo');
    rita = await cloud.api.login('rita', 'rita-secret-123', 'demo');
    bob = await cloud.api.login('bob', 'bob-secret-123', 'other');
    quinn = await cloud.api.login('quinn', 'quinn-secret-123', 'quota');
    image = await busyboxTar();
    for (const t of [admin, alice, bob, quinn]) await importBusybox(t);
    const n = await req('POST', '/v1/networks', { name: 'net1' }, alice);
    assert.equal(n.status, 201, n.text);
    net1 = n.body;
  });

  after(async () => {
    if (!cloud) return;
    const left = (await req<List<Server>>('GET', '/v1/servers?all_projects=true&limit=1000', undefined, admin)).body.items ?? [];
    for (const s of left) await destroy(s.id).catch(() => undefined);
    for (const s of (await req<List<{ id: string }>>('GET', '/v1/services?all_projects=true', undefined, admin)).body.items ?? []) await req('DELETE', `/v1/services/${s.id}`, undefined, admin);
    await cloud.close({ stopTasks: true });
    await cloud.stop();
  });

  // ---- flavors -------------------------------------------------------------------------------

  it('flavors: the five m1.* defaults with Nova\'s sizes, smallest first; shown by name and by id', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const nova = [
      { id: '1', name: 'm1.tiny', vcpus: 1, ram_mb: 512, disk_gb: 1 },
      { id: '2', name: 'm1.small', vcpus: 1, ram_mb: 2048, disk_gb: 20 },
      { id: '3', name: 'm1.medium', vcpus: 2, ram_mb: 4096, disk_gb: 40 },
      { id: '4', name: 'm1.large', vcpus: 4, ram_mb: 8192, disk_gb: 80 },
      { id: '5', name: 'm1.xlarge', vcpus: 8, ram_mb: 16384, disk_gb: 160 },
    ];
    for (const token of [alice, admin]) {
      const r = await req<List<Flavor>>('GET', '/v1/flavors', undefined, token);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.items.map((f) => ({ id: f.id, name: f.name, vcpus: f.vcpus, ram_mb: f.ram_mb, disk_gb: f.disk_gb })), nova);
      for (const f of r.body.items) assert.deepEqual({ eph: f.ephemeral_gb, swap: f.swap_mb, pub: f.is_public }, { eph: 0, swap: 0, pub: true }, f.name);
    }
    const byName = await req<Flavor>('GET', '/v1/flavors/m1.tiny');
    assert.equal(byName.status, 200, byName.text);
    assert.deepEqual({ id: byName.body.id, ram_mb: byName.body.ram_mb, disk_gb: byName.body.disk_gb, vcpus: byName.body.vcpus }, { id: '1', ram_mb: 512, disk_gb: 1, vcpus: 1 });
    const byId = await req<Flavor>('GET', '/v1/flavors/1');
    assert.equal(byId.status, 200, byId.text);
    assert.equal(byId.body.name, 'm1.tiny');
    const e = expectError('unknown flavor', await req('GET', '/v1/flavors/m1.nope'), 404, 'YUN_NOT_FOUND');
    assert.match(e.detail, /"m1\.nope"/);
    // Pages of two, following next.
    const names: string[] = [];
    let next: string | null = '/v1/flavors?limit=2&with_count=true';
    while (next) {
      const p: Res<List<Flavor>> = await req<List<Flavor>>('GET', next);
      assert.equal(p.status, 200, p.text);
      assert.ok(p.body.items.length <= 2);
      assert.equal(p.body.count, 5);
      names.push(...p.body.items.map((f) => f.name));
      next = p.body.next;
    }
    assert.deepEqual(names, nova.map((f) => f.name));
  });

  it('flavors: a member may not create one (403); the admin creates, changes and removes one; duplicate 409; bad input 400', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const e403 = expectError('member creates a flavor', await req('POST', '/v1/flavors', { name: 'x1.member', vcpus: 1, ram_mb: 64 }), 403, 'YUN_FORBIDDEN');
    assert.match(e403.detail, /cloud administrator/);
    assert.equal((await req('GET', '/v1/flavors/x1.member', undefined, admin)).status, 404);

    const c = await req<Flavor>('POST', '/v1/flavors', { name: 'x1.custom', id: 'x1c', vcpus: 2, ram_mb: 256, disk_gb: 2, description: 'a test flavor' }, admin);
    assert.equal(c.status, 201, c.text);
    assert.equal(c.headers.get('location'), '/v1/flavors/x1c');
    assert.deepEqual({ id: c.body.id, vcpus: c.body.vcpus, ram_mb: c.body.ram_mb, disk_gb: c.body.disk_gb, is_public: c.body.is_public }, { id: 'x1c', vcpus: 2, ram_mb: 256, disk_gb: 2, is_public: true });
    try {
      // Everyone sees a public flavor, in its place by RAM (256 MiB: first).
      const list = await req<List<Flavor>>('GET', '/v1/flavors');
      assert.deepEqual(list.body.items.map((f) => f.name), ['x1.custom', 'm1.tiny', 'm1.small', 'm1.medium', 'm1.large', 'm1.xlarge']);

      const dupName = expectError('duplicate name', await req('POST', '/v1/flavors', { name: 'x1.custom', vcpus: 1, ram_mb: 64 }, admin), 409, 'YUN_NAME_CONFLICT');
      assert.match(dupName.detail, /"x1\.custom"/);
      const dupId = expectError('duplicate id', await req('POST', '/v1/flavors', { name: 'x1.other', id: '1', vcpus: 1, ram_mb: 64 }, admin), 409, 'YUN_NAME_CONFLICT');
      assert.match(dupId.detail, /id "1"/);

      const v0 = expectError('vcpus 0', await req('POST', '/v1/flavors', { name: 'x1.bad', vcpus: 0, ram_mb: 64 }, admin), 400, 'YUN_VALIDATION_FAILED');
      assert.match(v0.detail, /vcpus/);
      const unk = expectError('unknown field', await req('POST', '/v1/flavors', { name: 'x1.bad', vcpus: 1, ram_mb: 64, gpus: 1 }, admin), 400, 'YUN_VALIDATION_FAILED');
      assert.match(unk.detail, /Unknown field "gpus"/);
      const pubList = expectError('public flavor with projects', await req('POST', '/v1/flavors', { name: 'x1.bad', vcpus: 1, ram_mb: 64, projects: ['demo'] }, admin), 400, 'YUN_VALIDATION_FAILED');
      assert.match(pubList.detail, /public flavor/);
      assert.equal((await req('GET', '/v1/flavors/x1.bad', undefined, admin)).status, 404);

      // Patch: the version is required; description and properties change, sizes cannot.
      expectError('patch without a version', await req('PATCH', '/v1/flavors/x1c', { description: 'new' }, admin), 428, 'YUN_VERSION_REQUIRED').detail;
      const p = await req<Flavor>('PATCH', '/v1/flavors/x1c', { version: c.body.version, description: 'changed', properties: { 'hw:cpu_policy': 'shared' } }, admin);
      assert.equal(p.status, 200, p.text);
      assert.equal(p.body.description, 'changed');
      assert.deepEqual(p.body.properties, { 'hw:cpu_policy': 'shared' });
      assert.equal(p.body.ram_mb, 256);
      expectError('stale version', await req('PATCH', '/v1/flavors/x1c', { version: c.body.version, description: 'stale' }, admin), 409, 'YUN_VERSION_CONFLICT');
      expectError('sizes do not change', await req('PATCH', '/v1/flavors/x1c', { version: p.body.version, ram_mb: 512 }, admin), 400, 'YUN_VALIDATION_FAILED');
      expectError('member patches', await req('PATCH', '/v1/flavors/x1c', { version: p.body.version, description: 'mine' }), 403, 'YUN_FORBIDDEN');
      expectError('member removes', await req('DELETE', '/v1/flavors/x1c'), 403, 'YUN_FORBIDDEN');
    } finally {
      const d = await req('DELETE', '/v1/flavors/x1c', undefined, admin);
      assert.equal(d.status, 204, d.text);
    }
    assert.equal((await req('GET', '/v1/flavors/x1c', undefined, admin)).status, 404);
    expectError('remove again', await req('DELETE', '/v1/flavors/x1c', undefined, admin), 404, 'YUN_NOT_FOUND');
  });

  it('flavors: a private flavor is usable by the projects on its list only (another project gets 404)', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const c = await req<Flavor>('POST', '/v1/flavors', { name: 'demo.only', vcpus: 1, ram_mb: 128, is_public: false, projects: ['demo'] }, admin);
    assert.equal(c.status, 201, c.text);
    try {
      assert.equal(c.body.is_public, false);
      assert.deepEqual(c.body.projects, [projects.demo], 'project names are stored as ids');
      assert.equal((await req('GET', '/v1/flavors/demo.only')).status, 200);
      assert.ok((await req<List<Flavor>>('GET', '/v1/flavors')).body.items.some((f) => f.name === 'demo.only'));
      const e = expectError('other project shows it', await req('GET', '/v1/flavors/demo.only', undefined, bob), 404, 'YUN_NOT_FOUND');
      assert.match(e.detail, /"demo\.only".*"other"/);
      expectError('other project shows it by id', await req('GET', `/v1/flavors/${c.body.id}`, undefined, bob), 404, 'YUN_NOT_FOUND');
      assert.ok(!(await req<List<Flavor>>('GET', '/v1/flavors', undefined, bob)).body.items.some((f) => f.name === 'demo.only'));
      assert.equal((await req<List<Flavor>>('GET', '/v1/flavors?with_count=true', undefined, bob)).body.count, 5);
      // Nor can it build a server with it.
      expectError('other project builds with it', await req('POST', '/v1/servers', { name: 'priv', flavor: 'demo.only', image: 'busybox', networks: ['none'] }, bob), 400, 'YUN_VALIDATION_FAILED');
      assert.equal((await get('priv', bob)).status, 404);
      // Grant other too: now bob sees it.
      const p = await req<Flavor>('PATCH', `/v1/flavors/${c.body.id}`, { version: c.body.version, projects: ['demo', 'other'] }, admin);
      assert.equal(p.status, 200, p.text);
      assert.equal((await req('GET', '/v1/flavors/demo.only', undefined, bob)).status, 200);
      expectError('unknown project on the list', await req('PATCH', `/v1/flavors/${c.body.id}`, { version: p.body.version, projects: ['nope'] }, admin), 400, 'YUN_VALIDATION_FAILED');
    } finally {
      assert.equal((await req('DELETE', `/v1/flavors/${c.body.id}`, undefined, admin)).status, 204);
    }
  });

  // ---- key pairs -----------------------------------------------------------------------------

  it('key pairs: an ed25519 public key is imported with its SHA256 fingerprint; duplicate 409; another project 404', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const k = ed25519Key();
    const r = await req('POST', '/v1/keypairs', { name: 'kp-main', public_key: `${k.line}\n` });
    assert.equal(r.status, 201, r.text);
    try {
      assert.equal(r.body.fingerprint, k.fingerprint);
      assert.equal(r.body.type, 'ssh-ed25519');
      assert.equal(r.body.public_key, k.line, 'kept as one normalised line');
      assert.equal(r.body.project_id, projects.demo);
      const shown = await req('GET', '/v1/keypairs/kp-main');
      assert.equal(shown.status, 200);
      assert.equal(shown.body.fingerprint, k.fingerprint);
      assert.ok((await req<List<{ name: string }>>('GET', '/v1/keypairs')).body.items.some((x) => x.name === 'kp-main'));
      const dup = expectError('duplicate', await req('POST', '/v1/keypairs', { name: 'kp-main', public_key: ed25519Key().line }), 409, 'YUN_NAME_CONFLICT');
      assert.match(dup.detail, /"kp-main".*"demo"/);
      expectError('another project by name', await req('GET', '/v1/keypairs/kp-main', undefined, bob), 404, 'YUN_NOT_FOUND');
      expectError('another project by id', await req('GET', `/v1/keypairs/${r.body.id}`, undefined, bob), 404, 'YUN_NOT_FOUND');
      expectError('another project removes it', await req('DELETE', `/v1/keypairs/${r.body.id}`, undefined, bob), 404, 'YUN_NOT_FOUND');
      assert.ok(!(await req<List<{ name: string }>>('GET', '/v1/keypairs', undefined, bob)).body.items.some((x) => x.name === 'kp-main'));
      // The same name in another project is another key pair.
      const theirs = await req('POST', '/v1/keypairs', { name: 'kp-main', public_key: k.line }, bob);
      assert.equal(theirs.status, 201, theirs.text);
      assert.equal((await req('DELETE', `/v1/keypairs/${theirs.body.id}`, undefined, bob)).status, 204);
      expectError('a reader imports one', await req('POST', '/v1/keypairs', { name: 'kp-reader', public_key: k.line }, rita), 403, 'YUN_FORBIDDEN');
    } finally {
      assert.equal((await req('DELETE', '/v1/keypairs/kp-main')).status, 204);
    }
    expectError('removed', await req('GET', '/v1/keypairs/kp-main'), 404, 'YUN_NOT_FOUND');
  });

  it('key pairs: a private key, garbage or a damaged key is a 400 that says why; nothing is made', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const k = ed25519Key();
    const oneLinePrivate = `-----BEGIN OPENSSH PRIVATE KEY----- ${Buffer.from('openssh-key-v1').toString('base64')} -----END OPENSSH PRIVATE KEY-----`;
    const cases: [string, string, RegExp][] = [
      ['a PEM private key', k.privatePem, /private key/],
      ['a one-line private key', oneLinePrivate, /it is a private key/],
      ['garbage', 'hello world', /type "hello" is not an SSH key type/],
      ['not base64', 'ssh-ed25519 !!!not-base64!!!', /not base64/],
      ['another type in the blob', `ssh-rsa ${k.blob.toString('base64')}`, /does not match its type ssh-rsa/],
      ['a cut key', `ssh-ed25519 ${k.blob.subarray(0, 8).toString('base64')}`, /does not match its type ssh-ed25519/],
      ['two keys', `${k.line}\n${ed25519Key().line}`, /several lines/],
    ];
    for (const [what, key, why] of cases) {
      const e = expectError(what, await req('POST', '/v1/keypairs', { name: 'kp-bad', public_key: key }), 400, 'YUN_VALIDATION_FAILED');
      assert.match(e.detail, /The public key of key pair "kp-bad" is not valid/, what);
      assert.match(e.detail, why, what);
      assert.equal(e.field, 'body/public_key', what);
    }
    expectError('no public key', await req('POST', '/v1/keypairs', { name: 'kp-bad' }), 400, 'YUN_VALIDATION_FAILED');
    assert.equal((await req('GET', '/v1/keypairs/kp-bad')).status, 404);
  });

  // ---- servers -------------------------------------------------------------------------------

  it('create: 202 BUILD, then ACTIVE with an address of its network; the console shows the init, the user data and the key', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const k = ed25519Key();
    assert.equal((await req('POST', '/v1/keypairs', { name: 'kp-boot', public_key: k.line })).status, 201);
    const marker = `UD-MARKER-${Date.now()}`;
    let id = '';
    try {
      const s = await create('boot1', { key_name: 'kp-boot', user_data: b64(`#!/bin/sh\necho "${marker} from user data"\n`), metadata: { role: 'test', 'owner.team': 'qa' } });
      id = s.id;
      assert.equal(s.task_state, 'scheduling');
      assert.equal(s.driver, 'oci', 'a container image boots on oci');
      assert.equal(s.flavor.name, 'm1.tiny');
      assert.equal(s.image.kind, 'container');
      assert.equal(s.key_name, 'kp-boot');
      assert.deepEqual(s.metadata, { role: 'test', 'owner.team': 'qa' });
      assert.equal(s.has_user_data, true);
      assert.equal(s.user_data_b64, undefined, 'user data is never shown again');
      assert.equal(s.public_keys, undefined);
      const a = await waitStatus(id, 'ACTIVE');
      assert.equal(a.vm_state, 'active');
      assert.equal(a.power_state, 'running');
      assert.ok(a.node_id);
      assert.equal(a.fault, null);
      assert.deepEqual(Object.keys(a.addresses), ['net1']);
      const addr = a.addresses.net1![0]!;
      assert.ok(contains(parseCidr(net1.subnet), ipToInt(addr.addr)), `${addr.addr} in ${net1.subnet}`);
      assert.equal(addr.version, 4);
      assert.match(addr.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
      assert.equal(a.networks[0]!.name, 'net1');
      assert.ok(a.allowed_actions.includes('stop') && !a.allowed_actions.includes('start'), JSON.stringify(a.allowed_actions));
      assert.equal(runcStatus(id), 'running');
      const log = await waitConsole(id, 'init, seed and user data', (l) => l.includes(marker) && l.includes('YUN-GUEST ready'));
      assert.match(log, /YUN-GUEST init reached/);
      assert.match(log, new RegExp(`YUN-GUEST seed instance-id=${id} hostname=boot1 keys=1`));
      assert.match(log, /YUN-GUEST user-data started/);
      assert.match(log, new RegExp(`${marker} from user data`));
      // lines=N: only the end.
      const tail = await req<{ output: string }>('GET', `/v1/servers/${id}/console-log?lines=1`);
      assert.equal(tail.status, 200);
      assert.ok(tail.body.output.split('\n').filter(Boolean).length <= 1, JSON.stringify(tail.body.output));
      // By name, too; and its action log.
      assert.equal((await get('boot1')).body.id, id);
      const ev = await req<{ items: { action: string; result: string | null }[] }>('GET', `/v1/servers/${id}/actions`);
      assert.deepEqual(ev.body.items.map((e) => [e.action, e.result]), [['create', 'success']]);
    } finally {
      if (id) await destroy(id);
      await req('DELETE', '/v1/keypairs/kp-boot');
    }
  });

  it('list: status and name filters, with_count, pagination with limit=1 and next', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const ids: string[] = [];
    try {
      for (const n of ['list-a', 'list-b']) ids.push((await create(n, { networks: ['none'] })).id);
      for (const id of ids) await waitStatus(id, 'ACTIVE');
      await act(ids[1]!, 'stop');
      await waitStatus(ids[1]!, 'SHUTOFF');

      const names = async (q: string) => {
        const r = await req<List<Server>>('GET', `/v1/servers?${q}`);
        assert.equal(r.status, 200, r.text);
        return r.body.items.map((s) => s.name).filter((n) => n.startsWith('list-'));
      };
      assert.deepEqual(await names('status=ACTIVE'), ['list-a']);
      assert.deepEqual(await names('status=SHUTOFF'), ['list-b']);
      assert.deepEqual(await names('name=list-b'), ['list-b']);
      assert.deepEqual(await names('name=list-a&status=SHUTOFF'), []);
      assert.deepEqual(await names('sort=name:desc'), ['list-b', 'list-a']);
      expectError('an unknown status', await req('GET', '/v1/servers?status=RUNNING'), 400, 'YUN_BAD_REQUEST');
      expectError('an unknown query parameter', await req('GET', '/v1/servers?colour=red'), 400, 'YUN_UNKNOWN_QUERY_PARAMETER');

      const all = await req<List<Server>>('GET', '/v1/servers?with_count=true');
      assert.equal(all.body.count, all.body.items.length);
      assert.equal(all.body.next, null);
      // Pages of one: every server once, in name order.
      const seen: string[] = [];
      let next: string | null = '/v1/servers?limit=1&with_count=true';
      let pages = 0;
      while (next) {
        const p: Res<List<Server>> = await req<List<Server>>('GET', next);
        assert.equal(p.status, 200, p.text);
        assert.equal(p.body.items.length, 1);
        assert.equal(p.body.count, all.body.count);
        seen.push(p.body.items[0]!.name);
        next = p.body.next;
        if (next) assert.match(next, /^\/v1\/servers\?.*marker=/);
        assert.ok(++pages <= all.body.items.length);
      }
      assert.deepEqual(seen, all.body.items.map((s) => s.name));
      assert.deepEqual(seen.filter((n) => n.startsWith('list-')), ['list-a', 'list-b']);
    } finally {
      for (const id of ids) await destroy(id);
    }
  });

  it('every action answers 202 and comes to rest in its status; the root disk survives stop/start, reboot and resize, not rebuild', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const s = await createActive('acts', { user_data: b64('#!/bin/sh\necho "ACTS-UD ran"\necho kept > /root/ud-file\n') });
    const id = s.id;
    try {
      await waitConsole(id, 'first boot ran the user data', (l) => l.includes('ACTS-UD ran'));
      const lastBoot = async (n: number) => {
        const log = await waitConsole(id, `boot ${n} ready`, (l) => boots(l).length === n && boots(l)[n - 1]!.includes('YUN-GUEST ready'));
        return boots(log)[n - 1]!;
      };
      const step = async (action: string, during: { task_state: string; status: string }, rest: string, power: string, runcState: string | undefined, extra: Record<string, unknown> = {}) => {
        const r = await act(id, action, extra);
        assert.deepEqual({ task_state: r.task_state, status: r.status }, during, `${action} while it runs`);
        const x = await waitStatus(id, rest);
        assert.equal(x.power_state, power, `${action}: power_state`);
        assert.equal(runcStatus(id), runcState, `${action}: runc state`);
        return x;
      };

      await step('stop', { task_state: 'powering-off', status: 'ACTIVE' }, 'SHUTOFF', 'shutdown', 'stopped');
      assert.match(boots(await consoleLog(id))[0]!, /YUN-GUEST shutting down/, 'a graceful stop: SIGTERM reached the init');
      await step('start', { task_state: 'powering-on', status: 'SHUTOFF' }, 'ACTIVE', 'running', 'running');
      let boot = await lastBoot(2);
      assert.match(boot, new RegExp(`YUN-GUEST user-data skipped \\(already run for instance ${id}\\)`), 'the root disk (with the semaphore) survived stop/start');
      assert.doesNotMatch(boot, /user-data started/);

      await step('pause', { task_state: 'pausing', status: 'ACTIVE' }, 'PAUSED', 'paused', 'paused');
      await step('unpause', { task_state: 'unpausing', status: 'PAUSED' }, 'ACTIVE', 'running', 'running');
      await step('suspend', { task_state: 'suspending', status: 'ACTIVE' }, 'SUSPENDED', 'suspended', 'paused');
      await step('resume', { task_state: 'resuming', status: 'SUSPENDED' }, 'ACTIVE', 'running', 'running');
      assert.equal(boots(await consoleLog(id)).length, 2, 'pause and suspend did not restart the instance');

      await step('reboot', { task_state: 'rebooting', status: 'REBOOT' }, 'ACTIVE', 'running', 'running');
      assert.match(await lastBoot(3), /user-data skipped/);
      await step('reboot_hard', { task_state: 'rebooting_hard', status: 'HARD_REBOOT' }, 'ACTIVE', 'running', 'running');
      assert.match(await lastBoot(4), /user-data skipped/);

      // Rebuild: a fresh root disk from the image, so the user data runs again.
      const rb = await step('rebuild', { task_state: 'rebuilding', status: 'REBUILD' }, 'ACTIVE', 'running', 'running', { image: 'busybox' });
      assert.equal(rb.image.name, s.image.name);
      boot = await lastBoot(5);
      assert.match(boot, /YUN-GUEST user-data started/, 'the rebuilt root disk has no semaphore');
      await waitConsole(id, 'the user data ran again', (l) => (boots(l)[4] ?? '').includes('ACTS-UD ran'));

      // Resize to m1.small: VERIFY_RESIZE with the new flavor (the container's limits follow), then confirm.
      const rz = await step('resize', { task_state: 'resize_prep', status: 'RESIZE' }, 'VERIFY_RESIZE', 'running', 'running', { flavor: 'm1.small' });
      assert.equal(rz.flavor.name, 'm1.small');
      assert.equal(rz.old_flavor?.name, 'm1.tiny');
      assert.deepEqual(rz.allowed_actions.filter((a) => a.startsWith('resize')).sort(), ['resize_confirm', 'resize_revert']);
      const spec = JSON.parse(readFileSync(join(serverDir(id), 'bundle', 'config.json'), 'utf8')) as { linux: { resources: { memory?: { limit: number } } } };
      assert.equal(spec.linux.resources.memory?.limit, 2048 * MiB, 'the container runs with m1.small\'s RAM');
      assert.match(await lastBoot(6), /user-data skipped/, 'resize keeps the root disk');
      const cf = await step('resize_confirm', { task_state: 'resize_confirming', status: 'VERIFY_RESIZE' }, 'ACTIVE', 'running', 'running');
      assert.equal(cf.flavor.name, 'm1.small');
      assert.equal(cf.old_flavor, null);

      const ev = await req<{ items: { action: string; result: string | null; finish_time: string | null }[] }>('GET', `/v1/servers/${id}/actions`);
      assert.deepEqual(ev.body.items.map((e) => e.action), ['create', 'stop', 'start', 'pause', 'unpause', 'suspend', 'resume', 'reboot', 'reboot_hard', 'rebuild', 'resize', 'resize_confirm']);
      for (const e of ev.body.items) assert.equal(e.result, 'success', JSON.stringify(e));
    } finally {
      await destroy(id);
    }
  });

  it('resize then resize_revert: back to m1.tiny, its limits and its quota usage', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const before = (await quotas('demo')).quotas;
    const s = await createActive('rev', { networks: ['none'] });
    try {
      let q = (await quotas('demo')).quotas;
      assert.equal(q.ram!.in_use - before.ram!.in_use, 512 * MiB);
      await act(s.id, 'resize', { flavor: 'm1.small' });
      const v = await waitStatus(s.id, 'VERIFY_RESIZE');
      assert.equal(v.flavor.name, 'm1.small');
      q = (await quotas('demo')).quotas;
      assert.equal(q.ram!.in_use - before.ram!.in_use, 2048 * MiB, 'the resized server counts with its new flavor');
      const r = await act(s.id, 'resize_revert');
      assert.equal(r.status, 'REVERT_RESIZE');
      const back = await waitStatus(s.id, 'ACTIVE');
      assert.equal(back.flavor.name, 'm1.tiny');
      assert.equal(back.flavor.ram_mb, 512);
      assert.equal(back.old_flavor, null);
      assert.equal(back.power_state, 'running');
      const spec = JSON.parse(readFileSync(join(serverDir(s.id), 'bundle', 'config.json'), 'utf8')) as { linux: { resources: { memory?: { limit: number } } } };
      assert.equal(spec.linux.resources.memory?.limit, 512 * MiB);
      q = (await quotas('demo')).quotas;
      assert.equal(q.ram!.in_use - before.ram!.in_use, 512 * MiB);
      assert.equal(q.cores!.in_use - before.cores!.in_use, 1);
    } finally {
      await destroy(s.id);
    }
    assert.equal((await quotas('demo')).quotas.ram!.in_use, before.ram!.in_use);
  });

  it('actions the state does not allow: 409 YUN_INVALID_STATE naming the status and the allowed ones; bad action bodies 400', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const s = await createActive('inv', { networks: ['none'] });
    try {
      const invalid = async (action: string, status: string, allowed: string[], extra: Record<string, unknown> = {}) => {
        const e = expectError(`${action} on ${status}`, await req('POST', `/v1/servers/${s.id}/actions`, { action, ...extra }), 409, 'YUN_INVALID_STATE');
        assert.equal(e.status, status, action);
        assert.deepEqual(e.allowed_statuses, allowed, action);
        assert.equal(e.action, action);
        assert.match(e.detail, /server "inv"/, action);
        assert.match(e.detail, new RegExp(`status ${status}`), action);
        for (const a of allowed) assert.ok(e.detail.includes(a), `${action}: the detail names ${a}: ${e.detail}`);
        return e;
      };
      await invalid('resume', 'ACTIVE', ['SUSPENDED']);
      await invalid('unpause', 'ACTIVE', ['PAUSED']);
      await invalid('start', 'ACTIVE', ['SHUTOFF']);
      await invalid('resize_confirm', 'ACTIVE', ['VERIFY_RESIZE']);
      await invalid('resize_revert', 'ACTIVE', ['VERIFY_RESIZE']);
      assert.equal((await get(s.id)).body.version, s.version, 'a refused action changes nothing');

      const bad = async (what: string, body: Record<string, unknown>, field: RegExp | null, status = 400, code = 'YUN_VALIDATION_FAILED') => {
        const e = expectError(what, await req('POST', `/v1/servers/${s.id}/actions`, body), status, code);
        if (field) assert.match(String(e.field ?? e.detail), field, what);
        return e;
      };
      await bad('unknown action', { action: 'explode' }, /body\/action/);
      await bad('image with stop', { action: 'stop', image: 'busybox' }, /body\/image/);
      await bad('resize without a flavor', { action: 'resize' }, /body\/flavor/);
      const same = await bad('resize to its own flavor', { action: 'resize', flavor: 'm1.tiny' }, /body\/flavor/);
      assert.match(same.detail, /already has flavor m1\.tiny/);
      const unknown = await bad('resize to an unknown flavor', { action: 'resize', flavor: 'm9.none' }, /body\/flavor/);
      assert.match(unknown.detail, /"m9\.none"/);
      const img = await bad('rebuild from an unknown image', { action: 'rebuild', image: 'nope:1' }, /body\/image/);
      assert.match(img.detail, /"nope:1"/);
      const stale = expectError('stale version', await req('POST', `/v1/servers/${s.id}/actions`, { action: 'stop', version: s.version - 1 }), 409, 'YUN_VERSION_CONFLICT');
      assert.match(stale.detail, new RegExp(`version ${s.version - 1}`));
      assert.equal((await get(s.id)).body.status, 'ACTIVE');

      // An action while another is in progress (or, if the stop was that quick, on SHUTOFF): 409 either way.
      await act(s.id, 'stop');
      const e = expectError('suspend during a stop', await req('POST', `/v1/servers/${s.id}/actions`, { action: 'suspend' }), 409, 'YUN_INVALID_STATE');
      t.diagnostic(`the action during a stop was refused because ${/in progress/.test(e.detail) ? 'the stop was in progress' : 'the server was SHUTOFF already'}`);
      if (/in progress/.test(e.detail)) {
        assert.equal(e.task_state, 'powering-off');
        assert.match(e.detail, /an action is in progress \(task_state powering-off\)/);
      } else {
        assert.equal(e.status, 'SHUTOFF');
      }
      await waitStatus(s.id, 'SHUTOFF');
      await invalid('stop', 'SHUTOFF', ['ACTIVE', 'ERROR']);
      await invalid('pause', 'SHUTOFF', ['ACTIVE']);
      await invalid('resume', 'SHUTOFF', ['SUSPENDED']);
    } finally {
      await destroy(s.id);
    }
  });

  it('create is checked whole before anything is made: flavor, image, driver, user data, key pair, networks, names', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const usage = (await quotas('demo')).quotas.instances!.in_use;
    const made: string[] = [];
    const extraNet = await req('POST', '/v1/networks', { name: 'net-extra' });
    assert.equal(extraNet.status, 201, extraNet.text);
    const bobNet = await req('POST', '/v1/networks', { name: 'net-bob' }, bob);
    assert.equal(bobNet.status, 201, bobNet.text);
    const svc = await req('POST', '/v1/services', { name: 'svc-taken', replicas: 0, task: { command: ['sleep', '300'] } });
    assert.equal(svc.status, 201, svc.text);
    try {
      const refused = async (what: string, body: Record<string, unknown>, status: number, code: string, detail: RegExp, field?: string) => {
        const name = String(body.name ?? 'val-x');
        const r = await req('POST', '/v1/servers', { name, flavor: 'm1.tiny', image: 'busybox', networks: ['net1'], ...body });
        const e = expectError(what, r, status, code);
        assert.match(e.detail, detail, what);
        if (field) assert.equal(e.field, field, what);
        if (name !== 'taken') assert.equal((await get(name)).status, 404, `${what}: no server "${name}" was made`);
        return e;
      };
      await refused('unknown flavor', { flavor: 'm9.huge' }, 400, 'YUN_VALIDATION_FAILED', /No flavor "m9\.huge" exists that project "demo" may use/);
      await refused('unknown image', { image: 'nosuch:1' }, 400, 'YUN_VALIDATION_FAILED', /Image "nosuch:1" does not exist in this project/, 'body/image');
      await refused('a container image on qemu', { driver: 'qemu' }, 400, 'YUN_VALIDATION_FAILED', /busybox.* is a container image, and the qemu driver runs VM images/, 'body/driver');
      await refused('an unknown driver', { driver: 'xen' }, 400, 'YUN_VALIDATION_FAILED', /driver/);
      await refused('user data not base64', { user_data: 'not base64!' }, 400, 'YUN_VALIDATION_FAILED', /user_data is not base64/, 'body/user_data');
      await refused('user data too big', { user_data: Buffer.alloc(66_000, 'a').toString('base64') }, 400, 'YUN_VALIDATION_FAILED', /66000 bytes once decoded; at most 65535/, 'body/user_data');
      await refused('unknown key pair', { key_name: 'kp-none' }, 400, 'YUN_VALIDATION_FAILED', /Key pair "kp-none" does not exist/, 'body/key_name');
      await refused('unknown network', { networks: ['net-none'] }, 400, 'YUN_VALIDATION_FAILED', /Network "net-none" does not exist/, 'body/networks');
      await refused('a network twice', { networks: ['net1', net1.id] }, 400, 'YUN_VALIDATION_FAILED', /given twice/, 'body/networks');
      await refused('another project\'s network', { networks: ['net-bob'] }, 400, 'YUN_VALIDATION_FAILED', /Network "net-bob" does not exist/);
      const several = await req('POST', '/v1/servers', { name: 'val-x', flavor: 'm1.tiny', image: 'busybox' });
      assert.match(expectError('several networks and none given', several, 400, 'YUN_VALIDATION_FAILED').detail, /several networks/);
      assert.equal((await get('val-x')).status, 404);
      await refused('an unknown field', { flavour: 'm1.tiny' }, 400, 'YUN_VALIDATION_FAILED', /Unknown field "flavour"/);
      await refused('a bad name', { name: '-bad' }, 400, 'YUN_VALIDATION_FAILED', /name/);
      await refused('a bad metadata key', { metadata: { 'bad key': 'x' } }, 400, 'YUN_VALIDATION_FAILED', /metadata/);
      await refused('no image', { image: undefined }, 400, 'YUN_VALIDATION_FAILED', /"image"/);
      await refused('the name of a service', { name: 'svc-taken' }, 409, 'YUN_NAME_CONFLICT', /A service named "svc-taken" already exists in project "demo"/);
      assert.equal((await get('svc-taken')).status, 404);
      const first = await create('taken', { networks: ['none'] });
      made.push(first.id);
      const e = await refused('the name of a server', { name: 'taken' }, 409, 'YUN_NAME_CONFLICT', /A server named "taken" already exists in project "demo"/);
      assert.ok(e);
      assert.equal((await req<List<Server>>('GET', '/v1/servers?name=taken')).body.items.length, 1);
      assert.equal((await quotas('demo')).quotas.instances!.in_use, usage + 1, 'only the one server was made');
      // The same name in another project is fine.
      const theirs = await create('taken', { networks: ['none'] }, bob);
      made.push(theirs.id);
      // The flavor-vs-image size check (YUN_FLAVOR_TOO_SMALL) cannot be reached with busybox: a
      // container image has no min_disk or min_ram, and the API offers no way to set them.
    } finally {
      for (const id of made) await destroy(id);
      await req('DELETE', `/v1/services/${svc.body.id}`);
      await req('DELETE', '/v1/networks/net-extra');
      await req('DELETE', '/v1/networks/net-bob', undefined, bob);
    }
  });

  it('a service cannot take the name of a server (they share the project\'s DNS): 409', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const s = await create('dns-name', { networks: ['none'] });
    let svcId: string | undefined;
    try {
      const r = await req('POST', '/v1/services', { name: 'dns-name', replicas: 0, task: { command: ['sleep', '300'] } });
      if (r.status === 201) svcId = r.body.id;
      const e = expectError('a service named like a server', r, 409, 'YUN_NAME_CONFLICT');
      assert.match(e.detail, /server named "dns-name"/);
    } finally {
      if (svcId) await req('DELETE', `/v1/services/${svcId}`);
      await destroy(s.id);
    }
  });

  it('quotas: instances, cores and ram are counted from servers; beyond one is 403 YUN_QUOTA_EXCEEDED naming quota, limit and usage', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const made: string[] = [];
    const q = (body: Record<string, unknown>) => req('POST', '/v1/servers', { flavor: 'm1.tiny', image: 'busybox', networks: ['none'], ...body }, quinn);
    try {
      const set = await setQuotas('quota', { instances: 1 });
      assert.deepEqual(set.quotas.instances, { limit: 1, in_use: 0, unit: 'servers' });
      const one = await q({ name: 'q1' });
      assert.equal(one.status, 202, one.text);
      made.push(one.body.id);
      let e = expectError('a second server', await q({ name: 'q2' }), 403, 'YUN_QUOTA_EXCEEDED');
      assert.deepEqual({ quota: e.quota, limit: e.limit, usage: e.usage, requested: e.requested }, { quota: 'instances', limit: 1, usage: 1, requested: 1 });
      assert.match(e.detail, /Quota "instances" of project "quota" would be exceeded: limit 1, in use 1, this request needs 1 more/);
      assert.equal((await get('q2', quinn)).status, 404);

      const shown = await req('GET', `/v1/projects/${projects.quota}/quotas`, undefined, quinn);
      assert.equal(shown.status, 200, shown.text);
      assert.deepEqual(shown.body.quotas.instances, { limit: 1, in_use: 1, unit: 'servers' });
      assert.equal(shown.body.quotas.cores.in_use, 1);
      assert.equal(shown.body.quotas.ram.in_use, 512 * MiB);
      expectError('a member sets quotas', await req('PATCH', `/v1/projects/${projects.quota}/quotas`, { version: shown.body.version, instances: 5 }, quinn), 403, 'YUN_FORBIDDEN');

      await setQuotas('quota', { instances: 10, cores: 1 });
      e = expectError('beyond cores', await q({ name: 'q2' }), 403, 'YUN_QUOTA_EXCEEDED');
      assert.deepEqual({ quota: e.quota, limit: e.limit, usage: e.usage }, { quota: 'cores', limit: 1, usage: 1 });
      assert.match(e.detail, /Quota "cores" of project "quota" would be exceeded: limit 1, in use 1, this request needs 1 more/);

      await setQuotas('quota', { cores: 20, ram: 768 * MiB });
      e = expectError('beyond ram', await q({ name: 'q2' }), 403, 'YUN_QUOTA_EXCEEDED');
      assert.deepEqual({ quota: e.quota, limit: e.limit, usage: e.usage, requested: e.requested }, { quota: 'ram', limit: 768 * MiB, usage: 512 * MiB, requested: 512 * MiB });
      assert.match(e.detail, /Quota "ram" of project "quota" would be exceeded: limit 768MiB, in use 512MiB, this request needs 512MiB more/);
      assert.equal((await get('q2', quinn)).status, 404);

      // A resize is held to the quota as well: m1.small needs 1536 MiB more.
      await waitStatus(one.body.id, 'ACTIVE', quinn);
      e = expectError('resize beyond ram', await req('POST', `/v1/servers/${one.body.id}/actions`, { action: 'resize', flavor: 'm1.small' }, quinn), 403, 'YUN_QUOTA_EXCEEDED');
      assert.equal(e.quota, 'ram');
      assert.equal(e.requested, 1536 * MiB);
      const still = (await get(one.body.id, quinn)).body;
      assert.deepEqual({ status: still.status, flavor: still.flavor.name }, { status: 'ACTIVE', flavor: 'm1.tiny' });

      // Deleting frees the quota.
      await destroy(one.body.id);
      made.length = 0;
      const after = (await quotas('quota')).quotas;
      assert.deepEqual([after.instances!.in_use, after.cores!.in_use, after.ram!.in_use], [0, 0, 0]);
    } finally {
      for (const id of made) await destroy(id);
      await setQuotas('quota', { instances: 10, cores: 20, ram: 50 * 1024 * MiB });
    }
  });

  it('tenancy: another project gets 404 for everything; a reader may look but not create, act or delete (403); the admin sees it with all_projects', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const s = await createActive('tenant', { networks: ['none'] });
    try {
      for (const ref of [s.id, 'tenant']) {
        expectError(`other GET ${ref}`, await get(ref, bob), 404, 'YUN_NOT_FOUND');
        expectError(`other acts on ${ref}`, await req('POST', `/v1/servers/${ref}/actions`, { action: 'stop' }, bob), 404, 'YUN_NOT_FOUND');
        expectError(`other console-log of ${ref}`, await req('GET', `/v1/servers/${ref}/console-log`, undefined, bob), 404, 'YUN_NOT_FOUND');
        expectError(`other action log of ${ref}`, await req('GET', `/v1/servers/${ref}/actions`, undefined, bob), 404, 'YUN_NOT_FOUND');
        expectError(`other DELETE ${ref}`, await req('DELETE', `/v1/servers/${ref}`, undefined, bob), 404, 'YUN_NOT_FOUND');
      }
      assert.ok(!(await req<List<Server>>('GET', '/v1/servers', undefined, bob)).body.items.some((x) => x.id === s.id));
      expectError('other lists all projects', await req('GET', '/v1/servers?all_projects=true', undefined, bob), 403, 'YUN_FORBIDDEN');
      assert.equal((await get(s.id)).body.status, 'ACTIVE', 'untouched by the other project');

      // A reader of demo: reads, but no writes.
      assert.equal((await get('tenant', rita)).status, 200);
      assert.ok((await req<List<Server>>('GET', '/v1/servers', undefined, rita)).body.items.some((x) => x.id === s.id));
      const c = expectError('a reader creates', await req('POST', '/v1/servers', { name: 'by-reader', flavor: 'm1.tiny', image: 'busybox', networks: ['none'] }, rita), 403, 'YUN_FORBIDDEN');
      assert.match(c.detail, /Role member is needed to create servers; your token holds reader/);
      assert.equal((await get('by-reader')).status, 404);
      expectError('a reader acts', await req('POST', `/v1/servers/${s.id}/actions`, { action: 'stop' }, rita), 403, 'YUN_FORBIDDEN');
      expectError('a reader deletes', await req('DELETE', `/v1/servers/${s.id}`, undefined, rita), 403, 'YUN_FORBIDDEN');
      assert.equal((await get(s.id)).body.status, 'ACTIVE');

      // The cloud administrator: not in the admin project's list, but with all_projects, and by id.
      assert.ok(!(await req<List<Server>>('GET', '/v1/servers', undefined, admin)).body.items.some((x) => x.id === s.id));
      const all = await req<List<Server>>('GET', '/v1/servers?all_projects=true', undefined, admin);
      assert.equal(all.status, 200);
      const mine = all.body.items.find((x) => x.id === s.id);
      assert.ok(mine, 'the admin sees the server with all_projects=true');
      assert.equal(mine.project_id, projects.demo);
      assert.equal((await req<List<Server>>('GET', `/v1/servers?project_id=${projects.demo}&name=tenant`, undefined, admin)).body.items.length, 1);
      const byId = await get(s.id, admin);
      assert.equal(byId.status, 200);
      assert.equal(byId.body.name, 'tenant');
    } finally {
      await destroy(s.id, alice);
    }
  });

  it('delete: 202, then 404; its container and its directory are gone; its address is free again', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const n = await req('POST', '/v1/networks', { name: 'net-del' });
    assert.equal(n.status, 201, n.text);
    const made: string[] = [];
    try {
      const a = await createActive('del-a', { networks: ['net-del'] });
      made.push(a.id);
      const addr = a.addresses['net-del']![0]!.addr;
      assert.ok(contains(parseCidr(n.body.subnet), ipToInt(addr)));
      assert.ok(runcIds().includes(a.id), 'runc lists the container');
      assert.ok(existsSync(serverDir(a.id)));
      const d = await req<Server>('DELETE', `/v1/servers/${a.id}`);
      assert.equal(d.status, 202, d.text);
      assert.equal(d.body.task_state, 'deleting');
      assert.deepEqual(d.body.allowed_actions, [], 'nothing more is allowed while it is deleted');
      expectError('an action while it is deleted', await req('POST', `/v1/servers/${a.id}/actions`, { action: 'stop' }), 409, 'YUN_INVALID_STATE').detail;
      await waitFor('del-a gone', async () => (await get(a.id)).status === 404, 30_000, 50);
      expectError('gone', await get('del-a'), 404, 'YUN_NOT_FOUND');
      await waitFor('the container gone from runc and its directory removed', async () => !runcIds().includes(a.id) && !existsSync(serverDir(a.id)), 15_000, 50);
      assert.equal(runcStatus(a.id), undefined);
      expectError('delete again', await req('DELETE', `/v1/servers/${a.id}`), 404, 'YUN_NOT_FOUND');
      made.length = 0;
      // The lowest free address of the network is the one del-a had.
      const b = await createActive('del-b', { networks: ['net-del'] });
      made.push(b.id);
      assert.equal(b.addresses['net-del']![0]!.addr, addr);
      assert.equal(runcStatus(b.id), 'running');
    } finally {
      for (const id of made) await destroy(id);
      await req('DELETE', '/v1/networks/net-del');
    }
  });

  it('no valid host: a flavor bigger than the node leaves the server in ERROR with the filters in its fault; it deletes with 204', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const f = await req<Flavor>('POST', '/v1/flavors', { name: 'x1.huge', vcpus: 1024, ram_mb: 16 * 1024 * 1024 }, admin);
    assert.equal(f.status, 201, f.text);
    const old = (await quotas('admin')).quotas;
    let id = '';
    try {
      // Within the quota (unlimited here), so that the scheduler is what refuses it.
      await setQuotas('admin', { cores: -1, ram: -1 });
      const s = await create('too-big', { flavor: 'x1.huge', networks: ['none'] }, admin);
      id = s.id;
      const e = await waitStatus(id, 'ERROR', admin);
      assert.equal(e.vm_state, 'error');
      assert.equal(e.node_id, null);
      assert.equal(e.fault?.code, 'YUN_NO_VALID_HOST');
      assert.equal(e.fault?.message, 'No valid host was found');
      assert.match(e.fault!.details, /insufficient .* on 1 node/);
      assert.match(e.fault!.details, /insufficient CPU on 1 node \(needs 1024 vCPUs/);
      const ev = (await req<{ items: { action: string; result: string | null; message: string | null }[] }>('GET', `/v1/servers/${id}/actions`, undefined, admin)).body.items;
      assert.equal(ev[0]!.result, 'error');
      assert.match(ev[0]!.message ?? '', /No valid host was found: no suitable node/);
      expectError('console of a server never placed', await req('GET', `/v1/servers/${id}/console-log`, undefined, admin), 409, 'YUN_INVALID_STATE');
      const d = await req('DELETE', `/v1/servers/${id}`, undefined, admin);
      assert.equal(d.status, 204, d.text);
      assert.equal(d.text, '');
      expectError('deleted', await get(id, admin), 404, 'YUN_NOT_FOUND');
      id = '';
    } finally {
      if (id) await destroy(id);
      await setQuotas('admin', { cores: old.cores!.limit, ram: old.ram!.limit });
      await req('DELETE', '/v1/flavors/x1.huge', undefined, admin);
    }
  });

  it('no valid host: rebuilding a server that was never placed does not leave it in REBUILD for good', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const f = await req<Flavor>('POST', '/v1/flavors', { name: 'x1.huge2', vcpus: 1024, ram_mb: 16 * 1024 * 1024 }, admin);
    assert.equal(f.status, 201, f.text);
    const old = (await quotas('admin')).quotas;
    let id = '';
    try {
      await setQuotas('admin', { cores: -1, ram: -1 });
      id = (await create('too-big2', { flavor: 'x1.huge2', networks: ['none'] }, admin)).id;
      await waitStatus(id, 'ERROR', admin);
      const r = await req('POST', `/v1/servers/${id}/actions`, { action: 'rebuild' }, admin);
      if (r.status === 409) {
        assert.equal(r.body.error?.code, 'YUN_INVALID_STATE', r.text);
      } else {
        assert.equal(r.status, 202, r.text);
        // Either it is scheduled again (and fails again: the flavor still fits nowhere) or refused;
        // it must come to rest, not stay REBUILD with nobody to carry the rebuild out.
        const s = await waitFor('the rebuild to come to rest', async () => { const x = (await get(id, admin)).body; return x.task_state === null ? x : undefined; }, 3000, 50)
          .catch(async () => assert.fail(`the server stays ${(await get(id, admin)).body.status} (task_state rebuilding) forever: it has no node, so no agent rebuilds it, and the scheduler only places servers in task_state "scheduling"`));
        assert.equal(s.status, 'ERROR');
        assert.equal(s.fault?.code, 'YUN_NO_VALID_HOST');
      }
    } finally {
      if (id) await destroy(id);
      await setQuotas('admin', { cores: old.cores!.limit, ram: old.ram!.limit });
      await req('DELETE', '/v1/flavors/x1.huge2', undefined, admin);
    }
  });

  it('a network a server is attached to cannot be removed (409 YUN_IN_USE), as for services', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const n = await req('POST', '/v1/networks', { name: 'net-used' });
    assert.equal(n.status, 201, n.text);
    let id = '';
    try {
      id = (await createActive('on-net', { networks: ['net-used'] })).id;
      const r = await req('DELETE', '/v1/networks/net-used');
      const e = expectError('removing a network a server is on', r, 409, 'YUN_IN_USE');
      assert.match(e.detail, /on-net/);
      assert.equal((await req('GET', '/v1/networks/net-used')).status, 200);
    } finally {
      if (id) await destroy(id);
      await req('DELETE', '/v1/networks/net-used');
    }
  });

  it('a project that still has servers cannot be removed (409 YUN_IN_USE), as with services', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const p = await req('POST', '/v1/projects', { name: 'doomed' }, admin);
    assert.equal(p.status, 201, p.text);
    let id = '';
    try {
      assert.equal((await req('PUT', '/v1/projects/doomed/members/alice/roles/member', undefined, admin)).status, 204);
      const tok = await cloud.api.login('alice', 'alice-secret-123', 'doomed');
      await importBusybox(tok);
      id = (await create('orphan', { networks: ['none'] }, tok)).id;
      const r = await req('DELETE', `/v1/projects/${p.body.id}`, undefined, admin);
      const e = expectError('removing a project with a server', r, 409, 'YUN_IN_USE');
      assert.match(e.detail, /server/);
      assert.equal((await req('GET', `/v1/projects/${p.body.id}`, undefined, admin)).status, 200);
    } finally {
      if (id) await destroy(id);
      await req('DELETE', `/v1/projects/${p.body.id}`, undefined, admin);
    }
  });
});
