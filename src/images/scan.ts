/**
 * Checking an image's layers without unpacking them: the same rules as unpack.ts, applied to a tree
 * kept in memory (paths and their kinds, across the layers in order, whiteouts included). Imports run
 * it so an unsafe or tampered image is rejected before anything of it is kept; `rootfs()` enforces
 * the rules again on the real file system.
 *
 * `scanLayer` also computes the layer's uncompressed digest (its diff_id) on the way.
 */
import { type Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import type { ReadEntry } from 'tar';
import { YunError } from '../errors/errors.js';
import { compressionOf, digestMismatch, HashingStream, sizeMismatch } from './digest.js';
import { readTar, TarFormatError } from './tar-stream.js';
import { entryComponents, invalidEntry, layerName, unsafeEntry, type LayerLabel } from './unpack.js';

type Kind = 'dir' | 'symlink' | 'file' | 'other';

interface VNode {
  kind: Kind;
  target?: string;
  children?: Map<string, VNode>;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

export class LayerScanner {
  private readonly tree: VNode = { kind: 'dir', children: new Map() };
  private current = new Set<string>();
  private layer: LayerLabel = { digest: '', index: 0, count: 0 };

  constructor(readonly privileged: boolean) {}

  beginLayer(l: LayerLabel): void {
    this.layer = l;
    this.current = new Set();
  }

  /** Walk to the directory `parts`, creating missing ones if `create`; never through a symlink. */
  private dir(parts: string[], raw: string, create: boolean): VNode | undefined {
    let node = this.tree;
    const seen: string[] = [];
    for (const c of parts) {
      seen.push(c);
      let next = node.children!.get(c);
      if (!next) {
        if (!create) return undefined;
        next = { kind: 'dir', children: new Map() };
        node.children!.set(c, next);
      }
      if (next.kind === 'symlink') {
        throw unsafeEntry(this.layer, raw, `would be written through "${seen.join('/')}", a symbolic link (to "${next.target ?? '?'}"); links are never followed while unpacking`);
      }
      if (next.kind !== 'dir') throw invalidEntry(this.layer, raw, `needs "${seen.join('/')}" to be a directory, but it is a file`);
      node = next;
    }
    return node;
  }

  private mark(parts: string[]): void {
    for (let i = 1; i <= parts.length; i++) this.current.add(parts.slice(0, i).join('/'));
  }

  entry(e: ReadEntry): void {
    const raw = e.path;
    const parts = entryComponents(raw, this.layer);
    const base = parts[parts.length - 1] ?? '';
    const dirParts = parts.slice(0, -1);
    if (base.startsWith(WH)) {
      const d = this.dir(dirParts, raw, false);
      if (!d) return;
      if (base === OPAQUE) return this.opaque(d, dirParts.join('/'));
      if (base.startsWith(`${WH}${WH}`)) return;
      const name = base.slice(WH.length);
      if (name === '' || name === '.' || name === '..') throw unsafeEntry(this.layer, raw, 'is a whiteout of no valid name');
      if (!this.current.has([...dirParts, name].join('/'))) d.children!.delete(name);
      return;
    }
    if (parts.length === 0) {
      if (e.type !== 'Directory') throw unsafeEntry(this.layer, raw, `would replace the root directory with a ${e.type}`);
      return;
    }
    const parent = this.dir(dirParts, raw, true)!;
    this.mark(parts);
    switch (e.type) {
      case 'Directory':
      case 'GNUDumpDir': {
        const cur = parent.children!.get(base);
        if (cur?.kind !== 'dir') parent.children!.set(base, { kind: 'dir', children: new Map() });
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        parent.children!.set(base, { kind: 'file' });
        return;
      case 'SymbolicLink':
        if (!e.linkpath) throw invalidEntry(this.layer, raw, 'is a symbolic link without a target');
        if (e.linkpath.includes('\0')) throw unsafeEntry(this.layer, raw, 'has a NUL byte in its link target');
        parent.children!.set(base, { kind: 'symlink', target: e.linkpath });
        return;
      case 'Link': {
        const target = entryComponents(e.linkpath ?? '', this.layer, 'hard link target', raw);
        if (target.length === 0) throw unsafeEntry(this.layer, raw, 'is a hard link to the root directory');
        const td = this.dir(target.slice(0, -1), raw, false);
        const t = td?.children!.get(target[target.length - 1]!);
        if (!t) throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", which does not exist in the image`);
        if (t.kind === 'dir') throw unsafeEntry(this.layer, raw, `is a hard link to "${e.linkpath}", a directory`);
        parent.children!.set(base, { kind: t.kind, ...(t.target ? { target: t.target } : {}) });
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
        if (!this.privileged) {
          throw unsafeEntry(this.layer, raw, `is a ${e.type === 'CharacterDevice' ? 'character' : 'block'} device node, which is only created when running as root`);
        }
        parent.children!.set(base, { kind: 'other' });
        return;
      case 'FIFO':
        parent.children!.set(base, { kind: 'other' });
        return;
      default:
        throw invalidEntry(this.layer, raw, `has an unsupported type (${e.type})`);
    }
  }

  private opaque(d: VNode, rel: string): void {
    for (const [name, child] of [...d.children!]) {
      const p = rel ? `${rel}/${name}` : name;
      if (!this.current.has(p)) d.children!.delete(name);
      else if (child.kind === 'dir') this.opaque(child, p);
    }
  }
}

/**
 * Read one layer (tar, tar+gzip) through `scanner`, returning its blob digest and its uncompressed
 * digest (diff_id), both computed here.
 */
export async function scanLayer(open: () => Readable, scanner: LayerScanner, label: LayerLabel): Promise<{ digest: string; diffId: string; size: number; compression: 'gzip' | 'zstd' | 'none' }> {
  let head: Buffer = Buffer.alloc(0);
  const s = open();
  try {
    for await (const c of s) {
      head = c as Buffer;
      break;
    }
  } finally {
    s.destroy();
  }
  const comp = compressionOf(head);
  const blob = new HashingStream();
  const diff = new HashingStream();
  const chain: NodeJS.ReadWriteStream[] = [blob];
  if (comp === 'gzip') chain.push(zlib.createGunzip());
  if (comp === 'zstd') {
    const z = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress;
    if (!z) throw new YunError('YUN_IMAGE_INVALID', `${layerName(label)} is zstd-compressed, and this Node.js has no zstd (Node.js 22.15 or later has)`, { extra: { layer: label.digest } });
    chain.push(z());
  }
  chain.push(diff);
  scanner.beginLayer(label);
  try {
    await readTar(open(), chain, (e) => scanner.entry(e));
  } catch (e) {
    if (e instanceof YunError) throw e;
    if (e instanceof TarFormatError || (e as { code?: string }).code?.startsWith('Z_')) {
      throw new YunError('YUN_IMAGE_INVALID', `${layerName(label)} is not a valid ${comp === 'none' ? '' : `${comp} `}tar archive: ${(e as Error).message}`, { extra: { layer: label.digest } });
    }
    throw e;
  }
  return { digest: blob.digest(), diffId: diff.digest(), size: blob.bytes, compression: comp };
}

/**
 * Scan a layer file of an archive that should have digest `expected`. A digest mismatch is reported
 * as such (before an error about the content it would cause): checked first when the source knows
 * digests cheaply, else after a failed scan.
 */
export async function scanArchiveLayer(
  src: { digestOf(rel: string): Promise<{ digest: string; size: number }>; open(rel: string): Readable; readonly cheapDigests: boolean; readonly label: string },
  rel: string,
  expected: { digest: string; size?: number },
  scanner: LayerScanner,
  label: LayerLabel,
  what: string,
): Promise<{ digest: string; diffId: string; size: number; compression: 'gzip' | 'zstd' | 'none' }> {
  const check = async (got: { digest: string; size: number }) => {
    if (got.digest !== expected.digest) throw digestMismatch(`${what} (${rel} in ${src.label})`, expected.digest, got.digest, { file: rel, layer: expected.digest });
    if (expected.size !== undefined && got.size !== expected.size) throw sizeMismatch(`${what} (${rel} in ${src.label})`, expected.size, got.size, { file: rel, layer: expected.digest });
  };
  if (src.cheapDigests) await check(await src.digestOf(rel));
  let r;
  try {
    r = await scanLayer(() => src.open(rel), scanner, label);
  } catch (e) {
    if (!src.cheapDigests) await check(await src.digestOf(rel));
    throw e;
  }
  await check(r);
  return r;
}
