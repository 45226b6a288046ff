import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { capable, type Driver, type InstanceSpec, type NetworkAttachment, type TaskConfig, type TaskHandle, type TtyExec, type VolumeDisk } from '../drivers/driver.js';
import type { AssignedServer } from '../dispatcher/protocol.js';
import { afterStep, EMPTY_LOCAL, planServer, powerOf, type Step, type Want } from '../servers/plan.js';
import type { ServerReport, ServerVolume } from '../servers/server.js';
import type { NodeImages } from './images.js';
import type { OverlayHost } from './overlay.js';
import type { RecordStore, ServerRecord } from './persist.js';
import { StepQueue } from './step-queue.js';
import type { TaskFiles } from './task-files.js';
import type { DeliveredFile } from '../secrets/delivery.js';
import { hasRefs } from '../secrets/refs.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** How long a graceful stop may take before the instance is killed (Nova's shutdown_timeout). */
export const SHUTDOWN_TIMEOUT_MS = 60_000;

export interface ServerHost {
  drivers: Map<string, Driver>;
  store: RecordStore<ServerRecord>;
  log: Logger;
  cgroupParent: string;
  images?: NodeImages;
  overlay?: OverlayHost | null;
  report(serverId: string, report: ServerReport): void;
  forget(serverId: string): void;
  /** Where servers' secrets and configs are placed (a tmpfs), as tasks' are. */
  files: TaskFiles;
  /** This node's volumes: where a volume's file is, and a wait for one being made (a root volume). */
  volumes?: { file(id: string): string; whenCreated(id: string, timeoutMs: number): Promise<void> };
}

/** How long a server booting from a volume waits for the volume to be made (an image written to it). */
const ROOT_VOLUME_WAIT_MS = 30 * 60_000;

/**
 * What the server asks of its node, from its desired state; a volume whose attach or detach failed
 * stays as the instance has it until the manager has rolled the attachment back (then the failure
 * is forgotten).
 */
function wantOf(s: AssignedServer, failures: Record<string, { action: 'attach' | 'detach' }> = {}): Want {
  const d = s.data;
  const wanted = (d.volumes ?? []).filter((v) => !v.boot).map((v) => v.id);
  for (const [id, { action }] of Object.entries(failures)) {
    const rolledBack = action === 'attach' ? !wanted.includes(id) : wanted.includes(id);
    if (rolledBack) delete failures[id];
  }
  const volumes = [...wanted.filter((id) => failures[id]?.action !== 'attach'), ...Object.keys(failures).filter((id) => failures[id]!.action === 'detach' && !wanted.includes(id))];
  return { power: d.desired.power, generation: d.desired.generation, op: d.desired.op, deleting: d.desired.deleting, image_digest: d.image.digest, volumes };
}

const STEP_WORDS: Record<Step['do'], string> = {
  prepare: 'preparing the instance (image, root disk, seed, networks)', boot: 'booting', stop: 'stopping', freeze: 'pausing', thaw: 'unpausing',
  suspend: 'suspending', resume: 'resuming', destroy: 'destroying the instance', save_disk: 'saving a copy of the root disk',
  restore_disk: 'restoring the saved root disk', drop_disk: 'dropping the saved root disk', op_done: 'finishing',
  attach: 'attaching a volume', detach: 'detaching a volume',
};

/**
 * One server on this node. It plans (servers/plan.ts) from the server's desired state and the
 * instance's local state, runs one step at a time through the driver's optional interfaces
 * (instances, pause, suspend), saves the local state after each, and reports. An instance that
 * ends on its own is reported as shut down (or crashed, with how). A restarted agent reattaches to
 * the instance behind the saved handle.
 */
export class ServerRunner {
  private readonly steps = new StepQueue((e) => this.host.log.error({ err: e, server_id: this.id }, 'server step failed'));
  /** A stop or suspend of ours is under way: the instance's end is expected. */
  private expectingExit = false;
  /** Bumped at every boot/resume/reattach: a wait of an older process is stale. */
  private watchToken = 0;

  /** The secrets and configs as they last came with the server: in memory only, never in the record. */
  private delivered: DeliveredFile[] | undefined;

  constructor(private host: ServerHost, public record: ServerRecord) {}

  get id(): string {
    return this.record.id;
  }

  private get driver(): Driver | undefined {
    return this.host.drivers.get(this.record.driver ?? this.record.server.data.driver);
  }

  private enqueue(step: () => Promise<void>): void {
    this.steps.enqueue(step);
  }

  settled(): Promise<void> {
    return this.steps.settled();
  }

  private save(): void {
    this.host.store.save(this.record);
  }

  private report(patch: Partial<ServerReport> = {}): void {
    const r = this.record;
    r.report = { generation: r.done_generation, power_state: powerOf(r.local), fault: null, exit: null, message: null, volumes: this.attachedVolumes(),
      volume_faults: Object.entries(r.volume_failures ?? {}).map(([id, f]) => ({ id, ...f })), ...patch };
    this.save();
    this.host.report(this.id, r.report);
  }

  /** The server as the manager has it now (with its files when it is to boot: kept in memory only). */
  update(server: AssignedServer): void {
    const { files, ...rest } = server;
    if (files) this.delivered = files;
    this.record.server = rest;
    this.save();
    this.enqueue(() => this.advance());
  }

  /** The manager no longer knows this server: whatever remains of it goes. */
  remove(): void {
    this.record.server = { ...this.record.server, data: { ...this.record.server.data, desired: { ...this.record.server.data.desired, deleting: true } } };
    this.enqueue(async () => {
      await this.advance(true);
      this.host.store.remove(this.id);
      this.host.forget(this.id);
    });
  }

  /** After an agent restart: find the instance again from the saved handle. */
  async reattach(): Promise<void> {
    const r = this.record;
    const d = this.driver;
    if (!r.handle || !d) {
      this.enqueue(() => this.advance());
      return;
    }
    if (r.local.suspended) {
      const s = capable(d, 'suspend');
      if (s && !(await s.suspended(r.handle).catch(() => false))) r.local = { ...r.local, suspended: false, running: false };
    } else if (r.local.running) {
      const h = await d.recover(r.handle).catch(() => undefined);
      if (h) {
        r.handle = h;
        this.host.log.info({ server_id: r.id }, 'reattached to a running instance');
        this.watch(h);
      } else {
        // It ended while the agent was away.
        const st = await d.inspect(r.handle).catch(() => undefined);
        r.local = { ...r.local, running: false, frozen: false };
        this.save();
        this.report(exitPatch(st?.exit));
      }
    }
    this.save();
    this.enqueue(() => this.advance());
  }

  private async advance(removing = false): Promise<void> {
    const r = this.record;
    for (let i = 0; i < 30; i++) {
      const want = wantOf(r.server, (r.volume_failures ??= {}));
      if (!removing && !want.deleting && r.failed_generation >= want.generation) return;
      const steps = planServer(want, r.local);
      if (steps.length === 0) {
        if (want.deleting) {
          this.report({ generation: want.generation, destroyed: true });
          return;
        }
        if (r.done_generation !== want.generation || r.report.power_state !== powerOf(r.local) || r.report.message || JSON.stringify(r.report.volumes ?? []) !== JSON.stringify(this.attachedVolumes()) || (r.report.volume_faults?.length ?? 0) !== Object.keys(r.volume_failures ?? {}).length) {
          r.done_generation = want.generation;
          this.report();
        }
        return;
      }
      const step = steps[0]!;
      if (step.do === 'prepare' || step.do === 'boot' || step.do === 'resume') this.report({ message: STEP_WORDS[step.do] });
      try {
        await this.run(step, r.server);
      } catch (e) {
        const why = (e as Error).message;
        this.host.log.warn({ server_id: r.id, step: step.do, err: why }, 'server step failed');
        if ((step.do === 'attach' || step.do === 'detach') && !want.deleting) {
          // Not the server's failure: the volume goes back to how the instance has it.
          r.volume_failures = { ...(r.volume_failures ?? {}), [step.volume]: { action: step.do, details: why } };
          this.report();
          continue;
        }
        r.failed_generation = want.generation;
        if (want.deleting) {
          // Never leave a deleted server behind: what could not be destroyed is logged, the server goes.
          r.local = { ...EMPTY_LOCAL };
          r.handle = null;
          continue;
        }
        this.report({ fault: { code: 'YUN_BUILD_FAILED', message: `${STEP_WORDS[step.do]} failed`, details: why } });
        return;
      }
      r.local = afterStep(r.local, step, want);
      this.save();
    }
    this.host.log.error({ server_id: r.id, local: r.local }, 'server plan did not settle after 30 steps');
  }

  /** The driver's part of one step. */
  private async run(step: Step, s: AssignedServer): Promise<void> {
    const r = this.record;
    const driver = this.host.drivers.get(s.data.driver);
    if (!driver) throw new Error(`this node has no ${s.data.driver} driver (it is not available here: see \`yun node inspect\`)`);
    const inst = capable(driver, 'instances');
    if (!inst) throw new Error(`the ${driver.name} driver cannot run servers (it has no instances capability)`);
    r.driver = driver.name;
    const h = r.handle;
    const need = (): TaskHandle => {
      if (!h) throw new Error('the instance has no handle (it was never prepared)');
      return h;
    };
    switch (step.do) {
      case 'prepare':
        r.handle = await inst.prepare(await this.config(s), (m) => this.report({ message: m }));
        this.save();
        return;
      case 'boot': {
        const cur = need();
        if ((await driver.inspect(cur)).running && !r.local.suspended) return; // booted already (an agent died before saving it)
        r.handle = await inst.boot(cur, await this.config(s));
        this.save();
        this.watch(r.handle);
        return;
      }
      case 'stop':
        if (!h) return;
        this.expectingExit = true;
        try {
          await driver.stop(h, step.hard ? 0 : SHUTDOWN_TIMEOUT_MS, 'SIGTERM');
        } finally {
          this.expectingExit = false;
        }
        return;
      case 'freeze': case 'thaw': {
        const p = capable(driver, 'pause');
        if (!p) throw new Error(`the ${driver.name} driver cannot pause`);
        await (step.do === 'freeze' ? p.freeze(need()) : p.thaw(need()));
        return;
      }
      case 'suspend': case 'resume': {
        const sp = capable(driver, 'suspend');
        if (!sp) throw new Error(`the ${driver.name} driver cannot suspend`);
        if (step.do === 'suspend') {
          this.expectingExit = true;
          try {
            r.handle = await sp.suspend(need());
          } finally {
            this.expectingExit = false;
          }
        } else {
          r.handle = await sp.resume(need());
          this.watch(r.handle);
        }
        this.save();
        return;
      }
      case 'destroy':
        if (h) {
          this.expectingExit = true;
          try {
            await driver.destroy(h);
          } finally {
            this.expectingExit = false;
          }
        }
        this.host.files.remove(this.id);
        r.handle = null;
        this.save();
        return;
      case 'attach': case 'detach': {
        const vol = capable(driver, 'volumes');
        if (!vol) throw new Error(`the ${driver.name} driver cannot attach volumes`);
        const v = (s.data.volumes ?? []).find((x) => x.id === step.volume);
        const disk = v ? this.disk(v) : { id: step.volume, path: this.host.volumes?.file(step.volume) ?? '', serial: '', content: 'disk' as const, mount_path: r.devices?.[step.volume]?.mount_path ?? null };
        if (step.do === 'attach') {
          const res = await vol.attachVolume(need(), disk);
          r.handle = res.handle;
          r.devices = { ...(r.devices ?? {}), [step.volume]: { device: res.device, mount_path: disk.mount_path } };
        } else {
          r.handle = (await vol.detachVolume(need(), disk)).handle;
          const { [step.volume]: _gone, ...rest } = r.devices ?? {};
          r.devices = rest;
        }
        this.save();
        return;
      }
      case 'save_disk': return inst.saveDisk(need(), step.tag);
      case 'restore_disk': return inst.restoreDisk(need(), step.tag);
      case 'drop_disk': return inst.dropDisk(need(), step.tag);
      case 'op_done': return;
    }
  }

  /** Learn of the instance's end; if nothing of ours caused it, it stopped on its own. */
  private watch(h: TaskHandle): void {
    const token = ++this.watchToken;
    const d = this.driver!;
    void d.wait(h).then((exit) => {
      if (token !== this.watchToken || this.expectingExit) return;
      this.enqueue(async () => {
        if (token !== this.watchToken || this.expectingExit || !this.record.local.running) return;
        this.record.local = { ...this.record.local, running: false, frozen: false };
        this.save();
        this.report(exitPatch(exit));
        // Nothing more: the manager sets the server SHUTOFF; it is not restarted behind its back.
      });
    }, (e) => this.host.log.warn({ err: e, server_id: this.id }, 'waiting for the instance failed'));
  }

  /** The volumes the instance has now, as reported (with their device names). */
  private attachedVolumes(): { id: string; device: string | null }[] {
    const r = this.record;
    const boot = (r.server.data.volumes ?? []).filter((v) => v.boot && r.local.prepared).map((v) => ({ id: v.id, device: '/dev/vda' }));
    return [...boot, ...(r.local.attached ?? []).map((id) => ({ id, device: r.devices?.[id]?.device ?? null }))];
  }

  private disk(v: ServerVolume): VolumeDisk {
    const path = this.host.volumes?.file(v.id);
    if (!path) throw new Error('this node keeps no volumes');
    return { id: v.id, path, serial: v.serial, content: v.content, mount_path: v.mount_path };
  }

  /** The instance's config: flavor, image on this node, networks, seed, volumes. */
  private async config(s: AssignedServer): Promise<TaskConfig> {
    const d = s.data;
    if (!this.host.images) throw new Error('this node has no image store');
    const root = (d.volumes ?? []).find((v) => v.boot);
    if (root) {
      if (!this.host.volumes) throw new Error('this node keeps no volumes');
      this.report({ message: 'waiting for the root volume to be made' });
      await this.host.volumes.whenCreated(root.id, ROOT_VOLUME_WAIT_MS);
    }
    const attached = (d.volumes ?? []).filter((v) => !v.boot).map((v) => this.disk(v));
    const image_info = await this.host.images.ensure(d.image.name, d.image.digest, (m) => this.report({ message: m }));
    let files: InstanceSpec['files'];
    if (hasRefs(d)) {
      if (!this.delivered) throw new Error('its secrets and configs did not come with it (the manager sends them when the server is to boot): start it again');
      const placed = this.host.files.place(s.id, this.delivered, 'files');
      files = { dir: placed.root, list: placed.list };
    }
    const networks: NetworkAttachment[] = [];
    for (const n of d.networks) {
      if (!this.host.overlay) throw new Error('this node cannot build overlay networks (the agent does not run as root)');
      if (!n.address) throw new Error(`the server has no address on network ${n.id} (it was not given one when scheduled)`);
      networks.push({ ...(await this.host.overlay.attachment(n.id, n.address)), mac: n.mac });
    }
    return {
      id: s.id, name: s.name, dir: this.host.store.dir(s.id), command: [], shell: false, env: {}, hostname: s.name,
      image: d.image.name, image_info, mounts: [], read_only: false,
      limits: { cpu: d.flavor.vcpus, memory_bytes: d.flavor.ram_mb * MiB, pids: 0 }, ports: [], network_mode: 'private',
      ...(networks.length ? { networks } : {}),
      cgroup_parent: this.host.cgroupParent,
      labels: { 'yunstack.server.id': s.id, 'yunstack.server.name': s.name, 'yunstack.project.id': s.project_id },
      instance: {
        vcpus: d.flavor.vcpus, memory_bytes: d.flavor.ram_mb * MiB, disk_bytes: d.flavor.disk_gb * GiB,
        ephemeral_bytes: d.flavor.ephemeral_gb * GiB, swap_bytes: d.flavor.swap_mb * MiB,
        seed: { instance_id: s.id, hostname: s.name, public_keys: d.public_keys, ...(d.user_data_b64 ? { user_data_b64: d.user_data_b64 } : {}) },
        volumes: attached,
        ...(root ? { root_volume: this.disk(root) } : {}),
        ...(files ? { files } : {}),
      },
    };
  }

  /**
   * A new image from the instance's root disk (quiesced for the copy), imported into this node's
   * image store; between the server's steps, never during one. Returns the image's digest.
   */
  exportImage(name: string, opts: { minDiskBytes: number; minRamBytes: number }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.enqueue(async () => {
        try {
          const r = this.record;
          const d = this.driver;
          const inst = d && capable(d, 'instances');
          if (!inst || !r.handle || !r.local.prepared) throw new Error(`server ${r.server.name} has no root disk on this node yet`);
          if (!this.host.images) throw new Error('this node has no image store');
          const dir = join(this.host.store.dir(r.id), `export-${Date.now()}`);
          await mkdir(dir, { recursive: true, mode: 0o700 });
          try {
            const out = await inst.exportDisk(r.handle, dir);
            const store = this.host.images.store;
            const rec = out.kind === 'vm'
              ? await store.importVmImage({ disk: out.disk, ...(out.kernel ? { kernel: out.kernel } : {}), ...(out.initrd ? { initrd: out.initrd } : {}) }, { name, diskFormat: 'qcow2', minDiskBytes: opts.minDiskBytes, minRamBytes: opts.minRamBytes, ...(out.cmdline ? { cmdline: out.cmdline } : {}) })
              : await store.importRootfs(out.rootfs, { name, cmd: out.config.cmd, entrypoint: out.config.entrypoint, env: out.config.env, workdir: out.config.workdir, user: out.config.user });
            resolve(rec.digest);
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        } catch (e) {
          reject(e as Error);
        }
      });
    });
  }

  /** For a volume of this server: grow it and quiesce it through the driver (the volume runner asks). */
  volumeHook(volumeId: string): { resized(bytes: number): Promise<void>; quiesced(fn: () => Promise<void>): Promise<void> } | undefined {
    const r = this.record;
    const v = (r.server.data.volumes ?? []).find((x) => x.id === volumeId);
    const d = this.driver;
    const vol = d && capable(d, 'volumes');
    if (!v || !vol || !r.handle || !r.local.prepared || (!v.boot && !(r.local.attached ?? []).includes(volumeId))) return undefined;
    const disk = this.disk(v);
    return {
      resized: (bytes) => vol.volumeResized(r.handle!, disk, bytes),
      quiesced: (fn) => vol.quiesced(r.handle!, disk, fn),
    };
  }

  // ---- console -----------------------------------------------------------------------------

  async consoleLog(tailBytes: number): Promise<string> {
    const d = this.driver;
    const c = d && capable(d, 'console');
    if (!c || !this.record.handle) throw new Error(`server ${this.record.server.name} has no console on this node${this.record.handle ? ` (the ${d?.name} driver has none)` : ' yet'}`);
    return c.consoleLog(this.record.handle, { tailBytes });
  }

  async console(): Promise<TtyExec> {
    const d = this.driver;
    const c = d && capable(d, 'console');
    if (!c || !this.record.handle || !this.record.local.running) throw new Error(`server ${this.record.server.name} is not running, so its console does not answer`);
    return c.console(this.record.handle);
  }
}

function exitPatch(exit: { exit_code: number | null; signal: string | null; error: string | null } | undefined): Partial<ServerReport> {
  const crashed = !exit || exit.signal !== null || (exit.exit_code !== null && exit.exit_code !== 0);
  return {
    power_state: crashed ? 'crashed' : 'shutdown',
    exit: exit ? { exit_code: exit.exit_code, signal: exit.signal, error: exit.error } : { exit_code: null, signal: null, error: 'the instance ended while its agent was not running, and how is unknown' },
  };
}

export function newServerRecord({ files: _files, ...server }: AssignedServer): ServerRecord {
  return { id: server.id, server, driver: null, handle: null, local: { ...EMPTY_LOCAL }, done_generation: 0, failed_generation: 0, report: { generation: 0, power_state: 'nostate' }, devices: {} };
}
