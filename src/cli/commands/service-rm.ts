import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['service', 'rm'],
  summary: 'Remove services; their tasks are stopped.',
  configure: (c) => c.argument('<service...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/services/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
