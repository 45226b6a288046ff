import { createHash } from 'node:crypto';

/** Key types OpenSSH accepts in authorized_keys (the common ones). */
const TYPES = new Set(['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com']);

/**
 * Check an OpenSSH public key line (`TYPE BASE64 [COMMENT]`) and return it normalised with its
 * fingerprint as `ssh-keygen -l` prints it (`SHA256:…`); a string saying what is wrong otherwise.
 */
export function parsePublicKey(text: string): { key: string; type: string; fingerprint: string } | string {
  const line = text.trim();
  if (line.includes('\n')) return 'it has several lines: give one public key (the .pub file), not a private key or a list';
  if (/PRIVATE KEY/.test(line)) return 'it is a private key: give the public key (the .pub file) and keep the private key to yourself';
  const [type, b64, ...comment] = line.split(/\s+/);
  if (!type || !TYPES.has(type)) return `its type "${type ?? ''}" is not an SSH key type (${[...TYPES].slice(0, 3).join(', ')}, …)`;
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return 'its key is not base64';
  const blob = Buffer.from(b64, 'base64');
  // The blob starts with the type again, as an SSH string (uint32 length + bytes).
  const n = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (n < 0 || 4 + n > blob.length || blob.subarray(4, 4 + n).toString('latin1') !== type) return `its key data does not match its type ${type} (damaged or cut?)`;
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { key: [type, b64, ...comment].join(' '), type, fingerprint };
}
