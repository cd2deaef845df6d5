/**
 * The seed README's three events, as its users write them, against the real API: each is
 * accepted (202). The pytest wrapper then reads them back from usage.events (ids, types,
 * timestamps), so what the SDK sent is checked where it landed.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { EventRejectedError, OpenMonetizeClient } from "@openmonetize/sdk";

import { tenant } from "./support.js";

const { customerId } = tenant();

// What the seed's example gets back from OpenAI; only the usage counts matter here.
const response = { usage: { prompt_tokens: 1200, completion_tokens: 340 } };

test("the seed's TOKEN_USAGE, IMAGE_GENERATION and CUSTOM events are accepted", async () => {
  // The seed's code, with this tenant's id where it says "legalai-company".
  const openmonetize = new OpenMonetizeClient({
    apiKey: process.env.OPENMONETIZE_API_KEY, // Your key
  });

  const tokens = await openmonetize.events.track({
    event_id: "evt_123",
    customer_id: customerId, // Your company
    user_id: "law-firm-a", // Your customer
    event_type: "TOKEN_USAGE",
    feature_id: "legal-research",
    provider: "OPENAI",
    model: "gpt-4-turbo",
    input_tokens: response.usage.prompt_tokens,
    output_tokens: response.usage.completion_tokens,
    timestamp: new Date(),
  });

  // Example: Tracking Image Generation
  const image = await openmonetize.trackCustomEvent({
    event_id: "evt_img_123",
    customer_id: customerId,
    user_id: "law-firm-a",
    event_type: "IMAGE_GENERATION",
    feature_id: "logo-creator",
    provider: "OPENAI",
    model: "dall-e-3",
    image_count: 1,
    image_size: "1024x1024",
    quality: "hd",
    timestamp: new Date(),
  });

  // Example: Tracking Custom Units
  const custom = await openmonetize.trackCustomEvent({
    event_id: "evt_custom_123",
    customer_id: customerId,
    user_id: "law-firm-a",
    event_type: "CUSTOM",
    feature_id: "pdf-processing",
    unit_type: "pages",
    quantity: 5,
    timestamp: new Date(),
  });

  assert.deepEqual(tokens, { accepted: 1, rejected: [], event_ids: ["evt_123"], status: 202 });
  assert.deepEqual(image, { accepted: 1, rejected: [], event_ids: ["evt_img_123"], status: 202 });
  assert.deepEqual(custom, { accepted: 1, rejected: [], event_ids: ["evt_custom_123"], status: 202 });
});

test("an event without event_id or timestamp gets both from the SDK", async () => {
  const openmonetize = new OpenMonetizeClient();
  const result = await openmonetize.events.track({
    user_id: "law-firm-b",
    event_type: "CUSTOM",
    feature_id: "pdf-processing",
    unit_type: "pages",
    quantity: "2.5",
  });
  assert.equal(result.accepted, 1);
  assert.match(result.event_ids[0] ?? "", /^evt_[0-9a-f]{32}$/);
});

test("a refused event throws EventRejectedError naming the field", async () => {
  const openmonetize = new OpenMonetizeClient();
  const refused = await openmonetize.events
    .track({ user_id: "law-firm-a", event_type: "CUSTOM", feature_id: "pdf-processing", quantity: 5 })
    .then(() => undefined, (error: unknown) => error);
  assert.ok(refused instanceof EventRejectedError, `expected EventRejectedError, got ${String(refused)}`);
  assert.equal(refused.status, 400);
  assert.equal(refused.code, "event_rejected");
  assert.equal(refused.field, "unit_type");
  assert.equal(refused.rejected.length, 1);
});

test("trackMany lists the refused events instead of throwing", async () => {
  const openmonetize = new OpenMonetizeClient();
  const result = await openmonetize.events.trackMany([
    { user_id: "law-firm-c", event_type: "CUSTOM", feature_id: "pdf-processing", unit_type: "pages", quantity: 1 },
    { user_id: "law-firm-c", event_type: "TOKEN_USAGE", feature_id: "legal-research", provider: "openai" },
  ]);
  assert.equal(result.status, 207);
  assert.equal(result.accepted, 1);
  assert.equal(result.rejected.length, 1);
  assert.equal(result.rejected[0]?.index, 1);
  assert.equal(result.event_ids.length, 2);
});
