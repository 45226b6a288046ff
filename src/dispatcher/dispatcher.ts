import { randomUUID } from 'node:crypto';
import { listAll } from '../store/paging.js';
import type { Logger } from 'pino';
import { YunError } from '../errors/errors.js';
import type { Membership, NodeRole } from '../manager/membership.js';
import type { Change, Op, Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { isTerminal, stateRank, type TaskData, type TaskStatus } from '../services/task.js';
import type { AgentMessage, AssignedServer, AssignedTask, Channel, LogLine, ManagerMessage } from './protocol.js';
import type { FileRefs } from '../secrets/refs.js';
import { serverWantsFiles, wantsFiles, type DeliveredFile, type FileSource } from '../secrets/delivery.js';
import { applyReport } from '../servers/states.js';
import type { ServerData, ServerReport } from '../servers/server.js';
import type { AssignedVolume } from './protocol.js';
import type { VolumeData } from '../volumes/volume.js';
import { applyVolumeReports, attachmentOps } from './volume-reports.js';

export interface DispatcherOptions {
  /** How often agents send a heartbeat. */
  heartbeatMs: number;
  /** A node is marked down when no heartbeat arrived for this long. */
  downAfterMs: number;
}

/** Defaults: heartbeat every 1 s; down after 4 s of silence (so a dead agent is down within 6 s). */
/** Extra time agents get to reconnect after a manager (re)start: more than their backoff cap. */
export const RECONNECT_GRACE_MS = 4000;

export const DEFAULT_DISPATCHER: DispatcherOptions = { heartbeatMs: 1000, downAfterMs: 4000 };

/** An interactive terminal through an agent (exec -it, a server console). */
export interface TtySession {
  input(b: Buffer): void;
  resize(rows: number, cols: number): void;
  close(): void;
}

interface Session {
  nodeId: string;
  role: NodeRole;
  channel: Channel<ManagerMessage, AgentMessage>;
  ready: boolean;
}

interface LogStream {
  onLines(lines: LogLine[]): void;
  onEnd(error?: string): void;
  pending: Set<string>;
}

/**
 * The manager's side of agent sessions: assignments down, task status up, heartbeats. Task status
 * is applied only forward (observed state never goes backwards).
 */
export class Dispatcher {
  private sessions = new Map<string, Session>();
  private unwatch?: () => void;
  private monitor?: NodeJS.Timeout;
  private logStreams = new Map<string, LogStream>();
  private ttys = new Map<string, { nodeId: string; onOutput(b: Buffer): void; onExit(code: number, error?: string): void }>();
  private doctors = new Map<string, (checks: import('../doctor/checks.js').CheckResult[]) => void>();
  private execs = new Map<string, (r: { exit_code: number; stdout: string; stderr: string; error?: string }) => void>();
  private calls = new Map<string, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void; nodeId: string }>();
  private readonly startedAt: number;
  private readyHooks: ((nodeId: string, send: (m: ManagerMessage) => void) => void)[] = [];

  /** Called when an agent's session is ready (after its assignments), with a way to message it. */
  onSessionReady(fn: (nodeId: string, send: (m: ManagerMessage) => void) => void): void {
    this.readyHooks.push(fn);
  }

  /** Send a message to every ready agent. */
  broadcast(m: ManagerMessage): void {
    for (const s of this.sessions.values()) if (s.ready) s.channel.send(m);
  }

  constructor(
    private store: Store,
    private membership: Membership,
    private clock: Clock,
    private log: Logger,
    readonly opts: DispatcherOptions = DEFAULT_DISPATCHER,
    private managerVersion = '0',
    private files?: FileSource,
  ) {
    this.startedAt = clock.now();
  }

  async start(): Promise<void> {
    const rev = await this.store.revision();
    this.unwatch = await this.store.watch(rev, (cs) => this.onChanges(cs));
    this.monitor = setInterval(() => void this.checkHeartbeats(), Math.max(100, Math.min(500, this.opts.downAfterMs / 4)));
    this.monitor.unref();
  }

  stop(): void {
    this.unwatch?.();
    if (this.monitor) clearInterval(this.monitor);
    for (const s of this.sessions.values()) s.channel.close('manager stopping');
    this.sessions.clear();
  }

  connected(nodeId: string): boolean {
    return this.sessions.get(nodeId)?.ready ?? false;
  }

  /** A new agent session (its identity already verified: mTLS or in-process). */
  attach(nodeId: string, role: NodeRole, channel: Channel<ManagerMessage, AgentMessage>): void {
    const old = this.sessions.get(nodeId);
    if (old) old.channel.close('replaced by a new session');
    const session: Session = { nodeId, role, channel, ready: false };
    this.sessions.set(nodeId, session);
    channel.onMessage((m) => {
      void this.onMessage(session, m).catch((e) => this.log.error({ err: e, node_id: nodeId }, 'agent message failed'));
    });
    channel.onClose((why) => {
      if (this.sessions.get(nodeId) === session) this.sessions.delete(nodeId);
      this.log.info({ node_id: nodeId, why }, 'agent session closed');
      for (const [id, s] of this.logStreams) if (s.pending.has(nodeId)) this.endLogs(id, nodeId, 'the node\'s agent disconnected');
      for (const [id, t] of this.ttys) if (t.nodeId === nodeId) { this.ttys.delete(id); t.onExit(-1, 'the node\'s agent disconnected'); }
      for (const [id, c] of this.calls) if (c.nodeId === nodeId) { this.calls.delete(id); c.reject(new YunError('YUN_UNAVAILABLE', `The agent of node ${nodeId} disconnected before it answered`)); }
    });
  }

  private async onMessage(s: Session, m: AgentMessage): Promise<void> {
    switch (m.type) {
      case 'hello': {
        if (m.node_id !== s.nodeId) {
          s.channel.send({ type: 'error', code: 'YUN_FORBIDDEN', detail: `This session belongs to node ${s.nodeId}, not ${m.node_id}` });
          s.channel.close('identity mismatch');
          return;
        }
        const existing = await this.store.get('node', s.nodeId);
        if (!existing) {
          s.channel.send({ type: 'error', code: 'YUN_NODE_REMOVED', detail: `Node ${s.nodeId} was removed from the cluster; join it again with a join token` });
          s.channel.close('node removed');
          return;
        }
        await this.membership.register(s.nodeId, { ...m.description, role: (existing.data.role as NodeRole) ?? s.role });
        s.channel.send({ type: 'welcome', heartbeat_ms: this.opts.heartbeatMs, node_id: s.nodeId, manager_version: this.managerVersion, manager_time: this.clock.now() });
        await this.applyStatus(s, m.tasks);
        const tasks = await listAll(this.store, 'task', { filters: [{ field: 'node_id', op: 'eq', value: s.nodeId }] });
        s.channel.send({ type: 'assignments', tasks: await Promise.all(tasks.map((t) => this.assignedTask(t))) });
        await applyVolumeReports(this.store, s.nodeId, m.volumes ?? [], this.clock.iso(), (id) => s.channel.send({ type: 'volume_removed', id }));
        const volumes = await listAll(this.store, 'volume', { filters: [{ field: 'node_id', op: 'eq', value: s.nodeId }] });
        s.channel.send({ type: 'volumes', volumes: volumes.map(assignedVolume) });
        await this.applyServerReports(s, m.servers ?? []);
        const servers = await listAll(this.store, 'server', { filters: [{ field: 'node_id', op: 'eq', value: s.nodeId }] });
        s.channel.send({ type: 'servers', servers: await Promise.all(servers.map((o) => this.assignedServer(o))) });
        s.ready = true;
        for (const f of this.readyHooks) f(s.nodeId, (msg) => s.channel.send(msg));
        this.log.info({ node_id: s.nodeId, tasks: tasks.length }, 'agent session ready');
        return;
      }
      case 'heartbeat':
        this.membership.heartbeat(s.nodeId);
        return;
      case 'status':
        this.membership.heartbeat(s.nodeId);
        await this.applyStatus(s, m.updates);
        return;
      case 'logs_data':
        this.logStreams.get(m.req_id)?.onLines(m.lines);
        return;
      case 'logs_end':
        this.endLogs(m.req_id, s.nodeId, m.error);
        return;
      case 'tty_output':
        this.ttys.get(m.req_id)?.onOutput(Buffer.from(m.data, 'base64'));
        return;
      case 'tty_exit': {
        const t = this.ttys.get(m.req_id);
        this.ttys.delete(m.req_id);
        t?.onExit(m.exit_code, m.error);
        return;
      }
      case 'doctor_result': {
        const r = this.doctors.get(m.req_id);
        this.doctors.delete(m.req_id);
        r?.(m.checks);
        return;
      }
      case 'server_status':
        this.membership.heartbeat(s.nodeId);
        await this.applyServerReports(s, m.updates);
        return;
      case 'volume_status':
        this.membership.heartbeat(s.nodeId);
        await applyVolumeReports(this.store, s.nodeId, m.updates, this.clock.iso(), (id) => s.channel.send({ type: 'volume_removed', id }));
        return;
      case 'call_result': {
        const c = this.calls.get(m.req_id);
        this.calls.delete(m.req_id);
        if (!c) return;
        if (m.error !== undefined) c.reject(new YunError('YUN_UNAVAILABLE', m.error, { hint: '' }));
        else c.resolve(m.result ?? {});
        return;
      }
      case 'exec_result': {
        const r = this.execs.get(m.req_id);
        this.execs.delete(m.req_id);
        r?.(m);
        return;
      }
    }
  }

  /** Apply task status reports, forward only; a task that no longer exists is removed on the agent. */
  private async applyStatus(s: Session, updates: { task_id: string; status: TaskStatus }[]): Promise<void> {
    if (updates.length === 0) return;
    const latest = new Map<string, TaskStatus>();
    for (const u of updates) latest.set(u.task_id, u.status);
    for (let attempt = 0; attempt < 5 && latest.size > 0; attempt++) {
      const ops: Op[] = [];
      for (const [id, st] of latest) {
        const t = await this.store.get('task', id);
        if (!t || (t.data as TaskData).node_id !== s.nodeId) {
          s.channel.send({ type: 'task_removed', id });
          latest.delete(id);
          continue;
        }
        const d = t.data as TaskData;
        const forward = stateRank(st.state) > stateRank(d.status.state);
        const same = stateRank(st.state) === stateRank(d.status.state);
        if (!forward && !(same && (st.health !== d.status.health || st.message !== d.status.message || st.pid !== d.status.pid || JSON.stringify(st.ports) !== JSON.stringify(d.status.ports)))) {
          latest.delete(id);
          continue;
        }
        if (isTerminal(st.state) && d.desired_state === 'remove') {
          ops.push({ op: 'delete', kind: 'task', id, version: t.version });
        } else {
          ops.push({ op: 'update', kind: 'task', id, version: t.version, data: { ...d, status: { ...d.status, ...st } } });
        }
      }
      if (ops.length === 0) return;
      try {
        await this.store.batch(ops);
        return;
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        // Someone else wrote one of these tasks meanwhile: read again and retry.
      }
    }
  }

  /** Apply servers' reports from their node (re-reading on a conflict); a server gone is removed there too. */
  private async applyServerReports(s: Session, updates: { server_id: string; report: ServerReport }[]): Promise<void> {
    const latest = new Map<string, ServerReport>();
    for (const u of updates) latest.set(u.server_id, u.report);
    for (const [id, report] of latest) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const o = await this.store.get('server', id);
        if (!o || (o.data as ServerData).node_id !== s.nodeId) {
          s.channel.send({ type: 'server_removed', id });
          break;
        }
        const now = this.clock.iso();
        const next = applyReport(o.data as ServerData, report, now);
        try {
          // The server and its volumes in one batch: a volume is never left attached to a server that is gone.
          const att = await attachmentOps(this.store, o.data as ServerData, id, report, next === 'delete', now);
          const ops: Op[] = att.ops;
          const after = next === 'delete' || !att.volumes ? next : { ...next, volumes: att.volumes };
          if (after === 'delete') ops.push({ op: 'delete', kind: 'server', id, version: o.version });
          else if (JSON.stringify(after) !== JSON.stringify(o.data)) ops.push({ op: 'update', kind: 'server', id, version: o.version, data: after });
          if (ops.length) await this.store.batch(ops);
          break;
        } catch (e) {
          if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        }
      }
    }
  }

  /** A task for its agent; one about to start carries its secrets and configs, read at this moment. */
  private async assignedTask(t: { id: string; project_id: string | null; data: Record<string, unknown> }): Promise<AssignedTask> {
    const data = t.data as TaskData;
    const files = wantsFiles(data) ? await this.readFiles(t.project_id, data.spec, { task_id: t.id }) : undefined;
    return { id: t.id, data, ...(files ? { files } : {}) };
  }

  /** A server for its agent; one its node is to build or boot carries its secrets and configs. */
  private async assignedServer(o: { id: string; name: string; project_id: string; data: Record<string, unknown> }): Promise<AssignedServer> {
    const data = o.data as ServerData;
    const files = serverWantsFiles(data) ? await this.readFiles(o.project_id, data, { server_id: o.id }) : undefined;
    return { id: o.id, name: o.name, project_id: o.project_id, data, ...(files ? { files } : {}) };
  }

  private async readFiles(projectId: string | null, refs: FileRefs, who: Record<string, string>): Promise<DeliveredFile[] | undefined> {
    if (!this.files) return undefined;
    try {
      return await this.files({ project_id: projectId, refs });
    } catch (e) {
      // Sent without them: the agent refuses to run it (never without its secrets).
      this.log.error({ err: e, ...who }, 'reading secrets and configs failed');
      return undefined;
    }
  }

  /** Changes go out in the order they came, even when a task's files take a moment to read. */
  private outbox: Promise<void> = Promise.resolve();

  private onChanges(changes: Change[]): void {
    this.outbox = this.outbox.then(() => this.sendChanges(changes)).catch((e) => this.log.error({ err: e }, 'sending changes to agents failed'));
  }

  private async sendChanges(changes: Change[]): Promise<void> {
    for (const c of changes) {
      if (c.kind === 'server') {
        const d = c.object.data as ServerData;
        const s = d.node_id ? this.sessions.get(d.node_id) : undefined;
        if (!s?.ready) continue;
        if (c.type === 'delete') s.channel.send({ type: 'server_removed', id: c.id });
        else s.channel.send({ type: 'server', server: await this.assignedServer(c.object) });
        continue;
      }
      if (c.kind === 'volume') {
        const d = c.object.data as VolumeData;
        const s = d.node_id ? this.sessions.get(d.node_id) : undefined;
        if (!s?.ready) continue;
        if (c.type === 'delete') s.channel.send({ type: 'volume_removed', id: c.id });
        else s.channel.send({ type: 'volume', volume: assignedVolume(c.object) });
        continue;
      }
      if (c.kind !== 'task') continue;
      const d = c.object.data as TaskData;
      if (!d.node_id) continue;
      const s = this.sessions.get(d.node_id);
      if (!s?.ready) continue;
      if (c.type === 'delete') s.channel.send({ type: 'task_removed', id: c.id });
      else s.channel.send({ type: 'task', ...(await this.assignedTask(c.object)) });
    }
  }

  private async checkHeartbeats(): Promise<void> {
    const now = this.clock.now();
    const nodes = (await listAll(this.store, 'node', { filters: [{ field: 'status', op: 'eq', value: 'ready' }] }));
    for (const n of nodes) {
      if (n.id === this.membership.localNodeId && this.sessions.has(n.id)) continue;
      const hb = this.membership.lastHeartbeat(n.id);
      // After a manager start, agents need time to notice and reconnect (their backoff is capped
      // at 3 s): nodes never heard from since get that much more before they are marked down.
      const last = hb ? Date.parse(hb) : this.startedAt + RECONNECT_GRACE_MS;
      if (now - last > this.opts.downAfterMs) {
        const secs = ((now - last) / 1000).toFixed(1);
        this.log.warn({ node_id: n.id, node: n.name, silent_s: secs }, 'node down: heartbeats missed');
        await this.membership.setStatus(n.id, 'down', `no heartbeat for ${secs}s (down after ${this.opts.downAfterMs / 1000}s)`).catch(() => undefined);
        // Its session is over too: when the node is heard from again (a partition heals), it says
        // hello anew and is registered ready, instead of heartbeating into a session marked down.
        this.sessions.get(n.id)?.channel.close('no heartbeat: the node was marked down');
      }
    }
  }

  // ---- logs and exec through agents --------------------------------------------------------------

  /** Ask the agents of `nodes` for the logs of `taskIds`; lines stream to `onLines` until every node ended. */
  streamLogs(taskIdsByNode: Map<string, string[]>, opts: { tail: number | null; since: string | null; follow: boolean }, onLines: (l: LogLine[]) => void, onEnd: (errors: string[]) => void): () => void {
    const reqId = randomUUID();
    const errors: string[] = [];
    const pending = new Set<string>();
    const stream: LogStream = {
      pending,
      onLines,
      onEnd: (err) => { if (err) errors.push(err); },
    };
    this.logStreams.set(reqId, stream);
    for (const [nodeId, taskIds] of taskIdsByNode) {
      const s = this.sessions.get(nodeId);
      if (!s?.ready) {
        errors.push(`node ${nodeId} is not connected: its logs cannot be read now`);
        continue;
      }
      pending.add(nodeId);
      s.channel.send({ type: 'logs_request', req_id: reqId, task_ids: taskIds, tail: opts.tail, since: opts.since, follow: opts.follow });
    }
    const finishIfDone = () => {
      if (pending.size === 0 && this.logStreams.get(reqId) === stream) {
        this.logStreams.delete(reqId);
        onEnd(errors);
      }
    };
    (stream as LogStream & { finish: () => void }).finish = finishIfDone;
    queueMicrotask(finishIfDone);
    return () => {
      for (const nodeId of pending) this.sessions.get(nodeId)?.channel.send({ type: 'logs_cancel', req_id: reqId });
      this.logStreams.delete(reqId);
    };
  }

  private endLogs(reqId: string, nodeId: string, error?: string): void {
    const s = this.logStreams.get(reqId) as (LogStream & { finish?: () => void }) | undefined;
    if (!s) return;
    if (error) s.onEnd(error);
    s.pending.delete(nodeId);
    s.finish?.();
  }

  /** An interactive command with a terminal inside a task (`yun task exec -it`), or a server's console (`console`). */
  openTty(nodeId: string, taskId: string, command: string[], size: { rows: number; cols: number }, onOutput: (b: Buffer) => void, onExit: (code: number, error?: string) => void, opts: { console?: boolean } = {}): TtySession {
    const s = this.sessions.get(nodeId);
    if (!s?.ready) throw new YunError('YUN_UNAVAILABLE', `Node ${nodeId} is not connected`, { hint: 'Check `yun node ls`; retry when it is ready.' });
    const reqId = randomUUID();
    this.ttys.set(reqId, { nodeId, onOutput, onExit });
    s.channel.send({ type: 'tty_start', req_id: reqId, task_id: taskId, command, rows: size.rows, cols: size.cols, ...(opts.console ? { console: true } : {}) });
    return {
      input: (b) => s.channel.send({ type: 'tty_input', req_id: reqId, data: b.toString('base64') }),
      resize: (rows, cols) => s.channel.send({ type: 'tty_resize', req_id: reqId, rows, cols }),
      close: () => {
        if (this.ttys.delete(reqId)) s.channel.send({ type: 'tty_close', req_id: reqId });
      },
    };
  }

  /** Run `yun doctor`'s checks on a node (through its agent). */
  async doctor(nodeId: string, clusterHosts: string[], timeoutMs = 15_000): Promise<import('../doctor/checks.js').CheckResult[]> {
    const s = this.sessions.get(nodeId);
    if (!s?.ready) throw new YunError('YUN_UNAVAILABLE', `Node ${nodeId} is not connected, so its checks cannot run`, { hint: 'Start its agent (`yun agent`), then run yun doctor again.' });
    const reqId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.doctors.delete(reqId);
        reject(new YunError('YUN_UNAVAILABLE', `Node ${nodeId} did not answer its checks within ${timeoutMs} ms`));
      }, timeoutMs);
      this.doctors.set(reqId, (checks) => { clearTimeout(timer); resolve(checks); });
      s.channel.send({ type: 'doctor_request', req_id: reqId, cluster_hosts: clusterHosts });
    });
  }

  /** Ask a node's agent something (`method` with `params`); rejects with the agent's error, or when it does not answer. */
  async call(nodeId: string, method: string, params: Record<string, unknown>, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const s = this.sessions.get(nodeId);
    if (!s?.ready) throw new YunError('YUN_UNAVAILABLE', `Node ${nodeId} is not connected, so it cannot answer`, { hint: 'Check `yun node ls`; retry when the node is ready.' });
    const reqId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(reqId);
        reject(new YunError('YUN_UNAVAILABLE', `Node ${nodeId} did not answer ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(reqId, {
        nodeId,
        resolve: (r) => { clearTimeout(timer); resolve(r); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      s.channel.send({ type: 'call', req_id: reqId, method, params });
    });
  }

  /** Run a command inside a task on its node. */
  async exec(nodeId: string, taskId: string, command: string[], timeoutMs: number): Promise<{ exit_code: number; stdout: string; stderr: string; error?: string }> {
    const s = this.sessions.get(nodeId);
    if (!s?.ready) throw new YunError('YUN_UNAVAILABLE', `The task's node ${nodeId} is not connected`, { hint: 'Check `yun node ls`; retry when it is ready.' });
    const reqId = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.execs.delete(reqId);
        resolve({ exit_code: -1, stdout: '', stderr: '', error: `no answer from the node within ${timeoutMs + 5000} ms` });
      }, timeoutMs + 5000);
      this.execs.set(reqId, (r) => { clearTimeout(timer); resolve(r); });
      s.channel.send({ type: 'exec_request', req_id: reqId, task_id: taskId, command, timeout_ms: timeoutMs });
    });
  }
}

function assignedVolume(o: { id: string; name: string; project_id: string; data: Record<string, unknown> }): AssignedVolume {
  return { id: o.id, name: o.name, project_id: o.project_id, data: o.data as VolumeData };
}

