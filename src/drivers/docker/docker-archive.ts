/**
 * Loading a `docker save` archive into an engine under a name of our choosing.
 *
 * `docker load` tags an image with the archive's `manifest.json` RepoTags, so loading the image
 * store's `busybox:latest` would silently move the engine's own `busybox:latest` tag (an operator's
 * image of the same name). This stream rewrites `manifest.json` on the way through so the only name
 * the engine gets is yunstack's digest tag, and records the image's config digest (the engine's image
 * id) so the driver can check the engine loaded exactly that image. Every other entry passes through
 * byte for byte; the archive is never written again to disk.
 */
import { Transform, type TransformCallback } from 'node:stream';

const BLOCK = 512;

export interface ArchiveFacts {
  /** `sha256:…` of the image config named by manifest.json (= the engine's image id after the load). */
  configDigest?: string;
  /** The RepoTags the archive came with (replaced). */
  originalTags?: string[];
}

interface Held {
  chunks: Buffer[];
  path?: string;
  size?: number;
}

function parseOctalOrBase256(field: Buffer): number {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian, the top bit of the first byte marks it.
    let n = 0;
    for (let i = 0; i < field.length; i++) n = n * 256 + (i === 0 ? field[i]! & 0x7f : field[i]!);
    return n;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/g, '').replace(/^[\0 ]+/g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new Error(`bad number field ${JSON.stringify(text)} in a tar header`);
  return parseInt(text, 8);
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString('utf8');
}

function checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum;
}

/** PAX extended header records: `"%d %s=%s\n"`. */
function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp === -1) break;
    const len = Number(data.subarray(pos, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0) break;
    const rec = data.subarray(sp + 1, pos + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

const pad = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/** Where an image config lives in a docker save archive: `<hex>.json` or `blobs/sha256/<hex>`. */
export function configDigestOf(configPath: string): string | undefined {
  const m = /(?:^|\/)([0-9a-f]{64})(?:\.json)?$/.exec(configPath);
  return m ? `sha256:${m[1]}` : undefined;
}

/**
 * A transform from a `docker save` tar to the same tar whose manifest.json names the image `tag`
 * only. Fails the stream when the archive has no manifest.json or it is not a docker save manifest.
 */
export class RetagDockerArchive extends Transform {
  readonly facts: ArchiveFacts = {};
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of entry data (plus padding) still to pass through unchanged. */
  private passthrough = 0;
  /** Collecting manifest.json: its header and how much data is still missing. */
  private manifest?: { header: Buffer; size: number; chunks: Buffer[]; got: number };
  private held: Held | undefined;
  /** Collecting a metadata entry (pax / GNU long name) into `held`. */
  private metaLeft = 0;
  private metaKind = '';
  private metaData: Buffer[] = [];
  private ended = false;

  constructor(private readonly tag: string) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.drain();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.passthrough > 0 || this.manifest || this.metaLeft > 0 || (!this.ended && this.buf.length > 0)) {
      return cb(new Error('the image archive is truncated (it ends inside a tar entry)'));
    }
    if (this.buf.length > 0) this.push(this.buf);
    if (!this.facts.configDigest) return cb(new Error('the image archive has no manifest.json naming an image config: it is not a `docker save` archive'));
    cb();
  }

  private drain(): void {
    for (;;) {
      if (this.ended) {
        if (this.buf.length > 0) this.push(this.buf);
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.passthrough > 0) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.passthrough, this.buf.length);
        this.push(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.passthrough -= n;
        continue;
      }
      if (this.metaLeft > 0) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.metaLeft, this.buf.length);
        const part = this.buf.subarray(0, n);
        this.held!.chunks.push(part);
        this.metaData.push(part);
        this.buf = this.buf.subarray(n);
        this.metaLeft -= n;
        if (this.metaLeft === 0) this.endMeta();
        continue;
      }
      if (this.manifest) {
        const m = this.manifest;
        const want = m.size + pad(m.size) - m.got;
        if (want > 0) {
          if (this.buf.length === 0) return;
          const n = Math.min(want, this.buf.length);
          m.chunks.push(this.buf.subarray(0, n));
          m.got += n;
          this.buf = this.buf.subarray(n);
          continue;
        }
        this.emitManifest(m);
        this.manifest = undefined;
        continue;
      }
      if (this.buf.length < BLOCK) return;
      const header = Buffer.from(this.buf.subarray(0, BLOCK));
      this.buf = this.buf.subarray(BLOCK);
      if (header.every((b) => b === 0)) {
        // End of archive: the rest (a second zero block, padding) passes through.
        this.releaseHeld();
        this.push(header);
        this.ended = true;
        continue;
      }
      const stored = parseOctalOrBase256(header.subarray(148, 156));
      if (stored !== checksum(header)) throw new Error('the image archive is not a valid tar file (bad header checksum)');
      const type = String.fromCharCode(header[156]!);
      const size = parseOctalOrBase256(header.subarray(124, 136));
      if (type === 'x' || type === 'L' || type === 'K' || type === 'g') {
        this.held ??= { chunks: [] };
        this.held.chunks.push(header);
        this.metaKind = type;
        this.metaData = [];
        this.metaLeft = size + pad(size);
        if (this.metaLeft === 0) this.endMeta();
        continue;
      }
      const ustar = header.subarray(257, 262).toString('latin1') === 'ustar';
      const prefix = ustar ? cString(header.subarray(345, 500)) : '';
      let name = cString(header.subarray(0, 100));
      if (prefix) name = `${prefix}/${name}`;
      if (this.held?.path !== undefined) name = this.held.path;
      const realSize = this.held?.size ?? size;
      const normalized = name.replace(/^(\.\/)+/, '');
      if (normalized === 'manifest.json' && (type === '0' || type === '\0')) {
        this.held = undefined; // a fresh plain header replaces any pax/long-name header
        this.manifest = { header, size: realSize, chunks: [], got: 0 };
        continue;
      }
      this.releaseHeld();
      this.push(header);
      this.passthrough = realSize + pad(realSize);
    }
  }

  private endMeta(): void {
    const data = Buffer.concat(this.metaData);
    const held = this.held!;
    if (this.metaKind === 'x') {
      const rec = parsePax(data);
      if (rec.path !== undefined) held.path = rec.path;
      if (rec.size !== undefined) held.size = Number(rec.size);
    } else if (this.metaKind === 'L') {
      held.path = cString(data);
    }
    this.metaData = [];
  }

  private releaseHeld(): void {
    if (!this.held) return;
    for (const c of this.held.chunks) this.push(c);
    this.held = undefined;
  }

  private emitManifest(m: { header: Buffer; size: number; chunks: Buffer[] }): void {
    const text = Buffer.concat(m.chunks).subarray(0, m.size).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`the image archive's manifest.json is not JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || typeof (parsed[0] as { Config?: unknown }).Config !== 'string') {
      throw new Error("the image archive's manifest.json does not describe an image (expected [{Config, RepoTags, Layers}])");
    }
    const entries = parsed as Array<{ Config: string; RepoTags?: string[] | null }>;
    const first = entries[0]!;
    const digest = configDigestOf(first.Config);
    if (!digest) throw new Error(`the image archive's manifest.json names its config as ${JSON.stringify(first.Config)}, which is not a sha256 digest`);
    this.facts.configDigest = digest;
    this.facts.originalTags = first.RepoTags ?? [];
    entries.forEach((e, i) => (e.RepoTags = i === 0 ? [this.tag] : null));
    const body = Buffer.from(JSON.stringify(entries), 'utf8');
    const h = Buffer.from(m.header);
    h.fill(0, 0, 100);
    h.write('manifest.json', 0, 'utf8');
    h.fill(0, 345, 500);
    h.fill(0, 124, 136);
    h.write(body.length.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    h[156] = '0'.charCodeAt(0);
    h.fill(0x20, 148, 156);
    h.write(checksum(h).toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    this.push(h);
    this.push(body);
    this.push(Buffer.alloc(pad(body.length)));
  }
}
