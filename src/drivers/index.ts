import type { Driver } from './driver.js';
import { OciDriver } from './oci/oci-driver.js';
import { DockerDriver } from './docker/docker-driver.js';
import { ProcessDriver } from './process/process-driver.js';

/** Every driver this build knows; the agent offers those whose fingerprint says available. */
export function allDrivers(): Driver[] {
  return [new ProcessDriver(), new OciDriver(), new DockerDriver()];
}

export async function fingerprintAll(drivers: Driver[]): Promise<Record<string, { available: boolean; reason?: string; attributes?: Record<string, string> }>> {
  const out: Record<string, { available: boolean; reason?: string; attributes?: Record<string, string> }> = {};
  for (const d of drivers) {
    try {
      out[d.name] = await d.fingerprint();
    } catch (e) {
      out[d.name] = { available: false, reason: `fingerprint failed: ${(e as Error).message}` };
    }
  }
  return out;
}
