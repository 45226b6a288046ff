import { join } from 'node:path';
import { YunError } from '../errors/errors.js';
import type { Clock } from '../util/clock.js';
import { MemoryStore } from './memory-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

import { STORE_BACKENDS } from './backends.js';

/**
 * The manager's store, by backend: `sqlite` (the embedded default: `DATA_DIR/yun.db`, WAL) or
 * `memory` (nothing survives a restart: for trying things out and for tests).
 */
export function openStore(backend: string, dataDir: string, opts: { clock?: Clock } = {}): Store {
  switch (backend) {
    case 'sqlite': return new SqliteStore(join(dataDir, 'yun.db'), opts);
    case 'memory': return new MemoryStore(opts);
    default:
      throw new YunError('YUN_CONFIG_INVALID', `There is no store backend "${backend}"; the backends are ${STORE_BACKENDS.join(', ')}`, { hint: 'Use --store sqlite (the default), or --store memory to keep nothing across restarts.' });
  }
}
