import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TaskHandle } from '../drivers/driver.js';
import type { TaskData, TaskStatus } from '../services/task.js';
import type { AssignedServer } from '../dispatcher/protocol.js';
import type { LocalInstance } from '../servers/plan.js';
import type { ServerReport } from '../servers/server.js';

/** What the agent keeps on disk per task, so a restarted agent reattaches instead of restarting. */
export interface TaskRecord {
  id: string;
  data: TaskData;
  driver: string | null;
  handle: TaskHandle | null;
  status: TaskStatus;
  /** Status reported and acknowledged? (Unreported changes are sent again on reconnect.) */
  reported: boolean;
}

/** What the agent keeps on disk per server: the server as last assigned, its instance and what was reported. */
export interface ServerRecord {
  id: string;
  server: AssignedServer;
  driver: string | null;
  handle: TaskHandle | null;
  local: LocalInstance;
  /** The last desired generation carried out completely. */
  done_generation: number;
  /** A step failed for this generation: not retried until the server is asked something new. */
  failed_generation: number;
  report: ServerReport;
  /** Attached volumes: the device each got, the path it is mounted at (what a detach undoes). */
  devices?: Record<string, { device: string | null; mount_path: string | null }>;
  /** Volumes whose attach (or detach) failed: not tried again until the manager has rolled the attachment back. */
  volume_failures?: Record<string, { action: 'attach' | 'detach'; details: string }>;
}

/**
 * Records of one kind, one directory each (`ROOT/<id>/<file>`), written atomically (temp file +
 * rename). The directory also holds what the driver keeps for the task or server (logs, disks).
 */
export class RecordStore<T extends { id: string }> {
  constructor(readonly root: string, private readonly file: string) {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  save(r: T): void {
    const dir = this.dir(r.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const p = join(dir, this.file);
    writeFileSync(`${p}.tmp`, JSON.stringify(r));
    renameSync(`${p}.tmp`, p);
  }

  loadAll(): T[] {
    const out: T[] = [];
    let entries: string[] = [];
    try { entries = readdirSync(this.root); } catch { return out; }
    for (const id of entries) {
      try {
        out.push(JSON.parse(readFileSync(join(this.root, id, this.file), 'utf8')) as T);
      } catch { /* a dir without a record: left from a crash before the first save */ }
    }
    return out;
  }

  remove(id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true });
  }
}

export class TaskStore extends RecordStore<TaskRecord> {
  constructor(root: string) {
    super(root, 'task.json');
  }
}
