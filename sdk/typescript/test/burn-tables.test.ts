/**
 * The seed README's burn table, created as its users write it, then pricing the seed's rating
 * call: gpt-4-turbo at 1.5 credits per 1000 input tokens and 10 per 1000 output tokens, so
 * 1000 in + 500 out burn 1.5 + 5 = 6.5 credits, exactly.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { type BurnTable, client, normalizeDecimal } from "@openmonetize/sdk";

import { eventually } from "./support.js";

let created: BurnTable | undefined;

async function premiumTable(): Promise<BurnTable> {
  created ??= await client.burnTables.create({
    name: "Premium Tier Pricing",
    rules: {
      "gpt-4-turbo": {
        input_tokens: 1.5,
        output_tokens: 10.0,
        per_unit: 1000,
      },
      "claude-3.5-sonnet": {
        input_tokens: 0.8,
        output_tokens: 4.0,
        per_unit: 1000,
      },
    },
  });
  return created;
}

test("burnTables.create with the seed's body answers version 1 with exact decimal rates", async () => {
  const table = await premiumTable();
  assert.equal(table.name, "Premium Tier Pricing");
  assert.equal(table.version, 1);
  assert.equal(table.customer_id, process.env.OPENMONETIZE_CUSTOMER_ID);
  assert.match(table.burn_table_id, /\S/);
  assert.deepEqual(table.rules["gpt-4-turbo"], { input_tokens: "1.5", output_tokens: "10", per_unit: "1000" });
  assert.deepEqual(table.rules["claude-3.5-sonnet"], { input_tokens: "0.8", output_tokens: "4", per_unit: "1000" });

  const listed = await client.burnTables.list();
  assert.deepEqual(listed.map((t) => t.burn_table_id), [table.burn_table_id]);
});

test("the new table prices a TOKEN_USAGE rating: 6.5 credits", async () => {
  const table = await premiumTable();
  // Each API process learns of the table from the catalog topic: wait until the one asked has.
  const cost = await eventually(async () => {
    const rated = await client.rating.calculate({
      event_type: "TOKEN_USAGE",
      provider: "openai",
      model: "gpt-4-turbo",
      input_tokens: 1000,
      output_tokens: 500,
    });
    return rated.burn_table_id === table.burn_table_id ? rated : undefined;
  }, "the rating to use the new burn table");
  assert.equal(normalizeDecimal(cost.credits), "6.5");
  assert.equal(cost.rule_key, "gpt-4-turbo");
  assert.equal(normalizeDecimal(cost.usd_cost), "0.025");
});

test("the new table prices the seed's rating body (no event_type): 6.5 credits", async () => {
  const table = await premiumTable();
  const cost = await eventually(async () => {
    const rated = await client.rating.calculate({
      provider: "openai",
      model: "gpt-4-turbo",
      input_tokens: 1000,
      output_tokens: 500,
    });
    return rated.burn_table_id === table.burn_table_id ? rated : undefined;
  }, "the seed's rating call to use the new burn table", 5_000);
  assert.equal(normalizeDecimal(cost.credits), "6.5");
});

test("addVersion adds version 2 to the table", async () => {
  const table = await premiumTable();
  const next = await client.burnTables.addVersion(table.burn_table_id, {
    rules: { "gpt-4-turbo": { input_tokens: "2", output_tokens: "12", per_unit: "1000" } },
    effective_from: new Date(Date.now() + 3_600_000),
  });
  assert.equal(next.version, 2);
  assert.equal(next.burn_table_id, table.burn_table_id);
  assert.deepEqual(next.rules["gpt-4-turbo"], { input_tokens: "2", output_tokens: "12", per_unit: "1000" });
});
