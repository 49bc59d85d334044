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
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const cfg = JSON.parse(process.argv[2]);

// SHA-256 of each certificate's SubjectPublicKeyInfo, base64: the form
// Chromium's --ignore-certificate-errors-spki-list takes: certificates with
// these keys are accepted despite the unknown (per-run) issuer; Chromium
// then waives their other errors too. Any other key fails the navigation.
const spki = [];
for (const file of cfg.trust_pem ?? []) {
  const pems = readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  for (const pem of pems) {
    const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    spki.push(createHash('sha256').update(der).digest('base64'));
  }
}

const args = ['--no-sandbox'];
if (cfg.host_rules) args.push(`--host-resolver-rules=${cfg.host_rules}`);
if (spki.length) args.push(`--ignore-certificate-errors-spki-list=${spki.join(',')}`);

const browser = await chromium.launch({ executablePath: cfg.chromium, args });
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
