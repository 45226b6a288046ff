import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger, type Level } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** One readable line per record for a terminal: `13:02:11 INFO  msg key=value`. */
export function humanStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        try {
          const r = JSON.parse(line) as Record<string, unknown>;
          const { time, level, msg, pid: _pid, hostname: _h, err, ...rest } = r;
          const t = new Date(time as number).toISOString().slice(11, 19);
          const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
          const e = err && typeof err === 'object' ? `\n${(err as { stack?: string }).stack ?? JSON.stringify(err)}` : '';
          out.write(`${t} ${(LEVEL_NAMES[level as number] ?? String(level)).padEnd(5)} ${msg ?? ''}${kv ? ' ' + kv : ''}${e}\n`);
        } catch {
          out.write(line + '\n');
        }
      }
      cb();
    },
  });
}

/**
 * Structured logs (pino): JSON lines to DATA_DIR/logs/yun.log, and to stderr (JSON when piped,
 * one readable line per record on a terminal).
 */
export function createLogger(opts: { level: Level; dataDir?: string; name?: string; stderr?: boolean }): Logger {
  const streams: pino.StreamEntry[] = [];
  if (opts.stderr !== false) {
    streams.push({ level: opts.level, stream: process.stderr.isTTY ? humanStream(process.stderr) : process.stderr });
  }
  if (opts.dataDir) {
    const dir = join(opts.dataDir, 'logs');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    streams.push({ level: opts.level, stream: createWriteStream(join(dir, `${opts.name ?? 'yun'}.log`), { flags: 'a', mode: 0o600 }) });
  }
  return pino({ level: opts.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.epochTime }, pino.multistream(streams));
}
