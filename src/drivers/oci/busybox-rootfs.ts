/**
 * A minimal busybox root file system built from the node's static busybox (Debian's
 * `busybox-static`), for tests and benchmarks of image drivers that must not depend on the image
 * store: /bin/busybox plus one symlink per applet, /etc/passwd and /etc/group with root and nobody,
 * and /www/index.html for `httpd -h /www`.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageInfo } from '../driver.js';

export const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

export const INDEX_HTML = '<h1>hello from yunstack</h1>\n';

/** The static busybox of this node, or undefined. */
export function findStaticBusybox(): string | undefined {
  for (const p of BUSYBOX_CANDIDATES) {
    if (!existsSync(p)) continue;
    try {
      // A dynamically linked busybox would not run in a rootfs without its libc.
      const out = execFileSync('file', ['-L', p], { encoding: 'utf8' });
      if (/dynamically linked/.test(out)) continue;
    } catch {
      /* no `file`: assume static (Debian's busybox-static installs /bin/busybox) */
    }
    return p;
  }
  return undefined;
}

/** Build the rootfs in `dir` (which must not exist or be empty) and return `dir`. */
export function buildBusyboxRootfs(dir: string, busybox = findStaticBusybox()): string {
  if (!busybox) throw new Error('no static busybox on this node: install the Debian package busybox-static');
  for (const d of ['bin', 'etc', 'tmp', 'www', 'root', 'proc', 'sys', 'dev', 'var']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(busybox, join(dir, 'bin', 'busybox'));
  const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox' && !a.includes('/'));
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(join(dir, 'www', 'index.html'), INDEX_HTML);
  return dir;
}

/** An ImageInfo for a rootfs directory (no archive export: the docker driver cannot use it). */
export function rootfsImageInfo(rootfs: string, config: Partial<ImageInfo['config']> = {}, ref = 'busybox:test'): ImageInfo {
  return {
    ref,
    kind: 'container',
    digest: 'sha256:' + '0'.repeat(64),
    rootfs,
    config: { entrypoint: [], cmd: ['sh'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], workdir: '', user: '', ...config },
    exportDockerArchive: () => Promise.reject(new Error('this test image is a plain rootfs directory and cannot be exported')),
  };
}
