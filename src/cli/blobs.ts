import { readFileSync } from 'node:fs';
import { defineCommand } from './command.js';
import { usage } from './cli-error.js';
import { listOptions, parseListOptions } from './list-options.js';
import { age } from './output.js';
import { parseLabels } from './service-flags.js';
import { formatSize } from '../util/size.js';

/** The commands of `yun secret` and `yun config`: one shape, two kinds (a secret is never shown). */
interface Kind {
  kind: 'secret' | 'config';
  collection: 'secrets' | 'configs';
  sealed: boolean;
}
export const SECRET_CLI: Kind = { kind: 'secret', collection: 'secrets', sealed: true };
export const CONFIG_CLI: Kind = { kind: 'config', collection: 'configs', sealed: false };

function readContent(file: string): Buffer {
  try {
    return readFileSync(file === '-' ? 0 : file);
  } catch (e) {
    throw usage(`${file} cannot be read: ${(e as Error).message}`);
  }
}

export const blobCreate = (k: Kind) => defineCommand({
  path: [k.kind, 'create'],
  summary: k.sealed ? 'Create a secret from a file or standard input (-): sealed at rest, never shown again.' : 'Create a config from a file or standard input (-).',
  configure: (c) => c.argument('<name>', `${k.kind} name`).argument('<file>', 'the content: a file, or - for standard input')
    .option('-l, --label <key=value>', 'a label (repeatable)', (v: string, p: string[] = []) => [...p, v]).option('--json', 'print JSON'),
  parse: (a, o) => {
    const content = readContent(a[1] as string);
    const labels = o.label ? parseLabels(o.label as string[]) : undefined;
    return { body: { name: a[0] as string, data: content.toString('base64'), ...(labels ? { labels } : {}) }, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const s = (await ctx.client().request<Record<string, any>>('POST', `/v1/${k.collection}`, { body: i.body })).body;
    if (i.json) return ctx.out.json(s);
    ctx.out.line(String(s.id));
  },
});

export const blobUpdate = (k: Kind) => defineCommand({
  path: [k.kind, 'update'],
  summary: `Give a ${k.kind} new content (a file or - for standard input): a new revision, rolled out to the services that use it.`,
  configure: (c) => c.argument('<name>', 'name or id').argument('<file>', 'the new content: a file, or - for standard input').option('--json', 'print JSON'),
  parse: (a, o) => ({ ref: a[0] as string, body: { data: readContent(a[1] as string).toString('base64') }, json: Boolean(o.json) }),
  async run(i, ctx) {
    const s = (await ctx.client().request<Record<string, any>>('PUT', `/v1/${k.collection}/${encodeURIComponent(i.ref)}`, { body: i.body })).body;
    if (i.json) return ctx.out.json(s);
    const services = (s.services ?? []) as string[];
    ctx.out.line(`${s.name}: revision ${s.revision}${services.length ? `; rolling update of ${services.join(', ')} (follow with \`yun service ps SERVICE\`)` : '; no service uses it'}`);
  },
});

const FILTERS = ['name'];
export const blobLs = (k: Kind) => defineCommand({
  path: [k.kind, 'ls'],
  summary: `List your project's ${k.collection}.`,
  aliases: ['list'],
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>(`/v1/${k.collection}`, i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((s) => ctx.out.line(String(s.id)));
    ctx.out.table(items, [
      { header: 'id', get: (s) => s.id },
      { header: 'name', get: (s) => s.name },
      { header: 'size', get: (s) => formatSize(Number(s.size)) },
      { header: 'revision', get: (s) => s.revision ?? 1 },
      { header: 'created', get: (s) => age(s.created_at) },
    ]);
  },
});

export const blobInspect = (k: Kind) => defineCommand({
  path: [k.kind, 'inspect'],
  summary: k.sealed ? 'Show a secret (never its content).' : 'Show a config; --pretty prints its content.',
  configure: (c) => c.argument('<name>', 'name or id').option('--pretty', 'fields for people instead of JSON'),
  parse: (a, o) => ({ ref: a[0] as string, pretty: Boolean(o.pretty) }),
  async run(i, ctx) {
    const s = await ctx.client().get<Record<string, any>>(`/v1/${k.collection}/${encodeURIComponent(i.ref)}`);
    if (!i.pretty) return ctx.out.json(s);
    const labels = Object.entries((s.labels ?? {}) as Record<string, string>).map(([a, b]) => `${a}=${b}`).join(', ');
    ctx.out.fields([['id', s.id], ['name', s.name], ['size', formatSize(Number(s.size))], ['revision', s.revision ?? 1], ['labels', labels], ['created', s.created_at],
      ...(k.sealed ? [] : [['data', Buffer.from(String(s.data), 'base64').toString('utf8')] as [string, unknown]])]);
  },
});

export const blobRm = (k: Kind) => defineCommand({
  path: [k.kind, 'rm'],
  summary: `Remove ${k.collection}.`,
  aliases: ['delete'],
  configure: (c) => c.argument(`<${k.kind}...>`, 'names or ids'),
  parse: (a) => ({ refs: a[0] as unknown as string[] }),
  async run(i, ctx) {
    for (const ref of i.refs) {
      await ctx.client().request('DELETE', `/v1/${k.collection}/${encodeURIComponent(ref)}`);
      ctx.out.line(ref);
    }
  },
});
