/**
 * Flavors (Nova's): the size of a server. Cluster-wide objects (project GLOBAL); a private flavor
 * is usable only by the projects on its access list. Sizes are stored as Nova states them — RAM
 * and swap in MiB, disks in GiB — so that `flavor ls` reads like `openstack flavor list`.
 */
export interface FlavorData extends Record<string, unknown> {
  vcpus: number;
  ram_mb: number;
  /** Root disk, GiB (0: the image's own size). */
  disk_gb: number;
  /** An extra, empty disk, GiB (0: none). */
  ephemeral_gb: number;
  swap_mb: number;
  is_public: boolean;
  /** Projects that may use a private flavor. */
  projects: string[];
  description: string;
  /** Extra specs, e.g. `hw:accel=kvm` (place only where KVM works). */
  properties: Record<string, string>;
}

/** What a server keeps of its flavor: the sizes it was built with, even if the flavor changes later. */
export interface FlavorSnapshot {
  id: string;
  name: string;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  ephemeral_gb: number;
  swap_mb: number;
  properties: Record<string, string>;
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** The five defaults every cloud has after `yun up` (Nova's m1.* sizes). */
export const DEFAULT_FLAVORS: { name: string; id: string; vcpus: number; ram_mb: number; disk_gb: number }[] = [
  { name: 'm1.tiny', id: '1', vcpus: 1, ram_mb: 512, disk_gb: 1 },
  { name: 'm1.small', id: '2', vcpus: 1, ram_mb: 2048, disk_gb: 20 },
  { name: 'm1.medium', id: '3', vcpus: 2, ram_mb: 4096, disk_gb: 40 },
  { name: 'm1.large', id: '4', vcpus: 4, ram_mb: 8192, disk_gb: 80 },
  { name: 'm1.xlarge', id: '5', vcpus: 8, ram_mb: 16384, disk_gb: 160 },
];

export function defaultFlavorData(f: (typeof DEFAULT_FLAVORS)[number]): FlavorData {
  return { vcpus: f.vcpus, ram_mb: f.ram_mb, disk_gb: f.disk_gb, ephemeral_gb: 0, swap_mb: 0, is_public: true, projects: [], description: '', properties: {} };
}

export function flavorSnapshot(id: string, name: string, d: FlavorData): FlavorSnapshot {
  return { id, name, vcpus: d.vcpus, ram_mb: d.ram_mb, disk_gb: d.disk_gb, ephemeral_gb: d.ephemeral_gb, swap_mb: d.swap_mb, properties: { ...d.properties } };
}

export const ramBytes = (f: { ram_mb: number }) => f.ram_mb * MiB;
export const diskBytes = (f: { disk_gb: number }) => f.disk_gb * GiB;
/** Every byte of node disk a server of this flavor may come to hold: root, ephemeral, swap. */
export const reservedDiskBytes = (f: { disk_gb: number; ephemeral_gb: number; swap_mb: number }) => f.disk_gb * GiB + f.ephemeral_gb * GiB + f.swap_mb * MiB;

/** Whether a project may use a flavor. */
export function flavorAllowed(d: FlavorData, projectId: string): boolean {
  return d.is_public || d.projects.includes(projectId);
}
