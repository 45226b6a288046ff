import type { Keyring } from '../secrets/keyring.js';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { Identity } from '../identity/identity.js';
import type { Clock } from '../util/clock.js';
import type { Membership } from './membership.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import type { SchedulerRunner } from '../scheduler/runner.js';
import type { ImageStoreApi } from '../images/store.js';

export interface ManagerConfig {
  /** The URL clients and agents use to reach this manager (for join commands, catalog). */
  publicUrl: string;
  /** The address agents should use to reach this manager. */
  advertiseUrl: string;
  caCertPem: string;
  caFingerprint: string;
  version: string;
  /** Maximum request body, bytes. */
  bodyLimit: number;
  /** Requests per second allowed per client (token or address) before 429. */
  rateLimit: number;
  tokenTtlMs: number;
}

export interface ManagerContext {
  store: Store;
  identity: Identity;
  clock: Clock;
  log: Logger;
  config: ManagerConfig;
  membership: Membership;
  startedAt: number;
  /** The CA private key (PEM), to certify joining nodes. */
  caKeyPem(): string;
  dispatcher: Dispatcher;
  orchestrator: Orchestrator;
  scheduler: SchedulerRunner;
  /** This manager's image store (content); image names are `image` objects in the store. */
  images: ImageStoreApi;
  /** The keys that seal secrets at rest (a file in the data directory, never in the store). */
  keyring: Keyring;
}
