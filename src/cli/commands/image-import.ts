import { createReadStream, statSync } from 'node:fs';
import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { progressMeter } from '../upload-progress.js';

export default defineCommand({
  path: ['image', 'import'],
  summary: 'Import a `docker save` archive or an OCI image layout (directory or tar).',
  configure: (c) => c.argument('<file>', 'archive (.tar, .tar.gz) or OCI layout directory').option('--name <repo:tag>', 'name for an image the archive does not name').option('--json', 'print JSON'),
  parse: (a, o) => {
    const file = a[0] as string;
    let st;
    try { st = statSync(file); } catch (e) { throw usage(`Cannot read ${file}: ${(e as Error).message}`); }
    return { file, dir: st.isDirectory(), size: st.size, name: o.name as string | undefined, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const meter = progressMeter(`uploading ${i.file}`, i.dir ? undefined : i.size);
    let body: NodeJS.ReadableStream;
    if (i.dir) {
      const tar = await import('tar');
      body = tar.c({ cwd: i.file, portable: true }, ['.']) as unknown as NodeJS.ReadableStream;
    } else {
      body = createReadStream(i.file);
    }
    const { basename, resolve } = await import('node:path');
    const r = await ctx.client().upload<{ items: Record<string, unknown>[] }>('/v1/images/import', { name: i.name, filename: basename(resolve(i.file)) }, body, { onProgress: (n) => meter.update(n) });
    meter.done();
    if (i.json) return ctx.out.json(r.body.items);
    for (const img of r.body.items) ctx.out.line(`Loaded image: ${String(img.name)} (${String(img.digest)})`);
  },
});
