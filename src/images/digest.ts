/** sha256 digests: parsing, hashing while streaming, and the errors a mismatch raises. */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { YunError } from '../errors/errors.js';
import { DIGEST_RE } from './oci.js';

/** `sha256:<hex>` → `<hex>`; anything else (other algorithms, bad hex) is a validation error. */
export function digestHex(digest: string, what = 'digest'): string {
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    throw new YunError('YUN_VALIDATION_FAILED', `${what} "${String(digest)}" is not a sha256 digest (sha256: followed by 64 lowercase hex digits)`, {
      hint: 'Use the digest exactly as `yun image inspect` shows it; only sha256 is supported.',
      extra: { field: 'digest' },
    });
  }
  return digest.slice(7);
}

export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A pass-through stream that hashes and counts what flows through it, optionally capped at `limit` bytes. */
export class HashingStream extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly opts: { limit?: { size: number; onExceed: (bytes: number) => Error }; onBytes?: (bytes: number) => void } = {}) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.opts.limit && this.bytes > this.opts.limit.size) return cb(this.opts.limit.onExceed(this.bytes));
    this.hash.update(chunk);
    this.opts.onBytes?.(this.bytes);
    cb(null, chunk);
  }

  /** The digest of everything that passed; only valid once the stream has ended. */
  digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`;
  }
}

/** Hash a file. */
export async function sha256File(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** A digest we computed differs from the one that was promised: the data is corrupt or was tampered with. */
export function digestMismatch(what: string, expected: string, actual: string, extra: Record<string, unknown> = {}): YunError {
  return new YunError('YUN_DIGEST_MISMATCH', `${what}: expected ${expected} but the content has digest ${actual}`, {
    extra: { expected, actual, ...extra },
  });
}

export function sizeMismatch(what: string, expected: number, actual: number, extra: Record<string, unknown> = {}): YunError {
  return new YunError('YUN_DIGEST_MISMATCH', `${what}: expected ${expected} bytes but the content has ${actual}${actual > expected ? ' or more' : ''}`, {
    extra: { expected_size: expected, actual_size: actual, ...extra },
  });
}

/** First bytes of a file or buffer: is it gzip (1f 8b) or zstd (28 b5 2f fd)? */
export function compressionOf(head: Buffer): 'gzip' | 'zstd' | 'none' {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}
