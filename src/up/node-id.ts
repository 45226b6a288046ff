import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newId } from '../util/ids.js';

/** A node keeps its id across restarts: DATA_DIR/node-id. */
export function loadOrCreateNodeId(dataDir: string): string {
  const p = join(dataDir, 'node-id');
  if (existsSync(p)) {
    const id = readFileSync(p, 'utf8').trim();
    if (/^[a-z0-9]{20}$/.test(id)) return id;
  }
  const id = newId();
  writeFileSync(p, `${id}\n`, { mode: 0o644 });
  return id;
}
