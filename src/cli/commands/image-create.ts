import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { fileSize, parseChecksum, parseVisibility, uploadDisk, wholeNumber } from '../images.js';

export default defineCommand({
  path: ['image', 'create'],
  summary: 'Create a VM image the Glance way: queued, then (with --file, or later with `image upload`) its disk uploaded: saving → active, or killed with the reason.',
  configure: (c) => c.argument('<name>', 'image name (repo[:tag])')
    .requiredOption('--disk-format <format>', 'qcow2 or raw')
    .option('--file <disk>', 'upload this disk at once')
    .option('--checksum <sha256>', 'with --file: the disk\'s SHA-256; a disk that does not match kills the image')
    .option('--min-disk <GiB>', 'the smallest root disk a server of it needs, GiB', '0')
    .option('--min-ram <MiB>', 'the smallest RAM, MiB', '0')
    .option('--cmdline <text>', 'the kernel command line')
    .option('--visibility <v>', 'private (default), shared or public (a cloud administrator)')
    .option('--json', 'print the image as JSON'),
  parse: (a, o) => {
    const format = String(o.diskFormat);
    if (format !== 'qcow2' && format !== 'raw') throw usage(`--disk-format must be qcow2 or raw, not "${format}"`);
    if (o.checksum !== undefined && o.file === undefined) throw usage('--checksum goes with --file (or with `yun image upload`)');
    if (o.file !== undefined) fileSize(String(o.file));
    const visibility = parseVisibility(o.visibility);
    return {
      body: {
        name: a[0] as string, disk_format: format, min_disk: wholeNumber(o.minDisk, '--min-disk', 'GiB'), min_ram: wholeNumber(o.minRam, '--min-ram', 'MiB'),
        ...(o.cmdline ? { cmdline: String(o.cmdline) } : {}), ...(visibility ? { visibility } : {}),
      },
      file: o.file as string | undefined, checksum: parseChecksum(o.checksum), json: Boolean(o.json),
    };
  },
  async run(i, ctx) {
    const api = ctx.client();
    let img = (await api.request<Record<string, unknown>>('POST', '/v1/images', { body: i.body })).body;
    if (i.file) {
      try {
        img = await uploadDisk(api, String(img.id), i.file, i.checksum);
      } catch (e) {
        process.stderr.write(`image ${String(img.name)} (${String(img.id)}) was killed; delete it with \`yun image rm ${String(img.id)}\`\n`);
        throw e;
      }
    }
    if (i.json) return ctx.out.json(img);
    ctx.out.line(`${String(img.id)}\t${String(img.name)}\t${String(img.status)}`);
  },
});
