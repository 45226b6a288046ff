import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from './conformance.js';
import Database from 'better-sqlite3';
import { SqliteStore } from './sqlite-store.js';
import { migrations } from './migrations.js';

// A fresh database file in its own temp dir per test; reopen opens the same file again.
runStoreConformance('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'yun-store-'));
  const path = join(dir, 'yun.db');
  let store = new SqliteStore(path);
  return {
    store,
    reopen: async () => {
      await store.close();
      store = new SqliteStore(path);
      return store;
    },
    close: async () => {
      try {
        await store.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
});

describe('SqliteStore', () => {
  it('a watch whose replay fails leaves no listener behind', async () => {
    const store = new SqliteStore(':memory:');
    try {
      await store.create({ kind: 'thing', project_id: 'p', name: 'a', data: {} });
      await assert.rejects(store.watch(0, () => { throw new Error('callback failure'); }), /callback failure/);
      assert.equal((store as unknown as { feed: { size: number } }).feed.size, 0);
    } finally {
      await store.close();
    }
  });

  it('migration 3 backfills the claims of existing services (VIP indexes, ingress ports, network VIPs)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yun-mig-'));
    const path = join(dir, 'yun.db');
    try {
      // A database as the previous release left it (migrations 1 and 2), with two services.
      const db = new Database(path);
      for (const m of migrations.filter((x) => x.version <= 2)) db.exec(m.sql);
      db.pragma('user_version = 2');
      const ins = db.prepare(`INSERT INTO objects (id, kind, project_id, name, version, created_at, updated_at, revision, data) VALUES (?, 'service', 'p', ?, 1, 'x', 'x', 1, ?)`);
      ins.run('s1', 'web', JSON.stringify({ vip_index: 7, network_vips: { n1: '10.0.255.2' }, spec: { endpoint: { ports: [{ protocol: 'tcp', target: 80, published: 8080, mode: 'ingress' }, { protocol: 'tcp', target: 81, published: 9090, mode: 'host' }] } } }));
      ins.run('s2', 'db', JSON.stringify({ vip_index: 8, spec: { endpoint: { ports: [] } } }));
      db.close();
      const store = new SqliteStore(path);
      try {
        assert.equal(store.schemaVersion(), migrations[migrations.length - 1]!.version);
        assert.deepEqual([...(await store.claims(''))], [['ingress-port/tcp/8080', 's1'], ['network-vip/n1/10.0.255.2', 's1'], ['service-vip/7', 's1'], ['service-vip/8', 's2']]);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
