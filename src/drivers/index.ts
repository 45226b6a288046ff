import type { Driver, DriverFingerprint } from './driver.js';
import { OciDriver } from './oci/oci-driver.js';
import { DockerDriver } from './docker/docker-driver.js';
import { ProcessDriver } from './process/process-driver.js';
import { QemuDriver } from './qemu/qemu-driver.js';

/** Every driver this build knows; the agent offers those whose fingerprint says available. */
export function allDrivers(): Driver[] {
  return [new ProcessDriver(), new OciDriver(), new DockerDriver(), new QemuDriver()];
}

export async function fingerprintAll(drivers: Driver[]): Promise<Record<string, DriverFingerprint>> {
  const out: Record<string, DriverFingerprint> = {};
  for (const d of drivers) {
    try {
      out[d.name] = { ...(await d.fingerprint()), capabilities: d.capabilities };
    } catch (e) {
      out[d.name] = { available: false, reason: `fingerprint failed: ${(e as Error).message}`, capabilities: d.capabilities };
    }
  }
  return out;
}
