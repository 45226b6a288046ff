import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyPairPem } from '../pki/ca.js';
import { certificateCovers, fingerprint } from '../pki/inspect.js';

export interface ServerPki {
  ca: KeyPairPem;
  caPath: string;
  caFingerprint: string;
  server: KeyPairPem;
}

/**
 * The CA and the API server certificate in DATA_DIR/pki. The CA is made once; the server
 * certificate is made again whenever it does not cover every address the server answers on.
 */
export async function ensurePki(dataDir: string, hosts: string[]): Promise<ServerPki> {
  const dir = join(dataDir, 'pki');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = (f: string) => join(dir, f);
  let ca: KeyPairPem;
  if (existsSync(p('ca.crt')) && existsSync(p('ca.key'))) {
    ca = { certPem: readFileSync(p('ca.crt'), 'utf8'), keyPem: readFileSync(p('ca.key'), 'utf8') };
  } else {
    const { createCA } = await import('../pki/ca.js');
    ca = await createCA('Yunstack CA');
    writeFileSync(p('ca.key'), ca.keyPem, { mode: 0o600 });
    writeFileSync(p('ca.crt'), ca.certPem, { mode: 0o644 });
  }
  let server: KeyPairPem | undefined;
  if (existsSync(p('server.crt')) && existsSync(p('server.key'))) {
    const certPem = readFileSync(p('server.crt'), 'utf8');
    if (hosts.every((h) => certificateCovers(certPem, h))) server = { certPem, keyPem: readFileSync(p('server.key'), 'utf8') };
  }
  if (!server) {
    const { issueCertificate } = await import('../pki/ca.js');
    const issued = await issueCertificate(ca, { commonName: 'yunstack-manager', organizationalUnit: 'manager', hosts, usage: 'both' });
    server = { certPem: issued.certPem, keyPem: issued.keyPem };
    writeFileSync(p('server.key'), server.keyPem, { mode: 0o600 });
    writeFileSync(p('server.crt'), server.certPem, { mode: 0o644 });
  }
  return { ca, caPath: p('ca.crt'), caFingerprint: fingerprint(ca.certPem), server };
}
