/**
 * A Store that keeps everything in memory (backend 'memory'): for tests, and the second
 * implementation that keeps the store conformance suite honest. It follows SqliteStore to the
 * letter — error codes and messages, the change feed's retention and YUN_WATCH_EXPIRED, filter and
 * sort semantics (query.ts emulates SQLite's json_extract, type order and affinities) — and keeps
 * nothing across a restart.
 *
 * Objects are kept as JSON text (what a caller gets back is always a fresh copy) beside a parsed
 * copy that only filters and sort keys read. A list filters the kind's objects, sorts the matches
 * and cuts a page: O(n log n) per page for n objects of the kind.
 */
import { YunError } from '../errors/errors.js';
import { newId } from '../util/ids.js';
import { systemClock, type Clock } from '../util/clock.js';
import { compareSql, compareText, filterPredicate, field, groupKey, sortKey, SqlSum, sqlOf, type SqlValue } from './query.js';
import { claimTaken, guardConflict } from './claims.js';
import { Feed } from './feed.js';
import type { AuditEntry, Change, Filter, ListQuery, ListResult, Op, Store, StoredObject, TokenRecord } from './store.js';

/** As SqliteStore: how many changes the feed keeps, and how many writes between compactions. */
const CHANGE_RETENTION = 50_000;
const COMPACT_EVERY = 5000;

const AUDIT_FIELDS = ['at', 'request_id', 'user_id', 'user_name', 'project_id', 'method', 'path', 'action', 'target_id', 'status', 'result', 'error_code', 'remote_addr'] as const;
const TOKEN_WHERE = new Set(['hash', 'token_id', 'user_id', 'project_id']);

interface Row {
  /** Never handed out: filters and sort keys read it. */
  obj: StoredObject;
  /** JSON of obj, parsed for every copy a caller gets. */
  text: string;
}

const nameKey = (kind: string, projectId: string, name: string) => JSON.stringify([kind, projectId, name]);

export class MemoryStore implements Store {
  readonly backend = 'memory';
  private clock: Clock;
  private rev = 0;
  /** The feed holds revisions after this one. */
  private compacted = 0;
  /** Objects by id: ids are unique across kinds, as SQLite's primary key makes them. */
  private rows = new Map<string, Row>();
  private byKind = new Map<string, Map<string, Row>>();
  /** (kind, project, name) → id. */
  private names = new Map<string, string>();
  /** The change feed, oldest first, with consecutive revisions. */
  private changes: { revision: number; text: string }[] = [];
  private writesSinceCompact = 0;
  private readonly feed = new Feed();
  private secrets = new Map<string, string>();
  /** Claims: key → owner; guards: key → version. */
  private claimed = new Map<string, string>();
  private guards = new Map<string, number>();
  private tokens = new Map<string, TokenRecord>();
  private audit: AuditEntry[] = [];
  private closed = false;

  constructor(opts: { clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
  }

  private open(): void {
    if (this.closed) throw new Error('The memory store is closed');
  }

  private copy(r: Row): StoredObject {
    return JSON.parse(r.text) as StoredObject;
  }

  async revision(): Promise<number> {
    this.open();
    return this.rev;
  }

  async get(kind: string, id: string): Promise<StoredObject | undefined> {
    this.open();
    const r = this.rows.get(id);
    return r && r.obj.kind === kind ? this.copy(r) : undefined;
  }

  async getByName(kind: string, projectId: string, name: string): Promise<StoredObject | undefined> {
    this.open();
    const id = this.names.get(nameKey(kind, projectId, name));
    const r = id === undefined ? undefined : this.rows.get(id);
    return r ? this.copy(r) : undefined;
  }

  /** The rows of a kind that pass the projects and filters (validated before anything is read). */
  private matcher(q: { projects?: string[]; filters?: Filter[] }): (o: StoredObject) => boolean {
    const preds = (q.filters ?? []).map(filterPredicate);
    const projects = q.projects ? new Set(q.projects) : undefined;
    return (o) => (!projects || projects.has(o.project_id)) && preds.every((p) => p(o));
  }

  private kindRows(kind: string): Iterable<Row> {
    return this.byKind.get(kind)?.values() ?? [];
  }

  async list(kind: string, q: ListQuery): Promise<ListResult<Record<string, unknown>>> {
    this.open();
    const keyOf = sortKey(q.sort?.key ?? 'id');
    const sign = (q.sort?.dir ?? 'asc') === 'asc' ? 1 : -1;
    const match = this.matcher(q);
    type Item = { r: Row; k: SqlValue };
    const cmp = (a: Item, b: Item) => sign * (compareSql(a.k, b.k) || compareText(a.r.obj.id, b.r.obj.id));
    const all: Item[] = [];
    for (const r of this.kindRows(kind)) if (match(r.obj)) all.push({ r, k: keyOf(r.obj) });
    let items = all;
    if (q.marker !== undefined) {
      const m = this.rows.get(q.marker);
      if (!m || m.obj.kind !== kind || !match(m.obj)) {
        throw new YunError('YUN_BAD_MARKER', `The marker "${q.marker}" is not an object of this list (it may have been deleted, or belong to another project or filter)`);
      }
      const mi: Item = { r: m, k: keyOf(m.obj) };
      items = all.filter((x) => cmp(x, mi) > 0);
    }
    items.sort(cmp);
    // SqliteStore reads LIMIT limit + 1 rows (a negative LIMIT is no limit in SQLite).
    const rows = q.limit + 1 < 0 ? items : items.slice(0, q.limit + 1);
    const more = rows.length > q.limit;
    const page = rows.slice(0, q.limit).map((x) => this.copy(x.r));
    return { items: page, nextMarker: more && page.length ? page[page.length - 1]!.id : undefined, count: q.withCount ? all.length : undefined, revision: this.rev };
  }

  async usage(kind: string, projectId: string, sums: string[] = []): Promise<{ count: number; sums: Record<string, number> }> {
    this.open();
    const fields = sums.map(field);
    const totals = sums.map(() => new SqlSum());
    let count = 0;
    for (const r of this.kindRows(kind)) {
      if (r.obj.project_id !== projectId) continue;
      count += 1;
      fields.forEach((f, i) => totals[i]!.add(f.get(r.obj)));
    }
    const out: Record<string, number> = {};
    sums.forEach((s, i) => { out[s] = totals[i]!.value(); });
    return { count, sums: out };
  }

  async countBy(kind: string, groupField: string, filters: Filter[], projects?: string[]): Promise<Map<string, number>> {
    this.open();
    const match = this.matcher({ projects, filters });
    const g = field(groupField);
    const groups = new Map<string, { v: SqlValue; n: number }>();
    for (const r of this.kindRows(kind)) {
      if (!match(r.obj)) continue;
      const raw = g.get(r.obj);
      const k = groupKey(raw);
      const e = groups.get(k);
      if (e) e.n += 1;
      else groups.set(k, { v: sqlOf(raw), n: 1 });
    }
    // In the order SQLite's GROUP BY yields them: by value.
    return new Map([...groups].sort((a, b) => compareSql(a[1].v, b[1].v)).map(([k, e]) => [k, e.n]));
  }

  private put(r: Row): void {
    this.rows.set(r.obj.id, r);
    let m = this.byKind.get(r.obj.kind);
    if (!m) { m = new Map(); this.byKind.set(r.obj.kind, m); }
    m.set(r.obj.id, r);
    this.names.set(nameKey(r.obj.kind, r.obj.project_id, r.obj.name), r.obj.id);
  }

  private remove(r: Row): void {
    this.rows.delete(r.obj.id);
    this.byKind.get(r.obj.kind)?.delete(r.obj.id);
    this.names.delete(nameKey(r.obj.kind, r.obj.project_id, r.obj.name));
  }

  private row(obj: StoredObject): Row {
    const text = JSON.stringify(obj);
    return { obj: JSON.parse(text) as StoredObject, text };
  }

  async batch(ops: Op[]): Promise<StoredObject[]> {
    this.open();
    if (ops.length === 0) return [];
    // One revision for the whole batch (as SqliteStore and an etcd transaction): every object it writes carries it.
    const rev = this.rev + 1;
    let wrote = false;
    const now = this.clock.iso();
    const undo: (() => void)[] = [];
    const written: Row[] = [];
    const types: Change['type'][] = [];
    try {
      for (const op of ops) {
        if (op.op === 'guard') {
          const cur = this.guards.get(op.key) ?? 0;
          if (cur !== op.version) throw guardConflict(op.key, cur, op.version);
          this.guards.set(op.key, cur + 1);
          undo.push(() => { if (cur === 0) this.guards.delete(op.key); else this.guards.set(op.key, cur); });
          continue;
        }
        if (op.op === 'claim' || op.op === 'release') {
          const holder = this.claimed.get(op.key);
          if (holder !== undefined && holder !== op.owner) throw claimTaken(op.key, holder);
          if (op.op === 'claim' && holder === undefined) { this.claimed.set(op.key, op.owner); undo.push(() => this.claimed.delete(op.key)); }
          if (op.op === 'release' && holder !== undefined) { this.claimed.delete(op.key); undo.push(() => this.claimed.set(op.key, holder)); }
          continue;
        }
        wrote = true;
        if (op.op === 'create') {
          const r = this.row({
            kind: op.kind, id: op.id ?? newId(), name: op.name, project_id: op.project_id,
            version: 1, created_at: now, updated_at: now, revision: rev, data: op.data,
          });
          if (this.rows.has(r.obj.id) || this.names.has(nameKey(op.kind, op.project_id, op.name))) {
            throw new YunError('YUN_NAME_CONFLICT', `A ${op.kind} named "${op.name}" already exists${op.project_id ? ' in this project' : ''}`, { extra: { kind: op.kind, name: op.name } });
          }
          this.put(r);
          undo.push(() => this.remove(r));
          written.push(r);
          types.push('create');
          continue;
        }
        const cur = this.rows.get(op.id);
        if (!cur || cur.obj.kind !== op.kind) throw new YunError('YUN_NOT_FOUND', `No ${op.kind} "${op.id}" exists`, { extra: { kind: op.kind } });
        const before = cur.obj;
        if (op.version !== undefined && op.version !== before.version) {
          throw new YunError('YUN_VERSION_CONFLICT', `The ${op.kind} "${before.name}" is at version ${before.version}, but the request was based on version ${op.version}`, { extra: { kind: op.kind, current_version: before.version } });
        }
        if (op.op === 'update') {
          const name = op.name ?? before.name;
          const holder = this.names.get(nameKey(before.kind, before.project_id, name));
          if (holder !== undefined && holder !== before.id) {
            throw new YunError('YUN_NAME_CONFLICT', `A ${op.kind} named "${name}" already exists`, { extra: { kind: op.kind, name } });
          }
          const r = this.row({ ...before, name, version: before.version + 1, updated_at: now, revision: rev, data: op.data });
          this.remove(cur);
          this.put(r);
          undo.push(() => { this.remove(r); this.put(cur); });
          written.push(r);
          types.push('update');
        } else {
          this.remove(cur);
          undo.push(() => this.put(cur));
          // What the object owned is free with it.
          for (const [k, owner] of [...this.claimed]) {
            if (owner !== before.id) continue;
            this.claimed.delete(k);
            undo.push(() => this.claimed.set(k, owner));
          }
          written.push(this.row({ ...before, revision: rev }));
          types.push('delete');
        }
      }
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
    if (wrote) this.rev = rev;
    const changes: Change[] = written.map((r, i) => ({ revision: r.obj.revision, type: types[i]!, kind: r.obj.kind, id: r.obj.id, project_id: r.obj.project_id, object: this.copy(r), at: now }));
    for (const c of changes) this.changes.push({ revision: c.revision, text: JSON.stringify(c) });
    this.writesSinceCompact += changes.length;
    if (this.writesSinceCompact > COMPACT_EVERY) this.compact();
    this.feed.notify(changes);
    return written.map((r) => this.copy(r));
  }

  async claims(prefix: string): Promise<Map<string, string>> {
    this.open();
    return new Map([...this.claimed].filter(([k]) => k.startsWith(prefix)).sort((a, b) => compareText(a[0], b[0])));
  }

  async guard(key: string): Promise<number> {
    this.open();
    return this.guards.get(key) ?? 0;
  }

  async create(op: Omit<Extract<Op, { op: 'create' }>, 'op'>): Promise<StoredObject> {
    return (await this.batch([{ op: 'create', ...op }]))[0]!;
  }

  async update(op: Omit<Extract<Op, { op: 'update' }>, 'op'>): Promise<StoredObject> {
    return (await this.batch([{ op: 'update', ...op }]))[0]!;
  }

  async delete(op: Omit<Extract<Op, { op: 'delete' }>, 'op'>): Promise<StoredObject> {
    return (await this.batch([{ op: 'delete', ...op }]))[0]!;
  }

  /** Drop change-feed entries beyond the retention window (as SqliteStore.compact). */
  compact(): void {
    this.writesSinceCompact = 0;
    // Keep the newest CHANGE_RETENTION changes, and the rest of the oldest batch among them.
    const nth = this.changes.length - CHANGE_RETENTION;
    if (nth <= 0) return;
    const keepFrom = this.changes[nth]!.revision - 1;
    if (keepFrom <= this.compacted) return;
    this.changes.splice(0, this.firstAfter(keepFrom));
    this.compacted = keepFrom;
  }

  /** Index of the first change with a revision above `revision`. */
  private firstAfter(revision: number): number {
    let lo = 0;
    let hi = this.changes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.changes[mid]!.revision <= revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async changesSince(revision: number, limit = 1000): Promise<Change[]> {
    this.open();
    if (revision < this.compacted) {
      throw new YunError('YUN_WATCH_EXPIRED', `Revision ${revision} has been compacted away; the oldest revision kept is ${this.compacted + 1}`);
    }
    const from = this.firstAfter(revision);
    let to = limit < 0 ? this.changes.length : Math.min(from + limit, this.changes.length);
    // A batch is never cut in two: the rest of the last revision comes too.
    while (to > from && to < this.changes.length && this.changes[to]!.revision === this.changes[to - 1]!.revision) to += 1;
    return this.changes.slice(from, to).map((c) => JSON.parse(c.text) as Change);
  }

  async watch(revision: number, fn: (changes: Change[]) => void): Promise<() => void> {
    this.open();
    return this.feed.watch(revision, fn, (rev, limit) => this.changesSince(rev, limit));
  }

  async putSecret(key: string, value: string): Promise<void> {
    this.open();
    this.secrets.set(key, value);
  }

  async getSecret(key: string): Promise<string | undefined> {
    this.open();
    return this.secrets.get(key);
  }

  async deleteSecret(key: string): Promise<void> {
    this.open();
    this.secrets.delete(key);
  }

  private static token(t: TokenRecord): TokenRecord {
    return {
      hash: t.hash, token_id: t.token_id, user_id: t.user_id, project_id: t.project_id,
      roles: JSON.parse(JSON.stringify(t.roles)) as string[], issued_at: t.issued_at, expires_at: t.expires_at,
    };
  }

  async putToken(t: TokenRecord): Promise<void> {
    this.open();
    // SQLite's primary key refuses a second token with the same hash.
    if (this.tokens.has(t.hash)) throw new Error(`A token with hash ${t.hash.slice(0, 12)}… is already stored`);
    this.tokens.set(t.hash, MemoryStore.token(t));
  }

  async getToken(hash: string): Promise<TokenRecord | undefined> {
    this.open();
    const t = this.tokens.get(hash);
    return t ? MemoryStore.token(t) : undefined;
  }

  async deleteTokens(where: { hash?: string; token_id?: string; user_id?: string; project_id?: string }): Promise<number> {
    this.open();
    const keys = Object.entries(where).filter(([, v]) => v !== undefined) as [keyof TokenRecord, string][];
    if (keys.length === 0) return 0;
    for (const [k] of keys) if (!TOKEN_WHERE.has(k)) throw new Error(`Tokens cannot be selected by "${k}"`);
    let n = 0;
    for (const [hash, t] of this.tokens) {
      if (keys.every(([k, v]) => t[k] === v)) { this.tokens.delete(hash); n += 1; }
    }
    return n;
  }

  async listTokens(userId: string): Promise<TokenRecord[]> {
    this.open();
    return [...this.tokens.values()].filter((t) => t.user_id === userId)
      .sort((a, b) => compareText(a.issued_at, b.issued_at)).map((t) => MemoryStore.token(t));
  }

  async pruneTokens(nowIso: string): Promise<number> {
    this.open();
    let n = 0;
    for (const [hash, t] of this.tokens) {
      if (compareText(t.expires_at, nowIso) <= 0) { this.tokens.delete(hash); n += 1; }
    }
    return n;
  }

  async appendAudit(e: Omit<AuditEntry, 'id'>): Promise<void> {
    this.open();
    const entry: Record<string, unknown> = { id: this.audit.length + 1 };
    for (const k of AUDIT_FIELDS) {
      // As better-sqlite3's named parameters: a missing one is an error, an undefined one NULL.
      if (!(k in e)) throw new RangeError(`Missing named parameter "${k}"`);
      entry[k] = e[k] ?? null;
    }
    this.audit.push(entry as unknown as AuditEntry);
  }

  async listAudit(q: { limit: number; marker?: number; projectId?: string; userId?: string; since?: string; result?: string; withCount?: boolean }): Promise<{ items: AuditEntry[]; nextMarker?: number; count?: number }> {
    this.open();
    const match = (a: AuditEntry) => (!q.projectId || a.project_id === q.projectId) && (!q.userId || a.user_id === q.userId)
      && (!q.since || compareText(a.at, q.since) >= 0) && (!q.result || a.result === q.result);
    const want = q.limit + 1 < 0 ? Infinity : q.limit + 1;
    const rows: AuditEntry[] = [];
    let count = 0;
    // Ids are 1, 2, 3, …: newest first is the array backwards.
    for (let i = this.audit.length - 1; i >= 0; i--) {
      const a = this.audit[i]!;
      if (!match(a)) continue;
      count += 1;
      if (rows.length < want && (q.marker === undefined || a.id < q.marker)) rows.push({ ...a });
      else if (rows.length >= want && !q.withCount) break;
    }
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit);
    return { items, nextMarker: more && items.length ? items[items.length - 1]!.id : undefined, count: q.withCount ? count : undefined };
  }

  async close(): Promise<void> {
    this.feed.clear();
    this.closed = true;
  }
}
