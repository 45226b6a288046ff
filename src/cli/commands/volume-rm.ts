import { defineCommand } from '../command.js';
import { afterVolume, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'rm'],
  summary: 'Delete volumes (refused while attached or with snapshots, naming them).',
  aliases: ['delete'],
  configure: (c) => volumeWaitOptions(c.argument('<volume...>', 'names or ids')),
  parse: (a, o) => ({ refs: a[0] as unknown as string[], ...waitInput(o) }),
  async run(i, ctx) {
    let code = 0;
    for (const ref of i.refs) {
      const r = await ctx.client().request<{ id: string }>('DELETE', `/v1/volumes/${encodeURIComponent(ref)}`);
      if (r.status === 204) { if (!i.json) ctx.out.line(ref); continue; }
      code = Math.max(code, await afterVolume(ctx, r.body, '/v1/volumes', i, true));
    }
    return code;
  },
});
