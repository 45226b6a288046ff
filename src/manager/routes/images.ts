import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import { newId } from '../../util/ids.js';
import type { ImageRecord } from '../../images/oci.js';
import { listAll } from '../../store/paging.js';
import type { Filter, StoredObject } from '../../store/store.js';
import type { ServiceData } from '../../services/spec.js';
import type { ManagerContext } from '../context.js';
import {
  buildListQuery, commonMeta, created, idParams, listBody, listProjects, listQuerySchema, listResponseSchema,
  principal, requireRole, writeVersion, type ListQueryInput, type ListSpec,
} from '../http.js';
import type { Principal } from '../../identity/identity.js';
import { nodeFromCertificate } from './agent.js';
import { VM_MT } from '../../images/vm-image.js';
import { checkImageName, completeImage, dropUnnamedContent, imageNameParts, imageView, killImage, recordImage, resolveImage, visibleTo } from '../../images/catalog.js';
import { MEMBER_STATUSES, VISIBILITIES, accessOf, addMember, changeVisibility, removeMember, setMemberStatus, withAccess, type MemberStatus, type Visibility } from '../../images/access.js';
import { IMAGE_STATUSES, checkActive, checkUploadable } from '../../images/status.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const spec: ListSpec = {
  filters: { name: 'name', repository: 'repository', tag: 'tag', digest: 'digest', kind: 'kind', disk_format: 'disk_format', status: 'status', visibility: 'visibility', owner: 'project_id' },
  sortKeys: { name: 'name', created_at: 'created_at', size: 'size', id: 'id', status: 'status' },
  defaultSort: 'name',
};

export const imageSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    ...commonMeta,
    owner: { type: 'string', description: 'The project that owns the image (Glance\'s owner).' },
    status: { type: 'string', enum: [...IMAGE_STATUSES] },
    status_reason: { type: ['string', 'null'], description: 'Why a killed image was killed.' },
    visibility: { type: 'string', enum: [...VISIBILITIES] },
    repository: { type: 'string' }, tag: { type: 'string' }, digest: { type: ['string', 'null'] }, size: { type: ['integer', 'null'] },
    kind: { type: 'string', enum: ['vm', 'container'] },
    disk_format: { type: ['string', 'null'] }, container_format: { type: ['string', 'null'] },
    min_disk: { type: 'integer', description: 'GiB' }, min_ram: { type: 'integer', description: 'MiB' },
    os: { type: 'string' }, architecture: { type: 'string' }, source: { type: 'string' },
    config: { type: 'object', additionalProperties: true }, layers: { type: 'array', items: { type: 'object', additionalProperties: true } },
  },
} as const;

const memberSchema = {
  type: 'object',
  properties: {
    image_id: { type: 'string' }, member_id: { type: 'string', description: 'The member project\'s id.' }, member_name: { type: ['string', 'null'] },
    status: { type: 'string', enum: [...MEMBER_STATUSES] }, created_at: { type: 'string' }, updated_at: { type: 'string' },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const visibilityProp = { type: 'string', enum: [...VISIBILITIES], description: 'private (default), shared (with the projects added as members), public (every project; a cloud administrator only).' } as const;
const minDiskProp = { type: 'integer', minimum: 0, maximum: 1024 * 1024, description: 'Smallest root disk a server of it needs, GiB (Glance\'s min_disk).' } as const;
const minRamProp = { type: 'integer', minimum: 0, maximum: 16 * 1024 * 1024, description: 'Smallest RAM, MiB (Glance\'s min_ram).' } as const;
const checksumProp = { type: 'string', pattern: '^(sha256:)?[0-9a-f]{64}$', description: 'The disk\'s SHA-256: a disk that does not match is refused (422 YUN_DIGEST_MISMATCH), nothing kept.' } as const;

export function imageRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'clock' | 'identity' | 'images' | 'membership' | 'store'>): void {
  const view = imageView;
  const tmpDir = join(ctx.images.root, 'tmp');

  /** Create or move `name` to point at the record (tags are names: re-importing moves them). */
  const upsert = (projectId: string, r: ImageRecord, name: string, source: string, visibility?: Visibility) => recordImage(ctx.store, projectId, r, name, source, visibility ? { visibility } : {});

  /** A visibility asked for at import: publishing takes a cloud administrator. */
  const askedVisibility = (p: Principal, v: Visibility | undefined, name: string): Visibility | undefined => {
    if (v) changeVisibility(p.project.id, {}, v, { cloudAdmin: p.cloudAdmin, name });
    return v;
  };

  // Archives come as raw bytes: stream them to a file, never into memory.
  for (const type of ['application/x-tar', 'application/octet-stream', 'application/gzip', 'application/x-gzip']) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }

  const receive = async (req: FastifyRequest): Promise<string> => {
    mkdirSync(tmpDir, { recursive: true });
    const path = join(tmpDir, `upload-${newId()}`);
    const body = req.body as NodeJS.ReadableStream | undefined;
    if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
      throw new YunError('YUN_UNSUPPORTED_MEDIA_TYPE', 'Send the data as the raw body with Content-Type application/x-tar (or application/octet-stream)');
    }
    try {
      await pipeline(body, createWriteStream(path));
    } catch (e) {
      rmSync(path, { force: true });
      throw e;
    }
    return path;
  };

  /** The disk checked against its SHA-256, when one is given. */
  const checkChecksum = async (disk: string, checksum: string | undefined) => {
    if (!checksum) return;
    const want = checksum.replace(/^sha256:/, '');
    const hash = createHash('sha256');
    await pipeline(createReadStream(disk), hash);
    const got = hash.digest('hex');
    if (got !== want) throw new YunError('YUN_DIGEST_MISMATCH', `The uploaded disk's SHA-256 is ${got}, not the checksum given (${want}): it was not imported`, { extra: { expected: `sha256:${want}`, actual: `sha256:${got}` } });
  };

  interface DiskMeta { name: string; disk_format: 'qcow2' | 'raw'; min_disk_bytes: number; min_ram_bytes: number; cmdline?: string | null; checksum?: string }

  /** A VM image from an upload: a tar of disk (and kernel, initrd), or the disk itself. Temp files always go. */
  const importDisk = async (path: string, tarred: boolean, m: DiskMeta): Promise<ImageRecord> => {
    const dir = `${path}.d`;
    try {
      const files = tarred ? await unpackDiskUpload(path, dir) : { disk: path };
      await checkChecksum(files.disk, m.checksum);
      return await ctx.images.importVmImage(files, { name: imageNameParts(m.name).name, diskFormat: m.disk_format, minDiskBytes: m.min_disk_bytes, minRamBytes: m.min_ram_bytes, ...(m.cmdline ? { cmdline: m.cmdline } : {}) });
    } finally {
      rmSync(path, { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  };

  /** The image a request names, as the caller may see it (a cloud administrator sees every image by id). */
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const img = (await resolveImage(ctx.store, p.project.id, ref)) ?? (p.cloudAdmin ? await ctx.store.get('image', ref) : undefined);
    if (!img) throw notFound('image', ref);
    return img;
  };

  /** Changing an image takes its owner project (with the member role) or a cloud administrator. */
  const ownImage = async (req: FastifyRequest, ref: string, what: string) => {
    const p = requireRole(req, 'member', what);
    const img = await find(req, ref);
    if (!p.cloudAdmin && img.project_id !== p.project.id) {
      throw new YunError('YUN_FORBIDDEN', `Image ${img.name} belongs to project ${img.project_id}; only its owner may ${what}`, { hint: 'Tag it into your own project to have a copy you own: `yun image tag IMAGE NAME`.' });
    }
    return { p, img };
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
          visibility: visibilityProp,
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name?: string; filename?: string; visibility?: Visibility };
    if (q.name) checkImageName(q.name);
    const visibility = askedVisibility(p, q.visibility, q.name ?? 'the imported image');
    const path = await receive(req);
    try {
      const { repositoryFromFileName } = await import('../../images/names.js');
      const repository = q.name ? imageNameParts(q.name).repository : q.filename ? repositoryFromFileName(q.filename) : undefined;
      const records = await ctx.images.importArchive(path, undefined, repository ? { repository } : {});
      const out: Record<string, unknown>[] = [];
      for (const r of records) {
        const names = r.names.length ? r.names : q.name ? [q.name] : [];
        if (names.length === 0) {
          throw new YunError('YUN_VALIDATION_FAILED', `The archive's image ${r.digest} has no name`, { hint: 'Give one: `yun image import FILE --name REPO:TAG`.' });
        }
        for (const n of names) out.push(view(await upsert(p.project.id, r, n, 'import', visibility)));
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
      summary: 'Make a VM image of a disk (qcow2 or raw) in one step, sent as a tar holding `disk`, and for direct kernel boot `kernel` and `initrd`. The disk is checked against its format (a qcow2 must not name a backing file); a bad upload leaves nothing behind. (Glance\'s two steps are POST /v1/images, then PUT /v1/images/ID/file.)',
      querystring: {
        type: 'object', additionalProperties: false, required: ['name', 'disk_format'],
        properties: {
          name: { type: 'string', maxLength: 255 },
          disk_format: { type: 'string', enum: ['qcow2', 'raw'] },
          min_disk: { ...minDiskProp, default: 0 },
          min_ram: { ...minRamProp, default: 0 },
          cmdline: { type: 'string', maxLength: 4096, description: 'Kernel command line for direct kernel boot.' },
          checksum: checksumProp,
          visibility: visibilityProp,
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name: string; disk_format: 'qcow2' | 'raw'; min_disk: number; min_ram: number; cmdline?: string; checksum?: string; visibility?: Visibility };
    checkImageName(q.name);
    const visibility = askedVisibility(p, q.visibility, q.name);
    const path = await receive(req);
    const r = await importDisk(path, true, { name: q.name, disk_format: q.disk_format, min_disk_bytes: q.min_disk * GiB, min_ram_bytes: q.min_ram * MiB, cmdline: q.cmdline, checksum: q.checksum });
    const img = await upsert(p.project.id, r, q.name, 'disk', visibility);
    req.auditTarget = img.id;
    return created(reply, `/v1/images/${img.id}`, view(img));
  });

  app.post('/v1/images', {
    config: { action: 'image.create' },
    schema: {
      tags: ['images'],
      summary: 'Create a queued VM image (Glance\'s first step): a record with its metadata and no data yet. Upload the disk with PUT /v1/images/ID/file; it goes saving → active, or killed with the reason.',
      querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['name', 'disk_format'],
        properties: {
          name: { type: 'string', maxLength: 255 },
          disk_format: { type: 'string', enum: ['qcow2', 'raw'] },
          container_format: { type: 'string', enum: ['bare'], default: 'bare' },
          min_disk: { ...minDiskProp, default: 0 },
          min_ram: { ...minRamProp, default: 0 },
          cmdline: { type: 'string', maxLength: 4096 },
          visibility: { ...visibilityProp, default: 'private' },
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'create images');
    const b = req.body as { name: string; disk_format: 'qcow2' | 'raw'; container_format: 'bare'; min_disk: number; min_ram: number; cmdline?: string; visibility: Visibility };
    checkImageName(b.name, 'body/name');
    const { name, repository, tag } = imageNameParts(b.name);
    if (await ctx.store.getByName('image', p.project.id, name)) {
      throw new YunError('YUN_NAME_CONFLICT', `An image named ${name} already exists in this project`, { hint: 'Choose another name, or remove that image first (`yun image rm`).' });
    }
    const access = changeVisibility(p.project.id, {}, b.visibility, { cloudAdmin: p.cloudAdmin, name });
    const img = await ctx.store.create({
      kind: 'image', project_id: p.project.id, name,
      data: {
        repository, tag, digest: null, size: null, source: 'upload', kind: 'vm', status: 'queued', status_reason: null,
        disk_format: b.disk_format, container_format: b.container_format, min_disk: b.min_disk, min_ram: b.min_ram,
        min_disk_bytes: b.min_disk * GiB, min_ram_bytes: b.min_ram * MiB, cmdline: b.cmdline ?? null, ...access,
      },
    });
    req.auditTarget = img.id;
    return created(reply, `/v1/images/${img.id}`, view(img));
  });

  app.put('/v1/images/:id/file', {
    config: { action: 'image.upload' },
    bodyLimit: 64 * 1024 ** 3,
    schema: {
      tags: ['images'],
      summary: 'Upload a queued image\'s data (Glance\'s second step): the disk as the raw body (application/octet-stream), or a tar of disk, kernel and initrd (application/x-tar). The image is saving while it arrives, then active; a bad disk or a checksum mismatch kills it, with the reason in status_reason.',
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { checksum: checksumProp } },
    },
  }, async (req) => {
    const { img } = await ownImage(req, (req.params as { id: string }).id, 'upload its data');
    req.auditTarget = img.id;
    checkUploadable(img.name, img.data);
    const d = img.data;
    // saving first (a concurrent upload loses on the version), and who saves it: after a crash its manager kills it.
    await ctx.store.update({ kind: 'image', id: img.id, version: img.version, data: { ...d, status: 'saving', saving_manager: ctx.membership.localNodeId ?? null } });
    try {
      const path = await receive(req);
      const tarred = /^application\/x-tar\b/.test(String(req.headers['content-type'] ?? ''));
      const r = await importDisk(path, tarred, { name: img.name, disk_format: d.disk_format as 'qcow2' | 'raw', min_disk_bytes: Number(d.min_disk_bytes ?? 0), min_ram_bytes: Number(d.min_ram_bytes ?? 0), cmdline: d.cmdline as string | null, checksum: (req.query as { checksum?: string }).checksum });
      const done = await completeImage(ctx.store, ctx.images, img.id, r, 'upload');
      if (!done) throw notFound('image', img.id);
      return view(done);
    } catch (e) {
      await killImage(ctx.store, img.id, e).catch(() => undefined);
      throw e;
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
    checkActive(img.name, img.data, 'download it');
    const digest = String(img.data.digest);
    const rec = await ctx.images.image(digest);
    const file = img.name.replace(/[^A-Za-z0-9._-]/g, '_');
    if (rec.kind === 'vm') {
      const disk = rec.manifest.layers.find((l) => l.mediaType === VM_MT.qcow2 || l.mediaType === VM_MT.raw)!;
      const fmt = disk.mediaType === VM_MT.qcow2 ? 'qcow2' : 'raw';
      reply.header('content-type', 'application/octet-stream').header('content-length', String(disk.size))
        .header('x-image-disk-format', fmt).header('x-image-checksum', disk.digest)
        .header('content-disposition', `attachment; filename="${file}.${fmt}"`);
      return reply.send(createReadStream(ctx.images.blobPath(disk.digest)));
    }
    const archive = await ctx.images.exportDockerArchive(digest, img.name);
    reply.header('content-type', 'application/x-tar').header('content-disposition', `attachment; filename="${file}.tar"`);
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
          visibility: visibilityProp,
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'import images');
    const q = req.query as { name: string; cmd?: string[]; entrypoint?: string[]; env?: string[]; workdir?: string; user?: string; visibility?: Visibility };
    checkImageName(q.name);
    const visibility = askedVisibility(p, q.visibility, q.name);
    const path = await receive(req);
    try {
      const r = await ctx.images.importRootfs(path, { name: imageNameParts(q.name).name, cmd: q.cmd, entrypoint: q.entrypoint, env: q.env, workdir: q.workdir, user: q.user });
      const img = await upsert(p.project.id, r, q.name, 'rootfs', visibility);
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
          visibility: visibilityProp,
        },
      },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'pull images');
    const b = req.body as { ref: string; ca_pem?: string; insecure: boolean; username?: string; password?: string; visibility?: Visibility };
    const { pullImage, parseReference } = await import('../../images/registry.js');
    const parsed = parseReference(b.ref);
    const visibility = askedVisibility(p, b.visibility, parsed.name);
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-request-id': req.id, 'cache-control': 'no-store' });
    const send = (o: unknown) => reply.raw.write(`${JSON.stringify(o)}\n`);
    try {
      const r = await pullImage(ctx.images, b.ref, {
        caPem: b.ca_pem, insecure: b.insecure, username: b.username, password: b.password,
        progress: (e) => send({ progress: e }),
      });
      const img = await upsert(p.project.id, r, parsed.name, 'pull', visibility);
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
    schema: {
      tags: ['images'],
      summary: 'List the images this project may see: its own, public ones, and those shared with it that it accepted (member_status= lists those it has not). Filter by visibility, status, owner.',
      querystring: (() => {
        const s = listQuerySchema(spec, { projectScoped: true }) as { properties: Record<string, unknown> };
        s.properties.member_status = { type: 'string', enum: [...MEMBER_STATUSES, 'all'], description: 'Only images shared with this project whose membership is in this status.' };
        return s;
      })(),
      response: { 200: listResponseSchema(imageSchema) },
    },
  }, async (req) => {
    const q = req.query as ListQueryInput & { member_status?: MemberStatus | 'all' };
    const projects = listProjects(req, q);
    const query = buildListQuery(q, spec, projects);
    const me = principal(req).project.id;
    // A project's own list is what it may see, whoever owns it; a cloud administrator asking for
    // a project (or all) gets what they own.
    if (projects?.length === 1 && projects[0] === me) {
      query.projects = undefined;
      const mine: Filter = q.member_status
        ? { field: 'member_index', op: 'overlaps', value: (q.member_status === 'all' ? MEMBER_STATUSES : [q.member_status]).map((s) => `${me}:${s}`) }
        : visibleTo(me);
      query.filters = [...(query.filters ?? []), mine];
    }
    return listBody(req, await ctx.store.list('image', query), view);
  });

  app.get('/v1/images/:id', {
    schema: { tags: ['images'], summary: 'Show an image (by id, name or digest).', params: idParams, querystring: noQuery, response: { 200: imageSchema } },
  }, async (req) => view(await find(req, (req.params as { id: string }).id)));

  app.patch('/v1/images/:id', {
    config: { action: 'image.update' },
    schema: {
      tags: ['images'], summary: 'Change an image\'s visibility, min_disk or min_ram (its owner, or a cloud administrator; public takes a cloud administrator).',
      params: idParams, querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, minProperties: 1,
        properties: {
          visibility: visibilityProp,
          min_disk: minDiskProp,
          min_ram: minRamProp,
          version: { type: 'integer', minimum: 1 },
        },
      },
    },
  }, async (req) => {
    const { p, img } = await ownImage(req, (req.params as { id: string }).id, 'change it');
    req.auditTarget = img.id;
    const b = req.body as { visibility?: Visibility; min_disk?: number; min_ram?: number; version?: number };
    const d = img.data;
    if ((b.min_disk !== undefined || b.min_ram !== undefined) && d.kind !== 'vm') {
      throw new YunError('YUN_VALIDATION_FAILED', `Image ${img.name} is a container image; min_disk and min_ram are for VM images`, { extra: { field: b.min_disk !== undefined ? 'body/min_disk' : 'body/min_ram' } });
    }
    const access = b.visibility ? changeVisibility(img.project_id, d, b.visibility, { cloudAdmin: p.cloudAdmin, name: img.name }) : withAccess(img.project_id, accessOf(d).visibility, accessOf(d).members);
    const data = {
      ...d, ...access,
      ...(b.min_disk !== undefined ? { min_disk: b.min_disk, min_disk_bytes: b.min_disk * GiB } : {}),
      ...(b.min_ram !== undefined ? { min_ram: b.min_ram, min_ram_bytes: b.min_ram * MiB } : {}),
    };
    return view(await ctx.store.update({ kind: 'image', id: img.id, version: writeVersion(req, b, false) ?? img.version, data }));
  });

  // ---- members (Glance's image sharing) ------------------------------------------------------------

  const memberView = async (img: StoredObject, m: { project_id: string; status: MemberStatus; created_at: string; updated_at: string }) => ({
    image_id: img.id, member_id: m.project_id, member_name: (await ctx.store.get('project', m.project_id))?.name ?? null,
    status: m.status, created_at: m.created_at, updated_at: m.updated_at,
  });
  const memberParams = { type: 'object', additionalProperties: false, required: ['id', 'member'], properties: { id: { type: 'string', maxLength: 255 }, member: { type: 'string', maxLength: 255 } } } as const;

  /** A project named by id or name (a member must be a project that exists). */
  const findMemberProject = async (ref: string) => {
    const proj = await ctx.identity.findProject(ref);
    if (!proj) throw new YunError('YUN_NOT_FOUND', `There is no project "${ref}"`, { hint: 'Name the project by its id or name (`yun project ls` as a cloud administrator).' });
    return proj;
  };

  app.get('/v1/images/:id/members', {
    schema: { tags: ['images'], summary: 'The projects an image is shared with (its owner sees all; a member sees itself).', params: idParams, querystring: noQuery, response: { 200: { type: 'object', properties: { items: { type: 'array', items: memberSchema } } } } },
  }, async (req) => {
    const p = principal(req);
    const img = await find(req, (req.params as { id: string }).id);
    const all = accessOf(img.data).members;
    const mine = p.cloudAdmin || img.project_id === p.project.id ? all : all.filter((m) => m.project_id === p.project.id);
    return { items: await Promise.all(mine.map((m) => memberView(img, m))) };
  });

  app.post('/v1/images/:id/members', {
    config: { action: 'image.member_add' },
    schema: {
      tags: ['images'], summary: 'Share a shared image with a project (its owner): the member is pending until that project accepts; it may use the image by id at once.',
      params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['member'], properties: { member: { type: 'string', minLength: 1, maxLength: 255, description: 'The project, by id or name.' } } },
      response: { 201: memberSchema },
    },
  }, async (req, reply) => {
    const { img } = await ownImage(req, (req.params as { id: string }).id, 'share it');
    req.auditTarget = img.id;
    const proj = await findMemberProject((req.body as { member: string }).member);
    const now = ctx.clock.iso();
    const access = addMember(img.project_id, img.data, proj.id, now, img.name);
    await ctx.store.update({ kind: 'image', id: img.id, version: img.version, data: { ...img.data, ...access } });
    reply.code(201).header('location', `/v1/images/${img.id}/members/${proj.id}`);
    return memberView(img, access.members.find((m) => m.project_id === proj.id)!);
  });

  app.put('/v1/images/:id/members/:member', {
    config: { action: 'image.member_update' },
    schema: {
      tags: ['images'], summary: 'A member project accepts or rejects an image shared with it (only the member may).',
      params: memberParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['status'], properties: { status: { type: 'string', enum: [...MEMBER_STATUSES] } } },
      response: { 200: memberSchema },
    },
  }, async (req) => {
    const p = requireRole(req, 'member', 'accept or reject shared images');
    const { id, member } = req.params as { id: string; member: string };
    const img = await find(req, id);
    req.auditTarget = img.id;
    const proj = await findMemberProject(member);
    if (proj.id !== p.project.id) {
      throw new YunError('YUN_FORBIDDEN', `Only project ${proj.name} itself may accept or reject image ${img.name} shared with it`, { hint: img.project_id === p.project.id ? 'As the owner, add or remove members (`yun image member add|rm`).' : 'Log in to that project.' });
    }
    const access = setMemberStatus(img.project_id, img.data, proj.id, (req.body as { status: MemberStatus }).status, ctx.clock.iso(), img.name);
    await ctx.store.update({ kind: 'image', id: img.id, version: img.version, data: { ...img.data, ...access } });
    return memberView(img, access.members.find((m) => m.project_id === proj.id)!);
  });

  app.delete('/v1/images/:id/members/:member', {
    config: { action: 'image.member_remove' },
    schema: { tags: ['images'], summary: 'Stop sharing an image with a project (its owner). Servers already made from it keep running.', params: memberParams, querystring: noQuery },
  }, async (req, reply) => {
    const { id, member } = req.params as { id: string; member: string };
    const { img } = await ownImage(req, id, 'stop sharing it');
    req.auditTarget = img.id;
    const proj = await findMemberProject(member);
    const access = removeMember(img.project_id, img.data, proj.id, img.name);
    await ctx.store.update({ kind: 'image', id: img.id, version: img.version, data: { ...img.data, ...access } });
    reply.code(204);
  });

  app.post('/v1/images/:id/tags', {
    config: { action: 'image.tag' },
    schema: {
      tags: ['images'], summary: 'Give an image another name (repo:tag) in your project; an existing name moves to this image. Tagging an image shared with you, or a public one, gives your project its own name for it.', params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', maxLength: 255 } } },
    },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'tag images');
    const img = await find(req, (req.params as { id: string }).id);
    checkActive(img.name, img.data, 'tag it');
    const { name } = req.body as { name: string };
    checkImageName(name);
    const norm = imageNameParts(name);
    const existing = await ctx.store.getByName('image', p.project.id, norm.name);
    const a = existing ? accessOf(existing.data) : { visibility: 'private' as const, members: [] };
    const data = { ...img.data, repository: norm.repository, tag: norm.tag, ...withAccess(p.project.id, a.visibility, a.members) };
    const out = existing
      ? await ctx.store.update({ kind: 'image', id: existing.id, version: existing.version, data })
      : await ctx.store.create({ kind: 'image', project_id: p.project.id, name: norm.name, data });
    req.auditTarget = out.id;
    return created(reply, `/v1/images/${out.id}`, view(out));
  });

  app.delete('/v1/images/:id', {
    config: { action: 'image.delete' },
    schema: { tags: ['images'], summary: 'Remove an image name (its owner); the content goes with the last name. Refused while a service or server uses it.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    const { p, img } = await ownImage(req, (req.params as { id: string }).id, 'remove it');
    req.auditTarget = img.id;
    const digest = img.data.digest as string | null;
    if (!digest) {
      // queued or killed before it had content: only the record goes.
      await ctx.store.delete({ kind: 'image', id: img.id });
      return reply.code(204).send();
    }
    const sameDigest = await listAll(ctx.store, 'image', { filters: [{ field: 'digest', op: 'eq', value: digest }] });
    const last = sameDigest.length <= 1;
    const name = (o: StoredObject) => (p.cloudAdmin || o.project_id === img.project_id ? `"${o.name}"` : `a ${o.kind} of another project`);
    // Services of the owner that name it, and services anywhere pinned to the content it alone names.
    const named = (await listAll(ctx.store, 'service', { projects: [img.project_id] })).filter((s) => {
      const t = (s.data as ServiceData).spec.task;
      return t.image && imageNameParts(t.image).name === img.name;
    });
    const pinned = last ? await listAll(ctx.store, 'service', { filters: [{ field: 'spec.task.image_digest', op: 'eq', value: digest }] }) : [];
    const users = [...new Map([...named, ...pinned].map((s) => [s.id, s])).values()];
    if (users.length) {
      throw new YunError('YUN_IN_USE', `Image ${img.name} is used by ${users.length} service${users.length > 1 ? 's' : ''}: ${users.map(name).join(', ')}`, { hint: 'Remove those services, or update them to another image, first.' });
    }
    // A VM's disk is an overlay on its image's disk: the content must stay while a server uses it.
    const servers = last ? await listAll(ctx.store, 'server', { filters: [{ field: 'image.digest', op: 'eq', value: digest }] }) : [];
    if (servers.length) {
      throw new YunError('YUN_IN_USE', `Image ${img.name} is the root disk of ${servers.length} server${servers.length > 1 ? 's' : ''}: ${servers.map(name).join(', ')}`, { hint: 'Delete those servers, or rebuild them from another image, first.' });
    }
    await ctx.store.delete({ kind: 'image', id: img.id });
    if (last) await dropUnnamedContent(ctx.store, ctx.images, digest);
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
    const path = ctx.images.blobPath(digest);
    reply.header('content-type', 'application/octet-stream').header('content-length', String(statSync(path).size)).header('docker-content-digest', digest);
    return reply.send(createReadStream(path));
  });
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
