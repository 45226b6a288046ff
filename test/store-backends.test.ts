// The store backend is chosen by `yun up --store`: the embedded SQLite by default, or memory. A whole
// cloud runs on the memory store (identity, quotas, services on the process driver) and keeps
// nothing across a restart; the default keeps everything.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCloud } from './helpers/cloud.js';
import { removeAgentDir, waitFor } from './helpers/agents.js';
import { openStore } from '../src/store/factory.js';

describe('store backends', () => {
  it('a cloud on the memory store works end to end, and starts empty again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yun-mem-'));
    try {
      let cloud = await startTestCloud({ dataDir: dir, store: 'memory' });
      let token = await cloud.api.login('admin', cloud.adminPassword, 'admin');
      assert.equal((await cloud.api.req('GET', '/healthz')).body.store, 'memory');
      assert.equal((await cloud.api.req('POST', '/v1/projects', { token, body: { name: 'on-memory' } })).status, 201);
      const svc = await cloud.api.req('POST', '/v1/services', { token, body: { name: 'mem', replicas: 1, task: { command: ['sleep', '300'] } } });
      assert.equal(svc.status, 201, svc.text);
      await waitFor('a running task', async () => (await cloud.api.req('GET', `/v1/tasks?service_id=${svc.body.id}&state=running`, { token })).body.items.length === 1, 20_000);
      assert.equal((await cloud.api.req('GET', '/v1/flavors', { token })).body.items.length, 5);
      await cloud.api.req('DELETE', `/v1/services/${svc.body.id}`, { token });
      await waitFor('its task gone', async () => (await cloud.api.req('GET', `/v1/tasks?service_id=${svc.body.id}`, { token })).body.items.length === 0, 20_000);
      await cloud.stop();
      cloud = await startTestCloud({ dataDir: dir, store: 'memory' });
      token = await cloud.api.login('admin', cloud.adminPassword, 'admin');
      assert.equal((await cloud.api.req('GET', '/v1/projects/on-memory', { token })).status, 404, 'nothing survives a restart of a memory store');
      await cloud.stop();
    } finally {
      await removeAgentDir(dir);
    }
  });

  it('an unknown backend is refused, naming the ones there are', () => {
    assert.throws(() => openStore('etcd2', tmpdir()), (e: { code?: string; detail?: string }) => e.code === 'YUN_CONFIG_INVALID' && /sqlite, memory/.test(e.detail ?? ''));
  });
});
