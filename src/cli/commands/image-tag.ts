import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['image', 'tag'],
  summary: 'Give an image another name: yun image tag SOURCE TARGET[:TAG].',
  configure: (c) => c.argument('<source>', 'name, id or digest').argument('<target>', 'new name (repo[:tag])'),
  parse: (a) => ({ source: a[0] as string, target: a[1] as string }),
  async run(i, ctx) {
    const r = (await ctx.client().request('POST', `/v1/images/${encodeURIComponent(i.source)}/tags`, { body: { name: i.target } })).body;
    ctx.out.line(String(r.name));
  },
});
