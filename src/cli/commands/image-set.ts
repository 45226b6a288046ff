import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseVisibility, wholeNumber } from '../images.js';

export default defineCommand({
  path: ['image', 'set'],
  summary: 'Change an image you own: its visibility (private, shared, public), min_disk, min_ram.',
  configure: (c) => c.argument('<image>', 'name, id or digest')
    .option('--visibility <v>', 'private, shared (with the projects you add: `image member add`) or public (a cloud administrator)')
    .option('--min-disk <GiB>', 'the smallest root disk, GiB')
    .option('--min-ram <MiB>', 'the smallest RAM, MiB')
    .option('--json', 'print the image as JSON'),
  parse: (a, o) => {
    const body: Record<string, unknown> = {};
    const v = parseVisibility(o.visibility);
    if (v) body.visibility = v;
    if (o.minDisk !== undefined) body.min_disk = wholeNumber(o.minDisk, '--min-disk', 'GiB');
    if (o.minRam !== undefined) body.min_ram = wholeNumber(o.minRam, '--min-ram', 'MiB');
    if (Object.keys(body).length === 0) throw usage('Say what to change: --visibility, --min-disk or --min-ram');
    return { ref: a[0] as string, body, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const img = (await ctx.client().request<Record<string, unknown>>('PATCH', `/v1/images/${encodeURIComponent(i.ref)}`, { body: i.body })).body;
    if (i.json) return ctx.out.json(img);
    ctx.out.line(`${String(img.name)}\t${String(img.visibility)}${img.kind === 'vm' ? `\tmin_disk ${String(img.min_disk)} GiB\tmin_ram ${String(img.min_ram)} MiB` : ''}`);
  },
});
