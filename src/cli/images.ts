/** What the image commands share: the visibility option, the upload of a disk into a queued image, following an image until it rests. */
import { createReadStream, statSync } from 'node:fs';
import type { ApiClient } from './client.js';
import { CliError, usage } from './cli-error.js';
import { progressMeter } from './upload-progress.js';
import { VISIBILITIES } from '../images/access.js';


export function parseVisibility(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (!(VISIBILITIES as readonly string[]).includes(String(v))) throw usage(`--visibility must be one of ${VISIBILITIES.join(', ')}, not "${String(v)}"`);
  return String(v);
}

/** `--min-disk 2`: a whole number (0 or more) of `unit`. */
export function wholeNumber(v: unknown, flag: string, unit: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || String(v).trim() === '') throw usage(`${flag} must be a whole number of ${unit}, not "${String(v)}"`);
  return n;
}

export function parseChecksum(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (!/^(sha256:)?[0-9a-f]{64}$/.test(String(v))) throw usage(`--checksum must be a SHA-256 in hex (64 characters, optionally sha256:), not "${String(v)}"`);
  return String(v);
}

export function fileSize(file: string): number {
  try {
    const st = statSync(file);
    if (!st.isFile()) throw usage(`${file} is not a regular file`);
    return st.size;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw usage(`Cannot read ${file}: ${(e as Error).message}`);
  }
}

/** PUT a disk into a queued image, with progress on stderr: the image, active (or the error that killed it). */
export async function uploadDisk(api: ApiClient, ref: string, file: string, checksum: string | undefined): Promise<Record<string, unknown>> {
  const meter = progressMeter(`uploading ${file}`, fileSize(file));
  try {
    return (await api.upload<Record<string, unknown>>(`/v1/images/${encodeURIComponent(ref)}/file`, checksum ? { checksum } : {}, createReadStream(file), { method: 'PUT', contentType: 'application/octet-stream', onProgress: (n) => meter.update(n) })).body;
  } finally {
    meter.done();
  }
}

/** Follow an image until it is active (0) or killed (1, the reason on stderr); progress on stderr. */
export async function waitForImage(api: ApiClient, id: string, timeoutMs: number, stderr: NodeJS.WritableStream = process.stderr): Promise<{ code: number; image: Record<string, unknown> }> {
  const t0 = Date.now();
  let last = '';
  for (;;) {
    const img = await api.get<Record<string, unknown>>(`/v1/images/${encodeURIComponent(id)}`);
    const line = `${String(img.name)}: ${String(img.status)}`;
    if (line !== last) stderr.write(`${line}\n`);
    last = line;
    if (img.status === 'active') return { code: 0, image: img };
    if (img.status === 'killed') {
      stderr.write(`image ${String(img.name)} was killed: ${String(img.status_reason)}\n`);
      return { code: 1, image: img };
    }
    if (Date.now() - t0 > timeoutMs) {
      stderr.write(`still ${String(img.status)} after ${Math.round(timeoutMs / 1000)}s; follow it with \`yun image inspect ${id}\`\n`);
      return { code: 1, image: img };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
