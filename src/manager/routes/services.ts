import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { normalizeSpec, quotaUsage, serviceSpecProps, createServiceSchema, withSpec, type ServiceData, type ServiceSpec, type ServiceSpecInput } from '../../services/spec.js';
import { validateSpec } from '../../services/validate.js';
import { assignPublishedPorts, PUBLISHED_RANGE } from '../../services/published-ports.js';
import { taskName, type TaskData } from '../../services/task.js';
import type { ManagerContext } from '../context.js';
import {
  buildListQuery, commonMeta, created, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema,
  principal, requireRole, toApi, writeVersion, type ListQueryInput, type ListSpec,
} from '../http.js';
import { checkQuota, type Quotas } from '../quotas.js';
import { claimKeys, commitChecked, quotaGuard } from '../commit.js';
import { refGuards, resolveRefs } from '../file-refs.js';
import { newId } from '../../util/ids.js';
import type { Op } from '../../store/store.js';
import { resolveImage } from '../../images/catalog.js';
import type { LogLine } from '../../dispatcher/protocol.js';
import type { NetworkData } from '../../network/network.js';

/** The label `yun run` puts on the service of a one-off task (such tasks join only attachable networks). */
export const ONEOFF_LABEL = 'yunstack.oneoff';
import { freeVip, parseCidr } from '../../network/ipam.js';
import { listAll } from '../../store/paging.js';

const spec: ListSpec = {
  filters: { name: 'name', mode: 'spec.mode', id: 'id' },
  sortKeys: { name: 'name', created_at: 'created_at', updated_at: 'updated_at', id: 'id', mode: 'spec.mode' },
  defaultSort: 'name',
  labels: false,
};

const serviceSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    mode: { type: 'string' },
    replicas: { type: 'integer' },
    spec: { type: 'object', additionalProperties: true },
    spec_version: { type: 'integer' },
    previous_spec: { type: ['object', 'null'], additionalProperties: true },
    update_status: { type: ['object', 'null'], additionalProperties: true },
    tasks: { type: 'object', properties: { running: { type: 'integer' }, desired: { type: 'integer' } } },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

/** The claims that make a service's VIP index, ingress ports and network VIPs its own in the cluster. */
function allocationClaims(id: string, d: ServiceData): Extract<Op, { op: 'claim' }>[] {
  const out: Extract<Op, { op: 'claim' }>[] = [];
  if (typeof d.vip_index === 'number') out.push({ op: 'claim', key: claimKeys.serviceVip(d.vip_index), owner: id });
  for (const p of d.spec.endpoint.ports) if (p.published && p.mode === 'ingress') out.push({ op: 'claim', key: claimKeys.ingressPort(p.protocol, p.published), owner: id });
  for (const [net, ip] of Object.entries(d.network_vips ?? {})) out.push({ op: 'claim', key: claimKeys.networkVip(net, ip), owner: id });
  return out;
}

export function serviceRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'clock' | 'dispatcher' | 'orchestrator' | 'store'>): void {
  const view = (o: StoredObject, counts?: { running: number; desired: number }) => {
    const d = o.data as ServiceData;
    const { quota_usage: _q, ...rest } = toApi(o);
    return { ...rest, mode: d.spec.mode, replicas: d.spec.replicas, ...(counts ? { tasks: counts } : {}) };
  };

  const counts = async (services: StoredObject[]) => {
    const ids = services.map((s) => s.id);
    if (ids.length === 0) return new Map<string, { running: number; desired: number }>();
    const running = await ctx.store.countBy('task', 'service_id', [
      { field: 'service_id', op: 'in', value: ids }, { field: 'desired_state', op: 'eq', value: 'running' }, { field: 'status.state', op: 'eq', value: 'running' },
    ]);
    const desiredGlobal = await ctx.store.countBy('task', 'service_id', [{ field: 'service_id', op: 'in', value: ids }, { field: 'desired_state', op: 'eq', value: 'running' }]);
    return new Map(services.map((s) => {
      const d = s.data as ServiceData;
      return [s.id, { running: running.get(s.id) ?? 0, desired: d.spec.mode === 'global' ? desiredGlobal.get(s.id) ?? 0 : d.spec.replicas }];
    }));
  };

  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const projects = p.cloudAdmin ? undefined : [p.project.id];
    const s = projects ? await findInProjects(ctx.store, 'service', ref, projects) : (await ctx.store.get('service', ref)) ?? (await findInProjects(ctx.store, 'service', ref, [p.project.id]));
    if (!s) throw notFound('service', ref);
    return s;
  };

  const nodeCount = async () => (await ctx.store.list('node', { limit: 1, withCount: true, filters: [{ field: 'status', op: 'eq', value: 'ready' }] })).count ?? 1;

  /** Ingress ports are published on every node: one service per port in the whole cluster. */
  const checkPorts = async (s: ServiceSpec, projectId: string, selfId?: string) => {
    const want = s.endpoint.ports.filter((p) => p.published && p.mode === 'ingress');
    if (want.length === 0) return;
    for (const other of await listAll(ctx.store, 'service')) {
      if (other.id === selfId) continue;
      for (const op of (other.data as ServiceData).spec.endpoint.ports) {
        for (const p of want) {
          if (op.published === p.published && op.protocol === p.protocol && (op.mode === 'ingress' || p.mode === 'ingress')) {
            const who = other.project_id === projectId ? `service "${other.name}"` : 'a service of another project';
            throw new YunError('YUN_PORT_IN_USE', `Port ${p.protocol}/${p.published} is already published on every node by ${who}`, { extra: { port: p.published } });
          }
        }
      }
    }
  };

  /** Ingress ports without a published port get one of the range (kept across updates), as swarm mode does. */
  const publishPorts = async (s: ServiceSpec, selfId?: string, previous?: ServiceSpec): Promise<ServiceSpec> => {
    if (!s.endpoint.ports.some((p) => p.mode === 'ingress' && !p.published)) return s;
    const prefix = claimKeys.ingressPortPrefix;
    const taken = new Set([...(await ctx.store.claims(prefix)).entries()].filter(([, owner]) => owner !== selfId).map(([k]) => k.slice(prefix.length)));
    const ports = assignPublishedPorts(s.endpoint.ports, taken, previous?.endpoint.ports);
    if (!ports) throw new YunError('YUN_UNAVAILABLE', `No free port is left in ${PUBLISHED_RANGE.first}-${PUBLISHED_RANGE.last} to publish this service's ports on`, { hint: 'Publish on a port of your choice (--publish PUBLISHED:TARGET), or remove services that publish ports.' });
    return { ...s, endpoint: { ...s.endpoint, ports } };
  };

  /** Network names become ids (a renamed or re-created network is never joined by mistake). */
  const checkNetworks = async (s: ServiceSpec, projectId: string) => {
    const ids: string[] = [];
    for (const n of s.networks) {
      const net = (await ctx.store.get('network', n)) ?? (await ctx.store.getByName('network', projectId, n));
      if (!net || net.project_id !== projectId) throw new YunError('YUN_VALIDATION_FAILED', `Network "${n}" does not exist in this project`, { hint: 'Create it with `yun network create NAME`, or list them with `yun network ls`.', extra: { field: 'body/networks' } });
      if (s.labels[ONEOFF_LABEL] === 'true' && !(net.data as NetworkData).attachable) {
        throw new YunError('YUN_NETWORK_NOT_ATTACHABLE', `Network "${net.name}" is not attachable: only services may join it, not one-off tasks`, { extra: { field: 'body/networks' } });
      }
      if (!ids.includes(net.id)) ids.push(net.id);
    }
    s.networks = ids;
    if (ids.length > 0 && !s.task.driver && s.task.image) s.task.driver = 'oci';
  };

  /** A VIP on every network of a `vip` service, from the network's VIP slice; kept while it stays on it. */
  const networkVips = async (s: ServiceSpec, have: Record<string, string> = {}, selfId?: string): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    if (s.endpoint.mode !== 'vip') return out;
    for (const id of s.networks) {
      if (have[id]) { out[id] = have[id]!; continue; }
      const net = await ctx.store.get('network', id);
      if (!net) continue;
      const used = [...(await ctx.store.claims(claimKeys.networkVip(id, ''))).entries()].filter(([, owner]) => owner !== selfId).map(([k]) => k.split('/').pop()!);
      const vip = freeVip(parseCidr((net.data as NetworkData).subnet), used);
      if (!vip) throw new YunError('YUN_UNAVAILABLE', `Network "${net.name}" has no free VIP left (its subnet ${(net.data as NetworkData).subnet} is full of services)`, { hint: 'Use --endpoint-mode dnsrr for this service, or a network with a larger subnet.' });
      out[id] = vip;
    }
    return out;
  };

  /** Every service gets a VIP index (its loopback VIPs are 127.<node octet>.<hi>.<lo>). */
  const freeVipIndex = async () => {
    const used = new Set([...(await ctx.store.claims(claimKeys.serviceVipPrefix)).keys()].map((k) => Number(k.split('/').pop())));
    for (let i = 1; i < 65535; i++) if (!used.has(i) && (i & 255) !== 0 && (i & 255) !== 255) return i;
    throw new YunError('YUN_UNAVAILABLE', 'No free service VIP is left (65,000 services)');
  };

  /** Resolve the image name to the digest tasks will run (pinned until the next update). */
  const pinImage = async (s: ServiceSpec, projectId: string) => {
    if (!s.task.image) { delete s.task.image_digest; return; }
    const img = await resolveImage(ctx.store, projectId, s.task.image, 'run tasks from it');
    if (!img) {
      throw new YunError('YUN_VALIDATION_FAILED', `Image "${s.task.image}" does not exist in this project`, {
        hint: 'Import it (`yun image import FILE`, `yun image import-rootfs DIR --name N`) or pull it (`yun image pull REF`); `yun image ls` lists what there is.',
        extra: { field: 'body/task/image' },
      });
    }
    s.task.image_digest = img.data.digest as string;
  };

  app.post('/v1/services', {
    config: { action: 'service.create' },
    schema: { tags: ['services'], summary: 'Create a service (swarm mode): replicated or global tasks from a command or an image.', querystring: noQuery, body: createServiceSchema, response: { 201: serviceSchema } },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'create services');
    const body = req.body as ServiceSpecInput & { name: string };
    const s = normalizeSpec(body);
    validateSpec(s, body);
    await checkNetworks(s, p.project.id);
    await checkPorts(s, p.project.id);
    await pinImage(s, p.project.id);
    await resolveRefs(ctx.store, s.task, p.project.id, 'body/task');
    if (await ctx.store.getByName('service', p.project.id, body.name)) {
      throw new YunError('YUN_NAME_CONFLICT', `A service named "${body.name}" already exists in project "${p.project.name}"`, { hint: 'Choose another name, update the existing service (`yun service update`), or remove it first.' });
    }
    if (await ctx.store.getByName('server', p.project.id, body.name)) {
      throw new YunError('YUN_NAME_CONFLICT', `A server named "${body.name}" already exists in project "${p.project.name}": a service and a server share names in the project's DNS`, { hint: 'Choose another name.' });
    }
    const id = newId();
    // Checked and written as one: a quota, a port, a VIP index that another writer takes meanwhile
    // makes the batch fail, and the checks run again against what it wrote.
    const [svc] = await commitChecked(ctx.store, async () => {
      const g = await ctx.store.guard(quotaGuard(p.project.id));
      await checkPorts(s, p.project.id);
      const usage = quotaUsage(s, await nodeCount());
      await checkQuota(ctx.store, p.project, { services: 1, tasks: usage.tasks, cpu: usage.cpu, memory: usage.memory });
      const data: ServiceData = { spec: await publishPorts(s), spec_version: 1, previous_spec: null, update_status: null, quota_usage: usage, vip_index: await freeVipIndex(), network_vips: await networkVips(s) };
      return [
        { op: 'guard', key: quotaGuard(p.project.id), version: g },
        ...(await refGuards(ctx.store, s.task, 'body/task')),
        { op: 'create', kind: 'service', id, project_id: p.project.id, name: body.name, data },
        ...allocationClaims(id, data),
      ];
    });
    req.auditTarget = svc.id;
    ctx.orchestrator.enqueue(svc.id);
    return created(reply, `/v1/services/${svc.id}`, view(svc, { running: 0, desired: s.mode === 'global' ? 0 : s.replicas }));
  });

  app.get('/v1/services', {
    schema: { tags: ['services'], summary: 'List services with running/desired task counts.', querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(serviceSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    const r = await ctx.store.list('service', buildListQuery(q, spec, listProjects(req, q)));
    const c = await counts(r.items);
    return listBody(req, r, (o) => view(o, c.get(o.id)));
  });

  app.get('/v1/services/:id', {
    schema: { tags: ['services'], summary: 'Show a service (by id or name).', params: idParams, querystring: noQuery, response: { 200: serviceSchema } },
  }, async (req, reply) => {
    const s = await find(req, (req.params as { id: string }).id);
    reply.header('etag', `"${s.version}"`);
    return view(s, (await counts([s])).get(s.id));
  });

  app.patch('/v1/services/:id', {
    config: { action: 'service.update' },
    schema: {
      tags: ['services'],
      summary: 'Update a service: any part of its spec (a task change rolls out as a rolling update), replicas (scale), or `rollback: true` to return to the previous spec.',
      params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, properties: { version: { type: 'integer', minimum: 1 }, rollback: { type: 'boolean' }, ...serviceSpecProps } },
      response: { 200: serviceSchema },
    },
  }, async (req) => {
    requireRole(req, 'member', 'update services');
    const body = req.body as ServiceSpecInput & { version?: number; rollback?: boolean };
    const version = writeVersion(req, body);
    const [updated] = await commitChecked(ctx.store, async () => {
      const svc = await find(req, (req.params as { id: string }).id);
      req.auditTarget = svc.id;
      const g = await ctx.store.guard(quotaGuard(svc.project_id));
      const d = svc.data as ServiceData;
      const { version: _v, rollback, ...input } = body;
      const now = ctx.clock.iso();
      let next: ServiceData;
      if (rollback) {
        if (Object.keys(input).length) throw new YunError('YUN_VALIDATION_FAILED', 'rollback: true cannot be combined with other changes', { hint: 'Roll back first, then update.' });
        if (!d.previous_spec) throw new YunError('YUN_VALIDATION_FAILED', `Service "${svc.name}" has no previous spec to roll back to`, { hint: 'It has not been updated since it was created.' });
        next = {
          ...d, spec: await publishPorts(d.previous_spec, svc.id, d.spec), previous_spec: d.spec, spec_version: d.spec_version + 1,
          update_status: { state: 'rollback_started', started_at: now, message: 'manually requested rollback' },
        };
      } else {
        if (input.mode !== undefined && input.mode !== d.spec.mode) {
          throw new YunError('YUN_VALIDATION_FAILED', `A service's mode cannot change (it is ${d.spec.mode})`, { hint: 'Create a new service with the other mode.' });
        }
        const normalized = normalizeSpec(input, d.spec);
        validateSpec(normalized, { replicas: d.spec.mode === 'global' ? input.replicas : undefined });
        await checkNetworks(normalized, svc.project_id);
        await checkPorts(normalized, svc.project_id, svc.id);
        // Before the comparison below: ports sent without a published port keep theirs, no rollout.
        const s = await publishPorts(normalized, svc.id, d.spec);
        if (input.task?.image !== undefined || input.task?.force_update !== undefined || (s.task.image && !s.task.image_digest)) await pinImage(s, svc.project_id);
        if (input.task?.secrets !== undefined || input.task?.configs !== undefined) await resolveRefs(ctx.store, s.task, svc.project_id, 'body/task');
        next = withSpec(d, s, now);
      }
      next.network_vips = await networkVips(next.spec, d.network_vips, svc.id);
      if (rollback && JSON.stringify(next.spec) !== JSON.stringify(d.spec)) next.spec_changed_at = now;
      const usage = quotaUsage(next.spec, await nodeCount());
      const delta: Partial<Quotas> = { tasks: usage.tasks - d.quota_usage.tasks, cpu: usage.cpu - d.quota_usage.cpu, memory: usage.memory - d.quota_usage.memory };
      const project = (await ctx.store.get('project', svc.project_id))!;
      await checkQuota(ctx.store, project, delta);
      next.quota_usage = usage;
      // Claims of what it no longer has are released; of what it gains, taken.
      const have = allocationClaims(svc.id, d).map((c) => c.key);
      const want = allocationClaims(svc.id, next);
      return [
        { op: 'guard', key: quotaGuard(svc.project_id), version: g },
        ...(await refGuards(ctx.store, next.spec.task, 'body/task')),
        { op: 'update', kind: 'service', id: svc.id, version, data: next },
        ...have.filter((k) => !want.some((w) => w.key === k)).map((key) => ({ op: 'release' as const, key, owner: svc.id })),
        ...want.filter((w) => !have.includes(w.key)),
      ];
    });
    ctx.orchestrator.enqueue(updated!.id);
    return view(updated!, (await counts([updated!])).get(updated!.id));
  });

  app.delete('/v1/services/:id', {
    config: { action: 'service.delete' },
    schema: { tags: ['services'], summary: 'Remove a service; its tasks are stopped and removed.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'remove services');
    const svc = await find(req, (req.params as { id: string }).id);
    req.auditTarget = svc.id;
    await ctx.store.delete({ kind: 'service', id: svc.id, version: writeVersion(req, undefined, false) });
    ctx.orchestrator.enqueue(svc.id);
    reply.code(204);
  });

  // ---- logs ------------------------------------------------------------------------------------

  const logsQuery = {
    type: 'object', additionalProperties: false,
    properties: {
      tail: { type: 'integer', minimum: 0, maximum: 1_000_000, description: 'Only the last N lines of each task.' },
      since: { type: 'string', format: 'date-time', description: 'Only lines at or after this time (RFC 3339).' },
      follow: { type: 'boolean', default: false, description: 'Keep the response open and stream new lines.' },
    },
  } as const;

  const streamLogs = async (req: FastifyRequest, reply: FastifyReply, tasks: StoredObject[]) => {
    const q = req.query as { tail?: number; since?: string; follow: boolean };
    const byNode = new Map<string, string[]>();
    const info = new Map<string, { name: string; node_id: string }>();
    for (const t of tasks) {
      const d = t.data as TaskData;
      if (!d.node_id) continue;
      byNode.set(d.node_id, [...(byNode.get(d.node_id) ?? []), t.id]);
      info.set(t.id, { name: taskName(d), node_id: d.node_id });
    }
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': req.id, 'cache-control': 'no-store' });
    await new Promise<void>((resolve) => {
      const write = (lines: LogLine[]) => {
        for (const l of lines) reply.raw.write(`${JSON.stringify({ task_id: l.task_id, task_name: info.get(l.task_id)?.name, node_id: info.get(l.task_id)?.node_id, t: l.t, stream: l.s, line: l.l })}\n`);
      };
      const cancel = ctx.dispatcher.streamLogs(byNode, { tail: q.tail ?? null, since: q.since ?? null, follow: q.follow }, write, (errors) => {
        for (const e of errors) reply.raw.write(`${JSON.stringify({ error: e })}\n`);
        reply.raw.end();
        resolve();
      });
      req.raw.once('close', () => { cancel(); resolve(); });
    });
  };

  app.get('/v1/services/:id/logs', {
    schema: { tags: ['services'], summary: 'The logs of a service\'s tasks, as NDJSON lines {task_name, t, stream, line}.', params: idParams, querystring: logsQuery },
  }, async (req, reply) => {
    const svc = await find(req, (req.params as { id: string }).id);
    const tasks = await listAll(ctx.store, 'task', { filters: [{ field: 'service_id', op: 'eq', value: svc.id }] });
    await streamLogs(req, reply, tasks);
    return reply;
  });

  app.decorate('streamTaskLogs', streamLogs);
}

declare module 'fastify' {
  interface FastifyInstance {
    streamTaskLogs(req: FastifyRequest, reply: FastifyReply, tasks: StoredObject[]): Promise<void>;
  }
}
