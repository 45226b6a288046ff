import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { SERVER_COLUMNS, type ServerJson } from '../servers.js';

const FILTERS = ['name', 'id', 'status', 'vm_state', 'node_id', 'driver', 'flavor', 'image'];

export default defineCommand({
  path: ['server', 'ls'],
  summary: 'List servers: status, addresses, image, flavor, node.',
  aliases: ['list'],
  configure: (c) => listOptions(c, FILTERS).option('--all-projects', 'every project\'s servers (cloud administrators)'),
  parse: (_a, o) => ({ ...parseListOptions(o, FILTERS), all: Boolean(o.allProjects) }),
  async run(i, ctx) {
    const items = await ctx.client().listAll<ServerJson>('/v1/servers', { ...i.query, ...(i.all ? { all_projects: 'true' } : {}) }, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((s) => ctx.out.line(s.id));
    ctx.out.table(items, SERVER_COLUMNS);
  },
});
