import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['task', 'inspect'],
  summary: 'Show a task in full (JSON).',
  configure: (c) => c.argument('<task>', 'task id'),
  parse: (a) => ({ ref: a[0]! }),
  async run(i, ctx) {
    ctx.out.json(await ctx.client().get(`/v1/tasks/${encodeURIComponent(i.ref)}`));
  },
});
