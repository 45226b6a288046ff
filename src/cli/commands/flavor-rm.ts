import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['flavor', 'rm'],
  summary: 'Remove flavors (cloud administrators); servers built with them keep their sizes.',
  aliases: ['delete'],
  configure: (c) => c.argument('<flavor...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/flavors/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
