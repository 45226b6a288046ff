/** The built-in roles. Each includes the ones below it: admin ⊃ member ⊃ reader. */
export const ROLES = ['reader', 'member', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const ROLE_DESCRIPTIONS: Record<Role, string> = {
  reader: 'Read every object of the project.',
  member: 'Everything a reader can, plus create, change and remove the project\'s objects.',
  admin: 'Everything a member can, plus manage the project\'s role assignments; admin on the `admin` project is the cloud administrator.',
};

export function isRole(r: string): r is Role {
  return (ROLES as readonly string[]).includes(r);
}

export function rank(role: string): number {
  return (ROLES as readonly string[]).indexOf(role) + 1;
}

/** The highest of a set of roles, or undefined for none. */
export function effectiveRole(roles: string[]): Role | undefined {
  let best: Role | undefined;
  for (const r of roles) if (isRole(r) && (!best || rank(r) > rank(best))) best = r;
  return best;
}

/** Roles implied by holding `roles` (admin implies member and reader). */
export function impliedRoles(roles: string[]): Role[] {
  const top = effectiveRole(roles);
  return top ? ROLES.slice(0, rank(top)) : [];
}

export function allows(roles: string[], needed: Role): boolean {
  const top = effectiveRole(roles);
  return top !== undefined && rank(top) >= rank(needed);
}
