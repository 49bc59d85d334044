// The one way meetgate's browser tests start a browser: Debian's headless
// Chromium driven with playwright-core, told where hosts are and which
// server keys to trust.
//   cfg.chromium     the executable (/usr/bin/chromium)
//   cfg.host_rules   Chromium --host-resolver-rules ("MAP a.example 127.0.0.1")
//   cfg.trust_pem    certificates whose public keys are trusted
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export async function launch(cfg) {
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
  return chromium.launch({ executablePath: cfg.chromium, args });
}
