import type { PortMapping } from '../drivers/driver.js';
import type { TaskTemplate } from './spec.js';

/** Observed task states, in the only order they may move (DESIGN.md, model). */
export const TASK_STATES = [
  'new', 'pending', 'assigned', 'accepted', 'preparing', 'starting', 'running',
  'complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Desired states the orchestrator sets. */
export type DesiredState = 'running' | 'shutdown' | 'remove';

export function stateRank(s: string): number {
  return (TASK_STATES as readonly string[]).indexOf(s);
}

/** Has the task stopped for good (complete or beyond)? */
export function isTerminal(s: string): boolean {
  return stateRank(s) >= stateRank('complete');
}

/** Is the task holding (or about to hold) resources on its node? */
export function isActive(t: TaskData): boolean {
  return t.node_id !== null && !isTerminal(t.status.state) && stateRank(t.status.state) >= stateRank('assigned');
}

export interface TaskStatus {
  state: TaskState;
  message: string;
  error: string | null;
  exit_code: number | null;
  timestamp: string;
  pid?: number | null;
  ports?: PortMapping[];
  health?: 'starting' | 'healthy' | 'unhealthy' | null;
  /** When the task became `running` (for the update monitor and restart windows). */
  started_at?: string | null;
}

export interface TaskData extends Record<string, unknown> {
  service_id: string;
  service_name: string;
  /** Replicated: 1..N. Global: null (the node id is the slot). */
  slot: number | null;
  node_id: string | null;
  /** Global services: the node this task is for (set before it is scheduled). */
  pinned_node?: string | null;
  desired_state: DesiredState;
  status: TaskStatus;
  spec: TaskTemplate;
  spec_version: number;
  /** Published ports of the service (endpoint), for host-mode port conflicts and the data plane. */
  ports: { target: number; published?: number; mode: 'ingress' | 'host'; protocol: 'tcp' | 'udp'; name?: string }[];
  /** Overlay networks the task joins, with its address on each (set when it is scheduled). */
  networks?: TaskNetwork[];
  /** When the task may start at the earliest (restart delay). */
  not_before: string | null;
  /** Why the orchestrator shut the task down (scale down, node down, update…). */
  shutdown_reason?: string | null;
}

export interface TaskNetwork {
  id: string;
  address: string | null;
}

/** The API name of a task: `service.slot` (or `service.node` for global services). */
export function taskName(t: TaskData): string {
  return `${t.service_name}.${t.slot ?? (t.pinned_node ?? t.node_id ?? '?')}`;
}
