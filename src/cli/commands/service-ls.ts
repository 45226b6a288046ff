import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';

const FILTERS = ['name', 'mode', 'id'];

export function commandOrImage(spec: { task: { image?: string; command: string[] } }): string {
  return spec.task.image ? `${spec.task.image}${spec.task.command.length ? ` ${spec.task.command.join(' ')}` : ''}` : spec.task.command.join(' ');
}

export function portsText(spec: { endpoint: { ports: { published?: number; target: number; protocol: string; mode: string }[] } }): string {
  return spec.endpoint.ports.map((p) => `${p.published ? `*:${p.published}->` : ''}${p.target}/${p.protocol}${p.mode === 'host' ? ' (host)' : ''}`).join(', ');
}

export default defineCommand({
  path: ['service', 'ls'],
  summary: 'List services with running/desired tasks.',
  configure: (c) => listOptions(c, FILTERS).option('--all-projects', 'every project\'s services (cloud administrators)'),
  parse: (_a, o) => ({ ...parseListOptions(o, FILTERS), all: Boolean(o.allProjects) }),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/services', { ...i.query, ...(i.all ? { all_projects: true } : {}) }, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((s) => ctx.out.line(String(s.id)));
    ctx.out.table(items, [
      { header: 'id', get: (s) => s.id },
      { header: 'name', get: (s) => s.name },
      { header: 'mode', get: (s) => s.mode },
      { header: 'replicas', get: (s) => `${s.tasks?.running ?? 0}/${s.tasks?.desired ?? s.replicas}` },
      { header: 'command / image', get: (s) => commandOrImage(s.spec) },
      { header: 'ports', get: (s) => portsText(s.spec) },
    ]);
  },
});
