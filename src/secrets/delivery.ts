import type { Store } from '../store/store.js';
import type { TaskData } from '../services/task.js';
import { stateRank } from '../services/task.js';
import type { Keyring } from './keyring.js';
import { CONFIG, SECRET, sealAad, type BlobData } from './secret.js';

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

/** The files of a task, for the agent that runs it. */
export type TaskFileSource = (task: { id: string; project_id: string | null; data: TaskData }) => Promise<DeliveredFile[]>;

/** Does the task still need its files? Only until it runs: after that they are on its node's tmpfs. */
export function wantsFiles(d: TaskData): boolean {
  return d.desired_state === 'running' && stateRank(d.status.state) < stateRank('running') && ((d.spec.secrets?.length ?? 0) + (d.spec.configs?.length ?? 0)) > 0;
}

/** Reads (and unseals) what a task uses from its own project, at the moment it is sent. */
export function fileSource(store: Store, keyring: Keyring): TaskFileSource {
  return async (task) => {
    const out: DeliveredFile[] = [];
    for (const k of [SECRET, CONFIG]) {
      for (const r of task.data.spec[k.collection] ?? []) {
        const base = { kind: k.kind, name: r.source, target: r.target, uid: r.uid, gid: r.gid, mode: r.mode };
        const o = r.id ? await store.get(k.kind, r.id) : undefined;
        if (!o || o.project_id !== task.project_id) {
          out.push({ ...base, error: `${k.kind} "${r.source}" no longer exists in the task's project` });
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
