import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['server', 'image-create'],
  summary: 'Make an image of a server\'s root disk (the server quiesced for the copy); boot new servers from it.',
  configure: (c) => c.argument('<server>', 'name or id').requiredOption('--name <image>', 'the new image\'s name (REPO[:TAG])').option('--json', 'print the image as JSON'),
  parse: (a, o) => ({ ref: a[0] as string, name: String(o.name), json: Boolean(o.json) }),
  async run(i, ctx) {
    process.stderr.write(`making image ${i.name} of server ${i.ref}…\n`);
    const img = (await ctx.client().request<{ id: string; name: string; size: number }>('POST', `/v1/servers/${encodeURIComponent(i.ref)}/image`, { body: { name: i.name } })).body;
    if (i.json) return ctx.out.json(img);
    ctx.out.line(img.id);
  },
});
