import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStoreConformance } from './conformance.js';
import { SqliteStore } from './sqlite-store.js';

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
      assert.equal((store as unknown as { listeners: Set<unknown> }).listeners.size, 0);
    } finally {
      await store.close();
    }
  });
});
