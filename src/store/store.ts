/**
 * The store interface. SQLite (embedded, the default) implements it today; an etcd backend can
 * implement it later, which is why every method is asynchronous and multi-object writes go through
 * `batch` (a list of operations with version preconditions: a SQLite transaction, an etcd Txn).
 */

/** Objects that belong to no project (users, projects, nodes) use this project id. */
export const GLOBAL = '';

export interface StoredObject<T = Record<string, unknown>> {
  kind: string;
  id: string;
  name: string;
  /** The owning project, or GLOBAL ('') for cluster-wide objects. */
  project_id: string;
  version: number;
  created_at: string;
  updated_at: string;
  /** The global revision of the last write to this object. */
  revision: number;
  data: T;
}

export type SortDir = 'asc' | 'desc';

/** A filter on a column (`id`, `name`, `project_id`, …) or on a path into `data` (`labels.zone`). */
export interface Filter {
  field: string;
  /**
   * `overlaps`: the field is an array holding at least one of the values (`value` a list), compared
   * as `eq` compares; a field that is not an array (or a column) never overlaps.
   */
  op: 'eq' | 'ne' | 'exists' | 'in' | 'prefix' | 'overlaps';
  value?: string | number | boolean | null | (string | number)[];
}

export interface ListQuery {
  /** Restrict to these projects; undefined lists every project. */
  projects?: string[];
  limit: number;
  /** Id of the last object of the previous page. */
  marker?: string;
  sort?: { key: string; dir: SortDir };
  filters?: Filter[];
  withCount?: boolean;
}

export interface ListResult<T> {
  items: StoredObject<T>[];
  /** Marker for the next page, when there may be one. */
  nextMarker?: string;
  count?: number;
  revision: number;
}

export type Op =
  | { op: 'create'; kind: string; id?: string; project_id: string; name: string; data: Record<string, unknown> }
  | { op: 'update'; kind: string; id: string; version?: number; name?: string; data: Record<string, unknown> }
  | { op: 'delete'; kind: string; id: string; version?: number }
  /**
   * Claim `key` (a VIP index, a published port…) for `owner` (the id of the object that holds it):
   * fails with YUN_CLAIM_TAKEN when another owner holds it; a no-op when `owner` does. So two
   * managers allocating the same thing at once cannot both succeed: the loser's whole batch fails.
   * Claims are released with `release`, and all claims an object owns go when it is deleted.
   */
  | { op: 'claim'; key: string; owner: string }
  | { op: 'release'; key: string; owner: string }
  /**
   * Compare-and-increment of a counter `key`: fails with YUN_VERSION_CONFLICT (extra `guard`,
   * `current_version`) unless it is at `version` (0 when never bumped), then bumps it. A read-check-
   * write (a quota, a subnet that must overlap no other) holds only when no one bumped the guard
   * in between.
   */
  | { op: 'guard'; key: string; version: number };

export interface Change {
  revision: number;
  type: 'create' | 'update' | 'delete';
  kind: string;
  id: string;
  project_id: string;
  /** The object after the change (before it, for a delete). */
  object: StoredObject;
  at: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  request_id: string;
  user_id: string | null;
  user_name: string | null;
  project_id: string | null;
  method: string;
  path: string;
  action: string;
  target_id: string | null;
  status: number;
  result: 'success' | 'failure';
  error_code: string | null;
  remote_addr: string | null;
}

export interface TokenRecord {
  /** sha256 of the secret token, hex. The token itself is never stored. */
  hash: string;
  user_id: string;
  project_id: string;
  roles: string[];
  issued_at: string;
  expires_at: string;
  /** A short public id (first characters of the hash) used to list and revoke. */
  token_id: string;
}

export interface Store {
  readonly backend: string;
  revision(): Promise<number>;
  get(kind: string, id: string): Promise<StoredObject | undefined>;
  getByName(kind: string, projectId: string, name: string): Promise<StoredObject | undefined>;
  list(kind: string, query: ListQuery): Promise<ListResult<Record<string, unknown>>>;
  /** Count objects of a kind in a project, optionally summing numeric data paths. */
  usage(kind: string, projectId: string, sums?: string[]): Promise<{ count: number; sums: Record<string, number> }>;
  /** Count objects of a kind matching filters, grouped by a field. */
  countBy(kind: string, groupField: string, filters: Filter[], projects?: string[]): Promise<Map<string, number>>;
  /**
   * Apply operations atomically; each precondition (version, unique name, claim, guard) is checked.
   * Returns the objects of the object operations (create, update, delete), in order. Claims and
   * guards take no revision and are not on the change feed.
   */
  batch(ops: Op[]): Promise<StoredObject[]>;
  /** The claims whose key starts with `prefix`: key → owner. */
  claims(prefix: string): Promise<Map<string, string>>;
  /** A guard's version (0 when never bumped). */
  guard(key: string): Promise<number>;
  create(op: Omit<Extract<Op, { op: 'create' }>, 'op'>): Promise<StoredObject>;
  update(op: Omit<Extract<Op, { op: 'update' }>, 'op'>): Promise<StoredObject>;
  delete(op: Omit<Extract<Op, { op: 'delete' }>, 'op'>): Promise<StoredObject>;

  /** Changes after `revision`, oldest first; throws YUN_WATCH_EXPIRED when compacted away. */
  changesSince(revision: number, limit?: number): Promise<Change[]>;
  /** Call `fn` with every change committed after `revision`. Returns an unsubscribe function. */
  watch(revision: number, fn: (changes: Change[]) => void): Promise<() => void>;

  // Private records that are not objects (never on the change feed).
  putSecret(key: string, value: string): Promise<void>;
  getSecret(key: string): Promise<string | undefined>;
  deleteSecret(key: string): Promise<void>;

  putToken(t: TokenRecord): Promise<void>;
  getToken(hash: string): Promise<TokenRecord | undefined>;
  deleteTokens(where: { hash?: string; token_id?: string; user_id?: string; project_id?: string }): Promise<number>;
  listTokens(userId: string): Promise<TokenRecord[]>;
  pruneTokens(nowIso: string): Promise<number>;

  appendAudit(e: Omit<AuditEntry, 'id'>): Promise<void>;
  listAudit(q: { limit: number; marker?: number; projectId?: string; userId?: string; since?: string; result?: string }): Promise<{ items: AuditEntry[]; nextMarker?: number; count?: number }>;

  close(): Promise<void>;
}
