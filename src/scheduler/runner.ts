import type { Logger } from 'pino';
import { listAll } from '../store/paging.js';
import { formatSize } from '../util/size.js';
import { YunError } from '../errors/errors.js';
import type { Change, Op, Store, StoredObject } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { isActive, type TaskData } from '../services/task.js';
import { freeSlice, freeTaskAddress, nodeSliceCount, parseCidr } from '../network/ipam.js';
import type { NetworkData } from '../network/network.js';
import type { TaskTemplate } from '../services/spec.js';
import { parseConstraint } from './constraints.js';
import { explain, schedule } from './scheduler.js';
import { filtersFor } from './filters.js';
import { DEFAULT_CPU_RATIO, DEFAULT_RAM_RATIO, cpuNeed, memoryNeed, type Constraint, type SchedNode, type SchedTask } from './types.js';
import { reservedDiskBytes, type FlavorSnapshot } from '../servers/flavor.js';
import { failServer } from '../servers/states.js';
import type { ServerData } from '../servers/server.js';
import type { VolumeData } from '../volumes/volume.js';
import { volumesOf } from '../volumes/queries.js';

/** The drivers a task may use: its own, or (no driver given) oci/docker for an image, process otherwise. */
export function candidateDrivers(spec: TaskTemplate): string[] {
  if (spec.driver) return [spec.driver];
  return spec.image ? ['oci', 'docker'] : ['process'];
}

export function toSchedTask(id: string, d: TaskData): SchedTask {
  const spec = d.spec;
  return {
    id,
    serviceId: d.service_id,
    groupKey: `${d.service_id}#${d.spec_version}#${d.pinned_node ?? ''}`,
    drivers: candidateDrivers(spec),
    constraints: spec.placement.constraints.map(parseConstraint).filter((c): c is Constraint => typeof c !== 'string'),
    spreadOver: spec.placement.preferences.map((p) => p.spread.replace(/^node\.labels\./, '')),
    reserveCpu: spec.resources.reservations.cpu,
    reserveMemory: spec.resources.reservations.memory_bytes,
    hostPorts: d.ports.filter((p) => p.mode === 'host' && p.published).map((p) => `${p.protocol}/${p.published}`),
    maxReplicasPerNode: spec.placement.max_replicas_per_node,
    pinnedNode: d.pinned_node ?? undefined,
    requiredFeatures: d.networks?.length ? ['overlay'] : [],
  };
}

export function toSchedNode(n: StoredObject): SchedNode {
  const d = n.data as Record<string, any>;
  const drivers = new Set<string>(Object.entries((d.drivers ?? {}) as Record<string, { available: boolean }>).filter(([, v]) => v.available).map(([k]) => k));
  return {
    id: n.id, name: n.name, role: d.role, labels: d.labels ?? {}, ready: d.status === 'ready', availability: d.availability,
    drivers, missingFeatures: new Map(Object.entries((d.missing_features ?? {}) as Record<string, string>)),
    cpus: d.resources?.cpus ?? 0, memoryBytes: d.resources?.memory_bytes ?? 0, diskBytes: d.resources?.disk_bytes ?? 0,
    cpuRatio: d.allocation_ratios?.cpu ?? DEFAULT_CPU_RATIO, ramRatio: d.allocation_ratios?.ram ?? DEFAULT_RAM_RATIO,
    reservedCpu: 0, reservedMemory: 0, reservedDisk: 0, hostPorts: new Set(), serviceTasks: new Map(), totalTasks: 0,
  };
}

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/**
 * A server as the scheduler sees it: its flavor's vCPUs, RAM and disk, its driver, KVM when its
 * flavor asks. A server booted from a volume holds no root disk of its own (the volume does: `bootBytes`
 * of it while that volume is not yet placed), and one with volumes goes to their node.
 */
export function serverSchedTask(id: string, d: ServerData, flavor: FlavorSnapshot = d.flavor, vols?: { node: string | null; name: string; boot: boolean; bytes: number }[]): SchedTask {
  const boot = (d.volumes ?? []).some((v) => v.boot);
  const placed = (vols ?? []).filter((v) => v.node);
  const rootBytes = boot ? 0 : Math.max(flavor.disk_gb * GiB, d.image.min_disk_bytes);
  const newVolumes = (vols ?? []).filter((v) => !v.node).reduce((a, v) => a + v.bytes, 0);
  return {
    id, serviceId: `server:${id}`, groupKey: `server:${id}`, drivers: [d.driver], constraints: [], spreadOver: [],
    reserveCpu: 0, reserveMemory: 0, reserveVcpus: flavor.vcpus, reserveRam: flavor.ram_mb * MiB,
    reserveDisk: reservedDiskBytes(flavor) - flavor.disk_gb * GiB + rootBytes + newVolumes,
    ...(placed.length ? { volumeNode: { node: placed[0]!.node!, volumes: placed.map((v) => v.name) } } : {}),
    hostPorts: [], maxReplicasPerNode: 0,
    requiredFeatures: [...(d.networks.length ? ['overlay'] : []), ...(flavor.properties['hw:accel'] === 'kvm' ? ['kvm'] : [])],
  };
}

/** Is the server holding resources on its node? Every placed server does, stopped ones too (as Nova's claims). */
const holdsNode = (d: ServerData) => d.node_id !== null;

/**
 * Places pending tasks whenever something that could change a placement happens: a task becomes
 * pending, a task ends (resources free up), a node joins or changes. Unplaceable tasks stay
 * `pending`, with the reason in their status message.
 */
export class SchedulerRunner {
  private scheduled = false;
  private running = false;
  private again = false;
  private unwatch?: () => void;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private store: Store, private clock: Clock, private log: Logger) {}

  async start(): Promise<void> {
    const rev = await this.store.revision();
    this.unwatch = await this.store.watch(rev, (cs) => this.onChanges(cs));
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
  }

  private onChanges(changes: Change[]): void {
    for (const c of changes) {
      if (c.kind === 'node') return this.kick();
      if (c.kind === 'server') {
        const d = c.object.data as ServerData;
        // A server to place, or one that frees what it held.
        if (c.type === 'delete' || (d.task_state === 'scheduling' && d.node_id === null)) return this.kick();
        continue;
      }
      if (c.kind !== 'task') continue;
      const d = c.object.data as TaskData;
      // New pending work, or resources freed up.
      if (d.status.state === 'pending' || c.type === 'delete' || d.status.state === 'complete' || d.status.state === 'failed' || d.status.state === 'shutdown' || d.status.state === 'rejected' || d.status.state === 'orphaned') {
        return this.kick();
      }
    }
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) { this.again = true; return; }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.pass();
    });
  }

  async idle(): Promise<void> {
    if (!this.running && !this.scheduled) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private async pass(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      do {
        this.again = false;
        await this.passOnce();
      } while (this.again && !this.stopped);
    } catch (e) {
      if (!(e instanceof YunError && e.code === 'YUN_VERSION_CONFLICT')) this.log.error({ err: e }, 'scheduling pass failed');
      setTimeout(() => this.kick(), 200).unref();
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Nodes with what running tasks and placed servers reserve on them; addresses in use per network. */
  private async snapshot(): Promise<{ nodes: SchedNode[]; byId: Map<string, SchedNode>; used: Map<string, Set<string>> }> {
    const nodes = (await listAll(this.store, 'node')).map(toSchedNode);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const used = new Map<string, Set<string>>();
    const use = (net: string, address: string | null) => { if (address) (used.get(net) ?? used.set(net, new Set()).get(net)!).add(address); };
    const active = await listAll(this.store, 'task', { filters: [{ field: 'node_id', op: 'exists' }] });
    for (const t of active) {
      const d = t.data as TaskData;
      if (!isActive(d)) continue;
      for (const n of d.networks ?? []) use(n.id, n.address);
      const n = byId.get(d.node_id!);
      if (!n) continue;
      n.reservedCpu += d.spec.resources.reservations.cpu;
      n.reservedMemory += d.spec.resources.reservations.memory_bytes;
      for (const p of d.ports) if (p.mode === 'host' && p.published) n.hostPorts.add(`${p.protocol}/${p.published}`);
      n.serviceTasks.set(d.service_id, (n.serviceTasks.get(d.service_id) ?? 0) + 1);
      n.totalTasks += 1;
    }
    for (const o of await listAll(this.store, 'server', { filters: [{ field: 'node_id', op: 'exists' }] })) {
      const d = o.data as ServerData;
      for (const net of d.networks) use(net.id, net.address);
      const n = holdsNode(d) ? byId.get(d.node_id!) : undefined;
      if (!n) continue;
      const t = serverSchedTask(o.id, d);
      n.reservedCpu += cpuNeed(t, n);
      n.reservedMemory += memoryNeed(t, n);
      n.reservedDisk = (n.reservedDisk ?? 0) + (t.reserveDisk ?? 0);
      n.totalTasks += 1;
    }
    // Volumes hold their size of their node's disk (sparse or not: they may come to).
    for (const o of await listAll(this.store, 'volume', { filters: [{ field: 'node_id', op: 'exists' }] })) {
      const d = o.data as VolumeData;
      const n = d.node_id ? byId.get(d.node_id) : undefined;
      if (n) n.reservedDisk = (n.reservedDisk ?? 0) + Math.max(d.size_gb, d.desired.size_gb) * GiB;
    }
    return { nodes, byId, used };
  }

  /**
   * A node for a new volume of `bytes` (the one with the most disk free, or `nodeId` when given):
   * throws YUN_INSUFFICIENT_DISK naming what each node has free when none can hold it.
   */
  async placeVolume(bytes: number, nodeId?: string): Promise<StoredObject> {
    const { nodes } = await this.snapshot();
    const candidates = nodes.filter((n) => n.ready && n.availability === 'active' && (n.drivers.has('qemu') || n.drivers.has('oci')) && (!nodeId || n.id === nodeId));
    const free = (n: SchedNode) => (n.diskBytes ?? 0) - (n.reservedDisk ?? 0);
    const fits = candidates.filter((n) => free(n) >= bytes).sort((a, b) => free(b) - free(a) || a.name.localeCompare(b.name));
    if (!fits.length) {
      const what = candidates.length ? candidates.map((n) => `${n.name} has ${formatSize(Math.max(0, free(n)))} free of ${formatSize(n.diskBytes ?? 0)}`).join('; ') : 'no node is ready and active with a driver that uses volumes (qemu or oci)';
      throw new YunError('YUN_INSUFFICIENT_DISK', `No node can hold a volume of ${formatSize(bytes)}: ${what}`, { extra: { requested_bytes: bytes } });
    }
    return (await this.store.get('node', fits[0]!.id))!;
  }

  /** Can a volume on `nodeId` grow by `bytes` there? Throws YUN_INSUFFICIENT_DISK otherwise. */
  async checkVolumeGrowth(nodeId: string, bytes: number): Promise<void> {
    const { byId } = await this.snapshot();
    const n = byId.get(nodeId);
    const free = n ? (n.diskBytes ?? 0) - (n.reservedDisk ?? 0) : 0;
    if (!n || free < bytes) throw new YunError('YUN_INSUFFICIENT_DISK', `The volume's node ${n?.name ?? nodeId} has ${formatSize(Math.max(0, free))} free, and the volume would grow by ${formatSize(bytes)}`, { extra: { requested_bytes: bytes } });
  }

  /**
   * Can a server be resized to `flavor` on its own node (what it holds now given back)? Throws
   * YUN_NO_VALID_HOST naming what does not fit.
   */
  async checkResize(serverId: string, d: ServerData, flavor: FlavorSnapshot): Promise<void> {
    const { byId } = await this.snapshot();
    const n = d.node_id ? byId.get(d.node_id) : undefined;
    if (!n) throw new YunError('YUN_NO_VALID_HOST', `The node of the server (${d.node_id ?? 'none'}) is no longer in the cluster, so it cannot be resized there`);
    const cur = serverSchedTask(serverId, d);
    n.reservedCpu -= cpuNeed(cur, n);
    n.reservedMemory -= memoryNeed(cur, n);
    n.reservedDisk = (n.reservedDisk ?? 0) - (cur.reserveDisk ?? 0);
    const want = serverSchedTask(serverId, d, flavor);
    const filters = filtersFor(want).filter((f) => f.kind === 'dynamic' || f.name === 'features');
    if (!filters.every((f) => f.check(want, n))) {
      throw new YunError('YUN_NO_VALID_HOST', `Flavor ${flavor.name} does not fit on the server's node ${n.name}: ${explain(want, [n], filters).replace(/^no suitable node \((.*)\)$/, '$1')}`, { hint: 'Free resources on that node (or stop other servers there), or choose a smaller flavor.' });
    }
  }

  private async passOnce(): Promise<void> {
    const pending = await listAll(this.store, 'task', { filters: [{ field: 'status.state', op: 'eq', value: 'pending' }, { field: 'desired_state', op: 'eq', value: 'running' }] });
    const waiting = (await listAll(this.store, 'server', { filters: [{ field: 'task_state', op: 'eq', value: 'scheduling' }, { field: 'node_id', op: 'eq', value: null }] }))
      .filter((o) => !(o.data as ServerData).desired.deleting);
    if (pending.length === 0 && waiting.length === 0) return;
    const { nodes, byId, used } = await this.snapshot();
    pending.sort((a, b) => a.created_at.localeCompare(b.created_at));
    waiting.sort((a, b) => a.created_at.localeCompare(b.created_at));
    const volsOf = new Map<string, StoredObject[]>();
    for (const o of waiting) if ((o.data as ServerData).volumes?.length) volsOf.set(o.id, await volumesOf(this.store, o.id));
    const schedVols = (id: string) => volsOf.get(id)?.map((v) => ({ node: (v.data as VolumeData).node_id, name: v.name, boot: (v.data as VolumeData).attachment?.boot ?? false, bytes: (v.data as VolumeData).size_gb * GiB }));
    const result = schedule([
      ...waiting.map((o) => serverSchedTask(o.id, o.data as ServerData, undefined, schedVols(o.id))),
      ...pending.map((t) => toSchedTask(t.id, t.data as TaskData)),
    ], nodes);
    const byTask = new Map([...pending, ...waiting].map((t) => [t.id, t]));
    const iso = this.clock.iso();
    const ops: Op[] = [];
    const addressing = await this.addresses(result.placements.map((p) => {
      const o = byTask.get(p.taskId)!;
      return { id: o.id, nodeId: p.nodeId, networks: o.kind === 'server' ? (o.data as ServerData).networks : (o.data as TaskData).networks ?? [] };
    }), used);
    if (addressing.conflict) this.again = true;
    for (const p of result.placements) {
      const t = byTask.get(p.taskId)!;
      const nets = addressing.items.get(t.id);
      if (nets === null) continue; // its network's update conflicted: next pass
      if (typeof nets === 'string') {
        result.unplaced.push({ taskId: t.id, reason: nets });
        continue;
      }
      const node = byId.get(p.nodeId)?.name ?? p.nodeId;
      if (t.kind === 'server') {
        const d = t.data as ServerData;
        const networks = d.networks.map((n) => ({ ...n, address: nets?.find((x) => x.id === n.id)?.address ?? n.address }));
        ops.push({ op: 'update', kind: 'server', id: t.id, version: t.version, data: { ...d, networks, node_id: p.nodeId, task_state: 'spawning', message: `placed on node ${node}` } });
        // Its new volumes (a root volume from its image) are made on the same node.
        for (const v of volsOf.get(t.id) ?? []) {
          if ((v.data as VolumeData).node_id) continue;
          ops.push({ op: 'update', kind: 'volume', id: v.id, version: v.version, data: { ...(v.data as VolumeData), node_id: p.nodeId } });
        }
        continue;
      }
      const d = t.data as TaskData;
      ops.push({ op: 'update', kind: 'task', id: t.id, version: t.version, data: { ...d, ...(nets ? { networks: nets } : {}), node_id: p.nodeId, status: { ...d.status, state: 'assigned', message: `assigned to node ${node}`, timestamp: iso } } });
    }
    for (const u of result.unplaced) {
      const t = byTask.get(u.taskId)!;
      if (t.kind === 'server') {
        // As Nova: a server no node can take is ERROR at once, with every filter's count in its fault.
        ops.push({ op: 'update', kind: 'server', id: t.id, version: t.version, data: failServer(t.data as ServerData, { code: 'YUN_NO_VALID_HOST', message: 'No valid host was found', details: u.reason }, iso) });
        continue;
      }
      const d = t.data as TaskData;
      if (d.status.message === u.reason) continue;
      ops.push({ op: 'update', kind: 'task', id: t.id, version: t.version, data: { ...d, status: { ...d.status, message: u.reason, timestamp: iso } } });
    }
    // Apply in chunks so a conflict on one task does not undo the rest.
    for (let i = 0; i < ops.length; i += 500) {
      const chunk = ops.slice(i, i + 500);
      try {
        await this.store.batch(chunk);
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        for (const op of chunk) {
          try { await this.store.batch([op]); } catch { this.again = true; }
        }
      }
    }
  }

  /**
   * Overlay addresses for placed tasks and servers: the node's slice of each network (allocated
   * here on the node's first user of it, stored on the network) and the lowest free address in it.
   * Per item: its networks, a reason it cannot be placed (string), or null when a network changed
   * meanwhile.
   */
  private async addresses(placed: { id: string; nodeId: string; networks: { id: string; address: string | null }[] }[], used: Map<string, Set<string>>): Promise<{ items: Map<string, { id: string; address: string }[] | string | null>; conflict: boolean }> {
    const out = new Map<string, { id: string; address: string }[] | string | null>();
    const needs = placed.filter((p) => p.networks.length);
    if (needs.length === 0) return { items: out, conflict: false };
    const nets = new Map<string, { obj: StoredObject; data: NetworkData; dirty: boolean }>();
    for (const { id: itemId, nodeId, networks } of needs) {
      const assigned: { id: string; address: string }[] = [];
      let problem: string | null = null;
      for (const tn of networks) {
        let net = nets.get(tn.id);
        if (!net) {
          const obj = await this.store.get('network', tn.id);
          if (!obj) { problem = `network ${tn.id} no longer exists`; break; }
          net = { obj, data: structuredClone(obj.data as NetworkData), dirty: false };
          nets.set(tn.id, net);
        }
        const cidr = parseCidr(net.data.subnet);
        let index = net.data.slices[nodeId];
        if (index === undefined) {
          const free = freeSlice(cidr, Object.values(net.data.slices));
          if (free === null) { problem = `network "${net.obj.name}" (${net.data.subnet}) has address space for ${nodeSliceCount(cidr)} nodes, and all are taken: recreate it with a larger --subnet`; break; }
          index = free;
          net.data.slices[nodeId] = free;
          net.dirty = true;
        }
        const u = used.get(tn.id) ?? used.set(tn.id, new Set()).get(tn.id)!;
        const address = freeTaskAddress(cidr, index, u);
        if (!address) { problem = `network "${net.obj.name}" has no free address left on this node (its slice of ${net.data.subnet} is full)`; break; }
        u.add(address);
        assigned.push({ id: tn.id, address });
      }
      out.set(itemId, problem ?? assigned);
    }
    let conflict = false;
    for (const [id, net] of nets) {
      if (!net.dirty) continue;
      try {
        await this.store.batch([{ op: 'update', kind: 'network', id, version: net.obj.version, data: net.data }]);
      } catch (e) {
        if (!(e instanceof YunError && (e.code === 'YUN_VERSION_CONFLICT' || e.code === 'YUN_NOT_FOUND'))) throw e;
        conflict = true;
        for (const item of needs) if (item.networks.some((n) => n.id === id)) out.set(item.id, null);
      }
    }
    return { items: out, conflict };
  }
}
