import { defineCommand } from '../command.js';
import { formatSize } from '../../util/size.js';

export default defineCommand({
  path: ['quota', 'show'],
  summary: 'Show a project\'s quotas and what is in use (your project by default).',
  configure: (c) => c.argument('[project]', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ project: a[0], json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    const project = i.project ?? String(((await api.get<{ token: { project: { id: string } } }>('/v1/auth/tokens')).token.project.id));
    const q = await api.get<{ project_name: string; quotas: Record<string, { limit: number; in_use: number; unit: string }> }>(`/v1/projects/${encodeURIComponent(project)}/quotas`);
    if (i.json) return ctx.out.json(q);
    const bytes = (k: string) => k === 'memory' || k === 'ram';
    const show = (k: string, v: number) => (v < 0 ? 'unlimited' : bytes(k) ? formatSize(v) : String(v));
    ctx.out.table(Object.entries(q.quotas), [
      { header: 'quota', get: ([k]) => k },
      { header: 'limit', get: ([k, v]) => show(k, v.limit) },
      { header: 'in use', get: ([k, v]) => (bytes(k) ? formatSize(v.in_use) : v.in_use) },
    ]);
  },
});
