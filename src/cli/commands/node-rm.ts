import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['node', 'rm'],
  summary: 'Remove nodes from the cluster (a node that is not down needs --force).',
  configure: (c) => c.argument('<node...>', 'names or ids').option('-f, --force', 'remove even if the node is not down'),
  parse: (a, o) => ({ refs: a[0] as unknown as string[], force: Boolean(o.force) }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/nodes/${encodeURIComponent(ref)}`, { query: i.force ? { force: true } : {} });
      ctx.out.line(ref);
    }
  },
});
