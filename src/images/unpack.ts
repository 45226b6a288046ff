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
import {
  chmodSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync,
  readlinkSync, rmSync, symlinkSync, utimesSync, writeSync, type Stats,
} from 'node:fs';
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
  /** Directories this builder made, and every path it made: a path in a made directory that is not
   * in `made` does not exist, so there is nothing to look up or remove (the common case). */
  private madeDirs = new Set<string>(['']);
  private made = new Set<string>();
  /** Directory metadata, applied once at the end (deepest first). */
  private dirMeta = new Map<string, DirMeta>();
  /** Paths the current layer created (with their parents): whiteouts do not remove them. */
  private current = new Set<string>();
  private layer: LayerLabel = { digest: '', index: 0, count: 0 };
  private readonly asRootOwner: boolean;
  entries = 0;

  constructor(readonly root: string, opts: RootfsBuilderOptions = {}) {
    this.privileged = opts.privileged ?? (typeof process.getuid === 'function' && process.getuid() === 0);
    // New files belong to root:root already when we are root (directories get their modes, setgid
    // included, only at the end): no chown needed for entries owned by 0:0.
    this.asRootOwner = process.geteuid?.() === 0 && process.getegid?.() === 0;
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
  private forget(rel: string, wasDir: boolean): void {
    this.made.delete(rel);
    if (!wasDir) return;
    const prefix = `${rel}/`;
    for (const set of [this.dirs, this.madeDirs, this.made]) for (const d of set) if (d === rel || d.startsWith(prefix)) set.delete(d);
    for (const d of this.dirMeta.keys()) if (d === rel || d.startsWith(prefix)) this.dirMeta.delete(d);
  }

  private lstat(rel: string): Stats | undefined {
    try {
      return lstatSync(this.abs(rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Make sure every component of `parts` is a real directory (never a symlink); missing ones are
   * created when `create`, else false is returned.
   */
  private parents(parts: string[], raw: string, create: boolean): boolean {
    let cur = '';
    let parent = '';
    for (const c of parts) {
      cur = cur ? `${cur}/${c}` : c;
      if (this.dirs.has(cur)) {
        parent = cur;
        continue;
      }
      const st = this.madeDirs.has(parent) && !this.made.has(cur) ? undefined : this.lstat(cur);
      if (!st) {
        if (!create) return false;
        mkdirSync(this.abs(cur), 0o755);
        this.dirs.add(cur);
        this.madeDirs.add(cur);
        this.made.add(cur);
        parent = cur;
        continue;
      }
      if (st.isSymbolicLink()) {
        let target = '?';
        try {
          target = readlinkSync(this.abs(cur));
        } catch {
          /* unreadable */
        }
        throw unsafeEntry(this.layer, raw, `would be written through "${cur}", a symbolic link (to "${target}"); links are never followed while unpacking`);
      }
      if (!st.isDirectory()) throw invalidEntry(this.layer, raw, `needs "${cur}" to be a directory, but it is a file`);
      this.dirs.add(cur);
      parent = cur;
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

  /** Remove whatever is at `rel` (a directory with its content, unless `keepDir`); parents are checked already. */
  private clear(rel: string, parent: string, keepDir: boolean): 'none' | 'dir' {
    if (this.madeDirs.has(parent) && !this.made.has(rel)) return 'none';
    const st = this.lstat(rel);
    if (!st) return 'none';
    if (st.isDirectory()) {
      if (keepDir) return 'dir';
      rmSync(this.abs(rel), { recursive: true, force: true });
      this.forget(rel, true);
      return 'none';
    }
    rmSync(this.abs(rel), { force: true });
    this.forget(rel, false);
    return 'none';
  }

  private own(p: string, e: ReadEntry, fd?: number): void {
    if (!this.privileged) return;
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    if (uid === 0 && gid === 0 && this.asRootOwner) return;
    if (fd !== undefined) fchownSync(fd, uid, gid);
    else lchownSync(p, uid, gid);
  }

  async entry(e: ReadEntry): Promise<void> {
    this.entries++;
    const raw = e.path;
    const parts = entryComponents(raw, this.layer);
    const base = parts[parts.length - 1] ?? '';
    const dirParts = parts.slice(0, -1);
    const parent = dirParts.join('/');

    if (base.startsWith(WH)) return this.whiteout(raw, dirParts, base);

    if (parts.length === 0) {
      // The root itself (`./`): only a directory may be it.
      if (e.type !== 'Directory') throw unsafeEntry(this.layer, raw, `would replace the root directory with a ${e.type}`);
      this.dirMeta.set('', this.meta(e, 0o755));
      return;
    }
    const rel = parts.join('/');
    this.parents(dirParts, raw, true);
    this.mark(parts);
    const p = this.abs(rel);

    switch (e.type) {
      case 'Directory':
      case 'GNUDumpDir': {
        if (this.clear(rel, parent, true) === 'none') {
          mkdirSync(p, 0o755);
          this.madeDirs.add(rel);
          this.made.add(rel);
        }
        this.dirs.add(rel);
        this.dirMeta.set(rel, this.meta(e, 0o755));
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        this.clear(rel, parent, false);
        const fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        this.made.add(rel);
        try {
          let n = 0;
          for await (const chunk of e as AsyncIterable<Buffer>) {
            n += chunk.length;
            for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off);
          }
          if (n !== e.size) throw invalidEntry(this.layer, raw, `has ${n} bytes of content where its header says ${e.size}`);
          this.own(p, e, fd);
          fchmodSync(fd, (e.mode ?? 0o644) & 0o7777);
          if (e.mtime) futimesSync(fd, e.mtime, e.mtime);
        } finally {
          closeSync(fd);
        }
        return;
      }
      case 'SymbolicLink': {
        if (!e.linkpath) throw invalidEntry(this.layer, raw, 'is a symbolic link without a target');
        if (e.linkpath.includes('\0')) throw unsafeEntry(this.layer, raw, 'has a NUL byte in its link target');
        this.clear(rel, parent, false);
        symlinkSync(e.linkpath, p);
        this.made.add(rel);
        this.own(p, e);
        if (e.mtime) {
          try {
            lutimesSync(p, e.mtime, e.mtime);
          } catch {
            /* best effort */
          }
        }
        return;
      }
      case 'Link': {
        const target = entryComponents(e.linkpath ?? '', this.layer, 'hard link target', raw);
        const trel = target.join('/');
        if (target.length === 0) throw unsafeEntry(this.layer, raw, 'is a hard link to the root directory');
        const st = this.parents(target.slice(0, -1), raw, false) ? this.lstat(trel) : undefined;
        if (!st) throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", which does not exist in the image`);
        if (st.isDirectory()) throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", a directory`);
        if (trel === rel) return;
        this.clear(rel, parent, false);
        linkSync(this.abs(trel), p);
        this.made.add(rel);
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice': {
        if (!this.privileged) {
          throw unsafeEntry(this.layer, raw, `is a ${e.type === 'CharacterDevice' ? 'character' : 'block'} device node, which is only created when running as root`);
        }
        this.clear(rel, parent, false);
        const h = e.header as unknown as { devmaj?: number; devmin?: number };
        const mode = ((e.mode ?? 0o600) & 0o7777).toString(8);
        await run('mknod', ['-m', mode, p, e.type === 'CharacterDevice' ? 'c' : 'b', String(h.devmaj ?? 0), String(h.devmin ?? 0)]);
        this.made.add(rel);
        this.finishSpecial(p, e);
        return;
      }
      case 'FIFO': {
        this.clear(rel, parent, false);
        await run('mkfifo', ['-m', ((e.mode ?? 0o644) & 0o7777).toString(8), p]);
        this.made.add(rel);
        this.finishSpecial(p, e);
        return;
      }
      default:
        throw invalidEntry(this.layer, raw, `has an unsupported type (${e.type})`);
    }
  }

  private finishSpecial(p: string, e: ReadEntry): void {
    this.own(p, e);
    chmodSync(p, (e.mode ?? 0o644) & 0o7777);
    if (e.mtime) utimesSync(p, e.mtime, e.mtime);
  }

  private meta(e: ReadEntry, dflt: number): DirMeta {
    return { mode: (e.mode ?? dflt) & 0o7777, uid: e.uid, gid: e.gid, mtime: e.mtime };
  }

  private whiteout(raw: string, dirParts: string[], base: string): void {
    // Whiteouts act on the lower layers only; the directory they are in must exist without links.
    if (!this.parents(dirParts, raw, false)) return;
    const dir = dirParts.join('/');
    if (base === OPAQUE) return this.opaque(dir);
    if (base.startsWith(`${WH}${WH}`)) return; // other aufs metadata (.wh..wh.plnk, …): nothing to apply
    const name = base.slice(WH.length);
    if (name === '' || name === '.' || name === '..') throw unsafeEntry(this.layer, raw, 'is a whiteout of no valid name');
    const rel = dir ? `${dir}/${name}` : name;
    if (this.current.has(rel)) return;
    this.clear(rel, dir, false);
  }

  /** Remove everything below `dir` that the current layer did not add. */
  private opaque(dir: string): void {
    let names: string[];
    try {
      names = readdirSync(this.abs(dir));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const n of names) {
      const rel = dir ? `${dir}/${n}` : n;
      if (this.current.has(rel)) {
        if (this.lstat(rel)?.isDirectory()) this.opaque(rel);
      } else {
        const wasDir = this.lstat(rel)?.isDirectory() ?? false;
        rmSync(this.abs(rel), { recursive: true, force: true });
        this.forget(rel, wasDir);
      }
    }
  }

  /** Apply the directories' modes, owners and times (deepest first, so parents' times stick). */
  async finish(): Promise<void> {
    const depth = (rel: string) => (rel === '' ? 0 : rel.split('/').length);
    const dirs = [...this.dirMeta.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, m] of dirs) {
      const p = this.abs(rel);
      if (!this.lstat(rel)?.isDirectory()) continue;
      if (this.privileged) lchownSync(p, m.uid ?? 0, m.gid ?? 0);
      chmodSync(p, m.mode);
      if (m.mtime) utimesSync(p, m.mtime, m.mtime);
    }
    if (!this.dirMeta.has('')) chmodSync(this.root, 0o755);
  }
}
