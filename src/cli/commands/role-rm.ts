import { defineCommand } from '../command.js';
import { ROLES } from '../../identity/roles.js';
import { roleInput } from './role-add.js';

export default defineCommand({
  path: ['role', 'rm'],
  summary: 'Take a role on a project away from a user.',
  configure: (c) => c.argument('<role>', ROLES.join('|')).requiredOption('--user <user>', 'user name or id').requiredOption('--project <project>', 'project name or id'),
  parse: roleInput,
  async run(i, ctx) {
    await ctx.client().request('DELETE', `/v1/projects/${encodeURIComponent(i.project)}/members/${encodeURIComponent(i.user)}/roles/${i.role}`);
    ctx.out.line(`${i.user} no longer holds ${i.role} on ${i.project}.`);
  },
});
