import { formatSize } from '../util/size.js';
import { satisfies } from './constraints.js';
import { cpuNeed, DEFAULT_CPU_RATIO, DEFAULT_RAM_RATIO, memoryNeed, type SchedNode, type SchedTask } from './types.js';

/**
 * A filter rejects nodes a task cannot run on, and explains how many it rejected and why.
 * `static` filters depend only on the task's group (service + spec) and the node; `dynamic` ones on
 * what has been placed so far.
 */
export interface Filter {
  name: string;
  kind: 'static' | 'dynamic';
  check(t: SchedTask, n: SchedNode): boolean;
  explain(count: number, t: SchedTask): string;
}

const nodes = (n: number) => `${n} node${n === 1 ? '' : 's'}`;

export const readyFilter: Filter = {
  name: 'ready', kind: 'static',
  check: (_t, n) => n.ready && n.availability === 'active',
  explain: (c) => `${nodes(c)} not ready or not active (down, paused or drained)`,
};

export const pinnedFilter: Filter = {
  name: 'pinned', kind: 'static',
  check: (t, n) => t.pinnedNode === undefined || t.pinnedNode === n.id,
  explain: (c) => `${nodes(c)} not the task's node (global service)`,
};

export const volumeFilter: Filter = {
  name: 'volumes', kind: 'static',
  check: (t, n) => t.volumeNode === undefined || t.volumeNode.node === n.id,
  explain: (c, t) => `${nodes(c)} not the node holding volume${t.volumeNode!.volumes.length === 1 ? '' : 's'} ${t.volumeNode!.volumes.join(', ')}`,
};

export const driverFilter: Filter = {
  name: 'driver', kind: 'static',
  check: (t, n) => t.drivers.some((d) => n.drivers.has(d)),
  explain: (c, t) => `driver ${t.drivers.join(' or ')} not available on ${nodes(c)}`,
};

export const featureFilter: Filter = {
  name: 'features', kind: 'static',
  check: (t, n) => t.requiredFeatures.every((f) => !n.missingFeatures.has(f)),
  explain: (c, t) => `${t.requiredFeatures.join(', ')} not working on ${nodes(c)} (see \`yun doctor\`)`,
};

/** One filter per constraint, so each is explained on its own. */
export function constraintFilter(index: number): Filter {
  return {
    name: `constraint#${index}`, kind: 'static',
    check: (t, n) => index >= t.constraints.length || satisfies(n, t.constraints[index]!),
    explain: (c, t) => `constraint ${t.constraints[index]!.text} not satisfied on ${nodes(c)}`,
  };
}

export const cpuFilter: Filter = {
  name: 'cpu', kind: 'dynamic',
  check: (t, n) => (t.reserveCpu === 0 && !t.reserveVcpus) || n.cpus - n.reservedCpu + 1e-9 >= cpuNeed(t, n),
  explain: (c, t) => t.reserveVcpus
    ? `insufficient CPU on ${nodes(c)} (needs ${t.reserveVcpus} vCPU${t.reserveVcpus === 1 ? '' : 's'}; a node offers ${DEFAULT_CPU_RATIO} vCPUs per CPU unless its allocation ratio says otherwise)`
    : `insufficient CPU on ${nodes(c)} (needs ${t.reserveCpu})`,
};

export const memoryFilter: Filter = {
  name: 'memory', kind: 'dynamic',
  check: (t, n) => (t.reserveMemory === 0 && !t.reserveRam) || n.memoryBytes - n.reservedMemory >= memoryNeed(t, n),
  explain: (c, t) => t.reserveRam
    ? `insufficient memory on ${nodes(c)} (needs ${formatSize(t.reserveRam)} of RAM; a node offers ${DEFAULT_RAM_RATIO}× its memory unless its allocation ratio says otherwise)`
    : `insufficient memory on ${nodes(c)} (needs ${formatSize(t.reserveMemory)})`,
};

export const diskFilter: Filter = {
  name: 'disk', kind: 'dynamic',
  check: (t, n) => !t.reserveDisk || (n.diskBytes ?? 0) - (n.reservedDisk ?? 0) >= t.reserveDisk,
  explain: (c, t) => `insufficient disk on ${nodes(c)} (needs ${formatSize(t.reserveDisk ?? 0)})`,
};

export const hostPortFilter: Filter = {
  name: 'host-port', kind: 'dynamic',
  check: (t, n) => t.hostPorts.every((p) => !n.hostPorts.has(p)),
  explain: (c, t) => `host port${t.hostPorts.length > 1 ? 's' : ''} ${t.hostPorts.join(', ')} already in use on ${nodes(c)}`,
};

export const maxReplicasFilter: Filter = {
  name: 'max-replicas', kind: 'dynamic',
  check: (t, n) => t.maxReplicasPerNode === 0 || (n.serviceTasks.get(t.serviceId) ?? 0) < t.maxReplicasPerNode,
  explain: (c, t) => `max replicas per node (${t.maxReplicasPerNode}) reached on ${nodes(c)}`,
};

export function filtersFor(t: SchedTask): Filter[] {
  return [
    readyFilter, pinnedFilter, volumeFilter, driverFilter, featureFilter,
    ...t.constraints.map((_c, i) => constraintFilter(i)),
    cpuFilter, memoryFilter, diskFilter, hostPortFilter, maxReplicasFilter,
  ];
}
