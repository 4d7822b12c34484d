#include "serve/web_page.h"

namespace lora::serve {

const char* web_page_html() {
  return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lora serve</title>
<style>
  :root { --bg: #f6f6f3; --panel: #fff; --ink: #1d1d1b; --muted: #6b6b66; --accent: #2d6a4f; --user: #e8f0ea; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: var(--bg); color: var(--ink);
         display: grid; grid-template-columns: 260px 1fr; height: 100vh; }
  aside { padding: 16px; border-right: 1px solid #ddd; background: var(--panel); overflow-y: auto; }
  aside h1 { font-size: 18px; margin: 0 0 12px; }
  label { display: block; font-size: 12px; color: var(--muted); margin-top: 10px; }
  input, select, textarea { width: 100%; font: inherit; padding: 6px 8px; border: 1px solid #ccc; border-radius: 6px; background: #fff; }
  main { display: flex; flex-direction: column; height: 100vh; }
  #log { flex: 1; overflow-y: auto; padding: 20px; }
  .msg { max-width: 760px; margin: 0 auto 12px; padding: 10px 14px; border-radius: 10px; white-space: pre-wrap; background: var(--panel); }
  .msg.user { background: var(--user); }
  .msg .who { font-size: 12px; color: var(--muted); display: block; }
  .msg.error { background: #fbe9e7; color: #8a1c0c; }
  form { display: flex; gap: 8px; padding: 12px 20px; border-top: 1px solid #ddd; background: var(--panel); }
  form textarea { flex: 1; height: 48px; resize: vertical; }
  button { font: inherit; padding: 0 18px; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
  button.secondary { background: #888; }
  #status { font-size: 12px; color: var(--muted); margin-top: 14px; }
</style>
</head>
<body>
<aside>
  <h1>lora serve</h1>
  <label for="model">model / adapter</label>
  <select id="model"></select>
  <label for="system">system prompt</label>
  <textarea id="system" rows="3"></textarea>
  <label for="temperature">temperature</label>
  <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7">
  <label for="top_p">top_p</label>
  <input id="top_p" type="number" min="0.01" max="1" step="0.05" value="0.95">
  <label for="max_tokens">max tokens</label>
  <input id="max_tokens" type="number" min="1" step="1" value="256">
  <label for="seed">seed (empty: random)</label>
  <input id="seed" type="number" step="1">
  <label for="api_key">API key (if the server has one)</label>
  <input id="api_key" type="password" autocomplete="off">
  <div id="status"></div>
</aside>
<main>
  <div id="log"></div>
  <form id="form">
    <textarea id="input" placeholder="Message (Enter sends, Shift+Enter: new line)"></textarea>
    <button id="send" type="submit">Send</button>
    <button id="stop" type="button" class="secondary" disabled>Stop</button>
    <button id="clear" type="button" class="secondary">Clear</button>
  </form>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const params = ["system", "temperature", "top_p", "max_tokens", "seed", "api_key"];
let history = [];
let controller = null;

for (const p of params) {
  const saved = localStorage.getItem("lora." + p);
  if (saved !== null) $(p).value = saved;
  $(p).addEventListener("change", () => localStorage.setItem("lora." + p, $(p).value));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("api_key").value) h["Authorization"] = "Bearer " + $("api_key").value;
  return h;
}

function status(text) { $("status").textContent = text; }

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "you" : role === "error" ? "error" : $("model").value;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
  return body;
}

async function loadModels(wanted) {
  const res = await fetch("/v1/models", { headers: headers() });
  const body = await res.json();
  if (!res.ok) { status(body.error ? body.error.message : res.statusText); return; }
  const select = $("model");
  const previous = wanted || select.value || localStorage.getItem("lora.model");
  select.innerHTML = "";
  for (const m of body.data) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.parent ? m.id + "  (adapter on " + m.parent + ")" : m.id + "  (base)";
    select.append(option);
  }
  if (previous && [...select.options].some((o) => o.value === previous)) select.value = previous;
  status(body.data.length + " models");
}
$("model").addEventListener("change", () => localStorage.setItem("lora.model", $("model").value));

async function send(text) {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant", "");
  const messages = $("system").value ? [{ role: "system", content: $("system").value }, ...history] : history;
  const request = {
    model: $("model").value, messages, stream: true,
    temperature: Number($("temperature").value), top_p: Number($("top_p").value),
    max_tokens: Number($("max_tokens").value), stream_options: { include_usage: true },
  };
  if ($("seed").value !== "") request.seed = Number($("seed").value);
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  const started = performance.now();
  let reply = "", usage = null;
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : res.status + " " + res.statusText);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices || []) {
          if (c.delta && c.delta.content) { reply += c.delta.content; out.textContent = reply; }
        }
        $("log").scrollTop = $("log").scrollHeight;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    status(usage ? usage.completion_tokens + " tokens in " + seconds.toFixed(2) + " s" : "done");
    out.parentElement.dataset.done = "1";
  } catch (e) {
    if (e.name === "AbortError") status("stopped"); else bubble("error", e.message);
  } finally {
    history.push({ role: "assistant", content: reply });
    $("send").disabled = false; $("stop").disabled = true;
    controller = null;
  }
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => { history = []; $("log").innerHTML = ""; });

const query = new URLSearchParams(location.search);
loadModels(query.get("model")).then(() => {
  if (query.get("message")) send(query.get("message"));
}).catch((e) => status(e.message));
</script>
</body>
</html>
)HTML";
}

}  // namespace lora::serve
