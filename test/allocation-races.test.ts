// What is allocated by read-check-write holds when requests race (one manager here; the same
// claims and guards hold across managers): concurrent creates never exceed a quota, never publish
// one port twice, never give two services one VIP, never give two networks overlapping subnets.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { slowStore, startTestCloud, type TestCloud } from './helpers/cloud.js';

describe('allocation under concurrent requests', () => {
  let cloud: TestCloud;
  let admin: string;
  before(async () => {
    // Every store call yields first (as over a network): the requests really interleave.
    cloud = await startTestCloud({ wrapStore: slowStore });
    admin = await cloud.api.login('admin', cloud.adminPassword, 'admin');
  });
  after(async () => { await cloud?.stop(); });

  const svc = (name: string, extra: Record<string, unknown> = {}) => ({ name, replicas: 0, task: { command: ['sleep', '1'] }, ...extra });

  it('20 concurrent service creates in a project with a quota of 5: exactly 5 made, the rest 403', async () => {
    const p = await cloud.api.req('POST', '/v1/projects', { token: admin, body: { name: 'race', quotas: { services: 5 } } });
    assert.equal(p.status, 201, p.text);
    // A token is scoped to one project: the admin takes a role on this one and logs in to it.
    assert.equal((await cloud.api.req('PUT', `/v1/projects/${p.body.id}/members/admin/roles/member`, { token: admin })).status < 300, true);
    const token = await cloud.api.login('admin', cloud.adminPassword, 'race');
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => cloud.api.req('POST', '/v1/services', { token, body: svc(`r${i}`) })));
    const ok = rs.filter((x) => x.status === 201).length;
    assert.equal(ok, 5, rs.map((x) => `${x.status} ${x.body?.error?.code ?? ''}`).join(', '));
    assert.ok(rs.filter((x) => x.status !== 201).every((x) => x.status === 403 && x.body.error.code === 'YUN_QUOTA_EXCEEDED'));
    const q = await cloud.api.req('GET', `/v1/projects/${p.body.id}/quotas`, { token });
    assert.equal(q.body.quotas.services.in_use, 5);
  });

  it('10 services racing for one published port: one gets it; every service has its own VIP index', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => cloud.api.req('POST', '/v1/services', { token: admin, body: svc(`port${i}`, { endpoint: { ports: [{ target: 80, published: 18080 }] } }) })));
    assert.equal(rs.filter((x) => x.status === 201).length, 1, rs.map((x) => `${x.status} ${x.body?.error?.code ?? ''}`).join(', '));
    assert.ok(rs.filter((x) => x.status !== 201).every((x) => x.status === 409 && x.body.error.code === 'YUN_PORT_IN_USE'));
    const many = await Promise.all(Array.from({ length: 15 }, (_, i) => cloud.api.req('POST', '/v1/services', { token: admin, body: svc(`vip${i}`) })));
    assert.ok(many.every((x) => x.status === 201), many.map((x) => x.text).join('\n'));
    const all = (await cloud.api.req('GET', '/v1/services?limit=1000&all_projects=true', { token: admin })).body.items as { vip_index: number }[];
    assert.equal(new Set(all.map((s) => s.vip_index)).size, all.length, 'no VIP index twice');
  });

  it('10 services publishing port 80 without a port, at once, get 10 ports of 30000-32767; an update keeps its port', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => cloud.api.req('POST', '/v1/services', { token: admin, body: svc(`auto${i}`, { endpoint: { ports: [{ target: 80 }] } }) })));
    assert.ok(rs.every((x) => x.status === 201), rs.map((x) => x.text).join('\n'));
    const ports = rs.map((x) => x.body.spec.endpoint.ports[0].published as number);
    assert.equal(new Set(ports).size, 10, `a port twice: ${ports.join(', ')}`);
    assert.ok(ports.every((p) => p >= 30000 && p <= 32767), ports.join(', '));
    const one = rs[0]!.body;
    const up = await cloud.api.req('PATCH', `/v1/services/${one.id}`, { token: admin, body: { version: one.version, endpoint: { ports: [{ target: 80 }] } } });
    assert.equal(up.status, 200, up.text);
    assert.equal(up.body.spec.endpoint.ports[0].published, one.spec.endpoint.ports[0].published);
    assert.equal(up.body.spec_version, one.spec_version, 'the same ports again started a rolling update');
  });

  it('10 networks created at once get 10 different subnets and VNIs', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => cloud.api.req('POST', '/v1/networks', { token: admin, body: { name: `net${i}` } })));
    assert.ok(rs.every((x) => x.status === 201), rs.map((x) => x.text).join('\n'));
    assert.equal(new Set(rs.map((x) => x.body.subnet)).size, 10);
    assert.equal(new Set(rs.map((x) => x.body.vni)).size, 10);
  });
});
