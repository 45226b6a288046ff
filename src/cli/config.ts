import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { QUICK_COST, hashPassword, verifyPassword } from '../identity/passwords.js';

/**
 * Where the CLI gets its connection settings, strongest first: command-line flags, the
 * environment (YUN_URL, YUN_CACERT, YUN_USERNAME, YUN_PASSWORD, YUN_PROJECT, YUN_TOKEN — what
 * `source DATA_DIR/admin.env` sets), then the profile `yun login` saved. Tokens are cached (mode
 * 0600) so that a command does not log in again each time.
 */
export interface Settings {
  url?: string;
  cacert?: string;
  username?: string;
  password?: string;
  project?: string;
  token?: string;
}

export function configDir(): string {
  return process.env.YUN_CONFIG_DIR ?? join(process.env.XDG_CONFIG_HOME ?? join(process.env.HOME ?? '.', '.config'), 'yunstack');
}

function readJson<T>(path: string, fallback: T): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return fallback;
  }
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2), { mode: 0o600 });
  renameSync(tmp, path);
}

export function loadProfile(): Settings {
  return readJson<Settings>(join(configDir(), 'config.json'), {});
}

export function saveProfile(s: Settings): void {
  const { password: _p, token: _t, ...rest } = s;
  writeJson(join(configDir(), 'config.json'), rest);
}

export function resolveSettings(flags: Settings, env: NodeJS.ProcessEnv = process.env): Settings {
  const profile = loadProfile();
  const pick = (k: keyof Settings, e: string) => flags[k] ?? (env[e] || undefined) ?? profile[k];
  return {
    url: pick('url', 'YUN_URL')?.replace(/\/+$/, ''),
    cacert: pick('cacert', 'YUN_CACERT'),
    username: pick('username', 'YUN_USERNAME'),
    password: flags.password ?? (env.YUN_PASSWORD || undefined),
    project: pick('project', 'YUN_PROJECT'),
    token: flags.token ?? (env.YUN_TOKEN || undefined),
  };
}

interface CachedToken {
  token: string;
  expires_at: string;
  /** Who may reuse the token: a salted scrypt of the password it was issued for (`scrypt$…`). */
  credential?: string;
}

function tokenKey(s: Settings): string {
  return `${s.url}|${s.username}|${s.project ?? ''}`;
}

const tokensPath = () => join(configDir(), 'tokens.json');

/**
 * The cached token for these settings, or undefined. When the settings carry a password, the
 * token is reused only if it was issued for that same password: other credentials never ride on
 * a token someone else's password obtained, so a wrong password still fails. Without a password
 * (a profile saved by `yun login`), the token is what the login left for this server, user and
 * project.
 */
export async function cachedToken(s: Settings): Promise<string | undefined> {
  const all = readJson<Record<string, CachedToken>>(tokensPath(), {});
  const t = all[tokenKey(s)];
  if (!t || Date.parse(t.expires_at) - Date.now() < 60_000) return undefined;
  if (s.password !== undefined && !(typeof t.credential === 'string' && (await verifyPassword(s.password, t.credential)))) return undefined;
  return t.token;
}

export async function cacheToken(s: Settings, token: string, expiresAt: string): Promise<void> {
  const entry: CachedToken = { token, expires_at: expiresAt, ...(s.password !== undefined ? { credential: await hashPassword(s.password, QUICK_COST) } : {}) };
  const all = readJson<Record<string, CachedToken>>(tokensPath(), {});
  const now = Date.now();
  for (const [k, v] of Object.entries(all)) if (Date.parse(v.expires_at) < now) delete all[k];
  all[tokenKey(s)] = entry;
  writeJson(tokensPath(), all);
}

export function forgetToken(s: Settings): void {
  const p = tokensPath();
  if (!existsSync(p)) return;
  const all = readJson<Record<string, CachedToken>>(p, {});
  delete all[tokenKey(s)];
  writeJson(p, all);
}
