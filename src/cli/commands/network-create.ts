import { collect, defineCommand } from '../command.js';
import { parseLabels } from '../service-flags.js';

export default defineCommand({
  path: ['network', 'create'],
  summary: 'Create an overlay network (tasks on it reach each other on any node, and nothing else).',
  configure: (c) => c
    .argument('<name>', 'network name')
    .option('-d, --driver <driver>', 'network driver (only overlay)', 'overlay')
    .option('--subnet <cidr>', 'IPv4 subnet, /8 to /26 (default: a free /16 of 10.128.0.0/9)')
    .option('--attachable', 'let one-off tasks join it (`yun run --network`)')
    .option('--label <k=v>', 'network label (repeatable)', collect)
    .option('--json', 'print JSON'),
  parse: (a, o) => ({ name: a[0] as string, driver: String(o.driver), subnet: o.subnet as string | undefined, attachable: Boolean(o.attachable), labels: parseLabels(o.label as string[] | undefined), json: Boolean(o.json) }),
  async run(i, ctx) {
    const n = (await ctx.client().request<Record<string, any>>('POST', '/v1/networks', {
      body: { name: i.name, driver: i.driver, attachable: i.attachable, labels: i.labels, ...(i.subnet ? { subnet: i.subnet } : {}) },
    })).body;
    if (i.json) return ctx.out.json(n);
    ctx.out.line(String(n.id));
  },
});
