import { defineCommand } from '../command.js';
import { afterVolume, parseSize, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'extend'],
  summary: 'Grow a volume (available or in use: a running VM sees the new size at once; a container\'s file system grows with it).',
  configure: (c) => volumeWaitOptions(c.argument('<volume>', 'name or id').requiredOption('--size <GiB>', 'the new size in GiB')),
  parse: (a, o) => ({ ref: a[0] as string, size: parseSize(o.size), ...waitInput(o) }),
  async run(i, ctx) {
    const v = (await ctx.client().request<{ id: string }>('POST', `/v1/volumes/${encodeURIComponent(i.ref)}/actions`, { body: { action: 'extend', size: i.size } })).body;
    return afterVolume(ctx, v, '/v1/volumes', i);
  },
});
