import Database from 'better-sqlite3';
import { VERSION } from '../version.js';
import { YunError } from '../errors/errors.js';
import { newId } from '../util/ids.js';
import { systemClock, type Clock } from '../util/clock.js';
import { migrations } from './migrations.js';
import { claimTaken, guardConflict } from './claims.js';
import { Feed } from './feed.js';
import type { AuditEntry, Change, Filter, ListQuery, ListResult, Op, Store, StoredObject, TokenRecord } from './store.js';

const COLUMNS = new Set(['id', 'name', 'project_id', 'version', 'created_at', 'updated_at', 'revision', 'kind']);
/** How many changes the feed keeps; older revisions answer YUN_WATCH_EXPIRED. */
const CHANGE_RETENTION = 50_000;

interface Row {
  id: string;
  kind: string;
  project_id: string;
  name: string;
  version: number;
  created_at: string;
  updated_at: string;
  revision: number;
  data: string;
}

function rowToObject(r: Row): StoredObject {
  return {
    kind: r.kind,
    id: r.id,
    name: r.name,
    project_id: r.project_id,
    version: r.version,
    created_at: r.created_at,
    updated_at: r.updated_at,
    revision: r.revision,
    data: JSON.parse(r.data) as Record<string, unknown>,
  };
}

/** SQL expression for a column or a JSON path into `data` (`labels.zone` → $.labels."zone"). */
export function fieldExpr(field: string): string {
  if (COLUMNS.has(field)) return field;
  if (!/^[A-Za-z0-9_.\-/]+$/.test(field) || field.length > 200) {
    throw new YunError('YUN_BAD_FILTER', `"${field}" is not a valid field name`);
  }
  return `json_extract(data, ${jsonPath(field)})`;
}

/** The JSON path literal of a data field (`labels.zone` → '$."labels"."zone"'), already validated. */
function jsonPath(field: string): string {
  return `'$.${field.split('.').map((p) => `"${p}"`).join('.')}'`;
}

function sqlValue(v: unknown): string | number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}

export class SqliteStore implements Store {
  readonly backend = 'sqlite';
  private db: Database.Database;
  private readonly feed = new Feed();
  private clock: Clock;
  private writesSinceCompact = 0;
  /** Prepared statements by SQL text: preparing once saves CPU and native memory. */
  private statements = new Map<string, Database.Statement>();

  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      if (this.statements.size > 500) this.statements.clear();
      this.statements.set(sql, st);
    }
    return st;
  }

  constructor(path: string, opts: { clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
    this.db = new Database(path);
    // A database a newer Yunstack wrote may hold what this one cannot read: refuse it untouched.
    const found = this.db.pragma('user_version', { simple: true }) as number;
    const known = migrations[migrations.length - 1]!.version;
    if (found > known) {
      this.db.close();
      throw new YunError('YUN_DATA_TOO_NEW', `The database ${path} was written by a newer Yunstack (schema ${found}; this one, ${VERSION}, knows schema ${known} at most)`, {
        hint: 'Run the version that wrote it, or a newer one; a data directory cannot be taken back to an older version (restore a backup this version made instead). The database was not changed.',
        extra: { schema: found, known },
      });
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (const m of migrations) {
      if (m.version <= current) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.pragma(`user_version = ${m.version}`);
      })();
    }
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private revisionSync(): number {
    return Number((this.stmt(`SELECT value FROM meta WHERE key = 'revision'`).get() as { value: string }).value);
  }

  async revision(): Promise<number> {
    return this.revisionSync();
  }

  async get(kind: string, id: string): Promise<StoredObject | undefined> {
    const r = this.stmt(`SELECT * FROM objects WHERE id = ? AND kind = ?`).get(id, kind) as Row | undefined;
    return r ? rowToObject(r) : undefined;
  }

  async getByName(kind: string, projectId: string, name: string): Promise<StoredObject | undefined> {
    const r = this.stmt(`SELECT * FROM objects WHERE kind = ? AND project_id = ? AND name = ?`).get(kind, projectId, name) as Row | undefined;
    return r ? rowToObject(r) : undefined;
  }

  private whereFor(kind: string, q: { projects?: string[]; filters?: Filter[] }): { sql: string; params: unknown[] } {
    const where = ['kind = ?'];
    const params: unknown[] = [kind];
    if (q.projects) {
      if (q.projects.length === 0) where.push('0');
      else {
        where.push(`project_id IN (${q.projects.map(() => '?').join(',')})`);
        params.push(...q.projects);
      }
    }
    for (const f of q.filters ?? []) {
      const e = fieldExpr(f.field);
      switch (f.op) {
        case 'eq':
          if (f.value === null) where.push(`${e} IS NULL`);
          else { where.push(`${e} = ?`); params.push(sqlValue(f.value)); }
          break;
        case 'ne':
          // "Not equal to null" is "not null" (as eq null is IS NULL); `!= NULL` would match nothing.
          if (f.value === null) where.push(`${e} IS NOT NULL`);
          else { where.push(`(${e} IS NULL OR ${e} != ?)`); params.push(sqlValue(f.value)); }
          break;
        case 'exists':
          where.push(`${e} IS NOT NULL`);
          break;
        case 'prefix': {
          // substr counts characters (code points), not UTF-16 units as String.length does.
          const p = String(f.value);
          where.push(`substr(${e}, 1, ?) = ?`);
          params.push([...p].length, p);
          break;
        }
        case 'in': {
          const vals = Array.isArray(f.value) ? f.value : [];
          if (vals.length === 0) where.push('0');
          else { where.push(`${e} IN (${vals.map(() => '?').join(',')})`); params.push(...vals.map(sqlValue)); }
          break;
        }
        case 'overlaps': {
          const vals = Array.isArray(f.value) ? f.value : [];
          if (vals.length === 0 || COLUMNS.has(f.field)) where.push('0');
          else {
            const path = jsonPath(f.field);
            where.push(`(json_type(objects.data, ${path}) = 'array' AND EXISTS (SELECT 1 FROM json_each(objects.data, ${path}) AS el WHERE el.value IN (${vals.map(() => '?').join(',')})))`);
            params.push(...vals.map(sqlValue));
          }
          break;
        }
      }
    }
    return { sql: where.join(' AND '), params };
  }

  async list(kind: string, q: ListQuery): Promise<ListResult<Record<string, unknown>>> {
    const sortKey = q.sort?.key ?? 'id';
    const dir = q.sort?.dir ?? 'asc';
    const sortExpr = sortKey === 'id' ? 'id' : `IFNULL(${fieldExpr(sortKey)}, '')`;
    const { sql: whereSql, params } = this.whereFor(kind, q);
    const cmp = dir === 'asc' ? '>' : '<';
    let pageWhere = whereSql;
    const pageParams = [...params];
    if (q.marker !== undefined) {
      const m = this.stmt(`SELECT ${sortExpr} AS k, id FROM objects WHERE id = ? AND ${whereSql}`).get(q.marker, ...params) as { k: unknown; id: string } | undefined;
      if (!m) {
        throw new YunError('YUN_BAD_MARKER', `The marker "${q.marker}" is not an object of this list (it may have been deleted, or belong to another project or filter)`);
      }
      if (sortKey === 'id') {
        pageWhere += ` AND id ${cmp} ?`;
        pageParams.push(m.id);
      } else {
        pageWhere += ` AND (${sortExpr} ${cmp} ? OR (${sortExpr} = ? AND id ${cmp} ?))`;
        pageParams.push(m.k, m.k, m.id);
      }
    }
    const order = sortKey === 'id' ? `id ${dir}` : `${sortExpr} ${dir}, id ${dir}`;
    const read = this.db.transaction(() => {
      const rows = this.stmt(`SELECT * FROM objects WHERE ${pageWhere} ORDER BY ${order} LIMIT ?`).all(...pageParams, q.limit + 1) as Row[];
      const count = q.withCount ? (this.stmt(`SELECT count(*) AS n FROM objects WHERE ${whereSql}`).get(...params) as { n: number }).n : undefined;
      return { rows, count, revision: this.revisionSync() };
    });
    const { rows, count, revision } = read();
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit).map(rowToObject);
    return { items, nextMarker: more && items.length ? items[items.length - 1]!.id : undefined, count, revision };
  }

  async usage(kind: string, projectId: string, sums: string[] = []): Promise<{ count: number; sums: Record<string, number> }> {
    const cols = sums.map((s, i) => `IFNULL(SUM(${fieldExpr(s)}), 0) AS s${i}`);
    const r = this.stmt(`SELECT count(*) AS n${cols.length ? ', ' + cols.join(', ') : ''} FROM objects WHERE kind = ? AND project_id = ?`).get(kind, projectId) as Record<string, number>;
    const out: Record<string, number> = {};
    sums.forEach((s, i) => { out[s] = Number(r[`s${i}`] ?? 0); });
    return { count: r.n!, sums: out };
  }

  async countBy(kind: string, groupField: string, filters: Filter[], projects?: string[]): Promise<Map<string, number>> {
    const { sql, params } = this.whereFor(kind, { projects, filters });
    const e = fieldExpr(groupField);
    const rows = this.stmt(`SELECT ${e} AS k, count(*) AS n FROM objects WHERE ${sql} GROUP BY k`).all(...params) as { k: string; n: number }[];
    // Distinct SQL values can share a key (1 and '1', NULL and 'null'): add them up.
    const out = new Map<string, number>();
    for (const r of rows) out.set(String(r.k), (out.get(String(r.k)) ?? 0) + r.n);
    return out;
  }

  private applyOps = (ops: Op[]): { objects: StoredObject[]; changes: Change[] } => {
    // One revision for the whole batch (as an etcd transaction has): every object it writes carries it.
    const rev = this.revisionSync() + 1;
    let wrote = false;
    const now = this.clock.iso();
    const objects: StoredObject[] = [];
    const changes: Change[] = [];
    for (const op of ops) {
      if (op.op === 'claim' || op.op === 'release' || op.op === 'guard') {
        this.applyClaim(op);
        continue;
      }
      wrote = true;
      if (op.op === 'create') {
        // The object handed back (and to watchers) is what get will read: the data as JSON keeps it,
        // and not the caller's object.
        const text = JSON.stringify(op.data);
        const obj: StoredObject = {
          kind: op.kind, id: op.id ?? newId(), name: op.name, project_id: op.project_id,
          version: 1, created_at: now, updated_at: now, revision: rev, data: JSON.parse(text) as Record<string, unknown>,
        };
        try {
          this.stmt(`INSERT INTO objects (id, kind, project_id, name, version, created_at, updated_at, revision, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(obj.id, obj.kind, obj.project_id, obj.name, obj.version, obj.created_at, obj.updated_at, obj.revision, text);
        } catch (e) {
          if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' || (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
            throw new YunError('YUN_NAME_CONFLICT', `A ${op.kind} named "${op.name}" already exists${op.project_id ? ' in this project' : ''}`, { extra: { kind: op.kind, name: op.name } });
          }
          throw e;
        }
        objects.push(obj);
        changes.push({ revision: rev, type: 'create', kind: obj.kind, id: obj.id, project_id: obj.project_id, object: obj, at: now });
      } else {
        const r = this.stmt(`SELECT * FROM objects WHERE id = ? AND kind = ?`).get(op.id, op.kind) as Row | undefined;
        if (!r) throw new YunError('YUN_NOT_FOUND', `No ${op.kind} "${op.id}" exists`, { extra: { kind: op.kind } });
        if (op.version !== undefined && op.version !== r.version) {
          throw new YunError('YUN_VERSION_CONFLICT', `The ${op.kind} "${r.name}" is at version ${r.version}, but the request was based on version ${op.version}`, { extra: { kind: op.kind, current_version: r.version } });
        }
        const before = rowToObject(r);
        if (op.op === 'update') {
          const text = JSON.stringify(op.data);
          const obj: StoredObject = { ...before, name: op.name ?? before.name, version: before.version + 1, updated_at: now, revision: rev, data: JSON.parse(text) as Record<string, unknown> };
          try {
            this.stmt(`UPDATE objects SET name = ?, version = ?, updated_at = ?, revision = ?, data = ? WHERE id = ?`)
              .run(obj.name, obj.version, obj.updated_at, obj.revision, text, obj.id);
          } catch (e) {
            if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
              throw new YunError('YUN_NAME_CONFLICT', `A ${op.kind} named "${obj.name}" already exists`, { extra: { kind: op.kind, name: obj.name } });
            }
            throw e;
          }
          objects.push(obj);
          changes.push({ revision: rev, type: 'update', kind: obj.kind, id: obj.id, project_id: obj.project_id, object: obj, at: now });
        } else {
          this.stmt(`DELETE FROM objects WHERE id = ?`).run(op.id);
          this.stmt(`DELETE FROM claims WHERE owner = ?`).run(op.id);
          const obj = { ...before, revision: rev };
          objects.push(obj);
          changes.push({ revision: rev, type: 'delete', kind: obj.kind, id: obj.id, project_id: obj.project_id, object: obj, at: now });
        }
      }
    }
    const ins = this.stmt(`INSERT INTO changes (revision, type, kind, id, project_id, object, at) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    for (const c of changes) ins.run(c.revision, c.type, c.kind, c.id, c.project_id, JSON.stringify(c.object), c.at);
    if (wrote) this.stmt(`UPDATE meta SET value = ? WHERE key = 'revision'`).run(String(rev));
    return { objects, changes };
  };

  private applyClaim(op: Extract<Op, { op: 'claim' | 'release' | 'guard' }>): void {
    if (op.op === 'guard') {
      const cur = (this.stmt(`SELECT version FROM guards WHERE key = ?`).get(op.key) as { version: number } | undefined)?.version ?? 0;
      if (cur !== op.version) throw guardConflict(op.key, cur, op.version);
      this.stmt(`INSERT INTO guards (key, version) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET version = excluded.version`).run(op.key, cur + 1);
      return;
    }
    const holder = (this.stmt(`SELECT owner FROM claims WHERE key = ?`).get(op.key) as { owner: string } | undefined)?.owner;
    if (holder !== undefined && holder !== op.owner) throw claimTaken(op.key, holder);
    if (op.op === 'claim' && holder === undefined) this.stmt(`INSERT INTO claims (key, owner) VALUES (?, ?)`).run(op.key, op.owner);
    if (op.op === 'release' && holder !== undefined) this.stmt(`DELETE FROM claims WHERE key = ?`).run(op.key);
  }

  async claims(prefix: string): Promise<Map<string, string>> {
    const rows = this.stmt(`SELECT key, owner FROM claims WHERE substr(key, 1, ?) = ? ORDER BY key`).all([...prefix].length, prefix) as { key: string; owner: string }[];
    return new Map(rows.map((r) => [r.key, r.owner]));
  }

  async guard(key: string): Promise<number> {
    return (this.stmt(`SELECT version FROM guards WHERE key = ?`).get(key) as { version: number } | undefined)?.version ?? 0;
  }

  async batch(ops: Op[]): Promise<StoredObject[]> {
    if (ops.length === 0) return [];
    const { objects, changes } = this.db.transaction(this.applyOps)(ops);
    this.writesSinceCompact += changes.length;
    if (this.writesSinceCompact > 5000) this.compact();
    this.feed.notify(changes);
    return objects;
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

  /** Drop change-feed entries beyond the retention window. */
  compact(): void {
    this.writesSinceCompact = 0;
    // Keep the newest CHANGE_RETENTION changes, and the rest of the oldest batch among them.
    const nth = this.stmt(`SELECT revision FROM changes ORDER BY seq DESC LIMIT 1 OFFSET ?`).get(CHANGE_RETENTION - 1) as { revision: number } | undefined;
    if (!nth) return;
    const keepFrom = nth.revision - 1;
    if (keepFrom <= 0) return;
    this.db.transaction(() => {
      this.stmt(`DELETE FROM changes WHERE revision <= ?`).run(keepFrom);
      this.stmt(`UPDATE meta SET value = ? WHERE key = 'compacted'`).run(String(keepFrom));
    })();
  }

  async changesSince(revision: number, limit = 1000): Promise<Change[]> {
    const compacted = Number((this.stmt(`SELECT value FROM meta WHERE key = 'compacted'`).get() as { value: string }).value);
    if (revision < compacted) {
      throw new YunError('YUN_WATCH_EXPIRED', `Revision ${revision} has been compacted away; the oldest revision kept is ${compacted + 1}`);
    }
    type ChangeRow = Omit<Change, 'object'> & { object: string; seq: number };
    const rows = this.stmt(`SELECT * FROM changes WHERE revision > ? ORDER BY seq LIMIT ?`).all(revision, limit) as ChangeRow[];
    // A batch is never cut in two: the rest of the last revision comes too.
    const last = rows[rows.length - 1];
    if (last && limit >= 0 && rows.length === limit) {
      rows.push(...(this.stmt(`SELECT * FROM changes WHERE revision = ? AND seq > ? ORDER BY seq`).all(last.revision, last.seq) as ChangeRow[]));
    }
    return rows.map(({ seq: _seq, ...r }) => ({ ...r, object: JSON.parse(r.object) as StoredObject }));
  }

  async watch(revision: number, fn: (changes: Change[]) => void): Promise<() => void> {
    return this.feed.watch(revision, fn, (rev, limit) => this.changesSince(rev, limit));
  }

  async putSecret(key: string, value: string): Promise<void> {
    this.stmt(`INSERT INTO secrets (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(key, value);
  }

  async getSecret(key: string): Promise<string | undefined> {
    return (this.stmt(`SELECT value FROM secrets WHERE key = ?`).get(key) as { value: string } | undefined)?.value;
  }

  async deleteSecret(key: string): Promise<void> {
    this.stmt(`DELETE FROM secrets WHERE key = ?`).run(key);
  }

  async putToken(t: TokenRecord): Promise<void> {
    this.stmt(`INSERT INTO tokens (hash, token_id, user_id, project_id, roles, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(t.hash, t.token_id, t.user_id, t.project_id, JSON.stringify(t.roles), t.issued_at, t.expires_at);
  }

  async getToken(hash: string): Promise<TokenRecord | undefined> {
    const r = this.stmt(`SELECT * FROM tokens WHERE hash = ?`).get(hash) as (Omit<TokenRecord, 'roles'> & { roles: string }) | undefined;
    return r ? { ...r, roles: JSON.parse(r.roles) as string[] } : undefined;
  }

  async deleteTokens(where: { hash?: string; token_id?: string; user_id?: string; project_id?: string }): Promise<number> {
    const keys = Object.entries(where).filter(([, v]) => v !== undefined);
    if (keys.length === 0) return 0;
    const sql = `DELETE FROM tokens WHERE ${keys.map(([k]) => `${k} = ?`).join(' AND ')}`;
    return this.stmt(sql).run(...keys.map(([, v]) => v)).changes;
  }

  async listTokens(userId: string): Promise<TokenRecord[]> {
    const rows = this.stmt(`SELECT * FROM tokens WHERE user_id = ? ORDER BY issued_at`).all(userId) as (Omit<TokenRecord, 'roles'> & { roles: string })[];
    return rows.map((r) => ({ ...r, roles: JSON.parse(r.roles) as string[] }));
  }

  async pruneTokens(nowIso: string): Promise<number> {
    return this.stmt(`DELETE FROM tokens WHERE expires_at <= ?`).run(nowIso).changes;
  }

  async appendAudit(e: Omit<AuditEntry, 'id'>): Promise<void> {
    this.stmt(`INSERT INTO audit (at, request_id, user_id, user_name, project_id, method, path, action, target_id, status, result, error_code, remote_addr)
      VALUES (@at, @request_id, @user_id, @user_name, @project_id, @method, @path, @action, @target_id, @status, @result, @error_code, @remote_addr)`).run(e);
  }

  async listAudit(q: { limit: number; marker?: number; projectId?: string; userId?: string; since?: string; result?: string; withCount?: boolean }): Promise<{ items: AuditEntry[]; nextMarker?: number; count?: number }> {
    const where: string[] = ['1'];
    const params: unknown[] = [];
    if (q.projectId) { where.push('project_id = ?'); params.push(q.projectId); }
    if (q.userId) { where.push('user_id = ?'); params.push(q.userId); }
    if (q.since) { where.push('at >= ?'); params.push(q.since); }
    if (q.result) { where.push('result = ?'); params.push(q.result); }
    const base = where.join(' AND ');
    const page = q.marker !== undefined ? `${base} AND id < ?` : base;
    const rows = this.stmt(`SELECT * FROM audit WHERE ${page} ORDER BY id DESC LIMIT ?`).all(...params, ...(q.marker !== undefined ? [q.marker] : []), q.limit + 1) as AuditEntry[];
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit);
    const count = q.withCount ? (this.stmt(`SELECT count(*) AS n FROM audit WHERE ${base}`).get(...params) as { n: number }).n : undefined;
    return { items, nextMarker: more && items.length ? items[items.length - 1]!.id : undefined, count };
  }

  async close(): Promise<void> {
    this.feed.clear();
    this.db.close();
  }
}
