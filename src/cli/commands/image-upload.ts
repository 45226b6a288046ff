import { defineCommand } from '../command.js';
import { fileSize, parseChecksum, uploadDisk } from '../images.js';

export default defineCommand({
  path: ['image', 'upload'],
  summary: 'Upload the disk of a queued image (`image create`): it is saving while it goes, then active; a bad disk or a checksum mismatch kills it.',
  configure: (c) => c.argument('<image>', 'name or id').argument('<disk>', 'the disk file (in the image\'s disk format)')
    .option('--checksum <sha256>', 'the disk\'s SHA-256 (hex, or sha256:HEX)')
    .option('--json', 'print the image as JSON'),
  parse: (a, o) => {
    fileSize(a[1] as string);
    return { ref: a[0] as string, file: a[1] as string, checksum: parseChecksum(o.checksum), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const img = await uploadDisk(ctx.client(), i.ref, i.file, i.checksum);
    if (i.json) return ctx.out.json(img);
    ctx.out.line(`${String(img.id)}\t${String(img.name)}\t${String(img.status)}\t${String(img.digest)}`);
  },
});
