import { join } from 'node:path';
import { isIP } from 'node:net';
import { YunError } from '../errors/errors.js';

/** The API's fixed default port. */
export const DEFAULT_PORT = 7443;

/** $YUN_DATA_DIR, else /var/lib/yunstack as root, else ~/.local/share/yunstack. */
export function defaultDataDir(): string {
  if (process.env.YUN_DATA_DIR) return process.env.YUN_DATA_DIR;
  if (process.getuid?.() === 0) return '/var/lib/yunstack';
  return join(process.env.XDG_DATA_HOME ?? join(process.env.HOME ?? '.', '.local', 'share'), 'yunstack');
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2] ?? '') || '0.0.0.0' : '';
  if (!m || !(port >= 0 && port < 65536) || (host !== 'localhost' && !isIP(host))) {
    throw new YunError('YUN_CONFIG_INVALID', `--listen must be HOST:PORT with an IP address (e.g. 0.0.0.0:${DEFAULT_PORT} or 127.0.0.1:${DEFAULT_PORT}), not "${listen}"`, { hint: '' });
  }
  return { host: host === 'localhost' ? '127.0.0.1' : host, port };
}
