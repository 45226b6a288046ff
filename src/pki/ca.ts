import 'reflect-metadata';
import { webcrypto, randomBytes } from 'node:crypto';
import { fingerprint } from './inspect.js';
import * as x509 from '@peculiar/x509';
import { isIP } from 'node:net';

/**
 * The cloud's own certificate authority: one CA per cloud (created by the first `yun up`), which
 * signs the API server certificate and, when agents join, their node certificates (mutual TLS).
 * Keys are ECDSA P-256: fast to make, small, and accepted by every TLS stack we talk to.
 */
const crypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

async function exportKey(key: CryptoKey): Promise<string> {
  return toPem(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return crypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']);
}

export async function createCA(commonName: string, years = 10): Promise<KeyPairPem> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}, O=Yunstack`,
    notBefore: now,
    notAfter: new Date(now.getTime() + years * 365 * 86400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKey(keys.privateKey) };
}

export interface IssueOptions {
  commonName: string;
  /** Extra organisational units, e.g. the node role; readable back from the certificate. */
  organizationalUnit?: string;
  hosts?: string[];
  usage: 'server' | 'client' | 'both';
  days?: number;
  /** A PEM public key (SPKI) to certify (from a joining node); a new key pair is made otherwise. */
  publicKeyPem?: string;
}

export async function issueCertificate(ca: KeyPairPem, opts: IssueOptions): Promise<KeyPairPem & { fingerprint: string }> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  let publicKey: CryptoKey;
  let keyPem = '';
  if (opts.publicKeyPem) {
    const der = Buffer.from(opts.publicKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    publicKey = await crypto.subtle.importKey('spki', der, ALG, true, ['verify']);
  } else {
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    publicKey = keys.publicKey;
    keyPem = await exportKey(keys.privateKey);
  }
  const names: x509.JsonGeneralName[] = [];
  for (const h of opts.hosts ?? []) names.push(isIP(h) ? { type: 'ip', value: h } : { type: 'dns', value: h });
  const ekus: string[] = [];
  if (opts.usage !== 'client') ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (opts.usage !== 'server') ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const now = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.commonName}${opts.organizationalUnit ? `, OU=${opts.organizationalUnit}` : ''}, O=Yunstack`,
    issuer: caCert.subject,
    notBefore: now,
    notAfter: new Date(now.getTime() + (opts.days ?? 825) * 86400_000),
    signingAlgorithm: ALG,
    publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(ekus, false),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  const certPem = cert.toString('pem') + '\n';
  return { certPem, keyPem, fingerprint: fingerprint(certPem) };
}

export { fingerprint, certificateCovers } from './inspect.js';
