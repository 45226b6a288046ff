/**
 * The host side of a cloud-init NoCloud seed: `meta-data`, `network-config` (netplan version 2) and
 * `user-data` on a small vfat disk labelled `cidata`, which the guest (cloud-init, or tinyvm's rcS:
 * src/images/tinyvm/README.md) finds by its label. Made with dosfstools (`mkfs.vfat`) and mtools
 * (`mcopy`): no mounts, no root.
 *
 * Values are validated (hostnames are RFC 1123 labels; keys, ids and addresses are single lines) and
 * always written as double-quoted YAML scalars, so spaces, colons and '#' in keys are safe.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { findTool } from '../../util/which.js';
import type { InstanceFile } from '../driver.js';

export interface SeedNetwork {
  /** The guest interface's MAC address (matched with `match: macaddress`). */
  mac: string;
  /** The address with its prefix, e.g. `10.0.0.5/24`. */
  address: string;
  gateway?: string;
  nameservers?: string[];
  search?: string[];
}

export interface SeedData {
  instanceId: string;
  /** An RFC 1123 label (`web-1`). */
  hostname: string;
  /** OpenSSH public keys, one line each. */
  publicKeys: string[];
  /** A `#!` script (tinyvm runs it once per instance id) or `#cloud-config` (cloud-init images). */
  userData?: Buffer | string;
  /** A static address, or DHCP. Absent: no network-config file (cloud-init and tinyvm use DHCP). */
  network?: SeedNetwork | 'dhcp';
  /**
   * Secrets and configs (files on the node, read when the image is written): in `yun-files/` with a
   * `list` (tinyvm places them at every boot) and as cloud-init `write_files` in `vendor-data`.
   * A seed that carries them must be written to a tmpfs.
   */
  files?: SeedFile[];
}

/** A file for the guest: the instance's files as the driver contract has them. */
export type SeedFile = InstanceFile;

/** The seed's directory of files, and its index (`MODE UID GID N TARGET` per line; the content in `yun-files/N`). */
export const SEED_FILES_DIR = 'yun-files';

/** The interface name the seed gives the guest's NIC (`set-name`). */
export const SEED_INTERFACE = 'eth0';
export const SEED_LABEL = 'cidata';
/** The smallest seed image; larger user-data makes a larger one. */
export const SEED_MIN_BYTES = 1024 * 1024;

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAC_RE = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const DOMAIN_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** A YAML double-quoted scalar (JSON strings are valid YAML double-quoted scalars). */
export function yamlQuote(s: string): string {
  return JSON.stringify(s);
}

function fail(msg: string): never {
  throw new Error(`invalid seed: ${msg}`);
}

function checkCidr(what: string, cidr: string): void {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const fam = m ? isIP(m[1]) : 0;
  if (!m || fam === 0 || Number(m[2]) > (fam === 4 ? 32 : 128)) fail(`${what} ${JSON.stringify(cidr)} is not an address with a prefix length (e.g. 10.0.0.5/24)`);
}

/** Throws an Error saying what is wrong with `d`, if anything. */
export function validateSeed(d: SeedData): void {
  if (typeof d.instanceId !== 'string' || d.instanceId === '') fail('instanceId is empty');
  if (d.instanceId.length > 255 || CONTROL_RE.test(d.instanceId) || /[\s/\\]/.test(d.instanceId)) {
    fail(`instanceId ${JSON.stringify(d.instanceId)} must be 1-255 characters without spaces, control characters, '/' or '\\'`);
  }
  if (typeof d.hostname !== 'string' || !HOSTNAME_RE.test(d.hostname)) {
    fail(`hostname ${JSON.stringify(d.hostname)} is not an RFC 1123 label (1-63 letters, digits and '-', not starting or ending with '-')`);
  }
  if (!Array.isArray(d.publicKeys)) fail('publicKeys must be an array of strings');
  d.publicKeys.forEach((k, i) => {
    if (typeof k !== 'string' || k.trim() === '') fail(`public key ${i} is empty`);
    if (/[\r\n]/.test(k)) fail(`public key ${i} contains a newline (give one key per array element)`);
    if (CONTROL_RE.test(k)) fail(`public key ${i} contains a control character`);
  });
  for (const f of d.files ?? []) {
    if (!f.target.startsWith('/') || CONTROL_RE.test(f.target) || f.target.endsWith('/')) fail(`file target ${JSON.stringify(f.target)} is not an absolute file path without control characters`);
    if (!Number.isInteger(f.uid) || !Number.isInteger(f.gid) || f.uid < 0 || f.gid < 0) fail(`file ${f.target}: uid and gid must be non-negative integers`);
    if (!Number.isInteger(f.mode) || f.mode < 0 || f.mode > 0o7777) fail(`file ${f.target}: mode ${f.mode} is not a file mode`);
  }
  const n = d.network;
  if (n === undefined || n === 'dhcp') return;
  if (typeof n !== 'object' || n === null) fail(`network must be 'dhcp' or an object, not ${JSON.stringify(n)}`);
  if (typeof n.mac !== 'string' || !MAC_RE.test(n.mac)) fail(`network.mac ${JSON.stringify(n.mac)} is not a MAC address (52:54:00:12:34:56)`);
  checkCidr('network.address', n.address);
  if (n.gateway !== undefined && isIP(n.gateway) !== 4) fail(`network.gateway ${JSON.stringify(n.gateway)} is not an IPv4 address`);
  for (const s of n.nameservers ?? []) if (isIP(s) === 0) fail(`network.nameservers: ${JSON.stringify(s)} is not an IP address`);
  for (const s of n.search ?? []) if (!DOMAIN_RE.test(s)) fail(`network.search: ${JSON.stringify(s)} is not a domain name`);
}

/** The `meta-data` file. */
export function renderMetaData(d: SeedData): string {
  validateSeed(d);
  const lines = [`instance-id: ${yamlQuote(d.instanceId)}`, `local-hostname: ${yamlQuote(d.hostname)}`];
  if (d.publicKeys.length === 0) lines.push('public-keys: []');
  else lines.push('public-keys:', ...d.publicKeys.map((k) => `  - ${yamlQuote(k.trim())}`));
  return lines.join('\n') + '\n';
}

/** The `network-config` file (netplan version 2), or undefined when `d.network` is not set. */
export function renderNetworkConfig(d: SeedData): string | undefined {
  validateSeed(d);
  const n = d.network;
  if (n === undefined) return undefined;
  const lines = ['version: 2', 'ethernets:', `  ${SEED_INTERFACE}:`];
  if (n === 'dhcp') {
    lines.push('    dhcp4: true');
    return lines.join('\n') + '\n';
  }
  lines.push('    match:', `      macaddress: ${yamlQuote(n.mac.toLowerCase())}`, `    set-name: ${SEED_INTERFACE}`, '    dhcp4: false');
  lines.push('    addresses:', `      - ${yamlQuote(n.address)}`);
  if (n.gateway) lines.push(`    gateway4: ${yamlQuote(n.gateway)}`);
  const ns = n.nameservers ?? [];
  const search = n.search ?? [];
  if (ns.length || search.length) {
    lines.push('    nameservers:');
    if (ns.length) lines.push('      addresses:', ...ns.map((s) => `        - ${yamlQuote(s)}`));
    if (search.length) lines.push('      search:', ...search.map((s) => `        - ${yamlQuote(s)}`));
  }
  return lines.join('\n') + '\n';
}

const octal = (mode: number) => mode.toString(8).padStart(4, '0');

/** The `list` of the seed's `yun-files/` (tinyvm reads it with `read -r mode uid gid n target`). */
export function renderFileList(files: SeedFile[]): string {
  return files.map((f, i) => `${octal(f.mode)} ${f.uid} ${f.gid} ${i} ${f.target}\n`).join('');
}

/** `vendor-data` for cloud-init images: the files as `write_files` (cloud-init writes them once per instance). */
export function renderVendorData(files: SeedFile[], contents: Buffer[]): string {
  const lines = ['#cloud-config', 'write_files:'];
  files.forEach((f, i) => {
    lines.push(`  - path: ${yamlQuote(f.target)}`, '    encoding: b64', `    content: ${yamlQuote(contents[i]!.toString('base64'))}`, `    owner: ${yamlQuote(`${f.uid}:${f.gid}`)}`, `    permissions: ${yamlQuote(octal(f.mode))}`);
  });
  return lines.join('\n') + '\n';
}

const mkfsVfat = () => findTool('mkfs.vfat') ?? findTool('mkfs.fat');

/** Why seeds cannot be made here (naming the Debian package to install), or null. */
export async function seedSupport(): Promise<string | null> {
  const missing: string[] = [];
  if (!mkfsVfat()) missing.push('mkfs.vfat is missing: install the Debian package dosfstools');
  if (!findTool('mcopy')) missing.push('mcopy is missing: install the Debian package mtools');
  return missing.length ? `cannot write cloud-init seed images: ${missing.join('; ')}` : null;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve();
      const code = (err as NodeJS.ErrnoException).code;
      const status = typeof code === 'number' ? `exit status ${code}` : String(code ?? err.message);
      const out = [stderr.trim(), stdout.trim()].filter(Boolean).join('\n');
      reject(new Error(`${cmd} ${args.join(' ')} failed (${status})${out ? `:\n${out}` : ''}`));
    });
  });
}

/**
 * Writes the seed image to `path` atomically (`${path}.tmp`, then a rename): a vfat file system
 * labelled `cidata` with `meta-data`, `user-data` (empty when not given) and `network-config` (when
 * `d.network` is set).
 */
export async function writeSeedImage(path: string, d: SeedData): Promise<void> {
  // renderMetaData validates everything (the files too) before anything is read or written.
  const files: Array<[string, Buffer]> = [
    ['meta-data', Buffer.from(renderMetaData(d))],
    ['user-data', d.userData === undefined ? Buffer.alloc(0) : Buffer.isBuffer(d.userData) ? d.userData : Buffer.from(d.userData)],
  ];
  const net = renderNetworkConfig(d);
  if (net !== undefined) files.push(['network-config', Buffer.from(net)]);
  const carried = d.files ?? [];
  const contents = await Promise.all(carried.map((f) => readFile(f.source)));
  if (carried.length) {
    files.push(['vendor-data', Buffer.from(renderVendorData(carried, contents))]);
    files.push([`${SEED_FILES_DIR}/list`, Buffer.from(renderFileList(carried))]);
  }
  const why = await seedSupport();
  if (why) throw new Error(why);
  const mkfs = mkfsVfat() as string;
  const mcopy = findTool('mcopy') as string;
  const mmd = findTool('mmd') ?? 'mmd';

  // FAT12/16 overhead plus the files, rounded up to whole 64 KiB.
  const payload = [...files.map(([, b]) => b.length), ...contents.map((b) => b.length)].reduce((n, len) => n + len + 4096, 0);
  const bytes = Math.max(SEED_MIN_BYTES, Math.ceil((payload * 1.1 + 256 * 1024) / 65536) * 65536);
  const tmp = `${path}.tmp`;
  let dir: string | undefined;
  // mtools: no ~/.mtoolsrc surprises, and no complaint about a geometry that is not a whole number of tracks.
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };
  try {
    await rm(tmp, { force: true });
    await run(mkfs, ['-n', SEED_LABEL, '-C', tmp, String(bytes / 1024)], env);
    // Staged beside the image (for a seed with secrets: on the same tmpfs), never in /tmp.
    dir = await mkdtemp(join(dirname(path), '.seed-'));
    if (carried.length) await run(mmd, ['-i', tmp, `::/${SEED_FILES_DIR}`], env);
    for (const [i, [name, data]] of files.entries()) {
      const f = join(dir!, String(i));
      await writeFile(f, data, { mode: 0o600 });
      await run(mcopy, ['-i', tmp, '-o', f, `::/${name}`], env);
    }
    for (const [i, f] of carried.entries()) await run(mcopy, ['-i', tmp, '-o', f.source, `::/${SEED_FILES_DIR}/${i}`], env);
    const st = await stat(tmp);
    if (st.size !== bytes) throw new Error(`seed image ${tmp} has ${st.size} bytes, expected ${bytes}`);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  } finally {
    for (const c of contents) c.fill(0);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
