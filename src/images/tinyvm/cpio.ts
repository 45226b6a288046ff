/**
 * A small writer of `newc` cpio archives (the format of Linux initramfs images), so that building
 * an initrd needs neither the `cpio` binary nor root (device nodes are just header fields here).
 *
 * Format (per entry): the magic `070701`, thirteen 8-digit hexadecimal fields (ino, mode, uid, gid,
 * nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize including the NUL,
 * check = 0), the name and a NUL padded to a multiple of 4 bytes, then the data padded to a multiple
 * of 4 bytes. A symlink's data is its target. The archive ends with an entry named `TRAILER!!!`.
 */

export type CpioEntry =
  | { type: 'file'; name: string; data: Buffer | string; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'dir'; name: string; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { type: 'symlink'; name: string; target: string; uid?: number; gid?: number; mtime?: number }
  | { type: 'char' | 'block'; name: string; major: number; minor: number; mode?: number; uid?: number; gid?: number; mtime?: number };

export const CPIO_TRAILER = 'TRAILER!!!';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/** `a/b/c` from `./a/b/c`, `/a/b/c` or `a//b/c/`; throws on empty names, `.` or `..` components. */
export function normalizeCpioName(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) throw new Error(`cpio: empty entry name ${JSON.stringify(name)}`);
  if (parts.includes('..')) throw new Error(`cpio: entry name ${JSON.stringify(name)} contains '..'`);
  if (parts.some((p) => p.includes('\0'))) throw new Error(`cpio: entry name ${JSON.stringify(name)} contains a NUL byte`);
  return parts.join('/');
}

function hex8(n: number, what: string): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio: ${what} ${n} does not fit a newc header field`);
  return n.toString(16).padStart(8, '0');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/**
 * Writes entries into a newc archive in memory. Parent directories that were not added explicitly
 * are added (mode 0755) before their first child; adding the same name twice is an error.
 */
export class CpioWriter {
  private readonly chunks: Buffer[] = [];
  private readonly names = new Set<string>();
  private ino = 1;
  private size = 0;
  private done = false;

  /** mtime for entries that do not set one (seconds since the epoch); 0 makes archives reproducible. */
  constructor(private readonly defaultMtime = 0) {}

  add(entry: CpioEntry): this {
    if (this.done) throw new Error('cpio: archive already finished');
    const name = normalizeCpioName(entry.name);
    if (name === CPIO_TRAILER) throw new Error(`cpio: ${CPIO_TRAILER} is reserved for the trailer`);
    if (this.names.has(name)) throw new Error(`cpio: duplicate entry ${name}`);
    const slash = name.lastIndexOf('/');
    if (slash > 0) this.ensureDir(name.slice(0, slash));
    this.names.add(name);
    let mode: number;
    let data: Buffer = Buffer.alloc(0);
    let nlink = 1;
    let rdev: [number, number] = [0, 0];
    switch (entry.type) {
      case 'file':
        mode = S_IFREG | ((entry.mode ?? 0o644) & 0o7777);
        data = typeof entry.data === 'string' ? Buffer.from(entry.data) : entry.data;
        break;
      case 'dir':
        mode = S_IFDIR | ((entry.mode ?? 0o755) & 0o7777);
        nlink = 2;
        break;
      case 'symlink':
        if (entry.target === '') throw new Error(`cpio: symlink ${name} has an empty target`);
        mode = S_IFLNK | 0o777;
        data = Buffer.from(entry.target);
        break;
      case 'char':
      case 'block':
        mode = (entry.type === 'char' ? S_IFCHR : S_IFBLK) | ((entry.mode ?? 0o600) & 0o7777);
        rdev = [entry.major, entry.minor];
        break;
    }
    this.push(name, {
      mode,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      nlink,
      mtime: entry.mtime ?? this.defaultMtime,
      rdev,
      data,
    });
    return this;
  }

  /** True when `name` (normalized) was added, explicitly or as a parent directory. */
  has(name: string): boolean {
    return this.names.has(normalizeCpioName(name));
  }

  /** Appends the trailer and returns the archive. The writer cannot be used afterwards. */
  finish(): Buffer {
    if (this.done) throw new Error('cpio: archive already finished');
    this.push(CPIO_TRAILER, { mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, rdev: [0, 0], data: Buffer.alloc(0), ino: 0 });
    this.done = true;
    return Buffer.concat(this.chunks, this.size);
  }

  private ensureDir(dir: string): void {
    if (this.names.has(dir)) return;
    const slash = dir.lastIndexOf('/');
    if (slash > 0) this.ensureDir(dir.slice(0, slash));
    this.names.add(dir);
    this.push(dir, { mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, mtime: this.defaultMtime, rdev: [0, 0], data: Buffer.alloc(0) });
  }

  private push(
    name: string,
    h: { mode: number; uid: number; gid: number; nlink: number; mtime: number; rdev: [number, number]; data: Buffer; ino?: number },
  ): void {
    const nameBytes = Buffer.from(name + '\0');
    const header =
      '070701' +
      [
        hex8(h.ino ?? this.ino++, 'inode'),
        hex8(h.mode, 'mode'),
        hex8(h.uid, 'uid'),
        hex8(h.gid, 'gid'),
        hex8(h.nlink, 'nlink'),
        hex8(Math.floor(h.mtime), 'mtime'),
        hex8(h.data.length, 'file size'),
        hex8(0, 'devmajor'),
        hex8(0, 'devminor'),
        hex8(h.rdev[0], 'rdevmajor'),
        hex8(h.rdev[1], 'rdevminor'),
        hex8(nameBytes.length, 'name size'),
        hex8(0, 'check'),
      ].join('');
    const head = Buffer.concat([Buffer.from(header, 'latin1'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length))]);
    this.chunks.push(head);
    this.size += head.length;
    if (h.data.length > 0) {
      this.chunks.push(h.data, Buffer.alloc(pad4(h.data.length)));
      this.size += h.data.length + pad4(h.data.length);
    }
  }
}

/** The archive of `entries` (see CpioWriter). */
export function cpioArchive(entries: Iterable<CpioEntry>, defaultMtime = 0): Buffer {
  const w = new CpioWriter(defaultMtime);
  for (const e of entries) w.add(e);
  return w.finish();
}
