import { closeSync, existsSync, openSync, readSync, statSync, appendFileSync, renameSync, ftruncateSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LogLine } from '../dispatcher/protocol.js';

const RAW_TRUNCATE_AT = 1024 * 1024;
const JSONL_ROTATE_AT = 10 * 1024 * 1024;
const JSONL_KEEP = 2;

/**
 * Collects a task's raw stdout/stderr files (written by the driver) into `log.jsonl`, one
 * timestamped line each, so logs can be tailed, followed and filtered by time. The raw files are
 * truncated once consumed past 1 MiB; log.jsonl rotates at 10 MiB keeping 2 old files.
 */
export class LogCollector {
  private offsets = { stdout: 0, stderr: 0 };
  private partial = { stdout: '', stderr: '' };
  private timer?: NodeJS.Timeout;
  private listeners = new Set<(lines: LogLine[]) => void>();
  private savedOffsets = '';

  constructor(readonly taskId: string, readonly dir: string, private intervalMs = 200) {
    try {
      const st = JSON.parse(readFileSync(join(dir, 'log-offsets.json'), 'utf8')) as { stdout: number; stderr: number };
      this.offsets = st;
    } catch { /* first start */ }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.collect(), this.intervalMs);
    this.timer.unref();
  }

  /** Read what is new now (and stop polling when `final`). */
  collect(final = false): void {
    const lines: LogLine[] = [];
    for (const s of ['stdout', 'stderr'] as const) {
      const p = join(this.dir, `${s}.log`);
      if (!existsSync(p)) continue;
      let fd: number | undefined;
      try {
        fd = openSync(p, 'r+');
        const size = statSync(p).size;
        if (size < this.offsets[s]) this.offsets[s] = 0; // truncated behind our back
        const t = new Date().toISOString();
        while (this.offsets[s] < size) {
          const len = Math.min(256 * 1024, size - this.offsets[s]);
          const buf = Buffer.alloc(len);
          const n = readSync(fd, buf, 0, len, this.offsets[s]);
          if (n <= 0) break;
          this.offsets[s] += n;
          const text = this.partial[s] + buf.subarray(0, n).toString('utf8');
          const parts = text.split('\n');
          this.partial[s] = parts.pop() ?? '';
          for (const l of parts) lines.push({ task_id: this.taskId, t, s, l });
        }
        if (final && this.partial[s]) {
          lines.push({ task_id: this.taskId, t, s, l: this.partial[s] });
          this.partial[s] = '';
        }
        if (this.offsets[s] >= RAW_TRUNCATE_AT && this.offsets[s] === statSync(p).size && !this.partial[s]) {
          ftruncateSync(fd, 0);
          this.offsets[s] = 0;
        }
      } catch {
        /* the file may be gone (task removed) */
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
    if (lines.length) {
      this.append(lines);
      for (const l of this.listeners) l(lines);
    }
    const key = `${this.offsets.stdout}/${this.offsets.stderr}`;
    if (key !== this.savedOffsets) {
      // Remember how far we read, so a restarted agent neither loses nor repeats lines.
      try {
        const tmp = join(this.dir, 'log-offsets.json.tmp');
        writeFileSync(tmp, JSON.stringify(this.offsets));
        renameSync(tmp, join(this.dir, 'log-offsets.json'));
        this.savedOffsets = key;
      } catch { /* the task dir may be gone */ }
    }
    if (final) this.stop();
  }

  private append(lines: LogLine[]): void {
    const p = join(this.dir, 'log.jsonl');
    try {
      if (existsSync(p) && statSync(p).size > JSONL_ROTATE_AT) {
        for (let i = JSONL_KEEP; i >= 1; i--) {
          const from = i === 1 ? p : `${p}.${i - 1}`;
          if (existsSync(from)) renameSync(from, `${p}.${i}`);
        }
      }
      appendFileSync(p, lines.map((l) => JSON.stringify({ t: l.t, s: l.s, l: l.l })).join('\n') + '\n');
    } catch { /* the task dir may be gone */ }
  }

  subscribe(fn: (lines: LogLine[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Lines stored so far (oldest first), filtered by time and cut to the last `tail`. */
  read(opts: { since?: string | null; tail?: number | null }): LogLine[] {
    const p = join(this.dir, 'log.jsonl');
    const files = [...Array.from({ length: JSONL_KEEP }, (_v, i) => `${p}.${JSONL_KEEP - i}`), p];
    const out: LogLine[] = [];
    const since = opts.since ? Date.parse(opts.since) : undefined;
    for (const f of files) {
      if (!existsSync(f)) continue;
      for (const line of readFileSync(f, 'utf8').split('\n')) {
        if (!line) continue;
        try {
          const r = JSON.parse(line) as { t: string; s: 'stdout' | 'stderr'; l: string };
          if (since !== undefined && Date.parse(r.t) < since) continue;
          out.push({ task_id: this.taskId, ...r });
        } catch { /* a torn line after a crash */ }
      }
    }
    return opts.tail != null ? out.slice(Math.max(0, out.length - opts.tail)) : out;
  }
}
