// Test helpers for the data plane tests (proxy.test.ts, tunnel.test.ts): small TCP backends on
// loopback addresses, a closed port, a black hole (a listener whose accept queue is full, so SYNs
// are dropped and connects hang, as with a firewalled or unreachable host), and a client that
// reports what happened and how fast. Everything made here is closed by the returned handles.
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';

export interface TestServer {
  host: string;
  port: number;
  /** Connections accepted so far. */
  accepted: () => number;
  close: () => Promise<void>;
}

/**
 * A backend that says who it is first (`<id>\n`), then echoes everything back; a FIN from the
 * client is answered with a FIN once the echo is out (half-close).
 */
export async function tagServer(host: string, id: string): Promise<TestServer> {
  return serve(host, (s) => {
    s.write(`${id}\n`);
    s.pipe(s);
  });
}

/** Starts a TCP server on host:port (0: any) with `onConn` for every connection; close() also ends open connections. */
export async function serve(host: string, onConn: (s: net.Socket) => void, port = 0): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A port on `host` where nothing listens (connections are refused). */
export async function closedPort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen({ host, port: 0 }, () => resolve()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface BlackHole {
  host: string;
  port: number;
  close: () => Promise<void>;
}

/**
 * A listener that never accepts: a child process listens with a backlog of 1 and blocks its event
 * loop; two connections fill the accept queue, after which the kernel drops further SYNs, so a
 * connect hangs (retransmitting its SYN) exactly like one to a blackholed host. Loopback only.
 */
export async function blackHole(host: string): Promise<BlackHole> {
  const code = `const s=require('net').createServer();s.listen({host:${JSON.stringify(host)},port:0,backlog:1},()=>{process.stdout.write(s.address().port+'\\n');setTimeout(()=>{Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000);process.exit(0)},20)})`;
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  await new Promise((r) => setTimeout(r, 100)); // let the child block
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 2; i++) {
    const s = net.connect({ host, port });
    s.on('error', () => undefined);
    fillers.push(s);
    await new Promise<void>((resolve) => {
      s.once('connect', () => resolve());
      setTimeout(resolve, 300);
    });
  }
  // Check it holds: a further connect must not complete.
  const probe = net.connect({ host, port });
  probe.on('error', () => undefined);
  const connected = await new Promise<boolean>((resolve) => {
    probe.once('connect', () => resolve(true));
    setTimeout(() => resolve(false), 150);
  });
  probe.destroy();
  if (connected) throw new Error('black hole does not hold: the kernel completed a connect beyond the full accept queue');
  return {
    host,
    port,
    close: async () => {
      for (const s of fillers) s.destroy();
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export interface Outcome {
  /** The backend's tag line, when one came. */
  tag?: string;
  /** 'ok' (tag received), or how the connection ended without one. */
  result: 'ok' | 'reset' | 'closed' | 'error' | 'timeout';
  code?: string;
  ms: number;
}

/** Connect to host:port, wait for a tag line (or the end), then close. Never waits more than `limitMs`. */
export function probeTag(host: string, port: number, limitMs = 3000): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    let done = false;
    const finish = (o: Omit<Outcome, 'ms'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ ...o, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish({ result: 'timeout' }), limitMs);
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish({ result: 'ok', tag: buf.slice(0, nl) });
    });
    s.on('error', (err: NodeJS.ErrnoException) => finish({ result: err.code === 'ECONNRESET' ? 'reset' : 'error', code: err.code }));
    s.on('end', () => finish({ result: 'closed' }));
    s.on('close', () => finish({ result: 'closed' }));
  });
}

/** Open a connection and resolve once the backend's tag line arrived; the socket stays open. */
export function openTagged(host: string, port: number): Promise<{ socket: net.Socket; tag: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      s.off('error', reject);
      s.pause();
      if (nl + 1 < buf.length) s.unshift(Buffer.from(buf.slice(nl + 1), 'latin1'));
      resolve({ socket: s, tag: buf.slice(0, nl) });
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

/** Write `data` and read back the same number of bytes (an echo round trip). */
export function echoRoundTrip(s: net.Socket, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= data.length) {
        s.off('data', onData);
        s.off('error', reject);
        s.pause();
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.resume();
    s.write(data);
  });
}

/** A deterministic pseudo-random stream of `size` bytes in `chunk`-sized pieces, and its hash. */
export function* pseudoRandom(size: number, seed: number, chunk = 256 * 1024): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let off = 0; off < size; off += chunk) {
    const n = Math.min(chunk, size - off);
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      if (i + 4 <= n) b.writeUInt32LE(x, i);
      else for (let j = i; j < n; j++) b[j] = (x >>> (8 * (j - i))) & 0xff;
    }
    yield b;
  }
}

export function hashOf(size: number, seed: number): string {
  const h = createHash('sha256');
  for (const b of pseudoRandom(size, seed)) h.update(b);
  return h.digest('hex');
}

/** Write a generator's buffers to `s` honouring backpressure, then end(). */
export async function writeAll(s: net.Socket, gen: Iterable<Buffer>): Promise<void> {
  for (const b of gen) {
    if (!s.write(b)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          s.off('close', onClose);
          resolve();
        };
        const onClose = () => {
          s.off('drain', onDrain);
          reject(new Error('socket closed while writing'));
        };
        s.once('drain', onDrain);
        s.once('close', onClose);
      });
    }
  }
  s.end();
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
