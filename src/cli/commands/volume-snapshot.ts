import { defineCommand } from '../command.js';
import { afterVolume, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'snapshot'],
  summary: 'Snapshot a volume (consistent: the server it is attached to is quiesced for the copy).',
  configure: (c) => volumeWaitOptions(c.argument('<volume>', 'name or id').requiredOption('--name <name>', 'the snapshot\'s name').option('--description <text>', 'a description')),
  parse: (a, o) => ({ body: { volume: a[0] as string, name: String(o.name), ...(o.description ? { description: String(o.description) } : {}) }, ...waitInput(o) }),
  async run(i, ctx) {
    const s = (await ctx.client().request<{ id: string }>('POST', '/v1/snapshots', { body: i.body })).body;
    return afterVolume(ctx, s, '/v1/snapshots', i);
  },
});
