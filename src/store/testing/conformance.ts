/**
 * The store conformance suite: the contract of `Store` (store.ts) as SqliteStore implements it,
 * which every backend must pass. A backend's test file calls
 *
 *     runStoreConformance('my', async () => ({ store, close, reopen }))
 *
 * and this registers one `describe` of node:test tests. `make` is called once per test (and once per
 * run of the property test) and must return a new, empty store:
 *
 * - `close()` closes the store (the current one, after a reopen) and removes whatever it wrote
 *   (temp dirs, a key prefix);
 * - `reopen()`, for backends that persist, closes the store and opens the same data again (SQLite:
 *   the same file). A backend that keeps nothing across a restart (memory) says `persistent: false`,
 *   and the persistence part is not registered. A backend that needs a service to test against
 *   (etcd) skips in its own test file with requireOrSkip when the service is missing.
 *
 * Tests wait for watch deliveries (`eventually`) rather than assuming they arrive before a write
 * returns, so backends that deliver asynchronously pass too.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { YunError } from '../../errors/errors.js';
import { listAll } from '../paging.js';
import type { AuditEntry, Change, ListQuery, Op, Store, StoredObject, TokenRecord } from '../store.js';

export interface StoreUnderTest {
  store: Store;
  close(): Promise<void>;
  reopen?(): Promise<Store>;
}

/** How many changes the feed keeps at least (SqliteStore's CHANGE_RETENTION). */
export const MIN_CHANGE_RETENTION = 50_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `check` until it is true or `ms` pass (then fail, saying what was awaited). */
async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** Wait for `p` to reject with a YunError of `code`, and return it. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<YunError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${code}, but the call succeeded`);
  assert.ok(err instanceof YunError, `expected a YunError ${code}, got ${String((err as Error)?.stack ?? err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const sorted = <T extends { id: string }>(xs: Iterable<T>): T[] => [...xs].sort(byId);
const names = (xs: StoredObject[]) => xs.map((o) => o.name).sort();
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const isIso = (s: string) => typeof s === 'string' && new Date(s).toISOString() === s;

/** Every page of a list, checking the paging contract on the way. */
async function pages(s: Store, kind: string, q: Omit<ListQuery, 'marker'>): Promise<StoredObject[][]> {
  const out: StoredObject[][] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await s.list(kind, { ...q, ...(marker !== undefined ? { marker } : {}) });
    assert.ok(page.items.length <= q.limit, 'a page is never longer than the limit');
    out.push(page.items);
    if (page.nextMarker === undefined) return out;
    assert.equal(page.items.length, q.limit, 'only a full page has a next one');
    assert.equal(page.nextMarker, page.items[page.items.length - 1]!.id, 'nextMarker is the id of the last item');
    marker = page.nextMarker;
    assert.ok(out.length < 10_000, 'paging ends');
  }
}

const creates = (n: number, f: (i: number) => Partial<Extract<Op, { op: 'create' }>> = () => ({})): Op[] =>
  Array.from({ length: n }, (_, i) => ({ op: 'create' as const, kind: 'thing', project_id: 'p1', name: `t${i}`, data: { i }, ...f(i) }));

/** `persistent`: the backend keeps its data across a reopen (then `make` gives `reopen`); the persistence part runs only then. */
export function runStoreConformance(name: string, make: () => Promise<StoreUnderTest>, opts: { persistent: boolean } = { persistent: true }): void {
  const withStore = async (fn: (s: Store, h: StoreUnderTest) => Promise<void>): Promise<void> => {
    const h = await make();
    try {
      await fn(h.store, h);
    } finally {
      await h.close();
    }
  };

  /** Run `fn` (which must fail) and check that it changed nothing: objects, revision, feed, watchers. */
  const changesNothing = async (s: Store, kinds: string[], fn: () => Promise<void>): Promise<void> => {
    const rev = await s.revision();
    const snapshot = async () => Promise.all(kinds.map((k) => listAll(s, k)));
    const before = await snapshot();
    const seen: Change[] = [];
    const unwatch = await s.watch(rev, (cs) => { seen.push(...cs); });
    try {
      await fn();
      await sleep(5);
    } finally {
      unwatch();
    }
    assert.equal(await s.revision(), rev, 'the revision did not move');
    assert.deepEqual(await snapshot(), before, 'no object changed');
    assert.deepEqual(await s.changesSince(rev), [], 'nothing on the change feed');
    assert.deepEqual(seen, [], 'no watcher was told anything');
  };

  describe(`store conformance: ${name}`, () => {
    // ---- objects -------------------------------------------------------------------------------

    it('a new store is empty at revision 0', () => withStore(async (s) => {
      assert.equal(typeof s.backend, 'string');
      assert.equal(await s.revision(), 0);
      assert.deepEqual((await s.list('thing', { limit: 10, withCount: true })).items, []);
      assert.equal((await s.list('thing', { limit: 10, withCount: true })).count, 0);
      assert.deepEqual(await s.changesSince(0), []);
    }));

    it('create generates an id or keeps the given one; get and getByName return what create returned', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: { x: 1, labels: { zone: 'z1' }, list: [1, 'two', null], flag: false } });
      assert.equal(typeof a.id, 'string');
      assert.ok(a.id.length >= 8, `a generated id: ${a.id}`);
      assert.ok(isIso(a.created_at), `created_at is an ISO time: ${a.created_at}`);
      assert.deepEqual(a, {
        kind: 'thing', id: a.id, name: 'a', project_id: 'p1', version: 1, created_at: a.created_at, updated_at: a.created_at,
        revision: 1, data: { x: 1, labels: { zone: 'z1' }, list: [1, 'two', null], flag: false },
      });
      assert.deepEqual(await s.get('thing', a.id), a);
      assert.deepEqual(await s.getByName('thing', 'p1', 'a'), a);
      const b = await s.create({ kind: 'thing', id: 'my-given-id', project_id: '', name: 'b', data: {} });
      assert.equal(b.id, 'my-given-id');
      assert.equal(b.project_id, '');
      assert.deepEqual(await s.get('thing', 'my-given-id'), b);
      assert.deepEqual(await s.getByName('thing', '', 'b'), b);
      const c = await s.create({ kind: 'thing', project_id: 'p1', name: 'c', data: {} });
      assert.notEqual(c.id, a.id, 'generated ids differ');
      assert.equal(await s.get('other', a.id), undefined, 'get is by kind and id');
      assert.equal(await s.get('thing', 'no-such-id'), undefined);
      assert.equal(await s.getByName('thing', 'p2', 'a'), undefined, 'getByName is by kind, project and name');
      assert.equal(await s.getByName('other', 'p1', 'a'), undefined);
    }));

    it('update: the version grows by 1, created_at is kept, updated_at moves, data is replaced, a rename is seen by getByName', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: { x: 1, keep: true } });
      await sleep(3);
      const b = await s.update({ kind: 'thing', id: a.id, version: 1, data: { y: 2 } });
      assert.equal(b.version, 2);
      assert.equal(b.created_at, a.created_at);
      assert.ok(b.updated_at > a.updated_at, `updated_at moves: ${a.updated_at} → ${b.updated_at}`);
      assert.deepEqual(b.data, { y: 2 }, 'update replaces data (no merge)');
      assert.equal(b.name, 'a');
      assert.equal(b.project_id, 'p1');
      assert.equal(b.kind, 'thing');
      assert.equal(b.revision, a.revision + 1);
      assert.deepEqual(await s.get('thing', a.id), b);
      const c = await s.update({ kind: 'thing', id: a.id, name: 'renamed', data: { y: 3 } });
      assert.equal(c.version, 3, 'an update without a version applies and still counts');
      assert.equal(c.name, 'renamed');
      assert.equal(await s.getByName('thing', 'p1', 'a'), undefined);
      assert.deepEqual(await s.getByName('thing', 'p1', 'renamed'), c);
      assert.deepEqual(await s.get('thing', a.id), c);
    }));

    it('the revision is global (every kind and project), one per batch; an object carries the revision of its last write', () => withStore(async (s) => {
      const r0 = await s.revision();
      const a = await s.create({ kind: 'a', project_id: 'p1', name: 'x', data: {} });
      const b = await s.create({ kind: 'b', project_id: 'p2', name: 'x', data: {} });
      assert.deepEqual([a.revision, b.revision], [r0 + 1, r0 + 2]);
      const out = await s.batch([
        { op: 'create', kind: 'a', project_id: '', name: 'y', data: {} },
        { op: 'update', kind: 'a', id: a.id, data: { n: 1 } },
        { op: 'create', kind: 'c', project_id: 'p1', name: 'z', data: {} },
      ]);
      assert.deepEqual(out.map((o) => o.revision), [r0 + 3, r0 + 3, r0 + 3], 'a batch is one revision');
      assert.equal(await s.revision(), r0 + 3);
      const d = await s.delete({ kind: 'b', id: b.id });
      assert.equal(d.revision, r0 + 4);
      assert.equal(await s.revision(), r0 + 4);
      assert.equal((await s.get('a', a.id))!.revision, r0 + 3);
      assert.equal((await s.list('a', { limit: 10 })).revision, r0 + 4, 'a list says the revision it was read at');
      await s.batch([{ op: 'claim', key: 'k/1', owner: a.id }]);
      assert.equal(await s.revision(), r0 + 4, 'a batch of claims alone takes no revision');
    }));

    it('delete returns the object as it was, at the delete\'s revision; the object and its name are gone', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: { n: 1 } });
      const a2 = await s.update({ kind: 'thing', id: a.id, data: { n: 2 } });
      const d = await s.delete({ kind: 'thing', id: a.id, version: 2 });
      assert.deepEqual(d, { ...a2, revision: a2.revision + 1 });
      assert.equal(await s.get('thing', a.id), undefined);
      assert.equal(await s.getByName('thing', 'p1', 'a'), undefined);
      assert.deepEqual((await s.list('thing', { limit: 10 })).items, []);
      await rejectsWith(s.delete({ kind: 'thing', id: a.id }), 'YUN_NOT_FOUND');
      await rejectsWith(s.update({ kind: 'thing', id: a.id, data: {} }), 'YUN_NOT_FOUND');
      const again = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      assert.equal(again.version, 1, 'the name is free again');
    }));

    it('what a write returns is a copy, equal to what get and the change feed return (data is kept as JSON)', () => withStore(async (s) => {
      const r0 = await s.revision();
      const input = { n: 1, nested: { list: [1, 2] }, dropped: undefined, also: 'x' };
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: input });
      input.nested.list.push(3);
      input.also = 'changed';
      assert.deepEqual(a.data, { n: 1, nested: { list: [1, 2] }, also: 'x' }, 'the result is not the caller\'s object, and undefined members are dropped as JSON drops them');
      assert.deepEqual(await s.get('thing', a.id), a);
      a.data.n = 99;
      (a as { name: string }).name = 'mutated';
      const got = await s.get('thing', a.id);
      assert.equal(got!.data.n, 1, 'changing a result does not change the store');
      assert.equal(got!.name, 'a');
      got!.data.n = 100;
      assert.equal((await s.get('thing', a.id))!.data.n, 1, 'nor does changing what get returned');
      const u = await s.update({ kind: 'thing', id: a.id, data: { m: undefined, k: [{ deep: true }] } });
      assert.deepEqual(u, await s.get('thing', a.id));
      assert.deepEqual(u.data, { k: [{ deep: true }] });
      const feed = await s.changesSince(r0);
      assert.deepEqual(feed.map((c) => c.object), [{ ...got!, data: { n: 1, nested: { list: [1, 2] }, also: 'x' } }, u]);
      const listed = (await s.list('thing', { limit: 10 })).items;
      assert.deepEqual(listed, [u]);
    }));

    it('ids are unique across kinds: a create with an id in use fails with YUN_NAME_CONFLICT', () => withStore(async (s) => {
      await s.create({ kind: 'a', id: 'same-id', project_id: 'p1', name: 'x', data: {} });
      await changesNothing(s, ['a', 'b'], async () => {
        await rejectsWith(s.create({ kind: 'b', id: 'same-id', project_id: 'p1', name: 'y', data: {} }), 'YUN_NAME_CONFLICT');
        await rejectsWith(s.create({ kind: 'a', id: 'same-id', project_id: 'p2', name: 'z', data: {} }), 'YUN_NAME_CONFLICT');
      });
      assert.equal(await s.get('b', 'same-id'), undefined);
    }));

    it('update and delete go by kind and id: another kind\'s id is YUN_NOT_FOUND', () => withStore(async (s) => {
      const a = await s.create({ kind: 'a', project_id: 'p1', name: 'x', data: {} });
      await changesNothing(s, ['a', 'b'], async () => {
        const e = await rejectsWith(s.update({ kind: 'b', id: a.id, data: {} }), 'YUN_NOT_FOUND');
        assert.ok(e.message.startsWith(`No b "${a.id}" exists`), e.message);
        assert.equal(e.extra.kind, 'b');
        await rejectsWith(s.delete({ kind: 'b', id: a.id }), 'YUN_NOT_FOUND');
      });
    }));

    // ---- batches -------------------------------------------------------------------------------

    it('a batch applies its operations in order, each seeing the ones before', () => withStore(async (s) => {
      const r0 = await s.revision();
      const out = await s.batch([
        { op: 'create', kind: 'thing', id: 'x', project_id: 'p1', name: 'x', data: { n: 1 } },
        { op: 'update', kind: 'thing', id: 'x', version: 1, data: { n: 2 } },
        { op: 'create', kind: 'thing', id: 'y', project_id: 'p1', name: 'y', data: {} },
        { op: 'delete', kind: 'thing', id: 'y', version: 1 },
        { op: 'create', kind: 'thing', id: 'z', project_id: 'p1', name: 'y', data: {} },
      ]);
      assert.deepEqual(out.map((o) => [o.id, o.version, o.revision]), [['x', 1, r0 + 1], ['x', 2, r0 + 1], ['y', 1, r0 + 1], ['y', 1, r0 + 1], ['z', 1, r0 + 1]]);
      assert.deepEqual(out[1]!.data, { n: 2 });
      assert.deepEqual((await s.changesSince(r0)).map((c) => [c.type, c.id, c.revision]), [['create', 'x', r0 + 1], ['update', 'x', r0 + 1], ['create', 'y', r0 + 1], ['delete', 'y', r0 + 1], ['create', 'z', r0 + 1]]);
      assert.equal((await s.changesSince(r0, 2)).length, 5, 'a limit never cuts a batch in two');
      assert.deepEqual(names((await s.list('thing', { limit: 10 })).items), ['x', 'y']);
      assert.deepEqual(await s.get('thing', 'x'), out[1]);
      assert.deepEqual(await s.batch([]), [], 'an empty batch does nothing');
      assert.equal(await s.revision(), r0 + 1);
    }));

    it('a batch with a stale version changes nothing and fails with YUN_VERSION_CONFLICT, saying the current version', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      await s.update({ kind: 'thing', id: a.id, version: 1, data: { n: 1 } });
      await changesNothing(s, ['thing', 'other'], async () => {
        const e = await rejectsWith(s.batch([
          { op: 'create', kind: 'other', project_id: 'p1', name: 'new', data: {} },
          { op: 'update', kind: 'thing', id: a.id, version: 1, data: { n: 2 } },
        ]), 'YUN_VERSION_CONFLICT');
        assert.equal(e.extra.current_version, 2);
        assert.equal(e.extra.kind, 'thing');
        assert.ok(e.message.startsWith('The thing "a" is at version 2, but the request was based on version 1'), e.message);
        const d = await rejectsWith(s.batch([
          { op: 'update', kind: 'thing', id: a.id, version: 2, data: { n: 3 } },
          { op: 'delete', kind: 'thing', id: a.id, version: 2 },
        ]), 'YUN_VERSION_CONFLICT');
        assert.equal(d.extra.current_version, 3, 'the version as the batch had made it');
      });
      assert.equal((await s.get('thing', a.id))!.version, 2);
    }));

    it('a batch that updates or deletes a missing object changes nothing and fails with YUN_NOT_FOUND', () => withStore(async (s) => {
      await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      await changesNothing(s, ['thing'], async () => {
        const e = await rejectsWith(s.batch([
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'b', data: {} },
          { op: 'update', kind: 'thing', id: 'missing', data: {} },
        ]), 'YUN_NOT_FOUND');
        assert.ok(e.message.startsWith('No thing "missing" exists'), e.message);
        assert.equal(e.extra.kind, 'thing');
        await rejectsWith(s.batch([
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'b', data: {} },
          { op: 'delete', kind: 'thing', id: 'missing' },
        ]), 'YUN_NOT_FOUND');
      });
    }));

    it('a batch with a name in use changes nothing and fails with YUN_NAME_CONFLICT', () => withStore(async (s) => {
      await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      await s.create({ kind: 'thing', project_id: '', name: 'g', data: {} });
      await changesNothing(s, ['thing'], async () => {
        const e = await rejectsWith(s.batch([
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'b', data: {} },
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: {} },
        ]), 'YUN_NAME_CONFLICT');
        assert.deepEqual(e.extra, { kind: 'thing', name: 'a' });
        assert.ok(e.message.startsWith('A thing named "a" already exists in this project'), e.message);
        const g = await rejectsWith(s.create({ kind: 'thing', project_id: '', name: 'g', data: {} }), 'YUN_NAME_CONFLICT');
        assert.ok(g.message.startsWith('A thing named "g" already exists.'), `no project for a global object: ${g.message}`);
        await rejectsWith(s.batch([
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'twice', data: {} },
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'twice', data: {} },
        ]), 'YUN_NAME_CONFLICT');
      });
    }));

    it('names are unique per kind and project: the same name in another project or kind is fine', () => withStore(async (s) => {
      const objs = await s.batch([
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'same', data: { n: 1 } },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'same', data: { n: 2 } },
        { op: 'create', kind: 'thing', project_id: '', name: 'same', data: { n: 3 } },
        { op: 'create', kind: 'other', project_id: 'p1', name: 'same', data: { n: 4 } },
      ]);
      assert.deepEqual(await s.getByName('thing', 'p1', 'same'), objs[0]);
      assert.deepEqual(await s.getByName('thing', 'p2', 'same'), objs[1]);
      assert.deepEqual(await s.getByName('thing', '', 'same'), objs[2]);
      assert.deepEqual(await s.getByName('other', 'p1', 'same'), objs[3]);
    }));

    it('a rename checks uniqueness; a name freed earlier in a batch can be taken later in it', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      const b = await s.create({ kind: 'thing', project_id: 'p1', name: 'b', data: {} });
      await s.create({ kind: 'thing', project_id: 'p2', name: 'c', data: {} });
      await changesNothing(s, ['thing'], async () => {
        const e = await rejectsWith(s.update({ kind: 'thing', id: b.id, name: 'a', data: {} }), 'YUN_NAME_CONFLICT');
        assert.deepEqual(e.extra, { kind: 'thing', name: 'a' });
        assert.ok(e.message.startsWith('A thing named "a" already exists'), e.message);
      });
      const same = await s.update({ kind: 'thing', id: a.id, name: 'a', data: { n: 1 } });
      assert.equal(same.version, 2, 'renaming to its own name is no conflict');
      const moved = await s.update({ kind: 'thing', id: b.id, name: 'c', data: {} });
      assert.equal(moved.name, 'c', 'a name used in another project is free here');
      const swapped = await s.batch([
        { op: 'update', kind: 'thing', id: a.id, name: 'tmp', data: {} },
        { op: 'update', kind: 'thing', id: b.id, name: 'a', data: {} },
        { op: 'update', kind: 'thing', id: a.id, name: 'c', data: {} },
      ]);
      assert.deepEqual(swapped.map((o) => o.name), ['tmp', 'a', 'c']);
      assert.equal((await s.getByName('thing', 'p1', 'a'))!.id, b.id);
      assert.equal((await s.getByName('thing', 'p1', 'c'))!.id, a.id);
      assert.equal(await s.getByName('thing', 'p1', 'tmp'), undefined);
    }));

    // ---- lists ---------------------------------------------------------------------------------

    it('lists page by id: every object once, in id order, with nextMarker until the last page', () => withStore(async (s) => {
      await s.batch(creates(23));
      await s.create({ kind: 'other', project_id: 'p1', name: 'not-listed', data: {} });
      const all = (await s.list('thing', { limit: 100 })).items;
      assert.equal(all.length, 23);
      assert.deepEqual(all.map((o) => o.id), all.map((o) => o.id).sort(), 'in id order');
      for (const limit of [1, 5, 22, 23, 24]) {
        const ps = await pages(s, 'thing', { limit });
        assert.deepEqual(ps.flat(), all, `limit ${limit}: every object once, in order`);
        assert.equal(ps.length, Math.ceil(23 / limit), `limit ${limit}: no empty last page`);
      }
      const none = await s.list('thing', { limit: 0, withCount: true });
      assert.deepEqual(none.items, [], 'limit 0 lists nothing');
      assert.equal(none.count, 23);
    }));

    it('lists sort by a field, ascending and descending, ties broken by id in the same direction, across pages', () => withStore(async (s) => {
      await s.batch(creates(30, (i) => ({ name: `t${i}`, data: { n: i % 4, s: ['b', 'a', 'c'][i % 3], deep: { k: (i * 7) % 5 } } })));
      const all = (await s.list('thing', { limit: 100 })).items;
      const value = (o: StoredObject, key: string): number | string => key === 'name' ? o.name : key === 'version' ? o.version : key === 'deep.k' ? (o.data.deep as { k: number }).k : o.data[key] as number | string;
      for (const key of ['n', 's', 'deep.k', 'name', 'version']) {
        for (const dir of ['asc', 'desc'] as const) {
          const want = [...all].sort((a, b) => {
            const x = value(a, key);
            const y = value(b, key);
            const c = x < y ? -1 : x > y ? 1 : byId(a, b);
            return dir === 'asc' ? c : -c;
          });
          for (const limit of [4, 7, 100]) {
            const got = (await pages(s, 'thing', { limit, sort: { key, dir } })).flat();
            assert.deepEqual(got.map((o) => o.id), want.map((o) => o.id), `sort ${key}:${dir}, limit ${limit}`);
          }
        }
      }
    }));

    it('sorting: numbers numerically and before text, text by code point, a missing value as the empty text', () => withStore(async (s) => {
      const vals: [string, unknown][] = [['n10', 10], ['n9', 9], ['n100', 100], ['neg', -1], ['half', 2.5], ['missing', undefined], ['nul', null], ['empty', ''], ['x', 'x'], ['B', 'B'], ['a', 'a'], ['e-acute', 'é']];
      await s.batch(vals.map(([n, v], i) => ({ op: 'create' as const, kind: 'thing', id: `id${String(i).padStart(2, '0')}`, project_id: 'p1', name: n, data: v === undefined ? {} : { v } })));
      const asc = ['neg', 'half', 'n9', 'n10', 'n100', 'missing', 'nul', 'empty', 'B', 'a', 'x', 'e-acute'];
      for (const limit of [2, 5, 100]) {
        const up = (await pages(s, 'thing', { limit, sort: { key: 'v', dir: 'asc' } })).flat().map((o) => o.name);
        assert.deepEqual(up, asc, `ascending, limit ${limit}`);
        const down = (await pages(s, 'thing', { limit, sort: { key: 'v', dir: 'desc' } })).flat().map((o) => o.name);
        assert.deepEqual(down, [...asc].reverse(), `descending, limit ${limit}`);
      }
    }));

    it('withCount counts every match whatever the limit and marker; without it there is no count', () => withStore(async (s) => {
      await s.batch(creates(12, (i) => ({ data: { odd: i % 2 === 1 } })));
      const first = await s.list('thing', { limit: 5, withCount: true, filters: [{ field: 'odd', op: 'eq', value: true }] });
      assert.equal(first.count, 6);
      assert.equal(first.items.length, 5);
      const second = await s.list('thing', { limit: 5, withCount: true, marker: first.nextMarker!, filters: [{ field: 'odd', op: 'eq', value: true }] });
      assert.equal(second.count, 6);
      assert.equal(second.items.length, 1);
      assert.equal((await s.list('thing', { limit: 5 })).count, undefined);
    }));

    it('projects restricts a list to those projects; [] lists nothing; undefined lists every project', () => withStore(async (s) => {
      await s.batch([
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: {} },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'b', data: {} },
        { op: 'create', kind: 'thing', project_id: '', name: 'g', data: {} },
      ]);
      assert.deepEqual(names((await s.list('thing', { limit: 10 })).items), ['a', 'b', 'g']);
      assert.deepEqual(names((await s.list('thing', { limit: 10, projects: ['p1'] })).items), ['a']);
      assert.deepEqual(names((await s.list('thing', { limit: 10, projects: ['p1', ''] })).items), ['a', 'g']);
      const none = await s.list('thing', { limit: 10, projects: [], withCount: true });
      assert.deepEqual(none.items, []);
      assert.equal(none.count, 0);
    }));

    it('filters eq/ne/exists/in/prefix on data paths: strings, numbers, booleans, nested labels, null', () => withStore(async (s) => {
      await s.batch([
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'o1', data: { status: 'ready', n: 1, on: true, labels: { zone: 'a', rack: 'r1' }, node_id: 'n1' } },
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'o2', data: { status: 'down', n: 2, on: false, labels: { zone: 'b' }, node_id: null } },
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'o3', data: { status: 'ready', n: '1', labels: {} } },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'o4', data: { status: 'ready-ish', n: 1.5, on: true, labels: { zone: 'a' }, deep: { a: { b: 'x' } }, list: ['a'] } },
      ]);
      const check = async (filters: ListQuery['filters'], want: string[]) => {
        const got = names((await s.list('thing', { limit: 100, filters })).items);
        assert.deepEqual(got, want, JSON.stringify(filters));
      };
      await check([{ field: 'status', op: 'eq', value: 'ready' }], ['o1', 'o3']);
      await check([{ field: 'n', op: 'eq', value: 1 }], ['o1']);
      await check([{ field: 'n', op: 'eq', value: '1' }], ['o3']);
      await check([{ field: 'n', op: 'eq', value: 1.5 }], ['o4']);
      await check([{ field: 'on', op: 'eq', value: true }], ['o1', 'o4']);
      await check([{ field: 'on', op: 'eq', value: false }], ['o2']);
      await check([{ field: 'labels.zone', op: 'eq', value: 'a' }], ['o1', 'o4']);
      await check([{ field: 'deep.a.b', op: 'eq', value: 'x' }], ['o4']);
      await check([{ field: 'status.x', op: 'eq', value: 'ready' }], []);
      await check([{ field: 'list.0', op: 'eq', value: 'a' }], []);
      await check([{ field: 'node_id', op: 'eq', value: null }], ['o2', 'o3', 'o4']);
      await check([{ field: 'status', op: 'ne', value: 'ready' }], ['o2', 'o4']);
      await check([{ field: 'labels.zone', op: 'ne', value: 'a' }], ['o2', 'o3']);
      await check([{ field: 'n', op: 'ne', value: 1 }], ['o2', 'o3', 'o4']);
      await check([{ field: 'node_id', op: 'ne', value: null }], ['o1']);
      await check([{ field: 'node_id', op: 'exists' }], ['o1']);
      await check([{ field: 'labels.zone', op: 'exists' }], ['o1', 'o2', 'o4']);
      await check([{ field: 'labels', op: 'exists' }], ['o1', 'o2', 'o3', 'o4']);
      await check([{ field: 'status', op: 'in', value: ['ready', 'down'] }], ['o1', 'o2', 'o3']);
      await check([{ field: 'n', op: 'in', value: [1, 2] }], ['o1', 'o2']);
      await check([{ field: 'n', op: 'in', value: ['1'] }], ['o3']);
      await check([{ field: 'status', op: 'in', value: [] }], []);
      await check([{ field: 'status', op: 'prefix', value: 'ready' }], ['o1', 'o3', 'o4']);
      await check([{ field: 'labels.rack', op: 'prefix', value: 'r' }], ['o1']);
      await check([{ field: 'status', op: 'eq', value: 'ready' }, { field: 'labels.zone', op: 'eq', value: 'a' }], ['o1']);
      await check([{ field: 'on', op: 'eq', value: true }, { field: 'status', op: 'prefix', value: 'ready-' }], ['o4']);
      await check([{ field: 'list', op: 'overlaps', value: ['b', 'a'] }], ['o4']);
      await check([{ field: 'list', op: 'overlaps', value: ['b'] }], []);
      await check([{ field: 'list', op: 'overlaps', value: [] }], []);
      await check([{ field: 'status', op: 'overlaps', value: ['ready'] }], []);
      await check([{ field: 'name', op: 'overlaps', value: ['o1'] }], []);
    }));

    it('overlaps matches array members with eq semantics: numbers apart from text, nested paths, no scalars', () => withStore(async (s) => {
      await s.batch([
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: { audience: ['p1', '*'], nums: [1, 2.5], acl: { who: ['u1'] } } },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'b', data: { audience: ['p2', 'p3'], nums: ['1'], acl: { who: 'u1' } } },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'c', data: { audience: [], nums: [[1]], flags: [true] } },
      ]);
      const check = async (filters: ListQuery['filters'], want: string[]) => {
        assert.deepEqual(names((await s.list('thing', { limit: 100, filters })).items), want, JSON.stringify(filters));
      };
      await check([{ field: 'audience', op: 'overlaps', value: ['p3', '*'] }], ['a', 'b']);
      await check([{ field: 'audience', op: 'overlaps', value: ['p9'] }], []);
      await check([{ field: 'nums', op: 'overlaps', value: [1] }], ['a']);
      await check([{ field: 'nums', op: 'overlaps', value: ['1'] }], ['b']);
      await check([{ field: 'nums', op: 'overlaps', value: [2.5] }], ['a']);
      await check([{ field: 'acl.who', op: 'overlaps', value: ['u1'] }], ['a']);
      await check([{ field: 'audience', op: 'overlaps', value: ['p2'] }, { field: 'nums', op: 'overlaps', value: ['1'] }], ['b']);
      const page = await s.list('thing', { limit: 1, filters: [{ field: 'audience', op: 'overlaps', value: ['p1', 'p2'] }], withCount: true });
      assert.equal(page.count, 2);
      const next = await s.list('thing', { limit: 1, marker: page.nextMarker!, filters: [{ field: 'audience', op: 'overlaps', value: ['p1', 'p2'] }] });
      assert.equal(next.items.length, 1);
    }));

    it('filters on columns: id, name, project_id, version', () => withStore(async (s) => {
      const [a, b] = await s.batch([
        { op: 'create', kind: 'thing', id: 'id-a', project_id: 'p1', name: 'alpha', data: { name: 'not-the-column' } },
        { op: 'create', kind: 'thing', id: 'id-b', project_id: 'p2', name: 'beta', data: {} },
        { op: 'create', kind: 'thing', id: 'x-c', project_id: 'p2', name: 'alpine', data: {} },
      ]);
      await s.update({ kind: 'thing', id: b!.id, data: {} });
      const check = async (filters: ListQuery['filters'], want: string[]) => {
        assert.deepEqual(names((await s.list('thing', { limit: 100, filters })).items), want, JSON.stringify(filters));
      };
      await check([{ field: 'id', op: 'eq', value: a!.id }], ['alpha']);
      await check([{ field: 'id', op: 'in', value: ['id-a', 'x-c', 'nope'] }], ['alpha', 'alpine']);
      await check([{ field: 'id', op: 'prefix', value: 'id-' }], ['alpha', 'beta']);
      await check([{ field: 'name', op: 'eq', value: 'alpha' }], ['alpha']);
      await check([{ field: 'name', op: 'eq', value: 'not-the-column' }], []);
      await check([{ field: 'name', op: 'prefix', value: 'alp' }], ['alpha', 'alpine']);
      await check([{ field: 'name', op: 'ne', value: 'alpha' }], ['alpine', 'beta']);
      await check([{ field: 'project_id', op: 'eq', value: 'p2' }], ['alpine', 'beta']);
      await check([{ field: 'version', op: 'eq', value: 2 }], ['beta']);
      await check([{ field: 'name', op: 'exists' }], ['alpha', 'alpine', 'beta']);
    }));

    it('prefix filters compare whole characters, also beyond the Basic Multilingual Plane', () => withStore(async (s) => {
      await s.batch(['café', '😀smile', '😀', 'x😀', 'caf'].map((n, i) => ({ op: 'create' as const, kind: 'thing', project_id: 'p1', name: `o${i}`, data: { word: n } })));
      const got = async (value: string) => names((await s.list('thing', { limit: 10, filters: [{ field: 'word', op: 'prefix', value }] })).items);
      assert.deepEqual(await got('😀'), ['o1', 'o2']);
      assert.deepEqual(await got('caf'), ['o0', 'o4']);
      assert.deepEqual(await got('café'), ['o0']);
      assert.deepEqual(await got(''), ['o0', 'o1', 'o2', 'o3', 'o4']);
    }));

    it('a field that is not a valid name is YUN_BAD_FILTER (filters, sort keys, sums, groups)', () => withStore(async (s) => {
      await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      for (const bad of ['a b', "x'y", 'a"b', '', 'x'.repeat(201)]) {
        await rejectsWith(s.list('thing', { limit: 10, filters: [{ field: bad, op: 'eq', value: 1 }] }), 'YUN_BAD_FILTER');
        await rejectsWith(s.list('thing', { limit: 10, sort: { key: bad, dir: 'asc' } }), 'YUN_BAD_FILTER');
        await rejectsWith(s.usage('thing', 'p1', [bad]), 'YUN_BAD_FILTER');
        await rejectsWith(s.countBy('thing', bad, []), 'YUN_BAD_FILTER');
      }
      assert.equal((await s.list('thing', { limit: 10, filters: [{ field: 'labels.a-b/c_d.0', op: 'exists' }] })).items.length, 0, 'letters, digits, . _ - / are allowed');
    }));

    it('a marker that is not an object of the list is YUN_BAD_MARKER', () => withStore(async (s) => {
      const [a, b] = await s.batch([
        { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: { odd: true } },
        { op: 'create', kind: 'thing', project_id: 'p2', name: 'b', data: { odd: false } },
        { op: 'create', kind: 'other', id: 'other-id', project_id: 'p1', name: 'c', data: {} },
      ]);
      await rejectsWith(s.list('thing', { limit: 1, marker: 'no-such-id' }), 'YUN_BAD_MARKER');
      await rejectsWith(s.list('thing', { limit: 1, marker: 'other-id' }), 'YUN_BAD_MARKER');
      await rejectsWith(s.list('thing', { limit: 1, marker: b!.id, projects: ['p1'] }), 'YUN_BAD_MARKER');
      await rejectsWith(s.list('thing', { limit: 1, marker: b!.id, filters: [{ field: 'odd', op: 'eq', value: true }] }), 'YUN_BAD_MARKER');
      const e = await rejectsWith(s.list('thing', { limit: 1, marker: a!.id, projects: [] }), 'YUN_BAD_MARKER');
      assert.ok(e.message.startsWith(`The marker "${a!.id}" is not an object of this list`), e.message);
      await s.delete({ kind: 'thing', id: a!.id });
      await rejectsWith(s.list('thing', { limit: 1, marker: a!.id }), 'YUN_BAD_MARKER');
    }));

    // ---- usage and countBy ---------------------------------------------------------------------

    it('usage counts a kind\'s objects in one project and sums numeric paths', () => withStore(async (s) => {
      await s.batch([
        { op: 'create', kind: 'server', project_id: 'p1', name: 'a', data: { vcpus: 2, ram: 512, res: { disk: 10 } } },
        { op: 'create', kind: 'server', project_id: 'p1', name: 'b', data: { vcpus: 4, ram: 1024, res: { disk: 5 } } },
        { op: 'create', kind: 'server', project_id: 'p1', name: 'c', data: { vcpus: 1 } },
        { op: 'create', kind: 'server', project_id: 'p2', name: 'd', data: { vcpus: 8, ram: 8 } },
        { op: 'create', kind: 'volume', project_id: 'p1', name: 'e', data: { vcpus: 100 } },
      ]);
      assert.deepEqual(await s.usage('server', 'p1', ['vcpus', 'ram', 'res.disk', 'none']), { count: 3, sums: { vcpus: 7, ram: 1536, 'res.disk': 15, none: 0 } });
      assert.deepEqual(await s.usage('server', 'p2', ['vcpus']), { count: 1, sums: { vcpus: 8 } });
      assert.deepEqual(await s.usage('server', 'p1'), { count: 3, sums: {} });
      assert.deepEqual(await s.usage('server', 'p3', ['vcpus']), { count: 0, sums: { vcpus: 0 } });
      assert.deepEqual(await s.usage('server', '', ['vcpus']), { count: 0, sums: { vcpus: 0 } });
    }));

    it('countBy counts matches grouped by a field, with filters and projects; missing values group as "null"', () => withStore(async (s) => {
      await s.batch([
        ...['s1', 's1', 's2', 's1'].map((sid, i) => ({ op: 'create' as const, kind: 'task', project_id: i === 3 ? 'p2' : 'p1', name: `t${i}`, data: { service_id: sid, desired: i === 2 ? 'shutdown' : 'running', slot: i % 2 } })),
        { op: 'create', kind: 'task', project_id: 'p1', name: 'loose', data: { desired: 'running', slot: '1' } },
        { op: 'create', kind: 'other', project_id: 'p1', name: 'x', data: { service_id: 's1' } },
      ]);
      const obj = (m: Map<string, number>) => Object.fromEntries([...m].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
      assert.deepEqual(obj(await s.countBy('task', 'service_id', [])), { null: 1, s1: 3, s2: 1 });
      assert.deepEqual(obj(await s.countBy('task', 'service_id', [{ field: 'desired', op: 'eq', value: 'running' }])), { null: 1, s1: 3 });
      assert.deepEqual(obj(await s.countBy('task', 'service_id', [{ field: 'service_id', op: 'in', value: ['s1', 's2'] }], ['p1'])), { s1: 2, s2: 1 });
      assert.deepEqual(obj(await s.countBy('task', 'project_id', [])), { p1: 4, p2: 1 });
      assert.deepEqual(obj(await s.countBy('task', 'service_id', [], [])), {});
      assert.deepEqual(obj(await s.countBy('task', 'slot', [])), { 0: 2, 1: 3 }, 'a number and the same number as text share a key, and both count');
    }));

    // ---- the change feed -----------------------------------------------------------------------

    it('changesSince returns the changes after a revision, oldest first, with the object after (before, for a delete)', () => withStore(async (s) => {
      await s.create({ kind: 'thing', project_id: 'p1', name: 'before', data: {} });
      const r0 = await s.revision();
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: { n: 1 } });
      const a2 = await s.update({ kind: 'thing', id: a.id, data: { n: 2 } });
      const d = await s.delete({ kind: 'thing', id: a.id });
      const b = await s.create({ kind: 'other', project_id: '', name: 'b', data: {} });
      const cs = await s.changesSince(r0);
      assert.deepEqual(cs.map((c) => ({ ...c, at: undefined })), [
        { revision: r0 + 1, type: 'create', kind: 'thing', id: a.id, project_id: 'p1', object: a, at: undefined },
        { revision: r0 + 2, type: 'update', kind: 'thing', id: a.id, project_id: 'p1', object: a2, at: undefined },
        { revision: r0 + 3, type: 'delete', kind: 'thing', id: a.id, project_id: 'p1', object: d, at: undefined },
        { revision: r0 + 4, type: 'create', kind: 'other', id: b.id, project_id: '', object: b, at: undefined },
      ]);
      assert.deepEqual(d.data, { n: 2 }, 'a delete carries the object as it was');
      assert.ok(cs.every((c) => isIso(c.at)), 'at is an ISO time');
      assert.equal(cs[0]!.at, a.updated_at, 'at is the time of the write');
      assert.deepEqual((await s.changesSince(r0 + 2)).map((c) => c.revision), [r0 + 3, r0 + 4]);
      assert.deepEqual((await s.changesSince(r0, 2)).map((c) => c.revision), [r0 + 1, r0 + 2], 'at most limit changes');
      assert.deepEqual(await s.changesSince(r0 + 4), []);
      assert.equal((await s.changesSince(0)).length, r0 + 4);
    }));

    it(`the feed keeps at least the last ${MIN_CHANGE_RETENTION} changes; older revisions are YUN_WATCH_EXPIRED`, () => withStore(async (s) => {
      const o = await s.create({ kind: 'thing', project_id: 'p1', name: 'busy', data: {} });
      // Batches of `per` changes each: revisions count batches, retention counts changes (whole batches).
      const per = 5001;
      const batches = Math.ceil((MIN_CHANGE_RETENTION + per) / per) + 1;
      for (let b = 0; b < batches; b++) {
        await s.batch(Array.from({ length: per }, (_, j) => ({ op: 'update' as const, kind: 'thing', id: o.id, data: { i: b * per + j } })));
      }
      const rev = await s.revision();
      assert.equal(rev, batches + 1);
      const e = await rejectsWith(s.changesSince(0), 'YUN_WATCH_EXPIRED');
      const m = /^Revision 0 has been compacted away; the oldest revision kept is (\d+)/.exec(e.message);
      assert.ok(m, e.message);
      await rejectsWith(s.watch(0, () => undefined), 'YUN_WATCH_EXPIRED');
      const oldest = Number(m[1]);
      let kept = 0;
      let from = oldest - 1;
      for (let cs = await s.changesSince(from, 1000); cs.length; cs = await s.changesSince(from, 1000)) {
        assert.equal(cs.length % per, 0, 'whole batches');
        kept += cs.length;
        from = cs[cs.length - 1]!.revision;
      }
      assert.ok(kept >= MIN_CHANGE_RETENTION, `kept ${kept} changes`);
      const first = await s.changesSince(oldest - 1, 3);
      assert.equal(first.length, per, 'the oldest kept batch, whole');
      assert.deepEqual(first[0]!.object.data, { i: (oldest - 2) * per });
      assert.equal((await s.get('thing', o.id))!.version, batches * per + 1);
    }));

    it('watch replays what was missed, then streams live changes; unsubscribing stops delivery', () => withStore(async (s) => {
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      const b = await s.create({ kind: 'thing', project_id: 'p1', name: 'b', data: {} });
      const got: Change[] = [];
      const calls: number[][] = [];
      const unwatch = await s.watch(a.revision, (cs) => { calls.push(cs.map((c) => c.revision)); got.push(...cs); });
      await eventually(() => got.length >= 1, 'the replay');
      assert.deepEqual(got.map((c) => c.id), [b.id]);
      const c = await s.create({ kind: 'other', project_id: 'p2', name: 'c', data: {} });
      await s.batch([{ op: 'update', kind: 'thing', id: a.id, data: { n: 1 } }, { op: 'delete', kind: 'thing', id: b.id }]);
      await eventually(() => got.length >= 4, 'the live changes');
      assert.deepEqual(got.map((x) => [x.type, x.id, x.revision]), [['create', b.id, b.revision], ['create', c.id, c.revision], ['update', a.id, c.revision + 1], ['delete', b.id, c.revision + 1]]);
      assert.deepEqual(got[1]!.object, c);
      assert.ok(calls.every((x) => x.length > 0), 'never called with nothing');
      unwatch();
      await s.create({ kind: 'thing', project_id: 'p1', name: 'd', data: {} });
      await sleep(20);
      assert.equal(got.length, 4, 'nothing after unsubscribing');
      const now: Change[] = [];
      const unwatch2 = await s.watch(await s.revision(), (cs) => { now.push(...cs); });
      await sleep(5);
      assert.equal(now.length, 0, 'a watch from the current revision replays nothing');
      const e = await s.create({ kind: 'thing', project_id: 'p1', name: 'e', data: {} });
      await eventually(() => now.length >= 1, 'the live change');
      assert.deepEqual(now.map((x) => x.object), [e]);
      unwatch2();
    }));

    it('watch never loses or repeats a change when writes happen during the replay', () => withStore(async (s) => {
      const r0 = await s.revision();
      // Enough history that the replay takes several reads.
      await s.batch(creates(6000, (i) => ({ name: `a${i}` })));
      await s.batch(creates(6000, (i) => ({ name: `b${i}` })));
      const writer = async (tag: string, pause: () => Promise<unknown>) => {
        for (let i = 0; i < 40; i++) {
          await pause();
          await s.batch([{ op: 'create', kind: 'thing', project_id: 'p2', name: `${tag}${i}x`, data: {} }, { op: 'create', kind: 'thing', project_id: 'p2', name: `${tag}${i}y`, data: {} }]);
        }
      };
      const got: number[] = [];
      const ids: string[] = [];
      const inside: Promise<unknown>[] = [];
      const writers = [writer('m', () => Promise.resolve()), writer('i', () => new Promise((r) => setImmediate(r))), writer('t', () => sleep(0))];
      const unwatch = await s.watch(r0, (cs) => {
        for (const c of cs) { got.push(c.revision); ids.push(c.id); }
        // Writes from inside the callback, during the replay and after it.
        if (inside.length < 5) inside.push(s.create({ kind: 'thing', project_id: 'p3', name: `inside${inside.length}`, data: {} }));
      });
      await Promise.all(writers);
      await eventually(() => inside.length >= 5, 'the writes from inside the callback');
      await Promise.all(inside);
      const revisions = (await s.revision()) - r0;
      assert.equal(revisions, 2 + 3 * 40 + 5, 'one revision per batch');
      const total = 12_000 + 3 * 80 + 5;
      await eventually(() => got.length >= total, `${total} changes (got ${got.length})`);
      await sleep(10);
      unwatch();
      assert.equal(got.length, total, 'no change twice');
      assert.equal(new Set(ids).size, total, 'every change once');
      assert.deepEqual([...new Set(got)], range(r0 + 1, r0 + revisions), 'every revision, in order');
      assert.ok(got.every((r, i) => i === 0 || r >= got[i - 1]!), 'in order');
    }));

    it('a write made inside a watch callback reaches every watcher, in order', () => withStore(async (s) => {
      const r0 = await s.revision();
      const first: number[] = [];
      const second: number[] = [];
      let wrote: Promise<unknown> | undefined;
      let writing = false;
      const u1 = await s.watch(r0, (cs) => {
        first.push(...cs.map((c) => c.revision));
        if (writing) return;
        writing = true;
        wrote = s.create({ kind: 'thing', project_id: 'p1', name: 'from-callback', data: {} });
      });
      const u2 = await s.watch(r0, (cs) => { second.push(...cs.map((c) => c.revision)); });
      await s.create({ kind: 'thing', project_id: 'p1', name: 'x', data: {} });
      await eventually(() => wrote !== undefined, 'the callback');
      await wrote;
      await eventually(() => first.length >= 2 && second.length >= 2, 'both changes at both watchers');
      await sleep(5);
      u1();
      u2();
      assert.deepEqual(first, [r0 + 1, r0 + 2]);
      assert.deepEqual(second, [r0 + 1, r0 + 2]);
    }));

    it('a watch callback that throws breaks neither the store nor other watchers', () => withStore(async (s) => {
      const r0 = await s.revision();
      const good: number[] = [];
      const uBad = await s.watch(r0, () => { throw new Error('listener failure'); });
      const uGood = await s.watch(r0, (cs) => { good.push(...cs.map((c) => c.revision)); });
      const a = await s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} });
      const b = await s.update({ kind: 'thing', id: a.id, data: { n: 1 } });
      assert.equal(b.version, 2, 'writes succeed');
      await eventually(() => good.length >= 2, 'the good watcher');
      assert.deepEqual(good, [r0 + 1, r0 + 2]);
      // One that throws while replaying: the store keeps working.
      await s.watch(r0, () => { throw new Error('replay failure'); }).then((u) => u(), () => undefined);
      await s.create({ kind: 'thing', project_id: 'p1', name: 'c', data: {} });
      await eventually(() => good.length >= 3, 'the good watcher after a failed replay');
      assert.deepEqual(good, [r0 + 1, r0 + 2, r0 + 3]);
      uBad();
      uGood();
    }));

    // ---- secrets, tokens, audit ----------------------------------------------------------------

    it('secrets: put, get, overwrite, delete; never on the change feed', () => withStore(async (s) => {
      const r0 = await s.revision();
      assert.equal(await s.getSecret('k'), undefined);
      await s.putSecret('k', 'v1');
      await s.putSecret('other', 'o');
      assert.equal(await s.getSecret('k'), 'v1');
      await s.putSecret('k', 'v2');
      assert.equal(await s.getSecret('k'), 'v2');
      await s.deleteSecret('k');
      assert.equal(await s.getSecret('k'), undefined);
      await s.deleteSecret('never-there');
      assert.equal(await s.getSecret('other'), 'o');
      await s.putSecret('empty', '');
      assert.equal(await s.getSecret('empty'), '');
      assert.equal(await s.revision(), r0);
      assert.deepEqual(await s.changesSince(r0), []);
    }));

    it('tokens: put, get, list per user by issue time, delete by hash/token_id/user_id/project_id, prune by expiry', () => withStore(async (s) => {
      const r0 = await s.revision();
      const tok = (hash: string, user: string, project: string, issued: string, expires: string, roles = ['member']): TokenRecord =>
        ({ hash, token_id: `tid-${hash}`, user_id: user, project_id: project, roles, issued_at: `2024-01-${issued}T00:00:00.000Z`, expires_at: `2024-01-${expires}T00:00:00.000Z` });
      const t1 = tok('h1', 'u1', 'p1', '02', '03', ['admin', 'member']);
      const t2 = tok('h2', 'u1', 'p2', '03', '05');
      const t3 = tok('h3', 'u2', 'p1', '01', '02', []);
      const t0 = tok('h0', 'u1', 'p1', '01', '10');
      for (const t of [t1, t2, t3, t0]) await s.putToken(t);
      assert.deepEqual(await s.getToken('h1'), t1);
      assert.deepEqual(await s.getToken('h3'), t3);
      assert.equal(await s.getToken('nope'), undefined);
      const got = (await s.getToken('h1'))!;
      got.roles.push('mutated');
      assert.deepEqual((await s.getToken('h1'))!.roles, ['admin', 'member'], 'a copy');
      assert.deepEqual(await s.listTokens('u1'), [t0, t1, t2], 'by issued_at');
      assert.deepEqual(await s.listTokens('nobody'), []);
      await assert.rejects(s.putToken({ ...t1, user_id: 'u9' }), 'a second token with the same hash is refused');
      assert.deepEqual(await s.getToken('h1'), t1, 'and the first is kept');
      assert.equal(await s.deleteTokens({}), 0, 'an empty selection deletes nothing');
      assert.equal(await s.deleteTokens({ hash: undefined }), 0);
      assert.equal(await s.deleteTokens({ hash: 'h1' }), 1);
      assert.equal(await s.getToken('h1'), undefined);
      assert.equal(await s.deleteTokens({ token_id: 'tid-h2' }), 1);
      await s.putToken(t1);
      await s.putToken(t2);
      assert.equal(await s.deleteTokens({ user_id: 'u1', project_id: 'p1' }), 2, 'conditions are and-ed');
      assert.deepEqual(await s.listTokens('u1'), [t2]);
      assert.equal(await s.deleteTokens({ project_id: 'p1' }), 1);
      assert.equal(await s.deleteTokens({ user_id: 'u1' }), 1);
      for (const t of [t0, t1, t2, t3]) await s.putToken(t);
      assert.equal(await s.pruneTokens('2024-01-03T00:00:00.000Z'), 2, 'expires_at <= now');
      assert.deepEqual((await s.listTokens('u1')).map((t) => t.hash), ['h0', 'h2']);
      assert.equal(await s.getToken('h3'), undefined);
      assert.equal(await s.pruneTokens('2024-01-03T00:00:00.000Z'), 0);
      assert.equal(await s.revision(), r0);
      assert.deepEqual(await s.changesSince(r0), []);
    }));

    it('audit: append, list newest first with marker paging, filter by project/user/since/result, count', () => withStore(async (s) => {
      const r0 = await s.revision();
      const entry = (i: number, project: string | null, user: string | null, result: 'success' | 'failure'): Omit<AuditEntry, 'id'> => ({
        at: `2024-02-0${i}T00:00:00.000Z`, request_id: `req-${i}`, user_id: user, user_name: user ? `name-${user}` : null, project_id: project,
        method: 'POST', path: `/v1/things/${i}`, action: 'thing.create', target_id: i % 2 ? `t${i}` : null, status: result === 'success' ? 201 : 409,
        result, error_code: result === 'failure' ? 'YUN_NAME_CONFLICT' : null, remote_addr: i % 3 ? '127.0.0.1' : null,
      });
      const entries = [entry(1, 'p1', 'u1', 'success'), entry(2, 'p1', 'u2', 'failure'), entry(3, 'p2', 'u1', 'success'), entry(4, null, null, 'failure'),
        entry(5, 'p1', 'u1', 'success'), entry(6, 'p2', 'u2', 'success'), entry(7, 'p1', 'u1', 'failure')];
      for (const e of entries) await s.appendAudit(e);
      const all = await s.listAudit({ limit: 100 });
      assert.equal(all.items.length, 7);
      assert.equal(all.nextMarker, undefined);
      assert.deepEqual(all.items.map((a) => a.request_id), ['req-7', 'req-6', 'req-5', 'req-4', 'req-3', 'req-2', 'req-1'], 'newest first');
      const ids = all.items.map((a) => a.id);
      assert.ok(ids.every((id, i) => Number.isInteger(id) && (i === 0 || id < ids[i - 1]!)), `ids grow with each append: ${ids}`);
      assert.deepEqual(all.items.map(({ id: _, ...rest }) => rest), [...entries].reverse(), 'every field is kept (absent ones as null)');
      const paged: AuditEntry[] = [];
      let marker: number | undefined;
      let n = 0;
      for (;;) {
        const page = await s.listAudit({ limit: 3, ...(marker !== undefined ? { marker } : {}) });
        paged.push(...page.items);
        n += 1;
        if (page.nextMarker === undefined) break;
        assert.equal(page.nextMarker, page.items[page.items.length - 1]!.id);
        marker = page.nextMarker;
      }
      assert.equal(n, 3);
      assert.deepEqual(paged, all.items, 'pages: every entry once, newest first');
      const req = async (q: Parameters<Store['listAudit']>[0]) => (await s.listAudit(q)).items.map((a) => a.request_id);
      assert.deepEqual(await req({ limit: 100, projectId: 'p1' }), ['req-7', 'req-5', 'req-2', 'req-1']);
      assert.deepEqual(await req({ limit: 100, userId: 'u2' }), ['req-6', 'req-2']);
      assert.deepEqual(await req({ limit: 100, since: '2024-02-05T00:00:00.000Z' }), ['req-7', 'req-6', 'req-5'], 'since includes its instant');
      assert.deepEqual(await req({ limit: 100, result: 'failure' }), ['req-7', 'req-4', 'req-2']);
      assert.deepEqual(await req({ limit: 100, projectId: 'p1', userId: 'u1', result: 'success' }), ['req-5', 'req-1']);
      const first = await s.listAudit({ limit: 1, projectId: 'p1' });
      assert.deepEqual(await req({ limit: 100, projectId: 'p1', marker: first.nextMarker! }), ['req-5', 'req-2', 'req-1'], 'a marker with a filter');
      // The audit route asks for a count this way (withCount is not in the interface's type yet).
      const counted = await s.listAudit({ limit: 1, projectId: 'p1', withCount: true } as Parameters<Store['listAudit']>[0]);
      assert.equal(counted.count, 4);
      assert.equal(counted.items.length, 1);
      assert.equal((await s.listAudit({ limit: 1 })).count, undefined, 'no count unless asked');
      assert.deepEqual((await s.listAudit({ limit: 0 })).items, [], 'limit 0 lists nothing');
      assert.equal(await s.revision(), r0);
      assert.deepEqual(await s.changesSince(r0), []);
    }));

    // ---- claims and guards ---------------------------------------------------------------------

    it('claims: a key is held by one owner; a second claim of it fails the whole batch; the same owner may claim again', () => withStore(async (s) => {
      const [a] = await s.batch([{ op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: {} }, { op: 'claim', key: 'port/tcp/80', owner: 'x' }]);
      assert.ok(a, 'claims return no object: the object ops\' objects come back in order');
      assert.deepEqual([...(await s.claims('port/'))], [['port/tcp/80', 'x']]);
      const rev = await s.revision();
      const e = await rejectsWith(s.batch([{ op: 'create', kind: 'thing', project_id: 'p1', name: 'b', data: {} }, { op: 'claim', key: 'port/tcp/80', owner: 'y' }]), 'YUN_CLAIM_TAKEN');
      assert.equal(e.status, 409);
      assert.deepEqual({ key: e.extra.key, owner: e.extra.owner }, { key: 'port/tcp/80', owner: 'x' });
      assert.equal(await s.getByName('thing', 'p1', 'b'), undefined, 'nothing of the failed batch is left');
      assert.equal(await s.revision(), rev);
      await s.batch([{ op: 'claim', key: 'port/tcp/80', owner: 'x' }]);
      assert.equal(await s.revision(), rev, 'claims take no revision');
      assert.deepEqual(await s.changesSince(rev), [], 'and are not on the change feed');
    }));

    it('claims: release by the owner frees the key; another owner cannot release it; deleting an object frees what it owned', () => withStore(async (s) => {
      const [o] = await s.batch([{ op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: {} }]);
      await s.batch([{ op: 'claim', key: 'vip/1', owner: o!.id }, { op: 'claim', key: 'vip/2', owner: o!.id }, { op: 'claim', key: 'vip/3', owner: 'other' }]);
      await rejectsWith(s.batch([{ op: 'release', key: 'vip/1', owner: 'other' }]), 'YUN_CLAIM_TAKEN');
      await s.batch([{ op: 'release', key: 'vip/2', owner: o!.id }, { op: 'release', key: 'vip/9', owner: o!.id }]);
      assert.deepEqual([...(await s.claims('vip/')).keys()], ['vip/1', 'vip/3']);
      await s.delete({ kind: 'thing', id: o!.id });
      assert.deepEqual([...(await s.claims('vip/'))], [['vip/3', 'other']], 'the deleted object\'s claims are gone with it');
      assert.deepEqual([...(await s.claims('nothing/'))], []);
    }));

    it('guards: compare-and-increment; a stale version fails the whole batch with YUN_VERSION_CONFLICT naming the guard', () => withStore(async (s) => {
      assert.equal(await s.guard('quota/p1'), 0);
      await s.batch([{ op: 'guard', key: 'quota/p1', version: 0 }, { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: {} }]);
      assert.equal(await s.guard('quota/p1'), 1);
      const e = await rejectsWith(s.batch([{ op: 'create', kind: 'thing', project_id: 'p1', name: 'b', data: {} }, { op: 'guard', key: 'quota/p1', version: 0 }]), 'YUN_VERSION_CONFLICT');
      assert.equal(e.extra.guard, 'quota/p1');
      assert.equal(e.extra.current_version, 1);
      assert.equal(await s.getByName('thing', 'p1', 'b'), undefined);
      assert.equal(await s.guard('quota/p1'), 1, 'a failed batch bumps nothing');
    }));

    it('concurrent allocation: clients racing for the lowest free key (claims) and checking a limit (a guard) never both win', () => withStore(async (s) => {
      // Ten clients each take the lowest free VIP index and, under a limit of 6 things per project,
      // create one: read, check, write with a claim and a guard, retry on a conflict.
      const client = async (n: number) => {
        for (let attempt = 0; attempt < 50; attempt++) {
          const taken = await s.claims('vip/');
          const g = await s.guard('limit/p1');
          const count = (await s.list('thing', { limit: 1, projects: ['p1'], withCount: true })).count!;
          if (count >= 6) return 'over';
          let i = 1;
          while (taken.has(`vip/${i}`)) i++;
          try {
            const [o] = await s.batch([
              { op: 'guard', key: 'limit/p1', version: g },
              { op: 'create', kind: 'thing', project_id: 'p1', name: `c${n}`, data: { vip: i } },
              { op: 'claim', key: `vip/${i}`, owner: `c${n}` },
            ]);
            return o!.data.vip as number;
          } catch (e) {
            if (!(e instanceof YunError) || (e.code !== 'YUN_CLAIM_TAKEN' && e.code !== 'YUN_VERSION_CONFLICT')) throw e;
            await new Promise((r) => setTimeout(r, Math.random() * 3));
          }
        }
        throw new Error('no progress');
      };
      const got = await Promise.all(range(1, 10).map(client));
      const vips = got.filter((g): g is number => typeof g === 'number');
      assert.equal(vips.length, 6, `the limit holds: ${JSON.stringify(got)}`);
      assert.equal(new Set(vips).size, 6, 'no VIP index twice');
      assert.deepEqual([...vips].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6], 'and the lowest were taken');
      assert.equal((await s.list('thing', { limit: 100, projects: ['p1'] })).items.length, 6);
    }));

    // ---- persistence ---------------------------------------------------------------------------

    if (opts.persistent) it('everything written is there after a reopen, and the revision goes on', async () => {
      const h = await make();
      try {
        if (!h.reopen) throw new Error(`the ${name} backend is said to persist, but gives no reopen()`);
        let s = h.store;
        const [a, b] = await s.batch([
          { op: 'create', kind: 'thing', project_id: 'p1', name: 'a', data: { n: 1, labels: { zone: 'z' } } },
          { op: 'create', kind: 'thing', project_id: '', name: 'b', data: {} },
          { op: 'create', kind: 'other', project_id: 'p2', name: 'c', data: {} },
        ]);
        await s.update({ kind: 'thing', id: a!.id, data: { n: 2, labels: { zone: 'z' } } });
        await s.delete({ kind: 'thing', id: b!.id });
        await s.putSecret('k', 'v');
        const tk: TokenRecord = { hash: 'h', token_id: 'tid', user_id: 'u', project_id: 'p1', roles: ['admin'], issued_at: '2024-01-01T00:00:00.000Z', expires_at: '2030-01-01T00:00:00.000Z' };
        await s.putToken(tk);
        const audit: Omit<AuditEntry, 'id'> = { at: '2024-01-01T00:00:00.000Z', request_id: 'r', user_id: 'u', user_name: 'n', project_id: 'p1', method: 'GET', path: '/', action: 'x', target_id: null, status: 200, result: 'success', error_code: null, remote_addr: null };
        await s.appendAudit(audit);
        const rev = await s.revision();
        const things = (await s.list('thing', { limit: 100 })).items;
        const others = (await s.list('other', { limit: 100 })).items;
        const feed = await s.changesSince(0);
        const auditBefore = (await s.listAudit({ limit: 10 })).items;

        s = await h.reopen();
        assert.equal(await s.revision(), rev, 'the revision survives');
        assert.deepEqual((await s.list('thing', { limit: 100 })).items, things);
        assert.deepEqual((await s.list('other', { limit: 100 })).items, others);
        assert.deepEqual((await s.list('thing', { limit: 100, filters: [{ field: 'labels.zone', op: 'eq', value: 'z' }] })).items.map((o) => o.id), [a!.id]);
        assert.deepEqual(await s.getByName('thing', 'p1', 'a'), things[0]);
        await rejectsWith(s.create({ kind: 'thing', project_id: 'p1', name: 'a', data: {} }), 'YUN_NAME_CONFLICT');
        assert.deepEqual(await s.changesSince(0), feed, 'the change feed survives');
        assert.equal(await s.getSecret('k'), 'v');
        assert.deepEqual(await s.getToken('h'), tk);
        assert.deepEqual((await s.listAudit({ limit: 10 })).items, auditBefore);
        const got: number[] = [];
        const unwatch = await s.watch(rev, (cs) => { got.push(...cs.map((c) => c.revision)); });
        const next = await s.create({ kind: 'thing', project_id: 'p1', name: 'next', data: {} });
        assert.equal(next.revision, rev + 1, 'the revision goes on from where it was');
        await eventually(() => got.length >= 1, 'a watch after the reopen');
        assert.deepEqual(got, [rev + 1]);
        unwatch();
        await s.appendAudit({ ...audit, request_id: 'r2' });
        const ids = (await s.listAudit({ limit: 10 })).items.map((x) => x.id);
        assert.ok(ids[0]! > ids[1]!, 'audit ids go on');
      } finally {
        await h.close();
      }
    });

    // ---- a model -------------------------------------------------------------------------------

    it('random batches leave the store equal to a simple model, and the change feed replays to the same state', async () => {
      await fc.assert(fc.asyncProperty(batchesArb, async (batches) => {
        const h = await make();
        try {
          await checkAgainstModel(h.store, batches);
        } finally {
          await h.close();
        }
      }), { numRuns: 30 });
    });
  });
}

// ---- the model behind the property test -----------------------------------------------------------

const KINDS = ['a', 'b'];
const PROJECTS = ['', 'p'];
const NAMES = ['n0', 'n1', 'n2', 'n3'];
const POOL = ['id0', 'id1', 'id2', 'id3'];

type GenOp =
  | { t: 'create'; kind: number; project: number; name: number; id: number; data: Record<string, unknown> }
  | { t: 'update'; target: number; wrongKind: boolean; version: 'none' | 'right' | 'stale'; rename: number; data: Record<string, unknown> }
  | { t: 'delete'; target: number; wrongKind: boolean; version: 'none' | 'right' | 'stale' };

// (fast-check's records have a null prototype: spread them into plain objects, as JSON.parse makes.)
const dataArb = fc.record({ v: fc.integer({ min: -3, max: 3 }), s: fc.string({ maxLength: 3 }) }).map((d): Record<string, unknown> => ({ ...d }));
const versionArb = fc.constantFrom<'none' | 'right' | 'stale'>('none', 'right', 'right', 'stale');
const wrongKindArb = fc.integer({ min: 0, max: 9 }).map((n) => n === 0);
const genOpArb: fc.Arbitrary<GenOp> = fc.oneof(
  fc.record({ t: fc.constant('create' as const), kind: fc.nat({ max: 1 }), project: fc.nat({ max: 1 }), name: fc.nat({ max: 3 }), id: fc.integer({ min: -1, max: 3 }), data: dataArb }),
  fc.record({ t: fc.constant('update' as const), target: fc.nat({ max: 30 }), wrongKind: wrongKindArb, version: versionArb, rename: fc.integer({ min: -2, max: 3 }), data: dataArb }),
  fc.record({ t: fc.constant('delete' as const), target: fc.nat({ max: 30 }), wrongKind: wrongKindArb, version: versionArb }),
);
const batchesArb = fc.array(fc.array(genOpArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 15 });

const withoutTimes = ({ created_at: _c, updated_at: _u, ...rest }: StoredObject) => rest;

async function checkAgainstModel(s: Store, batches: GenOp[][]): Promise<void> {
  const r0 = await s.revision();
  let model = new Map<string, StoredObject>();
  let rev = r0;
  const known = [...POOL, 'missing'];
  for (const batch of batches) {
    // Simulate the batch on a copy of the model, building the concrete operations as we go.
    const sim = new Map(model);
    const ops: Op[] = [];
    const expected: StoredObject[] = [];
    let error: string | undefined;
    const r = rev + 1;
    const taken = (kind: string, project: string, nm: string, except?: string) =>
      [...sim.values()].some((o) => o.kind === kind && o.project_id === project && o.name === nm && o.id !== except);
    for (const g of batch) {
      if (g.t === 'create') {
        const kind = KINDS[g.kind]!;
        const project = PROJECTS[g.project]!;
        const nm = NAMES[g.name]!;
        const id = g.id >= 0 ? POOL[g.id] : undefined;
        ops.push({ op: 'create', kind, project_id: project, name: nm, data: g.data, ...(id !== undefined ? { id } : {}) });
        if (error) continue;
        if ((id !== undefined && sim.has(id)) || taken(kind, project, nm)) { error = 'YUN_NAME_CONFLICT'; continue; }
        const key = id ?? `#generated${ops.length}`;
        const o: StoredObject = { kind, id: key, name: nm, project_id: project, version: 1, created_at: '', updated_at: '', revision: r, data: g.data };
        sim.set(key, o);
        expected.push(o);
        continue;
      }
      const id = known[g.target % known.length]!;
      const cur = sim.get(id);
      const kind = cur ? (g.wrongKind ? KINDS.find((k) => k !== cur.kind)! : cur.kind) : 'a';
      const version = g.version === 'none' ? undefined : cur ? (g.version === 'right' ? cur.version : cur.version + 1) : 1;
      const rename = g.t === 'update' && g.rename >= 0 ? NAMES[g.rename] : undefined;
      if (g.t === 'update') ops.push({ op: 'update', kind, id, data: g.data, ...(version !== undefined ? { version } : {}), ...(rename !== undefined ? { name: rename } : {}) });
      else ops.push({ op: 'delete', kind, id, ...(version !== undefined ? { version } : {}) });
      if (error) continue;
      if (!cur || cur.kind !== kind) { error = 'YUN_NOT_FOUND'; continue; }
      if (version !== undefined && version !== cur.version) { error = 'YUN_VERSION_CONFLICT'; continue; }
      if (g.t === 'update') {
        const nm = rename ?? cur.name;
        if (taken(cur.kind, cur.project_id, nm, cur.id)) { error = 'YUN_NAME_CONFLICT'; continue; }
        const o = { ...cur, name: nm, version: cur.version + 1, revision: r, data: g.data };
        sim.set(id, o);
        expected.push(o);
      } else {
        sim.delete(id);
        expected.push({ ...cur, revision: r });
      }
    }

    if (error) {
      await rejectsWith(s.batch(ops), error);
      assert.equal(await s.revision(), rev, `a failed batch (${error}) moves no revision`);
      continue;
    }
    const out = await s.batch(ops);
    assert.equal(out.length, ops.length);
    // Walk the results in order to learn generated ids and timestamps.
    const next = new Map(model);
    out.forEach((o, i) => {
      const e = expected[i]!;
      const op = ops[i]!;
      if (op.op === 'create') {
        if (e.id.startsWith('#generated')) {
          assert.ok(!next.has(o.id), 'a generated id is new');
          e.id = o.id;
        }
        assert.deepEqual(withoutTimes(o), withoutTimes(e));
        assert.equal(o.created_at, o.updated_at);
        next.set(o.id, o);
      } else if (op.op === 'update') {
        assert.deepEqual(withoutTimes(o), withoutTimes(e));
        assert.equal(o.created_at, next.get(o.id)!.created_at, 'created_at is kept');
        next.set(o.id, o);
      } else {
        assert.deepEqual(o, { ...next.get(o.id)!, revision: e.revision });
        next.delete(o.id);
      }
      if (!known.includes(o.id)) known.push(o.id);
    });
    model = next;
    rev += 1;
    assert.equal(await s.revision(), rev, 'one revision per batch');
  }

  const listed = sorted([...await listAll(s, 'a', {}, 3), ...await listAll(s, 'b', {}, 3)]);
  assert.deepEqual(listed, sorted(model.values()), 'list equals the model');
  for (const o of model.values()) {
    assert.deepEqual(await s.get(o.kind, o.id), o);
    assert.deepEqual(await s.getByName(o.kind, o.project_id, o.name), o);
  }
  const replayed = new Map<string, StoredObject>();
  let from = r0;
  for (;;) {
    const cs = await s.changesSince(from, 7);
    if (cs.length === 0) break;
    for (const c of cs) {
      assert.ok(c.revision === from || c.revision === from + 1, 'the feed has every revision, in order');
      from = c.revision;
      if (c.type === 'delete') {
        assert.deepEqual(c.object, { ...replayed.get(c.id)!, revision: c.revision }, 'a delete carries the object as it was');
        replayed.delete(c.id);
      } else {
        replayed.set(c.id, c.object);
      }
    }
  }
  assert.equal(from, rev);
  assert.deepEqual(sorted(replayed.values()), listed, 'the change feed replays to the same state');
}
