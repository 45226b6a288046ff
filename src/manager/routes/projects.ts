import { nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import { ADMIN_PROJECT, type Principal } from '../../identity/identity.js';
import { ROLES, ROLE_DESCRIPTIONS, allows, impliedRoles, isRole } from '../../identity/roles.js';
import { GLOBAL, type StoredObject } from '../../store/store.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, created, idParams, listBody, listQuerySchema, listResponseSchema, principal, requireCloudAdmin, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';
import { DEFAULT_QUOTAS, QUOTA_KEYS, QUOTA_UNITS, projectQuotas, projectUsage, type QuotaKey } from '../quotas.js';

const spec: ListSpec = {
  filters: { name: 'name', enabled: 'enabled' },
  sortKeys: { name: 'name', created_at: 'created_at', updated_at: 'updated_at', id: 'id' },
  defaultSort: 'name',
};

const projectSchema = {
  type: 'object',
  properties: { ...commonMeta, description: { type: 'string' }, enabled: { type: 'boolean' }, quotas: { type: 'object', additionalProperties: { type: 'number' } } },
} as const;

const quotaLimitSchema = { type: 'number', minimum: -1, description: 'A limit; -1 for unlimited.' } as const;
const quotaBody = Object.fromEntries(QUOTA_KEYS.map((k) => [k, quotaLimitSchema]));
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

function view(o: StoredObject): Record<string, unknown> {
  const { project_id: _p, ...rest } = toApi(o, { quotas: projectQuotas(o) });
  return rest;
}

/** Projects the principal may see: all for a cloud admin, else those they hold a role on. */
async function visibleProjectIds(ctx: Pick<ManagerContext, 'store'>, p: Principal): Promise<string[] | undefined> {
  if (p.cloudAdmin) return undefined;
  const a = await ctx.store.list('role_assignment', { limit: 1000, filters: [{ field: 'name', op: 'eq', value: p.user.id }] });
  return a.items.map((x) => x.project_id);
}

export function projectRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'identity' | 'store'>): void {
  const findVisible = async (req: FastifyRequest, ref: string): Promise<StoredObject> => {
    const p = principal(req);
    const proj = await ctx.identity.findProject(ref);
    if (!proj) throw notFound('project', ref);
    if (!p.cloudAdmin) {
      const roles = await ctx.identity.rolesOn(p.user.id, proj.id);
      if (roles.length === 0) throw notFound('project', ref);
    }
    return proj;
  };

  /** Managing a project's members: a cloud admin, or an admin of that very project. */
  const requireProjectAdmin = async (req: FastifyRequest, proj: StoredObject, what: string): Promise<Principal> => {
    const p = principal(req);
    if (p.cloudAdmin) return p;
    if (p.project.id === proj.id && allows(p.roles, 'admin')) return p;
    // Another project's existence is not revealed: without a role on it, it is not found.
    if ((await ctx.identity.rolesOn(p.user.id, proj.id)).length === 0) throw notFound('project', proj.name);
    throw new YunError('YUN_FORBIDDEN', `Only a cloud administrator or an admin of project "${proj.name}" may ${what}; your token holds ${p.roles.join(', ')} on project "${p.project.name}"`);
  };

  app.get('/v1/projects', {
    schema: { tags: ['identity'], summary: 'List projects (all for a cloud administrator; otherwise those you hold a role on).', querystring: listQuerySchema(spec, { projectScoped: false }), response: { 200: listResponseSchema(projectSchema) } },
  }, async (req) => {
    const ids = await visibleProjectIds(ctx, principal(req));
    const q = buildListQuery(req.query as ListQueryInput, spec, undefined);
    if (ids) q.filters = [...(q.filters ?? []), { field: 'id', op: 'in', value: ids }];
    return listBody(req, await ctx.store.list('project', q), view);
  });

  app.post('/v1/projects', {
    config: { action: 'project.create' },
    schema: {
      tags: ['identity'], summary: 'Create a project (cloud administrators).', querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['name'],
        properties: {
          name: nameSchema,
          description: { type: 'string', maxLength: 1000, default: '' },
          enabled: { type: 'boolean', default: true },
          quotas: { type: 'object', additionalProperties: false, properties: quotaBody },
        },
      },
      response: { 201: projectSchema },
    },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'create projects');
    const b = req.body as { name: string; description: string; enabled: boolean; quotas?: Partial<Record<QuotaKey, number>> };
    const proj = await ctx.store.create({ kind: 'project', project_id: GLOBAL, name: b.name, data: { description: b.description, enabled: b.enabled, quotas: { ...DEFAULT_QUOTAS, ...(b.quotas ?? {}) } } });
    req.auditTarget = proj.id;
    return created(reply, `/v1/projects/${proj.id}`, view(proj));
  });

  app.get('/v1/projects/:id', {
    schema: { tags: ['identity'], summary: 'Show a project.', params: idParams, querystring: noQuery, response: { 200: projectSchema } },
  }, async (req, reply) => {
    const proj = await findVisible(req, (req.params as { id: string }).id);
    reply.header('etag', `"${proj.version}"`);
    return view(proj);
  });

  app.patch('/v1/projects/:id', {
    config: { action: 'project.update' },
    schema: {
      tags: ['identity'], summary: 'Change a project (cloud administrators).', params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, properties: { version: { type: 'integer', minimum: 1 }, description: { type: 'string', maxLength: 1000 }, enabled: { type: 'boolean' } } },
      response: { 200: projectSchema },
    },
  }, async (req) => {
    requireCloudAdmin(req, 'change projects');
    const proj = await findVisible(req, (req.params as { id: string }).id);
    const b = req.body as { version?: number; description?: string; enabled?: boolean };
    const version = writeVersion(req, b);
    if (proj.name === ADMIN_PROJECT && b.enabled === false) throw new YunError('YUN_FORBIDDEN', 'The admin project cannot be disabled', { hint: '' });
    const data = { ...proj.data };
    if (b.description !== undefined) data.description = b.description;
    if (b.enabled !== undefined) data.enabled = b.enabled;
    return view(await ctx.store.update({ kind: 'project', id: proj.id, version, data }));
  });

  app.delete('/v1/projects/:id', {
    config: { action: 'project.delete' },
    schema: { tags: ['identity'], summary: 'Remove an empty project (cloud administrators).', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'remove projects');
    const proj = await findVisible(req, (req.params as { id: string }).id);
    req.auditTarget = proj.id;
    if (proj.name === ADMIN_PROJECT) throw new YunError('YUN_FORBIDDEN', 'The admin project cannot be removed', { hint: '' });
    // A project goes only when nothing of it is left (its servers would run on, orphaned).
    const left: string[] = [];
    for (const [kind, label] of [['service', 'service'], ['server', 'server'], ['network', 'network'], ['image', 'image'], ['keypair', 'key pair']] as const) {
      const n = (await ctx.store.list(kind, { limit: 1, projects: [proj.id], withCount: true })).count ?? 0;
      if (n > 0) left.push(`${n} ${label}${n === 1 ? '' : 's'}`);
    }
    if (left.length) {
      throw new YunError('YUN_IN_USE', `Project "${proj.name}" still has ${left.join(', ')}`, { hint: 'Remove them first (list them as an administrator with `yun server ls --all-projects`, `yun service ls`, … `--project-id ID`).' });
    }
    const version = writeVersion(req, undefined, false);
    const assignments = await ctx.store.list('role_assignment', { limit: 1000, projects: [proj.id] });
    await ctx.store.batch([
      ...assignments.items.map((a) => ({ op: 'delete' as const, kind: 'role_assignment', id: a.id })),
      { op: 'delete', kind: 'project', id: proj.id, version },
    ]);
    await ctx.store.deleteTokens({ project_id: proj.id });
    reply.code(204);
  });

  // ---- roles -------------------------------------------------------------------------------

  app.get('/v1/roles', {
    schema: { tags: ['identity'], summary: 'The built-in roles (admin ⊃ member ⊃ reader).', querystring: noQuery },
  }, async () => ({ items: ROLES.map((r) => ({ name: r, description: ROLE_DESCRIPTIONS[r], implies: impliedRoles([r]).filter((x) => x !== r) })).reverse(), next: null }));

  app.get('/v1/projects/:id/members', {
    schema: { tags: ['identity'], summary: 'Users holding a role on a project.', params: idParams, querystring: noQuery },
  }, async (req) => {
    const proj = await findVisible(req, (req.params as { id: string }).id);
    const a = await ctx.store.list('role_assignment', { limit: 1000, projects: [proj.id], sort: { key: 'name', dir: 'asc' } });
    const items = [];
    for (const x of a.items) {
      const u = await ctx.store.get('user', x.name);
      items.push({ user_id: x.name, user_name: u?.name ?? null, project_id: proj.id, project_name: proj.name, roles: x.data.roles });
    }
    return { items, next: null };
  });

  const roleParams = {
    type: 'object', additionalProperties: false, required: ['id', 'user', 'role'],
    properties: { id: { type: 'string', maxLength: 200 }, user: { type: 'string', maxLength: 200 }, role: { type: 'string', enum: [...ROLES] } },
  } as const;

  app.put('/v1/projects/:id/members/:user/roles/:role', {
    config: { action: 'role.add' },
    schema: { tags: ['identity'], summary: 'Grant a role on a project to a user (idempotent).', params: roleParams, querystring: noQuery },
  }, async (req, reply) => {
    const { id, user, role } = req.params as { id: string; user: string; role: string };
    const proj = await ctx.identity.findProject(id);
    if (!proj) throw notFound('project', id);
    await requireProjectAdmin(req, proj, 'grant roles on it');
    const u = await ctx.identity.findUser(user);
    if (!u) throw notFound('user', user);
    if (!isRole(role)) throw new YunError('YUN_VALIDATION_FAILED', `Unknown role "${role}"; roles are ${ROLES.join(', ')}`);
    req.auditTarget = `${u.id}/${proj.id}/${role}`;
    for (let attempt = 0; ; attempt++) {
      const existing = await ctx.store.getByName('role_assignment', proj.id, u.id);
      try {
        if (!existing) await ctx.store.create({ kind: 'role_assignment', project_id: proj.id, name: u.id, data: { roles: [role] } });
        else {
          const roles = new Set(existing.data.roles as string[]);
          if (!roles.has(role)) await ctx.store.update({ kind: 'role_assignment', id: existing.id, version: existing.version, data: { roles: [...roles, role] } });
        }
        break;
      } catch (e) {
        if (attempt < 3 && e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NAME_CONFLICT')) continue;
        throw e;
      }
    }
    reply.code(204);
  });

  app.delete('/v1/projects/:id/members/:user/roles/:role', {
    config: { action: 'role.remove' },
    schema: { tags: ['identity'], summary: 'Take a role on a project away from a user.', params: roleParams, querystring: noQuery },
  }, async (req, reply) => {
    const { id, user, role } = req.params as { id: string; user: string; role: string };
    const proj = await ctx.identity.findProject(id);
    if (!proj) throw notFound('project', id);
    const p = await requireProjectAdmin(req, proj, 'take roles away on it');
    const u = await ctx.identity.findUser(user);
    if (!u) throw notFound('user', user);
    req.auditTarget = `${u.id}/${proj.id}/${role}`;
    const existing = await ctx.store.getByName('role_assignment', proj.id, u.id);
    const roles = ((existing?.data.roles as string[] | undefined) ?? []);
    if (!existing || !roles.includes(role)) {
      throw new YunError('YUN_NOT_FOUND', `User "${u.name}" does not hold role ${role} directly on project "${proj.name}"`, { hint: `See the project's members with \`yun role ls --project ${proj.name}\`.` });
    }
    if (proj.name === ADMIN_PROJECT && role === 'admin' && u.id === p.user.id) {
      throw new YunError('YUN_FORBIDDEN', 'You cannot remove your own admin role on the admin project: the cloud could be left without an administrator', { hint: 'Log in as another cloud administrator to do it.' });
    }
    const rest = roles.filter((r) => r !== role);
    if (rest.length === 0) await ctx.store.delete({ kind: 'role_assignment', id: existing.id, version: existing.version });
    else await ctx.store.update({ kind: 'role_assignment', id: existing.id, version: existing.version, data: { roles: rest } });
    reply.code(204);
  });

  // ---- quotas ------------------------------------------------------------------------------

  const quotaView = async (proj: StoredObject) => {
    const limits = projectQuotas(proj);
    const used = await projectUsage(ctx.store, proj.id);
    return {
      project_id: proj.id,
      project_name: proj.name,
      version: proj.version,
      quotas: Object.fromEntries(QUOTA_KEYS.map((k) => [k, { limit: limits[k], in_use: used[k], unit: QUOTA_UNITS[k] }])),
    };
  };

  app.get('/v1/projects/:id/quotas', {
    schema: { tags: ['identity'], summary: 'A project\'s quotas with their usage.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    const proj = await findVisible(req, (req.params as { id: string }).id);
    reply.header('etag', `"${proj.version}"`);
    return quotaView(proj);
  });

  app.patch('/v1/projects/:id/quotas', {
    config: { action: 'quota.set' },
    schema: {
      tags: ['identity'], summary: 'Set a project\'s quotas (cloud administrators). -1 means unlimited.', params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, properties: { version: { type: 'integer', minimum: 1 }, ...quotaBody } },
    },
  }, async (req) => {
    requireCloudAdmin(req, 'set quotas');
    const proj = await findVisible(req, (req.params as { id: string }).id);
    const b = req.body as { version?: number } & Partial<Record<QuotaKey, number>>;
    const version = writeVersion(req, b);
    const quotas = { ...projectQuotas(proj) };
    for (const k of QUOTA_KEYS) if (b[k] !== undefined) quotas[k] = b[k]!;
    const updated = await ctx.store.update({ kind: 'project', id: proj.id, version, data: { ...proj.data, quotas } });
    return quotaView(updated);
  });
}
