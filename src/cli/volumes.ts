/** What the volume commands share: the table, the detail view, and following a volume (`--wait`). */
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { CliError, usage } from './cli-error.js';
import type { CliContext } from './command.js';
import { age, type Column } from './output.js';
import { parseTimeout } from './servers.js';

export interface VolumeJson {
  id: string; name: string; size: number; status: string; volume_type: string; bootable: boolean; content: string; node: string | null;
  attachments: { server_id: string; server_name: string; device: string | null; mount_path: string | null; boot: boolean }[];
  snapshots: string[]; fault: { code: string; message: string; details: string } | null; message: string | null; created_at: string; description: string;
  source: Record<string, unknown>; serial: string; allowed_actions: string[];
  [k: string]: unknown;
}

export interface SnapshotJson { id: string; name: string; status: string; size: number; volume_name: string; volume_id: string; created_at: string; fault: VolumeJson['fault']; quiesced: boolean }

const attachedText = (v: VolumeJson) => v.attachments.map((a) => `${a.server_name}${a.device ? `:${a.device}` : a.mount_path ? `:${a.mount_path}` : ''}${a.boot ? ' (root)' : ''}`).join(', ');

export const VOLUME_COLUMNS: Column<VolumeJson>[] = [
  { header: 'id', get: (v) => v.id },
  { header: 'name', get: (v) => v.name },
  { header: 'status', get: (v) => v.status },
  { header: 'size', get: (v) => `${v.size} GiB` },
  { header: 'type', get: (v) => v.volume_type },
  { header: 'bootable', get: (v) => String(v.bootable) },
  { header: 'attached to', get: (v) => attachedText(v) },
  { header: 'node', get: (v) => v.node ?? '' },
  { header: 'created', get: (v) => age(v.created_at) },
];

export const SNAPSHOT_COLUMNS: Column<SnapshotJson>[] = [
  { header: 'id', get: (s) => s.id },
  { header: 'name', get: (s) => s.name },
  { header: 'status', get: (s) => s.status },
  { header: 'size', get: (s) => `${s.size} GiB` },
  { header: 'volume', get: (s) => s.volume_name },
  { header: 'created', get: (s) => age(s.created_at) },
];

export function printVolume(ctx: CliContext, v: VolumeJson): void {
  const src = v.source as { kind: string; image?: { name: string }; snapshot_id?: string };
  const pairs: [string, unknown][] = [
    ['id', v.id], ['name', v.name], ['status', v.status], ['size', `${v.size} GiB`], ['type', v.volume_type], ['content', v.content], ['bootable', v.bootable],
    ['source', src.kind === 'image' ? `image ${src.image?.name}` : src.kind === 'snapshot' ? `snapshot ${src.snapshot_id}` : 'blank'],
    ['attached to', attachedText(v) || '-'], ['snapshots', v.snapshots.join(', ') || '-'], ['node', v.node ?? '-'], ['serial', v.serial],
    ['description', v.description || '-'], ['created', v.created_at], ['actions', v.allowed_actions.join(', ')],
  ];
  if (v.message) pairs.push(['doing', v.message]);
  if (v.fault) pairs.push(['fault', `${v.fault.code}: ${v.fault.message}: ${v.fault.details}`]);
  ctx.out.fields(pairs);
}

const RESTING = new Set(['available', 'in-use', 'error', 'error_extending', 'error_deleting']);

/**
 * Follow a volume (or a snapshot) until it rests (or is gone, with `gone`): progress on stderr. 0
 * when it rests in a good status, 1 in an error status (the fault in full) or on timeout.
 */
export async function waitForVolume(api: ApiClient, path: string, opts: { gone?: boolean; timeoutMs: number; stderr?: NodeJS.WritableStream }): Promise<number> {
  const err = opts.stderr ?? process.stderr;
  const t0 = Date.now();
  let last = '';
  for (;;) {
    let v: VolumeJson;
    try {
      v = await api.get<VolumeJson>(path);
    } catch (e) {
      if (opts.gone && e instanceof CliError && e.code === 'YUN_NOT_FOUND') {
        err.write(`deleted in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
        return 0;
      }
      throw e;
    }
    const line = `${v.name}: ${v.status}${v.message ? ` (${v.message})` : ''}`;
    if (line !== last) err.write(`${line}\n`);
    last = line;
    if (!opts.gone && RESTING.has(v.status)) {
      if (v.status.startsWith('error')) {
        err.write(`${v.name} is ${v.status}${v.fault ? `: ${v.fault.code}: ${v.fault.message}: ${v.fault.details}` : ''}\n`);
        return 1;
      }
      err.write(`${v.name} is ${v.status} after ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
      return 0;
    }
    if (Date.now() - t0 > opts.timeoutMs) {
      err.write(`gave up waiting after ${Math.round(opts.timeoutMs / 1000)}s; it goes on (\`yun volume show ${v.name}\`)\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function volumeWaitOptions(c: Command): Command {
  return c.option('--wait', 'wait until it is done, showing progress (non-zero exit if it ends in error)')
    .option('--timeout <duration>', 'with --wait: give up waiting after this long', '10m')
    .option('--json', 'print it as JSON');
}

export function waitInput(o: Record<string, unknown>): { wait: boolean; json: boolean; timeoutMs: number } {
  return { wait: Boolean(o.wait), json: Boolean(o.json), timeoutMs: parseTimeout(o) };
}

/** Print after a change, then follow it when asked. */
export async function afterVolume(ctx: CliContext, v: { id: string }, path: string, i: { wait: boolean; json: boolean; timeoutMs: number }, gone = false): Promise<number> {
  if (i.json && !i.wait) ctx.out.json(v);
  else if (!i.json) ctx.out.line(v.id);
  if (!i.wait) return 0;
  const code = await waitForVolume(ctx.client(), `${path}/${encodeURIComponent(v.id)}`, { gone, timeoutMs: i.timeoutMs });
  if (i.json && !gone) ctx.out.json(await ctx.client().get(`${path}/${encodeURIComponent(v.id)}`));
  return code;
}

export function parseSize(v: unknown, flag = '--size'): number {
  const s = String(v);
  if (!/^\d+$/.test(s) || Number(s) < 1) throw usage(`${flag} must be a whole number of GiB, at least 1, not "${s}"`);
  return Number(s);
}
