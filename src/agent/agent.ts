import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Driver, TtyExec } from '../drivers/driver.js';
import type { AgentMessage, Channel, LogLine, ManagerMessage, NodeDescription } from '../dispatcher/protocol.js';
import { isTerminal, type TaskData, type TaskStatus } from '../services/task.js';
import { RecordStore, TaskStore, type ServerRecord, type TaskRecord } from './persist.js';
import { newServerRecord, ServerRunner, type ServerHost } from './server-runner.js';
import type { ServerReport } from '../servers/server.js';
import type { VolumeReport } from '../volumes/volume.js';
import { newVolumeRecord, VolumeRunner, type VolumeHost, type VolumeRecord } from './volume-runner.js';
import { VolumeFiles } from './volume-files.js';
import { PortAllocator } from './ports.js';
import { TaskRunner, type RunnerHost } from './task-runner.js';
import { defaultFilesRoot, TaskFiles } from './task-files.js';
import type { DeliveredFile } from '../secrets/delivery.js';
import type { NodeImages } from './images.js';
import { AgentDataplane } from './dataplane.js';

export interface AgentOptions {
  dataDir: string;
  nodeId: string;
  description: () => Promise<NodeDescription>;
  drivers: Driver[];
  /** Open a session to the manager (mTLS WebSocket, or in-process). */
  connect: () => Promise<Channel<AgentMessage, ManagerMessage>>;
  log: Logger;
  /** Images on this node (image drivers). */
  images?: NodeImages;
  /** Port of the service DNS on this node's address (default 53; 0: none). */
  dnsPort?: number;
  /** Port of the data-plane tunnel (default 7444; 0: none) and the TLS material it needs. */
  tunnelPort?: number;
  tls?: { cert: string; key: string; ca: string };
  /** Where tasks' secrets and configs are kept: a tmpfs (default /dev/shm/yunstack/NODE). */
  filesDir?: string;
  /** Reconnect backoff: first delay and cap. */
  backoffMs?: { initial: number; max: number };
}

/**
 * The agent: one session with the manager (assignments down, status up), a runner per task, and
 * reattachment to tasks that kept running while the agent was away. Tasks keep running when the
 * manager is unreachable; their status is reported once the session is back.
 */
export class Agent {
  private runners = new Map<string, TaskRunner>();
  private servers = new Map<string, ServerRunner>();
  private pendingServers = new Map<string, ServerReport>();
  private readonly serverHost: ServerHost;
  private volumes = new Map<string, VolumeRunner>();
  private pendingVolumes = new Map<string, VolumeReport>();
  private readonly volumeHost: VolumeHost;
  private channel?: Channel<AgentMessage, ManagerMessage>;
  private heartbeat?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private pending = new Map<string, TaskStatus>();
  private stopped = false;
  private backoff: number;
  private readonly store: TaskStore;
  private readonly host: RunnerHost;
  private connectedOnce?: () => void;
  readonly connected: Promise<void>;
  private logFollows = new Map<string, (() => void)[]>();
  private welcomed = false;
  readonly dataplane: AgentDataplane;
  private ttys = new Map<string, TtyExec>();
  /** This node's clock minus the manager's, measured at the last welcome. */
  private skewMs: number | null = null;

  constructor(private opts: AgentOptions, address: string) {
    this.store = new TaskStore(join(opts.dataDir, 'tasks'));
    this.backoff = opts.backoffMs?.initial ?? 250;
    this.connected = new Promise((r) => { this.connectedOnce = r; });
    const drivers = new Map(opts.drivers.map((d) => [d.name, d]));
    const files = new TaskFiles(opts.filesDir ?? defaultFilesRoot(opts.nodeId));
    this.dataplane = new AgentDataplane({ nodeId: opts.nodeId, address, dnsPort: opts.dnsPort ?? 53, tunnelPort: opts.tunnelPort ?? 7444, tls: opts.tls, log: opts.log.child({ component: 'dataplane' }) });
    this.host = {
      drivers,
      store: this.store,
      ports: new PortAllocator(),
      log: opts.log,
      cgroupParent: `yunstack/${opts.nodeId}`,
      address,
      nodeId: opts.nodeId,
      images: opts.images,
      overlay: this.dataplane.overlay,
      files,
      report: (id, status) => this.queueStatus(id, status),
      forget: (id) => { this.runners.delete(id); this.pending.delete(id); },
    };
    this.serverHost = {
      drivers,
      store: new RecordStore<ServerRecord>(join(opts.dataDir, 'servers'), 'server.json'),
      log: opts.log.child({ component: 'servers' }),
      cgroupParent: `yunstack/${opts.nodeId}`,
      images: opts.images,
      overlay: this.dataplane.overlay,
      files,
      report: (id, report) => {
        this.pendingServers.set(id, report);
        if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 15);
      },
      forget: (id) => { this.servers.delete(id); this.pendingServers.delete(id); },
      volumes: {
        file: (id) => this.volumeHost.files.file(id),
        whenCreated: async (id, timeoutMs) => {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const v = this.volumes.get(id);
            if (v?.created) return;
            if (v && v.record.report.fault) throw new Error(`volume ${v.record.volume.name} could not be made: ${v.record.report.fault.details}`);
            if (Date.now() > deadline) throw new Error(`volume ${id} was not made on this node within ${Math.round(timeoutMs / 1000)} s`);
            await new Promise((r) => setTimeout(r, 200));
          }
        },
      },
    };
    this.volumeHost = {
      files: new VolumeFiles(join(opts.dataDir, 'volumes')),
      store: new RecordStore<VolumeRecord>(join(opts.dataDir, 'volumes'), 'volume.json'),
      log: opts.log.child({ component: 'volumes' }),
      images: opts.images,
      attachedInstance: (volumeId) => {
        for (const r of this.servers.values()) {
          const hook = r.volumeHook(volumeId);
          if (hook) return hook;
        }
        return undefined;
      },
      report: (id, report) => {
        this.pendingVolumes.set(id, report);
        if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 15);
      },
      forget: (id) => { this.volumes.delete(id); this.pendingVolumes.delete(id); },
    };
  }

  get volumeRunners(): VolumeRunner[] {
    return [...this.volumes.values()];
  }

  get serverRunners(): ServerRunner[] {
    return [...this.servers.values()];
  }

  get tasks(): TaskRunner[] {
    return [...this.runners.values()];
  }

  /** Reattach to tasks on disk, then keep a session open with the manager. */
  async start(): Promise<void> {
    await this.dataplane.start();
    const records = this.store.loadAll();
    const servers = this.serverHost.store.loadAll();
    this.host.files.sweep(new Set([...records.filter((r) => !isTerminal(r.status.state)).map((r) => r.id), ...servers.map((r) => r.id)]));
    for (const rec of records) {
      const runner = new TaskRunner(this.host, rec);
      this.runners.set(rec.id, runner);
      await runner.reattach();
      if (!rec.reported) this.pending.set(rec.id, rec.status);
    }
    for (const rec of this.volumeHost.store.loadAll()) {
      const runner = new VolumeRunner(this.volumeHost, rec);
      this.volumes.set(rec.id, runner);
      runner.resume();
    }
    for (const rec of servers) {
      const runner = new ServerRunner(this.serverHost, rec);
      this.servers.set(rec.id, runner);
      await runner.reattach();
    }
    void this.connectLoop();
  }

  async stop(opts: { stopTasks?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.channel?.close('agent stopping');
    await this.dataplane.stop();
    for (const r of this.runners.values()) r.logs.stop();
    if (opts.stopTasks) {
      await Promise.all([...this.runners.values()].map(async (r) => {
        r.update({ ...r.record.data, desired_state: 'shutdown', shutdown_reason: 'agent stopped' });
        await r.settled();
      }));
    }
  }

  private async connectLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        const ch = await this.opts.connect();
        if (this.stopped) { ch.close('agent stopping'); return; }
        await this.runSession(ch);
        this.backoff = this.opts.backoffMs?.initial ?? 250;
      } catch (e) {
        this.opts.log.warn({ err: (e as Error).message, retry_ms: this.backoff }, 'cannot reach the manager; retrying');
      }
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, this.backoff));
      this.backoff = Math.min(this.backoff * 2, this.opts.backoffMs?.max ?? 3000);
    }
  }

  private runSession(ch: Channel<AgentMessage, ManagerMessage>): Promise<void> {
    return new Promise<void>((resolve) => {
      this.channel = ch;
      this.welcomed = false;
      ch.onClose((why) => {
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.heartbeat = undefined;
        if (this.channel === ch) this.channel = undefined;
        if (!this.stopped) this.opts.log.warn({ why }, 'session with the manager closed');
        for (const cancels of this.logFollows.values()) for (const c of cancels) c();
        this.logFollows.clear();
        resolve();
      });
      ch.onMessage((m) => this.onMessage(ch, m));
      void Promise.all([this.opts.description(), this.dataplane.describe()]).then(([description, dp]) => {
        const tasks = [...this.runners.values()].map((r) => ({ task_id: r.id, status: r.record.status }));
        const servers = [...this.servers.values()].map((r) => ({ server_id: r.id, report: r.record.report }));
        const volumes = [...this.volumes.values()].map((r) => ({ volume_id: r.id, report: r.record.report }));
        this.pending.clear(); // the hello carries every status as of now
        this.pendingServers.clear();
        this.pendingVolumes.clear();
        const missing = { ...dp.missing_features, ...(description.missing_features ?? {}) };
        ch.send({ type: 'hello', node_id: this.opts.nodeId, description: { ...description, ...dp, missing_features: missing, dataplane_port: this.dataplane.tunnelPort }, tasks, servers, volumes });
      });
    });
  }

  private onMessage(ch: Channel<AgentMessage, ManagerMessage>, m: ManagerMessage): void {
    switch (m.type) {
      case 'welcome':
        this.welcomed = true;
        this.skewMs = Date.now() - m.manager_time;
        this.flush();
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => ch.send({ type: 'heartbeat' }), m.heartbeat_ms);
        this.heartbeat.unref();
        this.connectedOnce?.();
        return;
      case 'assignments': {
        const ids = new Set(m.tasks.map((t) => t.id));
        for (const t of m.tasks) this.onTask(t.id, t.data, t.files);
        for (const r of [...this.runners.values()]) if (!ids.has(r.id)) r.remove();
        this.flush();
        return;
      }
      case 'task':
        this.onTask(m.id, m.data, m.files);
        return;
      case 'task_removed':
        this.runners.get(m.id)?.remove();
        return;
      case 'servers': {
        const ids = new Set(m.servers.map((x) => x.id));
        for (const x of m.servers) this.onServer(x);
        for (const r of [...this.servers.values()]) if (!ids.has(r.id)) r.remove();
        return;
      }
      case 'server':
        this.onServer(m.server);
        return;
      case 'server_removed':
        this.servers.get(m.id)?.remove();
        return;
      case 'volumes': {
        const ids = new Set(m.volumes.map((x) => x.id));
        for (const x of m.volumes) this.onVolume(x);
        for (const r of [...this.volumes.values()]) if (!ids.has(r.id)) r.remove();
        return;
      }
      case 'volume':
        this.onVolume(m.volume);
        return;
      case 'volume_removed':
        this.volumes.get(m.id)?.remove();
        return;
      case 'call':
        void this.answer(m.method, m.params).then(
          (result) => ch.send({ type: 'call_result', req_id: m.req_id, result }),
          (e) => ch.send({ type: 'call_result', req_id: m.req_id, error: (e as Error).message }),
        );
        return;
      case 'logs_request':
        this.serveLogs(ch, m.req_id, m.task_ids, m.tail, m.since, m.follow);
        return;
      case 'logs_cancel':
        for (const c of this.logFollows.get(m.req_id) ?? []) c();
        this.logFollows.delete(m.req_id);
        return;
      case 'exec_request': {
        const r = this.runners.get(m.task_id);
        if (!r) { ch.send({ type: 'exec_result', req_id: m.req_id, exit_code: -1, stdout: '', stderr: '', error: `task ${m.task_id} is not on this node` }); return; }
        r.exec(m.command, m.timeout_ms).then(
          (res) => ch.send({ type: 'exec_result', req_id: m.req_id, ...res }),
          (e) => ch.send({ type: 'exec_result', req_id: m.req_id, exit_code: -1, stdout: '', stderr: '', error: (e as Error).message }),
        );
        return;
      }
      case 'tty_start': {
        const opening = m.console
          ? this.servers.get(m.task_id)?.console()
          : this.runners.get(m.task_id)?.execTty(m.command, { rows: m.rows, cols: m.cols });
        if (!opening) { ch.send({ type: 'tty_exit', req_id: m.req_id, exit_code: -1, error: `${m.console ? 'server' : 'task'} ${m.task_id} is not on this node` }); return; }
        opening.then((tty) => {
          this.ttys.set(m.req_id, tty);
          tty.output.on('data', (b: Buffer) => ch.send({ type: 'tty_output', req_id: m.req_id, data: b.toString('base64') }));
          void tty.wait().then((code) => {
            this.ttys.delete(m.req_id);
            ch.send({ type: 'tty_exit', req_id: m.req_id, exit_code: code });
          });
        }, (e) => ch.send({ type: 'tty_exit', req_id: m.req_id, exit_code: -1, error: (e as Error).message }));
        return;
      }
      case 'tty_input':
        this.ttys.get(m.req_id)?.stdin.write(Buffer.from(m.data, 'base64'));
        return;
      case 'tty_resize':
        void this.ttys.get(m.req_id)?.resize(m.rows, m.cols).catch(() => undefined);
        return;
      case 'tty_close':
        this.ttys.get(m.req_id)?.kill();
        this.ttys.delete(m.req_id);
        return;
      case 'endpoints':
        this.dataplane.apply(m);
        return;
      case 'doctor_request':
        void import('../doctor/checks.js')
          .then((d) => d.localChecks({ dataDir: this.opts.dataDir, clusterHosts: m.cluster_hosts, skewMs: this.skewMs }))
          .then(async (checks) => {
            checks.push(...(await this.dataplane.checks()));
            checks.push(...(await this.dataplane.reachability().catch((e) => [{ name: 'data plane', status: 'fail' as const, detail: (e as Error).message }])));
            const drivers = (await this.opts.description()).drivers;
            for (const [name, f] of Object.entries(drivers)) {
              checks.push(f.available
                ? { name: `driver ${name}`, status: 'pass', detail: Object.entries(f.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(' ') || 'available' }
                : { name: `driver ${name}`, status: 'warn', detail: f.reason ?? 'unavailable', fix: 'Tasks needing this driver are placed on other nodes.' });
              // What an available driver cannot offer here (e.g. KVM): said on a line of its own.
              for (const [feature, why] of Object.entries(f.available ? f.missing_features ?? {} : {})) {
                checks.push({ name: `${name}: ${feature}`, status: 'warn', detail: why, fix: `What needs ${feature} (a flavor with hw:accel=kvm, for KVM) is placed on other nodes; the rest runs here without it.` });
              }
            }
            ch.send({ type: 'doctor_result', req_id: m.req_id, checks });
          })
          .catch((e) => ch.send({ type: 'doctor_result', req_id: m.req_id, checks: [{ name: 'doctor', status: 'fail', detail: `the checks themselves failed: ${(e as Error).message}` }] }));
        return;
      case 'error':
        this.opts.log.error({ code: m.code, detail: m.detail }, 'the manager refused this agent');
        return;
    }
  }

  private onTask(id: string, data: TaskData, files?: DeliveredFile[]): void {
    let r = this.runners.get(id);
    if (!r) {
      if (isTerminal(data.status.state) && data.desired_state !== 'running') return; // history, nothing to run
      const rec: TaskRecord = { id, data, driver: null, handle: null, status: data.status, reported: true };
      r = new TaskRunner(this.host, rec);
      this.runners.set(id, r);
    }
    r.update(data, files);
  }

  private onServer(x: import('../dispatcher/protocol.js').AssignedServer): void {
    let r = this.servers.get(x.id);
    if (!r) {
      r = new ServerRunner(this.serverHost, newServerRecord(x));
      this.servers.set(x.id, r);
    }
    r.update(x);
  }

  private onVolume(x: import('../dispatcher/protocol.js').AssignedVolume): void {
    let r = this.volumes.get(x.id);
    if (!r) {
      r = new VolumeRunner(this.volumeHost, newVolumeRecord(x));
      this.volumes.set(x.id, r);
    }
    r.update(x);
  }

  /** Answers to the manager's questions (`call`). */
  private async answer(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    switch (method) {
      case 'console_log': {
        const r = this.servers.get(String(params.server_id));
        if (!r) throw new Error(`server ${String(params.server_id)} is not on this node`);
        return { output: await r.consoleLog(Number(params.tail_bytes ?? 1024 * 1024)) };
      }
      case 'export_image': {
        const r = this.servers.get(String(params.server_id));
        if (!r) throw new Error(`server ${String(params.server_id)} is not on this node`);
        return { digest: await r.exportImage(String(params.name), { minDiskBytes: Number(params.min_disk_bytes ?? 0), minRamBytes: Number(params.min_ram_bytes ?? 0) }) };
      }
      default:
        throw new Error(`this agent does not know the call ${method} (is it older than its manager?)`);
    }
  }

  private queueStatus(id: string, status: TaskStatus): void {
    this.pending.set(id, status);
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 15);
  }

  /** Send queued status reports in one message; kept (and re-sent in the next hello) while offline. */
  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const ch = this.channel;
    if (!ch?.open || !this.welcomed) return;
    if (this.pendingVolumes.size > 0) {
      const updates = [...this.pendingVolumes.entries()].map(([volume_id, report]) => ({ volume_id, report }));
      this.pendingVolumes.clear();
      ch.send({ type: 'volume_status', updates });
    }
    if (this.pendingServers.size > 0) {
      const updates = [...this.pendingServers.entries()].map(([server_id, report]) => ({ server_id, report }));
      this.pendingServers.clear();
      ch.send({ type: 'server_status', updates });
    }
    if (this.pending.size === 0) return;
    const updates = [...this.pending.entries()].map(([task_id, status]) => ({ task_id, status }));
    this.pending.clear();
    ch.send({ type: 'status', updates });
    for (const u of updates) {
      const r = this.runners.get(u.task_id);
      if (r) { r.record.reported = true; }
    }
  }

  private serveLogs(ch: Channel<AgentMessage, ManagerMessage>, reqId: string, taskIds: string[], tail: number | null, since: string | null, follow: boolean): void {
    const lines: LogLine[] = [];
    for (const id of taskIds) {
      const r = this.runners.get(id);
      if (!r) continue;
      r.logs.collect();
      lines.push(...r.logs.read({ since, tail }));
    }
    lines.sort((a, b) => a.t.localeCompare(b.t));
    for (let i = 0; i < lines.length; i += 500) ch.send({ type: 'logs_data', req_id: reqId, lines: lines.slice(i, i + 500) });
    if (!follow) {
      ch.send({ type: 'logs_end', req_id: reqId });
      return;
    }
    const cancels: (() => void)[] = [];
    for (const id of taskIds) {
      const r = this.runners.get(id);
      if (r) cancels.push(r.logs.subscribe((ls) => ch.send({ type: 'logs_data', req_id: reqId, lines: ls })));
    }
    this.logFollows.set(reqId, cancels);
  }
}
