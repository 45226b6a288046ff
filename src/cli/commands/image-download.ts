import { defineCommand } from '../command.js';
import { progressMeter } from '../upload-progress.js';

export default defineCommand({
  path: ['image', 'download'],
  summary: 'Download an image: a VM image\'s disk (qcow2 or raw), a container image as a `docker save` archive.',
  configure: (c) => c.argument('<image>', 'name, id or digest').requiredOption('-o, --output <file>', 'where to write it').option('--json', 'print what was written as JSON'),
  parse: (a, o) => ({ ref: a[0] as string, file: String(o.output), json: Boolean(o.json) }),
  async run(i, ctx) {
    const meter = progressMeter(`downloading ${i.ref}`, undefined);
    let bytes = 0;
    const h = await ctx.client().download(`/v1/images/${encodeURIComponent(i.ref)}/file`, i.file, (n) => { bytes = n; meter.update(n); });
    meter.done();
    const info = { file: i.file, bytes, disk_format: h.get('x-image-disk-format'), checksum: h.get('x-image-checksum') };
    if (i.json) return ctx.out.json(info);
    ctx.out.line(`${i.file}\t${bytes} bytes${info.disk_format ? `\t${info.disk_format}\t${info.checksum}` : ''}`);
  },
});
