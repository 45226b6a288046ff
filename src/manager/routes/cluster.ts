import type { FastifyInstance } from 'fastify';
import type { ManagerContext } from '../context.js';
import { principal, requireCloudAdmin } from '../http.js';
import type { NodeRole } from '../membership.js';

const roleParams = { type: 'object', additionalProperties: false, required: ['role'], properties: { role: { type: 'string', enum: ['worker', 'manager'] } } } as const;
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const joinTokenSchema = { type: 'object', properties: { role: { type: 'string' }, token: { type: 'string' }, command: { type: 'string' } } } as const;

export function clusterRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'config' | 'membership' | 'store'>): void {
  const joinView = async (role: NodeRole, token: string) => ({
    role,
    token,
    command: `yun agent --join ${ctx.config.advertiseUrl} --token ${token}`,
  });

  app.get('/v1/cluster', {
    schema: { tags: ['cluster'], summary: 'The cluster: its CA fingerprint, managers and store.', querystring: noQuery },
  }, async (req) => {
    principal(req);
    return {
      ca_fingerprint: ctx.config.caFingerprint,
      manager_url: ctx.config.advertiseUrl,
      store: ctx.store.backend,
      revision: await ctx.store.revision(),
      version: ctx.config.version,
    };
  });

  app.get('/v1/cluster/join-tokens/:role', {
    schema: { tags: ['cluster'], summary: 'The current join token for workers or managers, with the full join command.', params: roleParams, querystring: noQuery, response: { 200: joinTokenSchema } },
  }, async (req) => {
    requireCloudAdmin(req, 'read join tokens');
    const { role } = req.params as { role: NodeRole };
    return joinView(role, await ctx.membership.joinToken(role));
  });

  app.post('/v1/cluster/join-tokens/:role/rotate', {
    config: { action: 'join-token.rotate' },
    schema: { tags: ['cluster'], summary: 'Replace a join token; the old one stops working at once (nodes already joined are not affected).', params: roleParams, querystring: noQuery, response: { 200: joinTokenSchema } },
  }, async (req) => {
    requireCloudAdmin(req, 'rotate join tokens');
    const { role } = req.params as { role: NodeRole };
    req.auditTarget = role;
    return joinView(role, await ctx.membership.rotateJoinToken(role));
  });
}
