/**
 * Where an import reads from: a directory (an OCI layout, or an unpacked `docker save`), or a tar
 * archive (plain or gzip). A tar is read once, its regular files written flat (never by their archive
 * paths) into a private temporary directory of the store while their sha256 is computed; symbolic and
 * hard links inside the archive (docker save links shared layers) are resolved inside the archive.
 *
 * Files are handed to the store as blobs only after their digest (computed here, never taken from
 * a name or a manifest) matches what the image says.
 */
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { YunError } from '../errors/errors.js';
import { compressionOf, digestMismatch, HashingStream, sha256File, sizeMismatch } from './digest.js';
import type { ImportProgress } from './store.js';
import { readTar, TarFormatError } from './tar-stream.js';

/** What an import needs from the store: blobs in, verified, recorded for roll-back. */
export interface BlobSink {
  putBlob(source: NodeJS.ReadableStream | Buffer, expected?: { digest?: string; size?: number; label?: string }): Promise<{ digest: string; size: number }>;
  /** Move a file (in the store's temp dir) whose digest we computed into the blob store. */
  adoptFile(path: string, digest: string, size: number): Promise<void>;
  blobPath(digest: string): string;
}

export function invalidImage(detail: string, extra: Record<string, unknown> = {}): YunError {
  return new YunError('YUN_IMAGE_INVALID', detail, { extra });
}

/** Largest JSON document (manifest, index, config) we read into memory. */
const MAX_JSON = 32 * 1024 * 1024;

export abstract class ArchiveSource {
  /** What to call this source in messages. */
  abstract readonly label: string;
  /** digestOf is free (computed while reading the archive). */
  abstract readonly cheapDigests: boolean;
  abstract has(rel: string): boolean;
  abstract open(rel: string): Readable;
  /** sha256 and size of the file, computed by us. */
  abstract digestOf(rel: string): Promise<{ digest: string; size: number }>;
  /** Store the file as a blob, verified against `expected`. */
  abstract ingest(rel: string, sink: BlobSink, expected: { digest: string; size: number }, what: string): Promise<void>;
  abstract close(): Promise<void>;

  async read(rel: string, what: string): Promise<Buffer> {
    const { size } = await this.digestOf(rel);
    if (size > MAX_JSON) throw invalidImage(`${what} (${rel} in ${this.label}) is ${size} bytes, too large for a JSON document`);
    const chunks: Buffer[] = [];
    for await (const c of this.open(rel)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async json<T>(rel: string, what: string): Promise<T> {
    if (!this.has(rel)) throw invalidImage(`${this.label} has no ${rel} (${what})`);
    const buf = await this.read(rel, what);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (e) {
      throw invalidImage(`${what} (${rel} in ${this.label}) is not valid JSON: ${(e as Error).message}`);
    }
  }

  /** Read a file that should have `expected` as digest (and size), verifying both before parsing. */
  async verifiedJson<T>(rel: string, expected: { digest: string; size?: number }, what: string): Promise<{ value: T; bytes: Buffer }> {
    if (!this.has(rel)) throw invalidImage(`${this.label} has no ${rel} (${what} ${expected.digest})`);
    const got = await this.digestOf(rel);
    if (got.digest !== expected.digest) throw digestMismatch(`${what} ${rel} in ${this.label}`, expected.digest, got.digest, { file: rel });
    if (expected.size !== undefined && got.size !== expected.size) throw sizeMismatch(`${what} ${rel} in ${this.label}`, expected.size, got.size, { file: rel });
    const bytes = await this.read(rel, what);
    try {
      return { value: JSON.parse(bytes.toString('utf8')) as T, bytes };
    } catch (e) {
      throw invalidImage(`${what} ${expected.digest} (${rel} in ${this.label}) is not valid JSON: ${(e as Error).message}`);
    }
  }

  /** gzip, zstd or none, from the first bytes. */
  async compression(rel: string): Promise<'gzip' | 'zstd' | 'none'> {
    const s = this.open(rel);
    try {
      for await (const c of s) return compressionOf(c as Buffer);
      return 'none';
    } finally {
      s.destroy();
    }
  }
}

/** A directory: an OCI image layout, or an unpacked docker save archive. */
export class DirSource extends ArchiveSource {
  readonly cheapDigests = false;
  private digests = new Map<string, Promise<{ digest: string; size: number }>>();
  constructor(readonly dir: string) {
    super();
  }

  get label(): string {
    return this.dir;
  }

  private path(rel: string): string {
    const n = posix.normalize(rel);
    if (n.startsWith('../') || n === '..' || posix.isAbsolute(n)) throw invalidImage(`${this.label}: "${rel}" points outside the layout`);
    return join(this.dir, n);
  }

  has(rel: string): boolean {
    try {
      return statSync(this.path(rel)).isFile();
    } catch {
      return false;
    }
  }

  open(rel: string): Readable {
    return createReadStream(this.path(rel), { highWaterMark: 1 << 20 });
  }

  digestOf(rel: string): Promise<{ digest: string; size: number }> {
    let p = this.digests.get(rel);
    if (!p) {
      p = sha256File(this.path(rel));
      this.digests.set(rel, p);
    }
    return p;
  }

  async ingest(rel: string, sink: BlobSink, expected: { digest: string; size: number }, what: string): Promise<void> {
    // Hash again while copying: the file may have changed since digestOf.
    await sink.putBlob(this.open(rel), { ...expected, label: `${what} (${rel} in ${this.label})` });
  }

  async close(): Promise<void> {}
}

interface TarFile {
  tmp: string;
  digest: string;
  size: number;
  /** Once adopted into the store, read it from there. */
  moved?: string;
}

/** A tar archive (gzip allowed), extracted flat into `tmpDir`. */
export class TarSource extends ArchiveSource {
  readonly cheapDigests = true;
  private files = new Map<string, TarFile>();
  private links = new Map<string, string>();

  private constructor(readonly file: string, readonly tmpDir: string) {
    super();
  }

  get label(): string {
    return this.file;
  }

  static async extract(file: string, tmpDir: string, progress?: ImportProgress): Promise<TarSource> {
    const src = new TarSource(file, tmpDir);
    try {
      await src.load(progress);
    } catch (e) {
      await src.close();
      throw e;
    }
    return src;
  }

  private async load(progress?: ImportProgress): Promise<void> {
    const total = statSync(this.file).size;
    const fh = await open(this.file, 'r');
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    await fh.close();
    const comp = compressionOf(head);
    if (comp === 'zstd') throw invalidImage(`${this.file} is zstd-compressed; decompress it first (zstd -d) or use a tar or tar.gz`);
    const input = createReadStream(this.file, { highWaterMark: 1 << 20 });
    let lastReport = 0;
    const counter = new HashingStream({
      onBytes: (done) => {
        if (progress && (done - lastReport >= 8 << 20 || done === total)) {
          lastReport = done;
          progress({ phase: 'unpack', done, total, message: `reading ${this.file}` });
        }
      },
    });
    let n = 0;
    const onEntry = async (e: ReadEntry) => {
      const rel = this.norm(e.path);
      if (rel === undefined) throw invalidImage(`${this.file}: entry "${e.path}" points outside the archive`, { entry: e.path });
      switch (e.type) {
        case 'File':
        case 'OldFile':
        case 'ContiguousFile': {
          const tmp = join(this.tmpDir, `f${n++}`);
          const h = new HashingStream();
          await pipeline(entryBody(e), h, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
          this.links.delete(rel);
          this.files.set(rel, { tmp, digest: h.digest(), size: h.bytes });
          return;
        }
        case 'SymbolicLink': {
          const target = e.linkpath?.startsWith('/') ? undefined : this.norm(posix.join(posix.dirname(rel), e.linkpath ?? ''));
          if (target === undefined) throw invalidImage(`${this.file}: link "${e.path}" -> "${e.linkpath}" points outside the archive`, { entry: e.path });
          this.links.set(rel, target);
          return;
        }
        case 'Link': {
          const target = this.norm(e.linkpath ?? '');
          const f = target === undefined ? undefined : this.files.get(target);
          if (!f) throw invalidImage(`${this.file}: hard link "${e.path}" -> "${e.linkpath}" has no target in the archive`, { entry: e.path });
          this.files.set(rel, f);
          return;
        }
        default:
          return; // directories and anything else carry nothing an image needs
      }
    };
    try {
      await readTar(input, comp === 'gzip' ? [counter, createGunzip()] : [counter], onEntry);
    } catch (e) {
      if (e instanceof YunError) throw e;
      const msg = e instanceof TarFormatError ? e.message : (e as Error).message;
      throw invalidImage(`${this.file} is not a readable tar archive: ${msg}`);
    }
  }

  private norm(p: string): string | undefined {
    const n = posix.normalize(`/${p}`).slice(1).replace(/\/$/, '');
    return n.startsWith('..') ? undefined : n;
  }

  /** Follow the archive's symbolic links (in any component) to a regular file. */
  private resolve(rel: string): TarFile | undefined {
    let cur = this.norm(rel);
    for (let hops = 0; cur !== undefined && hops < 40; hops++) {
      const f = this.files.get(cur);
      if (f) return f;
      const parts = cur.split('/');
      let next: string | undefined;
      for (let i = parts.length; i > 0 && next === undefined; i--) {
        const t = this.links.get(parts.slice(0, i).join('/'));
        if (t !== undefined) next = this.norm([t, ...parts.slice(i)].join('/'));
      }
      if (next === undefined) return undefined;
      cur = next;
    }
    return undefined;
  }

  private at(rel: string): TarFile {
    const f = this.resolve(rel);
    if (!f) throw invalidImage(`${this.label} has no file ${rel}`);
    return f;
  }

  has(rel: string): boolean {
    return this.resolve(rel) !== undefined;
  }

  open(rel: string): Readable {
    const f = this.at(rel);
    return createReadStream(f.moved ?? f.tmp, { highWaterMark: 1 << 20 });
  }

  async digestOf(rel: string): Promise<{ digest: string; size: number }> {
    const f = this.at(rel);
    return { digest: f.digest, size: f.size };
  }

  async ingest(rel: string, sink: BlobSink, expected: { digest: string; size: number }, what: string): Promise<void> {
    const f = this.at(rel);
    if (f.digest !== expected.digest) throw digestMismatch(`${what} (${rel} in ${this.label})`, expected.digest, f.digest, { file: rel });
    if (f.size !== expected.size) throw sizeMismatch(`${what} (${rel} in ${this.label})`, expected.size, f.size, { file: rel });
    if (f.moved) return;
    await sink.adoptFile(f.tmp, f.digest, f.size);
    f.moved = sink.blobPath(f.digest);
  }

  async close(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
  }
}

/** A tar entry's content as a Node-friendly async iterable. */
export async function* entryBody(e: ReadEntry): AsyncGenerator<Buffer> {
  for await (const c of e as AsyncIterable<Buffer>) yield c;
}

/** A directory or a file (tar or tar.gz)? */
export function isDirectory(path: string): boolean {
  if (!existsSync(path)) throw new YunError('YUN_NOT_FOUND', `${path} does not exist`, { hint: 'Check the path of the archive or directory.' });
  return statSync(path).isDirectory();
}
