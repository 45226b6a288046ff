import type { FastifyReply, FastifyRequest } from 'fastify';
import { YunError } from '../errors/errors.js';
import type { Principal } from '../identity/identity.js';
import { allows, type Role } from '../identity/roles.js';
import { GLOBAL, type Filter, type ListQuery, type ListResult, type StoredObject } from '../store/store.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** Set by a handler so the audit log can name the object a call acted on. */
    auditTarget?: string;
  }
  interface FastifyContextConfig {
    /** false for routes that need no token (login, health, OpenAPI, version). */
    auth?: boolean;
    /** The audit action for mutating routes, e.g. `user.create`. */
    action?: string;
  }
}

export function principal(req: FastifyRequest): Principal {
  if (!req.principal) throw new YunError('YUN_UNAUTHENTICATED', 'This request carries no token');
  return req.principal;
}

export function requireCloudAdmin(req: FastifyRequest, what: string): Principal {
  const p = principal(req);
  if (!p.cloudAdmin) {
    throw new YunError('YUN_FORBIDDEN', `Only a cloud administrator (role admin on project "admin") may ${what}; your token holds ${p.roles.join(', ')} on project "${p.project.name}"`);
  }
  return p;
}

export function requireRole(req: FastifyRequest, role: Role, what: string): Principal {
  const p = principal(req);
  if (!allows(p.roles, role) && !p.cloudAdmin) {
    throw new YunError('YUN_FORBIDDEN', `Role ${role} is needed to ${what}; your token holds ${p.roles.join(', ')} on project "${p.project.name}"`);
  }
  return p;
}

/** The API view of a stored object: its data flattened beside the common fields. */
export function toApi(o: StoredObject, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: o.id,
    name: o.name,
    ...(o.project_id !== GLOBAL || o.kind !== 'user' ? { project_id: o.project_id === GLOBAL ? null : o.project_id } : {}),
    ...o.data,
    ...extra,
    version: o.version,
    created_at: o.created_at,
    updated_at: o.updated_at,
  };
}

/** The version a write is based on: `If-Match` (plain or quoted, W/ allowed) or the body's `version`. */
export function writeVersion(req: FastifyRequest, body?: { version?: number }, required = true): number | undefined {
  const h = req.headers['if-match'];
  if (typeof h === 'string' && h.trim() !== '' && h.trim() !== '*') {
    const v = Number(h.trim().replace(/^W\//, '').replace(/^"|"$/g, ''));
    if (!Number.isInteger(v) || v < 1) throw new YunError('YUN_BAD_REQUEST', `If-Match must be an object version (a positive integer), not "${h}"`);
    if (body?.version !== undefined && body.version !== v) {
      throw new YunError('YUN_BAD_REQUEST', `If-Match (${v}) and the body's version (${body.version}) disagree`);
    }
    return v;
  }
  if (body?.version !== undefined) return body.version;
  if (required) throw new YunError('YUN_VERSION_REQUIRED', 'This write does not say which version of the object it is based on');
  return undefined;
}

export function created(reply: FastifyReply, location: string, body: Record<string, unknown>): Record<string, unknown> {
  reply.code(201).header('location', location);
  if (typeof body.version === 'number') reply.header('etag', `"${body.version}"`);
  return body;
}

/** Query parameters every list accepts. */
export const LIST_QUERY_PROPS = {
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Page size (default 100, maximum 1000).' },
  marker: { type: 'string', maxLength: 200, description: 'Id of the last object of the previous page (use the `next` link).' },
  sort: { type: 'string', maxLength: 100, pattern: '^[A-Za-z0-9_.]+(:(asc|desc))?$', description: 'KEY or KEY:asc or KEY:desc.' },
  with_count: { type: 'boolean', default: false, description: 'Include `count`, the number of objects matching the filters.' },
} as const;

export const ALL_PROJECTS_PROP = {
  all_projects: { type: 'boolean', default: false, description: 'Cloud administrators only: list every project\'s objects.' },
  project_id: { type: 'string', maxLength: 64, description: 'Cloud administrators only: list this project\'s objects.' },
} as const;

export const LABEL_PROP = {
  label: { type: 'array', items: { type: 'string', maxLength: 300 }, description: 'KEY or KEY=VALUE; repeat to require several.' },
} as const;

export interface ListSpec {
  /** Query field → store field, e.g. { name: 'name', role: 'role', status: 'status' }. */
  filters: Record<string, string>;
  /** Sort keys the list accepts, mapped to store fields. */
  sortKeys: Record<string, string>;
  defaultSort?: string;
  labels?: boolean;
}

export function listQuerySchema(spec: ListSpec, opts: { projectScoped: boolean }): Record<string, unknown> {
  const props: Record<string, unknown> = { ...LIST_QUERY_PROPS };
  for (const f of Object.keys(spec.filters)) props[f] = { type: 'string', maxLength: 300, description: `Only objects whose ${f} equals this.` };
  if (spec.labels) Object.assign(props, LABEL_PROP);
  if (opts.projectScoped) Object.assign(props, ALL_PROJECTS_PROP);
  return { type: 'object', additionalProperties: false, properties: props };
}

export interface ListQueryInput {
  limit: number;
  marker?: string;
  sort?: string;
  with_count?: boolean;
  all_projects?: boolean;
  project_id?: string;
  label?: string[];
  [k: string]: unknown;
}

/** Turn validated query parameters into a store query. */
export function buildListQuery(q: ListQueryInput, spec: ListSpec, projects: string[] | undefined): ListQuery {
  const filters: Filter[] = [];
  for (const [qf, sf] of Object.entries(spec.filters)) {
    const v = q[qf];
    if (typeof v === 'string') filters.push({ field: sf, op: 'eq', value: v });
  }
  for (const l of q.label ?? []) {
    const i = l.indexOf('=');
    const key = i < 0 ? l : l.slice(0, i);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}$/.test(key)) {
      throw new YunError('YUN_BAD_FILTER', `"${key}" is not a valid label key (letters, digits, and . _ - / are allowed)`);
    }
    filters.push(i < 0 ? { field: `labels.${key}`, op: 'exists' } : { field: `labels.${key}`, op: 'eq', value: l.slice(i + 1) });
  }
  let sort: ListQuery['sort'];
  const sortText = q.sort ?? spec.defaultSort;
  if (sortText) {
    const [key, dir = 'asc'] = sortText.split(':') as [string, string?];
    const field = spec.sortKeys[key];
    if (!field) {
      throw new YunError('YUN_BAD_SORT', `This list cannot be sorted by "${key}"; it can be sorted by ${Object.keys(spec.sortKeys).join(', ')}`);
    }
    sort = { key: field, dir: dir === 'desc' ? 'desc' : 'asc' };
  }
  return { projects, limit: q.limit, marker: q.marker, sort, filters, withCount: q.with_count === true };
}

/** Which projects a list may show: the token's own; every project (or one) for a cloud admin who asks. */
export function listProjects(req: FastifyRequest, q: { all_projects?: boolean; project_id?: string }): string[] | undefined {
  const p = principal(req);
  if (q.all_projects || q.project_id) {
    if (!p.cloudAdmin) {
      throw new YunError('YUN_FORBIDDEN', `Only a cloud administrator may list other projects' objects (${q.all_projects ? 'all_projects' : 'project_id'})`);
    }
    return q.all_projects ? undefined : [q.project_id!];
  }
  return [p.project.id];
}

/** The `next` link: the same request with the marker moved on. Relative, so it works behind any proxy. */
export function nextLink(req: FastifyRequest, marker: string | number | undefined): string | null {
  if (marker === undefined) return null;
  const u = new URL(req.url, 'http://x');
  u.searchParams.set('marker', String(marker));
  return `${u.pathname}?${u.searchParams.toString()}`;
}

export function listBody(req: FastifyRequest, r: ListResult<Record<string, unknown>>, view: (o: StoredObject) => Record<string, unknown>): Record<string, unknown> {
  return {
    items: r.items.map(view),
    next: nextLink(req, r.nextMarker),
    ...(r.count !== undefined ? { count: r.count } : {}),
    revision: r.revision,
  };
}

/** Look up an object in a project by id or name; another project's object is a 404. */
export async function findInProjects(
  store: { get: (k: string, id: string) => Promise<StoredObject | undefined>; getByName: (k: string, p: string, n: string) => Promise<StoredObject | undefined> },
  kind: string,
  ref: string,
  projects: string[],
): Promise<StoredObject | undefined> {
  const byId = await store.get(kind, ref);
  if (byId && projects.includes(byId.project_id)) return byId;
  for (const p of projects) {
    const byName = await store.getByName(kind, p, ref);
    if (byName) return byName;
  }
  return undefined;
}

/** Common response schema for a list. */
export function listResponseSchema(item: Record<string, unknown>): Record<string, unknown> {
  return {
    type: 'object',
    properties: {
      items: { type: 'array', items: item },
      next: { type: ['string', 'null'] },
      count: { type: 'integer' },
      revision: { type: 'integer' },
    },
  };
}

export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        title: { type: 'string' },
        detail: { type: 'string' },
        request_id: { type: 'string' },
      },
      required: ['code', 'title', 'detail', 'request_id'],
      additionalProperties: true,
    },
  },
} as const;

export const idParams = {
  type: 'object',
  additionalProperties: false,
  properties: { id: { type: 'string', minLength: 1, maxLength: 200, description: 'Id or name.' } },
  required: ['id'],
} as const;

export const commonMeta = {
  id: { type: 'string' },
  name: { type: 'string' },
  project_id: { type: ['string', 'null'] },
  version: { type: 'integer' },
  created_at: { type: 'string', format: 'date-time' },
  updated_at: { type: 'string', format: 'date-time' },
} as const;

