import { nameSchema } from '../../util/schemas.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { Op, StoredObject } from '../../store/store.js';
import type { ServerData, ServerVolume } from '../../servers/server.js';
import { serverStatus } from '../../servers/states.js';
import { allowedVolumeActions, checkVolumeAction } from '../../volumes/states.js';
import { defaultMountPath, GiB, VOLUME_STATUSES, VOLUME_TYPES, volumeSerial, type SnapshotData, type VolumeData, type VolumeSource } from '../../volumes/volume.js';
import { snapshotsOf } from '../../volumes/queries.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema, principal, requireRole, toApi, type ListQueryInput, type ListSpec } from '../http.js';
import { checkQuota } from '../quotas.js';
import { commitChecked, quotaGuard } from '../commit.js';
import { resolveImage } from '../../images/catalog.js';
import { imageSnapshot } from './servers.js';
import { newId } from '../../util/ids.js';

const MAX_GB = 16 * 1024;
const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const sizeSchema = { type: 'integer', minimum: 1, maximum: MAX_GB, description: `Size in GiB (1 to ${MAX_GB}).` } as const;

const volumeSpec: ListSpec = {
  filters: { name: 'name', id: 'id', status: 'status', node_id: 'node_id', volume_type: 'volume_type', bootable: 'bootable' },
  sortKeys: { name: 'name', created_at: 'created_at', size: 'size_gb', id: 'id', status: 'status' },
  defaultSort: 'name',
};
const snapshotSpec: ListSpec = {
  filters: { name: 'name', id: 'id', status: 'status', volume_id: 'volume_id' },
  sortKeys: { name: 'name', created_at: 'created_at', id: 'id' },
  defaultSort: 'name',
};

const volumeSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    size: { type: 'integer', description: 'GiB' }, status: { type: 'string', enum: [...VOLUME_STATUSES] }, volume_type: { type: 'string' },
    description: { type: 'string' }, node_id: { type: ['string', 'null'] }, node: { type: ['string', 'null'] }, bootable: { type: 'boolean' },
    content: { type: 'string' }, source: { type: 'object', additionalProperties: true }, serial: { type: 'string' },
    attachments: { type: 'array', items: { type: 'object', additionalProperties: true } }, snapshots: { type: 'array', items: { type: 'string' } },
    fault: { type: ['object', 'null'], additionalProperties: true }, message: { type: ['string', 'null'] }, allowed_actions: { type: 'array', items: { type: 'string' } },
  },
} as const;

const snapshotSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    volume_id: { type: 'string' }, volume_name: { type: 'string' }, size: { type: 'integer' }, status: { type: 'string' }, description: { type: 'string' },
    node_id: { type: 'string' }, quiesced: { type: 'boolean' }, fault: { type: ['object', 'null'], additionalProperties: true },
  },
} as const;

const createBody = {
  type: 'object', additionalProperties: false, required: ['name'],
  properties: {
    name: nameSchema,
    size: { ...sizeSchema, description: 'Size in GiB. Default: the snapshot\'s size, or what the image needs; a blank volume must say.' },
    type: { type: 'string', enum: Object.keys(VOLUME_TYPES), description: 'The volume type (`file`: a sparse raw file on the node).' },
    description: { type: 'string', maxLength: 255 },
    snapshot: { type: 'string', minLength: 1, maxLength: 200, description: 'Make it from this snapshot (name or id): on the snapshot\'s node, with its content.' },
    image: { type: 'string', minLength: 1, maxLength: 300, description: 'Make it from this image: a VM image\'s disk (bootable on qemu), or a container image\'s file system (bootable on oci).' },
    node: { type: 'string', minLength: 1, maxLength: 200, description: 'Put it on this node (name or id); default: the node with the most disk free.' },
  },
} as const;

const actionBody = {
  type: 'object', additionalProperties: false, required: ['action'],
  properties: {
    action: { type: 'string', enum: ['attach', 'detach', 'extend'] },
    server: { type: 'string', minLength: 1, maxLength: 200, description: 'attach: the server (name or id), on the volume\'s node.' },
    mount_path: { type: 'string', minLength: 2, maxLength: 255, pattern: '^/[^\\u0000]*$', description: 'attach to a container: where it is mounted (default /mnt/VOLUME).' },
    delete_on_termination: { type: 'boolean', description: 'attach: delete the volume when the server is deleted (default false).' },
    size: { ...sizeSchema, description: 'extend: the new size in GiB (larger than now).' },
  },
} as const;

const snapshotBody = {
  type: 'object', additionalProperties: false, required: ['name', 'volume'],
  properties: { name: nameSchema, volume: { type: 'string', minLength: 1, maxLength: 200 }, description: { type: 'string', maxLength: 255 } },
} as const;

/** The volumes' and snapshots' API (Cinder's, in Yunstack's conventions). */
export function volumeRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'scheduler' | 'store'>): void {
  const findIn = (kind: string, what: string) => async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const o = (p.cloudAdmin ? await ctx.store.get(kind, ref) : undefined) ?? (await findInProjects(ctx.store, kind, ref, [p.project.id]));
    if (!o) throw notFound(what, ref);
    return o;
  };
  const findVolume = findIn('volume', 'volume');
  const findSnapshot = findIn('volume_snapshot', 'snapshot');

  const view = async (o: StoredObject) => {
    const d = o.data as VolumeData;
    const node = d.node_id ? await ctx.store.get('node', d.node_id) : undefined;
    const snaps = await snapshotsOf(ctx.store, o.id);
    const { desired: _d, quota_usage: _q, observed_generation: _g, attachment, size_gb, ...rest } = toApi(o) as Record<string, unknown> & VolumeData;
    return {
      ...rest, size: size_gb, node: node?.name ?? null, message: d.message ?? null,
      attachments: attachment ? [{ ...attachment, volume_id: o.id }] : [],
      snapshots: snaps.map((s) => s.name), allowed_actions: allowedVolumeActions(d),
    };
  };
  const snapView = (o: StoredObject) => {
    const { quota_usage: _q, size_gb, ...rest } = toApi(o) as Record<string, unknown> & SnapshotData;
    return { ...rest, size: size_gb };
  };

  const invalid = (message: string, field: string, hint?: string) => new YunError('YUN_VALIDATION_FAILED', message, { extra: { field }, ...(hint ? { hint } : {}) });

  app.post('/v1/volumes', {
    config: { action: 'volume.create' },
    schema: { tags: ['volumes'], summary: 'Create a volume: blank (ext4), from a snapshot, or from an image. Answers 202: it is creating until available (or error with a fault).', querystring: noQuery, body: createBody, response: { 202: volumeSchema } },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'create volumes');
    const b = req.body as { name: string; size?: number; type?: 'file'; description?: string; snapshot?: string; image?: string; node?: string };
    if (b.snapshot && b.image) throw invalid('A volume is made from a snapshot or from an image, not both', 'body/image');
    if (await ctx.store.getByName('volume', p.project.id, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A volume named "${b.name}" already exists in project "${p.project.name}"`, { hint: 'Choose another name, or delete the existing volume first (`yun volume rm`).' });
    let source: VolumeSource = { kind: 'blank' };
    let size = b.size;
    let content: VolumeData['content'] = 'ext4';
    let bootable = false;
    let nodeId: string | undefined;
    if (b.snapshot) {
      const s = await findSnapshot(req, b.snapshot).catch(() => { throw invalid(`Snapshot "${b.snapshot}" does not exist in this project`, 'body/snapshot', 'List them with `yun volume snapshot-ls`.'); });
      const sd = s.data as SnapshotData;
      if (sd.status !== 'available') throw new YunError('YUN_INVALID_STATE', `Snapshot "${s.name}" is ${sd.status}; a volume is made only from an available snapshot`, { extra: { status: sd.status }, hint: 'Wait for it (`yun volume snapshot-show`).' });
      const src = await ctx.store.get('volume', sd.volume_id);
      size ??= sd.size_gb;
      if (size < sd.size_gb) throw invalid(`A volume from snapshot "${s.name}" needs at least its size, ${sd.size_gb} GiB (asked: ${size})`, 'body/size');
      source = { kind: 'snapshot', snapshot_id: s.id, volume_id: sd.volume_id };
      content = (src?.data as VolumeData | undefined)?.content ?? 'ext4';
      bootable = (src?.data as VolumeData | undefined)?.bootable ?? false;
      nodeId = sd.node_id;
      if (b.node) {
        const n = await findInProjects(ctx.store, 'node', b.node, ['']);
        if (n?.id !== nodeId) throw invalid(`Snapshot "${s.name}" is on node ${nodeId}, and a volume from it is made on the same node`, 'body/node', 'Leave --node out.');
      }
    } else if (b.image) {
      const img = await resolveImage(ctx.store, p.project.id, b.image, 'make a volume from it');
      if (!img) throw invalid(`Image "${b.image}" does not exist in this project`, 'body/image', 'List images with `yun image ls`.');
      const snap = imageSnapshot(img);
      const need = Math.max(1, Math.ceil(snap.min_disk_bytes / GiB));
      size ??= need;
      if (size < need) throw invalid(`Image ${snap.name} needs a volume of at least ${need} GiB (asked: ${size})`, 'body/size');
      source = { kind: 'image', image: snap };
      content = snap.kind === 'vm' ? 'disk' : 'ext4';
      bootable = true;
    } else if (size === undefined) {
      throw invalid('A blank volume needs a size', 'body/size', 'yun volume create --size 1 NAME');
    }
    if (b.node && !nodeId) {
      const n = await findInProjects(ctx.store, 'node', b.node, ['']);
      if (!n) throw invalid(`Node "${b.node}" does not exist`, 'body/node', 'List nodes with `yun node ls`.');
      nodeId = n.id;
    }
    // The snapshot's node (or the one asked for, or the freest), if it has the disk for it.
    const node = await ctx.scheduler.placeVolume(size! * GiB, nodeId);
    const quota_usage = { volumes: 1, gigabytes: size! };
    const id = newId();
    const data: VolumeData = {
      size_gb: size!, volume_type: b.type ?? 'file', description: b.description ?? '', status: 'creating', node_id: node.id, source, content, bootable,
      serial: volumeSerial(id), attachment: null, desired: { size_gb: size!, snapshots: [], deleting: false, generation: 1 }, observed_generation: 0, fault: null, quota_usage,
    };
    const [v] = await commitChecked(ctx.store, async () => {
      const g = await ctx.store.guard(quotaGuard(p.project.id));
      await checkQuota(ctx.store, p.project, quota_usage);
      return [{ op: 'guard', key: quotaGuard(p.project.id), version: g }, { op: 'create', kind: 'volume', id, project_id: p.project.id, name: b.name, data }];
    });
    req.auditTarget = v!.id;
    reply.code(202).header('location', `/v1/volumes/${v!.id}`);
    return view(v!);
  });

  app.get('/v1/volumes', {
    schema: { tags: ['volumes'], summary: 'List volumes (filter by name, status, node_id, volume_type, bootable).', querystring: listQuerySchema(volumeSpec, { projectScoped: true }), response: { 200: listResponseSchema(volumeSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    const r = await ctx.store.list('volume', buildListQuery(q, volumeSpec, listProjects(req, q)));
    const items = [];
    for (const o of r.items) items.push(await view(o));
    return { ...listBody(req, r, (o) => ({ id: o.id })), items };
  });

  app.get('/v1/volumes/:id', {
    schema: { tags: ['volumes'], summary: 'Show a volume (by id or name).', params: idParams, querystring: noQuery, response: { 200: volumeSchema } },
  }, async (req) => view(await findVolume(req, (req.params as { id: string }).id)));

  app.get('/v1/volume-types', {
    schema: { tags: ['volumes'], summary: 'The volume types.', querystring: noQuery },
  }, async () => ({ items: Object.entries(VOLUME_TYPES).map(([name, t]) => ({ name, ...t })) }));

  app.post('/v1/volumes/:id/actions', {
    config: { action: 'volume.action' },
    schema: {
      tags: ['volumes'],
      summary: 'Act on a volume: attach (to a server on its node: a VM gets a disk at once, a container a mount), detach, extend (size). 409 when its status does not allow it. Answers 202 with the volume.',
      params: idParams, querystring: noQuery, body: actionBody, response: { 202: volumeSchema },
    },
  }, async (req, reply) => {
    requireRole(req, 'member', 'act on volumes');
    const b = req.body as { action: 'attach' | 'detach' | 'extend'; server?: string; mount_path?: string; delete_on_termination?: boolean; size?: number };
    const ref = (req.params as { id: string }).id;
    for (const [f, only] of [['server', 'attach'], ['mount_path', 'attach'], ['delete_on_termination', 'attach'], ['size', 'extend']] as const) {
      if (b[f] !== undefined && b.action !== only) throw invalid(`${f} is only for ${only}, not ${b.action}`, `body/${f}`);
    }
    let result: StoredObject;
    if (b.action === 'extend') {
      if (b.size === undefined) throw invalid('extend needs the new size', 'body/size', 'yun volume extend --size 2 VOLUME');
      [result] = await commitChecked(ctx.store, async () => {
        const v = await findVolume(req, ref);
        req.auditTarget = v.id;
        const d = v.data as VolumeData;
        checkVolumeAction('extend', v.name, d);
        if (b.size! <= d.size_gb) throw invalid(`Volume "${v.name}" is ${d.size_gb} GiB; extend only grows it (asked: ${b.size} GiB)`, 'body/size');
        const project = (await ctx.store.get('project', v.project_id))!;
        const g = await ctx.store.guard(quotaGuard(v.project_id));
        await checkQuota(ctx.store, project, { gigabytes: b.size! - d.size_gb });
        if (d.node_id) await ctx.scheduler.checkVolumeGrowth(d.node_id, (b.size! - d.size_gb) * GiB);
        const next: VolumeData = { ...d, status: 'extending', fault: null, desired: { ...d.desired, size_gb: b.size!, generation: d.desired.generation + 1 }, quota_usage: { ...d.quota_usage, gigabytes: b.size! } };
        return [{ op: 'guard', key: quotaGuard(v.project_id), version: g }, { op: 'update', kind: 'volume', id: v.id, version: v.version, data: next }];
      }, { objectChanged: true }) as [StoredObject];
    } else {
      [result] = await commitChecked(ctx.store, async () => {
        const v = await findVolume(req, ref);
        req.auditTarget = v.id;
        const d = v.data as VolumeData;
        if (b.action === 'attach') {
          if (!b.server) throw invalid('attach needs the server', 'body/server', 'yun volume attach VOLUME SERVER');
          checkVolumeAction('attach', v.name, d);
          const s = await findInProjects(ctx.store, 'server', b.server, [v.project_id]);
          if (!s) throw invalid(`Server "${b.server}" does not exist in the volume's project`, 'body/server');
          const sd = s.data as ServerData;
          checkAttachable(s.name, sd, v.name, d);
          const mount = sd.driver === 'oci' ? b.mount_path ?? defaultMountPath(v.name) : null;
          if (b.mount_path && sd.driver !== 'oci') throw invalid(`Server "${s.name}" is a VM: its guest sees the volume as a disk and mounts it itself; mount_path is for containers`, 'body/mount_path');
          if (mount && (sd.volumes ?? []).some((x) => x.mount_path === mount)) throw invalid(`Server "${s.name}" already has a volume mounted at ${mount}`, 'body/mount_path', 'Give another --mount-path.');
          const sv: ServerVolume = { id: v.id, serial: d.serial, content: d.content, mount_path: mount, boot: false, delete_on_termination: b.delete_on_termination ?? false };
          const nextV: VolumeData = { ...d, status: 'attaching', fault: null, attachment: { server_id: s.id, server_name: s.name, mount_path: mount, device: null, boot: false, delete_on_termination: sv.delete_on_termination, attached_at: null } };
          return [
            { op: 'update', kind: 'volume', id: v.id, version: v.version, data: nextV },
            { op: 'update', kind: 'server', id: s.id, version: s.version, data: { ...sd, volumes: [...(sd.volumes ?? []), sv] } },
          ];
        }
        checkVolumeAction('detach', v.name, d);
        const att = d.attachment!;
        if (att.boot) throw new YunError('YUN_INVALID_STATE', `Volume "${v.name}" is the root disk of server "${att.server_name}": it cannot be detached`, { extra: { status: d.status }, hint: 'Delete the server; the volume stays unless it was made to go with it.' });
        const s = await ctx.store.get('server', att.server_id);
        const ops: Op[] = [{ op: 'update', kind: 'volume', id: v.id, version: v.version, data: { ...d, status: s ? 'detaching' : 'available', ...(s ? {} : { attachment: null }) } }];
        if (s) {
          const sd = s.data as ServerData;
          if (sd.vm_state === 'suspended') throw new YunError('YUN_INVALID_STATE', `Server "${s.name}" is SUSPENDED: its memory holds the disk, so volumes are detached only once it is resumed or stopped`, { hint: 'yun server resume (or stop) first.' });
          ops.push({ op: 'update', kind: 'server', id: s.id, version: s.version, data: { ...sd, volumes: (sd.volumes ?? []).filter((x) => x.id !== v.id) } });
        }
        return ops;
      }, { objectChanged: true }) as [StoredObject];
    }
    reply.code(202);
    return view(result);
  });

  app.delete('/v1/volumes/:id', {
    config: { action: 'volume.delete' },
    schema: { tags: ['volumes'], summary: 'Delete a volume (its file is freed). Refused while it is attached or has snapshots (409, naming them). 202 while its node deletes it.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'delete volumes');
    const v = await findVolume(req, (req.params as { id: string }).id);
    req.auditTarget = v.id;
    const d = v.data as VolumeData;
    if (d.desired.deleting) return reply.code(202).send(await view(v));
    checkVolumeAction('delete', v.name, d);
    const snaps = await snapshotsOf(ctx.store, v.id);
    if (snaps.length) throw new YunError('YUN_IN_USE', `Volume "${v.name}" has snapshots: ${snaps.map((s) => s.name).join(', ')}`, { extra: { snapshots: snaps.map((s) => s.id) }, hint: 'Delete them first (`yun volume snapshot-rm NAME`).' });
    const users = (await ctx.store.list('volume', { limit: 1000, filters: [{ field: 'source.volume_id', op: 'eq', value: v.id }, { field: 'status', op: 'eq', value: 'creating' }] })).items;
    if (users.length) throw new YunError('YUN_IN_USE', `Volumes are being made from this volume's snapshots: ${users.map((u) => u.name).join(', ')}`, { hint: 'Wait until they are available.' });
    if (!d.node_id) {
      await ctx.store.delete({ kind: 'volume', id: v.id, version: v.version });
      return reply.code(204).send();
    }
    const updated = await ctx.store.update({ kind: 'volume', id: v.id, version: v.version, data: { ...d, status: 'deleting', desired: { ...d.desired, deleting: true, generation: d.desired.generation + 1 } } });
    reply.code(202);
    return view(updated);
  });

  // ---- snapshots ----

  app.post('/v1/snapshots', {
    config: { action: 'snapshot.create' },
    schema: { tags: ['volumes'], summary: 'Snapshot a volume: a copy on its node, taken with the server it is attached to quiesced (a VM paused, a container and its file system frozen). 202: creating until available.', querystring: noQuery, body: snapshotBody, response: { 202: snapshotSchema } },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'snapshot volumes');
    const b = req.body as { name: string; volume: string; description?: string };
    const [, s] = await commitChecked(ctx.store, async () => {
      const v = await findVolume(req, b.volume);
      const d = v.data as VolumeData;
      checkVolumeAction('snapshot', v.name, d);
      if (await ctx.store.getByName('volume_snapshot', v.project_id, b.name)) throw new YunError('YUN_NAME_CONFLICT', `A snapshot named "${b.name}" already exists in project "${p.project.name}"`);
      const project = (await ctx.store.get('project', v.project_id))!;
      const g = await ctx.store.guard(quotaGuard(v.project_id));
      const quota_usage = { snapshots: 1, gigabytes: d.size_gb };
      await checkQuota(ctx.store, project, quota_usage);
      await ctx.scheduler.checkVolumeGrowth(d.node_id!, d.size_gb * GiB);
      const sid = newId();
      const data: SnapshotData = { volume_id: v.id, volume_name: v.name, size_gb: d.size_gb, node_id: d.node_id!, description: b.description ?? '', status: 'creating', quiesced: d.attachment !== null, fault: null, quota_usage };
      return [
        { op: 'guard', key: quotaGuard(v.project_id), version: g },
        { op: 'update', kind: 'volume', id: v.id, version: v.version, data: { ...d, desired: { ...d.desired, snapshots: [...d.desired.snapshots, sid], generation: d.desired.generation + 1 } } },
        { op: 'create', kind: 'volume_snapshot', id: sid, project_id: v.project_id, name: b.name, data },
      ];
    }, { objectChanged: true });
    req.auditTarget = s!.id;
    reply.code(202).header('location', `/v1/snapshots/${s!.id}`);
    return snapView(s!);
  });

  app.get('/v1/snapshots', {
    schema: { tags: ['volumes'], summary: 'List volume snapshots.', querystring: listQuerySchema(snapshotSpec, { projectScoped: true }), response: { 200: listResponseSchema(snapshotSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    const r = await ctx.store.list('volume_snapshot', buildListQuery(q, snapshotSpec, listProjects(req, q)));
    return listBody(req, r, snapView);
  });

  app.get('/v1/snapshots/:id', {
    schema: { tags: ['volumes'], summary: 'Show a snapshot.', params: idParams, querystring: noQuery, response: { 200: snapshotSchema } },
  }, async (req) => snapView(await findSnapshot(req, (req.params as { id: string }).id)));

  app.delete('/v1/snapshots/:id', {
    config: { action: 'snapshot.delete' },
    schema: { tags: ['volumes'], summary: 'Delete a snapshot. Refused while a volume is being made from it. 202 while its node deletes it.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'delete snapshots');
    const ref = (req.params as { id: string }).id;
    const [, s] = await commitChecked(ctx.store, async () => {
      const s = await findSnapshot(req, ref);
      req.auditTarget = s.id;
      const sd = s.data as SnapshotData;
      if (sd.status === 'creating' || sd.status === 'deleting') throw new YunError('YUN_INVALID_STATE', `Snapshot "${s.name}" is ${sd.status}; it is deleted once available (or in error)`, { extra: { status: sd.status } });
      const making = (await ctx.store.list('volume', { limit: 1000, filters: [{ field: 'source.snapshot_id', op: 'eq', value: s.id }, { field: 'status', op: 'eq', value: 'creating' }] })).items;
      if (making.length) throw new YunError('YUN_IN_USE', `Volumes are being made from snapshot "${s.name}": ${making.map((m) => m.name).join(', ')}`, { hint: 'Wait until they are available.' });
      const v = (await ctx.store.get('volume', sd.volume_id))!;
      const d = v.data as VolumeData;
      return [
        { op: 'update', kind: 'volume', id: v.id, version: v.version, data: { ...d, desired: { ...d.desired, snapshots: d.desired.snapshots.filter((x) => x !== s.id), generation: d.desired.generation + 1 } } },
        { op: 'update', kind: 'volume_snapshot', id: s.id, version: s.version, data: { ...sd, status: 'deleting' } },
      ];
    }, { objectChanged: true });
    reply.code(202);
    return snapView(s!);
  });
}

/** Can volume `volName` be attached to server `name` now? (409 naming why otherwise.) */
export function checkAttachable(name: string, sd: ServerData, volName: string, vd: VolumeData): void {
  const status = serverStatus(sd.vm_state, sd.task_state);
  if (sd.desired.deleting || sd.task_state !== null || !['active', 'stopped', 'paused'].includes(sd.vm_state)) {
    throw new YunError('YUN_INVALID_STATE', `Cannot attach volume "${volName}" to server "${name}": it is ${status}${sd.task_state ? ` (task_state ${sd.task_state})` : ''}; volumes are attached to ACTIVE, SHUTOFF or PAUSED servers with no action in progress`, { extra: { status } });
  }
  if (sd.node_id !== vd.node_id) {
    throw new YunError('YUN_INVALID_STATE', `Volume "${volName}" is on node ${vd.node_id} and server "${name}" on node ${sd.node_id}: a volume is on one node's disk and attaches only to servers there`, { extra: { volume_node: vd.node_id, server_node: sd.node_id }, hint: 'Make a copy on the server\'s node (snapshot, then `yun volume create --snapshot`), or create the server with `--volume` so it is placed beside the volume.' });
  }
  if (vd.content === 'disk' && sd.driver === 'oci') {
    throw new YunError('YUN_INVALID_STATE', `Volume "${volName}" holds a VM disk (made from a VM image), which a container cannot mount`, { hint: 'Attach it to a VM, or attach a blank volume to the container.' });
  }
}
