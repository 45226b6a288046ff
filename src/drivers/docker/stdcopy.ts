/**
 * Docker's multiplexed stream format ("stdcopy"), used by the logs and exec APIs of a container
 * without a terminal: frames of an 8-byte header [stream, 0, 0, 0, size (uint32 BE)] then `size`
 * bytes. Stream 1 is stdout, 2 is stderr (0, stdin, is treated as stdout).
 *
 * Frame boundaries matter for logs: with `timestamps=1` every frame is one log message prefixed with
 * its timestamp, which is how the log pump knows where to resume.
 */
export type StdStream = 'stdout' | 'stderr';

/** A push parser: feed it chunks, it calls `onFrame` once per complete frame. */
export class StdDemuxer {
  private buf: Buffer = Buffer.alloc(0);
  /** Set when the data turned out not to be multiplexed (a terminal): everything is stdout from then on. */
  private raw = false;

  constructor(private readonly onFrame: (stream: StdStream, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (this.raw) {
      if (chunk.length > 0) this.onFrame('stdout', chunk);
      return;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length < 8) return;
      const type = this.buf[0]!;
      if (type > 2 || this.buf[1] !== 0 || this.buf[2] !== 0 || this.buf[3] !== 0) {
        this.raw = true;
        const rest = this.buf;
        this.buf = Buffer.alloc(0);
        this.onFrame('stdout', rest);
        return;
      }
      const size = this.buf.readUInt32BE(4);
      if (this.buf.length < 8 + size) return;
      const payload = this.buf.subarray(8, 8 + size);
      this.buf = this.buf.subarray(8 + size);
      this.onFrame(type === 2 ? 'stderr' : 'stdout', payload);
    }
  }

  /** Bytes of an incomplete frame left at the end (normally none). */
  get pending(): number {
    return this.buf.length;
  }
}
