#!/usr/bin/env node
// Builds a `busybox` image offline from Debian's busybox-static, and imports it into the cloud
// (when YUN_URL is set, e.g. after `source DATA_DIR/admin.env`).
//
//   npm run image:busybox                 # build build/busybox-rootfs and import it as busybox:latest
//   npm run image:busybox -- --no-import  # only build
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'build', 'busybox-rootfs');
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
if (!busybox) {
  console.error('busybox not found: install the Debian package busybox-static (apt-get install busybox-static)');
  process.exit(2);
}
// A dynamically linked busybox names its program interpreter (ld-linux); it would not run alone.
if (readFileSync(busybox).includes('/ld-linux')) {
  console.error(`${busybox} is dynamically linked: install busybox-static, not busybox`);
  process.exit(2);
}

rmSync(out, { recursive: true, force: true });
for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'tmp', 'proc', 'sys', 'dev', 'www', 'var/log', 'home']) mkdirSync(join(out, d), { recursive: true });
chmodSync(join(out, 'tmp'), 0o1777);
copyFileSync(busybox, join(out, 'bin', 'busybox'));
chmodSync(join(out, 'bin', 'busybox'), 0o755);
for (const applet of execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
  if (applet === 'bin/busybox') continue;
  const p = join(out, applet);
  mkdirSync(dirname(p), { recursive: true });
  if (!existsSync(p)) symlinkSync('/bin/busybox', p);
}
writeFileSync(join(out, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
writeFileSync(join(out, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
writeFileSync(join(out, 'www', 'index.html'), '<h1>hello from busybox</h1>\n');
console.log(`built ${out} (busybox from ${busybox})`);

if (process.argv.includes('--no-import')) process.exit(0);
if (!process.env.YUN_URL) {
  console.log('YUN_URL is not set: not importing. Import it with:\n  yun image import-rootfs build/busybox-rootfs --name busybox:latest --cmd sh');
  process.exit(0);
}
const r = spawnSync(process.execPath, [join(root, 'bin', 'yun.js'), 'image', 'import-rootfs', out, '--name', 'busybox:latest', '--cmd', 'sh'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
