/**
 * The seed README's cost preview, on a fresh tenant that configured nothing (no burn table of
 * its own), through the default `client` as the seed imports it. Provider prices are the
 * bundled dataset's: gpt-4-turbo costs $10 per million input tokens and $30 per million
 * output tokens, so 1000 in + 500 out cost exactly $0.025.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { client, normalizeDecimal } from "@openmonetize/sdk";

import "./support.js";

const DECIMAL = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

test("the seed's rating.calculate body (no event_type) on a tenant without a burn table", async () => {
  const cost = await client.rating.calculate({
    provider: "openai",
    model: "gpt-4-turbo",
    input_tokens: 1000,
    output_tokens: 500,
  });

  console.log(`Credits: ${cost.credits}`);
  console.log(`USD Cost: $${cost.usd_cost}`);
  console.log(`Margin: ${cost.margin_percent}%`);
  assert.equal(normalizeDecimal(cost.usd_cost), "0.025");
  assert.match(cost.credits, DECIMAL);
  assert.ok(cost.margin_percent === null || DECIMAL.test(cost.margin_percent), `margin_percent ${cost.margin_percent}`);
});

test("rating.calculate with an explicit event_type on a tenant without a burn table", async () => {
  const cost = await client.rating.calculate({
    event_type: "TOKEN_USAGE",
    provider: "openai",
    model: "gpt-4-turbo",
    input_tokens: 1000,
    output_tokens: 500,
  });
  assert.equal(normalizeDecimal(cost.usd_cost), "0.025");
  assert.match(cost.credits, DECIMAL);
  assert.equal(typeof cost.burn_table_version, "number");
});
