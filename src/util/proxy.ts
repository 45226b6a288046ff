import { isIP } from 'node:net';

/**
 * Proxy decisions for outbound calls (story 1): honour HTTP_PROXY / HTTPS_PROXY / NO_PROXY,
 * and never send the cluster's own addresses (or loopback) through a proxy.
 */
export interface ProxyEnv {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy: string[];
}

export function readProxyEnv(env: NodeJS.ProcessEnv = process.env): ProxyEnv {
  const pick = (...names: string[]) => names.map((n) => env[n]).find((v) => v && v.trim() !== '')?.trim();
  const noProxy = (pick('NO_PROXY', 'no_proxy') ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  return { httpProxy: pick('HTTP_PROXY', 'http_proxy'), httpsProxy: pick('HTTPS_PROXY', 'https_proxy'), noProxy };
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => (a << 8) + Number(o), 0) >>> 0;
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  if (isIP(ip) !== 4 || isIP(base!) !== 4 || !(bits >= 0 && bits <= 32)) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) === (ipv4ToInt(base!) & mask);
}

/** True when `host` matches a NO_PROXY entry (`*`, exact, `.suffix`, `suffix`, CIDR). */
export function matchesNoProxy(host: string, noProxy: string[]): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  for (const entry of noProxy) {
    if (entry === '*') return true;
    const e = entry.replace(/:\d+$/, '');
    if (e.includes('/')) { if (inCidr(h, e)) return true; continue; }
    if (h === e) return true;
    const suffix = e.startsWith('.') ? e : `.${e}`;
    if (!isIP(h) && h.endsWith(suffix)) return true;
  }
  return false;
}

/** Loopback and the cluster's own addresses never go through a proxy. */
export function isLocalAddress(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || inCidr(h, '127.0.0.0/8');
}

/**
 * The proxy URL to use for `url`, or undefined for a direct connection.
 * `clusterHosts` are the addresses of this cloud's own nodes and managers.
 */
export function proxyFor(url: string, env: ProxyEnv, clusterHosts: Iterable<string> = []): string | undefined {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (isLocalAddress(host)) return undefined;
  for (const c of clusterHosts) if (c.toLowerCase() === host.toLowerCase()) return undefined;
  if (matchesNoProxy(host, env.noProxy)) return undefined;
  return u.protocol === 'https:' ? env.httpsProxy ?? env.httpProxy : env.httpProxy;
}

/** Does a proxy variable capture `host` (i.e. would a naive client send it through the proxy)? */
export function proxyCaptures(host: string, env: ProxyEnv): boolean {
  if (!env.httpProxy && !env.httpsProxy) return false;
  return !matchesNoProxy(host, env.noProxy) && !isLocalAddress(host);
}
