import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['image', 'inspect'],
  summary: 'Show images in full (JSON).',
  configure: (c) => c.argument('<image...>', 'names, ids or digests'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    const out = [];
    for (const ref of i.refs) out.push(await ctx.client().get(`/v1/images/${encodeURIComponent(ref)}`));
    ctx.out.json(out.length === 1 ? out[0] : out);
  },
});
