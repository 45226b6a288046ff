import { nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { parsePublicKey } from '../../servers/keypair.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, created, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema, principal, requireRole, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';

const spec: ListSpec = { filters: { name: 'name', fingerprint: 'fingerprint' }, sortKeys: { name: 'name', created_at: 'created_at', id: 'id' }, defaultSort: 'name' };
const keypairSchema = { type: 'object', properties: { ...commonMeta, public_key: { type: 'string' }, fingerprint: { type: 'string' }, type: { type: 'string' } } } as const;
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

/** A project's key pair by id or name. */
export async function findKeypair(ctx: Pick<ManagerContext, 'store'>, projectId: string, ref: string): Promise<StoredObject | undefined> {
  return findInProjects(ctx.store, 'keypair', ref, [projectId]);
}

/**
 * SSH key pairs (Nova's os-keypairs), per project: the public half only, imported; servers created
 * with `--key-name` get it in their seed (authorized_keys).
 */
export function keypairRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store'>): void {
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const k = (p.cloudAdmin ? await ctx.store.get('keypair', ref) : undefined) ?? (await findInProjects(ctx.store, 'keypair', ref, [p.project.id]));
    if (!k) throw notFound('keypair', ref);
    return k;
  };

  app.post('/v1/keypairs', {
    config: { action: 'keypair.create' },
    schema: {
      tags: ['servers'], summary: 'Import an SSH public key as a key pair of your project.', querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['name', 'public_key'], properties: { name: nameSchema, public_key: { type: 'string', minLength: 1, maxLength: 16384, description: 'One OpenSSH public key line (the .pub file).' } } },
      response: { 201: keypairSchema },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import key pairs');
    const b = req.body as { name: string; public_key: string };
    const parsed = parsePublicKey(b.public_key);
    if (typeof parsed === 'string') throw new YunError('YUN_VALIDATION_FAILED', `The public key of key pair "${b.name}" is not valid: ${parsed}`, { extra: { field: 'body/public_key' }, hint: 'Give the contents of an OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub (make one with `ssh-keygen -t ed25519`).' });
    if (await ctx.store.getByName('keypair', p.project.id, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A key pair named "${b.name}" already exists in project "${p.project.name}"`);
    const k = await ctx.store.create({ kind: 'keypair', project_id: p.project.id, name: b.name, data: { public_key: parsed.key, fingerprint: parsed.fingerprint, type: parsed.type } });
    req.auditTarget = k.id;
    return created(reply, `/v1/keypairs/${k.id}`, toApi(k));
  });

  app.get('/v1/keypairs', {
    schema: { tags: ['servers'], summary: 'List key pairs.', querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(keypairSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    return listBody(req, await ctx.store.list('keypair', buildListQuery(q, spec, listProjects(req, q))), (o) => toApi(o));
  });

  app.get('/v1/keypairs/:id', {
    schema: { tags: ['servers'], summary: 'Show a key pair (by id or name).', params: idParams, querystring: noQuery, response: { 200: keypairSchema } },
  }, async (req) => toApi(await find(req, (req.params as { id: string }).id)));

  app.delete('/v1/keypairs/:id', {
    config: { action: 'keypair.delete' },
    schema: { tags: ['servers'], summary: 'Remove a key pair (servers made with it keep the key they got).', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'remove key pairs');
    const k = await find(req, (req.params as { id: string }).id);
    req.auditTarget = k.id;
    await ctx.store.delete({ kind: 'keypair', id: k.id, version: writeVersion(req, undefined, false) });
    reply.code(204);
  });
}
