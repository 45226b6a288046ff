import Database from 'better-sqlite3';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { YunError } from '../errors/errors.js';

/**
 * One `yun up` per data directory. The lock is an exclusive SQLite lock (a POSIX record lock, which
 * the kernel drops when the process dies, even by `kill -9`), so a crashed run never leaves a stale
 * lock behind. The pid file only serves to name the running process in the error.
 */
export interface DataDirLock {
  release(): void;
}

export function acquireLock(dataDir: string): DataDirLock {
  const lockPath = join(dataDir, 'yun.lock');
  const pidPath = join(dataDir, 'yun.pid');
  const db = new Database(lockPath, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code === 'SQLITE_BUSY') {
      let pid = 'unknown';
      try { pid = readFileSync(pidPath, 'utf8').trim(); } catch { /* not written yet */ }
      throw new YunError('YUN_DATA_DIR_LOCKED', `The data directory ${dataDir} is in use by another yun up (pid ${pid})`, {
        hint: `Stop it (kill ${pid}), or start this one with another --data-dir.`,
        extra: { pid: Number(pid) || null },
      });
    }
    throw e;
  }
  writeFileSync(pidPath, `${process.pid}\n`, { mode: 0o644 });
  return {
    release() {
      try { rmSync(pidPath, { force: true }); } catch { /* best effort */ }
      try { db.exec('COMMIT'); } catch { /* nothing to commit */ }
      db.close();
    },
  };
}
