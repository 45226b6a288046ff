import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['secret', 'rotate-key'],
  summary: 'Seal every secret with a new key and drop the old keys (cloud admin).',
  configure: (c) => c.option('--json', 'print JSON'),
  parse: (_a, o) => ({ json: Boolean(o.json) }),
  async run(i, ctx) {
    const r = (await ctx.client().request<{ key_id: string; resealed: number; retired: string[] }>('POST', '/v1/secrets/rotate-key', { body: {} })).body;
    if (i.json) return ctx.out.json(r);
    ctx.out.line(`Secrets are sealed with key ${r.key_id}: ${r.resealed} re-sealed; ${r.retired.length ? `retired ${r.retired.join(', ')}` : 'no key retired (a secret still used an old key: run it again)'}.`);
  },
});
