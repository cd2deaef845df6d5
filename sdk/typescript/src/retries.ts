/**
 * When the SDK tries a request again, and how long it waits first (as the Python SDK,
 * openmonetize/sdk/retries.py).
 *
 * Every call of this SDK is safe to repeat: reads and rating write nothing, an event is charged
 * once per `event_id` (the SDK fixes it, and the timestamp, once per call), and the POSTs that
 * write (credits, burn tables, entitlement holds) carry an `Idempotency-Key` that the SDK
 * generates once per call and sends on every try, so the API acts once. So a call is retried
 * on 429 (the rate limit refused it before doing anything), on 5xx answers other than 501
 * (a 503 says when to come back), on a connection that could not be opened, and on a
 * connection that dropped or timed out after the request was sent: at most `maxRetries` times.
 *
 * The wait is the API's Retry-After when it sends one (capped at `maxBackoffMs`), else
 * exponential backoff with jitter: uniformly between half and all of
 * min(maxBackoffMs, backoffMs * 2 ** retry).
 */

export interface RetryPolicy {
  /** Tries after the first; 0 never retries. Default 3. */
  maxRetries: number;
  /** The first backoff's ceiling, doubled at each retry. Default 250 ms. */
  backoffMs: number;
  /** No wait is longer, Retry-After included. Default 8000 ms. */
  maxBackoffMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({ maxRetries: 3, backoffMs: 250, maxBackoffMs: 8000 });

export function retryPolicy(given: Partial<RetryPolicy> | undefined): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...dropUndefined(given ?? {}) };
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`retry.${name} must be a finite number >= 0, got ${value}`);
  }
  return policy;
}

/** Milliseconds to wait before retry number `retry` (0 for the first). */
export function delayMs(policy: RetryPolicy, retry: number, retryAfter: number | undefined, random = Math.random): number {
  if (retryAfter !== undefined) return Math.min(retryAfter, policy.maxBackoffMs);
  const ceiling = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** retry);
  return ceiling / 2 + random() * (ceiling / 2);
}

/** Whether an answer calls for another try. */
export function retryStatus(status: number, repeatable: boolean): boolean {
  return status === 429 || (repeatable && status >= 500 && status !== 501);
}

/** Codes of a connection that was never opened: nothing was sent, a retry is always safe. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

export function neverConnected(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && NOT_CONNECTED.has(code);
}

/** The system or undici error code of a failed fetch (`TypeError: fetch failed` carries it as its cause). */
export function errorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const errors = (e as { errors?: unknown }).errors; // AggregateError: one per address tried
    if (Array.isArray(errors) && errors.length > 0) return errorCode(errors[0]);
  }
  return undefined;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
