import type { ListQuery, Store, StoredObject } from './store.js';

/**
 * Every object of a list, fetched page by page (keyset pagination, `pageSize` at a time), so a
 * read never stops silently at an arbitrary limit and no page is larger than the store serves well.
 */
export async function listAll(store: Pick<Store, 'list'>, kind: string, query: Omit<ListQuery, 'limit' | 'marker' | 'withCount'> = {}, pageSize = 1000): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await store.list(kind, { ...query, limit: pageSize, ...(marker !== undefined ? { marker } : {}) });
    out.push(...page.items);
    if (page.nextMarker === undefined) return out;
    marker = page.nextMarker;
  }
}
