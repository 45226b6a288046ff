import { nameSchema } from '../../util/schemas.js';
import type { FastifyInstance } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import { PASSWORD_KEY } from '../../identity/identity.js';
import { GLOBAL, type StoredObject } from '../../store/store.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, created, idParams, listBody, listQuerySchema, listResponseSchema, principal, requireCloudAdmin, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';

const spec: ListSpec = {
  filters: { name: 'name', enabled: 'enabled' },
  sortKeys: { name: 'name', created_at: 'created_at', updated_at: 'updated_at', id: 'id' },
  defaultSort: 'name',
};

const userSchema = {
  type: 'object',
  properties: { ...commonMeta, email: { type: ['string', 'null'] }, enabled: { type: 'boolean' }, default_project_id: { type: ['string', 'null'] } },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

function view(o: StoredObject): Record<string, unknown> {
  const { project_id: _p, ...rest } = toApi(o);
  return rest;
}

export function userRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'identity' | 'store'>): void {
  const find = async (ref: string) => ctx.identity.findUser(ref);

  app.get('/v1/users', {
    schema: { tags: ['identity'], summary: 'List users (a cloud administrator sees all; others see themselves).', querystring: listQuerySchema(spec, { projectScoped: false }), response: { 200: listResponseSchema(userSchema) } },
  }, async (req) => {
    const p = principal(req);
    const q = buildListQuery(req.query as ListQueryInput, spec, undefined);
    if (!p.cloudAdmin) q.filters = [...(q.filters ?? []), { field: 'id', op: 'eq', value: p.user.id }];
    return listBody(req, await ctx.store.list('user', q), view);
  });

  app.post('/v1/users', {
    config: { action: 'user.create' },
    schema: {
      tags: ['identity'], summary: 'Create a user (cloud administrators).',
      querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['name', 'password'],
        properties: {
          name: nameSchema,
          password: { type: 'string', minLength: 8, maxLength: 1000, description: 'At least 8 characters.' },
          email: { type: 'string', maxLength: 300, format: 'email' },
          enabled: { type: 'boolean', default: true },
          default_project: { type: 'string', maxLength: 200, description: 'Project name or id used when logging in without naming one.' },
        },
      },
      response: { 201: userSchema },
    },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'create users');
    const b = req.body as { name: string; password: string; email?: string; enabled: boolean; default_project?: string };
    let defaultProject: string | null = null;
    if (b.default_project) {
      const proj = await ctx.identity.findProject(b.default_project);
      if (!proj) throw notFound('project', b.default_project);
      defaultProject = proj.id;
    }
    // Hash first: nothing is created if anything fails before the write.
    const { hashPassword } = await import('../../identity/passwords.js');
    const hash = await hashPassword(b.password);
    const user = await ctx.store.create({ kind: 'user', project_id: GLOBAL, name: b.name, data: { email: b.email ?? null, enabled: b.enabled, default_project_id: defaultProject } });
    await ctx.store.putSecret(PASSWORD_KEY(user.id), hash);
    req.auditTarget = user.id;
    return created(reply, `/v1/users/${user.id}`, view(user));
  });

  app.get('/v1/users/:id', {
    schema: { tags: ['identity'], summary: 'Show a user.', params: idParams, querystring: noQuery, response: { 200: userSchema } },
  }, async (req, reply) => {
    const p = principal(req);
    const { id } = req.params as { id: string };
    const u = await find(id);
    if (!u || (!p.cloudAdmin && u.id !== p.user.id)) throw notFound('user', id);
    reply.header('etag', `"${u.version}"`);
    return view(u);
  });

  app.patch('/v1/users/:id', {
    config: { action: 'user.update' },
    schema: {
      tags: ['identity'], summary: 'Change a user (cloud administrators; anyone may change their own password).',
      params: idParams, querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false,
        properties: {
          version: { type: 'integer', minimum: 1 },
          email: { type: ['string', 'null'], maxLength: 300 },
          enabled: { type: 'boolean' },
          password: { type: 'string', minLength: 8, maxLength: 1000 },
          default_project: { type: ['string', 'null'], maxLength: 200 },
        },
      },
      response: { 200: userSchema },
    },
  }, async (req) => {
    const p = principal(req);
    const { id } = req.params as { id: string };
    const b = req.body as { version?: number; email?: string | null; enabled?: boolean; password?: string; default_project?: string | null };
    const u = await find(id);
    if (!u || (!p.cloudAdmin && u.id !== p.user.id)) throw notFound('user', id);
    const onlyPassword = Object.keys(b).every((k) => k === 'password' || k === 'version');
    if (!p.cloudAdmin && !onlyPassword) requireCloudAdmin(req, 'change users other than your own password');
    const version = writeVersion(req, b);
    if (b.enabled === false && u.id === p.user.id) throw new YunError('YUN_FORBIDDEN', 'You cannot disable yourself', { hint: 'Ask another cloud administrator.' });
    const data = { ...u.data };
    if (b.email !== undefined) data.email = b.email;
    if (b.enabled !== undefined) data.enabled = b.enabled;
    if (b.default_project !== undefined) {
      if (b.default_project === null) data.default_project_id = null;
      else {
        const proj = await ctx.identity.findProject(b.default_project);
        if (!proj) throw notFound('project', b.default_project);
        data.default_project_id = proj.id;
      }
    }
    const updated = await ctx.store.update({ kind: 'user', id: u.id, version, data });
    if (b.password !== undefined) await ctx.identity.setPassword(u.id, b.password);
    if (b.enabled === false || b.password !== undefined) {
      // A disabled user, or one whose password changed, keeps no old sessions (but keeps this one).
      for (const t of await ctx.store.listTokens(u.id)) if (t.hash !== p.token.hash) await ctx.store.deleteTokens({ hash: t.hash });
    }
    return view(updated);
  });

  app.delete('/v1/users/:id', {
    config: { action: 'user.delete' },
    schema: { tags: ['identity'], summary: 'Remove a user, their role assignments and their tokens (cloud administrators).', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    const p = requireCloudAdmin(req, 'remove users');
    const { id } = req.params as { id: string };
    const u = await find(id);
    if (!u) throw notFound('user', id);
    if (u.id === p.user.id) throw new YunError('YUN_FORBIDDEN', 'You cannot remove yourself', { hint: 'Log in as another cloud administrator to do it.' });
    req.auditTarget = u.id;
    const version = writeVersion(req, undefined, false);
    const assignments = await ctx.store.list('role_assignment', { limit: 1000, filters: [{ field: 'name', op: 'eq', value: u.id }] });
    await ctx.store.batch([
      ...assignments.items.map((a) => ({ op: 'delete' as const, kind: 'role_assignment', id: a.id })),
      { op: 'delete', kind: 'user', id: u.id, version },
    ]);
    await ctx.store.deleteSecret(PASSWORD_KEY(u.id));
    await ctx.store.deleteTokens({ user_id: u.id });
    reply.code(204);
  });
}
