import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { isRole, ROLES } from '../../identity/roles.js';

export function roleInput(a: string[], o: Record<string, unknown>) {
  const role = a[0]!;
  if (!isRole(role)) throw usage(`Unknown role "${role}"; roles are ${ROLES.join(', ')}`);
  if (!o.user) throw usage('Name the user: --user NAME');
  if (!o.project) throw usage('Name the project: --project NAME');
  return { role, user: String(o.user), project: String(o.project) };
}

export default defineCommand({
  path: ['role', 'add'],
  summary: 'Grant a role on a project to a user (admin ⊃ member ⊃ reader).',
  configure: (c) => c.argument('<role>', ROLES.join('|')).requiredOption('--user <user>', 'user name or id').requiredOption('--project <project>', 'project name or id'),
  parse: roleInput,
  async run(i, ctx) {
    await ctx.client().request('PUT', `/v1/projects/${encodeURIComponent(i.project)}/members/${encodeURIComponent(i.user)}/roles/${i.role}`);
    ctx.out.line(`${i.user} holds ${i.role} on ${i.project}.`);
  },
});
