import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['project', 'rm'],
  summary: 'Remove projects (they must have no services left).',
  configure: (c) => c.argument('<project...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/projects/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
