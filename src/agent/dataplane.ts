import type { Logger } from 'pino';
import { DnsServer, type DnsEndpoint } from '../dataplane/dns.js';
import { L4Proxy, type Backend } from '../dataplane/proxy.js';
import { TunnelServer, tunnelDialer } from '../dataplane/tunnel.js';
import { vipAddress, type Endpoint } from '../dataplane/endpoints.js';
import type { DataplaneNetwork, DataplaneNode, EndpointsMessage } from '../dataplane/controller.js';
import { OverlayHost, VXLAN_PORT } from './overlay.js';
import { NftFastPath, nftTableName, type FastRule } from '../dataplane/nft.js';
import { BackendProbe, conntrackProblem, dropConnections, PROBE_INTERVAL_MS, type ProbeTarget } from '../dataplane/probe.js';

export interface AgentDataplaneOptions {
  nodeId: string;
  /** This node's address: DNS listens here; so does the routing mesh on a loopback address. */
  address: string;
  /** DNS port (default 53). 0 turns DNS off. */
  dnsPort: number;
  /** Port of the node-to-node tunnel (mutual TLS); 0 turns it off (remote backends are dialled directly). */
  tunnelPort: number;
  /** This node's certificate and key and the cluster CA (needed for the tunnel). */
  tls?: { cert: string; key: string; ca: string };
  /** Build overlay networks on this node (needs root); default: when running as root. */
  overlay?: boolean;
  log: Logger;
}

/**
 * The data plane of a node (the portable path): a DNS server for service discovery, a load
 * balancer on every VIP (127.<node octet>.x.y, on loopback), and the routing mesh (every published
 * port, on every node). Backends are the healthy tasks of the service on any node; a connection to a
 * dead backend fails over to the next at once, and never hangs.
 */
export class AgentDataplane {
  private endpoints = new Map<string, Endpoint>();
  private nodes: DataplaneNode[] = [];
  private networks: DataplaneNetwork[] = [];
  private dns?: DnsServer;
  /** Overlay networks in the kernel (null: this node does not build them). */
  readonly overlay: OverlayHost | null;
  /** Gateways the DNS server answers on (one per overlay network here), port 53. */
  private dnsGateways = new Set<string>();
  private proxy: L4Proxy;
  private listening = new Map<string, { address: string; port: number }>();
  private syncing: Promise<void> = Promise.resolve();
  dnsAddress?: string;
  private tunnel?: TunnelServer;
  /** The nftables fast path (kernel DNAT for services whose backends are all on this node). */
  readonly fast: NftFastPath;
  /** How many service ports the fast path carries now (of them, with backends on other nodes). */
  private fastRules = 0;
  private fastRemoteRules = 0;
  /** Why backends on other nodes stay on the proxy and tunnel, or null when the kernel reaches them. */
  remoteProblem: string | null = 'not probed yet';
  private readonly probe = new BackendProbe({
    // The rules are replaced first, so a SYN sent again is DNATed to a backend that answers.
    onChange: (t, up) => { void this.resync().then(() => (up ? undefined : dropConnections(t))); },
  });
  /** The port the tunnel listens on, once it does. */
  tunnelPort: number | null = null;

  constructor(private opts: AgentDataplaneOptions) {
    this.fast = new NftFastPath(nftTableName(opts.nodeId), opts.log.child({ component: 'nft' }));
    this.overlay = (opts.overlay ?? process.getuid?.() === 0) ? new OverlayHost({ nodeId: opts.nodeId, address: opts.address, log: opts.log.child({ component: 'overlay' }) }) : null;
    const tlsOpts = opts.tls;
    const dial = tlsOpts && opts.tunnelPort
      ? tunnelDialer({
          ...tlsOpts,
          nodeAddress: (id) => {
            const n = this.nodes.find((x) => x.id === id);
            return n && n.dataplane_port ? { host: n.address, port: n.dataplane_port } : undefined;
          },
        })
      : undefined;
    // Remote backends go through the tunnel of their node when it has one, else directly.
    const dialer = dial
      ? ((b: Backend, t: number) => {
          const n = this.nodes.find((x) => x.id === b.node_id);
          return b.local || !n?.dataplane_port ? import('../dataplane/proxy.js').then((m) => m.directDial(b, t)) : dial(b, t);
        })
      : undefined;
    this.proxy = new L4Proxy({ log: opts.log.child({ component: "proxy" }), ...(dialer ? { dial: dialer } : {}) });
  }

  /**
   * `yun doctor`: can this node reach the data-plane tunnel of every other node (a mutual-TLS
   * handshake within 1 s)? A FAIL names the pair and the port.
   */
  async reachability(): Promise<import('../doctor/checks.js').CheckResult[]> {
    const out: import('../doctor/checks.js').CheckResult[] = [];
    if (!this.opts.tls || !this.opts.tunnelPort) {
      return [{ name: 'data plane', status: 'warn', detail: 'the data-plane tunnel is off on this node (--dataplane-port 0): other nodes reach its tasks directly', fix: 'Run the agent with --dataplane-port 7444 (the default).' }];
    }
    if (this.tunnelPort === null) {
      out.push({ name: 'data plane', status: 'fail', detail: `the data-plane tunnel could not listen on ${this.opts.address}:${this.opts.tunnelPort}`, fix: 'Free the port, or choose another with --dataplane-port.', breaks: ['mesh'] });
    }
    const tls = await import('node:tls');
    const me = this.nodes.find((n) => n.id === this.opts.nodeId);
    for (const n of this.nodes) {
      if (n.id === this.opts.nodeId || !n.ready || !n.dataplane_port) continue;
      const t0 = Date.now();
      const err = await new Promise<string | null>((resolve) => {
        const sock = tls.connect({ host: n.address, port: n.dataplane_port!, ...this.opts.tls!, servername: undefined, checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
        const timer = setTimeout(() => { sock.destroy(); resolve('no answer within 1 s'); }, 1000);
        sock.once('secureConnect', () => { clearTimeout(timer); sock.destroy(); resolve(null); });
        sock.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(e.code ?? e.message); });
      });
      const pair = `${me?.address ?? this.opts.address} → ${n.address}:${n.dataplane_port}`;
      out.push(err === null
        ? { name: `data plane to ${n.address}`, status: 'pass', detail: `${pair} reached (mutual TLS) in ${Date.now() - t0} ms` }
        : { name: `data plane to ${n.address}`, status: 'fail', detail: `${pair}: ${err} — service traffic from this node to tasks on ${n.address} can only go directly, or not at all`, fix: `Open TCP port ${n.dataplane_port} from ${me?.address ?? this.opts.address} to ${n.address} (firewall, security group).`, breaks: ['mesh'] });
    }
    return out;
  }

  /** What `yun node inspect` shows: the active data path and why, DNS, the tunnel, overlay networks. */
  async describe(): Promise<{ dataplane: Record<string, unknown>; missing_features: Record<string, string> }> {
    const overlayProblem = this.overlay ? await OverlayHost.probe() : 'the agent does not run as root: overlay networks need CAP_NET_ADMIN';
    const missing: Record<string, string> = {};
    if (overlayProblem) missing.overlay = overlayProblem;
    return {
      dataplane: {
        path: this.fast.problem === null ? 'nftables+portable' : 'portable',
        why: this.fast.problem === null
          ? (this.remoteProblem === null
            ? `nftables DNAT (round robin in the kernel) for published ports and VIPs (${this.fastRules} port(s) now, ${this.fastRemoteRules} with tasks on other nodes: DNATed and masqueraded to those that answer a TCP probe every ${PROBE_INTERVAL_MS} ms); the agent's proxy for the rest (clients with a 127/8 source, overlay VIPs): it reaches other nodes over the mutual-TLS tunnel and moves on to the next backend when one fails`
            : `nftables DNAT (round robin in the kernel) for services whose healthy tasks all run on this node (${this.fastRules} port(s) now); the agent's proxy for the rest: it reaches other nodes over the mutual-TLS tunnel and moves on to the next backend when one fails (kernel DNAT to other nodes is off: ${this.remoteProblem})`)
          : `the agent's proxy (L4 round robin over healthy tasks, a failed connect moves on to the next backend at once; node-to-node over one mutual-TLS port; no IPVS, VXLAN or nftables needed) — the nftables fast path is off: ${this.fast.problem}`,
        fast_path: this.fast.problem === null ? 'on' : `off: ${this.fast.problem}`,
        fast_path_remote: this.remoteProblem === null ? 'on' : `off: ${this.remoteProblem}`,
        dns: this.dnsAddress ?? null,
        tunnel_port: this.tunnelPort,
        overlay: overlayProblem ? { available: false, reason: overlayProblem } : { available: true, vxlan: this.overlay?.vxlanProblem ?? 'ok', networks: this.overlay?.attached().map((n) => n.name) ?? [] },
      },
      missing_features: missing,
    };
  }

  /** `yun doctor`: the data path in use, and whether this node can build overlay networks. */
  async checks(): Promise<import('../doctor/checks.js').CheckResult[]> {
    const d = await this.describe();
    const out: import('../doctor/checks.js').CheckResult[] = [
      { name: 'data path', status: 'pass', detail: `${String(d.dataplane.path)}: ${String(d.dataplane.why)}` },
    ];
    if (this.opts.dnsPort !== 0 && !this.dnsAddress) {
      out.push({ name: 'service DNS', status: 'fail', detail: `the service DNS could not listen on ${this.opts.address}:${this.opts.dnsPort} (another DNS server holds the port?)`, fix: `Free port ${this.opts.dnsPort} on ${this.opts.address}, or pick another with --dns-port.` });
    } else if (this.dnsAddress) {
      out.push({ name: 'service DNS', status: 'pass', detail: `listening on ${this.dnsAddress}${this.dnsGateways.size ? ` and on the overlay gateways ${[...this.dnsGateways].join(', ')}` : ''}` });
    }
    const ov = d.missing_features.overlay;
    out.push(ov
      ? { name: 'overlay networks', status: 'fail', detail: ov, fix: 'Run the agent as root with iproute2 installed; until then tasks on overlay networks are placed on other nodes.', breaks: ['overlay'] }
      : this.overlay?.vxlanProblem
        ? { name: 'overlay networks', status: 'warn', detail: this.overlay.vxlanProblem, fix: `Load the vxlan module (modprobe vxlan) and open UDP port ${VXLAN_PORT} between nodes.` }
        : { name: 'overlay networks', status: 'pass', detail: `bridges, veths and VXLAN (UDP ${VXLAN_PORT}) available${this.overlay?.attached().length ? `; networks here: ${this.overlay.attached().map((n) => n.name).join(', ')}` : ''}` });
    return out;
  }

  /** Task backends of this node: the only targets the tunnel connects to. */
  private localTargets(): Set<string> {
    const out = new Set<string>();
    for (const ep of this.endpoints.values()) {
      for (const t of ep.tasks) {
        if (t.node_id !== this.opts.nodeId) continue;
        for (const p of t.ports) {
          out.add(`${t.address}:${p.host_port}`);
          for (const n of t.networks ?? []) out.add(`${n.address}:${p.target}`);
        }
      }
    }
    return out;
  }

  async start(): Promise<void> {
    const why = await this.fast.probe();
    this.remoteProblem = why !== null ? `the fast path is off: ${why}`
      : process.env.YUN_MESH_REMOTE === 'tunnel' ? 'turned off (YUN_MESH_REMOTE=tunnel): traffic to other nodes stays on the mutual-TLS tunnel'
        : await conntrackProblem();
    this.opts.log.info({ fast_path: why === null ? 'nftables' : `off: ${why}`, remote: this.remoteProblem === null ? 'nftables' : `tunnel: ${this.remoteProblem}` }, 'data path');
    if (this.opts.tls && this.opts.tunnelPort) {
      this.tunnel = new TunnelServer({
        ...this.opts.tls,
        allow: (peer) => this.nodes.some((n) => n.id === peer),
        resolveTarget: (req) => this.localTargets().has(`${req.host}:${req.port}`),
        log: this.opts.log.child({ component: 'tunnel' }) as never,
      });
      try {
        this.tunnelPort = await this.tunnel.listen(this.opts.address, this.opts.tunnelPort);
        this.opts.log.info({ address: this.opts.address, port: this.tunnelPort }, 'data-plane tunnel listening');
      } catch (e) {
        this.opts.log.warn({ err: (e as Error).message, port: this.opts.tunnelPort }, 'data-plane tunnel cannot listen: remote backends are dialled directly (yun doctor reports it)');
        await this.tunnel.close().catch(() => undefined);
        this.tunnel = undefined;
      }
    }
    if (this.opts.dnsPort === 0 && !this.overlay) return;
    const dnsLog = this.opts.log.child({ component: 'dns' });
    this.dns = new DnsServer({ log: { warn: (...a: unknown[]) => (dnsLog.warn as (...x: unknown[]) => void)(...a) } });
    // A task on an overlay network asks its gateway: it sees its own network's services.
    this.dns.setScopeResolver((src) => {
      const net = this.overlay?.networkOf(src);
      return net ? { project: net.project, network: net.name } : null;
    });
    if (this.opts.dnsPort === 0) return;
    try {
      const r = await this.dns.listen(this.opts.address, this.opts.dnsPort);
      this.dnsAddress = `${this.opts.address}:${r.udpPort}`;
      this.opts.log.info({ dns: this.dnsAddress }, 'service DNS listening');
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message, address: this.opts.address, port: this.opts.dnsPort }, 'service DNS cannot listen (yun doctor reports it)');
    }
  }

  async stop(): Promise<void> {
    this.probe.stop();
    await this.fast.close().catch(() => undefined);
    await this.proxy.close().catch(() => undefined);
    await this.tunnel?.close().catch(() => undefined);
    await this.dns?.close().catch(() => undefined);
  }

  apply(m: EndpointsMessage): void {
    if (m.full) this.endpoints.clear();
    for (const e of m.upsert) this.endpoints.set(e.service_id, e);
    for (const id of m.remove) this.endpoints.delete(id);
    this.nodes = m.nodes;
    this.networks = m.networks ?? [];
    void this.resync();
  }

  /** Apply what is known now, after any sync under way. */
  private resync(): Promise<void> {
    this.syncing = this.syncing.then(() => this.sync()).catch((e) => this.opts.log.error({ err: e }, 'data plane sync failed'));
    return this.syncing;
  }

  /** Resolves once the last update has been applied (tests). */
  async settled(): Promise<void> {
    await this.syncing;
  }

  /** The node's DNS answers tasks on each overlay network at the network's gateway here, port 53. */
  private async listenDnsOnGateways(): Promise<void> {
    if (!this.dns || !this.overlay) return;
    for (const g of this.overlay.gateways()) {
      if (this.dnsGateways.has(g.address)) continue;
      try {
        await this.dns.listen(g.address, 53);
        this.dnsGateways.add(g.address);
      } catch (e) {
        this.opts.log.warn({ address: g.address, err: (e as Error).message }, 'service DNS cannot listen on an overlay gateway: tasks there cannot resolve service names');
      }
    }
  }

  private myOctet(): number | undefined {
    return this.nodes.find((n) => n.id === this.opts.nodeId)?.vip_octet;
  }

  private meshAddress(): string {
    // Several test nodes share one machine on 127.0.0.x: each publishes on its own address.
    return this.opts.address.startsWith('127.') ? this.opts.address : '0.0.0.0';
  }

  private async sync(): Promise<void> {
    const octet = this.myOctet();
    const dnsList: DnsEndpoint[] = [];
    // `network`: an overlay VIP, which answers only that network's tasks (and the node).
    const wanted = new Map<string, { address: string; port: number; backends: Backend[]; network?: string }>();
    const netById = new Map(this.networks.map((n) => [n.id, n]));
    if (this.overlay) {
      const vips = new Map<string, Set<string>>();
      for (const ep of this.endpoints.values()) for (const [net, vip] of Object.entries(ep.network_vips ?? {})) (vips.get(net) ?? vips.set(net, new Set()).get(net)!).add(vip);
      await this.overlay.update(this.networks, this.nodes, vips);
      await this.listenDnsOnGateways();
    }
    const here = new Set(this.overlay?.attached().map((n) => n.id) ?? []);
    for (const ep of this.endpoints.values()) {
      // Per overlay network: names scoped to the network, its VIP on this node's bridge.
      for (const netId of ep.networks ?? []) {
        const net = netById.get(netId);
        if (!net) continue;
        const vip = ep.mode === 'vip' ? ep.network_vips?.[netId] ?? null : null;
        const tasks = ep.tasks.flatMap((t) => t.networks.filter((n) => n.network_id === netId).map((n) => ({ address: n.address, healthy: t.healthy, ports: t.ports.map((p) => ({ ...p, host_port: p.target })), node_id: t.node_id, task_id: t.task_id })));
        dnsList.push({ service: ep.service, project: ep.project, network: net.name, mode: ep.mode, vip, tasks });
        if (!vip || !here.has(netId)) continue;
        for (const p of ep.ports) {
          if (p.protocol !== 'tcp') continue;
          const backends: Backend[] = tasks.filter((t) => t.healthy).map((t) => ({ id: `${t.task_id}:${p.target}`, host: t.address, port: p.target, node_id: t.node_id, local: t.node_id === this.opts.nodeId }));
          wanted.set(`nvip/${ep.service_id}/${netId}/${p.target}`, { address: vip, port: p.target, backends, network: netId });
        }
      }
      const vip = ep.mode === 'vip' && ep.vip_index !== null && octet !== undefined ? vipAddress(octet, ep.vip_index) : null;
      dnsList.push({
        service: ep.service, project: ep.project, network: null, mode: ep.mode, vip,
        tasks: ep.tasks.map((t) => ({ address: t.address, healthy: t.healthy, ports: t.ports })),
      });
      for (const p of ep.ports) {
        if (p.protocol !== 'tcp') continue;
        const backends: Backend[] = ep.tasks
          .filter((t) => t.healthy)
          .flatMap((t) => t.ports.filter((tp) => tp.target === p.target && tp.protocol === 'tcp').map((tp) => ({ id: `${t.task_id}:${tp.target}`, host: t.address, port: tp.host_port, node_id: t.node_id, local: t.node_id === this.opts.nodeId })));
        if (vip) wanted.set(`vip/${ep.service_id}/${p.target}`, { address: vip, port: p.target, backends });
        if (p.published && p.mode === 'ingress') wanted.set(`mesh/tcp/${p.published}`, { address: this.meshAddress(), port: p.published, backends });
      }
    }
    this.dns?.setEndpoints(dnsList);
    for (const [key, l] of this.listening) {
      const w = wanted.get(key);
      if (!w || w.address !== l.address || w.port !== l.port) {
        await this.proxy.stop(key).catch(() => undefined);
        this.listening.delete(key);
      }
    }
    const fast: FastRule[] = [];
    const probed = new Map<string, ProbeTarget>();
    let remoteRules = 0;
    for (const w of wanted.values()) {
      if (w.backends.length === 0) continue;
      let backends = w.backends.map((b) => ({ host: b.host, port: b.port, remote: !b.local }));
      if (!w.backends.every((b) => b.local)) {
        // Backends on other nodes: in the kernel too, those the probes reach (not overlay VIPs,
        // which answer their network's tasks only, a check the proxy makes).
        if (this.remoteProblem !== null || w.network) continue;
        for (const b of backends) if (b.remote) probed.set(`${b.host}:${b.port}`, { host: b.host, port: b.port });
        backends = backends.filter((b) => !b.remote || this.probe.isUp(b.host, b.port));
        if (backends.length === 0) continue;
        remoteRules++;
      }
      fast.push({ address: w.address === '0.0.0.0' ? null : w.address, port: w.port, backends });
    }
    this.probe.set([...probed.values()]);
    this.fastRules = this.fast.problem === null ? fast.length : 0;
    this.fastRemoteRules = this.fast.problem === null ? remoteRules : 0;
    await this.fast.apply(fast);
    for (const [key, w] of wanted) {
      if (this.listening.has(key)) this.proxy.setBackends(key, w.backends);
      else {
        try {
          const netId = w.network;
          await this.proxy.listen(key, w.address, w.port, netId ? { allow: (src) => { const n = this.overlay?.networkOf(src); return !n ? !this.overlay?.inAnyNetwork(src) : n.id === netId; } } : {});
          this.listening.set(key, { address: w.address, port: w.port });
          this.proxy.setBackends(key, w.backends);
        } catch (e) {
          this.opts.log.warn({ key, address: w.address, port: w.port, err: (e as Error).message }, 'cannot listen for a service port');
        }
      }
    }
  }
}
