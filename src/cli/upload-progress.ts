import { formatSize } from '../util/size.js';

/** A one-line progress meter on a terminal (stderr); silent when piped. */
export function progressMeter(label: string, total?: number): { update(n: number): void; done(text?: string): void } {
  const tty = Boolean(process.stderr.isTTY);
  let last = 0;
  return {
    update(n) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      const pct = total ? ` ${Math.min(100, Math.floor((n / total) * 100))}%` : '';
      process.stderr.write(`\r${label}: ${formatSize(n)}${total ? ` of ${formatSize(total)}` : ''}${pct}   `);
    },
    done(text) {
      if (tty) process.stderr.write(`\r${label}: ${text ?? 'done'}${' '.repeat(20)}\n`);
    },
  };
}
