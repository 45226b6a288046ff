import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['audit', 'ls'],
  summary: 'Show the audit log of mutating calls, newest first (cloud administrators).',
  configure: (c) => c
    .option('--limit <n>', 'show at most N entries', '100')
    .option('--project <id>', 'only calls made with tokens of this project id')
    .option('--user <id>', 'only calls by this user id')
    .option('--failed', 'only calls that failed')
    .option('--since <time>', 'only entries at or after this RFC 3339 time')
    .option('--json', 'print JSON'),
  parse: (_a, o) => {
    const limit = Number(o.limit);
    if (!Number.isInteger(limit) || limit < 1) throw usage(`--limit must be a positive whole number, not "${String(o.limit)}"`);
    if (o.since !== undefined && Number.isNaN(Date.parse(String(o.since)))) throw usage(`--since must be a time such as 2026-01-31T12:00:00Z, not "${String(o.since)}"`);
    return { limit, project: o.project as string | undefined, user: o.user as string | undefined, failed: Boolean(o.failed), since: o.since as string | undefined, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, unknown>>('/v1/audit', {
      project_id: i.project, user_id: i.user, result: i.failed ? 'failure' : undefined, since: i.since ? new Date(i.since).toISOString() : undefined,
    }, i.limit);
    if (i.json) return ctx.out.json(items);
    ctx.out.table(items, [
      { header: 'time', get: (e) => e.at },
      { header: 'user', get: (e) => e.user_name },
      { header: 'project', get: (e) => e.project_id },
      { header: 'action', get: (e) => e.action },
      { header: 'target', get: (e) => e.target_id },
      { header: 'status', get: (e) => `${String(e.status)}${e.error_code ? ` ${String(e.error_code)}` : ''}` },
      { header: 'request id', get: (e) => e.request_id },
    ]);
  },
});
