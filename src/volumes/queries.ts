import { listAll } from '../store/paging.js';
import type { Store, StoredObject } from '../store/store.js';

/** The volumes attached (or being attached) to a server. */
export async function volumesOf(store: Store, serverId: string): Promise<StoredObject[]> {
  return listAll(store, 'volume', { filters: [{ field: 'attachment.server_id', op: 'eq', value: serverId }] });
}

/** The snapshots of a volume. */
export async function snapshotsOf(store: Store, volumeId: string): Promise<StoredObject[]> {
  return listAll(store, 'volume_snapshot', { filters: [{ field: 'volume_id', op: 'eq', value: volumeId }] });
}
