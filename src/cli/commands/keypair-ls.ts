import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { age } from '../output.js';

const FILTERS = ['name', 'fingerprint'];

export default defineCommand({
  path: ['keypair', 'ls'],
  summary: 'List your project\'s key pairs.',
  aliases: ['list'],
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/keypairs', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((k) => ctx.out.line(String(k.id)));
    ctx.out.table(items, [
      { header: 'name', get: (k) => k.name },
      { header: 'fingerprint', get: (k) => k.fingerprint },
      { header: 'type', get: (k) => k.type },
      { header: 'created', get: (k) => age(k.created_at) },
    ]);
  },
});
