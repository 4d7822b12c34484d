// The chat page of a running `lora serve` in a real browser (Debian's headless Chromium, driven by
// playwright-core): pick a model, type a message, send it, wait for the streamed answer, take a screenshot.
// Prints {"models": [...], "answer", "screenshot"} as JSON. Usage:
//   node web_page.mjs URL MODEL MESSAGE SCREENSHOT.png [API_KEY]
import { chromium } from "playwright-core";

const [url, model, message, screenshot, apiKey] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(url);
  if (apiKey) {
    await page.fill("#api_key", apiKey);
    await page.dispatchEvent("#api_key", "change");
    await page.reload();
  }
  await page.waitForSelector("#model option", { state: "attached" });
  const models = await page.$$eval("#model option", (options) => options.map((o) => o.value));
  await page.selectOption("#model", model);
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "40");
  await page.fill("#input", message);
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.assistant[data-done='1']", { timeout: 30_000 });
  const answer = await page.$eval(".msg.assistant[data-done='1'] .text", (e) => e.textContent);
  await page.screenshot({ path: screenshot });
  const shown = await page.$eval("#log", (e) => e.innerText);
  process.stdout.write(JSON.stringify({ models, answer, shown, status: await page.$eval("#status", (e) => e.textContent) }) + "\n");
} finally {
  await browser.close();
}
