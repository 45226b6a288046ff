/**
 * The image catalogue: the store's `image` records (Glance's images), which name the content of the
 * image store (`ImageStore`, by digest) in a project. Names, what a record holds, how a reference
 * resolves to the record a project may see, and the records' life (status, visibility).
 */
import { YunError } from '../errors/errors.js';
import type { Store, StoredObject } from '../store/store.js';
import { listAll } from '../store/paging.js';
import { accessOf, withAccess, type Visibility } from './access.js';
import { checkActive, killReason, statusOf } from './status.js';
import type { ImageRecord } from './oci.js';
import { VM_MT } from './vm-image.js';
import { normalizeImageName, parseImageName } from './names.js';

/** The name, repository and tag a reference names (`busybox` → busybox:latest; a digest after @ is left out). */
export function imageNameParts(ref: string): { name: string; repository: string; tag: string } {
  const base = ref.split('@')[0]!;
  const p = parseImageName(base);
  if (p) return { name: p.name, repository: p.repository, tag: p.tag };
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  const repository = colon > slash ? base.slice(0, colon) : base;
  const tag = colon > slash ? base.slice(colon + 1) : 'latest';
  return { name: `${repository}:${tag}`, repository, tag };
}

/** A name to give an image: YUN_VALIDATION_FAILED (naming `field`) when it is not one. */
export function checkImageName(ref: string, field = 'name'): void {
  normalizeImageName(ref, field);
}

/** Who may list an image, as the store's `overlaps` filter: the project's own, shared-and-accepted, public. */
export function visibleTo(projectId: string) {
  return { field: 'audience', op: 'overlaps' as const, value: [projectId, '*'] };
}

/**
 * The record `ref` (id, name, digest, or name@digest) names for a project: its own first, then
 * images shared with it or public. A shared image is found by id whatever the member's status (as
 * in Glance), by name only once accepted. A name that several visible images carry, none of them
 * the project's own, is ambiguous: the answer names them. With `use`, the image must be active.
 */
export async function resolveImage(store: Store, projectId: string, ref: string, use?: string): Promise<StoredObject | undefined> {
  const img = await findImage(store, projectId, ref);
  if (img && use) checkActive(img.name, img.data, use);
  return img;
}

async function findImage(store: Store, projectId: string, ref: string): Promise<StoredObject | undefined> {
  const byDigest = async (digest: string) => {
    const own = (await store.list('image', { limit: 1, projects: [projectId], filters: [{ field: 'digest', op: 'eq', value: digest }] })).items[0];
    return own ?? (await store.list('image', { limit: 1, filters: [{ field: 'digest', op: 'eq', value: digest }, visibleTo(projectId)] })).items[0];
  };
  if (/^sha256:[0-9a-f]{64}$/.test(ref)) return byDigest(ref);
  const byId = await store.get('image', ref);
  if (byId && canSee(byId, projectId)) return byId;
  const digestAt = ref.indexOf('@sha256:');
  if (digestAt >= 0) return byDigest(ref.slice(digestAt + 1));
  const name = imageNameParts(ref).name;
  const own = await store.getByName('image', projectId, name);
  if (own) return own;
  const others = (await store.list('image', { limit: 10, filters: [{ field: 'name', op: 'eq', value: name }, visibleTo(projectId)] })).items;
  if (others.length > 1) {
    throw new YunError('YUN_AMBIGUOUS_NAME', `${others.length} images named ${name} are visible to this project (${others.map((o) => `${o.id} of project ${o.project_id}, ${accessOf(o.data).visibility}`).join('; ')})`, { extra: { ids: others.map((o) => o.id) }, hint: 'Name the image by its id, or tag the one you mean into your project (`yun image tag ID NAME`).' });
  }
  return others[0];
}

/** Whether a project may see (and use) an image at all. */
export function canSee(img: StoredObject, projectId: string): boolean {
  if (img.project_id === projectId) return true;
  const { visibility, members } = accessOf(img.data);
  return visibility === 'public' || (visibility === 'shared' && members.some((m) => m.project_id === projectId));
}

/** The record of an image of the store: Glance's fields beside the image's own. */
export function imageData(r: ImageRecord, name: string, source: string): Record<string, unknown> {
  const { repository, tag } = imageNameParts(name);
  const c = r.config.config ?? {};
  const vm = r.kind === 'vm' && r.vm ? r.vm : null;
  const disk = vm ? r.manifest.layers.find((l) => l.mediaType === VM_MT.qcow2 || l.mediaType === VM_MT.raw) : undefined;
  return {
    repository, tag, digest: r.digest, size: r.size, os: r.config.os, architecture: r.config.architecture, source,
    image_created: r.config.created ?? null,
    kind: vm ? 'vm' : 'container',
    status: 'active', status_reason: null,
    ...(vm
      ? {
          // Glance's names beside exact byte counts: min_disk in GiB, min_ram in MiB.
          disk_format: vm.disk_format, container_format: 'bare', virtual_size: vm.virtual_size,
          min_disk_bytes: vm.min_disk_bytes, min_ram_bytes: vm.min_ram_bytes,
          min_disk: Math.ceil(vm.min_disk_bytes / 1024 ** 3), min_ram: Math.ceil(vm.min_ram_bytes / 1024 ** 2),
          cmdline: vm.cmdline, boot: r.manifest.layers.some((l) => l.mediaType === VM_MT.kernel) ? 'kernel' : 'disk',
          ...(disk ? { os_hash_algo: 'sha256', os_hash_value: disk.digest.replace(/^sha256:/, '') } : {}),
        }
      : { container_format: 'docker', disk_format: null, config: { cmd: c.Cmd ?? [], entrypoint: c.Entrypoint ?? [], env: c.Env ?? [], workdir: c.WorkingDir ?? '', user: c.User ?? '', exposed_ports: Object.keys(c.ExposedPorts ?? {}) } }),
    layers: r.manifest.layers.map((l) => ({ digest: l.digest, size: l.size, media_type: l.mediaType })),
  };
}

/**
 * Record an image of the store in a project under its name. A new name starts private (or as
 * asked); a name that exists moves to the new content (tags are names) and keeps who it is shared
 * with — unless `replace` names the record to fill (a queued or saving image getting its data).
 */
export async function recordImage(store: Store, projectId: string, r: ImageRecord, name: string, source: string, opts: { visibility?: Visibility; replace?: StoredObject } = {}): Promise<StoredObject> {
  const data = imageData(r, name, source);
  const norm = imageNameParts(name).name;
  const existing = opts.replace ?? (await store.getByName('image', projectId, norm));
  if (existing) {
    const a = accessOf(existing.data);
    return store.update({ kind: 'image', id: existing.id, version: existing.version, data: { ...data, ...withAccess(existing.project_id, opts.visibility ?? a.visibility, a.members) } });
  }
  return store.create({ kind: 'image', project_id: projectId, name: norm, data: { ...data, ...withAccess(projectId, opts.visibility ?? 'private', []) } });
}

/** The API's view of a record: the derived access lists stay inside; Glance's owner and status always there. */
export function imageView(o: StoredObject): Record<string, unknown> {
  const { audience: _a, member_index: _m, members: _members, saving_manager: _s, ...data } = o.data as Record<string, unknown>;
  return {
    id: o.id, name: o.name, project_id: o.project_id, owner: o.project_id,
    ...data,
    status: statusOf(o.data), status_reason: data.status_reason ?? null, visibility: accessOf(o.data).visibility,
    version: o.version, created_at: o.created_at, updated_at: o.updated_at,
  };
}

/** Remove content from the image store once no image record names it (the store keeps what others name). */
export async function dropUnnamedContent(store: Store, images: { remove(digest: string, keep: string[]): Promise<unknown> }, digest: string): Promise<void> {
  const keep = (await listAll(store, 'image', {})).map((i) => i.data.digest as string | null).filter((d): d is string => Boolean(d));
  if (!keep.includes(digest)) await images.remove(digest, keep);
}

/**
 * A saving image gets its content: active. When the record was deleted meanwhile, the content goes
 * too (unless another image names it) and the answer is undefined.
 */
export async function completeImage(store: Store, images: { remove(digest: string, keep: string[]): Promise<unknown> }, imageId: string, r: ImageRecord, source: string): Promise<StoredObject | undefined> {
  const now = await store.get('image', imageId);
  if (!now) {
    await dropUnnamedContent(store, images, r.digest);
    return undefined;
  }
  return recordImage(store, now.project_id, r, now.name, source, { replace: now });
}

/** A saving image whose upload or snapshot failed: killed, with the error's reason (if it still exists). */
export async function killImage(store: Store, imageId: string, e: unknown): Promise<void> {
  const now = await store.get('image', imageId);
  if (now) await store.update({ kind: 'image', id: imageId, data: { ...now.data, ...killReason(e), saving_manager: null } });
}

/**
 * Images left `saving` by this manager when it stopped (an upload cut off, a server snapshot whose
 * answer never came): killed with the reason, so that none stays saving for ever.
 */
export async function killInterruptedImages(store: Store, managerId: string): Promise<number> {
  const saving = await listAll(store, 'image', { filters: [{ field: 'status', op: 'eq', value: 'saving' }, { field: 'saving_manager', op: 'eq', value: managerId }] });
  for (const img of saving) {
    await store.update({ kind: 'image', id: img.id, version: img.version, data: { ...img.data, status: 'killed', status_code: 'YUN_UNAVAILABLE', status_reason: 'The manager stopped while the image was being saved; its data is incomplete', saving_manager: null } }).catch(() => undefined);
  }
  return saving.length;
}
