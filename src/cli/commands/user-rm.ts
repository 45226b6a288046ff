import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['user', 'rm'],
  summary: 'Remove users (their role assignments and tokens go with them).',
  configure: (c) => c.argument('<user...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/users/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
