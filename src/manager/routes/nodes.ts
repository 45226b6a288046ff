import { labelsSchema } from '../../util/schemas.js';
import type { FastifyInstance } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import { GLOBAL, type StoredObject } from '../../store/store.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, idParams, listBody, listQuerySchema, listResponseSchema, requireCloudAdmin, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';
import type { NodeData } from '../membership.js';

const spec: ListSpec = {
  filters: { name: 'name', hostname: 'hostname', role: 'role', availability: 'availability', status: 'status', address: 'address' },
  sortKeys: { name: 'name', hostname: 'hostname', role: 'role', status: 'status', availability: 'availability', created_at: 'created_at', updated_at: 'updated_at', id: 'id' },
  defaultSort: 'name',
  labels: true,
};

export const nodeSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    hostname: { type: 'string' },
    address: { type: 'string' },
    role: { type: 'string', enum: ['manager', 'worker'] },
    availability: { type: 'string', enum: ['active', 'pause', 'drain'] },
    status: { type: 'string', enum: ['ready', 'down', 'unknown'] },
    status_message: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    resources: { type: 'object', properties: { cpus: { type: 'number' }, memory_bytes: { type: 'integer' } } },
    drivers: { type: 'object', additionalProperties: true },
    dataplane: { type: 'object', additionalProperties: true, description: 'The active data path and why, DNS, the tunnel port, overlay support.' },
    missing_features: { type: 'object', additionalProperties: { type: 'string' }, description: 'Features this node cannot offer, with why; tasks needing them are placed elsewhere.' },
    version: { type: 'integer' },
    agent_version: { type: 'string' },
    last_heartbeat: { type: ['string', 'null'] },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

export function nodeRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'membership' | 'store'>): void {
  const view = (o: StoredObject): Record<string, unknown> => {
    const d = o.data as unknown as NodeData;
    const { project_id: _p, ...rest } = toApi(o, { last_heartbeat: ctx.membership.lastHeartbeat(o.id) ?? d.last_heartbeat });
    return rest;
  };
  const find = async (ref: string) => (await ctx.store.get('node', ref)) ?? (await ctx.store.getByName('node', GLOBAL, ref));

  app.get('/v1/nodes', {
    schema: { tags: ['cluster'], summary: 'List the cluster\'s nodes.', querystring: listQuerySchema(spec, { projectScoped: false }), response: { 200: listResponseSchema(nodeSchema) } },
  }, async (req) => listBody(req, await ctx.store.list('node', buildListQuery(req.query as ListQueryInput, spec, undefined)), view));

  app.get('/v1/nodes/:id', {
    schema: { tags: ['cluster'], summary: 'Show a node (by id or name).', params: idParams, querystring: noQuery, response: { 200: nodeSchema } },
  }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const n = await find(id);
    if (!n) throw notFound('node', id);
    reply.header('etag', `"${n.version}"`);
    return view(n);
  });

  app.patch('/v1/nodes/:id', {
    config: { action: 'node.update' },
    schema: {
      tags: ['cluster'], summary: 'Change a node\'s availability (active, pause, drain), labels, or allocation ratios for servers (cloud administrators).', params: idParams, querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false,
        properties: {
          version: { type: 'integer', minimum: 1 },
          availability: { type: 'string', enum: ['active', 'pause', 'drain'] },
          labels: labelsSchema,
          allocation_ratios: {
            type: 'object', additionalProperties: false,
            description: 'How far servers may overcommit this node: vCPUs per CPU (default 16) and RAM (default 1.5×), as Nova\'s allocation ratios.',
            properties: { cpu: { type: 'number', minimum: 0.1, maximum: 1000 }, ram: { type: 'number', minimum: 0.1, maximum: 100 } },
          },
        },
      },
      response: { 200: nodeSchema },
    },
  }, async (req) => {
    requireCloudAdmin(req, 'change nodes');
    const { id } = req.params as { id: string };
    const b = req.body as { version?: number; availability?: string; labels?: Record<string, string>; allocation_ratios?: { cpu?: number; ram?: number } };
    const n = await find(id);
    if (!n) throw notFound('node', id);
    req.auditTarget = n.id;
    const version = writeVersion(req, b);
    const data = { ...n.data };
    if (b.availability !== undefined) data.availability = b.availability;
    if (b.labels !== undefined) data.labels = b.labels;
    if (b.allocation_ratios !== undefined) data.allocation_ratios = { ...((data.allocation_ratios as object | undefined) ?? {}), ...b.allocation_ratios };
    return view(await ctx.store.update({ kind: 'node', id: n.id, version, data }));
  });

  app.delete('/v1/nodes/:id', {
    config: { action: 'node.remove' },
    schema: {
      tags: ['cluster'], summary: 'Remove a node from the cluster (cloud administrators). A node that is not down needs force=true.', params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { force: { type: 'boolean', default: false } } },
    },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'remove nodes');
    const { id } = req.params as { id: string };
    const { force } = req.query as { force: boolean };
    const n = await find(id);
    if (!n) throw notFound('node', id);
    req.auditTarget = n.id;
    const d = n.data as unknown as NodeData;
    if (n.id === ctx.membership.localNodeId) {
      throw new YunError('YUN_FORBIDDEN', `Node "${n.name}" is the manager answering this request and cannot remove itself`, { hint: '' });
    }
    if (d.status !== 'down' && !force) {
      throw new YunError('YUN_IN_USE', `Node "${n.name}" is ${d.status}; removing a live node would orphan its tasks`, { hint: 'Drain it first (`yun node update --availability drain`), stop its agent, then remove it; or pass --force.' });
    }
    await ctx.store.delete({ kind: 'node', id: n.id, version: writeVersion(req, undefined, false) });
    ctx.membership.forget(n.id);
    reply.code(204);
  });
}
