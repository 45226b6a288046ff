import { cpus, hostname, release, totalmem } from 'node:os';
import type { Driver } from '../drivers/driver.js';
import { fingerprintAll } from '../drivers/index.js';
import type { NodeDescription } from '../dispatcher/protocol.js';
import { VERSION } from '../version.js';

/** What a node tells the manager about itself in its hello. */
export async function describeNode(address: string, drivers: Driver[], overrides: { cpus?: number; memoryBytes?: number; hostname?: string } = {}): Promise<NodeDescription> {
  return {
    hostname: overrides.hostname ?? hostname(),
    address,
    resources: { cpus: overrides.cpus ?? cpus().length, memory_bytes: overrides.memoryBytes ?? totalmem() },
    drivers: await fingerprintAll(drivers),
    platform: { os: process.platform, arch: process.arch, kernel: release() },
    agent_version: VERSION,
  };
}
