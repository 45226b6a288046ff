/**
 * The server model (Nova-style): a long-lived instance, a container or a VM. Unlike a task, whose
 * observed state only moves forward, a server's power state is reversible; what it shows
 * (`status`) is derived from its `vm_state` (where it rests) and its `task_state` (the action in
 * progress), see states.ts.
 */
import type { FlavorSnapshot } from './flavor.js';
import type { FileRef } from '../secrets/refs.js';

export type VmState = 'building' | 'active' | 'stopped' | 'paused' | 'suspended' | 'resized' | 'error';

export type TaskState =
  | 'scheduling' | 'spawning'
  | 'powering-off' | 'powering-on'
  | 'rebooting' | 'rebooting_hard'
  | 'pausing' | 'unpausing'
  | 'suspending' | 'resuming'
  | 'rebuilding'
  | 'resize_prep' | 'resize_confirming' | 'resize_reverting'
  | 'deleting';

/** What the hypervisor (the driver) says about the instance. */
export type PowerState = 'nostate' | 'running' | 'paused' | 'suspended' | 'shutdown' | 'crashed';

/** The power state the server is meant to be in. */
export type DesiredPower = 'active' | 'shutoff' | 'paused' | 'suspended';

/** One-off operations the agent carries out once (each carries the generation it came with). */
export interface ServerOp {
  kind: 'reboot' | 'reboot_hard' | 'rebuild' | 'resize' | 'resize_confirm' | 'resize_revert';
  generation: number;
}

export interface ImageSnapshot {
  id: string;
  name: string;
  digest: string;
  kind: 'container' | 'vm';
  min_disk_bytes: number;
  min_ram_bytes: number;
}

export interface ServerNetwork {
  id: string;
  /** Set when the server is scheduled (IPAM on the node's slice). */
  address: string | null;
  mac: string;
}

export interface ServerFault {
  /** The stable code of what failed, e.g. YUN_NO_VALID_HOST, YUN_BOOT_FAILED. */
  code: string;
  message: string;
  /** The full cause: filter counts, the driver's own error, an exit status. */
  details: string;
  created: string;
}

/** One entry of a server's action log (`openstack server event list`). */
export interface ServerEvent {
  action: string;
  request_id: string | null;
  user_id: string | null;
  start_time: string;
  finish_time: string | null;
  result: 'success' | 'error' | null;
  message: string | null;
}

/** A volume the server has (wants attached); its status is on the volume. */
export interface ServerVolume {
  id: string;
  serial: string;
  content: 'ext4' | 'disk';
  /** Containers: where it is mounted. */
  mount_path: string | null;
  /** The root disk (boot from volume). */
  boot: boolean;
  delete_on_termination: boolean;
}

export interface ServerData extends Record<string, unknown> {
  flavor: FlavorSnapshot;
  image: ImageSnapshot;
  driver: 'oci' | 'qemu';
  networks: ServerNetwork[];
  key_name: string | null;
  public_keys: string[];
  /** base64, as Nova takes it; never shown again after create. */
  user_data_b64: string | null;
  metadata: Record<string, string>;
  node_id: string | null;
  vm_state: VmState;
  task_state: TaskState | null;
  power_state: PowerState;
  fault: ServerFault | null;
  /** What the agent is asked to bring about; `generation` grows with every action. */
  desired: { power: DesiredPower; generation: number; op: ServerOp | null; deleting: boolean };
  /** The last generation the agent reported as carried out. */
  observed_generation: number;
  /** During VERIFY_RESIZE: the flavor to return to. */
  old_flavor: FlavorSnapshot | null;
  /** The power the server had before a resize (it comes back in it). */
  resize_power: DesiredPower | null;
  /** How the instance last ended on its own (a crash, a guest power-off), for SHUTOFF servers. */
  last_exit: { at: string; exit_code: number | null; signal: string | null; error: string | null } | null;
  launched_at: string | null;
  events: ServerEvent[];
  /** What the agent is doing now, for a long step (`preparing the root disk`). */
  message?: string | null;
  /** For quotas: what this server counts for. */
  quota_usage: { instances: number; cores: number; ram: number };
  /** Its volumes: the root volume (boot from volume) and the attached ones (absent on servers made before volumes). */
  volumes?: ServerVolume[];
  /** Secrets and configs it receives as files at every boot (absent when none). */
  secrets?: FileRef[];
  configs?: FileRef[];
}

/** What an agent reports about a server. */
export interface ServerReport {
  /** The last desired generation it has carried out completely. */
  generation: number;
  power_state: PowerState;
  /** A failure that leaves the server in ERROR (building, booting, rebuilding…). */
  fault?: { code: string; message: string; details: string } | null;
  /** The instance ended on its own (not asked to): how. */
  exit?: { exit_code: number | null; signal: string | null; error: string | null } | null;
  /** The agent has destroyed the instance (after a delete): the server can go. */
  destroyed?: boolean;
  /** Progress of a long step, shown by `server show` (`preparing the root disk…`). */
  message?: string | null;
  /** The volumes the instance has now (attached, or in its config while it is stopped), with the device names it got. */
  volumes?: { id: string; device: string | null }[];
  /** Attaching or detaching a volume failed: the manager rolls the attachment back to what the instance has. */
  volume_faults?: { id: string; action: 'attach' | 'detach'; details: string }[];
}
