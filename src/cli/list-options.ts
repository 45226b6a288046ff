import type { Command } from 'commander';
import { collect } from './command.js';
import { usage } from './cli-error.js';

/** The flags every `ls` shares: --json, --limit, --sort, --filter KEY=VALUE (repeatable). */
export function listOptions(c: Command, filters: string[]): Command {
  return c
    .option('--json', 'print JSON (the API\'s objects)')
    .option('--limit <n>', 'show at most N (all by default, fetched in pages of 1000)')
    .option('--sort <key[:dir]>', 'sort by KEY, asc or desc')
    .option('-f, --filter <key=value>', `filter; keys: ${filters.join(', ')} (repeatable)`, collect)
    .option('-q, --quiet', 'print only ids');
}

export interface ListInput {
  json: boolean;
  quiet: boolean;
  limit: number;
  query: Record<string, string | string[]>;
}

export function parseListOptions(o: Record<string, unknown>, filters: string[]): ListInput {
  let limit = Infinity;
  if (o.limit !== undefined) {
    limit = Number(o.limit);
    if (!Number.isInteger(limit) || limit < 1) throw usage(`--limit must be a positive whole number, not "${String(o.limit)}"`);
  }
  const query: Record<string, string | string[]> = {};
  if (o.sort !== undefined) {
    if (!/^[A-Za-z0-9_.]+(:(asc|desc))?$/.test(String(o.sort))) throw usage(`--sort must be KEY, KEY:asc or KEY:desc, not "${String(o.sort)}"`);
    query.sort = String(o.sort);
  }
  for (const f of (o.filter as string[] | undefined) ?? []) {
    const i = f.indexOf('=');
    if (i <= 0) throw usage(`--filter must be KEY=VALUE, not "${f}"`);
    const key = f.slice(0, i);
    const value = f.slice(i + 1);
    if (!filters.includes(key)) throw usage(`Cannot filter by "${key}"; the filters are ${filters.join(', ')}`);
    if (key === 'label') query.label = [...((query.label as string[] | undefined) ?? []), value];
    else query[key] = value;
  }
  return { json: Boolean(o.json), quiet: Boolean(o.quiet), limit, query };
}
