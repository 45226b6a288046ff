import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';

const FILTERS = ['name', 'enabled'];

export default defineCommand({
  path: ['project', 'ls'],
  summary: 'List projects.',
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, unknown>>('/v1/projects', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((p) => ctx.out.line(String(p.id)));
    ctx.out.table(items, [
      { header: 'id', get: (p) => p.id },
      { header: 'name', get: (p) => p.name },
      { header: 'enabled', get: (p) => p.enabled },
      { header: 'description', get: (p) => p.description },
    ]);
  },
});
