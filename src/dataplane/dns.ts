// Service-discovery DNS server of the data plane (one per node). Answers the names of the services
// visible to whoever asks (scoped by project and network), forwards everything else, raw, to the
// host's upstream resolvers. The hot path (our own names over UDP) parses and encodes the wire
// format by hand, synchronously (no promise, no dns-packet objects); the table is rebuilt per
// setEndpoints in O(services), each service's records derived on first use.
//
// Names (case-insensitive, trailing dot optional; P = project, S = service, zone `yun.`):
//
//   S                            S.P.yun            vip: the VIP (A) · dnsrr: healthy task addresses
//   tasks.S                      tasks.S.P.yun      healthy task addresses, in both modes
//   _NAME._tcp.S                 _NAME._tcp.S.P.yun SRV, one per healthy task and matching port
//   _TARGET._tcp.S               (also `_udp`)      the numeric form: a port's target port (named or not)
//   A-B-C-D.tasks.S              A-B-C-D.tasks.S.P.yun   one task (A): the target of its SRV records
//
// The left column works only for a query whose source has a known scope {P, N}; it sees the
// services of project P on network N (N = null: P's host-network services). The right column works
// for everyone: from a known scope only for its own project (and network); from an unknown source
// (e.g. a process task on the host asking 127.0.0.x) over P's host-network services.
//
// SRV: port = host_port for host-network endpoints (network === null), else the target port;
// target = `<address with dashes>.tasks.S.P.yun` (IPv6: ':' → '-'), always fully qualified so
// that it resolves from every scope that could see the SRV record; its A record is in the
// additional section. Host-network tasks on one node share the same target name (same address)
// with different ports.
//
// What is ours: every name under `yun.`; from a known scope, the left-column shapes whose service
// label is visible, and `tasks.X` for any single label X. Ours but unknown → NXDOMAIN, authoritative,
// never forwarded; an existing name without records of the asked type (AAAA when all addresses are
// IPv4, a dnsrr service with no healthy task, `P.yun`, `_tcp.S.P.yun`) → NOERROR with no answers.
// Negative answers carry no SOA, so resolvers do not cache them (RFC 2308).
//
// Robustness: a datagram too short for a header, or a response (QR set), is dropped; a query whose
// header is readable but whose body is not gets FORMERR (12 bytes: no amplification); opcodes
// other than QUERY get NOTIMP. UDP answers are limited to 512 bytes, or the client's EDNS size (at
// most 4096): the additional section goes first (no TC), then answers (TC set). TCP: 2-byte length
// framing, several (pipelined) queries per connection, answered as they are ready (RFC 7766), idle
// connections closed after 10 s.
//
// Forwarding: the raw query goes to the upstreams in order (UDP; TCP for TCP clients, and to
// refetch an answer truncated below the client's EDNS size), 2 s each, with a random id on one shared
// socket (answers are accepted only from the upstream's address and port, with that id and our
// question); the answer is returned raw with the client's id. SERVFAIL/REFUSED or silence → the next
// upstream; all failed → the last upstream's answer, or our SERVFAIL. Never to ourselves.
//
// TTL: task-derived records (dnsrr, tasks., SRV, task names) use `ttl` (default 0: task sets
// change and a stopped task must vanish at once, also behind caching resolvers); VIP records use
// `vipTtl` (default 10 s: a VIP is stable for the life of the service; 10 s bounds staleness if a
// service is removed and re-created with another VIP; Docker uses 600).
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { networkInterfaces } from 'node:os';

export interface DnsEndpoint {
  service: string;
  project: string;
  /** Network name, or null for host-network (process) tasks. */
  network: string | null;
  mode: 'vip' | 'dnsrr';
  /** The VIP on this network (vip mode). */
  vip: string | null;
  tasks: { address: string; healthy: boolean; ports: { name?: string; protocol: 'tcp' | 'udp'; target: number; host_port: number }[] }[];
}

/** Who is asking. */
export interface DnsScope { project: string; network: string | null }

export interface DnsServerOptions {
  /** `ip`, `ip:port` or `[ipv6]:port`. Default: the nameservers of /etc/resolv.conf, less the addresses we listen on. */
  upstreams?: string[];
  /** TTL of task-derived records, seconds (default 0). */
  ttl?: number;
  /** TTL of VIP records, seconds (default 10). */
  vipTtl?: number;
  /** Per-upstream timeout of a forwarded query, ms (default 2000). */
  forwardTimeoutMs?: number;
  log?: { warn(...a: unknown[]): void };
}

export interface DnsStats {
  queries: number;
  answered: number;
  nxdomain: number;
  forwarded: number;
  forwardFailed: number;
  formerr: number;
  dropped: number;
  truncated: number;
}

// ---- wire constants ----
const T_A = 1, T_SRV = 33, T_AAAA = 28, T_OPT = 41, T_ANY = 255;
const C_IN = 1, C_ANY = 255;
const R_NOERROR = 0, R_FORMERR = 1, R_SERVFAIL = 2, R_NXDOMAIN = 3, R_NOTIMP = 4, R_REFUSED = 5;
const F_QR = 0x8000, F_OPCODE = 0x7800, F_AA = 0x0400, F_TC = 0x0200, F_RD = 0x0100, F_RA = 0x0080, F_CD = 0x0010;
const OUR_EDNS_SIZE = 1232;
const MAX_UDP = 4096;
const PTR_QNAME = 0xc00c;

/** A parsed query: header fields, the question, and the EDNS payload size (0 = no OPT). */
interface Query {
  id: number;
  flags: number;
  /** Offset just past the question (12 + name + 4). */
  qEnd: number;
  /** Lowercased labels. */
  labels: string[];
  /** A label has characters (other than letters, digits, '-', '_') that no name of ours has. */
  odd: boolean;
  qtype: number;
  qclass: number;
  edns: number;
}

/** Parse a query; a number is the outcome when it is not answerable: -1 drop, else an rcode. */
function parseQuery(b: Buffer): Query | number {
  if (b.length < 12) return -1;
  const flags = b.readUInt16BE(2);
  if (flags & F_QR) return -1; // a response: never answer (loops)
  if ((flags & F_OPCODE) !== 0) return R_NOTIMP;
  if (b.readUInt16BE(4) !== 1) return R_FORMERR;
  let off = 12;
  const labels: string[] = [];
  let odd = false;
  let nameLen = 0;
  for (;;) {
    if (off >= b.length) return R_FORMERR;
    const len = b[off]!;
    if (len === 0) { off++; break; }
    if (len > 63) return R_FORMERR; // compression pointers (or reserved bits) in a question: malformed
    const s = off + 1, e = s + len;
    if (e > b.length) return R_FORMERR;
    nameLen += len + 1;
    if (nameLen > 255) return R_FORMERR;
    if (!odd) {
      for (let i = s; i < e; i++) {
        const c = b[i]!;
        // letters, digits, '-', '_' only
        if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f)) { odd = true; break; }
      }
    }
    labels.push(b.toString('latin1', s, e).toLowerCase());
    off = e;
  }
  if (off + 4 > b.length) return R_FORMERR;
  const qtype = b.readUInt16BE(off), qclass = b.readUInt16BE(off + 2);
  off += 4;
  const qEnd = off;
  const an = b.readUInt16BE(6), ns = b.readUInt16BE(8), ar = b.readUInt16BE(10);
  let edns = 0;
  for (let i = 0, n = an + ns + ar; i < n; i++) {
    // owner name (may be compressed)
    const nameStart = off;
    for (;;) {
      if (off >= b.length) return R_FORMERR;
      const len = b[off]!;
      if (len === 0) { off++; break; }
      if ((len & 0xc0) === 0xc0) { if (off + 2 > b.length) return R_FORMERR; off += 2; break; }
      if (len > 63) return R_FORMERR;
      off += 1 + len;
    }
    if (off + 10 > b.length) return R_FORMERR;
    const type = b.readUInt16BE(off), rdlen = b.readUInt16BE(off + 8);
    if (type === T_OPT) {
      if (i < an + ns || edns !== 0 || off - nameStart !== 1) return R_FORMERR; // OPT: additional, once, root name
      edns = Math.max(512, b.readUInt16BE(off + 2));
    }
    off += 10 + rdlen;
    if (off > b.length) return R_FORMERR;
  }
  return { id: b.readUInt16BE(0), flags, qEnd, labels, odd, qtype, qclass, edns };
}

/** A header-only answer (FORMERR, NOTIMP) for a query whose question we cannot or will not echo. */
function headerOnly(b: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  out[0] = b[0]!; out[1] = b[1]!;
  const qf = b.length >= 4 ? b.readUInt16BE(2) : 0;
  out.writeUInt16BE(F_QR | (qf & (F_OPCODE | F_RD)) | F_RA | rcode, 2);
  return out;
}

/** SERVFAIL (or another rcode) echoing the question of a parsed query. */
function failAnswer(b: Buffer, q: Query, rcode: number): Buffer {
  const out = Buffer.allocUnsafe(q.qEnd);
  b.copy(out, 0, 0, q.qEnd);
  out.writeUInt16BE(F_QR | (q.flags & (F_RD | F_CD)) | F_RA | rcode, 2);
  out.writeUInt16BE(1, 4); out.writeUInt32BE(0, 6); out.writeUInt16BE(0, 10);
  return out;
}

// ---- addresses and names ----
function ipv4Bytes(a: string): Buffer | null {
  if (!net.isIPv4(a)) return null;
  const p = a.split('.');
  return Buffer.from([Number(p[0]), Number(p[1]), Number(p[2]), Number(p[3])]);
}

function ipv6Bytes(a: string): Buffer | null {
  if (!net.isIPv6(a)) return null;
  let s = a.split('%')[0]!;
  const out = Buffer.alloc(16);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b4 = ipv4Bytes(v4[1]!)!;
    const h1 = ((b4[0]! << 8) | b4[1]!).toString(16), h2 = ((b4[2]! << 8) | b4[3]!).toString(16);
    s = s.slice(0, s.length - v4[1]!.length) + `${h1}:${h2}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') as [string, string] : [s, null];
  const hp = head ? head.split(':') : [];
  const tp = tail ? tail.split(':') : [];
  for (let i = 0; i < hp.length; i++) out.writeUInt16BE(parseInt(hp[i]!, 16), i * 2);
  for (let i = 0; i < tp.length; i++) out.writeUInt16BE(parseInt(tp[i]!, 16), 16 - (tp.length - i) * 2);
  return out;
}

/** Normalise a socket's remote address (strip IPv4-mapped IPv6 prefix and zone). */
function normSource(a: string): string {
  if (a.startsWith('::ffff:') && a.includes('.')) return a.slice(7);
  return a;
}

function wireName(labels: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) { const b = Buffer.from(l, 'latin1'); parts.push(Buffer.from([b.length]), b); }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** `10.0.0.5` → `10-0-0-5`; IPv6 `fd00::5` → `fd00--5`. */
export function dashedAddress(a: string): string {
  return a.toLowerCase().replace(/[.:]/g, '-');
}

/** The nameservers of a resolv.conf text, in order. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (m && net.isIP(m[1]!.split('%')[0]!)) out.push(m[1]!);
  }
  return out;
}

interface Upstream { host: string; port: number; family: 4 | 6 }

function parseUpstream(s: string): Upstream | null {
  let host = s, port = 53;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (br) { host = br[1]!; if (br[2]) port = Number(br[2]); }
  else if (!net.isIPv6(s)) {
    const m = /^([^:]+):(\d+)$/.exec(s);
    if (m) { host = m[1]!; port = Number(m[2]); }
  }
  const fam = net.isIP(host.split('%')[0]!);
  if (!fam || !(port > 0 && port < 65536)) return null;
  return { host, port, family: fam as 4 | 6 };
}

// ---- the table ----
interface SrvRec { port: number; target: Buffer; addr: Buffer; rdata: Buffer }
interface Derived {
  v4: Buffer[]; v6: Buffer[];
  vip4: Buffer | null; vip6: Buffer | null;
  /** `_name._tcp` → SRV records of healthy tasks (key present = the name exists). */
  srv: Map<string, SrvRec[]>;
  /** `a-b-c-d` → address of a healthy task. */
  tasks: Map<string, Buffer>;
}
interface Entry { ep: DnsEndpoint; d: Derived | null; rr: number }
/** The services of one scope (project + network, or project + host network). */
type ScopeTable = Map<string, Entry>;

function scopeKey(project: string, network: string | null): string {
  return network === null ? `${project}\u0001` : `${project}\u0000${network}`;
}

function derive(ep: DnsEndpoint): Derived {
  const v4: Buffer[] = [], v6: Buffer[] = [], seen = new Set<string>();
  const srv = new Map<string, SrvRec[]>();
  const tasks = new Map<string, Buffer>();
  const suffix = ['tasks', ep.service.toLowerCase(), ep.project.toLowerCase(), 'yun'];
  const hostNet = ep.network === null;
  for (const t of ep.tasks) {
    const addr = t.healthy && t.address ? (ipv4Bytes(t.address) ?? ipv6Bytes(t.address)) : null;
    const dashed = addr ? dashedAddress(t.address) : '';
    if (addr && !seen.has(t.address)) {
      seen.add(t.address);
      (addr.length === 4 ? v4 : v6).push(addr);
      tasks.set(dashed, addr);
    }
    for (const p of t.ports ?? []) {
      const keys = [`_${p.target}._${p.protocol}`];
      if (p.name) keys.push(`_${p.name.toLowerCase()}._${p.protocol}`);
      for (const k of keys) {
        let list = srv.get(k);
        if (!list) srv.set(k, (list = []));
        if (!addr) continue;
        const port = hostNet ? p.host_port : p.target;
        if (list.some((r) => r.port === port && r.addr.equals(addr))) continue;
        const rdata = Buffer.alloc(6); // priority 0, weight 10, port
        rdata.writeUInt16BE(10, 2); rdata.writeUInt16BE(port, 4);
        list.push({ port, target: wireName([dashed, ...suffix]), addr, rdata });
      }
    }
  }
  const vip = ep.mode === 'vip' && ep.vip ? ep.vip : null;
  const vip4 = vip ? ipv4Bytes(vip) : null;
  const vip6 = vip && !vip4 ? ipv6Bytes(vip) : null;
  return { v4, v6, vip4, vip6, srv, tasks };
}

// ---- answers ----
interface Ans { type: number; ttl: number; rdata: Buffer; target?: Buffer; srv?: SrvRec }
interface Resolved { rcode: number; answers: Ans[]; additional: boolean }
const NX: Resolved = { rcode: R_NXDOMAIN, answers: [], additional: false };
const NODATA: Resolved = { rcode: R_NOERROR, answers: [], additional: false };
const REFUSED: Resolved = { rcode: R_REFUSED, answers: [], additional: false };

/** Encode an answer to `q` within `limit` bytes: drop the additional section, then answers (TC). */
function encodeAnswer(b: Buffer, q: Query, r: Resolved, limit: number): { buf: Buffer; tc: boolean } {
  const opt = q.edns ? 11 : 0;
  const ans = r.answers;
  let sizeAns = 0;
  for (const a of ans) sizeAns += 12 + a.rdata.length + (a.target ? a.target.length : 0);
  // additional: one A/AAAA per distinct SRV target, owner name = pointer to the target in its SRV
  const add: { idx: number; rdata: Buffer }[] = [];
  let sizeAdd = 0;
  if (r.additional) {
    const seen = new Set<string>();
    for (let i = 0; i < ans.length; i++) {
      const a = ans[i]!;
      const srvRec = a.srv;
      if (!a.target || !srvRec) continue;
      const key = a.target.toString('latin1');
      if (seen.has(key)) continue;
      seen.add(key);
      add.push({ idx: i, rdata: srvRec.addr });
      sizeAdd += 12 + srvRec.addr.length;
    }
  }
  let nAns = ans.length, nAdd = add.length, tc = false;
  if (q.qEnd + sizeAns + sizeAdd + opt > limit) {
    nAdd = 0;
    if (q.qEnd + sizeAns + opt > limit) {
      tc = true;
      let size = q.qEnd + opt;
      nAns = 0;
      while (nAns < ans.length) {
        const a = ans[nAns]!;
        const s = 12 + a.rdata.length + (a.target ? a.target.length : 0);
        if (size + s > limit) break;
        size += s; nAns++;
      }
    }
  }
  let total = q.qEnd + opt;
  for (let i = 0; i < nAns; i++) { const a = ans[i]!; total += 12 + a.rdata.length + (a.target ? a.target.length : 0); }
  for (let i = 0; i < nAdd; i++) total += 12 + add[i]!.rdata.length;
  const out = Buffer.allocUnsafe(total);
  b.copy(out, 0, 0, q.qEnd);
  out.writeUInt16BE(F_QR | F_AA | (tc ? F_TC : 0) | (q.flags & (F_RD | F_CD)) | F_RA | r.rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(nAns, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(nAdd + (opt ? 1 : 0), 10);
  let off = q.qEnd;
  const targetOff: number[] = [];
  for (let i = 0; i < nAns; i++) {
    const a = ans[i]!;
    out.writeUInt16BE(PTR_QNAME, off);
    out.writeUInt16BE(a.type, off + 2);
    out.writeUInt16BE(C_IN, off + 4);
    out.writeUInt32BE(a.ttl, off + 6);
    const rdlen = a.rdata.length + (a.target ? a.target.length : 0);
    out.writeUInt16BE(rdlen, off + 10);
    off += 12;
    a.rdata.copy(out, off); off += a.rdata.length;
    if (a.target) { targetOff[i] = off; a.target.copy(out, off); off += a.target.length; }
  }
  for (let i = 0; i < nAdd; i++) {
    const x = add[i]!;
    out.writeUInt16BE(0xc000 | targetOff[x.idx]!, off);
    out.writeUInt16BE(x.rdata.length === 4 ? T_A : T_AAAA, off + 2);
    out.writeUInt16BE(C_IN, off + 4);
    out.writeUInt32BE(ans[x.idx]!.ttl, off + 6);
    out.writeUInt16BE(x.rdata.length, off + 10);
    off += 12;
    x.rdata.copy(out, off); off += x.rdata.length;
  }
  if (opt) {
    out[off] = 0;
    out.writeUInt16BE(T_OPT, off + 1);
    out.writeUInt16BE(OUR_EDNS_SIZE, off + 3);
    out.writeUInt32BE(0, off + 5);
    out.writeUInt16BE(0, off + 9);
  }
  return { buf: out, tc };
}

// ---- forwarding ----
interface Pending { resolve(b: Buffer | null): void; timer: NodeJS.Timeout; up: Upstream; question: Buffer }

/** Forwards raw queries over one UDP socket per address family, remapping the id. */
class UdpForwarder {
  private socks: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  private pending = new Map<number, Pending>();

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.socks[family];
    if (!s) {
      s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
      s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
      s.on('error', () => undefined);
      s.unref();
      this.socks[family] = s;
    }
    return s;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return;
    const p = this.pending.get(msg.readUInt16BE(0));
    if (!p || rinfo.port !== p.up.port || normSource(rinfo.address) !== p.up.host.split('%')[0]) return;
    // the answer must carry our question (case-insensitively: some servers do not echo the case)
    const qn = p.question;
    if (msg.length < 12 + qn.length || msg.readUInt16BE(4) !== 1) return;
    for (let i = 0; i < qn.length; i++) {
      const x = msg[12 + i]!, y = qn[i]!;
      if (x !== y && (x | 0x20) !== (y | 0x20)) return;
    }
    this.pending.delete(msg.readUInt16BE(0));
    clearTimeout(p.timer);
    p.resolve(msg);
  }

  /** Send `query` (its id is rewritten in a copy) and wait for the answer; null on timeout or error. */
  forward(query: Buffer, qEnd: number, up: Upstream, timeoutMs: number): Promise<Buffer | null> {
    if (this.pending.size > 60000) return Promise.resolve(null);
    let id: number;
    do id = randomInt(65536); while (this.pending.has(id));
    const copy = Buffer.from(query);
    copy.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.pending.delete(id); resolve(null); }, timeoutMs);
      this.pending.set(id, { resolve, timer, up, question: query.subarray(12, qEnd) });
      this.socket(up.family).send(copy, up.port, up.host, (err) => {
        if (err && this.pending.get(id)?.timer === timer) { this.pending.delete(id); clearTimeout(timer); resolve(null); }
      });
    });
  }

  close(): void {
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.resolve(null); }
    this.pending.clear();
    for (const s of [this.socks[4], this.socks[6]]) if (s) try { s.close(); } catch { /* closed */ }
    this.socks = {};
  }
}

/** One query over a fresh TCP connection; null on error or timeout. */
function forwardTcp(query: Buffer, up: Upstream, timeoutMs: number, sockets: Set<net.Socket>): Promise<Buffer | null> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0) as Buffer, done = false;
    const sock = net.connect({ host: up.host, port: up.port });
    sockets.add(sock);
    const finish = (r: Buffer | null) => {
      if (done) return;
      done = true; clearTimeout(timer); sockets.delete(sock); sock.destroy(); resolve(r);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    sock.on('connect', () => {
      const len = Buffer.allocUnsafe(2); len.writeUInt16BE(query.length, 0);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const ans = buf.subarray(2, 2 + buf.readUInt16BE(0));
        finish(ans.length >= 12 && ans.readUInt16BE(0) === query.readUInt16BE(0) ? Buffer.from(ans) : null);
      }
    });
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
  });
}

// ---- the server ----
type Outcome = Buffer | null | Promise<Buffer | null>;

export class DnsServer {
  private tables = new Map<string, ScopeTable>();
  private scopeOf: ((src: string) => DnsScope | null) | null = null;
  private readonly ttl: number;
  private readonly vipTtl: number;
  private readonly timeoutMs: number;
  private readonly log: { warn(...a: unknown[]): void } | undefined;
  private readonly configured: Upstream[];
  private readonly fromResolvConf: boolean;
  private udp: dgram.Socket[] = [];
  private tcp: net.Server[] = [];
  private conns = new Set<net.Socket>();
  private fwdConns = new Set<net.Socket>();
  private listening: { address: string; udpPort: number; tcpPort: number }[] = [];
  private forwarder = new UdpForwarder();
  private closed = false;
  private warned = new Map<string, number>();
  readonly stats: DnsStats = { queries: 0, answered: 0, nxdomain: 0, forwarded: 0, forwardFailed: 0, formerr: 0, dropped: 0, truncated: 0 };

  constructor(opts: DnsServerOptions = {}) {
    this.ttl = Math.max(0, Math.floor(opts.ttl ?? 0));
    this.vipTtl = Math.max(0, Math.floor(opts.vipTtl ?? 10));
    this.timeoutMs = opts.forwardTimeoutMs ?? 2000;
    this.log = opts.log;
    this.fromResolvConf = opts.upstreams === undefined;
    let list = opts.upstreams;
    if (list === undefined) {
      try { list = parseResolvConf(readFileSync('/etc/resolv.conf', 'utf8')); } catch { list = []; }
    }
    this.configured = [];
    for (const s of list) {
      const u = parseUpstream(s);
      if (u) this.configured.push(u);
      else this.log?.warn({ upstream: s }, 'dns: ignoring an upstream that is not ip[:port]');
    }
  }

  /** Replace the table atomically. O(number of endpoints); per-service records are derived on first use. */
  setEndpoints(list: DnsEndpoint[]): void {
    const tables = new Map<string, ScopeTable>();
    for (const ep of list) {
      const key = scopeKey(ep.project.toLowerCase(), ep.network === null ? null : ep.network.toLowerCase());
      let t = tables.get(key);
      if (!t) tables.set(key, (t = new Map()));
      const name = ep.service.toLowerCase();
      if (t.has(name)) { this.warnOnce(`dup:${key}:${name}`, { service: ep.service, project: ep.project, network: ep.network }, 'dns: two endpoints with the same name in one scope; keeping the first'); continue; }
      t.set(name, { ep, d: null, rr: 0 });
    }
    this.tables = tables;
  }

  setScopeResolver(fn: (sourceAddress: string) => DnsScope | null): void {
    this.scopeOf = fn;
  }

  /** Listen on UDP and TCP. Port 0 picks one, the same for both when possible. May be called for several addresses. */
  async listen(address: string, port: number): Promise<{ udpPort: number; tcpPort: number }> {
    if (this.closed) throw new Error('DnsServer is closed');
    const family = net.isIPv6(address) ? 'udp6' : 'udp4';
    for (let attempt = 0; ; attempt++) {
      const udp = await this.bindUdp(family, address, port);
      const udpPort = udp.address().port;
      try {
        const tcp = await this.listenTcp(address, udpPort);
        return this.adopt(address, udp, tcp);
      } catch (e) {
        if (port !== 0) { udp.close(); throw e; }
        if (attempt < 20 && (e as NodeJS.ErrnoException).code === 'EADDRINUSE') { udp.close(); continue; }
        // give up on one port for both: TCP on a port of its own
        const tcp = await this.listenTcp(address, 0).catch((e2) => { udp.close(); throw e2; });
        return this.adopt(address, udp, tcp);
      }
    }
  }

  private adopt(address: string, udp: dgram.Socket, tcp: net.Server): { udpPort: number; tcpPort: number } {
    const udpPort = udp.address().port, tcpPort = (tcp.address() as net.AddressInfo).port;
    this.udp.push(udp); this.tcp.push(tcp);
    this.listening.push({ address, udpPort, tcpPort });
    return { udpPort, tcpPort };
  }

  private bindUdp(type: 'udp4' | 'udp6', address: string, port: number): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const s = dgram.createSocket({ type });
      const onErr = (e: Error) => { s.close(); reject(e); };
      s.once('error', onErr);
      s.bind({ address, port }, () => {
        s.off('error', onErr);
        s.on('error', (e) => this.warnOnce(`udp-error:${e.message}`, { err: e.message }, 'dns: UDP socket error'));
        try { s.setRecvBufferSize(4 << 20); s.setSendBufferSize(4 << 20); } catch { /* capped by the kernel */ }
        s.on('message', (msg, rinfo) => this.onUdp(s, msg, rinfo));
        resolve(s);
      });
    });
  }

  private listenTcp(address: string, port: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer((sock) => this.onTcp(sock));
      srv.maxConnections = 1024;
      const onErr = (e: Error) => { srv.close(); reject(e); };
      srv.once('error', onErr);
      srv.listen({ host: address, port, exclusive: false }, () => {
        srv.off('error', onErr);
        srv.on('error', (e) => this.warnOnce(`tcp-error:${e.message}`, { err: e.message }, 'dns: TCP server error'));
        resolve(srv);
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.udp) try { s.close(); } catch { /* closed */ }
    for (const c of this.conns) c.destroy();
    for (const c of this.fwdConns) c.destroy();
    await Promise.all(this.tcp.map((t) => new Promise<void>((r) => t.close(() => r()))));
    this.forwarder.close();
    this.udp = []; this.tcp = []; this.listening = [];
  }

  /** For tests/benchmarks: answer a raw query as if it came from `source` (over UDP unless told). An empty buffer = dropped. */
  async answer(query: Buffer, source: string, transport: 'udp' | 'tcp' = 'udp'): Promise<Buffer> {
    return (await this.process(query, normSource(source), transport === 'tcp')) ?? Buffer.alloc(0);
  }

  // ---- transports ----
  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let out: Outcome;
    try { out = this.process(msg, normSource(rinfo.address), false); } catch (e) { this.internalError(e); return; }
    if (out === null) return;
    if (!(out instanceof Promise)) { this.sendUdp(sock, out, rinfo); return; }
    out.then((b) => { if (b && !this.closed) this.sendUdp(sock, b, rinfo); }, (e) => this.internalError(e));
  }

  private sendUdp(sock: dgram.Socket, b: Buffer, rinfo: dgram.RemoteInfo): void {
    try { sock.send(b, rinfo.port, rinfo.address); } catch (e) { this.internalError(e); } // e.g. the socket just closed
  }

  private onTcp(sock: net.Socket): void {
    if (this.closed) { sock.destroy(); return; }
    this.conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(10_000, () => sock.destroy());
    const src = normSource(sock.remoteAddress ?? '');
    let buf: Buffer = Buffer.alloc(0);
    let inflight = 0;
    const reply = (b: Buffer | null) => {
      if (!b || sock.destroyed) return;
      const len = Buffer.allocUnsafe(2); len.writeUInt16BE(b.length, 0);
      sock.cork(); sock.write(len); sock.write(b); sock.uncork();
    };
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        const q = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (q.length < 12) { this.stats.dropped++; sock.destroy(); return; }
        let out: Outcome;
        try { out = this.process(q, src, true); } catch (e) { this.internalError(e); sock.destroy(); return; }
        if (!(out instanceof Promise)) { reply(out); continue; }
        if (++inflight > 64) { sock.destroy(); return; }
        out.then((b) => { inflight--; reply(b); }, (e) => { inflight--; this.internalError(e); });
      }
      if (buf.length > 0) buf = Buffer.from(buf); // a partial frame: copy it, not to pin the whole chunk
    });
    sock.on('error', () => undefined);
    sock.on('close', () => this.conns.delete(sock));
  }

  // ---- the decision ----
  /** A buffer to send, null to drop, or a promise (forwarding). */
  private process(b: Buffer, src: string, tcp: boolean): Outcome {
    this.stats.queries++;
    const q = parseQuery(b);
    if (typeof q === 'number') {
      if (q === -1) { this.stats.dropped++; return null; }
      if (q === R_FORMERR) this.stats.formerr++;
      return headerOnly(b, q);
    }
    let scope: DnsScope | null = null;
    if (this.scopeOf) {
      try { scope = this.scopeOf(src); } catch (e) { this.internalError(e); }
    }
    const limit = tcp ? 65535 : q.edns ? Math.min(q.edns, MAX_UDP) : 512;
    // a name with odd characters is none of ours, but is still never forwarded when under `yun.`
    const r = q.odd ? (q.labels[q.labels.length - 1] === 'yun' ? NX : null) : this.resolve(q.labels, q.qtype, q.qclass, scope);
    if (r === null) return this.forward(b, q, tcp, limit);
    if (r.rcode === R_NXDOMAIN) this.stats.nxdomain++;
    this.stats.answered++;
    const { buf, tc } = encodeAnswer(b, q, r, limit);
    if (tc) this.stats.truncated++;
    return buf;
  }

  /** Our answer for a name, or null when the name is not ours (forward it). */
  private resolve(labels: string[], qtype: number, qclass: number, scope: DnsScope | null): Resolved | null {
    const n = labels.length;
    let table: ScopeTable | undefined;
    let rel: string[];
    let fqdn: boolean;
    if (n > 0 && labels[n - 1] === 'yun') {
      if (qclass !== C_IN && qclass !== C_ANY) return REFUSED;
      if (n === 1) return NODATA; // the zone apex
      const project = labels[n - 2]!;
      if (scope) {
        if (project !== scope.project.toLowerCase()) return NX;
        table = this.tables.get(scopeKey(project, scope.network === null ? null : scope.network.toLowerCase()));
      } else {
        table = this.tables.get(scopeKey(project, null));
      }
      if (!table) return NX;
      if (n === 2) return NODATA; // P.yun: exists (it has services)
      rel = labels.slice(0, n - 2);
      fqdn = true;
    } else {
      if (!scope || n === 0) return null;
      table = this.tables.get(scopeKey(scope.project.toLowerCase(), scope.network === null ? null : scope.network.toLowerCase()));
      rel = labels;
      fqdn = false;
    }
    const r = this.resolveRel(rel, qtype, table, fqdn);
    if (r !== null && qclass !== C_IN && qclass !== C_ANY) return REFUSED;
    return r;
  }

  /** Names relative to a scope (`S`, `tasks.S`, `_p._tcp.S`, `a-b-c-d.tasks.S`). */
  private resolveRel(rel: string[], qtype: number, table: ScopeTable | undefined, fqdn: boolean): Resolved | null {
    const n = rel.length;
    const svc = rel[n - 1]!;
    const e = table?.get(svc);
    if (n === 1) {
      if (!e) return fqdn ? NX : null;
      const d = (e.d ??= derive(e.ep));
      if (e.ep.mode === 'vip') return this.addresses(qtype, d.vip4 ? [d.vip4] : [], d.vip6 ? [d.vip6] : [], this.vipTtl, e);
      return this.addresses(qtype, d.v4, d.v6, this.ttl, e);
    }
    if (n === 2) {
      if (rel[0] === 'tasks') {
        if (!e) return NX; // `tasks.X` is always ours
        const d = (e.d ??= derive(e.ep));
        return this.addresses(qtype, d.v4, d.v6, this.ttl, e);
      }
      if (!e) return fqdn ? NX : null;
      if (rel[0] === '_tcp' || rel[0] === '_udp') return NODATA; // parent of the SRV names
      return fqdn ? NX : null;
    }
    if (n === 3) {
      if (!e) return fqdn ? NX : null;
      const d = (e.d ??= derive(e.ep));
      if (rel[1] === '_tcp' || rel[1] === '_udp') {
        if (!rel[0]!.startsWith('_')) return fqdn ? NX : null;
        const recs = d.srv.get(`${rel[0]}.${rel[1]}`);
        if (!recs) return NX;
        if (qtype !== T_SRV && qtype !== T_ANY) return NODATA;
        const answers: Ans[] = [];
        const k = recs.length, start = k > 1 ? e.rr++ % k : 0;
        for (let i = 0; i < k; i++) {
          const s = recs[(start + i) % k]!;
          answers.push({ type: T_SRV, ttl: this.ttl, rdata: s.rdata, target: s.target, srv: s });
        }
        return { rcode: R_NOERROR, answers, additional: true };
      }
      if (rel[1] === 'tasks') {
        const addr = d.tasks.get(rel[0]!);
        if (!addr) return NX;
        return this.addresses(qtype, addr.length === 4 ? [addr] : [], addr.length === 16 ? [addr] : [], this.ttl, null);
      }
      return fqdn ? NX : null;
    }
    return fqdn ? NX : null;
  }

  private addresses(qtype: number, v4: Buffer[], v6: Buffer[], ttl: number, rot: Entry | null): Resolved {
    let list: Buffer[];
    if (qtype === T_A) list = v4;
    else if (qtype === T_AAAA) list = v6;
    else if (qtype === T_ANY) list = v4.concat(v6);
    else return NODATA;
    const k = list.length;
    if (k === 0) return NODATA;
    if (k === 1) return { rcode: R_NOERROR, answers: [{ type: qtype === T_ANY ? (list[0]!.length === 4 ? T_A : T_AAAA) : qtype, ttl, rdata: list[0]! }], additional: false };
    // rotate multi-address answers so that clients taking the first record spread out
    const start = rot ? rot.rr++ % k : 0;
    const answers: Ans[] = new Array(k);
    for (let i = 0; i < k; i++) { const a = list[(start + i) % k]!; answers[i] = { type: a.length === 4 ? T_A : T_AAAA, ttl, rdata: a }; }
    return { rcode: R_NOERROR, answers, additional: false };
  }

  // ---- forwarding ----
  private upstreams(): Upstream[] {
    if (this.listening.length === 0) return this.configured;
    // never forward to ourselves (e.g. resolv.conf naming the address we listen on)
    let locals: Set<string> | null = null;
    return this.configured.filter((u) => !this.listening.some((l) => {
      if (l.udpPort !== u.port) return false;
      if (l.address === u.host) return true;
      if (l.address === '0.0.0.0' || l.address === '::') {
        if (u.host.startsWith('127.') || u.host === '::1') return true;
        locals ??= new Set(Object.values(networkInterfaces()).flatMap((xs) => (xs ?? []).map((x) => x.address)));
        return locals.has(u.host);
      }
      return false;
    }));
  }

  private async forward(b: Buffer, q: Query, tcp: boolean, limit: number): Promise<Buffer | null> {
    this.stats.forwarded++;
    const ups = this.upstreams();
    let last: Buffer | null = null;
    for (const up of ups) {
      if (this.closed) return null;
      let ans = tcp ? await forwardTcp(b, up, this.timeoutMs, this.fwdConns) : await this.forwarder.forward(b, q.qEnd, up, this.timeoutMs);
      if (ans && !tcp && q.edns && (ans.readUInt16BE(2) & F_TC) && limit > ans.length) {
        // truncated by an upstream whose own limit is below what the client accepts (EDNS): fetch it
        // over TCP, and pass the whole answer on when it fits; else the TC answer (the client
        // retries over TCP itself). Without EDNS both limits are 512: no point in refetching.
        const full = await forwardTcp(b, up, this.timeoutMs, this.fwdConns);
        if (full && full.length <= limit && !(full.readUInt16BE(2) & F_TC)) ans = full;
      }
      if (!ans) { this.warnOnce(`up:${up.host}:${up.port}`, { upstream: `${up.host}:${up.port}` }, 'dns: upstream resolver did not answer'); continue; }
      ans.writeUInt16BE(q.id, 0);
      const rcode = ans.readUInt16BE(2) & 0xf;
      if (rcode === R_SERVFAIL || rcode === R_REFUSED) { last = ans; continue; }
      return ans;
    }
    this.stats.forwardFailed++;
    if (ups.length === 0) this.warnOnce('no-upstreams', {}, this.fromResolvConf ? 'dns: no upstream resolver (none in /etc/resolv.conf besides ourselves)' : 'dns: no upstream resolver configured');
    return last ?? failAnswer(b, q, R_SERVFAIL);
  }

  private warnOnce(key: string, obj: object, msg: string): void {
    if (!this.log) return;
    const now = Date.now();
    if ((this.warned.get(key) ?? 0) > now - 10_000) return;
    if (this.warned.size > 1000) this.warned.clear();
    this.warned.set(key, now);
    this.log.warn(obj, msg);
  }

  private internalError(e: unknown): void {
    this.warnOnce(`internal:${String(e)}`, { err: String((e as Error)?.stack ?? e) }, 'dns: internal error answering a query');
  }
}
