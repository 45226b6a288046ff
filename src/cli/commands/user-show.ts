import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['user', 'inspect'],
  aliases: ['show'],
  summary: 'Show a user (JSON).',
  configure: (c) => c.argument('<user>', 'name or id'),
  parse: (a) => ({ ref: a[0]! }),
  async run(i, ctx) {
    ctx.out.json(await ctx.client().get(`/v1/users/${encodeURIComponent(i.ref)}`));
  },
});
