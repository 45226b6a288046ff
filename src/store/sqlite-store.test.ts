import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from './testing/conformance.js';
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
  it('refuses, untouched, a database a newer version wrote', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yun-store-'));
    try {
      const path = join(dir, 'yun.db');
      const latest = migrations[migrations.length - 1]!.version;
      const db = new Database(path);
      db.pragma(`user_version = ${latest + 1}`);
      db.close();
      assert.throws(() => new SqliteStore(path), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'YUN_DATA_TOO_NEW');
        assert.match(e.message, new RegExp(`schema ${latest + 1}; this one, .*, knows schema ${latest} at most`));
        return true;
      });
      const after = new Database(path, { readonly: true });
      try {
        assert.equal(after.pragma('user_version', { simple: true }), latest + 1);
        assert.equal((after.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n, 0, 'no migration ran');
      } finally {
        after.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

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

  it('migration 4 makes existing images active, private and seen by their own project', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yun-mig-'));
    const path = join(dir, 'yun.db');
    try {
      const db = new Database(path);
      for (const m of migrations.filter((x) => x.version <= 3)) db.exec(m.sql);
      db.pragma('user_version = 3');
      const ins = db.prepare(`INSERT INTO objects (id, kind, project_id, name, version, created_at, updated_at, revision, data) VALUES (?, ?, ?, ?, 1, 'x', 'x', 1, ?)`);
      ins.run('i1', 'image', 'p1', 'busybox:latest', JSON.stringify({ digest: 'sha256:aa', kind: 'container' }));
      ins.run('i2', 'image', 'p2', 'vm:1', JSON.stringify({ digest: 'sha256:bb', kind: 'vm', status: 'active', visibility: 'public', audience: ['p2', '*'], members: [], member_index: [] }));
      ins.run('s1', 'service', 'p1', 'web', JSON.stringify({ spec: {} }));
      db.close();
      const store = new SqliteStore(path);
      try {
        const i1 = (await store.get('image', 'i1'))!.data;
        assert.deepEqual(i1, { digest: 'sha256:aa', kind: 'container', status: 'active', visibility: 'private', members: [], audience: ['p1'], member_index: [] });
        assert.deepEqual((await store.get('image', 'i2'))!.data.audience, ['p2', '*'], 'what was already there stays');
        assert.deepEqual((await store.get('service', 's1'))!.data, { spec: {} }, 'other kinds are untouched');
        const seen = await store.list('image', { limit: 10, filters: [{ field: 'audience', op: 'overlaps', value: ['p1', '*'] }] });
        assert.deepEqual(seen.items.map((o) => o.id), ['i1', 'i2']);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
