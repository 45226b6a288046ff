import { defineCommand } from '../command.js';
import { printVolume, type VolumeJson } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'show'],
  summary: 'Show a volume: status, size, attachment, snapshots, node, fault.',
  configure: (c) => c.argument('<volume>', 'name or id').option('--json', 'print the volume as JSON'),
  parse: (a, o) => ({ ref: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const v = await ctx.client().get<VolumeJson>(`/v1/volumes/${encodeURIComponent(i.ref)}`);
    if (i.json) return ctx.out.json(v);
    printVolume(ctx, v);
  },
});
