import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseDuration } from '../../util/duration.js';

export default defineCommand({
  path: ['task', 'exec'],
  summary: 'Run a command inside a running task: yun task exec [-it] TASK -- CMD ARGS…',
  configure: (c) => c.argument('<task>', 'task id').argument('<command...>', 'the command (after --)')
    .option('-i, --interactive', 'keep standard input open (with -t: an interactive terminal)')
    .option('-t, --tty', 'allocate a terminal (oci driver)')
    .option('--timeout <duration>', 'give up after this long (without -it)', '30s'),
  parse: (a, o) => {
    const timeout = parseDuration(String(o.timeout));
    if (!timeout) throw usage(`--timeout must be a duration such as 30s, not "${String(o.timeout)}"`);
    if (Boolean(o.tty) !== Boolean(o.interactive)) throw usage('Use -i and -t together (-it) for an interactive terminal, or neither');
    return { ref: a[0] as string, command: a[1] as unknown as string[], timeout, tty: Boolean(o.tty) };
  },
  async run(i, ctx) {
    if (i.tty) return interactive(ctx.client(), `/v1/tasks/${encodeURIComponent(i.ref)}/tty`, { command: i.command });
    const r = (await ctx.client().request<{ exit_code: number; stdout: string; stderr: string }>('POST', `/v1/tasks/${encodeURIComponent(i.ref)}/exec`, { body: { command: i.command, timeout_ms: i.timeout } })).body;
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exit_code < 0 ? 1 : r.exit_code;
  },
});

/**
 * A terminal session over the API's WebSocket (`task exec -it`, `server console`): raw input up,
 * output down, window resizes passed on. `detachKey` (a byte, e.g. 0x1d for Ctrl-]) leaves it.
 */
export async function interactive(api: import('../client.js').ApiClient, path: string, query: Record<string, string | string[]>, opts: { detachKey?: number } = {}): Promise<number> {
  const rows = process.stdout.rows ?? 24;
  const cols = process.stdout.columns ?? 80;
  const ws = await api.websocket(path, { ...query, rows: String(rows), cols: String(cols) });
  const stdin = process.stdin;
  const raw = stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  stdin.resume();
  let detached = false;
  const onInput = (b: Buffer) => {
    if (opts.detachKey !== undefined && b.includes(opts.detachKey)) { detached = true; ws.close(1000, 'detached'); return; }
    ws.send(b, { binary: true });
  };
  stdin.on('data', onInput);
  const onResize = () => ws.send(JSON.stringify({ resize: { rows: process.stdout.rows, cols: process.stdout.columns } }));
  process.stdout.on('resize', onResize);
  return new Promise<number>((resolve) => {
    let code = 1;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) { process.stdout.write(data); return; }
      try {
        const m = JSON.parse(data.toString()) as { exit_code?: number; error?: string };
        if (m.error) process.stderr.write(`\r\nError: ${m.error}\r\n`);
        if (typeof m.exit_code === 'number') code = m.exit_code < 0 ? 1 : m.exit_code;
      } catch { /* ignore */ }
    });
    ws.on('close', () => {
      stdin.off('data', onInput);
      process.stdout.off('resize', onResize);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
      resolve(detached ? 0 : code);
    });
  });
}
