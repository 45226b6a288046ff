/**
 * The `qemu` driver: each task is a virtual machine, `qemu-system-x86_64` under the supervisor shim
 * (so it outlives the agent and its exit is recorded). A VM image with a kernel boots directly on
 * `-M microvm` (virtio-mmio devices, ACPI for the power button); one without boots its disk on q35
 * (SeaBIOS, virtio-pci). KVM is used only when the probe (kvm-probe.ts) booted a guest with it; else
 * TCG, and the fingerprint says why.
 *
 * Per VM, in the task dir: `disk.qcow2` (a qcow2 overlay on the image's disk, a blob of the node's
 * image store, grown to the flavor's size), `seed.img` (cloud-init NoCloud: hostname, keys, user
 * data, the static address), `qmp.sock` (stop, cont, powerdown, migrate), `console.sock` and
 * `console.log` (the serial console: every byte logged, one interactive client at a time),
 * `state` (the memory of a suspended VM), `saved-<tag>.qcow2` (copies of the disk), and a tap per
 * network on the network's bridge. `stop` powers the guest off by its ACPI power button and keeps
 * everything; `destroy` frees it all but the console log.
 */
import { access, copyFile, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  DriverError,
  type Consoles,
  type Driver,
  type DriverCapabilities,
  type DriverFingerprint,
  type ExportedDisk,
  type ExitResult,
  type Freezable,
  type Instances,
  type Suspendable,
  type TaskConfig,
  type VolumeAttach,
  type VolumeDisk,
  type TaskHandle,
  type TaskState,
  type TtyExec,
} from '../driver.js';
import { errText } from '../common/exit.js';
import { recordedExit } from '../common/recorded-exit.js';
import { startSupervised, type Supervised } from '../common/supervise.js';
import { isAlive, readProcStat } from '../process/procfs.js';
import { findOnPath, runCommand } from '../oci/host.js';
import { tailOf } from '../common/tail.js';
import { probeKvm, type KvmProbe } from './kvm-probe.js';
import { withQmp } from './qmp.js';
import { seedSupport, writeSeedImage, type SeedData } from './seed.js';
import { deleteTaps, ensureTaps } from './tap.js';
import { tcgKernelArgs } from './tcg.js';

export interface QemuDriverOptions {
  /** qemu-system-x86_64 (default: on PATH). */
  qemu?: string;
  /** A guest kernel for the KVM probe (default: $YUN_QEMU_PROBE_KERNEL, the tinyvm build's, the newest /boot/vmlinuz-*). */
  probeKernel?: string;
  /** `tcg` forces TCG (no probe); `kvm` insists (fails where the probe fails). */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** How often `wait` polls a recovered VM (default 100 ms). */
  pollIntervalMs?: number;
}

export interface QemuHandle extends TaskHandle {
  driver: 'qemu';
  version: 1;
  dir: string;
  /** The supervisor shim (0 when the VM does not run: prepared, stopped after a suspend). */
  shim_pid: number;
  shim_start: string;
  /** qemu's own pid. */
  pid?: number;
  pid_start?: string;
  taps: string[];
  accel: 'kvm' | 'tcg';
  memory_limit_bytes: 0;
  /** The config it last booted with: a resume starts qemu again the same way. */
  config: TaskConfig;
}

const DISK = 'disk.qcow2';
const SEED = 'seed.img';
const EPHEMERAL = 'ephemeral.raw';
const SWAP = 'swap.raw';
const QMP = 'qmp.sock';
const CONSOLE_SOCK = 'console.sock';
export const CONSOLE_LOG = 'console.log';
const STATE = 'state';
const PIDFILE = 'qemu.pid';
const STDERR = 'stderr.log';
const SAVED = 'saved-';
const MiB = 1024 ** 2;
const POWER_BUTTON_RETRY_MS = 2000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const exists = (p: string) => access(p).then(() => true, () => false);

interface Host {
  ok: boolean;
  reason?: string;
  qemu?: string;
  qemuImg?: string;
  ip?: string;
  version?: string;
  kvm: KvmProbe | null;
  accel: 'kvm' | 'tcg';
}

/** An RFC 1123 label from a server name (`web.1` → `web-1`). */
export function guestHostname(name: string): string {
  const h = name.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return h || 'vm';
}

export class QemuDriver implements Driver, Instances, Freezable, Suspendable, Consoles, VolumeAttach {
  readonly name = 'qemu';
  readonly capabilities: DriverCapabilities = { command: false, exec: false, terminal: false, pause: true, suspend: 'disk', instances: true, console: true, volumes: true, image_kinds: ['vm'], network_kinds: ['overlay'] };
  private hostP?: Promise<Host>;
  private readonly live = new Map<string, Supervised>();
  private readonly results = new Map<string, ExitResult>();
  private readonly pollMs: number;

  constructor(private readonly opts: QemuDriverOptions = {}) {
    this.pollMs = opts.pollIntervalMs ?? 100;
  }

  private host(): Promise<Host> {
    this.hostP ??= this.detect();
    return this.hostP;
  }

  private async detect(): Promise<Host> {
    const none: Host = { ok: false, kvm: null, accel: 'tcg' };
    if (process.platform !== 'linux') return { ...none, reason: `the qemu driver runs only on Linux (this node is ${process.platform})` };
    if (process.getuid?.() !== 0) return { ...none, reason: 'the qemu driver needs root: VMs are plugged into networks with tap devices (run the agent as root)' };
    const qemu = await findOnPath(this.opts.qemu ?? 'qemu-system-x86_64');
    if (!qemu) return { ...none, reason: 'qemu-system-x86_64 not found on PATH: install the Debian package qemu-system-x86' };
    const qemuImg = await findOnPath('qemu-img');
    if (!qemuImg) return { ...none, qemu, reason: 'qemu-img not found on PATH: install the Debian package qemu-utils' };
    const ip = await findOnPath('ip');
    if (!ip) return { ...none, qemu, reason: 'ip not found on PATH (tap devices): install the Debian package iproute2' };
    const seed = await seedSupport();
    if (seed) return { ...none, qemu, reason: `VMs get their cloud-init seed on a vfat disk: ${seed}` };
    const v = await runCommand(qemu, ['--version'], { timeoutMs: 10_000 }).catch(() => null);
    if (!v || v.code !== 0) return { ...none, qemu, reason: `${qemu} --version failed: reinstall qemu-system-x86` };
    const version = /version (\S+)/.exec(String(v.stdout))?.[1] ?? 'unknown';
    let kvm: KvmProbe | null = null;
    let accel: 'kvm' | 'tcg' = 'tcg';
    if (this.opts.accel !== 'tcg') {
      const kernel = await this.probeKernel();
      const busybox = (await exists('/bin/busybox')) ? '/bin/busybox' : undefined;
      if (kernel && busybox) kvm = await probeKvm({ qemu, qemuVersion: version, kernel, busybox });
      else kvm = { ok: false, detail: `not probed: ${kernel ? 'no static busybox (/bin/busybox, Debian package busybox-static) for the probe\'s init' : 'no guest kernel to boot (build the tiny image with `npm run image:tinyvm`, or install linux-image-cloud-amd64)'}`, at: new Date().toISOString() };
      if (kvm.ok) accel = 'kvm';
      else if (this.opts.accel === 'kvm') return { ...none, qemu, version, kvm, reason: `KVM was asked for, but ${kvm.detail}` };
    }
    return { ok: true, qemu, qemuImg, ip, version, kvm, accel };
  }

  private async probeKernel(): Promise<string | undefined> {
    const given = this.opts.probeKernel ?? process.env.YUN_QEMU_PROBE_KERNEL;
    if (given) return given;
    const { defaultTinyVmDir } = await import('../../images/tinyvm/build.js');
    const tiny = join(defaultTinyVmDir(), 'vmlinuz');
    if (await exists(tiny)) return tiny;
    const boot = (await readdir('/boot').catch(() => [] as string[])).filter((f) => f.startsWith('vmlinuz-')).sort();
    return boot.length ? join('/boot', boot[boot.length - 1]!) : undefined;
  }

  async fingerprint(): Promise<DriverFingerprint> {
    const h = await this.host();
    if (!h.ok) return { available: false, reason: h.reason ?? 'unavailable', ...(h.kvm ? { attributes: { kvm: h.kvm.detail } } : {}) };
    return {
      available: true,
      attributes: { qemu: h.version!, qemu_path: h.qemu!, accel: h.accel, kvm: h.kvm?.detail ?? 'not probed (accel tcg forced)', machines: 'microvm (kernel images), q35 (disk images)' },
      ...(h.accel === 'kvm' ? {} : { missing_features: { kvm: `VMs run under TCG (software emulation) on this node: ${h.kvm?.detail ?? 'KVM is turned off (accel tcg)'}` } }),
    };
  }

  // ---- instances ----

  async prepare(config: TaskConfig, progress?: (m: string) => void): Promise<TaskHandle> {
    const host = await this.ready();
    const vm = this.vmOf(config);
    const dir = config.dir;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const disk = join(dir, DISK);
    await rm(disk, { force: true });
    if (!config.instance?.root_volume) {
      progress?.('making the root disk');
      const size = Math.max(config.instance?.disk_bytes ?? 0, vm.min_disk_bytes);
      await this.qemuImg(host, ['create', '-q', '-f', 'qcow2', '-F', vm.disk_format, '-b', vm.disk, disk, ...(size > 0 ? [String(size)] : [])], 'make the root disk');
    }
    progress?.('writing the seed');
    await writeSeedImage(join(dir, SEED), this.seedOf(config));
    await this.extraDisks(config);
    const taps = await ensureTaps(host.ip!, config.id, config.networks ?? []);
    return this.handle(config, host, { shim_pid: 0, shim_start: '' }, taps);
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    const h = await this.prepare(config);
    try {
      return await this.boot(h, config);
    } catch (e) {
      await this.destroy(h).catch(() => undefined);
      throw e;
    }
  }

  async boot(handle: TaskHandle, config: TaskConfig): Promise<TaskHandle> {
    const h = this.asHandle(handle);
    if (await this.alive(h)) throw new DriverError(`VM ${h.task_id} is running already`, false);
    const host = await this.ready();
    // A boot discards the memory of a suspend (a resume would use it): this is a cold boot.
    await rm(join(h.dir, STATE), { force: true });
    await this.growDisk(host, h, config);
    await this.extraDisks(config);
    const taps = await ensureTaps(host.ip!, config.id, config.networks ?? []);
    return this.run(host, { ...h, taps }, config, []);
  }

  /**
   * The flavor's ephemeral and swap disks, made as Nova makes them: sparse raw files, the first an
   * ext4 file system labelled `ephemeral0` (cloud-init mounts it at /mnt), the second swap (`swap0`).
   * Made once; a resize to a larger flavor makes the ones that are missing.
   */
  private async extraDisks(config: TaskConfig): Promise<void> {
    const inst = config.instance;
    const make = async (file: string, bytes: number, tool: string, args: string[], what: string) => {
      const path = join(config.dir, file);
      if (bytes <= 0 || (await exists(path))) return;
      const bin = await findOnPath(tool);
      if (!bin) throw new DriverError(`the flavor asks for ${what}, and ${tool} is not installed on this node (Debian package ${tool === 'mkswap' ? 'util-linux' : 'e2fsprogs'})`, false);
      const f = await open(`${path}.tmp`, 'w');
      await f.truncate(bytes);
      await f.close();
      const r = await runCommand(bin, [...args, `${path}.tmp`], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new DriverError(`could not make ${what}: ${tool} failed: ${String(r.stderr).trim()}`, false);
      await rename(`${path}.tmp`, path);
    };
    await make(EPHEMERAL, inst?.ephemeral_bytes ?? 0, 'mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'ephemeral0'], 'an ephemeral disk');
    await make(SWAP, inst?.swap_bytes ?? 0, 'mkswap', ['-L', 'swap0'], 'a swap disk');
  }

  private async growDisk(host: Host, h: QemuHandle, config: TaskConfig): Promise<void> {
    const want = config.instance?.disk_bytes ?? 0;
    if (want <= 0 || config.instance?.root_volume) return;
    const info = JSON.parse(await this.qemuImg(host, ['info', '--output=json', '-U', join(h.dir, DISK)], 'read the root disk')) as { 'virtual-size': number };
    if (want > info['virtual-size']) await this.qemuImg(host, ['resize', '-q', join(h.dir, DISK), String(want)], 'grow the root disk');
  }

  /** Start qemu for `h` with `config` (`extra`: e.g. -incoming); resolves once QEMU answers on QMP. */
  private async run(host: Host, h: QemuHandle, config: TaskConfig, extra: string[]): Promise<QemuHandle> {
    const vm = this.vmOf(config);
    const dir = h.dir;
    await Promise.all([QMP, CONSOLE_SOCK, PIDFILE].map((f) => rm(join(dir, f), { force: true })));
    for (const k of [...this.results.keys()]) if (k.startsWith(`${h.task_id}:`)) this.results.delete(k);
    const kernelBoot = vm.kernel !== undefined;
    const dev = kernelBoot ? 'device' : 'pci';
    const inst = config.instance;
    // A seed that carries secrets and configs is written at every start, on the node's tmpfs.
    const carried = inst?.files?.list ?? [];
    const seed = carried.length ? join(inst!.files!.dir, SEED) : join(dir, SEED);
    if (carried.length) await writeSeedImage(seed, { ...this.seedOf(config), files: carried });
    const mib = Math.max(64, Math.round((inst?.memory_bytes ?? config.limits.memory_bytes ?? 0) / MiB) || 256);
    const cpus = Math.max(1, Math.round(inst?.vcpus ?? config.limits.cpu ?? 1) || 1);
    const args = [
      '-name', `guest=${config.name || h.task_id}`,
      '-M', kernelBoot ? 'microvm,acpi=on' : 'q35',
      '-accel', h.accel, ...(h.accel === 'kvm' ? ['-cpu', 'host'] : []),
      '-m', String(mib), '-smp', String(cpus),
      '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
      '-pidfile', join(dir, PIDFILE),
      '-qmp', `unix:${join(dir, QMP)},server=on,wait=off`,
      '-chardev', `socket,id=con0,path=${join(dir, CONSOLE_SOCK)},server=on,wait=off,logfile=${join(dir, CONSOLE_LOG)},logappend=on`,
      '-serial', 'chardev:con0',
      ...(inst?.root_volume
        ? ['-drive', `id=root,file=${inst.root_volume.path},format=raw,if=none,discard=unmap`, '-device', `virtio-blk-${dev},drive=root,serial=${inst.root_volume.serial}`]
        : ['-drive', `id=root,file=${join(dir, DISK)},format=qcow2,if=none,discard=unmap`, '-device', `virtio-blk-${dev},drive=root`]),
      '-drive', `id=seed,file=${seed},format=raw,if=none,readonly=on`,
      '-device', `virtio-blk-${dev},drive=seed`,
      ...(await this.extraDrives(dir, dev)),
      // Volumes are SCSI disks on one virtio-scsi controller: unlike virtio-blk on virtio-mmio,
      // they can be plugged in and out while the guest runs.
      '-device', `virtio-scsi-${dev},id=${SCSI_BUS}`,
      ...(inst?.volumes ?? []).flatMap((v) => [...volumeBlockdev(v), '-device', volumeDevice(v)]),
      ...(config.networks ?? []).flatMap((n, i) => [
        '-netdev', `tap,id=net${i},ifname=${h.taps[i]},script=no,downscript=no`,
        '-device', `virtio-net-${dev},netdev=net${i}${n.mac ? `,mac=${n.mac}` : ''}`,
      ]),
      ...(kernelBoot ? ['-kernel', vm.kernel!, '-initrd', vm.initrd!, '-append', [vm.cmdline ?? 'console=ttyS0 panic=-1', ...(h.accel === 'tcg' ? tcgKernelArgs() : [])].join(' ')] : ['-boot', 'c']),
      ...extra,
    ];
    const sup = await startSupervised(dir, [host.qemu!, ...args], { stdout: STDERR, stderr: STDERR, what: 'the VM' });
    this.live.set(`${sup.shim_pid}:${sup.shim_start}`, sup);
    const next: QemuHandle = { ...h, shim_pid: sup.shim_pid, shim_start: sup.shim_start, started_at: new Date().toISOString(), config: jsonCopy(config) };
    const fail = async (why: string): Promise<never> => {
      try { process.kill(-sup.shim_pid, 'SIGKILL'); } catch { /* gone */ }
      await Promise.race([sup.exited, sleep(2000)]);
      const stderr = (await readFile(join(dir, STDERR), 'utf8').catch(() => '')).trim().split('\n').filter((l) => l.includes('qemu')).slice(-3).join('; ');
      throw new DriverError(`${why}${stderr ? `: ${stderr}` : ''}`, false);
    };
    // QEMU is up once it answers on QMP; a start failure (a bad disk, a tap in use) ends it first.
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (sup.done) return fail(`qemu exited at once (${sup.done.signal ?? `status ${sup.done.code}`})`);
      try {
        await withQmp(join(dir, QMP), (q) => q.execute('query-status'), 2000);
        break;
      } catch {
        if (Date.now() > deadline) return fail('qemu did not answer on its QMP socket within 30 s');
        await sleep(20);
      }
    }
    const pidText = (await readFile(join(dir, PIDFILE), 'utf8').catch(() => '')).trim();
    if (/^\d+$/.test(pidText)) {
      const st = await readProcStat(Number(pidText));
      next.pid = Number(pidText);
      if (st) next.pid_start = st.starttime;
    }
    return next;
  }

  private async extraDrives(dir: string, dev: string): Promise<string[]> {
    const out: string[] = [];
    for (const [file, id] of [[EPHEMERAL, 'ephemeral'], [SWAP, 'swap']] as const) {
      if (!(await exists(join(dir, file)))) continue;
      out.push('-drive', `id=${id},file=${join(dir, file)},format=raw,if=none,discard=unmap`, '-device', `virtio-blk-${dev},drive=${id}`);
    }
    return out;
  }

  async saveDisk(handle: TaskHandle, tag: string): Promise<void> {
    const h = this.asHandle(handle);
    if (h.config.instance?.root_volume) return; // the root disk is a volume: a resize leaves it as it is
    const to = this.saved(h, tag);
    await copyFile(join(h.dir, DISK), `${to}.tmp`);
    await rename(`${to}.tmp`, to);
  }

  async restoreDisk(handle: TaskHandle, tag: string): Promise<void> {
    const h = this.asHandle(handle);
    if (h.config.instance?.root_volume) return;
    if (await this.alive(h)) throw new DriverError(`VM ${h.task_id} must be stopped before its disk is restored`, false);
    const from = this.saved(h, tag);
    if (!(await exists(from))) throw new DriverError(`VM ${h.task_id} has no saved disk "${tag}"`, false);
    await copyFile(from, join(h.dir, `${DISK}.tmp`));
    await rename(join(h.dir, `${DISK}.tmp`), join(h.dir, DISK));
  }

  async dropDisk(handle: TaskHandle, tag: string): Promise<void> {
    await rm(this.saved(this.asHandle(handle), tag), { force: true });
  }

  async exportDisk(handle: TaskHandle, dir: string): Promise<ExportedDisk> {
    const h = this.asHandle(handle);
    const host = await this.ready();
    const root = h.config.instance?.root_volume;
    const src = root ? root.path : join(h.dir, DISK);
    const out = join(dir, 'disk.qcow2');
    // One qcow2 with no backing file (the image's layer and the server's writes merged); -U reads
    // beside a running QEMU, whose vCPUs are stopped meanwhile, its I/O drained.
    const copy = () => this.qemuImg(host, ['convert', '-q', '-U', '-f', root ? 'raw' : 'qcow2', '-O', 'qcow2', src, out], 'copy the root disk').then(() => undefined);
    if (root) await this.quiesced(h, root, copy);
    else await this.quiesced(h, { id: 'root', path: src, serial: '', content: 'disk', mount_path: null }, copy);
    const vm = h.config.image_info?.vm;
    return { kind: 'vm', disk: out, ...(vm?.kernel ? { kernel: vm.kernel } : {}), ...(vm?.initrd ? { initrd: vm.initrd } : {}), ...(vm?.cmdline ? { cmdline: vm.cmdline } : {}) };
  }

  private saved(h: QemuHandle, tag: string): string {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(tag)) throw new DriverError(`"${tag}" cannot name a saved disk (letters, digits, _ . -)`, false);
    return join(h.dir, `${SAVED}${tag}.qcow2`);
  }

  // ---- the lifecycle core ----

  async wait(handle: TaskHandle): Promise<ExitResult> {
    const h = this.asHandle(handle);
    const live = this.live.get(this.key(h));
    for (;;) {
      if (live?.done) break;
      if (!live && !(await this.alive(h))) break;
      await (live ? Promise.race([live.exited, sleep(this.pollMs)]) : sleep(this.pollMs));
    }
    return this.exitResult(h);
  }

  async inspect(handle: TaskHandle): Promise<TaskState> {
    const h = this.asHandle(handle);
    if (await this.alive(h)) return { running: true, ...(h.pid !== undefined ? { pid: h.pid } : {}) };
    return { running: false, ...(h.pid !== undefined ? { pid: h.pid } : {}), ...(h.shim_pid ? { exit: await this.exitResult(h) } : {}) };
  }

  async recover(handle: TaskHandle): Promise<TaskHandle | undefined> {
    const h = this.asHandle(handle);
    if (!(await this.alive(h))) return undefined;
    return h;
  }

  /** The power button (ACPI), and after `graceMs` a SIGKILL. A suspended VM's saved memory is dropped. */
  async stop(handle: TaskHandle, graceMs: number): Promise<void> {
    const h = this.asHandle(handle);
    if (!(await this.alive(h))) {
      await rm(join(h.dir, STATE), { force: true });
      return;
    }
    if (graceMs > 0) {
      // The power button, pressed again every 2 s: a guest still booting has no one listening to
      // it yet (Nova retries a clean shutdown the same way).
      const deadline = Date.now() + graceMs;
      try {
        while (Date.now() < deadline) {
          await withQmp(join(h.dir, QMP), async (q) => {
            const st = await q.execute<{ status: string }>('query-status');
            if (st.status === 'paused') await q.execute('cont');
            await q.execute('system_powerdown');
          }, 3000);
          if (await this.waitExit(h, Math.min(POWER_BUTTON_RETRY_MS, deadline - Date.now()))) return;
        }
      } catch {
        // QMP gone: qemu is on its way out (or hung); give it what is left of the grace period.
        if (await this.waitExit(h, Math.max(0, deadline - Date.now()))) return;
      }
    }
    await this.kill(h);
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    if (await this.alive(h)) await this.kill(h);
    await this.exitResult(h).catch(() => undefined);
    const host = await this.host();
    await deleteTaps(host.ip ?? 'ip', h.taps);
    for (const f of await readdir(h.dir).catch(() => [] as string[])) {
      if (f === CONSOLE_LOG || f === STDERR || f.endsWith('.json')) continue;
      await rm(join(h.dir, f), { recursive: true, force: true });
    }
    this.live.delete(this.key(h));
  }

  // ---- pause, suspend ----

  async freeze(handle: TaskHandle): Promise<void> {
    const h = await this.running(handle, 'pause');
    await withQmp(join(h.dir, QMP), (q) => q.execute('stop'));
  }

  async thaw(handle: TaskHandle): Promise<void> {
    const h = await this.running(handle, 'unpause');
    await withQmp(join(h.dir, QMP), (q) => q.execute('cont'));
  }

  /** The VM's memory goes to `DIR/state` (a migration to a file), then qemu quits: nothing runs. */
  async suspend(handle: TaskHandle): Promise<TaskHandle> {
    const h = await this.running(handle, 'suspend');
    const state = join(h.dir, STATE);
    await rm(`${state}.tmp`, { force: true });
    await withQmp(join(h.dir, QMP), async (q) => {
      await q.execute('stop');
      await q.execute('migrate', { uri: `exec:cat > '${state}.tmp'` });
      const deadline = Date.now() + 300_000;
      for (;;) {
        const m = await q.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
        if (m.status === 'completed') break;
        if (m.status === 'failed' || m.status === 'cancelled') {
          await q.execute('cont').catch(() => undefined);
          throw new DriverError(`saving the VM's memory failed: ${m['error-desc'] ?? m.status}`, false);
        }
        if (Date.now() > deadline) throw new DriverError('saving the VM\'s memory did not finish within 5 minutes', false);
        await sleep(20);
      }
      await rename(`${state}.tmp`, state);
      await q.execute('quit').catch(() => undefined);
    }, 5000);
    if (!(await this.waitExit(h, 10_000))) await this.kill(h);
    return h;
  }

  async resume(handle: TaskHandle): Promise<TaskHandle> {
    const h = this.asHandle(handle);
    const state = join(h.dir, STATE);
    if (!(await exists(state))) throw new DriverError(`VM ${h.task_id} is not suspended (it has no saved memory)`, false);
    if (await this.alive(h)) throw new DriverError(`VM ${h.task_id} is running`, false);
    const host = await this.ready();
    const config = this.savedConfig(h);
    const next = await this.run(host, h, config, ['-incoming', `exec:cat '${state}'`]);
    const deadline = Date.now() + 120_000;
    await withQmp(join(h.dir, QMP), async (q) => {
      for (;;) {
        const st = await q.execute<{ status: string }>('query-status');
        if (st.status === 'running') return;
        if (st.status === 'paused' || st.status === 'postmigrate') { await q.execute('cont'); return; }
        if (Date.now() > deadline) throw new DriverError(`the VM did not come back from its saved memory within 2 minutes (status ${st.status})`, false);
        await sleep(20);
      }
    });
    await rm(state, { force: true });
    return next;
  }

  async suspended(handle: TaskHandle): Promise<boolean> {
    const h = this.asHandle(handle);
    return (await exists(join(h.dir, STATE))) && !(await this.alive(h));
  }

  // ---- volumes ----

  /**
   * Hot-plug: the volume's file as a block node, then a SCSI disk on the controller (the guest's
   * kernel sees it at once). Done already (a repeated step) is fine. A VM that does not run gets it
   * at its next boot (the handle's config lists it).
   */
  async attachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle; device: string | null }> {
    const h = this.asHandle(handle);
    const vols = (h.config.instance?.volumes ?? []).filter((x) => x.id !== v.id);
    const next = this.withVolumes(h, [...vols, v]);
    if (await this.alive(h)) {
      await withQmp(join(h.dir, QMP), async (q) => {
        const devs = await this.peripherals(q);
        if (devs.includes(deviceId(v))) return;
        const nodes = await q.execute<{ 'node-name': string }[]>('query-named-block-nodes');
        if (!nodes.some((n) => n['node-name'] === nodeName(v))) {
          await q.execute('blockdev-add', { 'node-name': nodeName(v), driver: 'raw', file: { driver: 'file', filename: v.path } });
        }
        await q.execute('device_add', { driver: 'scsi-hd', bus: `${SCSI_BUS}.0`, drive: nodeName(v), id: deviceId(v), serial: v.serial });
      }, 15_000);
    }
    return { handle: next, device: `/dev/sd${String.fromCharCode(97 + Math.min(25, vols.length))}` };
  }

  /** Hot-unplug: the disk leaves the guest (its kernel lets go of it), then the block node closes. */
  async detachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle }> {
    const h = this.asHandle(handle);
    const next = this.withVolumes(h, (h.config.instance?.volumes ?? []).filter((x) => x.id !== v.id));
    if (await this.alive(h)) {
      const deadline = Date.now() + 30_000;
      await withQmp(join(h.dir, QMP), async (q) => {
        if ((await this.peripherals(q)).includes(deviceId(v))) {
          await q.execute('device_del', { id: deviceId(v) });
          while ((await this.peripherals(q)).includes(deviceId(v))) {
            if (Date.now() > deadline) throw new DriverError(`the guest of VM ${h.task_id} did not let go of volume ${v.id} within 30 s (is it still mounted there?)`, false);
            await sleep(50);
          }
        }
        // The disk is gone from the guest; QEMU lets go of its block node a moment later.
        for (let i = 0; ; i++) {
          const nodes = await q.execute<{ 'node-name': string }[]>('query-named-block-nodes');
          if (!nodes.some((n) => n['node-name'] === nodeName(v))) break;
          try {
            await q.execute('blockdev-del', { 'node-name': nodeName(v) });
            break;
          } catch (e) {
            if (!/in use/.test((e as Error).message) || Date.now() > deadline) throw e;
            await sleep(50);
          }
        }
      }, 40_000);
    }
    return { handle: next };
  }

  async volumeResized(handle: TaskHandle, v: VolumeDisk, bytes: number): Promise<void> {
    const h = this.asHandle(handle);
    if (!(await this.alive(h))) return;
    await withQmp(join(h.dir, QMP), async (q) => {
      const root = h.config.instance?.root_volume?.id === v.id;
      await q.execute('block_resize', root ? { device: 'root', size: bytes } : { 'node-name': nodeName(v), size: bytes });
    });
  }

  /** The VM's vCPUs stopped (QEMU drains its pending I/O first) for the copy, then running again. */
  async quiesced<T>(handle: TaskHandle, _v: VolumeDisk, fn: () => Promise<T>): Promise<T> {
    const h = this.asHandle(handle);
    if (!(await this.alive(h))) return fn();
    const qmp = join(h.dir, QMP);
    const was = await withQmp(qmp, async (q) => {
      const st = await q.execute<{ status: string }>('query-status');
      if (st.status === 'running') await q.execute('stop');
      return st.status;
    });
    try {
      return await fn();
    } finally {
      if (was === 'running') await withQmp(qmp, (q) => q.execute('cont'));
    }
  }

  private async peripherals(q: import('./qmp.js').Qmp): Promise<string[]> {
    const r = await q.execute<{ name: string }[]>('qom-list', { path: '/machine/peripheral' });
    return r.map((x) => x.name);
  }

  private withVolumes(h: QemuHandle, volumes: VolumeDisk[]): QemuHandle {
    const inst = h.config.instance;
    return inst ? { ...h, config: { ...h.config, instance: { ...inst, volumes } } } : h;
  }

  // ---- console ----

  async consoleLog(handle: TaskHandle, opts: { tailBytes?: number } = {}): Promise<string> {
    return tailOf(join(this.asHandle(handle).dir, CONSOLE_LOG), opts.tailBytes ?? 1024 * 1024);
  }

  /** The serial console, interactively (one client at a time; everything is logged anyway). */
  async console(handle: TaskHandle): Promise<TtyExec> {
    const h = await this.running(handle, 'attach to the console of');
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(join(h.dir, CONSOLE_SOCK));
      s.once('connect', () => resolve(s));
      s.once('error', (e) => reject(new DriverError(`the console of VM ${h.task_id} does not answer: ${errText(e)}`, false)));
    });
    const output = new PassThrough();
    sock.pipe(output);
    const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(0)));
    sock.on('error', () => undefined);
    return { stdin: sock, output, resize: async () => undefined, wait: () => closed, kill: () => sock.destroy() };
  }

  // ---- internals ----

  private async ready(): Promise<Host> {
    const host = await this.host();
    if (!host.ok) throw new DriverError(`the qemu driver is not available on this node: ${host.reason}`);
    return host;
  }

  private vmOf(config: TaskConfig): NonNullable<NonNullable<TaskConfig['image_info']>['vm']> {
    const vm = config.image_info?.vm;
    if (!vm) throw new DriverError(`the qemu driver boots VM images, and ${config.image ?? 'this task\'s image'} is ${config.image_info ? 'a container image' : 'not on this node'}: use a VM image (\`yun image import --disk-format …\`) or the oci driver`);
    if ((vm.kernel === undefined) !== (vm.initrd === undefined)) throw new DriverError(`VM image ${config.image_info!.ref} has a kernel without an initrd (or the other way round)`);
    return vm;
  }

  private seedOf(config: TaskConfig): SeedData {
    const inst = config.instance;
    const n = config.networks?.[0];
    return {
      instanceId: inst?.seed.instance_id ?? config.id,
      hostname: guestHostname(inst?.seed.hostname ?? config.hostname ?? config.name ?? config.id),
      publicKeys: inst?.seed.public_keys ?? [],
      ...(inst?.seed.user_data_b64 ? { userData: Buffer.from(inst.seed.user_data_b64, 'base64') } : {}),
      ...(n && n.mac ? { network: { mac: n.mac, address: `${n.address}/${n.prefix}`, gateway: n.gateway, nameservers: [n.gateway], search: [n.search] } } : {}),
    };
  }

  private handle(config: TaskConfig, host: Host, shim: { shim_pid: number; shim_start: string }, taps: string[]): QemuHandle {
    return {
      driver: 'qemu', version: 1, task_id: config.id, started_at: new Date().toISOString(), dir: config.dir,
      ...shim, taps, accel: host.accel, memory_limit_bytes: 0, config: jsonCopy(config),
    };
  }

  /** The config the VM last booted with (kept in the handle for a resume). */
  private savedConfig(h: QemuHandle): TaskConfig {
    const c = h.config;
    if (!c) throw new DriverError(`the handle of VM ${h.task_id} has no boot config (it was made by an older agent): hard-reboot it`, false);
    return c;
  }

  private asHandle(handle: TaskHandle): QemuHandle {
    const h = handle as Partial<QemuHandle>;
    if (!h || h.driver !== 'qemu') throw new DriverError(`not a qemu driver handle (driver is ${JSON.stringify(h?.driver)})`);
    if (typeof h.dir !== 'string' || !Number.isInteger(h.shim_pid) || !Array.isArray(h.taps)) throw new DriverError(`malformed qemu driver handle for task ${JSON.stringify(h.task_id)}`);
    return h as QemuHandle;
  }

  private async running(handle: TaskHandle, what: string): Promise<QemuHandle> {
    const h = this.asHandle(handle);
    if (!(await this.alive(h))) throw new DriverError(`cannot ${what} VM ${h.task_id}: it is not running`, false);
    return h;
  }

  private key(h: QemuHandle): string {
    return `${h.shim_pid}:${h.shim_start}`;
  }

  private async alive(h: QemuHandle): Promise<boolean> {
    if (!h.shim_pid) return false;
    const live = this.live.get(this.key(h));
    if (live) return !live.done;
    return isAlive(h.shim_pid, h.shim_start);
  }

  private async waitExit(h: QemuHandle, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (!(await this.alive(h))) return true;
      const live = this.live.get(this.key(h));
      await (live ? Promise.race([live.exited, sleep(50)]) : sleep(50));
    }
    return !(await this.alive(h));
  }

  private async kill(h: QemuHandle): Promise<void> {
    if (h.pid && (await isAlive(h.pid, h.pid_start))) signal(h.pid, 'SIGKILL');
    if (await this.waitExit(h, 3000)) return;
    signal(-h.shim_pid, 'SIGKILL');
    await this.waitExit(h, 2000);
  }

  private exitResult(h: QemuHandle): Promise<ExitResult> {
    return recordedExit({ dir: h.dir, shim_pid: h.shim_pid, cgroups: null, memory_limit_bytes: 0 }, this.live.get(this.key(h)), this.results, `${h.task_id}:${h.shim_pid}`);
  }

  private async qemuImg(host: Host, args: string[], what: string): Promise<string> {
    const r = await runCommand(host.qemuImg!, args, { timeoutMs: 600_000 });
    if (r.code !== 0) throw new DriverError(`could not ${what}: qemu-img ${args[0]} failed: ${String(r.stderr).trim() || `exit ${r.code}`}`, false);
    return String(r.stdout);
  }
}

const SCSI_BUS = 'scsi0';
/** QEMU ids for a volume's block node and disk (letters first, at most 31 characters). */
const shortId = (v: VolumeDisk) => v.id.replace(/[^A-Za-z0-9]/g, '').slice(0, 24);
const nodeName = (v: VolumeDisk) => `vol${shortId(v)}`;
const deviceId = (v: VolumeDisk) => `disk${shortId(v)}`;

function volumeBlockdev(v: VolumeDisk): string[] {
  return ['-blockdev', `driver=raw,node-name=${nodeName(v)},file.driver=file,file.filename=${v.path}`];
}

function volumeDevice(v: VolumeDisk): string {
  return `scsi-hd,bus=${SCSI_BUS}.0,drive=${nodeName(v)},id=${deviceId(v)},serial=${v.serial}`;
}

/** A JSON copy (handles are persisted; the image's export function is not data). */
function jsonCopy<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  if (!Number.isSafeInteger(pid) || (pid >= -1 && pid <= 1)) return;
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

