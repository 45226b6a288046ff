import { labelsSchema, nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { listAll } from '../../store/paging.js';
import { newId } from '../../util/ids.js';
import type { Keyring } from '../../secrets/keyring.js';
import { MAX_BLOB_BYTES, sealAad, type BlobData, type BlobKind } from '../../secrets/secret.js';
import type { ManagerContext } from '../context.js';
import { commitChecked, fileGuard } from '../commit.js';
import { withSpec, type ServiceData } from '../../services/spec.js';
import type { ServerData } from '../../servers/server.js';
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
export function blobRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store' | 'clock' | 'orchestrator'> & { keyring: Keyring }, k: BlobKind): void {
  const schema = { type: 'object', properties: { ...commonMeta, size: { type: 'integer' }, revision: { type: 'integer' }, labels: { type: 'object', additionalProperties: { type: 'string' } }, ...(k.sealed ? {} : { data: { type: 'string' } }) } } as const;
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const o = (p.cloudAdmin ? await ctx.store.get(k.kind, ref) : undefined) ?? (await findInProjects(ctx.store, k.kind, ref, [p.project.id]));
    if (!o) throw notFound(k.kind, ref);
    return o;
  };

  /** The content of a create or update, checked: base64, not empty, at most 500 KiB. */
  const decode = (name: string, b64: string): Buffer => {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new YunError('YUN_VALIDATION_FAILED', `The data of ${k.kind} "${name}" is not base64`, { extra: { field: 'body/data' }, hint: 'Send the content base64-encoded (the CLI does this for you).' });
    const content = Buffer.from(b64, 'base64');
    if (content.length === 0) throw new YunError('YUN_VALIDATION_FAILED', `${k.kind === 'secret' ? 'A secret' : 'A config'} cannot be empty`, { extra: { field: 'body/data' }, hint: 'Give a file (or standard input) with the content.' });
    if (content.length > MAX_BLOB_BYTES) throw new YunError('YUN_VALIDATION_FAILED', `${k.kind} "${name}" is ${content.length} bytes; the most is ${MAX_BLOB_BYTES} (500 KiB)`, { extra: { field: 'body/data' }, hint: 'Keep large files in a volume or an image.' });
    return content;
  };
  /** How the content is stored: a secret sealed (bound to its id), a config as it is. */
  const content_ = (id: string, content: Buffer, b64: string): Pick<BlobData, 'sealed' | 'data'> => (k.sealed ? { sealed: ctx.keyring.seal(content, sealAad(k.kind, id)) } : { data: b64 });

  /** The services of the object's project whose tasks receive it. */
  const users = async (o: StoredObject): Promise<StoredObject[]> =>
    (await listAll(ctx.store, 'service', { projects: [o.project_id!] })).filter((svc) => ((svc.data as ServiceData).spec.task[k.collection] ?? []).some((r) => r.id === o.id));
  /** Servers get the current revision at each boot: they hold it against removal, and are not rolled. */
  const serverUsers = async (o: StoredObject): Promise<StoredObject[]> =>
    (await listAll(ctx.store, 'server', { projects: [o.project_id!] })).filter((srv) => ((srv.data as ServerData)[k.collection] ?? []).some((r) => r.id === o.id));

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
    const content = decode(b.name, b.data);
    if (await ctx.store.getByName(k.kind, p.project.id, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A ${k.kind} named "${b.name}" already exists in project "${p.project.name}"`, { hint: `${k.kind === 'secret' ? 'Secrets' : 'Configs'} cannot change: create one with a new name (e.g. ${b.name}-v2) and move services to it.` });
    const id = newId();
    const data: BlobData = { size: content.length, revision: 1, labels: b.labels ?? {}, ...content_(id, content, b.data) };
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
    const version = writeVersion(req, undefined, false);
    await commitChecked(ctx.store, async () => {
      const g = await ctx.store.guard(fileGuard(o.id));
      const services = (await users(o)).map((x) => x.name).sort();
      const servers = (await serverUsers(o)).map((x) => x.name).sort();
      if (services.length + servers.length > 0) {
        const list = (what: string, names: string[]) => (names.length ? [`${what}${names.length === 1 ? '' : 's'} ${names.map((n) => `"${n}"`).join(', ')}`] : []);
        const fixes = [
          ...(services.length ? [`take it out of the service${services.length === 1 ? '' : 's'} (\`yun service update --${k.kind}-rm ${o.name} ${services.length === 1 ? services[0] : 'SERVICE'}\`) or remove ${services.length === 1 ? 'it' : 'them'}`] : []),
          ...(servers.length ? [`remove the server${servers.length === 1 ? '' : 's'} (\`yun server rm ${servers.length === 1 ? servers[0] : 'SERVER'}\`)`] : []),
        ];
        throw new YunError('YUN_IN_USE', `${k.title} "${o.name}" is used by ${[...list('service', services), ...list('server', servers)].join(' and ')}`, {
          hint: `First ${fixes.join(', and ')}.`, extra: { services, servers },
        });
      }
      return [{ op: 'guard', key: fileGuard(o.id), version: g }, { op: 'delete', kind: k.kind, id: o.id, ...(version !== undefined ? { version } : {}) }];
    });
    reply.code(204);
  });

  app.put(`/v1/${k.collection}/:id`, {
    config: { action: `${k.kind}.update` },
    schema: {
      tags: [k.collection], summary: `Give a ${k.kind} new content: a new revision, rolled out to the services that use it as a rolling update.`, params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['data'], properties: { data: { type: 'string', description: 'The new content, base64.' }, version: { type: 'integer', minimum: 1 } } },
      response: { 200: { type: 'object', properties: { ...schema.properties, services: { type: 'array', items: { type: 'string' }, description: 'The services rolled out.' } } } },
    },
  }, async (req) => {
    requireRole(req, 'member', `update ${k.collection}`);
    const b = req.body as { data: string; version?: number };
    const ref = (req.params as { id: string }).id;
    let rolled: StoredObject[] = [];
    const [updated] = await commitChecked(ctx.store, async () => {
      const o = await find(req, ref);
      req.auditTarget = o.id;
      if (b.version !== undefined && b.version !== o.version) throw new YunError('YUN_VERSION_CONFLICT', `${k.kind} "${o.name}" is at version ${o.version}, not ${b.version}`, { extra: { current_version: o.version } });
      const content = decode(o.name, b.data);
      const d = o.data as unknown as BlobData;
      const revision = (d.revision ?? 1) + 1;
      const next: BlobData = { ...d, size: content.length, revision, ...content_(o.id, content, b.data) };
      content.fill(0);
      const now = ctx.clock.iso();
      rolled = await users(o);
      const g = await ctx.store.guard(fileGuard(o.id));
      return [
        { op: 'guard', key: fileGuard(o.id), version: g },
        { op: 'update', kind: k.kind, id: o.id, version: o.version, data: next as unknown as Record<string, unknown> },
        ...rolled.map((svc) => {
          const sd = svc.data as ServiceData;
          const refs = (sd.spec.task[k.collection] ?? []).map((r) => (r.id === o.id ? { ...r, revision } : r));
          return { op: 'update' as const, kind: 'service', id: svc.id, version: svc.version, data: withSpec(sd, { ...sd.spec, task: { ...sd.spec.task, [k.collection]: refs } }, now) };
        }),
      ];
    }, { objectChanged: true });
    for (const svc of rolled) ctx.orchestrator.enqueue(svc.id);
    return { ...view(updated!), services: rolled.map((svc) => svc.name).sort() };
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
