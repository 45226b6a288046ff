/** Tap devices of VMs, on the bridges of Yunstack networks (the same bridges containers' veths join). */
import { createHash } from 'node:crypto';
import { DriverError, type NetworkAttachment } from '../driver.js';
import { runCommand } from '../oci/host.js';

/** The tap of a server's i-th network: `yt` + 10 hex of its id's hash + i (≤ 15 bytes). */
export function tapName(id: string, i: number): string {
  return `yt${createHash('sha256').update(id).digest('hex').slice(0, 10)}${i}`;
}

async function linkExists(ip: string, name: string): Promise<boolean> {
  return (await runCommand(ip, ['link', 'show', 'dev', name], { timeoutMs: 10_000 }).catch(() => ({ code: 1 }))).code === 0;
}

/** Make (or keep) a persistent tap per network, enslaved to the network's bridge, up. */
export async function ensureTaps(ip: string, id: string, nets: NetworkAttachment[]): Promise<string[]> {
  const names: string[] = [];
  for (const [i, n] of nets.entries()) {
    const name = tapName(id, i);
    names.push(name);
    const lines = [...((await linkExists(ip, name)) ? [] : [`tuntap add dev ${name} mode tap`]), `link set ${name} mtu ${n.mtu} master ${n.bridge} up`];
    const r = await runCommand(ip, ['-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: 30_000 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    if (r.code !== 0) throw new DriverError(`could not attach the VM to network ${n.name} (tap ${name} on bridge ${n.bridge}): ${String(r.stderr).trim() || `ip exited with ${r.code}`}`, false);
  }
  return names;
}

export async function deleteTaps(ip: string, names: string[]): Promise<void> {
  for (const name of names) {
    if (!(await linkExists(ip, name))) continue;
    const r = await runCommand(ip, ['link', 'del', 'dev', name], { timeoutMs: 10_000 });
    if (r.code !== 0 && (await linkExists(ip, name))) throw new DriverError(`could not delete tap ${name}: ${String(r.stderr).trim()}`, false);
  }
}
