/**
 * The one driver contract (DESIGN.md, convention 5). Every driver (process, oci, docker, …) lives
 * in its own folder and passes the same conformance suite (src/drivers/conformance.ts).
 *
 * A driver is stateless between calls: everything it needs to find a running task again after the
 * agent restarts is in the `TaskHandle` it returned from `start`, which the agent persists.
 */

export interface DriverFingerprint {
  available: boolean;
  /** Why not, when unavailable (shown by `yun node inspect`). */
  reason?: string;
  /** Free-form facts, e.g. { cgroups: 'v1', root: 'true', runc: '1.1.5' }. */
  attributes?: Record<string, string>;
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
}

/** An image ready to run on this node. */
export interface ImageInfo {
  /** The reference as the service gives it, e.g. `busybox` or `busybox:latest`. */
  ref: string;
  /** Digest of the image manifest (`sha256:…`). */
  digest: string;
  /** The image's root file system, all layers applied: read-only, shared by every task of the image (an overlay lower). */
  rootfs: string;
  /** From the image config. */
  config: { entrypoint: string[]; cmd: string[]; env: string[]; workdir: string; user: string };
  /** Write the image as a `docker save` archive and return its path (for the docker driver). */
  exportDockerArchive(): Promise<string>;
}

/** Optional: drivers whose tasks can be frozen and thawed (cgroup freezer). */
export interface Freezable {
  freeze(handle: TaskHandle): Promise<void>;
  thaw(handle: TaskHandle): Promise<void>;
}

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
