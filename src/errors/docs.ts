import { catalogue } from './catalogue.js';

/** docs/errors.md, generated from the catalogue so the two never drift apart. */
export function render(): string {
  const rows = Object.entries(catalogue).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.title} | ${e.hint.replace(/\|/g, '\\|')} |`);
  return [
    '# Error catalogue',
    '',
    'Generated from `src/errors/catalogue.ts` by `npm run docs:errors`; a test fails when they differ.',
    '',
    'Every error the API returns has this shape, and the CLI prints the same code:',
    '',
    '```json',
    '{"error": {"code": "YUN_QUOTA_EXCEEDED", "title": "Quota exceeded", "detail": "what happened, why, and how to fix it", "request_id": "req-…"}}',
    '```',
    '',
    'The `detail` of each occurrence says exactly what happened; the hint below is the general way out, and is',
    'appended to the detail unless the detail already says how to fix it. Some errors add fields (`field`,',
    '`quota`, `limit`, `usage`, `current_version`, …) beside these four.',
    '',
    '| code | HTTP status | title | how to fix |',
    '|---|---|---|---|',
    ...rows,
    '',
    'CLI exit codes: 0 success, 1 error, 2 bad usage or configuration, 3 not authenticated, 4 forbidden (also',
    'quota exceeded), 5 not found, 6 conflict (name, version, in use, data directory locked), 7 server',
    'unavailable or unreachable.',
    '',
  ].join('\n');
}
