import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseDuration } from '../../util/duration.js';
import { parseSize } from '../../util/size.js';
import { LOG_LEVELS } from '../../util/log.js';
import { DEFAULT_PORT, defaultDataDir, parseListen } from '../../up/options.js';
import { STORE_BACKENDS } from '../../store/backends.js';
import type { Level } from 'pino';

export default defineCommand({
  path: ['up'],
  summary: 'Run a single-node cloud in the foreground: the manager (and its local agent).',
  configure: (c) => c
    .option('--data-dir <dir>', 'where state lives (default: $YUN_DATA_DIR, else /var/lib/yunstack as root, else ~/.local/share/yunstack)')
    .option('--listen <host:port>', 'API address', `0.0.0.0:${DEFAULT_PORT}`)
    .option('--advertise-addr <ip>', 'address other nodes use to reach this one (default: the listen address, or the first non-loopback IPv4)')
    .option('--insecure-http', 'serve plain HTTP instead of HTTPS (loopback addresses only)')
    .option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`, 'info')
    .option('--rate-limit <n>', 'requests per second allowed per token or client address', '1000')
    .option('--token-ttl <duration>', 'lifetime of tokens', '12h')
    .option('--body-limit <size>', 'largest request body', '1m')
    .option('--dns-port <port>', 'port of the service DNS on the advertise address (0: off)', '53')
    .option('--dataplane-port <port>', 'port of the node-to-node data-plane tunnel, mutual TLS (0: off)', '7444')
    .option('--store <backend>', `where the cloud's state lives: ${STORE_BACKENDS.join(' or ')} (memory: nothing survives a restart)`, 'sqlite'),
  parse: (_a, o) => {
    parseListen(String(o.listen));
    const level = String(o.logLevel);
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw usage(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`);
    const rateLimit = Number(o.rateLimit);
    if (!Number.isInteger(rateLimit) || rateLimit < 1) throw usage(`--rate-limit must be a positive whole number, not "${String(o.rateLimit)}"`);
    const ttl = parseDuration(String(o.tokenTtl));
    if (!ttl || ttl < 60_000) throw usage(`--token-ttl must be a duration of at least 1m, such as 12h, not "${String(o.tokenTtl)}"`);
    const bodyLimit = parseSize(String(o.bodyLimit));
    if (!bodyLimit || bodyLimit < 1024) throw usage(`--body-limit must be a size of at least 1k, such as 1m, not "${String(o.bodyLimit)}"`);
    const dnsPort = Number(o.dnsPort);
    if (!Number.isInteger(dnsPort) || dnsPort < 0 || dnsPort > 65535) throw usage(`--dns-port must be a port number (0 turns DNS off), not "${String(o.dnsPort)}"`);
    const tunnelPort = Number(o.dataplanePort);
    if (!Number.isInteger(tunnelPort) || tunnelPort < 0 || tunnelPort > 65535) throw usage(`--dataplane-port must be a port number (0 turns the tunnel off), not "${String(o.dataplanePort)}"`);
    const store = String(o.store);
    if (!(STORE_BACKENDS as readonly string[]).includes(store)) throw usage(`--store must be ${STORE_BACKENDS.join(' or ')}, not "${store}"`);
    return {
      dnsPort, tunnelPort, store,
      dataDir: (o.dataDir as string | undefined) ?? defaultDataDir(), listen: String(o.listen), advertiseAddr: o.advertiseAddr as string | undefined,
      insecureHttp: Boolean(o.insecureHttp), logLevel: level as Level, rateLimit, tokenTtlMs: ttl, bodyLimit,
    };
  },
  async run(i, ctx) {
    const t0 = Date.now();
    const { startCloud } = await import('../../up/up.js');
    const cloud = await startCloud({ ...i, logToStderr: true });
    const node = (await cloud.ctx.store.get('node', cloud.nodeId))!;
    ctx.out.line(`Yunstack is up in ${((Date.now() - t0) / 1000).toFixed(2)}s.`);
    ctx.out.line(`  API:       ${cloud.url}`);
    ctx.out.line(`  Data dir:  ${cloud.dataDir}`);
    ctx.out.line(`  Node:      ${node.name} (${cloud.nodeId}), manager, ready`);
    ctx.out.line('');
    ctx.out.line(`Use it from another shell:\n    source ${cloud.envPath}\n    yun node ls\n`);
    ctx.out.line('Add machines with the command `yun join-token worker` prints. Stop with Ctrl-C.');
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        cloud.log.info({ signal: sig }, 'shutting down');
        void cloud.close().then(resolve, resolve);
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
    // Everything is closed and flushed: leave now, even if a library keeps a stray handle open.
    process.exit(0);
  },
});
