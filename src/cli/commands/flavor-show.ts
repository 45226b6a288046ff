import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['flavor', 'show'],
  summary: 'Show a flavor.',
  configure: (c) => c.argument('<flavor>', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ ref: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const f = await ctx.client().get<Record<string, any>>(`/v1/flavors/${encodeURIComponent(i.ref)}`);
    if (i.json) return ctx.out.json(f);
    ctx.out.fields([
      ['id', f.id], ['name', f.name], ['vcpus', f.vcpus], ['ram', `${f.ram_mb} MiB`], ['disk', `${f.disk_gb} GiB`],
      ['ephemeral', `${f.ephemeral_gb} GiB`], ['swap', `${f.swap_mb} MiB`], ['public', f.is_public ? 'yes' : 'no'],
      ['projects', f.projects], ['properties', f.properties], ['description', f.description],
    ]);
  },
});
