/**
 * Who may see and use an image (Glance's visibility and image members), as pure functions of the
 * image's record: the routes read and write through these, and the store's `audience` list lets a
 * single query find every image a project may see.
 *
 * - `private`: the owner project only.
 * - `shared`: the owner and the projects it added as members. A member sees the image in its
 *   lists once it has accepted; pending and rejected members may still use it by id (as in Glance).
 * - `public`: every project (only a cloud administrator may publish).
 */
import { YunError } from '../errors/errors.js';

export const VISIBILITIES = ['private', 'shared', 'public'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const;
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

export interface ImageMember {
  project_id: string;
  status: MemberStatus;
  created_at: string;
  updated_at: string;
}

/** The access fields of an image's data. */
export interface ImageAccess {
  visibility: Visibility;
  members: ImageMember[];
  /** Projects that see the image in their lists ('*' for every project): derived, never set by hand. */
  audience: string[];
  /** `PROJECT:STATUS` of each member while the image is shared: derived, for member_status lists. */
  member_index: string[];
}

/** What a project is to an image: its owner, a member (in some status), or someone it is public to. */
export type Relation = { kind: 'owner' } | { kind: 'member'; status: MemberStatus } | { kind: 'public' };

const MAX_MEMBERS = 128;

/** The access fields of stored data, with defaults for records made before visibility existed. */
export function accessOf(data: Record<string, unknown>): { visibility: Visibility; members: ImageMember[] } {
  const v = data.visibility;
  return {
    visibility: (VISIBILITIES as readonly unknown[]).includes(v) ? (v as Visibility) : 'private',
    members: Array.isArray(data.members) ? (data.members as ImageMember[]) : [],
  };
}

/** The access fields to store, the derived lists recomputed from visibility and members. */
export function withAccess(owner: string, visibility: Visibility, members: ImageMember[]): ImageAccess {
  const shared = visibility === 'shared';
  const audience = [owner, ...(visibility === 'public' ? ['*'] : []), ...(shared ? members.filter((m) => m.status === 'accepted').map((m) => m.project_id) : [])];
  return { visibility, members, audience: [...new Set(audience)], member_index: shared ? members.map((m) => `${m.project_id}:${m.status}`) : [] };
}

/** How `projectId` relates to an image owned by `owner`; undefined when it may not see it at all. */
export function relation(owner: string, data: Record<string, unknown>, projectId: string): Relation | undefined {
  if (owner === projectId) return { kind: 'owner' };
  const { visibility, members } = accessOf(data);
  if (visibility === 'public') return { kind: 'public' };
  if (visibility === 'shared') {
    const m = members.find((x) => x.project_id === projectId);
    if (m) return { kind: 'member', status: m.status };
  }
  return undefined;
}

/** A new visibility: publishing takes a cloud administrator; members are kept (and count again when shared again). */
export function changeVisibility(owner: string, data: Record<string, unknown>, to: Visibility, opts: { cloudAdmin: boolean; name: string }): ImageAccess {
  const { visibility, members } = accessOf(data);
  if (to === 'public' && visibility !== 'public' && !opts.cloudAdmin) {
    throw new YunError('YUN_FORBIDDEN', `Only a cloud administrator may make image ${opts.name} public (visible to every project)`, { hint: 'Share it with the projects that need it instead: `yun image set IMAGE --visibility shared`, then `yun image member add IMAGE PROJECT`.' });
  }
  return withAccess(owner, to, members);
}

/** The owner adds a project as a member (pending until that project accepts). */
export function addMember(owner: string, data: Record<string, unknown>, projectId: string, now: string, name: string): ImageAccess {
  const { visibility, members } = accessOf(data);
  if (visibility !== 'shared') {
    throw new YunError('YUN_INVALID_STATE', `Image ${name} is ${visibility}: only a shared image has members`, { extra: { visibility }, hint: 'Make it shared first: `yun image set IMAGE --visibility shared`.' });
  }
  if (projectId === owner) throw new YunError('YUN_VALIDATION_FAILED', `Project ${projectId} owns image ${name}; it cannot also be a member`, { extra: { field: 'body/member' } });
  if (members.some((m) => m.project_id === projectId)) throw new YunError('YUN_NAME_CONFLICT', `Project ${projectId} is already a member of image ${name}`, { hint: 'List the members with `yun image member ls IMAGE`.' });
  if (members.length >= MAX_MEMBERS) throw new YunError('YUN_QUOTA_EXCEEDED', `Image ${name} already has ${members.length} members, the most an image may have`, { hint: 'Remove members it no longer needs, or make the image public (a cloud administrator).' });
  return withAccess(owner, visibility, [...members, { project_id: projectId, status: 'pending', created_at: now, updated_at: now }]);
}

/** A member accepts or rejects (or sets back to pending) the image shared with it. */
export function setMemberStatus(owner: string, data: Record<string, unknown>, projectId: string, status: MemberStatus, now: string, name: string): ImageAccess {
  const { visibility, members } = accessOf(data);
  const i = members.findIndex((m) => m.project_id === projectId);
  if (i < 0 || visibility !== 'shared') throw new YunError('YUN_NOT_FOUND', `Image ${name} is not shared with project ${projectId}`, { hint: 'Ask the image\'s owner to add your project: `yun image member add IMAGE PROJECT`.' });
  const next = members.map((m, j) => (j === i ? { ...m, status, updated_at: now } : m));
  return withAccess(owner, visibility, next);
}

/** The owner removes a member: the project loses the image (servers already made from it keep running). */
export function removeMember(owner: string, data: Record<string, unknown>, projectId: string, name: string): ImageAccess {
  const { visibility, members } = accessOf(data);
  if (!members.some((m) => m.project_id === projectId)) throw new YunError('YUN_NOT_FOUND', `Project ${projectId} is not a member of image ${name}`, { hint: 'List the members with `yun image member ls IMAGE`.' });
  return withAccess(owner, visibility, members.filter((m) => m.project_id !== projectId));
}
