/**
 * Credits: purchase, grant and consume, then the balance, with amounts that a JS float would
 * get wrong (0.1 + 0.2): the API keeps them exact and the SDK never does arithmetic on them.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { type CreditBalance, OpenMonetizeClient } from "@openmonetize/sdk";

import { eventually } from "./support.js";

const openmonetize = new OpenMonetizeClient(); // from the environment, customerId included

/** Either API process may answer: wait until the one asked shows `balance`. */
function balanceIs(balance: string, user_id?: string): Promise<CreditBalance> {
  return eventually(async () => {
    const found = await openmonetize.credits.balance(user_id === undefined ? {} : { user_id });
    return found.balance === balance ? found : undefined;
  }, `${user_id ?? "the customer"}'s balance at ${balance}`);
}

test("purchase then balance: 0.1 + 0.2 credits are 0.3, exactly", async () => {
  const first = await openmonetize.credits.purchase({ amount: "0.1", user_id: "u-exact" }, { wait: true });
  const second = await openmonetize.credits.purchase({ amount: 0.2, user_id: "u-exact" }, { wait: true });
  assert.equal(first.status, "applied");
  assert.equal(second.status, "applied");
  assert.equal(second.balance, "0.3");
  assert.notEqual(first.command_id, second.command_id);

  const balance = await balanceIs("0.3", "u-exact");
  assert.equal(balance.customer_id, process.env.OPENMONETIZE_CUSTOMER_ID);
  assert.equal(balance.available, "0.3");
  assert.deepEqual(balance.grants.map((lot) => [lot.kind, lot.granted]), [["purchase", "0.1"], ["purchase", "0.2"]]);
});

test("consume debits the wallet; a grant adds a lot that expires", async () => {
  await openmonetize.credits.purchase({ amount: "100.000000000001", user_id: "u-spend" }, { wait: true });
  const consumed = await openmonetize.credits.consume({ amount: "0.000000000001", user_id: "u-spend", reason: "manual" }, { wait: true });
  assert.equal(consumed.status, "applied");
  assert.equal(consumed.balance, "100");

  const expiresAt = new Date(Date.now() + 86_400_000);
  const granted = await openmonetize.credits.grant({ amount: 5, user_id: "u-spend", expires_at: expiresAt }, { wait: true });
  assert.equal(granted.balance, "105");
  const balance = await balanceIs("105", "u-spend");
  const lot = balance.grants.find((g) => g.kind === "grant");
  assert.ok(lot, "a grant lot");
  assert.equal(lot.granted, "5");
  assert.equal(Date.parse(lot.expires_at ?? ""), expiresAt.getTime());
});

test("the customer's own wallet: no user_id", async () => {
  const bought = await openmonetize.credits.purchase({ amount: "42" });
  assert.equal(bought.status, "accepted");
  const balance = await balanceIs("42");
  assert.equal(balance.wallet_id, bought.wallet_id);
});
