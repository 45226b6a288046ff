import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { age } from '../output.js';

const FILTERS = ['name', 'driver', 'id', 'attachable'];

export default defineCommand({
  path: ['network', 'ls'],
  summary: 'List networks.',
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/networks', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((x) => ctx.out.line(String(x.id)));
    ctx.out.table(items, [
      { header: 'id', get: (x) => x.id },
      { header: 'name', get: (x) => x.name },
      { header: 'driver', get: (x) => x.driver },
      { header: 'subnet', get: (x) => x.subnet },
      { header: 'attachable', get: (x) => (x.attachable ? 'yes' : 'no') },
      { header: 'created', get: (x) => age(x.created_at) },
    ]);
  },
});
