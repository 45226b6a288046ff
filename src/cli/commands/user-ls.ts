import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';

const FILTERS = ['name', 'enabled'];

export default defineCommand({
  path: ['user', 'ls'],
  summary: 'List users.',
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, unknown>>('/v1/users', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((u) => ctx.out.line(String(u.id)));
    ctx.out.table(items, [
      { header: 'id', get: (u) => u.id },
      { header: 'name', get: (u) => u.name },
      { header: 'enabled', get: (u) => u.enabled },
      { header: 'email', get: (u) => u.email },
    ]);
  },
});
