/**
 * Errors: the API's `{"error": {"code", "message", "field"}}` as a typed OpenMonetizeError with
 * the HTTP status, and the mistakes the SDK refuses before sending anything.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { OpenMonetizeClient, OpenMonetizeError, client, resetDefaultClient } from "@openmonetize/sdk";

import { tenant } from "./support.js";

const { apiUrl, apiKey, customerId } = tenant();

async function failure(call: Promise<unknown>): Promise<OpenMonetizeError> {
  const error = await call.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof OpenMonetizeError, `expected an OpenMonetizeError, got ${String(error)}`);
  return error;
}

test("a wrong API key: OpenMonetizeError with status 401", async () => {
  const wrong = new OpenMonetizeClient({ apiKey: "om_not_a_real_key", customerId, baseUrl: apiUrl });
  const error = await failure(wrong.credits.balance());
  assert.ok(error instanceof Error);
  assert.equal(error.name, "OpenMonetizeError");
  assert.equal(error.status, 401);
  assert.equal(error.code, "invalid_api_key");
  assert.match(error.message, /unknown or revoked/);
  assert.equal(error.field, undefined);
  const tracked = await failure(
    wrong.events.track({ user_id: "u", event_type: "CUSTOM", feature_id: "f", unit_type: "pages", quantity: 1 }),
  );
  assert.equal(tracked.status, 401);
});

test("a field the API refuses is named: 422 invalid_amount on amount", async () => {
  const openmonetize = new OpenMonetizeClient();
  const error = await failure(openmonetize.credits.purchase({ amount: "1.5.0" }));
  assert.equal(error.status, 422);
  assert.equal(error.code, "invalid_amount");
  assert.equal(error.field, "amount");
});

test("invalid burn-table rules: 422 with every problem in the body", async () => {
  const openmonetize = new OpenMonetizeClient();
  const error = await failure(
    openmonetize.burnTables.create({ name: "bad", rules: { "gpt-4o": { input_tokens: -1, per_unit: 0 } } }),
  );
  assert.equal(error.status, 422);
  assert.equal(error.code, "invalid_rules");
  assert.match(error.field ?? "", /^rules\.gpt-4o\./);
  const problems = (error.body as { error: { problems: unknown[] } }).error.problems;
  assert.equal(problems.length, 2);
});

test("another tenant's customer_id: 403 foreign_customer", async () => {
  const openmonetize = new OpenMonetizeClient();
  const error = await failure(openmonetize.entitlements.check({ customer_id: "someone-else", user_id: "u", estimate: { credits: 1 } }));
  assert.equal(error.status, 403);
  assert.equal(error.code, "foreign_customer");
  assert.equal(error.field, "customer_id");
});

test("mistakes refused before sending: no API key, no customer id, NaN, an invalid Date", async () => {
  const saved = process.env.OPENMONETIZE_API_KEY;
  delete process.env.OPENMONETIZE_API_KEY;
  try {
    assert.throws(() => new OpenMonetizeClient(), /OPENMONETIZE_API_KEY/);
    resetDefaultClient();
    // Importing `client` did not throw; using it without a key does.
    assert.throws(() => client.credits, /OPENMONETIZE_API_KEY/);
  } finally {
    process.env.OPENMONETIZE_API_KEY = saved;
    resetDefaultClient();
  }

  const anonymous = new OpenMonetizeClient({ apiKey, baseUrl: apiUrl, customerId: undefined });
  const savedCustomer = process.env.OPENMONETIZE_CUSTOMER_ID;
  delete process.env.OPENMONETIZE_CUSTOMER_ID;
  try {
    const nobody = new OpenMonetizeClient({ apiKey, baseUrl: apiUrl });
    await assert.rejects(nobody.credits.balance(), /customerId/);
  } finally {
    process.env.OPENMONETIZE_CUSTOMER_ID = savedCustomer;
  }
  assert.equal(anonymous.customerId, customerId); // undefined means "from the environment"

  const openmonetize = new OpenMonetizeClient();
  await assert.rejects(openmonetize.credits.purchase({ amount: Number.NaN }), TypeError);
  await assert.rejects(
    openmonetize.events.track({ user_id: "u", event_type: "CUSTOM", feature_id: "f", unit_type: "pages", quantity: 1, timestamp: new Date("nope") }),
    /timestamp is an invalid Date/,
  );
});

test("the default client is built from the environment, once", async () => {
  resetDefaultClient();
  assert.ok(client instanceof OpenMonetizeClient);
  assert.equal(client.customerId, customerId);
  assert.equal(client.baseUrl, apiUrl.replace(/\/+$/, ""));
  assert.equal(client.credits, client.credits);
  const balance = await client.credits.balance();
  assert.equal(balance.customer_id, customerId);
  assert.doesNotMatch(String(client), new RegExp(apiKey));
});
