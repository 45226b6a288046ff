import { labelsSchema, nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { listAll } from '../../store/paging.js';
import { newId } from '../../util/ids.js';
import type { Keyring } from '../../secrets/keyring.js';
import { MAX_BLOB_BYTES, sealAad, type BlobData, type BlobKind } from '../../secrets/secret.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, created, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema, principal, requireCloudAdmin, requireRole, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';

const spec: ListSpec = { filters: { name: 'name' }, sortKeys: { name: 'name', created_at: 'created_at', id: 'id' }, defaultSort: 'name' };
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

/** What an API answer shows of a secret or config: never a secret's content or its seal. */
function view(o: StoredObject) {
  const { sealed: _s, ...data } = o.data as unknown as BlobData;
  return toApi({ ...o, data: data as unknown as Record<string, unknown> });
}

/**
 * `/v1/secrets` and `/v1/configs`: create (content as base64), list, show, remove. A secret's
 * content is sealed with the keyring before it reaches the store and no answer returns it; a
 * config's content is shown by GET. Per project; names unique in the project.
 */
export function blobRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store'> & { keyring: Keyring }, k: BlobKind): void {
  const schema = { type: 'object', properties: { ...commonMeta, size: { type: 'integer' }, labels: { type: 'object', additionalProperties: { type: 'string' } }, ...(k.sealed ? {} : { data: { type: 'string' } }) } } as const;
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const o = (p.cloudAdmin ? await ctx.store.get(k.kind, ref) : undefined) ?? (await findInProjects(ctx.store, k.kind, ref, [p.project.id]));
    if (!o) throw notFound(k.kind, ref);
    return o;
  };

  app.post(`/v1/${k.collection}`, {
    config: { action: `${k.kind}.create` },
    schema: {
      tags: [k.collection], summary: k.sealed ? 'Create a secret: its content is sealed (AES-256-GCM) and never returned.' : 'Create a config.', querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['name', 'data'], properties: { name: nameSchema, data: { type: 'string', description: 'The content, base64.' }, labels: labelsSchema } },
      response: { 201: schema },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', `create ${k.collection}`);
    const b = req.body as { name: string; data: string; labels?: Record<string, string> };
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b.data) || b.data.length % 4 !== 0) throw new YunError('YUN_VALIDATION_FAILED', `The data of ${k.kind} "${b.name}" is not base64`, { extra: { field: 'body/data' }, hint: 'Send the content base64-encoded (the CLI does this for you).' });
    const content = Buffer.from(b.data, 'base64');
    if (content.length === 0) throw new YunError('YUN_VALIDATION_FAILED', `${k.kind === 'secret' ? 'A secret' : 'A config'} cannot be empty`, { extra: { field: 'body/data' }, hint: 'Give a file (or standard input) with the content.' });
    if (content.length > MAX_BLOB_BYTES) throw new YunError('YUN_VALIDATION_FAILED', `${k.kind} "${b.name}" is ${content.length} bytes; the most is ${MAX_BLOB_BYTES} (500 KiB)`, { extra: { field: 'body/data' }, hint: 'Keep large files in a volume or an image.' });
    if (await ctx.store.getByName(k.kind, p.project.id, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A ${k.kind} named "${b.name}" already exists in project "${p.project.name}"`, { hint: `${k.kind === 'secret' ? 'Secrets' : 'Configs'} cannot change: create one with a new name (e.g. ${b.name}-v2) and move services to it.` });
    const id = newId();
    const data: BlobData = { size: content.length, labels: b.labels ?? {}, ...(k.sealed ? { sealed: ctx.keyring.seal(content, sealAad(k.kind, id)) } : { data: b.data }) };
    content.fill(0);
    const o = await ctx.store.create({ kind: k.kind, id, project_id: p.project.id, name: b.name, data: data as unknown as Record<string, unknown> });
    req.auditTarget = o.id;
    return created(reply, `/v1/${k.collection}/${o.id}`, view(o));
  });

  app.get(`/v1/${k.collection}`, {
    schema: { tags: [k.collection], summary: `List ${k.collection}.`, querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(schema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    return listBody(req, await ctx.store.list(k.kind, buildListQuery(q, spec, listProjects(req, q))), view);
  });

  app.get(`/v1/${k.collection}/:id`, {
    schema: { tags: [k.collection], summary: `Show a ${k.kind} (by id or name)${k.sealed ? ', never its content' : ''}.`, params: idParams, querystring: noQuery, response: { 200: schema } },
  }, async (req) => view(await find(req, (req.params as { id: string }).id)));

  app.delete(`/v1/${k.collection}/:id`, {
    config: { action: `${k.kind}.delete` },
    schema: { tags: [k.collection], summary: `Remove a ${k.kind}.`, params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', `remove ${k.collection}`);
    const o = await find(req, (req.params as { id: string }).id);
    req.auditTarget = o.id;
    await ctx.store.delete({ kind: k.kind, id: o.id, version: writeVersion(req, undefined, false) });
    reply.code(204);
  });

  if (!k.sealed) return;
  app.post('/v1/secrets/rotate-key', {
    config: { action: 'secret.rotate_key' },
    schema: { tags: ['secrets'], summary: 'Seal every secret with a new key, then drop the old keys (cloud admin).', querystring: noQuery, response: { 200: { type: 'object', properties: { key_id: { type: 'string' }, resealed: { type: 'integer' }, retired: { type: 'array', items: { type: 'string' } } } } } },
  }, async (req) => {
    requireCloudAdmin(req, 'rotate the secrets key');
    const kid = ctx.keyring.rotate();
    let resealed = 0;
    // Each secret is re-sealed under its version (one written meanwhile is read again); passes
    // repeat until one finds nothing sealed with an old key, and only then are old keys dropped.
    let left = 0;
    for (let pass = 0; pass < 3; pass++) {
      left = 0;
      for (const o of await listAll(ctx.store, 'secret')) {
        for (let cur: StoredObject | undefined = o; cur; ) {
          const d = cur.data as unknown as BlobData;
          if (!d.sealed || d.sealed.kid === kid) break;
          left++;
          const plain = ctx.keyring.unseal(d.sealed, sealAad('secret', cur.id));
          const next: BlobData = { ...d, sealed: ctx.keyring.seal(plain, sealAad('secret', cur.id)) };
          plain.fill(0);
          try {
            await ctx.store.update({ kind: 'secret', id: cur.id, version: cur.version, data: next as unknown as Record<string, unknown> });
            resealed++;
            break;
          } catch (e) {
            if (!(e instanceof YunError) || e.code !== 'YUN_VERSION_CONFLICT') throw e;
            cur = await ctx.store.get('secret', cur.id);
          }
        }
      }
      if (left === 0) break;
    }
    if (left > 0) return { key_id: kid, resealed, retired: [] };
    return { key_id: kid, resealed, retired: ctx.keyring.retire() };
  });
}
