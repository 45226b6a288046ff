import { readFileSync } from 'node:fs';
import { defineCommand } from '../command.js';
import { CliError, usage } from '../cli-error.js';
import { formatSize } from '../../util/size.js';
import { parseVisibility } from '../images.js';

export default defineCommand({
  path: ['image', 'pull'],
  summary: 'Pull an image from a registry into the cloud.',
  configure: (c) => c.argument('<ref>', 'e.g. registry.example:5000/team/app:1.2 or …@sha256:…')
    .option('--ca <file>', 'CA certificate the registry\'s certificate chains to')
    .option('--insecure', 'allow plain HTTP and unverified TLS (test registries only)')
    .option('-u, --username <name>', 'registry user').option('--password-stdin', 'read the registry password from standard input')
    .option('--visibility <v>', 'private (default), shared or public (a cloud administrator)')
    .option('--json', 'print the image as JSON'),
  parse: (a, o) => {
    let ca: string | undefined;
    if (o.ca !== undefined) {
      try { ca = readFileSync(String(o.ca), 'utf8'); } catch (e) { throw usage(`Cannot read --ca ${String(o.ca)}: ${(e as Error).message}`); }
      if (!ca.includes('BEGIN CERTIFICATE')) throw usage(`--ca ${String(o.ca)} is not a PEM certificate`);
    }
    return { ref: a[0] as string, ca, insecure: Boolean(o.insecure), username: o.username as string | undefined, passwordStdin: Boolean(o.passwordStdin), visibility: parseVisibility(o.visibility), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    let password: string | undefined;
    if (i.passwordStdin) password = (await import('../prompt.js').then((m) => m.readStdin()));
    const tty = Boolean(process.stderr.isTTY);
    let image: Record<string, unknown> | undefined;
    let error: { code: string; detail: string; request_id?: string; title?: string } | undefined;
    const bytes = new Map<string, { bytes: number; total?: number }>();
    await ctx.client().postStream('/v1/images/pull', { ref: i.ref, ...(i.ca ? { ca_pem: i.ca } : {}), insecure: i.insecure, ...(i.visibility ? { visibility: i.visibility } : {}), ...(i.username ? { username: i.username, password } : {}) }, (line) => {
      const m = JSON.parse(line) as { progress?: { phase: string; digest?: string; bytes?: number; total?: number; message?: string }; image?: Record<string, unknown>; error?: typeof error };
      if (m.progress) {
        const p = m.progress;
        if (p.digest) bytes.set(p.digest, { bytes: p.bytes ?? 0, total: p.total });
        if (tty) {
          const done = [...bytes.values()].reduce((a, b) => a + b.bytes, 0);
          const total = [...bytes.values()].reduce((a, b) => a + (b.total ?? 0), 0);
          process.stderr.write(`\rpulling ${i.ref}: ${p.phase}${total ? ` ${formatSize(done)} of ${formatSize(total)}` : ''}      `);
        }
      }
      if (m.image) image = m.image;
      if (m.error) error = m.error;
    });
    if (tty) process.stderr.write('\n');
    if (error) throw new CliError(error.code, error.detail, error.code === 'YUN_NOT_FOUND' ? 404 : 502, error.request_id, error.title);
    if (!image) throw new CliError('YUN_INTERNAL', 'the pull ended without an answer', 500);
    if (i.json) return ctx.out.json(image);
    ctx.out.line(`${String(image.name)} (${String(image.digest)})`);
  },
});
