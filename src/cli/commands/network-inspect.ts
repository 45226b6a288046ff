import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['network', 'inspect'],
  summary: 'Show networks in full (JSON): subnet, nodes with their slices and gateways, services with their VIPs.',
  configure: (c) => c.argument('<network...>', 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    const out = [];
    for (const ref of i.refs) out.push(await ctx.client().get(`/v1/networks/${encodeURIComponent(ref)}`));
    ctx.out.json(out.length === 1 ? out[0] : out);
  },
});
