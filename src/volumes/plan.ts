/**
 * The node's side of a volume, pure: from what is wanted (the volume's desired state) and what the
 * node has (its local state, persisted by the agent after every step), the steps that remain. The
 * agent plans again after every step and after a restart, so a volume half made, half extended or
 * half snapshotted is finished, never left "creating" (each step is idempotent: a file is made
 * under a temporary name and renamed when complete).
 */
export interface VolumeWant {
  size_gb: number;
  snapshots: string[];
  deleting: boolean;
}

export interface LocalVolume {
  /** The volume's file is complete. */
  created: boolean;
  size_bytes: number;
  /** Snapshots complete on this node. */
  snapshots: string[];
  /** Something may be on disk (a create began: a partial file to clean up on delete). */
  touched: boolean;
}

export type VolumeStep =
  | { do: 'create' }
  | { do: 'extend'; bytes: number }
  | { do: 'snapshot'; id: string }
  | { do: 'drop_snapshot'; id: string }
  | { do: 'destroy' };

export const EMPTY_VOLUME: LocalVolume = { created: false, size_bytes: 0, snapshots: [], touched: false };

const GiB = 1024 ** 3;

export function planVolume(w: VolumeWant, l: LocalVolume): VolumeStep[] {
  const drops = l.snapshots.filter((s) => w.deleting || !w.snapshots.includes(s)).map((id) => ({ do: 'drop_snapshot' as const, id }));
  if (w.deleting) return [...drops, ...(l.created || l.touched ? [{ do: 'destroy' as const }] : [])];
  const steps: VolumeStep[] = [];
  if (!l.created) steps.push({ do: 'create' });
  const bytes = w.size_gb * GiB;
  if ((l.created ? l.size_bytes : bytes) < bytes) steps.push({ do: 'extend', bytes });
  steps.push(...drops);
  for (const id of w.snapshots) if (!l.snapshots.includes(id)) steps.push({ do: 'snapshot', id });
  return steps;
}

export function afterVolumeStep(l: LocalVolume, s: VolumeStep, w: VolumeWant): LocalVolume {
  switch (s.do) {
    case 'create': return { ...l, created: true, touched: true, size_bytes: Math.max(l.size_bytes, w.size_gb * GiB) };
    case 'extend': return { ...l, size_bytes: Math.max(l.size_bytes, s.bytes) };
    case 'snapshot': return { ...l, snapshots: [...new Set([...l.snapshots, s.id])] };
    case 'drop_snapshot': return { ...l, snapshots: l.snapshots.filter((x) => x !== s.id) };
    case 'destroy': return { ...EMPTY_VOLUME };
  }
}
