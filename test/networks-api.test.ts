// Overlay networks over HTTP, against an in-process cloud: create (a free /16 of the default pool or
// a subnet of one's own, checked for host bits, size and overlaps), list, show, remove (refused while
// a service uses it); services join networks by name and store the id, get a VIP in the network's
// last slice; one-off tasks join only attachable networks; another project sees none of it.
//
// No task runs here: every service has replicas 0, so nothing touches the host's network. The image
// the services name is a placeholder root file system (the image is only resolved, never run).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { startTestCloud, type Res, type TestCloud } from './helpers/cloud.js';
import { DEFAULT_POOL, contains, ipToInt, overlaps, parseCidr, slice, sliceCount } from '../src/network/ipam.js';

interface Network {
  id: string; name: string; project_id: string; driver: string; subnet: string; attachable: boolean; vni: number; slice_prefix: number;
  labels: Record<string, string>; version: number;
  nodes?: { node_id: string; slice: number; gateway: string }[];
  services?: { id: string; name: string; vip: string | null }[];
  node_capacity?: number;
}

/** A gzip tar of a tiny root file system (enough to import; it is never run). */
async function tinyRootfs(): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'yun-net-rootfs-'));
  try {
    mkdirSync(join(dir, 'bin'));
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'bin', 'sh'), '#!/bin/false\n', { mode: 0o755 });
    writeFileSync(join(dir, 'etc', 'os-release'), 'NAME=yun-test\n');
    const chunks: Buffer[] = [];
    for await (const c of tar.c({ cwd: dir, gzip: true, portable: true }, ['.']) as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('networks API', { concurrency: false }, () => {
  let cloud: TestCloud;
  let admin: string;
  let bob: string;
  const nets: Record<string, Network> = {};
  const errors: { what: string; r: Res }[] = [];

  const req = <T = any>(method: string, path: string, body?: unknown, token = admin) => cloud.api.req<T>(method, path, { token, body });
  /** An error answer: status, code, and the one error shape (code, title, detail). */
  const expectError = (what: string, r: Res, status: number, code: string) => {
    errors.push({ what, r });
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body?.error?.code, code, `${what}: ${r.text}`);
    assert.equal(typeof r.body.error.title, 'string', `${what}: error.title`);
    assert.ok(r.body.error.title.length > 0, `${what}: error.title`);
    assert.equal(typeof r.body.error.detail, 'string', `${what}: error.detail`);
    assert.ok(r.body.error.detail.length > 0, `${what}: error.detail`);
    return r.body.error as { code: string; title: string; detail: string; field?: string; [k: string]: unknown };
  };
  const createNet = async (body: Record<string, unknown>, token = admin) => {
    const r = await req<Network>('POST', '/v1/networks', body, token);
    assert.equal(r.status, 201, r.text);
    return r.body;
  };
  const image = { image: 'busybox', command: ['sleep', '300'] };
  const createSvc = (body: Record<string, unknown>, token = admin) => req('POST', '/v1/services', { replicas: 0, ...body }, token);

  before(async () => {
    cloud = await startTestCloud();
    admin = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    assert.equal((await req('POST', '/v1/projects', { name: 'other' })).status, 201);
    assert.equal((await req('POST', '/v1/users', { name: 'bob', password: 'bob-secret-123', default_project: 'other' })).status, 201);
    assert.equal((await req('PUT', '/v1/projects/other/members/bob/roles/member')).status, 204);
    bob = await cloud.api.login('bob', 'bob-secret-123', 'other');
    const img = await cloud.api.req('POST', '/v1/images/import-rootfs?name=busybox:latest&cmd=sh', { token: admin, rawBody: (await tinyRootfs()) as unknown as string, headers: { 'content-type': 'application/gzip' } });
    assert.equal(img.status, 201, img.text);
  });

  after(async () => {
    if (!cloud) return;
    for (const s of (await req<{ items: { id: string }[] }>('GET', '/v1/services?all_projects=true&limit=1000')).body?.items ?? []) {
      await req('DELETE', `/v1/services/${s.id}`);
    }
    await cloud.close({ stopTasks: true });
    await cloud.stop();
  });

  it('POST /v1/networks: an overlay network with a free /16 of 10.128.0.0/9, not attachable, its own VNI', async () => {
    const r = await req<Network>('POST', '/v1/networks', { name: 'n1' });
    assert.equal(r.status, 201, r.text);
    const n = r.body;
    nets.n1 = n;
    assert.equal(n.name, 'n1');
    assert.equal(n.driver, 'overlay');
    assert.equal(n.attachable, false);
    assert.ok(Number.isInteger(n.vni) && n.vni >= 4096, `vni ${n.vni}`);
    assert.equal(n.slice_prefix, 24);
    assert.deepEqual(n.labels, {});
    assert.ok(!('slices' in n), 'slices are internal');
    const c = parseCidr(n.subnet);
    assert.equal(c.prefix, 16, n.subnet);
    assert.ok(contains(DEFAULT_POOL, c.base), `${n.subnet} is in 10.128.0.0/9`);
    assert.equal(r.headers.get('location'), `/v1/networks/${n.id}`);
    assert.equal(r.headers.get('etag'), `"${n.version}"`);

    const n2 = await createNet({ name: 'n2', labels: { team: 'blue' } });
    nets.n2 = n2;
    assert.deepEqual(n2.labels, { team: 'blue' });
    const c2 = parseCidr(n2.subnet);
    assert.equal(c2.prefix, 16);
    assert.ok(contains(DEFAULT_POOL, c2.base));
    assert.ok(!overlaps(c, c2), `${n.subnet} and ${n2.subnet} must not overlap`);
    assert.notEqual(n2.vni, n.vni);
    assert.ok(n2.vni >= 4096);
  });

  it('an explicit subnet: /24 gets /28 slices; overlaps, host bits, bad sizes, names, fields and drivers are refused', async () => {
    const small = await createNet({ name: 'small', subnet: '10.99.0.0/24' });
    nets.small = small;
    assert.equal(small.subnet, '10.99.0.0/24');
    assert.equal(small.slice_prefix, 28);

    let e = expectError('overlapping subnet', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.99.0.0/16' }), 409, 'YUN_SUBNET_CONFLICT');
    assert.match(e.detail, /Subnet 10\.99\.0\.0\/16 overlaps 10\.99\.0\.0\/24 of network "small"/);
    assert.equal(e.field, 'body/subnet');
    e = expectError('inside another', await req('POST', '/v1/networks', { name: 'clash', subnet: nets.n1!.subnet.replace(/\.0\.0\/16$/, '.7.0/24') }), 409, 'YUN_SUBNET_CONFLICT');
    assert.match(e.detail, /of network "n1"/);

    e = expectError('host bits', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.99.0.1/24' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /host bits set/);
    assert.match(e.detail, /did you mean 10\.99\.0\.0\/24/);
    assert.equal(e.field, 'body/subnet');
    e = expectError('a /27', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.98.0.0/27' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /too small/);
    e = expectError('a /7', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.0.0.0/7' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /too large/);
    e = expectError('loopback', await req('POST', '/v1/networks', { name: 'clash', subnet: '127.0.0.0/16' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /not usable/);
    e = expectError('not CIDR', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.98.0.0' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /not a subnet in CIDR form/);
    e = expectError('prefix > 32', await req('POST', '/v1/networks', { name: 'clash', subnet: '10.98.0.0/33' }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /prefix length/);

    e = expectError('duplicate name', await req('POST', '/v1/networks', { name: 'n1', subnet: '10.97.0.0/16' }), 409, 'YUN_NAME_CONFLICT');
    assert.match(e.detail, /A network named "n1" already exists in project "admin"/);
    e = expectError('unknown field', await req('POST', '/v1/networks', { name: 'clash', mtu: 1400 }), 400, 'YUN_VALIDATION_FAILED');
    assert.match(e.detail, /Unknown field "mtu"/);
    assert.equal(e.field, 'body/mtu');
    expectError('driver bridge', await req('POST', '/v1/networks', { name: 'clash', driver: 'bridge' }), 400, 'YUN_VALIDATION_FAILED');
    expectError('no name', await req('POST', '/v1/networks', { subnet: '10.97.0.0/16' }), 400, 'YUN_VALIDATION_FAILED');
    expectError('refused network left nothing', await req('GET', '/v1/networks/clash'), 404, 'YUN_NOT_FOUND');
  });

  it('another project: its own names, its own VNI, and overlaps name no network of ours', async () => {
    const e = expectError('overlap across projects', await req('POST', '/v1/networks', { name: 'mine', subnet: '10.99.0.0/16' }, bob), 409, 'YUN_SUBNET_CONFLICT');
    assert.match(e.detail, /of a network of another project/);
    assert.doesNotMatch(e.detail, /small/);
    const bobs = await createNet({ name: 'n1' }, bob);
    nets.bobs = bobs;
    for (const n of [nets.n1!, nets.n2!, nets.small!]) {
      assert.ok(!overlaps(parseCidr(bobs.subnet), parseCidr(n.subnet)), `${bobs.subnet} vs ${n.subnet}`);
      assert.notEqual(bobs.vni, n.vni);
    }
    assert.notEqual(bobs.id, nets.n1!.id);
  });

  it('GET /v1/networks lists the project\'s networks: items, next, count when asked, filters', async () => {
    const r = await req<{ items: Network[]; next: string | null; count?: number; revision: number }>('GET', '/v1/networks');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.items.map((n) => n.name), ['n1', 'n2', 'small'], 'sorted by name, only this project');
    assert.equal(r.body.next, null);
    assert.equal(r.body.count, undefined, 'count only when asked');
    assert.equal(typeof r.body.revision, 'number');
    const n1 = r.body.items[0]!;
    assert.equal(n1.id, nets.n1!.id);
    assert.equal(n1.subnet, nets.n1!.subnet);
    assert.equal(n1.slice_prefix, 24);
    assert.ok(!('slices' in n1));

    const counted = await req<{ items: Network[]; count: number }>('GET', '/v1/networks?with_count=true');
    assert.equal(counted.body.count, 3);

    const page1 = await req<{ items: Network[]; next: string | null }>('GET', '/v1/networks?limit=2');
    assert.equal(page1.status, 200, page1.text);
    assert.deepEqual(page1.body.items.map((n) => n.name), ['n1', 'n2']);
    assert.ok(page1.body.next, 'a next link');
    const page2 = await req<{ items: Network[]; next: string | null }>('GET', page1.body.next!);
    assert.deepEqual(page2.body.items.map((n) => n.name), ['small']);
    assert.equal(page2.body.next, null);

    assert.deepEqual((await req<{ items: Network[] }>('GET', '/v1/networks?name=n2')).body.items.map((n) => n.id), [nets.n2!.id]);
    assert.deepEqual((await req<{ items: Network[] }>('GET', '/v1/networks?label=team=blue')).body.items.map((n) => n.name), ['n2']);
    assert.deepEqual((await req<{ items: Network[] }>('GET', '/v1/networks?sort=name:desc')).body.items.map((n) => n.name), ['small', 'n2', 'n1']);
    expectError('bad sort', await req('GET', '/v1/networks?sort=vni'), 400, 'YUN_BAD_SORT');

    const bobList = await req<{ items: Network[] }>('GET', '/v1/networks', undefined, bob);
    assert.deepEqual(bobList.body.items.map((n) => n.id), [nets.bobs!.id], 'bob sees only his project\'s network');
    const all = await req<{ items: Network[] }>('GET', '/v1/networks?all_projects=true');
    assert.equal(all.body.items.length, 4, 'a cloud admin may list every project\'s');
    expectError('all_projects for a member', await req('GET', '/v1/networks?all_projects=true', undefined, bob), 403, 'YUN_FORBIDDEN');
  });

  it('GET /v1/networks/:id by name and by id; another project\'s user gets 404', async () => {
    const byName = await req<Network>('GET', '/v1/networks/n1');
    assert.equal(byName.status, 200, byName.text);
    assert.equal(byName.body.id, nets.n1!.id);
    assert.equal(byName.headers.get('etag'), `"${byName.body.version}"`);
    assert.deepEqual(byName.body.nodes, [], 'no node has a slice before a task runs');
    assert.deepEqual(byName.body.services, []);
    assert.equal(byName.body.node_capacity, 255);
    const byId = await req<Network>('GET', `/v1/networks/${nets.n1!.id}`);
    assert.equal(byId.status, 200);
    assert.deepEqual({ ...byId.body }, { ...byName.body });
    assert.equal((await req<Network>('GET', '/v1/networks/small')).body.node_capacity, 15);

    expectError('other project by id', await req('GET', `/v1/networks/${nets.n2!.id}`, undefined, bob), 404, 'YUN_NOT_FOUND');
    expectError('other project by name', await req('GET', '/v1/networks/small', undefined, bob), 404, 'YUN_NOT_FOUND');
    assert.equal((await req<Network>('GET', '/v1/networks/n1', undefined, bob)).body.id, nets.bobs!.id, 'bob\'s "n1" is his own');
    expectError('other project delete', await req('DELETE', `/v1/networks/${nets.n2!.id}`, undefined, bob), 404, 'YUN_NOT_FOUND');
    assert.equal((await req('GET', `/v1/networks/${nets.n2!.id}`)).status, 200, 'still there');
    expectError('unknown network', await req('GET', '/v1/networks/nope'), 404, 'YUN_NOT_FOUND');
  });

  it('services need an image (the oci driver) to join a network, and only networks of their project', async () => {
    let e = expectError('process driver on a network', await createSvc({ name: 'proc', networks: ['n1'], task: { command: ['sleep', '300'] } }), 400, 'YUN_VALIDATION_FAILED');
    assert.equal(e.field, 'body/networks');
    assert.match(e.detail, /Process tasks .* cannot join overlay networks/);
    e = expectError('docker driver on a network', await createSvc({ name: 'dock', networks: ['n1'], task: { ...image, driver: 'docker' } }), 400, 'YUN_VALIDATION_FAILED');
    assert.equal(e.field, 'body/networks');
    e = expectError('host network mode on a network', await createSvc({ name: 'hostnet', networks: ['n1'], task: { ...image, network_mode: 'host' } }), 400, 'YUN_VALIDATION_FAILED');
    assert.equal(e.field, 'body/networks');
    e = expectError('unknown network', await createSvc({ name: 'lost', networks: ['nowhere'], task: image }), 400, 'YUN_VALIDATION_FAILED');
    assert.equal(e.field, 'body/networks');
    assert.match(e.detail, /Network "nowhere" does not exist in this project/);
    e = expectError('another project\'s network by id', await createSvc({ name: 'sneaky', networks: [nets.n2!.id], task: image }, bob), 400, 'YUN_VALIDATION_FAILED');
    assert.equal(e.field, 'body/networks');
    for (const name of ['proc', 'dock', 'hostnet', 'lost']) assert.equal((await req('GET', `/v1/services/${name}`)).status, 404, `${name} was not created`);
  });

  it('a vip service on n1 gets a VIP in n1\'s last slice; its spec holds the network id; dnsrr gets none', async () => {
    const r = await createSvc({ name: 'web', networks: ['n1'], task: image });
    assert.equal(r.status, 201, r.text);
    const web = r.body;
    assert.deepEqual(web.spec.networks, [nets.n1!.id], 'the name became the id');
    assert.equal(web.spec.task.driver, 'oci', 'an image service on a network runs on the oci driver');
    assert.equal(web.spec.endpoint.mode, 'vip');
    assert.deepEqual((await req('GET', '/v1/services/web')).body.spec.networks, [nets.n1!.id]);

    const api = await createSvc({ name: 'api', networks: [nets.n1!.id], task: image });
    assert.equal(api.status, 201, api.text);
    const rr = await createSvc({ name: 'rr', networks: ['n1'], endpoint: { mode: 'dnsrr' }, task: image });
    assert.equal(rr.status, 201, rr.text);

    const n1 = (await req<Network>('GET', '/v1/networks/n1')).body;
    const byName = new Map(n1.services!.map((s) => [s.name, s]));
    assert.deepEqual([...byName.keys()].sort(), ['api', 'rr', 'web']);
    assert.equal(byName.get('web')!.id, web.id);
    const c = parseCidr(n1.subnet);
    const vipSlice = slice(c, sliceCount(c) - 1);
    const vips = [byName.get('web')!.vip, byName.get('api')!.vip];
    for (const v of vips) {
      assert.ok(v, 'a vip service has a VIP');
      assert.ok(contains(vipSlice, ipToInt(v)), `${v} is in the VIP slice of ${n1.subnet}`);
    }
    assert.notEqual(vips[0], vips[1], 'two services never share a VIP');
    assert.equal(byName.get('rr')!.vip, null, 'dnsrr has no VIP');

    // Bob's view of his own "n1" shows none of this.
    assert.deepEqual((await req<Network>('GET', '/v1/networks/n1', undefined, bob)).body.services, []);
  });

  it('joining another network by update keeps the first VIP and adds one on the new network', async () => {
    const before = (await req<Network>('GET', '/v1/networks/n1')).body.services!.find((s) => s.name === 'web')!.vip;
    const web = (await req('GET', '/v1/services/web')).body;
    const r = await req('PATCH', '/v1/services/web', { version: web.version, networks: ['n1', 'small'] });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.spec.networks, [nets.n1!.id, nets.small!.id]);
    assert.equal((await req<Network>('GET', '/v1/networks/n1')).body.services!.find((s) => s.name === 'web')!.vip, before);
    const small = (await req<Network>('GET', '/v1/networks/small')).body;
    const vip = small.services!.find((s) => s.name === 'web')!.vip;
    assert.equal(vip, '10.99.0.241', 'the first VIP of 10.99.0.0/24 (last slice 10.99.0.240/28)');
  });

  it('DELETE /v1/networks/n1 is refused while a service uses it, then works', async () => {
    let e = expectError('network in use', await req('DELETE', '/v1/networks/n1'), 409, 'YUN_IN_USE');
    assert.match(e.detail, /Network "n1" is in use by services/);
    assert.match(e.detail, /"web"/);
    assert.match(e.detail, /"api"/);
    assert.equal((await req('GET', '/v1/networks/n1')).status, 200);
    for (const s of ['api', 'rr']) assert.equal((await req('DELETE', `/v1/services/${s}`)).status, 204);
    e = expectError('network in use by one', await req('DELETE', '/v1/networks/n1'), 409, 'YUN_IN_USE');
    assert.match(e.detail, /in use by service "web"/);
    e = expectError('small in use', await req('DELETE', `/v1/networks/${nets.small!.id}`), 409, 'YUN_IN_USE');
    assert.match(e.detail, /"web"/);
    assert.equal((await req('DELETE', '/v1/services/web')).status, 204);

    const del = await req('DELETE', '/v1/networks/n1');
    assert.equal(del.status, 204, del.text);
    expectError('deleted network', await req('GET', '/v1/networks/n1'), 404, 'YUN_NOT_FOUND');
    expectError('deleted network by id', await req('GET', `/v1/networks/${nets.n1!.id}`), 404, 'YUN_NOT_FOUND');
    expectError('delete twice', await req('DELETE', `/v1/networks/${nets.n1!.id}`), 404, 'YUN_NOT_FOUND');
    assert.equal((await req('DELETE', '/v1/networks/small')).status, 204);
    // A freed subnet may be taken again.
    const again = await createNet({ name: 'again', subnet: '10.99.0.0/16' });
    assert.equal(again.slice_prefix, 24);
  });

  it('one-off services join only attachable networks', async () => {
    const oneoff = { 'yunstack.oneoff': 'true' };
    const e = expectError('one-off on a non-attachable network', await createSvc({ name: 'dbg', labels: oneoff, networks: ['n2'], task: image }), 409, 'YUN_NETWORK_NOT_ATTACHABLE');
    assert.match(e.detail, /Network "n2" is not attachable/);
    assert.equal(e.field, 'body/networks');
    assert.equal((await req('GET', '/v1/services/dbg')).status, 404);

    const open = await createNet({ name: 'debugnet', attachable: true });
    assert.equal(open.attachable, true);
    const r = await createSvc({ name: 'dbg', labels: oneoff, networks: ['debugnet'], task: image });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body.spec.networks, [open.id]);
    const svc = await createSvc({ name: 'plain', networks: ['debugnet'], task: image });
    assert.equal(svc.status, 201, 'services join attachable networks too');
    assert.deepEqual((await req<Network>('GET', '/v1/networks/debugnet')).body.services!.map((s) => s.name).sort(), ['dbg', 'plain']);
  });

  it('every error answer had error.code, error.title and error.detail', () => {
    assert.ok(errors.length >= 20, `${errors.length} error answers checked`);
    for (const { what, r } of errors) {
      for (const k of ['code', 'title', 'detail'] as const) assert.equal(typeof r.body.error[k], 'string', `${what}: error.${k}`);
    }
  });
});
