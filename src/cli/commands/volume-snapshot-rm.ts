import { defineCommand } from '../command.js';
import { afterVolume, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'snapshot-rm'],
  summary: 'Delete volume snapshots.',
  configure: (c) => volumeWaitOptions(c.argument('<snapshot...>', 'names or ids')),
  parse: (a, o) => ({ refs: a[0] as unknown as string[], ...waitInput(o) }),
  async run(i, ctx) {
    let code = 0;
    for (const ref of i.refs) {
      const s = (await ctx.client().request<{ id: string }>('DELETE', `/v1/snapshots/${encodeURIComponent(ref)}`)).body;
      code = Math.max(code, await afterVolume(ctx, s, '/v1/snapshots', i, true));
    }
    return code;
  },
});
