/**
 * Address management of overlay networks (pure). A network's subnet is cut into equal node
 * slices; each node that runs a task of the network gets one (allocated by the scheduler, stored
 * on the network), and hands out its tasks' addresses from it, so an address is never given twice
 * and no node needs to ask another. The last slice holds the network's service VIPs.
 *
 * In a slice: `.0` (first address) is the node's VXLAN endpoint address, `.1` the gateway on the
 * node's bridge (also where the node's DNS answers), the rest up to the broadcast address are tasks.
 */

export interface Cidr { base: number; prefix: number }

export const DEFAULT_POOL: Cidr = { base: ipToInt('10.128.0.0'), prefix: 9 };
export const DEFAULT_PREFIX = 16;
/** The smallest subnet an overlay network may have (four slices: three nodes and the VIPs). */
export const MAX_PREFIX = 26;

export function ipToInt(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) throw new Error(`"${ip}" is not an IPv4 address`);
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) throw new Error(`"${ip}" is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parse `A.B.C.D/N`; the address must be the network's own (no host bits), as Docker requires. */
export function parseCidr(text: string): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a subnet in CIDR form (e.g. 10.20.0.0/16)`);
  const base = ipToInt(m[1]!);
  const prefix = Number(m[2]);
  if (prefix > 32) throw new Error(`"${text}": the prefix length must be 0…32`);
  if ((base & mask(prefix)) >>> 0 !== base) throw new Error(`"${text}" has host bits set: did you mean ${intToIp((base & mask(prefix)) >>> 0)}/${prefix}?`);
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${intToIp(c.base)}/${c.prefix}`;
}

export function contains(c: Cidr, ip: number): boolean {
  return ((ip & mask(c.prefix)) >>> 0) === c.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & mask(p)) >>> 0) === ((b.base & mask(p)) >>> 0);
}

/** Why this subnet cannot be an overlay network, or null. */
export function subnetProblem(c: Cidr): string | null {
  if (c.prefix > MAX_PREFIX) return `a /${c.prefix} is too small for an overlay network: it needs at least a /${MAX_PREFIX} (a slice per node plus one for VIPs)`;
  if (c.prefix < 8) return `a /${c.prefix} is too large: use at most a /8`;
  const first = c.base >>> 24;
  if (first === 127 || first === 0 || first >= 224) return `${formatCidr(c)} is not usable (loopback, "this network", multicast or reserved)`;
  return null;
}

/** Slices are /24 on large subnets, smaller on small ones (16 slices at least), never below /28. */
export function slicePrefix(subnetPrefix: number): number {
  return Math.min(28, Math.max(24, subnetPrefix + 4));
}

export function sliceCount(c: Cidr): number {
  return 2 ** (slicePrefix(c.prefix) - c.prefix);
}

/** Slices nodes may have: all but the last (the VIP slice). */
export function nodeSliceCount(c: Cidr): number {
  return sliceCount(c) - 1;
}

export function slice(c: Cidr, index: number): Cidr {
  const sp = slicePrefix(c.prefix);
  return { base: (c.base + index * 2 ** (32 - sp)) >>> 0, prefix: sp };
}

export function sliceSize(c: Cidr): number {
  return 2 ** (32 - slicePrefix(c.prefix));
}

/** Gateway of a node slice (`.1`). */
export function gateway(c: Cidr, index: number): string {
  return intToIp(slice(c, index).base + 1);
}

/** VXLAN endpoint address of a node slice (`.0`). */
export function vtepAddress(c: Cidr, index: number): string {
  return intToIp(slice(c, index).base);
}

/** The lowest free slice, or null when all node slices are taken. */
export function freeSlice(c: Cidr, used: Iterable<number>): number | null {
  const u = new Set(used);
  for (let i = 0; i < nodeSliceCount(c); i++) if (!u.has(i)) return i;
  return null;
}

/** The lowest free task address in a node slice (`.2` up to the one before broadcast), or null. */
export function freeTaskAddress(c: Cidr, index: number, used: Iterable<string>): string | null {
  const u = new Set(used);
  const s = slice(c, index);
  for (let i = 2; i < sliceSize(c) - 1; i++) {
    const a = intToIp(s.base + i);
    if (!u.has(a)) return a;
  }
  return null;
}

/** The lowest free VIP in the VIP slice (the last), or null. */
export function freeVip(c: Cidr, used: Iterable<string>): string | null {
  const u = new Set(used);
  const s = slice(c, sliceCount(c) - 1);
  for (let i = 1; i < sliceSize(c) - 1; i++) {
    const a = intToIp(s.base + i);
    if (!u.has(a)) return a;
  }
  return null;
}

/** A free /prefix from the pool that overlaps none of `taken`, or null. */
export function freeSubnet(taken: Cidr[], pool: Cidr = DEFAULT_POOL, prefix = DEFAULT_PREFIX): Cidr | null {
  const step = 2 ** (32 - prefix);
  const count = 2 ** (prefix - pool.prefix);
  for (let i = 0; i < count; i++) {
    const c = { base: (pool.base + i * step) >>> 0, prefix };
    if (!taken.some((t) => overlaps(t, c))) return c;
  }
  return null;
}

/** The kernel-facing names of a network's devices on a node (at most 15 bytes). */
export function deviceNames(vni: number): { bridge: string; vxlan: string; table: number } {
  return { bridge: `yb${vni}`, vxlan: `yx${vni}`, table: 0x5900 + (vni - 4096) };
}

/** The VXLAN device's MAC on a node: stable, locally administered, unique per network and slice. */
export function vtepMac(vni: number, sliceIndex: number): string {
  const b = [0x02, (vni >> 16) & 255, (vni >> 8) & 255, vni & 255, (sliceIndex >> 8) & 255, sliceIndex & 255];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
