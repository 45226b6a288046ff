/**
 * The one driver contract (DESIGN.md, convention 5). Every driver (process, oci, docker, …) lives
 * in its own folder and passes the same conformance suite (src/drivers/testing/conformance.ts).
 *
 * A driver is stateless between calls: everything it needs to find a running task again after the
 * agent restarts is in the `TaskHandle` it returned from `start`, which the agent persists.
 */

export type ImageKind = 'container' | 'vm';

/**
 * What a driver can do beyond the lifecycle core (start, wait, stop, inspect, recover, destroy), as
 * data: the agent, the scheduler and the API decide from it, never from a driver's name. Each flag
 * that is true promises the optional interface named beside it (`capable()` hands it out; the
 * conformance suite checks the promise and runs the tests of each capability).
 */
export interface DriverCapabilities {
  /** Runs the task's own command (argv, env, workdir, user), its output in stdout.log / stderr.log. VM drivers boot their image instead. */
  command: boolean;
  /** `Driver.exec`: a command inside a running task (health checks, `yun task exec`). */
  exec: boolean;
  /** `TerminalExec.execTty`: an interactive command on a terminal (`yun task exec -it`). */
  terminal: boolean;
  /** `Freezable`: pause and unpause (every process frozen in place). */
  pause: boolean;
  /**
   * `Suspendable`: how suspend works — `freeze`: frozen in memory, as pause; `disk`: the memory is
   * saved to disk and the process ends (nothing held but disk), resumed from there. null: none.
   */
  suspend: 'freeze' | 'disk' | null;
  /** `Instances`: long-lived instances (servers): prepared apart from booting, booted again after a stop with their root disk. */
  instances: boolean;
  /** `Consoles`: a console log and an interactive console. */
  console: boolean;
  /** `VolumeAttach`: volumes attached to an instance while it runs (and at boot), grown in place; an instance booted from a volume. */
  volumes: boolean;
  /** Image kinds it runs (none for the process driver). */
  image_kinds: ImageKind[];
  /** What its tasks can be attached to: the node's network (`host`), Yunstack overlay networks (`overlay`). */
  network_kinds: ('host' | 'overlay')[];
}

export interface DriverFingerprint {
  available: boolean;
  /** Why not, when unavailable (shown by `yun node inspect`). */
  reason?: string;
  /** Free-form facts, e.g. { cgroups: 'v1', root: 'true', runc: '1.1.5' }. */
  attributes?: Record<string, string>;
  /** The driver's capabilities (filled in from `Driver.capabilities` by `fingerprintAll`). */
  capabilities?: DriverCapabilities;
  /** Features the driver cannot offer on this node, with why (e.g. `kvm`): the scheduler keeps what needs them away. */
  missing_features?: Record<string, string>;
}

export interface PortMapping {
  target: number;
  host_port: number;
  protocol: 'tcp' | 'udp';
  published?: number;
  mode: 'ingress' | 'host';
  name?: string;
}

export interface MountSpec {
  type: 'bind' | 'tmpfs' | 'volume';
  source?: string;
  target: string;
  readonly?: boolean;
  tmpfs_size_bytes?: number;
  /** Bind mounts: `rslave` receives mounts made under the source later (default `rprivate`). */
  propagation?: 'rprivate' | 'rslave';
}

/** What the agent asks a driver to run. */
export interface TaskConfig {
  /** Task id: unique, safe as a file or cgroup name. */
  id: string;
  /** `service.slot` — containers use it as their hostname. */
  name: string;
  /** A directory owned by this task on this node (logs, exit status, bundle). Removed by `destroy`. */
  dir: string;
  command: string[];
  /** Run command[0] with /bin/sh -c (command[1..] become $0, $1…). */
  shell: boolean;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  hostname?: string;
  image?: string;
  mounts: MountSpec[];
  read_only: boolean;
  limits: { cpu: number; memory_bytes: number; pids: number };
  ports: PortMapping[];
  /** `host`: the node's network namespace; `private`: a namespace of its own (loopback only until the task joins networks). Image drivers only. */
  network_mode?: 'host' | 'private';
  /** Overlay networks to join (image drivers with their own network namespace). */
  networks?: NetworkAttachment[];
  /** For image drivers: the image, resolved and present on this node. */
  image_info?: ImageInfo;
  /** cgroup parent name for this agent (e.g. `yunstack/<node-id>`), so several agents on one host never collide. */
  cgroup_parent: string;
  labels: Record<string, string>;
  /** A long-lived instance (a server), for drivers with the `instances` capability. */
  instance?: InstanceSpec;
}

/** What a server asks of its driver beyond a task's config. */
export interface InstanceSpec {
  /** Virtual CPUs and memory (a VM's processors and RAM; a container's cgroup limits). */
  vcpus: number;
  memory_bytes: number;
  /** Size of the root disk; a VM's disk is grown to it (never shrunk); 0 keeps the image's. */
  disk_bytes: number;
  /** The flavor's extra disks (VMs): an empty ext4 disk labelled `ephemeral0`, and swap (`swap0`); 0: none. */
  ephemeral_bytes?: number;
  swap_bytes?: number;
  /** What cloud-init's NoCloud seed carries: instance id, hostname, SSH keys, user data (base64). */
  seed: { instance_id: string; hostname: string; public_keys: string[]; user_data_b64?: string };
  /** Volumes attached when it boots (drivers with the `volumes` capability). */
  volumes?: VolumeDisk[];
  /** Boot from this volume: it is the root disk (no copy of the image is made). */
  root_volume?: VolumeDisk;
  /**
   * Secrets and configs, placed by the agent on a tmpfs of the node, to be at their targets in the
   * instance at every boot: a container gets each bind-mounted read-only; a VM gets them through
   * its seed. `dir` is the instance's own tmpfs directory (the files are below it): what a driver
   * writes from them (a seed that carries them) goes there, never to a disk.
   */
  files?: { dir: string; list: InstanceFile[] };
}

/** A secret or config for an instance: the file on the node's tmpfs and how the instance gets it. */
export interface InstanceFile {
  source: string;
  /** Absolute path in the instance. */
  target: string;
  uid: number;
  gid: number;
  mode: number;
}

/** A volume as a driver attaches it: a raw file on this node. */
export interface VolumeDisk {
  id: string;
  /** The raw file. */
  path: string;
  /** What the guest sees as the disk's serial number. */
  serial: string;
  /** `ext4`: a file system a container can mount; `disk`: an image's disk (VMs only). */
  content: 'ext4' | 'disk';
  /** Containers: where it is mounted inside (VMs ignore it). */
  mount_path: string | null;
}

/** A task's place on an overlay network of this node (prepared by the agent). */
export interface NetworkAttachment {
  network_id: string;
  name: string;
  /** The network's bridge on this node. */
  bridge: string;
  address: string;
  prefix: number;
  gateway: string;
  mtu: number;
  /** DNS search domain of the network's project (`PROJECT.yun`). */
  search: string;
  /** The MAC address the instance has on it (servers: stable for the server's life). */
  mac?: string;
}

/** An image ready to run on this node. */
export interface ImageInfo {
  /** The reference as the service gives it, e.g. `busybox` or `busybox:latest`. */
  ref: string;
  /** Digest of the image manifest (`sha256:…`). */
  digest: string;
  /** `container` (a root file system) or `vm` (a disk, maybe a kernel and initrd). */
  kind: ImageKind;
  /** Container images: the root file system, all layers applied: read-only, shared by every task of the image (an overlay lower). '' for VM images. */
  rootfs: string;
  /** VM images: the files on this node (read-only, shared: a VM's disk is an overlay on `disk`). */
  vm?: VmImageFiles;
  /** From the image config. */
  config: { entrypoint: string[]; cmd: string[]; env: string[]; workdir: string; user: string };
  /** Write the image as a `docker save` archive and return its path (for the docker driver). */
  exportDockerArchive(): Promise<string>;
}

/** The files of a VM image on a node. */
export interface VmImageFiles {
  disk: string;
  disk_format: 'qcow2' | 'raw';
  /** Direct kernel boot (microvm): the kernel, its initrd and command line. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  min_disk_bytes: number;
  min_ram_bytes: number;
}

/** Optional (`pause`): tasks can be frozen and thawed (cgroup freezer, a VM's vCPUs stopped). */
export interface Freezable {
  freeze(handle: TaskHandle): Promise<void>;
  thaw(handle: TaskHandle): Promise<void>;
}

/** An interactive session on a terminal (exec -it, a serial console). */
export interface TtyExec {
  stdin: import('node:stream').Writable;
  output: import('node:stream').Readable;
  resize(rows: number, cols: number): Promise<void>;
  wait(): Promise<number>;
  kill(): void;
}

/** Optional (`terminal`): an interactive command on a terminal inside a running task. */
export interface TerminalExec {
  execTty(handle: TaskHandle, command: string[], opts?: { rows?: number; cols?: number; env?: Record<string, string> }): Promise<TtyExec>;
}

/** Optional (`suspend`): suspend and resume; both return the handle to keep (a resumed VM is a new process). */
export interface Suspendable {
  suspend(handle: TaskHandle): Promise<TaskHandle>;
  resume(handle: TaskHandle): Promise<TaskHandle>;
  /** Whether the instance behind the handle is suspended now (after an agent restart). */
  suspended(handle: TaskHandle): Promise<boolean>;
}

/**
 * Optional (`instances`): long-lived instances. `prepare` makes everything the instance needs
 * (root disk, seed, network plumbing) without running it; `boot` runs a prepared or stopped
 * instance with `config` (a resize changes its vCPUs and memory), its root disk kept. `stop` then
 * keeps the disk; only `destroy` frees it.
 */
export interface Instances {
  prepare(config: TaskConfig, progress?: (message: string) => void): Promise<TaskHandle>;
  boot(handle: TaskHandle, config: TaskConfig): Promise<TaskHandle>;
  /** Keep a copy of the root disk under `tag` (before a resize), to return to with `restoreDisk`. */
  saveDisk(handle: TaskHandle, tag: string): Promise<void>;
  /** Put the saved copy back (the instance is stopped); `drop` only deletes it. */
  restoreDisk(handle: TaskHandle, tag: string): Promise<void>;
  dropDisk(handle: TaskHandle, tag: string): Promise<void>;
  /**
   * Write the root disk as a new image's content into `dir` (running or not; a running instance
   * is quiesced for the copy): a VM's disk flattened to one qcow2 (with the image's kernel, initrd
   * and command line), or a container's root file system as a directory (with the image's config).
   */
  exportDisk(handle: TaskHandle, dir: string): Promise<ExportedDisk>;
}

/** What `exportDisk` wrote. */
export type ExportedDisk =
  | { kind: 'vm'; disk: string; kernel?: string; initrd?: string; cmdline?: string }
  | { kind: 'container'; rootfs: string; config: ImageInfo['config'] };

/**
 * Optional (`volumes`): volumes attached to a running instance (a VM's hot-plugged disk, a
 * container's mount), detached, and grown in place; each is idempotent (a restarted agent repeats
 * the step it was in). An instance whose config lists volumes gets them at boot, and one with a
 * `root_volume` boots from it.
 */
export interface VolumeAttach {
  /** Attach (to the running instance at once; a stopped one gets it at boot). Returns the handle to keep (it lists the instance's volumes) and the device name the guest most likely sees (a hint). */
  attachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle; device: string | null }>;
  detachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle }>;
  /** The volume's file has grown to `bytes`: let the running instance see it. */
  volumeResized(handle: TaskHandle, v: VolumeDisk, bytes: number): Promise<void>;
  /** Run `fn` (a copy of the volume) with the instance quiesced: no write reaches the file meanwhile. */
  quiesced<T>(handle: TaskHandle, v: VolumeDisk, fn: () => Promise<T>): Promise<T>;
}

/** Optional (`console`): the console's output so far, and an interactive console. */
export interface Consoles {
  consoleLog(handle: TaskHandle, opts?: { tailBytes?: number }): Promise<string>;
  console(handle: TaskHandle): Promise<TtyExec>;
}

interface ByCapability {
  exec: Required<Pick<Driver, 'exec'>>;
  terminal: TerminalExec;
  pause: Freezable;
  suspend: Suspendable;
  instances: Instances;
  console: Consoles;
  volumes: VolumeAttach;
}

/** The driver as the optional interface of capability `cap`, or undefined when it has not got it. */
export function capable<K extends keyof ByCapability>(driver: Driver, cap: K): (Driver & ByCapability[K]) | undefined {
  return driver.capabilities[cap] ? (driver as Driver & ByCapability[K]) : undefined;
}

/** The methods each capability promises (the conformance suite checks them). */
export const CAPABILITY_METHODS: Record<keyof ByCapability, string[]> = {
  exec: ['exec'],
  terminal: ['execTty'],
  pause: ['freeze', 'thaw'],
  suspend: ['suspend', 'resume', 'suspended'],
  instances: ['prepare', 'boot', 'saveDisk', 'restoreDisk', 'dropDisk', 'exportDisk'],
  console: ['consoleLog', 'console'],
  volumes: ['attachVolume', 'detachVolume', 'volumeResized', 'quiesced'],
};

/** Persisted by the agent; opaque to it. Must be JSON-serialisable. */
export interface TaskHandle {
  driver: string;
  task_id: string;
  started_at: string;
  [k: string]: unknown;
}

export interface ExitResult {
  exit_code: number | null;
  /** Signal name when killed by a signal (e.g. SIGKILL), else null. */
  signal: string | null;
  oom_killed: boolean;
  finished_at: string;
  /** Full human-readable explanation for a non-zero exit, e.g. `exit code 3` or `OOMKilled: …`. */
  error: string | null;
}

export interface TaskState {
  running: boolean;
  pid?: number;
  exit?: ExitResult;
}

export interface ExecResult {
  exit_code: number;
  stdout: string;
  stderr: string;
}

export interface Driver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  fingerprint(): Promise<DriverFingerprint>;
  /** Start the task; resolves once it has been started (not when it exits). Throws DriverError. */
  start(config: TaskConfig): Promise<TaskHandle>;
  /** Resolves when the task exits (works for handles from `start` and from `recover`). */
  wait(handle: TaskHandle): Promise<ExitResult>;
  /** Send `signal`, then SIGKILL after `graceMs`; resolves when the task has exited. Idempotent. */
  stop(handle: TaskHandle, graceMs: number, signal?: string): Promise<void>;
  inspect(handle: TaskHandle): Promise<TaskState>;
  /** After an agent restart: is the task behind this handle still there? Returns the handle to use, or undefined if it is gone (then `inspect` may still report its exit). */
  recover(handle: TaskHandle): Promise<TaskHandle | undefined>;
  /** Free everything the task held (cgroups, bundle, files in `dir` except logs unless `all`). Idempotent. */
  destroy(handle: TaskHandle): Promise<void>;
  /** Run a command in the task's environment (for health checks and `yun task exec`). */
  exec?(handle: TaskHandle, command: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ExecResult>;
}

/** A driver failure with a full, human explanation (never truncated). `fatal` failures are not retried. */
export class DriverError extends Error {
  constructor(message: string, readonly fatal: boolean = true) {
    super(message);
    this.name = 'DriverError';
  }
}
