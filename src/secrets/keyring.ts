import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { YunError } from '../errors/errors.js';

/** A value sealed with AES-256-GCM: the key's id, the nonce, the tag and the ciphertext (base64). */
export interface Sealed {
  kid: string;
  iv: string;
  tag: string;
  ct: string;
}

interface KeyFile {
  active: string;
  keys: Record<string, string>;
}

/**
 * The keys that seal secrets at rest, kept outside the database: a JSON file (mode 0600) in the
 * data directory with one active key and the older ones still needed to open what they sealed.
 * AES-256-GCM with a fresh 96-bit nonce per value; the additional data binds a ciphertext to its
 * object (its id), so a sealed value copied onto another secret does not open.
 */
export class Keyring {
  private constructor(private path: string, private file: KeyFile) {}

  /** Opens the key file, making it (a new random key) when it does not exist. */
  static open(path: string): Keyring {
    if (!existsSync(path)) {
      const kid = newKid();
      const k = new Keyring(path, { active: kid, keys: { [kid]: randomBytes(32).toString('base64') } });
      k.save();
      return k;
    }
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) chmodSync(path, 0o600);
    let file: KeyFile;
    try {
      file = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
    } catch (e) {
      throw new YunError('YUN_CONFIG_INVALID', `The secrets key file ${path} cannot be read: ${(e as Error).message}`, { hint: 'Restore it from your backup: without it the secrets in the store cannot be opened.' });
    }
    if (!file.keys?.[file.active] || Buffer.from(file.keys[file.active]!, 'base64').length !== 32) {
      throw new YunError('YUN_CONFIG_INVALID', `The secrets key file ${path} has no valid active key`, { hint: 'Restore it from your backup: without it the secrets in the store cannot be opened.' });
    }
    return new Keyring(path, file);
  }

  get activeKid(): string {
    return this.file.active;
  }

  kids(): string[] {
    return Object.keys(this.file.keys);
  }

  seal(plain: Buffer, aad: string): Sealed {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key(this.file.active), iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return { kid: this.file.active, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), ct: ct.toString('base64') };
  }

  unseal(s: Sealed, aad: string): Buffer {
    const d = createDecipheriv('aes-256-gcm', this.key(s.kid), Buffer.from(s.iv, 'base64'));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(Buffer.from(s.tag, 'base64'));
    try {
      return Buffer.concat([d.update(Buffer.from(s.ct, 'base64')), d.final()]);
    } catch {
      throw new YunError('YUN_INTERNAL', `A sealed secret does not open with key ${s.kid}: the store or the key file was altered`, { hint: 'Restore the store and the key file from the same backup.' });
    }
  }

  /** Adds a new active key (the old ones stay until `retire`). Returns its id. */
  rotate(): string {
    const kid = newKid();
    this.file = { active: kid, keys: { ...this.file.keys, [kid]: randomBytes(32).toString('base64') } };
    this.save();
    return kid;
  }

  /** Drops every key but the active one: call once nothing sealed with them is left. */
  retire(): string[] {
    const gone = this.kids().filter((k) => k !== this.file.active);
    this.file = { active: this.file.active, keys: { [this.file.active]: this.file.keys[this.file.active]! } };
    this.save();
    return gone;
  }

  private key(kid: string): Buffer {
    const k = this.file.keys[kid];
    if (!k) throw new YunError('YUN_INTERNAL', `The secrets key ${kid} is not in ${this.path}`, { hint: 'Restore the key file that belongs to this store from your backup.' });
    return Buffer.from(k, 'base64');
  }

  private save(): void {
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.file, null, 2), { mode: 0o600 });
    renameSync(tmp, this.path);
  }
}

function newKid(): string {
  return `k${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}
