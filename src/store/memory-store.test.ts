import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runStoreConformance } from './testing/conformance.js';
import { MemoryStore } from './memory-store.js';
import { listAll } from './paging.js';
import { SqliteStore } from './sqlite-store.js';
import type { Filter, Op, Store } from './store.js';

runStoreConformance('memory', async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
}, { persistent: false });

describe('MemoryStore', () => {
  it('takes its time from the injected clock', async () => {
    let now = Date.parse('2024-05-01T00:00:00.000Z');
    const store = new MemoryStore({ clock: { now: () => now, iso: () => new Date(now).toISOString() } });
    const a = await store.create({ kind: 'thing', project_id: 'p', name: 'a', data: {} });
    now += 1500;
    const b = await store.update({ kind: 'thing', id: a.id, data: { n: 1 } });
    assert.equal(a.created_at, '2024-05-01T00:00:00.000Z');
    assert.equal(b.updated_at, '2024-05-01T00:00:01.500Z');
    assert.equal((await store.changesSince(0))[1]!.at, '2024-05-01T00:00:01.500Z');
    await store.close();
  });

  it('a watch whose replay fails leaves no listener behind', async () => {
    const store = new MemoryStore();
    await store.create({ kind: 'thing', project_id: 'p', name: 'a', data: {} });
    await assert.rejects(store.watch(0, () => { throw new Error('callback failure'); }), /callback failure/);
    assert.equal((store as unknown as { feed: { size: number } }).feed.size, 0);
    await store.close();
  });

  it('lists 10,000 objects, filtered and sorted, page by page without quadratic cost', async () => {
    const store = new MemoryStore();
    await store.batch(Array.from({ length: 10_000 }, (_, i) => ({ op: 'create' as const, kind: 'task', project_id: `p${i % 3}`, name: `t${i}`, data: { n: i % 97, odd: i % 2 === 1 } })));
    const t0 = performance.now();
    const all = await listAll(store, 'task', { sort: { key: 'n', dir: 'desc' } }, 1000);
    const odd = await listAll(store, 'task', { filters: [{ field: 'odd', op: 'eq', value: true }] }, 500);
    const one = await store.list('task', { limit: 10_000, projects: ['p1'], withCount: true });
    const ms = performance.now() - t0;
    assert.equal(all.length, 10_000);
    assert.equal(new Set(all.map((o) => o.id)).size, 10_000);
    assert.equal(odd.length, 5000);
    assert.equal(one.count, 3333);
    // About 100 ms here; a list quadratic in the objects would take tens of seconds.
    assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
    await store.close();
  });
});

describe('MemoryStore against SqliteStore', () => {
  // The memory store emulates SQLite's json_extract semantics (query.ts): check it on random data,
  // filters and sorts, including the corners (numbers vs text, booleans, null, nested objects,
  // code points beyond the BMP, numeric text on INTEGER columns, numbers on TEXT columns).
  const pool: unknown[] = [undefined, null, true, false, 0, 1, -1, 1.5, 2, 10, 100, 1e21, 1e-7, '1', '2.0', ' 2 ', '1e0', '', 'a', 'B', 'é', '😀', '😀x', '\uffee', 'ab', '10', ' 12 ', '12abc', { z: 'a' }, [1, 'a'], [true, null, '1'], [{ z: 'a' }, [1], 2.5, 'é']];
  const value = fc.oneof({ arbitrary: fc.constantFrom(...pool), weight: 3 }, fc.integer({ min: -20, max: 20 }), fc.string({ maxLength: 3 }));
  const objects = fc.array(fc.record({ v: value, w: value, zone: value, name: fc.constantFrom('', 'a', 'b', 'B', 'é', '😀', '\uffee'), project: fc.constantFrom('p1', 'p2'), updates: fc.nat({ max: 2 }) }), { maxLength: 25 });
  const fields = ['v', 'w', 'v.0', 'v.z', 'labels.zone', 'labels', 'name', 'version', 'project_id', 'id', 'missing.path'];
  const filter = fc.oneof(
    fc.record({ field: fc.constantFrom(...fields), op: fc.constantFrom('eq' as const, 'ne' as const, 'prefix' as const, 'exists' as const), value }),
    fc.record({ field: fc.constantFrom(...fields), op: fc.constantFrom('in' as const, 'overlaps' as const), value: fc.array(value, { maxLength: 3 }) }),
  ) as fc.Arbitrary<Filter>;
  const query = fc.record({
    filters: fc.array(filter, { maxLength: 2 }),
    sort: fc.record({ key: fc.constantFrom('v', 'w', 'labels.zone', 'name', 'id', 'version', 'created_at'), dir: fc.constantFrom('asc' as const, 'desc' as const) }),
    limit: fc.integer({ min: 1, max: 30 }),
    projects: fc.option(fc.constantFrom(['p1'], ['p1', 'p2'], []).map((p): string[] => [...p]), { nil: undefined }),
  });

  const clock = { now: () => 0, iso: () => '2024-01-01T00:00:00.000Z' };
  const both = async (fn: (s: Store) => Promise<unknown>) => {
    const stores: Store[] = [new MemoryStore({ clock }), new SqliteStore(':memory:', { clock })];
    try {
      const [mem, sql] = [await fn(stores[0]!), await fn(stores[1]!)];
      assert.deepEqual(mem, sql);
    } finally {
      for (const s of stores) await s.close();
    }
  };

  it('agrees with SqliteStore on every field × operator × value of a corner-case table', () => both(async (s) => {
    // One object per value (as v, and shifted as w and labels.zone); names and versions that look like numbers.
    const n = pool.length;
    const names = ['1', '1.0', '10', '5', '', ' 12 ', 'a', 'B', 'é', '😀', '\uffee'];
    await s.batch(pool.map((v, j) => ({ op: 'create' as const, kind: 'thing', id: `id${String(j).padStart(2, '0')}`, project_id: j % 3 ? 'p1' : 'p2', name: names[j] ?? `n${j}`, data: { v, w: pool[(j * 7) % n], labels: { zone: pool[(j * 3) % n] } } })));
    await s.batch(pool.flatMap((_, j) => Array.from({ length: j % 3 }, () => ({ op: 'update' as const, kind: 'thing', id: `id${String(j).padStart(2, '0')}`, data: { v: pool[j], w: pool[(j * 7) % n], labels: { zone: pool[(j * 3) % n] } } }))));
    const out: unknown[] = [];
    for (const field of fields) {
      for (const op of ['eq', 'ne', 'prefix', 'exists'] as const) {
        for (const value of op === 'exists' ? [undefined] : pool) {
          out.push([field, op, value, (await s.list('thing', { limit: 100, filters: [{ field, op, value: value as Filter['value'] }] })).items.map((o) => o.id)]);
        }
      }
      for (let j = 0; j < n; j++) {
        const value = [pool[j], pool[(j + 1) % n]] as Filter['value'];
        out.push([field, 'in', value, (await s.list('thing', { limit: 100, filters: [{ field, op: 'in', value }] })).items.map((o) => o.id)]);
        out.push([field, 'overlaps', value, (await s.list('thing', { limit: 100, filters: [{ field, op: 'overlaps', value }] })).items.map((o) => o.id)]);
      }
      out.push([field, [...await s.countBy('thing', field, [])].sort((a, b) => (a[0] < b[0] ? -1 : 1))]);
      for (const dir of ['asc', 'desc'] as const) {
        out.push([field, dir, (await listAll(s, 'thing', { sort: { key: field, dir } }, 4)).map((o) => o.id)]);
      }
    }
    out.push(await s.usage('thing', 'p1', fields));
    return out;
  }));

  it('lists, counts, sums and groups the same as SqliteStore', async () => {
    await fc.assert(fc.asyncProperty(objects, fc.array(query, { minLength: 1, maxLength: 4 }), async (objs, queries) => {
      const stores: Store[] = [new MemoryStore({ clock }), new SqliteStore(':memory:', { clock })];
      try {
        const ops: Op[] = objs.map((o, i) => ({ op: 'create', kind: 'thing', id: `id${String(i).padStart(2, '0')}`, project_id: o.project, name: `${o.name}${i}`, data: { v: o.v, w: o.w, labels: { zone: o.zone } } }));
        const updates: Op[] = objs.flatMap((o, i) => Array.from({ length: o.updates }, () => ({ op: 'update' as const, kind: 'thing', id: `id${String(i).padStart(2, '0')}`, data: { v: o.w, w: o.v, labels: { zone: o.zone } } })));
        const read = async (s: Store) => {
          await s.batch(ops);
          if (updates.length) await s.batch(updates);
          const out: unknown[] = [];
          for (const q of queries) {
            const ids: string[] = [];
            let marker: string | undefined;
            for (let page = 0; page < 40; page++) {
              const r = await s.list('thing', { ...q, withCount: true, ...(marker !== undefined ? { marker } : {}) });
              ids.push(...r.items.map((o) => o.id));
              out.push(r.count);
              if (r.nextMarker === undefined) break;
              marker = r.nextMarker;
            }
            out.push(ids);
            const groups = await s.countBy('thing', q.sort.key === 'id' ? 'v' : q.sort.key, q.filters, q.projects);
            out.push([...groups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
          }
          out.push(await s.usage('thing', 'p1', ['v', 'w', 'labels.zone', 'labels']));
          return out;
        };
        const [mem, sql] = [await read(stores[0]!), await read(stores[1]!)];
        assert.deepEqual(mem, sql);
      } finally {
        for (const s of stores) await s.close();
      }
    }), { numRuns: 150 });
  });
});
