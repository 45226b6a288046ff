import { nameSchema } from '../../util/schemas.js';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { flavorSnapshot, type FlavorData, type FlavorSnapshot } from '../../servers/flavor.js';
import type { ImageSnapshot, ServerData, ServerNetwork } from '../../servers/server.js';
import { ACTIONS, allowedActions, applyAction, checkAction, serverStatus, STATUSES, type ServerAction } from '../../servers/states.js';
import type { ManagerContext } from '../context.js';
import { buildListQuery, commonMeta, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema, principal, requireRole, toApi, writeVersion, type ListQueryInput, type ListSpec } from '../http.js';
import { checkQuota } from '../quotas.js';
import { commitChecked, quotaGuard } from '../commit.js';
import type { Op } from '../../store/store.js';
import { findFlavor } from './flavors.js';
import { checkImageName, completeImage, imageNameParts, imageView, killImage, resolveImage } from '../../images/catalog.js';
import { withAccess } from '../../images/access.js';
import { findKeypair } from './keypairs.js';
import { formatSize } from '../../util/size.js';
import { pipeTty } from '../tty.js';
import { newId } from '../../util/ids.js';
import type { ServerVolume } from '../../servers/server.js';
import type { VolumeData } from '../../volumes/volume.js';
import { defaultMountPath, volumeSerial } from '../../volumes/volume.js';
import { checkVolumeAction, releaseFromServer } from '../../volumes/states.js';
import { volumesOf } from '../../volumes/queries.js';
import { checkRefTargets, fileRefsSchema, normalizeRefs, refsFields, type FileRef } from '../../secrets/refs.js';
import { refGuards, resolveRefs } from '../file-refs.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** Nova's limit on user data: 64 KiB once decoded. */
const USER_DATA_MAX = 65535;

/** `status` filters map to vm_states (the status shown at rest). */
const STATUS_VM: Record<string, string> = { BUILD: 'building', ACTIVE: 'active', SHUTOFF: 'stopped', PAUSED: 'paused', SUSPENDED: 'suspended', VERIFY_RESIZE: 'resized', ERROR: 'error' };

const spec: ListSpec = {
  filters: { name: 'name', id: 'id', vm_state: 'vm_state', node_id: 'node_id', driver: 'driver', flavor: 'flavor.name', image: 'image.name' },
  sortKeys: { name: 'name', created_at: 'created_at', updated_at: 'updated_at', id: 'id', vm_state: 'vm_state' },
  defaultSort: 'name',
};

const serverSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    status: { type: 'string', enum: [...STATUSES] }, vm_state: { type: 'string' }, task_state: { type: ['string', 'null'] }, power_state: { type: 'string' },
    flavor: { type: 'object', additionalProperties: true }, image: { type: 'object', additionalProperties: true }, driver: { type: 'string' },
    addresses: { type: 'object', additionalProperties: true }, networks: { type: 'array', items: { type: 'object', additionalProperties: true } },
    node_id: { type: ['string', 'null'] }, node: { type: ['string', 'null'] }, host_status: { type: ['string', 'null'] },
    key_name: { type: ['string', 'null'] }, metadata: { type: 'object', additionalProperties: { type: 'string' } },
    fault: { type: ['object', 'null'], additionalProperties: true }, last_exit: { type: ['object', 'null'], additionalProperties: true },
    allowed_actions: { type: 'array', items: { type: 'string' } }, launched_at: { type: ['string', 'null'] }, message: { type: ['string', 'null'] },
    volumes_attached: { type: 'array', items: { type: 'object', additionalProperties: true } },
    secrets: fileRefsSchema('secret', 'the server'), configs: fileRefsSchema('config', 'the server'),
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;
const metadataSchema = { type: 'object', maxProperties: 128, additionalProperties: { type: 'string', maxLength: 255 }, propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,254}$' } } as const;

const createBody = {
  type: 'object', additionalProperties: false, required: ['name', 'flavor', 'image'],
  properties: {
    name: nameSchema,
    flavor: { type: 'string', minLength: 1, maxLength: 200, description: 'Flavor id or name (`yun flavor ls`).' },
    image: { type: 'string', minLength: 1, maxLength: 300, description: 'Image name, id or digest; a VM image boots on `qemu`, a container image on `oci`.' },
    networks: { type: 'array', maxItems: 8, items: { type: 'string', minLength: 1, maxLength: 200 }, description: 'Networks (names or ids) to attach, the first one carries the default route; `["none"]`: none. Default: the project\'s only network, if it has exactly one.' },
    key_name: { type: 'string', minLength: 1, maxLength: 200, description: 'A key pair of the project (`yun keypair ls`): its public key goes into the seed.' },
    user_data: { type: 'string', maxLength: 90_000, description: 'User data for cloud-init, base64 (at most 64 KiB decoded); a `#!` script runs on the first boot.' },
    metadata: { ...metadataSchema, description: 'Properties (key=value) of the server.' },
    driver: { type: 'string', enum: ['oci', 'qemu'], description: 'Default: what the image is (a VM image: qemu; a container image: oci).' },
    volumes: {
      type: 'array', maxItems: 16, description: 'Volumes to attach (available ones; the server is placed on their node).',
      items: { type: 'object', additionalProperties: false, required: ['volume'], properties: { volume: { type: 'string', minLength: 1, maxLength: 200 }, mount_path: { type: 'string', minLength: 2, maxLength: 255, pattern: '^/' }, delete_on_termination: { type: 'boolean' } } },
    },
    boot_volume: {
      type: 'object', additionalProperties: false, required: ['size'], description: 'Boot from a new volume made from the image (its root disk outlives the server unless delete_on_termination).',
      properties: { size: { type: 'integer', minimum: 1, maximum: 16384, description: 'GiB' }, delete_on_termination: { type: 'boolean', description: 'Default true.' } },
    },
    secrets: { ...fileRefsSchema('secret', 'the server'), description: 'Secrets of the project it receives as files at every boot (a container: tmpfs bind mounts; a VM: through its seed).' },
    configs: { ...fileRefsSchema('config', 'the server'), description: 'Configs of the project it receives as files at every boot.' },
  },
} as const;

const actionBody = {
  type: 'object', additionalProperties: false, required: ['action'],
  properties: {
    action: { type: 'string', enum: Object.keys(ACTIONS).filter((a) => a !== 'delete') },
    image: { type: 'string', minLength: 1, maxLength: 300, description: 'rebuild: the image (default: the server\'s own).' },
    flavor: { type: 'string', minLength: 1, maxLength: 200, description: 'resize: the new flavor.' },
    version: { type: 'integer', minimum: 1, description: 'When given, the action applies only to this version of the server.' },
  },
} as const;

/** What a server (or a volume made from an image) keeps of its image. */
export function imageSnapshot(img: StoredObject): ImageSnapshot {
  const d = img.data as Record<string, unknown>;
  return {
    id: img.id, name: img.name, digest: String(d.digest), kind: d.kind === 'vm' ? 'vm' : 'container',
    min_disk_bytes: Math.max(Number(d.min_disk_bytes ?? 0), Number(d.virtual_size ?? 0)), min_ram_bytes: Number(d.min_ram_bytes ?? 0),
  };
}

/** A MAC in QEMU's range (52:54:00), random per server and network. */
function newMac(): string {
  const b = randomBytes(3);
  return `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

export function serverRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'clock' | 'dispatcher' | 'images' | 'log' | 'membership' | 'scheduler' | 'store'>): void {
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const s = (p.cloudAdmin ? await ctx.store.get('server', ref) : undefined) ?? (await findInProjects(ctx.store, 'server', ref, [p.project.id]));
    if (!s) throw notFound('server', ref);
    return s;
  };

  const view = async (o: StoredObject, cache: Map<string, StoredObject | null> = new Map()) => {
    const d = o.data as ServerData;
    const get = async (kind: string, id: string) => {
      if (!cache.has(id)) cache.set(id, (await ctx.store.get(kind, id)) ?? null);
      return cache.get(id)!;
    };
    const node = d.node_id ? await get('node', d.node_id) : null;
    const addresses: Record<string, { addr: string; version: 4; mac: string }[]> = {};
    const networks = [];
    for (const n of d.networks) {
      const net = await get('network', n.id);
      const name = net?.name ?? n.id;
      if (n.address) (addresses[name] ??= []).push({ addr: n.address, version: 4, mac: n.mac });
      networks.push({ id: n.id, name, address: n.address, mac: n.mac });
    }
    const { user_data_b64, public_keys: _k, desired: _d, observed_generation: _g, events: _e, quota_usage: _q, resize_power: _r, volumes: vols, ...rest } = toApi(o) as Record<string, unknown> & ServerData;
    const volumes_attached = [];
    for (const v of vols ?? []) {
      const vo = await get('volume', v.id);
      const att = (vo?.data as VolumeData | undefined)?.attachment;
      volumes_attached.push({ id: v.id, name: vo?.name ?? null, status: (vo?.data as VolumeData | undefined)?.status ?? null, device: att?.device ?? null, mount_path: v.mount_path, boot: v.boot, delete_on_termination: v.delete_on_termination });
    }
    return {
      ...rest,
      status: serverStatus(d.vm_state, d.task_state),
      addresses, networks, volumes_attached,
      node: node?.name ?? null,
      host_status: !d.node_id ? null : !node ? 'UNKNOWN' : node.data.status === 'ready' ? (node.data.availability === 'active' ? 'UP' : 'MAINTENANCE') : 'DOWN',
      has_user_data: user_data_b64 !== null,
      allowed_actions: allowedActions(d),
      message: (d.message as string | undefined) ?? null,
    };
  };

  /** Refuse, before anything is made, a flavor too small for the image (naming both sizes). */
  const checkFits = (f: FlavorSnapshot, img: ImageSnapshot) => {
    if (f.disk_gb > 0 && f.disk_gb * GiB < img.min_disk_bytes) {
      throw new YunError('YUN_FLAVOR_TOO_SMALL', `Flavor ${f.name}'s root disk (${f.disk_gb} GiB) is smaller than image ${img.name} needs (${formatSize(img.min_disk_bytes)})`, { extra: { flavor_disk_bytes: f.disk_gb * GiB, image_min_disk_bytes: img.min_disk_bytes } });
    }
    if (f.ram_mb * MiB < img.min_ram_bytes) {
      throw new YunError('YUN_FLAVOR_TOO_SMALL', `Flavor ${f.name}'s RAM (${f.ram_mb} MiB) is less than image ${img.name} needs (${formatSize(img.min_ram_bytes)})`, { extra: { flavor_ram_bytes: f.ram_mb * MiB, image_min_ram_bytes: img.min_ram_bytes } });
    }
  };

  const checkDriver = (driver: 'oci' | 'qemu', img: ImageSnapshot, field: string) => {
    const runs = driver === 'qemu' ? 'vm' : 'container';
    if (img.kind !== runs) {
      throw new YunError('YUN_VALIDATION_FAILED', `Image ${img.name} is a ${img.kind === 'vm' ? 'VM' : 'container'} image, and the ${driver} driver runs ${runs === 'vm' ? 'VM' : 'container'} images`, { extra: { field }, hint: `Leave --driver out (the image chooses), or pick a ${runs === 'vm' ? 'VM' : 'container'} image.` });
    }
  };

  const resolveServerImage = async (projectId: string, ref: string, field: string) => {
    const img = await resolveImage(ctx.store, projectId, ref, 'boot a server from it');
    if (!img) throw new YunError('YUN_VALIDATION_FAILED', `Image "${ref}" does not exist in this project (nor is it shared with it or public)`, { extra: { field }, hint: 'Import one (`yun image import`, `npm run image:tinyvm` for a tiny VM image) or list them with `yun image ls`.' });
    return imageSnapshot(img);
  };

  const resolveNetworks = async (projectId: string, refs: string[] | undefined): Promise<ServerNetwork[]> => {
    if (refs && refs.length === 1 && refs[0] === 'none') return [];
    if (!refs || refs.length === 0) {
      const mine = (await ctx.store.list('network', { limit: 2, projects: [projectId] })).items;
      if (mine.length <= 1) return mine.map((n) => ({ id: n.id, address: null, mac: newMac() }));
      throw new YunError('YUN_VALIDATION_FAILED', 'This project has several networks, so the server must say which to join', { extra: { field: 'body/networks' }, hint: 'Give --network NAME (repeatable), or --network none.' });
    }
    const out: ServerNetwork[] = [];
    for (const r of refs) {
      const n = await findInProjects(ctx.store, 'network', r, [projectId]);
      if (!n) throw new YunError('YUN_VALIDATION_FAILED', `Network "${r}" does not exist in this project`, { extra: { field: 'body/networks' }, hint: 'List networks with `yun network ls`; make one with `yun network create NAME`.' });
      if (out.some((x) => x.id === n.id)) throw new YunError('YUN_VALIDATION_FAILED', `Network "${r}" is given twice`, { extra: { field: 'body/networks' } });
      out.push({ id: n.id, address: null, mac: newMac() });
    }
    return out;
  };

  app.post('/v1/servers', {
    config: { action: 'server.create' },
    schema: { tags: ['servers'], summary: 'Create a server: an instance (a VM on qemu, a system container on oci) booted from an image with a flavor. Answers 202: it is BUILD until ACTIVE (or ERROR with a fault).', querystring: noQuery, body: createBody, response: { 202: serverSchema } },
  }, async (req, reply) => {
    const p = requireRole(req, 'member', 'create servers');
    const b = req.body as { name: string; flavor: string; image: string; networks?: string[]; key_name?: string; user_data?: string; metadata?: Record<string, string>; driver?: 'oci' | 'qemu'; volumes?: { volume: string; mount_path?: string; delete_on_termination?: boolean }[]; boot_volume?: { size: number; delete_on_termination?: boolean }; secrets?: Partial<FileRef>[]; configs?: Partial<FileRef>[] };
    if (await ctx.store.getByName('server', p.project.id, b.name)) {
      throw new YunError('YUN_NAME_CONFLICT', `A server named "${b.name}" already exists in project "${p.project.name}"`, { hint: 'Choose another name, or remove the existing server first (`yun server rm`).' });
    }
    if (await ctx.store.getByName('service', p.project.id, b.name)) {
      throw new YunError('YUN_NAME_CONFLICT', `A service named "${b.name}" already exists in project "${p.project.name}": a server and a service share names in the project's DNS`, { hint: 'Choose another name.' });
    }
    const fl = await findFlavor(ctx, req, b.flavor, 'body/flavor');
    const flavor = flavorSnapshot(fl.id, fl.name, fl.data as FlavorData);
    const image = await resolveServerImage(p.project.id, b.image, 'body/image');
    const driver = b.driver ?? (image.kind === 'vm' ? 'qemu' : 'oci');
    checkDriver(driver, image, 'body/driver');
    if (!b.boot_volume) checkFits(flavor, image);
    else if (b.boot_volume.size * GiB < image.min_disk_bytes) throw new YunError('YUN_VALIDATION_FAILED', `Image ${image.name} needs a root volume of at least ${Math.ceil(image.min_disk_bytes / GiB)} GiB (asked: ${b.boot_volume.size})`, { extra: { field: 'body/boot_volume/size' } });
    const networks = await resolveNetworks(p.project.id, b.networks);
    let publicKeys: string[] = [];
    if (b.key_name) {
      const k = await findKeypair(ctx, p.project.id, b.key_name);
      if (!k) throw new YunError('YUN_VALIDATION_FAILED', `Key pair "${b.key_name}" does not exist in this project`, { extra: { field: 'body/key_name' }, hint: 'Import one with `yun keypair create NAME --public-key ~/.ssh/id_ed25519.pub`.' });
      publicKeys = [String(k.data.public_key)];
    }
    if (b.user_data !== undefined) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b.user_data) || b.user_data.length % 4 !== 0) throw new YunError('YUN_VALIDATION_FAILED', 'user_data is not base64', { extra: { field: 'body/user_data' }, hint: 'Encode it (the CLI does: `--user-data FILE`).' });
      const n = Buffer.from(b.user_data, 'base64').length;
      if (n > USER_DATA_MAX) throw new YunError('YUN_VALIDATION_FAILED', `user_data is ${n} bytes once decoded; at most ${USER_DATA_MAX} are allowed`, { extra: { field: 'body/user_data' } });
    }
    const files = refsFields({ secrets: normalizeRefs(b.secrets, 'secret'), configs: normalizeRefs(b.configs, 'config') });
    const quota_usage = { instances: 1, cores: flavor.vcpus, ram: flavor.ram_mb * MiB };
    const now = ctx.clock.iso();
    const serverId = newId();
    const volOps: Op[] = [];
    const serverVolumes: ServerVolume[] = [];
    const seenMounts = new Set<string>();
    for (const [i, ref] of (b.volumes ?? []).entries()) {
      const v = await findInProjects(ctx.store, 'volume', ref.volume, [p.project.id]);
      if (!v) throw new YunError('YUN_VALIDATION_FAILED', `Volume "${ref.volume}" does not exist in this project`, { extra: { field: `body/volumes/${i}` }, hint: 'List them with `yun volume ls`.' });
      const vd = v.data as VolumeData;
      checkVolumeAction('attach', v.name, vd);
      if (vd.content === 'disk' && driver === 'oci') throw new YunError('YUN_VALIDATION_FAILED', `Volume "${v.name}" holds a VM disk, which a container cannot mount`, { extra: { field: `body/volumes/${i}` } });
      if (serverVolumes.some((x) => x.id === v.id)) throw new YunError('YUN_VALIDATION_FAILED', `Volume "${v.name}" is given twice`, { extra: { field: `body/volumes/${i}` } });
      const first = serverVolumes.length ? (await ctx.store.get('volume', serverVolumes[0]!.id))!.data as VolumeData : null;
      if (first && first.node_id !== vd.node_id) throw new YunError('YUN_VALIDATION_FAILED', `The volumes are on different nodes (${first.node_id}, ${vd.node_id}); a server's volumes are all on its node`, { extra: { field: `body/volumes/${i}` } });
      const mount = driver === 'oci' ? ref.mount_path ?? defaultMountPath(v.name) : null;
      if (mount && seenMounts.has(mount)) throw new YunError('YUN_VALIDATION_FAILED', `Two volumes would be mounted at ${mount}`, { extra: { field: `body/volumes/${i}/mount_path` } });
      if (mount) seenMounts.add(mount);
      const sv: ServerVolume = { id: v.id, serial: vd.serial, content: vd.content, mount_path: mount, boot: false, delete_on_termination: ref.delete_on_termination ?? false };
      serverVolumes.push(sv);
      volOps.push({ op: 'update', kind: 'volume', id: v.id, version: v.version, data: { ...vd, status: 'attaching', attachment: { server_id: serverId, server_name: b.name, mount_path: mount, device: null, boot: false, delete_on_termination: sv.delete_on_termination, attached_at: null } } });
    }
    checkRefTargets(files, 'body', driver === 'oci' ? [...seenMounts] : []);
    await resolveRefs(ctx.store, files, p.project.id, 'body');
    const volumeQuota = { volumes: 0, gigabytes: 0 };
    if (b.boot_volume) {
      const vid = newId();
      const name = `${b.name}-root`;
      if (await ctx.store.getByName('volume', p.project.id, name)) throw new YunError('YUN_NAME_CONFLICT', `A volume named "${name}" (the root volume this server would get) already exists`, { hint: 'Choose another server name, or rename that volume.' });
      const dot = b.boot_volume.delete_on_termination ?? true;
      const content = image.kind === 'vm' ? 'disk' as const : 'ext4' as const;
      const vd: VolumeData = {
        size_gb: b.boot_volume.size, volume_type: 'file', description: `root disk of server ${b.name}`, status: 'creating', node_id: null, source: { kind: 'image', image }, content, bootable: true,
        serial: volumeSerial(vid), attachment: { server_id: serverId, server_name: b.name, mount_path: null, device: null, boot: true, delete_on_termination: dot, attached_at: null },
        desired: { size_gb: b.boot_volume.size, snapshots: [], deleting: false, generation: 1 }, observed_generation: 0, fault: null, quota_usage: { volumes: 1, gigabytes: b.boot_volume.size },
      };
      volumeQuota.volumes = 1;
      volumeQuota.gigabytes = b.boot_volume.size;
      serverVolumes.unshift({ id: vid, serial: vd.serial, content, mount_path: null, boot: true, delete_on_termination: dot });
      volOps.push({ op: 'create', kind: 'volume', id: vid, project_id: p.project.id, name, data: vd });
    }
    const data: ServerData = {
      flavor, image, driver, networks, key_name: b.key_name ?? null, public_keys: publicKeys, user_data_b64: b.user_data ?? null, metadata: b.metadata ?? {},
      node_id: null, vm_state: 'building', task_state: 'scheduling', power_state: 'nostate', fault: null,
      desired: { power: 'active', generation: 1, op: null, deleting: false }, observed_generation: 0,
      old_flavor: null, resize_power: null, last_exit: null, launched_at: null,
      events: [{ action: 'create', request_id: req.id, user_id: p.user.id, start_time: now, finish_time: null, result: null, message: null }],
      quota_usage,
      ...(serverVolumes.length ? { volumes: serverVolumes } : {}),
      ...files,
    };
    // The quota check holds against concurrent creates (the guard), as for services; the volumes'
    // versions hold against another attach at the same time.
    const [s] = await commitChecked(ctx.store, async () => {
      const g = await ctx.store.guard(quotaGuard(p.project.id));
      await checkQuota(ctx.store, p.project, { ...quota_usage, ...volumeQuota });
      return [{ op: 'guard', key: quotaGuard(p.project.id), version: g }, ...(await refGuards(ctx.store, files, 'body')), { op: 'create', kind: 'server', id: serverId, project_id: p.project.id, name: b.name, data }, ...volOps];
    });
    req.auditTarget = s!.id;
    ctx.scheduler.kick();
    reply.code(202).header('location', `/v1/servers/${s!.id}`).header('etag', `"${s!.version}"`);
    return view(s!);
  });

  app.get('/v1/servers', {
    schema: {
      tags: ['servers'], summary: 'List servers (filter by name, status, vm_state, node_id, driver, flavor, image).',
      querystring: (() => {
        const q = listQuerySchema(spec, { projectScoped: true }) as { properties: Record<string, unknown> };
        q.properties.status = { type: 'string', enum: Object.keys(STATUS_VM), description: 'Only servers with this status at rest.' };
        return q;
      })(),
      response: { 200: listResponseSchema(serverSchema) },
    },
  }, async (req) => {
    const q = req.query as ListQueryInput & { status?: string };
    const lq = buildListQuery(q, spec, listProjects(req, q));
    if (q.status) lq.filters = [...(lq.filters ?? []), { field: 'vm_state', op: 'eq', value: STATUS_VM[q.status]! }];
    const r = await ctx.store.list('server', lq);
    const cache = new Map<string, StoredObject | null>();
    const items = [];
    for (const o of r.items) items.push(await view(o, cache));
    return { ...listBody(req, r, (o) => ({ id: o.id })), items };
  });

  app.get('/v1/servers/:id', {
    schema: { tags: ['servers'], summary: 'Show a server (by id or name).', params: idParams, querystring: noQuery, response: { 200: serverSchema } },
  }, async (req, reply) => {
    const s = await find(req, (req.params as { id: string }).id);
    reply.header('etag', `"${s.version}"`);
    return view(s);
  });

  app.get('/v1/servers/:id/actions', {
    schema: { tags: ['servers'], summary: 'The server\'s action log (its last 50 actions and events), newest last.', params: idParams, querystring: noQuery },
  }, async (req) => {
    const s = await find(req, (req.params as { id: string }).id);
    return { items: (s.data as ServerData).events };
  });

  /** Apply an action with optimistic concurrency: re-read and re-check on a version conflict. */
  /** Apply an action, its checks run again when the server or its project's quota moved on meanwhile. */
  const act = async (req: FastifyRequest, ref: string, action: ServerAction, resolveArgs: (s: StoredObject) => Promise<{ image?: ImageSnapshot; flavor?: FlavorSnapshot }>, expected?: number) => {
    const p = principal(req);
    const [updated] = await commitChecked(ctx.store, async () => {
      const s = await find(req, ref);
      req.auditTarget = s.id;
      if (expected !== undefined && s.version !== expected) {
        throw new YunError('YUN_VERSION_CONFLICT', `Server "${s.name}" is at version ${s.version}, but the request was based on version ${expected}`, { extra: { current_version: s.version } });
      }
      const d = s.data as ServerData;
      checkAction(action, s.name, d);
      let next = applyAction(d, action, { now: ctx.clock.iso(), request_id: req.id, user_id: p.user.id }, await resolveArgs(s));
      const ops: Op[] = [];
      if (action === 'resize' || action === 'resize_revert') {
        const f = next.flavor;
        const usage = { instances: 1, cores: f.vcpus, ram: f.ram_mb * MiB };
        const g = await ctx.store.guard(quotaGuard(s.project_id));
        const project = (await ctx.store.get('project', s.project_id))!;
        await checkQuota(ctx.store, project, { cores: usage.cores - d.quota_usage.cores, ram: usage.ram - d.quota_usage.ram });
        next = { ...next, quota_usage: usage };
        ops.push({ op: 'guard', key: quotaGuard(s.project_id), version: g });
      }
      return [...ops, { op: 'update', kind: 'server', id: s.id, version: s.version, data: next }];
    }, { objectChanged: expected === undefined });
    return updated!;
  };

  app.post('/v1/servers/:id/actions', {
    config: { action: 'server.action' },
    schema: {
      tags: ['servers'],
      summary: 'Act on a server: start, stop, reboot, reboot_hard, pause, unpause, suspend, resume, rebuild (image), resize (flavor), resize_confirm, resize_revert. 409 when its state does not allow it (the error names the state and the allowed ones). Answers 202 with the server.',
      params: idParams, querystring: noQuery, body: actionBody, response: { 202: serverSchema },
    },
  }, async (req, reply) => {
    requireRole(req, 'member', 'act on servers');
    const b = req.body as { action: ServerAction; image?: string; flavor?: string; version?: number };
    const ref = (req.params as { id: string }).id;
    if (b.image !== undefined && b.action !== 'rebuild') throw new YunError('YUN_VALIDATION_FAILED', `image is only for rebuild, not ${b.action}`, { extra: { field: 'body/image' } });
    if (b.flavor !== undefined && b.action !== 'resize') throw new YunError('YUN_VALIDATION_FAILED', `flavor is only for resize, not ${b.action}`, { extra: { field: 'body/flavor' } });
    if (b.action === 'resize' && b.flavor === undefined) throw new YunError('YUN_VALIDATION_FAILED', 'resize needs the new flavor', { extra: { field: 'body/flavor' }, hint: 'yun server resize --flavor m1.small SERVER' });
    const updated = await act(req, ref, b.action, async (s) => {
      const d = s.data as ServerData;
      if (b.action === 'rebuild') {
        if ((d.volumes ?? []).some((v) => v.boot)) throw new YunError('YUN_INVALID_STATE', `Server "${s.name}" boots from a volume: a rebuild would replace the volume's contents, which Yunstack does not do behind your back`, { hint: 'Delete the server and create it again from the image (or from a new volume).' });
        const image = b.image ? await resolveServerImage(s.project_id, b.image, 'body/image') : d.image;
        checkDriver(d.driver, image, 'body/image');
        checkFits(d.flavor, image);
        return { image };
      }
      if (b.action === 'resize') {
        const fl = await findFlavor(ctx, req, b.flavor!, 'body/flavor');
        if (fl.id === d.flavor.id) throw new YunError('YUN_VALIDATION_FAILED', `Server "${s.name}" already has flavor ${fl.name}`, { extra: { field: 'body/flavor' }, hint: 'Resize to another flavor.' });
        const flavor = flavorSnapshot(fl.id, fl.name, fl.data as FlavorData);
        checkFits(flavor, d.image);
        await ctx.scheduler.checkResize(s.id, d, flavor);
        return { flavor };
      }
      return {};
    }, writeVersion(req, b, false));
    reply.code(202).header('etag', `"${updated.version}"`);
    return view(updated);
  });

  app.delete('/v1/servers/:id', {
    config: { action: 'server.delete' },
    schema: { tags: ['servers'], summary: 'Delete a server: its instance, root disk and addresses are freed. 202 while its node destroys it; 204 when nothing ran yet.', params: idParams, querystring: noQuery },
  }, async (req, reply) => {
    requireRole(req, 'member', 'delete servers');
    const ref = (req.params as { id: string }).id;
    const s = await find(req, ref);
    req.auditTarget = s.id;
    const d = s.data as ServerData;
    const node = d.node_id ? await ctx.store.get('node', d.node_id) : undefined;
    if (!d.node_id || !node) {
      // Nothing runs anywhere (never scheduled, or its node was removed from the cluster): its
      // volumes are released (never made: gone) in the same batch.
      const ops: Op[] = [{ op: 'delete', kind: 'server', id: s.id, ...(writeVersion(req, undefined, false) !== undefined ? { version: writeVersion(req, undefined, false) } : {}) }];
      for (const v of await volumesOf(ctx.store, s.id)) {
        const vd = v.data as VolumeData;
        if (!vd.node_id) ops.push({ op: 'delete', kind: 'volume', id: v.id, version: v.version });
        else ops.push({ op: 'update', kind: 'volume', id: v.id, version: v.version, data: releaseFromServer(vd) });
      }
      await ctx.store.batch(ops);
      ctx.scheduler.kick();
      return reply.code(204).send();
    }
    if (d.desired.deleting) return reply.code(202).send(await view(s));
    const updated = await act(req, ref, 'delete', async () => ({}), writeVersion(req, undefined, false));
    reply.code(202);
    return view(updated);
  });

  app.post('/v1/servers/:id/image', {
    config: { action: 'server.image_create' },
    schema: {
      tags: ['servers'],
      summary: 'Make an image of the server\'s root disk (Nova\'s createImage): a VM\'s disk flattened to one qcow2 (its kernel, initrd and command line kept), a container\'s root file system; the server is quiesced for the copy (a VM paused, a container frozen). Answers 202 with the image, saving; it becomes active once it is in the store, or killed with the reason.',
      params: idParams, querystring: noQuery,
      body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 255, description: 'The new image\'s name (REPO[:TAG]).' } } },
    },
  }, async (req, reply) => {
    requireRole(req, 'member', 'make images of servers');
    const s = await find(req, (req.params as { id: string }).id);
    req.auditTarget = s.id;
    const d = s.data as ServerData;
    const name = (req.body as { name: string }).name;
    checkImageName(name, 'body/name');
    const status = serverStatus(d.vm_state, d.task_state);
    if (!d.node_id || d.task_state !== null || !['active', 'stopped', 'paused'].includes(d.vm_state) || d.desired.deleting) {
      throw new YunError('YUN_INVALID_STATE', `Cannot make an image of server "${s.name}": it is ${status}${d.task_state ? ` (task_state ${d.task_state})` : ''}; an image is made of an ACTIVE, SHUTOFF or PAUSED server with no action in progress`, { extra: { status } });
    }
    const { name: norm, repository, tag } = imageNameParts(name);
    if (await ctx.store.getByName('image', s.project_id, norm)) {
      throw new YunError('YUN_NAME_CONFLICT', `An image named ${norm} already exists in this project`, { extra: { field: 'body/name' }, hint: 'Choose another name (a tag such as NAME:2), or remove that image first.' });
    }
    const source = `server:${s.id}`;
    const vm = d.image.kind === 'vm';
    // The image exists at once, saving (Nova's createImage); it is active when the node's copy is in the store.
    const img = await ctx.store.create({
      kind: 'image', project_id: s.project_id, name: norm,
      data: {
        repository, tag, digest: null, size: null, source, kind: d.image.kind, status: 'saving', status_reason: null, saving_manager: ctx.membership.localNodeId ?? null,
        disk_format: vm ? 'qcow2' : null, container_format: vm ? 'bare' : 'docker', min_disk_bytes: d.image.min_disk_bytes, min_ram_bytes: d.image.min_ram_bytes,
        ...withAccess(s.project_id, 'private', []),
      },
    });
    void saveServerImage(s.id, s.name, d.node_id, img.id, norm, source, d.image);
    reply.code(202).header('location', `/v1/images/${img.id}`);
    return imageView(img);
  });

  /** The node's copy of a server's root disk into the image store, then the image active — or killed, with the reason. */
  const saveServerImage = async (serverId: string, serverName: string, nodeId: string, imageId: string, name: string, source: string, from: ImageSnapshot) => {
    try {
      const r = await ctx.dispatcher.call(nodeId, 'export_image', { server_id: serverId, name, min_disk_bytes: from.min_disk_bytes, min_ram_bytes: from.min_ram_bytes }, 30 * 60_000);
      const digest = String(r.digest);
      const rec = await ctx.images.image(digest).catch(() => undefined);
      if (!rec) {
        throw new YunError('YUN_UNAVAILABLE', `The image of server "${serverName}" was made on its node (${digest}), but that node keeps its own image store, which this manager cannot read yet`, { hint: 'Images of servers are made on the manager\'s own node for now; see docs/volumes.md (Not yet).' });
      }
      await completeImage(ctx.store, ctx.images, imageId, rec, source);
    } catch (e) {
      ctx.log.warn({ err: e, server_id: serverId, image_id: imageId }, 'image of server failed');
      await killImage(ctx.store, imageId, e).catch(() => undefined);
    }
  };

  app.get('/v1/servers/:id/console-log', {
    schema: {
      tags: ['servers'], summary: 'The end of the server\'s console output (the guest\'s serial console; a container\'s output).', params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { lines: { type: 'integer', minimum: 1, maximum: 100_000, description: 'Only the last N lines (default: up to 1 MiB of output).' } } },
    },
  }, async (req) => {
    const s = await find(req, (req.params as { id: string }).id);
    const d = s.data as ServerData;
    if (!d.node_id) throw new YunError('YUN_INVALID_STATE', `Server "${s.name}" has no console yet: it is ${serverStatus(d.vm_state, d.task_state)} and was never placed on a node`, { hint: '' });
    const q = req.query as { lines?: number };
    const r = await ctx.dispatcher.call(d.node_id, 'console_log', { server_id: s.id, tail_bytes: 1024 * 1024 });
    let output = String((r as { output?: string }).output ?? '');
    if (q.lines !== undefined) output = output.split('\n').slice(-q.lines - (output.endsWith('\n') ? 1 : 0)).join('\n');
    return { output };
  });

  app.get('/v1/servers/:id/console', {
    websocket: true,
    config: { action: 'server.console' },
    schema: {
      tags: ['servers'],
      summary: 'The server\'s interactive console (WebSocket): the serial console of a VM, a shell in a container. Binary frames carry the terminal both ways; a text frame {"resize":{"rows","cols"}} resizes; the server ends with a text frame {"exit_code"}.',
      params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { rows: { type: 'integer', minimum: 1, maximum: 1000, default: 24 }, cols: { type: 'integer', minimum: 1, maximum: 1000, default: 80 } } },
    },
    preValidation: async (req: FastifyRequest) => {
      requireRole(req, 'member', 'use server consoles');
      const s = await find(req, (req.params as { id: string }).id);
      const d = s.data as ServerData;
      if (!d.node_id || d.power_state !== 'running') throw new YunError('YUN_INVALID_STATE', `Server "${s.name}" is ${serverStatus(d.vm_state, d.task_state)} (power ${d.power_state}): its console answers only while it runs`, { hint: 'Start it first (`yun server start`).' });
      req.auditTarget = s.id;
      (req as FastifyRequest & { consoleOf?: { id: string; node: string } }).consoleOf = { id: s.id, node: d.node_id };
    },
  } as never, ((socket: import('ws').WebSocket, req: FastifyRequest) => {
    const target = (req as FastifyRequest & { consoleOf: { id: string; node: string } }).consoleOf;
    const q = req.query as { rows: number; cols: number };
    pipeTty(socket, () => ctx.dispatcher.openTty(target.node, target.id, [], { rows: q.rows, cols: q.cols }, (b) => socket.send(b), (code, error) => {
      socket.send(JSON.stringify({ exit_code: code, ...(error ? { error } : {}) }));
      socket.close(1000, 'exited');
    }, { console: true }));
  }) as never);

}
