/**
 * @openmonetize/sdk: the TypeScript SDK of the OpenMonetize API.
 *
 *     import { OpenMonetizeClient, client } from "@openmonetize/sdk";
 *
 *     const openmonetize = new OpenMonetizeClient({ apiKey: process.env.OPENMONETIZE_API_KEY });
 *     await openmonetize.events.track({ user_id: "law-firm-a", event_type: "TOKEN_USAGE", ... });
 *
 *     // or the default client, configured from the environment on first use:
 *     const cost = await client.rating.calculate({ provider: "openai", model: "gpt-4-turbo", ... });
 *
 * See README.md beside this package.
 */

import { OpenMonetizeClient } from "./client.js";

export { OpenMonetizeClient, DEFAULT_BASE_URL, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { OpenMonetizeClientOptions, Events, Entitlements, RatingResource, BurnTables, Credits } from "./client.js";
export { OpenMonetizeError, OpenMonetizeConnectionError, EventRejectedError } from "./errors.js";
export { DEFAULT_RETRY } from "./retries.js";
export { normalizeDecimal } from "./serialize.js";
export type { RetryPolicy } from "./retries.js";
export type * from "./types.js";

let defaultClient: OpenMonetizeClient | undefined;

/**
 * The default client: created on first use from the environment (OPENMONETIZE_API_KEY,
 * OPENMONETIZE_API_URL, OPENMONETIZE_CUSTOMER_ID), then reused. Importing it never throws;
 * the first call does, if OPENMONETIZE_API_KEY is not set.
 */
export function getDefaultClient(): OpenMonetizeClient {
  defaultClient ??= new OpenMonetizeClient();
  return defaultClient;
}

/** Forget the default client, so the next use of `client` reads the environment again. */
export function resetDefaultClient(): void {
  defaultClient = undefined;
}

/**
 * `import { client } from "@openmonetize/sdk"` as in the seed's README: an OpenMonetizeClient
 * that is `getDefaultClient()`, created lazily from the environment on first use.
 */
export const client: OpenMonetizeClient = new Proxy(Object.create(OpenMonetizeClient.prototype) as OpenMonetizeClient, {
  get(_target, property) {
    const target = getDefaultClient();
    const value: unknown = Reflect.get(target, property, target);
    return typeof value === "function" ? value.bind(target) : value;
  },
  has(_target, property) {
    return Reflect.has(getDefaultClient(), property);
  },
});
