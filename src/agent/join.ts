import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent as HttpAgent, fetch } from 'undici';
import WebSocket from 'ws';
import { YunError } from '../errors/errors.js';
import { wsChannel } from '../dispatcher/ws-channel.js';
import type { AgentMessage, Channel, ManagerMessage } from '../dispatcher/protocol.js';

/** What an agent keeps to prove who it is: DATA_DIR/node.json and DATA_DIR/pki/{ca.crt,node.crt,node.key}. */
export interface NodeIdentity {
  node_id: string;
  role: 'worker' | 'manager';
  manager_url: string;
  ca_pem: string;
  cert_pem: string;
  key_pem: string;
}

export function loadIdentity(dataDir: string): NodeIdentity | undefined {
  const p = join(dataDir, 'node.json');
  if (!existsSync(p)) return undefined;
  const meta = JSON.parse(readFileSync(p, 'utf8')) as { node_id: string; role: 'worker' | 'manager'; manager_url: string };
  const pki = join(dataDir, 'pki');
  return { ...meta, ca_pem: readFileSync(join(pki, 'ca.crt'), 'utf8'), cert_pem: readFileSync(join(pki, 'node.crt'), 'utf8'), key_pem: readFileSync(join(pki, 'node.key'), 'utf8') };
}

function saveIdentity(dataDir: string, id: NodeIdentity): void {
  const pki = join(dataDir, 'pki');
  mkdirSync(pki, { recursive: true, mode: 0o700 });
  writeFileSync(join(pki, 'ca.crt'), id.ca_pem, { mode: 0o644 });
  writeFileSync(join(pki, 'node.key'), id.key_pem, { mode: 0o600 });
  writeFileSync(join(pki, 'node.crt'), id.cert_pem, { mode: 0o644 });
  writeFileSync(join(dataDir, 'node.json'), JSON.stringify({ node_id: id.node_id, role: id.role, manager_url: id.manager_url }, null, 2), { mode: 0o600 });
}

const TOKEN_RE = /^YUN-1-([0-9a-f]{64})-([A-Za-z0-9_-]{30,60})$/;

/**
 * Join a cluster: check the manager against the CA fingerprint in the token (before trusting it
 * with anything), then have it certify a fresh key pair for this node.
 */
export async function joinCluster(opts: { url: string; token: string; dataDir: string; hostname: string; address: string }): Promise<NodeIdentity> {
  const m = TOKEN_RE.exec(opts.token.trim());
  if (!m) throw new YunError('YUN_JOIN_TOKEN_INVALID', 'The join token is malformed (expected YUN-1-<ca fingerprint>-<secret>)');
  const expected = m[1]!;
  const url = opts.url.replace(/\/+$/, '');
  // 1. Fetch the CA without trusting the connection yet, and pin it by the token's fingerprint.
  const insecure = new HttpAgent({ connect: { rejectUnauthorized: false } });
  let caPem: string;
  try {
    const r = await fetch(`${url}/v1/cluster/ca`, { dispatcher: insecure });
    caPem = ((await r.json()) as { ca_pem: string }).ca_pem;
  } catch (e) {
    throw new YunError('YUN_CONNECTION_FAILED', `Cannot reach the manager at ${url}: ${((e as { cause?: Error }).cause ?? (e as Error)).message}`, { hint: 'Check the URL in the join command, and that the manager\'s port is reachable from this machine.' });
  } finally {
    await insecure.close();
  }
  const got = createHash('sha256').update(new X509Certificate(caPem).raw).digest('hex');
  if (got !== expected) {
    throw new YunError('YUN_JOIN_TOKEN_INVALID', `The manager at ${url} is not the cloud this token was made for: its CA fingerprint is ${got}, the token expects ${expected}`, { hint: 'Check that the URL and the token come from the same `yun join-token` output; something may be intercepting the connection.' });
  }
  // 2. From here on the manager is verified against that CA.
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pinned = new HttpAgent({ connect: { ca: caPem } });
  try {
    const r = await fetch(`${url}/v1/nodes/join`, {
      method: 'POST', dispatcher: pinned, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: opts.token.trim(), public_key_pem: publicKey.export({ type: 'spki', format: 'pem' }), hostname: opts.hostname, address: opts.address }),
    });
    const body = (await r.json()) as { node_id: string; role: 'worker' | 'manager'; certificate_pem: string; ca_pem: string; error?: { code: string; detail: string } };
    if (r.status !== 201) throw new YunError((body.error?.code as 'YUN_JOIN_TOKEN_INVALID') ?? 'YUN_BAD_REQUEST', body.error?.detail ?? `join failed with HTTP ${r.status}`, { hint: '' });
    const id: NodeIdentity = {
      node_id: body.node_id, role: body.role, manager_url: url, ca_pem: body.ca_pem, cert_pem: body.certificate_pem,
      key_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    };
    saveIdentity(opts.dataDir, id);
    return id;
  } finally {
    await pinned.close();
  }
}

/** Open the agent session: a WebSocket with mutual TLS (the node certificate). */
export function connectSession(id: NodeIdentity): Promise<Channel<AgentMessage, ManagerMessage>> {
  const wsUrl = `${id.manager_url.replace(/^http/, 'ws')}/v1/agent/session`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { ca: id.ca_pem, cert: id.cert_pem, key: id.key_pem, handshakeTimeout: 5000, maxPayload: 16 * 1024 * 1024 });
    const fail = (e: Error) => reject(e);
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => {
        let detail = text;
        try { detail = (JSON.parse(text) as { error: { detail: string } }).error.detail; } catch { /* not JSON */ }
        reject(new Error(`the manager refused the session (HTTP ${res.statusCode}): ${detail}`));
      });
    });
    ws.once('open', () => {
      ws.off('error', fail);
      resolve(wsChannel<AgentMessage, ManagerMessage>(ws));
    });
  });
}
