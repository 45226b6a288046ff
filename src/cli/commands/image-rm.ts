import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['image', 'rm'],
  summary: 'Remove images (refused while a service uses them).',
  configure: (c) => c.argument('<image...>', 'names, ids or digests'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/images/${encodeURIComponent(ref)}`);
      ctx.out.line(`Untagged: ${ref}`);
    }
  },
});
