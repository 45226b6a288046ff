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
  reservedCpu: number;
  reservedMemory: number;
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
  hostPorts: string[];
  maxReplicasPerNode: number;
  /** Global services pin each task to a node. */
  pinnedNode?: string;
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
