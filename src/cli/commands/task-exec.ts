import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseDuration } from '../../util/duration.js';

export default defineCommand({
  path: ['task', 'exec'],
  summary: 'Run a command inside a running task: yun task exec TASK -- CMD ARGS…',
  configure: (c) => c.argument('<task>', 'task id').argument('<command...>', 'the command (after --)').option('--timeout <duration>', 'give up after this long', '30s'),
  parse: (a, o) => {
    const timeout = parseDuration(String(o.timeout));
    if (!timeout) throw usage(`--timeout must be a duration such as 30s, not "${String(o.timeout)}"`);
    return { ref: a[0] as string, command: a[1] as unknown as string[], timeout };
  },
  async run(i, ctx) {
    const r = (await ctx.client().request<{ exit_code: number; stdout: string; stderr: string }>('POST', `/v1/tasks/${encodeURIComponent(i.ref)}/exec`, { body: { command: i.command, timeout_ms: i.timeout } })).body;
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exit_code < 0 ? 1 : r.exit_code;
  },
});
