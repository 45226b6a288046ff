import type { FastifyInstance } from 'fastify';
import { YunError } from '../../errors/errors.js';
import { hashToken } from '../../identity/identity.js';
import { parseDuration } from '../../util/duration.js';
import type { ManagerContext } from '../context.js';
import { principal } from '../http.js';

const tokenView = {
  type: 'object',
  properties: {
    token: {
      type: 'object',
      properties: {
        token_id: { type: 'string' },
        user: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
        project: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
        roles: { type: 'array', items: { type: 'string' } },
        cloud_admin: { type: 'boolean' },
        issued_at: { type: 'string' },
        expires_at: { type: 'string' },
        catalog: { type: 'array', items: { type: 'object', additionalProperties: true } },
      },
    },
  },
} as const;

export function authRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'config' | 'identity' | 'store'>): void {
  const catalog = () => [
    { type: 'cloud', name: 'yunstack', endpoints: [{ interface: 'public', url: `${ctx.config.publicUrl}/v1` }] },
    { type: 'metrics', name: 'prometheus', endpoints: [{ interface: 'public', url: `${ctx.config.publicUrl}/metrics` }] },
  ];

  app.post('/v1/auth/tokens', {
    config: { auth: false, action: 'token.issue', rateLimit: { max: 20, timeWindow: 1000 } },
    schema: {
      tags: ['identity'],
      summary: 'Log in: exchange a user name and password for a token scoped to a project (in X-Subject-Token).',
      body: {
        type: 'object', additionalProperties: false,
        required: ['username', 'password'],
        properties: {
          username: { type: 'string', minLength: 1, maxLength: 200 },
          password: { type: 'string', minLength: 1, maxLength: 1000 },
          project: { type: 'string', minLength: 1, maxLength: 200, description: 'Project name or id; the user\'s default project when omitted.' },
          ttl: { type: 'string', maxLength: 20, description: 'Lifetime, e.g. 1h (at most the server\'s token lifetime).' },
        },
      },
      response: { 201: tokenView },
    },
  }, async (req, reply) => {
    const b = req.body as { username: string; password: string; project?: string; ttl?: string };
    let ttl: number | undefined;
    if (b.ttl !== undefined) {
      ttl = parseDuration(b.ttl);
      if (ttl === undefined || ttl <= 0) throw new YunError('YUN_VALIDATION_FAILED', `body/ttl must be a duration such as 30m or 12h, not "${b.ttl}"`, { extra: { field: 'body/ttl' } });
    }
    const { token, record, principal: p } = await ctx.identity.issueToken(b.username, b.password, b.project, ttl);
    req.principal = p;
    req.auditTarget = record.token_id;
    reply.code(201).header('x-subject-token', token);
    return {
      token: {
        token_id: record.token_id,
        user: { id: p.user.id, name: p.user.name },
        project: { id: p.project.id, name: p.project.name },
        roles: p.roles,
        cloud_admin: p.cloudAdmin,
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        catalog: catalog(),
      },
    };
  });

  app.get('/v1/auth/tokens', {
    schema: {
      tags: ['identity'],
      summary: 'Describe a token: the one in X-Subject-Token, or the caller\'s own.',
      querystring: { type: 'object', additionalProperties: false, properties: {} },
      response: { 200: tokenView },
    },
  }, async (req) => {
    let p = principal(req);
    const subject = req.headers['x-subject-token'];
    if (typeof subject === 'string' && subject !== '') {
      const other = await ctx.identity.validate(subject).catch(() => undefined);
      if (!other || (other.user.id !== p.user.id && !p.cloudAdmin)) {
        throw new YunError('YUN_NOT_FOUND', 'The token in X-Subject-Token is unknown, expired or not yours', { hint: '' });
      }
      p = other;
    }
    return {
      token: {
        token_id: p.token.token_id, user: { id: p.user.id, name: p.user.name }, project: { id: p.project.id, name: p.project.name },
        roles: p.roles, cloud_admin: p.cloudAdmin, issued_at: p.token.issued_at, expires_at: p.token.expires_at, catalog: catalog(),
      },
    };
  });

  app.delete('/v1/auth/tokens', {
    config: { action: 'token.revoke' },
    schema: {
      tags: ['identity'],
      summary: 'Revoke a token: the one in X-Subject-Token, or the caller\'s own (log out).',
      querystring: { type: 'object', additionalProperties: false, properties: {} },
    },
  }, async (req, reply) => {
    const p = principal(req);
    const subject = req.headers['x-subject-token'];
    let hash = p.token.hash;
    if (typeof subject === 'string' && subject !== '') {
      const rec = await ctx.store.getToken(hashToken(subject));
      if (!rec || (rec.user_id !== p.user.id && !p.cloudAdmin)) {
        throw new YunError('YUN_NOT_FOUND', 'The token in X-Subject-Token is unknown, expired or not yours', { hint: '' });
      }
      hash = rec.hash;
    }
    req.auditTarget = hash.slice(0, 16);
    await ctx.store.deleteTokens({ hash });
    reply.code(204);
  });

  app.delete('/v1/auth/tokens/:id', {
    config: { action: 'token.revoke' },
    schema: {
      tags: ['identity'],
      summary: 'Revoke a token by its token_id (your own; any for a cloud administrator).',
      params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{16}$', description: 'A token_id: 16 hex characters.' } } },
      querystring: { type: 'object', additionalProperties: false, properties: {} },
    },
  }, async (req, reply) => {
    const p = principal(req);
    const { id } = req.params as { id: string };
    const n = await ctx.store.deleteTokens(p.cloudAdmin ? { token_id: id } : { token_id: id, user_id: p.user.id });
    if (n === 0) throw new YunError('YUN_NOT_FOUND', `No token with token_id ${id} that you may revoke`, { hint: '' });
    reply.code(204);
  });
}
