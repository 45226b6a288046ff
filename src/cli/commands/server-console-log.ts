import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['server', 'console-log'],
  summary: 'Print a server\'s console output (a VM\'s serial console, a container\'s output).',
  configure: (c) => c.argument('<server>', 'name or id').option('--lines <n>', 'only the last N lines').option('--json', 'print JSON'),
  parse: (a, o) => {
    const lines = o.lines === undefined ? undefined : Number(o.lines);
    if (lines !== undefined && (!Number.isInteger(lines) || lines < 1)) throw usage(`--lines must be a positive whole number, not "${String(o.lines)}"`);
    return { ref: a[0] as string, lines, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const r = await ctx.client().get<{ output: string }>(`/v1/servers/${encodeURIComponent(i.ref)}/console-log`, i.lines ? { lines: String(i.lines) } : undefined);
    if (i.json) return ctx.out.json(r);
    process.stdout.write(r.output.endsWith('\n') || r.output === '' ? r.output : `${r.output}\n`);
  },
});
