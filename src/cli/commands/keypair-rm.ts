import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['keypair', 'rm'],
  summary: 'Remove key pairs (servers made with them keep the key they got).',
  aliases: ['delete'],
  configure: (c) => c.argument('<keypair...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/keypairs/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
