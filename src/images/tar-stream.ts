/**
 * Reading and writing tar streams, one entry at a time.
 *
 * `readTar` runs node-tar's Parser (strict: a corrupt or truncated archive is an error) and hands each
 * entry to an async callback; the next entry is only handled once the previous callback finished, and
 * the input is back-pressured meanwhile. Nothing is written to disk by the parser itself: callers decide
 * what an entry may do (see unpack.ts).
 *
 * `TarWriter` writes POSIX ustar entries (with a pax header for long names or large numbers).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Header, Parser, Pax, type ReadEntry } from 'tar';

export class TarFormatError extends Error {
  constructor(message: string, readonly entry?: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

/**
 * Parse a tar stream: `source` piped through `transforms` (e.g. gunzip, hashing) into the parser.
 * Resolves when every entry was handled and the whole input was read; rejects with the first error
 * (of a stream, the parser, or `onEntry`), after destroying the streams.
 */
export async function readTar(
  source: Readable,
  transforms: NodeJS.ReadWriteStream[],
  onEntry: (entry: ReadEntry) => Promise<void> | void,
): Promise<void> {
  const parser = new Parser({ strict: true });
  let chain: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  let current: ReadEntry | undefined;
  const fail = (e: unknown) => {
    if (failure) return;
    failure = e instanceof Error ? e : new Error(String(e));
    sink.destroy(failure);
    // A handler still reading an entry that will never end is told so (and closes what it opened).
    if (current && current.listenerCount('error') > 0) current.emit('error', failure);
  };
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain
      .then(async () => {
        if (failure) return void entry.resume();
        current = entry;
        await onEntry(entry);
        current = undefined;
        // Whatever the handler did not read is skipped, so the parser can go on.
        entry.resume();
      })
      .catch((e: unknown) => {
        entry.resume();
        fail(e);
      });
  });
  // The parser skips unknown entry types and oversized metadata; skipping would change the result.
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    fail(new TarFormatError(entry.meta
      ? `entry "${entry.path}" has ${entry.size} bytes of extended header, more than is allowed`
      : `entry "${entry.path}" has an unsupported type (${entry.type})`, entry.path));
  });
  parser.on('error', (e: Error & { tarCode?: string; entry?: ReadEntry }) => {
    // The last file's data complete but its padding and the end-of-archive blocks missing (umoci 0.4
    // writes such layers): Go's archive/tar, and so Docker, containerd and umoci, read that as the end.
    const have = /only (\d+) available/.exec(e.message);
    if (e.tarCode === 'TAR_BAD_ARCHIVE' && e.entry && have && e.entry.remain <= Number(have[1])) return;
    fail(new TarFormatError(`not a valid tar archive: ${e.message}`));
  });
  const ended = new Promise<void>((resolve) => parser.on('end', () => resolve()));
  const sink: Writable = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      if (parser.write(chunk)) cb();
      else parser.once('drain', () => cb());
    },
    final(cb) {
      parser.end();
      ended.then(() => chain).then(() => cb(failure ?? null), cb);
    },
  });
  try {
    await pipeline([source, ...transforms, sink] as unknown as [Readable, Writable]);
  } catch (e) {
    throw failure ?? e;
  }
  if (failure) throw failure;
}

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  path: string;
  type?: TarEntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
  /** File content, in memory. */
  data?: Buffer | string;
  /** File content, streamed from this path (its size is taken from the file). */
  file?: string;
}

const TYPE_NAMES = {
  file: 'File', dir: 'Directory', symlink: 'SymbolicLink', link: 'Link', char: 'CharacterDevice', block: 'BlockDevice', fifo: 'FIFO',
} as const;

/** The header block(s) of one entry: a pax header first when a field does not fit ustar. */
export function tarHeader(e: TarEntry, size: number): Buffer {
  const type = e.type ?? 'file';
  const mtime = e.mtime ?? new Date(0);
  const fields = {
    path: type === 'dir' && !e.path.endsWith('/') ? `${e.path}/` : e.path,
    mode: e.mode ?? (type === 'dir' ? 0o755 : 0o644),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    size: type === 'file' ? size : 0,
    mtime,
    type: TYPE_NAMES[type],
    linkpath: e.linkpath ?? '',
    uname: '',
    gname: '',
    devmaj: e.devmajor ?? 0,
    devmin: e.devminor ?? 0,
  };
  const h = new Header(fields);
  const needPax = h.encode();
  if (!needPax) return h.block!;
  const pax = new Pax({ path: fields.path, linkpath: fields.linkpath || undefined, size: fields.size, uid: fields.uid, gid: fields.gid, mtime });
  return Buffer.concat([pax.encode(), h.block!]);
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

/** A whole tar archive in memory (tests and small archives). */
export function tarBuffer(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    if (e.file) throw new Error('tarBuffer: entries with `file` need writeTar');
    parts.push(tarHeader(e, data.length));
    if ((e.type ?? 'file') === 'file') parts.push(data, pad(data.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Write a tar archive to `out`, streaming file contents from disk; ends `out`. */
export async function writeTar(out: Writable, entries: Iterable<TarEntry> | AsyncIterable<TarEntry>): Promise<void> {
  await pipeline(async function* () {
    for await (const e of entries) {
      if ((e.type ?? 'file') === 'file' && e.file) {
        const size = (await stat(e.file)).size;
        yield tarHeader(e, size);
        let n = 0;
        for await (const c of createReadStream(e.file, { highWaterMark: 1 << 20 })) {
          n += (c as Buffer).length;
          if (n > size) throw new Error(`${e.file} grew while it was being archived`);
          yield c as Buffer;
        }
        if (n !== size) throw new Error(`${e.file} shrank while it was being archived`);
        yield pad(size);
      } else {
        const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
        yield tarHeader(e, data.length);
        if ((e.type ?? 'file') === 'file') yield Buffer.concat([data, pad(data.length)]);
      }
    }
    yield Buffer.alloc(1024);
  }, out);
}
