import { readFile, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { runCommand } from '../drivers/oci/host.js';
import type { NetworkAttachment } from '../drivers/driver.js';
import type { DataplaneNetwork, DataplaneNode } from '../dataplane/controller.js';
import { contains, deviceNames, formatCidr, gateway, ipToInt, parseCidr, slice, vtepAddress, vtepMac, type Cidr } from '../network/ipam.js';

export const OVERLAY_MTU = 1450;
export const VXLAN_PORT = 4789;

interface Wanted {
  net: DataplaneNetwork;
  cidr: Cidr;
  index: number;
  names: ReturnType<typeof deviceNames>;
  vips: Set<string>;
}

/**
 * The overlay networks of one node, in the kernel (the node's network namespace):
 *
 * - per network with a slice here: a bridge `yb<VNI>` holding the slice's gateway (`.1`) and the
 *   network's VIPs (/32), which the tasks' veths join; a VXLAN device `yx<VNI>` (UDP 4789, no
 *   learning) with a fixed MAC and the slice's `.0`; for every other node with a slice, a static
 *   neighbour + FDB entry for its VXLAN endpoint and a route to its slice through it (flannel's
 *   layout: routed, no flooding, no ARP across nodes);
 * - isolation: traffic entering from a network's bridge or VXLAN device is routed by a table of its
 *   own (policy rules on `iif`), which knows only that network's slices and *prohibits* every other
 *   network's subnet, so networks never reach each other (whatever the project) — they get an ICMP
 *   error at once, not a hang. Addresses of the node itself (gateway, VIPs) are local and answer.
 *
 * Everything is made idempotently from the network list the manager sends, with `ip -batch`.
 */
export class OverlayHost {
  private wanted = new Map<string, Wanted>();
  private nodes: DataplaneNode[] = [];
  private networks: DataplaneNetwork[] = [];
  private syncing: Promise<void> = Promise.resolve();
  /** What the last update applied (networks, node addresses, VIPs). */
  private lastKey = '';
  /** Why the kernel path is degraded, when it is (shown by node inspect / doctor). */
  vxlanProblem: string | null = null;

  constructor(private opts: { nodeId: string; address: string; ip?: string; bridge?: string; log: Logger }) {}

  private get ip(): string { return this.opts.ip ?? 'ip'; }

  /** Networks with a slice on this node. */
  attached(): DataplaneNetwork[] {
    return [...this.wanted.values()].map((w) => w.net);
  }

  /** The network (of those here) whose subnet holds `address`: the DNS scope of a task asking. */
  networkOf(address: string): DataplaneNetwork | undefined {
    let ip: number;
    try { ip = ipToInt(address.replace(/^::ffff:/, '')); } catch { return undefined; }
    for (const w of this.wanted.values()) if (contains(w.cidr, ip)) return w.net;
    return undefined;
  }

  /** Whether `address` is in the subnet of any overlay network (of those known, here or not). */
  inAnyNetwork(address: string): boolean {
    let ip: number;
    try { ip = ipToInt(address.replace(/^::ffff:/, '')); } catch { return false; }
    return this.networks.some((n) => contains(parseCidr(n.subnet), ip));
  }

  /** Gateways of this node's slices (where its DNS must answer tasks). */
  gateways(): { network_id: string; address: string }[] {
    return [...this.wanted.values()].map((w) => ({ network_id: w.net.id, address: gateway(w.cidr, w.index) }));
  }

  /** How a task with `address` on network `id` is plugged in, or why not. */
  async attachment(networkId: string, address: string): Promise<NetworkAttachment> {
    // The slice is allocated with the task's placement; the network update may arrive just after it.
    const deadline = Date.now() + 15_000;
    let w = this.wanted.get(networkId);
    while (!w && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      w = this.wanted.get(networkId);
    }
    await this.syncing;
    if (!w) throw new Error(`network ${networkId} has no address slice on this node (the manager did not send one within 15 s)`);
    const s = slice(w.cidr, w.index);
    if (!contains(s, ipToInt(address))) throw new Error(`address ${address} is not in this node's slice ${formatCidr(s)} of network ${w.net.name}`);
    return { network_id: networkId, name: w.net.name, bridge: w.names.bridge, address, prefix: s.prefix, gateway: gateway(w.cidr, w.index), mtu: OVERLAY_MTU, search: `${w.net.project.toLowerCase()}.yun` };
  }

  /**
   * Apply the manager's view: networks, nodes, and the VIPs per network. Endpoint updates arrive on
   * every task change; the kernel is only touched when what it holds would change.
   */
  update(networks: DataplaneNetwork[], nodes: DataplaneNode[], vips: Map<string, Set<string>>): Promise<void> {
    const key = JSON.stringify([networks, nodes.map((n) => [n.id, n.address]), [...vips].map(([id, v]) => [id, [...v].sort()]).sort()]);
    if (key === this.lastKey) return this.syncing;
    this.lastKey = key;
    this.networks = networks;
    this.nodes = nodes;
    const next = new Map<string, Wanted>();
    for (const net of networks) {
      const index = net.slices[this.opts.nodeId];
      if (index === undefined) continue;
      next.set(net.id, { net, cidr: parseCidr(net.subnet), index, names: deviceNames(net.vni), vips: vips.get(net.id) ?? new Set() });
    }
    this.wanted = next;
    this.syncing = this.syncing.then(() => this.sync()).catch((e) => this.opts.log.error({ err: e }, 'overlay network sync failed'));
    return this.syncing;
  }

  private async batch(lines: string[], what: string, args: string[] = []): Promise<void> {
    if (lines.length === 0) return;
    const r = await runCommand(args[0] === 'bridge' ? this.opts.bridge ?? 'bridge' : this.ip, [...args.slice(args[0] === 'bridge' ? 1 : 0), '-force', '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: 30_000 })
      .catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    if (r.code !== 0) this.opts.log.warn({ what, err: String(r.stderr).trim() }, 'overlay: some network commands failed');
  }

  private async json<T>(args: string[]): Promise<T[]> {
    const r = await runCommand(this.ip, ['-j', ...args], { timeoutMs: 30_000 }).catch(() => ({ code: -1, stdout: '[]', stderr: '' }));
    try { return JSON.parse(String(r.stdout) || '[]') as T[]; } catch { return []; }
  }

  private async sync(): Promise<void> {
    const links = new Map((await this.json<{ ifname: string }>(['link', 'show'])).map((l) => [l.ifname, l]));
    const rules = await this.json<{ iif?: string; table?: string; priority?: number }>(['rule', 'show']);
    const lines: string[] = [];
    const fdb: string[] = [];
    const rpFilterOff: string[] = [];

    // Networks gone from this node: their devices, rules and tables.
    const keep = new Set([...this.wanted.values()].flatMap((w) => [w.names.bridge, w.names.vxlan]));
    for (const name of links.keys()) {
      if (!/^y[bx]\d+$/.test(name) || keep.has(name)) continue;
      lines.push(`link del ${name}`);
      const vni = Number(name.slice(2));
      const t = deviceNames(vni).table;
      for (const r of rules) if (r.table === String(t)) lines.push(`rule del iif ${r.iif} table ${t}`);
      if (name.startsWith('yb')) lines.push(`route flush table ${t}`);
    }

    if (this.wanted.size > 0) await writeFile('/proc/sys/net/ipv4/ip_forward', '1').catch(() => undefined);
    for (const w of this.wanted.values()) {
      const { bridge, vxlan, table } = w.names;
      const gw = gateway(w.cidr, w.index);
      const mine = slice(w.cidr, w.index);
      if (!links.has(bridge)) lines.push(`link add ${bridge} mtu ${OVERLAY_MTU} type bridge`);
      lines.push(`addr replace ${gw}/${mine.prefix} dev ${bridge}`, `link set ${bridge} up`);
      rpFilterOff.push(bridge);
      const haveVx = links.has(vxlan);
      if (!haveVx) {
        lines.push(`link add ${vxlan} mtu ${OVERLAY_MTU} address ${vtepMac(w.net.vni, w.index)} type vxlan id ${w.net.vni} local ${this.opts.address} dstport ${VXLAN_PORT} nolearning`);
      }
      lines.push(`addr replace ${vtepAddress(w.cidr, w.index)}/32 dev ${vxlan}`, `link set ${vxlan} up`);
      rpFilterOff.push(vxlan);
      for (const dev of [bridge, vxlan]) {
        if (!rules.some((r) => r.iif === dev && r.table === String(table))) lines.push(`rule add iif ${dev} table ${table} pref 1000`);
      }
      // The network's own table: its slices here and elsewhere; every other network prohibited.
      lines.push(`route replace ${formatCidr(mine)} dev ${bridge} src ${gw} table ${table}`);
      for (const n of this.nodes) {
        if (n.id === this.opts.nodeId) continue;
        const idx = w.net.slices[n.id];
        if (idx === undefined || !n.address) continue;
        const vtep = vtepAddress(w.cidr, idx);
        const mac = vtepMac(w.net.vni, idx);
        const rs = formatCidr(slice(w.cidr, idx));
        lines.push(`neigh replace ${vtep} lladdr ${mac} dev ${vxlan} nud permanent`);
        lines.push(`route replace ${rs} via ${vtep} dev ${vxlan} onlink table ${table}`);
        lines.push(`route replace ${rs} via ${vtep} dev ${vxlan} onlink`);
        fdb.push(`fdb replace ${mac} dev ${vxlan} dst ${n.address} self permanent`);
      }
      for (const other of this.networks) if (other.id !== w.net.id) lines.push(`route replace prohibit ${other.subnet} table ${table}`);
      for (const vip of w.vips) lines.push(`addr replace ${vip}/32 dev ${bridge}`);
    }
    await this.batch(lines, 'devices and routes');
    // Slices of other nodes are reached through the VXLAN device only by the network's own table.
    for (const dev of rpFilterOff) await writeFile(`/proc/sys/net/ipv4/conf/${dev}/rp_filter`, '0').catch(() => undefined);
    await this.batch(fdb, 'vxlan forwarding', ['bridge']);
    await this.pruneAddresses();
    await this.checkVxlan();
  }

  /** VIPs a bridge no longer serves, and routes to slices that are gone. */
  private async pruneAddresses(): Promise<void> {
    const lines: string[] = [];
    const addrs = await this.json<{ ifname: string; addr_info: { local: string; prefixlen: number; family: string }[] }>(['addr', 'show']);
    for (const w of this.wanted.values()) {
      const gw = gateway(w.cidr, w.index);
      const dev = addrs.find((a) => a.ifname === w.names.bridge);
      for (const a of dev?.addr_info ?? []) {
        if (a.family !== 'inet' || a.local === gw || w.vips.has(a.local)) continue;
        lines.push(`addr del ${a.local}/${a.prefixlen} dev ${w.names.bridge}`);
      }
      const wantRoutes = new Set([formatCidr(slice(w.cidr, w.index)), ...Object.entries(w.net.slices).filter(([id]) => id !== this.opts.nodeId && this.nodes.some((n) => n.id === id)).map(([, i]) => formatCidr(slice(w.cidr, i))), ...this.networks.filter((o) => o.id !== w.net.id).map((o) => o.subnet)]);
      for (const r of await this.json<{ dst: string }>(['route', 'show', 'table', String(w.names.table)])) {
        const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
        if (!wantRoutes.has(dst)) lines.push(`route del ${dst} table ${w.names.table}`);
      }
    }
    await this.batch(lines, 'pruning');
  }

  private async checkVxlan(): Promise<void> {
    if (this.wanted.size === 0) return;
    const links = new Set((await this.json<{ ifname: string }>(['link', 'show'])).map((l) => l.ifname));
    const missing = [...this.wanted.values()].filter((w) => !links.has(w.names.vxlan));
    this.vxlanProblem = missing.length ? `no VXLAN device for network${missing.length > 1 ? 's' : ''} ${missing.map((w) => w.net.name).join(', ')} (the kernel may lack the vxlan module): tasks on other nodes are reached through VIPs only` : null;
  }

  /** Can this node build overlay networks at all (bridge + veth)? A reason when not. */
  static async probe(ip = 'ip'): Promise<string | null> {
    if (process.getuid?.() !== 0) return 'overlay networks need root (CAP_NET_ADMIN) on the node';
    const r = await runCommand(ip, ['-V'], { timeoutMs: 5000 }).catch(() => null);
    if (!r || r.code !== 0) return 'the ip command (iproute2) is missing: install the Debian package iproute2';
    const fwd = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8').catch(() => null);
    if (fwd === null) return 'the kernel has no IPv4 forwarding (/proc/sys/net/ipv4/ip_forward is missing)';
    return null;
  }
}
