import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['project', 'create'],
  summary: 'Create a project.',
  configure: (c) => c.argument('<name>').option('--description <text>', 'what the project is for').option('--json', 'print JSON'),
  parse: (a, o) => ({ name: a[0]!, description: o.description as string | undefined, json: Boolean(o.json) }),
  async run(i, ctx) {
    const p = (await ctx.client().request('POST', '/v1/projects', { body: { name: i.name, ...(i.description !== undefined ? { description: i.description } : {}) } })).body;
    if (i.json) return ctx.out.json(p);
    ctx.out.line(String(p.id));
  },
});
