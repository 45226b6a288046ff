import { readFileSync } from 'node:fs';
import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['keypair', 'create'],
  summary: 'Import an SSH public key as a key pair of your project (`server create --key-name`).',
  configure: (c) => c.argument('<name>', 'key pair name').requiredOption('--public-key <file>', 'the public key file (e.g. ~/.ssh/id_ed25519.pub); - reads standard input').option('--json', 'print JSON'),
  parse: (a, o) => {
    const file = String(o.publicKey);
    let key: string;
    try {
      key = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      throw usage(`--public-key ${file} cannot be read: ${(e as Error).message}`);
    }
    return { body: { name: a[0] as string, public_key: key.trim() }, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const k = (await ctx.client().request<Record<string, any>>('POST', '/v1/keypairs', { body: i.body })).body;
    if (i.json) return ctx.out.json(k);
    ctx.out.line(`${String(k.name)} ${String(k.fingerprint)}`);
  },
});
