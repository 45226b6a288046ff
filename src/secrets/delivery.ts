import type { Store } from '../store/store.js';
import type { TaskData } from '../services/task.js';
import type { ServerData } from '../servers/server.js';
import { BLOB_KINDS, hasRefs, type FileRefs } from './refs.js';
import { stateRank } from '../services/task.js';
import type { Keyring } from './keyring.js';
import { sealAad, type BlobData } from './secret.js';

/**
 * A secret or config as an agent receives it for a task about to start: over the agent's session
 * only (mutual TLS), never in the task record, never written to the node's disk.
 */
export interface DeliveredFile {
  kind: 'secret' | 'config';
  name: string;
  target: string;
  uid: string;
  gid: string;
  mode: number;
  /** The content, base64; absent with `error` when it cannot be had (removed meanwhile). */
  data?: string;
  error?: string;
}

/** The files a task or server refers to, read in its own project, for the agent that runs it. */
export type FileSource = (owner: { project_id: string | null; refs: FileRefs }) => Promise<DeliveredFile[]>;

/** Does the task still need its files? Only until it runs: after that they are on its node's tmpfs. */
export function wantsFiles(d: TaskData): boolean {
  return d.desired_state === 'running' && stateRank(d.status.state) < stateRank('running') && hasRefs(d.spec);
}

/**
 * Does the server need its files? When its node is to build, boot or rebuild it: it is meant to
 * run and does not yet, or an action is pending. A running server has them on its node already
 * (a container's tmpfs, a VM's seed), and a stopped one gets them again when it is started.
 */
export function serverWantsFiles(d: ServerData): boolean {
  if (!hasRefs(d) || d.desired.deleting) return false;
  const toRun = d.desired.power === 'active' || d.desired.power === 'paused' || d.desired.op !== null;
  return toRun && (d.power_state !== 'running' || d.observed_generation < d.desired.generation);
}

/** Reads (and unseals) what a task uses from its own project, at the moment it is sent. */
export function fileSource(store: Store, keyring: Keyring): FileSource {
  return async (owner) => {
    const out: DeliveredFile[] = [];
    for (const k of BLOB_KINDS) {
      for (const r of owner.refs[k.collection] ?? []) {
        const base = { kind: k.kind, name: r.source, target: r.target, uid: r.uid, gid: r.gid, mode: r.mode };
        const o = r.id ? await store.get(k.kind, r.id) : undefined;
        if (!o || o.project_id !== owner.project_id) {
          out.push({ ...base, error: `${k.kind} "${r.source}" no longer exists in the project` });
          continue;
        }
        const d = o.data as unknown as BlobData;
        if (d.sealed) {
          const plain = keyring.unseal(d.sealed, sealAad(k.kind, o.id));
          out.push({ ...base, data: plain.toString('base64') });
          plain.fill(0);
        } else {
          out.push({ ...base, data: d.data ?? '' });
        }
      }
    }
    return out;
  };
}
