/** The scheduler works on an in-memory snapshot; it does no I/O (DESIGN.md, convention 1). */

export interface Constraint {
  /** `node.id`, `node.hostname`, `node.role`, `node.labels.zone` … */
  key: string;
  op: '==' | '!=';
  value: string;
  text: string;
}

export interface SchedNode {
  id: string;
  name: string;
  role: string;
  labels: Record<string, string>;
  ready: boolean;
  availability: 'active' | 'pause' | 'drain';
  drivers: Set<string>;
  /** Features this node cannot offer, with why (from its fingerprint / doctor), e.g. { overlay: 'no vxlan' }. */
  missingFeatures: Map<string, string>;
  cpus: number;
  memoryBytes: number;
  /** Reservations in the node's own terms (CPUs, bytes): a task's as it is; a server's vCPUs and RAM divided by the allocation ratios. */
  reservedCpu: number;
  reservedMemory: number;
  /** The size of the node's disk for instances (servers' root, ephemeral and swap disks), and what servers hold of it. */
  diskBytes?: number;
  reservedDisk?: number;
  /** Allocation ratios for servers (Nova's): vCPUs per CPU (default 16), RAM overcommit (default 1.5). */
  cpuRatio?: number;
  ramRatio?: number;
  /** `tcp/8080` for every host-mode published port in use. */
  hostPorts: Set<string>;
  /** Active tasks per service on this node. */
  serviceTasks: Map<string, number>;
  totalTasks: number;
}

export interface SchedTask {
  id: string;
  serviceId: string;
  /** Tasks of one service and spec share filters: the key groups them. */
  groupKey: string;
  /** Any of these drivers will do (a service without --driver and with an image: oci or docker). */
  drivers: string[];
  constraints: Constraint[];
  /** Label keys to spread over (`node.labels.X` → X), in order. */
  spreadOver: string[];
  reserveCpu: number;
  reserveMemory: number;
  /** Servers: their flavor's vCPUs, RAM and disk (scaled by the node's allocation ratios when reserved). */
  reserveVcpus?: number;
  reserveRam?: number;
  reserveDisk?: number;
  hostPorts: string[];
  maxReplicasPerNode: number;
  /** Global services pin each task to a node. */
  pinnedNode?: string;
  /** A server with volumes goes where they are (a volume is on one node's disk). */
  volumeNode?: { node: string; volumes: string[] };
  requiredFeatures: string[];
}

export interface Placement {
  taskId: string;
  nodeId: string;
}

export interface Unplaced {
  taskId: string;
  reason: string;
}

export interface ScheduleResult {
  placements: Placement[];
  unplaced: Unplaced[];
}

export const DEFAULT_CPU_RATIO = 16;
export const DEFAULT_RAM_RATIO = 1.5;

/** What `t` reserves of `n`'s CPUs and memory, in the node's terms. */
export function cpuNeed(t: SchedTask, n: SchedNode): number {
  return t.reserveCpu + (t.reserveVcpus ?? 0) / (n.cpuRatio ?? DEFAULT_CPU_RATIO);
}

export function memoryNeed(t: SchedTask, n: SchedNode): number {
  return t.reserveMemory + Math.ceil((t.reserveRam ?? 0) / (n.ramRatio ?? DEFAULT_RAM_RATIO));
}
