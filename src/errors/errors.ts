import { catalogue, type ErrorCode } from './catalogue.js';

export { catalogue, type ErrorCode };

/** The one error shape of the API: `{"error": {code, title, detail, request_id}}`. */
export interface ErrorBody {
  error: { code: string; title: string; detail: string; request_id: string; [k: string]: unknown };
}

/**
 * An error with a stable code. `detail` says what happened and why; the catalogue's hint (how to
 * fix) is appended unless `hint` overrides it or is set to '' because the detail already says.
 */
export class YunError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, detail: string, opts: { hint?: string; extra?: Record<string, unknown>; headers?: Record<string, string>; status?: number } = {}) {
    const entry = catalogue[code];
    const hint = opts.hint ?? entry.hint;
    const full = hint ? `${detail.replace(/\s+$/, '')}${/[.!?:]$/.test(detail.trim()) ? '' : '.'} ${hint}` : detail;
    super(full);
    this.name = 'YunError';
    this.code = code;
    this.status = opts.status ?? entry.status;
    this.title = entry.title;
    this.detail = full;
    this.extra = opts.extra ?? {};
    this.headers = opts.headers ?? {};
  }

  /** For frameworks that look for `statusCode` on thrown errors. */
  get statusCode(): number {
    return this.status;
  }

  toBody(requestId: string): ErrorBody {
    return { error: { code: this.code, title: this.title, detail: this.detail, request_id: requestId, ...this.extra } };
  }
}

export function notFound(kind: string, ref: string): YunError {
  return new YunError('YUN_NOT_FOUND', `No ${kind} "${ref}" exists in this project`, {
    hint: `List the ${kind}s you can see with \`yun ${kind} ls\`.`,
    extra: { kind },
  });
}
