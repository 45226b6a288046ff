import type { PortConfig } from './spec.js';

/** Where ingress ports are published when the spec names no port: swarm mode's default range. */
export const PUBLISHED_RANGE = { first: 30000, last: 32767 } as const;

const key = (protocol: string, port: number) => `${protocol}/${port}`;

/**
 * The ports with every ingress port given a published port: one the user asked for stays; one
 * without gets the port it had before (`previous`, the same target and protocol), else the lowest
 * free port of the range. `taken` holds `protocol/port` of ports other services publish. Returns
 * undefined for a port when the range is full. Pure: the caller claims what it returns.
 */
export function assignPublishedPorts(ports: PortConfig[], taken: ReadonlySet<string>, previous: PortConfig[] = []): PortConfig[] | undefined {
  const used = new Set(taken);
  for (const p of ports) if (p.published) used.add(key(p.protocol, p.published));
  const out: PortConfig[] = [];
  for (const p of ports) {
    if (p.published || p.mode !== 'ingress') { out.push(p); continue; }
    const before = previous.find((q) => q.mode === 'ingress' && q.target === p.target && q.protocol === p.protocol && q.published && !used.has(key(q.protocol, q.published)));
    let port = before?.published;
    for (let n: number = PUBLISHED_RANGE.first; port === undefined && n <= PUBLISHED_RANGE.last; n++) if (!used.has(key(p.protocol, n))) port = n;
    if (port === undefined) return undefined;
    used.add(key(p.protocol, port));
    out.push({ ...p, published: port });
  }
  return out;
}
