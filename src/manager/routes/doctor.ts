import type { FastifyInstance } from 'fastify';
import { notFound } from '../../errors/errors.js';
import { GLOBAL, type StoredObject } from '../../store/store.js';
import type { CheckResult } from '../../doctor/checks.js';
import type { ManagerContext } from '../context.js';
import { requireCloudAdmin } from '../http.js';
import { listAll } from '../../store/paging.js';

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

export function doctorRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'config' | 'dispatcher' | 'store'>): void {
  const check = async (n: StoredObject, hosts: string[]) => {
    let checks: CheckResult[];
    try {
      checks = await ctx.dispatcher.doctor(n.id, hosts);
    } catch (e) {
      checks = [{ name: 'agent', status: 'fail', detail: (e as Error).message, fix: 'Start the node\'s agent; check `yun node inspect` for its last heartbeat.' }];
    }
    const worst = checks.some((c) => c.status === 'fail') ? 'fail' : checks.some((c) => c.status === 'warn') ? 'warn' : 'pass';
    return { node_id: n.id, node_name: n.name, address: n.data.address, status: worst, checks };
  };

  const hostsOf = async () => {
    const nodes = (await listAll(ctx.store, 'node'));
    const hosts = new Set<string>(nodes.map((n) => String(n.data.address)));
    hosts.add(new URL(ctx.config.advertiseUrl).hostname);
    return { nodes, hosts: [...hosts] };
  };

  app.get('/v1/doctor', {
    schema: { tags: ['cluster'], summary: 'Run the checks of `yun doctor` on every node (cloud administrators): PASS / WARN / FAIL with how to fix each.', querystring: noQuery },
  }, async (req) => {
    requireCloudAdmin(req, 'run the node checks');
    const { nodes, hosts } = await hostsOf();
    const items = await Promise.all(nodes.map((n) => check(n, hosts)));
    return { items, status: items.some((i) => i.status === 'fail') ? 'fail' : items.some((i) => i.status === 'warn') ? 'warn' : 'pass' };
  });

  app.get('/v1/nodes/:id/doctor', {
    schema: {
      tags: ['cluster'], summary: 'Run the checks of `yun doctor` on one node (cloud administrators).',
      params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', maxLength: 200 } } }, querystring: noQuery,
    },
  }, async (req) => {
    requireCloudAdmin(req, 'run the node checks');
    const { id } = req.params as { id: string };
    const n = (await ctx.store.get('node', id)) ?? (await ctx.store.getByName('node', GLOBAL, id));
    if (!n) throw notFound('node', id);
    const { hosts } = await hostsOf();
    return check(n, hosts);
  });
}
