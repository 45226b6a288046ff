/**
 * Secret and config references as the API resolves them, for services and servers alike: names
 * become ids and revisions in the caller's project, and guards hold what is used against removal.
 */
import { YunError } from '../errors/errors.js';
import { BLOB_KINDS, type FileRefs } from '../secrets/refs.js';
import type { BlobData } from '../secrets/secret.js';
import type { Op, Store } from '../store/store.js';
import { fileGuard } from './commit.js';
import { findInProjects } from './http.js';

/** Replace each name with the object's id and current revision; a name not in the project is a 400. `field`: e.g. `body/task`. */
export async function resolveRefs(store: Store, refs: FileRefs, projectId: string, field: string): Promise<void> {
  for (const k of BLOB_KINDS) {
    const list = refs[k.collection];
    if (!list) continue;
    refs[k.collection] = await Promise.all(list.map(async (r) => {
      const o = await findInProjects(store, k.kind, r.source, [projectId]);
      if (!o) {
        throw new YunError('YUN_VALIDATION_FAILED', `${k.title} "${r.source}" does not exist in this project`, {
          hint: `Create it with \`yun ${k.kind} create ${r.source} FILE\`; \`yun ${k.kind} ls\` lists what there is.`, extra: { field: `${field}/${k.collection}` },
        });
      }
      return { ...r, source: o.name, id: o.id, revision: (o.data as unknown as BlobData).revision ?? 1 };
    }));
  }
}

/** Guards that hold the (resolved) secrets and configs against their removal; checked again on a retry. */
export async function refGuards(store: Store, refs: FileRefs, field: string): Promise<Op[]> {
  const ops: Op[] = [];
  for (const k of BLOB_KINDS) {
    for (const r of refs[k.collection] ?? []) {
      const version = await store.guard(fileGuard(r.id!));
      if (!(await store.get(k.kind, r.id!))) throw new YunError('YUN_VALIDATION_FAILED', `${k.title} "${r.source}" was removed meanwhile`, { extra: { field: `${field}/${k.collection}` } });
      ops.push({ op: 'guard', key: fileGuard(r.id!), version });
    }
  }
  return ops;
}
