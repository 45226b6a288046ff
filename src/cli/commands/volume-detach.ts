import { defineCommand } from '../command.js';
import { afterVolume, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'detach'],
  summary: 'Detach a volume from its server (a VM\'s guest lets go of the disk; a container\'s mount goes).',
  configure: (c) => volumeWaitOptions(c.argument('<volume>', 'name or id')),
  parse: (a, o) => ({ ref: a[0] as string, ...waitInput(o) }),
  async run(i, ctx) {
    const v = (await ctx.client().request<{ id: string }>('POST', `/v1/volumes/${encodeURIComponent(i.ref)}/actions`, { body: { action: 'detach' } })).body;
    return afterVolume(ctx, v, '/v1/volumes', i);
  },
});
