import { statfsSync } from 'node:fs';
import { cpus, hostname, release, totalmem } from 'node:os';
import type { Driver } from '../drivers/driver.js';
import { fingerprintAll } from '../drivers/index.js';
import type { NodeDescription } from '../dispatcher/protocol.js';
import { VERSION } from '../version.js';

/** What a node tells the manager about itself in its hello. */
export async function describeNode(address: string, drivers: Driver[], overrides: { cpus?: number; memoryBytes?: number; hostname?: string; diskBytes?: number } = {}, dataDir?: string): Promise<NodeDescription> {
  const fps = await fingerprintAll(drivers);
  const missing: Record<string, string> = {};
  for (const f of Object.values(fps)) if (f.available) Object.assign(missing, f.missing_features ?? {});
  return {
    hostname: overrides.hostname ?? hostname(),
    address,
    resources: { cpus: overrides.cpus ?? cpus().length, memory_bytes: overrides.memoryBytes ?? totalmem(), disk_bytes: overrides.diskBytes ?? diskSize(dataDir) },
    drivers: fps,
    platform: { os: process.platform, arch: process.arch, kernel: release() },
    agent_version: VERSION,
    missing_features: missing,
  };
}

/** The size of the file system holding `dir` (where instances' disks go). */
function diskSize(dir: string | undefined): number {
  try {
    const s = statfsSync(dir ?? '/');
    return s.blocks * s.bsize;
  } catch {
    return 0;
  }
}
