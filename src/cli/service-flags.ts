import type { Command } from 'commander';
import { collect } from './command.js';
import { usage } from './cli-error.js';
import { parseDuration } from '../util/duration.js';
import { parseSize } from '../util/size.js';
import { parseConstraint } from '../scheduler/constraints.js';
import type { Mount, PortConfig, ServiceSpec, ServiceSpecInput } from '../services/spec.js';
import type { FileRef } from '../secrets/refs.js';

/**
 * The flags `service create` and `service update` share, parsed into (a part of) a service spec.
 * Everything is checked here, before a request is sent: bad input never creates anything.
 */

export function durationFlag(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(String(v));
  if (ms === undefined) throw usage(`--${name} must be a duration such as 500ms, 5s or 1m, not "${String(v)}"`);
  return ms;
}

export function sizeFlag(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const b = parseSize(String(v));
  if (b === undefined) throw usage(`--${name} must be a size such as 512k, 64m or 1g, not "${String(v)}"`);
  return b;
}

export function numberFlag(name: string, v: unknown, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  const kind = opts.integer ? 'whole number' : 'number';
  if (String(v).trim() === '' || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    const range = opts.min !== undefined ? ` ${opts.max !== undefined ? `between ${opts.min} and ${opts.max}` : `of at least ${opts.min}`}` : '';
    throw usage(`--${name} must be a ${kind}${range}, not "${String(v)}"`);
  }
  return n;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(String(v) as T)) throw usage(`--${name} must be one of ${allowed.join(', ')}, not "${String(v)}"`);
  return String(v) as T;
}

export function parseEnv(list: string[] | undefined, flag = 'env'): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of list ?? []) {
    const i = e.indexOf('=');
    const k = i < 0 ? e : e.slice(0, i);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw usage(`--${flag} "${e}": "${k}" is not a valid variable name`);
    env[k] = i < 0 ? (process.env[k] ?? '') : e.slice(i + 1);
  }
  return env;
}

export function parseLabels(list: string[] | undefined, flag = 'label'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list ?? []) {
    const i = l.indexOf('=');
    const k = i < 0 ? l : l.slice(0, i);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}$/.test(k)) throw usage(`--${flag} "${l}": "${k}" is not a valid label key`);
    out[k] = i < 0 ? '' : l.slice(i + 1);
  }
  return out;
}

/** `published=8080,target=80,mode=host,protocol=tcp,name=web` or the short `8080:80[/udp]` or `80`. */
export function parsePublish(text: string): PortConfig {
  const short = /^(?:(\d{1,5}):)?(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const port = (name: string, v: string | undefined, required: boolean): number | undefined => {
    if (v === undefined) { if (required) throw usage(`--publish "${text}" needs ${name}=PORT`); return undefined; }
    const n = Number(v);
    if (!/^\d{1,5}$/.test(v) || n < 1 || n > 65535) throw usage(`--publish "${text}": ${name} must be a port between 1 and 65535, not "${v}"`);
    return n;
  };
  if (short) {
    return { protocol: (short[3] as 'tcp' | 'udp') ?? 'tcp', target: port('target', short[2], true)!, ...(short[1] ? { published: port('published', short[1], true)! } : {}), mode: 'ingress' };
  }
  const fields: Record<string, string> = {};
  for (const part of text.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) throw usage(`--publish "${text}" is malformed: write published=P,target=T[,mode=ingress|host][,protocol=tcp|udp] or P:T`);
    const k = part.slice(0, i).trim();
    if (!['published', 'target', 'mode', 'protocol', 'name'].includes(k)) throw usage(`--publish "${text}": unknown field "${k}" (fields: published, target, mode, protocol, name)`);
    fields[k] = part.slice(i + 1).trim();
  }
  const mode = fields.mode ?? 'ingress';
  if (mode !== 'ingress' && mode !== 'host') throw usage(`--publish "${text}": mode must be ingress or host, not "${mode}"`);
  const protocol = fields.protocol ?? 'tcp';
  if (protocol !== 'tcp' && protocol !== 'udp') throw usage(`--publish "${text}": protocol must be tcp or udp, not "${protocol}"`);
  if (fields.name !== undefined && !/^[a-z0-9][a-z0-9-]{0,14}$/.test(fields.name)) throw usage(`--publish "${text}": name must be lowercase letters, digits and -, at most 15`);
  const published = port('published', fields.published, mode === 'host');
  return { ...(fields.name ? { name: fields.name } : {}), protocol, target: port('target', fields.target, true)!, ...(published ? { published } : {}), mode };
}

/** `type=bind,source=/a,target=/b,readonly` | `type=tmpfs,target=/t,tmpfs-size=64m`. */
export function parseMount(text: string): Mount {
  const f: Record<string, string> = {};
  for (const part of text.split(',')) {
    const i = part.indexOf('=');
    const k = (i < 0 ? part : part.slice(0, i)).trim();
    const v = i < 0 ? 'true' : part.slice(i + 1).trim();
    const key = { src: 'source', dst: 'target', destination: 'target', ro: 'readonly', 'read-only': 'readonly' }[k] ?? k;
    if (!['type', 'source', 'target', 'readonly', 'tmpfs-size'].includes(key)) throw usage(`--mount "${text}": unknown field "${k}" (fields: type, source, target, readonly, tmpfs-size)`);
    f[key] = v;
  }
  const type = f.type ?? 'volume';
  if (!['bind', 'tmpfs', 'volume'].includes(type)) throw usage(`--mount "${text}": type must be bind, tmpfs or volume, not "${type}"`);
  if (!f.target?.startsWith('/')) throw usage(`--mount "${text}" needs target=/ABSOLUTE/PATH`);
  if ((type === 'bind' || type === 'volume') && !f.source) throw usage(`--mount "${text}": a ${type} mount needs source=…`);
  if (type === 'bind' && !f.source!.startsWith('/')) throw usage(`--mount "${text}": a bind mount's source must be an absolute path`);
  const readonly = f.readonly === undefined ? false : ['true', '1', ''].includes(f.readonly) ? true : ['false', '0'].includes(f.readonly) ? false : (() => { throw usage(`--mount "${text}": readonly must be true or false`); })();
  const size = f['tmpfs-size'] !== undefined ? sizeFlag('mount tmpfs-size', f['tmpfs-size']) : undefined;
  return { type: type as Mount['type'], ...(f.source ? { source: f.source } : {}), target: f.target, readonly, ...(size !== undefined ? { tmpfs_size_bytes: size } : {}) };
}

/** A secret or config for a task: `NAME` or `source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0400]`. */
export function parseFileRef(flag: string, text: string): Pick<FileRef, 'source'> & Partial<FileRef> {
  const f: Record<string, string> = {};
  if (!text.includes('=')) f.source = text;
  else {
    for (const part of text.split(',')) {
      const i = part.indexOf('=');
      const k = (i < 0 ? part : part.slice(0, i)).trim();
      const key = { src: 'source', dst: 'target', destination: 'target' }[k] ?? k;
      if (!['source', 'target', 'uid', 'gid', 'mode'].includes(key) || i < 0) throw usage(`--${flag} "${text}": unknown field "${k}" (fields: source, target, uid, gid, mode)`);
      f[key] = part.slice(i + 1).trim();
    }
  }
  if (!f.source) throw usage(`--${flag} "${text}" needs source=NAME`);
  for (const k of ['uid', 'gid'] as const) if (f[k] !== undefined && !/^[0-9]{1,10}$/.test(f[k]!)) throw usage(`--${flag} "${text}": ${k} must be a number, not "${f[k]}"`);
  if (f.mode !== undefined && !/^0?[0-7]{1,3}$/.test(f.mode)) throw usage(`--${flag} "${text}": mode must be octal, e.g. 0400, not "${f.mode}"`);
  return { source: f.source, ...(f.target ? { target: f.target } : {}), ...(f.uid ? { uid: f.uid } : {}), ...(f.gid ? { gid: f.gid } : {}), ...(f.mode ? { mode: parseInt(f.mode, 8) } : {}) };
}

export function parseConstraintFlag(text: string): string {
  const c = parseConstraint(text);
  if (typeof c === 'string') throw usage(`--constraint ${c}`);
  return c.text;
}

export function parsePlacementPref(text: string): { spread: string } {
  const m = /^spread=(node\.labels\.[A-Za-z0-9][A-Za-z0-9_.\-/]*)$/.exec(text);
  if (!m) throw usage(`--placement-pref must be spread=node.labels.KEY, not "${text}"`);
  return { spread: m[1]! };
}

/** Flags shared by create and update (update adds -add/-rm variants). */
export function declareSpecFlags(c: Command, mode: 'create' | 'update'): Command {
  const rep = mode === 'create' ? ' (repeatable)' : '';
  c.option('--image <ref>', 'run this image (oci or docker driver)')
    .option('--driver <name>', 'process | oci | docker (default: oci or docker for an image, process otherwise)')
    .option('--replicas <n>', 'number of tasks (replicated mode)')
    .option('--workdir <dir>', 'working directory of the command')
    .option('--user <user>', 'run as this user (uid[:gid] or name)')
    .option('--hostname <name>', 'container hostname (default: the task name)')
    .option('--read-only', 'mount the container\'s root file system read-only')
    .option('--reserve-cpu <cpus>', 'CPUs reserved per task (e.g. 0.5)')
    .option('--reserve-memory <size>', 'memory reserved per task (e.g. 64m)')
    .option('--limit-cpu <cpus>', 'CPU limit per task')
    .option('--limit-memory <size>', 'memory limit per task (the task is killed beyond it)')
    .option('--limit-pids <n>', 'process limit per task')
    .option('--restart-condition <c>', 'none | on-failure | any (default any)')
    .option('--restart-delay <duration>', 'wait between restarts (default 5s)')
    .option('--restart-max-attempts <n>', 'give up after N restarts (0 = never)')
    .option('--restart-window <duration>', 'window in which restart attempts are counted')
    .option('--health-cmd <command>', 'health check: a shell command that exits 0 when healthy')
    .option('--health-tcp <port>', 'health check: a TCP connection to this target port')
    .option('--health-http <[port]/path>', 'health check: HTTP GET answering 2xx/3xx (e.g. 8080/healthz)')
    .option('--health-interval <duration>', 'time between checks (default 30s)')
    .option('--health-timeout <duration>', 'time a check may take (default 30s)')
    .option('--health-retries <n>', 'consecutive failures before unhealthy (default 3)')
    .option('--health-start-period <duration>', 'grace period after start in which failures do not count')
    .option('--no-healthcheck', 'no health check')
    .option('--stop-grace-period <duration>', 'time to stop before SIGKILL (default 10s)')
    .option('--stop-signal <signal>', 'signal to stop the task (default SIGTERM)')
    .option('--max-replicas-per-node <n>', 'at most N tasks of this service per node (0 = no limit)')
    .option('--endpoint-mode <mode>', 'vip | dnsrr')
    .option('--shell', 'run the command through /bin/sh -c')
    .option('--args <command>', 'the command (as a shell-free list, whitespace-separated); update only');
  for (const p of ['update', 'rollback']) {
    c.option(`--${p}-parallelism <n>`, `tasks ${p === 'update' ? 'updated' : 'rolled back'} at once (0 = all)`)
      .option(`--${p}-delay <duration>`, 'wait between batches')
      .option(`--${p}-failure-action <a>`, p === 'update' ? 'pause | continue | rollback' : 'pause | continue')
      .option(`--${p}-monitor <duration>`, 'watch each new task this long for failure')
      .option(`--${p}-max-failure-ratio <r>`, 'tolerated failure ratio (0..1)')
      .option(`--${p}-order <o>`, 'stop-first | start-first');
  }
  if (mode === 'create') {
    c.option('--mode <mode>', 'replicated | global', 'replicated')
      .option('-e, --env <K=V>', `environment variable${rep}`, collect)
      .option('--label <k=v>', `service label${rep}`, collect)
      .option('--constraint <expr>', `placement constraint, e.g. node.labels.zone==a${rep}`, collect)
      .option('--placement-pref <pref>', `spread=node.labels.KEY${rep}`, collect)
      .option('-p, --publish <spec>', `published=P,target=T[,mode=ingress|host] or P:T${rep}`, collect)
      .option('--mount <spec>', `type=bind|tmpfs,source=…,target=…[,readonly]${rep}`, collect)
      .option('--secret <spec>', `give the tasks a secret: NAME or source=NAME,target=/run/secrets/F,uid=0,gid=0,mode=0400${rep}`, collect)
      .option('--config <spec>', `give the tasks a config: NAME or source=NAME,target=/PATH,uid=0,gid=0,mode=0444${rep}`, collect)
      .option('--network <name>', `attach to a network${rep}`, collect);
  } else {
    c.option('--env-add <K=V>', 'add or change an environment variable', collect).option('--env-rm <K>', 'remove an environment variable', collect)
      .option('--label-add <k=v>', 'add or change a label', collect).option('--label-rm <k>', 'remove a label', collect)
      .option('--constraint-add <expr>', 'add a constraint', collect).option('--constraint-rm <expr>', 'remove a constraint', collect)
      .option('--placement-pref-add <pref>', 'add a placement preference', collect).option('--placement-pref-rm <pref>', 'remove a placement preference', collect)
      .option('--publish-add <spec>', 'publish a port', collect).option('--publish-rm <target|published>', 'unpublish a port', collect)
      .option('--mount-add <spec>', 'add a mount', collect).option('--mount-rm <target>', 'remove a mount by target', collect)
      .option('--secret-add <spec>', 'add a secret (NAME or source=…,target=…)', collect).option('--secret-rm <name>', 'remove a secret', collect)
      .option('--config-add <spec>', 'add a config (NAME or source=…,target=…)', collect).option('--config-rm <name>', 'remove a config', collect)
      .option('--network-add <name>', 'attach to a network', collect).option('--network-rm <name>', 'detach from a network', collect)
      .option('--force', 'replace every task even if nothing changed (rolling restart)')
      .option('--rollback', 'roll back to the previous spec');
  }
  return c;
}

function updateConfigFlags(o: Record<string, unknown>, p: 'update' | 'rollback'): Record<string, unknown> | undefined {
  const cap = p === 'update' ? 'update' : 'rollback';
  const out: Record<string, unknown> = {};
  const par = numberFlag(`${cap}-parallelism`, o[`${p}Parallelism`], { integer: true, min: 0 });
  if (par !== undefined) out.parallelism = par;
  const delay = durationFlag(`${cap}-delay`, o[`${p}Delay`]);
  if (delay !== undefined) out.delay_ms = delay;
  const fa = oneOf(`${cap}-failure-action`, o[`${p}FailureAction`], p === 'update' ? (['pause', 'continue', 'rollback'] as const) : (['pause', 'continue'] as const));
  if (fa) out.failure_action = fa;
  const mon = durationFlag(`${cap}-monitor`, o[`${p}Monitor`]);
  if (mon !== undefined) out.monitor_ms = mon;
  const mfr = numberFlag(`${cap}-max-failure-ratio`, o[`${p}MaxFailureRatio`], { min: 0, max: 1 });
  if (mfr !== undefined) out.max_failure_ratio = mfr;
  const order = oneOf(`${cap}-order`, o[`${p}Order`], ['stop-first', 'start-first'] as const);
  if (order) out.order = order;
  return Object.keys(out).length ? out : undefined;
}

function healthFlags(o: Record<string, unknown>, base?: ServiceSpec): Record<string, unknown> | null | undefined {
  if (o.healthcheck === false) return { type: 'none' };
  const kinds = ['healthCmd', 'healthTcp', 'healthHttp'].filter((k) => o[k] !== undefined);
  if (kinds.length > 1) throw usage('Give one of --health-cmd, --health-tcp, --health-http');
  const timing = {
    interval_ms: durationFlag('health-interval', o.healthInterval),
    timeout_ms: durationFlag('health-timeout', o.healthTimeout),
    retries: numberFlag('health-retries', o.healthRetries, { integer: true, min: 1 }),
    start_period_ms: durationFlag('health-start-period', o.healthStartPeriod),
  };
  const t = Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined));
  let check: Record<string, unknown> | undefined;
  if (o.healthCmd !== undefined) check = { type: 'cmd', command: ['/bin/sh', '-c', String(o.healthCmd)] };
  if (o.healthTcp !== undefined) check = { type: 'tcp', port: numberFlag('health-tcp', o.healthTcp, { integer: true, min: 1, max: 65535 }) };
  if (o.healthHttp !== undefined) {
    const m = /^(\d{1,5})?(\/.*)$/.exec(String(o.healthHttp));
    if (!m) throw usage(`--health-http must be [PORT]/PATH, e.g. 8080/healthz or /healthz, not "${String(o.healthHttp)}"`);
    check = { type: 'http', ...(m[1] ? { port: Number(m[1]) } : {}), path: m[2] };
  }
  if (!check) {
    if (Object.keys(t).length === 0) return undefined;
    if (!base?.task.health_check) throw usage('--health-interval/-timeout/-retries/-start-period need a health check (--health-cmd, --health-tcp or --health-http)');
    return { ...base.task.health_check, ...t };
  }
  return { ...check, ...t };
}

/** Flags common to create and update → a partial spec (update merges it over the current spec). */
export function specFromFlags(o: Record<string, unknown>, base?: ServiceSpec): ServiceSpecInput {
  const task: Record<string, unknown> = {};
  if (o.image !== undefined) task.image = String(o.image);
  const driver = oneOf('driver', o.driver, ['process', 'oci', 'docker'] as const);
  if (driver) task.driver = driver;
  if (o.workdir !== undefined) task.workdir = String(o.workdir);
  if (o.user !== undefined) task.user = String(o.user);
  if (o.hostname !== undefined) task.hostname = String(o.hostname);
  if (o.readOnly) task.read_only = true;
  if (o.shell) task.shell = true;
  const reservations: Record<string, number> = {};
  const limits: Record<string, number> = {};
  const rc = numberFlag('reserve-cpu', o.reserveCpu, { min: 0 });
  if (rc !== undefined) reservations.cpu = rc;
  const rm = sizeFlag('reserve-memory', o.reserveMemory);
  if (rm !== undefined) reservations.memory_bytes = rm;
  const lc = numberFlag('limit-cpu', o.limitCpu, { min: 0 });
  if (lc !== undefined) limits.cpu = lc;
  const lm = sizeFlag('limit-memory', o.limitMemory);
  if (lm !== undefined) limits.memory_bytes = lm;
  const lp = numberFlag('limit-pids', o.limitPids, { integer: true, min: 0 });
  if (lp !== undefined) limits.pids = lp;
  if (Object.keys(reservations).length || Object.keys(limits).length) {
    task.resources = {
      reservations: { ...(base?.task.resources.reservations ?? {}), ...reservations },
      limits: { ...(base?.task.resources.limits ?? {}), ...limits },
    };
  }
  const restart: Record<string, unknown> = {};
  const cond = oneOf('restart-condition', o.restartCondition, ['none', 'on-failure', 'any'] as const);
  if (cond) restart.condition = cond;
  const rd = durationFlag('restart-delay', o.restartDelay);
  if (rd !== undefined) restart.delay_ms = rd;
  const ma = numberFlag('restart-max-attempts', o.restartMaxAttempts, { integer: true, min: 0 });
  if (ma !== undefined) restart.max_attempts = ma;
  const rw = durationFlag('restart-window', o.restartWindow);
  if (rw !== undefined) restart.window_ms = rw;
  if (Object.keys(restart).length) task.restart_policy = { ...(base?.task.restart_policy ?? {}), ...restart };
  const hc = healthFlags(o, base);
  if (hc !== undefined) task.health_check = hc;
  const sg = durationFlag('stop-grace-period', o.stopGracePeriod);
  if (sg !== undefined) task.stop_grace_period_ms = sg;
  if (o.stopSignal !== undefined) {
    const sig = String(o.stopSignal).toUpperCase();
    const name = sig.startsWith('SIG') ? sig : `SIG${sig}`;
    if (!/^SIG[A-Z0-9]+$/.test(name)) throw usage(`--stop-signal must be a signal name such as SIGTERM, not "${String(o.stopSignal)}"`);
    task.stop_signal = name;
  }
  const mrpn = numberFlag('max-replicas-per-node', o.maxReplicasPerNode, { integer: true, min: 0 });
  const spec: ServiceSpecInput = {};
  if (mrpn !== undefined) task.placement = { ...(base?.task.placement ?? {}), max_replicas_per_node: mrpn };
  const replicas = numberFlag('replicas', o.replicas, { integer: true, min: 0 });
  if (replicas !== undefined) spec.replicas = replicas;
  const em = oneOf('endpoint-mode', o.endpointMode, ['vip', 'dnsrr'] as const);
  if (em) spec.endpoint = { ...(base?.endpoint ?? {}), mode: em };
  const uc = updateConfigFlags(o, 'update');
  if (uc) spec.update_config = uc;
  const rbc = updateConfigFlags(o, 'rollback');
  if (rbc) spec.rollback_config = rbc;
  if (Object.keys(task).length) spec.task = task as ServiceSpecInput['task'];
  return spec;
}
