// Node-to-node traffic of the portable data plane: ONE authenticated TCP port per node (mutual TLS
// with the cluster CA), no kernel module, no VXLAN. A proxy on node A that picked a backend on node
// B opens a TLS connection to B's tunnel port and asks for the backend's address; B checks who is
// asking and whether that address is one of its own task backends, connects, answers, and from then
// on the TLS connection carries the proxied bytes.
//
// Wire protocol (version 1), after the TLS 1.3 handshake (both sides present a node certificate
// issued by the cluster CA; the client checks the server's CN is the node id it meant to reach, the
// server checks the client's CN with `allow`):
//
//   client → server   one JSON line, at most 1024 bytes:  {"v":1,"host":"10.0.0.5","port":80,"timeout_ms":400}\n
//   server → client   "OK\n"                               then raw bytes both ways (half-close passed on)
//                     "ERR <CODE> <reason>\n"              and the connection is closed
//
// CODE is FORBIDDEN (peer or target not allowed), BADREQ (malformed header), or the errno of the
// connect to the target (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, …), so a refused backend fails the
// dial in one round trip and the proxy moves on to the next backend. The client writes the header
// right after starting the handshake (TLS 1.3 sends it with the client's Finished), so a dial costs
// the TCP and TLS handshakes plus one round trip to the target.
//
// One TLS connection per proxied connection: simple, no multiplexing or head-of-line blocking to get
// wrong; the cost is a TLS handshake (about 1 ms of CPU with P-256) per new connection, which
// keep-alive clients pay once. Multiplexing or session resumption are possible later.
import net from 'node:net';
import tls from 'node:tls';
import { DialError, KEEPALIVE_MS, directDial, joinSockets, type Backend, type Dialer, type ProxyLog } from './proxy.js';

export interface TunnelTarget {
  host: string;
  port: number;
}

export interface TunnelServerOptions {
  /** This node's certificate (CN = node id) and key, PEM. */
  cert: string;
  key: string;
  /** The cluster CA, PEM: only its node certificates are accepted. */
  ca: string;
  /** Whether the peer node (the CN of its certificate) may use this tunnel. */
  allow: (peerNodeId: string) => boolean;
  /** Whether `req` may be targeted: only task backends of this node. */
  resolveTarget: (req: TunnelTarget) => boolean;
  /** Upper bound for the target connect timeout a client asks for (default 5000 ms). */
  maxConnectTimeoutMs?: number;
  /** TLS handshake plus header, at most (default 5000 ms). */
  handshakeTimeoutMs?: number;
  log?: ProxyLog;
}

export interface TunnelStats {
  accepted: number;
  active: number;
  refused: number;
  tls_errors: number;
}

export const TUNNEL_PROTOCOL_VERSION = 1;
const MAX_HEADER = 1024;
const MAX_STATUS = 1024;

function peerNodeId(s: tls.TLSSocket): string | undefined {
  const cn = s.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
  return Array.isArray(cn) ? undefined : cn || undefined;
}

function reasonLine(code: string, reason: string): string {
  return `ERR ${code} ${reason.replace(/[\r\n]+/g, ' ')}\n`;
}

export class TunnelServer {
  private readonly opts: TunnelServerOptions;
  private server?: tls.Server;
  /** Tunnel connections (the raw TCP sockets) and the target connections made for them. */
  private readonly sockets = new Set<net.Socket>();
  private readonly targets = new Set<net.Socket>();
  private readonly counters = { accepted: 0, refused: 0, tls_errors: 0 };

  constructor(opts: TunnelServerOptions) {
    this.opts = opts;
  }

  async listen(address: string, port: number): Promise<number> {
    if (this.server) throw new Error('tunnel server already listening');
    const handshakeTimeout = this.opts.handshakeTimeoutMs ?? 5000;
    const server = tls.createServer({
      cert: this.opts.cert,
      key: this.opts.key,
      ca: this.opts.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_MS,
      handshakeTimeout,
    });
    this.server = server;
    // Raw sockets too, so close() also ends connections still in their handshake.
    server.on('connection', (raw: net.Socket) => {
      this.sockets.add(raw);
      raw.once('close', () => this.sockets.delete(raw));
    });
    server.on('secureConnection', (s: tls.TLSSocket) => this.handle(s, handshakeTimeout));
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      this.counters.tls_errors++;
      this.opts.log?.debug?.({ err: err.message, peer: s.remoteAddress }, 'tunnel: TLS handshake refused');
      s.destroy();
    });
    server.on('error', (err) => this.opts.log?.warn({ err }, 'tunnel listener error'));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: address, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = undefined;
      throw err;
    }
    return (server.address() as net.AddressInfo).port;
  }

  stats(): TunnelStats {
    return { ...this.counters, active: this.sockets.size };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    for (const s of this.targets) s.destroy();
    await closed;
  }

  private handle(s: tls.TLSSocket, headerTimeoutMs: number): void {
    this.counters.accepted++;
    const refuse = (code: string, reason: string) => {
      this.counters.refused++;
      this.opts.log?.debug?.({ code, reason, peer: s.remoteAddress }, 'tunnel: request refused');
      s.end(reasonLine(code, reason));
      // Do not wait for the peer: the answer is out, the connection is done.
      setTimeout(() => s.destroy(), 1000).unref();
    };
    const onError = () => s.destroy();
    s.on('error', onError);
    const peer = peerNodeId(s);
    if (!s.authorized || !peer) return refuse('FORBIDDEN', 'a node certificate of this cluster is required');
    let allowed = false;
    try {
      allowed = this.opts.allow(peer);
    } catch {
      allowed = false;
    }
    if (!allowed) return refuse('FORBIDDEN', `node ${peer} may not use this tunnel`);

    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => refuse('BADREQ', `no request header within ${headerTimeoutMs} ms`), headerTimeoutMs);
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > MAX_HEADER) {
          clearTimeout(timer);
          s.off('data', onData);
          refuse('BADREQ', 'request header too long');
        }
        return;
      }
      clearTimeout(timer);
      s.off('data', onData);
      s.pause();
      const rest = buf.subarray(nl + 1);
      let req: { v?: unknown; host?: unknown; port?: unknown; timeout_ms?: unknown };
      try {
        req = JSON.parse(buf.subarray(0, nl).toString('utf8')) as typeof req;
      } catch {
        return refuse('BADREQ', 'request header is not JSON');
      }
      if (req.v !== TUNNEL_PROTOCOL_VERSION) return refuse('BADREQ', `unsupported tunnel protocol version ${String(req.v)} (this node speaks ${TUNNEL_PROTOCOL_VERSION})`);
      if (typeof req.host !== 'string' || net.isIP(req.host) === 0 || typeof req.port !== 'number' || !Number.isInteger(req.port) || req.port < 1 || req.port > 65535) {
        return refuse('BADREQ', 'request header needs an IP address "host" and a "port" in 1-65535');
      }
      const target: TunnelTarget = { host: req.host, port: req.port };
      let ok = false;
      try {
        ok = this.opts.resolveTarget(target);
      } catch {
        ok = false;
      }
      if (!ok) return refuse('FORBIDDEN', `${target.host}:${target.port} is not a backend on this node`);
      const max = this.opts.maxConnectTimeoutMs ?? 5000;
      const asked = typeof req.timeout_ms === 'number' && req.timeout_ms > 0 ? req.timeout_ms : max;
      this.connectTarget(s, target, Math.min(asked, max), rest, refuse, onError);
    };
    s.on('data', onData);
    s.once('close', () => clearTimeout(timer));
  }

  private connectTarget(s: tls.TLSSocket, target: TunnelTarget, timeoutMs: number, rest: Buffer, refuse: (code: string, reason: string) => void, onError: () => void): void {
    const b: Backend = { id: '', host: target.host, port: target.port, node_id: '', local: true };
    directDial(b, timeoutMs).then(
      (up) => {
        if (s.destroyed) {
          up.destroy();
          return;
        }
        this.targets.add(up);
        up.once('close', () => this.targets.delete(up));
        s.off('error', onError);
        s.write('OK\n');
        if (rest.length) up.write(rest);
        joinSockets(s, up);
      },
      (err: NodeJS.ErrnoException) => {
        if (!s.destroyed) refuse(err.code ?? 'ECONNECT', `connect to ${target.host}:${target.port}: ${err.message}`);
      },
    );
  }
}

export interface TunnelDialerOptions {
  /** This node's certificate (CN = node id) and key, and the cluster CA, PEM. */
  cert: string;
  key: string;
  ca: string;
  /** Where a node's tunnel listens; undefined when unknown (the dial fails at once). */
  nodeAddress: (nodeId: string) => { host: string; port: number } | undefined;
  /** Default for dials that get no timeout from the caller (500 ms). */
  connectTimeoutMs?: number;
  /** Send local backends through the tunnel too (tests and benchmarks); default: local backends are dialled directly. */
  alwaysTunnel?: boolean;
}

/**
 * A Dialer for the L4 proxy: local backends directly, remote ones through the tunnel port of the
 * backend's node. The returned promise settles within the timeout: with the TLS socket, ready for
 * the proxied bytes, or with a DialError whose code says why (ECONNREFUSED from the far side, …).
 */
export function tunnelDialer(opts: TunnelDialerOptions): Dialer {
  const secureContext = tls.createSecureContext({ cert: opts.cert, key: opts.key, ca: opts.ca, minVersion: 'TLSv1.3' });
  return (b, timeoutMs) => {
    if (b.local && !opts.alwaysTunnel) return directDial(b, timeoutMs);
    return dialTunnel(b, timeoutMs || opts.connectTimeoutMs || 500, secureContext, opts.nodeAddress);
  };
}

function dialTunnel(b: Backend, timeoutMs: number, secureContext: tls.SecureContext, nodeAddress: TunnelDialerOptions['nodeAddress']): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const addr = nodeAddress(b.node_id);
    if (!addr) {
      reject(new DialError(`no tunnel address known for node ${b.node_id}`, 'ENOTUNNEL'));
      return;
    }
    const where = `tunnel to node ${b.node_id} (${addr.host}:${addr.port})`;
    // allowHalfOpen is honoured by tls.connect (passed to the TLSSocket) but missing from its types.
    const s = tls.connect({
      host: addr.host,
      port: addr.port,
      secureContext,
      allowHalfOpen: true,
      minVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) => {
        const cn = cert.subject?.CN as string | string[] | undefined;
        return cn === b.node_id ? undefined : new Error(`${where}: the server's certificate is for ${JSON.stringify(cn)}, not node ${b.node_id}`);
      },
    } as tls.ConnectionOptions & { allowHalfOpen: boolean });
    s.setNoDelay(true);
    s.setKeepAlive(true, KEEPALIVE_MS);
    let settled = false;
    const fail = (err: DialError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new DialError(`${where}: no answer for ${b.host}:${b.port} within ${timeoutMs} ms`, 'ETIMEDOUT')), timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => fail(new DialError(`${where}: ${err.message}`, err.code ?? 'ETUNNEL'));
    const onEnd = () => fail(new DialError(`${where}: closed before answering (was this node's certificate refused?)`, 'ETUNNEL'));
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > MAX_STATUS) fail(new DialError(`${where}: malformed answer`, 'ETUNNEL'));
        return;
      }
      const line = buf.subarray(0, nl).toString('utf8');
      if (line !== 'OK') {
        const m = /^ERR (\S+) ?(.*)$/.exec(line);
        fail(new DialError(`${where}: ${m ? m[2] : `malformed answer ${JSON.stringify(line.slice(0, 100))}`}`, m ? m[1]! : 'ETUNNEL'));
        return;
      }
      settled = true;
      clearTimeout(timer);
      s.off('data', onData);
      s.off('error', onError);
      s.off('end', onEnd);
      s.pause();
      if (nl + 1 < buf.length) s.unshift(buf.subarray(nl + 1));
      resolve(s);
    };
    s.on('error', onError);
    s.on('end', onEnd);
    s.on('data', onData);
    // Sent with the handshake's last flight; the server reads it once it trusts us.
    s.write(JSON.stringify({ v: TUNNEL_PROTOCOL_VERSION, host: b.host, port: b.port, timeout_ms: Math.max(50, Math.floor(timeoutMs * 0.8)) }) + '\n');
  });
}
