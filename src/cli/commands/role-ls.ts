import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['role', 'ls'],
  summary: 'List the roles, or with --project the users holding roles on it.',
  configure: (c) => c.option('--project <project>', 'list this project\'s members and their roles').option('--json', 'print JSON'),
  parse: (_a, o) => ({ project: o.project as string | undefined, json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    if (!i.project) {
      const roles = (await api.get<{ items: { name: string; description: string; implies: string[] }[] }>('/v1/roles')).items;
      if (i.json) return ctx.out.json(roles);
      return ctx.out.table(roles, [{ header: 'name', get: (r) => r.name }, { header: 'implies', get: (r) => r.implies }, { header: 'description', get: (r) => r.description }]);
    }
    const members = (await api.get<{ items: Record<string, unknown>[] }>(`/v1/projects/${encodeURIComponent(i.project)}/members`)).items;
    if (i.json) return ctx.out.json(members);
    ctx.out.table(members, [{ header: 'user', get: (m) => m.user_name ?? m.user_id }, { header: 'user id', get: (m) => m.user_id }, { header: 'project', get: (m) => m.project_name }, { header: 'roles', get: (m) => m.roles }]);
  },
});
