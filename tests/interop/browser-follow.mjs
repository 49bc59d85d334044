// A real browser for meetgate's browser tests: headless Chromium (Debian's
// package) driven with playwright-core opens one URL and follows whatever
// redirects the servers send, as a user's browser would.
//
// Usage: node browser-follow.mjs CONFIG_JSON
//   { "url": "...",                       the page to open
//     "chromium": "/usr/bin/chromium",
//     "host_rules": "MAP a.example 127.0.0.1",   Chromium --host-resolver-rules
//     "trust_pem": ["cert.pem", ...] }    certificates whose public keys are
//                                         trusted (--ignore-certificate-errors-spki-list)
// Prints one JSON line: { "final_url", "status", "chain": [{url, status,
// location}], "text" }: chain is the navigation's redirect chain in order.
import { launch } from './browser-launch.mjs';

const cfg = JSON.parse(process.argv[2]);

const browser = await launch(cfg);
try {
  const page = await browser.newPage();
  const last = await page.goto(cfg.url, { waitUntil: 'load', timeout: 20000 });
  // The redirect chain, first request first.
  const chain = [];
  for (let req = last?.request(); req; req = req.redirectedFrom()) {
    const resp = await req.response();
    chain.unshift({ url: req.url(), status: resp?.status() ?? 0, location: resp?.headers().location ?? null });
  }
  const text = await page.evaluate(() => document.body?.innerText ?? '');
  console.log(JSON.stringify({
    final_url: page.url(),
    status: last?.status() ?? 0,
    chain,
    text,
  }));
} finally {
  await browser.close();
}
