import { YunError } from '../errors/errors.js';
import type { Op, Store, StoredObject } from '../store/store.js';

/**
 * A read-check-write that holds against concurrent writers (another request, another manager):
 * `attempt` reads what it needs — guard versions first — checks (quotas, free ports, free
 * addresses), and returns the batch to commit, with the claims and guards that make its checks
 * stick. When the batch loses a race (a claim taken, a guard moved on meanwhile), it runs again
 * from the start, so its checks see what the winner wrote and refuse or choose again.
 */
export async function commitChecked(store: Store, attempt: () => Promise<Op[]>, opts: { tries?: number; objectChanged?: boolean } = {}): Promise<StoredObject[]> {
  const tries = opts.tries ?? 8;
  for (let i = 1; ; i++) {
    const ops = await attempt();
    try {
      return await store.batch(ops);
    } catch (e) {
      // `objectChanged`: the attempt re-reads the object it writes, so its own version moving on
      // (another writer, say an agent's report) is a race too — unless the caller pinned a version.
      const raced = e instanceof YunError && (e.code === 'YUN_CLAIM_TAKEN' || (e.code === 'YUN_VERSION_CONFLICT' && (e.extra.guard !== undefined || opts.objectChanged === true)));
      if (!raced || i >= tries) throw e;
      await new Promise((r) => setTimeout(r, Math.random() * 5 * i));
    }
  }
}

/** The guard of a project's quota usage: every write that adds to it bumps it. */
export const quotaGuard = (projectId: string) => `quota/${projectId}`;

/**
 * The guard of a secret or config: a service that starts to use it and its removal both bump it,
 * so a removal never misses a service that took it up meanwhile.
 */
export const fileGuard = (id: string) => `file/${id}`;

/** The keys of the claims that make allocations unique in the cluster. */
export const claimKeys = {
  serviceVip: (index: number) => `service-vip/${index}`,
  serviceVipPrefix: 'service-vip/',
  ingressPort: (protocol: string, port: number) => `ingress-port/${protocol}/${port}`,
  ingressPortPrefix: 'ingress-port/',
  /** A service's VIP on an overlay network (`ip` '' for the network's prefix). */
  networkVip: (networkId: string, ip: string) => `network-vip/${networkId}/${ip}`,
};
