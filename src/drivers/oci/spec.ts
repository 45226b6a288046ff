/**
 * The OCI runtime configuration (`config.json`, runtime spec 1.0.2 as runc 1.1 reads it) for one
 * task, built by pure functions from what the driver resolved: no I/O here, so every rule is easy to
 * test. The defaults follow Docker's (moby `oci/defaults.go`): its capability set, masked and
 * read-only `/proc` paths, the same standard mounts, `no_new_privileges`, NOFILE 1024:1048576.
 */
import { posix } from 'node:path';
import { DriverError, type MountSpec } from '../driver.js';
import type { ContainerUser } from './user.js';

export const OCI_VERSION = '1.0.2';

/** Where the static init (tini) is bind-mounted: on the /dev tmpfs, so the image is never touched. */
export const INIT_PATH = '/dev/init';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** The device cgroup allowlist (deny everything, then what runc and Docker allow by default). */
export const DEVICE_RULES = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // pts
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' }, // tun
];

export const NOFILE_SOFT = 1024;
export const NOFILE_HARD = 1048576;
export const CPU_PERIOD_US = 100_000;

/**
 * The process's argv, Docker's rules kept simple:
 * - `command` given: Entrypoint + command when the image has an Entrypoint, else command;
 * - no command: Entrypoint + Cmd.
 * `shell: true` makes the command `/bin/sh -c command[0] command[1…]` first.
 */
export function processArgs(image: { entrypoint: string[]; cmd: string[] }, command: string[], shell: boolean, imageRef = 'the image'): string[] {
  const entry = image.entrypoint ?? [];
  const cmd = command.length > 0 ? (shell ? ['/bin/sh', '-c', ...command] : command) : image.cmd ?? [];
  const args = [...entry, ...cmd];
  if (args.length === 0) throw new DriverError(`no command to run: the task gives none and ${imageRef} has neither an Entrypoint nor a Cmd`);
  return args;
}

/** `K=V` list → map (the first `=` splits; later duplicates win, like Docker). */
export function parseEnvList(list: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of list ?? []) {
    const i = e.indexOf('=');
    if (i <= 0) continue;
    m.set(e.slice(0, i), e.slice(i + 1));
  }
  return m;
}

export function validateEnv(env: Record<string, string>, what: string): void {
  for (const [k, v] of Object.entries(env)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw new DriverError(`invalid ${what} variable name ${JSON.stringify(k)}: it must be non-empty and contain no "=" or NUL`);
    if (typeof v !== 'string') throw new DriverError(`invalid ${what} variable ${k}: its value must be a string`);
    if (v.includes('\0')) throw new DriverError(`invalid ${what} variable ${k}: its value contains a NUL byte`);
  }
}

/** Image env, overridden by the task env; PATH, HOSTNAME and HOME when neither sets them. */
export function containerEnv(imageEnv: string[], taskEnv: Record<string, string>, hostname: string, home: string): string[] {
  validateEnv(taskEnv, 'environment');
  const m = parseEnvList(imageEnv);
  for (const [k, v] of Object.entries(taskEnv)) m.set(k, v);
  if (!m.has('PATH')) m.set('PATH', DEFAULT_PATH);
  if (!m.has('HOSTNAME')) m.set('HOSTNAME', hostname);
  if (!m.has('HOME')) m.set('HOME', home);
  return [...m].map(([k, v]) => `${k}=${v}`);
}

/** The container's hostname: task names like `web.1` as they are, cut to 63 bytes like Docker; no spaces or control characters. */
export function checkHostname(h: string): string {
  if (h === '' || /[\0-\x20\x7f/]/.test(h)) throw new DriverError(`invalid hostname ${JSON.stringify(h)}: it must be non-empty, without spaces, control characters or "/"`);
  let out = h;
  while (Buffer.byteLength(out) > 63) out = out.slice(0, -1);
  return out;
}

/** /etc/hosts for the container. Host network: the node's file plus the hostname; own netns: loopback names. */
export function hostsFile(hostname: string, hostNetwork: boolean, nodeHosts = '', address?: string): string {
  const own = `${address ?? '127.0.1.1'}\t${hostname}\n`;
  if (hostNetwork) return (nodeHosts.endsWith('\n') || nodeHosts === '' ? nodeHosts : nodeHosts + '\n') + own;
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    own,
  ].join('\n');
}

/**
 * /etc/resolv.conf: the node's; in a network namespace of its own the loopback name servers are
 * dropped (they would not answer there), as Docker does. Task networks set their own resolver later.
 */
export function resolvConf(nodeText: string, hostNetwork: boolean): string {
  if (hostNetwork) return nodeText;
  const out: string[] = [];
  let dropped = 0;
  for (const line of nodeText.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && (/^127\./.test(m[1]!) || m[1] === '::1')) {
      dropped++;
      continue;
    }
    out.push(line);
  }
  let text = out.join('\n');
  if (dropped > 0) text = `# yunstack: ${dropped} loopback name server(s) of the node left out (unreachable from the task's network namespace)\n` + text;
  return text;
}

/** Check a task mount and normalise its target. */
export function checkMount(m: MountSpec): MountSpec {
  if (!m || typeof m.target !== 'string' || !m.target.startsWith('/')) throw new DriverError(`invalid mount target ${JSON.stringify(m?.target)}: it must be an absolute path in the container`);
  if (m.target.split('/').includes('..')) throw new DriverError(`invalid mount target "${m.target}": it must not contain ".."`);
  const target = posix.normalize(m.target).replace(/(.)\/+$/, '$1');
  if (target === '/') throw new DriverError('invalid mount target "/": the root file system cannot be replaced by a mount');
  if (m.type === 'bind') {
    if (!m.source || !m.source.startsWith('/')) throw new DriverError(`invalid bind mount for ${target}: its source ${JSON.stringify(m.source ?? '')} must be an absolute path on the node`);
  } else if (m.type === 'tmpfs') {
    if (m.tmpfs_size_bytes !== undefined && (!Number.isSafeInteger(m.tmpfs_size_bytes) || m.tmpfs_size_bytes < 0)) throw new DriverError(`invalid tmpfs size for ${target}: ${m.tmpfs_size_bytes}`);
  } else if (m.type === 'volume') {
    throw new DriverError(`volume mounts (${target}) are not supported by the oci driver yet: use type=bind with a directory on the node`);
  } else {
    throw new DriverError(`unknown mount type ${JSON.stringify((m as MountSpec).type)} for ${target} (expected bind or tmpfs)`);
  }
  return { ...m, target };
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface SpecInput {
  /** Host path of the (mounted) root file system. */
  rootfs: string;
  readonlyRootfs: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: ContainerUser;
  hostname: string;
  /** Path of the network namespace to join; undefined = the node's (host network). */
  netnsPath?: string;
  /** Host path of a static init (tini): it becomes PID 1 and runs `args` as its child. */
  init?: string;
  mounts: MountSpec[];
  /** Generated files bind-mounted read-only into /etc. */
  files: { hosts: string; resolvConf: string; hostname: string };
  cgroupsPath: string;
  limits: { cpu: number; memory_bytes: number; pids: number };
  /** The kernel accounts swap (memsw / memory.swap.max exists): set swap = memory, i.e. no swap. */
  swapLimit: boolean;
  annotations?: Record<string, string>;
  /** The hard NOFILE limit (default NOFILE_HARD; the driver caps it at the node's fs.nr_open). */
  nofileHard?: number;
}

/** The standard mounts, in order (the init and /etc files follow, then the task's own). */
export function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
}

/** A task mount as an OCI mount. */
export function ociMount(m: MountSpec): OciMount {
  if (m.type === 'bind') return { destination: m.target, type: 'bind', source: m.source!, options: ['rbind', m.propagation ?? 'rprivate', m.readonly ? 'ro' : 'rw'] };
  const options = ['nosuid', 'nodev', 'mode=1777'];
  if (m.tmpfs_size_bytes) options.push(`size=${m.tmpfs_size_bytes}`);
  if (m.readonly) options.push('ro');
  return { destination: m.target, type: 'tmpfs', source: 'tmpfs', options };
}

const depth = (p: string) => p.split('/').filter(Boolean).length;

export function buildSpec(o: SpecInput): Record<string, unknown> {
  const userMounts = o.mounts.map(checkMount);
  const taken = new Set(userMounts.map((m) => m.target));
  const mounts: OciMount[] = defaultMounts().filter((m) => !taken.has(m.destination));
  if (o.init) mounts.push({ destination: INIT_PATH, type: 'bind', source: o.init, options: ['bind', 'ro', 'nosuid', 'nodev'] });
  const etc: Array<[string, string]> = [
    ['/etc/resolv.conf', o.files.resolvConf],
    ['/etc/hostname', o.files.hostname],
    ['/etc/hosts', o.files.hosts],
  ];
  for (const [dest, src] of etc) if (!taken.has(dest)) mounts.push({ destination: dest, type: 'bind', source: src, options: ['rbind', 'rprivate', 'ro'] });
  // Parents before children (a mount on /data must come before one on /data/logs); stable otherwise.
  mounts.push(...userMounts.map((m, i) => ({ m: ociMount(m), i })).sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i).map((x) => x.m));

  const root = o.user.uid === 0;
  const caps = [...DEFAULT_CAPABILITIES];
  const resources: Record<string, unknown> = { devices: DEVICE_RULES };
  if (o.limits.memory_bytes > 0) resources.memory = { limit: o.limits.memory_bytes, ...(o.swapLimit ? { swap: o.limits.memory_bytes } : {}) };
  if (o.limits.cpu > 0) resources.cpu = { quota: Math.max(1000, Math.round(o.limits.cpu * CPU_PERIOD_US)), period: CPU_PERIOD_US };
  // One more than asked for: the init (PID 1) lives in the task's cgroup too.
  if (o.limits.pids > 0) resources.pids = { limit: o.limits.pids + (o.init ? 1 : 0) };

  const namespaces: Array<{ type: string; path?: string }> = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (o.netnsPath) namespaces.push({ type: 'network', path: o.netnsPath });

  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: { uid: o.user.uid, gid: o.user.gid, ...(o.user.additionalGids.length > 0 ? { additionalGids: o.user.additionalGids } : {}) },
      args: o.init ? [INIT_PATH, '--', ...o.args] : o.args,
      env: o.env,
      cwd: o.cwd,
      capabilities: {
        bounding: caps,
        // A non-root user gets no effective or permitted capabilities (as in Docker); nothing is inheritable.
        effective: root ? caps : [],
        permitted: root ? caps : [],
        inheritable: [],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: o.nofileHard ?? NOFILE_HARD, soft: Math.min(NOFILE_SOFT, o.nofileHard ?? NOFILE_HARD) }],
      noNewPrivileges: true,
    },
    root: { path: o.rootfs, readonly: o.readonlyRootfs },
    hostname: o.hostname,
    mounts,
    ...(o.annotations && Object.keys(o.annotations).length > 0 ? { annotations: o.annotations } : {}),
    linux: {
      cgroupsPath: o.cgroupsPath,
      resources,
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}
