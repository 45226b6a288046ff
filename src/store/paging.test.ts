import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from './sqlite-store.js';
import { listAll } from './paging.js';

describe('listAll', () => {
  it('returns every object page by page, with filters and a sort, never cut at a limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yun-paging-'));
    const store = new SqliteStore(join(dir, 'yun.db'));
    try {
      const ops = Array.from({ length: 2345 }, (_, i) => ({ op: 'create' as const, kind: 'thing', project_id: 'p', name: `t${i}`, data: { n: i % 7, odd: i % 2 === 1 } }));
      await store.batch(ops);
      const all = await listAll(store, 'thing', {}, 500);
      assert.equal(all.length, 2345);
      assert.equal(new Set(all.map((o) => o.id)).size, 2345, 'no object twice');
      const odd = await listAll(store, 'thing', { filters: [{ field: 'odd', op: 'eq', value: true }], sort: { key: 'n', dir: 'desc' } }, 100);
      assert.equal(odd.length, 1172);
      assert.ok(odd.every((o, i) => i === 0 || (odd[i - 1]!.data.n as number) >= (o.data.n as number)), 'in sort order across pages');
      assert.deepEqual(await listAll(store, 'none'), []);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
