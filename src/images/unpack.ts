/**
 * Safe application of image layers (tar streams) to a root file system being built in a private
 * temporary directory.
 *
 * Every entry is checked before anything is written:
 * - its path must stay inside the root after normalization (`a/../b` is fine, `../evil` and absolute
 *   paths are not);
 * - no parent component may be a symbolic link (absolute or relative): an entry never writes through a
 *   link, e.g. `etc -> /tmp/x` followed by `etc/passwd` is rejected; whiteouts and hard-link targets are
 *   checked the same way;
 * - hard links must point at an existing non-directory inside the root;
 * - device nodes are only created when privileged (root), with the `mknod` binary; FIFOs with `mkfifo`.
 *
 * Symbolic links themselves may point anywhere (`/bin/sh -> /bin/busybox` is normal): they are stored,
 * never followed. Files are created with O_EXCL|O_NOFOLLOW after removing whatever was at the path.
 *
 * OCI whiteouts: `.wh.NAME` removes NAME of the lower layers; `.wh..wh..opq` removes everything the
 * lower layers had in its directory (entries of the same layer stay, whatever their order).
 *
 * Modes (setuid/setgid/sticky included) are kept; ownership too when privileged (lchown); mtimes are
 * best effort, directories' last (their content changes them). Extended attributes are not applied.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ReadEntry } from 'tar';
import { YunError } from '../errors/errors.js';

const run = promisify(execFile);

export interface LayerLabel {
  /** Layer blob digest. */
  digest: string;
  /** 1-based position and count, for messages. */
  index: number;
  count: number;
}

interface DirMeta {
  mode: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

export function layerName(l: LayerLabel): string {
  return `layer ${l.index}/${l.count} (${l.digest})`;
}

export function unsafeEntry(l: LayerLabel, entry: string, why: string): YunError {
  return new YunError('YUN_UNSAFE_LAYER', `Refusing to unpack ${layerName(l)}: entry "${entry}" ${why}`, {
    extra: { layer: l.digest, entry },
  });
}

export function invalidEntry(l: LayerLabel, entry: string, why: string): YunError {
  return new YunError('YUN_IMAGE_INVALID', `Cannot unpack ${layerName(l)}: entry "${entry}" ${why}`, {
    hint: 'The layer does not fit the layers below it; rebuild the image.',
    extra: { layer: l.digest, entry },
  });
}

/**
 * Split an entry path into its components, resolving `.` and `..` lexically; an absolute path or one
 * that climbs above the root is unsafe. `''`, `.` and `./` are the root itself ([]).
 */
export function entryComponents(path: string, l: LayerLabel, what = 'path', entry = path): string[] {
  const its = what === 'path' ? 'its path' : `its ${what} "${path}"`;
  if (path.includes('\0')) throw unsafeEntry(l, entry, `has a NUL byte in ${its}`);
  if (path.startsWith('/')) throw unsafeEntry(l, entry, `has an absolute ${what === 'path' ? 'path' : `${what} "${path}"`}, which would escape the image's root file system`);
  const out: string[] = [];
  for (const c of path.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) throw unsafeEntry(l, entry, `escapes the image's root file system (${its} climbs above the root with "..")`);
      out.pop();
    } else out.push(c);
  }
  return out;
}

export interface RootfsBuilderOptions {
  /** Create device nodes and set ownership (default: running as root). */
  privileged?: boolean;
}

/** Applies layers, in order, to `root` (an empty directory nobody else writes to). */
export class RootfsBuilder {
  readonly privileged: boolean;
  /** Relative paths known to be real directories (not links) in the tree being built. */
  private dirs = new Set<string>(['']);
  /** Directory metadata, applied once at the end (deepest first). */
  private dirMeta = new Map<string, DirMeta>();
  /** Paths the current layer created (with their parents): whiteouts do not remove them. */
  private current = new Set<string>();
  private layer: LayerLabel = { digest: '', index: 0, count: 0 };
  entries = 0;

  constructor(readonly root: string, opts: RootfsBuilderOptions = {}) {
    this.privileged = opts.privileged ?? (typeof process.getuid === 'function' && process.getuid() === 0);
  }

  /** Start a layer: entries from now on belong to it. */
  beginLayer(l: LayerLabel): void {
    this.layer = l;
    this.current = new Set();
  }

  private abs(rel: string): string {
    return rel ? join(this.root, rel) : this.root;
  }

  /** Forget what we knew about `rel` and everything below it (it was removed). */
  private forget(rel: string): void {
    const prefix = `${rel}/`;
    for (const d of this.dirs) if (d === rel || d.startsWith(prefix)) this.dirs.delete(d);
    for (const d of this.dirMeta.keys()) if (d === rel || d.startsWith(prefix)) this.dirMeta.delete(d);
  }

  /**
   * Make sure every component of `parts` is a real directory (never a symlink); missing ones are
   * created when `create`, else false is returned.
   */
  private async parents(parts: string[], raw: string, create: boolean): Promise<boolean> {
    let cur = '';
    for (const c of parts) {
      cur = cur ? `${cur}/${c}` : c;
      if (this.dirs.has(cur)) continue;
      let st;
      try {
        st = await lstat(this.abs(cur));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        if (!create) return false;
        await mkdir(this.abs(cur), 0o755);
        this.dirs.add(cur);
        continue;
      }
      if (st.isSymbolicLink()) {
        const target = await readlink(this.abs(cur)).catch(() => '?');
        throw unsafeEntry(this.layer, raw, `would be written through "${cur}", a symbolic link (to "${target}"); links are never followed while unpacking`);
      }
      if (!st.isDirectory()) throw invalidEntry(this.layer, raw, `needs "${cur}" to be a directory, but it is a file`);
      this.dirs.add(cur);
    }
    return true;
  }

  private mark(parts: string[]): void {
    let cur = '';
    for (const c of parts) {
      cur = cur ? `${cur}/${c}` : c;
      this.current.add(cur);
    }
  }

  /** Remove whatever is at `rel` (a directory with its content); the path's parents are checked already. */
  private async clear(rel: string, keepDir: boolean): Promise<'none' | 'dir' | 'other'> {
    let st;
    try {
      st = await lstat(this.abs(rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
      throw e;
    }
    if (st.isDirectory()) {
      if (keepDir) return 'dir';
      await rm(this.abs(rel), { recursive: true, force: true });
      this.forget(rel);
      return 'none';
    }
    await rm(this.abs(rel), { force: true });
    return 'none';
  }

  async entry(e: ReadEntry): Promise<void> {
    this.entries++;
    const raw = e.path;
    const parts = entryComponents(raw, this.layer);
    const base = parts[parts.length - 1] ?? '';
    const dirParts = parts.slice(0, -1);

    if (base.startsWith(WH)) return this.whiteout(raw, dirParts, base);

    if (parts.length === 0) {
      // The root itself (`./`): only a directory may be it.
      if (e.type !== 'Directory') throw unsafeEntry(this.layer, raw, `would replace the root directory with a ${e.type}`);
      this.dirMeta.set('', this.meta(e, 0o755));
      return;
    }
    const rel = parts.join('/');
    await this.parents(dirParts, raw, true);
    this.mark(parts);
    const p = this.abs(rel);

    switch (e.type) {
      case 'Directory':
      case 'GNUDumpDir': {
        if ((await this.clear(rel, true)) === 'none') await mkdir(p, 0o755);
        this.dirs.add(rel);
        this.dirMeta.set(rel, this.meta(e, 0o755));
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        await this.clear(rel, false);
        const fh = await open(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          let n = 0;
          for await (const chunk of e as AsyncIterable<Buffer>) {
            n += chunk.length;
            await fh.write(chunk);
          }
          if (n !== e.size) throw invalidEntry(this.layer, raw, `has ${n} bytes of content where its header says ${e.size}`);
          if (this.privileged) await fh.chown(e.uid ?? 0, e.gid ?? 0);
          await fh.chmod((e.mode ?? 0o644) & 0o7777);
          if (e.mtime) await fh.utimes(e.mtime, e.mtime).catch(() => {});
        } finally {
          await fh.close();
        }
        return;
      }
      case 'SymbolicLink': {
        if (!e.linkpath) throw invalidEntry(this.layer, raw, 'is a symbolic link without a target');
        if (e.linkpath.includes('\0')) throw unsafeEntry(this.layer, raw, 'has a NUL byte in its link target');
        await this.clear(rel, false);
        await symlink(e.linkpath, p);
        if (this.privileged) await lchown(p, e.uid ?? 0, e.gid ?? 0);
        if (e.mtime) await lutimes(p, e.mtime, e.mtime).catch(() => {});
        return;
      }
      case 'Link': {
        const target = entryComponents(e.linkpath ?? '', this.layer, 'hard link target', raw);
        const trel = target.join('/');
        if (target.length === 0) throw unsafeEntry(this.layer, raw, 'is a hard link to the root directory');
        const ok = await this.parents(target.slice(0, -1), raw, false);
        let st;
        try {
          st = ok ? await lstat(this.abs(trel)) : undefined;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        if (!st) throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", which does not exist in the image`);
        if (st.isDirectory()) throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", a directory`);
        if (trel === rel) return;
        await this.clear(rel, false);
        await link(this.abs(trel), p);
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice': {
        if (!this.privileged) {
          throw unsafeEntry(this.layer, raw, `is a ${e.type === 'CharacterDevice' ? 'character' : 'block'} device node, which is only created when running as root`);
        }
        await this.clear(rel, false);
        const h = e.header as unknown as { devmaj?: number; devmin?: number };
        const mode = ((e.mode ?? 0o600) & 0o7777).toString(8);
        await run('mknod', ['-m', mode, p, e.type === 'CharacterDevice' ? 'c' : 'b', String(h.devmaj ?? 0), String(h.devmin ?? 0)]);
        await this.finishSpecial(p, e);
        return;
      }
      case 'FIFO': {
        await this.clear(rel, false);
        await run('mkfifo', ['-m', ((e.mode ?? 0o644) & 0o7777).toString(8), p]);
        await this.finishSpecial(p, e);
        return;
      }
      default:
        throw invalidEntry(this.layer, raw, `has an unsupported type (${e.type})`);
    }
  }

  private async finishSpecial(p: string, e: ReadEntry): Promise<void> {
    if (this.privileged) await lchown(p, e.uid ?? 0, e.gid ?? 0);
    await chmod(p, (e.mode ?? 0o644) & 0o7777);
    if (e.mtime) await utimes(p, e.mtime, e.mtime).catch(() => {});
  }

  private meta(e: ReadEntry, dflt: number): DirMeta {
    return { mode: (e.mode ?? dflt) & 0o7777, uid: e.uid, gid: e.gid, mtime: e.mtime };
  }

  private async whiteout(raw: string, dirParts: string[], base: string): Promise<void> {
    // Whiteouts act on the lower layers only; the directory they are in must exist without links.
    if (!(await this.parents(dirParts, raw, false))) return;
    const dir = dirParts.join('/');
    if (base === OPAQUE) {
      await this.opaque(dir);
      return;
    }
    if (base.startsWith(`${WH}${WH}`)) return; // other aufs metadata (.wh..wh.plnk, …): nothing to apply
    const name = base.slice(WH.length);
    if (name === '' || name === '.' || name === '..') throw unsafeEntry(this.layer, raw, 'is a whiteout of no valid name');
    const rel = dir ? `${dir}/${name}` : name;
    if (this.current.has(rel)) return;
    await this.clear(rel, false);
  }

  /** Remove everything below `dir` that the current layer did not add. */
  private async opaque(dir: string): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.abs(dir));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const n of names) {
      const rel = dir ? `${dir}/${n}` : n;
      if (this.current.has(rel)) {
        const st = await lstat(this.abs(rel));
        if (st.isDirectory()) await this.opaque(rel);
      } else {
        await rm(this.abs(rel), { recursive: true, force: true });
        this.forget(rel);
      }
    }
  }

  /** Apply the directories' modes, owners and times (deepest first, so parents' times stick). */
  async finish(): Promise<void> {
    const depth = (rel: string) => (rel === '' ? 0 : rel.split('/').length);
    const dirs = [...this.dirMeta.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, m] of dirs) {
      const p = this.abs(rel);
      const st = await lstat(p).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      if (this.privileged) await lchown(p, m.uid ?? 0, m.gid ?? 0);
      await chmod(p, m.mode);
      if (m.mtime) await utimes(p, m.mtime, m.mtime).catch(() => {});
    }
    if (!this.dirMeta.has('')) await chmod(this.root, 0o755);
  }
}
