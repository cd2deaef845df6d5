/**
 * One request with retries: the API key on every try, the same body and Idempotency-Key on
 * every try, a timeout per try, and the caller's AbortSignal honoured throughout (also while
 * waiting between tries).
 */

import { OpenMonetizeConnectionError, retryAfterMs } from "./errors.js";
import { type RetryPolicy, delayMs, errorCode, neverConnected, retryStatus, sleep } from "./retries.js";

export const USER_AGENT = "openmonetize-typescript/0.1.0";

export interface Call {
  method: "GET" | "POST";
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  /** Sent as Idempotency-Key on every try of this call. */
  idempotencyKey?: string | undefined;
  /** Safe to send again after the API may have acted on it (every call of this SDK is). */
  repeatable?: boolean;
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
}

export interface CallOptions {
  timeoutMs?: number | undefined;
  retry?: RetryPolicy | undefined;
  signal?: AbortSignal | undefined;
}

export interface TransportConfig {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  retry: RetryPolicy;
  fetch: typeof globalThis.fetch;
}

export class Transport {
  readonly #config: TransportConfig;

  constructor(config: TransportConfig) {
    this.#config = config;
  }

  get baseUrl(): string {
    return this.#config.baseUrl;
  }

  /** The final answer, whatever its status (the caller reads it), once the retries are spent. */
  async send(call: Call, options: CallOptions = {}): Promise<Answer> {
    const policy = options.retry ?? this.#config.retry;
    const timeoutMs = options.timeoutMs ?? this.#config.timeoutMs;
    const repeatable = call.repeatable ?? true;
    const url = this.#url(call);
    const headers: Record<string, string> = {
      "X-OM-Api-Key": this.#config.apiKey,
      Accept: "application/json",
      "User-Agent": USER_AGENT,
    };
    let body: string | undefined;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body); // once: every try sends the same bytes
      headers["Content-Type"] = "application/json";
    }
    if (call.idempotencyKey !== undefined) headers["Idempotency-Key"] = call.idempotencyKey;

    for (let retry = 0; ; retry++) {
      let answer: Answer;
      try {
        answer = await this.#once(url, call.method, headers, body, timeoutMs, options.signal);
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        const timedOut = isTimeout(error);
        if (retry >= policy.maxRetries || !(neverConnected(error) || repeatable)) {
          const what = timedOut ? `no answer within ${timeoutMs} ms` : describe(error);
          throw new OpenMonetizeConnectionError(
            timedOut ? "timeout" : "connection_error",
            `${call.method} ${call.path}: ${what} (after ${retry + 1} ${retry === 0 ? "try" : "tries"})`,
            error,
          );
        }
        await sleep(delayMs(policy, retry, undefined), options.signal);
        continue;
      }
      if (retry < policy.maxRetries && retryStatus(answer.status, repeatable)) {
        await sleep(delayMs(policy, retry, retryAfterMs(answer.headers["retry-after"])), options.signal);
        continue;
      }
      return answer;
    }
  }

  async #once(
    url: string,
    method: string,
    headers: Record<string, string>,
    body: string | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const init: RequestInit = { method, headers, signal: both };
    if (body !== undefined) init.body = body;
    const response = await this.#config.fetch(url, init);
    const text = await response.text(); // within the same timeout: a stalled body is a timeout too
    const answerHeaders: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      answerHeaders[name.toLowerCase()] = value;
    });
    return { status: response.status, headers: answerHeaders, text };
  }

  #url(call: Call): string {
    const url = new URL(this.#config.baseUrl + call.path);
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, value);
    }
    return url.toString();
  }
}

function isTimeout(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "TimeoutError" || errorCode(error) === "UND_ERR_HEADERS_TIMEOUT" || errorCode(error) === "UND_ERR_BODY_TIMEOUT";
}

function describe(error: unknown): string {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${code ? `${code} ` : ""}${message}${cause}`;
}
