import { defineCommand } from '../command.js';

export default defineCommand({
  path: ['server', 'events'],
  summary: 'A server\'s action log: who asked what, when, and how it ended.',
  configure: (c) => c.argument('<server>', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ ref: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const r = await ctx.client().get<{ items: Record<string, any>[] }>(`/v1/servers/${encodeURIComponent(i.ref)}/actions`);
    if (i.json) return ctx.out.json(r.items);
    ctx.out.table(r.items, [
      { header: 'action', get: (e) => e.action },
      { header: 'started', get: (e) => e.start_time },
      { header: 'finished', get: (e) => e.finish_time ?? '' },
      { header: 'result', get: (e) => e.result ?? 'in progress' },
      { header: 'message', get: (e) => e.message ?? '' },
      { header: 'request', get: (e) => e.request_id ?? '' },
    ]);
  },
});
