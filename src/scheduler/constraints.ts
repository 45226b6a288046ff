import type { Constraint, SchedNode } from './types.js';

const RE = /^node\.(id|hostname|role|labels\.([A-Za-z0-9][A-Za-z0-9_.\-/]*))\s*(==|!=)\s*(\S.*?)\s*$/;

/** Parse `node.labels.zone==a`; returns an error message for anything else. */
export function parseConstraint(text: string): Constraint | string {
  const m = RE.exec(text.trim());
  if (!m) {
    return `"${text}" is not a placement constraint: write node.id, node.hostname, node.role or node.labels.KEY, then == or !=, then a value (e.g. node.labels.zone==a)`;
  }
  return { key: m[1]!.startsWith('labels.') ? `labels.${m[2]}` : m[1]!, op: m[3] as '==' | '!=', value: m[4]!, text: `node.${m[1]}${m[3]}${m[4]}` };
}

function nodeValue(n: SchedNode, key: string): string | undefined {
  if (key === 'id') return n.id;
  if (key === 'hostname') return n.name;
  if (key === 'role') return n.role;
  return n.labels[key.slice('labels.'.length)];
}

export function satisfies(n: SchedNode, c: Constraint): boolean {
  const v = nodeValue(n, c.key);
  return c.op === '==' ? v === c.value : v !== c.value;
}
