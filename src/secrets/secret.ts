import type { Sealed } from './keyring.js';

/**
 * Secrets and configs (swarm mode's `docker secret` / `docker config`): named blobs of a project.
 * One model, two capabilities: a secret is sealed at rest and never returned after creation; a
 * config is stored as it is and shown by inspect.
 */
export interface BlobKind {
  kind: 'secret' | 'config';
  collection: 'secrets' | 'configs';
  /** Sealed with the keyring, never shown again. */
  sealed: boolean;
  /** How a message names one ("Secret \"db\" is used by …"). */
  title: 'Secret' | 'Config';
}

export const SECRET: BlobKind = { kind: 'secret', collection: 'secrets', sealed: true, title: 'Secret' };
export const CONFIG: BlobKind = { kind: 'config', collection: 'configs', sealed: false, title: 'Config' };

/** Docker's limit for both. */
export const MAX_BLOB_BYTES = 500 * 1024;

export interface BlobData {
  size: number;
  /** The content's revision: 1 when created, one more on each update (absent on the first ones stored: 1). */
  revision?: number;
  labels: Record<string, string>;
  /** Secrets only. */
  sealed?: Sealed;
  /** Configs only: the content, base64. */
  data?: string;
}

/** The additional data a secret's seal is bound to: its kind and id. */
export const sealAad = (kind: string, id: string) => `${kind}/${id}`;
