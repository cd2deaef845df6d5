// The sandbox: posts the form with fetch() and reads the answer, a text/event-stream, stage by
// stage (EventSource cannot POST, and the form must carry its CSRF token in a POST body).
"use strict";
(() => {
  const form = document.getElementById("sandbox-form");
  const journey = document.getElementById("journey");
  const status = document.getElementById("sb-status");
  const value = (id) => document.getElementById(id).value.trim();
  const kind = () => form.querySelector("input[name=kind]:checked").value;

  function snippets() {
    const sdk = document.getElementById("sdk-snippet");
    const proxy = document.getElementById("proxy-snippet");
    const image = kind() === "image";
    const team = value("sb-team") ? `, team_id=${JSON.stringify(value("sb-team"))}` : "";
    const units = image
      ? `image_count=${value("sb-images") || 1}, image_size=${JSON.stringify(value("sb-size"))}` +
        (value("sb-quality") ? `, quality=${JSON.stringify(value("sb-quality"))}` : "")
      : `input_tokens=${value("sb-input") || 0}, output_tokens=${value("sb-output") || 0}`;
    sdk.textContent =
`import os

from openmonetize.sdk import OpenMonetize

with OpenMonetize(api_key=os.environ["OPENMONETIZE_API_KEY"], customer_id=${JSON.stringify(sdk.dataset.customer)},
                  base_url=${JSON.stringify(sdk.dataset.api)}) as om:
    om.events.track(${JSON.stringify(value("sb-user"))}, ${JSON.stringify(image ? "IMAGE_GENERATION" : "TOKEN_USAGE")}, ${JSON.stringify(value("sb-feature"))},
                    provider=${JSON.stringify(value("sb-provider"))}, model=${JSON.stringify(value("sb-model"))}, ${units}${team})`;
    const headers = `{"X-OM-Api-Key": os.environ["OPENMONETIZE_API_KEY"], "X-OM-User-Id": ${JSON.stringify(value("sb-user"))}, ` +
      `"X-OM-Feature-Id": ${JSON.stringify(value("sb-feature"))}${value("sb-team") ? `, "X-OM-Team-Id": ${JSON.stringify(value("sb-team"))}` : ""}}`;
    proxy.textContent = image
? `import os

from openai import OpenAI

client = OpenAI(base_url="${proxy.dataset.proxy}/v1", api_key=os.environ["OPENAI_API_KEY"],
                default_headers=${headers})
client.images.generate(model=${JSON.stringify(value("sb-model"))}, prompt="a lighthouse at dawn", n=${value("sb-images") || 1}, size=${JSON.stringify(value("sb-size"))})`
: `import os

from openai import OpenAI

client = OpenAI(base_url="${proxy.dataset.proxy}/v1", api_key=os.environ["OPENAI_API_KEY"],
                default_headers=${headers})
client.chat.completions.create(model=${JSON.stringify(value("sb-model"))}, messages=[{"role": "user", "content": "Hello"}])`;
  }

  function toggleKind() {
    const image = kind() === "image";
    form.querySelector(".image-only").hidden = !image;
    form.querySelector(".text-only").hidden = image;
    if (image && value("sb-model") === "gpt-4o") document.getElementById("sb-model").value = "dall-e-3";
    if (!image && value("sb-model") === "dall-e-3") document.getElementById("sb-model").value = "gpt-4o";
    snippets();
  }

  function show(stage) {
    const item = journey.querySelector(`[data-stage="${stage.stage}"]`);
    item.className = stage.ok ? "done" : "failed";
    item.querySelector(".ms").textContent = `${stage.ms} ms`;
    const d = stage.detail || {};
    let text;
    if (stage.stage === "edge") text = stage.ok ? "HTTP " + d.status : `HTTP ${d.status}: ` + describe(d.body);
    else if (d.reason) text = d.reason + (d.dlq_id ? ` (DLQ record ${d.dlq_id}: see the DLQ page)` : "");
    else if (stage.stage === "kafka" || stage.stage === "rated") text = `${d.topic} partition ${d.partition} offset ${d.offset} (broker stamped it at ${d.broker_ms} ms)`;
    else if (stage.stage === "wallet") text = `${d.wallet_id}: ${d.balance_before} → ${d.balance_after}`;
    else if (stage.stage === "clickhouse") text = `${d.table}: ${d.credits} credits, ${d.usd_cost} USD`;
    else text = `${d.entry_id}: ${d.amount} (balance after ${d.balance_after})`;
    item.querySelector(".detail").textContent = text || "";
  }

  function describe(body) {
    if (!body) return "";
    if (body.error) return `${body.error.field || ""} ${body.error.message}`.trim();
    if (body.rejected && body.rejected.length) return body.rejected.map((r) => `${r.field}: ${r.reason}`).join("; ");
    return JSON.stringify(body);
  }

  async function send(event) {
    event.preventDefault();
    journey.querySelectorAll("li").forEach((li) => { li.className = "pending"; li.querySelector(".ms").textContent = ""; li.querySelector(".detail").textContent = ""; });
    status.textContent = "Sending…";
    document.getElementById("sb-send").disabled = true;
    try {
      const response = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
      if (!response.ok || !response.body) { status.textContent = `Refused: HTTP ${response.status}`; return; }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          const name = (block.match(/^event: (.*)$/m) || [])[1];
          const data = JSON.parse((block.match(/^data: (.*)$/m) || [null, "{}"])[1]);
          if (name === "event") status.textContent = `Event ${data.event_id} sent`;
          if (name === "stage") show(data);
          if (name === "done") status.textContent = `Event ${data.event_id}: journey over`;
        }
      }
    } catch (error) {
      status.textContent = `Failed: ${error}`;
    } finally {
      document.getElementById("sb-send").disabled = false;
    }
  }

  form.addEventListener("submit", send);
  form.addEventListener("input", snippets);
  form.querySelectorAll("input[name=kind]").forEach((radio) => radio.addEventListener("change", toggleKind));
  snippets();
})();
