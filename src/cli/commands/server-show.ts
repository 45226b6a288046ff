import { defineCommand } from '../command.js';
import { printServer, type ServerJson } from '../servers.js';

export default defineCommand({
  path: ['server', 'show'],
  summary: 'Show a server: its status, vm_state and task_state, addresses, node, and the full fault of an ERROR.',
  configure: (c) => c.argument('<server>', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ ref: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const s = await ctx.client().get<ServerJson>(`/v1/servers/${encodeURIComponent(i.ref)}`);
    if (i.json) return ctx.out.json(s);
    printServer(ctx, s);
  },
});
