import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import { capable, DriverError, type Driver, type ExitResult, type PortMapping, type TaskConfig, type TaskHandle, type TtyExec } from '../drivers/driver.js';
import { candidateDrivers } from '../scheduler/runner.js';
import { isTerminal, stateRank, taskName, type TaskData, type TaskState, type TaskStatus } from '../services/task.js';
import { HealthMonitor, probe } from './health.js';
import { LogCollector } from './logs.js';
import { StepQueue } from './step-queue.js';
import type { TaskRecord, TaskStore } from './persist.js';
import type { PortAllocator } from './ports.js';
import type { NodeImages } from './images.js';
import type { OverlayHost } from './overlay.js';
import type { NetworkAttachment } from '../drivers/driver.js';
import type { DeliveredFile } from '../secrets/delivery.js';
import type { PlacedFiles, TaskFiles } from './task-files.js';

export interface RunnerHost {
  drivers: Map<string, Driver>;
  store: TaskStore;
  ports: PortAllocator;
  log: Logger;
  cgroupParent: string;
  /** Address health checks and published ports use on this node. */
  address: string;
  nodeId: string;
  /** Images on this node (for image drivers). */
  images?: NodeImages;
  /** Overlay networks of this node (null when it cannot build them). */
  overlay?: OverlayHost | null;
  /** Secrets and configs of tasks, on a tmpfs of this node. */
  files: TaskFiles;
  report(taskId: string, status: TaskStatus): void;
  forget(taskId: string): void;
}

/**
 * One task on this node. It advances one step at a time (accepted → preparing → starting →
 * running → an end state), each step's outcome reported; the driver handle is persisted so a
 * restarted agent reattaches instead of starting the task again.
 */
export class TaskRunner {
  private readonly steps = new StepQueue((e) => this.host.log.error({ err: e, task_id: this.id }, 'task step failed'));
  private health?: HealthMonitor;
  private stopRequested = false;
  private waiting = false;
  readonly logs: LogCollector;
  private removed = false;
  /** The task's secrets and configs as delivered, in memory only until they are placed on the tmpfs. */
  private delivered?: DeliveredFile[];

  constructor(private host: RunnerHost, public record: TaskRecord) {
    this.logs = new LogCollector(record.id, host.store.dir(record.id));
  }

  /** Resolves once every queued step has run. */
  settled(): Promise<void> {
    return this.steps.settled();
  }

  get id(): string {
    return this.record.id;
  }

  get driver(): Driver | undefined {
    return this.record.driver ? this.host.drivers.get(this.record.driver) : undefined;
  }

  private enqueue(step: () => Promise<void>): void {
    this.steps.enqueue(step);
  }

  private setStatus(state: TaskState, patch: Partial<TaskStatus> = {}): void {
    const cur = this.record.status;
    if (stateRank(state) < stateRank(cur.state)) return; // never backwards
    this.record.status = { ...cur, ...patch, state, timestamp: new Date().toISOString() };
    this.record.reported = false;
    this.host.store.save(this.record);
    this.host.report(this.id, this.record.status);
  }

  /** New desired state or spec from the manager (with the task's files while it has yet to start). */
  update(data: TaskData, files?: DeliveredFile[]): void {
    this.record.data = data;
    if (files) this.delivered = files;
    this.host.store.save(this.record);
    this.enqueue(() => this.advance());
  }

  /** The manager no longer knows this task: stop it and remove everything. */
  remove(): void {
    this.removed = true;
    this.record.data = { ...this.record.data, desired_state: 'remove' };
    this.enqueue(async () => {
      await this.advance();
      this.logs.stop();
      this.host.files.remove(this.id);
      this.host.store.remove(this.id);
      this.host.forget(this.id);
    });
  }

  private async advance(): Promise<void> {
    const d = this.record.data;
    const st = this.record.status.state;
    if (d.desired_state !== 'running') {
      if (isTerminal(st)) return;
      if (this.record.handle) {
        await this.stopTask(d.shutdown_reason ?? 'shutdown requested');
      } else {
        this.setStatus('shutdown', { message: d.shutdown_reason ?? 'shut down before it started' });
      }
      return;
    }
    if (stateRank(st) >= stateRank('running')) return;
    if (stateRank(st) < stateRank('assigned')) return;
    await this.startTask();
  }

  private async startTask(): Promise<void> {
    const d = this.record.data;
    this.setStatus('accepted', { message: 'accepted by the node' });
    const candidates = candidateDrivers(d.spec);
    const name = candidates.find((c) => this.host.drivers.has(c));
    if (!name) {
      this.setStatus('rejected', { message: 'no driver', error: `none of the drivers this task can use (${candidates.join(', ')}) is available on this node` });
      return;
    }
    this.record.driver = name;
    const driver = this.host.drivers.get(name)!;
    this.setStatus('preparing', { message: `preparing (${name} driver)` });
    let imageInfo: TaskConfig['image_info'];
    if (d.spec.image) {
      if (!this.host.images || !d.spec.image_digest) {
        this.setStatus('rejected', { message: 'no image', error: `this node cannot get image ${d.spec.image}${d.spec.image_digest ? '' : ' (it was not resolved to a digest)'}` });
        return;
      }
      try {
        imageInfo = await this.host.images.ensure(d.spec.image, d.spec.image_digest, (m) => this.setStatus('preparing', { message: m }));
      } catch (e) {
        this.setStatus('rejected', { message: 'image not available', error: `getting image ${d.spec.image} (${d.spec.image_digest}) failed: ${(e as Error).message}` });
        return;
      }
    }
    let networks: NetworkAttachment[] = [];
    if (d.networks?.length) {
      try {
        if (!this.host.overlay) throw new Error('this node cannot build overlay networks (the agent does not run as root)');
        for (const n of d.networks) {
          if (!n.address) throw new Error(`the task has no address on network ${n.id} (it was not assigned one when scheduled)`);
          networks.push(await this.host.overlay.attachment(n.id, n.address));
        }
      } catch (e) {
        this.setStatus('rejected', { message: 'network not available', error: `joining its networks failed: ${(e as Error).message}` });
        return;
      }
    }
    let ports: PortMapping[];
    try {
      ports = await this.allocatePorts(d);
    } catch (e) {
      this.setStatus('rejected', { message: 'port allocation failed', error: (e as Error).message });
      return;
    }
    const dir = this.host.store.dir(this.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    let placed: PlacedFiles | undefined;
    if ((d.spec.secrets?.length ?? 0) + (d.spec.configs?.length ?? 0) > 0) {
      try {
        if (!this.delivered) throw new Error('they did not arrive with the task');
        placed = this.host.files.place(this.id, this.delivered);
      } catch (e) {
        this.releasePorts(ports);
        this.setStatus('rejected', { message: 'secrets not available', error: `placing the task's secrets and configs failed: ${(e as Error).message}` });
        return;
      } finally {
        this.delivered = undefined;
      }
    }
    const env: Record<string, string> = { ...d.spec.env };
    if (ports[0]) env.PORT ??= String(ports[0].host_port);
    for (const p of ports) env[`YUN_PORT_${p.target}`] = String(p.host_port);
    env.YUN_TASK_ID = this.id;
    env.YUN_TASK_NAME = taskName(d);
    env.YUN_SERVICE_NAME = d.service_name;
    env.YUN_NODE_ID = this.host.nodeId;
    env.YUN_NODE_ADDRESS = this.host.address;
    if (d.slot !== null) env.YUN_TASK_SLOT = String(d.slot);
    // Drivers that give a task its own root file system show each file at its target; a process
    // task finds the same tree under $YUN_FILES_ROOT (a secret of /run/secrets/x at $YUN_SECRETS_DIR/x).
    const ownRoot = driver.capabilities.image_kinds.includes('container');
    if (placed && !ownRoot) {
      env.YUN_FILES_ROOT = placed.root;
      env.YUN_SECRETS_DIR = `${placed.root}/run/secrets`;
    }
    const config: TaskConfig = {
      id: this.id, name: taskName(d), dir, command: d.spec.command, shell: d.spec.shell, env,
      workdir: d.spec.workdir, user: d.spec.user, hostname: d.spec.hostname ?? taskName(d), image: d.spec.image,
      mounts: [...d.spec.mounts, ...(placed && ownRoot ? placed.mounts : [])], read_only: d.spec.read_only, limits: d.spec.resources.limits, ports,
      cgroup_parent: this.host.cgroupParent,
      network_mode: d.spec.network_mode ?? 'private',
      ...(networks.length ? { networks } : {}),
      ...(imageInfo ? { image_info: imageInfo } : {}),
      labels: { 'yunstack.task.id': this.id, 'yunstack.service.id': d.service_id, 'yunstack.service.name': d.service_name },
    };
    if (this.record.data.desired_state !== 'running') {
      this.host.files.remove(this.id);
      return this.advance();
    }
    this.setStatus('starting', { message: 'starting', ports });
    let handle: TaskHandle;
    try {
      handle = await driver.start(config);
    } catch (e) {
      this.releasePorts(ports);
      this.host.files.remove(this.id);
      const msg = e instanceof DriverError ? e.message : `starting the task failed: ${(e as Error).message}`;
      this.setStatus('failed', { message: 'starting failed', error: msg, exit_code: null });
      return;
    }
    this.record.handle = handle;
    const st = await driver.inspect(handle).catch(() => ({ running: true, pid: undefined }));
    this.setStatus('running', {
      message: 'running', pid: st.pid ?? null, ports, started_at: new Date().toISOString(),
      health: d.spec.health_check ? 'starting' : null,
    });
    this.logs.start();
    this.watch(handle);
    if (this.record.data.desired_state !== 'running') await this.advance();
  }

  /** Reattach to a task found on disk after an agent restart. */
  async reattach(): Promise<void> {
    const r = this.record;
    const driver = this.driver;
    if (!r.handle || !driver || isTerminal(r.status.state)) return;
    const h = await driver.recover(r.handle).catch(() => undefined);
    if (h) {
      r.handle = h;
      this.host.store.save(r);
      for (const p of r.status.ports ?? []) this.host.ports.reserve(p.host_port);
      this.host.log.info({ task_id: r.id, pid: r.status.pid }, 'reattached to running task');
      if (stateRank(r.status.state) < stateRank('running')) this.setStatus('running', { message: 'running (reattached)', started_at: new Date().toISOString() });
      this.logs.start();
      this.watch(h);
      return;
    }
    // Gone while the agent was away: report how it ended, if the driver knows.
    const exit = await Promise.race([driver.wait(r.handle), new Promise<undefined>((res) => setTimeout(() => res(undefined), 2000))]).catch(() => undefined);
    this.finish(exit ?? { exit_code: null, signal: null, oom_killed: false, finished_at: new Date().toISOString(), error: 'the task ended while its agent was not running, and how it ended is unknown' });
  }

  private watch(handle: TaskHandle): void {
    const driver = this.driver!;
    const d = this.record.data;
    this.waiting = true;
    if (d.spec.health_check) {
      const check = d.spec.health_check;
      this.health = new HealthMonitor(
        check,
        () => probe(check, this.probePorts(), this.record.data.networks?.[0]?.address ?? this.host.address, (cmd, timeoutMs) => driver.exec
          ? driver.exec(handle, cmd, { timeoutMs })
          : Promise.resolve({ exit_code: 1, stdout: '', stderr: `the ${driver.name} driver cannot run command health checks` })),
        (h, detail) => {
          this.setStatus(this.record.status.state, { health: h, message: h === 'unhealthy' ? detail : `running (${h})` });
          if (h === 'unhealthy') {
            this.enqueue(async () => {
              await this.stopTask(detail, true);
            });
          }
        },
        Date.now(),
      );
      this.health.start();
    }
    void driver.wait(handle).then((exit) => {
      this.waiting = false;
      this.enqueue(async () => this.finish(exit));
    }, (e) => {
      this.waiting = false;
      this.enqueue(async () => this.finish({ exit_code: null, signal: null, oom_killed: false, finished_at: new Date().toISOString(), error: `waiting for the task failed: ${(e as Error).message}` }));
    });
  }

  private unhealthyReason?: string;

  private async stopTask(reason: string, unhealthy = false): Promise<void> {
    const driver = this.driver;
    const handle = this.record.handle;
    if (!driver || !handle || isTerminal(this.record.status.state)) return;
    this.stopRequested = !unhealthy;
    if (unhealthy) this.unhealthyReason = reason;
    this.health?.stop();
    const d = this.record.data;
    await driver.stop(handle, d.spec.stop_grace_period_ms, d.spec.stop_signal);
    if (!this.waiting) {
      // Nobody is waiting (e.g. the wait already resolved): finish from inspect.
      const st = await driver.inspect(handle).catch(() => undefined);
      if (st && !st.running) this.finish(st.exit ?? { exit_code: null, signal: null, oom_killed: false, finished_at: new Date().toISOString(), error: null });
    }
  }

  private finish(exit: ExitResult): void {
    if (isTerminal(this.record.status.state)) return;
    this.health?.stop();
    this.logs.collect(true);
    const patch: Partial<TaskStatus> = { exit_code: exit.exit_code, pid: null };
    if (this.unhealthyReason) {
      this.setStatus('failed', { ...patch, message: 'unhealthy', error: `${this.unhealthyReason}; the task was stopped`, health: 'unhealthy' });
    } else if (this.stopRequested || this.record.data.desired_state !== 'running') {
      this.setStatus('shutdown', { ...patch, message: this.record.data.shutdown_reason ?? 'shut down', error: null });
    } else if (exit.exit_code === 0) {
      this.setStatus('complete', { ...patch, message: 'finished', error: null });
    } else {
      this.setStatus('failed', { ...patch, message: exit.oom_killed ? 'OOMKilled' : 'task failed', error: exit.error ?? `exit code ${exit.exit_code}` });
    }
    this.releasePorts(this.record.status.ports ?? []);
    const driver = this.driver;
    const handle = this.record.handle;
    if (driver && handle) void driver.destroy(handle).catch((e) => this.host.log.warn({ err: e, task_id: this.id }, 'destroy failed'));
    this.host.files.remove(this.id);
    if (this.removed) return;
  }

  /** Ports as a health check reaches them: a task on an overlay network at its own address and target ports. */
  private probePorts(): PortMapping[] {
    const ports = this.record.status.ports ?? [];
    return this.record.data.networks?.length ? ports.map((p) => ({ ...p, host_port: p.target })) : ports;
  }

  private async allocatePorts(d: TaskData): Promise<PortMapping[]> {
    const out: PortMapping[] = [];
    for (const p of d.ports) {
      if (d.networks?.length && !(p.mode === 'host' && p.published)) {
        // On an overlay network the task is reached at its own address: no host port.
        out.push({ target: p.target, host_port: p.target, protocol: p.protocol, ...(p.published ? { published: p.published } : {}), mode: p.mode, ...(p.name ? { name: p.name } : {}) });
        continue;
      }
      if (p.mode === 'host' && p.published) {
        this.host.ports.reserve(p.published);
        out.push({ target: p.target, host_port: p.published, protocol: p.protocol, published: p.published, mode: 'host', ...(p.name ? { name: p.name } : {}) });
      } else {
        out.push({ target: p.target, host_port: await this.host.ports.dynamic(), protocol: p.protocol, ...(p.published ? { published: p.published } : {}), mode: p.mode, ...(p.name ? { name: p.name } : {}) });
      }
    }
    return out;
  }

  private releasePorts(ports: PortMapping[]): void {
    const onNet = !!this.record.data.networks?.length;
    for (const p of ports) if (!onNet || (p.mode === 'host' && p.published)) this.host.ports.release(p.host_port);
  }

  // ---- logs and exec -------------------------------------------------------------------------------

  /** An interactive command with a terminal (drivers that offer it: oci). */
  async execTty(command: string[], size: { rows: number; cols: number }): Promise<TtyExec> {
    const driver = this.driver;
    if (!driver || !this.record.handle || this.record.status.state !== 'running') {
      throw new Error(`task ${taskName(this.record.data)} is not running (${this.record.status.state})`);
    }
    const tty = capable(driver, 'terminal');
    if (!tty) throw new Error(`the ${driver.name} driver has no interactive terminal; run the command without -it`);
    return tty.execTty(this.record.handle, command, size);
  }

  async exec(command: string[], timeoutMs: number): Promise<{ exit_code: number; stdout: string; stderr: string }> {
    const driver = this.driver;
    if (!driver?.exec || !this.record.handle || this.record.status.state !== 'running') {
      throw new Error(`task ${taskName(this.record.data)} is not running (${this.record.status.state})`);
    }
    return driver.exec(this.record.handle, command, { timeoutMs });
  }
}
