/**
 * References to secrets and configs (swarm mode's SecretReference / ConfigReference): how a service's
 * tasks and a server name the files they receive. One shape, schema, defaults and target rules for
 * both users.
 */
import { YunError } from '../errors/errors.js';
import { CONFIG, SECRET, type BlobKind } from './secret.js';

/**
 * A secret or config received as a file. Given by name; the server resolves the name to the
 * object's id and revision, so a new revision of the content is a new task spec: a rolling update.
 */
export interface FileRef {
  /** The secret's or config's name in the project. */
  source: string;
  /** Set by the server: the object it resolved to, and its content's revision. */
  id?: string;
  revision?: number;
  /** Absolute path inside the task (secrets default to /run/secrets/SOURCE, configs to /SOURCE). */
  target: string;
  /** Numeric owner and group of the file, and its mode (default 0444, as swarm mode). */
  uid: string;
  gid: string;
  mode: number;
}

/** The references of a task spec or a server (absent when empty). */
export interface FileRefs {
  secrets?: FileRef[];
  configs?: FileRef[];
}

/** Where a secret or config lands when its target is a bare name. */
export const FILE_DIRS = { secret: '/run/secrets', config: '/' } as const;

export const BLOB_KINDS: readonly BlobKind[] = [SECRET, CONFIG];

/** The JSON schema of a list of references, as the API takes them. */
export function fileRefsSchema(kind: 'secret' | 'config', inside = 'the task') {
  return {
    type: 'array', maxItems: 100,
    items: {
      type: 'object', additionalProperties: false, required: ['source'],
      properties: {
        source: { type: 'string', minLength: 1, maxLength: 200, description: `The ${kind}'s name (or id) in the project.` },
        id: { type: 'string', description: 'Set by the server.' },
        revision: { type: 'integer', minimum: 1, description: 'Set by the server.' },
        target: { type: 'string', minLength: 1, maxLength: 4096, description: `Path inside ${inside}; a bare name is under ${FILE_DIRS[kind]}.` },
        uid: { type: 'string', pattern: '^[0-9]{1,10}$' },
        gid: { type: 'string', pattern: '^[0-9]{1,10}$' },
        mode: { type: 'integer', minimum: 0, maximum: 0o777 },
      },
    },
  } as const;
}

/** References with every default filled in: an absolute target, owner root, mode 0444. */
export function normalizeRefs(refs: Partial<FileRef>[] | undefined, kind: 'secret' | 'config'): FileRef[] {
  return (refs ?? []).map((r) => {
    const target = r.target ?? r.source!;
    return {
      source: r.source!, ...(r.id ? { id: r.id } : {}), ...(r.revision ? { revision: r.revision } : {}),
      target: target.startsWith('/') ? target : `${FILE_DIRS[kind].replace(/\/$/, '')}/${target}`,
      uid: r.uid ?? '0', gid: r.gid ?? '0', mode: r.mode ?? 0o444,
    };
  });
}

/**
 * Each target must be a plain absolute file path, unique among `taken` (the mount targets, which
 * it also must not be inside). `field` is the API field the references came in, e.g. `body/task`.
 */
export function checkRefTargets(refs: FileRefs, field: string, mounts: string[] = []): void {
  const bad = (f: string, detail: string, hint = '') => new YunError('YUN_VALIDATION_FAILED', detail, { extra: { field: f }, hint });
  const targets = new Set(mounts);
  for (const k of BLOB_KINDS) {
    const f = `${field}/${k.collection}`;
    for (const r of refs[k.collection] ?? []) {
      if (!r.target.startsWith('/') || r.target.split('/').some((part) => part === '..' || part === '.') || r.target.endsWith('/') || r.target.includes('//') || /[\n\r\0]/.test(r.target)) {
        throw bad(f, `The target of ${k.kind} "${r.source}" is not a plain file path: ${r.target}`, 'Give an absolute path like /run/secrets/db_password, or a bare file name.');
      }
      if (targets.has(r.target)) throw bad(f, `Two mounts, secrets or configs share the target ${r.target}`, 'Give each its own target=PATH.');
      if (mounts.some((m) => r.target.startsWith(`${m.replace(/\/$/, '')}/`))) throw bad(f, `The target ${r.target} of "${r.source}" is inside a mount; files cannot be placed inside another mount`, 'Choose a target outside the mounts.');
      targets.add(r.target);
    }
  }
}

/** Only the lists that are not empty (so specs from before secrets compare equal). */
export function refsFields(refs: FileRefs): FileRefs {
  return { ...(refs.secrets?.length ? { secrets: refs.secrets } : {}), ...(refs.configs?.length ? { configs: refs.configs } : {}) };
}

export function hasRefs(refs: FileRefs): boolean {
  return (refs.secrets?.length ?? 0) + (refs.configs?.length ?? 0) > 0;
}
