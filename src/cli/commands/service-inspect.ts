import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['service', 'inspect'],
  summary: 'Show services in full (JSON).',
  configure: (c) => c.argument('<service...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    const out = [];
    for (const ref of i.refs) out.push(await ctx.client().get(`/v1/services/${encodeURIComponent(ref)}`));
    ctx.out.json(out.length === 1 ? out[0] : out);
  },
});
