/**
 * What the SDK throws.
 *
 * - `OpenMonetizeError`: the API answered with an error. `status` is the HTTP status and
 *   `code`, `message` and `field` are the API's error body (`{"error": {"code", "message",
 *   "field"?}}`, api/errors.py); `body` is the whole decoded body (e.g. `error.problems` of
 *   invalid burn-table rules), `headers` the answer's headers.
 * - `EventRejectedError` (an `OpenMonetizeError`): `events.track` / `trackCustomEvent` sent one
 *   event and the API refused it; `field` and `message` say why, `rejected` is the API's list.
 * - `OpenMonetizeConnectionError` (an `OpenMonetizeError` with `status` 0): the API could not be
 *   reached, or did not answer within `timeoutMs`, on every try.
 *
 * A call aborted through its own `signal` rejects with that signal's reason, not one of these.
 */

export interface ApiErrorBody {
  error?: { code?: string; message?: string; field?: string; problems?: { field?: string; reason?: string }[] };
  [key: string]: unknown;
}

export interface Rejection {
  index: number;
  reason: string;
  event_id?: string | null;
  field?: string | null;
}

export class OpenMonetizeError extends Error {
  /** The HTTP status; 0 when no answer came (OpenMonetizeConnectionError). */
  readonly status: number;
  /** The API's error code, e.g. `invalid_api_key`, `invalid_amount`, `no_rate`, `rate_limited`. */
  readonly code: string;
  /** The request field to blame, when one is (e.g. `amount`, `action.type`). */
  readonly field: string | undefined;
  /** The decoded answer body (undefined when it was not JSON). */
  readonly body: unknown;
  /** The answer's headers, lower-case names. */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { field?: string | undefined; body?: unknown; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "OpenMonetizeError";
    this.status = status;
    this.code = code;
    this.field = options.field;
    this.body = options.body;
    this.headers = options.headers ?? {};
  }

  /** The API's Retry-After in milliseconds (429 and 503 send one), or undefined. */
  get retryAfterMs(): number | undefined {
    return retryAfterMs(this.headers["retry-after"]);
  }

  override toString(): string {
    return `${this.name}: ${this.status} ${this.code}: ${this.message}${this.field ? ` (field ${this.field})` : ""}`;
  }
}

export class OpenMonetizeConnectionError extends OpenMonetizeError {
  constructor(code: "connection_error" | "timeout", message: string, cause: unknown) {
    super(0, code, message, { cause });
    this.name = "OpenMonetizeConnectionError";
  }
}

export class EventRejectedError extends OpenMonetizeError {
  /** Every rejection the API listed (one per refused event). */
  readonly rejected: Rejection[];

  constructor(status: number, rejected: Rejection[], body: unknown, headers: Record<string, string>) {
    const first = rejected[0];
    super(status, "event_rejected", first?.reason ?? "the event was rejected", {
      field: first?.field ?? undefined,
      body,
      headers,
    });
    this.name = "EventRejectedError";
    this.rejected = rejected;
  }
}

/** The typed error of an error answer. */
export function errorFrom(status: number, text: string, headers: Record<string, string>): OpenMonetizeError {
  const body = parseJson(text);
  const error = isObject(body) && isObject(body.error) ? body.error : undefined;
  if (error) {
    const field = typeof error.field === "string" ? error.field : undefined;
    return new OpenMonetizeError(status, String(error.code ?? "error"), String(error.message ?? ""), {
      field,
      body,
      headers,
    });
  }
  return new OpenMonetizeError(status, "http_error", text.slice(0, 500) || `HTTP ${status}`, { body, headers });
}

/** Retry-After (whole seconds, as the API sends it, or an HTTP date) in milliseconds. */
export function retryAfterMs(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value == null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function parseJson(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
