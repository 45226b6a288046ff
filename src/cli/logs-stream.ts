import type { CliContext } from './command.js';

/** Print an NDJSON log stream from the API: `name | line` (the task's stderr lines to stderr). */
export async function streamLogs(ctx: CliContext, path: string, o: { tail?: number; since?: string; follow: boolean; timestamps: boolean; raw: boolean }): Promise<number> {
  let code = 0;
  await ctx.client().stream(path, { tail: o.tail, since: o.since, follow: o.follow || undefined }, (line) => {
    let r: { task_name?: string; t?: string; stream?: string; line?: string; error?: string };
    try { r = JSON.parse(line); } catch { return; }
    if (r.error) { process.stderr.write(`warning: ${r.error}\n`); code = 1; return; }
    const prefix = `${o.raw ? '' : `${r.task_name} | `}${o.timestamps ? `${r.t} ` : ''}`;
    (r.stream === 'stderr' ? process.stderr : process.stdout).write(`${prefix}${r.line}\n`);
  });
  return code;
}
