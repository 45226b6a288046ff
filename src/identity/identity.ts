import { createHash } from 'node:crypto';
import { YunError } from '../errors/errors.js';
import { GLOBAL, type Store, type StoredObject, type TokenRecord } from '../store/store.js';
import { newSecret } from '../util/ids.js';
import type { Clock } from '../util/clock.js';
import { hashPassword, verifyPassword } from './passwords.js';
import { effectiveRole, impliedRoles, isRole, type Role } from './roles.js';

/**
 * Identity: users, projects, role assignments, tokens.
 *
 * Token design (docs/tokens.md): a token is 32 random bytes, base64url, prefixed `yun_`. Only its
 * sha256 is stored, with the user, the project it is scoped to and its expiry. Every request looks
 * the token up, then reads the user's role assignment on the project *live*, so removing a role or
 * disabling a user takes effect on the next request; revoking deletes the record.
 */
export const ADMIN_PROJECT = 'admin';
export const PASSWORD_KEY = (userId: string) => `password/${userId}`;

export interface Principal {
  user: StoredObject;
  project: StoredObject;
  roles: Role[];
  /** Holds admin on the `admin` project: may act on every project and on the cluster. */
  cloudAdmin: boolean;
  token: TokenRecord;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class Identity {
  constructor(private store: Store, private clock: Clock, private tokenTtlMs: number) {}

  async findProject(ref: string): Promise<StoredObject | undefined> {
    return (await this.store.get('project', ref)) ?? (await this.store.getByName('project', GLOBAL, ref));
  }

  async findUser(ref: string): Promise<StoredObject | undefined> {
    return (await this.store.get('user', ref)) ?? (await this.store.getByName('user', GLOBAL, ref));
  }

  /** The roles `userId` holds on `projectId` (with the roles they imply). */
  async rolesOn(userId: string, projectId: string): Promise<Role[]> {
    const a = await this.store.getByName('role_assignment', projectId, userId);
    const roles = ((a?.data.roles as string[] | undefined) ?? []).filter(isRole);
    return impliedRoles(roles);
  }

  async setPassword(userId: string, password: string): Promise<void> {
    await this.store.putSecret(PASSWORD_KEY(userId), await hashPassword(password));
  }

  /** Check a user name and password and issue a token scoped to a project. */
  async issueToken(username: string, password: string, projectRef: string | undefined, ttlMs?: number): Promise<{ token: string; record: TokenRecord; principal: Principal }> {
    const user = await this.store.getByName('user', GLOBAL, username);
    const hash = user ? await this.store.getSecret(PASSWORD_KEY(user.id)) : undefined;
    // Verify against a dummy hash when the user is unknown so timing does not reveal which.
    const ok = await verifyPassword(password, hash ?? DUMMY_HASH);
    if (!user || !hash || !ok) {
      throw new YunError('YUN_BAD_CREDENTIALS', `User name or password is wrong for "${username}"`);
    }
    if (user.data.enabled === false) {
      throw new YunError('YUN_BAD_CREDENTIALS', `User "${username}" is disabled`, { hint: 'Ask an admin to enable the user.' });
    }
    const pref = projectRef ?? (user.data.default_project_id as string | undefined);
    if (!pref) {
      throw new YunError('YUN_NO_ROLE_ON_PROJECT', `No project given and user "${username}" has no default project`, { hint: 'Name the project (YUN_PROJECT or --project).' });
    }
    const project = await this.findProject(pref);
    const roles = project ? await this.rolesOn(user.id, project.id) : [];
    if (!project || roles.length === 0) {
      throw new YunError('YUN_NO_ROLE_ON_PROJECT', `User "${username}" has no role on project "${pref}"`);
    }
    const token = `yun_${newSecret(32)}`;
    const h = hashToken(token);
    const now = this.clock.now();
    const ttl = Math.min(ttlMs ?? this.tokenTtlMs, this.tokenTtlMs);
    const record: TokenRecord = {
      hash: h,
      token_id: h.slice(0, 16),
      user_id: user.id,
      project_id: project.id,
      roles,
      issued_at: new Date(now).toISOString(),
      expires_at: new Date(now + ttl).toISOString(),
    };
    await this.store.putToken(record);
    return { token, record, principal: { user, project, roles, cloudAdmin: isCloudAdmin(project, roles), token: record } };
  }

  /** Resolve a presented token to a principal, or throw 401. */
  async validate(token: string): Promise<Principal> {
    if (!/^yun_[A-Za-z0-9_-]{20,100}$/.test(token)) {
      throw new YunError('YUN_TOKEN_INVALID', 'The token is malformed (Yunstack tokens start with "yun_")');
    }
    const record = await this.store.getToken(hashToken(token));
    if (!record) throw new YunError('YUN_TOKEN_INVALID', 'The token is unknown or has been revoked');
    if (Date.parse(record.expires_at) <= this.clock.now()) {
      throw new YunError('YUN_TOKEN_EXPIRED', `The token expired at ${record.expires_at}`);
    }
    const user = await this.store.get('user', record.user_id);
    const project = await this.store.get('project', record.project_id);
    if (!user || user.data.enabled === false) throw new YunError('YUN_TOKEN_INVALID', 'The token\'s user no longer exists or is disabled');
    if (!project || project.data.enabled === false) throw new YunError('YUN_TOKEN_INVALID', 'The token\'s project no longer exists or is disabled');
    const roles = await this.rolesOn(user.id, project.id);
    if (roles.length === 0) throw new YunError('YUN_TOKEN_INVALID', `User "${user.name}" no longer has a role on project "${project.name}"`);
    return { user, project, roles, cloudAdmin: isCloudAdmin(project, roles), token: record };
  }
}

export function isCloudAdmin(project: StoredObject, roles: string[]): boolean {
  return project.name === ADMIN_PROJECT && project.project_id === GLOBAL && effectiveRole(roles) === 'admin';
}

// scrypt hash of a random password nobody knows; used to keep login timing uniform.
const DUMMY_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
