// A real browser page calling an API on another origin: headless Chromium
// (Debian's package) driven with playwright-core opens each step's page,
// then runs `fetch` from it, so the browser itself decides (CORS preflight,
// CORS check) what the page may read.
//
// Usage: node browser-fetch.mjs CONFIG_JSON
//   { "chromium": "/usr/bin/chromium",
//     "host_rules": "MAP a.example 127.0.0.1",   Chromium --host-resolver-rules
//     "trust_pem": ["cert.pem", ...],     certificates whose public keys are
//                                         trusted (--ignore-certificate-errors-spki-list)
//     "steps": [{ "page": "http://spa.example:8080/", "url": "https://api.example/x",
//                 "method": "POST", "headers": {...}, "body": "..." }] }
// Prints one JSON line: an array with, per step, either
//   { "ok": true, "status", "body", "headers": {name: value} }  (what the page can read)
// or { "ok": false, "error": "TypeError", "message" }           (fetch rejected).
import { launch } from './browser-launch.mjs';

const cfg = JSON.parse(process.argv[2]);

const browser = await launch(cfg);
try {
  const results = [];
  for (const step of cfg.steps) {
    // A fresh context per step: no preflight cached from an earlier step.
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(step.page, { waitUntil: 'load', timeout: 20000 });
    const result = await page.evaluate(async (s) => {
      try {
        const r = await fetch(s.url, { method: s.method, headers: s.headers, body: s.body, mode: 'cors' });
        const headers = {};
        r.headers.forEach((v, k) => { headers[k] = v; });
        return { ok: true, status: r.status, body: await r.text(), headers };
      } catch (e) {
        return { ok: false, error: e.name, message: e.message };
      }
    }, step);
    result.page_origin = await page.evaluate(() => location.origin);
    results.push(result);
    await context.close();
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
