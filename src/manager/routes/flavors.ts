import type { FastifyInstance, FastifyRequest } from 'fastify';
import { listAll } from '../../store/paging.js';
import { YunError, notFound } from '../../errors/errors.js';
import { GLOBAL, type StoredObject, type Store } from '../../store/store.js';
import { flavorAllowed, type FlavorData } from '../../servers/flavor.js';
import type { ManagerContext } from '../context.js';
import {
  buildListQuery, commonMeta, created, idParams, listBody, listQuerySchema, listResponseSchema, principal, requireCloudAdmin,
  toApi, writeVersion, type ListQueryInput, type ListSpec,
} from '../http.js';

const spec: ListSpec = {
  filters: { name: 'name', id: 'id' },
  sortKeys: { name: 'name', vcpus: 'vcpus', ram_mb: 'ram_mb', disk_gb: 'disk_gb', created_at: 'created_at', id: 'id' },
  defaultSort: 'ram_mb',
};

const flavorSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    vcpus: { type: 'integer' }, ram_mb: { type: 'integer' }, disk_gb: { type: 'integer' }, ephemeral_gb: { type: 'integer' }, swap_mb: { type: 'integer' },
    is_public: { type: 'boolean' }, projects: { type: 'array', items: { type: 'string' } }, description: { type: 'string' },
    properties: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const propsSchema = { type: 'object', maxProperties: 50, additionalProperties: { type: 'string', maxLength: 255 }, propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,99}$' } } as const;

const createBody = {
  type: 'object', additionalProperties: false, required: ['name', 'vcpus', 'ram_mb'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', description: 'Letters, digits, `_`, `.`, `-`.' },
    id: { type: 'string', minLength: 1, maxLength: 36, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', description: 'An id of your choosing (like Nova\'s flavor ids `1`…`5`); default: a new one.' },
    vcpus: { type: 'integer', minimum: 1, maximum: 1024 },
    ram_mb: { type: 'integer', minimum: 16, maximum: 16 * 1024 * 1024, description: 'RAM in MiB.' },
    disk_gb: { type: 'integer', minimum: 0, maximum: 1024 * 1024, default: 0, description: 'Root disk in GiB; 0 uses the image\'s size.' },
    ephemeral_gb: { type: 'integer', minimum: 0, maximum: 1024 * 1024, default: 0 },
    swap_mb: { type: 'integer', minimum: 0, maximum: 1024 * 1024, default: 0 },
    is_public: { type: 'boolean', default: true, description: 'Private flavors are usable only by the projects in `projects`.' },
    projects: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 64 }, default: [], description: 'Projects (ids or names) that may use a private flavor.' },
    description: { type: 'string', maxLength: 1000, default: '' },
    properties: { ...propsSchema, description: 'Extra specs, e.g. `hw:accel=kvm` (only on nodes where KVM works).' },
  },
} as const;

/**
 * A flavor by id or name, if the caller's project may use it (another project's private flavor is
 * as absent): a 404, or, for a flavor named in a request body (`field`), a 400 on that field.
 */
export async function findFlavor(ctx: { store: Store }, req: FastifyRequest, ref: string, field?: string): Promise<StoredObject> {
  const p = principal(req);
  const f = (await ctx.store.get('flavor', ref)) ?? (await ctx.store.getByName('flavor', GLOBAL, ref));
  if (!f || (!p.cloudAdmin && !flavorAllowed(f.data as FlavorData, p.project.id))) {
    const detail = `No flavor "${ref}" exists that project "${p.project.name}" may use`;
    const hint = 'List the flavors you can use with `yun flavor ls`.';
    if (field) throw new YunError('YUN_VALIDATION_FAILED', detail, { hint, extra: { field } });
    throw new YunError('YUN_NOT_FOUND', detail, { hint, extra: { kind: 'flavor' } });
  }
  return f;
}

export function flavorRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store'>): void {
  const view = (o: StoredObject) => {
    const { project_id: _p, ...rest } = toApi(o);
    return rest;
  };

  const projectIds = async (refs: string[]) => {
    const out: string[] = [];
    for (const r of refs) {
      const proj = (await ctx.store.get('project', r)) ?? (await ctx.store.getByName('project', GLOBAL, r));
      if (!proj || proj.kind !== 'project') throw new YunError('YUN_VALIDATION_FAILED', `No project "${r}" exists`, { extra: { field: 'body/projects' }, hint: 'List projects with `yun project ls`.' });
      if (!out.includes(proj.id)) out.push(proj.id);
    }
    return out;
  };

  app.get('/v1/flavors', {
    schema: { tags: ['servers'], summary: 'List the flavors your project may use (cloud administrators: all), smallest first.', querystring: listQuerySchema(spec, { projectScoped: false }), response: { 200: listResponseSchema(flavorSchema) } },
  }, async (req) => {
    const p = principal(req);
    const q = req.query as ListQueryInput;
    const query = buildListQuery(q, spec, undefined);
    if (p.cloudAdmin) return listBody(req, await ctx.store.list('flavor', query), view);
    // Flavors are few: filter access in memory, page after it.
    const all = (await listAll(ctx.store, 'flavor', { sort: query.sort, filters: query.filters })).filter((f) => flavorAllowed(f.data as FlavorData, p.project.id));
    const start = q.marker ? all.findIndex((f) => f.id === q.marker) + 1 : 0;
    if (q.marker && start === 0) throw new YunError('YUN_BAD_MARKER', `The marker "${q.marker}" is not a flavor of this list`);
    const page = all.slice(start, start + q.limit);
    const next = start + q.limit < all.length ? page[page.length - 1]!.id : undefined;
    return listBody(req, { items: page, nextMarker: next, ...(q.with_count ? { count: all.length } : {}), revision: await ctx.store.revision() }, view);
  });

  app.get('/v1/flavors/:id', {
    schema: { tags: ['servers'], summary: 'Show a flavor (by id or name).', params: idParams, querystring: noQuery, response: { 200: flavorSchema } },
  }, async (req, reply) => {
    const f = await findFlavor(ctx, req, (req.params as { id: string }).id);
    reply.header('etag', `"${f.version}"`);
    return view(f);
  });

  app.post('/v1/flavors', {
    config: { action: 'flavor.create' },
    schema: { tags: ['servers'], summary: 'Create a flavor (cloud administrators).', querystring: noQuery, body: createBody, response: { 201: flavorSchema } },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'create flavors');
    const b = req.body as { name: string; id?: string; vcpus: number; ram_mb: number; disk_gb: number; ephemeral_gb: number; swap_mb: number; is_public: boolean; projects: string[]; description: string; properties?: Record<string, string> };
    if (await ctx.store.getByName('flavor', GLOBAL, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A flavor named "${b.name}" already exists`, { hint: 'Choose another name, or remove the existing flavor first (`yun flavor rm`).' });
    if (b.id && (await ctx.store.get('flavor', b.id))) throw new YunError('YUN_NAME_CONFLICT', `A flavor with id "${b.id}" already exists`, { hint: 'Choose another id, or leave it out to get a new one.' });
    if (b.is_public && b.projects.length) throw new YunError('YUN_VALIDATION_FAILED', 'A public flavor has no project list: every project may use it', { extra: { field: 'body/projects' }, hint: 'Add --private to restrict it to these projects.' });
    const data: FlavorData = {
      vcpus: b.vcpus, ram_mb: b.ram_mb, disk_gb: b.disk_gb, ephemeral_gb: b.ephemeral_gb, swap_mb: b.swap_mb,
      is_public: b.is_public, projects: await projectIds(b.projects), description: b.description, properties: b.properties ?? {},
    };
    const f = await ctx.store.create({ kind: 'flavor', ...(b.id ? { id: b.id } : {}), project_id: GLOBAL, name: b.name, data });
    req.auditTarget = f.id;
    return created(reply, `/v1/flavors/${f.id}`, view(f));
  });

  app.patch('/v1/flavors/:id', {
    config: { action: 'flavor.update' },
    schema: {
      tags: ['servers'], summary: 'Change a flavor\'s access, description or properties (cloud administrators); its sizes never change (servers keep what they were built with).',
      params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, properties: { version: { type: 'integer', minimum: 1 }, is_public: { type: 'boolean' }, projects: createBody.properties.projects, description: createBody.properties.description, properties: propsSchema } },
      response: { 200: flavorSchema },
    },
  }, async (req) => {
    requireCloudAdmin(req, 'change flavors');
    const f = await findFlavor(ctx, req, (req.params as { id: string }).id);
    req.auditTarget = f.id;
    const b = req.body as { version?: number; is_public?: boolean; projects?: string[]; description?: string; properties?: Record<string, string> };
    const d = f.data as FlavorData;
    const next: FlavorData = {
      ...d,
      ...(b.is_public !== undefined ? { is_public: b.is_public } : {}),
      ...(b.projects !== undefined ? { projects: await projectIds(b.projects) } : {}),
      ...(b.description !== undefined ? { description: b.description } : {}),
      ...(b.properties !== undefined ? { properties: b.properties } : {}),
    };
    if (next.is_public) next.projects = [];
    return view(await ctx.store.update({ kind: 'flavor', id: f.id, version: writeVersion(req, b), data: next }));
  });

  app.delete('/v1/flavors/:id', {
    config: { action: 'flavor.delete' },
    schema: { tags: ['servers'], summary: 'Remove a flavor (cloud administrators); servers built with it keep their sizes.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireCloudAdmin(req, 'remove flavors');
    const ref = (req.params as { id: string }).id;
    const f = (await ctx.store.get('flavor', ref)) ?? (await ctx.store.getByName('flavor', GLOBAL, ref));
    if (!f || f.kind !== 'flavor') throw notFound('flavor', ref);
    req.auditTarget = f.id;
    await ctx.store.delete({ kind: 'flavor', id: f.id, version: writeVersion(req, undefined, false) });
    reply.code(204);
  });
}
