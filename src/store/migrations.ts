/**
 * Versioned schema migrations for the SQLite store. Each entry runs once, in order, inside a
 * transaction; `PRAGMA user_version` records how far a database has come. Never edit a shipped
 * migration: add a new one.
 */
export const migrations: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'objects, changes, tokens, secrets, audit',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta (key, value) VALUES ('revision', '0'), ('compacted', '0');

      CREATE TABLE objects (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        revision INTEGER NOT NULL,
        data TEXT NOT NULL
      );
      CREATE UNIQUE INDEX objects_name ON objects (kind, project_id, name);
      CREATE INDEX objects_kind_id ON objects (kind, id);
      CREATE INDEX objects_kind_project_id ON objects (kind, project_id, id);
      CREATE INDEX objects_kind_name ON objects (kind, name, id);
      CREATE INDEX objects_kind_created ON objects (kind, created_at, id);
      CREATE INDEX objects_kind_updated ON objects (kind, updated_at, id);

      CREATE TABLE changes (
        revision INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        object TEXT NOT NULL,
        at TEXT NOT NULL
      );

      CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        token_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        roles TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
      );
      CREATE INDEX tokens_user ON tokens (user_id);
      CREATE INDEX tokens_expires ON tokens (expires_at);

      CREATE TABLE secrets (key TEXT PRIMARY KEY, value TEXT NOT NULL);

      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        request_id TEXT NOT NULL,
        user_id TEXT,
        user_name TEXT,
        project_id TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        action TEXT NOT NULL,
        target_id TEXT,
        status INTEGER NOT NULL,
        result TEXT NOT NULL,
        error_code TEXT,
        remote_addr TEXT
      );
      CREATE INDEX audit_project ON audit (project_id, id);
      CREATE INDEX audit_user ON audit (user_id, id);
    `,
  },
  {
    version: 2,
    name: 'task indexes by service and node',
    sql: `
      CREATE INDEX objects_task_service ON objects (kind, json_extract(data, '$."service_id"'));
      CREATE INDEX objects_task_node ON objects (kind, json_extract(data, '$."node_id"'));
    `,
  },
  {
    version: 3,
    name: 'claims and guards (atomic allocation inside a batch), backfilled for services',
    sql: `
      CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL);
      CREATE INDEX claims_owner ON claims (owner);
      CREATE TABLE guards (key TEXT PRIMARY KEY, version INTEGER NOT NULL);
      INSERT OR IGNORE INTO claims (key, owner)
        SELECT 'service-vip/' || json_extract(data, '$.vip_index'), id FROM objects
        WHERE kind = 'service' AND json_extract(data, '$.vip_index') IS NOT NULL;
      INSERT OR IGNORE INTO claims (key, owner)
        SELECT 'ingress-port/' || json_extract(p.value, '$.protocol') || '/' || json_extract(p.value, '$.published'), o.id
        FROM objects o, json_each(o.data, '$.spec.endpoint.ports') p
        WHERE o.kind = 'service' AND json_extract(p.value, '$.published') IS NOT NULL AND json_extract(p.value, '$.mode') = 'ingress';
      INSERT OR IGNORE INTO claims (key, owner)
        SELECT 'network-vip/' || v.key || '/' || v.value, o.id
        FROM objects o, json_each(o.data, '$.network_vips') v
        WHERE o.kind = 'service';
    `,
  },
  {
    version: 4,
    name: 'images: status, visibility and audience, backfilled (active, private, seen by their own project)',
    sql: `
      UPDATE objects SET data = json_set(data,
          '$.status', IFNULL(json_extract(data, '$.status'), 'active'),
          '$.visibility', IFNULL(json_extract(data, '$.visibility'), 'private'),
          '$.members', json(IFNULL(json_extract(data, '$.members'), '[]')),
          '$.audience', json(IFNULL(json_extract(data, '$.audience'), json_array(project_id))),
          '$.member_index', json(IFNULL(json_extract(data, '$.member_index'), '[]')))
        WHERE kind = 'image';
    `,
  },
  {
    version: 5,
    name: 'one revision per batch: changes keyed by their own sequence, several to a revision',
    sql: `
      ALTER TABLE changes RENAME TO changes_v4;
      CREATE TABLE changes (
        seq INTEGER PRIMARY KEY,
        revision INTEGER NOT NULL,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        object TEXT NOT NULL,
        at TEXT NOT NULL
      );
      INSERT INTO changes (seq, revision, type, kind, id, project_id, object, at)
        SELECT revision, revision, type, kind, id, project_id, object, at FROM changes_v4 ORDER BY revision;
      DROP TABLE changes_v4;
      CREATE INDEX changes_revision ON changes (revision, seq);
    `,
  },
];
