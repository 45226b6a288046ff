import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['project', 'inspect'],
  aliases: ['show'],
  summary: 'Show a project (JSON).',
  configure: (c) => c.argument('<project>', 'name or id'),
  parse: (a) => ({ ref: a[0]! }),
  async run(i, ctx) {
    ctx.out.json(await ctx.client().get(`/v1/projects/${encodeURIComponent(i.ref)}`));
  },
});
