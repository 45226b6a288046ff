import { YunError } from '../errors/errors.js';
import { parseConstraint } from '../scheduler/constraints.js';
import type { ServiceSpec } from './spec.js';
import { checkRefTargets } from '../secrets/refs.js';

/**
 * Checks the JSON schema cannot express; runs before anything is created, so bad input leaves
 * nothing behind. Each error names the field and says how to fix it.
 */
export function validateSpec(spec: ServiceSpec, given: { replicas?: unknown; mode?: unknown }): void {
  const t = spec.task;
  const bad = (field: string, detail: string, hint = '') => new YunError('YUN_VALIDATION_FAILED', detail, { extra: { field }, hint });
  if (spec.mode === 'global' && given.replicas !== undefined) {
    throw bad('body/replicas', 'replicas can only be used with mode replicated; a global service runs one task on every eligible node', 'Drop replicas, or use mode replicated.');
  }
  if (!t.image && t.command.length === 0) {
    throw bad('body/task/command', 'A service without an image needs a command to run', 'Give the command after `--`, e.g. `yun service create --name web -- python3 -m http.server`.');
  }
  if (t.command.length > 0 && t.command[0] === '') throw bad('body/task/command', 'The command\'s first word (the program) is empty');
  const driver = t.driver ?? (t.image ? undefined : 'process');
  if (driver === 'process') {
    if (t.image) throw bad('body/task/image', 'The process driver runs host commands, not images', 'Drop --image, or use --driver oci or docker.');
    if (t.mounts.length) throw bad('body/task/mounts', 'The process driver does not support mounts: its tasks see the host\'s file system as it is', 'Drop --mount, or run the service from an image with the oci or docker driver.');
    if (t.read_only) throw bad('body/task/read_only', 'The process driver cannot make the file system read-only', 'Drop --read-only, or use the oci or docker driver.');
    if (t.hostname) throw bad('body/task/hostname', 'The process driver runs in the host\'s namespaces and cannot set a hostname', 'Drop --hostname, or use the oci or docker driver.');
  }
  if ((driver === 'oci' || driver === 'docker') && !t.image) throw bad('body/task/image', `The ${driver} driver needs an image`, 'Give --image REF.');
  if (spec.networks.length > 0) {
    if (driver === 'process') throw bad('body/networks', 'Process tasks run on the node\'s network and cannot join overlay networks', 'Run the service from an image (--image, oci driver), or drop --network: process tasks reach services through DNS and loopback VIPs.');
    if (driver === 'docker') throw bad('body/networks', 'Overlay networks are made for the oci driver; the docker driver keeps Docker\'s own networking', 'Use --driver oci, or drop --network.');
    if (t.network_mode === 'host') throw bad('body/networks', 'A task on the node\'s network (--network-mode host) cannot also join overlay networks', 'Drop one of them.');
  }
  for (const m of t.mounts) {
    if ((m.type === 'bind' || m.type === 'volume') && !m.source) throw bad('body/task/mounts', `A ${m.type} mount needs a source (target ${m.target})`);
    if (m.type === 'bind' && !m.source!.startsWith('/')) throw bad('body/task/mounts', `A bind mount's source must be an absolute path, not "${m.source}"`);
    if (m.type === 'tmpfs' && m.source) throw bad('body/task/mounts', `A tmpfs mount has no source (target ${m.target})`);
  }
  const targets = new Set<string>();
  for (const m of t.mounts) {
    if (targets.has(m.target)) throw bad('body/task/mounts', `Two mounts share the target ${m.target}`);
    targets.add(m.target);
  }
  checkRefTargets(t, 'body/task', t.mounts.map((m) => m.target));
  const r = t.resources;
  if (r.limits.memory_bytes && r.reservations.memory_bytes > r.limits.memory_bytes) {
    throw bad('body/task/resources', `The memory reservation (${r.reservations.memory_bytes} bytes) is larger than the memory limit (${r.limits.memory_bytes} bytes)`, 'A task can never get what it reserves if its limit is lower: raise the limit or lower the reservation.');
  }
  if (r.limits.cpu && r.reservations.cpu > r.limits.cpu) {
    throw bad('body/task/resources', `The CPU reservation (${r.reservations.cpu}) is larger than the CPU limit (${r.limits.cpu})`);
  }
  if (r.limits.memory_bytes && r.limits.memory_bytes < 4 * 1024 * 1024) {
    throw bad('body/task/resources/limits/memory_bytes', `A memory limit below 4 MiB (${r.limits.memory_bytes} bytes) cannot run anything`, 'Use at least 4m.');
  }
  for (const c of t.placement.constraints) {
    const p = parseConstraint(c);
    if (typeof p === 'string') throw bad('body/task/placement/constraints', p);
  }
  const hc = t.health_check;
  if (hc) {
    if (hc.type === 'cmd' && !hc.command?.length) throw bad('body/task/health_check/command', 'A cmd health check needs a command');
    if ((hc.type === 'tcp' || hc.type === 'http') && !hc.port && spec.endpoint.ports.length === 0) {
      throw bad('body/task/health_check/port', `A ${hc.type} health check needs a port: give the health check a port, or publish one`);
    }
    if (hc.timeout_ms > hc.interval_ms) {
      throw bad('body/task/health_check/timeout_ms', `The health check timeout (${hc.timeout_ms} ms) is longer than its interval (${hc.interval_ms} ms)`);
    }
  }
  const published = new Set<string>();
  for (const p of spec.endpoint.ports) {
    if (!p.published) continue;
    const k = `${p.protocol}/${p.published}`;
    if (published.has(k)) throw bad('body/endpoint/ports', `Port ${k} is published twice`);
    published.add(k);
  }
  if (spec.endpoint.ports.some((p) => p.mode === 'host' && !p.published)) {
    throw bad('body/endpoint/ports', 'A host-mode port needs a published port (the port on the node)');
  }
}
