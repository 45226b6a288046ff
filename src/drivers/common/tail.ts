import { open, type FileHandle } from 'node:fs/promises';

/** The last `bytes` of a file ('' when it does not exist). */
export async function tailOf(path: string, bytes: number): Promise<string> {
  let f: FileHandle;
  try {
    f = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = (await f.stat()).size;
    const n = Math.min(size, Math.max(0, bytes));
    const buf = Buffer.alloc(n);
    await f.read(buf, 0, n, size - n);
    return buf.toString('utf8');
  } finally {
    await f.close();
  }
}
