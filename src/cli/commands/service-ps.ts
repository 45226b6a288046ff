import { defineCommand, collect } from '../command.js';
import { usage } from '../cli-error.js';
import { age } from '../output.js';
import type { ApiClient } from '../client.js';
import type { CliContext } from '../command.js';

const FILTERS: Record<string, string> = { 'desired-state': 'desired_state', node: 'node_id', state: 'state', slot: 'slot' };

export function parseTaskFilters(list: string[] | undefined): Record<string, string> {
  const q: Record<string, string> = {};
  for (const f of list ?? []) {
    const i = f.indexOf('=');
    const k = f.slice(0, i);
    if (i <= 0 || !FILTERS[k]) throw usage(`--filter must be KEY=VALUE with KEY one of ${Object.keys(FILTERS).join(', ')}, not "${f}"`);
    q[FILTERS[k]!] = f.slice(i + 1);
  }
  if (q.desired_state && !['running', 'shutdown', 'remove', 'accepted'].includes(q.desired_state)) throw usage(`desired-state must be running or shutdown, not "${q.desired_state}"`);
  return q;
}

export async function nodeNames(api: ApiClient): Promise<Map<string, string>> {
  try {
    return new Map((await api.listAll<{ id: string; name: string }>('/v1/nodes')).map((n) => [n.id, n.name]));
  } catch {
    return new Map();
  }
}

/** The task table of `service ps` and `node ps`: the full error, never cut. */
export async function printTasks(ctx: CliContext, tasks: Record<string, any>[], json: boolean, quiet: boolean): Promise<void> {
  if (json) return ctx.out.json(tasks);
  if (quiet) return tasks.forEach((t) => ctx.out.line(String(t.id)));
  const names = await nodeNames(ctx.client());
  ctx.out.table(tasks, [
    { header: 'id', get: (t) => t.id },
    { header: 'name', get: (t) => t.name },
    { header: 'node', get: (t) => (t.node_id ? names.get(t.node_id) ?? t.node_id : '') },
    { header: 'desired state', get: (t) => t.desired_state },
    { header: 'current state', get: (t) => `${t.status.state}${t.status.health ? ` (${t.status.health})` : ''} ${age(t.status.timestamp)}` },
    { header: 'error', get: (t) => t.status.error ?? (t.status.state === 'pending' && t.status.message.startsWith('no suitable') ? t.status.message : '') },
    { header: 'notes', get: (t) => [t.shutdown_reason, t.status.ports?.length ? t.status.ports.map((p: any) => `${p.host_port}->${p.target}/${p.protocol}`).join(',') : ''].filter(Boolean).join('; ') },
  ]);
}

export default defineCommand({
  path: ['service', 'ps'],
  summary: 'List a service\'s tasks: where they run, their state, and full errors.',
  configure: (c) => c.argument('<service...>', 'names or ids')
    .option('-f, --filter <key=value>', 'desired-state=running|shutdown, node=ID, state=S, slot=N (repeatable)', collect)
    .option('--json', 'print JSON').option('-q, --quiet', 'print only task ids'),
  parse: (a, o) => ({ refs: a[0] as unknown as string[], query: parseTaskFilters(o.filter as string[] | undefined), json: Boolean(o.json), quiet: Boolean(o.quiet) }),
  async run(i, ctx) {
    const api = ctx.client();
    const all: Record<string, any>[] = [];
    for (const ref of i.refs) {
      const svc = await api.get<{ id: string }>(`/v1/services/${encodeURIComponent(ref)}`);
      const tasks = await api.listAll<Record<string, any>>('/v1/tasks', { service_id: svc.id, ...i.query });
      tasks.sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || String(b.created_at).localeCompare(String(a.created_at)));
      all.push(...tasks);
    }
    await printTasks(ctx, all, i.json, i.quiet);
  },
});
