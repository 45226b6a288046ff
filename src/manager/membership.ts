import { timingSafeEqual } from 'node:crypto';
import { YunError } from '../errors/errors.js';
import { GLOBAL, type Store, type StoredObject } from '../store/store.js';
import { newSecret } from '../util/ids.js';
import type { Clock } from '../util/clock.js';
import { listAll } from '../store/paging.js';

export type NodeRole = 'manager' | 'worker';
export type Availability = 'active' | 'pause' | 'drain';
export type NodeStatus = 'ready' | 'down' | 'unknown';

export interface NodeData {
  hostname: string;
  address: string;
  role: NodeRole;
  availability: Availability;
  status: NodeStatus;
  status_message: string;
  labels: Record<string, string>;
  resources: { cpus: number; memory_bytes: number };
  drivers: Record<string, { available: boolean; reason?: string }>;
  agent_version: string;
  platform: { os: string; arch: string; kernel: string };
  last_heartbeat: string | null;
  /** Second octet of this node's loopback VIPs (127.<octet>.x.y): unique per node, so several nodes on one machine never collide. */
  vip_octet?: number;
}

const TOKEN_RE = /^YUN-1-([0-9a-f]{64})-([A-Za-z0-9_-]{30,60})$/;

/**
 * Cluster membership: nodes, their heartbeats and the join tokens.
 *
 * Heartbeats are kept in memory (a write per heartbeat would flood the change feed); a node's
 * `status` is written to the store only when it changes, with `last_heartbeat` as of that moment.
 */
export class Membership {
  private heartbeats = new Map<string, number>();
  /** The node this manager process runs on (it cannot remove itself). */
  localNodeId: string | undefined;

  constructor(private store: Store, private clock: Clock, private caFingerprint: string) {}

  // ---- join tokens -------------------------------------------------------------------------

  private async secret(role: NodeRole): Promise<string> {
    let s = await this.store.getSecret(`join/${role}`);
    if (!s) {
      s = newSecret(30);
      await this.store.putSecret(`join/${role}`, s);
    }
    return s;
  }

  async joinToken(role: NodeRole): Promise<string> {
    return `YUN-1-${this.caFingerprint}-${await this.secret(role)}`;
  }

  async rotateJoinToken(role: NodeRole): Promise<string> {
    await this.store.putSecret(`join/${role}`, newSecret(30));
    return this.joinToken(role);
  }

  /** The role a join token grants, or a 401 that says why it is refused. */
  async checkJoinToken(token: string): Promise<NodeRole> {
    const m = TOKEN_RE.exec(token.trim());
    if (!m) throw new YunError('YUN_JOIN_TOKEN_INVALID', 'The join token is malformed (expected YUN-1-<ca fingerprint>-<secret>)');
    if (m[1] !== this.caFingerprint) {
      throw new YunError('YUN_JOIN_TOKEN_INVALID', 'The join token was made for another cloud: its CA fingerprint does not match this manager\'s CA');
    }
    for (const role of ['worker', 'manager'] as const) {
      const s = Buffer.from(await this.secret(role));
      const given = Buffer.from(m[2]!);
      if (s.length === given.length && timingSafeEqual(s, given)) return role;
    }
    throw new YunError('YUN_JOIN_TOKEN_INVALID', 'The join token\'s secret is not current (it may have been rotated)');
  }

  // ---- nodes ---------------------------------------------------------------------------------

  lastHeartbeat(nodeId: string): string | null {
    const t = this.heartbeats.get(nodeId);
    return t === undefined ? null : new Date(t).toISOString();
  }

  /** Register or refresh a node (same id → same object), marking it ready. */
  async register(id: string, info: Omit<NodeData, 'availability' | 'status' | 'status_message' | 'labels' | 'last_heartbeat'> & { labels?: Record<string, string> }): Promise<StoredObject> {
    const now = this.clock.now();
    this.heartbeats.set(id, now);
    for (let attempt = 0; ; attempt++) {
      const existing = await this.store.get('node', id);
      try {
        if (existing) {
          const prev = existing.data as unknown as NodeData;
          const data: NodeData = {
            ...prev, ...info, labels: { ...(info.labels ?? {}), ...prev.labels },
            status: 'ready', status_message: '', last_heartbeat: new Date(now).toISOString(),
          };
          return await this.store.update({ kind: 'node', id, version: existing.version, data: data as unknown as Record<string, unknown> });
        }
        const data: NodeData = {
          ...info, labels: info.labels ?? {}, availability: 'active', status: 'ready', status_message: '',
          last_heartbeat: new Date(now).toISOString(), vip_octet: await this.freeVipOctet(),
        };
        return await this.store.create({ kind: 'node', id, project_id: GLOBAL, name: await this.freeNodeName(info.hostname, info.address), data: data as unknown as Record<string, unknown> });
      } catch (e) {
        if (e instanceof YunError && e.code === 'YUN_VERSION_CONFLICT' && attempt < 5) continue;
        throw e;
      }
    }
  }

  /** The lowest second octet (100…254) no node uses yet for its loopback VIPs. */
  async freeVipOctet(): Promise<number> {
    const used = new Set((await listAll(this.store, 'node')).map((n) => Number(n.data.vip_octet)));
    for (let o = 100; o <= 254; o++) if (!used.has(o)) return o;
    return 100 + Math.floor(Math.random() * 155);
  }

  /** Node names are unique: the hostname, or hostname-address when two nodes share a host. */
  async freeNodeName(hostname: string, address: string): Promise<string> {
    if (!(await this.store.getByName('node', GLOBAL, hostname))) return hostname;
    const alt = `${hostname}-${address.replace(/[^A-Za-z0-9]/g, '-')}`;
    if (!(await this.store.getByName('node', GLOBAL, alt))) return alt;
    return `${hostname}-${newSecret(4).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
  }

  heartbeat(nodeId: string): void {
    this.heartbeats.set(nodeId, this.clock.now());
  }

  forget(nodeId: string): void {
    this.heartbeats.delete(nodeId);
  }

  /** Set a node's status if it changed (and its message); returns the node after. */
  async setStatus(nodeId: string, status: NodeStatus, message = ''): Promise<StoredObject | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const n = await this.store.get('node', nodeId);
      if (!n) return undefined;
      const d = n.data as unknown as NodeData;
      if (d.status === status && d.status_message === message) return n;
      try {
        return await this.store.update({ kind: 'node', id: nodeId, version: n.version, data: { ...d, status, status_message: message, last_heartbeat: this.lastHeartbeat(nodeId) ?? d.last_heartbeat } });
      } catch (e) {
        if (!(e instanceof YunError && e.code === 'YUN_VERSION_CONFLICT')) throw e;
      }
    }
    return undefined;
  }
}
