import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseDuration } from '../../util/duration.js';
import { streamLogs } from '../logs-stream.js';

export function logFlags(o: Record<string, unknown>) {
  let tail: number | undefined;
  if (o.tail !== undefined && o.tail !== 'all') {
    tail = Number(o.tail);
    if (!Number.isInteger(tail) || tail < 0) throw usage(`--tail must be a whole number or "all", not "${String(o.tail)}"`);
  }
  let since: string | undefined;
  if (o.since !== undefined) {
    const rel = parseDuration(String(o.since));
    if (rel !== undefined) since = new Date(Date.now() - rel).toISOString();
    else if (!Number.isNaN(Date.parse(String(o.since)))) since = new Date(String(o.since)).toISOString();
    else throw usage(`--since must be a duration (10m) or a time (2026-01-31T12:00:00Z), not "${String(o.since)}"`);
  }
  return { tail, since, follow: Boolean(o.follow), timestamps: Boolean(o.timestamps), raw: Boolean(o.raw) };
}

export default defineCommand({
  path: ['service', 'logs'],
  summary: 'Show the logs of a service\'s tasks.',
  configure: (c) => c.argument('<service>', 'name or id')
    .option('-f, --follow', 'keep streaming new lines')
    .option('-n, --tail <n>', 'only the last N lines of each task')
    .option('--since <when>', 'only lines since a duration ago (10m) or a time')
    .option('-t, --timestamps', 'show timestamps')
    .option('--raw', 'no task-name prefix'),
  parse: (a, o) => ({ ref: a[0]!, ...logFlags(o) }),
  async run(i, ctx) {
    const svc = await ctx.client().get<{ id: string }>(`/v1/services/${encodeURIComponent(i.ref)}`);
    return streamLogs(ctx, `/v1/services/${svc.id}/logs`, i);
  },
});
