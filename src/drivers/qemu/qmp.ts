/**
 * A small client of QEMU's machine protocol (QMP) over its unix socket: the greeting, capability
 * negotiation, then `execute` (answers matched by id) and events. One connection per call site,
 * closed after use: a VM's socket accepts one client at a time, and the agent may restart between
 * two calls.
 */
import net from 'node:net';

export class QmpError extends Error {
  constructor(message: string, readonly klass?: string) {
    super(message);
    this.name = 'QmpError';
  }
}

interface Pending { resolve(v: unknown): void; reject(e: Error): void }

export class Qmp {
  private buf = '';
  private seq = 0;
  private pending = new Map<string, Pending>();
  private events: { event: string; data?: unknown }[] = [];
  private eventWaiters: { name: string; resolve(d: unknown): void }[] = [];
  private closed = false;
  private closeReason = 'the QMP connection closed';

  private constructor(private sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('close', () => this.fail(this.closeReason));
    sock.on('error', (e) => { this.closeReason = `the QMP connection failed: ${e.message}`; });
  }

  /** Connect and negotiate; retries until `timeoutMs` while the socket does not exist yet or refuses. */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
          s.once('error', reject);
        });
        const q = new Qmp(sock);
        try {
          await q.greeting(Math.max(1000, deadline - Date.now()));
          await q.execute('qmp_capabilities');
        } catch (e) {
          // QEMU serves one monitor client at a time: a connection left open would block all others.
          q.close();
          throw e;
        }
        return q;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new QmpError(`could not talk to QEMU on ${path} within ${timeoutMs} ms: ${last}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  private greetingResolve?: () => void;
  private greeted = false;

  private greeting(ms: number): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new QmpError('no QMP greeting')), ms);
      this.greetingResolve = () => { clearTimeout(t); resolve(); };
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (!line) continue;
      let m: Record<string, unknown>;
      try { m = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
      if ('QMP' in m) { this.greeted = true; this.greetingResolve?.(); continue; }
      if (typeof m.event === 'string') {
        const ev = { event: m.event, data: m.data };
        this.events.push(ev);
        for (const w of this.eventWaiters.filter((x) => x.name === ev.event)) w.resolve(ev.data);
        this.eventWaiters = this.eventWaiters.filter((x) => x.name !== ev.event);
        continue;
      }
      const id = String(m.id ?? '');
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      if (m.error) {
        const e = m.error as { class?: string; desc?: string };
        p.reject(new QmpError(`QEMU refused: ${e.desc ?? 'no reason given'}`, e.class));
      } else p.resolve(m.return);
    }
  }

  private fail(why: string): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new QmpError(why));
    this.pending.clear();
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closed) return Promise.reject(new QmpError(this.closeReason));
    const id = `y${++this.seq}`;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => { this.pending.delete(id); reject(new QmpError(`QEMU did not answer ${command} within ${timeoutMs} ms`)); }, timeoutMs);
      this.pending.set(id, { resolve: (v) => { clearTimeout(t); resolve(v as T); }, reject: (e) => { clearTimeout(t); reject(e); } });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** Whether an event came (since connecting). */
  saw(name: string): boolean {
    return this.events.some((e) => e.event === name);
  }

  close(): void {
    this.closed = true;
    this.sock.destroy();
  }
}

/** Connect, run `fn`, close. */
export async function withQmp<T>(path: string, fn: (q: Qmp) => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const q = await Qmp.connect(path, timeoutMs);
  try {
    return await fn(q);
  } finally {
    q.close();
  }
}
