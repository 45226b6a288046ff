import { labelsSchema, nameSchema } from '../util/schemas.js';
import { fileRefsSchema, normalizeRefs, refsFields, type FileRef } from '../secrets/refs.js';
/**
 * The service spec (swarm mode): what the API accepts, stores and hands to the orchestrator.
 * Durations are integer milliseconds (`*_ms`), sizes integer bytes, CPUs a number of cores.
 */

export type RestartCondition = 'none' | 'on-failure' | 'any';
export type FailureAction = 'pause' | 'continue' | 'rollback';
export type UpdateOrder = 'stop-first' | 'start-first';

export interface Mount {
  type: 'bind' | 'tmpfs' | 'volume';
  source?: string;
  target: string;
  readonly?: boolean;
  tmpfs_size_bytes?: number;
}

export interface HealthCheck {
  type: 'cmd' | 'tcp' | 'http' | 'none';
  command?: string[];
  /** Target (container) port for tcp/http checks; the task's own port mapping is applied. */
  port?: number;
  path?: string;
  interval_ms: number;
  timeout_ms: number;
  retries: number;
  start_period_ms: number;
}

export interface PortConfig {
  name?: string;
  protocol: 'tcp' | 'udp';
  target: number;
  published?: number;
  mode: 'ingress' | 'host';
}

export interface TaskTemplate {
  driver?: 'process' | 'oci' | 'docker';
  image?: string;
  /** The image's manifest digest, resolved from `image` when the service is created or updated. */
  image_digest?: string;
  /** Image drivers: `private` (a network namespace of its own) or `host` (the node's). */
  network_mode?: 'private' | 'host';
  command: string[];
  shell: boolean;
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  hostname?: string;
  mounts: Mount[];
  /** Secrets and configs as files (absent when none, so older specs compare equal). */
  secrets?: FileRef[];
  configs?: FileRef[];
  read_only: boolean;
  resources: {
    reservations: { cpu: number; memory_bytes: number };
    limits: { cpu: number; memory_bytes: number; pids: number };
  };
  restart_policy: { condition: RestartCondition; delay_ms: number; max_attempts: number; window_ms: number };
  health_check?: HealthCheck;
  placement: { constraints: string[]; preferences: { spread: string }[]; max_replicas_per_node: number };
  stop_grace_period_ms: number;
  stop_signal: string;
  /** Bumped by `service update --force` to restart every task without other changes. */
  force_update: number;
}

export interface UpdateConfig {
  parallelism: number;
  delay_ms: number;
  failure_action: FailureAction;
  monitor_ms: number;
  max_failure_ratio: number;
  order: UpdateOrder;
}

export interface ServiceSpec {
  mode: 'replicated' | 'global';
  replicas: number;
  labels: Record<string, string>;
  task: TaskTemplate;
  update_config: UpdateConfig;
  rollback_config: UpdateConfig;
  endpoint: { mode: 'vip' | 'dnsrr'; ports: PortConfig[] };
  networks: string[];
}

/** Update progress, as swarm's UpdateStatus. */
export interface UpdateStatus {
  state: 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed';
  started_at: string;
  completed_at?: string;
  message: string;
}

export interface ServiceData extends Record<string, unknown> {
  spec: ServiceSpec;
  /** Incremented on every spec change; tasks record the spec version they run. */
  spec_version: number;
  previous_spec: ServiceSpec | null;
  update_status: UpdateStatus | null;
  quota_usage: { tasks: number; cpu: number; memory: number };
  /** The service's VIP index (see src/dataplane/endpoints.ts). */
  vip_index?: number;
  /** Network id → the service's VIP on that network (vip mode). */
  network_vips?: Record<string, string>;
  /** When the spec last changed (restart policies count from there). */
  spec_changed_at?: string;
}

const durationMs = { type: 'integer', minimum: 0, maximum: 30 * 86400_000 } as const;

const updateConfigSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    parallelism: { type: 'integer', minimum: 0, maximum: 10000, description: 'Tasks updated at once (0 = all at once).' },
    delay_ms: durationMs,
    failure_action: { type: 'string', enum: ['pause', 'continue', 'rollback'] },
    monitor_ms: durationMs,
    max_failure_ratio: { type: 'number', minimum: 0, maximum: 1 },
    order: { type: 'string', enum: ['stop-first', 'start-first'] },
  },
} as const;

export const CONSTRAINT_RE = /^node\.(id|hostname|role|labels\.[A-Za-z0-9][A-Za-z0-9_.\-/]*)\s*(==|!=)\s*(\S.*)$/;

export const taskTemplateSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    driver: { type: 'string', enum: ['process', 'oci', 'docker'] },
    image: { type: 'string', minLength: 1, maxLength: 500 },
    image_digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$', description: 'Set by the server from image; give it to pin a digest.' },
    network_mode: { type: 'string', enum: ['private', 'host'] },
    command: { type: 'array', items: { type: 'string', maxLength: 10000 }, maxItems: 1000 },
    shell: { type: 'boolean', description: 'Run command[0] with /bin/sh -c.' },
    env: { type: 'object', additionalProperties: { type: 'string', maxLength: 100000 }, propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }, maxProperties: 500 },
    workdir: { type: 'string', minLength: 1, maxLength: 4096 },
    user: { type: 'string', minLength: 1, maxLength: 100 },
    hostname: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9.-]*$' },
    mounts: {
      type: 'array', maxItems: 100,
      items: {
        type: 'object', additionalProperties: false, required: ['type', 'target'],
        properties: {
          type: { type: 'string', enum: ['bind', 'tmpfs', 'volume'] },
          source: { type: 'string', minLength: 1, maxLength: 4096 },
          target: { type: 'string', minLength: 1, maxLength: 4096, pattern: '^/' },
          readonly: { type: 'boolean' },
          tmpfs_size_bytes: { type: 'integer', minimum: 0 },
        },
      },
    },
    secrets: fileRefsSchema('secret'),
    configs: fileRefsSchema('config'),
    read_only: { type: 'boolean' },
    resources: {
      type: 'object', additionalProperties: false,
      properties: {
        reservations: { type: 'object', additionalProperties: false, properties: { cpu: { type: 'number', minimum: 0, maximum: 4096 }, memory_bytes: { type: 'integer', minimum: 0 } } },
        limits: { type: 'object', additionalProperties: false, properties: { cpu: { type: 'number', minimum: 0, maximum: 4096 }, memory_bytes: { type: 'integer', minimum: 0 }, pids: { type: 'integer', minimum: 0 } } },
      },
    },
    restart_policy: {
      type: 'object', additionalProperties: false,
      properties: {
        condition: { type: 'string', enum: ['none', 'on-failure', 'any'] },
        delay_ms: durationMs,
        max_attempts: { type: 'integer', minimum: 0, description: '0 = unlimited.' },
        window_ms: durationMs,
      },
    },
    health_check: {
      type: 'object', additionalProperties: false,
      properties: {
        type: { type: 'string', enum: ['cmd', 'tcp', 'http', 'none'] },
        command: { type: 'array', items: { type: 'string', maxLength: 10000 }, minItems: 1 },
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        path: { type: 'string', pattern: '^/', maxLength: 2000 },
        interval_ms: { type: 'integer', minimum: 100, maximum: 86400_000 },
        timeout_ms: { type: 'integer', minimum: 10, maximum: 86400_000 },
        retries: { type: 'integer', minimum: 1, maximum: 1000 },
        start_period_ms: durationMs,
      },
    },
    placement: {
      type: 'object', additionalProperties: false,
      properties: {
        constraints: { type: 'array', maxItems: 50, items: { type: 'string', maxLength: 300, pattern: CONSTRAINT_RE.source, description: 'node.id|hostname|role|labels.KEY ==|!= VALUE' } },
        preferences: { type: 'array', maxItems: 10, items: { type: 'object', additionalProperties: false, required: ['spread'], properties: { spread: { type: 'string', pattern: '^node\\.labels\\.[A-Za-z0-9][A-Za-z0-9_.\\-/]*$', description: 'node.labels.KEY' } } } },
        max_replicas_per_node: { type: 'integer', minimum: 0 },
      },
    },
    stop_grace_period_ms: durationMs,
    stop_signal: { type: 'string', pattern: '^SIG[A-Z0-9]+$' },
    force_update: { type: 'integer', minimum: 0 },
  },
} as const;

export const serviceSpecProps = {
  mode: { type: 'string', enum: ['replicated', 'global'] },
  replicas: { type: 'integer', minimum: 0, maximum: 100000 },
  labels: labelsSchema,
  task: taskTemplateSchema,
  update_config: updateConfigSchema,
  rollback_config: updateConfigSchema,
  endpoint: {
    type: 'object', additionalProperties: false,
    properties: {
      mode: { type: 'string', enum: ['vip', 'dnsrr'] },
      ports: {
        type: 'array', maxItems: 100,
        items: {
          type: 'object', additionalProperties: false, required: ['target'],
          properties: {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,14}$' },
            protocol: { type: 'string', enum: ['tcp', 'udp'] },
            target: { type: 'integer', minimum: 1, maximum: 65535 },
            published: { type: 'integer', minimum: 1, maximum: 65535 },
            mode: { type: 'string', enum: ['ingress', 'host'] },
          },
        },
      },
    },
  },
  networks: { type: 'array', items: { type: 'string', maxLength: 200 }, maxItems: 20 },
} as const;

export const createServiceSchema = {
  type: 'object', additionalProperties: false, required: ['name', 'task'],
  properties: { name: nameSchema, ...serviceSpecProps },
} as const;

export const DEFAULT_UPDATE: UpdateConfig = { parallelism: 1, delay_ms: 0, failure_action: 'pause', monitor_ms: 5000, max_failure_ratio: 0, order: 'stop-first' };
export const DEFAULT_ROLLBACK: UpdateConfig = { parallelism: 1, delay_ms: 0, failure_action: 'pause', monitor_ms: 5000, max_failure_ratio: 0, order: 'stop-first' };

type DeepPartial<T> = { [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type ServiceSpecInput = DeepPartial<ServiceSpec>;


/** Fill in every default, so the stored spec says exactly what runs. */
export function normalizeSpec(input: ServiceSpecInput, base?: ServiceSpec): ServiceSpec {
  const t = (input.task ?? {}) as DeepPartial<TaskTemplate>;
  const bt = base?.task;
  const hc = t.health_check ?? (t.health_check === undefined ? bt?.health_check : undefined);
  const task: TaskTemplate = {
    driver: (t.driver ?? bt?.driver) as TaskTemplate['driver'],
    image: t.image ?? bt?.image,
    image_digest: t.image !== undefined && t.image !== bt?.image ? t.image_digest : t.image_digest ?? bt?.image_digest,
    network_mode: t.network_mode ?? bt?.network_mode,
    command: (t.command as string[] | undefined) ?? bt?.command ?? [],
    shell: t.shell ?? bt?.shell ?? false,
    env: (t.env as Record<string, string> | undefined) ?? bt?.env ?? {},
    workdir: t.workdir ?? bt?.workdir,
    user: t.user ?? bt?.user,
    hostname: t.hostname ?? bt?.hostname,
    mounts: (t.mounts as Mount[] | undefined) ?? bt?.mounts ?? [],
    ...refsFields({
      secrets: t.secrets ? normalizeRefs(t.secrets as Partial<FileRef>[], 'secret') : bt?.secrets,
      configs: t.configs ? normalizeRefs(t.configs as Partial<FileRef>[], 'config') : bt?.configs,
    }),
    read_only: t.read_only ?? bt?.read_only ?? false,
    resources: {
      reservations: {
        cpu: t.resources?.reservations?.cpu ?? bt?.resources.reservations.cpu ?? 0,
        memory_bytes: t.resources?.reservations?.memory_bytes ?? bt?.resources.reservations.memory_bytes ?? 0,
      },
      limits: {
        cpu: t.resources?.limits?.cpu ?? bt?.resources.limits.cpu ?? 0,
        memory_bytes: t.resources?.limits?.memory_bytes ?? bt?.resources.limits.memory_bytes ?? 0,
        pids: t.resources?.limits?.pids ?? bt?.resources.limits.pids ?? 0,
      },
    },
    restart_policy: {
      condition: t.restart_policy?.condition ?? bt?.restart_policy.condition ?? 'any',
      delay_ms: t.restart_policy?.delay_ms ?? bt?.restart_policy.delay_ms ?? 5000,
      max_attempts: t.restart_policy?.max_attempts ?? bt?.restart_policy.max_attempts ?? 0,
      window_ms: t.restart_policy?.window_ms ?? bt?.restart_policy.window_ms ?? 0,
    },
    health_check: hc && hc.type !== 'none'
      ? {
          type: hc.type ?? (hc.command ? 'cmd' : 'tcp'),
          ...(hc.command ? { command: hc.command as string[] } : {}),
          ...(hc.port ? { port: hc.port } : {}),
          ...(hc.path ? { path: hc.path } : {}),
          interval_ms: hc.interval_ms ?? 30_000,
          timeout_ms: hc.timeout_ms ?? 30_000,
          retries: hc.retries ?? 3,
          start_period_ms: hc.start_period_ms ?? 0,
        }
      : undefined,
    placement: {
      constraints: (t.placement?.constraints as string[] | undefined) ?? bt?.placement.constraints ?? [],
      preferences: (t.placement?.preferences as { spread: string }[] | undefined) ?? bt?.placement.preferences ?? [],
      max_replicas_per_node: t.placement?.max_replicas_per_node ?? bt?.placement.max_replicas_per_node ?? 0,
    },
    stop_grace_period_ms: t.stop_grace_period_ms ?? bt?.stop_grace_period_ms ?? 10_000,
    stop_signal: t.stop_signal ?? bt?.stop_signal ?? 'SIGTERM',
    force_update: t.force_update ?? bt?.force_update ?? 0,
  };
  const mode = input.mode ?? base?.mode ?? 'replicated';
  return {
    mode,
    replicas: mode === 'global' ? 0 : input.replicas ?? base?.replicas ?? 1,
    labels: (input.labels as Record<string, string> | undefined) ?? base?.labels ?? {},
    task,
    update_config: { ...DEFAULT_UPDATE, ...(base?.update_config ?? {}), ...((input.update_config ?? {}) as Partial<UpdateConfig>) },
    rollback_config: { ...DEFAULT_ROLLBACK, ...(base?.rollback_config ?? {}), ...((input.rollback_config ?? {}) as Partial<UpdateConfig>) },
    endpoint: {
      mode: input.endpoint?.mode ?? base?.endpoint.mode ?? 'vip',
      ports: ((input.endpoint?.ports as PortConfig[] | undefined) ?? base?.endpoint.ports ?? []).map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        protocol: p.protocol ?? 'tcp', target: p.target, ...(p.published ? { published: p.published } : {}), mode: p.mode ?? 'ingress',
      })),
    },
    networks: (input.networks as string[] | undefined) ?? base?.networks ?? [],
  };
}

/** Replicas the quota counts: for a global service, one per node (an estimate at admission). */
export function quotaUsage(spec: ServiceSpec, nodeCount: number): ServiceData['quota_usage'] {
  const tasks = spec.mode === 'global' ? nodeCount : spec.replicas;
  return {
    tasks,
    cpu: Math.round(tasks * spec.task.resources.reservations.cpu * 1000) / 1000,
    memory: tasks * spec.task.resources.reservations.memory_bytes,
  };
}

/**
 * The service after its spec becomes `s`: a task change is a new spec version (the previous one
 * kept for rollback) and a rolling update; scaling alone is neither.
 */
export function withSpec(d: ServiceData, s: ServiceSpec, now: string): ServiceData {
  const changedTasks = taskSpecChanged(d.spec, s);
  return {
    ...d, spec: s,
    spec_version: changedTasks ? d.spec_version + 1 : d.spec_version,
    previous_spec: changedTasks ? d.spec : d.previous_spec,
    update_status: changedTasks ? { state: 'updating', started_at: now, message: 'update in progress' } : d.update_status,
    ...(JSON.stringify(s) !== JSON.stringify(d.spec) ? { spec_changed_at: now } : {}),
  };
}

/** Does changing from `a` to `b` require new tasks (a rolling update)? Scaling alone does not. */
export function taskSpecChanged(a: ServiceSpec, b: ServiceSpec): boolean {
  return JSON.stringify(a.task) !== JSON.stringify(b.task) || JSON.stringify(a.endpoint) !== JSON.stringify(b.endpoint) || JSON.stringify(a.networks) !== JSON.stringify(b.networks);
}
