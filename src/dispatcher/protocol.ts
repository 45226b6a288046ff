/**
 * The agent session protocol: JSON messages over one channel per agent (a mutual-TLS WebSocket
 * for remote agents; an in-memory pair for the agent inside `yun up`).
 */
import type { TaskData, TaskStatus } from '../services/task.js';
import type { DriverFingerprint } from '../drivers/driver.js';
import type { CheckResult } from '../doctor/checks.js';
import type { ServerData, ServerReport } from '../servers/server.js';
import type { VolumeData, VolumeReport } from '../volumes/volume.js';
import type { DeliveredFile } from '../secrets/delivery.js';

export interface NodeDescription {
  hostname: string;
  address: string;
  /** CPUs and memory; disk: the size of the file system holding the agent's data (instances' disks live there). */
  resources: { cpus: number; memory_bytes: number; disk_bytes?: number };
  drivers: Record<string, DriverFingerprint>;
  platform: { os: string; arch: string; kernel: string };
  agent_version: string;
  /** Port of the node's data-plane tunnel (mutual TLS), when it runs one. */
  dataplane_port?: number | null;
  /** The node's data path (portable proxy or a fast path), DNS and overlay support, as `yun node inspect` shows it. */
  dataplane?: Record<string, unknown>;
  /** Features this node cannot offer, with why (the scheduler keeps tasks needing them away). */
  missing_features?: Record<string, string>;
}

export type AgentMessage =
  | { type: 'hello'; node_id: string; description: NodeDescription; tasks: { task_id: string; status: TaskStatus }[]; servers?: { server_id: string; report: ServerReport }[]; volumes?: { volume_id: string; report: VolumeReport }[] }
  | { type: 'server_status'; updates: { server_id: string; report: ServerReport }[] }
  | { type: 'volume_status'; updates: { volume_id: string; report: VolumeReport }[] }
  | { type: 'call_result'; req_id: string; result?: Record<string, unknown>; error?: string }
  | { type: 'heartbeat' }
  | { type: 'status'; updates: { task_id: string; status: TaskStatus }[] }
  | { type: 'logs_data'; req_id: string; lines: LogLine[] }
  | { type: 'logs_end'; req_id: string; error?: string }
  | { type: 'exec_result'; req_id: string; exit_code: number; stdout: string; stderr: string; error?: string }
  | { type: 'doctor_result'; req_id: string; checks: CheckResult[] }
  | { type: 'tty_output'; req_id: string; data: string }
  | { type: 'tty_exit'; req_id: string; exit_code: number; error?: string };

export type ManagerMessage =
  | { type: 'welcome'; heartbeat_ms: number; node_id: string; manager_version: string; manager_time: number }
  | { type: 'doctor_request'; req_id: string; cluster_hosts: string[] }
  | { type: 'tty_start'; req_id: string; task_id: string; command: string[]; rows: number; cols: number; console?: boolean }
  | { type: 'tty_input'; req_id: string; data: string }
  | { type: 'tty_resize'; req_id: string; rows: number; cols: number }
  | { type: 'tty_close'; req_id: string }
  | import('../dataplane/controller.js').EndpointsMessage
  | { type: 'assignments'; tasks: AssignedTask[] }
  | ({ type: 'task' } & AssignedTask)
  | { type: 'task_removed'; id: string }
  | { type: 'servers'; servers: AssignedServer[] }
  | { type: 'server'; server: AssignedServer }
  | { type: 'server_removed'; id: string }
  | { type: 'volumes'; volumes: AssignedVolume[] }
  | { type: 'volume'; volume: AssignedVolume }
  | { type: 'volume_removed'; id: string }
  | { type: 'call'; req_id: string; method: string; params: Record<string, unknown> }
  | { type: 'logs_request'; req_id: string; task_ids: string[]; tail: number | null; since: string | null; follow: boolean }
  | { type: 'logs_cancel'; req_id: string }
  | { type: 'exec_request'; req_id: string; task_id: string; command: string[]; timeout_ms: number }
  | { type: 'error'; code: string; detail: string };

/** A task as its node gets it: with its secrets and configs while it has yet to start. */
export interface AssignedTask {
  id: string;
  data: TaskData;
  files?: DeliveredFile[];
}

/** A server as its node gets it: with its secrets and configs when the node is to build or boot it. */
export interface AssignedServer {
  id: string;
  name: string;
  project_id: string;
  data: ServerData;
  files?: DeliveredFile[];
}

/** A volume as its node gets it. */
export interface AssignedVolume {
  id: string;
  name: string;
  project_id: string;
  data: VolumeData;
}

export interface LogLine {
  task_id: string;
  /** RFC 3339 time the line was read. */
  t: string;
  /** stdout | stderr */
  s: 'stdout' | 'stderr';
  l: string;
}

/** A bidirectional message channel. */
export interface Channel<Out, In> {
  send(msg: Out): void;
  onMessage(fn: (msg: In) => void): void;
  onClose(fn: (why: string) => void): void;
  close(why?: string): void;
  readonly open: boolean;
}

/** Two connected in-memory channels (the agent inside `yun up` talks to its manager this way). */
export function channelPair<A, B>(): [Channel<A, B>, Channel<B, A>] {
  type End<O, I> = Channel<O, I> & { deliver(m: I): void; closed(why: string): void };
  const make = <O, I>(): End<O, I> => {
    const handlers: ((m: I) => void)[] = [];
    const closers: ((why: string) => void)[] = [];
    const end: End<O, I> = {
      open: true,
      send: () => undefined,
      onMessage: (fn) => { handlers.push(fn); },
      onClose: (fn) => { closers.push(fn); },
      close: () => undefined,
      deliver: (m) => { for (const h of handlers) h(m); },
      closed: (why) => {
        if (!end.open) return;
        (end as { open: boolean }).open = false;
        for (const c of closers) c(why);
      },
    };
    return end;
  };
  const a = make<A, B>();
  const b = make<B, A>();
  // Deliver asynchronously, in order, with a structured clone: like a network, no shared objects.
  a.send = (m) => { if (a.open) { const c = structuredClone(m); queueMicrotask(() => b.open && b.deliver(c)); } };
  b.send = (m) => { if (b.open) { const c = structuredClone(m); queueMicrotask(() => a.open && a.deliver(c)); } };
  a.close = (why = 'closed') => { a.closed(why); b.closed(why); };
  b.close = (why = 'closed') => { a.closed(why); b.closed(why); };
  return [a, b];
}
