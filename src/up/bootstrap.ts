import { existsSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_PROJECT, type Identity } from '../identity/identity.js';
import { generatePassword } from '../identity/passwords.js';
import { GLOBAL, type Store } from '../store/store.js';
import { QUOTA_KEYS } from '../manager/quotas.js';
import { DEFAULT_FLAVORS, defaultFlavorData } from '../servers/flavor.js';

export const ADMIN_USER = 'admin';

/**
 * First start (and every start, idempotently): the `admin` project, the `admin` user holding the
 * admin role on it, and DATA_DIR/admin.env. The admin password is generated, never chosen; if
 * admin.env has gone missing, a new password is generated and written, so there is never a
 * password to reconcile.
 */
export async function bootstrap(store: Store, identity: Identity, opts: { dataDir: string; url: string; caPath: string }): Promise<{ envPath: string; created: boolean }> {
  let created = false;
  let project = await store.getByName('project', GLOBAL, ADMIN_PROJECT);
  if (!project) {
    project = await store.create({
      kind: 'project', project_id: GLOBAL, name: ADMIN_PROJECT,
      data: { description: 'The cloud administrators\' project.', enabled: true, quotas: Object.fromEntries(QUOTA_KEYS.map((k) => [k, -1])) },
    });
    created = true;
  }
  let user = await store.getByName('user', GLOBAL, ADMIN_USER);
  if (!user) {
    user = await store.create({ kind: 'user', project_id: GLOBAL, name: ADMIN_USER, data: { email: null, enabled: true, default_project_id: project.id } });
    created = true;
  }
  const assignment = await store.getByName('role_assignment', project.id, user.id);
  if (!assignment) await store.create({ kind: 'role_assignment', project_id: project.id, name: user.id, data: { roles: ['admin'] } });
  else if (!(assignment.data.roles as string[]).includes('admin')) {
    await store.update({ kind: 'role_assignment', id: assignment.id, version: assignment.version, data: { roles: [...(assignment.data.roles as string[]), 'admin'] } });
  }
  if (user.data.enabled === false) await store.update({ kind: 'user', id: user.id, version: user.version, data: { ...user.data, enabled: true } });

  const envPath = join(opts.dataDir, 'admin.env');
  if (!existsSync(envPath) || !(await store.getSecret(`password/${user.id}`))) {
    const password = generatePassword();
    await identity.setPassword(user.id, password);
    const text = [
      '# Yunstack admin credentials (like devstack\'s openrc). Use: source this file, then run yun.',
      `export YUN_URL=${opts.url}`,
      `export YUN_CACERT=${opts.caPath}`,
      `export YUN_USERNAME=${ADMIN_USER}`,
      `export YUN_PASSWORD=${password}`,
      `export YUN_PROJECT=${ADMIN_PROJECT}`,
      '',
    ].join('\n');
    const tmp = `${envPath}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, envPath);
  } else {
    // Keep the password; make sure the URL and CA path are current.
    const { readFileSync } = await import('node:fs');
    const old = readFileSync(envPath, 'utf8');
    const next = old.replace(/^export YUN_URL=.*$/m, `export YUN_URL=${opts.url}`).replace(/^export YUN_CACERT=.*$/m, `export YUN_CACERT=${opts.caPath}`);
    if (next !== old) {
      writeFileSync(`${envPath}.tmp`, next, { mode: 0o600 });
      renameSync(`${envPath}.tmp`, envPath);
    }
  }
  return { envPath, created };
}

/** The five default flavors, made once (an admin who removes one keeps it removed). */
export async function ensureDefaultFlavors(store: Store): Promise<void> {
  if (await store.getSecret('bootstrap/flavors')) return;
  for (const f of DEFAULT_FLAVORS) {
    if (await store.get('flavor', f.id) || await store.getByName('flavor', GLOBAL, f.name)) continue;
    await store.create({ kind: 'flavor', id: f.id, project_id: GLOBAL, name: f.name, data: defaultFlavorData(f) });
  }
  await store.putSecret('bootstrap/flavors', 'done');
}

