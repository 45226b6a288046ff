import { isIP } from 'node:net';
import type { Level } from 'pino';
import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { LOG_LEVELS } from '../../util/log.js';
import { parseSize } from '../../util/size.js';

export default defineCommand({
  path: ['agent'],
  summary: 'Run an agent on this machine: join a cluster (first time) and run the tasks the manager assigns.',
  configure: (c) => c
    .option('--join <url>', 'manager URL (from `yun join-token`); not needed once joined')
    .option('--token <token>', 'join token (from `yun join-token worker|manager`)')
    .option('--advertise-addr <ip>', 'address the manager and other nodes reach this node at', '127.0.0.1')
    .option('--data-dir <dir>', 'agent state (identity, tasks, logs)', '/var/lib/yunstack-agent')
    .option('--cpus <n>', 'CPUs this node offers to the scheduler (default: all)')
    .option('--memory <size>', 'memory this node offers to the scheduler (default: all)')
    .option('--dns-port <port>', 'port of the service DNS on the advertise address (0: off)', '53')
    .option('--dataplane-port <port>', 'port of the node-to-node data-plane tunnel, mutual TLS (0: off)', '7444')
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`, 'info'),
  parse: (_a, o) => {
    const addr = String(o.advertiseAddr);
    if (!isIP(addr)) throw usage(`--advertise-addr must be an IP address, not "${addr}"`);
    if ((o.join === undefined) !== (o.token === undefined)) throw usage('--join and --token go together');
    if (o.join !== undefined && !/^https:\/\//.test(String(o.join))) throw usage(`--join must be the manager's https:// URL, not "${String(o.join)}"`);
    const level = String(o.logLevel);
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw usage(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
    let cpus: number | undefined;
    if (o.cpus !== undefined) {
      cpus = Number(o.cpus);
      if (!(cpus > 0)) throw usage(`--cpus must be a positive number, not "${String(o.cpus)}"`);
    }
    let memoryBytes: number | undefined;
    if (o.memory !== undefined) {
      memoryBytes = parseSize(String(o.memory));
      if (!memoryBytes) throw usage(`--memory must be a size such as 8g, not "${String(o.memory)}"`);
    }
    const dnsPort = Number(o.dnsPort);
    if (!Number.isInteger(dnsPort) || dnsPort < 0 || dnsPort > 65535) throw usage(`--dns-port must be a port number (0 turns DNS off), not "${String(o.dnsPort)}"`);
    const tunnelPort = Number(o.dataplanePort);
    if (!Number.isInteger(tunnelPort) || tunnelPort < 0 || tunnelPort > 65535) throw usage(`--dataplane-port must be a port number (0 turns the tunnel off), not "${String(o.dataplanePort)}"`);
    return { dnsPort, tunnelPort, join: o.join as string | undefined, token: o.token as string | undefined, advertiseAddr: addr, dataDir: String(o.dataDir), logLevel: level as Level, resources: { cpus, memoryBytes } };
  },
  async run(i) {
    const { runAgent } = await import('../../agent/run-agent.js');
    const a = await runAgent({ ...i, logToStderr: true });
    process.stdout.write(`Agent for node ${a.identity.node_id} (${a.identity.role}) running; manager ${a.identity.manager_url}. Stop with Ctrl-C (tasks keep running and are reattached on restart).\n`);
    await a.agent.connected.then(() => process.stdout.write('Connected to the manager.\n'));
    await new Promise<void>((resolve) => {
      const stop = () => void a.stop().then(resolve, resolve);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    // Everything is closed and flushed: leave now, even if a library keeps a stray handle open.
    process.exit(0);
  },
});
