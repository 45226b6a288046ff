import type { PortConfig, ServiceData } from '../services/spec.js';
import type { TaskData } from '../services/task.js';
import type { ServerData } from '../servers/server.js';

/**
 * What the data plane of every node needs to know about a service: how it is reached (VIP or DNS
 * round robin), its ports, and its tasks with their health. Computed by the manager (pure), sent to
 * every agent, which serves DNS and proxies connections from it.
 */
export interface EndpointTask {
  task_id: string;
  node_id: string;
  /** The address the task is reached at: its node's address (host-network tasks), else its address on its first network. */
  address: string;
  /** Its address on each overlay network it is on. */
  networks: { network_id: string; address: string }[];
  healthy: boolean;
  ports: { name?: string; protocol: 'tcp' | 'udp'; target: number; host_port: number }[];
}

export interface Endpoint {
  service_id: string;
  service: string;
  project_id: string;
  project: string;
  mode: 'vip' | 'dnsrr';
  /** Index of this service's VIP (1…65534): node n serves it at 127.<vip_octet of n>.<hi>.<lo>. */
  vip_index: number | null;
  /** Network id → the service's VIP on that network (vip mode). */
  network_vips: Record<string, string>;
  /** Ids of the overlay networks the service is on. */
  networks: string[];
  ports: PortConfig[];
  tasks: EndpointTask[];
}

export interface EndpointNode {
  id: string;
  address: string;
  ready: boolean;
}

/** A task serves traffic when it runs, is meant to, is healthy (when checked), and its node is ready. */
export function taskHealthy(d: TaskData, nodeReady: boolean): boolean {
  return nodeReady && d.desired_state === 'running' && d.status.state === 'running' && (!d.spec.health_check || d.status.health === 'healthy');
}

export function computeEndpoint(
  service: { id: string; name: string; project_id: string; data: ServiceData },
  projectName: string,
  tasks: { id: string; data: TaskData }[],
  nodes: Map<string, EndpointNode>,
): Endpoint {
  const spec = service.data.spec;
  return {
    service_id: service.id,
    service: service.name,
    project_id: service.project_id,
    project: projectName,
    mode: spec.endpoint.mode,
    vip_index: spec.endpoint.mode === 'vip' ? (service.data.vip_index as number | undefined) ?? null : null,
    network_vips: spec.endpoint.mode === 'vip' ? { ...(service.data.network_vips ?? {}) } : {},
    networks: [...spec.networks],
    ports: spec.endpoint.ports,
    tasks: tasks
      .filter((t) => t.data.node_id && t.data.desired_state === 'running' && t.data.status.state === 'running')
      .map((t) => {
        const n = nodes.get(t.data.node_id!);
        const nets = (t.data.networks ?? []).filter((x) => x.address).map((x) => ({ network_id: x.id, address: x.address! }));
        // A task on overlay networks is reached at its own address and target ports, from anywhere.
        const onNet = nets.length > 0;
        return {
          task_id: t.id,
          node_id: t.data.node_id!,
          address: onNet ? nets[0]!.address : n?.address ?? '',
          networks: nets,
          healthy: taskHealthy(t.data, n?.ready ?? false),
          ports: (t.data.status.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), protocol: p.protocol, target: p.target, host_port: onNet ? p.target : p.host_port })),
        };
      }),
  };
}

/**
 * A server in the data plane: a name in its project's DNS (and on each of its networks) for its
 * address, answered while it runs — a DNS round-robin "service" of one, with no ports.
 */
export function serverEndpoint(server: { id: string; name: string; project_id: string; data: ServerData }, projectName: string, nodes: Map<string, EndpointNode>): Endpoint {
  const d = server.data;
  const nets = d.networks.filter((n) => n.address).map((n) => ({ network_id: n.id, address: n.address! }));
  const node = d.node_id ? nodes.get(d.node_id) : undefined;
  return {
    service_id: server.id, service: server.name, project_id: server.project_id, project: projectName,
    mode: 'dnsrr', vip_index: null, network_vips: {}, networks: d.networks.map((n) => n.id), ports: [],
    tasks: nets.length && d.node_id ? [{ task_id: server.id, node_id: d.node_id, address: nets[0]!.address, networks: nets, healthy: d.power_state === 'running' && (node?.ready ?? false), ports: [] }] : [],
  };
}

/** The VIP a node serves a service at (host network): 127.<node octet>.<hi>.<lo>. */
export function vipAddress(nodeOctet: number, vipIndex: number): string {
  return `127.${nodeOctet}.${vipIndex >> 8}.${vipIndex & 255}`;
}
