import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['network', 'rm'],
  summary: 'Remove networks (refused while a service uses them).',
  configure: (c) => c.argument('<network...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/networks/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
