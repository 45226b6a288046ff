/**
 * What the server and flavor commands share: the server table and detail view, following a server
 * until an action is done (`--wait`), and the action commands themselves (one file each in
 * commands/, made by `actionCommand`).
 */
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { CliError, usage } from './cli-error.js';
import { defineCommand, type CliContext, type CommandSpec } from './command.js';
import { age, type Column } from './output.js';
import { parseDuration } from '../util/duration.js';

export interface ServerJson {
  id: string;
  name: string;
  status: string;
  vm_state: string;
  task_state: string | null;
  power_state: string;
  flavor: { name: string; vcpus: number; ram_mb: number; disk_gb: number };
  image: { name: string; kind: string };
  driver: string;
  addresses: Record<string, { addr: string }[]>;
  node: string | null;
  node_id: string | null;
  host_status: string | null;
  fault: { code: string; message: string; details: string } | null;
  last_exit: { error: string | null; at: string } | null;
  message: string | null;
  allowed_actions: string[];
  created_at: string;
  launched_at: string | null;
  [k: string]: unknown;
}

export function addressText(s: ServerJson): string {
  return Object.entries(s.addresses ?? {}).map(([net, list]) => `${net}=${list.map((a) => a.addr).join(',')}`).join('; ');
}

export const SERVER_COLUMNS: Column<ServerJson>[] = [
  { header: 'id', get: (s) => s.id },
  { header: 'name', get: (s) => s.name },
  { header: 'status', get: (s) => `${s.status}${s.task_state ? ` (${s.task_state})` : ''}` },
  { header: 'networks', get: (s) => addressText(s) },
  { header: 'image', get: (s) => s.image?.name },
  { header: 'flavor', get: (s) => s.flavor?.name },
  { header: 'driver', get: (s) => s.driver },
  { header: 'node', get: (s) => s.node ?? '' },
  { header: 'created', get: (s) => age(s.created_at) },
];

/** The detail view of `server show`, the fault in full. */
export function printServer(ctx: CliContext, s: ServerJson): void {
  const pairs: [string, unknown][] = [
    ['id', s.id], ['name', s.name], ['status', s.status], ['vm_state', s.vm_state], ['task_state', s.task_state ?? '-'], ['power_state', s.power_state],
    ['flavor', `${s.flavor.name} (${s.flavor.vcpus} vCPU, ${s.flavor.ram_mb} MiB RAM, ${s.flavor.disk_gb} GiB disk)`],
    ['image', `${s.image.name} (${s.image.kind})`], ['driver', s.driver], ['addresses', addressText(s) || '-'],
    ['node', s.node ? `${s.node} (${s.host_status})` : '-'], ['key_name', s.key_name ?? '-'], ['metadata', s.metadata],
    ['created', s.created_at], ['launched', s.launched_at ?? '-'], ['actions', s.allowed_actions.join(', ')],
  ];
  for (const k of ['secrets', 'configs'] as const) {
    const refs = (s[k] as { source: string; target: string; mode: number }[] | undefined) ?? [];
    if (refs.length) pairs.push([k, refs.map((r) => `${r.source} → ${r.target} (${r.mode.toString(8).padStart(4, '0')})`).join(', ')]);
  }
  if (s.message) pairs.push(['doing', s.message]);
  if (s.fault) pairs.push(['fault', `${s.fault.code}: ${s.fault.message}: ${s.fault.details}`]);
  if (s.last_exit) pairs.push(['last exit', `${s.last_exit.error ?? 'ended'} (${s.last_exit.at})`]);
  ctx.out.fields(pairs);
}

/**
 * Follow a server until no action is in progress (or it is gone, when `gone`): progress lines on
 * stderr as its status changes. 0 when it rests in a status other than ERROR, 1 otherwise (the
 * fault printed in full), 1 on timeout.
 */
export async function waitForServer(api: ApiClient, id: string, opts: { gone?: boolean; timeoutMs?: number; stderr?: NodeJS.WritableStream } = {}): Promise<number> {
  const err = opts.stderr ?? process.stderr;
  const t0 = Date.now();
  const deadline = t0 + (opts.timeoutMs ?? 10 * 60_000);
  let last = '';
  for (;;) {
    let s: ServerJson;
    try {
      s = await api.get<ServerJson>(`/v1/servers/${encodeURIComponent(id)}`);
    } catch (e) {
      if (opts.gone && e instanceof CliError && e.code === 'YUN_NOT_FOUND') {
        err.write(`deleted in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
        return 0;
      }
      throw e;
    }
    const line = `${s.name}: ${s.status}${s.task_state ? ` (${s.task_state}${s.message ? `: ${s.message}` : ''})` : ''}`;
    if (line !== last) err.write(`${line}\n`);
    last = line;
    if (!opts.gone && s.task_state === null && s.vm_state !== 'building') {
      if (s.status === 'ERROR') {
        err.write(`${s.name} is ERROR${s.fault ? `: ${s.fault.code}: ${s.fault.message}: ${s.fault.details}` : ''}\n`);
        return 1;
      }
      err.write(`${s.name} is ${s.status} after ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
      return 0;
    }
    if (Date.now() > deadline) {
      err.write(`gave up waiting after ${Math.round((deadline - t0) / 1000)}s; the action goes on (\`yun server show ${s.name}\`)\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function waitOptions(c: Command): Command {
  return c.option('--wait', 'wait until the action is done, showing progress (non-zero exit if the server ends in ERROR)')
    .option('--timeout <duration>', 'with --wait: give up waiting after this long', '10m')
    .option('--json', 'print the server as JSON');
}

export function parseTimeout(o: Record<string, unknown>): number {
  const ms = parseDuration(String(o.timeout ?? '10m'));
  if (!ms) throw usage(`--timeout must be a duration such as 90s or 10m, not "${String(o.timeout)}"`);
  return ms;
}

/** Print a server after an action, then wait when asked. */
export async function afterAction(ctx: CliContext, s: ServerJson, i: { wait: boolean; json: boolean; timeoutMs: number }, gone = false): Promise<number> {
  if (i.json && !i.wait) ctx.out.json(s);
  else if (!i.json) ctx.out.line(s.id);
  if (!i.wait) return 0;
  const code = await waitForServer(ctx.client(), s.id, { gone, timeoutMs: i.timeoutMs });
  if (i.json && !gone) ctx.out.json(await ctx.client().get(`/v1/servers/${encodeURIComponent(s.id)}`));
  return code;
}

/** A server action command: `yun server VERB [--wait] SERVER…`. */
export function actionCommand(verb: string, action: string, summary: string, extra?: { configure?: (c: Command) => Command; body?: (o: Record<string, unknown>) => Record<string, unknown> }): CommandSpec<{ refs: string[]; wait: boolean; json: boolean; timeoutMs: number; body: Record<string, unknown> }> {
  return defineCommand({
    path: ['server', verb],
    summary,
    configure: (c) => waitOptions((extra?.configure ?? ((x: Command) => x))(c.argument('<server...>', 'names or ids'))),
    parse: (a, o) => ({ refs: a[0] as unknown as string[], wait: Boolean(o.wait), json: Boolean(o.json), timeoutMs: parseTimeout(o), body: extra?.body?.(o) ?? {} }),
    async run(i, ctx) {
      let code = 0;
      for (const ref of i.refs) {
        const body = { action: typeof i.body.action === 'string' ? i.body.action : action, ...i.body };
        const s = (await ctx.client().request<ServerJson>('POST', `/v1/servers/${encodeURIComponent(ref)}/actions`, { body })).body;
        code = Math.max(code, await afterAction(ctx, s, i));
      }
      return code;
    },
  });
}
