import { mkdirSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Level, Logger } from 'pino';
import { YunError } from '../errors/errors.js';
import { allDrivers } from '../drivers/index.js';
import type { Driver } from '../drivers/driver.js';
import { createLogger } from '../util/log.js';
import { Agent } from './agent.js';
import { describeNode } from './describe.js';
import { connectSession, joinCluster, loadIdentity, type NodeIdentity } from './join.js';
import { acquireLock } from '../up/lock.js';
import { ImageStore } from '../images/image-store.js';
import { NodeImages, managerBlobFetcher } from './images.js';
import { join } from 'node:path';

export interface AgentRunOptions {
  join?: string;
  token?: string;
  dataDir: string;
  advertiseAddr: string;
  logLevel?: Level;
  logToStderr?: boolean;
  resources?: { cpus?: number; memoryBytes?: number };
  drivers?: Driver[];
  dnsPort?: number;
  tunnelPort?: number;
}

export interface RunningAgent {
  agent: Agent;
  identity: NodeIdentity;
  log: Logger;
  stop(opts?: { stopTasks?: boolean }): Promise<void>;
}

/** `yun agent`: join (first time) or reuse the identity in the data dir, then run the agent. */
export async function runAgent(opts: AgentRunOptions): Promise<RunningAgent> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const dir = realpathSync(dataDir);
  const lock = acquireLock(dir);
  try {
    const log = createLogger({ level: opts.logLevel ?? 'info', dataDir: dir, name: 'agent', stderr: opts.logToStderr ?? false });
    let identity = loadIdentity(dir);
    if (!identity) {
      if (!opts.join || !opts.token) {
        throw new YunError('YUN_CONFIG_INVALID', `This data directory (${dir}) has not joined a cluster yet, so --join URL and --token TOKEN are needed`, { hint: 'Run `yun join-token worker` on a manager and use the command it prints.' });
      }
      identity = await joinCluster({ url: opts.join, token: opts.token, dataDir: dir, hostname: hostname(), address: opts.advertiseAddr });
      log.info({ node_id: identity.node_id, role: identity.role }, 'joined the cluster');
    }
    const id = identity;
    const drivers = opts.drivers ?? allDrivers();
    const agent = new Agent({
      dataDir: dir,
      nodeId: id.node_id,
      description: () => describeNode(opts.advertiseAddr, drivers, opts.resources, dir),
      drivers,
      log,
      images: new NodeImages(new ImageStore(join(dir, 'images')), managerBlobFetcher(id.manager_url, { ca: id.ca_pem, cert: id.cert_pem, key: id.key_pem })),
      connect: () => connectSession(id),
      dnsPort: opts.dnsPort,
      tunnelPort: opts.tunnelPort,
      tls: { cert: id.cert_pem, key: id.key_pem, ca: id.ca_pem },
    }, opts.advertiseAddr);
    await agent.start();
    return {
      agent, identity: id, log,
      async stop(o = {}) {
        await agent.stop(o);
        lock.release();
      },
    };
  } catch (e) {
    lock.release();
    throw e;
  }
}
