import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { cap } from '../output.js';

const FILTERS = ['name', 'hostname', 'role', 'availability', 'status', 'address', 'label'];

export default defineCommand({
  path: ['node', 'ls'],
  summary: 'List the cluster\'s nodes.',
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, unknown>>('/v1/nodes', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((n) => ctx.out.line(String(n.id)));
    ctx.out.table(items, [
      { header: 'id', get: (n) => n.id },
      { header: 'hostname', get: (n) => n.name },
      { header: 'address', get: (n) => n.address },
      { header: 'status', get: (n) => cap(n.status) },
      { header: 'availability', get: (n) => cap(n.availability) },
      { header: 'role', get: (n) => cap(n.role) },
      { header: 'version', get: (n) => n.agent_version },
    ]);
  },
});
