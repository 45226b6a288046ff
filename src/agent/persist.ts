import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TaskHandle } from '../drivers/driver.js';
import type { TaskData, TaskStatus } from '../services/task.js';

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

export class TaskStore {
  constructor(readonly root: string) {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  save(r: TaskRecord): void {
    const dir = this.dir(r.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const p = join(dir, 'task.json');
    writeFileSync(`${p}.tmp`, JSON.stringify(r));
    renameSync(`${p}.tmp`, p);
  }

  loadAll(): TaskRecord[] {
    const out: TaskRecord[] = [];
    let entries: string[] = [];
    try { entries = readdirSync(this.root); } catch { return out; }
    for (const id of entries) {
      try {
        out.push(JSON.parse(readFileSync(join(this.root, id, 'task.json'), 'utf8')) as TaskRecord);
      } catch { /* a task dir without a record: left from a crash before the first save */ }
    }
    return out;
  }

  remove(id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true });
  }
}
