import { YunError } from '../errors/errors.js';
import type { Store, StoredObject } from '../store/store.js';
import { formatSize } from '../util/size.js';

/**
 * Per-project quotas. A limit of -1 means unlimited. Usage is computed from the project's objects
 * (never stored separately, so it cannot drift): services counted; tasks, cpu and memory summed
 * from each service's `quota_usage`, which is its replicas times its reservations; instances,
 * cores and ram (Nova's) summed from each server's `quota_usage` (its flavor); volumes, snapshots
 * and gigabytes (Cinder's) from volumes and snapshots (a snapshot counts its volume's size).
 */
export const QUOTA_KEYS = ['services', 'tasks', 'cpu', 'memory', 'instances', 'cores', 'ram', 'volumes', 'snapshots', 'gigabytes'] as const;
export type QuotaKey = (typeof QUOTA_KEYS)[number];

export const QUOTA_UNITS: Record<QuotaKey, string> = { services: 'services', tasks: 'tasks', cpu: 'CPUs', memory: 'bytes', instances: 'servers', cores: 'vCPUs', ram: 'bytes', volumes: 'volumes', snapshots: 'snapshots', gigabytes: 'GiB' };

export const DEFAULT_QUOTAS: Record<QuotaKey, number> = {
  services: 100,
  tasks: 1000,
  cpu: 64,
  memory: 256 * 1024 ** 3,
  // Nova's defaults: 10 instances, 20 cores, 50 GiB of RAM.
  instances: 10,
  cores: 20,
  ram: 50 * 1024 ** 3,
  // Cinder's defaults: 10 volumes, 10 snapshots, 1000 GiB.
  volumes: 10,
  snapshots: 10,
  gigabytes: 1000,
};

export type Quotas = Record<QuotaKey, number>;

export function projectQuotas(project: StoredObject): Quotas {
  return { ...DEFAULT_QUOTAS, ...((project.data.quotas as Partial<Quotas> | undefined) ?? {}) };
}

export async function projectUsage(store: Store, projectId: string): Promise<Quotas> {
  const s = await store.usage('service', projectId, ['quota_usage.tasks', 'quota_usage.cpu', 'quota_usage.memory']);
  const v = await store.usage('server', projectId, ['quota_usage.cores', 'quota_usage.ram']);
  const vol = await store.usage('volume', projectId, ['quota_usage.gigabytes']);
  const snap = await store.usage('volume_snapshot', projectId, ['quota_usage.gigabytes']);
  return {
    services: s.count,
    tasks: s.sums['quota_usage.tasks'] ?? 0,
    cpu: Math.round((s.sums['quota_usage.cpu'] ?? 0) * 1000) / 1000,
    memory: s.sums['quota_usage.memory'] ?? 0,
    instances: v.count,
    cores: v.sums['quota_usage.cores'] ?? 0,
    ram: v.sums['quota_usage.ram'] ?? 0,
    volumes: vol.count,
    snapshots: snap.count,
    gigabytes: (vol.sums['quota_usage.gigabytes'] ?? 0) + (snap.sums['quota_usage.gigabytes'] ?? 0),
  };
}

function show(key: QuotaKey, v: number): string {
  return key === 'memory' || key === 'ram' ? formatSize(v) : String(v);
}

/**
 * Check that adding `delta` to the project's usage stays within its quotas; throws a 403 that names
 * the quota, the limit, the usage and the request otherwise.
 */
export async function checkQuota(store: Store, project: StoredObject, delta: Partial<Quotas>): Promise<void> {
  const limits = projectQuotas(project);
  const used = await projectUsage(store, project.id);
  for (const key of QUOTA_KEYS) {
    const d = delta[key] ?? 0;
    if (d <= 0 || limits[key] < 0) continue;
    if (used[key] + d > limits[key]) {
      throw new YunError(
        'YUN_QUOTA_EXCEEDED',
        `Quota "${key}" of project "${project.name}" would be exceeded: limit ${show(key, limits[key])}, in use ${show(key, used[key])}, this request needs ${show(key, d)} more`,
        { extra: { quota: key, limit: limits[key], usage: used[key], requested: d } },
      );
    }
  }
}
