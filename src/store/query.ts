/**
 * Filters, sort keys, sums and groups evaluated in JavaScript with the semantics the SQLite store
 * gets from SQL (`json_extract`, SQLite's type ordering and affinities), for backends that keep
 * objects themselves: the memory store today, an etcd backend later.
 *
 * The SQL value model: `json_extract` turns a JSON string into TEXT, an integer into INTEGER, any
 * other number into REAL, `true`/`false` into 1/0, an object or array into its JSON text, and
 * `null` or a missing path into NULL. Comparisons never convert between numbers and text for JSON
 * paths (`1` does not equal `"1"`); numbers compare numerically (INTEGER 1 equals REAL 1.0), text
 * by code point (SQLite's BINARY collation: memcmp of UTF-8). Sorting puts NULL first, then numbers,
 * then text — and the store sorts on `IFNULL(value, '')`, so a missing value sorts as the empty
 * text: before other text, but *after* every number.
 *
 * Columns (`id`, `name`, `project_id`, `kind`, `created_at`, `updated_at` are TEXT, `version` and
 * `revision` INTEGER) apply SQLite's affinity to the value they are compared with: a numeric string
 * compared with `version` becomes a number; a number compared with a TEXT column becomes text — in
 * the form better-sqlite3 produces, which binds every JavaScript number as a REAL (`5` → `'5.0'`).
 */
import { YunError } from '../errors/errors.js';
import type { Filter, StoredObject } from './store.js';

/** A value as SQL sees it: NULL, a number (INTEGER or REAL), or text. */
export type SqlValue = null | number | string;

const TEXT_COLUMNS = new Set(['id', 'name', 'project_id', 'kind', 'created_at', 'updated_at']);
const INTEGER_COLUMNS = new Set(['version', 'revision']);
const INT64 = 2 ** 63;

/** Reads a field of an object: the raw JSON value (undefined when the path is missing). */
export type Getter = (o: StoredObject) => unknown;

export interface Field {
  get: Getter;
  /** The column's affinity, or undefined for a JSON path (no affinity). */
  affinity?: 'text' | 'integer';
}

/** A column, or a path into `data` (`labels.zone`): validated exactly as SqliteStore's fieldExpr. */
export function field(name: string): Field {
  if (TEXT_COLUMNS.has(name) || INTEGER_COLUMNS.has(name)) {
    const key = name as keyof StoredObject;
    return { get: (o) => o[key], affinity: TEXT_COLUMNS.has(name) ? 'text' : 'integer' };
  }
  if (!/^[A-Za-z0-9_.\-/]+$/.test(name) || name.length > 200) {
    throw new YunError('YUN_BAD_FILTER', `"${name}" is not a valid field name`);
  }
  const parts = name.split('.');
  return {
    get: (o) => {
      let cur: unknown = o.data;
      for (const p of parts) {
        // Object members only: a path never descends into an array, a string or a number.
        if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, p)) return undefined;
        cur = (cur as Record<string, unknown>)[p];
      }
      return cur;
    },
  };
}

/** What `json_extract` (or a column) yields for a raw value. */
export function sqlOf(v: unknown): SqlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** What SqliteStore binds for a filter value (booleans as 1/0, arrays and objects as JSON text). */
function paramOf(v: unknown): SqlValue {
  return sqlOf(v);
}

/** SQLite's text for a REAL (approximately: SQLite writes up to 17 significant digits, `1.0e+21`, `5.0`). */
export function realText(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return `${n}.0`;
  const s = String(n);
  const m = /^(-?)(\d+(?:\.\d+)?)e([+-])(\d+)$/.exec(s);
  if (!m) return s;
  const mant = m[2]!.includes('.') ? m[2]! : `${m[2]}.0`;
  return `${m[1]}${mant}e${m[3]}${m[4]!.padStart(2, '0')}`;
}

/** The text SQLite makes of a raw JSON value (what `substr` works on). */
export function textOf(v: unknown): string | null {
  const s = sqlOf(v);
  if (s === null || typeof s === 'string') return s;
  if (typeof v === 'boolean') return String(s);
  return Number.isInteger(s) && Math.abs(s) < INT64 ? String(s) : realText(s);
}

const NUMERIC = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/;
const NUMERIC_PREFIX = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/;

/** A filter value as compared with a field of this affinity. */
function withAffinity(v: SqlValue, affinity: Field['affinity']): SqlValue {
  if (affinity === 'text' && typeof v === 'number') return realText(v);
  if (affinity === 'integer' && typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return v;
}

/** `a = b` in SQL: false when either is NULL, numbers never equal to text. */
export function sqlEquals(a: SqlValue, b: SqlValue): boolean {
  return a !== null && b !== null && a === b;
}

/** Code-point order (= UTF-8 byte order, SQLite's BINARY collation), unlike JavaScript's `<` on UTF-16. */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Surrogates (U+D800–DFFF, which encode code points above U+FFFF) go above U+E000–FFFF.
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

/** SQLite's ORDER BY: NULL, then numbers, then text. */
export function compareSql(a: SqlValue, b: SqlValue): number {
  const ca = a === null ? 0 : typeof a === 'number' ? 1 : 2;
  const cb = b === null ? 0 : typeof b === 'number' ? 1 : 2;
  if (ca !== cb) return ca - cb;
  if (ca === 1) return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  if (ca === 2) return compareText(a as string, b as string);
  return 0;
}

/** One filter as a predicate, with SqliteStore's `whereFor` semantics. */
export function filterPredicate(f: Filter): (o: StoredObject) => boolean {
  const fl = field(f.field);
  const value = (o: StoredObject) => sqlOf(fl.get(o));
  switch (f.op) {
    case 'eq': {
      if (f.value === null) return (o) => value(o) === null;
      const p = withAffinity(paramOf(f.value), fl.affinity);
      return (o) => sqlEquals(value(o), p);
    }
    case 'ne': {
      if (f.value === null) return (o) => value(o) !== null;
      const p = withAffinity(paramOf(f.value), fl.affinity);
      // (e IS NULL OR e != ?): a NULL parameter (an undefined value) makes `!=` never true.
      return (o) => { const v = value(o); return v === null || (p !== null && v !== p); };
    }
    case 'exists':
      return (o) => value(o) !== null;
    case 'prefix': {
      const p = String(f.value);
      return (o) => { const t = textOf(fl.get(o)); return t !== null && t.startsWith(p); };
    }
    case 'in': {
      const vals = Array.isArray(f.value) ? f.value.map((v) => withAffinity(paramOf(v), fl.affinity)) : [];
      return (o) => { const v = value(o); return vals.some((p) => sqlEquals(v, p)); };
    }
    case 'overlaps': {
      // json_each's values carry no affinity, and a column is never an array.
      const vals = Array.isArray(f.value) ? f.value.map((v) => paramOf(v)) : [];
      return (o) => {
        const arr = fl.get(o);
        return fl.affinity === undefined && Array.isArray(arr) && arr.some((el) => { const v = sqlOf(el); return vals.some((p) => sqlEquals(v, p)); });
      };
    }
    default:
      // SqliteStore adds no condition for an operator it does not know.
      return () => true;
  }
}

/** The sort key of a list: `id` itself, or IFNULL(field, ''). */
export function sortKey(key: string): (o: StoredObject) => SqlValue {
  if (key === 'id') return (o) => o.id;
  const fl = field(key);
  return (o) => { const v = sqlOf(fl.get(o)); return v === null ? '' : v; };
}

/** What SQL's SUM adds for a value (NULL is skipped): text counts as its numeric prefix, else 0. */
export function summand(v: unknown): number | null {
  const s = sqlOf(v);
  if (s === null) return null;
  if (typeof s === 'number') return s;
  const m = NUMERIC_PREFIX.exec(s);
  return m ? Number(m[0]) : 0;
}

/**
 * SQL's SUM: SQLite adds integers exactly and, once a REAL is seen, with Kahan–Babuška–Neumaier
 * compensation (so 1e-7 + -1 + 1 is 1e-7, not 9.99999999947e-8); 0 when there is nothing to add
 * (the store's IFNULL(SUM(…), 0)). Integers beyond 2^53 and SQLite's integer-overflow error are
 * not reproduced.
 */
export class SqlSum {
  private sum = 0;
  private err = 0;

  add(v: unknown): void {
    const r = summand(v);
    if (r === null) return;
    const s = this.sum;
    const t = s + r;
    if (Math.abs(s) > Math.abs(r)) this.err += (s - t) + r;
    else this.err += (r - t) + s;
    this.sum = t;
  }

  value(): number {
    return this.sum + this.err;
  }
}

/** The key countBy reports for a value: String() of what SQLite returns (`'null'` for a missing value). */
export function groupKey(v: unknown): string {
  return String(sqlOf(v));
}
