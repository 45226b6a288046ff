/**
 * The volume model (Cinder-style): block storage on one node's disk that outlives the servers it is
 * attached to. A volume is a sparse raw file on its node (`file` type); a blank one carries an ext4
 * file system, so a VM's guest can mount it as it is and a container gets it as a directory. A
 * volume made from a VM image holds the image's disk (bootable); from a container image, an ext4
 * file system with the image's root file system in it (bootable by the oci driver).
 *
 * What users see (`status`) is derived, as for servers: from where the volume rests (created or
 * not, its size, its snapshots) and from its attachment, which lives in the server it is attached
 * to (the server's agent attaches it and reports what is attached).
 */
import type { ImageSnapshot } from '../servers/server.js';

export type VolumeStatus =
  | 'creating' | 'available' | 'reserved' | 'attaching' | 'in-use' | 'detaching' | 'extending'
  | 'deleting' | 'error' | 'error_extending' | 'error_deleting';

export const VOLUME_STATUSES: readonly VolumeStatus[] = ['creating', 'available', 'reserved', 'attaching', 'in-use', 'detaching', 'extending', 'deleting', 'error', 'error_extending', 'error_deleting'];

/** The volume types a node offers (data: the API and `yun volume create --type` list them). */
export const VOLUME_TYPES = {
  file: { description: 'A sparse raw file on the node\'s disk (the agent\'s data directory); attached to VMs as a SCSI disk, to containers as a mounted directory.' },
} as const;
export type VolumeType = keyof typeof VOLUME_TYPES;

export type VolumeSource =
  | { kind: 'blank' }
  | { kind: 'snapshot'; snapshot_id: string; volume_id: string }
  | { kind: 'image'; image: ImageSnapshot };

/** Where the volume is attached (one server at a time: no multi-attach). */
export interface VolumeAttachment {
  server_id: string;
  server_name: string;
  /** Containers: where it is mounted; VMs: null (the guest sees a disk). */
  mount_path: string | null;
  /** The disk's name as the guest will most likely see it (`/dev/sda`), a hint as in Nova. */
  device: string | null;
  /** The root disk of the server (boot from volume). */
  boot: boolean;
  /** Delete the volume with the server. */
  delete_on_termination: boolean;
  attached_at: string | null;
}

export interface VolumeFault {
  code: string;
  message: string;
  details: string;
  created: string;
}

export interface VolumeData extends Record<string, unknown> {
  size_gb: number;
  volume_type: VolumeType;
  description: string;
  status: VolumeStatus;
  /** The node whose disk holds it (null until placed: a boot volume waits for its server's node). */
  node_id: string | null;
  source: VolumeSource;
  /** What is on it: `ext4` (made by Yunstack, a container can mount it) or `disk` (an image's disk, for VMs). */
  content: 'ext4' | 'disk';
  bootable: boolean;
  /** A short serial the guest sees (`/sys/block/sdX/device/serial`-style), derived from the id. */
  serial: string;
  attachment: VolumeAttachment | null;
  /** What its node is asked to bring about; `generation` grows with every change. */
  desired: { size_gb: number; snapshots: string[]; deleting: boolean; generation: number };
  /** The last generation its node reported as carried out. */
  observed_generation: number;
  fault: VolumeFault | null;
  /** Progress of a long step (`copying the snapshot`). */
  message?: string | null;
  /** For quotas: what it counts for. */
  quota_usage: { volumes: number; gigabytes: number };
}

/** What a node reports about a volume. */
export interface VolumeReport {
  generation: number;
  /** The file exists (fully made). */
  created: boolean;
  size_bytes: number;
  /** The snapshots its node holds, complete. */
  snapshots: string[];
  fault?: { code: string; message: string; details: string } | null;
  destroyed?: boolean;
  message?: string | null;
}

export type SnapshotStatus = 'creating' | 'available' | 'deleting' | 'error';

export interface SnapshotData extends Record<string, unknown> {
  volume_id: string;
  volume_name: string;
  size_gb: number;
  node_id: string;
  description: string;
  status: SnapshotStatus;
  /** The volume was attached to a running server, frozen for the copy. */
  quiesced: boolean;
  fault: VolumeFault | null;
  quota_usage: { snapshots: number; gigabytes: number };
}

export const GiB = 1024 ** 3;

/** The serial a guest sees for a volume: `yun-` and the id's first 16 characters (SCSI serials are short). */
export function volumeSerial(id: string): string {
  return `yun-${id.replace(/[^A-Za-z0-9]/g, '').slice(0, 16)}`;
}

/** Where a container mounts a volume unless told. */
export const defaultMountPath = (volumeName: string) => `/mnt/${volumeName}`;
