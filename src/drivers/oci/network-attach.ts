import { createHash } from 'node:crypto';
import { DriverError, type NetworkAttachment } from '../driver.js';
import { runCommand } from './host.js';

/** The host end of a task's veth on its i-th network: `yv` + 10 hex of the task id's hash + i (≤ 15 bytes). */
export function hostVethName(taskId: string, i: number): string {
  return `yv${createHash('sha256').update(taskId).digest('hex').slice(0, 10)}${i}`;
}

/**
 * Put a task's network namespace on its overlay networks: a veth pair per network, the host end
 * on the network's bridge on this node, the task end `ethN` inside with the task's address; the
 * default route goes through the first network's gateway (the node), where DNS and the VIPs are.
 * The pair goes away with the namespace.
 */
export async function attachNetworks(ipBin: string, netns: string, taskId: string, nets: NetworkAttachment[]): Promise<void> {
  const host: string[] = [];
  const inside: string[] = [];
  nets.forEach((n, i) => {
    const veth = hostVethName(taskId, i);
    host.push(`link add ${veth} mtu ${n.mtu} type veth peer name eth${i} mtu ${n.mtu} netns ${netns}`);
    host.push(`link set ${veth} master ${n.bridge} up`);
    inside.push(`addr add ${n.address}/${n.prefix} dev eth${i}`);
    inside.push(`link set eth${i} up`);
  });
  inside.push(`route add default via ${nets[0]!.gateway} dev eth0`);
  for (const [args, lines, where] of [[[] as string[], host, 'on the node'], [['-n', netns], inside, 'in the task\'s namespace']] as const) {
    const r = await runCommand(ipBin, [...args, '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: 30_000 }).catch((e: Error) => ({ code: -1, stderr: e.message, stdout: '' }));
    if (r.code !== 0) {
      const names = nets.map((n) => n.name).join(', ');
      throw new DriverError(`could not attach the task to network${nets.length > 1 ? 's' : ''} ${names} (${where}): ${String(r.stderr).trim() || `ip exited with ${r.code}`}`, false);
    }
  }
}

/**
 * /etc/resolv.conf of a task on overlay networks: the node's DNS on the first network's gateway,
 * searching the project's zone first (so `web` also resolves as `web.PROJECT.yun`, and a hostname
 * such as `web.1` never makes `1` the search domain), then the node's own search domains.
 */
export function networkResolvConf(nets: NetworkAttachment[], nodeText: string): string {
  const search = [nets[0]!.search, ...(/^\s*search\s+(.+)$/m.exec(nodeText)?.[1]?.trim().split(/\s+/) ?? [])];
  return `# yunstack: service names are answered by this node's DNS; other names are forwarded to the node's resolvers\nnameserver ${nets[0]!.gateway}\nsearch ${search.join(' ')}\noptions ndots:0\n`;
}
