// Drives a running `lora serve` with the official openai package, the way an application would, and prints
// what it saw as one JSON object on stdout; tests/test_serve_http.cpp checks it against `lora generate`
// and `lora chat`. Usage: node openai_client.mjs CONFIG.json, CONFIG holding
//   {"url", "api_key", "base", "adapters": [name, ...], "late_adapter": path, "prompt", "message", "max_tokens"}
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = new OpenAI({ baseURL: config.url + "/v1", apiKey: config.api_key, maxRetries: 0, timeout: 60_000 });
const greedy = { temperature: 0, max_tokens: config.max_tokens };
const out = {};

async function metrics() {
  const text = await (await fetch(config.url + "/metrics")).text();
  const value = (name) => Number((text.match(new RegExp("^" + name + " (\\S+)$", "m")) || [])[1]);
  return { running: value("lora_running_requests"), queued: value("lora_queue_length"), text };
}

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (e) {
    return e.status ?? String(e);
  }
}

const completion = async (model, extra = {}) =>
  (await client.completions.create({ model, prompt: config.prompt, ...greedy, ...extra })).choices[0].text;

// 1. the models: the base and each adapter, adapters with their parent
const models = await client.models.list();
out.models = models.data.map((m) => ({ id: m.id, parent: m.parent ?? null }));

// 2. completions, greedy, on the base and on every adapter; a chat with every adapter
out.completions = {};
for (const model of [config.base, ...config.adapters]) out.completions[model] = await completion(model);
out.chats = {};
for (const model of [config.base, ...config.adapters]) {
  const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: config.message }], ...greedy });
  out.chats[model] = { content: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: r.usage };
}

// 3. the same chat streamed: chunks joined give the same text; the usage arrives last
{
  const adapter = config.adapters[0];
  const stream = await client.chat.completions.create({
    model: adapter, messages: [{ role: "user", content: config.message }], ...greedy, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      text += c.delta.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.chat_stream = { model: adapter, text, chunks, finish_reason: finish, usage, role };
}
{
  const stream = await client.completions.create({ model: config.base, prompt: config.prompt, ...greedy, stream: true });
  let text = "", chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    text += chunk.choices[0]?.text ?? "";
  }
  out.completion_stream = { text, chunks };
}

// 4. logprobs and a seeded sample (the same seed gives the same text)
{
  const r = await client.chat.completions.create({
    model: config.adapters[0], messages: [{ role: "user", content: config.message }], ...greedy, max_tokens: 5,
    logprobs: true, top_logprobs: 3,
  });
  out.logprobs = r.choices[0].logprobs.content.map((t) => ({ token: t.token, logprob: t.logprob, top: t.top_logprobs.map((a) => a.logprob) }));
  const seeded = () => completion(config.adapters[0], { temperature: 0.9, top_p: 0.9, seed: 1234 });
  out.seeded = [await seeded(), await seeded()];
}

// 5. concurrent requests over every model at once: the same greedy texts as one at a time
{
  const all = [config.base, ...config.adapters];
  const names = Array.from({ length: 12 }, (_, i) => all[i % all.length]);
  const texts = await Promise.all(names.map((m) => completion(m)));
  out.concurrent = names.map((m, i) => ({ model: m, text: texts[i] }));
}

// 6. load at run time, use, unload while its requests stream: they finish; afterwards the name is 404
{
  const load = await client.post("/load_lora_adapter", { body: { lora_name: "late", lora_path: config.late_adapter } });
  out.load_response = String(load);
  out.models_after_load = (await client.models.list()).data.map((m) => m.id);
  out.late = await completion("late");
  // create() resolves when the response headers arrive, which the server sends once the request has found
  // its model and joined the engine: from then on it is in flight, and the unload must let it finish.
  const streams = await Promise.all(Array.from({ length: 6 }, (_, i) =>
    client.chat.completions.create({
      model: i % 2 ? "late" : config.base, messages: [{ role: "user", content: config.message }], max_tokens: 60,
      temperature: 0, stream: true,
    })));
  await client.post("/unload_lora_adapter", { body: { lora_name: "late" } });
  out.during_unload = await Promise.all(streams.map(async (stream) => {
    let text = "", finish = null;
    for await (const chunk of stream) for (const c of chunk.choices) (text += c.delta.content ?? ""), (finish = c.finish_reason ?? finish);
    return { text, finish };
  }));
  out.models_after_unload = (await client.models.list()).data.map((m) => m.id);
  out.late_after_unload = await status(completion("late"));
  out.load_missing = await status(client.post("/load_lora_adapter", { body: { lora_name: "x", lora_path: "/no/such/adapter" } }));
  out.unload_unknown = await status(client.post("/unload_lora_adapter", { body: { lora_name: "late" } }));
}

// 7. a client that goes away mid-stream frees its slot
{
  const before = await metrics();
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: config.adapters[0], prompt: config.prompt, max_tokens: 500, temperature: 0, stream: true, ignore_eos: true },
    { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) if (++chunks === 1) controller.abort();
  } catch (e) {
    out.abort_error = e.name;
  }
  let after = await metrics();
  for (let i = 0; i < 100 && after.running !== 0; ++i) {
    await new Promise((r) => setTimeout(r, 50));
    after = await metrics();
  }
  const cancelled = (m) => Number((m.text.match(/finish_reason="cancelled"} (\d+)/) || [0, 0])[1]);
  out.abort = { chunks, running_after: after.running, cancelled_before: cancelled(before), cancelled_after: cancelled(after) };
}

// 8. errors the client raises as its own exception classes
out.errors = {
  unknown_model: await status(completion("no-such-model")),
  bad_temperature: await status(completion(config.base, { temperature: 7 })),
  too_many_tokens: await status(completion(config.base, { max_tokens: 10_000_000 })),
  wrong_key: await status(new OpenAI({ baseURL: config.url + "/v1", apiKey: "wrong", maxRetries: 0 }).models.list()),
};

process.stdout.write(JSON.stringify(out, null, 1) + "\n");
