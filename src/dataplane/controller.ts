import type { Logger } from 'pino';
import { listAll } from '../store/paging.js';
import type { Change, Store } from '../store/store.js';
import type { ServiceData } from '../services/spec.js';
import type { TaskData } from '../services/task.js';
import { computeEndpoint, serverEndpoint, type Endpoint, type EndpointNode } from './endpoints.js';
import type { ServerData } from '../servers/server.js';

export interface DataplaneNode extends EndpointNode {
  vip_octet: number;
  /** Port of the node's data-plane tunnel, or null when it has none. */
  dataplane_port: number | null;
}

/** An overlay network as every agent needs to know it. */
export interface DataplaneNetwork {
  id: string;
  name: string;
  project_id: string;
  project: string;
  subnet: string;
  vni: number;
  attachable: boolean;
  /** Node id → slice index. */
  slices: Record<string, number>;
}

export interface EndpointsMessage {
  type: 'endpoints';
  full: boolean;
  upsert: Endpoint[];
  remove: string[];
  nodes: DataplaneNode[];
  networks: DataplaneNetwork[];
}

/**
 * The manager's side of the data plane: keeps every service's endpoint (tasks, health, ports) and
 * sends changes to every agent within milliseconds (bursts are batched for 20 ms), so a task that
 * stops or turns unhealthy leaves DNS and the load balancers well within a second.
 */
export class DataplaneController {
  private endpoints = new Map<string, Endpoint>();
  private dirty = new Set<string>();
  private nodesDirty = false;
  private timer?: NodeJS.Timeout;
  private unwatch?: () => void;
  private nodes: DataplaneNode[] = [];
  private networks: DataplaneNetwork[] = [];
  private networksDirty = false;

  constructor(private store: Store, private log: Logger, private broadcast: (m: EndpointsMessage) => void) {}

  async start(): Promise<void> {
    const rev = await this.store.revision();
    await this.loadNodes();
    await this.loadNetworks();
    for (const s of (await listAll(this.store, 'service'))) this.dirty.add(s.id);
    for (const s of (await listAll(this.store, 'server'))) this.dirty.add(s.id);
    await this.flush();
    this.unwatch = await this.store.watch(rev, (cs) => this.onChanges(cs));
  }

  stop(): void {
    this.unwatch?.();
    if (this.timer) clearTimeout(this.timer);
  }

  /** Everything, for an agent whose session just became ready. */
  full(): EndpointsMessage {
    return { type: 'endpoints', full: true, upsert: [...this.endpoints.values()], remove: [], nodes: this.nodes, networks: this.networks };
  }

  private onChanges(changes: Change[]): void {
    for (const c of changes) {
      if (c.kind === 'service' || c.kind === 'server') this.dirty.add(c.id);
      else if (c.kind === 'task') this.dirty.add((c.object.data as TaskData).service_id);
      else if (c.kind === 'node') this.nodesDirty = true;
      else if (c.kind === 'network') this.networksDirty = true;
    }
    if ((this.dirty.size || this.nodesDirty || this.networksDirty) && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush().catch((e) => this.log.error({ err: e }, 'data plane update failed'));
      }, 20);
    }
  }

  private async loadNodes(): Promise<void> {
    const nodes = (await listAll(this.store, 'node'));
    this.nodes = nodes.map((n) => ({ id: n.id, address: String(n.data.address), ready: n.data.status === 'ready', vip_octet: Number(n.data.vip_octet ?? 100), dataplane_port: typeof n.data.dataplane_port === 'number' ? n.data.dataplane_port : null }));
  }

  private async loadNetworks(): Promise<void> {
    const nets = (await listAll(this.store, 'network'));
    const names = new Map<string, string>();
    this.networks = [];
    for (const n of nets) {
      const d = n.data as Record<string, any>;
      if (!names.has(n.project_id)) names.set(n.project_id, (await this.store.get('project', n.project_id))?.name ?? n.project_id);
      this.networks.push({ id: n.id, name: n.name, project_id: n.project_id, project: names.get(n.project_id)!, subnet: d.subnet, vni: d.vni, attachable: d.attachable === true, slices: { ...(d.slices ?? {}) } });
    }
  }

  private async flush(): Promise<void> {
    let nodesChanged = false;
    if (this.networksDirty) {
      this.networksDirty = false;
      const before = JSON.stringify(this.networks);
      await this.loadNetworks();
      if (before !== JSON.stringify(this.networks)) nodesChanged = true;
    }
    if (this.nodesDirty) {
      this.nodesDirty = false;
      const before = JSON.stringify(this.nodes);
      await this.loadNodes();
      nodesChanged = before !== JSON.stringify(this.nodes);
      if (nodesChanged) for (const id of this.endpoints.keys()) this.dirty.add(id);
    }
    const ids = [...this.dirty];
    this.dirty.clear();
    const nodeMap = new Map(this.nodes.map((n) => [n.id, n]));
    const upsert: Endpoint[] = [];
    const remove: string[] = [];
    const projectNames = new Map<string, string>();
    const projectName = async (projectId: string) => {
      let pname = projectNames.get(projectId);
      if (!pname) {
        pname = (await this.store.get('project', projectId))?.name ?? projectId;
        projectNames.set(projectId, pname);
      }
      return pname;
    };
    for (const id of ids) {
      const svc = await this.store.get('service', id);
      const server = svc ? undefined : await this.store.get('server', id);
      if (!svc && !server) {
        if (this.endpoints.delete(id)) remove.push(id);
        continue;
      }
      let ep: Endpoint;
      if (server) {
        ep = serverEndpoint({ id: server.id, name: server.name, project_id: server.project_id, data: server.data as ServerData }, await projectName(server.project_id), nodeMap);
      } else {
        const tasks = await listAll(this.store, 'task', { filters: [{ field: 'service_id', op: 'eq', value: id }, { field: 'desired_state', op: 'eq', value: 'running' }] });
        ep = computeEndpoint({ id: svc!.id, name: svc!.name, project_id: svc!.project_id, data: svc!.data as ServiceData }, await projectName(svc!.project_id), tasks.map((t) => ({ id: t.id, data: t.data as TaskData })), nodeMap);
      }
      const prev = this.endpoints.get(id);
      if (prev && JSON.stringify(prev) === JSON.stringify(ep)) continue;
      this.endpoints.set(id, ep);
      upsert.push(ep);
    }
    if (upsert.length || remove.length || nodesChanged) this.broadcast({ type: 'endpoints', full: false, upsert, remove, nodes: this.nodes, networks: this.networks });
  }
}
