/**
 * Copies a container's logs from the engine into the task's `stdout.log` and `stderr.log`, where
 * the agent reads them (the same files every driver writes).
 *
 * The logs are read with `timestamps=1`: every frame is one log message with the engine's
 * nanosecond timestamp. After each batch is appended, `docker-logs.json` records how far the files
 * go: the last timestamp written, how many messages carried exactly that timestamp, and the size of
 * each file. A pump that starts again (after an agent restart) first cuts the files back to the
 * recorded sizes (dropping a batch that was appended but not recorded when the agent died), then asks
 * the engine for messages `since` that timestamp and skips the ones already written: no duplicates,
 * nothing lost (as long as the engine still has them: json-file keeps a bounded amount).
 */
import { open, readFile, rename, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { StdDemuxer, type StdStream } from './stdcopy.js';

export const LOG_STATE_FILE = 'docker-logs.json';

interface LogState {
  /** Nanoseconds since the epoch of the last message written ("0": none yet). */
  since_ns: string;
  /** How many messages with exactly that timestamp have been written. */
  at_since: number;
  stdout_bytes: number;
  stderr_bytes: number;
}

const TS_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/** RFC 3339 with up to nanoseconds → nanoseconds since the epoch (undefined when not a timestamp). */
export function parseTimestampNs(ts: string): bigint | undefined {
  const m = TS_RE.exec(ts);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** The engine's `since` parameter: `seconds.nanoseconds`. */
export function sinceParam(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  return `${s}.${frac.toString().padStart(9, '0')}`;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export class LogPump {
  /** Resolves when the engine's stream ended and everything received is in the files. */
  readonly done: Promise<void>;
  /** Set when reading the logs failed (the pump then ends). */
  error?: Error;
  private abort = new AbortController();
  private pending: Record<StdStream, Buffer[]> = { stdout: [], stderr: [] };
  private flushing: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private state!: LogState;
  private skip = 0;
  private since = 0n;

  constructor(
    private readonly docker: Docker,
    private readonly containerId: string,
    private readonly dir: string,
    readonly follow: boolean,
  ) {
    this.done = this.run();
  }

  /** Stop reading (what was received is still written); resolves when done. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  private file(s: StdStream): string {
    return join(this.dir, `${s}.log`);
  }

  private async run(): Promise<void> {
    try {
      await this.loadState();
      const opts = {
        follow: this.follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        ...(this.since > 0n ? { since: sinceParam(this.since) } : {}),
        abortSignal: this.abort.signal,
      };
      const demux = new StdDemuxer((s, payload) => this.onFrame(s, payload));
      const container = this.docker.getContainer(this.containerId);
      // follow=false answers with the whole body as a Buffer; follow=true with a stream.
      const res = (await container.logs(opts as Docker.ContainerLogsOptions & { follow: true })) as unknown as NodeJS.ReadableStream | Buffer;
      if (Buffer.isBuffer(res)) {
        demux.push(res);
      } else {
        await new Promise<void>((resolve) => {
          const onAbort = () => {
            (res as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
            resolve();
          };
          this.abort.signal.addEventListener('abort', onAbort, { once: true });
          if (this.abort.signal.aborted) onAbort(); // closed while the engine was still answering
          res.on('data', (chunk: Buffer) => demux.push(chunk));
          res.on('end', resolve);
          res.on('close', resolve);
          res.on('error', (err: Error) => {
            if (!this.abort.signal.aborted) this.error = err;
            resolve();
          });
        });
      }
    } catch (err) {
      if (!this.abort.signal.aborted) this.error = err as Error;
    } finally {
      this.scheduleFlush();
      await this.flushing;
    }
  }

  private async loadState(): Promise<void> {
    const stdoutSize = await sizeOf(this.file('stdout'));
    const stderrSize = await sizeOf(this.file('stderr'));
    let saved: LogState | undefined;
    try {
      saved = JSON.parse(await readFile(join(this.dir, LOG_STATE_FILE), 'utf8')) as LogState;
      if (typeof saved.since_ns !== 'string' || !/^\d+$/.test(saved.since_ns)) saved = undefined;
    } catch {
      saved = undefined;
    }
    if (!saved) {
      this.state = { since_ns: '0', at_since: 0, stdout_bytes: stdoutSize, stderr_bytes: stderrSize };
      return;
    }
    // Cut back a batch that was appended but not recorded (the agent died in between). A file
    // smaller than recorded was rotated or truncated by someone else: continue from its end.
    for (const s of ['stdout', 'stderr'] as const) {
      const key = s === 'stdout' ? 'stdout_bytes' : 'stderr_bytes';
      const size = s === 'stdout' ? stdoutSize : stderrSize;
      if (size > saved[key]) await truncate(this.file(s), saved[key]);
      else saved[key] = size;
    }
    this.state = saved;
    this.since = BigInt(saved.since_ns);
    this.skip = saved.at_since;
  }

  private onFrame(s: StdStream, payload: Buffer): void {
    const sp = payload.indexOf(0x20);
    const ns = sp > 0 ? parseTimestampNs(payload.subarray(0, sp).toString('latin1')) : undefined;
    if (ns === undefined) {
      // Not timestamped (should not happen with timestamps=1): keep the bytes.
      this.pending[s].push(Buffer.from(payload));
      this.scheduleFlush();
      return;
    }
    if (ns < this.since) return;
    const cur = BigInt(this.state.since_ns);
    if (ns === this.since && this.skip > 0) {
      this.skip--;
      return;
    }
    if (ns === cur) this.state.at_since++;
    else {
      this.state.since_ns = ns.toString();
      this.state.at_since = 1;
    }
    this.pending[s].push(Buffer.from(payload.subarray(sp + 1)));
    this.scheduleFlush();
  }

  /** Batches: while one flush writes, frames accumulate for the next. */
  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.flushing = this.flushing.then(async () => {
      this.flushQueued = false;
      await this.flush();
    });
  }

  private async flush(): Promise<void> {
    const out = Buffer.concat(this.pending.stdout);
    const err = Buffer.concat(this.pending.stderr);
    this.pending = { stdout: [], stderr: [] };
    const snapshot = { ...this.state };
    try {
      if (out.length > 0) await appendFile(this.file('stdout'), out);
      if (err.length > 0) await appendFile(this.file('stderr'), err);
      this.state.stdout_bytes += out.length;
      this.state.stderr_bytes += err.length;
      snapshot.stdout_bytes = this.state.stdout_bytes;
      snapshot.stderr_bytes = this.state.stderr_bytes;
      const path = join(this.dir, LOG_STATE_FILE);
      await writeFile(`${path}.tmp`, JSON.stringify(snapshot) + '\n');
      await rename(`${path}.tmp`, path);
    } catch (e) {
      // The task dir is gone (destroyed) or unwritable: nothing more can be kept.
      this.error ??= e as Error;
    }
  }
}

/** Make sure both log files exist (the agent may look before the first line). */
export async function touchLogs(dir: string): Promise<void> {
  for (const s of ['stdout', 'stderr']) {
    const fh = await open(join(dir, `${s}.log`), 'a');
    await fh.close();
  }
}
