// Quotas end to end (issue 2, must-show 3): a project's quotas are enforced on create and on
// update; exceeding one is a 403 naming the quota, its limit and the usage, and nothing is created.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCloud, type TestCloud } from './helpers/cloud.js';

describe('quotas', { concurrency: false }, () => {
  let cloud: TestCloud;
  let admin: string;
  let alice: string;

  before(async () => {
    cloud = await startTestCloud();
    admin = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    const p = await cloud.api.req('POST', '/v1/projects', { token: admin, body: { name: 'demo', quotas: { services: 2, tasks: 3, cpu: 1, memory: 256 * 1024 * 1024 } } });
    assert.equal(p.status, 201, p.text);
    assert.equal((await cloud.api.req('POST', '/v1/users', { token: admin, body: { name: 'alice', password: 'alice-secret-1', default_project: 'demo' } })).status, 201);
    assert.equal((await cloud.api.req('PUT', '/v1/projects/demo/members/alice/roles/member', { token: admin })).status, 204);
    alice = await cloud.api.login('alice', 'alice-secret-1', 'demo');
  });

  after(async () => {
    if (!cloud) return;
    for (const s of (await cloud.api.req<{ items: { id: string }[] }>('GET', '/v1/services?all_projects=true', { token: admin })).body.items) {
      await cloud.api.req('DELETE', `/v1/services/${s.id}`, { token: admin });
    }
    await cloud.close({ stopTasks: true });
    await cloud.stop();
  });

  const svc = (name: string, replicas: number, extra: Record<string, unknown> = {}) =>
    cloud.api.req('POST', '/v1/services', { token: alice, body: { name, replicas, task: { command: ['sleep', '300'], ...extra } } });

  it('within the quota: created; the usage shows in the project\'s quotas', async () => {
    assert.equal((await svc('a', 2)).status, 201);
    const q = await cloud.api.req('GET', '/v1/projects/demo/quotas', { token: alice });
    assert.equal(q.status, 200);
    assert.deepEqual({ limit: q.body.quotas.tasks.limit, in_use: q.body.quotas.tasks.in_use }, { limit: 3, in_use: 2 });
    assert.equal(q.body.quotas.services.in_use, 1);
  });

  it('beyond the tasks quota: 403 naming the quota, the limit and the usage; nothing created', async () => {
    const r = await svc('b', 2);
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'YUN_QUOTA_EXCEEDED');
    assert.match(r.body.error.detail, /Quota "tasks" of project "demo" would be exceeded: limit 3, in use 2, this request needs 2 more/);
    assert.equal(r.body.error.quota, 'tasks');
    assert.equal(r.body.error.limit, 3);
    assert.equal(r.body.error.usage, 2);
    assert.equal((await cloud.api.req('GET', '/v1/services/b', { token: alice })).status, 404);
  });

  it('scaling beyond the quota is refused too, and the service keeps its replicas', async () => {
    const s = (await cloud.api.req('GET', '/v1/services/a', { token: alice })).body;
    const r = await cloud.api.req('PATCH', '/v1/services/a', { token: alice, body: { version: s.version, replicas: 5 } });
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'YUN_QUOTA_EXCEEDED');
    assert.equal((await cloud.api.req('GET', '/v1/services/a', { token: alice })).body.replicas, 2);
  });

  it('memory and cpu reservations count against their quotas', async () => {
    const mem = await svc('m', 1, { resources: { reservations: { memory_bytes: 512 * 1024 * 1024 } } });
    assert.equal(mem.status, 403);
    assert.match(mem.body.error.detail, /Quota "memory" of project "demo" would be exceeded: limit 256MiB, in use 0B, this request needs 512MiB more/);
    const cpu = await svc('c', 1, { resources: { reservations: { cpu: 2 } } });
    assert.equal(cpu.status, 403);
    assert.match(cpu.body.error.detail, /Quota "cpu"/);
  });

  it('the services quota counts services; an admin raises a quota with the version', async () => {
    assert.equal((await svc('d', 1)).status, 201);
    const r = await svc('e', 0);
    assert.equal(r.status, 403);
    assert.match(r.body.error.detail, /Quota "services"/);
    const q = (await cloud.api.req('GET', '/v1/projects/demo/quotas', { token: admin })).body;
    const denied = await cloud.api.req('PATCH', '/v1/projects/demo/quotas', { token: alice, body: { version: q.version, services: 10 } });
    assert.equal(denied.status, 403);
    const ok = await cloud.api.req('PATCH', '/v1/projects/demo/quotas', { token: admin, body: { version: q.version, services: 10 } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((await svc('e', 0)).status, 201);
  });
});
