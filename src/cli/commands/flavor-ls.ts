import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';

const FILTERS = ['name', 'id'];

export default defineCommand({
  path: ['flavor', 'ls'],
  summary: 'List the flavors you may use: vCPUs, RAM, disks.',
  aliases: ['list'],
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/flavors', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((f) => ctx.out.line(String(f.id)));
    ctx.out.table(items, [
      { header: 'id', get: (f) => f.id },
      { header: 'name', get: (f) => f.name },
      { header: 'vcpus', get: (f) => f.vcpus },
      { header: 'ram (MiB)', get: (f) => f.ram_mb },
      { header: 'disk (GiB)', get: (f) => f.disk_gb },
      { header: 'ephemeral', get: (f) => f.ephemeral_gb },
      { header: 'swap (MiB)', get: (f) => f.swap_mb },
      { header: 'public', get: (f) => (f.is_public ? 'yes' : 'no') },
    ]);
  },
});
