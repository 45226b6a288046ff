import { createReadStream, statSync } from 'node:fs';
import { defineCommand, collect } from '../command.js';
import { usage } from '../cli-error.js';
import { progressMeter } from '../upload-progress.js';

export default defineCommand({
  path: ['image', 'import-rootfs'],
  summary: 'Make an image from a plain root file system (directory or tar), like `docker import`.',
  configure: (c) => c.argument('<path>', 'directory or tar (.tar, .tar.gz)')
    .requiredOption('--name <repo:tag>', 'image name')
    .option('--cmd <word>', 'default command, one word per --cmd (e.g. --cmd sh --cmd -c --cmd "…")', collect)
    .option('--entrypoint <word>', 'entrypoint, one word per --entrypoint', collect)
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect)
    .option('--workdir <dir>', 'working directory')
    .option('--user <user>', 'user to run as')
    .option('--json', 'print JSON'),
  parse: (a, o) => {
    const path = a[0] as string;
    let st;
    try { st = statSync(path); } catch (e) { throw usage(`Cannot read ${path}: ${(e as Error).message}`); }
    return { path, dir: st.isDirectory(), size: st.size, name: String(o.name), cmd: o.cmd as string[] | undefined, entrypoint: o.entrypoint as string[] | undefined, env: o.env as string[] | undefined, workdir: o.workdir as string | undefined, user: o.user as string | undefined, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const meter = progressMeter(`uploading ${i.path}`, i.dir ? undefined : i.size);
    let body: NodeJS.ReadableStream;
    if (i.dir) {
      const tar = await import('tar');
      body = tar.c({ cwd: i.path, gzip: true }, ['.']) as unknown as NodeJS.ReadableStream;
    } else {
      body = createReadStream(i.path);
    }
    const r = await ctx.client().upload('/v1/images/import-rootfs', { name: i.name, cmd: i.cmd, entrypoint: i.entrypoint, env: i.env, workdir: i.workdir, user: i.user }, body, { onProgress: (n) => meter.update(n) });
    meter.done();
    if (i.json) return ctx.out.json(r.body);
    ctx.out.line(`${String(r.body.name)} (${String(r.body.digest)})`);
  },
});
