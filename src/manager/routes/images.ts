import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { listAll } from '../../store/paging.js';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import { newId } from '../../util/ids.js';
import type { ImageRecord } from '../../images/oci.js';
import { GLOBAL, type StoredObject } from '../../store/store.js';
import type { ServiceData } from '../../services/spec.js';
import type { ManagerContext } from '../context.js';
import {
  buildListQuery, commonMeta, created, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema,
  principal, requireRole, toApi, type ListQueryInput, type ListSpec,
} from '../http.js';
import { nodeFromCertificate } from './agent.js';
import { VM_MT } from '../../images/vm-image.js';

const spec: ListSpec = {
  filters: { name: 'name', repository: 'repository', tag: 'tag', digest: 'digest', kind: 'kind', disk_format: 'disk_format' },
  sortKeys: { name: 'name', created_at: 'created_at', size: 'size', id: 'id' },
  defaultSort: 'name',
};

export const imageSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    repository: { type: 'string' }, tag: { type: 'string' }, digest: { type: 'string' }, size: { type: 'integer' },
    os: { type: 'string' }, architecture: { type: 'string' }, source: { type: 'string' },
    config: { type: 'object', additionalProperties: true }, layers: { type: 'array', items: { type: 'object', additionalProperties: true } },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

/** `busybox` → busybox:latest; `reg:5000/a/b:1` stays; digests are kept apart. */
export function normalizeImageName(ref: string): { name: string; repository: string; tag: string } {
  const at = ref.indexOf('@');
  const base = at >= 0 ? ref.slice(0, at) : ref;
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  const hasTag = colon > slash;
  const repository = hasTag ? base.slice(0, colon) : base;
  const tag = hasTag ? base.slice(colon + 1) : 'latest';
  return { name: `${repository}:${tag}`, repository, tag };
}

const NAME_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;

export function checkImageName(ref: string, field = 'name'): void {
  if (!NAME_RE.test(ref) || ref.length > 255) {
    throw new YunError('YUN_VALIDATION_FAILED', `"${ref}" is not a valid image name: lowercase letters, digits, separators (. _ -), path components with /, an optional :TAG`, { extra: { field } });
  }
}

/** Image names in a project resolve to their record (by name, id, or digest). */
export async function resolveImage(ctx: ManagerContext, projectId: string, ref: string): Promise<StoredObject | undefined> {
  if (/^sha256:[0-9a-f]{64}$/.test(ref)) {
    return (await ctx.store.list('image', { limit: 1, projects: [projectId], filters: [{ field: 'digest', op: 'eq', value: ref }] })).items[0];
  }
  const byId = await ctx.store.get('image', ref);
  if (byId && byId.project_id === projectId) return byId;
  const digestAt = ref.indexOf('@sha256:');
  if (digestAt >= 0) {
    const digest = ref.slice(digestAt + 1);
    return (await ctx.store.list('image', { limit: 1, projects: [projectId], filters: [{ field: 'digest', op: 'eq', value: digest }] })).items[0];
  }
  return ctx.store.getByName('image', projectId, normalizeImageName(ref).name);
}

/** Record an image of the store in a project (under its name: a new tag replaces the old). */
export async function recordImage(ctx: ManagerContext, projectId: string, r: ImageRecord, name: string, source: string): Promise<StoredObject> {
  const data = imageData(r, name, source);
  const norm = normalizeImageName(name).name;
  const existing = await ctx.store.getByName('image', projectId, norm);
  if (existing) return ctx.store.update({ kind: 'image', id: existing.id, version: existing.version, data });
  return ctx.store.create({ kind: 'image', project_id: projectId, name: norm, data });
}

export function imageData(r: ImageRecord, name: string, source: string): Record<string, unknown> {
  const { repository, tag } = normalizeImageName(name);
  const c = r.config.config ?? {};
  const vm = r.kind === 'vm' && r.vm ? r.vm : null;
  return {
    repository, tag, digest: r.digest, size: r.size, os: r.config.os, architecture: r.config.architecture, source,
    image_created: r.config.created ?? null,
    kind: vm ? 'vm' : 'container',
    ...(vm
      ? {
          // Glance's names beside exact byte counts: min_disk in GiB, min_ram in MiB.
          disk_format: vm.disk_format, container_format: 'bare', virtual_size: vm.virtual_size,
          min_disk_bytes: vm.min_disk_bytes, min_ram_bytes: vm.min_ram_bytes,
          min_disk: Math.ceil(vm.min_disk_bytes / 1024 ** 3), min_ram: Math.ceil(vm.min_ram_bytes / 1024 ** 2),
          cmdline: vm.cmdline, boot: r.manifest.layers.some((l) => l.mediaType === VM_MT.kernel) ? 'kernel' : 'disk',
        }
      : { config: { cmd: c.Cmd ?? [], entrypoint: c.Entrypoint ?? [], env: c.Env ?? [], workdir: c.WorkingDir ?? '', user: c.User ?? '', exposed_ports: Object.keys(c.ExposedPorts ?? {}) } }),
    layers: r.manifest.layers.map((l) => ({ digest: l.digest, size: l.size, media_type: l.mediaType })),
  };
}

export function imageRoutes(app: FastifyInstance, ctx: ManagerContext): void {
  const view = (o: StoredObject) => toApi(o);
  const tmpDir = join(ctx.images.root, 'tmp');

  /** Create or move `name` to point at the record (tags are names: re-importing moves them). */
  const upsert = (projectId: string, r: ImageRecord, name: string, source: string) => recordImage(ctx, projectId, r, name, source);

  // Archives come as raw bytes: stream them to a file, never into memory.
  for (const type of ['application/x-tar', 'application/octet-stream', 'application/gzip', 'application/x-gzip']) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }

  const receive = async (req: FastifyRequest): Promise<string> => {
    mkdirSync(tmpDir, { recursive: true });
    const path = join(tmpDir, `upload-${newId()}`);
    const body = req.body as NodeJS.ReadableStream | undefined;
    if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
      throw new YunError('YUN_UNSUPPORTED_MEDIA_TYPE', 'Send the archive as the raw body with Content-Type application/x-tar (or application/octet-stream)');
    }
    await pipeline(body, createWriteStream(path));
    return path;
  };

  app.post('/v1/images/import', {
    config: { action: 'image.import' },
    bodyLimit: 64 * 1024 ** 3,
    schema: {
      tags: ['images'], summary: 'Import a `docker save` archive or an OCI image layout (tar), sent as the raw body.',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          name: { type: 'string', maxLength: 255, description: 'Name (repo:tag) for an image that has none in the archive.' },
          filename: { type: 'string', maxLength: 255, description: 'The archive\'s file name: the repository for OCI layouts whose images are named by a bare tag (as skopeo and umoci write them).' },
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name?: string; filename?: string };
    if (q.name) checkImageName(q.name);
    const path = await receive(req);
    try {
      const { repositoryFromFileName } = await import('../../images/names.js');
      const repository = q.name ? normalizeImageName(q.name).repository : q.filename ? repositoryFromFileName(q.filename) : undefined;
      const records = await ctx.images.importArchive(path, undefined, repository ? { repository } : {});
      const out: Record<string, unknown>[] = [];
      for (const r of records) {
        const names = r.names.length ? r.names : q.name ? [q.name] : [];
        if (names.length === 0) {
          throw new YunError('YUN_VALIDATION_FAILED', `The archive's image ${r.digest} has no name`, { hint: 'Give one: `yun image import FILE --name REPO:TAG`.' });
        }
        for (const n of names) out.push(view(await upsert(p.project.id, r, n, 'import')));
      }
      req.auditTarget = out.map((o) => o.id).join(',');
      reply.code(201);
      return { items: out };
    } finally {
      rmSync(path, { force: true });
    }
  });

  app.post('/v1/images/import-disk', {
    config: { action: 'image.import' },
    bodyLimit: 64 * 1024 ** 3,
    schema: {
      tags: ['images'],
      summary: 'Make a VM image of a disk (qcow2 or raw), sent as a tar holding `disk`, and for direct kernel boot `kernel` and `initrd`. The disk is checked against its format (a qcow2 must not name a backing file).',
      querystring: {
        type: 'object', additionalProperties: false, required: ['name', 'disk_format'],
        properties: {
          name: { type: 'string', maxLength: 255 },
          disk_format: { type: 'string', enum: ['qcow2', 'raw'] },
          min_disk: { type: 'integer', minimum: 0, maximum: 1024 * 1024, default: 0, description: 'Smallest root disk, GiB (Glance\'s min_disk).' },
          min_ram: { type: 'integer', minimum: 0, maximum: 16 * 1024 * 1024, default: 0, description: 'Smallest RAM, MiB (Glance\'s min_ram).' },
          cmdline: { type: 'string', maxLength: 4096, description: 'Kernel command line for direct kernel boot.' },
          checksum: { type: 'string', pattern: '^(sha256:)?[0-9a-f]{64}$', description: 'The disk\'s SHA-256: a disk that does not match is refused (422 YUN_DIGEST_MISMATCH), nothing kept.' },
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name: string; disk_format: 'qcow2' | 'raw'; min_disk: number; min_ram: number; cmdline?: string; checksum?: string };
    checkImageName(q.name);
    const path = await receive(req);
    const dir = `${path}.d`;
    try {
      const files = await unpackDiskUpload(path, dir);
      if (q.checksum) {
        const want = q.checksum.replace(/^sha256:/, '');
        const hash = createHash('sha256');
        await pipeline(createReadStream(files.disk), hash);
        const got = hash.digest('hex');
        if (got !== want) throw new YunError('YUN_DIGEST_MISMATCH', `The uploaded disk's SHA-256 is ${got}, not the checksum given (${want}): it was not imported`, { extra: { expected: `sha256:${want}`, actual: `sha256:${got}` } });
      }
      const r = await ctx.images.importVmImage(files, { name: normalizeImageName(q.name).name, diskFormat: q.disk_format, minDiskBytes: q.min_disk * 1024 ** 3, minRamBytes: q.min_ram * 1024 ** 2, ...(q.cmdline ? { cmdline: q.cmdline } : {}) });
      const img = await upsert(p.project.id, r, q.name, 'disk');
      req.auditTarget = img.id;
      return created(reply, `/v1/images/${img.id}`, view(img));
    } finally {
      rmSync(path, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  app.get('/v1/images/:id/file', {
    schema: {
      tags: ['images'],
      summary: 'Download an image (Glance\'s image data): a VM image\'s disk as it is stored (qcow2 or raw; X-Image-Disk-Format says which, X-Image-Checksum its SHA-256), a container image as a `docker save` archive.',
      params: idParams, querystring: noQuery,
    },
  }, async (req, reply) => {
    const img = await find(req, (req.params as { id: string }).id);
    const d = img.data as Record<string, unknown>;
    const digest = String(d.digest);
    const rec = await ctx.images.image(digest);
    if (rec.kind === 'vm') {
      const disk = rec.manifest.layers.find((l) => l.mediaType === VM_MT.qcow2 || l.mediaType === VM_MT.raw)!;
      reply.header('content-type', 'application/octet-stream').header('content-length', String(disk.size))
        .header('x-image-disk-format', disk.mediaType === VM_MT.qcow2 ? 'qcow2' : 'raw').header('x-image-checksum', disk.digest)
        .header('content-disposition', `attachment; filename="${img.name.replace(/[^A-Za-z0-9._-]/g, '_')}.${disk.mediaType === VM_MT.qcow2 ? 'qcow2' : 'raw'}"`);
      return reply.send(createReadStream(ctx.images.blobPath(disk.digest)));
    }
    const archive = await ctx.images.exportDockerArchive(digest, img.name);
    reply.header('content-type', 'application/x-tar').header('content-disposition', `attachment; filename="${img.name.replace(/[^A-Za-z0-9._-]/g, '_')}.tar"`);
    return reply.send(createReadStream(archive));
  });

  app.post('/v1/images/import-rootfs', {
    config: { action: 'image.import' },
    bodyLimit: 64 * 1024 ** 3,
    schema: {
      tags: ['images'], summary: 'Make an image from a plain root file system sent as a tar (gzip allowed), like `docker import`.',
      querystring: {
        type: 'object', additionalProperties: false, required: ['name'],
        properties: {
          name: { type: 'string', maxLength: 255 },
          cmd: { type: 'array', items: { type: 'string' }, description: 'Default command (repeat for each word).' },
          entrypoint: { type: 'array', items: { type: 'string' } },
          env: { type: 'array', items: { type: 'string' } },
          workdir: { type: 'string' },
          user: { type: 'string' },
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name: string; cmd?: string[]; entrypoint?: string[]; env?: string[]; workdir?: string; user?: string };
    checkImageName(q.name);
    const path = await receive(req);
    try {
      const r = await ctx.images.importRootfs(path, { name: normalizeImageName(q.name).name, cmd: q.cmd, entrypoint: q.entrypoint, env: q.env, workdir: q.workdir, user: q.user });
      const img = await upsert(p.project.id, r, q.name, 'rootfs');
      req.auditTarget = img.id;
      return created(reply, `/v1/images/${img.id}`, view(img));
    } finally {
      rmSync(path, { force: true });
    }
  });

  app.post('/v1/images/pull', {
    config: { action: 'image.pull' },
    schema: {
      tags: ['images'], summary: 'Pull an image from a registry (OCI distribution API). The answer streams NDJSON progress lines, then {"image": …} or {"error": …}.',
      querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['ref'],
        properties: {
          ref: { type: 'string', minLength: 1, maxLength: 500 },
          ca_pem: { type: 'string', maxLength: 100_000, description: 'CA certificate(s) the registry\'s certificate chains to.' },
          insecure: { type: 'boolean', default: false, description: 'Allow plain HTTP and unverified TLS (test registries only).' },
          username: { type: 'string', maxLength: 500 },
          password: { type: 'string', maxLength: 5000 },
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'pull images');
    const b = req.body as { ref: string; ca_pem?: string; insecure: boolean; username?: string; password?: string };
    const { pullImage, parseReference } = await import('../../images/registry.js');
    const parsed = parseReference(b.ref);
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': req.id, 'cache-control': 'no-store' });
    const send = (o: unknown) => reply.raw.write(`${JSON.stringify(o)}\n`);
    try {
      const r = await pullImage(ctx.images, b.ref, {
        caPem: b.ca_pem, insecure: b.insecure, username: b.username, password: b.password,
        progress: (e) => send({ progress: e }),
      });
      const img = await upsert(p.project.id, r, parsed.name, 'pull');
      req.auditTarget = img.id;
      send({ image: view(img) });
    } catch (e) {
      const y = e instanceof YunError ? e : new YunError('YUN_INTERNAL', (e as Error).message);
      req.errorCode = y.code;
      send(y.toBody(req.id));
    }
    reply.raw.end();
    return reply;
  });

  app.get('/v1/images', {
    schema: { tags: ['images'], summary: 'List images.', querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(imageSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    return listBody(req, await ctx.store.list('image', buildListQuery(q, spec, listProjects(req, q))), view);
  });

  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const img = (await resolveImage(ctx, p.project.id, ref)) ?? (await findInProjects(ctx.store, 'image', ref, [p.project.id]));
    if (!img) throw notFound('image', ref);
    return img;
  };

  app.get('/v1/images/:id', {
    schema: { tags: ['images'], summary: 'Show an image (by id, name or digest).', params: idParams, querystring: noQuery, response: { 200: imageSchema } },
  }, async (req) => view(await find(req, (req.params as { id: string }).id)));

  app.post('/v1/images/:id/tags', {
    config: { action: 'image.tag' },
    schema: {
      tags: ['images'], summary: 'Give an image another name (repo:tag); an existing name moves to this image.', params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', maxLength: 255 } } },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'tag images');
    const img = await find(req, (req.params as { id: string }).id);
    const { name } = req.body as { name: string };
    checkImageName(name);
    const norm = normalizeImageName(name);
    const data = { ...img.data, repository: norm.repository, tag: norm.tag };
    const existing = await ctx.store.getByName('image', p.project.id, norm.name);
    const out = existing
      ? await ctx.store.update({ kind: 'image', id: existing.id, version: existing.version, data })
      : await ctx.store.create({ kind: 'image', project_id: p.project.id, name: norm.name, data });
    req.auditTarget = out.id;
    return created(reply, `/v1/images/${out.id}`, view(out));
  });

  app.delete('/v1/images/:id', {
    config: { action: 'image.delete' },
    schema: { tags: ['images'], summary: 'Remove an image name; the content goes with the last name. Refused while a service uses it.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'remove images');
    const img = await find(req, (req.params as { id: string }).id);
    req.auditTarget = img.id;
    const digest = img.data.digest as string;
    const sameDigest = (await ctx.store.list('image', { limit: 1000, filters: [{ field: 'digest', op: 'eq', value: digest }] })).items;
    const services = (await ctx.store.list('service', { limit: 100000, projects: [img.project_id] })).items;
    const users = services.filter((s) => {
      const t = (s.data as ServiceData).spec.task;
      return (t.image && normalizeImageName(t.image).name === img.name) || (sameDigest.length === 1 && t.image_digest === digest);
    });
    if (users.length) {
      throw new YunError('YUN_IN_USE', `Image ${img.name} is used by service${users.length > 1 ? 's' : ''} ${users.map((s) => `"${s.name}"`).join(', ')}`, { hint: 'Remove those services, or update them to another image, first.' });
    }
    // A VM's disk is an overlay on its image's disk: the content must stay while a server uses it.
    const servers = sameDigest.length <= 1 ? await listAll(ctx.store, 'server', { filters: [{ field: 'image.digest', op: 'eq', value: digest }] }) : [];
    if (servers.length) {
      const p = principal(req);
      const names = servers.map((s) => (p.cloudAdmin || s.project_id === img.project_id ? `"${s.name}"` : 'a server of another project'));
      throw new YunError('YUN_IN_USE', `Image ${img.name} is the root disk of server${servers.length > 1 ? 's' : ''} ${names.join(', ')}`, { hint: 'Delete those servers, or rebuild them from another image, first.' });
    }
    await ctx.store.delete({ kind: 'image', id: img.id });
    if (sameDigest.length <= 1) {
      const keep = (await ctx.store.list('image', { limit: 100000 })).items.map((i) => i.data.digest as string);
      await ctx.images.remove(digest, keep);
    }
    reply.code(204);
  });

  // ---- blobs, for agents (mutual TLS with a node certificate) ---------------------------------------

  app.get('/v1/images/blobs/:digest', {
    config: { auth: false },
    schema: {
      tags: ['images'], summary: 'A blob of the image store, for agents fetching images (mutual TLS with a node certificate).',
      params: { type: 'object', additionalProperties: false, required: ['digest'], properties: { digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' } } },
      querystring: noQuery,
    },
    onRequest: async (req: FastifyRequest) => {
      const { nodeId } = nodeFromCertificate(req);
      if (!(await ctx.store.get('node', nodeId))) throw new YunError('YUN_NODE_REMOVED', `Node ${nodeId} was removed from the cluster`);
    },
  }, async (req, reply) => {
    const { digest } = req.params as { digest: string };
    if (!ctx.images.hasBlob(digest)) throw new YunError('YUN_NOT_FOUND', `The manager has no blob ${digest}`, { hint: 'Import or pull the image on the manager again.' });
    const { createReadStream, statSync } = await import('node:fs');
    const path = ctx.images.blobPath(digest);
    reply.header('content-type', 'application/octet-stream').header('content-length', String(statSync(path).size)).header('docker-content-digest', digest);
    return reply.send(createReadStream(path));
  });
  void GLOBAL;
}

/** The files of a VM image upload: a tar of regular files named disk, kernel, initrd (nothing else). */
async function unpackDiskUpload(tarPath: string, dir: string): Promise<{ disk: string; kernel?: string; initrd?: string }> {
  const tar = await import('tar');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const allowed = new Set(['disk', 'kernel', 'initrd']);
  const refused: string[] = [];
  try {
    await tar.x({
      file: tarPath, cwd: dir, strict: true,
      filter: (p, entry) => {
        const name = p.replace(/^\.\//, '');
        const ok = allowed.has(name) && (entry as { type?: string }).type === 'File';
        if (!ok && name !== '' && name !== '.') refused.push(name);
        return ok;
      },
    });
  } catch (e) {
    throw new YunError('YUN_IMAGE_INVALID', `The upload is not a tar of the disk (and kernel, initrd): ${(e as Error).message}`, { hint: 'Use `yun image import --disk-format FORMAT DISK` (the CLI makes the tar).' });
  }
  if (refused.length) throw new YunError('YUN_IMAGE_INVALID', `The upload holds ${refused.map((r) => JSON.stringify(r)).join(', ')}; a VM image upload holds only regular files named disk, kernel and initrd`, { hint: 'Use `yun image import --disk-format FORMAT DISK [--kernel K --initrd I]`.' });
  const { existsSync } = await import('node:fs');
  const at = (n: string) => (existsSync(join(dir, n)) ? join(dir, n) : undefined);
  const disk = at('disk');
  if (!disk) throw new YunError('YUN_IMAGE_INVALID', 'The upload has no file named disk', { hint: 'Use `yun image import --disk-format FORMAT DISK`.' });
  const kernel = at('kernel');
  const initrd = at('initrd');
  return { disk, ...(kernel ? { kernel } : {}), ...(initrd ? { initrd } : {}) };
}
