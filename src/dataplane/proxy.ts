// The portable data plane's L4 (TCP) proxy: one listener per VIP:port or published port (routing
// mesh), spreading connections round robin over a backend set that can be replaced at any time.
//
// What it promises (issue 5, story 2): a connection to a dead or unreachable backend fails fast or
// is retried on another backend, and never hangs. Each accepted connection tries the backends in
// round-robin order, each at most once, with a short connect timeout (500 ms by default); a backend
// whose dial failed is "failing" for FAIL_MS and is tried last. When nothing answers the client is
// reset at once (RST), so it sees ECONNRESET instead of waiting on a socket that will never speak.
//
// Bytes are relayed with backpressure (a side whose peer's write buffer is full is paused until
// 'drain') and half-close (a FIN from one side is passed on as end() to the other, the other
// direction keeps flowing); an error on either side destroys both. The hot path is one timer and
// one promise per connection and nothing per chunk beyond a write() and a length check.
import net from 'node:net';
import type tls from 'node:tls';

export interface Backend {
  /** Unique per backend (a task id); `drain` and the stats use it. */
  id: string;
  host: string;
  port: number;
  node_id: string;
  /** The backend runs on this node (dialled directly; remote ones go through the tunnel). */
  local: boolean;
}

/** How to reach a backend: direct TCP, or through the tunnel to its node. Must settle within about `timeoutMs`. */
export type Dialer = (b: Backend, timeoutMs: number) => Promise<net.Socket | tls.TLSSocket>;

/** A pino-compatible logger (a child logger of the agent fits). */
export interface ProxyLog {
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

export interface L4ProxyOptions {
  dial?: Dialer;
  /** Connect timeout per backend attempt (default 500 ms). */
  connectTimeoutMs?: number;
  /** How long a backend that failed to dial is tried last (default 1000 ms). */
  failMs?: number;
  log?: ProxyLog;
  /** Injected clock (ms) for the failing marks. */
  now?: () => number;
}

export interface BackendStats {
  id: string;
  address: string;
  active: number;
  total: number;
  dial_failures: number;
  failing: boolean;
  draining: boolean;
}

export interface ListenerStats {
  key: string;
  address: string;
  port: number;
  backends: number;
  active: number;
  accepted: number;
  /** Connections reset because no backend could be dialled. */
  rejected: number;
  /** Dial attempts that failed and moved on to the next backend. */
  retries: number;
}

export interface ProxyStats {
  listeners: ListenerStats[];
  backends: BackendStats[];
  active: number;
  /** Bytes queued in the proxy's write buffers right now (bounded by backpressure). */
  buffered: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 500;
/**
 * TCP keepalive on every proxied socket: a peer that vanished (a node powered off, a cable pulled)
 * is noticed after this idle time plus about 10 s of probes, instead of never.
 */
export const KEEPALIVE_MS = 30_000;
export const DEFAULT_FAIL_MS = 1000;
/** How much longer than the connect timeout a custom dialer may take before the proxy gives up on it. */
const GUARD_SLACK_MS = 50;

/** An error from a dial attempt, with a node-style code (ECONNREFUSED, ETIMEDOUT, …). */
export class DialError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = 'DialError';
  }
}

/** Direct TCP to the backend, with a connect timeout; the socket is half-open capable, unbuffered (no Nagle) and kept alive. */
export function directDial(b: Backend, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: b.host, port: b.port, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_MS });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new DialError(`connect to ${b.host}:${b.port} timed out after ${timeoutMs} ms`, 'ETIMEDOUT'));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', onError);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
  });
}

/** End a socket abnormally: a TCP reset where possible (the peer learns it was an abort, not a FIN). */
function abort(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy(); // throws for a TLS socket (not a TCP handle)
  } catch {
    s.destroy();
  }
}

/**
 * Relay bytes both ways between two connected sockets until both directions ended, with
 * backpressure and half-close; an error on one side resets the other, an abrupt close closes it.
 * Both sockets should have allowHalfOpen set, so one side's FIN does not end its own writes.
 */
export function joinSockets(a: net.Socket, b: net.Socket, onClose?: () => void): void {
  let closed = 0;
  const relay = (from: net.Socket, to: net.Socket) => {
    let ended = false;
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => from.resume());
    from.on('end', () => {
      ended = true;
      to.end();
    });
    from.on('error', () => abort(to));
    from.on('close', (hadError: boolean) => {
      // A clean close means the peer's FIN was passed on; anything else (an error, a destroy, a
      // reset) must not leave the other side open.
      if ((hadError || !ended) && !to.destroyed) to.destroy();
      if (++closed === 2) onClose?.();
    });
  };
  relay(a, b);
  relay(b, a);
  a.resume();
  b.resume();
}

interface Conn {
  client: net.Socket;
  upstream?: net.Socket;
  backend?: Backend;
  listener: Listener;
}

interface BackendCounters {
  id: string;
  address: string;
  total: number;
  dial_failures: number;
}

interface Listener {
  key: string;
  server: net.Server;
  address: string;
  port: number;
  backends: Backend[];
  rr: number;
  conns: Set<Conn>;
  accepted: number;
  rejected: number;
  retries: number;
  lastWarn: number;
  /** Who may connect (by source address); everyone when absent. */
  allow?: (remoteAddress: string) => boolean;
}

export class L4Proxy {
  private readonly dial: Dialer;
  private readonly connectTimeoutMs: number;
  private readonly failMs: number;
  private readonly log?: ProxyLog;
  private readonly now: () => number;
  private readonly listeners = new Map<string, Listener>();
  /** host:port → failing until (ms). */
  private readonly failing = new Map<string, number>();
  /** backend id → its grace timer (undefined once the grace period is over): out of rotation. */
  private readonly draining = new Map<string, { timer: NodeJS.Timeout | undefined }>();
  private readonly counters = new Map<string, BackendCounters>();

  constructor(opts: L4ProxyOptions = {}) {
    this.dial = opts.dial ?? directDial;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.failMs = opts.failMs ?? DEFAULT_FAIL_MS;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Listen on address:port (VIP:port, or 0.0.0.0:published for the routing mesh) and spread
   * connections over the backends set for `key`. Returns the bound port (port 0 picks one).
   */
  async listen(key: string, address: string, port: number, opts: { allow?: (remoteAddress: string) => boolean } = {}): Promise<number> {
    if (this.listeners.has(key)) throw new Error(`proxy listener "${key}" already exists`);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_MS });
    const l: Listener = { key, server, address, port, backends: [], rr: 0, conns: new Set(), accepted: 0, rejected: 0, retries: 0, lastWarn: 0, ...(opts.allow ? { allow: opts.allow } : {}) };
    this.listeners.set(key, l);
    server.on('connection', (client: net.Socket) => this.accept(l, client));
    server.on('error', (err) => this.log?.warn({ err, key }, 'proxy listener error'));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: address, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.listeners.delete(key);
      throw err;
    }
    l.port = (server.address() as net.AddressInfo).port;
    return l.port;
  }

  /** Replace the backend set of `key` at once; new connections use it, open ones are left alone (see `drain`). */
  setBackends(key: string, backends: Backend[]): void {
    const l = this.listeners.get(key);
    if (!l) throw new Error(`no proxy listener "${key}"`);
    l.backends = backends.slice();
    if (l.rr >= l.backends.length) l.rr = 0;
    for (const b of backends) if (!this.counters.has(b.id)) this.counters.set(b.id, { id: b.id, address: `${b.host}:${b.port}`, total: 0, dial_failures: 0 });
    this.prune();
  }

  /** Forget backends no listener lists any more (counters, drain marks after their grace) and expired failing marks. */
  private prune(): void {
    const listed = new Set<string>();
    for (const l of this.listeners.values()) for (const b of l.backends) listed.add(b.id);
    for (const [id, d] of this.draining) if (!listed.has(id) && d.timer === undefined) this.draining.delete(id);
    for (const id of this.counters.keys()) if (!listed.has(id) && !this.draining.has(id)) this.counters.delete(id);
    const now = this.now();
    for (const [addr, until] of this.failing) if (until <= now) this.failing.delete(addr);
  }

  private closeBackend(backendId: string): void {
    for (const l of this.listeners.values()) for (const c of l.conns) if (c.backend?.id === backendId) this.kill(c);
  }

  /**
   * A backend is going away: from now on it gets no new connection on any listener (even while a
   * backend set still lists it). With mode 'drain' its open connections may finish for up to
   * `graceMs`, then those still open are closed; with mode 'close' (or graceMs 0) they are closed
   * now. The mark is forgotten once no listener lists the backend and its grace period is over.
   */
  drain(backendId: string, graceMs: number, mode: 'drain' | 'close' = 'drain'): void {
    const prev = this.draining.get(backendId);
    if (prev?.timer) clearTimeout(prev.timer);
    const ms = mode === 'close' ? 0 : Math.max(0, graceMs);
    if (ms === 0) {
      this.draining.set(backendId, { timer: undefined });
      this.closeBackend(backendId);
      this.prune();
      return;
    }
    const timer = setTimeout(() => {
      this.draining.set(backendId, { timer: undefined });
      this.closeBackend(backendId);
      this.prune();
    }, ms);
    timer.unref();
    this.draining.set(backendId, { timer });
  }

  /** Stop listening on `key` and close its connections. */
  async stop(key: string): Promise<void> {
    const l = this.listeners.get(key);
    if (!l) return;
    this.listeners.delete(key);
    const closed = new Promise<void>((resolve) => l.server.close(() => resolve()));
    for (const c of l.conns) this.kill(c);
    await closed;
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((k) => this.stop(k)));
    for (const d of this.draining.values()) if (d.timer) clearTimeout(d.timer);
    this.draining.clear();
  }

  stats(): ProxyStats {
    const now = this.now();
    const active = new Map<string, number>();
    let buffered = 0;
    let total = 0;
    const listeners: ListenerStats[] = [];
    for (const l of this.listeners.values()) {
      for (const c of l.conns) {
        buffered += c.client.writableLength + (c.upstream?.writableLength ?? 0);
        if (c.backend) active.set(c.backend.id, (active.get(c.backend.id) ?? 0) + 1);
      }
      total += l.conns.size;
      listeners.push({ key: l.key, address: l.address, port: l.port, backends: l.backends.length, active: l.conns.size, accepted: l.accepted, rejected: l.rejected, retries: l.retries });
    }
    const backends: BackendStats[] = [...this.counters.values()].map((c) => ({
      id: c.id,
      address: c.address,
      active: active.get(c.id) ?? 0,
      total: c.total,
      dial_failures: c.dial_failures,
      failing: (this.failing.get(c.address) ?? 0) > now,
      draining: this.draining.has(c.id),
    }));
    return { listeners, backends, active: total, buffered };
  }

  // ---- the hot path -------------------------------------------------------------------------------

  private accept(l: Listener, client: net.Socket): void {
    if (l.allow && !l.allow(client.remoteAddress ?? '')) {
      // Not for this client (e.g. a task of another overlay network): refused at once.
      l.rejected++;
      client.resetAndDestroy();
      return;
    }
    l.accepted++;
    const conn: Conn = { client, listener: l };
    l.conns.add(conn);
    // Until the upstream is joined: a client that errors or goes away ends the attempt.
    const early = () => {
      if (!conn.upstream) client.destroy();
    };
    client.on('error', early);
    client.once('close', () => {
      if (!conn.upstream) l.conns.delete(conn);
    });
    this.connect(conn, null);
  }

  /** Dial the next backend for `conn`; on failure try the next one, each at most once. */
  private connect(conn: Conn, tried: Set<string> | null): void {
    const l = conn.listener;
    const b = this.pick(l, tried);
    if (!b) {
      l.rejected++;
      const now = this.now();
      if (now - l.lastWarn > 1000) {
        l.lastWarn = now;
        this.log?.warn({ key: l.key, backends: l.backends.length, tried: tried?.size ?? 0 }, 'no backend reachable: connection reset');
      }
      if (!conn.client.destroyed) conn.client.resetAndDestroy();
      return;
    }
    const onUp = (up: net.Socket) => {
      const client = conn.client;
      if (client.destroyed) {
        up.destroy();
        return;
      }
      conn.upstream = up;
      conn.backend = b;
      const c = this.counters.get(b.id);
      if (c) c.total++;
      up.setNoDelay(true);
      joinSockets(client, up, () => l.conns.delete(conn));
    };
    const onFail = (err: NodeJS.ErrnoException) => {
      const addr = `${b.host}:${b.port}`;
      this.failing.set(addr, this.now() + this.failMs);
      const c = this.counters.get(b.id);
      if (c) c.dial_failures++;
      l.retries++;
      this.log?.debug?.({ key: l.key, backend: b.id, address: addr, code: err.code, err: err.message }, 'backend dial failed; trying the next one');
      if (conn.client.destroyed) return;
      const t = tried ?? new Set<string>();
      t.add(b.id);
      this.connect(conn, t);
    };
    if (this.dial === directDial) {
      // The built-in dialer keeps its own timeout: no second timer on the hot path.
      directDial(b, this.connectTimeoutMs).then(onUp, onFail);
      return;
    }
    // A custom dialer (the tunnel, tests) is not trusted to settle: a guard timer makes sure a
    // connection never waits on it for long; a socket that comes too late is closed.
    let settled = false;
    const guard = setTimeout(() => {
      settled = true;
      onFail(new DialError(`dial to ${b.host}:${b.port} (node ${b.node_id}) did not settle within ${this.connectTimeoutMs} ms`, 'ETIMEDOUT'));
    }, this.connectTimeoutMs + GUARD_SLACK_MS);
    let p: Promise<net.Socket>;
    try {
      p = this.dial(b, this.connectTimeoutMs);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (up) => {
        if (settled) {
          up.destroy();
          return;
        }
        settled = true;
        clearTimeout(guard);
        onUp(up);
      },
      (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        clearTimeout(guard);
        onFail(err);
      },
    );
  }

  /** Round robin over the backends: skip draining ones and those tried already; failing ones only when nothing else is left. */
  private pick(l: Listener, tried: Set<string> | null): Backend | undefined {
    const bs = l.backends;
    const n = bs.length;
    if (n === 0) return undefined;
    const checkFailing = this.failing.size > 0;
    const checkDraining = this.draining.size > 0;
    const now = checkFailing ? this.now() : 0;
    let fallback: Backend | undefined;
    for (let i = 0; i < n; i++) {
      const idx = (l.rr + i) % n;
      const b = bs[idx]!;
      if (tried !== null && tried.has(b.id)) continue;
      if (checkDraining && this.draining.has(b.id)) continue;
      if (checkFailing) {
        const addr = `${b.host}:${b.port}`;
        const until = this.failing.get(addr);
        if (until !== undefined) {
          if (until > now) {
            fallback ??= b;
            continue;
          }
          this.failing.delete(addr);
        }
      }
      l.rr = (idx + 1) % n;
      return b;
    }
    if (fallback) l.rr = (bs.indexOf(fallback) + 1) % n;
    return fallback;
  }

  private kill(c: Conn): void {
    c.client.destroy();
    c.upstream?.destroy();
  }
}
