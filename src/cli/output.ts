import { formatAge } from '../util/duration.js';

/**
 * Output for people and scripts: a table with a header on a terminal; tab-separated rows without a
 * header when piped; `--json` prints the API's own objects.
 */
export interface Column<T> {
  header: string;
  get: (row: T) => unknown;
}

export class Output {
  constructor(private out: NodeJS.WritableStream = process.stdout, readonly tty: boolean = Boolean((process.stdout as { isTTY?: boolean }).isTTY)) {}

  line(text = ''): void {
    this.out.write(`${text}\n`);
  }

  json(value: unknown): void {
    this.out.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  table<T>(rows: T[], columns: Column<T>[]): void {
    const cells = rows.map((r) => columns.map((c) => cell(c.get(r))));
    if (!this.tty) {
      for (const row of cells) this.line(row.map((c) => c.replace(/[\t\n]/g, ' ')).join('\t'));
      return;
    }
    const headers = columns.map((c) => c.header.toUpperCase());
    const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.split('\n')[0]!.length)));
    const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
    this.line(fmt(headers));
    for (const r of cells) this.line(fmt(r));
  }

  /** Key/value lines for one object. */
  fields(pairs: [string, unknown][]): void {
    const w = Math.max(...pairs.map(([k]) => k.length));
    for (const [k, v] of pairs) this.line(`${`${k}:`.padEnd(w + 2)}${cell(v)}`);
  }
}

export function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map(cell).join(',');
  if (typeof v === 'object') return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}=${cell(x)}`).join(',');
  return String(v);
}

export function cap(s: unknown): string {
  const t = String(s ?? '');
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export function age(iso: unknown): string {
  return typeof iso === 'string' ? formatAge(iso) : '';
}
