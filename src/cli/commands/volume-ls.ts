import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { VOLUME_COLUMNS, type VolumeJson } from '../volumes.js';

const FILTERS = ['name', 'id', 'status', 'node_id', 'volume_type', 'bootable'];

export default defineCommand({
  path: ['volume', 'ls'],
  summary: 'List volumes: status, size, what they are attached to, node.',
  aliases: ['list'],
  configure: (c) => listOptions(c, FILTERS).option('--all-projects', 'every project\'s volumes (cloud administrators)'),
  parse: (_a, o) => ({ ...parseListOptions(o, FILTERS), all: Boolean(o.allProjects) }),
  async run(i, ctx) {
    const items = await ctx.client().listAll<VolumeJson>('/v1/volumes', { ...i.query, ...(i.all ? { all_projects: 'true' } : {}) }, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((v) => ctx.out.line(v.id));
    ctx.out.table(items, VOLUME_COLUMNS);
  },
});
