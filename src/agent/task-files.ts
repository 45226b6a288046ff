import { chmodSync, chownSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { InstanceFile, MountSpec } from '../drivers/driver.js';
import type { DeliveredFile } from '../secrets/delivery.js';

/** statfs(2) magic numbers of file systems that live in memory only. */
const MEMORY_FS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

/** Where a node keeps its tasks' secrets and configs by default: a tmpfs every Linux has. */
export const defaultFilesRoot = (nodeId: string) => `/dev/shm/yunstack/${nodeId}`;

/** A task's files as placed on the node: the tree's root, each file, and the bind mounts that show each at its target. */
export interface PlacedFiles {
  root: string;
  list: InstanceFile[];
  mounts: MountSpec[];
}

/**
 * The secrets and configs of this node's tasks, each task's in a tree of its own on a file system
 * in memory (refused when `root` is on a disk), laid out as inside the task (`ROOT/TASK/run/secrets/x`),
 * with the owner and mode each asks for. Removed when the task ends; what a crash left behind goes
 * when the agent starts again.
 */
export class TaskFiles {
  constructor(readonly root: string) {}

  private ensureRoot(): void {
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    const type = Number(statfsSync(this.root).type);
    if (!MEMORY_FS.has(type)) throw new Error(`${this.root} is not on a tmpfs (file system type 0x${type.toString(16)}): secrets are kept in memory only, never on a disk; mount a tmpfs there or point the agent elsewhere`);
  }

  dir(taskId: string): string {
    return join(this.root, taskId);
  }

  /**
   * Write the owner's files (a task's or a server's), under `under` in its tree when given (the rest
   * of the tree is the owner's driver's: a VM's seed that carries them); throws (writing nothing)
   * when one of them could not be had.
   */
  place(ownerId: string, files: DeliveredFile[], under?: string): PlacedFiles {
    for (const f of files) if (f.data === undefined) throw new Error(f.error ?? `${f.kind} "${f.name}" did not arrive with it`);
    this.ensureRoot();
    const root = this.dir(ownerId);
    const dir = under ? join(root, under) : root;
    rmSync(root, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    const asRoot = process.getuid?.() === 0;
    const list: InstanceFile[] = [];
    try {
      for (const f of files) {
        const p = join(dir, f.target);
        if (!p.startsWith(`${dir}/`)) throw new Error(`the target ${f.target} of ${f.kind} "${f.name}" leaves its tree`);
        mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
        const content = Buffer.from(f.data!, 'base64');
        writeFileSync(p, content, { mode: 0o600 });
        content.fill(0);
        // A non-root agent's tasks all run as its own user: the files stay that user's.
        if (asRoot) chownSync(p, Number(f.uid), Number(f.gid));
        chmodSync(p, f.mode);
        list.push({ source: p, target: f.target, uid: Number(f.uid), gid: Number(f.gid), mode: f.mode });
      }
    } catch (e) {
      this.remove(ownerId);
      throw e;
    }
    return { root, list, mounts: list.map((f) => ({ type: 'bind', source: f.source, target: f.target, readonly: true })) };
  }

  remove(taskId: string): void {
    rmSync(this.dir(taskId), { recursive: true, force: true });
  }

  /** Remove the files of tasks this node no longer has. */
  sweep(keep: Set<string>): void {
    let entries: string[];
    try { entries = readdirSync(this.root); } catch { return; }
    for (const id of entries) if (!keep.has(id)) this.remove(id);
  }
}
