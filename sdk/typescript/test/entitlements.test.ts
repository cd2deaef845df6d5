/**
 * Entitlement checks: the seed README's `action` shape on a fresh tenant that has neither a
 * burn table nor credits, and this API's `estimate` shape once credits were bought.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { type EntitlementDecision, OpenMonetizeClient, client } from "@openmonetize/sdk";

import { eventually, tenant } from "./support.js";

const { customerId } = tenant();

test("the seed's entitlements.check with an action: denied for want of credits, with what to do", async () => {
  const entitlement = await client.entitlements.check({
    customer_id: customerId,
    user_id: "user_456",
    feature_id: "ai-text-generation",
    action: {
      type: "token_usage",
      provider: "openai",
      model: "gpt-4-turbo",
      estimated_input_tokens: 1000,
      estimated_output_tokens: 500,
    },
  });

  if (!entitlement.allowed) {
    // Handle insufficient credits
    console.log(entitlement.reason);
    console.log(entitlement.actions); // Upgrade options
  }
  assert.equal(entitlement.allowed, false);
  assert.equal(entitlement.reason, "insufficient_credits");
  assert.equal(entitlement.actions[0]?.type, "top_up");
  assert.equal(entitlement.available, "0");
});

/** Checks until the API process asked sees `available` (the balance view of each process catches up on its own). */
async function checkSeeing(available: string, credits: string, user_id: string): Promise<EntitlementDecision> {
  return eventually(async () => {
    const decision = await client.entitlements.check({ user_id, estimate: { credits } });
    return decision.available === available ? decision : undefined;
  }, `a check seeing ${available} available`);
}

test("estimate.credits: allowed within the balance, denied beyond it with the credits missing", async () => {
  const bought = await client.credits.purchase({ amount: "10", user_id: "u-estimate" }, { wait: true });
  assert.equal(bought.status, "applied");

  const allowed = await checkSeeing("10", "7.5", "u-estimate");
  assert.equal(allowed.allowed, true);
  assert.equal(allowed.required, "7.5");
  assert.equal(allowed.reason, null);

  const denied = await checkSeeing("10", "10.5", "u-estimate");
  assert.equal(denied.allowed, false);
  assert.equal(denied.reason, "insufficient_credits");
  assert.equal(denied.actions[0]?.type, "top_up");
  assert.equal(denied.actions[0]?.credits, "0.5");
});

test("a reserving check with one idempotency key names one hold, however often it is sent", async () => {
  const openmonetize = new OpenMonetizeClient({ customerId });
  await openmonetize.credits.purchase({ amount: 20, user_id: "u-hold" }, { wait: true });
  await checkSeeing("20", "1", "u-hold");

  const key = `hold-${Date.now()}`;
  const first = await openmonetize.entitlements.check(
    { user_id: "u-hold", estimate: { credits: "4" }, reserve: true, reserve_ttl_s: 60 },
    { idempotencyKey: key, wait: true },
  );
  const again = await openmonetize.entitlements.check(
    { user_id: "u-hold", estimate: { credits: "4" }, reserve: true, reserve_ttl_s: 60 },
    { idempotencyKey: key, wait: true },
  );
  assert.equal(first.allowed, true);
  assert.match(first.reservation_id ?? "", /^res_/);
  assert.equal(again.reservation_id, first.reservation_id);

  const released = await openmonetize.entitlements.release(
    { reservation_id: first.reservation_id ?? "", wallet_id: first.wallet_id },
    { wait: true },
  );
  assert.equal(released.reservation_id, first.reservation_id);
  assert.equal(released.status, "applied");
  assert.equal(released.reserved, "0");
});
