/**
 * What the tests share. They run against the real API: tests/integration/test_typescript_sdk.py
 * gives each test file a fresh tenant of its own through the environment
 * (OPENMONETIZE_API_URL, OPENMONETIZE_API_KEY, OPENMONETIZE_CUSTOMER_ID).
 */

import assert from "node:assert/strict";
import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface Tenant {
  apiUrl: string;
  apiKey: string;
  customerId: string;
}

export function tenant(): Tenant {
  const apiUrl = process.env.OPENMONETIZE_API_URL;
  const apiKey = process.env.OPENMONETIZE_API_KEY;
  const customerId = process.env.OPENMONETIZE_CUSTOMER_ID;
  assert.ok(
    apiUrl && apiKey && customerId,
    "set OPENMONETIZE_API_URL, OPENMONETIZE_API_KEY and OPENMONETIZE_CUSTOMER_ID (a fresh tenant per test file): " +
      "tests/integration/test_typescript_sdk.py does",
  );
  return { apiUrl, apiKey, customerId };
}

/** Fast retries, so that tests of failures do not wait seconds. */
export const FAST = { maxRetries: 3, backoffMs: 5, maxBackoffMs: 50 };

/** Poll `probe` until it returns something other than undefined, or fail after the deadline with its last error. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const found = await probe();
      if (found !== undefined) return found;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new assert.AssertionError({ message: `timed out after ${timeoutMs} ms waiting for ${what}; last error: ${String(last)}` });
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Headers of the API's answer, when the relay forwarded the request. */
  upstreamHeaders?: Record<string, string>;
  upstreamStatus?: number;
}

/**
 * What the relay does with the n-th request (0-based): answer it itself with a status
 * (without forwarding), forward it, forward it and then answer the client a 503 (the API
 * acted, the client does not know), or drop the connection without answering.
 */
export type Step =
  | { answer: number; retryAfter?: string }
  | "forward"
  | "forward-then-503"
  | "drop";

/**
 * A tiny HTTP relay between the SDK and the real API: it plays the network only (failures,
 * dropped answers) and records every request the SDK sent, headers and body.
 */
export class Relay {
  readonly seen: Seen[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(
    readonly target: string | undefined,
    readonly plan: (n: number) => Step,
  ) {
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        void this.#handle(request.method ?? "GET", request.url ?? "/", request.headers, Buffer.concat(chunks), response, request.socket);
      });
    });
    this.#server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  static async start(target: string | undefined, plan: (n: number) => Step): Promise<Relay> {
    const relay = new Relay(target, plan);
    await new Promise<void>((resolve) => relay.#server.listen(0, "127.0.0.1", resolve));
    return relay;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(
    method: string,
    url: string,
    headers: IncomingHttpHeaders,
    body: Buffer,
    response: import("node:http").ServerResponse,
    socket: Socket,
  ): Promise<void> {
    const seen: Seen = { method, url, headers, body: body.toString("utf8") };
    const step = this.plan(this.seen.length);
    this.seen.push(seen);
    if (step === "drop") {
      socket.destroy();
      return;
    }
    if (typeof step === "object") {
      const extra = step.retryAfter === undefined ? {} : { "Retry-After": step.retryAfter };
      response.writeHead(step.answer, { "Content-Type": "application/json", ...extra });
      response.end(JSON.stringify({ error: { code: "relay", message: `the relay answered ${step.answer}` } }));
      return;
    }
    assert.ok(this.target, "this relay has no API to forward to");
    const forwarded: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined && !["host", "connection", "content-length"].includes(name)) {
        forwarded[name] = Array.isArray(value) ? value.join(", ") : value;
      }
    }
    const init: RequestInit = { method, headers: forwarded };
    if (method !== "GET" && method !== "HEAD") init.body = body;
    const upstream = await fetch(this.target + url, init);
    const text = await upstream.text();
    seen.upstreamStatus = upstream.status;
    seen.upstreamHeaders = Object.fromEntries(upstream.headers.entries());
    if (step === "forward-then-503") {
      response.writeHead(503, { "Content-Type": "application/json", "Retry-After": "0" });
      response.end(JSON.stringify({ error: { code: "relay", message: "the relay lost the API's answer" } }));
      return;
    }
    response.writeHead(upstream.status, { "Content-Type": upstream.headers.get("content-type") ?? "application/json" });
    response.end(text);
  }
}
