#!/usr/bin/env node
// Builds the `tinyvm` VM image offline from Debian packages (the cloud kernel, busybox-static) and
// imports it into the cloud (when YUN_URL is set, e.g. after `source DATA_DIR/admin.env`).
// See src/images/tinyvm/README.md.
//
//   npm run image:tinyvm                  # build build/tinyvm (cached) and import it as tinyvm
//   npm run image:tinyvm -- --no-import   # only build
//   npm run image:tinyvm -- --force       # rebuild even when the cached build matches
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyVm, tinyVmSupport } from '../dist/src/images/tinyvm/build.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
for (const a of args) {
  if (!['--no-import', '--force'].includes(a)) {
    console.error(`unknown option ${a} (known: --no-import, --force)`);
    process.exit(2);
  }
}

const support = await tinyVmSupport();
if (!support.ok) {
  console.error(`cannot build tinyvm: ${support.reason}`);
  process.exit(2);
}
const t = Date.now();
let b;
try {
  b = await buildTinyVm({ force: args.includes('--force'), log: (m) => console.log(`  ${m}`) });
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
const mib = (p) => `${(statSync(p).size / 1024 / 1024).toFixed(1)} MiB`;
console.log(`tinyvm (kernel ${b.kernelVersion}) in ${b.dir}, ${Date.now() - t} ms:`);
console.log(`  kernel   ${b.kernel}  ${mib(b.kernel)}`);
console.log(`  initrd   ${b.initrd}  ${mib(b.initrd)}`);
console.log(`  disk     ${b.disk}  ${mib(b.disk)} (${b.diskFormat}, virtual ${b.minDiskBytes / 1024 / 1024} MiB)`);
console.log(`  disk.raw ${b.diskRaw}`);
console.log(`  cmdline  ${b.cmdline}`);
console.log(`  minimum  ${b.minDiskBytes / 1024 / 1024} MiB disk, ${b.minRamBytes / 1024 / 1024} MiB RAM`);

const importArgs = [
  'image', 'import',
  '--disk-format', b.diskFormat,
  '--kernel', b.kernel,
  '--initrd', b.initrd,
  '--cmdline', b.cmdline,
  '--min-disk', '1',
  '--min-ram', String(b.minRamBytes / 1024 / 1024),
  '--name', 'tinyvm',
  b.disk,
];
const shown = `yun ${importArgs.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a === b.kernel || a === b.initrd || a === b.disk ? relative(process.cwd(), a) || a : a)).join(' ')}`;
if (args.includes('--no-import')) process.exit(0);
if (!process.env.YUN_URL) {
  console.log(`YUN_URL is not set: not importing. Import it with:\n  ${shown}`);
  process.exit(0);
}
console.log(`importing: ${shown}`);
const r = spawnSync(process.execPath, [join(root, 'bin', 'yun.js'), ...importArgs], { stdio: 'inherit' });
process.exit(r.status ?? 1);
