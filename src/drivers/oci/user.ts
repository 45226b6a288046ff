/**
 * The user a container process runs as, resolved like Docker does against the *image's*
 * `/etc/passwd` and `/etc/group` (never the node's): `uid`, `uid:gid`, `name`, `name:group`, or
 * empty for root. A numeric uid the image does not list runs with gid 0 and HOME=/.
 */
import { DriverError } from '../driver.js';
import { readFileInRoot } from './rootfs-path.js';

export interface ContainerUser {
  uid: number;
  gid: number;
  /** Supplementary groups: every group of /etc/group that lists the user by name. */
  additionalGids: number[];
  /** From /etc/passwd, else `/` (Docker's default for HOME). */
  home: string;
  name?: string;
}

const MAX_ID = 2 ** 32 - 2;

function parseTable(text: string | undefined): string[][] {
  if (!text) return [];
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

function numeric(s: string, what: string, spec: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_ID) throw new DriverError(`invalid user "${spec}": ${what} ${s} is out of range`);
  return n;
}

export async function resolveContainerUser(rootfs: string, spec: string): Promise<ContainerUser> {
  const trimmed = spec.trim();
  const [u = '', g] = trimmed === '' ? ['0'] : (trimmed.split(':', 2) as [string, string | undefined]);
  if (u === '' && g !== undefined) throw new DriverError(`invalid user "${spec}": the user part is empty (expected uid, uid:gid, name or name:group)`);
  const passwd = parseTable(await readFileInRoot(rootfs, '/etc/passwd'));
  let uid: number;
  let gid = 0;
  let home = '/';
  let name: string | undefined;
  if (/^\d+$/.test(u)) {
    uid = numeric(u, 'uid', spec);
    const pw = passwd.find((f) => f[2] === String(uid));
    if (pw) {
      name = pw[0];
      gid = Number(pw[3]) || 0;
      home = pw[5] || '/';
    }
  } else {
    const pw = passwd.find((f) => f[0] === u);
    if (!pw) throw new DriverError(`user "${u}" does not exist in the image (not in its /etc/passwd); use a numeric uid or add the user to the image`);
    name = u;
    uid = numeric(pw[2] ?? '', 'uid', spec);
    gid = Number(pw[3]) || 0;
    home = pw[5] || '/';
  }
  const groups = parseTable(await readFileInRoot(rootfs, '/etc/group'));
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = numeric(g, 'gid', spec);
    else {
      const gr = groups.find((f) => f[0] === g);
      if (!gr) throw new DriverError(`group "${g}" does not exist in the image (not in its /etc/group); use a numeric gid or add the group to the image`);
      gid = numeric(gr[2] ?? '', 'gid', spec);
    }
  }
  const additionalGids: number[] = [];
  if (name !== undefined) {
    for (const gr of groups) {
      const members = (gr[3] ?? '').split(',').map((m) => m.trim());
      const id = Number(gr[2]);
      if (members.includes(name) && Number.isSafeInteger(id) && id !== gid && !additionalGids.includes(id)) additionalGids.push(id);
    }
  }
  return { uid, gid, additionalGids, home, ...(name !== undefined ? { name } : {}) };
}
