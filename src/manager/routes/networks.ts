import { labelsSchema, nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { listAll } from '../../store/paging.js';
import { commitChecked } from '../commit.js';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import type { ServiceData } from '../../services/spec.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, created, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema, principal, requireRole, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';
import type { NetworkData } from '../../network/network.js';
import { formatCidr, freeSubnet, gateway, nodeSliceCount, parseCidr, slicePrefix, subnetProblem, overlaps, type Cidr } from '../../network/ipam.js';


const spec: ListSpec = {
  filters: { name: 'name', driver: 'driver', id: 'id', attachable: 'attachable' },
  sortKeys: { name: 'name', created_at: 'created_at', updated_at: 'updated_at', id: 'id', subnet: 'subnet' },
  defaultSort: 'name',
  labels: true,
};

const networkSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    driver: { type: 'string' },
    subnet: { type: 'string' },
    attachable: { type: 'boolean' },
    vni: { type: 'integer' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    slice_prefix: { type: 'integer' },
    nodes: { type: 'array', items: { type: 'object', additionalProperties: true } },
    services: { type: 'array', items: { type: 'object', additionalProperties: true } },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

const createBody = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: {
    name: nameSchema,
    driver: { type: 'string', enum: ['overlay'], default: 'overlay', description: 'Only `overlay`: a network spanning every node (VXLAN between nodes).' },
    subnet: { type: 'string', maxLength: 18, description: `IPv4 subnet in CIDR form, /8 to /26 (default: a free /16 from 10.128.0.0/9).` },
    attachable: { type: 'boolean', default: false, description: 'Whether one-off tasks (`yun run --network`) may join it, besides services.' },
    labels: labelsSchema,
  },
} as const;

/** Services (of any project) attached to a network. */
export async function servicesOnNetwork(ctx: Pick<ManagerContext, 'store'>, networkId: string): Promise<StoredObject[]> {
  return (await listAll(ctx.store, 'service')).filter((s) => (s.data as ServiceData).spec.networks.includes(networkId));
}

/** Bumped by every network create: subnets and VNIs are chosen against all networks at once. */
const NETWORKS_GUARD = 'networks';

export function networkRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store'>): void {
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const projects = p.cloudAdmin ? undefined : [p.project.id];
    const n = projects ? await findInProjects(ctx.store, 'network', ref, projects) : (await ctx.store.get('network', ref)) ?? (await findInProjects(ctx.store, 'network', ref, [p.project.id]));
    if (!n) throw notFound('network', ref);
    return n;
  };

  const view = (o: StoredObject, extra: Record<string, unknown> = {}) => {
    const d = o.data as NetworkData;
    const { slices: _s, ...rest } = toApi(o);
    return { ...rest, slice_prefix: slicePrefix(parseCidr(d.subnet).prefix), ...extra };
  };

  app.post('/v1/networks', {
    config: { action: 'network.create' },
    schema: { tags: ['networks'], summary: 'Create an overlay network: its tasks get addresses from its subnet and reach each other, on any node, and nothing else.', querystring: noQuery, body: createBody, response: { 201: networkSchema } },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'create networks');
    const body = req.body as { name: string; driver: 'overlay'; subnet?: string; attachable: boolean; labels?: Record<string, string> };
    // Subnets must overlap no other network's, cluster-wide: the check and the create are one
    // write under the guard `networks` (a network made meanwhile, by any manager, makes it run again).
    const [n] = await commitChecked(ctx.store, async () => {
      const g = await ctx.store.guard(NETWORKS_GUARD);
      if (await ctx.store.getByName('network', p.project.id, body.name)) {
        throw new YunError('YUN_NAME_CONFLICT', `A network named "${body.name}" already exists in project "${p.project.name}"`, { hint: 'Choose another name, or remove the existing network first (`yun network rm`).' });
      }
      const all = await listAll(ctx.store, 'network');
      const taken: { cidr: Cidr; name: string; mine: boolean }[] = all.map((n) => ({ cidr: parseCidr((n.data as NetworkData).subnet), name: n.name, mine: n.project_id === p.project.id }));
      let subnet: Cidr;
      if (body.subnet !== undefined) {
        try {
          subnet = parseCidr(body.subnet);
        } catch (e) {
          throw new YunError('YUN_VALIDATION_FAILED', `Invalid subnet: ${(e as Error).message}`, { extra: { field: 'body/subnet' } });
        }
        const problem = subnetProblem(subnet);
        if (problem) throw new YunError('YUN_VALIDATION_FAILED', `Invalid subnet: ${problem}`, { extra: { field: 'body/subnet' } });
        const clash = taken.find((t) => overlaps(t.cidr, subnet));
        if (clash) {
          throw new YunError('YUN_SUBNET_CONFLICT', `Subnet ${formatCidr(subnet)} overlaps ${formatCidr(clash.cidr)} of ${clash.mine ? `network "${clash.name}"` : 'a network of another project'}`, { extra: { field: 'body/subnet' } });
        }
      } else {
        const free = freeSubnet(taken.map((t) => t.cidr));
        if (!free) throw new YunError('YUN_SUBNET_CONFLICT', 'No free /16 is left in the default pool 10.128.0.0/9', { hint: 'Give the network a subnet of its own with --subnet CIDR.' });
        subnet = free;
      }
      const vnis = new Set(all.map((n) => (n.data as NetworkData).vni));
      let vni = 4096;
      while (vnis.has(vni)) vni++;
      if (vni > 0xffffff) throw new YunError('YUN_UNAVAILABLE', 'No free VXLAN network identifier is left (16 million networks)', { hint: 'Remove networks that are no longer used.' });
      const data: NetworkData = { driver: 'overlay', subnet: formatCidr(subnet), attachable: body.attachable === true, vni, labels: body.labels ?? {}, slices: {} };
      return [{ op: 'guard', key: NETWORKS_GUARD, version: g }, { op: 'create', kind: 'network', project_id: p.project.id, name: body.name, data }];
    });
    req.auditTarget = n!.id;
    return created(reply, `/v1/networks/${n!.id}`, view(n!));
  });

  app.get('/v1/networks', {
    schema: { tags: ['networks'], summary: 'List networks.', querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(networkSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    const r = await ctx.store.list('network', buildListQuery(q, spec, listProjects(req, q)));
    return listBody(req, r, (o) => view(o));
  });

  app.get('/v1/networks/:id', {
    schema: { tags: ['networks'], summary: 'Show a network (by id or name): its nodes with their address slices and gateways, and the services on it with their VIPs.', params: idParams, querystring: noQuery, response: { 200: networkSchema } },
  }, async (req, reply) => {
    const n = await find(req, (req.params as { id: string }).id);
    const d = n.data as NetworkData;
    const cidr = parseCidr(d.subnet);
    const nodes = [];
    for (const [nodeId, index] of Object.entries(d.slices)) {
      const node = await ctx.store.get('node', nodeId);
      nodes.push({ node_id: nodeId, node: node?.name ?? null, slice: index, gateway: gateway(cidr, index) });
    }
    const p = principal(req);
    const services = (await servicesOnNetwork(ctx, n.id))
      .filter((s) => p.cloudAdmin || s.project_id === p.project.id)
      .map((s) => ({ id: s.id, name: s.name, vip: ((s.data as ServiceData).network_vips as Record<string, string> | undefined)?.[n.id] ?? null }));
    reply.header('etag', `"${n.version}"`);
    return view(n, { nodes, services, node_capacity: nodeSliceCount(cidr) });
  });

  app.delete('/v1/networks/:id', {
    config: { action: 'network.delete' },
    schema: { tags: ['networks'], summary: 'Remove a network; refused while a service uses it.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'remove networks');
    const n = await find(req, (req.params as { id: string }).id);
    req.auditTarget = n.id;
    const servers = (await listAll(ctx.store, 'server')).filter((s) => (s.data as { networks: { id: string }[] }).networks.some((x) => x.id === n.id));
    if (servers.length > 0) {
      const p = principal(req);
      const names = servers.map((s) => (p.cloudAdmin || s.project_id === p.project.id ? `"${s.name}"` : 'a server of another project'));
      throw new YunError('YUN_IN_USE', `Network "${n.name}" is in use by server${servers.length === 1 ? '' : 's'} ${names.join(', ')}`, { hint: `Delete ${servers.length === 1 ? 'that server' : 'those servers'} (\`yun server rm\`) first.` });
    }
    const users = await servicesOnNetwork(ctx, n.id);
    if (users.length > 0) {
      const p = principal(req);
      const names = users.map((s) => (p.cloudAdmin || s.project_id === p.project.id ? `"${s.name}"` : 'a service of another project'));
      throw new YunError('YUN_IN_USE', `Network "${n.name}" is in use by ${users.length === 1 ? 'service' : 'services'} ${names.join(', ')}`, { hint: `Remove ${users.length === 1 ? 'that service' : 'those services'} (\`yun service rm\`) or detach ${users.length === 1 ? 'it' : 'them'} (\`yun service update --network-rm ${n.name}\`) first.` });
    }
    await ctx.store.delete({ kind: 'network', id: n.id, version: writeVersion(req, undefined, false) });
    reply.code(204);
  });
}
