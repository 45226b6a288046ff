import { createReadStream, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { progressMeter } from '../upload-progress.js';
import { parseChecksum, parseVisibility, wholeNumber } from '../images.js';

export default defineCommand({
  path: ['image', 'import'],
  summary: 'Import a `docker save` archive or an OCI image layout (directory or tar); with --disk-format, a VM disk (qcow2 or raw).',
  configure: (c) => c.argument('<file>', 'archive (.tar, .tar.gz), OCI layout directory, or (with --disk-format) a disk image')
    .option('--name <repo:tag>', 'name for an image the archive does not name (required for a disk)')
    .option('--disk-format <format>', 'the file is a VM disk: qcow2 or raw')
    .option('--kernel <file>', 'VM images: a kernel for direct kernel boot (with --initrd)')
    .option('--initrd <file>', 'VM images: the initrd for --kernel')
    .option('--cmdline <text>', 'VM images: the kernel command line')
    .option('--min-disk <GiB>', 'VM images: the smallest root disk a server of it needs, GiB', '0')
    .option('--min-ram <MiB>', 'VM images: the smallest RAM, MiB', '0')
    .option('--checksum <sha256>', 'VM images: the disk\'s SHA-256 (hex, or sha256:HEX); a disk that does not match is refused')
    .option('--visibility <v>', 'private (default), shared or public (a cloud administrator)')
    .option('--json', 'print JSON'),
  parse: (a, o) => {
    const file = a[0] as string;
    let st;
    try { st = statSync(file); } catch (e) { throw usage(`Cannot read ${file}: ${(e as Error).message}`); }
    const format = o.diskFormat as string | undefined;
    if (format === undefined) {
      for (const f of ['kernel', 'initrd', 'cmdline'] as const) if (o[f] !== undefined) throw usage(`--${f} is for VM images: add --disk-format qcow2 or raw`);
      return { file, dir: st.isDirectory(), size: st.size, name: o.name as string | undefined, json: Boolean(o.json), visibility: parseVisibility(o.visibility), vm: undefined };
    }
    if (format !== 'qcow2' && format !== 'raw') throw usage(`--disk-format must be qcow2 or raw, not "${format}"`);
    if (!o.name) throw usage('A disk image needs a name: --name REPO[:TAG]');
    if (st.isDirectory()) throw usage(`${file} is a directory, not a disk image`);
    if ((o.kernel === undefined) !== (o.initrd === undefined)) throw usage('--kernel and --initrd go together (direct kernel boot needs both)');
    let size = st.size;
    for (const f of [o.kernel, o.initrd]) {
      if (f === undefined) continue;
      try { size += statSync(String(f)).size; } catch (e) { throw usage(`Cannot read ${String(f)}: ${(e as Error).message}`); }
    }
    const vm = {
      disk_format: format, kernel: o.kernel as string | undefined, initrd: o.initrd as string | undefined, cmdline: o.cmdline as string | undefined,
      min_disk: wholeNumber(o.minDisk, '--min-disk', 'GiB'), min_ram: wholeNumber(o.minRam, '--min-ram', 'MiB'),
      checksum: o.checksum as string | undefined,
    };
    parseChecksum(vm.checksum);
    return { file, dir: false, size, name: String(o.name), json: Boolean(o.json), visibility: parseVisibility(o.visibility), vm };
  },
  async run(i, ctx) {
    const meter = progressMeter(`uploading ${i.file}`, i.dir ? undefined : i.size);
    if (i.vm) {
      // The disk (and kernel, initrd) go as one tar, under fixed names.
      const stage = mkdtempSync(join(tmpdir(), 'yun-disk-'));
      try {
        const names = ['disk'];
        symlinkSync(resolve(i.file), join(stage, 'disk'));
        if (i.vm.kernel) { symlinkSync(resolve(i.vm.kernel), join(stage, 'kernel')); names.push('kernel'); }
        if (i.vm.initrd) { symlinkSync(resolve(i.vm.initrd), join(stage, 'initrd')); names.push('initrd'); }
        const tar = await import('tar');
        const body = tar.c({ cwd: stage, follow: true, portable: true }, names) as unknown as NodeJS.ReadableStream;
        const query = { name: i.name!, disk_format: i.vm.disk_format, min_disk: String(i.vm.min_disk), min_ram: String(i.vm.min_ram), ...(i.vm.cmdline ? { cmdline: i.vm.cmdline } : {}), ...(i.vm.checksum ? { checksum: i.vm.checksum } : {}), ...(i.visibility ? { visibility: i.visibility } : {}) };
        const img = (await ctx.client().upload<Record<string, unknown>>('/v1/images/import-disk', query, body, { onProgress: (n) => meter.update(n) })).body;
        meter.done();
        if (i.json) return ctx.out.json(img);
        ctx.out.line(`Loaded VM image: ${String(img.name)} (${String(img.digest)}, ${String(img.disk_format)}, ${String(img.boot)} boot)`);
      } finally {
        rmSync(stage, { recursive: true, force: true });
      }
      return;
    }
    let body: NodeJS.ReadableStream;
    if (i.dir) {
      const tar = await import('tar');
      body = tar.c({ cwd: i.file, portable: true }, ['.']) as unknown as NodeJS.ReadableStream;
    } else {
      body = createReadStream(i.file);
    }
    const r = await ctx.client().upload<{ items: Record<string, unknown>[] }>('/v1/images/import', { name: i.name, filename: basename(resolve(i.file)), ...(i.visibility ? { visibility: i.visibility } : {}) }, body, { onProgress: (n) => meter.update(n) });
    meter.done();
    if (i.json) return ctx.out.json(r.body.items);
    for (const img of r.body.items) ctx.out.line(`Loaded image: ${String(img.name)} (${String(img.digest)})`);
  },
});
