import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** A new object id: 20 lowercase base-36 characters (about 103 bits of randomness). */
export function newId(): string {
  const bytes = randomBytes(20);
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 36];
  return out;
}

/** Url-safe random secret of `bytes` bytes. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
