/**
 * `OpenMonetizeClient`: the API key (sent as `X-OM-Api-Key`), the base URL, the tenant
 * (`customerId`) bound once, and the resources the seed's README calls: `events.track`,
 * `trackCustomEvent`, `entitlements.check`, `rating.calculate`, `burnTables.create`, and
 * `credits`. Every call is retried as openmonetize/sdk/retries.py does (see ./retries.ts).
 */

import { EventRejectedError, errorFrom, parseJson, type Rejection } from "./errors.js";
import { type Answer, type Call, Transport } from "./http.js";
import { type RetryPolicy, retryPolicy } from "./retries.js";
import { decimal, defined, instant, newEventId, newIdempotencyKey } from "./serialize.js";
import type {
  BalanceRequest,
  BurnTable,
  BurnTableCreateRequest,
  BurnTableRules,
  BurnTableVersionRequest,
  ConsumeRequest,
  CreditBalance,
  CreditCommand,
  CreditsRequest,
  EntitlementCheckRequest,
  EntitlementDecision,
  EntitlementEstimate,
  EntitlementRelease,
  EntitlementReleaseRequest,
  Rating,
  RatingRequest,
  RequestOptions,
  TrackResult,
  UsageEvent,
  WriteOptions,
} from "./types.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:18080";
export const DEFAULT_TIMEOUT_MS = 10_000;

export interface OpenMonetizeClientOptions {
  /** Your OpenMonetize API key (`om_...`). Default: env OPENMONETIZE_API_KEY. */
  apiKey?: string | undefined;
  /**
   * Your tenant's customer id: the default `customer_id` of entitlement checks and credits
   * calls, and the wallet owner of `credits.balance`. Default: env OPENMONETIZE_CUSTOMER_ID.
   * Optional: events and rating need none (the API key names the tenant), and a call may
   * name `customer_id` itself.
   */
  customerId?: string | undefined;
  /** Default: env OPENMONETIZE_API_URL, then http://127.0.0.1:18080. */
  baseUrl?: string | undefined;
  /** Retries on 429, 5xx and connection errors; see RetryPolicy. `{ maxRetries: 0 }` turns them off. */
  retry?: Partial<RetryPolicy> | undefined;
  /** Per try, default 10 000 ms. */
  timeoutMs?: number | undefined;
  /** The fetch to use (default: the global fetch). */
  fetch?: typeof globalThis.fetch | undefined;
}

function env(name: string): string | undefined {
  const value = typeof process !== "undefined" ? process.env?.[name] : undefined;
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

export class OpenMonetizeClient {
  readonly baseUrl: string;
  readonly customerId: string | undefined;
  readonly events: Events;
  readonly entitlements: Entitlements;
  readonly rating: RatingResource;
  readonly burnTables: BurnTables;
  readonly credits: Credits;
  /** @internal */
  readonly #transport: Transport;

  constructor(options: OpenMonetizeClientOptions = {}) {
    const apiKey = options.apiKey ?? env("OPENMONETIZE_API_KEY");
    if (!apiKey) throw new TypeError("OpenMonetizeClient: give apiKey (or set OPENMONETIZE_API_KEY)");
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    this.baseUrl = (options.baseUrl ?? env("OPENMONETIZE_API_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.customerId = options.customerId ?? env("OPENMONETIZE_CUSTOMER_ID");
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch: run on Node 20+ or give options.fetch");
    this.#transport = new Transport({ baseUrl: this.baseUrl, apiKey, timeoutMs, retry: retryPolicy(options.retry), fetch: fetchImpl });
    const context: Context = {
      send: (call, opts) => this.#transport.send(call, opts),
      customer: (given, what) => this.#customer(given, what),
    };
    this.events = new Events(context);
    this.entitlements = new Entitlements(context);
    this.rating = new RatingResource(context);
    this.burnTables = new BurnTables(context);
    this.credits = new Credits(context);
  }

  /**
   * Report one usage event of any type (the seed calls it for IMAGE_GENERATION and CUSTOM
   * events): the same as `events.track`.
   */
  trackCustomEvent(event: UsageEvent, options?: RequestOptions): Promise<TrackResult> {
    return this.events.track(event, options);
  }

  /** Never shows the API key. */
  toString(): string {
    return `OpenMonetizeClient(baseUrl=${this.baseUrl}, customerId=${this.customerId ?? "-"})`;
  }

  #customer(given: string | undefined, what: string): string {
    const customerId = given ?? this.customerId;
    if (!customerId) {
      throw new TypeError(
        `${what}: no customer_id: give customerId to the client (or set OPENMONETIZE_CUSTOMER_ID), or customer_id in the call`,
      );
    }
    return customerId;
  }
}

interface Context {
  send(call: Call, options?: RequestOptions): Promise<Answer>;
  customer(given: string | undefined, what: string): string;
}

/** The decoded 2xx answer, or the typed error. */
function decoded<T>(answer: Answer): T {
  if (answer.status < 200 || answer.status >= 300) throw errorFrom(answer.status, answer.text, answer.headers);
  return JSON.parse(answer.text) as T;
}

function callOptions(options: RequestOptions | undefined): RequestOptions | undefined {
  return options === undefined ? undefined : defined({ timeoutMs: options.timeoutMs, signal: options.signal });
}

function waitQuery(wait: boolean | undefined): Record<string, string | undefined> {
  return { wait: wait ? "true" : undefined };
}

// ---- events -----------------------------------------------------------------------------

export class Events {
  readonly #context: Context;

  constructor(context: Context) {
    this.#context = context;
  }

  /**
   * Report one usage event (`POST /v1/events/ingest`). Resolves when Kafka acknowledged it
   * (`accepted: 1`); throws EventRejectedError naming the field when the API refused it.
   */
  async track(event: UsageEvent, options?: RequestOptions): Promise<TrackResult> {
    const result = await this.#send([event], options);
    if (result.rejected.length > 0) throw result.error();
    return result.result;
  }

  /** Report a batch; refused events are listed in `rejected` (with their index), not thrown. */
  async trackMany(events: UsageEvent[], options?: RequestOptions): Promise<TrackResult> {
    if (events.length === 0) throw new TypeError("trackMany: give at least one event");
    return (await this.#send(events, options)).result;
  }

  async #send(events: UsageEvent[], options: RequestOptions | undefined) {
    const bodies = events.map((event, index) => eventBody(event, index));
    const ids = bodies.map((body) => body.event_id as string);
    const answer = await this.#context.send(
      { method: "POST", path: "/v1/events/ingest", body: { events: bodies } },
      callOptions(options),
    );
    const body = parseJson(answer.text) as { accepted?: number; rejected?: Rejection[]; error?: unknown } | undefined;
    const perEvent =
      answer.status === 202 ||
      answer.status === 207 ||
      (answer.status === 400 && body !== undefined && Array.isArray(body.rejected) && body.error === undefined);
    if (!perEvent || body === undefined) throw errorFrom(answer.status, answer.text, answer.headers);
    const rejected = body.rejected ?? [];
    return {
      rejected,
      result: { accepted: body.accepted ?? 0, rejected, event_ids: ids, status: answer.status } satisfies TrackResult,
      error: () => new EventRejectedError(answer.status, rejected, body, answer.headers),
    };
  }
}

function eventBody(event: UsageEvent, index: number): Record<string, unknown> {
  if (typeof event !== "object" || event === null) throw new TypeError(`events[${index}] must be an object`);
  const { event_id, timestamp, quantity, ...rest } = event;
  return defined({
    event_id: event_id ?? newEventId(),
    ...rest,
    quantity: quantity == null ? quantity : decimal(quantity, "quantity"),
    timestamp: instant(timestamp ?? new Date(), "timestamp"),
  });
}

// ---- entitlements -----------------------------------------------------------------------

export class Entitlements {
  readonly #context: Context;

  constructor(context: Context) {
    this.#context = context;
  }

  /**
   * May this user make a call that costs about this much, now? (`POST /v1/entitlements/check`)
   * Give the seed's `action` or this API's `estimate` (`{credits}` or a usage estimate). With
   * `reserve: true` an allowed check holds the credits: the call then carries an
   * Idempotency-Key (generated unless given), so a retry names the same hold.
   */
  async check(request: EntitlementCheckRequest, options?: WriteOptions): Promise<EntitlementDecision> {
    const { customer_id, estimate, ...rest } = request;
    const body = defined({
      ...rest,
      customer_id: this.#context.customer(customer_id, "entitlements.check"),
      estimate: estimate === undefined ? undefined : estimateBody(estimate),
    });
    const key = request.reserve ? (options?.idempotencyKey ?? newIdempotencyKey()) : options?.idempotencyKey;
    const answer = await this.#context.send(
      { method: "POST", path: "/v1/entitlements/check", query: waitQuery(options?.wait), body, idempotencyKey: key },
      callOptions(options),
    );
    return decoded<EntitlementDecision>(answer);
  }

  /** Drop a hold before its expiry (a no-op if it was settled or released: safe to repeat). */
  async release(
    request: EntitlementReleaseRequest,
    options?: RequestOptions & { wait?: boolean },
  ): Promise<EntitlementRelease> {
    const body = defined({ ...request, customer_id: this.#context.customer(request.customer_id, "entitlements.release") });
    const answer = await this.#context.send(
      { method: "POST", path: "/v1/entitlements/release", query: waitQuery(options?.wait), body },
      callOptions(options),
    );
    return decoded<EntitlementRelease>(answer);
  }
}

function estimateBody(estimate: EntitlementEstimate): Record<string, unknown> {
  const { credits, quantity, ...rest } = estimate;
  return defined({
    ...rest,
    credits: credits == null ? credits : decimal(credits, "estimate.credits"),
    quantity: quantity == null ? quantity : decimal(quantity, "estimate.quantity"),
  });
}

// ---- rating -----------------------------------------------------------------------------

export class RatingResource {
  readonly #context: Context;

  constructor(context: Context) {
    this.#context = context;
  }

  /** What one usage event costs: credits, USD cost, margin (decimal strings), with the catalog in force at `timestamp` (default now). */
  async calculate(request: RatingRequest, options?: RequestOptions): Promise<Rating> {
    const { timestamp, quantity, ...rest } = request;
    const body = defined({
      ...rest,
      quantity: quantity == null ? quantity : decimal(quantity, "quantity"),
      timestamp: timestamp == null ? timestamp : instant(timestamp, "timestamp"),
    });
    const answer = await this.#context.send({ method: "POST", path: "/v1/rating/calculate", body }, callOptions(options));
    return decoded<Rating>(answer);
  }
}

// ---- burn tables ------------------------------------------------------------------------

export class BurnTables {
  readonly #context: Context;

  constructor(context: Context) {
    this.#context = context;
  }

  /**
   * A new burn table, version 1 (`POST /v1/burn-tables`). Rates are numbers or decimal
   * strings, answered as decimal strings. The call carries an Idempotency-Key (generated
   * unless given): a retry creates nothing twice.
   */
  async create(request: BurnTableCreateRequest, options?: RequestOptions & { idempotencyKey?: string }): Promise<BurnTable> {
    const { rules, effective_from, ...rest } = request;
    const body = defined({
      ...rest,
      rules: rulesBody(rules),
      effective_from: effective_from == null ? effective_from : instant(effective_from, "effective_from"),
    });
    const answer = await this.#context.send(
      { method: "POST", path: "/v1/burn-tables", body, idempotencyKey: options?.idempotencyKey ?? newIdempotencyKey() },
      callOptions(options),
    );
    return decoded<BurnTable>(answer);
  }

  /** Version max+1 of a table; `effective_from` (default now) may lie in the past to rebill. */
  async addVersion(
    burnTableId: string,
    request: BurnTableVersionRequest,
    options?: RequestOptions & { idempotencyKey?: string },
  ): Promise<BurnTable> {
    const { rules, effective_from, ...rest } = request;
    const body = defined({
      ...rest,
      rules: rulesBody(rules),
      effective_from: effective_from == null ? effective_from : instant(effective_from, "effective_from"),
    });
    const answer = await this.#context.send(
      {
        method: "POST",
        path: `/v1/burn-tables/${encodeURIComponent(burnTableId)}/versions`,
        body,
        idempotencyKey: options?.idempotencyKey ?? newIdempotencyKey(),
      },
      callOptions(options),
    );
    return decoded<BurnTable>(answer);
  }

  /** The tenant's tables, the latest version of each, newest first. */
  async list(options?: RequestOptions): Promise<BurnTable[]> {
    const answer = await this.#context.send({ method: "GET", path: "/v1/burn-tables" }, callOptions(options));
    return decoded<{ burn_tables: BurnTable[] }>(answer).burn_tables;
  }
}

/** Numbers become exact decimal strings; anything else is sent as given for the API to judge. */
function rulesBody(rules: BurnTableRules): unknown {
  if (typeof rules !== "object" || rules === null) return rules;
  const out: Record<string, unknown> = {};
  for (const [key, rule] of Object.entries(rules)) {
    if (typeof rule !== "object" || rule === null) {
      out[key] = rule;
      continue;
    }
    const rates: Record<string, unknown> = {};
    for (const [name, rate] of Object.entries(rule)) {
      if (typeof rate === "object" && rate !== null) {
        rates[name] = Object.fromEntries(Object.entries(rate).map(([size, r]) => [size, rateText(r, `rules.${key}.${name}.${size}`)]));
      } else {
        rates[name] = rateText(rate, `rules.${key}.${name}`);
      }
    }
    out[key] = rates;
  }
  return out;
}

function rateText(rate: unknown, field: string): unknown {
  return typeof rate === "number" || typeof rate === "bigint" ? decimal(rate, field) : rate;
}

// ---- credits ----------------------------------------------------------------------------

export class Credits {
  readonly #context: Context;

  constructor(context: Context) {
    this.#context = context;
  }

  /** Buy credits: a new lot in the user's, the team's or (neither) the customer's own wallet. */
  purchase(request: CreditsRequest, options?: WriteOptions): Promise<CreditCommand> {
    return this.#command("purchase", request, options);
  }

  /** Grant promotional credits, usually with `expires_at`. */
  grant(request: CreditsRequest, options?: WriteOptions): Promise<CreditCommand> {
    return this.#command("grant", request, options);
  }

  /** Debit credits by hand; the wallet agent refuses it beyond what is available (it never overdraws). */
  consume(request: ConsumeRequest, options?: WriteOptions): Promise<CreditCommand> {
    return this.#command("consume", request, options);
  }

  /** A wallet's balance and lots (`GET /v1/customers/{id}/credits`): the customer's own, or a user's or team's. */
  async balance(request: BalanceRequest = {}, options?: RequestOptions): Promise<CreditBalance> {
    const customerId = this.#context.customer(request.customer_id, "credits.balance");
    const answer = await this.#context.send(
      {
        method: "GET",
        path: `/v1/customers/${encodeURIComponent(customerId)}/credits`,
        query: { user_id: request.user_id, team_id: request.team_id },
      },
      callOptions(options),
    );
    return decoded<CreditBalance>(answer);
  }

  async #command(
    kind: "purchase" | "grant" | "consume",
    request: CreditsRequest | ConsumeRequest,
    options: WriteOptions | undefined,
  ): Promise<CreditCommand> {
    const { customer_id, amount, ...rest } = request;
    const expires = (rest as { expires_at?: unknown }).expires_at;
    const body = defined({
      ...rest,
      customer_id: this.#context.customer(customer_id, `credits.${kind}`),
      amount: decimal(amount, "amount"),
      ...(expires == null ? {} : { expires_at: instant(expires as Date | string, "expires_at") }),
    });
    const answer = await this.#context.send(
      {
        method: "POST",
        path: `/v1/credits/${kind}`,
        query: waitQuery(options?.wait),
        body,
        idempotencyKey: options?.idempotencyKey ?? newIdempotencyKey(),
      },
      callOptions(options),
    );
    return decoded<CreditCommand>(answer);
  }
}
