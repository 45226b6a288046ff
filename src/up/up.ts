import { Keyring } from '../secrets/keyring.js';
import { fileSource } from '../secrets/delivery.js';
import { mkdirSync, realpathSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { isIP, type AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Level, Logger } from 'pino';
import { YunError } from '../errors/errors.js';
import { Identity } from '../identity/identity.js';
import { buildApp } from '../manager/app.js';
import type { ManagerContext } from '../manager/context.js';
import { Membership } from '../manager/membership.js';
import { openStore } from '../store/factory.js';
import type { Store } from '../store/store.js';
import { systemClock } from '../util/clock.js';
import { createLogger } from '../util/log.js';
import { VERSION } from '../version.js';
import { bootstrap, ensureDefaultFlavors } from './bootstrap.js';
import { acquireLock } from './lock.js';
import { ensurePki } from './pki-files.js';
import { loadOrCreateNodeId } from './node-id.js';
import { DEFAULT_PORT, parseListen } from './options.js';
import { Dispatcher, DEFAULT_DISPATCHER, type DispatcherOptions } from '../dispatcher/dispatcher.js';
import { Orchestrator } from '../orchestrator/orchestrator.js';
import { SchedulerRunner } from '../scheduler/runner.js';
import { Agent } from '../agent/agent.js';
import { DataplaneController } from '../dataplane/controller.js';
import { describeNode } from '../agent/describe.js';
import { channelPair, type AgentMessage, type ManagerMessage } from '../dispatcher/protocol.js';
import { allDrivers } from '../drivers/index.js';
import type { Driver } from '../drivers/driver.js';
import { killInterruptedImages } from '../images/catalog.js';
import { ImageStore } from '../images/image-store.js';
import { NodeImages } from '../agent/images.js';

export { DEFAULT_PORT, defaultDataDir, parseListen } from './options.js';

export interface UpOptions {
  dataDir: string;
  /** HOST:PORT; default 0.0.0.0:7443. */
  listen?: string;
  advertiseAddr?: string;
  insecureHttp?: boolean;
  logLevel?: Level;
  /** Log to stderr too (the CLI does; tests usually do not). */
  logToStderr?: boolean;
  rateLimit?: number;
  tokenTtlMs?: number;
  bodyLimit?: number;
  dispatcher?: DispatcherOptions;
  /** Drivers for the local agent (default: all this build has). */
  drivers?: Driver[];
  /** Port of the node's service DNS (default 53; 0: none). */
  dnsPort?: number;
  /** Port of the node's data-plane tunnel (default 7444; 0: none). */
  tunnelPort?: number;
  /** The store backend: `sqlite` (default) or `memory` (nothing survives a restart). */
  store?: string;
  /** Wraps the store (tests inject latency this way, as a networked store such as etcd has). */
  wrapStore?: (s: Store) => Store;
  /** Resources the local node reports (default: the machine's). */
  resources?: { cpus?: number; memoryBytes?: number };
}

/** The local agent's node certificate (for the data-plane tunnel): made once, kept in DATA_DIR/agent/pki. */
async function localNodeCertificate(dataDir: string, ca: { certPem: string; keyPem: string }, nodeId: string, address: string): Promise<{ cert: string; key: string; ca: string }> {
  const { existsSync, readFileSync, writeFileSync, mkdirSync: mk } = await import('node:fs');
  const dir = join(dataDir, 'agent', 'pki');
  const certPath = join(dir, 'node.crt');
  const keyPath = join(dir, 'node.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    const cert = readFileSync(certPath, 'utf8');
    const { X509Certificate } = await import('node:crypto');
    const x = new X509Certificate(cert);
    if (x.subject.includes(`CN=${nodeId}`) && x.checkIssued(new X509Certificate(ca.certPem)) && x.checkIP(address) !== undefined) {
      return { cert, key: readFileSync(keyPath, 'utf8'), ca: ca.certPem };
    }
  }
  const { issueCertificate } = await import('../pki/ca.js');
  const issued = await issueCertificate(ca, { commonName: nodeId, organizationalUnit: 'manager', hosts: [address], usage: 'both' });
  mk(dir, { recursive: true, mode: 0o700 });
  writeFileSync(keyPath, issued.keyPem, { mode: 0o600 });
  writeFileSync(certPath, issued.certPem, { mode: 0o644 });
  return { cert: issued.certPem, key: issued.keyPem, ca: ca.certPem };
}

export interface Cloud {
  url: string;
  advertiseUrl: string;
  dataDir: string;
  envPath: string;
  nodeId: string;
  ctx: ManagerContext;
  app: FastifyInstance;
  log: Logger;
  agent: Agent;
  /** Stop the cloud. Tasks keep running (a restart reattaches) unless `stopTasks`. */
  close(opts?: { stopTasks?: boolean }): Promise<void>;
}



function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** The first non-internal IPv4 address of this machine, or 127.0.0.1. */
export function detectAdvertiseAddr(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function urlHost(h: string): string {
  return isIP(h) === 6 ? `[${h}]` : h;
}

/** Start a single-node cloud: store, PKI, identity, API, and this node registered as a manager. */
export async function startCloud(opts: UpOptions): Promise<Cloud> {
  const t0 = Date.now();
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const realDir = realpathSync(dataDir);
  const { host, port } = parseListen(opts.listen ?? `0.0.0.0:${DEFAULT_PORT}`);
  if (opts.insecureHttp && !isLoopback(host)) {
    throw new YunError('YUN_CONFIG_INVALID', `--insecure-http serves plain HTTP, which is allowed only on a loopback address, not on ${host}`, { hint: `Use --listen 127.0.0.1:${port}, or drop --insecure-http to serve HTTPS.` });
  }
  const advertise = opts.advertiseAddr ?? (isWildcard(host) ? detectAdvertiseAddr() : host);
  if (!isIP(advertise)) throw new YunError('YUN_CONFIG_INVALID', `--advertise-addr must be an IP address, not "${advertise}"`, { hint: '' });

  const lock = acquireLock(realDir);
  let store: Store | undefined;
  let app: FastifyInstance | undefined;
  const timers: NodeJS.Timeout[] = [];
  try {
    const log = createLogger({ level: opts.logLevel ?? 'info', dataDir: realDir, stderr: opts.logToStderr ?? false });
    const hosts = [...new Set(['127.0.0.1', 'localhost', '::1', hostname(), advertise, ...(isWildcard(host) ? [] : [host])])];
    const pki = await ensurePki(realDir, hosts);
    store = openStore(opts.store ?? 'sqlite', realDir);
    if (opts.wrapStore) store = opts.wrapStore(store);
    const clock = systemClock;
    const tokenTtlMs = opts.tokenTtlMs ?? 12 * 3600_000;
    const identity = new Identity(store, clock, tokenTtlMs);
    const membership = new Membership(store, clock, pki.caFingerprint);
    const scheme = opts.insecureHttp ? 'http' : 'https';
    const localHost = isWildcard(host) ? '127.0.0.1' : host;
    const keyring = Keyring.open(join(realDir, 'secrets.key'));
    const dispatcher = new Dispatcher(store, membership, clock, log.child({ component: 'dispatcher' }), opts.dispatcher ?? DEFAULT_DISPATCHER, VERSION, fileSource(store, keyring));
    const orchestrator = new Orchestrator(store, clock, log.child({ component: 'orchestrator' }));
    const scheduler = new SchedulerRunner(store, clock, log.child({ component: 'scheduler' }));
    const nodeId = loadOrCreateNodeId(realDir);
    membership.localNodeId = nodeId;
    const images = new ImageStore(join(realDir, 'images'));
    // Before the API listens (nothing of this run can be saving yet): leftovers of a crash during an
    // import or upload go, and the images this manager was saving when it stopped are killed, with the reason.
    await images.cleanTemp(0).catch(() => 0);
    const killed = await killInterruptedImages(store, nodeId);
    if (killed) log.warn({ images: killed }, 'images left saving by the last run were killed');
    const ctx: ManagerContext = {
      store, identity, clock, log, membership, startedAt: t0, dispatcher, orchestrator, scheduler, images,
      keyring,
      caKeyPem: () => pki.ca.keyPem,
      config: {
        publicUrl: '', advertiseUrl: '', caCertPem: pki.ca.certPem, caFingerprint: pki.caFingerprint, version: VERSION,
        bodyLimit: opts.bodyLimit ?? 1024 * 1024, rateLimit: opts.rateLimit ?? 1000, tokenTtlMs,
      },
    };
    app = await buildApp(ctx, opts.insecureHttp ? undefined : { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.ca.certPem });
    try {
      await app.listen({ host, port });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EADDRINUSE') throw new YunError('YUN_CONFIG_INVALID', `Port ${port} on ${host} is already in use by another program`, { hint: `Stop that program, or choose another port with --listen ${localHost}:PORT.` });
      if (code === 'EADDRNOTAVAIL') throw new YunError('YUN_CONFIG_INVALID', `This machine has no address ${host} to listen on`, { hint: 'Use one of its addresses (ip -brief addr) or 0.0.0.0.' });
      if (code === 'EACCES') throw new YunError('YUN_CONFIG_INVALID', `Not allowed to listen on port ${port}`, { hint: 'Use a port above 1023 or run as root.' });
      throw e;
    }
    // Port 0 picks a free port; the URLs are known only now.
    const actualPort = (app.server.address() as AddressInfo).port;
    const url = `${scheme}://${urlHost(localHost)}:${actualPort}`;
    const advertiseUrl = `${scheme}://${urlHost(advertise)}:${actualPort}`;
    ctx.config.publicUrl = url;
    ctx.config.advertiseUrl = advertiseUrl;

    const { envPath } = await bootstrap(store, identity, { dataDir: realDir, url, caPath: pki.caPath });
    await ensureDefaultFlavors(store);
    await membership.joinToken('worker');
    await membership.joinToken('manager');
    const drivers = opts.drivers ?? allDrivers();
    const description = () => describeNode(advertise, drivers, opts.resources, join(realDir, 'agent'));
    await membership.register(nodeId, { ...(await description()), role: 'manager' });
    await dispatcher.start();
    await scheduler.start();
    await orchestrator.start();
    const dataplane = new DataplaneController(store, log.child({ component: 'dataplane' }), (m) => dispatcher.broadcast(m));
    dispatcher.onSessionReady((_node, send) => send(dataplane.full()));
    await dataplane.start();
    // The local agent talks to this manager in-process (same protocol as remote agents).
    const agent = new Agent({
      dataDir: join(realDir, 'agent'),
      nodeId,
      description,
      drivers,
      images: new NodeImages(images),
      dnsPort: opts.dnsPort,
      tunnelPort: opts.tunnelPort,
      tls: await localNodeCertificate(realDir, pki.ca, nodeId, advertise),
      log: log.child({ component: 'agent' }),
      connect: async () => {
        const [agentEnd, managerEnd] = channelPair<AgentMessage, ManagerMessage>();
        dispatcher.attach(nodeId, 'manager', managerEnd);
        return agentEnd;
      },
    }, advertise);
    await agent.start();
    await Promise.race([agent.connected, new Promise((r) => setTimeout(r, 2000))]);
    log.info({ url, data_dir: realDir, node_id: nodeId, ms: Date.now() - t0 }, 'manager ready');

    const s = store;
    const a = app;
    let closed = false;
    return {
      url, advertiseUrl, dataDir: realDir, envPath, nodeId, ctx, app, log, agent,
      async close(closeOpts: { stopTasks?: boolean } = {}) {
        if (closed) return;
        closed = true;
        for (const t of timers) clearInterval(t);
        await agent.stop({ stopTasks: closeOpts.stopTasks });
        orchestrator.stop();
        dataplane.stop();
        scheduler.stop();
        dispatcher.stop();
        await a.close();
        await s.close();
        lock.release();
        log.flush?.();
      },
    };
  } catch (e) {
    for (const t of timers) clearInterval(t);
    await app?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    lock.release();
    throw e;
  }
}
