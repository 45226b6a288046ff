import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['keypair', 'show'],
  summary: 'Show a key pair and its public key.',
  configure: (c) => c.argument('<keypair>', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ ref: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const k = await ctx.client().get<Record<string, any>>(`/v1/keypairs/${encodeURIComponent(i.ref)}`);
    if (i.json) return ctx.out.json(k);
    ctx.out.fields([['id', k.id], ['name', k.name], ['fingerprint', k.fingerprint], ['type', k.type], ['public key', k.public_key], ['created', k.created_at]]);
  },
});
