import { spawn } from 'node:child_process';

/**
 * The nftables fast path of the data plane: VIP:port and published ports become kernel DNAT rules
 * (a round robin over the backends with `numgen inc`), so connections skip the proxy entirely.
 * Backends on other nodes are DNATed too and masqueraded (so replies come back through this node);
 * the agent keeps only those its probes reach in the maps (src/dataplane/probe.ts). Clients with a
 * loopback source (127/8) reach remote backends through the proxy instead: the kernel will not route
 * a 127/8 source off the node.
 *
 * Each agent owns one table (`ip yun_<octet>`), replaced as a whole in one transaction on every
 * change, so several agents on one machine (test nodes on 127.0.0.x) never touch each other's rules.
 */
export interface FastRule {
  /** Destination the clients use: a VIP, or the node's address for a published port (null: any local address). */
  address: string | null;
  port: number;
  backends: { host: string; port: number; remote?: boolean }[];
}

const LOOPBACK = '127.0.0.0/8';

const ADDR = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The nftables table of a node's fast path. */
export function nftTableName(nodeId: string): string {
  return `yun_${nodeId.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 24)}`;
}

/** The whole table as an nft script (pure). Rules with no backends are left out (the proxy answers). */
export function renderTable(table: string, rules: FastRule[]): string {
  if (!/^[a-z0-9_]{1,30}$/.test(table)) throw new Error(`bad nftables table name ${table}`);
  const lines: string[] = [];
  const outLines: string[] = [];
  const remote = new Set<string>();
  for (const r of rules) {
    if (r.backends.length === 0) continue;
    if (r.address !== null && !ADDR.test(r.address)) throw new Error(`bad address ${r.address}`);
    if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new Error(`bad port ${r.port}`);
    for (const b of r.backends) if (!ADDR.test(b.host) || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) throw new Error(`bad backend ${b.host}:${b.port}`);
    const match = `${r.address !== null ? `ip daddr ${r.address} ` : 'fib daddr type local '}tcp dport ${r.port}`;
    const target = r.backends.length === 1
      ? `dnat to ${r.backends[0]!.host}:${r.backends[0]!.port}`
      : `dnat to numgen inc mod ${r.backends.length} map { ${r.backends.map((b, i) => `${i} : ${b.host} . ${b.port}`).join(', ')} }`;
    const remoteHere = r.backends.filter((b) => b.remote);
    for (const b of remoteHere) remote.add(`${b.host} . ${b.port}`);
    lines.push(`    ${match} ${target}`);
    outLines.push(`    ${remoteHere.length ? `ip saddr != ${LOOPBACK} ` : ''}${match} ${target}`);
  }
  const chain = (name: string, hook: string, body: string[], priority = -100) => `  chain ${name} {\n    type nat hook ${hook} priority ${priority}; policy accept;\n${body.join('\n')}${body.length ? '\n' : ''}  }`;
  const parts = [chain('output', 'output', outLines), chain('prerouting', 'prerouting', lines)];
  if (remote.size) {
    parts.unshift(`  set remote_backends {\n    type ipv4_addr . inet_service\n    elements = { ${[...remote].join(', ')} }\n  }`);
    parts.push(chain('postrouting', 'postrouting', ['    ct status dnat ip daddr . tcp dport @remote_backends masquerade'], 100));
  }
  // "table …" first makes the delete valid when the table does not exist yet: one atomic transaction.
  return `table ip ${table}\ndelete table ip ${table}\ntable ip ${table} {\n${parts.join('\n')}\n}\n`;
}

export function runNft(args: string[], input?: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn('nft', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    } catch (e) {
      resolve({ code: null, stderr: (e as Error).message });
      return;
    }
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', (e) => resolve({ code: null, stderr: e.message }));
    child.on('close', (code) => resolve({ code, stderr: stderr.trim() }));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

export class NftFastPath {
  private last = '';
  private chain: Promise<void> = Promise.resolve();
  /** Why the fast path is off, or null when it is on. */
  problem: string | null = 'not probed yet';

  constructor(readonly table: string, private log?: { warn(o: object, m: string): void }) {}

  /** Can this node use it? (root, nft present, a NAT table can be made here.) */
  async probe(): Promise<string | null> {
    if (process.env.YUN_DATAPLANE === 'portable') return (this.problem = 'turned off (YUN_DATAPLANE=portable)');
    if (process.getuid?.() !== 0) return (this.problem = 'the agent does not run as root (nftables needs CAP_NET_ADMIN)');
    const r = await runNft(['-f', '-'], renderTable(this.table, []));
    if (r.code !== 0) return (this.problem = r.code === null ? `nft cannot run (${r.stderr}): install the Debian package nftables` : `nft refused a NAT table: ${r.stderr}`);
    this.last = renderTable(this.table, []);
    return (this.problem = null);
  }

  /** Replace the rules (no-op when unchanged). Resolves once applied. */
  apply(rules: FastRule[]): Promise<void> {
    const text = renderTable(this.table, rules);
    this.chain = this.chain.then(async () => {
      if (this.problem !== null || text === this.last) return;
      const r = await runNft(['-f', '-'], text);
      if (r.code === 0) this.last = text;
      else this.log?.warn({ err: r.stderr }, 'nftables fast path: rules not applied (the proxy still answers)');
    });
    return this.chain;
  }

  async close(): Promise<void> {
    await this.chain;
    if (this.problem === null) await runNft(['delete', 'table', 'ip', this.table]);
    this.last = '';
  }
}
