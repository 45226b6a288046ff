import { createHash, X509Certificate } from 'node:crypto';

/** Reading certificates needs only node:crypto (making them needs pki/ca.ts, which loads more). */

/** sha256 of the certificate's DER encoding, lowercase hex (what `openssl x509 -fingerprint -sha256` shows, without colons). */
export function fingerprint(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/** Does a server certificate cover `host` (a DNS name or an IP address)? */
export function certificateCovers(certPem: string, host: string): boolean {
  const c = new X509Certificate(certPem);
  return c.checkHost(host) !== undefined || c.checkIP(host) !== undefined;
}
