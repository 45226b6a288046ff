import { defineCommand, collect } from '../command.js';
import { parseTaskFilters, printTasks } from './service-ps.js';
import { SERVER_COLUMNS, type ServerJson } from '../servers.js';

export default defineCommand({
  path: ['node', 'ps'],
  summary: 'List the tasks and servers on a node (your project\'s; every project\'s for a cloud administrator).',
  configure: (c) => c.argument('<node>', 'name or id')
    .option('-f, --filter <key=value>', 'desired-state=running|shutdown, state=S (repeatable)', collect)
    .option('--json', 'print JSON').option('-q, --quiet', 'print only task ids'),
  parse: (a, o) => ({ ref: a[0]!, query: parseTaskFilters(o.filter as string[] | undefined), json: Boolean(o.json), quiet: Boolean(o.quiet) }),
  async run(i, ctx) {
    const api = ctx.client();
    const node = await api.get<{ id: string }>(`/v1/nodes/${encodeURIComponent(i.ref)}`);
    const me = (await api.get<{ token: { cloud_admin: boolean } }>('/v1/auth/tokens')).token;
    const scope = me.cloud_admin ? { all_projects: 'true' } : {};
    const tasks = await api.listAll<Record<string, any>>('/v1/tasks', { node_id: node.id, ...i.query, ...scope });
    const servers = Object.keys(i.query).length ? [] : await api.listAll<ServerJson>('/v1/servers', { node_id: node.id, ...scope });
    if (i.json) return ctx.out.json({ tasks, servers });
    if (i.quiet) return [...tasks, ...servers].forEach((x) => ctx.out.line(String(x.id)));
    if (tasks.length || !servers.length) await printTasks(ctx, tasks, false, false);
    if (servers.length) {
      if (ctx.out.tty) ctx.out.line(tasks.length ? '\nSERVERS' : 'SERVERS');
      ctx.out.table(servers, SERVER_COLUMNS);
    }
  },
});
