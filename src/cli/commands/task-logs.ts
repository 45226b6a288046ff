import { defineCommand } from '../command.js';
import { streamLogs } from '../logs-stream.js';
import { logFlags } from './service-logs.js';

export default defineCommand({
  path: ['task', 'logs'],
  summary: 'Show a task\'s logs.',
  configure: (c) => c.argument('<task>', 'task id')
    .option('-f, --follow', 'keep streaming new lines')
    .option('-n, --tail <n>', 'only the last N lines')
    .option('--since <when>', 'only lines since a duration ago (10m) or a time')
    .option('-t, --timestamps', 'show timestamps')
    .option('--raw', 'no task-name prefix'),
  parse: (a, o) => ({ ref: a[0]!, ...logFlags(o) }),
  async run(i, ctx) {
    return streamLogs(ctx, `/v1/tasks/${encodeURIComponent(i.ref)}/logs`, i);
  },
});
