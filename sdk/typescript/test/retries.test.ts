/**
 * Retries, through a relay (./support.ts) between the SDK and the real API that plays the
 * network: it answers 503/429 itself, drops connections, or forwards a request to the API and
 * then loses the answer. The SDK must try again with the SAME Idempotency-Key (or event id)
 * and body, and the API must act once.
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { OpenMonetizeClient, OpenMonetizeConnectionError, OpenMonetizeError } from "@openmonetize/sdk";

import { FAST, Relay, type Step, eventually, tenant } from "./support.js";

const { apiUrl, apiKey, customerId } = tenant();
const relays: Relay[] = [];
after(async () => {
  await Promise.all(relays.map((relay) => relay.close()));
});

async function relay(plan: (n: number) => Step): Promise<Relay> {
  const started = await Relay.start(apiUrl, plan);
  relays.push(started);
  return started;
}

function through(relay: Relay, retry = FAST): OpenMonetizeClient {
  return new OpenMonetizeClient({ apiKey, customerId, baseUrl: relay.url, retry });
}

const direct = new OpenMonetizeClient({ apiKey, customerId, baseUrl: apiUrl });

test("a 503 is retried with the same Idempotency-Key and body", async () => {
  const net = await relay((n) => (n === 0 ? { answer: 503, retryAfter: "0" } : "forward"));
  const bought = await through(net).credits.purchase({ amount: "3", user_id: "u-503" }, { wait: true });
  assert.equal(bought.status, "applied");
  assert.equal(net.seen.length, 2);
  const [first, second] = net.seen;
  assert.match(String(first?.headers["idempotency-key"]), /^sdk-[0-9a-f]{32}$/);
  assert.equal(second?.headers["idempotency-key"], first?.headers["idempotency-key"]);
  assert.equal(second?.body, first?.body);
  assert.equal(first?.headers["x-om-api-key"], apiKey);
});

test("an answer lost after the API acted: the retry is replayed, the credits are bought once", async () => {
  const net = await relay((n) => (n === 0 ? "forward-then-503" : "forward"));
  const bought = await through(net).credits.purchase({ amount: "5", user_id: "u-lost" }, { wait: true });
  assert.equal(net.seen.length, 2);
  assert.equal(net.seen[1]?.headers["idempotency-key"], net.seen[0]?.headers["idempotency-key"]);
  assert.equal(net.seen[0]?.upstreamStatus, 200);
  assert.equal(net.seen[1]?.upstreamHeaders?.["idempotent-replayed"], "true");
  assert.equal(bought.balance, "5");
  const balance = await eventually(async () => {
    const found = await direct.credits.balance({ user_id: "u-lost" });
    return found.version > 0 ? found : undefined;
  }, "u-lost's wallet");
  assert.equal(balance.balance, "5");
  assert.equal(balance.grants.length, 1);
});

test("a burn table whose answer was lost is created once", async () => {
  const net = await relay((n) => (n === 0 ? "forward-then-503" : "forward"));
  const table = await through(net).burnTables.create({ name: "retried", rules: { default: { input_tokens: 1, output_tokens: 2 } } });
  assert.equal(net.seen.length, 2);
  assert.equal(net.seen[1]?.headers["idempotency-key"], net.seen[0]?.headers["idempotency-key"]);
  assert.equal(net.seen[1]?.upstreamHeaders?.["idempotent-replayed"], "true");
  const tables = await direct.burnTables.list();
  assert.deepEqual(tables.filter((t) => t.name === "retried").map((t) => t.burn_table_id), [table.burn_table_id]);
});

test("a dropped connection is retried with the same event: same event_id and timestamp", async () => {
  const net = await relay((n) => (n === 0 ? "drop" : "forward"));
  const result = await through(net).events.track({
    user_id: "u-drop",
    event_type: "CUSTOM",
    feature_id: "pdf-processing",
    unit_type: "pages",
    quantity: 1,
  });
  assert.equal(result.accepted, 1);
  assert.equal(net.seen.length, 2);
  assert.equal(net.seen[1]?.body, net.seen[0]?.body);
  const sent = JSON.parse(net.seen[0]?.body ?? "{}") as { events: { event_id: string; timestamp: string }[] };
  assert.equal(sent.events[0]?.event_id, result.event_ids[0]);
  assert.match(sent.events[0]?.timestamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

test("Retry-After is honoured (capped at maxBackoffMs)", async () => {
  const net = await relay((n) => (n === 0 ? { answer: 429, retryAfter: "1" } : "forward"));
  const started = Date.now();
  await through(net, { maxRetries: 2, backoffMs: 1, maxBackoffMs: 5_000 }).rating.calculate({
    event_type: "CUSTOM",
    unit_type: "pages",
    quantity: 1,
  }).catch((error: unknown) => {
    // A tenant without a burn table may not price this (no_rate): the retry is what is tested.
    if (!(error instanceof OpenMonetizeError && error.status === 422)) throw error;
  });
  assert.equal(net.seen.length, 2);
  assert.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms, Retry-After said 1 s`);

  const capped = await relay((n) => (n === 0 ? { answer: 503, retryAfter: "30" } : "forward"));
  const start2 = Date.now();
  await through(capped, { maxRetries: 1, backoffMs: 1, maxBackoffMs: 100 }).credits.balance();
  assert.ok(Date.now() - start2 < 5_000, "Retry-After 30 s was capped at maxBackoffMs");
});

test("an error answer is not retried; maxRetries bounds the tries", async () => {
  const net = await relay(() => "forward");
  const refused = await through(net).credits.purchase({ amount: "-1" }).catch((error: unknown) => error);
  assert.ok(refused instanceof OpenMonetizeError);
  assert.equal(refused.status, 422);
  assert.equal(net.seen.length, 1);

  const down = await relay(() => ({ answer: 503, retryAfter: "0" }));
  const unavailable = await through(down).credits.balance().catch((error: unknown) => error);
  assert.ok(unavailable instanceof OpenMonetizeError);
  assert.equal(unavailable.status, 503);
  assert.equal(down.seen.length, 1 + FAST.maxRetries);
  assert.equal(new Set(down.seen.map((s) => s.url)).size, 1);
});

test("connections that always drop end in OpenMonetizeConnectionError after maxRetries", async () => {
  const net = await relay(() => "drop");
  const failed = await through(net).credits.purchase({ amount: "1" }).catch((error: unknown) => error);
  assert.ok(failed instanceof OpenMonetizeConnectionError, `got ${String(failed)}`);
  assert.equal(failed.status, 0);
  assert.equal(failed.code, "connection_error");
  assert.equal(net.seen.length, 1 + FAST.maxRetries);
  assert.equal(new Set(net.seen.map((s) => s.headers["idempotency-key"])).size, 1);
});

test("a port nobody listens on: connection refused, retried, then OpenMonetizeConnectionError", async () => {
  const net = await relay(() => "drop");
  const url = net.url;
  await net.close();
  relays.splice(relays.indexOf(net), 1);
  const failed = await new OpenMonetizeClient({ apiKey, customerId, baseUrl: url, retry: FAST })
    .credits.balance()
    .catch((error: unknown) => error);
  assert.ok(failed instanceof OpenMonetizeConnectionError, `got ${String(failed)}`);
  assert.match(failed.message, /ECONNREFUSED/);
  assert.match(failed.message, /after 4 tries/);
});

test("a call aborted by its signal rejects with the signal's reason, without retrying", async () => {
  const net = await relay(() => ({ answer: 503, retryAfter: "5" }));
  const controller = new AbortController();
  const pending = through(net, { maxRetries: 3, backoffMs: 1, maxBackoffMs: 10_000 }).credits.balance({}, { signal: controller.signal });
  await eventually(async () => (net.seen.length === 1 ? true : undefined), "the first try");
  controller.abort(new Error("stop"));
  await assert.rejects(pending, /stop/);
  assert.equal(net.seen.length, 1);
});
