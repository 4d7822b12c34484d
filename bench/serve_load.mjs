// Load on a running `lora serve`, over loopback only: C concurrent clients, each sending R streamed
// completions one after another, client i asking for model MODELS[i % MODELS.length]. Bounded in count (C·R
// requests) and in time (--max-seconds: clients stop starting new requests). Prints one JSON line:
// requests/s, generated tokens/s, latency p50/p99 and time to first token p50/p99 (ms).
//
//   node bench/serve_load.mjs --url http://127.0.0.1:8080 --clients 16 --requests 4 --models a,b,c \
//     --max-tokens 64 [--prompt TEXT] [--max-seconds 120]
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const url = args.url ?? "http://127.0.0.1:8080";
if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(url)) throw new Error("loopback addresses only: " + url);
const clients = Number(args.clients ?? 16), perClient = Number(args.requests ?? 4);
const models = (args.models ?? "").split(",").filter(Boolean);
const maxTokens = Number(args["max-tokens"] ?? 64), maxSeconds = Number(args["max-seconds"] ?? 120);
const prompt = args.prompt ?? "Once upon a time";
const headers = { "Content-Type": "application/json", ...(args["api-key"] ? { Authorization: "Bearer " + args["api-key"] } : {}) };

async function one(model) {
  const started = performance.now();
  const res = await fetch(url + "/v1/completions", {
    method: "POST", headers,
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0.8, ignore_eos: true, stream: true,
                           stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw new Error(model + ": " + res.status + " " + (await res.text()));
  const decoder = new TextDecoder();
  let buffer = "", first = null, tokens = 0;
  for await (const bytes of res.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(6, end);
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      else if (first === null && chunk.choices[0]?.text) first = performance.now();
    }
  }
  const done = performance.now();
  return { latency: done - started, ttft: (first ?? done) - started, tokens };
}

const deadline = performance.now() + maxSeconds * 1000;
const results = [];
const t0 = performance.now();
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let r = 0; r < perClient && performance.now() < deadline; ++r) results.push(await one(models[c % models.length]));
}));
const seconds = (performance.now() - t0) / 1000;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const tokens = results.reduce((n, r) => n + r.tokens, 0);
console.log(JSON.stringify({
  clients, models: new Set(models).size, requests: results.length, seconds: +seconds.toFixed(2),
  requests_per_s: +(results.length / seconds).toFixed(2), tokens_per_s: +(tokens / seconds).toFixed(1),
  latency_ms: { p50: Math.round(pct(results.map((r) => r.latency), 0.5)), p99: Math.round(pct(results.map((r) => r.latency), 0.99)) },
  ttft_ms: { p50: Math.round(pct(results.map((r) => r.ttft), 0.5)), p99: Math.round(pct(results.map((r) => r.ttft), 0.99)) },
}));
