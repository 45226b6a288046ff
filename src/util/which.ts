import { statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The full path of an executable: `name` itself when it has a slash, else the first in PATH, then
 * the sbin and bin directories (which a non-root PATH may lack); undefined when there is none.
 */
export function findTool(name: string): string | undefined {
  const candidates = name.includes('/')
    ? [name]
    : [...new Set([...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])].map((d) => join(d, name));
  for (const p of candidates) {
    try {
      const st = statSync(p);
      if (st.isFile() && (st.mode & 0o111) !== 0) return p;
    } catch {
      /* not there */
    }
  }
  return undefined;
}
