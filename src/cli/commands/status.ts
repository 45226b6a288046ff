import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['status'],
  summary: 'Show whether the cloud answers, who you are, and its nodes at a glance.',
  configure: (c) => c.option('--json', 'print JSON'),
  parse: (_a, o) => ({ json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    const health = (await api.request('GET', '/healthz', { anonymous: true })).body;
    const token = (await api.get<{ token: Record<string, unknown> }>('/v1/auth/tokens')).token;
    const nodes = await api.listAll<{ status: string; role: string; availability: string }>('/v1/nodes');
    const summary = {
      url: api.settings.url,
      health,
      user: token.user,
      project: token.project,
      roles: token.roles,
      cloud_admin: token.cloud_admin,
      token_expires_at: token.expires_at,
      nodes: { total: nodes.length, ready: nodes.filter((n) => n.status === 'ready').length, managers: nodes.filter((n) => n.role === 'manager').length },
    };
    if (i.json) return ctx.out.json(summary);
    const u = token.user as { name: string };
    const p = token.project as { name: string };
    ctx.out.fields([
      ['URL', summary.url],
      ['Health', `${String(health.status)} (version ${String(health.version)}, store ${String(health.store)}, revision ${String(health.revision)})`],
      ['User', `${u.name} on project ${p.name} (${(token.roles as string[]).join(', ')}${token.cloud_admin ? '; cloud administrator' : ''})`],
      ['Token expires', String(token.expires_at)],
      ['Nodes', `${summary.nodes.ready}/${summary.nodes.total} ready, ${summary.nodes.managers} manager(s)`],
    ]);
  },
});
