/**
 * The `oci` driver: each task is a runc container made from its image. One OCI bundle per task in
 * `${dir}/bundle`, whose rootfs is an overlay mount (the image's flattened rootfs as the shared,
 * read-only lower layer; `${dir}/upper` as the task's own writable layer). `runc run --keep` runs in
 * the foreground under the same POSIX-sh supervisor shim as the process driver (../process/shim.ts):
 * the shim outlives the agent and records runc's status — the container's exit code, or 128+N after
 * signal N — in `${dir}/exit`, so a restarted agent reattaches to a running container or still gets
 * the exit code of one that ended meanwhile. `--keep` leaves the container (and its cgroups, with
 * the OOM-kill counter) in runc's state until `destroy` deletes it.
 *
 * PID 1 of every container is a static init (tini, `tini-static` from Debian's `tini` package, the
 * same binary Docker uses for `--init`), bind-mounted read-only at /dev/init: a command as PID 1
 * would ignore SIGTERM unless it handles it, and would not reap orphans. Without tini on the node the
 * command itself is PID 1 (the fingerprint says `init: none`).
 *
 * See README.md for the layout, the handle and what is cleaned when.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, rename, rm, rmdir, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { isAbsolute, join, posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  DriverError,
  type Driver,
  type DriverFingerprint,
  type ExecResult,
  type ExitResult,
  type Freezable,
  type DriverCapabilities,
  type TerminalExec,
  type TtyExec,
  type Instances,
  type Suspendable,
  type Consoles,
  type TaskConfig,
  type TaskHandle,
  type TaskState,
  type ExportedDisk,
  type ImageInfo,
  type VolumeAttach,
  type VolumeDisk,
} from '../driver.js';
import { errText, normalizeSignal, stderrHint } from '../common/exit.js';
import { readStarted, sendGo } from '../common/shim-io.js';
import { recordedExit } from '../common/recorded-exit.js';
import { tailOf } from '../common/tail.js';
import { detectCgroups, parentParts, taskCgroupPaths, type CgroupSupport, type TaskCgroups } from '../process/cgroups.js';
import { isAlive, readProcStat, readProcStatSync } from '../process/procfs.js';
import { SHIM_NAME, START_SHIM } from '../process/shim.js';
import { createNetns, deleteNetns, findOnPath, isMountPoint, mountOverlay, netnsExists, netnsPath, runCommand, unmount } from './host.js';
import { bindInside, ensureShare, growMounted, mountOnNode, mountRootVolume, unbindInside, unmountFromNode, unmountShare, VOLS_MOUNT, withFrozenFs } from './volumes.js';
import { isShell, SEED_DIR, SEED_MOUNT, SYSTEM_INIT, writeSeed } from './instance.js';
import { Runc, runcError } from './runc.js';
import { lookupCommandInRoot } from './rootfs-path.js';
import { attachNetworks, networkResolvConf } from './network-attach.js';
import { buildSpec, checkHostname, checkMount, containerEnv, DEFAULT_PATH, hostsFile, NOFILE_HARD, parseEnvList, processArgs, resolvConf, validateEnv } from './spec.js';
import { resolveContainerUser } from './user.js';

export interface OciDriverOptions {
  /** runc binary (default: `runc` found on PATH). */
  runc?: string;
  /** runc's state directory (`runc --root`), default /run/yunstack-runc. */
  root?: string;
  /** Where cgroup file systems are mounted (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** Static init run as PID 1 (default: `tini-static` or `docker-init` on PATH); `false`: none, the command is PID 1. */
  init?: string | false;
  /** How often `wait` polls a recovered task (default 100 ms). */
  pollIntervalMs?: number;
}

/** What the oci driver keeps in a task handle (persisted by the agent; JSON). */
export interface OciHandle extends TaskHandle {
  driver: 'oci';
  version: 1;
  dir: string;
  /** runc's container id (the task id) and the runc binary and state root it lives in. */
  container_id: string;
  runc: string;
  runc_root: string;
  /** The supervisor shim (`sh` running `runc run`): alive exactly while the task runs. */
  shim_pid: number;
  shim_start: string;
  /** The container's PID 1 on the node (the init, or the command without one). */
  pid?: number;
  pid_start?: string;
  /** The bundle and its rootfs mount point. */
  bundle: string;
  rootfs: string;
  /** The named network namespace (`ip netns`), absent with the host network. */
  netns?: string;
  /** `/<cgroup_parent>/<id>` as given to runc, and the task's cgroups (memory dir for the OOM counter). */
  cgroups_path: string;
  cgroups: TaskCgroups | null;
  memory_limit_bytes: number;
  /** For `exec`: the container's PATH and working directory, and where other file systems are mounted in it. */
  path_env: string;
  cwd: string;
  mount_targets: string[];
  /** A long-lived instance: `stop` keeps its root disk; `boot` runs it again. */
  instance?: boolean;
  /** Its volumes (mounted on the node under DIR/vols, bound into the container). */
  volumes?: VolumeDisk[];
  /** Booted from a volume: its root file system is that volume, mounted at `rootfs`. */
  root_volume?: VolumeDisk;
  /** The image's config (an image made from the instance keeps it). */
  image_config?: ImageInfo['config'];
}

/** What `bundle` made, for `launch`. */
interface Bundle {
  host: Host;
  runc: Runc;
  id: string;
  dir: string;
  bundle: string;
  rootfs: string;
  pidFile: string;
  netns: string | undefined;
  cgroupsPath: string;
  cgroups: TaskCgroups | null;
  limits: { cpu: number; memory_bytes: number; pids: number };
  pathEnv: string;
  cwd: string;
  mountTargets: string[];
  /** A long-lived instance (prepared, or booted again): one console log; its disk kept at stop. */
  instance: boolean;
  volumes: VolumeDisk[];
  rootVolume?: VolumeDisk;
  imageConfig: ImageInfo['config'];
  cleanup(): Promise<void>;
}

export const STDOUT_LOG = 'stdout.log';
import { EXIT_FILE, EXIT_JSON, STDERR_LOG } from '../common/recorded-exit.js';
export { EXIT_FILE, EXIT_JSON, STDERR_LOG };
export const RUNC_LOG = 'runc.log';
const PID_FILE = 'init.pid';
/** Set while an instance is suspended (frozen as a suspend, not a pause). */
const SUSPENDED_MARK = 'suspended';
/** Saved copies of an instance's root disk: `saved-<tag>`. */
const SAVED_PREFIX = 'saved-';

/** Output kept per stream by `exec`. */
const EXEC_OUTPUT_CAP = 1024 * 1024;
/** After SIGKILL, how long to wait for runc to report the exit before killing the supervisor too. */
const KILL_SETTLE_MS = 3000;
/** How long `start` waits for runc to start the container. */
const START_TIMEOUT_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;

/** The named network namespace of a task: `yun-<id>` for short ids, else a prefix plus a hash. */
export function netnsName(id: string): string {
  if (/^[A-Za-z0-9_.-]{1,32}$/.test(id)) return `yun-${id}`;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 10);
  return `yun-${id.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 16)}-${hash}`;
}


/** Quote one word for /bin/sh. */
function shQuote(s: string): string {
  return /^[A-Za-z0-9_\/.=:,+@%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

interface ShimExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: string;
}

interface Live {
  child: ChildProcess;
  exited: Promise<ShimExit>;
  done?: ShimExit;
}

/** What the node offers, detected once per driver instance. */
interface Host {
  ok: boolean;
  reason?: string;
  runc?: string;
  runcVersion?: string;
  runcSpec?: string;
  mount?: string;
  umount?: string;
  ip?: string;
  init?: string;
  cgroups: CgroupSupport;
  swapLimit: boolean;
  nofileHard: number;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export class OciDriver implements Driver, Freezable, TerminalExec, Instances, Suspendable, Consoles, VolumeAttach {
  readonly name = 'oci';
  readonly capabilities: DriverCapabilities = { command: true, exec: true, terminal: true, pause: true, suspend: 'freeze', instances: true, console: true, volumes: true, image_kinds: ['container'], network_kinds: ['host', 'overlay'] };
  private readonly opts: OciDriverOptions;
  private readonly runcRoot: string;
  private readonly cgroupRoot: string;
  private readonly pollMs: number;
  private hostP?: Promise<Host>;
  private readonly live = new Map<string, Live>();
  private readonly results = new Map<string, ExitResult>();

  constructor(opts: OciDriverOptions = {}) {
    this.opts = opts;
    this.runcRoot = opts.root ?? '/run/yunstack-runc';
    this.cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.pollMs = opts.pollIntervalMs ?? 100;
  }

  private host(): Promise<Host> {
    this.hostP ??= this.detect();
    return this.hostP;
  }

  private async detect(): Promise<Host> {
    const cgroups = await detectCgroups(this.cgroupRoot);
    const base = { ok: false, cgroups, swapLimit: false, nofileHard: 1048576 };
    if (process.platform !== 'linux') return { ...base, reason: `the oci driver runs only on Linux (this node is ${process.platform})` };
    if (process.getuid?.() !== 0) return { ...base, reason: 'the oci driver needs root: runc creates namespaces, cgroups and mounts (run the agent as root)' };
    const runc = await findOnPath(this.opts.runc ?? 'runc');
    if (!runc) return { ...base, reason: this.opts.runc?.includes('/') ? `runc not found at ${this.opts.runc}: install the Debian package runc, or fix the path` : `${this.opts.runc ?? 'runc'} not found on PATH: install the Debian package runc` };
    let v: Awaited<ReturnType<Runc['version']>>;
    try {
      v = await new Runc(runc, this.runcRoot).version();
    } catch (err) {
      return { ...base, runc, reason: `${runc} does not run (${errText(err)}): reinstall the Debian package runc` };
    }
    const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
    if (!/\toverlay$/m.test(filesystems)) return { ...base, runc, runcVersion: v.version, reason: 'the kernel offers no overlay file system (overlay is not in /proc/filesystems): load it with `modprobe overlay`' };
    const [mount, umount, ip] = await Promise.all([findOnPath('mount'), findOnPath('umount'), findOnPath('ip')]);
    if (!mount || !umount) return { ...base, runc, runcVersion: v.version, reason: 'mount/umount not found on PATH: install the Debian package mount' };
    if (!ip) return { ...base, runc, runcVersion: v.version, reason: 'ip not found on PATH (needed for task network namespaces): install the Debian package iproute2' };
    let init: string | undefined;
    if (this.opts.init !== false) {
      if (typeof this.opts.init === 'string') {
        init = await findOnPath(this.opts.init);
        if (!init) return { ...base, runc, runcVersion: v.version, reason: `the init ${this.opts.init} given to the oci driver does not exist or is not executable` };
      } else init = (await findOnPath('tini-static')) ?? (await findOnPath('docker-init'));
    }
    if (cgroups.version === 'none') return { ...base, runc, runcVersion: v.version, reason: `no usable cgroups: ${cgroups.reason ?? 'unknown reason'}` };
    let swapLimit = false;
    if (cgroups.version === 'v1') swapLimit = await exists(join(cgroups.root, 'memory', 'memory.memsw.limit_in_bytes'));
    else {
      const self = /^0::(\/.*)$/m.exec(await readFile('/proc/self/cgroup', 'utf8').catch(() => ''))?.[1];
      swapLimit = self !== undefined && self !== '/' && (await exists(join(cgroups.root, self, 'memory.swap.max')));
    }
    const nofileHard = await nofileHardLimit();
    return {
      ok: true,
      runc,
      runcVersion: v.version,
      ...(v.spec ? { runcSpec: v.spec } : {}),
      mount,
      umount,
      ip,
      ...(init ? { init } : {}),
      cgroups,
      swapLimit,
      nofileHard,
    };
  }

  async fingerprint(): Promise<DriverFingerprint> {
    const h = await this.host();
    if (!h.ok) return { available: false, reason: h.reason ?? 'unavailable', ...(h.runc ? { attributes: { runc_path: h.runc, ...(h.runcVersion ? { runc: h.runcVersion } : {}) } } : {}) };
    return {
      available: true,
      attributes: {
        runc: h.runcVersion!,
        ...(h.runcSpec ? { oci_spec: h.runcSpec } : {}),
        runc_path: h.runc!,
        runc_root: this.runcRoot,
        cgroups: h.cgroups.version,
        cgroup_root: h.cgroups.root,
        cgroup_controllers: h.cgroups.controllers.join(','),
        root: 'true',
        rootfs: 'overlay',
        init: h.init ?? 'none',
        swap_limit: String(h.swapLimit),
      },
    };
  }

  // ---- start ----

  async start(config: TaskConfig): Promise<TaskHandle> {
    return this.launch(await this.bundle(config, 'task'));
  }

  /**
   * Everything a container needs but its process: the bundle (overlay rootfs, config.json, /etc
   * files), the network namespace on its networks, an instance's seed. `task`: from scratch (a
   * previous attempt cleared first); `prepare`: the same for an instance; `boot`: an instance
   * again — its root disk (the upper layer) is kept, and the rest made only where missing.
   */
  private async bundle(config: TaskConfig, mode: 'task' | 'prepare' | 'boot'): Promise<Bundle> {
    const host = await this.host();
    if (!host.ok) throw new DriverError(`the oci driver is not available on this node: ${host.reason}`);
    const id = config.id;
    if (!CONTAINER_ID.test(id)) throw new DriverError(`task id ${JSON.stringify(id)} cannot be used as a container id (letters, digits, "_", ".", "+", "-"; at most 128)`);
    const image = config.image_info;
    if (!image) throw new DriverError(`the oci driver runs images, and task ${config.name || id} has none${config.image ? ` (image ${config.image} was not resolved on this node)` : ''}: give the service an --image, or use --driver process`);
    if (!isAbsolute(image.rootfs)) throw new DriverError(`the root file system of image ${image.ref} is not an absolute path: ${image.rootfs}`);
    try {
      if (!(await stat(image.rootfs)).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      throw new DriverError(`the root file system of image ${image.ref} (${image.rootfs}) cannot be used: ${errText(err)}`, false);
    }
    const dir = config.dir;
    if (!isAbsolute(dir)) throw new DriverError(`the task dir must be an absolute path: ${dir}`);
    const hostname = checkHostname(config.hostname || config.name || id);
    const mounts = (config.mounts ?? []).map(checkMount);
    for (const m of mounts) {
      if (m.type !== 'bind') continue;
      try {
        await stat(m.source!);
      } catch (err) {
        throw new DriverError(`the source ${m.source} of the bind mount at ${m.target} does not exist on this node (${errText(err)})`);
      }
    }
    const limits = { cpu: config.limits?.cpu ?? 0, memory_bytes: config.limits?.memory_bytes ?? 0, pids: config.limits?.pids ?? 0 };
    const hostNetwork = config.network_mode === 'host';
    const taskEnv = config.env ?? {};
    validateEnv(taskEnv, 'environment');
    const parts = parentParts(config.cgroup_parent ?? '');
    const cgroupsPath = '/' + [...parts, id].join('/');
    const cgroups = taskCgroupPaths(host.cgroups, config.cgroup_parent ?? '', id) ?? null;

    const runc = new Runc(host.runc!, this.runcRoot);
    const bundle = join(dir, 'bundle');
    const rootfs = join(bundle, 'rootfs');
    const upper = join(dir, 'upper');
    const work = join(dir, 'work');
    const etcDir = join(dir, 'etc');
    const pidFile = join(dir, PID_FILE);
    const netns = hostNetwork ? undefined : netnsName(id);
    const rootVolume = config.instance?.root_volume;

    // A previous attempt with this id (an agent that died while starting it), or the stopped run of
    // an instance, is cleared first; an instance keeps its mounted root file system.
    if (await exists(join(this.runcRoot, id))) await runc.delete(id, true).catch(() => undefined);
    // A fresh task has no rootfs dir yet: skip reading /proc/self/mountinfo, which grows with every
    // container on the node (100 concurrent starts each reading it cost ~5% of the CPU).
    if (mode !== 'boot' && (await exists(rootfs)) && (await isMountPoint(rootfs))) await unmount(host.umount!, rootfs);
    await Promise.all([rm(join(dir, EXIT_FILE), { force: true }), rm(join(dir, EXIT_JSON), { force: true }), rm(pidFile, { force: true })]);
    for (const k of [...this.results.keys()]) if (k.startsWith(id + ':')) this.results.delete(k);

    const cleanup = async () => {
      await runc.delete(id, true).catch(() => undefined);
      await unmount(host.umount!, rootfs).catch(() => undefined);
      await removeTaskCgroups(this.cgroupRoot, cgroupsPath).catch(() => undefined);
      // A booting instance keeps what it is made of (its root disk above all); a boot only failed.
      if (mode === 'boot') return;
      if (netns) await deleteNetns(host.ip!, netns).catch(() => undefined);
      for (const p of [bundle, upper, work, etcDir, pidFile, join(dir, SEED_DIR)]) await rm(p, { recursive: true, force: true }).catch(() => undefined);
    };

    let netnsPathValue: string | undefined;
    let spec: Record<string, unknown>;
    let pathEnv: string;
    let cwd: string;
    try {
      await Promise.all([upper, work, rootfs, etcDir].map((d) => mkdir(d, { recursive: true })));
      const mounted = mode === 'boot' && (await isMountPoint(rootfs));
      const haveNetns = mode === 'boot' && netns !== undefined && (await netnsExists(netns));
      const [, nsPath] = await Promise.all([
        mounted ? Promise.resolve() : rootVolume ? mountRootVolume(rootVolume, rootfs) : mountOverlay(host.mount!, image.rootfs, upper, work, rootfs),
        netns ? (haveNetns ? Promise.resolve(netnsPath(netns)) : createNetns(host.ip!, netns)) : Promise.resolve(undefined),
      ]);
      netnsPathValue = nsPath;

      const user = await resolveContainerUser(rootfs, config.user || image.config?.user || '');
      const env = containerEnv(image.config?.env ?? [], taskEnv, hostname, user.home);
      pathEnv = parseEnvList(env).get('PATH') ?? DEFAULT_PATH;
      const wd = config.workdir || image.config?.workdir || '/';
      cwd = posix.normalize(wd.startsWith('/') ? wd : '/' + wd);
      const imageArgs = () => processArgs(image.config ?? { entrypoint: [], cmd: [] }, config.command ?? [], config.shell === true, `image ${image.ref}`);
      const targets = mounts.map((m) => m.target);
      let args: string[];
      if (config.instance) {
        // A system container: our init runs the seed, then the image's (or the config's) command,
        // or stays up by itself when that is only a shell.
        const wanted = config.command?.length || image.config.entrypoint.length || !isShell(image.config.cmd) ? imageArgs() : [];
        await writeSeed(join(dir, SEED_DIR), rootVolume ? rootfs : upper, config.instance);
        mounts.push({ type: 'bind', source: join(dir, SEED_DIR), target: SEED_MOUNT, readonly: true });
        // Volumes: the share (for the ones attached while it runs), and those it boots with.
        mounts.push({ type: 'bind', source: await ensureShare(dir), target: VOLS_MOUNT, propagation: 'rslave' });
        for (const v of config.instance.volumes ?? []) {
          if (!v.mount_path) throw new DriverError(`volume ${v.id} has no mount path: a container mounts its volumes at a path (\`--mount-path /data\`)`, false);
          mounts.push({ type: 'bind', source: await mountOnNode(dir, v), target: v.mount_path });
        }
        // Secrets and configs: read-only from the node's tmpfs, as a task's.
        for (const f of config.instance.files?.list ?? []) mounts.push({ type: 'bind', source: f.source, target: f.target, readonly: true });
        await lookupCommandInRoot(rootfs, '/bin/sh', pathEnv, cwd, targets);
        args = ['/bin/sh', '-c', SYSTEM_INIT, 'yun-init', ...wanted];
      } else {
        args = imageArgs();
        await lookupCommandInRoot(rootfs, args[0]!, pathEnv, cwd, targets);
      }

      const nets = !hostNetwork && netns ? config.networks ?? [] : [];
      if (nets.length > 0 && !haveNetns) await attachNetworks(host.ip!, netns!, id, nets);
      const nodeHosts = hostNetwork ? await readFile('/etc/hosts', 'utf8').catch(() => '') : '';
      const nodeResolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
      const files = { hosts: join(etcDir, 'hosts'), resolvConf: join(etcDir, 'resolv.conf'), hostname: join(etcDir, 'hostname') };
      await Promise.all([
        writeFile(files.hosts, hostsFile(hostname, hostNetwork, nodeHosts, nets[0]?.address), { mode: 0o644 }),
        writeFile(files.resolvConf, nets.length > 0 ? networkResolvConf(nets, nodeResolv) : resolvConf(nodeResolv, hostNetwork), { mode: 0o644 }),
        writeFile(files.hostname, hostname + '\n', { mode: 0o644 }),
      ]);
      spec = buildSpec({
        rootfs,
        readonlyRootfs: config.read_only === true,
        args,
        env,
        cwd,
        user,
        hostname,
        ...(netnsPathValue ? { netnsPath: netnsPathValue } : {}),
        ...(host.init ? { init: host.init } : {}),
        mounts,
        files,
        cgroupsPath,
        limits,
        swapLimit: host.swapLimit,
        nofileHard: host.nofileHard,
        annotations: { 'org.yunstack.task.id': id, 'org.yunstack.task.name': config.name ?? '', 'org.yunstack.image': image.ref, 'org.yunstack.image.digest': image.digest, ...(config.labels ?? {}) },
      });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec, null, 1) + '\n', { mode: 0o600 });
    } catch (err) {
      await cleanup();
      if (err instanceof DriverError) throw err;
      throw new DriverError(`could not prepare the task's container (${errText(err)})`, false);
    }
    return {
      host, runc, id, dir, bundle, rootfs, pidFile, netns, cgroupsPath, cgroups, limits, pathEnv: pathEnv!, cwd: cwd!,
      mountTargets: mounts.map((m) => m.target), instance: config.instance !== undefined || mode !== 'task', cleanup,
      volumes: config.instance?.volumes ?? [], ...(rootVolume ? { rootVolume } : {}), imageConfig: image.config,
    };
  }

  /** Run the bundle's container under the supervisor shim: resolves once its process runs. */
  private async launch(b: Bundle): Promise<OciHandle> {
    const { host, runc, id, dir, bundle, rootfs, pidFile, netns, cgroupsPath, cgroups, limits, cleanup } = b;

    let out: FileHandle | undefined;
    let errf: FileHandle | undefined;
    let exitf: FileHandle | undefined;
    try {
      out = await open(join(dir, STDOUT_LOG), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
      // An instance has one console: its stderr goes to the same log as its stdout.
      errf = b.instance ? out : await open(join(dir, STDERR_LOG), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
      exitf = await open(join(dir, EXIT_FILE), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o640);
    } catch (err) {
      await out?.close();
      if (errf !== out) await errf?.close();
      await cleanup();
      throw new DriverError(`could not open the task's log files in ${dir} (${errText(err)})`, false);
    }

    const ownAdj = (await readFile('/proc/self/oom_score_adj', 'utf8').catch(() => '')).trim();
    const runcArgs = [...runc.globalArgs(join(dir, RUNC_LOG)), 'run', '--keep', '--bundle', bundle, '--pid-file', pidFile, id];
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', START_SHIM, SHIM_NAME, '0', '', ownAdj, host.runc!, ...runcArgs], {
        cwd: bundle,
        env: { PATH: DEFAULT_PATH },
        detached: true,
        stdio: ['ignore', out.fd, errf.fd, 'pipe', exitf.fd],
      });
    } catch (err) {
      await out.close();
      if (errf !== out) await errf.close();
      await exitf.close();
      await cleanup();
      throw new DriverError(`could not start the task's supervisor (/bin/sh) (${errText(err)})`, false);
    }
    const pid = child.pid;
    const shimStat = pid !== undefined ? readProcStatSync(pid) : undefined;
    const live = this.track(child);
    await out.close();
    if (errf !== out) await errf.close();
    await exitf.close();
    if (pid === undefined || !shimStat) {
      if (pid !== undefined) signal(pid, 'SIGKILL');
      await Promise.race([live.exited, sleep(1000)]);
      await cleanup();
      throw new DriverError(`could not start the task's supervisor (/bin/sh)`, false);
    }
    const key = `${pid}:${shimStat.starttime}`;
    this.live.set(key, live);

    const fail = async (why: string): Promise<never> => {
      signal(-pid, 'SIGKILL'); // the shim's process group: the shim and runc run
      signal(pid, 'SIGKILL');
      await Promise.race([live.exited, sleep(1000)]);
      this.live.delete(key);
      await cleanup();
      await rm(join(dir, EXIT_FILE), { force: true }).catch(() => undefined);
      throw new DriverError(why, false);
    };

    try {
      await writeFile(`/proc/${pid}/oom_score_adj`, '-1000').catch(() => undefined);
      await sendGo(child.stdio[3] as Writable, false);
    } catch (err) {
      return fail(`could not start the task's supervisor (${errText(err)})`);
    }
    const startedOk = await readStarted(child.stdio[3] as Readable, 10_000);
    if (!startedOk && !live.done) return fail('the task supervisor did not start runc within 10 s');

    // runc writes the pid file once the container's process runs; it exits when it could not start it.
    const deadline = Date.now() + START_TIMEOUT_MS;
    let initPid: number | undefined;
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      if (/^\d+$/.test(text.trim())) {
        initPid = Number(text.trim());
        break;
      }
      if (live.done) {
        const why = await this.runcFailure(dir);
        return fail(`runc could not start the container: ${why}`);
      }
      if (Date.now() > deadline) return fail(`runc did not start the container within ${START_TIMEOUT_MS / 1000} s`);
      await Promise.race([live.exited, sleep(delay)]);
    }
    const initStat = await readProcStat(initPid);

    const handle: OciHandle = {
      driver: 'oci',
      version: 1,
      task_id: id,
      started_at: new Date().toISOString(),
      dir,
      container_id: id,
      runc: host.runc!,
      runc_root: this.runcRoot,
      shim_pid: pid,
      shim_start: shimStat.starttime,
      ...(initStat ? { pid: initPid, pid_start: initStat.starttime } : { pid: initPid }),
      bundle,
      rootfs,
      ...(netns ? { netns } : {}),
      cgroups_path: cgroupsPath,
      cgroups,
      memory_limit_bytes: limits.memory_bytes,
      path_env: b.pathEnv,
      cwd: b.cwd,
      mount_targets: b.mountTargets,
      ...(b.instance ? { instance: true, volumes: b.volumes, image_config: b.imageConfig } : {}),
      ...(b.rootVolume ? { root_volume: b.rootVolume } : {}),
    };
    return handle;
  }

  /** Why `runc run` failed: its last error in runc.log, else the end of stderr.log. */
  private async runcFailure(dir: string): Promise<string> {
    const log = await readFile(join(dir, RUNC_LOG), 'utf8').catch(() => '');
    const fromLog = runcError(log.split('\n').filter((l) => /"level":"(error|fatal)"/.test(l)).join('\n'));
    if (fromLog) return fromLog;
    const hint = await stderrHint(dir, STDERR_LOG);
    return hint ? hint.slice(2, -1) : 'no reason given (see runc.log in the task dir)';
  }

  // ---- wait, inspect, recover ----

  async wait(handle: TaskHandle): Promise<ExitResult> {
    const h = this.asHandle(handle);
    const cached = this.results.get(this.rkey(h));
    if (cached) return cached;
    const live = this.live.get(this.key(h));
    for (;;) {
      if (live?.done) break;
      if (!live && !(await isAlive(h.shim_pid, h.shim_start))) break;
      await (live ? Promise.race([live.exited, sleep(this.pollMs)]) : sleep(this.pollMs));
    }
    return this.exitResult(h);
  }

  async inspect(handle: TaskHandle): Promise<TaskState> {
    const h = this.asHandle(handle);
    if (await this.shimAlive(h)) return { running: true, ...(h.pid !== undefined ? { pid: h.pid } : {}) };
    return { running: false, ...(h.pid !== undefined ? { pid: h.pid } : {}), exit: await this.exitResult(h) };
  }

  async recover(handle: TaskHandle): Promise<TaskHandle | undefined> {
    const h = this.asHandle(handle);
    if (!(await this.shimAlive(h))) return undefined;
    const out: OciHandle = { ...h };
    if (out.pid === undefined || !(await isAlive(out.pid, out.pid_start))) {
      const text = await readFile(join(h.dir, PID_FILE), 'utf8').catch(() => '');
      const st = /^\d+$/.test(text.trim()) ? await readProcStat(Number(text.trim())) : undefined;
      if (st) {
        out.pid = st.pid;
        out.pid_start = st.starttime;
      }
    }
    return out;
  }

  // ---- stop, destroy ----

  async stop(handle: TaskHandle, graceMs: number, signalName = 'SIGTERM'): Promise<void> {
    const h = this.asHandle(handle);
    const sig = normalizeSignal(signalName);
    if (!(await this.shimAlive(h))) return;
    const runc = this.runc(h);
    if (sig !== 'SIGKILL') {
      const st = await runc.state(h.container_id).catch(() => undefined);
      await runc.kill(h.container_id, sig).catch(() => false);
      // A frozen container only acts on the signal once thawed.
      if (st?.status === 'paused') await runc.resume(h.container_id).catch(() => undefined);
      if (await this.waitShimExit(h, Math.max(0, graceMs))) return;
    }
    await this.kill(h);
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    if (await this.shimAlive(h)) await this.kill(h);
    // Compute (and cache in exit.json) the exit result while the OOM counter still exists.
    await this.exitResult(h).catch(() => undefined);
    const host = await this.host();
    const runc = this.runc(h);
    await runc.delete(h.container_id, true);
    await removeTaskCgroups(this.cgroupRoot, h.cgroups_path);
    await unmount(host.umount ?? 'umount', h.rootfs);
    await unmountShare(h.dir);
    if (h.netns) await deleteNetns(host.ip ?? 'ip', h.netns);
    await rm(join(h.dir, SUSPENDED_MARK), { force: true });
    for (const e of await readdir(h.dir).catch(() => [] as string[])) if (e.startsWith(SAVED_PREFIX)) await rm(join(h.dir, e), { recursive: true, force: true });
    for (const p of [h.bundle, join(h.dir, 'upper'), join(h.dir, 'work'), join(h.dir, 'etc'), join(h.dir, PID_FILE), join(h.dir, SEED_DIR)]) {
      // Never follow into a still-mounted rootfs.
      if (p === h.bundle && (await isMountPoint(h.rootfs))) throw new DriverError(`the root file system of task ${h.task_id} is still mounted at ${h.rootfs}`, false);
      await rm(p, { recursive: true, force: true });
    }
    this.live.delete(this.key(h));
  }

  // ---- exec ----

  async exec(handle: TaskHandle, command: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ExecResult> {
    const h = this.asHandle(handle);
    if (!Array.isArray(command) || command.length === 0) throw new DriverError('exec: no command given', false);
    if (!(await this.shimAlive(h))) throw new DriverError(`cannot exec in task ${h.task_id}: it is not running`, false);
    const env = opts.env ?? {};
    validateEnv(env, 'exec environment');
    try {
      await lookupCommandInRoot(h.rootfs, command[0]!, env.PATH ?? h.path_env, h.cwd, h.mount_targets);
    } catch (err) {
      if (err instanceof DriverError) throw new DriverError(err.message, false);
      throw err;
    }
    const pidFile = join(h.dir, `exec-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.pid`);
    const runc = this.runc(h);
    const args = [...runc.globalArgs(), 'exec', '--pid-file', pidFile, ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]), h.container_id, ...command];
    let child: ChildProcess;
    try {
      child = spawn(h.runc, args, { env: { PATH: DEFAULT_PATH }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new DriverError(`exec: could not run ${h.runc} (${errText(err)})`, false);
    }
    const collect = (s: Readable | null) => {
      const chunks: Buffer[] = [];
      let size = 0;
      s?.on('data', (b: Buffer) => {
        if (size >= EXEC_OUTPUT_CAP) return;
        chunks.push(b.subarray(0, EXEC_OUTPUT_CAP - size));
        size += b.length;
      });
      return () => Buffer.concat(chunks).toString('utf8');
    };
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: unknown }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('exit', (code, sig) => resolve({ code, signal: sig }));
    });
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void (async () => {
        // The command runs in the container, not under runc exec: kill it by its pid, then runc.
        const text = await readFile(pidFile, 'utf8').catch(() => '');
        if (/^\d+$/.test(text.trim())) signal(Number(text.trim()), 'SIGKILL');
        await sleep(200);
        if (child.pid !== undefined) signal(-child.pid, 'SIGKILL');
      })();
    }, Math.max(1, opts.timeoutMs));
    const r = await exited;
    clearTimeout(timer);
    await Promise.race([closed, sleep(200)]);
    child.stdout?.destroy();
    child.stderr?.destroy();
    await rm(pidFile, { force: true }).catch(() => undefined);
    if (r.error) throw new DriverError(`exec: could not run ${h.runc} (${errText(r.error)})`, false);
    if (timedOut) throw new DriverError(`exec: ${JSON.stringify(command)} did not finish within ${opts.timeoutMs} ms and was killed`, false);
    const errText_ = stderr();
    // runc's own failure (the command never ran): its JSON log line on stderr.
    if (r.code === 255 || r.code === 1) {
      const last = errText_.trim().split('\n').pop() ?? '';
      if (last.startsWith('{') && /"level":"(error|fatal)"/.test(last)) throw new DriverError(`exec in task ${h.task_id}: ${runcError(last)}`, false);
    }
    const code = r.code ?? (r.signal ? 128 + (osConstants.signals[r.signal] ?? 0) : 1);
    return { exit_code: code, stdout: stdout(), stderr: errText_ };
  }

  /**
   * An interactive `exec` with a terminal (`yun task exec -it`): `runc exec -t` needs a terminal of
   * its own, which `script` (util-linux, Essential on Debian) provides, so Node needs no native pty
   * module. Input goes to `stdin`; `output` carries the terminal's output (stdout and stderr mixed, as
   * on any terminal); `resize` sets the window size (the kernel then tells runc, which resizes the
   * container's terminal); `wait` resolves with the exit code.
   */
  async execTty(handle: TaskHandle, command: string[], opts: { rows?: number; cols?: number; env?: Record<string, string> } = {}): Promise<TtyExec> {
    const h = this.asHandle(handle);
    if (!Array.isArray(command) || command.length === 0) throw new DriverError('exec: no command given', false);
    if (!(await this.shimAlive(h))) throw new DriverError(`cannot exec in task ${h.task_id}: it is not running`, false);
    const env = opts.env ?? {};
    validateEnv(env, 'exec environment');
    await lookupCommandInRoot(h.rootfs, command[0]!, env.PATH ?? h.path_env, h.cwd, h.mount_targets).catch((err: unknown) => {
      throw err instanceof DriverError ? new DriverError(err.message, false) : err;
    });
    const script = await findOnPath('script');
    if (!script) throw new DriverError('an interactive exec needs `script` on the node (Debian package bsdutils)', false);
    const runc = this.runc(h);
    const size = (r?: number, c?: number) => (r && c ? `stty rows ${Math.floor(r)} cols ${Math.floor(c)} 2>/dev/null; ` : '');
    const argv = [runc.bin, ...runc.globalArgs(), 'exec', '-t', ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]), h.container_id, ...command];
    const inner = `${size(opts.rows, opts.cols)}exec ${argv.map(shQuote).join(' ')}`;
    let child: ChildProcess;
    try {
      child = spawn(script, ['-q', '-f', '-e', '-c', inner, '/dev/null'], { env: { PATH: DEFAULT_PATH, TERM: process.env.TERM ?? 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      throw new DriverError(`exec: could not run ${script} (${errText(err)})`, false);
    }
    const exited = new Promise<number>((resolve) => {
      child.once('error', () => resolve(255));
      child.once('exit', (code, sig) => resolve(code ?? 128 + (sig ? (osConstants.signals[sig] ?? 0) : 0)));
    });
    child.stderr?.resume();
    /** The terminal runc exec runs on: its stdin (the pty slave script made). */
    const terminal = async (): Promise<string | undefined> => {
      const scriptPid = child.pid;
      if (scriptPid === undefined) return undefined;
      for (const kid of (await readFile(`/proc/${scriptPid}/task/${scriptPid}/children`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean)) {
        const t = await readlink(`/proc/${kid}/fd/0`).catch(() => '');
        if (t.startsWith('/dev/pts/')) return t;
      }
      return undefined;
    };
    return {
      stdin: child.stdin!,
      output: child.stdout!,
      resize: async (rows: number, cols: number) => {
        const tty = await terminal();
        if (!tty) return;
        await runCommand('stty', ['-F', tty, 'rows', String(Math.floor(rows)), 'cols', String(Math.floor(cols))]).catch(() => undefined);
      },
      wait: () => exited,
      kill: () => {
        if (child.pid !== undefined) signal(child.pid, 'SIGHUP');
      },
    };
  }

  // ---- instances (servers) ----

  async prepare(config: TaskConfig): Promise<TaskHandle> {
    const b = await this.bundle(config, 'prepare');
    return this.preparedHandle(b);
  }

  /** A handle for an instance that does not run (yet): no supervisor. */
  private preparedHandle(b: Bundle): OciHandle {
    return {
      driver: 'oci', version: 1, task_id: b.id, started_at: new Date().toISOString(), dir: b.dir, container_id: b.id,
      runc: b.host.runc!, runc_root: this.runcRoot, shim_pid: 0, shim_start: '', bundle: b.bundle, rootfs: b.rootfs,
      ...(b.netns ? { netns: b.netns } : {}), cgroups_path: b.cgroupsPath, cgroups: b.cgroups, memory_limit_bytes: b.limits.memory_bytes,
      path_env: b.pathEnv, cwd: b.cwd, mount_targets: b.mountTargets, instance: true, volumes: b.volumes, image_config: b.imageConfig, ...(b.rootVolume ? { root_volume: b.rootVolume } : {}),
    };
  }

  async boot(handle: TaskHandle, config: TaskConfig): Promise<TaskHandle> {
    const h = this.asHandle(handle);
    if (await this.shimAlive(h)) throw new DriverError(`instance ${h.task_id} is running already`, false);
    await rm(join(h.dir, SUSPENDED_MARK), { force: true });
    for (const k of [...this.results.keys()]) if (k.startsWith(h.task_id + ':')) this.results.delete(k);
    return this.launch(await this.bundle({ ...config, dir: h.dir }, 'boot'));
  }

  /** The root disk is the overlay's upper layer: copied whole (`cp -a`, reflinks where the file system has them). */
  async saveDisk(handle: TaskHandle, tag: string): Promise<void> {
    const h = this.asHandle(handle);
    if (h.root_volume) return; // the root disk is a volume: a resize leaves it as it is
    const to = this.savedPath(h, tag);
    await rm(`${to}.tmp`, { recursive: true, force: true });
    await this.copyTree(join(h.dir, 'upper'), `${to}.tmp`);
    await rm(to, { recursive: true, force: true });
    await rename(`${to}.tmp`, to);
  }

  async restoreDisk(handle: TaskHandle, tag: string): Promise<void> {
    const h = this.asHandle(handle);
    if (h.root_volume) return;
    if (await this.shimAlive(h)) throw new DriverError(`instance ${h.task_id} must be stopped before its disk is restored`, false);
    const from = this.savedPath(h, tag);
    if (!(await exists(from))) throw new DriverError(`instance ${h.task_id} has no saved disk "${tag}"`, false);
    const host = await this.host();
    await this.runc(h).delete(h.container_id, true).catch(() => undefined);
    await unmount(host.umount ?? 'umount', h.rootfs);
    const upper = join(h.dir, 'upper');
    await rm(upper, { recursive: true, force: true });
    await rm(join(h.dir, 'work'), { recursive: true, force: true });
    await mkdir(join(h.dir, 'work'), { recursive: true });
    await this.copyTree(from, upper);
  }

  async dropDisk(handle: TaskHandle, tag: string): Promise<void> {
    await rm(this.savedPath(this.asHandle(handle), tag), { recursive: true, force: true });
  }

  /** The merged root file system (the image and the server's writes), copied with the container frozen. */
  async exportDisk(handle: TaskHandle, dir: string): Promise<ExportedDisk> {
    const h = this.asHandle(handle);
    if (!(await isMountPoint(h.rootfs))) throw new DriverError(`the root file system of instance ${h.task_id} is not mounted (it was never prepared on this node)`, false);
    const out = join(dir, 'rootfs');
    const running = await this.shimAlive(h);
    const wasPaused = running && (await this.runc(h).state(h.container_id))?.status === 'paused';
    if (running && !wasPaused) await this.freeze(h);
    try {
      // -x: only the root file system, not what is mounted on it.
      const r = await runCommand('cp', ['-a', '-x', '--reflink=auto', `${h.rootfs}/.`, out], { timeoutMs: 600_000 });
      if (r.code !== 0) throw new DriverError(`could not copy the root file system of ${h.task_id}: ${String(r.stderr).trim()}`, false);
    } finally {
      if (running && !wasPaused) await this.thaw(h);
    }
    for (const p of [SEED_MOUNT, VOLS_MOUNT]) await rm(join(out, p), { recursive: true, force: true });
    return { kind: 'container', rootfs: out, config: h.image_config ?? { entrypoint: [], cmd: [], env: [], workdir: '', user: '' } };
  }

  private savedPath(h: OciHandle, tag: string): string {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(tag)) throw new DriverError(`"${tag}" cannot name a saved disk (letters, digits, _ . -)`, false);
    return join(h.dir, `${SAVED_PREFIX}${tag}`);
  }

  private async copyTree(from: string, to: string): Promise<void> {
    const r = await runCommand('cp', ['-a', '--reflink=auto', from, to], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new DriverError(`could not copy ${from} to ${to}: ${String(r.stderr).trim() || `cp exited with ${r.code}`}`, false);
  }

  /** Suspend is a freeze here: every process stays in memory, stopped (a marker tells suspend from pause). */
  async suspend(handle: TaskHandle): Promise<TaskHandle> {
    const h = this.asHandle(handle);
    await this.freeze(h);
    await writeFile(join(h.dir, SUSPENDED_MARK), new Date().toISOString() + '\n');
    return h;
  }

  async resume(handle: TaskHandle): Promise<TaskHandle> {
    const h = this.asHandle(handle);
    await this.thaw(h);
    await rm(join(h.dir, SUSPENDED_MARK), { force: true });
    return h;
  }

  async suspended(handle: TaskHandle): Promise<boolean> {
    const h = this.asHandle(handle);
    return (await exists(join(h.dir, SUSPENDED_MARK))) && (await this.shimAlive(h));
  }

  /** A container's console is its output (stdout and stderr in one log, for an instance). */
  async consoleLog(handle: TaskHandle, opts: { tailBytes?: number } = {}): Promise<string> {
    const h = this.asHandle(handle);
    return tailOf(join(h.dir, STDOUT_LOG), opts.tailBytes ?? 1024 * 1024);
  }

  /** A container has no serial console: a shell in it, on a terminal. */
  async console(handle: TaskHandle): Promise<TtyExec> {
    return this.execTty(handle, ['/bin/sh'], {});
  }

  // ---- freeze, thaw ----

  // ---- volumes ----

  /** Mount on the node (it shows inside through the share), then bound to its path inside when it runs. */
  async attachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle; device: string | null }> {
    const h = this.asHandle(handle);
    if (!v.mount_path) throw new DriverError(`volume ${v.id} has no mount path: a container mounts its volumes at a path (\`--mount-path /data\`)`, false);
    await mountOnNode(h.dir, v);
    if (await this.shimAlive(h)) await bindInside(await this.initPid(h), v);
    const volumes = [...(h.volumes ?? []).filter((x) => x.id !== v.id), v];
    return { handle: { ...h, volumes, mount_targets: [...new Set([...h.mount_targets, v.mount_path])] }, device: null };
  }

  async detachVolume(handle: TaskHandle, v: VolumeDisk): Promise<{ handle: TaskHandle }> {
    const h = this.asHandle(handle);
    const mine = (h.volumes ?? []).find((x) => x.id === v.id) ?? v;
    if (mine.mount_path && (await this.shimAlive(h))) await unbindInside(await this.initPid(h), mine);
    await unmountFromNode(h.dir, v.id);
    return { handle: { ...h, volumes: (h.volumes ?? []).filter((x) => x.id !== v.id), mount_targets: h.mount_targets.filter((t) => t !== mine.mount_path) } };
  }

  async volumeResized(handle: TaskHandle, v: VolumeDisk): Promise<void> {
    await growMounted(this.asHandle(handle).dir, v);
  }

  /** The container frozen and the volume's file system frozen on the node (its writes flushed) for the copy. */
  async quiesced<T>(handle: TaskHandle, v: VolumeDisk, fn: () => Promise<T>): Promise<T> {
    const h = this.asHandle(handle);
    const running = await this.shimAlive(h);
    const wasPaused = running && (await this.runc(h).state(h.container_id))?.status === 'paused';
    if (running && !wasPaused) await this.freeze(h);
    try {
      return await withFrozenFs(h.dir, v.id, fn);
    } finally {
      if (running && !wasPaused) await this.thaw(h);
    }
  }

  /** The container's PID 1 as the node sees it (for nsenter). */
  private async initPid(h: OciHandle): Promise<number> {
    if (h.pid && (await isAlive(h.pid, h.pid_start))) return h.pid;
    const st = await this.runc(h).state(h.container_id);
    if (!st?.pid) throw new DriverError(`container ${h.task_id} has no process to enter`, false);
    return st.pid;
  }

  async freeze(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    if (!(await this.shimAlive(h))) throw new DriverError(`cannot freeze task ${h.task_id}: it is not running`, false);
    const runc = this.runc(h);
    const st = await runc.state(h.container_id);
    if (st?.status === 'paused') return;
    await runc.pause(h.container_id);
  }

  async thaw(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    if (!(await this.shimAlive(h))) throw new DriverError(`cannot thaw task ${h.task_id}: it is not running`, false);
    const runc = this.runc(h);
    const st = await runc.state(h.container_id);
    if (st?.status !== 'paused') return;
    await runc.resume(h.container_id);
  }

  /** runc's view of the container: `running`, `paused`, `stopped`, or undefined when it is gone. */
  async containerStatus(handle: TaskHandle): Promise<string | undefined> {
    const h = this.asHandle(handle);
    return (await this.runc(h).state(h.container_id))?.status;
  }

  // ---- internals ----

  private runc(h: OciHandle): Runc {
    return new Runc(h.runc, h.runc_root);
  }

  private key(h: OciHandle): string {
    return `${h.shim_pid}:${h.shim_start}`;
  }

  private rkey(h: OciHandle): string {
    return `${h.task_id}:${h.shim_pid}`;
  }

  private asHandle(handle: TaskHandle): OciHandle {
    const h = handle as Partial<OciHandle>;
    if (!h || h.driver !== 'oci') throw new DriverError(`not an oci driver handle (driver is ${JSON.stringify(h?.driver)})`);
    if (!Number.isInteger(h.shim_pid) || typeof h.shim_start !== 'string' || typeof h.dir !== 'string' || typeof h.container_id !== 'string' || typeof h.runc !== 'string' || typeof h.runc_root !== 'string' || typeof h.rootfs !== 'string' || typeof h.bundle !== 'string') {
      throw new DriverError(`malformed oci driver handle for task ${JSON.stringify(h.task_id)}: it lacks shim_pid, shim_start, dir, container_id, runc, runc_root, bundle or rootfs`);
    }
    return { cgroups: null, memory_limit_bytes: 0, path_env: DEFAULT_PATH, cwd: '/', mount_targets: [], cgroups_path: '', ...h } as OciHandle;
  }

  private track(child: ChildProcess): Live {
    const live = {} as Live;
    live.child = child;
    child.on('error', () => undefined);
    live.exited = new Promise<ShimExit>((resolve) => {
      child.once('exit', (code, sig) => {
        live.done = { code, signal: sig, at: new Date().toISOString() };
        resolve(live.done);
      });
    });
    child.unref();
    (child.stdio[3] as Writable | null)?.on('error', () => undefined);
    return live;
  }

  private async shimAlive(h: OciHandle): Promise<boolean> {
    const live = this.live.get(this.key(h));
    if (live) return !live.done;
    return isAlive(h.shim_pid, h.shim_start);
  }

  private async waitShimExit(h: OciHandle, ms: number): Promise<boolean> {
    const live = this.live.get(this.key(h));
    const deadline = Date.now() + ms;
    for (;;) {
      if (live?.done) return true;
      if (!(await isAlive(h.shim_pid, h.shim_start))) {
        if (live) await Promise.race([live.exited, sleep(1000)]);
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await (live ? Promise.race([live.exited, sleep(Math.min(50, left))]) : sleep(Math.min(50, left)));
    }
  }

  /** SIGKILL every process of the container, so runc reports 137 and the shim records it; the supervisor too if it must. */
  private async kill(h: OciHandle): Promise<void> {
    const runc = this.runc(h);
    const deadline = Date.now() + KILL_SETTLE_MS;
    do {
      const st = await runc.state(h.container_id).catch(() => undefined);
      if (st && (st.status === 'running' || st.status === 'paused' || st.status === 'created')) {
        await runc.kill(h.container_id, 'KILL', true).catch(() => false);
        if (st.status === 'paused') await runc.resume(h.container_id).catch(() => undefined);
      }
      if (await this.waitShimExit(h, 200)) return;
    } while (Date.now() < deadline);
    // runc run did not return: kill it (its child) and the shim; the status is known.
    const kids = (await readFile(`/proc/${h.shim_pid}/task/${h.shim_pid}/children`, 'utf8').catch(() => '')).split(/\s+/).filter(Boolean).map(Number);
    if (await isAlive(h.shim_pid, h.shim_start)) {
      for (const k of kids) {
        const st = await readProcStat(k);
        if (st?.ppid === h.shim_pid) signal(k, 'SIGKILL');
      }
      await this.waitShimExit(h, 1000);
      if (await isAlive(h.shim_pid, h.shim_start)) signal(h.shim_pid, 'SIGKILL');
      await this.waitShimExit(h, 1000);
    }
    const exitFile = join(h.dir, EXIT_FILE);
    const cur = await readFile(exitFile, 'utf8').catch(() => '');
    if (cur.trim() === '') await writeFile(exitFile, '137\n').catch(() => undefined);
  }

  private async exitResult(h: OciHandle): Promise<ExitResult> {
    return recordedExit(h, this.live.get(this.key(h)), this.results, this.rkey(h));
  }

}

/**
 * The hard NOFILE limit containers get: Docker's 1048576, capped by the kernel's fs.nr_open and, when
 * the agent lacks CAP_SYS_RESOURCE (it cannot raise a hard limit), by its own hard limit.
 */
async function nofileHardLimit(): Promise<number> {
  let limit = NOFILE_HARD;
  const nrOpen = Number((await readFile('/proc/sys/fs/nr_open', 'utf8').catch(() => '')).trim());
  if (Number.isSafeInteger(nrOpen) && nrOpen > 0) limit = Math.min(limit, nrOpen);
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const CAP_SYS_RESOURCE = 24n;
  if (capEff !== undefined && ((BigInt('0x' + capEff) >> CAP_SYS_RESOURCE) & 1n) === 0n) {
    const own = /^Max open files\s+\S+\s+(\d+)/m.exec(await readFile('/proc/self/limits', 'utf8').catch(() => ''))?.[1];
    if (own !== undefined) limit = Math.min(limit, Number(own));
  }
  return limit;
}

function signal(pid: number, sig: NodeJS.Signals | number): void {
  // Never 0, 1 or -1: kill(0) would signal our own process group, kill(-1) every process.
  if (!Number.isSafeInteger(pid) || (pid >= -1 && pid <= 1)) return;
  try {
    process.kill(pid, sig);
  } catch {
    /* exited meanwhile */
  }
}

/**
 * Remove the task's cgroup directory `rel` (`/<parent>/<id>`) from every hierarchy under `root`
 * (runc makes one in each v1 hierarchy, and in the unified one on a hybrid node). ENOENT is fine; a
 * cgroup still busy after a short retry is an error that names it.
 */
export async function removeTaskCgroups(root: string, rel: string): Promise<void> {
  const parts = rel.split('/').filter(Boolean);
  if (parts.length === 0) return;
  const bases = [root];
  if (!(await exists(join(root, 'cgroup.controllers')))) {
    for (const e of await readdir(root, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) bases.push(join(root, e.name));
  }
  for (const base of bases) {
    const dir = join(base, ...parts);
    const deadline = Date.now() + 2000;
    for (;;) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') break;
        if (code === 'EBUSY' && Date.now() < deadline) {
          await sleep(50);
          continue;
        }
        throw new DriverError(`could not remove cgroup ${dir} (${errText(err)})`, false);
      }
    }
  }
}
